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
    Context, PREFIX_VAR,
};
use crate::argv::LaunchSpec;
use crate::closure::graph::{imports_digest, scan_imports};
use crate::closure::listing;
use crate::freshness::par_map;
use crate::interpreter::PythonFacts;
use crate::manifest::{self, Expect, Manifest, ModuleRecord};
use crate::pyc::{PycRules, PycTarget};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Repairs `recorded` (this launch key's manifest, whose warm check failed)
/// when the closure is unchanged. Returns the variables the exec must set,
/// or `Ok(None)` when the closure may have changed and the full cold path
/// must run.
///
/// Phases: [`classify`] the changed stamps, check that the edited sources
/// still import what they did ([`imports_unchanged`]), [`compile_changed`]
/// the stale pycs, [`restamp`] the manifest, then record it.
pub(crate) fn repair(
    ctx: &Context<'_>,
    recorded: &Manifest,
) -> Result<Option<Vec<(OsString, OsString)>>, PrepareError> {
    let log = ctx.log;
    let now: Vec<Expect> = par_map(&recorded.entries, |(p, _)| manifest::observe(p));
    let index = Index::new(recorded);
    let Some(changes) = classify(ctx, recorded, &now, &index) else {
        return Ok(None);
    };
    if !imports_unchanged(ctx, &changes.edited) {
        return Ok(None);
    }
    log.debug(format_args!(
        "repair: closure unchanged ({} sources edited, {} __pycache__ changed, {} listings the same)",
        changes.edited.len(),
        changes.dirs.len(),
        changes.relisted.len()
    ));

    let (facts, spec, rules) = interpreter_view(ctx)?;
    let view = View {
        facts: &facts,
        rules: &rules,
        spec: &spec,
    };
    let compiled = compile_changed(ctx, &view, recorded, &index, &changes)?;
    let (m, check) = restamp(recorded, &now, &index, &changes, &compiled.stale);
    // Only an edited source can have added an import under a computed name.
    let learn_again = !changes.edited.is_empty();
    record_and_defer(
        ctx,
        m,
        &check,
        &compiled.failed,
        &compiled.deferred,
        &rules,
        &spec,
        learn_again,
    );
    log.info(format_args!(
        "repaired: {} sources edited, {} pycs compiled, {} left to a background run ({:.1} ms)",
        changes.edited.len(),
        compiled.stale.len() - compiled.failed.len(),
        compiled.deferred.len(),
        log.elapsed_ms()
    ));
    Ok(Some(recorded.env.clone()))
}

/// The recorded manifest, indexed by path.
struct Index<'m> {
    /// Each closure module by its source.
    records: HashMap<&'m Path, &'m ModuleRecord>,
    /// The closure's pycs by `__pycache__` directory.
    by_dir: HashMap<&'m Path, Vec<&'m ModuleRecord>>,
    /// Each listed directory's recorded digest.
    listings: HashMap<&'m Path, u64>,
}

impl<'m> Index<'m> {
    fn new(recorded: &'m Manifest) -> Self {
        let records = recorded
            .modules
            .iter()
            .map(|m| (m.source.as_path(), m))
            .collect();
        let mut by_dir: HashMap<&Path, Vec<&ModuleRecord>> = HashMap::new();
        for m in &recorded.modules {
            if let Some(dir) = m.cfile.as_deref().and_then(Path::parent) {
                by_dir.entry(dir).or_default().push(m);
            }
        }
        let listings = recorded
            .listings
            .iter()
            .map(|(d, digest)| (d.as_path(), *digest))
            .collect();
        Index {
            records,
            by_dir,
            listings,
        }
    }
}

/// The changed stamps a repair can handle, as indices into the manifest's
/// entries.
struct Changes<'m> {
    /// Closure sources whose stamp moved (still files).
    edited: Vec<(usize, &'m ModuleRecord)>,
    /// `__pycache__` directories holding closure pycs.
    dirs: BTreeSet<usize>,
    /// Directories whose listing still digests as recorded.
    relisted: Vec<usize>,
}

/// Sorts every stamp that no longer holds into [`Changes`]; `None` when one
/// of them may have changed the closure, or none changed at all.
fn classify<'m>(
    ctx: &Context<'_>,
    recorded: &'m Manifest,
    now: &[Expect],
    index: &Index<'m>,
) -> Option<Changes<'m>> {
    let mut changes = Changes {
        edited: Vec::new(),
        dirs: BTreeSet::new(),
        relisted: Vec::new(),
    };
    for (i, ((path, want), got)) in recorded.entries.iter().zip(now).enumerate() {
        if want == got {
            continue;
        }
        match (got, index.records.get(path.as_path())) {
            (Expect::File(_), Some(rec)) => changes.edited.push((i, rec)),
            _ if index.by_dir.contains_key(path.as_path()) => {
                ctx.log.debug(format_args!(
                    "repair: {} changed (recorded {want:?}, now {got:?})",
                    path.display()
                ));
                changes.dirs.insert(i);
            }
            // Stamped before listing: a later change fails the new stamp.
            (Expect::Dir(_), None)
                if index
                    .listings
                    .get(path.as_path())
                    .is_some_and(|&d| listing::digest(path) == Some(d)) =>
            {
                changes.relisted.push(i);
            }
            _ => {
                ctx.log.debug(format_args!(
                    "repair: {} changed: the closure must be recomputed",
                    path.display()
                ));
                return None;
            }
        }
    }
    if changes.edited.is_empty() && changes.dirs.is_empty() && changes.relisted.is_empty() {
        // Every stamp holds now: it changed and changed back. Let the cold
        // path look at it properly.
        return None;
    }
    Some(changes)
}

