//! What every call and stream answers, whatever its side and kind ([`Life`]): where it is
//! in its life (its own phase), and its books ([`Header`]: who still holds it, what it is
//! counted against). The engine settles entries through it alone ([`Status`]), so no kind
//! of entry can be left out of the cleanup.

use super::calls::{CallState, CallerCall, HandlerCall, HandlerCallState};
use super::header::Header;
use super::state::{Stream, StreamState};
use super::{CallerEntry, HandlerEntry};

/// Every kind of entry keeps its books in a `header` field; `mux_id`: and its mux id in a
/// field of that name.
macro_rules! books {
    () => {
        fn header(&self) -> &Header {
            &self.header
        }
        fn header_mut(&mut self) -> &mut Header {
            &mut self.header
        }
    };
    (mux_id) => {
        books!();
        fn mux_id(&self) -> Option<u64> {
            Some(self.mux_id)
        }
    };
}

/// An entry's life, as the engine's cleanup sees it.
pub(super) trait Life {
    /// Its phase is over: answered or taken (a call made here), answered or stopped (one
    /// served here), closed (a stream).
    fn over(&self) -> bool;
    /// Over on the wire, with nothing left to send.
    fn wire_done(&self) -> bool {
        self.over() && self.header().out.is_idle()
    }
    /// Its books: what it is counted against, its timer, its messages to send, its
    /// holders.
    fn header(&self) -> &Header;
    fn header_mut(&mut self) -> &mut Header;
    /// No user object holds it any more.
    fn released(&self) -> bool {
        self.header().holders == 0
    }
    /// Its mux id on the wire, when the entry holds one (a caller's single call does not:
    /// its key is its mux id).
    fn mux_id(&self) -> Option<u64>;
}

impl Life for CallerCall {
    fn over(&self) -> bool {
        !matches!(self.state, CallState::Waiting)
    }
    books!();
    fn mux_id(&self) -> Option<u64> {
        None
    }
}

impl Life for HandlerCall {
    fn over(&self) -> bool {
        self.state == HandlerCallState::Done
    }
    books!(mux_id);
}

impl Life for Stream {
    fn over(&self) -> bool {
        self.state == StreamState::Closed
    }
    books!(mux_id);
}

/// What [`Engine::settle`](super::Engine) needs to know of an entry after a change.
pub(super) struct Status {
    /// Over on the wire, with nothing left to send.
    pub(super) done: bool,
    /// No user object holds it.
    pub(super) released: bool,
    /// What it was counted against, taken now that it is done (`None`: not counted, or
    /// not done).
    pub(super) uncounted: Option<usize>,
    pub(super) mux_id: Option<u64>,
}

/// An entry's [`Status`], taking what it is counted against once it is done (statically
/// dispatched: this runs at every change of every call).
fn status<L: Life>(entry: &mut L) -> Status {
    let done = entry.wire_done();
    Status {
        done,
        released: entry.released(),
        uncounted: if done {
            entry.header_mut().counted.take()
        } else {
            None
        },
        mux_id: entry.mux_id(),
    }
}

/// What an entry of either side answers, by its kind.
macro_rules! entry_life {
    ($($entry:ident),*) => {$(
        impl $entry {
            pub(super) fn settle(&mut self) -> Status {
                match self {
                    $entry::Call(c) => status(&mut **c),
                    $entry::Stream(s) => status(&mut **s),
                }
            }

            /// Its phase is over ([`Life::over`]).
            #[cfg(any(test, fuzzing))]
            pub(super) fn over(&self) -> bool {
                match self {
                    $entry::Call(c) => c.over(),
                    $entry::Stream(s) => s.over(),
                }
            }

            /// Its mux id on the wire, when it holds one ([`Life::mux_id`]).
            #[cfg(any(test, fuzzing))]
            pub(super) fn mux_id(&self) -> Option<u64> {
                match self {
                    $entry::Call(c) => c.mux_id(),
                    $entry::Stream(s) => s.mux_id(),
                }
            }
        }
    )*};
}

entry_life!(CallerEntry, HandlerEntry);
