//! Random interleavings: A opens streams to B, and both sides' users, the deliveries in
//! each direction and the clock act in a random order, including every order of dropping
//! a stream's ends. After every step the engines' invariants hold (credit never negative
//! nor over capacity, limits and queues consistent); at the end, after both sides wound
//! down: no message lost, duplicated or reordered, every stream ended exactly once on
//! both sides, and no abandoned stream was ever seen as finished.

use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::{assert_idle, config, Net, Reader, Watch};
use crate::codec::{ErrorKind, ErrorPayload};
use crate::engine::{Key, Side};
use crate::error::Error;

#[derive(Debug, Clone)]
enum Op {
    Open {
        in_cap: u8,
        out_cap: u8,
    },
    Accept,
    Refuse,
    ASend(u8),
    /// Larger than what is encoded as queued, smaller than a chunk.
    ASendMedium(u8),
    /// Sent in chunks.
    ASendLarge(u8),
    AFinish(u8),
    ADropSender(u8),
    ARead(u8),
    ADropReceiver(u8),
    ADropOpening(u8),
    BSend(u8),
    BRead(u8),
    BReturn(u8, bool),
    BDropInput(u8),
    DeliverAB,
    DeliverBA,
    StepAB,
    StepBA,
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..4, 1u8..4).prop_map(|(in_cap, out_cap)| Op::Open { in_cap, out_cap }),
        3 => Just(Op::Accept),
        1 => Just(Op::Refuse),
        4 => any::<u8>().prop_map(Op::ASend),
        2 => any::<u8>().prop_map(Op::ASendMedium),
        3 => any::<u8>().prop_map(Op::ASendLarge),
        2 => any::<u8>().prop_map(Op::AFinish),
        1 => any::<u8>().prop_map(Op::ADropSender),
        4 => any::<u8>().prop_map(Op::ARead),
        1 => any::<u8>().prop_map(Op::ADropReceiver),
        1 => any::<u8>().prop_map(Op::ADropOpening),
        4 => any::<u8>().prop_map(Op::BSend),
        4 => any::<u8>().prop_map(Op::BRead),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(i, ok)| Op::BReturn(i, ok)),
        1 => any::<u8>().prop_map(Op::BDropInput),
        3 => Just(Op::DeliverAB),
        3 => Just(Op::DeliverBA),
        3 => Just(Op::StepAB),
        3 => Just(Op::StepBA),
        1 => (0u16..20_000).prop_map(Op::Advance),
    ]
}

/// How a receiver ended (its first terminal item).
type End = Option<Result<(), Error>>;

/// One stream as both users see it.
#[derive(Default)]
struct Model {
    a: Option<Key>,
    b: Option<Key>,
    a_opening: bool,
    a_sender: bool,
    a_receiver: bool,
    a_finished: bool,
    b_sender: bool,
    b_receiver: bool,
    b_returned: Option<bool>,
    b_handled: bool,
    sent_a: Vec<Bytes>,
    got_b: Vec<Bytes>,
    sent_b: Vec<Bytes>,
    got_a: Vec<Bytes>,
    a_end: End,
    b_end: End,
    after_end: Vec<String>,
    a_reader: Reader,
    b_reader: Reader,
}

struct World {
    net: Net,
    streams: Vec<Model>,
    /// Starts B's driver has not handled yet (index into `net.b.started`).
    next_start: usize,
}

fn pick(n: usize, i: u8) -> Option<usize> {
    (n > 0).then(|| usize::from(i) % n)
}

/// Reads one item, noting the first end and anything after it.
fn read(
    net: &mut Net,
    side: Side,
    key: Key,
    reader: &mut Reader,
    got: &mut Vec<Bytes>,
    end: &mut End,
    after: &mut Vec<String>,
) -> bool {
    let node = match side {
        Side::Caller => &mut net.a,
        Side::Handler => &mut net.b,
    };
    match reader.poll(node, side, key) {
        Poll::Pending => false,
        Poll::Ready(item) => {
            if end.is_some() {
                if item.is_some() {
                    after.push(format!("{side:?}: {item:?}"));
                }
                return false;
            }
            match item {
                Some(Ok(b)) => {
                    got.push(b);
                    true
                }
                Some(Err(e)) => {
                    *end = Some(Err(e));
                    false
                }
                None => {
                    *end = Some(Ok(()));
                    false
                }
            }
        }
    }
}

