//! What each incoming message means. The reader hands messages over one at a time
//! ([`Engine::handle`]); a merged frame is never collected first.
//!
//! A violation that concerns one stream fails that stream only (the peer is told why). A
//! violation of the connection's rules (a reused mux id, a chunk out of place, an op that
//! has no meaning on a live connection, a flood) is returned: the connection is closed.

use std::time::Instant;

use bytes::Bytes;

use super::assembly::{Payload, Whole};
use super::state::StreamState;
use super::violation::Violation;
use super::window::cost;
use super::{CallerEntry, Engine, HandlerEntry, Key, Side};
use crate::codec::{
    decode_credit, encode_error, Decoded, ErrorKind, Flags, FrameMessages, Message, Op, PlainHead,
};
use crate::error::Error;

/// Most payload a connection ping may carry (it is echoed in the pong), as for a WebSocket
/// ping.
const MAX_PING: usize = 125;
/// The payload of grid's own connection pings: a time and a count of chunk bytes.
const PING_LEN: usize = 16;

impl Engine {
    /// Applies one message from the peer, received at `now`.
    ///
    /// # Errors
    /// Why the peer broke the connection's rules; the connection must be closed.
    pub(crate) fn handle(&mut self, now: Instant, msg: Message) -> Result<(), Violation> {
        if self.closed.is_some() {
            return Ok(());
        }
        let result = self.apply(now, msg);
        // A partial payload may have been dropped: someone may wait for idleness.
        self.check_idle();
        result
    }

    /// Decodes and applies the next messages of a frame, at most `max`; returns how many
    /// (fewer than `max`: the frame is done). Decoding here, under the caller's lock, moves
    /// each message once, from the frame to where it belongs.
    ///
    /// # Errors
    /// A message that does not decode, or that breaks the connection's rules; the
    /// connection must be closed.
    pub(crate) fn handle_from(
        &mut self,
        now: Instant,
        messages: &mut FrameMessages,
        max: usize,
    ) -> Result<usize, Violation> {
        for n in 0..max {
            match messages.next_decoded() {
                Some(Ok(Decoded::Plain(head, frame))) => {
                    if !self.take_plain_data(now, &head, frame) {
                        self.handle(now, head.to_message(frame))?;
                    }
                }
                Some(Ok(Decoded::Whole(m))) => self.handle(now, m)?,
                Some(Err(e)) => return Err(Violation::Broken(e.to_string())),
                None => return Ok(n),
            }
        }
        Ok(max)
    }

    /// The common case of [`Engine::on_data`], straight from the frame: the next data
    /// message of a stream open here (no end, no error, not a part), in sequence and within
    /// credit. Its payload is the only thing sliced from the frame. False, with nothing
    /// done, for anything else: it goes the whole way, which also says what is wrong.
    ///
    /// A twin of `on_data`'s happy path on purpose: routing these messages through
    /// `on_data` itself (measured) costs ~90 instructions more per stream message, 6 % of
    /// the whole path. Every check here is one `on_data` makes; when in doubt, fall back.
    fn take_plain_data(&mut self, now: Instant, head: &PlainHead, frame: &Bytes) -> bool {
        let Some((start, end)) = head.payload else {
            return false;
        };
        if head.flags != Flags::NONE
            || self.assembler.has_partials()
            || self.closed.is_some()
            || end - start > self.config.max_message_size
        {
            return false;
        }
        let found = match head.op {
            Op::MuxServerMsg => Key::from_mux_id(head.mux_id).map(|k| (Side::Caller, k)),
            Op::MuxClientMsg => self
                .handler_ids
                .get(&head.mux_id)
                .map(|&k| (Side::Handler, k)),
            _ => None,
        };
        let Some((side, key)) = found else {
            return false;
        };
        let Some(s) = self.stream_mut(side, key) else {
            return false;
        };
        let r = &mut s.recv;
        let expected = s.state == StreamState::Open && !r.discard && r.end.is_none();
        let cost = cost(end - start);
        if !expected || head.seq != r.next_seq || r.window.receive(cost).is_err() {
            return false;
        }
        r.next_seq = r.next_seq.wrapping_add(1);
        let waker = r.deliver_in(frame, start, end, cost);
        s.heard(now);
        self.timers.last_heard = now;
        self.wake(waker);
        true
    }

