//! What serving a single call (serve_call.rs) and serving a stream (serve_stream.rs)
//! share: where a request is joined, where answers go, the interceptors' say on a call
//! ([`admit`]), and what a handler's outcome tells the caller ([`outcome`]).

use std::any::Any;
use std::sync::Arc;

use super::ConnInner;
use crate::codec::{ErrorKind, ErrorPayload, HandlerId};
use crate::engine::{Answer, Key, Start};
use crate::error::RemoteError;
use crate::handler::{CallContext, HandlerCounters, Serving};
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
            Answers::Apply => session.with(|e| e.served(key).answer(answer)),
        }
    }
}

/// The context of the call `start` admitted and the guard that records how it ends, once
/// the interceptors let it in; `Err`: the refusal to send (counted as the call's end).
pub(crate) fn admit(
    conn: &ConnInner,
    start: &Start,
    subroute: Option<Arc<str>>,
    counters: Arc<HandlerCounters>,
) -> Result<(CallContext, Serving), ErrorPayload> {
    let ctx = context(conn, start, subroute);
    let mut serving = counters.start();
    match conn.core.interceptors.before(&ctx) {
        Ok(watch) => {
            serving.watch(watch);
            Ok((ctx, serving))
        }
        Err(refused) => {
            let refusal = ErrorPayload::new(refused.kind(), refused.message);
            serving.ended(Some(&refusal));
            Err(refusal)
        }
    }
}

/// How a handler ended: its value or its error, or the panic caught in it.
pub(crate) type Outcome<T> = Result<Result<T, RemoteError>, Box<dyn Any + Send>>;

/// What a handler's outcome tells its caller: its value, or the error to send (its own, or
/// its panic's text, which is logged).
pub(crate) fn outcome<T>(
    outcome: Outcome<T>,
    handler: HandlerId,
    mux_id: u64,
) -> Result<T, ErrorPayload> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(remote)) => Err(ErrorPayload::new(remote.kind(), remote.message)),
        Err(panic) => {
            let text = format!("handler panicked: {}", panic_message(&*panic));
            tracing::error!(%handler, mux_id, "{text}");
            Err(ErrorPayload::new(ErrorKind::Remote, text))
        }
    }
}

/// The context of the call `start` admitted, for the handler registered under `subroute`.
fn context(conn: &ConnInner, start: &Start, subroute: Option<Arc<str>>) -> CallContext {
    CallContext::incoming(
        conn.caller.clone(),
        start.handler,
        start.mux_id,
        start.deadline,
        subroute,
    )
}

/// The text of a handler's panic.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}
