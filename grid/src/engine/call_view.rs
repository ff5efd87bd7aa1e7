//! Single calls and served entries, borrowed from the engine: what the connection's tasks
//! do to one of them names it once, when they borrow it ([`Engine::call`] for a call made
//! here, [`Engine::served`] for a call or stream served here), as [`Engine::stream`] does
//! for a stream's ends. The engine's own keyed methods stay inside the engine.

use std::task::{Context, Poll};

use super::assembly::Payload;
use super::calls::Answer;
use super::{Engine, Key};
use crate::codec::{ErrorKind, ErrorPayload};
use crate::error::Error;

/// A single call this side made, borrowed with its engine.
pub(crate) struct CallView<'a> {
    engine: &'a mut Engine,
    key: Key,
}

/// A call or stream served here, borrowed with its engine: what its handler's driver does.
pub(crate) struct ServedView<'a> {
    engine: &'a mut Engine,
    key: Key,
}

impl Engine {
    /// The view of the single call `key` made here.
    pub(crate) fn call(&mut self, key: Key) -> CallView<'_> {
        CallView { engine: self, key }
    }

    /// The view of the call or stream `key` served here.
    pub(crate) fn served(&mut self, key: Key) -> ServedView<'_> {
        ServedView { engine: self, key }
    }
}

impl CallView<'_> {
    /// The answer, once there is one (the response's payload, or why there is none).
    pub(crate) fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<Result<Payload, Error>> {
        self.engine.poll_call(self.key, cx)
    }

    /// The user dropped the call's future: if it was still waiting, the handler side is
    /// told to stop (unless the request never left, then it is simply not sent).
    pub(crate) fn abandon(self) {
        self.engine.drop_call(self.key);
    }
}

impl ServedView<'_> {
    /// Whether its handler is running (started, and its call not ended): the driver keeps
    /// the handler's task only then.
    pub(crate) fn running(&self) -> bool {
        self.engine.handler_running(self.key)
    }

    /// Its handler answered a single call: the answer is queued (dropped if the call ended
    /// meanwhile: cancelled, past its deadline, or the session closed).
    pub(crate) fn answer(self, answer: Answer) {
        self.engine.answer(self.key, answer);
    }

    /// Refuses it (no handler under its id, or an interceptor said no): an error answer.
    pub(crate) fn refuse(self, kind: ErrorKind, text: &str) {
        self.engine.refuse(self.key, kind, text);
    }

    /// The driver found the handler of a stream: acknowledge it, granting the caller a
    /// window for its messages when the handler takes `input` (at most `max_window` bytes,
    /// the handler's cap). False if the stream ended meanwhile (nothing is to be started).
    pub(crate) fn accept_stream(self, input: bool, max_window: Option<u64>) -> bool {
        self.engine.accept_stream(self.key, input, max_window)
    }

    /// A stream's handler returned: its end (with its error, if any) goes after its
    /// messages.
    pub(crate) fn returned(self, failure: Option<ErrorPayload>) {
        self.engine.stream_returned(self.key, failure);
    }
}
