//! The run's world: the nodes, the proxied links between them, the handlers they serve, and
//! what the run's tasks share (the tally, the stop signal, the faults in force).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use grid::{
    dials, CallContext, Connection, Error, Manager, RemoteError, StreamCall, StreamHandler,
};
use grid_tests::proxy::Proxy;
use grid_tests::{builder, listener, url_of};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use crate::payload::check;
use crate::tally::{bump, Tally};
use crate::{ECHO, NODES, PING, SLOW, STREAM_ECHO, STREAM_PING, STREAM_WINDOW};

/// One proxied link: the dialer reaches the acceptor through the proxy.
pub(crate) struct Link {
    pub(crate) name: String,
    pub(crate) dialer: usize,
    pub(crate) acceptor: usize,
    pub(crate) proxy: Proxy,
}

/// Everything the tasks of the run share.
pub(crate) struct World {
    pub(crate) start: Instant,
    pub(crate) managers: Vec<Manager>,
    pub(crate) links: Vec<Link>,
    pub(crate) tally: Arc<Tally>,
    /// Set when the run ends (its time is up, or something fatal was found).
    pub(crate) stop: watch::Sender<bool>,
    /// The last faults injected, for a fatal report.
    pub(crate) recent: Mutex<VecDeque<String>>,
    /// The fault in force on each link (a stall or a throttle), if any.
    pub(crate) active: Mutex<Vec<Option<String>>>,
}

impl World {
    pub(crate) fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub(crate) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub(crate) fn log_fault(&self, line: String) {
        println!("{line}");
        let mut recent = self.recent.lock().expect("recent");
        if recent.len() == 12 {
            recent.pop_front();
        }
        recent.push_back(line);
    }

    /// Logs a call or stream that ended with an expected error other than `Disconnected` or
    /// `DeadlineExceeded` (rarer, and worth placing among the faults).
    /// `from` and `to` are the nodes of the call; the link's fault in force is shown.
    pub(crate) fn log_unusual(
        &self,
        e: &Error,
        (from, to): (usize, usize),
        what: impl FnOnce() -> String,
    ) {
        if matches!(e, Error::Disconnected { .. } | Error::DeadlineExceeded) {
            return;
        }
        let link = self
            .links
            .iter()
            .position(|l| {
                (l.dialer, l.acceptor) == (from, to) || (l.dialer, l.acceptor) == (to, from)
            })
            .expect("a link between two nodes");
        let active = self.active.lock().expect("active")[link].clone();
        println!(
            "[{:6.1} s] {}: {e:?} (on {}: {})",
            self.elapsed(),
            what(),
            self.links[link].name,
            active.as_deref().unwrap_or("no fault in force")
        );
    }

    /// Records a fatal finding, prints what helps to diagnose it, and stops the run.
    pub(crate) fn fatal(&self, what: String) {
        let mut report = format!("\n!! FATAL at {:.1} s: {what}\n", self.elapsed());
        report.push_str("   last faults:\n");
        for line in self.recent.lock().expect("recent").iter() {
            report.push_str(&format!("     {line}\n"));
        }
        report.push_str(&self.connections_report());
        println!("{report}");
        self.tally.fatal.lock().expect("fatal").push(what);
        self.stop.send_replace(true);
    }

    /// Every connection's state, last error and figures.
    fn connections_report(&self) -> String {
        let mut s = String::from("   connections:\n");
        for m in &self.managers {
            for c in m.connections() {
                s.push_str(&format!(
                    "     {} -> {}: {:?}, last error {:?}, {:?}\n",
                    m.local(),
                    c.remote(),
                    c.state(),
                    c.last_error().map(|e| e.to_string()),
                    c.stats()
                ));
            }
            s.push_str(&format!(
                "     {}: {} tasks\n",
                m.local(),
                m.running_tasks()
            ));
        }
        for l in &self.links {
            s.push_str(&format!(
                "     link {}: {} open through the proxy\n",
                l.name,
                l.proxy.open_links()
            ));
        }
        s
    }

