//! One remote peer: its state, its live socket (if any) and the calls made to it.
//!
//! This module is the driver around the protocol engine (`crate::engine`): sockets, tasks
//! and timers. The path of a call: [`Connection::request`] (request.rs; streams:
//! open_stream.rs; both through opening.rs) opens the call in the live session's engine
//! (session.rs), which queues its message; the writer task (writer.rs) takes what the
//! engine has to send and writes it as frames on the socket (websocket.rs); on the remote,
//! the reader task (reader.rs) hands each decoded message to its engine, which admits the
//! call, and starts the handler (serve.rs, then serve_call.rs or serve_stream.rs, with what
//! they share in serve_shared.rs); the answer travels back the same way. Stream ends are in
//! stream_ends.rs. The runner (runner.rs) dials or waits for the peer, runs the handshake
//! (handshake.rs, dial.rs; its decisions are `codec::handshake`'s), drives the engine's
//! timers, and redials after a failure.

/// Boxes the future of a call (`$call` is the `Request` or `OpenStream`), inside a DEBUG
/// span named `$name` with the peer, handler and (recorded later) mux id, when DEBUG is
/// enabled. When it is not, no span is created or carried: even a disabled span held by
/// every call measurably slows calls under load.
macro_rules! traced {
    ($name:literal, $call:expr, $fut:expr) => {{
        if tracing::level_enabled!(tracing::Level::DEBUG) {
            let span = tracing::debug_span!(
                $name,
                peer = %$call.conn.inner.remote,
                handler = %$call.handler,
                mux = tracing::field::Empty,
            );
            Box::pin(tracing::Instrument::instrument($fut, span))
        } else {
            Box::pin($fut)
        }
    }};
}

/// Records a call's mux id in its span (see `traced!`).
pub(crate) fn record_mux(mux_id: u64) {
    if tracing::level_enabled!(tracing::Level::DEBUG) {
        tracing::Span::current().record("mux", mux_id);
    }
}

mod dial;
pub(crate) mod handshake;
mod leaving;
mod lost;
mod open_stream;
mod opening;
mod read_buffer;
mod reader;
mod request;
mod retry;
mod runner;
mod serve;
mod serve_call;
mod serve_shared;
mod serve_stream;
mod websocket;
mod writer;

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::session::Session;
pub(crate) use handshake::Accepted;
pub use open_stream::{OpenStream, Stream};
pub use request::Request;
pub(crate) use websocket::{FrameReader, FrameWriter, Role};

use crate::codec::{subroute_hash, HandlerId};
use crate::core::Core;
use crate::engine::Outgoing;
use crate::error::{Error, Result};
use crate::handler::{Caller, CURRENT_CALL};
use crate::stats::{ConnectionStats, Counters};

/// Where a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Never connected yet.
    Unconnected,
    /// Dialing, or waiting for the peer to dial in.
    Connecting,
    /// A socket is up and calls flow.
    Connected,
    /// A socket is up and one side said it is leaving (a graceful shutdown): what is in
    /// flight finishes, new calls to a leaving peer fail at once with
    /// [`Error::Draining`] (not executed), and the socket closes once nothing is left.
    Draining,
    /// The last attempt or socket failed; a new attempt follows (see [`Connection::last_error`]).
    ConnectionError,
    /// The manager was shut down; the connection is over for good.
    Shutdown,
}

/// The link to one remote peer. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<ConnInner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("local", &self.inner.core.local)
            .field("remote", &self.inner.remote)
            .field("state", &self.state())
            .finish()
    }
}

/// What a single call or a stream open is made of, before it is sent.
pub(crate) struct Call {
    pub(crate) conn: Connection,
    pub(crate) handler: HandlerId,
    /// The subroute's name and hash.
    pub(crate) subroute: Option<(Arc<str>, u64)>,
    pub(crate) payload: Option<Bytes>,
    /// The caller's timeout; `None`: the manager's default.
    pub(crate) deadline: Option<Duration>,
}

impl Call {
    fn new(
        conn: &Connection,
        handler: HandlerId,
        payload: Option<Bytes>,
        subroute: Option<(Arc<str>, u64)>,
    ) -> Self {
        Self {
            conn: conn.clone(),
            handler,
            subroute,
            payload,
            deadline: None,
        }
    }
}

