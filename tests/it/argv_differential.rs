//! Differential test of `kolosal::argv::parse` against the real interpreters.
//!
//! For every CPython found (3.6+, so the >= 3.7 set of `common::pythons()`
//! plus 3.6 when present) and every command line of a matrix, the real
//! interpreter runs a probe (as `-c` code, a script, a `-m` module or stdin)
//! that prints what CPython actually decided: `sys.flags`, `sys.argv`,
//! `sys.orig_argv`, `sys.pycache_prefix`, `_imp.check_hash_based_pycs`,
//! whether `os` came from the frozen stdlib and whether code objects carry
//! column positions. The result is compared with `parse()`'s prediction for
//! that version, including that CPython fails exactly when `parse()` says
//! `NotUnderstood` and runs nothing exactly when it says `NoRun`.

use crate::common;

use common::Python;
use kolosal::argv::{parse, LaunchSpec, NotUnderstood, Target};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// One line of Python (it is also fed to the REPL under `-i`), valid on 3.6.
/// It prints JSON without importing `json`, which would cost a third of the
/// interpreter's start-up time on every run.
const PROBE: &str = concat!(
    "import sys,os,_imp;f=sys.flags;h=lambda s:os.fsencode(s).hex();",
    "J=lambda v:'null' if v is None else 'true' if v is True else 'false' if v is False ",
    "else str(v) if isinstance(v,int) else '\"'+v+'\"' if isinstance(v,str) else '['+','.join(map(J,v))+']';",
    "p=getattr(sys,'pycache_prefix',None);",
    "d=[('optimize',f.optimize),",
    "('pycache_prefix',None if p is None else h(p)),",
    "('check_hash',getattr(_imp,'check_hash_based_pycs','default')),",
    "('argv',[h(a) for a in sys.argv]),",
    "('orig_argv',[h(a) for a in sys.orig_argv] if hasattr(sys,'orig_argv') else None),",
    "('isolated',bool(f.isolated)),('ignore_environment',bool(f.ignore_environment)),",
    "('no_user_site',bool(f.no_user_site)),('no_site',bool(f.no_site)),",
    "('safe_path',getattr(f,'safe_path',None)),",
    "('dont_write_bytecode',bool(f.dont_write_bytecode)),('verbose',f.verbose),",
    "('frozen',getattr(os.__spec__,'origin',None)=='frozen'),",
    "('no_debug_ranges',sys.version_info>=(3,11) and list(compile('x','s','eval').co_positions())[-1][2] is None)];",
    "print('KOLOSAL_JSON:{'+','.join('\"'+k+'\":'+J(v) for k,v in d)+'}')"
);

const MARK: &str = "KOLOSAL_JSON:";

