//! Everything the engine does because time passed: deadlines, connection pings and the
//! silence check, stream pings and silent callers, and a writer that stopped making
//! progress. The driver sleeps until [`Engine::poll_timeout`] and then calls
//! [`Engine::handle_timeout`]; the engine never reads a clock itself.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::header::Header;
use super::state::{Role, StreamState};
use super::streams::Ending;
use super::violation::DeadPeer;
use super::{CallerEntry, Config, Engine, HandlerEntry, Key, Side};
use crate::error::Error;

pub(super) struct Timers {
    deadlines: BTreeSet<(Instant, Side, Key)>,
    /// When the peer last sent anything.
    pub(super) last_heard: Instant,
    /// When this side sent the newest connection ping the peer has answered: everything
    /// the peer wrote before its pong has arrived (one socket, in order), so whatever it
    /// had to say before then has been heard.
    pub(super) answered: Option<Instant>,
    next_ping: Instant,
    /// When this side sent a round-trip probe not answered yet (see `Engine::probe_rtt`).
    pub(super) probe: Option<Instant>,
    next_stream_tick: Instant,
    /// When the writer took the frame it is still writing.
    pub(super) write_started: Option<Instant>,
    ping: Duration,
    /// What the driver was last told to sleep until.
    armed: Option<Instant>,
    /// No socket (streams kept through a lost one, `resume.rs`): no pings, no silence.
    pub(super) suspended: bool,
    /// A deadline earlier than `armed` was added since (nothing else moves earlier: pings
    /// and the silence check only move later, and a write starts after `armed` was set).
    moved: bool,
}

impl Timers {
    pub(super) fn new(config: &Config, now: Instant) -> Self {
        Self {
            deadlines: BTreeSet::new(),
            last_heard: now,
            answered: None,
            // The first ping goes at once: its round trip sizes the stream windows.
            next_ping: now,
            probe: None,
            next_stream_tick: now + config.stream_ping_interval,
            write_started: None,
            ping: config.ping_interval,
            armed: None,
            moved: false,
            suspended: false,
        }
    }

    /// Holds a deadline `at` for the entry `key` on `side`, and says so in the entry's
    /// `timer` (its header's).
    pub(super) fn arm(&mut self, timer: &mut Option<Instant>, at: Instant, side: Side, key: Key) {
        self.disarm(timer, side, key);
        if self.armed.is_some_and(|armed| at < armed) {
            self.moved = true;
        }
        self.deadlines.insert((at, side, key));
        *timer = Some(at);
    }

    /// Lets go of the entry's deadline, if one is held.
    pub(super) fn disarm(&mut self, timer: &mut Option<Instant>, side: Side, key: Key) {
        if let Some(at) = timer.take() {
            self.deadlines.remove(&(at, side, key));
        }
    }

    pub(super) fn clear_deadlines(&mut self) {
        self.deadlines.clear();
    }

    /// Whether a deadline `at` is held for the entry `key` on `side`.
    #[cfg(any(test, fuzzing))]
    pub(super) fn holds(&self, at: Instant, side: Side, key: Key) -> bool {
        self.deadlines.contains(&(at, side, key))
    }

    /// How many deadlines are held.
    #[cfg(any(test, fuzzing))]
    pub(super) fn deadline_count(&self) -> usize {
        self.deadlines.len()
    }

    /// The earliest moment something is due.
    fn next(&self) -> Instant {
        if self.suspended {
            // No socket: only deadlines run (far off when there are none).
            let later = self.last_heard + self.ping * 1000;
            return self.deadlines.first().map_or(later, |&(at, _, _)| at);
        }
        let mut next = self.next_ping.min(self.next_stream_tick);
        next = next.min(self.last_heard + self.ping * 2);
        if let Some(&(at, _, _)) = self.deadlines.first() {
            next = next.min(at);
        }
        if let Some(started) = self.write_started {
            next = next.min(started + self.ping * 2);
        }
        next
    }
}

impl Engine {
    /// When to call [`Engine::handle_timeout`] next.
    pub(crate) fn poll_timeout(&mut self) -> Instant {
        let next = self.timers.next();
        self.timers.armed = Some(next);
        self.timers.moved = false;
        next
    }

    /// Asserts the driver's timer can be trusted: unless [`Engine::timeout_moved`] says
    /// otherwise, nothing is due before the moment [`Engine::poll_timeout`] last returned.
    #[cfg(any(test, fuzzing))]
    pub(super) fn check_timers(&self) {
        if let Some(armed) = self.timers.armed {
            assert!(
                self.timers.moved || self.timers.next() >= armed,
                "something is due before the driver's timer, which was not told"
            );
        }
    }

    /// True if something became due before the moment last returned by
    /// [`Engine::poll_timeout`] (the driver must sleep less).
    pub(crate) fn timeout_moved(&self) -> bool {
        self.timers.moved
    }

