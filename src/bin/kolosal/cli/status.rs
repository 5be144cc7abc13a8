//! `kolosal status [PATH... | --entry SCRIPT | -m MODULE] [--python P]
//! [-o LEVEL...] [--json]`: for each
//! optimisation level, how many of the pycs the target interpreter would
//! look for are fresh, stale (by reason), missing, and how many pycs in
//! `__pycache__` directories are orphaned (this interpreter's cache tag and
//! level, source gone). Sources are selected as `kolosal compile` selects
//! them (same `-x` and `-r` options), or, with `--entry`/`-m`, exactly the
//! pycs `kolosal-python` would make fresh for that entry (its closure, as
//! `kolosal compile --entry` compiles it); verdicts are the source loader's
//! (`SourceLoader.get_code` under `--check-hash-based-pycs`, default
//! `default`). No interpreter process is started when its probe is cached.
//!
//! `--json` prints one object:
//!
//! * `schema`: 1 (keys are only ever added);
//! * `python`: the interpreter's path; `version`: "3.12.1"; `cache_tag`;
//! * `roots`: the walked paths (empty with `--entry`/`-m`, which also count
//!   no orphans); `sources`: number of `.py` files found;
//! * `check_hash_based_pycs`: the mode the verdicts assume;
//! * `levels`: one object per level, in increasing order, with
//!   `optimize` (the level), `fresh` and `fresh_bytes`, `stale` (pycs that
//!   exist but would be rejected), `stale_bytes`, `stale_reasons` (object:
//!   reason name → count; names as [`kolosal::pyc::StaleReason::as_str`], e.g.
//!   `mtime`, `size`, `hash`, `bad-magic`), `missing` (no pyc), `orphaned`
//!   and `orphaned_bytes`;
//! * `problems`: list of strings, paths that could not be read;
//! * with `--entry`/`-m` only, `modules`: one object per closure module
//!   whose pyc importlib reads, in closure order: `name`, `source`,
//!   `closure_origin` (`{"kind": "static" | "lazy"}` or `{"kind":
//!   "learned", "how": "run" | "trace"}`, as `kolosal closure --json`) and
//!   `levels`: per level `{"optimize", "state": "fresh" | "stale" |
//!   "missing", "reason"}` (reason only when stale).
//!
//! Text output with `--entry`/`-m` adds, per level, the counts by origin
//! (`by origin: static 120/130 fresh, lazy 40/50 fresh`); `--modules` lists
//! every module as `ORIGIN STATE NAME SOURCE` (one line per level).
//!
//! Each PATH is inspected for the interpreter that owns it (the venv or
//! installed prefix it is in, as `kolosal compile`) unless `--python` is
//! given; trees of several interpreters are reported one after the other
//! (with `--json`: `{"schema": 1, "interpreters": [...]}`).
//!
//! Exit code: 0, or 1 when some path could not be read, or with `--check`
//! when some pyc is stale or missing (each listed on stderr).

use crate::cli::compile::{
    closure_sources, exclude_regex, levels, roots, target_python, ClosureSource,
};
use clap::Args;
use kolosal::closure::{Entry, Origin};
use kolosal::compile::plan::{self, Layout, Walk, WalkOptions};
use kolosal::freshness;
use kolosal::pyc::{source_from_cache, HashCheckMode, PycRules, StaleReason, Verdict};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Arguments of `kolosal status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Trees or `.py` files to inspect (default: the current directory).
    /// Each is inspected for the interpreter that owns it (the venv or
    /// installed prefix it is in) unless --python is given.
    pub paths: Vec<PathBuf>,
    /// The interpreter whose pycs are inspected (else the one owning each
    /// path, else discovery, as kolosal-python).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Optimisation level; repeatable (default: 0).
    // the same range as `kolosal compile -o` (builtin compile()'s levels)
    #[arg(short = 'o', long = "optimize", value_name = "LEVEL",
          value_parser = clap::value_parser!(u32).range(0..=2))]
    pub optimize: Vec<u32>,
    /// Judge hash-based pycs as `python --check-hash-based-pycs MODE` would.
    #[arg(long, value_name = "MODE", default_value = "default", value_parser = parse_check)]
    pub check_hash_based_pycs: HashCheckMode,
    /// Skip files whose path contains a match of REGEX (as compile -x).
    #[arg(short = 'x', long, value_name = "REGEX")]
    pub exclude: Vec<String>,
    /// Directory levels to enter below each path (as compile -r).
    #[arg(short = 'r', long, value_name = "N")]
    pub max_depth: Option<usize>,
    /// For CI: exit 1 when any pyc is stale or missing, after listing each
    /// one on stderr (`kolosal: error: stale (mtime): PYC`, `kolosal:
    /// error: missing: PYC (for SOURCE)`).
    #[arg(long)]
    pub check: bool,
    /// Print one JSON object (keys in the documentation).
    #[arg(long)]
    pub json: bool,
    /// Inspect exactly the pycs `kolosal-python SCRIPT` would use (the
    /// script's import closure, start-up modules included) instead of trees.
    #[arg(long, value_name = "SCRIPT", conflicts_with_all = ["module", "paths"])]
    pub entry: Option<PathBuf>,
    /// As --entry, for `kolosal-python -m MODULE`.
    #[arg(short = 'm', long, value_name = "MODULE", conflicts_with = "paths")]
    pub module: Option<String>,
    /// With --entry/-m: list every module with its origin and pyc state.
    #[arg(long)]
    pub modules: bool,
}

