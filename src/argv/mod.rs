//! Stage 1 of the pipeline: CPython's command-line model (argv + environment
//! → [`LaunchSpec`]).
//!
//! [`parse`] reads a command line exactly as the target CPython (3.6–3.15;
//! a newer version gets the newest rules) would: the option scanner is `_PyOS_GetOpt` (`getopt.rs`), the option
//! handling is `config_parse_cmdline` (Python/initconfig.c, 3.8+;
//! Modules/main.c before), and environment variables follow
//! `config_read_env_vars` ([`env`]). When CPython would refuse the command
//! line, [`parse`] says [`NotUnderstood`] and the launcher simply execs
//! Python without precompiling.
//!
//! The option values and variables 3.14 and 3.15 added checks for
//! (`-X importtime`, `-X context_aware_warnings`, `-X thread_inherit_context`,
//! `-X pathconfig_warnings`, `-X lazy_imports` and their variables) are
//! modelled: a bad value is [`NotUnderstood`]. Config errors that CPython
//! raises for other `-X` options or environment variables
//! (`-X tracemalloc=bad`, `PYTHONHASHSEED=bad`, `PYTHONMALLOC=bad`,
//! `-X cpu_count=bad`, `-X gil=0`, ...) are not: for those [`parse`]
//! answers `Ok` and Python itself reports the error.

mod env;
mod getopt;

use crate::pyc::HashCheckMode;
use env::Env;
use getopt::{GetOpt, LongOpt, Opt, Version};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the interpreter will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `python FILE`: a script path, as given (may be relative, a directory or a zip).
    Script(PathBuf),
    /// `python -m MODULE`.
    Module(String),
    /// `python -c CODE`.
    Command(OsString),
    /// `python -`: the program is read from stdin.
    Stdin,
    /// No target: the REPL, or stdin when it is not a terminal.
    Interactive,
    /// Python exits before running anything (`-h`, `-V`, `--help`, `--help-all`, ...).
    NoRun,
}

/// Everything the rest of the pipeline needs to know about a launch, as
/// CPython itself would work it out from argv and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// What runs.
    pub target: Target,
    /// Index in argv (without `argv[0]`) of the program's `sys.argv[1]`:
    /// `sys.argv[1:] == args[script_args_start..]`.
    pub script_args_start: usize,
    /// `sys.flags.optimize`: `max(count of -O, PYTHONOPTIMIZE)`.
    pub optimize: u32,
    /// `sys.pycache_prefix` as given (a relative prefix stays relative; see
    /// [`LaunchSpec::pycache_prefix_resolved`]). 3.8+.
    pub pycache_prefix: Option<PathBuf>,
    /// `_imp.check_hash_based_pycs` (`--check-hash-based-pycs`, 3.7+).
    pub check_hash_based_pycs: HashCheckMode,
    /// `sys.flags.isolated` (`-I`).
    pub isolated: bool,
    /// `sys.flags.ignore_environment` (`-E`, `-I`).
    pub ignore_environment: bool,
    /// `sys.flags.no_user_site` (`-s`, `-I`, `PYTHONNOUSERSITE`).
    pub no_user_site: bool,
    /// `sys.flags.no_site` (`-S`).
    pub no_site: bool,
    /// `sys.flags.safe_path` (`-P`, `-I`, `PYTHONSAFEPATH`; 3.11+, always
    /// false before).
    pub safe_path: bool,
    /// `sys.flags.dont_write_bytecode` (`-B`, `PYTHONDONTWRITEBYTECODE`).
    pub dont_write_bytecode: bool,
    /// `-X frozen_modules=on|off` (3.11+); `None` when not given (the
    /// build's default applies).
    pub frozen_modules: Option<bool>,
    /// `-X no_debug_ranges` / `PYTHONNODEBUGRANGES` (3.11+).
    pub no_debug_ranges: bool,
    /// `sys.flags.verbose` (`-v` count, `PYTHONVERBOSE`).
    pub verbose: u32,
    /// `sys.warnoptions` without the `BytesWarning` entry: `default` under
    /// dev mode (`-X dev`, `PYTHONDEVMODE`; 3.7+), then `PYTHONWARNINGS`
    /// split at commas, then every `-W` in order. See `warn_options`.
    pub warn_options: Vec<OsString>,
    /// `sys.flags.bytes_warning` (`-b` count).
    pub bytes_warning: u32,
}

