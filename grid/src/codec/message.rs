//! One message: its header fields, ops and flags, and its encoding.

use std::fmt;

use bytes::Bytes;

use super::wire::{self, Reader};
use super::{FrameError, FrameLimits};

/// The id of a handler on the wire. `0` is reserved and never names a handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerId(pub u32);

impl HandlerId {
    /// Creates a handler id.
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The numeric value sent on the wire.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for HandlerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a message means. The numeric values are the wire values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// First message from the dialer: who it is, its instance, its clock, its token.
    Connect = 1,
    /// The acceptor's answer to [`Op::Connect`]: accepted or rejected with a reason.
    ConnectResponse = 2,
    /// Connection liveness probe; the payload is echoed in the [`Op::Pong`].
    Ping = 3,
    /// Answer to [`Op::Ping`].
    Pong = 4,
    /// A single call: handler id, deadline and request payload.
    Request = 5,
    /// The answer to a [`Op::Request`] (or an error with [`Flags::PAYLOAD_IS_ERROR`]).
    Response = 6,
    /// Opens a stream: handler id, deadline and initial payload.
    ConnectMux = 7,
    /// The handler side accepted a stream open; the payload grants the initial credit.
    AckMux = 8,
    /// The handler side refused a stream open; the payload is the error.
    MuxConnectError = 9,
    /// A stream message from the caller to the handler.
    MuxClientMsg = 10,
    /// A stream message from the handler to the caller.
    MuxServerMsg = 11,
    /// Credit returned to the handler side of a stream (caller consumed messages).
    UnblockServerMux = 12,
    /// Credit returned to the caller side of a stream (handler consumed messages).
    UnblockClientMux = 13,
    /// The handler side ended a stream (sent to the caller).
    DisconnectClientMux = 14,
    /// The caller ended or cancelled a call or stream (sent to the handler side).
    DisconnectServerMux = 15,
    /// Several messages in one frame; the payload is their concatenated encodings.
    Merged = 16,
    /// The sender is leaving (shutting down, or leaving the cluster): it admits no new
    /// calls or streams from the receiver, and lets those in flight finish before it
    /// closes. Mux id 0; the payload is the reason, UTF-8.
    Drain = 17,
    /// The first message on a resumed connection: the streams the sender kept (mux id 0;
    /// the payload is a [`crate::codec::ResumedStream`] list).
    Resume = 18,
}

impl Op {
    /// Every op, in wire order.
    pub const ALL: [Op; 18] = [
        Op::Connect,
        Op::ConnectResponse,
        Op::Ping,
        Op::Pong,
        Op::Request,
        Op::Response,
        Op::ConnectMux,
        Op::AckMux,
        Op::MuxConnectError,
        Op::MuxClientMsg,
        Op::MuxServerMsg,
        Op::UnblockServerMux,
        Op::UnblockClientMux,
        Op::DisconnectClientMux,
        Op::DisconnectServerMux,
        Op::Merged,
        Op::Drain,
        Op::Resume,
    ];

    /// The op for a wire value, if it is one.
    pub fn from_u8(v: u8) -> Option<Op> {
        Op::ALL.get(usize::from(v).checked_sub(1)?).copied()
    }
}

/// Header flags, a bit set. See PROTOCOL.md for each bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// The sender's direction ends with this message.
    pub const EOF: Flags = Flags(1);
    /// The payload is an encoded error, not a value.
    pub const PAYLOAD_IS_ERROR: Flags = Flags(2);
    /// The payload is present and zero bytes long (as opposed to absent). Set by the encoder.
    pub const ZERO_LENGTH: Flags = Flags(4);
    /// A subroute hash field follows the payload. Set by the encoder.
    pub const SUBROUTE: Flags = Flags(8);
    /// A checksum field ends the message. Set by the encoder.
    pub const CHECKSUM: Flags = Flags(16);
    /// More parts of this payload follow (a large payload sent in chunks); the parts share
    /// the mux id and op, and `seq` numbers them from 0.
    pub const MORE: Flags = Flags(32);
    /// Bits that have a meaning; others are refused.
    pub const KNOWN: Flags = Flags(63);
    /// Bits the encoder derives from the message; ignored in [`Message::flags`] when encoding.
    pub const DERIVED: Flags = Flags(4 | 8 | 16);

    /// True if every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two sets.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` without the bits of `other`.
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

