//! The invariants the engine keeps between steps, asserted after every stepped test and
//! every fuzz step ([`Engine::check_invariants`]): what is counted against the limits
//! matches what is live, windows and budgets add up, and held payloads are accounted for.

use super::state::Stream;
use super::{assembly, window, CallerEntry, Engine, HandlerEntry, Side};

impl Engine {
    /// Asserts every invariant the engine keeps between steps (for the stepped tests).
    pub(crate) fn check_invariants(&self) {
        let mut counted = (0, 0, 0, 0);
        for (side, key, h) in self.headers() {
            let Some(bytes) = h.counted else { continue };
            match side {
                Side::Caller => (counted.0, counted.1) = (counted.0 + 1, counted.1 + bytes),
                Side::Handler => {
                    (counted.2, counted.3) = (counted.2 + 1, counted.3 + bytes);
                    let mux = self.handlers.get(key).and_then(|e| e.mux_id());
                    assert_eq!(
                        mux.and_then(|m| self.handler_ids.get(&m)),
                        Some(&key),
                        "live mux ids are taken"
                    );
                }
            }
        }
        for (key, e) in self.callers.iter() {
            assert!(
                e.mux_id().is_none_or(|m| m == key.mux_id()),
                "a stream opened here is known on the wire by its key"
            );
            if let CallerEntry::Stream(s) = e {
                self.check_stream(s);
            }
        }
        for (_, e) in self.handlers.iter() {
            if let HandlerEntry::Stream(s) = e {
                self.check_stream(s);
            }
        }
        assert_eq!(
            counted,
            (
                self.active_callers,
                self.request_bytes.0,
                self.active_handlers,
                self.request_bytes.1
            ),
            "what counts against the limits"
        );
        assert_eq!(
            self.handler_ids.len(),
            self.active_handlers,
            "taken mux ids"
        );
        assert!(self.active_callers <= self.config.peer_max_concurrent);
        assert!(self.active_handlers <= self.config.max_concurrent);
        self.check_windows();
        self.check_outbox();
        self.chunk_window.check();
        self.check_held();
        self.check_timers();
    }

    /// Asserts the budget counts exactly the windows of the live streams, and that they
    /// stay within it but for each window's floor.
    fn check_windows(&self) {
        let windows = self
            .callers
            .iter()
            .filter_map(|(_, e)| match e {
                CallerEntry::Stream(s) => Some(s.recv.window.size()),
                CallerEntry::Call(_) => None,
            })
            .chain(self.handlers.iter().filter_map(|(_, e)| match e {
                HandlerEntry::Stream(s) => Some(s.recv.window.size()),
                HandlerEntry::Call(_) => None,
            }))
            .filter(|&w| w > 0);
        let (count, sum) = windows.fold((0, 0), |(n, sum), w| (n + 1, sum + w));
        assert_eq!(
            (count, sum),
            (self.budget.windows(), self.budget.granted()),
            "the budget counts the live windows"
        );
        assert!(
            sum <= self.budget.limit() + count * self.budget.floor(),
            "windows of {sum} bytes over the budget of {} (with {count} floors)",
            self.budget.limit()
        );
    }

    fn check_stream(&self, s: &Stream) {
        s.send.credit.check();
        let queued: u64 = s.recv.queue.lens().map(window::cost).sum();
        assert_eq!(queued, s.recv.queued, "the queue's cost");
        let unread = s.recv.queued + s.recv.lent;
        s.recv
            .window
            .check(unread, s.recv.discard, self.config.max_message_size);
    }

    /// Asserts that what the engine holds is bounded: by the limits for what the peer can
    /// make it hold, and otherwise by what is live (no entry, waiting start or timer
    /// outlives the call or stream it is for).
    fn check_held(&self) {
        let c = &self.config;
        assert!(
            self.assembler.held() <= c.reassembly_window.max(c.max_message_size),
            "partial payloads held: {} (window {}, max message {})",
            self.assembler.held(),
            c.reassembly_window,
            c.max_message_size
        );
        assert!(self.assembler.partials() <= assembly::MAX_IN_PROGRESS);
        assert!(
            self.request_bytes.1 <= c.max_request_bytes.max(c.max_message_size),
            "request bytes held for the peer"
        );
        assert!(
            self.outbox.refusals() <= c.max_concurrent,
            "refusals waiting"
        );
        // Every entry is live on the wire, held by a user, or (made here) waiting for the
        // peer's room.
        for (side, key, h) in self.headers() {
            let waits = side == Side::Caller && self.queued.iter().any(|(k, _)| *k == key);
            assert!(
                h.counted.is_some() || h.holders > 0 || waits,
                "a call or stream on the {side:?} side that nothing holds"
            );
        }
        for start in &self.starts {
            assert!(
                self.handlers.get(start.key).is_some(),
                "a handler waiting to start for a call that is gone"
            );
        }
        // A deadline is held for an entry exactly when its header says so: none outlives
        // its call or stream, and none is lost while its header still counts on it.
        let mut armed = 0;
        for (side, key, h) in self.headers() {
            if let Some(at) = h.timer {
                armed += 1;
                assert!(
                    self.timers.holds(at, side, key),
                    "a header's timer the timers do not hold"
                );
            }
        }
        // And an entry whose phase is over holds none: every ending path lets it go.
        let over = self.callers.iter().map(|(_, e)| (e.over(), e.header()));
        let over = over.chain(self.handlers.iter().map(|(_, e)| (e.over(), e.header())));
        for (over, h) in over {
            assert!(!over || h.timer.is_none(), "an ended entry's timer");
        }
        assert_eq!(
            armed,
            self.timers.deadline_count(),
            "a deadline for a call or stream that is gone or no longer waits for it"
        );
    }
}
