//! WebSocket framing (RFC 6455) on the two halves of a socket, after the HTTP upgrade.
//!
//! The upgrade itself is done by tokio-tungstenite; after it the socket is split into a
//! read half owned by the reader task and a write half owned by the writer task, so
//! neither ever waits for a lock held by the other or is woken for the other's readiness.
//! Received payloads are slices of the read buffer (no copy).
//!
//! Only what grid needs is spoken: binary messages (fragmented ones are reassembled),
//! ping (answered by the caller of [`FrameReader::next`]), pong (ignored) and close.

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use bytes::Bytes;

use super::lost::Lost;
use super::read_buffer::ReadBuffer;
use crate::codec::Close;

/// The read half of a connection's socket.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection's socket.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

/// Which end of the WebSocket this is: the dialer (client) masks what it sends, the
/// acceptor (server) does not, and each requires the other's convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Dialer,
    Acceptor,
}

/// What the reader got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A complete binary message.
    Binary(Bytes),
    /// A WebSocket-level ping; answer with [`FrameWriter::pong`].
    Ping(Bytes),
    /// The peer closed the WebSocket (with its code and reason, if it gave them).
    Close(Option<Close>),
}

/// A parsed frame header.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: u64,
}

/// Parses a frame header from the start of `buf`; `Ok(None)` if more bytes are needed.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, String> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err("WebSocket frame with reserved bits set".into());
    }
    let (payload_len, mut at) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let Some(m) = buf
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
        else {
            return Ok(None);
        };
        at += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        mask,
        header_len: at,
        payload_len,
    }))
}

/// XORs `buf` with the 4-byte mask (masking and unmasking are the same operation).
fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A frame header for a final frame: the bytes and how many are used (2 to 14).
fn header(opcode: u8, len: usize, mask: Option<[u8; 4]>) -> ([u8; 14], usize) {
    let mut h = [0u8; 14];
    h[0] = 0x80 | opcode;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut at = 2;
    if len < 126 {
        h[1] = mask_bit | len as u8;
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = mask_bit | 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        at = 4;
    } else {
        h[1] = mask_bit | 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        at = 10;
    }
    if let Some(m) = mask {
        h[at..at + 4].copy_from_slice(&m);
        at += 4;
    }
    (h, at)
}

/// Appends a frame header for a final frame.
fn write_header(buf: &mut Vec<u8>, opcode: u8, len: usize, mask: Option<[u8; 4]>) {
    let (h, n) = header(opcode, len, mask);
    buf.extend_from_slice(&h[..n]);
}

/// Reads WebSocket messages from the read half.
pub(crate) struct FrameReader {
    io: ReadHalf,
    buf: ReadBuffer,
    role: Role,
    max_message: usize,
    /// A fragmented binary message being reassembled.
    partial: Option<BytesMut>,
    /// Bytes still missing of the frame being read (its room is reserved already).
    missing: usize,
}

impl FrameReader {
    pub(crate) fn new(io: ReadHalf, role: Role, max_message: usize) -> Self {
        Self {
            io,
            buf: ReadBuffer::new(),
            role,
            max_message,
            partial: None,
            missing: 0,
        }
    }

    /// The connection has been quiet: let go of the buffers busy traffic needed.
    pub(crate) fn quiet(&mut self) {
        self.buf.quiet();
    }

    /// The next message, or why the socket can no longer be read: it failed, or the peer
    /// broke the WebSocket protocol ([`Lost::Violation`], with the close to answer).
    ///
    /// # Cancel safety
    /// Cancel safe: bytes read so far stay buffered for the next call.
    pub(crate) async fn next(&mut self) -> Result<Incoming, Lost> {
        loop {
            if let Some(incoming) = self.parse_one()? {
                return Ok(incoming);
            }
            // Room to read into; for a frame whose size is known, only what it still
            // misses (reserved when its header was read): asking for more would make a
            // large frame's buffer be allocated and copied again near its end. A read
            // leaves room behind it for the frame it may stop in (read_buffer.rs).
            match self.missing {
                0 => self.buf.reserve_read(),
                missing => self.buf.reserve(missing.min(4096)),
            }
            let limit = self.buf.read_limit(self.missing);
            let room = self.buf.room();
            let read = match limit {
                Some(limit) => self.io.read_buf(&mut self.buf.bytes().limit(limit)).await,
                None => self.io.read_buf(self.buf.bytes()).await,
            };
            match read {
                Ok(0) => return Err(Lost::Failed("peer closed the socket".into())),
                Ok(n) => self.buf.read(n, limit.unwrap_or(room)),
                Err(e) => return Err(Lost::Failed(format!("socket read failed: {e}"))),
            }
        }
    }

