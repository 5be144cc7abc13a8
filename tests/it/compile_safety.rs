//! Compile safety: what compiling a module shows, and what can make a launch
//! hang.
//!
//! * Warnings: whatever python shows or raises while compiling a module
//!   (`-W error`, `PYTHONWARNINGS`, `-X dev`, 3.12+ `SyntaxWarning`s,
//!   3.7-3.11 `DeprecationWarning`s under dev mode), `kolosal-python` shows
//!   or raises too: differential against the bare interpreter, byte for
//!   byte, on cold and warm launches. `kolosal compile` keeps compileall's
//!   behaviour (pyc written, warning printed).
//! * FIFOs at a pyc path or at the compile lock, a dangling symlink at the
//!   lock, a compile lock held by someone else, a source swapped for a FIFO:
//!   every launch finishes (each run here is killed after a time-out and the
//!   test fails, instead of hanging), and nothing is created through a link.
//!
//! Default run: one interpreter each of 3.8, 3.11, 3.12, 3.13 and 3.14
//! (when present); `KOLOSAL_TEST_HEAVY=1`: every CPython >= 3.7 found,
//! 3.14 and 3.15 included.

use crate::common;

use common::Python;
use nix::fcntl::{Flock, FlockArg};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Interpreters outside pyenv (Debian-built 3.14/3.15 here).
const EXTRA_PYTHONS: &[&str] = &[
    "/opt/new-pythons/usr/bin/python3.14-host",
    "/opt/new-pythons/usr/bin/python3.15-host",
];

/// Longest any single run here may take before it counts as hung.
const HANG: Duration = Duration::from_secs(60);

fn probe(path: &Path) -> Option<Python> {
    let o = common::clean_command(path)
        .args(["-c", "import sys;print(*sys.version_info[:3])"])
        .output()
        .ok()?;
    let v: Vec<u32> = String::from_utf8(o.stdout)
        .ok()?
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.len() == 3).then(|| Python {
        path: path.to_path_buf(),
        version: (v[0], v[1], v[2]),
    })
}

/// The interpreters the warning differential runs on.
fn selected() -> Vec<Python> {
    let mut all = common::pythons();
    all.extend(
        EXTRA_PYTHONS
            .iter()
            .map(Path::new)
            .filter(|p| p.is_file())
            .filter_map(probe),
    );
    if common::heavy() {
        return all;
    }
    let mut out = Vec::new();
    for minor in [8, 11, 12, 13, 14] {
        if let Some(p) = all
            .iter()
            .find(|p| (p.version.0, p.version.1) == (3, minor))
        {
            out.push(p.clone());
        }
    }
    out
}

fn newest() -> Python {
    selected()
        .into_iter()
        .max_by_key(|p| p.version)
        .expect("a CPython")
}

/// Runs `cmd`, killing it (and failing the test) after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let killer = std::thread::spawn(move || {
        let timed_out = rx.recv_timeout(limit).is_err();
        if timed_out {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        timed_out
    });
    let started = Instant::now();
    let out = child.wait_with_output().expect("wait");
    let _ = tx.send(());
    let timed_out = killer.join().unwrap();
    assert!(
        !timed_out,
        "{what}: hung, killed after {:?}\n{}",
        started.elapsed(),
        common::describe(&out)
    );
    out
}

/// Waits for every background run and learner under `cache` (their `.bg`
/// and `.learn` locks: a learner may still be compiling and re-stamping
/// when the program has exited), failing the test if one is still running
/// after `limit`.
fn wait_background_bounded(cache: &Path, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    let Ok(rd) = fs::read_dir(cache.join("manifests")) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let ext = e.path().extension().map(OsStr::to_os_string);
        if ext.as_deref() != Some(OsStr::new("bg")) && ext.as_deref() != Some(OsStr::new("learn")) {
            continue;
        }
        let mut file = fs::File::open(e.path()).unwrap();
        loop {
            match Flock::lock(file, FlockArg::LockSharedNonblock) {
                Ok(_) => break,
                Err((f, _)) => {
                    assert!(
                        Instant::now() < deadline,
                        "{what}: a background run or learner still holds {} after {limit:?}",
                        e.path().display()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                    file = f;
                }
            }
        }
    }
}

