use grid::RemoteError;

#[grid::service(id = 0)]
pub trait Zero {
    async fn a(&self, req: u32) -> Result<u32, RemoteError>;
}

#[grid::service(id = 70000)]
pub trait TooBig {
    async fn a(&self, req: u32) -> Result<u32, RemoteError>;
}

#[grid::service(id = 65535)]
pub trait Builtin {
    async fn a(&self, req: u32) -> Result<u32, RemoteError>;
}

#[grid::service(id = 2)]
pub trait Methods {
    #[grid(id = 0)]
    async fn zero(&self, req: u32) -> Result<u32, RemoteError>;

    #[grid(id = 65536)]
    async fn too_big(&self, req: u32) -> Result<u32, RemoteError>;
}

#[grid::service]
pub trait NoId {
    async fn a(&self, req: u32) -> Result<u32, RemoteError>;
}

fn main() {}
