//! Snapshot of the scanner's import stream over the seed corpus
//! (`tests/corpus/scan/*.py`), checked against CPython's `ast`.
//!
//! `tests/it/snapshots/scan_imports.txt` holds, per corpus file, every
//! [`ImportStmt`] [`scan`] reports in source order (line, level, module,
//! names, flags). A change to the scanner that changes any of them shows
//! up here as a diff, line by line; `KOLOSAL_BLESS=1` rewrites the file.
//! The snapshot is not a hand-written expectation: the same test requires
//! the scanner to agree with the newest CPython's `ast` on every corpus
//! file that interpreter can parse (the differential of
//! [`crate::scan_vs_ast`]), and at least half of them to parse.

use crate::common;
use crate::scan_vs_ast::{ast_side, scanner_rows};
use kolosal::closure::{scan, ImportStmt};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The corpus files, sorted by name.
fn corpus() -> Vec<PathBuf> {
    let dir = root().join("tests/corpus/scan");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .collect();
    files.sort();
    files
}

/// One line per import, in the order the scanner reports them.
fn render(imports: &[ImportStmt]) -> String {
    let mut out = String::new();
    for i in imports {
        let _ = writeln!(
            out,
            "  line {} level {} module {:?} names {:?} flags {:?}",
            i.line, i.level, i.module, i.names, i.flags
        );
    }
    out
}

fn snapshot_text(files: &[PathBuf]) -> String {
    let mut out = String::new();
    for f in files {
        let src = std::fs::read(f).expect("read corpus file");
        let name = f.file_name().expect("name").to_string_lossy();
        let _ = writeln!(out, "== {name}");
        out.push_str(&render(&scan(&src)));
    }
    out
}

#[test]
fn import_stream_matches_snapshot_and_ast() {
    let files = corpus();
    let snap_path = root().join("tests/it/snapshots/scan_imports.txt");
    let got = snapshot_text(&files);
    if std::env::var_os("KOLOSAL_BLESS").is_some() {
        std::fs::write(&snap_path, &got).expect("write snapshot");
    }
    let want = std::fs::read_to_string(&snap_path)
        .unwrap_or_else(|e| panic!("{}: {e} (KOLOSAL_BLESS=1 writes it)", snap_path.display()));
    if got != want {
        let diff: Vec<String> = diff_lines(&want, &got);
        panic!(
            "the scanner's import stream differs from {} (KOLOSAL_BLESS=1 rewrites it once the change is meant):\n{}",
            snap_path.display(),
            diff.join("\n")
        );
    }

    // The snapshot (now known to be the scanner's output) against ast.
    let pys = common::pythons_at_least((3, 8));
    let py = pys.last().expect("a CPython >= 3.8");
    common::report("scan_snapshot", std::slice::from_ref(py));
    let list = Value::Array(
        files
            .iter()
            .map(|p| Value::String(p.to_str().expect("utf-8 path").to_string()))
            .collect(),
    );
    let ast = ast_side(py, &list);
    assert_eq!(ast.len(), files.len(), "ast answered for every file");
    let mut parsed = 0;
    let mut compared = 0;
    for (f, expected) in files.iter().zip(ast) {
        let Some(expected) = expected else { continue };
        parsed += 1;
        let (imports, dynamic) = scanner_rows(&std::fs::read(f).expect("read"));
        assert_eq!(imports, expected.imports, "{}: imports", f.display());
        assert_eq!(dynamic, expected.dynamic, "{}: dynamic calls", f.display());
        compared += imports.len() + dynamic.len();
    }
    assert!(
        parsed * 2 >= files.len(),
        "only {parsed} of {} corpus files parse",
        files.len()
    );
    assert!(compared >= 40, "only {compared} imports compared with ast");
}

/// The lines of `want` missing from `got` (`-`) and those added (`+`),
/// each under the corpus file (`==` line) it belongs to.
fn diff_lines(want: &str, got: &str) -> Vec<String> {
    let section = |text: &str| -> Vec<(String, String)> {
        let mut file = String::new();
        let mut out = Vec::new();
        for l in text.lines() {
            if let Some(name) = l.strip_prefix("== ") {
                file = name.to_string();
            }
            out.push((file.clone(), l.to_string()));
        }
        out
    };
    let (w, g) = (section(want), section(got));
    let mut out: Vec<String> = w
        .iter()
        .filter(|x| !g.contains(x))
        .map(|(f, l)| format!("- [{f}] {l}"))
        .collect();
    out.extend(
        g.iter()
            .filter(|x| !w.contains(x))
            .map(|(f, l)| format!("+ [{f}] {l}")),
    );
    out
}
