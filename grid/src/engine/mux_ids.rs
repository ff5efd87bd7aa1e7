//! The peer's mux ids of the calls and streams served here, to their entries.
//!
//! The peer chooses these ids, so they are hashed, with a keyed mix (splitmix64's
//! finalizer over the id and a per-connection seed): much cheaper than SipHash on the
//! per-message path, and without the seed an attacker cannot aim its ids at one bucket.
//! Even then the table never holds more than the concurrency limit.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use super::Key;

/// Mux id → entry, for the live calls and streams served here.
pub(super) type MuxIds = HashMap<u64, Key, Seeded>;

pub(super) fn new(seed: u64) -> MuxIds {
    HashMap::with_hasher(Seeded(seed))
}

/// Builds [`Mix`] hashers with the connection's seed.
#[derive(Clone, Copy, Debug)]
pub(super) struct Seeded(u64);

impl BuildHasher for Seeded {
    type Hasher = Mix;

    fn build_hasher(&self) -> Mix {
        Mix(self.0)
    }
}

/// A keyed 64-bit mix for integer keys.
pub(super) struct Mix(u64);

impl Hasher for Mix {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = mix(self.0 ^ u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = mix(self.0 ^ n);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearby_ids_spread_and_the_seed_changes_the_hash() {
        let a = Seeded(1);
        let b = Seeded(2);
        let hash = |s: &Seeded, id: u64| s.hash_one(id);
        let buckets: std::collections::HashSet<u64> =
            (1..=1024u64).map(|id| hash(&a, id) & 1023).collect();
        assert!(buckets.len() > 500, "{} buckets of 1024", buckets.len());
        assert_ne!(hash(&a, 7), hash(&b, 7));
    }
}
