//! A connection's way out. It starts leaving when its node shuts down gracefully or removes
//! the peer ([`ConnInner::leave`]): the runner drains the live session (the peer is told
//! why, starts nothing new, and what is in flight finishes) and then ends for good. A
//! removal whose drain outlasts the drain timeout stops it at once ([`ConnInner::stop`]),
//! as the node's shutdown does for all its connections.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::ConnInner;

impl ConnInner {
    /// Starts this connection's drain with the reason the peer is told; the first reason
    /// given is kept.
    pub(crate) fn leave(&self, reason: &str) {
        self.leaving.send_if_modified(|r| {
            let first = r.is_none();
            if first {
                *r = Some(Arc::from(reason));
            }
            first
        });
    }

    /// Marks the peer as removed from the manager (calls then find it unknown) and starts
    /// the drain.
    pub(crate) fn forget(&self, reason: &str) {
        self.forgotten.store(true, Ordering::Release);
        self.leave(reason);
    }

    /// True once the peer was removed from the manager.
    pub(crate) fn is_forgotten(&self) -> bool {
        self.forgotten.load(Ordering::Acquire)
    }

    /// Ends the connection now, drained or not.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// True once the connection started leaving.
    pub(crate) fn is_leaving(&self) -> bool {
        self.leaving.borrow().is_some()
    }

    /// Resolves with the reason once the connection starts leaving.
    pub(crate) async fn starts_leaving(&self) -> Arc<str> {
        let mut rx = self.leaving.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            // The sender lives as long as `self`.
            Err(_) => None,
        };
        reason.unwrap_or_else(|| Arc::from("leaving"))
    }

    /// Resolves once the connection must end now: it was stopped, or the node shuts down.
    pub(crate) async fn stopping(&self) {
        let mut stop = self.stop.subscribe();
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => {}
            () = self.core.shutting_down() => {}
        }
    }
}

impl ConnInner {
    /// The reason the connection is leaving, for its close frame.
    pub(crate) fn leaving_reason(&self) -> String {
        match &*self.leaving.borrow() {
            Some(reason) => reason.to_string(),
            None => self.core.shutdown_reason(),
        }
    }

    /// What the calls still in flight get when the connection ends on purpose: the node
    /// shut down, or, for a removed peer, the connection was lost with them.
    pub(crate) fn lost_error_at_end(&self) -> crate::error::Error {
        if self.is_forgotten() && !self.core.is_shut_down() {
            crate::error::Error::LOST
        } else {
            crate::error::Error::Closed
        }
    }
}
