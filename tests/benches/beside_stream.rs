//! Small calls beside a stream that fills a long, fast link: a benchmark run, not a test.
//!
//! Two managers in one process, the dialer's link to the acceptor through the tests
//! crate's proxy (`grid_tests::proxy`), delayed 5 ms each way (a round trip of 10 ms), then
//! 0.75 ms each way (1.5 ms: a path shorter than the hosts' delay, whose windows are sized
//! for that delay too, `engine/tuning.rs`), and throttled to 125 MB/s each way
//! (1 Gbit/s). The proxy runs on a thread of its own and times its delays to the microsecond, so the idle calls' median is the link's round trip
//! plus grid's own cost (before, on the managers' runtime and tokio's millisecond timer,
//! it measured 12.3 ms). For each setting:
//!
//! 1. idle: one caller makes 512 B echo calls back to back for 2 s: their latency is the
//!    link's round trip and grid's own cost;
//! 2. a stream of 16 KiB messages from the acceptor's handler, as fast as its window
//!    allows, read by the dialer as they come; how long it takes to carry 90 % of the link
//!    rate (over a quarter second);
//! 3. beside it, from 1.5 s after it opened, the same 512 B calls for 4 s: their answers
//!    travel behind the stream's data on the same connection. And the stream's rate then.
//!
//! Settings: grid's defaults (windows start at 256 KiB and tune themselves to the path),
//! and a fixed 16 MiB window (`stream_window` = `max_stream_window`: what a window that
//! does not watch the path's queue holds), for comparison in the same run.
//!
//! Run: `cargo bench -p grid-tests --bench beside_stream`. Timing is machine-dependent:
//! compare the rows of one run (the small calls' p99 beside the stream against the idle
//! p99 and against the round trip + 5 ms).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use grid::{HandlerId, ManagerBuilder, StreamCall, StreamHandler};
use grid_tests::{percentile, ProxiedPair};

const PUSH: HandlerId = HandlerId::new(1);
const ECHO: HandlerId = HandlerId::new(2);
/// Bytes per second each way: 1 Gbit/s.
const LINK: u64 = 125_000_000;
/// The links' delays each way: round trips of 10 ms and 1.5 ms.
const ONE_WAYS: [Duration; 2] = [Duration::from_millis(5), Duration::from_micros(750)];
const MESSAGE: usize = 16 << 10;
const CALL: usize = 512;

/// Sends `MESSAGE`-byte messages as fast as credit allows until the caller goes away.
fn push() -> StreamHandler {
    StreamHandler::new(|mut call: StreamCall| async move {
        let message = Bytes::from(vec![5u8; MESSAGE]);
        while call.output.send(message.clone()).await.is_ok() {}
        Ok(())
    })
}

/// Latencies of back-to-back 512 B calls for `time`.
async fn calls(conn: &grid::Connection, time: Duration) -> Vec<Duration> {
    let payload = Bytes::from(vec![1u8; CALL]);
    let end = Instant::now() + time;
    let mut took = Vec::new();
    while Instant::now() < end {
        let t = Instant::now();
        let back = conn.request(ECHO, payload.clone()).await.expect("call");
        assert_eq!(back.map(|b| b.len()), Some(CALL), "the echo");
        took.push(t.elapsed());
    }
    took.sort();
    took
}

struct Row {
    setting: &'static str,
    one_way: Duration,
    idle: Vec<Duration>,
    beside: Vec<Duration>,
    /// Bytes per second the stream carried while the calls ran.
    rate: f64,
    /// From the open until a quarter second carried 90 % of the link rate.
    to_90: Option<Duration>,
    window: u64,
}

async fn run(
    setting: &'static str,
    one_way: Duration,
    configure: fn(ManagerBuilder) -> ManagerBuilder,
) -> Row {
    let pair =
        ProxiedPair::start_with_own_thread_proxy(move |b| configure(b.max_message_size(1 << 20)))
            .await;
    pair.proxy.delay(one_way);
    pair.proxy.throttle(Some(LINK));
    for m in [&pair.dialer, &pair.acceptor] {
        m.register_stream(PUSH, push()).expect("register");
        m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
    }
    pair.connected().await;
    let (conn, _) = pair.connections();
    let idle = calls(&conn, Duration::from_secs(2)).await;

    let mut stream = conn.open_stream(PUSH, None).await.expect("open");
    let opened = Instant::now();
    let read = Arc::new(AtomicU64::new(0));
    let reader = {
        let read = read.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.responses.next().await {
                read.fetch_add(m.len() as u64, Ordering::Relaxed);
            }
        })
    };
    // The first quarter second that carried 90 % of the link rate.
    let sampler = {
        let read = read.clone();
        tokio::spawn(async move {
            let quarter = Duration::from_millis(250);
            let mut samples = std::collections::VecDeque::new();
            loop {
                let (now, bytes) = (Instant::now(), read.load(Ordering::Relaxed));
                samples.push_back((now, bytes));
                while samples
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > quarter)
                {
                    samples.pop_front();
                }
                if let Some((t, b)) = samples.front() {
                    let span = now.duration_since(*t);
                    if span >= quarter * 9 / 10
                        && (bytes - b) as f64 >= 0.9 * LINK as f64 * span.as_secs_f64()
                    {
                        return Some(now.duration_since(opened));
                    }
                }
                if now.duration_since(opened) > Duration::from_secs(6) {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (t0, b0) = (Instant::now(), read.load(Ordering::Relaxed));
    let beside = calls(&conn, Duration::from_secs(4)).await;
    let rate = (read.load(Ordering::Relaxed) - b0) as f64 / t0.elapsed().as_secs_f64();
    let window = conn.stats().stream_window_bytes;
    let to_90 = sampler.await.expect("sampler");
    reader.abort();
    let _ = reader.await;
    pair.finish().await;
    Row {
        setting,
        one_way,
        idle,
        beside,
        rate,
        to_90,
        window,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        for one_way in ONE_WAYS {
            rows.push(run("grid defaults", one_way, |b| b).await);
            rows.push(
                run("fixed 16 MiB window", one_way, |b| {
                    b.stream_window(16 << 20).max_stream_window(16 << 20)
                })
                .await,
            );
        }
        rows
    });
    println!(
        "links: {} Mbit/s each way; 512 B calls, a stream of 16 KiB messages\n",
        LINK * 8 / 1_000_000
    );
    println!("| round trip ms | setting | idle p50 ms | idle p99 ms | beside p50 ms | beside p90 ms | beside p99 ms | p99 / (RTT + 5 ms) | stream MB/s | of link | to 90 % | window at end |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let p99 = percentile(&r.beside, 0.99);
        let target = r.one_way * 2 + Duration::from_millis(5);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.1} | {:.0} % | {} | {} KiB |",
            ms(r.one_way * 2),
            r.setting,
            ms(percentile(&r.idle, 0.5)),
            ms(percentile(&r.idle, 0.99)),
            ms(percentile(&r.beside, 0.5)),
            ms(percentile(&r.beside, 0.9)),
            ms(p99),
            p99.as_secs_f64() / target.as_secs_f64(),
            r.rate / 1e6,
            r.rate * 100.0 / LINK as f64,
            r.to_90
                .map_or("never".into(), |d| format!("{} ms", d.as_millis())),
            r.window / 1024,
        );
    }
}
