//! The caller's side of a single call: `conn.request(id, payload).deadline(d).await`.

use std::future::{poll_fn, Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use super::{Call, Prepared};
use crate::codec::Flags;
use crate::engine::Key;
use crate::error::{Error, Result};
use crate::session::Session;

/// A single call being prepared. Await it (it implements [`IntoFuture`]) to send it and get
/// the handler's answer.
///
/// # Cancel safety
/// Dropping the future at any point returns at once; if the request was already sent, the
/// remote handler is cancelled (its future is dropped) and its answer, if any, is ignored.
/// A request not yet written to the socket is simply not sent.
#[must_use = "a request does nothing until it is awaited"]
pub struct Request {
    pub(crate) call: Call,
}

impl Request {
    /// Sets how long the call may take (default: the manager's default deadline). The
    /// deadline is sent to the handler. Inside a handler, the call being handled's deadline
    /// also applies: whichever is sooner wins.
    pub fn deadline(mut self, timeout: Duration) -> Self {
        self.call.deadline = Some(timeout);
        self
    }

    async fn run(self) -> Result<Option<Bytes>> {
        let Prepared {
            session,
            outgoing,
            subroute,
            now,
        } = self.call.prepare()?;
        let handler = outgoing.handler;
        let mut outgoing = Some(outgoing);
        let mut pending = Pending {
            session: &session,
            key: None,
        };
        // The call is opened at the first poll, under the same lock that registers this
        // task to be woken with the answer.
        let answer = poll_fn(|cx| {
            pending.session.with(|e| {
                let key = match (pending.key, outgoing.take()) {
                    (Some(key), _) => key,
                    (None, Some(o)) => match e.open_call(now, o) {
                        Ok(key) => {
                            pending.key = Some(key);
                            key
                        }
                        Err(err) => return Poll::Ready(Err(err)),
                    },
                    (None, None) => return Poll::Ready(Err(Error::Cancelled)),
                };
                e.poll_call(key, cx)
            })
        })
        .await;
        if let Some(key) = pending.key.take() {
            super::record_mux(key.mux_id());
        }
        let reply = answer?;
        if reply.flags.contains(Flags::PAYLOAD_IS_ERROR) {
            return Err(Error::from_wire(
                reply.payload.into_bytes().as_deref(),
                handler,
                subroute.as_deref(),
            ));
        }
        // A chunked answer's parts are joined here, by the caller's task; a small answer
        // is copied out of the read buffer.
        Ok(reply.payload.into_owned())
    }
}

impl IntoFuture for Request {
    type Output = Result<Option<Bytes>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        traced!("grid.call", self.call, self.run())
    }
}

/// A call opened in the engine: dropped before its answer was taken, it is abandoned
/// (the remote handler is told to stop).
struct Pending<'a> {
    session: &'a Arc<Session>,
    /// Set once opened; taken once the answer was.
    key: Option<Key>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.session.with(|e| e.drop_call(key));
        }
    }
}
