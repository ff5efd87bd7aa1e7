//! Single-call benchmark: grid against a raw tokio-tungstenite echo baseline, in one run.
//!
//! `cargo run --release -p grid-examples --example bench [seconds-per-case]`
//!
//! Both sides run in one process on one multi-threaded runtime, over loopback, with one
//! WebSocket and N concurrent callers each sending a 512-byte payload and waiting for the
//! echo. The baseline is a plain tokio-tungstenite client/server: the client tags each
//! message with an id, a writer task feeds every queued message and flushes once, a reader
//! task routes echoes back by id; the server echoes with the same feed-then-flush loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, SinkExt, StreamExt};
use grid::{Bytes, HandlerId, Manager};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const PAYLOAD: usize = 512;
const ECHO: HandlerId = HandlerId::new(1);

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `callers` concurrent loops of `call` for `secs`, and summarises.
async fn drive<F, Fut>(callers: usize, secs: f64, call: F) -> Figures
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    // Warm up.
    let warm = Instant::now() + Duration::from_millis(300);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < warm {
                call().await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                call().await;
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures {
        rps: all.len() as f64 / elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

async fn grid_pair() -> (Manager, Manager) {
    let la = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let lb = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ua = format!("ws://{}/grid/v1", la.local_addr().expect("addr"));
    let ub = format!("ws://{}/grid/v1", lb.local_addr().expect("addr"));
    let a = Manager::builder()
        .local("a")
        .peer("b", ub)
        .token("bench")
        .build()
        .expect("build");
    let b = Manager::builder()
        .local("b")
        .peer("a", ua)
        .token("bench")
        .build()
        .expect("build");
    for m in [&a, &b] {
        m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
    }
    tokio::spawn(a.clone().serve(la));
    tokio::spawn(b.clone().serve(lb));
    for m in [&a, &b] {
        for c in m.connections() {
            c.wait_for_connect().await.expect("connect");
        }
    }
    (a, b)
}

/// tungstenite zero-fills its whole read buffer before every read; with the default
/// 128 KiB buffer that memset dominates small-message echo. The baseline gets a 16 KiB
/// buffer so it is not handicapped by it (grid does its own framing after the upgrade).
fn baseline_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(16 * 1024)
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>;

/// The raw baseline: an echo server and a multiplexing client over one WebSocket.
async fn raw_client() -> (mpsc::Sender<Bytes>, Waiters) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let _ = tcp.set_nodelay(true);
        let ws = tokio_tungstenite::accept_async_with_config(tcp, Some(baseline_config()))
            .await
            .expect("upgrade");
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
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.set_nodelay(true);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{addr}/"),
        tcp,
        Some(baseline_config()),
    )
    .await
    .expect("client");
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(1024);
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
            let id = u64::from_be_bytes(b[..8].try_into().expect("id"));
            if let Some(tx) = w.lock().expect("lock").remove(&id) {
                let _ = tx.send(b);
            }
        }
    });
    (out_tx, waiters)
}

/// The median of each figure over several runs.
fn median(mut runs: Vec<Figures>) -> Figures {
    let mid = runs.len() / 2;
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let rps = runs[mid].rps;
    runs.sort_by_key(|f| f.p50);
    let p50 = runs[mid].p50;
    runs.sort_by_key(|f| f.p99);
    Figures {
        rps,
        p50,
        p99: runs[mid].p99,
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .expect("runtime");
    println!("runtime: {threads} worker thread(s)");
    runtime.block_on(run(secs));
}

async fn run(secs: f64) {
    let (a, _b) = grid_pair().await;
    let conn = a.connection("b").expect("conn");
    let payload = Bytes::from(vec![0xabu8; PAYLOAD]);
    let (raw_tx, waiters) = raw_client().await;
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(1));

    println!("single calls, {PAYLOAD}-byte payload, one connection, {secs} s per run, median of BENCH_ROUNDS (default 3) runs");
    println!(
        "{:>8} | {:>12} {:>10} {:>10} | {:>12} {:>10} {:>10} | {:>7} {:>7} {:>7}",
        "callers",
        "grid req/s",
        "p50",
        "p99",
        "raw req/s",
        "p50",
        "p99",
        "thru x",
        "p50 x",
        "p99 x"
    );
    let cases: Vec<usize> = std::env::var("BENCH_CALLERS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 256]);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for callers in cases {
        // Alternate grid and raw runs, then report the median of each figure: the machine
        // is shared and noisy, and alternating spreads the noise over both.
        let mut gs = Vec::new();
        let mut rs = Vec::new();
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        for _ in 0..rounds {
            let conn = conn.clone();
            if only == "raw" {
                gs.push(Figures {
                    rps: 0.0,
                    p50: Duration::ZERO,
                    p99: Duration::ZERO,
                });
            } else {
                let payload = payload.clone();
                gs.push(
                    drive(callers, secs, move || {
                        let conn = conn.clone();
                        let payload = payload.clone();
                        async move {
                            let r = conn.request(ECHO, payload).await.expect("grid call");
                            debug_assert_eq!(r.map(|b| b.len()), Some(PAYLOAD));
                        }
                    })
                    .await,
                );
            }
            if only == "grid" {
                rs.push(Figures {
                    rps: 0.0,
                    p50: Duration::ZERO,
                    p99: Duration::ZERO,
                });
                continue;
            }
            let raw_tx = raw_tx.clone();
            let waiters = waiters.clone();
            let next_id = next_id.clone();
            rs.push(
                drive(callers, secs, move || {
                    let raw_tx = raw_tx.clone();
                    let waiters = waiters.clone();
                    let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async move {
                        let mut msg = vec![0xabu8; PAYLOAD];
                        msg[..8].copy_from_slice(&id.to_be_bytes());
                        let (tx, rx) = oneshot::channel();
                        waiters.lock().expect("lock").insert(id, tx);
                        raw_tx.send(Bytes::from(msg)).await.expect("raw send");
                        let echoed = rx.await.expect("raw echo");
                        debug_assert_eq!(echoed.len(), PAYLOAD);
                    }
                })
                .await,
            );
        }
        let (g, r) = (median(gs), median(rs));
        println!(
            "{callers:>8} | {:>12.0} {:>10.1?} {:>10.1?} | {:>12.0} {:>10.1?} {:>10.1?} | {:>7.2} {:>7.2} {:>7.2}",
            g.rps, g.p50, g.p99, r.rps, r.p50, r.p99,
            ratio(g.rps, r.rps),
            ratio(g.p50.as_secs_f64(), r.p50.as_secs_f64()),
            ratio(g.p99.as_secs_f64(), r.p99.as_secs_f64()),
        );
    }
    let s = conn.stats();
    println!(
        "grid a->b: {} messages out in {} frames ({} merged); {} in",
        s.messages_out, s.frames_out, s.merged_frames_out, s.messages_in
    );
}
