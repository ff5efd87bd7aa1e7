//! The load: callers of single calls and callers of streams, each checking its answers.

use std::future::{Future, IntoFuture};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use grid::{Connection, Error};
use tokio::time::{sleep, timeout, Instant};

use crate::payload::{call_size, describe, message, payload, Rng, HEADER};
use crate::tally::{bump, Tally};
use crate::world::World;
use crate::{ECHO, LATE, NODES, SLACK, SLOW, STREAM_ECHO};

/// A caller of single calls, until the run stops.
pub(crate) async fn caller(w: Arc<World>, mut r: Rng) {
    while !w.stopping() {
        let (from, to) = pair(&mut r);
        let conn = w.connection(from, to);
        let seed = r.next();
        let slow = r.chance(25);
        let (handler, body, deadline) = if slow {
            let len = r.range(HEADER as u64, 512) as usize;
            (SLOW, payload(seed, len), r.millis(300, 2000))
        } else {
            (ECHO, payload(seed, call_size(&mut r)), r.millis(1000, 5000))
        };
        let give_up = r
            .chance(8)
            .then(|| r.millis(1, deadline.as_millis() as u64));
        let what = format!(
            "{} -> {}: {} call of {} bytes (seed {seed:#x}, deadline {} ms)",
            NODES[from],
            NODES[to],
            if slow { "slow" } else { "echo" },
            body.len(),
            deadline.as_millis()
        );
        let started = Instant::now();
        let call = conn
            .request(handler, body.clone())
            .deadline(deadline)
            .into_future();
        let result = match give_up {
            Some(after) => match timeout(after, call).await {
                Ok(result) => result,
                Err(_) => {
                    bump(&w.tally.calls_given_up);
                    continue;
                }
            },
            None => match within_slack(&w, &what, deadline, call).await {
                Some(result) => result,
                None => return,
            },
        };
        if started.elapsed() > deadline + LATE {
            bump(&w.tally.calls_late);
        }
        match result {
            Ok(Some(answer)) if answer == body => {
                bump(&w.tally.calls_ok);
                w.tally.call_bytes.fetch_add(body.len() as u64, Relaxed);
            }
            Ok(answer) => {
                bump(&w.tally.wrong);
                w.fatal(format!(
                    "WRONG ANSWER: {what} was answered with {}",
                    describe(answer.as_deref())
                ));
                return;
            }
            Err(e) if expected(&e) => {
                w.tally.calls_failed.add(kind(&e));
                w.log_unusual(&e, (from, to), || what.clone());
                if matches!(e, Error::Disconnected { .. }) {
                    // A caller would wait a moment before trying again.
                    sleep(r.millis(10, 50)).await;
                }
            }
            Err(e) => {
                bump(&w.tally.unexpected);
                w.fatal(format!("UNEXPECTED ERROR: {what} failed with {e:?}"));
                return;
            }
        }
    }
}

/// How a stream ended.
pub(crate) enum Ended {
    /// Every echo arrived, in order, and the stream ended cleanly.
    Complete,
    /// The caller dropped it part way, as planned.
    GivenUp,
    /// It failed with this error after this many echoes.
    Failed(Error, u64),
    Wrong(String),
}

/// Opens a stream, sends `n` messages and reads their echoes, concurrently; gives it up
/// after `give_up_at` echoes if set.
pub(crate) async fn run_stream(
    conn: &Connection,
    seed: u64,
    n: u64,
    deadline: Duration,
    give_up_at: Option<u64>,
    tally: &Tally,
) -> Ended {
    let opened = conn
        .open_stream(STREAM_ECHO, payload(seed, 16))
        .deadline(deadline)
        .await;
    let (mut requests, mut responses) = match opened.and_then(grid::Stream::split) {
        Ok(ends) => ends,
        Err(e) => return Ended::Failed(e, 0),
    };
    let send = async move {
        for i in 0..n {
            requests.send(message(seed, i)).await?;
        }
        requests.finish().await
    };
    let receive = async {
        for i in 0..n {
            if give_up_at == Some(i) {
                return Ended::GivenUp;
            }
            match responses.next().await {
                Some(Ok(m)) if m == message(seed, i) => bump(&tally.echoes),
                Some(Ok(m)) => {
                    return Ended::Wrong(format!(
                        "echo {i} of {n} is {}, expected {}",
                        describe(Some(&m[..])),
                        describe(Some(&message(seed, i)[..]))
                    ))
                }
                Some(Err(e)) => return Ended::Failed(e, i),
                None => {
                    return Ended::Wrong(format!(
                        "the stream ended cleanly after {i} of {n} echoes"
                    ))
                }
            }
        }
        match responses.next().await {
            None => Ended::Complete,
            Some(Err(e)) => Ended::Failed(e, n),
            Some(Ok(m)) => Ended::Wrong(format!(
                "an echo beyond the {n} sent: {}",
                describe(Some(&m[..]))
            )),
        }
    };
    tokio::pin!(send, receive);
    let mut sent = None;
    let ended = loop {
        tokio::select! {
            s = &mut send, if sent.is_none() => sent = Some(s),
            ended = &mut receive => break ended,
        }
    };
    match (ended, sent) {
        (Ended::Complete, Some(Err(e))) => Ended::Wrong(format!(
            "every echo arrived and the stream ended cleanly, but the sender failed: {e:?}"
        )),
        (ended, _) => ended,
    }
}

