//! Single calls over real loopback sockets.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use grid::{CallContext, Error, HandlerId, RemoteError};
use grid_tests::{within, Cluster};
use tokio::sync::{mpsc, oneshot, Notify};

const ECHO: HandlerId = HandlerId::new(1);
const FAIL: HandlerId = HandlerId::new(2);
const PANIC: HandlerId = HandlerId::new(3);
const SLOW: HandlerId = HandlerId::new(4);
const WHO: HandlerId = HandlerId::new(5);

async fn echo(_ctx: CallContext, p: Option<Bytes>) -> Result<Option<Bytes>, RemoteError> {
    Ok(p)
}

async fn pair() -> Cluster {
    let c = Cluster::start(&["alpha", "beta"], |b| b).await;
    for m in &c.managers {
        m.register_single(ECHO, echo).expect("register echo");
    }
    c.connected().await;
    c
}

#[tokio::test]
async fn roundtrip_small_and_large_both_directions() {
    within(async {
        let c = pair().await;
        let (a, b) = (&c.managers[0], &c.managers[1]);
        let a_to_b = a.connection("beta").expect("conn");
        let b_to_a = b.connection("alpha").expect("conn");
        let big = Bytes::from((0..(1 << 20)).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        for payload in [Bytes::from_static(b"hello"), big] {
            let (x, y) = tokio::join!(
                a_to_b.request(ECHO, payload.clone()),
                b_to_a.request(ECHO, payload.clone())
            );
            assert_eq!(x.expect("a->b"), Some(payload.clone()));
            assert_eq!(y.expect("b->a"), Some(payload));
        }
        assert!(a_to_b.stats().messages_in >= 2 && b_to_a.stats().messages_in >= 2);
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn empty_and_absent_payloads_stay_distinct() {
    within(async {
        let c = pair().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        assert_eq!(conn.request(ECHO, None).await.expect("absent"), None);
        assert_eq!(
            conn.request(ECHO, Bytes::new()).await.expect("empty"),
            Some(Bytes::new())
        );
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn remote_error_and_panic_reach_the_caller_and_server_keeps_serving() {
    within(async {
        let c = pair().await;
        let b = &c.managers[1];
        b.register_single(FAIL, |_, _| async {
            Err::<Bytes, _>(RemoteError::new("disk full"))
        })
        .expect("register");
        b.register_single(PANIC, |_, _| async {
            if true {
                panic!("boom in handler");
            }
            Ok(Bytes::new())
        })
        .expect("register");
        // A panic before the handler's future even exists.
        b.register_single(
            WHO,
            |_, _| -> std::future::Ready<Result<Bytes, RemoteError>> {
                panic!("boom before the future")
            },
        )
        .expect("register");
        let conn = c.managers[0].connection("beta").expect("conn");
        match conn.request(WHO, None).await {
            Err(Error::Remote(e)) => assert!(e.message.contains("boom before the future"), "{e}"),
            other => panic!("expected remote error from panic, got {other:?}"),
        }
        match conn.request(FAIL, None).await {
            Err(Error::Remote(e)) => assert_eq!(e.message, "disk full"),
            other => panic!("expected remote error, got {other:?}"),
        }
        match conn.request(PANIC, None).await {
            Err(Error::Remote(e)) => assert!(e.message.contains("boom in handler"), "{e}"),
            other => panic!("expected remote error from panic, got {other:?}"),
        }
        assert_eq!(
            conn.request(ECHO, Bytes::from_static(b"still here"))
                .await
                .expect("echo"),
            Some(Bytes::from_static(b"still here"))
        );
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn unknown_handler_and_subroutes() {
    within(async {
        let c = pair().await;
        let b = &c.managers[1];
        b.register_single_on(WHO, "disk-7", |ctx, _| async move {
            Ok(Bytes::from(format!(
                "{}@{}",
                ctx.caller(),
                ctx.subroute().unwrap_or("-")
            )))
        })
        .expect("register");
        let conn = c.managers[0].connection("beta").expect("conn");
        match conn.request(HandlerId::new(999), None).await {
            Err(Error::UnknownHandler {
                handler,
                subroute: None,
            }) => assert_eq!(handler, HandlerId::new(999)),
            other => panic!("expected unknown handler, got {other:?}"),
        }
        let disk = conn.subroute("disk-7");
        assert_eq!(
            disk.request(WHO, None).await.expect("subroute call"),
            Some(Bytes::from("alpha@disk-7"))
        );
        match conn.subroute("disk-8").request(WHO, None).await {
            Err(Error::UnknownHandler {
                subroute: Some(s), ..
            }) => assert_eq!(s, "disk-8"),
            other => panic!("expected unknown handler on subroute, got {other:?}"),
        }
        // Without a subroute, WHO is not registered either.
        assert!(matches!(
            conn.request(WHO, None).await,
            Err(Error::UnknownHandler { .. })
        ));
        // The connection is still fine.
        assert!(conn.request(ECHO, None).await.is_ok());
        c.finish().await;
    })
    .await
}

/// A handler under observation: it reports its start (with the deadline it saw) and the
/// drop of its future, and otherwise waits for `release`.
struct Observed {
    started: mpsc::UnboundedReceiver<Option<Duration>>,
    dropped: Arc<Notify>,
    finished: Arc<AtomicUsize>,
    release: Arc<Notify>,
}

impl Observed {
    fn register(m: &grid::Manager, id: HandlerId) -> Observed {
        let (started_tx, started) = mpsc::unbounded_channel();
        let o = Observed {
            started,
            dropped: Arc::default(),
            finished: Arc::default(),
            release: Arc::default(),
        };
        let (dropped, finished, release) =
            (o.dropped.clone(), o.finished.clone(), o.release.clone());
        m.register_single(id, move |ctx, _| {
            let started = started_tx.clone();
            let dropped = dropped.clone();
            let finished = finished.clone();
            let release = release.clone();
            async move {
                struct OnDrop(Arc<Notify>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        self.0.notify_one();
                    }
                }
                let _guard = OnDrop(dropped);
                let _ = started.send(ctx.remaining());
                release.notified().await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok(Bytes::from_static(b"late"))
            }
        })
        .expect("register");
        o
    }

    fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn deadline_exceeded_drops_the_late_result_and_the_handler() {
    within(async {
        let c = pair().await;
        let mut slow = Observed::register(&c.managers[1], SLOW);
        let conn = c.managers[0].connection("beta").expect("conn");
        let call = conn
            .request(SLOW, None)
            .deadline(Duration::from_millis(300));
        let result = call.await;
        assert_eq!(result, Err(Error::DeadlineExceeded));
        // The handler saw the deadline, and was dropped instead of finishing.
        let remaining = slow
            .started
            .recv()
            .await
            .expect("handler started")
            .expect("handler has a deadline");
        assert!(
            remaining <= Duration::from_millis(300),
            "deadline sent: {remaining:?}"
        );
        slow.dropped.notified().await;
        slow.release.notify_waiters();
        assert_eq!(slow.finished(), 0);
        c.finish().await;
        assert_eq!(slow.finished(), 0);
    })
    .await
}

#[tokio::test]
async fn dropping_the_caller_future_cancels_the_remote_handler() {
    within(async {
        let c = pair().await;
        let mut slow = Observed::register(&c.managers[1], SLOW);
        let conn = c.managers[0].connection("beta").expect("conn");
        let (go, stop) = oneshot::channel::<()>();
        let caller = tokio::spawn({
            let conn = conn.clone();
            async move {
                tokio::select! {
                    r = conn.request(SLOW, None) => Some(r),
                    _ = stop => None,
                }
            }
        });
        slow.started.recv().await.expect("handler started");
        assert_eq!(conn.stats().in_flight_calls, 1);
        go.send(()).expect("stop caller");
        assert!(caller.await.expect("caller task").is_none());
        slow.dropped.notified().await;
        assert_eq!(slow.finished(), 0);
        c.finish().await;
    })
    .await
}

/// A task the handler spawns inside the call's scope carries the call along: its calls
/// inherit the deadline, and when the call is over they are cancelled on their remote.
#[tokio::test]
async fn calls_from_a_task_spawned_in_the_calls_scope_inherit_its_deadline_and_end_with_it() {
    within(async {
        let c = Cluster::start(&["alpha", "beta", "gamma"], |b| b).await;
        c.connected().await;
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let (gone_tx, mut gone) = mpsc::unbounded_channel::<()>();
        c.managers[2]
            .register_single(WHO, move |ctx: CallContext, _| {
                let _ = seen_tx.send(ctx.remaining());
                let gone_tx = gone_tx.clone();
                async move {
                    // Reports when this handler is dropped (its call was cancelled).
                    struct Gone(mpsc::UnboundedSender<()>);
                    impl Drop for Gone {
                        fn drop(&mut self) {
                            let _ = self.0.send(());
                        }
                    }
                    let _gone = Gone(gone_tx);
                    std::future::pending::<()>().await;
                    Ok(Bytes::new())
                }
            })
            .expect("register");
        let to_gamma = c.managers[1].connection("gamma").expect("conn");
        let (done_tx, mut done) = mpsc::unbounded_channel();
        c.managers[1]
            .register_single(ECHO, move |ctx: CallContext, _| {
                let (to_gamma, done_tx) = (to_gamma.clone(), done_tx.clone());
                async move {
                    // Work the handler hands to a task of its own, scoped to the call.
                    let scoped = ctx.scope(async move {
                        let _ = to_gamma.request(WHO, None).await;
                    });
                    tokio::spawn(async move {
                        let _ = done_tx.send(scoped.await);
                    });
                    std::future::pending::<()>().await;
                    Ok(Bytes::new())
                }
            })
            .expect("register");
        let to_beta = c.managers[0].connection("beta").expect("conn");
        let call = tokio::spawn(
            to_beta
                .request(ECHO, None)
                .deadline(Duration::from_secs(8))
                .into_future(),
        );
        let at_gamma = seen.recv().await.expect("gamma called").expect("deadline");
        assert!(
            at_gamma <= Duration::from_secs(8),
            "the scoped call got {at_gamma:?}, not the call's deadline"
        );
        // The caller gives up on the outer call: the scoped task stops, and its call to
        // gamma is cancelled there.
        call.abort();
        assert!(call.await.expect_err("aborted").is_cancelled());
        assert_eq!(done.recv().await, Some(Err(Error::Cancelled)));
        gone.recv().await.expect("gamma's handler was cancelled");
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn deadlines_travel_across_hops() {
    within(async {
        let c = Cluster::start(&["alpha", "beta", "gamma"], |b| b).await;
        c.connected().await;
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        c.managers[2]
            .register_single(WHO, move |ctx, _| {
                let _ = seen_tx.send(ctx.remaining());
                async { Ok(Bytes::new()) }
            })
            .expect("register");
        let to_gamma = c.managers[1].connection("gamma").expect("conn");
        c.managers[1]
            .register_single(ECHO, move |_, _| {
                let to_gamma = to_gamma.clone();
                // The hop sets no deadline of its own: the incoming one (500 ms) applies,
                // not the 60 s default.
                async move { Ok(to_gamma.request(WHO, None).await?) }
            })
            .expect("register");
        let to_beta = c.managers[0].connection("beta").expect("conn");
        to_beta
            .request(ECHO, None)
            .deadline(Duration::from_millis(500))
            .await
            .expect("two hops");
        let at_gamma = seen.recv().await.expect("gamma called").expect("deadline");
        assert!(
            at_gamma <= Duration::from_millis(500),
            "inherited deadline was {at_gamma:?}"
        );
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn oversize_payload_fails_that_call_only() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b.max_message_size(64 * 1024)).await;
        for m in &c.managers {
            m.register_single(ECHO, echo).expect("register");
        }
        c.connected().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let big = Bytes::from(vec![7u8; 64 * 1024 + 1]);
        match conn.request(ECHO, big).await {
            Err(Error::MessageTooLarge { size, limit }) => {
                assert_eq!((size, limit), (64 * 1024 + 1, 64 * 1024))
            }
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
        let fits = Bytes::from(vec![7u8; 64 * 1024]);
        assert_eq!(
            conn.request(ECHO, fits.clone()).await.expect("fits"),
            Some(fits)
        );
        assert_eq!(conn.stats().reconnects, 0);
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn many_concurrent_calls_are_merged_into_frames() {
    within(async {
        let c = pair().await;
        let conn = c.managers[0].connection("beta").expect("conn");
        let calls = (0..2000u32).map(|i| {
            let conn = conn.clone();
            async move {
                let p = Bytes::from(i.to_be_bytes().to_vec());
                assert_eq!(conn.request(ECHO, p.clone()).await.expect("call"), Some(p));
            }
        });
        futures::future::join_all(calls).await;
        let sent = conn.stats();
        let received = c.managers[1].connection("alpha").expect("conn").stats();
        assert!(
            sent.merged_frames_out > 0,
            "no merged frames sent: {sent:?}"
        );
        assert!(
            received.merged_frames_in > 0,
            "no merged frames received: {received:?}"
        );
        assert!(received.messages_in > received.frames_in, "{received:?}");
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_call_still_pending_at_the_drain_deadline_fails_with_closed() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| {
            b.drain_timeout(Duration::from_millis(100))
        })
        .await;
        for m in &c.managers {
            m.register_single(ECHO, echo).expect("register echo");
        }
        c.connected().await;
        let mut slow = Observed::register(&c.managers[1], SLOW);
        let conn = c.managers[0].connection("beta").expect("conn");
        let call = tokio::spawn(conn.request(SLOW, None).into_future());
        slow.started.recv().await.expect("started");
        c.managers[0].shutdown().await;
        assert_eq!(call.await.expect("task"), Err(Error::Closed));
        assert_eq!(conn.request(ECHO, None).await, Err(Error::Closed));
        c.finish().await;
    })
    .await
}

/// `?` in a handler on grid's own errors: the caller gets `Error::Remote` with the error's
/// message, and a nested call's remote error passes on with its message as it was.
#[tokio::test]
async fn a_handler_passes_grid_errors_on_with_the_question_mark() {
    within(async {
        const HOP: HandlerId = HandlerId::new(40);
        const REFUSES: HandlerId = HandlerId::new(41);
        const MISSING: u32 = 404;
        let c = Cluster::start(&["alpha", "beta"], |b| b).await;
        c.managers[0]
            .register_single(REFUSES, |_, _| async {
                Err::<Option<Bytes>, _>(RemoteError::new("no disk left"))
            })
            .expect("register");
        let back = c.managers[1].connection("alpha").expect("conn");
        c.managers[1]
            .register_single(HOP, move |_, p: Option<Bytes>| {
                let back = back.clone();
                async move {
                    let target = HandlerId::new(grid_tests::unnum(&p.unwrap_or_default()));
                    Ok(back.request(target, None).await?)
                }
            })
            .expect("register");
        c.connected().await;
        let beta = c.managers[0].connection("beta").expect("conn");
        let nested = beta.request(HOP, grid_tests::num(REFUSES.get())).await;
        assert_eq!(nested, Err(Error::Remote(RemoteError::new("no disk left"))));
        match beta.request(HOP, grid_tests::num(MISSING)).await {
            Err(Error::Remote(e)) => {
                assert!(e.message.contains("no handler #404"), "{}", e.message)
            }
            other => panic!("expected the nested call's error, got {other:?}"),
        }
        c.finish().await;
    })
    .await
}
