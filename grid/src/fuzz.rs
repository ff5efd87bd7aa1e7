//! Access to the protocol engine for the fuzz targets of `fuzz/`, built only by cargo-fuzz
//! (which passes `--cfg fuzzing`). Not part of the API.
//!
//! [`Pair`] is two engines connected in memory and driven as the connection's tasks drive
//! them: the reader applies each frame in batches and starts the handlers each batch
//! admitted, the writer takes frames (and starts the handlers that waited for the send
//! buffer), the timers fire when the engine asked or when the clock jumps. Every frame goes
//! through the real encoder and decoder. The fuzzer plays both sides' users (calls,
//! streams, handlers, every order of dropping their ends), the clock and the network, and
//! may tamper with the link: inject messages or raw frames, corrupt, drop, duplicate or
//! reorder frames. Checksums are recomputed after a change, so the mutations reach the
//! engine rather than stop at the checksum.
//!
//! After every step both engines' invariants hold, including the bounds on what they hold
//! (`Engine::check_invariants`); every frame an engine writes is one its peer reads; a
//! timer never fires for nothing. While the link was not tampered with, the two engines
//! are two correct peers, and more must hold: neither sees a protocol violation from the
//! other (apart from the documented flood limit its user can cross), a caller is never
//! refused with Busy, stream messages arrive in order and intact, every clean end is a real
//! one, an answer is the one its handler gave, and once both sides' users stopped, both
//! engines are empty. Whatever happened, once the connection is lost and the users dropped
//! everything, nothing is left. Any breach panics: a finding.

use std::collections::{HashMap, VecDeque};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::handshake::Terms;
use crate::codec::{
    decode_frame, encode_frame, ErrorKind, ErrorPayload, Flags, FrameLimits, FrameMessages,
    HandlerId, Message, Op,
};
use crate::engine::{Engine, Key, Outgoing, RecvBatch, Side, Start, Transmit};
use crate::error::Error;

/// Messages the reader applies under one lock (as `connection::reader` does).
const BATCH: usize = 64;
/// Most frames one side writes, or mux ids one side remembers, before the harness gives up
/// on keeping them.
const KEEP: usize = 64;
/// The payload of a connection ping or pong is at most this (it is echoed).
const MAX_PING: usize = 125;

/// One side's settings, as its manager's builder takes them. [`Pair::new`] makes them
/// valid the way `ManagerBuilder::build` requires.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest payload one message may carry (512 bytes to 1 GiB).
    pub max_message_size: usize,
    /// Calls and streams served at once for the peer (at least 1).
    pub max_concurrent: usize,
    /// Request bytes held at once for the peer (at least the maximum message size).
    pub max_request_bytes: usize,
    /// Bytes of chunked payloads held half received (at least the maximum message size).
    pub reassembly_window: usize,
    /// Answer bytes waiting for the socket beyond which no new handler starts.
    pub max_send_buffer: usize,
    /// Calls and streams the peer may cancel before they started, per ping interval.
    pub max_early_cancels: usize,
    /// The connection's ping interval (non-zero).
    pub ping_interval: Duration,
    /// The streams' ping interval (non-zero).
    pub stream_ping_interval: Duration,
}

impl Limits {
    fn valid(mut self) -> Self {
        self.max_message_size = self
            .max_message_size
            .clamp(crate::engine::MIN_MESSAGE_SIZE, 1 << 30);
        self.max_concurrent = self.max_concurrent.clamp(1, u32::MAX as usize);
        self.max_request_bytes = self.max_request_bytes.max(self.max_message_size);
        self.reassembly_window = self.reassembly_window.max(self.max_message_size);
        self.ping_interval = self.ping_interval.max(Duration::from_millis(1));
        self.stream_ping_interval = self.stream_ping_interval.max(Duration::from_millis(1));
        self
    }

    /// The limits of a grid peer that announced `terms` (defaults for what it left out).
    fn announced_by(terms: &Terms) -> Self {
        let size = |v: Option<u64>, default: usize| {
            v.and_then(|v| usize::try_from(v).ok()).unwrap_or(default)
        };
        let defaults = crate::core::Config::default();
        Limits {
            max_message_size: size(terms.max_message_size, defaults.max_message_size),
            max_concurrent: size(
                terms.max_concurrent.map(u64::from),
                defaults.max_concurrent_calls,
            ),
            max_request_bytes: size(terms.max_request_bytes, defaults.max_request_bytes),
            reassembly_window: size(terms.reassembly_window, defaults.reassembly_window),
            max_send_buffer: defaults.max_send_buffer,
            max_early_cancels: defaults.max_early_cancels,
            ping_interval: defaults.ping_interval,
            stream_ping_interval: defaults.stream_ping_interval,
        }
        .valid()
    }

    /// The manager's configuration with these limits.
    fn core(&self) -> crate::core::Config {
        crate::core::Config {
            ping_interval: self.ping_interval,
            stream_ping_interval: self.stream_ping_interval,
            max_message_size: self.max_message_size,
            max_concurrent_calls: self.max_concurrent,
            max_send_buffer: self.max_send_buffer,
            reassembly_window: self.reassembly_window,
            max_request_bytes: self.max_request_bytes,
            max_early_cancels: self.max_early_cancels,
            ..crate::core::Config::default()
        }
    }
}

/// One engine of a [`Pair`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// The first engine.
    A,
    /// The second engine.
    B,
}

impl Peer {
    fn other(self) -> Peer {
        match self {
            Peer::A => Peer::B,
            Peer::B => Peer::A,
        }
    }
}

/// The mux id of a message injected into an engine.
#[derive(Clone, Copy, Debug)]
pub enum Mux {
    /// This value.
    Raw(u64),
    /// The id of a call or stream the receiving engine made (the `n`th it remembers).
    Made(u8),
    /// The id of a call or stream the receiving engine serves or served (the `n`th).
    Served(u8),
}

/// What both users sent and answered, for the checks on what arrives.
#[derive(Default)]
struct Book {
    /// Streams by (caller, the caller's mux id).
    flows: HashMap<(Peer, u64), Flow>,
    /// Answers handlers gave (their payload's length) by (caller, mux id).
    answers: HashMap<(Peer, u64), usize>,
}

