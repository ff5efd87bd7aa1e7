//! Calls to many peers on emulated links: a benchmark run, not a test.
//!
//! A client and three replicas in one process; the client reaches each replica through
//! the tests crate's proxy (`grid_tests::proxy`) on a thread of its own, delayed 0.5 ms
//! each way: a round trip of 1 ms, as between racks. A replica answers a read at once,
//! unless told to be slow. Calls are made one after another; every row gives the p50 and
//! p99 of its calls' latency, and the ratio of its p99 to its baseline's in the same run.
//!
//! 1. Quorum, 2 of 3: healthy (the baseline), then with one replica's link blackholed
//!    (the proxy stops forwarding, nothing is closed): the quorum is met by the other two
//!    and the blackholed call is cancelled each time. Target: p99 ≤ 1.3× healthy.
//! 2. Hedged reads (`Hedge::at_percentile(0.95, ..)`) to two replicas, one of them slow,
//!    against single calls to a healthy replica (the baseline): the slow one adds 5 ms to
//!    every read, or 20 ms to one read in 20 (a tail). Target: p99 ≤ 1.2× the healthy
//!    single call's, with at most 5 % extra requests (hedges sent per call). A row with
//!    the slow replica always asked first (`in_given_order`) shows what the delay alone
//!    does, without the fastest-first order.
//!
//! Run: `cargo bench -p grid-tests --bench many`. Timing is machine-dependent: compare the
//! rows of one run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grid::many::{quorum, Hedge};
use grid::{HandlerId, Manager, RemoteError};
use grid_tests::proxy::Proxy;
use grid_tests::{builder, listener};

const READ: HandlerId = HandlerId::new(1);
const ONE_WAY: Duration = Duration::from_micros(500);
const CALLS: usize = 3000;

/// How a replica answers: every `slow_every`-th read (0: none) waits `slow_by` first.
#[derive(Default)]
struct Behaviour {
    slow_every: AtomicU64,
    slow_by_us: AtomicU64,
    reads: AtomicU64,
}

struct World {
    client: Manager,
    replicas: Vec<Manager>,
    proxies: Vec<Proxy>,
    behaviours: Vec<Arc<Behaviour>>,
}

async fn world() -> World {
    let mut client = builder("client").as_client();
    let (mut replicas, mut proxies, mut behaviours) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..3 {
        let name = format!("r{i}");
        let (l, _) = listener().await;
        let addr = l.local_addr().expect("addr");
        let m = builder(&name).client("client").build().expect("replica");
        let b = Arc::new(Behaviour::default());
        let seen = b.clone();
        m.register_single(READ, move |_, p| {
            let n = seen.reads.fetch_add(1, Ordering::Relaxed) + 1;
            let every = seen.slow_every.load(Ordering::Relaxed);
            let by = Duration::from_micros(seen.slow_by_us.load(Ordering::Relaxed));
            async move {
                if every > 0 && n % every == 0 {
                    tokio::time::sleep(by).await;
                }
                Ok::<_, RemoteError>(p)
            }
        })
        .expect("register");
        tokio::spawn(m.clone().serve(l));
        let proxy = Proxy::start_on_own_thread(addr).await;
        proxy.delay(ONE_WAY);
        client = client.peer(name, grid_tests::url_of(proxy.addr()));
        replicas.push(m);
        proxies.push(proxy);
        behaviours.push(b);
    }
    let client = client.build().expect("client");
    grid_tests::connected(&client).await;
    World {
        client,
        replicas,
        proxies,
        behaviours,
    }
}

