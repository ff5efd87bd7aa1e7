//! # grid
//!
//! RPC between the nodes of a cluster: one multiplexed WebSocket per pair of peers, calls in
//! both directions, deadlines and cancellation that reach the handler, and automatic
//! reconnection.
//!
//! ## Concepts
//! - A [`Manager`] is one node's handle on the grid. It knows its own name and every
//!   peer's URL, owns one [`Connection`] per peer, the handlers registered on this node, and
//!   the listener ([`Manager::serve`]).
//! - For every pair of nodes exactly one side dials ([`dials`] decides from the names);
//!   once connected, both sides call each other's handlers over the same socket.
//! - A *single call* sends one payload to a handler and gets one answer:
//!   `conn.request(id, payload).deadline(d).await`. The deadline travels to the handler;
//!   dropping the future cancels the handler on the remote.
//! - When a socket dies every call on it fails at once with [`Error::Disconnected`] and the
//!   connection redials in the background ([`Connection::wait_for_connect`]). Every
//!   failure says whether the handler can have run ([`Error::execution`]): a call never
//!   written to the socket was [`Execution::NotExecuted`] and is safe to retry.
//!
//! ```no_run
//! # async fn demo() -> Result<(), grid::Error> {
//! use bytes::Bytes;
//! use grid::{HandlerId, Manager};
//!
//! const UPPER: HandlerId = HandlerId::new(7);
//! let manager = Manager::builder()
//!     .local("a")
//!     .peer("b", "ws://127.0.0.1:9001/grid/v1")
//!     .token("secret")
//!     .build()?;
//! manager.register_single(UPPER, |ctx, payload: Option<Bytes>| async move {
//!     let text = payload.unwrap_or_default().to_ascii_uppercase();
//!     tracing::info!(caller = ctx.caller(), "upper-casing");
//!     Ok(Bytes::from(text))
//! })?;
//! let b = manager.connection("b")?;
//! b.wait_for_connect().await?;
//! let answer = b.request(UPPER, Bytes::from_static(b"hi")).await?;
//! assert_eq!(answer.as_deref(), Some(&b"HI"[..]));
//! # Ok(()) }
//! ```
//!
//! ## Typed services
//!
//! Write the API as a trait under [`macro@service`]; implement it; register the generated
//! server; call the generated client. Ids are stable on the wire: the service id you give,
//! and a method id derived from the method's name (or `#[grid(id = N)]`).
//!
//! ```
//! use futures::StreamExt;
//! use grid::{RemoteError, Sender};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct Greeting {
//!     pub name: String,
//! }
//!
//! #[grid::service(id = 42)]
//! pub trait Greeter {
//!     /// A single call.
//!     async fn greet(&self, req: Greeting) -> Result<String, RemoteError>;
//!
//!     /// The handler streams its answers back.
//!     #[grid(stream)]
//!     async fn count(&self, up_to: u32, out: Sender<u32>) -> Result<(), RemoteError>;
//! }
//!
//! struct Friendly;
//!
//! impl Greeter for Friendly {
//!     async fn greet(&self, req: Greeting) -> Result<String, RemoteError> {
//!         let caller = grid::CallContext::current().map(|c| c.caller().to_owned());
//!         Ok(format!("hello {} (from {})", req.name, caller.unwrap_or_default()))
//!     }
//!
//!     async fn count(&self, up_to: u32, mut out: Sender<u32>) -> Result<(), RemoteError> {
//!         for i in 1..=up_to {
//!             out.send(&i).await?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Two nodes in one process, on loopback.
//! let (la, lb) = (tokio::net::TcpListener::bind("127.0.0.1:0").await?, tokio::net::TcpListener::bind("127.0.0.1:0").await?);
//! let (ua, ub) = (format!("ws://{}/grid/v1", la.local_addr()?), format!("ws://{}/grid/v1", lb.local_addr()?));
//! let a = grid::Manager::builder().local("a").peer("a", ua.clone()).peer("b", ub.clone()).token("s").build()?;
//! let b = grid::Manager::builder().local("b").peer("a", ua).peer("b", ub).token("s").build()?;
//! b.register(GreeterServer::new(Friendly))?;
//! tokio::spawn(a.clone().serve(la));
//! tokio::spawn(b.clone().serve(lb));
//!
//! let to_b = a.connection("b")?;
//! to_b.wait_for_connect().await?;
//! let greeter = GreeterClient::new(to_b);
//! assert_eq!(greeter.greet(Greeting { name: "grid".into() }).await?, "hello grid (from a)");
//! let counted: Vec<u32> = greeter.count(3).await?.map(|n| n.unwrap()).collect().await;
//! assert_eq!(counted, [1, 2, 3]);
//! # a.shutdown().await;
//! # b.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The wire protocol is described in `PROTOCOL.md` at the repository root.
#![deny(missing_docs)]

#[cfg(fuzzing)]
#[doc(hidden)]
#[path = "fuzz/mod.rs"]
pub mod __fuzz;
mod arena;
pub mod builtin;
pub mod codec;
mod connection;
mod core;
pub mod describe;
mod engine;
mod error;
#[cfg(any(doc, test))]
pub mod example;
mod handler;
mod manager;
pub mod many;
mod metrics;
mod send_stage;
mod session;
mod stats;
pub mod status;
mod stream_ends;
mod tasks;
pub mod typed;
mod typed_decoder;

/// TLS through rustls (feature `tls`): the types to build client and server settings with.
#[cfg(feature = "tls")]
pub mod tls {
    pub use tokio_rustls::rustls;
}

