use grid::RemoteError;

#[grid::service(id = 1, crate = 5)]
pub trait NotAString {
    async fn a(&self, req: u32) -> Result<u32, RemoteError>;
}

#[grid::service(id = 2, crate = "not a path")]
pub trait NotAPath {
    async fn a(&self, req: u32) -> Result<u32, RemoteError>;
}

fn main() {}
