//! Hedged calls: ask one peer, and the next if no answer came within a delay; the first
//! answer wins and the other calls are cancelled.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::calls_to;
use crate::connection::Connection;
use crate::error::{Error, Result};

/// How many answer times a learning [`Hedge`] keeps (the latest ones).
const SAMPLES: usize = 256;
/// How many new answer times make a learning [`Hedge`] compute its delay again.
const RECOMPUTE_EVERY: usize = 16;
/// The fewest answer times a learning [`Hedge`] needs before it trusts its percentile.
const MIN_SAMPLES: usize = 32;
/// How long a peer's answer time is remembered without news of it: a peer not heard of
/// for that long is tried first again, as a new one, so that one that was slow and
/// recovered is found out.
const FORGET_PEER_AFTER: Duration = Duration::from_secs(5);
/// Peers whose answer times a hedge remembers at most (the most recent ones).
const MAX_PEERS: usize = 1024;

/// Hedged calls to a set of replicas: the call goes to one peer, and to the next one if the
/// first has not answered after a delay (or failed before it); the first answer wins and
/// the other calls are cancelled (dropped: their handlers see the cancel). The delay is
/// fixed ([`Hedge::after`]) or learned: a percentile of the answer times this hedge saw
/// ([`Hedge::at_percentile`]; at the 95th, about 5 % of calls are sent twice). Keep one
/// `Hedge` per kind of call (its answer times are that call's), shared by every caller.
///
/// Peers are tried fastest first: each peer's answer time is remembered (a moving
/// average; a call that lost the race counts as at least as slow as it was when
/// cancelled), and a peer not heard of for 5 s is tried first again, as a new one, so a
/// replica that was slow and recovered is found out. Peers it knows nothing of keep the
/// order given, ahead of the others.
/// [`Hedge::in_given_order`] keeps the order given instead.
///
/// Only for calls that are safe to run twice, such as reads: a hedged call may run on two
/// peers. The delay is kept by tokio's timer, whose resolution is a millisecond: below a
/// few milliseconds, a hedge fires later than its delay, and so less often.
///
/// ```no_run
/// # async fn read(manager: grid::Manager, replicas: [&str; 2]) -> grid::Result<()> {
/// use std::time::Duration;
/// use grid::{Bytes, HandlerId};
/// const GET: HandlerId = HandlerId::new(3);
/// // Once, shared: learns the 95th percentile of GET's answer times (10 ms until it knows).
/// let hedge = grid::many::Hedge::at_percentile(0.95, Duration::from_millis(10));
/// let peers = replicas.iter().map(|r| manager.connection(r)).collect::<Result<Vec<_>, _>>()?;
/// let value = hedge
///     .call(peers, |c| async move { c.request(GET, Bytes::from_static(b"key")).await })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Hedge {
    delay: Delay,
    fastest_first: bool,
    learned: Mutex<Learned>,
}

#[derive(Clone, Copy, Debug)]
enum Delay {
    Fixed(Duration),
    Percentile { percentile: f64, initial: Duration },
}

/// The answer times a learning hedge saw, and the delay computed from them.
#[derive(Debug, Default)]
struct Learned {
    /// The latest answer times, in microseconds (a ring).
    times: Vec<u32>,
    next: usize,
    since_computed: usize,
    delay: Option<Duration>,
    /// Each peer's answer time (a moving average) and when it was last heard of.
    peers: HashMap<String, (Duration, Instant)>,
}

impl Learned {
    /// Keeps an answer time among the latest, and computes the delay again every
    /// [`RECOMPUTE_EVERY`] of them: `percentile` of the times kept.
    fn sample(&mut self, took: Duration, percentile: f64) {
        let micros = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        if self.times.len() < SAMPLES {
            self.times.push(micros);
        } else if let Some(slot) = self.times.get_mut(self.next) {
            *slot = micros;
        }
        self.next = (self.next + 1) % SAMPLES;
        self.since_computed += 1;
        if self.times.len() >= MIN_SAMPLES
            && (self.delay.is_none() || self.since_computed >= RECOMPUTE_EVERY)
        {
            self.since_computed = 0;
            let mut sorted = self.times.clone();
            sorted.sort_unstable();
            let rank = ((sorted.len() as f64) * percentile).ceil() as usize;
            let at = rank.saturating_sub(1).min(sorted.len().saturating_sub(1));
            self.delay = sorted
                .get(at)
                .map(|&us| Duration::from_micros(u64::from(us)));
        }
    }

