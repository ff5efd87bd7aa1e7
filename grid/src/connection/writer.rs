//! The writer task: drains a session's outgoing queue onto the socket, merging whatever is
//! queued at the moment into one frame.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::websocket::FrameWriter;
use crate::codec::encode_merged;
use crate::core::MERGE_LIMIT;
use crate::mux::{BulkItem, Outgoing};
use crate::stats::Counters;

/// Most messages merged into one frame.
const MAX_BATCH: usize = 512;

/// Runs until the socket fails or the queue closes. Returns a description of why.
///
/// Two lanes feed it: `queue` (messages, merged) and `bulk` (chunks of large payloads, one
/// per frame). After each merged frame it sends at most one chunk, so small messages wait
/// for one chunk at most, and chunks are never starved.
pub(crate) async fn write_loop(
    mut socket: FrameWriter,
    mut queue: mpsc::Receiver<Outgoing>,
    mut bulk: mpsc::Receiver<BulkItem>,
    counters: Arc<Counters>,
) -> String {
    let mut batch: Vec<Bytes> = Vec::with_capacity(64);
    let mut pongs: Vec<Bytes> = Vec::new();
    // Whether the last frame merged several messages: traffic is heavy.
    let mut busy = false;
    let (mut queue_open, mut bulk_open) = (true, true);
    while queue_open || bulk_open {
        let first = tokio::select! {
            biased;
            item = queue.recv(), if queue_open => match item {
                Some(item) => item,
                None => {
                    queue_open = false;
                    continue;
                }
            },
            chunk = bulk.recv(), if bulk_open => match chunk {
                Some(chunk) => {
                    if let Err(e) = write_chunk(&mut socket, &counters, chunk).await {
                        return e;
                    }
                    continue;
                }
                None => {
                    bulk_open = false;
                    continue;
                }
            },
        };
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
        if let Ok(chunk) = bulk.try_recv() {
            if let Err(e) = write_chunk(&mut socket, &counters, chunk).await {
                return e;
            }
        }
    }
    let _ = socket.close().await;
    "outgoing queue closed".into()
}

async fn write_chunk(
    socket: &mut FrameWriter,
    counters: &Counters,
    chunk: BulkItem,
) -> Result<(), String> {
    counters.frame_out(1, chunk.bytes.len());
    socket
        .binary(&chunk.bytes)
        .await
        .map_err(|e| format!("socket write failed: {e}"))?;
    if let Some(written) = chunk.written {
        let _ = written.send(());
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_frame, Flags, FrameLimits, Message, Op};
    use crate::connection::websocket::{FrameReader, Incoming, Role};

    fn encoded(op: Op, mux_id: u64, flags: Flags, len: usize) -> Bytes {
        let mut m = Message::new(op);
        m.mux_id = mux_id;
        m.flags = flags;
        m.payload = Some(Bytes::from(vec![7u8; len]));
        Bytes::from(m.encode(false))
    }

    /// Runs the writer over an in-memory pipe with everything queued before it starts, and
    /// returns, frame by frame, the mux ids it carried.
    async fn frames_written(normal: Vec<Bytes>, chunks: Vec<Bytes>) -> Vec<Vec<u64>> {
        let (ours, theirs) = tokio::io::duplex(64 << 20);
        let (read_half, write_half) = tokio::io::split(theirs);
        drop(read_half);
        let writer = FrameWriter::new(Box::new(write_half), Role::Dialer);
        let (qtx, qrx) = mpsc::channel(normal.len().max(1));
        let (btx, brx) = mpsc::channel(chunks.len().max(1));
        for n in normal {
            qtx.try_send(Outgoing::One(n)).expect("room");
        }
        for c in chunks {
            btx.try_send(BulkItem {
                bytes: c,
                written: None,
            })
            .expect("room");
        }
        drop((qtx, btx));
        write_loop(writer, qrx, brx, Arc::default()).await;
        let (read_half, _w) = tokio::io::split(ours);
        let mut reader = FrameReader::new(Box::new(read_half), Role::Acceptor, 64 << 20);
        let mut frames = Vec::new();
        while let Ok(Incoming::Binary(frame)) = reader.next().await {
            let msgs = decode_frame(&frame, FrameLimits::new(1 << 20)).expect("decode");
            frames.push(msgs.iter().map(|m| m.mux_id).collect());
        }
        frames
    }

    #[tokio::test]
    async fn a_queued_small_message_goes_before_queued_chunks() {
        let chunks = (0..4)
            .map(|i| {
                encoded(
                    Op::Request,
                    100,
                    if i < 3 { Flags::MORE } else { Flags::NONE },
                    60_000,
                )
            })
            .collect();
        let frames = frames_written(vec![encoded(Op::Request, 1, Flags::NONE, 10)], chunks).await;
        assert_eq!(
            frames,
            vec![vec![1], vec![100], vec![100], vec![100], vec![100]]
        );
    }

    #[tokio::test]
    async fn chunks_are_interleaved_with_heavy_small_traffic_not_starved() {
        let normal: Vec<Bytes> = (1..=2000)
            .map(|i| encoded(Op::Response, i, Flags::NONE, 200))
            .collect();
        let chunks = (0..4)
            .map(|i| {
                encoded(
                    Op::Request,
                    9999,
                    if i < 3 { Flags::MORE } else { Flags::NONE },
                    60_000,
                )
            })
            .collect();
        let frames = frames_written(normal, chunks).await;
        let chunk_frames: Vec<usize> = frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f == &&vec![9999])
            .map(|(i, _)| i)
            .collect();
        // One chunk after each merged frame of small messages.
        assert_eq!(chunk_frames, vec![1, 3, 5, 7]);
        let small: usize = frames
            .iter()
            .filter(|f| f != &&vec![9999])
            .map(Vec::len)
            .sum();
        assert_eq!(small, 2000);
    }
}
