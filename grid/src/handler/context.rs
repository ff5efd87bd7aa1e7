//! What a handler knows about its call, and the call's cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::codec::HandlerId;

/// What a call's handler knows about the call.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub(crate) caller: Arc<str>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) subroute: Option<Arc<str>>,
    pub(crate) handler: HandlerId,
    pub(crate) mux_id: u64,
    pub(crate) cancel: Cancel,
}

impl CallContext {
    /// The context of a call the peer `caller` made with `msg` (its deadline counts from
    /// now), served by the handler registered under `subroute`.
    pub(crate) fn incoming(
        caller: Arc<str>,
        msg: &crate::codec::Message,
        subroute: Option<Arc<str>>,
    ) -> Self {
        Self {
            caller,
            deadline: (msg.deadline_ms > 0)
                .then(|| Instant::now() + Duration::from_millis(u64::from(msg.deadline_ms))),
            subroute,
            handler: msg.handler,
            mux_id: msg.mux_id,
            cancel: Cancel::default(),
        }
    }

    /// The context of the call being handled by the current task, if any. Typed service
    /// methods use this to reach their caller, deadline and subroute.
    pub fn current() -> Option<CallContext> {
        super::CURRENT_CALL.try_with(CallContext::clone).ok()
    }

    /// The name of the node that made the call.
    pub fn caller(&self) -> &str {
        &self.caller
    }

    /// When the caller stops waiting. Calls made from inside the handler inherit it.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (zero once it passed), `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The subroute the call was made on, if any.
    pub fn subroute(&self) -> Option<&str> {
        self.subroute.as_deref()
    }

    /// The handler id that was called.
    pub fn handler(&self) -> HandlerId {
        self.handler
    }

    /// The caller's id for this call on the connection (useful in logs).
    pub fn mux_id(&self) -> u64 {
        self.mux_id
    }

    /// Resolves when the call is cancelled: the caller dropped it or cancelled it, its
    /// deadline passed, or the connection was lost. The handler's own future is dropped at
    /// that moment; this is for tasks the handler started with a clone of the context.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn cancelled(&self) {
        self.cancel.wait().await
    }

    /// True once the call was cancelled (see [`CallContext::cancelled`]).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_fired()
    }
}

/// A one-way flag with a notification: set once, never cleared.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cancel(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    fired: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub(crate) fn fire(&self) {
        self.0.fired.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.0.fired.load(Ordering::Acquire)
    }

    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_fired() {
                return;
            }
            notified.await;
        }
    }
}

/// Fires a [`Cancel`] when dropped, unless disarmed: held by a handler's task, so that an
/// abort (or any end other than the handler's own return) cancels the call.
pub(crate) struct FireOnDrop(Option<Cancel>);

impl FireOnDrop {
    pub(crate) fn new(cancel: Cancel) -> Self {
        Self(Some(cancel))
    }

    /// The handler finished on its own: do not fire.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for FireOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.fire();
        }
    }
}
