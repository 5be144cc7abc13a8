//! What a pyc header says (PEP 552), and the source facts it is compared with.
//!
//! 3.7+: magic(4) | flags(4, LE) | mtime(4, LE) size(4, LE)   when flags bit 0 is clear
//!                              | source hash(8)              when flags bit 0 is set
//! 3.6:  magic(4) | mtime(4, LE) | size(4, LE)

use super::reason::StaleReason;
use super::PycRules;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// Flags bit 0: the pyc is hash-based (PEP 552).
pub(crate) const FLAG_HASH_BASED: u32 = 0b01;
/// Flags bit 1: a hash-based pyc asks to be checked against its source.
pub(crate) const FLAG_CHECK_SOURCE: u32 = 0b10;

/// A parsed pyc header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The flags word (always 0 on 3.6, whose headers have none).
    pub flags: u32,
    /// How the pyc is tied to its source.
    pub kind: PycKind,
}

/// How a pyc is tied to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PycKind {
    /// Source mtime and size, each truncated to 32 bits.
    Timestamp {
        /// `int(st_mtime) & 0xFFFFFFFF` of the source when compiled.
        mtime: u32,
        /// `st_size & 0xFFFFFFFF` of the source when compiled.
        size: u32,
    },
    /// `importlib.util.source_hash` of the source when compiled.
    Hash {
        /// Flags bit 1 (`check_source`): checked unless
        /// `--check-hash-based-pycs never`.
        checked: bool,
        /// The 8 hash bytes.
        hash: [u8; 8],
    },
}

