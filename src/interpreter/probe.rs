//! Asking an interpreter for its [`PythonFacts`].
//!
//! The probe runs `probe.py` inside the target interpreter with the same
//! flags and environment that shape `sys.path` at launch, so the facts match
//! what the real run will see.

use super::facts::PythonFacts;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

/// The probe script, embedded in the binary.
pub const PROBE_SCRIPT: &str = include_str!("probe.py");

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
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Spawn(e) => write!(f, "could not start the interpreter: {e}"),
            ProbeError::Failed(m) => write!(f, "the interpreter failed to report its facts: {m}"),
            ProbeError::BadOutput(m) => {
                write!(
                    f,
                    "the interpreter's answer was not understood ({m}); is it CPython 3.6+?"
                )
            }
        }
    }
}

impl std::error::Error for ProbeError {}

/// Runs the probe in `python` under `config`, uncached.
///
/// The child gets the config's environment for [`FACT_ENV_VARS`], a null
/// stdin, and `PYTHONDONTWRITEBYTECODE=1` so probing never writes files.
/// Variables that would make `-c` interactive or noisy are removed.
pub fn run_probe(python: &Path, config: &ProbeConfig) -> Result<PythonFacts, ProbeError> {
    let mut cmd = Command::new(python);
    cmd.args(config.python_flags())
        .arg("-c")
        .arg(PROBE_SCRIPT)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
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
    let out = cmd.output().map_err(ProbeError::Spawn)?;
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
    serde_json::from_slice(&out.stdout).map_err(|e| ProbeError::BadOutput(e.to_string()))
}
