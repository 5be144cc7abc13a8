//! `kolosal-python` end to end, against the real interpreters.
//!
//! The central claim: after ONE launch through kolosal, a `python -v` run of
//! the same command (same interpreter, flags and environment) compiles no
//! source module at all: every module it imports comes from a pyc. Around
//! it: byte-for-byte parity with the bare interpreter over the CLI forms,
//! syntax errors reported exactly as python reports them, the fallback
//! prefix for unwritable trees, the warm path (no process but the final
//! python), the knobs, and fail-open behaviour.
//!
//! Every test gets its own project and its own `KOLOSAL_CACHE_DIR`.

use crate::common;
use common::{ok, pyc_loads, source_compiles};

use common::Python;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A multi-package app with relative imports, `from pkg import submodule`
/// and stdlib imports.
const APP: &[(&str, &str)] = &[
    (
        "main.py",
        "import json\nimport app.a\nfrom app.sub import b\nfrom app import cli_helpers\nprint('ok', app.a.X, b.Y, cli_helpers.Z, json.dumps([1]), __debug__)\n",
    ),
    ("app/__init__.py", "VERSION = '1'\n"),
    (
        "app/a.py",
        "from . import c\nfrom .sub import b\nimport collections\nX = c.C + b.Y\n",
    ),
    ("app/c.py", "\"\"\"doc\"\"\"\nC = 40\nassert C\n"),
    ("app/sub/__init__.py", ""),
    ("app/sub/b.py", "from .. import c\nY = 2\n"),
    ("app/cli_helpers.py", "Z = 'z'\n"),
    (
        "app/cli.py",
        "import sys\nfrom . import a\nfrom .sub import b\nprint('cli', a.X, b.Y, sys.argv[1:])\n",
    ),
];

/// The parity program: prints what a launcher could get wrong, then acts
/// on its last argument.
const PAR: &str = r#"import sys, os, signal
try:
    import app.a
except ImportError:
    pass
print(repr(sys.argv))
print(repr(getattr(sys, "orig_argv", None)))
print(sys.executable)
print(sys.prefix)
print(sys.flags.optimize, sys.flags.isolated, __debug__)
sys.stdout.flush()
sys.stderr.write("to stderr\n")
sys.stderr.flush()
act = sys.argv[-1]
def explode(n):
    return {}["missing %d" % n]
if act == "exit7":
    sys.exit(7)
if act == "raise":
    explode(3)
if act == "term":
    os.kill(os.getpid(), signal.SIGTERM)
if act == "int":
    os.kill(os.getpid(), signal.SIGINT)
"#;

/// One test's world: a project directory and a private kolosal cache.
struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
    tmp: PathBuf,
}

impl Project {
    fn new(files: &[(&str, &str)]) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("proj");
        std::fs::create_dir(&root).unwrap();
        let p = Project {
            _tmp: tmp,
            root,
            cache: base.join("kcache"),
            tmp: base,
        };
        for (rel, text) in files {
            p.write(rel, text);
        }
        p
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// `kolosal-python ARGS` in the project, for `py`, with its own cache.
    fn kolosal(&self, py: &Path, args: &[&str]) -> Command {
        let mut c = common::clean_command(common::launcher_bin());
        c.env("PATH", "/usr/bin:/bin")
            .env("KOLOSAL_PYTHON", py)
            .env("KOLOSAL_CACHE_DIR", &self.cache)
            .current_dir(&self.root)
            .args(args);
        c
    }

    /// `python ARGS` in the project, as kolosal would exec it.
    fn python(&self, py: &Path, args: &[&str]) -> Command {
        let mut c = common::clean_command(py);
        c.env("PATH", "/usr/bin:/bin")
            .current_dir(&self.root)
            .args(args);
        c
    }
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    // Read both pipes while waiting (python -v fills a pipe buffer fast).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(o) => o.expect("output"),
        Err(_) => {
            // SAFETY: kill has no memory preconditions; pid is our child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child did not finish in 300 s: {cmd:?}");
        }
    };
    let _ = writer.join();
    // "After one launch" includes its background compile, if it left one.
    common::wait_background_of(cmd);
    out
}

/// The latest interpreter and the oldest: the expensive parts run on these.
fn ends(pythons: &[Python]) -> Vec<Python> {
    let mut v = vec![pythons[pythons.len() - 1].clone()];
    if pythons.len() > 1 {
        v.push(pythons[0].clone());
    }
    v
}

/// One launch form of the zero-source-compiles check.
struct Form {
    label: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    stdout: &'static str,
}

