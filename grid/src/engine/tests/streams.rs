//! Streams, stepped: every state of a stream on each side crossed with every event that can
//! reach it, each checked for what the users see, and for the invariants that hold
//! whatever happens: the connection carries on, each side's receiver sees exactly one end,
//! the handler's input ends cleanly only after the caller's `finish`, and both engines end
//! up empty.

use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use super::{assert_idle, Net, Watch};
use crate::codec::{encode_credit, encode_error, Ack, ErrorKind, Flags, HandlerId, Message, Op};
use crate::engine::{Key, Side};
use crate::error::Error;

/// Where the stream stands when the event comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// The caller opened it; the open is still queued here.
    OpeningUnsent,
    /// The open reached the handler side, which admitted it and has not accepted it yet.
    Opening,
    /// Accepted on both sides; the caller holds its sender and receiver.
    Open,
    /// The caller finished its input; the handler read it to the end.
    InputDone,
    /// The handler returned after one message; the caller has not read anything yet.
    Returned,
}

const STATES: [At; 5] = [
    At::OpeningUnsent,
    At::Opening,
    At::Open,
    At::InputDone,
    At::Returned,
];

/// A stream from A (caller) to B (handler), and the user ends each side still holds.
struct Fixture {
    net: Net,
    at: At,
    a: Key,
    b: Option<Key>,
    a_opening: bool,
    a_sender: bool,
    a_receiver: bool,
    a_finished: bool,
    b_sender: bool,
    b_receiver: bool,
    /// How A's receiver ended, and how B's input ended (the first terminal item).
    a_end: Option<Result<(), Error>>,
    b_input_end: Option<Result<(), Error>>,
    /// Items a receiver yielded after its end (must stay empty).
    after_end: Vec<String>,
}

impl Fixture {
    fn new(at: At) -> Self {
        // Connection pings far apart: only the stream's own timers matter here.
        let mut config = super::config();
        config.ping_interval = Duration::from_secs(5000);
        let mut net = Net::with(config.clone(), config);
        let a = net
            .a
            .e
            .open_stream(net.now, net.outgoing(7, b"open", 600))
            .expect("open");
        let mut f = Fixture {
            net,
            at,
            a,
            b: None,
            a_opening: true,
            a_sender: false,
            a_receiver: false,
            a_finished: false,
            b_sender: false,
            b_receiver: false,
            a_end: None,
            b_input_end: None,
            after_end: Vec::new(),
        };
        if at == At::OpeningUnsent {
            return f;
        }
        f.net.a_to_b();
        let start = f.net.b.last_start();
        assert!(start.stream);
        f.b = Some(start.key);
        if at == At::Opening {
            return f;
        }
        assert!(f.net.b.e.accept_stream(start.key, 4, 4));
        f.b_sender = true;
        f.b_receiver = true;
        f.net.pump();
        let w = Watch::new();
        match f.net.a.e.poll_opened(f.a, &mut w.cx()) {
            Poll::Ready(Ok(ack)) => assert_eq!(
                ack,
                Ack {
                    in_capacity: 4,
                    out_capacity: 4
                }
            ),
            other => panic!("not opened: {other:?}"),
        }
        f.a_opening = false;
        f.a_sender = true;
        f.a_receiver = true;
        match at {
            At::InputDone => {
                f.a_send(b"in").expect("credit");
                f.a_finish();
                f.net.pump();
                assert_eq!(f.b_recv(), Some(Ok(Bytes::from_static(b"in"))));
                assert_eq!(f.b_recv(), None);
            }
            At::Returned => {
                f.b_send(b"out").expect("credit");
                f.b_return(None);
                f.net.pump();
            }
            _ => {}
        }
        f
    }

    fn b_key(&self) -> Key {
        self.b.expect("the handler side has the stream")
    }

