//! The wheel (issue 16): `kolosal` and `kolosal-python` plus the `kolosal`
//! Python package, built by maturin from `pyproject.toml`.
//!
//! Fast (always): a tool environment's python first on PATH (`uv tool`,
//! `pipx`, `uvx`'s cached venvs) is never the interpreter the launcher runs;
//! a plain venv first on PATH still is.
//!
//! Heavy (`KOLOSAL_TEST_HEAVY=1`; PyPI for maturin, pytest and uv): builds
//! the wheel (or takes `KOLOSAL_TEST_WHEEL`, which `.ci/run` sets after
//! building it once), checks what is in it, installs it into a fresh venv
//! of the oldest CPython >= 3.8, runs the Python API suite
//! (`python/tests`) there against the oldest and newest interpreters, runs
//! a small app through the wheel's `kolosal-python` and through this
//! build's side by side (same output, same pycs, warm second launch), and
//! installs the wheel as a uv tool: inside a project with its own `.venv`,
//! `kolosal-python` runs that project's interpreter, never the tool's.

use crate::common;
use common::ok;

use common::Python;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The oldest and the newest of `pythons`.
fn ends(pythons: &[Python]) -> Vec<Python> {
    let mut v: Vec<Python> = pythons.first().into_iter().cloned().collect();
    if pythons.len() > 1 {
        v.extend(pythons.last().cloned());
    }
    v
}

fn make_venv(py: &Python, dir: &Path) {
    ok(
        py.cmd()
            .args(["-m", "venv", "--without-pip"])
            .arg(dir)
            .output()
            .unwrap(),
        "python -m venv",
    );
}

fn prefix_of(py: &Path) -> String {
    stdout(&ok(
        common::clean_command(py)
            .args(["-c", "import sys; print(sys.prefix)"])
            .output()
            .unwrap(),
        "sys.prefix",
    ))
}

fn join_path(dirs: &[&Path]) -> std::ffi::OsString {
    std::env::join_paths(dirs).unwrap()
}

/// `launcher -c "print(sys.prefix)"` in `cwd` with `path` as PATH and no
/// VIRTUAL_ENV: the prefix of the interpreter it ran.
fn launched_prefix(launcher: &Path, cwd: &Path, path: &std::ffi::OsStr, cache: &Path) -> String {
    let out = common::clean_command(launcher)
        .current_dir(cwd)
        .env("PATH", path)
        .env("KOLOSAL_CACHE_DIR", cache)
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .unwrap();
    stdout(&ok(out, "kolosal-python -c"))
}

#[test]
fn a_tool_environments_python_on_path_is_not_the_users() {
    let pythons = ends(&common::pythons());
    common::report("wheel::tool_environment_skipped", &pythons);
    for py in &pythons {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let work = root.join("work"); // no .venv above it
        std::fs::create_dir_all(&work).unwrap();
        let cache = root.join("kolosal-cache");
        let base_bin = &py.path_dir(&root.join("base"));
        let base = prefix_of(&py.path);

        // (layout, marker file, is it a tool environment?)
        let cases: [(&str, Option<&str>, bool); 5] = [
            (
                "uvtools/kolosal",
                Some("uvtools/kolosal/uv-receipt.toml"),
                true,
            ),
            (
                "pipx/venvs/kolosal",
                Some("pipx/venvs/kolosal/pipx_metadata.json"),
                true,
            ),
            // uvx / uv tool run: an unnamed venv inside uv's cache, whose
            // root carries CACHEDIR.TAG.
            (
                "uv-cache/archive-v0/Xy12",
                Some("uv-cache/CACHEDIR.TAG"),
                true,
            ),
            // The app's own venv (kolosal pip-installed into it): a venv's
            // own CACHEDIR.TAG, as `uv venv` writes, does not make it a tool's.
            ("app-venv", Some("app-venv/CACHEDIR.TAG"), false),
            ("plain-venv", None, false),
        ];
        for (dir, marker, is_tool) in cases {
            let v = root.join(dir);
            make_venv(py, &v);
            if let Some(m) = marker {
                std::fs::write(
                    root.join(m),
                    "Signature: 8a477f597d28d172789f06886806bc55\n",
                )
                .unwrap();
            }
            let path = join_path(&[&v.join("bin"), base_bin]);
            let got = launched_prefix(common::launcher_bin(), &work, &path, &cache);
            let want = if is_tool {
                base.clone()
            } else {
                v.display().to_string()
            };
            assert_eq!(got, want, "{dir} first on PATH, {}", py.label());
        }
    }
}