#[test]
fn one_launch_leaves_nothing_for_python_to_compile() {
    let pythons = common::pythons();
    common::report("launcher_e2e::zero_source_compiles", &pythons);
    let mut checked = 0;
    for py in &pythons {
        // One cache per interpreter (the probe is reused), one project per form.
        let cache = tempfile::tempdir().unwrap();
        let prefix_tmp = tempfile::tempdir().unwrap();
        let prefix = prefix_tmp.path().canonicalize().unwrap().join("pyc");
        let site_dirs: Vec<PathBuf> = {
            let o = common::clean_command(&py.path)
                .args([
                    "-c",
                    "import site; print('\\n'.join(site.getsitepackages()))",
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(PathBuf::from)
                .collect()
        };
        let forms = vec![
            Form {
                label: "script",
                args: vec!["main.py".into()],
                env: vec![],
                stdout: "ok 42 2 z [1] True\n",
            },
            Form {
                label: "-m pkg.mod",
                args: vec!["-m".into(), "app.cli".into(), "x".into()],
                env: vec![],
                stdout: "cli 42 2 ['x']\n",
            },
            Form {
                label: "-c",
                args: vec![
                    "-c".into(),
                    "import app.a, app.sub.b; print('c', app.a.X)".into(),
                ],
                env: vec![],
                stdout: "c 42\n",
            },
            Form {
                label: "-O",
                args: vec!["-O".into(), "main.py".into()],
                env: vec![],
                stdout: "ok 42 2 z [1] False\n",
            },
            Form {
                label: "-OO",
                args: vec!["-OO".into(), "main.py".into()],
                env: vec![],
                stdout: "ok 42 2 z [1] False\n",
            },
            Form {
                label: "PYTHONOPTIMIZE=2",
                args: vec!["main.py".into()],
                env: vec![("PYTHONOPTIMIZE", "2".into())],
                stdout: "ok 42 2 z [1] False\n",
            },
            Form {
                label: "-X pycache_prefix",
                args: vec![
                    "-X".into(),
                    format!("pycache_prefix={}", prefix.display()),
                    "main.py".into(),
                ],
                env: vec![],
                stdout: "ok 42 2 z [1] True\n",
            },
        ];
        for form in &forms {
            if form.label == "-X pycache_prefix" && py.version < (3, 8, 0) {
                continue; // pycache_prefix is 3.8+
            }
            let p = Project::new(APP);
            let args: Vec<&str> = form.args.iter().map(String::as_str).collect();
            let mut k = p.kolosal(&py.path, &args);
            k.env("KOLOSAL_CACHE_DIR", cache.path());
            let mut v = p.python(&py.path, &[&["-v"][..], &args].concat());
            for (name, val) in &form.env {
                k.env(name, val);
                v.env(name, val);
            }
            let first = ok(run(&mut k, b""), form.label);
            assert_eq!(
                String::from_utf8_lossy(&first.stdout),
                form.stdout,
                "{} on {}",
                form.label,
                py.label()
            );
            assert!(
                first.stderr.is_empty(),
                "{} on {}: kolosal wrote to stderr: {}",
                form.label,
                py.label(),
                common::describe(&first)
            );
            let verbose = ok(run(&mut v, b""), form.label);
            let mut compiled = source_compiles(&verbose.stderr);
            // The app installs nothing in site-packages: what python loads
            // from there comes from start-up hooks. An import a `.pth` line
            // computes at run time (`exec("import certifi")`) cannot be
            // known without running that line, and the probe runs no user
            // code: such sources are reported, not failed.
            compiled.retain(|p| {
                let hook = site_dirs.iter().any(|d| Path::new(p).starts_with(d));
                if hook {
                    common::note(&format!(
                        "[launcher_e2e] {}: {p} compiled by python (a start-up hook's computed import)",
                        form.label
                    ));
                }
                !hook
            });
            assert!(
                compiled.is_empty(),
                "{} on {}: python compiled from source after a kolosal launch: {compiled:#?}",
                form.label,
                py.label()
            );
            let loads = pyc_loads(&verbose.stderr);
            let root = p.root.to_string_lossy().into_owned();
            let app_loads: Vec<&String> = loads.iter().filter(|l| l.contains(&root)).collect();
            // app, a, c, sub, b (+ cli_helpers / cli): the project really came from pycs.
            assert!(
                app_loads.len() >= 4,
                "{} on {}: too few project pycs loaded: {app_loads:#?}",
                form.label,
                py.label()
            );
            if form.label == "-X pycache_prefix" {
                let under = prefix.to_string_lossy().into_owned();
                assert!(
                    loads.iter().all(|l| l.starts_with(&under)),
                    "{} on {}: pycs read from outside the prefix: {loads:#?}",
                    form.label,
                    py.label()
                );
                assert!(
                    !p.root.join("app/__pycache__").exists(),
                    "pycs written into the tree despite the prefix"
                );
            }
            checked += 1;
        }
    }
    common::note(&format!(
        "[launcher_e2e] zero source compiles after one launch: {checked} (interpreter, form) pairs"
    ));
}

#[test]
fn stale_hash_based_pycs_are_rewritten_in_their_own_mode() {
    let pythons = common::pythons();
    common::report("launcher_e2e::hash_pycs", &pythons);
    for py in &pythons {
        let p = Project::new(APP);
        // app/a.py: checked hash; app/c.py: unchecked hash; both then go stale.
        let mk = "import py_compile as p, sys\nM = p.PycInvalidationMode\np.compile('app/a.py', invalidation_mode=M.CHECKED_HASH, doraise=True)\np.compile('app/c.py', invalidation_mode=M.UNCHECKED_HASH, doraise=True)\n";
        ok(run(&mut p.python(&py.path, &["-c", mk]), b""), "py_compile");
        p.write(
            "app/a.py",
            "from . import c\nfrom .sub import b\nimport collections\nX = c.C + b.Y + 1\n",
        );
        p.write("app/c.py", "C = 50\n");
        let args = ["--check-hash-based-pycs", "always", "main.py"];
        let out = ok(run(&mut p.kolosal(&py.path, &args), b""), "kolosal");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "ok 53 2 z [1] True\n",
            "{}",
            py.label()
        );
        let v = ok(
            run(&mut p.python(&py.path, &[&["-v"][..], &args].concat()), b""),
            "python -v",
        );
        assert_eq!(
            source_compiles(&v.stderr),
            Vec::<String>::new(),
            "{}",
            py.label()
        );
        let verdicts = common::pyc_verdicts(
            &py.path,
            &p.root,
            &[],
            &[p.root.join("app/a.py"), p.root.join("app/c.py")],
        );
        // flags 3 = hash-based + check_source, 1 = unchecked hash-based.
        assert!(
            verdicts[0].starts_with("OK 3 ") && verdicts[1].starts_with("OK 1 "),
            "{}: {verdicts:?}",
            py.label()
        );
    }
}

#[test]
fn parity_with_the_bare_interpreter() {
    let pythons = common::pythons();
    common::report("launcher_e2e::parity", &pythons);
    let mut compared = 0;
    for py in &pythons {
        let p = Project::new(APP);
        p.write("par.py", PAR);
        let prefix = p.tmp.join("prefix");
        let prefix_arg = format!("pycache_prefix={}", prefix.display());
        let has_prefix = py.version >= (3, 8, 0);
        // (label, args, env, stdin, expected exit: Ok(code) / Err(signal))
        type Case<'a> = (
            &'a str,
            Vec<&'a str>,
            Vec<(&'a str, &'a str)>,
            &'a [u8],
            Option<Result<i32, i32>>,
        );
        let mut cases: Vec<Case> = vec![
            (
                "script",
                vec!["par.py", "a b", "ok"],
                vec![],
                b"",
                Some(Ok(0)),
            ),
            (
                "script exit",
                vec!["par.py", "exit7"],
                vec![],
                b"",
                Some(Ok(7)),
            ),
            (
                "script raise",
                vec!["par.py", "raise"],
                vec![],
                b"",
                Some(Ok(1)),
            ),
            (
                "script SIGTERM",
                vec!["par.py", "term"],
                vec![],
                b"",
                Some(Err(libc::SIGTERM)),
            ),
            ("-m", vec!["-m", "par", "ok"], vec![], b"", Some(Ok(0))),
            (
                "-m raise",
                vec!["-m", "par", "raise"],
                vec![],
                b"",
                Some(Ok(1)),
            ),
            (
                "-c",
                vec!["-c", "import par", "exit7"],
                vec![],
                b"",
                Some(Ok(7)),
            ),
            (
                "stdin",
                vec!["-", "ok"],
                vec![],
                b"import par\n",
                Some(Ok(0)),
            ),
            (
                "stdin raise",
                vec!["-", "raise"],
                vec![],
                b"import par\n",
                Some(Ok(1)),
            ),
            ("-O", vec!["-O", "par.py", "ok"], vec![], b"", Some(Ok(0))),
            (
                "-OO",
                vec!["-OO", "par.py", "raise"],
                vec![],
                b"",
                Some(Ok(1)),
            ),
            (
                "PYTHONOPTIMIZE",
                vec!["par.py", "ok"],
                vec![("PYTHONOPTIMIZE", "2")],
                b"",
                Some(Ok(0)),
            ),
            // -I drops the script's directory on 3.11+: `import app` may fail, identically.
            ("-I", vec!["-I", "par.py", "ok"], vec![], b"", None),
            ("no such script", vec!["nope.py"], vec![], b"", Some(Ok(2))),
        ];
        if py.version >= (3, 8, 0) {
            // A SIGINT death is a signal status from 3.8 on.
            cases.push((
                "script SIGINT",
                vec!["par.py", "int"],
                vec![],
                b"",
                Some(Err(libc::SIGINT)),
            ));
        }
        if has_prefix {
            cases.push((
                "-X pycache_prefix",
                vec!["-X", &prefix_arg, "par.py", "ok"],
                vec![],
                b"",
                Some(Ok(0)),
            ));
        }
        for (label, args, env, stdin, expect) in &cases {
            let mut k = p.kolosal(&py.path, args);
            let mut d = p.python(&py.path, args);
            for (n, v) in env {
                k.env(n, v);
                d.env(n, v);
            }
            // kolosal first: the cold launch is the one that must stay silent.
            let got = run(&mut k, stdin);
            let want = run(&mut d, stdin);
            let what = format!(
                "{label} on {}\nvia kolosal: {}\ndirect: {}",
                py.label(),
                common::describe(&got),
                common::describe(&want)
            );
            if let Some(expect) = expect {
                let status = match (want.status.code(), want.status.signal()) {
                    (Some(c), _) => Ok(c),
                    (None, Some(s)) => Err(s),
                    _ => unreachable!("a process ends by code or signal"),
                };
                assert_eq!(status, *expect, "{what}");
            }
            assert_eq!(got.status.code(), want.status.code(), "{what}");
            assert_eq!(got.status.signal(), want.status.signal(), "{what}");
            assert_eq!(got.stdout, want.stdout, "stdout differs: {what}");
            assert_eq!(got.stderr, want.stderr, "stderr differs: {what}");
            if want.status.success() && *label != "-I" {
                // The program really printed its view of the launch.
                let text = String::from_utf8_lossy(&want.stdout);
                assert!(text.contains(&py.path.display().to_string()), "{what}");
            }
            compared += 1;
        }
    }
    common::note(&format!(
        "[launcher_e2e] parity: {compared} kolosal/direct pairs identical (status, stdout, stderr)"
    ));
}

