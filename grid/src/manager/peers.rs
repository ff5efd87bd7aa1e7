//! The peer table: the connection to every peer and admitted client, by name. It changes
//! at runtime ([`Manager::add_peer`](super::Manager::add_peer),
//! [`Manager::remove_peer`](super::Manager::remove_peer), a [`PeerSource`](super::PeerSource)),
//! safely while calls run:
//!
//! - Exactly one side of every pair dials ([`dials`](crate::dials)), so two nodes that add
//!   each other at the same moment end with one connection, whatever the order.
//! - A removed peer leaves the table at once (new calls find it unknown, and its sockets
//!   are refused as from an unknown host), then its connection drains as at a shutdown and
//!   ends; it is stopped at the drain timeout.
//! - Once the node starts leaving, the table is closed: nothing is added, and every
//!   connection drains. Both happen under the table's lock, so no connection added at that
//!   moment is left out of the drain.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::connection::{Connection, State};
use crate::core::Core;
use crate::error::{Error, Result};

/// One peer as a membership source lists it: its name (as it calls itself, its
/// [`ManagerBuilder::local`](super::ManagerBuilder::local)) and the URL it serves grid on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// The peer's node name.
    pub name: String,
    /// Its URL, `ws://host:port/grid/v1` or `wss://...`.
    pub url: String,
}

impl Member {
    /// A member named `name`, reached at `url`.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
        }
    }
}

/// What applying a new membership list changed ([`Manager::set_peers`](super::Manager::set_peers)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Peers added (including those whose URL changed), by name.
    pub added: Vec<String>,
    /// Peers removed (including those whose URL changed): their connections drain.
    pub removed: Vec<String>,
}