    /// Does what is due at `now`.
    ///
    /// # Errors
    /// Why the connection must be closed: the peer was silent for two ping intervals, or
    /// it has not read anything for two ping intervals.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), DeadPeer> {
        if self.closed.is_some() {
            return Ok(());
        }
        let ping = self.config.ping_interval;
        let silent = now.saturating_duration_since(self.timers.last_heard);
        if self.timers.suspended {
            self.expire_due(now);
            return Ok(());
        }
        if silent >= ping * 2 {
            return Err(DeadPeer::Silent { silent, ping });
        }
        if let Some(started) = self.timers.write_started {
            let stuck = now.saturating_duration_since(started);
            if stuck >= ping * 2 {
                return Err(DeadPeer::NotReading { stuck, ping });
            }
        }
        if now >= self.timers.next_ping {
            self.timers.next_ping = now + ping;
            self.early_cancels = 0;
            let payload = self.ping_payload(now);
            self.push_ping(payload);
        }
        if now >= self.timers.next_stream_tick {
            self.timers.next_stream_tick = now + self.config.stream_ping_interval;
            self.stream_tick(now);
        }
        self.expire_due(now);
        Ok(())
    }

    /// Ends what is past its deadline at `now`.
    fn expire_due(&mut self, now: Instant) {
        while let Some(&(at, side, key)) = self.timers.deadlines.first() {
            if at > now {
                break;
            }
            self.timers.deadlines.pop_first();
            if let Some(header) = self.header_mut(side, key) {
                header.timer = None;
            }
            self.expire(side, key);
        }
    }

    fn expire(&mut self, side: Side, key: Key) {
        match side {
            Side::Caller => match self.callers.get(key) {
                Some(CallerEntry::Call(_)) => self.fail_call(key, Error::DeadlineExceeded),
                Some(CallerEntry::Stream(_)) => {
                    self.end_stream(side, key, Ending::deadline(side));
                }
                None => {}
            },
            Side::Handler => match self.handlers.get(key) {
                Some(HandlerEntry::Call(_)) => self.expire_handler_call(key),
                Some(HandlerEntry::Stream(_)) => {
                    self.end_stream(side, key, Ending::deadline(side));
                }
                None => {}
            },
        }
    }

    /// Pings every stream opened here that the peer acknowledged, and cancels the streams
    /// served here whose caller has been silent on them for three stream-ping intervals
    /// before the newest connection ping it answered was sent. Its pong came after
    /// everything it wrote before, its stream pings included, so a stream silent up to
    /// then was abandoned; silence measured up to the last message heard instead would
    /// cancel live streams whose pings wait behind megabytes the caller already wrote to a
    /// slow socket (the soak found it). A connection silent as a whole is the silence
    /// check's business.
    fn stream_tick(&mut self, now: Instant) {
        let mut pings = Vec::new();
        for (_, entry) in self.handlers.iter_mut() {
            if let HandlerEntry::Stream(s) = entry {
                s.recv.detach_if_stale();
            }
        }
        for (key, entry) in self.callers.iter_mut() {
            if let CallerEntry::Stream(s) = entry {
                s.recv.detach_if_stale();
                // Acknowledged: the handler side knows the stream (its open may still have
                // been on its way, in chunks, before).
                if s.state == StreamState::Open {
                    pings.push(key);
                }
            }
        }
        for key in pings {
            self.push_stream_ping(Side::Caller, key);
        }
        let Some(since) = self.timers.answered.and_then(|sent| {
            sent.min(now)
                .checked_sub(self.config.stream_ping_interval * 3)
        }) else {
            return;
        };
        let mut silent = Vec::new();
        for (key, entry) in self.handlers.iter_mut() {
            if let HandlerEntry::Stream(s) = entry {
                let live = matches!(s.state, StreamState::Unanswered | StreamState::Open);
                let heard = match s.role {
                    Role::Handler { last_heard, .. } => last_heard,
                    Role::Caller { .. } => since,
                };
                if live && heard < since {
                    silent.push(key);
                }
            }
        }
        for key in silent {
            tracing::debug!(?key, "stream cancelled: its caller stopped pinging");
            self.end_stream(Side::Handler, key, Ending::silent_caller());
        }
    }
}

/// A call's or stream's timer, kept in its header (see `header.rs`).
impl Engine {
    /// Holds the deadline `at` for the entry (see the invariants in `header.rs`).
    pub(super) fn arm_timer(&mut self, side: Side, key: Key, at: Instant) {
        if let (Some(header), timers) = self.header_and_timers(side, key) {
            timers.arm(&mut header.timer, at, side, key);
        }
    }

    /// Lets go of the entry's deadline, if one is held.
    pub(super) fn disarm_timer(&mut self, side: Side, key: Key) {
        if let (Some(header), timers) = self.header_and_timers(side, key) {
            timers.disarm(&mut header.timer, side, key);
        }
    }

    /// The entry's books and the timers, borrowed together.
    fn header_and_timers(&mut self, side: Side, key: Key) -> (Option<&mut Header>, &mut Timers) {
        let header = match side {
            Side::Caller => self.callers.get_mut(key).map(CallerEntry::header_mut),
            Side::Handler => self.handlers.get_mut(key).map(HandlerEntry::header_mut),
        };
        (header, &mut self.timers)
    }
}
