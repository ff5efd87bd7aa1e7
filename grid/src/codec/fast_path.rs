//! The common message decoded in one pass.
//!
//! Almost every message of a busy connection is a plain one inside a merged frame: seven
//! fields, no subroute, no checksum of its own, small integers. [`decode_plain`] reads
//! exactly that form straight off the bytes, checking every length as it goes, and gives
//! up (`None`) on anything else, leaving it to the full decoder, which handles every form
//! and says precisely what is wrong. It never accepts what the full decoder refuses, and
//! when it accepts, it yields the same message and end position (tested below against the
//! full decoder on random and corrupted input).

use bytes::Bytes;

use super::message::{Flags, HandlerId, Message, Op};

/// Flags the plain form may carry: not SUBROUTE or CHECKSUM (their fields would follow).
const PLAIN_FLAGS: u8 = Flags::KNOWN.0 & !(Flags::SUBROUTE.0 | Flags::CHECKSUM.0);

/// A plain message's header, its payload left in the frame (no slice taken yet): a
/// receiver that routes messages by header decides first, and slices only what it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainHead {
    /// See [`Message::mux_id`].
    pub mux_id: u64,
    /// See [`Message::seq`].
    pub seq: u32,
    /// See [`Message::deadline_ms`].
    pub deadline_ms: u32,
    /// See [`Message::handler`].
    pub handler: HandlerId,
    /// See [`Message::op`].
    pub op: Op,
    /// See [`Message::flags`] (derived bits removed).
    pub flags: Flags,
    /// Where the payload is in the frame (start, end), if there is one.
    pub payload: Option<(usize, usize)>,
}

impl PlainHead {
    /// The whole message, its payload sliced from `frame` (the one it was read from).
    pub fn to_message(&self, frame: &Bytes) -> Message {
        Message {
            mux_id: self.mux_id,
            seq: self.seq,
            deadline_ms: self.deadline_ms,
            handler: self.handler,
            op: self.op,
            flags: self.flags,
            subroute: None,
            payload: self.payload.map(|(start, end)| frame.slice(start..end)),
        }
    }
}

/// Decodes the plain message starting at `pos` in `frame`, with its end position; `None`
/// if the message is not in the plain form (or is malformed: the full decoder says how).
/// Merged wrappers are never plain.
#[inline]
pub(crate) fn decode_plain(
    frame: &Bytes,
    pos: usize,
    max_payload: usize,
) -> Option<(Message, usize)> {
    let (head, end) = plain_head(frame, pos, max_payload)?;
    Some((head.to_message(frame), end))
}

/// As [`decode_plain`], leaving the payload in the frame.
#[inline]
pub(crate) fn plain_head(
    frame: &[u8],
    pos: usize,
    max_payload: usize,
) -> Option<(PlainHead, usize)> {
    let b = frame.get(pos..)?;
    if *b.first()? != 0x97 {
        return None;
    }
    let mut i = 1;
    let mux_id = uint(b, &mut i)?;
    let seq = u32::try_from(uint(b, &mut i)?).ok()?;
    let deadline_ms = u32::try_from(uint(b, &mut i)?).ok()?;
    let handler = HandlerId(u32::try_from(uint(b, &mut i)?).ok()?);
    let op = Op::from_u8(*b.get(i)?)?;
    let flags = Flags(*b.get(i + 1)?);
    i += 2;
    if op == Op::Merged || flags.0 & !PLAIN_FLAGS != 0 {
        return None;
    }
    let (len, at) = match *b.get(i)? {
        0xc0 if flags.contains(Flags::ZERO_LENGTH) => return None,
        0xc0 => (0, None),
        0xc4 => (usize::from(*b.get(i + 1)?), Some(i + 2)),
        0xc5 => (
            usize::from(u16::from_be_bytes(array(b, i + 1)?)),
            Some(i + 3),
        ),
        0xc6 => (
            usize::try_from(u32::from_be_bytes(array(b, i + 1)?)).ok()?,
            Some(i + 5),
        ),
        _ => return None,
    };
    let (payload, end) = match at {
        None => (None, pos + i + 1),
        Some(at) => {
            if len > max_payload || (len == 0) != flags.contains(Flags::ZERO_LENGTH) {
                return None;
            }
            let start = pos + at;
            let end = start.checked_add(len).filter(|&end| end <= frame.len())?;
            (Some((start, end)), end)
        }
    };
    let head = PlainHead {
        mux_id,
        seq,
        deadline_ms,
        handler,
        op,
        flags: flags.without(Flags::DERIVED),
        payload,
    };
    Some((head, end))
}

