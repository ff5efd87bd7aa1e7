//! A small typed key-value service each example node serves.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use grid::{CallContext, Receiver, RemoteError, Sender};
use serde::{Deserialize, Serialize};

/// One key and its value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub value: String,
}

/// A node's key-value map, served to its peers.
#[grid::service(id = 10)]
pub trait Kv {
    /// The value of a key, if any. Safe to run twice: retried through a lost connection
    /// or a peer's restart.
    #[grid(idempotent)]
    async fn get(&self, key: String) -> Result<Option<String>, RemoteError>;

    /// Sets a key; answers who stored it.
    async fn put(&self, entry: Entry) -> Result<String, RemoteError>;

    /// Streams every entry whose key starts with `prefix`.
    #[grid(stream)]
    async fn scan(&self, prefix: String, out: Sender<Entry>) -> Result<(), RemoteError>;

    /// Stores every entry the caller streams, answering the running count after each.
    #[grid(stream, max_window = "256KiB")]
    async fn bulk_put(
        &self,
        source: String,
        input: Receiver<Entry>,
        out: Sender<u64>,
    ) -> Result<(), RemoteError>;
}

/// The map behind the service.
#[derive(Clone, Default)]
pub struct Store {
    pub name: String,
    pub map: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Store {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            map: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Kv for Store {
    async fn get(&self, key: String) -> Result<Option<String>, RemoteError> {
        Ok(self.lock().get(&key).cloned())
    }

    async fn put(&self, entry: Entry) -> Result<String, RemoteError> {
        if entry.key.is_empty() {
            return Err(RemoteError::new("keys cannot be empty"));
        }
        let caller = CallContext::current()
            .map(|c| c.caller().to_owned())
            .unwrap_or_default();
        self.lock().insert(entry.key, entry.value);
        Ok(format!("{} stored it for {caller}", self.name))
    }

    async fn scan(&self, prefix: String, mut out: Sender<Entry>) -> Result<(), RemoteError> {
        let found: Vec<Entry> = self
            .lock()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| Entry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        for e in found {
            out.send(&e).await?;
        }
        Ok(())
    }

    async fn bulk_put(
        &self,
        _source: String,
        mut input: Receiver<Entry>,
        mut out: Sender<u64>,
    ) -> Result<(), RemoteError> {
        let mut count = 0;
        while let Some(entry) = input.recv().await {
            let entry = entry?;
            self.lock().insert(entry.key, entry.value);
            count += 1;
            out.send(&count).await?;
        }
        Ok(())
    }
}