fn launcher(py: &Path, cwd: &Path, cache: &Path) -> Command {
    let mut cmd = common::clean_command(common::launcher_bin());
    cmd.current_dir(cwd)
        .env("KOLOSAL_PYTHON", py)
        .env("KOLOSAL_CACHE_DIR", cache);
    cmd
}

fn bare(py: &Path, cwd: &Path) -> Command {
    let mut cmd = common::clean_command(py);
    cmd.current_dir(cwd).env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// stderr without the launcher's `KOLOSAL_LOG=debug` timeline (its debug
/// and info lines, `kolosal: [LEVEL +T ms] ...`).
fn without_debug(stderr: &[u8]) -> String {
    text(stderr)
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("kolosal: [debug") && !l.starts_with("kolosal: [info"))
        .collect()
}

/// Copies a tree of plain files and directories, keeping mtimes (so pycs
/// stay fresh for their sources).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).unwrap();
            let mtime = e.metadata().unwrap().modified().unwrap();
            fs::File::options()
                .write(true)
                .open(&dest)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
    }
}

fn cache_tag(py: &Python) -> String {
    py.cache_tag()
}

/// One launch configuration of the warning differential.
struct Case {
    /// Run on every selected interpreter; the others on the oldest and
    /// newest only (all of them with `KOLOSAL_TEST_HEAVY=1`).
    core: bool,
    name: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        core: true,
        name: "default filters",
        args: &[],
        env: &[],
    },
    Case {
        core: true,
        name: "-W error",
        args: &["-W", "error"],
        env: &[],
    },
    Case {
        core: true,
        name: "PYTHONWARNINGS=error",
        args: &[],
        env: &[("PYTHONWARNINGS", "error")],
    },
    Case {
        core: true,
        name: "-X dev",
        args: &["-X", "dev"],
        env: &[],
    },
    Case {
        core: false,
        name: "-X dev -W error",
        args: &["-X", "dev", "-W", "error"],
        env: &[],
    },
    Case {
        core: false,
        name: "PYTHONDEVMODE=1",
        args: &[],
        env: &[("PYTHONDEVMODE", "1")],
    },
    Case {
        core: false,
        name: "-W once (the once-registry is per module)",
        args: &["-W", "once"],
        env: &[],
    },
    Case {
        core: false,
        name: "PYTHONWARNINGS=,ignore,,default",
        args: &[],
        env: &[("PYTHONWARNINGS", ",ignore,,default")],
    },
    Case {
        core: false,
        name: "-E ignores PYTHONWARNINGS=error",
        args: &["-E"],
        env: &[("PYTHONWARNINGS", "error")],
    },
    Case {
        core: false,
        name: "-W error then -W ignore (last wins)",
        args: &["-W", "error", "-W", "ignore"],
        env: &[],
    },
];

/// main imports `n` (one invalid escape); `m` (the same warning, larger so
/// a worker compiles it first) is only imported by a function never called.
fn write_warning_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    fs::write(
        root.join("main.py"),
        "import n\n\ndef later():\n    import m\n\nprint('ok', n.y)\n",
    )
    .unwrap();
    fs::write(root.join("n.py"), "y = len(\"\\d\")\n").unwrap();
    let mut m = String::new();
    for i in 0..200 {
        m.push_str(&format!("v{i} = {i}  # padding, so this compiles first\n"));
    }
    m.push_str("x = \"\\d\"\n");
    fs::write(root.join("m.py"), m).unwrap();
}

fn assert_same(what: &str, ours: &Output, theirs: &Output, ours_stderr: &str) {
    let detail = || {
        format!(
            "\n--- kolosal ---\n{}\n--- python ---\n{}",
            common::describe(ours),
            common::describe(theirs)
        )
    };
    assert_eq!(
        (ours.status.code(), ours.status.signal()),
        (theirs.status.code(), theirs.status.signal()),
        "{what}: exit status{}",
        detail()
    );
    assert_eq!(ours.stdout, theirs.stdout, "{what}: stdout{}", detail());
    assert_eq!(
        ours_stderr,
        text(&theirs.stderr),
        "{what}: stderr{}",
        detail()
    );
}