    fn a_send(&mut self, payload: &'static [u8]) -> Result<(), Error> {
        let w = Watch::new();
        match self.net.a.e.poll_reserve(Side::Caller, self.a, &mut w.cx()) {
            Poll::Ready(Ok(())) => {
                self.net
                    .a
                    .e
                    .send(Side::Caller, self.a, Bytes::from_static(payload))
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(Error::Protocol("no credit".into())),
        }
    }

    fn a_finish(&mut self) {
        self.net.a.e.finish(Side::Caller, self.a);
        self.a_sender = false;
        self.a_finished = true;
    }

    fn b_send(&mut self, payload: &'static [u8]) -> Result<(), Error> {
        let w = Watch::new();
        let key = self.b_key();
        match self.net.b.e.poll_reserve(Side::Handler, key, &mut w.cx()) {
            Poll::Ready(Ok(())) => {
                self.net
                    .b
                    .e
                    .send(Side::Handler, key, Bytes::from_static(payload))
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(Error::Protocol("no credit".into())),
        }
    }

    /// The handler returns: its ends are dropped, then its result is given.
    fn b_return(&mut self, failure: Option<(ErrorKind, String)>) {
        let key = self.b_key();
        if self.b_sender {
            self.net.b.e.drop_sender(Side::Handler, key);
            self.b_sender = false;
        }
        if self.b_receiver {
            self.net.b.e.drop_receiver(Side::Handler, key);
            self.b_receiver = false;
        }
        self.net.b.e.stream_returned(key, failure);
    }

    fn a_recv(&mut self) -> Option<Result<Bytes, Error>> {
        let w = Watch::new();
        let item = self.net.a.e.poll_recv(Side::Caller, self.a, &mut w.cx());
        let item = item.map(|i| i.map(|r| r.map(|p| p.into_bytes().unwrap_or_default())));
        Self::track(item, &mut self.a_end, &mut self.after_end, "A")
    }

    fn b_recv(&mut self) -> Option<Result<Bytes, Error>> {
        let w = Watch::new();
        let item = self
            .net
            .b
            .e
            .poll_recv(Side::Handler, self.b_key(), &mut w.cx());
        let item = item.map(|i| i.map(|r| r.map(|p| p.into_bytes().unwrap_or_default())));
        Self::track(item, &mut self.b_input_end, &mut self.after_end, "B")
    }

    /// Notes a receiver's first end, and anything it yields after it.
    fn track(
        item: Poll<Option<Result<Bytes, Error>>>,
        end: &mut Option<Result<(), Error>>,
        after_end: &mut Vec<String>,
        who: &str,
    ) -> Option<Result<Bytes, Error>> {
        let Poll::Ready(item) = item else {
            return Some(Err(Error::Protocol("pending".into())));
        };
        if end.is_some() {
            if item.is_some() {
                after_end.push(format!("{who}: {item:?}"));
            }
            return item;
        }
        match &item {
            None => *end = Some(Ok(())),
            Some(Err(e)) => *end = Some(Err(e.clone())),
            Some(Ok(_)) => {}
        }
        item
    }

    /// Injects a message into A as if the handler side had sent it.
    fn inject_a(&mut self, op: Op, seq: u32, flags: Flags, payload: Option<Bytes>) {
        let mut m = Message::new(op);
        m.mux_id = self.a.mux_id();
        m.seq = seq;
        m.flags = flags;
        m.payload = payload;
        m.handler = HandlerId::new(7);
        let now = self.net.now;
        if let Err(why) = self.net.a.e.handle(now, m) {
            self.net.a.violation = Some(why);
        }
        self.net.a.wake();
    }

    /// Injects a message into B as if the caller had sent it.
    fn inject_b(&mut self, op: Op, seq: u32, flags: Flags, payload: Option<Bytes>) {
        let mut m = Message::new(op);
        m.mux_id = self.a.mux_id();
        m.seq = seq;
        m.flags = flags;
        m.payload = payload;
        let now = self.net.now;
        if let Err(why) = self.net.b.e.handle(now, m) {
            self.net.b.violation = Some(why);
        }
        self.net.b.wake();
    }

    /// Lets the stream run out: the handler returns if it still runs, every end still held
    /// is read to its end or dropped, and time passes beyond every deadline.
    fn wind_down(&mut self) {
        self.net.pump();
        if self.b_sender || self.b_receiver {
            if self.b_receiver {
                while let Some(Ok(_)) = self.b_recv() {}
            }
            if self.b.is_some() {
                self.b_return(None);
            }
        }
        self.net.pump();
        if self.a_opening {
            let w = Watch::new();
            if let Poll::Ready(Ok(_)) = self.net.a.e.poll_opened(self.a, &mut w.cx()) {
                self.a_sender = true;
                self.a_receiver = true;
            }
            self.a_opening = false;
            if !self.a_receiver {
                self.net.a.e.drop_opening(self.a);
            }
        }
        if self.a_sender {
            self.a_finish();
        }
        self.net.pump();
        if self.a_receiver {
            for _ in 0..16 {
                match self.a_recv() {
                    Some(Ok(_)) => continue,
                    Some(Err(Error::Protocol(p))) if p == "pending" => break,
                    _ => break,
                }
            }
            self.net.a.e.drop_receiver(Side::Caller, self.a);
            self.a_receiver = false;
        }
        self.net.pump();
        self.net.advance(Duration::from_secs(1200));
        self.net.pump();
    }

    /// What must hold whatever happened.
    fn check_invariants(&mut self, event: &str) {
        let ctx = format!("{:?} × {event}", self.at);
        assert!(
            self.net.a.violation.is_none(),
            "{ctx}: A closed the connection: {:?}",
            self.net.a.violation
        );
        assert!(
            self.net.b.violation.is_none(),
            "{ctx}: B closed the connection: {:?}",
            self.net.b.violation
        );
        assert!(
            self.after_end.is_empty(),
            "{ctx}: items after the end: {:?}",
            self.after_end
        );
        if let Some(Ok(())) = self.b_input_end {
            assert!(
                self.a_finished,
                "{ctx}: the handler's input looked finished, the caller never finished"
            );
        }
        assert_idle(&self.net);
    }
}

/// Runs `event` in every state, then the shared checks.
fn in_every_state(event: &str, apply: impl Fn(&mut Fixture)) {
    for at in STATES {
        let mut f = Fixture::new(at);
        apply(&mut f);
        f.wind_down();
        f.check_invariants(event);
    }
}

fn err(kind: ErrorKind, text: &str) -> Option<Bytes> {
    Some(encode_error(kind, text))
}

#[test]
fn ack() {
    in_every_state("ack", |f| {
        let ack = Ack {
            in_capacity: 2,
            out_capacity: 2,
        };
        f.inject_a(Op::AckMux, 0, Flags::NONE, Some(ack.encode()));
        let w = Watch::new();
        let opened = f.a_opening.then(|| f.net.a.e.poll_opened(f.a, &mut w.cx()));
        match f.at {
            At::OpeningUnsent | At::Opening => {
                assert!(matches!(opened, Some(Poll::Ready(Ok(a))) if a == ack));
                f.a_opening = false;
                f.a_sender = true;
                f.a_receiver = true;
            }
            // A second ack fails the stream, not the connection.
            At::Open | At::InputDone => {
                assert!(matches!(f.a_recv(), Some(Err(Error::Protocol(_)))));
            }
            At::Returned => {}
        }
    });
}

#[test]
fn refusal() {
    in_every_state("refusal", |f| {
        f.inject_a(
            Op::MuxConnectError,
            0,
            Flags::PAYLOAD_IS_ERROR,
            err(ErrorKind::UnknownHandler, "none"),
        );
        let w = Watch::new();
        match f.at {
            At::OpeningUnsent | At::Opening => {
                assert!(matches!(
                    f.net.a.e.poll_opened(f.a, &mut w.cx()),
                    Poll::Ready(Err(Error::UnknownHandler { .. }))
                ));
                f.a_opening = false;
            }
            At::Open | At::InputDone => {
                assert!(matches!(
                    f.a_recv(),
                    Some(Err(Error::UnknownHandler { .. }))
                ));
                if f.a_sender {
                    assert!(matches!(f.a_send(b"x"), Err(Error::UnknownHandler { .. })));
                }
            }
            At::Returned => {}
        }
    });
}

#[test]
fn message_from_the_handler() {
    in_every_state("handler message", |f| {
        let seq = if f.at == At::Returned { 3 } else { 1 };
        f.inject_a(
            Op::MuxServerMsg,
            seq,
            Flags::NONE,
            Some(Bytes::from_static(b"m")),
        );
        match f.at {
            // Before the ack a message is the peer's mistake: the stream fails.
            At::OpeningUnsent | At::Opening => {
                let w = Watch::new();
                assert!(matches!(
                    f.net.a.e.poll_opened(f.a, &mut w.cx()),
                    Poll::Ready(Err(Error::Protocol(_)))
                ));
                f.a_opening = false;
            }
            At::Open | At::InputDone => {
                assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"m"))));
            }
            At::Returned => {
                assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"out"))));
                assert_eq!(f.a_recv(), None, "ignored after the end");
            }
        }
    });
}

