//! The `kolosal` management CLI: one module per subcommand.

pub mod cache;
pub mod clean;
pub mod closure;
pub mod compile;
pub mod info;
pub mod status;
pub mod trace;

use crate::interpreter::{discover, DiscoverRequest, Discovered};
use std::path::{Path, PathBuf};

/// Finds the interpreter a subcommand works for: `explicit` (`--python`)
/// if given, else what `kolosal-python` would run for `script` from the
/// current directory (KOLOSAL_PYTHON, VIRTUAL_ENV, a `.venv` above the
/// script, PATH).
pub fn discover_python(
    explicit: Option<PathBuf>,
    script: Option<&Path>,
) -> anyhow::Result<Discovered> {
    let cwd = std::env::current_dir().map_err(|e| {
        anyhow::anyhow!("cannot read the working directory ({e}); cd somewhere that exists")
    })?;
    let env = |name: &str| std::env::var_os(name);
    let mut req = DiscoverRequest::new(cwd.clone(), &env);
    req.explicit = explicit;
    if let Some(s) = script {
        req.set_script(s);
    }
    Ok(discover(&req)?)
}