/// What the Python package reads: `compile --json` and `clean --json`
/// (`"schema": 1`), and `-o 3` refused before anything is written.
#[test]
fn compile_and_clean_speak_json_and_refuse_bad_levels() {
    let py = common::pythons().last().cloned().expect("a CPython");
    common::report("wheel::cli_json", std::slice::from_ref(&py));
    let root = tempfile::tempdir().unwrap();
    let tree = root.path().join("tree");
    std::fs::create_dir_all(tree.join("pkg")).unwrap();
    std::fs::write(tree.join("pkg/__init__.py"), "X = 1\n").unwrap();
    std::fs::write(tree.join("pkg/bad.py"), "def f(:\n").unwrap();
    let kolosal = |args: &[&str]| {
        common::clean_command(common::kolosal_bin())
            .current_dir(&tree)
            .env("KOLOSAL_CACHE_DIR", root.path().join("cache"))
            .args(args)
            .arg(format!("--python={}", py.path.display()))
            .output()
            .unwrap()
    };
    for level in ["3", "-1"] {
        let out = kolosal(&["compile", "-o", level, "."]);
        assert_eq!(out.status.code(), Some(2), "-o {level}");
        assert!(pycs_under(&tree).is_empty(), "-o {level} wrote pycs");
    }
    let out = kolosal(&["compile", "--json", "-o", "0", "-o", "2", "."]);
    assert_eq!(out.status.code(), Some(1), "a syntax error fails the run");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["levels"], serde_json::json!([0, 2]));
    let mut written: Vec<String> = doc["compiled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["pyc"]
                .as_str()
                .unwrap()
                .trim_start_matches("./")
                .to_string()
        })
        .collect();
    written.sort();
    assert_eq!(
        written,
        pycs_under(&tree),
        "compiled[] names the pycs on disk"
    );
    // bad.py fails once per level.
    assert_eq!(doc["failed"], 2);
    let failures = doc["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2);
    assert!(failures
        .iter()
        .all(|f| f.as_str().unwrap().contains("bad.py:1: SyntaxError")));
    assert!(out.stderr.is_empty(), "--json keeps stderr quiet");
    let out = common::clean_command(common::kolosal_bin())
        .current_dir(&tree)
        .args(["clean", "--json", "."])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&ok(out, "clean --json").stdout).unwrap();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["removed"].as_array().unwrap().len(), written.len());
    assert!(pycs_under(&tree).is_empty());
}

// -- heavy: the wheel itself -------------------------------------------------

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A venv of `py` with `packages` from PyPI.
fn venv_with(py: &Python, dir: &Path, packages: &[&str]) -> PathBuf {
    ok(
        py.cmd().args(["-m", "venv"]).arg(dir).output().unwrap(),
        "python -m venv",
    );
    if !packages.is_empty() {
        ok(
            common::network_command(dir.join("bin/python"))
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
                .args(packages)
                .output()
                .unwrap(),
            "pip install",
        );
    }
    dir.join("bin/python")
}

