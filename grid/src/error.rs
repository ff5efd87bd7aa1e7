//! The one error type of grid, and the error a handler returns.

use crate::codec::{ErrorKind, ErrorPayload, HandlerId};

/// An error returned by a remote handler, carrying the remote's message.
///
/// Handlers return it to fail a call; callers receive it inside [`Error::Remote`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    /// The message the handler gave.
    pub message: String,
    /// The handler side could not decode the request: the caller gets [`Error::Codec`].
    pub(crate) codec: bool,
}

impl RemoteError {
    /// Creates a remote error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            codec: false,
        }
    }

    /// A request the handler side could not decode; the caller gets [`Error::Codec`].
    pub(crate) fn codec(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            codec: true,
        }
    }

    /// The wire kind of this error.
    pub(crate) fn kind(&self) -> crate::codec::ErrorKind {
        if self.codec {
            crate::codec::ErrorKind::Codec
        } else {
            crate::codec::ErrorKind::Remote
        }
    }
}

impl From<String> for RemoteError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for RemoteError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// So that `?` works in handlers on grid's own errors (a call the handler makes, a send on
/// its stream): the caller gets [`Error::Remote`] with the error's message; a remote error
/// from a nested call passes on with its message as it was.
impl From<Error> for RemoteError {
    fn from(e: Error) -> Self {
        match e {
            Error::Remote(remote) => Self::new(remote.message),
            other => Self::new(other.to_string()),
        }
    }
}

