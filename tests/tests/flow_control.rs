//! Two correct nodes under load never break each other's limits: hundreds of concurrent
//! large calls and streams in both directions over a slow link complete, each within its
//! deadline, the connection never drops and nothing deadlocks; a connection dropped in the
//! middle of a large payload leaves nothing half received behind.

use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::{Connection, HandlerId, StreamHandler};
use grid_tests::{within, within_secs, ProxiedPair};

const ECHO: HandlerId = HandlerId::new(1);
const PUMP: HandlerId = HandlerId::new(2);
const SINK: HandlerId = HandlerId::new(3);

/// Echoes every input message back, then returns.
fn pump() -> StreamHandler {
    grid_tests::handlers::echo_input()
}

async fn proxied_pair() -> ProxiedPair {
    let pair = ProxiedPair::start(|b| b).await;
    for m in [&pair.dialer, &pair.acceptor] {
        m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        m.register_stream(PUMP, pump()).expect("register");
        m.register_single(SINK, |_, _| async { Ok(Bytes::new()) })
            .expect("register");
    }
    pair.connected().await;
    pair
}

/// `n` concurrent 1 MiB echo calls, each checked.
async fn large_calls(conn: &Connection, n: usize) {
    let big = Bytes::from((0..1 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let calls = (0..n).map(|_| {
        let (conn, big) = (conn.clone(), big.clone());
        async move {
            let answer = conn
                .request(ECHO, big.clone())
                .deadline(Duration::from_secs(60))
                .await;
            assert_eq!(answer, Ok(Some(big)));
        }
    });
    futures::future::join_all(calls).await;
}

/// `n` streams, each echoing 50 messages of 16 KiB.
async fn streams(conn: &Connection, n: usize) {
    let runs = (0..n).map(|s| {
        let conn = conn.clone();
        async move {
            let stream = conn.open_stream(PUMP, None).await.expect("open");
            let mut requests = stream.requests.expect("input");
            let mut responses = stream.responses;
            let send = async move {
                for i in 0..50u32 {
                    let mut m = vec![s as u8; 16 << 10];
                    m[..4].copy_from_slice(&i.to_be_bytes());
                    requests.send(Bytes::from(m)).await.expect("send");
                }
                requests.finish().await.expect("finish");
            };
            let receive = async {
                for i in 0..50u32 {
                    let m = responses.next().await.expect("message").expect("ok");
                    assert_eq!(&m[..4], &i.to_be_bytes());
                }
                let end = responses.next().await;
                assert!(end.is_none(), "{end:?}");
            };
            tokio::join!(send, receive);
        }
    });
    futures::future::join_all(runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_flooding_each_other_over_a_slow_link_complete_everything() {
    // 800 MiB cross the link: on a busy machine this takes a while.
    within_secs(60, async {
        let pair = proxied_pair().await;
        let (d, a) = pair.connections();
        // Each direction of the link carries 128 MiB/s: slower than the nodes read and
        // write, so their socket buffers fill and their writers wait.
        pair.proxy.throttle(Some(128 << 20));
        tokio::join!(
            large_calls(&d, 200),
            large_calls(&a, 200),
            streams(&d, 20),
            streams(&a, 20)
        );
        for conn in [&d, &a] {
            assert_eq!(conn.stats().reconnects, 0, "the connection never dropped");
        }
        pair.proxy.throttle(None);
        pair.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_payload_leaves_nothing_half_received() {
    within(async {
        let pair = proxied_pair().await;
        let (d, a) = pair.connections();
        pair.proxy.throttle(Some(2 << 20));
        let big = Bytes::from(vec![1u8; 8 << 20]);
        let call = tokio::spawn(d.request(SINK, big).into_future());
        pair.proxy.forwarded_at_least(1 << 20).await;
        assert!(
            a.stats().assembling_bytes > 0,
            "the acceptor holds part of it"
        );
        pair.proxy.cut();
        assert!(call.await.expect("task").is_err());
        pair.proxy.throttle(None);
        // Both sides are idle at once, whatever the old session left.
        grid_tests::assert_idle(&pair.acceptor).await;
        grid_tests::assert_idle(&pair.dialer).await;
        assert_eq!(a.stats().assembling_bytes, 0);
        pair.connected().await;
        assert_eq!(
            d.request(SINK, Bytes::from(vec![2u8; 1 << 20])).await,
            Ok(Some(Bytes::new()))
        );
        pair.finish().await;
    })
    .await
}
