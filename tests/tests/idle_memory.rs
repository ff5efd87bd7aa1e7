//! What idle things cost: an open stream nobody uses, and a connection gone quiet after
//! heavy traffic. The heap is counted by a global allocator (live bytes, not resident
//! memory, so the allocator's own retention does not blur the figures), so the tests here
//! run one at a time.

use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;
use grid::{HandlerId, StreamCall, StreamHandler};
use grid_tests::alloc::{exclusive, live};
use grid_tests::{within_secs, Cluster};

#[global_allocator]
static ALLOC: grid_tests::alloc::Counting = grid_tests::alloc::Counting;

const IDLE: HandlerId = HandlerId::new(1);
const ECHO: HandlerId = HandlerId::new(2);

/// An idle open stream costs at most 2 KiB, both ends together (it was 3.8 KB: the handler's
/// task held the call twice over, and every engine entry took a slot sized for a call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_open_stream_costs_at_most_2_kib_for_both_ends() {
    let _one = exclusive().await;
    within_secs(60, async {
        let c = Cluster::start(&["a", "b"], |b| b.max_concurrent_calls(1 << 14)).await;
        for m in &c.managers {
            let idle = StreamHandler::new(|call: StreamCall| async move {
                call.ctx.cancelled().await;
                Ok(())
            });
            m.register_stream(IDLE, idle).expect("register");
        }
        c.connected().await;
        let conn = c.managers[0].connection("b").expect("conn");
        let n = 4000;
        let mut open = Vec::with_capacity(n);
        let before = live();
        for _ in 0..n {
            open.push(conn.open_stream(IDLE, None).await.expect("open"));
        }
        // Every handler has started (its task exists) once both sides count them all.
        let served = &c.managers[1].connection("a").expect("conn");
        while served.stats().in_flight_handlers < n {
            tokio::task::yield_now().await;
        }
        let per_stream = (live() - before) / n;
        println!("{n} idle open streams: {per_stream} bytes each, both ends");
        assert!(
            per_stream <= 2048,
            "an idle open stream costs {per_stream} bytes (both ends); at most 2048 expected"
        );
        drop(open);
        c.finish().await;
    })
    .await;
}

/// A connection that carried large messages and then went quiet lets go of the buffers the
/// traffic grew (its reader's spare buffers, its writer's frame buffer): the heap comes
/// back near where it was before the traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_gone_quiet_lets_go_of_what_traffic_grew() {
    let _one = exclusive().await;
    within_secs(20, async {
        let ping = Duration::from_millis(200);
        let c = Cluster::start(&["a", "b"], |b| {
            b.ping_interval(ping).max_message_size(2 << 20)
        })
        .await;
        for m in &c.managers {
            m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
                .expect("register");
        }
        c.connected().await;
        let conn = c.managers[0].connection("b").expect("conn");
        let small = Bytes::from_static(b"x");
        conn.request(ECHO, small.clone()).await.expect("warm up");
        let quiet_level = live();
        // Large echoes both ways at once, so that read buffers are still referenced when
        // new ones are needed (spares), and frames are large (writer buffers).
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let calls = (0..8).map(|_| conn.request(ECHO, big.clone()).into_future());
        for answer in futures::future::join_all(calls).await {
            assert_eq!(answer.expect("echo").map(|a| a.len()), Some(1 << 20));
        }
        drop(big);
        let busy_level = live();
        // Quiet: the next pings find it so, and the reader and writer let go at their next
        // frame. Wait for the heap to come back within 64 KiB of the quiet level.
        let allowed = quiet_level + (64 << 10);
        while live() > allowed {
            tokio::time::sleep(ping / 4).await;
        }
        println!(
            "heap: {quiet_level} quiet, {busy_level} after the traffic, {} once quiet again",
            live()
        );
        conn.request(ECHO, small).await.expect("still works");
        c.finish().await;
    })
    .await;
}
