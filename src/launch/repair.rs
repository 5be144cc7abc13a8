//! The launcher's repair path: a stamp changed, but perhaps not the closure.
//!
//! The common reason a warm manifest fails is an edited module: its source
//! stamp moved, and with it nothing else. Recomputing the whole closure for
//! that (reading the import cache, resolving a thousand modules) costs tens
//! of milliseconds. Instead, when every changed stamp is either
//!
//! * a closure module's source (still a file),
//! * a `__pycache__` directory holding closure pycs, or
//! * a directory whose listing still digests as recorded
//!   ([`crate::closure::listing`]: an editor's atomic save, a swap file, a
//!   log file, a `__pycache__` created or removed),
//!
//! the repair path rescans just the edited sources. If each one's import
//! statements digest as recorded ([`crate::closure::graph::imports_digest`]),
//! the closure is the one recorded: every directory listing the resolver
//! read is still stamped as it was, and so are all other sources. Then only
//! pycs need work: those of the edited sources and those in the changed
//! `__pycache__` directories are checked, the stale ones compiled under the
//! cache lock, and the manifest re-stamped.
//!
//! Anything else (a listing changed, an import added, a file gone, the
//! interpreter replaced) returns `Ok(None)` and the full cold path runs.
//!
//! Stamps are taken before the files they vouch for are read: a source is
//! stamped before it is rescanned, a `__pycache__` is stamped before its
//! pycs are checked. A change racing with the repair therefore leaves a
//! stamp that no longer holds, and the next launch looks again.

