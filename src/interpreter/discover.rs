//! Which real interpreter `kolosal-python` runs, and which rule chose it.
//!
//! Rules, first hit wins:
//! 1. `--python PATH` ([`Rule::Explicit`], `kolosal` subcommands only);
//! 2. `KOLOSAL_PYTHON` — a path, or a bare name looked up on PATH ([`Rule::EnvVar`]);
//! 3. `$VIRTUAL_ENV/bin/python` ([`Rule::VirtualEnv`]);
//! 4. `.venv/bin/python` upward from the entry script's directory, then upward
//!    from the working directory ([`Rule::DotVenv`]), only one other users
//!    cannot control ([`dotvenv_trust`]; an untrusted one is skipped and
//!    reported in [`Discovered::ignored_venv`]);
//! 5. `python3` then `python` on PATH — or, when run through a shim, the name
//!    the shim was invoked as (`python3.12`) — ([`Rule::Path`]); a pyenv shim
//!    met on the way is resolved the way pyenv would ([`Rule::Pyenv`]).
//!
//! Run under a shim's name ([`invoked_as_shim`]), rules 3 and 4 are skipped:
//! the shim runs what the shell would have run without it.
//!
//! kolosal itself is recognised by identity (device + inode of
//! `current_exe()` and its sibling binaries), never by name, so a shim
//! directory first on PATH never makes the launcher exec itself.
//!
//! The returned [`Discovered::path`] is the UNRESOLVED path (a venv's
//! `bin/python` symlink): CPython derives `sys.prefix` from it.

use super::pyenv::{self, is_executable_file, ShimQuery, ShimResolution};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Which discovery rule chose the interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `--python PATH` on the `kolosal` command line.
    Explicit,
    /// `KOLOSAL_PYTHON`.
    EnvVar,
    /// `$VIRTUAL_ENV/bin/python`.
    VirtualEnv,
    /// A `.venv/bin/python` above the entry script or the working directory.
    DotVenv,
    /// A pyenv shim, resolved without running pyenv.
    Pyenv,
    /// A plain PATH search.
    Path,
}

impl Rule {
    /// Stable lower-case name (`explicit`, `env`, `virtualenv`, `dotvenv`,
    /// `pyenv`, `path`), used by `kolosal info --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Explicit => "explicit",
            Rule::EnvVar => "env",
            Rule::VirtualEnv => "virtualenv",
            Rule::DotVenv => "dotvenv",
            Rule::Pyenv => "pyenv",
            Rule::Path => "path",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The interpreter discovery chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The path to exec and to pass as `argv[0]`: absolute, symlinks kept.
    pub path: PathBuf,
    /// The rule that hit.
    pub rule: Rule,
    /// One human line saying why (which variable, file or PATH entry).
    pub detail: String,
    /// `path` with symlinks resolved (identity, caching); `path` itself when
    /// it cannot be resolved.
    pub resolved: PathBuf,
    /// Variables to set in the child (what `pyenv exec` would export).
    pub exec_env: Vec<(OsString, OsString)>,
    /// The pyenv shim that was bypassed, if any (see `pyenv::wants_pip_rehash`).
    pub pyenv_shim: Option<PathBuf>,
    /// A `.venv` that was found and ignored because other users control it
    /// (see [`dotvenv_trust`]): one line for the launcher to print.
    pub ignored_venv: Option<String>,
}

/// Whether a `.venv` found by walking up from the script or the working
/// directory may be used: the ownership rule of git's `safe.directory`,
/// made stricter. The `.venv` directory and the directory holding it (both
/// where it was found and, for a symlinked `.venv`, where it really is)
/// must be owned by the effective user or root and writable by neither
/// its group nor others, sticky bit or not: anyone else who can create or
/// rename `.venv` there could otherwise pick the interpreter, its
/// `pyvenv.cfg` and its `site-packages` for everyone working below that
/// directory. Further up, a directory others can write is accepted only
/// when it is sticky (`/tmp`) and the entry on the way down is the user's
/// or root's, which nobody else can then rename or replace (one walk,
/// `cache::trusted_ancestry`, shared with kolosal's cache).
///
/// `Err` says which directory failed, in one line (`PermissionDenied` for
/// a refusal).
pub fn dotvenv_trust(venv: &Path) -> std::io::Result<()> {
    let check_chain = |start: &Path| -> std::io::Result<()> {
        let real = start.canonicalize().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{} cannot be resolved ({e})", start.display()),
            )
        })?;
        // Depth 0 is the `.venv` (or the link's directory), depth 1 the
        // directory that holds it: never open to others.
        crate::cache::trusted_ancestry(&real, 2)
    };
    // A symlinked `.venv`: where the link lives counts too. Otherwise the
    // real `.venv`'s own ancestors are that place.
    let is_link = std::fs::symlink_metadata(venv).is_ok_and(|m| m.file_type().is_symlink());
    if let Some(parent) = venv.parent().filter(|_| is_link) {
        check_chain(parent)?;
    }
    check_chain(venv)
}

