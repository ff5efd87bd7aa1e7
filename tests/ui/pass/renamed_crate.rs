// A user who renamed the dependency (here with `extern crate`; in Cargo.toml,
// `rpc = { package = ... }`) says where the runtime crate is.
extern crate grid as rpc;

#[rpc::service(id = 5, crate = "::rpc")]
pub trait Renamed {
    async fn get(&self, key: String) -> Result<Option<String>, rpc::RemoteError>;

    #[grid(stream)]
    async fn scan(&self, prefix: String, out: rpc::Sender<String>) -> Result<(), rpc::RemoteError>;
}

struct Impl;

impl Renamed for Impl {
    async fn get(&self, _key: String) -> Result<Option<String>, rpc::RemoteError> {
        Ok(None)
    }
    async fn scan(&self, prefix: String, mut out: rpc::Sender<String>) -> Result<(), rpc::RemoteError> {
        Ok(out.send(&prefix).await?)
    }
}

fn main() {
    let _server = RenamedServer::new(Impl);
    let _client = |c: rpc::Connection| RenamedClient::new(c);
}
