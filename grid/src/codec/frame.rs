//! Frames: what one WebSocket binary message carries (one message, or a merged batch).

use bytes::Bytes;

use super::fast_path::{decode_plain, plain_head, PlainHead};
use super::message::{Flags, Message, Op};
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
/// [`Op::Merged`] message wrapping their encodings when there are several. With `checksum`,
/// a single message carries its own, and a merged frame one for all (its inner messages
/// none).
pub fn encode_frame(messages: &[Message], checksum: bool) -> Bytes {
    let mut builder = FrameBuilder::new(0);
    let merged = messages.len() > 1;
    for m in messages {
        builder.push(m, checksum && !merged);
    }
    let start = builder.finish(checksum && merged);
    Bytes::copy_from_slice(&builder.buffer()[start..])
}

/// The most bytes the header of a merged wrapper takes (fixarray, six small fields, and a
/// `bin 32` marker with its length).
const WRAPPER_HEADER: usize = 7 + 5;
/// The checksum field that may end a merged wrapper (`uint 64`).
const CHECKSUM_FIELD: usize = 9;

/// A builder's initial buffer, and what [`FrameBuilder::shrink`] keeps.
const INITIAL: usize = 4096;

/// Builds one frame straight into a reused buffer: messages are encoded one after another,
/// and when there are several, the merged wrapper's header is written in front of them
/// afterwards (into room kept free for it), so nothing is copied twice. Room for a
/// transport header (`headroom` bytes) is kept in front of the frame as well.
#[derive(Debug)]
pub struct FrameBuilder {
    buf: Vec<u8>,
    headroom: usize,
    count: usize,
    /// Messages were appended already encoded (without checksums of their own): the frame
    /// is a merged one whatever their number.
    encoded: bool,
}

impl FrameBuilder {
    /// An empty builder keeping `headroom` bytes free in front of every frame.
    pub fn new(headroom: usize) -> Self {
        let mut buf = Vec::with_capacity(INITIAL);
        buf.resize(headroom + WRAPPER_HEADER, 0);
        Self {
            buf,
            headroom,
            count: 0,
            encoded: false,
        }
    }

    /// Appends one message.
    pub fn push(&mut self, message: &Message, checksum: bool) {
        message.encode_into(&mut self.buf, checksum);
        self.count += 1;
    }

    /// Appends `count` messages already encoded back to back, without checksums of their
    /// own (the frame is then always a merged one, which carries the checksum for all).
    pub fn push_encoded(&mut self, bytes: &[u8], count: usize) {
        self.buf.extend_from_slice(bytes);
        self.count += count;
        self.encoded = true;
    }

    /// Messages pushed since the last [`FrameBuilder::clear`].
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no message was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the messages pushed so far.
    pub fn body_len(&self) -> usize {
        self.buf.len() - self.headroom - WRAPPER_HEADER
    }

    /// Completes the frame and returns where it starts in [`FrameBuilder::buffer`]: the
    /// frame is `buffer()[start..]`, and at least `headroom` bytes are free before `start`.
    /// With `checksum`, a merged wrapper ends with one checksum over the whole frame (its
    /// messages were pushed without theirs); a single message pushed whole is left as
    /// pushed (with its own checksum if it was pushed with one).
    pub fn finish(&mut self, checksum: bool) -> usize {
        let body = self.headroom + WRAPPER_HEADER;
        if self.count < 2 && !self.encoded {
            return body;
        }
        // The wrapper: fixarray of 7 (8 with the checksum), mux/seq/deadline/handler 0, op
        // Merged, flags 0 (CHECKSUM), and the payload's bin marker; the payload is the body
        // already in place, the checksum is appended after it.
        let mut header = [0u8; WRAPPER_HEADER];
        header[0] = if checksum { 0x98 } else { 0x97 };
        header[5] = Op::Merged as u8;
        header[6] = if checksum { Flags::CHECKSUM.0 } else { 0 };
        let (marker, used) = super::wire::bin_marker(self.body_len());
        let n = 7 + used;
        header[7..n].copy_from_slice(&marker[..used]);
        let start = body - n;
        if let Some(dst) = self.buf.get_mut(start..body) {
            dst.copy_from_slice(&header[..n]);
        }
        if checksum {
            let sum = crate::codec::wire::xxh3_64(self.buf.get(start..).unwrap_or_default());
            self.buf.reserve(CHECKSUM_FIELD);
            super::wire::write_u64_fixed(&mut self.buf, sum);
        }
        start
    }

