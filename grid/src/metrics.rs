//! HandlerCounters for a whole manager, and their Prometheus text rendering (no HTTP server
//! needed: serve the string from whatever endpoint the application already has).

use std::fmt::Write as _;

use crate::connection::State;
use crate::handler::{HandlerStats, LATENCY_BOUNDS};
use crate::stats::ConnectionStats;

/// One peer's counters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PeerStats {
    /// The peer's name.
    pub peer: String,
    /// Where its connection stands.
    pub state: State,
    /// Its connection's counters.
    pub stats: ConnectionStats,
}

/// A snapshot of a manager's counters (see [`Manager::stats`](crate::Manager::stats)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ManagerStats {
    /// This node's name.
    pub local: String,
    /// Every peer, ordered by name.
    pub peers: Vec<PeerStats>,
    /// Every registered handler's counters (calls, errors by kind, in flight, latency),
    /// ordered by handler id.
    pub handlers: Vec<HandlerStats>,
    /// Tasks the manager has running.
    pub running_tasks: usize,
    /// Bytes of stream windows this node grants, across its connections (within
    /// `ManagerBuilder::node_stream_budget`, beyond 4 KiB a stream).
    pub stream_window_bytes: u64,
    /// Peers added at runtime ([`Manager::add_peer`](crate::Manager::add_peer), a peer
    /// source), since the manager was built.
    pub peers_added: u64,
    /// Peers removed at runtime, since the manager was built.
    pub peers_removed: u64,
    /// Quorum calls ([`many::quorum`](crate::many::quorum)) that got their answers.
    pub quorums_met: u64,
    /// Quorum calls that failed ([`Error::NoQuorum`](crate::Error::NoQuorum)).
    pub quorums_failed: u64,
    /// Hedged calls made ([`many::Hedge`](crate::many::Hedge)).
    pub hedged_calls: u64,
    /// Calls hedged calls sent beyond their first (the extra requests).
    pub hedges_sent: u64,
    /// Hedged calls answered by a call beyond their first.
    pub hedges_won: u64,
}

/// A figure of the whole node (one sample, labelled by `local` only).
struct NodeMetric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&ManagerStats) -> f64,
}

const NODE_METRICS: &[NodeMetric] = &[
    NodeMetric {
        name: "grid_running_tasks",
        kind: "gauge",
        help: "Tasks the manager has running.",
        value: |s| s.running_tasks as f64,
    },
    NodeMetric {
        name: "grid_peers",
        kind: "gauge",
        help: "Peers (and admitted clients) listed now.",
        value: |s| s.peers.len() as f64,
    },
    NodeMetric {
        name: "grid_peers_added_total",
        kind: "counter",
        help: "Peers added at runtime.",
        value: |s| s.peers_added as f64,
    },
    NodeMetric {
        name: "grid_peers_removed_total",
        kind: "counter",
        help: "Peers removed at runtime (each drained first).",
        value: |s| s.peers_removed as f64,
    },
    NodeMetric {
        name: "grid_quorums_met_total",
        kind: "counter",
        help: "Quorum calls that got the answers they needed.",
        value: |s| s.quorums_met as f64,
    },
    NodeMetric {
        name: "grid_quorums_failed_total",
        kind: "counter",
        help: "Quorum calls that could not get the answers they needed.",
        value: |s| s.quorums_failed as f64,
    },
    NodeMetric {
        name: "grid_hedged_calls_total",
        kind: "counter",
        help: "Hedged calls made.",
        value: |s| s.hedged_calls as f64,
    },
    NodeMetric {
        name: "grid_hedges_sent_total",
        kind: "counter",
        help: "Extra calls hedged calls sent beyond their first.",
        value: |s| s.hedges_sent as f64,
    },
    NodeMetric {
        name: "grid_hedges_won_total",
        kind: "counter",
        help: "Hedged calls answered by a call beyond their first.",
        value: |s| s.hedges_won as f64,
    },
];

struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&PeerStats) -> f64,
}

