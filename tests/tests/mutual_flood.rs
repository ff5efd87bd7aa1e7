//! Two nodes that flood each other: each streams bulk data to the other as fast as its
//! credit allows, both ways at once, while both make small calls to the other. Every call
//! completes and every stream moves in both directions: a small call is scheduled ahead of
//! stream data, and credit ahead of both, so neither direction starves the other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use grid::{HandlerId, StreamCall, StreamHandler};
use grid_tests::{within_secs, Cluster};

const BULK: HandlerId = HandlerId::new(1);
const ECHO: HandlerId = HandlerId::new(2);

/// Sends 16 KiB messages until the caller goes away.
fn bulk() -> StreamHandler {
    StreamHandler::new(|mut call: StreamCall| async move {
        let message = Bytes::from(vec![9u8; 16 << 10]);
        loop {
            call.output.send(message.clone()).await?;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_flooding_each_other_both_make_progress_and_every_call_completes() {
    within_secs(60, async {
        let c = Cluster::start(&["east", "west"], |b| b.max_message_size(1 << 20)).await;
        for m in &c.managers {
            m.register_stream(BULK, bulk()).expect("register");
            m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
                .expect("register");
        }
        c.connected().await;
        let links = [
            c.managers[0].connection("west").expect("conn"),
            c.managers[1].connection("east").expect("conn"),
        ];
        // A bulk stream each way, read as fast as it comes.
        let moved: Arc<[AtomicUsize; 2]> = Arc::default();
        let mut readers = Vec::new();
        for (i, conn) in links.iter().enumerate() {
            let mut stream = conn.open_stream(BULK, None).await.expect("open");
            let moved = moved.clone();
            readers.push(tokio::spawn(async move {
                while let Some(Ok(m)) = stream.responses.next().await {
                    moved[i].fetch_add(m.len(), Ordering::Relaxed);
                }
            }));
        }
        // Both streams are moving before the calls start.
        while moved.iter().any(|m| m.load(Ordering::Relaxed) < 1 << 20) {
            tokio::task::yield_now().await;
        }
        // Small calls both ways, 200 each, beside the floods.
        let callers = links.iter().map(|conn| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                for i in 0..200u32 {
                    let t = Instant::now();
                    let payload = Bytes::from(i.to_be_bytes().to_vec());
                    let answer = conn.request(ECHO, payload.clone()).await.expect("call");
                    assert_eq!(answer, Some(payload));
                    slowest = slowest.max(t.elapsed());
                }
                slowest
            })
        });
        let before = [0, 1].map(|i| moved[i].load(Ordering::Relaxed));
        for (i, caller) in callers.enumerate() {
            let slowest = caller.await.expect("caller");
            println!("calls from node {i}: slowest {slowest:?} beside the floods");
        }
        // Both directions kept moving while the calls ran.
        let after = [0, 1].map(|i| moved[i].load(Ordering::Relaxed));
        assert!(
            after[0] > before[0] && after[1] > before[1],
            "a direction stalled: {before:?} -> {after:?}"
        );
        for r in readers {
            r.abort();
            let _ = r.await;
        }
        c.finish().await;
    })
    .await;
}