fn warning_differential(py: &Python, background: bool, all_cases: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let tag = cache_tag(py);
    for (i, case) in CASES.iter().enumerate() {
        if !case.core && !all_cases {
            continue;
        }
        let what = format!(
            "{} [{}]{}",
            case.name,
            py.label(),
            if background { " background" } else { "" }
        );
        let root = tmp.path().join(format!("t{i}"));
        let cache = tmp.path().join(format!("c{i}"));
        write_warning_tree(&root);
        // Every launch is compared with python compiling the tree from
        // source. Under -E python ignores PYTHONDONTWRITEBYTECODE and writes
        // pycs itself: the pycs the bare run wrote are removed, and the warm
        // launch is compared with a bare run of a copy of the tree as that
        // launch finds it.
        let bare_run = |root: &Path| {
            let mut b = bare(&py.path, root);
            b.args(case.args)
                .arg("main.py")
                .envs(case.env.iter().copied());
            run_bounded(b, HANG, &what)
        };
        let theirs = bare_run(&root);
        let _ = fs::remove_dir_all(root.join("__pycache__"));
        assert!(
            theirs.stdout.starts_with(b"ok") || !theirs.status.success(),
            "{what}: the program itself: {}",
            common::describe(&theirs)
        );
        // Cold, then warm (timeline on, so the warm path can be seen).
        let mut expected = theirs.clone();
        for (run, debug) in [("cold", false), ("warm", true)] {
            if debug && case.args.contains(&"-E") {
                let snapshot = tmp.path().join(format!("s{i}"));
                copy_tree(&root, &snapshot);
                expected = bare_run(&snapshot);
                // The paths in python's messages are the launch's.
                let from = snapshot.to_string_lossy().into_owned();
                let to = root.to_string_lossy().into_owned();
                expected.stderr = text(&expected.stderr).replace(&from, &to).into_bytes();
            }
            let launch_once = || {
                let mut k = launcher(&py.path, &root, &cache);
                k.args(case.args)
                    .arg("main.py")
                    .envs(case.env.iter().copied());
                if !background {
                    k.env("KOLOSAL_BACKGROUND", "0");
                }
                if debug {
                    k.env("KOLOSAL_LOG", "debug");
                }
                let ours = run_bounded(k, HANG, &what);
                wait_background_bounded(&cache, HANG, &what);
                assert_same(
                    &format!("{what}, {run} launch"),
                    &ours,
                    &expected,
                    &without_debug(&ours.stderr),
                );
                ours
            };
            let ours = launch_once();
            // (Under -E the interpreter's own pyc writes change a stamped
            // __pycache__, so that launch repairs instead.)
            if debug && !case.args.contains(&"-E") {
                // The manifest also stamps the shared interpreter's stdlib
                // `__pycache__` directories, which the suites running beside
                // this one write into (other -O levels, other tools): one
                // launch may repair for that. A module that warns would make
                // every later launch cold; the one after must be warm.
                let mut log = text(&ours.stderr);
                if !log.contains("warm: manifest holds") {
                    log = text(&launch_once().stderr);
                }
                assert!(
                    log.contains("warm: manifest holds"),
                    "{what}: a module that warns must not keep later launches cold:\n{log}"
                );
            }
        }
        if case.args.contains(&"-E") {
            continue;
        }
        // What python shows while compiling `n` decides whether it may
        // have a pyc: none if it shows anything, else it was precompiled.
        let n_pyc = root.join("__pycache__").join(format!("n.{tag}.pyc"));
        let shows_something = !theirs.stderr.is_empty();
        assert_eq!(
            n_pyc.exists(),
            !shows_something,
            "{what}: pyc of the warning module (python's stderr: {})",
            text(&theirs.stderr)
        );
    }
}

