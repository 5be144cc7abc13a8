//! The `kolosal` CLI in CI and scripts, with real interpreters:
//!
//! * `compile PATH` / `status PATH` use the interpreter that owns PATH (a
//!   3.12 venv compiled from a PATH with 3.11 first gets cpython-312 pycs;
//!   a venv in a directory others can write is not trusted);
//! * `status --check` exit codes and its list;
//! * every error line is `kolosal: error: ...` on stderr, stdout stays empty;
//!   `-v` lines go to stderr for every subcommand;
//! * a directory where no pyc can be written is reported once.

use crate::common;

use common::{clean_command, kolosal_bin};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

const PY311: &str = "/root/.pyenv/versions/3.11.7/bin";
const PY312: &str = "/root/.pyenv/versions/3.12.1/bin/python3.12";

/// `kolosal ARGS` in `cwd`, PATH with 3.11 first, no VIRTUAL_ENV.
fn kolosal(cwd: &Path, args: &[&str]) -> Output {
    clean_command(kolosal_bin())
        .env("PATH", format!("{PY311}:/usr/bin:/bin"))
        .env("KOLOSAL_CACHE_DIR", cwd.join("kcache"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn pyc_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pyc"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A 3.12 venv under `dir` with one package in its site-packages.
fn venv312(dir: &Path) -> PathBuf {
    let venv = dir.join("v312");
    let out = clean_command(PY312)
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    let pkg = venv.join("lib/python3.12/site-packages/pk");
    fs::create_dir_all(&pkg).unwrap();
    fs::write(pkg.join("__init__.py"), "X = 1\n").unwrap();
    fs::write(pkg.join("m.py"), "Y = 2\n").unwrap();
    venv
}

fn have_pythons() -> bool {
    let ok = Path::new(PY312).is_file() && Path::new(PY311).join("python3").is_file();
    if !ok {
        common::note("[cli_ci] 3.11.7 or 3.12.1 missing: owner tests skipped");
    }
    ok
}

#[test]
fn compile_uses_the_venv_that_owns_the_path() {
    if !have_pythons() {
        return;
    }
    common::note("[cli_ci] owner: 3.12.1 venv, PATH with 3.11.7 first");
    let tmp = tempfile::tempdir().unwrap();
    let venv = venv312(tmp.path());
    let site = venv.join("lib/python3.12/site-packages");
    let r = kolosal(tmp.path(), &["compile", "v312"]);
    let err = text(&r.stderr);
    assert!(r.status.success(), "{err}");
    let names = pyc_names(&site);
    assert_eq!(
        names,
        ["__init__.cpython-312.pyc", "m.cpython-312.pyc"],
        "{err}"
    );
    let summary = err.lines().find(|l| l.starts_with("compiled ")).unwrap();
    assert!(
        summary.contains("cpython-312") && summary.contains("v312/bin/python"),
        "{summary}"
    );
    // status on the same path agrees: fresh for cpython-312, and --check passes.
    let r = kolosal(tmp.path(), &["status", "--check", "--json", "v312"]);
    assert!(r.status.success(), "{}", common::describe(&r));
    let doc: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(doc["cache_tag"], "cpython-312");
    // A directory inside the interpreter's own prefix is its own too.
    let stdlib_pkg = Path::new("/root/.pyenv/versions/3.12.1/lib/python3.12/json");
    let r = kolosal(
        tmp.path(),
        &["status", "--json", stdlib_pkg.to_str().unwrap()],
    );
    let doc: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(doc["cache_tag"], "cpython-312", "{}", common::describe(&r));
    // --python says otherwise: cpython-311 pycs beside them.
    let r = kolosal(
        tmp.path(),
        &["compile", "--python", &format!("{PY311}/python3"), "v312"],
    );
    assert!(r.status.success(), "{}", common::describe(&r));
    assert!(pyc_names(&site).contains(&"m.cpython-311.pyc".to_string()));
}

#[test]
fn trees_of_two_interpreters_are_each_compiled_with_their_own() {
    if !have_pythons() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    venv312(tmp.path());
    fs::create_dir(tmp.path().join("plain")).unwrap();
    fs::write(tmp.path().join("plain/p.py"), "P = 1\n").unwrap();
    let r = kolosal(tmp.path(), &["compile", "plain", "v312"]);
    let err = text(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(err.contains("belong to 2 interpreters"), "{err}");
    assert_eq!(pyc_names(&tmp.path().join("plain")), ["p.cpython-311.pyc"]);
    assert_eq!(
        pyc_names(&tmp.path().join("v312/lib")),
        ["__init__.cpython-312.pyc", "m.cpython-312.pyc"]
    );
    let summaries: Vec<&str> = err.lines().filter(|l| l.starts_with("compiled ")).collect();
    assert_eq!(summaries.len(), 2, "{err}");
    let r = kolosal(tmp.path(), &["compile", "--json", "plain", "v312"]);
    let doc: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["interpreters"].as_array().unwrap().len(), 2);
}

#[test]
fn a_venv_others_can_write_is_not_trusted() {
    if !have_pythons() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let shared = tmp.path().join("shared");
    fs::create_dir(&shared).unwrap();
    venv312(&shared);
    // Others may write (and so swap) the directory holding the venv.
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
    let r = kolosal(tmp.path(), &["compile", "shared/v312"]);
    let err = text(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(
        err.contains("kolosal: warning: ") && err.contains("not used"),
        "{err}"
    );
    assert_eq!(
        pyc_names(&shared.join("v312/lib")),
        ["__init__.cpython-311.pyc", "m.cpython-311.pyc"],
        "{err}"
    );
}

#[test]
fn status_check_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let py = common::pythons().pop().unwrap();
    common::report("cli_ci/status --check", std::slice::from_ref(&py));
    let pyarg = py.path.to_str().unwrap();
    fs::create_dir(tmp.path().join("t")).unwrap();
    fs::write(tmp.path().join("t/a.py"), "A = 1\n").unwrap();
    fs::write(tmp.path().join("t/b.py"), "B = 1\n").unwrap();
    // Missing: 1, each listed; without --check: 0.
    let r = kolosal(tmp.path(), &["status", "--check", "--python", pyarg, "t"]);
    let err = text(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    let listed: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("kolosal: error: missing: "))
        .collect();
    assert_eq!(listed.len(), 2, "{err}");
    let r = kolosal(tmp.path(), &["status", "--python", pyarg, "t"]);
    assert_eq!(r.status.code(), Some(0), "{}", common::describe(&r));
    // All fresh: 0.
    let r = kolosal(tmp.path(), &["compile", "--python", pyarg, "t"]);
    assert!(r.status.success());
    let r = kolosal(tmp.path(), &["status", "--check", "--python", pyarg, "t"]);
    assert_eq!(r.status.code(), Some(0), "{}", common::describe(&r));
    assert!(r.stderr.is_empty(), "{}", common::describe(&r));
    // A source edited since (size changes): stale, 1.
    fs::write(tmp.path().join("t/b.py"), "B = 22\n").unwrap();
    let r = kolosal(tmp.path(), &["status", "--check", "--python", pyarg, "t"]);
    let err = text(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("kolosal: error: stale (") && l.contains("b.")),
        "{err}"
    );
    let r = kolosal(
        tmp.path(),
        &["status", "--check", "--json", "--python", pyarg, "t"],
    );
    assert_eq!(r.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(doc["not_fresh"].as_array().unwrap().len(), 1);
}

/// Each subcommand's failure: every stderr line that is not a summary is
/// `kolosal: error: ...`, nothing on stdout.
#[test]
fn error_lines_have_one_prefix_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let py = common::pythons().pop().unwrap();
    let pyarg = py.path.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["compile", "--python", pyarg, "/nonexistent/tree"],
        vec!["compile", "-o", "7", "."],
        vec!["compile", "--python", "/nonexistent/python", "."],
        vec!["status", "--python", pyarg, "/nonexistent/tree"],
        vec!["status", "--bogus"],
        vec!["status", "-o", "3", "."],
        vec!["compile", "-x", "(?<!a)b", "."],
        vec!["clean", "/nonexistent/tree"],
        vec!["closure", "--python", pyarg, "/nonexistent/app.py"],
        vec!["info", "--python", "/nonexistent/python"],
        vec!["compile", "--trace", "--", "/nonexistent/cmd"],
    ];
    for args in &cases {
        let r = kolosal(tmp.path(), args);
        let err = text(&r.stderr);
        assert_ne!(r.status.code(), Some(0), "{args:?}: {err}");
        let errors: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("compiled ") && !l.starts_with("trace: "))
            .collect();
        assert!(!errors.is_empty(), "{args:?}: no error line");
        for l in &errors {
            assert!(
                l.starts_with("kolosal: error: "),
                "{args:?}: {l:?} in {err}"
            );
        }
        // clean and status print their report on stdout; none names an error.
        assert!(
            !text(&r.stdout).contains("error"),
            "{args:?}: {}",
            text(&r.stdout)
        );
        if args[0] != "clean" && args[0] != "status" {
            assert!(r.stdout.is_empty(), "{args:?}: {}", text(&r.stdout));
        }
    }
}