    fn apply(&mut self, now: Instant, mut msg: Message) -> Result<(), Violation> {
        self.timers.last_heard = now;
        let more = msg.flags.contains(Flags::MORE);
        let size = msg.payload.as_ref().map_or(0, Bytes::len);
        if !more
            && size > self.config.max_message_size
            && !self.assembler.in_progress(msg.op, msg.mux_id)
        {
            // Whole and over the limit (a last part over it is counted by the assembler).
            msg.payload = None;
            return self.on_oversize(now, &msg, size);
        }
        if !more && !self.assembler.has_partials() {
            // Not a part, nothing half received: the common case, no reassembly.
            let payload = Payload::from(msg.payload.take());
            return self.dispatch(now, &msg, payload);
        }
        if more && !self.wants_chunk(&msg) {
            return Ok(());
        }
        let whole = match self.assembler.push(msg) {
            Ok(Some(whole)) => whole,
            Ok(None) => return Ok(()),
            Err(violation) => return Err(violation),
        };
        match whole {
            Whole {
                msg,
                too_large: Some(size),
                ..
            } => self.on_oversize(now, &msg, size),
            Whole { msg, payload, .. } => self.dispatch(now, &msg, payload),
        }
    }

    /// What a whole message means.
    fn dispatch(&mut self, now: Instant, msg: &Message, payload: Payload) -> Result<(), Violation> {
        match msg.op {
            Op::Request => self.admit(now, msg, payload, false),
            Op::ConnectMux => self.admit(now, msg, payload, true),
            Op::Response => {
                self.on_response(msg, payload);
                Ok(())
            }
            Op::AckMux => {
                if let Some(key) = self.caller_stream(msg.mux_id) {
                    self.on_ack(key, payload.into_bytes().as_deref());
                }
                Ok(())
            }
            Op::MuxConnectError | Op::DisconnectClientMux => {
                if let Some(key) = self.caller_stream(msg.mux_id) {
                    let err = if msg.flags.contains(Flags::PAYLOAD_IS_ERROR) {
                        Error::from_wire(payload.into_bytes().as_deref(), msg.handler, None)
                    } else {
                        Error::Cancelled
                    };
                    self.end_stream(Side::Caller, key, Self::ended_by_handler(Err(err)));
                }
                Ok(())
            }
            Op::MuxServerMsg => {
                if let Some(key) = self.caller_stream(msg.mux_id) {
                    self.on_data(Side::Caller, key, msg, payload);
                }
                Ok(())
            }
            Op::MuxClientMsg => {
                if let Some(key) = self.handler_stream(msg.mux_id, now) {
                    self.on_data(Side::Handler, key, msg, payload);
                }
                Ok(())
            }
            Op::UnblockClientMux => {
                if let Some(key) = self.caller_stream(msg.mux_id) {
                    self.on_credit(Side::Caller, key, msg.seq, payload.into_bytes().as_deref());
                }
                Ok(())
            }
            Op::UnblockServerMux => {
                if let Some(key) = self.handler_stream(msg.mux_id, now) {
                    self.on_credit(Side::Handler, key, msg.seq, payload.into_bytes().as_deref());
                }
                Ok(())
            }
            Op::DisconnectServerMux => {
                // A caller that failed the stream says why (PROTOCOL.md §6).
                let why = if msg.flags.contains(Flags::PAYLOAD_IS_ERROR) {
                    Error::from_wire(payload.into_bytes().as_deref(), msg.handler, None)
                } else {
                    Error::Cancelled
                };
                self.on_caller_cancel(msg.mux_id, why)
            }
            Op::Ping if msg.mux_id == 0 => {
                if payload.len() > MAX_PING {
                    return Err(Violation::Broken(format!(
                        "connection ping with {} bytes of payload (at most {MAX_PING})",
                        payload.len()
                    )));
                }
                self.push_pong(payload.into_bytes());
                Ok(())
            }
            Op::Ping => self.on_stream_ping(msg.mux_id, now),
            Op::Pong if msg.mux_id == 0 => {
                self.on_pong(now, payload.into_bytes().as_deref());
                Ok(())
            }
            Op::Pong => Ok(()),
            Op::Drain => self.on_drain(msg, payload),
            Op::Resume => self.on_resume(now, msg, payload),
            Op::Connect | Op::ConnectResponse | Op::Merged => Err(Violation::Broken(format!(
                "unexpected {:?} on a live connection",
                msg.op
            ))),
        }
    }

