//! `kolosal clean [PATH...] [--legacy] [--orphans] [--dry-run] [-v]`:
//! removes pycs under trees (default: the current directory).
//!
//! What goes, for every interpreter at once (no interpreter is started):
//! * `__pycache__/<name>.<tag>[.opt-N].pyc` whose source `<name>.py` exists
//!   beside the `__pycache__` directory (any cache tag, any level);
//! * with `--orphans`, also such pycs whose source is gone;
//! * with `--legacy`, also `x.pyc` beside an existing `x.py`. A legacy pyc
//!   without its source is a sourceless module and is never removed;
//! * `__pycache__` directories left empty.
//!
//! Other files in `__pycache__` (names CPython would not map back to a
//! source, temporary files, sub-directories) are left alone, and so is their
//! directory. Symlinks are never followed: a symlinked directory (including a
//! symlinked `__pycache__`) is not entered; a symlink named like a pyc is
//! removed itself, never its target. Roots given as symlinks are followed.
//!
//! Output (stdout): with `--dry-run` or `-v` one line per removed path, then
//! `removed N pycs (B bytes), D __pycache__ dirs` (`would remove ...` with
//! `--dry-run`), plus `kept N orphaned pycs (--orphans removes them)` when
//! some were kept. Errors go to stderr, one line each; exit code 1 when any
//! occurred.

