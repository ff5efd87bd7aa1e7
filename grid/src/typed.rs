//! The typed layer that `#[grid::service]` generates code against: payload encoding, typed
//! stream ends, call targets, and service registration.
//!
//! Payloads are MessagePack maps keyed by field name (`rmp_serde::to_vec_named`), so a
//! service can add a field to a request or response without breaking older peers: older
//! peers ignore fields they do not know, and newer peers read a missing field as its
//! default when it is an `Option` or marked `#[serde(default)]`. They are encoded by
//! `rmp_serde` and decoded by grid's own reader (`typed_decoder`), which leaves to
//! `rmp_serde` whatever it does not read the same way.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream as FuturesStream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::connection::{Connection, OpenStream, Request, Subroute};
use crate::describe::MethodInfo;
use crate::error::{Error, RemoteError, Result};
use crate::handler::{single_fn, CallContext, Handler, HandlerId, Handlers, StreamHandler};
use crate::stream_ends::{StreamReceiver, StreamSender};

/// Encodes a payload.
///
/// # Errors
/// [`Error::Codec`] if the value cannot be serialized.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    // Into a reused buffer, then an arena: no allocation (or reallocation chain) per payload.
    crate::arena::encode_with(|buf| rmp_serde::encode::write_named(buf, value))
        .map_err(|e| encode_failed::<T>(&e))
}

fn encode_failed<T: ?Sized>(e: &rmp_serde::encode::Error) -> Error {
    Error::Codec(format!("cannot encode {}: {e}", std::any::type_name::<T>()))
}

/// Decodes a payload.
///
/// # Errors
/// [`Error::Codec`] naming the type and the reason.
pub fn decode<T: DeserializeOwned>(payload: Option<&[u8]>) -> Result<T> {
    decode_from(payload.unwrap_or_default())
}

/// Decodes a payload into a value that may borrow from it.
fn decode_from<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T> {
    // The fast path reads what grid writes; what it leaves (and every error) is
    // `rmp_serde`'s, so the two never disagree on what a payload means.
    crate::typed_decoder::from_slice(payload).or_else(|_| {
        rmp_serde::from_slice(payload)
            .map_err(|e| Error::Codec(format!("cannot decode {}: {e}", std::any::type_name::<T>())))
    })
}

/// A received stream item before it is decoded, lent where it lies (in the frame it arrived
/// in) for the length of a [`Receiver::recv_with`] call.
#[derive(Debug, Clone, Copy)]
pub struct Lent<'a> {
    payload: &'a [u8],
}

impl<'a> Lent<'a> {
    /// Decodes the item as `B`: the stream's item type, or a view of it whose fields borrow
    /// from the received bytes (`&'a str`; `Cow<'a, str>` or `Vec<&'a str>` with
    /// `#[serde(borrow)]`; `&'a [u8]` for a field sent as bytes, e.g. with `serde_bytes`),
    /// so that reading it allocates nothing for those fields. Field names are matched as in
    /// any decoding (PROTOCOL.md §8): a view may leave out the fields it does not need.
    ///
    /// # Errors
    /// [`Error::Codec`] naming `B` and the reason; the stream goes on.
    pub fn decode<B: Deserialize<'a>>(self) -> Result<B> {
        decode_from(self.payload)
    }

    /// The item's encoding: a MessagePack value (PROTOCOL.md §8).
    pub fn bytes(self) -> &'a [u8] {
        self.payload
    }
}

/// Where a typed client sends its calls: a connection, or a subroute of one.
#[derive(Clone, Debug)]
pub enum Target {
    /// The handlers registered without a subroute.
    Connection(Connection),
    /// The handlers registered under a subroute.
    Subroute(Subroute),
}

impl Target {
    /// A single call to `id`.
    pub fn request(&self, id: HandlerId, payload: Bytes) -> Request {
        match self {
            Target::Connection(c) => c.request(id, payload),
            Target::Subroute(s) => s.request(id, payload),
        }
    }

    /// Opens a stream to `id`.
    pub fn open_stream(&self, id: HandlerId, payload: Bytes) -> OpenStream {
        match self {
            Target::Connection(c) => c.open_stream(id, payload),
            Target::Subroute(s) => s.open_stream(id, payload),
        }
    }
}

