//! Which interpreter kolosal trusts, and what it runs inside one: a `.venv`
//! other users control is ignored, the probe runs no user code and answers
//! on its own pipe, unsupported interpreters pass through untouched, and a
//! `python3` shim resolves like the shell would. Real interpreters, real
//! processes, each compared with plain `python`.

mod common;

use common::Python;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Prints the interpreter that runs.
const SHOW_EXE: &str = "import sys\nprint(sys.executable)\n";

/// A scratch directory whose every ancestor is owned by root (or us) and
/// writable by nobody else: `target/tmp`, not `/tmp` (world-writable, so
/// no `.venv` below it is trusted any more).
fn trusted_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("trust")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `cmd` with a deadline and a null stdin.
fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            common::wait_background_of(&cmd);
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not finish in 120 s: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn make_venv(py: &Path, dir: &Path) {
    let mut c = common::clean_command(py);
    c.args(["-m", "venv", "--without-pip"]).arg(dir);
    let out = run(c);
    assert!(out.status.success(), "venv: {}", common::describe(&out));
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The launcher, clean environment, `PATH` = `path`, its own cache.
fn launcher(path: &OsStr, cwd: &Path, cache: &Path) -> Command {
    let mut c = common::clean_command(common::launcher_bin());
    c.env("PATH", path)
        .env("KOLOSAL_CACHE_DIR", cache)
        .current_dir(cwd);
    c
}

fn newest() -> Python {
    common::pythons().pop().expect("a CPython >= 3.7")
}

fn oldest() -> Python {
    common::pythons()
        .into_iter()
        .next()
        .expect("a CPython >= 3.7")
}

// ---------------------------------------------------------------------------
// 1. `.venv` squatting
// ---------------------------------------------------------------------------

#[test]
fn dotvenv_controlled_by_others_is_ignored() {
    if !is_root() {
        common::note("[interpreter_trust] not root: cannot chown a .venv to another user; skipped");
        return;
    }
    let venv_py = newest();
    let path_py = oldest();
    common::report(
        "interpreter_trust::dotvenv",
        &[venv_py.clone(), path_py.clone()],
    );
    let tmp = trusted_tempdir();
    let root = tmp.path().canonicalize().unwrap();
    // The control case below needs a trusted place to start from.
    kolosal::interpreter::discover::dotvenv_trust(&root).expect("target/tmp must be trusted");
    let cache = root.join("cache");
    let path_dir = path_py.path.parent().unwrap().to_path_buf();
    let path_var =
        std::env::join_paths([path_dir.clone(), "/usr/bin".into(), "/bin".into()]).unwrap();
    // What plain `python3` on that PATH is.
    let path_exe = {
        let mut c = common::clean_command(path_dir.join("python3"));
        c.args(["-c", SHOW_EXE]);
        text(&run(c).stdout)
    };

    // Control: a root-owned .venv in a trusted tree is used.
    let ok = root.join("ok");
    make_venv(&venv_py.path, &ok.join(".venv"));
    write(&ok.join("show.py"), SHOW_EXE);
    let mut c = launcher(&path_var, &ok, &cache);
    c.arg("show.py");
    let o = run(c);
    assert_eq!(
        text(&o.stdout),
        format!("{}\n", ok.join(".venv/bin/python").display()),
        "{}",
        common::describe(&o)
    );
    assert!(o.stderr.is_empty(), "{}", common::describe(&o));

    // A .venv owned by another user; one owned by root but under a
    // world-writable sticky directory; one under a group-writable one.
    let other = root.join("other");
    make_venv(&venv_py.path, &other.join(".venv"));
    std::os::unix::fs::lchown(other.join(".venv"), Some(65534), Some(65534)).unwrap();
    let sticky = root.join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    make_venv(&venv_py.path, &sticky.join("proj/.venv"));
    let group = root.join("group");
    std::fs::create_dir(&group).unwrap();
    chmod(&group, 0o775);
    make_venv(&venv_py.path, &group.join(".venv"));
    // The same .venv reached through a symlink from a trusted place.
    let linked = root.join("linked");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink(other.join(".venv"), linked.join(".venv")).unwrap();

    for (proj, venv) in [
        (other.clone(), other.join(".venv")),
        (sticky.join("proj"), sticky.join("proj/.venv")),
        (group.clone(), group.join(".venv")),
        (linked.clone(), linked.join(".venv")),
    ] {
        write(&proj.join("sub/show.py"), SHOW_EXE);
        // Found upward from the working directory, then from the script.
        for (cwd, script) in [
            (proj.join("sub"), proj.join("sub/show.py")),
            (root.clone(), proj.join("sub/show.py")),
        ] {
            let mut c = launcher(&path_var, &cwd, &cache);
            c.arg(&script);
            let o = run(c);
            assert_eq!(
                text(&o.stdout),
                path_exe,
                "{} must be ignored: {}",
                venv.display(),
                common::describe(&o)
            );
            let err = text(&o.stderr);
            assert_eq!(err.lines().count(), 1, "one warning line: {err}");
            assert!(
                err.starts_with("kolosal") && err.contains(&format!("ignoring {}", venv.display())),
                "{err}"
            );
            // KOLOSAL_LOG=off silences it.
            let mut c = launcher(&path_var, &cwd, &cache);
            c.env("KOLOSAL_LOG", "off").arg(&script);
            let o = run(c);
            assert_eq!(text(&o.stdout), path_exe);
            assert!(o.stderr.is_empty(), "{}", common::describe(&o));
        }
    }
    // VIRTUAL_ENV names a venv on purpose: ownership is not second-guessed.
    let mut c = launcher(&path_var, &root, &cache);
    c.env("VIRTUAL_ENV", other.join(".venv"))
        .arg(other.join("sub/show.py"));
    let o = run(c);
    assert_eq!(
        text(&o.stdout),
        format!("{}\n", other.join(".venv/bin/python").display()),
        "{}",
        common::describe(&o)
    );
}
