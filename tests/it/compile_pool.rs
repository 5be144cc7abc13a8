//! The compile pool against CPython itself.
//!
//! * Every pyc the pool writes is byte-identical to what `py_compile.compile`
//!   (run by the same interpreter, in a normal process) writes for the same
//!   source, optimisation level and invalidation mode; both sides agree on
//!   which files fail and why (syntax error line, refused target, unwritable
//!   directory); file modes agree.
//! * Pycs written in place are accepted by importlib: `python -v` with the
//!   matching `-O` level and `--check-hash-based-pycs always` reports each
//!   as matching its source and never compiles a source.
//! * Fault handling: crashed workers are replaced and their file retried
//!   once, hung workers time out, hooks are inert unless enabled, a broken
//!   interpreter is a `PoolError`, and no process starts for no jobs.

use crate::common;

use common::Python;
use kolosal::compile::{compile_all, CompileJob, Outcome, PoolConfig, PoolError};
use kolosal::pyc::InvalidationMode;
use kolosal::pyc::PycTarget;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MODES: [InvalidationMode; 3] = [
    InvalidationMode::Timestamp,
    InvalidationMode::CheckedHash,
    InvalidationMode::UncheckedHash,
];

fn mode_index(m: InvalidationMode) -> usize {
    MODES.iter().position(|&x| x == m).unwrap()
}

/// The reference: py_compile in a normal (non-isolated) process, plus
/// importlib's own cache paths. Reads a job file of lines
/// `C opt mode srchex cfilehex` / `P opt srchex`; prints one JSON object.
const REFERENCE: &str = r#"
import sys, os, json, py_compile, importlib.util
modes = [py_compile.PycInvalidationMode.TIMESTAMP,
         py_compile.PycInvalidationMode.CHECKED_HASH,
         py_compile.PycInvalidationMode.UNCHECKED_HASH]
dec = lambda h: os.fsdecode(bytes.fromhex(h.decode()))
out = []
for line in open(sys.argv[1], 'rb').read().split(b'\n'):
    if not line:
        continue
    f = line.split(b' ')
    if f[0] == b'C':
        try:
            py_compile.compile(dec(f[3]), cfile=dec(f[4]), doraise=True,
                               optimize=int(f[1]), invalidation_mode=modes[int(f[2])])
            out.append({"kind": "ok"})
        except py_compile.PyCompileError as e:
            ev = e.exc_value
            if isinstance(ev, SyntaxError):
                out.append({"kind": "syntax", "line": ev.lineno, "exc": type(ev).__name__})
            else:
                out.append({"kind": "error", "exc": type(ev).__name__})
        except Exception as e:
            out.append({"kind": "error", "exc": type(e).__name__})
    else:
        opt = int(f[1])
        p = importlib.util.cache_from_source(dec(f[2]), optimization=opt if opt else '')
        out.append({"path": os.fsencode(p).hex()})
print(json.dumps({"results": out}))
"#;

/// Imports the modules named (hex, fsdecode'd) in argv[1], one per line.
const IMPORTER: &str = r#"
import sys, os, importlib
for h in open(sys.argv[1]).read().split():
    importlib.import_module(os.fsdecode(bytes.fromhex(h)))
"#;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
}

/// A generated module body; `i` varies names, constants and shapes.
fn module_body(i: usize) -> String {
    format!(
        r#""""Module {i}: docstrings vanish at -OO."""
import os
X_{i} = {i}
SHARED = ("alpha", "beta", "alpha", {i}, {i}.5, {i}j, b"raw{i}", None, ..., frozenset({{1, 2}}), 10**{e})
def f{i}(a, b={i}, *args, key="k{i}", **kw):
    """Function doc {i}."""
    assert a, "asserts vanish at -O"
    if __debug__:
        a += 1
    return [x * {i} for x in range(a)] + [b, key, os.sep]
class C{i}:
    "Class doc {i}."
    attr = lambda self: f"{{self!r}} {i}"
    def method(self, y):
        def inner(z):
            return y + z + {i}
        return inner
try:
    Z = f{i}(2)
except Exception as exc:
    Z = exc
"#,
        e = 20 + i
    )
}

