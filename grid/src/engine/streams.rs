//! Streams: how one opens and is accepted, and how it ends, on either side. Sending and
//! receiving on an open stream are in `stream_send` and `stream_recv`.
//!
//! Every way a stream can end goes through [`Engine::end_stream`] with an [`Ending`] that
//! says what (if anything) to tell the peer, what each direction's user sees, and whether
//! the handler must be stopped. The endings are the table in PROTOCOL.md §6.

use std::task::{Context, Poll};

use super::state::{Role, Stream, StreamState};
use super::tuning::Tuning;
use super::violation::Violation;
use super::window::RecvWindow;
use super::{CallerEntry, Engine, HandlerEntry, Key, Side};
use crate::codec::{encode_error, Ack, ErrorKind, ErrorPayload, Flags, Message, Op};
use crate::error::Error;

/// What the peer is told when a stream ends here.
#[derive(Debug)]
enum Tell {
    /// Nothing: the peer ended it, or the session is gone.
    Nothing,
    /// This side's cancel op (DisconnectServerMux or DisconnectClientMux), with the reason
    /// it failed, if it did.
    Cancel(Option<ErrorPayload>),
    /// The handler side's end: an EOF data message, with the handler's error, if any
    /// (PROTOCOL.md §6.4, §6.7).
    Eof(Option<ErrorPayload>),
}

/// What becomes of messages: the ones queued to the peer, or the ones delivered here and
/// not yet read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Messages {
    /// They stay: queued ones go before the end, delivered ones are still read.
    Keep,
    /// They go.
    Drop,
}

/// Whether the handler's task is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    /// The end was not the handler's doing: its task is stopped.
    Stop,
    /// The handler returned: its task is ending anyway.
    Returned,
}

/// How a stream ends on this side.
#[derive(Debug)]
pub(super) struct Ending {
    tell: Tell,
    /// The messages queued to the peer.
    queued: Messages,
    /// What the receiving direction ends with, after what was delivered (unless dropped).
    recv: Result<(), Error>,
    /// The messages delivered and not yet read.
    unread: Messages,
    /// What sending fails with from now on.
    send: Error,
    handler: Handler,
}

impl Ending {
    /// This side's user gave up (caller: sender dropped unfinished, receiver dropped, cancel).
    pub(super) fn cancelled() -> Self {
        Self {
            tell: Tell::Cancel(None),
            queued: Messages::Drop,
            recv: Err(Error::Cancelled),
            unread: Messages::Drop,
            send: Error::Cancelled,
            handler: Handler::Stop,
        }
    }

    /// The stream's deadline passed. Both sides say so (the caller in its cancel, the
    /// handler side in its EOF): the two sides' timers fire at nearly the same time, and
    /// whichever notice arrives first, the other side's ends see `DeadlineExceeded`, not a
    /// plain cancel.
    pub(super) fn deadline(side: Side) -> Self {
        let notice = Some(ErrorPayload::new(
            ErrorKind::DeadlineExceeded,
            Error::DeadlineExceeded.to_string(),
        ));
        Self {
            tell: match side {
                Side::Caller => Tell::Cancel(notice),
                Side::Handler => Tell::Eof(notice),
            },
            queued: Messages::Drop,
            recv: Err(Error::DeadlineExceeded),
            unread: Messages::Drop,
            send: Error::DeadlineExceeded,
            handler: Handler::Stop,
        }
    }

    /// The session ended: nothing to tell anyone, everything fails with its error.
    pub(super) fn lost(err: &Error) -> Self {
        Self {
            tell: Tell::Nothing,
            queued: Messages::Drop,
            recv: Err(err.clone()),
            unread: Messages::Keep,
            send: err.clone(),
            handler: Handler::Stop,
        }
    }

    /// The peer ended the stream (caller: the handler's EOF, error, or disconnect; handler:
    /// the caller's cancel).
    fn by_peer(recv: Result<(), Error>, send: Error, unread: Messages) -> Self {
        Self {
            tell: Tell::Nothing,
            queued: Messages::Drop,
            recv,
            unread,
            send,
            handler: Handler::Stop,
        }
    }

