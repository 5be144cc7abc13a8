//! Where a pyc lives: PEP 3147/488 `__pycache__` paths, `sys.pycache_prefix`
//! mirror trees (PEP 3147 + bpo-33499), and the legacy sourceless layout.
//!
//! Paths are handled as raw bytes (POSIX), exactly as importlib's string
//! helpers handle them: no normalisation, no symlink resolution, `.` and `..`
//! kept verbatim.

use super::PycRules;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `importlib._bootstrap_external._PYCACHE`.
const PYCACHE: &[u8] = b"__pycache__";
/// `importlib._bootstrap_external._OPT`.
const OPT: &[u8] = b"opt-";
/// `importlib.machinery.BYTECODE_SUFFIXES[0]` (the only entry since 3.5).
const BYTECODE_SUFFIX: &[u8] = b".pyc";
/// `importlib.machinery.SOURCE_SUFFIXES[0]` on POSIX.
const SOURCE_SUFFIX: &[u8] = b".py";
/// `path_separators` on POSIX.
const SEP: u8 = b'/';

// mirrors importlib._bootstrap_external._path_split (POSIX: one separator)
fn path_split(path: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memrchr(SEP, path) {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

fn rstrip_sep(part: &[u8]) -> &[u8] {
    let end = part.iter().rposition(|&b| b != SEP).map_or(0, |i| i + 1);
    &part[..end]
}

fn lstrip_sep(part: &[u8]) -> &[u8] {
    let start = part.iter().position(|&b| b != SEP).unwrap_or(part.len());
    &part[start..]
}

// mirrors importlib._bootstrap_external._path_join (POSIX branch):
// `path_sep.join([part.rstrip(path_separators) for part in path_parts if part])`
// Empty parts are dropped, but a part that is empty only after rstrip ("/")
// still contributes its (empty) slot.
fn path_join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    let mut first = true;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        if !first {
            out.push(SEP);
        }
        first = false;
        out.extend_from_slice(rstrip_sep(part));
    }
    out
}

// mirrors importlib._bootstrap_external._path_isabs (POSIX branch)
fn path_isabs(path: &[u8]) -> bool {
    path.first() == Some(&SEP)
}

// mirrors the "make head absolute" step of cache_from_source: 3.8-3.11 do
// `_path_join(_os.getcwd(), head)`; 3.12+ call `_path_abspath`, which first
// removes one leading "./" (`str.removeprefix`). Neither normalises.
fn abspath_head(head: &[u8], cwd: &[u8], rules: &PycRules) -> Vec<u8> {
    if path_isabs(head) {
        return head.to_vec();
    }
    let head = if rules.version >= (3, 12) {
        head.strip_prefix(b"./").unwrap_or(head)
    } else {
        head
    };
    path_join(&[cwd, head])
}

fn bytes_to_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&bytes))
}

/// The pyc path the interpreter described by `rules` uses for `source` at
/// optimisation level `optimize` (`sys.flags.optimize`; any level but 0 adds
/// `.opt-N`, so `-OOO` gives `opt-3`).
///
/// `prefix` is `sys.pycache_prefix` (ignored before 3.8, which has none);
/// `cwd` is the interpreter's `os.getcwd()`, absolute. With a prefix, the
/// source's directory is made absolute by joining `cwd` (no normalising, no
/// symlink resolution; 3.12+ first drops one leading `./`), stripped of
/// leading separators and placed under the prefix. CPython leaves a relative
/// prefix relative (so its answer is relative to its cwd); this function
/// joins it to `cwd` instead, which names the same file.
///
/// CPython's quirks are kept: a source without a dot gives `xcpython-311.pyc`,
/// and a source directly under `/` has an empty head, so it is looked up
/// relative to the cwd.
///
/// `None` when the interpreter has no cache tag (CPython raises
/// NotImplementedError) or when CPython itself fails on the path (an
/// IndexError for sources like `//x.py` under a prefix, before 3.14).
// mirrors importlib._bootstrap_external.cache_from_source (called with
// optimization=None, i.e. from sys.flags.optimize, as SourceLoader.get_code does)
pub fn cache_from_source(
    source: &Path,
    rules: &PycRules,
    optimize: u32,
    prefix: Option<&Path>,
    cwd: &Path,
) -> Option<PathBuf> {
    let tag = rules.cache_tag.as_deref()?;
    let (head, tail) = path_split(source.as_os_str().as_bytes());
    // base, sep, rest = tail.rpartition('.')
    let (base, sep, rest): (&[u8], &[u8], &[u8]) = match memchr::memrchr(b'.', tail) {
        Some(i) => (&tail[..i], b".", &tail[i + 1..]),
        None => (b"", b"", tail),
    };
    let mut filename = Vec::with_capacity(tail.len() + tag.len() + 12);
    filename.extend_from_slice(if base.is_empty() { rest } else { base });
    filename.extend_from_slice(sep);
    filename.extend_from_slice(tag.as_bytes());
    if optimize != 0 {
        filename.push(b'.');
        filename.extend_from_slice(OPT);
        filename.extend_from_slice(optimize.to_string().as_bytes());
    }
    filename.extend_from_slice(BYTECODE_SUFFIX);

    let prefix = prefix.filter(|_| rules.supports_pycache_prefix());
    let Some(prefix) = prefix else {
        return Some(bytes_to_path(path_join(&[head, PYCACHE, &filename])));
    };
    let cwd = cwd.as_os_str().as_bytes();
    let mut head = abspath_head(head, cwd, rules);
    // `if head[1] == ':' and head[0] not in path_separators: head = head[2:]`
    // raises IndexError when head is shorter than 2 characters; 3.14 slices
    // instead (`head[1:2] == ':' and head[0:1] not in ...`), so a short head
    // ("/" for `//x.py`, or the cwd `/`) gets a path there.
    if head.len() < 2 {
        if rules.version < (3, 14) {
            return None;
        }
    } else if head[1] == b':' && head[0] != SEP {
        head.drain(..2);
    }
    let joined = path_join(&[prefix.as_os_str().as_bytes(), lstrip_sep(&head), &filename]);
    if path_isabs(&joined) {
        Some(bytes_to_path(joined))
    } else {
        // A relative prefix: CPython opens it relative to its cwd.
        Some(bytes_to_path(path_join(&[cwd, &joined])))
    }
}