#[test]
fn compile_warnings_reach_the_user_as_python_shows_them() {
    let pythons = selected();
    common::report("compile_safety::warnings", &pythons);
    for (i, py) in pythons.iter().enumerate() {
        let ends = i == 0 || i + 1 == pythons.len();
        warning_differential(py, false, ends || common::heavy());
    }
}

#[test]
fn compile_warnings_with_the_background_run() {
    // The background run (lazy modules, small stale sets) compiles with the
    // same filters: it must not write the pyc that hides a warning.
    let py = newest();
    warning_differential(&py, true, true);
    let old = selected()
        .into_iter()
        .find(|p| (p.version.0, p.version.1) <= (3, 11));
    if let Some(old) = old {
        warning_differential(&old, true, true);
    }
}

#[test]
fn kolosal_compile_writes_and_prints_like_compileall() {
    for py in selected() {
        let tmp = tempfile::tempdir().unwrap();
        let ours_dir = tmp.path().join("ours");
        let theirs_dir = tmp.path().join("theirs");
        for d in [&ours_dir, &theirs_dir] {
            fs::create_dir_all(d).unwrap();
            fs::write(d.join("w.py"), "x = \"\\d\"\n").unwrap();
        }
        let mut c = common::clean_command(&py.path);
        c.current_dir(&theirs_dir)
            .args(["-m", "compileall", "-q", "w.py"]);
        let theirs = run_bounded(c, HANG, "compileall");
        let mut k = common::clean_command(common::kolosal_bin());
        k.current_dir(&ours_dir)
            .env("KOLOSAL_CACHE_DIR", tmp.path().join("cache"))
            .args([OsStr::new("compile"), OsStr::new("--python")])
            .arg(&py.path)
            .arg("w.py");
        let ours = run_bounded(k, HANG, "kolosal compile");
        let label = py.label();
        assert_eq!(
            ours.status.code(),
            theirs.status.code(),
            "{label}: {}",
            common::describe(&ours)
        );
        let pyc = format!("__pycache__/w.{}.pyc", py.cache_tag());
        assert!(theirs_dir.join(&pyc).is_file(), "{label}: compileall");
        assert!(ours_dir.join(&pyc).is_file(), "{label}: kolosal compile");
        // compileall's stderr is the warning as showwarning prints it.
        let warning = text(&theirs.stderr);
        if py.version >= (3, 12, 0) {
            assert!(warning.contains("SyntaxWarning"), "{label}: {warning}");
        }
        assert!(
            text(&ours.stderr).contains(&warning),
            "{label}: kolosal compile must print what compileall prints\nours: {}\ntheirs: {warning}",
            text(&ours.stderr)
        );
    }
}

/// main.py runs; `lazy` is only imported inside an uncalled function.
fn write_lazy_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    fs::write(
        root.join("main.py"),
        "def later():\n    import lazy\n\nprint('ok')\n",
    )
    .unwrap();
    fs::write(root.join("lazy.py"), "y = 1\n").unwrap();
}

fn mkfifo(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

/// Exit 0, stdout `ok`, and stderr empty or one `kolosal:` line.
fn assert_runs_ok(what: &str, out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}",
        common::describe(out)
    );
    assert_eq!(
        text(&out.stdout),
        "ok\n",
        "{what}: {}",
        common::describe(out)
    );
    let err = text(&out.stderr);
    assert!(
        err.is_empty() || (err.starts_with("kolosal: ") && err.lines().count() == 1),
        "{what}: stderr: {err}"
    );
}

