//! The launcher's error types: what failed on the cold and repair paths
//! ([`PrepareError`]) and when starting a detached helper process
//! ([`StartError`]: the background run, the learner).
//!
//! Each variant names the step that failed and keeps the underlying error
//! as [`std::error::Error::source`]. `Display` is the one-line text the
//! launcher logs (`precompiling skipped: ...`, `repair failed: ...`,
//! `no background run (...)`); it includes the source's own text, so a
//! caller logging only `{e}` says as much as before.

use super::lock::LOCK_WAIT_LIMIT;
use crate::argv::NotUnderstood;
use crate::compile::PoolError;
use crate::interpreter::ProbeError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the cold path ([`super::prepare::prepare`]) or the repair path
/// ([`super::repair::repair`]) could not make the closure's pycs fresh.
#[derive(Debug)]
pub(crate) enum PrepareError {
    /// Probing the interpreter (or reading its cached facts) failed.
    Probe(ProbeError),
    /// The interpreter's own version rejects this command line.
    Argv {
        /// The probed `(major, minor)`.
        version: (u32, u32),
        /// What the parser did not accept.
        source: NotUnderstood,
    },
    /// The probe reported no `sys.implementation.cache_tag`.
    NoCacheTag,
    /// The tree is not writable and the fallback prefix under the cache
    /// cannot be created.
    FallbackPrefix(io::Error),
    /// Another launch held the compile lock past [`LOCK_WAIT_LIMIT`].
    LockBusy,
    /// The compile pool could not run.
    Pool(PoolError),
}

impl fmt::Display for PrepareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrepareError::Probe(e) => write!(f, "{e}"),
            PrepareError::Argv { version, source } => write!(
                f,
                "python {}.{} would not accept this command line ({source})",
                version.0, version.1
            ),
            PrepareError::NoCacheTag => {
                f.write_str("this interpreter writes no pycs (no cache_tag)")
            }
            PrepareError::FallbackPrefix(e) => write!(
                f,
                "the tree is not writable and the cache is not usable: {e}"
            ),
            PrepareError::LockBusy => write!(
                f,
                "another launch held the compile lock for {LOCK_WAIT_LIMIT:?}; not waiting longer"
            ),
            PrepareError::Pool(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PrepareError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PrepareError::Probe(e) => Some(e),
            PrepareError::Argv { source, .. } => Some(source),
            PrepareError::FallbackPrefix(e) => Some(e),
            PrepareError::Pool(e) => Some(e),
            PrepareError::NoCacheTag | PrepareError::LockBusy => None,
        }
    }
}

impl From<ProbeError> for PrepareError {
    fn from(e: ProbeError) -> Self {
        PrepareError::Probe(e)
    }
}

impl From<PoolError> for PrepareError {
    fn from(e: PoolError) -> Self {
        PrepareError::Pool(e)
    }
}

/// Why a detached helper (the background run, the learner) was not started.
#[derive(Debug)]
pub(crate) enum StartError {
    /// There is no usable cache directory to hold the key's lock.
    NoCache,
    /// The key's lock file could not be opened.
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why it could not be opened.
        source: io::Error,
    },
    /// `current_exe` failed: kolosal-python cannot start itself again.
    CurrentExe(io::Error),
    /// An argument or environment entry holds a NUL byte (no `execve`).
    Nul(std::ffi::NulError),
    /// `/dev/null` could not be opened for the helper's stdio.
    DevNull(io::Error),
    /// `fork` failed.
    Fork(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoCache => f.write_str("no usable cache directory"),
            StartError::Lock { path, source } => write!(f, "{}: {source}", path.display()),
            StartError::CurrentExe(e) => write!(f, "cannot find kolosal-python: {e}"),
            StartError::Nul(_) => f.write_str("a NUL byte in argv or the environment"),
            StartError::DevNull(e) => write!(f, "/dev/null: {e}"),
            StartError::Fork(e) => write!(f, "fork: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Lock { source, .. } => Some(source),
            StartError::CurrentExe(e) | StartError::DevNull(e) | StartError::Fork(e) => Some(e),
            StartError::Nul(e) => Some(e),
            StartError::NoCache => None,
        }
    }
}

impl From<std::ffi::NulError> for StartError {
    fn from(e: std::ffi::NulError) -> Self {
        StartError::Nul(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interpreter::{run_probe, ProbeConfig};
    use std::error::Error as _;
    use std::path::Path;

    const PY27: &str = "/root/.pyenv/versions/2.7.18/bin/python";

    /// A probe failure reaches the launcher's log line unchanged, and the
    /// probe's own error (and its io error) stay reachable as sources.
    #[test]
    fn probe_failure_keeps_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("python3");
        let e = PrepareError::from(run_probe(&missing, &ProbeConfig::default()).unwrap_err());
        let probe = e.source().unwrap().downcast_ref::<ProbeError>().unwrap();
        assert!(matches!(probe, ProbeError::Spawn(_)), "{probe:?}");
        assert_eq!(e.to_string(), probe.to_string());
        let io = probe.source().unwrap().downcast_ref::<io::Error>().unwrap();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);

        if !Path::new(PY27).exists() {
            return;
        }
        // A real 2.7: the probe answers "unsupported", with its version.
        let e =
            PrepareError::from(run_probe(Path::new(PY27), &ProbeConfig::default()).unwrap_err());
        match e.source().unwrap().downcast_ref::<ProbeError>() {
            Some(ProbeError::Unsupported([2, 7, 18])) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            e.to_string().starts_with("python 2.7.18 is not supported"),
            "{e}"
        );
    }

    /// The texts the launcher logs are the ones it logged as strings.
    #[test]
    fn messages_unchanged() {
        // `-P` is 3.11's: the 3.8 rules refuse it.
        let source = crate::argv::parse(&["-P".into()], &|_| None, (3, 8)).unwrap_err();
        let old = format!("python 3.8 would not accept this command line ({source})");
        let e = PrepareError::Argv {
            version: (3, 8),
            source,
        };
        assert_eq!(e.to_string(), old);
        assert!(e.source().unwrap().is::<NotUnderstood>());
        assert_eq!(
            PrepareError::LockBusy.to_string(),
            "another launch held the compile lock for 10s; not waiting longer"
        );
        assert_eq!(
            PrepareError::NoCacheTag.to_string(),
            "this interpreter writes no pycs (no cache_tag)"
        );
    }

    /// A lock file that cannot be created names its path and keeps the OS
    /// error.
    #[test]
    fn lock_failure_keeps_the_os_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone").join("x.bg");
        let source = crate::cache::create_private(&path).unwrap_err();
        let text = format!("{}: {source}", path.display());
        let e = StartError::Lock { path, source };
        assert_eq!(e.to_string(), text);
        let io = e.source().unwrap().downcast_ref::<io::Error>().unwrap();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);

        let nul = std::ffi::CString::new(&b"a\0b"[..]).unwrap_err();
        let e = StartError::from(nul);
        assert_eq!(e.to_string(), "a NUL byte in argv or the environment");
        assert!(e.source().unwrap().is::<std::ffi::NulError>());
    }
}
