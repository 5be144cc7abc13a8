//! Run-time learning (`launch::learn`), against real interpreters: modules
//! a program imports under computed names are learned by a detached
//! learner, compiled, and recorded, so that after the second launch a
//! `python -v` run of the same command compiles nothing from source. Every
//! run's stdout, stderr and exit status equal plain python's, byte for
//! byte, and bad conditions only cost the learning.
//!
//! Heavy (`KOLOSAL_TEST_HEAVY=1`): Django and pytest from PyPI, installed
//! with `--no-compile` into temp venvs.

use crate::common;
use common::source_compiles;

use common::Python;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A program that imports every module of `plugins/` by a computed name.
const APP: &str = r#"import importlib, os, sys
here = os.path.dirname(os.path.abspath(__file__))
names = sorted(f[:-3] for f in os.listdir(os.path.join(here, "plugins"))
               if f.endswith(".py") and not f.startswith("_"))
for n in names:
    m = importlib.import_module("plugins." + n)
    print(n, m.VALUE)
"#;

struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
    python: PathBuf,
}

impl Project {
    /// `app.py` (or `script`) beside a `plugins` package of `n` modules
    /// sharing a helper module.
    fn new(py: &Python, script: &str, n: usize) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        let app = root.join("app");
        fs::create_dir_all(app.join("plugins")).unwrap();
        fs::write(app.join("app.py"), script).unwrap();
        fs::write(app.join("plugins/__init__.py"), "").unwrap();
        fs::write(
            app.join("plugins/_common.py"),
            "def twice(x):\n    return 2 * x\n",
        )
        .unwrap();
        for i in 0..n {
            fs::write(
                app.join(format!("plugins/p{i}.py")),
                format!("from plugins import _common\nVALUE = _common.twice({i})\n"),
            )
            .unwrap();
        }
        Project {
            cache: root.join("cache"),
            root: app,
            _tmp: tmp,
            python: py.path.clone(),
        }
    }

    /// An existing project directory `root` run with `python`.
    fn at(tmp: tempfile::TempDir, root: PathBuf, python: PathBuf, cache: &str) -> Project {
        Project {
            cache: root.parent().unwrap().join(cache),
            root,
            _tmp: tmp,
            python,
        }
    }

    fn kolosal(&self, args: &[&str]) -> Command {
        let mut c = common::clean_command(common::launcher_bin());
        c.current_dir(&self.root)
            .args(args)
            .env("KOLOSAL_CACHE_DIR", &self.cache)
            .env("KOLOSAL_PYTHON", &self.python)
            .stdin(Stdio::null());
        c
    }

    /// Plain python, writing no pycs (so it never helps kolosal).
    fn plain(&self, args: &[&str]) -> Command {
        let mut c = common::clean_command(&self.python);
        c.current_dir(&self.root)
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null());
        c
    }

    /// Runs `args` through kolosal-python and plain python; asserts equal
    /// stdout, stderr and status; waits for the learner. Returns kolosal's.
    fn same_as_python(&self, args: &[&str], what: &str) -> Output {
        self.same_as_python_with(args, what, &[])
    }

    fn same_as_python_with(&self, args: &[&str], what: &str, env: &[(&str, &str)]) -> Output {
        self.compared(args, what, env, &|b| b.to_vec())
    }

    /// [`Self::same_as_python_with`], both outputs passed through `norm`
    /// first (pytest prints its own run time).
    fn compared(
        &self,
        args: &[&str],
        what: &str,
        env: &[(&str, &str)],
        norm: &dyn Fn(&[u8]) -> Vec<u8>,
    ) -> Output {
        let mut k = self.kolosal(args);
        let mut p = self.plain(args);
        for (n, v) in env {
            k.env(n, v);
            p.env(n, v);
        }
        let mut ko = k.output().unwrap();
        wait_learners(&self.cache);
        let mut po = p.output().unwrap();
        for o in [&mut ko, &mut po] {
            o.stdout = norm(&o.stdout);
            o.stderr = norm(&o.stderr);
        }
        assert_same(&ko, &po, what);
        ko
    }

    /// Sources `python -v ARGS` compiles (the interpreter itself, writing
    /// nothing).
    fn compiled_from_source(&self, args: &[&str]) -> Vec<String> {
        let mut c = self.plain(&[]);
        c.arg("-v").args(args);
        source_compiles(&c.output().unwrap().stderr)
    }
}

