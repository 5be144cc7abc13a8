//! Drop-in fidelity of the tools around the launcher (issue 13): install.sh
//! takes back exactly what it installed, shell completions, the launcher's
//! own version, and the one-line summary `KOLOSAL_LOG=info` prints.

use crate::common;

use common::{clean_command, kolosal_bin, launcher_bin};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Every path below `root` with its kind and contents (links by target).
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
        let what = if e.path_is_symlink() {
            format!("link {}", fs::read_link(e.path()).unwrap().display())
        } else if e.file_type().is_dir() {
            "dir".to_string()
        } else {
            format!("file {:?}", fs::read(e.path()).unwrap())
        };
        out.insert(rel, what);
    }
    out
}

fn install(prefix: &Path, extra: &[&str]) -> std::process::Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut c = clean_command("bash");
    c.arg(repo.join("install.sh"))
        .arg("--prefix")
        .arg(prefix)
        .args(extra)
        .env("KOLOSAL_INSTALL_FROM", launcher_bin().parent().unwrap());
    c.output().expect("run install.sh")
}

#[test]
fn uninstall_leaves_the_prefix_as_it_was() {
    let t = tempfile::tempdir().unwrap();
    // A prefix that already holds other tools, and one that does not exist.
    let used = t.path().join("used");
    fs::create_dir_all(used.join("bin")).unwrap();
    fs::write(used.join("bin/other-tool"), "#!/bin/sh\n").unwrap();
    fs::create_dir_all(used.join("lib/other")).unwrap();
    let fresh = t.path().join("fresh/nested");
    for prefix in [&used, &fresh] {
        let before = tree(prefix);
        let o = install(prefix, &[]);
        assert!(o.status.success(), "{}", common::describe(&o));
        assert!(prefix.join("bin/kolosal-python").is_file());
        assert!(prefix.join("lib/kolosal/shims/python3").is_symlink());
        // A second run and a --no-shims run are still undone exactly.
        let o = install(prefix, &["--no-shims"]);
        assert!(o.status.success(), "{}", common::describe(&o));
        let o = install(prefix, &[]);
        assert!(o.status.success(), "{}", common::describe(&o));
        let o = install(prefix, &["--uninstall"]);
        assert!(o.status.success(), "{}", common::describe(&o));
        assert_eq!(tree(prefix), before, "{}", prefix.display());
    }
    // Nothing installed: one clear line, non-zero.
    let o = install(&used, &["--uninstall"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nothing to uninstall"), "{err}");
}

#[test]
fn uninstall_keeps_what_someone_else_put_in_place() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("p");
    assert!(install(&prefix, &[]).status.success());
    // The user replaced a shim with their own script.
    let shim = prefix.join("lib/kolosal/shims/python");
    fs::remove_file(&shim).unwrap();
    fs::write(&shim, "#!/bin/sh\necho mine\n").unwrap();
    let o = install(&prefix, &["--uninstall"]);
    assert!(o.status.success(), "{}", common::describe(&o));
    assert_eq!(fs::read_to_string(&shim).unwrap(), "#!/bin/sh\necho mine\n");
    assert!(!prefix.join("bin/kolosal").exists());
    assert!(String::from_utf8_lossy(&o.stderr).contains("left"));
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_kolosal()"),
        ("zsh", "#compdef kolosal"),
        ("fish", "complete -c kolosal"),
    ] {
        let o = clean_command(kolosal_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success(), "{shell}: {}", common::describe(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains(marker), "{shell}");
        for sub in ["compile", "clean", "status", "closure", "info"] {
            assert!(text.contains(sub), "{shell} completes {sub}");
        }
    }
    // bash accepts what it is given.
    let o = clean_command(kolosal_bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let script = tempfile::NamedTempFile::new().unwrap();
    fs::write(script.path(), &o.stdout).unwrap();
    let check = clean_command("bash")
        .arg("-n")
        .arg(script.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", common::describe(&check));
}

#[test]
fn launcher_version_never_clashes_with_python() {
    let py = common::pythons().pop().expect("a CPython");
    let o = clean_command(launcher_bin())
        .arg("--kolosal-version")
        .env("KOLOSAL_PYTHON", &py.path)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("kolosal-python {}\n", env!("CARGO_PKG_VERSION"))
    );
    // CPython itself rejects the option: no python command line means it.
    let plain = clean_command(&py.path)
        .arg("--kolosal-version")
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(2), "{}", common::describe(&plain));
    // --version still reaches python.
    let v = clean_command(launcher_bin())
        .arg("--version")
        .env("KOLOSAL_PYTHON", &py.path)
        .output()
        .unwrap();
    let plain = clean_command(&py.path).arg("--version").output().unwrap();
    assert_eq!(v.stdout, plain.stdout);
}

/// The README's demo: the first run says it was cold, the second warm, one
/// line each at `KOLOSAL_LOG=info`.
#[test]
fn info_log_says_what_happened_in_one_line() {
    let py = common::pythons().pop().expect("a CPython");
    common::report("info summary", std::slice::from_ref(&py));
    let t = tempfile::tempdir().unwrap();
    let app = t.path().join("app");
    fs::create_dir(&app).unwrap();
    fs::write(app.join("main.py"), "import helper\nprint(helper.X)\n").unwrap();
    fs::write(app.join("helper.py"), "X = 7\n").unwrap();
    let run = || {
        let o = clean_command(launcher_bin())
            .arg("main.py")
            .current_dir(&app)
            .env("KOLOSAL_PYTHON", &py.path)
            .env("KOLOSAL_CACHE_DIR", t.path().join("cache"))
            .env("KOLOSAL_BACKGROUND", "0")
            .env("KOLOSAL_LOG", "info")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "7\n");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let first = run();
    assert_eq!(first.lines().count(), 1, "{first}");
    assert!(first.starts_with("kolosal: cold: "), "{first}");
    assert!(first.contains("1 pycs compiled"), "{first}");
    let second = run();
    assert_eq!(second.lines().count(), 1, "{second}");
    assert!(second.starts_with("kolosal: warm: "), "{second}");
    fs::write(app.join("helper.py"), "X = 8\n").unwrap();
    let o = clean_command(launcher_bin())
        .arg("main.py")
        .current_dir(&app)
        .env("KOLOSAL_PYTHON", &py.path)
        .env("KOLOSAL_CACHE_DIR", t.path().join("cache"))
        .env("KOLOSAL_BACKGROUND", "0")
        .env("KOLOSAL_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "8\n");
    let third = String::from_utf8_lossy(&o.stderr);
    assert!(
        third.starts_with("kolosal: repaired: 1 sources edited"),
        "{third}"
    );
}

/// `--` ends the options, as for compileall: what follows is paths (even
/// one that starts with `-`), unless `--trace` asks for a command.
#[test]
fn compile_paths_after_double_dash() {
    let py = common::pythons().pop().expect("a CPython");
    let t = tempfile::tempdir().unwrap();
    let odd = t.path().join("-odd");
    fs::create_dir(&odd).unwrap();
    fs::write(odd.join("m.py"), "X = 1\n").unwrap();
    let o = clean_command(kolosal_bin())
        .args(["compile", "-q", "--python"])
        .arg(&py.path)
        .args(["--", "-odd"])
        .current_dir(t.path())
        .env("KOLOSAL_CACHE_DIR", t.path().join("cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::describe(&o));
    assert_eq!(
        fs::read_dir(odd.join("__pycache__")).unwrap().count(),
        1,
        "one pyc written"
    );
}
