//! Failure paths over real sockets: calls before connecting, sockets cut mid-call, silent
//! peers, restarts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use grid::{Error, HandlerId, State};
use grid_tests::{
    assert_idle, builder, connected, listener, shut_down, wait_state, within, Cluster, ProxiedPair,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const ECHO: HandlerId = HandlerId::new(1);
const STUCK: HandlerId = HandlerId::new(2);

/// Registers ECHO, and STUCK: a handler that reports its start and never finishes, counting
/// how many of its futures were dropped.
fn register(m: &grid::Manager, started: mpsc::UnboundedSender<()>, dropped: Arc<AtomicUsize>) {
    m.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
        .expect("register");
    m.register_single(STUCK, move |_, _| {
        let started = started.clone();
        let dropped = dropped.clone();
        async move {
            struct Count(Arc<AtomicUsize>);
            impl Drop for Count {
                fn drop(&mut self) {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
            let _count = Count(dropped);
            let _ = started.send(());
            std::future::pending::<()>().await;
            Ok(Bytes::new())
        }
    })
    .expect("register");
}

/// A proxied pair with ECHO and STUCK on both sides, connected.
async fn observed_pair(
    configure: impl Fn(grid::ManagerBuilder) -> grid::ManagerBuilder,
) -> (ProxiedPair, mpsc::UnboundedReceiver<()>, Arc<AtomicUsize>) {
    let pair = ProxiedPair::start(configure).await;
    let (started_tx, started) = mpsc::unbounded_channel();
    let dropped = Arc::new(AtomicUsize::new(0));
    register(&pair.dialer, started_tx.clone(), dropped.clone());
    register(&pair.acceptor, started_tx, dropped.clone());
    pair.connected().await;
    (pair, started, dropped)
}

#[tokio::test]
async fn call_before_connect_fails_at_once_with_disconnected() {
    within(async {
        // The peer's port has nothing listening.
        let (l, url) = listener().await;
        drop(l);
        let m = builder("alpha").peer("beta", url).build().expect("build");
        let conn = m.connection("beta").expect("conn");
        assert_eq!(conn.request(ECHO, None).await, Err(grid_tests::NOT_SENT));
        assert_eq!(
            grid_tests::NOT_SENT.execution(),
            grid::Execution::NotExecuted
        );
        assert!(matches!(m.connection("nobody"), Err(Error::UnknownPeer(_))));
        assert_idle(&m).await;
        shut_down(&m).await;
    })
    .await
}

#[tokio::test]
async fn calls_waiting_for_the_peers_room_when_the_link_dies_were_not_executed() {
    within(async {
        // The acceptor serves two calls at once; the dialer's next two wait on its side,
        // never written, until one of those ends.
        let (pair, mut started, _) = observed_pair(|b| b.max_concurrent_calls(2)).await;
        let (d_conn, _) = pair.connections();
        let mut calls = Vec::new();
        for _ in 0..4 {
            calls.push(tokio::spawn(d_conn.request(STUCK, None).into_future()));
        }
        for _ in 0..2 {
            started.recv().await.expect("handler started");
        }
        assert_eq!(d_conn.stats().in_flight_calls, 4);

        pair.proxy.cut();
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(call.await.expect("task").expect_err("the link died"));
        }
        let executed = |e: &Error| e.execution() == grid::Execution::MayHaveExecuted;
        assert_eq!(
            outcomes.iter().filter(|e| executed(e)).count(),
            2,
            "the two that were sent: {outcomes:?}"
        );
        let waiting: Vec<_> = outcomes.iter().filter(|e| !executed(e)).collect();
        assert_eq!(waiting, [&grid_tests::NOT_SENT, &grid_tests::NOT_SENT]);
        assert!(started.try_recv().is_err(), "no other handler started");
        assert_idle(&pair.dialer).await;
        assert_idle(&pair.acceptor).await;
        pair.finish().await;
    })
    .await
}

#[tokio::test]
async fn socket_killed_mid_call_fails_every_call_then_reconnects() {
    within(async {
        let (pair, mut started, dropped) = observed_pair(|b| b).await;
        let (d_conn, a_conn) = pair.connections();

        // Calls in flight in both directions, all stuck in their handlers.
        let mut calls = Vec::new();
        for _ in 0..5 {
            calls.push(tokio::spawn(d_conn.request(STUCK, None).into_future()));
            calls.push(tokio::spawn(a_conn.request(STUCK, None).into_future()));
        }
        for _ in 0..10 {
            started.recv().await.expect("handler started");
        }
        assert_eq!(d_conn.stats().in_flight_calls, 5);
        assert_eq!(d_conn.stats().in_flight_handlers, 5);

        pair.proxy.cut();
        for call in calls {
            assert_eq!(call.await.expect("task"), Err(grid_tests::LOST));
        }
        // Every handler was dropped on both sides.
        assert_idle(&pair.dialer).await;
        assert_idle(&pair.acceptor).await;
        assert_eq!(dropped.load(Ordering::SeqCst), 10);

        // The dialer redials on its own; calls work again in both directions.
        let mut watch = d_conn.watch_state();
        within(
            watch
                .wait_for(|_| d_conn.stats().reconnects >= 1 && d_conn.state() == State::Connected),
        )
        .await
        .expect("watch");
        pair.connected().await;
        assert_eq!(
            d_conn.request(ECHO, Bytes::from("again")).await,
            Ok(Some(Bytes::from("again")))
        );
        assert_eq!(
            a_conn.request(ECHO, Bytes::from("back")).await,
            Ok(Some(Bytes::from("back")))
        );
        assert!(a_conn.stats().reconnects >= 1);
        pair.finish().await;
    })
    .await
}

use std::future::IntoFuture;

#[tokio::test]
async fn a_link_reset_mid_call_fails_every_call_then_reconnects() {
    within(async {
        let (pair, mut started, dropped) = observed_pair(|b| b).await;
        let (d_conn, a_conn) = pair.connections();
        let mut calls = Vec::new();
        for _ in 0..3 {
            calls.push(tokio::spawn(d_conn.request(STUCK, None).into_future()));
            calls.push(tokio::spawn(a_conn.request(STUCK, None).into_future()));
        }
        for _ in 0..6 {
            started.recv().await.expect("handler started");
        }

        // Both sockets get a RST instead of an orderly close.
        pair.proxy.reset();
        for call in calls {
            assert_eq!(call.await.expect("task"), Err(grid_tests::LOST));
        }
        // Both sides say the socket failed (not that the peer broke the protocol).
        for c in [&d_conn, &a_conn] {
            let why = within(async {
                loop {
                    match c.last_error() {
                        Some(e) => break e,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            })
            .await;
            assert!(
                matches!(why, Error::Unreachable(_)),
                "after a reset: {why:?}"
            );
        }
        assert_idle(&pair.dialer).await;
        assert_idle(&pair.acceptor).await;
        assert_eq!(dropped.load(Ordering::SeqCst), 6);

        let mut watch = d_conn.watch_state();
        within(
            watch
                .wait_for(|_| d_conn.stats().reconnects >= 1 && d_conn.state() == State::Connected),
        )
        .await
        .expect("watch");
        pair.connected().await;
        assert_eq!(
            d_conn.request(ECHO, Bytes::from("again")).await,
            Ok(Some(Bytes::from("again")))
        );
        pair.finish().await;
    })
    .await
}

#[tokio::test]
async fn silent_peer_is_declared_dead_after_two_ping_intervals() {
    within(async {
        let (pair, mut started, dropped) =
            observed_pair(|b| b.ping_interval(Duration::from_millis(100))).await;
        let (d_conn, a_conn) = pair.connections();
        let call = tokio::spawn(d_conn.request(STUCK, None).into_future());
        started.recv().await.expect("handler started");
        // Pings flow while the link is healthy.
        let mut watch = d_conn.watch_state();
        let rtt_seen = async {
            while d_conn.stats().last_ping_rtt.is_none() {
                tokio::task::yield_now().await;
            }
        };
        within(rtt_seen).await;

        // The proxy keeps both sockets open but forwards nothing.
        pair.proxy.freeze();
        assert_eq!(call.await.expect("task"), Err(grid_tests::LOST));
        within(watch.wait_for(|s| *s != State::Connected))
            .await
            .expect("watch");
        wait_state(&a_conn, |s| s != State::Connected).await;
        // The side that does not redial still says why it lost the socket.
        match a_conn.last_error() {
            Some(Error::Unreachable(why)) if why.contains("peer silent for") => {}
            other => panic!("last error after a silent peer: {other:?}"),
        }
        assert_idle(&pair.dialer).await;
        assert_idle(&pair.acceptor).await;
        assert_eq!(dropped.load(Ordering::SeqCst), 1);

        pair.proxy.thaw();
        pair.connected().await;
        within(async {
            loop {
                match d_conn.request(ECHO, Bytes::from("alive")).await {
                    Ok(p) => break assert_eq!(p, Some(Bytes::from("alive"))),
                    // The acceptor may still be replacing a stale socket; wait for the next state.
                    Err(Error::Disconnected { .. }) => {
                        let _ = watch.changed().await;
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        })
        .await;
        pair.finish().await;
    })
    .await
}

#[tokio::test]
async fn remote_restart_is_detected() {
    within(async {
        let mut c = Cluster::start(&["alpha", "beta"], |b| b).await;
        c.connected().await;
        let to_beta = c.managers[0].connection("beta").expect("conn");
        let first = to_beta.remote_instance().expect("instance after connect");
        assert_eq!(first, c.managers[1].instance());

        let old_beta = c.managers.pop().expect("beta");
        shut_down(&old_beta).await;
        c.serving
            .pop()
            .expect("serve task")
            .await
            .expect("join")
            .expect("serve");
        wait_state(&to_beta, |s| s != State::Connected).await;

        // Beta comes back: same name and address, new process instance.
        let addr = c.urls[1]
            .trim_start_matches("ws://")
            .trim_end_matches("/grid/v1")
            .to_owned();
        let l = TcpListener::bind(&addr).await.expect("rebind beta");
        let new_beta = builder("beta")
            .peer("alpha", c.urls[0].clone())
            .build()
            .expect("build");
        new_beta
            .register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
            .expect("register");
        c.serving.push(tokio::spawn(new_beta.clone().serve(l)));
        let mut instances = to_beta.watch_remote_instance();
        let new_id = new_beta.instance();
        within(instances.wait_for(|i| *i == Some(new_id)))
            .await
            .expect("watch");
        assert_ne!(first, new_id);
        assert_eq!(to_beta.stats().remote_restarts, 1);
        c.managers.push(new_beta);
        c.connected().await;
        assert_eq!(
            to_beta.request(ECHO, Bytes::from("hi")).await,
            Ok(Some(Bytes::from("hi")))
        );
        connected(&c.managers[1]).await;
        c.finish().await;
    })
    .await
}
