//! Shared helpers for the integration tests: which real interpreters to run
//! against, and child processes with an explicit environment.
//!
//! This machine exports `PYTHONDONTWRITEBYTECODE=1` and `PYTHONUNBUFFERED=1`;
//! every child here gets an environment built from scratch instead.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One real interpreter under test.
#[derive(Debug, Clone)]
pub struct Python {
    /// Executable path.
    pub path: PathBuf,
    /// `sys.version_info[:3]`.
    pub version: (u32, u32, u32),
}

impl Python {
    /// "3.11.7 (/root/.pyenv/versions/3.11.7/bin/python)".
    pub fn label(&self) -> String {
        format!(
            "{}.{}.{} ({})",
            self.version.0,
            self.version.1,
            self.version.2,
            self.path.display()
        )
    }

    /// `sys.implementation.cache_tag`, as the interpreter reports it.
    pub fn cache_tag(&self) -> String {
        let out = self
            .cmd()
            .args(["-c", "import sys; print(sys.implementation.cache_tag)"])
            .output()
            .expect("start the interpreter for its cache tag");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A directory to put on `PATH` so that `python3` and `python` find
    /// this interpreter: its own directory when its `python3` is this very
    /// file (pyenv, Debian), else `scratch/bin` with both names symlinked
    /// to it (3.14/3.15 are installed as `python3.X-host` only).
    pub fn path_dir(&self, scratch: &Path) -> PathBuf {
        let own = self.path.parent().expect("interpreter in a directory");
        let same =
            |p: PathBuf| std::fs::canonicalize(p).ok() == std::fs::canonicalize(&self.path).ok();
        if same(own.join("python3")) {
            return own.to_path_buf();
        }
        let dir = scratch.join("bin");
        std::fs::create_dir_all(&dir).expect("create the PATH directory");
        for name in ["python3", "python"] {
            let link = dir.join(name);
            if !same(link.clone()) {
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&self.path, &link).expect("symlink the interpreter");
            }
        }
        dir
    }

    /// A command running this interpreter with a clean environment.
    pub fn cmd(&self) -> Command {
        clean_command(&self.path)
    }

    /// This interpreter's standard library directory (`sysconfig`'s `stdlib`).
    pub fn stdlib_dir(&self) -> PathBuf {
        let out = self
            .cmd()
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
            ])
            .output()
            .expect("start the interpreter for its stdlib dir");
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
    }
}

/// A command for `program` whose environment holds only PATH, HOME, LANG and
/// TMPDIR: no PYTHON* variable leaks in from the machine.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for keep in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("LANG", "C.UTF-8");
    cmd
}

/// Variables a package installer needs to reach PyPI from this machine
/// (certificates, proxies, pip/uv settings). None of them changes what
/// Python imports, so tests may pass them to `pip`/`uv` children.
pub const NETWORK_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "PIP_CERT",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "UV_INDEX_URL",
    "UV_NATIVE_TLS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// [`clean_command`] plus [`NETWORK_VARS`]: for `pip install` / `uv` runs.
pub fn network_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = clean_command(program);
    for name in NETWORK_VARS {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd
}

/// Where `shared/tools/new-pythons.sh` installs CPython 3.14 and 3.15 by
/// default; the harness looks there when `KOLOSAL_TEST_EXTRA_PYTHONS` is unset.
pub const NEW_PYTHONS: &[&str] = &[
    "/opt/new-pythons/usr/bin/python3.14-host",
    "/opt/new-pythons/usr/bin/python3.15-host",
];

/// True in CI (`CI=true`) or with the heavy suites on: then a missing
/// interpreter the suites must run on is a failure, not a skip.
pub fn strict() -> bool {
    heavy() || std::env::var_os("CI").is_some_and(|v| v == "true" || v == "1")
}

