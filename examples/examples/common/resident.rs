//! This process's resident memory, for the benchmarks' memory figures.

/// Resident bytes of this process (from `/proc/self/statm`; 0 where unavailable).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
