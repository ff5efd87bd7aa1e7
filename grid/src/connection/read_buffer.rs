//! The reader's buffer, reused rather than reallocated, and kept small on a quiet
//! connection.
//!
//! Received payloads are slices of the buffer they were read into (no copy), so a buffer
//! stays allocated as long as any message read from it is alive. Allocating a fresh buffer
//! every time the current one is still referenced would cost a large allocation every few
//! frames, and (with glibc) every large allocation first consolidates all the small chunks
//! freed meanwhile, which makes each small allocation after it several times slower. So
//! the reader keeps the few buffers it filled last and refills the first one whose
//! messages are all gone; a new buffer is allocated only when none is free.
//!
//! Size: a connection starts with a [`MIN`] (8 KiB) buffer, as hyper's adaptive read buffer
//! does. A read that fills all the room it was given means more is waiting: the next buffer
//! is twice as large, up to [`SIZE`] (or as large as one frame needs). Small: a connection
//! carrying small messages cycles through two or three buffers of this size (the one being
//! read into, and the last one while the messages sliced from it are still being taken),
//! and each buffer a busy spell touched stays resident after it (the allocator keeps freed
//! pages), so the size of those buffers is what a mesh of busy connections costs. After a quiet spell
//! ([`ReadBuffer::quiet`]) the spares are let go and the sizes start small again, so an
//! idle connection (most of a mesh's) holds one small buffer, whatever it carried before.
//!
//! Frames are read whole in place. A read that stops inside a frame leaves the frame's
//! rest to come, and if the buffer has no room for it, the part already read has to move
//! to a new buffer. With bulk traffic (merged frames of about 64 KiB) in buffers of one or
//! two frames, that moved about half of all bytes received, into freshly touched pages.
//! So each read leaves room behind it for a frame as large as those lately read (the
//! tail, [`ReadBuffer::frame`], at most [`MAX_TAIL`]); a buffer is at least three tails,
//! so a read is still worth making; and sizes up to [`MAX_SPARE`] go in powers of two,
//! so a spare fits frames of about its size. (Measured, 16 KiB stream messages over
//! loopback: page faults from 8-232 k per run to 3-10 k, 2-18 % less CPU per message.)
//!
//! Bounds: at most [`SPARES`] buffers are kept besides the active one, and only buffers of
//! at most [`MAX_SPARE`] bytes (the one that held a very large message is let go, to be
//! freed with its last message). What a payload the user keeps holds is
//! `engine::Payload::into_owned`'s concern (small ones are copied out).

use std::collections::VecDeque;

use bytes::BytesMut;

/// Size of a busy connection's read buffer.
const SIZE: usize = 64 * 1024;
/// Size of a new or quiet connection's read buffer.
const MIN: usize = 8 * 1024;
/// Buffers kept for reuse besides the active one.
const SPARES: usize = 3;
/// Largest buffer kept for reuse.
const MAX_SPARE: usize = 4 * SIZE;
/// Frames from this size on have room left behind each read for them: below it, the part
/// of a frame moved to a new buffer is small, and a read not limited costs less.
const LIMIT_FROM: usize = 8 * 1024;
/// Most room a read leaves behind it for the rest of the frame it may stop in: a merged
/// frame of grid's (64 KiB and the message that filled it) with its headers, about.
const MAX_TAIL: usize = SIZE + SIZE / 8;

pub(crate) struct ReadBuffer {
    active: BytesMut,
    /// Size of the active buffer's allocation.
    active_size: usize,
    /// Buffers filled before, emptied (their unread bytes moved on), with their sizes.
    spares: VecDeque<(BytesMut, usize)>,
    /// Size of the next buffer allocated: [`MIN`] to [`SIZE`], doubled by a read that
    /// filled its room.
    size: usize,
    /// Room each read leaves behind it: the size of the frames lately read, up to
    /// [`MAX_TAIL`].
    tail: usize,
    /// Bytes moved to a new buffer, ever.
    #[cfg(test)]
    pub(crate) moved: usize,
}

