//! `kolosal compile` against `python -m compileall`, option by option: on
//! the same tree, the same set of pycs, byte-identical apart from the mtime
//! field of the header (both write timestamp pycs of the same sources, so
//! even that field agrees unless the clock moved a source).
//!
//! Each case runs compileall first, takes every pyc it wrote, removes them,
//! then runs `kolosal compile --python P` with the same options on the same
//! tree. The tree holds packages, a sub-sub-directory (for `-r`), modules
//! whose name a `-x` pattern matches, a symlink leading out of the tree
//! (for `-e`) and a traceback-raising function, so a wrong `co_filename`
//! (`-d`, `-s`, `-p`) shows in the bytes.
//!
//! Interpreters: the oldest and the newest found; every one with
//! KOLOSAL_TEST_HEAVY=1.

use crate::common;

use common::{clean_command, kolosal_bin, Python};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

/// The tree, under `tmp/tree`, plus `tmp/outside/o.py` that `tree/link.py`
/// points at.
fn make_tree(tmp: &Path) {
    let t = tmp.join("tree");
    let raise = "def f():\n    \"\"\"Doc.\"\"\"\n    assert f\n    raise ValueError(__file__)\n";
    write(&t, "a.py", raise);
    write(&t, "pkg/__init__.py", "\"\"\"Pkg.\"\"\"\n");
    write(&t, "pkg/m.py", raise);
    write(&t, "pkg/sub/__init__.py", "");
    write(&t, "pkg/sub/deep.py", raise);
    write(&t, "pkg/sub/deeper/x.py", "X = 1\n");
    write(&t, "skip_me.py", "S = 1\n");
    write(&t, "pkg/skip_too.py", "S = 2\n");
    write(tmp, "outside/o.py", "O = 1\n");
    std::os::unix::fs::symlink("../outside/o.py", t.join("link.py")).unwrap();
    write(&t, "inside_target.py", "I = 1\n");
    std::os::unix::fs::symlink("inside_target.py", t.join("link_in.py")).unwrap();
}

/// Every pyc under `dir` (relative path → bytes), symlinks not followed.
fn pycs(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let e = e.unwrap();
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "pyc") {
            let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
            out.insert(rel, fs::read(e.path()).unwrap());
        }
    }
    out
}

fn remove_pycs(dir: &Path) {
    for (rel, _) in pycs(dir) {
        fs::remove_file(dir.join(rel)).unwrap();
    }
}

/// The header without its mtime field (bytes 8..12 of a 3.7+ timestamp pyc).
fn masked(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    if v.len() >= 16 && v[4..8] == [0, 0, 0, 0] {
        v[8..12].fill(0);
    }
    v
}

struct Case {
    name: &'static str,
    /// Oldest (major, minor) whose compileall has the options.
    since: (u32, u32),
    args: &'static [&'static str],
    /// Text fed on stdin (for `-i -`).
    stdin: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "default",
        since: (3, 7),
        args: &[],
        stdin: None,
    },
    Case {
        name: "-d",
        since: (3, 7),
        args: &["-d", "/build/root"],
        stdin: None,
    },
    Case {
        name: "-d relative",
        since: (3, 7),
        args: &["-d", "img"],
        stdin: None,
    },
    Case {
        name: "-r 1",
        since: (3, 7),
        args: &["-r", "1"],
        stdin: None,
    },
    Case {
        name: "-r 0",
        since: (3, 7),
        args: &["-r", "0"],
        stdin: None,
    },
    Case {
        name: "-x",
        since: (3, 7),
        args: &["-x", "skip_[a-z]+\\.py$"],
        stdin: None,
    },
    Case {
        name: "-b",
        since: (3, 7),
        args: &["-b"],
        stdin: None,
    },
    Case {
        name: "-d -i FILE",
        since: (3, 7),
        args: &["-d", "/b", "-i", "list.txt"],
        stdin: None,
    },
    Case {
        name: "-i FILE",
        since: (3, 7),
        args: &["-i", "list.txt"],
        stdin: None,
    },
    Case {
        name: "-i -",
        since: (3, 7),
        args: &["-i", "-"],
        stdin: Some("tree/pkg/sub\n  tree/a.py  \n"),
    },
    Case {
        name: "-s",
        since: (3, 9),
        args: &["-s", "tree/pkg"],
        stdin: None,
    },
    Case {
        name: "-s -p",
        since: (3, 9),
        args: &["-s", "tree", "-p", "/opt/app"],
        stdin: None,
    },
    Case {
        name: "-p",
        since: (3, 9),
        args: &["-p", "/opt/app"],
        stdin: None,
    },
    Case {
        name: "-o 1 -o 2",
        since: (3, 9),
        args: &["-o", "1", "-o", "2"],
        stdin: None,
    },
    Case {
        name: "-e",
        since: (3, 9),
        args: &["-e", "tree"],
        stdin: None,
    },
];

