//! Window sizes, with no I/O: how large each stream direction's window should be.
//!
//! A direction this side receives starts with a modest window (within the budget,
//! `budget.rs`) and, at credit returns, asks [`Tuning::next`] what size it should have. The
//! round trip is the connection's: the smallest its pings measured (the path's length) and
//! the latest (the path's length plus whatever queues on it). A decision looks at a span of
//! a few round trips: what was read in it, per round trip.
//! - When half a window or more was read per round trip, the window is what holds the
//!   sender back: it doubles (up to the stream's cap), as long as the latest round trip
//!   shows no queue. A window in use is probed with a ping at each decision (on a path of
//!   a millisecond or more), so the latest round trip is fresh. The span after a growth
//!   starts a round trip later, when what the growth granted has come back as data.
//! - On a path shorter than [`HOST_DELAY`] (loopback, one rack, one region) the round trip
//!   a window has to cover is not only the path's but the hosts': a busy host's scheduler
//!   can keep the reader, the writer or the sender off a core for milliseconds, as long as
//!   the path or longer, and a window of a few path round trips runs dry at every such
//!   stall. There windows are sized, and decisions spaced, as if the round trip were the
//!   path's plus [`HOST_DELAY`]. (Measured on loopback on 2 busy cores: with windows sized
//!   on the path's 50-250 µs, a stream of 16 KiB messages stayed at its 256 KiB start and
//!   carried 0.60-0.72x a raw WebSocket; sized this way, 0.8-1.3x. Over a 1 ms emulated
//!   link, typed records went at 0.60-0.88x tonic sized on the path alone, 0.89-1.00x
//!   sized this way.)
//! - A short path (under [`QUEUE_SLACK`]) is not probed for a queue either: there the
//!   hosts' delay is longer than any queue worth a ping per span (measured: probing took a
//!   stream of typed records on loopback from 0.96-1.07x tonic to 0.78-0.83x), so a window
//!   grows there as soon as it holds the sender back, and a stream may keep up to about
//!   two hosts' delays of its data queued on the path. A longer path is probed, however
//!   short: one of 1.5 ms not probed let a stream fill a 1 Gbit/s link with 9 ms of queue
//!   (calls beside it p99 10.3 ms; probed, 4.3 ms; `beside_stream` bench).
//! - When the latest round trip shows a queue (more than an eighth of the path's round
//!   trip, and at least [`QUEUE_SLACK`]), the window is larger than the path carries: the
//!   excess would only wait in buffers, ahead of every other message on the connection.
//!   Seen at one decision only, it holds the window (processing on a busy host can look
//!   like a queue); seen at two in a row, the window comes down to what was read per
//!   round trip plus a quarter, and from then on grows by sixteenths, not doubling. So a
//!   stream holds about the bandwidth-delay product of the path (or of a reader slower
//!   than it), and a small call sent beside it waits behind a queue of a fraction of a
//!   round trip, not several.
//! - When far less is read per round trip (the stream went quiet, or its reader fell
//!   behind), it halves, back towards its start.
//!
//! Invariant: a window grows only by credit granted beyond what was read and shrinks only
//! by credit withheld from what was read: what a sender holds is never taken back, so an
//! idle or non-reading stream keeps at most its current window.

use std::time::{Duration, Instant};

/// How long the smallest round trip measured stays the estimate before a larger sample
/// may replace it (a path that got slower is noticed; queueing behind bulk data is not
/// taken for distance).
const RTT_MEMORY: Duration = Duration::from_secs(300);
/// What a short path's round trip counts as longer, for sizing windows: how long a busy
/// host may keep one of a stream's tasks waiting for a core (a few scheduling slices): a
/// path shorter than this counts that much longer (module doc).
/// Measured on loopback (16 KiB messages against a raw WebSocket, typed records against
/// tonic): 1 ms, 1.14x and 0.72x; 2 ms, 0.95-1.27x and 0.76-0.80x; 4 ms, windows of
/// 8-16 MiB whose backlog no longer stayed in cache, typed records at 0.5-0.8x.
const HOST_DELAY: Duration = Duration::from_millis(2);
/// Round trips a measurement spans at least: reads come in bursts (a frame, a batch), and a
/// burst at either end of a span of one round trip could double what it seems to carry.
const SPAN: u32 = 4;
/// The least queueing a round trip may show before it counts as a queue (below this,
/// scheduling noise on a busy host would be taken for one), and the round trip under which
/// a path is short, not probed for a queue (module doc).
const QUEUE_SLACK: Duration = Duration::from_millis(1);

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
    /// (Cuts go at decisions only: measured over a 10 ms path, cutting to the queue's
    /// measure at once took the stream from about 0.64x to 0.59x a raw WebSocket.)
    pub(crate) fn next(&mut self, now: Instant, rtt: &Rtt, window: u64, returned: u64) -> Decision {
        let Some(path) = rtt.get() else {
            return Decision::default();
        };
        let Some(since) = self.since else {
            // The first return starts the measurement: what it returns was read before.
            self.since = Some(now);
            return Decision::default();
        };
        if now < since {
            // A round trip after a growth, before the span that measures it: what comes
            // meanwhile was sent through the window as it was.
            return Decision::default();
        }
        // The round trip a window has to cover: on a path shorter than the hosts' delay, the
        // hosts' too; a short path is not probed for a queue (module doc).
        let short = path < QUEUE_SLACK;
        let round = if path < HOST_DELAY {
            path + HOST_DELAY
        } else {
            path
        };
        self.read += returned;
        let elapsed = now.saturating_duration_since(since);
        let span = round * SPAN;
        if elapsed < span || elapsed.is_zero() {
            // Halfway through a span, once what the last decision changed is in flight,
            // the round trip is measured for the next decision.
            let probe = self.watch && !short && elapsed >= span / 2 && self.probed.is_none();
            if probe {
                self.probed = Some(now);
            }
            return Decision { size: None, probe };
        }
        let read = u128::from(std::mem::take(&mut self.read));
        let per_rtt =
            u64::try_from(read * round.as_nanos() / elapsed.as_nanos()).unwrap_or(u64::MAX);
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
        // back. It grows once a fresh round trip shows no queue (on a short path, at once),
        // and the next span starts a round trip later, when what it grants has reached the
        // sender and come back as data.
        let size = match queued {
            None if !short => window,
            Some(_) if self.found_queue => window.saturating_add(window / 16),
            _ => window.saturating_mul(2),
        };
        let size = size.min(cap).max(window);
        if size > window {
            self.since = Some(now + round);
        }
        Decision {
            size: Some(size),
            probe: false,
        }
    }
}

/// `v` in 32 bits, saturated.
fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
