//! Which interpreter kolosal trusts, and what it runs inside one: a `.venv`
//! other users control is ignored, the probe runs no user code and answers
//! on its own pipe, unsupported interpreters pass through untouched, and a
//! `python3` shim resolves like the shell would. Real interpreters, real
//! processes, each compared with plain `python`.

use crate::common;

use common::Python;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

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
fn run(cmd: Command) -> Output {
    common::run_with_deadline(cmd, Duration::from_secs(120))
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
    kolosal::interpreter::dotvenv_trust(&root).expect("target/tmp must be trusted");
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
    make_venv(&venv_py.path, &sticky.join(".venv"));
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
        (sticky.join("proj"), sticky.join(".venv")),
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
            // `kolosal info` says the same, from the same place.
            let mut c = common::clean_command(common::kolosal_bin());
            c.env("PATH", &path_var)
                .env("KOLOSAL_CACHE_DIR", &cache)
                .current_dir(&cwd)
                .args(["info", "--json"])
                .arg(&script);
            let o = run(c);
            let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
                .unwrap_or_else(|e| panic!("info --json: {e}: {}", common::describe(&o)));
            assert_eq!(doc["interpreter"]["rule"], "path", "{doc}");
            let note = doc["ignored_venv"].as_str().unwrap_or_default();
            assert!(
                note.contains(&format!("ignoring {}", venv.display())),
                "info must name the ignored .venv: {doc}"
            );
            // KOLOSAL_LOG=off silences it.
            let mut c = launcher(&path_var, &cwd, &cache);
            c.env("KOLOSAL_LOG", "off").arg(&script);
            let o = run(c);
            assert_eq!(text(&o.stdout), path_exe);
            assert!(o.stderr.is_empty(), "{}", common::describe(&o));
        }
    }
    // A project of root's inside the sticky directory: nobody else can
    // rename or replace `proj`, so its own .venv is used.
    let mine = sticky.join("mine");
    make_venv(&venv_py.path, &mine.join(".venv"));
    write(&mine.join("show.py"), SHOW_EXE);
    let mut c = launcher(&path_var, &mine, &cache);
    c.arg("show.py");
    let o = run(c);
    assert_eq!(
        text(&o.stdout),
        format!("{}\n", mine.join(".venv/bin/python").display()),
        "{}",
        common::describe(&o)
    );
    assert!(o.stderr.is_empty(), "{}", common::describe(&o));
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

// ---------------------------------------------------------------------------
// 2. The probe runs no user code and answers on its own pipe
// ---------------------------------------------------------------------------

/// The interpreters the probe differential runs on (those present).
fn probe_pythons() -> Vec<PathBuf> {
    [
        "/root/.pyenv/versions/3.7.16/bin/python3",
        "/root/.pyenv/versions/3.8.18/bin/python3",
        "/root/.pyenv/versions/3.11.7/bin/python3",
        "/usr/bin/python3.11",
        "/root/.pyenv/versions/3.13.0/bin/python3",
        "/opt/new-pythons/usr/bin/python3.14-host",
        "/opt/new-pythons/usr/bin/python3.15-host",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.is_file())
    .collect()
}

/// Appends one line to the marker file named by `KT_MARKER`, without
/// printing anything.
fn marker_module(tag: &str) -> String {
    format!("import os\nwith open(os.environ['KT_MARKER'], 'a') as _f:\n    _f.write('{tag}\\n')\n")
}

