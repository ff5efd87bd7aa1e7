//! The reader task: reads frames off the socket, decodes them and routes each message to
//! the call it belongs to (or to a new handler).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::serve_call::serve_request;
use super::session::Session;
use super::stream_dispatch::dispatch_stream;
use super::websocket::{FrameReader, Incoming};
use super::ConnInner;
use crate::codec::{decode_frame, Message, Op};
use crate::mux::{Arena, Assembler};

/// Runs until the socket ends or the peer breaks the protocol. Returns why.
pub(crate) async fn read_loop(
    conn: Arc<ConnInner>,
    session: Arc<Session>,
    mut socket: FrameReader,
) -> String {
    let max = conn.core.config.max_message_size;
    let mut assembler = Assembler::new(max, max.saturating_mul(4));
    let mut assembling = 0;
    let mut replies = Replies::new(session.outbox.checksum());
    loop {
        let frame = match socket.next().await {
            Ok(Incoming::Binary(frame)) => frame,
            Ok(Incoming::Ping(payload)) => {
                session.outbox.websocket_pong(payload);
                continue;
            }
            Ok(Incoming::Close) => return "peer closed the WebSocket".into(),
            Err(why) => return why,
        };
        session.saw_peer();
        let messages = match decode_frame(&frame, session.limits) {
            Ok(m) => m,
            Err(e) => return format!("protocol violation: {e}"),
        };
        conn.counters.frame_in(messages.len(), frame.len());
        // Answers produced while reading this frame go to the writer together, so they
        // leave in one merged frame and wake the writer once.
        replies.clear();
        for msg in messages {
            if msg.op == Op::DisconnectServerMux {
                assembler.forget(Op::Request, msg.mux_id);
                assembler.forget(Op::ConnectMux, msg.mux_id);
                assembler.forget(Op::MuxClientMsg, msg.mux_id);
            }
            let msg = match assembler.push(msg) {
                Ok(Some(whole)) => whole,
                Ok(None) => continue,
                Err(why) => return format!("protocol violation: {why}"),
            };
            if let Err(why) = dispatch(&conn, &session, msg, &mut replies) {
                return why;
            }
        }
        let held = assembler.held() as u64;
        if held != assembling {
            assembling = held;
            conn.counters
                .assembling_bytes
                .store(held, Ordering::Relaxed);
            if held == 0 {
                conn.idle.notify_waiters();
            }
        }
        if let Some(batch) = replies.take() {
            session.outbox.send_batch_soon(batch);
        }
    }
}

fn dispatch(
    conn: &Arc<ConnInner>,
    session: &Arc<Session>,
    msg: Message,
    replies: &mut Replies,
) -> Result<(), String> {
    match msg.op {
        Op::Request => serve_request(conn, session, msg, replies)?,
        Op::Response => {
            if let Some(reply) = session.calls.take_client(msg.mux_id) {
                let _ = reply.send(Ok(msg));
            }
        }
        Op::DisconnectServerMux => match session.calls.take_server(msg.mux_id) {
            Some(Some(handler)) => handler.abort(),
            Some(None) => {}
            None => dispatch_stream(conn, session, msg, replies)?,
        },
        Op::Ping if msg.mux_id != 0 => dispatch_stream(conn, session, msg, replies)?,
        Op::Pong if msg.mux_id != 0 => {}
        Op::Ping => {
            let mut pong = Message::new(Op::Pong);
            pong.payload = msg.payload;
            replies.push(&pong);
        }
        Op::Pong => record_rtt(conn, session, msg.payload),
        Op::ConnectMux
        | Op::AckMux
        | Op::MuxConnectError
        | Op::MuxClientMsg
        | Op::MuxServerMsg
        | Op::UnblockServerMux
        | Op::UnblockClientMux
        | Op::DisconnectClientMux => dispatch_stream(conn, session, msg, replies)?,
        Op::Connect | Op::ConnectResponse | Op::Merged => {
            return Err(format!(
                "protocol violation: unexpected {:?} on a live connection",
                msg.op
            ));
        }
    }
    Ok(())
}

/// Answers produced while reading one frame, encoded into slices of one arena (no
/// allocation per answer), handed to the writer together.
pub(crate) struct Replies {
    items: Vec<Bytes>,
    arena: Arena,
    checksum: bool,
}

impl Replies {
    fn new(checksum: bool) -> Self {
        Self {
            items: Vec::new(),
            arena: Arena::default(),
            checksum,
        }
    }

    /// Adds an answer.
    pub(crate) fn push(&mut self, msg: &Message) {
        self.items.push(self.arena.encode(msg, self.checksum));
    }

    fn clear(&mut self) {
        self.items.clear();
    }

    /// The answers so far, if any.
    fn take(&mut self) -> Option<Vec<Bytes>> {
        (!self.items.is_empty()).then(|| std::mem::take(&mut self.items))
    }
}

fn record_rtt(conn: &ConnInner, session: &Session, payload: Option<Bytes>) {
    let Some(sent) = payload
        .as_deref()
        .and_then(|p| <[u8; 8]>::try_from(p).ok())
        .map(u64::from_be_bytes)
    else {
        return;
    };
    let rtt = session.clock_ns().saturating_sub(sent).max(1);
    conn.counters.last_ping_rtt_ns.store(rtt, Ordering::Relaxed);
}
