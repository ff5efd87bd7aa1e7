//! What every call and stream has on the engine's books, whatever its side and kind
//! ([`Header`]): what it is counted against, the timer it holds, its messages to send, and
//! how many user objects hold it.
//!
//! Invariants (checked by `invariants.rs` after every stepped test and fuzz step):
//! - `counted` is `Some` exactly while the entry counts against the concurrency and
//!   request-bytes limits (and, on the handler side, holds its mux id);
//! - `timer` is `Some(at)` exactly while the engine's timers hold a deadline `at` for the
//!   entry: it is armed and disarmed only through `Timers::arm`
//!   and `disarm` (`Engine::arm_timer`/`disarm_timer`), which keep both sides of that
//!   equality in one step;
//! - an entry leaves the engine only through `Engine::remove`, which disarms a timer still
//!   held and takes the entry out of every lane it may still sit in (control, deferred
//!   starts), so no ending path can leave a trace behind.

use std::time::Instant;

use super::out_queue::OutQueue;
use super::{CallerEntry, Engine, HandlerEntry, Key, Side};

/// An entry's books: see the module's invariants.
#[derive(Debug, Default)]
pub(crate) struct Header {
    /// While live on the wire: counted against the limits, with its request's bytes.
    pub(crate) counted: Option<usize>,
    /// The deadline the engine's timers hold for the entry, while they hold one.
    pub(crate) timer: Option<Instant>,
    /// Its messages to send, and where it sits in the outbox's schedule.
    pub(crate) out: OutQueue,
    /// User objects holding it: a call's future; a stream's opening future, sender and
    /// receiver. A call served here has none (its handler answers by key).
    pub(crate) holders: u8,
}

impl Header {
    /// The books of a stream: its queue encodes small messages as they are queued.
    pub(super) fn for_stream() -> Self {
        Self {
            out: OutQueue::for_stream(),
            ..Self::default()
        }
    }
}

/// The books of an entry of either side: both kinds keep them in a `header` field.
macro_rules! entry_books {
    ($($entry:ident),*) => {$(
        impl $entry {
            // The handler side's is read by the tests' checks only.
            #[allow(dead_code)]
            pub(super) fn header(&self) -> &Header {
                match self {
                    $entry::Call(c) => &c.header,
                    $entry::Stream(s) => &s.header,
                }
            }

            pub(super) fn header_mut(&mut self) -> &mut Header {
                match self {
                    $entry::Call(c) => &mut c.header,
                    $entry::Stream(s) => &mut s.header,
                }
            }
        }
    )*};
}

entry_books!(CallerEntry, HandlerEntry);

impl Engine {
    /// Every entry's books, with its side and key.
    #[cfg(any(test, fuzzing))]
    pub(super) fn headers(&self) -> impl Iterator<Item = (Side, Key, &Header)> + '_ {
        let callers = self
            .callers
            .iter()
            .map(|(k, e)| (Side::Caller, k, e.header()));
        let handlers = self
            .handlers
            .iter()
            .map(|(k, e)| (Side::Handler, k, e.header()));
        callers.chain(handlers)
    }

    /// The books of the entry `key` on `side`, if it is there.
    pub(super) fn header_mut(&mut self, side: Side, key: Key) -> Option<&mut Header> {
        match side {
            Side::Caller => self.callers.get_mut(key).map(CallerEntry::header_mut),
            Side::Handler => self.handlers.get_mut(key).map(HandlerEntry::header_mut),
        }
    }
}