/// An unsigned integer in any MessagePack width at `b[*i..]`.
#[inline(always)]
fn uint(b: &[u8], i: &mut usize) -> Option<u64> {
    let at = *i;
    let (v, width) = match *b.get(at)? {
        m @ 0x00..=0x7f => (u64::from(m), 1),
        0xcc => (u64::from(*b.get(at + 1)?), 2),
        0xcd => (u64::from(u16::from_be_bytes(array(b, at + 1)?)), 3),
        0xce => (u64::from(u32::from_be_bytes(array(b, at + 1)?)), 5),
        0xcf => (u64::from_be_bytes(array(b, at + 1)?), 9),
        _ => return None,
    };
    *i = at + width;
    Some(v)
}

#[inline(always)]
fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::wire::Reader;
    use crate::codec::FrameLimits;

    fn full(frame: &Bytes, pos: usize, max: usize) -> Result<(Message, usize), String> {
        let mut r = Reader::new(frame, pos);
        let m = Message::decode(&mut r, FrameLimits::new(max)).map_err(|e| e.to_string())?;
        Ok((m, r.pos()))
    }

    fn any_message() -> impl Strategy<Value = Message> {
        let op = (1u8..=18).prop_map(|v| Op::from_u8(v).unwrap_or(Op::Request));
        let uint = prop_oneof![0u64..200, 0u64..70_000, any::<u64>()];
        let payload = prop::option::of(prop::collection::vec(any::<u8>(), 0..300));
        (
            uint.clone(),
            any::<u32>(),
            0u32..300,
            0u32..300,
            op,
            0u8..64,
        )
            .prop_flat_map(move |t| (Just(t), payload.clone(), prop::option::of(any::<u64>())))
            .prop_map(|((mux, seq, dl, h, op, fl), payload, sub)| Message {
                mux_id: mux,
                seq,
                deadline_ms: dl,
                handler: HandlerId(h),
                op,
                flags: Flags(fl).without(Flags::DERIVED),
                subroute: sub,
                payload: payload.map(Bytes::from),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn plain_messages_decode_as_the_full_decoder_does(
            m in any_message(),
            checksum in any::<bool>(),
            lead in 0usize..3,
        ) {
            let mut buf = vec![0xc0; lead];
            m.encode_into(&mut buf, checksum);
            let frame = Bytes::from(buf);
            let fast = decode_plain(&frame, lead, 1 << 20);
            let slow = full(&frame, lead, 1 << 20);
            prop_assert_eq!(slow.as_ref().map(|(m, _)| m), Ok(&m));
            let plain = m.subroute.is_none() && !checksum && m.op != Op::Merged;
            prop_assert_eq!(fast.is_some(), plain);
            if let Some(fast) = fast {
                prop_assert_eq!(Ok(fast), slow);
            }
        }

        #[test]
        fn on_corrupted_bytes_it_accepts_only_what_the_full_decoder_accepts(
            m in any_message(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<bool>()), 1..4),
            cut in any::<prop::sample::Index>(),
            max in prop_oneof![Just(1usize << 20), 0usize..64],
        ) {
            let mut buf = m.encode(false);
            for (at, byte, in_header) in edits {
                // Half the edits hit the header, where the fields are.
                let span = if in_header { buf.len().min(16) } else { buf.len() };
                let i = at.index(span);
                buf[i] = byte;
            }
            buf.truncate(cut.index(buf.len() + 1));
            let frame = Bytes::from(buf);
            if let Some(fast) = decode_plain(&frame, 0, max) {
                prop_assert_eq!(Ok(fast), full(&frame, 0, max));
            }
        }
    }

    #[test]
    fn payload_and_zero_length_flag_must_agree() {
        // Plain request, no payload but ZERO_LENGTH; and an empty bin without it.
        for bytes in [
            &[0x97, 1, 0, 0, 1, 5, 4, 0xc0][..],
            &[0x97, 1, 0, 0, 1, 5, 0, 0xc4, 0][..],
            &[0x97, 1, 0, 0, 1, 5, 4, 0xc4, 1, 9][..],
        ] {
            let frame = Bytes::copy_from_slice(bytes);
            assert!(full(&frame, 0, 100).is_err());
            assert_eq!(decode_plain(&frame, 0, 100), None);
        }
        let frame = Bytes::from_static(&[0x97, 1, 0, 0, 1, 5, 4, 0xc4, 0]);
        let (m, end) = decode_plain(&frame, 0, 100).expect("plain");
        assert_eq!((m.payload, end), (Some(Bytes::new()), 9));
    }
}
