//! The reliability suite: bad sources, odd paths, corrupt state, faults and
//! security, driven through `kolosal-python`, `kolosal compile` and the
//! library against real interpreters.
//!
//! Every case runs inside a [`Tree`] whose files (everything but pycs and
//! `__pycache__` contents) are hashed before and after: a case fails if any
//! of them changed or vanished, or if kolosal created anything outside a
//! `__pycache__` directory. Each case prints one `[reliability]` row (case,
//! what happened, what the user sees); docs/reliability.md tabulates them.
//!
//! Parity cases compare exit status, stdout and stderr byte for byte with
//! the bare interpreter (run with `PYTHONDONTWRITEBYTECODE=1`, which changes
//! no output). Interpreters: the oldest and newest CPython >= 3.7 found;
//! every one under `KOLOSAL_TEST_HEAVY=1`.

use crate::common;

use common::Python;
use kolosal::compile::{compile_all, CompileJob, Outcome, PoolConfig};
use kolosal::interpreter::{run_probe, ProbeConfig};
use kolosal::pyc::PycTarget;
use kolosal::pyc::{self, HashCheckMode, InvalidationMode, PycRules};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::hash::Hasher;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- harness

static CASES: AtomicUsize = AtomicUsize::new(0);
static FILES_VERIFIED: AtomicUsize = AtomicUsize::new(0);
/// Bytes of files (outside `__pycache__`) whose contents were checked after
/// a case, and of those that changed or vanished.
static BYTES_VERIFIED: AtomicUsize = AtomicUsize::new(0);
static BYTES_LOST: AtomicUsize = AtomicUsize::new(0);

/// One table row, printed past the capture.
fn row(case: &str, happened: &str, user_sees: &str) {
    CASES.fetch_add(1, Ordering::Relaxed);
    let user_sees = shorten(user_sees);
    common::note(&format!("[reliability] {case} | {happened} | {user_sees}"));
}

/// Long paths in messages, cut to their first and last 90 characters.
fn shorten(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 240 {
        return s.to_string();
    }
    let head: String = chars[..90].iter().collect();
    let tail: String = chars[chars.len() - 90..].iter().collect();
    format!("{head}[...]{tail}")
}

fn totals(suite: &str) {
    common::note(&format!(
        "[reliability] {suite}: totals so far in this binary: {} cases, {} file checks, {} bytes verified, {} bytes lost",
        CASES.load(Ordering::Relaxed),
        FILES_VERIFIED.load(Ordering::Relaxed),
        BYTES_VERIFIED.load(Ordering::Relaxed),
        BYTES_LOST.load(Ordering::Relaxed)
    ));
}

/// The interpreters a suite runs on: oldest and newest (all when heavy).
fn selected() -> Vec<Python> {
    let all = common::pythons();
    if common::heavy() || all.len() <= 2 {
        return all;
    }
    vec![all[0].clone(), all[all.len() - 1].clone()]
}

fn newest() -> Python {
    common::pythons().pop().expect("no CPython >= 3.7 found")
}

fn rules_of(py: &Python) -> PycRules {
    let facts = run_probe(&py.path, &ProbeConfig::default()).expect("probe");
    PycRules::from_facts(&facts).expect("rules")
}

/// A file's identity in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Content hash (SipHash-128) and length.
    File(u64, u64, usize),
    Link(Vec<u8>),
    Dir,
    Other,
}

fn sip128(bytes: &[u8]) -> (u64, u64) {
    let mut h = siphasher::sip128::SipHasher13::new_with_keys(1, 2);
    h.write(bytes);
    let v = siphasher::sip128::Hasher128::finish128(&h);
    (v.h1, v.h2)
}

/// True for paths kolosal may create or replace: pycs and anything below a
/// `__pycache__` directory.
fn pyc_area(rel: &Path) -> bool {
    let comps: Vec<Component> = rel.components().collect();
    let below_pycache = comps
        .iter()
        .take(comps.len().saturating_sub(1))
        .any(|c| c.as_os_str() == "__pycache__");
    below_pycache || rel.extension() == Some(OsStr::new("pyc"))
}

/// Every path under `root` (not following symlinks), keyed by its path
/// relative to root: content hash for files, target for symlinks.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
        let ft = e.file_type();
        let seen = if ft.is_symlink() {
            Seen::Link(fs::read_link(e.path()).unwrap().into_os_string().into_vec())
        } else if ft.is_dir() {
            Seen::Dir
        } else if ft.is_file() {
            match fs::read(e.path()) {
                Ok(b) => {
                    let (a, c) = sip128(&b);
                    Seen::File(a, c, b.len())
                }
                Err(_) => Seen::Other,
            }
        } else {
            Seen::Other
        };
        out.insert(rel, seen);
    }
    out
}

/// A temporary tree whose non-pyc files must survive every case intact.
struct Tree {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    /// A tree under `target/tmp`: a `.venv` below world-writable `/tmp` is
    /// never trusted (interpreter discovery's ownership rule).
    fn new_trusted() -> Tree {
        Tree {
            dir: tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn cache(&self) -> &Path {
        self.cache.path()
    }

    fn write(&self, rel: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.root().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, bytes).unwrap();
        p
    }

    /// Snapshot now; [`Guard::check`] later proves nothing outside the pyc
    /// area changed and nothing new appeared outside it.
    fn guard(&self) -> Guard {
        Guard {
            root: self.root().to_path_buf(),
            before: snapshot(self.root()),
        }
    }
}

struct Guard {
    root: PathBuf,
    before: BTreeMap<PathBuf, Seen>,
}

impl Guard {
    fn check(&self, case: &str) {
        let after = snapshot(&self.root);
        let mut checked = 0;
        let (mut verified, mut lost) = (0, 0);
        let mut first_lost = None;
        for (rel, seen) in &self.before {
            if pyc_area(rel) {
                continue;
            }
            let len = match seen {
                Seen::File(_, _, len) => *len,
                _ => 0,
            };
            verified += len;
            if after.get(rel) != Some(seen) {
                lost += len.max(1);
                first_lost.get_or_insert(rel.clone());
            }
            checked += 1;
        }
        BYTES_VERIFIED.fetch_add(verified, Ordering::Relaxed);
        BYTES_LOST.fetch_add(lost, Ordering::Relaxed);
        assert_eq!(
            lost, 0,
            "{case}: {lost} bytes lost; first: {:?} changed or vanished",
            first_lost
        );
        for rel in after.keys() {
            assert!(
                self.before.contains_key(rel) || pyc_area(rel) || rel.ends_with("__pycache__"),
                "{case}: kolosal created {} outside __pycache__",
                rel.display()
            );
        }
        FILES_VERIFIED.fetch_add(checked, Ordering::Relaxed);
    }
}

/// `kolosal-python ARGS` in `cwd` with `KOLOSAL_PYTHON=python` (unless
/// `env` overrides it) and a private cache.
fn launch(
    python: &Path,
    cwd: &Path,
    cache: &Path,
    args: &[&OsStr],
    env: &[(&str, &OsStr)],
) -> Output {
    let mut cmd = common::clean_command(common::launcher_bin());
    cmd.current_dir(cwd)
        .env("KOLOSAL_PYTHON", python)
        .env("KOLOSAL_CACHE_DIR", cache)
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    timed_output(cmd)
}

/// The bare interpreter, as the user would run it (bytecode writing off, so
/// the tree is left as it was; no output changes).
fn bare(python: &Path, cwd: &Path, args: &[&OsStr], env: &[(&str, &OsStr)]) -> Output {
    let mut cmd = common::clean_command(python);
    cmd.current_dir(cwd)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        if !k.starts_with("KOLOSAL_") {
            cmd.env(k, v);
        }
    }
    timed_output(cmd)
}

