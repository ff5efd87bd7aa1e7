//! Access to the protocol engine for the fuzz targets of `fuzz/`, built only by cargo-fuzz
//! (which passes `--cfg fuzzing`). Not part of the API.
//!
//! [`Pair`] is two engines connected in memory and driven as the connection's tasks drive
//! them: the reader applies each frame in batches and starts the handlers each batch
//! admitted, the writer takes frames (and starts the handlers that waited for the send
//! buffer), the timers fire when the engine asked or when the clock jumps. Every frame goes
//! through the real encoder and decoder. The fuzzer plays both sides' users (calls,
//! streams, handlers, every order of dropping their ends), the clock and the network, and
//! may tamper with the link: inject messages or raw frames, corrupt, drop, duplicate or
//! reorder frames. Checksums are recomputed after a change, so the mutations reach the
//! engine rather than stop at the checksum.
//!
//! After every step both engines' invariants hold, including the bounds on what they hold
//! (`Engine::check_invariants`); every frame an engine writes is one its peer reads; a
//! timer never fires for nothing. While the link was not tampered with, the two engines
//! are two correct peers, and more must hold: neither sees a protocol violation from the
//! other (apart from the documented flood limit its user can cross), a caller is never
//! refused with Busy, stream messages arrive in order and intact, every clean end is a real
//! one, an answer is the one its handler gave, and once both sides' users stopped, both
//! engines are empty. Whatever happened, once the connection is lost and the users dropped
//! everything, nothing is left. Any breach panics: a finding.

mod book;
mod calls;
mod checks;
mod limits;
mod network;
mod node;
mod pair;
mod streams;
mod tagged;
mod tamper;
mod typed;
mod wind_down;

use std::task::{Context, Waker};

use crate::error::Error;

pub use limits::{Limits, Mux, Peer};
pub use pair::Pair;
pub use tamper::fix_checksum;
pub use typed::typed_decoder;

/// Most frames one side writes, or mux ids one side remembers, before the harness gives up
/// on keeping them.
const KEEP: usize = 64;
/// The payload of a connection ping or pong is at most this (it is echoed).
const MAX_PING: usize = 125;

fn pick<T>(v: &[T], i: u8) -> Option<usize> {
    (!v.is_empty()).then(|| usize::from(i) % v.len())
}

/// On a clean link the peer is a correct grid engine: it never refuses `p`'s call or stream
/// as Busy, nor sees a protocol violation in it. `what` names what failed.
fn assert_not_refused(clean: bool, p: Peer, what: &str, e: &Error) {
    if clean {
        assert!(
            !matches!(e, Error::Busy(_) | Error::Protocol(_)),
            "{p:?}: {what} to a correct peer failed with {e:?}"
        );
    }
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}
