//! The defects found in grid before it had a protocol engine, each reproduced over real
//! sockets; each of these tests failed before the engine (issue 9) and must keep passing.
//! Defects 3 and 6 (a peer that never reads, rapid reset) are in hostile_peers.rs, whose
//! tests measure the heap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::codec::HandlerId;
use grid::{CallContext, Error, State, StreamHandler};
use grid_tests::handlers::{read_to_end, upload};
use grid_tests::raw::handshaken_announcing;
use grid_tests::{dialer_first, num, shut_down, wait_state, within, within_secs, Cluster};
use tokio::sync::mpsc;

const UPLOAD: HandlerId = HandlerId::new(1);
const QUICK: HandlerId = HandlerId::new(2);
const ECHO: HandlerId = HandlerId::new(3);
const WATCHED: HandlerId = HandlerId::new(4);

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
    // 400 MiB of calls: on a busy machine this takes a while.
    within_secs(60, async {
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