/// Runs with a 120 s guard against hangs.
fn timed_output(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let out = child.wait_with_output().expect("wait");
    let _ = tx.send(());
    // "After one launch" includes its background compile, if it left one.
    common::wait_background_of(&cmd);
    out
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// How kolosal's stderr relates to python's.
#[derive(Debug, PartialEq, Eq)]
enum Stderr {
    Identical,
    /// One extra `kolosal: ...` line before python's own bytes.
    ExtraLine(String),
}

/// Exit status and stdout must be identical; stderr identical or python's
/// bytes after one `kolosal:` line.
fn parity(case: &str, ours: &Output, theirs: &Output) -> Stderr {
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "{case}: exit status\nkolosal stderr: {}\npython stderr: {}",
        text(&ours.stderr),
        text(&theirs.stderr)
    );
    assert_eq!(
        ours.status.signal_or_none(),
        theirs.status.signal_or_none(),
        "{case}: signal"
    );
    assert_eq!(text(&ours.stdout), text(&theirs.stdout), "{case}: stdout");
    if ours.stderr == theirs.stderr {
        return Stderr::Identical;
    }
    let nl = ours
        .stderr
        .iter()
        .position(|&b| b == b'\n')
        .map_or(ours.stderr.len(), |i| i + 1);
    let (first, rest) = ours.stderr.split_at(nl);
    assert!(
        first.starts_with(b"kolosal: ") && rest == &theirs.stderr[..],
        "{case}: stderr differs\nkolosal:\n{}\npython:\n{}",
        text(&ours.stderr),
        text(&theirs.stderr)
    );
    Stderr::ExtraLine(text(first).trim_end().to_string())
}

trait SignalOrNone {
    fn signal_or_none(&self) -> Option<i32>;
}

impl SignalOrNone for std::process::ExitStatus {
    fn signal_or_none(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(self)
    }
}

/// Whether the pyc importlib would use for `source` (level 0, no prefix)
/// is there and loadable.
fn fresh(rules: &PycRules, source: &Path) -> bool {
    let cfile = pyc::cache_from_source(source, rules, 0, None, Path::new("/")).unwrap();
    pyc::check_loadable(source, &cfile, rules, HashCheckMode::Default).is_fresh()
}

fn cfile(rules: &PycRules, source: &Path) -> PathBuf {
    pyc::cache_from_source(source, rules, 0, None, Path::new("/")).unwrap()
}

fn first_line(b: &[u8]) -> String {
    let t = text(b);
    t.lines().next().unwrap_or("").to_string()
}

fn last_line(b: &[u8]) -> String {
    let t = text(b);
    t.lines().last().unwrap_or("").to_string()
}

// ------------------------------------------------------------ 1. bad source

/// What a bad-source module holds.
fn bad_sources() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("syntax_error", b"def f(:\n    pass\n".to_vec()),
        ("indent_error", b"def f():\nreturn 1\n".to_vec()),
        ("tab_error", b"if 1:\n\tx = 1\n        y = 2\n".to_vec()),
        ("nul_byte", b"x = 1\n\0\n".to_vec()),
        ("invalid_utf8", b"s = '\xff\xfe'\n".to_vec()),
        (
            "cookie_latin1",
            b"# -*- coding: latin-1 -*-\nS = 'caf\xe9'\n".to_vec(),
        ),
        (
            "cookie_unknown",
            b"# coding: no-such-codec\nx = 1\n".to_vec(),
        ),
        ("bom", b"\xef\xbb\xbfS = 'bom'\n".to_vec()),
        (
            "bom_cookie_clash",
            b"\xef\xbb\xbf# coding: latin-1\nx = 1\n".to_vec(),
        ),
        (
            "crlf",
            b"def f():\r\n    return 'crlf'\r\nS = f()\r\n".to_vec(),
        ),
        ("cr_only", b"def f():\r    return 'cr'\rS = f()\r".to_vec()),
        (
            "nested_60",
            format!("S = {}1{}\n", "(".repeat(60), ")".repeat(60)).into_bytes(),
        ),
        (
            "nested_300",
            format!("S = {}1{}\n", "(".repeat(300), ")".repeat(300)).into_bytes(),
        ),
        (
            "unary_100k",
            format!("S = {}1\n", "-".repeat(100_000)).into_bytes(),
        ),
        (
            "lambda_5k",
            format!("S = {}1\n", "lambda: ".repeat(5000)).into_bytes(),
        ),
    ]
}

/// Runs every bad-source case on `py`: stderr must be python's, byte for
/// byte (the launcher says nothing about a source's own error). Returns the
/// number of cases.
fn bad_source_cases(py: &Python) -> usize {
    let t = Tree::new();
    let rules = rules_of(py);
    let good1 = t.write("good1.py", "G1 = 1\n");
    let good2 = t.write("good2.py", "G2 = 2\n");
    let mut identical = 0;
    for (name, body) in bad_sources() {
        let case = format!("bad source {name} ({}.{})", py.version.0, py.version.1);
        let module = t.write(format!("{name}.py"), &body);
        let main = format!("main_{name}.py");
        t.write(
            &main,
            format!("import good1\nimport {name}\nimport good2\nprint('ran', getattr({name}, 'S', None))\n"),
        );
        let _ = fs::remove_dir_all(t.root().join("__pycache__"));
        let guard = t.guard();
        let ours = launch(&py.path, t.root(), t.cache(), &[os(&main)], &[]);
        let theirs = bare(&py.path, t.root(), &[os(&main)], &[]);
        guard.check(&case);
        let how = parity(&case, &ours, &theirs);
        assert!(fresh(&rules, &good1), "{case}: good1 has no fresh pyc");
        assert!(
            fresh(&rules, &good2),
            "{case}: good2 (never imported by python) has no fresh pyc"
        );
        let ran = theirs.status.success();
        if ran {
            assert!(
                fresh(&rules, &module),
                "{case}: the module compiles but has no pyc"
            );
        } else {
            assert!(
                !cfile(&rules, &module).exists(),
                "{case}: a pyc for a module python rejects"
            );
        }
        let python_says = if ran {
            first_line(&theirs.stdout)
        } else {
            last_line(&theirs.stderr)
        };
        assert_eq!(
            how,
            Stderr::Identical,
            "{case}: stderr differs from python's"
        );
        identical += 1;
        row(
            &case,
            "other modules precompiled; stderr byte-identical to python's",
            &python_says,
        );
    }
    identical
}

/// Bad sources reach the user exactly as python reports them: the launcher
/// says nothing about an error compile() raises for the source (syntax
/// errors, NUL bytes before 3.12, nesting too deep), so stderr is python's
/// byte for byte.
#[test]
fn bad_sources_reach_the_user_as_python_reports_them() {
    let pythons = selected();
    common::report("reliability bad sources", &pythons);
    for py in &pythons {
        let same = bad_source_cases(py);
        common::note(&format!(
            "[reliability] bad sources on {}: {same} byte-identical",
            py.label()
        ));
    }
    totals("bad sources");
}