    /// The whole buffer (headroom included); see [`FrameBuilder::finish`].
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// The whole buffer, writable (a transport fills its header and masks in place).
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Gives back memory beyond a small frame's worth (kept: what the frame holds).
    pub fn shrink(&mut self) {
        self.buf.shrink_to(INITIAL.max(self.buf.len()));
    }

    /// Empties the builder for the next frame, keeping its allocation.
    pub fn clear(&mut self) {
        self.buf.truncate(self.headroom + WRAPPER_HEADER);
        self.count = 0;
        self.encoded = false;
    }
}

/// Decodes one received frame into its messages (a merged frame yields its parts).
///
/// This collects the whole frame; a receiver that must bound the work one frame can cause
/// uses [`FrameMessages`] instead, which decodes one message at a time.
pub fn decode_frame(frame: &Bytes, limits: FrameLimits) -> Result<Vec<Message>, FrameError> {
    let mut messages = FrameMessages::new(frame, limits)?;
    let mut out = Vec::new();
    for m in &mut messages {
        out.push(m?);
    }
    Ok(out)
}

/// The messages of one received frame, decoded one at a time (a merged frame yields its
/// parts in order). After the first error the iterator ends.
pub struct FrameMessages {
    /// The merged payload being walked, or the single message not yet yielded.
    inner: Inner,
    limits: FrameLimits,
}

enum Inner {
    One(Option<Message>),
    Merged { payload: Bytes, pos: usize },
    Done,
}

impl FrameMessages {
    /// Checks the frame's outer message and prepares to walk it.
    ///
    /// # Errors
    /// Any [`FrameError`] of the outer message (a merged wrapper without payload, trailing
    /// bytes after it, ...).
    pub fn new(frame: &Bytes, mut limits: FrameLimits) -> Result<Self, FrameError> {
        let mut r = Reader::new(frame, 0);
        let (top, checksummed) = Message::decode_checked(&mut r, limits)?;
        if r.remaining() != 0 {
            return Err(FrameError::Malformed("trailing bytes after the message"));
        }
        if checksummed {
            // One checksum over the whole merged frame covers the messages inside it.
            limits = limits.requiring_checksums(false);
        }
        let inner = if top.op == Op::Merged {
            let payload = top
                .payload
                .ok_or(FrameError::Malformed("merged message without payload"))?;
            if payload.is_empty() {
                return Err(FrameError::Malformed("empty merged message"));
            }
            Inner::Merged { payload, pos: 0 }
        } else {
            Inner::One(Some(top))
        };
        Ok(Self { inner, limits })
    }
}

/// One message of a frame, as [`FrameMessages::next_decoded`] yields it.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// A plain message (seven fields, no checksum or subroute of its own): its header, and
    /// the frame its payload is in.
    Plain(PlainHead, &'a Bytes),
    /// Any other message, decoded whole.
    Whole(Message),
}

impl FrameMessages {
    /// The next message, a plain one left undecoded past its header (see [`Decoded`]).
    /// After the first error the messages end.
    pub fn next_decoded(&mut self) -> Option<Result<Decoded<'_>, FrameError>> {
        let plain = match &self.inner {
            Inner::Merged { payload, pos } if !self.limits.require_checksum => {
                plain_head(payload, *pos, self.limits.max_payload)
            }
            _ => None,
        };
        if let Some((head, end)) = plain {
            return match &mut self.inner {
                Inner::Merged { payload, pos } => {
                    *pos = end;
                    Some(Ok(Decoded::Plain(head, payload)))
                }
                _ => None,
            };
        }
        self.next().map(|r| r.map(Decoded::Whole))
    }
}

impl Iterator for FrameMessages {
    type Item = Result<Message, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::One(one) => {
                let m = one.take();
                if m.is_none() {
                    self.inner = Inner::Done;
                }
                m.map(Ok)
            }
            Inner::Merged { payload, pos } => {
                if *pos >= payload.len() {
                    self.inner = Inner::Done;
                    return None;
                }
                if !self.limits.require_checksum {
                    if let Some((m, end)) = decode_plain(payload, *pos, self.limits.max_payload) {
                        *pos = end;
                        return Some(Ok(m));
                    }
                }
                let mut r = Reader::new(payload, *pos);
                let decoded = Message::decode(&mut r, self.limits).and_then(|m| {
                    if m.op == Op::Merged {
                        Err(FrameError::Malformed("merged messages cannot nest"))
                    } else {
                        Ok(m)
                    }
                });
                match decoded {
                    Ok(m) => {
                        *pos = r.pos();
                        Some(Ok(m))
                    }
                    Err(e) => {
                        self.inner = Inner::Done;
                        Some(Err(e))
                    }
                }
            }
            Inner::Done => None,
        }
    }
}
