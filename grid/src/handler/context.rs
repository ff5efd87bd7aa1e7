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
    pub(crate) caller: Arc<Caller>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) subroute: Option<Arc<str>>,
    pub(crate) handler: HandlerId,
    pub(crate) mux_id: u64,
    pub(crate) cancel: Cancel,
}

/// The peer calls come from, as its connection knows it: one per connection, shared by
/// every call it serves (so a call's context costs one reference count for both).
#[derive(Debug)]
pub(crate) struct Caller {
    pub(crate) name: Arc<str>,
    /// Set, with the reason, when the connection starts leaving: its node shuts down
    /// gracefully, or removed the peer.
    pub(crate) leaving: tokio::sync::watch::Receiver<Option<Arc<str>>>,
}

impl CallContext {
    /// The context of a call the peer `caller` made to `handler` under its mux id, with the
    /// deadline the engine computed when the call arrived, served by the handler registered
    /// under `subroute`.
    pub(crate) fn incoming(
        caller: Arc<Caller>,
        handler: HandlerId,
        mux_id: u64,
        deadline: Option<std::time::Instant>,
        subroute: Option<Arc<str>>,
    ) -> Self {
        Self {
            caller,
            deadline: deadline.map(Instant::from_std),
            subroute,
            handler,
            mux_id,
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
        &self.caller.name
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

    /// Resolves when the call is over, for any reason: the handler returned (and its answer
    /// was queued), the caller dropped or cancelled the call, its deadline passed, the
    /// connection was lost or the manager shut down. Work started for the call (a task
    /// holding a clone of the context) should stop then: nobody waits for it any more. The
    /// handler's own future is dropped at that moment when the call did not end by its
    /// return.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn cancelled(&self) {
        self.cancel.wait().await
    }

    /// Resolves when the node serving the call starts leaving, or stops serving the caller:
    /// its manager is shutting down gracefully ([`Manager::shutdown`](crate::Manager::shutdown)),
    /// or removed the caller from its peers
    /// ([`Manager::remove_peer`](crate::Manager::remove_peer)), and waits, up to its drain
    /// timeout, for the calls and streams in flight to end. A handler that would run
    /// on and on (a watch, a feed, a long poll) should end its call then, cleanly, so that
    /// the shutdown need not wait for the timeout and its caller gets a proper end rather
    /// than a lost connection:
    ///
    /// ```no_run
    /// # use grid::{Bytes, StreamCall};
    /// # async fn feed(mut call: StreamCall) -> Result<(), grid::RemoteError> {
    /// let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    /// loop {
    ///     tokio::select! {
    ///         _ = tick.tick() => call.output.send(Bytes::from_static(b"tick")).await?,
    ///         () = call.ctx.draining() => return Ok(()), // the node is leaving: end here
    ///     }
    /// }
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn draining(&self) {
        let mut leaving = self.caller.leaving.clone();
        let _ = leaving.wait_for(Option::is_some).await;
    }

    /// True once the node serving the call started leaving, or stopped serving the caller
    /// (see [`CallContext::draining`]).
    pub fn is_draining(&self) -> bool {
        self.caller.leaving.borrow().is_some()
    }

    /// True once the call is over (see [`CallContext::cancelled`]).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_fired()
    }

    /// Runs `fut` as part of this call, typically in a task the handler spawns:
    /// `tokio::spawn(ctx.scope(async move { ... }))`. Calls `fut` makes inherit the call's
    /// deadline (a shorter one of their own still wins) and see this context as
    /// [`CallContext::current`]; when the call is over (see [`CallContext::cancelled`])
    /// `fut` is dropped, which cancels the calls it has in flight, and the scope resolves
    /// to [`Error::Cancelled`](crate::Error::Cancelled).
    ///
    /// # Cancel safety
    /// Dropping the scope drops `fut`.
    pub fn scope<F: std::future::Future>(
        &self,
        fut: F,
    ) -> impl std::future::Future<Output = crate::error::Result<F::Output>> + use<F> {
        let ctx = self.clone();
        let cancel = self.cancel.clone();
        async move {
            let run = super::CURRENT_CALL.scope(ctx, fut);
            tokio::pin!(run);
            tokio::select! {
                biased;
                out = &mut run => Ok(out),
                () = cancel.wait() => Err(crate::error::Error::Cancelled),
            }
        }
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

/// Fires a [`Cancel`] when dropped: held by a handler's task, so that the call is over
/// (for [`CallContext::cancelled`]) however the task ends, by its return or an abort.
pub(crate) struct FireOnDrop(Cancel);

impl FireOnDrop {
    pub(crate) fn new(cancel: Cancel) -> Self {
        Self(cancel)
    }
}

impl Drop for FireOnDrop {
    fn drop(&mut self) {
        self.0.fire();
    }
}
