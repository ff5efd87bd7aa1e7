//! Reassembling payloads that were sent in chunks (flag [`Flags::MORE`]).
//!
//! Large payloads travel as several messages so that the writer can interleave them with
//! other traffic. The engine owns one [`Assembler`]; it is fed every incoming message and
//! returns whole messages. What it holds is bounded by the reassembly window this side
//! announced in the handshake: the peer's sender keeps the payloads it has in progress
//! within it (see `window::ChunkBudget`), so more is the peer's violation.
//!
//! Parts are kept as they arrived (slices of the received frames, no copy) and handed on
//! as a [`Payload`] of parts, joined by whoever takes it, outside the engine's lock: a
//! 16 MiB payload is copied once, by its consumer, and never while other calls wait.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::violation::Violation;
use crate::codec::{Flags, Message, Op};

/// Payloads shorter than this are copied out of the read buffer when they are handed to
/// the user ([`Payload::into_owned`]); longer ones stay slices of it.
pub(crate) const COPY_BELOW: usize = 16 * 1024;

/// A received payload: absent, whole, or the parts of a chunked one (joined on demand).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Payload {
    #[default]
    Absent,
    /// A slice of the frame it arrived in.
    Whole(Bytes),
    /// Already copied out of its frame ([`Payload::detach`]).
    Owned(Bytes),
    Parts(Vec<Bytes>),
}

impl Payload {
    /// Its size in bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Payload::Absent => 0,
            Payload::Whole(b) | Payload::Owned(b) => b.len(),
            Payload::Parts(parts) => parts.iter().map(Bytes::len).sum(),
        }
    }

    /// A payload that will wait: one shorter than [`COPY_BELOW`] is copied out of its
    /// frame now rather than when handed out (the same one copy), so that while it waits it
    /// holds its own bytes, not the read buffer they came in.
    pub(crate) fn detach(self) -> Payload {
        match self {
            Payload::Whole(b) if b.len() < COPY_BELOW && !b.is_empty() => {
                Payload::Owned(Bytes::copy_from_slice(&b))
            }
            other => other,
        }
    }

    /// The payload as the user gets it: one buffer that costs what it holds.
    ///
    /// A whole payload is a slice of the buffer its frame was read into, and a slice keeps
    /// all of that buffer alive: a kept 16-byte request could hold 64 KiB to 1 MiB. So one
    /// shorter than [`COPY_BELOW`] is copied into an allocation of its own here, on the
    /// taker's thread (where it is usually freed too, which the allocator does cheaply); a
    /// longer one stays a slice, no copy, holding at most eight times its size (read
    /// buffers are 16 to 64 KiB, a reused one at most 128 KiB; a message larger than that
    /// arrives in a buffer of its own size). A chunked payload's parts are joined into a
    /// buffer of its own.
    pub(crate) fn into_owned(self) -> Option<Bytes> {
        match self {
            Payload::Whole(b) if b.len() < COPY_BELOW && !b.is_empty() => {
                Some(Bytes::copy_from_slice(&b))
            }
            other => other.into_bytes(),
        }
    }

    /// The payload as one buffer, as it is: a slice of the frame it arrived in, or the
    /// parts of a chunked one copied together once. For payloads read and dropped at once
    /// (the engine's own, or decoded by the taker); what is handed to the user goes
    /// through [`Payload::into_owned`].
    pub(crate) fn into_bytes(self) -> Option<Bytes> {
        match self {
            Payload::Absent => None,
            Payload::Whole(b) | Payload::Owned(b) => Some(b),
            Payload::Parts(parts) => {
                let len = parts.iter().map(Bytes::len).sum();
                let mut whole = BytesMut::with_capacity(len);
                for p in parts {
                    whole.extend_from_slice(&p);
                }
                Some(whole.freeze())
            }
        }
    }
}

impl From<Option<Bytes>> for Payload {
    fn from(p: Option<Bytes>) -> Self {
        p.map_or(Payload::Absent, Payload::Whole)
    }
}

/// A message whose payload is complete (its header is the last part's).
#[derive(Debug)]
pub(crate) struct Whole {
    /// The header; its `payload` is always `None` (see `payload`).
    pub(crate) msg: Message,
    pub(crate) payload: Payload,
    /// The payload was over the maximum message size: its parts were dropped as they came
    /// (`payload` is absent) and this is how many bytes it had.
    pub(crate) too_large: Option<usize>,
}

