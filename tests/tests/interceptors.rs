//! Interceptors on a manager and on one service: refusing calls before their handler
//! starts, and learning how every served call and stream ended.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::{
    CallContext, Error, HandlerId, Interceptor, Outcome, RemoteError, StreamCall, StreamHandler,
};
use grid_tests::handlers::DenyAll;
use grid_tests::{num, within, Cluster};
use tokio::sync::mpsc;

const ECHO: HandlerId = HandlerId::new(1);
const FAILS: HandlerId = HandlerId::new(2);
const SLOW: HandlerId = HandlerId::new(3);
const COUNT: HandlerId = HandlerId::new(4);
const STUCK: HandlerId = HandlerId::new(5);
/// A handler of service 9 (handler ids are `(service << 16) | method`).
const GUARDED: HandlerId = HandlerId::new((9 << 16) | 1);

/// Reports every `after` on a channel.
struct Recorder(mpsc::UnboundedSender<(HandlerId, String, Outcome)>);

impl Interceptor for Recorder {
    fn after(&self, call: &CallContext, outcome: &Outcome, _took: Duration) {
        let _ = self
            .0
            .send((call.handler(), call.caller().to_owned(), outcome.clone()));
    }
}

struct Served(Arc<AtomicUsize>);

impl Served {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// alpha calls beta; beta records every call and refuses service 9's.
async fn cluster() -> (
    Cluster,
    mpsc::UnboundedReceiver<(HandlerId, String, Outcome)>,
    Served,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let recorder = Recorder(tx);
    struct Nine;
    impl grid::Service for Nine {
        const NAME: &'static str = "Nine";
        const SERVICE_ID: u16 = 9;
        const METHODS: &'static [grid::MethodInfo] = &[grid::MethodInfo::untyped(
            "guarded",
            GUARDED,
            grid::CallShape::Single,
        )];
    }
    let c = Cluster::start(&["alpha", "beta"], move |b| {
        b.interceptor(Recorder(recorder.0.clone()))
            .service_interceptor::<Nine>(DenyAll)
    })
    .await;
    let served = Arc::new(AtomicUsize::new(0));
    let beta = &c.managers[1];
    beta.register_single(ECHO, |_, p: Option<Bytes>| async move { Ok(p) })
        .expect("register");
    beta.register_single(FAILS, |_, _| async {
        Err::<Option<Bytes>, _>(RemoteError::new("no disk"))
    })
    .expect("register");
    beta.register_single(SLOW, |_, _| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(None::<Bytes>)
    })
    .expect("register");
    let count = served.clone();
    beta.register_single(GUARDED, move |_, _| {
        count.fetch_add(1, Ordering::SeqCst);
        async { Ok(None::<Bytes>) }
    })
    .expect("register");
    beta.register_stream(
        COUNT,
        StreamHandler::new(|mut call: StreamCall| async move {
            for i in 0..3 {
                call.output.send(num(i)).await?;
            }
            Ok(())
        }),
    )
    .expect("register");
    beta.register_stream(
        STUCK,
        StreamHandler::new(|_| async { std::future::pending::<Result<(), RemoteError>>().await }),
    )
    .expect("register");
    c.connected().await;
    (c, rx, Served(served))
}

/// The next `after` beta's recorder saw (alpha's own are about calls alpha serves: none).
async fn next(
    rx: &mut mpsc::UnboundedReceiver<(HandlerId, String, Outcome)>,
) -> (HandlerId, Outcome) {
    let (handler, caller, outcome) = rx.recv().await.expect("an after");
    assert_eq!(caller, "alpha");
    (handler, outcome)
}

#[tokio::test]
async fn every_served_call_and_stream_reports_how_it_ended() {
    within(async {
        let (c, mut rx, _) = cluster().await;
        let beta = c.managers[0].connection("beta").expect("conn");
        beta.request(ECHO, num(1)).await.expect("echo");
        assert_eq!(next(&mut rx).await, (ECHO, Outcome::Ok));
        assert!(beta.request(FAILS, None).await.is_err());
        assert_eq!(
            next(&mut rx).await,
            (FAILS, Outcome::Failed(RemoteError::new("no disk")))
        );
        let slow = beta.request(SLOW, None).deadline(Duration::from_millis(50));
        assert_eq!(slow.await, Err(Error::DeadlineExceeded));
        assert_eq!(next(&mut rx).await, (SLOW, Outcome::Cancelled));
        let stream = conn_stream(&beta).await;
        assert_eq!(stream, 3);
        assert_eq!(next(&mut rx).await, (COUNT, Outcome::Ok));
        // A stream the caller drops: its handler is stopped, and reported cancelled.
        let stuck = beta.open_stream(STUCK, None).await.expect("open");
        drop(stuck);
        assert_eq!(next(&mut rx).await, (STUCK, Outcome::Cancelled));
        c.finish().await;
    })
    .await
}

async fn conn_stream(conn: &grid::Connection) -> usize {
    let s = conn.open_stream(COUNT, None).await.expect("open");
    s.responses.count().await
}

#[tokio::test]
async fn a_service_interceptor_refuses_its_service_only_and_the_handler_never_runs() {
    within(async {
        let (c, mut rx, served) = cluster().await;
        let beta = c.managers[0].connection("beta").expect("conn");
        match beta.request(GUARDED, None).await {
            Err(Error::Remote(e)) => assert!(e.message.contains("alpha may not call"), "{e}"),
            other => panic!("expected the refusal, got {other:?}"),
        }
        assert_eq!(served.count(), 0, "the refused handler never ran");
        // The manager-wide interceptor still sees the other calls, not the refused one.
        beta.request(ECHO, num(2)).await.expect("echo");
        assert_eq!(next(&mut rx).await, (ECHO, Outcome::Ok));
        assert!(rx.try_recv().is_err(), "no after for a refused call");
        c.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_refused_stream_open_fails_with_the_interceptors_error() {
    within(async {
        let c = Cluster::start(&["alpha", "beta"], |b| b.interceptor(DenyAll)).await;
        c.managers[1]
            .register_stream(COUNT, StreamHandler::new(|_| async { Ok(()) }))
            .expect("register");
        c.connected().await;
        let beta = c.managers[0].connection("beta").expect("conn");
        match beta.open_stream(COUNT, None).await {
            Err(Error::Remote(e)) => assert!(e.message.contains("may not call"), "{e}"),
            other => panic!("expected the refusal, got {other:?}"),
        }
        c.finish().await;
    })
    .await
}
