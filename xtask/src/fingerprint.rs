//! A stable content hash for cache keys (the test database template, the sandbox base images).
//!
//! FNV-1a, 64 bits: not cryptographic, but the same on every machine and Rust release, which
//! `std`'s hasher does not promise.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Hex digest of `parts`, each length-prefixed so that `["ab", "c"]` and `["a", "bc"]` differ.
pub fn hex(parts: &[&[u8]]) -> String {
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for part in parts {
        feed(&(part.len() as u64).to_le_bytes());
        feed(part);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_fnv1a() {
        assert_eq!(hex(&[]), "cbf29ce484222325");
    }

    #[test]
    fn parts_are_delimited() {
        assert_ne!(hex(&[b"ab", b"c"]), hex(&[b"a", b"bc"]));
        assert_eq!(hex(&[b"ab", b"c"]), hex(&[b"ab", b"c"]));
    }
}
