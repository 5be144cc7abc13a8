//! The code cache against real interpreters.
//!
//! * Differential: a tree compiled once, copied elsewhere (a path with a
//!   space and non-ASCII), is restored from the cache with no worker
//!   started; every pyc is byte-identical to `py_compile`'s at the new
//!   path, `python -v` loads each one, and the loaded code objects equal a
//!   fresh `compile()` at the new path, recursively (code, constants,
//!   names, line tables, positions, `co_filename`), at -O 0/1/2.
//! * The warning configuration is part of the key: a body cached under
//!   `-W ignore` is not used for a launch whose filters show the warning.
//! * Faults: garbage and truncated entries, a full cache disk, a read-only
//!   cache, a cache owned by another user, 16 concurrent compiles sharing
//!   one cache. Nothing is lost, no wrong pyc is written, the program runs.

use crate::common;

use common::{clean_command, kolosal_bin, launcher_bin, Python};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Sources exercising what a body holds: nested code, closures, lambdas,
/// comprehensions, docstrings and asserts (so -O levels differ), f-strings,
/// non-ASCII text and names, a long body, a latin-1 coding cookie, a
/// module whose constants repeat across functions.
fn tree_files() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = vec![
        ("app/__init__.py".into(), b"\"\"\"The app.\"\"\"\n".to_vec()),
        (
            "app/core.py".into(),
            b"\"\"\"Core.\"\"\"\nimport os\n\ndef outer(a, *args, k=1, **kw):\n    \"\"\"Doc.\"\"\"\n    assert a, 'a'\n    def inner(b):\n        return lambda c: (a, b, c, k)\n    return inner\n\nclass K:\n    x = [i * i for i in range(3)]\n    def m(self, v):\n        try:\n            return {k: v for k in self.x}\n        except KeyError as e:\n            raise ValueError(f'{v!r:>4}') from e\n\nasync def co():\n    async with None as x:\n        yield x\n".to_vec(),
        ),
        (
            "app/texts.py".into(),
            "S = \"\u{e9}t\u{e9} \u{1f600}\"\ncaf\u{e9} = S * 2\nB = b'\\x00\\xff'\nF = 1.5; C = 2j; N = 10**30; T = (1, 'a', None, ...)\nFS = frozenset({1, 2})\n".as_bytes().to_vec(),
        ),
        (
            "app/latin.py".into(),
            b"# -*- coding: latin-1 -*-\nS = \"\xe9\"\ndef f():\n    return S\n".to_vec(),
        ),
        ("app/empty.py".into(), b"".to_vec()),
    ];
    let mut long = String::from("\"\"\"Long.\"\"\"\n");
    for i in 0..400 {
        long.push_str(&format!(
            "def f{i}(x):\n    \"\"\"f{i}\"\"\"\n    assert x != {i}\n    return [x + {i} for _ in range(2)]\n"
        ));
    }
    v.push(("app/long.py".into(), long.into_bytes()));
    for i in 0..8 {
        v.push((
            format!("app/gen/g{i}.py"),
            format!("\"\"\"G{i}.\"\"\"\nfrom app import core\nV{i} = core.outer({i} + 1)\n")
                .into_bytes(),
        ));
    }
    v.push(("app/gen/__init__.py".into(), Vec::new()));
    v
}

fn write_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (rel, body) in files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, body).unwrap();
    }
}

fn sources(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "py"))
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// `kolosal compile` with its own cache and the debug timeline.
fn compile_cmd(py: &Path, cache: &Path, args: &[&str], tree: &Path) -> Command {
    let mut c = clean_command(kolosal_bin());
    c.env("KOLOSAL_CACHE_DIR", cache)
        .env("KOLOSAL_LOG", "debug")
        .arg("compile")
        .arg("--python")
        .arg(py)
        .args(args)
        .arg(tree);
    c
}

