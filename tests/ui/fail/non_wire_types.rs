use grid::RemoteError;

pub struct NotSerde {
    pub x: u32,
}

#[grid::service(id = 9)]
pub trait Wire {
    async fn takes(&self, req: NotSerde) -> Result<u32, RemoteError>;
}

fn main() {}
