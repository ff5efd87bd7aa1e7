//! Typed payloads encoded without an allocation each: into a reused per-thread buffer,
//! then copied into a slice of a per-thread 4 KiB block (small payloads) or a buffer of
//! their own (large ones).

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

/// Payloads up to this size are copied into the shared block; larger ones get their own.
const SMALL: usize = 1024;
const BLOCK: usize = 4 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
    static BLOCKS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Copies `data` into the current thread's block.
fn copy_small(data: &[u8]) -> Bytes {
    BLOCKS
        .try_with(|b| {
            let mut buf = b.try_borrow_mut().ok()?;
            if buf.capacity() - buf.len() < data.len() {
                *buf = BytesMut::with_capacity(BLOCK.max(data.len()));
            }
            buf.extend_from_slice(data);
            Some(buf.split().freeze())
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Bytes::copy_from_slice(data))
}

/// Runs `write` into a reused per-thread buffer and returns what it wrote as `Bytes`.
pub(crate) fn encode_with<E>(
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Bytes, E> {
    let mut write = Some(write);
    // `try_with`/`try_borrow_mut`: a payload encoded during thread exit, or from inside
    // another encoding, falls back to a buffer of its own.
    let pooled = SCRATCH.try_with(|scratch| {
        let mut scratch = scratch.try_borrow_mut().ok()?;
        scratch.clear();
        let result = write.take().map(|w| w(&mut scratch))?;
        Some(result.map(|()| {
            if scratch.len() > SMALL {
                Bytes::copy_from_slice(&scratch)
            } else {
                copy_small(&scratch)
            }
        }))
    });
    match pooled.ok().flatten() {
        Some(result) => result,
        None => {
            let mut buf = Vec::with_capacity(256);
            match write.take() {
                Some(w) => w(&mut buf).map(|()| Bytes::from(buf)),
                None => Ok(Bytes::from(buf)),
            }
        }
    }
}
