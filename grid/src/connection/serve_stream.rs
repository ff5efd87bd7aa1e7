//! Serving a stream the remote opened: accept it with the handler's window, run the
//! handler in a task, and end the stream with the handler's result.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use futures::future::Either;
use futures::FutureExt;

use super::serve_shared::{admit, outcome, JOIN_HERE};
use super::ConnInner;
use crate::codec::ErrorKind;
use crate::engine::{Side, Start};
use crate::handler::{FireOnDrop, StreamCall, CURRENT_CALL};
use crate::send_stage::Staging;
use crate::session::Session;
use crate::stream_ends::{StreamReceiver, StreamSender};

/// Starts the handler of the stream `start` admitted, or refuses the stream.
pub(crate) fn start(conn: &Arc<ConnInner>, session: &Arc<Session>, start: Start) {
    let core = &conn.core;
    let key = start.key;
    let Some(entry) = core.handlers.stream(start.handler, start.subroute) else {
        session.with(|e| {
            e.served(key)
                .refuse(ErrorKind::UnknownHandler, "no such stream handler")
        });
        return;
    };
    let (ctx, mut serving) = match admit(conn, &start, entry.subroute.clone(), entry.counters) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            return session.with(|e| e.served(key).refuse(refusal.kind, &refusal.message))
        }
    };
    let (input, max_window) = (entry.handler.input, entry.handler.max_window);
    if !session.with(|e| e.served(key).accept_stream(input, max_window)) {
        return; // cancelled meanwhile
    }
    let (mux_id, handler) = (start.mux_id, start.handler);
    let cancel = ctx.cancel.clone();
    let input = input.then(|| StreamReceiver::new(session.clone(), Side::Handler, key));
    let output = StreamSender::new(session.clone(), Side::Handler, key);
    let current = ctx.clone();
    let span =
        tracing::debug_span!("grid.stream", peer = %conn.remote, handler = %handler, mux = mux_id);
    // The handler function runs here and returns its future, so the task holds only that
    // future (boxed) and what ends the stream: not the call's parts beside it (an idle
    // stream's task is most of what the stream costs). A panic in the function's
    // synchronous part must not unwind the reader. A large opening payload (one that came
    // in chunks) is joined in the task instead, as a single call's request is: this runs
    // on the reader, and everything behind it on the connection would wait for the copy.
    let payload = start.payload;
    let started = catch_unwind(AssertUnwindSafe(|| {
        let _entered = (!span.is_disabled()).then(|| span.enter());
        if payload.len() > JOIN_HERE {
            let function = entry.handler.call.clone();
            let later: crate::handler::StreamFuture = Box::pin(async move {
                let payload = payload.into_owned();
                function(StreamCall {
                    ctx,
                    payload,
                    input,
                    output,
                })
                .await
            });
            return later;
        }
        let call = StreamCall {
            ctx,
            payload: payload.into_owned(),
            input,
            output,
        };
        CURRENT_CALL.sync_scope(current.clone(), || (entry.handler.call)(call))
    }));
    let body = match started {
        // Its output stages small messages while it runs (`send_stage`).
        Ok(fut) => Either::Left(CURRENT_CALL.scope(
            current,
            Staging::new(AssertUnwindSafe(fut).catch_unwind(), session.clone(), key),
        )),
        Err(panic) => Either::Right(std::future::ready(Err(panic))),
    };
    let s = session.clone();
    // The call is over when this task ends, however it ends (dropped with the closure if
    // the task is aborted first).
    let over = FireOnDrop::new(cancel);
    // `map`, not an `async` block awaiting `body`, which would hold it twice.
    let task = core.tasks.spawn(tracing::Instrument::instrument(
        body.map(move |result| {
            let _over = over;
            let failure = outcome(result, handler, mux_id).err();
            serving.ended(failure.as_ref());
            s.with_finished(Some(key), |e| e.served(key).returned(failure));
        }),
        span,
    ));
    session.attach(key, task.abort_handle());
}
