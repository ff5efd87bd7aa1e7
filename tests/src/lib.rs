//! Helpers for grid's integration tests: clusters of managers on loopback, a
//! fault-injecting TCP proxy, timeouts and leak checks.

#[allow(unsafe_code)]
pub mod alloc;
pub mod handlers;
pub mod hostile;
mod link_timer;
pub mod proxy;
pub mod raw;
pub mod storage;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use grid::{Manager, ManagerBuilder, State};
use tokio::net::TcpListener;

/// The `p` quantile (0 to 1) of `sorted` latencies, by nearest rank (the benches' p50 and
/// p99); zero for none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or_default()
}

/// Fails the test if `fut` does not finish within 20 seconds (a hang fails fast, instead of
/// running into CI's limit).
pub async fn within<F: Future>(fut: F) -> F::Output {
    within_secs(20, fut).await
}

/// [`within`] for the few tests that move hundreds of MiB and may be slowed down a lot by a
/// busy machine.
pub async fn within_secs<F: Future>(secs: u64, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("test step did not finish within {secs} s"),
    }
}

/// The shared secret the test clusters use.
/// A call or stream lost with its connection after it was sent.
pub const LOST: grid::Error = grid::Error::Disconnected {
    execution: grid::Execution::MayHaveExecuted,
};
/// A call that was not sent: there was no connection, or it was lost first.
pub const NOT_SENT: grid::Error = grid::Error::Disconnected {
    execution: grid::Execution::NotExecuted,
};

pub const TOKEN: &str = "test-secret";

/// A listener on an ephemeral loopback port, and the URL peers use to reach it.
pub async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = url_of(l.local_addr().expect("local addr"));
    (l, url)
}

/// The grid URL of a socket address.
pub fn url_of(addr: SocketAddr) -> String {
    format!("ws://{addr}/grid/v1")
}

/// A builder with the test defaults: fast reconnects, the shared token, and a drain of at
/// most a second at shutdown (the raw test peers never answer the ping behind a Drain, so a
/// drain would wait for its pong until the timeout).
pub fn builder(local: &str) -> ManagerBuilder {
    Manager::builder()
        .local(local)
        .token(TOKEN)
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .dial_timeout(Duration::from_secs(2))
        .drain_timeout(Duration::from_secs(1))
}

/// Several managers on loopback, each listing all the others.
pub struct Cluster {
    /// The managers, in the order of the names given.
    pub managers: Vec<Manager>,
    /// Each manager's URL.
    pub urls: Vec<String>,
    /// Each manager's `serve` task (ends after its shutdown, releasing the port).
    pub serving: Vec<tokio::task::JoinHandle<grid::Result<()>>>,
}

impl Cluster {
    /// Starts `names.len()` managers, customised by `configure`, serving on loopback.
    pub async fn start(
        names: &[&str],
        configure: impl Fn(ManagerBuilder) -> ManagerBuilder,
    ) -> Cluster {
        Self::start_each(names, |_, b| configure(b)).await
    }

    /// As [`Cluster::start`], with `configure` told which node it builds.
    pub async fn start_each(
        names: &[&str],
        configure: impl Fn(&str, ManagerBuilder) -> ManagerBuilder,
    ) -> Cluster {
        let mut listeners = Vec::new();
        let mut urls = Vec::new();
        for _ in names {
            let (l, url) = listener().await;
            listeners.push(l);
            urls.push(url);
        }
        let mut managers = Vec::new();
        let mut serving = Vec::new();
        for (name, listener) in names.iter().zip(listeners) {
            let mut b = builder(name);
            for (peer, url) in names.iter().zip(&urls) {
                b = b.peer(*peer, url.clone());
            }
            let m = configure(name, b).build().expect("build manager");
            serving.push(tokio::spawn(m.clone().serve(listener)));
            managers.push(m);
        }
        Cluster {
            managers,
            urls,
            serving,
        }
    }

    /// Waits until every connection of every manager is up.
    pub async fn connected(&self) {
        for m in &self.managers {
            connected(m).await;
        }
    }

    /// Proves nothing leaked, then shuts every manager down and checks no task is left.
    pub async fn finish(self) {
        finish_all(&self.managers.iter().collect::<Vec<_>>()).await;
    }
}

/// Proves nothing leaked on any of `managers`, then shuts each down and checks no task is
/// left.
pub async fn finish_all(managers: &[&Manager]) {
    for m in managers {
        assert_idle(m).await;
    }
    for m in managers {
        shut_down(m).await;
    }
}

