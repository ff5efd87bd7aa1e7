//! `grid`: the project under test, for grid's protocol version 2 (stream windows in bytes).
//! peerbench's own `extra/grid.rs` targets the message-counted API this version replaced;
//! run with `GRID_STACK=peerbench/grid.rs ../shared/peerbench/with-grid.sh . run.sh ...`.
//!
//! Two grid managers in this process ("server" and "client"), each serving on 127.0.0.1:0
//! and naming the other as its peer; they share one WebSocket. Echo is a single-call handler
//! returning its payload; stream is a handler stream pushing messages made by
//! `stream_message` until the caller drops it. Two stacks: `grid` keeps every grid default
//! (the stream windows included: nothing is set), `grid-1024` caps the caller's window at
//! 1024 messages of the stream's size (each costs its payload and 64 bytes), the nearest
//! thing to the old `out_capacity(1024)`, for continuity. Besides that, only
//! max_message_size is changed. Typed scenarios: the `Files` service below, through
//! `#[grid::service]` (MessagePack named maps): `stat` for `typed-single`, and for
//! `typed-stream` a `#[grid(stream)]` method at its defaults (`grid`) or capped at 1024
//! records of 80 bytes (`grid-1024`). Compiled only by `with-grid.sh`, which adds the grid
//! path dependency to a copy.

use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use grid::{Connection, HandlerId, Manager, RemoteError, Sender, StreamCall, StreamHandler};
use tokio::net::TcpListener;

use crate::harness::{
    fill_stream_message, sample_entry, stat_reply, stream_entry, Codec, EchoClient, EchoSession, Entry, ServerGuard,
    Stack, StreamSession, TypedSession, TypedStreamSession,
};

/// Stack `grid`: grid's defaults.
pub struct Grid;
/// Stack `grid-1024`: as `grid`, with the caller's stream window capped at 1024 messages.
pub struct Grid1024;

const ECHO: HandlerId = HandlerId::new(1);
const PUSH: HandlerId = HandlerId::new(2);

/// The typed scenarios' service.
#[grid::service(id = 77)]
pub trait Files {
    /// `typed-single`: answers `stat_reply(e)`.
    async fn stat(&self, e: Entry) -> Result<Entry, RemoteError>;

    /// `typed-stream` of stack `grid`: `stream_entry(first)`, ... until the caller goes away;
    /// grid's default windows.
    #[grid(stream)]
    async fn entries(&self, first: u64, out: Sender<Entry>) -> Result<(), RemoteError>;

    /// The same for stack `grid-1024`: 1024 records of 80 bytes, each costing 64 more (147,456 bytes).
    #[grid(stream, max_window = 147456)]
    async fn entries_1024(&self, first: u64, out: Sender<Entry>) -> Result<(), RemoteError>;
}

struct FilesImpl;

impl Files for FilesImpl {
    async fn stat(&self, e: Entry) -> Result<Entry, RemoteError> {
        Ok(stat_reply(e))
    }

    async fn entries(&self, first: u64, out: Sender<Entry>) -> Result<(), RemoteError> {
        push_entries(first, out).await
    }

    async fn entries_1024(&self, first: u64, out: Sender<Entry>) -> Result<(), RemoteError> {
        push_entries(first, out).await
    }
}

async fn push_entries(first: u64, mut out: Sender<Entry>) -> Result<(), RemoteError> {
    for seq in first.. {
        if out.send(&stream_entry(seq)).await.is_err() {
            return Ok(()); // the caller went away
        }
    }
    Ok(())
}

fn codec() -> Codec {
    let record_bytes = grid::typed::encode(&sample_entry()).map_or(0, |b| b.len());
    Codec { name: "rmp_serde named map (#[grid::service])", record_bytes }
}

/// The stream handler (its windows are the caller's to grant).
fn push_handler() -> StreamHandler {
    StreamHandler::new(|mut call: StreamCall| async move {
        let size = u32::from_le_bytes(
            call.payload.as_deref().unwrap_or_default().try_into().map_err(|_| RemoteError::new("size"))?,
        ) as usize;
        let mut seq = 0u64;
        let mut buf = vec![0xA5u8; size];
        loop {
            fill_stream_message(seq, &mut buf);
            if call.output.send(Bytes::copy_from_slice(&buf)).await.is_err() {
                return Ok(());
            }
            seq += 1;
        }
    })
}

/// Two managers sharing one WebSocket; the server serves the byte handlers, and with
/// `typed` the `Files` service instead.
async fn pair(max_msg: usize, _out_capacity: Option<u32>, typed: bool) -> Result<(Manager, Manager)> {
    let ls = TcpListener::bind("127.0.0.1:0").await?;
    let lc = TcpListener::bind("127.0.0.1:0").await?;
    let (mut sa, mut ca) = (ls.local_addr()?, lc.local_addr()?);
    // The link emulator goes on the one WebSocket: on the address its dialing side dials.
    let dialed = if grid::dials("client", "server") { &mut sa } else { &mut ca };
    *dialed = crate::link::route(*dialed)?;
    let us = format!("ws://{sa}/grid/v1");
    let uc = format!("ws://{ca}/grid/v1");
    let limit = (max_msg + 4096).max(1 << 20);
    let build = |local: &str, peer: &str, url: String| {
        Manager::builder().local(local).peer(peer, url).token("peerbench").max_message_size(limit).build()
    };
    let server = build("server", "client", uc)?;
    let client = build("client", "server", us)?;
    if typed {
        server.register(FilesServer::new(FilesImpl))?;
    } else {
        server.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })?;
        server.register_stream(PUSH, push_handler())?;
    }
    tokio::spawn(server.clone().serve(ls));
    tokio::spawn(client.clone().serve(lc));
    client.connection("server")?.wait_for_connect().await?;
    Ok((server, client))
}

