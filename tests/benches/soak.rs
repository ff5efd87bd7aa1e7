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

use std::collections::{BTreeMap, VecDeque};
use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::{
    dials, CallContext, Connection, Error, HandlerId, Manager, RemoteError, StreamCall,
    StreamHandler,
};
use grid_tests::proxy::{Fault, Proxy};
use grid_tests::{alloc, builder, listener, resident_bytes, url_of};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

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
const STREAM_WINDOW: u32 = 8;
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

/// splitmix64: small, fast, and enough for schedules and payloads.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An independent generator for a task, drawn from this one.
    fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
}

/// Bytes of a payload's header: its seed and its length.
const HEADER: usize = 12;

/// A self-checking payload of `len` bytes (at least [`HEADER`]): its seed, its length, then
/// bytes drawn from the seed.
fn payload(seed: u64, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&seed.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    let mut r = Rng::new(seed);
    while v.len() < len {
        let word = r.next().to_le_bytes();
        let n = (len - v.len()).min(8);
        v.extend_from_slice(&word[..n]);
    }
    Bytes::from(v)
}

/// The seed of a payload made by [`payload`], if it is intact.
fn check(p: &[u8]) -> Result<u64, String> {
    if p.len() < HEADER {
        return Err(format!("{} bytes, shorter than a header", p.len()));
    }
    let seed = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(p[8..HEADER].try_into().expect("4 bytes")) as usize;
    if len != p.len() {
        return Err(format!("{} bytes where its header says {len}", p.len()));
    }
    let mut r = Rng::new(seed);
    for (i, chunk) in p[HEADER..].chunks(8).enumerate() {
        if chunk != &r.next().to_le_bytes()[..chunk.len()] {
            return Err(format!(
                "{} bytes of seed {seed:#x}, wrong from byte {}",
                p.len(),
                HEADER + 8 * i
            ));
        }
    }
    Ok(seed)
}

/// A payload in a few words, for a report.
fn describe(p: Option<&[u8]>) -> String {
    match p.map(check) {
        None => "no payload".into(),
        Some(Ok(seed)) => format!("{} bytes of seed {seed:#x}", p.map_or(0, <[u8]>::len)),
        Some(Err(why)) => format!("a corrupt payload ({why})"),
    }
}

/// A single call's payload size: half under 1 KiB, a third up to 64 KiB, the rest (one in
/// six) over 64 KiB, travelling in chunks.
fn call_size(r: &mut Rng) -> usize {
    let n = match r.below(100) {
        0..=49 => r.range(16, 1024),
        50..=84 => r.range(1025, 64 * 1024),
        _ => r.range(64 * 1024 + 1, 256 * 1024),
    };
    n as usize
}

