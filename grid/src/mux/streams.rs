//! The per-session tables of open streams, on the caller's side and the handler's side.
//!
//! Every incoming stream message is applied here by the reader task: sequence numbers and
//! credit are checked, the message is delivered to the receiving end, and what must be
//! answered is returned to the reader as a [`Message`] (no I/O here). Invariants:
//! - a stream's entry exists from its open until its end (EOF, error, cancel, or the
//!   session closing); once removed, later messages for it are ignored;
//! - a delivered-but-unread message count never exceeds the receiving side's capacity:
//!   a peer that sends beyond its credit fails that stream (and only that stream);
//! - closing the tables ends every stream with the session's error and cancels every
//!   handler, so nothing waits on a dead socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::outcome::payload_error;
use super::stream_ends::{decode_credit, Credit, Unread};
use crate::codec::{Flags, Message, Op};
use crate::error::{Error, Result};
use crate::handler::Cancel;

/// What the handler side told the caller when it accepted a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ack {
    pub(crate) in_capacity: u32,
    pub(crate) out_capacity: u32,
}

impl Ack {
    /// The AckMux payload: a MessagePack array `[in_capacity, out_capacity]`.
    pub(crate) fn encode(self) -> Bytes {
        let mut buf = Vec::with_capacity(12);
        let _ = rmp::encode::write_array_len(&mut buf, 2);
        let _ = rmp::encode::write_uint(&mut buf, u64::from(self.in_capacity));
        let _ = rmp::encode::write_uint(&mut buf, u64::from(self.out_capacity));
        Bytes::from(buf)
    }

    pub(crate) fn decode(payload: Option<&[u8]>) -> Result<Ack, String> {
        let (in_capacity, out_capacity): (u32, u32) =
            rmp_serde::from_slice(payload.unwrap_or_default())
                .map_err(|e| format!("bad AckMux payload: {e}"))?;
        Ok(Ack {
            in_capacity,
            out_capacity,
        })
    }
}

/// The receiving half of one direction, as the reader task sees it.
pub(crate) struct Inbound {
    pub(crate) items: mpsc::UnboundedSender<Result<Bytes>>,
    pub(crate) unread: Arc<Unread>,
    /// 0 until known (a caller learns it from the ack).
    pub(crate) capacity: u32,
    pub(crate) next_seq: u32,
}

impl Inbound {
    pub(crate) fn new(
        items: mpsc::UnboundedSender<Result<Bytes>>,
        unread: Arc<Unread>,
        capacity: u32,
    ) -> Self {
        Self {
            items,
            unread,
            capacity,
            next_seq: 1,
        }
    }

    /// Checks a data message's sequence number and credit, and delivers its payload.
    /// Returns false if the receiving end is gone (the message was dropped).
    fn deliver(&mut self, msg: &Message) -> Result<bool, String> {
        if msg.seq != self.next_seq {
            return Err(format!(
                "stream message {} arrived where {} was expected (lost or reordered)",
                msg.seq, self.next_seq
            ));
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        if msg.flags.contains(Flags::EOF) && msg.payload.is_none() {
            return Ok(true);
        }
        let capacity = if self.capacity == 0 {
            u32::MAX
        } else {
            self.capacity
        };
        if !self.unread.deliver(capacity) {
            return Err(format!(
                "peer sent beyond its credit of {capacity} messages"
            ));
        }
        Ok(self
            .items
            .send(Ok(msg.payload.clone().unwrap_or_default()))
            .is_ok())
    }

    fn fail(&self, err: Error) {
        let _ = self.items.send(Err(err));
    }
}

/// A stream this side opened.
pub(crate) struct CallerStream {
    pub(crate) responses: Inbound,
    pub(crate) requests: Arc<Credit>,
    /// The handler's in-capacity, from the ack (0 before).
    pub(crate) request_capacity: u32,
    pub(crate) ack: Option<oneshot::Sender<Result<Ack>>>,
}

/// A stream the peer opened, served by a handler here.
pub(crate) struct HandlerStream {
    /// `None` without caller→handler messages, or after the caller's EOF.
    pub(crate) input: Option<Inbound>,
    pub(crate) output: Arc<Credit>,
    pub(crate) out_capacity: u32,
    pub(crate) task: Option<AbortHandle>,
    pub(crate) cancel: Cancel,
    pub(crate) last_heard: Instant,
}

impl HandlerStream {
    fn cancel(self, err: Error) {
        if let Some(input) = &self.input {
            input.fail(err.clone());
        }
        self.output.end(err);
        self.cancel.fire();
        if let Some(task) = self.task {
            task.abort();
        }
    }
}

type Table<T> = Mutex<Option<HashMap<u64, T>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open streams of one session.
pub(crate) struct StreamTables {
    callers: Table<CallerStream>,
    handlers: Table<HandlerStream>,
    idle: Arc<Notify>,
}

fn reply(op: Op, mux_id: u64) -> Message {
    let mut m = Message::new(op);
    m.mux_id = mux_id;
    m
}

impl StreamTables {
    pub(crate) fn new(idle: Arc<Notify>) -> Self {
        Self {
            callers: Mutex::new(Some(HashMap::new())),
            handlers: Mutex::new(Some(HashMap::new())),
            idle,
        }
    }