fn parse_check(s: &str) -> Result<HashCheckMode, String> {
    HashCheckMode::parse(s).ok_or_else(|| format!("'{s}' is not one of default, always, never"))
}

/// Counts for one optimisation level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LevelStats {
    /// The level.
    pub optimize: u32,
    /// Pycs the loader would use.
    pub fresh: u64,
    /// Their total size.
    pub fresh_bytes: u64,
    /// Pycs present but rejected.
    pub stale: u64,
    /// Their total size.
    pub stale_bytes: u64,
    /// Rejections by reason.
    pub stale_reasons: BTreeMap<String, u64>,
    /// Sources without a pyc.
    pub missing: u64,
    /// Pycs of this tag and level in `__pycache__` whose source is gone.
    pub orphaned: u64,
    /// Their total size.
    pub orphaned_bytes: u64,
}

/// What `kolosal status` reports (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Number of sources found.
    pub sources: u64,
    /// One entry per level, increasing.
    pub levels: Vec<LevelStats>,
    /// Paths that could not be read.
    pub problems: Vec<String>,
    /// One line per pyc that is stale or missing (`--check` lists them).
    #[serde(skip)]
    pub not_fresh: Vec<String>,
}

/// Collects the statistics for `sources` (found by [`plan::find_sources`]
/// under `roots`) at each of `levels` (sorted), pycs placed by `layout`.
/// Orphans are looked for in the `__pycache__` directories under `roots`
/// (never through symlinked directories), not in a pycache-prefix tree.
pub fn stats(
    walk: &Walk,
    orphan_roots: &[PathBuf],
    rules: &PycRules,
    layout: &Layout,
    levels: &[u32],
    mode: HashCheckMode,
) -> Stats {
    let mut out = Stats {
        sources: walk.sources.len() as u64,
        problems: walk.problems.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    };
    let targets = plan::targets(&walk.sources, rules, levels, layout).unwrap_or_default();
    let verdicts = freshness::check_all(&targets, rules, mode);
    let sizes = freshness::par_map(&targets, |t| {
        std::fs::metadata(&t.cfile).map_or(0, |m| m.len())
    });
    let mut per: BTreeMap<u32, LevelStats> = levels
        .iter()
        .map(|&l| {
            (
                l,
                LevelStats {
                    optimize: l,
                    ..Default::default()
                },
            )
        })
        .collect();
    for ((t, v), size) in targets.iter().zip(verdicts).zip(sizes) {
        let Some(s) = per.get_mut(&t.optimize) else {
            continue;
        };
        match v {
            Verdict::Fresh => {
                s.fresh += 1;
                s.fresh_bytes += size;
            }
            Verdict::Stale(StaleReason::Missing) => {
                s.missing += 1;
                out.not_fresh.push(format!(
                    "missing: {} (for {})",
                    t.cfile.display(),
                    t.source.display()
                ));
            }
            Verdict::Stale(r) => {
                out.not_fresh
                    .push(format!("stale ({}): {}", r.as_str(), t.cfile.display()));
                s.stale += 1;
                s.stale_bytes += size;
                *s.stale_reasons.entry(r.as_str().to_string()).or_default() += 1;
            }
        }
    }
    if matches!(layout, Layout::Pycache { .. }) {
        for (level, size) in orphans(orphan_roots, rules) {
            if let Some(s) = per.get_mut(&level) {
                s.orphaned += 1;
                s.orphaned_bytes += size;
            }
        }
    }
    out.levels = per.into_values().collect();
    out
}

