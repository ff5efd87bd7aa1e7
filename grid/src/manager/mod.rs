//! The manager: this node's identity, its connection to every peer, its handlers and its
//! listener.

mod builder;
mod listener;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpListener;
use uuid::Uuid;

pub use builder::ManagerBuilder;

use crate::codec::HandlerId;
use crate::connection::Connection;
use crate::core::Core;
use crate::error::{Error, RemoteError, Result};
use crate::handler::{single_fn, CallContext, StreamHandler};

/// A node's handle on the grid: owns one [`Connection`] per peer, the handler table and the
/// listener. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), grid::Error> {
/// use bytes::Bytes;
/// use grid::{HandlerId, Manager};
///
/// const ECHO: HandlerId = HandlerId::new(1);
/// let manager = Manager::builder()
///     .local("node-1")
///     .peer("node-2", "ws://10.0.0.2:9000/grid/v1")
///     .token("shared-secret")
///     .build()?;
/// manager.register_single(ECHO, |_ctx, payload: Option<Bytes>| async move { Ok(payload) })?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:9000").await.map_err(|e| grid::Error::Config(e.to_string()))?;
/// tokio::spawn(manager.clone().serve(listener));
/// let node2 = manager.connection("node-2")?;
/// node2.wait_for_connect().await?;
/// let answer = node2.request(ECHO, Bytes::from_static(b"hi")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    inner: Arc<ManagerInner>,
}

struct ManagerInner {
    core: Arc<Core>,
    connections: BTreeMap<String, Connection>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("local", &self.inner.core.local)
            .field("peers", &self.inner.connections.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Manager {
    /// Starts configuring a manager.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// This node's name.
    pub fn local(&self) -> &str {
        &self.inner.core.local
    }

    /// This process's instance id, sent in every handshake (a restart changes it).
    pub fn instance(&self) -> Uuid {
        self.inner.core.instance
    }

    /// The connection to a peer.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] if the manager was not configured with that peer.
    pub fn connection(&self, peer: &str) -> Result<Connection> {
        self.inner
            .connections
            .get(peer)
            .cloned()
            .ok_or_else(|| Error::UnknownPeer(peer.to_owned()))
    }

    /// Every peer connection, ordered by peer name.
    pub fn connections(&self) -> impl Iterator<Item = &Connection> + '_ {
        self.inner.connections.values()
    }

    /// Registers a single-call handler under `id`. The handler gets the call's context and
    /// payload and returns the answer (`Bytes`, or `Option<Bytes>` to answer "absent").
    ///
    /// # Errors
    /// [`Error::HandlerAlreadyExists`] if `id` is taken; [`Error::Config`] for id 0.
    pub fn register_single<F, Fut, R>(&self, id: HandlerId, handler: F) -> Result<()>
    where
        F: Fn(CallContext, Option<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RemoteError>> + Send + 'static,
        R: Into<Option<Bytes>>,
    {
        self.inner
            .core
            .handlers
            .add_single(id, None, single_fn(handler))
    }

    /// Registers a single-call handler under `id` for one subroute (reached through
    /// [`Connection::subroute`]); the context's [`CallContext::subroute`] names it.
    ///
    /// # Errors
    /// As [`Manager::register_single`].
    pub fn register_single_on<F, Fut, R>(
        &self,
        id: HandlerId,
        subroute: &str,
        handler: F,
    ) -> Result<()>
    where
        F: Fn(CallContext, Option<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RemoteError>> + Send + 'static,
        R: Into<Option<Bytes>>,
    {
        self.inner
            .core
            .handlers
            .add_single(id, Some(subroute), single_fn(handler))
    }

    /// Registers a stream handler under `id` (see [`StreamHandler`]).
    ///
    /// # Errors
    /// [`Error::HandlerAlreadyExists`] if `id` is taken (single and stream handlers share
    /// one id space); [`Error::Config`] for id 0.
    pub fn register_stream(&self, id: HandlerId, handler: StreamHandler) -> Result<()> {
        self.inner.core.handlers.add_stream(id, None, handler)
    }

    /// Registers a stream handler under `id` for one subroute.
    ///
    /// # Errors
    /// As [`Manager::register_stream`].
    pub fn register_stream_on(
        &self,
        id: HandlerId,
        subroute: &str,
        handler: StreamHandler,
    ) -> Result<()> {
        self.inner
            .core
            .handlers
            .add_stream(id, Some(subroute), handler)
    }

    /// Accepts peers on `listener` until [`Manager::shutdown`]. Upgrades are accepted on the
    /// route path only (default `/grid/v1`); a wrong path gets 404, a missing bearer token
    /// 401, a refused token 403, all before any upgrade.
    ///
    /// # Cancel safety
    /// Dropping the future stops accepting; connections already accepted carry on.
    pub async fn serve(self, listener: TcpListener) -> Result<()> {
        listener::serve(
            self.inner.core.clone(),
            self.inner.connections.clone(),
            listener,
        )
        .await
    }

    /// Shuts the manager down: stops the listener and every connection, fails every pending
    /// call with [`Error::Closed`], and waits until every task it started has ended.
    ///
    /// # Cancel safety
    /// Shutdown starts at the first poll; awaiting again waits for the tasks again.
    pub async fn shutdown(&self) {
        self.inner.core.shutdown.send_replace(true);
        self.inner.core.tasks.drained().await;
    }

    /// Tasks the manager has running (connections, sockets, handlers); 0 after shutdown.
    pub fn running_tasks(&self) -> usize {
        self.inner.core.tasks.live()
    }
}
