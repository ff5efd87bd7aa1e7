//! The few MessagePack forms the header uses, read from an untrusted byte slice.
//!
//! Writing goes through `rmp`; reading is done here by hand so that every length is checked
//! against what is left before anything is sliced or allocated, and so that payloads are
//! borrowed from the frame (`Bytes::slice`) instead of copied.

use bytes::Bytes;

use super::FrameError;

/// A cursor over a received frame.
pub(crate) struct Reader<'a> {
    frame: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(frame: &'a Bytes, pos: usize) -> Self {
        Self { frame, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.frame.len().saturating_sub(self.pos)
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, FrameError> {
        let b = *self.frame.get(self.pos).ok_or(FrameError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn peek(&self) -> Result<u8, FrameError> {
        self.frame
            .get(self.pos)
            .copied()
            .ok_or(FrameError::Truncated)
    }

    fn be(&mut self, n: usize) -> Result<u64, FrameError> {
        let end = self.pos.checked_add(n).ok_or(FrameError::Truncated)?;
        let bytes = self.frame.get(self.pos..end).ok_or(FrameError::Truncated)?;
        self.pos = end;
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Reads a fixarray marker and returns its length.
    #[inline]
    pub(crate) fn fixarray(&mut self) -> Result<usize, FrameError> {
        let m = self.byte()?;
        if m & 0xf0 == 0x90 {
            Ok(usize::from(m & 0x0f))
        } else {
            Err(FrameError::Malformed("message must start with a fixarray"))
        }
    }

    /// Reads an unsigned integer in any MessagePack width.
    #[inline(always)]
    pub(crate) fn uint(&mut self) -> Result<u64, FrameError> {
        match self.byte()? {
            m @ 0x00..=0x7f => Ok(u64::from(m)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            _ => Err(FrameError::Malformed("expected an unsigned integer")),
        }
    }

    /// Reads `nil` (→ `None`) or a `bin` (→ a slice of the frame).
    #[inline]
    pub(crate) fn nil_or_bin(&mut self) -> Result<Option<Bytes>, FrameError> {
        let len = match self.byte()? {
            0xc0 => return Ok(None),
            0xc4 => self.be(1)?,
            0xc5 => self.be(2)?,
            0xc6 => self.be(4)?,
            _ => return Err(FrameError::Malformed("expected nil or bin payload")),
        };
        let len = usize::try_from(len).map_err(|_| FrameError::Truncated)?;
        if len > self.remaining() {
            return Err(FrameError::Truncated);
        }
        let start = self.pos;
        self.pos += len;
        Ok(Some(self.frame.slice(start..self.pos)))
    }

    /// xxh3-64 of the frame bytes in `start..end` (both already read, so in bounds).
    pub(crate) fn checksum_of(&self, start: usize, end: usize) -> u64 {
        self.frame.get(start..end).map_or(0, xxh3_64)
    }

    /// True when the next byte is a `uint 64` marker (used for the checksum field).
    pub(crate) fn next_is_u64(&self) -> bool {
        self.peek().map(|m| m == 0xcf).unwrap_or(false)
    }
}

/// Room for the longest header: the fixarray marker, six fields of at most 9 bytes, and a
/// `bin 32` marker with its length (1 + 54 + 5), rounded up.
pub(crate) const HEAD_MAX: usize = 64;

/// A message header being written: the fields in their shortest MessagePack forms. Every
/// field is stored with one fixed-size write (its unused tail is overwritten by the next
/// field), so writing a header takes no per-byte bounds checks or loops.
///
/// A message's header is written straight into the buffer the message is encoded in
/// ([`write_head`], over `&mut [u8]`): copied out of an array it has just been stored into,
/// its bytes would be read back while the stores are still in flight, and a read spanning
/// several of them waits until all have completed (measured, perf: the copy was half of
/// what a staged record of a typed stream cost its sender's task). The array form
/// ([`Head::new`]) only makes the [`Piece`]s a stream's headers are put together from.
pub(crate) struct Head<B = [u8; HEAD_MAX]> {
    bytes: B,
    len: usize,
}

impl Head {
    pub(crate) fn new() -> Self {
        Self {
            bytes: [0; HEAD_MAX],
            len: 0,
        }
    }
}

/// Writes a header with `write` straight into `buf` after its bytes (room for
/// [`HEAD_MAX`] is made, then cut back to the header's length).
#[inline(always)]
pub(crate) fn write_head(buf: &mut Vec<u8>, write: impl FnOnce(&mut Head<&mut [u8]>)) {
    let start = buf.len();
    buf.resize(start + HEAD_MAX, 0);
    let len = match buf.get_mut(start..) {
        Some(bytes) => {
            let mut head = Head { bytes, len: 0 };
            write(&mut head);
            head.len
        }
        None => 0,
    };
    buf.truncate(start + len);
}

impl<B: AsMut<[u8]>> Head<B> {
    /// Nine bytes from the end of what is written (none if the header is full, which the
    /// callers' field counts never reach).
    #[inline(always)]
    fn slot(&mut self) -> Option<&mut [u8; 9]> {
        self.bytes
            .as_mut()
            .get_mut(self.len..self.len + 9)?
            .try_into()
            .ok()
    }

    #[inline(always)]
    pub(crate) fn byte(&mut self, b: u8) {
        if let Some(slot) = self.slot() {
            slot[0] = b;
            self.len += 1;
        }
    }

    /// `marker` followed by the low `width` bytes of `v`, big-endian.
    #[inline(always)]
    fn marked(&mut self, marker: u8, v: u64, width: usize) {
        if let Some(slot) = self.slot() {
            slot[0] = marker;
            let aligned = v << (64 - 8 * width as u32);
            if let Some(rest) = slot.last_chunk_mut::<8>() {
                *rest = aligned.to_be_bytes();
            }
            self.len += 1 + width;
        }
    }

    /// An unsigned integer in its shortest form.
    #[inline(always)]
    pub(crate) fn uint(&mut self, v: u64) {
        if v < 0x80 {
            self.byte(v as u8);
        } else if v <= 0xff {
            self.marked(0xcc, v, 1);
        } else if v <= 0xffff {
            self.marked(0xcd, v, 2);
        } else if v <= 0xffff_ffff {
            self.marked(0xce, v, 4);
        } else {
            self.marked(0xcf, v, 8);
        }
    }

    /// `nil`, or the marker and length of a `bin` of `len` bytes.
    #[inline(always)]
    pub(crate) fn nil_or_bin(&mut self, len: Option<usize>) {
        match len {
            None => self.byte(0xc0),
            Some(len) if len <= 0xff => self.marked(0xc4, len as u64, 1),
            Some(len) if len <= 0xffff => self.marked(0xc5, len as u64, 2),
            // Payload lengths are bounded by the max message size (< 4 GiB) before encoding.
            Some(len) => self.marked(0xc6, len as u64, 4),
        }
    }

    /// Writes a piece of header made before (one fixed-size copy).
    #[inline(always)]
    pub(crate) fn put(&mut self, piece: &Piece) {
        if let Some(slot) = self.bytes.as_mut().get_mut(self.len..self.len + 16) {
            slot.copy_from_slice(&piece.bytes);
            self.len += piece.len;
        }
    }
}

impl Head {
    /// What is written, as a [`Piece`] to write into other headers (at most 16 bytes of it:
    /// callers write a few fields).
    pub(crate) fn piece(&self) -> Piece {
        let mut bytes = [0; 16];
        let len = self.len.min(16);
        bytes[..len].copy_from_slice(&self.bytes[..len]);
        Piece { bytes, len }
    }
}

/// A few fields of a header, written once and copied into many ([`Head::put`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    bytes: [u8; 16],
    len: usize,
}

/// Writes a `uint 64` (always 9 bytes), used where a fixed width is part of the format.
pub(crate) fn write_u64_fixed(buf: &mut Vec<u8>, v: u64) {
    buf.push(0xcf);
    buf.extend_from_slice(&v.to_be_bytes());
}
/// The marker and length of a `bin` of `len` bytes, in its shortest form: the bytes and
/// how many of them are used.
pub(crate) fn bin_marker(len: usize) -> ([u8; 5], usize) {
    let mut m = [0u8; 5];
    if let Ok(short) = u8::try_from(len) {
        m[0] = 0xc4;
        m[1] = short;
        (m, 2)
    } else if let Ok(mid) = u16::try_from(len) {
        m[0] = 0xc5;
        m[1..3].copy_from_slice(&mid.to_be_bytes());
        (m, 3)
    } else {
        // Payload lengths are bounded by the max message size (< 4 GiB) before encoding.
        m[0] = 0xc6;
        m[1..5].copy_from_slice(&(len as u32).to_be_bytes());
        (m, 5)
    }
}

/// xxh3-64 (seed 0) of `bytes`: the hash of checksums, subroutes and dial order (PROTOCOL.md
/// §1–§2). On x86-64 it uses AVX2 when the CPU has it, chosen at run time (measured: 1.5×
/// the SSE2 speed on 16 KiB frames, 443 → 298 ns).
#[inline]
pub(crate) fn xxh3_64(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(bytes)
}
