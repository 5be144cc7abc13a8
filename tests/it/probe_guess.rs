//! A venv made again at the same path (an image rebuild, a CI job, `uv
//! venv` over the old one) misses the probe cache; the launcher computes
//! the closure from the facts that path gave last time while the new venv
//! is probed, and keeps that closure only when the probe answers the same
//! facts (a guess is only ever about the same interpreter binary). Checked against the interpreter itself: the program's output is
//! plain python's, and `python -v` loads every closure pyc the launch left.

use crate::common::{self, Python};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// main.py imports a local module and one installed in the venv.
fn write_app(app: &Path) {
    fs::create_dir_all(app).unwrap();
    fs::write(
        app.join("main.py"),
        "import sys, helper, sitemod\nprint(sys.version_info[:2], helper.X, sitemod.Y)\n",
    )
    .unwrap();
    fs::write(app.join("helper.py"), "import json\nX = json.dumps(1)\n").unwrap();
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
    let mut k = common::clean_command(common::launcher_bin());
    k.current_dir(app)
        .env("KOLOSAL_PYTHON", vpy)
        .env("KOLOSAL_CACHE_DIR", cache)
        .env("KOLOSAL_LOG", "debug")
        .arg("main.py");
    let out = common::ok(k.output().unwrap(), "kolosal-python main.py");
    common::wait_background(cache);
    out
}

fn plain(vpy: &Path, app: &Path, args: &[&str]) -> Output {
    let mut p: Command = common::clean_command(vpy);
    p.current_dir(app)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(args)
        .arg("main.py");
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

    // The same venv made again: the guess holds, the closure is the same.
    let vpy = make_venv(last, &venv);
    let o = launch(&vpy, &app, &cache);
    assert!(log(&o).contains("probe: the guess held"), "{}", log(&o));
    same_as_python("made again", &o, &vpy, &app);
    let warm = launch(&vpy, &app, &cache);
    assert!(
        log(&warm).contains("warm: manifest holds"),
        "{}",
        log(&warm)
    );

    // Made again with a `.pth` that adds a directory to `sys.path`, where
    // `sitemod` now lives: the guess does not hold, and the closure is
    // computed from the probe's facts (the module is found there).
    let vpy = make_venv(last, &venv);
    let extra = tmp.path().join("extra");
    fs::create_dir_all(&extra).unwrap();
    let site = common::purelib(&vpy);
    fs::rename(site.join("sitemod.py"), extra.join("sitemod.py")).unwrap();
    fs::write(site.join("extra.pth"), format!("{}\n", extra.display())).unwrap();
    let o = launch(&vpy, &app, &cache);
    assert!(
        log(&o).contains("probe: the guess did not hold"),
        "{}",
        log(&o)
    );
    same_as_python("a .pth added", &o, &vpy, &app);

    // Made again from another Python version: another binary, so no guess
    // at all (a guess only ever names the same build).
    let vpy = make_venv(first, &venv);
    let o = launch(&vpy, &app, &cache);
    assert!(!log(&o).contains("probe: the guess"), "{}", log(&o));
    same_as_python("another version", &o, &vpy, &app);
}
