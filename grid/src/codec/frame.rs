//! Frames: what one WebSocket binary message carries (one message, or a merged batch).

use bytes::Bytes;

use super::message::{encode_parts, Flags, Message, Op};
use super::wire::Reader;

/// Why a received frame was refused. Any of these ends the connection (the peer is broken
/// or the bytes were corrupted); none of them panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame ended in the middle of a field.
    #[error("frame truncated")]
    Truncated,
    /// A payload is larger than the configured maximum.
    #[error("payload of {size} bytes exceeds the maximum message size of {limit} bytes")]
    TooLarge {
        /// The payload size that was announced.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The checksum does not match the bytes.
    #[error("checksum mismatch")]
    BadChecksum,
    /// A message lacks the checksum this connection requires.
    #[error("message without the required checksum")]
    MissingChecksum,
    /// The op is not one this version knows.
    #[error("unknown op {0}")]
    UnknownOp(u8),
    /// A numeric field does not fit its type.
    #[error("field {0} out of range")]
    OutOfRange(&'static str),
    /// The bytes do not follow the format.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

/// Limits applied while decoding.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// The largest payload a single message may carry.
    pub max_payload: usize,
    /// Refuse any message other than a merged wrapper that carries no checksum (set on
    /// connections that use checksums, so a corrupted op or flag cannot slip through).
    pub require_checksum: bool,
}

impl FrameLimits {
    /// Limits with the given maximum payload, checksums optional.
    pub const fn new(max_payload: usize) -> Self {
        Self {
            max_payload,
            require_checksum: false,
        }
    }

    /// The same limits, requiring checksums or not.
    pub const fn requiring_checksums(mut self, require: bool) -> Self {
        self.require_checksum = require;
        self
    }
}

/// Encodes messages into one frame: the message itself when there is one, a
/// [`Op::Merged`] message wrapping their encodings when there are several.
pub fn encode_frame(messages: &[Message], checksum: bool) -> Bytes {
    match messages {
        [one] => Bytes::from(one.encode(checksum)),
        many => {
            let encoded: Vec<Bytes> = many
                .iter()
                .map(|m| Bytes::from(m.encode(checksum)))
                .collect();
            Bytes::from(encode_merged(&encoded))
        }
    }
}

/// Wraps already-encoded messages into one [`Op::Merged`] message. The wrapper carries no
/// checksum of its own: when checksums are on, every inner message carries one (hashing the
/// same bytes twice would only cost time).
pub(crate) fn encode_merged(encoded: &[Bytes]) -> Vec<u8> {
    let total: usize = encoded.iter().map(Bytes::len).sum();
    let mut buf = Vec::with_capacity(total + 16);
    let head = Message::new(Op::Merged);
    encode_parts(&mut buf, &head, Some(encoded), Flags::NONE, false);
    buf
}

/// Decodes one received frame into its messages (a merged frame yields its parts).
pub fn decode_frame(frame: &Bytes, limits: FrameLimits) -> Result<Vec<Message>, FrameError> {
    let mut r = Reader::new(frame, 0);
    let top = Message::decode(&mut r, limits)?;
    if r.remaining() != 0 {
        return Err(FrameError::Malformed("trailing bytes after the message"));
    }
    if top.op != Op::Merged {
        return Ok(vec![top]);
    }
    let inner = top
        .payload
        .ok_or(FrameError::Malformed("merged message without payload"))?;
    let mut r = Reader::new(&inner, 0);
    // Every message takes at least 9 bytes, which bounds this allocation by the frame size.
    let mut out = Vec::with_capacity((inner.len() / 9).min(1024));
    while r.remaining() > 0 {
        let m = Message::decode(&mut r, limits)?;
        if m.op == Op::Merged {
            return Err(FrameError::Malformed("merged messages cannot nest"));
        }
        out.push(m);
    }
    if out.is_empty() {
        return Err(FrameError::Malformed("empty merged message"));
    }
    Ok(out)
}