pub use bytes::Bytes;
pub use connection::{dials, Connection, OpenStream, Request, State, Stream, Subroute};
pub use core::{TokenProvider, TokenValidator};
pub use describe::{CallShape, HandlerInfo, Listing, MethodInfo};
pub use error::{Error, Execution, QuorumFailure, RemoteError, Result};
/// Turns a trait into a grid service. See the [crate documentation](crate#typed-services)
/// for a complete example.
///
/// `#[grid::service(id = N)]` (N in 1..=65535, stable on the wire) on a trait of
/// `async fn` methods taking `&self` generates, next to the trait (rewritten so that its
/// futures are `Send`):
/// - `{Trait}Service`: one `HandlerId` constant per method (`{Trait}Service::METHOD_NAME`)
///   and the [`Service`] description, for [`services!`];
/// - `{Trait}Server<T>`: wraps an implementation; register it with [`Manager::register`]
///   (or [`Manager::register_on`] for a subroute); all methods or none;
/// - `{Trait}Client`: one async method per service method, built from a [`Connection`]
///   or [`Subroute`]; cheap to clone; `with_deadline(d)` for a per-client or per-call
///   deadline.
///
/// Method shapes:
/// - single: `async fn m(&self, req: Req) -> Result<Resp, RemoteError>`;
/// - handler stream: `#[grid(stream)] async fn m(&self, req: Req, out: Sender<Item>) ->
///   Result<(), RemoteError>`; the client gets a [`Receiver`];
/// - two-way: `#[grid(stream)] async fn m(&self, req: Req, input: Receiver<In>, out:
///   Sender<Item>) -> Result<(), RemoteError>`; the client gets a [`Sender`] and a
///   [`Receiver`].
/// - upload: `#[grid(stream)] async fn m(&self, req: Req, input: Receiver<In>) ->
///   Result<Resp, RemoteError>`: the caller streams, the handler answers once; the client
///   gets a [`Sender`] and an [`Answer`] to await after `finish`.
///
/// The [`example`] module is a service of each shape as the macro expands it: its
/// `StorageClient` page lists the caller's methods with their exact return types.
///
/// Options in `#[grid(...)]`: `stream`, `id = N` (method id, 1..=65535; default: a hash of
/// the name, see PROTOCOL.md), `max_window = "1MiB"` (a stream's cap on the window of
/// each of its directions, in bytes: an integer or a string with `KiB`, `MiB`, `GiB`;
/// default: the node's `max_stream_window`), `deadline_ms = N` (the method's default
/// deadline), `idempotent` (a single call safe to run twice: its client makes it again
/// when it is lost with its connection or answered busy, after a jittered pause and once
/// the peer is back, within its deadline; counted in
/// [`ConnectionStats::retries`](crate::ConnectionStats), as
/// [`Request::idempotent`](crate::Request::idempotent) does a byte-level call; a method
/// without it is never retried, and on a stream it is a compile error). Requests, responses and items are any serde types,
/// encoded as MessagePack maps (adding an `Option` or `#[serde(default)]` field stays
/// compatible both ways). Handlers reach the caller, deadline and subroute through
/// [`CallContext::current`]. Mistakes (two methods with one id, reserved ids, a method that
/// is not async, no `&self`, a wrong return type, a stream without its `Sender`, generic
/// methods, parameter patterns) are compile errors at the offending span, all reported at
/// once.
///
/// Generated code names the runtime crate as `::grid`. If you renamed the dependency
/// (`rpc = { package = ... }` in Cargo.toml), say so: `#[rpc::service(id = N, crate =
/// "::rpc")]`.
pub use grid_macros::service;
pub use handler::{
    CallContext, HandlerId, HandlerStats, Interceptor, Outcome, SingleFuture, StreamCall,
    StreamFuture, StreamHandler, LATENCY_BOUNDS,
};
pub use manager::{
    DnsPeers, FilePeers, Manager, ManagerBuilder, Member, MembershipChange, PeerSource, Resolve,
    StaticPeers, SystemResolver,
};
pub use metrics::{ManagerStats, PeerStats};
pub use stats::ConnectionStats;
pub use stream_ends::{Permit, StreamReceiver, StreamSender};
pub use typed::{Answer, Lent, Receiver, Sender, Service, ServiceServer, Target};
pub use uuid::Uuid;

/// The repository README's code, compiled as a doctest so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Declares the services a node serves together, and fails to compile if two of them have
/// the same service id (their handler ids would collide on the wire):
///
/// ```compile_fail
/// # use grid::RemoteError;
/// #[grid::service(id = 7)]
/// pub trait Disks {
///     async fn info(&self, disk: u32) -> Result<u64, RemoteError>;
/// }
/// #[grid::service(id = 7)]
/// pub trait Locks {
///     async fn lock(&self, name: String) -> Result<bool, RemoteError>;
/// }
/// grid::services![DisksService, LocksService]; // error: same service id
/// ```
#[macro_export]
macro_rules! services {
    (@pairs $head:ty $(, $tail:ty)*) => {
        $(
            const _: () = $crate::typed::__private::require_distinct::<
                $tail,
                $head,
                { <$head as $crate::Service>::SERVICE_ID != <$tail as $crate::Service>::SERVICE_ID },
            >();
        )*
        $crate::services!(@pairs $($tail),*);
    };
    (@pairs) => {};
    ($($service:ty),+ $(,)?) => {
        $crate::services!(@pairs $($service),+);
    };
}
