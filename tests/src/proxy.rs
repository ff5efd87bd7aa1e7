//! A fault-injecting TCP proxy: put it between two managers to break the links between
//! them the ways a network does.
//!
//! The controls, each acting on every link (one inbound and one outbound socket, bytes
//! pumped both ways) of the proxy:
//! - [`Proxy::cut`] closes every current link normally: both sockets are closed, so each
//!   peer reads an orderly end (FIN; a RST where bytes it sent were still unread, as
//!   `close(2)` does).
//! - [`Proxy::reset`] closes every current link abruptly: both sockets are closed with a
//!   zero linger, so each peer gets a TCP RST (`ECONNRESET`) and anything still queued is
//!   discarded.
//! - [`Proxy::freeze`] / [`Proxy::thaw`] stop and restart forwarding without closing
//!   anything: both peers go silent, and bytes read meanwhile are held until the thaw.
//!   Links accepted while frozen stay silent too.
//! - [`Proxy::throttle`] limits each direction of every link to a rate.
//! - [`Proxy::delay`] holds every byte for a while before it goes on, in each direction (a
//!   round trip of twice that), as a long link does: bytes in flight overlap, so the delay
//!   is paid once, not once per chunk.
//!
//! New links are accepted whatever the controls say (a frozen proxy still accepts, and
//! forwards nothing). [`Fault`] names one of these as a value, and [`Proxy::inject`] applies
//! it (for a stall or a throttle, for its duration), for random fault schedules.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::link_timer::LinkTimer;

/// A running proxy. Dropping it stops it and closes every link.
pub struct Proxy {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    frozen: watch::Sender<bool>,
    rate: watch::Sender<Option<u64>>,
    delay: watch::Sender<Duration>,
    forwarded: watch::Sender<u64>,
    /// Counts resets; every link resets when it changes.
    resets: watch::Sender<u64>,
    accept: JoinHandle<()>,
    /// Dropped with the proxy: ends the thread of its own, if it has one.
    _thread: Option<oneshot::Sender<()>>,
}

/// What every pump of a proxy shares.
#[derive(Clone)]
struct Controls {
    frozen: watch::Receiver<bool>,
    rate: watch::Receiver<Option<u64>>,
    delay: watch::Receiver<Duration>,
    forwarded: watch::Sender<u64>,
    /// Marked seen when the link is accepted: a link sees only the resets after it.
    resets: watch::Receiver<u64>,
}

/// One fault on every link of a proxy, applied by [`Proxy::inject`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// [`Proxy::cut`]: every link closed normally.
    Cut,
    /// [`Proxy::reset`]: every link closed abruptly (RST).
    Reset,
    /// [`Proxy::freeze`] for this long, then [`Proxy::thaw`].
    Stall(Duration),
    /// [`Proxy::throttle`] to `bytes_per_sec` for `time`, then no limit.
    Throttle {
        /// The rate of each direction of every link.
        bytes_per_sec: u64,
        /// How long the limit holds.
        time: Duration,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Cut => write!(f, "cut"),
            Fault::Reset => write!(f, "reset"),
            Fault::Stall(d) => write!(f, "stall {} ms", d.as_millis()),
            Fault::Throttle {
                bytes_per_sec,
                time,
            } => write!(
                f,
                "throttle to {} KiB/s for {} ms",
                bytes_per_sec / 1024,
                time.as_millis()
            ),
        }
    }
}

impl Proxy {
    /// Starts a proxy on an ephemeral loopback port forwarding to `target`, its tasks on
    /// the caller's runtime.
    pub async fn start(target: SocketAddr) -> Proxy {
        Self::start_on(target, tokio::runtime::Handle::current(), None).await
    }