#[test]
fn message_out_of_sequence() {
    in_every_state("sequence gap", |f| {
        f.inject_a(
            Op::MuxServerMsg,
            5,
            Flags::NONE,
            Some(Bytes::from_static(b"m")),
        );
        if matches!(f.at, At::Open | At::InputDone) {
            assert!(matches!(f.a_recv(), Some(Err(Error::Protocol(p))) if p.contains("expected")));
            f.net.pump();
            assert!(
                f.net.b.stopped.contains(&f.b_key()),
                "the handler side is told and stops its handler"
            );
        }
    });
}

#[test]
fn credit() {
    in_every_state("credit", |f| {
        if matches!(f.at, At::Open | At::InputDone) {
            // Spend one, get it back: a second grant beyond the capacity fails the stream.
            if f.at == At::Open {
                f.a_send(b"x").expect("credit");
                f.net.pump();
            }
        }
        f.inject_a(Op::UnblockClientMux, 0, Flags::NONE, Some(encode_credit(1)));
        f.inject_a(Op::UnblockClientMux, 0, Flags::NONE, Some(encode_credit(1)));
        if f.at == At::Open {
            assert!(
                matches!(f.a_recv(), Some(Err(Error::Protocol(p))) if p.contains("over-granted"))
            );
        }
    });
}

