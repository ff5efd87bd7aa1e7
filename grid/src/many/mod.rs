//! Calls to many peers at once: the same call made to a set of peers, with what to wait
//! for and what to cancel decided here, not by every user by hand.
//!
//! - [`broadcast`]: every peer, waiting for all (a write to every disk's node).
//! - [`quorum`]: every peer, returning as soon as `k` answered (a lock, a quorum write);
//!   the calls still running are cancelled at once (dropped: the cancel reaches their
//!   handlers), and the failures are returned with the peer that gave them. It fails as
//!   soon as `k` can no longer be reached.
//! - [`Hedge`]: one peer, and a second one if the first has not answered after a delay (a
//!   fixed one, or a percentile of the latencies it observed); the first answer wins and
//!   the other call is cancelled. For calls that are safe to run twice (reads).
//!
//! Each sub-call is made by a closure given the peer's [`Connection`], so it is typed as
//! any call is (`|c| async move { KvClient::new(c).get(key).await }`) and it is an
//! ordinary call: its deadline is its own, capped by the deadline of the call being
//! handled when made inside a handler, and dropping the returned future cancels every
//! sub-call still running.
//!
//! **Streams.** The closure may open a stream instead (`|c| c.open_stream(id, payload)`):
//! [`broadcast`] then opens it on every peer and returns each peer's stream or error, and
//! their responses can be collected into one stream with `futures::stream::select_all`
//! (every [`StreamReceiver`](crate::StreamReceiver) is a `futures::Stream`). A quorum or a
//! hedge of stream opens returns once enough streams are open; the others are cancelled.
//!
//! The outcomes are counted in [`ManagerStats`](crate::ManagerStats) (quorums met and
//! failed, hedges sent and won).

mod gather;
mod hedge;
#[cfg(test)]
mod tests;

pub use gather::{broadcast, quorum, Quorum, Reply};
pub use hedge::Hedge;

use std::future::IntoFuture;
use std::sync::Arc;

use crate::connection::Connection;
use crate::core::Core;

/// Sub-calls, each labelled with its peer's name.
type Labelled<F> = Vec<(String, F)>;

/// Each peer's call, made by `call` (not started: a call starts when first polled) and
/// labelled with the peer's name; and the manager the peers belong to, to count outcomes
/// in.
fn calls_to<C: IntoFuture>(
    peers: impl IntoIterator<Item = Connection>,
    mut call: impl FnMut(Connection) -> C,
) -> (Labelled<C::IntoFuture>, Option<Arc<Core>>) {
    let mut core = None;
    let calls = peers
        .into_iter()
        .map(|c| {
            core.get_or_insert_with(|| c.inner.core.clone());
            (c.remote().to_owned(), call(c).into_future())
        })
        .collect();
    (calls, core)
}
