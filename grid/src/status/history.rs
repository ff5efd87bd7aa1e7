//! Each peer's round trips over the last minutes, for the status page's charts: sampled
//! by the page's own task (started when the page is mounted, so a node without the page
//! keeps no history and does no work for it), read when the page is rendered. No clock
//! is read here: the sampler passes the time in.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{NodeStatus, RttSample};

/// How often the page's task samples the round trips.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept per peer: five minutes at [`SAMPLE_EVERY`].
pub(crate) const KEEP: usize = 150;

/// One peer's samples, oldest first: when, and the round trip then (ms) if connected.
type Ring = VecDeque<(Instant, Option<f64>)>;

/// The samples, per peer.
#[derive(Default)]
pub(crate) struct History {
    peers: Mutex<BTreeMap<String, Ring>>,
}

impl History {
    /// Records each peer's round trip at `now` (`None`: not connected), keeping the last
    /// [`KEEP`] samples of each, and forgetting peers no longer listed.
    pub(crate) fn record<'a>(
        &self,
        now: Instant,
        peers: impl Iterator<Item = (&'a str, Option<f64>)>,
    ) {
        let mut all = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = Vec::new();
        for (peer, rtt) in peers {
            let ring = all.entry(peer.to_owned()).or_default();
            if ring.len() == KEEP {
                ring.pop_front();
            }
            ring.push_back((now, rtt));
            seen.push(peer.to_owned());
        }
        all.retain(|p, _| seen.contains(p));
    }

    /// Puts each peer's samples, as of `now`, into `status`.
    pub(crate) fn fill(&self, now: Instant, status: &mut NodeStatus) {
        let all = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        for p in &mut status.peers {
            if let Some(ring) = all.get(&p.peer) {
                p.rtt_history = ring
                    .iter()
                    .map(|(at, rtt)| RttSample {
                        ago_ms: u64::try_from(now.saturating_duration_since(*at).as_millis())
                            .unwrap_or(u64::MAX),
                        rtt_ms: *rtt,
                    })
                    .collect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::PeerStatus;

    fn status(peers: &[&str]) -> NodeStatus {
        NodeStatus {
            node: "n".into(),
            instance: String::new(),
            uptime_ms: 0,
            draining: false,
            peers: peers
                .iter()
                .map(|p| PeerStatus {
                    peer: (*p).into(),
                    state: "connected".into(),
                    dialer: true,
                    client: false,
                    rtt_ms: None,
                    reconnects: 0,
                    remote_restarts: 0,
                    in_flight_calls: 0,
                    in_flight_handlers: 0,
                    last_error: None,
                    last_error_ago_ms: None,
                    rtt_history: Vec::new(),
                })
                .collect(),
            handlers: Vec::new(),
        }
    }

    #[test]
    fn it_keeps_the_last_samples_of_the_peers_listed() {
        let h = History::default();
        let t0 = Instant::now();
        for i in 0..KEEP as u64 + 5 {
            let at = t0 + SAMPLE_EVERY * i as u32;
            let b = (i % 3 != 0).then_some(i as f64);
            h.record(at, [("a", Some(1.0)), ("b", b)].into_iter());
        }
        let now = t0 + SAMPLE_EVERY * (KEEP as u32 + 4);
        let mut s = status(&["a", "b", "c"]);
        h.fill(now, &mut s);
        let a = &s.peers[0].rtt_history;
        assert_eq!(a.len(), KEEP, "bounded");
        assert_eq!(a.last().map(|x| x.ago_ms), Some(0));
        assert_eq!(
            a.first().map(|x| x.ago_ms),
            Some(SAMPLE_EVERY.as_millis() as u64 * (KEEP as u64 - 1))
        );
        assert_eq!(
            s.peers[1].rtt_history.last().map(|x| x.rtt_ms),
            Some(Some(154.0))
        );
        assert!(s.peers[2].rtt_history.is_empty(), "never sampled");

        // A peer no longer listed is forgotten.
        h.record(now, [("b", None)].into_iter());
        let mut s = status(&["a", "b"]);
        h.fill(now, &mut s);
        assert!(s.peers[0].rtt_history.is_empty());
        assert_eq!(s.peers[1].rtt_history.len(), KEEP);
    }
}
