//! The caller-side and handler-side tables of in-flight single calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify};
use tokio::task::AbortHandle;

use crate::codec::Message;
use crate::error::{Error, Result};

/// Where a call's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Message>>;

/// Shards per table: callers on different threads rarely contend for one lock.
const SHARDS: usize = 8;

/// A map from mux id to `T`, split into shards by mux id, that can be closed for good
/// (`None`): once closed, inserts fail.
struct Table<T> {
    shards: [Mutex<Option<HashMap<u64, T>>>; SHARDS],
}

impl<T> Table<T> {
    fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Some(HashMap::new()))),
        }
    }

    fn shard(&self, mux: u64) -> MutexGuard<'_, Option<HashMap<u64, T>>> {
        let m = &self.shards[(mux % SHARDS as u64) as usize];
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes every shard and returns what was in them.
    fn close(&self) -> Vec<T> {
        let mut all = Vec::new();
        for m in &self.shards {
            let taken = m.lock().unwrap_or_else(|e| e.into_inner()).take();
            all.extend(taken.into_iter().flat_map(HashMap::into_values));
        }
        all
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|m| {
                m.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map_or(0, HashMap::len)
            })
            .sum()
    }
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
            client: Table::new(),
            server: Table::new(),
            idle,
        }
    }

    /// Registers a call this side makes. Fails once the tables are closed.
    pub(crate) fn insert_client(&self, mux: u64, reply: Reply) -> Result<(), Reply> {
        match self.client.shard(mux).as_mut() {
            Some(t) => {
                t.insert(mux, reply);
                Ok(())
            }
            None => Err(reply),
        }
    }

    /// Removes a call this side made; `None` if it already finished.
    pub(crate) fn take_client(&self, mux: u64) -> Option<Reply> {
        let mut guard = self.client.shard(mux);
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
        match self.server.shard(mux).as_mut() {
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
        let mut guard = self.server.shard(mux);
        match guard.as_mut().and_then(|t| t.get_mut(&mux)) {
            Some(slot) => *slot = Some(handle),
            None => handle.abort(),
        }
    }

    /// Removes a handler's entry; `None` if it was already removed (cancelled or closed).
    /// The inner `None` means the handler was still being spawned.
    pub(crate) fn take_server(&self, mux: u64) -> Option<Option<AbortHandle>> {
        let mut guard = self.server.shard(mux);
        let t = guard.as_mut()?;
        let r = t.remove(&mux);
        if r.is_some() && t.is_empty() {
            self.idle.notify_waiters();
        }
        r
    }

    /// Closes both tables: every waiting caller gets `err`, every handler is aborted.
    pub(crate) fn close(&self, err: &Error) {
        for reply in self.client.close() {
            let _ = reply.send(Err(err.clone()));
        }
        for handle in self.server.close().into_iter().flatten() {
            handle.abort();
        }
        self.idle.notify_waiters();
    }

    /// (calls made, handlers running).
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.client.len(), self.server.len())
    }
}
