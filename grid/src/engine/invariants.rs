//! The invariants the engine keeps between steps, asserted after every stepped test and
//! every fuzz step ([`Engine::check_invariants`]): what is counted against the limits
//! matches what is live, windows and budgets add up, and held payloads are accounted for.

use super::life::Life;
use super::state::Stream;
use super::{assembly, window, CallerEntry, Engine, HandlerEntry, Side};

impl Engine {
    /// Asserts every invariant the engine keeps between steps (for the stepped tests).
    pub(crate) fn check_invariants(&self) {
        let mut counted = (0, 0, 0, 0);
        for (_, e) in self.callers.iter() {
            let (c, s) = match e {
                CallerEntry::Call(c) => (c.counted, None),
                CallerEntry::Stream(s) => (s.counted, Some(s)),
            };
            if let Some(bytes) = c {
                counted.0 += 1;
                counted.1 += bytes;
            }
            if let Some(s) = s {
                self.check_stream(s);
            }
        }
        for (key, e) in self.handlers.iter() {
            let (c, mux, s) = match e {
                HandlerEntry::Call(c) => (c.counted, c.mux_id, None),
                HandlerEntry::Stream(s) => (s.counted, s.mux_id, Some(s)),
            };
            if let Some(bytes) = c {
                counted.2 += 1;
                counted.3 += bytes;
                assert_eq!(
                    self.handler_ids.get(&mux),
                    Some(&key),
                    "live mux ids are taken"
                );
            }
            if let Some(s) = s {
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
        // Every entry is live on the wire, waiting for the peer's room, or held by a user.
        for (key, e) in self.callers.iter() {
            let (counted, released) = match e {
                CallerEntry::Call(c) => (c.counted.is_some(), c.released()),
                CallerEntry::Stream(s) => (s.counted.is_some(), s.released()),
            };
            assert!(
                counted || !released || self.queued.iter().any(|(k, _)| *k == key),
                "a call or stream made here that nothing holds"
            );
        }
        for (_, e) in self.handlers.iter() {
            let live = match e {
                HandlerEntry::Call(c) => c.counted.is_some(),
                HandlerEntry::Stream(s) => s.counted.is_some() || !s.released(),
            };
            assert!(live, "a call or stream served here that nothing holds");
        }
        for start in &self.starts {
            assert!(
                self.handlers.get(start.key).is_some(),
                "a handler waiting to start for a call that is gone"
            );
        }
        for (side, key) in self.timers.deadline_keys() {
            let live = match side {
                Side::Caller => self.callers.get(key).is_some(),
                Side::Handler => self.handlers.get(key).is_some(),
            };
            assert!(live, "a deadline for a call or stream that is gone");
        }
    }
}
