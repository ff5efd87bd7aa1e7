//! Running a handler for a single call the remote made, and sending its answer.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;

use futures::FutureExt;

use super::reader::Replies;
use super::session::Session;
use super::ConnInner;
use crate::mux::CHUNK;
use bytes::Bytes;

use crate::codec::{ErrorKind, HandlerId, Message, Op};
use crate::error::RemoteError;
use crate::handler::{CallContext, FireOnDrop, CURRENT_CALL};

/// Starts the handler for a request; an answer available at once goes into `replies`. Never fails the connection: a bad call gets an error
/// answer. (Returns `Err` only for a protocol violation.)
pub(crate) fn serve_request(
    conn: &Arc<ConnInner>,
    session: &Arc<Session>,
    msg: Message,
    replies: &mut Replies,
) -> Result<(), String> {
    let core = &conn.core;
    let Some(entry) = core.handlers.single(msg.handler, msg.subroute) else {
        replies.push(&error_reply(
            &msg,
            ErrorKind::UnknownHandler,
            "no such handler",
        ));
        return Ok(());
    };
    let ctx = CallContext::incoming(conn.remote.clone(), &msg, entry.subroute.clone());
    let deadline = ctx.deadline;
    let cancel = ctx.cancel.clone();
    let (mux_id, handler) = (msg.mux_id, msg.handler);
    let max = core.config.max_message_size;
    let span =
        tracing::debug_span!("grid.handle", peer = %conn.remote, handler = %handler, mux = mux_id);
    // The handler's synchronous part runs here: a panic in it must not unwind the reader.
    let current = ctx.clone();
    let started = catch_unwind(AssertUnwindSafe(|| {
        let _entered = (!span.is_disabled()).then(|| span.enter());
        CURRENT_CALL.sync_scope(current.clone(), || (entry.call)(ctx, msg.payload))
    }));
    let mut call: Pin<Box<dyn Future<Output = Outcome> + Send>> = match started {
        Ok(fut) if span.is_disabled() => {
            Box::pin(CURRENT_CALL.scope(current, AssertUnwindSafe(fut).catch_unwind()))
        }
        Ok(fut) => Box::pin(tracing::Instrument::instrument(
            CURRENT_CALL.scope(current, AssertUnwindSafe(fut).catch_unwind()),
            span,
        )),
        Err(panic) => {
            replies.push(&answer(mux_id, handler, Err(panic), max));
            return Ok(());
        }
    };
    // Fast path: most handlers answer without waiting; answer those here, without a task.
    if let Some(outcome) = (&mut call).now_or_never() {
        let mut reply = answer(mux_id, handler, outcome, max);
        if reply.payload.as_ref().is_some_and(|p| p.len() > CHUNK) {
            // A large answer goes out in chunks, which may wait for the bulk lane.
            let s = session.clone();
            let payload = reply.payload.take();
            core.tasks
                .spawn(async move { s.outbox.send_payload(reply, payload, false).await });
        } else {
            replies.push(&reply);
        }
        return Ok(());
    }
    if !session.calls.reserve_server(mux_id) {
        return Err(format!(
            "protocol violation: mux id {mux_id} reused while in flight"
        ));
    }
    let s = session.clone();
    let task = core.tasks.spawn(async move {
        // Fires the call's cancellation if this task is aborted or misses its deadline.
        let on_abort = FireOnDrop::new(cancel);
        let outcome = match deadline {
            Some(d) => tokio::time::timeout_at(d, call).await.ok(),
            None => Some(call.await),
        };
        if s.calls.take_server(mux_id).is_none() {
            return; // cancelled by the caller or the connection closed meanwhile
        }
        let Some(outcome) = outcome else {
            tracing::debug!(%handler, mux_id, "handler missed its deadline; result dropped");
            return;
        };
        on_abort.disarm();
        let mut reply = answer(mux_id, handler, outcome, max);
        let payload = reply.payload.take();
        let _ = s.outbox.send_payload(reply, payload, false).await;
    });
    session.calls.attach_server(mux_id, task.abort_handle());
    Ok(())
}

type Outcome = Result<Result<Option<Bytes>, RemoteError>, Box<dyn Any + Send>>;

/// The Response for a handler's outcome: its answer, its error, or its panic.
fn answer(mux_id: u64, handler: HandlerId, outcome: Outcome, max: usize) -> Message {
    let mut reply = Message::new(Op::Response);
    reply.mux_id = mux_id;
    reply.handler = handler;
    match outcome {
        Ok(Ok(Some(payload))) if payload.len() > max => {
            let text = format!(
                "response of {} bytes exceeds the maximum message size of {max} bytes",
                payload.len()
            );
            tracing::warn!(%handler, mux_id, "{text}");
            error_reply(&reply, ErrorKind::Remote, &text)
        }
        Ok(Ok(payload)) => {
            reply.payload = payload;
            reply
        }
        Ok(Err(remote)) => error_reply(&reply, remote.kind(), &remote.message),
        Err(panic) => {
            let text = format!("handler panicked: {}", panic_message(&*panic));
            tracing::error!(%handler, mux_id, "{text}");
            error_reply(&reply, ErrorKind::Remote, &text)
        }
    }
}

fn error_reply(to: &Message, kind: ErrorKind, text: &str) -> Message {
    Message::error_to(Op::Response, to, kind, text)
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}