impl ReadBuffer {
    pub(crate) fn new() -> Self {
        Self {
            active: BytesMut::with_capacity(MIN),
            active_size: MIN,
            spares: VecDeque::new(),
            size: MIN,
            tail: 0,
            #[cfg(test)]
            moved: 0,
        }
    }

    /// Room after the bytes buffered, for the next read.
    pub(crate) fn room(&self) -> usize {
        self.active.capacity() - self.active.len()
    }

    /// A frame of `len` bytes (its header included) is being read: the next reads leave
    /// room for one as large behind them. A smaller frame lowers it by an eighth at most,
    /// so an odd small frame between bulk ones does not undo it.
    pub(crate) fn frame(&mut self, len: usize) {
        self.tail = len.max(self.tail - self.tail / 8).min(MAX_TAIL);
    }

    /// Makes room for the next read at a frame's boundary (no frame begun, or only part of
    /// its header): 4 KiB at least, and the [`tail`](ReadBuffer::frame) behind it.
    pub(crate) fn reserve_read(&mut self) {
        self.reserve(4096 + self.bulk_tail());
    }

    /// The tail, once frames are large enough to read with one ([`LIMIT_FROM`]); 0 while
    /// they are small: then nothing is left behind reads, nor sized for.
    fn bulk_tail(&self) -> usize {
        if self.tail >= LIMIT_FROM {
            self.tail
        } else {
            0
        }
    }

    /// How much the next read may take, when it must take less than the room: the room
    /// less the tail, but at least the `missing` bytes of the frame being read, and at
    /// least one byte. `None` while frames are small ([`LIMIT_FROM`]): moving the start of
    /// one costs less than limiting every read.
    pub(crate) fn read_limit(&self, missing: usize) -> Option<usize> {
        let tail = self.bulk_tail();
        (tail > 0).then(|| {
            self.room()
                .saturating_sub(tail)
                .max(missing.min(self.room()))
                .max(1)
        })
    }

    /// A read of `read` bytes, limited to `limit` ([`ReadBuffer::read_limit`]), completed:
    /// one that took all it could makes the next buffer larger.
    pub(crate) fn read(&mut self, read: usize, limit: usize) {
        if read >= limit && self.size < SIZE {
            self.size *= 2;
        }
    }

