//! The writer task: drains a session's outgoing queue onto the socket, merging whatever is
//! queued at the moment into one frame.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::session::Outgoing;
use super::websocket::FrameWriter;
use crate::codec::encode_merged;
use crate::core::MERGE_LIMIT;
use crate::stats::Counters;

/// Most messages merged into one frame.
const MAX_BATCH: usize = 512;

/// Runs until the socket fails or the queue closes. Returns a description of why.
pub(crate) async fn write_loop(
    mut socket: FrameWriter,
    mut queue: mpsc::Receiver<Outgoing>,
    counters: Arc<Counters>,
) -> String {
    let mut batch: Vec<Bytes> = Vec::with_capacity(64);
    let mut pongs: Vec<Bytes> = Vec::new();
    // Whether the last frame merged several messages: traffic is heavy.
    let mut busy = false;
    while let Some(first) = queue.recv().await {
        if busy {
            // Under load, let the tasks that are about to queue more run first so they share
            // this frame: fewer, larger writes. Idle connections skip this and keep their
            // latency.
            tokio::task::yield_now().await;
        }
        let mut size = take(&mut batch, &mut pongs, first);
        while batch.len() < MAX_BATCH && size < MERGE_LIMIT {
            match queue.try_recv() {
                Ok(next) => size += take(&mut batch, &mut pongs, next),
                Err(_) => break,
            }
        }
        for p in pongs.drain(..) {
            if let Err(e) = socket.pong(&p).await {
                return format!("socket write failed: {e}");
            }
        }
        let count = batch.len();
        busy = count > 1;
        let written = match count {
            0 => continue,
            1 => {
                let one = batch.pop().unwrap_or_default();
                counters.frame_out(1, one.len());
                socket.binary(&one).await
            }
            _ => {
                let merged = encode_merged(&batch);
                batch.clear();
                counters.frame_out(count, merged.len());
                socket.binary(&merged).await
            }
        };
        if let Err(e) = written {
            return format!("socket write failed: {e}");
        }
    }
    let _ = socket.close().await;
    "outgoing queue closed".into()
}

/// Adds a queue item to the batch (or to the WebSocket pongs); returns the bytes added.
fn take(batch: &mut Vec<Bytes>, pongs: &mut Vec<Bytes>, item: Outgoing) -> usize {
    match item {
        Outgoing::One(b) => {
            let n = b.len();
            batch.push(b);
            n
        }
        Outgoing::Batch(many) => {
            let n = many.iter().map(Bytes::len).sum();
            batch.extend(many);
            n
        }
        Outgoing::WebSocketPong(p) => {
            pongs.push(p);
            0
        }
    }
}
