//! `kolosal-python`: the whole launch, stage by stage.
//!
//! ```text
//! argv ─► interpreter ─► [warm manifest holds? ─► exec]
//!                     ├► [only sources edited, same imports? ─► compile them ─► re-stamp ─► exec]
//!                     └► closure ─► freshness ─► compile ─► record manifest ─► exec
//! ```
//!
//! The hot path is [`run`]: parse argv, find the interpreter, read one
//! manifest and stat what it lists. When every stamp holds it execs at once:
//! no probe, no scan, no process spawned. When only closure sources (or
//! `__pycache__` directories) changed, `repair` rescans just those and,
//! if the closure is unchanged, recompiles their pycs. Otherwise `prepare`
//! does the cold work. Cold and repaired launches, and warm ones until run-time
//! learning has settled, also start a detached `learn`er that records the
//! modules the program loads from source (computed-name imports).
//! Whatever fails inside kolosal, the program still starts: at
//! most one line goes to stderr (`KOLOSAL_LOG=off` silences it), and nothing
//! is ever written to stdout.
//!
//! Under `-E`/`-I` the interpreter ignores `PYTHONDONTWRITEBYTECODE`, so it
//! writes pycs for anything kolosal left stale (modules imported under a
//! computed name); kolosal still precompiles the closure first, and cannot
//! redirect pycs to a fallback prefix (that needs `PYTHONPYCACHEPREFIX`).

pub(crate) mod background;
pub(crate) mod error;
mod key;
pub(crate) mod learn;
mod lock;
pub(crate) mod prepare;
pub(crate) mod repair;

pub use crate::exec::{note_closed_std_fds, restore_default_sigpipe};
pub(crate) use key::launch_key;

use crate::argv::{self, LaunchSpec, Target};
use crate::exec::{exec_python, ExecEnv};
use crate::interpreter::{discover, pyenv, DiscoverRequest, Discovered};
use crate::knobs::Knobs;
use crate::log::{Level, Log};
use crate::manifest;
use std::ffi::OsString;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The version the hot path parses argv as before the interpreter's real
/// version is known: the newest rules. The cold path parses again with the
/// probed version.
const ANY_VERSION: (u32, u32) = (3, 99);

/// Runs `kolosal-python` with this process's argv and environment; never
/// returns. Exit status 127 only when no interpreter can be found or started.
pub fn run() -> ! {
    let stage = background::Stage::from_env();
    match stage {
        background::Stage::Launch => {}
        background::Stage::Detach => std::process::exit(i32::from(background::detach().is_err())),
        background::Stage::Run => background::enter_run(),
        // The learner lowers its priority once its watches are in place.
        background::Stage::Learn => std::env::remove_var(background::STAGE_VAR),
    }
    // The background run's stderr is /dev/null.
    let log = Log::from_env();
    let mut argv = std::env::args_os();
    let argv0 = argv.next();
    let args: Vec<OsString> = argv.collect();
    // CPython rejects this option, so it can never belong to a python
    // command line: the launcher's own version, on stdout.
    if args.first().is_some_and(|a| a == "--kolosal-version") {
        println!("kolosal-python {}", env!("CARGO_PKG_VERSION"));
        std::process::exit(0);
    }
    let in_background = stage != background::Stage::Launch;
    let code = match catch_unwind(AssertUnwindSafe(|| launch(&log, argv0, &args, stage))) {
        Ok(code) => code,
        // A panic after the interpreter was found still runs the program,
        // untouched (no variable set): kolosal's failure never blocks it.
        Err(_) => match FOUND.get() {
            Some(python) if !in_background => {
                let err = exec_python(python, python.as_os_str(), &args, &ExecEnv::default());
                eprintln!("kolosal-python: could not run {}: {err}", python.display());
                126
            }
            Some(_) => 0,
            None => {
                eprintln!("kolosal-python: internal error before python was found; set KOLOSAL_PYTHON, or KOLOSAL_AUTO_COMPILE=0, and report this bug");
                127
            }
        },
    };
    std::process::exit(code)
}

