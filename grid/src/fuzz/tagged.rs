//! Payloads that say which message they are, so that what arrives can be checked against
//! what was sent.

use bytes::Bytes;

/// Where a [`tagged`] payload says what it is: at the start of every 4 KiB block, and in
/// its last 16 bytes (which win where the two meet).
const TAG_EVERY: usize = 4096;

/// A payload of `len` bytes that says which message it is (`flow`, `n`) and, block by
/// block, where each part of it belongs, so that a lost, swapped or foreign part of a
/// chunked payload shows (checked by [`is_tagged`] without copying).
pub(super) fn tagged(flow: u64, n: u32, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    for (at, end, tag) in tags(flow, n, len) {
        v[at..end].copy_from_slice(&tag[..end - at]);
    }
    Bytes::from(v)
}

/// Whether `payload` is the [`tagged`] payload `(flow, n)` of its length.
pub(super) fn is_tagged(payload: &[u8], flow: u64, n: u32) -> bool {
    tags(flow, n, payload.len()).all(|(at, end, tag)| payload[at..end] == tag[..end - at])
}

/// The tags of a payload of `len` bytes: where each goes (start, end) and what it says.
fn tags(flow: u64, n: u32, len: usize) -> impl Iterator<Item = (usize, usize, [u8; 16])> {
    let tag = move |block: u32| {
        let mut tag = [0u8; 16];
        tag[..8].copy_from_slice(&flow.to_le_bytes());
        tag[8..12].copy_from_slice(&n.to_le_bytes());
        tag[12..].copy_from_slice(&block.to_le_bytes());
        tag
    };
    // The last 16 bytes, when the payload has room for them and a first block tag.
    let body = if len >= 32 { len - 16 } else { len };
    let blocks = (0..body)
        .step_by(TAG_EVERY)
        .enumerate()
        .map(move |(block, at)| (at, (at + 16).min(body), tag(block as u32)));
    let end = (body < len).then(|| (body, len, tag(u32::MAX)));
    blocks.chain(end)
}
