//! Who may write what kolosal reads back, and python's behaviour kept
//! under hostile or unusual conditions (issue 11): a cache another user can
//! write, a manifest that names variables kolosal never sets, symlinks at
//! lock paths, a same-second same-size edit, cache entries that became
//! directories, no usable cache, PID 1, closed standard descriptors.
//!
//! Every case drives the real `kolosal-python` against real interpreters
//! and, where python's behaviour is the oracle, compares with plain python
//! run the same way. The tests run as root (CI does), which is what makes
//! the ownership cases reachable: files are handed to uid 65534.

use crate::common;

use common::{clean_command, launcher_bin, Python};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A uid that is neither root nor the test's.
const OTHER_UID: u32 = 65534;

fn newest() -> Python {
    common::pythons().pop().expect("no CPython >= 3.7 found")
}

/// Oldest and newest CPython >= 3.7 (every one under the heavy flag).
fn selected(suite: &str) -> Vec<Python> {
    let all = common::pythons();
    let chosen = if common::heavy() || all.len() <= 2 {
        all
    } else {
        vec![all[0].clone(), all[all.len() - 1].clone()]
    };
    common::report(suite, &chosen);
    chosen
}

/// `kolosal-python` for `py` with the cache `cache`, in `cwd`.
fn launcher(py: &Python, cache: &Path, cwd: &Path) -> Command {
    let mut c = clean_command(launcher_bin());
    c.env("KOLOSAL_PYTHON", &py.path)
        .env("KOLOSAL_CACHE_DIR", cache)
        .current_dir(cwd);
    c
}

fn run(mut c: Command) -> Output {
    c.stdin(std::process::Stdio::null())
        .output()
        .expect("start a child")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A small app: main.py imports helper at module level.
fn app(root: &Path) -> PathBuf {
    let dir = root.join("app");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("main.py"),
        "import helper\nprint('main ran', helper.X)\n",
    )
    .unwrap();
    fs::write(dir.join("helper.py"), "X = 'aaa'\n").unwrap();
    dir
}