#[test]
fn handler_end() {
    in_every_state("handler EOF", |f| {
        let seq = if f.at == At::Returned { 3 } else { 1 };
        f.inject_a(Op::MuxServerMsg, seq, Flags::EOF, None);
        match f.at {
            At::Open | At::InputDone => {
                assert_eq!(f.a_recv(), None, "a clean end");
                if f.at == At::Open {
                    assert_eq!(f.a_send(b"x"), Err(Error::StreamEnded));
                }
            }
            At::Returned => {
                assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"out"))));
                assert_eq!(f.a_recv(), None);
            }
            _ => {}
        }
    });
}

#[test]
fn handler_error() {
    in_every_state("handler error", |f| {
        let seq = if f.at == At::Returned { 3 } else { 1 };
        f.inject_a(
            Op::MuxServerMsg,
            seq,
            Flags::EOF | Flags::PAYLOAD_IS_ERROR,
            err(ErrorKind::Remote, "failed"),
        );
        if matches!(f.at, At::Open | At::InputDone) {
            assert!(matches!(f.a_recv(), Some(Err(Error::Remote(e))) if e.message == "failed"));
        }
    });
}

#[test]
fn handler_side_disconnect() {
    in_every_state("DisconnectClientMux", |f| {
        f.inject_a(Op::DisconnectClientMux, 0, Flags::NONE, None);
        if matches!(f.at, At::Open | At::InputDone) {
            assert_eq!(f.a_recv(), Some(Err(Error::Cancelled)));
            if f.at == At::Open {
                assert_eq!(f.a_send(b"x"), Err(Error::Cancelled));
            }
        }
    });
}

