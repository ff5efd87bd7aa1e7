//! What serving a single call (serve_call.rs) and serving a stream (serve_stream.rs)
//! share: where a request is joined, where answers go, the handler's context, a panic's
//! text.

use std::any::Any;
use std::sync::Arc;

use super::ConnInner;
use crate::engine::{Answer, Key, Start};
use crate::handler::CallContext;
use crate::session::Session;

/// Requests (and streams' opening payloads) up to this size are handed to their handler on
/// the reader's task; larger ones (chunked, 64 KiB and up) are joined in the handler's own
/// task.
pub(super) const JOIN_HERE: usize = 64 * 1024;

/// Where the answers of handlers that finish at once go: collected by the reader, which
/// hands them to the engine together with its next batch of messages, or applied at once.
pub(crate) enum Answers<'a> {
    Collect(&'a mut Vec<(Key, Answer)>),
    Apply,
}

impl Answers<'_> {
    pub(crate) fn give(&mut self, session: &Session, key: Key, answer: Answer) {
        match self {
            Answers::Collect(v) => v.push((key, answer)),
            Answers::Apply => session.with(|e| e.answer(key, answer)),
        }
    }
}

/// The context of the call `start` admitted, for the handler registered under `subroute`.
pub(crate) fn context(conn: &ConnInner, start: &Start, subroute: Option<Arc<str>>) -> CallContext {
    CallContext::incoming(
        conn.remote.clone(),
        start.handler,
        start.mux_id,
        start.deadline,
        subroute,
    )
}

/// The text of a handler's panic.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}