    /// Takes one complete frame off the buffer, if there is one.
    fn parse_one(&mut self) -> Result<Option<Incoming>, Lost> {
        let broken = |why: String| Lost::Violation(Close::new(Close::PROTOCOL_ERROR, why));
        loop {
            let Some(h) = parse_header(self.buf.bytes()).map_err(broken)? else {
                return Ok(None);
            };
            let expect_mask = self.role == Role::Acceptor;
            if h.mask.is_some() != expect_mask {
                return Err(broken(format!(
                    "WebSocket frame {} a mask, against RFC 6455 for this side",
                    if expect_mask { "without" } else { "with" }
                )));
            }
            let partial_len = self.partial.as_ref().map_or(0, BytesMut::len);
            let len = usize::try_from(h.payload_len)
                .ok()
                .filter(|l| l.saturating_add(partial_len) <= self.max_message)
                .ok_or_else(|| {
                    Lost::Violation(Close::new(
                        Close::TOO_BIG,
                        format!(
                            "WebSocket message of {} bytes exceeds the limit of {} bytes",
                            h.payload_len.saturating_add(partial_len as u64),
                            self.max_message
                        ),
                    ))
                })?;
            if h.opcode & 0x8 != 0 && (len > 125 || !h.fin) {
                // RFC 6455 §5.5: control frames are short and never fragmented.
                return Err(broken(format!(
                    "WebSocket control frame (opcode {:#x}) of {len} bytes{}; at most 125, unfragmented",
                    h.opcode,
                    if h.fin { "" } else { ", fragmented" }
                )));
            }
            let total = h.header_len + len;
            self.buf.frame(total);
            let buffered = self.buf.bytes().len();
            if buffered < total {
                self.buf.reserve(total - buffered);
                self.missing = total - buffered;
                return Ok(None);
            }
            self.missing = 0;
            let mut payload = self.buf.bytes().split_to(total);
            payload.advance(h.header_len);
            if let Some(mask) = h.mask {
                apply_mask(&mut payload, mask);
            }
            match (h.opcode, h.fin) {
                (OP_BINARY, true) if self.partial.is_none() => {
                    return Ok(Some(Incoming::Binary(payload.freeze())))
                }
                (OP_BINARY, false) if self.partial.is_none() => self.partial = Some(payload),
                (OP_CONTINUATION, fin) => {
                    let mut whole = self.partial.take().ok_or_else(|| {
                        broken("WebSocket continuation without a message to continue".into())
                    })?;
                    whole.extend_from_slice(&payload);
                    if fin {
                        return Ok(Some(Incoming::Binary(whole.freeze())));
                    }
                    self.partial = Some(whole);
                }
                (OP_BINARY, _) => {
                    return Err(broken("WebSocket message started inside another".into()))
                }
                (OP_PING, true) => return Ok(Some(Incoming::Ping(payload.freeze()))),
                (OP_PONG, true) => {}
                (OP_CLOSE, true) => return Ok(Some(Incoming::Close(Close::decode(&payload)))),
                (OP_TEXT, _) => {
                    return Err(Lost::Violation(Close::new(
                        1003,
                        "WebSocket text message; grid speaks binary only",
                    )))
                }
                (op, _) => return Err(broken(format!("unsupported WebSocket opcode {op:#x}"))),
            }
        }
    }
}

