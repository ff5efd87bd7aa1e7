//! The checks on what arrives: the items a stream's receiver yields, and the frames a
//! side writes.

use std::task::Poll;

use bytes::Bytes;

use crate::codec::{decode_frame, Flags, Op};
use crate::engine::{Engine, Side};

use super::book::{Book, Ends};
use super::node::Node;
use super::tagged::is_tagged;
use super::{cx, MAX_PING};

/// Reads up to `n` items from a stream's receiver, as `StreamReceiver` does, and checks
/// each against what was sent.
pub(super) fn read(e: &mut Engine, x: &mut Ends, book: &mut Book, clean: bool, n: usize) {
    let Some(r) = x.receiver.as_mut() else {
        return;
    };
    let mut items = 0;
    while items < n {
        if let Some(payload) = r.next(true) {
            if let Some(read) = r.report(payload.len()) {
                e.stream(x.side, x.key).count_read(read);
            }
            items += 1;
            assert!(x.end.is_none(), "an item after the end");
            if clean {
                // The other direction's messages, in order, intact.
                let flow = book.flows.entry(x.flow).or_default();
                let sent = match x.side {
                    Side::Caller => &flow.down,
                    Side::Handler => &flow.up,
                };
                let expected = sent.get(x.got).copied();
                assert_eq!(expected, Some(payload.len()), "a message lost or reordered");
                assert!(
                    is_tagged(&payload, x.flow.1, x.got as u32 + 1),
                    "a message damaged or out of order"
                );
            }
            x.got += 1;
            continue;
        }
        match r.refill(e.stream(x.side, x.key), &mut cx()) {
            Poll::Pending => break,
            Poll::Ready(Some(Ok(()))) => {}
            Poll::Ready(end) => {
                let clean_end = end.is_none();
                if x.end.is_none() {
                    x.end = Some(clean_end);
                    if clean && clean_end {
                        let flow = book.flows.entry(x.flow).or_default();
                        match x.side {
                            Side::Handler => {
                                assert!(flow.finished, "a clean end the caller never sent");
                                assert_eq!(x.got, flow.up.len(), "a clean end after a loss");
                            }
                            Side::Caller => {
                                assert_eq!(
                                    flow.returned,
                                    Some(true),
                                    "a clean end the handler never gave"
                                );
                                assert_eq!(x.got, flow.down.len(), "a clean end after a loss");
                            }
                        }
                    }
                }
                break;
            }
        }
    }
}

/// Checks a frame `node` wrote: its peer reads it, and it keeps the agreed sizes.
pub(super) fn check_written(node: &Node, frame: &Bytes, batch: Option<usize>) {
    assert!(
        frame.len() <= node.peer_limits.max_payload,
        "{:?} wrote a frame of {} bytes, over what its peer reads",
        node.peer,
        frame.len()
    );
    let messages = match decode_frame(frame, node.peer_limits) {
        Ok(m) => m,
        Err(e) => panic!("{:?} wrote a frame its peer cannot read: {e}", node.peer),
    };
    if let Some(n) = batch {
        assert_eq!(messages.len(), n, "the batch's messages");
    } else {
        assert_eq!(messages.len(), 1, "a chunk's frame holds the chunk");
    }
    for m in &messages {
        let len = m.payload.as_ref().map_or(0, Bytes::len);
        let data = matches!(
            m.op,
            Op::Request | Op::Response | Op::ConnectMux | Op::MuxClientMsg | Op::MuxServerMsg
        ) && !m.flags.contains(Flags::PAYLOAD_IS_ERROR);
        if data {
            assert!(len <= node.send_limit, "a payload over the agreed size");
        }
        if m.flags.contains(Flags::MORE) || batch.is_none() {
            assert!(len <= crate::engine::CHUNK, "a chunk over the chunk size");
        }
        if matches!(m.op, Op::Ping | Op::Pong) && m.mux_id == 0 {
            assert!(len <= MAX_PING, "a connection ping or pong over 125 bytes");
        }
        assert!(
            !matches!(m.op, Op::Connect | Op::ConnectResponse | Op::Merged),
            "{:?} on a live connection",
            m.op
        );
    }
}