impl MembershipChange {
    /// True if nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

#[derive(Default)]
struct Table {
    by_name: BTreeMap<String, Connection>,
    /// Removed peers whose connections may still drain: a peer added again starts after
    /// its old connection ended.
    removed: BTreeMap<String, Connection>,
    /// The node is leaving: nothing more is added.
    closed: bool,
}

pub(crate) struct Peers {
    core: Arc<Core>,
    /// This node is a client: it dials every peer, whatever the names decide.
    as_client: bool,
    table: RwLock<Table>,
    added: AtomicU64,
    removed: AtomicU64,
}

impl Peers {
    pub(crate) fn new(core: Arc<Core>, as_client: bool) -> Self {
        Self {
            core,
            as_client,
            table: RwLock::default(),
            added: AtomicU64::new(0),
            removed: AtomicU64::new(0),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, name: &str) -> Option<Connection> {
        self.read().by_name.get(name).cloned()
    }

    /// Every connection, ordered by peer name.
    pub(crate) fn all(&self) -> Vec<Connection> {
        self.read().by_name.values().cloned().collect()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.read().by_name.keys().cloned().collect()
    }

    /// How many peers were added and removed at runtime.
    pub(crate) fn changes(&self) -> (u64, u64) {
        (
            self.added.load(Ordering::Relaxed),
            self.removed.load(Ordering::Relaxed),
        )
    }

    /// Checks a peer's name and URL before it is listed.
    pub(crate) fn check(core: &Core, name: &str, url: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::Config(format!(
                "peer at {url:?}: the name must not be empty"
            )));
        }
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(Error::Config(format!(
                "peer {name:?}: url {url:?} must start with ws:// or wss://"
            )));
        }
        if url.starts_with("wss://") && !core.tls.has_client() {
            return Err(Error::Config(format!(
                "peer {name:?}: wss:// needs TLS client settings: ManagerBuilder::tls_client (feature `tls`)"
            )));
        }
        Ok(())
    }

    /// Lists the peers and admitted clients the manager was built with (checked already).
    pub(crate) fn start_initial(&self, peers: BTreeMap<String, String>, clients: Vec<String>) {
        let mut table = self.write();
        for (name, url) in peers {
            let conn = self.connect(&name, Some(url), None);
            table.by_name.insert(name, conn);
        }
        for name in clients {
            let conn = Connection::start(self.core.clone(), &name, None, false, None);
            table.by_name.insert(name, conn);
        }
    }

    fn connect(&self, name: &str, url: Option<String>, after: Option<Connection>) -> Connection {
        let dialer = self.as_client || crate::connection::dials(&self.core.local, name);
        Connection::start(self.core.clone(), name, url, dialer, after)
    }

    /// Adds a peer, or returns the one listed under that name with the same URL.
    pub(crate) fn add(&self, name: &str, url: &str) -> Result<Connection> {
        if name == &*self.core.local {
            return Err(Error::Config(format!(
                "{name:?} is this node's own name: a node is not its own peer"
            )));
        }
        Self::check(&self.core, name, url)?;
        let mut table = self.write();
        if table.closed {
            return Err(Error::Closed);
        }
        if let Some(conn) = table.by_name.get(name) {
            return if conn.is_client() {
                Err(Error::Config(format!(
                    "{name:?} is an admitted client, not a peer"
                )))
            } else if conn.inner.url == url {
                Ok(conn.clone())
            } else {
                Err(Error::Config(format!(
                    "peer {name:?} is listed at {:?} already; remove it first to move it to {url:?}",
                    conn.inner.url
                )))
            };
        }
        Ok(self.insert(&mut table, name, url))
    }

    /// Lists a new peer and starts connecting to it.
    fn insert(&self, table: &mut Table, name: &str, url: &str) -> Connection {
        table.removed.retain(|_, c| c.state() != State::Shutdown);
        let before = table.removed.remove(name);
        let conn = self.connect(name, Some(url.to_owned()), before);
        table.by_name.insert(name.to_owned(), conn.clone());
        self.added.fetch_add(1, Ordering::Relaxed);
        tracing::info!(local = %self.core.local, peer = %name, %url, "peer added");
        conn
    }

    /// Takes a peer (or admitted client) out of the table and starts its drain; the
    /// connection is returned so that its end can be awaited.
    pub(crate) fn remove(&self, name: &str) -> Option<Connection> {
        self.take(&mut self.write(), name)
    }

    fn take(&self, table: &mut Table, name: &str) -> Option<Connection> {
        let conn = table.by_name.remove(name)?;
        conn.inner.forget(&format!(
            "{} removed {name} from its peers",
            self.core.local
        ));
        table.removed.retain(|_, c| c.state() != State::Shutdown);
        table.removed.insert(name.to_owned(), conn.clone());
        self.removed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(local = %self.core.local, peer = %name, "peer removed: its connection drains");
        Some(conn)
    }

    /// Makes the peers (admitted clients aside) match `members`: all of it, or, if an entry
    /// is invalid, nothing (checked, then applied under the table's lock). Removed peers
    /// start draining; their connections are returned.
    pub(crate) fn set(&self, members: &[Member]) -> Result<(MembershipChange, Vec<Connection>)> {
        let mut wanted = BTreeMap::new();
        for m in members {
            if m.name == *self.core.local {
                continue;
            }
            Self::check(&self.core, &m.name, &m.url)?;
            if wanted.insert(m.name.as_str(), m.url.as_str()).is_some() {
                return Err(Error::Config(format!("peer {:?} is listed twice", m.name)));
            }
        }
        let mut table = self.write();
        if table.closed {
            return Err(Error::Closed);
        }
        let mut change = MembershipChange::default();
        for (name, conn) in &table.by_name {
            if conn.is_client() {
                if wanted.contains_key(name.as_str()) {
                    return Err(Error::Config(format!(
                        "{name:?} is an admitted client, not a peer"
                    )));
                }
            } else if wanted.get(name.as_str()) != Some(&conn.inner.url.as_str()) {
                change.removed.push(name.clone());
            }
        }
        let leaving = change
            .removed
            .iter()
            .filter_map(|name| self.take(&mut table, name))
            .collect();
        for (name, url) in wanted {
            if !table.by_name.contains_key(name) {
                self.insert(&mut table, name, url);
                change.added.push(name.to_owned());
            }
        }
        Ok((change, leaving))
    }

    /// Closes the table and starts every connection's drain (the node is leaving).
    pub(crate) fn leave_all(&self) {
        let mut table = self.write();
        table.closed = true;
        let reason = self.core.shutdown_reason();
        for conn in table.by_name.values() {
            conn.inner.leave(&reason);
        }
    }
}
