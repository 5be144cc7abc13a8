//! The learned closure at build time: `kolosal compile --trace -- COMMAND`,
//! compiled twins (an extension module with its source beside it), and the
//! origin each module shows in `kolosal closure --json` / `status --entry`.
//!
//! The oracle is CPython itself: after the build step, `python -v` of the
//! same command must compile no module from source (`# code object from
//! X.py`; a pyc load prints the quoted pyc path), and the traced run's
//! stdout, stderr and exit status must equal plain python's.
//!
//! The plugin app needs only the standard library and runs by default; the
//! Django and black checks install from PyPI (`--no-compile`) and need
//! `KOLOSAL_TEST_HEAVY=1`.

use crate::common;
use common::{pyc_loads, source_compiles};

use common::Python;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"))
}

/// The oldest and the newest interpreter of `pythons`.
fn ends(pythons: &[Python]) -> Vec<Python> {
    let mut v = vec![pythons[pythons.len() - 1].clone()];
    if pythons.len() > 1 {
        v.push(pythons[0].clone());
    }
    v
}

/// A world for one test: a project directory, a private kolosal cache and
/// a private HOME.
struct World {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("proj");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(base.join("home")).unwrap();
        World {
            _tmp: tmp,
            base,
            root,
        }
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn env(&self, c: &mut Command) {
        c.current_dir(&self.root)
            .env("HOME", self.base.join("home"))
            .env("PATH", "/usr/bin:/bin")
            .env("KOLOSAL_CACHE_DIR", self.base.join("kcache"));
    }

    /// `kolosal ARGS`. The machine's PYTHONDONTWRITEBYTECODE=1 is set on
    /// purpose: the trace must remove it from the command it runs.
    fn kolosal(&self, args: &[&str]) -> Command {
        let mut c = common::clean_command(common::kolosal_bin());
        self.env(&mut c);
        c.env("PYTHONDONTWRITEBYTECODE", "1").args(args);
        c
    }

    /// `python ARGS` as a user would run it, writing no pycs of its own (so
    /// one run never changes what the next one finds).
    fn python(&self, py: &Path, args: &[&str]) -> Command {
        let mut c = common::clean_command(py);
        self.env(&mut c);
        c.env("PYTHONDONTWRITEBYTECODE", "1").args(args);
        c
    }
}

/// Every pyc below `dir`.
fn pycs_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "pyc"))
        .collect()
}

fn remove_pycaches(dir: &Path) {
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir() && e.file_name() == "__pycache__")
        .map(|e| e.into_path())
        .collect::<Vec<_>>()
    {
        let _ = std::fs::remove_dir_all(e);
    }
}

const PLUGIN_MAIN: &str = r#"import importlib, json, os, subprocess, sys
import registry

def load(name):
    # Computed names: no static scanner sees these imports.
    return importlib.import_module(f"plugins.{name}")

with open(os.path.join(os.path.dirname(__file__), "config.json")) as f:
    names = json.load(f)["plugins"]
for n in names:
    print(n, load(n).run())
# A subprocess of the command learns too.
out = subprocess.run([sys.executable, "-c", "import importlib; m = importlib.import_module('side' + 'car'); print(m.VALUE)"],
                     capture_output=True, text=True)
print("child", out.stdout.strip(), out.returncode)
print("registry", registry.describe(), file=sys.stderr)
sys.exit(3)
"#;

