//! Window sizes, with no I/O: how large each stream direction's window is, within the
//! memory budget.
//!
//! A direction this side receives starts with a modest window ([`Budget::open`]) and, every
//! few round trips, at a credit return, asks [`Tuning::next`] what size it should have. The
//! round trip is the connection's: the smallest its pings measured (the path's length) and
//! the latest (the path's length plus whatever queues on it).
//! - When half a window or more was read per round trip, the window is what holds the
//!   sender back: it doubles (up to the stream's cap), as long as the latest round trip
//!   shows no queue. A window already in use is probed with a ping at each decision, so
//!   the latest round trip is fresh.
//! - When the latest round trip shows a queue (more than an eighth of the path's round
//!   trip, and at least [`QUEUE_SLACK`]), the window is larger than the path carries: the
//!   excess would only wait in buffers, ahead of every other message on the connection.
//!   Seen at one decision only, it holds the window (processing on a busy host can look
//!   like a queue); seen at two in a row, the window comes down to what was read per
//!   round trip plus a quarter, and from then
//!   on grows by sixteenths, not doubling. So a stream holds about the bandwidth-delay product
//!   of the path (or of a reader slower than it), and a small call sent beside it waits
//!   behind a queue of a fraction of a round trip, not several.
//! - When far less is read per round trip (the stream went quiet, or its reader fell
//!   behind), it halves, back towards its start.
//!
//! Growth comes out of the connection's and the node's budgets ([`Budget::grow`]); a
//! stream denied growth puts the budget under pressure, and then the windows above a fair
//! share shrink as their credit comes back.
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
/// The least queueing a round trip may show before it counts as a queue: below this,
/// scheduling noise on a busy host is taken for a queue on short paths.
const QUEUE_SLACK: Duration = Duration::from_millis(1);

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

/// The connection's round trip, as its pings measure it: the smallest recent sample (the
/// path's length) and the latest one (the path and its queues).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Rtt {
    min: Option<(Duration, Instant)>,
    latest: Option<(Duration, Instant)>,
}

impl Rtt {
    /// A ping answered after `rtt`, at `now`.
    pub(crate) fn sample(&mut self, rtt: Duration, now: Instant) {
        self.latest = Some((rtt, now));
        match self.min {
            Some((min, at)) if rtt > min && now.saturating_duration_since(at) < RTT_MEMORY => {}
            _ => self.min = Some((rtt, now)),
        }
    }

    /// The estimate, once a ping was answered.
    pub(crate) fn get(&self) -> Option<Duration> {
        self.min.map(|(rtt, _)| rtt)
    }

