//! Streams that outlive a socket (PROTOCOL.md §6, point 8). The engine stays free of I/O
//! and clocks: the driver (`connection/runner.rs`) decides when a socket is lost, holds the
//! session for the grace period, and hands it the new socket.
//!
//! When the socket is lost and the peer may come back (the same instance, within a grace
//! period), [`Engine::suspend`] ends what cannot resume as a lost socket does (single
//! calls, streams still opening, streams that keep no replay) and keeps the open streams,
//! with what each sent and the peer has not acknowledged (`replay.rs`). On the new socket
//! each side tells the other, per stream, how many messages it received and how much
//! credit it still leaves open ([`Engine::resume_list`]); [`Engine::resume`] then sends
//! again, in order, what the peer did not receive, and sets each sender's credit to what
//! the peer leaves open less the cost of what is sent again. A stream the peer does not
//! list fails as lost.

use std::time::Instant;

use super::assembly::Payload;
use super::replay::Resent;
use super::state::StreamState;
use super::violation::Violation;
use super::window::cost;
use super::{Assembler, Engine, Key, Side};
use crate::codec::{decode_resume, encode_resume, FrameLimits, Message, ResumedStream};
use crate::error::Error;

/// Where a connection with kept streams stands.
#[derive(Debug, Default)]
pub(super) struct Resuming {
    /// No socket: streams are kept, nothing else runs but their deadlines.
    pub(super) suspended: bool,
    /// A new socket: this side's Resume went first; nothing else is sent until the peer's
    /// arrives.
    pub(super) awaiting: bool,
}

impl Resuming {
    /// Whether new calls are refused (not sent): no socket, or one not resumed yet.
    pub(super) fn busy(&self) -> bool {
        self.suspended || self.awaiting
    }
}

impl Engine {
    /// The socket is lost, and the peer may come back: what cannot resume ends with `err`
    /// (as [`Engine::close`] ends everything), open streams that keep a replay are kept,
    /// and the socket's own state is dropped. Returns how many streams are kept.
    pub(crate) fn suspend(&mut self, err: &Error) -> usize {
        let mut kept = 0;
        for side in [Side::Caller, Side::Handler] {
            for key in self.keys(side) {
                let keep = self
                    .stream_mut(side, key)
                    .is_some_and(|s| s.state == StreamState::Open && s.header.out.resumable);
                if keep {
                    // What waits to be sent is in the replay: it goes again on the new socket.
                    self.clear_out(side, key);
                    self.forget_control(side, key);
                    kept += 1;
                } else {
                    self.close_entry(side, key, err);
                }
            }
        }
        self.outbox.clear();
        self.queued.clear();
        self.starts.clear();
        self.assembler =
            Assembler::new(self.config.max_message_size, self.config.reassembly_window);
        // Chunks the lost socket carried are not confirmed by any pong now.
        self.chunk_window =
            super::chunk_window::ChunkWindow::new(self.config.peer_reassembly_window as u64);
        self.timers.probe = None;
        self.timers.answered = None;
        self.timers.suspended = true;
        self.resume.suspended = true;
        self.check_idle();
        kept
    }

    /// A new socket to the same peer is up at `now`: this side's Resume goes first, and
    /// nothing else until the peer's arrives ([`Engine::handle`] then resumes).
    pub(crate) fn begin_resume(&mut self, now: Instant) {
        let list = self.resume_list();
        self.resume = Resuming {
            suspended: false,
            awaiting: true,
        };
        self.timers.suspended = false;
        self.timers.last_heard = now;
        // The callers could not be heard while there was no socket: their silence counts
        // from now (a grace longer than three stream-ping intervals would otherwise cancel
        // the streams they kept).
        for key in self.handlers.keys() {
            if let Some(s) = self.stream_mut(Side::Handler, key) {
                s.heard(now);
            }
        }
        self.outbox.resume = Some(encode_resume(&list));
        self.wake_writer();
    }

    /// The peer's Resume.
    pub(super) fn on_resume(
        &mut self,
        now: Instant,
        msg: &Message,
        payload: Payload,
    ) -> Result<(), Violation> {
        if msg.mux_id != 0 || !self.resume.awaiting {
            return Err(Violation::Broken(
                "Resume out of place (only first, on mux id 0, on a resumed connection)".into(),
            ));
        }
        let max = 2 * self
            .config
            .max_concurrent
            .max(self.config.peer_max_concurrent);
        let bytes = payload.into_bytes().unwrap_or_default();
        let list = decode_resume(&bytes, max).map_err(Violation::Broken)?;
        self.resume.awaiting = false;
        self.resume(now, &list);
        self.wake_writer();
        Ok(())
    }

