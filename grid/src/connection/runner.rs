//! The task behind every connection: get a socket (dial, or wait for the peer to dial in),
//! run a session on it until it dies, and start over, until the manager shuts down.
//!
//! A graceful shutdown drains first (`engine/drain.rs`): once the node starts leaving, no
//! new socket is made or taken, and the live session tells the peer, admits nothing new
//! from it and closes as soon as nothing is in flight and the peer has read that (or when
//! the shutdown's drain deadline passes). A peer that says it is leaving shows as [`State::Draining`] here.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::dial::dial;
use super::handshake::Accepted;
use super::lost::Lost;
use super::reader::read_loop;
use super::writer::write_loop;
use super::{ConnInner, State};
use crate::codec::Close;
use crate::engine::Engine;
use crate::error::Error;
use crate::session::Session;

/// How long a closing session waits for its writer to send the close frame: a peer that
/// does not read is not waited for.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

enum End {
    /// The socket died, or the peer broke the protocol.
    Lost(Lost),
    /// The peer dialed in again while this session was up: switch to the new socket.
    Replaced(Box<Accepted>),
    /// The manager is shutting down.
    Shutdown,
}

/// A session whose socket was lost, its open streams kept for the same peer instance to
/// come back before `until` (`engine/resume.rs`).
struct Held {
    session: Arc<Session>,
    instance: Uuid,
    until: Instant,
}

/// Runs a held session's timers (its streams' deadlines) until its grace period is over;
/// never resolves without one.
async fn hold(held: Option<&Held>) {
    let Some(held) = held else {
        return std::future::pending().await;
    };
    loop {
        let due = Instant::from_std(held.session.with(|e| e.poll_timeout()));
        if due >= held.until {
            tokio::time::sleep_until(held.until).await;
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(due) => {
                let now = Instant::now().into_std();
                let _ = held.session.with(|e| e.handle_timeout(now));
            }
            () = held.session.timer.notified() => {}
        }
    }
}

/// Ends a held session: its streams fail as lost.
fn let_go(inner: &ConnInner, held: Held, why: &str) {
    tracing::info!(local = %inner.core.local, remote = %inner.remote, why, "streams kept for the peer fail");
    if inner
        .current_session()
        .is_some_and(|s| Arc::ptr_eq(&s, &held.session))
    {
        inner.set_session(None);
    }
    held.session
        .close(Error::LOST, Close::new(Close::NORMAL, "closing"));
}

