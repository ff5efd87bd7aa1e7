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
    /// The caller's messages (`None` unless the handler was registered
    /// [`with_input`](StreamHandler::with_input)). Ends with `None`
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
    /// registered without [`StreamHandler::with_input`], or took it already.
    pub fn take_input(&mut self) -> Result<StreamReceiver, RemoteError> {
        self.input.take().ok_or_else(|| {
            RemoteError::new(
                "this stream handler has no input: register it with StreamHandler::with_input (and take it once)",
            )
        })
    }
}

/// The boxed future a stream handler returns.
pub type StreamFuture = Pin<Box<dyn Future<Output = Result<(), RemoteError>> + Send>>;

type StreamFn = Arc<dyn Fn(StreamCall) -> StreamFuture + Send + Sync>;

/// A stream handler: its function, whether it reads the caller's messages, and the cap on
/// the window its input may grow to.
///
/// Flow control counts bytes in both directions: a message costs its payload plus 64 bytes,
/// and each receiving side grants a window it grows to fit the link (up to its caps and its
/// node's memory budget, see [`ManagerBuilder`](crate::ManagerBuilder)), so a stream fills
/// a 10 ms link as well as loopback with nothing set here.
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
/// .with_input()
/// .max_window(1 << 20);
/// # drop(handler);
/// ```
#[derive(Clone)]
pub struct StreamHandler {
    pub(crate) input: bool,
    pub(crate) max_window: Option<u64>,
    pub(crate) call: StreamFn,
}

impl std::fmt::Debug for StreamHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandler")
            .field("input", &self.input)
            .field("max_window", &self.max_window)
            .finish()
    }
}

impl StreamHandler {
    /// A handler that sends messages to the caller and takes none from it.
    pub fn new<F, Fut>(handler: F) -> Self
    where
        F: Fn(StreamCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), RemoteError>> + Send + 'static,
    {
        Self {
            input: false,
            max_window: None,
            call: Arc::new(move |call| Box::pin(handler(call))),
        }
    }

    /// The handler also reads the caller's messages ([`StreamCall::take_input`]); the
    /// caller then gets a sender.
    pub fn with_input(mut self) -> Self {
        self.input = true;
        self
    }

    /// The most bytes of the caller's messages in flight to this handler at once: the cap
    /// of its input's window (default: the node's
    /// [`max_stream_window`](crate::ManagerBuilder::max_stream_window)). A low cap bounds a
    /// handler's memory below what its link could carry.
    pub fn max_window(mut self, bytes: u64) -> Self {
        self.max_window = Some(bytes.max(1));
        self
    }
}