use clap::Args;
use kolosal::pyc::{source_from_cache, PycRules};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Arguments of `kolosal clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Trees or files to clean (default: the current directory).
    pub paths: Vec<PathBuf>,
    /// Also remove legacy `x.pyc` files that sit beside their `x.py`.
    #[arg(long)]
    pub legacy: bool,
    /// Also remove `__pycache__` pycs whose source no longer exists.
    #[arg(long)]
    pub orphans: bool,
    /// Show what would be removed; remove nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// List every removed file.
    #[arg(long, short, conflicts_with = "quiet")]
    pub verbose: bool,
    /// No summary lines; errors are still listed on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print one JSON object on stdout (keys: [`json_report`]); errors are
    /// in it instead of on stderr.
    #[arg(long)]
    pub json: bool,
}

/// What to remove (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct CleanOptions {
    /// Remove legacy pycs beside their sources.
    pub legacy: bool,
    /// Remove `__pycache__` pycs without a source.
    pub orphans: bool,
    /// Decide, count and list, but remove nothing.
    pub dry_run: bool,
}

/// What [`clean`] did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Pyc files removed (or to be removed), in walk order.
    pub removed: Vec<PathBuf>,
    /// Their total size in bytes (`lstat` sizes).
    pub removed_bytes: u64,
    /// `__pycache__` directories removed because they became empty.
    pub removed_dirs: Vec<PathBuf>,
    /// `__pycache__` pycs kept because their source is gone and `orphans`
    /// was not asked.
    pub kept_orphans: u64,
    /// One line per failure (`path: what went wrong`).
    pub errors: Vec<String>,
}

/// Removes pycs under `roots` as the module documentation describes.
/// Never fails as a whole: problems are collected in the report.
pub fn clean(roots: &[PathBuf], opts: &CleanOptions) -> CleanReport {
    let mut report = CleanReport::default();
    for root in roots {
        if std::fs::metadata(root).is_err() {
            report
                .errors
                .push(format!("{}: no such file or directory", root.display()));
            continue;
        }
        let mut it = walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = it.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let p = e.path().unwrap_or(root).display().to_string();
                    report
                        .errors
                        .push(format!("{p}: cannot list directory: {e}"));
                    continue;
                }
            };
            let ft = entry.file_type();
            if ft.is_dir() && entry.file_name() == "__pycache__" {
                it.skip_current_dir();
                clean_pycache(entry.path(), opts, &mut report);
            } else if opts.legacy && !ft.is_dir() {
                clean_legacy(entry.path(), opts, &mut report);
            }
        }
    }
    report
}

/// Rules used only to map pyc names back to sources: `source_from_cache`
/// needs *a* cache tag but never compares it, so any interpreter's pycs map.
fn any_tag_rules() -> PycRules {
    PycRules {
        version: (3, 7),
        magic: [0; 4],
        cache_tag: Some(String::new()),
    }
}

fn clean_pycache(dir: &Path, opts: &CleanOptions, report: &mut CleanReport) {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            report
                .errors
                .push(format!("{}: cannot list directory: {e}", dir.display()));
            return;
        }
    };
    let rules = any_tag_rules();
    let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    let mut kept_any = false;
    let mut refused: Option<(std::io::Error, usize)> = None;
    for pyc in &names {
        let meta = match std::fs::symlink_metadata(pyc) {
            Ok(m) => m,
            Err(_) => continue,
        };
        let is_pyc = !meta.is_dir() && pyc.as_os_str().as_bytes().ends_with(b".pyc");
        // mirrors importlib.util.source_from_cache (any cache tag)
        let source = is_pyc
            .then(|| source_from_cache(pyc, &rules, None))
            .flatten();
        let Some(source) = source else {
            kept_any = true;
            continue;
        };
        if !source.exists() && !opts.orphans {
            report.kept_orphans += 1;
            kept_any = true;
            continue;
        }
        // Once the directory refuses one removal it refuses them all:
        // one line for it, not one per pyc.
        if let Some((_, n)) = &mut refused {
            *n += 1;
            kept_any = true;
            continue;
        }
        if let Err(e) = remove(pyc, meta.len(), opts, report) {
            kept_any = true;
            if matches!(
                e.raw_os_error(),
                Some(libc::EACCES | libc::EPERM | libc::EROFS)
            ) {
                refused = Some((e, 1));
            } else {
                report.errors.push(format!("{}: {e}", pyc.display()));
            }
        }
    }
    if let Some((e, n)) = refused {
        report.errors.push(format!(
            "{}: cannot remove pycs there ({e}); {n} pyc(s) kept",
            dir.display()
        ));
    }
    if !kept_any {
        if opts.dry_run {
            report.removed_dirs.push(dir.to_path_buf());
        } else {
            match std::fs::remove_dir(dir) {
                Ok(()) => report.removed_dirs.push(dir.to_path_buf()),
                // Something appeared meanwhile: leave the directory.
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                Err(e) => report.errors.push(format!("{}: {e}", dir.display())),
            }
        }
    }
}

// mirrors the legacy layout of compileall -b: `x.pyc` = source + "c"
fn clean_legacy(path: &Path, opts: &CleanOptions, report: &mut CleanReport) {
    let bytes = path.as_os_str().as_bytes();
    let Some(stem) = bytes.strip_suffix(b"c") else {
        return;
    };
    if !bytes.ends_with(b".pyc") {
        return;
    }
    let source = Path::new(std::ffi::OsStr::from_bytes(stem));
    if !source.exists() {
        return; // a sourceless module: never removed
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if let Err(e) = remove(path, meta.len(), opts, report) {
            report.errors.push(format!("{}: {e}", path.display()));
        }
    }
}

/// Removes one pyc (unless a dry run) and records it; the caller reports
/// a failure.
fn remove(
    path: &Path,
    len: u64,
    opts: &CleanOptions,
    report: &mut CleanReport,
) -> std::io::Result<()> {
    if !opts.dry_run {
        std::fs::remove_file(path)?;
    }
    report.removed.push(path.to_path_buf());
    report.removed_bytes += len;
    Ok(())
}

/// Runs `kolosal clean`; returns the process exit code.
pub fn run(args: CleanArgs) -> anyhow::Result<i32> {
    let roots = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let opts = CleanOptions {
        legacy: args.legacy,
        orphans: args.orphans,
        dry_run: args.dry_run,
    };
    let report = clean(&roots, &opts);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_report(&report, &opts))?
        );
        return Ok(if report.errors.is_empty() { 0 } else { 1 });
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    // The dry run's list is its result (stdout); -v lines go to stderr, as
    // every subcommand's.
    for p in report.removed.iter().chain(&report.removed_dirs) {
        if args.dry_run {
            writeln!(out, "{verb} {}", p.display())?;
        } else if args.verbose {
            eprintln!("{verb} {}", p.display());
        }
    }
    for e in &report.errors {
        super::error_line(e);
    }
    if args.quiet {
        return Ok(if report.errors.is_empty() { 0 } else { 1 });
    }
    writeln!(
        out,
        "{verb} {} pycs ({} bytes), {} __pycache__ dirs",
        report.removed.len(),
        report.removed_bytes,
        report.removed_dirs.len()
    )?;
    if report.kept_orphans > 0 {
        writeln!(
            out,
            "kept {} orphaned pycs (--orphans removes them)",
            report.kept_orphans
        )?;
    }
    Ok(if report.errors.is_empty() { 0 } else { 1 })
}

/// `kolosal clean --json`: one object, `"schema": 1` (keys are only ever
/// added): `dry_run`; `removed` (pyc paths, walk order) and `removed_bytes`;
/// `removed_dirs` (emptied `__pycache__` directories); `kept_orphans`;
/// `errors` (one line each). With `dry_run`, "removed" means "would remove".
fn json_report(report: &CleanReport, opts: &CleanOptions) -> serde_json::Value {
    let lossy = |v: &[PathBuf]| -> Vec<String> {
        v.iter().map(|p| p.to_string_lossy().into_owned()).collect()
    };
    serde_json::json!({
        "schema": 1,
        "dry_run": opts.dry_run,
        "removed": lossy(&report.removed),
        "removed_bytes": report.removed_bytes,
        "removed_dirs": lossy(&report.removed_dirs),
        "kept_orphans": report.kept_orphans,
        "errors": report.errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn what_goes_and_what_stays() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let files = [
            ("a.py", "x"),
            ("__pycache__/a.cpython-312.pyc", "12345"),
            ("__pycache__/a.cpython-38.opt-2.pyc", "123"),
            ("__pycache__/gone.cpython-312.pyc", "1"),
            ("__pycache__/notes.txt", "keep"),
            ("pkg/m.py", ""),
            ("pkg/m.pyc", "legacy"),
            ("pkg/sourceless.pyc", "module"),
            ("pkg/__pycache__/m.cpython-312.pyc", "1"),
        ];
        for (f, body) in files {
            let p = r.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, body).unwrap();
        }
        // A symlinked __pycache__ pointing out of the tree is not entered.
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("x.cpython-312.pyc"), "o").unwrap();
        fs::create_dir(r.join("ext")).unwrap();
        fs::write(r.join("ext/x.py"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("ext/__pycache__")).unwrap();

        let dry = clean(
            &[r.to_path_buf()],
            &CleanOptions {
                dry_run: true,
                ..Default::default()
            },
        );
        assert_eq!(dry.removed.len(), 3);
        assert_eq!(dry.removed_bytes, 9);
        assert_eq!(dry.kept_orphans, 1);
        assert_eq!(dry.removed_dirs, [r.join("pkg/__pycache__")]);
        assert!(r.join("pkg/__pycache__/m.cpython-312.pyc").exists());

        let all = clean(
            &[r.to_path_buf()],
            &CleanOptions {
                legacy: true,
                orphans: true,
                dry_run: false,
            },
        );
        assert!(all.errors.is_empty(), "{:?}", all.errors);
        assert_eq!(all.removed.len(), 5);
        assert!(!r.join("__pycache__/a.cpython-312.pyc").exists());
        assert!(r.join("__pycache__/notes.txt").exists());
        assert!(!r.join("pkg/__pycache__").exists());
        assert!(!r.join("pkg/m.pyc").exists());
        assert!(r.join("pkg/sourceless.pyc").exists());
        assert!(outside.path().join("x.cpython-312.pyc").exists());
    }
}
