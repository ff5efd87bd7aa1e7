//! Calls to many peers over real sockets, through a typed service: a broadcast reaches
//! every peer and reports each failure with its peer; a quorum returns once met and the
//! straggler is cancelled on its handler (also when the straggler's link is blackholed);
//! a hedged call to a slow replica is answered by the other and the slow call cancelled;
//! deadlines flow into each sub-call as into any call; streams open on many and collect.

use std::time::Duration;

use futures::StreamExt;
use grid::many::{broadcast, quorum, Hedge};
use grid::{CallContext, Error, Manager, RemoteError, Sender};
use grid_tests::proxy::Proxy;
use grid_tests::{builder, finish_all, listener, within};
use tokio::sync::mpsc;

/// A replica: answers reads with its name, slowly or never if told to; reports every call
/// it starts and every call of its that is cancelled.
#[grid::service(id = 40)]
trait Replica {
    /// Answers `"NAME:KEY"`.
    async fn read(&self, key: String) -> Result<String, RemoteError>;

    /// How long the caller's deadline gives this call, in milliseconds.
    async fn budget(&self, req: ()) -> Result<u64, RemoteError>;

    /// Streams `n` lines `"NAME:i"`.
    #[grid(stream)]
    async fn lines(&self, n: u32, out: Sender<String>) -> Result<(), RemoteError>;
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    Started,
    Cancelled,
}

struct Node {
    name: String,
    /// How long a read takes; `None`: it never answers.
    delay: Option<Duration>,
    events: mpsc::UnboundedSender<(String, Event)>,
}

impl Replica for Node {
    async fn read(&self, key: String) -> Result<String, RemoteError> {
        let _ = self.events.send((self.name.clone(), Event::Started));
        // The handler's future is dropped when its call is cancelled before it answers.
        struct Watch(Option<(mpsc::UnboundedSender<(String, Event)>, String)>);
        impl Drop for Watch {
            fn drop(&mut self) {
                if let Some((events, name)) = self.0.take() {
                    let _ = events.send((name, Event::Cancelled));
                }
            }
        }
        let mut watch = Watch(Some((self.events.clone(), self.name.clone())));
        match self.delay {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
        watch.0 = None;
        Ok(format!("{}:{key}", self.name))
    }

    async fn budget(&self, _req: ()) -> Result<u64, RemoteError> {
        let ctx = CallContext::current().ok_or_else(|| RemoteError::new("no context"))?;
        Ok(ctx.remaining().map_or(u64::MAX, |d| d.as_millis() as u64))
    }

    async fn lines(&self, n: u32, mut out: Sender<String>) -> Result<(), RemoteError> {
        for i in 0..n {
            out.send(&format!("{}:{i}", self.name)).await?;
        }
        Ok(())
    }
}

struct World {
    caller: Manager,
    replicas: Vec<Manager>,
    events: mpsc::UnboundedReceiver<(String, Event)>,
    /// The proxy on the caller's path to the last replica.
    proxy: Proxy,
}

/// A client `caller` (it dials every replica) and replicas `r0..`, each with its read
/// delay (`None`: never answers); the caller reaches the last one through a proxy.
async fn world(delays: &[Option<Duration>]) -> World {
    let (tx, events) = mpsc::unbounded_channel();
    let mut replicas = Vec::new();
    let mut caller = builder("caller").as_client();
    let mut proxy = None;
    for (i, delay) in delays.iter().enumerate() {
        let name = format!("r{i}");
        let (l, url) = listener().await;
        let m = builder(&name).client("caller").build().expect("replica");
        m.register(ReplicaServer::new(Node {
            name: name.clone(),
            delay: *delay,
            events: tx.clone(),
        }))
        .expect("register");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(m.clone().serve(l));
        let url = if i + 1 == delays.len() {
            let p = Proxy::start(addr).await;
            let url = grid_tests::url_of(p.addr());
            proxy = Some(p);
            url
        } else {
            url
        };
        caller = caller.peer(name, url);
        replicas.push(m);
    }
    let caller = caller.build().expect("caller");
    grid_tests::connected(&caller).await;
    World {
        caller,
        replicas,
        events,
        proxy: proxy.expect("a replica"),
    }
}

impl World {
    async fn finish(self) {
        let mut all: Vec<&Manager> = self.replicas.iter().collect();
        all.push(&self.caller);
        finish_all(&all).await;
    }

