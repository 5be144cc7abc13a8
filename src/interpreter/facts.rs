//! The facts kolosal needs about one interpreter, as reported by the
//! interpreter itself (see `probe.py`). Never hard-coded: magic numbers and
//! cache tags differ between every CPython release.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Flags of the probed process (`sys.flags`), as far as they change imports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProbedFlags {
    /// `sys.flags.optimize`.
    pub optimize: u32,
    /// `sys.flags.dont_write_bytecode`.
    pub dont_write_bytecode: bool,
    /// `sys.flags.isolated`.
    pub isolated: bool,
    /// `sys.flags.ignore_environment`.
    pub ignore_environment: bool,
    /// `sys.flags.no_site`.
    pub no_site: bool,
    /// `sys.flags.no_user_site`.
    pub no_user_site: bool,
    /// `sys.flags.safe_path` (3.11+; false before).
    pub safe_path: bool,
}

/// Everything the pipeline needs to know about one interpreter under one
/// configuration (flags and environment that change `sys.path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonFacts {
    /// `sys.version_info[:3]`.
    pub version: [u32; 3],
    /// `sys.version_info.releaselevel` ("final", "candidate", ...).
    pub releaselevel: String,
    /// `sys.implementation.name` ("cpython", "pypy").
    pub implementation: String,
    /// `sys.implementation.cache_tag` (`None` disables pyc caching entirely).
    pub cache_tag: Option<String>,
    /// `importlib.util.MAGIC_NUMBER`, hex encoded (4 bytes).
    pub magic: String,
    /// `sys.executable`.
    pub executable: PathBuf,
    /// `sys.prefix`.
    pub prefix: PathBuf,
    /// `sys.base_prefix`.
    pub base_prefix: PathBuf,
    /// `sys.platform`.
    pub platform: String,
    /// `sys.path` without the launch-form entry `sys.path[0]`.
    pub sys_path: Vec<PathBuf>,
    /// `sysconfig` stdlib and platstdlib directories.
    pub stdlib_dirs: Vec<PathBuf>,
    /// `site.getsitepackages()`.
    pub site_packages: Vec<PathBuf>,
    /// `site.getusersitepackages()`.
    pub user_site: Option<PathBuf>,
    /// `site.ENABLE_USER_SITE`.
    pub user_site_enabled: bool,
    /// `sys.builtin_module_names`.
    pub builtin_modules: Vec<String>,
    /// Frozen modules the FrozenImporter serves in this configuration.
    pub frozen_modules: Vec<String>,
    /// `importlib.machinery.SOURCE_SUFFIXES`.
    pub source_suffixes: Vec<String>,
    /// `importlib.machinery.BYTECODE_SUFFIXES`.
    pub bytecode_suffixes: Vec<String>,
    /// `importlib.machinery.EXTENSION_SUFFIXES`.
    pub extension_suffixes: Vec<String>,
    /// `sorted(sys.modules)` right after start-up (site, .pth imports, ...).
    pub startup_modules: Vec<String>,
    /// `sys.meta_path`, as qualified type names.
    pub meta_path: Vec<String>,
    /// `sys.path_hooks`, as qualified names.
    pub path_hooks: Vec<String>,
    /// `sys.flags` of the probe process.
    pub flags: ProbedFlags,
    /// `sys.pycache_prefix` (3.8+).
    pub pycache_prefix: Option<PathBuf>,
    /// `_imp.check_hash_based_pycs`.
    pub check_hash_based_pycs: String,
}

impl PythonFacts {
    /// `(major, minor)`.
    pub fn minor_version(&self) -> (u32, u32) {
        (self.version[0], self.version[1])
    }

    /// The 4 magic bytes, or `None` when the probe reported garbage.
    pub fn magic_bytes(&self) -> Option<[u8; 4]> {
        let s = self.magic.as_bytes();
        if s.len() != 8 {
            return None;
        }
        let mut out = [0u8; 4];
        for (i, chunk) in s.chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(out)
    }
}
