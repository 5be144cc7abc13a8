//! The `kolosal` management CLI: one module per subcommand.

pub mod cache;
pub mod clean;
pub mod closure;
pub mod compile;
pub mod info;
pub mod status;
pub mod trace;

use kolosal::interpreter::{discover, DiscoverRequest, Discovered};
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

/// The interpreter groups a `compile`/`status` run works on: one group
/// (the explicit or discovered interpreter, no paths) for an entry
/// (`--entry`/`-m`), else `paths` grouped by the interpreter owning each.
pub fn groups_for(
    entry_or_module: bool,
    paths: &[PathBuf],
    python: Option<&Path>,
) -> Vec<OwnedPaths> {
    if entry_or_module {
        vec![OwnedPaths {
            python: python.map(Path::to_path_buf),
            why: None,
            paths: Vec::new(),
        }]
    } else {
        group_by_owner(paths, python)
    }
}

/// Runs `each` on every group: the worst exit code, and the JSON document
/// each produced.
pub fn for_each_group(
    groups: &[OwnedPaths],
    mut each: impl FnMut(&OwnedPaths) -> anyhow::Result<(i32, Option<serde_json::Value>)>,
) -> anyhow::Result<(i32, Vec<serde_json::Value>)> {
    let mut code = 0;
    let mut docs = Vec::new();
    for g in groups {
        let (c, doc) = each(g)?;
        code = code.max(c);
        docs.extend(doc);
    }
    Ok((code, docs))
}

/// The one JSON document of a `compile`/`status` run: a single group's as
/// it is, several under `"interpreters"` (with `extra` fields beside).
pub fn combined_json(
    mut docs: Vec<serde_json::Value>,
    extra: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    if docs.len() == 1 {
        return docs.remove(0);
    }
    let mut doc = serde_json::Map::new();
    doc.insert("schema".into(), 1.into());
    doc.insert("interpreters".into(), docs.into());
    doc.extend(extra);
    doc.into()
}

/// The prefix of every error line the `kolosal` CLI prints (on stderr).
pub const ERROR: &str = "kolosal: error: ";

/// Prints one error line on stderr, with the one prefix.
pub fn error_line(message: impl std::fmt::Display) {
    eprintln!("{ERROR}{message}");
}

/// The interpreter that owns `path`: the venv whose `pyvenv.cfg` is in
/// `path` or a directory above it (its `bin/python`), else the prefix whose
/// `lib/pythonX.Y` holds it (its `bin/pythonX.Y`: the stdlib and
/// site-packages of an installed interpreter). `None` when neither is
/// found, or `Some(Err)` (one line) when one is found in a place another
/// user controls ([`kolosal::interpreter::dotvenv_trust`], the rule
/// for `.venv`): such an interpreter is not run.
pub fn owner_python(path: &Path) -> Option<Result<(PathBuf, String), String>> {
    let real = std::fs::canonicalize(path).ok()?;
    let trusted = |dir: &Path, python: PathBuf, why: String| {
        Some(
            kolosal::interpreter::dotvenv_trust(dir)
                .map(|()| (python, why))
                .map_err(|e| format!("{} is not used for {}: {e}", dir.display(), path.display())),
        )
    };
    // A venv first: its own lib/pythonX.Y must not be taken for a prefix.
    for dir in real.ancestors() {
        let cfg = dir.join("pyvenv.cfg");
        let is_cfg = std::fs::symlink_metadata(&cfg).is_ok_and(|m| m.is_file());
        let python = dir.join("bin/python");
        if is_cfg && kolosal::interpreter::is_executable_file(&python) {
            let why = format!("the venv {} holds {}", dir.display(), path.display());
            return trusted(dir, python, why);
        }
    }
    for dir in real.ancestors() {
        let (Some(name), Some(lib)) = (dir.file_name(), dir.parent()) else {
            continue;
        };
        let name = name.to_string_lossy();
        let is_version = name
            .strip_prefix("python")
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.trim_end_matches('t').bytes().all(|c| c.is_ascii_digit())
            });
        if !is_version
            || !matches!(
                lib.file_name().and_then(|n| n.to_str()),
                Some("lib" | "lib64")
            )
        {
            continue;
        }
        let Some(prefix) = lib.parent() else { continue };
        let python = prefix.join("bin").join(&*name);
        if kolosal::interpreter::is_executable_file(&python) && dir.join("os.py").is_file() {
            let why = format!("{} is in the prefix {}", path.display(), prefix.display());
            return trusted(prefix, python, why);
        }
    }
    None
}

/// The paths given to `compile`/`status`, grouped by the interpreter that
/// owns them ([`owner_python`]); `python: None` is discovery's choice.
#[derive(Debug, Clone)]
pub struct OwnedPaths {
    /// The owner (`None`: discovery, or `--python` when given).
    pub python: Option<PathBuf>,
    /// Why it owns them (`None` for discovery).
    pub why: Option<String>,
    /// The paths, in the order given.
    pub paths: Vec<PathBuf>,
}

/// Groups `paths` by owner, in order of first appearance. With `explicit`
/// (`--python`) or no paths, one group. A distrusted owner is reported
/// once on stderr and its paths go to discovery.
pub fn group_by_owner(paths: &[PathBuf], explicit: Option<&Path>) -> Vec<OwnedPaths> {
    if explicit.is_some() || paths.is_empty() {
        return vec![OwnedPaths {
            python: explicit.map(Path::to_path_buf),
            why: None,
            paths: paths.to_vec(),
        }];
    }
    let mut groups: Vec<OwnedPaths> = Vec::new();
    for p in paths {
        let (python, why) = match owner_python(p) {
            Some(Ok((python, why))) => (Some(python), Some(why)),
            Some(Err(e)) => {
                eprintln!("kolosal: warning: {e}");
                (None, None)
            }
            None => (None, None),
        };
        match groups.iter_mut().find(|g| g.python == python) {
            Some(g) => g.paths.push(p.clone()),
            None => groups.push(OwnedPaths {
                python,
                why,
                paths: vec![p.clone()],
            }),
        }
    }
    groups
}
