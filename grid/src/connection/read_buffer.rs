//! The reader's buffer, reused rather than reallocated.
//!
//! Received payloads are slices of the buffer they were read into (no copy), so a buffer
//! stays allocated as long as any message read from it is alive. Allocating a fresh buffer
//! every time the current one is still referenced would cost a large allocation every few
//! frames, and (with glibc) every large allocation first consolidates all the small chunks
//! freed meanwhile, which makes each small allocation after it several times slower. So
//! the reader keeps the few buffers it filled last and refills the first one whose
//! messages are all gone; a new buffer is allocated only when none is free.
//!
//! Bounds: at most [`SPARES`] buffers are kept besides the active one, and only buffers of
//! at most [`MAX_SPARE`] bytes (the one that held a very large message is let go, to be
//! freed with its last message).

use std::collections::VecDeque;

use bytes::BytesMut;

/// Size of a read buffer.
const SIZE: usize = 64 * 1024;
/// Buffers kept for reuse besides the active one.
const SPARES: usize = 3;
/// Largest buffer kept for reuse.
const MAX_SPARE: usize = 4 * SIZE;

pub(crate) struct ReadBuffer {
    active: BytesMut,
    /// Size of the active buffer's allocation.
    active_size: usize,
    /// Buffers filled before, emptied (their unread bytes moved on), with their sizes.
    spares: VecDeque<(BytesMut, usize)>,
}

impl ReadBuffer {
    pub(crate) fn new() -> Self {
        Self {
            active: BytesMut::with_capacity(SIZE),
            active_size: SIZE,
            spares: VecDeque::new(),
        }
    }

    /// The bytes read and not yet taken, with the room after them.
    pub(crate) fn bytes(&mut self) -> &mut BytesMut {
        &mut self.active
    }

    /// Size of the active buffer's allocation.
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        self.active_size
    }

    /// Makes room for at least `additional` bytes after those buffered.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let active = &mut self.active;
        if active.capacity() - active.len() >= additional || active.try_reclaim(additional) {
            return;
        }
        let want = (active.len() + additional).max(SIZE);
        let free = self
            .spares
            .iter_mut()
            .position(|(spare, size)| *size >= want && spare.try_reclaim(want));
        let (mut next, size) = match free.and_then(|i| self.spares.remove(i)) {
            Some(spare) => spare,
            None => (BytesMut::with_capacity(want), want),
        };
        next.extend_from_slice(active);
        let mut old = std::mem::replace(active, next);
        let old_size = std::mem::replace(&mut self.active_size, size);
        old.clear();
        if old_size <= MAX_SPARE {
            if self.spares.len() >= SPARES {
                self.spares.pop_front();
            }
            self.spares.push_back((old, old_size));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_once_its_messages_are_gone() {
        let mut buf = ReadBuffer::new();
        buf.bytes().extend_from_slice(&[1; SIZE - 100]);
        let message = buf.bytes().split_to(SIZE - 200).freeze();
        let first = message.as_ptr();
        // The active buffer is still referenced by `message`: a new one takes over.
        buf.reserve(4096);
        assert_eq!(
            buf.bytes().len(),
            100,
            "unread bytes move to the new buffer"
        );
        assert_ne!(buf.bytes().as_ptr(), first);
        let second = buf.bytes().split_to(100).freeze();
        drop(message);
        buf.bytes().extend_from_slice(&[2; 1000]);
        // More room than the active buffer has (and `second` holds it): the first one,
        // free again, is reused, with the unread bytes moved in.
        buf.reserve(SIZE - 1050);
        assert_eq!(buf.bytes().as_ptr(), first);
        assert_eq!(&buf.bytes()[..], &[2; 1000][..]);
        drop(second);
    }

    #[test]
    fn spares_are_bounded_and_large_buffers_not_kept() {
        let mut buf = ReadBuffer::new();
        let mut held = Vec::new();
        for _ in 0..10 {
            buf.bytes().extend_from_slice(&[0; 64]);
            held.push(buf.bytes().split_to(64).freeze());
            buf.reserve(SIZE);
        }
        assert_eq!(buf.spares.len(), SPARES);
        buf.bytes().extend_from_slice(&[0; 64]);
        held.push(buf.bytes().split_to(64).freeze());
        buf.reserve(2 * MAX_SPARE);
        buf.bytes().extend_from_slice(&[0; 64]);
        held.push(buf.bytes().split_to(64).freeze());
        buf.reserve(2 * MAX_SPARE);
        assert!(buf.spares.iter().all(|(_, size)| *size <= MAX_SPARE));
        assert_eq!(buf.spares.len(), SPARES);
    }
}
