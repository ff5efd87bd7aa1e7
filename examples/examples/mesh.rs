//! Mesh benchmark: N nodes in one process, every pair connected, against a raw
//! tokio-tungstenite mesh in the same run.
//!
//! `cargo run --release -p grid-examples --example mesh [seconds-of-calls] [N ...]`
//! (default 2 s; N = 8 16 32 64)
//!
//! For each N it reports, for grid and for the raw baseline: the time until every
//! connection is up, all-to-all calls per second (64-byte echoes, one caller per node and
//! peer, all at once), and resident memory per connection (both ends in this process):
//! idle right after connecting, and idle again after the calls (for grid, once a ping
//! interval passed quietly: a quiet connection lets go of the buffers traffic grew; the
//! interval is 2 s here, 10 s by default). Each (stack, N) runs in a
//! child process of its own, so each figure starts from a fresh heap.
//!
//! Memory is private resident memory (heap, stacks: what the connections hold), and for
//! idle connections also all resident memory, which adds the code and other file-backed
//! pages the process faulted in. That part is paid once per process, the first time it
//! runs grid's paths (about 0.8 MiB, shared by any number of nodes and connections), so
//! at small N it dominates the per-connection figure without being a per-connection cost.
//!
//! grid: N managers on loopback, each listing all the others (one WebSocket per pair, one
//! side dials). Raw (bench/raw.rs): N echo servers; for each pair one tokio-tungstenite
//! client (a 16 KiB read buffer, a writer and a reader task) dials the other node's server
//! (one task per accepted socket); its two callers stand for the pair's two directions.

#[path = "bench/raw.rs"]
mod raw;
#[path = "common/resident.rs"]
mod resident;

use std::process::Command;
use std::time::{Duration, Instant};

use grid::{Bytes, Connection, HandlerId, Manager};
use tokio::net::TcpListener;

const ECHO: HandlerId = HandlerId::new(1);
const PAYLOAD: usize = 64;
/// grid's ping interval here (10 s by default), so that idle memory is measured soon.
const PING: Duration = Duration::from_secs(2);

/// What one child process measured.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    connect_ms: f64,
    calls_per_s: f64,
    /// Private resident bytes per connection, idle after connecting.
    idle_bytes: f64,
    /// Private resident bytes per connection, idle after the calls.
    used_bytes: f64,
    /// All resident bytes per connection, idle after connecting.
    idle_all_bytes: f64,
}