#[test]
fn fifo_at_a_lazy_pyc_never_hangs() {
    let py = newest();
    common::report("compile_safety::fifo", std::slice::from_ref(&py));
    let tag = py.cache_tag();
    for background in [false, true] {
        let what = format!("FIFO at a pyc, background={background}");
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("app");
        let cache = tmp.path().join("cache");
        write_lazy_tree(&root);
        let fifo = root.join("__pycache__").join(format!("lazy.{tag}.pyc"));
        mkfifo(&fifo);
        let theirs = run_bounded(
            {
                let mut b = bare(&py.path, &root);
                b.arg("main.py");
                b
            },
            HANG,
            "bare",
        );
        assert_eq!(text(&theirs.stdout), "ok\n");
        let mut k = launcher(&py.path, &root, &cache);
        k.arg("main.py");
        if !background {
            k.env("KOLOSAL_BACKGROUND", "0");
        }
        assert_runs_ok(&what, &run_bounded(k, Duration::from_secs(30), &what));
        wait_background_bounded(&cache, Duration::from_secs(30), &what);
        // A later cold launch (other flags, same compile lock) still runs.
        let mut k = launcher(&py.path, &root, &cache);
        k.args(["-s", "main.py"]);
        if !background {
            k.env("KOLOSAL_BACKGROUND", "0");
        }
        assert_runs_ok(&what, &run_bounded(k, Duration::from_secs(30), &what));
        wait_background_bounded(&cache, Duration::from_secs(30), &what);
        let ft = fs::symlink_metadata(&fifo).unwrap().file_type();
        use std::os::unix::fs::FileTypeExt;
        assert!(ft.is_fifo(), "{what}: the FIFO was replaced");
    }
}

