//! Configuring a [`Manager`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::peers::Peers;
use super::{Manager, ManagerInner};
use crate::core::{Config, Core, Tls, TokenProvider, TokenValidator};
use crate::error::{Error, Result};
use crate::handler::{Handlers, Interceptor, Interceptors};
use crate::typed::Service;

/// Configures and builds a [`Manager`]. Only `local`, the peers and the tokens are required.
#[derive(Default)]
#[must_use]
pub struct ManagerBuilder {
    local: Option<String>,
    peers: Vec<(String, String)>,
    clients: Vec<String>,
    as_client: bool,
    config: Config,
    provider: Option<TokenProvider>,
    validator: Option<TokenValidator>,
    tls: Tls,
    interceptors: Interceptors,
    #[cfg(feature = "metrics")]
    publish_every: Option<Duration>,
}

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("local", &self.local)
            .field("peers", &self.peers)
            .field("clients", &self.clients)
            .field("as_client", &self.as_client)
            .field("config", &self.config)
            .finish()
    }
}

impl ManagerBuilder {
    /// This node's name, as the other nodes list it.
    pub fn local(mut self, name: impl Into<String>) -> Self {
        self.local = Some(name.into());
        self
    }

    /// A peer and its URL (`ws://host:port/grid/v1`). Listing this node itself is allowed
    /// (every node can share one list) and ignored.
    pub fn peer(mut self, name: impl Into<String>, url: impl Into<String>) -> Self {
        self.peers.push((name.into(), url.into()));
        self
    }

    /// Admits a client: a process that is not a node of the cluster (a tool such as
    /// `grid-cli`, built with [`ManagerBuilder::as_client`]) and that dials this node under
    /// `name`. It must present a token this node accepts, like any peer; this node never
    /// dials it, serves its calls as any peer's, and may call it back while it is
    /// connected ([`Manager::connection`](crate::Manager::connection)`(name)`).
    pub fn client(mut self, name: impl Into<String>) -> Self {
        self.clients.push(name.into());
        self
    }

    /// Makes this manager a client: it dials every peer itself, whatever their names
    /// would decide ([`dials`](crate::dials)), and is meant to serve no listener. Each
    /// peer must admit it by its local name ([`ManagerBuilder::client`]), or it refuses
    /// the connection ("unknown host").
    pub fn as_client(mut self) -> Self {
        self.as_client = true;
        self
    }

    /// Uses one shared secret: sent to every peer and the only token accepted.
    pub fn token(self, secret: impl Into<String>) -> Self {
        let secret: Arc<str> = Arc::from(secret.into());
        let expected = secret.clone();
        self.token_provider(move |_peer| secret.to_string())
            .token_validator(move |token| {
                if constant_time_eq(token.as_bytes(), expected.as_bytes()) {
                    Ok(())
                } else {
                    Err("invalid token".into())
                }
            })
    }

    /// Computes the token presented to a peer (called with the peer's name on every dial).
    pub fn token_provider(mut self, f: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.provider = Some(Arc::new(f));
        self
    }

    /// Checks a token a peer presented; `Err(reason)` refuses it.
    pub fn token_validator(
        mut self,
        f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.validator = Some(Arc::new(f));
        self
    }

