//! The launch key: everything that decides which warm-path manifest applies.
//!
//! Two launches share a manifest when they run the same interpreter path,
//! with the same options and target (`args[..script_args_start]`; the
//! program's own arguments do not change what it imports), from the same
//! working directory, under the same `PYTHON*` variables and `HOME` (user
//! site). The interpreter's own identity (its binary and `pyvenv.cfg`) is
//! checked by stamps inside the manifest, so an in-place upgrade is caught
//! there.

use crate::manifest::LaunchKey;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Builds the key for a launch of `python` with `args` (without `argv[0]`),
/// of which the first `options_and_target` belong to the interpreter.
pub(crate) fn launch_key(
    python: &Path,
    args: &[OsString],
    options_and_target: usize,
    cwd: &Path,
) -> LaunchKey {
    let mut key = LaunchKey::new();
    key.part(b"kolosal-launch-1");
    key.part(python.as_os_str().as_bytes());
    key.part(cwd.as_os_str().as_bytes());
    let n = options_and_target.min(args.len());
    key.part(&(n as u32).to_le_bytes());
    for a in &args[..n] {
        key.part(a.as_bytes());
    }
    // Every PYTHON* variable, sorted, and HOME: they shape sys.path, flags
    // and the user site.
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k.as_bytes().starts_with(b"PYTHON") || k == "HOME")
        .collect();
    vars.sort();
    for (k, v) in &vars {
        key.part(k.as_bytes()).part(v.as_bytes());
    }
    key
}
