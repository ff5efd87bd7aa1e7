//! The seven defects found in grid before it had a protocol engine, each reproduced over
//! real sockets. Each of these tests failed before the engine (issue 9) and must keep
//! passing.

#[global_allocator]
static ALLOC: grid_tests::alloc::Counting = grid_tests::alloc::Counting;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::codec::{HandlerId, Message, Op};
use grid::{CallContext, Error, State, StreamCall, StreamHandler, StreamReceiver};
use grid_tests::hostile::{Attacked, Budget, ECHO as ECHO_FRIENDLY};
use grid_tests::raw::{handshaken_announcing, merged_frame, Flooder};
use grid_tests::{dialer_first, num, shut_down, wait_state, within, Cluster};
use tokio::sync::mpsc;

const UPLOAD: HandlerId = HandlerId::new(1);
const QUICK: HandlerId = HandlerId::new(2);
const ECHO: HandlerId = HandlerId::new(3);
const WATCHED: HandlerId = HandlerId::new(4);

/// A stream handler that hands its input and context to the test, then waits forever: the
/// test reads the input as a handler would, even after the handler itself was stopped.
fn upload(taken: mpsc::UnboundedSender<(StreamReceiver, CallContext)>) -> StreamHandler {
    StreamHandler::new(move |mut call: StreamCall| {
        let taken = taken.clone();
        async move {
            if let Some(input) = call.input.take() {
                let _ = taken.send((input, call.ctx.clone()));
            }
            std::future::pending::<()>().await;
            Ok(())
        }
    })
    .in_capacity(16)
}

/// Reads a handler's input to its end: the messages and how it ended.
async fn read_to_end(mut input: StreamReceiver) -> (usize, Result<(), Error>) {
    let mut n = 0;
    while let Some(item) = input.next().await {
        match item {
            Ok(_) => n += 1,
            Err(e) => return (n, Err(e)),
        }
    }
    (n, Ok(()))
}

/// Defect 1: a caller that sent part of an upload and dropped its stream (whole, or its
/// halves in either order) made the handler's input end cleanly about half the time, and
/// sometimes `ctx.cancelled()` never fired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_upload_never_looks_complete() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        let (taken_tx, mut taken) = mpsc::unbounded_channel();
        c.managers[1]
            .register_stream(UPLOAD, upload(taken_tx))
            .expect("register");
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        for round in 0..60 {
            let mut stream = conn.open_stream(UPLOAD, None).await.expect("open");
            let requests = stream.requests.as_mut().expect("takes input");
            for i in 0..3 {
                requests.send(num(i)).await.expect("send");
            }
            let (input, ctx) = taken.recv().await.expect("the handler started");
            match round % 3 {
                0 => drop(stream),
                1 => {
                    let (requests, responses) = (stream.requests, stream.responses);
                    drop(requests);
                    drop(responses);
                }
                _ => {
                    let (requests, responses) = (stream.requests, stream.responses);
                    drop(responses);
                    drop(requests);
                }
            }
            let (n, end) = read_to_end(input).await;
            assert!(n <= 3);
            assert_eq!(
                end,
                Err(Error::Cancelled),
                "round {round}: the upload looked complete"
            );
            ctx.cancelled().await;
        }
        c.finish().await;
    })
    .await
}

/// Defect 2: with a 100 ms stream ping, some of 500 concurrent opens of a handler that
/// returns at once failed with `Cancelled` (a ping could leave before its stream's open,
/// and the handler side answered that it did not know the stream), and the handlers of
/// those opens stayed in flight until their deadline, so `wait_idle` hung. Ten rounds at
/// 100 ms, then ten at 5 ms, where the race was likely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_streams_never_races_the_stream_ping() {
    within(async {
        for ping_ms in [100, 5] {
            let c = Cluster::start(&["alpha", "beta"], |b| {
                b.stream_ping_interval(Duration::from_millis(ping_ms))
            })
            .await;
            c.managers[1]
                .register_stream(QUICK, StreamHandler::new(|_| async { Ok(()) }))
                .expect("register");
            c.connected().await;
            let conn = c.managers[0].connection("beta").expect("conn");
            for round in 0..10 {
                let opens = (0..500).map(|_| {
                    let conn = conn.clone();
                    async move {
                        let stream = conn.open_stream(QUICK, None).await?;
                        let rest: Vec<_> = stream.responses.collect().await;
                        assert!(rest.is_empty(), "{rest:?}");
                        Ok::<(), Error>(())
                    }
                });
                let results = futures::future::join_all(opens).await;
                let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
                assert!(
                    failed.is_empty(),
                    "ping {ping_ms} ms, round {round}: {} opens failed: {:?}",
                    failed.len(),
                    failed.first()
                );
            }
            c.finish().await;
        }
    })
    .await
}