    /// The stream under `key` on `side`, if it is still open.
    fn open_stream_mut(&mut self, side: Side, key: Key) -> Option<&mut super::state::Stream> {
        self.stream_mut(side, key)
            .filter(|s| s.state == StreamState::Open)
    }

    fn keys(&self, side: Side) -> Vec<Key> {
        match side {
            Side::Caller => self.callers.keys(),
            Side::Handler => self.handlers.keys(),
        }
    }

    /// Every kept stream still open, as this side tells the peer on the new socket (one
    /// that ended meanwhile, at its deadline say, is not listed: the peer fails it).
    fn resume_list(&mut self) -> Vec<ResumedStream> {
        let mut list = Vec::new();
        for side in [Side::Caller, Side::Handler] {
            for key in self.keys(side) {
                if let Some(s) = self.open_stream_mut(side, key) {
                    list.push(ResumedStream {
                        caller: side == Side::Caller,
                        mux_id: s.mux_id,
                        received: s.recv.next_seq.wrapping_sub(1),
                        open_credit: s.recv.window.unused(),
                    });
                }
            }
        }
        list
    }

    /// The new socket is up at `now` and the peer told its list: kept streams it also kept
    /// carry on, what it did not receive is sent again; the others fail as lost.
    fn resume(&mut self, now: Instant, peer: &[ResumedStream]) {
        self.timers.last_heard = now;
        // The peer's entries by (mux id, whether the peer opened the stream).
        let theirs: std::collections::HashMap<(u64, bool), ResumedStream> =
            peer.iter().map(|e| ((e.mux_id, e.caller), *e)).collect();
        for side in [Side::Caller, Side::Handler] {
            for key in self.keys(side) {
                // (A stream that ended meanwhile keeps its ending, queued, as it was.)
                let Some(s) = self.open_stream_mut(side, key) else {
                    continue;
                };
                // The peer's entry for this stream names the other end.
                let theirs = theirs.get(&(s.mux_id, side == Side::Handler)).copied();
                match theirs {
                    Some(e) => self.send_again(side, key, e),
                    None => self.close_entry(side, key, &Error::LOST),
                }
            }
        }
    }

    /// Sends again what the peer did not receive on a stream, and sets its credit.
    fn send_again(&mut self, side: Side, key: Key, peer: ResumedStream) {
        // What was queued meanwhile is in the replay too: it goes once, from there.
        self.clear_out(side, key);
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        let resent = match s.header.out.replay.take() {
            Some(mut replay) => {
                replay.acknowledge(peer.received);
                replay.take_all()
            }
            None => Vec::new(),
        };
        let mut spent = 0u64;
        for r in resent {
            match r {
                Resent::Encoded(bytes) => {
                    spent += self.requeue_encoded(side, key, bytes);
                }
                Resent::Whole(m) => {
                    spent += cost(m.payload.as_ref().map_or(0, |p| p.len()));
                    self.push_out_as(side, key, m, true);
                }
            }
        }
        if let Some(s) = self.stream_mut(side, key) {
            s.send.credit.reset(peer.open_credit - spent as i64);
            let waker = s.send.waker.take();
            self.wake(waker);
        }
    }

    /// Queues an encoded message again: into the early lane as it is if nothing whole is
    /// ahead of it, else whole (the queue's order is kept either way). Returns its cost.
    fn requeue_encoded(&mut self, side: Side, key: Key, mut bytes: Vec<u8>) -> u64 {
        // (This side encoded it: it decodes. Read for its number and payload's length.)
        let Some(m) = decode(&bytes) else {
            return 0;
        };
        let payload = m.payload.as_ref().map_or(0, |p| p.len());
        let Some(s) = self.stream_mut(side, key) else {
            return 0;
        };
        if s.header.out.takes_staged() {
            let mut lens = vec![(bytes.len() as u32, payload as u32)];
            s.header
                .out
                .push_staged(m.seq, &mut bytes, &mut lens, payload);
            let newly = s.header.out.mark_ready();
            self.queued(side, key, payload, newly);
        } else {
            self.push_out_as(side, key, m, true);
        }
        cost(payload)
    }
}

/// A message this side encoded itself.
fn decode(bytes: &[u8]) -> Option<Message> {
    let frame = bytes::Bytes::copy_from_slice(bytes);
    let mut r = crate::codec::wire::Reader::new(&frame, 0);
    Message::decode(&mut r, FrameLimits::new(usize::MAX)).ok()
}
