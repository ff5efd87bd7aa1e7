//! A simulated link between two engines, on the virtual clock: frames arrive half a round
//! trip after they leave, and each direction carries at most so many bytes per millisecond
//! (frames queue behind each other, as on a real line). Streams from A (caller) to handlers
//! at B that send as fast as their credit allows, read by A as soon as they arrive.

use std::collections::VecDeque;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Net, Reader, Watch};
use crate::engine::{Config, Key, Side};

/// One direction of the line.
#[derive(Default)]
struct Way {
    frames: VecDeque<(Instant, Bytes)>,
    /// When the line is free to start the next frame.
    free_at: Option<Instant>,
}

impl Way {
    fn send(&mut self, now: Instant, frames: Vec<Bytes>, half_rtt: Duration, rate: Option<u64>) {
        for f in frames {
            let start = self.free_at.map_or(now, |t| t.max(now));
            let on_line = rate.map_or(Duration::ZERO, |r| {
                Duration::from_nanos(f.len() as u64 * 1_000_000 / r.max(1))
            });
            self.free_at = Some(start + on_line);
            self.frames.push_back((start + on_line + half_rtt, f));
        }
    }

    fn arrived(&mut self, now: Instant) -> Vec<Bytes> {
        let mut out = Vec::new();
        while self.frames.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, f)) = self.frames.pop_front() {
                out.push(f);
            }
        }
        out
    }
}

/// A stream of the simulation: A's key, B's key, what B has sent and A has read.
pub(super) struct Flow {
    pub(super) a: Key,
    pub(super) b: Key,
    pub(super) reader: Reader,
    /// Bytes of payload A has read.
    pub(super) read: u64,
    /// B sends one message per this many ticks (1: as fast as credit allows).
    pub(super) every: u32,
    /// A reads nothing while false.
    pub(super) reading: bool,
}

/// Two engines over a line with a round trip and, optionally, a rate.
pub(super) struct Link {
    pub(super) net: Net,
    rtt: Duration,
    /// Bytes per millisecond each way (`None`: as fast as the engines go).
    rate: Option<u64>,
    ab: Way,
    ba: Way,
    pub(super) flows: Vec<Flow>,
    /// The payload B's handlers send.
    message: Bytes,
    ticks: u64,
}

/// The simulation's step.
pub(super) const TICK: Duration = Duration::from_micros(100);

impl Link {
    pub(super) fn new(config: Config, rtt: Duration, rate: Option<u64>, message: usize) -> Self {
        Link {
            net: Net::with(config.clone(), config),
            rtt,
            rate,
            ab: Way::default(),
            ba: Way::default(),
            flows: Vec::new(),
            message: Bytes::from(vec![7u8; message]),
            ticks: 0,
        }
    }

    /// Opens a stream from A whose window is capped at `max_window`; B's handler accepts it
    /// (once the open has crossed the line) and sends.
    pub(super) fn open(&mut self, max_window: Option<u64>) -> usize {
        let o = self.net.outgoing(7, b"open", 3600);
        let a = self
            .net
            .a
            .e
            .open_stream(self.net.now, o, max_window)
            .expect("open");
        let started = self.net.b.started.len();
        // Until B has it and acked it, and A has the ack.
        while self.net.b.started.len() == started {
            self.tick();
        }
        let b = self.net.b.last_start().key;
        assert!(self.net.b.e.served(b).accept_stream(false, None));
        let w = Watch::new();
        while self
            .net
            .a
            .e
            .stream(Side::Caller, a)
            .poll_opened(&mut w.cx())
            .is_pending()
        {
            self.tick();
        }
        self.flows.push(Flow {
            a,
            b,
            reader: Reader::default(),
            read: 0,
            every: 1,
            reading: true,
        });
        self.flows.len() - 1
    }

    /// The window A grants flow `i` now.
    pub(super) fn window(&mut self, i: usize) -> u64 {
        let a = self.flows[i].a;
        self.net
            .a
            .e
            .stream_mut(Side::Caller, a)
            .map_or(0, |s| s.recv.window.size())
    }

    /// Runs for `d` of virtual time.
    pub(super) fn run(&mut self, d: Duration) {
        let end = self.net.now + d;
        while self.net.now < end {
            self.tick();
        }
    }

    /// One step: the clock moves, timers run, B's handlers send what their credit allows,
    /// both sides write, what has arrived is read, A's user reads.
    pub(super) fn tick(&mut self) {
        self.ticks += 1;
        self.net.advance(TICK);
        let now = self.net.now;
        let w = Watch::new();
        for f in &mut self.flows {
            if self.ticks % u64::from(f.every) != 0 {
                continue;
            }
            // At most a few hundred messages a tick: as fast as a busy sender goes.
            for _ in 0..256 {
                let mut payload = Some(self.message.clone());
                let sent = self
                    .net
                    .b
                    .e
                    .stream(Side::Handler, f.b)
                    .poll_send(&mut payload, &mut w.cx());
                if sent.is_pending() || f.every > 1 {
                    break;
                }
            }
        }
        self.net.b.wake();
        let half = self.rtt / 2;
        let ab = self.net.a.transmit(now);
        self.ab.send(now, ab, half, self.rate);
        let ba = self.net.b.transmit(now);
        self.ba.send(now, ba, half, self.rate);
        let to_b = self.ab.arrived(now);
        self.net.b.receive(now, to_b);
        let to_a = self.ba.arrived(now);
        self.net.a.receive(now, to_a);
        for f in &mut self.flows {
            if !f.reading {
                continue;
            }
            while let Poll::Ready(Some(Ok(m))) = f.reader.poll(&mut self.net.a, Side::Caller, f.a) {
                f.read += m.len() as u64;
            }
        }
        self.net.assert_no_violation("the simulated link");
    }
}