/// `-v` lines go to stderr for compile and clean alike.
#[test]
fn verbose_goes_to_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let py = common::pythons().pop().unwrap();
    let pyarg = py.path.to_str().unwrap();
    fs::create_dir(tmp.path().join("t")).unwrap();
    fs::write(tmp.path().join("t/a.py"), "A = 1\n").unwrap();
    let r = kolosal(tmp.path(), &["compile", "-v", "--python", pyarg, "t"]);
    assert!(r.stdout.is_empty());
    assert!(
        text(&r.stderr)
            .lines()
            .any(|l| l.starts_with("compiled t/a.py")),
        "{}",
        common::describe(&r)
    );
    let r = kolosal(tmp.path(), &["clean", "-v", "t"]);
    assert!(r.status.success());
    assert!(
        text(&r.stderr)
            .lines()
            .any(|l| l.starts_with("removed ") && l.contains("a.")),
        "{}",
        common::describe(&r)
    );
    assert!(!text(&r.stdout).contains("a."), "{}", common::describe(&r));
    // clean -q: silent when nothing fails.
    let r = kolosal(tmp.path(), &["clean", "-q", "t"]);
    assert!(
        r.status.success() && r.stdout.is_empty() && r.stderr.is_empty(),
        "{}",
        common::describe(&r)
    );
}

