//! `kolosal-python ARGS` must be indistinguishable from `python ARGS` run by
//! the same path: stdout bytes, stderr bytes, exit status (codes and
//! signals), argv, environment and stdin, on every CPython found.

use crate::common;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ECHO: &str = r#"import sys, os, hashlib
data = sys.stdin.buffer.read()
out = sys.stdout.buffer
out.write(repr([os.fsencode(a) for a in sys.argv]).encode() + b"\n")
out.write(repr([sys.executable, sys.prefix, sys.path[0], sys.flags.dont_write_bytecode]).encode() + b"\n")
out.write(repr(sorted(os.environb.items())).encode() + b"\n")
out.write(b"stdin " + hashlib.sha256(data).hexdigest().encode() + b" " + str(len(data)).encode() + b"\n")
sys.stderr.buffer.write(b"to stderr \xff\x00 bytes\n")
"#;

const CASES: &[(&str, &str)] = &[
    ("ok.py", ECHO),
    ("exit3.py", "import sys\nprint('bye')\nsys.exit(3)\n"),
    (
        "raises.py",
        "print('before', flush=True)\ndef f():\n    raise ValueError('boom \\u00e9')\nf()\n",
    ),
    (
        "sigterm.py",
        "import os, signal, sys\nsys.stdout.write('dying\\n'); sys.stdout.flush()\nos.kill(os.getpid(), signal.SIGTERM)\n",
    ),
    ("mod_main.py", "import sys\nprint(__name__, sys.argv[1:])\n"),
];

fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not finish in 60 s: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = writer.join();
    let out = child.wait_with_output().expect("output");
    common::wait_background_of(&cmd);
    out
}

#[test]
fn launcher_is_indistinguishable_from_the_interpreter() {
    let pythons = common::pythons();
    common::report("launcher_passthrough", &pythons);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    for (name, text) in CASES {
        std::fs::write(root.join(name), text).unwrap();
    }
    let stdin: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let odd_args: Vec<OsString> = vec![
        "a b".into(),
        "".into(),
        OsString::from_vec(b"\xff\xfe".to_vec()),
        "--flag".into(),
        "-c".into(),
    ];
    // (label, argv after the program, expected exit code or signal)
    let mut invocations: Vec<(&str, Vec<OsString>, Result<i32, i32>)> = vec![
        (
            "script + args",
            [vec!["ok.py".into()], odd_args.clone()].concat(),
            Ok(0),
        ),
        (
            "options first",
            [
                vec!["-s".into(), "-W".into(), "ignore".into(), "ok.py".into()],
                odd_args.clone(),
            ]
            .concat(),
            Ok(0),
        ),
        ("sys.exit(3)", vec!["exit3.py".into()], Ok(3)),
        ("uncaught exception", vec!["raises.py".into()], Ok(1)),
        ("SIGTERM", vec!["sigterm.py".into()], Err(libc::SIGTERM)),
        (
            "-c",
            vec![
                "-c".into(),
                "import sys; print(sys.argv)".into(),
                "x".into(),
            ],
            Ok(0),
        ),
        (
            "-m",
            vec!["-m".into(), "mod_main".into(), "y".into()],
            Ok(0),
        ),
        ("stdin script", vec!["-".into(), "z".into()], Ok(0)),
        ("bad option", vec!["--no-such-option".into()], Ok(2)),
    ];
    let mut compared = 0;
    // Two modes. Pass-through (KOLOSAL_AUTO_COMPILE=0) must be the bare
    // interpreter, byte for byte. The full launcher precompiles and sets
    // PYTHONDONTWRITEBYTECODE=1 for the child, so it must equal the bare
    // interpreter run with that one variable set.
    for auto_compile in [false, true] {
        let cache = tempfile::tempdir().unwrap();
        for py in &pythons {
            for (label, args, expect) in invocations.iter_mut() {
                let input: &[u8] = if *label == "stdin script" {
                    b"import sys; print('from stdin', sys.argv)\n"
                } else {
                    &stdin
                };
                let env = |c: &mut Command| {
                    c.env("PATH", "/usr/bin:/bin")
                        .env("KOLOSAL_PYTHON", &py.path)
                        .env("ODD", OsString::from_vec(b"v\xffal".to_vec()))
                        .current_dir(&root)
                        .args(args.iter());
                };
                let mut direct = common::clean_command(&py.path);
                env(&mut direct);
                let mut via = common::clean_command(common::launcher_bin());
                env(&mut via);
                // The program prints its environment: both sides get the same
                // KOLOSAL_* variables (the bare interpreter ignores them).
                for c in [&mut direct, &mut via] {
                    c.env("KOLOSAL_CACHE_DIR", cache.path());
                    if !auto_compile {
                        c.env("KOLOSAL_AUTO_COMPILE", "0");
                    }
                }
                if auto_compile {
                    direct.env("PYTHONDONTWRITEBYTECODE", "1");
                }
                let want = run(direct, input);
                let got = run(via, input);
                let status = match (want.status.code(), want.status.signal()) {
                    (Some(c), _) => Ok(c),
                    (None, Some(s)) => Err(s),
                    _ => unreachable!("a process ends by code or signal"),
                };
                assert_eq!(
                    status,
                    *expect,
                    "{label} on {}: {}",
                    py.label(),
                    common::describe(&want)
                );
                assert_eq!(
                    got.status.code(),
                    want.status.code(),
                    "{label} on {}",
                    py.label()
                );
                assert_eq!(
                    got.status.signal(),
                    want.status.signal(),
                    "{label} on {}",
                    py.label()
                );
                assert_eq!(
                    got.stdout,
                    want.stdout,
                    "{label} on {}: stdout differs\nvia launcher: {}\ndirect: {}",
                    py.label(),
                    common::describe(&got),
                    common::describe(&want)
                );
                assert_eq!(
                    got.stderr,
                    want.stderr,
                    "{label} on {}: stderr differs\nvia launcher: {}\ndirect: {}",
                    py.label(),
                    common::describe(&got),
                    common::describe(&want)
                );
                compared += 1;
            }
        }
    }
    // The stdin digest really was computed from what was sent.
    let ok = run(
        {
            let mut c = common::clean_command(common::launcher_bin());
            c.env("PATH", "/usr/bin:/bin")
                .env("KOLOSAL_PYTHON", &pythons[0].path)
                .current_dir(&root)
                .arg("ok.py");
            c
        },
        &stdin,
    );
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        text.contains(&format!(
            "stdin {} {}",
            sha256_hex_via(&pythons[0].path, &stdin),
            stdin.len()
        )),
        "{text}"
    );
    common::note(&format!(
        "[launcher_passthrough] {compared} launcher/direct pairs compared byte for byte"
    ));
}

/// sha256 of `data`, computed by the interpreter itself (no hashing crate here).
fn sha256_hex_via(python: &Path, data: &[u8]) -> String {
    let mut c = common::clean_command(python);
    c.args([
        "-c",
        "import sys, hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
    ]);
    String::from_utf8_lossy(&run(c, data).stdout)
        .trim()
        .to_string()
}
