//! Window sizes, with no I/O: how large each stream direction's window is, within the
//! memory budget.
//!
//! A direction this side receives starts with a modest window ([`Budget::open`]) and, at
//! each credit return, asks [`Tuning::next`] whether the window is what holds its sender
//! back: when half a window or more was read per round trip of the connection (the
//! smallest its pings measured), the window doubles, up to the stream's cap, so it settles
//! at two to four times the bandwidth-delay product it sees (of the link, or of a reader
//! slower than the link).
//! When far less is read per round trip (the stream went quiet, or its reader fell behind),
//! it halves, back towards its start. Growth comes out of the connection's and the node's
//! budgets ([`Budget::grow`]); a stream denied growth puts the budget under pressure, and
//! then the windows above a fair share shrink as their credit comes back.
//!
//! Invariants:
//! - the windows granted add up to at most the connection's budget, and across the node
//!   to at most the node's, except for each window's floor (its first [`MIN_WINDOW`]
//!   bytes): every stream always moves, whatever the others hold;
//! - a window grows only by credit granted beyond what was read and shrinks only by
//!   credit withheld from what was read: what a sender holds is never taken back, so an
//!   idle or non-reading stream keeps at most its current window.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every window gets at least this much (or its cap, when lower), budget or not: the
/// floor grid's connections use.
pub(crate) const MIN_WINDOW: u64 = 4 * 1024;
/// How long the smallest round trip measured stays the estimate before a larger sample
/// may replace it (a path that got slower is noticed; queueing behind bulk data is not
/// taken for distance).
const RTT_MEMORY: Duration = Duration::from_secs(300);
/// How long after a stream was denied growth the windows above their share shrink.
const PRESSURE: Duration = Duration::from_secs(1);
/// Round trips a measurement spans at least: reads come in bursts (a frame, a batch), and a
/// burst at either end of a span of one round trip could double what it seems to carry.
const SPAN: u32 = 4;

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

/// The connection's round trip, as its pings measure it: the smallest recent sample.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Rtt {
    min: Option<(Duration, Instant)>,
}

impl Rtt {
    /// A ping answered after `rtt`, at `now`.
    pub(crate) fn sample(&mut self, rtt: Duration, now: Instant) {
        match self.min {
            Some((min, at)) if rtt > min && now.saturating_duration_since(at) < RTT_MEMORY => {}
            _ => self.min = Some((rtt, now)),
        }
    }

    /// The estimate, once a ping was answered.
    pub(crate) fn get(&self) -> Option<Duration> {
        self.min.map(|(rtt, _)| rtt)
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

/// The measurement that decides one receive direction's window size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tuning {
    /// Since when `read` bytes were read (at the first return).
    since: Option<Instant>,
    read: u64,
    /// The size it started with, which it never shrinks below on its own, and its cap.
    start: u32,
    cap: u32,
}

impl Tuning {
    /// A window that starts at `start` bytes and may grow to `cap`.
    pub(crate) fn new(start: u64, cap: u64) -> Self {
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            since: None,
            read: 0,
            start: clamp(start),
            cap: clamp(cap.max(start)),
        }
    }

    /// At a credit return at `now`, with messages costing `returned` bytes read since the
    /// last one, through a window of `window` bytes: the size the window should have, once
    /// at least a round trip (`rtt`) was measured; `None` until then.
    pub(crate) fn next(
        &mut self,
        now: Instant,
        rtt: Option<Duration>,
        window: u64,
        returned: u64,
    ) -> Option<u64> {
        self.read += returned;
        let rtt = rtt?;
        let since = *self.since.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since);
        if elapsed < rtt * SPAN || elapsed.is_zero() {
            return None;
        }
        let per_rtt =
            u128::from(std::mem::take(&mut self.read)) * rtt.as_nanos() / elapsed.as_nanos();
        let per_rtt = u64::try_from(per_rtt).unwrap_or(u64::MAX);
        self.since = Some(now);
        let (start, cap) = (u64::from(self.start), u64::from(self.cap));
        let target = if per_rtt.saturating_mul(2) >= window {
            // Half a window or more read per round trip: the window is what holds the
            // sender back (or soon will be).
            window.saturating_mul(2).min(cap).max(window)
        } else if per_rtt.saturating_mul(4) < window {
            // Far less than the window moves per round trip: quiet, or a reader behind.
            (window / 2)
                .max(per_rtt.saturating_mul(2))
                .max(start)
                .min(window)
        } else {
            window
        };
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_smallest_round_trip_is_kept_until_it_is_old() {
        let t0 = Instant::now();
        let mut rtt = Rtt::default();
        assert_eq!(rtt.get(), None);
        rtt.sample(10 * MS, t0);
        rtt.sample(30 * MS, t0 + MS);
        assert_eq!(rtt.get(), Some(10 * MS), "queueing is not distance");
        rtt.sample(8 * MS, t0 + 2 * MS);
        assert_eq!(rtt.get(), Some(8 * MS));
        rtt.sample(12 * MS, t0 + RTT_MEMORY + 3 * MS);
        assert_eq!(rtt.get(), Some(12 * MS), "an old minimum gives way");
    }

    #[test]
    fn a_window_doubles_while_it_holds_the_sender_back_and_stops_at_its_cap() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 350);
        let rtt = Some(10 * MS);
        assert_eq!(t.next(t0, rtt, 100, 25), None, "the first return starts");
        assert_eq!(
            t.next(t0 + 20 * MS, rtt, 100, 200),
            None,
            "over a few round trips"
        );
        // A window's worth read per round trip.
        assert_eq!(t.next(t0 + 40 * MS, rtt, 100, 200), Some(200));
        assert_eq!(t.next(t0 + 80 * MS, rtt, 200, 800), Some(350), "capped");
        assert_eq!(t.next(t0 + 120 * MS, rtt, 350, 1400), Some(350));
        // Without a round trip measured, nothing is decided.
        let mut t = Tuning::new(100, 1000);
        assert_eq!(t.next(t0, None, 100, 100), None);
    }

    #[test]
    fn a_window_stays_when_the_link_not_the_window_is_the_limit() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 10_000);
        let rtt = Some(10 * MS);
        t.next(t0, rtt, 1000, 0);
        // 400 bytes per round trip through a window of 1000: over a quarter, under half.
        assert_eq!(t.next(t0 + 40 * MS, rtt, 1000, 1600), Some(1000));
    }

    #[test]
    fn a_window_shrinks_towards_its_start_when_little_is_read_per_round_trip() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 10_000);
        let rtt = Some(10 * MS);
        t.next(t0, rtt, 1000, 0);
        // Quiet for a second: little read per round trip.
        assert_eq!(t.next(t0 + 1000 * MS, rtt, 1000, 250), Some(500));
        assert_eq!(t.next(t0 + 2000 * MS, rtt, 500, 125), Some(250));
        assert_eq!(t.next(t0 + 3000 * MS, rtt, 250, 60), Some(125));
        assert_eq!(t.next(t0 + 4000 * MS, rtt, 125, 30), Some(100));
        assert_eq!(
            t.next(t0 + 5000 * MS, rtt, 100, 30),
            Some(100),
            "not below its start"
        );
    }

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
