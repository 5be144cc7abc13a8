//! Many `kolosal-python` launches at once, and launches racing
//! `kolosal clean`: every program succeeds with the right output, every pyc
//! left on disk is one importlib accepts, nothing is torn and no temporary
//! file is left behind.

use crate::common;

use common::Python;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Modules in the generated app: enough that a cold compile takes a while.
const MODULES: usize = 60;

struct App {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
    sources: Vec<PathBuf>,
    expected: String,
}

fn make_app() -> App {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let root = base.join("proj");
    let pkg = root.join("big");
    std::fs::create_dir_all(&pkg).unwrap();
    let mut sources = vec![pkg.join("__init__.py")];
    std::fs::write(&sources[0], "").unwrap();
    let mut main = String::from("import big\n");
    let mut total = 0;
    for i in 0..MODULES {
        // Each module has some bulk so compiles overlap in time.
        let mut text = format!("from . import m{}\n", i.saturating_sub(1));
        if i == 0 {
            text = String::new();
        }
        for f in 0..40 {
            text.push_str(&format!(
                "def f{f}(x):\n    y = [x * k for k in range({f})]\n    return sum(y) + {i}\n"
            ));
        }
        text.push_str(&format!("V = {i}\n"));
        let path = pkg.join(format!("m{i}.py"));
        std::fs::write(&path, text).unwrap();
        sources.push(path);
        main.push_str(&format!("from big import m{i}\n"));
        total += i;
    }
    main.push_str(&format!(
        "import sys\nprint('sum', {}, sys.argv[1])\n",
        (0..MODULES)
            .map(|i| format!("m{i}.V"))
            .collect::<Vec<_>>()
            .join("+")
    ));
    std::fs::write(root.join("main.py"), main).unwrap();
    App {
        _tmp: tmp,
        root,
        cache: base.join("kcache"),
        sources,
        expected: format!("sum {total} "),
    }
}

fn launch(app: &App, py: &Python, tag: &str) -> Output {
    let mut c = common::clean_command(common::launcher_bin());
    c.env("PATH", "/usr/bin:/bin")
        .env("KOLOSAL_PYTHON", &py.path)
        .env("KOLOSAL_CACHE_DIR", &app.cache)
        .current_dir(&app.root)
        .args(["main.py", tag]);
    output(c)
}

fn output(mut c: Command) -> Output {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().expect("spawn");
    let start = Instant::now();
    let out = child.wait_with_output().expect("wait");
    common::wait_background_of(&c);
    assert!(
        start.elapsed() < Duration::from_secs(300),
        "{c:?} took too long"
    );
    out
}

fn check_run(app: &App, out: &Output, tag: &str) {
    check_run_lines(app, out, tag, 0)
}

/// Like [`check_run`], allowing up to `max_lines` kolosal lines on stderr
/// (a pyc deleted under a worker is worth one warning).
fn check_run_lines(app: &App, out: &Output, tag: &str, max_lines: usize) {
    assert!(
        out.status.success(),
        "{tag}: status {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}{tag}\n", app.expected),
        "{tag}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().count() <= max_lines && err.lines().all(|l| l.starts_with("kolosal: ")),
        "{tag}: kolosal wrote to stderr: {err}"
    );
}

fn verdicts(py: &Python, app: &App) -> Vec<String> {
    common::pyc_verdicts(&py.path, &app.root, &[], &app.sources)
}

/// Files that should not exist after every launch has ended: anything in a
/// `__pycache__` that is not a `.pyc`, and kolosal's `.NAME.PID.N.tmp`.
fn leftovers(dirs: &[&Path]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if (d.ends_with("__pycache__") && !name.ends_with(".pyc"))
                || name.ends_with(".tmp")
            {
                out.push(path);
            }
        }
    }
    out
}