    /// The TLS client settings (roots, client certificate) used to dial `wss://` peers.
    /// Checksums are off on TLS connections: TLS protects the bytes already.
    #[cfg(feature = "tls")]
    pub fn tls_client(
        mut self,
        config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Self {
        self.tls.client = Some(config);
        self
    }

    /// Makes [`Manager::serve`](super::Manager::serve) accept TLS only, with these server
    /// settings (certificate chain and key; client authentication if configured). Peers
    /// then list this node with a `wss://` URL.
    #[cfg(feature = "tls")]
    pub fn tls_server(
        mut self,
        config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> Self {
        self.tls.server = Some(config);
        self
    }

    /// The route path peers connect to (default `/grid/v1`).
    pub fn route(mut self, path: impl Into<String>) -> Self {
        self.config.route = path.into();
        self
    }

    /// How long a dial and its handshake may take (default 5 s).
    pub fn dial_timeout(mut self, d: Duration) -> Self {
        self.config.dial_timeout = d;
        self
    }

    /// How often each side pings; a peer silent for two intervals is dropped (default 10 s).
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.config.ping_interval = d;
        self
    }

    /// How often a caller pings each stream it opened; a handler side cancels a stream
    /// whose caller was silent on it for three intervals while the connection was not, and
    /// a caller learns within one interval that its stream's handler is gone (default
    /// 15 s).
    pub fn stream_ping_interval(mut self, d: Duration) -> Self {
        self.config.stream_ping_interval = d;
        self
    }

    /// The deadline of calls that set none (default 1 minute).
    pub fn default_deadline(mut self, d: Duration) -> Self {
        self.config.default_deadline = d;
        self
    }

    /// How long [`Manager::shutdown`](crate::Manager::shutdown) lets the calls and streams
    /// in flight finish, both ways, after telling every peer it is leaving (default 10 s:
    /// most calls of a storage cluster end in milliseconds, and a node stopped by
    /// Kubernetes, 30 s grace by default, still exits on its own). What has not ended by
    /// then fails with [`Error::Closed`] here, and as lost on the peers. Zero: no drain.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.config.drain_timeout = d;
        self
    }

    /// How long the open streams of a lost connection are kept for the same peer process
    /// to come back (default 5 s; zero: streams fail with the connection, as single calls
    /// always do). When it is back in time, each stream carries on where it was: what the
    /// other side did not receive is sent again, nothing twice, in order. A peer that
    /// restarted (a new instance), or that does not keep streams itself, fails them.
    pub fn resume_grace(mut self, d: Duration) -> Self {
        self.config.resume_grace = d;
        self
    }

