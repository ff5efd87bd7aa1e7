//! A fault soak (issue 13): a benchmark run, not a test. Three nodes in one process, with a
//! fault-injecting proxy (`grid_tests::proxy`) on each of the three links between them, and
//! for minutes:
//!
//! - 32 callers make single calls between random pairs of nodes, both ways on every link:
//!   echo calls with self-checking payloads of 16 B to 256 KiB (one in six over 64 KiB, so
//!   chunking is exercised) and deadlines of 1-5 s, and calls to a slow handler (it naps up
//!   to 1.5 s, honouring cancellation) with deadlines of 0.3-2 s; one call in twelve is
//!   dropped by its caller before its deadline (which must cancel the handler);
//! - 8 callers run two-way streams (windows of 8 messages each way) that send 20-300
//!   messages of 16 B to 100 KiB and read the echoes back; one stream in ten is dropped
//!   part way;
//! - each proxy injects a random fault every 1-3 s: cut (orderly close), stall (0.2-2 s of
//!   silence), reset (RST), throttle (64 KiB/s to 2 MiB/s for 2-5 s) or nothing, logged as
//!   it starts. The nodes ping every 300 ms, so a stall is found in 600 ms, and callers ping
//!   their streams every second (a handler side gives up a stream silent for 3 s).
//!
//! What it checks; it exits non-zero, after its summary, on any violation:
//! - every call and stream ends within its deadline plus 5 s (else it is a HANG);
//! - with the right answer (echoes compared byte for byte; handlers check the payloads they
//!   get) or an expected error (`Disconnected`, `DeadlineExceeded`, `Cancelled`,
//!   `Unreachable`), counted by kind; a wrong answer or any other error is fatal;
//! - a stream's echoes arrive complete and in order until an error ends it;
//! - at the end, with the faults stopped: every connection comes back, a chunked call and a
//!   stream succeed both ways on every link, no call, handler or half-received payload is
//!   left, no connection counted a protocol error (the proxy truncates, it never corrupts),
//!   every manager runs as many tasks as before the load, each proxy carries one link (no
//!   socket left behind), the live heap is within 2x + 16 MiB of its level after warm-up and
//!   within 4 MiB of its level before the load, and after shutdown no task and no proxied
//!   link is left.
//!
//! Every 10 s (5 s in runs under a minute) a line gives calls and streams by outcome, faults
//! by kind, reconnects, resident memory and the live heap (this binary counts its
//! allocations: `grid_tests::alloc::Counting`); a summary table follows at the end. A call or
//! stream that ends `Cancelled` or `Unreachable` (rarer than the other two) is logged with
//! the fault then in force on its link. A fatal finding prints the call, the connections'
//! states and figures, and the last faults.
//!
//! Run: `cargo bench -p grid-tests --bench soak -- [seconds]` (default 180). The seed of the
//! random schedules (faults, calls, payloads) is printed; `SOAK_SEED=<seed>` repeats them,
//! though how they interleave with the nodes' tasks is up to the scheduler.

mod end_checks;
mod faults;
mod load;
mod payload;
mod report;
mod tally;
mod world;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use grid::{HandlerId, Manager};
use grid_tests::{alloc, resident_bytes};
use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};

use crate::faults::faults;
use crate::load::{caller, streamer};
use crate::payload::Rng;
use crate::report::{report_line, sample, summary, Figures};
use crate::tally::Tally;
use crate::world::{start, stopped, World};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const ECHO: HandlerId = HandlerId::new(1);
const SLOW: HandlerId = HandlerId::new(2);
const STREAM_ECHO: HandlerId = HandlerId::new(3);

const NODES: [&str; 3] = ["north", "south", "west"];
const PING: Duration = Duration::from_millis(300);
const STREAM_PING: Duration = Duration::from_secs(1);
const CALLERS: usize = 32;
const STREAMERS: usize = 8;
/// The cap of the stream echo's input window: small, so the soak's streams wait on credit.
const STREAM_WINDOW: u64 = 64 * 1024;
/// How long past its deadline a call or stream may take to end before it is a hang.
const SLACK: Duration = Duration::from_secs(5);
/// A call that ends this long past its deadline is counted as late (not fatal).
const LATE: Duration = Duration::from_secs(1);
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let mut secs = 180;
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        match arg.parse() {
            Ok(s) if s > 0 => secs = s,
            _ => {
                eprintln!("usage: cargo bench -p grid-tests --bench soak -- [seconds]");
                std::process::exit(2);
            }
        }
    }
    let seed = match std::env::var("SOAK_SEED") {
        Ok(s) => parse_seed(&s).unwrap_or_else(|| {
            eprintln!("SOAK_SEED must be a number (decimal or 0x-hex), not {s:?}");
            std::process::exit(2);
        }),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Rng::new(now.as_nanos() as u64 ^ u64::from(std::process::id())).next()
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let passed = runtime.block_on(soak(Duration::from_secs(secs), seed));
    drop(runtime);
    if !passed {
        std::process::exit(1);
    }
}

fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Runs the soak; whether it passed.
async fn soak(duration: Duration, seed: u64) -> bool {
    println!(
        "soak: {} s, seed {seed:#x} (repeat with SOAK_SEED={seed:#x}); nodes {:?}, a proxy on \
         each link; ping every {} ms; {CALLERS} callers, {STREAMERS} streamers",
        duration.as_secs(),
        NODES,
        PING.as_millis()
    );
    let tally = Arc::new(Tally::default());
    let (managers, links, serving) = start(&tally).await;
    // A connection says Connected just before it starts its socket's reader and writer
    // tasks: count the tasks once they are all running.
    sleep(PING).await;
    let tasks_before: Vec<usize> = managers.iter().map(Manager::running_tasks).collect();
    let heap_before = alloc::live();
    let n_links = links.len();
    let w = Arc::new(World {
        start: Instant::now(),
        managers,
        links,
        tally,
        stop: watch::Sender::new(false),
        recent: Mutex::default(),
        active: Mutex::new(vec![None; n_links]),
    });
    println!(
        "connected; links {:?}; tasks per node {tasks_before:?}; heap {:.1} MiB, rss {:.1} MiB",
        w.links.iter().map(|l| &l.name).collect::<Vec<_>>(),
        heap_before as f64 / MIB,
        resident_bytes() as f64 / MIB
    );

    let mut r = Rng::new(seed);
    let mut fault_tasks = Vec::new();
    for link in 0..w.links.len() {
        fault_tasks.push(tokio::spawn(faults(w.clone(), link, r.fork())));
    }
    let mut load = Vec::new();
    for _ in 0..CALLERS {
        load.push(tokio::spawn(caller(w.clone(), r.fork())));
    }
    for _ in 0..STREAMERS {
        load.push(tokio::spawn(streamer(w.clone(), r.fork())));
    }

    // Reports until the time is up or something fatal stops the run.
    let every = Duration::from_secs(if duration.as_secs() < 60 { 5 } else { 10 });
    let warm_up = Duration::from_secs((duration.as_secs() / 4).clamp(5, 30));
    let mut samples = Vec::new();
    let mut heap_warm = None;
    alloc::reset_peak();
    let mut next = w.start + every;
    let end = w.start + duration;
    loop {
        let until = next.min(end);
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = stopped(w.stop.subscribe()) => break,
        }
        let s = sample(&w);
        report_line(&w, &s);
        if heap_warm.is_none() && w.start.elapsed() >= warm_up {
            heap_warm = Some(s.heap);
        }
        samples.push(s);
        if Instant::now() >= end {
            break;
        }
        next += every;
    }
    let ran = w.start.elapsed();
    w.stop.send_replace(true);
    let heap_warm = heap_warm.unwrap_or_else(alloc::live);

    // Everything stops: the faults (leaving the links healthy) and the load (each task
    // finishes its call or stream first, which is bounded by the deadlines).
    for (i, t) in fault_tasks.into_iter().enumerate() {
        match timeout(Duration::from_secs(10), t).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => w.fatal(format!("the fault task of link {i} failed: {e}")),
            Err(_) => w.fatal(format!("the fault task of link {i} did not stop")),
        }
    }
    let load_stops = Duration::from_secs(15) + SLACK + Duration::from_secs(5);
    for t in load {
        match timeout(load_stops, t).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => w.fatal(format!("a load task failed: {e}")),
            Err(_) => w.fatal("a load task did not stop".into()),
        }
    }
    println!("[{:6.1} s] load and faults stopped", w.elapsed());

    // Every connection comes back and works both ways; nothing is left in flight, the tasks
    // go back to where they were, no socket is left behind, the heap comes back down; then
    // shutdown leaves nothing running.
    end_checks::reconnect(&w).await;
    end_checks::idle(&w).await;
    let tasks_after = end_checks::tasks_settled(&w, &tasks_before).await;
    end_checks::no_protocol_errors(&w);
    end_checks::one_link_each(&w).await;
    let open_before_shutdown: Vec<usize> = w.links.iter().map(|l| l.proxy.open_links()).collect();
    let heap_after = end_checks::heap_after(&w, heap_before, heap_warm).await;
    let rss_after = resident_bytes();
    end_checks::shut_down(&w, serving).await;

    summary(
        &w,
        &samples,
        ran,
        Figures {
            heap_before,
            heap_warm,
            heap_after,
            rss_after,
            tasks_before,
            tasks_after,
            tasks_shut_down: w.managers.iter().map(Manager::running_tasks).collect(),
            open_before_shutdown,
            open_after_shutdown: w.links.iter().map(|l| l.proxy.open_links()).collect(),
        },
    );
    let fatal = w.tally.fatal.lock().expect("fatal");
    if fatal.is_empty() {
        println!("PASSED");
        true
    } else {
        println!("FAILED: {} finding(s):", fatal.len());
        for f in fatal.iter() {
            println!("  - {f}");
        }
        println!("repeat with SOAK_SEED={seed:#x}");
        false
    }
}
