//! Waiting on the same call made to many peers: all of them ([`broadcast`]), or the first
//! `k` answers ([`quorum`]), cancelling the rest.

use std::future::{Future, IntoFuture};

use futures::stream::{FuturesUnordered, StreamExt};

use super::calls_to;
use crate::connection::Connection;
use crate::error::{Error, QuorumFailure, Result};

/// One peer's outcome of a [`broadcast`].
#[derive(Debug)]
pub struct Reply<T> {
    /// The peer called.
    pub peer: String,
    /// Its answer, or why it failed.
    pub result: Result<T>,
}

/// The outcome of a [`quorum`] that was met.
#[derive(Debug)]
pub struct Quorum<T> {
    /// The answers that made the quorum, with the peer that gave each, in the order they
    /// came.
    pub answers: Vec<(String, T)>,
    /// The peers that failed before the quorum was met, with their errors.
    pub failures: Vec<(String, Error)>,
    /// The peers whose calls were still running when the quorum was met: they were
    /// cancelled (their handlers see the cancel).
    pub cancelled: Vec<String>,
}

/// Makes `call` to every peer at once and waits for every answer; the replies come in the
/// order of `peers`.
///
/// # Cancel safety
/// Dropping the future cancels every call still running.
pub async fn broadcast<T, F, C>(
    peers: impl IntoIterator<Item = Connection>,
    call: F,
) -> Vec<Reply<T>>
where
    F: FnMut(Connection) -> C,
    C: IntoFuture<Output = Result<T>>,
{
    let (calls, _) = calls_to(peers, call);
    futures::future::join_all(calls.into_iter().map(|(peer, fut)| async move {
        Reply {
            peer,
            result: fut.await,
        }
    }))
    .await
}

/// Makes `call` to every peer at once and returns as soon as `needed` of them answered;
/// the calls still running are cancelled then. The failures met on the way are returned
/// too, each with its peer.
///
/// ```no_run
/// # async fn lock(manager: grid::Manager) -> grid::Result<()> {
/// use grid::{Bytes, HandlerId};
/// const LOCK: HandlerId = HandlerId::new(7);
/// let peers = manager.connections().filter(|c| !c.is_client());
/// let granted = grid::many::quorum(2, peers, |c| async move {
///     c.request(LOCK, Bytes::from_static(b"resource-1")).await
/// })
/// .await?; // Error::NoQuorum if 2 grants cannot be had
/// println!("granted by {:?}", granted.answers.iter().map(|(peer, _)| peer).collect::<Vec<_>>());
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::NoQuorum`] as soon as `needed` answers can no longer be had (too many peers
/// failed, or fewer than `needed` were given), with the peers that answered and every
/// failure; the calls still running are cancelled then. Its
/// [`execution`](Error::execution) is `NotExecuted` only if no peer answered and every
/// failure was itself not executed.
///
/// # Cancel safety
/// Dropping the future cancels every call still running.
pub async fn quorum<T, F, C>(
    needed: usize,
    peers: impl IntoIterator<Item = Connection>,
    call: F,
) -> Result<Quorum<T>>
where
    F: FnMut(Connection) -> C,
    C: IntoFuture<Output = Result<T>>,
{
    let (calls, core) = calls_to(peers, call);
    let outcome = gather(calls, needed).await;
    if let Some(core) = core {
        core.fanout.quorum(outcome.is_ok());
    }
    outcome
}

/// Runs `calls` at once until `needed` answered (the rest are dropped, cancelled), or until
/// that can no longer be.
pub(crate) async fn gather<T, Fut>(calls: Vec<(String, Fut)>, needed: usize) -> Result<Quorum<T>>
where
    Fut: Future<Output = Result<T>>,
{
    let given = calls.len();
    let mut running_peers: Vec<String> = calls.iter().map(|(peer, _)| peer.clone()).collect();
    let mut answers = Vec::new();
    let mut failures = Vec::new();
    let mut running: FuturesUnordered<_> = calls
        .into_iter()
        .map(|(peer, fut)| async move { (peer, fut.await) })
        .collect();
    while answers.len() < needed && answers.len() + running.len() >= needed {
        let Some((peer, result)) = running.next().await else {
            break;
        };
        running_peers.retain(|p| *p != peer);
        match result {
            Ok(answer) => answers.push((peer, answer)),
            Err(e) => failures.push((peer, e)),
        }
    }
    // Dropping what still runs cancels it.
    drop(running);
    if answers.len() >= needed {
        Ok(Quorum {
            answers,
            failures,
            cancelled: running_peers,
        })
    } else {
        Err(Error::NoQuorum(Box::new(QuorumFailure {
            needed,
            given,
            answered: answers.into_iter().map(|(peer, _)| peer).collect(),
            failures,
        })))
    }
}