fn assert_same(k: &Output, p: &Output, what: &str) {
    assert_eq!(
        (&k.stdout, &k.stderr, k.status.code()),
        (&p.stdout, &p.stderr, p.status.code()),
        "{what}: kolosal-python differs from python\nkolosal: {}\npython: {}",
        common::describe(k),
        common::describe(p)
    );
}

/// Waits until no learner and no background run holds its lock under the
/// cache `cache` (`<digest>.learn`, `<digest>.bg`); a learner may wait for
/// the background lock to merge, so the learner locks are taken again.
fn wait_learners(cache: &Path) {
    use nix::fcntl::{Flock, FlockArg};
    for ext in ["learn", "bg", "learn"] {
        let Ok(rd) = fs::read_dir(cache.join("manifests")) else {
            return;
        };
        for e in rd.filter_map(|e| e.ok()) {
            if e.path().extension().is_some_and(|x| x == ext) {
                if let Ok(f) = fs::File::open(e.path()) {
                    drop(Flock::lock(f, FlockArg::LockShared));
                }
            }
        }
    }
}

fn newest() -> Python {
    let all = common::pythons_at_least((3, 8));
    all.into_iter().last().expect("a CPython >= 3.8")
}

#[test]
fn computed_names_are_learned_on_every_python() {
    let pythons = common::pythons_at_least((3, 7));
    common::report("learned_run computed names", &pythons);
    for py in &pythons {
        let label = py.label();
        let p = Project::new(py, APP, 3);
        let first = p.same_as_python(&["app.py"], &label);
        assert_eq!(
            String::from_utf8_lossy(&first.stdout),
            "p0 0\np1 2\np2 4\n",
            "{label}"
        );
        p.same_as_python(&["app.py"], &label);
        let left = p.compiled_from_source(&["app.py"]);
        assert_eq!(
            left,
            Vec::<String>::new(),
            "{label}: still compiled from source"
        );
    }
}

#[test]
fn learning_off_leaves_them_to_the_interpreter() {
    let py = newest();
    common::report("learned_run KOLOSAL_LEARN=0", std::slice::from_ref(&py));
    let p = Project::new(&py, APP, 2);
    for _ in 0..2 {
        p.same_as_python_with(&["app.py"], "learn off", &[("KOLOSAL_LEARN", "0")]);
    }
    let left = p.compiled_from_source(&["app.py"]);
    assert_eq!(left.len(), 4, "plugins, p0, p1, _common: {left:?}");
    assert!(!p.cache.join("manifests").read_dir().unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "learn")));
}

#[test]
fn warm_launches_stop_spawning_once_nothing_is_new() {
    let py = newest();
    common::report("learned_run settles", std::slice::from_ref(&py));
    let p = Project::new(&py, APP, 2);
    let mut started = Vec::new();
    for _ in 0..6 {
        let mut k = p.kolosal(&["app.py"]);
        k.env("KOLOSAL_LOG", "debug");
        let o = k.output().unwrap();
        wait_learners(&p.cache);
        assert!(o.status.success(), "{}", common::describe(&o));
        started.push(String::from_utf8_lossy(&o.stderr).contains("learn: learner started"));
    }
    // Cold (learns), warm (nothing new), warm (nothing new: stop), then
    // none. Under load the cold run's learner may miss the plugins (the
    // program imports them before the watches are in place): then the
    // first warm run learns them and stopping takes one run more.
    let stop = started
        .iter()
        .position(|s| !s)
        .expect("learning never stopped");
    assert!((3..=4).contains(&stop), "{started:?}");
    assert!(
        started[..stop].iter().all(|s| *s) && started[stop..].iter().all(|s| !s),
        "{started:?}"
    );
    // A file that changes no import (a log written beside the script)
    // sends the launch to the repair path, which does not restart learning.
    fs::write(p.root.join("run.log"), "x").unwrap();
    let mut k = p.kolosal(&["app.py"]);
    k.env("KOLOSAL_LOG", "debug");
    let o = k.output().unwrap();
    wait_learners(&p.cache);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("repair: closure unchanged"), "{log}");
    assert!(!log.contains("learn: learner started"), "{log}");
    // A new module restarts learning (the cold path), and it is learned.
    fs::write(
        p.root.join("plugins/p9.py"),
        "from plugins import _common\nVALUE = 9\n",
    )
    .unwrap();
    p.same_as_python(&["app.py"], "new plugin");
    p.same_as_python(&["app.py"], "new plugin, again");
    assert_eq!(p.compiled_from_source(&["app.py"]), Vec::<String>::new());
}

