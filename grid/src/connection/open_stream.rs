//! The caller's side of a stream: `conn.open_stream(id, payload).await` sends the open,
//! waits for the handler side's answer, and returns the caller's two ends.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::opening::{open, Open};
use super::Call;
use crate::codec::Ack;
use crate::engine::{Engine, Key, Outgoing, Side};
use crate::error::{Error, Result};
use crate::stream_ends::{StreamReceiver, StreamSender};

/// The caller's ends of an open stream.
///
/// End the requests with [`StreamSender::finish`]: dropped without it, the sender cancels
/// the stream. Dropping the responses before their end cancels it too, whatever the order
/// in which the two ends are dropped.
#[derive(Debug)]
#[non_exhaustive]
pub struct Stream {
    /// Messages to the handler; `None` when the handler takes none (it was registered
    /// without [`StreamHandler::with_input`](crate::StreamHandler::with_input)).
    pub requests: Option<StreamSender>,
    /// The handler's messages. Ends with `None` when the handler returned `Ok`, or with one
    /// `Err` (the handler's error, `DeadlineExceeded`, `Disconnected`, ...).
    pub responses: StreamReceiver,
}

impl Stream {
    /// Both ends, for a stream whose handler takes input: `let (requests, responses) =
    /// conn.open_stream(id, payload).await?.split()?;`.
    ///
    /// # Errors
    /// [`Error::Protocol`] when the handler takes no input (it was registered without
    /// `with_input`); the stream is then cancelled.
    pub fn split(self) -> Result<(StreamSender, StreamReceiver)> {
        match self.requests {
            Some(requests) => Ok((requests, self.responses)),
            None => Err(Error::Protocol(
                "the remote handler takes no input (it was registered without with_input)".into(),
            )),
        }
    }
}

/// A stream being opened. Await it (it implements [`IntoFuture`]).
///
/// # Cancel safety
/// Dropping the future before it resolves cancels the stream on the remote (or, if the
/// open was not yet written to the socket, never sends it).
#[must_use = "a stream is opened only when awaited"]
pub struct OpenStream {
    pub(crate) call: Call,
    pub(crate) max_window: Option<u64>,
}

impl OpenStream {
    /// How long the whole stream may last (default: the manager's default deadline). Sent
    /// to the handler; enforced on both sides.
    pub fn deadline(mut self, timeout: Duration) -> Self {
        self.call.deadline = Some(timeout);
        self
    }

    /// The most bytes of the handler's messages in flight to this caller at once: the cap
    /// of the responses' window (default: the node's
    /// [`max_stream_window`](crate::ManagerBuilder::max_stream_window)).
    pub fn max_window(mut self, bytes: u64) -> Self {
        self.max_window = Some(bytes.max(1));
        self
    }

    async fn run(self) -> Result<Stream> {
        let max_window = self.max_window;
        let (session, key, ack) = open(self.call, |outgoing, now| {
            OpenMux(outgoing, now, max_window)
        })
        .await?;
        let requests =
            (ack.in_window > 0).then(|| StreamSender::new(session.clone(), Side::Caller, key));
        Ok(Stream {
            requests,
            responses: StreamReceiver::new(session, Side::Caller, key),
        })
    }
}

/// A stream, as [`open`] opens it: its answer is the handler side's ack.
struct OpenMux(Outgoing, Instant, Option<u64>);

impl Open for OpenMux {
    type Answer = Ack;

    fn open(self, e: &mut Engine) -> Result<Key> {
        e.open_stream(self.1, self.0, self.2)
    }

    fn poll(e: &mut Engine, key: Key, cx: &mut Context<'_>) -> Poll<Result<Ack>> {
        e.stream(Side::Caller, key).poll_opened(cx)
    }

    fn abandon(e: &mut Engine, key: Key) {
        e.stream(Side::Caller, key).abandon_open();
    }
}

impl IntoFuture for OpenStream {
    type Output = Result<Stream>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        traced!("grid.open_stream", self.call, self.run())
    }
}
