//! `kolosal compile [PATH...]`: compileall's job, with freshness decided in
//! Rust (a fresh tree never starts Python) and a pool of target-interpreter
//! workers for the stale files.
//!
//! With `--entry SCRIPT` or `-m MODULE`, the sources are instead those of
//! the entry's import closure whose pycs importlib reads
//! ([`closure_sources`]): exactly what `kolosal-python` would check.
//!
//! Pipeline: [`plan::find_sources`] (compileall's selection; symlinked
//! directories are not entered) → [`plan::targets`] (one pyc per source and
//! `-o` level) → [`plan::plan`] (stale = the loader would reject the pyc, or
//! it was written in another invalidation mode) → [`compile::compile_all`]
//! → optional `--hardlink-dupes` and `--remove-source` steps.
//!
//! Interpreter: `--python`, else for each PATH the interpreter that owns
//! it ([`super::owner_python`]: a venv above it, or the installed prefix
//! holding it), else discovery as `kolosal-python`. Paths of several
//! interpreters are compiled one interpreter after the other, each with
//! its own summary line.
//!
//! compileall's `-d`/`-s`/`-p` change the name recorded in the pycs; those
//! jobs go through `py_compile.compile(dfile=...)` (`compile_recorded`)
//! instead of the pool, whose workers record the source path.
//!
//! Output: failures on stderr, one line each, `kolosal: error: ` then
//! `path:line: message` for syntax errors; a directory where no pyc can be
//! written is one line for all its files (`UnwritableDirs`). Then, unless
//! `-q`, the summary line `compiled N, fresh N, failed N in X.XXs (TAG,
//! PYTHON)` on stderr, where N counts pycs (a source compiled at three
//! levels counts three), and `failed` also counts trees that could not be
//! read. `-qq` prints nothing. `-v` lists each written pyc with the reason
//! it was stale. stdout is only used by `--json`. A progress bar is drawn
//! when stderr is a terminal and `-q`/`-v` are not given.
//!
//! Exit code: 0; 1 when anything failed; 2 when nothing could be done at all
//! (bad options, no interpreter, no worker could start).
//!
//! `--trace -- COMMAND` runs the command once and compiles what it loaded
//! ([`super::trace`]); its exit code is the command's when that failed.