#[test]
fn a_long_running_program_learns_while_it_runs() {
    let py = newest();
    common::report("learned_run long-running", std::slice::from_ref(&py));
    // Waits (at most 60 s) until the pyc of a plugin it loaded appears.
    let script = format!(
        "{APP}import time\ncache = os.path.join(here, 'plugins', '__pycache__')\n\
         deadline = time.time() + 60\n\
         while time.time() < deadline and not (os.path.isdir(cache) and \
         any(f.startswith('p1.') for f in os.listdir(cache))):\n    time.sleep(0.05)\n\
         print('done')\n"
    );
    let p = Project::new(&py, &script, 2);
    let t = Instant::now();
    let o = p.kolosal(&["app.py"]).output().unwrap();
    let took = t.elapsed();
    wait_learners(&p.cache);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "p0 0\np1 2\ndone\n",
        "{}",
        common::describe(&o)
    );
    assert!(
        took < Duration::from_secs(30),
        "the pyc was not written while the program ran ({took:?})"
    );
}

#[test]
fn a_removed_package_directory_is_not_learned() {
    let py = newest();
    common::report("learned_run dir removed", std::slice::from_ref(&py));
    let script = "import importlib, os, shutil, sys\n\
        here = os.path.dirname(os.path.abspath(__file__))\n\
        os.makedirs(os.path.join(here, 'tmp_pkg'), exist_ok=True)\n\
        open(os.path.join(here, 'tmp_pkg', '__init__.py'), 'w').close()\n\
        open(os.path.join(here, 'tmp_pkg', 'mod.py'), 'w').write('VALUE = 7\\n')\n\
        importlib.invalidate_caches()\n\
        m = importlib.import_module('plugins.' + 'p0')\n\
        t = importlib.import_module('tmp_pkg.' + 'mod')\n\
        shutil.rmtree(os.path.join(here, 'tmp_pkg'))\n\
        print(m.VALUE, t.VALUE)\n";
    let p = Project::new(&py, script, 1);
    for i in 0..3 {
        p.same_as_python(&["app.py"], &format!("dir removed, run {i}"));
    }
    assert!(!p.root.join("tmp_pkg").exists());
    // What still exists was learned.
    let left = p.compiled_from_source(&["-c", "import plugins.p0"]);
    assert_eq!(left, Vec::<String>::new());
}

#[test]
fn the_watch_limit_only_costs_the_learning() {
    let py = newest();
    common::report("learned_run watch limit", std::slice::from_ref(&py));
    let p = Project::new(&py, APP, 2);
    // One watch: sys.path[0] (the script's directory) only, not plugins/.
    for i in 0..3 {
        p.same_as_python_with(
            &["app.py"],
            &format!("one watch, run {i}"),
            &[("KOLOSAL_LEARN_WATCHES", "1")],
        );
    }
    let left = p.compiled_from_source(&["app.py"]);
    assert_eq!(left.len(), 4, "nothing below plugins/ was seen: {left:?}");
}

