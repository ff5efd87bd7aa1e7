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
    async fn capacity_in_messages(&self, req: u32, out: Sender<u32>) -> Result<(), RemoteError>;

    #[grid(stream, fast = true)]
    async fn unknown_option(&self, req: u32, out: Sender<u32>) -> Result<(), RemoteError>;

    #[grid(stream, max_window = "1.5MiB")]
    async fn window_not_a_size(&self, req: u32, input: Receiver<u32>) -> Result<u64, RemoteError>;

    #[grid(stream, max_window = 100)]
    async fn window_too_small(&self, req: u32, out: Sender<u32>) -> Result<(), RemoteError>;

    #[grid(max_window = "1MiB")]
    async fn window_on_a_single_call(&self, req: u32) -> Result<u32, RemoteError>;
}

fn main() {}