/// Message `i` of the stream with seed `seed`: mostly small, one in twenty over 64 KiB.
fn message(seed: u64, i: u64) -> Bytes {
    let mut r = Rng::new(seed ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let own_seed = r.next();
    let len = match r.below(100) {
        0..=69 => r.range(16, 1024),
        70..=94 => r.range(1025, 16 * 1024),
        _ => r.range(64 * 1024 + 1, 100 * 1024),
    };
    payload(own_seed, len as usize)
}

/// Counts by name.
#[derive(Default)]
struct Counts(Mutex<BTreeMap<String, u64>>);

impl Counts {
    fn add(&self, name: &str) {
        *self
            .0
            .lock()
            .expect("counts")
            .entry(name.to_owned())
            .or_default() += 1;
    }

    fn total(&self) -> u64 {
        self.0.lock().expect("counts").values().sum()
    }

    /// "a 3, b 1", or "-".
    fn show(&self) -> String {
        let counts = self.0.lock().expect("counts");
        if counts.is_empty() {
            return "-".into();
        }
        counts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the run counted.
#[derive(Default)]
struct Tally {
    calls_ok: AtomicU64,
    call_bytes: AtomicU64,
    calls_failed: Counts,
    calls_given_up: AtomicU64,
    calls_late: AtomicU64,
    streams_ok: AtomicU64,
    streams_failed: Counts,
    streams_given_up: AtomicU64,
    streams_late: AtomicU64,
    echoes: AtomicU64,
    faults: Counts,
    /// Slow handlers that ended before their answer (cancelled, deadline, lost socket).
    handlers_stopped: AtomicU64,
    hangs: AtomicU64,
    wrong: AtomicU64,
    unexpected: AtomicU64,
    fatal: Mutex<Vec<String>>,
}

fn n(a: &AtomicU64) -> u64 {
    a.load(Relaxed)
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Relaxed);
}

/// One proxied link: the dialer reaches the acceptor through the proxy.
struct Link {
    name: String,
    dialer: usize,
    acceptor: usize,
    proxy: Proxy,
}

/// Everything the tasks of the run share.
struct World {
    start: Instant,
    managers: Vec<Manager>,
    links: Vec<Link>,
    tally: Arc<Tally>,
    /// Set when the run ends (its time is up, or something fatal was found).
    stop: watch::Sender<bool>,
    /// The last faults injected, for a fatal report.
    recent: Mutex<VecDeque<String>>,
    /// The fault in force on each link (a stall or a throttle), if any.
    active: Mutex<Vec<Option<String>>>,
}

impl World {
    fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    fn log_fault(&self, line: String) {
        println!("{line}");
        let mut recent = self.recent.lock().expect("recent");
        if recent.len() == 12 {
            recent.pop_front();
        }
        recent.push_back(line);
    }

    /// Logs a call or stream that ended with an expected error other than `Disconnected` or
    /// `DeadlineExceeded` (rarer, and worth placing among the faults).
    /// `from` and `to` are the nodes of the call; the link's fault in force is shown.
    fn log_unusual(&self, e: &Error, (from, to): (usize, usize), what: impl FnOnce() -> String) {
        if matches!(e, Error::Disconnected | Error::DeadlineExceeded) {
            return;
        }
        let link = self
            .links
            .iter()
            .position(|l| {
                (l.dialer, l.acceptor) == (from, to) || (l.dialer, l.acceptor) == (to, from)
            })
            .expect("a link between two nodes");
        let active = self.active.lock().expect("active")[link].clone();
        println!(
            "[{:6.1} s] {}: {e:?} (on {}: {})",
            self.elapsed(),
            what(),
            self.links[link].name,
            active.as_deref().unwrap_or("no fault in force")
        );
    }

    /// Records a fatal finding, prints what helps to diagnose it, and stops the run.
    fn fatal(&self, what: String) {
        let mut report = format!("\n!! FATAL at {:.1} s: {what}\n", self.elapsed());
        report.push_str("   last faults:\n");
        for line in self.recent.lock().expect("recent").iter() {
            report.push_str(&format!("     {line}\n"));
        }
        report.push_str(&self.connections_report());
        println!("{report}");
        self.tally.fatal.lock().expect("fatal").push(what);
        self.stop.send_replace(true);
    }

    /// Every connection's state, last error and figures.
    fn connections_report(&self) -> String {
        let mut s = String::from("   connections:\n");
        for m in &self.managers {
            for c in m.connections() {
                s.push_str(&format!(
                    "     {} -> {}: {:?}, last error {:?}, {:?}\n",
                    m.local(),
                    c.remote(),
                    c.state(),
                    c.last_error().map(|e| e.to_string()),
                    c.stats()
                ));
            }
            s.push_str(&format!(
                "     {}: {} tasks\n",
                m.local(),
                m.running_tasks()
            ));
        }
        for l in &self.links {
            s.push_str(&format!(
                "     link {}: {} open through the proxy\n",
                l.name,
                l.proxy.open_links()
            ));
        }
        s
    }

    fn connection(&self, from: usize, to: usize) -> Connection {
        self.managers[from]
            .connection(NODES[to])
            .expect("a configured peer")
    }

    /// Reconnections so far, counted by each link's dialer.
    fn reconnects(&self) -> u64 {
        self.links
            .iter()
            .map(|l| self.connection(l.dialer, l.acceptor).stats().reconnects)
            .sum()
    }
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::Disconnected => "Disconnected",
        Error::DeadlineExceeded => "DeadlineExceeded",
        Error::Cancelled => "Cancelled",
        Error::Unreachable(_) => "Unreachable",
        Error::StreamEnded => "StreamEnded",
        Error::Busy(_) => "Busy",
        Error::Remote(_) => "Remote",
        Error::Protocol(_) => "Protocol",
        Error::Closed => "Closed",
        _ => "other",
    }
}

/// The errors a call may end with when links fail.
fn expected(e: &Error) -> bool {
    matches!(
        e,
        Error::Disconnected | Error::DeadlineExceeded | Error::Cancelled | Error::Unreachable(_)
    )
}

/// Two different nodes.
fn pair(r: &mut Rng) -> (usize, usize) {
    let from = r.below(NODES.len() as u64) as usize;
    let to = (from + 1 + r.below(NODES.len() as u64 - 1) as usize) % NODES.len();
    (from, to)
}

/// Counts a slow handler that ends before its answer, when dropped armed.
struct Stopped(Option<Arc<Tally>>);

impl Stopped {
    /// The handler answered.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            bump(&t.handlers_stopped);
        }
    }
}

