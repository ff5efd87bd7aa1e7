//! Reassembling payloads that were sent in chunks (flag [`Flags::MORE`]).
//!
//! Large payloads travel as several messages so that the writer can interleave them with
//! other traffic. The reader task owns one [`Assembler`]; it is plain state (no locks, no
//! I/O), fed every incoming message, and returns whole messages.

use std::collections::HashMap;

use bytes::BytesMut;

use crate::codec::{Flags, Message, Op};

struct Partial {
    body: BytesMut,
    /// The sequence number every part repeats (the message's own, for streams).
    seq: u32,
}

/// Payloads being reassembled, keyed by (op, mux id).
pub(crate) struct Assembler {
    partials: HashMap<(Op, u64), Partial>,
    /// Bytes held in partial payloads.
    held: usize,
    max_message: usize,
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
    /// peer breaks the rules (a gap, an oversize payload, too much held).
    pub(crate) fn push(&mut self, msg: Message) -> Result<Option<Message>, String> {
        let more = msg.flags.contains(Flags::MORE);
        if !more && self.partials.is_empty() {
            return Ok(Some(msg));
        }
        let key = (msg.op, msg.mux_id);
        let Some(partial) = self.partials.get_mut(&key) else {
            if !more {
                return Ok(Some(msg));
            }
            let body_len = msg.payload.as_ref().map_or(0, |p| p.len());
            self.hold(body_len)?;
            let mut body = BytesMut::with_capacity(body_len * 2);
            body.extend_from_slice(msg.payload.as_deref().unwrap_or_default());
            self.partials.insert(key, Partial { body, seq: msg.seq });
            return Ok(None);
        };
        if msg.seq != partial.seq {
            return Err(format!(
                "a part of message {} of mux {} arrived inside message {}",
                msg.seq, msg.mux_id, partial.seq
            ));
        }
        let part = msg.payload.as_deref().unwrap_or_default();
        if partial.body.len() + part.len() > self.max_message {
            return Err(format!(
                "chunked payload of mux {} exceeds the maximum message size of {} bytes",
                msg.mux_id, self.max_message
            ));
        }
        let (held, max_held) = (self.held + part.len(), self.max_held);
        if held > max_held {
            return Err(format!(
                "peer has more than {max_held} bytes of chunked payloads in flight"
            ));
        }
        self.held = held;
        partial.body.extend_from_slice(part);
        if more {
            return Ok(None);
        }
        let Some(done) = self.partials.remove(&key) else {
            return Ok(None);
        };
        self.held -= done.body.len();
        let mut whole = msg;
        whole.flags = whole.flags.without(Flags::MORE);
        whole.payload = Some(done.body.freeze());
        Ok(Some(whole))
    }

    /// Drops a partial payload (its call was cancelled).
    pub(crate) fn forget(&mut self, op: Op, mux_id: u64) {
        if let Some(p) = self.partials.remove(&(op, mux_id)) {
            self.held -= p.body.len();
        }
    }

    fn hold(&mut self, bytes: usize) -> Result<(), String> {
        if self.held + bytes > self.max_held {
            return Err(format!(
                "peer has more than {} bytes of chunked payloads in flight",
                self.max_held
            ));
        }
        self.held += bytes;
        Ok(())
    }

    /// Bytes held in partial payloads.
    pub(crate) fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn part(seq: u32, more: bool, data: &'static [u8]) -> Message {
        let mut m = Message::new(Op::Request);
        m.mux_id = 7;
        m.seq = seq;
        m.flags = if more { Flags::MORE } else { Flags::NONE };
        m.payload = Some(Bytes::from_static(data));
        m
    }

    #[test]
    fn parts_are_joined_in_order() {
        let mut a = Assembler::new(100, 1000);
        assert_eq!(a.push(part(3, true, b"ab")), Ok(None));
        assert_eq!(a.push(part(3, true, b"cd")), Ok(None));
        assert_eq!(a.held(), 4);
        let whole = a.push(part(3, false, b"e")).expect("ok").expect("complete");
        assert_eq!(whole.payload, Some(Bytes::from_static(b"abcde")));
        assert_eq!(whole.seq, 3);
        assert!(!whole.flags.contains(Flags::MORE));
        assert_eq!(a.held(), 0);
    }

    #[test]
    fn unchunked_messages_pass_through() {
        let mut a = Assembler::new(100, 1000);
        let m = part(0, false, b"x");
        assert_eq!(a.push(m.clone()), Ok(Some(m)));
    }

    #[test]
    fn interleaved_oversize_and_floods_are_errors() {
        let mut a = Assembler::new(4, 1000);
        assert_eq!(a.push(part(0, true, b"ab")), Ok(None));
        assert!(a.push(part(1, false, b"c")).is_err());
        let mut a = Assembler::new(4, 1000);
        assert_eq!(a.push(part(0, true, b"ab")), Ok(None));
        assert!(a.push(part(1, false, b"cde")).is_err());
        let mut a = Assembler::new(100, 3);
        assert!(a.push(part(0, true, b"abcd")).is_err());
    }

    #[test]
    fn forgetting_releases_what_was_held() {
        let mut a = Assembler::new(100, 1000);
        assert_eq!(a.push(part(0, true, b"abc")), Ok(None));
        a.forget(Op::Request, 7);
        assert_eq!(a.held(), 0);
        // A new start for the same mux is accepted after forgetting.
        assert_eq!(a.push(part(0, true, b"x")), Ok(None));
    }
}
