//! `kolosal compile`, `clean` and `status` against real interpreters.
//!
//! * Pycs written at -o 0/1/2 in every invalidation mode are used by a fresh
//!   `python -v` (clean environment, matching -O, `--check-hash-based-pycs
//!   always` for hash modes) and are byte-identical to `py_compile`'s.
//! * A second run compiles nothing and starts no Python process (the
//!   interpreter is a wrapper script logging each start).
//! * Faults (syntax error, non-UTF-8 source, undecodable file name, a
//!   directory where no pyc can be written) are reported; the rest compiles.
//! * `--legacy --remove-source` leaves a tree that still runs;
//!   `--hardlink-dupes` shares inodes; `clean`/`status` counts match the disk
//!   and `status` agrees with importlib.

use crate::common;

use common::{clean_command, kolosal_bin, Python};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

const MODES: [&str; 3] = ["timestamp", "checked-hash", "unchecked-hash"];

/// The generated tree: (relative path, contents). Modules with docstrings
/// and asserts so the three levels differ, a docstring-free one so they
/// don't, a latin-1 source with a coding cookie, non-ASCII identifiers.
fn tree_files() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = vec![
        ("m_plain.py".into(), b"X = 1\n\ndef f(a):\n    return a + X\n".to_vec()),
        (
            "m_doc.py".into(),
            b"\"\"\"Module doc.\"\"\"\n\ndef f():\n    \"\"\"Function doc.\"\"\"\n    assert f\n    return __debug__\n".to_vec(),
        ),
        ("pkg/__init__.py".into(), b"\"\"\"A package.\"\"\"\n".to_vec()),
        ("pkg/m.py".into(), "S = \"\u{e9}t\u{e9}\"\n".as_bytes().to_vec()),
        ("pkg/sub/__init__.py".into(), b"".to_vec()),
        (
            "pkg/sub/deep.py".into(),
            b"from .. import m\nVALUE = m.S\n".to_vec(),
        ),
        (
            "m_latin.py".into(),
            b"# -*- coding: latin-1 -*-\nS = \"\xe9\"\n".to_vec(),
        ),
        ("m_uni.py".into(), "caf\u{e9} = 1\n".as_bytes().to_vec()),
        ("gen/__init__.py".into(), b"".to_vec()),
    ];
    for i in 0..12 {
        let body = format!(
            "\"\"\"Generated {i}.\"\"\"\nimport os\n\nclass C{i}:\n    def m(self, x):\n        assert x\n        return [x * k for k in range({i})]\n\nVALUES = {{k: str(k) for k in range({i})}}\n"
        );
        v.push((format!("gen/g{i:02}.py"), body.into_bytes()));
    }
    v
}

fn module_name(rel: &str) -> String {
    let s = rel.trim_end_matches(".py").replace('/', ".");
    s.strip_suffix(".__init__").map(str::to_string).unwrap_or(s)
}

fn write_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (rel, body) in files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }
}

/// A shell script standing in for `python` that appends a line to `log` on
/// every start.
fn wrapper(dir: &Path, py: &Python, log: &Path) -> PathBuf {
    let w = dir.join("python-wrapper");
    fs::write(
        &w,
        format!(
            "#!/bin/sh\necho start >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            py.path.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&w, fs::Permissions::from_mode(0o755)).unwrap();
    w
}

fn starts(log: &Path) -> usize {
    fs::read_to_string(log).map_or(0, |s| s.lines().count())
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn kolosal(cache: &Path, cwd: &Path, args: &[&OsStr]) -> Run {
    let out = clean_command(kolosal_bin())
        .env("KOLOSAL_CACHE_DIR", cache)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `compiled N, fresh N, failed N` from the summary line.
fn summary(stderr: &str) -> (usize, usize, usize) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("compiled "))
        .unwrap_or_else(|| panic!("no summary line in {stderr:?}"));
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1], nums[2])
}

