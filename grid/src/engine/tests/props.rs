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

/// Reads one item from `side`'s receiver of stream `m`, noting the first end and anything
/// after it.
fn read(net: &mut Net, side: Side, key: Key, m: &mut Model) -> bool {
    let (node, reader, got, end) = match side {
        Side::Caller => (&mut net.a, &mut m.a_reader, &mut m.got_a, &mut m.a_end),
        Side::Handler => (&mut net.b, &mut m.b_reader, &mut m.got_b, &mut m.b_end),
    };
    match reader.poll(node, side, key) {
        Poll::Pending => false,
        Poll::Ready(item) => {
            if end.is_some() {
                if item.is_some() {
                    m.after_end.push(format!("{side:?}: {item:?}"));
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

/// Drops `side`'s receiver of stream `m`.
fn drop_receiver(net: &mut Net, side: Side, key: Key, m: &mut Model) {
    match side {
        Side::Caller => {
            m.a_reader.drop(&mut net.a, side, key);
            m.a_receiver = false;
        }
        Side::Handler => {
            m.b_reader.drop(&mut net.b, side, key);
            m.b_receiver = false;
        }
    }
}

/// A finishes its sending end of stream `m`.
fn finish_a(net: &mut Net, key: Key, m: &mut Model) {
    let ended = net.a.e.stream(Side::Caller, key).send_ended();
    net.a.e.stream(Side::Caller, key).finish();
    net.a.wake();
    m.a_sender = false;
    // A finish after the stream ended some other way is not a clean end.
    m.a_finished = ended.is_none();
}

/// After a clean end of stream `i`, what was received is all that was sent.
fn assert_got_all(i: usize, got: &[Bytes], sent: &[Bytes]) {
    assert!(
        got == sent,
        "stream {i}: a clean end after a loss: got {} of {}",
        got.len(),
        sent.len()
    );
}

fn send(net: &mut Net, side: Side, key: Key, payload: Bytes) -> bool {
    let w = Watch::new();
    let node = match side {
        Side::Caller => &mut net.a,
        Side::Handler => &mut net.b,
    };
    let mut payload = Some(payload);
    let ok = matches!(
        node.e
            .stream(side, key)
            .poll_send(&mut payload, &mut w.cx()),
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

    /// The stream an op's index picks, with its key, if `held` says that the end the op
    /// acts on is there: (the side's key, whether that end is still held).
    fn held(&self, i: u8, held: impl Fn(&Model) -> (Option<Key>, bool)) -> Option<(usize, Key)> {
        let i = pick(self.streams.len(), i)?;
        match held(&self.streams[i]) {
            (Some(key), true) => Some((i, key)),
            _ => None,
        }
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
                let Some((i, key)) = self.held(i, |m| (m.a, m.a_sender)) else {
                    return;
                };
                let mut payload = format!("a{i}:{}", self.streams[i].sent_a.len()).into_bytes();
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
                let Some((i, key)) = self.held(i, |m| (m.a, m.a_sender)) else {
                    return;
                };
                finish_a(&mut self.net, key, &mut self.streams[i]);
            }
            Op::ADropSender(i) => {
                let Some((i, key)) = self.held(i, |m| (m.a, m.a_sender)) else {
                    return;
                };
                self.net.a.e.stream(Side::Caller, key).drop_sender();
                self.net.a.wake();
                self.streams[i].a_sender = false;
            }
            Op::ARead(i) => {
                let Some((i, key)) = self.held(i, |m| (m.a, m.a_receiver)) else {
                    return;
                };
                read(&mut self.net, Side::Caller, key, &mut self.streams[i]);
            }
            Op::ADropReceiver(i) => {
                let Some((i, key)) = self.held(i, |m| (m.a, m.a_receiver)) else {
                    return;
                };
                drop_receiver(&mut self.net, Side::Caller, key, &mut self.streams[i]);
            }
            Op::ADropOpening(i) => {
                let Some((i, key)) = self.held(i, |m| (m.a, m.a_opening)) else {
                    return;
                };
                self.net.a.e.stream(Side::Caller, key).abandon_open();
                self.net.a.wake();
                self.streams[i].a_opening = false;
            }
            Op::BSend(i) => {
                let Some((i, key)) = self.held(i, |m| (m.b, m.b_sender)) else {
                    return;
                };
                let payload = Bytes::from(format!("b{i}:{}", self.streams[i].sent_b.len()));
                if send(&mut self.net, Side::Handler, key, payload.clone()) {
                    self.streams[i].sent_b.push(payload);
                }
            }
            Op::BRead(i) => {
                let Some((i, key)) = self.held(i, |m| (m.b, m.b_receiver)) else {
                    return;
                };
                read(&mut self.net, Side::Handler, key, &mut self.streams[i]);
            }
            Op::BReturn(i, ok) => {
                let held = |m: &Model| (m.b, m.b_sender && m.b_returned.is_none());
                let Some((i, key)) = self.held(i, held) else {
                    return;
                };
                self.b_return(i, key, ok);
            }
            Op::BDropInput(i) => {
                let Some((i, key)) = self.held(i, |m| (m.b, m.b_receiver)) else {
                    return;
                };
                drop_receiver(&mut self.net, Side::Handler, key, &mut self.streams[i]);
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
            self.net.b.e.stream(Side::Handler, key).drop_sender();
            m.b_sender = false;
        }
        if m.b_receiver {
            drop_receiver(&mut self.net, Side::Handler, key, m);
        }
        let failure = (!ok).then(|| ErrorPayload::new(ErrorKind::Remote, "failed"));
        self.net.b.e.served(key).returned(failure);
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
            match self
                .net
                .a
                .e
                .stream(Side::Caller, key)
                .poll_opened(&mut w.cx())
            {
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
                        while read(&mut self.net, Side::Handler, key, m) {}
                    }
                    if m.b_returned.is_none() && m.b_sender {
                        self.b_return(i, key, true);
                    }
                }
                let m = &mut self.streams[i];
                if let (Some(key), true) = (m.a, m.a_sender) {
                    finish_a(&mut self.net, key, m);
                }
                if let (Some(key), true) = (m.a, m.a_receiver) {
                    while read(&mut self.net, Side::Caller, key, m) {}
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
                self.net.a.e.stream(Side::Caller, key).abandon_open();
                m.a_opening = false;
            }
            if let (Some(key), true) = (m.a, m.a_receiver) {
                drop_receiver(&mut self.net, Side::Caller, key, m);
            }
            if let (Some(key), true) = (m.b, m.b_receiver) {
                drop_receiver(&mut self.net, Side::Handler, key, m);
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
                assert_got_all(i, &m.got_b, &m.sent_a);
            }
            if let Some(Ok(())) = m.a_end {
                assert_eq!(
                    m.b_returned,
                    Some(true),
                    "stream {i}: a clean end the handler never gave"
                );
                assert_got_all(i, &m.got_a, &m.sent_b);
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
