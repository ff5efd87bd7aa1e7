//! The users' single calls: made, polled, dropped; answered or refused by the handler side.

use std::task::Poll;
use std::time::{Duration, Instant};

use crate::codec::{ErrorKind, ErrorPayload, HandlerId};
use crate::engine::{Engine, Key, Outgoing};
use crate::error::Error;

use super::node::Node;
use super::tagged::{is_tagged, tagged};
use super::{assert_not_refused, cx, pick, Pair, Peer};

/// A call or stream to `handler` (`sub`routed) with a request of `len` bytes, due
/// `deadline_ms` after `now`.
pub(super) fn outgoing(
    now: Instant,
    handler: u32,
    sub: Option<u64>,
    len: usize,
    deadline_ms: u32,
) -> Outgoing {
    Outgoing {
        handler: HandlerId::new(handler),
        subroute: sub,
        payload: Some(tagged(0, 0, len)),
        deadline: now + Duration::from_millis(u64::from(deadline_ms)),
    }
}

impl Pair {
    /// `p`'s user makes a call with a request of `len` bytes.
    pub fn call(&mut self, p: Peer, handler: u32, len: usize, deadline_ms: u32, sub: Option<u64>) {
        let o = outgoing(self.now, handler, sub, len, deadline_ms);
        let open = |e: &mut Engine, now, o| e.open_call(now, o);
        if let Some(key) = self.open_at(p, "a call", o, len, deadline_ms, open) {
            self.node(p).calls.push(key);
        }
        self.settle_at(p);
    }

    /// `p`'s user opens a call or a stream (`open`: the engine's, given the time and `o`,
    /// its request of `len` bytes): the key it is made under, if the engine took it. The
    /// engine refuses only what is too large, what is due at once, and anything once the
    /// connection is lost (`what` names what it refused).
    pub(super) fn open_at(
        &mut self,
        p: Peer,
        what: &str,
        o: Outgoing,
        len: usize,
        deadline_ms: u32,
        open: impl FnOnce(&mut Engine, Instant, Outgoing) -> Result<Key, Error>,
    ) -> Option<Key> {
        let now = self.now;
        let lost = self.lost;
        let node = self.node(p);
        match open(&mut node.e, now, o) {
            Ok(key) => {
                assert!(!lost && len <= node.send_limit && deadline_ms > 0);
                Node::remember(&mut node.made_ids, key.mux_id());
                Some(key)
            }
            Err(Error::MessageTooLarge { .. }) => {
                assert!(len > node.send_limit);
                None
            }
            Err(Error::DeadlineExceeded) => {
                assert_eq!(deadline_ms, 0);
                None
            }
            Err(Error::Draining(_)) => {
                let told = node.e.poll_peer_drain(cx().waker()).is_some();
                assert!(
                    told,
                    "{what} refused as draining, but the peer never said so"
                );
                None
            }
            Err(e) => {
                assert!(lost, "{what} refused on a live engine: {e}");
                None
            }
        }
    }

    /// `p`'s user polls a call's future once.
    pub fn poll_call(&mut self, p: Peer, i: u8) {
        if let Some(i) = pick(&self.node(p).calls, i) {
            self.poll_call_at(p, i);
        }
    }

    pub(super) fn poll_call_at(&mut self, p: Peer, i: usize) {
        let clean = self.clean();
        let (node, book) = self.node_and_book(p);
        let key = node.calls[i];
        let Poll::Ready(result) = node.e.call(key).poll_answer(&mut cx()) else {
            return self.settle_at(p);
        };
        node.calls.remove(i);
        match result {
            Ok(payload) => {
                let payload = payload.into_bytes().unwrap_or_default();
                if clean {
                    let len = book.answers.get(&(p, key.mux_id()));
                    assert_eq!(len, Some(&payload.len()), "{p:?}: an answer nobody gave");
                    assert!(
                        is_tagged(&payload, key.mux_id(), u32::MAX),
                        "{p:?}: another call's answer, or a damaged one"
                    );
                }
            }
            Err(e) => assert_not_refused(clean, p, "a call", &e),
        }
        self.settle_at(p);
    }

    /// `p`'s user drops a call's future.
    pub fn drop_call(&mut self, p: Peer, i: u8) {
        self.drop_future(p, i, |node| &mut node.calls, |e, key| e.call(key).abandon());
    }

    /// `p`'s user drops a call's future or a stream's opening one: the `i`th of the keys
    /// that `held` picks out at `p`, which `drop` gives back to the engine.
    pub(super) fn drop_future(
        &mut self,
        p: Peer,
        i: u8,
        held: fn(&mut Node) -> &mut Vec<Key>,
        drop: fn(&mut Engine, Key),
    ) {
        let node = self.node(p);
        if let Some(i) = pick(held(node), i) {
            let key = held(node).remove(i);
            drop(&mut node.e, key);
        }
        self.settle_at(p);
    }

    /// A handler running at `p` answers: a payload of `len` bytes, or an error.
    pub fn answer(&mut self, p: Peer, i: u8, len: usize, fail: bool) {
        let (node, book) = self.node_and_book(p);
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
        node.e.served(start.key).answer(answer);
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
                .served(start.key)
                .refuse(ErrorKind::UnknownHandler, "no such handler");
        }
        self.settle_at(p);
    }
}
