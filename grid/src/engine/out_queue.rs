//! One call's or stream's messages to send, in order.
//!
//! A queue has two lanes. A stream's small messages are encoded the moment they are
//! queued, into the stream's `early` lane: bytes back to back, ready to be copied into a
//! frame as they are, so the writer moves no message and encodes nothing for them, and the
//! sender frees its payload at once. Everything else is kept whole (the `whole` lane): the
//! large payloads that go in chunks, and every message of a single call (a call has one
//! message queued at most; an early lane would cost it an allocation).
//!
//! Invariant: the early lane comes first. A message goes into it only while the whole lane
//! is empty, so everything in the early lane was queued before anything in the whole lane,
//! and taking the early lane first keeps the queue's order.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::codec::{Message, MessageRef};

/// Payloads up to this size are encoded when queued (on a stream). A larger one stays
/// whole, to be copied once, into its frame, rather than twice.
pub(crate) const ENCODE_EARLY: usize = 2 * 1024;
/// An early lane that grew beyond this while a backlog was queued gives its memory back once
/// it is empty.
const LANE_RETAIN: usize = 64 * 1024;
/// An emptied lane this small is freed (see [`OutQueue::release_small_lane`]).
const LANE_KEEP: usize = 256;

/// Where an entry sits in the outbox's schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(super) enum Sched {
    /// Nothing to send, or not yet scheduled.
    #[default]
    Idle,
    /// In the ready queue.
    Ready,
    /// Its head is a large payload being sent in chunks.
    Bulk,
    /// Its head is a large payload waiting for room in the peer's reassembly window.
    Waiting,
}

/// Messages encoded when queued, back to back.
#[derive(Debug, Default)]
pub(super) struct EarlyLane {
    bytes: Vec<u8>,
    /// Where the first message not yet taken starts in `bytes`.
    start: usize,
    /// Each queued message's encoded length and payload length, from `first` on.
    lens: Vec<(u32, u32)>,
    first: usize,
}

impl EarlyLane {
    fn push(&mut self, m: &MessageRef<'_>) {
        self.compact();
        let before = self.bytes.len();
        m.encode_into(&mut self.bytes, false);
        let encoded = (self.bytes.len() - before) as u32;
        let payload = m.payload.map_or(0, <[u8]>::len) as u32;
        self.lens.push((encoded, payload));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.first == self.lens.len()
    }

    /// The encoding of the message pushed last.
    fn last_encoded(&self) -> &[u8] {
        let len = self.lens.last().map_or(0, |&(e, _)| e as usize);
        self.bytes
            .get(self.bytes.len().saturating_sub(len)..)
            .unwrap_or_default()
    }

    /// Messages queued and not yet taken.
    fn messages(&self) -> usize {
        self.lens.len() - self.first
    }

    /// Appends messages encoded elsewhere, back to back, with their lengths (taking the
    /// buffers whole when the lane is empty, and leaving them empty either way).
    fn append(&mut self, bytes: &mut Vec<u8>, lens: &mut Vec<(u32, u32)>) {
        if self.is_empty() {
            self.clear();
            std::mem::swap(&mut self.bytes, bytes);
            std::mem::swap(&mut self.lens, lens);
            return;
        }
        self.compact();
        self.bytes.append(bytes);
        self.lens.append(lens);
    }

    /// Moves what is left to the front once most of the buffer was taken (amortized: each
    /// byte moves at most once per time the buffer doubles).
    fn compact(&mut self) {
        if self.start > 0 && self.start * 2 >= self.bytes.len() {
            self.bytes.drain(..self.start);
            self.start = 0;
            self.lens.drain(..self.first);
            self.first = 0;
        }
    }

    /// The next message's encoded and payload lengths.
    pub(super) fn front(&self) -> Option<(usize, usize)> {
        self.lens
            .get(self.first)
            .map(|&(e, p)| (e as usize, p as usize))
    }

    /// Takes the next `bytes` bytes (whole messages, `count` of them, as counted with
    /// [`EarlyLane::front`] and [`EarlyLane::skip`]) and hands them to `to`.
    pub(super) fn take(&mut self, bytes: usize, to: impl FnOnce(&[u8])) {
        let end = self.start + bytes;
        to(self.bytes.get(self.start..end).unwrap_or_default());
        self.start = end;
        if self.is_empty() {
            self.clear();
        }
    }

