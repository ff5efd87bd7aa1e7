//! The writer task: takes what the engine has to send and writes it on the socket, each
//! batch of small messages as one (merged) frame built in one buffer (streams' messages
//! were encoded as they were queued; the rest are encoded here, outside the lock), each
//! chunk of a large payload as a frame of its own.

use std::future::poll_fn;
use std::sync::Arc;

use tokio::time::Instant;

use super::lost::Lost;
use super::serve::start_handlers;
use super::serve_shared::Answers;
use super::websocket::{FrameWriter, HEADROOM};
use super::ConnInner;
use crate::engine::Transmit;
use crate::session::Session;

/// Runs until the socket fails or the session closes (then it closes the socket with the
/// session's close frame). Returns why.
pub(crate) async fn write_loop(
    conn: Arc<ConnInner>,
    session: Arc<Session>,
    mut socket: FrameWriter,
) -> Lost {
    let checksum = session.checksum;
    let counters = conn.counters.clone();
    let mut tx = Transmit::new(HEADROOM);
    let mut starts = Vec::new();
    // Whether the last frame merged several messages: traffic is heavy.
    let mut busy = false;
    loop {
        if busy && !session.with(|e| e.frame_full()) {
            // Under load, let the tasks that are about to queue more run first so they share
            // the next frame: fewer, larger writes (`yield_now` waits until this worker has
            // run everything else; measured: 256 callers 7% slower with `tasks::requeue`).
            // Idle connections skip this, and so does a writer that already has a full
            // frame to write (busy stream senders would otherwise all fill their windows
            // before it ran: 100 streams at 0.4x instead of 0.7x a raw WebSocket).
            tokio::task::yield_now().await;
        }
        let taken = poll_fn(|cx| {
            let now = Instant::now().into_std();
            session.with(|e| {
                let r = e.poll_transmit(now, &mut tx, cx);
                if r.is_ready() && e.has_deferred_starts() {
                    e.take_starts(&mut starts);
                }
                r
            })
        })
        .await;
        if let Err(e) = taken {
            let _ = socket.close(&session.goodbye()).await;
            return Lost::Failed(format!("session closed: {e}"));
        }
        if session.quiet.writer.take() {
            // Woken on a quiet connection (by a ping): let go of what busy traffic grew.
            tx.shrink();
        }
        if !starts.is_empty() {
            // Handlers that waited for the answers ahead of them to drain.
            start_handlers(&conn, &session, &mut starts, Answers::Apply);
        }
        if let Some(p) = tx.transport_pong.take() {
            if let Err(e) = socket.pong(&p).await {
                return write_failed(e);
            }
        }
        busy = tx.messages() > 1;
        if let Some(start) = tx.build_batch(checksum) {
            counters.frame_out(tx.messages(), tx.frame().buffer().len() - start);
            if let Err(e) = socket.send_built(tx.frame(), start).await {
                return write_failed(e);
            }
        }
        if let Some(start) = tx.build_chunk(checksum) {
            counters.frame_out(1, tx.frame().buffer().len() - start);
            if let Err(e) = socket.send_built(tx.frame(), start).await {
                return write_failed(e);
            }
        }
    }
}

fn write_failed(e: std::io::Error) -> Lost {
    Lost::Failed(format!("socket write failed: {e}"))
}