use anyhow::{anyhow, bail, Context};
use clap::Args;
use kolosal::closure::{compute_persisted, ClosureOptions, Entry, Origin};
use kolosal::compile::plan::{self, Layout, Target, Walk, WalkOptions, WalkProblem};
use kolosal::compile::{self, CompileJob, Outcome, PoolConfig};
use kolosal::freshness::Freshness;
use kolosal::interpreter::{facts_for, ProbeConfig, PythonFacts};
use kolosal::pyc::{self, HashCheckMode, InvalidationMode, PycRules};
use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `kolosal compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Trees or `.py` files to compile (default: the current directory,
    /// unless --stdlib, --site-packages or -i is given; compileall's default
    /// is every sys.path entry, which --stdlib --site-packages covers
    /// without the working directory). Each path is compiled for the
    /// interpreter that owns it (the venv or installed prefix it is in)
    /// unless --python is given.
    pub paths: Vec<PathBuf>,
    /// Compile every file, fresh or not.
    #[arg(short, long)]
    pub force: bool,
    /// Worker processes (0: chosen from the amount of work and the cores).
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0)]
    pub workers: usize,
    /// No summary line, no progress bar; failures are still listed. Twice
    /// (`-qq`, as compileall): nothing at all, only the exit code.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    /// List every pyc written, with the reason it was stale.
    #[arg(short, long)]
    pub verbose: bool,
    /// Skip files whose path contains a match of REGEX (compileall -x).
    /// Repeatable: any match excludes. Rust regex syntax, which is Python
    /// `re` syntax without lookaround and backreferences: such a pattern
    /// is refused with an error, never silently read another way.
    #[arg(short = 'x', long, value_name = "REGEX")]
    pub exclude: Vec<String>,
    /// Directory levels to enter below each path (compileall -r; 0: only
    /// the files directly in it).
    #[arg(short = 'r', long, value_name = "N")]
    pub max_depth: Option<usize>,
    /// Optimisation level; repeat to write several levels in one pass
    /// (default: 0, the level of an interpreter run without -O). 0, 1 or 2:
    /// compile() rejects any other level.
    // mirrors builtin compile()'s "invalid optimize value" (-1 means "the
    // interpreter's own level", which a pyc name cannot say)
    #[arg(short = 'o', long = "optimize", value_name = "LEVEL",
          value_parser = clap::value_parser!(u32).range(0..=2))]
    pub optimize: Vec<u32>,
    /// timestamp, checked-hash or unchecked-hash (default as py_compile:
    /// checked-hash when SOURCE_DATE_EPOCH is set, else timestamp).
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub invalidation_mode: Option<InvalidationMode>,
    /// Write x.pyc beside x.py (the sourceless layout) instead of __pycache__.
    #[arg(short = 'b', long)]
    pub legacy: bool,
    /// With --legacy: delete each .py once its pyc is written and verified.
    #[arg(long, requires = "legacy")]
    pub remove_source: bool,
    /// compileall -d: the directory recorded in the pycs (their
    /// `co_filename`, shown in tracebacks) instead of each tree given: a
    /// source at TREE/a/b.py is recorded as DESTDIR/a/b.py.
    #[arg(short = 'd', value_name = "DESTDIR", conflicts_with_all = ["stripdir", "prependdir", "entry", "module"])]
    pub ddir: Option<PathBuf>,
    /// compileall -s: the leading part of each source path to leave out of
    /// the name recorded in its pyc (ignored for a source it does not
    /// prefix).
    #[arg(short = 's', value_name = "STRIPDIR", conflicts_with_all = ["entry", "module"])]
    pub stripdir: Option<PathBuf>,
    /// compileall -p: a directory put in front of the name recorded in each
    /// pyc (after -s).
    #[arg(short = 'p', value_name = "PREPENDDIR", conflicts_with_all = ["entry", "module"])]
    pub prependdir: Option<PathBuf>,
    /// compileall -i: also compile the files and trees listed in FILE, one
    /// per line ("-": standard input).
    #[arg(short = 'i', value_name = "FILE", conflicts_with_all = ["entry", "module"])]
    pub file_list: Option<PathBuf>,
    /// compileall -e: skip source files that are symlinks pointing outside
    /// DIR.
    #[arg(short = 'e', value_name = "DIR")]
    pub limit_sl_dest: Option<PathBuf>,
    /// Hard-link pycs that are identical across consecutive -o levels.
    #[arg(long)]
    pub hardlink_dupes: bool,
    /// The interpreter to compile for (else KOLOSAL_PYTHON, VIRTUAL_ENV,
    /// .venv, PATH — as kolosal-python chooses).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Also compile the interpreter's standard library.
    #[arg(long)]
    pub stdlib: bool,
    /// Also compile the interpreter's site-packages.
    #[arg(long)]
    pub site_packages: bool,
    /// Compile exactly the modules whose pycs `kolosal-python SCRIPT` would
    /// use: the script's import closure, start-up modules included (the
    /// script's own pyc is never used, so it is not compiled).
    #[arg(long, value_name = "SCRIPT", conflicts_with_all = ["module", "paths", "stdlib", "site_packages", "legacy"])]
    pub entry: Option<PathBuf>,
    /// As --entry, for `kolosal-python -m MODULE` (the module's own pyc is
    /// used, so it is compiled).
    #[arg(short = 'm', long, value_name = "MODULE", conflicts_with_all = ["paths", "stdlib", "site_packages", "legacy"])]
    pub module: Option<String>,
    /// Run COMMAND (given after `--`) once and compile every source module
    /// it loaded, plus their static closures, for the interpreter(s) and
    /// -O level(s) it ran (see `kolosal compile --trace -- python app.py`).
    /// Exits with the command's status when it failed.
    #[arg(long, requires = "command", conflicts_with_all = ["entry", "module", "paths", "stdlib", "site_packages", "legacy", "remove_source", "hardlink_dupes"])]
    pub trace: bool,
    /// With --trace, the command line to trace; without it, what follows
    /// `--` is more paths (`kolosal compile -- -odd-name/`, as compileall).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
    /// Print one JSON object on stdout instead of the stderr summary and
    /// failure lines (keys: [`json_report`]).
    #[arg(long)]
    pub json: bool,
}

fn parse_mode(s: &str) -> Result<InvalidationMode, String> {
    InvalidationMode::parse(s)
        .ok_or_else(|| format!("'{s}' is not one of timestamp, checked-hash, unchecked-hash"))
}

/// The interpreter a subcommand works for, with its probed facts.
#[derive(Debug, Clone)]
pub struct TargetPython {
    /// The path to run (symlinks kept).
    pub path: PathBuf,
    /// Why it was chosen (discovery's one-line detail).
    pub why: String,
    /// Its facts (from the probe cache when still valid: no process then).
    pub facts: PythonFacts,
    /// Its pyc rules.
    pub rules: PycRules,
}

/// Chooses the interpreter as `kolosal-python` would (`explicit` first,
/// then KOLOSAL_PYTHON, VIRTUAL_ENV, .venv, PATH) and gets its facts through
/// the probe cache. Fails with one line saying what to do.
/// `script` is the entry script, whose directory is searched upward for
/// `.venv` before the working directory, as the launcher does.
pub fn target_python(
    explicit: Option<PathBuf>,
    script: Option<&Path>,
) -> anyhow::Result<TargetPython> {
    let found = super::discover_python(explicit, script)?;
    let facts = facts_for(&found.path, &ProbeConfig::from_current_env())
        .map_err(|e| anyhow!("{}: {e}", found.path.display()))?;
    let rules = PycRules::from_facts(&facts).ok_or_else(|| {
        anyhow!(
            "{} reported a magic number kolosal cannot read ({:?}); is it CPython?",
            found.path.display(),
            facts.magic
        )
    })?;
    if rules.cache_tag.is_none() {
        bail!(
            "{} has no cache tag (sys.implementation.cache_tag is None), so it never uses pycs",
            found.path.display()
        );
    }
    Ok(TargetPython {
        path: found.path,
        why: found.detail,
        facts,
        rules,
    })
}

/// The walk roots: the paths given, plus the interpreter's stdlib and/or
/// site-packages directories; "." when nothing is given. With `--stdlib`,
/// site-packages directories inside the stdlib are pruned unless
/// `--site-packages` asks for them too (they are their own roots then).
pub fn roots(
    paths: &[PathBuf],
    facts: &PythonFacts,
    stdlib: bool,
    site_packages: bool,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut roots: Vec<PathBuf> = paths.to_vec();
    let mut prune = Vec::new();
    if stdlib {
        for d in &facts.stdlib_dirs {
            if !roots.contains(d) {
                roots.push(d.clone());
            }
        }
        prune.extend(facts.package_dirs());
    }
    if site_packages {
        for d in &facts.site_packages {
            if d.is_dir() && !roots.contains(d) {
                roots.push(d.clone());
            }
        }
    }
    if roots.is_empty() && !stdlib && !site_packages {
        roots.push(PathBuf::from("."));
    }
    // A site-packages root must not be pruned from its own walk.
    prune.retain(|p| !roots.contains(p));
    (roots, prune)
}

/// compileall's `-x`, repeatable: one regex matching when any of
/// `patterns` matches (searched in the raw path bytes). `None` when empty.
pub fn exclude_regex(patterns: &[String]) -> anyhow::Result<Option<regex::bytes::Regex>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    for p in patterns {
        if let Err(e) = regex::bytes::Regex::new(p) {
            let why = e.to_string();
            let why = why
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim_start_matches("error: ");
            // Python's re has lookaround and backreferences; Rust regex
            // refuses them rather than matching something else.
            bail!(
                "bad --exclude regex {p:?}: {why} (kolosal -x is Rust regex syntax: Python's re without lookaround or backreferences)"
            );
        }
    }
    let joined: Vec<String> = patterns.iter().map(|r| format!("(?:{r})")).collect();
    Ok(Some(regex::bytes::Regex::new(&joined.join("|"))?))
}

/// Sorted, deduplicated `-o` levels (compileall: `sorted(set(optimize))`);
/// `[0]` when none is given.
pub fn levels(given: &[u32]) -> Vec<u32> {
    let mut v = if given.is_empty() {
        vec![0]
    } else {
        given.to_vec()
    };
    v.sort_unstable();
    v.dedup();
    v
}

/// Runs `kolosal compile`; returns the process exit code.
pub fn run(mut args: CompileArgs) -> anyhow::Result<i32> {
    if args.trace {
        return super::trace::run(&args);
    }
    // Without --trace, `--` only ends the options: the rest are paths.
    let after_dashes = std::mem::take(&mut args.command);
    if !after_dashes.is_empty() && (args.entry.is_some() || args.module.is_some()) {
        bail!("--entry and -m select the sources themselves: give no paths with them");
    }
    args.paths
        .extend(after_dashes.into_iter().map(PathBuf::from));
    let started = Instant::now();
    let levels = levels(&args.optimize);
    if args.legacy && levels.len() > 1 {
        bail!("--legacy writes one x.pyc per source: give at most one -o level");
    }
    if args.hardlink_dupes && levels.len() < 2 {
        // mirrors compileall.compile_file's ValueError
        bail!("--hardlink-dupes needs at least two -o levels (e.g. -o 1 -o 2)");
    }
    let exclude = exclude_regex(&args.exclude)?;
    let mut paths = args.paths.clone();
    if let Some(list) = &args.file_list {
        paths.extend(read_file_list(list)?);
    }
    let entry_or_module = args.entry.is_some() || args.module.is_some();
    let groups = super::groups_for(entry_or_module, &paths, args.python.as_deref());
    if groups.len() > 1 && args.quiet < 2 {
        let names: Vec<String> = groups
            .iter()
            .map(|g| match &g.python {
                Some(p) => format!("{} ({} path(s))", p.display(), g.paths.len()),
                None => format!("the default interpreter ({} path(s))", g.paths.len()),
            })
            .collect();
        eprintln!(
            "kolosal: the paths belong to {} interpreters, each compiled for its own: {}",
            groups.len(),
            names.join(", ")
        );
    }
    let (code, docs) = super::for_each_group(&groups, |g| {
        compile_group(&args, g, exclude.clone(), &levels)
    })?;
    if args.json {
        let mut extra = serde_json::Map::new();
        extra.insert("elapsed_s".into(), started.elapsed().as_secs_f64().into());
        let doc = super::combined_json(docs, extra);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(code)
}

/// compileall -i: the paths listed in `list` ("-": stdin), one per line,
/// surrounding whitespace removed (compileall's `line.strip()`); empty
/// lines are skipped.
fn read_file_list(list: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    if list.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the file list from standard input")?;
    } else {
        bytes = std::fs::read(list)
            .with_context(|| format!("cannot read the file list {}", list.display()))?;
    }
    Ok(bytes
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty())
        .map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l)))
        .collect())
}

/// Compiles the trees of one interpreter; returns the exit code and, with
/// `--json`, its document.
fn compile_group(
    args: &CompileArgs,
    group: &super::OwnedPaths,
    exclude: Option<regex::bytes::Regex>,
    levels: &[u32],
) -> anyhow::Result<(i32, Option<serde_json::Value>)> {
    let started = Instant::now();
    let mut target = target_python(group.python.clone(), args.entry.as_deref())?;
    if let Some(why) = &group.why {
        target.why = why.clone();
    }
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let rules = &target.rules;
    let mode = args
        .invalidation_mode
        .unwrap_or_else(|| default_mode(rules));
    if mode != InvalidationMode::Timestamp && !rules.has_flags_field() {
        bail!(
            "{} is Python {}.{}: hash-based pycs need 3.7 or newer; use --invalidation-mode timestamp",
            target.path.display(),
            rules.version.0,
            rules.version.1
        );
    }
    let mut roots_walked = Vec::new();
    let mut walk = match (&args.entry, &args.module) {
        (Some(script), _) => {
            closure_sources(
                &target.facts,
                Entry::Script(script.clone()),
                &cwd,
                exclude.as_ref(),
            )?
            .0
        }
        (None, Some(module)) => {
            closure_sources(
                &target.facts,
                Entry::Module(module.clone()),
                &cwd,
                exclude.as_ref(),
            )?
            .0
        }
        (None, None) if group.paths.is_empty() && args.file_list.is_some() => Walk::default(),
        (None, None) => {
            let (roots, prune) =
                roots(&group.paths, &target.facts, args.stdlib, args.site_packages);
            let walk = plan::find_sources(
                &roots,
                &WalkOptions {
                    exclude,
                    max_depth: args.max_depth,
                    prune,
                },
            );
            roots_walked = roots;
            walk
        }
    };
    if let Some(limit) = &args.limit_sl_dest {
        let limit = std::fs::canonicalize(limit)
            .with_context(|| format!("-e {}: cannot resolve it", limit.display()))?;
        walk.sources.retain(|s| symlink_stays_in(s, &limit));
    }
    let layout = if args.legacy {
        Layout::Legacy
    } else {
        Layout::Pycache {
            prefix: target.facts.pycache_prefix.clone(),
            cwd: cwd.clone(),
        }
    };
    let targets = plan::targets(&walk.sources, rules, levels, &layout)
        .ok_or_else(|| anyhow!("the interpreter has no cache tag"))?;
    let planned = plan::plan(targets, rules, mode, args.force);

    let names = RecordedNames {
        ddir: args.ddir.as_deref(),
        stripdir: args.stripdir.as_deref(),
        prependdir: args.prependdir.as_deref(),
        version: rules.version,
        not_stripped: std::cell::Cell::new(0),
    };
    let jobs = planned.jobs(mode);
    let bar = progress_bar(jobs.len(), args.quiet > 0 || args.verbose || args.json);
    let outcomes = if names.is_active() {
        let recorded: Vec<PathBuf> = jobs
            .iter()
            .map(|j| names.recorded(&j.source, &roots_walked))
            .collect();
        let missed = names.not_stripped.get();
        if missed > 0 && args.quiet < 2 {
            if let Some(s) = names.stripdir {
                eprintln!(
                    "kolosal: warning: -s {} is not a leading part of {missed} source path(s); their pycs record the path unchanged",
                    s.display()
                );
            }
        }
        // One py_compile process per share of the work, as many as the
        // pool would start.
        let bytes: u64 = jobs
            .iter()
            .map(|j| std::fs::metadata(&j.source).map_or(0, |m| m.len()))
            .sum();
        let n = compile::worker_count(args.workers, jobs.len(), bytes).max(1);
        let share = jobs.len().div_ceil(n).max(1);
        let parts: Vec<anyhow::Result<Vec<Outcome>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .chunks(share)
                .zip(recorded.chunks(share))
                .map(|(j, r)| {
                    let bar = &bar;
                    let python = &target.path;
                    scope.spawn(move || {
                        let o = compile_recorded(python, j, r);
                        bar.inc(j.len() as u64);
                        o
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a compile thread panicked")))
                })
                .collect()
        });
        let mut outcomes = Vec::with_capacity(jobs.len());
        for part in parts {
            outcomes.extend(part?);
        }
        outcomes
    } else {
        let mut config = PoolConfig::new(&target.path);
        config.workers = args.workers;
        // As compileall: a module that warns still gets its pyc; the warning is printed.
        config.on_warning = compile::OnWarning::WriteAndReport;
        compile::compile_all(&jobs, &config, &|_, _| bar.inc(1))?
    };
    bar.finish_and_clear();
    for outcome in &outcomes {
        if let Outcome::WrittenWarned { warnings } = outcome {
            if args.quiet < 2 {
                eprint!("{warnings}");
            }
        }
    }

    let mut failures: Vec<String> = walk.problems.iter().map(|p| p.to_string()).collect();
    let mut failed = walk.problems.len();
    let mut compiled = 0usize;
    let mut unwritable = UnwritableDirs::default();
    for ((t, why), outcome) in planned.stale.iter().zip(&outcomes) {
        if outcome.is_written() {
            compiled += 1;
            if args.verbose {
                eprintln!(
                    "compiled {} -> {} ({})",
                    t.source.display(),
                    t.cfile.display(),
                    why.map_or("forced", |w| reason(&w))
                );
            }
        } else {
            failed += 1;
            if !unwritable.absorb(t, outcome) {
                failures.push(outcome.describe());
            }
        }
    }
    failures.extend(unwritable.lines());
    if args.hardlink_dupes {
        for e in hardlink_dupes(&planned.stale, &outcomes, &planned.fresh) {
            failed += 1;
            failures.push(e);
        }
    }
    if args.remove_source {
        let written = planned
            .stale
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| o.is_written())
            .map(|((t, _), _)| t);
        for e in remove_sources(written.chain(&planned.fresh), rules) {
            failed += 1;
            failures.push(e);
        }
    }
    let code = if failed > 0 { 1 } else { 0 };
    if args.json {
        let doc = json_report(
            &target,
            levels,
            mode,
            &planned.stale,
            &outcomes,
            planned.fresh.len(),
            &failures,
            started,
        );
        return Ok((code, Some(doc)));
    }
    if args.quiet < 2 {
        let mut shown = HashSet::new();
        for f in &failures {
            if shown.insert(f.as_str()) {
                super::error_line(f);
            }
        }
    }
    if args.quiet == 0 {
        eprintln!(
            "compiled {compiled}, fresh {}, failed {failed} in {:.2}s ({}, {})",
            planned.fresh.len(),
            started.elapsed().as_secs_f64(),
            rules.cache_tag.as_deref().unwrap_or("no cache tag"),
            target.path.display(),
        );
    }
    Ok((code, None))
}

/// compileall -e: false for a source that is a symlink whose target is not
/// below `limit` (already resolved).
// mirrors compileall.compile_file: `if limit_sl_dest is not None and
// os.path.islink(fullname): if Path(limit_sl_dest).resolve() not in
// Path(fullname).resolve().parents: return success`
fn symlink_stays_in(source: &Path, limit: &Path) -> bool {
    let is_link = std::fs::symlink_metadata(source).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return true;
    }
    match std::fs::canonicalize(source) {
        Ok(real) => real != limit && real.starts_with(limit),
        Err(_) => false,
    }
}

