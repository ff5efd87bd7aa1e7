//! What to send next.
//!
//! Every call and stream keeps its own queue of messages (`OutQueue`), in order; the
//! outbox only schedules *which* entry sends next, so a message that is no longer wanted
//! (a request cancelled before the writer took it) is simply dropped with its entry, and a
//! queue's order is never broken. Connection messages (pong, ping, refusals) have slots of
//! their own, bounded: one pong (the latest ping's), one ping, and refusals up to the
//! concurrency limit.
//!
//! A frame is a batch of small messages (merged, at most `MERGE_LIMIT` bytes) followed by
//! at most one chunk of a large payload, so a small message waits for one chunk at most and
//! chunks are never starved. Large payloads are sent in chunks of [`CHUNK`] bytes; one is
//! started only within the peer's reassembly window ([`ChunkBudget`]), payloads in
//! progress take turns, and chunks go only while the bytes of them the peer has not yet
//! confirmed reading fit the chunk window ([`ChunkWindow`](super::chunk_window::ChunkWindow)).

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use super::out_queue::{payload_len, OutQueue, Sched};
use super::transmit::{fills_frame, frame_room, MAX_BATCH, MERGE_LIMIT};
use super::window::ChunkBudget;
use super::{CallerEntry, Engine, HandlerEntry, Key, Side, Transmit};
use crate::codec::{Flags, Message};
use crate::error::Error;

/// Payloads larger than this travel in chunks of this size.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Most messages one entry sends before the next entry's turn.
const PER_TURN: usize = 64;
/// Most large payloads sent in chunks at once. Within the peer's window more could go, but
/// every payload in progress slows the others down: a few at a time finish sooner.
const MAX_IN_CHUNKS: usize = 4;

/// The schedule and the connection-level slots.
pub(super) struct Outbox {
    /// Single calls with something to send: they go before streams' data.
    pub(super) urgent: VecDeque<(Side, Key)>,
    ready: VecDeque<(Side, Key)>,
    bulk: VecDeque<(Side, Key)>,
    waiting: VecDeque<(Side, Key)>,
    budget: ChunkBudget,
    pub(super) transport_pong: Option<Bytes>,
    /// This side's Drain (its reason), once it is leaving: ahead of everything.
    pub(super) drain: Option<Bytes>,
    /// This side's Resume (its kept streams), first on a resumed connection.
    pub(super) resume: Option<Bytes>,
    pub(super) pong: Option<Bytes>,
    pub(super) ping: Option<Bytes>,
    /// Streams with a ping (caller side) or a pong (handler side) to send: these go first,
    /// ahead of any stream's data, so a backlog never makes a live stream look silent.
    /// One per stream at most (the stream's flag).
    pub(super) stream_pings: VecDeque<(Side, Key)>,
    /// Streams with credit to grant (one pending grant each, `RecvHalf::credit_pending`).
    pub(super) credits: VecDeque<(Side, Key)>,
    pub(super) refusals: VecDeque<Message>,
    /// Payload bytes of single-call answers queued by handlers: while they exceed the send
    /// buffer, no new handler starts. (Streams' messages are counted apart, in
    /// `stream_bytes`: counted here, one busy stream would keep every call waiting.)
    pub(super) answer_bytes: usize,
    /// Payload bytes of streams' messages queued here and not yet taken by the writer:
    /// while they reach the send buffer, stream senders wait, whatever credit the peer
    /// granted (a peer that grants much and reads nothing costs this much, not its grants).
    pub(super) stream_bytes: usize,
    /// Streams whose sender waits for `stream_bytes` to drop below the send buffer.
    pub(super) room_waiters: Vec<(Side, Key)>,
    /// Messages queued since the writer last took a frame, and the room they take in
    /// frames ([`frame_room`]).
    unsent: (usize, usize),
    /// Another full frame's worth has been queued since the writer last took one, not yet
    /// reported ([`Engine::take_frame_waiting`]).
    frame_waiting: bool,
    /// How many times the writer came for a frame ([`WriterVisit`]).
    visits: u64,
    /// Senders waiting for the writer's next visit ([`Engine::poll_writer_back`]).
    pub(super) visit_waiters: Vec<Waker>,
}

/// A count of the writer's visits: a sender that queued a frame's worth waits until the
/// writer came for it ([`Engine::poll_writer_back`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriterVisit(u64);

