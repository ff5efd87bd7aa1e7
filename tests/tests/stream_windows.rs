//! Stream windows over real sockets: a window grows to fit a long link (the proxy delays
//! every byte), streams whose readers never read hold no more than the node's budget for
//! stream windows, a stream with a wide window never keeps calls from starting, and a
//! peer that grants a wide window and reads nothing gets no more than the send buffer.
//! Memory is counted by a global allocator (live bytes), so the tests here run one at a
//! time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use grid::{HandlerId, StreamCall, StreamHandler};
use grid_tests::alloc::{exclusive, live};
use grid_tests::{within_secs, Cluster, ProxiedPair};

#[global_allocator]
static ALLOC: grid_tests::alloc::Counting = grid_tests::alloc::Counting;

const PUSH: HandlerId = HandlerId::new(1);
const ECHO: HandlerId = HandlerId::new(2);
/// The size of the messages the budget test's handlers send.
const MSG: usize = 64;

/// Sends messages of the size its initial payload names, as fast as credit allows, until
/// the caller goes away; counts the handlers that found their credit spent, and the bytes
/// sent.
fn push(spent: Arc<AtomicUsize>, sent: Arc<AtomicUsize>) -> StreamHandler {
    StreamHandler::new(move |mut call: StreamCall| {
        let (spent, sent) = (spent.clone(), sent.clone());
        async move {
            let size = call.payload.as_deref().map_or(0, |p| p.len());
            let message = Bytes::from(vec![5u8; size]);
            let mut counted = false;
            loop {
                call.output.send(message.clone()).await?;
                sent.fetch_add(size, Ordering::SeqCst);
                if !counted && call.output.credit() == 0 {
                    counted = true;
                    spent.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    })
}

/// Polls `f` until it holds (checked every few milliseconds; the test's own timeout bounds
/// the wait).
async fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_a_10_ms_link_grows_its_window_past_the_start_to_fit_the_link() {
    let _one = exclusive().await;
    within_secs(60, async {
        let pair = ProxiedPair::start(|b| b.max_message_size(1 << 20)).await;
        // 5 ms each way: a round trip of 10 ms, from the first ping on.
        pair.proxy.delay(Duration::from_millis(5));
        for m in [&pair.dialer, &pair.acceptor] {
            m.register_stream(PUSH, push(Arc::default(), Arc::default()))
                .expect("register");
        }
        pair.connected().await;
        let (conn, _) = pair.connections();
        let start = 256 << 10;
        let mut stream = conn
            .open_stream(PUSH, Bytes::from(vec![0u8; 16 << 10]))
            .await
            .expect("open");
        let read = Arc::new(AtomicUsize::new(0));
        let reader = {
            let read = read.clone();
            tokio::spawn(async move {
                while let Some(Ok(m)) = stream.responses.next().await {
                    read.fetch_add(m.len(), Ordering::Relaxed);
                }
            })
        };
        // The window a fixed 256 KiB would allow: 25 MB/s at 10 ms. It grows past that (by
        // how much depends on what this machine's debug build carries per round trip: the
        // window settles where the pings show a queue, 0.5-7 MiB measured here).
        until(|| conn.stats().stream_window_bytes > start).await;
        let window = conn.stats().stream_window_bytes;
        assert!(
            window <= 64 << 20,
            "within the default largest window: {window}"
        );
        let (t0, r0) = (Instant::now(), read.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rate = (read.load(Ordering::Relaxed) - r0) as f64 / t0.elapsed().as_secs_f64();
        let window = conn.stats().stream_window_bytes;
        let rtt = conn.stats().last_ping_rtt.unwrap_or_default();
        println!(
            "window {window} bytes (started at {start}); {:.1} MB/s, {:.0} % of the window per \
             round trip ({:.1} ms)",
            rate / 1e6,
            100.0 * rate * rtt.as_secs_f64() / window as f64,
            rtt.as_secs_f64() * 1e3
        );
        reader.abort();
        let _ = reader.await;
        pair.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_whose_readers_never_read_hold_no_more_than_the_budget() {
    let _one = exclusive().await;
    within_secs(60, async {
        let budget = 4 << 20;
        // Stream ticks every 100 ms: a receiver that took nothing for a tick has its small
        // messages copied out of the frames they arrived in.
        // (Senders keep no copy for a resume here: this measures what receivers hold.)
        let c = Cluster::start(&["a", "b"], |b| {
            b.stream_budget(budget)
                .stream_ping_interval(Duration::from_millis(100))
                .resume_grace(Duration::ZERO)
        })
        .await;
        let spent = Arc::new(AtomicUsize::new(0));
        for m in &c.managers {
            m.register_stream(PUSH, push(spent.clone(), Arc::default()))
                .expect("register");
        }
        c.connected().await;
        let conn = c.managers[0].connection("b").expect("conn");
        let before = live();
        let streams = 32;
        let mut open = Vec::new();
        for _ in 0..streams {
            // Small messages: the per-message charge is much of what is held.
            let s = conn
                .open_stream(PUSH, Bytes::from(vec![0u8; MSG]))
                .await
                .expect("open");
            open.push(s);
        }
        // Every handler has spent its credit: the windows are full, nothing is read.
        until(|| spent.load(Ordering::SeqCst) == streams).await;
        let granted = conn.stats().stream_window_bytes;
        let at_first = live().saturating_sub(before);
        // Each window keeps its floor (4 KiB) beyond the budget; the streams themselves
        // (both ends, their tasks) cost about 2 KiB each.
        let allowed = budget + 4 * 1024 * streams as u64;
        assert!(granted <= allowed, "windows of {granted} bytes");
        // Until the next stream tick the messages are slices of the frames they came in;
        // then they hold their own bytes. Wait for that (at most a few ticks).
        let bound = budget * 11 / 10 + 2048 * streams as u64;
        let mut held = at_first;
        for _ in 0..100 {
            held = live().saturating_sub(before);
            if held as u64 <= bound {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!(
            "{streams} streams not read: {granted} bytes of windows granted (budget {budget}), \
             {at_first} bytes held at first, {held} after a stream tick"
        );
        assert!(
            held as u64 <= bound,
            "{held} bytes held for a budget of {budget}"
        );
        drop(open);
        c.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_start_and_answer_while_a_wide_stream_fills_the_send_buffer() {
    let _one = exclusive().await;
    within_secs(60, async {
        // A 16 MiB window on a 10 MB/s link: the stream fills the sender's send buffer
        // (1 MiB) and waits there with credit left. Its messages are not answers: calls
        // start and answer beside them.
        let pair = ProxiedPair::start(|b| {
            b.max_message_size(1 << 20)
                .stream_window(16 << 20)
                .max_send_buffer(1 << 20)
        })
        .await;
        pair.proxy.throttle(Some(10_000_000));
        let sent = Arc::new(AtomicUsize::new(0));
        for m in [&pair.dialer, &pair.acceptor] {
            m.register_stream(PUSH, push(Arc::default(), sent.clone()))
                .expect("register");
            m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
                .expect("register");
        }
        pair.connected().await;
        let (conn, _) = pair.connections();
        let mut stream = conn
            .open_stream(PUSH, Bytes::from(vec![0u8; 16 << 10]))
            .await
            .expect("open");
        let reader =
            tokio::spawn(async move { while let Some(Ok(_)) = stream.responses.next().await {} });
        // Once the stream has pushed 4 MiB, the 10 MB/s link is far behind it: its backlog
        // waits ahead of every call.
        until(|| sent.load(Ordering::SeqCst) >= 4 << 20).await;
        for i in 0..5 {
            let back = conn.request(ECHO, grid_tests::num(i)).await.expect("call");
            assert_eq!(back.as_ref().map(grid_tests::unnum), Some(i));
        }
        reader.abort();
        let _ = reader.await;
        pair.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_grants_a_wide_window_and_reads_nothing_costs_the_send_buffer_not_the_window() {
    let _one = exclusive().await;
    within_secs(60, async {
        // The caller grants 48 MiB; the link then carries nothing at all.
        let pair = ProxiedPair::start(|b| {
            b.max_message_size(1 << 20)
                .stream_window(48 << 20)
                .max_stream_window(48 << 20)
                .stream_budget(64 << 20)
                .max_send_buffer(1 << 20)
        })
        .await;
        let sent = Arc::new(AtomicUsize::new(0));
        for m in [&pair.dialer, &pair.acceptor] {
            m.register_stream(PUSH, push(Arc::default(), sent.clone()))
                .expect("register");
        }
        pair.connected().await;
        let (conn, _) = pair.connections();
        let stream = conn
            .open_stream(PUSH, Bytes::from(vec![0u8; 16 << 10]))
            .await
            .expect("open");
        pair.proxy.freeze();
        // The handler pushes until it must wait; what it got out is the send buffer and
        // what the sockets on the way hold, far below the window.
        let mut last = usize::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = sent.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        assert!(
            last < 24 << 20,
            "{last} bytes queued for a peer that reads nothing (window 48 MiB)"
        );
        println!("{last} bytes out before the sender waited");
        pair.proxy.thaw();
        drop(stream);
        pair.finish().await;
    })
    .await;
}
