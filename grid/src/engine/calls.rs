//! Single calls on both sides, and what calls and streams share: opening one as the
//! caller, admitting one as the handler side (or refusing it), and starting its handler.
//!
//! A call this side makes is `Waiting` until its answer, deadline, cancel or the session's
//! end makes it `Answered`; the user's future then takes the result. A call served here is
//! `Pending` until its handler starts, `Running` until the handler answers (or is stopped),
//! then `Done`.

use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use super::assembly::Payload;
use super::header::Header;
use super::state::Stream;
use super::violation::Violation;
use super::window::RecvWindow;
use super::{CallerEntry, Engine, HandlerEntry, Key, Side, Start};
use crate::codec::{ErrorKind, ErrorPayload, Flags, HandlerId, Message, Op};
use crate::error::Error;

/// A call or stream this side asks the peer for.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) handler: HandlerId,
    pub(crate) subroute: Option<u64>,
    pub(crate) payload: Option<Bytes>,
    pub(crate) deadline: Instant,
}

#[derive(Debug)]
pub(super) enum CallState {
    Waiting,
    /// The answer's payload, or the error it carried (decoded here: the caller's future
    /// reads no flags) or the call failed with.
    Answered(Result<Payload, Error>),
    /// The user took the result (or gave up).
    Taken,
}

/// A single call this side made.
#[derive(Debug)]
pub(super) struct CallerCall {
    pub(super) state: CallState,
    pub(super) waker: Option<Waker>,
    pub(super) header: Header,
}