fn send(net: &mut Net, side: Side, key: Key, payload: Bytes) -> bool {
    let w = Watch::new();
    let node = match side {
        Side::Caller => &mut net.a,
        Side::Handler => &mut net.b,
    };
    let mut payload = Some(payload);
    let ok = matches!(
        node.e.poll_send(side, key, &mut payload, &mut w.cx()),
        Poll::Ready(Ok(()))
    );
    node.wake();
    ok
}

impl World {
    fn new() -> Self {
        let mut c = config();
        c.ping_interval = Duration::from_secs(5000);
        c.max_message_size = 1 << 20;
        // Windows start at 256 bytes and may grow, within a budget that runs short
        // (each window keeps 64 bytes beyond it): growth, pressure and sharing all happen.
        c.stream_budget = 1024;
        c.window_floor = 64;
        Self {
            net: Net::with(c.clone(), c),
            streams: Vec::new(),
            next_start: 0,
        }
    }

    /// B's driver: finds the model of the stream a start belongs to.
    fn model_of(&mut self, mux_id: u64) -> Option<&mut Model> {
        self.streams
            .iter_mut()
            .find(|m| m.a.is_some_and(|k| k.mux_id() == mux_id))
    }

    fn apply(&mut self, op: &Op) {
        let n = self.streams.len();
        match *op {
            Op::Open { in_cap, out_cap } => {
                if n >= 6 {
                    return;
                }
                let o = self
                    .net
                    .outgoing(u32::from(in_cap) << 8 | u32::from(out_cap), b"open", 60);
                // Windows that start at one to four small messages each way (a message
                // costs its payload and 64 bytes) and may grow tenfold.
                let window = Some(u64::from(out_cap) * 400);
                let key = self
                    .net
                    .a
                    .e
                    .open_stream(self.net.now, o, window)
                    .expect("open");
                self.net.a.wake();
                self.streams.push(Model {
                    a: Some(key),
                    a_opening: true,
                    ..Model::default()
                });
            }
            Op::Accept | Op::Refuse => {
                let Some(start) = self.net.b.started.get(self.next_start).cloned() else {
                    return;
                };
                self.next_start += 1;
                let caps = start.handler.get();
                let accept = matches!(op, Op::Accept);
                let ok = if accept {
                    let r = self.net.b.e.accept_stream(
                        start.key,
                        caps >> 8 > 0,
                        Some(u64::from(caps >> 8) * 400),
                    );
                    self.net.b.wake();
                    r
                } else {
                    self.net
                        .b
                        .e
                        .refuse(start.key, ErrorKind::UnknownHandler, "none");
                    self.net.b.wake();
                    false
                };
                if let Some(m) = self.model_of(start.mux_id) {
                    m.b_handled = true;
                    if ok {
                        m.b = Some(start.key);
                        m.b_sender = true;
                        m.b_receiver = caps >> 8 > 0;
                    }
                }
            }
            Op::ASend(i) | Op::ASendMedium(i) | Op::ASendLarge(i) => {
                let Some(i) = pick(n, i) else { return };
                let m = &mut self.streams[i];
                let (Some(key), true) = (m.a, m.a_sender) else {
                    return;
                };
                let mut payload = format!("a{i}:{}", m.sent_a.len()).into_bytes();
                match op {
                    Op::ASendMedium(_) => payload.resize(4 << 10, 5),
                    Op::ASendLarge(_) => payload.resize(200 << 10, 7),
                    _ => {}
                }
                let payload = Bytes::from(payload);
                if send(&mut self.net, Side::Caller, key, payload.clone()) {
                    self.streams[i].sent_a.push(payload);
                }
            }
            Op::AFinish(i) => {
                let Some(i) = pick(n, i) else { return };
                let m = &mut self.streams[i];
                let (Some(key), true) = (m.a, m.a_sender) else {
                    return;
                };
                let ended = self.net.a.e.send_ended(Side::Caller, key);
                self.net.a.e.finish(Side::Caller, key);
                self.net.a.wake();
                m.a_sender = false;
                // A finish after the stream ended some other way is not a clean end.
                m.a_finished = ended.is_none();
            }
            Op::ADropSender(i) => {
                let Some(i) = pick(n, i) else { return };
                let m = &mut self.streams[i];
                let (Some(key), true) = (m.a, m.a_sender) else {
                    return;
                };
                self.net.a.e.drop_sender(Side::Caller, key);
                self.net.a.wake();
                m.a_sender = false;
            }
            Op::ARead(i) => {
                let Some(i) = pick(n, i) else { return };
                let m = &mut self.streams[i];
                let (Some(key), true) = (m.a, m.a_receiver) else {
                    return;
                };
                read(
                    &mut self.net,
                    Side::Caller,
                    key,
                    &mut m.a_reader,
                    &mut m.got_a,
                    &mut m.a_end,
                    &mut m.after_end,
                );
            }
            Op::ADropReceiver(i) => {
                let Some(i) = pick(n, i) else { return };
                let m = &mut self.streams[i];
                let (Some(key), true) = (m.a, m.a_receiver) else {
                    return;
                };
                m.a_reader.drop(&mut self.net.a, Side::Caller, key);
                m.a_receiver = false;
            }
            Op::ADropOpening(i) => {
                let Some(i) = pick(n, i) else { return };
                let m = &mut self.streams[i];
                let (Some(key), true) = (m.a, m.a_opening) else {
                    return;
                };
                self.net.a.e.drop_opening(key);
                self.net.a.wake();
                m.a_opening = false;
            }
            Op::BSend(i) => {
                let Some(i) = pick(n, i) else { return };
                let m = &mut self.streams[i];
                let (Some(key), true) = (m.b, m.b_sender) else {
                    return;
                };
                let payload = Bytes::from(format!("b{i}:{}", m.sent_b.len()));
                if send(&mut self.net, Side::Handler, key, payload.clone()) {
                    self.streams[i].sent_b.push(payload);
                }
            }
            Op::BRead(i) => {
                let Some(i) = pick(n, i) else { return };
                let m = &mut self.streams[i];
                let (Some(key), true) = (m.b, m.b_receiver) else {
                    return;
                };
                read(
                    &mut self.net,
                    Side::Handler,
                    key,
                    &mut m.b_reader,
                    &mut m.got_b,
                    &mut m.b_end,
                    &mut m.after_end,
                );
            }
            Op::BReturn(i, ok) => {
                let Some(i) = pick(n, i) else { return };
                let m = &mut self.streams[i];
                let (Some(key), true, None) = (m.b, m.b_sender, m.b_returned) else {
                    return;
                };
                self.b_return(i, key, ok);
            }
            Op::BDropInput(i) => {
                let Some(i) = pick(n, i) else { return };
                let m = &mut self.streams[i];
                let (Some(key), true) = (m.b, m.b_receiver) else {
                    return;
                };
                m.b_reader.drop(&mut self.net.b, Side::Handler, key);
                m.b_receiver = false;
            }
            Op::DeliverAB => self.net.a_to_b(),
            Op::DeliverBA => self.net.b_to_a(),
            Op::StepAB => self.net.a_to_b_one(),
            Op::StepBA => self.net.b_to_a_one(),
            Op::Advance(ms) => self.net.advance(Duration::from_millis(u64::from(ms))),
        }
        self.opened();
    }

