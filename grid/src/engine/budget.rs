//! The memory budget of stream windows, with no I/O: what each connection's receive
//! windows take, and what all of a node's take together.
//!
//! A window opens with what it asks for, as far as the budgets have room ([`Budget::open`]),
//! and grows only out of them ([`Budget::grow`]); a stream denied growth puts the budget
//! under pressure ([`Budget::pressed`]), and then the windows above a fair share
//! ([`Budget::share`]) shrink as their credit comes back. What sizes a window within them
//! is `tuning.rs`'s concern.
//!
//! Invariants:
//! - the windows granted add up to at most the connection's budget, and across the node
//!   to at most the node's, except for each window's floor (its first [`MIN_WINDOW`]
//!   bytes): every stream always moves, whatever the others hold;
//! - what a connection holds goes back to the node when it closes (`Drop`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every window gets at least this much (or its cap, when lower), budget or not: the
/// floor grid's connections use.
pub(crate) const MIN_WINDOW: u64 = 4 * 1024;
/// How long after a stream was denied growth the windows above their share shrink.
const PRESSURE: Duration = Duration::from_secs(1);

/// The budget of a node's stream windows, shared by all its connections.
#[derive(Debug)]
pub struct NodeBudget {
    limit: u64,
    granted: AtomicU64,
    windows: AtomicU64,
    /// Growth denied for lack of room here, ever: a change tells every connection that the
    /// node is short.
    denials: AtomicU64,
}

impl NodeBudget {
    /// A budget of `limit` bytes of windows for a whole node.
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            granted: AtomicU64::new(0),
            windows: AtomicU64::new(0),
            denials: AtomicU64::new(0),
        })
    }

    /// The bytes of windows granted now, across the node.
    pub(crate) fn granted(&self) -> u64 {
        self.granted.load(Relaxed)
    }

    /// Takes up to `want` bytes of what is left; returns how many.
    fn take(&self, want: u64) -> u64 {
        let mut taken = 0;
        let _ = self.granted.fetch_update(Relaxed, Relaxed, |g| {
            taken = want.min(self.limit.saturating_sub(g));
            Some(g + taken)
        });
        taken
    }

    fn give(&self, n: u64) {
        let _ = self
            .granted
            .fetch_update(Relaxed, Relaxed, |g| Some(g.saturating_sub(n)));
    }
}

/// What one connection's receive windows take of its budget and of the node's.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    /// What every window gets, budget or not.
    floor: u64,
    granted: u64,
    windows: u64,
    node: Arc<NodeBudget>,
    /// When a stream here was last denied growth.
    starved_at: Option<Instant>,
    /// The node's denials when this connection last looked.
    node_denials: u64,
}

impl Budget {
    pub(crate) fn new(limit: u64, floor: u64, node: Arc<NodeBudget>) -> Self {
        Self {
            limit,
            floor,
            granted: 0,
            windows: 0,
            node,
            starved_at: None,
            node_denials: 0,
        }
    }

    /// Opens a window of `want` bytes, or of what the budgets have left when that is less,
    /// but at least the floor (or `want`, if smaller).
    pub(crate) fn open(&mut self, want: u64) -> u64 {
        let floor = want.min(self.floor);
        let room = self.limit.saturating_sub(self.granted + floor);
        let beyond = self.node.take(want.saturating_sub(floor).min(room));
        self.node.granted.fetch_add(floor, Relaxed);
        self.node.windows.fetch_add(1, Relaxed);
        let window = floor + beyond;
        self.granted += window;
        self.windows += 1;
        window
    }

    /// A window of `window` bytes closed (its stream is gone).
    pub(crate) fn close(&mut self, window: u64) {
        self.granted = self.granted.saturating_sub(window);
        self.windows = self.windows.saturating_sub(1);
        self.node.give(window);
        let _ = self
            .node
            .windows
            .fetch_update(Relaxed, Relaxed, |w| Some(w.saturating_sub(1)));
    }

    /// Grows a window by up to `want` bytes; returns the growth granted. Growth denied
    /// for lack of room puts the budget under pressure.
    pub(crate) fn grow(&mut self, want: u64, now: Instant) -> u64 {
        let room = self.limit.saturating_sub(self.granted);
        let got = self.node.take(want.min(room));
        self.granted += got;
        if got < want {
            self.starved_at = Some(now);
            if got < want.min(room) {
                self.node.denials.fetch_add(1, Relaxed);
            }
        }
        got
    }

    /// A window shrank by `n` bytes.
    pub(crate) fn shrink(&mut self, n: u64) {
        self.granted = self.granted.saturating_sub(n);
        self.node.give(n);
    }

    /// Whether a stream was denied growth lately, on this connection or anywhere on the
    /// node: then windows above their share give some back.
    pub(crate) fn pressed(&mut self, now: Instant) -> bool {
        let denials = self.node.denials.load(Relaxed);
        let node = std::mem::replace(&mut self.node_denials, denials) != denials;
        node || self
            .starved_at
            .is_some_and(|at| now.saturating_duration_since(at) < PRESSURE)
    }

    /// A window's fair share while the budget is under pressure: the connection's budget,
    /// and the node's, divided among their windows.
    pub(crate) fn share(&self) -> u64 {
        let here = self.limit / self.windows.max(1);
        let node = self.node.limit / self.node.windows.load(Relaxed).max(1);
        here.min(node).max(self.floor)
    }

    /// The bytes of windows granted on this connection.
    pub(crate) fn granted(&self) -> u64 {
        self.granted
    }

    /// The connection's budget.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Live windows on this connection.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn windows(&self) -> u64 {
        self.windows
    }

    /// What every window gets, budget or not.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        // The connection is gone: its windows go back to the node.
        self.node.give(self.granted);
        let windows = self.windows;
        let _ = self
            .node
            .windows
            .fetch_update(Relaxed, Relaxed, |w| Some(w.saturating_sub(windows)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_bound_the_windows_beyond_their_floor_and_take_back_what_closes() {
        let now = Instant::now();
        let node = NodeBudget::new(3 * MIN_WINDOW);
        let mut a = Budget::new(2 * MIN_WINDOW, MIN_WINDOW, node.clone());
        assert_eq!(
            a.open(4 * MIN_WINDOW),
            2 * MIN_WINDOW,
            "the connection's budget"
        );
        assert_eq!(
            a.open(4 * MIN_WINDOW),
            MIN_WINDOW,
            "the floor, beyond the budget"
        );
        assert_eq!(a.open(100), 100, "a small window is its own floor");
        let mut b = Budget::new(10 * MIN_WINDOW, MIN_WINDOW, node.clone());
        assert_eq!(node.granted(), 3 * MIN_WINDOW + 100);
        assert_eq!(
            b.open(4 * MIN_WINDOW),
            MIN_WINDOW,
            "the node's budget is spent"
        );
        assert!(!b.pressed(now));
        assert_eq!(b.grow(MIN_WINDOW, now), 0, "no room on the node");
        assert!(b.pressed(now), "a denial puts the budget under pressure");
        assert!(a.pressed(now), "on every connection of the node");
        assert!(!a.pressed(now), "once per denial elsewhere");
        a.close(2 * MIN_WINDOW);
        a.close(100);
        assert_eq!(b.grow(MIN_WINDOW, now), MIN_WINDOW, "room again");
        drop(a);
        assert_eq!(node.granted(), 2 * MIN_WINDOW, "b's window");
        assert_eq!(
            b.share(),
            3 * MIN_WINDOW,
            "the node's budget, for its one window"
        );
        drop(b);
        assert_eq!(node.granted(), 0);
        assert_eq!(node.windows.load(Relaxed), 0);
    }
}