/// The limits the attacked node runs with: what it may hold for one peer is about
/// `max_request_bytes` (requests) + `max_send_buffer` (answers) + a batch of answers
/// started before the buffer filled + `reassembly_window` (partial payloads), here
/// 4 + 1 + 6 + 4 MiB.
fn limited(b: grid::ManagerBuilder) -> grid::ManagerBuilder {
    b.max_message_size(1 << 20)
        .max_request_bytes(4 << 20)
        .reassembly_window(4 << 20)
        .max_send_buffer(1 << 20)
        .max_concurrent_calls(256)
        .ping_interval(Duration::from_millis(300))
}

/// Defect 3: a peer that floods pings, or 96 KiB echo requests, and never reads made the
/// node buffer without limit (300-400 MiB, ~480,000 tasks) while the connection stayed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_costs_bounded_memory_and_is_dropped() {
    within(async {
        let node = Attacked::start(limited).await;
        let conn = node.attacker_conn();
        let mut ping = Message::new(Op::Ping);
        ping.payload = Some(Bytes::from_static(&[0; 8]));
        let pings = merged_frame(&vec![ping; 4000]);
        let echoes: Vec<Vec<u8>> = (0..3000u64)
            .map(|i| {
                let mut call = Message::new(Op::Request);
                call.mux_id = i + 1;
                call.handler = ECHO_FRIENDLY;
                call.deadline_ms = 60_000;
                call.payload = Some(Bytes::from(vec![7u8; 96 << 10]));
                call.encode(true)
            })
            .collect();
        let friend = node.keep_calling();
        let budget = Budget::measure(&node.node);
        let mut flood = Flooder::new(node.attacker().await);
        wait_state(&conn, |s| s == State::Connected).await;
        // 200,000 pings, then 288 MiB of echo requests; nothing is ever read.
        let mut sent = 0;
        for _ in 0..50 {
            if flood.send(&pings).await.is_err() {
                break;
            }
        }
        for frame in &echoes {
            if flood.send(frame).await.is_err() {
                break;
            }
            sent += 1;
        }
        // The peer is dropped for not reading; until then it cost bounded memory and no
        // task per reply, and the friend was served throughout.
        wait_state(&conn, |s| s != State::Connected).await;
        budget.check(&node.node, 32 << 20, 16, "a peer that never reads");
        friend.served(10).await;
        friend.stop();
        assert!(sent > 0);
        drop(flood);
        node.finish().await;
    })
    .await
}

/// Defect 4: `ctx.cancelled()` never resolved for a call that completed normally, even after
/// shutdown, so a watcher task per call leaked.
#[tokio::test]
async fn cancelled_resolves_when_a_call_ends_normally() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        let watchers = Arc::new(AtomicUsize::new(0));
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let w = watchers.clone();
        c.managers[1]
            .register_single(WATCHED, move |ctx: CallContext, _| {
                let (w, done_tx) = (w.clone(), done_tx.clone());
                async move {
                    w.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        ctx.cancelled().await;
                        let _ = done_tx.send(());
                    });
                    Ok(Bytes::from_static(b"ok"))
                }
            })
            .expect("register");
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        for _ in 0..20 {
            conn.request(WATCHED, None).await.expect("call");
        }
        for _ in 0..20 {
            done.recv().await.expect("every watcher saw its call end");
        }
        assert_eq!(watchers.load(Ordering::SeqCst), 20);
        c.finish().await;
    })
    .await
}

/// Defect 5: one node making 100 (or 200) concurrent 1 MiB calls to another broke the
/// receiver's limit on partial payloads: the connection dropped and nearly every call
/// failed. Both directions at once reconnected about once a second and answered none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_correct_nodes_never_break_each_others_limits() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        for m in &c.managers {
            m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
                .expect("register");
        }
        c.connected().await;
        let big = Bytes::from(vec![9u8; 1 << 20]);
        let calls = |from: usize, to: &str, n: usize| {
            let conn = c.managers[from].connection(to).expect("conn");
            let big = big.clone();
            futures::future::join_all((0..n).map(move |_| {
                let (conn, big) = (conn.clone(), big.clone());
                async move {
                    conn.request(ECHO, big.clone())
                        .await
                        .map(|a| a == Some(big))
                }
            }))
        };
        // One way, 200 at once.
        for r in calls(0, "beta", 200).await {
            assert_eq!(r, Ok(true));
        }
        // Both ways at once.
        let (ab, ba) = tokio::join!(calls(0, "beta", 100), calls(1, "alpha", 100));
        for r in ab.into_iter().chain(ba) {
            assert_eq!(r, Ok(true));
        }
        for m in &c.managers {
            for conn in m.connections() {
                assert_eq!(conn.stats().reconnects, 0, "the connection never dropped");
            }
        }
        c.finish().await;
    })
    .await
}

