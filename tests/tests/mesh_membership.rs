//! A 16-node mesh in one process whose membership changes while every node calls the others:
//! a 17th node added at runtime is connected to all (the time it takes is printed), a node
//! removed by all is drained and forgotten, and no call of the load fails or is lost: a
//! call is answered, or not executed and made again on another peer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use grid::{Execution, HandlerId, Manager, RemoteError, State};
use grid_tests::{builder, finish_all, listener, within_secs, Cluster};
use tokio::sync::watch;

const WHO: HandlerId = HandlerId::new(1);

fn register(m: &Manager) {
    let me = m.local().to_owned();
    m.register_single(WHO, move |_, _| {
        let me = me.clone();
        async move { Ok::<_, RemoteError>(Bytes::from(me)) }
    })
    .expect("register");
}

#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    not_executed: AtomicU64,
    failed: Mutex<Vec<String>>,
}

/// Calls the peers `m` lists now, round robin, until `stop`: every answer must name the
/// peer called; a call not executed (the peer was not connected yet, or is draining) is
/// counted and made on the next peer; anything else is a failure.
async fn load(m: Manager, tally: Arc<Tally>, mut stop: watch::Receiver<bool>) {
    let mut turn = 0usize;
    while !*stop.borrow() {
        let peers: Vec<grid::Connection> = m.connections().collect();
        turn = turn.wrapping_add(1);
        let Some(conn) = peers.get(turn % peers.len().max(1)).cloned() else {
            tokio::task::yield_now().await;
            continue;
        };
        tokio::select! {
            r = conn.request(WHO, None) => match r {
                Ok(Some(who)) if who == conn.remote().as_bytes() => {
                    tally.answered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.execution() == Execution::NotExecuted => {
                    tally.not_executed.fetch_add(1, Ordering::Relaxed);
                    // Not connected yet: let the others run instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                other => tally
                    .failed
                    .lock()
                    .expect("tally")
                    .push(format!("{} -> {}: {other:?}", m.local(), conn.remote())),
            },
            _ = stop.changed() => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_17th_node_joins_a_16_node_mesh_and_a_node_leaves_while_calls_go_on() {
    within_secs(120, async {
        let names: Vec<String> = (0..16).map(|i| format!("node-{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let cluster = Cluster::start(&refs, |b| b).await;
        for m in &cluster.managers {
            register(m);
        }
        cluster.connected().await;
        let tally = Arc::new(Tally::default());
        let (stop, stopped) = watch::channel(false);
        let mut loads = Vec::new();
        for m in &cluster.managers {
            loads.push(tokio::spawn(load(
                m.clone(),
                tally.clone(),
                stopped.clone(),
            )));
        }

        // Join: the newcomer lists everyone; everyone adds it.
        let (l, url) = listener().await;
        let mut b = builder("node-16");
        for (name, url) in names.iter().zip(&cluster.urls) {
            b = b.peer(name.clone(), url.clone());
        }
        let newcomer = b.build().expect("build");
        register(&newcomer);
        let started = Instant::now();
        tokio::spawn(newcomer.clone().serve(l));
        for m in &cluster.managers {
            m.add_peer("node-16", &url).expect("add the newcomer");
        }
        let mut links = Vec::new();
        for m in &cluster.managers {
            links.push(m.connection("node-16").expect("listed"));
        }
        links.extend(newcomer.connections());
        for c in &links {
            c.wait_for_connect().await.expect("connect");
        }
        let joined = started.elapsed();
        eprintln!("node-16 connected to all 16 nodes, both ways, in {joined:?}");
        let mut all = cluster.managers.clone();
        all.push(newcomer.clone());
        loads.push(tokio::spawn(load(
            newcomer.clone(),
            tally.clone(),
            stopped.clone(),
        )));
        // Let the newcomer be called a little.
        let before = tally.answered.load(Ordering::Relaxed);
        while tally.answered.load(Ordering::Relaxed) < before + 2_000 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }

        // Leave: everyone else removes node-05 (which calls on, and is refused, not
        // executed), then it shuts down.
        let leaver = all.remove(5);
        let leaver_links: Vec<grid::Connection> = all
            .iter()
            .map(|m| m.connection("node-05").expect("listed"))
            .collect();
        let removals = all.iter().map(|m| {
            let m = m.clone();
            async move { m.remove_peer("node-05").await }
        });
        for r in futures::future::join_all(removals).await {
            r.expect("removed");
        }
        for c in &leaver_links {
            assert_eq!(c.state(), State::Shutdown);
        }
        for m in &all {
            assert!(
                m.connection("node-05").is_err(),
                "{} still lists node-05",
                m.local()
            );
            assert_eq!(m.connections().count(), 15);
        }
        let before = tally.answered.load(Ordering::Relaxed);
        while tally.answered.load(Ordering::Relaxed) < before + 2_000 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        stop.send_replace(true);
        for l in loads {
            l.await.expect("load");
        }
        let failed = tally.failed.lock().expect("tally").clone();
        assert!(failed.is_empty(), "calls failed: {failed:#?}");
        eprintln!(
            "answered {}, not executed and made again {}",
            tally.answered.load(Ordering::Relaxed),
            tally.not_executed.load(Ordering::Relaxed)
        );
        grid_tests::shut_down(&leaver).await;
        finish_all(&all.iter().collect::<Vec<_>>()).await;
    })
    .await
}
