//! What every call and stream answers, whatever its side and kind ([`Life`]): where it is
//! in its life (its own phase), and its books ([`Header`]: who still holds it, what it is
//! counted against). The engine settles entries through it alone ([`Status`]), so no kind
//! of entry can be left out of the cleanup.

use super::calls::{CallState, CallerCall, HandlerCall, HandlerCallState};
use super::header::Header;
use super::state::{Stream, StreamState};
use super::{CallerEntry, HandlerEntry};

/// An entry's life, as the engine's cleanup sees it.
pub(super) trait Life {
    /// Over on the wire, with nothing left to send.
    fn wire_done(&self) -> bool;
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
    fn wire_done(&self) -> bool {
        !matches!(self.state, CallState::Waiting) && self.header.out.is_idle()
    }
    fn header(&self) -> &Header {
        &self.header
    }
    fn header_mut(&mut self) -> &mut Header {
        &mut self.header
    }
    fn mux_id(&self) -> Option<u64> {
        None
    }
}

impl Life for HandlerCall {
    fn wire_done(&self) -> bool {
        self.state == HandlerCallState::Done && self.header.out.is_idle()
    }
    fn header(&self) -> &Header {
        &self.header
    }
    fn header_mut(&mut self) -> &mut Header {
        &mut self.header
    }
    fn mux_id(&self) -> Option<u64> {
        Some(self.mux_id)
    }
}

impl Life for Stream {
    fn wire_done(&self) -> bool {
        self.state == StreamState::Closed && self.header.out.is_idle()
    }
    fn header(&self) -> &Header {
        &self.header
    }
    fn header_mut(&mut self) -> &mut Header {
        &mut self.header
    }
    fn mux_id(&self) -> Option<u64> {
        Some(self.mux_id)
    }
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

impl CallerEntry {
    pub(super) fn settle(&mut self) -> Status {
        match self {
            CallerEntry::Call(c) => status(&mut **c),
            CallerEntry::Stream(s) => status(&mut **s),
        }
    }
}

impl HandlerEntry {
    /// The peer's id for it on the wire.
    #[cfg(any(test, fuzzing))]
    pub(super) fn mux_id(&self) -> u64 {
        match self {
            HandlerEntry::Call(c) => c.mux_id,
            HandlerEntry::Stream(s) => s.mux_id,
        }
    }

    pub(super) fn settle(&mut self) -> Status {
        match self {
            HandlerEntry::Call(c) => status(&mut **c),
            HandlerEntry::Stream(s) => status(&mut **s),
        }
    }
}