    fn removed<T>(&self, t: &mut HashMap<u64, T>, mux_id: u64) -> Option<T> {
        let r = t.remove(&mux_id);
        if r.is_some() && t.is_empty() {
            self.idle.notify_waiters();
        }
        r
    }

    // ---- the caller's side -------------------------------------------------------------

    /// Registers a stream this side is opening. Fails once the tables are closed.
    pub(crate) fn open_caller(
        &self,
        mux_id: u64,
        stream: CallerStream,
    ) -> Result<(), CallerStream> {
        match lock(&self.callers).as_mut() {
            Some(t) => {
                t.insert(mux_id, stream);
                Ok(())
            }
            None => Err(stream),
        }
    }

    /// The handler side accepted: size the response window, grant request credit.
    pub(crate) fn on_ack(&self, msg: &Message) -> Option<Message> {
        let mut guard = lock(&self.callers);
        let t = guard.as_mut()?;
        let s = t.get_mut(&msg.mux_id)?;
        match Ack::decode(msg.payload.as_deref()) {
            Ok(ack) => {
                s.responses.capacity = ack.out_capacity.max(1);
                s.request_capacity = ack.in_capacity;
                s.requests.start(ack.in_capacity);
                if let Some(tx) = s.ack.take() {
                    let _ = tx.send(Ok(ack));
                }
                None
            }
            Err(why) => {
                let s = self.removed(t, msg.mux_id)?;
                if let Some(tx) = s.ack {
                    let _ = tx.send(Err(Error::Protocol(why)));
                }
                Some(reply(Op::DisconnectServerMux, msg.mux_id))
            }
        }
    }

    /// The open failed on the handler side (or the handler side ended the stream).
    pub(crate) fn on_remote_end(&self, mux_id: u64, err: Error) {
        let mut guard = lock(&self.callers);
        let Some(t) = guard.as_mut() else { return };
        let Some(s) = self.removed(t, mux_id) else {
            return;
        };
        match s.ack {
            Some(tx) => {
                let _ = tx.send(Err(err.clone()));
            }
            None => s.responses.fail(err.clone()),
        }
        s.requests.end(err);
    }

    /// A message from the handler. Returns what to send back, if anything.
    pub(crate) fn on_handler_msg(&self, msg: Message) -> Option<Message> {
        let mut guard = lock(&self.callers);
        let t = guard.as_mut()?;
        let s = t.get_mut(&msg.mux_id)?;
        if let Some(tx) = s.ack.take() {
            // Messages before the ack are impossible: the handler side sends the ack first.
            let _ = tx.send(Err(Error::Protocol("stream message before its ack".into())));
        }
        let end = msg.flags.contains(Flags::EOF);
        if msg.flags.contains(Flags::PAYLOAD_IS_ERROR) {
            let err = payload_error(&msg);
            let s = self.removed(t, msg.mux_id)?;
            s.responses.fail(err);
            s.requests.end(Error::Cancelled);
            return None;
        }
        match s.responses.deliver(&msg) {
            Ok(_) if !end => None,
            Ok(_) => {
                let s = self.removed(t, msg.mux_id)?;
                s.requests.end(Error::Cancelled);
                None
            }
            Err(why) => {
                let s = self.removed(t, msg.mux_id)?;
                s.responses.fail(Error::Protocol(why.clone()));
                s.requests.end(Error::Protocol(why));
                Some(reply(Op::DisconnectServerMux, msg.mux_id))
            }
        }
    }

