//! What the fault soak (`benches/soak/`) found, each reduced to a test that failed until
//! the library was fixed.

use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::HandlerId;
use grid_tests::{within, ProxiedPair};

const ECHO: HandlerId = HandlerId::new(1);
const PUMP: HandlerId = HandlerId::new(2);

/// In the soak, streams opened as a link was throttled ended with `Cancelled` (no echo
/// received) the moment the throttle lifted, though their caller never stopped. The handler
/// side cancelled a stream whose caller was silent on it for three stream-ping intervals
/// while the connection was not; the caller's stream pings go out ahead of any data queued
/// in grid, but not ahead of bytes already written to the socket. (Now silence counts only
/// up to the newest connection ping the caller answered.) When the caller writes
/// more into its socket buffers than the link carries in three intervals (here 4 MiB
/// written at once, a link of 64 KiB/s, a 200 ms interval), the handler side keeps hearing
/// old bytes on the connection and none on the stream, and cancels a live stream. With the
/// default interval (15 s) it takes a link slower than the buffered bytes / 45 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_behind_a_growing_socket_backlog_stays_open() {
    within(async {
        let pair = ProxiedPair::start(|b| {
            b.stream_ping_interval(Duration::from_millis(200))
                .ping_interval(Duration::from_secs(5))
        })
        .await;
        for m in [&pair.dialer, &pair.acceptor] {
            m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
                .expect("register");
            m.register_stream(PUMP, grid_tests::handlers::echo_input())
                .expect("register");
        }
        pair.connected().await;
        let (d, _) = pair.connections();
        pair.proxy.throttle(Some(64 * 1024));

        // The stream opens while the link is slow but empty; a message makes the round trip.
        let stream = d
            .open_stream(PUMP, None)
            .deadline(Duration::from_secs(60))
            .await
            .expect("open");
        let (mut requests, mut responses) = stream.split().expect("input");
        requests
            .send(Bytes::from_static(b"first"))
            .await
            .expect("send");
        let echo = responses.next().await.expect("an echo").expect("ok");
        assert_eq!(echo, Bytes::from_static(b"first"));

        // Then large calls fill the socket buffers in the same direction (the caller's
        // writer hands the kernel megabytes at once).
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let flood: Vec<_> = (0..4)
            .map(|_| {
                let call = d
                    .request(ECHO, big.clone())
                    .deadline(Duration::from_secs(60));
                tokio::spawn(call.into_future())
            })
            .collect();

        // The caller keeps its stream open, and its engine pings it every 200 ms: the
        // stream must still be open after many times three intervals.
        let ended = tokio::time::timeout(Duration::from_secs(5), responses.next()).await;
        for call in flood {
            call.abort();
        }
        assert!(
            ended.is_err(),
            "the stream ended while its caller kept it open: {ended:?}, {:?}",
            d.stats()
        );
    })
    .await
}
