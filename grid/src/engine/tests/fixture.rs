//! The stream fixture of streams.rs: one stream from A (caller) to B (handler) brought
//! into a given state, the user ends each side holds, and the checks that hold whatever
//! event comes next.

use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use super::{assert_idle, Net, Watch};
use crate::codec::{encode_error, Ack, ErrorKind, ErrorPayload, Flags, HandlerId, Message, Op};
use crate::engine::stream_view::StreamView;
use crate::engine::{Key, Side};
use crate::error::Error;

/// Where the stream stands when the event comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum At {
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

pub(super) const STATES: [At; 5] = [
    At::OpeningUnsent,
    At::Opening,
    At::Open,
    At::InputDone,
    At::Returned,
];

/// A stream from A (caller) to B (handler), and the user ends each side still holds.
pub(super) struct Fixture {
    pub(super) net: Net,
    pub(super) at: At,
    pub(super) a: Key,
    pub(super) b: Option<Key>,
    pub(super) a_opening: bool,
    pub(super) a_sender: bool,
    pub(super) a_receiver: bool,
    pub(super) a_finished: bool,
    pub(super) b_sender: bool,
    pub(super) b_receiver: bool,
    /// How A's receiver ended, and how B's input ended (the first terminal item).
    pub(super) a_end: Option<Result<(), Error>>,
    pub(super) b_input_end: Option<Result<(), Error>>,
    /// Items a receiver yielded after its end (must stay empty).
    pub(super) after_end: Vec<String>,
    pub(super) a_reader: super::Reader,
    pub(super) b_reader: super::Reader,
}

impl Fixture {
    pub(super) fn new(at: At) -> Self {
        Self::with_window(at, super::WINDOW)
    }

    /// As [`Fixture::new`], with windows of `window` bytes both ways.
    pub(super) fn with_window(at: At, window: u64) -> Self {
        // Connection pings far apart: only the stream's own timers matter here.
        let mut config = super::config();
        config.ping_interval = Duration::from_secs(5000);
        Self::with_config(at, window, config)
    }

    /// As [`Fixture::with_window`], with connection and stream pings every `ping`.
    pub(super) fn with_pings(at: At, window: u64, ping: Duration) -> Self {
        let mut config = super::config();
        config.ping_interval = ping;
        config.stream_ping_interval = ping;
        Self::with_config(at, window, config)
    }

    /// As [`Fixture::with_window`], with streams that keep what they send for a resume.
    pub(super) fn with_replay(at: At, window: u64) -> Self {
        let mut config = super::config();
        config.ping_interval = Duration::from_secs(5000);
        config.resume = true;
        Self::with_config(at, window, config)
    }

    fn with_config(at: At, window: u64, mut config: crate::engine::Config) -> Self {
        config.stream_window = window;
        let mut net = Net::with(config.clone(), config);
        let a = net.stream(7, b"open", 600);
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
            a_reader: super::Reader::default(),
            b_reader: super::Reader::default(),
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
        assert!(f.net.b.e.served(start.key).accept_stream(true, None));
        f.b_sender = true;
        f.b_receiver = true;
        f.net.pump();
        let w = Watch::new();
        match f.net.a.e.stream(Side::Caller, f.a).poll_opened(&mut w.cx()) {
            Poll::Ready(Ok(ack)) => assert_eq!(ack, Ack { in_window: window }),
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

    /// B's (the handler side's) end of the stream keyed `key`, borrowed.
    pub(super) fn b_stream(&mut self, key: Key) -> StreamView<'_> {
        self.net.b.e.stream(Side::Handler, key)
    }

    /// A's (the caller's) end of the stream keyed `key`, borrowed.
    pub(super) fn a_stream(&mut self, key: Key) -> StreamView<'_> {
        self.net.a.e.stream(Side::Caller, key)
    }

    pub(super) fn b_key(&self) -> Key {
        self.b.expect("the handler side has the stream")
    }

    pub(super) fn a_send(&mut self, payload: &'static [u8]) -> Result<(), Error> {
        let w = Watch::new();
        let mut payload = Some(Bytes::from_static(payload));
        let side = Side::Caller;
        match self
            .net
            .a
            .e
            .stream(side, self.a)
            .poll_send(&mut payload, &mut w.cx())
        {
            Poll::Ready(result) => result,
            Poll::Pending => Err(Error::Protocol("no credit".into())),
        }
    }

    pub(super) fn a_finish(&mut self) {
        self.net.a.e.stream(Side::Caller, self.a).finish();
        self.a_sender = false;
        self.a_finished = true;
    }

    pub(super) fn b_send(&mut self, payload: &'static [u8]) -> Result<(), Error> {
        let w = Watch::new();
        let key = self.b_key();
        let mut payload = Some(Bytes::from_static(payload));
        let side = Side::Handler;
        match self
            .net
            .b
            .e
            .stream(side, key)
            .poll_send(&mut payload, &mut w.cx())
        {
            Poll::Ready(result) => result,
            Poll::Pending => Err(Error::Protocol("no credit".into())),
        }
    }

