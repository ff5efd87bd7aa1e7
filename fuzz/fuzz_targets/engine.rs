//! The protocol engine: two engines connected in memory (`grid::__fuzz::Pair`), driven by
//! a sequence of steps: both sides' users (calls, streams, handlers, every way of dropping
//! their ends), the network (which side writes, which reads, and when), the clock, and,
//! unless the input asks for a clean run, tampering with the link (injected messages and
//! raw frames, corrupted, lost, duplicated and reordered frames, checksums recomputed).
//!
//! After every step both engines' invariants and memory bounds are checked; in a clean run
//! also that neither sees a violation from the other, that no call is refused Busy, that
//! messages arrive in order and intact, that clean ends are real and answers are the ones
//! given; at the end, that everything ends (see `grid/src/fuzz/mod.rs`). A panic is a finding.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use grid::__fuzz::{Limits, Mux, Pair, Peer};
use grid::codec::{encode_credit, encode_error, Ack, ErrorKind, Flags, HandlerId, Message, Op};
use grid::Bytes;
use libfuzzer_sys::fuzz_target;

/// Most steps one input runs.
const MAX_STEPS: usize = 256;

#[derive(Arbitrary, Debug)]
struct Input {
    a: Settings,
    b: Settings,
    checksums: bool,
    /// Tampering steps are skipped: the two engines are correct peers throughout.
    clean: bool,
    steps: Vec<Step>,
}

/// One side's settings (made valid as the builder requires).
#[derive(Arbitrary, Debug)]
struct Settings {
    max_message: MaxMessage,
    max_concurrent: u8,
    max_request_bytes: u32,
    reassembly_window: u32,
    max_send_buffer: u32,
    max_early_cancels: u8,
    ping_ms: u16,
    stream_ping_ms: u16,
}

#[derive(Arbitrary, Debug)]
enum MaxMessage {
    Default,
    Tiny(u8),
    Small(u16),
    /// Over a chunk (64 KiB): payloads travel in chunks.
    Chunked(u8),
}

