//! The writer task: drains a session's outgoing queue onto the socket, merging whatever is
//! queued at the moment into one frame.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use crate::codec::encode_merged;
use crate::core::MERGE_LIMIT;
use crate::stats::Counters;

/// Most messages merged into one frame.
const MAX_BATCH: usize = 512;

/// Runs until the socket fails or the queue closes. Returns a description of why.
pub(crate) async fn write_loop<S>(
    mut sink: S,
    mut queue: mpsc::Receiver<Bytes>,
    counters: Arc<Counters>,
    checksum: bool,
) -> String
where
    S: Sink<WsMessage, Error = tungstenite::Error> + Unpin,
{
    let mut batch: Vec<Bytes> = Vec::with_capacity(64);
    while let Some(first) = queue.recv().await {
        let mut size = first.len();
        batch.push(first);
        while batch.len() < MAX_BATCH && size < MERGE_LIMIT {
            match queue.try_recv() {
                Ok(next) => {
                    size += next.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let count = batch.len();
        let frame = if count == 1 {
            batch.pop().unwrap_or_default()
        } else {
            let merged = Bytes::from(encode_merged(&batch, checksum));
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