fn write_plugin_app(w: &World) {
    w.write("main.py", PLUGIN_MAIN);
    w.write("config.json", r#"{"plugins": ["alpha", "beta", "gamma"]}"#);
    w.write(
        "registry.py",
        "def describe():\n    from plugins import _util\n    return _util.tag('reg')\n",
    );
    w.write("plugins/__init__.py", "");
    w.write(
        "plugins/_util.py",
        "def tag(s):\n    return '<' + s + '>'\n",
    );
    w.write(
        "plugins/alpha.py",
        "from . import _util\nimport plugins.helpers.deep\ndef run():\n    return _util.tag('alpha') + plugins.helpers.deep.X\n",
    );
    w.write("plugins/helpers/__init__.py", "");
    w.write(
        "plugins/helpers/deep.py",
        "import decimal\nX = str(decimal.Decimal('1.5'))\n",
    );
    // Imported only by beta's module-level code: in no static closure of
    // main.py, reached from the learned beta.
    w.write(
        "plugins/beta.py",
        "import plugins.only_from_beta as o\ndef run():\n    return o.NAME\n",
    );
    w.write(
        "plugins/only_from_beta.py",
        "import fractions\nNAME = 'beta-' + str(fractions.Fraction(1, 3))\n",
    );
    w.write(
        "plugins/gamma.py",
        "import textwrap\ndef run():\n    return textwrap.shorten('gamma gamma gamma', 11)\n",
    );
    w.write(
        "sidecar.py",
        "import colorsys\nVALUE = colorsys.rgb_to_hsv(1, 0, 0)[0]\n",
    );
}

/// A plugin app that picks its modules by computed names, and runs a child
/// interpreter that does the same: `compile --entry` leaves the plugins to
/// be compiled from source; `compile --trace` leaves nothing, on the oldest
/// and newest CPython with a pycache prefix (3.8+; every one with
/// `KOLOSAL_TEST_HEAVY=1`), at -O levels 0 and 1.
/// The traced run's stdout, stderr and exit status (3) are plain python's.
#[test]
fn trace_learns_modules_imported_by_computed_names() {
    let all = common::pythons_at_least((3, 8));
    // Every interpreter in the heavy run; the oldest and newest otherwise.
    let pythons = if common::heavy() { all } else { ends(&all) };
    common::report("learned_trace::plugins", &pythons);
    for py in &pythons {
        for opt in [&[][..], &["-O"][..]] {
            let w = World::new();
            write_plugin_app(&w);
            let py_s = py.path.to_str().unwrap();
            let mut args: Vec<&str> = opt.to_vec();
            args.push("main.py");
            let plain = output(&mut w.python(&py.path, &args));
            assert_eq!(plain.status.code(), Some(3), "{}", common::describe(&plain));

            // The static closure alone misses the plugins.
            let mut entry = w.kolosal(&["compile", "-q", "--python", py_s, "--entry", "main.py"]);
            if !opt.is_empty() {
                entry.args(["-o", "1"]);
            }
            let e = output(&mut entry);
            assert!(e.status.success(), "{}", common::describe(&e));
            let mut vargs = vec!["-v"];
            vargs.extend(&args);
            let v = output(&mut w.python(&py.path, &vargs));
            let missed = source_compiles(&v.stderr);
            for m in [
                "plugins/alpha.py",
                "plugins/beta.py",
                "plugins/only_from_beta.py",
            ] {
                assert!(
                    missed.iter().any(|p| p.ends_with(m)),
                    "{}: --entry was expected to miss {m}: {missed:?}",
                    py.label()
                );
            }

            // The trace.
            let mut cmd: Vec<&str> = vec!["compile", "-q", "--trace", "--", py_s];
            cmd.extend(&args);
            let t = output(&mut w.kolosal(&cmd));
            assert_eq!(
                t.status.code(),
                plain.status.code(),
                "{}",
                common::describe(&t)
            );
            assert_eq!(
                String::from_utf8_lossy(&t.stdout),
                String::from_utf8_lossy(&plain.stdout)
            );
            assert_eq!(
                String::from_utf8_lossy(&t.stderr),
                String::from_utf8_lossy(&plain.stderr)
            );
            let v = output(&mut w.python(&py.path, &vargs));
            assert_eq!(
                source_compiles(&v.stderr),
                Vec::<String>::new(),
                "{} {opt:?}: compiled from source after the trace",
                py.label()
            );
            assert!(pyc_loads(&v.stderr)
                .iter()
                .any(|p| p.contains("only_from_beta")));
            // The child interpreter's module too.
            let child = output(&mut w.python(
                &py.path,
                &[opt, &["-v", "-c", "import sidecar"][..]].concat(),
            ));
            assert_eq!(source_compiles(&child.stderr), Vec::<String>::new());
            // And the program still behaves exactly as before.
            let again = output(&mut w.python(&py.path, &args));
            assert_eq!(again.stdout, plain.stdout);
            assert_eq!(again.stderr, plain.stderr);
            assert_eq!(again.status.code(), plain.status.code());
            assert!(!pycs_under(&w.root).is_empty());
        }
    }
}

/// What the trace does not run: a missing command is 127, and a command
/// killed by a signal reports 128 + the signal, as a shell does.
#[test]
fn trace_exit_statuses_are_the_commands() {
    let pythons = common::pythons_at_least((3, 8));
    let py = pythons.last().expect("a CPython >= 3.8");
    common::report("learned_trace::exit", std::slice::from_ref(py));
    let w = World::new();
    w.write(
        "m.py",
        "import os, signal\nprint('hi', flush=True)\nos.kill(os.getpid(), signal.SIGTERM)\n",
    );
    let py_s = py.path.to_str().unwrap();
    let t = output(&mut w.kolosal(&["compile", "-q", "--trace", "--", py_s, "m.py"]));
    assert_eq!(t.status.code(), Some(128 + 15), "{}", common::describe(&t));
    assert_eq!(t.stdout, b"hi\n");
    let t = output(&mut w.kolosal(&["compile", "-q", "--trace", "--", "/no/such/python"]));
    assert_eq!(t.status.code(), Some(127), "{}", common::describe(&t));
    assert_eq!(String::from_utf8_lossy(&t.stderr).lines().count(), 1);
}

/// `kolosal closure --json` and `kolosal status --entry --json` name each
/// module's origin: `static` for module-level imports, `lazy` for imports
/// only in function bodies.
#[test]
fn origins_are_visible() {
    let pythons = common::pythons();
    let py = pythons.last().unwrap();
    common::report("learned_trace::origins", std::slice::from_ref(py));
    let w = World::new();
    write_plugin_app(&w);
    let py_s = py.path.to_str().unwrap();
    let c = output(&mut w.kolosal(&["closure", "--python", py_s, "main.py", "--json"]));
    assert!(c.status.success(), "{}", common::describe(&c));
    let doc: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
    let origin = |name: &str| {
        doc["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["closure_origin"]["kind"].as_str().unwrap().to_string())
    };
    assert_eq!(origin("registry").as_deref(), Some("static"));
    assert_eq!(origin("plugins._util").as_deref(), Some("lazy"));
    assert_eq!(origin("plugins.alpha"), None);
    let s = output(&mut w.kolosal(&["status", "--python", py_s, "--entry", "main.py", "--json"]));
    assert!(s.status.success(), "{}", common::describe(&s));
    let doc: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    let m = doc["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "plugins._util")
        .expect("plugins._util in status --entry");
    assert_eq!(m["closure_origin"]["kind"], "lazy");
    assert_eq!(m["levels"][0]["state"], "missing");
}

/// A venv for `py` with `packages` installed from PyPI without pycs.
fn venv_with(w: &World, py: &Python, packages: &[&str]) -> PathBuf {
    // --without-pip + uv (common::venv_with): Debian's 3.14/3.15 have no
    // ensurepip wheels.
    let venv = w.base.join("venv");
    let vpy = common::venv_with(py, &venv, packages);
    remove_pycaches(&venv);
    vpy
}

/// Django: `compile --trace -- python manage.py check` on a fresh
/// `django-admin startproject`; afterwards `python -v manage.py check`
/// compiles nothing from source (settings strings name ~100 modules that
/// are imported with import_module).
#[test]
#[cfg_attr(
    not(feature = "heavy"),
    ignore = "heavy suite: cargo test --features heavy"
)]
fn django_check_traced() {
    let pythons = ends(&common::pythons_at_least((3, 10)));
    common::report("learned_trace::django", &pythons);
    for py in &pythons {
        django_on(py);
    }
}

fn django_on(py: &Python) {
    let w = World::new();
    let vpy = venv_with(&w, py, &["django"]);
    let admin = vpy.with_file_name("django-admin");
    let o = output(
        common::clean_command(&admin)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(&w.root)
            .args(["startproject", "mysite", "."]),
    );
    assert!(o.status.success(), "startproject: {}", common::describe(&o));
    let v = output(&mut w.python(&vpy, &["-v", "manage.py", "check"]));
    let before = source_compiles(&v.stderr).len();
    let plain = output(&mut w.python(&vpy, &["manage.py", "check"]));
    assert!(plain.status.success(), "{}", common::describe(&plain));
    let vpy_s = vpy.to_str().unwrap();
    let t = output(&mut w.kolosal(&[
        "compile",
        "-q",
        "--trace",
        "--",
        vpy_s,
        "manage.py",
        "check",
    ]));
    assert_eq!(
        t.status.code(),
        plain.status.code(),
        "{}",
        common::describe(&t)
    );
    assert_eq!(t.stdout, plain.stdout);
    assert_eq!(t.stderr, plain.stderr);
    let v = output(&mut w.python(&vpy, &["-v", "manage.py", "check"]));
    assert_eq!(source_compiles(&v.stderr), Vec::<String>::new());
    let after = output(&mut w.python(&vpy, &["manage.py", "check"]));
    assert_eq!(after.stdout, plain.stdout);
    assert_eq!(after.stderr, plain.stderr);
    assert_eq!(after.status.code(), plain.status.code());
    common::note(&format!(
        "[learned_trace] django check: {before} modules compiled from source before the trace, 0 after"
    ));
}

/// black (mypyc: `black/__init__.py` beside `black/__init__.*.so`): the
/// closure follows the sources of its compiled modules, so `compile -m
/// black` leaves nothing for `python -v -m black --version` to compile;
/// `--why` names the twin; and `compile --trace -- python -m black FILE`
/// covers formatting a file.
#[test]
#[cfg_attr(
    not(feature = "heavy"),
    ignore = "heavy suite: cargo test --features heavy"
)]
fn black_twins() {
    let pythons = ends(&common::pythons_at_least((3, 10)));
    common::report("learned_trace::black", &pythons);
    for py in &pythons {
        black_on(py);
    }
}

