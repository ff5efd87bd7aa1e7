//! A stream's received messages on their way to its reader: slices of the frames they
//! arrived in, holding one reference per frame rather than one per message.
//!
//! A frame of small messages brings hundreds of them at once. Had each been queued as its
//! own slice of the frame, each would have taken a reference to the frame's buffer on the
//! reader's thread and given it back on the reader's user's thread: two atomic operations
//! on one cache line, passed between two cores, per message (a tenth of all the work of a
//! busy stream of small messages, measured). Here the queue takes one reference per frame
//! ([`Object::Frame`]) and its messages are ranges in it; the taker copies a small message
//! out of the frame, or slices a large one, when it takes it ([`RecvQueue::pop`]).
//!
//! The engine's queue and the receiver's batch are both `RecvQueue`s: the engine pushes,
//! and hands everything over in one step ([`RecvQueue::append`]); the receiver pops.

use std::collections::VecDeque;

use bytes::Bytes;

use super::assembly::{Payload, COPY_BELOW};

/// One queued message in eight bytes: a range of the frame taken last, or [`Slot::OBJECT`]
/// (the next of the queue's objects comes here). The reader's thread writes these and the
/// taker's reads them, so their size is the cache traffic between the two cores per
/// message: a 40-byte entry per message made storing it a fifth of the reader's work on a
/// busy stream of small records (measured, perf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    start: u32,
    end: u32,
}

impl Slot {
    /// The next object ([`Object`]) of the queue's comes here.
    const OBJECT: Slot = Slot {
        start: u32::MAX,
        end: 0,
    };

    /// A range `start..end` of the last frame; `None` if it cannot be told from
    /// [`Slot::OBJECT`] or does not fit in 32 bits.
    fn range(start: usize, end: usize) -> Option<Slot> {
        let start = u32::try_from(start).ok().filter(|s| *s != u32::MAX)?;
        let end = u32::try_from(end).ok()?;
        Some(Slot { start, end })
    }

    fn is_object(self) -> bool {
        self == Slot::OBJECT
    }

    #[cfg(any(test, fuzzing))]
    fn len(self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }
}

/// What a [`Slot::OBJECT`] stands for.
#[derive(Debug)]
enum Object {
    /// The frame the ranges after it are in.
    Frame(Bytes),
    /// A message kept as it came (the end of a chunked payload, one copied out, ...).
    Other(Payload),
}

/// See the module documentation. (A `Frame` object is always followed by a range of it:
/// they are queued together, and taken together.)
#[derive(Debug, Default)]
pub(crate) struct RecvQueue {
    slots: VecDeque<Slot>,
    /// The objects the [`Slot::OBJECT`]s stand for, in the same order.
    objects: VecDeque<Object>,
    /// The address of the frame the last range queued is in, while that frame's `Frame`
    /// object is still queued here (0: none). (A frame's buffer cannot be reused for another
    /// while the object holds it, so its address names it.)
    pushing: usize,
}

/// The frame the next message taken from a [`RecvQueue`] is in: the taker's, kept beside
/// the queue it takes from (the engine's queue never needs one).
pub(crate) type Taking = Option<Bytes>;

fn identity(frame: &Bytes) -> usize {
    frame.as_ptr() as usize
}

/// What the next slot taken is.
enum Next {
    /// A message in the taker's frame: its range there.
    In(std::ops::Range<usize>),
    /// A message kept as it came.
    Other(Payload),
}

impl RecvQueue {
    /// No message queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Queues a message whose payload is `start..end` of `frame`.
    #[inline]
    pub(crate) fn push_in(&mut self, frame: &Bytes, start: usize, end: usize) {
        let Some(range) = Slot::range(start, end) else {
            return self.push(Payload::Whole(frame.slice(start..end)));
        };
        if self.pushing != identity(frame) || frame.is_empty() {
            self.slots.push_back(Slot::OBJECT);
            self.objects.push_back(Object::Frame(frame.clone()));
            self.pushing = identity(frame);
        }
        self.slots.push_back(range);
    }

