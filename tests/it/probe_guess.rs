//! A venv made again at the same path (an image rebuild, a CI job, `uv
//! venv` over the old one) misses the probe cache. When the launch can
//! leave work to a background run it does not probe: it takes the facts
//! that path gave last time (a guess is only ever about the same
//! interpreter binary), makes fresh the pycs of the modules its last
//! manifest recorded as needed at start (or, with no manifest for the
//! program, of the closure computed from the guess) and execs; the
//! background run probes, computes the closure from the real facts and
//! records the manifest. Without a background run (`KOLOSAL_BACKGROUND=0`,
//! or one already pending) the launch probes while it computes the closure
//! from the guess and keeps that closure only when the probe answers the
//! same facts. Checked against the interpreter itself: the program's output
//! is plain python's, and `python -v` loads every closure pyc once the
//! launch and its background run are done.

use crate::common::{self, Python};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// main.py imports a local module and one installed in the venv.
fn write_app(app: &Path) {
    fs::create_dir_all(app).unwrap();
    fs::write(
        app.join("main.py"),
        "import sys, helper, sitemod, importlib\n\
         dyn = importlib.import_module(open('name.txt').read().strip())\n\
         print(sys.version_info[:2], helper.X, sitemod.Y, dyn.Z)\n",
    )
    .unwrap();
    fs::write(app.join("helper.py"), "import json\nX = json.dumps(1)\n").unwrap();
    dynamic_module(app, "dyn1");
}

/// `name`, imported by a name main.py reads from a file: only a learner
/// can find it.
fn dynamic_module(app: &Path, name: &str) {
    fs::write(app.join(format!("{name}.py")), "Z = 3\n").unwrap();
    fs::write(app.join("name.txt"), name).unwrap();
}

/// Whether `name`'s pyc is in the app's `__pycache__`.
fn has_pyc(app: &Path, name: &str) -> bool {
    fs::read_dir(app.join("__pycache__"))
        .map(|rd| {
            rd.filter_map(|e| e.ok()).any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{name}."))
            })
        })
        .unwrap_or(false)
}

/// A venv of `py` at `dir` (removed first) with `sitemod` installed.
fn make_venv(py: &Python, dir: &Path) -> PathBuf {
    if dir.exists() {
        fs::remove_dir_all(dir).unwrap();
    }
    let vpy = common::venv_with(py, dir, &[]);
    fs::write(
        common::purelib(&vpy).join("sitemod.py"),
        "import decimal\nY = 2\n",
    )
    .unwrap();
    vpy
}

fn launch(vpy: &Path, app: &Path, cache: &Path) -> Output {
    launch_with(vpy, app, cache, &[])
}

fn launch_with(vpy: &Path, app: &Path, cache: &Path, env: &[(&str, &str)]) -> Output {
    let out = launch_no_wait(vpy, app, cache, env);
    common::wait_background(cache);
    out
}

/// The launch alone, not waiting for its background run and learner.
fn launch_no_wait(vpy: &Path, app: &Path, cache: &Path, env: &[(&str, &str)]) -> Output {
    launch_script(vpy, app, cache, env, "main.py")
}

fn launch_script(
    vpy: &Path,
    app: &Path,
    cache: &Path,
    env: &[(&str, &str)],
    script: &str,
) -> Output {
    let mut k = common::clean_command(common::launcher_bin());
    k.current_dir(app)
        .env("KOLOSAL_PYTHON", vpy)
        .env("KOLOSAL_CACHE_DIR", cache)
        .env("KOLOSAL_LOG", "debug")
        .envs(env.iter().copied())
        .arg(script);
    common::ok(k.output().unwrap(), script)
}

fn plain(vpy: &Path, app: &Path, args: &[&str]) -> Output {
    let mut p: Command = common::clean_command(vpy);
    p.current_dir(app)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(args);
    if !args.iter().any(|a| a.ends_with(".py")) {
        p.arg("main.py");
    }
    common::ok(p.output().unwrap(), "python main.py")
}

