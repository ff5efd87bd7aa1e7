//! [`Pair`]: the two sides, how they are connected, and what the drivers do after every
//! step.

use std::task::Poll;
use std::time::Instant;

use crate::codec::handshake::Terms;
use crate::engine::violation::Violation;
use crate::engine::{Key, Side};
use crate::error::Error;

use super::book::{caller_ends, drop_ends, Book};
use super::node::Node;
use super::{cx, Limits, Peer};

/// Two engines connected in memory, and their users. See the [module documentation](super).
pub struct Pair {
    pub(super) a: Node,
    pub(super) b: Node,
    pub(super) now: Instant,
    pub(super) checksums: bool,
    /// Something not written by the other engine reached an engine.
    pub(super) tampered: bool,
    /// The socket is gone: both engines are closed.
    pub(super) lost: bool,
    pub(super) book: Book,
}

impl Pair {
    /// Two connected engines with these settings, after a handshake that agreed on
    /// `checksums`.
    pub fn new(a: Limits, b: Limits, checksums: bool) -> Pair {
        let (a, b) = (a.valid(), b.valid());
        let (ca, cb) = (a.core(), b.core());
        Self::connect(
            ca.engine(cb.announced(checksums), &node_budget(&ca)),
            cb.engine(ca.announced(checksums), &node_budget(&cb)),
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
        let (ca, mut cb) = (a.core(), b.core());
        // B grants what it announced, as a node does (its builder keeps the start within).
        if let Some(max) = terms.max_stream_window {
            cb.max_stream_window = max.clamp(1, u64::from(u32::MAX));
            cb.stream_window = cb.stream_window.min(cb.max_stream_window);
        }
        Self::connect(
            ca.engine(*terms, &node_budget(&ca)),
            cb.engine(ca.announced(ours), &node_budget(&cb)),
            checksums,
        )
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

    pub(super) fn node(&mut self, p: Peer) -> &mut Node {
        match p {
            Peer::A => &mut self.a,
            Peer::B => &mut self.b,
        }
    }

    /// `p`'s side and the book, borrowed together.
    pub(super) fn node_and_book(&mut self, p: Peer) -> (&mut Node, &mut Book) {
        let Pair { a, b, book, .. } = self;
        let node = match p {
            Peer::A => a,
            Peer::B => b,
        };
        (node, book)
    }

    /// Whether the oracles that need two correct peers apply.
    pub(super) fn clean(&self) -> bool {
        !self.tampered
    }

    /// After every step, as the session does after each use of the engine: stops the
    /// handlers whose call ended, drops the wakers (nothing waits in here), re-arms the
    /// timer when it moved; then checks the engines.
    pub(super) fn settle(&mut self) {
        self.settle_at(Peer::A);
        self.settle_at(Peer::B);
    }

    /// As [`Pair::settle`], for the one side a step touched.
    pub(super) fn settle_at(&mut self, p: Peer) {
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
    pub(super) fn lose(&mut self, closed_by_shutdown: Option<Peer>) {
        if self.lost {
            return;
        }
        self.lost = true;
        let now = self.now;
        for p in [Peer::A, Peer::B] {
            let err = if closed_by_shutdown == Some(p) {
                Error::Closed
            } else {
                Error::LOST
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
                    node.e.call(key).poll_answer(&mut cx()).is_ready(),
                    "{p:?}: a call still waits on a closed engine"
                );
            }
            for key in std::mem::take(&mut node.openings) {
                match node.e.stream(Side::Caller, key).poll_opened(&mut cx()) {
                    Poll::Ready(Ok(ack)) => node.ends.push(caller_ends(p, key, ack)),
                    Poll::Ready(Err(_)) => {}
                    Poll::Pending => panic!("{p:?}: a stream still opens on a closed engine"),
                }
            }
        }
        self.settle();
    }

    pub(super) fn violation(&mut self, p: Peer, why: Violation) {
        if self.clean() && !self.lost {
            // The flood limits a correct peer can cross: its user cancels calls and streams
            // as fast as it opens them (rapid reset), or its streams' pings outnumber the
            // concurrency limit while this side's writer takes nothing (the fuzzer held it
            // back for more than a stream-ping interval) and the streams ended here. A
            // correct peer never breaks a rule.
            assert!(
                matches!(&why, Violation::OverLimit(r)
                    if r.contains("rapid reset") || r.contains("pings streams that do not exist")),
                "{p:?} saw a violation from a correct peer: {why:?} (close {})",
                crate::codec::Close::from(why.clone()).code
            );
        }
        self.lose(None);
    }
}

/// A node's budget of stream windows, as its manager makes it.
fn node_budget(c: &crate::core::Config) -> std::sync::Arc<crate::engine::NodeBudget> {
    crate::engine::NodeBudget::new(c.node_stream_budget)
}
