//! Membership sources over real sockets: nodes that follow a peer file, or a DNS name
//! (a test resolver whose answer changes), connect to the peers it lists as it changes,
//! drain and forget the ones it drops, and keep their list through a malformed file or a
//! failing lookup.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grid::{DnsPeers, FilePeers, Manager, Member, Resolve, State, StaticPeers};
use grid_tests::{builder, finish_all, listener, within};
use tokio::net::TcpListener;

const EVERY: Duration = Duration::from_millis(20);

/// Waits until `m` lists exactly `names` (sorted), each connected.
async fn lists_connected(m: &Manager, names: &[&str]) {
    within(async {
        loop {
            let conns: Vec<grid::Connection> = m.connections().collect();
            let listed: Vec<&str> = conns.iter().map(|c| c.remote()).collect();
            if listed == names && conns.iter().all(|c| c.state() == State::Connected) {
                return;
            }
            tokio::time::sleep(EVERY).await;
        }
    })
    .await
}

/// Writes the file whole and renames it into place, as the docs ask.
fn write_list(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_following_a_peer_file_join_and_leave_as_it_changes() {
    within(async {
        let dir = std::env::temp_dir().join(format!("grid-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("peers");
        let mut nodes = Vec::new();
        for name in ["a", "b", "c"] {
            let (l, url) = listener().await;
            let m = builder(name).build().expect("build");
            tokio::spawn(m.clone().serve(l));
            nodes.push((m, url));
        }
        let line = |i: usize| format!("{} {}\n", nodes[i].0.local(), nodes[i].1);
        write_list(&path, &format!("# a and b\n{}{}", line(0), line(1)));
        for (m, _) in &nodes {
            m.follow_peers(FilePeers::new(&path).every(EVERY));
        }
        let (a, b, c) = (&nodes[0].0, &nodes[1].0, &nodes[2].0);
        lists_connected(a, &["b"]).await;
        // c joins the list; everyone connects to it.
        write_list(&path, &format!("{}\n{}{}{}", "", line(0), line(1), line(2)));
        lists_connected(a, &["b", "c"]).await;
        lists_connected(b, &["a", "c"]).await;
        lists_connected(c, &["a", "b"]).await;
        // A malformed edit changes nothing.
        write_list(&path, &format!("{}{}c\n", line(0), line(1)));
        tokio::time::sleep(EVERY * 5).await;
        lists_connected(a, &["b", "c"]).await;
        assert_eq!(a.stats().peers_removed, 0);
        // b leaves the list: a and c drain it and forget it.
        write_list(&path, &format!("{}{}", line(0), line(2)));
        lists_connected(a, &["c"]).await;
        lists_connected(c, &["a"]).await;
        assert_eq!(a.stats().peers_removed, 1);
        finish_all(&[a, b, c]).await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[test]
fn the_peer_file_format_is_checked_line_by_line() {
    let ok =
        FilePeers::parse("# x\n\n  n1 ws://h:1/grid/v1  \nn2\tws://h:2/grid/v1\n").expect("ok");
    assert_eq!(
        ok,
        [
            Member::new("n1", "ws://h:1/grid/v1"),
            Member::new("n2", "ws://h:2/grid/v1")
        ]
    );
    let err = FilePeers::parse("n1 ws://h:1/grid/v1\nn2 ws://h:2 extra\n").expect_err("bad");
    assert!(err.starts_with("line 2:"), "{err}");
    assert!(FilePeers::parse("n1\n").is_err());
}

/// A resolver whose answer the test sets (and can make fail).
#[derive(Clone)]
struct TestDns {
    answer: Arc<Mutex<io::Result<Vec<SocketAddr>>>>,
}

impl TestDns {
    fn new() -> Self {
        Self {
            answer: Arc::new(Mutex::new(Ok(Vec::new()))),
        }
    }

    fn set(&self, answer: io::Result<Vec<SocketAddr>>) {
        *self.answer.lock().expect("dns") = answer;
    }
}

impl Resolve for TestDns {
    async fn resolve(&self, host: &str, _port: u16) -> io::Result<Vec<SocketAddr>> {
        assert_eq!(host, "grid.test");
        match &*self.answer.lock().expect("dns") {
            Ok(addrs) => Ok(addrs.clone()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_following_a_dns_name_follow_its_answer() {
    within(async {
        let dns = TestDns::new();
        let mut listeners: Vec<(TcpListener, SocketAddr)> = Vec::new();
        for _ in 0..3 {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = l.local_addr().expect("addr");
            listeners.push((l, addr));
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|(_, a)| *a).collect();
        dns.set(Ok(addrs[..2].to_vec()));
        let mut nodes = Vec::new();
        for (l, addr) in listeners {
            // Named by the address the name resolves to, as DnsPeers names its peers.
            let m = builder(&addr.to_string()).build().expect("build");
            tokio::spawn(m.clone().serve(l));
            m.follow_peers(
                DnsPeers::new("grid.test", addr.port())
                    .every(EVERY)
                    .resolver(dns.clone()),
            );
            nodes.push(m);
        }
        let name = |i: usize| addrs[i].to_string();
        lists_connected(&nodes[0], &[&name(1)]).await;
        // A failing lookup keeps the list.
        dns.set(Err(io::Error::new(io::ErrorKind::TimedOut, "no answer")));
        tokio::time::sleep(EVERY * 5).await;
        lists_connected(&nodes[0], &[&name(1)]).await;
        // The third node appears in the answer.
        dns.set(Ok(addrs.clone()));
        let mut sorted = [name(0), name(1), name(2)];
        sorted.sort();
        for (i, m) in nodes.iter().enumerate() {
            let others: Vec<&str> = sorted
                .iter()
                .filter(|n| **n != name(i))
                .map(String::as_str)
                .collect();
            lists_connected(m, &others).await;
        }
        // The second leaves it.
        dns.set(Ok(vec![addrs[0], addrs[2]]));
        lists_connected(&nodes[0], &[&name(2)]).await;
        lists_connected(&nodes[2], &[&name(0)]).await;
        finish_all(&nodes.iter().collect::<Vec<_>>()).await;
    })
    .await
}

#[tokio::test]
async fn a_static_source_lists_its_peers_once() {
    within(async {
        let (l, url) = listener().await;
        let (la, ua) = listener().await;
        let b = builder("b").peer("a", ua).build().expect("b");
        tokio::spawn(b.clone().serve(l));
        let a = builder("a").build().expect("a");
        tokio::spawn(a.clone().serve(la));
        a.follow_peers(StaticPeers::new([
            Member::new("b", url),
            Member::new("a", "ws://x:1/grid/v1"),
        ]));
        within(async {
            while a.connection("b").is_err() {
                tokio::time::sleep(EVERY).await;
            }
        })
        .await;
        within(a.connection("b").expect("b").wait_for_connect())
            .await
            .expect("up");
        assert_eq!(a.stats().peers_added, 1);
        finish_all(&[&a, &b]).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_file_that_is_missing_at_first_is_followed_once_it_appears() {
    within(async {
        let dir = std::env::temp_dir().join(format!("grid-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("peers");
        let _ = std::fs::remove_file(&path);
        let (la, ua) = listener().await;
        let (lb, ub) = listener().await;
        let a = builder("a").build().expect("a");
        let b = builder("b").peer("a", ua).build().expect("b");
        tokio::spawn(a.clone().serve(la));
        tokio::spawn(b.clone().serve(lb));
        a.follow_peers(FilePeers::new(&path).every(EVERY));
        // Missing: an error each time it is read, and nothing listed.
        tokio::time::sleep(EVERY * 5).await;
        assert_eq!(a.connections().count(), 0);
        write_list(&path, &format!("b {ub}\n"));
        lists_connected(&a, &["b"]).await;
        // Taken away again: the list is kept.
        std::fs::remove_file(&path).expect("remove");
        tokio::time::sleep(EVERY * 5).await;
        lists_connected(&a, &["b"]).await;
        finish_all(&[&a, &b]).await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}