#[test]
fn a_learned_module_that_breaks_reports_as_python_does() {
    let py = newest();
    common::report("learned_run syntax error", std::slice::from_ref(&py));
    let p = Project::new(&py, APP, 2);
    p.same_as_python(&["app.py"], "learn");
    p.same_as_python(&["app.py"], "learn again");
    assert_eq!(p.compiled_from_source(&["app.py"]), Vec::<String>::new());
    let bad = p.root.join("plugins/p1.py");
    fs::write(&bad, "VALUE = (\n").unwrap();
    for i in 0..3 {
        let o = p.same_as_python(&["app.py"], &format!("syntax error, run {i}"));
        assert_eq!(o.status.code(), Some(1));
    }
    // Removed: dropped quietly.
    fs::remove_file(&bad).unwrap();
    for i in 0..2 {
        let o = p.same_as_python(&["app.py"], &format!("module removed, run {i}"));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "p0 0\n");
    }
}

#[test]
fn a_program_that_exits_at_once_and_one_that_forks() {
    let py = newest();
    common::report("learned_run quick exit, fork", std::slice::from_ref(&py));
    // Exits right after start-up: nothing imported, the learner ends.
    let p = Project::new(&py, "import os\nos._exit(3)\n", 1);
    for i in 0..3 {
        let t = Instant::now();
        let o = p.same_as_python(&["app.py"], &format!("quick exit {i}"));
        assert_eq!(o.status.code(), Some(3));
        assert!(t.elapsed() < Duration::from_secs(30));
    }
    // Workers forked by the program import the plugins; the parent waits.
    let forks = "import importlib, os, sys\n\
        pids = []\n\
        for n in ('p0', 'p1'):\n\
        \x20   pid = os.fork()\n\
        \x20   if pid == 0:\n\
        \x20       m = importlib.import_module('plugins.' + n)\n\
        \x20       os.write(1, ('%s %s\\n' % (n, m.VALUE)).encode())\n\
        \x20       os._exit(0)\n\
        \x20   os.waitpid(pid, 0)\n\
        print('parent done')\n";
    let p = Project::new(&py, forks, 2);
    for i in 0..2 {
        let o = p.same_as_python(&["app.py"], &format!("forks, run {i}"));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "p0 0\np1 2\nparent done\n"
        );
    }
    assert_eq!(p.compiled_from_source(&["app.py"]), Vec::<String>::new());
}

/// A venv of `py` with `packages` installed from PyPI without pycs.
fn venv_with(py: &Python, root: &Path, packages: &[&str]) -> PathBuf {
    // --without-pip + uv (common::venv_with): Debian's 3.14/3.15 have no
    // ensurepip wheels. No installer writes bytecode.
    common::venv_with(py, &root.join("venv"), packages)
}

/// The newest CPython at least `min` (the heavy tests are `#[ignore]`d
/// without the `heavy` feature).
fn heavy_python(min: (u32, u32)) -> Option<Python> {
    common::pythons_at_least(min).into_iter().last()
}

const DJANGO_REQUEST: &str = r#"import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
import django
django.setup()
from django.test.utils import setup_test_environment
setup_test_environment()
from django.test import Client
r = Client().get("/admin/login/")
print(r.status_code, r["Content-Type"], b"csrfmiddlewaretoken" in r.content)
"#;

