//! Directory listings as far as imports can tell them apart.
//!
//! The resolver reads each directory once, as importlib's `FileFinder` does
//! (`_fill_cache` keeps the set of names). The warm manifest stamps those
//! directories by mtime, which also moves for changes no import can see: an
//! editor's atomic save (write a temp file, rename it over the module), a
//! swap or backup file, a log written next to the script, a `__pycache__`
//! created or removed. [`digest`] summarises only the names a lookup could
//! ever match, so the launcher's repair path can tell such a change from one
//! that might change the closure.

use std::ffi::OsStr;
use std::hash::Hasher;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// File extensions a name must end with (after its last dot) to be a
/// possible import target or start-up hook: sources, bytecode, extension
/// modules (POSIX: every `EXTENSION_SUFFIXES` entry ends in `.so`), and
/// `.pth` files (`site.addpackage`). `pyw`/`pyd`/`pyo` are kept to stay
/// conservative.
const IMPORT_EXTENSIONS: &[&[u8]] = &[b"py", b"pyc", b"so", b"pth", b"pyw", b"pyd", b"pyo"];

/// Whether a directory entry named `name` could ever be matched by
/// `FileFinder.find_spec` or read by `site`. A lookup asks for `tail` (a
/// package or namespace directory: an identifier, no dot) or `tail` +
/// a loader suffix, so a name that starts with a dot, or whose last
/// extension is none of `IMPORT_EXTENSIONS`, never matches. `__pycache__`
/// is left out too: it only holds pycs, and is never imported by name.
/// Anything doubtful counts as mattering (a wrong "matters" only costs a
/// closure recomputation).
// mirrors the lookups of importlib._bootstrap_external.FileFinder.find_spec
// against the cache FileFinder._fill_cache builds
pub(crate) fn matters(name: &OsStr) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b[0] == b'.' || b == b"__pycache__" {
        return false;
    }
    match b.iter().rposition(|&c| c == b'.') {
        None => true,
        Some(dot) => IMPORT_EXTENSIONS.contains(&&b[dot + 1..]),
    }
}

/// A digest of the names in `dir` that [`matters`] keeps, with each one's
/// file type (as the listing reports it). `None` when the directory cannot
/// be read.
pub(crate) fn digest(dir: &Path) -> Option<u64> {
    let mut names: Vec<(Vec<u8>, u8)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| matters(&e.file_name()))
        .map(|e| {
            let kind = match e.file_type() {
                Ok(t) if t.is_dir() => 1,
                Ok(t) if t.is_file() => 2,
                Ok(t) if t.is_symlink() => 3,
                _ => 4,
            };
            (e.file_name().as_bytes().to_vec(), kind)
        })
        .collect();
    names.sort_unstable();
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x006c_6973_7469_6e67, 0x6469_7273);
    for (name, kind) in &names {
        h.write_u64(name.len() as u64);
        h.write(name);
        h.write_u8(*kind);
    }
    h.write_u64(names.len() as u64);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_imported_do_not_matter() {
        for n in [
            "pkg",
            "mod.py",
            "mod.pyc",
            "_x.cpython-312-x86_64-linux-gnu.so",
            "_y.abi3.so",
            "z.so",
            "extra.pth",
            "README",
            "4913",
        ] {
            assert!(matters(OsStr::new(n)), "{n}");
        }
        for n in [
            ".mod.py.swp",
            ".#mod.py",
            "mod.py~",
            "mod.py.orig",
            "app.log",
            "__pycache__",
            "pkg-1.0.dist-info",
            "notes.txt",
        ] {
            assert!(!matters(OsStr::new(n)), "{n}");
        }
    }

    #[test]
    fn digest_sees_only_what_matters() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("a.py"), "").unwrap();
        let first = digest(d).unwrap();
        std::fs::write(d.join(".a.py.swp"), "").unwrap();
        std::fs::create_dir(d.join("__pycache__")).unwrap();
        std::fs::write(d.join("run.log"), "").unwrap();
        assert_eq!(digest(d), Some(first));
        std::fs::write(d.join("b.py"), "").unwrap();
        assert_ne!(digest(d), Some(first));
        std::fs::remove_file(d.join("b.py")).unwrap();
        std::fs::create_dir(d.join("b")).unwrap();
        assert_ne!(digest(d), Some(first));
        assert_eq!(digest(&d.join("missing")), None);
    }
}