impl Settings {
    fn limits(&self) -> Limits {
        let max_message_size = match self.max_message {
            MaxMessage::Default => 1 << 20,
            MaxMessage::Tiny(n) => usize::from(n),
            MaxMessage::Small(n) => usize::from(n),
            MaxMessage::Chunked(n) => (64 << 10) + 1 + usize::from(n) * 1024,
        };
        Limits {
            max_message_size,
            max_concurrent: 1 + usize::from(self.max_concurrent % 16),
            max_request_bytes: (self.max_request_bytes % (2 << 20)) as usize,
            reassembly_window: (self.reassembly_window % (2 << 20)) as usize,
            max_send_buffer: (self.max_send_buffer % (512 << 10)) as usize,
            max_early_cancels: usize::from(self.max_early_cancels % 32),
            ping_interval: Duration::from_millis(1 + u64::from(self.ping_ms)),
            stream_ping_interval: Duration::from_millis(1 + u64::from(self.stream_ping_ms)),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Side {
    A,
    B,
}

impl From<Side> for Peer {
    fn from(s: Side) -> Peer {
        match s {
            Side::A => Peer::A,
            Side::B => Peer::B,
        }
    }
}

/// A payload's size.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Len {
    Empty,
    Small(u8),
    Medium(u16),
    /// Over a chunk (64 KiB): sent in two to three chunks.
    Large(u8),
}

impl Len {
    fn bytes(self) -> usize {
        match self {
            Len::Empty => 0,
            Len::Small(n) => usize::from(n),
            Len::Medium(n) => usize::from(n) % 8192,
            Len::Large(n) => (64 << 10) + 1 + usize::from(n) * 256,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    Call {
        at: Side,
        handler: u8,
        len: Len,
        deadline: u16,
        subroute: bool,
    },
    PollCall {
        at: Side,
        i: u8,
    },
    DropCall {
        at: Side,
        i: u8,
    },
    Answer {
        at: Side,
        i: u8,
        len: Len,
        fail: bool,
    },
    Refuse {
        at: Side,
        i: u8,
        stream: bool,
    },
    Open {
        at: Side,
        handler: u8,
        len: Len,
        deadline: u16,
        window: u8,
    },
    PollOpened {
        at: Side,
        i: u8,
    },
    DropOpening {
        at: Side,
        i: u8,
    },
    Accept {
        at: Side,
        i: u8,
        in_window: u8,
    },
    Send {
        at: Side,
        i: u8,
        len: Len,
    },
    Reserve {
        at: Side,
        i: u8,
        max: u8,
        spend: u8,
        len: Len,
    },
    Stage {
        at: Side,
        i: u8,
        count: u8,
        len: Len,
    },
    Finish {
        at: Side,
        i: u8,
    },
    DropSender {
        at: Side,
        i: u8,
    },
    Recv {
        at: Side,
        i: u8,
        n: u8,
    },
    DropReceiver {
        at: Side,
        i: u8,
    },
    Return {
        at: Side,
        i: u8,
        ok: bool,
    },
    Write {
        at: Side,
        turns: u8,
    },
    Read {
        at: Side,
        frames: u8,
    },
    Pump,
    Advance {
        ms: u16,
    },
    Tick,
    Shutdown {
        at: Side,
    },
    TransportPing {
        at: Side,
        len: u8,
    },
    // Tampering.
    Inject {
        to: Side,
        messages: Vec<Injected>,
        one_frame: bool,
    },
    InjectRaw {
        to: Side,
        frame: Vec<u8>,
        fix: bool,
    },
    Corrupt {
        from: Side,
        frame: u8,
        at: u32,
        xor: u8,
    },
    DropFrame {
        from: Side,
        frame: u8,
    },
    DuplicateFrame {
        from: Side,
        frame: u8,
    },
    SwapFrames {
        from: Side,
        frame: u8,
    },
    Drain {
        at: Side,
    },
}

/// A message injected into an engine as if its peer had sent it.
#[derive(Arbitrary, Debug)]
struct Injected {
    mux: MuxPick,
    op: u8,
    seq: Seq,
    deadline_ms: u16,
    handler: u8,
    /// EOF, PAYLOAD_IS_ERROR and MORE (the encoder sets the other flags itself).
    flags: u8,
    subroute: Option<u64>,
    payload: Payload,
}

#[derive(Arbitrary, Debug)]
enum MuxPick {
    Zero,
    Small(u8),
    Raw(u64),
    Made(u8),
    Served(u8),
}

#[derive(Arbitrary, Debug)]
enum Seq {
    Small(u8),
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Absent,
    Credit(u8),
    Ack(u8, u8),
    Error(u8, u8),
    Ping(u64),
    Bytes(Vec<u8>),
    Zeros(Len),
}

impl Injected {
    fn message(&self) -> (Mux, Message) {
        let mux = match self.mux {
            MuxPick::Zero => Mux::Raw(0),
            MuxPick::Small(n) => Mux::Raw(u64::from(n)),
            MuxPick::Raw(n) => Mux::Raw(n),
            MuxPick::Made(i) => Mux::Made(i),
            MuxPick::Served(i) => Mux::Served(i),
        };
        let op = Op::from_u8(1 + self.op % 18).unwrap_or(Op::Ping);
        let mut m = Message::new(op);
        m.seq = match self.seq {
            Seq::Small(n) => u32::from(n),
            Seq::Raw(n) => n,
        };
        m.deadline_ms = u32::from(self.deadline_ms);
        m.handler = HandlerId::new(u32::from(self.handler));
        m.flags = Flags(self.flags & (Flags::EOF.0 | Flags::PAYLOAD_IS_ERROR.0 | Flags::MORE.0));
        m.subroute = self.subroute;
        m.payload = match &self.payload {
            Payload::Absent => None,
            Payload::Credit(n) => Some(encode_credit(u64::from(*n) * 16)),
            Payload::Ack(i, o) => Some(
                Ack {
                    in_window: u64::from(*i) << 8 | u64::from(*o),
                }
                .encode(),
            ),
            Payload::Error(kind, len) => {
                let kinds = [
                    ErrorKind::Remote,
                    ErrorKind::UnknownHandler,
                    ErrorKind::DeadlineExceeded,
                    ErrorKind::Cancelled,
                    ErrorKind::Codec,
                    ErrorKind::Protocol,
                    ErrorKind::Busy,
                    ErrorKind::TooLarge,
                ];
                let kind = kinds[usize::from(*kind) % kinds.len()];
                Some(encode_error(kind, &"e".repeat(usize::from(*len))))
            }
            Payload::Ping(t) => Some(Bytes::copy_from_slice(&t.to_be_bytes())),
            Payload::Bytes(b) => Some(Bytes::copy_from_slice(b)),
            Payload::Zeros(len) => Some(Bytes::from(vec![0; len.bytes()])),
        };
        (mux, m)
    }
}

fuzz_target!(|input: Input| {
    let mut pair = Pair::new(input.a.limits(), input.b.limits(), input.checksums);
    for step in input.steps.iter().take(MAX_STEPS) {
        if input.clean && step.tampers() {
            continue;
        }
        apply(&mut pair, step);
    }
    pair.wind_down();
});

impl Step {
    fn tampers(&self) -> bool {
        matches!(
            self,
            Step::Inject { .. }
                | Step::InjectRaw { .. }
                | Step::Corrupt { .. }
                | Step::DropFrame { .. }
                | Step::DuplicateFrame { .. }
                | Step::SwapFrames { .. }
        )
    }
}

fn apply(pair: &mut Pair, step: &Step) {
    match *step {
        Step::Call {
            at,
            handler,
            len,
            deadline,
            subroute,
        } => {
            let sub = subroute.then_some(0x5ab);
            pair.call(
                at.into(),
                u32::from(handler),
                len.bytes(),
                ms(deadline),
                sub,
            );
        }
        Step::PollCall { at, i } => pair.poll_call(at.into(), i),
        Step::DropCall { at, i } => pair.drop_call(at.into(), i),
        Step::Answer { at, i, len, fail } => pair.answer(at.into(), i, len.bytes(), fail),
        Step::Refuse { at, i, stream } => pair.refuse(at.into(), i, stream),
        Step::Open {
            at,
            handler,
            len,
            deadline,
            window,
        } => {
            // Windows of one to a few dozen small messages (each costs 64 bytes more).
            let window = (u64::from(window % 17) + 1) * 80;
            pair.open(at.into(), u32::from(handler), len.bytes(), ms(deadline), window);
        }
        Step::PollOpened { at, i } => pair.poll_opened(at.into(), i),
        Step::DropOpening { at, i } => pair.drop_opening(at.into(), i),
        Step::Accept { at, i, in_window } => {
            // 0: the handler takes no input.
            let window = u64::from(in_window % 17) * 80;
            pair.accept(at.into(), i, window)
        }
        Step::Send { at, i, len } => pair.send(at.into(), i, len.bytes()),
        Step::Reserve {
            at,
            i,
            max,
            spend,
            len,
        } => {
            pair.reserve(at.into(), i, usize::from(max % 9), usize::from(spend % 9), len.bytes());
        }
        Step::Stage { at, i, count, len } => {
            pair.stage(at.into(), i, usize::from(count % 9), len.bytes())
        }
        Step::Finish { at, i } => pair.finish(at.into(), i),
        Step::DropSender { at, i } => pair.drop_sender(at.into(), i),
        Step::Recv { at, i, n } => pair.recv(at.into(), i, n),
        Step::DropReceiver { at, i } => pair.drop_receiver(at.into(), i),
        Step::Return { at, i, ok } => pair.ret(at.into(), i, ok),
        Step::Write { at, turns } => pair.write(at.into(), usize::from(turns % 8) + 1),
        Step::Read { at, frames } => pair.read(at.into(), usize::from(frames % 8) + 1),
        Step::Pump => pair.pump(),
        Step::Advance { ms } => pair.advance(u32::from(ms)),
        Step::Tick => pair.tick(),
        Step::Shutdown { at } => pair.shutdown(at.into()),
        Step::Drain { at } => pair.drain(at.into()),
        Step::TransportPing { at, len } => pair.transport_ping(at.into(), usize::from(len)),
        Step::Inject {
            to,
            ref messages,
            one_frame,
        } => {
            let messages = messages.iter().take(8).map(Injected::message).collect();
            pair.inject(to.into(), messages, one_frame);
        }
        Step::InjectRaw { to, ref frame, fix } => pair.inject_raw(to.into(), frame.clone(), fix),
        Step::Corrupt {
            from,
            frame,
            at,
            xor,
        } => pair.corrupt(from.into(), frame, at, xor),
        Step::DropFrame { from, frame } => pair.drop_frame(from.into(), frame),
        Step::DuplicateFrame { from, frame } => pair.duplicate_frame(from.into(), frame),
        Step::SwapFrames { from, frame } => pair.swap_frames(from.into(), frame),
    }
}

/// A deadline in ms (0: already past).
fn ms(deadline: u16) -> u32 {
    u32::from(deadline) * 4
}
