//! Credit arithmetic, with no I/O: per stream direction (bytes) and per connection
//! (bytes of chunked payloads in progress).
//!
//! A stream direction's window counts bytes: a data message costs its payload plus
//! [`MESSAGE_CHARGE`] ([`cost`]), so a flood of empty messages is bounded too. A sender may
//! send while its credit is positive; the message's cost is then taken whole, so the
//! credit may go below zero by less than one message (a message larger than the window
//! still goes, alone at the end of it, and never deadlocks the stream).
//!
//! Invariants:
//! - a sender never holds more credit than the receiver's largest window (more is the
//!   receiver's violation), and sends nothing while its credit is zero or less;
//! - a receiver holds at most its window plus one message: a message that arrives when the
//!   sender had no credit left is the peer's violation, reported, never buffered;
//! - what a receiver holds (unread, or read and not yet returned) plus the credit it has
//!   granted and not seen used is its window, always.

/// What a data message costs beyond its payload: what a receiver holds for it besides its
/// bytes (its slot in the stream's queue, 40 bytes, and its header in the frame it came in,
/// up to 20), rounded up, so a window bounds memory even for tiny messages. PROTOCOL.md §6.
pub(crate) const MESSAGE_CHARGE: u64 = 64;

/// What a data message with a payload of `len` bytes costs against its window.
#[inline]
pub(crate) fn cost(len: usize) -> u64 {
    len as u64 + MESSAGE_CHARGE
}

/// The sending side of one stream direction: the credit (bytes) it may still use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendCredit {
    /// May be below zero by less than one message: the last one sent overran it.
    available: i64,
    /// The most the receiver ever grants (its handshake's `max_stream_window`).
    max: i64,
}

impl SendCredit {
    /// No credit yet; the receiver grants at most `max` bytes.
    pub(crate) fn new(max: u64) -> Self {
        Self {
            available: 0,
            max: i64::try_from(max).unwrap_or(i64::MAX),
        }
    }

    /// Whether a message may be sent now (any positive credit: its cost is taken whole).
    #[inline]
    pub(crate) fn open(&self) -> bool {
        self.available > 0
    }

    /// Sets the credit, as a resumed connection agrees it (`resume.rs`): what the receiver
    /// has left open, less the cost of what will be sent again.
    pub(crate) fn reset(&mut self, available: i64) {
        self.available = available.min(self.max);
    }

    /// Credit that may be used now, in bytes (zero when overrun).
    pub(crate) fn available(&self) -> u64 {
        self.available.max(0) as u64
    }

    /// Spends a message's cost (call only while [`SendCredit::open`]).
    #[inline]
    pub(crate) fn spend(&mut self, cost: u64) {
        self.available -= cost as i64;
    }

    #[cfg(any(test, fuzzing))]
    pub(crate) fn check(&self) {
        assert!(self.available <= self.max, "{self:?}");
    }

    /// Adds credit the receiver granted. Credit beyond the receiver's largest window is
    /// its violation.
    pub(crate) fn grant(&mut self, n: u64) -> Result<(), String> {
        let total = i64::try_from(n)
            .ok()
            .and_then(|n| self.available.checked_add(n));
        match total {
            Some(total) if total <= self.max => {
                self.available = total;
                Ok(())
            }
            _ => Err(format!(
                "credit over-granted: {n} bytes returned with {} available, more than the largest window ({} bytes)",
                self.available, self.max
            )),
        }
    }
}

/// The receiving side of one stream direction, in bytes: the window, and how it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecvWindow {
    /// The window: `unused + held + owed`, always.
    window: u64,
    /// Credit granted that the sender has not used yet, as far as this side has seen (below
    /// zero by less than one message when the last one overran the window).
    unused: i64,
    /// Received and not yet read by the user (queued, or handed to the receiver).
    held: u64,
    /// Read and not yet returned.
    owed: u64,
}

impl RecvWindow {
    /// Credit granted that the sender has not used yet, as this side has seen it.
    pub(crate) fn unused(&self) -> i64 {
        self.unused
    }

    /// A direction whose sender was granted `window` bytes.
    pub(crate) fn new(window: u64) -> Self {
        Self {
            window,
            unused: i64::try_from(window).unwrap_or(i64::MAX),
            held: 0,
            owed: 0,
        }
    }

