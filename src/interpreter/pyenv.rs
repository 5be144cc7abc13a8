//! Resolving a pyenv shim the way pyenv would, without running bash.
//!
//! A pyenv shim (`$PYENV_ROOT/shims/NAME`) is a bash script that runs
//! `pyenv exec NAME`, which costs tens of milliseconds. This module mirrors
//! pyenv 2.x's `libexec/pyenv-{version-file,version-file-read,version-name,
//! latest,prefix,which,exec}` closely enough to name the same file, and says
//! [`ShimResolution::Unsure`] whenever it cannot be sure (unknown hooks, glob
//! characters, path-like version names, non-CPython version families); the
//! caller then runs the shim itself, which is always correct.
//!
//! Facts checked against pyenv 2.6 on this machine (see
//! `tests/interpreter_discovery.rs`, which compares with the real pyenv):
//! * version names may be prefixes (`3.11` → newest installed `3.11.x`,
//!   `3` → newest `3.x.y`), may carry a `python-` prefix, and `3.12.1t`
//!   falls back to `3.12.1` when no free-threaded build is installed;
//! * a version that is not installed, or lacks the command, is skipped, and
//!   `system` is always tried last: the command on PATH minus the shims dir;
//! * `pyenv exec` exports `PYENV_VERSION` (the resolved names) and, for a
//!   pyenv-managed version, prepends its `bin` dir to `PATH`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Environment lookup used instead of the process environment.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// What `pyenv exec COMMAND` would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShimResolution {
    /// pyenv would exec `path`.
    Found {
        /// The file pyenv execs (unresolved: `versions/NAME/bin/COMMAND`).
        path: PathBuf,
        /// The name that selected it (`3.11.7`, or `system`).
        version: String,
        /// Where the version setting came from (env var or file).
        origin: String,
        /// Variables `pyenv exec` sets for the child (`PYENV_VERSION`, `PATH`).
        env: Vec<(OsString, OsString)>,
    },
    /// Not mirrored exactly (reason given): run the shim itself.
    Unsure(String),
}

/// `$PYENV_ROOT` (trailing `/` removed), else `$HOME/.pyenv`.
// mirrors libexec/pyenv: PYENV_ROOT="${PYENV_ROOT%/}" / "${HOME}/.pyenv"
pub(crate) fn pyenv_root(env: EnvLookup<'_>) -> Option<PathBuf> {
    match env("PYENV_ROOT") {
        Some(v) if !v.is_empty() => {
            let mut b = v.into_vec();
            if b.len() > 1 && b.last() == Some(&b'/') {
                b.pop();
            }
            Some(PathBuf::from(OsString::from_vec(b)))
        }
        _ => match env("HOME") {
            Some(h) if !h.is_empty() => Some(PathBuf::from(h).join(".pyenv")),
            _ => None,
        },
    }
}

/// True when `dir` is `root/shims` (same path, or same directory by dev+ino).
pub(crate) fn is_shims_dir(dir: &Path, root: &Path) -> bool {
    let shims = root.join("shims");
    if dir == shims {
        return true;
    }
    match (std::fs::metadata(dir), std::fs::metadata(&shims)) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            a.dev() == b.dev() && a.ino() == b.ino()
        }
        _ => false,
    }
}

/// Inputs of one resolution.
pub(crate) struct ShimQuery<'a> {
    /// `$PYENV_ROOT`.
    pub root: &'a Path,
    /// The shim's name (`python3`).
    pub command: &'a OsStr,
    /// Environment lookup (PYENV_VERSION, PYENV_DIR, PWD, PATH, HOME, ...).
    pub env: EnvLookup<'a>,
    /// The process working directory.
    pub cwd: &'a Path,
    /// Files that must never be chosen on the `system` PATH search (kolosal itself).
    pub skip: &'a dyn Fn(&Path) -> bool,
}

/// Works out what `$root/shims/COMMAND` would exec.
// mirrors libexec/pyenv-exec: version-name -f, then pyenv-which
pub(crate) fn resolve_shim(q: &ShimQuery<'_>) -> ShimResolution {
    match resolve_inner(q) {
        Ok(r) => r,
        Err(reason) => ShimResolution::Unsure(reason.to_string()),
    }
}

