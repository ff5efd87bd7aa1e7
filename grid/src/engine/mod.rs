//! The protocol engine: one per live socket, it owns the meaning of every op and the life
//! of every call and stream on that socket.
//!
//! The engine does no I/O, reads no clock and spawns nothing (like quinn-proto's
//! `Connection`). The driver (`connection/`) feeds it decoded messages and the time
//! ([`Engine::handle`], [`Engine::handle_timeout`]), takes from it what to send
//! ([`Engine::poll_transmit`]), which handlers to start ([`Engine::take_starts`]) or stop
//! ([`Engine::take_stops`]), which tasks to wake ([`Engine::take_wakes`]) and when to call
//! it again ([`Engine::poll_timeout`]). The user's ends of calls and streams act on it
//! through the driver, under one lock per connection. Calls and streams are created only
//! here.
//!
//! Files, one concern each: `header.rs` (what every call and stream has on the books:
//! admission, timer, messages to send, holders) and `life.rs` (how each kind says its
//! phase is over: one cleanup for all), `calls.rs` (single calls, both sides),
//! `call_view.rs` (a call, or an entry served here, borrowed: what the driver does to
//! it), `state.rs` and `streams.rs` (streams: the state enum and its transitions),
//! `stream_view.rs` (one stream's end, borrowed: all a user's sender and receiver may do
//! to it, in `stream_send.rs` and `stream_recv.rs`), `receive.rs` (what each incoming op
//! means), `outbox.rs` (what to send next), `control.rs` (what goes ahead of all data:
//! pings, pongs, credit, refusals), `drain.rs` (a side leaving gracefully), `replay.rs`
//! (what a stream's sender keeps until acknowledged) and `resume.rs` (streams that outlive
//! a socket), `tuning.rs` (window sizes), `budget.rs` (the memory
//! budget of windows), `timers.rs` (deadlines, pings, silence), `window.rs` (credit
//! arithmetic), `assembly.rs` (chunked payloads), `oversize.rs` (a payload over the limit
//! fails its own call or stream), `slab.rs` (entries by key), `invariants.rs` (what the
//! stepped tests and the fuzzer check after every step).
//!
//! Invariants:
//! - every call and stream ends exactly once on each side, and its end reaches the user:
//!   an answer, an error item, or the session's error when the socket dies;
//! - an abandoned stream never looks finished: a sender dropped without `finish`, a
//!   receiver dropped before the end, a cancel, a deadline or a lost connection all end
//!   the handler's input with an error, never with a clean end;
//! - what a peer can make this side hold is bounded by the protocol: at most
//!   `max_concurrent` calls and streams served at once (the rest refused with Busy), stream
//!   messages within the credit granted, chunked payloads within the reassembly window,
//!   one pending pong, refusals waiting for the socket at most `max_concurrent` (more means
//!   the peer does not read: it is disconnected), no handler started while the answers
//!   waiting for the socket exceed `max_send_buffer`, and no stream message queued while
//!   streams' messages waiting for it reach `max_send_buffer` (whatever credit the peer
//!   granted);
//! - a stream's messages go out in the order its sender sent them: while the sender holds
//!   a lease (messages encoded by it and not queued yet, `stream_send.rs`), nothing else is
//!   sent on the stream, and what it staged is numbered and charged as if each had been
//!   sent on its own at that moment;
//! - this side keeps the peer's limits in turn (its `max_concurrent` and window, from the
//!   handshake), so two correct nodes never violate each other's limits;
//! - once closed (socket lost, manager shut down) nothing can be added and nothing waits:
//!   every caller got its error and every handler was told to stop;
//! - suspended (socket lost, streams kept for a resume) only open streams remain, nothing
//!   is sent and no new call starts; a resumed stream delivers every message once, in
//!   order: what the peer did not count as received is sent again, the rest never.

mod assembly;
mod budget;
mod call_view;
mod calls;
mod chunk_window;
mod control;
mod drain;
mod header;
#[cfg(any(test, fuzzing))]
mod invariants;
mod life;
mod mux_ids;
mod out_queue;
mod outbox;
mod oversize;
mod receive;
mod recv_queue;
mod replay;
mod resume;
mod slab;
mod state;
mod stream_recv;
mod stream_send;
mod stream_view;
mod streams;
mod timers;
mod transmit;
mod tuning;
pub(crate) mod violation;
mod window;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::task::Waker;
use std::time::{Duration, Instant};