fn register(m: &Manager, tally: &Arc<Tally>) {
    m.register_single(ECHO, |_, p: Option<Bytes>| async move {
        let p = p.unwrap_or_default();
        check(&p).map_err(|why| RemoteError::new(format!("corrupt request: {why}")))?;
        Ok(p)
    })
    .expect("register echo");
    let tally = tally.clone();
    m.register_single(SLOW, move |ctx: CallContext, p: Option<Bytes>| {
        let mut stopped = Stopped(Some(tally.clone()));
        async move {
            let p = p.unwrap_or_default();
            let seed =
                check(&p).map_err(|why| RemoteError::new(format!("corrupt request: {why}")))?;
            tokio::select! {
                () = sleep(Duration::from_millis(seed % 1500)) => {}
                () = ctx.cancelled() => return Err(RemoteError::new("cancelled")),
            }
            stopped.disarm();
            Ok(p)
        }
    })
    .expect("register slow");
    m.register_stream(
        STREAM_ECHO,
        StreamHandler::new(|mut call: StreamCall| async move {
            let mut input = call.take_input()?;
            while let Some(m) = input.next().await {
                let m = m?;
                check(&m)
                    .map_err(|why| RemoteError::new(format!("corrupt stream message: {why}")))?;
                call.output.send(m).await?;
            }
            Ok(())
        })
        .in_capacity(STREAM_WINDOW)
        .out_capacity(STREAM_WINDOW),
    )
    .expect("register stream echo");
}

/// Starts the nodes, each link through its own proxy, and waits until all are connected.
async fn start(tally: &Arc<Tally>) -> (Vec<Manager>, Vec<Link>, Vec<JoinHandle<grid::Result<()>>>) {
    let mut listeners = Vec::new();
    for _ in NODES {
        listeners.push(listener().await);
    }
    let mut links = Vec::new();
    for (i, a) in NODES.iter().enumerate() {
        for (j, b) in NODES.iter().enumerate().skip(i + 1) {
            let (dialer, acceptor) = if dials(a, b) { (i, j) } else { (j, i) };
            let target = listeners[acceptor].0.local_addr().expect("addr");
            links.push(Link {
                name: format!("{}->{}", NODES[dialer], NODES[acceptor]),
                dialer,
                acceptor,
                proxy: Proxy::start(target).await,
            });
        }
    }
    let mut managers = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        let mut b = builder(name)
            .ping_interval(PING)
            .stream_ping_interval(STREAM_PING);
        for (j, peer) in NODES.iter().enumerate().filter(|(j, _)| *j != i) {
            let url = match links.iter().find(|l| l.dialer == i && l.acceptor == j) {
                Some(l) => url_of(l.proxy.addr()),
                None => listeners[j].1.clone(),
            };
            b = b.peer(*peer, url);
        }
        let m = b.build().expect("build manager");
        register(&m, tally);
        managers.push(m);
    }
    let mut serving = Vec::new();
    for (m, (l, _)) in managers.iter().zip(listeners) {
        serving.push(tokio::spawn(m.clone().serve(l)));
    }
    for m in &managers {
        for c in m.connections() {
            timeout(Duration::from_secs(10), c.wait_for_connect())
                .await
                .expect("connect within 10 s")
                .expect("connect");
        }
    }
    (managers, links, serving)
}

