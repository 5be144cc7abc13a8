//! What site runs at start-up is part of the closure, per version, as site
//! itself decides it: `.pth` import lines (all versions; a `.pth` whose name
//! starts with `.` is skipped from 3.13), and from 3.15 (PEP 829) `.start`
//! entry points, whose presence also turns off the import lines of the
//! `.pth` file of the same name.
//!
//! Differential: plain python (no pycs written) says which of the planted
//! modules it compiled from source; after two `kolosal-python` launches,
//! `python -v` must load every one of them from a pyc, and
//! `kolosal closure --json` must name exactly the planted modules python
//! imported: no more (a suppressed or skipped file) and no fewer.

use crate::common;
use common::{ok, source_compiles, Python};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Planted site-packages modules; each is imported only through the file
/// that names it.
const PLANTED: &[&str] = &[
    "pthmod",
    "hiddenmod",
    "suppressedmod",
    "startmod",
    "startdep",
    "badstartmod",
];

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A venv whose site-packages holds the planted modules and start-up
/// files: its python, the program and the (canonical) site-packages.
fn planted_venv(py: &Python, root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let vpy = common::venv_with(py, &root.join("venv"), &[]);
    // Asked before anything is planted: this run writes no planted pyc.
    let site = common::purelib(&vpy).canonicalize().unwrap();
    for m in PLANTED {
        let body = match *m {
            // An entry point's module with a static import of its own.
            "startmod" => "import startdep\n\ndef hook():\n    pass\n".to_string(),
            _ => format!("NAME = {m:?}\n\ndef hook():\n    pass\n"),
        };
        write(&site.join(format!("{m}.py")), &body);
    }
    // Read by every version.
    write(&site.join("plain.pth"), "import pthmod\n");
    // Skipped from 3.13: the name starts with a dot.
    write(&site.join(".hidden.pth"), "import hiddenmod\n");
    // From 3.15 its import line is turned off by `paired.start`, which
    // only holds a comment; before 3.15 the line runs.
    write(&site.join("paired.pth"), "import suppressedmod\n");
    write(&site.join("paired.start"), "# nothing to run\n");
    // From 3.15: one entry point (module with a dependency), comments,
    // blank lines and leading space, which site strips.
    write(
        &site.join("tool.start"),
        "# entry points\n\n   startmod:hook\n",
    );
    // Never valid for `resolve_name(strict=True)`: no callable part.
    write(&site.join("broken.start"), "badstartmod\n");
    let main = root.join("app/main.py");
    write(&main, "print('ran')\n");
    (vpy, main, site)
}

/// The planted modules a `python -v` run compiled from source.
fn planted_compiles(stderr: &[u8], site_of: &Path) -> BTreeSet<String> {
    source_compiles(stderr)
        .into_iter()
        .filter_map(|p| {
            let p = PathBuf::from(p);
            (p.parent() == Some(site_of))
                .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .filter(|m| PLANTED.contains(&m.as_str()))
        .collect()
}

fn python_v(vpy: &Path, main: &Path) -> Vec<u8> {
    let out = ok(
        common::clean_command(vpy)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-v")
            .arg(main)
            .output()
            .unwrap(),
        "python -v",
    );
    out.stderr
}

fn launcher(vpy: &Path, cache: &Path) -> Command {
    let mut c = common::clean_command(common::launcher_bin());
    c.env("KOLOSAL_PYTHON", vpy).env("KOLOSAL_CACHE_DIR", cache);
    c
}

#[test]
fn site_start_up_files_are_closure_roots_as_site_reads_them() {
    let pythons = common::pythons();
    common::report("startup_files", &pythons);
    for py in &pythons {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let (vpy, main, site) = planted_venv(py, root);
        // What python itself imports at start-up, from source.
        let expected = planted_compiles(&python_v(&vpy, &main), &site);
        let label = py.label();
        let v = (py.version.0, py.version.1);
        // The cases must mean something on this version.
        assert!(expected.contains("pthmod"), "{label}: {expected:?}");
        assert_eq!(
            expected.contains("hiddenmod"),
            v < (3, 13),
            "{label}: {expected:?}"
        );
        assert_eq!(
            expected.contains("startmod"),
            v >= (3, 15),
            "{label}: {expected:?}"
        );
        assert!(!expected.contains("badstartmod"), "{label}: {expected:?}");

        let cache = root.join("cache");
        for _ in 0..2 {
            let out = ok(
                launcher(&vpy, &cache).arg(&main).output().unwrap(),
                "kolosal-python",
            );
            assert_eq!(out.stdout, b"ran\n", "{label}");
            common::wait_background(&cache);
        }
        let left = planted_compiles(&python_v(&vpy, &main), &site);
        assert!(
            left.is_empty(),
            "{label}: start-up modules still compiled from source after two launches: {left:?} (python imports {expected:?})"
        );

        // The closure names exactly what python imported.
        let out = ok(
            common::clean_command(common::kolosal_bin())
                .env("KOLOSAL_CACHE_DIR", &cache)
                .args(["closure", "--json", "--python"])
                .arg(&vpy)
                .arg(&main)
                .output()
                .unwrap(),
            "kolosal closure --json",
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let in_closure: BTreeSet<String> = doc["modules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] != "not-found")
            .filter_map(|m| m["name"].as_str())
            .filter(|n| PLANTED.contains(n))
            .map(str::to_string)
            .collect();
        assert_eq!(
            in_closure, expected,
            "{label}: closure vs python's start-up imports"
        );
    }
}