/// Sources that could not be compiled because their pyc's directory cannot
/// be written (or created): one line per directory, not one per file.
#[derive(Default)]
struct UnwritableDirs {
    /// directory → (first error, first source, number of pycs not
    /// written), in order.
    dirs: Vec<(PathBuf, String, PathBuf, usize)>,
}

impl UnwritableDirs {
    /// Takes `outcome` when it is a write failure naming the pyc's
    /// directory (or a file in it); false otherwise.
    fn absorb(&mut self, t: &Target, outcome: &Outcome) -> bool {
        let Outcome::Failed { message } = outcome else {
            return false;
        };
        let Some(dir) = t.cfile.parent() else {
            return false;
        };
        // The worker's OSError text: "PermissionError: [Errno 13] ...: '<dir>'".
        let errno_of_write = [
            "[Errno 13]",
            "[Errno 30]",
            "[Errno 20]",
            "[Errno 17]",
            "[Errno 1]",
        ]
        .iter()
        .any(|e| message.contains(e));
        let names_dir = message.contains(&format!("'{}", dir.display()));
        if !errno_of_write || !names_dir {
            return false;
        }
        match self.dirs.iter_mut().find(|(d, _, _, _)| d == dir) {
            Some((_, _, _, n)) => *n += 1,
            None => {
                let why = message
                    .split_once(": ")
                    .map_or(message.as_str(), |(_, rest)| rest)
                    .to_string();
                self.dirs
                    .push((dir.to_path_buf(), why, t.source.clone(), 1));
            }
        }
        true
    }