    /// The peer broke the protocol on this stream only: it fails, the peer is told why.
    fn violation(why: String) -> Self {
        Self::failed(
            ErrorPayload::new(ErrorKind::Protocol, why.clone()),
            Error::Protocol(why),
        )
    }

    /// The stream fails here with `error` (after what was delivered); the peer is told
    /// `failure`.
    pub(super) fn failed(failure: ErrorPayload, error: Error) -> Self {
        Self {
            tell: Tell::Cancel(Some(failure)),
            queued: Messages::Drop,
            recv: Err(error.clone()),
            unread: Messages::Keep,
            send: error,
            handler: Handler::Stop,
        }
    }

    /// The handler returned (with its error, if any): its end goes after its messages.
    fn returned(failure: Option<ErrorPayload>) -> Self {
        Self {
            tell: Tell::Eof(failure),
            queued: Messages::Keep,
            recv: Err(Error::StreamEnded),
            unread: Messages::Drop,
            send: Error::StreamEnded,
            handler: Handler::Returned,
        }
    }

    /// The handler side refused the open; the refusal is already queued.
    fn refused() -> Self {
        Self {
            queued: Messages::Keep,
            ..Self::lost(&Error::Cancelled)
        }
    }

    /// The handler side cancels a stream whose caller stopped pinging it.
    pub(super) fn silent_caller() -> Self {
        Self {
            tell: Tell::Cancel(Some(ErrorPayload::new(
                ErrorKind::Cancelled,
                "the caller stopped pinging the stream",
            ))),
            ..Self::cancelled()
        }
    }
}

impl Engine {
    pub(super) fn stream_mut(&mut self, side: Side, key: Key) -> Option<&mut Stream> {
        match side {
            Side::Caller => match self.callers.get_mut(key)? {
                CallerEntry::Stream(s) => Some(s),
                CallerEntry::Call(_) => None,
            },
            Side::Handler => match self.handlers.get_mut(key)? {
                HandlerEntry::Stream(s) => Some(s),
                HandlerEntry::Call(_) => None,
            },
        }
    }

    /// Ends a stream (once: later endings find it closed and do nothing).
    pub(super) fn end_stream(&mut self, side: Side, key: Key, how: Ending) {
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        if s.state == StreamState::Closed {
            return;
        }
        let was = s.state;
        s.state = StreamState::Closed;
        if let (Some((opened @ None, _)), StreamState::Unanswered) = (s.opening(), was) {
            *opened = Some(Err(match &how.recv {
                Err(e) => e.clone(),
                Ok(()) => Error::StreamEnded,
            }));
        }
        // A direction that already ended cleanly keeps what it delivered: the sender
        // finished, nothing it sent may be lost.
        if how.unread == Messages::Drop && s.recv.end.is_none() {
            // Dropped unread: their credit no longer matters (the stream is over).
            let dropped = s.recv.drop_queue();
            s.recv.window.discard(dropped);
        }
        s.recv.end_with(how.recv);
        s.send.end.get_or_insert(how.send);
        let (mux_id, handler, seq, transmitted) =
            (s.mux_id, s.handler, s.send.seq, s.header.out.transmitted);
        let (peer_op, cancel_op, data_op) = (s.peer_data_op(), s.cancel_op(), s.data_op());
        let mut wakers = Vec::new();
        s.take_wakers(&mut wakers);
        self.wakes.append(&mut wakers);
        self.disarm_timer(side, key);
        // Its ping (or pong) and credit are not sent: nothing of the stream stays in the
        // control lanes.
        self.forget_control(side, key);
        self.assembler.forget(peer_op, mux_id);
        // Messages dropped unsent take their sequence numbers with them: an EOF goes one
        // past the last message the peer can receive, never leaving a gap.
        let dropped = match how.queued {
            Messages::Keep => 0,
            Messages::Drop => self.clear_out(side, key),
        };
        let seq = seq.wrapping_sub(u32::try_from(dropped).unwrap_or(u32::MAX));
        // A caller tells the handler side only if the open may have reached it.
        let reached = side == Side::Handler || transmitted;
        // A handler side whose ack never left cannot end the stream with EOF (the caller
        // would see a message before the ack): it refuses the open instead, with a reason.
        let unacked = side == Side::Handler && !transmitted && how.queued == Messages::Drop;
        // Unacknowledged, the end says why, if only that it was cancelled.
        let reason = |failure: Option<ErrorPayload>| match (failure, unacked) {
            (None, true) => Some(ErrorPayload::new(
                ErrorKind::Cancelled,
                Error::Cancelled.to_string(),
            )),
            (failure, _) => failure,
        };
        let notice = match how.tell {
            Tell::Nothing => None,
            _ if !reached => None,
            Tell::Eof(failure) if unacked => {
                Some((Message::new(Op::MuxConnectError), reason(failure)))
            }
            Tell::Eof(failure) => {
                let mut m = Message::new(data_op);
                m.flags = Flags::EOF;
                m.seq = seq.wrapping_add(1);
                Some((m, failure))
            }
            Tell::Cancel(failure) => Some((Message::new(cancel_op), reason(failure))),
        };
        if let Some((mut m, failure)) = notice {
            m.mux_id = mux_id;
            m.handler = handler;
            if let Some(failure) = failure {
                m.flags = m.flags | Flags::PAYLOAD_IS_ERROR;
                m.payload = Some(failure.encode());
            }
            self.push_out(side, key, m);
        }
        if side == Side::Handler && how.handler == Handler::Stop && was == StreamState::Open {
            self.stops.push(key);
        }
        self.settle(side, key);
    }

