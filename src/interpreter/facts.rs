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

    /// Directories of installed packages, as opposed to the standard library
    /// (some live inside a stdlib directory): `site.getsitepackages()`, the
    /// user site, and `site-packages`/`dist-packages` (Debian) under each
    /// stdlib directory.
    pub fn package_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.site_packages.clone();
        dirs.extend(self.user_site.iter().cloned());
        for d in &self.stdlib_dirs {
            dirs.push(d.join("site-packages"));
            dirs.push(d.join("dist-packages"));
        }
        dirs
    }

    /// Whether `path` is a standard-library file: under a stdlib directory
    /// and not under one of [`PythonFacts::package_dirs`].
    pub fn in_stdlib(&self, path: &std::path::Path) -> bool {
        use std::path::Component;
        // The same directories as package_dirs(), checked without building them.
        let installed = self
            .site_packages
            .iter()
            .chain(self.user_site.iter())
            .any(|d| path.starts_with(d));
        !installed
            && self.stdlib_dirs.iter().any(|d| {
                path.strip_prefix(d).is_ok_and(|rest| {
                    !matches!(rest.components().next(),
                        Some(Component::Normal(n)) if n == "site-packages" || n == "dist-packages")
                })
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn stdlib_excludes_every_package_dir() {
        let facts: PythonFacts = serde_json::from_value(serde_json::json!({
            "version": [3, 11, 2], "releaselevel": "final", "implementation": "cpython",
            "cache_tag": "cpython-311", "magic": "a70d0d0a", "executable": "/usr/bin/python3.11",
            "prefix": "/usr", "base_prefix": "/usr", "platform": "linux", "sys_path": [],
            "stdlib_dirs": ["/usr/lib/python3.11"],
            "site_packages": ["/usr/local/lib/python3.11/dist-packages"],
            "user_site": "/root/.local/lib/python3.11/site-packages", "user_site_enabled": true,
            "builtin_modules": [], "frozen_modules": [], "source_suffixes": [".py"],
            "bytecode_suffixes": [".pyc"], "extension_suffixes": [], "startup_modules": [],
            "meta_path": [], "path_hooks": [], "flags": {
                "optimize": 0, "dont_write_bytecode": false, "isolated": false,
                "ignore_environment": false, "no_site": false, "no_user_site": false,
                "safe_path": false
            }, "pycache_prefix": null,
            "check_hash_based_pycs": "default"
        }))
        .unwrap();
        let yes = [
            "/usr/lib/python3.11/os.py",
            "/usr/lib/python3.11/json/decoder.py",
        ];
        let no = [
            "/usr/lib/python3.11/dist-packages/six.py",
            "/usr/lib/python3.11/site-packages/six.py",
            "/usr/local/lib/python3.11/dist-packages/requests/api.py",
            "/root/.local/lib/python3.11/site-packages/x.py",
            "/srv/app/main.py",
        ];
        for p in yes {
            assert!(facts.in_stdlib(Path::new(p)), "{p}");
        }
        for p in no {
            assert!(!facts.in_stdlib(Path::new(p)), "{p}");
            let under_package_dir = facts
                .package_dirs()
                .iter()
                .any(|d| Path::new(p).starts_with(d));
            assert_eq!(under_package_dir, p != "/srv/app/main.py", "{p}");
        }
    }
}