/// A command line of the matrix. In `args`, `{code}` stands for the probe,
/// `{script}` for the probe script, `{tmp}` for the work directory.
#[derive(Clone)]
struct Case {
    args: Vec<Vec<u8>>,
    env: Vec<(&'static str, String)>,
}

fn case(args: &[&str], env: &[(&'static str, &str)]) -> Case {
    Case {
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    }
}

fn matrix() -> Vec<Case> {
    let mut m = Vec::new();
    // PYTHONOPTIMIZE × -E/-I × -O count, as clusters and as separate flags.
    let opt_values = ["", "0", "1", "2", " 2", "2 ", "abc", "-1"];
    let o_counts = ["", "O", "OO", "OOO"];
    for (i, value) in opt_values.iter().enumerate() {
        for (j, iso) in ["", "E", "I"].into_iter().enumerate() {
            // Every value meets every isolation mode; the -O count rotates so
            // each count meets values below, equal to and above it.
            let os = o_counts[(i + j) % o_counts.len()];
            let flags = format!("{iso}{os}");
            let mut args: Vec<String> = Vec::new();
            if !flags.is_empty() {
                if i % 2 == 0 {
                    args.push(format!("-{flags}"));
                } else {
                    args.extend(flags.chars().map(|c| format!("-{c}")));
                }
            }
            args.extend(["-c".into(), "{code}".into()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            m.push(case(&args, &[("PYTHONOPTIMIZE", value)]));
        }
    }
    for (args, value) in [
        (&["-O", "-c", "{code}"][..], "2"),
        (&["-OOO", "-c", "{code}"], "1"),
        (&["-OOO", "-c", "{code}"], "5"),
        (&["-c", "{code}"], "99999999999"),
        (&["-c", "{code}"], "+3"),
        (&["-c", "{code}"], "0x2"),
        (&["-c", "{code}", "-E"], "2"),
    ] {
        m.push(case(args, &[("PYTHONOPTIMIZE", value)]));
    }

    // -X pycache_prefix forms × PYTHONPYCACHEPREFIX. Every spelling names the
    // same directory, so each interpreter compiles its start-up modules
    // there once (a .pth file on this machine makes that ~100 modules).
    for x in [
        None,
        Some("pycache_prefix={tmp}/pc"),
        Some("pycache_prefix=pc"),
        Some("pycache_prefix="),
        Some("pycache_prefix"),
    ] {
        for env in [None, Some("./pc"), Some("")] {
            let mut args = Vec::new();
            if let Some(x) = x {
                args.extend(["-X", x]);
            }
            args.extend(["-c", "{code}"]);
            let env: Vec<(&'static str, &str)> = env
                .map(|e| ("PYTHONPYCACHEPREFIX", e))
                .into_iter()
                .collect();
            m.push(case(&args, &env));
        }
    }
    m.push(case(
        &[
            "-Xpycache_prefix=pc/",
            "-X",
            "pycache_prefix=./pc",
            "-c",
            "{code}",
        ],
        &[],
    ));
    m.push(case(
        &["-E", "-c", "{code}"],
        &[("PYTHONPYCACHEPREFIX", "./pc")],
    ));
    m.push(case(
        &["-I", "-Xpycache_prefix=./pc/", "-c", "{code}"],
        &[("PYTHONPYCACHEPREFIX", "pc")],
    ));

    // --check-hash-based-pycs.
    for args in [
        &["--check-hash-based-pycs", "default", "-c", "{code}"][..],
        &["--check-hash-based-pycs", "always", "-c", "{code}"],
        &["--check-hash-based-pycs", "never", "{script}"],
        &[
            "--check-hash-based-pycs",
            "never",
            "--check-hash-based-pycs",
            "always",
            "-c",
            "{code}",
        ],
        &["--check-hash-based-pycs", "Never", "-c", "{code}"],
        &["--check-hash-based-pycs=never", "-c", "{code}"],
        &["--check-hash-based-pycs"],
        &["--check-hash", "never", "-c", "{code}"],
        &["-O-check-hash-based-pycs", "never", "-c", "{code}"],
    ] {
        m.push(case(args, &[]));
    }

    // Targets.
    for args in [
        &["-c", "{code}", "a", "-O", "--", "-"][..],
        &["-c{code}", "x"],
        &["-Oc", "{code}", "-c", "y"],
        &["-m", "probe_mod", "arg", "-O"],
        &["-Omprobe_mod", "-c"],
        &["-I", "-m", "probe_mod"],
        &["-P", "-m", "probe_mod"],
        &["{script}", "-O", "--", "x"],
        &["-x", "{script}"],
        &["-", "a", "-b"],
        &["-O", "-", "-O"],
        &[],
        &["-O"],
        &["--"],
        &["--", "-"],
        &["-O", "--", "-probe.py", "-v"],
        &["-b-", "{script}", "q"],
        &["-i", "-c", "{code}"],
        &["-Wdc", "{script}"],
        &["-W", "ignore", "-Wdefault", "-c", "{code}"],
        &["-bBdqRsStuvv", "-c", "{code}"],
        &[
            "-X",
            "dev",
            "-Xfoo=bar",
            "-X",
            "no_debug_ranges",
            "-c",
            "{code}",
        ],
        &["-X", "frozen_modules=off", "-c", "{code}"],
        &[
            "-X",
            "frozen_modules",
            "-X",
            "frozen_modules=off",
            "-c",
            "{code}",
        ],
        &["-X", "frozen_modules=On", "-c", "{code}"],
        &[
            "-X",
            "frozen_modules=off",
            "-X",
            "frozen_modules=",
            "-c",
            "{code}",
        ],
        &[
            "-X",
            "frozen_modules=off",
            "-X",
            "frozen_modules=bad",
            "-c",
            "{code}",
        ],
        &["-X", "frozen_modules=", "-c", "{code}"],
        &["-X", "int_max_str_digits= 640", "-c", "{code}"],
        &["-X", "utf8=2", "-c", "{code}"],
        &["-X", "utf8=0", "-c", "{code}"],
        &["-c", "{code}", "-X", "utf8=2"],
        &["-X", "int_max_str_digits=5", "-c", "{code}"],
        &["-X", "int_max_str_digits=0", "-c", "{code}"],
        &["-P", "-c", "{code}"],
        &["-IP", "-c", "{code}"],
    ] {
        m.push(case(args, &[]));
    }

    // Flag-like environment variables.
    for (var, value) in [
        ("PYTHONSAFEPATH", "1"),
        ("PYTHONSAFEPATH", "0"),
        ("PYTHONSAFEPATH", ""),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONDONTWRITEBYTECODE", "0"),
        ("PYTHONDONTWRITEBYTECODE", "x"),
        ("PYTHONNOUSERSITE", "0"),
        ("PYTHONNOUSERSITE", "1"),
        ("PYTHONVERBOSE", " 2"),
        ("PYTHONNODEBUGRANGES", "0"),
        ("PYTHONUTF8", "2"),
        ("PYTHONINTMAXSTRDIGITS", "5"),
    ] {
        m.push(case(&["-c", "{code}"], &[(var, value)]));
        m.push(case(&["-E", "-c", "{code}"], &[(var, value)]));
    }
    m.push(case(
        &["-X", "utf8", "-c", "{code}"],
        &[("PYTHONUTF8", "2")],
    ));

    // Values 3.14 (importtime, context_aware_warnings, thread_inherit_context)
    // and 3.15 (pathconfig_warnings, lazy_imports) check; older versions
    // ignore them all.
    for x in [
        "importtime=2",
        "importtime=3",
        "importtime=-1",
        "importtime=x",
        "importtime=",
        "importtime",
        "context_aware_warnings=1",
        "context_aware_warnings= 0",
        "context_aware_warnings=",
        "context_aware_warnings=2",
        "context_aware_warnings",
        "thread_inherit_context=0",
        "thread_inherit_context=x",
        "pathconfig_warnings=0",
        "pathconfig_warnings=2",
        "pathconfig_warnings",
        "lazy_imports=all",
        "lazy_imports=normal",
        "lazy_imports=none",
        "lazy_imports=",
        "lazy_imports",
    ] {
        m.push(case(&["-X", x, "-c", "{code}"], &[]));
    }
    for (args, var, value) in [
        (&["-c", "{code}"][..], "PYTHONPROFILEIMPORTTIME", "3"),
        (&["-c", "{code}"], "PYTHONPROFILEIMPORTTIME", "x"),
        (&["-E", "-c", "{code}"], "PYTHONPROFILEIMPORTTIME", "3"),
        (
            &["-X", "importtime=1", "-c", "{code}"],
            "PYTHONPROFILEIMPORTTIME",
            "-1",
        ),
        (&["-c", "{code}"], "PYTHON_CONTEXT_AWARE_WARNINGS", "2"),
        (&["-c", "{code}"], "PYTHON_CONTEXT_AWARE_WARNINGS", " 1"),
        (
            &["-X", "context_aware_warnings=1", "-c", "{code}"],
            "PYTHON_CONTEXT_AWARE_WARNINGS",
            "x",
        ),
        (&["-c", "{code}"], "PYTHON_THREAD_INHERIT_CONTEXT", "2"),
        (
            &["-I", "-c", "{code}"],
            "PYTHON_THREAD_INHERIT_CONTEXT",
            "2",
        ),
        (&["-c", "{code}"], "PYTHON_PATHCONFIG_WARNINGS", "2"),
        (&["-c", "{code}"], "PYTHON_LAZY_IMPORTS", "all"),
        (&["-c", "{code}"], "PYTHON_LAZY_IMPORTS", "none"),
        (&["-E", "-c", "{code}"], "PYTHON_LAZY_IMPORTS", "none"),
        (
            &["-X", "lazy_imports=normal", "-c", "{code}"],
            "PYTHON_LAZY_IMPORTS",
            "bad",
        ),
        (&["-V"], "PYTHON_LAZY_IMPORTS", "bad"),
    ] {
        m.push(case(args, &[(var, value)]));
    }
    for args in [
        &[
            "-X",
            "lazy_imports=all",
            "-X",
            "lazy_imports=bad",
            "-c",
            "{code}",
        ][..],
        &[
            "-X",
            "lazy_imports=bad",
            "-X",
            "lazy_imports=all",
            "-c",
            "{code}",
        ],
        &["-X", "importtime=5", "-X", "importtime=1", "-c", "{code}"],
        &["-h", "-X", "context_aware_warnings=5"],
        &["-V", "-X", "lazy_imports=bad"],
    ] {
        m.push(case(args, &[]));
    }

    // Refused, or nothing to run.
    for args in [
        &["-Z", "-c", "{code}"][..],
        &["-J", "-c", "{code}"],
        &["-U", "-c", "{code}"],
        &["-:", "-c", "{code}"],
        &["-c"],
        &["-O", "-m"],
        &["-W"],
        &["-X"],
        &["--foo", "-c", "{code}"],
        &["---", "-c", "{code}"],
        &["-h", "-Z"],
        &["-Z", "-h"],
        &["-V", "-Z"],
        &["-V", "-c", "{code}"],
        &["-VV"],
        &["-?"],
        &["--help"],
        &["--version"],
        &["--help-all"],
        &["--help-env"],
        &["--help-xoptions"],
        &["-h", "-X", "utf8=2"],
        &["-V", "-X", "int_max_str_digits=5"],
        &["-V", "-X", "frozen_modules=bad"],
        &["-Eé", "-c", "{code}"],
        &["-m", ""],
        &["-m.probe_mod"],
    ] {
        m.push(case(args, &[]));
    }

    // Bytes that are not UTF-8.
    m.push(Case {
        args: vec![
            b"-c".to_vec(),
            b"{code}".to_vec(),
            vec![0xff, b'a'],
            vec![0x80],
        ],
        env: vec![],
    });
    m.push(Case {
        args: vec![b"{script}".to_vec(), vec![0xfe], b"-O".to_vec()],
        env: vec![],
    });
    m.push(Case {
        args: vec![vec![b'-', b'X', 0xff], b"-c".to_vec(), b"{code}".to_vec()],
        env: vec![],
    });
    m
}

/// Replaces the placeholders of one argument.
fn expand(arg: &[u8], tmp: &Path) -> OsString {
    let s = match std::str::from_utf8(arg) {
        Ok(s) => s,
        Err(_) => return OsString::from_vec(arg.to_vec()),
    };
    let s = s
        .replace("{code}", PROBE)
        .replace("{script}", "probe_script.py")
        .replace("{tmp}", &tmp.to_string_lossy());
    OsString::from(s)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs one case on one interpreter; returns a description of every difference.
fn check(py: &Python, c: &Case, tmp: &Path) -> Vec<String> {
    let args: Vec<OsString> = c.args.iter().map(|a| expand(a, tmp)).collect();
    let mut cmd = py.cmd();
    cmd.current_dir(tmp).args(&args);
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    // The child's whole environment is what the command sets explicitly.
    let child_env: Vec<(String, OsString)> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_owned())))
        .collect();
    let lookup = |name: &str| {
        child_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let minor = (py.version.0, py.version.1);
    let predicted = parse(&args, &lookup, minor);

    let label = format!(
        "{} {:?} env {:?}",
        py.label(),
        c.args
            .iter()
            .map(|a| String::from_utf8_lossy(a).replace("{code}", "<probe>"))
            .collect::<Vec<_>>(),
        c.env
    );
    let out = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(PROBE.as_bytes());
                let _ = stdin.write_all(b"\n");
            }
            child.wait_with_output()
        });
    let out = match out {
        Ok(o) => o,
        Err(e) => return vec![format!("{label}: could not run: {e}")],
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json_line = stdout.lines().find_map(|l| l.strip_prefix(MARK));
    let code = out.status.code();
    let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
    let mut diffs = Vec::new();
    let mut differ =
        |what: &str| diffs.push(format!("{label}: {what} (exit {code:?}, stderr: {tail})"));

    match predicted {
        Err(NotUnderstood(why)) => {
            if code == Some(0) || json_line.is_some() {
                differ(&format!("parse() refused ({why}) but CPython ran"));
            } else if code == Some(2) && !stderr.to_lowercase().contains("usage") {
                differ("CPython exited 2 without a usage message");
            }
        }
        Ok(spec) if spec.target == Target::NoRun => {
            if code != Some(0) || json_line.is_some() {
                differ("parse() said NoRun but CPython did not just exit 0");
            }
        }
        Ok(spec)
            if matches!(spec.target, Target::Module(_)) && (spec.safe_path || spec.isolated) =>
        {
            // The cwd is not on sys.path, so the probe module is not found.
            if code != Some(1) || !stderr.contains("No module named") {
                differ("expected 'No module named probe_mod' (cwd not on sys.path)");
            }
        }
        Ok(spec) => match json_line {
            None => differ(&format!(
                "parse() said {:?} but CPython printed no probe output",
                spec.target
            )),
            Some(line) => match serde_json::from_str::<serde_json::Value>(line) {
                Err(e) => differ(&format!("bad probe JSON: {e}")),
                Ok(got) => compare(&spec, &args, py, minor, &got, &mut differ),
            },
        },
    }
    diffs
}

fn compare(
    spec: &LaunchSpec,
    args: &[OsString],
    py: &Python,
    minor: (u32, u32),
    got: &serde_json::Value,
    differ: &mut dyn FnMut(&str),
) {
    use serde_json::{json, Value};
    let prefix = spec
        .pycache_prefix
        .as_ref()
        .map(|p| hex(p.as_os_str().as_bytes()));
    let frozen = minor >= (3, 11) && spec.frozen_modules.unwrap_or(true);
    let expected = [
        ("optimize", json!(spec.optimize)),
        ("pycache_prefix", json!(prefix)),
        ("check_hash", json!(spec.check_hash_based_pycs.as_str())),
        ("isolated", json!(spec.isolated)),
        ("ignore_environment", json!(spec.ignore_environment)),
        ("no_user_site", json!(spec.no_user_site)),
        ("no_site", json!(spec.no_site)),
        (
            "safe_path",
            if minor >= (3, 11) {
                json!(spec.safe_path)
            } else {
                Value::Null
            },
        ),
        ("dont_write_bytecode", json!(spec.dont_write_bytecode)),
        ("verbose", json!(spec.verbose)),
        ("frozen", json!(frozen)),
        ("no_debug_ranges", json!(spec.no_debug_ranges)),
    ];
    for (key, want) in expected {
        if got[key] != want {
            differ(&format!("{key}: parse() {want}, CPython {}", got[key]));
        }
    }
    if minor < (3, 11) && spec.safe_path {
        differ("safe_path predicted before 3.11");
    }

    // sys.argv: argv[0] by target kind, then args[script_args_start..].
    let argv: Vec<String> = got["argv"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let want_rest: Vec<String> = args
        .get(spec.script_args_start..)
        .unwrap_or(&[])
        .iter()
        .map(|a| hex(a.as_bytes()))
        .collect();
    let argv0_ok = match (&spec.target, argv.first()) {
        (Target::Script(p), Some(a0)) => *a0 == hex(p.as_os_str().as_bytes()),
        (Target::Command(_), Some(a0)) => *a0 == hex(b"-c"),
        (Target::Module(_), Some(a0)) => a0.ends_with(&hex(b"/probe_mod.py")),
        (Target::Stdin, Some(a0)) => *a0 == hex(b"-"),
        (Target::Interactive, Some(a0)) => a0.is_empty(),
        _ => false,
    };
    if !argv0_ok || argv.get(1..).unwrap_or(&[]) != want_rest.as_slice() {
        differ(&format!(
            "sys.argv: target {:?} args[{}..] = {:?}, CPython {:?}",
            spec.target, spec.script_args_start, want_rest, argv
        ));
    }
    if minor >= (3, 10) {
        let mut want = vec![hex(py.path.as_os_str().as_bytes())];
        want.extend(args.iter().map(|a| hex(a.as_bytes())));
        if got["orig_argv"] != json!(want) {
            differ(&format!(
                "sys.orig_argv: {:?} vs {}",
                want, got["orig_argv"]
            ));
        }
    }
}

#[test]
fn parse_matches_cpython() {
    let pythons = common::pythons_at_least((3, 6));
    common::report("argv_differential", &pythons);
    assert!(
        pythons.iter().any(|p| p.version >= (3, 7, 0)),
        "no CPython >= 3.7 found"
    );
    let cases = matrix();
    assert!(cases.len() >= 60);

    let tmp = tempfile::tempdir().expect("temp dir");
    let tmp_path = tmp.path();
    let body = format!("# first line, skipped under -x\n{PROBE}\n");
    for name in ["probe_script.py", "probe_mod.py", "-probe.py"] {
        std::fs::write(tmp_path.join(name), &body).expect("write probe");
    }

    let jobs: Vec<(&Python, &Case)> = pythons
        .iter()
        .flat_map(|p| cases.iter().map(move |c| (p, c)))
        .collect();
    let next = AtomicUsize::new(0);
    let diffs = Mutex::new((Vec::new(), Vec::new()));
    let started = Instant::now();
    let workers = std::thread::available_parallelism()
        .map_or(4, |n| n.get() * 3)
        .min(12);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((py, c)) = jobs.get(i) else { break };
                let t = Instant::now();
                let d = check(py, c, tmp_path);
                let ms = t.elapsed().as_millis();
                let mut slot = diffs.lock().unwrap();
                slot.0.extend(d);
                slot.1.push((ms, i));
            });
        }
    });
    common::note(&format!(
        "[argv_differential] {} command lines x {} interpreters = {} runs in {:.1}s",
        cases.len(),
        pythons.len(),
        jobs.len(),
        started.elapsed().as_secs_f64()
    ));
    let (diffs, mut times) = diffs.into_inner().unwrap();
    times.sort_unstable_by(|a, b| b.cmp(a));
    for (ms, i) in times.iter().take(8) {
        let (py, c) = jobs[*i];
        let args: Vec<String> = c
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).replace("{code}", "<probe>"))
            .collect();
        common::note(&format!(
            "[argv_differential]   slow: {ms} ms {} {args:?} {:?}",
            py.label(),
            c.env
        ));
    }
    if !diffs.is_empty() {
        let shown: Vec<&String> = diffs.iter().take(60).collect();
        panic!(
            "{} difference(s) between parse() and CPython:\n{}",
            diffs.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