impl Call {
    /// What every call or stream does before it is opened: compute its deadline (the
    /// call's own or the default, capped by the deadline of the call being handled, if
    /// any) and find the live session. Returns the session, what to open, the subroute's
    /// name, and the time now.
    fn prepare(self) -> Result<Prepared> {
        let inner = &self.conn.inner;
        let now = Instant::now();
        let mut deadline = now + self.deadline.unwrap_or(inner.core.config.default_deadline);
        if let Ok(Some(inherited)) = CURRENT_CALL.try_with(|c| c.deadline) {
            deadline = deadline.min(inherited);
        }
        let session = inner.live_session()?;
        let (name, hash) = match self.subroute {
            Some((name, hash)) => (Some(name), Some(hash)),
            None => (None, None),
        };
        let outgoing = Outgoing {
            handler: self.handler,
            subroute: hash,
            payload: self.payload,
            deadline: deadline.into_std(),
        };
        Ok(Prepared {
            session,
            outgoing,
            subroute: name,
            now: now.into_std(),
        })
    }
}

/// A call or stream ready to be opened (see [`Call::prepare`]).
pub(crate) struct Prepared {
    pub(crate) session: Arc<Session>,
    pub(crate) outgoing: Outgoing,
    pub(crate) subroute: Option<Arc<str>>,
    pub(crate) now: std::time::Instant,
}