    /// Whether a part of a chunked payload is for something still live; parts for a call or
    /// stream that already ended here (the peer had not heard yet when it sent them) are
    /// dropped, not held: their payload would never complete.
    fn wants_chunk(&self, msg: &Message) -> bool {
        let caller_live = |mux| {
            Key::from_mux_id(mux)
                .and_then(|k| self.callers.get(k))
                .is_some_and(|e| match e {
                    CallerEntry::Call(c) => matches!(c.state, super::calls::CallState::Waiting),
                    CallerEntry::Stream(s) => s.state != StreamState::Closed,
                })
        };
        let handler_live = |mux| {
            self.handler_ids
                .get(&mux)
                .and_then(|k| self.handlers.get(*k))
                .is_some_and(|e| match e {
                    HandlerEntry::Call(_) => false,
                    HandlerEntry::Stream(s) => s.state != StreamState::Closed,
                })
        };
        match msg.op {
            Op::Response | Op::MuxServerMsg => caller_live(msg.mux_id),
            Op::MuxClientMsg => handler_live(msg.mux_id),
            _ => true,
        }
    }

    pub(super) fn caller_stream(&self, mux_id: u64) -> Option<Key> {
        let key = Key::from_mux_id(mux_id)?;
        matches!(self.callers.get(key), Some(CallerEntry::Stream(_))).then_some(key)
    }

    /// The handler stream under the peer's mux id, noting that its caller is alive.
    pub(super) fn handler_stream(&mut self, mux_id: u64, now: Instant) -> Option<Key> {
        let key = *self.handler_ids.get(&mux_id)?;
        self.stream_mut(Side::Handler, key)?.heard(now);
        Some(key)
    }

    /// A data message (or EOF) for a stream.
    fn on_data(&mut self, side: Side, key: Key, msg: &Message, payload: Payload) {
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        match s.state {
            StreamState::Open => {}
            StreamState::Unanswered => {
                let why = "stream message before the stream was acknowledged".to_owned();
                return self.stream_violation(side, key, why);
            }
            StreamState::Closed => return,
        }
        if side == Side::Handler && s.recv.end.is_some() {
            let why = "stream message after EOF, or to a handler that takes no input".to_owned();
            return self.stream_violation(side, key, why);
        }
        if msg.seq != s.recv.next_seq {
            let why = format!(
                "stream message {} arrived where {} was expected (lost or reordered)",
                msg.seq, s.recv.next_seq
            );
            return self.stream_violation(side, key, why);
        }
        s.recv.next_seq = s.recv.next_seq.wrapping_add(1);
        let eof = msg.flags.contains(Flags::EOF);
        let (failure, data) = if msg.flags.contains(Flags::PAYLOAD_IS_ERROR) {
            let e = Error::from_wire(payload.into_bytes().as_deref(), msg.handler, None);
            (Some(e), Payload::Absent)
        } else {
            (None, payload)
        };
        match (data, &failure) {
            (Payload::Absent, None) => {}
            (payload, None) => {
                let cost = cost(payload.len());
                if let Err(why) = s.recv.window.receive(cost) {
                    return self.stream_violation(side, key, why);
                }
                if s.recv.discard {
                    let n = s.recv.window.discard(cost);
                    self.return_credit(side, key, n);
                } else {
                    let waker = s.recv.deliver(payload, cost);
                    self.wake(waker);
                }
            }
            (_, Some(_)) if !eof => {
                let why = "error payload on a stream message without EOF".to_owned();
                return self.stream_violation(side, key, why);
            }
            (_, Some(_)) => {}
        }
        if !eof {
            return;
        }
        match (side, failure) {
            (Side::Handler, _) => {
                // The caller's EOF: its input is complete (an error from a caller means
                // nothing here, it cannot fail a handler's input).
                let Some(s) = self.stream_mut(side, key) else {
                    return;
                };
                s.recv.end_with(Ok(()));
                let waker = s.recv.waker.take();
                self.wake(waker);
            }
            (Side::Caller, failure) => {
                let result = failure.map_or(Ok(()), Err);
                self.end_stream(side, key, Self::ended_by_handler(result));
            }
        }
    }

