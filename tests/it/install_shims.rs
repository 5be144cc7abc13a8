//! install.sh, the `python`/`python3` shims, the `#!/usr/bin/env
//! kolosal-python` shebang and the Docker recipe of docs/docker.md, all run
//! for real (outside Docker: no engine runs here).
//!
//! install.sh is pointed at this test run's binaries with
//! `KOLOSAL_INSTALL_FROM` (its documented escape hatch), so nothing is
//! rebuilt; the full `cargo build --release` path runs under
//! `KOLOSAL_TEST_HEAVY=1`. Every child runs under a deadline in its own
//! process group, so a shim that found itself would fail the test instead of
//! hanging it.

use crate::common;

use common::Python;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished child did.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Out {
    fn describe(&self) -> String {
        format!(
            "exit {:?} after {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion within `limit`; on expiry kills its whole
/// process group and fails the test.
fn run(mut cmd: Command, limit: Duration) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            // SAFETY: plain kill(2) on the child's own process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            let err = err_reader.join().unwrap_or_default();
            panic!(
                "{shown} did not finish within {limit:?} (a shim running itself?); stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // "After one launch" includes its background compile, if it left one.
    common::wait_background_of(&cmd);
    Out {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned(),
        elapsed: start.elapsed(),
    }
}

const LIMIT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding this test run's `kolosal` and `kolosal-python`.
fn built_bins() -> PathBuf {
    let dir = common::launcher_bin().parent().unwrap().to_path_buf();
    assert_eq!(common::kolosal_bin().parent().unwrap(), dir);
    dir
}

/// `install.sh --prefix PREFIX ARGS` with the built binaries.
fn install(prefix: &Path, args: &[&str]) -> Out {
    let mut cmd = common::clean_command(repo().join("install.sh"));
    cmd.arg("--prefix").arg(prefix).args(args);
    cmd.env("KOLOSAL_INSTALL_FROM", built_bins());
    run(cmd, LIMIT)
}

/// Every path under `root` with what identifies its exact state: kind,
/// mode, size, mtime, inode, link target.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| {
            let e = e.expect("walk");
            let m = e.path().symlink_metadata().expect("lstat");
            let link = std::fs::read_link(e.path()).ok();
            let state = format!(
                "{:?} mode={:o} size={} mtime={}.{} ino={} link={:?}",
                m.file_type(),
                m.mode(),
                if m.is_dir() { 0 } else { m.size() },
                m.mtime(),
                m.mtime_nsec(),
                m.ino(),
                link
            );
            (e.path().strip_prefix(root).unwrap().to_path_buf(), state)
        })
        .collect()
}

/// stderr must hold exactly one line (the error) and name `needle`.
fn one_line_error(out: &Out, needle: &str) {
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.describe());
    assert!(
        lines[0].starts_with("install.sh: ") && lines[0].contains(needle),
        "{}",
        out.describe()
    );
}