/// The interpreters `.ci/run` installs beside pyenv's (CPython 3.14 and
/// 3.15, from `shared/tools/new-pythons.sh`): `KOLOSAL_TEST_EXTRA_PYTHONS`
/// (colon-separated paths), else [`NEW_PYTHONS`] where present. In CI
/// ([`strict`]) every listed path must be an interpreter that starts, and
/// the list must not be empty.
pub fn extra_pythons() -> Vec<PathBuf> {
    let listed: Vec<PathBuf> = match std::env::var_os("KOLOSAL_TEST_EXTRA_PYTHONS") {
        Some(list) => std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None if strict() => NEW_PYTHONS.iter().map(PathBuf::from).collect(),
        None => NEW_PYTHONS
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .collect(),
    };
    if strict() {
        assert!(
            !listed.is_empty(),
            "KOLOSAL_TEST_EXTRA_PYTHONS is empty: CI must test CPython 3.14 and 3.15 \
             (.ci/run installs them with shared/tools/new-pythons.sh)"
        );
        for p in &listed {
            let starts = clean_command(p)
                .args(["-c", "pass"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                starts,
                "{}: listed in KOLOSAL_TEST_EXTRA_PYTHONS (or the default) but does not start; \
                 run shared/tools/new-pythons.sh",
                p.display()
            );
        }
    }
    listed
}

/// Every CPython >= `min` found on this machine: pyenv's versions,
/// /usr/bin/python3.* and [`extra_pythons`] (3.14, 3.15);
/// `KOLOSAL_TEST_PYTHONS` (colon-separated paths) replaces the search.
pub fn pythons_at_least(min: (u32, u32)) -> Vec<Python> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(list) = std::env::var_os("KOLOSAL_TEST_PYTHONS") {
        candidates.extend(std::env::split_paths(&list));
    } else {
        candidates.extend(extra_pythons());
        let root = std::env::var_os("PYENV_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
        if let Ok(rd) = std::fs::read_dir(root.join("versions")) {
            let mut dirs: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            dirs.sort();
            candidates.extend(dirs.into_iter().map(|d| d.join("bin/python3")));
        }
        for minor in 6..=20 {
            candidates.push(PathBuf::from(format!("/usr/bin/python3.{minor}")));
        }
    }
    let mut out: Vec<Python> = candidates
        .into_iter()
        .filter(|p| p.is_file())
        .filter_map(|p| {
            let o = clean_command(&p)
                .args(["-c", "import sys;print(*sys.version_info[:3])"])
                .output()
                .ok()?;
            let s = String::from_utf8(o.stdout).ok()?;
            let v: Vec<u32> = s
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (v.len() == 3 && (v[0], v[1]) >= min).then(|| Python {
                path: p,
                version: (v[0], v[1], v[2]),
            })
        })
        .collect();
    out.sort_by(|a, b| a.version.cmp(&b.version).then(a.path.cmp(&b.path)));
    out
}

/// Every CPython >= 3.7 found (the differential suites' default).
pub fn pythons() -> Vec<Python> {
    pythons_at_least((3, 7))
}

/// Prints, past the test harness's capture, which interpreters a suite ran on.
/// Panics when there are none: a differential suite that compared nothing
/// must not pass.
pub fn report(suite: &str, pythons: &[Python]) {
    assert!(
        !pythons.is_empty(),
        "{suite}: no CPython found to test against"
    );
    let labels: Vec<String> = pythons.iter().map(|p| p.label()).collect();
    let _ = writeln!(
        std::io::stderr(),
        "[{suite}] ran on {} interpreter(s): {}",
        pythons.len(),
        labels.join(", ")
    );
}

/// Prints a free-form line past the capture (figures, counts).
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// True when the heavy scope is asked for: the `heavy` feature (`cargo test
/// --features heavy`, which `.ci/run` uses) or `KOLOSAL_TEST_HEAVY=1`. Suites
/// that only exist in that scope (PyPI installs) are `#[ignore]`d without
/// the feature; the others widen what they cover (every interpreter
/// instead of the oldest and newest, whole standard libraries).
pub fn heavy() -> bool {
    cfg!(feature = "heavy") || std::env::var_os("KOLOSAL_TEST_HEAVY").is_some_and(|v| v == "1")
}

/// Path of the `kolosal` binary built for this test run.
pub fn kolosal_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kolosal"))
}

