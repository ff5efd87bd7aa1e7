//! Credit arithmetic, with no I/O: per stream direction (messages) and per connection
//! (bytes of chunked payloads in progress).
//!
//! Invariants:
//! - a sender never holds more credit than the receiver's capacity, and never spends credit
//!   it does not hold;
//! - a receiver never holds more unreturned messages than its capacity: one more is the
//!   peer's violation, reported, never buffered.

/// The sending side of one stream direction: how many messages it may still send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendCredit {
    available: u32,
    capacity: u32,
}

impl SendCredit {
    /// A direction whose receiver accepts `capacity` messages in flight; all of it granted.
    pub(crate) fn new(capacity: u32) -> Self {
        Self {
            available: capacity,
            capacity,
        }
    }

    /// Credit that may be spent now.
    pub(crate) fn available(&self) -> u32 {
        self.available
    }

    #[cfg(any(test, fuzzing))]
    pub(crate) fn check(&self) {
        assert!(self.available <= self.capacity, "{self:?}");
    }

    /// Spends up to `max` credits, as many as are available; returns how many.
    pub(crate) fn take_up_to(&mut self, max: u32) -> u32 {
        let n = self.available.min(max);
        self.available -= n;
        n
    }

    /// Gives back `n` credits taken but not spent (a reservation dropped unused).
    pub(crate) fn untake(&mut self, n: u32) {
        self.available = self.available.saturating_add(n).min(self.capacity);
    }

    /// Adds credit the receiver returned. Credit beyond the capacity means the receiver
    /// returned messages it never got: its violation.
    pub(crate) fn grant(&mut self, n: u32) -> Result<(), String> {
        match self.available.checked_add(n) {
            Some(total) if total <= self.capacity => {
                self.available = total;
                Ok(())
            }
            _ => Err(format!(
                "credit over-granted: {n} returned with {} of {} outstanding",
                self.available, self.capacity
            )),
        }
    }
}

/// The receiving side of one stream direction: messages received and not yet returned as
/// credit (queued for the user, or read and owed back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecvWindow {
    capacity: u32,
    queued: u32,
    owed: u32,
}

impl RecvWindow {
    pub(crate) fn new(capacity: u32) -> Self {
        Self {
            capacity,
            queued: 0,
            owed: 0,
        }
    }

    /// Counts one received message; an error if the sender had no credit for it.
    pub(crate) fn receive(&mut self) -> Result<(), String> {
        if self.queued + self.owed >= self.capacity {
            return Err(format!(
                "message sent without credit (capacity {})",
                self.capacity
            ));
        }
        self.queued += 1;
        Ok(())
    }

    /// The user read `n` messages: they are owed back. Returns the credit to send now, if
    /// enough is owed to be worth a message ([`RecvWindow::batch`]).
    pub(crate) fn read(&mut self, n: u32) -> Option<u32> {
        let n = n.min(self.queued);
        self.queued -= n;
        self.owed += n;
        (self.owed >= self.batch()).then(|| std::mem::take(&mut self.owed))
    }

    /// Credit is returned in batches of a quarter of the capacity (at least one): the
    /// sender gets it back well before it runs out, at one message per batch.
    pub(crate) fn batch(&self) -> u32 {
        (self.capacity / 4).max(1)
    }

    #[cfg(any(test, fuzzing))]
    pub(crate) fn check(&self, queued: usize, discard: bool) {
        assert!(self.queued + self.owed <= self.capacity, "{self:?}");
        if !discard {
            assert_eq!(self.queued as usize, queued, "{self:?}");
        }
    }

    /// Returns everything owed at once (the receiver discards instead of queueing).
    pub(crate) fn discard(&mut self, n: u32) -> u32 {
        let n = n.min(self.queued);
        self.queued -= n;
        n + std::mem::take(&mut self.owed)
    }
}

/// What a receiver read of the messages handed to it, not yet reported to the engine.
/// Reported when it asks for more, or once a batch's worth is read while it still has
/// more in hand (so the sender gets credit back while it works through a long batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadTally {
    read: u32,
    report_every: u32,
}

impl Default for ReadTally {
    fn default() -> Self {
        Self {
            read: 0,
            report_every: u32::MAX,
        }
    }
}

impl ReadTally {
    /// The engine handed over messages; report after `report_every` reads.
    pub(crate) fn handed(&mut self, report_every: u32) {
        self.report_every = report_every.max(1);
    }

    /// One message read; the count to report now, if it is time (`more`: messages are
    /// still in hand).
    #[inline]
    pub(crate) fn read_one(&mut self, more: bool) -> Option<u32> {
        self.read += 1;
        (more && self.read >= self.report_every).then(|| self.take())
    }

    /// Everything read and not yet reported (reported with the next request).
    pub(crate) fn take(&mut self) -> u32 {
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
    fn send_credit_is_never_negative_nor_over_capacity() {
        let mut c = SendCredit::new(3);
        assert_eq!(c.take_up_to(1), 1);
        assert_eq!(c.take_up_to(5), 2, "as many as there are");
        assert_eq!(c.take_up_to(1), 0, "no credit left");
        assert_eq!(c.available(), 0);
        c.grant(1).expect("within capacity");
        assert!(c.grant(3).is_err(), "4 outstanding of 3");
        assert_eq!(c.available(), 1, "a refused grant changes nothing");
        c.untake(1);
        c.untake(5);
        assert_eq!(c.available(), 3, "never above capacity");
        assert!(c.grant(u32::MAX).is_err());
    }

    #[test]
    fn recv_window_refuses_a_message_beyond_credit_and_returns_in_batches() {
        let mut w = RecvWindow::new(8);
        for _ in 0..8 {
            w.receive().expect("within credit");
        }
        assert!(w.receive().is_err());
        assert_eq!(
            w.read(1),
            None,
            "one owed is below a quarter of the capacity"
        );
        assert!(w.receive().is_err(), "owed credit is not yet returned");
        assert_eq!(w.read(1), Some(2));
        w.receive().expect("two returned, so two more may come");
        w.receive().expect("two returned, so two more may come");
        assert!(w.receive().is_err());
        assert_eq!(w.discard(10), 8, "discarding returns what was queued");
        assert_eq!(RecvWindow::new(2).batch(), 1, "at least one");
    }

    #[test]
    fn a_tally_reports_a_batch_read_while_more_is_in_hand() {
        let mut t = ReadTally::default();
        t.handed(3);
        assert_eq!(t.read_one(true), None);
        assert_eq!(t.read_one(true), None);
        assert_eq!(t.read_one(true), Some(3), "a batch read, more in hand");
        assert_eq!(
            t.read_one(false),
            None,
            "the last in hand: reported with the next ask"
        );
        assert_eq!(t.take(), 1);
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