#[test]
fn install_is_idempotent_and_never_clobbers() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().canonicalize().unwrap().join("prefix");

    let first = install(&prefix, &[]);
    assert_eq!(first.code, Some(0), "{}", first.describe());
    for bin in ["kolosal", "kolosal-python"] {
        let installed = prefix.join("bin").join(bin);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(built_bins().join(bin)).unwrap(),
            "{bin} is not a copy of the built binary"
        );
        assert_eq!(installed.metadata().unwrap().mode() & 0o777, 0o755);
    }
    let shims = prefix.join("lib/kolosal/shims");
    for name in ["python", "python3"] {
        assert_eq!(
            std::fs::read_link(shims.join(name)).unwrap(),
            Path::new("../../../bin/kolosal-python")
        );
        assert_eq!(
            std::fs::canonicalize(shims.join(name)).unwrap(),
            prefix.join("bin/kolosal-python")
        );
    }
    // The record: what was installed, plus the directories this install
    // created (a trailing slash), for `--uninstall`.
    let record = std::fs::read_to_string(prefix.join("lib/kolosal/installed")).unwrap();
    let files: Vec<&str> = record.lines().filter(|l| !l.ends_with('/')).collect();
    assert_eq!(
        files,
        [
            "bin/kolosal",
            "bin/kolosal-python",
            "lib/kolosal/shims/python",
            "lib/kolosal/shims/python3"
        ]
    );
    for dir in record.lines().filter(|l| l.ends_with('/')) {
        assert!(
            ["./", "bin/", "lib/", "lib/kolosal/", "lib/kolosal/shims/"].contains(&dir),
            "{dir}"
        );
        assert!(prefix.join(dir).is_dir(), "{dir}");
    }
    let path_line = format!(
        "export PATH=\"{p}/lib/kolosal/shims:{p}/bin:$PATH\"",
        p = prefix.display()
    );
    assert!(
        first.stdout.lines().any(|l| l == path_line),
        "no `{path_line}` in:\n{}",
        first.describe()
    );

    // A second run: exit 0 and not one file touched (same inodes, mtimes).
    let before = snapshot(&prefix);
    let second = install(&prefix, &[]);
    assert_eq!(second.code, Some(0), "{}", second.describe());
    assert!(
        second.stdout.contains("nothing changed"),
        "{}",
        second.describe()
    );
    assert!(second.stdout.lines().any(|l| l == path_line));
    assert_eq!(snapshot(&prefix), before, "the second run changed files");

    // --no-shims takes the shims back, and its PATH line has no shim dir;
    // running it twice is a no-op too.
    let no_shims = install(&prefix, &["--no-shims"]);
    assert_eq!(no_shims.code, Some(0), "{}", no_shims.describe());
    assert!(!shims.exists(), "{}", no_shims.describe());
    let bin_line = format!("export PATH=\"{}/bin:$PATH\"", prefix.display());
    assert!(no_shims.stdout.lines().any(|l| l == bin_line));
    let before = snapshot(&prefix);
    let again = install(&prefix, &["--no-shims"]);
    assert_eq!(again.code, Some(0), "{}", again.describe());
    assert_eq!(snapshot(&prefix), before);
    let back = install(&prefix, &[]);
    assert_eq!(back.code, Some(0), "{}", back.describe());
    assert!(shims.join("python3").is_symlink());

    // A file install.sh did not create is never overwritten, whether it is
    // in a fresh prefix or replaced one of ours.
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir_all(theirs.join("bin")).unwrap();
    let mine = b"#!/bin/sh\necho mine\n";
    std::fs::write(theirs.join("bin/kolosal"), mine).unwrap();
    let refused = install(&theirs, &[]);
    one_line_error(&refused, "was not installed by install.sh");
    assert_eq!(std::fs::read(theirs.join("bin/kolosal")).unwrap(), mine);

    std::fs::remove_file(shims.join("python")).unwrap();
    std::fs::write(shims.join("python"), mine).unwrap();
    let refused = install(&prefix, &[]);
    one_line_error(&refused, "lib/kolosal/shims/python exists");
    assert_eq!(std::fs::read(shims.join("python")).unwrap(), mine);
    let refused = install(&prefix, &["--no-shims"]);
    assert_eq!(refused.code, Some(0), "{}", refused.describe());
    assert_eq!(
        std::fs::read(shims.join("python")).unwrap(),
        mine,
        "--no-shims removed a file it did not create"
    );

    // Without cargo (and without KOLOSAL_INSTALL_FROM): one line saying how
    // to get it.
    let path_without_cargo = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .filter(|d| !d.join("cargo").exists())
        .collect::<Vec<_>>();
    let mut cmd = common::clean_command(repo().join("install.sh"));
    cmd.arg("--prefix").arg(tmp.path().join("nocargo"));
    cmd.env("PATH", std::env::join_paths(path_without_cargo).unwrap());
    let no_cargo = run(cmd, LIMIT);
    one_line_error(
        &no_cargo,
        "cargo not found; install Rust from https://rustup.rs",
    );

    // A prefix that cannot be created: one line, not mkdir's own.
    one_line_error(
        &install(Path::new("/proc/kolosal-no-such-dir"), &[]),
        "cannot create /proc/kolosal-no-such-dir/bin",
    );
    // A relative prefix is taken from the working directory.
    let mut cmd = common::clean_command(repo().join("install.sh"));
    cmd.current_dir(tmp.path())
        .env("KOLOSAL_INSTALL_FROM", built_bins())
        .args(["--prefix", "rel/p", "--no-shims"]);
    let rel = run(cmd, LIMIT);
    assert_eq!(rel.code, Some(0), "{}", rel.describe());
    assert!(tmp.path().join("rel/p/bin/kolosal-python").is_file());

    let bad = install(&prefix, &["--frobnicate"]);
    one_line_error(&bad, "unknown option '--frobnicate'");
    let mut cmd = common::clean_command(repo().join("install.sh"));
    cmd.env("KOLOSAL_INSTALL_FROM", tmp.path().join("nowhere"));
    cmd.arg("--prefix").arg(tmp.path().join("p3"));
    one_line_error(&run(cmd, LIMIT), "nowhere/kolosal is missing");
}