    /// Credit for this side's requests.
    pub(crate) fn on_caller_credit(&self, msg: &Message) -> Option<Message> {
        let mut guard = lock(&self.callers);
        let t = guard.as_mut()?;
        let s = t.get(&msg.mux_id)?;
        let granted = decode_credit(msg.payload.as_deref())
            .and_then(|n| s.requests.grant(n, s.request_capacity));
        if let Err(why) = granted {
            let s = self.removed(t, msg.mux_id)?;
            s.responses.fail(Error::Protocol(why.clone()));
            s.requests.end(Error::Protocol(why));
            return Some(reply(Op::DisconnectServerMux, msg.mux_id));
        }
        None
    }

    /// This side gives up on a stream it opened. True if it was still open (then the
    /// handler side must be told).
    pub(crate) fn client_cancel(&self, mux_id: u64) -> bool {
        let mut guard = lock(&self.callers);
        let Some(t) = guard.as_mut() else {
            return false;
        };
        match self.removed(t, mux_id) {
            Some(s) => {
                s.requests.end(Error::Cancelled);
                true
            }
            None => false,
        }
    }

    /// The streams this side opened (to ping them).
    pub(crate) fn caller_ids(&self) -> Vec<u64> {
        lock(&self.callers)
            .as_ref()
            .map_or_else(Vec::new, |t| t.keys().copied().collect())
    }

    // ---- the handler's side ------------------------------------------------------------

    /// Registers a stream the peer opened. False if closed or the id is in use.
    pub(crate) fn open_handler(&self, mux_id: u64, stream: HandlerStream) -> bool {
        match lock(&self.handlers).as_mut() {
            Some(t) if !t.contains_key(&mux_id) => {
                t.insert(mux_id, stream);
                true
            }
            _ => false,
        }
    }

    /// Stores the handler task's abort handle (aborting at once if the stream already ended).
    pub(crate) fn attach_task(&self, mux_id: u64, task: AbortHandle) {
        let mut guard = lock(&self.handlers);
        match guard.as_mut().and_then(|t| t.get_mut(&mux_id)) {
            Some(s) => s.task = Some(task),
            None => task.abort(),
        }
    }

    /// A message from the caller. Returns what to send back, if anything.
    pub(crate) fn on_caller_msg(&self, msg: &Message, now: Instant) -> Option<Message> {
        let mut guard = lock(&self.handlers);
        let t = guard.as_mut()?;
        let s = t.get_mut(&msg.mux_id)?;
        s.last_heard = now;
        let Some(input) = s.input.as_mut() else {
            // No input (capacity 0), or after EOF: the caller broke the protocol.
            let s = self.removed(t, msg.mux_id)?;
            s.cancel(Error::Protocol(
                "stream message after EOF or to a handler without input".into(),
            ));
            return Some(reply(Op::DisconnectClientMux, msg.mux_id));
        };
        match input.deliver(msg) {
            Ok(true) => {
                if msg.flags.contains(Flags::EOF) {
                    s.input = None;
                }
                None
            }
            Ok(false) => {
                // The handler dropped its input: discard, and give the credit back at once.
                let mut m = reply(Op::UnblockClientMux, msg.mux_id);
                m.payload = Some(super::stream_ends::encode_credit(1));
                Some(m)
            }
            Err(why) => {
                let s = self.removed(t, msg.mux_id)?;
                s.cancel(Error::Protocol(why));
                Some(reply(Op::DisconnectClientMux, msg.mux_id))
            }
        }
    }

    /// Credit for the handler's output.
    pub(crate) fn on_handler_credit(&self, msg: &Message, now: Instant) -> Option<Message> {
        let mut guard = lock(&self.handlers);
        let t = guard.as_mut()?;
        let s = t.get_mut(&msg.mux_id)?;
        s.last_heard = now;
        let granted =
            decode_credit(msg.payload.as_deref()).and_then(|n| s.output.grant(n, s.out_capacity));
        if let Err(why) = granted {
            let s = self.removed(t, msg.mux_id)?;
            s.cancel(Error::Protocol(why));
            return Some(reply(Op::DisconnectClientMux, msg.mux_id));
        }
        None
    }