    fn lines(&self) -> Vec<String> {
        self.dirs
            .iter()
            .map(|(dir, why, first, n)| {
                format!(
                    "{}: cannot write pycs there ({why}); {n} pyc(s) not written, the first for {}",
                    dir.display(),
                    first.display()
                )
            })
            .collect()
    }
}

/// The name compileall records in a pyc (`co_filename`) under -d, -s, -p.
struct RecordedNames<'a> {
    ddir: Option<&'a Path>,
    stripdir: Option<&'a Path>,
    prependdir: Option<&'a Path>,
    /// The target interpreter's (major, minor): compileall's rules changed.
    version: (u32, u32),
    /// Sources `stripdir` did not prefix (compileall prints a line for
    /// each; kolosal one for all).
    not_stripped: std::cell::Cell<usize>,
}

impl RecordedNames<'_> {
    fn is_active(&self) -> bool {
        self.ddir.is_some() || self.stripdir.is_some() || self.prependdir.is_some()
    }

    /// The name recorded for `source`, found under one of `roots`.
    // mirrors compileall.compile_dir and compile_file (3.9+: -d on a tree
    // is stripdir=dir, prependdir=ddir; before 3.9 each level below the
    // tree is joined to ddir, which gives the same name)
    fn recorded(&self, source: &Path, roots: &[PathBuf]) -> PathBuf {
        let full = source.as_os_str().as_bytes();
        if let Some(ddir) = self.ddir {
            let ddir = ddir.as_os_str().as_bytes();
            let root = roots
                .iter()
                .find(|r| r.as_path() != source && source.starts_with(r));
            let named = match root {
                // compile_dir: the tree's own path is replaced by ddir.
                Some(root) if self.version >= (3, 9) => {
                    let strip = self.strip(full, root.as_os_str().as_bytes());
                    strip.map(|rel| posix_join(ddir, &rel))
                }
                Some(root) => {
                    let rel = source.strip_prefix(root).unwrap_or(source);
                    Some(posix_join(ddir, rel.as_os_str().as_bytes()))
                }
                None => None,
            };
            // compile_file on a file given itself: ddir + its name; a
            // stripdir that does not prefix: prependdir + the full path.
            let named = named.unwrap_or_else(|| match root {
                Some(_) => posix_join(ddir, full),
                None => posix_join(ddir, source.file_name().map_or(full, |n| n.as_bytes())),
            });
            return PathBuf::from(std::ffi::OsString::from_vec(named));
        }
        let mut dfile: Option<Vec<u8>> = None;
        if let Some(s) = self.stripdir {
            dfile = self.strip(full, s.as_os_str().as_bytes());
            if dfile.is_none() {
                self.not_stripped.set(self.not_stripped.get() + 1);
            }
        }
        if let Some(p) = self.prependdir {
            let p = p.as_os_str().as_bytes();
            dfile = Some(match dfile {
                None => posix_join(p, full),
                Some(d) => posix_join(p, &d),
            });
        }
        PathBuf::from(std::ffi::OsString::from_vec(
            dfile.unwrap_or_else(|| full.to_vec()),
        ))
    }

    /// compileall's stripdir: `None` when it does not apply.
    // mirrors compileall.compile_file: 3.13+ strips a leading run of whole
    // components (and ignores a stripdir that is not one); 3.9 to 3.12
    // remove, for each position where the two paths agree, the first equal
    // component (3.12.1 and Debian's 3.11.2 checked: a later 3.12 patch
    // release that took the new rule would differ on odd stripdirs)
    fn strip(&self, full: &[u8], stripdir: &[u8]) -> Option<Vec<u8>> {
        let fp: Vec<&[u8]> = full.split(|&b| b == b'/').collect();
        let sp: Vec<&[u8]> = stripdir.split(|&b| b == b'/').collect();
        let parts: Vec<&[u8]> = if self.version >= (3, 13) || self.version < (3, 9) {
            if sp.len() > fp.len() || fp[..sp.len()] != sp[..] {
                return None;
            }
            fp[sp.len()..].to_vec()
        } else {
            let mut parts = fp.clone();
            for (s, o) in sp.iter().zip(&fp) {
                if s == o {
                    if let Some(i) = parts.iter().position(|p| p == s) {
                        parts.remove(i);
                    }
                }
            }
            parts
        };
        // os.path.join(*parts) of no part raises in compileall; keep the path.
        let (first, rest) = parts.split_first()?;
        let mut out = first.to_vec();
        for p in rest {
            out = posix_join(&out, p);
        }
        Some(out)
    }
}