/// A caller of streams, until the run stops.
pub(crate) async fn streamer(w: Arc<World>, mut r: Rng) {
    while !w.stopping() {
        let (from, to) = pair(&mut r);
        let conn = w.connection(from, to);
        let seed = r.next();
        let n = r.range(20, 300);
        let deadline = r.millis(5000, 15000);
        let give_up_at = r.chance(10).then(|| r.below(n));
        let what = format!(
            "{} -> {}: stream of {n} messages (seed {seed:#x}, deadline {} ms)",
            NODES[from],
            NODES[to],
            deadline.as_millis()
        );
        let started = Instant::now();
        let run = run_stream(&conn, seed, n, deadline, give_up_at, &w.tally);
        let Some(ended) = within_slack(&w, &what, deadline, run).await else {
            return;
        };
        if started.elapsed() > deadline + LATE {
            bump(&w.tally.streams_late);
        }
        match ended {
            Ended::Complete => bump(&w.tally.streams_ok),
            Ended::GivenUp => bump(&w.tally.streams_given_up),
            Ended::Failed(e, echoes) if expected(&e) => {
                w.tally.streams_failed.add(kind(&e));
                w.log_unusual(&e, (from, to), || {
                    format!(
                        "{what}: {echoes} echoes in {} ms, then",
                        started.elapsed().as_millis()
                    )
                });
                if matches!(e, Error::Disconnected { .. }) {
                    sleep(r.millis(10, 50)).await;
                }
            }
            Ended::Failed(e, echoes) => {
                bump(&w.tally.unexpected);
                w.fatal(format!(
                    "UNEXPECTED ERROR: {what} failed after {echoes} echoes with {e:?}"
                ));
                return;
            }
            Ended::Wrong(why) => {
                bump(&w.tally.wrong);
                w.fatal(format!("WRONG ANSWER: {what}: {why}"));
                return;
            }
        }
    }
}

/// Awaits `what`, a call or stream with this deadline, for up to [`SLACK`] past it. If it
/// has not ended by then, that is a hang: recorded as fatal, and `None`.
async fn within_slack<T>(
    w: &World,
    what: &str,
    deadline: Duration,
    ends: impl Future<Output = T>,
) -> Option<T> {
    match timeout(deadline + SLACK, ends).await {
        Ok(ended) => Some(ended),
        Err(_) => {
            bump(&w.tally.hangs);
            w.fatal(format!(
                "HANG: {what} had not ended {} s after its deadline",
                SLACK.as_secs()
            ));
            None
        }
    }
}

/// An error's kind, by which failures are counted.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::Disconnected { .. } => "Disconnected",
        Error::DeadlineExceeded => "DeadlineExceeded",
        Error::Cancelled => "Cancelled",
        Error::Unreachable(_) => "Unreachable",
        Error::StreamEnded => "StreamEnded",
        Error::Busy(_) => "Busy",
        Error::Remote(_) => "Remote",
        Error::Protocol(_) => "Protocol",
        Error::Closed => "Closed",
        _ => "other",
    }
}

/// The errors a call may end with when links fail.
fn expected(e: &Error) -> bool {
    matches!(
        e,
        Error::Disconnected { .. }
            | Error::DeadlineExceeded
            | Error::Cancelled
            | Error::Unreachable(_)
    )
}

/// Two different nodes.
fn pair(r: &mut Rng) -> (usize, usize) {
    let from = r.below(NODES.len() as u64) as usize;
    let to = (from + 1 + r.below(NODES.len() as u64 - 1) as usize) % NODES.len();
    (from, to)
}