#[test]
fn caller_drops_its_receiver() {
    in_every_state("receiver dropped", |f| {
        if f.a_opening {
            f.net.a.e.drop_opening(f.a);
            f.a_opening = false;
        } else {
            f.net.a.e.drop_receiver(Side::Caller, f.a);
            f.a_receiver = false;
        }
        f.net.pump();
        match f.at {
            At::OpeningUnsent => assert!(f.net.b.received.is_empty(), "nothing was ever sent"),
            At::Opening => assert!(f.net.b.started.iter().all(|s| f
                .net
                .b
                .e
                .handlers
                .get(s.key)
                .is_none())),
            At::Open => {
                assert_eq!(f.b_recv(), Some(Err(Error::Cancelled)), "never a clean end");
                assert!(f.net.b.stopped.contains(&f.b_key()));
                assert_eq!(f.a_send(b"x"), Err(Error::Cancelled));
            }
            At::InputDone => assert!(f.net.b.stopped.contains(&f.b_key())),
            At::Returned => {}
        }
    });
}

#[test]
fn caller_drops_its_sender_unfinished() {
    in_every_state("sender dropped", |f| {
        if !f.a_sender {
            return;
        }
        f.net.a.e.drop_sender(Side::Caller, f.a);
        f.a_sender = false;
        f.net.pump();
        if f.at == At::Open {
            assert_eq!(
                f.b_recv(),
                Some(Err(Error::Cancelled)),
                "an abandoned upload"
            );
            assert!(f.net.b.stopped.contains(&f.b_key()));
            assert_eq!(f.a_recv(), Some(Err(Error::Cancelled)));
        }
    });
}

#[test]
fn caller_finishes() {
    in_every_state("finish", |f| {
        if !f.a_sender {
            return;
        }
        if f.at == At::Open {
            f.a_send(b"last").expect("credit");
        }
        f.a_finish();
        f.net.pump();
        if f.at == At::Open {
            assert_eq!(f.b_recv(), Some(Ok(Bytes::from_static(b"last"))));
            assert_eq!(f.b_recv(), None, "a clean end after finish");
        }
    });
}

#[test]
fn stream_pings() {
    in_every_state("stream ping tick", |f| {
        f.net.advance(Duration::from_secs(16));
        let pings = f.net.a.transmit(f.net.now);
        let sent = !pings.is_empty();
        f.net.b.receive(f.net.now, pings);
        f.net.b_to_a();
        match f.at {
            At::OpeningUnsent => {}
            At::Returned => {}
            _ => {
                assert!(sent, "the caller pings a stream the peer knows of");
                assert!(f
                    .net
                    .b
                    .received
                    .iter()
                    .any(|m| m.op == Op::Ping && m.mux_id == f.a.mux_id()));
                assert!(f
                    .net
                    .a
                    .received
                    .iter()
                    .any(|m| m.op == Op::Pong && m.mux_id == f.a.mux_id()));
            }
        }
    });
}

#[test]
fn a_silent_caller_is_cancelled() {
    in_every_state("silent caller", |f| {
        // Time passes and nothing is delivered: the caller's pings never reach B, which
        // hears nothing of the stream for more than three intervals.
        for _ in 0..4 {
            f.net.advance(Duration::from_secs(15));
        }
        if matches!(f.at, At::Open | At::InputDone) {
            assert!(f.net.b.stopped.contains(&f.b_key()));
            let _lost_pings = f.net.a.transmit(f.net.now);
            f.net.b_to_a();
            assert_eq!(f.a_recv(), Some(Err(Error::Cancelled)));
        }
    });
}