/// `posixpath.join(a, b)`.
fn posix_join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if b.starts_with(b"/") {
        return b.to_vec();
    }
    let mut out = a.to_vec();
    if !out.is_empty() && !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(b);
    out
}

/// Compiles `jobs` with their names recorded as `recorded` (compileall -d,
/// -s, -p), with `py_compile.compile(source, cfile, dfile)` in one process
/// of the target interpreter: the pool's workers record the source path.
fn compile_recorded(
    python: &Path,
    jobs: &[CompileJob],
    recorded: &[PathBuf],
) -> anyhow::Result<Vec<Outcome>> {
    use std::io::{BufRead, Write};
    const SCRIPT: &str = r#"
import os, sys, py_compile
modes = {}
M = getattr(py_compile, "PycInvalidationMode", None)
if M is not None:
    modes = {b"0": M.TIMESTAMP, b"1": M.CHECKED_HASH, b"2": M.UNCHECKED_HASH}
data = sys.stdin.buffer.read().split(b"\0")
out = sys.stdout.buffer
def line(text):
    return " ".join(str(text).split())
for i in range(0, len(data) - 1, 5):
    src, cfile, dfile, opt, mode = data[i:i + 5]
    kw = {}
    if mode in modes:
        kw["invalidation_mode"] = modes[mode]
    try:
        py_compile.compile(os.fsdecode(src), os.fsdecode(cfile), os.fsdecode(dfile),
                           doraise=True, optimize=int(opt), **kw)
        out.write(b"ok\n")
    except py_compile.PyCompileError as e:
        v = e.exc_value
        if isinstance(v, SyntaxError):
            n = v.lineno if isinstance(v.lineno, int) else 0
            msg = "%s: %s" % (type(v).__name__, line(v.msg or v))
            out.write(("syntax\t%d\t%s\n" % (n, msg)).encode("utf-8", "replace"))
        else:
            msg = "%s: %s" % (type(v).__name__, line(v))
            out.write(("fail\t%s\n" % msg).encode("utf-8", "replace"))
    except Exception as e:
        msg = "%s: %s" % (type(e).__name__, line(e))
        out.write(("fail\t%s\n" % msg).encode("utf-8", "replace"))
    out.flush()
"#;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut input = Vec::new();
    for (j, d) in jobs.iter().zip(recorded) {
        for part in [j.source.as_os_str(), j.cfile.as_os_str(), d.as_os_str()] {
            input.extend_from_slice(part.as_bytes());
            input.push(0);
        }
        let mode = match j.invalidation {
            InvalidationMode::Timestamp => b'0',
            InvalidationMode::CheckedHash => b'1',
            InvalidationMode::UncheckedHash => b'2',
        };
        input.extend_from_slice(format!("{}\0", j.optimize).as_bytes());
        input.push(mode);
        input.push(0);
    }
    let mut child = std::process::Command::new(python)
        .args(["-I", "-S", "-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let stdout = child.stdout.take().context("no stdout")?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    for (l, job) in std::io::BufReader::new(stdout).split(b'\n').zip(jobs) {
        let l = String::from_utf8_lossy(&l?).into_owned();
        let mut f = l.splitn(3, '\t');
        outcomes.push(match (f.next(), f.next(), f.next()) {
            (Some("ok"), _, _) => Outcome::Written,
            (Some("syntax"), Some(n), Some(msg)) => Outcome::SyntaxError {
                path: job.source.clone(),
                line: n.parse().ok().filter(|&n| n > 0),
                message: msg.to_string(),
            },
            (_, msg, _) => Outcome::Failed {
                message: format!("{}: {}", job.source.display(), msg.unwrap_or("?")),
            },
        });
    }
    let _ = writer.join();
    let status = child.wait()?;
    while outcomes.len() < jobs.len() {
        let job = &jobs[outcomes.len()];
        outcomes.push(Outcome::Failed {
            message: format!(
                "{}: not compiled: {} exited ({status})",
                job.source.display(),
                python.display()
            ),
        });
    }
    Ok(outcomes)
}

/// `kolosal compile --json`: one object, `"schema": 1` (keys are only ever
/// added):
///
/// * `python`, `version` ("3.12.1"), `cache_tag`: the target interpreter;
/// * `levels`: the `-o` levels written; `invalidation_mode`;
/// * `compiled`: one `{source, pyc, optimize, reason}` per pyc written
///   (`reason`: why it was stale, as `-v` prints it);
/// * `fresh`: pycs already fresh; `failed`: the count of `failures`, one
///   line each (unreadable trees, compile errors, `--remove-source` and
///   `--hardlink-dupes` problems), in order, duplicates kept;
/// * `elapsed_s`: wall time.
#[allow(clippy::too_many_arguments)]
fn json_report(
    target: &TargetPython,
    levels: &[u32],
    mode: InvalidationMode,
    stale: &[(Target, Option<Freshness>)],
    outcomes: &[Outcome],
    fresh: usize,
    failures: &[String],
    started: Instant,
) -> serde_json::Value {
    let lossy = |p: &Path| p.to_string_lossy().into_owned();
    let compiled: Vec<serde_json::Value> = stale
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| o.is_written())
        .map(|((t, why), _)| {
            serde_json::json!({
                "source": lossy(&t.source),
                "pyc": lossy(&t.cfile),
                "optimize": t.optimize,
                "reason": why.map_or("forced", |w| reason(&w)),
            })
        })
        .collect();
    let v = target.facts.version;
    serde_json::json!({
        "schema": 1,
        "python": lossy(&target.path),
        "version": format!("{}.{}.{}", v[0], v[1], v[2]),
        "cache_tag": target.rules.cache_tag,
        "levels": levels,
        "invalidation_mode": mode.as_str(),
        "compiled": compiled,
        "fresh": fresh,
        "failed": failures.len(),
        "failures": failures,
        "elapsed_s": started.elapsed().as_secs_f64(),
    })
}