const SCRIPT: &str = r#"import os, sys, json
import helper
print(json.dumps({
    "executable": sys.executable,
    "real": os.path.realpath(sys.executable),
    "argv": sys.argv[1:],
    "dont_write": os.environ.get("PYTHONDONTWRITEBYTECODE"),
    "helper": helper.VALUE,
}))
"#;

/// A command for `program` in `dir` with exactly this PATH, its own
/// kolosal cache and home, debug logging, and PYTHONDONTWRITEBYTECODE=1 so
/// that any pyc written comes from kolosal, not from the interpreter.
fn shim_env(program: impl AsRef<std::ffi::OsStr>, dir: &Path, path: &[PathBuf]) -> Command {
    let mut cmd = common::clean_command(program);
    cmd.current_dir(dir)
        .env("PATH", std::env::join_paths(path).unwrap())
        .env("HOME", dir.join("home"))
        .env("KOLOSAL_CACHE_DIR", dir.join("cache"))
        .env("KOLOSAL_LOG", "debug")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// Checks one run of SCRIPT: it ran through kolosal (its debug timeline is
/// on stderr and it wrote helper's pyc although the interpreter was told not
/// to), it ran the interpreter `expect_exe` (a link to `py`), and it did
/// not run itself again.
fn check_through_kolosal(out: &Out, py: &Python, expect_exe: &Path, project: &Path, what: &str) {
    let ctx = || format!("{what} on {}:\n{}", py.label(), out.describe());
    assert_eq!(out.code, Some(0), "{}", ctx());
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!("{e}: {}", ctx());
    });
    assert_eq!(v["executable"], expect_exe.to_str().unwrap(), "{}", ctx());
    assert_eq!(
        v["real"],
        py.path.canonicalize().unwrap().to_str().unwrap(),
        "{}",
        ctx()
    );
    assert_eq!(v["argv"], serde_json::json!(["a b", "-c"]), "{}", ctx());
    assert_eq!(v["dont_write"], "1", "{}", ctx());
    assert_eq!(v["helper"], 42, "{}", ctx());
    let interp_line = format!("interpreter: {} (path)", expect_exe.display());
    assert!(out.stderr.contains(&interp_line), "{}", ctx());
    assert_eq!(
        out.stderr.matches("argv: script").count(),
        1,
        "kolosal ran more than once: {}",
        ctx()
    );
    let pyc = project
        .join("__pycache__")
        .join(format!("helper.{}.pyc", py.cache_tag()));
    assert!(
        pyc.is_file(),
        "kolosal wrote no {}: {}",
        pyc.display(),
        ctx()
    );
}

#[test]
fn shims_run_python_through_kolosal() {
    let pythons = common::pythons();
    common::report("install_shims::shims", &pythons);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let prefix = root.join("prefix");
    let inst = install(&prefix, &[]);
    assert_eq!(inst.code, Some(0), "{}", inst.describe());
    let shims = prefix.join("lib/kolosal/shims");
    let bin = prefix.join("bin");

    for (i, py) in pythons.iter().enumerate() {
        // The "real" interpreters on PATH, after the shims.
        let real = root.join(format!("real{i}"));
        std::fs::create_dir_all(&real).unwrap();
        for name in ["python", "python3"] {
            std::os::unix::fs::symlink(&py.path, real.join(name)).unwrap();
        }
        let project = root.join(format!("project{i}"));
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("script.py"), SCRIPT).unwrap();
        std::fs::write(project.join("helper.py"), "VALUE = 42\n").unwrap();
        let path = [
            shims.clone(),
            bin.clone(),
            real.clone(),
            PathBuf::from("/usr/bin"),
            PathBuf::from("/bin"),
        ];
        for name in ["python", "python3"] {
            let _ = std::fs::remove_dir_all(project.join("__pycache__"));
            // A bare name, as a shell runs it: argv[0] is `python`.
            let mut cmd = shim_env(name, &project, &path);
            cmd.args(["script.py", "a b", "-c"]);
            let out = run(cmd, LIMIT);
            check_through_kolosal(&out, py, &real.join(name), &project, name);
        }
    }

    // No real interpreter of the shim's name: a clean failure, no loop.
    let lonely = [shims.clone(), bin.clone()];
    let project = root.join("project0");
    let out = run(shim_env("python", &project, &lonely), LIMIT);
    assert_eq!(out.code, Some(127), "{}", out.describe());
    assert!(
        out.stderr
            .contains("kolosal-python: no python found on PATH (kolosal's own shims skipped)"),
        "{}",
        out.describe()
    );
}

