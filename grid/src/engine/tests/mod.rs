//! The engine stepped by hand: two engines wired together in memory (every frame goes
//! through the real encoder and decoder, checksums on), a virtual clock, and a driver that
//! only records what the engines ask for.

mod calls;
mod chunks;
mod drain;
mod fixture;
mod limits;
mod link;
mod oversize;
mod priority;
mod props;
mod replay;
mod staging;
mod stream_flow;
mod streams;
mod verdicts;
mod windows;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Config, Engine, Key, Outgoing, Start, Transmit};
use crate::codec::{FrameLimits, FrameMessages, HandlerId, Message};

/// Counts how often it was woken.
#[derive(Default)]
pub(super) struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker and how often it was woken.
pub(super) struct Watch {
    counter: Arc<Counter>,
    waker: Waker,
}

impl Watch {
    pub(super) fn new() -> Self {
        let counter = Arc::new(Counter::default());
        Self {
            waker: Waker::from(counter.clone()),
            counter,
        }
    }

    pub(super) fn cx(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }

    pub(super) fn woken(&self) -> usize {
        self.counter.0.load(Ordering::SeqCst)
    }
}

pub(super) fn config() -> Config {
    Config {
        max_message_size: 1 << 20,
        send_limit: 1 << 20,
        ping_interval: Duration::from_secs(10),
        stream_ping_interval: Duration::from_secs(15),
        max_concurrent: 64,
        peer_max_concurrent: 64,
        max_request_bytes: 4 << 20,
        peer_max_request_bytes: 4 << 20,
        reassembly_window: 4 << 20,
        peer_reassembly_window: 4 << 20,
        max_send_buffer: 4 << 20,
        max_early_cancels: 100,
        resume: false,
        // Four messages of up to 10 bytes (each costs 64 bytes more).
        stream_window: WINDOW,
        max_stream_window: 1 << 20,
        peer_max_stream_window: 1 << 20,
        stream_budget: 64 << 20,
        node_budget: crate::engine::NodeBudget::new(512 << 20),
        window_floor: crate::engine::MIN_WINDOW,
        hash_seed: 7,
    }
}

/// The window the tests' streams start with: exactly four messages of 0 to 10 bytes (a
/// message may go while any credit is left).
pub(super) const WINDOW: u64 = 256;

/// One side: its engine and what it asked its driver for.
pub(super) struct Node {
    pub(super) e: Engine,
    /// Handlers it started, in order (the tests play the handlers).
    pub(super) started: Vec<Start>,
    /// Handlers it asked to stop.
    pub(super) stopped: Vec<Key>,
    /// Why it closed the connection, if it did.
    pub(super) violation: Option<String>,
    /// Messages it received, in order (for tests that look at the wire).
    pub(super) received: Vec<Message>,
    /// The most bytes of partial payloads it held after any frame.
    pub(super) max_assembling: usize,
}

impl Node {
    fn new(config: Config, now: Instant) -> Self {
        Self {
            e: Engine::new(config, now),
            started: Vec::new(),
            stopped: Vec::new(),
            violation: None,
            received: Vec::new(),
            max_assembling: 0,
        }
    }

    /// Wakes what the engine readied, as the driver does after each step, and checks the
    /// engine's invariants.
    pub(super) fn wake(&mut self) {
        let mut wakes = Vec::new();
        self.e.take_wakes(&mut wakes);
        wakes.into_iter().for_each(Waker::wake);
        self.stopped.extend(self.e.take_stops());
        self.e.check_invariants();
    }

    /// This side closed the connection for a violation that says `what` (`ctx` says where
    /// we are).
    pub(super) fn assert_violation(&self, what: &str, ctx: &str) {
        assert!(
            self.violation.as_deref().is_some_and(|v| v.contains(what)),
            "{ctx}: {:?}",
            self.violation
        );
    }

    /// The frames this side would write now, encoded as the writer does.
    fn transmit(&mut self, now: Instant) -> Vec<bytes::Bytes> {
        self.transmit_some(now, usize::MAX)
    }