impl LaunchSpec {
    /// The pycache prefix as importlib will use it: a relative prefix is
    /// relative to the working directory.
    pub fn pycache_prefix_resolved(&self, cwd: &Path) -> Option<PathBuf> {
        let prefix = self.pycache_prefix.as_ref()?;
        Some(if prefix.is_absolute() {
            prefix.clone()
        } else {
            cwd.join(prefix)
        })
    }
}

/// The command line is one CPython would refuse (or one this model does not
/// follow); the reason is for logs. The launcher then execs Python without
/// precompiling, and Python reports the problem itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUnderstood(pub String);

impl std::fmt::Display for NotUnderstood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "command line not understood: {}", self.0)
    }
}

impl std::error::Error for NotUnderstood {}

fn refuse<T>(why: &str) -> Result<T, NotUnderstood> {
    Err(NotUnderstood(why.to_owned()))
}

/// The `-X` options that matter here. CPython looks them up with
/// `_Py_get_xoption`, which returns the FIRST option whose name (the part
/// before `=`) matches, so the first occurrence of each is kept.
/// Each is `Some(value)`, where value is `None` when the option has no `=`.
#[derive(Default)]
struct XOptions<'a> {
    pycache_prefix: Option<Option<&'a [u8]>>,
    frozen_modules: Option<Option<&'a [u8]>>,
    /// The LAST `-X frozen_modules` (3.14+ reads every occurrence).
    frozen_modules_last: Option<Option<&'a [u8]>>,
    /// Some `-X frozen_modules` has a value other than on/off/empty.
    frozen_modules_bad: bool,
    int_max_str_digits: Option<Option<&'a [u8]>>,
    utf8: Option<Option<&'a [u8]>>,
    importtime: Option<Option<&'a [u8]>>,
    context_aware_warnings: Option<Option<&'a [u8]>>,
    thread_inherit_context: Option<Option<&'a [u8]>>,
    pathconfig_warnings: Option<Option<&'a [u8]>>,
    lazy_imports: Option<Option<&'a [u8]>>,
    no_debug_ranges: bool,
    dev: bool,
}

