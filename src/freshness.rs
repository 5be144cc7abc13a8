//! Stage 4 of the pipeline: applies the [`crate::pyc`] rules to a set of
//! (source, pyc) pairs, in parallel when the set is large enough to pay for
//! it. Pure Rust: deciding that a tree is fresh never starts Python.
//!
//! Two questions are answered:
//!
//! * [`check_all`]: would the source loader use each pyc
//!   (`SourceLoader.get_code` under a `--check-hash-based-pycs` mode)? This is
//!   what the launcher and `kolosal status` need. One deliberate difference
//!   (see [`pyc::check_loadable`]): a pyc whose header passes but whose body
//!   cannot be a code object is reported stale (`corrupt-body`), so it is
//!   rewritten instead of failing the import.
//! * [`check_all_written`]: is each pyc what `kolosal compile` would write
//!   now? That is: the loader would use it even when checking every hash
//!   (`--check-hash-based-pycs always`), AND it was written in the requested
//!   invalidation mode. A valid timestamp pyc is rewritten when checked-hash
//!   pycs are asked for, as `compileall` rewrites it (compileall goes further
//!   and rewrites every hash-based pyc on every run; kolosal keeps a
//!   hash-based pyc whose hash still matches).

use crate::pyc::{self, parse_header, HashCheckMode, InvalidationMode, PycRules, PycTarget};
use crate::pyc::{StaleReason, Verdict};
use rayon::prelude::*;
use std::fs::Metadata;
use std::path::Path;

/// From this many items a parallel loop runs in parallel; below it, on the
/// calling thread. The one threshold for kolosal's parallel stat and pyc
/// loops: [`par_map`] (rayon: freshness checks, re-stamping, the code
/// cache's restores) and `manifest::check_encoded` (the warm path's stats,
/// split over two threads).
///
/// Measured with the `parallel_threshold_timing` test (release build, warm
/// page cache, medians of 31 alternating runs) on the shared 2-core
/// machine, 2026-11-30 02:57 UTC, load average 2.9-3.2: a stat costs
/// ~1.1 µs, a pyc check (stat + 16-byte header read) ~5 µs. Sequential
/// beat two threads at every size up to 1,024 (192 stats: 211 µs vs
/// 270 µs; 256: 283 µs vs 357 µs) and beat rayon for stats but once
/// (192: 212 µs vs 184 µs); pyc checks on rayon broke even from 128 to
/// 512 (256: 1.29 ms vs 1.28 ms) and lost at 1,024. At load ~9 (02:52) the
/// parallel side lost everywhere (256 pyc checks: 1.6 ms vs 4.9 ms). The
/// second core is rarely free here (a second thread cost 40-60 µs: 32
/// stats took 36 µs alone, 73 µs split); on an idle multi-core machine
/// the crossover is lower. 256, the larger of
/// the two former thresholds (192 for the manifest, 256 here), keeps every
/// closure of a few hundred modules on one thread and hands whole trees
/// (thousands of files) to the pool.
pub(crate) const PARALLEL_THRESHOLD: usize = 256;

/// Whether a pyc is what `kolosal compile` would write now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Freshness {
    /// Valid for its source and written in the requested mode: keep it.
    Fresh,
    /// The loader would reject it (or it is missing).
    Stale(StaleReason),
    /// The loader would use it, but it was written in another invalidation
    /// mode than the one asked for (the mode it has is given).
    OtherMode(InvalidationMode),
}

impl Freshness {
    /// True for [`Freshness::Fresh`].
    pub fn is_fresh(&self) -> bool {
        matches!(self, Freshness::Fresh)
    }

    /// A stable short name: `fresh`, a [`StaleReason::as_str`], or
    /// `other-mode`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Stale(r) => r.as_str(),
            Freshness::OtherMode(_) => "other-mode",
        }
    }
}

/// The loader's verdict on every target's pyc, in input order, under
/// `--check-hash-based-pycs mode` (see [`pyc::check`]).
pub fn check_all<T: AsRef<PycTarget> + Sync>(
    targets: &[T],
    rules: &PycRules,
    mode: HashCheckMode,
) -> Vec<Verdict> {
    check_all_known(targets, &[], rules, mode)
}

