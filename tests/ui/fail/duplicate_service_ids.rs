use grid::RemoteError;

#[grid::service(id = 7)]
pub trait Disks {
    async fn info(&self, disk: u32) -> Result<u64, RemoteError>;
}

#[grid::service(id = 8)]
pub trait Meta {
    async fn info(&self, key: String) -> Result<u64, RemoteError>;
}

#[grid::service(id = 7)]
pub trait Locks {
    async fn lock(&self, name: String) -> Result<bool, RemoteError>;
}

grid::services![DisksService, MetaService, LocksService];

fn main() {}