pub(crate) async fn run(
    inner: Arc<ConnInner>,
    mut incoming: mpsc::Receiver<Box<Accepted>>,
    after: Option<super::Connection>,
) {
    let core = inner.core.clone();
    if let Some(before) = after {
        // The same peer's previous connection still drains: a socket dialed now would
        // replace its socket at the peer, and fail the calls finishing there. (It ends at
        // its drain timeout at the latest, or at once when the node shuts down; waited for
        // even if this one is removed meanwhile, so that a chain of removals and additions
        // starts one connection at a time.)
        before.wait_shut().await;
    }
    let mut attempt: u32 = 0;
    let mut next: Option<Accepted> = None;
    let mut connected_before = false;
    let mut held: Option<Held> = None;
    loop {
        if inner.is_leaving() {
            break;
        }
        let accepted = if let Some(a) = next.take() {
            a
        } else if inner.dialer {
            inner.set_state(State::Connecting);
            let dialed = tokio::select! {
                // Boxed: the dial (TCP, TLS, upgrade, handshake) is most of this task's
                // state, and a connection spends its life elsewhere (12 KB → 2 KB per
                // connection task).
                r = Box::pin(dial(&inner)) => r,
                _ = inner.starts_leaving() => break,
                () = hold(held.as_ref()) => {
                    if let Some(h) = held.take() { let_go(&inner, h, "the grace period passed"); }
                    continue;
                }
            };
            match dialed {
                Ok(a) => a,
                Err(e) => {
                    let why = e.to_string();
                    let refused = matches!(e, Error::Rejected(_));
                    if inner.set_error(e) {
                        tracing::warn!(local = %core.local, remote = %inner.remote, error = %why, "connection failed");
                    }
                    inner.set_state(State::ConnectionError);
                    let delay = retry_delay(&core.config, attempt, refused);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = inner.starts_leaving() => break,
                        () = hold(held.as_ref()) => {
                            if let Some(h) = held.take() { let_go(&inner, h, "the grace period passed"); }
                            continue;
                        }
                    }
                }
            }
        } else {
            tokio::select! {
                a = incoming.recv() => match a { Some(a) => *a, None => break },
                _ = inner.starts_leaving() => break,
                () = hold(held.as_ref()) => {
                    if let Some(h) = held.take() { let_go(&inner, h, "the grace period passed"); }
                    continue;
                }
            }
        };
        attempt = 0;
        if connected_before {
            inner
                .counters
                .reconnects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        connected_before = true;
        note_instance(&inner, accepted.instance);
        tracing::info!(local = %core.local, remote = %inner.remote, "connected");
        let resumed = match held.take() {
            Some(h) if h.instance == accepted.instance => Some(h.session),
            Some(h) => {
                let_go(&inner, h, "the peer restarted");
                None
            }
            None => None,
        };
        let (end, kept) = run_session(&inner, accepted, &mut incoming, resumed).await;
        if let Some(session) = kept {
            let instance = inner.remote_instance.borrow().unwrap_or_default();
            held = Some(Held {
                session,
                instance,
                until: Instant::now() + core.config.resume_grace,
            });
        }
        match end {
            End::Shutdown => break,
            End::Replaced(a) => {
                tracing::info!(local = %core.local, remote = %inner.remote, "peer dialed in again; replacing the old socket");
                next = Some(*a);
            }
            End::Lost(_) => {
                // (The loss was reported, and the state set, as the session ended.)
                if inner.dialer {
                    // A short jittered pause so a whole cluster does not redial in lockstep.
                    let delay = backoff(&core.config, 0);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = inner.starts_leaving() => break,
                    }
                } else {
                    inner.set_state(State::Connecting);
                }
            }
        }
    }
    if let Some(h) = held.take() {
        let_go(&inner, h, "the node is shutting down");
    }
    inner.set_state(State::Shutdown);
}