/// Room a [`crate::codec::FrameBuilder`] keeps in front of a frame for the WebSocket
/// header (at most 14 bytes: 2, 8 of length, 4 of mask).
pub(crate) const HEADROOM: usize = 14;

/// Writes WebSocket messages to the write half.
pub(crate) struct FrameWriter {
    io: WriteHalf,
    role: Role,
    buf: Vec<u8>,
}

impl FrameWriter {
    pub(crate) fn new(io: WriteHalf, role: Role) -> Self {
        Self {
            io,
            role,
            buf: Vec::with_capacity(64),
        }
    }

    /// Sends one binary message.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled send may leave half a frame on the socket, so the
    /// socket must then be dropped (the writer task only stops by ending the session).
    pub(crate) async fn binary(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.frame(OP_BINARY, payload).await
    }

    /// Sends the frame a builder holds (`buffer()[start..]`) as one binary message: the
    /// WebSocket header goes into the room in front of it and the payload is masked in
    /// place, so the message leaves in one write without a copy.
    ///
    /// # Cancel safety
    /// As [`FrameWriter::binary`].
    pub(crate) async fn send_built(
        &mut self,
        frame: &mut crate::codec::FrameBuilder,
        start: usize,
    ) -> std::io::Result<()> {
        let buf = frame.buffer_mut();
        let len = buf.len().saturating_sub(start);
        let mask = match self.role {
            Role::Dialer => Some(rand::random::<[u8; 4]>()),
            Role::Acceptor => None,
        };
        let (header, n) = header(OP_BINARY, len, mask);
        let Some(at) = start.checked_sub(n) else {
            return Err(std::io::Error::other("no room for the WebSocket header"));
        };
        if let Some(m) = mask {
            if let Some(payload) = buf.get_mut(start..) {
                apply_mask(payload, m);
            }
        }
        if let Some(dst) = buf.get_mut(at..start) {
            dst.copy_from_slice(&header[..n]);
        }
        match buf.get(at..) {
            Some(bytes) => self.io.write_all(bytes).await,
            None => Ok(()),
        }
    }

    /// Answers a WebSocket-level ping.
    pub(crate) async fn pong(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.frame(OP_PONG, payload).await
    }

    /// Sends a close frame saying `close` and shuts the write half down.
    ///
    /// # Cancel safety
    /// As [`FrameWriter::binary`].
    pub(crate) async fn close(&mut self, close: &Close) -> std::io::Result<()> {
        self.frame(OP_CLOSE, &close.encode()).await?;
        self.io.shutdown().await
    }

