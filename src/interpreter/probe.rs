//! Asking an interpreter for its [`PythonFacts`].
//!
//! The probe runs `probe.py` inside the target interpreter with the same
//! flags and environment that shape `sys.path` at launch, so the facts match
//! what the real run will see, plus `-S`: it runs no user code (no `.pth`
//! `import` line, no `sitecustomize`), reproduces `site.main()` itself, and
//! answers on a pipe of its own, never on the stdout user code shares.

use super::facts::PythonFacts;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The probe script, embedded in the binary (CPython 3.7+ only).
pub const PROBE_SCRIPT: &str = include_str!("probe.py");

/// What `-c` runs: a version check any Python from 2.7 on can parse, using
/// builtin modules only (nothing on `sys.path` can shadow `sys`/`posix`).
/// A Python the probe cannot ask (2.x) answers `{"unsupported": [...]}`;
/// 3.6+ runs [`PROBE_SCRIPT`] (`sys.argv[3]`). 3.6 still gets its facts
/// (the pyc tests use them); the launcher's cut-off is `MIN_SUPPORTED`,
/// applied by the probe cache.
pub const PROBE_PROLOGUE: &str = "import sys, posix
if sys.version_info < (3, 6):
    _a = ('{\"unsupported\": [%d, %d, %d]}' % tuple(sys.version_info[:3])).encode('ascii')
    while _a:
        _a = _a[posix.write(int(sys.argv[1]), _a):]
else:
    exec(compile(sys.argv[3], '<kolosal probe>', 'exec'))
";

/// The oldest CPython kolosal precompiles for: older ones are passed
/// through untouched by the launcher ([`super::probe_cache::facts_for`]
/// reports them as [`ProbeError::Unsupported`]).
pub(crate) const MIN_SUPPORTED: (u32, u32) = (3, 7);

/// Environment variables that change what the probe reports (`sys.path`,
/// site directories, flags). They form part of the probe cache key.
pub const FACT_ENV_VARS: &[&str] = &[
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONNOUSERSITE",
    "PYTHONPLATLIBDIR",
    "PYTHONSAFEPATH",
    "PYTHONPYCACHEPREFIX",
    "PYTHONEXECUTABLE",
    "HOME",
];

/// The launch settings that change an interpreter's facts. Two launches with
/// equal configs (and an unchanged executable) share one probe result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ProbeConfig {
    /// `-I`.
    pub isolated: bool,
    /// `-E`.
    pub ignore_environment: bool,
    /// `-s`.
    pub no_user_site: bool,
    /// `-S`.
    pub no_site: bool,
    /// `-X frozen_modules=off` (3.11+).
    pub frozen_modules_off: bool,
    /// Values of [`FACT_ENV_VARS`] at launch, in that order (`None` = unset).
    pub env: Vec<Option<OsString>>,
}

impl ProbeConfig {
    /// A config capturing the current process environment for `FACT_ENV_VARS`.
    pub fn from_current_env() -> Self {
        ProbeConfig {
            env: FACT_ENV_VARS.iter().map(std::env::var_os).collect(),
            ..Default::default()
        }
    }

    /// The probe settings a launch's own flags imply (`-I`, `-E`, `-s`, `-S`,
    /// `-X frozen_modules=off`), over the current environment: the one
    /// mapping from a command line to the facts it needs, for the launcher
    /// and `kolosal compile --trace` alike.
    pub fn for_launch(spec: &crate::argv::LaunchSpec) -> Self {
        ProbeConfig {
            isolated: spec.isolated,
            ignore_environment: spec.ignore_environment,
            no_user_site: spec.no_user_site,
            no_site: spec.no_site,
            frozen_modules_off: spec.frozen_modules == Some(false),
            ..ProbeConfig::from_current_env()
        }
    }

    /// The interpreter flags this config stands for, in CPython's spelling.
    pub fn python_flags(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.isolated {
            flags.push("-I");
        }
        if self.ignore_environment {
            flags.push("-E");
        }
        if self.no_user_site {
            flags.push("-s");
        }
        if self.no_site {
            flags.push("-S");
        }
        if self.frozen_modules_off {
            flags.extend(["-X", "frozen_modules=off"]);
        }
        flags
    }
}

