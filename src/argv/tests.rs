//! Unit tests for the tricky corners of the command-line model. The
//! differential suite (tests/argv_differential.rs) checks the same rules
//! against the real interpreters.

use super::*;
use proptest::prelude::*;
use std::os::unix::ffi::OsStringExt;

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn p(list: &[&str], version: (u32, u32)) -> Result<LaunchSpec, NotUnderstood> {
    parse(&args(list), &no_env, version)
}

fn with_env(
    list: &[&str],
    vars: &[(&str, &str)],
    version: (u32, u32),
) -> Result<LaunchSpec, NotUnderstood> {
    let vars: Vec<(String, OsString)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    parse(&args(list), &lookup, version)
}

const ALL: [(u32, u32); 10] = [
    (3, 6),
    (3, 7),
    (3, 8),
    (3, 9),
    (3, 10),
    (3, 11),
    (3, 12),
    (3, 13),
    (3, 14),
    (3, 15),
];

#[test]
fn clusters_and_option_arguments() {
    for v in ALL {
        let s = p(&["-OOu", "app.py", "a", "-O"], v).unwrap();
        assert_eq!(s.target, Target::Script("app.py".into()));
        assert_eq!((s.optimize, s.script_args_start), (2, 2));

        // -W takes the rest of its cluster: "dc"; x is the script.
        let s = p(&["-Wdc", "x"], v).unwrap();
        assert_eq!(
            (s.target, s.script_args_start),
            (Target::Script("x".into()), 2)
        );

        // -W with a separate argument swallows the next entry.
        let s = p(&["-W", "-O", "x"], v).unwrap();
        assert_eq!((s.target, s.optimize), (Target::Script("x".into()), 0));

        let s = p(&["-cprint(1)", "a"], v).unwrap();
        assert_eq!(
            (s.target, s.script_args_start),
            (Target::Command("print(1)".into()), 1)
        );

        let s = p(&["-Ic", "x", "-O"], v).unwrap();
        assert_eq!(s.target, Target::Command("x".into()));
        assert!(s.isolated && s.ignore_environment && s.no_user_site);
        assert_eq!((s.optimize, s.script_args_start), (0, 2));

        let s = p(&["-mpkg.mod", "-c", "x"], v).unwrap();
        assert_eq!(
            (s.target, s.script_args_start),
            (Target::Module("pkg.mod".into()), 1)
        );

        let s = p(&["-Xpycache_prefix=/c", "-OOO", "-v", "-vv", "s.py"], v).unwrap();
        assert_eq!((s.optimize, s.verbose), (3, 3));
    }
}

#[test]
fn targets() {
    for v in ALL {
        assert_eq!(p(&[], v).unwrap().target, Target::Interactive);
        assert_eq!(p(&["-i"], v).unwrap().target, Target::Interactive);
        let s = p(&["-"], v).unwrap();
        assert_eq!((s.target, s.script_args_start), (Target::Stdin, 1));
        let s = p(&["--"], v).unwrap();
        assert_eq!((s.target, s.script_args_start), (Target::Interactive, 1));
        let s = p(&["-O", "--", "-", "a"], v).unwrap();
        assert_eq!((s.target, s.script_args_start), (Target::Stdin, 3));
        let s = p(&["--", "-O"], v).unwrap();
        assert_eq!((s.target, s.optimize), (Target::Script("-O".into()), 0));
        // Options after the script are the script's.
        let s = p(&["s.py", "-O", "-J"], v).unwrap();
        assert_eq!(
            (s.target, s.optimize, s.script_args_start),
            (Target::Script("s.py".into()), 0, 1)
        );
        // --- is an unknown long option (3.7+) or an unknown option (3.6).
        assert!(p(&["---"], v).is_err());
    }
}

#[test]
fn refusals() {
    for v in ALL {
        for bad in [
            &["-c"][..],
            &["-m"],
            &["-W"],
            &["-X"],
            &["-J"],
            &["-Z"],
            &["-:"],
            &["-U", "-c", "1"],
            &["--foo"],
            &["--check-hash-based-pycs=never"],
            &["--check-hash-based-pycs"],
            &["--check-hash-based-pycs", "sometimes"],
            &["-V", "-Z"],
            &["-Z", "-h"],
            &["-é"],
            &["-m", ""],
            &["-m", ".rel"],
        ] {
            assert!(p(bad, v).is_err(), "{bad:?} on {v:?}");
        }
    }
}