    pub(crate) fn connection(&self, from: usize, to: usize) -> Connection {
        self.managers[from]
            .connection(NODES[to])
            .expect("a configured peer")
    }

    /// Reconnections so far, counted by each link's dialer.
    pub(crate) fn reconnects(&self) -> u64 {
        self.links
            .iter()
            .map(|l| self.connection(l.dialer, l.acceptor).stats().reconnects)
            .sum()
    }
}

/// Returns once the run stops.
pub(crate) async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Counts a slow handler that ends before its answer, when dropped armed.
struct Stopped(Option<Arc<Tally>>);

impl Stopped {
    /// The handler answered.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            bump(&t.handlers_stopped);
        }
    }
}

/// Registers the handlers every node serves: an echo, a slow echo and a stream echo, each
/// checking the payloads it gets.
fn register(m: &Manager, tally: &Arc<Tally>) {
    m.register_single(ECHO, |_, p: Option<Bytes>| async move {
        let p = p.unwrap_or_default();
        check(&p).map_err(|why| RemoteError::new(format!("corrupt request: {why}")))?;
        Ok(p)
    })
    .expect("register echo");
    let tally = tally.clone();
    m.register_single(SLOW, move |ctx: CallContext, p: Option<Bytes>| {
        let mut stopped = Stopped(Some(tally.clone()));
        async move {
            let p = p.unwrap_or_default();
            let seed =
                check(&p).map_err(|why| RemoteError::new(format!("corrupt request: {why}")))?;
            tokio::select! {
                () = sleep(Duration::from_millis(seed % 1500)) => {}
                () = ctx.cancelled() => return Err(RemoteError::new("cancelled")),
            }
            stopped.disarm();
            Ok(p)
        }
    })
    .expect("register slow");
    m.register_stream(
        STREAM_ECHO,
        StreamHandler::new(|mut call: StreamCall| async move {
            let mut input = call.take_input()?;
            while let Some(m) = input.next().await {
                let m = m?;
                check(&m)
                    .map_err(|why| RemoteError::new(format!("corrupt stream message: {why}")))?;
                call.output.send(m).await?;
            }
            Ok(())
        })
        .with_input()
        .max_window(STREAM_WINDOW),
    )
    .expect("register stream echo");
}

/// Starts the nodes, each link through its own proxy, and waits until all are connected.
pub(crate) async fn start(
    tally: &Arc<Tally>,
) -> (Vec<Manager>, Vec<Link>, Vec<JoinHandle<grid::Result<()>>>) {
    let mut listeners = Vec::new();
    for _ in NODES {
        listeners.push(listener().await);
    }
    let mut links = Vec::new();
    for (i, a) in NODES.iter().enumerate() {
        for (j, b) in NODES.iter().enumerate().skip(i + 1) {
            let (dialer, acceptor) = if dials(a, b) { (i, j) } else { (j, i) };
            let target = listeners[acceptor].0.local_addr().expect("addr");
            links.push(Link {
                name: format!("{}->{}", NODES[dialer], NODES[acceptor]),
                dialer,
                acceptor,
                proxy: Proxy::start(target).await,
            });
        }
    }
    let mut managers = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        let mut b = builder(name)
            .ping_interval(PING)
            .stream_ping_interval(STREAM_PING);
        for (j, peer) in NODES.iter().enumerate().filter(|(j, _)| *j != i) {
            let url = match links.iter().find(|l| l.dialer == i && l.acceptor == j) {
                Some(l) => url_of(l.proxy.addr()),
                None => listeners[j].1.clone(),
            };
            b = b.peer(*peer, url);
        }
        let m = b.build().expect("build manager");
        register(&m, tally);
        managers.push(m);
    }
    let mut serving = Vec::new();
    for (m, (l, _)) in managers.iter().zip(listeners) {
        serving.push(tokio::spawn(m.clone().serve(l)));
    }
    for m in &managers {
        for c in m.connections() {
            timeout(Duration::from_secs(10), c.wait_for_connect())
                .await
                .expect("connect within 10 s")
                .expect("connect");
        }
    }
    (managers, links, serving)
}