/// [`check_all`] where some sources' metadata is already known (`metas[i]`
/// for `targets[i]`; `None`, or a missing entry, means stat it): one `stat`
/// less per known source.
pub fn check_all_known<T: AsRef<PycTarget> + Sync>(
    targets: &[T],
    metas: &[Option<&Metadata>],
    rules: &PycRules,
    mode: HashCheckMode,
) -> Vec<Verdict> {
    let indexed: Vec<usize> = (0..targets.len()).collect();
    par_map(&indexed, |&i| {
        let PycTarget { source, cfile } = targets[i].as_ref();
        match metas.get(i).copied().flatten() {
            Some(meta) => pyc::check_loadable_with_meta(source, meta, cfile, rules, mode),
            None => pyc::check_loadable(source, cfile, rules, mode),
        }
    })
}

/// Whether `pyc` is what `kolosal compile` would write for `source` in mode
/// `wanted`: see [`Freshness`] and the module documentation.
pub fn check_written(
    source: &Path,
    pyc_path: &Path,
    rules: &PycRules,
    wanted: InvalidationMode,
) -> Freshness {
    // One open + one read of the pyc (header and the start of the body)
    // and one stat of the source, whatever the pyc holds (a missing one
    // included): the header says which mode it was written in, then the
    // loader's own decision, checking the hash whatever the flags say, plus
    // kolosal's loadable-body check.
    let mut buf = [0u8; 16 + pyc::validate::MIN_BODY];
    let hl = rules.header_len();
    let read = pyc::validate::read_header(pyc_path, &mut buf[..hl + pyc::validate::MIN_BODY]);
    if let Ok(n) = read {
        if let Ok(header) = parse_header(&buf[..n.min(hl)], rules) {
            let found = header.kind.mode();
            if found != wanted {
                return Freshness::OtherMode(found);
            }
        }
    }
    // mirrors SourceLoader.get_code: path_stats(source) comes before the
    // pyc is read, so a source that cannot be stat'ed, or is not a regular
    // file, is the reason given whatever the pyc is (as
    // pyc::check_loadable orders them).
    let meta = match std::fs::metadata(source) {
        Ok(meta) => meta,
        Err(_) => return Freshness::Stale(StaleReason::SourceUnreadable),
    };
    match read {
        Ok(n) => from_verdict(pyc::validate::check_loadable_read(
            source,
            &meta,
            &buf[..n],
            rules,
            HashCheckMode::Always,
        )),
        Err(_) if !meta.is_file() => Freshness::Stale(StaleReason::NotRegularFile),
        // Missing, unreadable or not a regular file: what the loader's
        // read of the pyc would say (pyc::validate::read_header is that
        // read).
        Err(reason) => Freshness::Stale(reason),
    }
}

/// [`check_written`] for every target, in input order.
pub fn check_all_written<T: AsRef<PycTarget> + Sync>(
    targets: &[T],
    rules: &PycRules,
    wanted: InvalidationMode,
) -> Vec<Freshness> {
    par_map(targets, |t| {
        let t = t.as_ref();
        check_written(&t.source, &t.cfile, rules, wanted)
    })
}

fn from_verdict(v: Verdict) -> Freshness {
    match v {
        Verdict::Fresh => Freshness::Fresh,
        Verdict::Stale(r) => Freshness::Stale(r),
    }
}