/// The launch printed what python prints, and afterwards python loads
/// every module of the program (the venv's `sitemod` included) from a pyc.
fn same_as_python(what: &str, ours: &Output, vpy: &Path, app: &Path) {
    let theirs = plain(vpy, app, &[]);
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&theirs.stdout),
        "{what}: {}",
        common::describe(ours)
    );
    let verbose = plain(vpy, app, &["-v"]);
    let compiled = common::source_compiles(&verbose.stderr);
    assert!(
        compiled.iter().all(|s| s.ends_with("main.py")),
        "{what}: compiled from source after the launch: {compiled:?}"
    );
    let loads = common::pyc_loads(&verbose.stderr);
    for m in ["helper", "sitemod", "json", "decimal"] {
        assert!(
            loads.iter().any(|p| p.contains(&format!("/{m}."))
                || p.contains(&format!("/{m}/__pycache__/__init__."))),
            "{what}: {m} not loaded from a pyc: {loads:?}"
        );
    }
}

fn log(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_venv_made_again_at_its_path_uses_the_guess_only_when_it_holds() {
    let all = common::pythons_at_least((3, 8));
    let (Some(first), Some(last)) = (all.first(), all.last()) else {
        panic!("no CPython >= 3.8 found");
    };
    assert_ne!(first.version, last.version, "two interpreters needed");
    let used = [first.clone(), last.clone()];
    common::report("probe_guess", &used);
    let tmp = tempfile::tempdir().unwrap();
    let (app, venv, cache) = (
        tmp.path().join("app"),
        tmp.path().join("venv"),
        tmp.path().join("cache"),
    );
    write_app(&app);

    // A first venv: probed, nothing to guess from.
    let vpy = make_venv(last, &venv);
    let o = launch(&vpy, &app, &cache);
    assert!(!log(&o).contains("probe: the guess"), "{}", log(&o));
    same_as_python("first venv", &o, &vpy, &app);

    // The same venv made again: no probe before exec, the closure comes
    // from the guess, and the background run probes and records.
    let vpy = make_venv(last, &venv);
    dynamic_module(&app, "dyn2");
    let o = launch(&vpy, &app, &cache);
    assert!(
        log(&o).contains("modules from the last manifest for this path"),
        "{}",
        log(&o)
    );
    assert!(
        log(&o).contains("manifest: left to a background run"),
        "{}",
        log(&o)
    );
    assert!(!log(&o).contains("probe: python"), "{}", log(&o));
    same_as_python("made again", &o, &vpy, &app);
    // Its learner watched from the guess and learned what the program
    // imported by a computed name once the background run had recorded.
    assert!(
        has_pyc(&app, "dyn2"),
        "the learner of a guessed launch learned nothing"
    );
    warm("made again", &vpy, &app, &cache);

    // Made again, and a program never launched in it before: no manifest
    // for it, so the closure is computed from the guess.
    let vpy = make_venv(last, &venv);
    fs::write(
        app.join("other.py"),
        "import helper, sitemod\nprint(helper.X, sitemod.Y)\n",
    )
    .unwrap();
    let o = launch_script(&vpy, &app, &cache, &[], "other.py");
    common::wait_background(&cache);
    assert!(
        log(&o).contains("probe: none; the closure comes from the guess"),
        "{}",
        log(&o)
    );
    assert!(!log(&o).contains("probe: python"), "{}", log(&o));
    let theirs = plain(&vpy, &app, &["other.py"]);
    assert_eq!(
        o.stdout,
        theirs.stdout,
        "other.py: {}",
        common::describe(&o)
    );
    let verbose = plain(&vpy, &app, &["-v", "other.py"]);
    let compiled = common::source_compiles(&verbose.stderr);
    assert!(
        compiled.iter().all(|s| s.ends_with("other.py")),
        "other.py: compiled from source after the launch: {compiled:?}"
    );
    let o = launch_script(&vpy, &app, &cache, &[], "other.py");
    assert!(
        log(&o).contains("warm: manifest holds"),
        "other.py: {}",
        log(&o)
    );

    // Made again with a `.pth` that adds a directory to `sys.path`, where
    // `sitemod` now lives: the launch runs on the guess, which misses it
    // (python compiles it in memory, as without kolosal); the background
    // run's probe finds the extra directory and compiles it there.
    let extra = tmp.path().join("extra");
    let with_pth = |vpy: &Path| {
        fs::create_dir_all(&extra).unwrap();
        let site = common::purelib(vpy);
        fs::rename(site.join("sitemod.py"), extra.join("sitemod.py")).unwrap();
        fs::write(site.join("extra.pth"), format!("{}\n", extra.display())).unwrap();
    };
    let vpy = make_venv(last, &venv);
    with_pth(&vpy);
    let o = launch(&vpy, &app, &cache);
    assert!(
        log(&o).contains("modules from the last manifest for this path"),
        "{}",
        log(&o)
    );
    same_as_python("a .pth added", &o, &vpy, &app);
    assert!(
        fs::read_dir(extra.join("__pycache__")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("sitemod.")),
        "the background run did not compile the module the .pth path holds"
    );
    warm("a .pth added", &vpy, &app, &cache);

    // Without a background run the launch probes before it records: made
    // again with the `.pth` the guess holds; made again without it, it does
    // not, and the closure is computed again from the probe's facts.
    let no_bg = [("KOLOSAL_BACKGROUND", "0")];
    let vpy = make_venv(last, &venv);
    fs::remove_dir_all(&extra).unwrap();
    with_pth(&vpy);
    let o = launch_with(&vpy, &app, &cache, &no_bg);
    assert!(log(&o).contains("probe: the guess held"), "{}", log(&o));
    same_as_python("no background, guess held", &o, &vpy, &app);
    let vpy = make_venv(last, &venv);
    let o = launch_with(&vpy, &app, &cache, &no_bg);
    assert!(
        log(&o).contains("probe: the guess did not hold"),
        "{}",
        log(&o)
    );
    same_as_python("no background, guess wrong", &o, &vpy, &app);

    // A background run already pending for this launch (its lock held):
    // the launch cannot hand over, so it probes, finds its guess right and
    // records the manifest itself.
    let vpy = make_venv(last, &venv);
    let held = hold_background_lock(&cache);
    // (The learner waits for the background run, which is this lock.)
    let o = launch_no_wait(&vpy, &app, &cache, &[]);
    drop(held);
    common::wait_background(&cache);
    assert!(
        log(&o).contains("a background run is already pending"),
        "{}",
        log(&o)
    );
    assert!(log(&o).contains("probe: the guess held"), "{}", log(&o));
    // What it left to that background run is pending in its manifest: the
    // next launch compiles it (that run here held only the lock).
    let o = launch(&vpy, &app, &cache);
    same_as_python("background pending", &o, &vpy, &app);
    warm("background pending", &vpy, &app, &cache);

    // Made again from another Python version: another binary, so no guess
    // at all (a guess only ever names the same build).
    let vpy = make_venv(first, &venv);
    let o = launch(&vpy, &app, &cache);
    assert!(!log(&o).contains("probe: the guess"), "{}", log(&o));
    same_as_python("another version", &o, &vpy, &app);
}

/// The next launch finds every stamp holding.
fn warm(what: &str, vpy: &Path, app: &Path, cache: &Path) {
    let o = launch(vpy, app, cache);
    assert!(
        log(&o).contains("warm: manifest holds"),
        "{what}: {}",
        log(&o)
    );
}

/// Holds the background lock of every launch key the cache has a
/// manifest for (this test has one), as a pending background run does.
fn hold_background_lock(cache: &Path) -> Vec<nix::fcntl::Flock<fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    let mut held = Vec::new();
    for e in fs::read_dir(cache.join("manifests")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "bg") {
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .unwrap();
            held.push(
                Flock::lock(f, FlockArg::LockExclusive)
                    .map_err(|(_, e)| e)
                    .unwrap(),
            );
        }
    }
    assert!(!held.is_empty(), "no background lock to hold");
    held
}