    /// The frames of at most `polls` turns of the writer.
    fn transmit_some(&mut self, now: Instant, polls: usize) -> Vec<bytes::Bytes> {
        let w = Watch::new();
        let mut tx = Transmit::new(0);
        let mut frames = Vec::new();
        let mut turns = 0;
        while turns < polls {
            let Poll::Ready(Ok(())) = self.e.poll_transmit(now, &mut tx, &mut w.cx()) else {
                break;
            };
            turns += 1;
            // As the writer does, with checksums.
            if let Some(start) = tx.build_batch(true) {
                frames.push(Bytes::copy_from_slice(&tx.frame().buffer()[start..]));
            }
            if let Some(start) = tx.build_chunk(true) {
                frames.push(Bytes::copy_from_slice(&tx.frame().buffer()[start..]));
            }
            if frames.len() > 10_000 {
                panic!("a side keeps transmitting");
            }
        }
        self.wake();
        frames
    }

    /// Applies received frames as the reader does: message by message, then starts.
    fn receive(&mut self, now: Instant, frames: Vec<bytes::Bytes>) {
        // As the driver reads: payloads bounded by the frame, the engine checks their size.
        let limits = FrameLimits::new(super::max_frame(self.e.config.max_message_size))
            .requiring_checksums(true);
        for frame in frames {
            if self.violation.is_some() {
                return;
            }
            for m in FrameMessages::new(&frame, limits).expect("a valid frame") {
                self.received.push(m.expect("a valid message"));
            }
            // Applied as the reader does: decoded by the engine, a batch at a time.
            let mut messages = FrameMessages::new(&frame, limits).expect("a valid frame");
            loop {
                match self.e.handle_from(now, &mut messages, 64) {
                    Err(why) => {
                        self.violation = Some(why.to_string());
                        return;
                    }
                    Ok(n) => {
                        self.e.take_starts(&mut self.started);
                        self.e.end_batch();
                        if n < 64 {
                            break;
                        }
                    }
                }
            }
            self.max_assembling = self.max_assembling.max(self.e.assembling());
            self.wake();
        }
        self.wake();
    }

    /// The last handler started (the tests play it).
    pub(super) fn last_start(&self) -> Start {
        self.started.last().cloned().expect("a handler was started")
    }
}

/// A frame carrying `m` as the writer sends a stream's messages: merged, one checksum for
/// all (so a plain message takes the reader's fast path).
pub(super) fn merged_frame(m: &Message) -> Bytes {
    let mut b = crate::codec::FrameBuilder::new(0);
    b.push_encoded(&m.encode(false), 1);
    let start = b.finish(true);
    Bytes::copy_from_slice(&b.buffer()[start..])
}

/// Two engines connected in memory: `a` and `b`, and the virtual time.
pub(super) struct Net {
    pub(super) a: Node,
    pub(super) b: Node,
    pub(super) now: Instant,
}

impl Net {
    /// Neither side closed the connection for a violation (`ctx` says where we are).
    pub(super) fn assert_no_violation(&self, ctx: &str) {
        for (name, node) in [("A", &self.a), ("B", &self.b)] {
            assert!(
                node.violation.is_none(),
                "{ctx}: {name} closed the connection: {:?}",
                node.violation
            );
        }
    }

    pub(super) fn new() -> Net {
        Net::with(config(), config())
    }

    pub(super) fn with(a: Config, b: Config) -> Net {
        let now = Instant::now();
        Net {
            a: Node::new(a, now),
            b: Node::new(b, now),
            now,
        }
    }

    /// A net where A takes B to run `a_peer_max` calls and streams at once (the limit B
    /// announced, as A believes it) and B runs `b_max` of them at once.
    pub(super) fn with_concurrency(a_peer_max: usize, b_max: usize) -> Net {
        let mut a = config();
        a.peer_max_concurrent = a_peer_max;
        let mut b = config();
        b.max_concurrent = b_max;
        Net::with(a, b)
    }

    /// Delivers A's frames to B, then B's to A, until neither has anything to send.
    pub(super) fn pump(&mut self) {
        for _ in 0..1000 {
            let ab = self.a.transmit(self.now);
            let ba = self.b.transmit(self.now);
            if ab.is_empty() && ba.is_empty() {
                return;
            }
            self.b.receive(self.now, ab);
            self.a.receive(self.now, ba);
        }
        panic!("the engines never went quiet");
    }

    /// One direction only: A's frames to B.
    pub(super) fn a_to_b(&mut self) {
        let frames = self.a.transmit(self.now);
        self.b.receive(self.now, frames);
    }