/// Why a probe failed.
#[derive(Debug)]
pub enum ProbeError {
    /// The executable could not be started.
    Spawn(std::io::Error),
    /// It ran but did not exit 0 (not Python, or Python too old); stderr's
    /// first line is kept.
    Failed(String),
    /// It printed something that is not the probe's JSON.
    BadOutput(String),
    /// A Python kolosal does not precompile for (2.7, 3.6): its version.
    Unsupported([u32; 3]),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Spawn(e) => write!(f, "could not start the interpreter: {e}"),
            ProbeError::Failed(m) => write!(f, "the interpreter failed to report its facts: {m}"),
            ProbeError::BadOutput(m) => {
                write!(
                    f,
                    "the interpreter's answer was not understood ({m}); is it CPython 3.7+?"
                )
            }
            ProbeError::Unsupported(v) => write!(
                f,
                "python {}.{}.{} is not supported (kolosal precompiles for CPython {}.{}+)",
                v[0], v[1], v[2], MIN_SUPPORTED.0, MIN_SUPPORTED.1
            ),
        }
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProbeError::Spawn(e) => Some(e),
            ProbeError::Failed(_) | ProbeError::BadOutput(_) | ProbeError::Unsupported(_) => None,
        }
    }
}

/// Runs the probe in `python` under `config`, uncached.
///
/// The child gets the config's flags plus `-S`, its environment for
/// [`FACT_ENV_VARS`], a null stdin and stdout, and `PYTHONDONTWRITEBYTECODE=1`
/// so probing never writes files. Variables that would make `-c`
/// interactive or noisy are removed. The answer comes back on a pipe whose
/// write end is the only descriptor the child inherits besides 0-2.
pub fn run_probe(python: &Path, config: &ProbeConfig) -> Result<PythonFacts, ProbeError> {
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ProbeError::Spawn(e.into()))?;
    let wfd = write_end.as_raw_fd();
    let mut cmd = Command::new(python);
    cmd.args(config.python_flags());
    if !config.no_site {
        cmd.arg("-S");
    }
    cmd.arg("-c")
        .arg(PROBE_PROLOGUE)
        .arg(wfd.to_string())
        .arg(if config.no_site { "1" } else { "0" })
        .arg(PROBE_SCRIPT)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only fcntl, which is async-signal-safe, runs between fork and
    // exec; it makes the answer pipe survive the exec in the child alone.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(wfd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    for (name, value) in FACT_ENV_VARS.iter().zip(config.env.iter()) {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    for noisy in [
        "PYTHONINSPECT",
        "PYTHONSTARTUP",
        "PYTHONWARNINGS",
        "PYTHONVERBOSE",
        "PYTHONDEBUG",
    ] {
        cmd.env_remove(noisy);
    }
    cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    let child = cmd.spawn().map_err(ProbeError::Spawn)?;
    drop(write_end);
    let reader = std::thread::spawn(move || read_all(read_end));
    let out = child.wait_with_output().map_err(ProbeError::Spawn)?;
    let answer = reader
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("reader panicked")));
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(ProbeError::Failed(format!(
            "{} ({})",
            line.trim(),
            out.status
        )));
    }
    let answer = answer.map_err(|e| ProbeError::BadOutput(e.to_string()))?;
    parse_answer(&answer)
}

fn read_all(fd: OwnedFd) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The probe's JSON: the facts, or the version of an unsupported Python.
fn parse_answer(answer: &[u8]) -> Result<PythonFacts, ProbeError> {
    #[derive(serde::Deserialize)]
    struct Unsupported {
        unsupported: [u32; 3],
    }
    if let Ok(u) = serde_json::from_slice::<Unsupported>(answer) {
        return Err(ProbeError::Unsupported(u.unsupported));
    }
    serde_json::from_slice(answer).map_err(|e| ProbeError::BadOutput(e.to_string()))
}
