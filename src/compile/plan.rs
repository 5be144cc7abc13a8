//! From trees to work: which sources `kolosal compile` looks at (compileall's
//! selection rules), which pyc each one needs at each optimisation level, and
//! which of those are stale.
//!
//! ```text
//! find_sources(roots) ─► targets(sources, levels, layout) ─► plan(targets, mode)
//! ```
//!
//! Selection, as `compileall.compile_dir` / `compile_file` (3.9+):
//! * directories are listed in sorted order; `__pycache__` is skipped;
//! * **symlinked directories are not entered** (compileall's
//!   `not os.path.islink(fullname)`), so a walk never leaves the tree through
//!   a directory link and never loops; a root given as a symlink is followed;
//! * a file is compiled when its name ends in `.py` and it is a regular file
//!   after following symlinks (a symlinked `.py` file is compiled, its pyc
//!   written beside the link, as compileall does);
//! * `exclude` is searched (not matched) in the full path as walked, i.e.
//!   the root as given joined with the names below it, on the raw bytes.
//!   kolosal uses Rust's `regex` syntax, which has no look-around or
//!   back-references;
//! * `max_depth` is compileall's `-r`: how many directory levels below a
//!   root are entered (0: only the root's own files).
//!
//! Departures from compileall, all in the direction of telling the user: a
//! root that does not exist and a directory that cannot be listed are
//! reported as problems (compileall succeeds silently or prints and still
//! exits 0); overlapping roots do not compile a file twice.

use super::CompileJob;
use crate::freshness::{self, Freshness};
use crate::pyc::{cache_from_source, legacy_pyc_path, InvalidationMode, PycRules, PycTarget};
use rayon::prelude::*;
use regex::bytes::Regex;
use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How `find_sources` walks.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Skip files whose full path contains a match (compileall's `-x`).
    pub exclude: Option<Regex>,
    /// Directory levels entered below each root (compileall's `-r`);
    /// `None`: no limit.
    pub max_depth: Option<usize>,
    /// Directories not entered (exact paths as walked, e.g. a stdlib's
    /// `site-packages` when compiling the stdlib alone).
    pub prune: Vec<PathBuf>,
}

/// Something the walk could not look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkProblem {
    /// The path concerned.
    pub path: PathBuf,
    /// What went wrong, e.g. "cannot list directory: Permission denied".
    pub message: String,
}

impl std::fmt::Display for WalkProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// The sources found under some roots.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// `.py` files, each once, in walk order (roots in the order given,
    /// names sorted within a directory).
    pub sources: Vec<PathBuf>,
    /// Roots or directories that could not be read.
    pub problems: Vec<WalkProblem>,
}

/// The `.py` files under `roots` that compileall would compile (see the
/// module documentation for the rules). A root may be a file or a directory.
///
/// Directories are listed in parallel (one `getdents` pass each, no `stat`
/// unless the file system gives no type or a `.py` name is a symlink); the
/// result is in the same order as a sequential sorted walk.
pub fn find_sources(roots: &[PathBuf], opts: &WalkOptions) -> Walk {
    let mut walk = Walk::default();
    // Overlapping roots must not yield a file twice. A walk never enters a
    // symlinked directory, so below a root the real path of a file's
    // directory is the root's real path joined with the names walked: one
    // canonicalize per root, none per directory. A single root needs none.
    let mut seen: Option<HashSet<PathBuf>> = (roots.len() > 1).then(HashSet::new);
    for root in roots {
        let meta = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                walk.problems.push(WalkProblem {
                    path: root.clone(),
                    message: io_message(&e),
                });
                continue;
            }
        };
        if !meta.is_dir() {
            if is_candidate(root, opts) && meta.is_file() && first_time(&mut seen, root, None) {
                walk.sources.push(root.clone());
            }
            continue;
        }
        let canon_root = seen
            .as_ref()
            .map(|_| std::fs::canonicalize(root).unwrap_or_else(|_| root.clone()));
        for item in walk_dir(root, 1, opts) {
            match item {
                Ok(path) => {
                    let under = canon_root.as_ref().map(|c| (c.as_path(), root.as_path()));
                    if first_time(&mut seen, &path, under) {
                        walk.sources.push(path);
                    }
                }
                Err(problem) => walk.problems.push(problem),
            }
        }
    }
    walk
}