/// Identity of a file: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    /// The identity of `path` after symlinks, if it exists.
    pub fn of(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// The identities that count as "kolosal itself": the running
    /// executable and its sibling `kolosal` / `kolosal-python` binaries.
    pub fn kolosal_itself() -> Vec<FileId> {
        let mut out = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            out.extend(FileId::of(&exe));
            if let Some(dir) = exe.parent() {
                for sib in ["kolosal", "kolosal-python"] {
                    out.extend(FileId::of(&dir.join(sib)));
                }
            }
        }
        out.dedup();
        out
    }
}

/// Everything discovery looks at; nothing is read from the process
/// environment directly.
pub struct DiscoverRequest<'a> {
    /// `--python PATH` (a path, or a bare name looked up on PATH).
    pub explicit: Option<PathBuf>,
    /// Directory of the entry script, when there is one.
    pub entry_dir: Option<PathBuf>,
    /// The working directory (absolute).
    pub cwd: PathBuf,
    /// `argv[0]` of the launcher (only its basename matters).
    pub invoked_as: Option<OsString>,
    /// Environment lookup.
    pub env: &'a dyn Fn(&str) -> Option<OsString>,
    /// Files that are kolosal itself, by identity.
    pub kolosal_ids: Vec<FileId>,
}

impl<'a> DiscoverRequest<'a> {
    /// A request with the given cwd and environment, no entry, no explicit
    /// choice, and [`FileId::kolosal_itself`].
    pub fn new(cwd: PathBuf, env: &'a dyn Fn(&str) -> Option<OsString>) -> Self {
        DiscoverRequest {
            explicit: None,
            entry_dir: None,
            cwd,
            invoked_as: None,
            env,
            kolosal_ids: FileId::kolosal_itself(),
        }
    }

    /// This binary (by identity), or another kolosal install's launcher: a
    /// shim of a second prefix on PATH resolves to a `kolosal-python` with
    /// another inode, and exec'ing it would bounce back here forever.
    /// Sets [`DiscoverRequest::entry_dir`] for a launch of `script` (as
    /// given on the command line): the directory it lives in, relative paths
    /// taken from the request's cwd.
    pub fn set_script(&mut self, script: &Path) {
        let abs = self.cwd.join(script);
        self.entry_dir = Some(
            abs.parent()
                .map_or_else(|| self.cwd.clone(), Path::to_path_buf),
        );
    }

    fn is_kolosal(&self, p: &Path) -> bool {
        FileId::of(p).is_some_and(|id| self.kolosal_ids.contains(&id))
            || std::fs::canonicalize(p)
                .is_ok_and(|real| real.file_name() == Some(OsStr::new("kolosal-python")))
    }

    fn absolute(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.cwd.join(p)
        }
    }
}

/// Why no interpreter could be chosen. Each message is one line that says
/// what to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverError {
    /// `--python` / `KOLOSAL_PYTHON` names a path that is not an executable file.
    NotExecutable {
        /// `--python` or `KOLOSAL_PYTHON`.
        source: &'static str,
        /// The value given.
        value: PathBuf,
    },
    /// `--python` / `KOLOSAL_PYTHON` names a command not found on PATH.
    NotOnPath {
        /// `--python` or `KOLOSAL_PYTHON`.
        source: &'static str,
        /// The name given.
        name: OsString,
    },
    /// `--python` / `KOLOSAL_PYTHON` points at kolosal itself.
    IsKolosal {
        /// `--python` or `KOLOSAL_PYTHON`.
        source: &'static str,
        /// The value given.
        value: PathBuf,
    },
    /// No rule found anything.
    NoneFound {
        /// The command names searched on PATH.
        names: Vec<OsString>,
    },
}

