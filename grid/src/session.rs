//! A connection's protocol engine behind one lock, and the handler tasks it runs: one
//! live socket's, or (held for a resume) a lost socket's open streams waiting for the next. Everything that acts on the engine (the socket reader and writer, the
//! timers, the users' calls and stream ends, the handler tasks) goes through here.
//!
//! A session exists from a successful handshake until its socket dies, or, when its open
//! streams are kept for the same peer to come back (`engine/resume.rs`), until the next
//! socket takes over or the grace period passes. Everything that
//! touches the engine goes through [`Session::with`], which afterwards does what the engine
//! asked for: stops the handler tasks whose call ended, wakes the tasks waiting on the
//! engine (after the lock is released), and tells the runner when the next timer moved.
//! When it ends the engine is closed (every caller gets its error, every handler is
//! stopped) and whoever still holds it gets the session's error.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::codec::{Close, FrameLimits};
use crate::engine::{Engine, Key};
use crate::error::Error;

struct Shared {
    engine: Engine,
    /// Running handler tasks, by the slot of their engine key. Stopping one aborts it; the
    /// task's own guard then marks its call over (`CallContext::cancelled`).
    tasks: Vec<Option<(Key, AbortHandle)>>,
}

pub(crate) struct Session {
    shared: Mutex<Shared>,
    /// Whether messages carry checksums on this socket (agreed in the handshake).
    pub(crate) checksum: bool,
    /// The largest payload sent in one message (agreed in the handshake).
    pub(crate) send_limit: usize,
    /// What the reader accepts.
    pub(crate) limits: FrameLimits,
    /// Notified when the engine's next timeout moved earlier than the runner sleeps.
    pub(crate) timer: Notify,
    /// What the writer's close frame says once the session is closed.
    goodbye: Mutex<Option<Close>>,
    /// Set when the connection has been quiet for a while: the reader and the writer let
    /// go of the buffers busy traffic grew, at their next frame.
    pub(crate) quiet: Quiet,
}

/// The runner's word to the reader and the writer that the connection is quiet.
#[derive(Default)]
pub(crate) struct Quiet {
    pub(crate) reader: Flag,
    pub(crate) writer: Flag,
}

impl Quiet {
    pub(crate) fn set(&self) {
        self.reader.0.store(true, Relaxed);
        self.writer.0.store(true, Relaxed);
    }
}

/// A flag raised by one task and taken by another.
#[derive(Default)]
pub(crate) struct Flag(AtomicBool);

impl Flag {
    /// Whether the flag was raised; lowers it. (A load first: the common case, a flag not
    /// raised, costs no atomic write.)
    pub(crate) fn take(&self) -> bool {
        self.0.load(Relaxed) && self.0.swap(false, Relaxed)
    }
}

thread_local! {
    /// Wakers collected under the lock, woken after it (a reused buffer).
    static WAKES: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
}

impl Session {
    pub(crate) fn new(engine: Engine, checksum: bool, limits: FrameLimits) -> Self {
        Self {
            send_limit: engine.send_limit(),
            shared: Mutex::new(Shared {
                engine,
                tasks: Vec::new(),
            }),
            checksum,
            limits,
            timer: Notify::new(),
            goodbye: Mutex::new(None),
            quiet: Quiet::default(),
        }
    }

    /// Closes the engine with `err` (every call and stream ends with it); the writer then
    /// closes the socket with a close frame saying `goodbye`.
    pub(crate) fn close(&self, err: Error, goodbye: Close) {
        *self.goodbye.lock().unwrap_or_else(|e| e.into_inner()) = Some(goodbye);
        self.with(|e| e.close(err));
    }

    /// What the close frame says (a normal close unless [`Session::close`] said otherwise).
    pub(crate) fn goodbye(&self) -> Close {
        let said = self
            .goodbye
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        said.unwrap_or_else(|| Close::new(Close::NORMAL, "closing"))
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the engine, then stops the handlers it ended, wakes the tasks it
    /// readied (outside the lock) and re-arms the runner's timer if needed.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> R {
        self.with_finished(None, f)
    }

    /// As [`Session::with`], for a handler task that ended on its own: its task is
    /// forgotten in the same step.
    pub(crate) fn with_finished<R>(
        &self,
        finished: Option<Key>,
        f: impl FnOnce(&mut Engine) -> R,
    ) -> R {
        let mut wakes = None;
        let result = self.step(finished, f, |engine| {
            // Most steps wake nobody: the wake buffer is only fetched for those that do.
            let mut buf = WAKES
                .try_with(|w| std::mem::take(&mut *w.borrow_mut()))
                .unwrap_or_default();
            engine.take_wakes(&mut buf);
            wakes = Some(buf);
        });
        if let Some(mut wakes) = wakes {
            for w in wakes.drain(..) {
                w.wake();
            }
            let _ = WAKES.try_with(|w| {
                if let Ok(mut slot) = w.try_borrow_mut() {
                    *slot = wakes;
                }
            });
        }
        result
    }

    /// As [`Session::with`], but the tasks to wake are added to `wakes` for the caller to
    /// wake later: the reader wakes a receiver once for several batches of a frame rather
    /// than once per batch (each wake of a parked task costs a thread switch).
    pub(crate) fn with_deferred_wakes<R>(
        &self,
        wakes: &mut Vec<Waker>,
        f: impl FnOnce(&mut Engine) -> R,
    ) -> R {
        self.step(None, f, |engine| engine.take_wakes(wakes))
    }

    /// One step on the engine under the lock; `take_wakes` is called only when there are
    /// tasks to wake.
    fn step<R>(
        &self,
        finished: Option<Key>,
        f: impl FnOnce(&mut Engine) -> R,
        take_wakes: impl FnOnce(&mut Engine),
    ) -> R {
        let (result, timer_moved) = {
            let mut shared = self.lock();
            let Shared { engine, tasks } = &mut *shared;
            if let Some(key) = finished {
                if let Some(slot) = tasks.get_mut(key.index()) {
                    if slot.as_ref().is_some_and(|(k, _)| *k == key) {
                        *slot = None;
                    }
                }
            }
            let result = f(engine);
            for key in engine.take_stops() {
                if let Some(slot) = tasks.get_mut(key.index()) {
                    if slot.as_ref().is_some_and(|(k, _)| *k == key) {
                        if let Some((_, task)) = slot.take() {
                            task.abort();
                        }
                    }
                }
            }
            if engine.has_wakes() {
                take_wakes(engine);
            }
            (result, engine.timeout_moved())
        };
        if timer_moved {
            self.timer.notify_one();
        }
        result
    }

    /// Records the task of a handler the engine started. If the call already ended while
    /// the task was spawned, the task is stopped at once.
    pub(crate) fn attach(&self, key: Key, task: AbortHandle) {
        let mut shared = self.lock();
        if !shared.engine.served(key).running() {
            drop(shared);
            task.abort();
            return;
        }
        let index = key.index();
        if shared.tasks.len() <= index {
            shared.tasks.resize_with(index + 1, || None);
        }
        if let Some(slot) = shared.tasks.get_mut(index) {
            *slot = Some((key, task));
        }
    }
}
