//! What the run counts: calls and streams by outcome, faults by kind, and its findings.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Counts by name.
#[derive(Default)]
pub(crate) struct Counts(Mutex<BTreeMap<String, u64>>);

impl Counts {
    pub(crate) fn add(&self, name: &str) {
        *self
            .0
            .lock()
            .expect("counts")
            .entry(name.to_owned())
            .or_default() += 1;
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.lock().expect("counts").values().sum()
    }

    /// "a 3, b 1", or "-".
    pub(crate) fn show(&self) -> String {
        let counts = self.0.lock().expect("counts");
        if counts.is_empty() {
            return "-".into();
        }
        counts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What the run counted.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) calls_ok: AtomicU64,
    pub(crate) call_bytes: AtomicU64,
    pub(crate) calls_failed: Counts,
    pub(crate) calls_given_up: AtomicU64,
    pub(crate) calls_late: AtomicU64,
    pub(crate) streams_ok: AtomicU64,
    pub(crate) streams_failed: Counts,
    pub(crate) streams_given_up: AtomicU64,
    pub(crate) streams_late: AtomicU64,
    pub(crate) echoes: AtomicU64,
    pub(crate) faults: Counts,
    /// Slow handlers that ended before their answer (cancelled, deadline, lost socket).
    pub(crate) handlers_stopped: AtomicU64,
    pub(crate) hangs: AtomicU64,
    pub(crate) wrong: AtomicU64,
    pub(crate) unexpected: AtomicU64,
    pub(crate) fatal: Mutex<Vec<String>>,
}

pub(crate) fn n(a: &AtomicU64) -> u64 {
    a.load(Relaxed)
}

pub(crate) fn bump(a: &AtomicU64) {
    a.fetch_add(1, Relaxed);
}
