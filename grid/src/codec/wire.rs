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
    pub(crate) fn fixarray(&mut self) -> Result<usize, FrameError> {
        let m = self.byte()?;
        if m & 0xf0 == 0x90 {
            Ok(usize::from(m & 0x0f))
        } else {
            Err(FrameError::Malformed("message must start with a fixarray"))
        }
    }

    /// Reads an unsigned integer in any MessagePack width.
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
        self.frame
            .get(start..end)
            .map_or(0, xxhash_rust::xxh3::xxh3_64)
    }

    /// True when the next byte is a `uint 64` marker (used for the checksum field).
    pub(crate) fn next_is_u64(&self) -> bool {
        self.peek().map(|m| m == 0xcf).unwrap_or(false)
    }
}

/// Writes an unsigned integer in its shortest MessagePack form.
pub(crate) fn write_uint(buf: &mut Vec<u8>, v: u64) {
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_uint(buf, v);
}

/// Writes a `uint 64` (always 9 bytes), used where a fixed width is part of the format.
pub(crate) fn write_u64_fixed(buf: &mut Vec<u8>, v: u64) {
    let _ = rmp::encode::write_u64(buf, v);
}

/// Writes `nil`, or a `bin` header followed by the concatenation of `pieces`.
pub(crate) fn write_nil_or_bin<P: AsRef<[u8]>>(buf: &mut Vec<u8>, pieces: Option<&[P]>) {
    match pieces {
        None => {
            let _ = rmp::encode::write_nil(buf);
        }
        Some(pieces) => {
            let len: usize = pieces.iter().map(|p| p.as_ref().len()).sum();
            // Payload lengths are bounded by the max message size (< 4 GiB) before encoding.
            let _ = rmp::encode::write_bin_len(buf, len as u32);
            for p in pieces {
                buf.extend_from_slice(p.as_ref());
            }
        }
    }
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