/// Why [`resolve_shim`] cannot be sure what pyenv would run; its text is
/// [`ShimResolution::Unsure`]'s reason.
#[derive(Debug)]
pub(crate) enum ShimError {
    /// pip, `*-config` and conda shims go through hooks this mirror does not model.
    HookedCommand,
    /// A hook script that may change the choice.
    UnknownHook(PathBuf),
    /// A hook script whose name is not UTF-8.
    NonUtf8Hook,
    /// `PYENV_VERSION` is not UTF-8.
    VersionVarNotUtf8,
    /// `PYENV_DIR` names no directory.
    PyenvDirNotDir,
    /// A version file names a path (`..`, a `/`).
    PathLikeVersion(PathBuf),
    /// A version file is not UTF-8.
    VersionFileNotUtf8(PathBuf, std::str::Utf8Error),
    /// The version setting holds glob characters.
    Glob(String),
    /// `pyenv latest` would pick among non-CPython families.
    Family(String),
    /// No selected version holds the command.
    NotFound {
        /// The shim's name.
        command: String,
        /// The selected versions, joined with `:`.
        versions: String,
    },
}

impl std::fmt::Display for ShimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShimError::HookedCommand => f.write_str("pyenv hooks apply to this command"),
            ShimError::UnknownHook(p) => {
                write!(f, "pyenv hook {} may change the choice", p.display())
            }
            ShimError::NonUtf8Hook => f.write_str("a pyenv hook has a non-UTF-8 name"),
            ShimError::VersionVarNotUtf8 => f.write_str("PYENV_VERSION is not UTF-8"),
            ShimError::PyenvDirNotDir => f.write_str("PYENV_DIR is not a directory"),
            ShimError::PathLikeVersion(p) => write!(f, "{} names a path-like version", p.display()),
            ShimError::VersionFileNotUtf8(p, _) => write!(f, "{} is not UTF-8", p.display()),
            ShimError::Glob(spec) => write!(f, "version `{spec}` contains glob characters"),
            ShimError::Family(prefix) => {
                write!(f, "version `{prefix}` matches a non-CPython family")
            }
            ShimError::NotFound { command, versions } => {
                write!(f, "pyenv finds no `{command}` for version `{versions}`")
            }
        }
    }
}

impl std::error::Error for ShimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShimError::VersionFileNotUtf8(_, e) => Some(e),
            _ => None,
        }
    }
}

fn resolve_inner(q: &ShimQuery<'_>) -> Result<ShimResolution, ShimError> {
    let cmd = q.command.as_bytes();
    if cmd.starts_with(b"pip") || cmd.ends_with(b"-config") || cmd == b"conda" {
        return Err(ShimError::HookedCommand);
    }
    check_hooks(q)?;
    let (spec, origin) = version_spec(q)?;
    if spec.bytes().any(|c| matches!(c, b'*' | b'?' | b'[')) {
        return Err(ShimError::Glob(spec));
    }
    let names = version_names(q.root, &spec)?;
    let exported = names.join(":");
    let mut env = vec![(OsString::from("PYENV_VERSION"), OsString::from(&exported))];
    // mirrors libexec/pyenv-which: every selected version, then "system"
    for name in names.iter().map(String::as_str).chain(["system"]) {
        if name.is_empty() {
            // bash's IFS=: splitting keeps inner empty fields; pyenv turns them
            // into a "versions/:..." prefix that never holds an executable.
            continue;
        }
        if name == "system" {
            if let Some(found) = system_search(q) {
                return Ok(ShimResolution::Found {
                    path: found,
                    version: "system".into(),
                    origin,
                    env,
                });
            }
            continue;
        }
        let resolved = latest(q.root, name)?.name();
        let dir = q.root.join("versions").join(&resolved);
        if !dir.is_dir() {
            continue;
        }
        let bin = dir.join("bin");
        let path = bin.join(q.command);
        if is_executable_file(&path) {
            let mut new_path = bin.into_os_string();
            if let Some(old) = (q.env)("PATH") {
                new_path.push(":");
                new_path.push(old);
            }
            env.push((OsString::from("PATH"), new_path));
            return Ok(ShimResolution::Found {
                path,
                version: resolved,
                origin,
                env,
            });
        }
    }
    Err(ShimError::NotFound {
        command: q.command.to_string_lossy().into_owned(),
        versions: exported,
    })
}

/// Hook scripts pyenv would source for exec/which/version-name that this
/// module knows to be irrelevant for `python*` commands.
const KNOWN_HOOKS: &[(&str, &str)] = &[
    ("exec", "pip-rehash.bash"),
    ("which", "python-config.bash"),
    ("which", "system-site-packages.bash"),
    ("which", "conda.bash"),
];