    /// Folds an answer time of `peer` into its average.
    fn answered(&mut self, peer: &str, took: Duration, now: Instant) {
        let avg = match self.peers.get(peer) {
            Some(&(avg, _)) => (avg * 7 + took) / 8,
            None => took,
        };
        self.remember(peer, avg, now);
    }

    /// `peer` took at least `took` (it lost a race, or failed): it counts as at least that
    /// slow.
    fn at_least(&mut self, peer: &str, took: Duration, now: Instant) {
        let avg = self.peers.get(peer).map_or(took, |&(avg, _)| avg.max(took));
        self.remember(peer, avg, now);
    }

    fn remember(&mut self, peer: &str, avg: Duration, now: Instant) {
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(peer) {
            self.peers
                .retain(|_, (_, at)| now.duration_since(*at) < FORGET_PEER_AFTER);
            if self.peers.len() >= MAX_PEERS {
                return;
            }
        }
        self.peers.insert(peer.to_owned(), (avg, now));
    }

    /// A peer's answer time as it stands; `None` if unknown, or not heard of for long.
    fn time_of(&self, peer: &str, now: Instant) -> Option<Duration> {
        self.peers
            .get(peer)
            .filter(|(_, at)| now.duration_since(*at) < FORGET_PEER_AFTER)
            .map(|&(avg, _)| avg)
    }
}

/// What one hedged call did, for the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Hedged {
    /// Calls sent beyond the first.
    pub(crate) extra: usize,
    /// The answer came from a call beyond the first.
    pub(crate) won_by_extra: bool,
}

impl Hedge {
    /// Asks the next peer after a fixed `delay` without an answer.
    pub fn after(delay: Duration) -> Self {
        Self {
            delay: Delay::Fixed(delay),
            fastest_first: true,
            learned: Mutex::default(),
        }
    }

    /// Tries the peers in the order given to [`Hedge::call`] (the nearest replica first,
    /// say), not fastest first.
    #[must_use]
    pub fn in_given_order(mut self) -> Self {
        self.fastest_first = false;
        self
    }

    /// Asks the next peer once the call has taken longer than `percentile` (between 0.5
    /// and 0.999, clamped) of the answer times this hedge observed; `initial` until it has
    /// seen enough answers (32).
    pub fn at_percentile(percentile: f64, initial: Duration) -> Self {
        let percentile = if percentile.is_nan() {
            0.95
        } else {
            percentile.clamp(0.5, 0.999)
        };
        Self {
            delay: Delay::Percentile {
                percentile,
                initial,
            },
            fastest_first: true,
            learned: Mutex::default(),
        }
    }

    fn learned(&self) -> MutexGuard<'_, Learned> {
        self.learned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The delay after which the next peer is asked, as it stands now.
    pub fn delay(&self) -> Duration {
        self.delay_with(&self.learned())
    }

    /// [`Hedge::delay`], with the learned times at hand.
    fn delay_with(&self, l: &Learned) -> Duration {
        match self.delay {
            Delay::Fixed(d) => d,
            Delay::Percentile { initial, .. } => l.delay.unwrap_or(initial),
        }
    }

    /// Records an answer time (a learning hedge only), as a call answered in that time
    /// does.
    #[cfg(test)]
    pub(crate) fn observe(&self, took: Duration) {
        if let Delay::Percentile { percentile, .. } = self.delay {
            self.learned().sample(took, percentile);
        }
    }