impl Outbox {
    pub(super) fn new(peer_window: u64) -> Self {
        Self {
            urgent: VecDeque::new(),
            ready: VecDeque::new(),
            bulk: VecDeque::new(),
            waiting: VecDeque::new(),
            budget: ChunkBudget::new(peer_window),
            transport_pong: None,
            drain: None,
            resume: None,
            pong: None,
            ping: None,
            stream_pings: VecDeque::new(),
            credits: VecDeque::new(),
            refusals: VecDeque::new(),
            answer_bytes: 0,
            stream_bytes: 0,
            room_waiters: Vec::new(),
            unsent: (0, 0),
            frame_waiting: false,
            visits: 0,
            visit_waiters: Vec::new(),
        }
    }

    pub(super) fn clear(&mut self) {
        self.urgent.clear();
        self.ready.clear();
        self.bulk.clear();
        self.waiting.clear();
        self.refusals.clear();
        self.room_waiters.clear();
        self.stream_pings.clear();
        self.credits.clear();
        self.drain = None;
        self.resume = None;
        self.pong = None;
        self.ping = None;
        self.transport_pong = None;
    }

    pub(super) fn refusals(&self) -> usize {
        self.refusals.len()
    }
}

impl Engine {
    /// Fills `tx` with the next frame's content. Pending (with the waker registered) when
    /// there is nothing to send; an error once the engine is closed (the writer stops).
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        tx: &mut Transmit,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        tx.clear();
        // The writer is back: what it took before is written.
        self.timers.write_started = None;
        self.outbox.unsent = (0, 0);
        self.outbox.frame_waiting = false;
        self.outbox.visits += 1;
        self.wakes.append(&mut self.outbox.visit_waiters);
        if let Some(err) = &self.closed {
            return Poll::Ready(Err(err.clone()));
        }
        self.take_control(tx);
        if self.resume.awaiting {
            // Nothing but control until the peer said what it kept (`resume.rs`).
            if tx.is_empty() {
                self.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            return Poll::Ready(Ok(()));
        }
        // Single calls' messages (small and latency-sensitive) before streams' data.
        while !tx.is_full() {
            let Some((side, key)) = self.outbox.urgent.pop_front() else {
                break;
            };
            self.take_from(side, key, tx);
        }
        while !tx.is_full() {
            let Some((side, key)) = self.outbox.ready.pop_front() else {
                break;
            };
            self.take_from(side, key, tx);
        }
        self.take_chunk(now, tx);
        if tx.is_empty() {
            self.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        self.timers.write_started = Some(now);
        Poll::Ready(Ok(()))
    }

    /// Whether another full frame's worth was queued since the writer last took one
    /// (reported once per frame's worth), with the writer's visit it was queued after. A
    /// stream sender asks after each send and, when one waits, waits for the writer's next
    /// visit ([`Engine::poll_writer_back`]) before its next send, so the writer sends
    /// frames as they fill rather than after the sender has used all its credit.
    pub(crate) fn take_frame_waiting(&mut self) -> Option<WriterVisit> {
        std::mem::take(&mut self.outbox.frame_waiting).then_some(WriterVisit(self.outbox.visits))
    }

    /// Ready once the writer came for a frame after `since` (or the engine closed): a
    /// sender that queued a frame's worth waits here before its next message, rather than
    /// yielding its thread, so the writer runs first when both share one.
    pub(crate) fn poll_writer_back(
        &mut self,
        since: WriterVisit,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.outbox.visits != since.0 || self.closed.is_some() {
            return Poll::Ready(());
        }
        let waiters = &mut self.outbox.visit_waiters;
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Whether at least a full frame's worth waits for the writer: it then writes at once
    /// rather than waiting for more to join the frame.
    pub(crate) fn frame_full(&self) -> bool {
        let (messages, room) = self.outbox.unsent;
        fills_frame(messages, room)
    }

    /// Queues a message of an entry.
    pub(super) fn push_out(&mut self, side: Side, key: Key, m: Message) {
        self.push_out_as(side, key, m, false);
    }

    /// Queues a message of an entry; `whole`: keep it whole even if it is a stream's
    /// small message ([`OutQueue::push_whole`]).
    pub(super) fn push_out_as(&mut self, side: Side, key: Key, m: Message, whole: bool) {
        let len = payload_len(&m);
        let Some(out) = self.out_mut(side, key) else {
            return;
        };
        if whole {
            out.push_whole(m);
        } else {
            out.push(m);
        }
        let newly = out.mark_ready();
        self.queued(side, key, len, newly);
    }

    /// Whether an entry is a single call (whose messages go before streams' data).
    fn is_call(&self, side: Side, key: Key) -> bool {
        match side {
            Side::Caller => matches!(self.callers.get(key), Some(CallerEntry::Call(_))),
            Side::Handler => matches!(self.handlers.get(key), Some(HandlerEntry::Call(_))),
        }
    }

    /// Whether an entry is a single call served here (its queue holds an answer).
    #[cfg(any(test, fuzzing))]
    fn is_answer(&self, side: Side, key: Key) -> bool {
        side == Side::Handler && self.is_call(side, key)
    }

    /// The count an entry's queued payload bytes go into: an answer's, a stream's, or none
    /// (a caller's request: one per call, bounded by the calls in flight).
    fn unsent_bytes(&mut self, side: Side, key: Key) -> Option<&mut usize> {
        match (side, self.is_call(side, key)) {
            (Side::Handler, true) => Some(&mut self.outbox.answer_bytes),
            (Side::Caller, true) => None,
            (_, false) => Some(&mut self.outbox.stream_bytes),
        }
    }

    /// An entry's queued payload bytes went (`n` of them, taken by the writer or dropped).
    /// Stream senders waiting for room are woken once there is some.
    fn unsent_taken(&mut self, side: Side, key: Key, n: usize) {
        if let Some(count) = self.unsent_bytes(side, key) {
            *count -= n;
        }
        if self.outbox.stream_bytes < self.config.max_send_buffer {
            for (side, key) in std::mem::take(&mut self.outbox.room_waiters) {
                let waker = self.stream_mut(side, key).and_then(|s| s.send.waker.take());
                self.wake(waker);
            }
        }
    }

    /// Room left in the send buffer for streams' messages; with none, the sender of
    /// `(side, key)` is noted to be woken when there is some (its waker registered by the
    /// caller).
    pub(super) fn stream_room(&mut self, side: Side, key: Key) -> usize {
        let room = self
            .config
            .max_send_buffer
            .saturating_sub(self.outbox.stream_bytes);
        if room == 0 && !self.outbox.room_waiters.contains(&(side, key)) {
            self.outbox.room_waiters.push((side, key));
        }
        room
    }

    /// Whether streams' messages waiting for the socket fill the send buffer (their
    /// senders wait, credit or not).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn streams_send_buffer_full(&self) -> bool {
        self.outbox.stream_bytes >= self.config.max_send_buffer
    }

    /// Puts a ready entry at the end of its queue: a single call's, or the streams'.
    fn schedule(&mut self, side: Side, key: Key) {
        if self.is_call(side, key) {
            self.outbox.urgent.push_back((side, key));
        } else {
            self.outbox.ready.push_back((side, key));
        }
    }

    /// An entry queued a message with a payload of `len` bytes; `newly` if that made it
    /// ready ([`OutQueue::mark_ready`]): it joins the schedule and the writer is woken.
    pub(super) fn queued(&mut self, side: Side, key: Key, len: usize, newly: bool) {
        self.queued_many(side, key, len, 1, newly);
    }

    /// As [`Engine::queued`], for `count` messages of `len` payload bytes in all.
    pub(super) fn queued_many(
        &mut self,
        side: Side,
        key: Key,
        len: usize,
        count: usize,
        newly: bool,
    ) {
        if let Some(n) = self.unsent_bytes(side, key) {
            *n += len;
        }
        let (messages, room) = self.outbox.unsent;
        let (messages_now, room_now) = (messages + count, room + frame_room(len, count));
        self.outbox.unsent = (messages_now, room_now);
        // Crossing a multiple of a frame's worth, by count or by room.
        if messages_now / MAX_BATCH > messages / MAX_BATCH
            || room_now / MERGE_LIMIT > room / MERGE_LIMIT
        {
            self.outbox.frame_waiting = true;
        }
        if newly {
            self.schedule(side, key);
            self.wake_writer();
        }
    }

    /// Drops everything an entry still had to send (it was cancelled or failed). A large
    /// payload in progress gives its room in the window back; the peer drops its partial
    /// copy when it gets the cancel that follows. Returns how many messages were dropped.
    pub(super) fn clear_out(&mut self, side: Side, key: Key) -> usize {
        let Some(out) = self.out_mut(side, key) else {
            return 0;
        };
        let sched = std::mem::take(&mut out.sched);
        let head_len = out.front().map_or(0, payload_len);
        let bytes = out.bytes;
        let dropped = out.clear();
        self.unsent_taken(side, key, bytes);
        match sched {
            Sched::Idle => {}
            Sched::Ready => {
                self.outbox.ready.retain(|e| *e != (side, key));
                self.outbox.urgent.retain(|e| *e != (side, key));
            }
            Sched::Waiting => self.outbox.waiting.retain(|e| *e != (side, key)),
            Sched::Bulk => {
                self.outbox.bulk.retain(|e| *e != (side, key));
                self.outbox.budget.finish(head_len as u64);
                self.admit_waiting();
            }
        }
        dropped
    }

    fn out_mut(&mut self, side: Side, key: Key) -> Option<&mut OutQueue> {
        self.header_mut(side, key).map(|h| &mut h.out)
    }

    /// Takes an entry's small messages (up to its turn), or schedules its large head.
    fn take_from(&mut self, side: Side, key: Key, tx: &mut Transmit) {
        let mut taken_bytes = 0;
        let mut next = Sched::Idle;
        let emptied;
        {
            let Some(out) = self.out_mut(side, key) else {
                return;
            };
            out.sched = Sched::Idle;
            let mut n = 0;
            // The early lane first: everything in it was queued before the whole lane.
            if let Some(lane) = out.early.as_deref_mut() {
                let mut run = 0;
                let mut count = 0;
                while let Some((encoded, payload)) = lane.front() {
                    if n >= PER_TURN || tx.is_full() {
                        next = Sched::Ready;
                        break;
                    }
                    lane.skip();
                    tx.note(payload);
                    run += encoded;
                    count += 1;
                    taken_bytes += payload;
                    n += 1;
                }
                if count > 0 {
                    lane.take(run, |bytes| tx.push_encoded(bytes, count));
                    out.bytes -= taken_bytes;
                    out.transmitted = true;
                }
                out.release_small_lane();
            }
            while next == Sched::Idle {
                let Some(head) = out.front() else {
                    break;
                };
                let len = payload_len(head);
                if len > CHUNK {
                    next = Sched::Waiting;
                    break;
                }
                if n >= PER_TURN || tx.is_full() {
                    next = Sched::Ready;
                    break;
                }
                if let Some(m) = out.pop() {
                    taken_bytes += len;
                    tx.push(m);
                    out.transmitted = true;
                }
                n += 1;
            }
            emptied = out.is_empty();
            out.sched = next;
        }
        self.unsent_taken(side, key, taken_bytes);
        match next {
            Sched::Ready => self.schedule(side, key),
            Sched::Waiting => {
                self.outbox.waiting.push_back((side, key));
                self.admit_waiting();
            }
            Sched::Idle | Sched::Bulk => {}
        }
        if emptied {
            self.settle(side, key);
        }
    }

    /// Moves waiting large payloads into the bulk lane while the peer's window has room.
    fn admit_waiting(&mut self) {
        while self.outbox.bulk.len() < MAX_IN_CHUNKS {
            let Some(&(side, key)) = self.outbox.waiting.front() else {
                break;
            };
            let size = match self.out_mut(side, key).and_then(|o| o.front()) {
                Some(m) => payload_len(m) as u64,
                None => {
                    self.outbox.waiting.pop_front();
                    continue;
                }
            };
            if !self.outbox.budget.try_start(size) {
                break;
            }
            self.outbox.waiting.pop_front();
            if let Some(out) = self.out_mut(side, key) {
                out.sched = Sched::Bulk;
            }
            self.outbox.bulk.push_back((side, key));
        }
    }

    /// Takes the next chunk of the large payload whose turn it is, while the chunk window
    /// is open; a ping follows it when the window asks for one (it goes out in the next
    /// frame, behind the chunk, so its pong confirms the chunk was read).
    fn take_chunk(&mut self, now: Instant, tx: &mut Transmit) {
        if !self.chunk_window.is_open() {
            return;
        }
        let Some((side, key)) = self.outbox.bulk.pop_front() else {
            return;
        };
        let mut finished = None;
        let mut more = false;
        let sent;
        {
            let Some(out) = self.out_mut(side, key) else {
                return;
            };
            let offset = out.chunk_offset;
            let Some(head) = out.front() else {
                out.sched = Sched::Idle;
                return;
            };
            let Some(payload) = head.payload.clone() else {
                return;
            };
            let end = (offset + CHUNK).min(payload.len());
            let mut chunk = head.clone();
            chunk.payload = Some(payload.slice(offset..end));
            if end < payload.len() {
                chunk.flags = chunk.flags | Flags::MORE;
                out.chunk_offset = end;
                out.sched = Sched::Bulk;
            } else {
                out.pop();
                finished = Some(payload.len());
                more = out.front().is_some();
                out.sched = if more { Sched::Ready } else { Sched::Idle };
            }
            out.transmitted = true;
            sent = end - offset;
            tx.chunk = Some(chunk);
        }
        if self.chunk_window.on_sent(sent as u64, &self.rtt) {
            let p = self.ping_payload(now);
            self.push_ping(p);
        }
        match finished {
            None => self.outbox.bulk.push_back((side, key)),
            Some(len) => {
                self.outbox.budget.finish(len as u64);
                self.unsent_taken(side, key, len);
                if more {
                    self.schedule(side, key);
                } else {
                    self.settle(side, key);
                }
                self.admit_waiting();
            }
        }
    }
}

#[cfg(any(test, fuzzing))]
impl Engine {
    /// Asserts the schedule and the byte counts agree with the entries' queues.
    pub(super) fn check_outbox(&self) {
        let mut answer_bytes = 0;
        let mut stream_bytes = 0;
        let mut in_progress = 0u64;
        let mut scheduled = [0usize; 3];
        for (side, key, out) in self.headers().map(|(side, key, h)| (side, key, &h.out)) {
            let bytes = out.check();
            if self.is_answer(side, key) {
                answer_bytes += bytes;
            } else if !self.is_call(side, key) {
                stream_bytes += bytes;
            }
            let entry = (side, key);
            match out.sched {
                Sched::Idle => {}
                Sched::Ready => {
                    scheduled[0] += 1;
                    let queue = if self.is_call(side, key) {
                        &self.outbox.urgent
                    } else {
                        &self.outbox.ready
                    };
                    assert!(queue.contains(&entry), "a ready entry in its queue");
                }
                Sched::Bulk => {
                    scheduled[1] += 1;
                    assert!(self.outbox.bulk.contains(&entry));
                    in_progress += out.front().map_or(0, payload_len) as u64;
                }
                Sched::Waiting => {
                    scheduled[2] += 1;
                    assert!(self.outbox.waiting.contains(&entry));
                }
            }
        }
        assert_eq!(self.outbox.answer_bytes, answer_bytes, "answer bytes");
        assert_eq!(self.outbox.stream_bytes, stream_bytes, "stream bytes");
        let (mut pings_queued, mut credits_queued) = (0, 0);
        for (side, key, s) in self
            .callers
            .iter()
            .filter_map(|(k, e)| match e {
                CallerEntry::Stream(s) => Some((Side::Caller, k, s)),
                CallerEntry::Call(_) => None,
            })
            .chain(self.handlers.iter().filter_map(|(k, e)| match e {
                HandlerEntry::Stream(s) => Some((Side::Handler, k, s)),
                HandlerEntry::Call(_) => None,
            }))
        {
            if s.ping_queued {
                pings_queued += 1;
                assert!(
                    self.outbox.stream_pings.contains(&(side, key)),
                    "a queued ping is scheduled"
                );
            }
            if s.recv.credit_pending > 0 {
                credits_queued += 1;
                assert!(
                    self.outbox.credits.contains(&(side, key)),
                    "pending credit is scheduled"
                );
            }
        }
        assert_eq!(
            self.outbox.stream_pings.len(),
            pings_queued,
            "stream pings scheduled for streams that ended"
        );
        assert_eq!(
            self.outbox.credits.len(),
            credits_queued,
            "credit scheduled for streams that ended"
        );
        assert_eq!(
            self.outbox.budget.in_progress(),
            in_progress,
            "chunk budget"
        );
        assert_eq!(
            scheduled,
            [
                self.outbox.ready.len() + self.outbox.urgent.len(),
                self.outbox.bulk.len(),
                self.outbox.waiting.len()
            ],
            "every scheduled entry is in its queue exactly once"
        );
    }
}