    /// One turn of A's writer, delivered to B (a large payload may stay half received).
    pub(super) fn a_to_b_one(&mut self) {
        let frames = self.a.transmit_some(self.now, 1);
        self.b.receive(self.now, frames);
    }

    /// One turn of B's writer, delivered to A.
    pub(super) fn b_to_a_one(&mut self) {
        let frames = self.b.transmit_some(self.now, 1);
        self.a.receive(self.now, frames);
    }

    /// One direction only: B's frames to A.
    pub(super) fn b_to_a(&mut self) {
        let frames = self.b.transmit(self.now);
        self.a.receive(self.now, frames);
    }

    /// Moves the clock and runs both engines' timers (without delivering anything).
    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
        for node in [&mut self.a, &mut self.b] {
            if let Err(why) = node.e.handle_timeout(self.now) {
                node.violation.get_or_insert(why.to_string());
            }
            node.wake();
        }
    }

    /// A call from A to handler 7, with a deadline `secs` from now.
    pub(super) fn call(&mut self, payload: &'static [u8], secs: u64) -> Key {
        let o = self.outgoing(7, payload, secs);
        self.a.e.open_call(self.now, o).expect("open")
    }

    /// A stream from A to `handler`, with a deadline `secs` from now and the default window.
    pub(super) fn stream(&mut self, handler: u32, payload: &'static [u8], secs: u64) -> Key {
        let o = self.outgoing(handler, payload, secs);
        self.a.e.open_stream(self.now, o, None).expect("open")
    }

    /// A call from A to handler 7 that reached B, with a deadline `secs` from now: its key,
    /// and its start at B.
    pub(super) fn started_call(&mut self, payload: &'static [u8], secs: u64) -> (Key, Start) {
        let key = self.call(payload, secs);
        self.pump();
        (key, self.b.last_start())
    }

    /// An outgoing call or stream to `handler` with a deadline `secs` from now.
    pub(super) fn outgoing(&self, handler: u32, payload: &'static [u8], secs: u64) -> Outgoing {
        Outgoing {
            handler: HandlerId::new(handler),
            subroute: None,
            payload: Some(Bytes::from_static(payload)),
            deadline: self.now + Duration::from_secs(secs),
        }
    }
}

/// A stream receiver as the user's end works (`StreamReceiver`'s own [`RecvBatch`]): it
/// takes what arrived in one step, reads from its own buffer, and reports what it read.
#[derive(Default)]
pub(super) struct Reader(super::RecvBatch);

impl Reader {
    pub(super) fn poll(
        &mut self,
        node: &mut Node,
        side: super::Side,
        key: Key,
    ) -> Poll<Option<Result<Bytes, crate::error::Error>>> {
        loop {
            if let Some(payload) = self.0.next(false) {
                if let Some(read) = self.0.report(payload.len()) {
                    node.e.count_read(side, key, read);
                    node.wake();
                }
                return Poll::Ready(Some(Ok(payload)));
            }
            let w = Watch::new();
            let r = self.0.refill(node.e.stream(side, key), &mut w.cx());
            node.wake();
            match r {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(()))) => {}
                Poll::Ready(end) => return Poll::Ready(end.map(|r| r.map(|()| Bytes::new()))),
            }
        }
    }

    /// The receiver is dropped.
    pub(super) fn drop(&mut self, node: &mut Node, side: super::Side, key: Key) {
        self.0.release(node.e.stream(side, key));
        node.wake();
    }
}

/// Both engines are empty: no call, stream or partial payload left on either side.
pub(super) fn assert_idle(net: &Net) {
    for (name, node) in [("a", &net.a), ("b", &net.b)] {
        assert_eq!(node.e.in_flight(), (0, 0), "{name}: entries left");
        assert_eq!(node.e.assembling(), 0, "{name}: partial payloads left");
        assert_eq!(node.e.active_callers, 0, "{name}: callers still counted");
        assert_eq!(node.e.active_handlers, 0, "{name}: handlers still counted");
        assert!(node.e.handler_ids.is_empty(), "{name}: mux ids still taken");
        assert_eq!(
            node.e.outbox.answer_bytes, 0,
            "{name}: answer bytes counted"
        );
    }
}