/// `items.map(f)` in order: on rayon's pool from `PARALLEL_THRESHOLD` items,
/// on the calling thread below.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    if items.len() < PARALLEL_THRESHOLD {
        items.iter().map(f).collect()
    } else {
        items.par_iter().map(f).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;
    use std::time::Instant;

    fn rules() -> PycRules {
        PycRules {
            version: (3, 12),
            magic: [0xcb, 0x0d, b'\r', b'\n'],
            cache_tag: Some("t-312".into()),
        }
    }

    fn header(rules: &PycRules, flags: u32, rest: [u8; 8]) -> Vec<u8> {
        let mut v = rules.magic.to_vec();
        v.extend(flags.to_le_bytes());
        v.extend(rest);
        // A body that passes the loadability check: code type byte first.
        v.push(b'c');
        v.extend([0u8; pyc::MIN_BODY]);
        v
    }

    fn ts_header(rules: &PycRules, src: &Path) -> Vec<u8> {
        let m = fs::metadata(src).unwrap();
        let mut rest = [0u8; 8];
        rest[..4].copy_from_slice(&pyc::mtime_field(&m).to_le_bytes());
        rest[4..].copy_from_slice(&(m.len() as u32).to_le_bytes());
        header(rules, 0, rest)
    }

    #[test]
    fn modes_and_staleness() {
        let d = tempfile::tempdir().unwrap();
        let r = rules();
        let src = d.path().join("m.py");
        fs::write(&src, b"x = 1\n").unwrap();
        let hash = pyc::source_hash(&r, b"x = 1\n");
        let ts = d.path().join("ts.pyc");
        let checked = d.path().join("checked.pyc");
        let unchecked = d.path().join("unchecked.pyc");
        let bad_hash = d.path().join("bad.pyc");
        fs::write(&ts, ts_header(&r, &src)).unwrap();
        fs::write(&checked, header(&r, 3, hash)).unwrap();
        fs::write(&unchecked, header(&r, 1, hash)).unwrap();
        fs::write(&bad_hash, header(&r, 1, [0; 8])).unwrap();
        use InvalidationMode::*;
        let w = |p: &Path, m| check_written(&src, p, &r, m);
        assert_eq!(w(&ts, Timestamp), Freshness::Fresh);
        assert_eq!(w(&ts, CheckedHash), Freshness::OtherMode(Timestamp));
        assert_eq!(w(&checked, CheckedHash), Freshness::Fresh);
        assert_eq!(
            w(&checked, UncheckedHash),
            Freshness::OtherMode(CheckedHash)
        );
        assert_eq!(w(&unchecked, UncheckedHash), Freshness::Fresh);
        // The loader trusts an unchecked pyc by default; compile does not.
        assert_eq!(
            w(&bad_hash, UncheckedHash),
            Freshness::Stale(StaleReason::Hash)
        );
        assert_eq!(
            pyc::check(&src, &bad_hash, &r, HashCheckMode::Default),
            Verdict::Fresh
        );
        assert_eq!(
            w(&d.path().join("none.pyc"), Timestamp),
            Freshness::Stale(StaleReason::Missing)
        );
        assert_eq!(
            w(d.path(), Timestamp),
            Freshness::Stale(StaleReason::NotRegularFile)
        );
        fs::write(&src, b"x = 22\n").unwrap();
        assert!(matches!(w(&ts, Timestamp), Freshness::Stale(_)));
        assert_eq!(
            w(&checked, CheckedHash),
            Freshness::Stale(StaleReason::Hash)
        );
    }

    /// `check_written` reads the pyc once and stats the source once; its
    /// reason must be the loader's (`check_loadable`, hashes always
    /// checked) for every source and pyc shape, missing ones included.
    #[test]
    fn one_look_agrees_with_the_loader() {
        let d = tempfile::tempdir().unwrap();
        let r = rules();
        let file_src = d.path().join("m.py");
        fs::write(&file_src, b"x = 1\n").unwrap();
        let dir_src = d.path().join("pkg.py");
        fs::create_dir(&dir_src).unwrap();
        let sources = [file_src.clone(), dir_src, d.path().join("gone.py")];
        let hash = pyc::source_hash(&r, b"x = 1\n");
        let fifo = d.path().join("fifo.pyc");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let not_dir = d.path().join("plain");
        fs::write(&not_dir, b"").unwrap();
        let mut pycs = vec![
            d.path().join("missing.pyc"),
            not_dir.join("under-a-file.pyc"),
            d.path().to_path_buf(),
            fifo,
        ];
        let bodies: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("short", r.magic.to_vec()),
            ("bad-magic", vec![0u8; 40]),
            ("ts", ts_header(&r, &file_src)),
            ("ts-stale", header(&r, 0, [0; 8])),
            ("ts-header-only", ts_header(&r, &file_src)[..16].to_vec()),
            ("checked", header(&r, 3, hash)),
            ("checked-bad", header(&r, 3, [1; 8])),
            ("bad-flags", header(&r, 4, [0; 8])),
        ];
        for (name, bytes) in &bodies {
            let p = d.path().join(format!("{name}.pyc"));
            fs::write(&p, bytes).unwrap();
            pycs.push(p);
        }
        let mut compared = 0;
        for source in &sources {
            for p in &pycs {
                for wanted in [InvalidationMode::Timestamp, InvalidationMode::CheckedHash] {
                    let ours = check_written(source, p, &r, wanted);
                    if matches!(ours, Freshness::OtherMode(_)) {
                        continue;
                    }
                    let loader =
                        from_verdict(pyc::check_loadable(source, p, &r, HashCheckMode::Always));
                    assert_eq!(ours, loader, "{} / {}", source.display(), p.display());
                    compared += 1;
                }
            }
        }
        // Every source shape met every pyc shape at least once.
        assert!(compared >= sources.len() * pycs.len(), "{compared}");
    }

    #[test]
    fn corrupt_bodies_are_stale() {
        let d = tempfile::tempdir().unwrap();
        let r = rules();
        let src = d.path().join("m.py");
        fs::write(&src, b"x = 1\n").unwrap();
        let good = ts_header(&r, &src);
        let hl = r.header_len();
        let cases: Vec<(&str, Vec<u8>, Verdict)> = vec![
            ("plausible", good.clone(), Verdict::Fresh),
            (
                "ref-flag",
                {
                    let mut v = good.clone();
                    v[hl] = b'c' | 0x80;
                    v
                },
                Verdict::Fresh,
            ),
            (
                "header-only",
                good[..hl].to_vec(),
                Verdict::Stale(StaleReason::CorruptBody),
            ),
            (
                "short-body",
                good[..hl + pyc::MIN_BODY - 1].to_vec(),
                Verdict::Stale(StaleReason::CorruptBody),
            ),
            (
                "zeroed-body",
                {
                    let mut v = good.clone();
                    v[hl] = 0;
                    v
                },
                Verdict::Stale(StaleReason::CorruptBody),
            ),
            (
                "tuple-body",
                {
                    let mut v = good.clone();
                    v[hl] = b')';
                    v
                },
                Verdict::Stale(StaleReason::CorruptBody),
            ),
            // A bad header is reported as such, whatever the body.
            (
                "bad-magic",
                {
                    let mut v = good.clone();
                    v[0] ^= 0xff;
                    v[hl] = 0;
                    v
                },
                Verdict::Stale(StaleReason::BadMagic),
            ),
        ];
        for (name, bytes, want) in cases {
            let p = d.path().join(format!("{name}.pyc"));
            fs::write(&p, &bytes).unwrap();
            assert_eq!(
                check_all(
                    &[PycTarget {
                        source: src.clone(),
                        cfile: p.clone()
                    }],
                    &r,
                    HashCheckMode::Default
                )[0],
                want,
                "{name}"
            );
            // The loader's own decision looks at the header only.
            let loader = pyc::check(&src, &p, &r, HashCheckMode::Default);
            if want == Verdict::Stale(StaleReason::CorruptBody) {
                assert_eq!(loader, Verdict::Fresh, "{name}");
                assert_eq!(
                    check_written(&src, &p, &r, InvalidationMode::Timestamp),
                    Freshness::Stale(StaleReason::CorruptBody),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn batch_keeps_order_on_both_paths() {
        let d = tempfile::tempdir().unwrap();
        let r = rules();
        let mut pairs = Vec::new();
        let mut expect = Vec::new();
        for i in 0..(PARALLEL_THRESHOLD * 2 + 3) {
            let src = d.path().join(format!("m{i}.py"));
            fs::write(&src, format!("x = {i}\n")).unwrap();
            let pyc_path = d.path().join(format!("m{i}.pyc"));
            if i % 3 == 0 {
                fs::write(&pyc_path, ts_header(&r, &src)).unwrap();
                expect.push(Verdict::Fresh);
            } else {
                expect.push(Verdict::Stale(StaleReason::Missing));
            }
            pairs.push(PycTarget {
                source: src,
                cfile: pyc_path,
            });
        }
        assert_eq!(check_all(&pairs, &r, HashCheckMode::Default), expect);
        let few = &pairs[..5];
        assert_eq!(
            check_all(few, &r, HashCheckMode::Default),
            expect[..5].to_vec()
        );
        let written = check_all_written(&pairs, &r, InvalidationMode::Timestamp);
        let as_verdicts: Vec<Verdict> = written
            .iter()
            .map(|f| match f {
                Freshness::Fresh => Verdict::Fresh,
                Freshness::Stale(r) => Verdict::Stale(*r),
                Freshness::OtherMode(_) => panic!("no hash pycs here"),
            })
            .collect();
        assert_eq!(as_verdicts, expect);
    }

    /// Prints sequential vs parallel timings around [`PARALLEL_THRESHOLD`]
    /// for the three workloads it governs; asserts only that both sides
    /// agree. A measurement, not a check: run it on purpose, in release mode
    /// (`cargo test --release --lib parallel_threshold_timing -- --ignored
    /// --nocapture`). Medians of 31 runs, the two sides alternating:
    ///
    /// * `stat`: one `manifest::observe` (a stat) per path, on the calling
    ///   thread vs over two threads (one scoped thread spawned, as
    ///   `manifest::check_encoded` does);
    /// * `stat/rayon`: the same over rayon ([`par_map`] of `observe`, as the
    ///   launch's re-stamping does);
    /// * `pyc`: [`pyc::check`] (a stat and a 16-byte header read) per pair,
    ///   on the calling thread vs rayon ([`check_all`]).
    #[test]
    #[ignore = "a timing measurement; run with --ignored"]
    fn parallel_threshold_timing() {
        let d = tempfile::tempdir().unwrap();
        let r = rules();
        let mut pairs = Vec::new();
        for i in 0..1024 {
            let src = d.path().join(format!("m{i}.py"));
            fs::write(&src, format!("x = {i}\n")).unwrap();
            let pyc_path = d.path().join(format!("m{i}.pyc"));
            fs::write(&pyc_path, ts_header(&r, &src)).unwrap();
            pairs.push((src, pyc_path));
        }
        let check = |p: &(PathBuf, PathBuf)| pyc::check(&p.0, &p.1, &r, HashCheckMode::Default);
        let observe = |p: &(PathBuf, PathBuf)| crate::manifest::observe(&p.0);
        let two_threads = |set: &[(PathBuf, PathBuf)]| {
            let (a, b) = set.split_at(set.len() / 2);
            std::thread::scope(|s| {
                let other = s.spawn(|| b.iter().map(observe).collect::<Vec<_>>());
                let mut mine: Vec<_> = a.iter().map(observe).collect();
                mine.extend(other.join().unwrap());
                mine
            })
        };
        // Warm the pool and the page cache.
        let _: Vec<_> = pairs.par_iter().map(check).collect();
        let median = |mut v: Vec<std::time::Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let reps = 31;
        for n in [32usize, 64, 128, 192, 256, 384, 512, 1024] {
            let set = &pairs[..n];
            let (mut seq, mut split, mut seq_r, mut ray) = (vec![], vec![], vec![], vec![]);
            let (mut pseq, mut ppar) = (vec![], vec![]);
            for _ in 0..reps {
                let t = Instant::now();
                let a: Vec<_> = set.iter().map(observe).collect();
                seq.push(t.elapsed());
                let t = Instant::now();
                let b = two_threads(set);
                split.push(t.elapsed());
                assert_eq!(a, b);
                let t = Instant::now();
                let a: Vec<_> = set.iter().map(observe).collect();
                seq_r.push(t.elapsed());
                let t = Instant::now();
                let b: Vec<_> = set.par_iter().map(observe).collect();
                ray.push(t.elapsed());
                assert_eq!(a, b);
                let t = Instant::now();
                let a: Vec<_> = set.iter().map(check).collect();
                pseq.push(t.elapsed());
                let t = Instant::now();
                let b: Vec<_> = set.par_iter().map(check).collect();
                ppar.push(t.elapsed());
                assert_eq!(a, b);
            }
            eprintln!(
                "[threshold] {n:5}: stat {:?} vs 2 threads {:?} | stat {:?} vs rayon {:?} | pyc {:?} vs rayon {:?}",
                median(seq),
                median(split),
                median(seq_r),
                median(ray),
                median(pseq),
                median(ppar)
            );
        }
    }
}