#[test]
#[cfg_attr(
    not(feature = "heavy"),
    ignore = "heavy suite: cargo test --features heavy"
)]
fn heavy_django_check_and_admin_login() {
    let Some(py) = heavy_python((3, 10)) else {
        return;
    };
    common::report("learned_run django", std::slice::from_ref(&py));
    let tmp = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(tmp.path()).unwrap();
    let vpy = venv_with(&py, &root, &["django"]);
    let site = root.join("site");
    fs::create_dir(&site).unwrap();
    let st = common::clean_command(&vpy)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-m", "django", "startproject", "mysite"])
        .arg(&site)
        .status()
        .unwrap();
    assert!(st.success(), "startproject");
    fs::write(site.join("req.py"), DJANGO_REQUEST).unwrap();
    let commands: [&[&str]; 2] = [&["manage.py", "check"], &["req.py"]];
    // Without learning: the settings-string modules stay source compiles.
    let off = Project::at(
        tempfile::tempdir().unwrap(),
        site.clone(),
        vpy.clone(),
        "cache-off",
    );
    for cmd in commands {
        for i in 0..2 {
            off.same_as_python_with(
                cmd,
                &format!("{cmd:?} learning off, run {i}"),
                &[("KOLOSAL_LEARN", "0")],
            );
        }
    }
    let left: Vec<usize> = commands
        .iter()
        .map(|c| off.compiled_from_source(c).len())
        .collect();
    common::note(&format!(
        "[learned_run] django, KOLOSAL_LEARN=0: {left:?} modules still compiled from source"
    ));
    assert!(left.iter().all(|&n| n > 20), "{left:?}");
    let p = Project::at(tmp, site.clone(), vpy, "cache");
    for cmd in commands {
        for i in 0..2 {
            p.same_as_python(cmd, &format!("{cmd:?} run {i}"));
        }
        assert_eq!(p.compiled_from_source(cmd), Vec::<String>::new(), "{cmd:?}");
    }
    let o = p.kolosal(commands[1]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "200 text/html; charset=utf-8 True\n"
    );
}

/// pytest prints its own run time (`in 0.03s`).
fn without_durations(b: &[u8]) -> Vec<u8> {
    let re = regex::bytes::Regex::new(r"in [0-9]+\.[0-9]+s").unwrap();
    re.replace_all(b, &b"in <t>s"[..]).into_owned()
}

#[test]
#[cfg_attr(
    not(feature = "heavy"),
    ignore = "heavy suite: cargo test --features heavy"
)]
fn heavy_pytest_with_an_entry_point_plugin() {
    let Some(py) = heavy_python((3, 9)) else {
        return;
    };
    common::report("learned_run pytest", std::slice::from_ref(&py));
    let tmp = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(tmp.path()).unwrap();
    let vpy = venv_with(&py, &root, &["pytest", "pytest-timeout"]);
    let proj = root.join("proj");
    fs::create_dir_all(proj.join("tests")).unwrap();
    fs::write(proj.join("tests/conftest.py"), "import pytest\n").unwrap();
    for name in ["test_a.py", "test_b.py"] {
        fs::write(
            proj.join("tests").join(name),
            "import pytest\n\ndef twice(x):\n    return 2 * x\n\n\
             @pytest.mark.timeout(30)\ndef test_twice():\n    assert twice(2) == 4\n",
        )
        .unwrap();
    }
    let cmd = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"];
    let p = Project::at(tmp, proj.clone(), vpy, "cache");
    for i in 0..2 {
        let o = p.compared(&cmd, &format!("pytest run {i}"), &[], &without_durations);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("2 passed"),
            "{}",
            common::describe(&o)
        );
    }
    assert_eq!(p.compiled_from_source(&cmd), Vec::<String>::new());
    // pytest re-read its test modules although their pycs were fresh: its
    // assertion rewriting keeps its own cache, which it writes only when
    // bytecode writing is on. Kolosal leaves it on from then on.
    for i in 2..4 {
        p.compared(&cmd, &format!("pytest run {i}"), &[], &without_durations);
    }
    let rewritten: Vec<String> = fs::read_dir(proj.join("tests/__pycache__"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("-pytest-"))
        .collect();
    assert_eq!(rewritten.len(), 3, "pytest's own cache: {rewritten:?}");
}

#[test]
fn a_directory_others_can_write_is_never_watched() {
    use std::os::unix::fs::PermissionsExt;
    let py = newest();
    common::report("learned_run untrusted dir", std::slice::from_ref(&py));
    let p = Project::new(&py, APP, 2);
    let plugins = p.root.join("plugins");
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o777)).unwrap();
    for i in 0..3 {
        p.same_as_python(&["app.py"], &format!("world-writable plugins/, run {i}"));
    }
    // Nothing below it was compiled on anyone's behalf.
    assert!(!plugins.join("__pycache__").exists());
    assert_eq!(p.compiled_from_source(&["app.py"]).len(), 4);
}
