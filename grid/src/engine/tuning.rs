//! Window sizes, with no I/O: how large each stream direction's window should be.
//!
//! A direction this side receives starts with a modest window (within the budget,
//! `budget.rs`) and, at credit returns, asks [`Tuning::next`] what size it should have. The
//! round trip is the connection's: the smallest its pings measured (the path's length) and
//! the latest (the path's length plus whatever queues on it). A decision looks at a span of
//! a few round trips (and at least [`MIN_SPAN`]): what was read in it, per round trip.
//! - When half a window or more was read per round trip, the window is what holds the
//!   sender back: it doubles (up to the stream's cap), as long as the latest round trip
//!   shows no queue. A window in use is probed with a ping at each decision, so the
//!   latest round trip is fresh. The span after a growth starts a round trip later, when
//!   what the growth granted has come back as data.
//! - On a short path (a round trip under [`QUEUE_SLACK`]: loopback, one rack) a busy
//!   host's scheduling is as long as the path, so a round trip measured behind the
//!   stream's own data, or on a cold connection, can be several times the path's, and
//!   what seems to move per round trip with it. There a window doubles only when three
//!   quarters of it were read per round trip at two decisions in a row, and on trial: if
//!   the next decision does not find a quarter more read per second, the window goes back
//!   and stays there (its ceiling) until the rate rises that much, or for
//!   [`CEILING_MEMORY`]. (Measured on loopback, 16 KiB messages: windows grew to 512-870 KiB
//!   and carried no more than a fixed 256 KiB one; now they stay at 256 KiB, but for a
//!   trial of a millisecond or two in some streams' first milliseconds.)
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
/// How long a doubling that did not pay holds the window back (unless the rate rises): the
/// path or the reader may have changed since.
const CEILING_MEMORY: Duration = Duration::from_secs(5);
/// Round trips a measurement spans at least: reads come in bursts (a frame, a batch), and a
/// burst at either end of a span of one round trip could double what it seems to carry.
const SPAN: u32 = 4;
/// And the least time a measurement spans: on a short path four round trips are a few
/// hundred microseconds, a handful of frames, and one read more or less swung what a span
/// seemed to carry by half (measured on loopback: 55-300 KB per round trip, at one rate).
const MIN_SPAN: Duration = Duration::from_millis(1);
/// The least queueing a round trip may show before it counts as a queue: below this,
/// scheduling noise on a busy host is taken for a queue on short paths.
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
    /// The last decision found the window holding the sender back on a short path and did
    /// not double it: a second one in a row does.
    pending: bool,
    /// Where a doubling on a short path stands.
    doubling: Doubling,
}

