//! `kolosal compile --trace -- COMMAND [ARG...]`: learning at build time.
//!
//! The command runs once, for real, with its stdin, stdout and stderr, and
//! with two changes to its environment: `PYTHONPYCACHEPREFIX` points at a
//! private temporary directory (mode 0700) and `PYTHONDONTWRITEBYTECODE` is
//! removed (plus `KOLOSAL_AUTO_COMPILE=0`, so a `kolosal-python` or a shim
//! in the command passes straight through). With a prefix set, every
//! Python process of the command (subprocesses too) reads and writes pycs
//! only under the prefix, so it compiles every source module it loads and
//! writes that pyc there: the set of pycs under the prefix is the set of
//! source modules loaded, each named `<name>.<cache tag>[.opt-N].pyc` below
//! a mirror of the source's absolute directory. The main script is compiled
//! but never cached, so it is not in the set (its static closure is, below).
//!
//! Each pyc is mapped back to its source (`source_from_cache`), which must
//! still be a regular file. The sources are grouped by cache tag; a tag is
//! compiled for when a known interpreter has it: `--python`, the command
//! itself when it is a Python (`python3`, `/venv/bin/python`, or a script
//! whose `#!` line names one, like `manage.py` or `django-admin`), and the
//! interpreter `kolosal` would pick. For each, the learned sources become
//! roots of a closure ([`kolosal::closure::compute_learned`]) beside the command's own
//! entry when its argv says one, and every pyc that closure needs is
//! compiled in place (or under the user's own pycache prefix) at each `-O`
//! level the command ran at, by kolosal's pool.
//!
//! Limits: a command run with `-E`, `-I`, `-B` or `-X pycache_prefix`
//! ignores the variable, and so does Python 3.7 (no prefix before 3.8):
//! nothing lands under the prefix. With `PYTHONDONTWRITEBYTECODE` removed
//! those Pythons write the pycs of what they load in place themselves (as
//! plain `python` does), except under `-B`; kolosal then compiles the
//! command's static closure when it can tell the entry, and says in one
//! line that it saw nothing loaded.
//!
//! Exit status: the command's own when it failed (a signal death is
//! 128 + the signal, as a shell reports it), after compiling what it loaded
//! anyway; else 1 when a pyc could not be written, else 0. A command
//! interrupted by Ctrl-C (SIGINT) compiles nothing. While the command runs
//! kolosal ignores SIGINT and SIGQUIT, as `system(3)` does: the command
//! decides what a Ctrl-C means.

use super::compile::{exclude_regex, levels, target_python, CompileArgs, TargetPython};
use anyhow::{anyhow, bail, Context};
use kolosal::argv::{self, Target as ArgTarget};
use kolosal::closure::{compute_learned, ClosureOptions, Entry, Learned, LearnedRoot, Origin};
use kolosal::compile::plan::{self, Layout};
use kolosal::compile::{self, PoolConfig};
use kolosal::interpreter::{facts_for, ProbeConfig, PythonFacts};
use kolosal::pyc::{source_from_cache, InvalidationMode, PycRules};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One interpreter the trace may compile for, and what it knows about the
/// command when the command runs it.
struct Candidate {
    target: TargetPython,
    /// The entry of the command, when the command runs this interpreter.
    entry: Option<Entry>,
    /// `-P` / `-I` / `PYTHONSAFEPATH` in the command.
    safe_path: bool,
    /// The command's `-O` level when it runs this interpreter.
    optimize: Option<u32>,
}

