//! Peers that come and go at runtime: added, removed (drained first), or following a
//! membership source. The table itself is `peers.rs`; the sources are `sources.rs`.

use std::sync::Arc;

use super::peers::{Member, MembershipChange};
use super::{Manager, PeerSource};
use crate::connection::Connection;
use crate::error::{Error, Result};

impl Manager {
    /// Adds a peer at runtime and starts connecting to it (this side dials, or waits for
    /// it to dial in, as the two names decide: [`dials`](crate::dials)). Safe while calls
    /// run. Two nodes that add each other at the same moment end with one connection: one
    /// side dials, and if it dials before the other added it, it is refused as an unknown
    /// host and tries again, at most a second later. The peer is authenticated as
    /// every peer is (the token, the known-host check).
    ///
    /// Adding a peer listed already under the same URL returns its connection.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty name, this node's own name, a URL that is not
    /// `ws://` or `wss://` (or `wss://` without TLS client settings), a name listed at
    /// another URL (remove it first) or admitted as a client; [`Error::Closed`] once the
    /// manager is shutting down.
    pub fn add_peer(&self, name: &str, url: &str) -> Result<Connection> {
        self.inner.peers.add(name, url)
    }

    /// Removes a peer (or an admitted client) at runtime. It is forgotten at once:
    /// [`Manager::connection`] no longer finds it ([`Error::UnknownPeer`]) and a socket it
    /// dials is refused as from an unknown host; a [`Connection`] kept from before may still
    /// call it while its connection drains (as a leaving node may), and its calls fail with
    /// [`Error::UnknownPeer`] (not executed) once it has ended. The connection drains as at
    /// a shutdown:
    /// the peer is told ("n1 removed n2 from its peers"), starts nothing new here, and the
    /// calls and streams in flight both ways finish, for at most the drain timeout
    /// ([`ManagerBuilder::drain_timeout`](super::ManagerBuilder::drain_timeout)), after which what is left fails as on a lost
    /// connection. Returns once the connection has ended.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] if no peer of that name is listed.
    ///
    /// # Cancel safety
    /// The removal happens at the first poll, and the drain goes on (and is cut at the
    /// drain timeout) in a task of the manager's own: dropping the future only stops
    /// waiting for it.
    pub async fn remove_peer(&self, name: &str) -> Result<()> {
        let conn = self
            .inner
            .peers
            .remove(name)
            .ok_or_else(|| Error::UnknownPeer(name.to_owned()))?;
        let _ = self.drain_out(conn).await;
        Ok(())
    }

    /// Makes the peer list match `members` (admitted clients aside): peers not listed are
    /// removed (their connections drain, in the background), new ones are added, and a
    /// peer whose URL changed is removed and added again. Entries naming this node are
    /// skipped, so every node can be given the same list. All of it or nothing: if an
    /// entry is invalid, nothing changes.
    ///
    /// # Errors
    /// As [`Manager::add_peer`], for the first invalid entry, or a name listed twice.
    pub fn set_peers(&self, members: &[Member]) -> Result<MembershipChange> {
        let (change, leaving) = self.inner.peers.set(members)?;
        for conn in leaving {
            drop(self.drain_out(conn));
        }
        Ok(change)
    }

    /// Follows a membership source: every answer it gives becomes the peer list
    /// ([`Manager::set_peers`]), until the manager shuts down. An answer that fails, or
    /// that lists an invalid peer, is logged and changes nothing: a bad edit of a file or
    /// a failing DNS server never empties the cluster. The source owns the peer list: a
    /// peer added by hand is removed at its next answer unless the source lists it.
    pub fn follow_peers(&self, mut source: impl PeerSource) {
        let weak = Arc::downgrade(&self.inner);
        let core = self.inner.core.clone();
        self.inner.core.tasks.spawn(async move {
            loop {
                let answer = tokio::select! {
                    answer = source.next() => answer,
                    () = core.starts_leaving() => return,
                };
                let Some(inner) = weak.upgrade() else { return };
                let manager = Manager { inner };
                match answer.and_then(|members| {
                    manager.set_peers(&members).map_err(|e| e.to_string())
                }) {
                    Ok(change) if !change.is_empty() => {
                        tracing::info!(local = %core.local, added = ?change.added, removed = ?change.removed, "membership changed");
                    }
                    Ok(_) => {}
                    Err(why) => {
                        tracing::warn!(local = %core.local, error = %why, "peer source failed; the peer list is kept as it was");
                    }
                }
            }
        });
    }

    /// Waits, in a task of the manager's own, until a removed peer's connection has
    /// drained and ended, and stops it at the drain timeout.
    fn drain_out(&self, conn: Connection) -> tokio::task::JoinHandle<()> {
        let timeout = self.inner.core.config.drain_timeout;
        self.inner.core.tasks.spawn(async move {
            if tokio::time::timeout(timeout, conn.wait_shut())
                .await
                .is_err()
            {
                conn.inner.stop();
                conn.wait_shut().await;
            }
        })
    }
}