    /// The handler returns: its ends are dropped, then its result given.
    fn b_return(&mut self, i: usize, key: Key, ok: bool) {
        let m = &mut self.streams[i];
        if m.b_sender {
            self.net.b.e.drop_sender(Side::Handler, key);
            m.b_sender = false;
        }
        if m.b_receiver {
            m.b_reader.drop(&mut self.net.b, Side::Handler, key);
            m.b_receiver = false;
        }
        let failure = (!ok).then(|| ErrorPayload::new(ErrorKind::Remote, "failed"));
        self.net.b.e.stream_returned(key, failure);
        self.net.b.wake();
        m.b_returned = Some(ok);
    }

    /// Opening futures that can now take their answer do.
    fn opened(&mut self) {
        for m in &mut self.streams {
            let (Some(key), true) = (m.a, m.a_opening) else {
                continue;
            };
            let w = Watch::new();
            match self.net.a.e.poll_opened(key, &mut w.cx()) {
                Poll::Ready(Ok(ack)) => {
                    m.a_opening = false;
                    m.a_receiver = true;
                    m.a_sender = ack.in_window > 0;
                }
                Poll::Ready(Err(_)) => m.a_opening = false,
                Poll::Pending => {}
            }
            self.net.a.wake();
        }
    }

    /// What holds after every step: the messages received are a prefix of those sent.
    fn check_step(&self) {
        self.net.assert_no_violation("step");
        for (i, m) in self.streams.iter().enumerate() {
            assert!(
                m.sent_a.starts_with(&m.got_b),
                "stream {i}: A's messages lost or reordered"
            );
            assert!(
                m.sent_b.starts_with(&m.got_a),
                "stream {i}: B's messages lost or reordered"
            );
            assert!(m.after_end.is_empty(), "stream {i}: {:?}", m.after_end);
        }
    }

