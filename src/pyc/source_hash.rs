//! The source hash stored in hash-based pycs (PEP 552).

use super::PycRules;
use siphasher::sip::{SipHasher13, SipHasher24};

/// `importlib.util.source_hash(source)` of the interpreter `rules` describes:
/// SipHash of the bytes keyed with k0 = `_RAW_MAGIC_NUMBER` (the 4 magic
/// bytes, `\r\n` included, read as a little-endian integer) and k1 = 0,
/// returned as the 8 little-endian bytes of the 64-bit result.
///
/// The SipHash variant follows `_Py_KeyedHash`: SipHash-2-4 up to 3.10,
/// SipHash-1-3 from 3.11 (when CPython switched its string hash to
/// SipHash-1-3 and made `_Py_KeyedHash` use the same function).
// mirrors importlib.util.source_hash -> _imp.source_hash(_RAW_MAGIC_NUMBER, source)
// -> Python/pyhash.c _Py_KeyedHash
pub fn source_hash(rules: &PycRules, source: &[u8]) -> [u8; 8] {
    let k0 = u64::from(u32::from_le_bytes(rules.magic));
    let h = if rules.version >= (3, 11) {
        SipHasher13::new_with_keys(k0, 0).hash(source)
    } else {
        SipHasher24::new_with_keys(k0, 0).hash(source)
    };
    h.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_and_key_change_the_hash() {
        let r10 = PycRules {
            version: (3, 10),
            magic: [1, 2, 3, 4],
            cache_tag: None,
        };
        let r11 = PycRules {
            version: (3, 11),
            ..r10.clone()
        };
        let other_key = PycRules {
            magic: [1, 2, 3, 5],
            ..r10.clone()
        };
        assert_ne!(source_hash(&r10, b"x = 1\n"), source_hash(&r11, b"x = 1\n"));
        assert_ne!(
            source_hash(&r10, b"x = 1\n"),
            source_hash(&other_key, b"x = 1\n")
        );
        assert_eq!(source_hash(&r10, b""), source_hash(&r10, b""));
    }
}
