//! Per-handler counters: calls served, how they ended, how many run now, and how long they
//! took, counted with relaxed atomics by the serving path and read as [`HandlerStats`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Outcome, Watch};
use crate::codec::{ErrorKind, ErrorPayload, HandlerId};
use crate::describe::MethodInfo;
use crate::error::RemoteError;

/// Upper bounds of the latency histogram's buckets, in seconds (the last bucket is
/// unbounded): the ones Prometheus client libraries use by default.
pub const LATENCY_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What is known of a handler's name: its typed service and method, if it has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Names {
    pub(crate) service: Option<&'static str>,
    pub(crate) method: Option<&'static MethodInfo>,
}

/// One registered handler's counters.
#[derive(Debug)]
pub(crate) struct HandlerCounters {
    handler: HandlerId,
    subroute: Option<Arc<str>>,
    names: Names,
    calls: AtomicU64,
    ended: AtomicU64,
    /// By error kind (index = wire value; 0 unused).
    errors: [AtomicU64; 9],
    cancelled: AtomicU64,
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl HandlerCounters {
    pub(crate) fn new(handler: HandlerId, subroute: Option<Arc<str>>, names: Names) -> Self {
        Self {
            handler,
            subroute,
            names,
            calls: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            errors: Default::default(),
            cancelled: AtomicU64::new(0),
            buckets: Default::default(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// A call to the handler starts; the guard records how it ends.
    pub(crate) fn start(self: Arc<Self>) -> Serving {
        self.calls.fetch_add(1, Relaxed);
        Serving {
            counters: self,
            started: Instant::now(),
            ended: Ended::Cancelled,
            watch: None,
            failure: None,
        }
    }

    fn end(&self, ended: Ended, took: Duration) {
        match ended {
            Ended::Ok => {}
            Ended::Failed(kind) => {
                if let Some(c) = self.errors.get(kind as usize) {
                    c.fetch_add(1, Relaxed);
                }
            }
            Ended::Cancelled => {
                self.cancelled.fetch_add(1, Relaxed);
            }
        }
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        if let Some(c) = self.buckets.get(bucket) {
            c.fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
        self.ended.fetch_add(1, Relaxed);
    }

    /// The handler's id.
    pub(crate) fn handler(&self) -> HandlerId {
        self.handler
    }

    /// The handler's names, as registered.
    pub(crate) fn names(&self) -> &Names {
        &self.names
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> HandlerStats {
        let calls = self.calls.load(Relaxed);
        let ended = self.ended.load(Relaxed);
        let errors = (1..=8u8)
            .filter_map(|k| {
                let n = self.errors.get(usize::from(k))?.load(Relaxed);
                (n > 0).then(|| (kind_name(k), n))
            })
            .collect();
        HandlerStats {
            handler: self.handler,
            subroute: self.subroute.as_deref().map(str::to_owned),
            service: self.names.service,
            method: self.names.method.map(|m| m.name),
            calls,
            in_flight: calls.saturating_sub(ended),
            errors,
            cancelled: self.cancelled.load(Relaxed),
            latency_buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            latency_sum: Duration::from_micros(self.sum_micros.load(Relaxed)),
        }
    }
}

/// The names of the error kinds, as labels.
fn kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "remote",
        2 => "unknown_handler",
        3 => "deadline_exceeded",
        4 => "cancelled",
        5 => "codec",
        6 => "protocol",
        7 => "busy",
        _ => "too_large",
    }
}

/// How a served call ended, for the counters.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ended {
    Ok,
    Failed(ErrorKind),
    Cancelled,
}

/// A call being served: dropped, it records its end in the handler's counters and reports
/// it to the interceptors watching it, if any (`Cancelled` unless told otherwise, so a
/// handler task that is stopped still counts). One clock read for both.
pub(crate) struct Serving {
    counters: Arc<HandlerCounters>,
    started: Instant,
    ended: Ended,
    watch: Option<Box<Watch>>,
    /// The failure's message, kept only for a watch.
    failure: Option<String>,
}

impl Serving {
    /// Interceptors watch this call.
    pub(crate) fn watch(&mut self, watch: Option<Box<Watch>>) {
        self.watch = watch;
    }

    /// The handler ended: `Ok`, or with `failure` (what the caller got).
    pub(crate) fn ended(&mut self, failure: Option<&ErrorPayload>) {
        self.ended = match failure {
            None => Ended::Ok,
            Some(f) => {
                if self.watch.is_some() {
                    self.failure = Some(f.message.clone());
                }
                Ended::Failed(f.kind)
            }
        };
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        self.counters.end(self.ended, took);
        if let Some(w) = &self.watch {
            let outcome = match self.ended {
                Ended::Ok => Outcome::Ok,
                Ended::Failed(_) => {
                    Outcome::Failed(RemoteError::new(self.failure.take().unwrap_or_default()))
                }
                Ended::Cancelled => Outcome::Cancelled,
            };
            w.report(&outcome, took);
        }
    }
}

/// One handler's counters (see `ManagerStats::handlers`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HandlerStats {
    /// The handler id.
    pub handler: HandlerId,
    /// The subroute it is registered on, if any.
    pub subroute: Option<String>,
    /// Its typed service's name, if it is a method of one.
    pub service: Option<&'static str>,
    /// Its method's name, if it is a method of a typed service.
    pub method: Option<&'static str>,
    /// Calls and streams served (started).
    pub calls: u64,
    /// Running now.
    pub in_flight: u64,
    /// Ended with an error, by kind (`remote`, `codec`, `too_large`, ...): only kinds seen.
    pub errors: Vec<(&'static str, u64)>,
    /// Ended before their handler did (the caller cancelled, the deadline passed, the
    /// connection was lost).
    pub cancelled: u64,
    /// How many ended within each of [`LATENCY_BOUNDS`] (not cumulative), the last entry
    /// counting those that took longer than the last bound.
    pub latency_buckets: Vec<u64>,
    /// Their total duration.
    pub latency_sum: Duration,
}
