//! What every connection of a manager shares: identity, configuration, handlers, tasks and
//! the shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::codec::handshake::{Terms, PROTOCOL_VERSION};
use crate::codec::FrameLimits;
use crate::engine::NodeBudget;
use crate::handler::{Handlers, Interceptors};
use crate::tasks::Tasks;

/// Returns the token to present to a remote, given the remote's name.
pub type TokenProvider = Arc<dyn Fn(&str) -> String + Send + Sync>;
/// Checks a token a remote presented; `Err` carries the reason sent back.
pub type TokenValidator = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub route: String,
    pub dial_timeout: Duration,
    pub ping_interval: Duration,
    pub stream_ping_interval: Duration,
    pub default_deadline: Duration,
    /// How long a shutdown lets the calls and streams in flight finish.
    pub drain_timeout: Duration,
    /// How long the open streams of a lost socket are kept for the peer to come back.
    pub resume_grace: Duration,
    pub max_message_size: usize,
    pub max_clock_skew: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub max_concurrent_calls: usize,
    pub max_send_buffer: usize,
    pub reassembly_window: usize,
    pub max_request_bytes: usize,
    pub max_early_cancels: usize,
    pub stream_window: u64,
    pub max_stream_window: u64,
    pub stream_budget: u64,
    pub node_stream_budget: u64,
    /// Serve the built-in `grid.Node` service (`builtin.rs`).
    pub node_service: bool,
}

