//! A received payload someone keeps costs what it holds, whatever the traffic around it:
//! a handler keeping small requests, a caller keeping small answers and a stream reader
//! keeping small messages, beside large messages on the same connection, hold a small
//! multiple of the bytes they keep once the connection is gone. (Before, each kept payload
//! was a slice of the read buffer it arrived in and kept all of it alive: 16 KB to 131 KB
//! per 16-byte payload.) The heap is counted by a global allocator, so the tests here run
//! one at a time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::{Connection, HandlerId, StreamCall, StreamHandler};
use grid_tests::alloc::{exclusive, live};
use grid_tests::{within_secs, Cluster};

#[global_allocator]
static ALLOC: grid_tests::alloc::Counting = grid_tests::alloc::Counting;

const KEEP: HandlerId = HandlerId::new(1);
const ECHO: HandlerId = HandlerId::new(2);
const TRICKLE: HandlerId = HandlerId::new(3);

/// Small payloads kept by each of the three keepers.
const KEPT: usize = 600;
/// Size of each kept payload.
const SMALL: usize = 16;

type Kept = Arc<Mutex<Vec<Bytes>>>;

fn small(i: usize) -> Bytes {
    Bytes::from(format!("{i:0width$}", width = SMALL))
}

/// Keeps every request it gets and answers with a small payload of its own.
fn keep(kept: &Kept, p: Option<Bytes>) -> Bytes {
    if let (Some(p), Ok(mut kept)) = (p, kept.lock()) {
        kept.push(p);
    }
    small(7)
}

/// Sends `KEPT` small messages, letting other traffic go between them.
fn trickle() -> StreamHandler {
    StreamHandler::new(|mut call: StreamCall| async move {
        for i in 0..KEPT {
            call.output.send(small(i)).await?;
            tokio::task::yield_now().await;
        }
        Ok(())
    })
}

/// Echo calls of `size` bytes, four at a time, until `stop` says so.
async fn traffic(conn: Connection, size: usize, stop: tokio::sync::watch::Receiver<bool>) {
    let big = Bytes::from(vec![0x5a; size]);
    let lanes = (0..4).map(|_| {
        let (conn, big, mut stop) = (conn.clone(), big.clone(), stop.clone());
        async move {
            while !*stop.borrow_and_update() {
                let answer = conn
                    .request(ECHO, big.clone())
                    .deadline(Duration::from_secs(30))
                    .await;
                assert_eq!(answer.map(|a| a.map(|a| a.len())), Ok(Some(size)));
            }
        }
    });
    futures::future::join_all(lanes).await;
}

/// Runs the three keepers beside echo calls of `beside` bytes, shuts the
/// nodes down, and returns the live heap held then beyond what it was before, with the
/// payloads kept (still alive).
async fn held_after(beside: usize) -> (usize, Vec<Bytes>) {
    let before = live();
    let cluster = Cluster::start(&["keeper", "caller"], |b| b.max_message_size(2 << 20)).await;
    let handler_kept = Kept::default();
    for m in &cluster.managers {
        let kept = handler_kept.clone();
        m.register_single(KEEP, move |_, p| {
            let answer = keep(&kept, p);
            async move { Ok(answer) }
        })
        .expect("register");
        m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        m.register_stream(TRICKLE, trickle()).expect("register");
    }
    cluster.connected().await;
    let conn = cluster.managers[1].connection("keeper").expect("conn");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let traffic = tokio::spawn(traffic(conn.clone(), beside, stopped));

    let calls = async {
        let mut answers = Vec::new();
        for i in 0..KEPT {
            let answer = conn.request(KEEP, small(i)).await.expect("keep");
            answers.push(answer.expect("an answer"));
        }
        answers
    };
    let messages = async {
        let stream = conn.open_stream(TRICKLE, None).await.expect("open");
        let mut responses = stream.responses;
        let mut kept = Vec::new();
        while let Some(m) = responses.next().await {
            kept.push(m.expect("message"));
        }
        kept
    };
    let (answers, messages) = futures::join!(calls, messages);
    let _ = stop.send(true);
    traffic.await.expect("traffic");
    assert_eq!((answers.len(), messages.len()), (KEPT, KEPT));
    cluster.finish().await;

    let mut kept = std::mem::take(&mut *handler_kept.lock().expect("lock"));
    assert_eq!(kept.len(), KEPT);
    kept.extend(answers);
    kept.extend(messages);
    // Let the runtime drop what the ended tasks held.
    tokio::task::yield_now().await;
    (live().saturating_sub(before), kept)
}

async fn check(beside: usize) {
    let (held, kept) = held_after(beside).await;
    let data: usize = kept.iter().map(Bytes::len).sum();
    assert_eq!(data, 3 * KEPT * SMALL);
    // What keeping costs: the bytes, the vector of handles, and a fixed allowance for what
    // the runtime keeps after the nodes are gone. Before, this was 10-80 MB.
    let handles = kept.capacity() * std::mem::size_of::<Bytes>();
    let allowed = 4 * data + handles + (256 << 10);
    assert!(
        held <= allowed,
        "beside {beside}-byte messages, {} kept payloads of {SMALL} bytes hold {held} bytes \
         ({} per payload), more than {allowed}",
        kept.len(),
        held / kept.len(),
    );
    println!(
        "beside {beside}-byte messages: {} payloads of {SMALL} bytes kept, {held} bytes held \
         ({} per payload, handles included)",
        kept.len(),
        held / kept.len()
    );
    drop(kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_small_payloads_beside_1_kib_messages_hold_only_their_bytes() {
    let _one = exclusive().await;
    within_secs(60, check(1 << 10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_small_payloads_beside_48_kib_messages_hold_only_their_bytes() {
    let _one = exclusive().await;
    within_secs(60, check(48 << 10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_small_payloads_beside_1_mib_messages_hold_only_their_bytes() {
    let _one = exclusive().await;
    within_secs(60, check(1 << 20)).await;
}