impl PycKind {
    /// The invalidation mode a pyc of this kind was written in.
    // mirrors py_compile.compile's flags: TIMESTAMP -> 0,
    // CHECKED_HASH -> 0b11, UNCHECKED_HASH -> 0b01
    pub fn mode(&self) -> crate::pyc::InvalidationMode {
        use crate::pyc::InvalidationMode;
        match self {
            PycKind::Timestamp { .. } => InvalidationMode::Timestamp,
            PycKind::Hash { checked: true, .. } => InvalidationMode::CheckedHash,
            PycKind::Hash { checked: false, .. } => InvalidationMode::UncheckedHash,
        }
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses the start of a pyc. Only the first [`PycRules::header_len`] bytes
/// are looked at. Errors in CPython's order: a wrong magic (also when fewer
/// than 4 bytes are present), then a short header, then flag bits other than
/// the two defined ones.
// mirrors importlib._bootstrap_external._classify_pyc (3.7+) and the header
// part of _validate_bytecode_header (3.6)
pub fn parse_header(bytes: &[u8], rules: &PycRules) -> Result<Header, StaleReason> {
    if bytes.get(..4) != Some(&rules.magic[..]) {
        return Err(StaleReason::BadMagic);
    }
    if bytes.len() < rules.header_len() {
        return Err(StaleReason::ShortHeader);
    }
    if !rules.has_flags_field() {
        return Ok(Header {
            flags: 0,
            kind: PycKind::Timestamp {
                mtime: le32(&bytes[4..8]),
                size: le32(&bytes[8..12]),
            },
        });
    }
    let flags = le32(&bytes[4..8]);
    if flags & !(FLAG_HASH_BASED | FLAG_CHECK_SOURCE) != 0 {
        return Err(StaleReason::BadFlags);
    }
    let kind = if flags & FLAG_HASH_BASED != 0 {
        let mut hash = [0u8; 8];
        hash.copy_from_slice(&bytes[8..16]);
        PycKind::Hash {
            checked: flags & FLAG_CHECK_SOURCE != 0,
            hash,
        }
    } else {
        // Bit 1 without bit 0 is legal and means nothing: a timestamp pyc.
        PycKind::Timestamp {
            mtime: le32(&bytes[8..12]),
            size: le32(&bytes[12..16]),
        }
    };
    Ok(Header { flags, kind })
}

/// `int(st_mtime)` for a file whose modification time is `sec` seconds plus
/// `nsec` nanoseconds (`0 <= nsec < 1e9`, also before 1970).
///
/// CPython's `st_mtime` is the double `sec + nsec * 1e-9` (so
/// `nsec = 999999999` usually rounds up to the next second), and `int()`
/// truncates it toward zero (so -1.5 s gives -1). The result can exceed
/// `i64` only for absurd `sec`; `i128` keeps it exact.
// mirrors posixmodule.c fill_time (`sec + nsec * 1e-9`) followed by int()
pub(crate) fn st_mtime_int(sec: i64, nsec: i64) -> i128 {
    let st_mtime = sec as f64 + nsec as f64 * 1e-9;
    // Every finite f64 below 2^127 in magnitude converts exactly.
    st_mtime.trunc() as i128
}

/// `int(os.stat(source).st_mtime)`, the value `SourceLoader.get_code` derives
/// from the source's metadata.
pub fn mtime_seconds(meta: &Metadata) -> i128 {
    st_mtime_int(meta.mtime(), meta.mtime_nsec())
}

/// The header's mtime field for a source with metadata `meta`:
/// `int(st_mtime) & 0xFFFFFFFF`.
// mirrors importlib._bootstrap_external._pack_uint32(source_mtime)
pub fn mtime_field(meta: &Metadata) -> u32 {
    mtime_seconds(meta) as u32
}

/// The header's size field for a source of `size` bytes: `size & 0xFFFFFFFF`.
pub(crate) fn size_field(size: u64) -> u32 {
    size as u32
}

/// Compares a timestamp header with the source's `int(st_mtime)` and size.
///
/// 3.7+ compares `mtime & 0xFFFFFFFF`; 3.6 compares the raw `int(st_mtime)`,
/// so on 3.6 a source dated before 1970 or after 2106 never matches.
// mirrors importlib._bootstrap_external._validate_timestamp_pyc (3.7+) and
// the stats part of _validate_bytecode_header (3.6)
pub(crate) fn validate_timestamp(
    header_mtime: u32,
    header_size: u32,
    source_mtime: i128,
    source_size: u64,
    rules: &PycRules,
) -> Result<(), StaleReason> {
    let mtime_ok = if rules.has_flags_field() {
        header_mtime == source_mtime as u32
    } else {
        i128::from(header_mtime) == source_mtime
    };
    if !mtime_ok {
        return Err(StaleReason::Mtime);
    }
    if header_size != size_field(source_size) {
        return Err(StaleReason::Size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(minor: u32) -> PycRules {
        PycRules {
            version: (3, minor),
            magic: [0x10, 0x20, b'\r', b'\n'],
            cache_tag: Some("t".into()),
        }
    }

    fn header(flags: u32, rest: [u8; 8]) -> Vec<u8> {
        let mut v = vec![0x10, 0x20, b'\r', b'\n'];
        v.extend(flags.to_le_bytes());
        v.extend(rest);
        v
    }

    #[test]
    fn classify_order_and_kinds() {
        let r = rules(12);
        assert_eq!(parse_header(b"", &r), Err(StaleReason::BadMagic));
        assert_eq!(parse_header(&[0x10, 0x20], &r), Err(StaleReason::BadMagic));
        assert_eq!(
            parse_header(&header(0, [0; 8])[..15], &r),
            Err(StaleReason::ShortHeader)
        );
        assert_eq!(
            parse_header(&header(4, [0; 8]), &r),
            Err(StaleReason::BadFlags)
        );
        let h = parse_header(&header(2, [1, 0, 0, 0, 2, 0, 0, 0]), &r).unwrap();
        assert_eq!(h.kind, PycKind::Timestamp { mtime: 1, size: 2 });
        let h = parse_header(&header(3, [9; 8]), &r).unwrap();
        assert_eq!(
            h.kind,
            PycKind::Hash {
                checked: true,
                hash: [9; 8]
            }
        );
        let h = parse_header(&header(1, [9; 8]), &r).unwrap();
        assert_eq!(
            h.kind,
            PycKind::Hash {
                checked: false,
                hash: [9; 8]
            }
        );
    }

    #[test]
    fn py36_header_is_12_bytes() {
        let r = rules(6);
        let mut v = vec![0x10, 0x20, b'\r', b'\n', 5, 0, 0, 0, 6, 0, 0];
        assert_eq!(parse_header(&v, &r), Err(StaleReason::ShortHeader));
        v.push(0);
        let h = parse_header(&v, &r).unwrap();
        assert_eq!(
            h,
            Header {
                flags: 0,
                kind: PycKind::Timestamp { mtime: 5, size: 6 }
            }
        );
    }

    #[test]
    fn mtime_float_truncation() {
        assert_eq!(st_mtime_int(1_700_000_000, 999_999_999), 1_700_000_001);
        assert_eq!(st_mtime_int(1_700_000_000, 999_999_700), 1_700_000_000);
        assert_eq!(st_mtime_int(-1, 999_999_999), 0);
        assert_eq!(st_mtime_int(-2, 500_000_000), -1);
        assert_eq!(st_mtime_int(-2, 500_000_000) as u32, 0xFFFF_FFFF);
        assert_eq!(st_mtime_int(1 << 32, 5) as u32, 0);
        assert_eq!(st_mtime_int(i64::MAX, 999_999_999), 1i128 << 63);
    }

    #[test]
    fn py36_does_not_mask_mtime() {
        assert_eq!(validate_timestamp(0xFFFF_FFFF, 0, -1, 0, &rules(7)), Ok(()));
        assert_eq!(
            validate_timestamp(0xFFFF_FFFF, 0, -1, 0, &rules(6)),
            Err(StaleReason::Mtime)
        );
        assert_eq!(
            validate_timestamp(3, 7, 3, (1 << 32) + 7, &rules(6)),
            Ok(())
        );
        assert_eq!(
            validate_timestamp(3, 7, 3, 8, &rules(9)),
            Err(StaleReason::Size)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40), minor in 6u32..14) {
            let _ = parse_header(&bytes, &rules(minor));
        }
    }
}