fn black_on(py: &Python) {
    let w = World::new();
    let vpy = venv_with(&w, py, &["black"]);
    let vpy_s = vpy.to_str().unwrap();
    let c = output(&mut w.kolosal(&["compile", "-q", "--python", vpy_s, "-m", "black"]));
    assert!(c.status.success(), "{}", common::describe(&c));
    let v = output(&mut w.python(&vpy, &["-v", "-m", "black", "--version"]));
    assert!(v.status.success(), "{}", common::describe(&v));
    assert_eq!(source_compiles(&v.stderr), Vec::<String>::new());
    let why = output(&mut w.kolosal(&[
        "closure",
        "--python",
        vpy_s,
        "-m",
        "black",
        "--why",
        "click.core",
    ]));
    let why = String::from_utf8_lossy(&why.stdout);
    // black ships mypyc wheels only for the versions it was built for; on a
    // newer interpreter it is pure Python and has no twin.
    let compiled = std::fs::read_dir(vpy.parent().unwrap().parent().unwrap().join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|site| {
            std::fs::read_dir(site.path().join("site-packages/black"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".so"))
        });
    if !compiled {
        common::note(&format!(
            "[learned_trace::black] {}: black installed without compiled modules; twin checks skipped",
            py.label()
        ));
        return;
    }
    assert!(why.contains("via the source twin of black"), "{why}");
    let j = output(&mut w.kolosal(&["closure", "--python", vpy_s, "-m", "black", "--json"]));
    let doc: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let black = doc["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "black")
        .unwrap();
    assert_eq!(black["kind"], "extension");
    assert!(black["twin"]
        .as_str()
        .unwrap()
        .ends_with("black/__init__.py"));
    assert_eq!(black["pyc_used"], false);

    // Formatting a file, traced.
    let ugly = "x = {  'a':37,'b':42,\n'c':927}\ndef f(a,):\n  return a\n";
    let run_black = |cmd: &mut Command, cache: &str| {
        w.write("ugly.py", ugly);
        cmd.env("BLACK_CACHE_DIR", w.base.join(cache));
        output(cmd)
    };
    let plain = run_black(&mut w.python(&vpy, &["-m", "black", "ugly.py"]), "c1");
    let formatted = std::fs::read(w.root.join("ugly.py")).unwrap();
    let t = run_black(
        &mut w.kolosal(&[
            "compile", "-q", "--trace", "--", vpy_s, "-m", "black", "ugly.py",
        ]),
        "c2",
    );
    assert_eq!(
        t.status.code(),
        plain.status.code(),
        "{}",
        common::describe(&t)
    );
    assert_eq!(t.stdout, plain.stdout);
    assert_eq!(t.stderr, plain.stderr);
    assert_eq!(std::fs::read(w.root.join("ugly.py")).unwrap(), formatted);
    let v = run_black(&mut w.python(&vpy, &["-v", "-m", "black", "ugly.py"]), "c3");
    assert!(v.status.success(), "{}", common::describe(&v));
    assert_eq!(source_compiles(&v.stderr), Vec::<String>::new());
}

/// Where the interpreter ignores the prefix (3.7 has none; `-E` ignores
/// every PYTHON* variable) the trace sees nothing and says so in one line;
/// the interpreter, with PYTHONDONTWRITEBYTECODE removed, wrote the pycs of
/// what it loaded in place itself, so nothing is compiled from source
/// afterwards either.
#[test]
fn trace_without_a_prefix_says_so() {
    let mut cases: Vec<(Python, Vec<&str>)> = Vec::new();
    let all = common::pythons();
    if let Some(p37) = all.iter().find(|p| (p.version.0, p.version.1) == (3, 7)) {
        cases.push((p37.clone(), vec![]));
    }
    let newest = all.last().unwrap().clone();
    cases.push((newest, vec!["-E"]));
    let labels: Vec<Python> = cases.iter().map(|(p, _)| p.clone()).collect();
    common::report("learned_trace::no-prefix", &labels);
    for (py, flags) in &cases {
        let w = World::new();
        w.write(
            "main.py",
            "import importlib\nm = importlib.import_module('pl' + 'ug')\nprint(m.X)\n",
        );
        w.write("plug.py", "X = 5\n");
        let mut args: Vec<&str> = flags.clone();
        args.push("main.py");
        let plain = output(&mut w.python(&py.path, &args));
        let mut cmd = vec!["compile", "-q", "--trace", "--", py.path.to_str().unwrap()];
        cmd.extend(&args);
        let t = output(&mut w.kolosal(&cmd));
        assert_eq!(t.status.code(), Some(0), "{}", common::describe(&t));
        assert_eq!(t.stdout, plain.stdout);
        let err = String::from_utf8_lossy(&t.stderr);
        let extra: Vec<&str> = err.lines().collect();
        assert_eq!(extra.len(), 1, "{err}");
        assert!(extra[0].starts_with("kolosal: the command loaded no source module"));
        let mut vargs = vec!["-v"];
        vargs.extend(&args);
        let v = output(&mut w.python(&py.path, &vargs));
        assert_eq!(
            source_compiles(&v.stderr),
            Vec::<String>::new(),
            "{}",
            py.label()
        );
    }
}