/// Defect 6: a peer sending stream opens each followed by its cancel, in merged frames,
/// made the node start a task per open (up to 17,000) and grow by tens of MiB; a single
/// 16 MiB frame of pairs was decoded into a list first. The flooder was never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_starts_no_handlers_and_the_flooder_is_refused() {
    within(async {
        let node = Attacked::start(|b| b).await;
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        node.node
            .register_stream(
                QUICK,
                StreamHandler::new(move |_| {
                    s.fetch_add(1, Ordering::SeqCst);
                    async { std::future::pending::<Result<(), grid::RemoteError>>().await }
                }),
            )
            .expect("register");
        let conn = node.attacker_conn();
        let mut pairs = Vec::new();
        for i in 0..400u64 {
            let mut open = Message::new(Op::ConnectMux);
            open.mux_id = i + 1;
            open.handler = QUICK;
            open.deadline_ms = 60_000;
            let mut cancel = Message::new(Op::DisconnectServerMux);
            cancel.mux_id = i + 1;
            pairs.push(open);
            pairs.push(cancel);
        }
        let frame = merged_frame(&pairs);
        // One 16 MiB frame of 400,000 pairs.
        let many: Vec<Message> = (0..500).flat_map(|_| pairs.iter().cloned()).collect();
        let huge = merged_frame(&many);
        drop(many);
        let friend = node.keep_calling();
        let budget = Budget::measure(&node.node);

        let mut flood = Flooder::new(node.attacker().await);
        wait_state(&conn, |s| s == State::Connected).await;
        for _ in 0..250 {
            if flood.send(&frame).await.is_err() {
                break;
            }
        }
        wait_state(&conn, |s| s != State::Connected).await;
        assert!(
            matches!(conn.last_error(), Some(Error::Protocol(why)) if why.contains("rapid reset")),
            "{:?}",
            conn.last_error()
        );
        budget.check(&node.node, 8 << 20, 8, "pairs in frames");

        // The large frame is processed message by message, and the flooder refused early.
        let mut flood = Flooder::new(node.attacker().await);
        wait_state(&conn, |s| s == State::Connected).await;
        let _ = flood.send(&huge).await;
        wait_state(&conn, |s| s != State::Connected).await;
        assert_eq!(started.load(Ordering::SeqCst), 0, "no handler ever started");
        // The frame itself is read into memory once: nothing in proportion to its pairs.
        budget.check(
            &node.node,
            huge.len() + (8 << 20),
            8,
            "one 16 MiB frame of pairs",
        );
        friend.served(10).await;
        friend.stop();
        drop(flood);
        node.finish().await;
    })
    .await
}

/// Defect 7: a silent peer was declared dead only after up to three ping intervals (the
/// silence check ran on the ping tick), where the builder promises two. The clock is
/// paused once the peer fell silent, so the time is the node's own timers', not the
/// machine's.
#[tokio::test(flavor = "current_thread")]
async fn a_silent_peer_is_declared_dead_within_two_ping_intervals() {
    let ping = Duration::from_secs(10);
    let (d, a) = dialer_first();
    let (l, url) = grid_tests::listener().await;
    let m = grid_tests::builder(a)
        .peer(d, "ws://127.0.0.1:1/grid/v1")
        .ping_interval(ping)
        .build()
        .expect("build");
    tokio::spawn(m.clone().serve(l));
    let conn = m.connection(d).expect("conn");
    // The raw peer completes the handshake, then never sends anything again.
    let _ws = within(handshaken_announcing(&url, None, None)).await;
    within(wait_state(&conn, |s| s == State::Connected)).await;
    tokio::time::pause();
    let silent_since = tokio::time::Instant::now();
    let mut states = conn.watch_state();
    states
        .wait_for(|s| *s != State::Connected)
        .await
        .expect("state");
    let silent = silent_since.elapsed();
    // Two intervals, give or take the timer's millisecond (three before the engine).
    assert!(
        silent <= ping * 2 + Duration::from_millis(5),
        "declared dead after {silent:?} of silence; the ping interval is {ping:?}"
    );
    tokio::time::resume();
    shut_down(&m).await;
}