impl CallerCall {
    /// What a pooled box holds once its call ended: nothing alive.
    pub(super) fn ended(_was: &CallerCall) -> CallerCall {
        CallerCall {
            state: CallState::Waiting,
            waker: None,
            header: Header::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HandlerCallState {
    Pending,
    Running,
    Done,
}

/// A single call served here.
#[derive(Debug)]
pub(super) struct HandlerCall {
    pub(super) mux_id: u64,
    pub(super) handler: HandlerId,
    pub(super) state: HandlerCallState,
    pub(super) header: Header,
    pub(super) batch: u64,
}

impl HandlerCall {
    /// What a pooled box holds once its call ended: nothing alive.
    pub(super) fn ended(was: &HandlerCall) -> HandlerCall {
        HandlerCall {
            mux_id: 0,
            handler: was.handler,
            state: HandlerCallState::Done,
            header: Header::default(),
            batch: 0,
        }
    }
}

/// What a handler's answer carries: its payload, or an error kind and text.
pub(crate) type Answer = Result<Option<Bytes>, ErrorPayload>;

impl Engine {
    /// Checks what every new call or stream needs; returns its deadline in ms.
    fn admit_outgoing(&self, now: Instant, o: &Outgoing) -> Result<u32, Error> {
        if self.refuses_new() {
            return Err(self.refusal());
        }
        let limit = self.config.send_limit;
        if let Some(p) = o.payload.as_ref().filter(|p| p.len() > limit) {
            return Err(Error::MessageTooLarge {
                size: p.len(),
                limit,
            });
        }
        let ms = u32::try_from(o.deadline.saturating_duration_since(now).as_millis())
            .unwrap_or(u32::MAX);
        if ms == 0 {
            return Err(Error::DeadlineExceeded);
        }
        Ok(ms)
    }

    /// Whether the peer takes one more call or stream with a request of `len` bytes now:
    /// within its concurrency limit and its request window (a request larger than the
    /// whole window goes alone).
    fn peer_has_room(&self, len: usize) -> bool {
        self.active_callers < self.config.peer_max_concurrent
            && (self.request_bytes.0 == 0
                || self.request_bytes.0 + len <= self.config.peer_max_request_bytes)
    }

    /// Sends the opening message of a call or stream now if the peer has room for it, else
    /// keeps it (in order) until this side's calls or streams in flight make room: the
    /// peer would refuse it with Busy.
    fn activate_or_queue(&mut self, key: Key, open: Message) {
        let len = open.payload.as_ref().map_or(0, Bytes::len);
        if self.queued.is_empty() && self.peer_has_room(len) {
            self.activate(key, open);
        } else {
            if self.queued.is_empty() {
                tracing::debug!(
                    in_flight = self.active_callers,
                    limit = self.config.peer_max_concurrent,
                    "calls wait: the peer serves no more at once"
                );
            }
            self.queued.push_back((key, open));
        }
    }

    fn activate(&mut self, key: Key, open: Message) {
        let len = open.payload.as_ref().map_or(0, Bytes::len);
        match self.callers.get_mut(key) {
            Some(e) => e.header_mut().counted = Some(len),
            None => return,
        }
        self.active_callers += 1;
        self.request_bytes.0 += len;
        // Whole, like a call's cancel: an open the peer has room for only once the cancel
        // that made the room reached it must not overtake it in the frame (a stream's small
        // messages encoded early go ahead of the whole ones).
        self.push_out_as(Side::Caller, key, open, true);
    }

    /// Sends the queued calls and streams that still want to go, in order, while the peer
    /// has room.
    pub(super) fn activate_queued(&mut self) {
        while let Some((key, open)) = self.queued.front() {
            let key = *key;
            let wanted = match self.callers.get(key) {
                Some(CallerEntry::Call(c)) => matches!(c.state, CallState::Waiting),
                Some(CallerEntry::Stream(s)) => {
                    s.state == super::state::StreamState::Unanswered
                        && matches!(s.role, super::state::Role::Caller { opened: None, .. })
                }
                None => false,
            };
            if wanted && !self.peer_has_room(open.payload.as_ref().map_or(0, Bytes::len)) {
                return;
            }
            if let Some((key, open)) = self.queued.pop_front() {
                if wanted {
                    self.activate(key, open);
                }
            }
        }
    }

    fn open_message(key: Key, op: Op, o: Outgoing, deadline_ms: u32) -> Message {
        Message {
            mux_id: key.mux_id(),
            seq: 0,
            deadline_ms,
            handler: o.handler,
            op,
            flags: Flags::NONE,
            subroute: o.subroute,
            payload: o.payload,
        }
    }

    /// Makes a single call: queues its request and returns the key its future polls. When
    /// as many calls and streams as the peer serves at once are in flight, the request
    /// waits (within its deadline) until one of them ends.
    ///
    /// # Errors
    /// The session's error once closed; `MessageTooLarge`; `DeadlineExceeded` for a
    /// deadline already past.
    pub(crate) fn open_call(&mut self, now: Instant, o: Outgoing) -> Result<Key, Error> {
        let ms = self.admit_outgoing(now, &o)?;
        let deadline = o.deadline;
        let key = self
            .callers
            .insert(CallerEntry::Call(self.caller_boxes.boxed(CallerCall {
                state: CallState::Waiting,
                waker: None,
                header: Header {
                    holders: 1,
                    ..Header::default()
                },
            })));
        self.arm_timer(Side::Caller, key, deadline);
        self.activate_or_queue(key, Self::open_message(key, Op::Request, o, ms));
        Ok(key)
    }

    /// Opens a stream: queues the open and returns the key its future polls.
    ///
    /// # Errors
    /// As [`Engine::open_call`].
    pub(crate) fn open_stream(
        &mut self,
        now: Instant,
        o: Outgoing,
        max_window: Option<u64>,
    ) -> Result<Key, Error> {
        let ms = self.admit_outgoing(now, &o)?;
        let deadline = o.deadline;
        let (window, tuning) = self.open_window(max_window);
        let key = self
            .callers
            .insert(CallerEntry::Stream(Box::new(Stream::new(
                Side::Caller,
                0,
                o.handler,
                now,
                self.config.peer_max_stream_window,
            ))));
        if let Some(CallerEntry::Stream(s)) = self.callers.get_mut(key) {
            s.mux_id = key.mux_id();
            s.header.holders = 1;
            s.recv.window = RecvWindow::new(window);
            s.recv.tuning = tuning;
            s.header.out.resumable = self.config.resume;
        }
        self.arm_timer(Side::Caller, key, deadline);
        let mut open = Self::open_message(key, Op::ConnectMux, o, ms);
        // The open carries the window granted for the handler's messages (PROTOCOL.md §6).
        open.seq = u32::try_from(window).unwrap_or(u32::MAX);
        self.activate_or_queue(key, open);
        Ok(key)
    }

    /// The answer of a call, once there is one (the response message, or why there is none).
    pub(super) fn poll_call(
        &mut self,
        key: Key,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Payload, Error>> {
        let Some(CallerEntry::Call(c)) = self.callers.get_mut(key) else {
            return Poll::Ready(Err(Error::Cancelled));
        };
        match std::mem::replace(&mut c.state, CallState::Taken) {
            CallState::Answered(r) => {
                c.header.holders = 0;
                self.settle(Side::Caller, key);
                Poll::Ready(r)
            }
            CallState::Waiting => {
                c.state = CallState::Waiting;
                match &c.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => c.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            CallState::Taken => Poll::Ready(Err(Error::Cancelled)),
        }
    }

    /// The user dropped a call's future: if it was still waiting, the handler side is told
    /// to stop (unless the request never left, then it is simply not sent).
    pub(super) fn drop_call(&mut self, key: Key) {
        let Some(CallerEntry::Call(c)) = self.callers.get_mut(key) else {
            return;
        };
        c.header.holders = 0;
        if matches!(c.state, CallState::Waiting) {
            c.state = CallState::Taken;
            self.abandon_call(key);
        }
        self.settle(Side::Caller, key);
    }

    /// Ends a waiting call on the wire: drops what was not sent, and tells the handler side
    /// if anything was.
    fn abandon_call(&mut self, key: Key) {
        let Some(CallerEntry::Call(c)) = self.callers.get_mut(key) else {
            return;
        };
        let transmitted = c.header.out.transmitted;
        self.timers.disarm(&mut c.header.timer, Side::Caller, key);
        self.clear_out(Side::Caller, key);
        self.assembler.forget(Op::Response, key.mux_id());
        if transmitted {
            let mut cancel = Message::new(Op::DisconnectServerMux);
            cancel.mux_id = key.mux_id();
            self.push_out(Side::Caller, key, cancel);
        }
    }

    /// Ends a waiting call with `err` (deadline, lost session), waking its future.
    pub(super) fn fail_call(&mut self, key: Key, err: Error) {
        let Some(CallerEntry::Call(c)) = self.callers.get_mut(key) else {
            return;
        };
        if !matches!(c.state, CallState::Waiting) {
            return;
        }
        c.state = CallState::Answered(Err(err));
        let waker = c.waker.take();
        self.wake(waker);
        self.abandon_call(key);
        self.settle(Side::Caller, key);
    }

    /// A Response arrived.
    pub(super) fn on_response(&mut self, msg: &Message, payload: Payload) {
        let answer = if msg.flags.contains(Flags::PAYLOAD_IS_ERROR) {
            // The caller's future names the call in it (`Error::for_call`).
            Err(Error::from_wire(
                payload.into_bytes().as_deref(),
                msg.handler,
                None,
            ))
        } else {
            Ok(payload)
        };
        self.answered(msg.mux_id, answer);
    }

    /// The answer to the call under `mux_id` arrived (or failed to): the call is over.
    pub(super) fn answered(&mut self, mux_id: u64, answer: Result<Payload, Error>) {
        let Some(key) = Key::from_mux_id(mux_id) else {
            return;
        };
        let Some(CallerEntry::Call(c)) = self.callers.get_mut(key) else {
            return;
        };
        if !matches!(c.state, CallState::Waiting) {
            return;
        }
        c.state = CallState::Answered(answer);
        let waker = c.waker.take();
        self.timers.disarm(&mut c.header.timer, Side::Caller, key);
        self.wake(waker);
        self.clear_out(Side::Caller, key);
        self.settle(Side::Caller, key);
    }

    /// Refuses a Request or ConnectMux before admitting it (nothing was started). An error
    /// when the peer already has more refusals waiting than the concurrency limit: it calls
    /// faster than it reads, and must be disconnected.
    fn refuse_open(&mut self, msg: &Message, kind: ErrorKind, text: &str) -> Result<(), Violation> {
        let op = if msg.op == Op::ConnectMux {
            Op::MuxConnectError
        } else {
            Op::Response
        };
        let refusal = Message::error_to(op, msg, kind, text);
        if !self.push_refusal(refusal) {
            return Err(Violation::OverLimit(format!(
                "the peer keeps calling beyond the limit of {} concurrent calls without reading the refusals",
                self.config.max_concurrent
            )));
        }
        Ok(())
    }

    /// A Request or ConnectMux arrived: admit it (its handler starts after this batch of
    /// messages), refuse it with Busy beyond the concurrency limit or with Draining once this
    /// side is leaving, or report the peer.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        msg: &Message,
        payload: Payload,
        stream: bool,
    ) -> Result<(), Violation> {
        if self.closed.is_some() {
            return Ok(());
        }
        if self.handler_ids.contains_key(&msg.mux_id) {
            return Err(Violation::Broken(format!(
                "mux id {} reused while in flight",
                msg.mux_id
            )));
        }
        if let Some(reason) = self.leaving() {
            return self.refuse_open(msg, ErrorKind::Draining, &reason);
        }
        // (The id is taken below only if the call is admitted.)
        let len = payload.len();
        let held = self.request_bytes.1;
        let over = if self.active_handlers >= self.config.max_concurrent {
            Some(format!(
                "{} calls and streams are in flight on this connection, the most it serves at once",
                self.config.max_concurrent
            ))
        } else if held > 0 && held + len > self.config.max_request_bytes {
            Some(format!(
                "{held} bytes of requests are held for this connection; {len} more would exceed its limit of {}",
                self.config.max_request_bytes
            ))
        } else {
            None
        };
        if let Some(text) = over {
            return self.refuse_open(msg, ErrorKind::Busy, &text);
        }
        let deadline = (msg.deadline_ms > 0)
            .then(|| now + std::time::Duration::from_millis(u64::from(msg.deadline_ms)));
        let entry = if stream {
            let mut s = Stream::new(
                Side::Handler,
                msg.mux_id,
                msg.handler,
                now,
                self.config.peer_max_stream_window,
            );
            // The caller's window for the handler's messages, from the open.
            if let Err(why) = s.send.credit.grant(u64::from(msg.seq)) {
                return self.refuse_open(msg, ErrorKind::Protocol, &why);
            }
            s.header.counted = Some(len);
            if let super::state::Role::Handler { batch, .. } = &mut s.role {
                *batch = self.batch;
            }
            s.header.out.resumable = self.config.resume;
            HandlerEntry::Stream(Box::new(s))
        } else {
            HandlerEntry::Call(self.handler_boxes.boxed(HandlerCall {
                mux_id: msg.mux_id,
                handler: msg.handler,
                state: HandlerCallState::Pending,
                header: Header {
                    counted: Some(len),
                    ..Header::default()
                },
                batch: self.batch,
            }))
        };
        let key = self.handlers.insert(entry);
        self.handler_ids.insert(msg.mux_id, key);
        self.active_handlers += 1;
        self.request_bytes.1 += len;
        if let Some(d) = deadline {
            self.arm_timer(Side::Handler, key, d);
        }
        self.starts.push_back(Start {
            key,
            stream,
            mux_id: msg.mux_id,
            handler: msg.handler,
            subroute: msg.subroute,
            payload,
            deadline,
        });
        Ok(())
    }

    /// Releases an admitted handler to start, if its call is still wanted.
    pub(super) fn start(&mut self, start: Start) -> Option<Start> {
        match self.handlers.get_mut(start.key)? {
            HandlerEntry::Call(c) if c.state == HandlerCallState::Pending => {
                c.state = HandlerCallState::Running;
                Some(start)
            }
            HandlerEntry::Stream(s) if s.state == super::state::StreamState::Unanswered => {
                Some(start)
            }
            _ => None,
        }
    }

    /// A handler answered its single call: the answer is queued (dropped if the call ended
    /// meanwhile: cancelled, past its deadline, or the session closed).
    pub(super) fn answer(&mut self, key: Key, answer: Answer) {
        let Some(HandlerEntry::Call(c)) = self.handlers.get_mut(key) else {
            return;
        };
        if c.state != HandlerCallState::Running {
            return;
        }
        c.state = HandlerCallState::Done;
        let mut reply = Message::new(Op::Response);
        reply.mux_id = c.mux_id;
        reply.handler = c.handler;
        self.timers.disarm(&mut c.header.timer, Side::Handler, key);
        match answer {
            Ok(payload) => reply.payload = payload,
            Err(failure) => {
                reply.flags = Flags::PAYLOAD_IS_ERROR;
                reply.payload = Some(failure.encode());
            }
        }
        self.push_out(Side::Handler, key, reply);
        self.settle(Side::Handler, key);
    }

    /// Refuses an admitted call or stream (no handler under its id): an error answer.
    pub(super) fn refuse(&mut self, key: Key, kind: ErrorKind, text: &str) {
        match self.handlers.get(key) {
            Some(HandlerEntry::Call(_)) => self.answer(key, Err(ErrorPayload::new(kind, text))),
            Some(HandlerEntry::Stream(_)) => self.refuse_stream(key, kind, text),
            None => {}
        }
    }

    /// The caller gave up on a call served here (DisconnectServerMux).
    pub(super) fn cancel_handler_call(&mut self, key: Key) -> Result<(), Violation> {
        let Some(HandlerEntry::Call(c)) = self.handlers.get_mut(key) else {
            return Ok(());
        };
        let (state, batch) = (c.state, c.batch);
        c.state = HandlerCallState::Done;
        self.timers.disarm(&mut c.header.timer, Side::Handler, key);
        match state {
            HandlerCallState::Pending => self.early_cancel(batch)?,
            HandlerCallState::Running => self.stops.push(key),
            HandlerCallState::Done => {}
        }
        self.clear_out(Side::Handler, key);
        self.settle(Side::Handler, key);
        Ok(())
    }

    /// A call served here passed its deadline: its handler is stopped, nothing is sent.
    pub(super) fn expire_handler_call(&mut self, key: Key) {
        let Some(HandlerEntry::Call(c)) = self.handlers.get_mut(key) else {
            return;
        };
        if c.state == HandlerCallState::Running {
            self.stops.push(key);
        }
        c.state = HandlerCallState::Done;
        self.settle(Side::Handler, key);
    }

    /// Counts a call or stream the peer cancelled before its handler could start; a peer
    /// that does this beyond the limit within a ping interval is flooding ("rapid reset").
    pub(super) fn early_cancel(&mut self, admitted_in: u64) -> Result<(), Violation> {
        if admitted_in != self.batch {
            return Ok(());
        }
        self.early_cancels += 1;
        if self.early_cancels > self.config.max_early_cancels {
            return Err(Violation::OverLimit(format!(
                "the peer cancelled more than {} calls or streams before they started within one ping interval (rapid reset)",
                self.config.max_early_cancels
            )));
        }
        Ok(())
    }

    /// Ends an entry with the session's error. Nothing more goes out on a closed session:
    /// what it still had queued is dropped (a stream that had ended already may still have
    /// had messages queued).
    pub(super) fn close_entry(&mut self, side: Side, key: Key, err: &Error) {
        // A call or stream of ours nothing of which was written: the peer never saw it.
        let unsent = side == Side::Caller
            && self
                .callers
                .get(key)
                .is_some_and(|e| !e.header().out.transmitted);
        let err = &if unsent {
            err.clone().unsent()
        } else {
            err.clone()
        };
        let call = match side {
            Side::Caller => self
                .callers
                .get(key)
                .map(|e| matches!(e, CallerEntry::Call(_))),
            Side::Handler => self
                .handlers
                .get(key)
                .map(|e| matches!(e, HandlerEntry::Call(_))),
        };
        match (call, side) {
            (None, _) => return,
            (Some(true), Side::Caller) => self.fail_call(key, err.clone()),
            (Some(true), Side::Handler) => self.expire_handler_call(key),
            (Some(false), _) => self.end_stream(side, key, super::streams::Ending::lost(err)),
        }
        self.clear_out(side, key);
        self.settle(side, key);
    }
}