/// Runs `kolosal compile --trace -- COMMAND`; returns the exit code.
pub fn run(args: &CompileArgs) -> anyhow::Result<i32> {
    let Some(program) = args.command.first() else {
        bail!("--trace needs a command after --: kolosal compile --trace -- python app.py");
    };
    let started = Instant::now();
    let exclude = exclude_regex(&args.exclude)?;
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let prefix = TraceDir::create().context("cannot create the trace directory")?;
    let prefix_path = prefix.0.clone();

    let status = match run_command(&args.command, &prefix_path) {
        Ok(s) => s,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            super::error_line(format_args!(
                "cannot run {}: {e}",
                program.to_string_lossy()
            ));
            return Ok(code);
        }
    };
    let command_code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    if status.signal() == Some(libc::SIGINT) {
        return Ok(command_code);
    }

    let candidates = candidates(args, program)?;
    let loaded = traced_pycs(&prefix_path);
    let mut failed = 0usize;
    let mut compiled_for = 0usize;
    let mut unknown_tags: BTreeMap<String, usize> = BTreeMap::new();
    let mut saw: BTreeSet<String> = BTreeSet::new();
    for c in &candidates {
        let Some(tag) = c.target.rules.cache_tag.clone() else {
            continue;
        };
        if !saw.insert(tag.clone()) {
            continue; // an earlier candidate compiles for this tag
        }
        let mine: Vec<(PathBuf, u32)> = loaded
            .iter()
            .filter_map(|pyc| learned_source(pyc, &tag, &c.target.rules, &prefix_path))
            .collect();
        if mine.is_empty() && c.entry.is_none() {
            continue;
        }
        compiled_for += 1;
        failed += compile_for(args, c, &mine, exclude.as_ref(), &cwd)?;
    }
    for pyc in &loaded {
        let tag = pyc_tag(pyc);
        if !saw.contains(&tag) {
            *unknown_tags.entry(tag).or_default() += 1;
        }
    }
    for (tag, n) in &unknown_tags {
        eprintln!(
            "kolosal: {n} module(s) loaded by a {tag} interpreter not compiled: no known interpreter has that cache tag (give --python)"
        );
    }
    if loaded.is_empty() {
        eprintln!(
            "kolosal: the command loaded no source module kolosal could see (Python 3.7, -E, -I, -B and -X pycache_prefix hide them)"
        );
    }
    if args.quiet == 0 {
        eprintln!(
            "trace: {} interpreter(s), {:.2}s in all",
            compiled_for,
            started.elapsed().as_secs_f64()
        );
    }
    drop(prefix);
    Ok(if command_code != 0 {
        command_code
    } else if failed > 0 {
        1
    } else {
        0
    })
}

/// The private prefix directory: created fresh (never an existing one),
/// mode 0700, removed when dropped.
struct TraceDir(PathBuf);

impl TraceDir {
    fn create() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        let mut last = None;
        for attempt in 0..16u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = base.join(format!(
                "kolosal-trace-{}-{nanos:08x}{attempt}",
                std::process::id()
            ));
            // mkdir fails on anything already there (a planted symlink too).
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(TraceDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
    }
}

impl Drop for TraceDir {
    fn drop(&mut self) {
        // remove_dir_all does not follow symlinks.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the command with the trace environment, stdio inherited, and waits.
fn run_command(command: &[OsString], prefix: &Path) -> std::io::Result<std::process::ExitStatus> {
    let mut child = std::process::Command::new(&command[0])
        .args(&command[1..])
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .env("PYTHONPYCACHEPREFIX", prefix)
        .env("KOLOSAL_AUTO_COMPILE", "0")
        .spawn()?;
    // As system(3): the command decides what Ctrl-C and Ctrl-\ mean. Set
    // after the spawn, so the command does not inherit the dispositions.
    // SAFETY: signal() with SIG_IGN / the previous handler has no memory
    // preconditions.
    let (int, quit) = unsafe {
        (
            libc::signal(libc::SIGINT, libc::SIG_IGN),
            libc::signal(libc::SIGQUIT, libc::SIG_IGN),
        )
    };
    let status = child.wait();
    // SAFETY: as above, restoring what was there.
    unsafe {
        libc::signal(libc::SIGINT, int);
        libc::signal(libc::SIGQUIT, quit);
    }
    status
}

/// Every regular file named `*.pyc` under the trace prefix (symlinks are
/// neither followed nor taken).
fn traced_pycs(prefix: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(prefix)
        .follow_links(false)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "pyc"))
        .collect();
    out.sort();
    out
}

/// The cache tag a pyc name carries (`m.cpython-312.opt-1.pyc` gives
/// `cpython-312`), for the message about tags nobody compiles for.
fn pyc_tag(pyc: &Path) -> String {
    let name = pyc.file_name().map(OsStr::as_bytes).unwrap_or_default();
    let mut parts = name.split(|&b| b == b'.');
    parts.next();
    String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned()
}