    async fn frame(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        self.buf.clear();
        match self.role {
            Role::Dialer => {
                let mask: [u8; 4] = rand::random();
                write_header(&mut self.buf, opcode, payload.len(), Some(mask));
                let start = self.buf.len();
                self.buf.extend_from_slice(payload);
                apply_mask(&mut self.buf[start..], mask);
                self.io.write_all(&self.buf).await
            }
            Role::Acceptor => {
                write_header(&mut self.buf, opcode, payload.len(), None);
                let mut both = Buf::chain(&self.buf[..], payload);
                self.io.write_all_buf(&mut both).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_at_every_length_class() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut buf = Vec::new();
                write_header(&mut buf, OP_BINARY, len, mask);
                let h = parse_header(&buf).expect("valid").expect("complete");
                assert_eq!(
                    h,
                    Header {
                        fin: true,
                        opcode: OP_BINARY,
                        mask,
                        header_len: buf.len(),
                        payload_len: len as u64
                    }
                );
                for cut in 0..buf.len() {
                    assert_eq!(parse_header(&buf[..cut]), Ok(None), "cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn masking_is_an_involution_and_matches_the_rfc_example() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut hello = *b"Hello";
        apply_mask(&mut hello, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(hello, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        let original: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut data = original.clone();
        apply_mask(&mut data, [9, 8, 7, 6]);
        assert_ne!(data, original);
        apply_mask(&mut data, [9, 8, 7, 6]);
        assert_eq!(data, original);
    }

    /// What a dialer's reader makes of `bytes` (unmasked frames, as an acceptor sends).
    fn read(bytes: Vec<u8>) -> Result<Incoming, Lost> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut r = FrameReader::new(Box::new(std::io::Cursor::new(bytes)), Role::Dialer, 1 << 20);
        rt.block_on(r.next())
    }

    /// Hands out its bytes in the pieces given, one per read.
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(mut piece) = self.0.pop_front() {
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                if n < piece.len() {
                    self.0.push_front(piece.split_off(n));
                }
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_large_frame_is_read_into_one_buffer_allocated_once() {
        let len = 300_000;
        let mut frame = Vec::new();
        write_header(&mut frame, OP_BINARY, len, None);
        frame.extend(std::iter::repeat_n(5u8, len));
        let total = frame.len();
        // The last piece leaves less than 4 KiB to read: no reason to grow the buffer.
        let last = frame.split_off(total - 1000);
        let first = frame.split_off(10);
        let pieces = Pieces([frame, first, last].into_iter().collect());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut r = FrameReader::new(Box::new(pieces), Role::Dialer, 1 << 20);
        match rt.block_on(r.next()) {
            Ok(Incoming::Binary(b)) => assert_eq!(b.len(), len),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.buf.allocated(),
            total,
            "allocated once, to the frame's size"
        );
    }

    #[test]
    fn bulk_frames_are_read_whole_in_place_not_moved_between_buffers() {
        // Merged frames of four 16 KiB messages, back to back, as fast as the socket gives
        // them, the last few kept alive (as a receive queue does).
        let (frames, len) = (40, 4 * (16 * 1024 + 20));
        let mut bytes = Vec::new();
        for i in 0..frames {
            write_header(&mut bytes, OP_BINARY, len, None);
            bytes.extend(std::iter::repeat_n(i as u8, len));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut r = FrameReader::new(Box::new(std::io::Cursor::new(bytes)), Role::Dialer, 1 << 20);
        let mut kept = std::collections::VecDeque::new();
        for i in 0..frames {
            match rt.block_on(r.next()) {
                Ok(Incoming::Binary(b)) => {
                    assert!(
                        b.len() == len && b.iter().all(|&x| x == i as u8),
                        "frame {i}"
                    );
                    kept.push_back(b);
                }
                other => panic!("frame {i}: {other:?}"),
            }
            if kept.len() > 4 {
                kept.pop_front();
            }
        }
        // Only the start moves anything: the first frame's header is read into a small
        // buffer. Without room left behind each read, every buffer ends inside a frame
        // and about half of all bytes are moved.
        assert!(
            r.buf.moved < len,
            "{} of {} bytes moved",
            r.buf.moved,
            frames * len
        );
    }

    #[test]
    fn control_frames_are_short_and_whole() {
        for (fin, len, ok) in [
            (0x80u8, 125usize, true),
            (0x80, 126, false),
            (0x00, 3, false),
        ] {
            let mut frame = Vec::new();
            let mut header = Vec::new();
            write_header(&mut header, OP_PING, len, None);
            header[0] = (header[0] & 0x7f) | fin;
            frame.extend_from_slice(&header);
            frame.extend(std::iter::repeat_n(7u8, len));
            match read(frame) {
                Ok(Incoming::Ping(p)) => assert!(ok && p.len() == len, "{len} accepted"),
                Err(Lost::Violation(c)) => {
                    assert!(!ok, "{len} refused: {c}");
                    assert_eq!(c.code, Close::PROTOCOL_ERROR);
                    assert!(c.reason.contains("control frame"), "{c}");
                }
                other => panic!("{len}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_close_frame_is_read_with_its_code_and_reason() {
        let close = Close::new(Close::POLICY, "too many");
        let mut frame = Vec::new();
        write_header(&mut frame, OP_CLOSE, close.encode().len(), None);
        frame.extend_from_slice(&close.encode());
        assert_eq!(read(frame), Ok(Incoming::Close(Some(close))));
    }

    #[test]
    fn reserved_bits_are_refused() {
        assert!(parse_header(&[0xc2, 0x00]).is_err());
    }
}