/// One module of an entry's closure whose pyc importlib reads.
#[derive(Debug, Clone)]
pub struct ClosureSource {
    /// The module's name.
    pub name: String,
    /// How it came to be in the closure.
    pub origin: Origin,
}

/// The sources of the modules whose pycs the launcher would read for
/// `entry` ([`kolosal::closure::Closure::pyc_modules`]), as a [`Walk`]:
/// sources that could not be read become problems. `exclude` filters as in
/// a tree walk. Beside it, each source's module (same order as
/// `walk.sources`).
pub fn closure_sources(
    facts: &PythonFacts,
    entry: Entry,
    cwd: &Path,
    exclude: Option<&regex::bytes::Regex>,
) -> anyhow::Result<(Walk, Vec<ClosureSource>)> {
    if let Entry::Script(s) = &entry {
        if !s.is_file() {
            bail!(
                "{}: no such file; give an existing script to --entry",
                s.display()
            );
        }
    }
    let options = ClosureOptions {
        cwd: Some(cwd.to_path_buf()),
        safe_path: facts.flags.safe_path,
        skip_startup: false,
    };
    let (closure, _) = compute_persisted(facts, &entry, &options);
    let mut walk = Walk::default();
    let mut modules = Vec::new();
    for m in closure.pyc_modules() {
        let Some(origin) = &m.module.origin else {
            continue;
        };
        if exclude.is_some_and(|rx| rx.is_match(origin.as_os_str().as_bytes())) {
            continue;
        }
        walk.sources.push(origin.clone());
        modules.push(ClosureSource {
            name: m.name().to_string(),
            origin: m.origin,
        });
    }
    walk.problems = closure
        .unreadable
        .iter()
        .map(|(path, message)| WalkProblem {
            path: path.clone(),
            message: message.clone(),
        })
        .collect();
    Ok((walk, modules))
}