    /// Counts the front message as taken (its bytes go with the next [`EarlyLane::take`]).
    pub(super) fn skip(&mut self) {
        self.first = (self.first + 1).min(self.lens.len());
    }

    fn clear(&mut self) {
        self.lens.clear();
        self.first = 0;
        self.start = 0;
        if self.bytes.capacity() > LANE_RETAIN {
            self.bytes = Vec::new();
        } else {
            self.bytes.clear();
        }
    }

    #[cfg(any(test, fuzzing))]
    fn payload_bytes(&self) -> usize {
        let queued = self.lens.get(self.first..).unwrap_or_default();
        queued.iter().map(|&(_, p)| p as usize).sum()
    }
}

/// One entry's messages to send, in order (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    /// A stream's messages encoded when queued: made by the first one, freed when the
    /// writer empties a small one ([`OutQueue::release_small_lane`]), so an idle stream
    /// holds none.
    pub(super) early: Option<Box<EarlyLane>>,
    /// Whether small messages are encoded when queued (a stream's queue; not a call's).
    is_stream: bool,
    /// The only whole message, when there is just one (`rest` is then empty).
    single: Option<Message>,
    rest: VecDeque<Message>,
    /// Bytes of the whole lane's head already sent in chunks.
    pub(super) chunk_offset: usize,
    /// Payload bytes queued.
    pub(super) bytes: usize,
    pub(super) sched: Sched,
    /// Something of this entry was taken by the writer: the peer may know of it.
    pub(crate) transmitted: bool,
    /// A resumable stream's: its data messages are kept until the peer acknowledges them.
    pub(super) resumable: bool,
    /// What is kept (made by the first message, freed once all is acknowledged, so an
    /// idle stream keeps nothing).
    pub(super) replay: Option<Box<super::replay::Replay>>,
}

impl OutQueue {
    /// A stream's queue, which encodes small messages as they are queued.
    pub(crate) fn for_stream() -> Self {
        Self {
            is_stream: true,
            ..Self::default()
        }
    }

    /// The peer received this stream's messages up to `received`: they are not kept any
    /// more (nor, once all are, the replay itself).
    pub(super) fn acknowledge(&mut self, received: u32) {
        if let Some(replay) = &mut self.replay {
            replay.acknowledge(received);
            if replay.len() == 0 {
                self.replay = None;
            }
        }
    }

    /// Whether a message with a payload of `len` bytes is encoded as it is queued.
    pub(super) fn encodes_early(&self, len: usize) -> bool {
        self.is_stream && len <= ENCODE_EARLY && self.whole_is_empty()
    }

    /// Queues a message given by reference, encoding it now; only when
    /// [`OutQueue::encodes_early`] said so.
    pub(super) fn push_encoded(&mut self, m: &MessageRef<'_>) {
        if self.is_stream {
            let lane = self.early.get_or_insert_with(Box::default);
            lane.push(m);
            let payload = m.payload.map_or(0, <[u8]>::len);
            self.bytes += payload;
            if self.resumable && is_data(m.op) {
                let replay = self.replay.get_or_insert_with(Box::default);
                replay.keep_encoded(m.seq, lane.last_encoded());
            }
        }
    }

    /// Queues messages their sender encoded (`Staged`), into the early lane: only while
    /// [`OutQueue::takes_staged`]. Leaves `bytes` and `lens` empty.
    pub(super) fn push_staged(
        &mut self,
        first_seq: u32,
        bytes: &mut Vec<u8>,
        lens: &mut Vec<(u32, u32)>,
        payload: usize,
    ) {
        if self.resumable {
            let replay = self.replay.get_or_insert_with(Box::default);
            replay.keep_run(first_seq, bytes, lens);
        }
        self.early
            .get_or_insert_with(Box::default)
            .append(bytes, lens);
        self.bytes += payload;
    }

    /// Whether messages encoded by their sender may join the queue: a stream's, with nothing
    /// queued whole (the early lane goes first).
    pub(super) fn takes_staged(&self) -> bool {
        self.is_stream && self.whole_is_empty()
    }

