//! Serving a stream the remote opened: register it, acknowledge it, run the handler, and
//! end the stream with the handler's result.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::reader::Replies;
use super::session::Session;
use super::ConnInner;
use crate::codec::{encode_error, ErrorKind, Flags, Message, Op};
use crate::error::Error;
use crate::handler::{CallContext, FireOnDrop, StreamCall, CURRENT_CALL};
use crate::mux::{Ack, Credit, HandlerStream, Inbound, StreamReceiver, StreamSender, Unread};

/// Opens the stream a ConnectMux asks for, or queues its refusal in `replies`.
pub(crate) fn serve_open(
    conn: &Arc<ConnInner>,
    session: &Arc<Session>,
    msg: Message,
    replies: &mut Replies,
) -> Result<(), String> {
    let core = &conn.core;
    let Some(entry) = core.handlers.stream(msg.handler, msg.subroute) else {
        let refusal = Message::error_to(
            Op::MuxConnectError,
            &msg,
            ErrorKind::UnknownHandler,
            "no such stream handler",
        );
        replies.push(&refusal);
        return Ok(());
    };
    let (mux_id, handler) = (msg.mux_id, msg.handler);
    let (in_capacity, out_capacity) = (entry.handler.in_capacity, entry.handler.out_capacity);
    let ctx = CallContext::incoming(conn.remote.clone(), &msg, entry.subroute.clone());
    let (deadline, cancel) = (ctx.deadline, ctx.cancel.clone());
    let output_credit = Credit::new(out_capacity);
    let (input, input_end) = if in_capacity > 0 {
        let (tx, rx) = mpsc::unbounded_channel();
        let unread = Arc::new(Unread::default());
        let receiver = StreamReceiver {
            items: rx,
            unread: unread.clone(),
            outbox: session.outbox.clone(),
            mux_id,
            unblock: Op::UnblockClientMux,
            batch: (in_capacity / 2).max(1),
            owed: 0,
            deadline: None,
            cancel_on_drop: None,
            done: false,
        };
        (Some(Inbound::new(tx, unread, in_capacity)), Some(receiver))
    } else {
        (None, None)
    };
    let stream = HandlerStream {
        input,
        output: output_credit.clone(),
        out_capacity,
        task: None,
        cancel: cancel.clone(),
        last_heard: Instant::now(),
    };
    if !session.streams.open_handler(mux_id, stream) {
        return Err(format!(
            "protocol violation: stream mux id {mux_id} reused while open"
        ));
    }
    let seq = Arc::new(AtomicU32::new(0));
    let output = StreamSender {
        outbox: session.outbox.clone(),
        credit: output_credit,
        mux_id,
        handler,
        op: Op::MuxServerMsg,
        seq: seq.clone(),
        eof_on_drop: false,
        held: 0,
        max_message: core.config.max_message_size,
    };
    let current = ctx.clone();
    let call = StreamCall {
        ctx,
        payload: msg.payload,
        input: input_end,
        output,
    };
    let s = session.clone();
    let run = entry.handler.call.clone();
    let span =
        tracing::debug_span!("grid.stream", peer = %conn.remote, handler = %handler, mux = mux_id);
    let task = core.tasks.spawn(tracing::Instrument::instrument(
        async move {
            let on_abort = FireOnDrop::new(cancel);
            let mut ack = Message::new(Op::AckMux);
            ack.mux_id = mux_id;
            ack.handler = handler;
            ack.payload = Some(
                Ack {
                    in_capacity,
                    out_capacity,
                }
                .encode(),
            );
            // The ack goes out before anything the handler sends.
            if s.outbox.send(&ack).await.is_err() {
                return;
            }
            let body = AssertUnwindSafe(async move { run(call).await }).catch_unwind();
            let body = CURRENT_CALL.scope(current, body);
            let outcome = match deadline {
                Some(d) => tokio::time::timeout_at(d, body).await.ok(),
                None => Some(body.await),
            };
            let timed_out = outcome.is_none();
            if !s.streams.handler_done(mux_id) {
                return; // cancelled meanwhile; the caller knows
            }
            let mut end = Message::new(Op::MuxServerMsg);
            end.mux_id = mux_id;
            end.handler = handler;
            end.flags = Flags::EOF;
            end.seq = seq.fetch_add(1, Ordering::Relaxed) + 1;
            let failure = match outcome {
                Some(Ok(Ok(()))) => None,
                Some(Ok(Err(remote))) => Some((remote.kind(), remote.message)),
                Some(Err(panic)) => {
                    let text = format!(
                        "stream handler panicked: {}",
                        super::serve_call::panic_message(&*panic)
                    );
                    tracing::error!(%handler, mux_id, "{text}");
                    Some((ErrorKind::Remote, text))
                }
                None => Some((
                    ErrorKind::DeadlineExceeded,
                    Error::DeadlineExceeded.to_string(),
                )),
            };
            if let Some((kind, text)) = failure {
                end.flags = Flags::EOF | Flags::PAYLOAD_IS_ERROR;
                end.payload = Some(encode_error(kind, &text));
            }
            if !timed_out {
                on_abort.disarm();
            }
            let _ = s.outbox.send(&end).await;
        },
        span,
    ));
    session.streams.attach_task(mux_id, task.abort_handle());
    Ok(())
}
