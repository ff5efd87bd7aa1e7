//! The typed layer's cost: a small struct request/response and a typed stream, beside the
//! same traffic at the byte level.

use futures::StreamExt;
use grid::{Connection, Manager, RemoteError, Sender};
use serde::{Deserialize, Serialize};

/// A small request, about the size of a typical control-plane call.
#[derive(Clone, Serialize, Deserialize)]
pub struct Small {
    pub id: u64,
    pub bucket: String,
    pub object: String,
    pub version: u32,
    pub flags: Vec<u8>,
}

/// A small request of plain numbers (no heap fields).
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct Numbers {
    pub shard: u64,
    pub offset: u64,
    pub length: u64,
    pub version: u32,
    pub flags: u32,
}

/// A stream item of about 64 bytes encoded (a directory-listing record).
#[derive(Clone, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub size: u64,
    pub seq: u64,
}

/// The benchmark's typed service.
#[grid::service(id = 900)]
pub trait Bench {
    /// Echoes the request.
    async fn echo(&self, req: Small) -> Result<Small, RemoteError>;

    /// Echoes a request of plain numbers.
    async fn echo_numbers(&self, req: Numbers) -> Result<Numbers, RemoteError>;

    /// Streams `n` records of about 64 bytes.
    #[grid(stream)]
    async fn push(&self, n: u64, out: Sender<Record>) -> Result<(), RemoteError>;
}

struct Impl;

impl Bench for Impl {
    async fn echo(&self, req: Small) -> Result<Small, RemoteError> {
        Ok(req)
    }

    async fn echo_numbers(&self, req: Numbers) -> Result<Numbers, RemoteError> {
        Ok(req)
    }

    async fn push(&self, n: u64, mut out: Sender<Record>) -> Result<(), RemoteError> {
        let mut item = Record {
            key: "bucket/prefix/object-000000".into(),
            size: 4096,
            seq: 0,
        };
        for seq in 0..n {
            item.seq = seq;
            out.send(&item).await?;
        }
        Ok(())
    }
}

pub fn register(m: &Manager) {
    m.register(BenchServer::new(Impl)).expect("register");
}

pub fn sample() -> Small {
    Small {
        id: 123_456_789,
        bucket: "photos-2026".into(),
        object: "holiday/beach/img_0042.jpg".into(),
        version: 7,
        flags: vec![1, 2, 3, 4],
    }
}

pub fn numbers() -> Numbers {
    Numbers {
        shard: 17,
        offset: 1 << 33,
        length: 65_536,
        version: 3,
        flags: 0b1011,
    }
}

/// The same request as bytes (the byte-level comparison sends exactly these).
pub fn sample_bytes() -> grid::Bytes {
    grid::typed::encode(&sample()).expect("encode")
}

pub fn client(conn: &Connection) -> BenchClient {
    BenchClient::new(conn.clone())
}

/// Items per second over one typed stream.
pub async fn typed_stream_rate(client: &BenchClient, total: u64) -> f64 {
    let start = std::time::Instant::now();
    let mut items = client.push(total).await.expect("open");
    let mut got = 0;
    while let Some(i) = items.next().await {
        i.expect("item");
        got += 1;
    }
    assert_eq!(got, total);
    total as f64 / start.elapsed().as_secs_f64()
}