/// Five modules whose `__pycache__` cannot be created: one line, not five,
/// and still five pycs counted failed (also with -d, which compiles
/// through py_compile).
#[test]
fn an_unwritable_directory_is_reported_once() {
    let tmp = tempfile::tempdir().unwrap();
    let py = common::pythons().pop().unwrap();
    common::report("cli_ci/unwritable", std::slice::from_ref(&py));
    let pyarg = py.path.to_str().unwrap();
    let blocked = tmp.path().join("t/blocked");
    fs::create_dir_all(&blocked).unwrap();
    for i in 0..5 {
        fs::write(blocked.join(format!("m{i}.py")), "X = 1\n").unwrap();
    }
    fs::write(tmp.path().join("t/ok.py"), "X = 1\n").unwrap();
    // No directory can be made there: __pycache__ is a file.
    fs::write(blocked.join("__pycache__"), "not a directory").unwrap();
    for extra in [&[][..], &["-d", "/build"][..]] {
        let mut args = vec!["compile", "--python", pyarg];
        args.extend_from_slice(extra);
        args.push("t");
        let r = kolosal(tmp.path(), &args);
        let err = text(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{extra:?}: {err}");
        let errors: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("kolosal: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{extra:?}: {err}");
        assert!(
            errors[0].contains("blocked/__pycache__") && errors[0].contains("5 pyc(s)"),
            "{err}"
        );
        let summary = err.lines().find(|l| l.starts_with("compiled ")).unwrap();
        assert!(summary.contains("failed 5 "), "{summary}");
        let _ = fs::remove_dir_all(tmp.path().join("t/__pycache__"));
    }
}

/// As another user (root drops to uid 65534 with setpriv): a directory
/// that user cannot write, for compile (no `__pycache__` yet, or one it
/// cannot write) and for clean. One line each. Debian's python3.11 (pyenv's
/// live under /root, which that user cannot enter).
#[test]
fn permission_denied_is_one_line_per_directory() {
    let py = Path::new("/usr/bin/python3.11");
    let root_user = unsafe { libc::geteuid() } == 0;
    if !root_user || !Path::new("/usr/bin/setpriv").is_file() || !py.is_file() {
        common::note(
            "[cli_ci] not root, or no setpriv / /usr/bin/python3.11: permission test skipped",
        );
        return;
    }
    common::note("[cli_ci] permission denied as uid 65534, /usr/bin/python3.11");
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    fs::set_permissions(w, fs::Permissions::from_mode(0o755)).unwrap();
    let t = w.join("t");
    fs::create_dir_all(t.join("ro")).unwrap();
    fs::create_dir(w.join("kc")).unwrap();
    for i in 0..4 {
        fs::write(t.join(format!("ro/m{i}.py")), "X = 1\n").unwrap();
    }
    fs::write(t.join("ok.py"), "Y = 1\n").unwrap();
    for p in [&t, &t.join("ok.py"), &w.join("kc")] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    let as_nobody = |args: &[&str]| {
        clean_command("/usr/bin/setpriv")
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/nonexistent")
            .env("KOLOSAL_CACHE_DIR", w.join("kc"))
            .current_dir(w)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(kolosal_bin())
            .args(args)
            .output()
            .unwrap()
    };
    let one_line = |o: &Output, needle: &str| {
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        let errors: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("kolosal: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(
            errors[0].contains(needle) && errors[0].contains("Permission denied"),
            "{err}"
        );
    };
    let compile = ["compile", "-f", "--python", "/usr/bin/python3.11", "t"];
    one_line(
        &as_nobody(&compile),
        "t/ro/__pycache__: cannot write pycs there",
    );
    fs::create_dir(t.join("ro/__pycache__")).unwrap();
    one_line(&as_nobody(&compile), "4 pyc(s) not written");
    // Root compiles them; the other user cannot remove them.
    let r = kolosal(w, &["compile", "--python", "/usr/bin/python3.11", "t"]);
    assert!(r.status.success(), "{}", common::describe(&r));
    one_line(
        &as_nobody(&["clean", "t"]),
        "t/ro/__pycache__: cannot remove pycs there",
    );
}