impl Whole {
    fn of(mut msg: Message) -> Whole {
        let payload = Payload::from(msg.payload.take());
        Whole {
            msg,
            payload,
            too_large: None,
        }
    }
}

struct Partial {
    /// The op every part repeats.
    op: Op,
    parts: Vec<Bytes>,
    /// Bytes received so far (held, unless `dropping`).
    len: usize,
    /// The sequence number every part repeats (the message's own, for streams).
    seq: u32,
    /// The payload went over the maximum message size: its parts are counted and dropped.
    dropping: bool,
}

/// Most chunked payloads a peer may have in progress at once (grid sends at most four).
pub(crate) const MAX_IN_PROGRESS: usize = 64;

/// Which way a message goes: towards the side that serves the call or stream (its
/// caller's messages), or towards its caller. The mux ids of the two ways are allocated by
/// different sides, so the same number may name two unrelated calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Way {
    ToHandler,
    ToCaller,
}

fn way(op: Op) -> Way {
    match op {
        Op::Request
        | Op::ConnectMux
        | Op::MuxClientMsg
        | Op::UnblockServerMux
        | Op::DisconnectServerMux
        | Op::Ping => Way::ToHandler,
        _ => Way::ToCaller,
    }
}

/// Whether `op` carries a call's or stream's payload. While a chunked payload is in
/// progress on a mux, another of these on the same mux and way is the peer's violation;
/// the others (credit, cancels, pings, acks) may come between its parts.
fn carries_data(op: Op) -> bool {
    matches!(
        op,
        Op::Request | Op::ConnectMux | Op::MuxClientMsg | Op::Response | Op::MuxServerMsg
    )
}

/// Payloads being reassembled, keyed by (way, mux id): one at a time per call or stream
/// and way.
pub(crate) struct Assembler {
    partials: HashMap<(Way, u64), Partial>,
    /// Bytes held in partial payloads.
    held: usize,
    max_message: usize,
    /// The reassembly window: more bytes held half received is a violation, unless one
    /// payload alone is in progress (a payload larger than the window is sent alone).
    max_held: usize,
}

impl Assembler {
    pub(crate) fn new(max_message: usize, max_held: usize) -> Self {
        Self {
            partials: HashMap::new(),
            held: 0,
            max_message,
            max_held,
        }
    }

    /// Feeds one message. Returns the whole message when it is complete (at once for a
    /// message that was not chunked), `None` while parts are missing, and an error when the
    /// peer breaks the rules (a gap, too much held, too many in progress). A payload that
    /// grows over the maximum message size is not an error: its parts are dropped as they
    /// come and its last part returns it with [`Whole::too_large`], so that only its own
    /// call or stream fails.
    pub(crate) fn push(&mut self, mut msg: Message) -> Result<Option<Whole>, Violation> {
        let more = msg.flags.contains(Flags::MORE);
        if !more && self.partials.is_empty() {
            return Ok(Some(Whole::of(msg)));
        }
        let key = (way(msg.op), msg.mux_id);
        match self.partials.get(&key) {
            // Not a part: whole as it came (an absent payload stays absent).
            None if !more => return Ok(Some(Whole::of(msg))),
            Some(p) if p.op != msg.op && (more || carries_data(msg.op)) => {
                return Err(Violation::Broken(format!(
                    "{:?} on mux {} arrived inside a chunked {:?} of the same mux",
                    msg.op, msg.mux_id, p.op
                )));
            }
            // Credit, a cancel or a ping between the parts.
            Some(p) if p.op != msg.op => return Ok(Some(Whole::of(msg))),
            _ => {}
        }
        let part = msg.payload.take().unwrap_or_default();
        let in_progress = self.partials.len();
        let Some(partial) = self.partials.get_mut(&key) else {
            if in_progress >= MAX_IN_PROGRESS {
                return Err(Violation::OverLimit(format!(
                    "peer has more than {MAX_IN_PROGRESS} chunked payloads in progress at once"
                )));
            }
            let len = part.len();
            let dropping = len > self.max_message;
            if !dropping {
                self.hold(len, in_progress)?;
            }
            self.partials.insert(
                key,
                Partial {
                    op: msg.op,
                    parts: if dropping { Vec::new() } else { vec![part] },
                    len,
                    seq: msg.seq,
                    dropping,
                },
            );
            return Ok(None);
        };
        if msg.seq != partial.seq {
            return Err(Violation::Broken(format!(
                "a part of message {} of mux {} arrived inside message {}",
                msg.seq, msg.mux_id, partial.seq
            )));
        }
        let len = partial.len.saturating_add(part.len());
        if !partial.dropping && len > self.max_message {
            // Over the limit: what it holds goes, the rest is only counted.
            self.held -= partial.len;
            partial.parts = Vec::new();
            partial.dropping = true;
        }
        if !partial.dropping {
            let (held, max_held) = (self.held + part.len(), self.max_held);
            if held > max_held && in_progress > 1 {
                return Err(Violation::OverLimit(format!(
                    "peer has more than its reassembly window of {max_held} bytes of chunked payloads in flight"
                )));
            }
            self.held = held;
            partial.parts.push(part);
        }
        partial.len = len;
        if more {
            return Ok(None);
        }
        let Some(done) = self.partials.remove(&key) else {
            return Ok(None);
        };
        msg.flags = msg.flags.without(Flags::MORE);
        if done.dropping {
            return Ok(Some(Whole {
                msg,
                payload: Payload::Absent,
                too_large: Some(done.len),
            }));
        }
        self.held -= done.len;
        Ok(Some(Whole {
            msg,
            payload: Payload::Parts(done.parts),
            too_large: None,
        }))
    }

