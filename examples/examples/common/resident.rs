//! This process's resident memory, for the benchmarks' memory figures.

/// Resident bytes of this process (from `/proc/self/statm`; 0 where unavailable): all of
/// them, code and other file-backed pages included.
pub fn resident_bytes() -> u64 {
    statm().0
}

/// Resident bytes that belong to this process alone (heap, stacks): all resident bytes
/// less the file-backed ones (the program's code, which a process faults in once, the
/// first time it runs a path, and which the kernel may drop and read again).
#[allow(dead_code)] // not every benchmark reports it
pub fn private_resident_bytes() -> u64 {
    let (all, file_backed) = statm();
    all.saturating_sub(file_backed)
}

/// Resident and file-backed resident bytes (`/proc/self/statm` fields 2 and 3).
fn statm() -> (u64, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut pages = statm
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse::<u64>().unwrap_or(0) * 4096);
    let all = pages.next().unwrap_or(0);
    (all, pages.next().unwrap_or(0))
}
