//! A fault-injecting TCP proxy: put it between two managers to cut every link, or to freeze
//! traffic without closing the sockets (a silent peer).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy. Dropping it stops it and closes every link.
pub struct Proxy {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    frozen: watch::Sender<bool>,
    rate: watch::Sender<Option<u64>>,
    forwarded: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

/// What every pump of a proxy shares.
#[derive(Clone)]
struct Controls {
    frozen: watch::Receiver<bool>,
    rate: watch::Receiver<Option<u64>>,
    forwarded: watch::Sender<u64>,
}

impl Proxy {
    /// Starts a proxy on an ephemeral loopback port forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let frozen = watch::Sender::new(false);
        let rate = watch::Sender::new(None);
        let forwarded = watch::Sender::new(0u64);
        let accept = {
            let links = links.clone();
            let controls = Controls {
                frozen: frozen.subscribe(),
                rate: rate.subscribe(),
                forwarded: forwarded.clone(),
            };
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        continue;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    let a = tokio::spawn(pump(ri, wo, controls.clone()));
                    let b = tokio::spawn(pump(ro, wi, controls.clone()));
                    let mut l = links.lock().expect("links");
                    l.push(a);
                    l.push(b);
                }
            })
        };
        Proxy {
            addr,
            links,
            frozen,
            rate,
            forwarded,
            accept,
        }
    }

    /// The address to dial instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every current link (both sockets of each); new links are still accepted.
    pub fn cut(&self) {
        for l in self.links.lock().expect("links").drain(..) {
            l.abort();
        }
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
            / 2
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut c: Controls,
) {
    let mut buf = vec![0u8; 16 * 1024];
    // The throttle: bytes forwarded since `since`, at `rate` (reset when the rate changes).
    let mut since = tokio::time::Instant::now();
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
            (rate, since, sent) = (now_rate, tokio::time::Instant::now(), 0);
        }
        if let Some(rate) = rate.filter(|r| *r > 0) {
            sent += n as u64;
            let due = since + std::time::Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        c.forwarded.send_modify(|total| *total += n as u64);
    }
}