/// (level, size) of every pyc with this interpreter's cache tag, in a
/// `__pycache__` under `roots`, whose source does not exist.
fn orphans(roots: &[PathBuf], rules: &PycRules) -> Vec<(u32, u64)> {
    let Some(tag) = rules.cache_tag.as_deref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for root in roots {
        let mut it = walkdir::WalkDir::new(root).follow_links(false).into_iter();
        while let Some(Ok(entry)) = it.next() {
            if !(entry.file_type().is_dir() && entry.file_name() == "__pycache__") {
                continue;
            }
            it.skip_current_dir();
            let Ok(rd) = std::fs::read_dir(entry.path()) else {
                continue;
            };
            for e in rd.flatten() {
                let path = e.path();
                let Some(level) = pyc_level(&path, tag) else {
                    continue;
                };
                // mirrors importlib.util.source_from_cache
                let Some(source) = source_from_cache(&path, rules, None) else {
                    continue;
                };
                if !source.exists() {
                    let size = e.metadata().map_or(0, |m| m.len());
                    out.push((level, size));
                }
            }
        }
    }
    out
}

/// The level of a `<name>.<tag>[.opt-N].pyc` file name with exactly this
/// tag; `None` for other tags and other names.
// mirrors the name cache_from_source builds (see pyc::cache_from_source)
pub(crate) fn pyc_level(path: &Path, tag: &str) -> Option<u32> {
    let name = path.file_name()?.as_bytes();
    let dot = memchr::memchr(b'.', name)?;
    let rest = name[dot + 1..].strip_prefix(tag.as_bytes())?;
    if rest == b".pyc" {
        return Some(0);
    }
    let n = rest.strip_prefix(b".opt-")?.strip_suffix(b".pyc")?;
    let level: u32 = std::str::from_utf8(n).ok()?.parse().ok()?;
    // Only the spelling importlib looks for: no "opt-0", no "opt-02".
    (level != 0 && level.to_string().as_bytes() == n).then_some(level)
}

