//! The caller-side and handler-side tables of in-flight single calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify};
use tokio::task::AbortHandle;

use crate::codec::Message;
use crate::error::{Error, Result};

/// Where a call's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Message>>;

type Table<T> = Mutex<Option<HashMap<u64, T>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// In-flight calls of one live socket.
pub(crate) struct CallTables {
    client: Table<Reply>,
    /// `None` while the handler task is being spawned (see [`CallTables::reserve_server`]).
    server: Table<Option<AbortHandle>>,
    idle: Arc<Notify>,
}

impl CallTables {
    pub(crate) fn new(idle: Arc<Notify>) -> Self {
        Self {
            client: Mutex::new(Some(HashMap::new())),
            server: Mutex::new(Some(HashMap::new())),
            idle,
        }
    }

    /// Registers a call this side makes. Fails once the tables are closed.
    pub(crate) fn insert_client(&self, mux: u64, reply: Reply) -> Result<(), Reply> {
        match lock(&self.client).as_mut() {
            Some(t) => {
                t.insert(mux, reply);
                Ok(())
            }
            None => Err(reply),
        }
    }

    /// Removes a call this side made; `None` if it already finished.
    pub(crate) fn take_client(&self, mux: u64) -> Option<Reply> {
        let mut guard = lock(&self.client);
        let t = guard.as_mut()?;
        let r = t.remove(&mux);
        if r.is_some() && t.is_empty() {
            self.idle.notify_waiters();
        }
        r
    }

    /// Reserves a mux id for a handler about to be spawned. Returns false once closed, or
    /// when the mux id is already in use (the caller reused an id: refuse the call).
    pub(crate) fn reserve_server(&self, mux: u64) -> bool {
        match lock(&self.server).as_mut() {
            Some(t) if !t.contains_key(&mux) => {
                t.insert(mux, None);
                true
            }
            _ => false,
        }
    }

    /// Stores the spawned handler's abort handle. If the entry is already gone (the call was
    /// cancelled, or the tables closed, while spawning) the handler is aborted at once;
    /// aborting a handler that already finished does nothing.
    pub(crate) fn attach_server(&self, mux: u64, handle: AbortHandle) {
        let mut guard = lock(&self.server);
        match guard.as_mut().and_then(|t| t.get_mut(&mux)) {
            Some(slot) => *slot = Some(handle),
            None => handle.abort(),
        }
    }

    /// Removes a handler's entry; `None` if it was already removed (cancelled or closed).
    /// The inner `None` means the handler was still being spawned.
    pub(crate) fn take_server(&self, mux: u64) -> Option<Option<AbortHandle>> {
        let mut guard = lock(&self.server);
        let t = guard.as_mut()?;
        let r = t.remove(&mux);
        if r.is_some() && t.is_empty() {
            self.idle.notify_waiters();
        }
        r
    }

    /// Closes both tables: every waiting caller gets `err`, every handler is aborted.
    pub(crate) fn close(&self, err: &Error) {
        let clients = lock(&self.client).take();
        let servers = lock(&self.server).take();
        for (_, reply) in clients.into_iter().flatten() {
            let _ = reply.send(Err(err.clone()));
        }
        for (_, handle) in servers.into_iter().flatten() {
            if let Some(h) = handle {
                h.abort();
            }
        }
        self.idle.notify_waiters();
    }

    /// (calls made, handlers running).
    pub(crate) fn counts(&self) -> (usize, usize) {
        let c = lock(&self.client).as_ref().map_or(0, HashMap::len);
        let s = lock(&self.server).as_ref().map_or(0, HashMap::len);
        (c, s)
    }
}