#[test]
fn syntax_errors_reach_the_user_as_python_reports_them() {
    let pythons = common::pythons();
    common::report("launcher_e2e::syntax_errors", &pythons);
    for py in &pythons {
        for (label, main, bad) in [
            (
                "imported module",
                "import app.a\nimport app.bad\nprint('unreachable')\n",
                "app/bad.py",
            ),
            (
                "main script",
                "import app.a\nimport app.cli_helpers\nx = (1,\nprint(x\n",
                "main.py",
            ),
        ] {
            let p = Project::new(APP);
            p.write("main.py", main);
            if bad == "app/bad.py" {
                p.write(bad, "def f(:\n    pass\n");
            }
            let got = run(&mut p.kolosal(&py.path, &["main.py"]), b"");
            // The other modules got their pycs from kolosal (checked before
            // python itself runs and could write them).
            let verdicts = common::pyc_verdicts(
                &py.path,
                &p.root,
                &[],
                &[
                    p.root.join("app/__init__.py"),
                    p.root.join("app/a.py"),
                    p.root.join("app/c.py"),
                    p.root.join("app/sub/b.py"),
                ],
            );
            assert!(
                verdicts.iter().all(|v| v.starts_with("OK ")),
                "{label} on {}: {verdicts:#?}",
                py.label()
            );
            let want = run(&mut p.python(&py.path, &["main.py"]), b"");
            let what = format!(
                "{label} on {}\nvia kolosal: {}\ndirect: {}",
                py.label(),
                common::describe(&got),
                common::describe(&want)
            );
            assert_eq!(want.status.code(), Some(1), "{what}");
            assert!(
                String::from_utf8_lossy(&want.stderr).contains("SyntaxError"),
                "{what}"
            );
            assert_eq!(got.status.code(), want.status.code(), "{what}");
            assert_eq!(got.stdout, want.stdout, "{what}");
            assert_eq!(got.stderr, want.stderr, "{what}");
        }
    }
}