/// The interpreter, once discovery found it: what a panic later in the
/// launch still execs.
static FOUND: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Finds the interpreter, makes the closure's pycs fresh if it can, and execs.
/// Returns an exit code only when the exec itself failed. The background
/// run and the learner stop before the exec and return 0.
fn launch(log: &Log, argv0: Option<OsString>, args: &[OsString], stage: background::Stage) -> i32 {
    let in_background = stage == background::Stage::Run;
    let knobs = Knobs::from_env();
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

    // Stage 1: argv, as the newest CPython reads it (enough to find the entry).
    let spec = argv::parse(args, &env, ANY_VERSION).ok();
    if log.enabled(Level::Debug) {
        log.debug(format_args!(
            "argv: {}",
            spec.as_ref()
                .map_or("not understood: pass-through".into(), describe_target)
        ));
    }

    // Stage 2: the interpreter.
    let mut req = DiscoverRequest::new(cwd.clone(), &env);
    req.invoked_as = argv0;
    if let Some(Target::Script(script)) = spec.as_ref().map(|s| &s.target) {
        req.set_script(script);
    }
    let found = match discover(&req) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kolosal-python: {e}");
            return 127;
        }
    };
    if let Some(why) = &found.ignored_venv {
        log.warn(format_args!("{why}"));
    }
    log.debug(format_args!(
        "interpreter: {} ({})",
        found.path.display(),
        found.rule.as_str()
    ));
    let _ = FOUND.set(found.path.clone());

    let mut exec_env = ExecEnv {
        dont_write_bytecode: false,
        set: found.exec_env.clone(),
    };
    let learner = stage == background::Stage::Learn;
    // The learner always has work (it watches); a launch only when kolosal
    // keeps the pycs fresh and there is a program to run.
    let wanted = learner || knobs.auto_compile;
    if let Some(spec) = spec
        .as_ref()
        .filter(|s| wanted && s.target != Target::NoRun)
    {
        let key = launch_key(&found.path, args, spec.script_args_start, &cwd);
        let ctx = prepare::Context {
            log,
            knobs: &knobs,
            python: &found,
            argv0: req.invoked_as.as_deref(),
            args,
            cwd: &cwd,
            key: &key,
            first_spec: spec,
            in_background: stage != background::Stage::Launch,
            recorded: None,
        };
        if learner {
            let _ = catch_unwind(AssertUnwindSafe(|| learn::run(&ctx)));
            return 0;
        }
        // Only when kolosal keeps the pycs fresh does it stop python
        // from writing its own; otherwise python behaves as plain python.
        if let Some((set, keep_writing)) = make_fresh(&ctx) {
            exec_env.dont_write_bytecode = !knobs.write_bytecode && !keep_writing;
            exec_env.set.extend(set);
        }
    }
    if in_background || learner {
        return 0;
    }
    exec(log, &found, args, &exec_env)
}