    /// Drops the partial payload going `op`'s way on `mux_id` (its call ended).
    pub(crate) fn forget(&mut self, op: Op, mux_id: u64) {
        if let Some(p) = self.partials.remove(&(way(op), mux_id)) {
            if !p.dropping {
                self.held -= p.len;
            }
        }
    }

    fn hold(&mut self, bytes: usize, in_progress: usize) -> Result<(), Violation> {
        if self.held + bytes > self.max_held && in_progress > 0 {
            return Err(Violation::OverLimit(format!(
                "peer has more than its reassembly window of {} bytes of chunked payloads in flight",
                self.max_held
            )));
        }
        self.held += bytes;
        Ok(())
    }

    /// Whether a payload going `op`'s way on `mux_id` is half received.
    pub(crate) fn in_progress(&self, op: Op, mux_id: u64) -> bool {
        self.partials.contains_key(&(way(op), mux_id))
    }

    /// Whether any payload is half received (held or being dropped).
    pub(crate) fn has_partials(&self) -> bool {
        !self.partials.is_empty()
    }

    /// Bytes held in partial payloads.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Payloads in progress (held or being dropped).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn partials(&self) -> usize {
        self.partials.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(seq: u32, more: bool, data: &'static [u8]) -> Message {
        let mut m = Message::new(Op::Request);
        m.mux_id = 7;
        m.seq = seq;
        m.flags = if more { Flags::MORE } else { Flags::NONE };
        m.payload = Some(Bytes::from_static(data));
        m
    }

    fn bytes(w: Option<Whole>) -> Option<Bytes> {
        w.expect("complete").payload.into_bytes()
    }

    #[test]
    fn parts_are_joined_in_order() {
        let mut a = Assembler::new(100, 1000);
        assert!(a.push(part(3, true, b"ab")).expect("ok").is_none());
        assert!(a.push(part(3, true, b"cd")).expect("ok").is_none());
        assert_eq!(a.held(), 4);
        let whole = a.push(part(3, false, b"e")).expect("ok").expect("complete");
        assert_eq!(whole.msg.seq, 3);
        assert!(!whole.msg.flags.contains(Flags::MORE));
        assert_eq!(
            whole.payload.into_bytes(),
            Some(Bytes::from_static(b"abcde"))
        );
        assert_eq!(a.held(), 0);
    }

    #[test]
    fn unchunked_messages_pass_through() {
        let mut a = Assembler::new(100, 1000);
        assert_eq!(
            bytes(a.push(part(0, false, b"x")).expect("ok")),
            Some(Bytes::from_static(b"x"))
        );
    }

    #[test]
    fn an_absent_payload_stays_absent_while_others_are_reassembled() {
        let mut a = Assembler::new(100, 1000);
        assert!(a.push(part(0, true, b"ab")).expect("ok").is_none());
        let mut eof = Message::new(Op::MuxClientMsg);
        eof.mux_id = 9;
        eof.flags = Flags::EOF;
        let whole = a.push(eof).expect("ok").expect("whole");
        assert_eq!(whole.payload, Payload::Absent);
        let mut empty = Message::new(Op::MuxClientMsg);
        empty.mux_id = 9;
        empty.payload = Some(Bytes::new());
        let whole = a.push(empty).expect("ok").expect("whole");
        assert_eq!(
            whole.payload,
            Payload::Whole(Bytes::new()),
            "and empty stays empty"
        );
    }