/// Records `path` in `seen` (when deduplicating); false when it was there.
/// `under` = (real path of the root, root as given) for a file found by a
/// walk; a file given as a root gets its directory canonicalized.
fn first_time(
    seen: &mut Option<HashSet<PathBuf>>,
    path: &Path,
    under: Option<(&Path, &Path)>,
) -> bool {
    let Some(seen) = seen else {
        return true;
    };
    let key = match under {
        Some((canon, root)) => match path.strip_prefix(root) {
            Ok(rel) => canon.join(rel),
            Err(_) => path.to_path_buf(),
        },
        None => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let canon = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.into());
            canon.join(path.file_name().unwrap_or_default())
        }
    };
    seen.insert(key)
}

/// One directory entry as listed: its name and type (from `getdents`).
type Listed = (OsString, std::io::Result<std::fs::FileType>);

/// The sources below `dir` (whose entries are `depth` levels below the
/// root), in sorted walk order, with the problems met in place.
fn walk_dir(dir: &Path, depth: usize, opts: &WalkOptions) -> Vec<Result<PathBuf, WalkProblem>> {
    let cannot_list = |e: &std::io::Error| {
        vec![Err(WalkProblem {
            path: dir.to_path_buf(),
            message: format!("cannot list directory: {}", io_message(e)),
        })]
    };
    let listing = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) => return cannot_list(&e),
    };
    let mut entries: Vec<Listed> = Vec::new();
    for entry in listing {
        match entry {
            Ok(e) => entries.push((e.file_name(), e.file_type())),
            Err(e) => return cannot_list(&e),
        }
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    // compileall's maxlevels: entries at `depth` are entered while depth <= -r.
    let enter = opts.max_depth.map_or(true, |d| depth <= d);
    let one = |(name, ft): &Listed| -> Vec<Result<PathBuf, WalkProblem>> {
        let path = dir.join(name);
        let ft = match ft {
            Ok(ft) => *ft,
            Err(e) => {
                return vec![Err(WalkProblem {
                    message: io_message(e),
                    path,
                })]
            }
        };
        if ft.is_dir() {
            if enter && name != "__pycache__" && !opts.prune.contains(&path) {
                return walk_dir(&path, depth + 1, opts);
            }
            return Vec::new();
        }
        if !is_candidate(&path, opts) {
            return Vec::new();
        }
        let is_file = if ft.is_symlink() {
            std::fs::metadata(&path).is_ok_and(|m| m.is_file())
        } else {
            ft.is_file()
        };
        if is_file {
            vec![Ok(path)]
        } else {
            Vec::new()
        }
    };
    let parts: Vec<Vec<Result<PathBuf, WalkProblem>>> = if entries.len() > 1 && enter {
        entries.par_iter().map(one).collect()
    } else {
        entries.iter().map(one).collect()
    };
    parts.into_iter().flatten().collect()
}

// mirrors compileall.compile_file: `rx.search(fullname)` then
// `name[-3:] == '.py'`
fn is_candidate(path: &Path, opts: &WalkOptions) -> bool {
    let name_ok = path
        .file_name()
        .is_some_and(|n| n.as_bytes().ends_with(b".py"));
    name_ok
        && !opts
            .exclude
            .as_ref()
            .is_some_and(|rx| rx.is_match(path.as_os_str().as_bytes()))
}

fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Where pycs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// PEP 3147: `__pycache__/<name>.<tag>[.opt-N].pyc`, or the mirror tree
    /// under `prefix` (`sys.pycache_prefix`, 3.8+).
    Pycache {
        /// `sys.pycache_prefix` of the target interpreter.
        prefix: Option<PathBuf>,
        /// The working directory, absolute (used only with a prefix).
        cwd: PathBuf,
    },
    /// `x.pyc` beside `x.py` (compileall `-b`): what `SourcelessFileLoader`
    /// imports once the source is gone. One file per source, so one level.
    Legacy,
}

/// One pyc to keep fresh at one optimisation level: a [`PycTarget`] (the
/// source, as walked, and where its pyc goes), which it dereferences to.
/// A [`crate::compile::CompileJob`] adds the invalidation mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The source and its pyc.
    pub pyc: PycTarget,
    /// The optimisation level it is compiled at.
    pub optimize: u32,
}