impl std::fmt::Display for DiscoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoverError::NotExecutable { source, value } => write!(
                f,
                "{source}={} is not an executable file; point it at a Python interpreter",
                value.display()
            ),
            DiscoverError::NotOnPath { source, name } => write!(
                f,
                "{source}={} was not found on PATH; give the interpreter's full path",
                name.to_string_lossy()
            ),
            DiscoverError::IsKolosal { source, value } => write!(
                f,
                "{source}={} is kolosal itself; point it at the real interpreter (for example /usr/bin/python3)",
                value.display()
            ),
            DiscoverError::NoneFound { names } => {
                let names: Vec<String> =
                    names.iter().map(|n| n.to_string_lossy().into_owned()).collect();
                write!(
                    f,
                    "no {} found on PATH (kolosal's own shims skipped); set KOLOSAL_PYTHON to an interpreter's path",
                    names.join(" or ")
                )
            }
        }
    }
}

impl std::error::Error for DiscoverError {}

/// Finds the interpreter to run, applying the rules in order.
pub fn discover(req: &DiscoverRequest<'_>) -> Result<Discovered, DiscoverError> {
    if let Some(p) = &req.explicit {
        return named(req, "--python", p.as_os_str(), Rule::Explicit);
    }
    if let Some(v) = (req.env)("KOLOSAL_PYTHON").filter(|v| !v.is_empty()) {
        return named(req, "KOLOSAL_PYTHON", &v, Rule::EnvVar);
    }
    // Run as a `python`/`python3` shim: the command the shell would have run
    // had the shims not been on PATH. A `#!/usr/bin/env python3` tool must
    // not pick up whatever project it happens to be started in; an active
    // venv counts only through the PATH its activation set.
    if invoked_as_shim(req.invoked_as.as_deref()) {
        let names = path_names(req.invoked_as.as_deref());
        for name in &names {
            if let Some(mut d) = search_path(req, name, Rule::Path) {
                d.detail
                    .push_str(" (run as a shim: no VIRTUAL_ENV or .venv lookup)");
                return Ok(d);
            }
        }
        return Err(DiscoverError::NoneFound { names });
    }
    if let Some(venv) = (req.env)("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let p = req.absolute(&Path::new(&venv).join("bin/python"));
        if is_executable_file(&p) && !req.is_kolosal(&p) {
            return Ok(found(
                p,
                Rule::VirtualEnv,
                format!("VIRTUAL_ENV={}", venv.to_string_lossy()),
            ));
        }
    }
    let starts = req
        .entry_dir
        .iter()
        .map(|d| (req.absolute(d), "the entry script"))
        .chain(std::iter::once((req.cwd.clone(), "the working directory")));
    let mut ignored: Option<String> = None;
    for (start, what) in starts {
        for dir in start.ancestors() {
            let p = dir.join(".venv/bin/python");
            if is_executable_file(&p) && !req.is_kolosal(&p) {
                let venv = dir.join(".venv");
                match dotvenv_trust(&venv) {
                    Ok(()) => {
                        let mut d = found(
                            p,
                            Rule::DotVenv,
                            format!("{} found upward from {what}", venv.display()),
                        );
                        d.ignored_venv = ignored;
                        return Ok(d);
                    }
                    // As if that .venv were absent; the first one is reported.
                    Err(why) => {
                        ignored
                            .get_or_insert_with(|| format!("ignoring {}: {why}", venv.display()));
                    }
                }
            }
        }
    }
    let names = path_names(req.invoked_as.as_deref());
    for name in &names {
        if let Some(mut d) = search_path(req, name, Rule::Path) {
            d.ignored_venv = ignored;
            return Ok(d);
        }
    }
    Err(DiscoverError::NoneFound { names })
}