    /// Credit returned by the peer for this side's messages.
    fn on_credit(&mut self, side: Side, key: Key, received: u32, payload: Option<&[u8]>) {
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        if s.state != StreamState::Open {
            return;
        }
        s.header.out.acknowledge(received);
        match decode_credit(payload).and_then(|n| s.send.credit.grant(n)) {
            Ok(()) => {
                let waker = s.send.waker.take();
                self.wake(waker);
            }
            Err(why) => self.stream_violation(side, key, why),
        }
    }

    /// The caller ended or gave up on a call or stream served here (`why`: what a stream's
    /// handler then sees).
    fn on_caller_cancel(&mut self, mux_id: u64, why: Error) -> Result<(), Violation> {
        for op in [Op::Request, Op::ConnectMux, Op::MuxClientMsg] {
            self.assembler.forget(op, mux_id);
        }
        let Some(&key) = self.handler_ids.get(&mux_id) else {
            // Refused and not yet told so: the refusal is no use to the caller any more.
            // (A correct caller that opens and cancels calls fast while this side refuses
            // them all, as it does while draining, would otherwise pile refusals up.)
            if !self.outbox.refusals.is_empty() {
                self.outbox.refusals.retain(|m| {
                    m.mux_id != mux_id || !matches!(m.op, Op::Response | Op::MuxConnectError)
                });
                self.check_idle();
            }
            return Ok(());
        };
        match self.handlers.get(key) {
            Some(HandlerEntry::Call(_)) => self.cancel_handler_call(key),
            Some(HandlerEntry::Stream(_)) => {
                self.cancel_handler_stream(key, Self::cancelled_by_caller(why))
            }
            None => Ok(()),
        }
    }

    /// A caller pings a stream it opened: pong if it runs here, else say it does not.
    fn on_stream_ping(&mut self, mux_id: u64, now: Instant) -> Result<(), Violation> {
        if let Some(key) = self.handler_stream(mux_id, now) {
            self.push_stream_ping(Side::Handler, key);
            return Ok(());
        }
        let mut gone = Message::new(Op::DisconnectClientMux);
        gone.mux_id = mux_id;
        gone.flags = Flags::PAYLOAD_IS_ERROR;
        gone.payload = Some(encode_error(
            ErrorKind::Cancelled,
            "the stream is not running on the remote",
        ));
        if self.push_refusal(gone) {
            Ok(())
        } else {
            Err(Violation::OverLimit(
                "the peer pings streams that do not exist faster than it reads the answers".into(),
            ))
        }
    }

    /// A connection pong: a ping of ours ([`Engine::ping_payload`]) answered. Its time
    /// measures the round trip and shows the peer alive; its count confirms the chunk bytes
    /// the peer has read. A payload of another shape is not ours and is ignored.
    fn on_pong(&mut self, now: Instant, payload: Option<&[u8]>) {
        let Some(p) = payload.and_then(|p| <[u8; PING_LEN]>::try_from(p).ok()) else {
            return;
        };
        let (time, count) = p.split_at(8);
        let word = |b: &[u8]| <[u8; 8]>::try_from(b).map_or(0, u64::from_be_bytes);
        let (sent, count) = (word(time), word(count));
        let elapsed = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let rtt = elapsed.saturating_sub(sent).max(1);
        self.last_rtt = Some(std::time::Duration::from_nanos(rtt));
        // The echoed time is the peer's to send: one from the future is ignored.
        if sent <= elapsed {
            self.rtt.sample(std::time::Duration::from_nanos(rtt), now);
            let at = self.epoch + std::time::Duration::from_nanos(sent);
            if self.timers.answered.is_none_or(|a| a < at) {
                self.timers.answered = Some(at);
            }
            if self.timers.probe.is_some_and(|p| p <= at) {
                self.timers.probe = None;
            }
        }
        if self.chunk_window.on_confirmed(now, &self.rtt, count) {
            self.wake_writer();
        }
    }

    /// The payload of a connection ping sent now: the time since the engine started, and
    /// the chunk bytes sent so far (all of them written before this ping), both big-endian.
    pub(super) fn ping_payload(&self, now: Instant) -> Bytes {
        let ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let mut p = [0u8; PING_LEN];
        let (time, count) = p.split_at_mut(8);
        time.copy_from_slice(&ns.to_be_bytes());
        count.copy_from_slice(&self.chunk_window.sent().to_be_bytes());
        Bytes::copy_from_slice(&p)
    }
}
