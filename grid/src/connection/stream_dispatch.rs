//! Routing incoming stream messages (read by the reader task) to the session's stream
//! tables, and the per-stream liveness checks the session runs on a timer.

use std::sync::Arc;

use tokio::time::Instant;

use super::reader::Replies;
use super::serve_stream::serve_open;
use super::session::Session;
use super::ConnInner;
use crate::codec::{encode_error, ErrorKind, Flags, Message, Op};
use crate::mux::payload_error;

/// Handles one stream message; answers go into `replies`. `Err` is a connection-level
/// protocol violation.
pub(crate) fn dispatch_stream(
    conn: &Arc<ConnInner>,
    session: &Arc<Session>,
    msg: Message,
    replies: &mut Replies,
) -> Result<(), String> {
    let streams = &session.streams;
    let answer = match msg.op {
        Op::ConnectMux => return serve_open(conn, session, msg, replies),
        Op::AckMux => streams.on_ack(&msg),
        Op::MuxConnectError | Op::DisconnectClientMux => {
            let err = if msg.flags.contains(Flags::PAYLOAD_IS_ERROR) {
                payload_error(&msg)
            } else {
                crate::error::Error::Cancelled
            };
            streams.on_remote_end(msg.mux_id, err);
            None
        }
        Op::MuxServerMsg => streams.on_handler_msg(msg),
        Op::MuxClientMsg => streams.on_caller_msg(&msg, Instant::now()),
        Op::UnblockClientMux => streams.on_caller_credit(&msg),
        Op::UnblockServerMux => streams.on_handler_credit(&msg, Instant::now()),
        Op::DisconnectServerMux => {
            streams.on_caller_cancel(msg.mux_id);
            None
        }
        Op::Ping => {
            // A ping for one stream: answer if it runs here, else tell the caller it is gone.
            let mut m = Message::new(Op::Pong);
            m.mux_id = msg.mux_id;
            if !streams.on_caller_ping(msg.mux_id, Instant::now()) {
                m.op = Op::DisconnectClientMux;
                m.flags = Flags::PAYLOAD_IS_ERROR;
                m.payload = Some(encode_error(
                    ErrorKind::Cancelled,
                    "the stream is not running on the remote",
                ));
            }
            Some(m)
        }
        Op::Pong => None,
        _ => None,
    };
    if let Some(m) = answer {
        replies.push(&m);
    }
    Ok(())
}

/// Pings every stream this side opened, and cancels the streams served here whose caller
/// has been silent for three intervals.
pub(crate) fn check_streams(session: &Session, interval: std::time::Duration) {
    let now = Instant::now();
    for mux_id in session.streams.caller_ids() {
        let mut ping = Message::new(Op::Ping);
        ping.mux_id = mux_id;
        session.outbox.send_soon(ping);
    }
    if let Some(since) = now.checked_sub(interval * 3) {
        for mux_id in session.streams.cancel_silent(since) {
            tracing::debug!(mux_id, "stream cancelled: its caller stopped pinging");
            let mut gone = Message::new(Op::DisconnectClientMux);
            gone.mux_id = mux_id;
            gone.flags = Flags::PAYLOAD_IS_ERROR;
            gone.payload = Some(encode_error(
                ErrorKind::Cancelled,
                "the caller stopped pinging the stream",
            ));
            session.outbox.send_soon(gone);
        }
    }
}