impl From<Connection> for Target {
    fn from(c: Connection) -> Self {
        Target::Connection(c)
    }
}

impl From<&Connection> for Target {
    fn from(c: &Connection) -> Self {
        Target::Connection(c.clone())
    }
}

impl From<&Subroute> for Target {
    fn from(s: &Subroute) -> Self {
        Target::Subroute(s.clone())
    }
}

impl From<Subroute> for Target {
    fn from(s: Subroute) -> Self {
        Target::Subroute(s)
    }
}

/// The typed sending end of a stream: each item is encoded, then sent against credit.
pub struct Sender<T> {
    inner: StreamSender,
    _items: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: Serialize> Sender<T> {
    /// Wraps a byte-level sender.
    pub fn new(inner: StreamSender) -> Self {
        Self {
            inner,
            _items: PhantomData,
        }
    }

    /// Sends one item, waiting for credit if the receiver is behind.
    ///
    /// # Errors
    /// [`Error::Codec`] if the item cannot be encoded; otherwise as
    /// [`StreamSender::send`].
    ///
    /// # Cancel safety
    /// As [`StreamSender::send`].
    pub async fn send(&mut self, item: &T) -> Result<()> {
        // Encoded straight into the stream's outgoing stage where it can be (a handler's
        // output), with no buffer of its own.
        self.inner
            .send_encoded(|buf| {
                rmp_serde::encode::write_named(buf, item).map_err(|e| encode_failed::<T>(&e))
            })
            .await
    }

    /// Sends every item, in order, waiting for credit whenever the receiver is behind;
    /// as many items as the credit covers are encoded and queued in one step (see
    /// [`StreamSender::send_all`]). Items may be given by value or by reference.
    ///
    /// # Errors
    /// [`Error::Codec`] for an item that cannot be encoded: the items before it were sent,
    /// it and the rest were not. Otherwise as [`StreamSender::send_all`].
    ///
    /// # Cancel safety
    /// As [`StreamSender::send_all`] (not cancel safe).
    pub async fn send_all<I>(&mut self, items: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: Borrow<T>,
    {
        if self.inner.stages() {
            // A handler's own output: each item encoded straight into the stage, as `send`
            // does, and queued with the others in one step.
            for item in items {
                self.send(item.borrow()).await?;
            }
            return Ok(());
        }
        let mut failed = None;
        let encoded = items
            .into_iter()
            .map_while(|item| match encode(item.borrow()) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            });
        self.inner.send_all(encoded).await?;
        failed.map_or(Ok(()), Err)
    }

    /// Ends this direction (EOF) after the items already sent. A caller's sender dropped
    /// without it cancels the stream instead (see [`StreamSender::finish`]).
    ///
    /// # Errors
    /// As [`StreamSender::finish`].
    ///
    /// # Cancel safety
    /// As [`StreamSender::finish`].
    pub async fn finish(self) -> Result<()> {
        self.inner.finish().await
    }

    /// Items that could be sent right now without waiting.
    pub fn credit(&self) -> usize {
        self.inner.credit()
    }

    /// The byte-level sender underneath.
    pub fn into_inner(self) -> StreamSender {
        self.inner
    }
}

/// The typed receiving end of a stream: a [`futures::Stream`] of decoded items.
pub struct Receiver<T> {
    inner: StreamReceiver,
    _items: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    /// Wraps a byte-level receiver.
    pub fn new(inner: StreamReceiver) -> Self {
        Self {
            inner,
            _items: PhantomData,
        }
    }

    /// The next item; `None` after the end. An item that cannot be decoded is an
    /// [`Error::Codec`] item; the stream goes on.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn recv(&mut self) -> Option<Result<T>> {
        futures::StreamExt::next(self).await
    }

