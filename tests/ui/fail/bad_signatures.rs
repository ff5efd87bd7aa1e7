use grid::{RemoteError, Sender};

#[grid::service(id = 5)]
pub trait Bad {
    fn not_async(&self, req: u32) -> Result<u32, RemoteError>;

    async fn no_self(req: u32) -> Result<u32, RemoteError>;

    async fn mut_self(&mut self, req: u32) -> Result<u32, RemoteError>;

    async fn wrong_return(&self, req: u32) -> u32;

    async fn wrong_error(&self, req: u32) -> Result<u32, String>;

    async fn generic<T>(&self, req: T) -> Result<u32, RemoteError>;

    async fn pattern(&self, (a, b): (u32, u32)) -> Result<u32, RemoteError>;

    async fn two_requests(&self, a: u32, b: u32) -> Result<u32, RemoteError>;

    async fn sender_without_stream(&self, req: u32, out: Sender<u32>) -> Result<(), RemoteError>;
}

fn main() {}