#[test]
fn deadline() {
    in_every_state("deadline", |f| {
        f.net.advance(Duration::from_secs(601));
        match f.at {
            At::OpeningUnsent | At::Opening => {
                let w = Watch::new();
                assert!(matches!(
                    f.net.a.e.poll_opened(f.a, &mut w.cx()),
                    Poll::Ready(Err(Error::DeadlineExceeded))
                ));
                f.a_opening = false;
            }
            At::Open | At::InputDone => {
                assert_eq!(f.a_recv(), Some(Err(Error::DeadlineExceeded)));
                assert!(f.net.b.stopped.contains(&f.b_key()));
            }
            At::Returned => {}
        }
    });
}

#[test]
fn lost_session() {
    in_every_state("disconnect", |f| {
        f.net.a.e.close(Error::Disconnected);
        f.net.b.e.close(Error::Disconnected);
        f.net.a.wake();
        f.net.b.wake();
        match f.at {
            At::OpeningUnsent | At::Opening => {
                let w = Watch::new();
                assert!(matches!(
                    f.net.a.e.poll_opened(f.a, &mut w.cx()),
                    Poll::Ready(Err(Error::Disconnected))
                ));
                f.a_opening = false;
            }
            At::Open => {
                assert_eq!(f.a_recv(), Some(Err(Error::Disconnected)));
                assert_eq!(f.b_recv(), Some(Err(Error::Disconnected)));
                assert!(f.net.b.stopped.contains(&f.b_key()));
            }
            At::InputDone => assert!(f.net.b.stopped.contains(&f.b_key())),
            // What was delivered before the loss is still read, then the end.
            At::Returned => {
                assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"out"))));
                assert_eq!(f.a_recv(), None);
            }
        }
    });
}

#[test]
fn handler_returns() {
    in_every_state("handler returns", |f| {
        if !f.b_sender {
            return;
        }
        f.b_return(Some((ErrorKind::Remote, "gave up".into())));
        f.net.pump();
        assert!(matches!(f.a_recv(), Some(Err(Error::Remote(e))) if e.message == "gave up"));
        if f.a_sender {
            assert!(matches!(f.a_send(b"x"), Err(Error::Remote(_))));
        }
        assert!(
            f.net.b.stopped.is_empty(),
            "a handler that returned is not stopped"
        );
    });
}

#[test]
fn caller_messages_to_the_handler() {
    in_every_state("caller message", |f| {
        let seq = if f.at == At::InputDone { 2 } else { 1 };
        f.inject_b(
            Op::MuxClientMsg,
            seq,
            Flags::NONE,
            Some(Bytes::from_static(b"c")),
        );
        match f.at {
            At::Open => assert_eq!(f.b_recv(), Some(Ok(Bytes::from_static(b"c")))),
            // After the caller's EOF, or before the ack, a message fails the stream.
            At::InputDone | At::Opening => {
                f.net.b_to_a();
                if f.at == At::InputDone {
                    assert!(matches!(f.a_recv(), Some(Err(Error::Protocol(_)))));
                }
            }
            _ => {}
        }
    });
}

#[test]
fn caller_cancels_on_the_wire() {
    in_every_state("DisconnectServerMux", |f| {
        f.inject_b(Op::DisconnectServerMux, 0, Flags::NONE, None);
        match f.at {
            At::Open => {
                assert_eq!(f.b_recv(), Some(Err(Error::Cancelled)));
                assert!(f.net.b.stopped.contains(&f.b_key()));
                assert_eq!(f.b_send(b"x"), Err(Error::Cancelled));
            }
            At::Opening => {
                // Cancelled before it started: the start is refused.
                assert!(!f.net.b.e.accept_stream(f.b_key(), 4, 4));
            }
            _ => {}
        }
    });
}
