//! The reader task: reads frames off the socket and hands their messages to the engine one
//! at a time, in batches under one lock, then starts the handlers each batch admitted.
//!
//! The reader never waits for the writer: what a peer can make this side hold is bounded
//! by the engine's limits, not by reading less (two nodes that each stopped reading while
//! their writer is blocked would wait for each other forever).

use std::sync::Arc;

use tokio::time::Instant;

use super::serve::{start_handlers, Answers};
use super::websocket::{FrameReader, Incoming};
use super::ConnInner;
use crate::codec::{FrameMessages, Message};
use crate::engine::{Answer, Key, Start};
use crate::session::Session;

/// Messages applied under one lock. Handlers admitted in a batch start after it, so a
/// stream opened and cancelled within one batch never starts a task.
const BATCH: usize = 64;

/// Runs until the socket ends or the peer breaks the protocol. Returns why.
pub(crate) async fn read_loop(
    conn: Arc<ConnInner>,
    session: Arc<Session>,
    mut socket: FrameReader,
) -> String {
    let mut starts: Vec<Start> = Vec::new();
    let mut answers: Vec<(Key, Answer)> = Vec::new();
    let mut batch: Vec<Message> = Vec::with_capacity(BATCH);
    loop {
        let frame = match socket.next().await {
            Ok(Incoming::Binary(frame)) => frame,
            Ok(Incoming::Ping(payload)) => {
                session.with(|e| e.transport_ping(payload));
                continue;
            }
            Ok(Incoming::Close) => return "peer closed the WebSocket".into(),
            Err(why) => return why,
        };
        let now = Instant::now().into_std();
        let mut messages = match FrameMessages::new(&frame, session.limits) {
            Ok(m) => m,
            Err(e) => return format!("protocol violation: {e}"),
        };
        let mut count = 0;
        loop {
            // Decoded (and checksummed) outside the lock, a bounded batch at a time.
            let mut more = true;
            for _ in 0..BATCH {
                match messages.next() {
                    Some(Ok(m)) => batch.push(m),
                    Some(Err(e)) => return format!("protocol violation: {e}"),
                    None => {
                        more = false;
                        break;
                    }
                }
            }
            count += batch.len();
            let applied = session.with(|e| {
                for (key, answer) in answers.drain(..) {
                    e.answer(key, answer);
                }
                for m in batch.drain(..) {
                    e.handle(now, m)?;
                }
                e.take_starts(&mut starts);
                e.end_batch();
                Ok::<(), String>(())
            });
            if let Err(why) = applied {
                return format!("protocol violation: {why}");
            }
            if !starts.is_empty() {
                start_handlers(&conn, &session, &mut starts, Answers::Collect(&mut answers));
            }
            if !more {
                break;
            }
            // A frame of many messages does not hold this thread for long.
            tokio::task::yield_now().await;
        }
        if !answers.is_empty() {
            session.with(|e| {
                for (key, answer) in answers.drain(..) {
                    e.answer(key, answer);
                }
            });
        }
        conn.counters.frame_in(count, frame.len());
    }
}
