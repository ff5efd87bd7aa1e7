//! A stream's received messages on their way to its reader: slices of the frames they
//! arrived in, holding one reference per frame rather than one per message.
//!
//! A frame of small messages brings hundreds of them at once. Had each been queued as its
//! own slice of the frame, each would have taken a reference to the frame's buffer on the
//! reader's thread and given it back on the reader's user's thread: two atomic operations
//! on one cache line, passed between two cores, per message (a tenth of all the work of a
//! busy stream of small messages, measured). Here the queue takes one reference per frame
//! ([`Item::Frame`]) and its messages are ranges in it; the taker copies a small message
//! out of the frame, or slices a large one, when it takes it ([`RecvQueue::pop`]).
//!
//! The engine's queue and the receiver's batch are both `RecvQueue`s: the engine pushes,
//! and hands everything over in one step ([`RecvQueue::append`]); the receiver pops.

use std::collections::VecDeque;

use bytes::Bytes;

use super::assembly::{Payload, COPY_BELOW};

#[derive(Debug)]
enum Item {
    /// The frame the `In` items after it are in.
    Frame(Bytes),
    /// A message whose payload is `start..end` of the last `Frame` before it.
    In { start: u32, end: u32 },
    /// A message kept as it came (the end of a chunked payload, one copied out, ...).
    Other(Payload),
}

/// See the module documentation. (A `Frame` item is always followed by an `In` item of
/// it: they are queued together, and taken together.)
#[derive(Debug, Default)]
pub(crate) struct RecvQueue {
    items: VecDeque<Item>,
    /// The address of the frame the last `In` queued is in, while that frame's `Frame`
    /// item is still queued here (0: none). (A frame's buffer cannot be reused for another
    /// while the item holds it, so its address names it.)
    pushing: usize,
}

/// The frame the next message taken from a [`RecvQueue`] is in: the taker's, kept beside
/// the queue it takes from (the engine's queue never needs one).
pub(crate) type Taking = Option<Bytes>;

fn identity(frame: &Bytes) -> usize {
    frame.as_ptr() as usize
}

impl RecvQueue {
    /// No message queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Queues a message whose payload is `start..end` of `frame`.
    #[inline]
    pub(crate) fn push_in(&mut self, frame: &Bytes, start: usize, end: usize) {
        let (Ok(s), Ok(e)) = (u32::try_from(start), u32::try_from(end)) else {
            return self.push(Payload::Whole(frame.slice(start..end)));
        };
        if self.pushing != identity(frame) || frame.is_empty() {
            self.items.push_back(Item::Frame(frame.clone()));
            self.pushing = identity(frame);
        }
        self.items.push_back(Item::In { start: s, end: e });
    }

    /// Queues a message as it is.
    pub(crate) fn push(&mut self, payload: Payload) {
        self.items.push_back(Item::Other(payload));
        // A frame's run of messages ends here (its taker lets the frame go): a message of
        // it queued next needs its `Frame` item again.
        self.pushing = 0;
    }

    /// Moves every message of `other` behind this queue's (`other` is left empty).
    pub(crate) fn append(&mut self, other: &mut RecvQueue) {
        if self.items.is_empty() {
            std::mem::swap(&mut self.items, &mut other.items);
        } else {
            self.items.append(&mut other.items);
        }
        // What is pushed here next needs its own `Frame` item.
        self.pushing = 0;
        other.pushing = 0;
    }

    /// Takes the next message's payload (empty if it had none): with `copy` one under
    /// [`COPY_BELOW`] bytes is copied out of its frame into a buffer of its own (a chunked
    /// one's parts are joined), else it is a slice of its frame. `taking` is the taker's
    /// [`Taking`], kept from one call to the next.
    pub(crate) fn pop(&mut self, taking: &mut Taking, copy: bool) -> Option<Bytes> {
        loop {
            match self.items.pop_front()? {
                Item::Frame(frame) => *taking = Some(frame),
                Item::In { start, end } => {
                    let (start, end) = (start as usize, end as usize);
                    let frame = taking.as_ref()?;
                    let payload = if copy && end - start < COPY_BELOW {
                        Bytes::copy_from_slice(frame.get(start..end)?)
                    } else {
                        frame.slice(start..end)
                    };
                    self.taken(taking);
                    return Some(payload);
                }
                Item::Other(payload) => {
                    self.taken(taking);
                    let payload = if copy {
                        payload.into_owned()
                    } else {
                        payload.into_bytes()
                    };
                    return Some(payload.unwrap_or_default());
                }
            }
        }
    }

    /// Takes the next message and hands its payload to `read` where it lies (in its frame:
    /// no `Bytes` of its own, so no reference taken and given back), for a taker that
    /// decodes it at once; returns what `read` made of it, and the payload's length.
    pub(crate) fn pop_with<R>(
        &mut self,
        taking: &mut Taking,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Option<(R, usize)> {
        loop {
            match self.items.pop_front()? {
                Item::Frame(frame) => *taking = Some(frame),
                Item::In { start, end } => {
                    let payload = taking.as_ref()?.get(start as usize..end as usize)?;
                    let made = (read(payload), payload.len());
                    self.taken(taking);
                    return Some(made);
                }
                Item::Other(payload) => {
                    self.taken(taking);
                    let payload = payload.into_bytes().unwrap_or_default();
                    return Some((read(&payload), payload.len()));
                }
            }
        }
    }

    /// A message was taken: the frame it was in is let go once no more of it is queued
    /// (so the read buffer it is can be reused), and a queue emptied starts over.
    fn taken(&mut self, taking: &mut Taking) {
        if !matches!(self.items.front(), Some(Item::In { .. })) {
            *taking = None;
        }
        if self.items.is_empty() {
            self.pushing = 0;
        }
    }

    /// Each queued message's payload length, in order.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn lens(&self) -> impl Iterator<Item = usize> + '_ {
        self.items.iter().filter_map(|i| match i {
            Item::Frame(_) => None,
            Item::In { start, end } => Some((end - start) as usize),
            Item::Other(p) => Some(p.len()),
        })
    }

    /// Copies every small message out of its frame ([`Payload::detach`]), so the queue holds
    /// what its messages are, not the frames they arrived in.
    pub(crate) fn detach(&mut self) {
        let mut frame = None;
        let items = std::mem::take(&mut self.items);
        for item in items {
            match item {
                Item::Frame(f) => frame = Some(f),
                Item::In { start, end } => {
                    let Some(f) = &frame else { continue };
                    let whole = Payload::Whole(f.slice(start as usize..end as usize));
                    self.items.push_back(Item::Other(whole.detach()));
                }
                other @ Item::Other(_) => self.items.push_back(other),
            }
        }
        self.pushing = 0;
    }

    /// Drops every message.
    pub(crate) fn clear(&mut self) {
        self.items.clear();
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
            .items
            .iter()
            .filter(|i| matches!(i, Item::Frame(_)))
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
