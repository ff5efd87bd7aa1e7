//! Single-call benchmark: grid against a raw tokio-tungstenite echo baseline, in one run.
//!
//! `cargo run --release -p grid-examples --example bench [seconds-per-run]`
//!
//! Both run in one process on one multi-threaded runtime (2 workers; `BENCH_THREADS`
//! changes it), over loopback, with one WebSocket and N concurrent callers each sending a
//! 512-byte payload and waiting for the echo (see raw.rs for the baseline). Each case
//! alternates grid and raw runs `BENCH_ROUNDS` times (default 3) and reports medians.
//! `BENCH_CALLERS=1,16` picks the cases; `BENCH_ONLY=grid|raw` runs one side (profiling);
//! `BENCH_FIXED_CALLS=N` (with `BENCH_ONLY`) makes exactly N sequential calls and exits, for
//! instruction counts under `valgrind --tool=callgrind`.
//!
//! The last case measures 512-byte calls by one caller while 16 MiB echoes run back to
//! back on the same connection: grid sends large payloads in chunks between other
//! traffic; a raw WebSocket sends them whole.
//!
//! Then streams (streams.rs): 64-byte messages from handler to caller on one stream and on
//! 100 streams, against a raw WebSocket pushing the same messages, and resident memory per
//! idle open stream (`BENCH_STREAMS=0` skips them).

mod drive;
mod raw;
#[path = "../common/resident.rs"]
mod resident;
mod streams;
mod typed;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drive::{drive, median, ratio, Figures};
use grid::{Bytes, Connection, HandlerId, Manager};
use raw::RawClient;
use tokio::net::TcpListener;

const PAYLOAD: usize = 512;
const BULK: usize = 16 << 20;
const ECHO: HandlerId = HandlerId::new(1);

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let threads: usize = env("BENCH_THREADS", 2);
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

async fn grid_pair() -> (Manager, Manager) {
    let la = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let lb = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ua = format!("ws://{}/grid/v1", la.local_addr().expect("addr"));
    let ub = format!("ws://{}/grid/v1", lb.local_addr().expect("addr"));
    let build = |local: &str, peer: &str, url: String| {
        Manager::builder()
            .local(local)
            .peer(peer, url)
            .token("bench")
            // The idle-stream figure holds 10,000 streams open at once.
            .max_concurrent_calls(1 << 16)
            .build()
            .expect("build")
    };
    let (a, b) = (build("a", "b", ub), build("b", "a", ua));
    for m in [&a, &b] {
        m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        streams::register(m);
        typed::register(m);
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

fn grid_call(
    conn: &Connection,
    len: usize,
) -> impl Fn() -> futures::future::BoxFuture<'static, ()> + Clone {
    let conn = conn.clone();
    let payload = Bytes::from(vec![0xabu8; len]);
    move || {
        let conn = conn.clone();
        let payload = payload.clone();
        Box::pin(async move {
            let r = conn.request(ECHO, payload).await.expect("grid call");
            debug_assert_eq!(r.map(|b| b.len()), Some(len));
        })
    }
}

fn raw_call(
    raw: &RawClient,
    len: usize,
) -> impl Fn() -> futures::future::BoxFuture<'static, ()> + Clone {
    let raw = raw.clone();
    move || {
        let raw = raw.clone();
        Box::pin(async move { raw.echo(len).await })
    }
}

/// Runs `small` by one caller while `bulk` runs back to back in the background.
async fn beside_bulk(
    secs: f64,
    small: impl Fn() -> futures::future::BoxFuture<'static, ()> + Clone + Send + Sync + 'static,
    bulk: impl Fn() -> futures::future::BoxFuture<'static, ()> + Send + 'static,
) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let bulk_task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                bulk().await;
                done += 1;
            }
            done
        }
    });
    let figures = drive(1, secs, small).await;
    stop.store(true, Ordering::Relaxed);
    match bulk_task.await {
        Ok(done) => println!("  ({done} bulk calls of 16 MiB completed beside the small calls)"),
        Err(e) => {
            println!("  (the bulk calls failed: {e}; the small-call figures are not meaningful)")
        }
    }
    figures
}

/// Alternates runs of `typed_call` and of byte-level calls carrying `bytes`; medians.
async fn typed_vs_bytes(
    conn: &Connection,
    callers: usize,
    secs: f64,
    rounds: usize,
    typed_call: impl Fn() -> futures::future::BoxFuture<'static, ()> + Clone + Send + Sync + 'static,
    bytes: Bytes,
) -> (Figures, Figures) {
    let (mut ts, mut bs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ts.push(drive(callers, secs, typed_call.clone()).await);
        let (conn, bytes) = (conn.clone(), bytes.clone());
        bs.push(
            drive(callers, secs, move || {
                let (conn, bytes) = (conn.clone(), bytes.clone());
                Box::pin(async move {
                    conn.request(ECHO, bytes).await.expect("bytes call");
                }) as futures::future::BoxFuture<'static, ()>
            })
            .await,
        );
    }
    (median(ts), median(bs))
}

fn row(label: &str, g: &Figures, r: &Figures) {
    println!(
        "{label:>10} | {:>12.0} {:>10.1?} {:>10.1?} | {:>12.0} {:>10.1?} {:>10.1?} | {:>7.2} {:>7.2} {:>7.2}",
        g.rps,
        g.p50,
        g.p99,
        r.rps,
        r.p50,
        r.p99,
        ratio(g.rps, r.rps),
        ratio(g.p50.as_secs_f64(), r.p50.as_secs_f64()),
        ratio(g.p99.as_secs_f64(), r.p99.as_secs_f64()),
    );
}