#[test]
fn version_differences() {
    // -P exists from 3.11.
    assert!(p(&["-P", "s.py"], (3, 10)).is_err());
    let s = p(&["-P", "s.py"], (3, 11)).unwrap();
    assert!(s.safe_path && !s.isolated);
    assert!(p(&["-I", "s.py"], (3, 11)).unwrap().safe_path);
    assert!(!p(&["-I", "s.py"], (3, 10)).unwrap().safe_path);

    // Long options.
    assert!(p(&["--check-hash-based-pycs", "never"], (3, 6)).is_err());
    let s = p(
        &[
            "--check-hash-based-pycs",
            "never",
            "--check-hash-based-pycs",
            "always",
            "s.py",
        ],
        (3, 7),
    )
    .unwrap();
    assert_eq!(s.check_hash_based_pycs, HashCheckMode::Always);
    assert!(p(&["--help-all"], (3, 10)).is_err());
    assert_eq!(p(&["--help-env"], (3, 11)).unwrap().target, Target::NoRun);
    // A cluster ending in '-' ends the options (3.7+): -c is the script.
    let s = p(&["-b-", "-c", "x"], (3, 7)).unwrap();
    assert_eq!(
        (s.target, s.script_args_start),
        (Target::Script("-c".into()), 2)
    );
    assert!(p(&["-b-", "-c", "x"], (3, 6)).is_err());
    // A long option inside a cluster.
    let s = p(&["-O-check-hash-based-pycs", "never", "s.py"], (3, 8)).unwrap();
    assert_eq!(
        (s.optimize, s.check_hash_based_pycs),
        (1, HashCheckMode::Never)
    );

    // -h exits at once from 3.8; 3.6/3.7 finish parsing first.
    assert_eq!(p(&["-h", "-Z"], (3, 8)).unwrap().target, Target::NoRun);
    assert!(p(&["-h", "-Z"], (3, 7)).is_err());
    assert_eq!(p(&["--help", "-c"], (3, 12)).unwrap().target, Target::NoRun);
    assert_eq!(
        p(&["-VV", "-c", "x"], (3, 12)).unwrap().target,
        Target::NoRun
    );
    assert_eq!(p(&["--version"], (3, 6)).unwrap().target, Target::NoRun);

    // -X checks: utf8 is checked before -h (3.7+); int_max_str_digits after
    // it from 3.8; frozen_modules only from 3.11.
    assert!(p(&["-h", "-X", "utf8=2"], (3, 8)).is_err());
    assert_eq!(
        p(&["-h", "-X", "utf8=2"], (3, 6)).unwrap().target,
        Target::NoRun
    );
    assert!(p(&["-c", "x", "-X", "utf8=2"], (3, 12)).is_ok());
    assert!(p(&["-V", "-X", "int_max_str_digits=5"], (3, 7)).is_err());
    assert_eq!(
        p(&["-V", "-X", "int_max_str_digits=5"], (3, 8))
            .unwrap()
            .target,
        Target::NoRun
    );
    assert!(p(&["-X", "int_max_str_digits", "s"], (3, 12)).is_err());
    assert!(p(&["-X", "int_max_str_digits= 640", "s"], (3, 12)).is_ok());
    assert!(p(&["-X", "int_max_str_digits=", "s"], (3, 12)).is_ok());
    assert!(p(&["-X", "frozen_modules=On", "s"], (3, 11)).is_err());
    assert!(p(&["-X", "frozen_modules=On", "s"], (3, 10)).is_ok());
    assert_eq!(
        p(&["-V", "-X", "frozen_modules=V"], (3, 11))
            .unwrap()
            .target,
        Target::NoRun
    );
    let s = p(
        &["-X", "frozen_modules=off", "-X", "frozen_modules=on", "s"],
        (3, 11),
    )
    .unwrap();
    assert_eq!(s.frozen_modules, Some(false));
    assert_eq!(
        p(&["-X", "frozen_modules", "s"], (3, 13))
            .unwrap()
            .frozen_modules,
        Some(true)
    );
    assert_eq!(
        p(&["-X", "frozen_modules=off", "s"], (3, 10))
            .unwrap()
            .frozen_modules,
        None
    );
    assert!(
        p(&["-X", "no_debug_ranges=0", "s"], (3, 11))
            .unwrap()
            .no_debug_ranges
    );
    assert!(
        !p(&["-X", "no_debug_ranges", "s"], (3, 10))
            .unwrap()
            .no_debug_ranges
    );
}