pub(crate) struct ConnInner {
    pub(crate) core: Arc<Core>,
    pub(crate) remote: Arc<str>,
    /// The peer as the calls it makes here see it (`CallContext::caller`).
    pub(crate) caller: Arc<Caller>,
    pub(crate) url: String,
    pub(crate) dialer: bool,
    /// An admitted client (`ManagerBuilder::client`), not a node of the cluster.
    client: bool,
    pub(crate) counters: Arc<Counters>,
    state: watch::Sender<State>,
    session: RwLock<Option<Arc<Session>>>,
    /// The last failure, and when it happened.
    last_error: Mutex<Option<(Error, Instant)>>,
    remote_instance: watch::Sender<Option<Uuid>>,
    /// Set, with the reason the peer is told, when this connection starts leaving: its node
    /// shuts down, or removed the peer (`leaving.rs`). Handlers see it as
    /// `CallContext::draining`.
    leaving: watch::Sender<Option<Arc<str>>>,
    /// Set when the connection must end now: a removal's drain timed out.
    stop: watch::Sender<bool>,
    /// The peer was removed from the manager: calls find it unknown.
    forgotten: std::sync::atomic::AtomicBool,
    /// Sockets the listener accepted for this peer, to the connection's task. Boxed: the
    /// channel allocates a block of 32 slots up front, which is 9 KB per connection for
    /// unboxed sockets and 256 bytes for boxes.
    incoming: mpsc::Sender<Box<Accepted>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection {
    /// Creates the connection and starts its runner task: it dials `url` when `dialer`,
    /// else it takes the sockets the listener accepts from `remote` (an admitted client
    /// when `url` is `None`). With `after`, the connection this one replaces (the same
    /// peer, removed and added again while it drained), it starts once that one has ended.
    pub(crate) fn start(
        core: Arc<Core>,
        remote: &str,
        url: Option<String>,
        dialer: bool,
        after: Option<Connection>,
    ) -> Connection {
        let client = url.is_none();
        let url = url.unwrap_or_default();
        let (incoming, incoming_rx) = mpsc::channel(1);
        let remote: Arc<str> = Arc::from(remote);
        let leaving = watch::Sender::new(None);
        let inner = Arc::new(ConnInner {
            caller: Arc::new(Caller {
                name: remote.clone(),
                leaving: leaving.subscribe(),
            }),
            leaving,
            stop: watch::Sender::new(false),
            forgotten: std::sync::atomic::AtomicBool::new(false),
            remote,
            url,
            dialer,
            client,
            counters: Arc::default(),
            state: watch::Sender::new(State::Unconnected),
            session: RwLock::new(None),
            last_error: Mutex::new(None),
            remote_instance: watch::Sender::new(None),
            incoming,
            core: core.clone(),
        });
        core.tasks
            .spawn(runner::run(inner.clone(), incoming_rx, after));
        Connection { inner }
    }

    /// The remote peer's name.
    pub fn remote(&self) -> &str {
        &self.inner.remote
    }

    /// True if the remote is an admitted client (`ManagerBuilder::client`), such as a
    /// tool, rather than a node of the cluster.
    pub fn is_client(&self) -> bool {
        self.inner.client
    }

    /// True if this side dials the peer (decided from the two names; see [`dials`]).
    pub fn is_dialer(&self) -> bool {
        self.inner.dialer
    }

    /// The current state.
    pub fn state(&self) -> State {
        *self.inner.state.borrow()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<State> {
        self.inner.state.subscribe()
    }

    /// Waits until the connection is up.
    ///
    /// # Errors
    /// [`Error::Closed`] if the manager shuts down first.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_for_connect(&self) -> Result<()> {
        let mut rx = self.inner.state.subscribe();
        let state = rx
            .wait_for(|s| matches!(s, State::Connected | State::Shutdown))
            .await
            .map_err(|_| Error::Closed)?;
        match *state {
            State::Connected => Ok(()),
            _ => Err(Error::Closed),
        }
    }

    /// Prepares a single call to handler `id` on the peer. `payload` may be `None` (absent)
    /// or bytes (possibly empty, which stays distinct from absent).
    pub fn request(&self, id: HandlerId, payload: impl Into<Option<Bytes>>) -> Request {
        Request {
            call: Call::new(self, id, payload.into(), None),
            idempotent: false,
        }
    }

    /// Prepares to open a stream to handler `id` on the peer with an initial payload.
    /// Await it to get the caller's ends ([`Stream`]).
    pub fn open_stream(&self, id: HandlerId, payload: impl Into<Option<Bytes>>) -> OpenStream {
        OpenStream {
            call: Call::new(self, id, payload.into(), None),
            max_window: None,
        }
    }

    /// A view of this connection that calls the handlers registered under `subroute` on the
    /// peer (for example one handler instance per disk).
    pub fn subroute(&self, subroute: &str) -> Subroute {
        Subroute {
            conn: self.clone(),
            name: Arc::from(subroute),
            hash: subroute_hash(subroute),
        }
    }

    /// A snapshot of this connection's counters, including calls in flight right now.
    pub fn stats(&self) -> ConnectionStats {
        let live = self.inner.current_session().map(|s| {
            s.with(|e| {
                let (in_flight_calls, in_flight_handlers) = e.in_flight();
                crate::stats::Live {
                    in_flight_calls,
                    in_flight_handlers,
                    assembling_bytes: e.assembling() as u64,
                    last_ping_rtt: e.last_rtt(),
                    stream_window_bytes: e.stream_windows(),
                    chunk_window_bytes: e.chunk_window(),
                }
            })
        });
        self.inner.counters.snapshot(live.unwrap_or_default())
    }

    /// Whether messages on the live socket carry checksums, as agreed in the handshake:
    /// they do unless both sides' transports are TLS; `None` while not connected.
    pub fn uses_checksums(&self) -> Option<bool> {
        self.inner.current_session().map(|s| s.checksum)
    }

    /// The remote's instance id from the last handshake (changes when it restarts).
    pub fn remote_instance(&self) -> Option<Uuid> {
        *self.inner.remote_instance.borrow()
    }

    /// A receiver that sees the remote's instance id after every handshake.
    pub fn watch_remote_instance(&self) -> watch::Receiver<Option<Uuid>> {
        self.inner.remote_instance.subscribe()
    }

    /// Why the last connection attempt or socket failed, if one did. It is kept after the
    /// connection comes back (it says how the connection was lost, not how it is now):
    /// [`Connection::last_error_age`] says when it happened.
    pub fn last_error(&self) -> Option<Error> {
        lock(&self.inner.last_error)
            .as_ref()
            .map(|(e, _)| e.clone())
    }

    /// The last failure (as [`Connection::last_error`]) and how long ago it happened.
    pub fn last_error_age(&self) -> Option<(Error, Duration)> {
        lock(&self.inner.last_error)
            .as_ref()
            .map(|(e, at)| (e.clone(), at.elapsed()))
    }

    /// Waits until the connection is over for good (its manager shut down, or drained).
    pub(crate) async fn wait_shut(&self) {
        let mut rx = self.inner.state.subscribe();
        let _ = rx.wait_for(|s| *s == State::Shutdown).await;
    }

    /// Waits until no call or handler is in flight on this connection, and no chunked
    /// payload is half received.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_idle(&self) {
        poll_fn(|cx| match self.inner.current_session() {
            Some(s) if !s.with(|e| e.poll_idle(cx.waker())) => Poll::Pending,
            _ => Poll::Ready(()),
        })
        .await
    }
}