// mirrors libexec/pyenv (PYENV_HOOK_PATH) and libexec/pyenv-hooks
fn check_hooks(q: &ShimQuery<'_>) -> Result<(), ShimError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(hp) = (q.env)("PYENV_HOOK_PATH") {
        dirs.extend(
            hp.as_bytes()
                .split(|&c| c == b':')
                .filter(|s| !s.is_empty())
                .map(|s| PathBuf::from(OsStr::from_bytes(s))),
        );
    }
    dirs.push(q.root.join("pyenv.d"));
    for d in [
        "/usr/etc/pyenv.d",
        "/usr/local/etc/pyenv.d",
        "/etc/pyenv.d",
        "/usr/lib/pyenv/hooks",
    ] {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(rd) = std::fs::read_dir(q.root.join("plugins")) {
        let mut plugins: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        plugins.sort();
        dirs.extend(plugins.into_iter().map(|p| p.join("etc/pyenv.d")));
    }
    for dir in &dirs {
        for cmd in ["exec", "which", "version-name"] {
            let Ok(rd) = std::fs::read_dir(dir.join(cmd)) else {
                continue;
            };
            for e in rd.filter_map(|e| e.ok()) {
                let name = e.file_name();
                let Some(name) = name.to_str() else {
                    return Err(ShimError::NonUtf8Hook);
                };
                if name.ends_with(".bash") && !KNOWN_HOOKS.contains(&(cmd, name)) {
                    return Err(ShimError::UnknownHook(dir.join(cmd).join(name)));
                }
            }
        }
    }
    Ok(())
}

/// The raw version setting and where it came from.
// mirrors libexec/pyenv-version-name (first lines) and pyenv-version-file
fn version_spec(q: &ShimQuery<'_>) -> Result<(String, String), ShimError> {
    if let Some(v) = (q.env)("PYENV_VERSION").filter(|v| !v.is_empty()) {
        let v = v.into_string().map_err(|_| ShimError::VersionVarNotUtf8)?;
        return Ok((v, "PYENV_VERSION environment variable".into()));
    }
    let pwd = logical_pwd(q);
    let pyenv_dir = match (q.env)("PYENV_DIR").filter(|v| !v.is_empty()) {
        Some(d) => {
            let d = normalize_lexically(&pwd.join(PathBuf::from(d)));
            if !d.is_dir() {
                return Err(ShimError::PyenvDirNotDir);
            }
            d
        }
        None => pwd.clone(),
    };
    let file = find_local_version_file(&pyenv_dir)
        .or_else(|| {
            if pyenv_dir != pwd {
                find_local_version_file(&pwd)
            } else {
                None
            }
        })
        .unwrap_or_else(|| q.root.join("version"));
    let spec = read_version_file(&file)?.unwrap_or_default();
    Ok((spec, file.display().to_string()))
}

/// bash's `$PWD`: the inherited value when it names the working directory,
/// else the physical working directory.
fn logical_pwd(q: &ShimQuery<'_>) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    if let Some(pwd) = (q.env)("PWD") {
        let pwd = PathBuf::from(pwd);
        if pwd.is_absolute() {
            if let (Ok(a), Ok(b)) = (std::fs::metadata(&pwd), std::fs::metadata(q.cwd)) {
                if a.dev() == b.dev() && a.ino() == b.ino() {
                    return normalize_lexically(&pwd);
                }
            }
        }
    }
    q.cwd.to_path_buf()
}

