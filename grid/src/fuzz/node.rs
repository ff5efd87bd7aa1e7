//! One side of a [`Pair`](super::Pair): its engine, its link, and what its users hold.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::codec::FrameLimits;
use crate::engine::{Engine, Key, Side, Start, Transmit};

use super::book::Ends;
use super::{Peer, KEEP};

/// One side: its engine, the link its writer writes to, and what its users hold.
pub(super) struct Node {
    pub(super) peer: Peer,
    pub(super) e: Engine,
    /// What its reader accepts.
    pub(super) limits: FrameLimits,
    /// What the other side's reader accepts: every frame written here must pass.
    pub(super) peer_limits: FrameLimits,
    pub(super) send_limit: usize,
    pub(super) tx: Transmit,
    /// Frames written, not yet read by the other side.
    pub(super) link: VecDeque<Bytes>,
    /// When the runner sleeps until (what `poll_timeout` returned last).
    pub(super) armed: Option<Instant>,
    pub(super) calls: Vec<Key>,
    pub(super) openings: Vec<Key>,
    pub(super) ends: Vec<Ends>,
    /// Single calls whose handler runs here.
    pub(super) serving: Vec<Start>,
    /// Streams admitted here, for their handler to accept or refuse.
    pub(super) accepting: Vec<Start>,
    pub(super) made_ids: VecDeque<u64>,
    pub(super) served_ids: VecDeque<u64>,
}

impl Node {
    pub(super) fn new(
        peer: Peer,
        config: crate::engine::Config,
        now: Instant,
        checksums: bool,
    ) -> Self {
        let peer_max = config.send_limit;
        let limits = FrameLimits::new(crate::engine::max_frame(config.max_message_size))
            .requiring_checksums(checksums);
        // The peer reads frames of its own maximum message size; this side sends at most
        // the smaller of the two, so that is all it may assume.
        let peer_limits =
            FrameLimits::new(crate::engine::max_frame(peer_max)).requiring_checksums(checksums);
        Node {
            peer,
            send_limit: config.send_limit,
            e: Engine::new(config, now),
            limits,
            peer_limits,
            tx: Transmit::new(0),
            link: VecDeque::new(),
            armed: None,
            calls: Vec::new(),
            openings: Vec::new(),
            ends: Vec::new(),
            serving: Vec::new(),
            accepting: Vec::new(),
            made_ids: VecDeque::new(),
            served_ids: VecDeque::new(),
        }
    }

    pub(super) fn remember(ids: &mut VecDeque<u64>, id: u64) {
        if ids.len() >= KEEP {
            ids.pop_front();
        }
        ids.push_back(id);
    }

    pub(super) fn caller_ends(&self) -> impl Iterator<Item = Key> + '_ {
        self.ends
            .iter()
            .filter(|x| x.side == Side::Caller)
            .map(|x| x.key)
    }
}

/// Forgets a caller's ends once it holds none (a handler's go when it returns).
pub(super) fn forget_if_done(node: &mut Node, i: usize) {
    let x = &node.ends[i];
    if x.side == Side::Caller && !x.sender && x.receiver.is_none() {
        node.ends.remove(i);
    }
}
