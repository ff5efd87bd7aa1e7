use grid::RemoteError;

#[grid::service(id = 1)]
pub trait Dup {
    #[grid(id = 5)]
    async fn first(&self, req: u32) -> Result<u32, RemoteError>;

    #[grid(id = 5)]
    async fn second(&self, req: u32) -> Result<u32, RemoteError>;
}

fn main() {}
