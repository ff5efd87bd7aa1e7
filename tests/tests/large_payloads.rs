//! Large payloads travel in chunks: they arrive whole, small calls keep flowing beside them,
//! a long link widens the chunk window, and a large call cancelled half-way leaves nothing
//! behind on either side.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use grid::{Error, HandlerId};
use grid_tests::{within, within_secs, Cluster, ProxiedPair};
use tokio::sync::mpsc;

const ECHO: HandlerId = HandlerId::new(1);
const SINK: HandlerId = HandlerId::new(2);

fn pattern(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 253) as u8).collect::<Vec<u8>>())
}

/// `n` small echoes at once, each answered with its own payload.
async fn small_calls(a: &grid::Connection, n: u32) {
    let small = (0..n).map(|i| async move {
        let p = grid_tests::num(i);
        assert_eq!(a.request(ECHO, p.clone()).await.expect("small"), Some(p));
    });
    futures::future::join_all(small).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_both_ways_with_small_calls_beside() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        for m in &c.managers {
            m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
                .expect("register");
        }
        c.connected().await;
        let a = c.managers[0].connection("beta").expect("conn");
        let big = pattern(16 << 20);
        let frames_before = a.stats().frames_out;
        let big_call = tokio::spawn(a.request(ECHO, big.clone()).into_future());
        small_calls(&a, 200).await;
        assert_eq!(big_call.await.expect("task").expect("big"), Some(big));
        // The 16 MiB went out as 64 KiB chunks, one frame each.
        assert!(
            a.stats().frames_out - frames_before >= 256,
            "{:?}",
            a.stats()
        );
        c.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_10_ms_link_the_chunk_window_grows_and_large_echoes_arrive_whole() {
    within_secs(60, async {
        let pair = ProxiedPair::start(|b| b.max_message_size(16 << 20)).await;
        // 5 ms each way: a round trip of 10 ms.
        pair.proxy.delay(std::time::Duration::from_millis(5));
        for m in [&pair.dialer, &pair.acceptor] {
            m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
                .expect("register");
        }
        pair.connected().await;
        let (a, b) = pair.connections();
        let start = a.stats().chunk_window_bytes;
        assert_eq!(start, 256 << 10, "both windows start at 256 KiB");
        assert_eq!(b.stats().chunk_window_bytes, start);
        let big = pattern(16 << 20);
        for _ in 0..2 {
            let big_call = tokio::spawn(a.request(ECHO, big.clone()).into_future());
            small_calls(&a, 20).await;
            assert_eq!(
                big_call.await.expect("task").expect("big"),
                Some(big.clone())
            );
        }
        // Confined to 256 KiB a round trip, each 16 MiB would take 0.65 s each way;
        // the window held the senders back, so both grew (the dialer's request, the
        // acceptor's answer).
        let (grown_a, grown_b) = (a.stats().chunk_window_bytes, b.stats().chunk_window_bytes);
        assert!(grown_a > start, "the caller's window: {grown_a}");
        assert!(grown_b > start, "the answering side's window: {grown_b}");
        assert!(
            grown_a <= 64 << 20 && grown_b <= 64 << 20,
            "within the reassembly window"
        );
        pair.finish().await;
    })
    .await
}

#[tokio::test]
async fn an_oversize_answer_fails_that_call_only() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b.max_message_size(100_000)).await;
        c.managers[1]
            .register_single(SINK, |_, _| async { Ok(pattern(100_001)) })
            .expect("register");
        c.managers[1]
            .register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        c.connected().await;
        let a = c.managers[0].connection("beta").expect("conn");
        match a.request(SINK, None).await {
            Err(Error::MessageTooLarge { size, limit }) => {
                assert_eq!((size, limit), (100_001, 100_000));
            }
            other => panic!("expected MessageTooLarge naming the sizes, got {other:?}"),
        }
        // A payload just under the limit goes through in chunks.
        let fits = pattern(100_000);
        assert_eq!(
            a.request(ECHO, fits.clone()).await.expect("fits"),
            Some(fits)
        );
        c.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_call_dropped_half_way_leaves_nothing_behind() {
    within(async {
        let pair = ProxiedPair::start(|b| b).await;
        let started = Arc::new(AtomicBool::new(false));
        let (seen_tx, mut seen) = mpsc::unbounded_channel::<usize>();
        for m in [&pair.dialer, &pair.acceptor] {
            let started = started.clone();
            let seen_tx = seen_tx.clone();
            m.register_single(SINK, move |_, p: Option<Bytes>| {
                started.store(true, Ordering::SeqCst);
                let _ = seen_tx.send(p.map_or(0, |p| p.len()));
                async { Ok(Bytes::new()) }
            })
            .expect("register");
        }
        pair.connected().await;
        let (d, _) = pair.connections();
        // A slow link, so the 8 MiB request is still on its way when it is dropped.
        pair.proxy.throttle(Some(4 << 20));
        let call = tokio::spawn(d.request(SINK, pattern(8 << 20)).into_future());
        pair.proxy.forwarded_at_least(512 << 10).await;
        call.abort();
        assert!(call.await.expect_err("aborted").is_cancelled());
        pair.proxy.throttle(None);
        // The acceptor dropped the partial payload when the cancel arrived behind the chunks.
        grid_tests::assert_idle(&pair.acceptor).await;
        grid_tests::assert_idle(&pair.dialer).await;
        assert!(
            !started.load(Ordering::SeqCst),
            "the handler of a cancelled call ran"
        );
        // The connection carries on: the next large call arrives whole.
        d.request(SINK, pattern(1 << 20)).await.expect("next call");
        assert_eq!(seen.recv().await, Some(1 << 20));
        pair.finish().await;
    })
    .await
}