#[test]
fn ten_megabyte_generated_module() {
    let py = newest();
    common::report("reliability 10 MB module", std::slice::from_ref(&py));
    let t = Tree::new();
    let rules = rules_of(&py);
    let line = format!("    b\"{}\"\n", "\\x00\\x01abc".repeat(10));
    let mut src = String::from("DATA = (\n");
    while src.len() < 10 * 1024 * 1024 {
        src.push_str(&line);
    }
    src.push_str(")\nS = len(DATA)\n");
    let big = t.write("big.py", &src);
    t.write("main.py", "import big\nprint(big.S)\n");
    let guard = t.guard();
    let t0 = Instant::now();
    let ours = launch(&py.path, t.root(), t.cache(), &[os("main.py")], &[]);
    let took = t0.elapsed();
    let theirs = bare(&py.path, t.root(), &[os("main.py")], &[]);
    guard.check("10 MB module");
    assert_eq!(parity("10 MB module", &ours, &theirs), Stderr::Identical);
    assert!(fresh(&rules, &big));
    row(
        "10 MB generated module",
        &format!("compiled by one worker, cold launch {took:.1?}"),
        &format!("program output identical ({})", first_line(&ours.stdout)),
    );
}

#[test]
fn sources_that_change_or_vanish_before_compile() {
    let py = newest();
    common::report("reliability changing sources", std::slice::from_ref(&py));
    let t = Tree::new();
    let rules = rules_of(&py);
    let mut jobs = Vec::new();
    for name in ["steady", "vanishes", "edited", "replaced_by_dir"] {
        let s = t.write(format!("{name}.py"), format!("V = '{name}'\n"));
        jobs.push(CompileJob {
            pyc: PycTarget {
                cfile: cfile(&rules, &s),
                source: s,
            },
            optimize: 0,
            invalidation: InvalidationMode::Timestamp,
        });
    }
    // Between the scan (jobs made) and the compile:
    fs::remove_file(t.root().join("vanishes.py")).unwrap();
    fs::write(t.root().join("edited.py"), "V = 'edited, and longer'\n").unwrap();
    fs::remove_file(t.root().join("replaced_by_dir.py")).unwrap();
    fs::create_dir(t.root().join("replaced_by_dir.py")).unwrap();
    let guard = t.guard();
    let out = compile_all(&jobs, &PoolConfig::new(&py.path), &|_, _| {}).unwrap();
    guard.check("changing sources");
    assert!(out[0].is_written());
    assert!(
        matches!(&out[1], Outcome::Failed { message } if message.contains("vanishes.py") && !message.contains('\n')),
        "{:?}",
        out[1]
    );
    assert!(out[2].is_written());
    assert!(
        fresh(&rules, &t.root().join("edited.py")),
        "the edited source's pyc must match its new content"
    );
    assert!(matches!(&out[3], Outcome::Failed { .. }), "{:?}", out[3]);
    assert!(!out[1].is_source_error() && !out[3].is_source_error());
    row(
        "source vanishes before compile",
        "that job fails with one line, others written",
        &out[1].describe(),
    );
    row(
        "source edited before compile",
        "pyc written for the new content (stat before read)",
        "nothing",
    );
    row(
        "source replaced by a directory",
        "that job fails with one line",
        &out[3].describe(),
    );

    // Edited while compiling: a writer flips the source between two
    // versions; afterwards a pyc that looks fresh must hold the current text.
    let src = t.write("racy.py", "V = 'a'\n");
    let job = CompileJob {
        pyc: PycTarget {
            cfile: cfile(&rules, &src),
            source: src.clone(),
        },
        optimize: 0,
        invalidation: InvalidationMode::Timestamp,
    };
    // Each round starts the writer a little later, so its writes land
    // before, during and after the worker's stat + read.
    let mut lied = 0;
    let mut fresh_after = 0;
    let rounds = 16;
    for round in 0..rounds {
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(10 + 3 * round));
                for i in 0..12 {
                    let body = if (i + round) % 2 == 0 {
                        "V = 'bb'\n"
                    } else {
                        "V = 'a'\n"
                    };
                    fs::write(&src, body).unwrap();
                    std::thread::sleep(Duration::from_micros(400));
                }
            });
            let _ = compile_all(
                std::slice::from_ref(&job),
                &PoolConfig::new(&py.path),
                &|_, _| {},
            );
        });
        // Now stable: a pyc that claims freshness must hold the current text.
        if fresh(&rules, &src) {
            fresh_after += 1;
            let o = bare(
                &py.path,
                t.root(),
                &[os("-c"), os("import racy; print(racy.V)")],
                &[],
            );
            let want = if fs::read_to_string(&src).unwrap().contains("bb") {
                "bb"
            } else {
                "a"
            };
            if text(&o.stdout).trim() != want {
                lied += 1;
            }
        }
    }
    assert_eq!(
        lied, 0,
        "a pyc claimed freshness for content the source no longer has"
    );
    row(
        &format!("source rewritten during compile ({rounds} rounds)"),
        &format!("a pyc never claims freshness for text the source no longer has ({fresh_after} rounds ended fresh, the rest stale)"),
        "nothing",
    );
    totals("changing sources");
}

// ------------------------------------------------------------- 2. odd paths

#[test]
fn odd_paths() {
    let pythons = selected();
    common::report("reliability odd paths", &pythons);
    for py in &pythons {
        odd_paths_on(py);
    }
    totals("odd paths");
}

