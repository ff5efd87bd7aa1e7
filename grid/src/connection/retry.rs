//! Calling a method that is safe to run twice (`#[grid(idempotent)]`,
//! [`Request::idempotent`](super::Request::idempotent)): a call lost with its connection,
//! or answered busy or draining, is made again once the peer is back, after a jittered pause, as long
//! as its deadline allows. A call that failed any other way (its handler's error, its
//! deadline) is not retried, and one not marked so never is.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::Connection;
use crate::codec::HandlerId;
use crate::error::{Error, Result};

/// The first pause before a retry; it doubles up to [`MAX_PAUSE`], each one jittered.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Whether a failure of an idempotent call is worth another attempt: the call was lost
/// with its connection (executed or not: running it twice is safe), or the peer was busy
/// or draining (leaving: the call waits for it to be back).
fn retryable(e: &Error) -> bool {
    matches!(
        e,
        Error::Disconnected { .. } | Error::Busy(_) | Error::Draining(_)
    )
}

/// Makes the call `attempt(time left)` to `handler` on `conn` until it succeeds, fails in
/// a way not worth retrying, or `deadline` (default: the manager's) has passed; between
/// attempts it waits a jittered pause and for the connection to be back. Each retry is
/// counted in the connection's stats.
pub(crate) async fn call<F, Fut>(
    conn: &Connection,
    handler: HandlerId,
    deadline: Option<Duration>,
    mut attempt: F,
) -> Result<Option<Bytes>>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<Option<Bytes>>>,
{
    let end = Instant::now() + deadline.unwrap_or(conn.inner.core.config.default_deadline);
    let mut pause = FIRST_PAUSE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let err = match attempt(left).await {
            Ok(answer) => return Ok(answer),
            Err(e) if retryable(&e) => e,
            Err(e) => return Err(e),
        };
        let jittered = pause.mul_f64(0.5 + rand::random::<f64>());
        pause = (pause * 2).min(MAX_PAUSE);
        if end.saturating_duration_since(Instant::now()) <= jittered {
            return Err(err);
        }
        tokio::time::sleep(jittered).await;
        // Only while the peer can be reached again, within the deadline.
        match tokio::time::timeout_at(end, conn.wait_for_connect()).await {
            Ok(Ok(())) => conn.inner.counters.retried(handler),
            Ok(Err(_)) | Err(_) => return Err(err),
        }
    }
}