#[test]
fn environment() {
    let v = (3, 12);
    let s = with_env(
        &["s.py"],
        &[("PYTHONOPTIMIZE", "2"), ("PYTHONDONTWRITEBYTECODE", "0")],
        v,
    )
    .unwrap();
    assert_eq!((s.optimize, s.dont_write_bytecode), (2, false));
    for flag in ["-E", "-I"] {
        let s = with_env(
            &[flag, "s.py"],
            &[("PYTHONOPTIMIZE", "2"), ("PYTHONPYCACHEPREFIX", "/c")],
            v,
        )
        .unwrap();
        assert_eq!((s.optimize, s.pycache_prefix), (0, None));
        assert!(s.ignore_environment);
    }
    // -E anywhere before the target counts.
    assert_eq!(
        with_env(&["-O", "-E", "s.py"], &[("PYTHONOPTIMIZE", "3")], v)
            .unwrap()
            .optimize,
        1
    );
    assert_eq!(
        with_env(&["-c", "x", "-E"], &[("PYTHONOPTIMIZE", "3")], v)
            .unwrap()
            .optimize,
        3
    );
    assert_eq!(
        with_env(&["s"], &[("PYTHONOPTIMIZE", "0")], (3, 6))
            .unwrap()
            .optimize,
        1
    );
    assert_eq!(
        with_env(&["s"], &[("PYTHONOPTIMIZE", "2 ")], (3, 6))
            .unwrap()
            .optimize,
        2
    );
    assert!(
        with_env(&["s"], &[("PYTHONSAFEPATH", "0")], (3, 11))
            .unwrap()
            .safe_path
    );
    assert!(
        !with_env(&["s"], &[("PYTHONSAFEPATH", "")], (3, 11))
            .unwrap()
            .safe_path
    );
    assert!(
        !with_env(&["s"], &[("PYTHONSAFEPATH", "1")], (3, 10))
            .unwrap()
            .safe_path
    );
    assert!(with_env(&["s"], &[("PYTHONUTF8", "2")], v).is_err());
    assert!(with_env(&["-E", "s"], &[("PYTHONUTF8", "2")], v).is_ok());
    assert!(with_env(&["s"], &[("PYTHONUTF8", "2")], (3, 6)).is_ok());
    assert!(
        with_env(&["s"], &[("PYTHONNODEBUGRANGES", "0")], v)
            .unwrap()
            .no_debug_ranges
    );

    // Pycache prefix: -X beats the variable, an empty -X disables it.
    let env = [("PYTHONPYCACHEPREFIX", "envdir")];
    assert_eq!(
        with_env(&["s"], &env, v).unwrap().pycache_prefix,
        Some("envdir".into())
    );
    assert_eq!(with_env(&["s"], &env, (3, 7)).unwrap().pycache_prefix, None);
    assert_eq!(
        with_env(&["-Xpycache_prefix=x", "s"], &env, v)
            .unwrap()
            .pycache_prefix,
        Some("x".into())
    );
    assert_eq!(
        with_env(&["-Xpycache_prefix=", "s"], &env, v)
            .unwrap()
            .pycache_prefix,
        None
    );
    assert_eq!(
        with_env(&["-Xpycache_prefix", "s"], &env, v)
            .unwrap()
            .pycache_prefix,
        None
    );
    let s = with_env(&["-Xpycache_prefix=rel/dir", "s"], &env, v).unwrap();
    assert_eq!(
        s.pycache_prefix_resolved(Path::new("/work")),
        Some(PathBuf::from("/work/rel/dir"))
    );
    let s = with_env(&["-Xpycache_prefix=/abs", "s"], &env, v).unwrap();
    assert_eq!(
        s.pycache_prefix_resolved(Path::new("/work")),
        Some(PathBuf::from("/abs"))
    );
}

#[test]
fn non_utf8_arguments() {
    let list = vec![
        OsString::from("-c"),
        OsString::from_vec(vec![0xff, b'x']),
        OsString::from_vec(vec![0x80]),
    ];
    let s = parse(&list, &no_env, (3, 12)).unwrap();
    assert_eq!(
        s.target,
        Target::Command(OsString::from_vec(vec![0xff, b'x']))
    );
    let list = vec![
        OsString::from_vec(vec![b'-', b'X', 0xff]),
        OsString::from_vec(vec![0xfe]),
    ];
    let s = parse(&list, &no_env, (3, 12)).unwrap();
    assert_eq!(
        s.target,
        Target::Script(PathBuf::from(OsString::from_vec(vec![0xfe])))
    );
    assert!(parse(
        &[OsString::from("-m"), OsString::from_vec(vec![0xff])],
        &no_env,
        (3, 12)
    )
    .is_err());
}