/// A caller of single calls, until the run stops.
async fn caller(w: Arc<World>, mut r: Rng) {
    while !w.stopping() {
        let (from, to) = pair(&mut r);
        let conn = w.connection(from, to);
        let seed = r.next();
        let slow = r.chance(25);
        let (handler, body, deadline) = if slow {
            let len = r.range(HEADER as u64, 512) as usize;
            (SLOW, payload(seed, len), r.millis(300, 2000))
        } else {
            (ECHO, payload(seed, call_size(&mut r)), r.millis(1000, 5000))
        };
        let give_up = r
            .chance(8)
            .then(|| r.millis(1, deadline.as_millis() as u64));
        let what = format!(
            "{} -> {}: {} call of {} bytes (seed {seed:#x}, deadline {} ms)",
            NODES[from],
            NODES[to],
            if slow { "slow" } else { "echo" },
            body.len(),
            deadline.as_millis()
        );
        let started = Instant::now();
        let call = conn
            .request(handler, body.clone())
            .deadline(deadline)
            .into_future();
        let result = match give_up {
            Some(after) => match timeout(after, call).await {
                Ok(result) => result,
                Err(_) => {
                    bump(&w.tally.calls_given_up);
                    continue;
                }
            },
            None => match timeout(deadline + SLACK, call).await {
                Ok(result) => result,
                Err(_) => {
                    bump(&w.tally.hangs);
                    w.fatal(format!(
                        "HANG: {what} had not ended {} s after its deadline",
                        SLACK.as_secs()
                    ));
                    return;
                }
            },
        };
        if started.elapsed() > deadline + LATE {
            bump(&w.tally.calls_late);
        }
        match result {
            Ok(Some(answer)) if answer == body => {
                bump(&w.tally.calls_ok);
                w.tally.call_bytes.fetch_add(body.len() as u64, Relaxed);
            }
            Ok(answer) => {
                bump(&w.tally.wrong);
                w.fatal(format!(
                    "WRONG ANSWER: {what} was answered with {}",
                    describe(answer.as_deref())
                ));
                return;
            }
            Err(e) if expected(&e) => {
                w.tally.calls_failed.add(kind(&e));
                w.log_unusual(&e, (from, to), || what.clone());
                if e == Error::Disconnected {
                    // A caller would wait a moment before trying again.
                    sleep(r.millis(10, 50)).await;
                }
            }
            Err(e) => {
                bump(&w.tally.unexpected);
                w.fatal(format!("UNEXPECTED ERROR: {what} failed with {e:?}"));
                return;
            }
        }
    }
}

/// How a stream ended.
enum Ended {
    /// Every echo arrived, in order, and the stream ended cleanly.
    Complete,
    /// The caller dropped it part way, as planned.
    GivenUp,
    /// It failed with this error after this many echoes.
    Failed(Error, u64),
    Wrong(String),
}

/// Opens a stream, sends `n` messages and reads their echoes, concurrently; gives it up
/// after `give_up_at` echoes if set.
async fn run_stream(
    conn: &Connection,
    seed: u64,
    n: u64,
    deadline: Duration,
    give_up_at: Option<u64>,
    tally: &Tally,
) -> Ended {
    let opened = conn
        .open_stream(STREAM_ECHO, payload(seed, 16))
        .deadline(deadline)
        .await;
    let (mut requests, mut responses) = match opened.and_then(grid::Stream::split) {
        Ok(ends) => ends,
        Err(e) => return Ended::Failed(e, 0),
    };
    let send = async move {
        for i in 0..n {
            requests.send(message(seed, i)).await?;
        }
        requests.finish().await
    };
    let receive = async {
        for i in 0..n {
            if give_up_at == Some(i) {
                return Ended::GivenUp;
            }
            match responses.next().await {
                Some(Ok(m)) if m == message(seed, i) => bump(&tally.echoes),
                Some(Ok(m)) => {
                    return Ended::Wrong(format!(
                        "echo {i} of {n} is {}, expected {}",
                        describe(Some(&m[..])),
                        describe(Some(&message(seed, i)[..]))
                    ))
                }
                Some(Err(e)) => return Ended::Failed(e, i),
                None => {
                    return Ended::Wrong(format!(
                        "the stream ended cleanly after {i} of {n} echoes"
                    ))
                }
            }
        }
        match responses.next().await {
            None => Ended::Complete,
            Some(Err(e)) => Ended::Failed(e, n),
            Some(Ok(m)) => Ended::Wrong(format!(
                "an echo beyond the {n} sent: {}",
                describe(Some(&m[..]))
            )),
        }
    };
    tokio::pin!(send, receive);
    let mut sent = None;
    let ended = loop {
        tokio::select! {
            s = &mut send, if sent.is_none() => sent = Some(s),
            ended = &mut receive => break ended,
        }
    };
    match (ended, sent) {
        (Ended::Complete, Some(Err(e))) => Ended::Wrong(format!(
            "every echo arrived and the stream ended cleanly, but the sender failed: {e:?}"
        )),
        (ended, _) => ended,
    }
}