#[test]
fn shebang_runs_through_kolosal() {
    let pythons = common::pythons();
    common::report("install_shims::shebang", &pythons);
    let py = pythons.last().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let prefix = root.join("prefix");
    let inst = install(&prefix, &[]);
    assert_eq!(inst.code, Some(0), "{}", inst.describe());
    let real = root.join("real");
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&py.path, real.join("python3")).unwrap();
    let project = root.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("helper.py"), "VALUE = 42\n").unwrap();

    // `#!/usr/bin/env kolosal-python`, with kolosal's bin dir on PATH (no
    // shims): the launcher, invoked by its own name, runs python3.
    // `#!/usr/bin/env python3` with the shims first: through the shim.
    let cases = [
        ("kolosal-python", vec![prefix.join("bin"), real.clone()]),
        (
            "python3",
            vec![
                prefix.join("lib/kolosal/shims"),
                prefix.join("bin"),
                real.clone(),
            ],
        ),
    ];
    for (interp, path) in cases {
        let _ = std::fs::remove_dir_all(project.join("__pycache__"));
        let script = project.join(format!("via-{interp}"));
        std::fs::write(&script, format!("#!/usr/bin/env {interp}\n{SCRIPT}")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = shim_env(&script, &project, &path);
        cmd.args(["a b", "-c"]);
        let out = run(cmd, LIMIT);
        check_through_kolosal(&out, py, &real.join("python3"), &project, interp);
    }
}

/// The full `install.sh` (cargo build --release --locked), then a launch.
#[test]
#[cfg_attr(
    not(feature = "heavy"),
    ignore = "heavy suite: cargo test --features heavy"
)]
fn install_builds_with_cargo() {
    let pythons = common::pythons();
    common::report("install_shims::cargo_build", &pythons);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let prefix = root.join("prefix");
    let mut cmd = common::clean_command(repo().join("install.sh"));
    cmd.arg("--prefix").arg(&prefix).arg("--no-shims");
    for var in ["CARGO_HOME", "RUSTUP_HOME", "CARGO_TARGET_DIR"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    let out = run(cmd, Duration::from_secs(1800));
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let py = pythons.last().unwrap();
    let project = root.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("script.py"), SCRIPT).unwrap();
    std::fs::write(project.join("helper.py"), "VALUE = 42\n").unwrap();
    let real = root.join("real");
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&py.path, real.join("python3")).unwrap();
    let mut cmd = shim_env(
        prefix.join("bin/kolosal-python"),
        &project,
        std::slice::from_ref(&real),
    );
    cmd.args(["script.py", "a b", "-c"]);
    let out = run(cmd, LIMIT);
    check_through_kolosal(&out, py, &real.join("python3"), &project, "release build");
}

// --- the Docker recipe (docs/docker.md), outside Docker ----------------------

/// How the "image" is made read-only for the runtime steps.
enum ReadOnly {
    /// A private mount namespace with the image bind-mounted read-only: the
    /// same EROFS a `docker run --read-only` container sees, even as root.
    Mount,
    /// `chattr +i` on every file and directory (root ignores modes).
    Immutable,
}

/// `sh -c RO_SCRIPT sh IMG DIR PROGRAM ARGS...`: mounts IMG read-only over
/// itself, then runs PROGRAM in DIR (entered after the mount, so that the
/// working directory is on the read-only mount too).
const RO_SCRIPT: &str =
    r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && cd "$2" && shift 2 && exec "$@""#;