/// `--python` / `KOLOSAL_PYTHON`: a path, or a bare name looked up on PATH.
fn named(
    req: &DiscoverRequest<'_>,
    source: &'static str,
    value: &OsStr,
    rule: Rule,
) -> Result<Discovered, DiscoverError> {
    let shown = format!("{source}={}", value.to_string_lossy());
    if !value.as_bytes().contains(&b'/') {
        let mut d = search_path(req, value, rule).ok_or_else(|| DiscoverError::NotOnPath {
            source,
            name: value.to_owned(),
        })?;
        d.rule = rule;
        d.detail = format!("{shown}: {}", d.detail);
        return Ok(d);
    }
    let p = req.absolute(Path::new(value));
    if req.is_kolosal(&p) {
        return Err(DiscoverError::IsKolosal {
            source,
            value: PathBuf::from(value),
        });
    }
    if !is_executable_file(&p) {
        return Err(DiscoverError::NotExecutable {
            source,
            value: PathBuf::from(value),
        });
    }
    if let Some(d) = via_pyenv(req, &p) {
        return match d {
            Some(mut d) => {
                d.rule = rule;
                d.detail = format!("{shown}: {}", d.detail);
                Ok(d)
            }
            None => Err(DiscoverError::NotOnPath {
                source,
                name: value.to_owned(),
            }),
        };
    }
    Ok(found(p, rule, shown))
}

/// The command names to look for on PATH: the shim's own name when invoked
/// as `python`, `python3`, `python3.12` (optionally with a `t` suffix), else
/// `python3` then `python`.
pub(crate) fn path_names(invoked_as: Option<&OsStr>) -> Vec<OsString> {
    if let Some(a) = invoked_as {
        let b = a.as_bytes();
        let base = b.rsplit(|&c| c == b'/').next().unwrap_or(b);
        if is_python_name(base) {
            return vec![OsStr::from_bytes(base).to_owned()];
        }
    }
    vec![OsString::from("python3"), OsString::from("python")]
}

/// Whether the launcher runs under a shim's name (`python`, `python3`,
/// `python3.12`), as opposed to `kolosal-python` or anything else.
pub(crate) fn invoked_as_shim(invoked_as: Option<&OsStr>) -> bool {
    invoked_as.is_some_and(|a| {
        let b = a.as_bytes();
        is_python_name(b.rsplit(|&c| c == b'/').next().unwrap_or(b))
    })
}

/// `python`, `python3`, `python3.12`, `python3.13t`.
fn is_python_name(b: &[u8]) -> bool {
    let Some(rest) = b.strip_prefix(b"python") else {
        return false;
    };
    let rest = rest
        .strip_suffix(b"t")
        .filter(|r| !r.is_empty())
        .unwrap_or(rest);
    if rest.is_empty() {
        return true;
    }
    let mut parts = rest.split(|&c| c == b'.');
    let major = parts.next().unwrap_or_default();
    let minor = parts.next();
    parts.next().is_none()
        && !major.is_empty()
        && major.iter().all(u8::is_ascii_digit)
        && minor.map_or(true, |m| !m.is_empty() && m.iter().all(u8::is_ascii_digit))
}

/// First usable `name` on PATH: kolosal itself is skipped, a pyenv shim is
/// resolved (or used as is when it cannot be mirrored).
fn search_path(req: &DiscoverRequest<'_>, name: &OsStr, rule: Rule) -> Option<Discovered> {
    let path_var = (req.env)("PATH")?;
    let mut skipped_self: Option<PathBuf> = None;
    let mut skipped_tool: Option<PathBuf> = None;
    for entry in std::env::split_paths(&path_var) {
        let dir = if entry.as_os_str().is_empty() {
            req.cwd.clone()
        } else {
            req.absolute(&entry)
        };
        let cand = dir.join(name);
        if !is_executable_file(&cand) {
            continue;
        }
        if req.is_kolosal(&cand) {
            skipped_self.get_or_insert(cand);
            continue;
        }
        if is_tool_environment(&dir) {
            skipped_tool.get_or_insert(cand);
            continue;
        }
        if let Some(r) = via_pyenv(req, &cand) {
            match r {
                Some(d) => return Some(d),
                None => continue,
            }
        }
        let mut detail = format!("{} on PATH", name.to_string_lossy());
        if let Some(s) = &skipped_self {
            detail.push_str(&format!(" (skipped kolosal itself at {})", s.display()));
        }
        if let Some(s) = &skipped_tool {
            detail.push_str(&format!(" (skipped a tool environment's {})", s.display()));
        }
        return Some(found(cand, rule, detail));
    }
    None
}

