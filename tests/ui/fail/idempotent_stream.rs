use grid::{RemoteError, Sender};

#[grid::service(id = 3)]
pub trait Walk {
    #[grid(stream, idempotent)]
    async fn walk(&self, from: u32, out: Sender<u32>) -> Result<(), RemoteError>;
}

fn main() {}