/// The default of [`Config::max_concurrent_calls`], also assumed for a peer that does not
/// announce its own.
pub(crate) const DEFAULT_MAX_CONCURRENT: usize = 1024;
/// The default of [`Config::drain_timeout`]: most calls of a storage cluster end in
/// milliseconds, and 10 s leaves a node stopped by Kubernetes (30 s grace by default) the
/// time to drain and still exit on its own.
pub(crate) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of [`Config::resume_grace`]: a blip of the link (a switch failing over, a
/// peer's socket reset) is over in a few seconds; a peer away longer has likely restarted.
pub(crate) const DEFAULT_RESUME_GRACE: Duration = Duration::from_secs(5);
/// The default maximum message size.
pub(crate) const DEFAULT_MAX_MESSAGE: usize = 16 << 20;
/// The default of [`Config::stream_window`]: the window a stream direction starts with.
pub(crate) const DEFAULT_STREAM_WINDOW: u64 = 256 << 10;
/// The default of [`Config::max_stream_window`]: the connection's whole budget, so that one
/// stream alone on a connection may fill a link whose bandwidth-delay product is that large
/// (64 MiB: 5 GB/s at 10 ms, 1 GB/s at 50 ms); several streams share the budget.
pub(crate) const DEFAULT_MAX_STREAM_WINDOW: u64 = DEFAULT_STREAM_BUDGET;
/// The largest window assumed for a peer that does not announce its own (PROTOCOL.md §1).
pub(crate) const ASSUMED_MAX_STREAM_WINDOW: u64 = 16 << 20;
/// The default of [`Config::stream_budget`]: the stream windows one connection grants.
pub(crate) const DEFAULT_STREAM_BUDGET: u64 = 64 << 20;
/// The default of [`Config::node_stream_budget`]: the stream windows a node grants.
pub(crate) const DEFAULT_NODE_STREAM_BUDGET: u64 = 512 << 20;

impl Default for Config {
    fn default() -> Self {
        Self {
            route: "/grid/v1".into(),
            dial_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(10),
            stream_ping_interval: Duration::from_secs(15),
            default_deadline: Duration::from_secs(60),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            resume_grace: DEFAULT_RESUME_GRACE,
            max_message_size: DEFAULT_MAX_MESSAGE,
            max_clock_skew: Duration::from_secs(5 * 60),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT,
            max_send_buffer: 4 << 20,
            reassembly_window: 4 * DEFAULT_MAX_MESSAGE,
            max_request_bytes: 4 * DEFAULT_MAX_MESSAGE,
            max_early_cancels: 1000,
            stream_window: DEFAULT_STREAM_WINDOW,
            max_stream_window: DEFAULT_MAX_STREAM_WINDOW,
            stream_budget: DEFAULT_STREAM_BUDGET,
            node_stream_budget: DEFAULT_NODE_STREAM_BUDGET,
            node_service: true,
        }
    }
}

impl Config {
    pub(crate) fn limits(&self) -> FrameLimits {
        // Payloads are bounded here only by the frame: one over the maximum message size
        // fails its own call or stream (the engine checks), not the connection.
        FrameLimits::new(self.max_frame())
    }

    /// The largest WebSocket message accepted: one payload plus headers, or a merged batch.
    pub(crate) fn max_frame(&self) -> usize {
        crate::engine::max_frame(self.max_message_size)
    }

    /// The engine's settings for a session with a peer that announced `peer`, on a node
    /// whose stream windows share `node_budget`.
    pub(crate) fn engine(
        &self,
        peer: Terms,
        node_budget: &Arc<NodeBudget>,
    ) -> crate::engine::Config {
        let or_default = |v: Option<u64>, default: usize| {
            v.and_then(|v| usize::try_from(v).ok()).unwrap_or(default)
        };
        crate::engine::Config {
            max_message_size: self.max_message_size,
            send_limit: self
                .max_message_size
                .min(or_default(peer.max_message_size, DEFAULT_MAX_MESSAGE)),
            ping_interval: self.ping_interval,
            stream_ping_interval: self.stream_ping_interval,
            max_concurrent: self.max_concurrent_calls,
            peer_max_concurrent: or_default(
                peer.max_concurrent.map(u64::from),
                DEFAULT_MAX_CONCURRENT,
            ),
            max_request_bytes: self.max_request_bytes,
            peer_max_request_bytes: or_default(peer.max_request_bytes, 4 * DEFAULT_MAX_MESSAGE),
            reassembly_window: self.reassembly_window,
            peer_reassembly_window: or_default(peer.reassembly_window, 4 * DEFAULT_MAX_MESSAGE),
            max_send_buffer: self.max_send_buffer,
            max_early_cancels: self.max_early_cancels,
            resume: !self.resume_grace.is_zero() && peer.resume_grace_ms.unwrap_or(0) > 0,
            stream_window: self.stream_window,
            max_stream_window: self.max_stream_window,
            peer_max_stream_window: peer.max_stream_window.unwrap_or(ASSUMED_MAX_STREAM_WINDOW),
            stream_budget: self.stream_budget,
            node_budget: node_budget.clone(),
            window_floor: crate::engine::MIN_WINDOW,
            hash_seed: rand::random(),
        }
    }

    /// What this side announces in the handshake; `checksums`: whether it asks for them
    /// (its transport is not TLS, as far as it can tell).
    pub(crate) fn announced(&self, checksums: bool) -> Terms {
        Terms {
            version: Some(PROTOCOL_VERSION),
            max_concurrent: u32::try_from(self.max_concurrent_calls).ok(),
            reassembly_window: u64::try_from(self.reassembly_window).ok(),
            max_request_bytes: u64::try_from(self.max_request_bytes).ok(),
            max_message_size: u64::try_from(self.max_message_size).ok(),
            checksums: Some(checksums),
            max_stream_window: Some(self.max_stream_window),
            resume_grace_ms: Some(self.resume_grace.as_millis() as u64),
        }
    }
}

/// TLS settings (feature `tls`).
#[derive(Clone, Default)]
pub(crate) struct Tls {
    #[cfg(feature = "tls")]
    pub client: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    #[cfg(feature = "tls")]
    pub server: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Tls {
    pub(crate) fn has_client(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.client.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

pub(crate) struct Core {
    pub local: Arc<str>,
    /// When the manager was built.
    pub started: std::time::Instant,
    pub instance: Uuid,
    pub config: Config,
    /// What the stream windows of all connections take of the node's memory budget.
    pub node_budget: Arc<NodeBudget>,
    pub handlers: Handlers,
    /// What the calls to many peers (`crate::many`) came to.
    pub fanout: crate::stats::FanoutCounters,
    /// Run around every call and stream served (none: nothing runs).
    pub interceptors: Interceptors,
    pub tasks: Arc<Tasks>,
    /// Set when the node starts leaving (a graceful shutdown drains first): no new
    /// sockets, and every live one drains.
    pub leaving: watch::Sender<bool>,
    /// Set when the node stops: everything ends now.
    pub shutdown: watch::Sender<bool>,
    pub token_provider: TokenProvider,
    pub token_validator: TokenValidator,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub tls: Tls,
}

impl Core {
    pub(crate) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(crate) fn is_leaving(&self) -> bool {
        *self.leaving.borrow()
    }

    /// Why the node is leaving, as its peers are told (the Drain, the close frame, a 503).
    pub(crate) fn shutdown_reason(&self) -> String {
        format!("{} is shutting down", self.local)
    }

    /// Resolves once the node starts leaving (a shutdown's drain, or the shutdown itself).
    pub(crate) async fn starts_leaving(&self) {
        let mut rx = self.leaving.subscribe();
        let _ = rx.wait_for(|leaving| *leaving).await;
    }

    /// Resolves once shutdown starts.
    pub(crate) async fn shutting_down(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// Milliseconds since the Unix epoch, for the handshake's clock check.
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
