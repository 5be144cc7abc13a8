//! Differential tests of `kolosal::pyc` against the real interpreters:
//! cache paths against `importlib.util.cache_from_source`/`source_from_cache`,
//! source hashes against `importlib.util.source_hash`, and verdicts against
//! what `SourceFileLoader.get_code` actually does (did it unmarshal the pyc
//! or compile the source?) under each `--check-hash-based-pycs` mode.
//!
//! Each interpreter answers a whole batch of cases in one process.

use crate::common;

use common::Python;
use kolosal::interpreter::FACT_ENV_VARS;
use kolosal::interpreter::{run_probe, ProbeConfig};
use kolosal::pyc::{self, HashCheckMode, PycRules, Verdict};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The pyc rules of `py`, from its own probe (clean environment: no
/// PYTHONPYCACHEPREFIX or other variable of this machine leaks in).
fn rules_of(py: &Python) -> PycRules {
    let config = ProbeConfig {
        env: vec![None; FACT_ENV_VARS.len()],
        ..Default::default()
    };
    let facts = run_probe(&py.path, &config).unwrap_or_else(|e| panic!("{}: {e}", py.label()));
    PycRules::from_facts(&facts)
        .unwrap_or_else(|| panic!("{}: bad magic {:?}", py.label(), facts.magic))
}

/// Runs `script` in `py` (clean env, extra `flags` before `-c`), feeding
/// `input` as JSON on stdin; returns the JSON printed on stdout.
fn run_json(py: &Python, flags: &[&str], cwd: &Path, script: &str, input: &Value) -> Value {
    let mut child = py
        .cmd()
        .args(flags)
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", py.label()));
    let data = serde_json::to_vec(input).unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} {flags:?} failed: {}",
        py.label(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: bad JSON ({e}): {}",
            py.label(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

fn path_str(p: Option<PathBuf>) -> Option<String> {
    p.map(|p| p.to_str().expect("test paths are UTF-8").to_owned())
}

// ---------------------------------------------------------------------------
// Cache paths
// ---------------------------------------------------------------------------

const CACHE_PATH_SCRIPT: &str = r#"
import sys, os, json, importlib.util as u
req = json.load(sys.stdin)
out = []
def call(f, *a, **k):
    try:
        return f(*a, **k)
    except (ValueError, NotImplementedError, IndexError):
        return None
for cwd in req["cwds"]:
    os.chdir(cwd)
    here = os.getcwd()
    for src, opt, prefix in req["cases"]:
        sys.pycache_prefix = prefix
        pyc = call(u.cache_from_source, src, optimization=('' if opt == 0 else opt))
        back = call(u.source_from_cache, pyc) if pyc is not None else None
        out.append([here, pyc, back])
    for pyc, prefix in req["pycs"]:
        sys.pycache_prefix = prefix
        out.append([here, call(u.source_from_cache, pyc)])
json.dump(out, sys.stdout)
"#;

#[test]
fn cache_paths_match_importlib() {
    let pythons = common::pythons();
    common::report("pyc_differential::cache_paths", &pythons);
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let odd_cwd = base.join("sp ace/ünï");
    std::fs::create_dir_all(&odd_cwd).unwrap();
    let cwds = [base.to_str().unwrap(), "/", odd_cwd.to_str().unwrap()];

    let sources = [
        "x.py",
        "./x.py",
        "./a/x.py",
        "././a/x.py",
        "a/../b.py",
        "a/./b.py",
        "a//b.py",
        "x.tar.py",
        "x",
        "x.",
        ".hidden",
        "a/.py",
        "a/.b.py",
        "a/b.c.d",
        "a/",
        "",
        ".",
        "..",
        "../up.py",
        "/abs/dir/x.py",
        "/abs/dir/../y.py",
        "/abs/./dir/x.py",
        "/x.py",
        "//x.py",
        "//abs//x.py",
        "dir with space/m o d.py",
        "ünïcode/模块.py",
        "trailing dot./x.py",
    ];
    let prefixes: [Option<&str>; 8] = [
        None,
        Some("/tmp/pfx"),
        Some("/tmp/pfx/"),
        Some("/"),
        Some("rel"),
        Some("./rel/"),
        Some("../up"),
        Some("/tmp/sp ace/ü"),
    ];
    let mut cases = Vec::new();
    for src in sources {
        for opt in 0..=3u32 {
            for prefix in prefixes {
                cases.push((src, opt, prefix));
            }
        }
    }

    let mut checked = 0usize;
    let mut failures = Vec::new();
    for py in &pythons {
        let rules = rules_of(py);
        let tag = rules.cache_tag.clone().expect("CPython has a cache tag");
        let pyc_names = [
            format!("a/__pycache__/b.{tag}.pyc"),
            format!("a/__pycache__/b.{tag}.opt-2.pyc"),
            format!("a/__pycache__/b.{tag}.opt-.pyc"),
            format!("a/__pycache__/b.{tag}.opt-x_y.pyc"),
            format!("a/__pycache__/b.{tag}.xpt-1.pyc"),
            format!("a/b.{tag}.pyc"),
            "__pycache__/b.pyc".to_owned(),
            format!("__pycache__/b.c.{tag}.opt-1.pyc"),
            format!("/tmp/pfx/abs/b.{tag}.pyc"),
            format!("/tmp/pfx/abs/__pycache__/b.{tag}.pyc"),
            format!("/tmp/pfxx/abs/b.{tag}.pyc"),
            format!("/tmp/pfx/b.{tag}.opt-1.pyc"),
            format!("rel/abs/b.{tag}.pyc"),
            format!("/b.{tag}.pyc"),
        ];
        let pycs: Vec<(&str, Option<&str>)> = pyc_names
            .iter()
            .flat_map(|p| prefixes.iter().map(move |pre| (p.as_str(), *pre)))
            .collect();
        let input = json!({ "cwds": cwds, "cases": cases, "pycs": pycs });
        let got = run_json(py, &["-I"], &base, CACHE_PATH_SCRIPT, &input);
        let rows = got.as_array().unwrap();
        assert_eq!(
            rows.len(),
            cwds.len() * (cases.len() + pycs.len()),
            "{}",
            py.label()
        );
        let mut rows = rows.iter();
        for _ in cwds {
            for (src, opt, prefix) in &cases {
                let row = rows.next().unwrap().as_array().unwrap();
                let here = Path::new(row[0].as_str().unwrap());
                let (want_pyc, want_back) = (opt_str(&row[1]), opt_str(&row[2]));
                let prefix = prefix.map(Path::new);
                let ours = pyc::cache_from_source(Path::new(src), &rules, *opt, prefix, here);
                // CPython leaves a relative prefix relative to its cwd; ours
                // names the same file absolutely.
                let want_abs = want_pyc.map(|w| {
                    if prefix.is_some() && rules.supports_pycache_prefix() && !w.starts_with('/') {
                        here.join(w).to_str().unwrap().to_owned()
                    } else {
                        w.to_owned()
                    }
                });
                checked += 1;
                if path_str(ours) != want_abs {
                    failures.push(format!(
                        "{} cwd={} cache_from_source({src:?}, opt={opt}, prefix={prefix:?}): ours {:?}, importlib {want_abs:?}",
                        py.label(),
                        here.display(),
                        path_str(pyc::cache_from_source(Path::new(src), &rules, *opt, prefix, here))
                    ));
                }
                if let Some(w) = want_pyc {
                    let back = path_str(pyc::source_from_cache(Path::new(w), &rules, prefix));
                    checked += 1;
                    if back.as_deref() != want_back {
                        failures.push(format!(
                            "{} source_from_cache({w:?}, prefix={prefix:?}): ours {back:?}, importlib {want_back:?}",
                            py.label()
                        ));
                    }
                }
            }
            for (pyc_path, prefix) in &pycs {
                let row = rows.next().unwrap().as_array().unwrap();
                let want = opt_str(&row[1]);
                let ours = path_str(pyc::source_from_cache(
                    Path::new(pyc_path),
                    &rules,
                    prefix.map(Path::new),
                ));
                checked += 1;
                if ours.as_deref() != want {
                    failures.push(format!(
                        "{} source_from_cache({pyc_path:?}, prefix={prefix:?}): ours {ours:?}, importlib {want:?}",
                        py.label()
                    ));
                }
            }
        }
    }
    common::note(&format!(
        "[pyc_differential::cache_paths] {checked} comparisons"
    ));
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Source hashes
// ---------------------------------------------------------------------------

const SOURCE_HASH_SCRIPT: &str = r#"
import sys, json, importlib.util as u
json.dump([u.source_hash(bytes.fromhex(h)).hex() for h in json.load(sys.stdin)], sys.stdout)
"#;

/// xorshift64*: deterministic "random" test inputs without a dependency.
fn random_bytes(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed >> 12;
            *seed ^= *seed << 25;
            *seed ^= *seed >> 27;
            (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn source_hashes_match_importlib() {
    let pythons = common::pythons();
    common::report("pyc_differential::source_hash", &pythons);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for len in [
        0usize, 1, 2, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 127, 1000, 4099,
    ] {
        for _ in 0..4 {
            inputs.push(random_bytes(&mut seed, len));
        }
    }
    inputs.push(b"import os\r\nprint('\xc3\xa9')\n".to_vec());
    let input = Value::from(inputs.iter().map(|b| hex(b)).collect::<Vec<_>>());
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for py in &pythons {
        let rules = rules_of(py);
        let got = run_json(py, &["-I"], tmp.path(), SOURCE_HASH_SCRIPT, &input);
        let got = got.as_array().unwrap();
        assert_eq!(got.len(), inputs.len());
        for (bytes, want) in inputs.iter().zip(got) {
            let ours = hex(&pyc::source_hash(&rules, bytes));
            if ours != want.as_str().unwrap() {
                failures.push(format!(
                    "{} len {}: ours {ours}, importlib {want}",
                    py.label(),
                    bytes.len()
                ));
            }
        }
    }
    common::note(&format!(
        "[pyc_differential::source_hash] {} inputs per interpreter",
        inputs.len()
    ));
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Validation verdicts
// ---------------------------------------------------------------------------

/// Builds the scenarios in argv[1] with the interpreter's own py_compile and
/// prints them. `reason` is what the scenario changed: the staleness reason
/// expected *if* the loader rejects the pyc (whether it does is the loader's
/// call, observed separately).
const SETUP_SCRIPT: &str = r#"
import sys, os, json, struct, py_compile, importlib.util
root = sys.argv[1]
HAS_FLAGS = sys.version_info >= (3, 7)
MT = 8 if HAS_FLAGS else 4            # offset of the mtime field
BASE = 1600000000 * 10**9 + 123456789
out = []
skipped = []

def setns(p, ns):
    os.utime(p, ns=(ns, ns))
    return os.stat(p).st_mtime_ns == ns

def new(name, text=b"x = 1\n", ns=BASE):
    d = os.path.join(root, name)
    os.makedirs(d)
    src = os.path.join(d, "m.py")
    with open(src, "wb") as f:
        f.write(text)
    if not setns(src, ns):
        skipped.append(name)
        return None
    return src

def comp(src, mode="timestamp"):
    pyc = importlib.util.cache_from_source(src)
    if HAS_FLAGS:
        m = getattr(py_compile.PycInvalidationMode, mode.upper().replace("-", "_"))
        py_compile.compile(src, cfile=pyc, doraise=True, invalidation_mode=m)
    else:
        py_compile.compile(src, cfile=pyc, doraise=True)
    return pyc

def add(name, src, reason):
    out.append({"name": name, "src": src, "pyc": importlib.util.cache_from_source(src), "reason": reason})

def patch(pyc, offset, data):
    with open(pyc, "r+b") as f:
        f.seek(offset)
        f.write(data)

def rewrite(src, text, ns):
    with open(src, "wb") as f:
        f.write(text)
    setns(src, ns)

def truncate(pyc, n):
    with open(pyc, "r+b") as f:
        f.truncate(n)

s = new("fresh"); comp(s); add("fresh", s, "none")
for name, ns in [("ns_999999999", 1600000000 * 10**9 + 999999999),
                 ("ns_999999700", 1600000000 * 10**9 + 999999700),
                 ("neg_1_5s", -1500000000), ("neg_5_999999999s", -5999999999),
                 ("neg_1ns", -1), ("neg_999999999ns", -999999999),
                 ("zero", 0), ("beyond_2106", 2**32 * 10**9 + 5),
                 ("beyond_2106_neg_wrap", 2**33 * 10**9 - 10**9 + 999999999)]:
    s = new(name, ns=ns)
    if s:
        comp(s); add(name, s, "mtime")
s = new("ns_999999999_whole_seconds", ns=1600000000 * 10**9 + 999999999)
p = comp(s); patch(p, MT, struct.pack("<I", 1600000000)); add("ns_999999999_whole_seconds", s, "mtime")
s = new("touched"); comp(s); setns(s, BASE + 10**9); add("touched", s, "mtime")
s = new("touched_back"); comp(s); setns(s, BASE - 10**9); add("touched_back", s, "mtime")
s = new("touched_same_second"); comp(s); setns(s, BASE + 800000000); add("touched_same_second", s, "mtime")
s = new("edit_same_second_same_size"); comp(s); rewrite(s, b"x = 2\n", BASE + 500000000)
add("edit_same_second_same_size", s, "none")
s = new("edit_same_second_new_size"); comp(s); rewrite(s, b"x = 22\n", BASE + 500000000)
add("edit_same_second_new_size", s, "size")
s = new("size_field_wrong"); p = comp(s); patch(p, MT + 4, struct.pack("<I", 7)); add("size_field_wrong", s, "size")
for n in (0, 3, 4, 11, 12, 15):
    s = new("truncated_%d" % n); p = comp(s); truncate(p, n)
    add("truncated_%d" % n, s, "bad-magic" if n < 4 else "short-header")
s = new("magic_byte0"); p = comp(s)
with open(p, "rb") as f: b0 = f.read(1)
patch(p, 0, bytes([b0[0] ^ 0xFF])); add("magic_byte0", s, "bad-magic")
s = new("magic_crlf"); p = comp(s); patch(p, 2, b"\n\n"); add("magic_crlf", s, "bad-magic")
s = new("pyc_missing"); add("pyc_missing", s, "missing")
s = new("pyc_is_dir"); os.makedirs(importlib.util.cache_from_source(s)); add("pyc_is_dir", s, "not-regular-file")
s = new("pycache_is_file")
with open(os.path.join(os.path.dirname(s), "__pycache__"), "wb") as f: f.write(b"x")
add("pycache_is_file", s, "missing")
s = new("pyc_symlink"); p = comp(s); os.rename(p, p + ".real"); os.symlink(os.path.basename(p) + ".real", p)
add("pyc_symlink", s, "none")
s = new("pyc_dangling_symlink"); p = comp(s); os.remove(p); os.symlink("nowhere.pyc", p)
add("pyc_dangling_symlink", s, "missing")
s = new("source_deleted"); comp(s); os.remove(s); add("source_deleted", s, "source-unreadable")
s = new("corrupt_body"); p = comp(s)
with open(p, "r+b") as f:
    f.seek(16 if HAS_FLAGS else 12); f.write(b"\0" * 8)
add("corrupt_body", s, "none")
if HAS_FLAGS:
    for flags in (4, 8, 0x80000000, 0xFFFFFFFF, 5, 7):
        s = new("flags_%x" % flags); p = comp(s); patch(p, 4, struct.pack("<I", flags)); add("flags_%x" % flags, s, "bad-flags")
    s = new("flags_2_on_timestamp"); p = comp(s); patch(p, 4, struct.pack("<I", 2)); add("flags_2_on_timestamp", s, "none")
    for mode in ("checked-hash", "unchecked-hash"):
        k = mode.split("-")[0]
        s = new(k + "_fresh"); comp(s, mode); add(k + "_fresh", s, "hash")
        s = new(k + "_touched"); comp(s, mode); setns(s, BASE + 86400 * 10**9); add(k + "_touched", s, "hash")
        s = new(k + "_edited"); comp(s, mode); rewrite(s, b"x = 2\n", BASE); add(k + "_edited", s, "hash")
        s = new(k + "_edited_resized"); comp(s, mode); rewrite(s, b"x = 'longer'\n", BASE + 10**9); add(k + "_edited_resized", s, "hash")
        s = new(k + "_hash_zeroed"); p = comp(s, mode); patch(p, 8, b"\0" * 8); add(k + "_hash_zeroed", s, "hash")
        s = new(k + "_source_deleted"); comp(s, mode); os.remove(s); add(k + "_source_deleted", s, "source-unreadable")
        s = new(k + "_truncated_12"); p = comp(s, mode); truncate(p, 12); add(k + "_truncated_12", s, "short-header")
    s = new("hash_bit_flipped_to_timestamp"); p = comp(s, "checked-hash"); patch(p, 4, struct.pack("<I", 2))
    add("hash_bit_flipped_to_timestamp", s, "mtime")
    s = new("timestamp_flipped_to_unchecked"); p = comp(s); patch(p, 4, struct.pack("<I", 1))
    add("timestamp_flipped_to_unchecked", s, "hash")
json.dump({"scenarios": out, "skipped": skipped}, sys.stdout)
"#;

/// Asks the real loader, for every scenario, whether it would unmarshal the
/// pyc: `_compile_bytecode` is what get_code calls on a pyc it accepted.
const VERIFY_SCRIPT: &str = r#"
import sys, json, importlib.machinery as m, importlib._bootstrap_external as be
used = []
orig = be._compile_bytecode
def spy(*a, **k):
    used.append(k.get("bytecode_path"))
    return orig(*a, **k)
be._compile_bytecode = spy
out = []
for sc in json.load(sys.stdin):
    del used[:]
    try:
        m.SourceFileLoader("m", sc["src"]).get_code("m")
    except Exception:
        pass
    out.append("pyc" if used else "source")
json.dump(out, sys.stdout)
"#;

#[test]
fn verdicts_match_source_loader() {
    // 3.6 too: its 12-byte header and unmasked mtime comparison are supported.
    let pythons = common::pythons_at_least((3, 6));
    common::report("pyc_differential::verdicts", &pythons);
    let mut failures = Vec::new();
    let mut compared = 0usize;
    let (mut fresh, mut stale) = (0usize, 0usize);
    for py in &pythons {
        let rules = rules_of(py);
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let setup = py
            .cmd()
            .args(["-I", "-c", SETUP_SCRIPT])
            .arg(&root)
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            setup.status.success(),
            "{} setup failed: {}",
            py.label(),
            String::from_utf8_lossy(&setup.stderr)
        );
        let setup: Value = serde_json::from_slice(&setup.stdout).unwrap();
        let skipped = setup["skipped"].as_array().unwrap();
        if !skipped.is_empty() {
            common::note(&format!(
                "[pyc_differential::verdicts] filesystem refused mtimes for {skipped:?}"
            ));
        }
        let scenarios = setup["scenarios"].as_array().unwrap();
        let modes: &[HashCheckMode] = if rules.has_flags_field() {
            &[
                HashCheckMode::Default,
                HashCheckMode::Always,
                HashCheckMode::Never,
            ]
        } else {
            &[HashCheckMode::Default] // 3.6: no hash-based pycs, no option
        };
        for &mode in modes {
            let mut flags = vec!["-B", "-I"];
            if rules.has_flags_field() {
                flags.extend(["--check-hash-based-pycs", mode.as_str()]);
            }
            let got = run_json(
                py,
                &flags,
                &root,
                VERIFY_SCRIPT,
                &Value::from(scenarios.clone()),
            );
            let got = got.as_array().unwrap();
            assert_eq!(got.len(), scenarios.len());
            for (sc, loader) in scenarios.iter().zip(got) {
                let name = sc["name"].as_str().unwrap();
                let src = Path::new(sc["src"].as_str().unwrap());
                let their_pyc = sc["pyc"].as_str().unwrap();
                let pyc = pyc::cache_from_source(src, &rules, 0, None, &root).unwrap();
                assert_eq!(
                    pyc.to_str(),
                    Some(their_pyc),
                    "{} {name}: pyc path",
                    py.label()
                );
                let ours = pyc::check(src, &pyc, &rules, mode);
                let loader_fresh = loader.as_str() == Some("pyc");
                compared += 1;
                if loader_fresh {
                    fresh += 1;
                } else {
                    stale += 1;
                }
                let ok = match ours {
                    Verdict::Fresh => loader_fresh,
                    Verdict::Stale(reason) => {
                        !loader_fresh && reason.as_str() == sc["reason"].as_str().unwrap()
                    }
                };
                if !ok {
                    failures.push(format!(
                        "{} mode={} {name}: ours {ours:?}, loader used {loader} (scenario reason {})",
                        py.label(),
                        mode.as_str(),
                        sc["reason"]
                    ));
                }
                // The with-metadata entry point must agree with `check`.
                if let Ok(meta) = std::fs::metadata(src) {
                    assert_eq!(
                        pyc::check_with_meta(src, &meta, &pyc, &rules, mode),
                        ours,
                        "{name}"
                    );
                }
            }
        }
    }
    common::note(&format!(
        "[pyc_differential::verdicts] {compared} verdicts compared (loader used the pyc {fresh} times, recompiled {stale} times)"
    ));
    assert!(
        fresh > 0 && stale > 0,
        "scenarios must exercise both outcomes"
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// PyPy (Debian's `pypy3`): kolosal precompiles for PyPy's own cache tag and
/// magic number (both from the interpreter's probe), and `pypy3 -v` then
/// loads every project pyc instead of compiling the source; importlib's own
/// checks (run by PyPy) accept each one. Heavy: `.ci/run` installs pypy3.
#[test]
#[cfg_attr(
    not(feature = "heavy"),
    ignore = "heavy suite: cargo test --features heavy"
)]
fn pypy_loads_the_pycs_kolosal_writes() {
    let Some(path) = ["/usr/bin/pypy3", "/usr/local/bin/pypy3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        assert!(
            !common::strict(),
            "pypy3 is missing: .ci/run installs it (apt-get install pypy3)"
        );
        common::note("[pyc_differential::pypy] skipped: no pypy3");
        return;
    };
    let out = common::clean_command(&path)
        .args(["-c", "import sys;print(*sys.version_info[:3])"])
        .output()
        .expect("start pypy3");
    let v: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(v.len(), 3, "pypy3 version: {}", common::describe(&out));
    let pypy = Python {
        path,
        version: (v[0], v[1], v[2]),
    };
    common::report("pyc_differential::pypy", std::slice::from_ref(&pypy));
    let tag = pypy.cache_tag();
    assert!(tag.starts_with("pypy"), "cache tag {tag}");

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let app = root.join("app");
    std::fs::create_dir_all(app.join("pkg")).unwrap();
    let files = [
        (
            "main.py",
            "import helper\nfrom pkg import mod\nprint(helper.X + mod.Y)\n",
        ),
        ("helper.py", "X = 40\n"),
        ("pkg/__init__.py", ""),
        ("pkg/mod.py", "def f():\n    return 2\nY = f()\n"),
    ];
    for (name, text) in files {
        std::fs::write(app.join(name), text).unwrap();
    }
    let env = |c: &mut std::process::Command| {
        c.current_dir(&app)
            .env("HOME", &root)
            .env("KOLOSAL_CACHE_DIR", root.join("cache"))
            .env("KOLOSAL_BACKGROUND", "0")
            .env("KOLOSAL_PYTHON", &pypy.path);
    };
    let mut k = common::clean_command(common::launcher_bin());
    env(&mut k);
    let out = k.arg("main.py").output().unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    assert!(out.stderr.is_empty(), "{}", common::describe(&out));

    let sources: Vec<PathBuf> = ["helper.py", "pkg/__init__.py", "pkg/mod.py"]
        .iter()
        .map(|s| app.join(s))
        .collect();
    for src in &sources {
        let dir = src.parent().unwrap().join("__pycache__");
        let stem = src.file_stem().unwrap().to_str().unwrap();
        let pyc = dir.join(format!("{stem}.{tag}.pyc"));
        assert!(pyc.is_file(), "{} not written", pyc.display());
    }
    // importlib's verdict, as PyPy runs it.
    let verdicts = common::pyc_verdicts(&pypy.path, &app, &[], &sources);
    for line in &verdicts {
        assert!(line.starts_with("OK "), "{line}");
    }
    // The oracle: PyPy itself, told not to write, loads every pyc.
    let out = common::clean_command(&pypy.path)
        .current_dir(&app)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-v", "main.py"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    let log = String::from_utf8_lossy(&out.stderr);
    for src in &sources {
        let dir = src.parent().unwrap().join("__pycache__");
        let stem = src.file_stem().unwrap().to_str().unwrap();
        let pyc = dir.join(format!("{stem}.{tag}.pyc"));
        let loaded = format!("# code object from '{}'", pyc.display());
        assert!(
            log.lines().any(|l| l.trim() == loaded),
            "pypy3 -v did not load {}:\n{log}",
            pyc.display()
        );
    }
    common::note(&format!(
        "[pyc_differential::pypy] {} project pycs written for {tag} and loaded by pypy3 -v",
        sources.len()
    ));
}
