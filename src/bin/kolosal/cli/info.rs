//! `kolosal info [--python PATH] [--json] [SCRIPT]`: which interpreter
//! `kolosal-python` would run and why, its probed facts, the probe cache
//! file, and the `KOLOSAL_*` settings in effect.
//!
//! `--json` prints one object with these stable keys:
//!
//! * `schema`: 1 (keys are only ever added);
//! * `interpreter`: `{ "path", "resolved", "rule", "detail" }` — `rule` is one
//!   of `explicit`, `env`, `virtualenv`, `dotvenv`, `pyenv`, `path`; `path`
//!   is what gets exec'd (symlinks kept), `resolved` its real file;
//! * `ignored_venv`: `null`, or one line naming a `.venv` found on the way
//!   that was not used because another user could write it;
//! * `facts`: `null` when the probe failed, else `{ "version" ("3.11.7"),
//!   "releaselevel", "implementation", "executable", "prefix", "base_prefix",
//!   "cache_tag" (string or null), "magic" (hex), "platform", "sys_path"
//!   (without the entry the launch form puts first), "stdlib_dirs", "site_packages",
//!   "user_site" (string or null), "user_site_enabled", "source_suffixes",
//!   "bytecode_suffixes", "extension_suffixes", "builtin_module_count",
//!   "frozen_module_count", "pycache_prefix" (string or null),
//!   "check_hash_based_pycs" }`;
//! * `probe_error`: the probe's error message, or `null`;
//! * `probe_cache`: `{ "file" (string or null), "status" ("hit", "written",
//!   "not-cached"), "note" (string or null) }`;
//! * `knobs`: an object mapping each of `KOLOSAL_PYTHON`,
//!   `KOLOSAL_AUTO_COMPILE`, `KOLOSAL_WORKERS`, `KOLOSAL_LOG`,
//!   `KOLOSAL_CACHE_DIR`, `KOLOSAL_WRITE_BYTECODE` to its value or `null`.
//!
//! Exit code: 0, or 1 when the interpreter was found but could not be
//! probed. Discovery failures are errors (exit 2).

use clap::Args;
use kolosal::interpreter::{facts_for_report, CacheStatus, ProbeConfig, PythonFacts};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Arguments of `kolosal info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Use this interpreter (a path, or a name looked up on PATH).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Print one JSON object (stable keys; see the documentation).
    #[arg(long)]
    pub json: bool,
    /// The entry script: its directory is searched upward for `.venv`.
    pub script: Option<PathBuf>,
}

/// Runs `kolosal info`; returns the process exit code.
pub fn run(args: InfoArgs) -> anyhow::Result<i32> {
    let found = super::discover_python(args.python.clone(), args.script.as_deref())?;
    let probed = facts_for_report(&found.path, &ProbeConfig::from_current_env());
    let knobs: serde_json::Map<String, Value> = kolosal::knobs::NAMES
        .iter()
        .map(|k| {
            let v = std::env::var_os(k).map(|v| Value::String(v.to_string_lossy().into_owned()));
            (k.to_string(), v.unwrap_or(Value::Null))
        })
        .collect();
    let (facts, error, cache) = match &probed {
        Ok((f, r)) => (Some(f), None, Some(r)),
        Err(e) => (None, Some(e.to_string()), None),
    };
    let cache_json = match cache {
        Some(r) => json!({
            "file": r.file.as_ref().map(|f| f.display().to_string()),
            "status": r.status.as_str(),
            "note": match &r.status {
                CacheStatus::Hit => None,
                CacheStatus::Written { previous } => previous.clone(),
                CacheStatus::NotCached(why) => Some(why.clone()),
            },
        }),
        None => json!({ "file": null, "status": "not-cached", "note": "probe failed" }),
    };
    let doc = json!({
        "schema": 1,
        "interpreter": {
            "path": found.path.display().to_string(),
            "resolved": found.resolved.display().to_string(),
            "rule": found.rule.as_str(),
            "detail": found.detail,
        },
        "ignored_venv": found.ignored_venv,
        "facts": facts.map(facts_json),
        "probe_error": error,
        "probe_cache": cache_json,
        "knobs": knobs,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_human(&doc);
    }
    if let Some(e) = &error {
        super::error_line(format_args!("{}: {e}", found.path.display()));
    }
    Ok(if error.is_some() { 1 } else { 0 })
}

fn facts_json(f: &PythonFacts) -> Value {
    let p = |p: &Path| p.display().to_string();
    let ps = |v: &[PathBuf]| v.iter().map(|x| p(x)).collect::<Vec<_>>();
    json!({
        "version": format!("{}.{}.{}", f.version[0], f.version[1], f.version[2]),
        "releaselevel": f.releaselevel,
        "implementation": f.implementation,
        "executable": p(&f.executable),
        "prefix": p(&f.prefix),
        "base_prefix": p(&f.base_prefix),
        "cache_tag": f.cache_tag,
        "magic": f.magic,
        "platform": f.platform,
        "sys_path": ps(&f.sys_path),
        "stdlib_dirs": ps(&f.stdlib_dirs),
        "site_packages": ps(&f.site_packages),
        "user_site": f.user_site.as_deref().map(p),
        "user_site_enabled": f.user_site_enabled,
        "source_suffixes": f.source_suffixes,
        "bytecode_suffixes": f.bytecode_suffixes,
        "extension_suffixes": f.extension_suffixes,
        "builtin_module_count": f.builtin_modules.len(),
        "frozen_module_count": f.frozen_modules.len(),
        "pycache_prefix": f.pycache_prefix.as_deref().map(p),
        "check_hash_based_pycs": f.check_hash_based_pycs,
    })
}

fn print_human(doc: &Value) {
    let s = |v: &Value| match v {
        Value::Null => "(none)".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let i = &doc["interpreter"];
    println!("interpreter: {}", s(&i["path"]));
    if i["resolved"] != i["path"] {
        println!("  resolved:  {}", s(&i["resolved"]));
    }
    println!("  rule:      {} ({})", s(&i["rule"]), s(&i["detail"]));
    if !doc["ignored_venv"].is_null() {
        println!("  note:      {}", s(&doc["ignored_venv"]));
    }
    let f = &doc["facts"];
    if f.is_null() {
        println!("facts: unavailable: {}", s(&doc["probe_error"]));
    } else {
        println!("facts:");
        for key in [
            "version",
            "implementation",
            "executable",
            "prefix",
            "base_prefix",
            "cache_tag",
            "magic",
            "platform",
            "user_site",
            "pycache_prefix",
            "check_hash_based_pycs",
            "builtin_module_count",
            "frozen_module_count",
        ] {
            println!("  {key:<22} {}", s(&f[key]));
        }
        for key in [
            "sys_path",
            "stdlib_dirs",
            "site_packages",
            "source_suffixes",
            "bytecode_suffixes",
            "extension_suffixes",
        ] {
            println!("  {key}:");
            if let Value::Array(items) = &f[key] {
                for item in items {
                    println!("    {}", s(item));
                }
            }
        }
    }
    let c = &doc["probe_cache"];
    println!("probe cache: {} ({})", s(&c["file"]), s(&c["status"]));
    if !c["note"].is_null() {
        println!("  note: {}", s(&c["note"]));
    }
    println!("settings:");
    if let Value::Object(knobs) = &doc["knobs"] {
        for (k, v) in knobs {
            println!("  {k:<24} {}", s(v));
        }
    }
}
