//! The writer task: takes what the engine has to send and writes it on the socket, each
//! batch of small messages as one (merged) frame encoded straight into one buffer, each
//! chunk of a large payload as a frame of its own.

use std::future::poll_fn;
use std::sync::Arc;

use tokio::time::Instant;

use super::serve::{start_handlers, Answers};
use super::websocket::{FrameWriter, HEADROOM};
use super::ConnInner;
use crate::codec::FrameBuilder;
use crate::engine::Transmit;
use crate::session::Session;

/// Runs until the socket fails or the session closes. Returns a description of why.
pub(crate) async fn write_loop(
    conn: Arc<ConnInner>,
    session: Arc<Session>,
    mut socket: FrameWriter,
) -> String {
    let checksum = session.checksum;
    let counters = conn.counters.clone();
    let mut tx = Transmit::default();
    let mut frame = FrameBuilder::new(HEADROOM);
    let mut starts = Vec::new();
    // Whether the last frame merged several messages: traffic is heavy.
    let mut busy = false;
    loop {
        if busy {
            // Under load, let the tasks that are about to queue more run first so they share
            // the next frame: fewer, larger writes. Idle connections skip this.
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
            let _ = socket.close().await;
            return format!("session closed: {e}");
        }
        if !starts.is_empty() {
            // Handlers that waited for the answers ahead of them to drain.
            start_handlers(&conn, &session, &mut starts, Answers::Apply);
        }
        if let Some(p) = tx.transport_pong.take() {
            if let Err(e) = socket.pong(&p).await {
                return format!("socket write failed: {e}");
            }
        }
        busy = tx.messages.len() > 1;
        for batch in [&tx.messages[..], tx.chunk.as_slice()] {
            if batch.is_empty() {
                continue;
            }
            // Checksums: a single message carries its own, a merged frame one for all.
            let merged = batch.len() > 1;
            frame.clear();
            for m in batch {
                frame.push(m, checksum && !merged);
            }
            let start = frame.finish(checksum && merged);
            counters.frame_out(batch.len(), frame.buffer().len() - start);
            if let Err(e) = socket.send_built(&mut frame, start).await {
                return format!("socket write failed: {e}");
            }
        }
    }
}