    /// Queues a message as it is.
    pub(crate) fn push(&mut self, payload: Payload) {
        self.slots.push_back(Slot::OBJECT);
        self.objects.push_back(Object::Other(payload));
        // A frame's run of messages ends here (its taker lets the frame go): a message of
        // it queued next needs its `Frame` object again.
        self.pushing = 0;
    }

    /// Moves every message of `other` behind this queue's (`other` is left empty).
    pub(crate) fn append(&mut self, other: &mut RecvQueue) {
        if self.slots.is_empty() {
            std::mem::swap(&mut self.slots, &mut other.slots);
            std::mem::swap(&mut self.objects, &mut other.objects);
        } else {
            self.slots.append(&mut other.slots);
            self.objects.append(&mut other.objects);
        }
        // What is pushed here next needs its own `Frame` object; `other` starts over.
        self.pushing = 0;
        other.clear();
    }

    /// Takes the next slot: a range of the taker's frame (read where it lies), or a
    /// message kept whole. `None` when the queue is empty (or, which cannot happen, its
    /// slots and objects disagree).
    #[inline(always)]
    fn next(&mut self, taking: &mut Taking) -> Option<Next> {
        loop {
            let slot = self.slots.pop_front()?;
            if !slot.is_object() {
                return Some(Next::In(slot.start as usize..slot.end as usize));
            }
            match self.objects.pop_front()? {
                Object::Frame(frame) => *taking = Some(frame),
                Object::Other(payload) => return Some(Next::Other(payload)),
            }
        }
    }

    /// Takes the next message's payload (empty if it had none): with `copy` one under
    /// [`COPY_BELOW`] bytes is copied out of its frame into a buffer of its own (a chunked
    /// one's parts are joined), else it is a slice of its frame. `taking` is the taker's
    /// [`Taking`], kept from one call to the next.
    #[inline(always)]
    pub(crate) fn pop(&mut self, taking: &mut Taking, copy: bool) -> Option<Bytes> {
        let payload = match self.next(taking)? {
            Next::In(range) => {
                let frame = taking.as_ref()?;
                if copy && range.len() < COPY_BELOW {
                    Bytes::copy_from_slice(frame.get(range)?)
                } else {
                    frame.get(range.clone())?;
                    frame.slice(range)
                }
            }
            Next::Other(payload) if copy => payload.into_owned().unwrap_or_default(),
            Next::Other(payload) => payload.into_bytes().unwrap_or_default(),
        };
        self.taken(taking);
        Some(payload)
    }

    /// Takes the next message and hands its payload to `read` where it lies (in its frame:
    /// no `Bytes` of its own, so no reference taken and given back), for a taker that
    /// decodes it at once; returns what `read` made of it, and the payload's length.
    pub(crate) fn pop_with<R>(
        &mut self,
        taking: &mut Taking,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Option<(R, usize)> {
        let made = match self.next(taking)? {
            Next::In(range) => {
                let bytes = taking.as_ref()?.get(range)?;
                (read(bytes), bytes.len())
            }
            Next::Other(payload) => {
                let payload = payload.into_bytes().unwrap_or_default();
                (read(&payload), payload.len())
            }
        };
        self.taken(taking);
        Some(made)
    }

    /// A message was taken: the frame it was in is let go once no more of it is queued
    /// (so the read buffer it is can be reused), and a queue emptied starts over, at the
    /// start of its rings (where the last messages were, in cache; not on through rings a
    /// backlog once grew).
    #[inline(always)]
    fn taken(&mut self, taking: &mut Taking) {
        match self.slots.front() {
            Some(slot) if !slot.is_object() => {}
            Some(_) => *taking = None,
            None => {
                *taking = None;
                self.clear();
            }
        }
    }

    /// Each queued message's payload length, in order.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn lens(&self) -> impl Iterator<Item = usize> + '_ {
        let mut objects = self.objects.iter();
        self.slots.iter().filter_map(move |slot| {
            if !slot.is_object() {
                return Some(slot.len());
            }
            match objects.next()? {
                Object::Frame(_) => None,
                Object::Other(p) => Some(p.len()),
            }
        })
    }