/// `cd DIR && echo $PWD` in bash's logical mode: `.` and `..` removed
/// lexically, repeated slashes collapsed.
fn normalize_lexically(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

/// The nearest `.python-version` at or above `dir` (a regular file).
// mirrors libexec/pyenv-version-file: find_local_version_file
fn find_local_version_file(dir: &Path) -> Option<PathBuf> {
    let mut root: Vec<u8> = dir.as_os_str().as_bytes().to_vec();
    while root.last() == Some(&b'/') && root.len() > 1 {
        root.pop();
    }
    loop {
        // while ! [[ "$root" =~ ^//[^/]*$ ]]
        if root.starts_with(b"//") && !root[2..].contains(&b'/') {
            return None;
        }
        let mut candidate = root.clone();
        candidate.extend_from_slice(b"/.python-version");
        let candidate = PathBuf::from(OsString::from_vec(candidate));
        if candidate.is_file() {
            return Some(candidate);
        }
        if root.is_empty() {
            return None;
        }
        let cut = root.iter().rposition(|&c| c == b'/').unwrap_or(0);
        root.truncate(cut);
    }
}

/// The version names listed in a version file, joined with `:`; `None`
/// when the file is missing, empty or lists nothing.
// mirrors libexec/pyenv-version-file-read
fn read_version_file(path: &Path) -> Result<Option<String>, ShimError> {
    let bytes = match std::fs::read(path) {
        Ok(b) if !b.is_empty() => b,
        _ => return Ok(None),
    };
    let mut names: Vec<String> = Vec::new();
    for line in bytes.split(|&c| c == b'\n') {
        // `read -n 1024` reads at most 1024 characters per call.
        for piece in line.chunks(1024) {
            let word = piece
                .split(|c| matches!(c, b' ' | b'\t' | b'\r'))
                .find(|w| !w.is_empty());
            let Some(word) = word else { continue };
            if word.starts_with(b"#") {
                continue;
            }
            if word == b".." || word.contains(&b'/') {
                return Err(ShimError::PathLikeVersion(path.to_path_buf()));
            }
            let word = std::str::from_utf8(word)
                .map_err(|e| ShimError::VersionFileNotUtf8(path.to_path_buf(), e))?;
            names.push(word.to_string());
        }
    }
    Ok((!names.is_empty()).then(|| names.join(":")))
}

/// The selected version names, as `pyenv version-name -f` prints them.
// mirrors libexec/pyenv-version-name
fn version_names(root: &Path, spec: &str) -> Result<Vec<String>, ShimError> {
    if spec.is_empty() || spec == "system" {
        return Ok(vec!["system".into()]);
    }
    let mut fields: Vec<&str> = spec.split(':').collect();
    if fields.last() == Some(&"") {
        fields.pop();
    }
    let exists = |v: &str| root.join("versions").join(v).is_dir();
    let mut out = Vec::new();
    for v in fields {
        let norm = v.strip_prefix("python-").unwrap_or(v);
        let name = if exists(v) || v == "system" {
            v.to_string()
        } else if exists(norm) {
            norm.to_string()
        } else if let Latest::Installed(r) = latest(root, v)? {
            r
        } else if let Latest::Installed(r) = latest(root, norm)? {
            r
        } else {
            norm.to_string()
        };
        out.push(name);
    }
    Ok(out)
}

/// What `pyenv latest PREFIX` answers.
enum Latest {
    /// The installed version it picks.
    Installed(String),
    /// Nothing matches: the text `-b`/`-f` print (the prefix, a trailing
    /// `t` removed).
    NoMatch(String),
}

impl Latest {
    /// The name `pyenv-which` goes on with, matched or not.
    fn name(self) -> String {
        match self {
            Latest::Installed(n) | Latest::NoMatch(n) => n,
        }
    }
}

/// `pyenv latest PREFIX` among installed versions; `Err` when the
/// candidates are outside what this mirror handles.
// mirrors libexec/pyenv-latest (installed versions only)
fn latest(root: &Path, prefix: &str) -> Result<Latest, ShimError> {
    let versions = root.join("versions");
    if versions.join(prefix).is_dir() {
        return Ok(Latest::Installed(prefix.to_string()));
    }
    // pyenv-versions --bare --skip-envs: entries of versions/ that are dirs.
    let mut candidates: Vec<String> = match std::fs::read_dir(&versions) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    if candidates.iter().any(|c| c == prefix) {
        return Ok(Latest::Installed(prefix.to_string()));
    }
    let (prefix, suffix) = match prefix.strip_suffix('t') {
        Some(p) if p.ends_with(|c: char| c.is_ascii_digit()) => (p, "t"),
        _ => (prefix, ""),
    };
    candidates.retain(|c| {
        let Some(rest) = c.strip_prefix(prefix) else {
            return false;
        };
        let Some(rest) = rest.strip_prefix(['-', '.']) else {
            return false;
        };
        rest.ends_with(suffix)
            && !c.ends_with("-dev")
            && !c.ends_with("-src")
            && !c.ends_with("-latest")
            && !is_prerelease(c)
            && (!suffix.is_empty() || !ends_digit_t(c))
    });
    if candidates.is_empty() {
        return Ok(Latest::NoMatch(prefix.to_string()));
    }
    if candidates.iter().any(|c| has_family_prefix(c)) {
        return Err(ShimError::Family(prefix.to_string()));
    }
    let mut keyed: Vec<(String, String)> = candidates
        .into_iter()
        .map(|c| (format!("{c}...|{c}"), c))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| sort_key_cmp(a, b));
    Ok(Latest::Installed(keyed.swap_remove(0).1))
}

