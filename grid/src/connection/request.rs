//! The caller's side of a single call: `conn.request(id, payload).deadline(d).await`.

use std::future::{poll_fn, Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
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
        let key = session.with(|e| e.open_call(now, outgoing))?;
        super::record_mux(key.mux_id());
        let mut pending = Pending {
            session: &session,
            key,
            armed: true,
        };
        let answer = poll_fn(|cx| session.with(|e| e.poll_call(key, cx))).await;
        pending.armed = false;
        let reply = answer?;
        // A chunked answer's parts are joined here, by the caller's task.
        let payload = reply.payload.into_bytes();
        if reply.flags.contains(Flags::PAYLOAD_IS_ERROR) {
            return Err(Error::from_wire(
                payload.as_deref(),
                handler,
                subroute.as_deref(),
            ));
        }
        Ok(payload)
    }
}

impl IntoFuture for Request {
    type Output = Result<Option<Bytes>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        traced!("grid.call", self.call, self.run())
    }
}

/// A call registered with the engine: dropped before its answer was taken, it is abandoned
/// (the remote handler is told to stop).
struct Pending<'a> {
    session: &'a Arc<Session>,
    key: Key,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            let key = self.key;
            self.session.with(|e| e.drop_call(key));
        }
    }
}