fn odd_paths_on(py: &Python) {
    let v = format!("{}.{}", py.version.0, py.version.1);
    let rules = rules_of(py);

    // Spaces, a newline and non-UTF-8 bytes in directory and file names.
    let t = Tree::new();
    let weird = PathBuf::from(OsString::from_vec(
        b"sp ace/new\nline/bad\xff\xfe name".to_vec(),
    ));
    let dir = t.root().join(&weird);
    t.write(
        weird.join("main.py"),
        "import helper, pkg.mod\nprint(helper.H, pkg.mod.M)\n",
    );
    let helper = t.write(weird.join("helper.py"), "H = 'h'\n");
    let init = t.write(weird.join("pkg/__init__.py"), "");
    let m = t.write(weird.join("pkg/mod.py"), "M = 'm'\n");
    let odd_file = t.write(
        weird.join(OsStr::from_bytes(b"data \xff\nfile.py")),
        "X = 1\n",
    );
    let guard = t.guard();
    let ours = launch(&py.path, &dir, t.cache(), &[os("main.py")], &[]);
    let theirs = bare(&py.path, &dir, &[os("main.py")], &[]);
    assert_eq!(parity("weird names", &ours, &theirs), Stderr::Identical);
    for s in [&helper, &init, &m] {
        assert!(fresh(&rules, s), "weird names ({v}): {}", s.display());
    }
    // kolosal compile on the same tree also takes the non-importable file name.
    let c = common::clean_command(common::kolosal_bin())
        .env("KOLOSAL_CACHE_DIR", t.cache())
        .args([
            os("compile"),
            os("-q"),
            os("--python"),
            py.path.as_os_str(),
            t.root().as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(c.status.success(), "kolosal compile: {}", text(&c.stderr));
    assert!(fresh(&rules, &odd_file));
    guard.check("weird names");
    row(
        &format!("spaces, newline, non-UTF-8 bytes in names ({v})"),
        "closure precompiled; kolosal compile too",
        "output identical to python's",
    );

    // Very long paths: one just under PATH_MAX for the pyc, one whose pyc
    // path is over it (neither python nor kolosal can write that pyc).
    for (label, target_len) in [
        ("pyc path just under PATH_MAX", 4000usize),
        ("pyc path over PATH_MAX", 4075),
    ] {
        let t = Tree::new();
        let mut rel = PathBuf::new();
        let base = t.root().as_os_str().len();
        while base + rel.as_os_str().len() + 250 < target_len {
            rel.push("d".repeat(200));
        }
        let pad = target_len - base - rel.as_os_str().len() - 2;
        rel.push("e".repeat(pad.clamp(1, 250)));
        let dir = t.root().join(&rel);
        fs::create_dir_all(&dir).unwrap();
        let helper = t.write(rel.join("h.py"), "H = 'deep'\n");
        t.write(rel.join("main.py"), "import h\nprint(h.H)\n");
        let guard = t.guard();
        let ours = launch(&py.path, &dir, t.cache(), &[os("main.py")], &[]);
        let theirs = bare(&py.path, &dir, &[os("main.py")], &[]);
        let how = parity(label, &ours, &theirs);
        guard.check(label);
        let pyc_len = cfile(&rules, &helper).as_os_str().len();
        if pyc_len < 4096 {
            assert!(fresh(&rules, &helper), "{label}: {pyc_len} bytes");
        }
        row(
            &format!("{label} ({pyc_len} bytes, {v})"),
            if pyc_len < 4096 {
                "precompiled"
            } else {
                "not precompiled (ENAMETOOLONG), program runs"
            },
            &match how {
                Stderr::Identical => "output identical to python's".to_string(),
                Stderr::ExtraLine(l) => l,
            },
        );
    }

    // Symlinked source and symlinked script.
    let t = Tree::new();
    let real = t.write("lib/real_helper.py", "H = 'via link'\n");
    std::os::unix::fs::symlink(&real, t.root().join("app_helper_link.py")).unwrap();
    t.write("app/main.py", "import helper\nprint(helper.H)\n");
    std::os::unix::fs::symlink("../lib/real_helper.py", t.root().join("app/helper.py")).unwrap();
    std::os::unix::fs::symlink("app/main.py", t.root().join("linked_main.py")).unwrap();
    let guard = t.guard();
    let ours = launch(&py.path, t.root(), t.cache(), &[os("linked_main.py")], &[]);
    let theirs = bare(&py.path, t.root(), &[os("linked_main.py")], &[]);
    assert_eq!(parity("symlinks", &ours, &theirs), Stderr::Identical);
    // sys.path[0] is the script's real directory; the pyc lives beside the link.
    assert!(fresh(&rules, &t.root().join("app/helper.py")));
    guard.check("symlinks");
    row(
        &format!("symlinked script and module ({v})"),
        "pyc beside the link, stamped with the target's stat",
        "output identical",
    );

    // Symlink loops on sys.path and inside a tree.
    let t = Tree::new();
    std::os::unix::fs::symlink("loop_a", t.root().join("loop_b")).unwrap();
    std::os::unix::fs::symlink("loop_b", t.root().join("loop_a")).unwrap();
    std::os::unix::fs::symlink(".", t.root().join("pkg_self")).unwrap();
    let lm = t.write("lib/m.py", "M = 'm'\n");
    std::os::unix::fs::symlink("..", t.root().join("lib/up")).unwrap();
    t.write("main.py", "import m\nprint(m.M)\n");
    let pp = format!(
        "{0}/loop_a:{0}/pkg_self/pkg_self:{0}/lib",
        t.root().display()
    );
    let guard = t.guard();
    let env = [("PYTHONPATH", os(&pp))];
    let ours = launch(&py.path, t.root(), t.cache(), &[os("main.py")], &env);
    let theirs = bare(&py.path, t.root(), &[os("main.py")], &env);
    assert_eq!(parity("symlink loops", &ours, &theirs), Stderr::Identical);
    assert!(fresh(&rules, &lm));
    let c = common::clean_command(common::kolosal_bin())
        .env("KOLOSAL_CACHE_DIR", t.cache())
        .args([
            os("compile"),
            os("-q"),
            os("--python"),
            py.path.as_os_str(),
            t.root().as_os_str(),
        ])
        .output()
        .unwrap();
    guard.check("symlink loops");
    row(
        &format!("symlink loops on PYTHONPATH and in a tree ({v})"),
        &format!(
            "launch precompiles; kolosal compile terminates (exit {:?})",
            c.status.code()
        ),
        "output identical",
    );

    // __pycache__ is a regular file.
    let t = Tree::new();
    t.write("main.py", "import blocked\nprint(blocked.B)\n");
    t.write("blocked.py", "B = 'b'\n");
    t.write("__pycache__", "I am a file\n");
    let guard = t.guard();
    let ours = launch(&py.path, t.root(), t.cache(), &[os("main.py")], &[]);
    let theirs = bare(&py.path, t.root(), &[os("main.py")], &[]);
    let how = parity("__pycache__ file", &ours, &theirs);
    guard.check("__pycache__ file");
    assert_eq!(
        fs::read(t.root().join("__pycache__")).unwrap(),
        b"I am a file\n"
    );
    row(
        &format!("__pycache__ is a regular file ({v})"),
        "left alone; module not precompiled",
        &describe(how),
    );

    // A pyc target that is a symlink: refused, link and target untouched.
    let t = Tree::new();
    let src = t.write("victim.py", "V = 1\n");
    t.write("main.py", "import victim\nprint(victim.V)\n");
    let decoy = t.write("decoy.txt", "precious bytes\n");
    let target = cfile(&rules, &src);
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&decoy, &target).unwrap();
    let guard = t.guard();
    let ours = launch(&py.path, t.root(), t.cache(), &[os("main.py")], &[]);
    let theirs = bare(&py.path, t.root(), &[os("main.py")], &[]);
    let how = parity("pyc symlink (launch)", &ours, &theirs);
    let c = common::clean_command(common::kolosal_bin())
        .env("KOLOSAL_CACHE_DIR", t.cache())
        .args([
            os("compile"),
            os("--force"),
            os("--python"),
            py.path.as_os_str(),
            t.root().as_os_str(),
        ])
        .output()
        .unwrap();
    guard.check("pyc symlink");
    assert!(
        fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    assert_eq!(fs::read_link(&target).unwrap(), decoy);
    assert_eq!(fs::read(&decoy).unwrap(), b"precious bytes\n");
    assert!(
        !c.status.success(),
        "kolosal compile must report the refusal"
    );
    row(
        &format!("pyc target is a symlink ({v})"),
        "refused like py_compile; link and its target untouched",
        &format!(
            "launch: {}; compile: {}",
            describe(how),
            last_line(&c.stdout).trim().to_string() + &last_line(&c.stderr)
        ),
    );
}

fn describe(how: Stderr) -> String {
    match how {
        Stderr::Identical => "output identical to python's".into(),
        Stderr::ExtraLine(l) => l,
    }
}

fn euid_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Mounts (tmpfs or a read-only bind); `None` when not permitted here.
fn mount(args: &[&OsStr]) -> Option<()> {
    let st = Command::new("mount")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .ok()?;
    st.success().then_some(())
}

fn umount(dir: &Path) {
    let _ = Command::new("umount").arg(dir).status();
}

#[test]
fn read_only_tree_full_disk_unreadable_dirs() {
    let py = newest();
    common::report(
        "reliability read-only / full disk",
        std::slice::from_ref(&py),
    );
    let rules = rules_of(&py);

    // Read-only tree: a read-only bind mount (root ignores permission bits).
    let t = Tree::new();
    t.write("src/main.py", "import helper\nprint(helper.H)\n");
    t.write("src/helper.py", "H = 'ro'\n");
    let ro = t.root().join("ro");
    fs::create_dir(&ro).unwrap();
    let mounted = mount(&[
        os("--bind"),
        t.root().join("src").as_os_str(),
        ro.as_os_str(),
    ])
    .and_then(|()| mount(&[os("-o"), os("remount,bind,ro"), ro.as_os_str()]));
    if mounted.is_some() {
        let guard = t.guard();
        let ours = launch(&py.path, &ro, t.cache(), &[os("main.py")], &[]);
        let again = launch(
            &py.path,
            &ro,
            t.cache(),
            &[os("main.py")],
            &[("KOLOSAL_LOG", os("debug"))],
        );
        let theirs = bare(&py.path, &ro, &[os("main.py")], &[]);
        guard.check("read-only tree");
        umount(&ro);
        assert_eq!(parity("read-only tree", &ours, &theirs), Stderr::Identical);
        assert!(
            text(&again.stderr).contains("warm"),
            "second launch should be warm: {}",
            text(&again.stderr)
        );
        let prefix = t.cache().join("pycache");
        let n = walkdir::WalkDir::new(&prefix)
            .into_iter()
            .flatten()
            .filter(|e| e.path().extension() == Some(OsStr::new("pyc")))
            .count();
        assert!(n > 0, "no pyc under the fallback prefix");
        row(
            "read-only tree (ro bind mount)",
            &format!("{n} pycs under <cache>/pycache via PYTHONPYCACHEPREFIX; 2nd launch warm"),
            "output identical",
        );
    } else {
        umount(&ro);
        row(
            "read-only tree",
            "SKIPPED: mount not permitted here (as root, chmod alone does not stop writes)",
            "-",
        );
    }

    // Full disk: a 256 KiB tmpfs holding the tree and the cache, filled up.
    let t = Tree::new();
    let small = t.root().join("small");
    fs::create_dir(&small).unwrap();
    if mount(&[
        os("-t"),
        os("tmpfs"),
        os("-o"),
        os("size=256k"),
        os("tmpfs"),
        small.as_os_str(),
    ])
    .is_some()
    {
        for i in 0..8 {
            fs::write(
                small.join(format!("m{i}.py")),
                format!("V{i} = {i}\n{}\n", "# pad\n".repeat(200)),
            )
            .unwrap();
        }
        let imports: String = (0..8).map(|i| format!("import m{i}\n")).collect();
        fs::write(
            small.join("main.py"),
            format!("{imports}print('full disk ok')\n"),
        )
        .unwrap();
        // Fill what is left.
        let mut ballast = fs::File::create(small.join("ballast")).unwrap();
        let chunk = vec![0u8; 4096];
        while std::io::Write::write_all(&mut ballast, &chunk).is_ok() {}
        drop(ballast);
        let before = snapshot(&small);
        let cache = small.join("cache");
        let ours = launch(&py.path, &small, &cache, &[os("main.py")], &[]);
        let theirs = bare(&py.path, &small, &[os("main.py")], &[]);
        let after = snapshot(&small);
        umount(&small);
        for (rel, seen) in &before {
            assert_eq!(
                after.get(rel),
                Some(seen),
                "full disk: {} changed",
                rel.display()
            );
        }
        let leftovers: Vec<_> = after
            .keys()
            .filter(|k| {
                !before.contains_key(*k) && !k.ends_with("__pycache__") && !k.starts_with("cache")
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "full disk left files behind: {leftovers:?}"
        );
        FILES_VERIFIED.fetch_add(before.len(), Ordering::Relaxed);
        let how = parity("full disk", &ours, &theirs);
        row(
            "full disk (256 KiB tmpfs, tree and cache on it)",
            "nothing written, no temp files left, program runs",
            &describe(how),
        );
    } else {
        row("full disk", "SKIPPED: tmpfs mount not permitted here", "-");
    }

    // Unreadable directories.
    let t = Tree::new();
    t.write("main.py", "import locked.m\nprint(locked.m.M)\n");
    let m = t.write("locked/m.py", "M = 'locked'\n");
    t.write("locked/__init__.py", "");
    fs::set_permissions(t.root().join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    let guard = t.guard();
    let ours = launch(&py.path, t.root(), t.cache(), &[os("main.py")], &[]);
    let theirs = bare(&py.path, t.root(), &[os("main.py")], &[]);
    fs::set_permissions(t.root().join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    guard.check("unreadable dir");
    let how = parity("unreadable dir", &ours, &theirs);
    if euid_root() {
        assert!(fresh(&rules, &m));
        row("unreadable directory (mode 000)", "running as root: permission bits are ignored, so it is read and precompiled like python reads it", &describe(how));
    } else {
        row(
            "unreadable directory (mode 000)",
            "skipped by kolosal as by python",
            &describe(how),
        );
    }
    totals("read-only / full disk");
}

// ---------------------------------------------------------- 3. corrupt state

/// Makes a corrupt pyc from (source, a good pyc of the same stat).
type PycMaker = Box<dyn Fn(&Path, &Path) -> Vec<u8>>;
/// Corrupts a cache file from (its bytes, another cache file's bytes).
type Corrupter = Box<dyn Fn(&[u8], &[u8]) -> Vec<u8>>;
/// Extra environment for one launch.
type EnvPairs<'a> = Vec<(&'a str, OsString)>;

#[test]
fn corrupt_pycs_are_rewritten() {
    let pythons = selected();
    common::report("reliability corrupt pycs", &pythons);
    let other = common::pythons();
    for py in &pythons {
        let v = format!("{}.{}", py.version.0, py.version.1);
        let rules = rules_of(py);
        let t = Tree::new();
        let mut names = Vec::new();
        let foreign_py = other
            .iter()
            .find(|o| (o.version.0, o.version.1) != (py.version.0, py.version.1))
            .expect("a second CPython version");
        let kinds: Vec<(&str, PycMaker)> = vec![
            ("empty", Box::new(|_, _| Vec::new())),
            (
                "three_bytes",
                Box::new(|_, good| fs::read(good).unwrap()[..3].to_vec()),
            ),
            (
                "header_only",
                Box::new(|_, good| fs::read(good).unwrap()[..16].to_vec()),
            ),
            (
                // Cut inside the first MIN_BODY bytes of the body. (A cut
                // further in passes kolosal's cheap check, as it passes
                // importlib's header check: see docs/reliability.md.)
                "truncated_body",
                Box::new(|_, good| fs::read(good).unwrap()[..16 + 20].to_vec()),
            ),
            (
                "garbage",
                Box::new(|_, _| {
                    b"\x89PNG\r\n\x1a\n garbage garbage garbage garbage garbage garbage garbage garbage".to_vec()
                }),
            ),
            (
                "valid_header_garbage_body",
                Box::new(|_, good| {
                    let mut b = fs::read(good).unwrap();
                    for x in &mut b[16..] {
                        *x = 0x5a;
                    }
                    b
                }),
            ),
            (
                "valid_header_zero_body",
                Box::new(|_, good| {
                    let mut b = fs::read(good).unwrap();
                    for x in &mut b[16..] {
                        *x = 0;
                    }
                    b
                }),
            ),
        ];
        // Reference pycs: one compiled by this interpreter, one by another version.
        let probe_src = t.write("probe_src.py", format!("P = 1\n# {}\n", "x".repeat(100)));
        let good = compile_one(py, &probe_src, &rules);
        let foreign_rules = rules_of(foreign_py);
        let foreign = compile_one(foreign_py, &probe_src, &foreign_rules);
        let mut imports = String::new();
        for (name, make) in &kinds {
            let s = t.write(format!("c_{name}.py"), format!("V = '{name}'\n"));
            // Same size and mtime as probe_src, so headers copied from its
            // pyc validate.
            copy_stat(&probe_src, &s);
            let bytes = make(&s, &good);
            let p = cfile(&rules, &s);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, bytes).unwrap();
            imports.push_str(&format!("import c_{name}\n"));
            names.push((name.to_string(), s));
        }
        let s = t.write("c_other_version.py", "V = 'ov'\n");
        copy_stat(&probe_src, &s);
        fs::write(cfile(&rules, &s), fs::read(&foreign).unwrap()).unwrap();
        imports.push_str("import c_other_version\n");
        names.push(("other_version".into(), s));
        t.write("main.py", format!("{imports}print('all imported')\n"));
        let _ = fs::remove_file(cfile(&rules, &probe_src));
        let guard = t.guard();
        // Bare python on the corrupt state first (it writes nothing).
        let theirs = bare(&py.path, t.root(), &[os("main.py")], &[]);
        let ours = launch(&py.path, t.root(), t.cache(), &[os("main.py")], &[]);
        guard.check("corrupt pycs");
        assert!(
            ours.status.success(),
            "kolosal ({v}): {}",
            text(&ours.stderr)
        );
        assert_eq!(text(&ours.stdout), "all imported\n");
        assert!(ours.stderr.is_empty(), "{}", text(&ours.stderr));
        for (name, s) in &names {
            assert!(fresh(&rules, s), "{name} ({v}) not rewritten");
        }
        row(
            &format!("corrupt pycs: empty, 3 bytes, header only, truncated, garbage, valid header + garbage/zero body, other version ({v})"),
            "all 8 rewritten before exec",
            &format!("program runs; bare python: {}", if theirs.status.success() { "runs".to_string() } else { last_line(&theirs.stderr) }),
        );
    }
    totals("corrupt pycs");
}

/// Compiles `src` with `py` (py_compile) to a side file; returns its path.
fn compile_one(py: &Python, src: &Path, rules: &PycRules) -> PathBuf {
    let out = src.with_extension(format!("{}.ref", rules.cache_tag.as_deref().unwrap()));
    let o = py
        .cmd()
        .args([os("-c"), os("import py_compile,sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)"), src.as_os_str(), out.as_os_str()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    out
}

fn copy_stat(from: &Path, to: &Path) {
    let m = fs::metadata(from).unwrap();
    let body = fs::read(to).unwrap();
    let mut body = body;
    body.resize(m.len() as usize, b' ');
    if body.last() != Some(&b'\n') {
        let n = body.len();
        body[n - 1] = b'\n';
    }
    fs::write(to, &body).unwrap();
    let ft = nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec());
    nix::sys::stat::utimensat(
        None,
        to,
        &ft,
        &ft,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .unwrap();
}

#[test]
fn corrupt_cache_state() {
    let py = newest();
    common::report("reliability corrupt cache", std::slice::from_ref(&py));
    let t = Tree::new();
    t.write("main.py", "import helper, json\nprint(helper.H)\n");
    t.write("helper.py", "H = 'cache'\n");
    let guard = t.guard();
    let reference = bare(&py.path, t.root(), &[os("main.py")], &[]);
    let first = launch(&py.path, t.root(), t.cache(), &[os("main.py")], &[]);
    assert_eq!(parity("cold", &first, &reference), Stderr::Identical);
    let files: Vec<PathBuf> = walkdir::WalkDir::new(t.cache())
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    assert!(
        files.len() >= 3,
        "expected probe, import and manifest files: {files:?}"
    );
    let originals: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    let corruptions: Vec<(&str, Corrupter)> = vec![
        ("truncated", Box::new(|b, _| b[..b.len() / 2].to_vec())),
        ("empty", Box::new(|_, _| Vec::new())),
        (
            "garbage",
            Box::new(|b, _| {
                b.iter()
                    .map(|x| x.wrapping_mul(31).wrapping_add(7))
                    .collect()
            }),
        ),
        (
            "bit flip mid-file",
            Box::new(|b, _| {
                let mut v = b.to_vec();
                if let Some(x) = v.get_mut(b.len() / 2) {
                    *x ^= 0x40;
                }
                v
            }),
        ),
        (
            "foreign (another cache file)",
            Box::new(|_, other| other.to_vec()),
        ),
    ];
    let mut runs = 0;
    for (i, f) in files.iter().enumerate() {
        let other = &originals[(i + 1) % originals.len()];
        for (what, make) in &corruptions {
            fs::write(f, make(&originals[i], other)).unwrap();
            let o = launch(&py.path, t.root(), t.cache(), &[os("main.py")], &[]);
            assert_eq!(
                parity(&format!("{what} {}", f.display()), &o, &reference),
                Stderr::Identical
            );
            runs += 1;
        }
        fs::write(f, &originals[i]).unwrap();
    }
    row(
        &format!(
            "corrupt cache files: {} files x 5 corruptions (probe, import cache, manifest)",
            files.len()
        ),
        &format!("{runs} launches, each re-derives what it needs"),
        "output identical, no message",
    );

    // The cache dir is a file; the cache dir is below a file.
    let file = t.cache().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    for (what, dir) in [
        ("cache dir is a file", file.clone()),
        ("cache dir below a file", file.join("sub")),
    ] {
        let o = launch(&py.path, t.root(), &dir, &[os("main.py")], &[]);
        assert_eq!(parity(what, &o, &reference), Stderr::Identical);
        assert_eq!(fs::read(&file).unwrap(), b"x");
        row(what, "runs without a cache", "output identical, no message");
    }
    guard.check("corrupt cache");
    totals("corrupt cache");
}

/// Swaps the interpreter behind a stable path (an in-place upgrade): the
/// program must run on the new one, and get pycs for the new version (the
/// manifest stamps the exec'd path and the binary it resolved to).
#[test]
fn interpreter_upgraded_in_place() {
    let all = common::pythons();
    assert!(all.len() >= 2, "needs two CPython versions");
    let (old, new) = (&all[all.len() - 2], &all[all.len() - 1]);
    let t = Tree::new();
    let bin = tempfile::tempdir().unwrap();
    let link = bin.path().join("python");
    std::os::unix::fs::symlink(&old.path, &link).unwrap();
    let helper = t.write("app/helper.py", "H = 'x'\n");
    t.write(
        "app/main.py",
        "import helper, sys\nprint(sys.version_info[:2])\n",
    );
    let guard = t.guard();
    let o = launch(&link, t.root(), t.cache(), &[os("app/main.py")], &[]);
    assert_eq!(
        text(&o.stdout),
        format!("({}, {})\n", old.version.0, old.version.1)
    );
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&new.path, &link).unwrap();
    let o = launch(&link, t.root(), t.cache(), &[os("app/main.py")], &[]);
    guard.check("upgrade in place");
    assert_eq!(
        text(&o.stdout),
        format!("({}, {})\n", new.version.0, new.version.1),
        "{}",
        text(&o.stderr)
    );
    let new_rules = rules_of(new);
    assert!(
        fresh(&new_rules, &helper),
        "after the swap the warm manifest still held: no pyc for the new interpreter"
    );
    row(
        &format!(
            "interpreter upgraded in place ({} -> {} behind one symlink)",
            old.label(),
            new.label()
        ),
        "new interpreter detected, pycs written",
        "correct output",
    );
}

#[test]
fn venv_deleted_under_a_cached_manifest() {
    let py = newest();
    common::report("reliability venv deleted", std::slice::from_ref(&py));
    let t = Tree::new_trusted();
    t.write(
        "main.py",
        "import sys, helper\nprint(sys.prefix == sys.base_prefix)\n",
    );
    t.write("helper.py", "H = 1\n");
    let guard = t.guard();
    let o = py
        .cmd()
        .args([
            os("-m"),
            os("venv"),
            os("--without-pip"),
            t.root().join(".venv").as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let scratch = tempfile::tempdir().unwrap();
    let py_dir = py.path_dir(scratch.path());
    let run = |extra: &[(&str, &OsStr)]| {
        let mut cmd = common::clean_command(common::launcher_bin());
        cmd.current_dir(t.root())
            .env("KOLOSAL_CACHE_DIR", t.cache())
            .arg("main.py");
        // PATH: only the directory of the newest CPython (as `python3`).
        cmd.env("PATH", &py_dir);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        timed_output(cmd)
    };
    assert_eq!(text(&run(&[]).stdout), "False\n", "the .venv runs");
    assert_eq!(text(&run(&[]).stdout), "False\n", "warm");
    fs::remove_dir_all(t.root().join(".venv")).unwrap();
    let o = run(&[]);
    assert_eq!(
        text(&o.stdout),
        "True\n",
        "after deletion PATH's python runs: {}",
        text(&o.stderr)
    );
    assert!(o.stderr.is_empty(), "{}", text(&o.stderr));
    let gone = t.root().join(".venv/bin/python");
    let o = run(&[("KOLOSAL_PYTHON", gone.as_os_str())]);
    assert_eq!(o.status.code(), Some(127));
    assert_eq!(text(&o.stderr).lines().count(), 1, "{}", text(&o.stderr));
    let _ = fs::remove_dir_all(t.root().join(".venv"));
    guard.check("venv deleted");
    row(
        "venv deleted under a cached manifest",
        "manifest misses; PATH's interpreter runs the program",
        "output of the base interpreter, no message",
    );
    row(
        "KOLOSAL_PYTHON names a deleted venv's python",
        "exit 127",
        &first_line(&o.stderr),
    );
}

// ---------------------------------------------------------------- 4. faults

#[test]
fn hung_worker_times_out() {
    let py = newest();
    common::report("reliability hang", std::slice::from_ref(&py));
    let t = Tree::new();
    let rules = rules_of(&py);
    let mut jobs = Vec::new();
    for name in ["a", "kolosal_hook_hang", "b", "c"] {
        let s = t.write(format!("{name}.py"), format!("N = '{name}'\n"));
        jobs.push(CompileJob {
            pyc: PycTarget {
                cfile: cfile(&rules, &s),
                source: s,
            },
            optimize: 0,
            invalidation: InvalidationMode::Timestamp,
        });
    }
    let mut config = PoolConfig::new(&py.path);
    config.test_hooks = true;
    config.workers = 1;
    config.timeout = Duration::from_millis(1500);
    let t0 = Instant::now();
    let out = compile_all(&jobs, &config, &|_, _| {}).unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(matches!(&out[1], Outcome::Failed { message } if message.contains("timed out")));
    for i in [0, 2, 3] {
        assert!(out[i].is_written(), "{:?}", out[i]);
    }
    row(
        "compile worker hangs",
        &format!("killed after the 1.5 s time-out, fresh worker finishes the rest ({took:.1?})"),
        &out[1].describe(),
    );
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(task.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
            }
        }
    }
    out
}

#[test]
fn killed_workers_and_killed_compiles() {
    let py = newest();
    common::report("reliability SIGKILL", std::slice::from_ref(&py));
    let rules = rules_of(&py);
    let t = Tree::new();
    let mut sources = Vec::new();
    for i in 0..400 {
        let body: String = (0..60)
            .map(|j| format!("def f{j}(x):\n    return [x * {i}, {j}, 'v{i}_{j}']\n"))
            .collect();
        sources.push(t.write(format!("pkg{}/m{i}.py", i % 4), body));
    }
    let guard = t.guard();
    let compile = |extra: &[&str]| {
        let mut cmd = common::clean_command(common::kolosal_bin());
        cmd.env("KOLOSAL_CACHE_DIR", t.cache())
            .args(["compile", "-q", "-j", "2"])
            .args(extra)
            .arg("--python")
            .arg(&py.path)
            .arg(t.root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let kill = |pid: u32| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    };

    // 1. SIGKILL one worker mid-run: the pool replaces it and retries.
    let child = compile(&[]);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut killed = None;
    while Instant::now() < deadline && killed.is_none() {
        let written = sources.iter().filter(|s| cfile(&rules, s).exists()).count();
        if written > 20 {
            if let Some(&w) = children_of(pid).first() {
                kill(w);
                killed = Some(written);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    let killed = killed.expect("never saw a worker to kill");
    assert!(out.status.success(), "{}", common::describe(&out));
    let all = sources.iter().all(|s| fresh(&rules, s));
    assert!(all, "not every pyc written after a worker was killed");
    row(
        "compile worker SIGKILLed mid-run",
        &format!("killed after {killed} pycs; file retried on a fresh worker; all 400 written"),
        "kolosal compile exits 0",
    );

    // 2. SIGKILL kolosal compile itself mid-run: no torn pyc, no temp files,
    // a second run finishes the job.
    for s in &sources {
        let _ = fs::remove_file(cfile(&rules, s));
    }
    let child = compile(&[]);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if sources.iter().filter(|s| cfile(&rules, s).exists()).count() > 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    kill(pid);
    let _ = child.wait_with_output();
    std::thread::sleep(Duration::from_millis(300));
    let mut partial = 0;
    for s in &sources {
        let c = cfile(&rules, s);
        if c.exists() {
            assert!(fresh(&rules, s), "torn pyc {}", c.display());
            partial += 1;
        }
    }
    let stray: Vec<_> = walkdir::WalkDir::new(t.root())
        .into_iter()
        .flatten()
        .filter(|e| {
            e.file_type().is_file()
                && e.path()
                    .parent()
                    .is_some_and(|p| p.ends_with("__pycache__"))
                && e.path().extension() != Some(OsStr::new("pyc"))
        })
        .map(|e| e.into_path())
        .collect();
    let out = compile(&[]).wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(sources.iter().all(|s| fresh(&rules, s)));
    guard.check("SIGKILL");
    row(
        "kolosal compile SIGKILLed mid-run",
        &format!(
            "{partial} complete pycs, none torn, {} temp files left; rerun completes",
            stray.len()
        ),
        "nothing until rerun",
    );
    assert!(stray.is_empty(), "temp files left behind: {stray:?}");
}

#[test]
fn interpreters_that_are_missing_or_not_python() {
    let py = newest();
    common::report("reliability bad interpreters", std::slice::from_ref(&py));
    let t = Tree::new();
    t.write("main.py", "print('ran')\n");
    let text_file = t.write("not_python.txt", "hello\n");
    let exec_text = t.write("exec_text", "hello\n");
    fs::set_permissions(&exec_text, fs::Permissions::from_mode(0o755)).unwrap();
    let shim_dir = t.root().join("shims");
    fs::create_dir(&shim_dir).unwrap();
    std::os::unix::fs::symlink(common::launcher_bin(), shim_dir.join("python3")).unwrap();
    std::os::unix::fs::symlink(common::launcher_bin(), shim_dir.join("python")).unwrap();
    let guard = t.guard();
    let cases: Vec<(&str, EnvPairs, Option<i32>)> = vec![
        (
            "KOLOSAL_PYTHON=/bin/true",
            vec![("KOLOSAL_PYTHON", "/bin/true".into())],
            Some(0),
        ),
        (
            "KOLOSAL_PYTHON=a text file",
            vec![("KOLOSAL_PYTHON", text_file.clone().into())],
            Some(127),
        ),
        (
            "KOLOSAL_PYTHON=an executable text file",
            vec![("KOLOSAL_PYTHON", exec_text.clone().into())],
            None,
        ),
        (
            "KOLOSAL_PYTHON=kolosal-python",
            vec![("KOLOSAL_PYTHON", common::launcher_bin().into())],
            Some(127),
        ),
        (
            "KOLOSAL_PYTHON=a python3 symlink to kolosal-python",
            vec![("KOLOSAL_PYTHON", shim_dir.join("python3").into())],
            Some(127),
        ),
        (
            "KOLOSAL_PYTHON=no-such-python",
            vec![("KOLOSAL_PYTHON", "no-such-python".into())],
            Some(127),
        ),
        (
            "no interpreter on PATH",
            vec![("PATH", "/nonexistent".into())],
            Some(127),
        ),
        (
            "only kolosal's own shims on PATH",
            vec![("PATH", shim_dir.clone().into())],
            Some(127),
        ),
    ];
    for (what, env, want) in cases {
        let mut cmd = common::clean_command(common::launcher_bin());
        cmd.current_dir(t.root())
            .env("KOLOSAL_CACHE_DIR", t.cache())
            .arg("main.py");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let t0 = Instant::now();
        let o = timed_output(cmd);
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{what}: took {:?}",
            t0.elapsed()
        );
        if let Some(code) = want {
            assert_eq!(o.status.code(), Some(code), "{what}: {}", text(&o.stderr));
        }
        let lines: Vec<String> = text(&o.stderr).lines().map(str::to_string).collect();
        let ours: Vec<&String> = lines.iter().filter(|l| l.starts_with("kolosal")).collect();
        assert!(
            ours.len() <= 1,
            "{what}: more than one kolosal line: {lines:?}"
        );
        assert!(o.stdout.is_empty() || o.stdout == b"ran\n");
        row(
            what,
            &format!("exit {:?}", o.status.code()),
            &lines.join(" / "),
        );
    }
    // Shims first on PATH, a real python after them: the real one runs.
    let scratch = tempfile::tempdir().unwrap();
    let py_dir = py.path_dir(scratch.path());
    let path = std::env::join_paths([shim_dir.as_path(), py_dir.as_path()]).unwrap();
    let mut cmd = common::clean_command(shim_dir.join("python3"));
    cmd.current_dir(t.root())
        .env("KOLOSAL_CACHE_DIR", t.cache())
        .env("PATH", &path)
        .arg("main.py");
    let o = timed_output(cmd);
    assert_eq!(text(&o.stdout), "ran\n", "{}", text(&o.stderr));
    row(
        "python3 shim -> kolosal-python first on PATH",
        "own shims skipped, the real python3 runs (no exec loop)",
        "output only",
    );
    guard.check("bad interpreters");
}

// -------------------------------------------------------------- 6. security

#[test]
fn writes_only_pycache_and_a_private_cache_and_never_runs_the_tree() {
    let py = newest();
    common::report("reliability security", std::slice::from_ref(&py));
    let rules = rules_of(&py);
    let t = Tree::new();
    let marker = t.root().join("MARKER");
    let evil_body = format!(
        "open({:?}, 'w').write('executed')\nimport os\nos.system('touch {}')\n",
        marker.to_str().unwrap(),
        marker.with_extension("sh").to_str().unwrap()
    );
    let evil = t.write("evil.py", &evil_body);
    let evil_pkg = t.write("pkg/__init__.py", &evil_body);
    t.write(
        "main.py",
        "import sys\nif len(sys.argv) > 5:\n    import evil, pkg\nprint('main ran')\n",
    );
    let cache = t.cache().join("fresh/nested/cache");
    let main_path = t.root().join("main.py");
    let guard = t.guard();

    let o = launch(&py.path, t.root(), &cache, &[os("main.py")], &[]);
    assert_eq!(text(&o.stdout), "main ran\n");
    for args in [
        vec![
            os("compile"),
            os("-q"),
            os("--python"),
            py.path.as_os_str(),
            t.root().as_os_str(),
        ],
        vec![
            os("compile"),
            os("-q"),
            os("--force"),
            os("--python"),
            py.path.as_os_str(),
            os("--entry"),
            main_path.as_os_str(),
        ],
        vec![
            os("status"),
            os("--python"),
            py.path.as_os_str(),
            t.root().as_os_str(),
        ],
        vec![
            os("closure"),
            os("--python"),
            py.path.as_os_str(),
            main_path.as_os_str(),
        ],
    ] {
        let o = common::clean_command(common::kolosal_bin())
            .current_dir(t.root())
            .env("KOLOSAL_CACHE_DIR", &cache)
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.code().is_some(), "{args:?}");
    }
    guard.check("security");
    assert!(
        fresh(&rules, &evil) && fresh(&rules, &evil_pkg),
        "evil modules must be compiled"
    );
    assert!(
        !marker.exists() && !marker.with_extension("sh").exists(),
        "code from the tree was executed"
    );
    row(
        "module whose top level writes a marker / runs a shell",
        "compiled by the launcher and kolosal compile/status/closure; never executed",
        "nothing",
    );

    // The cache and everything created in it: 0700 dirs, 0600 files.
    let mut dirs = 0;
    let mut files = 0;
    for e in walkdir::WalkDir::new(t.cache().join("fresh"))
        .into_iter()
        .flatten()
    {
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        if e.file_type().is_dir() {
            assert_eq!(mode, 0o700, "{}", e.path().display());
            dirs += 1;
        } else if e.path().extension() != Some(OsStr::new("pyc"))
            && e.path().extension() != Some(OsStr::new("lock"))
        {
            assert_eq!(
                mode & 0o077,
                0,
                "{} is readable by others ({mode:o})",
                e.path().display()
            );
            files += 1;
        }
    }
    assert!(dirs >= 4 && files >= 2, "{dirs} dirs, {files} files");
    row(
        "cache created from nothing (3 missing parents)",
        &format!("{dirs} dirs all 0700, {files} files without group/other bits"),
        "nothing",
    );
    totals("security");
}