/// The source path a `__pycache__` (or prefix-tree) pyc belongs to, or `None`
/// where CPython raises ValueError/NotImplementedError (no cache tag, not in
/// `__pycache__` nor under the prefix, not 2 or 3 dots in the name, a bad
/// `opt-` part).
///
/// `prefix` is `sys.pycache_prefix` (ignored before 3.8). It is compared
/// textually, as CPython does: pass it in the same form (absolute or
/// relative) as `pyc`.
// mirrors importlib._bootstrap_external.source_from_cache
pub fn source_from_cache(pyc: &Path, rules: &PycRules, prefix: Option<&Path>) -> Option<PathBuf> {
    rules.cache_tag.as_ref()?;
    let (mut head, pycache_filename) = path_split(pyc.as_os_str().as_bytes());
    let mut found_in_prefix = false;
    if let Some(prefix) = prefix.filter(|_| rules.supports_pycache_prefix()) {
        let stripped = rstrip_sep(prefix.as_os_str().as_bytes());
        if head.starts_with(stripped) && head.get(stripped.len()) == Some(&SEP) {
            head = &head[stripped.len()..];
            found_in_prefix = true;
        }
    }
    if !found_in_prefix {
        let (h, pycache) = path_split(head);
        if pycache != PYCACHE {
            return None;
        }
        head = h;
    }
    let dots = memchr::memchr_iter(b'.', pycache_filename).count();
    if dots == 3 {
        // optimization = pycache_filename.rsplit('.', 2)[-2]
        let mut parts = pycache_filename.rsplitn(3, |&b| b == b'.');
        let _suffix = parts.next();
        let optimization = parts.next().unwrap_or_default();
        let level = optimization.strip_prefix(OPT)?;
        if !py_isalnum(level) {
            return None;
        }
    } else if dots != 2 {
        return None;
    }
    let base = match memchr::memchr(b'.', pycache_filename) {
        Some(i) => &pycache_filename[..i],
        None => pycache_filename,
    };
    let mut name = base.to_vec();
    name.extend_from_slice(SOURCE_SUFFIX);
    Some(bytes_to_path(path_join(&[head, &name])))
}

// mirrors str.isalnum closely enough for pyc names: non-empty, every
// character alphanumeric; undecodable bytes (surrogate escapes) are not.
fn py_isalnum(s: &[u8]) -> bool {
    match std::str::from_utf8(s) {
        Ok(s) => !s.is_empty() && s.chars().all(char::is_alphanumeric),
        Err(_) => false,
    }
}

