//! Raw peers running the known attacks on multiplexed protocols against a node, while a
//! friendly peer keeps calling it: the node's live heap and running tasks stay within what
//! its limits allow, the friend is served throughout, and the attacker is refused or
//! dropped. The heap is counted by a global allocator, so the tests here run one at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use grid::codec::{Flags, HandlerId, Message, Op};
use grid::{Error, State, StreamHandler};
use grid_tests::alloc::exclusive;
use grid_tests::hostile::{Attacked, Budget, ECHO as ECHO_FRIENDLY};
use grid_tests::raw::{merged_frame, Flooder};
use grid_tests::{wait_state, within};

#[global_allocator]
static ALLOC: grid_tests::alloc::Counting = grid_tests::alloc::Counting;

const QUICK: HandlerId = HandlerId::new(2);

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

/// Defect 3 of issue 9: a peer that floods pings, or 96 KiB echo requests, and never reads made the
/// node buffer without limit (300-400 MiB, ~480,000 tasks) while the connection stayed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_costs_bounded_memory_and_is_dropped() {
    let _one = exclusive().await;
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

/// Defect 6 of issue 9: a peer sending stream opens each followed by its cancel, in merged frames,
/// made the node start a task per open (up to 17,000) and grow by tens of MiB; a single
/// 16 MiB frame of pairs was decoded into a list first. The flooder was never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_starts_no_handlers_and_the_flooder_is_refused() {
    let _one = exclusive().await;
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
        // One frame of almost 16 MiB: 440,000 pairs.
        let many: Vec<Message> = (0..1100).flat_map(|_| pairs.iter().cloned()).collect();
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

/// A stream handler that never finishes (each one holds a task), counting its starts.
fn stuck(started: Arc<AtomicUsize>) -> StreamHandler {
    StreamHandler::new(move |_| {
        started.fetch_add(1, Ordering::SeqCst);
        async { std::future::pending::<Result<(), grid::RemoteError>>().await }
    })
}

/// Chunked payloads started and never finished, on ever more muxes: the node holds them
/// only up to its reassembly window and its limit of payloads in progress, then drops the
/// peer with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_partial_payloads_are_held_only_up_to_the_window() {
    let _one = exclusive().await;
    within(async {
        let node = Attacked::start(limited).await;
        let conn = node.attacker_conn();
        let frames: Vec<Vec<u8>> = (0..200u64)
            .map(|mux| {
                let mut part = Message::new(Op::Request);
                part.mux_id = mux + 1;
                part.handler = ECHO_FRIENDLY;
                part.flags = Flags::MORE;
                part.payload = Some(Bytes::from(vec![1u8; 64 << 10]));
                merged_frame(&[part])
            })
            .collect();
        let friend = node.keep_calling();
        let budget = Budget::measure(&node.node);
        let mut flood = Flooder::new(node.attacker().await);
        wait_state(&conn, |s| s == State::Connected).await;
        for f in &frames {
            if flood.send(f).await.is_err() {
                break;
            }
        }
        wait_state(&conn, |s| s != State::Connected).await;
        assert!(
            matches!(conn.last_error(), Some(Error::Protocol(why))
                if why.contains("reassembly window") || why.contains("in progress at once")),
            "{:?}",
            conn.last_error()
        );
        budget.check(&node.node, 16 << 20, 8, "endless partial payloads");
        friend.served(10).await;
        friend.stop();
        drop(flood);
        node.finish().await;
    })
    .await
}

/// Streams opened beyond the concurrency limit, by a peer that never reads: the node runs
/// at most its limit of handlers, refuses the rest with Busy, and drops the peer once the
/// refusals it does not read pile up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_beyond_the_concurrency_limit_are_refused_and_the_flooder_dropped() {
    let _one = exclusive().await;
    within(async {
        let node = Attacked::start(|b| limited(b).max_concurrent_calls(64)).await;
        let started = Arc::new(AtomicUsize::new(0));
        node.node
            .register_stream(QUICK, stuck(started.clone()))
            .expect("register");
        let conn = node.attacker_conn();
        let opens: Vec<Message> = (0..10_000u64)
            .map(|i| {
                let mut open = Message::new(Op::ConnectMux);
                open.mux_id = i + 1;
                open.handler = QUICK;
                open.deadline_ms = 600_000;
                open
            })
            .collect();
        let frames: Vec<Vec<u8>> = opens.chunks(500).map(merged_frame).collect();
        let friend = node.keep_calling();
        let budget = Budget::measure(&node.node);
        let mut flood = Flooder::new(node.attacker().await);
        wait_state(&conn, |s| s == State::Connected).await;
        for f in &frames {
            if flood.send(f).await.is_err() {
                break;
            }
            budget.check(&node.node, 16 << 20, 64 + 8, "while opening");
        }
        wait_state(&conn, |s| s != State::Connected).await;
        assert!(
            matches!(conn.last_error(), Some(Error::Protocol(why)) if why.contains("without reading")),
            "{:?}",
            conn.last_error()
        );
        assert!(
            started.load(Ordering::SeqCst) <= 64,
            "{} handlers started",
            started.load(Ordering::SeqCst)
        );
        budget.tasks_settle(&node.node, 8).await;
        budget.check(&node.node, 16 << 20, 8, "after the flooder was dropped");
        friend.served(10).await;
        friend.stop();
        drop(flood);
        node.finish().await;
    })
    .await
}

/// Requests beyond the request window, from a peer that ignores the window it was told:
/// the node holds at most the window, refuses the rest with Busy, and serves its friend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_request_window_are_refused() {
    let _one = exclusive().await;
    within(async {
        let node = Attacked::start(limited).await;
        let held = Arc::new(AtomicUsize::new(0));
        let h = held.clone();
        node.node
            .register_single(QUICK, move |_, _| {
                h.fetch_add(1, Ordering::SeqCst);
                async { std::future::pending::<Result<Bytes, grid::RemoteError>>().await }
            })
            .expect("register");
        let conn = node.attacker_conn();
        let calls: Vec<Vec<u8>> = (0..40u64)
            .map(|i| {
                let mut call = Message::new(Op::Request);
                call.mux_id = i + 1;
                call.handler = QUICK;
                call.deadline_ms = 600_000;
                call.payload = Some(Bytes::from(vec![2u8; 1 << 20]));
                merged_frame(&[call])
            })
            .collect();
        let friend = node.keep_calling();
        let budget = Budget::measure(&node.node);
        let mut flood = Flooder::new(node.attacker().await);
        wait_state(&conn, |s| s == State::Connected).await;
        for f in &calls {
            flood.send(f).await.expect("the node reads everything");
        }
        friend.served(10).await;
        // 4 MiB window, 1 MiB each: four handlers hold their requests, the rest are refused.
        assert_eq!(held.load(Ordering::SeqCst), 4);
        budget.check(&node.node, 16 << 20, 4 + 8, "requests beyond the window");
        assert_eq!(conn.stats().in_flight_handlers, 4);
        friend.stop();
        drop(flood);
        node.finish().await;
    })
    .await
}