/// `KOLOSAL_TEST_WHEEL`, else a wheel built now with maturin from PyPI.
fn the_wheel(py: &Python, root: &Path) -> PathBuf {
    if let Some(w) = std::env::var_os("KOLOSAL_TEST_WHEEL") {
        common::note(&format!("[wheel] using {}", Path::new(&w).display()));
        return PathBuf::from(w);
    }
    let tools = venv_with(py, &root.join("build-venv"), &["maturin"]);
    let out_dir = root.join("wheels");
    let started = Instant::now();
    let mut cmd = common::clean_command(tools.with_file_name("maturin"));
    for keep in ["CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    ok(
        cmd.current_dir(repo())
            .args(["build", "--release", "--locked", "-o"])
            .arg(&out_dir)
            .output()
            .unwrap(),
        "maturin build",
    );
    common::note(&format!(
        "[wheel] maturin build --release: {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    let wheel = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .expect("maturin wrote a wheel");
    wheel
}

fn pycs_under(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pyc"))
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(from).unwrap();
        if rel.components().any(|c| c.as_os_str() == "__pycache__") {
            continue;
        }
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// One launch of `launcher main.py hello wheel` in `app`.
fn launch(launcher: &Path, app: &Path, py_bin: &Path, cache: &Path, log: bool) -> Output {
    let mut cmd = common::clean_command(launcher);
    cmd.current_dir(app)
        .env(
            "PATH",
            join_path(&[py_bin, Path::new("/usr/bin"), Path::new("/bin")]),
        )
        .env("KOLOSAL_CACHE_DIR", cache)
        .env("KOLOSAL_BACKGROUND", "0")
        .args(["main.py", "hello", "wheel"]);
    if log {
        cmd.env("KOLOSAL_LOG", "debug");
    }
    cmd.output().unwrap()
}

#[test]
#[cfg_attr(
    not(feature = "heavy"),
    ignore = "heavy suite: cargo test --features heavy"
)]
fn the_wheel_installs_and_behaves_like_the_cargo_build() {
    let all = common::pythons();
    let py38: Vec<Python> = all
        .iter()
        .filter(|p| (p.version.0, p.version.1) >= (3, 8))
        .cloned()
        .collect();
    let oldest38 = py38.first().expect("a CPython >= 3.8").clone();
    let newest = all.last().unwrap().clone();
    let targets = ends(&all);
    common::report("wheel::installs_and_behaves", &targets);
    let root = tempfile::tempdir().unwrap();
    let root = root.path();

    // 1. The wheel and what is in it.
    // maturin runs from a venv with pip: Debian's 3.14/3.15 have no
    // ensurepip, so the newest interpreter up to 3.13 builds.
    let builder = all
        .iter()
        .rfind(|p| (p.version.0, p.version.1) <= (3, 13))
        .expect("a CPython <= 3.13 to run maturin")
        .clone();
    let wheel = the_wheel(&builder, root);
    let size = std::fs::metadata(&wheel).unwrap().len();
    let listing = stdout(&ok(
        newest
            .cmd()
            .args(["-m", "zipfile", "-l"])
            .arg(&wheel)
            .output()
            .unwrap(),
        "zipfile -l",
    ));
    for needed in [
        "kolosal/__init__.py",
        "kolosal/_api.py",
        "kolosal/__main__.py",
        "kolosal/py.typed",
        ".data/scripts/kolosal ",
        ".data/scripts/kolosal-python ",
    ] {
        assert!(
            listing.contains(needed),
            "{needed} not in the wheel:\n{listing}"
        );
    }

    // 2. A fresh venv of the oldest supported Python: install, import time,
    //    the Python API suite.
    let venv = root.join("venv");
    let vpy = venv_with(&oldest38, &venv, &["pytest", "uv"]);
    let started = Instant::now();
    ok(
        common::clean_command(&vpy)
            .args(["-m", "pip", "install", "-q", "--no-deps", "--no-index"])
            .arg(&wheel)
            .output()
            .unwrap(),
        "pip install WHEEL",
    );
    let install_s = started.elapsed().as_secs_f64();
    for b in ["kolosal", "kolosal-python"] {
        assert!(
            venv.join("bin").join(b).is_file(),
            "{b} not on the venv's PATH"
        );
    }
    // `-X importtime`'s cumulative figure for the package (microseconds;
    // the least of 7 runs): wall-clock process times are mostly noise on a
    // shared machine.
    let import_us = |module: &str| -> u64 {
        (0..7)
            .filter_map(|_| {
                let out = common::clean_command(&vpy)
                    .args(["-X", "importtime", "-c", &format!("import {module}")])
                    .output()
                    .unwrap();
                let err = String::from_utf8_lossy(&ok(out, "import kolosal").stderr).into_owned();
                err.lines()
                    .find(|l| l.trim_end().ends_with(&format!("| {module}")))
                    .and_then(|l| l.split('|').nth(1))
                    .and_then(|n| n.trim().parse().ok())
            })
            .min()
            .expect("-X importtime reported the module")
    };
    common::note(&format!(
        "[wheel] {} ({} bytes = {:.2} MB); pip install --no-deps: {:.2} s; python {}: \
         import kolosal {:.2} ms, kolosal._api (first use) {:.1} ms (-X importtime)",
        wheel.file_name().unwrap().to_string_lossy(),
        size,
        size as f64 / 1e6,
        install_s,
        oldest38.label(),
        import_us("kolosal") as f64 / 1000.0,
        import_us("kolosal._api") as f64 / 1000.0,
    ));
    for target in &targets {
        let out = common::clean_command(&vpy)
            .current_dir(repo())
            .env("KOLOSAL_TEST_PYTHON", &target.path)
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "python/tests",
            ])
            .output()
            .unwrap();
        let out = ok(out, &format!("pytest python/tests for {}", target.label()));
        common::note(&format!(
            "[wheel] pytest ({} -> {}): {}",
            oldest38.label(),
            target.label(),
            stdout(&out).lines().last().unwrap_or("")
        ));
    }

    // 3. The same app through the wheel's launcher and this build's.
    // A python3 name for the newest (3.15 is installed as python3.15-host).
    let py_bin = &newest.path_dir(&root.join("newest"));
    let demo = repo().join("tests/demo");
    let mut runs = Vec::new();
    for (name, launcher) in [
        ("cargo", common::launcher_bin().to_path_buf()),
        ("wheel", venv.join("bin/kolosal-python")),
    ] {
        let app = root.join(format!("app-{name}"));
        copy_tree(&demo, &app);
        let cache = root.join(format!("cache-{name}"));
        let cold = launch(&launcher, &app, py_bin, &cache, false);
        let pycs = pycs_under(&app);
        let warm = launch(&launcher, &app, py_bin, &cache, true);
        let warm_log = String::from_utf8_lossy(&warm.stderr).into_owned();
        assert!(
            warm_log.contains("warm: manifest holds"),
            "{name}: second launch not warm:\n{warm_log}"
        );
        assert!(!pycs.is_empty(), "{name}: no pyc written");
        let sources: Vec<PathBuf> = ["app/__init__.py", "app/report.py", "app/words.py"]
            .iter()
            .map(|s| app.join(s))
            .collect();
        let verdicts = common::pyc_verdicts(&newest.path, &app, &[], &sources);
        assert!(
            verdicts.iter().all(|v| v.starts_with("OK")),
            "{name}: {verdicts:?}"
        );
        runs.push((
            cold.status.code(),
            cold.stdout,
            cold.stderr,
            pycs,
            warm.stdout,
        ));
    }
    assert_eq!(
        runs[0], runs[1],
        "the wheel's kolosal-python differs from the cargo build's"
    );

    // 4. As a uv tool: the user's interpreter, never the tool's.
    let uv = venv.join("bin/uv");
    let uv_cmd = |cwd: &Path| {
        let mut c = common::network_command(&uv);
        c.current_dir(cwd)
            .env("UV_TOOL_DIR", root.join("uv-tools"))
            .env("UV_TOOL_BIN_DIR", root.join("uv-bin"))
            .env("UV_CACHE_DIR", root.join("uv-cache"))
            .env("UV_NO_CONFIG", "1")
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("UV_PYTHON", &oldest38.path)
            .env("HOME", root.join("home"))
            .env("KOLOSAL_CACHE_DIR", root.join("uv-kcache"))
            .env(
                "PATH",
                join_path(&[py_bin, Path::new("/usr/bin"), Path::new("/bin")]),
            );
        c
    };
    ok(
        uv_cmd(root)
            .args(["tool", "install"])
            .arg(&wheel)
            .output()
            .unwrap(),
        "uv tool install WHEEL",
    );
    assert!(root.join("uv-tools/kolosal/uv-receipt.toml").is_file());
    let project = root.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("main.py"),
        "import sys, json\nprint(json.dumps([sys.prefix, sys.argv[1:]]))\n",
    )
    .unwrap();
    let project_venv = project.join(".venv");
    make_venv(&newest, &project_venv);
    let want = format!("[\"{}\", [\"x\"]]", project_venv.display());
    // The installed tool, from the project directory.
    let out = common::clean_command(root.join("uv-bin/kolosal-python"))
        .current_dir(&project)
        .env("PATH", join_path(&[&root.join("uv-bin"), py_bin]))
        .env("KOLOSAL_CACHE_DIR", root.join("uv-kcache"))
        .args(["main.py", "x"])
        .output()
        .unwrap();
    assert_eq!(stdout(&ok(out, "uv tool kolosal-python")), want);
    // uv tool run (uvx): the tool venv's bin is first on PATH.
    let out = uv_cmd(&project)
        .args(["tool", "run", "--from"])
        .arg(&wheel)
        .args(["kolosal-python", "main.py", "x"])
        .output()
        .unwrap();
    assert_eq!(stdout(&ok(out, "uv tool run kolosal-python")), want);
    let elsewhere = root.join("no-project");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = uv_cmd(&elsewhere)
        .args(["tool", "run", "--from"])
        .arg(&wheel)
        .args(["kolosal-python", "-c", "import sys; print(sys.prefix)"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&ok(out, "uv tool run, no project")),
        prefix_of(&newest.path),
        "uvx's own cached venv must not be the interpreter"
    );
}