/// The source and level of a pyc the traced command wrote under `prefix`
/// for the interpreter with cache tag `tag`; `None` for another tag, a name
/// importlib would not write, or a source that is gone or not a regular file.
fn learned_source(
    pyc: &Path,
    tag: &str,
    rules: &PycRules,
    prefix: &Path,
) -> Option<(PathBuf, u32)> {
    let level = super::status::pyc_level(pyc, tag)?;
    let source = source_from_cache(pyc, rules, Some(prefix))?;
    std::fs::metadata(&source)
        .ok()
        .filter(|m| m.is_file())
        .map(|_| (source, level))
}

/// The interpreters the trace may compile for, best first: `--python`, the
/// command itself when it is a Python (with its entry), the one `kolosal`
/// would pick.
fn candidates(args: &CompileArgs, program: &OsStr) -> anyhow::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    if let Some(p) = &args.python {
        out.push(plain(target_python(Some(p.clone()), None)?));
    }
    match command_python(program) {
        Some(CommandPython::Interpreter(path)) => {
            if let Ok(t) = target_python(Some(path), None) {
                out.push(with_argv(t, &args.command[1..]));
            }
        }
        Some(CommandPython::Launcher) => {
            if let Ok(t) = target_python(None, None) {
                out.push(with_argv(t, &args.command[1..]));
            }
        }
        Some(CommandPython::Script {
            interpreter,
            script,
        }) => {
            if let Ok(t) = target_python(Some(interpreter), None) {
                let mut c = plain(t);
                c.entry = Some(Entry::Script(script));
                out.push(c);
            }
        }
        None => {}
    }
    if let Ok(t) = target_python(None, None) {
        out.push(plain(t));
    }
    if out.is_empty() {
        bail!("no Python interpreter found to compile for; give --python");
    }
    Ok(out)
}

fn plain(target: TargetPython) -> Candidate {
    Candidate {
        target,
        entry: None,
        safe_path: false,
        optimize: None,
    }
}

/// The candidate for a command that runs `target` with `args` (argv
/// without `argv[0]`), read as that interpreter reads it; facts probed
/// under the command's own flags (`-I`, `-E`, `-s`, `-S`).
fn with_argv(target: TargetPython, args: &[OsString]) -> Candidate {
    let env = |name: &str| std::env::var_os(name);
    let Ok(spec) = argv::parse(args, &env, target.facts.minor_version()) else {
        return plain(target);
    };
    let entry = match &spec.target {
        ArgTarget::Script(p) => Some(Entry::Script(p.clone())),
        ArgTarget::Module(m) => Some(Entry::Module(m.clone())),
        ArgTarget::Command(c) => Some(Entry::Code(c.to_string_lossy().into_owned())),
        _ => None,
    };
    let config = ProbeConfig::for_launch(&spec);
    let facts = facts_for(&target.path, &config).unwrap_or_else(|_| target.facts.clone());
    Candidate {
        target: TargetPython { facts, ..target },
        entry,
        safe_path: spec.safe_path,
        optimize: Some(spec.optimize),
    }
}

/// How the command's `argv[0]` runs Python.
enum CommandPython {
    /// It is an interpreter (`python3`, `/venv/bin/python3.12`).
    Interpreter(PathBuf),
    /// It is `kolosal-python`: the interpreter is the one it would pick.
    Launcher,
    /// A script whose `#!` line names a Python (`manage.py`, a console
    /// script such as `django-admin`).
    Script {
        interpreter: PathBuf,
        script: PathBuf,
    },
}

/// What the command's `argv[0]` is, found as `execvp` would find it.
fn command_python(program: &OsStr) -> Option<CommandPython> {
    let path = find_program(program)?;
    let name = path.file_name()?.as_bytes();
    if name == b"kolosal-python" {
        return Some(CommandPython::Launcher);
    }
    if name.starts_with(b"python") {
        return Some(CommandPython::Interpreter(path));
    }
    let interpreter = shebang_python(&path)?;
    Some(CommandPython::Script {
        interpreter,
        script: path,
    })
}

/// `program` as `execvp` finds it: a name with a slash as is, else the
/// first executable file of that name on `PATH`.
fn find_program(program: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.as_bytes().contains(&b'/') {
        let p = PathBuf::from(program);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| is_exec(p))
}