pub(crate) use assembly::Payload;
pub use budget::NodeBudget;
pub(crate) use budget::MIN_WINDOW;
pub(crate) use calls::{Answer, Outgoing};
pub(crate) use out_queue::ENCODE_EARLY;
pub(crate) use outbox::WriterVisit;
#[cfg(fuzzing)]
pub(crate) use outbox::CHUNK;
pub(crate) use slab::Key;
pub(crate) use stream_recv::RecvBatch;
pub(crate) use stream_send::{InPlace, Lease, Staged};
pub(crate) use transmit::Transmit;
pub(crate) use window::cost;

/// The smallest maximum message size a node may have, and a peer may announce
/// ([`crate::codec::handshake::MIN_MESSAGE_SIZE`]): a peer takes a control message over its
/// maximum for a protocol error.
pub(crate) const MIN_MESSAGE_SIZE: usize = crate::codec::handshake::MIN_MESSAGE_SIZE as usize;

/// The largest frame a side reads when its maximum message size is `max_message`: one
/// payload and its headers, or a merged frame of small messages.
pub(crate) fn max_frame(max_message: usize) -> usize {
    max_message + 2 * transmit::MERGE_LIMIT + 4096
}

use crate::codec::HandlerId;
use crate::error::Error;
use assembly::Assembler;
use calls::{CallerCall, HandlerCall};
use outbox::Outbox;
use slab::{BoxPool, Slab};
use state::Stream;
use timers::Timers;

/// Which end of a call or stream this side is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Side {
    /// This side made the call or opened the stream.
    Caller,
    /// This side runs the handler.
    Handler,
}

/// The engine's settings: this side's limits, and the peer's (from the handshake).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The largest payload one message from the peer may carry.
    pub(crate) max_message_size: usize,
    /// The largest payload this side sends in one message: the smaller of the two sides'
    /// maximum message sizes, as agreed in the handshake.
    pub(crate) send_limit: usize,
    /// How often the connection is pinged; silence for two intervals is a dead peer.
    pub(crate) ping_interval: Duration,
    /// How often a caller pings its streams; a caller silent for three is cancelled.
    pub(crate) stream_ping_interval: Duration,
    /// Calls and streams served here at once for the peer.
    pub(crate) max_concurrent: usize,
    /// Calls and streams the peer serves at once for this side.
    pub(crate) peer_max_concurrent: usize,
    /// Bytes of request (and stream open) payloads held here at once for the peer's calls.
    pub(crate) max_request_bytes: usize,
    /// The same limit on the peer's side, which this side's calls stay within.
    pub(crate) peer_max_request_bytes: usize,
    /// Bytes of chunked payloads this side holds half received at once.
    pub(crate) reassembly_window: usize,
    /// The peer's reassembly window, which this side's chunked sends stay within.
    pub(crate) peer_reassembly_window: usize,
    /// Answer bytes waiting for the socket beyond which no new handler is started.
    pub(crate) max_send_buffer: usize,
    /// The window (bytes) a stream direction this side receives starts with.
    pub(crate) stream_window: u64,
    /// The largest window this side grants one stream direction (announced).
    pub(crate) max_stream_window: u64,
    /// The largest window the peer grants one stream direction: more credit from it is its
    /// violation.
    pub(crate) peer_max_stream_window: u64,
    /// The bytes of windows this side grants on this connection, at most (beyond each
    /// window's floor).
    pub(crate) stream_budget: u64,
    /// The node's budget of windows, shared with its other connections.
    pub(crate) node_budget: std::sync::Arc<NodeBudget>,
    /// What every window gets, budget or not (so every stream moves).
    pub(crate) window_floor: u64,
    /// Calls and streams the peer may cancel before their handler started, per ping
    /// interval, before it is disconnected as a flooder ("rapid reset").
    pub(crate) max_early_cancels: usize,
    /// Streams keep what they sent until the peer acknowledges it, to send it again on a
    /// resumed connection (`replay.rs`, `resume.rs`): both sides keep streams.
    pub(crate) resume: bool,
    /// A random seed for hashing the peer's mux ids (the engine reads no random source).
    pub(crate) hash_seed: u64,
}

