//! Running the handler of a single call the remote made, and giving its answer to the
//! engine.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;

use super::serve_shared::{admit, outcome, Answers, Outcome, JOIN_HERE};
use super::ConnInner;
use crate::codec::{ErrorKind, ErrorPayload, HandlerId};
use crate::engine::{Answer, Start};
use crate::handler::{FireOnDrop, CURRENT_CALL};
use crate::session::Session;

type CallOutcome = Outcome<Option<Bytes>>;

/// Runs the handler of `start`: inline when it answers without waiting (most do), else in
/// a task of its own.
pub(crate) fn start(
    conn: &Arc<ConnInner>,
    session: &Arc<Session>,
    start: Start,
    answers: &mut Answers<'_>,
) {
    let core = &conn.core;
    let key = start.key;
    let Some(entry) = core.handlers.single(start.handler, start.subroute) else {
        let refusal = Err(ErrorPayload::new(
            ErrorKind::UnknownHandler,
            "no such handler",
        ));
        answers.give(session, key, refusal);
        return;
    };
    let (mux_id, handler) = (start.mux_id, start.handler);
    let (ctx, mut serving) = match admit(conn, &start, entry.subroute.clone(), entry.counters) {
        Ok(admitted) => admitted,
        Err(refusal) => return answers.give(session, key, Err(refusal)),
    };
    let cancel = ctx.cancel.clone();
    let max = session.send_limit;
    let span =
        tracing::debug_span!("grid.handle", peer = %conn.remote, handler = %handler, mux = mux_id);
    // A large request (one that came in chunks) is joined into one buffer, a copy of up to
    // the maximum message size, in the handler's task, not here: this runs on the reader,
    // and every call and stream behind it on the connection would wait for the copy.
    let deferred = start.payload.len() > JOIN_HERE;
    // The handler's synchronous part runs here: a panic in it must not unwind the reader.
    let current = ctx.clone();
    let started = catch_unwind(AssertUnwindSafe(|| {
        let _entered = (!span.is_disabled()).then(|| span.enter());
        if deferred {
            let (call, payload) = (entry.call.clone(), start.payload);
            let later: crate::handler::SingleFuture =
                Box::pin(async move { call(ctx, payload.into_owned()).await });
            return later;
        }
        let payload = start.payload.into_owned();
        CURRENT_CALL.sync_scope(current.clone(), || (entry.call)(ctx, payload))
    }));
    let mut call: Pin<Box<dyn Future<Output = CallOutcome> + Send>> = match started {
        Ok(fut) if span.is_disabled() => {
            Box::pin(CURRENT_CALL.scope(current, AssertUnwindSafe(fut).catch_unwind()))
        }
        Ok(fut) => Box::pin(tracing::Instrument::instrument(
            CURRENT_CALL.scope(current, AssertUnwindSafe(fut).catch_unwind()),
            span,
        )),
        Err(panic) => {
            let reply = answer(mux_id, handler, Err(panic), max);
            serving.ended(reply.as_ref().err());
            answers.give(session, key, reply);
            cancel.fire();
            return;
        }
    };
    // Fast path: most handlers answer without waiting; answer those here, without a task.
    if let Some(outcome) = (!deferred).then(|| (&mut call).now_or_never()).flatten() {
        let reply = answer(mux_id, handler, outcome, max);
        serving.ended(reply.as_ref().err());
        answers.give(session, key, reply);
        cancel.fire();
        return;
    }
    let s = session.clone();
    let fire = cancel.clone();
    let task = core.tasks.spawn(async move {
        // The call is over when this task ends, however it ends.
        let _over = FireOnDrop::new(fire);
        let outcome = call.await;
        let reply = answer(mux_id, handler, outcome, max);
        serving.ended(reply.as_ref().err());
        s.with_finished(Some(key), |e| e.served(key).answer(reply));
    });
    session.attach(key, task.abort_handle());
}

/// The answer for a handler's outcome: its payload, its error, or its panic; a payload
/// over the agreed maximum is not sent, and the caller is told why.
fn answer(mux_id: u64, handler: HandlerId, result: CallOutcome, max: usize) -> Answer {
    match outcome(result, handler, mux_id) {
        Ok(Some(payload)) if payload.len() > max => {
            let failure = ErrorPayload::too_large(payload.len() as u64, max as u64);
            tracing::warn!(%handler, mux_id, "the answer was not sent: {}", failure.message);
            Err(failure)
        }
        other => other,
    }
}
