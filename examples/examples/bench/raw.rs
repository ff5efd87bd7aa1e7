//! The baseline: a plain tokio-tungstenite echo server and a client that multiplexes
//! concurrent callers over one WebSocket (each message tagged with an id in its first 8
//! bytes; a writer task feeds every queued message and flushes once; a reader task routes
//! echoes back by id).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::{FutureExt, SinkExt, StreamExt};
use grid::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>;

/// tungstenite zero-fills its whole read buffer before every read; with the default
/// 128 KiB buffer that memset dominates small-message echo. The baseline gets a 16 KiB
/// buffer so it is not handicapped by it (grid does its own framing after the upgrade).
fn config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(16 * 1024)
}

/// A client of the raw echo server. Cheap to clone.
#[derive(Clone)]
pub struct RawClient {
    out: mpsc::Sender<Bytes>,
    waiters: Waiters,
    next_id: Arc<AtomicU64>,
}

/// Serves echo on every WebSocket `listener` accepts: each connection echoes every message
/// back, feeding what is queued and flushing once.
pub fn serve_echo(listener: TcpListener) {
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config())).await
                else {
                    return;
                };
                let (mut tx, mut rx) = ws.split();
                while let Some(Ok(msg)) = rx.next().await {
                    let _ = tx.feed(msg).await;
                    while let Some(Some(Ok(more))) = rx.next().now_or_never() {
                        let _ = tx.feed(more).await;
                    }
                    if tx.flush().await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

impl RawClient {
    /// Connects to an echo server ([`serve_echo`]) at `addr`.
    pub async fn connect(addr: std::net::SocketAddr) -> RawClient {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.set_nodelay(true);
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            format!("ws://{addr}/"),
            tcp,
            Some(config()),
        )
        .await
        .expect("client");
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::channel::<Bytes>(1024);
        tokio::spawn(async move {
            while let Some(first) = out_rx.recv().await {
                let _ = sink.feed(Message::Binary(first)).await;
                while let Ok(more) = out_rx.try_recv() {
                    let _ = sink.feed(Message::Binary(more)).await;
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
        });
        let waiters: Waiters = Arc::default();
        let w = waiters.clone();
        tokio::spawn(async move {
            while let Some(Ok(Message::Binary(b))) = stream.next().await {
                let Some(id) = b.get(..8).and_then(|id| id.try_into().ok()) else {
                    continue;
                };
                if let Some(tx) = w.lock().expect("lock").remove(&u64::from_be_bytes(id)) {
                    let _ = tx.send(b);
                }
            }
        });
        RawClient {
            out,
            waiters,
            next_id: Arc::default(),
        }
    }

    /// Sends `len` bytes and waits for the echo.
    pub async fn echo(&self, len: usize) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = vec![0xabu8; len.max(8)];
        msg[..8].copy_from_slice(&id.to_be_bytes());
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("lock").insert(id, tx);
        self.out.send(Bytes::from(msg)).await.expect("raw send");
        let echoed = rx.await.expect("raw echo");
        debug_assert_eq!(echoed.len(), len.max(8));
    }
}
