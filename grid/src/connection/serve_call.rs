//! Running a handler for a single call the remote made, and sending its answer.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

use super::session::Session;
use super::ConnInner;
use crate::codec::{encode_error, ErrorKind, Flags, Message, Op};
use crate::handler::{CallContext, CURRENT_DEADLINE};

/// Starts the handler for a request. Never fails the connection: a bad call gets an error
/// answer. (Returns `Err` only for a protocol violation.)
pub(crate) fn serve_request(
    conn: &Arc<ConnInner>,
    session: &Arc<Session>,
    msg: Message,
) -> Result<(), String> {
    let core = &conn.core;
    let Some(entry) = core.handlers.single(msg.handler, msg.subroute) else {
        session.send_soon(error_reply(
            &msg,
            ErrorKind::UnknownHandler,
            "no such handler",
        ));
        return Ok(());
    };
    if !session.calls.reserve_server(msg.mux_id) {
        return Err(format!(
            "protocol violation: mux id {} reused while in flight",
            msg.mux_id
        ));
    }
    let deadline = (msg.deadline_ms > 0)
        .then(|| Instant::now() + Duration::from_millis(u64::from(msg.deadline_ms)));
    let ctx = CallContext {
        caller: conn.remote.clone(),
        deadline,
        subroute: entry.subroute.clone(),
        handler: msg.handler,
        mux_id: msg.mux_id,
    };
    let mux_id = msg.mux_id;
    let handler = msg.handler;
    let max = core.config.max_message_size;
    let s = session.clone();
    let task = core.tasks.spawn(async move {
        let call = AssertUnwindSafe((entry.call)(ctx, msg.payload)).catch_unwind();
        let call = CURRENT_DEADLINE.scope(deadline, call);
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
        let mut reply = Message::new(Op::Response);
        reply.mux_id = mux_id;
        reply.handler = handler;
        match outcome {
            Ok(Ok(payload)) if payload.as_ref().is_some_and(|p| p.len() > max) => {
                let size = payload.map_or(0, |p| p.len());
                let text = format!(
                    "response of {size} bytes exceeds the maximum message size of {max} bytes"
                );
                tracing::warn!(%handler, mux_id, "{text}");
                reply = error_reply(&reply, ErrorKind::Remote, &text);
            }
            Ok(Ok(payload)) => reply.payload = payload,
            Ok(Err(remote)) => reply = error_reply(&reply, ErrorKind::Remote, &remote.message),
            Err(panic) => {
                let text = format!("handler panicked: {}", panic_message(&*panic));
                tracing::error!(%handler, mux_id, "{text}");
                reply = error_reply(&reply, ErrorKind::Remote, &text);
            }
        }
        let _ = s.send(&reply).await;
    });
    session.calls.attach_server(mux_id, task.abort_handle());
    Ok(())
}

fn error_reply(to: &Message, kind: ErrorKind, text: &str) -> Message {
    let mut reply = Message::new(Op::Response);
    reply.mux_id = to.mux_id;
    reply.handler = to.handler;
    reply.flags = Flags::PAYLOAD_IS_ERROR;
    reply.payload = Some(encode_error(kind, text));
    reply
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}