/// True when `bin_dir` is the `bin` of a venv that belongs to an installed
/// *tool*, not to the user: a `uv tool install` venv (`uv-receipt.toml`), a
/// pipx venv (`pipx_metadata.json`, also `pipx run`'s cached ones), or a venv
/// inside a directory tagged as a cache (`CACHEDIR.TAG` above the venv, as
/// uv's cache root carries: where `uvx` / `uv tool run` build their
/// ephemeral environments). `uvx` and `uv tool run` put that venv's `bin`
/// first on PATH without setting `VIRTUAL_ENV`, so its python would
/// otherwise win the PATH search although the program is the user's. Only
/// the PATH search skips them: `VIRTUAL_ENV` (`uv run --with` sets it to its
/// cached overlay venv) and `.venv` are the user's choice. A venv's own
/// `CACHEDIR.TAG` (every `uv venv` writes one) does not count. Costs one
/// `stat` for a PATH entry that is not a venv's `bin`.
// mirrors the venv layout of CPython's site.venv(): `pyvenv.cfg` one level
// above the executable's directory
fn is_tool_environment(bin_dir: &Path) -> bool {
    if bin_dir.file_name() != Some(OsStr::new("bin")) {
        return false;
    }
    let Some(root) = bin_dir.parent() else {
        return false;
    };
    if !root.join("pyvenv.cfg").is_file() {
        return false;
    }
    if root.join("uv-receipt.toml").is_file() || root.join("pipx_metadata.json").is_file() {
        return true;
    }
    root.ancestors()
        .skip(1)
        .any(|d| d.join("CACHEDIR.TAG").is_file())
}

/// `Some(..)` when `cand` is a pyenv shim: the file pyenv would run (or the
/// shim itself when pyenv cannot be mirrored); `Some(None)` when pyenv
/// would find nothing.
fn via_pyenv(req: &DiscoverRequest<'_>, cand: &Path) -> Option<Option<Discovered>> {
    let root = pyenv::pyenv_root(req.env)?;
    let dir = cand.parent()?;
    if !pyenv::is_shims_dir(dir, &root) {
        return None;
    }
    let command = cand.file_name()?;
    let skip = |p: &Path| req.is_kolosal(p);
    let q = ShimQuery {
        root: &root,
        command,
        env: req.env,
        cwd: &req.cwd,
        skip: &skip,
    };
    Some(match pyenv::resolve_shim(&q) {
        ShimResolution::Found {
            path,
            version,
            origin,
            env,
        } => {
            let mut d = found(
                req.absolute(&path),
                Rule::Pyenv,
                format!(
                    "pyenv shim {}: version `{version}` (set by {origin})",
                    cand.display()
                ),
            );
            d.exec_env = env;
            d.pyenv_shim = Some(cand.to_path_buf());
            Some(d)
        }
        ShimResolution::Unsure(reason) => Some(found(
            cand.to_path_buf(),
            Rule::Path,
            format!("pyenv shim {} run as is: {reason}", cand.display()),
        )),
    })
}

fn found(path: PathBuf, rule: Rule, detail: String) -> Discovered {
    let resolved = path.canonicalize().unwrap_or_else(|_| path.clone());
    Discovered {
        path,
        rule,
        detail,
        resolved,
        exec_env: Vec::new(),
        pyenv_shim: None,
        ignored_venv: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_names() {
        for ok in ["python", "python3", "python3.12", "python3.13t", "python2"] {
            assert!(is_python_name(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "pythonx",
            "python3.",
            "python.3",
            "kolosal-python",
            "python3.1.2",
            "pythont",
        ] {
            assert!(!is_python_name(bad.as_bytes()), "{bad}");
        }
        assert_eq!(
            path_names(Some(OsStr::new("/usr/local/bin/python3.12"))),
            vec![OsString::from("python3.12")]
        );
        assert_eq!(
            path_names(Some(OsStr::new("kolosal-python"))),
            vec![OsString::from("python3"), OsString::from("python")]
        );
    }
}