/// Runs `main.py` once cold so the compile lock file exists; returns it.
fn first_launch_lock(py: &Python, root: &Path, cache: &Path) -> PathBuf {
    let mut k = launcher(&py.path, root, cache);
    k.arg("main.py").env("KOLOSAL_BACKGROUND", "0");
    assert_runs_ok("first launch", &run_bounded(k, HANG, "first launch"));
    let locks: Vec<PathBuf> = fs::read_dir(cache.join("locks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    locks[0].clone()
}

/// Makes `lazy.py` stale again, so the next launch needs the compile lock.
fn make_stale(root: &Path) {
    fs::remove_dir_all(root.join("__pycache__")).unwrap();
}

#[test]
fn compile_lock_that_is_a_fifo_or_a_dangling_symlink() {
    let py = newest();
    // FIFO: opening it for writing used to block until a reader came.
    {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("app");
        let cache = tmp.path().join("cache");
        write_lazy_tree(&root);
        let lock = first_launch_lock(&py, &root, &cache);
        fs::remove_file(&lock).unwrap();
        mkfifo(&lock);
        make_stale(&root);
        let mut k = launcher(&py.path, &root, &cache);
        k.args(["-s", "main.py"]).env("KOLOSAL_BACKGROUND", "0");
        let what = "FIFO at the compile lock";
        assert_runs_ok(what, &run_bounded(k, Duration::from_secs(30), what));
    }
    // Dangling symlink: it must not create its target (issue 11.3).
    {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("app");
        let cache = tmp.path().join("cache");
        write_lazy_tree(&root);
        let lock = first_launch_lock(&py, &root, &cache);
        let target = tmp.path().join("planted-by-someone-else");
        fs::remove_file(&lock).unwrap();
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        make_stale(&root);
        let mut k = launcher(&py.path, &root, &cache);
        k.args(["-s", "main.py"]).env("KOLOSAL_BACKGROUND", "0");
        let what = "dangling symlink at the compile lock";
        assert_runs_ok(what, &run_bounded(k, Duration::from_secs(30), what));
        assert!(
            fs::symlink_metadata(&target).is_err(),
            "{what}: a file was created through the link"
        );
        // Inside kolosal's private cache the link is removed, never
        // followed, and a lock file of our own takes its place.
        assert!(
            fs::symlink_metadata(&lock).unwrap().file_type().is_file(),
            "{what}: the link was not replaced by a private lock file"
        );
        // The modules were still precompiled.
        let tag = py.cache_tag();
        assert!(root.join(format!("__pycache__/lazy.{tag}.pyc")).is_file());
    }
}

#[test]
fn a_held_compile_lock_is_waited_for_a_bounded_time() {
    let py = newest();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("app");
    let cache = tmp.path().join("cache");
    write_lazy_tree(&root);
    let lock = first_launch_lock(&py, &root, &cache);
    make_stale(&root);
    // Someone else holds the compile lock and never lets go.
    let held = Flock::lock(
        fs::OpenOptions::new().write(true).open(&lock).unwrap(),
        FlockArg::LockExclusive,
    )
    .unwrap();
    let mut k = launcher(&py.path, &root, &cache);
    k.args(["-s", "main.py"]).env("KOLOSAL_BACKGROUND", "0");
    let started = Instant::now();
    let what = "compile lock held by another process";
    let out = run_bounded(k, Duration::from_secs(40), what);
    let waited = started.elapsed();
    assert_runs_ok(what, &out);
    assert!(
        text(&out.stderr).contains("compile lock"),
        "{what}: one line saying why nothing was precompiled: {}",
        text(&out.stderr)
    );
    assert!(waited < Duration::from_secs(30), "{what}: took {waited:?}");
    drop(held);
}

#[test]
fn a_source_swapped_for_a_fifo_does_not_hang_the_worker() {
    use kolosal::compile::{compile_all, CompileJob, Outcome, PoolConfig};
    use kolosal::pyc::InvalidationMode;
    use kolosal::pyc::PycTarget;
    let py = newest();
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("swapped.py");
    mkfifo(&fifo);
    let ok = tmp.path().join("ok.py");
    fs::write(&ok, "x = 1\n").unwrap();
    let jobs: Vec<CompileJob> = [&fifo, &ok]
        .iter()
        .map(|s| CompileJob {
            pyc: PycTarget {
                source: s.to_path_buf(),
                cfile: tmp
                    .path()
                    .join("__pycache__")
                    .join(format!("{}.pyc", s.file_stem().unwrap().to_string_lossy())),
            },
            optimize: 0,
            invalidation: InvalidationMode::Timestamp,
        })
        .collect();
    let config = PoolConfig {
        workers: 1,
        timeout: Duration::from_secs(5),
        ..PoolConfig::new(&py.path)
    };
    let started = Instant::now();
    let out = compile_all(&jobs, &config, &|_, _| {}).unwrap();
    assert!(
        matches!(&out[0], Outcome::Failed { message } if message.contains("not a regular file")),
        "{:?}",
        out[0]
    );
    assert!(out[1].is_written(), "{:?}", out[1]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// A warning the compiler raises without a file name (3.12+'s "Bitwise
/// inversion '~' on bool") belongs to importlib when python imports the
/// module, so the default filters hide it there: the module is precompiled,
/// and stdout, stderr and exit status are python's, with and without
/// `-W default` (which shows it, from `<frozen importlib._bootstrap>`).
#[test]
fn a_warning_without_a_file_name_is_attributed_as_in_the_program() {
    let pythons: Vec<Python> = common::pythons_at_least((3, 12));
    common::report("compile_safety::unnamed_warning", &pythons);
    for py in &pythons {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("app");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("main.py"), "import inv\nprint(inv.X)\n").unwrap();
        fs::write(root.join("inv.py"), "X = ~True\n").unwrap();
        let cache = tmp.path().join("cache");
        for flags in [&[][..], &["-W", "default"][..]] {
            let _ = fs::remove_dir_all(root.join("__pycache__"));
            let mut k = launcher(&py.path, &root, &cache);
            k.env("KOLOSAL_BACKGROUND", "0").args(flags).arg("main.py");
            let ours = run_bounded(k, Duration::from_secs(60), "unnamed warning");
            let mut b = bare(&py.path, &root);
            b.args(flags).arg("main.py");
            let theirs = run_bounded(b, Duration::from_secs(60), "plain python");
            let what = format!("{} {flags:?}", py.label());
            assert_same(&what, &ours, &theirs, &text(&ours.stderr));
            let pyc = root.join(format!("__pycache__/inv.{}.pyc", cache_tag(py)));
            // Under the default filters python shows nothing: the module is
            // precompiled (where 3.12-3.13 show it, it is left to the
            // interpreter; 3.14+ no longer warn at compile time).
            if flags.is_empty() {
                assert!(pyc.is_file(), "{what}: no pyc at {}", pyc.display());
            }
        }
    }
}