/// A handler to start: the engine admitted an incoming call or stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Start {
    pub(crate) key: Key,
    pub(crate) stream: bool,
    pub(crate) mux_id: u64,
    pub(crate) handler: HandlerId,
    pub(crate) subroute: Option<u64>,
    /// Joined by the driver, outside the engine's lock.
    pub(crate) payload: Payload,
    pub(crate) deadline: Option<Instant>,
}

// Both boxed, so a slab slot is two words whatever the entry: 10,000 idle streams would
// otherwise hold 10,000 slots sized for a call (240 B, and the slab's growth room).
enum CallerEntry {
    Call(Box<CallerCall>),
    Stream(Box<Stream>),
}

enum HandlerEntry {
    Call(Box<HandlerCall>),
    Stream(Box<Stream>),
}

/// One connection's protocol state. See the module documentation.
pub(crate) struct Engine {
    config: Config,
    callers: Slab<CallerEntry>,
    handlers: Slab<HandlerEntry>,
    /// Boxes of ended single calls, for the next ones.
    caller_boxes: BoxPool<CallerCall>,
    handler_boxes: BoxPool<HandlerCall>,
    /// The peer's mux ids of the calls and streams served here, while they are live.
    handler_ids: mux_ids::MuxIds,
    /// Live (not yet ended on the wire) calls and streams per side.
    active_callers: usize,
    active_handlers: usize,
    /// Request payload bytes of those calls and streams: (made here, served here).
    request_bytes: (usize, usize),
    outbox: Outbox,
    assembler: Assembler,
    timers: Timers,
    /// Calls and streams of this side waiting for the peer to serve fewer at once, with
    /// their opening message.
    queued: VecDeque<(Key, crate::codec::Message)>,
    /// Handlers admitted and not yet started, in order.
    starts: VecDeque<Start>,
    /// Handlers to stop: their call ended without them.
    stops: Vec<Key>,
    /// Tasks to wake once the lock is released.
    wakes: Vec<Waker>,
    writer: Option<Waker>,
    idle: Vec<Waker>,
    closed: Option<Error>,
    /// The reader's current batch of messages; a stream opened and cancelled in the same
    /// batch never starts its handler.
    batch: u64,
    early_cancels: usize,
    /// When the engine was created: pings carry the time since.
    epoch: Instant,
    last_rtt: Option<Duration>,
    /// The smallest recent round trip, which stream windows are sized by.
    rtt: tuning::Rtt,
    chunk_window: chunk_window::ChunkWindow,
    /// What the stream windows granted here take of the memory budgets.
    budget: budget::Budget,
    /// Whether either side said it is leaving (`drain.rs`).
    drain: drain::Drain,
    /// Streams kept through a lost socket (`resume.rs`).
    resume: resume::Resuming,
}

impl Engine {
    /// A new engine for a socket that just passed its handshake at `now`.
    pub(crate) fn new(config: Config, now: Instant) -> Engine {
        let max = config.max_message_size;
        let seed = config.hash_seed;
        let budget = budget::Budget::new(
            config.stream_budget,
            config.window_floor,
            config.node_budget.clone(),
        );
        Engine {
            budget,
            assembler: Assembler::new(max, config.reassembly_window),
            outbox: Outbox::new(config.peer_reassembly_window as u64),
            chunk_window: chunk_window::ChunkWindow::new(config.peer_reassembly_window as u64),
            timers: Timers::new(&config, now),
            config,
            callers: Slab::default(),
            handlers: Slab::default(),
            caller_boxes: BoxPool::default(),
            handler_boxes: BoxPool::default(),
            handler_ids: mux_ids::new(seed),
            active_callers: 0,
            active_handlers: 0,
            request_bytes: (0, 0),
            queued: VecDeque::new(),
            starts: VecDeque::new(),
            stops: Vec::new(),
            wakes: Vec::new(),
            writer: None,
            idle: Vec::new(),
            closed: None,
            batch: 0,
            early_cancels: 0,
            epoch: now,
            last_rtt: None,
            rtt: tuning::Rtt::default(),
            drain: drain::Drain::default(),
            resume: resume::Resuming::default(),
        }
    }

