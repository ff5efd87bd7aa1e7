use grid::{Receiver, RemoteError, Sender};

#[grid::service(id = 6)]
pub trait Streams {
    #[grid(stream)]
    async fn no_sender(&self, req: u32) -> Result<(), RemoteError>;

    #[grid(stream)]
    async fn returns_value(&self, req: u32, out: Sender<u32>) -> Result<u32, RemoteError>;

    #[grid(stream)]
    async fn receiver_last(&self, req: u32, out: Sender<u32>, input: Receiver<u32>) -> Result<(), RemoteError>;

    #[grid(stream, in_capacity = 4)]
    async fn capacity_without_input(&self, req: u32, out: Sender<u32>) -> Result<(), RemoteError>;

    #[grid(stream, fast = true)]
    async fn unknown_option(&self, req: u32, out: Sender<u32>) -> Result<(), RemoteError>;

    #[grid(stream, out_capacity = 4)]
    async fn upload_with_out_capacity(&self, req: u32, input: Receiver<u32>) -> Result<u64, RemoteError>;
}

fn main() {}
