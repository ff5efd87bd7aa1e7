//! Stream handlers: what is registered, and what a handler gets when a stream opens.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use super::CallContext;
use crate::error::RemoteError;
use crate::stream_ends::{StreamReceiver, StreamSender};

/// Everything a stream handler gets when a caller opens its stream.
#[derive(Debug)]
#[non_exhaustive]
pub struct StreamCall {
    /// Who called, the deadline, the subroute, and the cancellation.
    pub ctx: CallContext,
    /// The initial payload the caller opened the stream with.
    pub payload: Option<Bytes>,
    /// The caller's messages (`None` when the handler's in-capacity is 0). Ends with `None`
    /// after the caller's EOF, or with `Err(Cancelled)` when the caller cancelled: a
    /// cancelled stream never looks finished.
    pub input: Option<StreamReceiver>,
    /// The handler's messages to the caller. The stream ends when the handler returns.
    pub output: StreamSender,
}

impl StreamCall {
    /// Takes the caller's messages: `let mut input = call.take_input()?;` in a handler.
    ///
    /// # Errors
    /// A [`RemoteError`] for the caller when there is no input to take: the handler was
    /// registered with an in-capacity of 0, or took it already.
    pub fn take_input(&mut self) -> Result<StreamReceiver, RemoteError> {
        self.input.take().ok_or_else(|| {
            RemoteError::new(
                "this stream handler has no input: register it with in_capacity > 0 (and take it once)",
            )
        })
    }
}

/// The boxed future a stream handler returns.
pub type StreamFuture = Pin<Box<dyn Future<Output = Result<(), RemoteError>> + Send>>;

type StreamFn = Arc<dyn Fn(StreamCall) -> StreamFuture + Send + Sync>;

/// A stream handler and its per-direction capacities.
///
/// ```
/// use grid::{StreamCall, StreamHandler};
///
/// // Echo every message back, upper-cased, until the caller's EOF.
/// let handler = StreamHandler::new(|mut call: StreamCall| async move {
///     let mut input = call.take_input()?;
///     while let Some(msg) = input.recv().await {
///         let msg = msg?;
///         let upper = msg.to_ascii_uppercase();
///         call.output.send(upper.into()).await?;
///     }
///     Ok(())
/// })
/// .in_capacity(16)
/// .out_capacity(16);
/// # drop(handler);
/// ```
#[derive(Clone)]
pub struct StreamHandler {
    pub(crate) in_capacity: u32,
    pub(crate) out_capacity: u32,
    pub(crate) call: StreamFn,
}

impl std::fmt::Debug for StreamHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandler")
            .field("in_capacity", &self.in_capacity)
            .field("out_capacity", &self.out_capacity)
            .finish()
    }
}

impl StreamHandler {
    /// A handler with no caller→handler messages and an out-capacity of 8.
    pub fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(StreamCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), RemoteError>> + Send + 'static,
    {
        Self {
            in_capacity: 0,
            out_capacity: 8,
            call: Arc::new(move |call| Box::pin(handler(call))),
        }
    }

    /// How many caller messages may be in flight to the handler (0: the caller sends none).
    pub fn in_capacity(mut self, messages: u32) -> Self {
        self.in_capacity = messages;
        self
    }

    /// How many handler messages may be in flight to the caller (at least 1).
    pub fn out_capacity(mut self, messages: u32) -> Self {
        self.out_capacity = messages.max(1);
        self
    }
}