/// A short path's doubling: on trial, or one that did not pay. Windows in bytes and rates
/// in KiB per second, in 32 bits: every open stream holds two of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Doubling {
    /// Neither.
    #[default]
    Free,
    /// The last decision doubled `from`, read at `rate` before: the next one checks that it
    /// paid.
    Trial { from: u32, rate: u32 },
    /// A doubling from `window` did not pay, read at `rate` then, `at`: the window stays at
    /// most this (every return withholds credit until it is there) until the rate is well
    /// above that, or [`CEILING_MEMORY`] has passed.
    Ceiling { window: u32, rate: u32, at: Instant },
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
            pending: false,
            doubling: Doubling::Free,
        }
    }

    /// At a credit return at `now`, with messages costing `returned` bytes read since the
    /// last one, through a window of `window` bytes: the size the window should have, once
    /// a round trip was measured and a few of them have passed since the last decision.
    /// A window held under a ceiling comes down to it at every return, not only at the
    /// decision (which can withhold only what is owed then). (Other cuts go at decisions
    /// only: measured over a 10 ms path, cutting to the queue's measure at once took the
    /// stream from about 0.64x to 0.59x a raw WebSocket.)
    pub(crate) fn next(&mut self, now: Instant, rtt: &Rtt, window: u64, returned: u64) -> Decision {
        let mut decision = self.decide(now, rtt, window, returned);
        if let (None, Doubling::Ceiling { window: c, .. }) = (decision.size, self.doubling) {
            decision.size = (u64::from(c) < window).then_some(u64::from(c));
        }
        decision
    }

    fn decide(&mut self, now: Instant, rtt: &Rtt, window: u64, returned: u64) -> Decision {
        let Some(min) = rtt.get() else {
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
        self.read += returned;
        let elapsed = now.saturating_duration_since(since);
        let span = (min * SPAN).max(MIN_SPAN);
        if elapsed < span || elapsed.is_zero() {
            // Halfway through a span, once what the last decision changed is in flight,
            // the round trip is measured for the next decision.
            let probe = self.watch && elapsed >= span / 2 && self.probed.is_none();
            if probe {
                self.probed = Some(now);
            }
            return Decision { size: None, probe };
        }
        let read = u128::from(std::mem::take(&mut self.read));
        let per_rtt = u64::try_from(read * min.as_nanos() / elapsed.as_nanos()).unwrap_or(u64::MAX);
        // KiB per second.
        let rate =
            u32::try_from(read * 1_000_000_000 / 1024 / elapsed.as_nanos()).unwrap_or(u32::MAX);
        self.since = Some(now);
        let pending = std::mem::take(&mut self.pending);
        let (start, cap) = (u64::from(self.start), u64::from(self.cap));
        let queued = self.probed.take().and_then(|at| rtt.queued_since(at, now));
        // What the path carries per round trip, and a quarter again: what is read and not
        // yet returned (up to an eighth of the window), and what waits to be read, is not
        // the sender's. (Measured on a 10 ms, 1 Gbit/s path: with a half again, calls
        // beside the stream waited 3 ms behind its queue; with a quarter, under 1 ms, and
        // the stream still filled the link.)
        let fitted = per_rtt.saturating_add(per_rtt / 4).max(start).min(window);
        self.watch = per_rtt.saturating_mul(4) >= window && (window < cap || window > start);
        if let Doubling::Trial { from, rate: before } = self.doubling {
            self.doubling = Doubling::Free;
            if rate < raised(before) {
                // Twice the window did not carry a quarter more: the window was not what
                // held the sender back (a reader as fast as it goes, or a round trip
                // measured long behind the stream's own data). It goes back, and stays
                // there until the rate says otherwise.
                self.doubling = Doubling::Ceiling {
                    window: from,
                    rate,
                    at: now,
                };
                return Decision {
                    size: Some(u64::from(from).min(window)),
                    probe: false,
                };
            }
        }
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
        // A short path: its round trip is no longer than a busy host's noise, so one
        // measured behind the stream's own data, or on a cold connection, can be several
        // times the path's, and what seems to move per round trip with it.
        let short = min < QUEUE_SLACK;
        let holds_back = if short {
            per_rtt.saturating_mul(4) >= window.saturating_mul(3)
        } else {
            per_rtt.saturating_mul(2) >= window
        };
        let ceiling = self.ceiling(rate, now);
        if !holds_back {
            // The link, not the window, is the limit: keep it.
            return Decision {
                size: Some(ceiling.map_or(window, |c| window.min(c))),
                probe: false,
            };
        }
        // Half a window or more read per round trip (three quarters on a short path): the
        // window is what holds the sender back. It grows once a fresh round trip shows no
        // queue, and the next span starts a round trip later, when what it grants has
        // reached the sender and come back as data. On a short path, only at a second
        // decision in a row, and on trial: a doubling that does not pay goes back.
        let size = match queued {
            None => window,
            Some(_) if self.found_queue => window.saturating_add(window / 16),
            Some(_) if !short => window.saturating_mul(2),
            Some(_) if !pending => {
                self.pending = true;
                window
            }
            Some(_) if ceiling.is_some_and(|c| window >= c) => window,
            Some(_) => {
                self.doubling = Doubling::Trial {
                    from: clamp(window),
                    rate,
                };
                window.saturating_mul(2)
            }
        };
        let size = size.min(cap).max(window);
        let size = ceiling.map_or(size, |c| size.min(c));
        if size > window {
            self.since = Some(now + min);
        } else if matches!(self.doubling, Doubling::Trial { .. }) {
            self.doubling = Doubling::Free;
        }
        Decision {
            size: Some(size),
            probe: false,
        }
    }

    /// The window a doubling did not pay from, while it holds: set lately, and the rate not
    /// well above what it was then. Forgotten otherwise.
    fn ceiling(&mut self, rate: u32, now: Instant) -> Option<u64> {
        match self.doubling {
            Doubling::Ceiling {
                window,
                rate: then,
                at,
            } if rate < raised(then) && now.saturating_duration_since(at) < CEILING_MEMORY => {
                Some(u64::from(window))
            }
            Doubling::Ceiling { .. } => {
                self.doubling = Doubling::Free;
                None
            }
            _ => None,
        }
    }
}

