//! Self-checking payloads, and the random generator that draws them and the run's
//! schedules.

use std::time::Duration;

use bytes::Bytes;

/// splitmix64: small, fast, and enough for schedules and payloads.
#[derive(Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub(crate) fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An independent generator for a task, drawn from this one.
    pub(crate) fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
}

/// Bytes of a payload's header: its seed and its length.
pub(crate) const HEADER: usize = 12;

/// A self-checking payload of `len` bytes (at least [`HEADER`]): its seed, its length, then
/// bytes drawn from the seed.
pub(crate) fn payload(seed: u64, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&seed.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    let mut r = Rng::new(seed);
    while v.len() < len {
        let word = r.next().to_le_bytes();
        let n = (len - v.len()).min(8);
        v.extend_from_slice(&word[..n]);
    }
    Bytes::from(v)
}

/// The seed of a payload made by [`payload`], if it is intact.
pub(crate) fn check(p: &[u8]) -> Result<u64, String> {
    if p.len() < HEADER {
        return Err(format!("{} bytes, shorter than a header", p.len()));
    }
    let seed = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(p[8..HEADER].try_into().expect("4 bytes")) as usize;
    if len != p.len() {
        return Err(format!("{} bytes where its header says {len}", p.len()));
    }
    let mut r = Rng::new(seed);
    for (i, chunk) in p[HEADER..].chunks(8).enumerate() {
        if chunk != &r.next().to_le_bytes()[..chunk.len()] {
            return Err(format!(
                "{} bytes of seed {seed:#x}, wrong from byte {}",
                p.len(),
                HEADER + 8 * i
            ));
        }
    }
    Ok(seed)
}

/// A payload in a few words, for a report.
pub(crate) fn describe(p: Option<&[u8]>) -> String {
    match p.map(check) {
        None => "no payload".into(),
        Some(Ok(seed)) => format!("{} bytes of seed {seed:#x}", p.map_or(0, <[u8]>::len)),
        Some(Err(why)) => format!("a corrupt payload ({why})"),
    }
}

/// A single call's payload size: half under 1 KiB, a third up to 64 KiB, the rest (one in
/// six) over 64 KiB, travelling in chunks.
pub(crate) fn call_size(r: &mut Rng) -> usize {
    let n = match r.below(100) {
        0..=49 => r.range(16, 1024),
        50..=84 => r.range(1025, 64 * 1024),
        _ => r.range(64 * 1024 + 1, 256 * 1024),
    };
    n as usize
}

/// Message `i` of the stream with seed `seed`: mostly small, one in twenty over 64 KiB.
pub(crate) fn message(seed: u64, i: u64) -> Bytes {
    let mut r = Rng::new(seed ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let own_seed = r.next();
    let len = match r.below(100) {
        0..=69 => r.range(16, 1024),
        70..=94 => r.range(1025, 16 * 1024),
        _ => r.range(64 * 1024 + 1, 100 * 1024),
    };
    payload(own_seed, len as usize)
}