fn guard(server: Manager, client: Manager) -> ServerGuard {
    ServerGuard::default().on_drop(move || {
        tokio::spawn(async move {
            client.shutdown().await;
            server.shutdown().await;
        });
    })
}

async fn echo(max_msg: usize, out_capacity: Option<u32>) -> Result<EchoSession> {
    let (server, client) = pair(max_msg, out_capacity, false).await?;
    let conn = client.connection("server")?;
    Ok(EchoSession { client: Arc::new(Client { conn }), server: guard(server, client) })
}

async fn stream(msg_size: usize, out_capacity: Option<u32>) -> Result<Option<StreamSession>> {
    let (server, client) = pair(msg_size, out_capacity, false).await?;
    let conn = client.connection("server")?;
    let open = conn.open_stream(PUSH, Bytes::copy_from_slice(&(msg_size as u32).to_le_bytes()));
    // grid-1024: 1024 messages of this size, each costing its payload and 64 bytes.
    let open = match out_capacity {
        Some(n) => open.max_window(u64::from(n) * (msg_size as u64 + 64)),
        None => open,
    };
    let stream = open.await?;
    let messages = stream.responses.map(|m| m.map_err(|e| anyhow!(e)));
    Ok(Some(StreamSession { messages: Box::pin(messages), server: guard(server, client) }))
}

async fn typed() -> Result<Option<TypedSession>> {
    let (server, client) = pair(0, None, true).await?;
    let files = FilesClient::new(client.connection("server")?);
    Ok(Some(TypedSession { client: Arc::new(TypedCaller(files)), server: guard(server, client), codec: codec() }))
}

async fn typed_stream(wide: bool) -> Result<Option<TypedStreamSession>> {
    let (server, client) = pair(0, None, true).await?;
    let files = FilesClient::new(client.connection("server")?);
    let records = if wide { files.entries_1024(0).await? } else { files.entries(0).await? };
    let records = records.map(|r| r.map_err(|e| anyhow!(e)));
    Ok(Some(TypedStreamSession { records: Box::pin(records), server: guard(server, client), codec: codec() }))
}

struct TypedCaller(FilesClient);

#[async_trait]
impl crate::harness::TypedClient for TypedCaller {
    async fn stat(&self, e: Entry) -> Result<Entry> {
        Ok(self.0.stat(e).await?)
    }
}

/// The settings line, with the stream handler's capacities as grid reports them.
fn settings(out_capacity: Option<u32>, cell: &'static OnceLock<String>) -> &'static str {
    cell.get_or_init(|| {
        format!(
            "grid defaults (checksums on, ws://) + max_message_size raised to payload + 4 KiB (>= 1 MiB); \
             stream: {}; typed: #[grid::service] (rmp_serde named maps), typed-stream method {}",
            if out_capacity.is_some() {
                "the caller's window capped at 1024 messages (open_stream(..).max_window)"
            } else {
                "grid's default windows (bytes, nothing set)"
            },
            if out_capacity.is_some() {
                "#[grid(stream, max_window = 147456)]"
            } else {
                "#[grid(stream)] at grid's default windows"
            }
        )
    })
}

#[async_trait]
impl Stack for Grid {
    fn name(&self) -> &'static str {
        "grid"
    }

    fn settings(&self) -> &'static str {
        static CELL: OnceLock<String> = OnceLock::new();
        settings(None, &CELL)
    }

    async fn echo(&self, max_msg: usize) -> Result<EchoSession> {
        echo(max_msg, None).await
    }

    async fn stream(&self, msg_size: usize) -> Result<Option<StreamSession>> {
        stream(msg_size, None).await
    }

    async fn typed(&self) -> Result<Option<TypedSession>> {
        typed().await
    }

    async fn typed_stream(&self) -> Result<Option<TypedStreamSession>> {
        typed_stream(false).await
    }
}

#[async_trait]
impl Stack for Grid1024 {
    fn name(&self) -> &'static str {
        "grid-1024"
    }

    fn settings(&self) -> &'static str {
        static CELL: OnceLock<String> = OnceLock::new();
        settings(Some(1024), &CELL)
    }

    async fn echo(&self, max_msg: usize) -> Result<EchoSession> {
        echo(max_msg, Some(1024)).await
    }

    async fn stream(&self, msg_size: usize) -> Result<Option<StreamSession>> {
        stream(msg_size, Some(1024)).await
    }

    async fn typed(&self) -> Result<Option<TypedSession>> {
        typed().await
    }

    async fn typed_stream(&self) -> Result<Option<TypedStreamSession>> {
        typed_stream(true).await
    }
}

struct Client {
    conn: Connection,
}

#[async_trait]
impl EchoClient for Client {
    async fn echo(&self, payload: Bytes) -> Result<Bytes> {
        let answer = self.conn.request(ECHO, payload).await?;
        answer.ok_or_else(|| anyhow!("no payload in the answer"))
    }
}