fn marker_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn probe_runs_no_user_code_and_matches_python() {
    let pythons = probe_pythons();
    assert!(
        !pythons.is_empty(),
        "no interpreter for the probe differential"
    );
    common::note(&format!(
        "[interpreter_trust::probe] ran on {}",
        pythons
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let tmp = trusted_tempdir();
    let root = tmp.path().canonicalize().unwrap();
    let cwd = root.join("work");
    let pp = root.join("pp");
    let home = root.join("home");
    for d in [&cwd, &pp, &home, &cwd.join("rel"), &root.join("extra")] {
        std::fs::create_dir_all(d).unwrap();
    }
    // Modules that shadow what the probe imports, in the working directory
    // (sys.path[0] of `-c`) and on PYTHONPATH: importing one is a failure.
    for d in [&cwd, &pp] {
        for name in ["json", "sysconfig", "importlib"] {
            write(&d.join(format!("{name}.py")), &marker_module("shadow"));
        }
    }
    write(&cwd.join("main.py"), "import sys\nprint(sys.path[1:])\n");
    let marker = root.join("marker");
    for (i, py) in pythons.iter().enumerate() {
        let venv = root.join(format!("venv{i}"));
        make_venv(py, &venv);
        let site = common::purelib(&venv.join("bin/python"));
        assert!(site.is_dir(), "{}", site.display());
        // A .pth path line, a .pth import line, a printing sitecustomize.
        write(
            &site.join("zz_kolosal.pth"),
            &format!("{}\nimport kt_pth_mod\n", root.join("extra").display()),
        );
        write(&site.join("kt_pth_mod.py"), &marker_module("pth"));
        // On PYTHONPATH: Debian's own sitecustomize in the stdlib directory
        // would shadow one in site-packages.
        write(
            &pp.join("sitecustomize.py"),
            &format!("{}print('SITECUSTOMIZE')\n", marker_module("site")),
        );
        let env = |c: &mut Command| {
            c.env("HOME", &home)
                .env("PATH", "/usr/bin:/bin")
                .env("KT_MARKER", &marker)
                .env("PYTHONPATH", format!("{}:rel", pp.display()))
                .current_dir(&cwd);
        };
        let label = py.display().to_string();
        let vpy = venv.join("bin/python");

        // Plain python: the reference, and one of each marker.
        let _ = std::fs::remove_file(&marker);
        let mut c = common::clean_command(&vpy);
        env(&mut c);
        c.arg("main.py");
        let plain = run(c);
        assert!(
            plain.status.success(),
            "{label}: {}",
            common::describe(&plain)
        );
        assert_eq!(
            marker_lines(&marker),
            ["pth", "site"],
            "{label}: plain python"
        );
        let mut c = common::clean_command(&vpy);
        env(&mut c);
        c.args(["-c", "import sys; print(sys.path[1:])"]);
        let want_path = text(&run(c).stdout);
        // sitecustomize printed first; sys.path is the last line.
        let want_path = format!("{}\n", want_path.lines().last().unwrap_or_default());

        // The probe alone (kolosal info): no user code at all.
        let _ = std::fs::remove_file(&marker);
        let mut c = common::clean_command(common::kolosal_bin());
        env(&mut c);
        c.env("KOLOSAL_CACHE_DIR", root.join(format!("cache{i}")))
            .args(["info", "--json", "--python"])
            .arg(&vpy);
        let o = run(c);
        assert!(o.status.success(), "{label}: {}", common::describe(&o));
        assert_eq!(
            marker_lines(&marker),
            Vec::<String>::new(),
            "{label}: the probe ran user code"
        );
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(doc["probe_error"], serde_json::Value::Null, "{label}");
        let got: Vec<String> = doc["facts"]["sys_path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        // Python's repr of a list of str, for the comparison.
        let got_repr = format!(
            "[{}]\n",
            got.iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(got_repr, want_path, "{label}: probe sys_path");
        assert!(got.contains(&root.join("extra").display().to_string()));

        // A cold launch (everything compiled before exec), then a warm one:
        // each runs sitecustomize and the .pth import exactly once, prints
        // exactly what plain python prints.
        for round in ["cold", "warm"] {
            let _ = std::fs::remove_file(&marker);
            let mut c = common::clean_command(common::launcher_bin());
            env(&mut c);
            c.env("KOLOSAL_CACHE_DIR", root.join(format!("cache{i}")))
                .env("KOLOSAL_BACKGROUND", "0")
                .env("KOLOSAL_PYTHON", &vpy)
                .arg("main.py");
            let o = run(c);
            assert_eq!(
                o.stdout,
                plain.stdout,
                "{label} {round}: {}",
                common::describe(&o)
            );
            assert_eq!(
                o.stderr,
                plain.stderr,
                "{label} {round}: {}",
                common::describe(&o)
            );
            assert_eq!(o.status.code(), plain.status.code());
            assert_eq!(marker_lines(&marker), ["pth", "site"], "{label} {round}");
        }
        // The start-up modules user code brings in were precompiled.
        let tag = {
            let mut c = common::clean_command(&vpy);
            c.args(["-c", "import sys; print(sys.implementation.cache_tag)"]);
            text(&run(c).stdout).trim().to_string()
        };
        for (dir, m) in [(&pp, "sitecustomize"), (&site, "kt_pth_mod")] {
            let pyc = dir.join(format!("__pycache__/{m}.{tag}.pyc"));
            assert!(pyc.is_file(), "{label}: {} not written", pyc.display());
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Unsupported interpreters (2.7, 3.6): a silent pass-through
// ---------------------------------------------------------------------------

/// The program: imports a module (whose pyc python writes itself), prints
/// on both streams, exits 3.
const OLD_MAIN: &str = "import sys\nimport helper\nsys.stdout.write('out %s\\n' % helper.X)\nsys.stderr.write('err\\n')\nsys.exit(3)\n";

fn old_tree(dir: &Path) {
    write(&dir.join("main.py"), OLD_MAIN);
    write(&dir.join("helper.py"), "X = 42\n");
}

/// Where python `version` writes helper.py's pyc.
fn old_pyc(dir: &Path, version: &str) -> PathBuf {
    if version.starts_with("2.") {
        dir.join("helper.pyc")
    } else {
        dir.join("__pycache__/helper.cpython-36.pyc")
    }
}

#[test]
fn unsupported_interpreters_pass_through_silently() {
    let olds: Vec<(&str, PathBuf)> = [
        ("2.7", "/root/.pyenv/versions/2.7.18/bin/python"),
        ("3.6", "/root/.pyenv/versions/3.6.15/bin/python"),
    ]
    .into_iter()
    .map(|(v, p)| (v, PathBuf::from(p)))
    .filter(|(_, p)| p.is_file())
    .collect();
    if olds.is_empty() {
        common::note("[interpreter_trust::unsupported] no 2.7 or 3.6 here; skipped");
        return;
    }
    common::note(&format!(
        "[interpreter_trust::unsupported] ran on {:?}",
        olds.iter().map(|(_, p)| p).collect::<Vec<_>>()
    ));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    for (version, py) in &olds {
        let cache = root.join(format!("cache-{version}"));
        let plain_dir = root.join(format!("plain-{version}"));
        old_tree(&plain_dir);
        let mut c = common::clean_command(py);
        c.current_dir(&plain_dir).arg("main.py");
        let plain = run(c);
        assert_eq!(plain.status.code(), Some(3), "{}", common::describe(&plain));
        assert!(
            old_pyc(&plain_dir, version).is_file(),
            "plain {version} wrote no pyc"
        );

        for round in 0..3 {
            let dir = root.join(format!("k-{version}-{round}"));
            old_tree(&dir);
            let mut c = common::clean_command(common::launcher_bin());
            c.env("KOLOSAL_CACHE_DIR", &cache)
                .env("KOLOSAL_PYTHON", py)
                .current_dir(&dir)
                .arg("main.py");
            let o = run(c);
            assert_eq!(
                o.stdout,
                plain.stdout,
                "{version} #{round}: {}",
                common::describe(&o)
            );
            assert_eq!(
                o.stderr,
                plain.stderr,
                "{version} #{round}: {}",
                common::describe(&o)
            );
            assert_eq!(o.status.code(), plain.status.code());
            assert!(
                old_pyc(&dir, version).is_file(),
                "{version} #{round}: PYTHONDONTWRITEBYTECODE was set: no pyc"
            );
            if round == 1 {
                // Later launches read the verdict: no probe, no cold path.
                let mut c = common::clean_command(common::launcher_bin());
                c.env("KOLOSAL_CACHE_DIR", &cache)
                    .env("KOLOSAL_PYTHON", py)
                    .env("KOLOSAL_LOG", "debug")
                    .current_dir(&dir)
                    .arg("main.py");
                let o = run(c);
                let err = text(&o.stderr);
                assert!(
                    err.contains("unsupported interpreter: pass-through"),
                    "{err}"
                );
                assert!(!err.contains("cold"), "{err}");
            }
            if round == 1 && is_root() {
                // A verdict file someone else owns is not believed: the
                // probe runs again (still silently) and rewrites it.
                let verdicts: Vec<PathBuf> = std::fs::read_dir(cache.join("probe"))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|x| x == "unsupported"))
                    .collect();
                assert_eq!(verdicts.len(), 1, "{verdicts:?}");
                std::os::unix::fs::lchown(&verdicts[0], Some(65534), None).unwrap();
                let mut c = common::clean_command(common::launcher_bin());
                c.env("KOLOSAL_CACHE_DIR", &cache)
                    .env("KOLOSAL_PYTHON", py)
                    .env("KOLOSAL_LOG", "debug")
                    .current_dir(&dir)
                    .arg("main.py");
                let o = run(c);
                assert!(text(&o.stderr).contains("cold"), "{}", text(&o.stderr));
                use std::os::unix::fs::MetadataExt;
                let m = std::fs::metadata(&verdicts[0]).unwrap();
                assert_eq!(
                    (m.uid(), m.mode() & 0o077),
                    (0, 0),
                    "verdict rewritten, private"
                );
            }
        }
    }
}

/// A probe cache file this user did not write (another owner, group- or
/// world-writable, a symlink) is re-probed, never believed.
#[test]
fn probe_cache_files_must_be_our_own() {
    let py = newest();
    common::report(
        "interpreter_trust::probe_cache_owner",
        std::slice::from_ref(&py),
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let cache = root.join("cache");
    let info = || {
        let mut c = common::clean_command(common::kolosal_bin());
        c.env("KOLOSAL_CACHE_DIR", &cache)
            .current_dir(&root)
            .args(["info", "--json", "--python"])
            .arg(&py.path);
        let o = run(c);
        assert!(o.status.success(), "{}", common::describe(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (
            doc["probe_cache"]["status"].as_str().unwrap().to_string(),
            PathBuf::from(doc["probe_cache"]["file"].as_str().unwrap()),
        )
    };
    let (status, file) = info();
    assert_eq!(status, "written");
    assert_eq!(info().0, "hit");
    chmod(&file, 0o620);
    assert_eq!(info().0, "written", "group-writable file believed");
    assert_eq!(info().0, "hit");
    chmod(&file, 0o606);
    assert_eq!(info().0, "written", "world-writable file believed");
    let copy = root.join("copy.json");
    std::fs::copy(&file, &copy).unwrap();
    chmod(&copy, 0o600);
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&copy, &file).unwrap();
    assert_eq!(info().0, "written", "symlinked file believed");
    assert_eq!(info().0, "hit");
    if is_root() {
        std::os::unix::fs::lchown(&file, Some(65534), None).unwrap();
        assert_eq!(info().0, "written", "file of another user believed");
        assert_eq!(info().0, "hit");
    }
}

/// The probe's `sys_path` under the flags that change it (`-I`, `-E`, `-s`,
/// `-S`), with a user site holding a `.pth` path line and PYTHONPATH set,
/// against `python FLAGS -c 'print(sys.path)'` (minus the `''` of `-c`).
#[test]
fn probe_sys_path_matches_python_under_flags() {
    use kolosal::interpreter::{run_probe, ProbeConfig, FACT_ENV_VARS};
    let pythons = probe_pythons();
    assert!(!pythons.is_empty());
    let tmp = trusted_tempdir();
    let root = tmp.path().canonicalize().unwrap();
    let home = root.join("home");
    let pp = root.join("pp");
    std::fs::create_dir_all(root.join("user-extra")).unwrap();
    std::fs::create_dir_all(&pp).unwrap();
    for py in &pythons {
        let label = py.display().to_string();
        let user_site = {
            let mut c = common::clean_command(py);
            c.env("HOME", &home)
                .args(["-c", "import site; print(site.getusersitepackages())"]);
            PathBuf::from(text(&run(c).stdout).trim())
        };
        write(
            &user_site.join("user.pth"),
            &format!("{}\nimport sys\n", root.join("user-extra").display()),
        );
        for flags in [&[][..], &["-I"][..], &["-E"][..], &["-s"][..], &["-S"][..]] {
            let mut c = common::clean_command(py);
            c.env("HOME", &home)
                .env("PYTHONPATH", &pp)
                .current_dir(&root)
                .args(flags)
                .args(["-c", "import sys; print('\\n'.join(sys.path))"]);
            let o = run(c);
            assert!(
                o.status.success(),
                "{label} {flags:?}: {}",
                common::describe(&o)
            );
            let out = text(&o.stdout);
            let mut want: Vec<&str> = out.lines().collect();
            if want.first() == Some(&"") {
                want.remove(0);
            }
            let config = ProbeConfig {
                isolated: flags.contains(&"-I"),
                ignore_environment: flags.contains(&"-E"),
                no_user_site: flags.contains(&"-s"),
                no_site: flags.contains(&"-S"),
                frozen_modules_off: false,
                env: FACT_ENV_VARS
                    .iter()
                    .map(|v| match *v {
                        "HOME" => Some(home.clone().into_os_string()),
                        "PYTHONPATH" => Some(pp.clone().into_os_string()),
                        _ => None,
                    })
                    .collect(),
            };
            let facts = run_probe(py, &config).unwrap_or_else(|e| panic!("{label}: {e}"));
            let got: Vec<String> = facts
                .sys_path
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            assert_eq!(got, want, "{label} {flags:?}");
            assert_eq!(facts.flags.no_site, flags.contains(&"-S"), "{label}");
        }
    }
}

// ---------------------------------------------------------------------------
// 4. Shims resolve like the shell
// ---------------------------------------------------------------------------

#[test]
fn shim_ignores_the_project_venv_kolosal_python_uses_it() {
    let venv_py = newest();
    let path_py = oldest();
    common::report(
        "interpreter_trust::shims",
        &[venv_py.clone(), path_py.clone()],
    );
    let tmp = trusted_tempdir();
    let root = tmp.path().canonicalize().unwrap();
    let cache = root.join("cache");
    let shims = root.join("shims");
    std::fs::create_dir(&shims).unwrap();
    for name in ["python", "python3"] {
        std::os::unix::fs::symlink(common::launcher_bin(), shims.join(name)).unwrap();
    }
    let proj = root.join("proj");
    let venv = proj.join(".venv");
    make_venv(&venv_py.path, &venv);
    write(&proj.join("show.py"), SHOW_EXE);
    let tool = proj.join("tool");
    write(&tool, &format!("#!/usr/bin/env python3\n{SHOW_EXE}"));
    chmod(&tool, 0o755);
    let path_dir = path_py.path.parent().unwrap().to_path_buf();
    let path_exe = format!("{}\n", path_dir.join("python3").display());
    let venv_exe = format!("{}\n", venv.join("bin/python").display());
    let path_var = |first: &[&Path]| {
        let mut v: Vec<PathBuf> = first.iter().map(|p| p.to_path_buf()).collect();
        v.extend([path_dir.clone(), "/usr/bin".into(), "/bin".into()]);
        std::env::join_paths(v).unwrap()
    };
    let go = |program: &Path, path: &OsStr, venv_var: Option<&Path>| {
        let mut c = common::clean_command(program);
        c.env("PATH", path)
            .env("KOLOSAL_CACHE_DIR", &cache)
            .current_dir(&proj);
        if let Some(v) = venv_var {
            c.env("VIRTUAL_ENV", v);
        }
        if program != tool {
            c.arg("show.py");
        }
        let o = run(c);
        assert!(o.status.success(), "{}", common::describe(&o));
        assert!(o.stderr.is_empty(), "{}", common::describe(&o));
        text(&o.stdout)
    };
    let shim_path = path_var(&[&shims]);
    // A `#!/usr/bin/env python3` tool, and `python3`/`python` typed in the
    // project: the next python3 on PATH, never the project's .venv.
    assert_eq!(go(&tool, &shim_path, None), path_exe, "env python3 tool");
    assert_eq!(
        go(&shims.join("python3"), &shim_path, None),
        path_exe,
        "python3 shim"
    );
    // VIRTUAL_ENV alone does not count for a shim; an activated venv (its
    // bin first on PATH) does, because the shell would run it.
    assert_eq!(
        go(&shims.join("python3"), &shim_path, Some(&venv)),
        path_exe,
        "VIRTUAL_ENV without PATH"
    );
    let activated = path_var(&[&venv.join("bin"), &shims]);
    assert_eq!(
        go(&tool, &activated, Some(&venv)),
        format!("{}\n", venv.join("bin/python3").display()),
        "activated venv: its python3, as the shell would run"
    );
    // kolosal-python by its own name keeps the project discovery.
    assert_eq!(
        go(common::launcher_bin(), &shim_path, None),
        venv_exe,
        "kolosal-python"
    );
}
