//! `kolosal cache stats | prune | dir`: the shared code cache
//! (`src/compile/code_cache`).

use anyhow::anyhow;
use clap::{Args, Subcommand};
use kolosal::compile::code_cache;
use serde_json::json;

/// Arguments of `kolosal cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The action.
    #[command(subcommand)]
    pub action: CacheAction,
}

/// What `kolosal cache` does.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Entries, bytes on disk and the cap.
    Stats {
        /// One JSON object (`"schema": 1`) on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove the least recently used entries down to the cap.
    Prune {
        /// Prune to this size instead of KOLOSAL_CODE_CACHE_SIZE
        /// (`500M`, `2G`, bytes; `0` empties the cache).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
        /// One JSON object (`"schema": 1`) on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print the cache directory (for CI caches and BuildKit mounts).
    Dir {
        /// One JSON object (`"schema": 1`) on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    kolosal::knobs::parse_size(s)
        .ok_or_else(|| format!("'{s}' is not a size (e.g. 500M, 2G, 1048576)"))
}

/// Runs `kolosal cache`.
pub fn run(args: CacheArgs) -> anyhow::Result<i32> {
    let dir = code_cache::dir().ok_or_else(|| {
        anyhow!("no usable cache directory (see KOLOSAL_CACHE_DIR; a cache another user could write is refused)")
    })?;
    let cap = kolosal::knobs::Knobs::from_env().code_cache_size;
    match args.action {
        CacheAction::Dir { json } => {
            if json {
                println!("{}", json!({"schema": 1, "dir": dir}));
            } else {
                println!("{}", dir.display());
            }
        }
        CacheAction::Stats { json } => {
            let s = code_cache::stats(&dir);
            if json {
                println!(
                    "{}",
                    json!({"schema": 1, "dir": dir, "entries": s.entries, "bytes": s.bytes,
                           "cap": cap, "interpreters": s.interpreters})
                );
            } else {
                println!("dir:          {}", dir.display());
                println!("entries:      {}", s.entries);
                println!("size:         {} ({} bytes)", human(s.bytes), s.bytes);
                println!(
                    "cap:          {}{}",
                    human(cap),
                    if cap == 0 { " (cache off)" } else { "" }
                );
                println!("interpreters: {}", s.interpreters);
            }
        }
        CacheAction::Prune { max_size, json } => {
            let (removed, freed) = code_cache::prune(&dir, max_size.unwrap_or(cap));
            let s = code_cache::stats(&dir);
            if json {
                println!(
                    "{}",
                    json!({"schema": 1, "removed": removed, "freed": freed,
                           "entries": s.entries, "bytes": s.bytes})
                );
            } else {
                println!(
                    "removed {removed} entries ({}); {} entries, {} left",
                    human(freed),
                    s.entries,
                    human(s.bytes)
                );
            }
        }
    }
    Ok(0)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
