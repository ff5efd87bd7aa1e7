//! What the writer sends next, and the frames it makes of it.
//!
//! [`Engine::poll_transmit`](super::Engine::poll_transmit) fills a [`Transmit`] under the
//! engine's lock: the messages streams encoded as they queued them are copied straight into
//! the frame being built; other messages are moved in whole and encoded by the writer after
//! the lock, by [`Transmit::build_batch`]. A chunk of a large payload makes a frame of its
//! own ([`Transmit::build_chunk`]).

use bytes::Bytes;

use super::out_queue::payload_len;
use crate::codec::{FrameBuilder, Message};

/// Largest merged frame built from small messages.
pub(crate) const MERGE_LIMIT: usize = 64 * 1024;
/// Most messages merged into one frame.
pub(crate) const MAX_BATCH: usize = 512;

/// The room `count` small messages of `payload` bytes in all take in a merged frame (their
/// headers included, roughly), as counted against [`MERGE_LIMIT`].
pub(super) fn frame_room(payload: usize, count: usize) -> usize {
    payload + 16 * count
}

/// Whether `messages` small messages taking `room` bytes ([`frame_room`]) fill a frame.
pub(super) fn fills_frame(messages: usize, room: usize) -> bool {
    messages >= MAX_BATCH || room >= MERGE_LIMIT
}

/// What the writer sends next: WebSocket-level pong, merged messages, one chunk.
#[derive(Debug)]
pub(crate) struct Transmit {
    /// The payload of a WebSocket-level ping to answer.
    pub(crate) transport_pong: Option<Bytes>,
    /// The frame of small messages being built: the early-encoded ones are in already.
    frame: FrameBuilder,
    /// Small messages kept whole, encoded into `frame` by [`Transmit::build_batch`].
    whole: Vec<Message>,
    /// One chunk of a large payload, for a frame of its own.
    pub(crate) chunk: Option<Message>,
    /// Messages in the batch (early and whole), and the room they take ([`frame_room`]).
    count: usize,
    bytes: usize,
    /// Some were encoded early (without checksums of their own): the frame is a merged
    /// one, whatever the count.
    early: bool,
}

impl Transmit {
    /// An empty transmit whose frames keep `headroom` bytes free in front (for the
    /// transport's header).
    pub(crate) fn new(headroom: usize) -> Self {
        Self {
            transport_pong: None,
            frame: FrameBuilder::new(headroom),
            whole: Vec::new(),
            chunk: None,
            count: 0,
            bytes: 0,
            early: false,
        }
    }

    pub(super) fn clear(&mut self) {
        self.transport_pong = None;
        self.frame.clear();
        self.whole.clear();
        self.chunk = None;
        self.count = 0;
        self.bytes = 0;
        self.early = false;
    }

    /// Gives back the memory a busy spell grew (the frame's buffer, the batch's list),
    /// keeping what is in them.
    pub(crate) fn shrink(&mut self) {
        self.frame.shrink();
        self.whole.shrink_to_fit();
    }

    pub(super) fn is_empty(&self) -> bool {
        self.transport_pong.is_none() && self.count == 0 && self.chunk.is_none()
    }

    /// No more small messages fit in this frame.
    pub(super) fn is_full(&self) -> bool {
        fills_frame(self.count, self.bytes)
    }

    /// Adds a small message, kept whole.
    pub(super) fn push(&mut self, m: Message) {
        self.note(payload_len(&m));
        self.whole.push(m);
    }

    /// Counts one more small message of `payload` bytes (towards [`Transmit::is_full`]).
    pub(super) fn note(&mut self, payload: usize) {
        self.count += 1;
        self.bytes += frame_room(payload, 1);
    }

    /// Copies messages encoded early into the frame (counted with [`Transmit::note`]).
    pub(super) fn push_encoded(&mut self, bytes: &[u8], count: usize) {
        self.frame.push_encoded(bytes, count);
        self.early = true;
    }

    /// Small messages in the batch.
    pub(crate) fn messages(&self) -> usize {
        self.count
    }

    /// Completes the frame of small messages and returns where it starts in
    /// [`Transmit::frame`]; `None` if there are none. With `checksum`, a merged frame
    /// carries one for all its messages, a frame of one whole message its own. The whole
    /// messages are dropped here, outside the engine's lock.
    pub(crate) fn build_batch(&mut self, checksum: bool) -> Option<usize> {
        if self.count == 0 {
            return None;
        }
        let merged = self.count > 1 || self.early;
        for m in self.whole.drain(..) {
            self.frame.push(&m, checksum && !merged);
        }
        Some(self.frame.finish(checksum && merged))
    }

    /// Builds the chunk's frame (after the batch's was sent: it reuses the buffer) and
    /// returns where it starts; `None` if there is no chunk.
    pub(crate) fn build_chunk(&mut self, checksum: bool) -> Option<usize> {
        let chunk = self.chunk.take()?;
        self.frame.clear();
        self.frame.push(&chunk, checksum);
        Some(self.frame.finish(false))
    }

    /// The frame last built.
    pub(crate) fn frame(&mut self) -> &mut FrameBuilder {
        &mut self.frame
    }
}