    /// Both sides wind down: the handlers still running return, the callers finish and
    /// read everything, everything is delivered, time passes beyond every deadline.
    fn wind_down(&mut self) {
        for _ in 0..4 {
            self.net.pump();
            while self.next_start < self.net.b.started.len() {
                self.apply(&Op::Accept);
            }
            for i in 0..self.streams.len() {
                let m = &mut self.streams[i];
                if let Some(key) = m.b {
                    if m.b_receiver {
                        while read(
                            &mut self.net,
                            Side::Handler,
                            key,
                            &mut m.b_reader,
                            &mut m.got_b,
                            &mut m.b_end,
                            &mut m.after_end,
                        ) {}
                    }
                    if m.b_returned.is_none() && m.b_sender {
                        self.b_return(i, key, true);
                    }
                }
                let m = &mut self.streams[i];
                if let (Some(key), true) = (m.a, m.a_sender) {
                    let ended = self.net.a.e.send_ended(Side::Caller, key);
                    self.net.a.e.finish(Side::Caller, key);
                    self.net.a.wake();
                    m.a_sender = false;
                    m.a_finished = ended.is_none();
                }
                if let (Some(key), true) = (m.a, m.a_receiver) {
                    while read(
                        &mut self.net,
                        Side::Caller,
                        key,
                        &mut m.a_reader,
                        &mut m.got_a,
                        &mut m.a_end,
                        &mut m.after_end,
                    ) {}
                }
            }
            self.opened();
        }
        for (i, m) in self.streams.iter_mut().enumerate() {
            // Every end still held has seen its stream end.
            assert!(
                !m.a_receiver || m.a_end.is_some(),
                "stream {i}: A's receiver never ended"
            );
            assert!(
                !m.b_receiver || m.b_end.is_some(),
                "stream {i}: B's input never ended"
            );
            if let (Some(key), true) = (m.a, m.a_opening) {
                self.net.a.e.drop_opening(key);
                m.a_opening = false;
            }
            if let (Some(key), true) = (m.a, m.a_receiver) {
                m.a_reader.drop(&mut self.net.a, Side::Caller, key);
                m.a_receiver = false;
            }
            if let (Some(key), true) = (m.b, m.b_receiver) {
                m.b_reader.drop(&mut self.net.b, Side::Handler, key);
                m.b_receiver = false;
            }
        }
        self.net.a.wake();
        self.net.b.wake();
        self.net.pump();
        self.net.advance(Duration::from_secs(600));
        self.net.pump();
    }

    /// What holds once both sides wound down.
    fn check_end(&self) {
        self.check_step();
        for (i, m) in self.streams.iter().enumerate() {
            if let Some(Ok(())) = m.b_end {
                assert!(
                    m.a_finished,
                    "stream {i}: the handler saw a clean end the caller never sent"
                );
                assert!(
                    m.got_b == m.sent_a,
                    "stream {i}: a clean end after a loss: got {} of {}",
                    m.got_b.len(),
                    m.sent_a.len()
                );
            }
            if let Some(Ok(())) = m.a_end {
                assert_eq!(
                    m.b_returned,
                    Some(true),
                    "stream {i}: a clean end the handler never gave"
                );
                assert!(
                    m.got_a == m.sent_b,
                    "stream {i}: a clean end after a loss: got {} of {}",
                    m.got_a.len(),
                    m.sent_b.len()
                );
            }
        }
        assert_idle(&self.net);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_lose_nothing_and_end_every_stream_once(ops in proptest::collection::vec(op(), 1..80)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
            world.check_step();
        }
        world.wind_down();
        world.check_end();
    }
}