    /// Counts one received message of `cost` bytes; an error if the sender had no credit
    /// for it.
    #[inline]
    pub(crate) fn receive(&mut self, cost: u64) -> Result<(), String> {
        if self.unused <= 0 {
            return Err(format!(
                "message sent without credit (window {} bytes, {} unread, {} read and not yet returned)",
                self.window, self.held, self.owed
            ));
        }
        self.unused -= cost as i64;
        self.held += cost;
        Ok(())
    }

    /// The user read messages costing `bytes`: they are owed back. True when enough is
    /// owed to be worth a message ([`RecvWindow::batch`]): then [`RecvWindow::give`].
    pub(crate) fn read(&mut self, bytes: u64) -> bool {
        let bytes = bytes.min(self.held);
        self.held -= bytes;
        self.owed += bytes;
        self.owed >= self.batch()
    }

    /// The window, in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.window
    }

    /// Received and not yet read.
    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    /// Read and not yet returned.
    pub(crate) fn owed(&self) -> u64 {
        self.owed
    }

    /// Grants `grant` bytes of credit for everything owed: the owed bytes themselves, plus
    /// what the window grows by, or less what it shrinks by (at most what is owed).
    pub(crate) fn give(&mut self, grant: u64) {
        let owed = std::mem::take(&mut self.owed);
        self.window = (self.window + grant).saturating_sub(owed);
        self.unused += grant as i64;
    }

    /// Credit is returned in batches of an eighth of the window: the sender gets it back
    /// well before it runs out, at one message per batch. (Measured against quarters:
    /// the same on loopback, a quarter more messages per second through a 1 ms round
    /// trip, where a sender with a quarter owed back runs dry between returns.)
    pub(crate) fn batch(&self) -> u64 {
        (self.window / 8).max(1)
    }

    /// Returns everything owed (what was read and what is dropped unread, `unread` bytes).
    pub(crate) fn discard(&mut self, unread: u64) -> u64 {
        let unread = unread.min(self.held);
        self.held -= unread;
        self.owed += unread;
        let n = self.owed;
        self.give(n);
        n
    }

    #[cfg(any(test, fuzzing))]
    pub(crate) fn check(&self, unread: u64, discard: bool, max_message: usize) {
        assert_eq!(
            self.unused + (self.held + self.owed) as i64,
            self.window as i64,
            "{self:?}"
        );
        assert!(
            self.unused > -(cost(max_message) as i64),
            "overrun by more than a message: {self:?}"
        );
        if !discard {
            assert_eq!(self.held, unread, "{self:?}");
        }
    }
}

/// What a receiver read of the messages handed to it (their cost, in bytes), not yet
/// reported to the engine. Reported when it asks for more, or once a batch's worth is read
/// while it still has more in hand (so the sender gets credit back while it works through a
/// long batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadTally {
    read: u64,
    report_every: u64,
}

impl Default for ReadTally {
    fn default() -> Self {
        Self {
            read: 0,
            report_every: u64::MAX,
        }
    }
}

impl ReadTally {
    /// The engine handed over messages; report after `report_every` bytes read.
    pub(crate) fn handed(&mut self, report_every: u64) {
        self.report_every = report_every.max(1);
    }

    /// One message of `len` bytes read; the cost to report now, if it is time (`more`:
    /// messages are still in hand).
    #[inline]
    pub(crate) fn read_one(&mut self, len: usize, more: bool) -> Option<u64> {
        self.read += cost(len);
        (more && self.read >= self.report_every).then(|| self.take())
    }

    /// Everything read and not yet reported (reported with the next request).
    pub(crate) fn take(&mut self) -> u64 {
        std::mem::take(&mut self.read)
    }
}

/// The per-connection budget of chunked payloads in progress, as the sender tracks it: the
/// bytes of the payloads it started sending in chunks and has not finished. Because the
/// receiver reads the chunks in the order they were sent, the bytes it holds half received
/// are never more than this, so keeping this within the receiver's reassembly window keeps
/// the receiver within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkBudget {
    limit: u64,
    in_progress: u64,
}