    /// The largest payload one message from a peer may carry (default 16 MiB, at least 512
    /// bytes: grid's control messages must fit). It is announced in the handshake: two
    /// nodes send each other at most the smaller of their two values, and a larger payload
    /// fails with [`Error::MessageTooLarge`] before it is sent.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Runs `interceptor` around every call and stream this node serves: it may refuse one
    /// before its handler starts, and learns how each ended and how long it ran (see
    /// [`Interceptor`]). Several run in the order they were added; the first refusal wins.
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors.add(None, Arc::new(interceptor));
        self
    }

    /// As [`ManagerBuilder::interceptor`], for the methods of the service `S` only.
    pub fn service_interceptor<S: Service>(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors
            .add(Some(S::SERVICE_ID), Arc::new(interceptor));
        self
    }

    /// Publishes the manager's counters ([`crate::ManagerStats::publish`]) to the `metrics`
    /// facade every `interval`, until shutdown (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub fn publish_metrics_every(mut self, interval: Duration) -> Self {
        self.publish_every = Some(interval);
        self
    }

    /// How far a dialer's clock may be from ours (default 5 minutes).
    pub fn max_clock_skew(mut self, d: Duration) -> Self {
        self.config.max_clock_skew = d;
        self
    }

    /// Reconnect backoff bounds (default 50 ms doubling up to 5 s, jittered). A peer that
    /// answers and refuses the connection (it has not added this node yet, refuses its
    /// token, or is restarting) is dialed again at most a second apart (or `min` apart, if
    /// larger): it is up, and likely to accept soon.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.reconnect_min = min;
        self.config.reconnect_max = max;
        self
    }

    /// How many calls and streams this node serves at once for one peer (default 1024; the
    /// analogue of HTTP/2's `max_concurrent_streams`). It is announced in the handshake, so
    /// a grid peer refuses its own calls beyond it at once with [`Error::Busy`]; calls a
    /// peer sends beyond it anyway are refused with Busy, and a peer that keeps sending them
    /// without reading the refusals is disconnected. Bounds the handler tasks one peer can
    /// make this node run.
    pub fn max_concurrent_calls(mut self, calls: usize) -> Self {
        self.config.max_concurrent_calls = calls;
        self
    }

    /// How many bytes of answers (single-call responses) may wait for a peer's socket
    /// before this node stops starting new handlers for that peer (default 4 MiB; the
    /// analogue of h2's `max_send_buffer_size`). Calls that arrive meanwhile wait,
    /// admitted, until the peer reads; none is refused. Streams' messages are counted
    /// apart, against the same size: once that much waits for the socket, stream senders
    /// wait too, whatever credit the peer granted (so a peer that grants wide windows and
    /// reads nothing costs this, not its grants). A peer that reads nothing at all is
    /// declared dead after two ping intervals.
    pub fn max_send_buffer(mut self, bytes: usize) -> Self {
        self.config.max_send_buffer = bytes;
        self
    }

    /// How many bytes of large payloads (those sent in chunks) this node holds half
    /// received from one peer at once (default 4 × the default maximum message size, 64
    /// MiB; the analogue of HTTP/2's connection window). It is announced in the handshake
    /// and a grid peer starts no chunked payload beyond it, so any number of concurrent
    /// large calls complete; a peer that exceeds it is disconnected with the reason. At
    /// least the maximum message size.
    pub fn reassembly_window(mut self, bytes: usize) -> Self {
        self.config.reassembly_window = bytes;
        self
    }

    /// How many bytes of requests (single calls' payloads and streams' initial payloads)
    /// this node holds at once for one peer's calls in flight (default 64 MiB). It is
    /// announced in the handshake, and a grid peer waits (within each call's deadline)
    /// before sending a call beyond it; a peer that sends one anyway gets a Busy refusal.
    /// With [`ManagerBuilder::max_send_buffer`] and the reassembly window, it bounds what a
    /// peer can make this node hold, whatever it sends. At least the maximum message size.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.config.max_request_bytes = bytes;
        self
    }

    /// How many calls and streams one peer may cancel before their handler started, within
    /// one ping interval, before it is disconnected as a flooder (default 1000; HTTP/2's
    /// "rapid reset" attack opens and cancels streams in a loop). Calls and streams
    /// cancelled in the same frame that opened them never start a handler at all.
    pub fn max_early_cancels(mut self, cancels: usize) -> Self {
        self.config.max_early_cancels = cancels;
        self
    }

    /// The window, in bytes, each stream direction this node receives starts with (default
    /// 256 KiB): how much of a peer's stream messages may be in flight to this node before
    /// the first credit comes back. A message costs its payload plus 64 bytes.
    pub fn stream_window(mut self, bytes: u64) -> Self {
        self.config.stream_window = bytes;
        self
    }

    /// The largest window, in bytes, this node grants one stream direction (default 64 MiB,
    /// the default `stream_budget`; at most 4 GiB − 1): a window grows to about what the
    /// link carries in a round trip (it stops where the connection's pings show a queue),
    /// up to this and within the budgets. It is announced in the handshake; a stream
    /// handler or an open may set a lower cap for its own stream.
    pub fn max_stream_window(mut self, bytes: u64) -> Self {
        self.config.max_stream_window = bytes;
        self
    }

    /// The most bytes of stream windows this node grants on one connection (default
    /// 64 MiB): what one peer's streams can make this node hold (PROTOCOL.md §7). When it
    /// is short, windows stop growing and those above a fair share shrink; each window keeps
    /// at least 4 KiB beyond it, so every stream moves.
    ///
    /// The defaults are sized for a storage cluster: a 10 Gbit/s link with a 10 ms round
    /// trip carries 12.5 MB per round trip, so 64 MiB per peer lets a few bulk streams run
    /// at full speed at once (or 256 streams at their 256 KiB start), and 512 MiB per node
    /// lets eight peers do so together: about 1.5 % of a 32 GiB storage server, and only
    /// held while peers actually have that much in flight.
    pub fn stream_budget(mut self, bytes: u64) -> Self {
        self.config.stream_budget = bytes;
        self
    }

    /// The most bytes of stream windows this node grants across all its connections
    /// (default 512 MiB), shared as [`ManagerBuilder::stream_budget`] is.
    pub fn node_stream_budget(mut self, bytes: u64) -> Self {
        self.config.node_stream_budget = bytes;
        self
    }

    /// Whether this node serves grid's built-in service, `grid.Node` (default: yes): the
    /// list of what it serves (name, handler id, shape and types of every method) and a
    /// ping through the call path, for tools such as `grid-cli` and for peers
    /// ([`NodeClient`](crate::builtin::NodeClient)). Its calls pass the interceptors like
    /// any other; turn it off to reveal nothing about the handlers.
    pub fn node_service(mut self, on: bool) -> Self {
        self.config.node_service = on;
        self
    }

    /// Builds the manager and starts one connection per peer. Must be called inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// [`Error::Config`] naming what is missing or invalid.
    pub fn build(self) -> Result<Manager> {
        let local = self.local.filter(|l| !l.is_empty()).ok_or_else(|| {
            Error::Config("the local node name is required (ManagerBuilder::local)".into())
        })?;
        let (Some(provider), Some(validator)) = (self.provider, self.validator) else {
            return Err(Error::Config(
                "authentication is required: set ManagerBuilder::token, or both token_provider and token_validator".into(),
            ));
        };
        let c = &self.config;
        if c.max_message_size < crate::engine::MIN_MESSAGE_SIZE || c.max_message_size > (1 << 30) {
            return Err(Error::Config(
                "max_message_size must be between 512 bytes and 1 GiB".into(),
            ));
        }
        if c.ping_interval.is_zero()
            || c.stream_ping_interval.is_zero()
            || c.max_concurrent_calls == 0
            || c.max_concurrent_calls > u32::MAX as usize
            || c.reconnect_min.is_zero()
        {
            return Err(Error::Config(
                "ping intervals, max_concurrent_calls and the reconnect backoff must be non-zero (and max_concurrent_calls at most 2^32 - 1)".into(),
            ));
        }
        for (name, value) in [
            ("reassembly_window", c.reassembly_window),
            ("max_request_bytes", c.max_request_bytes),
        ] {
            if value < c.max_message_size {
                return Err(Error::Config(format!(
                    "{name} ({value} bytes) must be at least max_message_size ({} bytes)",
                    c.max_message_size
                )));
            }
        }
        if c.stream_window == 0
            || c.stream_window > c.max_stream_window
            || c.max_stream_window > u64::from(u32::MAX)
        {
            return Err(Error::Config(format!(
                "stream_window ({} bytes) must be at least 1 and at most max_stream_window ({} bytes), which must be below 4 GiB",
                c.stream_window, c.max_stream_window
            )));
        }
        if !c.route.starts_with('/') {
            return Err(Error::Config(format!(
                "route {:?} must start with '/'",
                c.route
            )));
        }
        tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("Manager::build must be called inside a tokio runtime".into())
        })?;

        let mut urls = BTreeMap::new();
        for (name, url) in self.peers {
            if name == local {
                continue;
            }
            if urls.insert(name.clone(), url).is_some() {
                return Err(Error::Config(format!("peer {name:?} is listed twice")));
            }
        }
        let mut clients = BTreeSet::new();
        for name in self.clients {
            if name.is_empty() || name == local {
                return Err(Error::Config(format!(
                    "client {name:?} must have a name of its own, not empty or this node's"
                )));
            }
            if urls.contains_key(&name) || !clients.insert(name.clone()) {
                return Err(Error::Config(format!(
                    "{name:?} is listed twice (as a peer or a client)"
                )));
            }
        }
        let core = Arc::new(Core {
            local: Arc::from(local),
            started: std::time::Instant::now(),
            instance: Uuid::new_v4(),
            node_budget: crate::engine::NodeBudget::new(self.config.node_stream_budget),
            config: self.config,
            handlers: Handlers::default(),
            fanout: Default::default(),
            interceptors: self.interceptors,
            tasks: Arc::default(),
            leaving: watch::Sender::new(false),
            shutdown: watch::Sender::new(false),
            token_provider: provider,
            token_validator: validator,
            tls: self.tls,
        });
        // The built-in service answers `status` from the manager, made below.
        let made: Arc<OnceLock<Weak<ManagerInner>>> = Arc::default();
        if core.config.node_service {
            let made = made.clone();
            crate::builtin::register(
                &core,
                Arc::new(move || {
                    let inner = made.get()?.upgrade()?;
                    Some(Manager { inner }.status())
                }),
            )?;
        }
        for (name, url) in &urls {
            Peers::check(&core, name, url)?;
        }
        let peers = Arc::new(Peers::new(core.clone(), self.as_client));
        peers.start_initial(urls, clients.into_iter().collect());
        let manager = Manager {
            inner: Arc::new(ManagerInner { core, peers }),
        };
        let _ = made.set(Arc::downgrade(&manager.inner));
        #[cfg(feature = "metrics")]
        if let Some(every) = self.publish_every {
            manager.publish_metrics_every(every);
        }
        Ok(manager)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
