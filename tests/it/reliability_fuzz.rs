//! Fuzzing the decoders and parsers that read untrusted bytes: the argv
//! model, the import scanner, the pyc header reader (and the full freshness
//! check on files holding those bytes), the manifest decoder and warm check,
//! and the import-cache decoder.
//!
//! Every target is fed (1) the seed corpus in `tests/corpus/` as it is,
//! then (2) proptest mutations of those seeds (byte flips, inserts, deletes,
//! truncations, splices) and (3) plain random bytes. The properties: no
//! panic, no hang (each input is handled within a generous time bound), and
//! whatever decodes re-encodes to the same value.
//!
//! Case counts are moderate by default and 40x larger under
//! `KOLOSAL_TEST_HEAVY=1`.

use crate::common;

use kolosal::closure::scan;
use kolosal::closure::ImportCache;
use kolosal::manifest::{self, Manifest};
use kolosal::pyc::{self, HashCheckMode, PycRules};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn cases(default: u32) -> u32 {
    if common::heavy() {
        default * 40
    } else {
        default
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn corpus_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(sub)
}

/// Every file of `tests/corpus/<sub>`, sorted by name.
fn corpus(sub: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir(sub))
        .unwrap_or_else(|e| panic!("tests/corpus/{sub}: {e}"))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "tests/corpus/{sub} is empty");
    out
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// Copies a slice of the input to another place (repeats structure).
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Edit::Insert(i, v)),
        2 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), any::<usize>(), 1usize..64).prop_map(|(a, b, n)| Edit::Splice(a, b, n)),
    ]
}

fn apply(mut v: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = v.len();
        match e {
            Edit::Flip(i, b) if len > 0 => v[i % len] = *b,
            Edit::Insert(i, bytes) => {
                let at = i % (len + 1);
                v.splice(at..at, bytes.iter().copied());
            }
            Edit::Delete(i, n) if len > 0 => {
                let at = i % len;
                v.drain(at..(at + n).min(len));
            }
            Edit::Truncate(i) => v.truncate(i % (len + 1)),
            Edit::Splice(a, b, n) if len > 0 => {
                let from = a % len;
                let piece: Vec<u8> = v[from..(from + n).min(len)].to_vec();
                let at = b % (len + 1);
                v.splice(at..at, piece);
            }
            _ => {}
        }
    }
    v
}

/// Runs `f` on every seed, then on `n` mutated seeds and `n / 4` random inputs.
fn fuzz(name: &str, seeds: &[Vec<u8>], n: u32, limit: Duration, f: &dyn Fn(&[u8])) {
    let t0 = Instant::now();
    let timed = |input: &[u8]| {
        let t = Instant::now();
        f(input);
        let took = t.elapsed();
        assert!(
            took <= limit,
            "{name}: one input of {} bytes took {took:?}",
            input.len()
        );
    };
    for s in seeds {
        timed(s);
    }
    let strategy = (0..seeds.len(), proptest::collection::vec(edit(), 1..6));
    runner(n)
        .run(&strategy, |(i, edits)| {
            timed(&apply(seeds[i].clone(), &edits));
            Ok(())
        })
        .unwrap();
    runner((n / 4).max(1))
        .run(&proptest::collection::vec(any::<u8>(), 0..512), |v| {
            timed(&v);
            Ok(())
        })
        .unwrap();
    common::note(&format!(
        "[reliability_fuzz] {name}: {} seeds + {} mutations + {} random inputs, no panic, no hang, in {:?}",
        seeds.len(),
        n,
        (n / 4).max(1),
        t0.elapsed()
    ));
}

/// The argv seeds: one launch per line, arguments TAB-separated; a line
/// `env NAME=VALUE<TAB>...` sets variables for the next launch.
fn argv_seeds() -> Vec<Vec<u8>> {
    let (_, text) = corpus("argv").remove(0);
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .map(|l| l.to_vec())
        .collect()
}

/// Interprets fuzz bytes as a launch: `\n` separates an env part (before)
/// from argv, TAB separates arguments / variables.
fn argv_of(input: &[u8]) -> (Vec<OsString>, Vec<(String, OsString)>) {
    let (env_part, args_part) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (&b""[..], input),
    };
    let env_part = env_part.strip_prefix(b"env ").unwrap_or(env_part);
    let env = env_part
        .split(|&b| b == b'\t')
        .filter_map(|kv| {
            let eq = kv.iter().position(|&b| b == b'=')?;
            let name = String::from_utf8(kv[..eq].to_vec()).ok()?;
            Some((name, OsString::from_vec(kv[eq + 1..].to_vec())))
        })
        .collect();
    let args = if args_part.is_empty() {
        Vec::new()
    } else {
        args_part
            .split(|&b| b == b'\t')
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect()
    };
    (args, env)
}

#[test]
fn argv_model() {
    let lines = argv_seeds();
    // Pair each env line with the launch after it.
    let mut seeds = Vec::new();
    let mut pending: Option<Vec<u8>> = None;
    for l in lines {
        if l.starts_with(b"env ") {
            pending = Some(l);
        } else {
            let mut s = pending.take().unwrap_or_default();
            s.push(b'\n');
            s.extend(l);
            seeds.push(s);
        }
    }
    assert!(seeds.len() > 30);
    fuzz(
        "argv::parse",
        &seeds,
        cases(2000),
        Duration::from_secs(2),
        &|input| {
            let (args, env) = argv_of(input);
            let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            for version in [(3, 6), (3, 7), (3, 8), (3, 11), (3, 13), (3, 99)] {
                if let Ok(spec) = kolosal::argv::parse(&args, &lookup, version) {
                    assert!(
                        spec.script_args_start <= args.len(),
                        "script_args_start past argv for {args:?}"
                    );
                }
            }
        },
    );
}