async fn run(secs: f64) {
    let (a, _b) = grid_pair().await;
    let conn = a.connection("b").expect("conn");
    let raw_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let raw_addr = raw_listener.local_addr().expect("addr");
    raw::serve_echo(raw_listener);
    let raw = RawClient::connect(raw_addr).await;
    // For instruction counts under callgrind: exactly N sequential calls of one side, then
    // exit (run twice with different N and divide the difference by the difference in N).
    if let Some(n) = std::env::var("BENCH_FIXED_CALLS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let raw_side = std::env::var("BENCH_ONLY").as_deref() == Ok("raw");
        let (g, r) = (grid_call(&conn, PAYLOAD), raw_call(&raw, PAYLOAD));
        for _ in 0..n {
            if raw_side {
                r().await;
            } else {
                g().await;
            }
        }
        println!("{n} calls done");
        return;
    }
    // Memory first, before other figures have grown (and freed) the heap.
    let idle_streams = env("BENCH_IDLE_STREAMS", 10_000usize);
    let idle_bytes = streams::idle_memory(&conn, idle_streams).await;
    let rounds: usize = env("BENCH_ROUNDS", 3);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let zero = || Figures {
        rps: 0.0,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
    };

    println!("single calls, {PAYLOAD}-byte payload, one connection, {secs} s per run, median of {rounds} runs");
    println!(
        "{:>10} | {:>12} {:>10} {:>10} | {:>12} {:>10} {:>10} | {:>7} {:>7} {:>7}",
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
    for callers in cases {
        let (mut gs, mut rs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            gs.push(match only.as_str() {
                "raw" => zero(),
                _ => drive(callers, secs, grid_call(&conn, PAYLOAD)).await,
            });
            rs.push(match only.as_str() {
                "grid" => zero(),
                _ => drive(callers, secs, raw_call(&raw, PAYLOAD)).await,
            });
        }
        row(&callers.to_string(), &median(gs), &median(rs));
    }
    if env("BENCH_TYPED", 1) == 1 && only.is_empty() {
        // Typed calls (a small struct each way) against bytes of the same size.
        let typed_client = typed::client(&conn);
        let bytes = typed::sample_bytes();
        println!(
            "typed layer: a {}-byte struct each way, 256 callers (grid typed vs grid bytes)",
            bytes.len()
        );
        let typed_callers = env("BENCH_TYPED_CALLERS", 256usize);
        let c = typed_client.clone();
        let typed_call = move || {
            let c = c.clone();
            Box::pin(async move {
                c.echo(typed::sample()).await.expect("typed call");
            }) as futures::future::BoxFuture<'static, ()>
        };
        let (t, b) = typed_vs_bytes(&conn, typed_callers, secs, rounds, typed_call, bytes).await;
        row(&format!("typed/{typed_callers}"), &t, &b);
        // The same with a struct of plain numbers (no allocation in the struct itself).
        let nbytes = grid::typed::encode(&typed::numbers()).expect("encode");
        println!("  the same with a {}-byte struct of numbers:", nbytes.len());
        let c = typed_client.clone();
        let typed_call = move || {
            let c = c.clone();
            Box::pin(async move {
                c.echo_numbers(typed::numbers()).await.expect("typed call");
            }) as futures::future::BoxFuture<'static, ()>
        };
        let (t, b) = typed_vs_bytes(&conn, typed_callers, secs, rounds, typed_call, nbytes).await;
        row(&format!("num/{typed_callers}"), &t, &b);
        let total: u64 = env("BENCH_STREAM_MESSAGES", 2_000_000);
        let typed_rate = typed::typed_stream_rate(&typed_client, total).await;
        let bytes_rate = streams::grid_rate(&conn, 1, total).await;
        println!(
            "  typed stream {typed_rate:.0} items/s vs bytes stream {bytes_rate:.0} msg/s ({:.2} x)",
            ratio(typed_rate, bytes_rate)
        );
    }
    if env("BENCH_BULK", 1) == 1 && only.is_empty() {
        let g = beside_bulk(secs, grid_call(&conn, PAYLOAD), grid_call(&conn, BULK)).await;
        let r = beside_bulk(secs, raw_call(&raw, PAYLOAD), raw_call(&raw, BULK)).await;
        row("1+16MiB", &g, &r);
    }
    if env("BENCH_STREAMS", 1) == 1 && only.is_empty() {
        let total: u64 = env("BENCH_STREAM_MESSAGES", 2_000_000);
        println!("streams: {total} messages of 64 bytes, handler to caller");
        let raw = streams::raw_rate(total).await;
        let one = streams::grid_rate(&conn, 1, total).await;
        let hundred = streams::grid_rate(&conn, 100, total).await;
        println!("  raw WebSocket push    {raw:>12.0} msg/s");
        println!(
            "  grid, one stream      {one:>12.0} msg/s  ({:.2} x raw)",
            ratio(one, raw)
        );
        println!(
            "  grid, 100 streams     {hundred:>12.0} msg/s  ({:.2} x raw)",
            ratio(hundred, raw)
        );
        println!("  {idle_streams} idle open streams: {idle_bytes:.0} bytes resident per stream (both ends; measured first, on a fresh heap)");
    }
    let s = conn.stats();
    println!(
        "grid a->b: {} messages out in {} frames ({} merged); {} in",
        s.messages_out, s.frames_out, s.merged_frames_out, s.messages_in
    );
}