/// Picks a way to make `img` read-only that works on this machine.
fn read_only_method(img: &Path) -> Option<ReadOnly> {
    let mut probe = common::clean_command("unshare");
    probe
        .args(["-m", "--", "sh", "-c", RO_SCRIPT, "sh"])
        .arg(img)
        .arg(img)
        .args(["sh", "-c", "! touch .probe 2>/dev/null"]);
    if probe.output().is_ok_and(|o| o.status.success()) && !img.join(".probe").exists() {
        return Some(ReadOnly::Mount);
    }
    let _ = std::fs::remove_file(img.join(".probe"));
    let ok = common::clean_command("chattr")
        .args(["-R", "+i"])
        .arg(img)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        let _ = common::clean_command("chattr")
            .args(["-R", "-i"])
            .arg(img)
            .status();
        return Some(ReadOnly::Immutable);
    }
    None
}

/// Undoes `chattr +i` when dropped, so the temp dir can be removed.
struct Unfreeze(Option<PathBuf>);

impl Drop for Unfreeze {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = common::clean_command("chattr")
                .args(["-R", "-i"])
                .arg(p)
                .status();
        }
    }
}

/// `program` run in `dir` with `img` read-only.
fn read_only_command(method: &ReadOnly, img: &Path, dir: &Path, program: &Path) -> Command {
    match method {
        ReadOnly::Mount => {
            let mut cmd = common::clean_command("unshare");
            cmd.args(["-m", "--", "sh", "-c", RO_SCRIPT, "sh"])
                .arg(img)
                .arg(dir)
                .arg(program);
            cmd
        }
        ReadOnly::Immutable => {
            let mut cmd = common::clean_command(program);
            cmd.current_dir(dir);
            cmd
        }
    }
}

/// The install tree of `py` without pycs, tests or site-packages: what an
/// official `python:X.Y-slim` image holds (it deletes every *.pyc).
fn slim_copy(py: &Python, dest: &Path) -> Option<PathBuf> {
    let root = py.path.parent()?.parent()?;
    let lib = format!("lib/python{}.{}", py.version.0, py.version.1);
    if root == Path::new("/usr") || !root.join(&lib).join("os.py").is_file() {
        return None;
    }
    std::fs::create_dir_all(dest).unwrap();
    let script = r#"tar -C "$1" --exclude="./$3/test" --exclude="./$3/site-packages" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.a' -cf - . | tar -C "$2" -xf -"#;
    let status = common::clean_command("sh")
        .args(["-c", script, "sh"])
        .arg(root)
        .arg(dest)
        .arg(&lib)
        .status()
        .unwrap();
    assert!(status.success(), "copying {} failed", root.display());
    Some(dest.join("bin").join(py.path.file_name()?))
}

const APP_MAIN: &str = r#"import errno, json, os, sys, argparse, logging
from email import parser
import depkg
from helpers import fmt
here = os.path.dirname(os.path.abspath(__file__))
try:
    open(os.path.join(here, ".write-probe"), "w").close()
    fs = "rw"
except OSError as e:
    fs = "ro:" + errno.errorcode.get(e.errno, "?")
print(json.dumps([fmt.show(depkg.answer()), fs, sys.prefix, sys.flags.optimize]))
"#;

fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// The `# code object from PATH` lines of `python -v` whose PATH is a
/// source file (a pyc path is printed quoted).
fn compiled_from_source(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("# code object from "))
        .filter(|p| !p.starts_with('\''))
        .collect()
}