/// Runs `kolosal status`; returns the process exit code.
pub fn run(args: StatusArgs) -> anyhow::Result<i32> {
    let entry_or_module = args.entry.is_some() || args.module.is_some();
    let groups = super::groups_for(entry_or_module, &args.paths, args.python.as_deref());
    let (code, docs) = super::for_each_group(&groups, |g| run_group(&args, g))?;
    if args.json {
        let doc = super::combined_json(docs, serde_json::Map::new());
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(code)
}

/// `kolosal status` for the paths of one interpreter: the exit code and,
/// with `--json`, its document.
fn run_group(
    args: &StatusArgs,
    group: &super::OwnedPaths,
) -> anyhow::Result<(i32, Option<serde_json::Value>)> {
    let target = target_python(group.python.clone(), args.entry.as_deref())?;
    let levels = levels(&args.optimize);
    let exclude = exclude_regex(&args.exclude)?;
    let cwd = std::env::current_dir()?;
    let entry = match (&args.entry, &args.module) {
        (Some(script), _) => Some(Entry::Script(script.clone())),
        (None, Some(module)) => Some(Entry::Module(module.clone())),
        (None, None) => None,
    };
    // A closure has no tree of its own, so it has no orphans to count.
    let mut modules = None;
    let (walk, roots) = match entry {
        Some(entry) => {
            let (walk, m) = closure_sources(&target.facts, entry, &cwd, exclude.as_ref())?;
            modules = Some(m);
            (walk, Vec::new())
        }
        None => {
            let (roots, prune) = roots(&group.paths, &target.facts, false, false);
            let opts = WalkOptions {
                exclude,
                max_depth: args.max_depth,
                prune,
            };
            (plan::find_sources(&roots, &opts), roots)
        }
    };
    let layout = Layout::Pycache {
        prefix: target.facts.pycache_prefix.clone(),
        cwd,
    };
    let s = stats(
        &walk,
        &roots,
        &target.rules,
        &layout,
        &levels,
        args.check_hash_based_pycs,
    );
    let per_module = modules.as_ref().map(|m| {
        module_states(
            &walk,
            m,
            &target.rules,
            &layout,
            &levels,
            args.check_hash_based_pycs,
        )
    });
    let v = target.facts.version;
    let version = format!("{}.{}.{}", v[0], v[1], v[2]);
    if args.json {
        let doc = serde_json::json!({
            "schema": 1,
            "python": target.path.display().to_string(),
            "version": version,
            "cache_tag": target.rules.cache_tag,
            "roots": roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>(),
            "sources": s.sources,
            "check_hash_based_pycs": args.check_hash_based_pycs.as_str(),
            "levels": s.levels,
            "problems": s.problems,
        });
        let mut doc = doc;
        if let Some(per) = &per_module {
            doc["modules"] = per
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "name": m.name,
                        "source": m.source.display().to_string(),
                        "closure_origin": crate::cli::closure::origin_json(m.origin),
                        "levels": m.levels.iter().map(|(l, v)| serde_json::json!({
                            "optimize": l,
                            "state": state_word(v),
                            "reason": match v {
                                Verdict::Stale(r) if *r != StaleReason::Missing => Some(r.as_str()),
                                _ => None,
                            },
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
        }
        if args.check {
            doc["not_fresh"] = s.not_fresh.clone().into();
        }
        return Ok((exit_code(args, &s), Some(doc)));
    } else {
        println!(
            "python: {} ({version}, {})",
            target.path.display(),
            target.rules.cache_tag.as_deref().unwrap_or("no cache tag")
        );
        println!("sources: {}", s.sources);
        for l in &s.levels {
            let reasons: Vec<String> = l
                .stale_reasons
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let reasons = if reasons.is_empty() {
                String::new()
            } else {
                format!(" [{}]", reasons.join(", "))
            };
            println!(
                "-o {}: fresh {} ({} bytes), stale {} ({} bytes){reasons}, missing {}, orphaned {} ({} bytes)",
                l.optimize,
                l.fresh,
                l.fresh_bytes,
                l.stale,
                l.stale_bytes,
                l.missing,
                l.orphaned,
                l.orphaned_bytes
            );
            if let Some(per) = &per_module {
                println!(
                    "-o {}: by origin: {}",
                    l.optimize,
                    by_origin(per, l.optimize)
                );
            }
        }
        if let (true, Some(per)) = (args.modules, &per_module) {
            for m in per {
                for (l, v) in &m.levels {
                    println!(
                        "{:<14} {:<8} -o {l} {:<40} {}",
                        m.origin.label(),
                        state_word(v),
                        m.name,
                        m.source.display()
                    );
                }
            }
        }
        for p in &s.problems {
            super::error_line(p);
        }
    }
    if args.check {
        for line in &s.not_fresh {
            super::error_line(line);
        }
    }
    Ok((exit_code(args, &s), None))
}

/// 1 when a path could not be read or, with `--check`, a pyc is not fresh.
fn exit_code(args: &StatusArgs, s: &Stats) -> i32 {
    let not_fresh = args.check && !s.not_fresh.is_empty();
    i32::from(!s.problems.is_empty() || not_fresh)
}

/// One closure module's pyc verdict at each level.
struct ModuleState {
    name: String,
    source: PathBuf,
    origin: Origin,
    levels: Vec<(u32, Verdict)>,
}

/// The verdict of every (module, level) of an entry's closure.
fn module_states(
    walk: &Walk,
    modules: &[ClosureSource],
    rules: &PycRules,
    layout: &Layout,
    levels: &[u32],
    mode: HashCheckMode,
) -> Vec<ModuleState> {
    let targets = plan::targets(&walk.sources, rules, levels, layout).unwrap_or_default();
    let verdicts = freshness::check_all(&targets, rules, mode);
    let mut by_source: HashMap<&Path, Vec<(u32, Verdict)>> = HashMap::new();
    for (t, v) in targets.iter().zip(verdicts) {
        by_source
            .entry(&t.source)
            .or_default()
            .push((t.optimize, v));
    }
    walk.sources
        .iter()
        .zip(modules)
        .map(|(src, m)| ModuleState {
            name: m.name.clone(),
            source: src.clone(),
            origin: m.origin,
            levels: by_source.remove(src.as_path()).unwrap_or_default(),
        })
        .collect()
}

fn state_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Fresh => "fresh",
        Verdict::Stale(StaleReason::Missing) => "missing",
        Verdict::Stale(_) => "stale",
    }
}

/// `static 120/130 fresh, lazy 40/50 fresh` for one level.
fn by_origin(per: &[ModuleState], level: u32) -> String {
    let mut counts: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for m in per {
        for (l, v) in &m.levels {
            if *l == level {
                let c = counts.entry(m.origin.label()).or_default();
                c.1 += 1;
                if v.is_fresh() {
                    c.0 += 1;
                }
            }
        }
    }
    counts
        .iter()
        .map(|(k, (f, n))| format!("{k} {f}/{n} fresh"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_from_name() {
        let l = |n: &str| pyc_level(Path::new(n), "cpython-312");
        assert_eq!(l("a/__pycache__/m.cpython-312.pyc"), Some(0));
        assert_eq!(l("m.cpython-312.opt-2.pyc"), Some(2));
        assert_eq!(l("m.cpython-311.pyc"), None);
        assert_eq!(l("m.cpython-312.opt-x.pyc"), None);
        assert_eq!(l("m.cpython-312.opt-0.pyc"), None);
        assert_eq!(l("m.cpython-312.opt-02.pyc"), None);
        assert_eq!(l("m.pyc"), None);
    }
}