/// One generated tree: sources plus what the test knows about each.
struct Tree {
    root: PathBuf,
    /// (module name, source path) of every importable module.
    modules: Vec<(OsString, PathBuf)>,
    /// The file with a syntax error, and its bad line.
    bad: PathBuf,
    /// Other sources that do not compile (indentation, NUL bytes, bad
    /// cookie, invalid UTF-8) or do not exist.
    broken: Vec<PathBuf>,
    /// Sources whose directory cannot take a `__pycache__`.
    blocked: PathBuf,
    /// A source in a read-only (0o555) directory.
    readonly_dir_src: PathBuf,
}

fn make_tree(root: &Path) -> Tree {
    let src = root.join("src");
    let mut modules = Vec::new();
    let mut add = |name: &[u8], rel: &[u8], body: &[u8], mode: u32| {
        let path = src.join(OsStr::from_bytes(rel));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        modules.push((OsStr::from_bytes(name).to_os_string(), path));
    };
    add(
        b"pkg",
        b"pkg/__init__.py",
        b"\"\"\"pkg\"\"\"\nVALUE = 1\n",
        0o644,
    );
    add(b"pkg.sub", b"pkg/sub/__init__.py", b"", 0o644);
    for i in 0..24 {
        let (name, rel) = match i % 3 {
            0 => (format!("top{i}"), format!("top{i}.py")),
            1 => (format!("pkg.m{i}"), format!("pkg/m{i}.py")),
            _ => (format!("pkg.sub.s{i}"), format!("pkg/sub/s{i}.py")),
        };
        // Varied source modes: pyc mode must be source mode | 0o200.
        let mode = [0o644, 0o600, 0o444, 0o640][i % 4];
        add(
            name.as_bytes(),
            rel.as_bytes(),
            module_body(i).as_bytes(),
            mode,
        );
    }
    // A latin-1 source with a coding cookie (not valid UTF-8).
    add(
        b"latin",
        b"latin.py",
        b"# -*- coding: latin-1 -*-\nS = 'caf\xe9 \xa9'\nassert len(S) == 6\n",
        0o644,
    );
    // A UTF-8 BOM and CRLF line endings.
    add(
        b"bomcrlf",
        b"bomcrlf.py",
        b"\xef\xbb\xbf\"\"\"bom\"\"\"\r\nX = '\xc3\xa9'\r\ndef g():\r\n    return X\r\n",
        0o644,
    );
    // A file name that is not valid UTF-8.
    add(
        b"undec\xff",
        b"undec\xff.py",
        module_body(99).as_bytes(),
        0o644,
    );

    let bad = src.join("bad_syntax.py");
    fs::write(&bad, "x = 1\ny = 2\ndef broken(:\n    pass\n").unwrap();

    let mut broken = Vec::new();
    for (name, body) in [
        ("bad_indent.py", &b"def f():\nreturn 1\n"[..]),
        ("bad_nul.py", b"x = 1\n\0\n"),
        ("bad_cookie.py", b"# coding: no-such-codec\nx = 1\n"),
        ("bad_utf8.py", b"x = 1\ns = '\xff\xfe'\n"),
    ] {
        let p = src.join(name);
        fs::write(&p, body).unwrap();
        broken.push(p);
    }
    broken.push(src.join("missing.py"));

    let blocked_dir = root.join("blocked");
    fs::create_dir_all(&blocked_dir).unwrap();
    let blocked = blocked_dir.join("b.py");
    fs::write(&blocked, "B = 1\n").unwrap();
    // A regular file where __pycache__ should be: unwritable even for root.
    fs::write(blocked_dir.join("__pycache__"), "not a directory").unwrap();

    let ro = root.join("readonly");
    fs::create_dir_all(&ro).unwrap();
    let readonly_dir_src = ro.join("r.py");
    fs::write(&readonly_dir_src, "R = 1\n").unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();

    Tree {
        root: root.to_path_buf(),
        modules,
        bad,
        broken,
        blocked,
        readonly_dir_src,
    }
}

/// A few real stdlib files (bigger, constant-heavy code).
fn stdlib_sources(py: &Python) -> Vec<PathBuf> {
    let lib = py
        .path
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join(format!("lib/python{}.{}", py.version.0, py.version.1));
    ["textwrap.py", "string.py", "json/decoder.py", "ast.py"]
        .iter()
        .map(|f| lib.join(f))
        .filter(|p| p.is_file())
        .collect()
}

