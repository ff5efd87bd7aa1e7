//! What every connection of a manager shares: identity, configuration, handlers, tasks and
//! the shutdown signal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::codec::FrameLimits;
use crate::handler::Handlers;
use crate::tasks::Tasks;

/// Returns the token to present to a remote, given the remote's name.
pub type TokenProvider = Arc<dyn Fn(&str) -> String + Send + Sync>;
/// Checks a token a remote presented; `Err` carries the reason sent back.
pub type TokenValidator = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Largest merged frame the writer builds from small messages.
pub(crate) const MERGE_LIMIT: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub route: String,
    pub dial_timeout: Duration,
    pub ping_interval: Duration,
    pub stream_ping_interval: Duration,
    pub default_deadline: Duration,
    pub max_message_size: usize,
    pub max_clock_skew: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub queue_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            route: "/grid/v1".into(),
            dial_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(10),
            stream_ping_interval: Duration::from_secs(15),
            default_deadline: Duration::from_secs(60),
            max_message_size: 16 << 20,
            max_clock_skew: Duration::from_secs(5 * 60),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            queue_capacity: 1024,
        }
    }
}

impl Config {
    pub(crate) fn limits(&self) -> FrameLimits {
        FrameLimits::new(self.max_message_size)
    }

    /// The largest WebSocket message accepted: one payload plus headers, or a merged batch.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_message_size + 2 * MERGE_LIMIT + 4096
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
    pub instance: Uuid,
    pub config: Config,
    pub handlers: Handlers,
    pub tasks: Arc<Tasks>,
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