fn run(mut c: Command) -> Output {
    let o = c.output().expect("run");
    assert!(o.status.success(), "{}", common::describe(&o));
    o
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Workers the command started, from its debug timeline.
fn workers_started(o: &Output) -> usize {
    stderr(o).matches("compile: starting a worker").count()
}

/// Checks every pyc of `root` at `levels` in `mode`, in one interpreter per
/// level (run with the level's -O and `-v`): the pyc is byte-identical to
/// what `py_compile` writes for the same path, the import system loads it
/// (a `code object from` line), and the code object it gives equals a
/// fresh `compile()` at that path recursively, `co_filename` included.
const CHECK: &str = r#"
import importlib.util, importlib.machinery, marshal, os, py_compile, sys, tempfile
root, mode = sys.argv[1], sys.argv[2]
level = sys.flags.optimize
inv = py_compile.PycInvalidationMode[mode.upper().replace("-", "_")]
ATTRS = ["co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals",
         "co_stacksize", "co_flags", "co_code", "co_names", "co_varnames",
         "co_freevars", "co_cellvars", "co_filename", "co_name", "co_qualname",
         "co_firstlineno", "co_lnotab", "co_linetable", "co_exceptiontable"]
def same(a, b, where):
    if type(a) is not type(b):
        raise SystemExit("%s: %r vs %r" % (where, type(a), type(b)))
    if isinstance(a, type(same.__code__)):
        for attr in ATTRS:
            if hasattr(a, attr) and getattr(a, attr) != getattr(b, attr):
                raise SystemExit("%s.%s differs: %r vs %r" % (where, attr, getattr(a, attr), getattr(b, attr)))
        if hasattr(a, "co_positions") and list(a.co_positions()) != list(b.co_positions()):
            raise SystemExit("%s: positions differ" % where)
        if len(a.co_consts) != len(b.co_consts):
            raise SystemExit("%s: consts differ" % where)
        for i, (x, y) in enumerate(zip(a.co_consts, b.co_consts)):
            same(x, y, "%s.%s[%d]" % (where, a.co_name, i))
    elif isinstance(a, (tuple, frozenset)):
        if len(a) != len(b):
            raise SystemExit("%s: %r vs %r" % (where, a, b))
        for x, y in zip(sorted(a, key=repr), sorted(b, key=repr)):
            same(x, y, where)
    elif a != b and a == a:
        raise SystemExit("%s: %r vs %r" % (where, a, b))
tmp = tempfile.mkdtemp()
n = 0
sys.path.insert(0, root)
for dirpath, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    for f in sorted(files):
        if not f.endswith(".py"):
            continue
        src = os.path.join(dirpath, f)
        cfile = importlib.util.cache_from_source(src, optimization=level or "")
        ref = os.path.join(tmp, "ref.pyc")
        py_compile.compile(src, cfile=ref, doraise=True, optimize=level, invalidation_mode=inv)
        # The header exactly; the body as code (marshal's FLAG_REF bits
        # follow reference counts in the writing process, so py_compile's
        # bytes may differ from any worker's, fresh or not).
        with open(ref, "rb") as a, open(cfile, "rb") as b:
            ra, rb = a.read(), b.read()
            if ra[:16] != rb[:16]:
                raise SystemExit("pyc header differs from py_compile's: " + cfile)
            same(marshal.loads(rb[16:]), marshal.loads(ra[16:]), cfile)
        rel = os.path.relpath(src, root)[:-3].replace(os.sep, ".")
        name = rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
        loader = importlib.machinery.SourceFileLoader(name, src)
        loaded = loader.get_code(name)
        with open(src, "rb") as s:
            fresh = compile(s.read(), src, "exec", dont_inherit=True)
        same(loaded, fresh, src)
        __import__(name)
        n += 1
print("checked", n)
"#;

fn check_tree(py: &Python, root: &Path, level: u32, mode: &str) -> usize {
    let mut c = py.cmd();
    match level {
        0 => {}
        1 => {
            c.arg("-O");
        }
        _ => {
            c.arg("-OO");
        }
    }
    if mode != "timestamp" {
        c.args(["--check-hash-based-pycs", "always"]);
    }
    let o = c
        .arg("-v")
        .arg("-c")
        .arg(CHECK)
        .arg(root)
        .arg(mode)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{} -O{level} {mode}: {}",
        py.label(),
        common::describe(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let n: usize = out
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("checked "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    // `-v` names the pyc of every module the import system loaded from one.
    let err = stderr(&o);
    for src in sources(root) {
        if src.file_name().is_some_and(|f| f == "__init__.py") && src.parent() == Some(root) {
            continue;
        }
        let stem = src.file_stem().unwrap().to_string_lossy().into_owned();
        let tag = format!("{stem}.cpython-{}{}", py.version.0, py.version.1);
        let dir = src.parent().unwrap().join("__pycache__");
        let loaded = err.lines().any(|l| {
            l.contains("code object from")
                && l.contains(&*dir.to_string_lossy())
                && l.contains(&tag)
        });
        assert!(
            loaded,
            "{}: -v shows no pyc load for {}",
            py.label(),
            src.display()
        );
    }
    n
}

fn under_test() -> Vec<Python> {
    let all = common::pythons();
    if common::heavy() || all.len() <= 2 {
        return all;
    }
    vec![all[0].clone(), all[all.len() - 1].clone()]
}

fn copy_tree(from: &Path, to: &Path) {
    for src in sources(from) {
        let rel = src.strip_prefix(from).unwrap();
        let dst = to.join(rel);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(&src, &dst).unwrap();
    }
}

#[test]
fn restored_pycs_equal_fresh_compiles_at_the_new_path() {
    let pythons = under_test();
    common::report("code_cache/differential", &pythons);
    for (i, py) in pythons.iter().enumerate() {
        let mode = ["timestamp", "checked-hash", "unchecked-hash"][i % 3];
        let t = tempfile::tempdir().unwrap();
        let cache = t.path().join("cache");
        let a = t.path().join("first");
        write_tree(&a, &tree_files());
        let levels = ["-o", "0", "-o", "1", "-o", "2", "--invalidation-mode", mode];
        let first = run(compile_cmd(&py.path, &cache, &levels, &a));
        assert!(workers_started(&first) > 0);
        // Another place, with a space and non-ASCII in its path.
        let b = t.path().join("second copy \u{e9}");
        copy_tree(&a, &b);
        let second = run(compile_cmd(&py.path, &cache, &levels, &b));
        assert_eq!(
            workers_started(&second),
            0,
            "{}: a worker started for a cached tree:\n{}",
            py.label(),
            stderr(&second)
        );
        let files = tree_files().len();
        assert!(
            stderr(&second).contains(&format!(
                "{n} of {n} pycs restored, 0 to compile",
                n = files * 3
            )),
            "{}",
            stderr(&second)
        );
        for level in 0..3 {
            let n = check_tree(py, &b, level, mode);
            assert_eq!(n, files);
        }
        // Byte for byte what a worker writes at the new path.
        let restored = pyc_bytes(&b);
        let mut fresh = compile_cmd(&py.path, &cache, &levels, &b);
        fresh.env("KOLOSAL_CODE_CACHE_SIZE", "0").arg("--force");
        let o = run(fresh);
        assert!(workers_started(&o) > 0);
        let compiled = pyc_bytes(&b);
        assert_eq!(restored.len(), files * 3);
        for ((path, ours), (_, theirs)) in restored.iter().zip(&compiled) {
            assert!(
                ours == theirs,
                "{}: {} differs from a fresh compile",
                py.label(),
                path.display()
            );
        }
    }
}

/// Every pyc below `root` with its contents and mode, sorted by path.
fn pyc_bytes(root: &Path) -> Vec<(PathBuf, (Vec<u8>, u32))> {
    let mut v: Vec<(PathBuf, (Vec<u8>, u32))> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "pyc"))
        .map(|e| {
            let mode = fs::metadata(e.path()).unwrap().mode() & 0o7777;
            (e.path().to_path_buf(), (fs::read(e.path()).unwrap(), mode))
        })
        .collect();
    v.sort();
    v
}

/// A module that warns under the launch's filters is left to the
/// interpreter even when a body of it was cached under other filters.
#[test]
fn warning_filters_are_part_of_the_key() {
    let pythons = common::pythons_at_least((3, 12));
    let Some(py) = pythons.last() else {
        common::note(
            "[code_cache/warnings] no CPython >= 3.12: SyntaxWarning for escapes needs it",
        );
        return;
    };
    common::report("code_cache/warnings", std::slice::from_ref(py));
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let launch = |dir: &Path, flags: &[&str]| {
        let mut c = clean_command(launcher_bin());
        c.env("KOLOSAL_CACHE_DIR", &cache)
            .env("KOLOSAL_PYTHON", &py.path)
            .env("KOLOSAL_BACKGROUND", "0")
            .env("KOLOSAL_LOG", "debug")
            .current_dir(dir)
            .args(flags)
            .arg("main.py");
        c.output().unwrap()
    };
    let files: Vec<(String, Vec<u8>)> = vec![
        ("main.py".into(), b"import esc\nprint(esc.P)\n".to_vec()),
        ("esc.py".into(), b"P = '\\d+'\n".to_vec()),
    ];
    let a = t.path().join("a");
    write_tree(&a, &files);
    let quiet = launch(&a, &["-W", "ignore"]);
    assert!(quiet.status.success(), "{}", common::describe(&quiet));
    assert!(a
        .join("__pycache__")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some()));
    let b = t.path().join("b");
    write_tree(&b, &files);
    let shown = launch(&b, &[]);
    let plain = py
        .cmd()
        .current_dir(&b)
        .arg("-B")
        .arg("main.py")
        .output()
        .unwrap();
    assert_eq!(shown.stdout, plain.stdout);
    let warning = |o: &Output| {
        stderr(o)
            .lines()
            .filter(|l| !l.starts_with("kolosal:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        warning(&plain).contains("SyntaxWarning"),
        "{}",
        stderr(&plain)
    );
    assert_eq!(warning(&shown), warning(&plain));
    assert!(
        !b.join("__pycache__").exists()
            || fs::read_dir(b.join("__pycache__")).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("esc.")),
        "esc.py got a pyc although it warns"
    );
}

fn entries(cache: &Path) -> Vec<PathBuf> {
    let code = cache.join("code");
    let mut v = Vec::new();
    for e in walkdir::WalkDir::new(&code).min_depth(2).max_depth(2) {
        let e = e.unwrap();
        let shard = e.path().parent().unwrap().file_name().unwrap().len() == 2;
        if shard && e.file_type().is_file() {
            v.push(e.into_path());
        }
    }
    v
}

/// Distinct sources of the tree (one entry each).
fn distinct_sources() -> usize {
    let set: std::collections::HashSet<Vec<u8>> = tree_files().into_iter().map(|f| f.1).collect();
    set.len()
}

/// Byte identity with py_compile at level 0, timestamp mode.
fn assert_like_py_compile(py: &Python, root: &Path) {
    let n = check_tree(py, root, 0, "timestamp");
    assert_eq!(n, tree_files().len());
}

#[test]
fn damaged_entries_are_recompiled_and_replaced() {
    let py = under_test().pop().unwrap();
    common::report("code_cache/damaged", std::slice::from_ref(&py));
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let a = t.path().join("a");
    write_tree(&a, &tree_files());
    run(compile_cmd(&py.path, &cache, &[], &a));
    let all = entries(&cache);
    assert_eq!(all.len(), distinct_sources());
    for (i, e) in all.iter().enumerate() {
        let bytes = fs::read(e).unwrap();
        let damaged = match i % 4 {
            0 => bytes[..bytes.len() / 2].to_vec(),
            1 => Vec::new(),
            2 => {
                let mut b = bytes.clone();
                let last = b.len() - 1;
                b[last] ^= 0x40;
                b
            }
            _ => b"garbage".repeat(20),
        };
        fs::write(e, damaged).unwrap();
    }
    let b = t.path().join("b");
    copy_tree(&a, &b);
    let o = run(compile_cmd(&py.path, &cache, &[], &b));
    assert!(workers_started(&o) > 0);
    assert!(stderr(&o).contains("0 of"), "{}", stderr(&o));
    assert_like_py_compile(&py, &b);
    // The damaged entries were replaced by whole ones.
    let c = t.path().join("c");
    copy_tree(&a, &c);
    let o = run(compile_cmd(&py.path, &cache, &[], &c));
    assert_eq!(workers_started(&o), 0, "{}", stderr(&o));
    assert_like_py_compile(&py, &c);
}

#[test]
fn sixteen_concurrent_compiles_share_one_cache() {
    let py = under_test().pop().unwrap();
    common::report("code_cache/concurrent", std::slice::from_ref(&py));
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let trees: Vec<PathBuf> = (0..16).map(|i| t.path().join(format!("t{i}"))).collect();
    for tree in &trees {
        write_tree(tree, &tree_files());
    }
    let children: Vec<_> = trees
        .iter()
        .map(|tree| {
            let mut c = compile_cmd(&py.path, &cache, &["-j", "1"], tree);
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", common::describe(&o));
    }
    for tree in &trees {
        assert_like_py_compile(&py, tree);
    }
    assert_eq!(entries(&cache).len(), distinct_sources());
    let last = t.path().join("last");
    copy_tree(&trees[0], &last);
    let o = run(compile_cmd(&py.path, &cache, &[], &last));
    assert_eq!(workers_started(&o), 0, "{}", stderr(&o));
    assert_like_py_compile(&py, &last);
}

/// A cache owned by another user is refused with one warning; everything
/// still compiles, and nothing is written into it.
#[test]
fn a_cache_of_another_user_is_refused() {
    if unsafe { libc::geteuid() } != 0 {
        common::note("[code_cache/foreign] needs root to chown");
        return;
    }
    let py = under_test().pop().unwrap();
    common::report("code_cache/foreign", std::slice::from_ref(&py));
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    fs::create_dir_all(cache.join("code")).unwrap();
    std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
    let a = t.path().join("a");
    write_tree(&a, &tree_files());
    let mut c = compile_cmd(&py.path, &cache, &[], &a);
    c.env("KOLOSAL_LOG", "warn");
    let o = run(c);
    let refusals = stderr(&o).matches("cache not used").count();
    assert_eq!(refusals, 1, "{}", stderr(&o));
    assert_like_py_compile(&py, &a);
    assert!(entries(&cache).is_empty());
}

fn mount_tmpfs(dir: &Path, opts: &str) -> bool {
    fs::create_dir_all(dir).unwrap();
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A cache on a full disk and then on a read-only one: every pyc is still
/// written (by workers) and right, and the program runs.
#[test]
fn full_and_read_only_cache_disks() {
    if unsafe { libc::geteuid() } != 0 {
        common::note("[code_cache/disk] needs root to mount a tmpfs");
        return;
    }
    let py = under_test().pop().unwrap();
    common::report("code_cache/disk", std::slice::from_ref(&py));
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    assert!(mount_tmpfs(&cache, "size=256k,mode=0700"), "mount tmpfs");
    let _guard = Unmount(cache.clone());
    // Fill the disk but for a few KiB.
    let filler = cache.join("filler");
    let _ = fs::write(&filler, vec![0u8; 240 << 10]);
    let mut files = tree_files();
    files.push((
        "main.py".into(),
        b"import app.core, app.long\nprint(app.long.f3(1))\n".to_vec(),
    ));
    let a = t.path().join("a");
    write_tree(&a, &files);
    let o = run(compile_cmd(&py.path, &cache, &[], &a));
    assert!(workers_started(&o) > 0);
    assert_eq!(check_tree(&py, &a, 0, "timestamp"), files.len());
    let total: u64 = entries(&cache)
        .iter()
        .map(|e| fs::metadata(e).unwrap().size())
        .sum();
    assert!(
        total < 16 << 10,
        "the full disk held {total} bytes of entries"
    );
    // The launcher runs the program from a full cache disk.
    let launch = |dir: &Path| {
        let mut c = clean_command(launcher_bin());
        c.env("KOLOSAL_CACHE_DIR", &cache)
            .env("KOLOSAL_PYTHON", &py.path)
            .env("KOLOSAL_BACKGROUND", "0")
            .current_dir(dir)
            .arg("main.py");
        c.output().unwrap()
    };
    let b = t.path().join("b");
    write_tree(&b, &files);
    let o = launch(&b);
    assert!(o.status.success(), "{}", common::describe(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "[4, 4]\n");
    // Read-only: room again, entries from one tree, then remount.
    fs::remove_file(&filler).unwrap();
    let c1 = t.path().join("c1");
    write_tree(&c1, &files);
    run(compile_cmd(&py.path, &cache, &[], &c1));
    let before = entries(&cache).len();
    assert!(before > 0);
    let remount = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&cache)
        .output()
        .unwrap();
    assert!(remount.status.success(), "{}", common::describe(&remount));
    let mut more = files.clone();
    more.push(("app/extra.py".into(), b"E = 'not cached yet'\n".to_vec()));
    let c2 = t.path().join("c2");
    write_tree(&c2, &more);
    let o = run(compile_cmd(&py.path, &cache, &[], &c2));
    // The cached bodies are still used; the new one is compiled.
    let want = format!(
        "{} of {} pycs restored, 1 to compile",
        more.len() - 1,
        more.len()
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    assert_eq!(check_tree(&py, &c2, 0, "timestamp"), more.len());
    let o = launch(&c2);
    assert!(o.status.success(), "{}", common::describe(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "[4, 4]\n");
}

/// `kolosal cache stats|prune|dir --json`.
#[test]
fn cache_cli_stats_prune_dir() {
    let py = under_test().pop().unwrap();
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let a = t.path().join("a");
    write_tree(&a, &tree_files());
    run(compile_cmd(&py.path, &cache, &[], &a));
    let cli = |args: &[&str]| -> serde_json::Value {
        let mut c = clean_command(kolosal_bin());
        c.env("KOLOSAL_CACHE_DIR", &cache)
            .arg("cache")
            .args(args)
            .arg("--json");
        let o = run(c);
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let stats = cli(&["stats"]);
    assert_eq!(stats["schema"], 1);
    assert_eq!(stats["entries"], distinct_sources() as u64);
    let bytes = stats["bytes"].as_u64().unwrap();
    let on_disk: u64 = entries(&cache)
        .iter()
        .map(|e| fs::metadata(e).unwrap().size())
        .sum();
    assert_eq!(bytes, on_disk);
    let dir = cli(&["dir"]);
    assert_eq!(dir["schema"], 1);
    assert_eq!(
        Path::new(dir["dir"].as_str().unwrap()),
        fs::canonicalize(&cache).unwrap().join("code")
    );
    // Prune to half: the least recently used go first.
    let mut all = entries(&cache);
    all.sort();
    let old = &all[0];
    let f = fs::File::options().write(true).open(old).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    let half = (bytes / 2).to_string();
    let pruned = cli(&["prune", "--max-size", &half]);
    assert_eq!(pruned["schema"], 1);
    assert!(pruned["removed"].as_u64().unwrap() > 0);
    assert!(!old.exists(), "the oldest entry survived");
    let after = cli(&["stats"]);
    assert!(after["bytes"].as_u64().unwrap() <= bytes / 2);
    let all_gone = cli(&["prune", "--max-size", "0"]);
    assert_eq!(all_gone["entries"], 0);
}

/// The launcher's cold path restores from the cache too: a copy of an app
/// launched after the original starts no compile worker, and its pycs are
/// the ones a worker writes there.
#[test]
fn the_launcher_restores_without_a_worker() {
    let py = under_test().pop().unwrap();
    common::report("code_cache/launcher", std::slice::from_ref(&py));
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let mut files = tree_files();
    files.push((
        "main.py".into(),
        b"import app.core, app.texts, app.latin, app.long\nprint(app.long.f3(1), app.latin.f())\n"
            .to_vec(),
    ));
    let launch = |dir: &Path| {
        let mut c = clean_command(launcher_bin());
        c.env("KOLOSAL_CACHE_DIR", &cache)
            .env("KOLOSAL_PYTHON", &py.path)
            .env("KOLOSAL_BACKGROUND", "0")
            .env("KOLOSAL_LOG", "debug")
            .current_dir(dir)
            .arg("main.py");
        c.output().unwrap()
    };
    let a = t.path().join("a");
    write_tree(&a, &files);
    let first = launch(&a);
    assert!(first.status.success(), "{}", common::describe(&first));
    assert!(workers_started(&first) > 0, "{}", stderr(&first));
    let b = t.path().join("b");
    write_tree(&b, &files);
    let second = launch(&b);
    assert!(second.status.success(), "{}", common::describe(&second));
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(workers_started(&second), 0, "{}", stderr(&second));
    assert!(
        stderr(&second).contains("pycs restored, 0 to compile"),
        "{}",
        stderr(&second)
    );
    let restored = pyc_bytes(&b);
    assert!(restored.len() >= 5);
    // What a worker writes at b, with the cache off.
    let mut fresh = compile_cmd(&py.path, &cache, &["--force"], &b.join("app"));
    fresh.env("KOLOSAL_CODE_CACHE_SIZE", "0");
    run(fresh);
    let compiled: std::collections::HashMap<PathBuf, (Vec<u8>, u32)> =
        pyc_bytes(&b).into_iter().collect();
    for (path, ours) in &restored {
        assert!(
            compiled.get(path) == Some(ours),
            "{} (bytes or mode) differs from a fresh compile",
            path.display()
        );
    }
}