/// The p50 and p99 of `took`.
fn percentiles(took: &mut [Duration]) -> (Duration, Duration) {
    took.sort();
    (
        grid_tests::percentile(took, 0.50),
        grid_tests::percentile(took, 0.99),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

async fn quorums(w: &World) -> Vec<Duration> {
    let mut took = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        quorum(2, w.client.connections(), |c| async move {
            c.request(READ, grid::Bytes::from_static(b"k")).await
        })
        .await
        .expect("quorum");
        took.push(t.elapsed());
    }
    took
}

async fn singles(w: &World, replica: &str) -> Vec<Duration> {
    let conn = w.client.connection(replica).expect("replica");
    let mut took = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        conn.request(READ, grid::Bytes::from_static(b"k"))
            .await
            .expect("read");
        took.push(t.elapsed());
    }
    took
}

/// Hedged reads to r0 (listed first) and r1 through `hedge`; returns the latencies and the
/// extra requests per call.
async fn hedged(w: &World, hedge: Hedge) -> (Vec<Duration>, f64) {
    let peers = ["r0", "r1"].map(|r| w.client.connection(r).expect("replica"));
    let before = w.client.stats();
    let mut took = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        hedge
            .call(peers.clone(), |c| async move {
                c.request(READ, grid::Bytes::from_static(b"k")).await
            })
            .await
            .expect("hedged read");
        took.push(t.elapsed());
    }
    let after = w.client.stats();
    let extra = (after.hedges_sent - before.hedges_sent) as f64
        / (after.hedged_calls - before.hedged_calls) as f64;
    (took, extra)
}

fn row(what: &str, took: &mut [Duration], baseline_p99: Duration, extra: Option<f64>) {
    let (p50, p99) = percentiles(took);
    let ratio = p99.as_secs_f64() / baseline_p99.as_secs_f64();
    let extra = extra.map_or(String::new(), |e| {
        format!("  extra requests {:.1} %", e * 100.0)
    });
    println!(
        "{what:<44} p50 {:>10}  p99 {:>10}  p99 ÷ baseline {ratio:.2}{extra}",
        ms(p50),
        ms(p99)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let w = world().await;
        println!(
            "round trip {} (emulated), {CALLS} calls a row, one at a time",
            ms(ONE_WAY * 2)
        );
        // Warm up every path.
        quorums(&w).await;

        let mut healthy = quorums(&w).await;
        let (_, base) = percentiles(&mut healthy);
        row(
            "quorum 2 of 3, healthy (baseline)",
            &mut healthy,
            base,
            None,
        );
        w.proxies[2].freeze();
        let mut blackholed = quorums(&w).await;
        row("quorum 2 of 3, r2 blackholed", &mut blackholed, base, None);
        w.proxies[2].thaw();

        let mut single = singles(&w, "r1").await;
        let (_, base) = percentiles(&mut single);
        row(
            "single call to a healthy replica (baseline)",
            &mut single,
            base,
            None,
        );
        let slow = &w.behaviours[0];
        slow.slow_by_us.store(5_000, Ordering::Relaxed);
        slow.slow_every.store(1, Ordering::Relaxed);
        let learning = || Hedge::at_percentile(0.95, Duration::from_millis(2));
        let (mut took, extra) = hedged(&w, learning()).await;
        row(
            "hedged, r0 5 ms slower on every read",
            &mut took,
            base,
            Some(extra),
        );
        slow.slow_every.store(20, Ordering::Relaxed);
        slow.slow_by_us.store(20_000, Ordering::Relaxed);
        let (mut took, extra) = hedged(&w, learning()).await;
        row(
            "hedged, r0 20 ms slower on 1 read in 20",
            &mut took,
            base,
            Some(extra),
        );
        // For comparison: r0 always asked first, so only the hedge cuts its tail.
        let (mut took, extra) = hedged(&w, learning().in_given_order()).await;
        row(
            "  the same, in the given order (r0 first)",
            &mut took,
            base,
            Some(extra),
        );
        slow.slow_every.store(0, Ordering::Relaxed);
        let (mut took, extra) = hedged(&w, learning()).await;
        row("hedged, both healthy", &mut took, base, Some(extra));

        for m in w.replicas.iter().chain([&w.client]) {
            m.shutdown().await;
        }
    });
}
