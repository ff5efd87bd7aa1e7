//! The one path by which a caller opens a call or a stream and waits for its answer
//! (request.rs, open_stream.rs): the entry is opened in the engine at the first poll, under
//! the same lock that registers the task to be woken; the answer is awaited; and a future
//! dropped before the answer abandons the entry (the handler side is told to stop, or the
//! open, still unsent, is never sent).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::{Call, Prepared};
use crate::engine::{Engine, Key, Outgoing};
use crate::error::{Error, Result};
use crate::session::Session;

/// How a kind of entry opens, is polled for its answer, and is abandoned.
pub(crate) trait Open {
    /// What the answer is.
    type Answer;
    /// Opens the entry (once: what to send goes into the engine).
    fn open(self, e: &mut Engine) -> Result<Key>;
    /// Its answer, once there.
    fn poll(e: &mut Engine, key: Key, cx: &mut Context<'_>) -> Poll<Result<Self::Answer>>;
    /// Gives it up before its answer was taken.
    fn abandon(e: &mut Engine, key: Key);
}

/// Opens `call` as `open` makes it (from what to send and the time now) and waits for the
/// answer: returns the session, the entry's key and the answer. An error answer names the
/// call as its caller made it ([`Error::for_call`]).
///
/// # Cancel safety
/// As [`open_and_wait`].
pub(crate) async fn open<O: Open>(
    call: Call,
    open: impl FnOnce(Outgoing, Instant) -> O,
) -> Result<(Arc<Session>, Key, O::Answer)> {
    let Prepared {
        session,
        outgoing,
        subroute,
        now,
    } = call.prepare()?;
    let handler = outgoing.handler;
    let (key, answer) = open_and_wait(&session, open(outgoing, now))
        .await
        .map_err(|e| e.for_call(handler, subroute.as_deref()))?;
    Ok((session, key, answer))
}

/// Opens with `open` at the first poll and waits for the answer; returns it with the
/// entry's key.
///
/// # Cancel safety
/// Dropping the future abandons the entry ([`Open::abandon`]) if it was opened and its
/// answer not yet taken.
async fn open_and_wait<O: Open>(session: &Arc<Session>, open: O) -> Result<(Key, O::Answer)> {
    let mut open = Some(open);
    let mut pending = Pending::<O> {
        session,
        key: None,
        kind: std::marker::PhantomData,
    };
    let answer = poll_fn(|cx| {
        session.with(|e| {
            let key = match (pending.key, open.take()) {
                (Some(key), _) => key,
                (None, Some(open)) => match open.open(e) {
                    Ok(key) => {
                        super::record_mux(key.mux_id());
                        pending.key = Some(key);
                        key
                    }
                    Err(err) => return Poll::Ready(Err(err)),
                },
                // Not opened, and polled again after saying why.
                (None, None) => return Poll::Ready(Err(Error::Cancelled)),
            };
            O::poll(e, key, cx).map(|answer| answer.map(|a| (key, a)))
        })
    })
    .await;
    // Taken: nothing to abandon any more.
    pending.key = None;
    answer
}

/// An entry opened and not yet answered: dropped, it is abandoned.
struct Pending<'a, O: Open> {
    session: &'a Arc<Session>,
    key: Option<Key>,
    kind: std::marker::PhantomData<fn() -> O>,
}

impl<O: Open> Drop for Pending<'_, O> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.session.with(|e| O::abandon(e, key));
        }
    }
}