/// Everything that can go wrong with a grid call or connection.
///
/// The error is cheap to clone so that one failure (a lost connection, a shutdown) can be
/// delivered to every call it ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer is not connected, or the connection was lost while the call was in flight.
    /// The connection redials on its own; retry once `wait_for_connect` resolves.
    /// `execution` says whether the handler can have run: [`Execution::NotExecuted`] when
    /// nothing of the call was written to the lost connection (or there was none),
    /// [`Execution::MayHaveExecuted`] when it had left this node.
    #[error("{}", disconnected(*.execution))]
    Disconnected {
        /// Whether the call's handler can have run.
        execution: Execution,
    },
    /// The call's deadline passed before a response arrived.
    #[error("deadline exceeded before the remote answered")]
    DeadlineExceeded,
    /// The call was cancelled: by this side's code (a dropped future, a stream dropped or
    /// cancelled before its end) or by the other side (a caller that gave up on the call
    /// being handled).
    #[error("call cancelled")]
    Cancelled,
    /// The other side of a stream ended it normally and takes no more messages: a handler
    /// that returned `Ok` while its caller was still sending, or a sender used after its
    /// own `finish`. Distinct from [`Error::Cancelled`]: nothing was abandoned.
    #[error("the stream has ended: the other side finished and takes no more messages")]
    StreamEnded,
    /// The remote already serves as much as it allows at once on this connection (calls
    /// and streams, or bytes of their requests); the call was not started. A grid caller
    /// waits for room instead, so this comes from a peer that ignored the limits it was
    /// told. The text is the remote's.
    #[error("the remote is busy, nothing was started: {0}")]
    Busy(String),
    /// The peer is draining: it is leaving (shutting down, or being removed from the
    /// cluster) and admits no new calls or streams, so this one was not started. It was
    /// refused by the peer, or here, before anything was sent, because the peer had said it
    /// was leaving. Retry on another peer, or on this one once it is back (an idempotent
    /// call does so on its own). The text is the peer's reason.
    #[error("the peer is draining ({0}), so the call was not executed; retry once it is back, or on another peer")]
    Draining(String),
    /// The remote has no handler registered under this id (and subroute).
    #[error("the remote has no handler {handler}{}; is it running an older build, or was the handler registered?", fmt_subroute(.subroute))]
    UnknownHandler {
        /// The handler that was called.
        handler: HandlerId,
        /// The subroute it was called on, if any.
        subroute: Option<String>,
    },
    /// The remote handler returned an error (or panicked).
    #[error("remote handler failed: {0}")]
    Remote(#[from] RemoteError),
    /// A payload could not be encoded or decoded.
    #[error("payload codec error: {0}")]
    Codec(String),
    /// The peer broke the wire protocol; the connection is dropped and redialled.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The manager was shut down.
    #[error("the grid manager was shut down")]
    Closed,
    /// A handler with this id (and subroute) is already registered.
    #[error("a handler {handler}{} is already registered; handler ids must be unique per manager", fmt_subroute(.subroute))]
    HandlerAlreadyExists {
        /// The id registered twice.
        handler: HandlerId,
        /// The subroute it was registered on, if any.
        subroute: Option<String>,
    },
    /// A payload is larger than the maximum message size agreed with the peer (the smaller
    /// of the two nodes' `max_message_size`): one this side would send (nothing was sent),
    /// or an answer the handler side could not send. Only this call or message fails.
    #[error("message of {size} bytes exceeds the maximum message size of {limit} bytes")]
    MessageTooLarge {
        /// The size of the payload that was refused.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// The peer name is not one the manager lists: it was never added, or it was removed
    /// ([`Manager::remove_peer`](crate::Manager::remove_peer)). Nothing was sent.
    #[error("unknown peer {0:?}: it is not in this node's peer list (ManagerBuilder::peer, Manager::add_peer), or it was removed")]
    UnknownPeer(String),
    /// The peer could not be reached (connection refused, timeout, DNS, upgrade failure),
    /// or its connection was lost (the socket failed, the peer fell silent or closed it):
    /// what [`Connection::last_error`](crate::Connection::last_error) says then.
    #[error("could not reach the peer: {0}")]
    Unreachable(String),
    /// The remote refused the connection (HTTP status before the upgrade, or a rejected
    /// handshake), with its reason.
    #[error("connection refused by the remote: {0}")]
    Rejected(String),
    /// The manager's configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A [`quorum`](crate::many::quorum) call could not get the answers it needed: too many
    /// peers failed (each failure is listed with its peer), or fewer peers than needed were
    /// given. The calls still running were cancelled.
    #[error("{0}")]
    NoQuorum(Box<QuorumFailure>),
}

/// Why a quorum was not reached ([`Error::NoQuorum`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumFailure {
    /// The answers the quorum needed.
    pub needed: usize,
    /// The peers called.
    pub given: usize,
    /// The peers that answered.
    pub answered: Vec<String>,
    /// The peers that failed, with their errors.
    pub failures: Vec<(String, Error)>,
}

impl std::fmt::Display for QuorumFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "quorum not reached: {} of {} peers answered, {} needed",
            self.answered.len(),
            self.given,
            self.needed
        )?;
        for (i, (peer, e)) in self.failures.iter().enumerate() {
            write!(f, "{} {peer}: {e}", if i == 0 { ";" } else { "," })?;
        }
        Ok(())
    }
}

/// Whether a failed call's handler can have run ([`Error::execution`]): what decides if
/// retrying it is safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Execution {
    /// It did not run: the call never reached the peer (it was not written to a connection
    /// before that was lost, or there was none), or the peer refused it before starting
    /// its handler (busy, draining, no such handler). Retrying cannot run it twice.
    NotExecuted,
    /// It may have run: the call had left this node when it failed, or its handler ran and
    /// failed. Retry only what is safe to run twice (idempotent).
    MayHaveExecuted,
}

fn disconnected(execution: Execution) -> &'static str {
    match execution {
        Execution::NotExecuted => {
            "peer is not connected: the call was not sent (not executed); retry once it is back"
        }
        Execution::MayHaveExecuted => {
            "peer is not connected: the connection was lost after the call was sent, so its handler may have run"
        }
    }
}