    /// The next item, lent to `read` before it is decoded, where it lies in the frame it
    /// arrived in: `read` decodes it ([`Lent::decode`]), as the item type or as a view that
    /// borrows from it, and returns what it keeps. `None` after the end (`read` is not
    /// called); `Some(Err)` if the stream failed.
    ///
    /// ```no_run
    /// # async fn run(mut entries: grid::Receiver<String>) -> Result<(), grid::Error> {
    /// // Each name is read in place: no String is allocated for it.
    /// while let Some(len) = entries.recv_with(|item| item.decode::<&str>().map(str::len)).await {
    ///     println!("{} bytes", len??);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: an item is taken only in the poll that calls `read` on it.
    pub async fn recv_with<R>(&mut self, read: impl FnOnce(Lent<'_>) -> R) -> Option<Result<R>> {
        let mut read = Some(read);
        let made = std::future::poll_fn(|cx| {
            self.inner
                .poll_read(|payload| read.take().map(|read| read(Lent { payload })), cx)
        })
        .await?;
        // `read` is called once, in the poll that completes this future: always `Some`.
        Some(made.and_then(|r| r.ok_or(Error::Cancelled)))
    }

    /// Cancels the stream (caller side; see [`StreamReceiver::cancel`]).
    pub fn cancel(&mut self) {
        self.inner.cancel();
    }

    /// The byte-level receiver underneath.
    pub fn into_inner(self) -> StreamReceiver {
        self.inner
    }
}

impl<T: DeserializeOwned> FuturesStream for Receiver<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Decoded where it lies, in the frame it arrived in: decoding copies what it keeps.
        self.inner
            .poll_read(|payload| decode(Some(payload)), cx)
            .map(|item| item.map(|r| r.and_then(|decoded| decoded)))
    }
}

/// What a generated service describes about itself.
pub trait Service {
    /// The trait's name.
    const NAME: &'static str;
    /// The service id (the high 16 bits of its handler ids).
    const SERVICE_ID: u16;
    /// Every method: its name, handler id, shape and types (what the node's built-in
    /// service lists, [`crate::builtin`]).
    const METHODS: &'static [MethodInfo];
}

/// A server for a service (generated by `#[grid::service]`): the handlers to register.
pub trait ServiceServer {
    /// The handlers of this service, ready to register.
    fn registrations(self) -> Registrations;
}

/// Handlers to register together (all or none), built by generated servers.
#[derive(Default)]
pub struct Registrations {
    pub(crate) items: Vec<(HandlerId, Handler)>,
    /// The service's name and its methods (for the per-handler counters and the listing).
    pub(crate) names: Option<(&'static str, &'static [MethodInfo])>,
}

impl std::fmt::Debug for Registrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.items.iter().map(|(id, _)| id))
            .finish()
    }
}

impl Registrations {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// No handlers yet, of the service `S` (its name and its methods' label the
    /// per-handler counters).
    pub fn of<S: Service>() -> Self {
        Self {
            items: Vec::new(),
            names: Some((S::NAME, S::METHODS)),
        }
    }

    /// Adds these handlers to `handlers` under `subroute`: all of them, or none if any id
    /// is taken. Only grid's own service (`builtin`) may use the ids reserved for it.
    pub(crate) fn add_to(
        self,
        handlers: &Handlers,
        subroute: Option<&str>,
        builtin: bool,
    ) -> Result<()> {
        let names = self.names;
        handlers.add_all(
            subroute,
            self.items,
            |id| Self::names_of(names, id),
            builtin,
        )
    }

    /// The names of handler `id`, if this is a typed service's.
    fn names_of(
        names: Option<(&'static str, &'static [MethodInfo])>,
        id: HandlerId,
    ) -> crate::handler::Names {
        let Some((service, methods)) = names else {
            return crate::handler::Names::default();
        };
        crate::handler::Names {
            service: Some(service),
            method: methods.iter().find(|m| m.id == id),
        }
    }

    /// Adds a single-call handler.
    pub fn single<F, Fut>(mut self, id: HandlerId, handler: F) -> Self
    where
        F: Fn(CallContext, Option<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::result::Result<Bytes, RemoteError>> + Send + 'static,
    {
        self.items.push((id, Handler::Single(single_fn(handler))));
        self
    }

    /// Adds a stream handler.
    pub fn stream(mut self, id: HandlerId, handler: StreamHandler) -> Self {
        self.items.push((id, Handler::Stream(handler)));
        self
    }
}

/// The answer to an upload (a method that takes a stream of items and answers once): await
/// it after finishing the [`Sender`].
///
/// ```no_run
/// use grid::{Receiver, RemoteError};
///
/// #[grid::service(id = 3)]
/// pub trait Ingest {
///     /// Stores the lines streamed; answers how many.
///     #[grid(stream)]
///     async fn put_many(&self, batch: String, input: Receiver<String>) -> Result<u64, RemoteError>;
/// }
///
/// # async fn upload(conn: grid::Connection) -> grid::Result<()> {
/// let (mut lines, answer) = IngestClient::new(conn).put_many("b1".into()).await?;
/// for line in ["a", "b", "c"] {
///     lines.send(&line.to_owned()).await?;
/// }
/// lines.finish().await?;
/// let stored: u64 = answer.await?;
/// # let _ = stored;
/// # Ok(())
/// # }
/// ```
pub struct Answer<T> {
    items: Receiver<T>,
}

impl<T> std::fmt::Debug for Answer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer").finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + 'static> Answer<T> {
    /// Wraps the receiving end of an upload's stream (its one item is the answer).
    pub fn new(items: Receiver<T>) -> Self {
        Self { items }
    }
}

