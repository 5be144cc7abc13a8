//! `closure::scan` must never panic and must finish in linear time on any
//! input: arbitrary bytes, Python-flavoured token soup, and random mutations
//! (insert / delete / replace bytes) of real stdlib source files.
//!
//! Case counts are moderate by default and larger under `KOLOSAL_TEST_HEAVY=1`.

use crate::common;

use kolosal::closure::scan;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn cases(default: u32, heavy: u32) -> u32 {
    if common::heavy() {
        heavy
    } else {
        default
    }
}

/// A generous bound: the debug-build scanner runs far above 0.5 MB/s, so any
/// input that takes longer than this has gone super-linear.
fn time_limit(len: usize) -> Duration {
    Duration::from_millis(500) + Duration::from_micros(2 * len as u64)
}

fn check(input: &[u8]) {
    let t0 = Instant::now();
    let out = scan(input);
    let took = t0.elapsed();
    assert!(
        took <= time_limit(input.len()),
        "scan of {} bytes took {took:?}",
        input.len()
    );
    // Every reported line lies within the input.
    let lines = input.iter().filter(|&&b| b == b'\n' || b == b'\r').count() as u32 + 1;
    for i in &out {
        assert!(
            i.line >= 1 && i.line <= lines,
            "line {} outside 1..={lines}",
            i.line
        );
    }
}

/// Fragments that stress the lexer's modes when glued together at random.
const FRAGMENTS: &[&str] = &[
    "import ",
    "from ",
    " . ",
    "..",
    "a",
    "b.c",
    " as ",
    ", ",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ":",
    ":=",
    ";",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "    ",
    "\x0c",
    "\\\n",
    "\\",
    "#",
    "'",
    "\"",
    "'''",
    "\"\"\"",
    "f'",
    "f\"",
    "rb'",
    "F\"\"\"",
    "t'",
    "{x",
    "!r",
    ":>{w}",
    "}}",
    "{{",
    "\\N{DASH}",
    "if ",
    "elif ",
    "else",
    "while ",
    "try",
    "except ",
    "ImportError",
    "finally",
    "def ",
    "lambda",
    "class ",
    "async ",
    "match ",
    "case ",
    "TYPE_CHECKING",
    "typing.",
    "__import__(",
    "importlib.",
    "import_module(",
    "yield ",
    "raise ",
    "*",
    "\u{FB01}",
    "\u{00E9}",
    "\u{FEFF}",
    "\x00",
    "\x7f",
    "1if",
    "0x",
    "1e",
];

fn soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(FRAGMENTS).prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..4),
        ],
        0..200,
    )
    .prop_map(|parts| parts.concat())
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut runner = TestRunner::new(Config {
        cases: cases(512, 8192),
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..4096), |bytes| {
            check(&bytes);
            Ok(())
        })
        .unwrap();
}

#[test]
fn token_soup_never_panics() {
    let mut runner = TestRunner::new(Config {
        cases: cases(1024, 16384),
        ..Config::default()
    });
    runner
        .run(&soup(), |bytes| {
            check(&bytes);
            Ok(())
        })
        .unwrap();
}

/// Real source files to mutate: a sample of the newest interpreter's
/// stdlib and of every 3.14+ one (t-strings, PEP 810 `lazy import`), about
/// 60 files in all.
fn corpus() -> Vec<Vec<u8>> {
    let all = common::pythons_at_least((3, 8));
    let newest = all.last().expect("a CPython >= 3.8").version;
    let pythons: Vec<common::Python> = all
        .into_iter()
        .filter(|p| p.version >= (3, 14, 0) || p.version == newest)
        .collect();
    common::report("scan_fuzz corpus", &pythons);
    let per = 60 / pythons.len();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for py in &pythons {
        let root = py.stdlib_dir();
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&root)
            .max_depth(2)
            .into_iter()
            .filter_map(|e| e.ok())
            .map(|e| e.into_path())
            .filter(|p| p.extension().is_some_and(|x| x == "py"))
            .collect();
        files.sort();
        let step = (files.len() / per.max(1)).max(1);
        corpus.extend(
            files
                .iter()
                .step_by(step)
                .filter_map(|p| std::fs::read(p).ok())
                .filter(|s| s.len() < 200_000),
        );
    }
    assert!(
        corpus.len() >= 20,
        "too few stdlib files to mutate: {}",
        corpus.len()
    );
    corpus
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Replace(usize, u8),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (
            any::<usize>(),
            prop_oneof![
                prop::sample::select(FRAGMENTS).prop_map(|s| s.as_bytes().to_vec()),
                prop::collection::vec(any::<u8>(), 1..4),
            ]
        )
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 1usize..64).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Replace(at, b)),
    ];
    prop::collection::vec(edit, 1..12)
}

fn apply(src: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = src.to_vec();
    for e in edits {
        match e {
            Edit::Insert(at, b) => {
                let at = at % (v.len() + 1);
                v.splice(at..at, b.iter().copied());
            }
            Edit::Delete(at, n) if !v.is_empty() => {
                let at = at % v.len();
                let end = (at + n).min(v.len());
                v.drain(at..end);
            }
            Edit::Replace(at, b) if !v.is_empty() => {
                let at = at % v.len();
                v[at] = *b;
            }
            _ => {}
        }
    }
    v
}

#[test]
fn mutated_stdlib_files_never_panic() {
    let corpus = corpus();
    let mut runner = TestRunner::new(Config {
        cases: cases(300, 5000),
        ..Config::default()
    });
    runner
        .run(&(any::<prop::sample::Index>(), edits()), |(idx, e)| {
            let src = &corpus[idx.index(corpus.len())];
            check(&apply(src, &e));
            Ok(())
        })
        .unwrap();
    common::note(&format!(
        "[scan_fuzz] mutated {} stdlib files",
        corpus.len()
    ));
}

/// Pathological shapes that would expose quadratic behaviour.
#[test]
fn pathological_inputs_stay_linear() {
    let n = 200_000;
    let inputs: Vec<Vec<u8>> = vec![
        "(".repeat(n).into_bytes(),
        ")".repeat(n).into_bytes(),
        "f'{".repeat(n / 3).into_bytes(),
        "f\"{f'{".repeat(n / 6).into_bytes(),
        "lambda:".repeat(n / 7).into_bytes(),
        "lambda ".repeat(n / 7).into_bytes(),
        "if x:\n".repeat(n / 6).into_bytes(),
        (0..n / 10)
            .map(|i| format!("{}if x:\n", " ".repeat(i % 400)))
            .collect::<String>()
            .into_bytes(),
        "try:\n import a\n".repeat(n / 16).into_bytes(),
        "try: import a\nexcept ImportError: pass\n"
            .repeat(n / 40)
            .into_bytes(),
        "except:\n".repeat(n / 8).into_bytes(),
        format!(
            "try:\n{}{}",
            " import a\n".repeat(n / 20),
            "except Exception: pass\n".repeat(n / 46)
        )
        .into_bytes(),
        "import a.".repeat(n / 9).into_bytes(),
        "from . import (a,".repeat(n / 17).into_bytes(),
        "'''".repeat(n / 3).into_bytes(),
        "\\".repeat(n).into_bytes(),
        "\r".repeat(n).into_bytes(),
        "__import__(".repeat(n / 11).into_bytes(),
        "f'{x:{".repeat(n / 7).into_bytes(),
    ];
    for input in &inputs {
        check(input);
    }
}
