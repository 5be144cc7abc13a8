//! `kolosal-python`: a drop-in `python`.
//!
//! For now a pass-through: it finds the real interpreter
//! ([`kolosal::interpreter::discover`]) and execs it with argv unchanged,
//! the unresolved interpreter path as `argv[0]`. It never writes to stdout;
//! when no interpreter is found it prints one line on stderr and exits 127.

use kolosal::interpreter::{discover, pyenv, DiscoverRequest};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn main() {
    let mut argv = std::env::args_os();
    let argv0 = argv.next();
    let args: Vec<OsString> = argv.collect();
    let outcome = std::panic::catch_unwind(|| run(argv0, &args));
    let code = match outcome {
        Ok(code) => code,
        Err(_) => {
            eprintln!("kolosal-python: internal error; set KOLOSAL_PYTHON and report this bug");
            127
        }
    };
    std::process::exit(code);
}

/// Discovers and execs; returns an exit code only on failure.
fn run(argv0: Option<OsString>, args: &[OsString]) -> i32 {
    let cwd = match std::env::current_dir() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "kolosal-python: cannot read the working directory ({e}); cd somewhere that exists"
            );
            return 127;
        }
    };
    let env = |name: &str| std::env::var_os(name);
    let mut req = DiscoverRequest::new(cwd.clone(), &env);
    req.invoked_as = argv0;
    req.entry_dir = entry_script(args).map(|s| {
        let dir = s.parent().map(Path::to_path_buf).unwrap_or_default();
        if dir.as_os_str().is_empty() {
            cwd.clone()
        } else {
            cwd.join(dir)
        }
    });
    let found = match discover(&req) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kolosal-python: {e}");
            return 127;
        }
    };
    // pyenv's pip-rehash hook must see `python -m pip install ...`.
    let (program, exec_env) = match &found.pyenv_shim {
        Some(shim) if pyenv::wants_pip_rehash(shim.file_name().unwrap_or_default(), args) => {
            (shim.clone(), Vec::new())
        }
        _ => (found.path.clone(), found.exec_env.clone()),
    };
    let env = kolosal::exec::ExecEnv {
        dont_write_bytecode: false,
        set: exec_env,
    };
    let err = kolosal::exec::exec_python(&program, program.as_os_str(), args, &env);
    eprintln!("kolosal-python: could not run {}: {err}", program.display());
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

/// The script operand, when argv runs a script: the first argument that is
/// not an option or an option's value, before any `-c`/`-m`/`-`.
// A deliberately small model of CPython's Modules/main.c option loop; the
// full one lives in `kolosal::argv`.
fn entry_script(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let b = a.as_bytes();
        if b == b"--" {
            return it.next().map(PathBuf::from);
        }
        if b == b"-" || b.is_empty() {
            return None;
        }
        if b.starts_with(b"--") {
            if b == b"--check-hash-based-pycs" {
                it.next();
            }
            continue;
        }
        if let Some(cluster) = b.strip_prefix(b"-") {
            for (i, &c) in cluster.iter().enumerate() {
                match c {
                    b'c' | b'm' => return None,
                    b'W' | b'X' => {
                        if i + 1 == cluster.len() {
                            it.next();
                        }
                        break;
                    }
                    _ => {}
                }
            }
            continue;
        }
        return Some(PathBuf::from(OsStr::from_bytes(b)));
    }
    None
}