impl<T: DeserializeOwned + Send + 'static> std::future::IntoFuture for Answer<T> {
    type Output = Result<T>;
    type IntoFuture = Pin<Box<dyn std::future::Future<Output = Result<T>> + Send>>;

    /// Waits for the handler's answer: its value, or its error (or the stream's: the
    /// deadline, a lost connection, a cancel).
    ///
    /// # Cancel safety
    /// Dropping the future before the answer arrives cancels the upload.
    fn into_future(mut self) -> Self::IntoFuture {
        Box::pin(async move {
            let answer = match self.items.recv().await {
                Some(answer) => answer?,
                None => {
                    return Err(Error::Protocol(
                        "the upload's stream ended without an answer".into(),
                    ))
                }
            };
            // Read the end too, so the stream closes cleanly rather than by a cancel.
            match self.items.recv().await {
                None => Ok(answer),
                Some(Err(e)) => Err(e),
                Some(Ok(_)) => Err(Error::Protocol(
                    "the upload was answered more than once".into(),
                )),
            }
        })
    }
}

/// Support for generated code; not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    /// Implemented when two services' ids differ (`DISTINCT`): what [`crate::services!`]
    /// requires of every pair, so that a clash is a compile error at the second service.
    #[diagnostic::on_unimplemented(
        message = "service `{Self}` has the same service id as `{B}`; their handler ids would collide on the wire",
        label = "give one of them another #[grid::service(id = N)]"
    )]
    pub trait DistinctFrom<B, const DISTINCT: bool> {}

    impl<A, B> DistinctFrom<B, true> for A {}

    /// Compiles only when `A` and `B` have different ids (`DISTINCT` says whether they do).
    pub const fn require_distinct<A: DistinctFrom<B, DISTINCT>, B, const DISTINCT: bool>() {}

    /// Decodes a request on the handler side: a failure reaches the caller as
    /// [`Error::Codec`].
    pub fn decode_request<T: DeserializeOwned>(
        payload: Option<&[u8]>,
    ) -> std::result::Result<T, RemoteError> {
        decode(payload).map_err(|e| RemoteError::codec(e.to_string()))
    }

    /// Encodes a response on the handler side.
    pub fn encode_response<T: Serialize>(value: &T) -> std::result::Result<Bytes, RemoteError> {
        encode(value).map_err(|e| RemoteError::new(e.to_string()))
    }

    /// The caller's deadline for a method: the client's, else the method's default.
    pub fn deadline(
        client: Option<std::time::Duration>,
        method_ms: u64,
    ) -> Option<std::time::Duration> {
        client.or((method_ms > 0).then(|| std::time::Duration::from_millis(method_ms)))
    }

    /// A call to an idempotent method (`#[grid(idempotent)]`): retried when lost with its
    /// connection or answered busy, within `deadline` (see `retry.rs`).
    pub async fn call_idempotent(
        target: &Target,
        id: HandlerId,
        payload: Bytes,
        deadline: Option<std::time::Duration>,
    ) -> Result<Option<Bytes>> {
        let mut call = target.request(id, payload).idempotent();
        if let Some(d) = deadline {
            call = call.deadline(d);
        }
        call.await
    }

    /// Compiles only for types that can travel on the wire (generated next to each
    /// method's types, so a missing `Serialize`/`Deserialize` is reported at the type).
    pub fn assert_wire_type<T: Serialize + DeserializeOwned>() {}

    /// The current call's context (for generated dispatch).
    pub fn context() -> Option<CallContext> {
        CallContext::current()
    }
}