/// The legacy (PEP 3147 "sourceless") pyc beside a source: `x.py` gives
/// `x.pyc` in the same directory, which `SourcelessFileLoader` imports when
/// no source is present.
// mirrors compileall.compile_file's legacy mode: `cfile = fullname + 'c'`
// (for a name not ending in ".py", ".pyc" is appended instead).
pub fn legacy_pyc_path(source: &Path) -> PathBuf {
    let mut bytes = source.as_os_str().as_bytes().to_vec();
    if bytes.ends_with(SOURCE_SUFFIX) {
        bytes.push(b'c');
    } else {
        bytes.extend_from_slice(BYTECODE_SUFFIX);
    }
    bytes_to_path(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(minor: u32) -> PycRules {
        PycRules {
            version: (3, minor),
            magic: [1, 2, 3, 4],
            cache_tag: Some(format!("cpython-3{minor}")),
        }
    }

    fn cfs(src: &str, minor: u32, opt: u32, prefix: Option<&str>, cwd: &str) -> Option<String> {
        cache_from_source(
            Path::new(src),
            &rules(minor),
            opt,
            prefix.map(Path::new),
            Path::new(cwd),
        )
        .map(|p| p.to_string_lossy().into_owned())
    }

    #[test]
    fn plain_layout_and_quirks() {
        assert_eq!(
            cfs("a/b.py", 11, 0, None, "/w").unwrap(),
            "a/__pycache__/b.cpython-311.pyc"
        );
        assert_eq!(
            cfs("a/b.py", 11, 3, None, "/w").unwrap(),
            "a/__pycache__/b.cpython-311.opt-3.pyc"
        );
        assert_eq!(
            cfs("x", 11, 0, None, "/w").unwrap(),
            "__pycache__/xcpython-311.pyc"
        );
        assert_eq!(
            cfs("/x.py", 11, 0, None, "/w").unwrap(),
            "__pycache__/x.cpython-311.pyc"
        );
        assert_eq!(
            cfs("a//b.py", 11, 0, None, "/w").unwrap(),
            "a/__pycache__/b.cpython-311.pyc"
        );
    }

    #[test]
    fn prefix_layout() {
        assert_eq!(
            cfs("./a/x.py", 11, 0, Some("/p"), "/w").unwrap(),
            "/p/w/./a/x.cpython-311.pyc"
        );
        assert_eq!(
            cfs("./a/x.py", 12, 0, Some("/p"), "/w").unwrap(),
            "/p/w/a/x.cpython-312.pyc"
        );
        assert_eq!(
            cfs("x.py", 12, 1, Some("rel/"), "/w").unwrap(),
            "/w/rel/w/x.cpython-312.opt-1.pyc"
        );
        assert_eq!(cfs("//x.py", 12, 0, Some("/p"), "/w"), None);
        assert_eq!(cfs("x.py", 12, 0, Some("/p"), "/"), None);
        // 3.7 has no sys.pycache_prefix.
        assert_eq!(
            cfs("x.py", 7, 0, Some("/p"), "/w").unwrap(),
            "__pycache__/x.cpython-37.pyc"
        );
    }

    #[test]
    fn no_cache_tag() {
        let mut r = rules(11);
        r.cache_tag = None;
        assert_eq!(
            cache_from_source(Path::new("x.py"), &r, 0, None, Path::new("/")),
            None
        );
        assert_eq!(
            source_from_cache(Path::new("__pycache__/x.cpython-311.pyc"), &r, None),
            None
        );
    }

    #[test]
    fn source_round_trip() {
        let r = rules(11);
        let s = |p: &str, pre: Option<&str>| {
            source_from_cache(Path::new(p), &r, pre.map(Path::new))
                .map(|p| p.to_string_lossy().into_owned())
        };
        assert_eq!(
            s("a/__pycache__/b.cpython-311.opt-2.pyc", None).unwrap(),
            "a/b.py"
        );
        assert_eq!(s("/p/w/b.cpython-311.pyc", Some("/p/")).unwrap(), "/w/b.py");
        assert_eq!(s("a/b.cpython-311.pyc", None), None);
        assert_eq!(s("a/__pycache__/b.cpython-311.x-2.pyc", None), None);
        assert_eq!(s("a/__pycache__/b.pyc", None), None);
    }

    #[test]
    fn legacy() {
        assert_eq!(legacy_pyc_path(Path::new("a/x.py")), Path::new("a/x.pyc"));
        assert_eq!(legacy_pyc_path(Path::new("a/x")), Path::new("a/x.pyc"));
    }

    #[test]
    fn odd_bytes_never_panic() {
        let r = rules(12);
        for raw in [
            &b""[..],
            b"/",
            b"//",
            b".",
            b"..",
            b"\xff\xfe.py",
            b"/\xff/",
            b"a/.",
            b"./",
            b"....",
        ] {
            let p = Path::new(OsStr::from_bytes(raw));
            for pre in [None, Some(Path::new("/p")), Some(Path::new(""))] {
                for cwd in ["/", "/w", ""] {
                    let c = cache_from_source(p, &r, 2, pre, Path::new(cwd));
                    if let Some(c) = c {
                        let _ = source_from_cache(&c, &r, pre);
                    }
                }
            }
            let _ = source_from_cache(p, &r, Some(Path::new("/")));
            let _ = legacy_pyc_path(p);
        }
    }
}
