//! `kolosal closure`: the import closure of an entry, as `kolosal-python`
//! would compute it, and why a module is in it.
//!
//! ```text
//! kolosal closure [--python P] [-O...] [-P] [--no-startup] (SCRIPT | -m MODULE | -c CODE)
//!                 [--json] [--why MODULE]
//! ```
//!
//! Text output: one line per module, `KIND NAME ORIGIN [PYC STATE]`, entry
//! first, in the order the walk reached them; PYC and STATE (`fresh` or
//! `stale:REASON`, as importlib would decide at this `-O` level) only for
//! modules whose pyc importlib reads. `--why M` prints the chain of imports from a
//! root to `M` instead (exit status 1 when `M` is not in the closure); a link
//! made by the source twin of an extension module says so ("via the source
//! twin of black: …/black/__init__.py").
//!
//! `--json` prints one object (stable; fields are only ever added):
//!
//! ```json
//! {
//!   "schema": 1,                           // this format
//!   "python": "/usr/bin/python3.11",      // interpreter used
//!   "version": "3.11.2",
//!   "optimize": 0,                         // -O count
//!   "entry": {"kind": "script" | "module" | "code", "value": "..."},
//!   "sys_path": ["...", ...],              // "" = the cwd
//!   "modules": [{
//!     "name": "pkg.mod",
//!     "kind": "source" | "package" | "extension" | "sourceless" | "namespace"
//!             | "builtin" | "frozen" | "not-found",
//!     "origin": "/abs/pkg/mod.py" | null,
//!     "search_locations": ["/abs/pkg"] | null,
//!     "main": false,                       // runs as __main__
//!     "pyc_used": true,                    // importlib reads its pyc
//!     "lazy": false,                       // reached only through imports in functions
//!                                          // (always closure_origin.kind == "lazy")
//!     "closure_origin": {"kind": "static"} // module-level imports from the entry / start-up
//!          | {"kind": "lazy"}              // only through imports in function bodies
//!          | {"kind": "learned", "how": "run" | "trace"},  // seen loaded, not found statically
//!     "twin": "/abs/black/__init__.py" | null,  // extension module: the source beside it whose
//!                                          // imports the closure followed (no pyc needed)
//!     "pyc": "/abs/pkg/__pycache__/mod.cpython-311.pyc" | null,  // when pyc_used
//!     "pyc_state": "fresh" | "stale" | null,
//!     "stale_reason": "missing" | "mtime" | "size" | "hash" | ... | null,
//!     "via": {"kind": "entry"}
//!          | {"kind": "startup", "what": "/site-packages/x.pth"}
//!          | {"kind": "import", "importer": "pkg", "line": 3,
//!             "importer_twin": "/abs/pkg/__init__.py" | null}  // line of the importer's twin
//!          | {"kind": "learned", "how": "run" | "trace"}
//!   }, ...],
//!   "probed_dirs": ["...", ...],
//!   "scanned": 12, "cached": 40,           // sources scanned / from the import cache
//!   "why": ["__main__", "pkg", "pkg.mod"] | null   // with --why
//! }
//! ```
//! Paths that are not UTF-8 are printed lossily.

use anyhow::Context;
use clap::{ArgAction, Args};
use kolosal::closure::{
    compute_persisted, Closure, ClosureModule, ClosureOptions, Entry, Origin, Via,
};
use kolosal::interpreter::{facts_for, ProbeConfig, PythonFacts};
use kolosal::pyc::{self, HashCheckMode, PycRules, Verdict};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `kolosal closure`.
#[derive(Debug, Args)]
pub struct ClosureArgs {
    /// Interpreter to resolve for (a path, or a name looked up on PATH;
    /// default: the one `kolosal-python` would pick, as `kolosal info` shows).
    #[arg(long, value_name = "P")]
    pub python: Option<PathBuf>,
    /// Optimisation level, counted like python's `-O` (`-OO` = 2).
    #[arg(short = 'O', action = ArgAction::Count)]
    pub optimize: u8,
    /// Do not prepend the script dir / cwd to sys.path (python's `-P`).
    #[arg(short = 'P')]
    pub safe_path: bool,
    /// Leave out modules imported at start-up (.pth files, sitecustomize).
    #[arg(long)]
    pub no_startup: bool,
    /// Run a library module as a script (python's `-m`).
    #[arg(short = 'm', value_name = "MODULE", conflicts_with_all = ["code", "script"])]
    pub module: Option<String>,
    /// Program passed in as a string (python's `-c`).
    #[arg(short = 'c', value_name = "CODE", conflicts_with = "script")]
    pub code: Option<String>,
    /// The script to run.
    #[arg(value_name = "SCRIPT", required_unless_present_any = ["module", "code"])]
    pub script: Option<PathBuf>,
    /// Print JSON (format in the module docs).
    #[arg(long)]
    pub json: bool,
    /// Show the chain of imports that brings MODULE into the closure.
    #[arg(long, value_name = "MODULE")]
    pub why: Option<String>,
}