impl std::ops::Deref for Target {
    type Target = PycTarget;
    fn deref(&self) -> &PycTarget {
        &self.pyc
    }
}

impl AsRef<PycTarget> for Target {
    fn as_ref(&self) -> &PycTarget {
        &self.pyc
    }
}

/// One target per (source, level), levels in the order given (callers pass
/// them sorted and deduplicated, as compileall does). Returns `None` when the
/// interpreter has no cache tag and the layout needs one.
pub fn targets(
    sources: &[PathBuf],
    rules: &PycRules,
    levels: &[u32],
    layout: &Layout,
) -> Option<Vec<Target>> {
    let mut out = Vec::with_capacity(sources.len() * levels.len());
    for source in sources {
        for &optimize in levels {
            let cfile = match layout {
                Layout::Legacy => legacy_pyc_path(source),
                Layout::Pycache { prefix, cwd } => {
                    match cache_from_source(source, rules, optimize, prefix.as_deref(), cwd) {
                        Some(c) => c,
                        None if rules.cache_tag.is_none() => return None,
                        // CPython itself cannot name a pyc for this path
                        // (e.g. "//x.py" under a prefix): nothing to write.
                        None => continue,
                    }
                }
            };
            out.push(Target {
                pyc: PycTarget {
                    source: source.clone(),
                    cfile,
                },
                optimize,
            });
        }
    }
    Some(out)
}

/// Targets split into work and no work.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Targets to compile, with why each is stale (`None` under `force`).
    pub stale: Vec<(Target, Option<Freshness>)>,
    /// Targets whose pyc is already what would be written.
    pub fresh: Vec<Target>,
}

impl Plan {
    /// The compile jobs for the stale targets, in order, in `mode`.
    pub fn jobs(&self, mode: InvalidationMode) -> Vec<CompileJob> {
        self.stale
            .iter()
            .map(|(t, _)| CompileJob {
                pyc: t.pyc.clone(),
                optimize: t.optimize,
                invalidation: mode,
            })
            .collect()
    }
}