    /// A protocol violation confined to one stream: it fails, the connection carries on.
    pub(super) fn stream_violation(&mut self, side: Side, key: Key, why: String) {
        tracing::debug!(?side, %why, "stream failed");
        self.end_stream(side, key, Ending::violation(why));
    }

    // ---- opening (caller) -----------------------------------------------------------

    /// The open's answer: the capacities granted, or why the stream did not open. On
    /// success the opening future's hold becomes the ends' (a receiver, and a sender when
    /// the handler takes input).
    pub(super) fn poll_opened(
        &mut self,
        key: Key,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Ack, Error>> {
        let Some(s) = self.stream_mut(Side::Caller, key) else {
            return Poll::Ready(Err(Error::Cancelled));
        };
        let Some((opened, open_waker)) = s.opening() else {
            return Poll::Ready(Err(Error::Cancelled));
        };
        match opened.take() {
            Some(Ok(ack)) => {
                s.header.holders = 1 + u8::from(ack.in_window > 0);
                Poll::Ready(Ok(ack))
            }
            Some(Err(e)) => {
                s.header.holders = 0;
                self.settle(Side::Caller, key);
                Poll::Ready(Err(e))
            }
            None => {
                *open_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The opening future was dropped before it took the answer: the stream is cancelled.
    pub(super) fn drop_opening(&mut self, key: Key) {
        let Some(s) = self.stream_mut(Side::Caller, key) else {
            return;
        };
        s.header.holders = 0;
        if let Some((opened, _)) = s.opening() {
            *opened = None;
        }
        self.end_stream(Side::Caller, key, Ending::cancelled());
        self.settle(Side::Caller, key);
    }

    pub(super) fn on_ack(&mut self, key: Key, payload: Option<&[u8]>) {
        let Some(s) = self.stream_mut(Side::Caller, key) else {
            return;
        };
        if s.state != StreamState::Unanswered {
            let why = "AckMux for a stream already open".to_owned();
            return self.stream_violation(Side::Caller, key, why);
        }
        let ack = match Ack::decode(payload) {
            Ok(ack) => ack,
            Err(why) => return self.stream_violation(Side::Caller, key, why),
        };
        if let Err(why) = s.send.credit.grant(ack.in_window) {
            return self.stream_violation(Side::Caller, key, why);
        }
        s.state = StreamState::Open;
        if ack.in_window == 0 {
            s.send.end = Some(Error::StreamEnded);
        }
        let waker = s.opening().and_then(|(opened, open_waker)| {
            *opened = Some(Ok(ack));
            open_waker.take()
        });
        self.wake(waker);
    }

    // ---- accepting (handler) ----------------------------------------------------------

    /// The driver found the handler of an admitted stream: acknowledge it, granting the
    /// caller a window for its messages when the handler takes input (`input`: at most
    /// `max_window` bytes, the handler's cap). False if the stream ended meanwhile (then
    /// nothing is to be started).
    pub(super) fn accept_stream(&mut self, key: Key, input: bool, max_window: Option<u64>) -> bool {
        match self.stream_mut(Side::Handler, key) {
            Some(s) if s.state == StreamState::Unanswered => {}
            _ => return false,
        }
        let (in_window, tuning) = if input {
            self.open_window(max_window)
        } else {
            (0, Tuning::new(0, 0))
        };
        let Some(s) = self.stream_mut(Side::Handler, key) else {
            return false;
        };
        s.state = StreamState::Open;
        s.recv.window = RecvWindow::new(in_window);
        s.recv.tuning = tuning;
        if !input {
            s.recv.end = Some(Ok(()));
        }
        s.header.holders = 1 + u8::from(input);
        let (mux_id, handler) = (s.mux_id, s.handler);
        let mut ack = Message::new(Op::AckMux);
        ack.mux_id = mux_id;
        ack.handler = handler;
        ack.payload = Some(Ack { in_window }.encode());
        self.push_out(Side::Handler, key, ack);
        true
    }

    /// Opens a window for a stream direction this side receives: the configured start,
    /// within the stream's own cap (`max_window`), this side's largest and the budget (at
    /// least one byte: a message may always go); and what will size it as it runs.
    pub(super) fn open_window(&mut self, max_window: Option<u64>) -> (u64, Tuning) {
        let largest = self.config.max_stream_window;
        let cap = max_window.map_or(largest, |m| m.min(largest)).max(1);
        let start = self.config.stream_window.min(cap).max(1);
        (self.budget.open(start), Tuning::new(start, cap))
    }

    pub(super) fn refuse_stream(&mut self, key: Key, kind: ErrorKind, text: &str) {
        let Some(s) = self.stream_mut(Side::Handler, key) else {
            return;
        };
        if s.state != StreamState::Unanswered {
            return;
        }
        let mut m = Message::new(Op::MuxConnectError);
        m.mux_id = s.mux_id;
        m.handler = s.handler;
        m.flags = Flags::PAYLOAD_IS_ERROR;
        m.payload = Some(encode_error(kind, text));
        self.push_out(Side::Handler, key, m);
        self.end_stream(Side::Handler, key, Ending::refused());
    }

    /// The handler returned: its end (with its error, if any) goes after its messages.
    pub(super) fn stream_returned(&mut self, key: Key, failure: Option<ErrorPayload>) {
        self.end_stream(Side::Handler, key, Ending::returned(failure));
    }

    /// The caller ended or abandoned its side (cancel, or a silent caller).
    pub(super) fn cancel_handler_stream(&mut self, key: Key, how: Ending) -> Result<(), Violation> {
        let Some(s) = self.stream_mut(Side::Handler, key) else {
            return Ok(());
        };
        if let (StreamState::Unanswered, Role::Handler { batch, .. }) = (s.state, &s.role) {
            let batch = *batch;
            self.early_cancel(batch)?;
        }
        self.end_stream(Side::Handler, key, how);
        // A stream that had ended here already may still wait to send its last message
        // (its EOF, or its refusal): the caller, gone, needs none, and the stream stops
        // counting against the limits now (PROTOCOL.md §7), as a single call does.
        self.clear_out(Side::Handler, key);
        self.settle(Side::Handler, key);
        Ok(())
    }

    /// The caller cancelled the stream (`why`: [`Error::Cancelled`], or the reason it
    /// failed the stream).
    pub(super) fn cancelled_by_caller(why: Error) -> Ending {
        Ending::by_peer(Err(why.clone()), why, Messages::Drop)
    }

    /// The handler side ended the stream (EOF, error, or disconnect), as the caller sees it.
    pub(super) fn ended_by_handler(result: Result<(), Error>) -> Ending {
        let send = match &result {
            Ok(()) => Error::StreamEnded,
            Err(e) => e.clone(),
        };
        Ending::by_peer(result, send, Messages::Keep)
    }
}