/// Runs a fresh `python -v` importing `modules` from `root` at `level`;
/// returns how many of `sources` were loaded from a matching pyc and the
/// sources that were compiled from source instead.
fn import_check(
    py: &Python,
    root: &Path,
    modules: &[String],
    sources: &[PathBuf],
    level: u32,
    check_always: bool,
) -> (usize, Vec<String>) {
    let mut cmd = py.cmd();
    for _ in 0..level {
        cmd.arg("-O");
    }
    if check_always {
        cmd.args(["--check-hash-based-pycs", "always"]);
    }
    let code = format!(
        "import sys; sys.path.insert(0, {:?}); import {}",
        root.to_str().unwrap(),
        modules.join(", ")
    );
    let out = cmd
        .arg("-v")
        .arg("-c")
        .arg(&code)
        .current_dir("/")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: import failed: {err}", py.label());
    let mut matched = 0;
    let mut from_source = Vec::new();
    for s in sources {
        let s = s.to_str().unwrap();
        let opt = format!(".opt-{level}.pyc");
        if err.lines().any(|l| {
            l.starts_with("# ")
                && l.ends_with(&format!(" matches {s}"))
                && (if level == 0 {
                    !l.contains(".opt-")
                } else {
                    l.contains(&opt)
                })
        }) {
            matched += 1;
        }
        if err.lines().any(|l| l == format!("# code object from {s}")) {
            from_source.push(s.to_string());
        }
    }
    (matched, from_source)
}

const PY_COMPILE_CHECK: &str = r#"
import importlib.util, json, os, py_compile, sys, tempfile
root, mode, levels, rels = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
inv = py_compile.PycInvalidationMode[mode.upper().replace("-", "_")]
bad, compared = [], 0
with tempfile.TemporaryDirectory() as tmp:
    for rel in rels:
        src = os.path.join(root, rel)
        for level in levels:
            ours = importlib.util.cache_from_source(src, optimization=level or "")
            ref = os.path.join(tmp, "ref.pyc")
            py_compile.compile(src, cfile=ref, doraise=True, optimize=level, invalidation_mode=inv)
            with open(ref, "rb") as f: a = f.read()
            with open(ours, "rb") as f: b = f.read()
            compared += 1
            if a != b:
                bad.append([rel, level, len(a), len(b)])
print(json.dumps({"compared": compared, "bad": bad}))
"#;

#[test]
fn compiled_pycs_are_used_by_python_and_match_py_compile() {
    let pythons = common::pythons();
    common::report("compile_cli/accepted+py_compile", &pythons);
    let files = tree_files();
    let rels: Vec<String> = files.iter().map(|(r, _)| r.clone()).collect();
    let modules: Vec<String> = rels.iter().map(|r| module_name(r)).collect();
    let levels = [0u32, 1, 2];
    let t0 = Instant::now();
    for py in &pythons {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        write_tree(&root, &files);
        let sources: Vec<PathBuf> = rels.iter().map(|r| root.join(r)).collect();
        let log = tmp.path().join("starts.log");
        let wrap = wrapper(tmp.path(), py, &log);
        let cache = tmp.path().join("cache");
        let n = files.len() * levels.len();
        for (i, mode) in MODES.iter().enumerate() {
            let args = [
                os("compile"),
                os("--python"),
                wrap.as_os_str(),
                os("-o"),
                os("0"),
                os("-o"),
                os("1"),
                os("-o"),
                os("2"),
                os("--invalidation-mode"),
                os(mode),
                root.as_os_str(),
            ];
            let r = kolosal(&cache, tmp.path(), &args);
            assert_eq!(r.code, 0, "{} {mode}: {}", py.label(), r.stderr);
            // Every pyc of another mode is rewritten, as compileall does.
            assert_eq!(summary(&r.stderr), (n, 0, 0), "{} {mode}", py.label());
            assert!(r.stdout.is_empty());
            if i == 0 {
                assert!(starts(&log) >= 2, "probe + at least one worker");
            }
            let before = starts(&log);
            let again = kolosal(&cache, tmp.path(), &args);
            assert_eq!(again.code, 0, "{}", again.stderr);
            assert_eq!(summary(&again.stderr), (0, n, 0), "{} {mode}", py.label());
            assert_eq!(
                starts(&log),
                before,
                "{} {mode}: the no-op run started Python",
                py.label()
            );

            let out = py
                .cmd()
                .args(["-c", PY_COMPILE_CHECK])
                .arg(&root)
                .arg(mode)
                .arg("[0, 1, 2]")
                .arg(serde_json::to_string(&rels).unwrap())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["compared"], n, "{}", py.label());
            assert_eq!(
                v["bad"],
                serde_json::json!([]),
                "{} {mode}: pycs differ from py_compile's",
                py.label()
            );

            for level in levels {
                let (matched, from_source) =
                    import_check(py, &root, &modules, &sources, level, *mode != "timestamp");
                assert!(
                    from_source.is_empty(),
                    "{} {mode} -O{level}: compiled from source: {from_source:?}",
                    py.label()
                );
                assert_eq!(matched, sources.len(), "{} {mode} -O{level}", py.label());
            }
        }
    }
    common::note(&format!(
        "[compile_cli] accepted+py_compile: {} interpreters x 3 modes x 3 levels x {} files in {:.1}s",
        pythons.len(),
        files.len(),
        t0.elapsed().as_secs_f64()
    ));
}