/// Decides which targets need compiling in invalidation mode `mode`, with
/// [`freshness::check_all_written`] (in parallel for large sets); `force`
/// compiles everything without looking.
pub fn plan(targets: Vec<Target>, rules: &PycRules, mode: InvalidationMode, force: bool) -> Plan {
    if force {
        return Plan {
            stale: targets.into_iter().map(|t| (t, None)).collect(),
            fresh: Vec::new(),
        };
    }
    let verdicts = freshness::par_map(&targets, |t| {
        freshness::check_written(&t.source, &t.cfile, rules, mode)
    });
    let mut p = Plan::default();
    for (t, v) in targets.into_iter().zip(verdicts) {
        if v.is_fresh() {
            p.fresh.push(t);
        } else {
            p.stale.push((t, Some(v)));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(w: &Walk, root: &Path) -> Vec<String> {
        w.sources
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn compileall_selection() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in [
            "b.py",
            "a.py",
            "notes.txt",
            "x.pyw",
            "pkg/__init__.py",
            "pkg/sub/deep.py",
            "pkg/__pycache__/cached.py",
            "skipme/gone.py",
        ] {
            let p = r.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, "").unwrap();
        }
        fs::create_dir(r.join("dir.py")).unwrap();
        std::os::unix::fs::symlink(r.join("pkg"), r.join("linkdir")).unwrap();
        std::os::unix::fs::symlink(r.join("a.py"), r.join("linked.py")).unwrap();
        std::os::unix::fs::symlink(r.join("nowhere.py"), r.join("dangling.py")).unwrap();
        let all = find_sources(&[r.to_path_buf()], &WalkOptions::default());
        assert!(all.problems.is_empty(), "{:?}", all.problems);
        assert_eq!(
            names(&all, r),
            [
                "a.py",
                "b.py",
                "linked.py",
                "pkg/__init__.py",
                "pkg/sub/deep.py",
                "skipme/gone.py"
            ]
        );
        let opts = WalkOptions {
            exclude: Some(Regex::new("skip|^nothing").unwrap()),
            max_depth: Some(1),
            prune: vec![],
        };
        let some = find_sources(&[r.to_path_buf()], &opts);
        assert_eq!(
            names(&some, r),
            ["a.py", "b.py", "linked.py", "pkg/__init__.py"]
        );
        let top = WalkOptions {
            max_depth: Some(0),
            ..Default::default()
        };
        assert_eq!(
            names(&find_sources(&[r.to_path_buf()], &top), r),
            ["a.py", "b.py", "linked.py"]
        );
        // Overlapping roots and a file root: each source once.
        let over = find_sources(
            &[r.join("pkg"), r.to_path_buf(), r.join("pkg/./sub/deep.py")],
            &WalkOptions::default(),
        );
        assert_eq!(over.sources.len(), 6);
        let missing = find_sources(&[r.join("nope")], &WalkOptions::default());
        assert_eq!(missing.problems.len(), 1);
        assert!(missing.problems[0].message.contains("no such file"));
    }

    /// The parallel walk yields exactly what a sequential sorted walk
    /// (walkdir, compileall's order) yields, on a tree whose file and
    /// directory names interleave; a root reached through a symlink and by
    /// its real path counts each file once; an unreadable directory is a
    /// problem in place while the rest is still walked.
    #[test]
    fn parallel_walk_matches_sorted_sequential_walk() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("t");
        let mut n = 0;
        for top in ["a", "a.py", "a0", "b", "B.py", "_x", "z.py"] {
            for sub in ["", "m", "m.py", "n", "n/__init__.py", "n/o.py", "n/p/q.py"] {
                let rel = if sub.is_empty() {
                    top.to_string()
                } else {
                    format!("{top}/{sub}")
                };
                let p = r.join(&rel);
                if rel.ends_with(".py") && !top.ends_with(".py") {
                    fs::create_dir_all(p.parent().unwrap()).unwrap();
                    fs::write(&p, "").unwrap();
                    n += 1;
                } else if top.ends_with(".py") && sub.is_empty() {
                    fs::create_dir_all(&r).unwrap();
                    fs::write(&p, "").unwrap();
                    n += 1;
                } else if !top.ends_with(".py") {
                    fs::create_dir_all(&p).unwrap();
                }
            }
        }
        let expected: Vec<PathBuf> = walkdir::WalkDir::new(&r)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.file_name() != "__pycache__")
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file() && e.file_name().as_bytes().ends_with(b".py"))
            .map(|e| e.into_path())
            .collect();
        assert_eq!(expected.len(), n);
        let got = find_sources(std::slice::from_ref(&r), &WalkOptions::default());
        assert!(got.problems.is_empty(), "{:?}", got.problems);
        assert_eq!(got.sources, expected);

        let link = d.path().join("link");
        std::os::unix::fs::symlink(&r, &link).unwrap();
        let both = find_sources(&[link.clone(), r.clone()], &WalkOptions::default());
        assert_eq!(both.sources.len(), n);
        assert!(both.sources.iter().all(|p| p.starts_with(&link)));

        // Unreadable directory (only meaningful when not running as root).
        let locked = r.join("a/n");
        fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
        let partial = find_sources(std::slice::from_ref(&r), &WalkOptions::default());
        fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(partial.sources, expected);
        } else {
            assert_eq!(partial.problems.len(), 1);
            assert_eq!(partial.problems[0].path, locked);
            assert_eq!(partial.sources.len(), n - 3);
        }
    }

    #[test]
    fn target_paths() {
        let rules = PycRules {
            version: (3, 12),
            magic: [1, 2, 3, 4],
            cache_tag: Some("cpython-312".into()),
        };
        let layout = Layout::Pycache {
            prefix: None,
            cwd: "/w".into(),
        };
        let t = targets(&["p/m.py".into()], &rules, &[0, 2], &layout).unwrap();
        assert_eq!(t[0].cfile, Path::new("p/__pycache__/m.cpython-312.pyc"));
        assert_eq!(
            t[1].cfile,
            Path::new("p/__pycache__/m.cpython-312.opt-2.pyc")
        );
        let t = targets(&["p/m.py".into()], &rules, &[0], &Layout::Legacy).unwrap();
        assert_eq!(t[0].cfile, Path::new("p/m.pyc"));
        let tagless = PycRules {
            cache_tag: None,
            ..rules
        };
        assert!(targets(&["m.py".into()], &tagless, &[0], &layout).is_none());
    }
}
