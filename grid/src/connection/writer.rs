//! The writer task: drains a session's outgoing queue onto the socket, merging whatever is
//! queued at the moment into one frame.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use super::session::Outgoing;
use crate::codec::encode_merged;
use crate::core::MERGE_LIMIT;
use crate::stats::Counters;

/// Most messages merged into one frame.
const MAX_BATCH: usize = 512;

/// Runs until the socket fails or the queue closes. Returns a description of why.
pub(crate) async fn write_loop<S>(
    mut sink: S,
    mut queue: mpsc::Receiver<Outgoing>,
    counters: Arc<Counters>,
) -> String
where
    S: Sink<WsMessage, Error = tungstenite::Error> + Unpin,
{
    let mut batch: Vec<Bytes> = Vec::with_capacity(64);
    while let Some(first) = queue.recv().await {
        let mut size = take(&mut batch, first);
        while batch.len() < MAX_BATCH && size < MERGE_LIMIT {
            match queue.try_recv() {
                Ok(next) => size += take(&mut batch, next),
                Err(_) => break,
            }
        }
        let count = batch.len();
        let frame = if count == 1 {
            batch.pop().unwrap_or_default()
        } else {
            let merged = Bytes::from(encode_merged(&batch));
            batch.clear();
            merged
        };
        counters.frame_out(count, frame.len());
        if let Err(e) = sink.send(WsMessage::Binary(frame)).await {
            return format!("socket write failed: {e}");
        }
    }
    let _ = sink.close().await;
    "outgoing queue closed".into()
}

/// Adds a queue item to the batch; returns the bytes added.
fn take(batch: &mut Vec<Bytes>, item: Outgoing) -> usize {
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
    }
}