fn run_reference(py: &Python, dir: &Path, flags: &[&str], lines: &[String]) -> Vec<Value> {
    let list = dir.join("reference-jobs.txt");
    fs::write(&list, lines.join("\n")).unwrap();
    let out = py
        .cmd()
        .args(flags)
        .arg("-c")
        .arg(REFERENCE)
        .arg(&list)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: reference failed: {}",
        py.label(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["results"].as_array().unwrap().clone()
}

fn pyc_mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The differential test on one interpreter. `k` rotates which invalidation
/// mode each optimisation level uses for the in-place (importlib) check.
fn differential(py: &Python, k: usize) {
    let label = py.label();
    let tmp = tempfile::tempdir().unwrap();
    let tree = make_tree(tmp.path());
    let mask = umask();

    // A symlinked cfile and a directory cfile: refused, left untouched.
    let victim = tmp.path().join("victim.txt");
    fs::write(&victim, "do not overwrite").unwrap();
    let link_cfile = tmp.path().join("link.pyc");
    std::os::unix::fs::symlink(&victim, &link_cfile).unwrap();
    let dir_cfile = tmp.path().join("dir.pyc");
    fs::create_dir(&dir_cfile).unwrap();

    // The matrix: every source x opt 0/1/2 x every mode, ours and py_compile's
    // to separate cfiles.
    let mut sources: Vec<PathBuf> = tree.modules.iter().map(|(_, p)| p.clone()).collect();
    sources.push(tree.bad.clone());
    sources.extend(tree.broken.iter().cloned());
    sources.extend(stdlib_sources(py));
    struct Case {
        job: CompileJob,
        reference: PathBuf,
    }
    let mut cases: Vec<Case> = Vec::new();
    for opt in 0..3u32 {
        for mode in MODES {
            let combo = format!("o{opt}-{}", mode.as_str());
            for (i, src) in sources.iter().enumerate() {
                cases.push(Case {
                    job: CompileJob {
                        pyc: PycTarget {
                            source: src.clone(),
                            cfile: tmp
                                .path()
                                .join("ours")
                                .join(&combo)
                                .join(format!("{i}.pyc")),
                        },
                        optimize: opt,
                        invalidation: mode,
                    },
                    reference: tmp.path().join("ref").join(&combo).join(format!("{i}.pyc")),
                });
            }
        }
    }
    // Targets that must fail (or, for the 0o555 directory, fail only when
    // not root): ours and the reference's sit side by side.
    let mut special = |src: &Path, ours: PathBuf, reference: PathBuf, mode: InvalidationMode| {
        cases.push(Case {
            job: CompileJob {
                pyc: PycTarget {
                    source: src.to_path_buf(),
                    cfile: ours,
                },
                optimize: 0,
                invalidation: mode,
            },
            reference,
        })
    };
    let pc = |src: &Path, name: &str| src.parent().unwrap().join("__pycache__").join(name);
    special(
        &tree.blocked,
        pc(&tree.blocked, "b.ours.pyc"),
        pc(&tree.blocked, "b.ref.pyc"),
        MODES[k % 3],
    );
    special(
        &tree.readonly_dir_src,
        pc(&tree.readonly_dir_src, "r.ours.pyc"),
        pc(&tree.readonly_dir_src, "r.ref.pyc"),
        MODES[k % 3],
    );
    special(
        &tree.modules[2].1,
        link_cfile.clone(),
        link_cfile.clone(),
        MODES[(k + 1) % 3],
    );
    special(
        &tree.modules[3].1,
        dir_cfile.clone(),
        dir_cfile.clone(),
        MODES[(k + 2) % 3],
    );
    let matrix_len = cases.len();

    // In place, for importlib: each opt level with one mode, at the paths
    // importlib itself computes.
    let mut lines: Vec<String> = cases
        .iter()
        .map(|c| {
            format!(
                "C {} {} {} {}",
                c.job.optimize,
                mode_index(c.job.invalidation),
                hex(c.job.source.as_os_str().as_bytes()),
                hex(c.reference.as_os_str().as_bytes())
            )
        })
        .collect();
    for opt in 0..3 {
        for (_, src) in &tree.modules {
            lines.push(format!("P {opt} {}", hex(src.as_os_str().as_bytes())));
        }
    }
    let reference = run_reference(py, tmp.path(), &[], &lines);
    assert_eq!(reference.len(), lines.len(), "{label}");
    let mut in_place = Vec::new();
    for (n, opt) in (0..3u32)
        .flat_map(|o| std::iter::repeat(o).take(tree.modules.len()))
        .enumerate()
    {
        let cfile = PathBuf::from(OsString::from_vec(unhex(
            reference[matrix_len + n]["path"].as_str().unwrap(),
        )));
        let (_, src) = &tree.modules[n % tree.modules.len()];
        in_place.push(CompileJob {
            pyc: PycTarget {
                source: src.clone(),
                cfile,
            },
            optimize: opt,
            invalidation: MODES[(opt as usize + k) % 3],
        });
    }

    let mut jobs: Vec<CompileJob> = cases.iter().map(|c| c.job.clone()).collect();
    jobs.extend(in_place.iter().cloned());
    let config = PoolConfig {
        workers: 2,
        ..PoolConfig::new(&py.path)
    };
    let calls = Mutex::new(vec![0u32; jobs.len()]);
    let started = Instant::now();
    let outcomes = compile_all(&jobs, &config, &|i, _| calls.lock().unwrap()[i] += 1).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(outcomes.len(), jobs.len());
    assert!(
        calls.into_inner().unwrap().iter().all(|&c| c == 1),
        "{label}: on_done once per job"
    );

    let mut written = 0;
    let mut identical = 0;
    let mut normalise = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let what = format!(
            "{label}: {} -> {}",
            case.job.source.display(),
            case.job.cfile.display()
        );
        let r = &reference[n];
        match (r["kind"].as_str().unwrap(), &outcomes[n]) {
            ("ok", Outcome::Written) => {
                let ours = fs::read(&case.job.cfile).unwrap();
                let theirs = fs::read(&case.reference).unwrap();
                if refcount_dependent_marshal(py) {
                    identical += usize::from(ours == theirs);
                    normalise.push((case.job.cfile.clone(), case.reference.clone()));
                } else {
                    assert!(ours == theirs, "{what}: pyc differs from py_compile's");
                }
                let src_mode =
                    fs::metadata(&case.job.source).unwrap().permissions().mode() & 0o7777;
                assert_eq!(
                    pyc_mode(&case.job.cfile),
                    (src_mode | 0o200) & 0o666 & !mask,
                    "{what}: mode"
                );
                assert_eq!(
                    pyc_mode(&case.job.cfile),
                    pyc_mode(&case.reference),
                    "{what}: mode vs py_compile"
                );
                written += 1;
            }
            (
                "syntax",
                Outcome::SyntaxError {
                    path,
                    line,
                    message,
                },
            ) => {
                assert_eq!(path, &case.job.source, "{what}");
                assert_eq!(line.map(i64::from), r["line"].as_i64(), "{what}: line");
                assert!(
                    message.starts_with(r["exc"].as_str().unwrap()),
                    "{what}: {message}"
                );
                let described = outcomes[n].describe();
                let expected_prefix = match line {
                    Some(line) => format!("{}:{line}: ", case.job.source.display()),
                    None => format!("{}: ", case.job.source.display()),
                };
                assert!(
                    described.starts_with(&expected_prefix),
                    "{what}: {described}"
                );
                assert!(
                    !case.job.cfile.exists(),
                    "{what}: no pyc for a syntax error"
                );
            }
            ("error", Outcome::Failed { message } | Outcome::Rejected { message }) => {
                let exc = r["exc"].as_str().unwrap();
                assert!(
                    message.contains(exc),
                    "{what}: {message} (py_compile raised {exc})"
                );
                assert!(!message.contains('\n'), "{what}: one line");
            }
            (kind, outcome) => panic!("{what}: py_compile gave {kind}, the pool {outcome:?}"),
        }
    }
    if refcount_dependent_marshal(py) {
        same_after_normalising(py, tmp.path(), &normalise);
        common::note(&format!(
            "[compile_pool] {label}: marshal depends on refcounts before 3.11; {identical}/{} pycs \
             byte-identical, all identical after re-marshalling in one process",
            normalise.len()
        ));
    }
    // The refused targets are untouched.
    assert!(fs::symlink_metadata(&link_cfile)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "do not overwrite");
    assert!(dir_cfile.is_dir());
    assert!(
        matches!(&outcomes[matrix_len - 2], Outcome::Failed { message } if message.contains("symlink"))
    );

    // In-place pycs equal the matrix's for the same (opt, mode) and source.
    for (n, job) in in_place.iter().enumerate() {
        let outcome = &outcomes[matrix_len + n];
        assert!(outcome.is_written(), "{label}: {}", outcome.describe());
        let i = n % tree.modules.len();
        if refcount_dependent_marshal(py) {
            continue; // covered by the normalised comparison above
        }
        let twin = cases
            .iter()
            .position(|c| {
                c.job.optimize == job.optimize
                    && c.job.invalidation == job.invalidation
                    && c.job.source == job.source
            })
            .unwrap();
        assert_eq!(
            fs::read(&job.cfile).unwrap(),
            fs::read(&cases[twin].reference).unwrap(),
            "{label}: module {i}"
        );
    }

    // importlib accepts them: `-v` says "<pyc> matches <source>" for every
    // module and never "code object from <source>" (a recompile).
    let names = tmp.path().join("names.txt");
    let name_lines: Vec<String> = tree
        .modules
        .iter()
        .map(|(n, _)| hex(n.as_bytes()))
        .collect();
    fs::write(&names, name_lines.join("\n")).unwrap();
    for opt in 0..3u32 {
        let mut cmd = py.cmd();
        cmd.env("PYTHONPATH", tree.root.join("src"));
        if opt == 1 {
            cmd.env("PYTHONDONTWRITEBYTECODE", "1");
        }
        cmd.arg("-v");
        for _ in 0..opt {
            cmd.arg("-O");
        }
        let out = cmd
            .args(["--check-hash-based-pycs", "always", "-c", IMPORTER])
            .arg(&names)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{label} -O x{opt}: {err}");
        for (n, job) in in_place
            .iter()
            .enumerate()
            .filter(|(_, j)| j.optimize == opt)
        {
            let _ = n;
            let src = python_repr_path(&job.source);
            let pyc = python_repr_path(&job.cfile);
            let matches = format!("# {pyc} matches {src}");
            assert!(
                err.lines().any(|l| l == matches),
                "{label} -O x{opt}: no `{matches}` in:\n{err}"
            );
            let recompiled = err
                .lines()
                .filter(|l| l.starts_with("# code object from"))
                .any(|l| l.ends_with(&src) || l.ends_with(&format!("{src}'")));
            assert!(
                !recompiled,
                "{label} -O x{opt}: {src} was compiled from source"
            );
        }
    }
    if py.version >= (3, 11, 0) {
        no_debug_ranges(py, tmp.path(), &tree);
    }
    common::note(&format!(
        "[compile_pool] {label}: {} jobs, {written} matrix pycs compared with py_compile's, in {elapsed:.2?}",
        jobs.len()
    ));
}