#[test]
fn compileall_parity_per_option() {
    let mut pythons = common::pythons();
    if !common::heavy() && pythons.len() > 2 {
        pythons = vec![pythons[0].clone(), pythons[pythons.len() - 1].clone()];
    }
    common::report("compileall_parity", &pythons);
    let mut ran = Vec::new();
    for py in &pythons {
        for case in CASES {
            if (py.version.0, py.version.1) < case.since {
                continue;
            }
            check_case(py, case);
            ran.push(format!("{} {}", py.version.1, case.name));
        }
    }
    common::note(&format!("[compileall_parity] cases: {}", ran.join(", ")));
}

fn check_case(py: &Python, case: &Case) {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    make_tree(tmp);
    fs::write(tmp.join("list.txt"), "tree/pkg\ntree/skip_me.py\n").unwrap();
    let run = |mut cmd: std::process::Command| {
        cmd.current_dir(tmp).args(case.args);
        // -i lists its own paths; the tree is given only without it.
        if !case.args.contains(&"-i") {
            cmd.arg("tree");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(case.stdin.unwrap_or("").as_bytes())
            .unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let mut theirs = py.cmd();
    theirs.args(["-m", "compileall", "-q"]);
    let out = run(theirs);
    let label = format!("{} {}", py.label(), case.name);
    assert!(
        out.status.success(),
        "{label}: compileall: {}",
        common::describe(&out)
    );
    let expected = pycs(tmp);
    assert!(!expected.is_empty(), "{label}: compileall wrote nothing");
    remove_pycs(tmp);

    let mut ours = clean_command(kolosal_bin());
    ours.env("KOLOSAL_CACHE_DIR", tmp.join("kcache"))
        .args(["compile", "-q", "--python"])
        .arg(&py.path);
    let out = run(ours);
    assert!(
        out.status.success(),
        "{label}: kolosal: {}",
        common::describe(&out)
    );
    let got = pycs(tmp);
    let names = |m: &BTreeMap<PathBuf, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&got), names(&expected), "{label}: not the same pycs");
    for (rel, bytes) in &expected {
        assert!(
            masked(&got[rel]) == masked(bytes),
            "{label}: {} differs from compileall's",
            rel.display()
        );
    }
}

/// `-qq`: compileall prints nothing, not even a syntax error, and fails;
/// so does kolosal.
#[test]
fn double_quiet_prints_nothing() {
    let pythons = common::pythons();
    let py = &pythons[pythons.len() - 1];
    common::report("compileall_parity/-qq", std::slice::from_ref(py));
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "tree/bad.py", "def f(:\n");
    write(tmp.path(), "tree/good.py", "X = 1\n");
    let theirs = py
        .cmd()
        .current_dir(tmp.path())
        .args(["-m", "compileall", "-qq", "tree"])
        .output()
        .unwrap();
    let ours = clean_command(kolosal_bin())
        .env("KOLOSAL_CACHE_DIR", tmp.path().join("kcache"))
        .current_dir(tmp.path())
        .args(["compile", "-qq", "--python"])
        .arg(&py.path)
        .arg("tree")
        .output()
        .unwrap();
    assert!(
        theirs.stdout.is_empty() && theirs.stderr.is_empty(),
        "{}",
        common::describe(&theirs)
    );
    assert_eq!(theirs.status.code(), Some(1));
    assert!(
        ours.stdout.is_empty() && ours.stderr.is_empty(),
        "{}",
        common::describe(&ours)
    );
    assert_eq!(ours.status.code(), Some(1));
}