/// One stream as both users see it.
#[derive(Default)]
struct Flow {
    /// The caller's messages accepted for sending, by length.
    up: Vec<usize>,
    /// The caller finished its direction (a real EOF).
    finished: bool,
    /// The handler's messages accepted for sending, by length.
    down: Vec<usize>,
    /// The handler returned, successfully or not.
    returned: Option<bool>,
}

impl Flow {
    fn sent(&mut self, side: Side) -> &mut Vec<usize> {
        match side {
            Side::Caller => &mut self.up,
            Side::Handler => &mut self.down,
        }
    }
}

/// A stream's user ends held on one side.
struct Ends {
    side: Side,
    key: Key,
    /// The caller's mux id, which names the stream in the book.
    flow: (Peer, u64),
    sender: bool,
    receiver: Option<RecvBatch>,
    /// Messages received.
    got: usize,
    /// How the receiver ended (its first end): cleanly or not.
    end: Option<bool>,
}

/// One side: its engine, the link its writer writes to, and what its users hold.
struct Node {
    peer: Peer,
    e: Engine,
    /// What its reader accepts.
    limits: FrameLimits,
    /// What the other side's reader accepts: every frame written here must pass.
    peer_limits: FrameLimits,
    send_limit: usize,
    tx: Transmit,
    /// Frames written, not yet read by the other side.
    link: VecDeque<Bytes>,
    /// When the runner sleeps until (what `poll_timeout` returned last).
    armed: Option<Instant>,
    calls: Vec<Key>,
    openings: Vec<Key>,
    ends: Vec<Ends>,
    /// Single calls whose handler runs here.
    serving: Vec<Start>,
    /// Streams admitted here, for their handler to accept or refuse.
    accepting: Vec<Start>,
    made_ids: VecDeque<u64>,
    served_ids: VecDeque<u64>,
}

impl Node {
    fn new(peer: Peer, config: crate::engine::Config, now: Instant, checksums: bool) -> Self {
        let peer_max = config.send_limit;
        let limits = FrameLimits::new(crate::engine::max_frame(config.max_message_size))
            .requiring_checksums(checksums);
        // The peer reads frames of its own maximum message size; this side sends at most
        // the smaller of the two, so that is all it may assume.
        let peer_limits =
            FrameLimits::new(crate::engine::max_frame(peer_max)).requiring_checksums(checksums);
        Node {
            peer,
            send_limit: config.send_limit,
            e: Engine::new(config, now),
            limits,
            peer_limits,
            tx: Transmit::new(0),
            link: VecDeque::new(),
            armed: None,
            calls: Vec::new(),
            openings: Vec::new(),
            ends: Vec::new(),
            serving: Vec::new(),
            accepting: Vec::new(),
            made_ids: VecDeque::new(),
            served_ids: VecDeque::new(),
        }
    }

    fn remember(ids: &mut VecDeque<u64>, id: u64) {
        if ids.len() >= KEEP {
            ids.pop_front();
        }
        ids.push_back(id);
    }

    fn caller_ends(&self) -> impl Iterator<Item = Key> + '_ {
        self.ends
            .iter()
            .filter(|x| x.side == Side::Caller)
            .map(|x| x.key)
    }
}

