//! What a stream's sender keeps to send again after a lost socket (`resume.rs`).
//!
//! Every data message of a resumable stream (and its end) is kept, as it went into the
//! stream's queue, until the peer acknowledges it: a credit message carries in its sequence
//! field how many messages the receiver has received on that direction. Small messages are
//! kept encoded, back to back (as the queue's early lane holds them, so that they can go
//! straight back into it); large ones whole (a `Bytes` clone, no copy).
//!
//! Bound: a sender sends only while it has credit, and the receiver returns credit (with
//! its acknowledgment) as its user reads, an eighth of the window at a time; so what is kept
//! is at most the window, plus the credit not yet returned, plus one message.

use std::collections::VecDeque;

use crate::codec::Message;

/// A kept message, taken to be sent again.
pub(super) enum Resent {
    /// Its encoding.
    Encoded(Vec<u8>),
    Whole(Message),
}

/// Marks a whole message in `lens` (an encoding is never empty).
const WHOLE: u32 = 0;

/// A stream direction's messages sent and not yet acknowledged, in order.
#[derive(Debug, Default)]
pub(super) struct Replay {
    /// The sequence number of the first kept message.
    first: u32,
    /// Each kept message's encoded length, in order; [`WHOLE`] for one kept whole.
    lens: VecDeque<u32>,
    /// The whole ones, in order.
    whole: VecDeque<Message>,
    bytes: Vec<u8>,
    /// Where the first kept encoded message starts in `bytes`.
    start: usize,
}

impl Replay {
    /// Keeps an encoded message numbered `seq`.
    #[inline]
    pub(super) fn keep_encoded(&mut self, seq: u32, encoded: &[u8]) {
        if self.lens.is_empty() {
            self.first = seq;
        }
        self.bytes.extend_from_slice(encoded);
        self.lens.push_back(encoded.len() as u32);
    }

    /// Keeps messages encoded back to back, numbered from `first_seq` on, with their
    /// (encoded, payload) lengths.
    pub(super) fn keep_run(&mut self, first_seq: u32, bytes: &[u8], lens: &[(u32, u32)]) {
        if lens.is_empty() {
            return;
        }
        if self.lens.is_empty() {
            self.first = first_seq;
        }
        self.bytes.extend_from_slice(bytes);
        self.lens.extend(lens.iter().map(|&(len, _)| len));
    }

    /// Keeps a whole message (its payload shared, not copied).
    pub(super) fn keep_whole(&mut self, m: &Message) {
        if self.lens.is_empty() {
            self.first = m.seq;
        }
        self.lens.push_back(WHOLE);
        self.whole.push_back(m.clone());
    }

    /// The peer received every message up to `received` (a count, which is also the last
    /// sequence number received): those are dropped. An acknowledgment older than what is
    /// kept changes nothing.
    pub(super) fn acknowledge(&mut self, received: u32) {
        let ahead = received.wrapping_sub(self.first);
        if ahead >= u32::MAX / 2 {
            return;
        }
        let covered = (ahead as usize + 1).min(self.lens.len());
        for len in self.lens.drain(..covered) {
            if len == WHOLE {
                self.whole.pop_front();
            } else {
                self.start += len as usize;
            }
        }
        self.first = self.first.wrapping_add(covered as u32);
        if self.lens.is_empty() {
            self.bytes.clear();
            self.start = 0;
        } else if self.start * 2 >= self.bytes.len() {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
    }

    /// Takes every kept message, in order, leaving the replay empty.
    pub(super) fn take_all(&mut self) -> Vec<Resent> {
        let mut out = Vec::with_capacity(self.lens.len());
        let mut at = self.start;
        for len in self.lens.drain(..) {
            if len == WHOLE {
                if let Some(m) = self.whole.pop_front() {
                    out.push(Resent::Whole(m));
                }
                continue;
            }
            let end = at + len as usize;
            let bytes = self.bytes.get(at..end).unwrap_or_default().to_vec();
            out.push(Resent::Encoded(bytes));
            at = end;
        }
        self.bytes.clear();
        self.start = 0;
        out
    }

    /// Messages kept.
    pub(super) fn len(&self) -> usize {
        self.lens.len()
    }

    /// Bytes kept: the encodings, and the whole messages' payloads.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.bytes.len() - self.start
            + self
                .whole
                .iter()
                .map(|m| m.payload.as_ref().map_or(0, |p| p.len()))
                .sum::<usize>()
    }

    /// The sequence number of the first kept message, if any.
    #[cfg(test)]
    pub(super) fn first(&self) -> Option<u32> {
        (!self.lens.is_empty()).then_some(self.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Op;
    use bytes::Bytes;

    fn whole(seq: u32, len: usize) -> Message {
        let mut m = Message::new(Op::MuxServerMsg);
        m.seq = seq;
        m.payload = Some(Bytes::from(vec![0; len]));
        m
    }

    #[test]
    fn acknowledged_messages_go_in_order_and_the_rest_stay() {
        let mut r = Replay::default();
        r.keep_encoded(1, &[1; 10]);
        r.keep_run(2, &[2; 20], &[(10, 4), (10, 4)]);
        r.keep_whole(&whole(4, 1000));
        r.keep_encoded(5, &[5; 10]);
        assert_eq!((r.len(), r.held(), r.first()), (5, 1040, Some(1)));
        r.acknowledge(0);
        assert_eq!(r.len(), 5, "nothing covered yet");
        r.acknowledge(2);
        assert_eq!((r.len(), r.held(), r.first()), (3, 1020, Some(3)));
        r.acknowledge(2);
        assert_eq!(r.len(), 3, "a repeated acknowledgment changes nothing");
        r.acknowledge(4);
        assert_eq!((r.len(), r.held(), r.first()), (1, 10, Some(5)));
        r.acknowledge(9);
        assert_eq!((r.len(), r.held(), r.first()), (0, 0, None));
    }

    #[test]
    fn numbers_that_wrap_are_followed() {
        let mut r = Replay::default();
        r.keep_encoded(u32::MAX, &[1; 8]);
        r.keep_encoded(0, &[1; 8]);
        r.keep_encoded(1, &[1; 8]);
        r.acknowledge(0);
        assert_eq!(r.first(), Some(1));
        r.acknowledge(u32::MAX - 5);
        assert_eq!(r.len(), 1, "an old acknowledgment is ignored");
    }
}