/// `(a|b|rc)[0-9]+$`.
fn is_prerelease(c: &str) -> bool {
    let t = c.trim_end_matches(|ch: char| ch.is_ascii_digit());
    t.len() < c.len() && (t.ends_with('a') || t.ends_with('b') || t.ends_with("rc"))
}

/// `[0-9]t$`.
fn ends_digit_t(c: &str) -> bool {
    c.strip_suffix('t')
        .is_some_and(|p| p.ends_with(|ch: char| ch.is_ascii_digit()))
}

/// `^[[:alnum:]]+-` (pypy3.9-7.3, miniconda3-4.7, ...), whose sort key awk rewrites.
fn has_family_prefix(c: &str) -> bool {
    match c.find('-') {
        Some(i) if i > 0 => c[..i].chars().all(|ch| ch.is_ascii_alphanumeric()),
        _ => false,
    }
}

/// `sort -t. -k1,1r -k2,2nr -k3,3nr -k4,4nr`, then the whole line.
fn sort_key_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let fa: Vec<&str> = a.split('.').collect();
    let fb: Vec<&str> = b.split('.').collect();
    fn field<'s>(f: &[&'s str], i: usize) -> &'s str {
        f.get(i).copied().unwrap_or("")
    }
    let num = |s: &str| -> u128 {
        let digits: String = s
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().unwrap_or(0)
    };
    field(&fb, 0)
        .cmp(field(&fa, 0))
        .then_with(|| num(field(&fb, 1)).cmp(&num(field(&fa, 1))))
        .then_with(|| num(field(&fb, 2)).cmp(&num(field(&fa, 2))))
        .then_with(|| num(field(&fb, 3)).cmp(&num(field(&fa, 3))))
        .then_with(|| a.cmp(b))
}

/// `command -v COMMAND` on PATH minus `$PYENV_ROOT/shims` (`~` expanded).
// mirrors libexec/pyenv-which: remove_from_path for the "system" version
fn system_search(q: &ShimQuery<'_>) -> Option<PathBuf> {
    let path = (q.env)("PATH")?;
    let home = (q.env)("HOME").unwrap_or_default();
    let shims = q.root.join("shims");
    for entry in path.as_bytes().split(|&c| c == b':') {
        let mut e: Vec<u8> = Vec::new();
        for &c in entry {
            if c == b'~' {
                e.extend_from_slice(home.as_bytes());
            } else {
                e.push(c);
            }
        }
        let dir = PathBuf::from(OsString::from_vec(e));
        if dir.as_os_str() == shims.as_os_str() || is_shims_dir(&dir, q.root) {
            continue;
        }
        let dir = if dir.as_os_str().is_empty() {
            q.cwd.to_path_buf()
        } else {
            dir
        };
        let cand = dir.join(q.command);
        if is_executable_file(&cand) && !(q.skip)(&cand) {
            return Some(cand);
        }
    }
    None
}

/// A regular file (after symlinks) this process may execute.
pub fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
        && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// True when `python ARGS` would make pyenv's `pip-rehash` exec hook wrap the