/// py_compile's default mode, except on 3.6 which has no hash-based pycs
/// (and no SOURCE_DATE_EPOCH rule).
fn default_mode(rules: &PycRules) -> InvalidationMode {
    if rules.has_flags_field() {
        InvalidationMode::py_compile_default()
    } else {
        InvalidationMode::Timestamp
    }
}

fn reason(f: &Freshness) -> &'static str {
    match f {
        Freshness::Stale(r) => r.as_str(),
        other => other.as_str(),
    }
}

fn progress_bar(len: usize, silent: bool) -> indicatif::ProgressBar {
    if silent || len == 0 || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("compiling {bar:30} {pos}/{len} {elapsed}")
    {
        bar.set_style(style);
    }
    bar
}

/// compileall's `--hardlink-dupes`: for each source where a pyc was written,
/// the pyc of each level that is byte-identical to the one of the previous
/// (lower) level becomes a hard link to it. The link is made under a
/// temporary name and renamed over the pyc, so the pyc never goes missing.
/// Returns one line per failure.
// mirrors compileall.compile_file's `if index > 0 and hardlink_dupes:
// if filecmp.cmp(cfile, previous_cfile, shallow=False): os.unlink(cfile);
// os.link(previous_cfile, cfile)`
pub fn hardlink_dupes(
    stale: &[(Target, Option<Freshness>)],
    outcomes: &[Outcome],
    fresh: &[Target],
) -> Vec<String> {
    let mut touched: HashSet<&Path> = HashSet::new();
    for ((t, _), o) in stale.iter().zip(outcomes) {
        if o.is_written() {
            touched.insert(&t.source);
        }
    }
    // Every level's pyc of the touched sources, by source then level.
    let mut by_source: BTreeMap<&Path, Vec<&Target>> = BTreeMap::new();
    for t in stale.iter().map(|(t, _)| t).chain(fresh) {
        if touched.contains(t.source.as_path()) {
            by_source.entry(&t.source).or_default().push(t);
        }
    }
    let mut errors = Vec::new();
    for levels in by_source.values_mut() {
        levels.sort_by_key(|t| t.optimize);
        for pair in levels.windows(2) {
            let (prev, cur) = (&pair[0].cfile, &pair[1].cfile);
            if let Err(e) = link_if_identical(prev, cur) {
                errors.push(format!(
                    "{}: cannot hard-link to {}: {e}",
                    cur.display(),
                    prev.display()
                ));
            }
        }
    }
    errors
}

