//! Control messages: what goes ahead of every call's and stream's data, so that no amount
//! of queued data delays a keepalive into a false dead-peer verdict, or holds a sender back
//! on credit it is owed.
//!
//! Each kind has a slot of its own, bounded: this side's Drain (once), the connection's pong (the latest ping's) and
//! ping, a WebSocket pong, one stream ping or pong per stream, refusals up to the
//! concurrency limit, and credit: one pending grant per stream direction, coalesced (grants
//! made while one waits add to it), so a busy stream's credit costs one message per frame at
//! most. [`Engine::take_control`] puts them first in every frame.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::outbox::Outbox;
use super::state::Stream;
use super::{Engine, Key, Side, Transmit};
use crate::codec::{encode_credit, Message, Op};

/// How long a round-trip probe may go unanswered before another is sent (the peer
/// answers only the latest ping, and a probe behind a long queue is late, not lost).
const PROBE_GIVE_UP: Duration = Duration::from_secs(1);

impl Engine {
    /// Puts the waiting control messages first in the frame being built.
    pub(super) fn take_control(&mut self, tx: &mut Transmit) {
        tx.transport_pong = self.outbox.transport_pong.take();
        if let Some(list) = self.outbox.resume.take() {
            let mut m = Message::new(Op::Resume);
            m.payload = Some(list);
            tx.push(m);
        }
        if self.outbox.drain.is_some() {
            self.take_drain(tx);
        }
        if let Some(p) = self.outbox.pong.take() {
            let mut m = Message::new(Op::Pong);
            m.payload = Some(p);
            tx.push(m);
        }
        if let Some(p) = self.outbox.ping.take() {
            let mut m = Message::new(Op::Ping);
            m.payload = Some(p);
            tx.push(m);
        }
        self.take_per_stream(
            tx,
            |o| &mut o.stream_pings,
            |side, s| {
                let op = match side {
                    Side::Caller => Op::Ping,
                    Side::Handler => Op::Pong,
                };
                std::mem::take(&mut s.ping_queued).then(|| Message::new(op))
            },
        );
        self.take_per_stream(
            tx,
            |o| &mut o.credits,
            |_, s| {
                let n = std::mem::take(&mut s.recv.credit_pending);
                (n > 0).then(|| {
                    let mut m = Message::new(s.unblock_op());
                    // The acknowledgment: how many messages arrived on this direction.
                    m.seq = s.recv.next_seq.wrapping_sub(1);
                    m.payload = Some(encode_credit(n));
                    m
                })
            },
        );
        if !self.outbox.refusals.is_empty() {
            self.take_refusals(tx);
        }
    }

    /// This side's Drain, once (ahead of the ping that goes behind it).
    #[cold]
    fn take_drain(&mut self, tx: &mut Transmit) {
        if let Some(reason) = self.outbox.drain.take() {
            let mut m = Message::new(Op::Drain);
            m.payload = Some(reason);
            tx.push(m);
        }
    }

    /// Refusals, while the frame has room; once they are all out, the engine may be idle.
    fn take_refusals(&mut self, tx: &mut Transmit) {
        while !tx.is_full() {
            match self.outbox.refusals.pop_front() {
                Some(m) => tx.push(m),
                None => break,
            }
        }
        if self.outbox.refusals.is_empty() {
            self.check_idle();
        }
    }

    /// Takes the entries of one per-stream control queue into the frame, while it has
    /// room: `make` makes each stream's message (with the stream's mux id), or nothing if
    /// the stream took it back.
    fn take_per_stream(
        &mut self,
        tx: &mut Transmit,
        queue: fn(&mut Outbox) -> &mut VecDeque<(Side, Key)>,
        make: fn(Side, &mut Stream) -> Option<Message>,
    ) {
        while !tx.is_full() {
            let Some((side, key)) = queue(&mut self.outbox).pop_front() else {
                break;
            };
            let Some(s) = self.stream_mut(side, key) else {
                continue;
            };
            if let Some(mut m) = make(side, s) {
                m.mux_id = s.mux_id;
                tx.push(m);
            }
        }
    }

    /// Grants the peer `n` more bytes of credit on a stream, in the next frame (added to a
    /// grant still waiting).
    pub(super) fn push_credit(&mut self, side: Side, key: Key, n: u64) {
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        let first = s.recv.credit_pending == 0;
        s.recv.credit_pending += n;
        if first {
            self.outbox.credits.push_back((side, key));
            self.wake_writer();
        }
    }

    /// A stream ended: its pending credit (the peer needs none now) and its ping or pong
    /// leave the schedule.
    pub(super) fn forget_control(&mut self, side: Side, key: Key) {
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        let credit = std::mem::take(&mut s.recv.credit_pending) > 0;
        let ping = std::mem::take(&mut s.ping_queued);
        if credit {
            self.outbox.credits.retain(|e| *e != (side, key));
        }
        if ping {
            self.outbox.stream_pings.retain(|e| *e != (side, key));
        }
    }

    /// Queues a connection-level refusal (an answer for which there is no entry). False if
    /// the peer already has more refusals waiting than the concurrency limit: it sends
    /// faster than it reads, and must be disconnected.
    pub(super) fn push_refusal(&mut self, m: Message) -> bool {
        if self.outbox.refusals() >= self.config.max_concurrent {
            return false;
        }
        self.outbox.refusals.push_back(m);
        self.wake_writer();
        true
    }

    /// Answers the latest connection ping (older unanswered ones are superseded).
    pub(super) fn push_pong(&mut self, payload: Option<Bytes>) {
        self.outbox.pong = Some(payload.unwrap_or_default());
        self.wake_writer();
    }

    /// Answers a WebSocket-level ping (the latest one only).
    pub(crate) fn transport_ping(&mut self, payload: Bytes) {
        self.outbox.transport_pong = Some(payload);
        self.wake_writer();
    }

    /// Queues a stream's ping (caller) or pong (handler), unless one is already queued.
    pub(super) fn push_stream_ping(&mut self, side: Side, key: Key) {
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        if !std::mem::replace(&mut s.ping_queued, true) {
            self.outbox.stream_pings.push_back((side, key));
            self.wake_writer();
        }
    }

    pub(super) fn push_ping(&mut self, payload: Bytes) {
        self.outbox.ping = Some(payload);
        self.wake_writer();
    }

    /// Pings now, to measure the round trip as it is (a stream's window is being sized),
    /// unless a probe is still unanswered: at most one is in flight, so a connection with
    /// many streams pings at most once per round trip.
    pub(super) fn probe_rtt(&mut self, now: Instant) {
        if self
            .timers
            .probe
            .is_some_and(|sent| now.saturating_duration_since(sent) < PROBE_GIVE_UP)
        {
            return;
        }
        self.timers.probe = Some(now);
        let payload = self.ping_payload(now);
        self.push_ping(payload);
    }
}
