//! A graceful shutdown over real sockets: the leaving node tells its peers, what is in
//! flight both ways finishes, what crosses the Drain or comes after it fails as not
//! executed, both sides show `Draining`, the drain deadline is kept, and an idempotent call
//! made during the drain is made again on the node started in its place.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::{Error, Execution, HandlerId, Manager, RemoteError, State};
use grid_tests::{builder, finish_all, handlers::echo_input, num, unnum, wait_state, within};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

const ECHO: HandlerId = HandlerId::new(1);
const GATED: HandlerId = HandlerId::new(2);
const STREAM: HandlerId = HandlerId::new(3);

/// A handler that says when it started and answers once released.
fn gated(m: &Manager) -> (mpsc::UnboundedReceiver<()>, Arc<Notify>) {
    let (tx, started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    m.register_single(GATED, move |_, _| {
        let (tx, gate) = (tx.clone(), gate.clone());
        async move {
            let _ = tx.send(());
            gate.notified().await;
            Ok::<_, RemoteError>(Bytes::from_static(b"done"))
        }
    })
    .expect("register");
    (started, release)
}

/// Alpha and beta on loopback, beta built by `beta` (to set its drain timeout); each
/// registers an echo, beta the stream echo.
async fn pair(beta: impl Fn(grid::ManagerBuilder) -> grid::ManagerBuilder) -> Pair {
    let (la, ua) = grid_tests::listener().await;
    let (lb, ub) = grid_tests::listener().await;
    let alpha = builder("alpha").peer("beta", ub).build().expect("alpha");
    let beta_m = beta(builder("beta").peer("alpha", ua.clone()))
        .build()
        .expect("beta");
    let addr = lb.local_addr().expect("addr");
    tokio::spawn(alpha.clone().serve(la));
    let beta_serving = tokio::spawn(beta_m.clone().serve(lb));
    for m in [&alpha, &beta_m] {
        m.register_single(ECHO, |_, p| async move { Ok::<_, RemoteError>(p) })
            .expect("echo");
    }
    beta_m
        .register_stream(STREAM, echo_input())
        .expect("stream");
    let p = Pair {
        alpha,
        beta: beta_m,
        beta_addr: addr,
        alpha_url: ua,
        beta_serving,
    };
    grid_tests::connected(&p.alpha).await;
    grid_tests::connected(&p.beta).await;
    p
}

struct Pair {
    alpha: Manager,
    beta: Manager,
    beta_addr: std::net::SocketAddr,
    alpha_url: String,
    beta_serving: tokio::task::JoinHandle<grid::Result<()>>,
}

#[tokio::test]
async fn a_shutdown_finishes_calls_in_flight_and_refuses_new_ones_as_not_executed() {
    within(async {
        let p = pair(|b| b).await;
        let (mut started, release) = gated(&p.beta);
        let to_beta = p.alpha.connection("beta").expect("conn");
        let in_flight = tokio::spawn(to_beta.request(GATED, None).into_future());
        started.recv().await.expect("started");
        assert!(!p.beta.status().draining);
        let shutdown = tokio::spawn({
            let beta = p.beta.clone();
            async move { beta.shutdown().await }
        });
        // Both sides show the drain.
        wait_state(&to_beta, |s| s == State::Draining).await;
        let to_alpha = p.beta.connection("alpha").expect("conn");
        assert_eq!(to_alpha.state(), State::Draining);
        assert!(
            p.beta.status().draining,
            "the node's status says it is leaving"
        );
        let seen = p.alpha.status();
        assert_eq!(seen.peers[0].state, "draining", "{seen:?}");
        // A call made now is not started, and says so.
        let refused = to_beta.request(ECHO, Bytes::from_static(b"x")).await;
        let Err(err @ Error::Draining(_)) = refused else {
            panic!("not refused as draining: {refused:?}")
        };
        assert_eq!(err.execution(), Execution::NotExecuted);
        assert!(err.to_string().contains("beta is shutting down"), "{err}");
        assert!(err.to_string().contains("not executed"), "{err}");
        // The call in flight finishes, then beta is gone.
        release.notify_one();
        assert_eq!(
            in_flight.await.expect("task"),
            Ok(Some(Bytes::from_static(b"done")))
        );
        shutdown.await.expect("shutdown");
        assert_eq!(p.beta.running_tasks(), 0);
        assert_eq!(to_alpha.state(), State::Shutdown);
        let left = wait_state(&to_beta, |s| s != State::Draining).await;
        assert_ne!(left, State::Connected);
        finish_all(&[&p.alpha]).await;
        let _ = p.beta_serving.await;
    })
    .await
}

#[tokio::test]
async fn a_stream_open_through_a_drain_runs_to_its_end() {
    within(async {
        let p = pair(|b| b).await;
        let to_beta = p.alpha.connection("beta").expect("conn");
        let stream = to_beta.open_stream(STREAM, num(0)).await.expect("open");
        let (mut requests, mut responses) = stream.split().expect("input");
        requests.send(num(0)).await.expect("send");
        assert_eq!(
            responses.next().await.map(|r| unnum(&r.expect("ok"))),
            Some(0)
        );
        let shutdown = tokio::spawn({
            let beta = p.beta.clone();
            async move { beta.shutdown().await }
        });
        wait_state(&to_beta, |s| s == State::Draining).await;
        for i in 1..=100 {
            requests.send(num(i)).await.expect("send through the drain");
        }
        requests.finish().await.expect("finish");
        let got: Vec<u32> = responses.map(|r| unnum(&r.expect("ok"))).collect().await;
        assert_eq!(got, (1..=100).collect::<Vec<_>>());
        shutdown.await.expect("shutdown");
        finish_all(&[&p.alpha]).await;
    })
    .await
}

#[tokio::test]
async fn at_the_drain_deadline_what_is_left_fails_closed_there_and_lost_here() {
    within(async {
        let p = pair(|b| b.drain_timeout(Duration::from_millis(200))).await;
        let (mut started, _never) = gated(&p.beta);
        let (mut alpha_started, _never_either) = gated(&p.alpha);
        let to_beta = p.alpha.connection("beta").expect("conn");
        let to_alpha = p.beta.connection("alpha").expect("conn");
        let alphas_call = tokio::spawn(to_beta.request(GATED, None).into_future());
        let betas_call = tokio::spawn(to_alpha.request(GATED, None).into_future());
        started.recv().await.expect("started on beta");
        alpha_started.recv().await.expect("started on alpha");
        p.beta.shutdown().await;
        assert_eq!(betas_call.await.expect("task"), Err(Error::Closed));
        let lost = alphas_call.await.expect("task").expect_err("lost");
        assert_eq!(lost, grid_tests::LOST);
        assert_eq!(lost.execution(), Execution::MayHaveExecuted);
        assert_eq!(p.beta.running_tasks(), 0);
        finish_all(&[&p.alpha]).await;
    })
    .await
}

#[grid::service(id = 61)]
pub trait Reader {
    /// Safe to run twice.
    #[grid(idempotent)]
    async fn read(&self, key: String) -> Result<String, RemoteError>;
}

struct Named(&'static str);

impl Reader for Named {
    async fn read(&self, key: String) -> Result<String, RemoteError> {
        Ok(format!("{key} from {}", self.0))
    }
}

#[tokio::test]
async fn an_idempotent_call_made_during_a_drain_is_answered_by_the_node_started_in_its_place() {
    within(async {
        let p = pair(|b| b).await;
        p.beta
            .register(ReaderServer::new(Named("the first")))
            .expect("register");
        let (mut started, release) = gated(&p.beta);
        let to_beta = p.alpha.connection("beta").expect("conn");
        // A call in flight holds the drain open while the idempotent call is made.
        let holding = tokio::spawn(to_beta.request(GATED, None).into_future());
        started.recv().await.expect("started");
        let shutdown = tokio::spawn({
            let beta = p.beta.clone();
            async move { beta.shutdown().await }
        });
        wait_state(&to_beta, |s| s == State::Draining).await;
        let client = ReaderClient::new(to_beta.clone());
        let read = tokio::spawn(async move { client.read("k".into()).await });
        release.notify_one();
        holding
            .await
            .expect("task")
            .expect("the held call finished");
        shutdown.await.expect("shutdown");
        let _ = p.beta_serving.await;
        // The node comes back on the same address, a new instance.
        let listener = TcpListener::bind(p.beta_addr).await.expect("rebind");
        let beta2 = builder("beta")
            .peer("alpha", p.alpha_url.clone())
            .build()
            .expect("beta again");
        beta2
            .register(ReaderServer::new(Named("the second")))
            .expect("register");
        tokio::spawn(beta2.clone().serve(listener));
        assert_eq!(
            read.await.expect("task"),
            Ok("k from the second".to_owned())
        );
        assert!(
            to_beta.stats().retries.iter().any(|(_, n)| *n >= 1),
            "the retry is counted"
        );
        finish_all(&[&p.alpha, &beta2]).await;
    })
    .await
}

/// Callers that keep calling, and streams that keep going, while the peer shuts down: every
/// call and stream either succeeds or fails saying it was not executed; none is lost. Ten
/// rounds, so that the shutdown lands at many different points of the traffic.
#[tokio::test]
async fn calls_and_streams_racing_a_shutdown_are_answered_or_not_executed_never_lost() {
    grid_tests::within_secs(60, async {
        for round in 0..10 {
            let p = pair(|b| b).await;
            let to_beta = p.alpha.connection("beta").expect("conn");
            let mut callers = Vec::new();
            for task in 0..8u32 {
                let conn = to_beta.clone();
                callers.push(tokio::spawn(async move {
                    let (mut ok, mut refused) = (0u32, 0u32);
                    for i in 0.. {
                        let r = if task == 0 && i % 4 == 0 {
                            stream_of(&conn, 50).await
                        } else {
                            conn.request(ECHO, num(i)).await.map(drop)
                        };
                        match r {
                            Ok(()) => ok += 1,
                            Err(e) if e.execution() == Execution::NotExecuted => {
                                refused += 1;
                                if matches!(e, Error::Disconnected { .. }) {
                                    // Beta is gone: this caller is done.
                                    return Ok((ok, refused));
                                }
                                // Refused at once while beta drains: let the others run.
                                tokio::task::yield_now().await;
                            }
                            Err(e) => return Err(format!("call {i} of task {task}: {e}")),
                        }
                    }
                    Ok((ok, refused))
                }));
            }
            // Let the traffic run a moment (a round's worth of calls), then shut beta down.
            for _ in 0..round * 20 {
                to_beta.request(ECHO, num(0)).await.expect("warm-up call");
            }
            p.beta.shutdown().await;
            let mut answered = 0;
            for c in callers {
                let (ok, _) = c.await.expect("task").expect("never lost");
                answered += ok;
            }
            assert!(
                answered > 0 || round == 0,
                "round {round}: nothing was answered"
            );
            finish_all(&[&p.alpha]).await;
        }
    })
    .await
}

/// A two-way stream of `n` messages through the stream echo, checked.
async fn stream_of(conn: &grid::Connection, n: u32) -> Result<(), Error> {
    let stream = conn.open_stream(STREAM, None).await?;
    let (mut requests, mut responses) = stream.split().expect("input");
    for i in 0..n {
        requests.send(num(i)).await?;
    }
    requests.finish().await?;
    let mut got = 0;
    while let Some(item) = responses.next().await {
        assert_eq!(unnum(&item?), got, "in order");
        got += 1;
    }
    assert_eq!(got, n, "every message back");
    Ok(())
}

const FEED: HandlerId = HandlerId::new(4);

/// A stream that would run forever, until its node starts leaving: then it ends cleanly.
fn feed(m: &Manager, started: mpsc::UnboundedSender<bool>) {
    m.register_stream(
        FEED,
        grid::StreamHandler::new(move |mut call: grid::StreamCall| {
            let started = started.clone();
            async move {
                let _ = started.send(call.ctx.is_draining());
                let mut i = 0;
                loop {
                    tokio::select! {
                        r = call.output.send(num(i)) => r?,
                        () = call.ctx.draining() => return Ok(()),
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }),
    )
    .expect("register");
}

#[tokio::test]
async fn a_handler_that_would_run_forever_ends_cleanly_when_its_node_starts_leaving() {
    within(async {
        // A drain timeout far beyond the test's own: only the handler's end lets the
        // shutdown finish in time.
        let p = pair(|b| b.drain_timeout(Duration::from_secs(600))).await;
        let (tx, mut started) = mpsc::unbounded_channel();
        feed(&p.beta, tx);
        let to_beta = p.alpha.connection("beta").expect("conn");
        let mut stream = to_beta.open_stream(FEED, None).await.expect("open");
        assert_eq!(started.recv().await, Some(false), "not draining at first");
        assert_eq!(
            stream
                .responses
                .next()
                .await
                .map(|r| unnum(&r.expect("ok"))),
            Some(0)
        );
        let shutdown = tokio::spawn({
            let beta = p.beta.clone();
            async move { beta.shutdown().await }
        });
        // The feed ends cleanly: every message in order, then the end.
        let mut next = 1;
        while let Some(item) = stream.responses.next().await {
            assert_eq!(unnum(&item.expect("no error: a clean end")), next);
            next += 1;
        }
        shutdown.await.expect("shutdown");
        assert_eq!(p.beta.running_tasks(), 0);
        finish_all(&[&p.alpha]).await;
    })
    .await
}