    /// Frees the early lane if it is empty and small: a stream that sent a few messages
    /// (its open, its ack, a ping) and went quiet keeps no buffers; a busy stream's lane,
    /// larger, stays for the next frame.
    pub(super) fn release_small_lane(&mut self) {
        if self
            .early
            .as_deref()
            .is_some_and(|l| l.is_empty() && l.bytes.capacity() <= LANE_KEEP)
        {
            self.early = None;
        }
    }

    pub(super) fn push(&mut self, m: Message) {
        if self.encodes_early(payload_len(&m)) {
            return self.push_encoded(&m.borrowed());
        }
        self.push_whole(m);
    }

    /// Queues a message kept whole, encoded by the writer: in its frame it goes after the
    /// messages encoded early (of every entry the writer took), in the order the writer
    /// took the whole ones.
    pub(super) fn push_whole(&mut self, m: Message) {
        if self.resumable && is_data(m.op) {
            let replay = self.replay.get_or_insert_with(Box::default);
            replay.keep_whole(&m);
        }
        let len = payload_len(&m);
        self.bytes += len;
        if self.rest.is_empty() {
            match self.single.take() {
                None => return self.single = Some(m),
                Some(first) => self.rest.push_back(first),
            }
        }
        self.rest.push_back(m);
    }

    /// Marks an entry that has something queued as ready, unless it is scheduled already;
    /// true if it was not (it must join the outbox's ready queue).
    pub(super) fn mark_ready(&mut self) -> bool {
        let newly = self.sched == Sched::Idle;
        if newly {
            self.sched = Sched::Ready;
        }
        newly
    }

    fn whole_is_empty(&self) -> bool {
        self.single.is_none() && self.rest.is_empty()
    }

    /// The whole lane's first message. (When the early lane has messages, they go first.)
    pub(super) fn front(&self) -> Option<&Message> {
        self.single.as_ref().or_else(|| self.rest.front())
    }

    pub(super) fn pop(&mut self) -> Option<Message> {
        let m = match self.single.take() {
            Some(m) => m,
            None => self.rest.pop_front()?,
        };
        self.bytes -= payload_len(&m);
        self.chunk_offset = 0;
        Some(m)
    }

    /// True when nothing is queued in either lane.
    pub(super) fn is_empty(&self) -> bool {
        self.whole_is_empty() && self.early.as_deref().is_none_or(EarlyLane::is_empty)
    }

    /// Drops everything queued; returns how many messages were (a chunked one partly sent
    /// counts: the peer drops what it got of it).
    pub(super) fn clear(&mut self) -> usize {
        let messages = usize::from(self.single.is_some())
            + self.rest.len()
            + self.early.as_deref().map_or(0, EarlyLane::messages);
        self.single = None;
        self.rest.clear();
        // Nothing more of this entry goes out: its lane's memory goes too.
        self.early = None;
        self.bytes = 0;
        self.chunk_offset = 0;
        messages
    }

    /// True when nothing is queued and the entry is not scheduled.
    pub(crate) fn is_idle(&self) -> bool {
        self.is_empty() && self.sched == Sched::Idle
    }

    /// Asserts the byte count and the lanes agree.
    #[cfg(any(test, fuzzing))]
    pub(super) fn check(&self) -> usize {
        let whole: usize = self
            .single
            .iter()
            .chain(self.rest.iter())
            .map(payload_len)
            .sum();
        let early = self.early.as_deref().map_or(0, EarlyLane::payload_bytes);
        assert_eq!(self.bytes, whole + early, "queued bytes");
        assert!(
            self.single.is_none() || self.rest.is_empty(),
            "an inline message beside a queue"
        );
        self.bytes
    }
}

/// Whether a stream message is numbered data (or its end), which a resumed stream sends
/// again.
fn is_data(op: crate::codec::Op) -> bool {
    matches!(
        op,
        crate::codec::Op::MuxClientMsg | crate::codec::Op::MuxServerMsg
    )
}