    /// Copies every small message out of its frame ([`Payload::detach`]), so the queue holds
    /// what its messages are, not the frames they arrived in.
    pub(crate) fn detach(&mut self) {
        let mut frame: Option<Bytes> = None;
        let slots = std::mem::take(&mut self.slots);
        let mut objects = std::mem::take(&mut self.objects);
        self.pushing = 0;
        for slot in slots {
            if !slot.is_object() {
                let Some(f) = &frame else { continue };
                let whole = Payload::Whole(f.slice(slot.start as usize..slot.end as usize));
                self.push(whole.detach());
                continue;
            }
            match objects.pop_front() {
                Some(Object::Frame(f)) => frame = Some(f),
                Some(Object::Other(p)) => self.push(p),
                None => {}
            }
        }
    }

    /// Drops every message.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.objects.clear();
        self.pushing = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Bytes {
        Bytes::from((0..100).map(|i| i as u8 ^ n).collect::<Vec<_>>())
    }

    /// Whether `b` is a slice of `frame` (rather than a copy).
    fn within(b: &Bytes, frame: &Bytes) -> bool {
        let range = frame.as_ptr_range();
        !b.is_empty() && range.contains(&b.as_ptr())
    }

    #[test]
    fn messages_come_out_in_order_copied_or_sliced_with_one_reference_per_frame() {
        let (a, b) = (frame(1), frame(2));
        let mut q = RecvQueue::default();
        q.push_in(&a, 0, 10);
        q.push_in(&a, 10, 90);
        q.push(Payload::Owned(Bytes::from_static(b"other")));
        q.push_in(&a, 90, 90);
        q.push_in(&b, 5, 6);
        q.push(Payload::Absent);
        assert_eq!(q.lens().collect::<Vec<_>>(), [10, 80, 5, 0, 1, 0]);
        // One reference to each frame's run of messages, however many it holds.
        let frames = q
            .objects
            .iter()
            .filter(|o| matches!(o, Object::Frame(_)))
            .count();
        assert_eq!(frames, 3, "a, b, and a again after the message between");
        let mut batch = RecvQueue::default();
        let mut t = None;
        batch.append(&mut q);
        assert!(q.is_empty());
        let p = batch.pop(&mut t, true).expect("first");
        assert!(p == a[0..10] && !within(&p, &a), "copied: {p:?}");
        let p = batch.pop(&mut t, false).expect("second");
        assert!(p == a[10..90] && within(&p, &a), "sliced: {p:?}");
        assert_eq!(batch.pop(&mut t, true), Some(Bytes::from_static(b"other")));
        assert_eq!(batch.pop(&mut t, true), Some(Bytes::new()));
        assert_eq!(batch.pop(&mut t, true).as_deref(), Some(&b[5..6]));
        assert_eq!(
            batch.pop(&mut t, true),
            Some(Bytes::new()),
            "no payload: empty"
        );
        assert!(batch.pop(&mut t, true).is_none() && batch.is_empty());
        assert!(t.is_none(), "no frame held once all is taken");
    }