fn manifests(cache: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(cache.join("manifests"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "manifest"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).expect("chown (tests run as root)");
}

#[test]
fn a_manifest_naming_variables_kolosal_never_sets_is_not_used() {
    let py = newest();
    common::report("manifest env", std::slice::from_ref(&py));
    let t = tempfile::tempdir().unwrap();
    let dir = app(t.path());
    let cache = t.path().join("cache");
    let evil = t.path().join("evil");
    fs::create_dir(&evil).unwrap();
    fs::write(evil.join("sitecustomize.py"), "print('PWNED')\n").unwrap();

    let mut first = launcher(&py, &cache, &dir);
    first.env("KOLOSAL_BACKGROUND", "0").arg("main.py");
    let o = run(first);
    assert_eq!(
        text(&o.stdout),
        "main ran aaa\n",
        "{}",
        common::describe(&o)
    );
    let files = manifests(&cache);
    assert_eq!(files.len(), 1, "one manifest recorded");

    // What someone with write access to the cache could add.
    let bytes = fs::read(&files[0]).unwrap();
    let mut m = kolosal::manifest::Manifest::decode(&bytes).expect("decodes");
    m.env
        .push(("PYTHONPATH".into(), evil.clone().into_os_string()));
    fs::write(&files[0], m.encode()).unwrap();

    let mut again = launcher(&py, &cache, &dir);
    again
        .env("KOLOSAL_BACKGROUND", "0")
        .env("KOLOSAL_LOG", "debug")
        .arg("main.py");
    let o = run(again);
    assert_eq!(
        text(&o.stdout),
        "main ran aaa\n",
        "{}",
        common::describe(&o)
    );
    assert!(
        !text(&o.stderr).contains("warm: manifest holds"),
        "the tampered manifest was trusted: {}",
        text(&o.stderr)
    );
}

/// A cache directory another user owns, one group-writable, and one under
/// a world-writable directory without the sticky bit: each is refused with
/// one warning, nothing is written into it, and the program runs as plain
/// python would (python writes its own pycs).
#[test]
fn a_cache_another_user_could_write_is_refused() {
    let py = newest();
    common::report("cache trust", std::slice::from_ref(&py));
    let t = tempfile::tempdir().unwrap();
    let dir = app(t.path());

    let owned_by_other = t.path().join("squatted");
    fs::create_dir(&owned_by_other).unwrap();
    chown(&owned_by_other, OTHER_UID);
    fs::set_permissions(&owned_by_other, fs::Permissions::from_mode(0o777)).unwrap();

    let group_writable = t.path().join("groupw");
    fs::create_dir(&group_writable).unwrap();
    fs::set_permissions(&group_writable, fs::Permissions::from_mode(0o770)).unwrap();

    let open_parent = t.path().join("open");
    fs::create_dir(&open_parent).unwrap();
    fs::set_permissions(&open_parent, fs::Permissions::from_mode(0o777)).unwrap();
    let under_open = open_parent.join("cache");

    for cache in [&owned_by_other, &group_writable, &under_open] {
        let _ = fs::remove_dir_all(dir.join("__pycache__"));
        let mut c = launcher(&py, cache, &dir);
        c.arg("main.py");
        let o = run(c);
        let err = text(&o.stderr);
        assert_eq!(
            text(&o.stdout),
            "main ran aaa\n",
            "{}",
            common::describe(&o)
        );
        assert_eq!(err.lines().count(), 1, "one warning: {err}");
        assert!(err.contains("cache not used"), "{err}");
        let listing: Vec<_> = fs::read_dir(cache)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            listing.is_empty(),
            "wrote into a refused cache: {listing:?}"
        );
        // python's own pyc writing stayed on.
        let pycs: Vec<_> = fs::read_dir(dir.join("__pycache__"))
            .expect("python wrote its pycs")
            .collect();
        assert_eq!(pycs.len(), 1, "{}", cache.display());
    }
    // The same cache, once made private, is used.
    fs::set_permissions(&group_writable, fs::Permissions::from_mode(0o700)).unwrap();
    let mut c = launcher(&py, &group_writable, &dir);
    c.arg("main.py");
    let o = run(c);
    assert!(o.stderr.is_empty(), "{}", common::describe(&o));
    assert!(group_writable.join("manifests").is_dir());
}

