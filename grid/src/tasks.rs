//! Counting the tasks a manager spawned, so shutdown can wait for all of them and tests can
//! prove that none is left behind; and how a busy task lets the others run.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Default)]
pub(crate) struct Tasks {
    live: AtomicUsize,
    drained: Notify,
}

struct Guard(Arc<Tasks>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

impl Tasks {
    /// Spawns a task that counts as live until its future completes or is dropped (aborted).
    pub(crate) fn spawn<F>(self: &Arc<Self>, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.live.fetch_add(1, Ordering::AcqRel);
        let guard = Guard(self.clone());
        // `map`, not an `async` block awaiting `fut`: that would hold `fut` twice (as the
        // block's capture and as the future it awaits), doubling every task's size. The
        // guard is dropped with the closure: when `fut` completes, or when the task is
        // dropped (aborted) before.
        tokio::spawn(fut.map(move |out| {
            drop(guard);
            out
        }))
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Resolves once no counted task is live.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Lets the other tasks of this worker run once: the task wakes itself and goes to the
/// back of the worker's queue. Unlike `tokio::task::yield_now`, which waits until the
/// worker has nothing else to run and then polls the I/O driver (one `epoll_wait` per
/// yield): a reader under load that yielded that way per batch would make a syscall per
/// batch and come back only after every other task. (The writer wants exactly that wait,
/// so that callers queue more for its next frame, and uses `yield_now`.)
pub(crate) async fn requeue() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