/// A connection seen through a subroute: calls reach the handlers registered under that
/// subroute on the peer.
#[derive(Clone, Debug)]
pub struct Subroute {
    conn: Connection,
    name: Arc<str>,
    hash: u64,
}

impl Subroute {
    /// The subroute's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connection underneath.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Prepares to open a stream to handler `id` under this subroute.
    pub fn open_stream(&self, id: HandlerId, payload: impl Into<Option<Bytes>>) -> OpenStream {
        OpenStream {
            call: Call::new(
                &self.conn,
                id,
                payload.into(),
                Some((self.name.clone(), self.hash)),
            ),
            max_window: None,
        }
    }

    /// Prepares a single call to handler `id` under this subroute.
    pub fn request(&self, id: HandlerId, payload: impl Into<Option<Bytes>>) -> Request {
        Request {
            call: Call::new(
                &self.conn,
                id,
                payload.into(),
                Some((self.name.clone(), self.hash)),
            ),
            idempotent: false,
        }
    }
}

/// Unsent bytes a socket's kernel buffer holds at most before it stops taking more: what a
/// frame written now may have to wait behind (HTTP/2 servers bound it the same way).
const NOTSENT_LOWAT: u32 = 128 * 1024;

/// Sets a connection's socket up: no Nagle delay, and (on Linux) at most
/// [`NOTSENT_LOWAT`] bytes written and not yet sent, so that the writer, not the kernel,
/// holds the backlog of bulk data and a small call or a credit written now goes out after
/// at most that much, not after megabytes. Failures only cost latency: they are ignored.
pub(crate) fn configure_socket(tcp: &tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _ = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(NOTSENT_LOWAT);
    }
}

impl ConnInner {
    fn current_session(&self) -> Option<Arc<Session>> {
        self.session
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Installs (or, with `None`, removes) the live session.
    fn set_session(&self, session: Option<Arc<Session>>) {
        *self.session.write().unwrap_or_else(|e| e.into_inner()) = session;
    }

    /// The live session, or the error a call gets when there is none.
    fn live_session(&self) -> Result<Arc<Session>> {
        self.current_session().ok_or_else(|| self.lost_error())
    }

    /// The error for a call that finds no live socket (it was not sent).
    pub(crate) fn lost_error(&self) -> Error {
        if self.is_forgotten() {
            Error::UnknownPeer(self.remote.to_string())
        } else if self.core.is_shut_down() {
            Error::Closed
        } else {
            Error::NOT_SENT
        }
    }

    fn set_state(&self, state: State) {
        self.state.send_if_modified(|s| {
            let changed = *s != state && *s != State::Shutdown;
            if changed {
                *s = state;
            }
            changed
        });
    }

    /// Records why the last attempt or socket failed; whether that differs from the last
    /// reason (the caller logs it then, so a peer that stays down is logged once).
    fn set_error(&self, err: Error) -> bool {
        let mut last = lock(&self.last_error);
        let new = last.as_ref().map(|(e, _)| e) != Some(&err);
        *last = Some((err, Instant::now()));
        new
    }

    pub(crate) async fn hand_over(&self, accepted: Accepted) {
        let _ = self.incoming.send(Box::new(accepted)).await;
    }
}

/// Whether `local` dials `remote`: a symmetric, deterministic choice from the two names,
/// so that exactly one side of every pair dials. The low bit of xxh3 over the two names in
/// sorted order picks the smaller or the larger name; this spreads dialing evenly instead of
/// letting one node dial everyone.
pub fn dials(local: &str, remote: &str) -> bool {
    let (lo, hi) = if local <= remote {
        (local, remote)
    } else {
        (remote, local)
    };
    let mut key = Vec::with_capacity(lo.len() + hi.len() + 1);
    key.extend_from_slice(lo.as_bytes());
    key.push(0);
    key.extend_from_slice(hi.as_bytes());
    let smaller_dials = crate::codec::wire::xxh3_64(&key) & 1 == 0;
    (local == lo) == smaller_dials
}
