//! The caller's side of a single call: `conn.request(id, payload).deadline(d).await`.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::opening::{open, Open};
use super::Call;
use crate::engine::{Engine, Key, Outgoing, Payload};
use crate::error::Result;

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
    /// Made again when lost with its connection or answered busy (see `retry.rs`).
    pub(crate) idempotent: bool,
}

impl Request {
    /// Sets how long the call may take (default: the manager's default deadline). The
    /// deadline is sent to the handler. Inside a handler, the call being handled's deadline
    /// also applies: whichever is sooner wins.
    pub fn deadline(mut self, timeout: Duration) -> Self {
        self.call.deadline = Some(timeout);
        self
    }

    /// Marks the call safe to run twice, as `#[grid(idempotent)]` does a typed method's:
    /// when it is lost with its connection or answered busy, it is made again once the
    /// peer is back, after a jittered pause, within its deadline (counted in
    /// [`ConnectionStats::retries`](crate::ConnectionStats)). Without it a call is never
    /// made twice; its error's [`execution`](crate::Error::execution) says whether it may
    /// have run.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// The call made again while it is lost or refused busy (see `retry.rs`).
    async fn retrying(call: Call) -> Result<Option<Bytes>> {
        let Call {
            conn,
            handler,
            subroute,
            payload,
            deadline,
        } = call;
        let attempt = |left| {
            let call = Call {
                conn: conn.clone(),
                handler,
                subroute: subroute.clone(),
                payload: payload.clone(),
                deadline: Some(left),
            };
            Self::once(call)
        };
        super::retry::call(&conn, handler, deadline, attempt).await
    }

    async fn once(call: Call) -> Result<Option<Bytes>> {
        let (_, _, payload) = open(call, OpenCall).await?;
        // A chunked answer's parts are joined here, by the caller's task; a small answer
        // is copied out of the read buffer.
        Ok(payload.into_owned())
    }
}

/// A single call, as [`open`] opens it.
struct OpenCall(Outgoing, Instant);

impl Open for OpenCall {
    type Answer = Payload;

    fn open(self, e: &mut Engine) -> Result<Key> {
        e.open_call(self.1, self.0)
    }

    fn poll(e: &mut Engine, key: Key, cx: &mut Context<'_>) -> Poll<Result<Payload>> {
        e.call(key).poll_answer(cx)
    }

    fn abandon(e: &mut Engine, key: Key) {
        e.call(key).abandon();
    }
}

impl IntoFuture for Request {
    type Output = Result<Option<Bytes>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        // Each kind boxes its own future: a plain call's stays as small as it was.
        if self.idempotent {
            traced!("grid.call", self.call, Self::retrying(self.call))
        } else {
            traced!("grid.call", self.call, Self::once(self.call))
        }
    }
}