fn link_if_identical(prev: &Path, cur: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (Ok(a), Ok(b)) = (std::fs::metadata(prev), std::fs::metadata(cur)) else {
        return Ok(()); // one of them failed to compile: nothing to share
    };
    // Only regular files are read (a FIFO there would block the read).
    if !a.is_file()
        || !b.is_file()
        || (a.dev(), a.ino()) == (b.dev(), b.ino())
        || a.len() != b.len()
    {
        return Ok(());
    }
    if std::fs::read(prev)? != std::fs::read(cur)? {
        return Ok(());
    }
    let mut tmp = cur.as_os_str().to_owned();
    tmp.push(format!(".{}.link", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::fs::hard_link(prev, &tmp)?;
    std::fs::rename(&tmp, cur).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// `--remove-source`: deletes each target's source once its (legacy) pyc
/// is verified — its header parsed and checked against the source exactly as
/// the loader would with `--check-hash-based-pycs always`, and its body
/// checked to start like a code object ([`pyc::check_loadable`]). A source whose
/// pyc does not verify is kept and reported. Returns one line per failure.
pub fn remove_sources<'a>(
    targets: impl Iterator<Item = &'a Target>,
    rules: &PycRules,
) -> Vec<String> {
    let mut errors = Vec::new();
    for t in targets {
        match pyc::check_loadable(&t.source, &t.cfile, rules, HashCheckMode::Always) {
            pyc::Verdict::Fresh => {
                if let Err(e) = std::fs::remove_file(&t.source) {
                    errors.push(format!(
                        "{}: cannot remove the source: {e}",
                        t.source.display()
                    ));
                }
            }
            pyc::Verdict::Stale(r) => errors.push(format!(
                "{}: source kept: its pyc {} did not verify ({r})",
                t.source.display(),
                t.cfile.display()
            )),
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_sorted_sets() {
        assert_eq!(levels(&[]), [0]);
        assert_eq!(levels(&[2, 0, 2, 1]), [0, 1, 2]);
    }

    #[test]
    fn hardlinks_only_identical_pairs() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        std::fs::write(p("a.py"), "").unwrap();
        std::fs::write(p("a0.pyc"), "same").unwrap();
        std::fs::write(p("a1.pyc"), "same").unwrap();
        std::fs::write(p("a2.pyc"), "diff").unwrap();
        let t = |n: &str, o| Target {
            pyc: kolosal::pyc::PycTarget {
                source: p("a.py"),
                cfile: p(n),
            },
            optimize: o,
        };
        let stale = vec![(t("a1.pyc", 1), None), (t("a2.pyc", 2), None)];
        let errs = hardlink_dupes(
            &stale,
            &[Outcome::Written, Outcome::Written],
            &[t("a0.pyc", 0)],
        );
        assert!(errs.is_empty(), "{errs:?}");
        let ino = |n: &str| std::fs::metadata(p(n)).unwrap().ino();
        assert_eq!(ino("a0.pyc"), ino("a1.pyc"));
        assert_ne!(ino("a1.pyc"), ino("a2.pyc"));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 4);
    }
}
