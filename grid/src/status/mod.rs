//! A node's status as people read it: every peer with its state, round trip, reconnects
//! and last error; every handler with its calls, errors and latency percentiles. The
//! built-in service answers it (`grid.Node.status`, [`crate::builtin`]), `grid-cli status`
//! prints it, and the status page ([`Manager::status_router`](crate::Manager), feature
//! `axum`) renders it with each peer's round trips over the last minutes (`history.rs`).
//!
//! Building one reads what the counters already hold (the connections' states and stats,
//! the handlers' relaxed atomics): nothing on a call's path takes a lock or does any work
//! for it.

#[cfg(feature = "axum")]
pub(crate) mod history;
#[cfg(feature = "axum")]
pub(crate) mod html;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::connection::{Connection, State};
use crate::describe::handler_name;
use crate::handler::{HandlerStats, LATENCY_BOUNDS};

/// A node's status (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// Its process's instance id (a restart changes it).
    pub instance: String,
    /// How long its manager has run, in milliseconds.
    pub uptime_ms: u64,
    /// Whether it is leaving: its manager is shutting down and drains its connections (a
    /// health check may take it out of rotation). Absent from an older node's status: false.
    #[serde(default)]
    pub draining: bool,
    /// Every peer and admitted client, ordered by name.
    pub peers: Vec<PeerStatus>,
    /// Every registered handler, ordered by handler id and subroute.
    pub handlers: Vec<HandlerStatus>,
}

/// One peer's connection, as the status shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's name.
    pub peer: String,
    /// `unconnected`, `connecting`, `connected`, `draining`, `connection_error` or
    /// `shutdown`.
    pub state: String,
    /// Whether this node dials it (else it dials in).
    pub dialer: bool,
    /// Whether it is an admitted client (a tool), not a node of the cluster.
    pub client: bool,
    /// The latest round trip its pings measured, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Times the connection came back after a loss.
    pub reconnects: u64,
    /// Times the peer came back as a new process.
    pub remote_restarts: u64,
    /// Calls to it in flight.
    pub in_flight_calls: usize,
    /// Its calls being handled here.
    pub in_flight_handlers: usize,
    /// The last failure (kept after the connection came back).
    pub last_error: Option<String>,
    /// How long ago that failure happened, in milliseconds.
    pub last_error_ago_ms: Option<u64>,
    /// Round trips over the last minutes, oldest first: only where the status page
    /// samples them (empty elsewhere).
    pub rtt_history: Vec<RttSample>,
}

/// One round trip, sampled.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RttSample {
    /// How long before the status was taken, in milliseconds.
    pub ago_ms: u64,
    /// The round trip then, in milliseconds; `None`: the peer was not connected.
    pub rtt_ms: Option<f64>,
}

/// One handler, as the status shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandlerStatus {
    /// `Service.method`, or the handler id (`#7`), with `@subroute` if it has one.
    pub name: String,
    /// The handler id.
    pub id: u32,
    /// Calls and streams served.
    pub calls: u64,
    /// Running now.
    pub in_flight: u64,
    /// Ended with an error (any kind).
    pub errors: u64,
    /// Ended before their handler did (cancelled, deadline passed, connection lost).
    pub cancelled: u64,
    /// Latency percentiles in milliseconds, as the upper bound of the histogram bucket
    /// they fall in (`None`: no call ended yet, or beyond the last bucket, 10 s).
    pub p50_ms: Option<f64>,
    /// See `p50_ms`.
    pub p90_ms: Option<f64>,
    /// See `p50_ms`.
    pub p99_ms: Option<f64>,
}

/// The state's name in the status.
pub(crate) fn state_name(s: State) -> &'static str {
    match s {
        State::Unconnected => "unconnected",
        State::Connecting => "connecting",
        State::Connected => "connected",
        State::Draining => "draining",
        State::ConnectionError => "connection_error",
        State::Shutdown => "shutdown",
    }
}

/// The status of a node named `node` with `connections` and `handlers`.
pub(crate) fn node_status(
    node: &str,
    instance: String,
    uptime: Duration,
    draining: bool,
    connections: impl Iterator<Item = Connection>,
    handlers: Vec<HandlerStats>,
) -> NodeStatus {
    let peers = connections
        .map(|c| {
            let stats = c.stats();
            let error = c.last_error_age();
            PeerStatus {
                peer: c.remote().to_owned(),
                state: state_name(c.state()).to_owned(),
                dialer: c.is_dialer(),
                client: c.is_client(),
                rtt_ms: stats.last_ping_rtt.map(millis),
                reconnects: stats.reconnects,
                remote_restarts: stats.remote_restarts,
                in_flight_calls: stats.in_flight_calls,
                in_flight_handlers: stats.in_flight_handlers,
                last_error: error.as_ref().map(|(e, _)| e.to_string()),
                last_error_ago_ms: error.map(|(_, ago)| whole_millis(ago)),
                rtt_history: Vec::new(),
            }
        })
        .collect();
    NodeStatus {
        node: node.to_owned(),
        instance,
        uptime_ms: whole_millis(uptime),
        draining,
        peers,
        handlers: handlers.iter().map(handler_status).collect(),
    }
}

fn handler_status(h: &HandlerStats) -> HandlerStatus {
    let id = h.handler.get();
    let at = |q| percentile(&h.latency_buckets, q);
    HandlerStatus {
        name: handler_name(h.service, h.method, id, h.subroute.as_deref()),
        id,
        calls: h.calls,
        in_flight: h.in_flight,
        errors: h.errors.iter().map(|(_, n)| n).sum(),
        cancelled: h.cancelled,
        p50_ms: at(0.5),
        p90_ms: at(0.9),
        p99_ms: at(0.99),
    }
}

/// The upper bound (ms) of the bucket holding the `q` quantile of `buckets` (counts per
/// bucket of [`LATENCY_BOUNDS`], the last one unbounded).
pub(crate) fn percentile(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the quantile, 1-based: the ceiling of q * total.
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return LATENCY_BOUNDS.get(i).map(|s| s * 1e3);
        }
    }
    None
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn whole_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_the_bounds_of_the_buckets_they_fall_in() {
        let mut b = vec![0; LATENCY_BOUNDS.len() + 1];
        assert_eq!(percentile(&b, 0.5), None, "no calls");
        b[0] = 98; // <= 5 ms
        b[3] = 1; // <= 50 ms
        b[LATENCY_BOUNDS.len()] = 1; // over 10 s
        assert_eq!(percentile(&b, 0.5), Some(5.0));
        assert_eq!(percentile(&b, 0.98), Some(5.0));
        assert_eq!(percentile(&b, 0.99), Some(50.0));
        assert_eq!(percentile(&b, 1.0), None, "beyond the last bound");
        b[0] = 0;
        assert_eq!(percentile(&b, 0.5), Some(50.0));
    }
}