/// Before 3.11, marshal flags an interned string as shared only
/// when its refcount is above 1, so the bytes depend on which modules the
/// writing process has loaded; py_compile's own output varies the same way.
fn refcount_dependent_marshal(py: &Python) -> bool {
    py.version < (3, 11, 0)
}

/// For each (ours, reference) pair: equal 16-byte headers, and equal bytes
/// once both code objects are loaded into one process and marshalled again
/// (same process state for both), with equal `co_filename`.
fn same_after_normalising(py: &Python, dir: &Path, pairs: &[(PathBuf, PathBuf)]) {
    const SCRIPT: &str = r#"
import sys, os, marshal
bad = []
for line in open(sys.argv[1]).read().split():
    a, b = (open(os.fsdecode(bytes.fromhex(h)), 'rb').read() for h in line.split(':'))
    ca, cb = marshal.loads(a[16:]), marshal.loads(b[16:])
    if a[:16] != b[:16] or ca.co_filename != cb.co_filename or marshal.dumps(ca) != marshal.dumps(cb):
        bad.append(line)
print(len(bad))
"#;
    let list = dir.join("pairs.txt");
    let lines: Vec<String> = pairs
        .iter()
        .map(|(a, b)| {
            format!(
                "{}:{}",
                hex(a.as_os_str().as_bytes()),
                hex(b.as_os_str().as_bytes())
            )
        })
        .collect();
    fs::write(&list, lines.join("\n")).unwrap();
    let out = py.cmd().arg("-c").arg(SCRIPT).arg(&list).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        "0",
        "{}: differing pycs: {}",
        py.label(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 3.11+: `extra_flags = -X no_debug_ranges` reaches the worker: its pycs
/// equal py_compile's under the same flag and differ from the default ones.
fn no_debug_ranges(py: &Python, dir: &Path, tree: &Tree) {
    let sources: Vec<&PathBuf> = tree.modules.iter().map(|(_, p)| p).take(4).collect();
    let lines: Vec<String> = sources
        .iter()
        .enumerate()
        .map(|(i, src)| {
            let cfile = dir.join(format!("ndr-ref-{i}.pyc"));
            format!(
                "C 0 0 {} {}",
                hex(src.as_os_str().as_bytes()),
                hex(cfile.as_os_str().as_bytes())
            )
        })
        .collect();
    let reference = run_reference(py, dir, &["-X", "no_debug_ranges"], &lines);
    assert!(
        reference.iter().all(|r| r["kind"] == "ok"),
        "{}",
        py.label()
    );
    let jobs: Vec<CompileJob> = sources
        .iter()
        .enumerate()
        .map(|(i, src)| CompileJob {
            pyc: PycTarget {
                source: (*src).clone(),
                cfile: dir.join(format!("ndr-ours-{i}.pyc")),
            },
            optimize: 0,
            invalidation: InvalidationMode::Timestamp,
        })
        .collect();
    let config = PoolConfig {
        extra_flags: vec!["-X".into(), "no_debug_ranges".into()],
        ..PoolConfig::new(&py.path)
    };
    let out = compile_all(&jobs, &config, &|_, _| {}).unwrap();
    for (i, job) in jobs.iter().enumerate() {
        assert!(out[i].is_written(), "{}: {}", py.label(), out[i].describe());
        let ours = fs::read(&job.cfile).unwrap();
        assert!(
            ours == fs::read(dir.join(format!("ndr-ref-{i}.pyc"))).unwrap(),
            "{}: {i}",
            py.label()
        );
        let default = fs::read(dir.join("ours/o0-timestamp").join(format!("{i}.pyc"))).unwrap();
        assert!(
            ours.len() < default.len(),
            "{}: -X no_debug_ranges had no effect",
            py.label()
        );
    }
}

/// How `-v` prints a path (surrogate-escaped bytes as `\udcXX`).
fn python_repr_path(p: &Path) -> String {
    let mut s = String::new();
    for chunk in p.as_os_str().as_bytes().utf8_chunks() {
        s.push_str(chunk.valid());
        for b in chunk.invalid() {
            s.push_str(&format!("\\udc{b:02x}"));
        }
    }
    s
}

#[test]
fn pycs_match_py_compile_and_importlib_accepts_them() {
    let pythons = common::pythons();
    common::report("compile_pool::differential", &pythons);
    for (k, py) in pythons.iter().enumerate() {
        differential(py, k);
    }
}

/// CPython 3.6: timestamp pycs match py_compile; hash modes are refused.
#[test]
fn python36_timestamp_only() {
    let pythons: Vec<Python> = common::pythons_at_least((3, 6))
        .into_iter()
        .filter(|p| p.version.1 == 6)
        .collect();
    if pythons.is_empty() {
        common::note("[compile_pool::python36] no CPython 3.6 here; skipped");
        return;
    }
    common::report("compile_pool::python36", &pythons);
    for py in &pythons {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("m.py");
        fs::write(&src, module_body(3)).unwrap();
        let ours = tmp.path().join("ours.pyc");
        let theirs = tmp.path().join("theirs.pyc");
        let script = "import sys, py_compile; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True, optimize=1)";
        let st = py
            .cmd()
            .args(["-c", script])
            .arg(&src)
            .arg(&theirs)
            .status()
            .unwrap();
        assert!(st.success());
        let jobs = [
            CompileJob {
                pyc: PycTarget {
                    source: src.clone(),
                    cfile: ours.clone(),
                },
                optimize: 1,
                invalidation: InvalidationMode::Timestamp,
            },
            CompileJob {
                pyc: PycTarget {
                    source: src.clone(),
                    cfile: tmp.path().join("hash.pyc"),
                },
                optimize: 0,
                invalidation: InvalidationMode::CheckedHash,
            },
        ];
        let out = compile_all(&jobs, &PoolConfig::new(&py.path), &|_, _| {}).unwrap();
        assert_eq!(out[0], Outcome::Written, "{}", py.label());
        assert_eq!(
            fs::read(&ours).unwrap(),
            fs::read(&theirs).unwrap(),
            "{}",
            py.label()
        );
        assert!(
            matches!(&out[1], Outcome::Failed { message } if message.contains("3.7")),
            "{:?}",
            out[1]
        );
    }
}

/// Crashes, exits, hangs: each interpreter, in parallel.
#[test]
fn faults_are_retried_timed_out_and_reported() {
    let pythons = common::pythons();
    common::report("compile_pool::faults", &pythons);
    std::thread::scope(|s| {
        for py in &pythons {
            s.spawn(move || faults(py));
        }
    });
}

fn faults(py: &Python) {
    let label = py.label();
    let tmp = tempfile::tempdir().unwrap();
    let names = [
        "ok_a",
        "kolosal_hook_crash_first",
        "kolosal_hook_crash_always",
        "ok_b",
        "kolosal_hook_hang",
        "kolosal_hook_exit_always",
        "ok_c",
    ];
    let jobs: Vec<CompileJob> = names
        .iter()
        .map(|n| {
            let source = tmp.path().join(format!("{n}.py"));
            fs::write(&source, format!("NAME = {n:?}\n")).unwrap();
            CompileJob {
                pyc: PycTarget {
                    source,
                    cfile: tmp.path().join("__pycache__").join(format!("{n}.pyc")),
                },
                optimize: 0,
                invalidation: InvalidationMode::Timestamp,
            }
        })
        .collect();
    let timeout = Duration::from_millis(1500);
    let config = PoolConfig {
        workers: 2,
        timeout,
        test_hooks: true,
        ..PoolConfig::new(&py.path)
    };
    let calls = Mutex::new(BTreeMap::<usize, u32>::new());
    let started = Instant::now();
    let out = compile_all(&jobs, &config, &|i, _| {
        *calls.lock().unwrap().entry(i).or_default() += 1
    })
    .unwrap();
    let elapsed = started.elapsed();
    assert!(
        calls.into_inner().unwrap().values().all(|&c| c == 1),
        "{label}"
    );
    let by_name = |n: &str| &out[names.iter().position(|x| *x == n).unwrap()];
    for ok in ["ok_a", "ok_b", "ok_c", "kolosal_hook_crash_first"] {
        assert_eq!(by_name(ok), &Outcome::Written, "{label}: {ok}");
        let pyc = fs::read(tmp.path().join("__pycache__").join(format!("{ok}.pyc"))).unwrap();
        assert!(pyc.len() > 16, "{label}: {ok}");
    }
    let msg = |n: &str| match by_name(n) {
        Outcome::Failed { message } => message.clone(),
        other => panic!("{label}: {n}: {other:?}"),
    };
    let crash = msg("kolosal_hook_crash_always");
    assert!(
        crash.contains("died on this file twice") && crash.contains("signal 9"),
        "{label}: {crash}"
    );
    let exit = msg("kolosal_hook_exit_always");
    assert!(
        exit.contains("died on this file twice") && exit.contains("status 3"),
        "{label}: {exit}"
    );
    let hang = msg("kolosal_hook_hang");
    assert!(hang.contains("timed out"), "{label}: {hang}");
    for m in [&crash, &exit, &hang] {
        assert!(
            !m.contains('\n') && m.starts_with(tmp.path().to_str().unwrap()),
            "{label}: {m}"
        );
    }
    // One time-out, a handful of restarts: far below 2 x timeout + slack.
    assert!(
        elapsed < timeout * 2 + Duration::from_secs(8),
        "{label}: took {elapsed:?}"
    );

    // Without test_hooks the same names are ordinary files.
    let plain = PoolConfig {
        test_hooks: false,
        timeout,
        ..PoolConfig::new(&py.path)
    };
    let again = compile_all(&jobs, &plain, &|_, _| {}).unwrap();
    assert!(again.iter().all(Outcome::is_written), "{label}: {again:?}");
}

#[test]
fn broken_interpreters_are_pool_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("m.py");
    fs::write(&src, "X = 1\n").unwrap();
    let jobs = [CompileJob {
        pyc: PycTarget {
            source: src,
            cfile: tmp.path().join("m.pyc"),
        },
        optimize: 0,
        invalidation: InvalidationMode::Timestamp,
    }];
    let missing = tmp.path().join("no-such-python");
    // No jobs: nothing is started, so even a missing interpreter is fine.
    assert_eq!(
        compile_all(&[], &PoolConfig::new(&missing), &|_, _| {}).unwrap(),
        vec![]
    );

    let err = compile_all(&jobs, &PoolConfig::new(&missing), &|_, _| {}).unwrap_err();
    assert!(matches!(err, PoolError::Spawn { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("no-such-python") && !text.contains('\n'),
        "{text}"
    );

    // Starts, but is not a Python: exits without greeting.
    for fake in ["/bin/true", "/bin/false"] {
        let started = Instant::now();
        let err = compile_all(&jobs, &PoolConfig::new(fake), &|_, _| {}).unwrap_err();
        assert!(
            matches!(err, PoolError::Handshake { .. }),
            "{fake}: {err:?}"
        );
        assert!(!err.to_string().contains('\n'), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{fake}");
    }
    assert!(!tmp.path().join("m.pyc").exists());
}

/// Measurements (not assertions): throughput on one stdlib with 2 workers,
/// and the 1-vs-2-worker crossover for small trees. Run with
/// `cargo test --release --test compile_pool -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_throughput_and_crossover() {
    let pythons = common::pythons();
    let py = pythons
        .iter()
        .find(|p| p.version.1 == 11)
        .unwrap_or(&pythons[0]);
    common::report("compile_pool::measure", std::slice::from_ref(py));
    let lib = py
        .path
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join(format!("lib/python{}.{}", py.version.0, py.version.1));
    let tmp = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    for entry in walkdir::WalkDir::new(&lib)
        .into_iter()
        .filter_map(Result::ok)
    {
        let p = entry.path();
        let s = p.to_string_lossy();
        if p.extension().is_some_and(|e| e == "py")
            && !s.contains("site-packages")
            && !s.contains("/test")
        {
            jobs.push(CompileJob {
                pyc: PycTarget {
                    source: p.to_path_buf(),
                    cfile: tmp.path().join(format!("{}.pyc", jobs.len())),
                },
                optimize: 0,
                invalidation: InvalidationMode::Timestamp,
            });
        }
    }
    for workers in [1, 2] {
        let config = PoolConfig {
            workers,
            ..PoolConfig::new(&py.path)
        };
        let t = Instant::now();
        let out = compile_all(&jobs, &config, &|_, _| {}).unwrap();
        let dt = t.elapsed();
        let ok = out.iter().filter(|o| o.is_written()).count();
        common::note(&format!(
            "[measure] {}: {} files ({ok} written), {workers} worker(s): {dt:.2?} = {:.0} files/s",
            py.label(),
            jobs.len(),
            jobs.len() as f64 / dt.as_secs_f64()
        ));
    }
    // Crossover: n files of ~2 KiB each, 1 vs 2 workers.
    let src_dir = tmp.path().join("small");
    fs::create_dir_all(&src_dir).unwrap();
    for n in [1usize, 4, 16, 64, 256] {
        let small: Vec<CompileJob> = (0..n)
            .map(|i| {
                let source = src_dir.join(format!("s{n}_{i}.py"));
                fs::write(&source, module_body(i).repeat(2)).unwrap();
                CompileJob {
                    pyc: PycTarget {
                        cfile: source.with_extension("pyc"),
                        source,
                    },
                    optimize: 0,
                    invalidation: InvalidationMode::Timestamp,
                }
            })
            .collect();
        let bytes: u64 = small
            .iter()
            .map(|j| fs::metadata(&j.source).unwrap().len())
            .sum();
        let mut line = format!("[measure] {n:3} files, {bytes:7} bytes:");
        for workers in [1, 2] {
            let config = PoolConfig {
                workers,
                ..PoolConfig::new(&py.path)
            };
            let reps = 10;
            let cpu0 = children_cpu();
            let t = Instant::now();
            for _ in 0..reps {
                compile_all(&small, &config, &|_, _| {}).unwrap();
            }
            let wall = t.elapsed().as_secs_f64() * 1000.0 / reps as f64;
            let cpu = (children_cpu() - cpu0) * 1000.0 / reps as f64;
            line.push_str(&format!(
                " | {workers}w wall {wall:.1} ms, worker cpu {cpu:.1} ms"
            ));
        }
        common::note(&line);
    }
}

/// User + system CPU seconds of all reaped children so far.
fn children_cpu() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