pub(super) fn payload_len(m: &Message) -> usize {
    m.payload.as_ref().map_or(0, Bytes::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::wire::Reader;
    use crate::codec::{FrameLimits, Op};

    fn data(seq: u32, len: usize) -> Message {
        let mut m = Message::new(Op::MuxServerMsg);
        m.mux_id = 1;
        m.seq = seq;
        m.payload = Some(Bytes::from(vec![seq as u8; len]));
        m
    }

    /// Takes everything queued, in order, as the outbox does: the early lane first.
    fn drain(q: &mut OutQueue) -> Vec<u32> {
        let mut seqs = Vec::new();
        if let Some(lane) = q.early.as_deref_mut() {
            let mut run = 0;
            let mut taken = 0;
            while let Some((encoded, payload)) = lane.front() {
                lane.skip();
                run += encoded;
                taken += payload;
            }
            lane.take(run, |bytes| {
                let frame = Bytes::copy_from_slice(bytes);
                let mut r = Reader::new(&frame, 0);
                while r.remaining() > 0 {
                    let m = Message::decode(&mut r, FrameLimits::new(1 << 20)).expect("decodes");
                    seqs.push(m.seq);
                }
            });
            q.bytes -= taken;
        }
        while let Some(m) = q.pop() {
            seqs.push(m.seq);
        }
        seqs
    }

    #[test]
    fn early_messages_go_first_and_the_order_holds() {
        let mut q = OutQueue::for_stream();
        q.push(data(1, 10));
        q.push(data(2, ENCODE_EARLY + 1));
        q.push(data(3, 10));
        q.check();
        assert_eq!(q.bytes, 10 + ENCODE_EARLY + 1 + 10);
        assert_eq!(
            q.front().map(|m| m.seq),
            Some(2),
            "the large one is kept whole"
        );
        assert_eq!(drain(&mut q), [1, 2, 3], "3 came after 2: kept whole too");
        assert!(q.is_empty());
        q.check();
        q.push(data(4, 10));
        assert!(
            q.front().is_none(),
            "the whole lane is empty: 4 is encoded early"
        );
        assert_eq!(drain(&mut q), [4]);
    }

    #[test]
    fn a_call_queue_keeps_everything_whole() {
        let mut q = OutQueue::default();
        q.push(data(1, 10));
        assert!(!q.encodes_early(10));
        assert_eq!(q.pop().map(|m| m.seq), Some(1));
    }

    #[test]
    fn a_quiet_stream_keeps_no_lane_and_a_busy_one_keeps_its_own() {
        let mut q = OutQueue::for_stream();
        assert!(q.early.is_none(), "no lane before the first message");
        q.push(data(1, 10));
        q.release_small_lane();
        assert!(q.early.is_some(), "not freed while it holds a message");
        assert_eq!(drain(&mut q), vec![1]);
        q.release_small_lane();
        assert!(q.early.is_none(), "a small emptied lane is freed");
        for seq in 2..12 {
            q.push(data(seq, 100));
        }
        assert_eq!(drain(&mut q), (2..12).collect::<Vec<_>>());
        q.release_small_lane();
        assert!(
            q.early.is_some(),
            "a lane that grew stays for the next frame"
        );
        q.push(data(12, 10));
        assert_eq!(drain(&mut q), vec![12], "and is used again");
    }

    #[test]
    fn a_drained_lane_gives_back_a_large_buffer_and_a_long_one_is_compacted() {
        let mut q = OutQueue::for_stream();
        for seq in 0..100 {
            q.push(data(seq, 1_000));
        }
        assert_eq!(drain(&mut q), (0..100).collect::<Vec<_>>());
        let lane = q.early.as_deref().expect("a stream's lane");
        assert_eq!(lane.bytes.capacity(), 0, "over LANE_RETAIN: released");
        // A lane never fully drained does not grow without bound: what was taken is
        // dropped from the front as more is queued.
        q.push(data(0, 100));
        for seq in 1..1_000u32 {
            q.push(data(seq, 100));
            let lane = q.early.as_deref_mut().expect("lane");
            let (encoded, payload) = lane.front().expect("queued");
            lane.skip();
            lane.take(encoded, |_| {});
            q.bytes -= payload;
            q.check();
        }
        let lane = q.early.as_deref().expect("lane");
        assert!(lane.bytes.len() < 4 * 1024, "{}", lane.bytes.len());
    }
}
