//! Leaving gracefully (PROTOCOL.md §1, "Draining"). A side that is leaving (its manager
//! shuts down, or the peer is being removed) says so with a Drain message and, from then
//! on, admits no new call or stream from the peer: those that crossed the message on the
//! way are refused with kind Draining (not executed). A side told so starts no new call or
//! stream on the connection (they fail here, before anything is sent, with
//! [`Error::Draining`]), and the calls it kept waiting for room on the peer fail the same
//! way. What is in flight either way carries on to its end; the driver closes the socket
//! once [`Engine::poll_drained`] says so, or its drain deadline has passed. Both sides may
//! drain at once.
//!
//! Drained means idle *and* the peer has read the Drain: a connection ping goes right
//! behind it, and its pong proves the peer read everything before it. Without that wait, a
//! call the peer sent just before it read the Drain would reach a closed socket and fail
//! as lost (may have executed), though it never ran.
//!
//! Drained also means no refusal waits for the socket: a call that crossed the Drain gets
//! its answer before the socket closes.
//!
//! The driver learns that the peer drains through [`Engine::poll_peer_drain`], and shows
//! the connection as draining either way.

use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::assembly::Payload;
use super::violation::Violation;
use super::{Engine, Side};
use crate::codec::Message;
use crate::error::Error;

/// The longest reason a Drain carries, in bytes (as a WebSocket close reason).
pub(crate) const MAX_REASON: usize = 123;

/// What each side said about leaving.
#[derive(Default)]
pub(super) struct Drain {
    /// This side's reason, once it said it is leaving.
    pub(super) sent: Option<Arc<str>>,
    /// The peer's reason, once it said it is leaving.
    pub(super) received: Option<Arc<str>>,
    /// When the ping behind this side's Drain was sent (as its pong will echo it).
    ping: Option<Instant>,
    /// The driver, waiting to hear that the peer drains.
    waiter: Option<Waker>,
}

/// `reason` cut to at most [`MAX_REASON`] bytes, at a character boundary.
fn bounded(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

impl Engine {
    /// This side is leaving, at `now`: tells the peer why (ahead of any data, a ping
    /// right behind), and from now on refuses the peer's new calls and streams as
    /// draining. Calls and streams in flight, this side's new ones included, carry on. Once
    /// is enough: a second call changes nothing.
    pub(crate) fn drain(&mut self, now: Instant, reason: &str) {
        if self.closed.is_some() || self.drain.sent.is_some() {
            return;
        }
        let reason = bounded(reason);
        self.drain.sent = Some(Arc::from(reason));
        self.outbox.drain = Some(Bytes::copy_from_slice(reason.as_bytes()));
        let ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.drain.ping = Some(self.epoch + Duration::from_nanos(ns));
        let ping = self.ping_payload(now);
        self.push_ping(ping);
    }

    /// Ready once this side may close the socket of its drain: nothing is in flight and
    /// the peer has read the Drain (module documentation); else registers `waker`.
    pub(crate) fn poll_drained(&mut self, waker: &Waker) -> bool {
        let read = match self.drain.ping {
            Some(ping) => self.timers.answered.is_some_and(|at| at >= ping),
            None => true,
        };
        if !self.poll_idle(waker) {
            return false;
        }
        if !read && !self.idle.iter().any(|w| w.will_wake(waker)) {
            // An idle engine wakes its waiters after every message: the pong among them.
            self.idle.push(waker.clone());
        }
        read
    }

    /// The peer's reason once it said it is leaving; else registers `waker`, woken when it
    /// does.
    pub(crate) fn poll_peer_drain(&mut self, waker: &Waker) -> Option<Arc<str>> {
        if let Some(reason) = &self.drain.received {
            return Some(reason.clone());
        }
        match &self.drain.waiter {
            Some(w) if w.will_wake(waker) => {}
            _ => self.drain.waiter = Some(waker.clone()),
        }
        None
    }

    /// Why a call or stream opened now is not started: the peer said it is leaving.
    pub(super) fn peer_left(&self) -> Option<Error> {
        self.drain
            .received
            .as_ref()
            .map(|reason| Error::Draining(reason.to_string()))
    }

    /// This side's reason, if it is leaving: the peer's new calls are refused with it.
    pub(super) fn leaving(&self) -> Option<Arc<str>> {
        self.drain.sent.clone()
    }

    /// The peer says it is leaving: this side's calls and streams not written yet fail
    /// (waiting for room there, or for the writer), new ones will not start, and the driver
    /// hears of it.
    ///
    /// # Errors
    /// A Drain that is not a connection message (mux id 0), or whose reason is too long or
    /// not UTF-8: the peer broke the protocol.
    pub(super) fn on_drain(&mut self, msg: &Message, payload: Payload) -> Result<(), Violation> {
        if msg.mux_id != 0 {
            return Err(Violation::Broken(format!(
                "Drain on mux id {} (it is a connection message, on mux id 0)",
                msg.mux_id
            )));
        }
        let bytes = payload.into_bytes().unwrap_or_default();
        if bytes.len() > MAX_REASON {
            return Err(Violation::Broken(format!(
                "Drain with a reason of {} bytes (at most {MAX_REASON})",
                bytes.len()
            )));
        }
        let Ok(reason) = std::str::from_utf8(&bytes) else {
            return Err(Violation::Broken(
                "Drain with a reason that is not UTF-8".into(),
            ));
        };
        if self.drain.received.is_some() {
            return Ok(());
        }
        let reason: Arc<str> = Arc::from(reason);
        self.drain.received = Some(reason.clone());
        let err = Error::Draining(reason.to_string());
        // Never written: what waits for room on the peer, and opens not yet taken by the
        // writer (written now, they would reach the peer after it has heard the pong that
        // tells it this side read the Drain, and it may have closed by then).
        for (key, _) in std::mem::take(&mut self.queued) {
            self.close_entry(Side::Caller, key, &err);
        }
        for key in self.callers.keys() {
            if self
                .callers
                .get(key)
                .is_some_and(|e| !e.header().out.transmitted)
            {
                self.close_entry(Side::Caller, key, &err);
            }
        }
        if let Some(w) = self.drain.waiter.take() {
            self.wakes.push(w);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_cut_to_its_bound_at_a_character() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(100);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_REASON && cut.len() >= MAX_REASON - 1);
        assert!(long.starts_with(cut));
    }
}