/// The warm check, then (on a miss) the cold path. Returns the variables the
/// exec must set and whether the program keeps Python's own pyc writing
/// (the manifest's `write_bytecode`, see `learn`); `None` when kolosal could
/// not make the closure's pycs fresh (no usable cache, an interpreter it
/// cannot serve, an internal failure): then python's own pyc writing stays
/// on, as with plain python. Never fails the launch: a failure is logged
/// and precompilation skipped.
fn make_fresh(ctx: &prepare::Context<'_>) -> Option<(Vec<(OsString, OsString)>, bool)> {
    let (log, key, found) = (ctx.log, ctx.key, ctx.python);
    let mut recorded = None;
    if let Some(bytes) = manifest::read_recorded(key) {
        if let Some(warm) = manifest::check_encoded(&bytes, key.as_bytes()) {
            if prepare::env_is_ours(warm.env.iter().copied()) {
                log.debug(format_args!("warm: manifest holds, exec"));
                if warm.learning && ctx.knobs.learn && !ctx.in_background {
                    start_learner(log, key, ctx.argv0, ctx.args);
                }
                log.info(format_args!(
                    "warm: every recorded stamp holds, nothing to compile ({:.1} ms)",
                    log.elapsed_ms()
                ));
                let env = warm
                    .env
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                return Some((env, warm.write_bytecode));
            }
        }
        recorded = prepare::usable_manifest(&bytes, key);
    }
    // Without a cache kolosal can keep nothing between launches: every
    // launch would probe, scan and compile again, and nothing it leaves to
    // a later launch would ever happen. Plain python does better there.
    if let Err(e) = crate::cache::cache_subdir("manifests") {
        log.debug(format_args!(
            "no usable cache ({e}): python writes its own pycs"
        ));
        return None;
    }
    if crate::interpreter::known_unsupported(&found.path) {
        log.debug(format_args!("unsupported interpreter: pass-through"));
        return None;
    }
    let ctx = prepare::Context {
        recorded: recorded.as_ref(),
        ..*ctx
    };
    let ctx = &ctx;
    let keep_writing = recorded.as_ref().is_some_and(|m| m.write_bytecode);
    let cold = || {
        if let Some(recorded) = &recorded {
            log.debug(format_args!("a stamp changed: trying to repair"));
            match repair::repair(ctx, recorded) {
                Ok(Some(env)) => return Ok(env),
                Ok(None) => {}
                Err(e) => log.debug(format_args!("repair failed: {e}")),
            }
        }
        log.debug(format_args!(
            "cold: {}recomputing the closure",
            if recorded.is_none() {
                "no manifest: "
            } else {
                ""
            }
        ));
        prepare::prepare(ctx)
    };
    let env = match catch_unwind(AssertUnwindSafe(cold)) {
        Ok(Ok(env)) => env,
        Ok(Err(_)) if crate::interpreter::known_unsupported(&found.path) => return None,
        Ok(Err(e)) => {
            log.warn(format_args!("precompiling skipped: {e}"));
            return None;
        }
        Err(_) => {
            log.error(format_args!(
                "precompiling skipped after an internal error; please report it"
            ));
            return None;
        }
    };
    // The old manifest (thousands of records) is freed off the launch's path.
    crate::sync::drop_elsewhere(recorded);
    Some((env, keep_writing))
}

/// Starts a learner for this launch (see `learn`); a failure only costs
/// the learning.
pub(crate) fn start_learner(
    log: &Log,
    key: &manifest::LaunchKey,
    argv0: Option<&std::ffi::OsStr>,
    args: &[OsString],
) {
    // A learner outlives the exec: it must not become the program's child.
    if background::orphans_reach_program() {
        log.debug(format_args!(
            "learn: the program would inherit a learner; none started"
        ));
        return;
    }
    let t = std::time::Instant::now();
    match learn::start(key, argv0, args) {
        Ok(true) => log.debug(format_args!(
            "learn: learner started, watching after {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        )),
        Ok(false) => log.debug(format_args!("learn: a learner is already watching")),
        Err(e) => log.debug(format_args!("learn: no learner ({e})")),
    }
}

/// Stage 6: replaces this process with the interpreter.
fn exec(log: &Log, found: &Discovered, args: &[OsString], env: &ExecEnv) -> i32 {
    // pyenv's pip-rehash hook must see `python -m pip install ...`.
    let program = match &found.pyenv_shim {
        Some(shim) if pyenv::wants_pip_rehash(shim.file_name().unwrap_or_default(), args) => {
            shim.clone()
        }
        _ => found.path.clone(),
    };
    log.debug(format_args!("exec {}", program.display()));
    let err = exec_python(&program, program.as_os_str(), args, env);
    eprintln!("kolosal-python: could not run {}: {err}", program.display());
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

fn describe_target(spec: &LaunchSpec) -> String {
    match &spec.target {
        Target::Script(p) => format!("script {}", p.display()),
        Target::Module(m) => format!("module {m}"),
        Target::Command(_) => "command".into(),
        Target::Stdin => "stdin".into(),
        Target::Interactive => "interactive".into(),
        Target::NoRun => "no program (help/version)".into(),
    }
}
