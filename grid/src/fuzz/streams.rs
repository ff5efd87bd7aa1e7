//! The users' streams: opened, accepted, sent on, read, finished, dropped; their handlers
//! return.

use std::task::Poll;

use crate::codec::{ErrorKind, ErrorPayload};
use crate::engine::{Engine, Key, RecvBatch, Side};

use super::book::{caller_ends, drop_ends, end_lease, Ends, Flow};
use super::calls::outgoing;
use super::checks::read;
use super::node::{forget_if_done, Node};
use super::tagged::tagged;
use super::{assert_not_refused, cx, pick, Pair, Peer};

impl Pair {
    /// `p`'s user opens a stream with an initial payload of `len` bytes, receiving the
    /// handler's messages through a window of at most `window` bytes.
    pub fn open(&mut self, p: Peer, handler: u32, len: usize, deadline_ms: u32, window: u64) {
        let o = outgoing(self.now, handler, None, len, deadline_ms);
        let open = |e: &mut Engine, now, o| e.open_stream(now, o, Some(window));
        if let Some(key) = self.open_at(p, "a stream", o, len, deadline_ms, open) {
            self.node(p).openings.push(key);
            self.book.flows.insert((p, key.mux_id()), Flow::default());
        }
        self.settle_at(p);
    }

    /// `p`'s user polls a stream's opening future once.
    pub fn poll_opened(&mut self, p: Peer, i: u8) {
        if let Some(i) = pick(&self.node(p).openings, i) {
            self.poll_opened_at(p, i);
        }
    }

    pub(super) fn poll_opened_at(&mut self, p: Peer, i: usize) {
        let clean = self.clean();
        let node = self.node(p);
        let key = node.openings[i];
        match node.e.stream(Side::Caller, key).poll_opened(&mut cx()) {
            Poll::Pending => {}
            Poll::Ready(Ok(ack)) => {
                node.openings.remove(i);
                node.ends.push(caller_ends(p, key, ack));
            }
            Poll::Ready(Err(e)) => {
                node.openings.remove(i);
                assert_not_refused(clean, p, "a stream's opening", &e);
            }
        }
        self.settle_at(p);
    }

    /// `p`'s user drops a stream's opening future.
    pub fn drop_opening(&mut self, p: Peer, i: u8) {
        self.drop_future(
            p,
            i,
            |node| &mut node.openings,
            |e, key| e.stream(Side::Caller, key).abandon_open(),
        );
    }

    /// The handler of a stream admitted at `p` accepts it, taking input through a window of
    /// at most `in_window` bytes (0: it takes none).
    pub fn accept(&mut self, p: Peer, i: u8, in_window: u64) {
        let node = self.node(p);
        let Some(i) = pick(&node.accepting, i) else {
            return;
        };
        let start = node.accepting.remove(i);
        drop(start.payload.into_bytes());
        let input = in_window > 0;
        if node
            .e
            .served(start.key)
            .accept_stream(input, Some(in_window))
        {
            let flow = (p.other(), start.mux_id);
            node.ends.push(Ends {
                side: Side::Handler,
                key: start.key,
                flow,
                sender: true,
                receiver: input.then(RecvBatch::default),
                got: 0,
                end: None,
                lease: None,
            });
            self.book.flows.entry(flow).or_default();
        }
        self.settle_at(p);
    }

    /// `p`'s user sends a message of `len` bytes on a stream (if it has credit).
    pub fn send(&mut self, p: Peer, i: u8, len: usize) {
        let (node, book) = self.node_and_book(p);
        let Some((side, key, named)) = sending_end(node, i, len) else {
            return;
        };
        let flow = book.flows.entry(named).or_default();
        let n = flow.sent(side).len();
        let mut payload = Some(tagged(named.1, n as u32 + 1, len));
        let mut stream = node.e.stream(side, key);
        let credit = stream.credit();
        match stream.poll_send(&mut payload, &mut cx()) {
            Poll::Ready(Ok(())) => {
                assert!(credit > 0, "sent without credit");
                flow.sent(side).push(len);
            }
            Poll::Ready(Err(_)) => {}
            Poll::Pending => assert!(
                credit == 0 || node.e.streams_send_buffer_full() || leased(node, side, key),
                "credit and room in the send buffer, no lease out, yet the sender waits"
            ),
        }
        self.settle_at(p);
    }

    /// `p`'s user waits for credit on a stream and then sends up to `spend` messages of
    /// `len` bytes (at most `max`) on what it found, as a permit or `send_all` does.
    pub fn reserve(&mut self, p: Peer, i: u8, max: usize, spend: usize, len: usize) {
        let (node, book) = self.node_and_book(p);
        let Some((side, key, named)) = sending_end(node, i, len) else {
            return;
        };
        let flow = book.flows.entry(named).or_default();
        if let Poll::Ready(Ok(credit)) = node.e.stream(side, key).poll_credit(&mut cx()) {
            assert!(credit > 0, "ready without credit");
            let mut covered = 0;
            for _ in 0..spend.min(max.max(1)) {
                if covered >= credit {
                    break;
                }
                let seq = flow.sent(side).len() as u32 + 1;
                let sent = node.e.stream(side, key).send(tagged(named.1, seq, len));
                assert!(sent.is_ok(), "credit found could not be spent");
                covered += crate::engine::cost(len);
                flow.sent(side).push(len);
            }
        }
        self.settle_at(p);
    }