/// Logs a lost socket (once), counts a protocol error, and sets the connection's last
/// error and state.
fn report_loss(inner: &ConnInner, lost: &Lost) {
    let local = &inner.core.local;
    if matches!(lost, Lost::PeerClosed(Some(c)) if !c.is_violation()) {
        // The peer said goodbye (it shuts down, or replaced this socket).
        tracing::info!(%local, remote = %inner.remote, reason = %lost, "connection closed by the peer");
    } else {
        tracing::warn!(%local, remote = %inner.remote, reason = %lost, "connection lost");
    }
    if lost.is_violation() {
        inner
            .counters
            .protocol_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    inner.set_error(match lost {
        Lost::Violation(close) => Error::Protocol(close.reason.clone()),
        Lost::PeerClosed(Some(close)) if close.is_violation() => Error::Protocol(format!(
            "{} closed the connection: {}",
            inner.remote, close.reason
        )),
        // Calls in flight got `Disconnected`; the connection says why.
        _ => Error::Unreachable(format!("connection lost: {lost}")),
    });
    inner.set_state(State::ConnectionError);
}

fn note_instance(inner: &ConnInner, instance: Uuid) {
    let previous = inner.remote_instance.send_replace(Some(instance));
    if previous.is_some_and(|p| p != instance) {
        inner
            .counters
            .remote_restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(remote = %inner.remote, %instance, "remote restarted (new instance id)");
    }
}

/// Runs one socket until it dies, is replaced, or the manager shuts down: the reader and
/// writer tasks move bytes, and this loop wakes the engine when its timers are due. On
/// return the session is uninstalled and its engine closed.
async fn run_session(
    inner: &Arc<ConnInner>,
    accepted: Accepted,
    incoming: &mut mpsc::Receiver<Box<Accepted>>,
    resumed: Option<Arc<Session>>,
) -> (End, Option<Arc<Session>>) {
    let core = &inner.core;
    let started = Instant::now().into_std();
    let session = match resumed {
        Some(session) => {
            tracing::info!(local = %core.local, remote = %inner.remote, "the same peer is back: streams resume");
            session.with(|e| e.begin_resume(started));
            session
        }
        None => Arc::new(Session::new(
            Engine::new(
                core.config.engine(accepted.peer, &core.node_budget),
                started,
            ),
            accepted.checksum,
            core.config.limits().requiring_checksums(accepted.checksum),
        )),
    };
    inner.set_session(Some(session.clone()));
    let mut writer = core
        .tasks
        .spawn(write_loop(inner.clone(), session.clone(), accepted.writer));
    let mut reader = core
        .tasks
        .spawn(read_loop(inner.clone(), session.clone(), accepted.reader));
    // Connected once the session's tasks exist: whoever waits for it sees the whole
    // connection (its tasks counted), not half of it.
    inner.set_state(State::Connected);
    let ended =
        |what: &str, e: tokio::task::JoinError| Lost::Failed(format!("{what} task ended: {e}"));
    let mut writer_running = true;
    let mut quiet = QuietWatch::new(inner, core.config.ping_interval, started);
    let (mut leaving, mut peer_leaving) = (false, false);
    let end = loop {
        let due = Instant::from_std(session.with(|e| e.poll_timeout()));
        tokio::select! {
            r = &mut reader => break End::Lost(r.unwrap_or_else(|e| ended("reader", e))),
            r = &mut writer => {
                writer_running = false;
                break End::Lost(r.unwrap_or_else(|e| ended("writer", e)));
            }
            () = tokio::time::sleep_until(due) => {
                let now = Instant::now().into_std();
                if let Err(dead) = session.with(|e| e.handle_timeout(now)) {
                    break End::Lost(Lost::Failed(dead.to_string()));
                }
                if quiet.check(inner, now) {
                    session.quiet.set();
                }
            }
            () = session.timer.notified() => {}
            a = incoming.recv(), if !inner.dialer => match a {
                Some(a) => break End::Replaced(a),
                None => break End::Shutdown,
            },
            reason = inner.starts_leaving(), if !leaving => {
                leaving = true;
                let now = Instant::now().into_std();
                session.with(|e| e.drain(now, &reason));
                inner.set_state(State::Draining);
                tracing::info!(local = %core.local, remote = %inner.remote, %reason, "draining: the peer's new calls are refused; those in flight finish");
            }
            () = drained(&session), if leaving => break End::Shutdown,
            reason = peer_drain(&session), if !peer_leaving => {
                peer_leaving = true;
                inner.set_state(State::Draining);
                tracing::info!(local = %core.local, remote = %inner.remote, %reason, "the peer is leaving: no new calls to it; those in flight finish");
            }
            () = inner.stopping() => break End::Shutdown,
        }
    };
    // A socket lost by accident (not closed on purpose, nor for a broken rule), or replaced
    // by the same peer: open streams are kept for it to come back, if both sides keep them.
    let may_resume = match &end {
        End::Lost(Lost::Failed(_) | Lost::PeerClosed(None)) | End::Replaced(_) => true,
        End::Lost(_) | End::Shutdown => false,
    };
    if let End::Lost(lost) = &end {
        // Before the calls on the session fail: whoever sees one fail sees the state too.
        report_loss(inner, lost);
    }
    if may_resume && session.with(|e| e.suspend(&Error::LOST)) > 0 {
        reader.abort();
        if writer_running {
            writer.abort();
        }
        return (end, Some(session));
    }
    inner.set_session(None);
    let (err, goodbye) = match &end {
        End::Shutdown => (
            inner.lost_error_at_end(),
            Close::new(Close::GOING_AWAY, inner.leaving_reason()),
        ),
        End::Replaced(_) => (
            Error::LOST,
            Close::new(
                Close::NORMAL,
                "replaced by a newer connection from the same peer",
            ),
        ),
        End::Lost(Lost::Violation(close)) => (Error::LOST, close.clone()),
        End::Lost(_) => (Error::LOST, Close::new(Close::NORMAL, "closing")),
    };
    session.close(err, goodbye);
    reader.abort();
    if writer_running {
        // The writer sends the close frame, in the background (a counted task, so shutdown
        // waits for it): the connection moves on at once, and a peer that does not read is
        // not waited for long.
        core.tasks.spawn(async move {
            if tokio::time::timeout(CLOSE_WAIT, &mut writer).await.is_err() {
                writer.abort();
            }
        });
    }
    (end, None)
}

/// Resolves once the session's drain is over: nothing in flight, and the peer read the
/// Drain (`Engine::poll_drained`).
async fn drained(session: &Session) {
    poll_fn(|cx| {
        if session.with(|e| e.poll_drained(cx.waker())) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Resolves with the peer's reason once it said it is leaving.
async fn peer_drain(session: &Session) -> Arc<str> {
    poll_fn(|cx| match session.with(|e| e.poll_peer_drain(cx.waker())) {
        Some(reason) => Poll::Ready(reason),
        None => Poll::Pending,
    })
    .await
}

/// Frames in both directions over a ping interval at or below which a connection counts
/// as quiet: an idle one exchanges two pings and two pongs.
const QUIET_FRAMES: u64 = 8;

/// Tells, once per ping interval, whether the connection was quiet since the last time.
struct QuietWatch {
    every: Duration,
    since: std::time::Instant,
    frames: u64,
}

impl QuietWatch {
    /// Watches from `now` (the runtime's clock, as every time the runner passes on).
    fn new(inner: &ConnInner, every: Duration, now: std::time::Instant) -> Self {
        Self {
            every,
            since: now,
            frames: inner.counters.frames(),
        }
    }

    /// At `now`: whether a ping interval passed with at most [`QUIET_FRAMES`] frames.
    fn check(&mut self, inner: &ConnInner, now: std::time::Instant) -> bool {
        if now.saturating_duration_since(self.since) < self.every {
            return false;
        }
        let frames = inner.counters.frames();
        let quiet = frames.saturating_sub(self.frames) <= QUIET_FRAMES;
        self.since = now;
        self.frames = frames;
        quiet
    }
}

/// Jittered exponential backoff: `min * 2^attempt`, capped at `max`, scaled by a random
/// factor in [0.5, 1].
/// The longest wait before dialing again a peer that answered and refused the connection.
const REFUSED_RETRY: Duration = Duration::from_secs(1);

/// How long to wait before the next dial after `attempt` failed ones: the backoff, but at
/// most [`REFUSED_RETRY`] (or the minimum backoff, if larger) when the peer answered and
/// refused (`refused`). A peer that refuses is up: it is likely to accept soon (it has not
/// added this node to its peers yet, or it is restarting), and a refusal costs it little;
/// one that does not answer backs off fully.
fn retry_delay(config: &crate::core::Config, attempt: u32, refused: bool) -> Duration {
    let delay = backoff(config, attempt);
    if refused {
        delay.min(REFUSED_RETRY.max(config.reconnect_min))
    } else {
        delay
    }
}

fn backoff(config: &crate::core::Config, attempt: u32) -> Duration {
    let base = config
        .reconnect_min
        .saturating_mul(1u32 << attempt.min(16))
        .min(config.reconnect_max);
    base.mul_f64(rand::random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_that_refuses_is_dialed_again_within_a_second_one_that_does_not_answer_backs_off() {
        let config = crate::core::Config {
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(30),
            ..crate::core::Config::default()
        };
        for attempt in [0u32, 3, 8, 40] {
            for _ in 0..100 {
                assert!(retry_delay(&config, attempt, true) <= REFUSED_RETRY);
            }
        }
        let late: Duration = (0..100)
            .map(|_| retry_delay(&config, 40, false))
            .max()
            .unwrap_or_default();
        assert!(late > REFUSED_RETRY * 10, "{late:?}");
        // A minimum backoff above a second is kept.
        let slow = crate::core::Config {
            reconnect_min: Duration::from_secs(3),
            ..config
        };
        assert!(retry_delay(&slow, 0, true) >= Duration::from_millis(1500));
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap_and_is_jittered_down_to_half() {
        let config = crate::core::Config {
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            ..crate::core::Config::default()
        };
        let mut seen = std::collections::BTreeSet::new();
        for attempt in [0u32, 1, 3, 5, 40] {
            let base =
                (Duration::from_millis(100) * (1 << attempt.min(16))).min(Duration::from_secs(2));
            for _ in 0..200 {
                let d = backoff(&config, attempt);
                assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
                seen.insert(d);
            }
        }
        assert!(seen.len() > 100, "jittered: {} distinct delays", seen.len());
    }
}