    /// The handler returns: its ends are dropped, then its result is given.
    pub(super) fn b_return(&mut self, failure: Option<ErrorPayload>) {
        let key = self.b_key();
        if self.b_sender {
            self.net.b.e.stream(Side::Handler, key).drop_sender();
            self.b_sender = false;
        }
        if self.b_receiver {
            self.b_reader.drop(&mut self.net.b, Side::Handler, key);
            self.b_receiver = false;
        }
        self.net.b.e.served(key).returned(failure);
    }

    /// A's opening future takes its answer, which is a failure: the error (the future is
    /// gone then).
    pub(super) fn a_open_failed(&mut self) -> Error {
        let w = Watch::new();
        match self
            .net
            .a
            .e
            .stream(Side::Caller, self.a)
            .poll_opened(&mut w.cx())
        {
            Poll::Ready(Err(e)) => {
                self.a_opening = false;
                e
            }
            other => panic!("the open did not fail: {other:?}"),
        }
    }

    pub(super) fn a_recv(&mut self) -> Option<Result<Bytes, Error>> {
        let item = self.a_reader.poll(&mut self.net.a, Side::Caller, self.a);
        Self::track(item, &mut self.a_end, &mut self.after_end, "A")
    }

    pub(super) fn b_recv(&mut self) -> Option<Result<Bytes, Error>> {
        let key = self.b_key();
        let item = self.b_reader.poll(&mut self.net.b, Side::Handler, key);
        Self::track(item, &mut self.b_input_end, &mut self.after_end, "B")
    }

    /// Drops the caller's receiver.
    pub(super) fn a_drop_receiver(&mut self) {
        self.a_reader.drop(&mut self.net.a, Side::Caller, self.a);
        self.a_receiver = false;
    }

    /// Drops the handler's input receiver.
    pub(super) fn b_drop_receiver(&mut self) {
        let key = self.b_key();
        self.b_reader.drop(&mut self.net.b, Side::Handler, key);
    }

    /// Notes a receiver's first end, and anything it yields after it.
    pub(super) fn track(
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
    pub(super) fn inject_a(&mut self, op: Op, seq: u32, flags: Flags, payload: Option<Bytes>) {
        let m = self.stream_message(op, seq, flags, payload, HandlerId::new(7));
        let now = self.net.now;
        self.net.a.receive(now, vec![super::merged_frame(&m)]);
    }

    /// Injects a message into B as if the caller had sent it.
    pub(super) fn inject_b(&mut self, op: Op, seq: u32, flags: Flags, payload: Option<Bytes>) {
        let m = self.stream_message(op, seq, flags, payload, HandlerId::new(0));
        let now = self.net.now;
        self.net.b.receive(now, vec![super::merged_frame(&m)]);
    }

    /// A message of this stream (its mux id is the caller's on both sides).
    fn stream_message(
        &self,
        op: Op,
        seq: u32,
        flags: Flags,
        payload: Option<Bytes>,
        handler: HandlerId,
    ) -> Message {
        let mut m = Message::new(op);
        m.mux_id = self.a.mux_id();
        m.seq = seq;
        m.flags = flags;
        m.payload = payload;
        m.handler = handler;
        m
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
            if let Poll::Ready(Ok(_)) = self
                .net
                .a
                .e
                .stream(Side::Caller, self.a)
                .poll_opened(&mut w.cx())
            {
                self.a_sender = true;
                self.a_receiver = true;
            }
            self.a_opening = false;
            if !self.a_receiver {
                self.net.a.e.stream(Side::Caller, self.a).abandon_open();
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
            self.a_drop_receiver();
        }
        self.net.pump();
        self.net.advance(Duration::from_secs(1200));
        self.net.pump();
    }

    /// Lets the stream run out ([`Self::wind_down`]), then checks what must hold
    /// ([`Self::check_invariants`]).
    pub(super) fn wind_down_and_check(&mut self, event: &str) {
        self.wind_down();
        self.check_invariants(event);
    }

    /// What must hold whatever happened.
    fn check_invariants(&mut self, event: &str) {
        let ctx = format!("{:?} × {event}", self.at);
        self.net.assert_no_violation(&ctx);
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
pub(super) fn in_every_state(event: &str, apply: impl Fn(&mut Fixture)) {
    for at in STATES {
        let mut f = Fixture::new(at);
        apply(&mut f);
        f.wind_down_and_check(event);
    }
}

/// A message's payload of these bytes.
pub(super) fn text(payload: &'static [u8]) -> Option<Bytes> {
    Some(Bytes::from_static(payload))
}

pub(super) fn err(kind: ErrorKind, text: &str) -> Option<Bytes> {
    Some(encode_error(kind, text))
}