    /// A stream's sender stages, as a stream handler's output does in its task: if it
    /// holds no lease, it takes one and stages up to `count` messages of `len` bytes under
    /// it, and keeps it across the steps that follow (the handler's poll goes on);
    /// otherwise its lease ends and what it staged is queued (the poll returned).
    pub fn stage(&mut self, p: Peer, i: u8, count: usize, len: usize) {
        let (node, book) = self.node_and_book(p);
        let Some((side, key, named)) = sending_end(node, i, len) else {
            return;
        };
        let Some(x) = node
            .ends
            .iter_mut()
            .find(|x| x.key == key && x.side == side)
        else {
            return;
        };
        if x.lease.is_some() {
            end_lease(&mut node.e, x);
            return self.settle_at(p);
        }
        let flow = book.flows.entry(named).or_default();
        let mut stream = node.e.stream(side, key);
        let credit = stream.credit();
        let Some(mut lease) = stream.lease() else {
            return self.settle_at(p);
        };
        assert!(credit > 0, "a lease without credit");
        assert!(
            !node.e.streams_send_buffer_full(),
            "a lease with the send buffer full"
        );
        let mut staged = crate::engine::Staged::default();
        let mut covered = 0;
        for _ in 0..count {
            let seq = flow.sent(side).len() as u32 + 1;
            if !staged.push(&mut lease, &tagged(named.1, seq, len)) {
                break;
            }
            assert!(covered < credit, "staged beyond the credit");
            covered += crate::engine::cost(len);
            flow.sent(side).push(len);
        }
        x.lease = Some((lease, staged));
        self.settle_at(p);
    }

    /// `p`'s user finishes a stream's sender.
    pub fn finish(&mut self, p: Peer, i: u8) {
        if let Some(i) = pick(&self.node(p).ends, i) {
            self.finish_at(p, i);
        }
    }

    pub(super) fn finish_at(&mut self, p: Peer, i: usize) {
        let (node, book) = self.node_and_book(p);
        let x = &mut node.ends[i];
        if !x.sender {
            return;
        }
        // What it staged goes first (a sender queues its stage before it finishes).
        end_lease(&mut node.e, x);
        x.sender = false;
        let real = node.e.stream(x.side, x.key).send_ended().is_none();
        node.e.stream(x.side, x.key).finish();
        if x.side == Side::Caller && real {
            book.flows.entry(x.flow).or_default().finished = true;
        }
        forget_if_done(node, i);
        self.settle_at(p);
    }

    /// `p`'s user drops a stream's sender.
    pub fn drop_sender(&mut self, p: Peer, i: u8) {
        self.drop_half(p, i, |e, x| {
            if !x.sender {
                return false;
            }
            end_lease(e, x);
            x.sender = false;
            e.stream(x.side, x.key).drop_sender();
            true
        });
    }

    /// `p`'s user drops a half of the `i`th stream end it holds: `drop` does, if that half
    /// is still held (true); an end with nothing left is forgotten.
    fn drop_half(&mut self, p: Peer, i: u8, drop: impl FnOnce(&mut Engine, &mut Ends) -> bool) {
        let node = self.node(p);
        let Some(i) = pick(&node.ends, i) else {
            return;
        };
        if drop(&mut node.e, &mut node.ends[i]) {
            forget_if_done(node, i);
        }
        self.settle_at(p);
    }

    /// `p`'s user reads up to `n` items from a stream's receiver.
    pub fn recv(&mut self, p: Peer, i: u8, n: u8) {
        if let Some(i) = pick(&self.node(p).ends, i) {
            self.recv_at(p, i, usize::from(n));
        }
    }

    pub(super) fn recv_at(&mut self, p: Peer, i: usize, n: usize) {
        let clean = self.clean();
        let (node, book) = self.node_and_book(p);
        read(&mut node.e, &mut node.ends[i], book, clean, n);
        self.settle_at(p);
    }

    /// `p`'s user drops a stream's receiver.
    pub fn drop_receiver(&mut self, p: Peer, i: u8) {
        self.drop_half(p, i, |e, x| {
            let Some(mut r) = x.receiver.take() else {
                return false;
            };
            r.release(e.stream(x.side, x.key));
            true
        });
    }

    /// A stream handler at `p` returns (its ends dropped first), successfully or not.
    pub fn ret(&mut self, p: Peer, i: u8, ok: bool) {
        let node = self.node(p);
        let handlers: Vec<usize> = (0..node.ends.len())
            .filter(|&j| node.ends[j].side == Side::Handler)
            .collect();
        if let Some(j) = pick(&handlers, i) {
            self.ret_at(p, handlers[j], ok);
        }
    }

    pub(super) fn ret_at(&mut self, p: Peer, i: usize, ok: bool) {
        let (node, book) = self.node_and_book(p);
        let x = node.ends.remove(i);
        let (key, flow) = (x.key, x.flow);
        drop_ends(&mut node.e, x);
        let failure = (!ok).then(|| ErrorPayload::new(ErrorKind::Remote, "failed"));
        book.flows.entry(flow).or_default().returned = Some(ok);
        node.e.served(key).returned(failure);
        self.settle_at(p);
    }
}

/// The side, key and stream (as the book names it) of the `i`th stream end held at `node`,
/// if its user may send a message of `len` bytes on it: it still holds the sender, and a
/// payload over the agreed size is refused by the sender itself.
fn sending_end(node: &Node, i: u8, len: usize) -> Option<(Side, Key, (Peer, u64))> {
    let i = pick(&node.ends, i)?;
    let x = &node.ends[i];
    (x.sender && len <= node.send_limit).then_some((x.side, x.key, x.flow))
}

/// Whether the stream end's sender holds a lease (its other sends wait for it to end).
fn leased(node: &Node, side: Side, key: Key) -> bool {
    node.ends
        .iter()
        .any(|x| x.side == side && x.key == key && x.lease.is_some())
}
