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
        self.frame
            .get(start..end)
            .map_or(0, xxhash_rust::xxh3::xxh3_64)
    }

    /// True when the next byte is a `uint 64` marker (used for the checksum field).
    pub(crate) fn next_is_u64(&self) -> bool {
        self.peek().map(|m| m == 0xcf).unwrap_or(false)
    }
}

/// A message header being written: the fields in their shortest MessagePack forms, into a
/// small array on the stack (the longest header, seven fields and a `bin 32` marker, takes
/// 1 + 6 × 9 + 5 bytes), then copied into the frame in one go.
pub(crate) struct Head {
    bytes: [u8; 64],
    len: usize,
}

impl Head {
    pub(crate) fn new() -> Self {
        Self {
            bytes: [0; 64],
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn byte(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    #[inline]
    fn be(&mut self, marker: u8, be: &[u8]) {
        self.byte(marker);
        let end = self.len + be.len();
        if let Some(dst) = self.bytes.get_mut(self.len..end) {
            dst.copy_from_slice(be);
            self.len = end;
        }
    }

    /// An unsigned integer in its shortest form.
    #[inline]
    pub(crate) fn uint(&mut self, v: u64) {
        if v < 0x80 {
            self.byte(v as u8);
        } else if let Ok(v) = u8::try_from(v) {
            self.be(0xcc, &[v]);
        } else if let Ok(v) = u16::try_from(v) {
            self.be(0xcd, &v.to_be_bytes());
        } else if let Ok(v) = u32::try_from(v) {
            self.be(0xce, &v.to_be_bytes());
        } else {
            self.be(0xcf, &v.to_be_bytes());
        }
    }

    /// `nil`, or the marker and length of a `bin` of `len` bytes.
    #[inline]
    pub(crate) fn nil_or_bin(&mut self, len: Option<usize>) {
        match len {
            None => self.byte(0xc0),
            Some(len) => {
                let (marker, used) = bin_marker(len);
                if let Some(m) = marker.get(..used) {
                    for b in m {
                        self.byte(*b);
                    }
                }
            }
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
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
