//! The window-size decisions, stepped on a made-up clock: spans of reads and the round
//! trips measured in them, and the sizes decided.

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

#[test]
fn on_a_short_path_a_window_covers_the_hosts_delay_and_grows_without_a_probe() {
    let t0 = Instant::now();
    let mut t = Tuning::new(100, 100_000);
    // A path of 100 µs counts as 100 µs plus the hosts' delay; a span is four of those.
    // Its latest round trip shows a queue of 10 ms, which a short path does not look at.
    let p = MS / 10;
    let round = p + HOST_DELAY;
    let rtt = path(p, t0, Some((10 * MS, t0)));
    t.next(t0, &rtt, 800, 0);
    assert_eq!(t.next(t0 + 2 * round, &rtt, 800, 500), Decision::default());
    // 2000 bytes in the span: 500 per (host) round trip, more than half the window of 800
    // (per path round trip it would be 24, a quiet stream). No probe went: the
    // window doubles at once.
    assert_eq!(t.next(t0 + 4 * round - MS / 10, &rtt, 800, 0).size, None);
    assert_eq!(t.next(t0 + 4 * round, &rtt, 800, 1500).size, Some(1600));
    // What the growth grants comes back as data a round trip later: the next span starts
    // then. The same rate through twice the window: the link, not the window, is the
    // limit, and it stays.
    assert_eq!(t.next(t0 + 5 * round, &rtt, 1600, 500).size, None);
    assert_eq!(t.next(t0 + 9 * round, &rtt, 1600, 2000).size, Some(1600));
    // Twice as fast: it doubles again.
    assert_eq!(t.next(t0 + 13 * round, &rtt, 1600, 4000).size, Some(3200));
    // Then nearly quiet: 100 bytes in a span (four host round trips): it halves, back
    // towards its start.
    assert_eq!(t.next(t0 + 14 * round, &rtt, 3200, 0).size, None);
    assert_eq!(t.next(t0 + 18 * round, &rtt, 3200, 100).size, Some(1600));
}

#[test]
fn a_path_shorter_than_the_hosts_delay_is_sized_for_them_too_and_probed_for_a_queue() {
    // A path of a millisecond and a half: not short (it is probed, as a link that queues
    // must be: a window that grew without looking filled a 1 Gbit/s link of 1.5 ms with 9
    // ms of queue), but what it measures per round trip counts the hosts' delay too.
    let t0 = Instant::now();
    let mut t = Tuning::new(100, 100_000);
    let p = 3 * MS / 2;
    let round = p + HOST_DELAY;
    let rtt = path(p, t0, None);
    t.next(t0, &rtt, 800, 0);
    let d = t.next(t0 + 2 * round, &rtt, 800, 500);
    assert!(d.probe && d.size.is_none(), "{d:?}");
    // The probe comes back after the path's round trip: no queue. 2000 bytes in the span,
    // 500 per (path and hosts) round trip, more than half the window: it doubles.
    let answered = path(p, t0, Some((p, t0 + 2 * round + p)));
    assert_eq!(
        t.next(t0 + 4 * round, &answered, 800, 1500).size,
        Some(1600)
    );
}

#[test]
fn a_path_as_long_as_the_hosts_delay_is_probed_for_a_queue() {
    let t0 = Instant::now();
    let mut t = Tuning::new(100, 100_000);
    let rtt = path(HOST_DELAY, t0, None);
    t.next(t0, &rtt, 800, 0);
    // Halfway through a span of four round trips of the path (not of path and hosts).
    let d = t.next(t0 + 2 * HOST_DELAY, &rtt, 800, 500);
    assert!(d.probe && d.size.is_none(), "{d:?}");
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