/// The hash that identifies a subroute on the wire: xxh3-64 of its UTF-8 bytes.
pub fn subroute_hash(subroute: &str) -> u64 {
    crate::codec::wire::xxh3_64(subroute.as_bytes())
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The call or stream this message belongs to (0 for connection-level messages).
    pub mux_id: u64,
    /// Sequence number within the mux (0 where unused).
    pub seq: u32,
    /// Remaining time to the call's deadline in milliseconds (0: none).
    pub deadline_ms: u32,
    /// The handler called (0 where unused).
    pub handler: HandlerId,
    /// What this message means.
    pub op: Op,
    /// EOF and PAYLOAD_IS_ERROR; the derived bits are recomputed when encoding.
    pub flags: Flags,
    /// The subroute hash, if the call targets a subroute.
    pub subroute: Option<u64>,
    /// The payload; `Some(empty)` and `None` are distinct.
    pub payload: Option<Bytes>,
}

impl Message {
    /// A message with the given op and all other fields zero/absent.
    pub fn new(op: Op) -> Self {
        Self {
            mux_id: 0,
            seq: 0,
            deadline_ms: 0,
            handler: HandlerId(0),
            op,
            flags: Flags::NONE,
            subroute: None,
            payload: None,
        }
    }

    /// An error answer of kind `kind` with `op`, to the message `to` (same mux and handler).
    pub fn error_to(op: Op, to: &Message, kind: super::ErrorKind, text: &str) -> Message {
        Self::failure_to(op, to, &super::ErrorPayload::new(kind, text))
    }

    /// An error answer carrying `failure` with `op`, to the message `to` (same mux and
    /// handler).
    pub fn failure_to(op: Op, to: &Message, failure: &super::ErrorPayload) -> Message {
        let mut m = Message::new(op);
        m.mux_id = to.mux_id;
        m.handler = to.handler;
        m.flags = Flags::PAYLOAD_IS_ERROR;
        m.payload = Some(failure.encode());
        m
    }

    /// The flags as they go on the wire.
    pub fn wire_flags(&self, checksum: bool) -> Flags {
        self.borrowed().wire_flags(checksum)
    }

    /// Appends this message's encoding to `buf`: the header is written on the stack and
    /// copied in once, then the payload, the subroute and the checksum.
    pub fn encode_into(&self, buf: &mut Vec<u8>, checksum: bool) {
        self.borrowed().encode_into(buf, checksum);
    }

    /// The same message with its payload borrowed.
    pub(crate) fn borrowed(&self) -> MessageRef<'_> {
        MessageRef {
            mux_id: self.mux_id,
            seq: self.seq,
            deadline_ms: self.deadline_ms,
            handler: self.handler,
            op: self.op,
            flags: self.flags,
            subroute: self.subroute,
            payload: self.payload.as_deref(),
        }
    }

    /// This message's encoding.
    pub fn encode(&self, checksum: bool) -> Vec<u8> {
        let len = self.payload.as_ref().map_or(0, |p| p.len());
        let mut buf = Vec::with_capacity(32 + len);
        self.encode_into(&mut buf, checksum);
        buf
    }

    /// Reads one message starting at the reader's position.
    pub(crate) fn decode(r: &mut Reader<'_>, limits: FrameLimits) -> Result<Message, FrameError> {
        Self::decode_checked(r, limits).map(|(m, _)| m)
    }

    /// Reads one message, and whether it carried a (verified) checksum.
    pub(crate) fn decode_checked(
        r: &mut Reader<'_>,
        limits: FrameLimits,
    ) -> Result<(Message, bool), FrameError> {
        let max_payload = limits.max_payload;
        let start = r.pos();
        let n = r.fixarray()?;
        let mux_id = r.uint()?;
        let seq = narrow(r.uint()?, "seq")?;
        let deadline_ms = narrow(r.uint()?, "deadline")?;
        let handler = HandlerId(narrow(r.uint()?, "handler")?);
        let op_raw: u8 = narrow(r.uint()?, "op")?;
        let op = Op::from_u8(op_raw).ok_or(FrameError::UnknownOp(op_raw))?;
        let flags = Flags(narrow(r.uint()?, "flags")?);
        if !Flags::KNOWN.contains(flags) {
            return Err(FrameError::Malformed("unknown flag bits set"));
        }
        if limits.require_checksum && op != Op::Merged && !flags.contains(Flags::CHECKSUM) {
            return Err(FrameError::MissingChecksum);
        }
        let expected = 7
            + usize::from(flags.contains(Flags::SUBROUTE))
            + usize::from(flags.contains(Flags::CHECKSUM));
        if n != expected {
            return Err(FrameError::Malformed(
                "array length does not match the flags",
            ));
        }
        let payload = r.nil_or_bin()?;
        match &payload {
            Some(p) if p.len() > max_payload && op != Op::Merged => {
                return Err(FrameError::TooLarge {
                    size: p.len(),
                    limit: max_payload,
                })
            }
            Some(p) if p.is_empty() != flags.contains(Flags::ZERO_LENGTH) => {
                return Err(FrameError::Malformed(
                    "ZERO_LENGTH flag does not match the payload",
                ))
            }
            None if flags.contains(Flags::ZERO_LENGTH) => {
                return Err(FrameError::Malformed(
                    "ZERO_LENGTH flag on an absent payload",
                ))
            }
            _ => {}
        }
        let subroute = if flags.contains(Flags::SUBROUTE) {
            Some(r.uint()?)
        } else {
            None
        };
        if flags.contains(Flags::CHECKSUM) {
            let covered_end = r.pos();
            if !r.next_is_u64() {
                return Err(FrameError::Malformed("checksum must be a uint 64"));
            }
            let sum = r.uint()?;
            if sum != r.checksum_of(start, covered_end) {
                return Err(FrameError::BadChecksum);
            }
        }
        let message = Message {
            mux_id,
            seq,
            deadline_ms,
            handler,
            op,
            flags: flags.without(Flags::DERIVED),
            subroute,
            payload,
        };
        Ok((message, flags.contains(Flags::CHECKSUM)))
    }
}

