//! The caller's side of a single call: `conn.request(id, payload).deadline(d).await`.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::session::Session;
use super::{Call, CallStart};
use crate::codec::{Message, Op};
use crate::error::{Error, Result};
use crate::mux::response_outcome;
use crate::mux::CHUNK;

/// A single call being prepared. Await it (it implements [`IntoFuture`]) to send it and get
/// the handler's answer.
///
/// # Cancel safety
/// Dropping the future at any point returns at once; if the request was already sent, the
/// remote handler is cancelled (its future is dropped) and its answer, if any, is ignored.
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
        let Call {
            conn,
            handler,
            subroute,
            payload,
            deadline: timeout,
        } = self.call;
        let inner = &conn.inner;
        let CallStart {
            session,
            deadline,
            deadline_ms,
            mux_id,
        } = inner.begin_call(timeout, payload.as_ref())?;
        super::record_mux(mux_id);
        let (tx, rx) = oneshot::channel();
        if session.calls.insert_client(mux_id, tx).is_err() {
            return Err(inner.lost_error());
        }
        let mut pending = Pending {
            session: &session,
            mux_id,
            armed: true,
            chunked: payload.as_ref().is_some_and(|p| p.len() > CHUNK),
        };
        let head = Message {
            mux_id,
            seq: 0,
            deadline_ms,
            handler,
            op: Op::Request,
            flags: crate::codec::Flags::NONE,
            subroute: subroute.as_ref().map(|(_, h)| *h),
            payload: None,
        };
        let answer = tokio::time::timeout_at(deadline, async {
            session.outbox.send_payload(head, payload, false).await?;
            rx.await.map_err(|_| Error::Disconnected)?
        })
        .await;
        match answer {
            Ok(Ok(reply)) => {
                pending.armed = false;
                let subroute = subroute.as_ref().map(|(n, _)| &**n);
                response_outcome(reply, handler, subroute)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::DeadlineExceeded),
        }
    }
}

impl IntoFuture for Request {
    type Output = Result<Option<Bytes>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        traced!("grid.call", self.call, self.run())
    }
}

/// A call that was registered with the session: if it is dropped while still registered
/// (caller dropped the future, or the deadline passed), the entry is removed and the remote
/// handler is told to stop.
struct Pending<'a> {
    session: &'a Arc<Session>,
    mux_id: u64,
    armed: bool,
    /// The request went in chunks: the cancel must follow them through the bulk lane.
    chunked: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.session.calls.take_client(self.mux_id).is_some() {
            let mut cancel = Message::new(Op::DisconnectServerMux);
            cancel.mux_id = self.mux_id;
            if self.chunked {
                self.session.outbox.send_bulk_soon(cancel);
            } else {
                self.session.outbox.send_soon(cancel);
            }
        }
    }
}
