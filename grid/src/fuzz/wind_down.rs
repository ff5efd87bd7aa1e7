//! The end: both sides' users stop, and nothing may be left.

use std::task::Waker;

use crate::codec::{ErrorKind, ErrorPayload};
use crate::engine::Side;

use super::book::drop_ends;
use super::checks::read;
use super::{Pair, Peer};

impl Pair {
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
            self.accept(p, 0, 160);
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
        let (node, book) = self.node_and_book(p);
        for start in std::mem::take(&mut node.accepting) {
            node.e
                .served(start.key)
                .refuse(ErrorKind::UnknownHandler, "winding down");
        }
        for start in std::mem::take(&mut node.serving) {
            node.e
                .served(start.key)
                .answer(Err(ErrorPayload::new(ErrorKind::Remote, "done")));
        }
        for key in std::mem::take(&mut node.calls) {
            node.e.call(key).abandon();
        }
        for key in std::mem::take(&mut node.openings) {
            node.e.stream(Side::Caller, key).abandon_open();
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