/// Whether the edited sources still import what they imported.
fn imports_unchanged(ctx: &Context<'_>, edited: &[(usize, &ModuleRecord)]) -> bool {
    edited.iter().all(|(_, rec)| {
        let Ok(bytes) = std::fs::read(&rec.source) else {
            return false;
        };
        let same = imports_digest(&scan_imports(&bytes)) == rec.imports;
        if !same {
            ctx.log.debug(format_args!(
                "repair: the imports of {} changed",
                rec.source.display()
            ));
        }
        same
    })
}

/// The interpreter as this launch sees it.
struct View<'v> {
    facts: &'v PythonFacts,
    rules: &'v PycRules,
    spec: &'v LaunchSpec,
}

/// What [`compile_changed`] did.
struct Compiled {
    /// The pycs compiled before exec (stale or forced).
    stale: Vec<PycTarget>,
    /// Those left to a background run.
    deferred: Vec<PycTarget>,
    /// Those of `stale` that could not be written.
    failed: HashSet<PathBuf>,
}

/// Checks the pycs of the edited modules and every closure pyc in a changed
/// `__pycache__`, and compiles the stale ones (and the edited modules' pycs
/// importlib would wrongly accept) under the cache lock.
fn compile_changed(
    ctx: &Context<'_>,
    view: &View<'_>,
    recorded: &Manifest,
    index: &Index<'_>,
    changes: &Changes<'_>,
) -> Result<Compiled, PrepareError> {
    let wanted = changes
        .edited
        .iter()
        .map(|&(_, rec)| rec)
        .chain(changes.dirs.iter().flat_map(|&i| {
            index.by_dir[recorded.entries[i].0.as_path()]
                .iter()
                .copied()
        }));
    let mut seen: HashSet<&Path> = HashSet::new();
    let targets: Vec<PycTarget> = wanted
        .filter(|m| m.cfile.as_deref().is_some_and(|c| seen.insert(c)))
        .filter_map(pyc_target)
        .collect();
    let lazy: HashSet<&Path> = recorded
        .modules
        .iter()
        .filter(|m| m.lazy)
        .map(|m| m.source.as_path())
        .collect();
    let stale = owned(stale_with_reasons(&targets, view.rules, view.spec));
    // importlib compares a timestamp pyc with its source by whole-second
    // mtime and size, so an edit that keeps both (made within the second
    // the pyc was written, or followed by `touch -d` to the old mtime)
    // passes its check. The stamps here (nanosecond mtime, ctime) saw the
    // edit: such a pyc is compiled again before exec, whatever its header
    // says, since the interpreter would load it as it is.
    let stale_cfiles: HashSet<&Path> = stale.iter().map(|(t, _)| t.cfile.as_path()).collect();
    let forced: Vec<PycTarget> = changes
        .edited
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
        .or_else(|| view.spec.pycache_prefix_resolved(ctx.cwd));
    let failed = compile_stale(
        ctx,
        view.facts,
        view.rules,
        view.spec,
        prefix.as_deref(),
        &stale,
        &forced,
    )?;
    Ok(Compiled {
        stale,
        deferred,
        failed,
    })
}

/// The re-stamped manifest and the pycs it vouches for that must be fresh
/// before it is stored. The edited sources and re-listed directories are
/// stamped as observed before they were read (`now`); the `__pycache__`
/// directories (changed, or written just now: `compiled`) afresh.
fn restamp(
    recorded: &Manifest,
    now: &[Expect],
    index: &Index<'_>,
    changes: &Changes<'_>,
    compiled: &[PycTarget],
) -> (Manifest, Vec<PycTarget>) {
    let mut m = recorded.clone();
    for i in changes
        .edited
        .iter()
        .map(|&(i, _)| i)
        .chain(changes.relisted.iter().copied())
    {
        m.entries[i].1 = now[i];
    }
    let written: HashSet<&Path> = compiled.iter().filter_map(|t| t.cfile.parent()).collect();
    // A `__pycache__` created just now changed its package directory too.
    let parents: HashSet<&Path> = written.iter().filter_map(|d| d.parent()).collect();
    let mut check: Vec<PycTarget> = Vec::new();
    for (i, (path, expect)) in m.entries.iter_mut().enumerate() {
        let changed_dir = changes.dirs.contains(&i);
        if parents.contains(path.as_path()) && !changed_dir {
            if let Some(&digest) = index.listings.get(path.as_path()) {
                let now = manifest::observe(path);
                if listing::digest(path) == Some(digest) {
                    *expect = now;
                }
            }
        }
        if changed_dir || written.contains(path.as_path()) {
            *expect = manifest::observe(path);
            let recs = index.by_dir.get(path.as_path()).into_iter().flatten();
            check.extend(recs.copied().filter_map(pyc_target));
        }
    }
    (m, check)
}

/// The pyc a recorded module's import reads, if it has one.
fn pyc_target(rec: &ModuleRecord) -> Option<PycTarget> {
    Some(PycTarget {
        source: rec.source.clone(),
        cfile: rec.cfile.clone()?,
    })
}