/// command (`pip`, `pip3.11`, or ` -m pip ` in the arguments), so that new
/// console scripts get shims: the caller should run the shim then.
// mirrors pyenv.d/exec/pip-rehash.bash
pub(crate) fn wants_pip_rehash(command: &OsStr, args: &[OsString]) -> bool {
    let c = command.as_bytes();
    let base = c.rsplit(|&b| b == b'/').next().unwrap_or(c);
    if base.starts_with(b"pip") || base.starts_with(b"easy_install") {
        return true;
    }
    // "$*" is the command and its arguments joined with spaces.
    let mut joined: Vec<u8> = base.to_vec();
    for a in args {
        joined.push(b' ');
        joined.extend_from_slice(a.as_bytes());
    }
    let ws = |b: u8| b.is_ascii_whitespace();
    // [[:space:]]-m[[:space:]]pip[[:space:]]
    joined
        .windows(8)
        .any(|w| ws(w[0]) && &w[1..3] == b"-m" && ws(w[3]) && &w[4..7] == b"pip" && ws(w[7]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_prefers_newest_patch() {
        let mut v = ["3.9.18...|3.9.18", "3.10.13...|3.10.13", "3.10.2...|3.10.2"];
        v.sort_by(|a, b| sort_key_cmp(a, b));
        assert_eq!(v[0], "3.10.13...|3.10.13");
    }

    #[test]
    fn prerelease_and_t_filters() {
        assert!(is_prerelease("3.13.0rc1"));
        assert!(is_prerelease("3.13.0a4"));
        assert!(!is_prerelease("3.13.0"));
        assert!(ends_digit_t("3.13.0t"));
        assert!(!ends_digit_t("3.13.0"));
    }

    #[test]
    fn pip_rehash_detection() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_pip_rehash(
            OsStr::new("python3"),
            &a(&["-m", "pip", "install", "x"])
        ));
        assert!(!wants_pip_rehash(OsStr::new("python3"), &a(&["-m", "pip"])));
        assert!(!wants_pip_rehash(OsStr::new("python3"), &a(&["main.py"])));
        assert!(wants_pip_rehash(OsStr::new("pip3.11"), &a(&["list"])));
    }

    /// A pyenv root under a temp dir with `versions/NAME` for each name
    /// (and no `bin/python3` in them), resolved with `vars` as the
    /// environment and an empty `PATH`.
    fn resolve_in(
        versions: &[&str],
        vars: &[(&str, &str)],
        version_file: Option<&[u8]>,
    ) -> (
        tempfile::TempDir,
        Result<ShimResolution, ShimError>,
        ShimResolution,
    ) {
        let root = tempfile::tempdir().unwrap();
        for v in versions {
            std::fs::create_dir_all(root.path().join("versions").join(v)).unwrap();
        }
        if let Some(bytes) = version_file {
            std::fs::write(root.path().join("version"), bytes).unwrap();
        }
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let mut env: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        env.push(("PATH".into(), empty.clone().into_os_string()));
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let q = ShimQuery {
            root: root.path(),
            command: OsStr::new("python3"),
            env: &lookup,
            cwd: &empty,
            skip: &|_| false,
        };
        let inner = resolve_inner(&q);
        let outer = resolve_shim(&q);
        (root, inner, outer)
    }

    fn unsure(r: ShimResolution) -> String {
        match r {
            ShimResolution::Unsure(why) => why,
            found => panic!("{found:?}"),
        }
    }

    #[test]
    fn latest_installed_or_not() {
        let root = tempfile::tempdir().unwrap();
        for v in ["3.12.1", "3.12.0", "3.13.0rc1"] {
            std::fs::create_dir_all(root.path().join("versions").join(v)).unwrap();
        }
        let name = |p: &str| match latest(root.path(), p).unwrap() {
            Latest::Installed(n) => Ok(n),
            Latest::NoMatch(n) => Err(n),
        };
        assert_eq!(name("3.12"), Ok("3.12.1".into()));
        assert_eq!(name("3.12.0"), Ok("3.12.0".into()));
        assert_eq!(name("3.13"), Err("3.13".into()));
        // pyenv-latest drops the free-threading `t` before it prints.
        assert_eq!(name("3.14t"), Err("3.14".into()));
    }

    /// What `resolve_shim` reports is the error's text, word for word as
    /// before the errors were typed.
    #[test]
    fn unsure_reasons() {
        let (_root, inner, outer) = resolve_in(&[], &[("PYENV_VERSION", "3.*")], None);
        assert!(matches!(inner, Err(ShimError::Glob(ref s)) if s == "3.*"));
        assert_eq!(unsure(outer), "version `3.*` contains glob characters");

        let (_root, inner, outer) = resolve_in(&["3.12.1"], &[("PYENV_VERSION", "3.12")], None);
        assert!(matches!(inner, Err(ShimError::NotFound { .. })));
        assert_eq!(
            unsure(outer),
            "pyenv finds no `python3` for version `3.12.1`"
        );

        let (root, inner, outer) = resolve_in(&[], &[], Some(b"3.\xff\n"));
        let file = root.path().join("version");
        match inner {
            Err(ref e @ ShimError::VersionFileNotUtf8(ref p, _)) => {
                assert_eq!(p, &file);
                let src = std::error::Error::source(e).unwrap();
                assert!(src.is::<std::str::Utf8Error>());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(unsure(outer), format!("{} is not UTF-8", file.display()));

        let (root, inner, outer) = resolve_in(&[], &[], Some(b"../3.12\n"));
        assert!(matches!(inner, Err(ShimError::PathLikeVersion(_))));
        assert_eq!(
            unsure(outer),
            format!(
                "{} names a path-like version",
                root.path().join("version").display()
            )
        );
    }
}
