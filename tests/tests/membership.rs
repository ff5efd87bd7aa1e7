//! Peers added and removed at runtime, over real sockets: an added peer is connected and
//! called; two nodes adding each other at once end with one connection; a removed peer is
//! forgotten at once, drained (what is in flight finishes, its handlers see the drain, the
//! peer is told), and cut at the drain timeout; a whole list applies all or nothing.

use std::sync::Arc;

use bytes::Bytes;
use grid::{Error, Execution, HandlerId, Manager, Member, RemoteError, State};
use grid_tests::{builder, finish_all, listener, shut_down, wait_state, within};
use tokio::sync::{mpsc, Notify};

const ECHO: HandlerId = HandlerId::new(1);
const GATED: HandlerId = HandlerId::new(2);

/// A node serving on loopback with no peers, answering `ECHO`.
async fn lone(
    name: &str,
    configure: impl Fn(grid::ManagerBuilder) -> grid::ManagerBuilder,
) -> (Manager, String) {
    let (l, url) = listener().await;
    let m = configure(builder(name)).build().expect("build");
    m.register_single(ECHO, |_, p| async move { Ok::<_, RemoteError>(p) })
        .expect("echo");
    tokio::spawn(m.clone().serve(l));
    (m, url)
}

async fn echo(m: &Manager, peer: &str) -> grid::Result<Option<Bytes>> {
    let conn = m.connection(peer)?;
    conn.request(ECHO, Bytes::from_static(b"hi")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_added_at_runtime_is_connected_and_called_both_ways() {
    within(async {
        let (a, ua) = lone("alpha", |b| b).await;
        let (b, ub) = lone("beta", |b| b).await;
        assert!(matches!(echo(&a, "beta").await, Err(Error::UnknownPeer(p)) if p == "beta"));
        let to_b = a.add_peer("beta", &ub).expect("add beta");
        b.add_peer("alpha", &ua).expect("add alpha");
        // Adding again under the same URL is the same connection.
        let again = a.add_peer("beta", &ub).expect("add beta again");
        assert_eq!(again.remote(), to_b.remote());
        assert_eq!(a.connections().count(), 1);
        grid_tests::connected(&a).await;
        grid_tests::connected(&b).await;
        assert_eq!(
            echo(&a, "beta").await.expect("a -> b"),
            Some(Bytes::from_static(b"hi"))
        );
        assert_eq!(
            echo(&b, "alpha").await.expect("b -> a"),
            Some(Bytes::from_static(b"hi"))
        );
        let stats = a.stats();
        assert_eq!((stats.peers_added, stats.peers_removed), (1, 0));
        let text = stats.to_prometheus();
        assert!(
            text.contains("grid_peers_added_total{local=\"alpha\"} 1"),
            "{text}"
        );
        assert!(text.contains("grid_peers{local=\"alpha\"} 1"), "{text}");
        finish_all(&[&a, &b]).await;
    })
    .await
}

#[tokio::test]
async fn adding_a_peer_refuses_bad_input_with_a_clear_error_and_changes_nothing() {
    within(async {
        let (a, _) = lone("alpha", |b| b.client("tool")).await;
        let (_, ub) = lone("beta", |b| b).await;
        let config = |r: grid::Result<grid::Connection>, want: &str| match r {
            Err(Error::Config(why)) => assert!(why.contains(want), "{why:?} lacks {want:?}"),
            other => panic!("expected a config error about {want:?}, got {other:?}"),
        };
        config(a.add_peer("alpha", &ub), "own name");
        config(a.add_peer("", &ub), "must not be empty");
        config(a.add_peer("beta", "http://127.0.0.1:1/grid/v1"), "ws://");
        config(a.add_peer("tool", &ub), "admitted client");
        a.add_peer("beta", &ub).expect("add beta");
        config(
            a.add_peer("beta", "ws://127.0.0.1:1/grid/v1"),
            "remove it first",
        );
        // A whole list with one bad entry changes nothing.
        let bad = [
            Member::new("gamma", "ws://127.0.0.1:2/grid/v1"),
            Member::new("delta", "tcp://127.0.0.1:3"),
        ];
        assert!(matches!(a.set_peers(&bad), Err(Error::Config(_))));
        let twice = [
            Member::new("gamma", "ws://127.0.0.1:2/grid/v1"),
            Member::new("gamma", "ws://127.0.0.1:4/grid/v1"),
        ];
        assert!(matches!(a.set_peers(&twice), Err(Error::Config(why)) if why.contains("twice")));
        let mut names: Vec<String> = a.connections().map(|c| c.remote().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["beta", "tool"]);
        assert!(matches!(
            a.remove_peer("gamma").await,
            Err(Error::UnknownPeer(_))
        ));
        shut_down(&a).await;
        assert!(matches!(a.add_peer("gamma", &ub), Err(Error::Closed)));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_adding_each_other_at_the_same_moment_end_with_one_connection_every_time() {
    within_secs_for_rounds(async {
        let (a, ua) = lone("alpha", |b| b).await;
        let (b, ub) = lone("beta", |b| b).await;
        for round in 0..100 {
            let (x, y) = (a.clone(), b.clone());
            let (ub, ua) = (ub.clone(), ua.clone());
            let (ca, cb) = tokio::join!(
                tokio::spawn(async move { x.add_peer("beta", &ub) }),
                tokio::spawn(async move { y.add_peer("alpha", &ua) }),
            );
            let (ca, cb) = (
                ca.expect("join").expect("add"),
                cb.expect("join").expect("add"),
            );
            ca.wait_for_connect().await.expect("alpha connects");
            cb.wait_for_connect().await.expect("beta connects");
            assert_eq!(
                echo(&a, "beta").await.expect("call"),
                Some(Bytes::from_static(b"hi"))
            );
            // One connection: exactly one side dials, and neither saw a second socket.
            assert_ne!(ca.is_dialer(), cb.is_dialer(), "round {round}");
            for c in [&ca, &cb] {
                assert_eq!(c.stats().reconnects, 0, "round {round}: {c:?}");
                assert_eq!(c.state(), State::Connected, "round {round}");
            }
            assert_eq!((a.connections().count(), b.connections().count()), (1, 1));
            let (ra, rb) = tokio::join!(a.remove_peer("beta"), b.remove_peer("alpha"));
            ra.expect("remove beta");
            rb.expect("remove alpha");
            assert_eq!((ca.state(), cb.state()), (State::Shutdown, State::Shutdown));
        }
        finish_all(&[&a, &b]).await;
    })
    .await
}

async fn within_secs_for_rounds<F: std::future::Future>(fut: F) -> F::Output {
    grid_tests::within_secs(120, fut).await
}

/// A handler that says when it started, with its context, and answers once released.
fn gated(m: &Manager) -> (mpsc::UnboundedReceiver<grid::CallContext>, Arc<Notify>) {
    let (tx, started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    m.register_single(GATED, move |ctx, _| {
        let (tx, gate) = (tx.clone(), gate.clone());
        async move {
            let _ = tx.send(ctx);
            gate.notified().await;
            Ok::<_, RemoteError>(Bytes::from_static(b"done"))
        }
    })
    .expect("register");
    (started, release)
}

/// Alpha and beta listing each other, connected.
async fn pair() -> (Manager, Manager, String, String) {
    let (a, ua) = lone("alpha", |b| b).await;
    let (b, ub) = lone("beta", |b| b).await;
    a.add_peer("beta", &ub).expect("add");
    b.add_peer("alpha", &ua).expect("add");
    grid_tests::connected(&a).await;
    grid_tests::connected(&b).await;
    (a, b, ua, ub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_peer_is_forgotten_at_once_and_drained_both_ways() {
    within(async {
        let (a, b, _, _) = pair().await;
        let (mut a_started, a_release) = gated(&a);
        let (mut b_started, b_release) = gated(&b);
        let to_b = a.connection("beta").expect("beta");
        let to_a = b.connection("alpha").expect("alpha");
        // A call each way, in flight when alpha removes beta.
        let from_a = tokio::spawn({
            let c = to_b.clone();
            async move { c.request(GATED, None).await }
        });
        let from_b = tokio::spawn({
            let c = to_a.clone();
            async move { c.request(GATED, None).await }
        });
        let ctx_on_b = b_started.recv().await.expect("beta's handler runs");
        let ctx_on_a = a_started.recv().await.expect("alpha's handler runs");
        assert!(!ctx_on_a.is_draining());
        let removing = tokio::spawn({
            let a = a.clone();
            async move { a.remove_peer("beta").await }
        });
        // Forgotten at once here; the handler serving beta's call sees the drain; beta
        // hears of it and starts nothing new here.
        within(ctx_on_a.draining()).await;
        assert!(matches!(a.connection("beta"), Err(Error::UnknownPeer(_))));
        wait_state(&to_a, |s| s == State::Draining).await;
        match to_a.request(grid::HandlerId::new(1), None).await {
            Err(Error::Draining(why)) => assert!(why.contains("alpha removed beta"), "{why}"),
            other => panic!("expected Draining, got {other:?}"),
        }
        assert!(!ctx_on_b.is_draining(), "beta is not leaving");
        // What was in flight both ways finishes.
        a_release.notify_one();
        b_release.notify_one();
        assert_eq!(
            from_b.await.expect("join").expect("b's call"),
            Some(Bytes::from_static(b"done"))
        );
        assert_eq!(
            from_a.await.expect("join").expect("a's call"),
            Some(Bytes::from_static(b"done"))
        );
        within(removing).await.expect("join").expect("removed");
        assert_eq!(to_b.state(), State::Shutdown);
        // A call on a handle kept from before fails unsent, naming the peer.
        assert!(
            matches!(to_b.request(ECHO, None).await, Err(Error::UnknownPeer(p)) if p == "beta")
        );
        // Beta tries again and is refused as unknown, or waits for alpha to dial: it is
        // not connected, and its calls are not executed.
        let s = wait_state(&to_a, |s| s != State::Draining && s != State::Connected).await;
        assert_ne!(s, State::Shutdown);
        let err = to_a.request(ECHO, None).await.expect_err("no connection");
        assert_eq!(err.execution(), Execution::NotExecuted, "{err:?}");
        let stats = a.stats();
        assert_eq!((stats.peers_added, stats.peers_removed), (1, 1));
        finish_all(&[&a, &b]).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_cuts_what_is_left_at_the_drain_timeout() {
    within(async {
        let (a, b, _, _) = pair().await;
        let (mut started, _never) = gated(&b);
        let to_b = a.connection("beta").expect("beta");
        let call = tokio::spawn(async move { to_b.request(GATED, None).await });
        started.recv().await.expect("handler runs");
        // The tests' builder drains for at most a second.
        within(a.remove_peer("beta")).await.expect("removed");
        let err = call.await.expect("join").expect_err("cut");
        assert_eq!(err.execution(), Execution::MayHaveExecuted, "{err:?}");
        // Beta's handler was cancelled with the socket.
        grid_tests::assert_idle(&b).await;
        finish_all(&[&a, &b]).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_list_adds_removes_and_moves_peers_and_leaves_clients_alone() {
    within(async {
        let (a, ua) = lone("alpha", |b| b.client("tool")).await;
        let (b, ub) = lone("beta", |b| b).await;
        let (g, ug) = lone("gamma", |b| b).await;
        b.add_peer("alpha", &ua).expect("add");
        g.add_peer("alpha", &ua).expect("add");
        let all = [
            Member::new("alpha", ua.clone()),
            Member::new("beta", ub.clone()),
            Member::new("gamma", ug.clone()),
        ];
        let change = a.set_peers(&all).expect("set");
        assert_eq!(change.added, ["beta", "gamma"]);
        assert!(change.removed.is_empty());
        assert!(a.set_peers(&all).expect("same list").is_empty());
        for peer in ["beta", "gamma"] {
            within(a.connection(peer).expect("listed").wait_for_connect())
                .await
                .expect("up");
        }
        // Gamma leaves the list: it is drained and forgotten; the client stays.
        let to_g = a.connection("gamma").expect("gamma");
        let change = a.set_peers(&all[..2]).expect("set");
        assert_eq!(change.removed, ["gamma"]);
        wait_state(&to_g, |s| s == State::Shutdown).await;
        let mut names: Vec<String> = a.connections().map(|c| c.remote().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["beta", "tool"]);
        // Beta moves: removed and added again at its new URL.
        let (l2, ub2) = listener().await;
        let moved = [Member::new("beta", ub2.clone())];
        let change = a.set_peers(&moved).expect("set");
        assert_eq!(
            (change.added.as_slice(), change.removed.as_slice()),
            (&["beta".to_owned()][..], &["beta".to_owned()][..])
        );
        assert_ne!(a.connection("beta").expect("beta").state(), State::Shutdown);
        drop(l2);
        finish_all(&[&a, &b, &g]).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_shuts_down_while_peers_are_added_drains_them_all() {
    within(async {
        let (a, _) = lone("alpha", |b| b).await;
        let mut others = Vec::new();
        for i in 0..8 {
            others.push(lone(&format!("n{i}"), |b| b).await);
        }
        let adding = tokio::spawn({
            let a = a.clone();
            let urls: Vec<(String, String)> = others
                .iter()
                .map(|(m, u)| (m.local().to_owned(), u.clone()))
                .collect();
            async move {
                let mut added = 0;
                for (name, url) in urls {
                    match a.add_peer(&name, &url) {
                        Ok(_) => added += 1,
                        Err(Error::Closed) => break,
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                    tokio::task::yield_now().await;
                }
                added
            }
        });
        shut_down(&a).await;
        let added = adding.await.expect("join");
        assert!(a.connections().count() == added);
        for (m, _) in &others {
            shut_down(m).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_peer_is_authenticated_as_every_peer_is() {
    within(async {
        let (a, ua) = lone("alpha", |b| b).await;
        // Beta presents another secret.
        let (b, ub) = lone("beta", |b| b.token("another-secret")).await;
        let to_b = a.add_peer("beta", &ub).expect("add");
        let to_a = b.add_peer("alpha", &ua).expect("add");
        // Whichever side dials is refused by the other's token check.
        let dialer = if to_b.is_dialer() { &to_b } else { &to_a };
        wait_state(dialer, |s| s == State::ConnectionError).await;
        match dialer.last_error() {
            Some(Error::Rejected(why)) => assert!(why.contains("token"), "{why}"),
            other => panic!("expected a refused token, got {other:?}"),
        }
        assert_ne!(to_b.state(), State::Connected);
        assert_ne!(to_a.state(), State::Connected);
        finish_all(&[&a, &b]).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_added_and_removed_at_random_while_calls_run_leave_nothing_behind() {
    grid_tests::within_secs(60, async {
        let mut nodes = Vec::new();
        for i in 0..4 {
            nodes.push(lone(&format!("n{i}"), |b| b).await);
        }
        let urls: Vec<(String, String)> = nodes
            .iter()
            .map(|(m, u)| (m.local().to_owned(), u.clone()))
            .collect();
        // Every node calls whoever it lists, all along.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut callers = Vec::new();
        for (m, _) in &nodes {
            let (m, stopped) = (m.clone(), stopped.clone());
            callers.push(tokio::spawn(async move {
                let (mut lost, mut answered) = (Vec::new(), 0u64);
                while !*stopped.borrow() {
                    for c in m.connections() {
                        match c.request(ECHO, bytes::Bytes::from_static(b"x")).await {
                            Ok(_) => answered += 1,
                            Err(e) if e.execution() == Execution::MayHaveExecuted => {
                                lost.push(format!("{} -> {}: {e}", m.local(), c.remote()));
                            }
                            Err(_) => {}
                        }
                    }
                    tokio::task::yield_now().await;
                }
                (lost, answered)
            }));
        }
        // 200 random changes: a node adds or removes another (a removal waits for its drain
        // half the time, and is left to drain in the background otherwise).
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let (i, j) = (next(4) as usize, next(4) as usize);
            if i == j {
                continue;
            }
            let (m, (name, url)) = (&nodes[i].0, &urls[j]);
            match next(3) {
                0 | 1 => {
                    m.add_peer(name, url).expect("add");
                }
                _ => {
                    if next(2) == 0 {
                        let _ = m.remove_peer(name).await;
                    } else {
                        let m = m.clone();
                        let name = name.clone();
                        tokio::spawn(async move { m.remove_peer(&name).await });
                    }
                }
            }
            if next(4) == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        stop.send_replace(true);
        let mut answered = 0;
        for c in callers {
            // A call lost by a removal is cut at its drain timeout only; here every handler
            // answers at once, so none is.
            let (lost, n) = c.await.expect("caller");
            assert!(lost.is_empty(), "{lost:#?}");
            answered += n;
        }
        assert!(
            answered > 0,
            "no call was answered: the peers never connected"
        );
        let all: Vec<&Manager> = nodes.iter().map(|(m, _)| m).collect();
        finish_all(&all).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_removed_and_added_again_while_its_calls_finish_keeps_them() {
    within(async {
        let (a, b, ua, ub) = pair().await;
        // The side that dials: its new connection would replace the old socket at once.
        let (dialer, acceptor, acceptor_name, acceptor_url) =
            if a.connection("beta").expect("beta").is_dialer() {
                (a.clone(), b.clone(), "beta", ub.clone())
            } else {
                (b.clone(), a.clone(), "alpha", ua.clone())
            };
        let (mut started, release) = gated(&dialer);
        let dialer_name = dialer.local().to_owned();
        let to_dialer = acceptor.connection(&dialer_name).expect("listed");
        // The acceptor's call on the dialer, in flight across the removal and the re-adding.
        let call = tokio::spawn(async move { to_dialer.request(GATED, None).await });
        started.recv().await.expect("handler runs");
        let removing = tokio::spawn({
            let d = dialer.clone();
            let name = acceptor_name.to_owned();
            async move { d.remove_peer(&name).await }
        });
        wait_state(&acceptor.connection(&dialer_name).expect("listed"), |s| {
            s == State::Draining
        })
        .await;
        let again = dialer
            .add_peer(acceptor_name, &acceptor_url)
            .expect("add again");
        // Had the new connection dialed now, its socket would replace the draining one at
        // the acceptor (and the call would be lost): give it the time to, or see it come up.
        // (Not a timing assertion: correct code passes however long this takes.)
        tokio::select! {
            _ = again.wait_for_connect() => {}
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
        release.notify_one();
        assert_eq!(
            call.await
                .expect("join")
                .expect("answered on the draining socket"),
            Some(Bytes::from_static(b"done"))
        );
        within(removing).await.expect("join").expect("removed");
        // The new connection comes up once the old one has ended.
        within(again.wait_for_connect()).await.expect("up again");
        assert_eq!(
            echo(&dialer, acceptor_name).await.expect("call"),
            Some(Bytes::from_static(b"hi"))
        );
        finish_all(&[&a, &b]).await;
    })
    .await
}