/// Runs `kolosal closure`; returns the process exit code.
pub fn run(args: ClosureArgs) -> anyhow::Result<i32> {
    let log = kolosal::log::Log::from_env();
    let cwd = std::env::current_dir()
        .map_err(|e| anyhow::anyhow!("cannot read the working directory ({e})"))?;
    let python = super::discover_python(args.python.clone(), args.script.as_deref())?.path;
    let facts = facts_for(&python, &ProbeConfig::from_current_env())
        .with_context(|| format!("probing {}", python.display()))?;
    let entry = match (&args.module, &args.code, &args.script) {
        (Some(m), _, _) => Entry::Module(m.clone()),
        (_, Some(c), _) => Entry::Code(c.clone()),
        (_, _, Some(s)) => Entry::Script(s.clone()),
        _ => anyhow::bail!("give a SCRIPT, -m MODULE or -c CODE"),
    };
    if let Entry::Script(s) = &entry {
        if !s.exists() {
            anyhow::bail!("{}: no such file; give an existing script", s.display());
        }
    }
    let options = ClosureOptions {
        cwd: Some(cwd.clone()),
        safe_path: args.safe_path || facts.flags.safe_path,
        skip_startup: args.no_startup,
    };
    log.debug(format_args!("probe: {}", python.display()));
    let (closure, _) = compute_persisted(&facts, &entry, &options);
    // Never freed: the process exits after printing, and freeing tens of
    // thousands of small allocations one by one would only delay that.
    let closure = std::mem::ManuallyDrop::new(closure);
    log.debug(format_args!(
        "closure: {} modules, {} sources scanned, {} from cache",
        closure.modules.len(),
        closure.scanned,
        closure.cached
    ));
    let optimize = (args.optimize as u32).max(facts.flags.optimize);
    let pycs = std::mem::ManuallyDrop::new(pyc_states(&facts, &closure, optimize, &cwd));
    log.debug(format_args!(
        "freshness: {} pycs checked",
        pycs.iter().flatten().count()
    ));
    let chain = match &args.why {
        Some(name) => match closure.why(name) {
            Some(c) => Some(c),
            None if args.json => None,
            None => {
                super::error_line(format_args!("{name} is not in the closure of this entry"));
                return Ok(1);
            }
        },
        None => None,
    };
    if args.json {
        let v = to_json(
            &python,
            &facts.version,
            optimize,
            &entry,
            &closure,
            &pycs,
            chain.as_deref(),
        );
        let mut text = serde_json::to_string_pretty(&v)?;
        text.push('\n');
        emit(&text)?;
        return Ok(if args.why.is_some() && chain.is_none() {
            1
        } else {
            0
        });
    }
    let mut text = String::new();
    match chain {
        Some(chain) => {
            for m in chain {
                let _ = writeln!(
                    text,
                    "{:<10} {:<40} {}",
                    m.module.kind.as_str(),
                    m.name(),
                    via_text(&closure, m)
                );
            }
        }
        None => {
            for (m, pyc) in closure.modules.iter().zip(pycs.iter()) {
                let origin = m
                    .module
                    .origin
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "-".into());
                let state = match pyc {
                    Some((path, v)) => format!(" {} {}", path.display(), verdict_text(v)),
                    None => String::new(),
                };
                let _ = writeln!(
                    text,
                    "{:<10} {:<40} {}{}",
                    m.module.kind.as_str(),
                    m.name(),
                    origin,
                    state
                );
            }
            emit(&text)?;
            text.clear();
            let stale = pycs.iter().flatten().filter(|(_, v)| !v.is_fresh()).count();
            eprintln!(
                "{} modules ({} with pycs, {} stale); {} sources scanned, {} from cache",
                closure.modules.len(),
                closure.pyc_modules().count(),
                stale,
                closure.scanned,
                closure.cached
            );
            for (p, e) in &closure.unreadable {
                super::error_line(format_args!("could not read {}: {e}", p.display()));
            }
        }
    }
    emit(&text)?;
    Ok(0)
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write the output ({e})"))
        }
        _ => Ok(()),
    }
}

