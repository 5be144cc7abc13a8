//! docs/uv.md, for real: `uv init` a project, `uv add` a pure-Python
//! package (uv writes no bytecode by default), `uv run kolosal-python
//! main.py`, then a plain `python -v` of the project's venv loads every
//! imported module from a pyc.
//!
//! Heavy (`KOLOSAL_TEST_HEAVY=1`): it installs `uv` from PyPI into a temp
//! venv and lets uv reach PyPI. uv never downloads an interpreter here
//! (`UV_PYTHON_DOWNLOADS=never`, `UV_PYTHON` names a local CPython).

use crate::common;
use common::ok;

use common::Python;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A `uv` child for `project`: its own cache and home, no user or system
/// uv config, no interpreter downloads, this interpreter.
fn uv(uv_bin: &Path, project: &Path, py: &Python, root: &Path) -> Command {
    let mut cmd = common::network_command(uv_bin);
    cmd.current_dir(project)
        .env("HOME", root.join("home"))
        .env("UV_CACHE_DIR", root.join("uv-cache"))
        .env("UV_NO_CONFIG", "1")
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env("UV_PYTHON", &py.path)
        .env("KOLOSAL_CACHE_DIR", root.join("kolosal-cache"));
    cmd
}

const MAIN: &str = r#"import json, os, sys
import idna
print(json.dumps([idna.encode("bücher.example").decode(), sys.prefix,
                  os.environ.get("PYTHONDONTWRITEBYTECODE")]))
"#;

/// The pycs under `dir`.
fn pycs(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "pyc"))
        .collect()
}

fn one_project(uv_bin: &Path, py: &Python, root: &Path) {
    let label = py.label();
    let project = root.join(format!("demo{}{}", py.version.0, py.version.1));
    std::fs::create_dir_all(&project).unwrap();
    ok(
        uv(uv_bin, &project, py, root)
            .args([
                "init",
                "--no-package",
                "--vcs",
                "none",
                "--name",
                "demo",
                ".",
            ])
            .output()
            .unwrap(),
        "uv init",
    );
    ok(
        uv(uv_bin, &project, py, root)
            .args(["add", "idna"])
            .output()
            .unwrap(),
        "uv add idna",
    );
    std::fs::write(project.join("main.py"), MAIN).unwrap();
    let venv = project.join(".venv");
    let site = venv.join(format!(
        "lib/python{}.{}/site-packages",
        py.version.0, py.version.1
    ));
    assert!(
        site.join("idna/core.py").is_file(),
        "{label}: idna not installed"
    );
    assert_eq!(
        pycs(&site),
        Vec::<PathBuf>::new(),
        "{label}: uv wrote bytecode by default"
    );

    // uv run kolosal-python main.py: kolosal-python is on PATH; uv sets
    // VIRTUAL_ENV, so the launcher runs the project's venv.
    let mut run = uv(uv_bin, &project, py, root);
    run.env("PATH", launcher_path())
        .env("KOLOSAL_LOG", "debug")
        .args(["run", "kolosal-python", "main.py"]);
    let out = ok(run.output().unwrap(), "uv run kolosal-python main.py");
    common::wait_background_of(&run);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{label}: {e}: {stdout}\n{stderr}"));
    assert_eq!(
        v,
        serde_json::json!(["xn--bcher-kva.example", venv.to_str().unwrap(), "1"]),
        "{label}: {stderr}"
    );
    let chose = format!("interpreter: {}/bin/python (virtualenv)", venv.display());
    assert!(stderr.contains(&chose), "{label}: {stderr}");
    assert!(stderr.contains("compile: "), "{label}: {stderr}");
    let written = pycs(&site);
    let idna_pyc = format!("idna/__pycache__/core.{}.pyc", py.cache_tag());
    assert!(
        written.iter().any(|p| p.ends_with(&idna_pyc)),
        "{label}: no idna pycs after the run: {written:?}"
    );

    // Now plain python, told not to write: everything it imports from the
    // venv (and the stdlib) comes from a pyc.
    let out = py_v(&venv, &project);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let from_source: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("# code object from "))
        .filter(|p| !p.starts_with('\''))
        .collect();
    assert!(from_source.is_empty(), "{label}: {from_source:?}");
    let core = format!(
        "# code object from '{}/idna/__pycache__/core.",
        site.display()
    );
    assert!(stderr.contains(&core), "{label}: {stderr}");

    // For the doc: what `uv sync --compile-bytecode` writes instead.
    ok(
        uv(uv_bin, &project, py, root)
            .args(["sync", "--compile-bytecode"])
            .output()
            .unwrap(),
        "uv sync --compile-bytecode",
    );
    let all = pycs(&site);
    assert!(all.len() >= written.len(), "{label}: {all:?}");
    // The two compose: uv's pycs are timestamp pycs the launcher accepts.
    let mut again = uv(uv_bin, &project, py, root);
    again
        .env("PATH", launcher_path())
        .env("KOLOSAL_LOG", "debug")
        .args(["run", "kolosal-python", "main.py"]);
    let out = ok(
        again.output().unwrap(),
        "uv run after uv sync --compile-bytecode",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("compile: "), "{label}: {stderr}");
    common::wait_background_of(&again);
    common::note(&format!(
        "[uv_run] {label}: kolosal-python wrote {} pycs in site-packages (the closure); \
         uv sync --compile-bytecode leaves {} (all of it)",
        written.len(),
        all.len()
    ));
}

/// PATH with the built kolosal-python first.
fn launcher_path() -> std::ffi::OsString {
    std::env::join_paths([
        common::launcher_bin().parent().unwrap(),
        Path::new("/usr/bin"),
        Path::new("/bin"),
    ])
    .unwrap()
}

/// `VENV/bin/python -v main.py` with PYTHONDONTWRITEBYTECODE=1.
fn py_v(venv: &Path, project: &Path) -> Output {
    let out = common::clean_command(venv.join("bin/python"))
        .current_dir(project)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-v", "main.py"])
        .output()
        .unwrap();
    ok(out, "python -v main.py")
}

#[test]
#[cfg_attr(
    not(feature = "heavy"),
    ignore = "heavy suite: cargo test --features heavy"
)]
fn uv_run_kolosal_python() {
    // uv makes venvs for 3.8+; the oldest, the newest and every 3.14+ found.
    let all = common::pythons_at_least((3, 8));
    let pythons: Vec<Python> = all
        .iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || *i + 1 == all.len() || p.version >= (3, 14, 0))
        .map(|(_, p)| p.clone())
        .collect();
    common::report("uv_run", &pythons);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let newest = pythons.last().unwrap();
    let tool = root.join("uv-tool");
    // Made with `--without-pip` (Debian's 3.14/3.15 have no ensurepip
    // wheels) and filled by the uv on PATH (or pip); see `venv_with`.
    common::venv_with(newest, &tool, &["uv"]);
    let uv_bin = tool.join("bin/uv");
    let version = Command::new(&uv_bin).arg("--version").output().unwrap();
    common::note(&format!(
        "[uv_run] {}",
        String::from_utf8_lossy(&version.stdout).trim()
    ));
    for py in &pythons {
        one_project(&uv_bin, py, &root);
    }
}
