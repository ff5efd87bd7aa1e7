//! Stable handler ids: `(service id << 16) | method id`, where a method's id is its explicit
//! `#[grid(id = N)]` or a 16-bit hash of its name (so ids never depend on declaration
//! order). PROTOCOL.md documents the same function.

/// The 16-bit id of a method name: FNV-1a 32 of the UTF-8 name, folded to 16 bits by
/// XOR of the halves; 0 (reserved) becomes 1.
pub fn method_id(name: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let folded = ((h >> 16) ^ (h & 0xffff)) as u16;
    if folded == 0 {
        1
    } else {
        folded
    }
}

/// The handler id of a method of a service.
pub fn handler_id(service: u16, method: u16) -> u32 {
    (u32::from(service) << 16) | u32::from(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable() {
        // Pinned: changing these breaks every deployed peer.
        assert_eq!(method_id("disk_info"), 0x8e99); // the example in PROTOCOL.md
        assert_eq!(method_id("walk_dir"), 0x81b9);
        assert_eq!(method_id(""), 0x9dc5 ^ 0x811c);
        assert_eq!(handler_id(1, 2), 0x0001_0002);
    }
}
