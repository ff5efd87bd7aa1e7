//! The network and the clock: each side's writer and reader, the handlers they start, the
//! timers, a shutdown, a transport ping.

use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use crate::codec::FrameMessages;
use crate::engine::violation::Violation;
use crate::engine::Start;

use super::checks::check_written;
use super::node::Node;
use super::{cx, Pair, Peer, KEEP, MAX_PING};

/// Messages the reader applies under one lock (as `connection::reader` does).
const BATCH: usize = 64;

impl Pair {
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
    pub(super) fn receive(&mut self, p: Peer, frame: &Bytes) {
        if self.lost {
            return;
        }
        let now = self.now;
        let node = self.node(p);
        let mut messages = match FrameMessages::new(frame, node.limits) {
            Ok(m) => m,
            Err(e) => {
                return self.violation(p, Violation::Broken(format!("undecodable frame: {e}")))
            }
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
                node.e.served(s.key).running() || s.stream,
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

    /// `p` starts leaving gracefully: it tells its peer and refuses the peer's new calls.
    pub fn drain(&mut self, p: Peer) {
        let now = self.now;
        self.node(p).e.drain(now, "leaving (fuzz)");
        self.settle_at(p);
    }
}
