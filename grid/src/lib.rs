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
//!   connection redials in the background ([`Connection::wait_for_connect`]).
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
//! The wire protocol is described in `PROTOCOL.md` at the repository root.
#![deny(missing_docs)]

pub mod codec;
mod connection;
mod core;
mod error;
mod handler;
mod manager;
mod mux;
mod stats;
mod tasks;
pub mod typed;

pub use bytes::Bytes;
pub use connection::{dials, Connection, OpenStream, Request, State, Stream, Subroute};
pub use core::{TokenProvider, TokenValidator};
pub use error::{Error, RemoteError, Result};
pub use grid_macros::service;
pub use handler::{CallContext, HandlerId, SingleFuture, StreamCall, StreamFuture, StreamHandler};
pub use manager::{Manager, ManagerBuilder};
pub use mux::{Permit, StreamReceiver, StreamSender};
pub use stats::ConnectionStats;
pub use typed::{Receiver, Sender, Service, ServiceServer, Target};
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
            const _: () = {
                if <$head as $crate::Service>::SERVICE_ID == <$tail as $crate::Service>::SERVICE_ID {
                    ::core::panic!(::core::concat!(
                        "services `", ::core::stringify!($head), "` and `", ::core::stringify!($tail),
                        "` have the same service id; give one of them another #[grid::service(id = N)]"
                    ));
                }
            };
        )*
        $crate::services!(@pairs $($tail),*);
    };
    (@pairs) => {};
    ($($service:ty),+ $(,)?) => {
        $crate::services!(@pairs $($service),+);
    };
}