use super::error::PrepareError;
use super::prepare::{
    compile_stale, interpreter_view, owned, record_and_defer, split_deferred, stale_with_reasons,
    Context, PycTarget, PREFIX_VAR,
};
use crate::closure::graph::{imports_digest, scan_imports};
use crate::closure::listing;
use crate::freshness::par_map;
use crate::manifest::{self, Expect, Manifest, ModuleRecord};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Repairs `recorded` (this launch key's manifest, whose warm check failed)
/// when the closure is unchanged. Returns the variables the exec must set,
/// or `Ok(None)` when the closure may have changed and the full cold path
/// must run.
pub(crate) fn repair(
    ctx: &Context<'_>,
    recorded: &Manifest,
) -> Result<Option<Vec<(OsString, OsString)>>, PrepareError> {
    let log = ctx.log;
    let now: Vec<Expect> = par_map(&recorded.entries, |(p, _)| manifest::observe(p));

    let records: HashMap<&Path, &ModuleRecord> = recorded
        .modules
        .iter()
        .map(|m| (m.source.as_path(), m))
        .collect();
    // The closure's pycs by `__pycache__` directory.
    let mut by_dir: HashMap<&Path, Vec<&ModuleRecord>> = HashMap::new();
    for m in &recorded.modules {
        if let Some(dir) = m.cfile.as_deref().and_then(Path::parent) {
            by_dir.entry(dir).or_default().push(m);
        }
    }

    let listings: HashMap<&Path, u64> = recorded
        .listings
        .iter()
        .map(|(d, digest)| (d.as_path(), *digest))
        .collect();
    let mut edited: Vec<(usize, &ModuleRecord)> = Vec::new();
    let mut dirs: BTreeSet<usize> = BTreeSet::new();
    let mut relisted: Vec<usize> = Vec::new();
    for (i, ((path, want), got)) in recorded.entries.iter().zip(&now).enumerate() {
        if want == got {
            continue;
        }
        match (got, records.get(path.as_path())) {
            (Expect::File(_), Some(rec)) => edited.push((i, rec)),
            _ if by_dir.contains_key(path.as_path()) => {
                dirs.insert(i);
            }
            // Stamped before listing: a later change fails the new stamp.
            (Expect::Dir(_), None)
                if listings
                    .get(path.as_path())
                    .is_some_and(|&d| listing::digest(path) == Some(d)) =>
            {
                relisted.push(i);
            }
            _ => {
                log.debug(format_args!(
                    "repair: {} changed: the closure must be recomputed",
                    path.display()
                ));
                return Ok(None);
            }
        }
    }
    if edited.is_empty() && dirs.is_empty() && relisted.is_empty() {
        // Every stamp holds now: it changed and changed back. Let the cold
        // path look at it properly.
        return Ok(None);
    }

    // The edited sources still import what they imported.
    for (_, rec) in &edited {
        let Ok(bytes) = std::fs::read(&rec.source) else {
            return Ok(None);
        };
        if imports_digest(&scan_imports(&bytes)) != rec.imports {
            log.debug(format_args!(
                "repair: the imports of {} changed",
                rec.source.display()
            ));
            return Ok(None);
        }
    }
    log.debug(format_args!(
        "repair: closure unchanged ({} sources edited, {} __pycache__ changed, {} listings the same)",
        edited.len(),
        dirs.len(),
        relisted.len()
    ));

    // The pycs to look at: the edited modules' and every closure pyc in a
    // changed `__pycache__`.
    let (facts, spec, rules) = interpreter_view(ctx)?;
    let wanted: Vec<&ModuleRecord> = edited
        .iter()
        .map(|&(_, rec)| rec)
        .chain(
            dirs.iter()
                .flat_map(|&i| by_dir[recorded.entries[i].0.as_path()].iter().copied()),
        )
        .collect();
    let mut seen: HashSet<&Path> = HashSet::new();
    let targets: Vec<PycTarget> = wanted
        .into_iter()
        .filter(|m| m.cfile.as_deref().is_some_and(|c| seen.insert(c)))
        .filter_map(pyc_target)
        .collect();
    let lazy: HashSet<&Path> = recorded
        .modules
        .iter()
        .filter(|m| m.lazy)
        .map(|m| m.source.as_path())
        .collect();
    let stale = owned(stale_with_reasons(&targets, &rules, &spec));
    // importlib compares a timestamp pyc with its source by whole-second
    // mtime and size, so an edit that keeps both (made within the second
    // the pyc was written, or followed by `touch -d` to the old mtime)
    // passes its check. The stamps here (nanosecond mtime, ctime) saw the
    // edit: such a pyc is compiled again before exec, whatever its header
    // says, since the interpreter would load it as it is.
    let stale_cfiles: HashSet<&Path> = stale.iter().map(|(t, _)| t.cfile.as_path()).collect();
    let forced: Vec<PycTarget> = edited
        .iter()
        .filter_map(|&(_, rec)| pyc_target(rec))
        .filter(|t| !stale_cfiles.contains(t.cfile.as_path()))
        .collect();
    let (deferred, mut stale) = split_deferred(ctx, stale, &lazy);
    stale.extend(forced.iter().cloned());
    let forced: HashSet<&Path> = forced.iter().map(|t| t.cfile.as_path()).collect();
    let prefix: Option<PathBuf> = recorded
        .env
        .iter()
        .find(|(k, _)| k == PREFIX_VAR)
        .map(|(_, v)| PathBuf::from(v))
        .or_else(|| spec.pycache_prefix_resolved(ctx.cwd));
    let failed = if stale.is_empty() {
        HashSet::new()
    } else {
        compile_stale(
            ctx,
            &facts,
            &rules,
            &spec,
            prefix.as_deref(),
            &stale,
            &forced,
        )?
    };

    // Re-stamp: the edited sources and re-listed directories as observed
    // before they were read; the `__pycache__` directories (changed, or
    // written just now) afresh, then confirm every closure pyc in them is
    // fresh.
    let mut m = recorded.clone();
    for i in edited
        .iter()
        .map(|&(i, _)| i)
        .chain(relisted.iter().copied())
    {
        m.entries[i].1 = now[i];
    }
    let written: HashSet<&Path> = stale.iter().filter_map(|t| t.cfile.parent()).collect();
    // A `__pycache__` created just now changed its package directory too.
    let parents: HashSet<&Path> = written.iter().filter_map(|d| d.parent()).collect();
    let mut check: Vec<PycTarget> = Vec::new();
    for (i, (path, expect)) in m.entries.iter_mut().enumerate() {
        if parents.contains(path.as_path()) && !dirs.contains(&i) {
            if let Some(&digest) = listings.get(path.as_path()) {
                let now = manifest::observe(path);
                if listing::digest(path) == Some(digest) {
                    *expect = now;
                }
            }
        }
        if dirs.contains(&i) || written.contains(path.as_path()) {
            *expect = manifest::observe(path);
            let recs = by_dir.get(path.as_path()).into_iter().flatten();
            check.extend(recs.copied().filter_map(pyc_target));
        }
    }
    // Only an edited source can have added an import under a computed name.
    let learn_again = !edited.is_empty();
    record_and_defer(
        ctx,
        m,
        &check,
        &failed,
        &deferred,
        &rules,
        &spec,
        learn_again,
    );
    log.info(format_args!(
        "repaired: {} sources edited, {} pycs compiled, {} left to a background run ({:.1} ms)",
        edited.len(),
        stale.len() - failed.len(),
        deferred.len(),
        log.elapsed_ms()
    ));
    Ok(Some(recorded.env.clone()))
}

/// The pyc a recorded module's import reads, if it has one.
fn pyc_target(rec: &ModuleRecord) -> Option<PycTarget> {
    Some(PycTarget {
        source: rec.source.clone(),
        cfile: rec.cfile.clone()?,
    })
}