/// A dangling symlink at the background lock (`manifests/<hash>.bg`) must
/// not make kolosal create the file it points at.
#[test]
fn symlinks_at_lock_paths_are_not_followed() {
    let py = newest();
    common::report("lock symlinks", std::slice::from_ref(&py));
    let t = tempfile::tempdir().unwrap();
    let dir = app(t.path());
    let cache = t.path().join("cache");
    let mut first = launcher(&py, &cache, &dir);
    first.arg("main.py");
    let o = run(first);
    assert_eq!(
        text(&o.stdout),
        "main ran aaa\n",
        "{}",
        common::describe(&o)
    );
    common::wait_background(&cache);
    let bg: Vec<PathBuf> = fs::read_dir(cache.join("manifests"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bg"))
        .collect();
    assert_eq!(
        bg.len(),
        1,
        "a small first run leaves its pycs to a background run"
    );
    let victim = t.path().join("victim");
    fs::remove_file(&bg[0]).unwrap();
    std::os::unix::fs::symlink(&victim, &bg[0]).unwrap();
    fs::remove_dir_all(dir.join("__pycache__")).unwrap();

    let mut again = launcher(&py, &cache, &dir);
    again.env("KOLOSAL_LOG", "debug").arg("main.py");
    let o = run(again);
    common::wait_background(&cache);
    assert_eq!(
        text(&o.stdout),
        "main ran aaa\n",
        "{}",
        common::describe(&o)
    );
    assert!(
        text(&o.stderr).contains("background run"),
        "the relaunch did not reach the background lock: {}",
        text(&o.stderr)
    );
    assert!(!victim.exists(), "kolosal created a file through a symlink");
    assert!(fs::symlink_metadata(&bg[0]).unwrap().is_file());
}

/// An edit that keeps the size and the whole-second mtime passes
/// importlib's header check; kolosal's stamps see it and recompile.
#[test]
fn a_same_second_same_size_edit_runs_the_new_code() {
    for py in selected("same-second edit") {
        let t = tempfile::tempdir().unwrap();
        let dir = app(t.path());
        let cache = t.path().join("cache");
        let helper = dir.join("helper.py");
        for (i, want) in ["aaa", "bbb", "ccc", "ddd"].iter().enumerate() {
            if i > 0 {
                let before = fs::metadata(&helper).unwrap().modified().unwrap();
                fs::write(&helper, format!("X = '{want}'\n")).unwrap();
                // `touch -d` back to the old mtime: same second, same size.
                let f = fs::File::options().write(true).open(&helper).unwrap();
                f.set_modified(before).unwrap();
            }
            let mut c = launcher(&py, &cache, &dir);
            c.env("KOLOSAL_BACKGROUND", "0").arg("main.py");
            let o = run(c);
            assert_eq!(
                text(&o.stdout),
                format!("main ran {want}\n"),
                "{}: run {i}: {}",
                py.label(),
                common::describe(&o)
            );
        }
    }
}

/// A manifest, probe-cache or import-cache path that became a directory is
/// replaced; the launch after next is warm again.
#[test]
fn cache_entries_that_became_directories_heal() {
    let py = newest();
    common::report("cache entries as directories", std::slice::from_ref(&py));
    let t = tempfile::tempdir().unwrap();
    let dir = app(t.path());
    let cache = t.path().join("cache");
    let launch = || {
        let mut c = launcher(&py, &cache, &dir);
        c.env("KOLOSAL_BACKGROUND", "0")
            .env("KOLOSAL_LOG", "debug")
            .arg("main.py");
        run(c)
    };
    let o = launch();
    assert_eq!(
        text(&o.stdout),
        "main ran aaa\n",
        "{}",
        common::describe(&o)
    );
    let mut entries = manifests(&cache);
    for sub in ["probe", "imports"] {
        for e in fs::read_dir(cache.join(sub))
            .unwrap()
            .filter_map(|e| e.ok())
        {
            if e.path().is_file() {
                entries.push(e.path());
            }
        }
    }
    assert!(
        entries.len() >= 3,
        "manifest, probe and import cache: {entries:?}"
    );
    for e in &entries {
        fs::remove_file(e).unwrap();
        fs::create_dir_all(e.join("in-the-way")).unwrap();
    }
    let o = launch();
    assert_eq!(
        text(&o.stdout),
        "main ran aaa\n",
        "{}",
        common::describe(&o)
    );
    let o = launch();
    assert!(
        text(&o.stderr).contains("warm: manifest holds"),
        "{}",
        common::describe(&o)
    );
    for e in &entries {
        assert!(
            fs::symlink_metadata(e).unwrap().is_file(),
            "{}",
            e.display()
        );
    }
}

/// Without a usable cache nothing kolosal leaves for later would happen:
/// python's own pyc writing stays on, so launches cost what python's do.
#[test]
fn without_a_usable_cache_python_writes_its_own_pycs() {
    let py = newest();
    common::report("no usable cache", std::slice::from_ref(&py));
    let t = tempfile::tempdir().unwrap();
    let dir = app(t.path());
    fs::write(
        dir.join("flags.py"),
        "import sys, helper\nprint(sys.flags.dont_write_bytecode)\n",
    )
    .unwrap();
    let blocker = t.path().join("a-file");
    fs::write(&blocker, "").unwrap();
    let mut c = launcher(&py, &blocker.join("cache"), &dir);
    c.arg("flags.py");
    let o = run(c);
    assert_eq!(text(&o.stdout), "0\n", "{}", common::describe(&o));
    assert!(o.stderr.is_empty(), "{}", common::describe(&o));
    assert!(
        fs::read_dir(dir.join("__pycache__")).is_ok_and(|rd| rd.count() == 1),
        "python wrote helper's pyc"
    );
}

/// When the program is PID 1 (a container's entrypoint), nothing kolosal
/// starts may outlive the exec: it would become the program's child.
#[test]
fn pid_one_inherits_no_background_run() {
    if !Path::new("/usr/bin/unshare").exists() {
        panic!("unshare (util-linux) is needed for the PID 1 case");
    }
    for py in selected("pid 1") {
        let t = tempfile::tempdir().unwrap();
        let dir = app(t.path());
        fs::write(
            dir.join("init.py"),
            "import os, helper\n\
             def later():\n    import lazy_one\n\
             try:\n    pid, _ = os.wait()\n    print('foreign child', pid)\n\
             except ChildProcessError:\n    print('no children')\n",
        )
        .unwrap();
        fs::write(dir.join("lazy_one.py"), "Y = 1\n").unwrap();
        let cache = t.path().join("cache");
        let unshare = |program: &Path, extra: &[(&str, &Path)]| {
            let mut c = clean_command("/usr/bin/unshare");
            c.args(["--fork", "--pid", "--mount-proc"])
                .arg(program)
                .arg("init.py")
                .current_dir(&dir)
                .env("KOLOSAL_PYTHON", &py.path);
            for (k, v) in extra {
                c.env(k, v);
            }
            run(c)
        };
        let plain = unshare(&py.path, &[]);
        let _ = fs::remove_dir_all(dir.join("__pycache__"));
        let ours = unshare(launcher_bin(), &[("KOLOSAL_CACHE_DIR", &cache)]);
        assert_eq!(
            text(&plain.stdout),
            "no children\n",
            "{}",
            common::describe(&plain)
        );
        assert_eq!(
            (text(&ours.stdout), ours.status.code()),
            (text(&plain.stdout), plain.status.code()),
            "{}: {}",
            py.label(),
            common::describe(&ours)
        );
    }
}

/// `<&-`, `>&-`, `2>&-`: the program gets the descriptors the launcher got
/// (`sys.stdin is None`, as with plain python), not /dev/null.
#[test]
fn closed_standard_descriptors_stay_closed() {
    for py in selected("closed fds") {
        let t = tempfile::tempdir().unwrap();
        let dir = app(t.path());
        let report = t.path().join("report");
        fs::write(
            dir.join("fds.py"),
            "import sys\nopen(sys.argv[1], 'w').write(repr((sys.stdin is None, sys.stdout is None, sys.stderr is None)))\n",
        )
        .unwrap();
        let cache = t.path().join("cache");
        for redirect in ["<&-", ">&-", "2>&-", "<&- >&- 2>&-"] {
            let mut seen = Vec::new();
            for program in [py.path.as_path(), launcher_bin()] {
                let _ = fs::remove_file(&report);
                let mut c = clean_command("/bin/sh");
                c.arg("-c")
                    .arg(format!("exec \"$0\" fds.py \"$1\" {redirect}"))
                    .arg(program)
                    .arg(&report)
                    .current_dir(&dir)
                    .env("KOLOSAL_PYTHON", &py.path)
                    .env("KOLOSAL_CACHE_DIR", &cache);
                let o = c.output().expect("run sh");
                seen.push((
                    o.status.code(),
                    fs::read_to_string(&report).unwrap_or_default(),
                ));
            }
            assert_eq!(seen[0], seen[1], "{}: {redirect}", py.label());
            assert_ne!(seen[0].1, "", "{redirect}: the program ran");
        }
    }
}

#[test]
fn refused_cache_owner_is_checked_on_files_too() {
    // A manifest file (not the directory) handed to another user is not
    // read back, even inside a private cache.
    let py = newest();
    let t = tempfile::tempdir().unwrap();
    let dir = app(t.path());
    let cache = t.path().join("cache");
    let launch = || {
        let mut c = launcher(&py, &cache, &dir);
        c.env("KOLOSAL_BACKGROUND", "0")
            .env("KOLOSAL_LOG", "debug")
            .arg("main.py");
        run(c)
    };
    launch();
    let files = manifests(&cache);
    assert_eq!(files.len(), 1);
    chown(&files[0], OTHER_UID);
    let o = launch();
    assert!(
        !text(&o.stderr).contains("warm: manifest holds"),
        "{}",
        common::describe(&o)
    );
    assert_eq!(
        fs::metadata(&files[0]).unwrap().uid(),
        0,
        "replaced by our own"
    );
}