/// The python -v check: nothing compiled from source.
fn source_compiles(py: &Python, app: &App) -> usize {
    let mut c = py.cmd();
    c.current_dir(&app.root).args(["-v", "main.py", "v"]);
    let o = output(c);
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("# code object from "))
        .filter(|p| p.ends_with(".py"))
        .count()
}

fn ends(pythons: &[Python]) -> Vec<Python> {
    let mut v = vec![pythons[pythons.len() - 1].clone()];
    if pythons.len() > 1 {
        v.push(pythons[0].clone());
    }
    // And every other 3.14+ (the interpreters `.ci/run` adds).
    let middle = pythons
        .get(1..pythons.len().saturating_sub(1))
        .unwrap_or(&[]);
    v.extend(middle.iter().filter(|p| p.version >= (3, 14, 0)).cloned());
    v
}

#[test]
fn sixteen_simultaneous_cold_launches() {
    let pythons = ends(&common::pythons());
    common::report("launcher_concurrency::sixteen_cold", &pythons);
    for py in &pythons {
        let app = Arc::new(make_app());
        let barrier = Arc::new(Barrier::new(16));
        let started = Instant::now();
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (app, barrier, py) = (app.clone(), barrier.clone(), py.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let tag = format!("t{i}");
                    let out = launch(&app, &py, &tag);
                    (tag, out)
                })
            })
            .collect();
        for h in handles {
            let (tag, out) = h.join().expect("thread");
            check_run(&app, &out, &tag);
        }
        let v = verdicts(py, &app);
        assert_eq!(v.len(), app.sources.len());
        assert!(
            v.iter().all(|l| l.starts_with("OK ")),
            "{}: {v:#?}",
            py.label()
        );
        let left = leftovers(&[&app.root, &app.cache]);
        assert!(left.is_empty(), "{}: left behind: {left:#?}", py.label());
        assert_eq!(source_compiles(py, &app), 0, "{}", py.label());
        common::note(&format!(
            "[launcher_concurrency] 16 cold launches on {}: {:.2?}",
            py.label(),
            started.elapsed()
        ));
    }
}

#[test]
fn launches_racing_kolosal_clean() {
    let pythons = common::pythons();
    let py = &pythons[pythons.len() - 1];
    common::report(
        "launcher_concurrency::racing_clean",
        std::slice::from_ref(py),
    );
    let app = Arc::new(make_app());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cleaner = {
        let (root, stop) = (app.root.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut cleans = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut c = common::clean_command(common::kolosal_bin());
                c.arg("clean").arg(&root);
                let o = output(c);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                cleans += 1;
            }
            cleans
        })
    };
    let mut launches = 0;
    for round in 0..4 {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (app, py) = (app.clone(), py.clone());
                std::thread::spawn(move || {
                    let tag = format!("r{round}t{i}");
                    let out = launch(&app, &py, &tag);
                    (tag, out)
                })
            })
            .collect();
        for h in handles {
            let (tag, out) = h.join().expect("thread");
            check_run_lines(&app, &out, &tag, 1);
            launches += 1;
        }
        // Whatever survived the cleaner must be valid (never torn).
        let v = verdicts(py, &app);
        assert!(
            v.iter()
                .all(|l| l.starts_with("OK ") || l.starts_with("MISSING ")),
            "round {round}: {v:#?}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let cleans = cleaner.join().expect("cleaner");
    assert!(cleans > 0);
    // Once the race is over one launch restores everything.
    check_run(&app, &launch(&app, py, "final"), "final");
    let v = verdicts(py, &app);
    assert!(v.iter().all(|l| l.starts_with("OK ")), "{v:#?}");
    let left = leftovers(&[&app.root, &app.cache]);
    assert!(left.is_empty(), "left behind: {left:#?}");
    assert_eq!(source_compiles(py, &app), 0);
    common::note(&format!(
        "[launcher_concurrency] {launches} launches raced {cleans} `kolosal clean` runs"
    ));
    let _ = std::io::stderr().flush();
}