fn pick<T>(v: &[T], i: u8) -> Option<usize> {
    (!v.is_empty()).then(|| usize::from(i) % v.len())
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

/// Where a [`tagged`] payload says what it is: at the start of every 4 KiB block, and in
/// its last 16 bytes (which win where the two meet).
const TAG_EVERY: usize = 4096;

/// A payload of `len` bytes that says which message it is (`flow`, `n`) and, block by
/// block, where each part of it belongs, so that a lost, swapped or foreign part of a
/// chunked payload shows (checked by [`is_tagged`] without copying).
fn tagged(flow: u64, n: u32, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    for (at, end, tag) in tags(flow, n, len) {
        v[at..end].copy_from_slice(&tag[..end - at]);
    }
    Bytes::from(v)
}

/// Whether `payload` is the [`tagged`] payload `(flow, n)` of its length.
fn is_tagged(payload: &[u8], flow: u64, n: u32) -> bool {
    tags(flow, n, payload.len()).all(|(at, end, tag)| payload[at..end] == tag[..end - at])
}

/// The tags of a payload of `len` bytes: where each goes (start, end) and what it says.
fn tags(flow: u64, n: u32, len: usize) -> impl Iterator<Item = (usize, usize, [u8; 16])> {
    let tag = move |block: u32| {
        let mut tag = [0u8; 16];
        tag[..8].copy_from_slice(&flow.to_le_bytes());
        tag[8..12].copy_from_slice(&n.to_le_bytes());
        tag[12..].copy_from_slice(&block.to_le_bytes());
        tag
    };
    // The last 16 bytes, when the payload has room for them and a first block tag.
    let body = if len >= 32 { len - 16 } else { len };
    let blocks = (0..body)
        .step_by(TAG_EVERY)
        .enumerate()
        .map(move |(block, at)| (at, (at + 16).min(body), tag(block as u32)));
    let end = (body < len).then(|| (body, len, tag(u32::MAX)));
    blocks.chain(end)
}

/// Makes the checksum that ends a frame (a single message's, or a merged wrapper's) match
/// the bytes before it again.
pub fn fix_checksum(frame: &mut [u8]) {
    if frame.len() < 10 {
        return;
    }
    let at = frame.len() - 9;
    frame[at] = 0xcf;
    let sum = xxhash_rust::xxh3::xxh3_64(&frame[..at]);
    frame[at + 1..].copy_from_slice(&sum.to_be_bytes());
}

/// Two engines connected in memory, and their users. See the module documentation.
pub struct Pair {
    a: Node,
    b: Node,
    now: Instant,
    checksums: bool,
    /// Something not written by the other engine reached an engine.
    tampered: bool,
    /// The socket is gone: both engines are closed.
    lost: bool,
    book: Book,
}

impl Pair {
    /// Two connected engines with these settings, after a handshake that agreed on
    /// `checksums`.
    pub fn new(a: Limits, b: Limits, checksums: bool) -> Pair {
        let (a, b) = (a.valid(), b.valid());
        let (ca, cb) = (a.core(), b.core());
        Self::connect(
            ca.engine(cb.announced(checksums)),
            cb.engine(ca.announced(checksums)),
            checksums,
        )
    }

    /// A's engine after a handshake in which its peer announced `terms` (taken as they
    /// are, as the handshake takes them), and B a grid peer with those limits. `ours`:
    /// whether A asked for checksums.
    pub fn with_terms(a: Limits, terms: &Terms, ours: bool) -> Pair {
        let a = a.valid();
        let b = Limits::announced_by(terms);
        let checksums = terms.agree_checksums(ours);
        let (ca, cb) = (a.core(), b.core());
        Self::connect(ca.engine(*terms), cb.engine(ca.announced(ours)), checksums)
    }

    fn connect(
        mut a: crate::engine::Config,
        mut b: crate::engine::Config,
        checksums: bool,
    ) -> Pair {
        // The engine reads no random source; the driver gives it a seed. Fixed here, so
        // that a run can be replayed.
        a.hash_seed = 0xa;
        b.hash_seed = 0xb;
        let now = Instant::now();
        let mut pair = Pair {
            a: Node::new(Peer::A, a, now, checksums),
            b: Node::new(Peer::B, b, now, checksums),
            now,
            checksums,
            tampered: false,
            lost: false,
            book: Book::default(),
        };
        pair.settle();
        pair
    }

    fn node(&mut self, p: Peer) -> &mut Node {
        match p {
            Peer::A => &mut self.a,
            Peer::B => &mut self.b,
        }
    }

    /// Whether the oracles that need two correct peers apply.
    fn clean(&self) -> bool {
        !self.tampered
    }

    // ---- what the drivers do after every step ----------------------------------------

    /// After every step, as the session does after each use of the engine: stops the
    /// handlers whose call ended, drops the wakers (nothing waits in here), re-arms the
    /// timer when it moved; then checks the engines.
    fn settle(&mut self) {
        self.settle_at(Peer::A);
        self.settle_at(Peer::B);
    }

    /// As [`Pair::settle`], for the one side a step touched.
    fn settle_at(&mut self, p: Peer) {
        let lost = self.lost;
        {
            let node = self.node(p);
            loop {
                let stops: Vec<Key> = node.e.take_stops().collect();
                if stops.is_empty() {
                    break;
                }
                for key in stops {
                    node.serving.retain(|s| s.key != key);
                    node.accepting.retain(|s| s.key != key);
                    // The handler's task is aborted: its ends are dropped, it returns nothing.
                    if let Some(i) = node
                        .ends
                        .iter()
                        .position(|x| x.side == Side::Handler && x.key == key)
                    {
                        let x = node.ends.remove(i);
                        drop_ends(&mut node.e, x);
                    }
                }
            }
            let mut wakes = Vec::new();
            node.e.take_wakes(&mut wakes);
            drop(wakes);
            if node.armed.is_none() || node.e.timeout_moved() {
                node.armed = Some(node.e.poll_timeout());
            }
            node.e.check_invariants();
            let (made, served) = node.e.in_flight();
            if lost {
                // Once closed, what remains is only what users still hold.
                let held = node.calls.len() + node.openings.len() + node.ends.len();
                assert!(made + served <= held, "{p:?}: entries no user holds");
            }
        }
    }

    /// The connection is lost (a violation, a timeout, a shutdown): both engines close,
    /// and everything waiting learns it at once.
    fn lose(&mut self, closed_by_shutdown: Option<Peer>) {
        if self.lost {
            return;
        }
        self.lost = true;
        let now = self.now;
        for p in [Peer::A, Peer::B] {
            let err = if closed_by_shutdown == Some(p) {
                Error::Closed
            } else {
                Error::Disconnected
            };
            let node = self.node(p);
            node.e.close(err);
            node.link.clear();
            assert!(
                matches!(
                    node.e.poll_transmit(now, &mut node.tx, &mut cx()),
                    Poll::Ready(Err(_))
                ),
                "a closed engine's writer must stop"
            );
            // Every caller got its error.
            for key in std::mem::take(&mut node.calls) {
                assert!(
                    node.e.poll_call(key, &mut cx()).is_ready(),
                    "{p:?}: a call still waits on a closed engine"
                );
            }
            for key in std::mem::take(&mut node.openings) {
                match node.e.poll_opened(key, &mut cx()) {
                    Poll::Ready(Ok(ack)) => node.ends.push(caller_ends(p, key, ack)),
                    Poll::Ready(Err(_)) => {}
                    Poll::Pending => panic!("{p:?}: a stream still opens on a closed engine"),
                }
            }
        }
        self.settle();
    }

    fn violation(&mut self, p: Peer, why: String) {
        let close = self.node(p).e.violation_close(why.clone());
        if self.clean() && !self.lost {
            // The flood limits a correct peer can cross: its user cancels calls and streams
            // as fast as it opens them (rapid reset), or its streams' pings outnumber the
            // concurrency limit while this side's writer takes nothing (the fuzzer held it
            // back for more than a stream-ping interval) and the streams ended here.
            assert!(
                why.contains("rapid reset") || why.contains("pings streams that do not exist"),
                "{p:?} saw a protocol violation from a correct peer: {why} (close {})",
                close.code
            );
        }
        self.lose(None);
    }

    // ---- the network ------------------------------------------------------------------

    /// Up to `turns` turns of `p`'s writer: each takes what the engine has to send, starts
    /// the handlers that waited for the send buffer, and writes its frames to the link.
    pub fn write(&mut self, p: Peer, turns: usize) {
        let now = self.now;
        let checksums = self.checksums;
        let mut starts = Vec::new();
        {
            let node = self.node(p);
            for _ in 0..turns {
                match node.e.poll_transmit(now, &mut node.tx, &mut cx()) {
                    Poll::Pending => break,
                    Poll::Ready(Err(_)) => break,
                    Poll::Ready(Ok(())) => {}
                }
                if node.e.has_deferred_starts() {
                    node.e.take_starts(&mut starts);
                }
                if let Some(pong) = node.tx.transport_pong.take() {
                    assert!(pong.len() <= MAX_PING, "a transport pong over 125 bytes");
                }
                let messages = node.tx.messages();
                if let Some(start) = node.tx.build_batch(checksums) {
                    let frame = Bytes::copy_from_slice(&node.tx.frame().buffer()[start..]);
                    check_written(node, &frame, Some(messages));
                    node.link.push_back(frame);
                }
                if let Some(start) = node.tx.build_chunk(checksums) {
                    let frame = Bytes::copy_from_slice(&node.tx.frame().buffer()[start..]);
                    check_written(node, &frame, None);
                    node.link.push_back(frame);
                }
                if node.link.len() > 16 * KEEP {
                    // A writer that never stops would be a finding of its own.
                    panic!("{p:?} keeps writing");
                }
            }
        }
        self.start(p, starts);
        self.settle_at(p);
    }

    /// `p` reads up to `frames` frames the other side wrote.
    pub fn read(&mut self, p: Peer, frames: usize) {
        for _ in 0..frames {
            let Some(frame) = self.node(p.other()).link.pop_front() else {
                break;
            };
            self.receive(p, &frame);
        }
        self.settle_at(p);
    }

    /// Both sides write and read until neither has anything to send (bounded).
    pub fn pump(&mut self) {
        for _ in 0..256 {
            self.write(Peer::A, usize::MAX);
            self.write(Peer::B, usize::MAX);
            if self.a.link.is_empty() && self.b.link.is_empty() {
                return;
            }
            self.read(Peer::B, usize::MAX);
            self.read(Peer::A, usize::MAX);
        }
        if self.clean() {
            panic!("the engines never went quiet");
        }
    }

    /// Applies one frame as the reader does: decoded and applied a batch at a time, the
    /// handlers each batch admitted started after it.
    fn receive(&mut self, p: Peer, frame: &Bytes) {
        if self.lost {
            return;
        }
        let now = self.now;
        let node = self.node(p);
        let mut messages = match FrameMessages::new(frame, node.limits) {
            Ok(m) => m,
            Err(e) => return self.violation(p, format!("undecodable frame: {e}")),
        };
        loop {
            let node = self.node(p);
            match node.e.handle_from(now, &mut messages, BATCH) {
                Err(why) => return self.violation(p, why),
                Ok(n) => {
                    let mut starts = Vec::new();
                    node.e.take_starts(&mut starts);
                    node.e.end_batch();
                    self.start(p, starts);
                    if n < BATCH {
                        break;
                    }
                }
            }
        }
    }

    /// Handlers the engine started: single calls run until the user answers; streams wait
    /// for their handler to accept (or refuse) them.
    fn start(&mut self, p: Peer, starts: Vec<Start>) {
        let node = self.node(p);
        for s in starts {
            assert!(
                node.e.handler_running(s.key) || s.stream,
                "a start for nothing"
            );
            Node::remember(&mut node.served_ids, s.mux_id);
            if s.stream {
                node.accepting.push(s);
            } else {
                node.serving.push(s);
            }
        }
    }

    /// The clock moves on by `ms` and both sides' timers run, as when the runner wakes up
    /// late.
    pub fn advance(&mut self, ms: u32) {
        self.now += Duration::from_millis(u64::from(ms));
        self.timers();
    }

    /// The clock moves on to the earlier of the two sides' timers, which fire.
    pub fn tick(&mut self) {
        let due = [self.a.armed, self.b.armed].into_iter().flatten().min();
        if let Some(due) = due {
            self.now = self.now.max(due);
        }
        self.timers();
    }

    fn timers(&mut self) {
        let now = self.now;
        let lost = self.lost;
        let mut failed = false;
        for p in [Peer::A, Peer::B] {
            let node = self.node(p);
            match node.e.handle_timeout(now) {
                Ok(()) => {
                    let next = node.e.poll_timeout();
                    assert!(
                        next > now || lost,
                        "{p:?}: a timer due again at once (the runner would spin)"
                    );
                    node.armed = Some(next);
                }
                // The peer fell silent or does not read: the connection is lost, for good
                // reason (the clock jumped, or the fuzzer held the frames back).
                Err(_) => failed = true,
            }
        }
        if failed {
            self.lose(None);
        }
        self.settle();
    }

    /// `p`'s manager shuts down.
    pub fn shutdown(&mut self, p: Peer) {
        self.lose(Some(p));
    }

    /// A WebSocket-level ping reaches `p`.
    pub fn transport_ping(&mut self, p: Peer, len: usize) {
        let node = self.node(p);
        node.e
            .transport_ping(Bytes::from(vec![0x70; len.min(MAX_PING)]));
        self.settle_at(p);
    }

    // ---- tampering ----------------------------------------------------------------------

    /// Messages reach `to` as if its peer had sent them: in one frame (merged when several)
    /// or one frame each. Checksummed when the connection uses checksums.
    pub fn inject(&mut self, to: Peer, messages: Vec<(Mux, Message)>, one_frame: bool) {
        self.tampered = true;
        let node = self.node(to);
        let messages: Vec<Message> = messages
            .into_iter()
            .map(|(mux, mut m)| {
                m.mux_id = resolve(node, mux);
                m
            })
            .collect();
        if messages.is_empty() {
            return;
        }
        let frames: Vec<Bytes> = if one_frame {
            vec![encode_frame(&messages, self.checksums)]
        } else {
            messages
                .iter()
                .map(|m| encode_frame(std::slice::from_ref(m), self.checksums))
                .collect()
        };
        for frame in frames {
            self.receive(to, &frame);
        }
        self.settle_at(to);
    }

    /// A raw frame reaches `to`; with `fix`, its final checksum is made to match first.
    pub fn inject_raw(&mut self, to: Peer, mut frame: Vec<u8>, fix: bool) {
        self.tampered = true;
        if fix {
            fix_checksum(&mut frame);
        }
        self.receive(to, &Bytes::from(frame));
        self.settle_at(to);
    }

    /// Flips bits of a byte of a frame on its way from `from` (its checksum recomputed
    /// when the connection uses them).
    pub fn corrupt(&mut self, from: Peer, frame: u8, at: u32, xor: u8) {
        let checksums = self.checksums;
        self.tampered |= !self.node(from).link.is_empty();
        let link = &mut self.node(from).link;
        let Some(i) = pick(link.make_contiguous(), frame) else {
            return;
        };
        let mut bytes = link[i].to_vec();
        let at = at as usize % bytes.len();
        bytes[at] ^= xor.max(1);
        if checksums {
            fix_checksum(&mut bytes);
        }
        link[i] = Bytes::from(bytes);
    }

    /// Loses a frame on its way from `from`.
    pub fn drop_frame(&mut self, from: Peer, frame: u8) {
        let link = &mut self.node(from).link;
        if let Some(i) = pick(link.make_contiguous(), frame) {
            link.remove(i);
            self.tampered = true;
        }
    }

    /// Delivers a frame on its way from `from` twice.
    pub fn duplicate_frame(&mut self, from: Peer, frame: u8) {
        let link = &mut self.node(from).link;
        if let Some(i) = pick(link.make_contiguous(), frame) {
            let copy = link[i].clone();
            link.insert(i, copy);
            self.tampered = true;
        }
    }

    /// Swaps two frames on their way from `from`.
    pub fn swap_frames(&mut self, from: Peer, frame: u8) {
        let link = &mut self.node(from).link;
        if let Some(i) = pick(link.make_contiguous(), frame) {
            if i + 1 < link.len() {
                link.swap(i, i + 1);
                self.tampered = true;
            }
        }
    }

    // ---- single calls -----------------------------------------------------------------

    /// `p`'s user makes a call with a request of `len` bytes.
    pub fn call(&mut self, p: Peer, handler: u32, len: usize, deadline_ms: u32, sub: Option<u64>) {
        let now = self.now;
        let lost = self.lost;
        let node = self.node(p);
        let o = Outgoing {
            handler: HandlerId::new(handler),
            subroute: sub,
            payload: Some(tagged(0, 0, len)),
            deadline: now + Duration::from_millis(u64::from(deadline_ms)),
        };
        match node.e.open_call(now, o) {
            Ok(key) => {
                assert!(!lost && len <= node.send_limit && deadline_ms > 0);
                node.calls.push(key);
                Node::remember(&mut node.made_ids, key.mux_id());
            }
            Err(Error::MessageTooLarge { .. }) => assert!(len > node.send_limit),
            Err(Error::DeadlineExceeded) => assert_eq!(deadline_ms, 0),
            Err(e) => assert!(lost, "a call refused on a live engine: {e}"),
        }
        self.settle_at(p);
    }

    /// `p`'s user polls a call's future once.
    pub fn poll_call(&mut self, p: Peer, i: u8) {
        if let Some(i) = pick(&self.node(p).calls, i) {
            self.poll_call_at(p, i);
        }
    }

    fn poll_call_at(&mut self, p: Peer, i: usize) {
        let clean = self.clean();
        let Pair { a, b, book, .. } = self;
        let node = match p {
            Peer::A => a,
            Peer::B => b,
        };
        let key = node.calls[i];
        let Poll::Ready(result) = node.e.poll_call(key, &mut cx()) else {
            return self.settle_at(p);
        };
        node.calls.remove(i);
        match result {
            Ok(reply) if reply.flags.contains(Flags::PAYLOAD_IS_ERROR) => {
                let err = Error::from_wire(
                    reply.payload.into_bytes().as_deref(),
                    HandlerId::new(0),
                    None,
                );
                if clean {
                    assert!(
                        !matches!(err, Error::Busy(_) | Error::Protocol(_)),
                        "{p:?}: a call to a correct peer failed with {err:?}"
                    );
                }
            }
            Ok(reply) => {
                let payload = reply.payload.into_bytes().unwrap_or_default();
                if clean {
                    let len = book.answers.get(&(p, key.mux_id()));
                    assert_eq!(len, Some(&payload.len()), "{p:?}: an answer nobody gave");
                    assert!(
                        is_tagged(&payload, key.mux_id(), u32::MAX),
                        "{p:?}: another call's answer, or a damaged one"
                    );
                }
            }
            Err(e) => {
                if clean {
                    assert!(
                        !matches!(e, Error::Busy(_) | Error::Protocol(_)),
                        "{p:?}: a call to a correct peer failed with {e:?}"
                    );
                }
            }
        }
        self.settle_at(p);
    }

    /// `p`'s user drops a call's future.
    pub fn drop_call(&mut self, p: Peer, i: u8) {
        let node = self.node(p);
        if let Some(i) = pick(&node.calls, i) {
            let key = node.calls.remove(i);
            node.e.drop_call(key);
        }
        self.settle_at(p);
    }

    /// A handler running at `p` answers: a payload of `len` bytes, or an error.
    pub fn answer(&mut self, p: Peer, i: u8, len: usize, fail: bool) {
        let Pair { a, b, book, .. } = self;
        let node = match p {
            Peer::A => a,
            Peer::B => b,
        };
        let Some(i) = pick(&node.serving, i) else {
            return;
        };
        let start = node.serving.remove(i);
        // The driver joins a chunked request before the handler sees it.
        drop(start.payload.into_bytes());
        let answer = if fail {
            Err(ErrorPayload::new(ErrorKind::Remote, "failed"))
        } else if len > node.send_limit {
            Err(ErrorPayload::too_large(len as u64, node.send_limit as u64))
        } else {
            book.answers.insert((p.other(), start.mux_id), len);
            Ok(Some(tagged(start.mux_id, u32::MAX, len)))
        };
        node.e.answer(start.key, answer);
        self.settle_at(p);
    }

    /// The driver at `p` finds no handler for a call or stream it admitted.
    pub fn refuse(&mut self, p: Peer, i: u8, stream: bool) {
        let node = self.node(p);
        let list = if stream {
            &mut node.accepting
        } else {
            &mut node.serving
        };
        if let Some(i) = pick(list, i) {
            let start = list.remove(i);
            node.e
                .refuse(start.key, ErrorKind::UnknownHandler, "no such handler");
        }
        self.settle_at(p);
    }

    // ---- streams --------------------------------------------------------------------

    /// `p`'s user opens a stream with an initial payload of `len` bytes.
    pub fn open(&mut self, p: Peer, handler: u32, len: usize, deadline_ms: u32) {
        let now = self.now;
        let lost = self.lost;
        let node = self.node(p);
        let o = Outgoing {
            handler: HandlerId::new(handler),
            subroute: None,
            payload: Some(tagged(0, 0, len)),
            deadline: now + Duration::from_millis(u64::from(deadline_ms)),
        };
        match node.e.open_stream(now, o) {
            Ok(key) => {
                assert!(!lost && len <= node.send_limit && deadline_ms > 0);
                node.openings.push(key);
                Node::remember(&mut node.made_ids, key.mux_id());
                self.book.flows.insert((p, key.mux_id()), Flow::default());
            }
            Err(Error::MessageTooLarge { .. }) => assert!(len > node.send_limit),
            Err(Error::DeadlineExceeded) => assert_eq!(deadline_ms, 0),
            Err(e) => assert!(lost, "a stream refused on a live engine: {e}"),
        }
        self.settle_at(p);
    }

    /// `p`'s user polls a stream's opening future once.
    pub fn poll_opened(&mut self, p: Peer, i: u8) {
        if let Some(i) = pick(&self.node(p).openings, i) {
            self.poll_opened_at(p, i);
        }
    }

    fn poll_opened_at(&mut self, p: Peer, i: usize) {
        let clean = self.clean();
        let node = self.node(p);
        let key = node.openings[i];
        match node.e.poll_opened(key, &mut cx()) {
            Poll::Pending => {}
            Poll::Ready(Ok(ack)) => {
                node.openings.remove(i);
                node.ends.push(caller_ends(p, key, ack));
            }
            Poll::Ready(Err(e)) => {
                node.openings.remove(i);
                if clean {
                    assert!(
                        !matches!(e, Error::Busy(_) | Error::Protocol(_)),
                        "{p:?}: a stream to a correct peer failed to open with {e:?}"
                    );
                }
            }
        }
        self.settle_at(p);
    }

    /// `p`'s user drops a stream's opening future.
    pub fn drop_opening(&mut self, p: Peer, i: u8) {
        let node = self.node(p);
        if let Some(i) = pick(&node.openings, i) {
            let key = node.openings.remove(i);
            node.e.drop_opening(key);
        }
        self.settle_at(p);
    }

    /// The handler of a stream admitted at `p` accepts it with these capacities.
    pub fn accept(&mut self, p: Peer, i: u8, in_capacity: u32, out_capacity: u32) {
        let node = self.node(p);
        let Some(i) = pick(&node.accepting, i) else {
            return;
        };
        let start = node.accepting.remove(i);
        drop(start.payload.into_bytes());
        if node.e.accept_stream(start.key, in_capacity, out_capacity) {
            let flow = (p.other(), start.mux_id);
            node.ends.push(Ends {
                side: Side::Handler,
                key: start.key,
                flow,
                sender: true,
                receiver: (in_capacity > 0).then(RecvBatch::default),
                got: 0,
                end: None,
            });
            self.book.flows.entry(flow).or_default();
        }
        self.settle_at(p);
    }

    /// `p`'s user sends a message of `len` bytes on a stream (if it has credit).
    pub fn send(&mut self, p: Peer, i: u8, len: usize) {
        let Pair { a, b, book, .. } = self;
        let node = match p {
            Peer::A => a,
            Peer::B => b,
        };
        let Some(i) = pick(&node.ends, i) else {
            return;
        };
        let x = &node.ends[i];
        // A payload over the agreed size is refused by the sender itself.
        if !x.sender || len > node.send_limit {
            return;
        }
        let (side, key) = (x.side, x.key);
        let flow = book.flows.entry(x.flow).or_default();
        let n = flow.sent(side).len();
        let mut payload = Some(tagged(x.flow.1, n as u32 + 1, len));
        let credit = node.e.credit(side, key);
        match node.e.poll_send(side, key, &mut payload, &mut cx()) {
            Poll::Ready(Ok(())) => {
                assert!(credit > 0, "sent without credit");
                flow.sent(side).push(len);
            }
            Poll::Ready(Err(_)) => {}
            Poll::Pending => assert_eq!(credit, 0, "credit, yet the sender waits"),
        }
        self.settle_at(p);
    }

    /// `p`'s user reserves up to `max` credits on a stream, sends `spend` messages of
    /// `len` bytes on them and gives the rest back (permits, `send_all`).
    pub fn reserve(&mut self, p: Peer, i: u8, max: u32, spend: u32, len: usize) {
        let Pair { a, b, book, .. } = self;
        let node = match p {
            Peer::A => a,
            Peer::B => b,
        };
        let Some(i) = pick(&node.ends, i) else {
            return;
        };
        let x = &node.ends[i];
        if !x.sender || len > node.send_limit {
            return;
        }
        let (side, key) = (x.side, x.key);
        let flow = book.flows.entry(x.flow).or_default();
        let max = max.max(1);
        if let Poll::Ready(Ok(n)) = node.e.poll_reserve(side, key, max, &mut cx()) {
            assert!(n >= 1 && n <= max, "{n} credits reserved of {max} asked");
            let used = spend.min(n);
            for _ in 0..used {
                let seq = flow.sent(side).len() as u32 + 1;
                let sent = node.e.send(side, key, tagged(x.flow.1, seq, len));
                assert!(sent.is_ok(), "a reserved credit could not be spent");
                flow.sent(side).push(len);
            }
            node.e.unreserve(side, key, n - used);
        }
        self.settle_at(p);
    }

    /// `p`'s user finishes a stream's sender.
    pub fn finish(&mut self, p: Peer, i: u8) {
        if let Some(i) = pick(&self.node(p).ends, i) {
            self.finish_at(p, i);
        }
    }

    fn finish_at(&mut self, p: Peer, i: usize) {
        let Pair { a, b, book, .. } = self;
        let node = match p {
            Peer::A => a,
            Peer::B => b,
        };
        let x = &mut node.ends[i];
        if !x.sender {
            return;
        }
        x.sender = false;
        let real = node.e.send_ended(x.side, x.key).is_none();
        node.e.finish(x.side, x.key);
        if x.side == Side::Caller && real {
            book.flows.entry(x.flow).or_default().finished = true;
        }
        forget_if_done(node, i);
        self.settle_at(p);
    }

    /// `p`'s user drops a stream's sender.
    pub fn drop_sender(&mut self, p: Peer, i: u8) {
        let node = self.node(p);
        let Some(i) = pick(&node.ends, i) else {
            return;
        };
        let x = &mut node.ends[i];
        if x.sender {
            x.sender = false;
            node.e.drop_sender(x.side, x.key);
            forget_if_done(node, i);
        }
        self.settle_at(p);
    }

    /// `p`'s user reads up to `n` items from a stream's receiver.
    pub fn recv(&mut self, p: Peer, i: u8, n: u8) {
        if let Some(i) = pick(&self.node(p).ends, i) {
            self.recv_at(p, i, usize::from(n));
        }
    }

    fn recv_at(&mut self, p: Peer, i: usize, n: usize) {
        let clean = self.clean();
        let Pair { a, b, book, .. } = self;
        let node = match p {
            Peer::A => a,
            Peer::B => b,
        };
        read(&mut node.e, &mut node.ends[i], book, clean, n);
        self.settle_at(p);
    }

    /// `p`'s user drops a stream's receiver.
    pub fn drop_receiver(&mut self, p: Peer, i: u8) {
        let node = self.node(p);
        let Some(i) = pick(&node.ends, i) else {
            return;
        };
        let x = &mut node.ends[i];
        if let Some(mut r) = x.receiver.take() {
            r.release(&mut node.e, x.side, x.key);
            forget_if_done(node, i);
        }
        self.settle_at(p);
    }

    /// A stream handler at `p` returns (its ends dropped first), successfully or not.
    pub fn ret(&mut self, p: Peer, i: u8, ok: bool) {
        let node = self.node(p);
        let handlers: Vec<usize> = (0..node.ends.len())
            .filter(|&j| node.ends[j].side == Side::Handler)
            .collect();
        if let Some(j) = pick(&handlers, i) {
            self.ret_at(p, handlers[j], ok);
        }
    }

    fn ret_at(&mut self, p: Peer, i: usize, ok: bool) {
        let Pair { a, b, book, .. } = self;
        let node = match p {
            Peer::A => a,
            Peer::B => b,
        };
        let x = node.ends.remove(i);
        let (key, flow) = (x.key, x.flow);
        drop_ends(&mut node.e, x);
        let failure = (!ok).then(|| ErrorPayload::new(ErrorKind::Remote, "failed"));
        book.flows.entry(flow).or_default().returned = Some(ok);
        node.e.stream_returned(key, failure);
        self.settle_at(p);
    }

    // ---- the end ----------------------------------------------------------------------

    /// Both sides' users stop: while the link is intact and the connection up, they first
    /// finish what they started (handlers answer and return, callers finish and read to
    /// the end) and both engines must end up empty; then everything still held is dropped
    /// and the connection closed, and nothing may be left.
    pub fn wind_down(&mut self) {
        if self.clean() && !self.lost {
            for _ in 0..8 {
                self.pump();
                if self.lost || self.users_done() {
                    break;
                }
                self.conclude(Peer::A);
                self.conclude(Peer::B);
            }
            if !self.lost {
                for _ in 0..8 {
                    self.abandon(Peer::A);
                    self.abandon(Peer::B);
                    self.pump();
                    if self.lost || self.users_done() {
                        break;
                    }
                }
                if !self.lost {
                    for p in [Peer::A, Peer::B] {
                        self.assert_empty(p);
                    }
                }
            }
        }
        self.lose(None);
        for p in [Peer::A, Peer::B] {
            self.abandon(p);
            self.assert_empty(p);
        }
    }

    /// Neither side's users hold anything, nor have anything to start.
    fn users_done(&self) -> bool {
        [&self.a, &self.b].iter().all(|n| {
            n.calls.is_empty()
                && n.openings.is_empty()
                && n.ends.is_empty()
                && n.serving.is_empty()
                && n.accepting.is_empty()
        })
    }

    /// `p`'s users do what they still have to: handlers accept, answer and return,
    /// callers take their answers, open their streams, finish and read to the end.
    fn conclude(&mut self, p: Peer) {
        while !self.node(p).accepting.is_empty() {
            self.accept(p, 0, 4, 4);
        }
        while !self.node(p).serving.is_empty() {
            self.answer(p, 0, 16, false);
        }
        for i in (0..self.node(p).calls.len()).rev() {
            self.poll_call_at(p, i);
        }
        for i in (0..self.node(p).openings.len()).rev() {
            self.poll_opened_at(p, i);
        }
        for i in (0..self.node(p).ends.len()).rev() {
            if i >= self.node(p).ends.len() {
                continue;
            }
            self.recv_at(p, i, usize::MAX);
            // (Stopping a handler may have removed ends.)
            let Some(x) = self.node(p).ends.get(i) else {
                continue;
            };
            if x.side == Side::Handler {
                self.ret_at(p, i, true);
            } else if x.sender {
                self.finish_at(p, i);
            }
        }
    }

    /// `p`'s users drop everything they hold; the driver refuses what it admits.
    fn abandon(&mut self, p: Peer) {
        let (clean, lost) = (self.clean() && !self.lost, self.lost);
        let Pair { a, b, book, .. } = self;
        let node = match p {
            Peer::A => a,
            Peer::B => b,
        };
        for start in std::mem::take(&mut node.accepting) {
            node.e
                .refuse(start.key, ErrorKind::UnknownHandler, "winding down");
        }
        for start in std::mem::take(&mut node.serving) {
            node.e
                .answer(start.key, Err(ErrorPayload::new(ErrorKind::Remote, "done")));
        }
        for key in std::mem::take(&mut node.calls) {
            node.e.drop_call(key);
        }
        for key in std::mem::take(&mut node.openings) {
            node.e.drop_opening(key);
        }
        for mut x in std::mem::take(&mut node.ends) {
            if lost {
                // On a closed engine every receiver reaches its end without waiting.
                read(&mut node.e, &mut x, book, clean, usize::MAX);
                assert!(
                    x.receiver.is_none() || x.end.is_some(),
                    "{p:?}: a receiver still waits on a closed engine"
                );
            }
            drop_ends(&mut node.e, x);
        }
        self.settle_at(p);
    }

    fn assert_empty(&mut self, p: Peer) {
        let node = self.node(p);
        assert_eq!(node.e.in_flight(), (0, 0), "{p:?}: calls or streams left");
        assert_eq!(node.e.assembling(), 0, "{p:?}: partial payloads left");
        assert!(node.e.poll_idle(Waker::noop()), "{p:?}: not idle");
    }
}

/// The ends a caller gets when its stream opened.
fn caller_ends(p: Peer, key: Key, ack: crate::codec::Ack) -> Ends {
    Ends {
        side: Side::Caller,
        key,
        flow: (p, key.mux_id()),
        sender: ack.in_capacity > 0,
        receiver: Some(RecvBatch::default()),
        got: 0,
        end: None,
    }
}

/// Drops a stream's ends still held (a sender without `finish`).
fn drop_ends(e: &mut Engine, mut x: Ends) {
    if x.sender {
        e.drop_sender(x.side, x.key);
    }
    if let Some(mut r) = x.receiver.take() {
        r.release(e, x.side, x.key);
    }
}

/// Forgets a caller's ends once it holds none (a handler's go when it returns).
fn forget_if_done(node: &mut Node, i: usize) {
    let x = &node.ends[i];
    if x.side == Side::Caller && !x.sender && x.receiver.is_none() {
        node.ends.remove(i);
    }
}

fn resolve(node: &Node, mux: Mux) -> u64 {
    let nth = |ids: &VecDeque<u64>, i: u8| {
        if ids.is_empty() {
            0
        } else {
            ids[usize::from(i) % ids.len()]
        }
    };
    match mux {
        Mux::Raw(v) => v,
        Mux::Made(i) => {
            // Live ones first: they reach deeper.
            let live: Vec<u64> = node
                .calls
                .iter()
                .chain(node.openings.iter())
                .copied()
                .chain(node.caller_ends())
                .map(Key::mux_id)
                .collect();
            if live.is_empty() || i >= 128 {
                nth(&node.made_ids, i)
            } else {
                live[usize::from(i) % live.len()]
            }
        }
        Mux::Served(i) => nth(&node.served_ids, i),
    }
}

/// Reads up to `n` items from a stream's receiver, as `StreamReceiver` does, and checks
/// each against what was sent.
fn read(e: &mut Engine, x: &mut Ends, book: &mut Book, clean: bool, n: usize) {
    let Some(r) = x.receiver.as_mut() else {
        return;
    };
    let mut items = 0;
    while items < n {
        if let Some(payload) = r.next() {
            if let Some(read) = r.report() {
                e.count_read(x.side, x.key, read);
            }
            items += 1;
            assert!(x.end.is_none(), "an item after the end");
            let payload = payload.into_bytes().unwrap_or_default();
            if clean {
                // The other direction's messages, in order, intact.
                let flow = book.flows.entry(x.flow).or_default();
                let sent = match x.side {
                    Side::Caller => &flow.down,
                    Side::Handler => &flow.up,
                };
                let expected = sent.get(x.got).copied();
                assert_eq!(expected, Some(payload.len()), "a message lost or reordered");
                assert!(
                    is_tagged(&payload, x.flow.1, x.got as u32 + 1),
                    "a message damaged or out of order"
                );
            }
            x.got += 1;
            continue;
        }
        match r.refill(e, x.side, x.key, &mut cx()) {
            Poll::Pending => break,
            Poll::Ready(Some(Ok(()))) => {}
            Poll::Ready(end) => {
                let clean_end = end.is_none();
                if x.end.is_none() {
                    x.end = Some(clean_end);
                    if clean && clean_end {
                        let flow = book.flows.entry(x.flow).or_default();
                        match x.side {
                            Side::Handler => {
                                assert!(flow.finished, "a clean end the caller never sent");
                                assert_eq!(x.got, flow.up.len(), "a clean end after a loss");
                            }
                            Side::Caller => {
                                assert_eq!(
                                    flow.returned,
                                    Some(true),
                                    "a clean end the handler never gave"
                                );
                                assert_eq!(x.got, flow.down.len(), "a clean end after a loss");
                            }
                        }
                    }
                }
                break;
            }
        }
    }
}

/// Checks a frame `node` wrote: its peer reads it, and it keeps the agreed sizes.
fn check_written(node: &Node, frame: &Bytes, batch: Option<usize>) {
    assert!(
        frame.len() <= node.peer_limits.max_payload,
        "{:?} wrote a frame of {} bytes, over what its peer reads",
        node.peer,
        frame.len()
    );
    let messages = match decode_frame(frame, node.peer_limits) {
        Ok(m) => m,
        Err(e) => panic!("{:?} wrote a frame its peer cannot read: {e}", node.peer),
    };
    if let Some(n) = batch {
        assert_eq!(messages.len(), n, "the batch's messages");
    } else {
        assert_eq!(messages.len(), 1, "a chunk's frame holds the chunk");
    }
    for m in &messages {
        let len = m.payload.as_ref().map_or(0, Bytes::len);
        let data = matches!(
            m.op,
            Op::Request | Op::Response | Op::ConnectMux | Op::MuxClientMsg | Op::MuxServerMsg
        ) && !m.flags.contains(Flags::PAYLOAD_IS_ERROR);
        if data {
            assert!(len <= node.send_limit, "a payload over the agreed size");
        }
        if m.flags.contains(Flags::MORE) || batch.is_none() {
            assert!(len <= crate::engine::CHUNK, "a chunk over the chunk size");
        }
        if matches!(m.op, Op::Ping | Op::Pong) && m.mux_id == 0 {
            assert!(len <= MAX_PING, "a connection ping or pong over 125 bytes");
        }
        assert!(
            !matches!(m.op, Op::Connect | Op::ConnectResponse | Op::Merged),
            "{:?} on a live connection",
            m.op
        );
    }
}