/// The pyc path and importlib's verdict for each module (same order as
/// `closure.modules`); `None` for modules whose pyc is never read.
fn pyc_states(
    facts: &PythonFacts,
    closure: &Closure,
    optimize: u32,
    cwd: &Path,
) -> Vec<Option<(PathBuf, Verdict)>> {
    let Some(rules) = PycRules::from_facts(facts) else {
        return vec![None; closure.modules.len()];
    };
    let mode = HashCheckMode::parse(&facts.check_hash_based_pycs).unwrap_or_default();
    let prefix = facts.pycache_prefix.as_deref();
    closure
        .modules
        .par_iter()
        .map(|m| {
            let source = m.module.origin.as_deref().filter(|_| m.pyc_used)?;
            let cfile = pyc::cache_from_source(source, &rules, optimize, prefix, cwd)?;
            // The walk stat'ed the source moments ago.
            let verdict = match &m.source_meta {
                Some(meta) => pyc::check_with_meta(source, meta, &cfile, &rules, mode),
                None => pyc::check(source, &cfile, &rules, mode),
            };
            Some((cfile, verdict))
        })
        .collect()
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Fresh => "fresh".into(),
        Verdict::Stale(r) => format!("stale:{r}"),
    }
}

fn via_text(closure: &Closure, m: &ClosureModule) -> String {
    match &m.via {
        Via::Entry => "(entry)".into(),
        Via::Startup(what) => format!("(start-up: {what})"),
        Via::Learned(how) => format!("(learned: {})", how.as_str()),
        Via::Import { importer, line } => match importer_twin(closure, importer) {
            Some(twin) => format!(
                "imported by {importer} line {line} (via the source twin of {importer}: {})",
                twin.display()
            ),
            None => format!("imported by {importer} line {line}"),
        },
    }
}

/// The source twin whose imports the walk followed for `importer`, when it
/// is an extension module with one.
fn importer_twin<'c>(closure: &'c Closure, importer: &str) -> Option<&'c Path> {
    closure.get(importer)?.module.source_twin.as_deref()
}

/// `{"kind": "static"}`, `{"kind": "learned", "how": "trace"}`, ...
pub fn origin_json(o: Origin) -> Value {
    match o.how() {
        Some(how) => json!({"kind": o.kind(), "how": how.as_str()}),
        None => json!({"kind": o.kind()}),
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn to_json(
    python: &Path,
    version: &[u32; 3],
    optimize: u32,
    entry: &Entry,
    closure: &Closure,
    pycs: &[Option<(PathBuf, Verdict)>],
    why: Option<&[&ClosureModule]>,
) -> Value {
    let (ek, ev) = match entry {
        Entry::Script(p) => ("script", path_str(p)),
        Entry::Module(m) => ("module", m.clone()),
        Entry::Code(c) => ("code", c.clone()),
    };
    let modules: Vec<Value> = closure
        .modules
        .iter()
        .zip(pycs)
        .map(|(m, pyc)| {
            let (cfile, state, reason) = match pyc {
                Some((p, Verdict::Fresh)) => (Some(path_str(p)), Some("fresh"), None),
                Some((p, Verdict::Stale(r))) => {
                    (Some(path_str(p)), Some("stale"), Some(r.as_str()))
                }
                None => (None, None, None),
            };
            let via = match &m.via {
                Via::Entry => json!({"kind": "entry"}),
                Via::Startup(w) => json!({"kind": "startup", "what": w}),
                Via::Learned(how) => json!({"kind": "learned", "how": how.as_str()}),
                Via::Import { importer, line } => json!({
                    "kind": "import",
                    "importer": importer,
                    "line": line,
                    "importer_twin": importer_twin(closure, importer).map(path_str),
                }),
            };
            json!({
                "name": m.name(),
                "kind": m.module.kind.as_str(),
                "origin": m.module.origin.as_deref().map(path_str),
                "search_locations": m.module.search_locations.as_ref()
                    .map(|l| l.iter().map(|p| path_str(p)).collect::<Vec<_>>()),
                "main": m.is_main,
                "pyc_used": m.pyc_used,
                "lazy": m.lazy,
                "closure_origin": origin_json(m.origin),
                "twin": m.module.source_twin.as_deref().map(path_str),
                "pyc": cfile,
                "pyc_state": state,
                "stale_reason": reason,
                "via": via,
            })
        })
        .collect();
    json!({
        "schema": 1,
        "python": path_str(python),
        "version": format!("{}.{}.{}", version[0], version[1], version[2]),
        "optimize": optimize,
        "entry": {"kind": ek, "value": ev},
        "sys_path": closure.sys_path.iter().map(|p| path_str(p)).collect::<Vec<_>>(),
        "modules": modules,
        "probed_dirs": closure.probed_dirs.iter().map(|p| path_str(p)).collect::<Vec<_>>(),
        "scanned": closure.scanned,
        "cached": closure.cached,
        "why": why.map(|c| c.iter().map(|m| m.name().to_string()).collect::<Vec<_>>()),
    })
}