/// Waits until all of a manager's connections are up.
pub async fn connected(m: &Manager) {
    for c in m.connections() {
        within(c.wait_for_connect()).await.expect("connect");
    }
}

/// Asserts that no call or handler is in flight on any of the manager's connections.
pub async fn assert_idle(m: &Manager) {
    for c in m.connections() {
        let waited = tokio::time::timeout(Duration::from_secs(10), c.wait_idle()).await;
        let stats = c.stats();
        assert!(
            waited.is_ok(),
            "{} -> {}: calls still in flight: {stats:?}",
            m.local(),
            c.remote()
        );
        assert_eq!((stats.in_flight_calls, stats.in_flight_handlers), (0, 0));
        assert_eq!(stats.assembling_bytes, 0);
    }
}

/// Shuts a manager down and asserts that every task it started has ended.
pub async fn shut_down(m: &Manager) {
    within(m.shutdown()).await;
    assert_eq!(
        m.running_tasks(),
        0,
        "{}: tasks left after shutdown",
        m.local()
    );
    for c in m.connections() {
        assert_eq!(c.state(), State::Shutdown);
    }
}

/// Waits until `cond` holds for the connection's state.
pub async fn wait_state(c: &grid::Connection, cond: impl Fn(State) -> bool) -> State {
    let mut rx = c.watch_state();
    let s = within(rx.wait_for(|s| cond(*s)))
        .await
        .expect("state watch");
    *s
}

/// Two node names where the first dials the second.
pub fn dialer_first() -> (&'static str, &'static str) {
    if grid::dials("alpha", "beta") {
        ("alpha", "beta")
    } else {
        ("beta", "alpha")
    }
}

/// Two managers where the dialer reaches the acceptor through a fault-injecting proxy.
pub struct ProxiedPair {
    /// The dialing manager.
    pub dialer: Manager,
    /// The accepting manager.
    pub acceptor: Manager,
    /// The proxy on the dialer's path to the acceptor.
    pub proxy: proxy::Proxy,
}

impl ProxiedPair {
    /// Starts the pair; `configure` applies to both managers.
    pub async fn start(configure: impl Fn(ManagerBuilder) -> ManagerBuilder) -> ProxiedPair {
        Self::start_with(configure, false).await
    }

    /// As [`ProxiedPair::start`], with the proxy on a thread of its own
    /// ([`proxy::Proxy::start_on_own_thread`]): for benchmarks that emulate a link.
    pub async fn start_with_own_thread_proxy(
        configure: impl Fn(ManagerBuilder) -> ManagerBuilder,
    ) -> ProxiedPair {
        Self::start_with(configure, true).await
    }

    async fn start_with(
        configure: impl Fn(ManagerBuilder) -> ManagerBuilder,
        own_thread: bool,
    ) -> ProxiedPair {
        let (d, a) = dialer_first();
        let (dl, d_url) = listener().await;
        let (al, _) = listener().await;
        let target = al.local_addr().expect("addr");
        let proxy = if own_thread {
            proxy::Proxy::start_on_own_thread(target).await
        } else {
            proxy::Proxy::start(target).await
        };
        let dialer = configure(builder(d).peer(a, url_of(proxy.addr())))
            .build()
            .expect("build dialer");
        let acceptor = configure(builder(a).peer(d, d_url))
            .build()
            .expect("build acceptor");
        tokio::spawn(dialer.clone().serve(dl));
        tokio::spawn(acceptor.clone().serve(al));
        ProxiedPair {
            dialer,
            acceptor,
            proxy,
        }
    }

    /// The dialer's connection to the acceptor, and the acceptor's to the dialer.
    pub fn connections(&self) -> (grid::Connection, grid::Connection) {
        let (d, a) = dialer_first();
        (
            self.dialer.connection(a).expect("conn"),
            self.acceptor.connection(d).expect("conn"),
        )
    }

    /// Waits until both sides are connected.
    pub async fn connected(&self) {
        connected(&self.dialer).await;
        connected(&self.acceptor).await;
    }

    /// Leak checks and shutdown of both managers.
    pub async fn finish(self) {
        assert_idle(&self.dialer).await;
        assert_idle(&self.acceptor).await;
        shut_down(&self.dialer).await;
        shut_down(&self.acceptor).await;
    }
}

/// A 4-byte big-endian number as a payload.
pub fn num(i: u32) -> bytes::Bytes {
    bytes::Bytes::from(i.to_be_bytes().to_vec())
}

/// The number in a payload made by [`num`].
pub fn unnum(b: &bytes::Bytes) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

/// This process's resident memory in bytes (from `/proc/self/statm`; 0 where unavailable).
pub fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}
