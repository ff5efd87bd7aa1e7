//! Why the engine gives up on its peer, as types. From what the peer sent
//! ([`Engine::handle`](super::Engine::handle)): a [`Violation`], either a rule of the
//! protocol broken or one of this side's limits passed (a flood). From the timers
//! ([`Engine::handle_timeout`](super::Engine::handle_timeout)): a [`DeadPeer`], silent or
//! not reading. The close code follows from the type, in one place (`From<Violation> for
//! Close`), so no ending path can pick the wrong one.

use std::fmt;
use std::time::Duration;

use crate::codec::Close;

/// What the peer sent that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// It broke one of the protocol's rules (a reused mux id, a chunk out of place, an op
    /// with no meaning on a live connection): closed with 1002.
    Broken(String),
    /// It went past one of this side's limits (more in progress or held than allowed, a
    /// flood of cancels, pings or refused calls): closed with 1008.
    OverLimit(String),
}

impl Violation {
    /// What happened, in words.
    pub(crate) fn reason(&self) -> &str {
        match self {
            Violation::Broken(why) | Violation::OverLimit(why) => why,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl From<Violation> for Close {
    fn from(v: Violation) -> Self {
        match v {
            Violation::Broken(why) => Close::new(Close::PROTOCOL_ERROR, why),
            Violation::OverLimit(why) => Close::new(Close::POLICY, why),
        }
    }
}

/// Why the timers give up on a peer whose socket is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadPeer {
    /// Nothing heard from it for `silent`, two ping intervals or more.
    Silent {
        /// How long nothing was heard.
        silent: Duration,
        /// The ping interval.
        ping: Duration,
    },
    /// Its socket has taken nothing for `stuck`, two ping intervals or more: it does not
    /// read.
    NotReading {
        /// How long a write has waited.
        stuck: Duration,
        /// The ping interval.
        ping: Duration,
    },
}

impl fmt::Display for DeadPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadPeer::Silent { silent, ping } => {
                write!(f, "peer silent for {silent:?} (ping interval {ping:?})")
            }
            DeadPeer::NotReading { stuck, ping } => write!(
                f,
                "the peer has not read for {stuck:?}: the socket takes nothing (ping interval {ping:?})"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_close_code_follows_from_the_kind_of_violation() {
        let broken = Close::from(Violation::Broken("a reused mux id".into()));
        assert_eq!(
            (broken.code, broken.reason.as_str()),
            (1002, "a reused mux id")
        );
        let flood = Close::from(Violation::OverLimit("rapid reset".into()));
        assert_eq!((flood.code, flood.reason.as_str()), (1008, "rapid reset"));
    }

    #[test]
    fn a_dead_peer_says_how_it_died() {
        let ping = Duration::from_secs(1);
        let silent = DeadPeer::Silent {
            silent: Duration::from_secs(2),
            ping,
        };
        assert_eq!(silent.to_string(), "peer silent for 2s (ping interval 1s)");
        let stuck = DeadPeer::NotReading {
            stuck: Duration::from_secs(3),
            ping,
        };
        assert!(stuck
            .to_string()
            .starts_with("the peer has not read for 3s"));
    }
}