#[test]
fn scanner() {
    let seeds: Vec<Vec<u8>> = corpus("scan").into_iter().map(|(_, b)| b).collect();
    fuzz(
        "closure::scan",
        &seeds,
        cases(1500),
        Duration::from_millis(500),
        &|input| {
            let lines = input.iter().filter(|&&b| b == b'\n' || b == b'\r').count() as u32 + 1;
            for i in scan(input) {
                assert!(i.line >= 1 && i.line <= lines, "line {} of {lines}", i.line);
            }
        },
    );
}

/// The rules of every CPython the corpus has pycs for, with their real magic
/// numbers taken from those pycs (no interpreter needed).
fn corpus_rules() -> Vec<PycRules> {
    let mut rules: Vec<PycRules> = Vec::new();
    for (name, bytes) in corpus("pyc") {
        // mod.cpython-312.pyc -> (3, 12)
        let tag = name.split('.').nth(1).unwrap();
        let digits = tag.trim_start_matches("cpython-");
        let minor: u32 = digits[1..].parse().unwrap();
        let r = PycRules {
            version: (3, minor),
            magic: bytes[..4].try_into().unwrap(),
            cache_tag: Some(tag.to_string()),
        };
        if !rules.contains(&r) {
            rules.push(r);
        }
    }
    assert!(rules.len() >= 5, "pyc corpus covers too few versions");
    rules
}

#[test]
fn pyc_header_and_freshness() {
    let rules = corpus_rules();
    let seeds: Vec<Vec<u8>> = corpus("pyc").into_iter().map(|(_, b)| b).collect();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("m.py");
    std::fs::write(&source, b"import os\n").unwrap();
    let pyc_path = dir.path().join("m.pyc");
    let counter = std::sync::atomic::AtomicUsize::new(0);
    fuzz(
        "pyc header + check_loadable",
        &seeds,
        cases(3000),
        Duration::from_secs(2),
        &|input| {
            for r in &rules {
                if let Ok(h) = pyc::parse_header(input, r) {
                    assert!(input.len() >= r.header_len());
                    assert_eq!(&input[..4], &r.magic);
                    let _ = h.kind.mode();
                }
            }
            // Every 4th input also goes through the file-based checks.
            if counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4 == 0 {
                std::fs::write(&pyc_path, input).unwrap();
                for r in &rules {
                    for mode in [HashCheckMode::Default, HashCheckMode::Always] {
                        let loadable = pyc::check_loadable(&source, &pyc_path, r, mode);
                        let loader = pyc::check(&source, &pyc_path, r, mode);
                        // check_loadable is check plus one more condition.
                        if loadable.is_fresh() {
                            assert!(loader.is_fresh());
                        }
                    }
                    let _ = pyc::rewrite_mode(&pyc_path, r);
                }
            }
        },
    );
}

#[test]
fn manifest_decoder() {
    let seeds: Vec<Vec<u8>> = corpus("manifest").into_iter().map(|(_, b)| b).collect();
    let real = Manifest::decode(&seeds[0]).expect("the corpus manifest decodes");
    assert!(real.entries.len() > 10);
    assert_eq!(real.encode(), seeds[0], "decode/encode round trip");
    let key = real.key.clone();
    fuzz(
        "manifest decode + warm check",
        &seeds,
        cases(400),
        Duration::from_secs(2),
        &|input| {
            if let Some(m) = Manifest::decode(input) {
                assert_eq!(Manifest::decode(&m.encode()).as_ref(), Some(&m));
            }
            // The warm check stats what it lists; a foreign key is refused.
            let _ = manifest::check_encoded(input, &key);
            if manifest::check_encoded(input, b"another key").is_some() {
                assert!(Manifest::decode(input).is_some_and(|m| m.key == b"another key"));
            }
        },
    );
}

#[test]
fn import_cache_decoder() {
    let mut seeds: Vec<Vec<u8>> = corpus("imports").into_iter().map(|(_, b)| b).collect();
    // The stored seed carries the fingerprint of the scanner that wrote it;
    // stamp it with this build's, or every mutation stops at that check.
    let current = ImportCache::in_memory().to_bytes();
    for s in &mut seeds {
        s[8..16].copy_from_slice(&current[8..16]);
    }
    let real = ImportCache::from_bytes(&seeds[0]).expect("the corpus import cache decodes");
    assert!(real.len() > 5);
    assert_eq!(real.to_bytes().len(), seeds[0].len());
    seeds.push(current);
    fuzz(
        "import cache decode",
        &seeds,
        cases(400),
        Duration::from_secs(2),
        &|input| {
            if let Some(c) = ImportCache::from_bytes(input) {
                let again =
                    ImportCache::from_bytes(&c.to_bytes()).expect("re-encoded cache decodes");
                assert_eq!(again.len(), c.len());
            }
        },
    );
}
