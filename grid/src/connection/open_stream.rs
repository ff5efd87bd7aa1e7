//! The caller's side of a stream: `conn.open_stream(id, payload).await` sends the open,
//! waits for the handler side's ack, and returns the caller's two ends.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::session::Session;
use super::{Call, CallStart};
use crate::codec::{Message, Op};
use crate::error::{Error, Result};
use crate::mux::{
    Ack, CallerStream, CancelOnDrop, Credit, Inbound, StreamReceiver, StreamSender, Unread,
};

/// The caller's ends of an open stream.
#[derive(Debug)]
#[non_exhaustive]
pub struct Stream {
    /// Messages to the handler; `None` when the handler takes none (in-capacity 0). Close
    /// it (or drop it) to send EOF.
    pub requests: Option<StreamSender>,
    /// The handler's messages. Ends with `None` when the handler returned `Ok`, or with one
    /// `Err` (the handler's error, `DeadlineExceeded`, `Disconnected`, ...). Dropping it
    /// before the end cancels the handler.
    pub responses: StreamReceiver,
}

/// A stream being opened. Await it (it implements [`IntoFuture`]).
///
/// # Cancel safety
/// Dropping the future before it resolves cancels the stream on the remote.
#[must_use = "a stream is opened only when awaited"]
pub struct OpenStream {
    pub(crate) call: Call,
}

impl OpenStream {
    /// How long the whole stream may last (default: the manager's default deadline). Sent
    /// to the handler; enforced on both sides.
    pub fn deadline(mut self, timeout: Duration) -> Self {
        self.call.deadline = Some(timeout);
        self
    }

    async fn run(self) -> Result<Stream> {
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
        let (items_tx, items) = mpsc::unbounded_channel();
        let unread = Arc::new(Unread::default());
        let requests = Credit::new(0);
        let (ack_tx, ack_rx) = oneshot::channel();
        let entry = CallerStream {
            responses: Inbound::new(items_tx, unread.clone(), 0),
            requests: requests.clone(),
            request_capacity: 0,
            ack: Some(ack_tx),
        };
        if session.streams.open_caller(mux_id, entry).is_err() {
            return Err(inner.lost_error());
        }
        let mut opening = Opening {
            session: &session,
            mux_id,
            armed: true,
        };
        let open = Message {
            mux_id,
            seq: 0,
            deadline_ms,
            handler,
            op: Op::ConnectMux,
            flags: crate::codec::Flags::NONE,
            subroute: subroute.as_ref().map(|(_, h)| *h),
            payload: None,
        };
        let ack = tokio::time::timeout_at(deadline, async {
            session.outbox.send_payload(open, payload, true).await?;
            ack_rx.await.map_err(|_| Error::Disconnected)?
        })
        .await
        .map_err(|_| Error::DeadlineExceeded)?;
        let ack: Ack = match ack {
            Ok(ack) => ack,
            Err(Error::UnknownHandler { handler, .. }) => {
                opening.armed = false;
                return Err(Error::UnknownHandler {
                    handler,
                    subroute: subroute.as_ref().map(|(n, _)| n.to_string()),
                });
            }
            Err(e) => {
                opening.armed = matches!(e, Error::Protocol(_));
                return Err(e);
            }
        };
        opening.armed = false;
        let requests = (ack.in_capacity > 0).then(|| StreamSender {
            outbox: session.outbox.clone(),
            credit: requests,
            mux_id,
            handler,
            op: Op::MuxClientMsg,
            seq: Arc::new(AtomicU32::new(0)),
            eof_on_drop: true,
            held: 0,
            max_message: inner.core.config.max_message_size,
        });
        let responses = StreamReceiver {
            items,
            unread,
            outbox: session.outbox.clone(),
            mux_id,
            unblock: Op::UnblockServerMux,
            batch: (ack.out_capacity / 2).max(1),
            owed: 0,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            cancel_on_drop: Some(CancelOnDrop {
                tables: session.streams.clone(),
            }),
            done: false,
        };
        Ok(Stream {
            requests,
            responses,
        })
    }
}

impl IntoFuture for OpenStream {
    type Output = Result<Stream>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        traced!("grid.open_stream", self.call, self.run())
    }
}

/// A stream being opened: if dropped while still registered, the entry is removed and the
/// handler side is told.
struct Opening<'a> {
    session: &'a Arc<Session>,
    mux_id: u64,
    armed: bool,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if self.armed && self.session.streams.client_cancel(self.mux_id) {
            let mut cancel = Message::new(Op::DisconnectServerMux);
            cancel.mux_id = self.mux_id;
            self.session.outbox.send_bulk_soon(cancel);
        }
    }
}