impl ChunkBudget {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            in_progress: 0,
        }
    }

    /// Starts a payload of `size` bytes if it fits (a payload larger than the whole window
    /// starts alone, once nothing else is in progress).
    pub(crate) fn try_start(&mut self, size: u64) -> bool {
        let fits = self.in_progress + size <= self.limit || self.in_progress == 0;
        if fits {
            self.in_progress += size;
        }
        fits
    }

    /// A started payload was finished or abandoned.
    pub(crate) fn finish(&mut self, size: u64) {
        self.in_progress = self.in_progress.saturating_sub(size);
    }

    #[cfg(any(test, fuzzing))]
    pub(crate) fn in_progress(&self) -> u64 {
        self.in_progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_credit_overruns_by_one_message_at_most_and_refuses_over_grants() {
        let mut c = SendCredit::new(1000);
        assert!(!c.open(), "nothing granted yet");
        c.grant(100).expect("within the largest window");
        assert!(c.open());
        c.spend(cost(18));
        assert_eq!(c.available(), 100 - 82);
        assert!(c.open(), "18 bytes left: one more message may go");
        c.spend(cost(468));
        assert!(!c.open(), "overrun: nothing more until credit comes");
        assert_eq!(c.available(), 0);
        c.grant(532).expect("returned");
        assert_eq!(c.available(), 18);
        assert!(c.grant(983).is_err(), "1001 > the largest window");
        assert_eq!(c.available(), 18, "a refused grant changes nothing");
        assert!(c.grant(u64::MAX).is_err());
        c.check();
    }

    #[test]
    fn recv_window_refuses_a_message_beyond_credit_and_returns_in_eighths() {
        let mut w = RecvWindow::new(800);
        for _ in 0..8 {
            w.receive(cost(36)).expect("within credit");
        }
        assert!(w.receive(cost(0)).is_err(), "800 bytes used of 800");
        assert!(
            !w.read(cost(36) / 2),
            "less than an eighth of the window owed"
        );
        assert!(
            w.read(cost(36) - cost(36) / 2),
            "an eighth of the window owed"
        );
        w.give(w.owed());
        w.receive(cost(500))
            .expect("credit left: a large message overruns it");
        assert!(w.receive(cost(0)).is_err(), "overrun: no credit");
        w.check(cost(36) * 7 + cost(500), false, 500);
        assert!(w.read(cost(36)));
        w.give(w.owed());
        assert_eq!(w.discard(u64::MAX), cost(36) * 6 + cost(500));
        w.check(0, false, 500);
        // A grant beyond what is owed grows the window; one below it shrinks it.
        w.receive(cost(36)).expect("credit");
        w.read(cost(36));
        w.give(cost(36) + 100);
        assert_eq!(w.size(), 900);
        w.check(0, false, 500);
        w.receive(cost(36)).expect("credit");
        w.read(cost(36));
        w.give(0);
        assert_eq!(w.size(), 900 - cost(36));
        w.check(0, false, 500);
        assert_eq!(RecvWindow::new(2).batch(), 1, "at least one byte");
    }

    #[test]
    fn a_tally_reports_a_batch_read_while_more_is_in_hand() {
        let mut t = ReadTally::default();
        t.handed(3 * cost(10));
        assert_eq!(t.read_one(10, true), None);
        assert_eq!(t.read_one(10, true), None);
        assert_eq!(
            t.read_one(10, true),
            Some(3 * cost(10)),
            "a batch read, more in hand"
        );
        assert_eq!(
            t.read_one(0, false),
            None,
            "the last in hand: reported with the next ask"
        );
        assert_eq!(t.take(), cost(0));
        assert_eq!(t.take(), 0);
    }

    #[test]
    fn chunk_budget_bounds_payloads_in_progress() {
        let mut b = ChunkBudget::new(100);
        assert!(b.try_start(60));
        assert!(!b.try_start(60), "120 > 100");
        assert!(b.try_start(40));
        b.finish(60);
        assert!(b.try_start(60));
        b.finish(100);
        assert_eq!(b.in_progress(), 0);
        assert!(b.try_start(500), "an oversize payload starts alone");
        assert!(!b.try_start(1));
    }
}