#[test]
fn faults_are_reported_and_the_rest_compiled() {
    let pythons = common::pythons();
    common::report("compile_cli/faults", &pythons);
    let root_user = unsafe { libc::geteuid() } == 0;
    for py in &pythons {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        let files: Vec<(String, Vec<u8>)> = vec![
            ("good.py".into(), b"X = 1\n".to_vec()),
            (
                "bad_syntax.py".into(),
                b"X = 1\ndef f(:\n    pass\n".to_vec(),
            ),
            (
                "latin_cookie.py".into(),
                b"# coding: latin-1\nS = \"\xe9\"\n".to_vec(),
            ),
            ("latin_nocookie.py".into(), b"S = \"\xe9\"\n".to_vec()),
            ("blocked/mod.py".into(), b"Y = 2\n".to_vec()),
        ];
        write_tree(&root, &files);
        // A file name that is not UTF-8.
        let odd = root.join(OsStr::from_bytes(b"odd_\xff.py"));
        fs::write(&odd, b"Z = 3\n").unwrap();
        // No pyc can be written under blocked/: its __pycache__ is a file.
        fs::write(root.join("blocked/__pycache__"), b"not a directory").unwrap();
        // And, when not root (root ignores modes), a read-only directory.
        if !root_user {
            write_tree(&root, &[("ro/mod.py".into(), b"W = 4\n".to_vec())]);
            fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        }
        let cache = tmp.path().join("cache");
        let r = kolosal(
            &cache,
            tmp.path(),
            &[
                os("compile"),
                os("--python"),
                py.path.as_os_str(),
                root.as_os_str(),
            ],
        );
        if !root_user {
            fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(r.code, 1, "{}: {}", py.label(), r.stderr);
        let failing = 3 + usize::from(!root_user);
        assert_eq!(
            summary(&r.stderr),
            (3, 0, failing),
            "{}: {}",
            py.label(),
            r.stderr
        );
        let lines: Vec<&str> = r.stderr.lines().collect();
        let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
        assert!(
            has(&format!(
                "{}:2: SyntaxError",
                root.join("bad_syntax.py").display()
            )),
            "{}: {}",
            py.label(),
            r.stderr
        );
        assert!(has("latin_nocookie.py"), "{}: {}", py.label(), r.stderr);
        assert!(has("blocked/mod.py"), "{}: {}", py.label(), r.stderr);
        if !root_user {
            assert!(has("ro/mod.py"), "{}: {}", py.label(), r.stderr);
        }
        // The rest is compiled, and fresh by the loader's rules.
        let status = kolosal(
            &cache,
            tmp.path(),
            &[
                os("status"),
                os("--json"),
                os("--python"),
                py.path.as_os_str(),
                root.as_os_str(),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        assert_eq!(
            v["levels"][0]["fresh"],
            3,
            "{}: {}",
            py.label(),
            status.stdout
        );
        assert_eq!(v["sources"], files.len() + 1 + usize::from(!root_user));
        let tag = v["cache_tag"].as_str().unwrap().to_string();
        let mut odd_pyc = b"odd_\xff.".to_vec();
        odd_pyc.extend_from_slice(tag.as_bytes());
        odd_pyc.extend_from_slice(b".pyc");
        assert!(root
            .join("__pycache__")
            .join(OsStr::from_bytes(&odd_pyc))
            .is_file());
    }
}

#[test]
fn legacy_remove_source_leaves_a_tree_that_runs() {
    let pythons = common::pythons();
    common::report("compile_cli/legacy", &pythons);
    for py in &pythons {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("app");
        let files: Vec<(String, Vec<u8>)> = vec![
            (
                "main.py".into(),
                b"from lib import words\nprint(words.greet('sourceless'))\n".to_vec(),
            ),
            ("lib/__init__.py".into(), b"".to_vec()),
            (
                "lib/words.py".into(),
                b"def greet(who):\n    return 'hello ' + who\n".to_vec(),
            ),
            ("broken.py".into(), b"def (:\n".to_vec()),
        ];
        write_tree(&root, &files);
        let cache = tmp.path().join("cache");
        let py_arg = py.path.as_os_str();
        // Refusals: --remove-source alone, --legacy with two levels.
        for bad in [
            vec![
                os("compile"),
                os("--python"),
                py_arg,
                os("--remove-source"),
                root.as_os_str(),
            ],
            vec![
                os("compile"),
                os("--python"),
                py_arg,
                os("--legacy"),
                os("-o"),
                os("0"),
                os("-o"),
                os("1"),
                root.as_os_str(),
            ],
        ] {
            let r = kolosal(&cache, tmp.path(), &bad);
            assert_eq!(r.code, 2, "{}", r.stderr);
        }
        assert!(root.join("main.py").exists());
        let r = kolosal(
            &cache,
            tmp.path(),
            &[
                os("compile"),
                os("--python"),
                py_arg,
                os("--legacy"),
                os("--remove-source"),
                root.as_os_str(),
            ],
        );
        assert_eq!(r.code, 1, "{}: {}", py.label(), r.stderr);
        assert_eq!(summary(&r.stderr), (3, 0, 1));
        for rel in ["main", "lib/__init__", "lib/words"] {
            assert!(!root.join(format!("{rel}.py")).exists(), "{rel}.py kept");
            assert!(
                root.join(format!("{rel}.pyc")).is_file(),
                "{rel}.pyc missing"
            );
        }
        // The source that did not compile is kept.
        assert!(root.join("broken.py").exists());
        assert!(!root.join("__pycache__").exists());
        let out = py.cmd().arg(root.join("main.pyc")).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello sourceless\n",
            "{}: {}",
            py.label(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn hardlink_dupes_share_inodes() {
    let pythons = common::pythons();
    common::report("compile_cli/hardlink", &pythons);
    for py in &pythons {
        let tmp = tempfile::tempdir().unwrap();
        let files = tree_files();
        let cache = tmp.path().join("cache");
        let mut inodes: BTreeMap<bool, Vec<(u64, u64, u64)>> = BTreeMap::new();
        for link in [false, true] {
            let root = tmp.path().join(format!("tree-{link}"));
            write_tree(&root, &files);
            let mut args = vec![
                os("compile"),
                os("--python"),
                py.path.as_os_str(),
                os("-o"),
                os("0"),
                os("-o"),
                os("1"),
                os("-o"),
                os("2"),
                root.as_os_str(),
            ];
            if link {
                args.push(os("--hardlink-dupes"));
            }
            let r = kolosal(&cache, tmp.path(), &args);
            assert_eq!(r.code, 0, "{}", r.stderr);
            let tag = py.cache_tag();
            for m in ["m_plain", "m_doc"] {
                let ino = |suffix: &str| {
                    fs::metadata(root.join(format!("__pycache__/{m}.{tag}{suffix}.pyc")))
                        .unwrap()
                        .ino()
                };
                inodes
                    .entry(link)
                    .or_default()
                    .push((ino(""), ino(".opt-1"), ino(".opt-2")));
            }
        }
        let (plain, doc) = (inodes[&true][0], inodes[&true][1]);
        // No docstring, no assert: all three levels are one file.
        assert_eq!(plain.0, plain.1, "{}", py.label());
        assert_eq!(plain.1, plain.2, "{}", py.label());
        // Asserts differ at -O, docstrings at -OO: three files.
        assert_ne!(doc.0, doc.1, "{}", py.label());
        assert_ne!(doc.1, doc.2, "{}", py.label());
        // Without the flag, nothing is shared.
        let unlinked = inodes[&false][0];
        assert_ne!(unlinked.1, unlinked.2, "{}", py.label());
    }
}

/// Pyc files under `root`'s `__pycache__` dirs, by name.
fn pycs_on_disk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if p.extension() == Some(OsStr::new("pyc")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn clean_and_status_match_the_disk_and_importlib() {
    let pythons = common::pythons();
    common::report("compile_cli/clean+status", &pythons);
    for py in &pythons {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        let files = tree_files();
        write_tree(&root, &files);
        let cache = tmp.path().join("cache");
        let py_arg = py.path.as_os_str();
        let r = kolosal(
            &cache,
            tmp.path(),
            &[
                os("compile"),
                os("--python"),
                py_arg,
                os("-o"),
                os("0"),
                os("-o"),
                os("1"),
                root.as_os_str(),
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let tag = py.cache_tag();
        // Disturb: one source edited (size changes), one deleted (its pycs
        // become orphans), a pyc of another interpreter, a legacy pyc.
        let edited = root.join("pkg/m.py");
        fs::write(&edited, "S = 'changed size'\n").unwrap();
        fs::remove_file(root.join("m_uni.py")).unwrap();
        fs::copy(
            root.join(format!("__pycache__/m_plain.{tag}.pyc")),
            root.join("__pycache__/m_plain.other-99.pyc"),
        )
        .unwrap();
        fs::copy(
            root.join(format!("__pycache__/m_plain.{tag}.pyc")),
            root.join("m_plain.pyc"),
        )
        .unwrap();

        let status = kolosal(
            &cache,
            tmp.path(),
            &[
                os("status"),
                os("--json"),
                os("--python"),
                py_arg,
                os("-o"),
                os("0"),
                os("-o"),
                os("1"),
                os("-o"),
                os("2"),
                root.as_os_str(),
            ],
        );
        assert_eq!(status.code, 0, "{}", status.stderr);
        let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        let n = files.len() - 1;
        assert_eq!(v["sources"], n);
        let on_disk = pycs_on_disk(&root);
        for (i, level) in [0u32, 1, 2].iter().enumerate() {
            let l = &v["levels"][i];
            assert_eq!(l["optimize"], *level);
            let suffix = if *level == 0 {
                format!(".{tag}.pyc")
            } else {
                format!(".{tag}.opt-{level}.pyc")
            };
            let mine: Vec<&PathBuf> = on_disk
                .iter()
                .filter(|p| p.to_str().unwrap().ends_with(&suffix))
                .collect();
            let bytes: u64 = mine.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
            let counted = l["fresh"].as_u64().unwrap()
                + l["stale"].as_u64().unwrap()
                + l["orphaned"].as_u64().unwrap();
            assert_eq!(counted, mine.len() as u64, "{} -o {level}: {l}", py.label());
            let counted_bytes = l["fresh_bytes"].as_u64().unwrap()
                + l["stale_bytes"].as_u64().unwrap()
                + l["orphaned_bytes"].as_u64().unwrap();
            assert_eq!(counted_bytes, bytes, "{} -o {level}", py.label());
            if *level < 2 {
                assert_eq!(l["stale"], 1, "{}: {l}", py.label());
                // mtime is compared first; within the same second, size.
                let r = &l["stale_reasons"];
                let n = r["mtime"].as_u64().unwrap_or(0) + r["size"].as_u64().unwrap_or(0);
                assert_eq!(n, 1, "{}: {l}", py.label());
                assert_eq!(l["orphaned"], 1);
                assert_eq!(l["missing"], 0);
            } else {
                assert_eq!(l["missing"], n as u64);
            }
        }
        // status's fresh count is what importlib uses.
        let live: Vec<&(String, Vec<u8>)> = files.iter().filter(|(r, _)| r != "m_uni.py").collect();
        let modules: Vec<String> = live.iter().map(|(r, _)| module_name(r)).collect();
        let sources: Vec<PathBuf> = live.iter().map(|(r, _)| root.join(r)).collect();
        for (i, level) in [0u32, 1].iter().enumerate() {
            let (matched, from_source) = import_check(py, &root, &modules, &sources, *level, false);
            assert_eq!(
                serde_json::json!(matched),
                v["levels"][i]["fresh"],
                "{} -O{level}",
                py.label()
            );
            assert_eq!(from_source, [edited.to_str().unwrap()]);
        }

        // clean: dry run first, then for real; counts equal what was on disk.
        let on_disk = pycs_on_disk(&root);
        let removable: Vec<&PathBuf> = on_disk
            .iter()
            .filter(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                p.parent().unwrap().ends_with("__pycache__") && !name.starts_with("m_uni.")
            })
            .collect();
        let dry = kolosal(
            &cache,
            tmp.path(),
            &[os("clean"), os("--dry-run"), root.as_os_str()],
        );
        assert_eq!(dry.code, 0, "{}", dry.stderr);
        let would = dry.stdout.lines().filter(|l| l.ends_with(".pyc")).count();
        assert_eq!(would, removable.len(), "{}", dry.stdout);
        assert!(
            dry.stdout.contains("kept 2 orphaned pycs"),
            "{}",
            dry.stdout
        );
        assert_eq!(pycs_on_disk(&root), on_disk, "dry run removed something");
        let bytes: u64 = removable
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        let real = kolosal(&cache, tmp.path(), &[os("clean"), root.as_os_str()]);
        assert_eq!(real.code, 0, "{}", real.stderr);
        assert!(
            real.stdout
                .contains(&format!("removed {} pycs ({bytes} bytes)", removable.len())),
            "{}",
            real.stdout
        );
        let left = pycs_on_disk(&root);
        assert_eq!(left.len(), 3, "{left:?}"); // 2 orphans + the legacy pyc
        let all = kolosal(
            &cache,
            tmp.path(),
            &[
                os("clean"),
                os("--orphans"),
                os("--legacy"),
                root.as_os_str(),
            ],
        );
        assert_eq!(all.code, 0);
        assert!(pycs_on_disk(&root).is_empty());
        let dirs_left = walk_dirs(&root)
            .into_iter()
            .filter(|d| d.ends_with("__pycache__"))
            .count();
        assert_eq!(dirs_left, 0);
    }
}

fn walk_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                out.push(e.path());
                stack.push(e.path());
            }
        }
    }
    out
}

#[test]
fn entry_compiles_exactly_what_python_then_reads() {
    let pythons = common::pythons();
    common::report("compile_cli/entry", &pythons);
    for py in &pythons {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("proj");
        let files: Vec<(String, Vec<u8>)> = vec![
            (
                "main.py".into(),
                b"from app import words\nprint(words.greet())\n".to_vec(),
            ),
            ("app/__init__.py".into(), b"".to_vec()),
            (
                "app/words.py".into(),
                b"from . import report\n\ndef greet():\n    return report.R\n".to_vec(),
            ),
            ("app/report.py".into(), b"R = 'hi'\n".to_vec()),
            ("app/unused.py".into(), b"X = 1\n".to_vec()),
            ("other.py".into(), b"Y = 1\n".to_vec()),
        ];
        write_tree(&root, &files);
        let cache = tmp.path().join("cache");
        // `status --entry` sees the same closure: the app's three modules
        // missing before, none after; and it counts no tree outside it.
        let entry_status = |cache: &Path| -> Value {
            let r = kolosal(
                cache,
                &root,
                &[
                    os("status"),
                    os("--python"),
                    py.path.as_os_str(),
                    os("--entry"),
                    os("main.py"),
                    os("--json"),
                ],
            );
            assert_eq!(r.code, 0, "{}: {}", py.label(), r.stderr);
            serde_json::from_str(&r.stdout).unwrap()
        };
        let before = entry_status(&cache);
        assert!(
            before["levels"][0]["missing"].as_u64().unwrap() >= 3,
            "{before}"
        );
        let r = kolosal(
            &cache,
            &root,
            &[
                os("compile"),
                os("--python"),
                py.path.as_os_str(),
                os("--entry"),
                os("main.py"),
            ],
        );
        assert_eq!(r.code, 0, "{}: {}", py.label(), r.stderr);
        let after = entry_status(&cache);
        assert_eq!(after["sources"], before["sources"]);
        assert_eq!(after["levels"][0]["missing"], 0, "{after}");
        assert_eq!(after["levels"][0]["stale"], 0, "{after}");
        assert_eq!(after["levels"][0]["fresh"], after["sources"], "{after}");
        let tag = py.cache_tag();
        let has_pyc = |rel: &str| {
            let p = root.join(rel);
            let dir = p.parent().unwrap().join("__pycache__");
            let stem = p.file_stem().unwrap().to_str().unwrap();
            dir.join(format!("{stem}.{tag}.pyc")).exists()
        };
        for rel in ["app/__init__.py", "app/words.py", "app/report.py"] {
            assert!(has_pyc(rel), "{}: {rel} not compiled", py.label());
        }
        for rel in ["main.py", "app/unused.py", "other.py"] {
            assert!(!has_pyc(rel), "{}: {rel} compiled", py.label());
        }
        // Running the program now compiles no module from source (the script
        // itself is compiled by the interpreter's main, which -v does not log).
        let out = py
            .cmd()
            .arg("-v")
            .arg("main.py")
            .current_dir(&root)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
        let err = String::from_utf8_lossy(&out.stderr);
        let from_source: Vec<&str> = err
            .lines()
            .filter_map(|l| l.strip_prefix("# code object from "))
            .filter(|p| !p.starts_with('\''))
            .collect();
        assert!(from_source.is_empty(), "{}: {from_source:?}", py.label());
        assert!(err.contains("app/__pycache__/report."), "{}", py.label());
        // -m: the module's own pyc is read, so it is compiled.
        let r = kolosal(
            &cache,
            &root,
            &[
                os("compile"),
                os("--python"),
                py.path.as_os_str(),
                os("-m"),
                os("app.unused"),
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(has_pyc("app/unused.py"), "{}", py.label());
        assert!(!has_pyc("other.py"));
    }
}