/// Path of the `kolosal-python` binary built for this test run.
pub fn launcher_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kolosal-python"))
}

/// importlib's own verdict on the pycs of `sources`, from one interpreter
/// process run with `flags` (so `sys.pycache_prefix` and the optimisation
/// level are the run's): `OK <header flags> <src>`, `MISSING <src> <cfile>`
/// or `BAD <src> <why>` per source. The checks are the loader's own
/// (`_classify_pyc`, `_validate_*`), then the body is unmarshalled.
pub const PYC_VERDICT: &str = r#"
import sys, os, marshal, importlib.util, importlib._bootstrap_external as be
opt = "" if sys.flags.optimize == 0 else sys.flags.optimize
for src in sys.argv[1:]:
    cfile = importlib.util.cache_from_source(src, optimization=opt)
    try:
        with open(cfile, "rb") as f:
            data = f.read()
    except OSError:
        print("MISSING", src, cfile)
        continue
    try:
        flags = be._classify_pyc(data, src, {})
        if flags & 1:
            with open(src, "rb") as f:
                be._validate_hash_pyc(data, importlib.util.source_hash(f.read()), src, {})
        else:
            st = os.stat(src)
            # SourceLoader.get_code passes int(st_mtime)
            be._validate_timestamp_pyc(data, int(st.st_mtime), st.st_size, src, {})
        marshal.loads(data[16:])
        print("OK", flags, src)
    except Exception as e:
        print("BAD", src, type(e).__name__, e)
"#;

/// Runs [`PYC_VERDICT`] for `sources` with `flags` in `cwd`; one line per
/// source. Panics when the interpreter fails.
pub fn pyc_verdicts(python: &Path, cwd: &Path, flags: &[&str], sources: &[PathBuf]) -> Vec<String> {
    let out = clean_command(python)
        .current_dir(cwd)
        .args(flags)
        .args(["-c", PYC_VERDICT])
        .args(sources)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("start the interpreter for the pyc verdicts");
    assert!(
        out.status.success(),
        "pyc verdicts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A process's exit status and both output streams, for assertion messages.
pub fn describe(o: &std::process::Output) -> String {
    use std::os::unix::process::ExitStatusExt;
    format!(
        "status {:?} (signal {:?})\nstdout: {}\nstderr: {}",
        o.status.code(),
        o.status.signal(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Waits until no background compile (`launch::background`) is pending for
/// any launch recorded under the kolosal cache `cache`: each holds the
/// `<digest>.bg` lock next to its manifest from before the launch execs
/// until the compile is over.
pub fn wait_background(cache: &Path) {
    use nix::fcntl::{Flock, FlockArg};
    let Ok(rd) = std::fs::read_dir(cache.join("manifests")) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        // A learner (`.learn`) may still be compiling and re-stamping the
        // manifest after the program exited, like a background run (`.bg`).
        if e.path()
            .extension()
            .is_some_and(|x| x == "bg" || x == "learn")
        {
            if let Ok(f) = std::fs::File::open(e.path()) {
                drop(Flock::lock(f, FlockArg::LockShared));
            }
        }
    }
}

/// [`wait_background`] for the kolosal cache a command would use:
/// `KOLOSAL_CACHE_DIR`, else `$XDG_CACHE_HOME/kolosal`, else
/// `$HOME/.cache/kolosal`, as the command's environment sets them.
pub fn wait_background_of(cmd: &Command) {
    let get = |name: &str| {
        cmd.get_envs()
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.map(PathBuf::from))
    };
    let cache = get("KOLOSAL_CACHE_DIR")
        .or_else(|| get("XDG_CACHE_HOME").map(|d| d.join("kolosal")))
        .or_else(|| get("HOME").map(|d| d.join(".cache/kolosal")));
    if let Some(cache) = cache {
        wait_background(&cache);
    }
}

/// A venv of `py` at `dir` with `packages` installed from PyPI and no pycs
/// written by the installer; returns its `bin/python`. The venv is made with
/// `-m venv --without-pip` (Debian's CPython 3.14/3.15 have no ensurepip
/// wheels) and filled by `uv pip install --python` (uv writes no bytecode
/// unless asked). Without uv on PATH, pip is bootstrapped into the venv
/// (`ensurepip`) and runs with `--no-compile`.
pub fn venv_with(py: &Python, dir: &Path, packages: &[&str]) -> PathBuf {
    let out = py
        .cmd()
        .args(["-m", "venv", "--without-pip"])
        .arg(dir)
        .output()
        .expect("start python -m venv");
    assert!(
        out.status.success(),
        "{}: venv: {}",
        py.label(),
        describe(&out)
    );
    let vpy = dir.join("bin/python");
    if packages.is_empty() {
        return vpy;
    }
    let uv = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("uv"))
            .find(|p| p.is_file())
    });
    let out = match uv {
        Some(uv) => network_command(uv)
            .args(["pip", "install", "-q", "--python"])
            .arg(&vpy)
            .args(packages)
            .output()
            .expect("start uv"),
        None => {
            assert!(
                !strict(),
                "uv is not on PATH: .ci/run installs it (pip install uv)"
            );
            let boot = clean_command(&vpy)
                .args(["-m", "ensurepip", "-q"])
                .output()
                .expect("start ensurepip");
            assert!(
                boot.status.success(),
                "{}: ensurepip (install uv: pip install uv): {}",
                py.label(),
                describe(&boot)
            );
            network_command(&vpy)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-compile",
                    "--disable-pip-version-check",
                ])
                .args(packages)
                .output()
                .expect("start pip")
        }
    };
    assert!(
        out.status.success(),
        "{}: installing {packages:?}: {}",
        py.label(),
        describe(&out)
    );
    vpy
}