const METRICS: &[Metric] = &[
    Metric {
        name: "grid_connected",
        kind: "gauge",
        help: "1 if the connection to the peer is up (draining included).",
        value: |p| f64::from(u8::from(matches!(p.state, State::Connected | State::Draining))),
    },
    Metric {
        name: "grid_draining",
        kind: "gauge",
        help: "1 while the connection drains (one side is leaving, or removed the other).",
        value: |p| f64::from(u8::from(p.state == State::Draining)),
    },
    Metric {
        name: "grid_messages_in_total",
        kind: "counter",
        help: "Protocol messages received from the peer.",
        value: |p| p.stats.messages_in as f64,
    },
    Metric {
        name: "grid_messages_out_total",
        kind: "counter",
        help: "Protocol messages sent to the peer.",
        value: |p| p.stats.messages_out as f64,
    },
    Metric {
        name: "grid_frames_in_total",
        kind: "counter",
        help: "WebSocket frames received from the peer.",
        value: |p| p.stats.frames_in as f64,
    },
    Metric {
        name: "grid_frames_out_total",
        kind: "counter",
        help: "WebSocket frames sent to the peer.",
        value: |p| p.stats.frames_out as f64,
    },
    Metric {
        name: "grid_merged_frames_out_total",
        kind: "counter",
        help: "Sent frames that merged several messages.",
        value: |p| p.stats.merged_frames_out as f64,
    },
    Metric {
        name: "grid_bytes_in_total",
        kind: "counter",
        help: "Bytes received from the peer.",
        value: |p| p.stats.bytes_in as f64,
    },
    Metric {
        name: "grid_bytes_out_total",
        kind: "counter",
        help: "Bytes sent to the peer.",
        value: |p| p.stats.bytes_out as f64,
    },
    Metric {
        name: "grid_reconnects_total",
        kind: "counter",
        help: "Connections to the peer established after the first.",
        value: |p| p.stats.reconnects as f64,
    },
    Metric {
        name: "grid_remote_restarts_total",
        kind: "counter",
        help: "Times the peer came back with a new instance id.",
        value: |p| p.stats.remote_restarts as f64,
    },
    Metric {
        name: "grid_protocol_errors_total",
        kind: "counter",
        help: "Sockets to the peer closed because a side broke the protocol or a limit.",
        value: |p| p.stats.protocol_errors as f64,
    },
    Metric {
        name: "grid_in_flight_calls",
        kind: "gauge",
        help: "Calls and streams this node has open to the peer.",
        value: |p| p.stats.in_flight_calls as f64,
    },
    Metric {
        name: "grid_in_flight_handlers",
        kind: "gauge",
        help: "Handlers running here for the peer.",
        value: |p| p.stats.in_flight_handlers as f64,
    },
    Metric {
        name: "grid_stream_window_bytes",
        kind: "gauge",
        help: "Bytes of stream windows granted to the peer (what its streams may have in flight here).",
        value: |p| p.stats.stream_window_bytes as f64,
    },
    Metric {
        name: "grid_chunk_window_bytes",
        kind: "gauge",
        help: "Bytes of large payloads this node may have on the way to the peer unconfirmed (its chunk window).",
        value: |p| p.stats.chunk_window_bytes as f64,
    },
    Metric {
        name: "grid_ping_rtt_seconds",
        kind: "gauge",
        help: "Round trip of the last answered ping (NaN before the first).",
        value: |p| p.stats.last_ping_rtt.map_or(f64::NAN, |d| d.as_secs_f64()),
    },
    Metric {
        name: "grid_retries_total",
        kind: "counter",
        help: "Calls to the peer's idempotent methods made again after a lost connection or a busy answer.",
        value: |p| p.stats.retries.iter().map(|(_, n)| *n as f64).sum(),
    },
];

/// The labels of a handler's series: `local`, `handler`, and where known `service`,
/// `method` and `subroute`.
fn handler_label_pairs(local: &str, h: &HandlerStats) -> Vec<(&'static str, String)> {
    let mut pairs = vec![
        ("local", local.to_owned()),
        ("handler", format!("{:#010x}", h.handler.get())),
    ];
    for (name, value) in [
        ("service", h.service),
        ("method", h.method),
        ("subroute", h.subroute.as_deref()),
    ] {
        if let Some(v) = value {
            pairs.push((name, v.to_owned()));
        }
    }
    pairs
}

/// The same labels in the text format.
fn handler_labels(local: &str, h: &HandlerStats) -> String {
    let pairs: Vec<String> = handler_label_pairs(local, h)
        .into_iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(&v)))
        .collect();
    pairs.join(",")
}

/// The `le` label of latency bucket `i` (`+Inf` for the last).
fn bucket_bound(i: usize) -> String {
    LATENCY_BOUNDS
        .get(i)
        .map_or_else(|| "+Inf".to_owned(), |b| b.to_string())
}

