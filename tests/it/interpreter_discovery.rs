//! Interpreter discovery, pyenv shim resolution, the probe cache and
//! `kolosal info`, against the real interpreters (and the real pyenv) on
//! this machine. Every child gets an explicitly built environment.

use crate::common;

use common::Python;
use kolosal::interpreter::{facts_in, CacheStatus};
use kolosal::interpreter::{ProbeConfig, FACT_ENV_VARS};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Prints what the running interpreter is, as JSON.
const SHOW: &str = r#"import sys, os, json
print(json.dumps({"executable": sys.executable, "prefix": sys.prefix,
                  "version": list(sys.version_info[:3]),
                  "pyenv_version": os.environ.get("PYENV_VERSION")}))
"#;

/// Runs `cmd` with a deadline and a null stdin.
fn run(cmd: Command) -> Output {
    common::run_with_deadline(cmd, Duration::from_secs(60))
}

fn json_of(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what}: failed {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The launcher with a clean environment, PATH set to `path`.
fn launcher(path: &str, cwd: &Path) -> Command {
    let mut c = common::clean_command(common::launcher_bin());
    c.env("PATH", path).current_dir(cwd);
    c
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn make_venv(py: &Python, dir: &Path) {
    let out = run({
        let mut c = py.cmd();
        c.args(["-m", "venv", "--without-pip"]).arg(dir);
        c
    });
    assert!(
        out.status.success(),
        "venv with {}: {}",
        py.label(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// No `.venv` may sit above the temp dir, or the `.venv` cases would be
/// ambiguous.
fn assert_no_stray_dotvenv(dir: &Path) {
    for a in dir.ancestors() {
        assert!(
            !a.join(".venv/bin/python").exists(),
            "{} has a .venv; the test cannot run here",
            a.display()
        );
    }
}

#[test]
fn venv_rules_exec_the_venv_interpreter() {
    let pythons = common::pythons();
    common::report("interpreter_discovery::venv_rules", &pythons);
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = tmp.path().canonicalize().unwrap();
    assert_no_stray_dotvenv(&root);
    let outside = root.join("outside");
    write(&outside.join("show.py"), SHOW);
    let mut venvs = Vec::new();
    for (i, py) in pythons.iter().enumerate() {
        let proj = root.join(format!("proj{i}"));
        let venv = proj.join(".venv");
        make_venv(py, &venv);
        write(&proj.join("a/b/show.py"), SHOW);
        // The venv's own interpreter, run directly: the reference.
        let direct = json_of(
            &run({
                let mut c = common::clean_command(venv.join("bin/python"));
                c.arg(outside.join("show.py")).current_dir(&outside);
                c
            }),
            "direct venv run",
        );
        assert_eq!(direct["prefix"], venv.to_str().unwrap(), "{}", py.label());
        let expect_exe = venv.join("bin/python");

        // VIRTUAL_ENV, from a directory with no .venv above it.
        let mut c = launcher("/usr/bin:/bin", &outside);
        c.env("VIRTUAL_ENV", &venv).arg("show.py");
        let got = json_of(&run(c), "VIRTUAL_ENV");
        assert_eq!(got, direct, "VIRTUAL_ENV with {}", py.label());
        assert_eq!(got["executable"], expect_exe.to_str().unwrap());

        // .venv upward from the script's directory (cwd elsewhere).
        let mut c = launcher("/usr/bin:/bin", &outside);
        c.arg(proj.join("a/b/show.py"));
        let got = json_of(&run(c), ".venv from script dir");
        assert_eq!(got["prefix"], direct["prefix"], "{}", py.label());
        assert_eq!(got["executable"], expect_exe.to_str().unwrap());

        // .venv upward from the cwd (script elsewhere), with options first.
        let mut c = launcher("/usr/bin:/bin", &proj.join("a"));
        c.args(["-B", "-W", "ignore"]).arg(outside.join("show.py"));
        let got = json_of(&run(c), ".venv from cwd");
        assert_eq!(got["prefix"], direct["prefix"], "{}", py.label());
        venvs.push((py.clone(), proj, venv));
    }
    // Precedence: KOLOSAL_PYTHON > VIRTUAL_ENV > .venv.
    if venvs.len() >= 2 {
        let (_, proj_a, venv_a) = &venvs[0];
        let (_, _, venv_b) = &venvs[1];
        let mut c = launcher("/usr/bin:/bin", proj_a);
        c.env("VIRTUAL_ENV", venv_b).arg("a/b/show.py");
        let got = json_of(&run(c), "VIRTUAL_ENV beats .venv");
        assert_eq!(got["prefix"], venv_b.to_str().unwrap());
        let mut c = launcher("/usr/bin:/bin", proj_a);
        c.env("VIRTUAL_ENV", venv_b)
            .env("KOLOSAL_PYTHON", venv_a.join("bin/python"))
            .arg("a/b/show.py");
        let got = json_of(&run(c), "KOLOSAL_PYTHON beats VIRTUAL_ENV");
        assert_eq!(got["prefix"], venv_a.to_str().unwrap());
    }
}

#[test]
fn shim_first_on_path_never_recurses() {
    let pythons = common::pythons();
    common::report("interpreter_discovery::shim_on_path", &pythons);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let shims = root.join("shims");
    let real = root.join("real");
    std::fs::create_dir_all(&shims).unwrap();
    std::fs::create_dir_all(&real).unwrap();
    write(&root.join("show.py"), SHOW);
    let first = &pythons[0];
    let last = &pythons[pythons.len() - 1];
    let versioned = format!("python{}.{}", last.version.0, last.version.1);
    std::os::unix::fs::symlink(common::launcher_bin(), shims.join("python3")).unwrap();
    std::os::unix::fs::symlink(common::launcher_bin(), shims.join(&versioned)).unwrap();
    std::os::unix::fs::symlink(&first.path, real.join("python3")).unwrap();
    std::os::unix::fs::symlink(&last.path, real.join(&versioned)).unwrap();
    let path = format!("{}:{}:/usr/bin:/bin", shims.display(), real.display());

    // Invoked as python3 through the shim: the next python3 on PATH runs,
    // exec'd by its unresolved path.
    let mut c = common::clean_command(shims.join("python3"));
    c.env("PATH", &path).current_dir(&root).arg("show.py");
    let got = json_of(&run(c), "python3 shim");
    assert_eq!(got["executable"], real.join("python3").to_str().unwrap());
    assert_eq!(got["version"][1], first.version.1);

    // Invoked as python3.X: that name is searched, not python3.
    let mut c = common::clean_command(shims.join(&versioned));
    c.env("PATH", &path).current_dir(&root).arg("show.py");
    let got = json_of(&run(c), "versioned shim");
    assert_eq!(got["executable"], real.join(&versioned).to_str().unwrap());
    assert_eq!(got["version"][1], last.version.1);

    // Only kolosal on PATH: one line on stderr, nothing on stdout, 127.
    let mut c = common::clean_command(shims.join("python3"));
    c.env("PATH", shims.as_os_str())
        .current_dir(&root)
        .arg("show.py");
    let out = run(c);
    assert_eq!(out.status.code(), Some(127));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("KOLOSAL_PYTHON"), "{err}");
}

/// Two kolosal installs (two copies of the launcher, two inodes) with both
/// shim directories first on PATH: neither takes the other for a real
/// interpreter, and the real python3 behind them runs.
#[test]
fn two_installs_on_path_never_bounce() {
    let pythons = common::pythons();
    let py = &pythons[pythons.len() - 1];
    common::report(
        "interpreter_discovery::two_installs",
        std::slice::from_ref(py),
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let mut path = String::new();
    for prefix in ["a", "b"] {
        let bin = root.join(prefix).join("bin");
        let shims = root.join(prefix).join("shims");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&shims).unwrap();
        std::fs::copy(common::launcher_bin(), bin.join("kolosal-python")).unwrap();
        std::os::unix::fs::symlink("../bin/kolosal-python", shims.join("python3")).unwrap();
        path.push_str(&format!("{}:", shims.display()));
    }
    let real = root.join("real");
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&py.path, real.join("python3")).unwrap();
    path.push_str(&format!("{}:/usr/bin:/bin", real.display()));
    write(&root.join("show.py"), SHOW);
    let mut c = common::clean_command(root.join("a/shims/python3"));
    c.env("PATH", &path)
        .env("KOLOSAL_CACHE_DIR", root.join("cache"))
        .current_dir(&root)
        .arg("show.py");
    let got = json_of(&run(c), "two installs");
    assert_eq!(got["executable"], real.join("python3").to_str().unwrap());
}

#[test]
fn kolosal_python_variable() {
    let pythons = common::pythons();
    common::report("interpreter_discovery::KOLOSAL_PYTHON", &pythons);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    write(&root.join("show.py"), SHOW);
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for py in &pythons {
        // A path wins over a VIRTUAL_ENV that does not exist and over PATH.
        let mut c = launcher("/usr/bin:/bin", &root);
        c.env("KOLOSAL_PYTHON", &py.path)
            .env("VIRTUAL_ENV", root.join("nope"))
            .arg("show.py");
        let got = json_of(&run(c), "KOLOSAL_PYTHON path");
        assert_eq!(
            got["executable"],
            py.path.to_str().unwrap(),
            "{}",
            py.label()
        );
    }
    // A bare name is looked up on PATH.
    let py = &pythons[pythons.len() - 1];
    std::os::unix::fs::symlink(&py.path, bin.join("my-python")).unwrap();
    let mut c = launcher(&format!("{}:/usr/bin:/bin", bin.display()), &root);
    c.env("KOLOSAL_PYTHON", "my-python").arg("show.py");
    let got = json_of(&run(c), "KOLOSAL_PYTHON name");
    assert_eq!(got["executable"], bin.join("my-python").to_str().unwrap());

    // Pointing at kolosal itself (through a symlink with another name): error.
    std::os::unix::fs::symlink(common::launcher_bin(), bin.join("python3")).unwrap();
    for value in [
        bin.join("python3"),
        common::launcher_bin().to_path_buf(),
        root.join("missing/python3"),
    ] {
        let mut c = launcher("/usr/bin:/bin", &root);
        c.env("KOLOSAL_PYTHON", &value).arg("show.py");
        let out = run(c);
        assert_eq!(out.status.code(), Some(127), "{}", value.display());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("KOLOSAL_PYTHON="), "{err}");
        let expected = if value.starts_with(root.join("missing")) {
            "not an executable file"
        } else {
            "is kolosal itself"
        };
        assert!(err.contains(expected), "{err}");
    }
    // A name that only finds kolosal on PATH: not found, not a loop.
    let mut c = launcher(&bin.display().to_string(), &root);
    c.env("KOLOSAL_PYTHON", "python3").arg("show.py");
    let out = run(c);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found on PATH"));
}

/// A fake PYENV_ROOT whose versions/ are symlinks to the real pyenv
/// versions and whose shims fail loudly when run.
struct FakePyenv {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    work: PathBuf,
    versions: Vec<String>,
}

const LOUD_SHIM: &str = "#!/bin/sh\necho SHIM-RAN >&2\nexit 99\n";

fn fake_pyenv() -> Option<FakePyenv> {
    let real_root =
        PathBuf::from(std::env::var_os("PYENV_ROOT").unwrap_or_else(|| "/root/.pyenv".into()));
    let mut versions: Vec<String> = std::fs::read_dir(real_root.join("versions"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("bin").is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    versions.sort();
    if versions.iter().filter(|v| v.starts_with("3.")).count() < 2 {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let root = base.join("pyenv");
    std::fs::create_dir_all(root.join("versions")).unwrap();
    std::fs::create_dir_all(root.join("shims")).unwrap();
    for v in &versions {
        std::os::unix::fs::symlink(
            real_root.join("versions").join(v),
            root.join("versions").join(v),
        )
        .unwrap();
    }
    for name in ["python", "python3"] {
        let shim = root.join("shims").join(name);
        write(&shim, LOUD_SHIM);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let work = base.join("work");
    write(&work.join("deep/er/show.py"), SHOW);
    Some(FakePyenv {
        _tmp: tmp,
        root,
        work,
        versions,
    })
}

#[test]
fn pyenv_shims_resolved_like_pyenv() {
    let pythons = common::pythons();
    common::report("interpreter_discovery::pyenv", &pythons);
    let Some(fake) = fake_pyenv() else {
        common::note("[interpreter_discovery::pyenv] SKIPPED: no pyenv with two 3.x versions here");
        return;
    };
    let real_pyenv = PathBuf::from("/root/.pyenv/libexec/pyenv");
    let have_pyenv = real_pyenv.is_file();
    let threes: Vec<&String> = fake
        .versions
        .iter()
        .filter(|v| v.starts_with("3."))
        .collect();
    let minor_of = |v: &str| {
        v.rsplit_once('.')
            .map(|(a, _)| a.to_string())
            .unwrap_or_default()
    };
    let a = threes[0].clone();
    let b = threes[threes.len() - 1].clone();
    let two = fake.versions.iter().find(|v| v.starts_with("2.")).cloned();
    let deep = fake.work.join("deep/er");

    // (label, PYENV_VERSION, .python-version in work/, global version file, PYENV_DIR)
    type Case = (
        &'static str,
        Option<String>,
        Option<String>,
        Option<String>,
        bool,
    );
    let mut cases: Vec<Case> = vec![
        ("exact", Some(a.clone()), None, None, false),
        ("prefix", Some(minor_of(&b)), None, None, false),
        ("major only", Some("3".into()), None, None, false),
        (
            "python- prefix",
            Some(format!("python-{}", minor_of(&a))),
            None,
            None,
            false,
        ),
        ("t suffix", Some(format!("{b}t")), None, None, false),
        ("system", Some("system".into()), None, None, false),
        ("not installed", Some("9.9".into()), None, None, false),
        (
            "list",
            Some(format!("9.9:{}", minor_of(&a))),
            None,
            None,
            false,
        ),
        (
            "local file",
            None,
            Some(format!("# pinned\r\n  {}  extra\r\n", minor_of(&a))),
            None,
            false,
        ),
        (
            "global file",
            None,
            None,
            Some(format!("{}\n", minor_of(&b))),
            false,
        ),
        ("PYENV_DIR", None, Some(format!("{a}\n")), None, true),
        ("nothing set", None, None, None, false),
    ];
    if let Some(two) = &two {
        cases.push(("lacks python3", Some(two.clone()), None, None, false));
        cases.push((
            "lacks then has",
            Some(format!("{two}:{}", minor_of(&a))),
            None,
            None,
            false,
        ));
    }
    let path = format!("{}:/usr/bin:/bin", fake.root.join("shims").display());
    let mut compared = 0;
    for (label, pv, local, global, use_dir) in &cases {
        let local_file = fake.work.join(".python-version");
        let global_file = fake.root.join("version");
        let _ = std::fs::remove_file(&local_file);
        let _ = std::fs::remove_file(&global_file);
        if let Some(t) = local {
            write(&local_file, t);
        }
        if let Some(t) = global {
            write(&global_file, t);
        }
        let setup = |c: &mut Command| {
            c.env("PATH", &path).env("PYENV_ROOT", &fake.root);
            if let Some(v) = pv {
                c.env("PYENV_VERSION", v);
            }
            if *use_dir {
                // The version file is found from PYENV_DIR, not from the cwd.
                c.env("PYENV_DIR", &fake.work).current_dir(&fake.root);
            } else {
                c.current_dir(&deep);
            }
        };
        let mut c = common::clean_command(common::launcher_bin());
        setup(&mut c);
        c.arg(deep.join("show.py"));
        let out = run(c);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("SHIM-RAN"), "{label}: the shim ran: {err}");
        let got = json_of(&out, label);
        let exe = got["executable"].as_str().unwrap_or_default().to_string();
        assert!(
            exe.starts_with(fake.root.join("versions").to_str().unwrap())
                || exe.starts_with("/usr/bin/"),
            "{label}: {exe}"
        );
        if have_pyenv {
            let mut c = common::clean_command(&real_pyenv);
            setup(&mut c);
            c.args(["exec", "python3"]).arg(deep.join("show.py"));
            let want = json_of(&run(c), &format!("real pyenv, {label}"));
            assert_eq!(got["executable"], want["executable"], "{label}");
            assert_eq!(got["pyenv_version"], want["pyenv_version"], "{label}");
            compared += 1;
        }
    }
    common::note(&format!(
        "[interpreter_discovery::pyenv] {} cases; {compared} compared with the real pyenv; versions {:?}",
        cases.len(),
        fake.versions
    ));

    // What cannot be mirrored (a glob in the version) runs the shim itself.
    let mut c = common::clean_command(common::launcher_bin());
    c.env("PATH", &path)
        .env("PYENV_ROOT", &fake.root)
        .env("PYENV_VERSION", "3.*")
        .current_dir(&deep)
        .arg("show.py");
    let out = run(c);
    assert_eq!(out.status.code(), Some(99));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SHIM-RAN"));
}

fn config_without_env() -> ProbeConfig {
    ProbeConfig {
        env: FACT_ENV_VARS.iter().map(|_| None).collect(),
        ..Default::default()
    }
}

#[test]
fn probe_cache_hits_rewrites_and_never_fails() {
    let pythons = common::pythons();
    common::report("interpreter_discovery::probe_cache", &pythons);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("probe");
    std::fs::create_dir_all(&dir).unwrap();
    let config = config_without_env();
    for py in &pythons {
        let (first, rep) = facts_in(Some(&dir), &py.path, &config).unwrap();
        assert_eq!(
            rep.status,
            CacheStatus::Written { previous: None },
            "{}",
            py.label()
        );
        assert_eq!(
            (first.version[0], first.version[1], first.version[2]),
            py.version
        );
        let file = rep.file.clone().unwrap();
        assert!(file.starts_with(&dir));

        let (second, rep) = facts_in(Some(&dir), &py.path, &config).unwrap();
        assert_eq!(rep.status, CacheStatus::Hit);
        assert_eq!(second, first);

        // Served from the file: an edit to the stored facts shows up.
        let mut doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        doc["facts"]["platform"] = Value::from("edited-in-cache");
        std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
        let (third, rep) = facts_in(Some(&dir), &py.path, &config).unwrap();
        assert_eq!(rep.status, CacheStatus::Hit);
        assert_eq!(third.platform, "edited-in-cache");

        // Corrupt, truncated, foreign, wrong key: re-probed and rewritten.
        let good = std::fs::read(&file).unwrap();
        let mut foreign = doc.clone();
        foreign["format"] = Value::from("someone-else-v9");
        let mut wrong_key = doc.clone();
        wrong_key["key"][0] = Value::from("exe=s:/somewhere/else");
        let bads: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"\x00\xffnot json".to_vec()),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("empty", Vec::new()),
            ("foreign", serde_json::to_vec(&foreign).unwrap()),
            ("wrong key", serde_json::to_vec(&wrong_key).unwrap()),
        ];
        for (what, bytes) in bads {
            std::fs::write(&file, bytes).unwrap();
            let (again, rep) = facts_in(Some(&dir), &py.path, &config).unwrap();
            assert!(
                matches!(rep.status, CacheStatus::Written { previous: Some(_) }),
                "{what}: {:?}",
                rep.status
            );
            assert_eq!(again, first, "{what}");
            let (_, rep) = facts_in(Some(&dir), &py.path, &config).unwrap();
            assert_eq!(rep.status, CacheStatus::Hit, "{what} was not rewritten");
        }

        // A different config is a different entry.
        let mut isolated = config.clone();
        isolated.isolated = true;
        let (iso, rep) = facts_in(Some(&dir), &py.path, &isolated).unwrap();
        assert!(matches!(rep.status, CacheStatus::Written { .. }));
        assert!(iso.flags.isolated);
        assert_ne!(rep.file.unwrap(), file);
    }

    // A cache "directory" that is a file: facts still come back.
    let not_dir = tmp.path().join("a-file");
    std::fs::write(&not_dir, b"x").unwrap();
    let py = &pythons[0];
    let (facts, rep) = facts_in(Some(&not_dir), &py.path, &config).unwrap();
    assert!(
        matches!(rep.status, CacheStatus::NotCached(_)),
        "{:?}",
        rep.status
    );
    assert_eq!(facts.version[1], py.version.1);
}

#[test]
fn probe_cache_notices_new_pth_files() {
    let pythons = common::pythons();
    common::report("interpreter_discovery::probe_cache_pth", &pythons);
    let py = &pythons[pythons.len() - 1];
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let venv = root.join("venv");
    make_venv(py, &venv);
    let dir = root.join("cache");
    std::fs::create_dir_all(&dir).unwrap();
    let config = config_without_env();
    let vpy = venv.join("bin/python");
    let (before, _) = facts_in(Some(&dir), &vpy, &config).unwrap();
    assert_eq!(before.prefix, venv);
    let site = before.site_packages[0].clone();
    let extra = root.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    write(&site.join("extra.pth"), &format!("{}\n", extra.display()));
    let (after, rep) = facts_in(Some(&dir), &vpy, &config).unwrap();
    assert!(
        matches!(rep.status, CacheStatus::Written { .. }),
        "{:?}",
        rep.status
    );
    assert!(after.sys_path.contains(&extra), "{:?}", after.sys_path);
    // The reference: the interpreter itself sees the .pth entry.
    let out = run({
        let mut c = common::clean_command(&vpy);
        c.args(["-c", "import sys; print(sys.path[1:])"]);
        c
    });
    assert!(String::from_utf8_lossy(&out.stdout).contains(extra.to_str().unwrap()));
}

#[test]
fn info_reports_rule_facts_cache_and_knobs() {
    let pythons = common::pythons();
    common::report("interpreter_discovery::info", &pythons);
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let cache = root.join("cache");
    let info = |args: &[&std::ffi::OsStr], extra: &[(&str, &std::ffi::OsStr)]| -> Output {
        let mut c = common::clean_command(common::kolosal_bin());
        c.env("PATH", "/usr/bin:/bin")
            .env("KOLOSAL_CACHE_DIR", &cache)
            .env("KOLOSAL_WORKERS", "3")
            .current_dir(&root)
            .arg("info")
            .args(args);
        for (k, v) in extra {
            c.env(k, v);
        }
        run(c)
    };
    for py in &pythons {
        let args = [
            std::ffi::OsStr::new("--json"),
            std::ffi::OsStr::new("--python"),
            py.path.as_os_str(),
        ];
        let doc = json_of(&info(&args, &[]), "kolosal info");
        assert_eq!(doc["interpreter"]["rule"], "explicit");
        assert_eq!(doc["interpreter"]["path"], py.path.to_str().unwrap());
        let f = &doc["facts"];
        let (a, b, c) = py.version;
        assert_eq!(f["version"], format!("{a}.{b}.{c}"));
        // The reference: the interpreter's own answer, under the same env.
        let out = run({
            let mut cmd = py.cmd();
            cmd.env("PATH", "/usr/bin:/bin").current_dir(&root).args([
                "-c",
                "import sys, json, importlib.util as u; print(json.dumps([sys.path[1:], sys.implementation.cache_tag, u.MAGIC_NUMBER.hex(), sys.prefix, len(sys.builtin_module_names)]))",
            ]);
            cmd
        });
        let want: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(f["sys_path"], want[0], "{}", py.label());
        assert_eq!(f["cache_tag"], want[1]);
        assert_eq!(f["magic"], want[2]);
        assert_eq!(f["prefix"], want[3]);
        assert_eq!(f["builtin_module_count"], want[4]);
        assert_eq!(doc["knobs"]["KOLOSAL_WORKERS"], "3");
        assert_eq!(doc["knobs"]["KOLOSAL_PYTHON"], Value::Null);
        assert_eq!(doc["probe_cache"]["status"], "written");
        let again = json_of(&info(&args, &[]), "kolosal info again");
        assert_eq!(again["probe_cache"]["status"], "hit");
        assert_eq!(again["probe_cache"]["file"], doc["probe_cache"]["file"]);
        assert_eq!(again["facts"], doc["facts"]);
    }
    // The rule shown follows discovery: KOLOSAL_PYTHON, then a .venv above SCRIPT.
    let py = &pythons[0];
    let doc = json_of(
        &info(
            &[std::ffi::OsStr::new("--json")],
            &[("KOLOSAL_PYTHON", py.path.as_os_str())],
        ),
        "info env",
    );
    assert_eq!(doc["interpreter"]["rule"], "env");
    make_venv(py, &root.join("proj/.venv"));
    write(&root.join("proj/src/main.py"), "");
    let doc = json_of(
        &info(
            &[
                std::ffi::OsStr::new("--json"),
                std::ffi::OsStr::new("proj/src/main.py"),
            ],
            &[],
        ),
        "info script",
    );
    assert_eq!(doc["interpreter"]["rule"], "dotvenv");
    assert_eq!(
        doc["facts"]["prefix"],
        root.join("proj/.venv").to_str().unwrap()
    );
    // A cache dir that is a file does not fail `kolosal info`.
    std::fs::write(root.join("cache-file"), b"").unwrap();
    let mut c = common::clean_command(common::kolosal_bin());
    c.env("PATH", "/usr/bin:/bin")
        .env("KOLOSAL_CACHE_DIR", root.join("cache-file"))
        .args(["info", "--json", "--python"])
        .arg(&py.path);
    let doc = json_of(&run(c), "info with a file as cache dir");
    assert_eq!(doc["probe_cache"]["status"], "not-cached");
    assert!(doc["facts"]["version"].is_string());
    // Human output names the rule and the facts.
    let mut c = common::clean_command(common::kolosal_bin());
    c.env("PATH", "/usr/bin:/bin")
        .env("KOLOSAL_CACHE_DIR", &cache)
        .args(["info", "--python"])
        .arg(&py.path);
    let out = run(c);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("rule:      explicit"), "{text}");
    assert!(text.contains("KOLOSAL_CACHE_DIR"), "{text}");
    let _ = std::io::stderr().flush();
}
