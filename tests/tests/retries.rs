//! `#[grid(idempotent)]` over real sockets: a call lost with its connection is made again
//! once the peer is back (its handler runs twice, the caller gets one answer, the retry is
//! counted); a method without the attribute is never retried; a retry never outlives the
//! call's deadline.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grid::{Error, Execution, RemoteError};
use grid_tests::{within, ProxiedPair};
use tokio::sync::mpsc;

#[grid::service(id = 60)]
pub trait Tally {
    /// Reads a count: safe to run twice.
    #[grid(idempotent)]
    async fn read(&self, key: String) -> Result<u64, RemoteError>;

    /// Adds one: not safe to run twice.
    async fn bump(&self, key: String) -> Result<u64, RemoteError>;
}

/// The first run of each method reports its start and hangs (until the link is cut);
/// later runs answer how many runs there were.
struct Runs {
    read: AtomicU64,
    bump: AtomicU64,
    started: mpsc::UnboundedSender<&'static str>,
}

impl Runs {
    async fn run(&self, runs: &AtomicU64, name: &'static str) -> Result<u64, RemoteError> {
        let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            let _ = self.started.send(name);
            std::future::pending::<()>().await;
        }
        Ok(n)
    }
}

impl Tally for Arc<Runs> {
    async fn read(&self, _key: String) -> Result<u64, RemoteError> {
        self.run(&self.read, "read").await
    }

    async fn bump(&self, _key: String) -> Result<u64, RemoteError> {
        self.run(&self.bump, "bump").await
    }
}

async fn pair() -> (
    ProxiedPair,
    Arc<Runs>,
    mpsc::UnboundedReceiver<&'static str>,
) {
    let pair = ProxiedPair::start(|b| b).await;
    let (tx, started) = mpsc::unbounded_channel();
    let runs = Arc::new(Runs {
        read: AtomicU64::new(0),
        bump: AtomicU64::new(0),
        started: tx,
    });
    pair.acceptor
        .register(TallyServer::new(runs.clone()))
        .expect("register");
    pair.connected().await;
    (pair, runs, started)
}

#[tokio::test]
async fn an_idempotent_call_lost_with_its_connection_is_made_again() {
    within(async {
        let (pair, runs, mut started) = pair().await;
        let (to_acceptor, _) = pair.connections();
        let client = TallyClient::new(to_acceptor.clone());
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.read("k".into()).await }
        });
        assert_eq!(started.recv().await, Some("read"));
        pair.proxy.cut();
        // Made again on the new connection: the second run answers.
        assert_eq!(call.await.expect("task"), Ok(2));
        assert_eq!(runs.read.load(Ordering::SeqCst), 2);
        assert_eq!(
            to_acceptor.stats().retries,
            [(TallyService::READ, 1)],
            "the retry is counted, by handler"
        );
        pair.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_call_not_marked_idempotent_is_never_retried() {
    within(async {
        let (pair, runs, mut started) = pair().await;
        let (to_acceptor, _) = pair.connections();
        let client = TallyClient::new(to_acceptor.clone());
        let call = tokio::spawn(async move { client.bump("k".into()).await });
        assert_eq!(started.recv().await, Some("bump"));
        pair.proxy.cut();
        let err = call.await.expect("task").expect_err("lost");
        assert_eq!(err, grid_tests::LOST);
        assert_eq!(err.execution(), Execution::MayHaveExecuted);
        assert_eq!(runs.bump.load(Ordering::SeqCst), 1, "ran once");
        assert!(to_acceptor.stats().retries.is_empty());
        pair.finish().await;
    })
    .await
}

#[tokio::test]
async fn retries_stop_at_the_calls_deadline_while_the_peer_stays_away() {
    within(async {
        let (pair, runs, _started) = pair().await;
        let (to_acceptor, _) = pair.connections();
        // The link stays down: the call finds no connection, and none comes back in time.
        pair.proxy.freeze();
        pair.proxy.cut();
        grid_tests::wait_state(&to_acceptor, |s| s != grid::State::Connected).await;
        let client =
            TallyClient::new(to_acceptor.clone()).with_deadline(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = client.read("k".into()).await.expect_err("no peer");
        assert!(
            matches!(
                err,
                Error::Disconnected {
                    execution: Execution::NotExecuted
                }
            ),
            "{err:?}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "it kept trying until its deadline"
        );
        assert_eq!(runs.read.load(Ordering::SeqCst), 0);
        assert!(
            to_acceptor.stats().retries.is_empty(),
            "never back: nothing retried"
        );
        pair.proxy.thaw();
        pair.finish().await;
    })
    .await
}

#[tokio::test]
async fn a_byte_level_call_marked_idempotent_is_made_again_too() {
    within(async {
        let pair = ProxiedPair::start(|b| b).await;
        let (tx, mut started) = mpsc::unbounded_channel();
        let runs = Arc::new(AtomicU64::new(0));
        let counted = runs.clone();
        let id = grid::HandlerId::new(9);
        pair.acceptor
            .register_single(id, move |_, _| {
                let (runs, tx) = (counted.clone(), tx.clone());
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        let _ = tx.send(());
                        std::future::pending::<()>().await;
                    }
                    Ok(bytes::Bytes::from_static(b"done"))
                }
            })
            .expect("register");
        pair.connected().await;
        let (to_acceptor, _) = pair.connections();
        let call = tokio::spawn(to_acceptor.request(id, None).idempotent().into_future());
        started.recv().await.expect("first run");
        pair.proxy.cut();
        let answer = call
            .await
            .expect("task")
            .expect("answered by the second run");
        assert_eq!(answer.as_deref(), Some(&b"done"[..]));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(to_acceptor.stats().retries, [(id, 1)]);
        pair.finish().await;
    })
    .await
}
