//! Continuous load on every peer (`node --load`), for the rolling-restart check
//! (`.ci/rolling-restart.sh`): each peer gets, in turn, an idempotent `get`, a plain `put`
//! and now and then a `bulk_put` stream of a few hundred entries. Every outcome is
//! counted by what it says about execution; the node prints the counts (so far) every
//! second and when it stops (a call under way then is dropped, not counted):
//!
//! ```text
//! HH:MM:SS.mmm [NAME] load: ok=N not_executed=N may_have_executed=N idempotent_failed=N streams_ok=N streams_failed=N retries=N
//! ```
//!
//! A graceful restart of any node should leave `may_have_executed`, `idempotent_failed`
//! and `streams_failed` at 0: calls refused by a leaving or absent peer say they were not
//! executed, idempotent ones are made again until the peer is back.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use grid::{Connection, Error, Execution, Manager, State};
use tokio::sync::watch;

use crate::kv::{Entry, KvClient};

/// Entries a load stream carries.
const STREAM_ENTRIES: u64 = 300;

/// The outcomes, counted.
#[derive(Default)]
pub struct Counts {
    ok: AtomicU64,
    not_executed: AtomicU64,
    may_have_executed: AtomicU64,
    idempotent_failed: AtomicU64,
    streams_ok: AtomicU64,
    streams_failed: AtomicU64,
}

impl Counts {
    /// One line: every count by name, and the retries of idempotent calls `manager` made.
    pub fn line(&self, manager: &Manager) -> String {
        let n = |c: &AtomicU64| c.load(Relaxed);
        let retries: u64 = manager
            .connections()
            .flat_map(|c| c.stats().retries)
            .map(|(_, n)| n)
            .sum();
        format!(
            "ok={} not_executed={} may_have_executed={} idempotent_failed={} streams_ok={} streams_failed={} retries={retries}",
            n(&self.ok),
            n(&self.not_executed),
            n(&self.may_have_executed),
            n(&self.idempotent_failed),
            n(&self.streams_ok),
            n(&self.streams_failed)
        )
    }

    /// Counts a plain call's outcome.
    fn plain(&self, what: &str, peer: &str, r: Result<(), Error>) {
        match r {
            Ok(()) => self.ok.fetch_add(1, Relaxed),
            Err(e) if e.execution() == Execution::NotExecuted => {
                self.not_executed.fetch_add(1, Relaxed)
            }
            Err(e) => {
                eprintln!("load: {what} on {peer} may have executed: {e}");
                self.may_have_executed.fetch_add(1, Relaxed)
            }
        };
    }
}

/// Runs the load on every peer (not clients) until `stop` turns true; returns once every
/// call it started has ended.
pub async fn run(manager: Manager, counts: Arc<Counts>, stop: watch::Receiver<bool>) {
    let peers: Vec<Connection> = manager.connections().filter(|c| !c.is_client()).collect();
    let tasks: Vec<_> = peers
        .into_iter()
        .map(|conn| tokio::spawn(on_peer(conn, counts.clone(), stop.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn on_peer(conn: Connection, counts: Arc<Counts>, mut stop: watch::Receiver<bool>) {
    let kv = KvClient::new(conn.clone()).with_deadline(Duration::from_secs(15));
    let mut n: u64 = 0;
    while !*stop.borrow() {
        n += 1;
        tokio::select! {
            () = one_round(&conn, &kv, &counts, n) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A get, a put, every 20th time a stream, then a pause.
async fn one_round(conn: &Connection, kv: &KvClient, counts: &Counts, n: u64) {
    let peer = conn.remote();
    // Idempotent: it must end well, retried through any restart of the peer.
    match kv.get(format!("load/{n}")).await {
        Ok(_) => {
            counts.ok.fetch_add(1, Relaxed);
        }
        Err(e) => {
            eprintln!("load: get on {peer} failed: {e}");
            counts.idempotent_failed.fetch_add(1, Relaxed);
        }
    }
    let put = kv
        .put(Entry {
            key: format!("load/{n}"),
            value: n.to_string(),
        })
        .await
        .map(drop);
    let went = put.is_ok();
    counts.plain("put", peer, put);
    if n.is_multiple_of(20) {
        stream(kv, peer, counts).await;
    }
    // Paced, and slower while the peer is away: its calls fail at once then.
    let pause = if went && conn.state() == State::Connected {
        5
    } else {
        50
    };
    tokio::time::sleep(Duration::from_millis(pause)).await;
}

/// A `bulk_put` of [`STREAM_ENTRIES`] entries, every count read back.
async fn stream(kv: &KvClient, peer: &str, counts: &Counts) {
    let (mut entries, mut acks) = match kv.bulk_put("load".into()).await {
        Ok(ends) => ends,
        Err(e) => {
            counts.plain("bulk_put", peer, Err(e));
            return;
        }
    };
    let result: Result<(), Error> = async {
        for i in 1..=STREAM_ENTRIES {
            entries
                .send(&Entry {
                    key: format!("load/stream/{i}"),
                    value: i.to_string(),
                })
                .await?;
            match acks.recv().await {
                Some(Ok(count)) if count == i => {}
                other => return Err(Error::Protocol(format!("ack {i}: {other:?}"))),
            }
        }
        entries.finish().await?;
        match acks.recv().await {
            None => Ok(()),
            Some(other) => Err(Error::Protocol(format!("after the end: {other:?}"))),
        }
    }
    .await;
    match result {
        Ok(()) => counts.streams_ok.fetch_add(1, Relaxed),
        Err(e) => {
            eprintln!("load: a stream to {peer} failed: {e}");
            counts.streams_failed.fetch_add(1, Relaxed)
        }
    };
}