    #[test]
    fn messages_read_where_they_lie_come_out_in_order_and_let_their_frame_go() {
        let (a, b) = (frame(1), frame(2));
        let mut q = RecvQueue::default();
        q.push_in(&a, 0, 10);
        q.push(Payload::Parts(vec![
            Bytes::from_static(b"jo"),
            Bytes::from_static(b"ined"),
        ]));
        q.push_in(&a, 20, 30);
        q.push_in(&a, 30, 31);
        q.push_in(&b, 5, 5);
        q.push(Payload::Absent);
        let mut t = None;
        // What `read` sees, and where: in the frame, not a copy of it.
        let mut read = |q: &mut RecvQueue, frame: Option<&Bytes>| {
            q.pop_with(&mut t, |p: &[u8]| {
                if let (Some(f), false) = (frame, p.is_empty()) {
                    assert!(f.as_ptr_range().contains(&p.as_ptr()), "read in its frame");
                }
                p.to_vec()
            })
        };
        assert_eq!(read(&mut q, Some(&a)), Some((a[0..10].to_vec(), 10)));
        assert_eq!(read(&mut q, None), Some((b"joined".to_vec(), 6)));
        assert_eq!(read(&mut q, Some(&a)), Some((a[20..30].to_vec(), 10)));
        assert!(!a.is_unique(), "a message of it is still queued");
        assert_eq!(read(&mut q, Some(&a)), Some((a[30..31].to_vec(), 1)));
        assert!(a.is_unique(), "its last message read, the frame is free");
        assert_eq!(read(&mut q, Some(&b)), Some((Vec::new(), 0)));
        assert_eq!(
            read(&mut q, None),
            Some((Vec::new(), 0)),
            "no payload: empty"
        );
        assert!(read(&mut q, None).is_none() && q.is_empty());
        assert!(b.is_unique(), "no frame held once all is read");
    }

    #[test]
    fn a_queue_emptied_starts_again_at_the_front_of_its_ring_and_a_message_costs_8_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 8);
        let a = frame(4);
        let mut q = RecvQueue::default();
        for i in 0..90 {
            q.push_in(&a, i, i + 1);
        }
        let front = q.slots.as_slices().0.as_ptr();
        let mut t = None;
        while q.pop(&mut t, true).is_some() {}
        q.push_in(&a, 0, 1);
        assert_eq!(
            q.slots.as_slices().0.as_ptr(),
            front,
            "the next message goes where the first one went"
        );
        // Handed over whole, the engine's queue starts again at its front too.
        let mut batch = RecvQueue::default();
        batch.push_in(&a, 5, 6);
        for i in 0..90 {
            q.push_in(&a, i, i + 1);
        }
        let front = q.slots.as_slices().0.as_ptr();
        batch.append(&mut q);
        q.push_in(&a, 0, 1);
        assert_eq!(q.slots.as_slices().0.as_ptr(), front);
        assert_eq!(batch.lens().count(), 92);
    }

    #[test]
    fn a_frame_is_let_go_once_its_last_message_is_taken() {
        let a = frame(1);
        let mut q = RecvQueue::default();
        q.push_in(&a, 0, 1);
        q.push_in(&a, 1, 2);
        q.push(Payload::Absent);
        let mut t = None;
        assert!(!a.is_unique());
        q.pop(&mut t, true);
        assert!(!a.is_unique(), "a message of it is still queued");
        q.pop(&mut t, true);
        assert!(a.is_unique(), "its last message taken, the frame is free");
        q.pop(&mut t, true);
        assert!(q.is_empty());
    }

    #[test]
    fn detached_messages_hold_their_own_bytes_in_the_same_order() {
        let a = frame(3);
        let mut q = RecvQueue::default();
        q.push_in(&a, 0, 3);
        q.push(Payload::Owned(Bytes::from_static(b"x")));
        q.push_in(&a, 3, 9);
        q.detach();
        assert!(a.is_unique(), "no message holds the frame");
        q.push_in(&a, 9, 10);
        assert_eq!(q.lens().collect::<Vec<_>>(), [3, 1, 6, 1]);
        let mut t = None;
        let got: Vec<_> = std::iter::from_fn(|| q.pop(&mut t, false)).collect();
        assert_eq!(
            got,
            [
                a.slice(0..3),
                Bytes::from_static(b"x"),
                a.slice(3..9),
                a.slice(9..10)
            ]
        );
        assert!(
            !within(&got[0], &a) && !within(&got[2], &a),
            "detached: copies"
        );
    }
}
