use grid::{Receiver, RemoteError, Sender, Service};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Req {
    pub x: u32,
}

/// Every kind of method, with every option.
#[grid::service(id = 3)]
pub trait Everything {
    async fn single(&self, req: Req) -> Result<Req, RemoteError>;

    #[grid(deadline_ms = 1500, id = 9)]
    async fn unit(&self, req: ()) -> Result<(), RemoteError>;

    #[grid(stream)]
    async fn handler_stream(&self, req: Req, out: Sender<String>) -> Result<(), RemoteError>;

    #[grid(stream, max_window = "256KiB")]
    async fn two_way(&self, start: u64, input: Receiver<u64>, out: Sender<u64>) -> Result<(), RemoteError>;

    #[grid(stream, max_window = 1048576)]
    async fn upload(&self, batch: String, input: Receiver<Req>) -> Result<u64, RemoteError>;
}

#[grid::service(id = 4)]
pub trait Other {
    async fn ping(&self, req: ()) -> Result<(), RemoteError>;
}

grid::services![EverythingService, OtherService];

struct Impl;

impl Everything for Impl {
    async fn single(&self, req: Req) -> Result<Req, RemoteError> {
        Ok(req)
    }
    async fn unit(&self, _req: ()) -> Result<(), RemoteError> {
        Ok(())
    }
    async fn handler_stream(&self, _req: Req, mut out: Sender<String>) -> Result<(), RemoteError> {
        Ok(out.send(&"x".to_owned()).await?)
    }
    async fn two_way(&self, _start: u64, _input: Receiver<u64>, _out: Sender<u64>) -> Result<(), RemoteError> {
        Ok(())
    }
    async fn upload(&self, _batch: String, _input: Receiver<Req>) -> Result<u64, RemoteError> {
        Ok(0)
    }
}

fn main() {
    let _server = EverythingServer::new(Impl);
    assert_eq!(EverythingService::UNIT.get(), 0x0003_0009);
    assert_eq!(<EverythingService as Service>::METHODS.len(), 5);
    fn client_is_usable<C: Clone + Send + Sync + 'static>() {}
    client_is_usable::<EverythingClient>();
    // A client with its own deadline is an owned value that can be stored.
    struct Holder {
        _client: EverythingClient,
    }
    let _store = |c: &EverythingClient| Holder {
        _client: c.with_deadline(std::time::Duration::from_secs(1)),
    };
}
