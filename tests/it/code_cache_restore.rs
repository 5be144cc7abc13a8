//! The code cache's restore against what is already at the pyc path, on
//! real interpreters: a stale regular pyc is replaced by exactly what
//! `py_compile` writes there; a symlink at the pyc path is never written
//! through (the job goes to a worker, which refuses it as `py_compile`
//! does) and its target is untouched; a missing `__pycache__` is made.

use crate::common;

use common::{clean_command, kolosal_bin, Python};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

fn oldest_and_newest() -> Vec<Python> {
    let all = common::pythons();
    if common::heavy() || all.len() <= 2 {
        return all;
    }
    vec![all[0].clone(), all[all.len() - 1].clone()]
}

fn compile(py: &Path, cache: &Path, tree: &Path) -> Output {
    clean_command(kolosal_bin())
        .env("KOLOSAL_CACHE_DIR", cache)
        .env("KOLOSAL_LOG", "debug")
        .arg("compile")
        .arg("--python")
        .arg(py)
        .arg(tree)
        .output()
        .expect("run kolosal compile")
}

/// What `py_compile` writes for `source` at `cfile`'s path (timestamp
/// mode), written to a scratch file so `cfile` itself is not touched.
fn py_compile_bytes(py: &Python, source: &Path, scratch: &Path) -> Vec<u8> {
    let o = py
        .cmd()
        .arg("-c")
        .arg(
            "import py_compile, sys\n\
             py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True,\n\
                 invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)",
        )
        .arg(source)
        .arg(scratch)
        .output()
        .expect("run py_compile");
    assert!(o.status.success(), "{}", common::describe(&o));
    fs::read(scratch).expect("read py_compile's pyc")
}

fn cfile(py: &Python, source: &Path) -> PathBuf {
    let stem = source.file_stem().unwrap().to_str().unwrap();
    source
        .parent()
        .unwrap()
        .join("__pycache__")
        .join(format!("{stem}.{}.pyc", py.cache_tag()))
}

#[test]
fn restore_replaces_stale_pycs_and_refuses_symlinks() {
    let pythons = oldest_and_newest();
    common::report("code_cache_restore", &pythons);
    for py in &pythons {
        let t = tempfile::tempdir().unwrap();
        let cache = t.path().join("cache");
        let files = [
            ("pkg/__init__.py", "\"\"\"Pkg.\"\"\"\n"),
            (
                "pkg/stale.py",
                "def f(x):\n    return [x * i for i in range(3)]\n",
            ),
            ("pkg/linked.py", "S = 'linked'\n"),
            ("pkg/sub/fresh.py", "class K:\n    v = 1\n"),
        ];
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for root in [&a, &b] {
            for (rel, text) in files {
                let p = root.join(rel);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(p, text).unwrap();
            }
        }
        // Fill the cache from the first tree.
        let first = compile(&py.path, &cache, &a);
        assert!(first.status.success(), "{}", common::describe(&first));

        // The second tree: a stale regular pyc, a symlink at a pyc path,
        // and no __pycache__ at all under pkg/sub.
        let stale_src = b.join("pkg/stale.py");
        let stale_pyc = cfile(py, &stale_src);
        fs::create_dir_all(stale_pyc.parent().unwrap()).unwrap();
        fs::write(
            &stale_pyc,
            b"not a pyc at all, and long enough to look like one",
        )
        .unwrap();
        let victim = t.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        let linked_pyc = cfile(py, &b.join("pkg/linked.py"));
        std::os::unix::fs::symlink(&victim, &linked_pyc).unwrap();

        let second = compile(&py.path, &cache, &b);
        let err = String::from_utf8_lossy(&second.stderr);
        assert!(
            err.contains("3 of 4 pycs restored, 1 to compile"),
            "{}: {err}",
            py.label()
        );
        // The symlink is still one, and what it points at is untouched.
        assert!(fs::symlink_metadata(&linked_pyc)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        assert!(!second.status.success(), "{}", common::describe(&second));
        // The stale pyc and the new directory's pyc are py_compile's bytes.
        let scratch = t.path().join("scratch.pyc");
        for src in [
            stale_src,
            b.join("pkg/sub/fresh.py"),
            b.join("pkg/__init__.py"),
        ] {
            let ours = fs::read(cfile(py, &src)).expect("restored pyc");
            assert_eq!(
                ours,
                py_compile_bytes(py, &src, &scratch),
                "{}: {}",
                py.label(),
                src.display()
            );
        }
        // No temp file left next to any pyc.
        for dir in [stale_pyc.parent().unwrap(), &b.join("pkg/sub/__pycache__")] {
            let names: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                names.iter().all(|n| n.ends_with(".pyc")),
                "{}: {names:?}",
                py.label()
            );
        }
    }
}