    /// Whether the path queues, as seen at `now` by a probe sent at `since`: the latest
    /// sample, if answered at or after `since`, took longer than the path's round trip by
    /// more than the slack; or no answer came, and the probe has been out that long
    /// already (a queue longer than the span would otherwise never be seen: its answers
    /// would always come after the decision). `None`: too early to say.
    fn queued_since(&self, since: Instant, now: Instant) -> Option<bool> {
        let (min, _) = self.min?;
        let queue = min + (min / 8).max(QUEUE_SLACK);
        match self.latest.filter(|(_, at)| *at >= since) {
            Some((latest, _)) => Some(latest > queue),
            None => (now.saturating_duration_since(since) > queue).then_some(true),
        }
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
    /// The path showed a queue once: growth goes by sixteenths from then on.
    found_queue: bool,
    /// The last decision saw a queue and held the window rather than cutting it: a queue
    /// seen once may be a busy host's noise; seen at two decisions in a row, it is cut.
    suspect: bool,
    /// When this span asked for its round trip to be measured.
    probed: Option<Instant>,
    /// The last decision found the window in use (not quiet) and free to move: the next
    /// span measures the round trip.
    watch: bool,
}

/// What [`Tuning::next`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Decision {
    /// The size the window should have; `None`: too early to say.
    pub(crate) size: Option<u64>,
    /// Measure the round trip now (a connection ping), for the next decision.
    pub(crate) probe: bool,
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
            found_queue: false,
            suspect: false,
            probed: None,
            watch: true,
        }
    }

    /// At a credit return at `now`, with messages costing `returned` bytes read since the
    /// last one, through a window of `window` bytes: the size the window should have, once
    /// a round trip was measured and a few of them have passed since the last decision.
    pub(crate) fn next(&mut self, now: Instant, rtt: &Rtt, window: u64, returned: u64) -> Decision {
        self.read += returned;
        let Some(min) = rtt.get() else {
            return Decision::default();
        };
        let since = *self.since.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since);
        if elapsed < min * SPAN || elapsed.is_zero() {
            // Halfway through a span, once what the last decision changed is in flight,
            // the round trip is measured for the next decision.
            let probe = self.watch && elapsed >= min * (SPAN / 2) && self.probed.is_none();
            if probe {
                self.probed = Some(now);
            }
            return Decision { size: None, probe };
        }
        let per_rtt =
            u128::from(std::mem::take(&mut self.read)) * min.as_nanos() / elapsed.as_nanos();
        let per_rtt = u64::try_from(per_rtt).unwrap_or(u64::MAX);
        self.since = Some(now);
        let (start, cap) = (u64::from(self.start), u64::from(self.cap));
        let queued = self.probed.take().and_then(|at| rtt.queued_since(at, now));
        // What the path carries per round trip, and a quarter again: what is read and not
        // yet returned (up to an eighth of the window), and what waits to be read, is not
        // the sender's. (Measured on a 10 ms, 1 Gbit/s path: with a half again, calls
        // beside the stream waited 3 ms behind its queue; with a quarter, under 1 ms, and
        // the stream still filled the link.)
        let fitted = per_rtt.saturating_add(per_rtt / 4).max(start).min(window);
        self.watch = per_rtt.saturating_mul(4) >= window && (window < cap || window > start);
        if per_rtt.saturating_mul(4) < window {
            // Far less than the window moves per round trip: quiet, or a reader behind.
            let size = (window / 2)
                .max(per_rtt.saturating_mul(2))
                .max(start)
                .min(window);
            return Decision {
                size: Some(size),
                probe: false,
            };
        }
        if queued == Some(true) && !std::mem::replace(&mut self.suspect, true) {
            // A queue seen once: the window holds (neither grows nor is cut) until the next
            // decision says whether it stays. (Measured, 16 KiB messages over a 10 ms
            // emulated link on 2 busy cores: round trips 1-1.5 ms over the path's from
            // processing alone cut the window at every few decisions; holding once took
            // the stream from 0.35-0.50x to 0.46-0.63x a raw WebSocket, and calls beside a
            // stream filling a 1 Gbit/s link kept their p99, 16.0 -> 16.7 ms.)
            return Decision {
                size: Some(window),
                probe: false,
            };
        }
        if queued == Some(false) {
            self.suspect = false;
        }
        if queued == Some(true) {
            // More in flight than the path carries: the rest waits in a queue.
            self.found_queue = true;
            return Decision {
                size: Some(fitted),
                probe: false,
            };
        }
        if per_rtt.saturating_mul(2) < window {
            // The link, not the window, is the limit: keep it.
            return Decision {
                size: Some(window),
                probe: false,
            };
        }
        // Half a window or more read per round trip: the window is what holds the sender
        // back (or soon will be). It grows once a fresh round trip shows no queue.
        let size = match queued {
            None => window,
            Some(_) if self.found_queue => window.saturating_add(window / 16),
            Some(_) => window.saturating_mul(2),
        };
        Decision {
            size: Some(size.min(cap).max(window)),
            probe: false,
        }
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

    /// A path of `rtt` measured at `t0`, whose latest sample (answered at `at`) is `latest`.
    fn path(rtt: Duration, t0: Instant, latest: Option<(Duration, Instant)>) -> Rtt {
        let mut r = Rtt::default();
        r.sample(rtt, t0);
        if let Some((l, at)) = latest {
            r.sample(l, at);
        }
        r
    }

    /// One span of `t` from `at` to `at + span`, reading `read` bytes through `window`: the
    /// round trip is probed halfway and answered after `latest` (`None`: not answered).
    fn span(
        t: &mut Tuning,
        at: Instant,
        span: Duration,
        latest: Option<Duration>,
        window: u64,
        read: u64,
    ) -> Decision {
        let base = path(10 * MS, at - RTT_MEMORY / 2, None);
        let mid = at + span / 2;
        let probe = t.next(mid, &base, window, read / 2).probe;
        let answered = latest.filter(|_| probe).map(|l| (l, mid + l));
        t.next(
            at + span,
            &path(10 * MS, at - RTT_MEMORY / 2, answered),
            window,
            read - read / 2,
        )
    }

    #[test]
    fn a_window_doubles_while_it_holds_the_sender_back_and_stops_at_its_cap() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 350);
        let clear = path(10 * MS, t0, None);
        assert_eq!(
            t.next(t0, &clear, 100, 25),
            Decision::default(),
            "the first return starts"
        );
        assert_eq!(
            t.next(t0 + 20 * MS, &clear, 100, 100),
            Decision {
                size: None,
                probe: true
            },
            "halfway through a span, the round trip is measured"
        );
        assert_eq!(
            t.next(t0 + 25 * MS, &clear, 100, 100),
            Decision::default(),
            "once"
        );
        let answered = path(10 * MS, t0, Some((10 * MS, t0 + 30 * MS)));
        // A window's worth read per round trip, and a fresh round trip without a queue.
        assert_eq!(t.next(t0 + 40 * MS, &answered, 100, 200).size, Some(200));
        let next = t0 + 40 * MS;
        assert_eq!(
            span(&mut t, next, 40 * MS, Some(10 * MS), 200, 800).size,
            Some(350),
            "capped"
        );
        let d = span(&mut t, next + 40 * MS, 40 * MS, Some(10 * MS), 350, 1400);
        assert_eq!(d.size, Some(350));
        let d = span(&mut t, next + 80 * MS, 40 * MS, Some(10 * MS), 350, 1400);
        assert_eq!(d.size, Some(350));
        // Without a round trip measured, nothing is decided.
        let mut t = Tuning::new(100, 1000);
        assert_eq!(t.next(t0, &Rtt::default(), 100, 100), Decision::default());
    }

    #[test]
    fn a_window_grows_only_on_a_fresh_round_trip_and_a_probe_long_unanswered_is_a_queue() {
        let t0 = Instant::now();
        let rtt = path(10 * MS, t0, None);
        let mut t = Tuning::new(100, 10_000);
        t.next(t0, &rtt, 100, 0);
        // The probe goes late in the span; at the decision it has been out 1 ms: too
        // early to say, and the window holds.
        assert!(t.next(t0 + 39 * MS, &rtt, 100, 200).probe);
        assert_eq!(t.next(t0 + 40 * MS, &rtt, 100, 200).size, Some(100));
        // Answered with no queue: it doubles.
        let d = span(&mut t, t0 + 40 * MS, 40 * MS, Some(10 * MS), 100, 400);
        assert_eq!(d.size, Some(200));
        // A probe still unanswered 20 ms after it went, on a 10 ms path: the path queues
        // (its answer would come only after this decision, every time). Seen once, the
        // window holds; seen again, it comes down to 100 bytes per round trip, and a
        // quarter.
        let d = span(&mut t, t0 + 80 * MS, 40 * MS, None, 200, 400);
        assert_eq!(d.size, Some(200));
        let d = span(&mut t, t0 + 120 * MS, 40 * MS, None, 200, 400);
        assert_eq!(d.size, Some(125));
    }

    #[test]
    fn a_window_that_makes_a_queue_comes_down_to_the_path_and_then_grows_by_sixteenths() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 100_000);
        t.next(t0, &path(10 * MS, t0, None), 8000, 0);
        // 4000 bytes per round trip through 8000, and the round trip went from 10 to 20 ms:
        // once, the window holds; at the next decision too, it comes down.
        let d = span(&mut t, t0, 40 * MS, Some(20 * MS), 8000, 16_000);
        assert_eq!(d.size, Some(8000), "a queue seen once may be noise");
        let d = span(&mut t, t0 + 40 * MS, 40 * MS, Some(20 * MS), 8000, 16_000);
        assert_eq!(d.size, Some(5000), "what the path carries, and a quarter");
        // The queue is gone and the window holds the sender back: a sixteenth more.
        let d = span(&mut t, t0 + 80 * MS, 40 * MS, Some(11 * MS), 5000, 20_000);
        assert_eq!(d.size, Some(5000 + 5000 / 16));
    }

    #[test]
    fn a_queue_seen_at_one_decision_only_holds_the_window_and_growth_resumes() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 100_000);
        t.next(t0, &path(10 * MS, t0, None), 8000, 0);
        // A window's worth per round trip; one late round trip (a busy host), then clear
        // ones: the window holds once, then doubles.
        let d = span(&mut t, t0, 40 * MS, Some(20 * MS), 8000, 32_000);
        assert_eq!(d.size, Some(8000));
        let d = span(&mut t, t0 + 40 * MS, 40 * MS, Some(10 * MS), 8000, 32_000);
        assert_eq!(d.size, Some(16_000));
        // A late round trip after a clear one is again a first sighting.
        let d = span(&mut t, t0 + 80 * MS, 40 * MS, Some(20 * MS), 16_000, 64_000);
        assert_eq!(d.size, Some(16_000));
    }

    #[test]
    fn a_queue_under_a_millisecond_is_not_taken_for_one_on_a_short_path() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 100_000);
        let rtt = |latest: Option<(Duration, Instant)>| path(MS / 10, t0, latest);
        t.next(t0, &rtt(None), 800, 0);
        assert!(t.next(t0 + MS / 5, &rtt(None), 800, 2000).probe);
        // 8000 bytes in 1.5 ms: 533 per round trip through 800, and a round trip of 1 ms.
        let answered = rtt(Some((MS, t0 + MS / 5 + MS)));
        assert_eq!(
            t.next(t0 + 3 * MS / 2, &answered, 800, 6000).size,
            Some(1600)
        );
    }

    #[test]
    fn a_window_stays_when_the_link_not_the_window_is_the_limit() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 10_000);
        t.next(t0, &path(10 * MS, t0, None), 1000, 0);
        // 400 bytes per round trip through a window of 1000: over a quarter, under half.
        assert_eq!(
            span(&mut t, t0, 40 * MS, Some(10 * MS), 1000, 1600).size,
            Some(1000)
        );
    }

    #[test]
    fn a_window_shrinks_towards_its_start_when_little_is_read_per_round_trip() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 10_000);
        let rtt = path(10 * MS, t0, None);
        t.next(t0, &rtt, 1000, 0);
        // Quiet for a second: little read per round trip.
        assert_eq!(t.next(t0 + 1000 * MS, &rtt, 1000, 250).size, Some(500));
        assert_eq!(t.next(t0 + 2000 * MS, &rtt, 500, 125).size, Some(250));
        assert_eq!(t.next(t0 + 3000 * MS, &rtt, 250, 60).size, Some(125));
        assert_eq!(t.next(t0 + 4000 * MS, &rtt, 125, 30).size, Some(100));
        assert_eq!(
            t.next(t0 + 5000 * MS, &rtt, 100, 30).size,
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