    /// As [`Proxy::start`], on a thread of its own (with a runtime of its own), as a link
    /// emulator for benchmarks: busy tasks of the managers it links do not delay its bytes.
    /// The thread ends when the proxy is dropped.
    pub async fn start_on_own_thread(target: SocketAddr) -> Proxy {
        let (handle_tx, handle_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("test-link".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                let _ = handle_tx.send(rt.handle().clone());
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .expect("proxy thread");
        let handle = handle_rx.await.expect("proxy runtime");
        Self::start_on(target, handle, Some(stop)).await
    }

    async fn start_on(
        target: SocketAddr,
        runtime: tokio::runtime::Handle,
        thread: Option<oneshot::Sender<()>>,
    ) -> Proxy {
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let frozen = watch::Sender::new(false);
        let rate = watch::Sender::new(None);
        let delay = watch::Sender::new(Duration::ZERO);
        let forwarded = watch::Sender::new(0u64);
        let resets = watch::Sender::new(0u64);
        let (bound_tx, bound) = oneshot::channel();
        let accept = {
            let links = links.clone();
            let controls = Controls {
                frozen: frozen.subscribe(),
                rate: rate.subscribe(),
                delay: delay.subscribe(),
                forwarded: forwarded.clone(),
                resets: resets.subscribe(),
            };
            // Bound on the runtime that runs it, so its sockets are that runtime's.
            runtime.spawn(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
                let _ = bound_tx.send(listener.local_addr().expect("proxy addr"));
                accept_links(listener, target, links, controls).await;
            })
        };
        let addr = bound.await.expect("proxy bound");
        Proxy {
            addr,
            links,
            frozen,
            rate,
            delay,
            forwarded,
            resets,
            accept,
            _thread: thread,
        }
    }

    /// The address to dial instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every current link (both sockets of each) normally; new links are still
    /// accepted.
    pub fn cut(&self) {
        for l in self.links.lock().expect("links").drain(..) {
            l.abort();
        }
    }

    /// Closes every current link abruptly: both sockets of each are closed with a zero
    /// linger, so both peers get a TCP RST instead of an orderly end. New links are still
    /// accepted. The links close as soon as their tasks run (this does not wait).
    pub fn reset(&self) {
        self.resets.send_modify(|n| *n += 1);
    }

    /// Stops forwarding bytes without closing anything: both peers go silent.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Forwards again.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Limits each direction of every link to about `bytes_per_sec` (`None`: no limit).
    pub fn throttle(&self, bytes_per_sec: Option<u64>) {
        self.rate.send_replace(bytes_per_sec);
    }

    /// Holds every byte read from now on for `one_way` before it is written on, in each
    /// direction: a link with a round trip of twice that (`Duration::ZERO`: none).
    pub fn delay(&self, one_way: Duration) {
        self.delay.send_replace(one_way);
    }

    /// Applies `fault`; a stall or a throttle holds for its duration, and the proxy forwards
    /// freely again when this returns. Dropped early, a stall or throttle stays in force
    /// (call [`Proxy::thaw`] and `throttle(None)`).
    pub async fn inject(&self, fault: Fault) {
        match fault {
            Fault::Cut => self.cut(),
            Fault::Reset => self.reset(),
            Fault::Stall(time) => {
                self.freeze();
                tokio::time::sleep(time).await;
                self.thaw();
            }
            Fault::Throttle {
                bytes_per_sec,
                time,
            } => {
                self.throttle(Some(bytes_per_sec));
                tokio::time::sleep(time).await;
                self.throttle(None);
            }
        }
    }

    /// Waits until the proxy has forwarded at least `bytes` in all (both directions).
    pub async fn forwarded_at_least(&self, bytes: u64) {
        let mut rx = self.forwarded.subscribe();
        let _ = rx.wait_for(|n| *n >= bytes).await;
    }

    /// Links currently open.
    pub fn open_links(&self) -> usize {
        self.links
            .lock()
            .expect("links")
            .iter()
            .filter(|l| !l.is_finished())
            .count()
            .div_ceil(2)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Accepts links and starts their pumps, forever.
async fn accept_links(
    listener: TcpListener,
    target: SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    controls: Controls,
) {
    while let Ok((inbound, _)) = listener.accept().await {
        let Ok(outbound) = TcpStream::connect(target).await else {
            continue;
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (ri, wi) = inbound.into_split();
        let (ro, wo) = outbound.into_split();
        let mut controls = controls.clone();
        controls.resets.borrow_and_update();
        let a = tokio::spawn(pump(ri, wo, controls.clone()));
        let b = tokio::spawn(pump(ro, wi, controls));
        let mut l = links.lock().expect("links");
        // Links that ended on their own are forgotten (a long run makes many).
        l.retain(|pump| !pump.is_finished());
        l.push(a);
        l.push(b);
    }
}

/// Forwards `from` to `to` until either ends or the link is cut, or, when the link is reset,
/// sets a zero linger on both sockets so that they close with a RST when their read halves
/// are dropped (the link's other pump holds the other halves and ends on the same reset).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut c: Controls) {
    let mut resets = c.resets.clone();
    let reset = tokio::select! {
        () = forward(&mut from, &mut to, &mut c) => false,
        changed = resets.changed() => changed.is_ok(),
    };
    if reset {
        let _ = from.as_ref().set_zero_linger();
        let _ = to.as_ref().set_zero_linger();
        // Dropped, a write half shuts its direction down (a FIN, which the peer would read
        // as an orderly end before the RST): the socket closes with the read half instead.
        to.forget();
    }
}

/// Most chunks read and not yet written on (a delayed link holds what is in flight).
const IN_FLIGHT: usize = 4096;
/// How far a throttled link may fall behind its rate and still catch up (its bucket's
/// depth): what a link left quiet may then send at once beyond its rate. A little deeper
/// than a busy host's lateness in waking the proxy, so that late wake-ups do not lower
/// the rate.
const BURST: Duration = Duration::from_millis(1);

/// Reads `from` and writes on `to`, through a queue where each chunk waits out the link's
/// delay (read and write run at once, so chunks in flight overlap).
async fn forward(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, c: &mut Controls) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let forwarded = c.forwarded.clone();
    let writer = async move {
        let mut timer = LinkTimer::new();
        while let Some((due, chunk)) = rx.recv().await {
            timer.sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            forwarded.send_modify(|total| *total += chunk.len() as u64);
        }
    };
    let reader = read_side(from, tx, c);
    // The reader ends when `from` does, or when the writer is gone (its queue closes).
    tokio::join!(reader, writer);
}

async fn read_side(
    from: &mut OwnedReadHalf,
    tx: tokio::sync::mpsc::Sender<(Instant, Vec<u8>)>,
    c: &mut Controls,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut timer = LinkTimer::new();
    // The throttle: bytes forwarded since `since`, at `rate` (reset when the rate changes).
    let mut since = Instant::now();
    let mut sent = 0u64;
    let mut rate = *c.rate.borrow();
    loop {
        if c.frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = c.frozen.wait_for(|f| *f) => continue,
        };
        // Bytes read before a freeze are held back until the thaw.
        if c.frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let now_rate = *c.rate.borrow();
        if now_rate != rate {
            (rate, since, sent) = (now_rate, Instant::now(), 0);
        }
        if let Some(rate) = rate.filter(|r| *r > 0) {
            let now = Instant::now();
            if since + Duration::from_secs_f64(sent as f64 / rate as f64) + BURST < now {
                // The link was quiet: it may send a burst's worth at once, then its rate,
                // not faster until it has made up for the whole quiet spell.
                (since, sent) = (now - BURST, 0);
            }
            sent += n as u64;
            let due = since + Duration::from_secs_f64(sent as f64 / rate as f64);
            timer.sleep_until(due).await;
        }
        let due = Instant::now() + *c.delay.borrow();
        if tx.send((due, buf[..n].to_vec())).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client through a proxy to a server that holds what it accepts; returns the proxy,
    /// the client's socket and the server's.
    async fn linked() -> (Proxy, TcpStream, TcpStream) {
        let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Proxy::start(server.local_addr().expect("addr")).await;
        let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
        let (mut far, _) = server.accept().await.expect("accept");
        // One byte each way, so both pumps are running.
        client.write_all(b"x").await.expect("write");
        let mut b = [0u8; 1];
        far.read_exact(&mut b).await.expect("read");
        far.write_all(b"y").await.expect("write");
        client.read_exact(&mut b).await.expect("read");
        assert_eq!(proxy.open_links(), 1);
        (proxy, client, far)
    }

    async fn read_end(s: &mut TcpStream) -> std::io::Result<usize> {
        let mut b = [0u8; 16];
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("the link ended")
    }

    #[tokio::test]
    async fn a_reset_gives_both_peers_a_connection_reset() {
        let (proxy, mut client, mut far) = linked().await;
        proxy.reset();
        for s in [&mut client, &mut far] {
            let err = read_end(s).await.expect_err("a reset, not an orderly end");
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
        }
        // The pumps end as the sockets close; their tasks are done a moment later.
        for _ in 0..100 {
            if proxy.open_links() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} links still open after a reset", proxy.open_links());
    }

    #[tokio::test]
    async fn a_cut_gives_both_peers_an_orderly_end() {
        let (proxy, mut client, mut far) = linked().await;
        proxy.cut();
        for s in [&mut client, &mut far] {
            assert_eq!(read_end(s).await.expect("an orderly end"), 0);
        }
        assert_eq!(proxy.open_links(), 0);
    }

    #[tokio::test]
    async fn a_link_made_after_a_reset_is_not_reset() {
        let server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Proxy::start(server.local_addr().expect("addr")).await;
        proxy.reset();
        let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
        let (mut far, _) = server.accept().await.expect("accept");
        client.write_all(b"x").await.expect("write");
        let mut b = [0u8; 1];
        far.read_exact(&mut b)
            .await
            .expect("forwarded after the reset");
        assert_eq!(proxy.open_links(), 1);
    }
}