/// A caller of streams, until the run stops.
async fn streamer(w: Arc<World>, mut r: Rng) {
    while !w.stopping() {
        let (from, to) = pair(&mut r);
        let conn = w.connection(from, to);
        let seed = r.next();
        let n = r.range(20, 300);
        let deadline = r.millis(5000, 15000);
        let give_up_at = r.chance(10).then(|| r.below(n));
        let what = format!(
            "{} -> {}: stream of {n} messages (seed {seed:#x}, deadline {} ms)",
            NODES[from],
            NODES[to],
            deadline.as_millis()
        );
        let started = Instant::now();
        let run = run_stream(&conn, seed, n, deadline, give_up_at, &w.tally);
        let ended = match timeout(deadline + SLACK, run).await {
            Ok(ended) => ended,
            Err(_) => {
                bump(&w.tally.hangs);
                w.fatal(format!(
                    "HANG: {what} had not ended {} s after its deadline",
                    SLACK.as_secs()
                ));
                return;
            }
        };
        if started.elapsed() > deadline + LATE {
            bump(&w.tally.streams_late);
        }
        match ended {
            Ended::Complete => bump(&w.tally.streams_ok),
            Ended::GivenUp => bump(&w.tally.streams_given_up),
            Ended::Failed(e, echoes) if expected(&e) => {
                w.tally.streams_failed.add(kind(&e));
                w.log_unusual(&e, (from, to), || {
                    format!(
                        "{what}: {echoes} echoes in {} ms, then",
                        started.elapsed().as_millis()
                    )
                });
                if e == Error::Disconnected {
                    sleep(r.millis(10, 50)).await;
                }
            }
            Ended::Failed(e, echoes) => {
                bump(&w.tally.unexpected);
                w.fatal(format!(
                    "UNEXPECTED ERROR: {what} failed after {echoes} echoes with {e:?}"
                ));
                return;
            }
            Ended::Wrong(why) => {
                bump(&w.tally.wrong);
                w.fatal(format!("WRONG ANSWER: {what}: {why}"));
                return;
            }
        }
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Injects a random fault on one link every 1-3 s until the run stops, then leaves the link
/// healthy.
async fn faults(w: Arc<World>, link: usize, mut r: Rng) {
    let l = &w.links[link];
    loop {
        tokio::select! {
            () = sleep(r.millis(1000, 3000)) => {}
            () = stopped(w.stop.subscribe()) => break,
        }
        let fault = match r.below(5) {
            0 => Some(Fault::Cut),
            1 => Some(Fault::Stall(r.millis(200, 2000))),
            2 => Some(Fault::Reset),
            3 => Some(Fault::Throttle {
                bytes_per_sec: (64 * 1024) << r.below(6),
                time: r.millis(2000, 5000),
            }),
            _ => None,
        };
        let name = match fault {
            Some(Fault::Cut) => "cut",
            Some(Fault::Reset) => "reset",
            Some(Fault::Stall(_)) => "stall",
            Some(Fault::Throttle { .. }) => "throttle",
            None => "none",
        };
        w.tally.faults.add(name);
        let Some(fault) = fault else { continue };
        let started = w.elapsed();
        w.log_fault(format!("[{started:6.1} s] {}: {fault}", l.name));
        w.active.lock().expect("active")[link] = Some(format!("{fault}, from {started:.1} s"));
        tokio::select! {
            () = l.proxy.inject(fault) => {}
            () = stopped(w.stop.subscribe()) => break,
        }
        w.active.lock().expect("active")[link] = None;
    }
    l.proxy.thaw();
    l.proxy.throttle(None);
}

/// One line of the report.
struct Sample {
    t: f64,
    calls_ok: u64,
    calls_failed: u64,
    streams_ok: u64,
    faults: u64,
    reconnects: u64,
    rss: usize,
    heap: usize,
    peak: usize,
}

fn sample(w: &World) -> Sample {
    let t = &w.tally;
    let s = Sample {
        t: w.elapsed(),
        calls_ok: n(&t.calls_ok),
        calls_failed: t.calls_failed.total(),
        streams_ok: n(&t.streams_ok),
        faults: t.faults.total(),
        reconnects: w.reconnects(),
        rss: resident_bytes(),
        heap: alloc::live(),
        peak: alloc::peak(),
    };
    alloc::reset_peak();
    s
}

fn report_line(w: &World, s: &Sample) {
    let t = &w.tally;
    println!(
        "[{:6.1} s] calls {} ok, {} failed ({}), {} given up | streams {} ok, {} failed ({}), {} given up | \
         faults {} ({}) | reconnects {} | rss {:.1} MiB, heap {:.1} MiB (peak {:.1})",
        s.t,
        s.calls_ok,
        s.calls_failed,
        t.calls_failed.show(),
        n(&t.calls_given_up),
        s.streams_ok,
        t.streams_failed.total(),
        t.streams_failed.show(),
        n(&t.streams_given_up),
        s.faults,
        t.faults.show(),
        s.reconnects,
        s.rss as f64 / MIB,
        s.heap as f64 / MIB,
        s.peak as f64 / MIB,
    );
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

    // Every connection comes back, and works both ways on every link.
    for m in &w.managers {
        for c in m.connections() {
            if timeout(Duration::from_secs(15), c.wait_for_connect())
                .await
                .is_err()
            {
                w.fatal(format!(
                    "{} -> {} did not reconnect within 15 s of the faults stopping",
                    m.local(),
                    c.remote()
                ));
            }
        }
    }
    let mut final_checks = 0;
    for from in 0..NODES.len() {
        for to in (0..NODES.len()).filter(|to| *to != from) {
            final_checks += final_check(&w, from, to).await;
        }
    }
    println!(
        "[{:6.1} s] reconnected; {final_checks} chunked calls and streams after the faults succeeded",
        w.elapsed()
    );

    // Nothing left in flight, the tasks back to where they were.
    for m in &w.managers {
        for c in m.connections() {
            let waited = timeout(Duration::from_secs(10), c.wait_idle()).await;
            let s = c.stats();
            if waited.is_err()
                || (s.in_flight_calls, s.in_flight_handlers, s.assembling_bytes) != (0, 0, 0)
            {
                w.fatal(format!(
                    "LEAK: {} -> {} not idle after the load: {s:?}",
                    m.local(),
                    c.remote()
                ));
            }
        }
    }
    let mut tasks_after = Vec::new();
    for (m, before) in w.managers.iter().zip(&tasks_before) {
        let settled = timeout(Duration::from_secs(5), async {
            while m.running_tasks() != *before {
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        tasks_after.push(m.running_tasks());
        if settled.is_err() {
            w.fatal(format!(
                "LEAK: {} runs {} tasks after the load, {before} before it",
                m.local(),
                m.running_tasks()
            ));
        }
    }
    for m in &w.managers {
        for c in m.connections() {
            let errors = c.stats().protocol_errors;
            if errors != 0 {
                w.fatal(format!(
                    "{} -> {} counted {errors} protocol errors (last error {:?}); the proxy never \
                     corrupts bytes",
                    m.local(),
                    c.remote(),
                    c.last_error()
                ));
            }
        }
    }
    // A socket replaced or lost is closed (a replaced one after its close frame, within 1 s).
    for l in &w.links {
        let one = timeout(Duration::from_secs(3), async {
            while l.proxy.open_links() != 1 {
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if one.is_err() {
            w.fatal(format!(
                "LEAK: link {} has {} links open through its proxy when idle, not 1",
                l.name,
                l.proxy.open_links()
            ));
        }
    }
    let open_before_shutdown: Vec<usize> = w.links.iter().map(|l| l.proxy.open_links()).collect();

    // The heap, once quiet connections let go of their buffers (checked every ping interval).
    sleep(PING * 4).await;
    let heap_after = alloc::live();
    let heap_bound = 2 * heap_warm + 16 * 1024 * 1024;
    if heap_after > heap_bound {
        w.fatal(format!(
            "LEAK: live heap {:.1} MiB after the run, over 2 x {:.1} MiB (after warm-up) + 16 MiB",
            heap_after as f64 / MIB,
            heap_warm as f64 / MIB
        ));
    }
    if heap_after > heap_before + 4 * 1024 * 1024 {
        w.fatal(format!(
            "LEAK: live heap {:.1} MiB after the run, over {:.1} MiB before it + 4 MiB",
            heap_after as f64 / MIB,
            heap_before as f64 / MIB
        ));
    }
    let rss_after = resident_bytes();

    // Shutdown: no task left, no link left open through the proxies.
    for m in &w.managers {
        if timeout(Duration::from_secs(10), m.shutdown())
            .await
            .is_err()
        {
            w.fatal(format!("{} did not shut down within 10 s", m.local()));
        }
        if m.running_tasks() != 0 {
            w.fatal(format!(
                "LEAK: {} runs {} tasks after shutdown",
                m.local(),
                m.running_tasks()
            ));
        }
    }
    for s in serving {
        if timeout(Duration::from_secs(5), s).await.is_err() {
            w.fatal("a node's serve task did not end after its shutdown".into());
        }
    }
    for l in &w.links {
        let closed = timeout(Duration::from_secs(5), async {
            while l.proxy.open_links() != 0 {
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if closed.is_err() {
            w.fatal(format!(
                "LEAK: link {} has {} links open through its proxy after shutdown",
                l.name,
                l.proxy.open_links()
            ));
        }
    }

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

/// After the faults: a chunked echo and a stream from `from` to `to` must succeed. A call
/// may still meet a socket that was being replaced as the faults stopped (it then fails with
/// `Disconnected`) and is tried again, for up to 10 s. Returns how many succeeded.
async fn final_check(w: &World, from: usize, to: usize) -> usize {
    let conn = w.connection(from, to);
    let route = format!("{} -> {}", NODES[from], NODES[to]);
    let give_up = Instant::now() + Duration::from_secs(10);
    let body = payload(from as u64 * 10 + to as u64, 100 * 1024);
    let mut ok = 0;
    loop {
        let call = conn
            .request(ECHO, body.clone())
            .deadline(Duration::from_secs(5))
            .into_future();
        match timeout(Duration::from_secs(5) + SLACK, call).await {
            Ok(Ok(Some(answer))) if answer == body => break ok += 1,
            Ok(Err(Error::Disconnected)) if Instant::now() < give_up => {
                sleep(Duration::from_millis(50)).await;
            }
            Ok(other) => {
                w.fatal(format!(
                    "after the faults, a 100 KiB echo {route} ended with {:?}",
                    other.map(|a| describe(a.as_deref()))
                ));
                break;
            }
            Err(_) => {
                w.fatal(format!("HANG: after the faults, a 100 KiB echo {route}"));
                break;
            }
        }
    }
    loop {
        let run = run_stream(&conn, 7, 50, Duration::from_secs(5), None, &w.tally);
        match timeout(Duration::from_secs(5) + SLACK, run).await {
            Ok(Ended::Complete) => break ok += 1,
            Ok(Ended::Failed(Error::Disconnected, _)) if Instant::now() < give_up => {
                sleep(Duration::from_millis(50)).await;
            }
            Ok(Ended::Failed(e, _)) => {
                w.fatal(format!("after the faults, a stream {route} failed: {e:?}"));
                break;
            }
            Ok(Ended::Wrong(why)) => {
                w.fatal(format!(
                    "WRONG ANSWER: after the faults, a stream {route}: {why}"
                ));
                break;
            }
            Ok(Ended::GivenUp) => unreachable!("not given up"),
            Err(_) => {
                w.fatal(format!("HANG: after the faults, a stream {route}"));
                break;
            }
        }
    }
    ok
}

/// Figures from the end of the run, for the summary.
struct Figures {
    heap_before: usize,
    heap_warm: usize,
    heap_after: usize,
    rss_after: usize,
    tasks_before: Vec<usize>,
    tasks_after: Vec<usize>,
    tasks_shut_down: Vec<usize>,
    open_before_shutdown: Vec<usize>,
    open_after_shutdown: Vec<usize>,
}

fn summary(w: &World, samples: &[Sample], ran: Duration, f: Figures) {
    let t = &w.tally;
    let secs = ran.as_secs_f64();
    println!("\n== summary: {secs:.0} s of load");
    println!(
        "calls      {} ok ({:.0}/s, {:.1} MiB echoed), {} failed: {}; {} given up by their caller; {} ended over 1 s past their deadline",
        n(&t.calls_ok),
        n(&t.calls_ok) as f64 / secs,
        n(&t.call_bytes) as f64 / MIB,
        t.calls_failed.total(),
        t.calls_failed.show(),
        n(&t.calls_given_up),
        n(&t.calls_late)
    );
    println!(
        "streams    {} ok ({} echoes checked), {} failed: {}; {} given up part way; {} ended over 1 s past their deadline",
        n(&t.streams_ok),
        n(&t.echoes),
        t.streams_failed.total(),
        t.streams_failed.show(),
        n(&t.streams_given_up),
        n(&t.streams_late)
    );
    println!(
        "handlers   {} slow handlers stopped before answering (cancelled, deadline, lost socket)",
        n(&t.handlers_stopped)
    );
    println!("faults     {} drawn: {}", t.faults.total(), t.faults.show());
    let per_link: Vec<String> = w
        .links
        .iter()
        .map(|l| {
            let s = w.connection(l.dialer, l.acceptor).stats();
            format!(
                "{} {} (protocol errors {})",
                l.name, s.reconnects, s.protocol_errors
            )
        })
        .collect();
    println!("reconnects {} ({})", w.reconnects(), per_link.join(", "));
    println!(
        "findings   hangs {}, wrong answers {}, unexpected errors {}",
        n(&t.hangs),
        n(&t.wrong),
        n(&t.unexpected)
    );
    println!(
        "tasks      per node before the load {:?}, after it {:?}, after shutdown {:?}",
        f.tasks_before, f.tasks_after, f.tasks_shut_down
    );
    println!(
        "links      open through each proxy when idle {:?}, after shutdown {:?}",
        f.open_before_shutdown, f.open_after_shutdown
    );
    println!(
        "heap       {:.1} MiB before the load, {:.1} MiB after warm-up, {:.1} MiB idle after the run \
         (bounds: {:.1} = 2 x after warm-up + 16, {:.1} = before + 4); rss {:.1} MiB",
        f.heap_before as f64 / MIB,
        f.heap_warm as f64 / MIB,
        f.heap_after as f64 / MIB,
        (2 * f.heap_warm + 16 * 1024 * 1024) as f64 / MIB,
        (f.heap_before + 4 * 1024 * 1024) as f64 / MIB,
        f.rss_after as f64 / MIB
    );
    println!("\n|      t | calls ok | calls failed | streams ok | faults | reconnects |  rss MiB | heap MiB | peak MiB |");
    println!("|-------:|---------:|-------------:|-----------:|-------:|-----------:|---------:|---------:|---------:|");
    for s in samples {
        println!(
            "| {:5.0}s | {:>8} | {:>12} | {:>10} | {:>6} | {:>10} | {:>8.1} | {:>8.1} | {:>8.1} |",
            s.t,
            s.calls_ok,
            s.calls_failed,
            s.streams_ok,
            s.faults,
            s.reconnects,
            s.rss as f64 / MIB,
            s.heap as f64 / MIB,
            s.peak as f64 / MIB
        );
    }
}
