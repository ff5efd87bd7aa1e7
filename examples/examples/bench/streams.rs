//! Stream figures: handler→caller throughput of 64-byte messages (one stream, 100 streams),
//! against a raw WebSocket pushing the same messages; and memory per idle open stream.

use std::time::Instant;

use futures::{SinkExt, StreamExt};
use grid::{Bytes, Connection, HandlerId, Manager, RemoteError, StreamCall, StreamHandler};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

pub const PUSH: HandlerId = HandlerId::new(2);
pub const IDLE: HandlerId = HandlerId::new(3);
const MSG: usize = 64;

/// Registers the stream handlers the figures use.
pub fn register(m: &Manager) {
    m.register_stream(
        PUSH,
        StreamHandler::new(|mut call: StreamCall| async move {
            let n = u64::from_be_bytes(
                call.payload
                    .as_deref()
                    .unwrap_or_default()
                    .try_into()
                    .map_err(|_| RemoteError::new("count"))?,
            );
            let msg = Bytes::from(vec![7u8; MSG]);
            for _ in 0..n {
                call.output.send(msg.clone()).await?;
            }
            Ok(())
        }),
    )
    .expect("register");
    m.register_stream(
        IDLE,
        StreamHandler::new(|call: StreamCall| async move {
            call.ctx.cancelled().await;
            Ok(())
        }),
    )
    .expect("register");
}

/// Messages per second over `streams` concurrent streams carrying `total` messages.
pub async fn grid_rate(conn: &Connection, streams: u64, total: u64) -> f64 {
    let start = Instant::now();
    let runs = (0..streams).map(|_| {
        let conn = conn.clone();
        async move {
            let n = total / streams;
            let mut s = conn
                .open_stream(PUSH, Bytes::copy_from_slice(&n.to_be_bytes()))
                .await
                .expect("open");
            let mut got = 0u64;
            while let Some(m) = s.responses.next().await {
                m.expect("message");
                got += 1;
            }
            assert_eq!(got, n);
        }
    });
    let handles: Vec<_> = runs.map(tokio::spawn).collect();
    for h in handles {
        h.await.expect("stream task");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// The baseline: a raw WebSocket server pushing `total` 64-byte messages to a client.
pub async fn raw_rate(total: u64) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let _ = tcp.set_nodelay(true);
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        let msg = Bytes::from(vec![7u8; MSG]);
        for i in 0..total {
            let _ = ws.feed(Message::Binary(msg.clone())).await;
            if i % 64 == 63 {
                let _ = ws.flush().await;
            }
        }
        let _ = ws.close(None).await;
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .expect("client");
    let start = Instant::now();
    let mut got = 0u64;
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Binary(_) = m {
            got += 1;
            if got == total {
                break;
            }
        }
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Resident bytes per open idle stream (both ends in this process), over `n` streams.
pub async fn idle_memory(conn: &Connection, n: usize) -> f64 {
    let before = crate::resident::resident_bytes();
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        open.push(conn.open_stream(IDLE, None).await.expect("open"));
    }
    let after = crate::resident::resident_bytes();
    drop(open);
    conn.wait_idle().await;
    after.saturating_sub(before) as f64 / n as f64
}