/// The Python a script's `#!` line runs (`#!/venv/bin/python`,
/// `#!/usr/bin/env python3`), or `None` when it names no Python.
fn shebang_python(script: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(script).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let mut words = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let first = Path::new(OsStr::from_bytes(words.next()?));
    let interpreter = if first.file_name()? == "env" {
        let name = words.find(|w| !w.starts_with(b"-"))?;
        find_program(OsStr::from_bytes(name))?
    } else {
        first.to_path_buf()
    };
    interpreter
        .file_name()?
        .as_bytes()
        .starts_with(b"python")
        .then_some(interpreter)
}

/// Compiles, for one interpreter, the learned sources (`mine`: source and
/// level) and the closure they and the command's entry reach. Returns the
/// number of pycs that could not be written.
fn compile_for(
    args: &CompileArgs,
    c: &Candidate,
    mine: &[(PathBuf, u32)],
    exclude: Option<&regex::bytes::Regex>,
    cwd: &Path,
) -> anyhow::Result<usize> {
    let facts: &PythonFacts = &c.target.facts;
    let rules = &c.target.rules;
    let mut seen: BTreeSet<&Path> = BTreeSet::new();
    let roots: Vec<LearnedRoot> = mine
        .iter()
        .filter(|(s, _)| seen.insert(s))
        .map(|(s, _)| LearnedRoot {
            source: s.clone(),
            how: Learned::Trace,
        })
        .collect();
    let mut given: Vec<u32> = mine.iter().map(|(_, l)| *l).collect();
    given.extend(&args.optimize);
    if given.is_empty() {
        given.push(c.optimize.unwrap_or(facts.flags.optimize));
    }
    let levels = levels(&given);
    let options = ClosureOptions {
        cwd: Some(cwd.to_path_buf()),
        safe_path: c.safe_path || facts.flags.safe_path,
        skip_startup: false,
    };
    let (closure, _) = compute_learned(facts, c.entry.as_ref(), &options, &roots);
    let mut sources: Vec<PathBuf> = closure
        .pyc_modules()
        .filter_map(|m| m.module.origin.clone())
        .chain(closure.unplaced.iter().map(|r| r.source.clone()))
        .filter(|p| !exclude.is_some_and(|rx| rx.is_match(p.as_os_str().as_bytes())))
        .collect();
    let mut dedup = BTreeSet::new();
    sources.retain(|s| dedup.insert(s.clone()));
    let learned_only = closure
        .modules
        .iter()
        .filter(|m| matches!(m.origin, Origin::Learned(_)))
        .count();

    let layout = Layout::Pycache {
        prefix: facts.pycache_prefix.clone(),
        cwd: cwd.to_path_buf(),
    };
    let mode = args.invalidation_mode.unwrap_or_else(|| {
        if rules.has_flags_field() {
            InvalidationMode::py_compile_default()
        } else {
            InvalidationMode::Timestamp
        }
    });
    let targets = plan::targets(&sources, rules, &levels, &layout)
        .ok_or_else(|| anyhow!("the interpreter has no cache tag"))?;
    let planned = plan::plan(targets, rules, mode, args.force);
    let jobs = planned.jobs(mode);
    let mut config = PoolConfig::new(&c.target.path);
    config.workers = args.workers;
    let outcomes = compile::compile_all(&jobs, &config, &|_, _| {})?;
    let mut failed = 0;
    for ((t, _), o) in planned.stale.iter().zip(&outcomes) {
        if o.is_written() {
            if args.verbose {
                eprintln!("compiled {} -> {}", t.source.display(), t.cfile.display());
            }
        } else {
            failed += 1;
            super::error_line(o.describe());
        }
    }
    if args.quiet == 0 {
        let v = facts.version;
        eprintln!(
            "trace: {} ({}.{}.{}, -o {}): {} source modules loaded, {} beyond the static closure, {} not importable by name; compiled {}, fresh {}, failed {failed}",
            c.target.path.display(),
            v[0],
            v[1],
            v[2],
            levels
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            roots.len(),
            learned_only,
            closure.unplaced.len(),
            jobs.len() - failed,
            planned.fresh.len(),
        );
    }
    Ok(failed)
}
