//! The quorum and hedge logic on tokio's paused clock, with sub-calls that are timers: who
//! is started, answered and cancelled when, and what is returned. No engine, no socket.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::gather::gather;
use super::hedge::Hedged;
use super::Hedge;
use crate::error::{Error, Execution, Result};

/// A sub-call's peer, what happened to it, and when (virtual ms since the start).
type Event = (String, &'static str, u64);

/// What happened to each sub-call, and when.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Event>>>);

impl Log {
    fn push(&self, peer: &str, what: &'static str, at: u64) {
        self.0
            .lock()
            .expect("log")
            .push((peer.to_owned(), what, at));
    }

    fn events(&self) -> Vec<Event> {
        self.0.lock().expect("log").clone()
    }

    /// When `peer`'s sub-call did `what`, if it did.
    fn at(&self, peer: &str, what: &str) -> Option<u64> {
        self.events()
            .into_iter()
            .find(|(p, w, _)| p == peer && *w == what)
            .map(|(_, _, at)| at)
    }
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// Logs a sub-call dropped before it ended as cancelled.
struct Watch {
    log: Log,
    peer: String,
    t0: Instant,
    ended: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.ended {
            self.log.push(&self.peer, "cancelled", ms(self.t0));
        }
    }
}

/// A sub-call to `peer` that ends with `result` after `after` ms.
fn call(
    log: &Log,
    t0: Instant,
    peer: &str,
    after: u64,
    result: Result<u32>,
) -> (String, impl Future<Output = Result<u32>>) {
    let (log, name) = (log.clone(), peer.to_owned());
    let fut = async move {
        log.push(&name, "started", ms(t0));
        let mut watch = Watch {
            log: log.clone(),
            peer: name.clone(),
            t0,
            ended: false,
        };
        tokio::time::sleep(Duration::from_millis(after)).await;
        watch.ended = true;
        log.push(
            &name,
            if result.is_ok() { "answered" } else { "failed" },
            ms(t0),
        );
        result
    };
    (peer.to_owned(), fut)
}

#[tokio::test(start_paused = true)]
async fn a_quorum_of_2_of_3_returns_at_the_second_answer_and_cancels_the_third_then() {
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![
        call(&log, t0, "a", 10, Ok(1)),
        call(&log, t0, "b", 20, Ok(2)),
        call(&log, t0, "c", 1000, Ok(3)),
    ];
    let q = gather(calls, 2).await.expect("met");
    assert_eq!(ms(t0), 20);
    assert_eq!(q.answers, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
    assert!(q.failures.is_empty());
    assert_eq!(q.cancelled, ["c"]);
    assert_eq!(log.at("c", "started"), Some(0));
    assert_eq!(log.at("c", "cancelled"), Some(20));
    assert_eq!(log.at("c", "answered"), None);
}

#[tokio::test(start_paused = true)]
async fn failures_before_the_quorum_are_returned_with_their_peers() {
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![
        call(&log, t0, "a", 5, Err(Error::Busy("full".into()))),
        call(&log, t0, "b", 10, Ok(2)),
        call(&log, t0, "c", 15, Ok(3)),
    ];
    let q = gather(calls, 2).await.expect("met");
    assert_eq!(ms(t0), 15);
    assert_eq!(q.answers, [("b".to_owned(), 2), ("c".to_owned(), 3)]);
    assert_eq!(q.failures, [("a".to_owned(), Error::Busy("full".into()))]);
    assert!(q.cancelled.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_quorum_fails_as_soon_as_it_cannot_be_met_and_cancels_the_rest() {
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![
        call(&log, t0, "a", 5, Err(Error::NOT_SENT)),
        call(&log, t0, "b", 10, Err(Error::Draining("leaving".into()))),
        call(&log, t0, "c", 100, Ok(3)),
    ];
    let err = gather(calls, 2).await.expect_err("cannot be met");
    assert_eq!(ms(t0), 10, "fails at the second failure, not at c's answer");
    assert_eq!(log.at("c", "cancelled"), Some(10));
    let Error::NoQuorum(q) = &err else {
        panic!("expected NoQuorum, got {err:?}");
    };
    assert_eq!((q.needed, q.given), (2, 3));
    assert!(q.answered.is_empty());
    assert_eq!(q.failures.len(), 2);
    assert_eq!(q.failures[0].0, "a");
    // Nobody answered and neither failure ran: the whole call did not run.
    assert_eq!(err.execution(), Execution::NotExecuted);
    let text = err.to_string();
    assert!(text.contains("0 of 3 peers answered, 2 needed"), "{text}");
    assert!(text.contains("b: the peer is draining"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_quorum_with_an_answer_may_have_executed() {
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![
        call(&log, t0, "a", 5, Ok(1)),
        call(&log, t0, "b", 10, Err(Error::NOT_SENT)),
        call(&log, t0, "c", 15, Err(Error::DeadlineExceeded)),
    ];
    let err = gather(calls, 2).await.expect_err("two failed");
    let Error::NoQuorum(q) = &err else {
        panic!("expected NoQuorum, got {err:?}");
    };
    assert_eq!(q.answered, ["a"]);
    assert_eq!(err.execution(), Execution::MayHaveExecuted);
}

#[tokio::test(start_paused = true)]
async fn fewer_peers_than_needed_fail_at_once_and_no_peer_is_called() {
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![call(&log, t0, "a", 5, Ok(1)), call(&log, t0, "b", 5, Ok(2))];
    let err = gather(calls, 3).await.expect_err("too few");
    assert_eq!(ms(t0), 0);
    assert!(matches!(&err, Error::NoQuorum(q) if q.given == 2 && q.needed == 3));
    assert!(log.events().is_empty(), "{:?}", log.events());
    // A quorum of none is met at once, calling nobody.
    let calls = vec![call(&log, t0, "a", 5, Ok(1))];
    let q = gather(calls, 0).await.expect("nothing needed");
    assert!(q.answers.is_empty());
    assert!(log.events().is_empty());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_quorum_cancels_every_call_still_running() {
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![
        call(&log, t0, "a", 5, Ok(1)),
        call(&log, t0, "b", 50, Ok(2)),
        call(&log, t0, "c", 50, Ok(3)),
    ];
    let out = tokio::time::timeout(Duration::from_millis(20), gather(calls, 2)).await;
    assert!(out.is_err());
    assert_eq!(log.at("a", "answered"), Some(5));
    assert_eq!(log.at("b", "cancelled"), Some(20));
    assert_eq!(log.at("c", "cancelled"), Some(20));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_answered_in_time_asks_nobody_else() {
    let (log, t0) = (Log::default(), Instant::now());
    let hedge = Hedge::after(Duration::from_millis(10));
    let calls = vec![call(&log, t0, "a", 5, Ok(1)), call(&log, t0, "b", 1, Ok(2))];
    let (r, report) = hedge.race(calls).await;
    assert_eq!(r.expect("answer"), 1);
    assert_eq!(report, Hedged::default());
    assert_eq!(log.at("b", "started"), None, "b was never called");
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_peer_is_hedged_after_the_delay_and_the_loser_cancelled() {
    let (log, t0) = (Log::default(), Instant::now());
    let hedge = Hedge::after(Duration::from_millis(10));
    let calls = vec![
        call(&log, t0, "a", 100, Ok(1)),
        call(&log, t0, "b", 5, Ok(2)),
    ];
    let (r, report) = hedge.race(calls).await;
    assert_eq!(r.expect("answer"), 2);
    assert_eq!(ms(t0), 15);
    assert_eq!(log.at("b", "started"), Some(10));
    assert_eq!(log.at("a", "cancelled"), Some(15));
    assert_eq!(
        report,
        Hedged {
            extra: 1,
            won_by_extra: true
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_asks_the_next_peer_at_once_and_every_failure_returns_the_last() {
    let (log, t0) = (Log::default(), Instant::now());
    let hedge = Hedge::after(Duration::from_millis(50));
    let calls = vec![
        call(&log, t0, "a", 3, Err(Error::NOT_SENT)),
        call(&log, t0, "b", 5, Ok(2)),
    ];
    let (r, _) = hedge.race(calls).await;
    assert_eq!(r.expect("answer"), 2);
    assert_eq!(log.at("b", "started"), Some(3));
    assert_eq!(ms(t0), 8);

    let hedge = Hedge::after(Duration::from_millis(50));
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![
        call(&log, t0, "a", 3, Err(Error::NOT_SENT)),
        call(&log, t0, "b", 5, Err(Error::DeadlineExceeded)),
    ];
    let (r, report) = hedge.race(calls).await;
    assert_eq!(r.expect_err("all failed"), Error::DeadlineExceeded);
    assert_eq!(report.extra, 1);
    let (r, _) = hedge
        .race(Vec::<(String, std::future::Ready<Result<u32>>)>::new())
        .await;
    assert!(matches!(r, Err(Error::Config(_))));
}

#[tokio::test(start_paused = true)]
async fn a_learning_hedge_waits_for_the_percentile_of_the_answer_times_it_saw() {
    let hedge = Hedge::at_percentile(0.9, Duration::from_millis(50));
    assert_eq!(hedge.delay(), Duration::from_millis(50));
    for i in 1..=31 {
        hedge.observe(Duration::from_millis(i));
    }
    assert_eq!(
        hedge.delay(),
        Duration::from_millis(50),
        "too few answers yet"
    );
    for i in 32..=100 {
        hedge.observe(Duration::from_millis(i));
    }
    // Recomputed every 16 answers: at the 96th, over 1..=96 ms, the 90th percentile.
    assert_eq!(hedge.delay(), Duration::from_millis(87));
    // Only the latest answers count: the times drop, and so does the delay.
    for _ in 0..256 {
        hedge.observe(Duration::from_millis(2));
    }
    assert_eq!(hedge.delay(), Duration::from_millis(2));
    // A hedged call's answer time is learned from the call that answered (b, 7 ms after
    // it was asked), once enough of them are among the latest.
    let (log, t0) = (Log::default(), Instant::now());
    for _ in 0..64 {
        let calls = vec![
            call(&log, t0, "a", 1000, Ok(1)),
            call(&log, t0, "b", 7, Ok(2)),
        ];
        let (r, _) = hedge.race(calls).await;
        assert_eq!(r.expect("answer"), 2);
    }
    assert_eq!(hedge.delay(), Duration::from_millis(7));
    // A fixed hedge learns nothing.
    let fixed = Hedge::after(Duration::from_millis(5));
    fixed.observe(Duration::from_secs(1));
    assert_eq!(fixed.delay(), Duration::from_millis(5));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_tries_the_fastest_peer_first_and_finds_out_one_that_recovered() {
    let hedge = Hedge::after(Duration::from_millis(10));
    // Nothing known: the order given, a first; b answers the hedge.
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![
        call(&log, t0, "a", 50, Ok(1)),
        call(&log, t0, "b", 2, Ok(2)),
    ];
    assert_eq!(hedge.race(calls).await.0.expect("answer"), 2);
    assert_eq!(log.at("a", "cancelled"), Some(12));
    // Now b is known fast and a at least 12 ms: b first, answered in time, a never asked.
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![
        call(&log, t0, "a", 50, Ok(1)),
        call(&log, t0, "b", 2, Ok(2)),
    ];
    let (r, report) = hedge.race(calls).await;
    assert_eq!((r.expect("answer"), report.extra), (2, 0));
    assert_eq!(log.at("a", "started"), None);
    // Not heard of for over 5 s, both are new again: a is tried first, and has recovered.
    tokio::time::advance(Duration::from_secs(6)).await;
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![call(&log, t0, "a", 1, Ok(1)), call(&log, t0, "b", 2, Ok(2))];
    assert_eq!(hedge.race(calls).await.0.expect("answer"), 1);
    assert_eq!(log.at("b", "started"), None);
    // In the order given, whatever is known.
    let given = Hedge::after(Duration::from_millis(10)).in_given_order();
    for _ in 0..2 {
        let (log, t0) = (Log::default(), Instant::now());
        let calls = vec![
            call(&log, t0, "a", 50, Ok(1)),
            call(&log, t0, "b", 2, Ok(2)),
        ];
        assert_eq!(given.race(calls).await.0.expect("answer"), 2);
        assert_eq!(log.at("a", "started"), Some(0));
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_peer_goes_after_the_ones_that_answer() {
    let hedge = Hedge::after(Duration::from_millis(10));
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![
        call(&log, t0, "a", 1, Err(Error::NOT_SENT)),
        call(&log, t0, "b", 3, Ok(2)),
    ];
    assert_eq!(hedge.race(calls).await.0.expect("answer"), 2);
    let (log, t0) = (Log::default(), Instant::now());
    let calls = vec![call(&log, t0, "a", 1, Ok(1)), call(&log, t0, "b", 3, Ok(2))];
    assert_eq!(hedge.race(calls).await.0.expect("answer"), 2);
    assert_eq!(log.at("b", "started"), Some(0));
    assert_eq!(log.at("a", "started"), None);
}

/// What a quorum of `needed` over sub-calls ending after `delays` ms (distinct) with
/// `oks` should do: the answers and failures (peer indexes, in the order they came), the
/// peers cancelled, when it returns, and whether it was met.
fn expected(
    delays: &[u64],
    oks: &[bool],
    needed: usize,
) -> (Vec<usize>, Vec<usize>, Vec<usize>, u64, bool) {
    let n = delays.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| delays[i]);
    let (mut answers, mut failures, mut at) = (Vec::new(), Vec::new(), 0);
    for &i in &order {
        if answers.len() >= needed || answers.len() + (n - answers.len() - failures.len()) < needed
        {
            break;
        }
        at = delays[i];
        if oks[i] {
            answers.push(i);
        } else {
            failures.push(i);
        }
    }
    let cancelled = (0..n)
        .filter(|i| !answers.contains(i) && !failures.contains(i))
        .collect();
    let met = answers.len() >= needed;
    (answers, failures, cancelled, at, met)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Any quorum over sub-calls that answer or fail at random (distinct) times returns
    /// exactly when the `needed`-th answer comes or when that can no longer happen, with
    /// the answers and failures seen until then, every other sub-call cancelled at that
    /// moment, and never a sub-call left running.
    #[test]
    fn a_quorum_returns_when_it_is_decided_and_cancels_the_rest(
        calls in proptest::collection::vec((0u64..50, proptest::bool::ANY), 0..8),
        needed in 0usize..9,
    ) {
        let n = calls.len() as u64;
        let delays: Vec<u64> = calls.iter().enumerate().map(|(i, (d, _))| d * n.max(1) + i as u64 + 1).collect();
        let oks: Vec<bool> = calls.iter().map(|(_, ok)| *ok).collect();
        let (answers, failures, cancelled, at, met) = expected(&delays, &oks, needed);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (log, t0) = (Log::default(), Instant::now());
            let subs: Vec<_> = (0..delays.len())
                .map(|i| {
                    let r = if oks[i] { Ok(i as u32) } else { Err(Error::Busy(format!("{i}"))) };
                    call(&log, t0, &i.to_string(), delays[i], r)
                })
                .collect();
            let out = gather(subs, needed).await;
            assert_eq!(ms(t0), at);
            let names = |v: &[usize]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
            match out {
                Ok(q) => {
                    assert!(met);
                    assert_eq!(q.answers.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), names(&answers));
                    assert_eq!(q.failures.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), names(&failures));
                    let mut c = q.cancelled.clone();
                    c.sort_by_key(|p| p.parse::<usize>().unwrap_or(0));
                    assert_eq!(c, names(&cancelled));
                }
                Err(Error::NoQuorum(q)) => {
                    assert!(!met);
                    assert_eq!(q.answered, names(&answers));
                    assert_eq!(q.failures.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), names(&failures));
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
            // Each sub-call that was left was cancelled then, or never started (nothing
            // started when fewer peers than needed were given, or none was needed).
            for i in cancelled {
                let p = i.to_string();
                match log.at(&p, "started") {
                    Some(_) => assert_eq!(log.at(&p, "cancelled"), Some(at)),
                    None => assert!(log.at(&p, "cancelled").is_none()),
                }
            }
        });
    }
}