    /// The connection has been quiet: the spares go, the next buffer is small again, and
    /// a large active buffer is swapped for a small one if what it holds fits.
    pub(crate) fn quiet(&mut self) {
        self.spares.clear();
        self.size = MIN;
        self.tail = 0;
        if self.active_size > MIN && self.active.len() <= MIN / 2 {
            let mut small = BytesMut::with_capacity(MIN);
            small.extend_from_slice(&self.active);
            self.active = small;
            self.active_size = MIN;
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
        let bulk_tail = self.bulk_tail();
        let active = &mut self.active;
        if active.capacity() - active.len() >= additional || active.try_reclaim(additional) {
            return;
        }
        // A busy buffer holds two tails besides (so a read is worth making), and sizes up
        // to the largest spare go in powers of two, so that a spare fits the next want of
        // about its size.
        let want = (active.len() + additional).max(self.size);
        let want = match want.max(3 * bulk_tail) {
            w if w <= MAX_SPARE => w.next_power_of_two(),
            _ => want,
        };
        let free = self
            .spares
            .iter_mut()
            // Not a much larger one: a payload kept from it would hold all of it.
            .position(|(spare, size)| {
                *size >= want && *size <= 2 * want.max(SIZE) && spare.try_reclaim(want)
            });
        let (mut next, size) = match free.and_then(|i| self.spares.remove(i)) {
            Some(spare) => spare,
            None => (BytesMut::with_capacity(want), want),
        };
        next.extend_from_slice(active);
        #[cfg(test)]
        {
            self.moved += active.len();
        }
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
        buf.bytes().extend_from_slice(&[1; MIN - 100]);
        let message = buf.bytes().split_to(MIN - 200).freeze();
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
        buf.reserve(MIN - 1050);
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

    #[test]
    fn reads_that_fill_their_room_grow_the_buffers_and_a_quiet_spell_shrinks_them() {
        let mut buf = ReadBuffer::new();
        assert_eq!(buf.allocated(), MIN);
        // Reads that leave room: the size stays.
        buf.read(100, buf.room());
        assert_eq!(buf.size, MIN);
        // Reads that fill it: twice as large each time, up to SIZE.
        for _ in 0..5 {
            let room = buf.room();
            buf.read(room, room);
        }
        assert_eq!(buf.size, SIZE);
        // The next buffer (the active one is still referenced) is a busy one.
        buf.bytes().extend_from_slice(&[3; 100]);
        let held = buf.bytes().split_to(100).freeze();
        buf.reserve(MIN);
        assert_eq!(buf.allocated(), SIZE);
        assert_eq!(buf.spares.len(), 1);
        // Quiet: no spares, small buffers again, the unread bytes kept.
        buf.bytes().extend_from_slice(&[4; 10]);
        buf.quiet();
        assert!(buf.spares.is_empty());
        assert_eq!((buf.allocated(), buf.size), (MIN, MIN));
        assert_eq!(&buf.bytes()[..], &[4; 10][..]);
        drop(held);
    }

    #[test]
    fn reads_leave_room_behind_them_for_a_frame_as_large_as_those_lately_read() {
        let mut buf = ReadBuffer::new();
        assert_eq!(buf.read_limit(0), None, "no frame seen: no tail");
        buf.frame(LIMIT_FROM - 1);
        assert_eq!(
            buf.read_limit(0),
            None,
            "small frames: reads are not limited"
        );
        buf.reserve_read();
        assert_eq!(buf.allocated(), MIN, "nor are buffers sized for them");
        buf.frame(65_000);
        buf.reserve_read();
        let room = buf.room();
        // Room for a read and the tail, in a buffer of three tails at least, in a power
        // of two.
        assert_eq!(buf.allocated(), 256 << 10);
        assert_eq!(buf.read_limit(0), Some(room - 65_000));
        // Inside a frame, at least what it still misses.
        assert_eq!(buf.read_limit(room - 10), Some(room - 10));
        // A small frame lowers the tail by an eighth, not at once; a huge one raises it
        // only to the bound.
        buf.frame(100);
        assert_eq!(buf.tail, 65_000 - 65_000 / 8);
        buf.frame(10 << 20);
        assert_eq!(buf.tail, MAX_TAIL);
        buf.quiet();
        assert_eq!(buf.tail, 0);
    }

    #[test]
    fn a_spare_is_reused_for_frames_of_about_its_size() {
        let mut buf = ReadBuffer::new();
        buf.reserve(70_000);
        assert_eq!(buf.allocated(), 128 << 10, "sizes go in powers of two");
        let first = buf.bytes().as_ptr();
        buf.bytes().extend_from_slice(&[1; 70_000]);
        let held = buf.bytes().split_to(70_000).freeze();
        buf.reserve(100_000);
        assert_ne!(buf.bytes().as_ptr(), first);
        drop(held);
        buf.bytes().extend_from_slice(&[2; 100_000]);
        let held = buf.bytes().split_to(100_000).freeze();
        // A want a little larger than the first's: the first buffer fits it.
        buf.reserve(90_000);
        assert_eq!(buf.bytes().as_ptr(), first);
        drop(held);
    }

    #[test]
    fn a_much_larger_spare_is_not_reused_for_ordinary_frames() {
        let mut buf = ReadBuffer::new();
        // A 256 KiB frame gets a buffer of its size; a payload of it is kept a while.
        buf.reserve(MAX_SPARE);
        assert_eq!(buf.allocated(), MAX_SPARE);
        buf.bytes().extend_from_slice(&[5; MAX_SPARE]);
        let large = buf.bytes().split_to(MAX_SPARE).freeze();
        buf.reserve(MIN);
        drop(large);
        assert_eq!(buf.spares.len(), 1, "the large buffer is kept as a spare");
        // Ordinary traffic: the active buffer (held) is replaced by a new small one, not
        // by the 200 KiB spare, which a kept small payload would then hold whole.
        buf.bytes().extend_from_slice(&[6; 100]);
        let small = buf.bytes().split_to(100).freeze();
        buf.reserve(MIN);
        assert_eq!(buf.allocated(), MIN);
        drop(small);
    }
}