fn narrow<T: TryFrom<u64>>(v: u64, field: &'static str) -> Result<T, FrameError> {
    T::try_from(v).map_err(|_| FrameError::OutOfRange(field))
}

/// A message's fields with its payload borrowed: encodes exactly as the [`Message`] it
/// stands for, without owning the payload (a sender encoding straight into a queue keeps
/// its payload, and frees it after the lock).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MessageRef<'a> {
    pub(crate) mux_id: u64,
    pub(crate) seq: u32,
    pub(crate) deadline_ms: u32,
    pub(crate) handler: HandlerId,
    pub(crate) op: Op,
    pub(crate) flags: Flags,
    pub(crate) subroute: Option<u64>,
    pub(crate) payload: Option<&'a [u8]>,
}

impl MessageRef<'_> {
    fn wire_flags(&self, checksum: bool) -> Flags {
        let mut f = self.flags.without(Flags::DERIVED);
        if matches!(self.payload, Some(p) if p.is_empty()) {
            f = f | Flags::ZERO_LENGTH;
        }
        if self.subroute.is_some() {
            f = f | Flags::SUBROUTE;
        }
        if checksum {
            f = f | Flags::CHECKSUM;
        }
        f
    }

    /// See [`Message::encode_into`].
    #[inline]
    pub(crate) fn encode_into(&self, buf: &mut Vec<u8>, checksum: bool) {
        let flags = self.wire_flags(checksum);
        let payload = self.payload;
        let start = buf.len();
        buf.reserve(wire::HEAD_MAX + payload.map_or(0, <[u8]>::len) + 18);
        wire::write_head(buf, |head| {
            head.byte(0x90 | (7 + u8::from(self.subroute.is_some()) + u8::from(checksum)));
            head.uint(self.mux_id);
            head.uint(u64::from(self.seq));
            head.uint(u64::from(self.deadline_ms));
            head.uint(u64::from(self.handler.0));
            head.uint(self.op as u64);
            head.uint(u64::from(flags.0));
            head.nil_or_bin(payload.map(<[u8]>::len));
        });
        if let Some(p) = payload {
            buf.extend_from_slice(p);
        }
        if let Some(h) = self.subroute {
            wire::write_head(buf, |tail| tail.uint(h));
        }
        if checksum {
            let sum = crate::codec::wire::xxh3_64(buf.get(start..).unwrap_or_default());
            wire::write_u64_fixed(buf, sum);
        }
    }
}

/// The header of one stream's data messages but for their number and payload length,
/// written once: each message's header is then the two pieces, with its number between
/// and its length after, for a fraction of what writing every field costs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DataHead {
    /// The array marker (seven fields) and the mux id.
    before: wire::Piece,
    /// The deadline (none), handler, op and flags (none)...
    after: wire::Piece,
    /// ...and the same with the flag an empty payload carries.
    after_empty: wire::Piece,
}

impl DataHead {
    pub(crate) fn new(mux_id: u64, handler: HandlerId, op: Op) -> Self {
        let mut before = wire::Head::new();
        before.byte(0x90 | 7);
        before.uint(mux_id);
        let after = |flags: Flags| {
            let mut after = wire::Head::new();
            after.uint(0);
            after.uint(u64::from(handler.0));
            after.uint(op as u64);
            after.uint(u64::from(flags.0));
            after.piece()
        };
        Self {
            before: before.piece(),
            after: after(Flags::NONE),
            after_empty: after(Flags::ZERO_LENGTH),
        }
    }

    /// Appends the data message numbered `seq` carrying `payload`: the bytes
    /// [`MessageRef::encode_into`] writes for it, without a checksum.
    #[inline]
    pub(crate) fn encode_into(&self, buf: &mut Vec<u8>, seq: u32, payload: &[u8]) {
        buf.reserve(wire::HEAD_MAX + payload.len());
        wire::write_head(buf, |head| {
            head.put(&self.before);
            head.uint(u64::from(seq));
            head.put(if payload.is_empty() {
                &self.after_empty
            } else {
                &self.after
            });
            head.nil_or_bin(Some(payload.len()));
        });
        buf.extend_from_slice(payload);
    }