impl Figures {
    fn line(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.connect_ms,
            self.calls_per_s,
            self.idle_bytes,
            self.used_bytes,
            self.idle_all_bytes
        )
    }

    fn parse(line: &str) -> Option<Figures> {
        let v: Vec<f64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        match v[..] {
            [connect_ms, calls_per_s, idle_bytes, used_bytes, idle_all_bytes] => Some(Figures {
                connect_ms,
                calls_per_s,
                idle_bytes,
                used_bytes,
                idle_all_bytes,
            }),
            _ => None,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, stack, n, secs] = &args[..] {
        if flag == "--one" {
            let n: usize = n.parse().expect("N");
            let secs: f64 = secs.parse().expect("seconds");
            let figures = runtime().block_on(async {
                match stack.as_str() {
                    "grid" => grid_mesh(n, secs).await,
                    _ => raw_mesh(n, secs).await,
                }
            });
            println!("{}", figures.line());
            return;
        }
    }
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let sizes: Vec<usize> = match args.get(1..) {
        Some(rest) if !rest.is_empty() => rest.iter().filter_map(|s| s.parse().ok()).collect(),
        _ => vec![8, 16, 32, 64],
    };
    println!(
        "mesh: {secs} s of all-to-all 64-byte calls per run; memory per connection is both ends"
    );
    println!("(private resident; \"all\" adds the code pages a process faults in once)");
    println!("| N | conns | stack | connect ms | calls/s | idle KiB/conn | after calls KiB/conn | idle, all resident KiB/conn |");
    println!("|---:|---:|---|---:|---:|---:|---:|---:|");
    for n in sizes {
        let grid = child("grid", n, secs);
        let raw = child("raw", n, secs);
        for (name, f) in [("grid", grid), ("raw-ws", raw)] {
            println!(
                "| {n} | {} | {name} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} |",
                n * (n - 1) / 2,
                f.connect_ms,
                f.calls_per_s,
                f.idle_bytes / 1024.0,
                f.used_bytes / 1024.0,
                f.idle_all_bytes / 1024.0
            );
        }
        println!(
            "| {n} | | grid − raw | | {:.2}× | {:+.1} | {:+.1} | {:+.1} |",
            grid.calls_per_s / raw.calls_per_s,
            (grid.idle_bytes - raw.idle_bytes) / 1024.0,
            (grid.used_bytes - raw.used_bytes) / 1024.0,
            (grid.idle_all_bytes - raw.idle_all_bytes) / 1024.0
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs one (stack, N) in a child process and reads its figures.
fn child(stack: &str, n: usize, secs: f64) -> Figures {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .args(["--one", stack, &n.to_string(), &secs.to_string()])
        .output()
        .expect("run child");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .last()
        .and_then(Figures::parse)
        .unwrap_or_else(|| {
            panic!(
                "{stack} N={n} failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Calls `call` in a loop from every caller at once for `secs`; calls per second.
async fn all_to_all<C, F>(callers: Vec<C>, secs: f64, call: F) -> f64
where
    C: Clone + Send + 'static,
    F: Fn(C) -> futures::future::BoxFuture<'static, ()> + Clone + Send + 'static,
{
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let loops = callers.into_iter().map(|c| {
        let call = call.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                call(c.clone()).await;
                n += 1;
            }
            n
        })
    });
    let mut total = 0;
    for l in futures::future::join_all(loops).await {
        total += l.expect("caller");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Resident bytes: private and all.
#[derive(Clone, Copy)]
struct Rss {
    private: f64,
    all: f64,
}

/// Idle memory: a pause so the sockets and timers settle, then resident bytes.
async fn settled_rss() -> Rss {
    tokio::time::sleep(Duration::from_millis(300)).await;
    Rss {
        private: resident::private_resident_bytes() as f64,
        all: resident::resident_bytes() as f64,
    }
}

/// The figures of one run from its measurements; memory per connection.
fn figures(
    pairs: f64,
    connect_ms: f64,
    calls_per_s: f64,
    before: Rss,
    idle: Rss,
    used: Rss,
) -> Figures {
    Figures {
        connect_ms,
        calls_per_s,
        idle_bytes: (idle.private - before.private) / pairs,
        used_bytes: (used.private - before.private) / pairs,
        idle_all_bytes: (idle.all - before.all) / pairs,
    }
}

async fn grid_mesh(n: usize, secs: f64) -> Figures {
    let pairs = (n * (n - 1) / 2) as f64;
    let before = settled_rss().await;
    let mut listeners = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        urls.push(format!("ws://{}/grid/v1", l.local_addr().expect("addr")));
        listeners.push(l);
    }
    let names: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
    let started = Instant::now();
    let mut managers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let mut b = Manager::builder()
            .local(&names[i])
            .token("mesh")
            .ping_interval(PING);
        for (j, url) in urls.iter().enumerate() {
            if j != i {
                b = b.peer(&names[j], url.clone());
            }
        }
        let m = b.build().expect("build");
        m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        tokio::spawn(m.clone().serve(listener));
        managers.push(m);
    }
    let conns: Vec<Connection> = managers.iter().flat_map(Manager::connections).collect();
    for c in &conns {
        c.wait_for_connect().await.expect("connect");
    }
    let connect_ms = started.elapsed().as_secs_f64() * 1000.0;
    let idle = settled_rss().await;
    let payload = Bytes::from(vec![0xab; PAYLOAD]);
    let calls_per_s = all_to_all(conns.clone(), secs, move |c: Connection| {
        let payload = payload.clone();
        Box::pin(async move {
            let answer = c.request(ECHO, payload).await.expect("call");
            assert_eq!(answer.map(|a| a.len()), Some(PAYLOAD));
        })
    })
    .await;
    // A connection found quiet over a ping interval lets go of what busy traffic grew, at
    // its next frames (the next pings): two intervals and a margin.
    tokio::time::sleep(PING * 2 + Duration::from_millis(500)).await;
    let used = settled_rss().await;
    for m in &managers {
        m.shutdown().await;
    }
    figures(pairs, connect_ms, calls_per_s, before, idle, used)
}

async fn raw_mesh(n: usize, secs: f64) -> Figures {
    let pairs = (n * (n - 1) / 2) as f64;
    let before = settled_rss().await;
    let mut addrs = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        addrs.push(l.local_addr().expect("addr"));
        raw::serve_echo(l);
    }
    let started = Instant::now();
    let dials = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j)));
    let clients =
        futures::future::join_all(dials.map(|(_, j)| raw::RawClient::connect(addrs[j]))).await;
    let connect_ms = started.elapsed().as_secs_f64() * 1000.0;
    let idle = settled_rss().await;
    // Two callers per pair, as grid has one on each side of each connection.
    let callers: Vec<raw::RawClient> = clients
        .iter()
        .flat_map(|c| [c.clone(), c.clone()])
        .collect();
    let calls_per_s = all_to_all(callers, secs, |c: raw::RawClient| {
        Box::pin(async move { c.echo(PAYLOAD).await })
    })
    .await;
    let used = settled_rss().await;
    figures(pairs, connect_ms, calls_per_s, before, idle, used)
}
