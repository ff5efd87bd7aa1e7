//! Why a session's socket stopped, as the connection acts on it: what it tells the peer
//! (the close frame), what `last_error()` says, and whether it counts as a protocol error.

use crate::codec::Close;

/// Why a session's socket stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lost {
    /// This side found the peer breaking the protocol or one of its limits: the close
    /// frame says what was wrong.
    Violation(Close),
    /// The peer closed the WebSocket, with its code and reason if it gave them.
    PeerClosed(Option<Close>),
    /// The socket failed, or the peer fell silent.
    Failed(String),
}

impl Lost {
    /// Whether a protocol or limit was broken, found here or reported by the peer.
    pub(crate) fn is_violation(&self) -> bool {
        match self {
            Lost::Violation(_) => true,
            Lost::PeerClosed(close) => close.as_ref().is_some_and(Close::is_violation),
            Lost::Failed(_) => false,
        }
    }
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Violation(close) => write!(f, "protocol violation by the peer: {close}"),
            Lost::PeerClosed(Some(close)) => write!(f, "the peer closed the connection: {close}"),
            Lost::PeerClosed(None) => f.write_str("the peer closed the connection"),
            Lost::Failed(why) => f.write_str(why),
        }
    }
}