    /// Begins the data message numbered `seq` whose payload the caller appends straight
    /// after (encoding it in place, with no buffer of its own); returns where the payload
    /// starts. [`DataHead::end`] then completes it: the bytes are [`DataHead::encode_into`]'s
    /// for a payload of 1 to [`DataHead::MAX_IN_PLACE`] bytes.
    #[inline]
    pub(crate) fn begin(&self, buf: &mut Vec<u8>, seq: u32) -> usize {
        wire::write_head(buf, |head| {
            head.put(&self.before);
            head.uint(u64::from(seq));
            head.put(&self.after);
        });
        // A bin 8 marker, its length written by `end` (which widens it to bin 16 for a
        // payload over 255 bytes: the shortest form, as `encode_into` writes). Most staged
        // payloads are short, so the payload is moved only for the longer ones.
        buf.extend_from_slice(&[0xc4, 0]);
        buf.len()
    }

    /// Completes the message [`DataHead::begin`] began, whose payload is `buf[at..]`. False,
    /// changing nothing, when the payload is empty or longer than
    /// [`DataHead::MAX_IN_PLACE`]: such a message is not encoded in place (the caller takes
    /// its payload out and drops what was begun).
    #[inline]
    pub(crate) fn end(buf: &mut Vec<u8>, at: usize) -> bool {
        let len = buf.len().saturating_sub(at);
        if len == 0 || len > Self::MAX_IN_PLACE || at < 2 {
            return false;
        }
        if len <= 0xff {
            if let Some(marker) = buf.get_mut(at - 1) {
                *marker = len as u8;
            }
        } else {
            buf.push(0);
            buf.copy_within(at..at + len, at + 1);
            if let Some(marker) = buf.get_mut(at - 2..at + 1) {
                let [hi, lo] = (len as u16).to_be_bytes();
                marker.copy_from_slice(&[0xc5, hi, lo]);
            }
        }
        true
    }

    /// Longest payload [`DataHead::begin`] and [`DataHead::end`] encode in place.
    pub(crate) const MAX_IN_PLACE: usize = 0xffff;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_head_writes_the_same_bytes_as_writing_every_field() {
        let edges = [
            0u64,
            1,
            0x7f,
            0x80,
            0xff,
            0x100,
            0xffff,
            0x1_0000,
            0xffff_ffff,
        ];
        for mux_id in edges.iter().copied().chain([1 << 40, u64::MAX]) {
            for handler in edges.map(|h| HandlerId(h as u32)) {
                for op in [Op::MuxServerMsg, Op::MuxClientMsg] {
                    let head = DataHead::new(mux_id, handler, op);
                    for seq in edges.map(|s| s as u32) {
                        for len in [0, 1, 2, 255, 256, 2048, 0xffff, 0x1_0000] {
                            let payload = vec![0xA5; len];
                            let mut fast = vec![9];
                            head.encode_into(&mut fast, seq, &payload);
                            let mut slow = vec![9];
                            let m = MessageRef {
                                mux_id,
                                seq,
                                deadline_ms: 0,
                                handler,
                                op,
                                flags: Flags::NONE,
                                subroute: None,
                                payload: Some(&payload),
                            };
                            m.encode_into(&mut slow, false);
                            assert_eq!(fast, slow, "{mux_id} {handler:?} {op:?} {seq} {len}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_payload_encoded_in_place_makes_the_same_bytes_as_one_copied_in() {
        let head = DataHead::new(3, HandlerId(0x1_0001), Op::MuxServerMsg);
        for seq in [0, 1, 0x80, u32::MAX] {
            for len in [1, 2, 0x7f, 0xff, 0x100, 0x101, 2048, 0xffff] {
                // A pattern, so a payload shifted by a byte shows.
                let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
                let mut copied = vec![9];
                head.encode_into(&mut copied, seq, &payload);
                let mut in_place = vec![9];
                let at = head.begin(&mut in_place, seq);
                in_place.extend_from_slice(&payload);
                assert!(DataHead::end(&mut in_place, at));
                assert_eq!(in_place, copied, "seq {seq}, {len} bytes");
            }
        }
        for len in [0, 0x1_0000] {
            let mut buf = vec![9];
            let at = head.begin(&mut buf, 5);
            buf.resize(at + len, 1);
            let before = buf.clone();
            assert!(!DataHead::end(&mut buf, at), "{len} bytes are not in place");
            assert_eq!(buf, before, "and nothing changed");
        }
    }
}