impl<'a> XOptions<'a> {
    /// Records one `-X` argument. Mirrors `_Py_get_xoption`'s name match.
    fn add(&mut self, option: &'a [u8]) {
        let (name, value) = match memchr::memchr(b'=', option) {
            Some(i) => (&option[..i], Some(&option[i + 1..])),
            None => (option, None),
        };
        let slot = match name {
            b"pycache_prefix" => &mut self.pycache_prefix,
            b"frozen_modules" => {
                self.frozen_modules_last = Some(value);
                self.frozen_modules_bad |= frozen_modules_value(value).is_none();
                &mut self.frozen_modules
            }
            b"int_max_str_digits" => &mut self.int_max_str_digits,
            b"utf8" => &mut self.utf8,
            b"importtime" => &mut self.importtime,
            b"context_aware_warnings" => &mut self.context_aware_warnings,
            b"thread_inherit_context" => &mut self.thread_inherit_context,
            b"pathconfig_warnings" => &mut self.pathconfig_warnings,
            b"lazy_imports" => &mut self.lazy_imports,
            b"no_debug_ranges" => {
                self.no_debug_ranges = true;
                return;
            }
            b"dev" => {
                self.dev = true;
                return;
            }
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
}

/// Why the option loop of `config_parse_cmdline` stopped early.
enum Stop {
    /// Usage error (exit 2).
    Error(&'static str),
    /// `-h`, `-?`, `--help`, `--help-*`: 3.8+ prints and exits at once.
    Help,
}

/// Parses `args` (argv WITHOUT `argv[0]`) the way CPython `version`
/// (`(major, minor)`) would under the environment `env`.
///
/// Mirrors `_PyOS_GetOpt` + `config_parse_cmdline` + `config_read_env_vars`
/// (3.8+), `pymain_parse_cmdline_impl` (3.7) and `Py_Main` (3.6). Never
/// panics, whatever the bytes.
pub fn parse(
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<OsString>,
    version: (u32, u32),
) -> Result<LaunchSpec, NotUnderstood> {
    let v: Version = version;
    let mut g = GetOpt::new(args, v);

    // One scan serves both of CPython's passes: the pre-parse
    // (`precmdline_parse_cmdline`, which reads -E/-I/-X up to -c/-m and
    // ignores errors) and the real one, which stops at the first error or
    // (3.8+) at -h.
    let mut stop: Option<Stop> = None;
    let mut help = false; // 3.6/3.7: -h sets a flag, parsing goes on
    let mut print_version = false;
    let mut run_cm: Option<(u8, &[u8])> = None;
    let (mut count_o, mut count_v) = (0u32, 0u32);
    let (mut opt_e, mut opt_i, mut opt_s, mut opt_big_s, mut opt_p, mut opt_b) =
        (false, false, false, false, false, false);
    let mut hash_mode = HashCheckMode::Default;
    let mut x = XOptions::default();
    let mut cmdline_warnoptions: Vec<&[u8]> = Vec::new();
    let mut count_b = 0u32;

    loop {
        let opt = g.next_opt();
        let mut stop_at = |s: Stop| {
            if stop.is_none() {
                stop = Some(s);
            }
        };
        match opt {
            Opt::End => break,
            Opt::Error(why) => stop_at(Stop::Error(why)),
            // -c and -m end option parsing; what follows belongs to the program.
            Opt::Short(c @ (b'c' | b'm'), Some(arg)) => {
                run_cm = Some((c, arg));
                break;
            }
            Opt::Short(b'h' | b'?', _)
            | Opt::Long(LongOpt::HelpAll | LongOpt::HelpEnv | LongOpt::HelpXoptions, _) => {
                if v >= (3, 8) {
                    stop_at(Stop::Help);
                } else {
                    help = true;
                }
            }
            Opt::Long(LongOpt::CheckHashBasedPycs, value) => {
                match value
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(HashCheckMode::parse)
                {
                    Some(mode) => hash_mode = mode,
                    None => stop_at(Stop::Error(
                        "--check-hash-based-pycs must be one of 'default', 'always', or 'never'",
                    )),
                }
            }
            Opt::Short(b'V', _) => print_version = true,
            Opt::Short(b'O', _) => count_o = count_o.saturating_add(1),
            Opt::Short(b'v', _) => count_v = count_v.saturating_add(1),
            Opt::Short(b'E', _) => opt_e = true,
            Opt::Short(b'I', _) => opt_i = true,
            Opt::Short(b's', _) => opt_s = true,
            Opt::Short(b'S', _) => opt_big_s = true,
            Opt::Short(b'P', _) => opt_p = true,
            Opt::Short(b'B', _) => opt_b = true,
            Opt::Short(b'X', Some(arg)) => x.add(arg),
            Opt::Short(b'W', Some(arg)) => cmdline_warnoptions.push(arg),
            Opt::Short(b'b', _) => count_b = count_b.saturating_add(1),
            // d i q R t u x: no effect on imports, compile warnings or the target.
            Opt::Short(..) => {}
        }
    }
    // Only the pre-parse sees options after the real parse stopped, and it
    // only uses -E, -I and -X utf8; everything else below is either decided
    // by `stop` or comes from options before it.
    let use_environment = !(opt_e || opt_i);
    let env = Env::new(env, use_environment);

    if v >= (3, 7) {
        check_utf8(&x, &env)?;
    }
    match stop {
        Some(Stop::Error(why)) => return refuse(why),
        Some(Stop::Help) => return Ok(no_run(args)),
        None => {}
    }
    if v == (3, 7) {
        // 3.7 reads its whole config before acting on -h / -V.
        check_int_max_str_digits(&x, &env)?;
    }
    if help || print_version {
        return Ok(no_run(args));
    }
    if v >= (3, 8) {
        check_int_max_str_digits(&x, &env)?;
    }
    check_new_config(&x, &env, v)?;

    let frozen_modules = if v >= (3, 11) {
        frozen_modules(&x, v)?
    } else {
        None
    };

    // Target: mirrors the end of config_parse_cmdline.
    let optind = g.optind;
    let (target, script_args_start) = match run_cm {
        Some((b'c', code)) => (Target::Command(OsStr::from_bytes(code).to_owned()), optind),
        Some((_, module)) => match std::str::from_utf8(module) {
            // runpy._get_module_details refuses these before searching.
            Ok("") => return refuse("empty -m module name"),
            Ok(m) if m.starts_with('.') => return refuse("relative -m module name"),
            Ok(m) => (Target::Module(m.to_owned()), optind),
            Err(_) => return refuse("the -m module name is not valid UTF-8"),
        },
        None => match args.get(optind) {
            Some(a) if a.as_bytes() == b"-" => (Target::Stdin, optind + 1),
            Some(a) => (Target::Script(PathBuf::from(a)), optind + 1),
            None => (Target::Interactive, args.len()),
        },
    };

    let safe_path = v >= (3, 11) && (opt_p || opt_i || env.is_set("PYTHONSAFEPATH"));
    Ok(LaunchSpec {
        target,
        script_args_start,
        optimize: env.flag("PYTHONOPTIMIZE", count_o, v),
        pycache_prefix: if v >= (3, 8) {
            pycache_prefix(&x, &env)
        } else {
            None
        },
        check_hash_based_pycs: hash_mode,
        isolated: opt_i,
        ignore_environment: !use_environment,
        no_user_site: opt_s || opt_i || env.flag("PYTHONNOUSERSITE", 0, v) > 0,
        no_site: opt_big_s,
        safe_path,
        dont_write_bytecode: opt_b || env.flag("PYTHONDONTWRITEBYTECODE", 0, v) > 0,
        frozen_modules,
        no_debug_ranges: v >= (3, 11) && (x.no_debug_ranges || env.is_set("PYTHONNODEBUGRANGES")),
        verbose: env.flag("PYTHONVERBOSE", count_v, v),
        warn_options: warn_options(&x, &env, &cmdline_warnoptions, v),
        bytes_warning: count_b,
    })
}

/// `sys.warnoptions` apart from the `BytesWarning` filter that `-b`/`-bb`
/// append last. Mirrors `config_init_warnoptions` (Python/initconfig.c;
/// 3.7's Modules/main.c), lowest precedence first: `default` in dev mode
/// (`-X dev` or a non-empty `PYTHONDEVMODE`, 3.7+), then
/// `config_init_env_warnoptions`' split of `PYTHONWARNINGS` at commas
/// (`wcstok`: empty pieces are skipped; ignored under `-E`/`-I`), then the
/// `-W` options in command-line order.
fn warn_options(x: &XOptions<'_>, env: &Env<'_>, cmdline: &[&[u8]], v: Version) -> Vec<OsString> {
    let mut out = Vec::new();
    if v >= (3, 7) && (x.dev || env.is_set("PYTHONDEVMODE")) {
        out.push(OsString::from("default"));
    }
    if let Some(value) = env.get("PYTHONWARNINGS") {
        out.extend(
            value
                .as_bytes()
                .split(|&b| b == b',')
                .filter(|piece| !piece.is_empty())
                .map(|piece| OsStr::from_bytes(piece).to_owned()),
        );
    }
    out.extend(cmdline.iter().map(|w| OsStr::from_bytes(w).to_owned()));
    out
}

/// A launch that runs nothing (help or version output).
fn no_run(args: &[OsString]) -> LaunchSpec {
    LaunchSpec {
        target: Target::NoRun,
        script_args_start: args.len(),
        optimize: 0,
        pycache_prefix: None,
        check_hash_based_pycs: HashCheckMode::Default,
        isolated: false,
        ignore_environment: false,
        no_user_site: false,
        no_site: false,
        safe_path: false,
        dont_write_bytecode: false,
        frozen_modules: None,
        no_debug_ranges: false,
        verbose: 0,
        warn_options: Vec::new(),
        bytes_warning: 0,
    }
}

/// The effective pycache prefix. Mirrors `config_init_pycache_prefix`
/// (3.8+): `-X pycache_prefix=PATH` wins; `-X pycache_prefix` or
/// `-X pycache_prefix=` disables `PYTHONPYCACHEPREFIX`; an empty variable
/// is unset.
fn pycache_prefix(x: &XOptions<'_>, env: &Env<'_>) -> Option<PathBuf> {
    match x.pycache_prefix {
        Some(Some(value)) if !value.is_empty() => Some(PathBuf::from(OsStr::from_bytes(value))),
        Some(_) => None,
        None => env.get("PYTHONPYCACHEPREFIX").map(PathBuf::from),
    }
}

/// One `-X frozen_modules` value: `on`, `off`, or no value
/// (`-X frozen_modules`, `-X frozen_modules=`) meaning on; `None` for
/// anything else.
fn frozen_modules_value(value: Option<&[u8]>) -> Option<bool> {
    match value {
        None | Some(b"" | b"on") => Some(true),
        Some(b"off") => Some(false),
        Some(_) => None,
    }
}

/// `-X frozen_modules`. Mirrors `config_init_import` (3.11+): a bad value
/// is a fatal config error. 3.11–3.13 read the first occurrence
/// (`_Py_get_xoption`); 3.14+ check every occurrence and the last one wins
/// (measured: `-X frozen_modules -X frozen_modules=off` is off on 3.14,
/// on before).
fn frozen_modules(x: &XOptions<'_>, v: Version) -> Result<Option<bool>, NotUnderstood> {
    let chosen = if v >= (3, 14) {
        if x.frozen_modules_bad {
            return refuse("bad value for -X frozen_modules (expected \"on\" or \"off\")");
        }
        x.frozen_modules_last
    } else {
        x.frozen_modules
    };
    match chosen {
        None => Ok(None),
        Some(value) => match frozen_modules_value(value) {
            Some(on) => Ok(Some(on)),
            None => refuse("bad value for -X frozen_modules (expected \"on\" or \"off\")"),
        },
    }
}

/// UTF-8 mode settings. Mirrors `preconfig_init_utf8_mode` (3.8+;
/// `pymain_init_utf8_mode` in 3.7): `-X utf8`, `-X utf8=0|1`, else
/// `PYTHONUTF8=0|1`; any other value is a fatal error.
fn check_utf8(x: &XOptions<'_>, env: &Env<'_>) -> Result<(), NotUnderstood> {
    match x.utf8 {
        Some(None | Some(b"0" | b"1")) => Ok(()),
        Some(Some(_)) => refuse("invalid -X utf8 option value"),
        None => match env.get("PYTHONUTF8") {
            Some(value) if value != "0" && value != "1" => {
                refuse("invalid PYTHONUTF8 environment variable value")
            }
            _ => Ok(()),
        },
    }
}

/// The integer string conversion limit. Mirrors
/// `config_init_int_max_str_digits` (3.11+, backported to 3.7.14, 3.8.14,
/// 3.9.14 and 3.10.7): `PYTHONINTMAXSTRDIGITS` and `-X int_max_str_digits=N`
/// must be 0 or at least 640 (`_PY_LONG_MAX_STR_DIGITS_THRESHOLD`); the
/// `-X` form needs a value.
fn check_int_max_str_digits(x: &XOptions<'_>, env: &Env<'_>) -> Result<(), NotUnderstood> {
    const THRESHOLD: i32 = 640;
    let valid = |n: Option<i32>| matches!(n, Some(n) if n == 0 || n >= THRESHOLD);
    if let Some(value) = env.get("PYTHONINTMAXSTRDIGITS") {
        if !valid(env::str_to_int(value.as_bytes())) {
            return refuse(
                "PYTHONINTMAXSTRDIGITS: invalid limit; must be >= 640 or 0 for unlimited",
            );
        }
    }
    if let Some(value) = x.int_max_str_digits {
        if !valid(value.and_then(env::str_to_int)) {
            return refuse(
                "-X int_max_str_digits: invalid limit; must be >= 640 or 0 for unlimited",
            );
        }
    }
    Ok(())
}

/// The config values 3.14 and 3.15 validate, in `_PyConfig_Read` order.
/// Each `-X` option and its variable is checked on its own: a bad variable
/// fails even when the `-X` option is good (and the variable is ignored
/// under `-E`/`-I`, as every lookup through [`Env`] is).
fn check_new_config(x: &XOptions<'_>, env: &Env<'_>, v: Version) -> Result<(), NotUnderstood> {
    if v >= (3, 14) {
        check_import_time(x, env)?;
        check_bool_option(
            x.context_aware_warnings,
            env,
            "PYTHON_CONTEXT_AWARE_WARNINGS",
            "-X context_aware_warnings",
        )?;
        check_bool_option(
            x.thread_inherit_context,
            env,
            "PYTHON_THREAD_INHERIT_CONTEXT",
            "-X thread_inherit_context",
        )?;
    }
    if v >= (3, 15) {
        check_bool_option(
            x.pathconfig_warnings,
            env,
            "PYTHON_PATHCONFIG_WARNINGS",
            "-X pathconfig_warnings",
        )?;
        check_lazy_imports(x, env)?;
    }
    Ok(())
}

/// `-X importtime[=N]` / `PYTHONPROFILEIMPORTTIME=N`. Mirrors
/// `config_init_import_time` (3.14+): a value that is a whole `int`
/// ([`env::str_to_int`]) must be 0, 1 or 2 ("reserved for future use");
/// no value or a value that is not a number means 1.
fn check_import_time(x: &XOptions<'_>, env: &Env<'_>) -> Result<(), NotUnderstood> {
    let reserved =
        |value: &[u8]| matches!(env::str_to_int(value), Some(n) if !(0..=2).contains(&n));
    if env
        .get("PYTHONPROFILEIMPORTTIME")
        .is_some_and(|value| reserved(value.as_bytes()))
    {
        return refuse("PYTHONPROFILEIMPORTTIME: values other than 1 and 2 are reserved");
    }
    if let Some(Some(value)) = x.importtime {
        if reserved(value) {
            return refuse("-X importtime: values other than 1 and 2 are reserved");
        }
    }
    Ok(())
}

/// A `-X name=N` option with its `PYTHON_NAME=N` variable, where N must be
/// 0 or 1. Mirrors `config_init_context_aware_warnings`,
/// `config_init_thread_inherit_context` (3.14+) and
/// `config_init_pathconfig_warnings` (3.15+): the `-X` form needs `=`
/// (an empty value is `strtol`'s 0), and both go through
/// [`env::str_to_int`].
fn check_bool_option(
    x: Option<Option<&[u8]>>,
    env: &Env<'_>,
    var: &str,
    what: &str,
) -> Result<(), NotUnderstood> {
    let valid = |value: &[u8]| matches!(env::str_to_int(value), Some(0 | 1));
    if env.get(var).is_some_and(|value| !valid(value.as_bytes())) {
        return Err(NotUnderstood(format!("{var}=N: N is missing or invalid")));
    }
    match x {
        Some(None) => Err(NotUnderstood(format!("{what}=n: n is missing"))),
        Some(Some(value)) if !valid(value) => Err(NotUnderstood(format!("{what}=n: n is invalid"))),
        _ => Ok(()),
    }
}

/// `-X lazy_imports=all|normal` / `PYTHON_LAZY_IMPORTS` (PEP 810). Mirrors
/// `config_init_lazy_imports` (3.15+): exactly `all` or `normal`; the `-X`
/// form needs a value, an empty variable is unset.
fn check_lazy_imports(x: &XOptions<'_>, env: &Env<'_>) -> Result<(), NotUnderstood> {
    let valid = |value: &[u8]| matches!(value, b"all" | b"normal");
    if env
        .get("PYTHON_LAZY_IMPORTS")
        .is_some_and(|value| !valid(value.as_bytes()))
    {
        return refuse("PYTHON_LAZY_IMPORTS: invalid value; expected 'all' or 'normal'");
    }
    match x.lazy_imports {
        Some(value) if !value.is_some_and(valid) => {
            refuse("-X lazy_imports: invalid value; expected 'all' or 'normal'")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