/// The `purelib` directory (site-packages) of the interpreter `python`
/// (a venv's `bin/python`), as its own `sysconfig` says.
pub fn purelib(python: &Path) -> PathBuf {
    let out = ok(
        clean_command(python)
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ])
            .output()
            .expect("start python for its purelib"),
        "purelib",
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
}

/// Asserts that `o` succeeded (saying `what` and the output if not) and
/// hands it back.
pub fn ok(o: std::process::Output, what: &str) -> std::process::Output {
    assert!(o.status.success(), "{what}: {}", describe(&o));
    o
}

/// `# code object from <path>` lines of a `python -v` run's stderr whose
/// path ends with `ext`: `.py` for modules compiled from source, `.pyc`
/// for modules loaded from a pyc.
fn code_objects_from(verbose_stderr: &[u8], ext: &str) -> Vec<String> {
    String::from_utf8_lossy(verbose_stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("# code object from "))
        .map(|rest| rest.trim_matches('\'').to_string())
        .filter(|p| p.ends_with(ext))
        .collect()
}

/// The modules a `python -v` run compiled from source.
pub fn source_compiles(verbose_stderr: &[u8]) -> Vec<String> {
    code_objects_from(verbose_stderr, ".py")
}

/// The pyc paths a `python -v` run loaded.
pub fn pyc_loads(verbose_stderr: &[u8]) -> Vec<String> {
    code_objects_from(verbose_stderr, ".pyc")
}

/// Runs `cmd` with a null stdin and a deadline, so a launcher that execs
/// itself forever (or hangs) fails the test instead of hanging it; then
/// waits for the background work the launch left.
pub fn run_with_deadline(mut cmd: Command, deadline: std::time::Duration) -> std::process::Output {
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let until = std::time::Instant::now() + deadline;
    loop {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            wait_background_of(&cmd);
            return out;
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            panic!("child did not finish in {deadline:?} (exec loop?): {cmd:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