    /// Ends everything with `err` (the socket died or the manager shut down): every caller
    /// gets `err`, every running handler is to be stopped, nothing more is sent.
    pub(crate) fn close(&mut self, err: Error) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(err.clone());
        self.wakes.append(&mut self.outbox.visit_waiters);
        for key in self.callers.keys() {
            self.close_entry(Side::Caller, key, &err);
        }
        for key in self.handlers.keys() {
            self.close_entry(Side::Handler, key, &err);
        }
        self.outbox.clear();
        self.queued.clear();
        self.starts.clear();
        self.timers.clear_deadlines();
        self.assembler = Assembler::new(self.config.max_message_size, 0);
        if let Some(w) = self.writer.take() {
            self.wakes.push(w);
        }
        self.check_idle();
    }

    /// Handlers admitted since the last call, to start now, in order; the reader calls this
    /// after each batch of messages. None are released while the answers waiting for the
    /// socket exceed the send buffer: they stay admitted until the writer catches up.
    pub(crate) fn take_starts(&mut self, out: &mut Vec<Start>) {
        while self.outbox.answer_bytes <= self.config.max_send_buffer {
            let Some(start) = self.starts.pop_front() else {
                break;
            };
            if let Some(start) = self.start(start) {
                out.push(start);
            }
        }
    }

    /// The reader finished a batch of messages (see [`Engine::early_cancel`]).
    pub(crate) fn end_batch(&mut self) {
        self.batch += 1;
    }

    /// Whether the handler of a call or stream served here is running (started, and its
    /// call not ended): the driver keeps its task only then.
    pub(super) fn handler_running(&self, key: Key) -> bool {
        match self.handlers.get(key) {
            Some(HandlerEntry::Call(c)) => c.state == calls::HandlerCallState::Running,
            Some(HandlerEntry::Stream(s)) => s.state == state::StreamState::Open,
            None => false,
        }
    }

    /// True if handlers admitted while the send buffer was full can start now: it has
    /// drained to its bound ([`Engine::take_starts`] hands them over).
    pub(crate) fn has_deferred_starts(&self) -> bool {
        !self.starts.is_empty() && self.outbox.answer_bytes <= self.config.max_send_buffer
    }

    /// Running handlers whose call ended without them (cancel, deadline, lost connection):
    /// the driver stops their tasks.
    pub(crate) fn take_stops(&mut self) -> std::vec::Drain<'_, Key> {
        self.stops.drain(..)
    }

    /// The largest payload this side sends in one message (agreed in the handshake).
    pub(crate) fn send_limit(&self) -> usize {
        self.config.send_limit
    }

    pub(crate) fn has_wakes(&self) -> bool {
        !self.wakes.is_empty()
    }

    /// The tasks to wake: call after releasing the lock around the engine.
    pub(crate) fn take_wakes(&mut self, into: &mut Vec<Waker>) {
        if into.is_empty() {
            std::mem::swap(into, &mut self.wakes);
        } else {
            into.append(&mut self.wakes);
        }
    }

    /// (calls and streams made here, calls and streams served here) not yet released.
    pub(crate) fn in_flight(&self) -> (usize, usize) {
        (self.callers.len(), self.handlers.len())
    }

    /// Bytes of chunked payloads received so far and not complete.
    pub(crate) fn assembling(&self) -> usize {
        self.assembler.held()
    }

    /// Bytes of stream windows granted to the peer now.
    pub(crate) fn stream_windows(&self) -> u64 {
        self.budget.granted()
    }

    /// The window on this side's large payloads ([`chunk_window`]).
    pub(crate) fn chunk_window(&self) -> u64 {
        self.chunk_window.size()
    }

    /// The round trip of the last answered connection ping.
    pub(crate) fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    /// Ready once nothing is in flight, nothing half received and no refusal waits for the
    /// socket; else registers `waker`.
    pub(crate) fn poll_idle(&mut self, waker: &Waker) -> bool {
        if self.is_idle() {
            return true;
        }
        if !self.idle.iter().any(|w| w.will_wake(waker)) {
            self.idle.push(waker.clone());
        }
        false
    }

    /// Nothing in flight, nothing half received, and no refusal waiting for the socket.
    fn is_idle(&self) -> bool {
        self.callers.is_empty()
            && self.handlers.is_empty()
            && self.assembler.held() == 0
            && self.outbox.refusals.is_empty()
    }

    fn check_idle(&mut self) {
        if !self.idle.is_empty() && self.is_idle() {
            self.wakes.append(&mut self.idle);
        }
    }

    /// Whether a new call or stream is refused at once: the engine is closed, or the peer
    /// said it is leaving ([`Engine::refusal`] says why).
    fn refuses_new(&self) -> bool {
        self.closed.is_some() || self.drain.received.is_some() || self.resume.busy()
    }

    /// Why a new call or stream is refused ([`Engine::refuses_new`]). Nothing of it is
    /// sent: a lost connection did not execute it.
    #[cold]
    fn refusal(&self) -> Error {
        match &self.closed {
            Some(err) => err.clone().unsent(),
            None => self.peer_left().unwrap_or(Error::NOT_SENT),
        }
    }

    /// Settles an entry after a change: once it ended on the wire and has nothing left to
    /// send it stops counting against the limits (and a handler side's mux id may be used
    /// again), and once no user end holds it, it is removed.
    fn settle(&mut self, side: Side, key: Key) {
        let status = match side {
            Side::Caller => self.callers.get_mut(key).map(CallerEntry::settle),
            Side::Handler => self.handlers.get_mut(key).map(HandlerEntry::settle),
        };
        let Some(life::Status {
            done,
            released,
            uncounted: counted,
            mux_id,
        }) = status
        else {
            return;
        };
        if let Some(bytes) = counted {
            match side {
                Side::Caller => {
                    self.active_callers -= 1;
                    self.request_bytes.0 -= bytes;
                    self.activate_queued();
                }
                Side::Handler => {
                    self.active_handlers -= 1;
                    self.request_bytes.1 -= bytes;
                    // The peer may use this mux id again.
                    if let Some(std::collections::hash_map::Entry::Occupied(e)) =
                        mux_id.map(|m| self.handler_ids.entry(m))
                    {
                        if *e.get() == key {
                            e.remove();
                        }
                    }
                }
            }
        }
        if done && released {
            self.remove(side, key);
        }
    }

    /// Removes an entry (its mux id was released when it stopped counting).
    fn remove(&mut self, side: Side, key: Key) {
        // Whatever way it ended, it holds no timer once gone; and a stream ended here and
        // then released by its caller's cancel before its pong left: nothing of it stays
        // in the control lanes.
        self.forget_control(side, key);
        match side {
            Side::Caller => {
                let mut removed = self.callers.remove(key);
                if let Some(e) = removed.as_mut() {
                    self.timers.disarm(&mut e.header_mut().timer, side, key);
                }
                match removed {
                    Some(CallerEntry::Call(c)) => {
                        self.caller_boxes.recycle(c, CallerCall::ended);
                    }
                    Some(CallerEntry::Stream(s)) => self.budget.close(s.recv.window.size()),
                    None => {}
                }
            }
            Side::Handler => {
                let mut removed = self.handlers.remove(key);
                if let Some(e) = removed.as_mut() {
                    self.timers.disarm(&mut e.header_mut().timer, side, key);
                }
                // A call that ended before its handler could start (the send buffer was
                // full) leaves no admission behind, nor its request.
                if !self.starts.is_empty() {
                    self.starts.retain(|s| s.key != key);
                }
                match removed {
                    Some(HandlerEntry::Call(c)) => {
                        self.handler_boxes.recycle(c, HandlerCall::ended);
                    }
                    Some(HandlerEntry::Stream(s)) if s.recv.window.size() > 0 => {
                        self.budget.close(s.recv.window.size());
                    }
                    Some(HandlerEntry::Stream(_)) | None => {}
                }
            }
        }
        self.check_idle();
    }

    fn wake(&mut self, waker: Option<Waker>) {
        if let Some(w) = waker {
            self.wakes.push(w);
        }
    }

    /// The writer has something to send: wake it if it waits.
    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            self.wakes.push(w);
        }
    }
}