fn arg_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Option-looking clusters built from the interesting alphabet.
        proptest::collection::vec(
            prop::sample::select(b"-bBcdEhiIJmOPqRsStuvVWxX?:=Z \xff".to_vec()),
            0..6
        )
        .prop_map(|mut v| {
            v.insert(0, b'-');
            v
        }),
        prop::sample::select(vec![
            b"--".to_vec(),
            b"-".to_vec(),
            b"--check-hash-based-pycs".to_vec(),
            b"--help-all".to_vec(),
            b"never".to_vec(),
            b"pycache_prefix=x".to_vec(),
            b"frozen_modules=off".to_vec(),
            b"utf8=2".to_vec(),
        ]),
        proptest::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 0..8),
    ]
}

proptest! {
    #[test]
    fn never_panics(
        raw in proptest::collection::vec(arg_strategy(), 0..8),
        minor in 0u32..16,
        opt in proptest::collection::vec(any::<u8>(), 0..6),
    ) {
        let list: Vec<OsString> = raw.into_iter().map(OsString::from_vec).collect();
        let opt = OsString::from_vec(opt);
        let lookup = move |_: &str| Some(opt.clone());
        if let Ok(s) = parse(&list, &lookup, (3, minor)) {
            prop_assert!(s.script_args_start <= list.len());
            if matches!(s.target, Target::Script(_) | Target::Stdin) {
                prop_assert!(s.script_args_start >= 1);
            }
        }
    }
}

#[test]
fn config_checks_of_3_14_and_3_15_are_gated_by_version() {
    // 3.13 ignores every one of them; 3.14 checks its own; 3.15 adds two;
    // a newer version keeps the newest rules.
    let bad_314 = [
        &["-X", "importtime=3", "x.py"][..],
        &["-X", "context_aware_warnings", "x.py"],
        &["-X", "thread_inherit_context=2", "x.py"],
    ];
    let bad_315 = [
        &["-X", "pathconfig_warnings=2", "x.py"][..],
        &["-X", "lazy_imports", "x.py"],
        &["-X", "lazy_imports=none", "x.py"],
    ];
    for list in bad_314.iter().chain(&bad_315) {
        assert!(p(list, (3, 13)).is_ok(), "{list:?}");
        assert!(p(list, (3, 16)).is_err(), "{list:?}");
    }
    for list in &bad_314 {
        assert!(p(list, (3, 14)).is_err(), "{list:?}");
    }
    for list in &bad_315 {
        assert!(p(list, (3, 14)).is_ok(), "{list:?}");
        assert!(p(list, (3, 15)).is_err(), "{list:?}");
    }
    for good in [
        &["-X", "importtime=2", "x.py"][..],
        &["-X", "importtime=x", "x.py"],
        &["-X", "context_aware_warnings=", "x.py"],
        &["-X", "lazy_imports=all", "-X", "lazy_imports=bad", "x.py"],
    ] {
        assert!(p(good, (3, 15)).is_ok(), "{good:?}");
    }
    let env = |var, value| with_env(&["x.py"], &[(var, value)], (3, 15));
    assert!(env("PYTHON_LAZY_IMPORTS", "none").is_err());
    assert!(env("PYTHON_LAZY_IMPORTS", "normal").is_ok());
    assert!(env("PYTHON_CONTEXT_AWARE_WARNINGS", " 1").is_ok());
    assert!(env("PYTHONPROFILEIMPORTTIME", "-1").is_err());
    // -E: the variables are not read at all.
    assert!(with_env(&["-E", "x.py"], &[("PYTHON_LAZY_IMPORTS", "none")], (3, 15)).is_ok());
}

#[test]
fn frozen_modules_last_wins_from_3_14() {
    let list = ["-X", "frozen_modules", "-X", "frozen_modules=off", "x.py"];
    assert_eq!(p(&list, (3, 13)).unwrap().frozen_modules, Some(true));
    assert_eq!(p(&list, (3, 14)).unwrap().frozen_modules, Some(false));
    let bad_later = [
        "-X",
        "frozen_modules=off",
        "-X",
        "frozen_modules=bad",
        "x.py",
    ];
    assert!(p(&bad_later, (3, 13)).is_ok());
    assert!(p(&bad_later, (3, 14)).is_err());
}