    /// Waits for the next event of `replica`, skipping others'.
    async fn next_of(&mut self, replica: &str) -> Event {
        within(async {
            loop {
                let (who, what) = self.events.recv().await.expect("events");
                if who == replica {
                    return what;
                }
            }
        })
        .await
    }
}

const FAST: Option<Duration> = Some(Duration::ZERO);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_peer_and_reports_each_failure_with_its_peer() {
    within(async {
        let w = world(&[FAST, FAST, FAST]).await;
        let replies = broadcast(w.caller.connections(), |c| async move {
            ReplicaClient::new(c).read("k".into()).await
        })
        .await;
        let got: Vec<(String, String)> = replies
            .into_iter()
            .map(|r| (r.peer, r.result.expect("answer")))
            .collect();
        assert_eq!(
            got,
            [("r0", "r0:k"), ("r1", "r1:k"), ("r2", "r2:k")]
                .map(|(p, a)| (p.to_owned(), a.to_owned()))
        );
        // A peer removed meanwhile: its failure comes back with its name.
        let mut peers: Vec<grid::Connection> = w.caller.connections().collect();
        w.caller.remove_peer("r1").await.expect("remove");
        peers.truncate(2);
        let replies = broadcast(peers, |c| async move {
            ReplicaClient::new(c).read("k".into()).await
        })
        .await;
        assert_eq!(replies[0].result.as_deref(), Ok("r0:k"));
        assert_eq!(replies[1].peer, "r1");
        assert!(
            matches!(&replies[1].result, Err(Error::UnknownPeer(p)) if p == "r1"),
            "{:?}",
            replies[1].result
        );
        w.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_returns_once_met_and_the_straggler_is_cancelled_on_its_handler() {
    within(async {
        let mut w = world(&[FAST, None, FAST]).await;
        let q = quorum(2, w.caller.connections(), |c| async move {
            ReplicaClient::new(c).read("k".into()).await
        })
        .await
        .expect("met");
        let mut answered: Vec<&str> = q.answers.iter().map(|(p, _)| p.as_str()).collect();
        answered.sort();
        assert_eq!(answered, ["r0", "r2"]);
        assert_eq!(q.cancelled, ["r1"]);
        assert_eq!(w.next_of("r1").await, Event::Started);
        assert_eq!(w.next_of("r1").await, Event::Cancelled);
        let stats = w.caller.stats();
        assert_eq!((stats.quorums_met, stats.quorums_failed), (1, 0));
        // Two that do not answer (r1 hangs, r2's link is blackholed): the quorum fails at
        // their deadline, each failure named.
        w.proxy.freeze();
        let err = quorum(2, w.caller.connections(), |c| async move {
            let client = ReplicaClient::new(c).with_deadline(Duration::from_millis(100));
            client.read("k".into()).await
        })
        .await
        .expect_err("only r0 answers");
        let Error::NoQuorum(failure) = &err else {
            panic!("expected NoQuorum, got {err:?}");
        };
        assert_eq!(failure.answered, ["r0"]);
        let mut failed: Vec<(&str, &Error)> = failure
            .failures
            .iter()
            .map(|(p, e)| (p.as_str(), e))
            .collect();
        failed.sort_by_key(|(p, _)| *p);
        assert_eq!(
            failed,
            [
                ("r1", &Error::DeadlineExceeded),
                ("r2", &Error::DeadlineExceeded)
            ]
        );
        w.proxy.thaw();
        let text = w.caller.stats().to_prometheus();
        assert!(
            text.contains("grid_quorums_met_total{local=\"caller\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("grid_quorums_failed_total{local=\"caller\"} 1"),
            "{text}"
        );
        w.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_with_a_blackholed_peer_is_met_by_the_others_and_the_blackholed_call_cancelled() {
    within(async {
        let mut w = world(&[FAST, FAST, None]).await;
        w.proxy.freeze();
        let q = quorum(2, w.caller.connections(), |c| async move {
            ReplicaClient::new(c).read("k".into()).await
        })
        .await
        .expect("met by r0 and r1");
        assert_eq!(q.cancelled, ["r2"]);
        // Nothing is left pending here for the blackholed call.
        let to_r2 = w.caller.connection("r2").expect("r2");
        within(to_r2.wait_idle()).await;
        assert_eq!(to_r2.stats().in_flight_calls, 0);
        // Once the link is back, the call and its cancel arrive together: r2's handler,
        // which never answers, is cancelled (or never starts), so r2 ends up idle.
        w.proxy.thaw();
        grid_tests::assert_idle(&w.replicas[2]).await;
        let mut of_r2 = Vec::new();
        while let Ok((who, what)) = w.events.try_recv() {
            if who == "r2" {
                of_r2.push(what);
            }
        }
        if of_r2 == [Event::Started] {
            of_r2.push(w.next_of("r2").await);
        }
        assert!(
            of_r2.is_empty() || of_r2 == [Event::Started, Event::Cancelled],
            "{of_r2:?}"
        );
        w.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedged_call_to_a_slow_replica_is_answered_by_the_other_and_the_slow_call_cancelled() {
    within(async {
        let mut w = world(&[Some(Duration::from_secs(30)), FAST, FAST]).await;
        let hedge = Hedge::after(Duration::from_millis(20));
        let peers = ["r0", "r1"].map(|r| w.caller.connection(r).expect("replica"));
        let answer = hedge
            .call(peers.clone(), |c| async move {
                ReplicaClient::new(c).read("k".into()).await
            })
            .await
            .expect("answered");
        assert_eq!(answer, "r1:k");
        assert_eq!(w.next_of("r0").await, Event::Started);
        assert_eq!(w.next_of("r0").await, Event::Cancelled);
        // A fast first replica: nobody else is asked.
        let answer = hedge
            .call([peers[1].clone(), peers[0].clone()], |c| async move {
                ReplicaClient::new(c).read("k".into()).await
            })
            .await
            .expect("answered");
        assert_eq!(answer, "r1:k");
        let s = w.caller.stats();
        assert_eq!((s.hedged_calls, s.hedges_sent, s.hedges_won), (2, 1, 1));
        w.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_flow_into_each_sub_call_as_into_any_call() {
    within(async {
        let w = world(&[FAST, FAST, FAST]).await;
        let replies = broadcast(w.caller.connections(), |c| async move {
            ReplicaClient::new(c)
                .with_deadline(Duration::from_millis(500))
                .budget(())
                .await
        })
        .await;
        for r in replies {
            let left = r.result.expect("budget");
            assert!(left <= 500 && left > 0, "{}: {left} ms", r.peer);
        }
        w.finish().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_on_many_peers_collects_into_one() {
    within(async {
        let w = world(&[FAST, FAST, FAST]).await;
        let opened = broadcast(w.caller.connections(), |c| async move {
            ReplicaClient::new(c).lines(3).await
        })
        .await;
        let streams: Vec<_> = opened
            .into_iter()
            .map(|r| r.result.expect("open"))
            .collect();
        let mut got: Vec<String> = futures::stream::select_all(streams)
            .map(|line| line.expect("line"))
            .collect()
            .await;
        got.sort();
        let mut want: Vec<String> = (0..3)
            .flat_map(|r| (0..3).map(move |i| format!("r{r}:{i}")))
            .collect();
        want.sort();
        assert_eq!(got, want);
        w.finish().await;
    })
    .await
}