impl Error {
    /// The connection was lost with the call on it (sent, as far as this side knows).
    pub(crate) const LOST: Error = Error::Disconnected {
        execution: Execution::MayHaveExecuted,
    };
    /// The peer is not connected: the call was not sent.
    pub(crate) const NOT_SENT: Error = Error::Disconnected {
        execution: Execution::NotExecuted,
    };

    /// Whether the failed call's handler can have run. [`Execution::NotExecuted`] for a
    /// call that never reached the peer ([`Error::Disconnected`] before it was written,
    /// [`Error::UnknownPeer`]) or that the peer refused before starting a handler
    /// ([`Error::Busy`], [`Error::Draining`], [`Error::UnknownHandler`]);
    /// [`Execution::MayHaveExecuted`] for
    /// every other failure of a call (its handler failed, the deadline passed or it was
    /// cancelled while it was out, the connection was lost after it was sent), and for
    /// errors whose origin cannot tell (a codec error may be this side's encoding or the
    /// peer's answer).
    pub fn execution(&self) -> Execution {
        match self {
            Error::Disconnected { execution } => *execution,
            Error::Busy(_)
            | Error::Draining(_)
            | Error::UnknownHandler { .. }
            | Error::UnknownPeer(_) => Execution::NotExecuted,
            Error::NoQuorum(q)
                if q.answered.is_empty()
                    && q.failures
                        .iter()
                        .all(|(_, e)| e.execution() == Execution::NotExecuted) =>
            {
                Execution::NotExecuted
            }
            _ => Execution::MayHaveExecuted,
        }
    }

    /// This error for a call or stream nothing of which was written to the connection: a
    /// lost connection did not execute it.
    pub(crate) fn unsent(self) -> Error {
        match self {
            Error::Disconnected { .. } => Error::NOT_SENT,
            other => other,
        }
    }

    /// This error of a call to `handler` on the subroute named `subroute`: an unknown
    /// handler names the call as its caller made it (the wire carries the subroute's hash
    /// only, and the peer's echo of the handler id is not trusted for it).
    pub(crate) fn for_call(self, handler: HandlerId, subroute: Option<&str>) -> Error {
        match self {
            Error::UnknownHandler { .. } => Error::UnknownHandler {
                handler,
                subroute: subroute.map(str::to_owned),
            },
            other => other,
        }
    }

    /// The error carried by an error payload (flag PAYLOAD_IS_ERROR) of a call to
    /// `handler` (on `subroute`, if any).
    pub(crate) fn from_wire(
        payload: Option<&[u8]>,
        handler: HandlerId,
        subroute: Option<&str>,
    ) -> Error {
        let failure = match ErrorPayload::decode(payload.unwrap_or_default()) {
            Ok(decoded) => decoded,
            Err(why) => return Error::Protocol(why),
        };
        let ErrorPayload {
            kind,
            message,
            sizes,
        } = failure;
        match kind {
            ErrorKind::Remote => Error::Remote(RemoteError::new(message)),
            ErrorKind::UnknownHandler => Error::UnknownHandler {
                handler,
                subroute: subroute.map(str::to_owned),
            },
            ErrorKind::DeadlineExceeded => Error::DeadlineExceeded,
            ErrorKind::Cancelled => Error::Cancelled,
            ErrorKind::Codec => Error::Codec(message),
            ErrorKind::Protocol => Error::Protocol(message),
            ErrorKind::Busy => Error::Busy(message),
            ErrorKind::Draining => Error::Draining(message),
            ErrorKind::TooLarge => match sizes {
                Some((size, limit)) => Error::MessageTooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    limit: usize::try_from(limit).unwrap_or(usize::MAX),
                },
                None => Error::Remote(RemoteError::new(message)),
            },
        }
    }
}

fn fmt_subroute(subroute: &Option<String>) -> String {
    match subroute {
        Some(s) => format!(" on subroute {s:?}"),
        None => String::new(),
    }
}

/// A `Result` with [`Error`] as its error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