/// One image build and its read-only runs, for `py` at `level`.
fn docker_recipe(py: &Python, level: u32, method: &ReadOnly, root: &Path) {
    let label = format!("{} -O x{level}", py.label());
    let img = root.join("img");
    // FROM python:X.Y-slim (both stages share it).
    let Some(base_python) = slim_copy(py, &img.join("usr/local")) else {
        common::note(&format!(
            "[install_shims] docker recipe: {} skipped (not a relocatable install tree)",
            py.label()
        ));
        return;
    };
    // Stage `kolosal`: install.sh --prefix /opt/kolosal --no-shims.
    let inst = install(&img.join("opt/kolosal"), &["--no-shims"]);
    assert_eq!(inst.code, Some(0), "{}", inst.describe());
    let kolosal_bin = img.join("opt/kolosal/bin");

    // Stage `deps`: a venv and a pure-Python dependency, no pycs (as
    // `pip install --no-compile`); PYTHONDONTWRITEBYTECODE keeps the base
    // as pyc-free as the slim image.
    let build = root.join("build");
    let mut venv = common::clean_command(&base_python);
    venv.env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-m", "venv", "--without-pip"])
        .arg(build.join("opt/venv"));
    let out = run(venv, LIMIT);
    assert_eq!(out.code, Some(0), "{label}: venv: {}", out.describe());
    let site = format!(
        "opt/venv/lib/python{}.{}/site-packages",
        py.version.0, py.version.1
    );
    write_files(
        &build.join(&site),
        &[
            (
                "depkg/__init__.py",
                "from .core import answer\n__all__ = ['answer']\n",
            ),
            (
                "depkg/core.py",
                "from depkg import _consts\n\ndef answer():\n    \"\"\"Doc.\"\"\"\n    return _consts.N\n",
            ),
            ("depkg/_consts.py", "N = 42\n"),
        ],
    );
    // The final stage: COPY --from=deps /opt/venv, COPY app/ /app (cp -a
    // keeps mtimes as COPY does), then RUN kolosal compile.
    write_files(
        &build.join("app"),
        &[
            ("main.py", APP_MAIN),
            ("helpers/__init__.py", ""),
            (
                "helpers/fmt.py",
                "def show(x):\n    return 'answer=%s' % x\n",
            ),
            ("helpers/unused.py", "X = 1\n"),
        ],
    );
    for dir in ["opt/venv", "app"] {
        std::fs::create_dir_all(img.join(dir).parent().unwrap()).unwrap();
        let st = common::clean_command("cp")
            .arg("-a")
            .arg(build.join(dir))
            .arg(img.join(dir))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let app = img.join("app");
    let venv_python = img.join("opt/venv/bin/python");
    let mut compile = common::clean_command(kolosal_bin.join("kolosal"));
    compile
        .current_dir(&app)
        .env("KOLOSAL_CACHE_DIR", root.join("build-cache"))
        .args(["compile", "--entry", "main.py", "--python"])
        .arg(&venv_python)
        .args(["-o", &level.to_string()]);
    let out = run(compile, LIMIT);
    assert_eq!(out.code, Some(0), "{label}: compile: {}", out.describe());
    let compiled: usize = out
        .stderr
        .split("compiled ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{label}: no summary: {}", out.describe()));
    // The stdlib part of the closure had no pycs (slim), nor had the app.
    assert!(compiled > 20, "{label}: {}", out.describe());
    assert!(
        !app.join("helpers/__pycache__")
            .read_dir()
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("unused.")),
        "{label}: compiled a module outside the closure"
    );

    // docker run --read-only --tmpfs /tmp IMAGE: the image is frozen, the
    // tmpfs is writable.
    let tmpfs = root.join("tmpfs");
    std::fs::create_dir_all(&tmpfs).unwrap();
    let _unfreeze = match method {
        ReadOnly::Immutable => {
            let st = common::clean_command("chattr")
                .args(["-R", "+i"])
                .arg(&img)
                .status()
                .unwrap();
            assert!(st.success());
            Unfreeze(Some(img.clone()))
        }
        ReadOnly::Mount => Unfreeze(None),
    };
    let entry = |extra_env: &[(&str, OsString)], verbose: bool| {
        let mut cmd = read_only_command(method, &img, &app, &kolosal_bin.join("kolosal-python"));
        let path = [
            kolosal_bin.clone(),
            img.join("opt/venv/bin"),
            PathBuf::from("/usr/bin"),
            PathBuf::from("/bin"),
        ];
        cmd.env("PATH", std::env::join_paths(path).unwrap())
            .env("HOME", img.join("root"));
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        if level > 0 {
            cmd.arg(format!("-{}", "O".repeat(level as usize)));
        }
        if verbose {
            cmd.arg("-v");
        }
        cmd.arg("main.py");
        run(cmd, LIMIT)
    };
    let expected = serde_json::json!([
        "answer=42",
        if matches!(method, ReadOnly::Mount) {
            "ro:EROFS"
        } else {
            "ro:EPERM"
        },
        img.join("opt/venv").to_str().unwrap(),
        level
    ]);
    let check = |out: &Out, what: &str| {
        let ctx = || format!("{label}, {what}:\n{}", out.describe());
        assert_eq!(out.code, Some(0), "{}", ctx());
        let v: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", ctx()));
        assert_eq!(v, expected, "{}", ctx());
        let mut from_source = compiled_from_source(&out.stderr);
        if py.version >= (3, 15, 0) {
            // 3.15's email.charset calls codecs.lookup() at import time; the
            // codec registry imports `encodings.<name>` under a computed
            // name, which no static closure sees (like any computed import).
            let codecs = img.join(format!(
                "usr/local/lib/python{}.{}/encodings/",
                py.version.0, py.version.1
            ));
            from_source.retain(|p| !Path::new(p).starts_with(&codecs));
        }
        assert!(
            from_source.is_empty(),
            "compiled from source: {from_source:?}\n{}",
            ctx()
        );
    };
    let cache = tmpfs.join("kolosal");
    let with_cache = [
        ("KOLOSAL_CACHE_DIR", cache.clone().into_os_string()),
        ("KOLOSAL_LOG", "debug".into()),
    ];

    // KOLOSAL_CACHE_DIR on the tmpfs: the first start checks everything
    // (cold) and finds it fresh, the next one is warm.
    let cold = entry(&with_cache, true);
    check(&cold, "cold start, cache on tmpfs");
    for (needle, what) in [
        ("cold: no manifest", "a cold start"),
        ("closure: ", "a closure"),
    ] {
        assert!(
            cold.stderr.contains(needle),
            "{label}: no {what}: {}",
            cold.describe()
        );
    }
    for bad in ["compile: ", "tree not writable", "skipped"] {
        assert!(
            !cold.stderr.contains(bad),
            "{label}: `{bad}`: {}",
            cold.describe()
        );
    }
    for pyc in [
        format!(
            "{}/lib/python{}.{}/json/__pycache__/",
            img.join("usr/local").display(),
            py.version.0,
            py.version.1
        ),
        format!("{}/depkg/__pycache__/core.", img.join(&site).display()),
        format!("{}/helpers/__pycache__/fmt.", app.display()),
    ] {
        assert!(
            cold.stderr.contains(&format!("# code object from '{pyc}")),
            "{label}: nothing loaded from {pyc}*: {}",
            cold.describe()
        );
    }
    let warm = entry(&with_cache, true);
    check(&warm, "second start, same tmpfs");
    assert!(
        warm.stderr.contains("warm: manifest holds"),
        "{label}: {}",
        warm.describe()
    );
    // KOLOSAL_AUTO_COMPILE=0: pure pass-through, the build-time pycs serve.
    let plain = entry(&[("KOLOSAL_AUTO_COMPILE", "0".into())], true);
    check(&plain, "KOLOSAL_AUTO_COMPILE=0");
    // No writable cache at all (HOME in the frozen image): still silent.
    let nocache = entry(&[], false);
    check(&nocache, "no writable cache");
    assert_eq!(nocache.stderr, "", "{label}: {}", nocache.describe());
    let quiet_cold = entry(
        &[("KOLOSAL_CACHE_DIR", tmpfs.join("k2").into_os_string())],
        false,
    );
    check(&quiet_cold, "tmpfs cache, default log level");
    assert_eq!(quiet_cold.stderr, "", "{label}: {}", quiet_cold.describe());
    common::note(&format!(
        "[install_shims] docker recipe {label}: compiled {compiled}; cold start {:?}, warm {:?}, \
         AUTO_COMPILE=0 {:?}, no cache {:?} (debug build, with -v)",
        cold.elapsed, warm.elapsed, plain.elapsed, nocache.elapsed
    ));
}

#[test]
fn docker_recipe_runs_read_only() {
    let all = common::pythons();
    // The oldest and the newest; every interpreter under KOLOSAL_TEST_HEAVY.
    let pythons: Vec<Python> = if common::heavy() || all.len() <= 2 {
        all
    } else {
        vec![all[0].clone(), all[all.len() - 1].clone()]
    };
    common::report("install_shims::docker_recipe", &pythons);
    let probe_dir = tempfile::tempdir().unwrap();
    let Some(method) = read_only_method(probe_dir.path()) else {
        common::note(
            "[install_shims] docker recipe NOT run: neither a read-only bind mount (unshare -m) \
             nor chattr +i works here",
        );
        return;
    };
    for (i, py) in pythons.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        // -O levels 0, then 2, 1, ... so both plain and optimised runs are covered.
        let level = [0, 2, 1][i % 3];
        docker_recipe(py, level, &method, &root);
    }
}