impl ManagerStats {
    fn handlers_to_prometheus(&self, out: &mut String, local: &str) {
        let families: [(&str, &str, &str); 4] = [
            (
                "grid_handler_calls_total",
                "counter",
                "Calls and streams served by the handler.",
            ),
            (
                "grid_handler_in_flight",
                "gauge",
                "Calls and streams the handler runs now.",
            ),
            (
                "grid_handler_errors_total",
                "counter",
                "Served calls that ended with an error, by kind.",
            ),
            (
                "grid_handler_cancelled_total",
                "counter",
                "Served calls that ended before their handler did.",
            ),
        ];
        for (name, kind, help) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for h in &self.handlers {
                let labels = handler_labels(local, h);
                match name {
                    "grid_handler_calls_total" => {
                        let _ = writeln!(out, "{name}{{{labels}}} {}", h.calls);
                    }
                    "grid_handler_in_flight" => {
                        let _ = writeln!(out, "{name}{{{labels}}} {}", h.in_flight);
                    }
                    "grid_handler_errors_total" => {
                        for (kind, n) in &h.errors {
                            let _ = writeln!(out, "{name}{{{labels},kind=\"{kind}\"}} {n}");
                        }
                    }
                    _ => {
                        let _ = writeln!(out, "{name}{{{labels}}} {}", h.cancelled);
                    }
                }
            }
        }
        let name = "grid_handler_duration_seconds";
        let _ = writeln!(out, "# HELP {name} How long served calls and streams took.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for h in &self.handlers {
            let labels = handler_labels(local, h);
            let mut cumulative = 0;
            for (i, n) in h.latency_buckets.iter().enumerate() {
                cumulative += n;
                let le = bucket_bound(i);
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(
                out,
                "{name}_sum{{{labels}}} {}",
                h.latency_sum.as_secs_f64()
            );
            let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl ManagerStats {
    /// The counters in the Prometheus text exposition format (version 0.0.4), one series
    /// per peer, labelled `local` and `peer`.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let local = escape(&self.local);
        for m in METRICS {
            let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
            let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind);
            for p in &self.peers {
                let v = (m.value)(p);
                let v = if v.is_nan() {
                    "NaN".to_owned()
                } else {
                    v.to_string()
                };
                let _ = writeln!(
                    out,
                    "{}{{local=\"{local}\",peer=\"{}\"}} {v}",
                    m.name,
                    escape(&p.peer)
                );
            }
        }
        self.handlers_to_prometheus(&mut out, &local);
        for m in NODE_METRICS {
            let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
            let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind);
            let _ = writeln!(out, "{}{{local=\"{local}\"}} {}", m.name, (m.value)(self));
        }
        out
    }
}

#[cfg(feature = "metrics")]
impl ManagerStats {
    /// Sends every figure to the `metrics` facade, into the recorder the application
    /// installed (a Prometheus exporter, StatsD, ...), with the same names and labels as
    /// [`ManagerStats::to_prometheus`]: counters as absolute values, gauges as set values,
    /// and each handler's latency histogram as its cumulative `_bucket{le}` counters, `_sum`
    /// (a gauge, in seconds) and `_count`. Call it periodically, or let the manager do it
    /// (`ManagerBuilder::publish_metrics_every`).
    pub fn publish(&self) {
        let local = self.local.clone();
        for p in &self.peers {
            let labels = [("local", local.clone()), ("peer", p.peer.clone())];
            for m in METRICS {
                let v = (m.value)(p);
                if m.kind == "counter" {
                    metrics::counter!(m.name, &labels).absolute(v as u64);
                } else if !v.is_nan() {
                    metrics::gauge!(m.name, &labels).set(v);
                }
            }
        }
        for h in &self.handlers {
            let labels = handler_label_pairs(&local, h);
            metrics::counter!("grid_handler_calls_total", &labels).absolute(h.calls);
            metrics::gauge!("grid_handler_in_flight", &labels).set(h.in_flight as f64);
            metrics::counter!("grid_handler_cancelled_total", &labels).absolute(h.cancelled);
            for (kind, n) in &h.errors {
                let mut with_kind = labels.clone();
                with_kind.push(("kind", (*kind).to_owned()));
                metrics::counter!("grid_handler_errors_total", &with_kind).absolute(*n);
            }
            let mut cumulative = 0;
            for (i, n) in h.latency_buckets.iter().enumerate() {
                cumulative += n;
                let mut with_le = labels.clone();
                with_le.push(("le", bucket_bound(i)));
                metrics::counter!("grid_handler_duration_seconds_bucket", &with_le)
                    .absolute(cumulative);
            }
            metrics::gauge!("grid_handler_duration_seconds_sum", &labels)
                .set(h.latency_sum.as_secs_f64());
            metrics::counter!("grid_handler_duration_seconds_count", &labels).absolute(cumulative);
        }
        for m in NODE_METRICS {
            let v = (m.value)(self);
            if m.kind == "counter" {
                metrics::counter!(m.name, "local" => local.clone()).absolute(v as u64);
            } else {
                metrics::gauge!(m.name, "local" => local.clone()).set(v);
            }
        }
    }
}