    #[test]
    fn interleaved_parts_and_floods_are_errors() {
        let mut a = Assembler::new(4, 1000);
        assert!(a.push(part(0, true, b"ab")).expect("ok").is_none());
        assert!(a.push(part(1, false, b"c")).is_err());
        let mut a = Assembler::new(100, 1000);
        for mux in 0..MAX_IN_PROGRESS as u64 {
            let mut p = part(0, true, b"a");
            p.mux_id = mux;
            assert!(a.push(p).expect("ok").is_none());
        }
        let mut p = part(0, true, b"a");
        p.mux_id = 1000;
        assert!(a.push(p).is_err(), "one payload too many in progress");
        let mut a = Assembler::new(100, 3);
        assert!(
            a.push(part(0, true, b"abcd")).expect("ok").is_none(),
            "one payload alone may exceed the window"
        );
        let mut other = part(0, true, b"x");
        other.mux_id = 8;
        assert!(a.push(other).is_err(), "a second one may not");
    }

    #[test]
    fn an_oversize_payload_is_dropped_as_it_comes_and_returned_with_its_size() {
        for first in [&b"ab"[..], b"abcdef"] {
            let mut a = Assembler::new(4, 1000);
            let mut p = part(0, true, b"");
            p.payload = Some(Bytes::copy_from_slice(first));
            assert!(a.push(p).expect("ok").is_none());
            assert!(a.push(part(0, true, b"cde")).expect("ok").is_none());
            assert_eq!(a.held(), 0, "nothing of it is held once over the limit");
            let whole = a.push(part(0, false, b"fg")).expect("ok").expect("whole");
            assert_eq!(whole.too_large, Some(first.len() + 5));
            assert_eq!(whole.payload, Payload::Absent);
            assert_eq!(a.held(), 0);
            // The next payload of the same mux is reassembled as usual.
            assert!(a.push(part(1, true, b"a")).expect("ok").is_none());
            let whole = a.push(part(1, false, b"b")).expect("ok").expect("whole");
            assert_eq!(whole.too_large, None);
            assert_eq!(whole.payload.into_bytes(), Some(Bytes::from_static(b"ab")));
        }
    }

    #[test]
    fn another_message_of_the_same_call_inside_a_chunked_payload_is_an_error() {
        let other_op = |op: Op, more: bool| {
            let mut m = part(0, more, b"x");
            m.op = op;
            m
        };
        for (op, more) in [
            (Op::ConnectMux, true),
            (Op::ConnectMux, false),
            (Op::MuxClientMsg, false),
        ] {
            let mut a = Assembler::new(100, 1000);
            assert!(a.push(part(0, true, b"ab")).expect("ok").is_none());
            assert!(
                matches!(a.push(other_op(op, more)), Err(Violation::Broken(_))),
                "{op:?} (more: {more})"
            );
        }
        // Credit, cancels and pings may come between the parts; so may the other way's
        // messages on the same mux id (another call).
        let mut a = Assembler::new(100, 1000);
        assert!(a.push(part(0, true, b"ab")).expect("ok").is_none());
        for op in [
            Op::UnblockServerMux,
            Op::Ping,
            Op::Response,
            Op::MuxServerMsg,
        ] {
            assert!(a.push(other_op(op, false)).expect("ok").is_some(), "{op:?}");
        }
        let mut chunk_back = other_op(Op::Response, true);
        chunk_back.seq = 9;
        assert!(a.push(chunk_back).expect("ok").is_none());
        let whole = a.push(part(0, false, b"c")).expect("ok").expect("whole");
        assert_eq!(whole.payload.into_bytes(), Some(Bytes::from_static(b"abc")));
    }

    #[test]
    fn forgetting_releases_what_was_held() {
        let mut a = Assembler::new(100, 1000);
        assert!(a.push(part(0, true, b"abc")).expect("ok").is_none());
        a.forget(Op::Request, 7);
        assert_eq!(a.held(), 0);
        // A new start for the same mux is accepted after forgetting.
        assert!(a.push(part(0, true, b"x")).expect("ok").is_none());
    }
}