    /// Makes `call` to the first of `peers`, then to the next each time the delay passes
    /// without an answer or a call fails, until one answers; the others are cancelled.
    ///
    /// # Errors
    /// The last error, if every peer failed; [`Error::Config`] if `peers` is empty.
    ///
    /// # Cancel safety
    /// Dropping the future cancels every call still running.
    pub async fn call<T, F, C>(
        &self,
        peers: impl IntoIterator<Item = Connection>,
        call: F,
    ) -> Result<T>
    where
        F: FnMut(Connection) -> C,
        C: IntoFuture<Output = Result<T>>,
    {
        let (attempts, core) = calls_to(peers, call);
        let (result, hedged) = self.race(attempts).await;
        if let Some(core) = core {
            core.fanout.hedged(hedged.extra, hedged.won_by_extra);
        }
        result
    }

    /// Runs `attempts` as a hedged call: fastest peer first (unless in the given order),
    /// each next one when the one before has not answered within the delay, or failed.
    /// Unstarted attempts are dropped unpolled.
    pub(crate) async fn race<T, Fut>(&self, mut attempts: Vec<(String, Fut)>) -> (Result<T>, Hedged)
    where
        Fut: Future<Output = Result<T>>,
    {
        if self.fastest_first {
            let l = self.learned();
            let now = Instant::now();
            // Stable: unknown peers (ZERO) first, in the order given.
            attempts.sort_by_key(|(peer, _)| l.time_of(peer, now).unwrap_or(Duration::ZERO));
        }
        let mut waiting = attempts.into_iter().enumerate();
        let mut running = FuturesUnordered::new();
        // Each started attempt's peer and start.
        let mut started: Vec<(String, Instant)> = Vec::new();
        let mut report = Hedged::default();
        let mut last_error = None;
        let start = |running: &mut FuturesUnordered<_>,
                     started: &mut Vec<(String, Instant)>,
                     (i, (peer, fut)): (usize, (String, Fut))| {
            started.push((peer, Instant::now()));
            running.push(async move { (i, fut.await) });
        };
        let Some(first) = waiting.next() else {
            let none = Error::Config("a hedged call needs at least one peer".into());
            return (Err(none), report);
        };
        start(&mut running, &mut started, first);
        let mut next_at = Instant::now() + self.delay();
        loop {
            let more = waiting.len() > 0;
            tokio::select! {
                Some((i, result)) = running.next() => match result {
                    Ok(answer) => {
                        self.settle(&started, i, true);
                        report.won_by_extra = i > 0;
                        return (Ok(answer), report);
                    }
                    Err(e) => {
                        self.settle(&started, i, false);
                        last_error = Some(e);
                        if let Some(next) = waiting.next() {
                            report.extra += 1;
                            start(&mut running, &mut started, next);
                            next_at = Instant::now() + self.delay();
                        } else if running.is_empty() {
                            let err = last_error.unwrap_or(Error::Cancelled);
                            return (Err(err), report);
                        }
                    }
                },
                () = tokio::time::sleep_until(next_at), if more => {
                    if let Some(next) = waiting.next() {
                        report.extra += 1;
                        start(&mut running, &mut started, next);
                        next_at = Instant::now() + self.delay();
                    }
                }
                else => return (Err(last_error.unwrap_or(Error::Cancelled)), report),
            }
        }
    }

    /// Learns from attempt `i` ending (answered or failed); when it answered, the others
    /// still running lose and count as at least as slow as they were.
    fn settle(&self, started: &[(String, Instant)], i: usize, answered: bool) {
        let now = Instant::now();
        let Some((peer, began)) = started.get(i) else {
            return;
        };
        let took = now.duration_since(*began);
        let mut l = self.learned();
        if answered {
            if let Delay::Percentile { percentile, .. } = self.delay {
                l.sample(took, percentile);
            }
            l.answered(peer, took, now);
            for (j, (loser, began)) in started.iter().enumerate() {
                if j != i {
                    l.at_least(loser, now.duration_since(*began), now);
                }
            }
        } else {
            // A failing peer goes after those that answer within the delay.
            let delay = self.delay_with(&l);
            l.at_least(peer, took.max(delay * 2), now);
        }
    }
}