    /// The caller cancelled. True if the stream was open.
    pub(crate) fn on_caller_cancel(&self, mux_id: u64) -> bool {
        let mut guard = lock(&self.handlers);
        let Some(t) = guard.as_mut() else {
            return false;
        };
        match self.removed(t, mux_id) {
            Some(s) => {
                s.cancel(Error::Cancelled);
                true
            }
            None => false,
        }
    }

    /// A mux ping from the caller: true if the stream is open here.
    pub(crate) fn on_caller_ping(&self, mux_id: u64, now: Instant) -> bool {
        let mut guard = lock(&self.handlers);
        match guard.as_mut().and_then(|t| t.get_mut(&mux_id)) {
            Some(s) => {
                s.last_heard = now;
                true
            }
            None => false,
        }
    }

    /// The handler returned. True if the stream was still open (its end must be sent).
    pub(crate) fn handler_done(&self, mux_id: u64) -> bool {
        let mut guard = lock(&self.handlers);
        let Some(t) = guard.as_mut() else {
            return false;
        };
        self.removed(t, mux_id).is_some()
    }

    /// Cancels the handler streams whose caller has been silent since `silent_since`;
    /// returns their ids (the callers must be told).
    pub(crate) fn cancel_silent(&self, silent_since: Instant) -> Vec<u64> {
        let mut guard = lock(&self.handlers);
        let Some(t) = guard.as_mut() else {
            return Vec::new();
        };
        let stale: Vec<u64> = t
            .iter()
            .filter(|(_, s)| s.last_heard < silent_since)
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            if let Some(s) = self.removed(t, *id) {
                s.cancel(Error::Cancelled);
            }
        }
        stale
    }

    // ---- both ----------------------------------------------------------------------------

    /// Ends every stream with `err` and cancels every handler.
    pub(crate) fn close(&self, err: &Error) {
        let callers = lock(&self.callers).take();
        let handlers = lock(&self.handlers).take();
        for (_, s) in callers.into_iter().flatten() {
            match s.ack {
                Some(tx) => {
                    let _ = tx.send(Err(err.clone()));
                }
                None => s.responses.fail(err.clone()),
            }
            s.requests.end(err.clone());
        }
        for (_, s) in handlers.into_iter().flatten() {
            s.cancel(err.clone());
        }
        self.idle.notify_waiters();
    }

    /// (streams opened here, streams served here).
    pub(crate) fn counts(&self) -> (usize, usize) {
        let c = lock(&self.callers).as_ref().map_or(0, HashMap::len);
        let h = lock(&self.handlers).as_ref().map_or(0, HashMap::len);
        (c, h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::stream_ends::encode_credit;

    #[test]
    fn ack_and_credit_payloads_match_protocol_md() {
        let ack = Ack {
            in_capacity: 16,
            out_capacity: 8,
        };
        assert_eq!(&ack.encode()[..], &[0x92, 0x10, 0x08]);
        assert_eq!(Ack::decode(Some(&[0x92, 0x10, 0x08])), Ok(ack));
        assert!(Ack::decode(Some(&[0x91, 0x10])).is_err());
        assert_eq!(&encode_credit(4)[..], &[0x04]);
        assert_eq!(decode_credit(Some(&[0x04])), Ok(4));
        assert!(decode_credit(None).is_err());
    }

    fn data(seq: u32, flags: Flags) -> Message {
        let mut m = Message::new(Op::MuxServerMsg);
        m.mux_id = 1;
        m.seq = seq;
        m.flags = flags;
        m.payload = Some(Bytes::from_static(b"x"));
        m
    }

    #[test]
    fn inbound_checks_sequence_and_credit() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let unread = Arc::new(Unread::default());
        let mut inbound = Inbound::new(tx, unread, 2);
        assert_eq!(inbound.deliver(&data(1, Flags::NONE)), Ok(true));
        assert_eq!(inbound.deliver(&data(2, Flags::NONE)), Ok(true));
        // A third unread message exceeds the capacity of 2.
        assert!(inbound.deliver(&data(3, Flags::NONE)).is_err());
        assert!(rx.try_recv().is_ok());
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut inbound = Inbound::new(tx, Arc::new(Unread::default()), 8);
        assert!(inbound.deliver(&data(2, Flags::NONE)).is_err(), "gap");
    }
}