/// A rate well above `rate`: a quarter more, what a doubling that paid brings at least.
fn raised(rate: u32) -> u32 {
    rate.saturating_add(rate / 4)
}

/// `v` in 32 bits, saturated.
fn clamp(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
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
        // The next span starts a round trip later, when the growth has come back as data.
        assert_eq!(
            t.next(t0 + 45 * MS, &answered, 200, 100),
            Decision::default()
        );
        let next = t0 + 50 * MS;
        assert_eq!(
            span(&mut t, next, 40 * MS, Some(10 * MS), 200, 800).size,
            Some(350),
            "capped"
        );
        let d = span(&mut t, next + 50 * MS, 40 * MS, Some(10 * MS), 350, 1400);
        assert_eq!(d.size, Some(350));
        let d = span(&mut t, next + 90 * MS, 40 * MS, Some(10 * MS), 350, 1400);
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
        // quarter. (The spans start a round trip after the growth.)
        let d = span(&mut t, t0 + 90 * MS, 40 * MS, None, 200, 400);
        assert_eq!(d.size, Some(200));
        let d = span(&mut t, t0 + 130 * MS, 40 * MS, None, 200, 400);
        assert_eq!(d.size, Some(125));
    }

    /// One span of [`assert_spans`]: when it starts (ms after the first return), its round
    /// trip (ms), the window and what is read through it, the size decided, and why.
    type Span = (u32, Option<u32>, u64, u64, Option<u64>, &'static str);

    /// A tuning of windows from 100 bytes to `max`, started on a clear 10 ms path with a
    /// window of `window`, decides the size expected at the end of each of `spans` (of
    /// 40 ms each, see [`span`]).
    fn assert_spans(max: u64, window: u64, spans: &[Span]) {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, max);
        t.next(t0, &path(10 * MS, t0, None), window, 0);
        for &(at, latest, window, read, size, why) in spans {
            let latest = latest.map(|ms| ms * MS);
            let d = span(&mut t, t0 + at * MS, 40 * MS, latest, window, read);
            assert_eq!(d.size, size, "{why}");
        }
    }

    #[test]
    fn a_window_that_makes_a_queue_comes_down_to_the_path_and_then_grows_by_sixteenths() {
        let noise = "a queue seen once may be noise";
        let path = "what the path carries, and a quarter";
        assert_spans(
            100_000,
            8000,
            &[
                // 4000 bytes per round trip through 8000, and the round trip went from 10
                // to 20 ms: once, the window holds; at the next decision too, it comes down.
                (0, Some(20), 8000, 16_000, Some(8000), noise),
                (40, Some(20), 8000, 16_000, Some(5000), path),
                // The queue is gone and the window holds the sender back: a sixteenth more.
                (80, Some(11), 5000, 20_000, Some(5000 + 5000 / 16), ""),
            ],
        );
    }

    #[test]
    fn a_queue_seen_at_one_decision_only_holds_the_window_and_growth_resumes() {
        assert_spans(
            100_000,
            8000,
            &[
                // A window's worth per round trip; one late round trip (a busy host), then
                // clear ones: the window holds once, then doubles.
                (0, Some(20), 8000, 32_000, Some(8000), ""),
                (40, Some(10), 8000, 32_000, Some(16_000), ""),
                // A late round trip after a clear one is again a first sighting.
                (90, Some(20), 16_000, 64_000, Some(16_000), ""),
            ],
        );
    }

    #[test]
    fn what_was_read_before_a_span_began_is_not_counted_in_it() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 10_000);
        let rtt = path(10 * MS, t0, None);
        // The first return starts the span: the 5000 bytes it returns were read before.
        assert_eq!(t.next(t0, &rtt, 1000, 5000), Decision::default());
        // 400 bytes per round trip through 1000 (with the 5000: 1650, and it would double).
        assert_eq!(
            span(&mut t, t0, 40 * MS, Some(10 * MS), 1000, 1600).size,
            Some(1000)
        );
    }

    /// On a path of 100 µs: a return at `at` of `read` bytes through `window`, the latest
    /// round trip `latest` (answered at `at`).
    fn short(t: &mut Tuning, t0: Instant, at: Duration, window: u64, read: u64) -> Decision {
        let rtt = path(MS / 10, t0, Some((MS / 10, t0 + at)));
        t.next(t0 + at, &rtt, window, read)
    }

    #[test]
    fn a_queue_under_a_millisecond_is_not_taken_for_one_on_a_short_path() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 100_000);
        let rtt = |latest: Option<(Duration, Instant)>| path(MS / 10, t0, latest);
        t.next(t0, &rtt(None), 800, 0);
        // A short path's span is a millisecond at least: the probe goes halfway.
        assert!(!t.next(t0 + MS / 5, &rtt(None), 800, 2000).probe);
        assert!(t.next(t0 + MS / 2, &rtt(None), 800, 2000).probe);
        // 12000 bytes in 1.5 ms: 800 per round trip through 800, and a round trip of 1 ms,
        // ten times the path's: no queue. The window holds the sender back; on a short
        // path that is confirmed at a second decision before it doubles.
        let answered = rtt(Some((MS, t0 + MS / 2 + MS)));
        let d = t.next(t0 + 3 * MS / 2, &answered, 800, 8000);
        assert_eq!(d.size, Some(800), "a first sighting");
        assert!(t.next(t0 + 2 * MS, &answered, 800, 4000).probe);
        let answered = rtt(Some((MS, t0 + 3 * MS)));
        assert_eq!(
            t.next(t0 + 5 * MS / 2, &answered, 800, 4000).size,
            Some(1600)
        );
    }

    #[test]
    fn on_a_short_path_a_doubling_that_does_not_pay_goes_back_until_the_rate_rises() {
        let t0 = Instant::now();
        let mut t = Tuning::new(100, 100_000);
        short(&mut t, t0, Duration::ZERO, 800, 0);
        // 800 bytes per round trip through 800, at two decisions in a row: it doubles.
        assert!(short(&mut t, t0, MS / 2, 800, 4000).probe);
        assert_eq!(short(&mut t, t0, MS, 800, 4000).size, Some(800));
        assert!(short(&mut t, t0, 3 * MS / 2, 800, 4000).probe);
        assert_eq!(short(&mut t, t0, 2 * MS, 800, 4000).size, Some(1600));
        // A round trip later, a span at the same rate: the doubling did not pay, and the
        // window goes back, at every return until it is there.
        assert_eq!(short(&mut t, t0, 2 * MS + MS / 10, 1600, 0).size, None);
        assert!(short(&mut t, t0, 5 * MS / 2 + MS / 10, 1600, 4000).probe);
        assert_eq!(
            short(&mut t, t0, 3 * MS + MS / 10, 1600, 4000).size,
            Some(800)
        );
        assert_eq!(
            short(&mut t, t0, 3 * MS + MS / 5, 1400, 200).size,
            Some(800),
            "between decisions too"
        );
        // Still a window's worth per round trip, at the same rate: no second trial.
        let mut at = 3 * MS + MS / 10;
        for _ in 0..4 {
            assert!(short(&mut t, t0, at + MS / 2, 800, 4000).probe);
            at += MS;
            assert_eq!(short(&mut t, t0, at, 800, 4000).size, Some(800));
        }
        // Half as fast again: the ceiling gives way, and after a confirming decision the
        // window doubles.
        assert!(short(&mut t, t0, at + MS / 2, 800, 6000).probe);
        at += MS;
        assert_eq!(short(&mut t, t0, at, 800, 6000).size, Some(800));
        assert!(short(&mut t, t0, at + MS / 2, 800, 6000).probe);
        at += MS;
        assert_eq!(short(&mut t, t0, at, 800, 6000).size, Some(1600));
    }

    #[test]
    fn a_window_stays_when_the_link_not_the_window_is_the_limit() {
        // 400 bytes per round trip through a window of 1000: over a quarter, under half.
        assert_spans(10_000, 1000, &[(0, Some(10), 1000, 1600, Some(1000), "")]);
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
}