/// Makes `dir` immutable (`chattr +i`) for the life of the guard.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Option<Immutable> {
        let s = Command::new("chattr").arg("+i").arg(dir).status().ok()?;
        if !s.success() {
            return None;
        }
        // Root ignores permissions, not the immutable flag: prove it bites.
        if std::fs::create_dir(dir.join("__probe__")).is_ok() {
            let _ = std::fs::remove_dir(dir.join("__probe__"));
            let _ = Command::new("chattr").arg("-i").arg(dir).status();
            return None;
        }
        Some(Immutable(dir.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn unwritable_tree_falls_back_to_a_prefix_under_the_cache() {
    let pythons = common::pythons_at_least((3, 8));
    let pythons = ends(&pythons);
    common::report("launcher_e2e::unwritable_tree", &pythons);
    for py in &pythons {
        for how in ["__pycache__ is a file", "chattr +i"] {
            let p = Project::new(APP);
            let _guard;
            match how {
                "chattr +i" => {
                    _guard = Immutable::set(&p.root.join("app/sub"));
                    if _guard.is_none() {
                        common::note(
                            "[launcher_e2e] chattr +i unavailable here: skipped that variant",
                        );
                        continue;
                    }
                }
                _ => {
                    p.write("app/sub/__pycache__", "not a directory\n");
                    _guard = None;
                }
            }
            let prog = "import os, sys\nimport app.a\nprint(os.environ.get('PYTHONPYCACHEPREFIX'), sys.pycache_prefix)\n";
            p.write("show.py", prog);
            let out = ok(run(&mut p.kolosal(&py.path, &["show.py"]), b""), how);
            let fallback = p.cache.join("pycache");
            let fb = fallback.display().to_string();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("{fb} {fb}\n"),
                "{how} on {}: {}",
                py.label(),
                common::describe(&out)
            );
            // One line at the default level would be allowed; the fallback is silent (info).
            assert!(out.stderr.is_empty(), "{how}: {}", common::describe(&out));
            let mut v = p.python(&py.path, &["-v", "show.py"]);
            v.env("PYTHONPYCACHEPREFIX", &fallback);
            let v = ok(run(&mut v, b""), "python -v");
            assert_eq!(
                source_compiles(&v.stderr),
                Vec::<String>::new(),
                "{how} on {}",
                py.label()
            );
            let loads = pyc_loads(&v.stderr);
            assert!(loads.iter().all(|l| l.starts_with(&fb)), "{loads:#?}");
            assert!(
                loads.iter().any(|l| l.contains("/app/sub/b.")),
                "{loads:#?}"
            );
            // Warm: the manifest remembers the prefix.
            let again = ok(run(&mut p.kolosal(&py.path, &["show.py"]), b""), how);
            assert_eq!(again.stdout, out.stdout);
            // -I ignores PYTHONPYCACHEPREFIX: no fallback, the program still runs.
            let iso = ok(
                run(
                    &mut p.kolosal(
                        &py.path,
                        &["-I", "-c", "import sys; print(sys.pycache_prefix)"],
                    ),
                    b"",
                ),
                "-I",
            );
            assert_eq!(String::from_utf8_lossy(&iso.stdout), "None\n");
            assert!(iso.stderr.is_empty(), "{}", common::describe(&iso));
        }
    }
}

/// `execve` calls made by a launch (following children): the programs run.
fn execs(cmd: &mut Command) -> (Output, Vec<String>) {
    let trace = tempfile::NamedTempFile::new().unwrap();
    let mut s = Command::new("strace");
    s.args(["-f", "-qq", "-e", "trace=execve", "-o"])
        .arg(trace.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    s.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.env(k, v);
        }
    }
    if let Some(d) = cmd.get_current_dir() {
        s.current_dir(d);
    }
    let out = run(&mut s, b"");
    let text = std::fs::read_to_string(trace.path()).unwrap();
    let programs = text
        .lines()
        .filter(|l| l.contains("execve(\"") && !l.contains("= -1"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect();
    (out, programs)
}

fn have_strace() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn warm_path_spawns_nothing_and_notices_every_change() {
    let pythons = common::pythons_at_least((3, 8));
    let py = &pythons[pythons.len() - 1];
    common::report("launcher_e2e::warm_path", std::slice::from_ref(py));
    assert!(have_strace(), "strace is needed: apt-get install strace");
    let p = Project::new(APP);
    p.write(
        "shadow.py",
        "import colorsys\nimport app.a\nprint(colorsys.__name__, getattr(colorsys, 'MINE', 0))\n",
    );
    let launcher = common::launcher_bin().display().to_string();
    let py_path = py.path.display().to_string();

    // Cold: the probe and the workers are python processes too.
    let (out, progs) = execs(&mut p.kolosal(&py.path, &["shadow.py"]));
    assert!(out.status.success(), "{}", common::describe(&out));
    assert!(progs.len() > 2, "cold run should probe/compile: {progs:?}");
    // Run-time learning (launch::learn) starts a learner on the launches
    // after a cold one until two learning runs found nothing new.
    for _ in 0..4 {
        let mut k = p.kolosal(&py.path, &["shadow.py"]);
        k.env("KOLOSAL_LOG", "debug");
        let out = ok(run(&mut k, b""), "settling");
        for e in std::fs::read_dir(p.cache.join("manifests"))
            .unwrap()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "learn") {
                let f = std::fs::File::open(e.path()).unwrap();
                drop(nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockShared));
            }
        }
        if !String::from_utf8_lossy(&out.stderr).contains("learn: learner started") {
            break;
        }
    }
    // Warm: kolosal-python, then the final python, nothing else.
    let (out, progs) = execs(&mut p.kolosal(&py.path, &["shadow.py"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "colorsys 0\n");
    assert_eq!(
        progs,
        vec![launcher.clone(), py_path.clone()],
        "warm run spawned more"
    );

    // Editing one module recompiles exactly that one.
    let snapshot = || -> Vec<(PathBuf, u64)> {
        let mut v: Vec<(PathBuf, u64)> = walk_pycs(&p.root)
            .into_iter()
            .map(|f| {
                use std::os::unix::fs::MetadataExt;
                let ino = std::fs::metadata(&f).unwrap().ino();
                (f, ino)
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot();
    assert!(before.len() >= 5, "{before:?}");
    std::thread::sleep(Duration::from_millis(20));
    p.write("app/c.py", "\"\"\"doc\"\"\"\nC = 41\n");
    let mut k = p.kolosal(&py.path, &["shadow.py"]);
    k.env("KOLOSAL_LOG", "debug");
    let out = ok(run(&mut k, b""), "after edit");
    let after = snapshot();
    let changed: Vec<&PathBuf> = after
        .iter()
        .filter(|a| !before.contains(a))
        .map(|(f, _)| f)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(
        changed[0].to_string_lossy().contains("/app/__pycache__/c."),
        "{changed:?}"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    // One small file costs less to compile in the program's interpreter
    // than a worker start: the background run writes it.
    assert!(
        log.contains("compile: 1 pycs left to a background run"),
        "{log}"
    );

    // A new module shadowing an imported one invalidates the manifest.
    p.write("colorsys.py", "MINE = 1\n");
    let mut k = p.kolosal(&py.path, &["shadow.py"]);
    k.env("KOLOSAL_LOG", "debug");
    let out = ok(run(&mut k, b""), "shadowed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "colorsys 1\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cold:"),
        "{}",
        common::describe(&out)
    );
    let v = ok(
        run(&mut p.python(&py.path, &["-v", "shadow.py"]), b""),
        "-v",
    );
    assert_eq!(source_compiles(&v.stderr), Vec::<String>::new());

    // KOLOSAL_LOG=debug: a timeline on stderr, nothing on stdout but the program's.
    let mut k = p.kolosal(&py.path, &["shadow.py"]);
    k.env("KOLOSAL_LOG", "debug");
    let out = ok(run(&mut k, b""), "debug");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "colorsys 1\n");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.lines().count() >= 3, "{log}");
    assert!(
        log.lines()
            .all(|l| l.starts_with("kolosal: [debug +") || l.starts_with("kolosal: [info +")),
        "{log}"
    );
}

/// A launch's debug timeline (stderr) after checking it ran the program.
fn timeline(p: &Project, py: &Path, args: &[&str], what: &str) -> (String, String) {
    let mut k = p.kolosal(py, args);
    k.env("KOLOSAL_LOG", "debug");
    let out = ok(run(&mut k, b""), what);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn edits_that_keep_the_imports_are_repaired_without_a_new_closure() {
    let pythons = common::pythons_at_least((3, 8));
    let ends = ends(&pythons);
    common::report("launcher_e2e::repair", &ends);
    for py in &ends {
        let p = Project::new(APP);
        let no_compiles = |what: &str| {
            let v = ok(run(&mut p.python(&py.path, &["-v", "main.py"]), b""), what);
            assert_eq!(
                source_compiles(&v.stderr),
                Vec::<String>::new(),
                "{what} on {}",
                py.path.display()
            );
        };
        timeline(&p, &py.path, &["main.py"], "cold");
        let (_, log) = timeline(&p, &py.path, &["main.py"], "warm");
        assert!(log.contains("warm: manifest holds"), "{log}");

        // A module edited in place, same imports: repaired, its pyc
        // written by the background run (cheaper than a worker start).
        std::thread::sleep(Duration::from_millis(20));
        p.write("app/c.py", "\"\"\"doc\"\"\"\nC = 41\n");
        let (out, log) = timeline(&p, &py.path, &["main.py"], "edited");
        assert!(out.starts_with("ok 43 "), "{out}");
        assert!(
            log.contains("repair: closure unchanged (1 sources edited"),
            "{log}"
        );
        assert!(
            log.contains("compile: 1 pycs left to a background run"),
            "{log}"
        );
        assert!(!log.contains("cold:"), "{log}");
        no_compiles("after a repaired edit");
        let (_, log) = timeline(&p, &py.path, &["main.py"], "warm again");
        assert!(log.contains("warm: manifest holds"), "{log}");

        // The script itself edited, same imports: re-stamped, nothing spawned.
        p.write("main.py", &APP[0].1.replace("print('ok'", "print('OK'"));
        let (out, log) = timeline(&p, &py.path, &["main.py"], "script edited");
        assert!(out.starts_with("OK 43 "), "{out}");
        assert!(log.contains("repair: closure unchanged"), "{log}");
        assert!(!log.contains("compile:") && !log.contains("cold:"), "{log}");
        let (_, log) = timeline(&p, &py.path, &["main.py"], "warm after script edit");
        assert!(log.contains("warm: manifest holds"), "{log}");

        // A whole __pycache__ removed: its closure pycs are rewritten.
        std::fs::remove_dir_all(p.root.join("app/sub/__pycache__")).unwrap();
        let (_, log) = timeline(&p, &py.path, &["main.py"], "pycache removed");
        assert!(log.contains("1 __pycache__ changed"), "{log}");
        assert!(
            log.contains("compile: 2 pycs left to a background run"),
            "{log}"
        );
        no_compiles("after the __pycache__ was rebuilt");

        // An editor's atomic save (temp file renamed over the module) changes
        // the directory, not its importable names: still a repair.
        p.write("app/.c.py.swp", "swap");
        p.write("app/c.py.tmp", "\"\"\"doc\"\"\"\nC = 420\n");
        std::fs::rename(p.root.join("app/c.py.tmp"), p.root.join("app/c.py")).unwrap();
        let (out, log) = timeline(&p, &py.path, &["main.py"], "atomic save");
        assert!(out.starts_with("OK 422 "), "{out}");
        assert!(
            log.contains("repair: closure unchanged (1 sources edited"),
            "{log}"
        );
        assert!(!log.contains("cold:"), "{log}");
        no_compiles("after an atomic save");

        // An edit that adds an import changes the closure: the cold path.
        p.write("app/c.py", "import colorsys\nC = 41\n");
        let (_, log) = timeline(&p, &py.path, &["main.py"], "import added");
        assert!(log.contains("imports of"), "{log}");
        assert!(log.contains("recomputing the closure"), "{log}");
        no_compiles("after an import was added");

        // A new file in a listed directory may shadow something: cold.
        p.write("app/sub/new.py", "N = 1\n");
        let (_, log) = timeline(&p, &py.path, &["main.py"], "file added");
        assert!(log.contains("recomputing the closure"), "{log}");
        let (_, log) = timeline(&p, &py.path, &["main.py"], "warm at the end");
        assert!(log.contains("warm: manifest holds"), "{log}");
    }
}

/// An app whose second module is only imported inside a function.
const LAZY_APP: &[(&str, &str)] = &[
    (
        "main.py",
        "import app.a\ndef later():\n    import app.lazy\n    return app.lazy.L\nprint('ok', app.a.X, later())\n",
    ),
    ("app/__init__.py", ""),
    ("app/lazy.py", "L = 2\n"),
];

/// A module big enough that compiling it costs more than starting a worker.
fn big_module() -> String {
    let mut s = String::from("X = 1\n");
    for i in 0..6000 {
        s.push_str(&format!("v{i} = {i}\n"));
    }
    s
}

#[test]
fn modules_imported_in_functions_are_compiled_after_exec() {
    use nix::fcntl::{Flock, FlockArg};
    let pythons = common::pythons_at_least((3, 8));
    let ends = ends(&pythons);
    common::report("launcher_e2e::background", &ends);
    for py in &ends {
        let p = Project::new(LAZY_APP);
        p.write("app/a.py", &big_module());
        let lazy_pyc = |p: &Project| {
            walk_pycs(&p.root.join("app"))
                .into_iter()
                .filter(|f| {
                    f.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("lazy.")
                })
                .collect::<Vec<_>>()
        };
        // First run: app.a before exec, app.lazy by the background run
        // (`run` waits for it, as "after one launch" means).
        let (out, log) = timeline(&p, &py.path, &["main.py"], "first run");
        assert_eq!(out, "ok 1 2\n");
        assert!(log.contains("compile: 2 stale pycs"), "{log}");
        assert!(
            log.contains("compile: 1 pycs left to a background run"),
            "{log}"
        );
        assert_eq!(lazy_pyc(&p).len(), 1, "{log}");
        let v = ok(run(&mut p.python(&py.path, &["-v", "main.py"]), b""), "-v");
        assert_eq!(source_compiles(&v.stderr), Vec::<String>::new());
        let (_, log) = timeline(&p, &py.path, &["main.py"], "warm");
        assert!(log.contains("warm: manifest holds"), "{log}");

        // A background run that cannot start (its lock is taken): the
        // manifest keeps the lazy pyc pending, and a later launch does it.
        let digest = std::fs::read_dir(p.cache.join("manifests"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .find_map(|n| n.strip_suffix(".manifest").map(str::to_string))
            .unwrap();
        let held = Flock::lock(
            std::fs::File::create(p.cache.join(format!("manifests/{digest}.bg"))).unwrap(),
            FlockArg::LockExclusive,
        )
        .unwrap();
        std::fs::remove_file(&lazy_pyc(&p)[0]).unwrap();
        let mut k = p.kolosal(&py.path, &["main.py"]);
        k.env("KOLOSAL_LOG", "debug");
        let out = k.output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            log.contains("left to the background run already pending"),
            "{log}"
        );
        assert!(lazy_pyc(&p).is_empty());
        drop(held);
        let (_, log) = timeline(&p, &py.path, &["main.py"], "after the lock is free");
        assert!(log.contains("1 __pycache__ changed"), "{log}");
        assert!(log.contains("left to a background run"), "{log}");
        assert_eq!(lazy_pyc(&p).len(), 1);
        let (_, log) = timeline(&p, &py.path, &["main.py"], "warm again");
        assert!(log.contains("warm: manifest holds"), "{log}");

        // KOLOSAL_BACKGROUND=0: everything before exec, no background run.
        let p = Project::new(LAZY_APP);
        p.write("app/a.py", &big_module());
        let mut k = p.kolosal(&py.path, &["main.py"]);
        k.env("KOLOSAL_LOG", "debug").env("KOLOSAL_BACKGROUND", "0");
        let out = k.output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("compile: 3 stale pycs"), "{log}");
        // Only the info summary ("0 left to a background run") names it.
        assert!(
            !log.lines()
                .any(|l| l.contains("background") && !l.contains("0 left to a background run")),
            "{log}"
        );
        assert_eq!(lazy_pyc(&p).len(), 1);
        let bg = std::fs::read_dir(p.cache.join("manifests"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "bg"))
            })
            .count();
        assert_eq!(bg, 0);
    }
}

fn walk_pycs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "pyc") {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn knobs_auto_compile_and_write_bytecode() {
    let pythons = common::pythons_at_least((3, 8));
    let py = &pythons[pythons.len() - 1];
    common::report("launcher_e2e::knobs", std::slice::from_ref(py));
    let prog = "import os, sys\nimport app.a\nprint(os.environ.get('PYTHONDONTWRITEBYTECODE'), int(sys.flags.dont_write_bytecode))\n";

    // Default: kolosal compiled, and python must not write.
    let p = Project::new(APP);
    p.write("env.py", prog);
    let out = ok(run(&mut p.kolosal(&py.path, &["env.py"]), b""), "default");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 1\n");

    // KOLOSAL_AUTO_COMPILE=0: nothing compiled, nothing recorded, no variable set.
    let p = Project::new(APP);
    p.write("env.py", prog);
    let mut k = p.kolosal(&py.path, &["env.py"]);
    k.env("KOLOSAL_AUTO_COMPILE", "0");
    let (out, progs) = if have_strace() {
        execs(&mut k)
    } else {
        (run(&mut k, b""), Vec::new())
    };
    assert!(out.status.success(), "{}", common::describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "None 0\n");
    if have_strace() {
        assert_eq!(
            progs.len(),
            2,
            "AUTO_COMPILE=0 started more than python: {progs:?}"
        );
    }
    assert!(!p.cache.join("manifests").exists());

    // KOLOSAL_WRITE_BYTECODE=1: compiled, but the variable left unset.
    let p = Project::new(APP);
    p.write("env.py", prog);
    let mut k = p.kolosal(&py.path, &["env.py"]);
    k.env("KOLOSAL_WRITE_BYTECODE", "1")
        .env("KOLOSAL_LOG", "debug");
    let out = ok(run(&mut k, b""), "write bytecode");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "None 0\n");
    let log = String::from_utf8_lossy(&out.stderr);
    // Written before exec, or (small enough) by the background run.
    assert!(log.contains("compile: 5 "), "{log}");
    let closure: Vec<PathBuf> = ["__init__", "a", "c", "sub/__init__", "sub/b"]
        .iter()
        .map(|m| p.root.join(format!("app/{m}.py")))
        .collect();
    let verdicts = common::pyc_verdicts(&py.path, &p.root, &[], &closure);
    assert!(
        verdicts.iter().all(|v| v.starts_with("OK ")),
        "{verdicts:#?}"
    );
}

#[test]
fn fail_open() {
    let pythons = common::pythons_at_least((3, 8));
    let py = &pythons[pythons.len() - 1];
    common::report("launcher_e2e::fail_open", std::slice::from_ref(py));
    let expect = "ok 42 2 z [1] True\n";
    // Each case: prepare the world, then run with the default log level and with off.
    let check = |p: &Project, label: &str, cmd: &mut dyn FnMut(&Project) -> Command| {
        for level in [None, Some("off")] {
            let mut k = cmd(p);
            if let Some(l) = level {
                k.env("KOLOSAL_LOG", l);
            }
            let out = run(&mut k, b"");
            assert!(out.status.success(), "{label}: {}", common::describe(&out));
            assert_eq!(String::from_utf8_lossy(&out.stdout), expect, "{label}");
            let lines = String::from_utf8_lossy(&out.stderr).lines().count();
            match level {
                None => assert!(
                    lines <= 1,
                    "{label}: more than one line: {}",
                    common::describe(&out)
                ),
                Some(_) => assert_eq!(
                    lines,
                    0,
                    "{label} with KOLOSAL_LOG=off: {}",
                    common::describe(&out)
                ),
            }
        }
    };
    let plain = |p: &Project| p.kolosal(&py.path, &["main.py"]);

    // Corrupt manifests and probe cache.
    let p = Project::new(APP);
    ok(run(&mut plain(&p), b""), "first");
    for sub in ["manifests", "probe"] {
        let dir = p.cache.join(sub);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(!files.is_empty(), "{sub} is empty");
        for f in files {
            std::fs::write(&f, b"KOLMAN01\xff\xff\xff\xffgarbage{").unwrap();
        }
        // Also force the cold path, so the corrupt probe cache is read.
        std::thread::sleep(Duration::from_millis(10));
        p.write("app/c.py", &format!("\"\"\"doc\"\"\"\nC = 40\n# {sub}\n"));
        check(&p, &format!("corrupt {sub}"), &mut |p| plain(p));
    }

    // KOLOSAL_CACHE_DIR is a regular file.
    let p = Project::new(APP);
    std::fs::write(&p.cache, b"i am a file").unwrap();
    check(&p, "cache dir is a file", &mut |p| plain(p));
    assert_eq!(std::fs::read(&p.cache).unwrap(), b"i am a file");

    // Workers cannot start: an interpreter wrapper that refuses `-I -S`.
    let p = Project::new(APP);
    let wrapper = p.tmp.join("python-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = -I ] && [ \"$2\" = -S ]; then exit 3; fi\nexec {} \"$@\"\n",
            py.path.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    check(&p, "workers cannot start", &mut |p| {
        let mut c = p.kolosal(&py.path, &["main.py"]);
        c.env("KOLOSAL_PYTHON", &wrapper);
        c
    });
}

#[test]
#[cfg_attr(
    not(feature = "heavy"),
    ignore = "heavy suite: cargo test --features heavy"
)]
fn real_packages_from_pypi_installed_without_bytecode() {
    // The newest CPython, and 3.14+ (the versions `.ci/run` adds) each.
    let all = common::pythons_at_least((3, 8));
    let newest = all.last().expect("a CPython >= 3.8").version;
    let pythons: Vec<Python> = all
        .into_iter()
        .filter(|p| p.version >= (3, 14, 0) || p.version == newest)
        .collect();
    common::report("launcher_e2e::pypi", &pythons);
    for py in &pythons {
        pypi_venv_check(py);
    }
}

fn pypi_venv_check(py: &Python) {
    let p = Project::new(&[(
        "main.py",
        "import sympy, requests, jinja2\nprint('ok', sympy.__name__)\n",
    )]);
    let venv = p.tmp.join("venv");
    let vpy = common::venv_with(py, &venv, &["sympy", "requests", "jinja2"]);
    let before = walk_pycs(&venv.join("lib")).len();
    let mut k = p.kolosal(&vpy, &["main.py"]);
    k.env("KOLOSAL_LOG", "debug");
    let out = ok(run(&mut k, b""), "kolosal");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok sympy\n");
    let after = walk_pycs(&venv.join("lib")).len();
    let v = ok(run(&mut p.python(&vpy, &["-v", "main.py"]), b""), "-v");
    assert_eq!(source_compiles(&v.stderr), Vec::<String>::new());
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("compile:") && l.contains("written"));
    common::note(&format!(
        "[launcher_e2e] {}: sympy+requests+jinja2: {} pycs written into the venv ({line:?})",
        py.label(),
        after - before
    ));
    assert!(after - before > 500, "{before} -> {after}");
}
