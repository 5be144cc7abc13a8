//! The launcher's cold path: probe, closure, freshness, compile, record.
//!
//! Runs when the warm manifest is missing or a stamp changed. Every step
//! that fails returns an error for the caller to log; the program is exec'd
//! either way.
//!
//! Unwritable trees: when a stale module's `__pycache__` cannot be written
//! (a read-only image, a root-owned site-packages) and the user set no
//! pycache prefix, the whole closure is compiled under
//! `<cache>/pycache` instead and the program runs with
//! `PYTHONPYCACHEPREFIX` pointing there: with a prefix set, the interpreter
//! reads every pyc from it, so all of the closure's pycs must live there.
//! Under `-E`/`-I` the variable would be ignored, so there is no fallback:
//! the stale modules stay stale and the interpreter compiles them in memory,
//! as plain `python` would.

use super::error::PrepareError;
use super::lock::{lock_cache, Locked};
use crate::argv::{self, LaunchSpec, Target};
use crate::closure::graph::{self, ClosureOptions, Entry};
use crate::closure::listing;
use crate::closure::ImportCache;
use crate::compile::{self, CompileJob, Outcome, PoolConfig};
use crate::interpreter::{facts_for, known_facts, Discovered, Known, ProbeConfig, PythonFacts};
use crate::knobs::Knobs;
use crate::log::Log;
use crate::manifest::{self, Expect, LaunchKey, Manifest, ModuleRecord};
use crate::pyc::{self, PycRules, PycTarget, StaleReason, Verdict};
use rustc_hash::FxHashSet;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::path::{Path, PathBuf};

/// Everything the cold path needs from the launch.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    /// Diagnostics.
    pub log: &'a Log,
    /// The `KOLOSAL_*` knobs.
    pub knobs: &'a Knobs,
    /// The interpreter that will run.
    pub python: &'a Discovered,
    /// `argv[0]` as invoked (a `python3` shim link decides which
    /// interpreter name is looked up on `PATH`).
    pub argv0: Option<&'a OsStr>,
    /// argv without `argv[0]`.
    pub args: &'a [OsString],
    /// The working directory.
    pub cwd: &'a Path,
    /// The manifest key of this launch.
    pub key: &'a LaunchKey,
    /// argv as the hot path parsed it, with the newest version's rules
    /// (enough for the probe's flags; parsed again once the version is known).
    pub first_spec: &'a LaunchSpec,
    /// This is the background run (`launch::background`): compile
    /// everything, defer nothing.
    pub in_background: bool,
    /// This launch key's manifest whose warm check failed, if any: the cold
    /// path keeps its learned modules and its `write_bytecode` decision.
    pub recorded: Option<&'a Manifest>,
}

impl Context<'_> {
    /// Whether lazy modules' pycs may be left to a background run.
    pub(super) fn may_defer(&self) -> bool {
        self.knobs.background && !self.in_background && !super::background::orphans_reach_program()
    }
}

/// The variable that points the interpreter at a pycache prefix; a cold
/// launch records it in the manifest when it chose a fallback prefix.
pub(super) const PREFIX_VAR: &str = "PYTHONPYCACHEPREFIX";

/// Whether `env`, read back from a manifest, holds only what kolosal itself
/// records there: [`PREFIX_VAR`] naming this user's own fallback pycache.
/// Anything else (a `PYTHONPATH`, a prefix elsewhere) was not written by
/// kolosal, and the manifest is not used.
pub(super) fn env_is_ours<'a>(env: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>) -> bool {
    let mut fallback: Option<Option<PathBuf>> = None;
    env.into_iter().all(|(k, v)| {
        let dir = fallback.get_or_insert_with(|| crate::cache::existing_subdir("pycache").ok());
        k == PREFIX_VAR && dir.as_deref().is_some_and(|d| d.as_os_str() == v)
    })
}

/// The manifest in `bytes` (as read back for `key`) when a launch may use
/// it: it decodes, belongs to this very key, and sets only what kolosal
/// sets ([`env_is_ours`]). The one reading of a recorded manifest for the
/// repair path, the cold path and the learner.
pub(super) fn usable_manifest(bytes: &[u8], key: &LaunchKey) -> Option<Manifest> {
    Manifest::decode(bytes).filter(|m| {
        let env = m.env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str()));
        m.key == key.as_bytes() && env_is_ours(env)
    })
}

/// Makes the closure's pycs fresh and records the warm manifest. Returns the
/// variables the exec must set (a fallback `PYTHONPYCACHEPREFIX`).
pub(crate) fn prepare(ctx: &Context<'_>) -> Result<Vec<(OsString, OsString)>, PrepareError> {
    let log = ctx.log;
    let config = ProbeConfig::for_launch(ctx.first_spec);
    let mut known = known_facts(&ctx.python.path, &config);
    if let Some(recorded) = ctx.recorded {
        if let Some(env) = prepare_from_record(ctx, &mut known, recorded)? {
            return Ok(env);
        }
    }
    let Some(Cold {
        facts,
        spec,
        rules,
        closure,
        guessed,
    }) = facts_and_closure(ctx, known)?
    else {
        return Ok(Vec::new());
    };
    log.debug(format_args!(
        "closure: {} modules ({} scanned, {} from cache)",
        closure.modules.len(),
        closure.scanned,
        closure.cached
    ));

    // Stages 4-5: freshness and compile, in place or under a fallback prefix.
    let user_prefix = spec.pycache_prefix_resolved(ctx.cwd);
    // Modules earlier runs learned (`learn`) stay compiled and stamped.
    let carried = super::learn::carried(ctx.recorded, &closure, ctx.knobs.learn_max);
    let sources: Vec<PathBuf> = closure
        .pyc_modules()
        .filter_map(|m| m.module.origin.clone())
        .chain(carried.iter().map(|r| r.source.clone()))
        .collect();
    let mut prefix = user_prefix.clone();
    let mut targets = pyc_targets(&sources, &rules, &spec, prefix.as_deref(), ctx.cwd);
    let mut exec_env = Vec::new();
    let known: HashMap<&Path, &Metadata> = closure
        .pyc_modules()
        .filter_map(|m| Some((m.module.origin.as_deref()?, m.source_meta.as_ref()?)))
        .collect();
    let mut stale = owned(stale_with_known(&targets, &known, &rules, &spec));
    // PYTHONPYCACHEPREFIX exists from 3.8 on; it is ignored under -E/-I.
    if !stale.is_empty()
        && prefix.is_none()
        && rules.supports_pycache_prefix()
        && !spec.ignore_environment
        && any_unwritable(stale.iter().map(|(t, _)| t.cfile.as_path()))
    {
        let fallback =
            crate::cache::cache_subdir("pycache").map_err(PrepareError::FallbackPrefix)?;
        log.info(format_args!(
            "tree not writable: pycs go under {}",
            fallback.display()
        ));
        targets = pyc_targets(&sources, &rules, &spec, Some(&fallback), ctx.cwd);
        exec_env.push((
            OsString::from(PREFIX_VAR),
            fallback.clone().into_os_string(),
        ));
        prefix = Some(fallback);
        stale = owned(stale_with_known(&targets, &known, &rules, &spec));
    }
    // Modules only imported from function bodies can wait for the
    // background run.
    let lazy: HashSet<&Path> = closure
        .pyc_modules()
        .filter(|m| m.lazy)
        .filter_map(|m| m.module.origin.as_deref())
        .collect();
    let (deferred, stale) = split_deferred(ctx, stale, &lazy);
    let failed = compile_stale(
        ctx,
        &facts,
        &rules,
        &spec,
        prefix.as_deref(),
        &stale,
        &HashSet::new(),
    )?;

    if guessed && hand_over(ctx, &facts) {
        log.info(format_args!(
            "cold: {} modules in the closure (from guessed facts), {} pycs compiled, nothing recorded here ({:.1} ms)",
            closure.modules.len(),
            stale.len() - failed.len(),
            log.elapsed_ms()
        ));
        crate::sync::drop_elsewhere((closure, targets, sources, stale, deferred, carried));
        return Ok(exec_env);
    }

    // Record the warm manifest: stamp first, then confirm every pyc is
    // fresh. A pyc removed or replaced before the stamps were taken (a
    // racing `kolosal clean`, another tool) is caught by the check; one
    // changed after them changes a stamped directory, so the next launch
    // goes cold. Checking before stamping would leave a window in which
    // a manifest vouches for pycs that are gone.
    // Pycs this launch could not write (a syntax error, an unwritable tree
    // under -I) are left out of that check: their source stamps send the
    // next launch cold once they change, and retrying them on every launch
    // would spawn a worker each time for nothing.
    let m = build_manifest(
        ctx,
        &facts,
        &spec,
        (&closure, &carried),
        &targets,
        &exec_env,
    );
    record_and_defer(ctx, m, &targets, &failed, &deferred, &rules, &spec, true);
    log.info(format_args!(
        "cold: {} modules in the closure, {} pycs compiled, {} left to a background run ({:.1} ms)",
        closure.modules.len(),
        stale.len() - failed.len(),
        deferred.len(),
        log.elapsed_ms()
    ));
    crate::sync::drop_elsewhere((closure, targets, sources, stale, deferred, carried));
    Ok(exec_env)
}

/// The quickest start of a venv made again at its path, when the launch
/// may hand over (see [`facts_and_closure`]) and this key's last manifest
/// is at hand: the modules that manifest recorded as needed at start
/// (neither lazy nor the standard library's) are the guess of what this
/// start needs, with no closure computed. Their pycs are made fresh under
/// the guessed facts' rules (a source that is gone is skipped), and the
/// background run computes the real closure and records it. `None` when
/// this does not apply: `probe_cache` holds no guess, no hand-over, a
/// manifest with a fallback pycache prefix, a tree that cannot be written;
/// or when no background run could start and the probe found the guess
/// right (then `probe_cache` becomes those facts, for the whole cold path).
fn prepare_from_record(
    ctx: &Context<'_>,
    probe_cache: &mut Known,
    recorded: &Manifest,
) -> Result<Option<Vec<(OsString, OsString)>>, PrepareError> {
    let Known::Guess(guess) = &*probe_cache else {
        return Ok(None);
    };
    if !ctx.may_defer() || !recorded.env.is_empty() {
        return Ok(None);
    }
    let log = ctx.log;
    let (facts, spec, rules) = view_of(ctx, guess.clone())?;
    let wanted: Vec<&Path> = recorded
        .modules
        .iter()
        .filter(|r| !r.lazy && r.cfile.is_some())
        .map(|r| r.source.as_path())
        .collect();
    let metas: Vec<Option<Metadata>> = crate::freshness::par_map(&wanted, |s| {
        std::fs::metadata(s).ok().filter(Metadata::is_file)
    });
    let (sources, metas): (Vec<PathBuf>, Vec<Metadata>) = wanted
        .iter()
        .zip(metas)
        .filter_map(|(s, m)| Some((s.to_path_buf(), m?)))
        .unzip();
    let prefix = spec.pycache_prefix_resolved(ctx.cwd);
    let targets = pyc_targets(&sources, &rules, &spec, prefix.as_deref(), ctx.cwd);
    let known: HashMap<&Path, &Metadata> = sources
        .iter()
        .map(PathBuf::as_path)
        .zip(metas.iter())
        .collect();
    let stale = owned(stale_with_known(&targets, &known, &rules, &spec));
    if prefix.is_none() && any_unwritable(stale.iter().map(|(t, _)| t.cfile.as_path())) {
        return Ok(None);
    }
    log.debug(format_args!(
        "probe: none; {} modules from the last manifest for this path",
        sources.len()
    ));
    let stale: Vec<PycTarget> = stale.into_iter().map(|(t, _)| t).collect();
    let failed = compile_stale(
        ctx,
        &facts,
        &rules,
        &spec,
        prefix.as_deref(),
        &stale,
        &HashSet::new(),
    )?;
    if !hand_over(ctx, &facts) {
        // The guess held but nobody records for this launch: the whole
        // cold path, which finds these pycs fresh.
        *probe_cache = Known::Facts(facts);
        return Ok(None);
    }
    log.info(format_args!(
        "cold: {} modules from the last manifest (guessed facts), {} pycs compiled, nothing recorded here ({:.1} ms)",
        sources.len(),
        stale.len() - failed.len(),
        log.elapsed_ms()
    ));
    crate::sync::drop_elsewhere((sources, metas, targets, stale));
    Ok(Some(Vec::new()))
}

/// The end of a launch whose facts were guessed (see [`facts_and_closure`]):
/// starts the background run, which probes and records the manifest, and
/// a learner. Returns `true` when the background run was started; when it
/// could not be (one is already pending, no fork), the facts are probed
/// here and `false` returned if they are the guessed ones, so that the
/// launch records its manifest itself. Facts that differ: nothing is
/// recorded (`true`), and the next launch starts cold with them known.
fn hand_over(ctx: &Context<'_>, guessed: &PythonFacts) -> bool {
    let log = ctx.log;
    match super::background::start(ctx.key, ctx.argv0, ctx.args) {
        Ok(true) => {
            log.debug(format_args!(
                "manifest: left to a background run, which probes first"
            ));
            if ctx.knobs.learn {
                super::start_learner(log, ctx.key, ctx.argv0, ctx.args);
            }
            return true;
        }
        Ok(false) => log.debug(format_args!("a background run is already pending")),
        Err(e) => log.debug(format_args!("no background run ({e})")),
    }
    let config = ProbeConfig::for_launch(ctx.first_spec);
    match facts_for(&ctx.python.path, &config) {
        Ok(real) if &real == guessed => {
            log.debug(format_args!("probe: the guess held"));
            false
        }
        Ok(_) => {
            log.debug(format_args!(
                "probe: the guess did not hold; nothing recorded"
            ));
            true
        }
        Err(e) => {
            log.debug(format_args!("probe failed ({e}); nothing recorded"));
            true
        }
    }
}

/// The end of a cold or repaired launch, once `m` holds its stamps: marks
/// the `deferred` pycs pending, stores `m` only if every pyc of `check` is
/// fresh (apart from those that `failed` to compile and the deferred ones),
/// then leaves the deferred ones to the background run. `learn_again`: the
/// closure was recomputed or a source edited, so run-time learning starts
/// over (`learn`); otherwise a learner starts only while it has not settled.
#[allow(clippy::too_many_arguments)]
pub(super) fn record_and_defer(
    ctx: &Context<'_>,
    mut m: Manifest,
    check: &[PycTarget],
    failed: &HashSet<PathBuf>,
    deferred: &[PycTarget],
    rules: &PycRules,
    spec: &LaunchSpec,
    learn_again: bool,
) {
    mark_pending(&mut m, deferred);
    ctx.log
        .debug(format_args!("manifest: {} stamps taken", m.entries.len()));
    let deferred_cfiles: HashSet<&Path> = deferred.iter().map(|t| t.cfile.as_path()).collect();
    let still_stale = stale_targets(check, rules, spec)
        .iter()
        .filter(|t| !failed.contains(&t.cfile) && !deferred_cfiles.contains(t.cfile.as_path()))
        .count();
    if still_stale > 0 {
        ctx.log.debug(format_args!(
            "manifest not stored: {still_stale} pycs stale after compiling"
        ));
    } else {
        // A new closure or an edited module may load new modules at run
        // time. A background run records that too: it may be the one that
        // records a launch's new closure (`hand_over`).
        if ctx.knobs.learn && learn_again {
            m.learning = true;
            m.quiet_runs = 0;
        }
        let learn = ctx.knobs.learn && !ctx.in_background && m.learning;
        ctx.log
            .debug(format_args!("manifest: every pyc fresh after compiling"));
        // A background run stores under the store lock, so that a learner's
        // compare and rename cannot overtake it (`learn`, merge); a launch
        // never waits for a background process.
        let stored = {
            let _store = ctx
                .in_background
                .then(|| super::background::wait_key_lock(ctx.key, super::background::STORE_LOCK));
            manifest::store(ctx.key, &m)
        };
        match stored {
            Err(e) => ctx.log.debug(format_args!("manifest not stored: {e}")),
            Ok(()) if learn => {
                super::start_learner(ctx.log, ctx.key, ctx.argv0, ctx.args);
            }
            Ok(()) => {}
        }
    }
    defer(ctx, deferred);
}

/// Splits `stale` into the pycs left to the background run (first) and
/// those compiled before exec (second): lazy modules, or all of them when
/// that is [`cheaper_in_process`], may wait. Only a pyc the interpreter
/// itself rejects can wait, since it then compiles the source in memory;
/// one whose header it accepts but whose body is corrupt
/// ([`StaleReason::CorruptBody`]) would make the import fail, so it is
/// always compiled first.
pub(super) fn split_deferred(
    ctx: &Context<'_>,
    stale: Vec<(PycTarget, StaleReason)>,
    lazy: &HashSet<&Path>,
) -> (Vec<PycTarget>, Vec<PycTarget>) {
    if !ctx.may_defer() {
        return (Vec::new(), stale.into_iter().map(|(t, _)| t).collect());
    }
    let rejected = |r: &StaleReason| *r != StaleReason::CorruptBody;
    let (deferred, now): (Vec<_>, Vec<_>) = stale
        .into_iter()
        .partition(|(t, r)| lazy.contains(t.source.as_path()) && rejected(r));
    let all_rejected = now.iter().all(|(_, r)| rejected(r));
    let mut deferred: Vec<PycTarget> = deferred.into_iter().map(|(t, _)| t).collect();
    let mut now: Vec<PycTarget> = now.into_iter().map(|(t, _)| t).collect();
    if all_rejected && cheaper_in_process(&now) {
        deferred.append(&mut now);
    }
    (deferred, now)
}

/// Whether `stale` costs less to compile than starting one worker: then
/// the program's own interpreter, which compiles in memory whatever it
/// imports from a stale pyc, does it for less than the launcher could, and
/// the background run writes the pycs for the next start (an edited module
/// or two, a small app's first run).
fn cheaper_in_process(stale: &[PycTarget]) -> bool {
    use crate::compile::pool::{estimated_work_us, WORKER_START_US};
    // The per-file cost alone decides large sets: no stat needed.
    if stale.is_empty() || estimated_work_us(stale.len(), 0) >= WORKER_START_US {
        return false;
    }
    let bytes: u64 = stale
        .iter()
        .map(|t| std::fs::metadata(&t.source).map_or(0, |m| m.len()))
        .sum();
    estimated_work_us(stale.len(), bytes) < WORKER_START_US
}

/// Marks the `__pycache__` directories of `deferred` pending in `m`, so no
/// launch trusts them until the background run has written their pycs.
fn mark_pending(m: &mut Manifest, deferred: &[PycTarget]) {
    let dirs: HashSet<&Path> = deferred.iter().filter_map(|t| t.cfile.parent()).collect();
    for (path, expect) in &mut m.entries {
        if dirs.contains(path.as_path()) {
            *expect = Expect::Pending;
        }
    }
}

/// Leaves `deferred` (stale pycs of lazy modules, or a set cheaper to
/// compile in process) to a background run.
fn defer(ctx: &Context<'_>, deferred: &[PycTarget]) {
    if deferred.is_empty() {
        return;
    }
    match super::background::start(ctx.key, ctx.argv0, ctx.args) {
        Ok(true) => ctx.log.debug(format_args!(
            "compile: {} pycs left to a background run",
            deferred.len()
        )),
        Ok(false) => ctx.log.debug(format_args!(
            "compile: {} pycs left to the background run already pending",
            deferred.len()
        )),
        Err(e) => ctx.log.debug(format_args!(
            "no background run ({e}); the next launch compiles"
        )),
    }
}

/// What the cold path knows once the closure is computed.
struct Cold {
    facts: PythonFacts,
    spec: LaunchSpec,
    rules: PycRules,
    closure: graph::Closure,
    /// The facts are the probe cache's guess, not yet checked by a probe:
    /// nothing is recorded from them ([`hand_over`]).
    guessed: bool,
}

/// Stages 2b and 3: the interpreter's view of the launch and the closure
/// (`None` when there is no program to run).
///
/// The probe cache is read once ([`known_facts`]). On a miss the probe runs
/// on a thread while the import cache (a file of every scan so far) loads,
/// and, when the cache holds a guess (a venv made again at the same path),
/// while the closure is computed from the guess; that closure is kept only
/// if the probe answers exactly the guessed facts, else it is computed
/// again from the probe's.
///
/// A launch that may leave work to a background run ([`Context::may_defer`])
/// does not probe at all when there is a guess: it computes the closure
/// from the guess, makes those pycs fresh and execs, and the background run
/// probes, computes the closure again from the real facts and records the
/// manifest ([`hand_over`]). A pyc is right for its source whatever the
/// facts (the guess names the same binary, so the same magic number and
/// cache tag); a wrong guess only costs this one start some compiles in
/// memory.
fn facts_and_closure(ctx: &Context<'_>, known: Known) -> Result<Option<Cold>, PrepareError> {
    let config = ProbeConfig::for_launch(ctx.first_spec);
    let python = &ctx.python.path;
    let (cached, guess) = match known {
        Known::Facts(facts) => (Some(facts), None),
        // A launch that can leave work to a background run does not wait
        // for the probe: the background run probes and records (see
        // `hand_over`).
        Known::Guess(guess) if ctx.may_defer() => {
            let view = view_of(ctx, guess)?;
            ctx.log.debug(format_args!(
                "probe: none; the closure comes from the guess"
            ));
            let closure = closure_of(ctx, &view, ImportCache::load());
            let (facts, spec, rules) = view;
            return Ok(closure.map(|closure| Cold {
                facts,
                spec,
                rules,
                closure,
                guessed: true,
            }));
        }
        Known::Guess(guess) => (None, Some(guess)),
        Known::Nothing => (None, None),
    };
    let (real, imports, guessed) = std::thread::scope(|s| {
        let probing = match cached {
            Some(facts) => Ok(facts),
            None => Err(s.spawn(|| facts_for(python, &config))),
        };
        let mut imports = Some(ImportCache::load());
        let guessed = guess.map(|g| {
            let view = view_of(ctx, g);
            let closure = match (&view, imports.take()) {
                (Ok(v), Some(cache)) => closure_of(ctx, v, cache),
                _ => None,
            };
            (view, closure)
        });
        let real = match probing {
            Ok(facts) => Ok(facts),
            Err(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        };
        (real, imports, guessed)
    });
    let facts = logged_probe(ctx, real?);
    if let Some((Ok(view), closure)) = guessed {
        if view.0 == facts {
            ctx.log.debug(format_args!("probe: the guess held"));
            let (facts, spec, rules) = view;
            return Ok(closure.map(|closure| Cold {
                facts,
                spec,
                rules,
                closure,
                guessed: false,
            }));
        }
        ctx.log.debug(format_args!("probe: the guess did not hold"));
    }
    let view = view_of(ctx, facts)?;
    let closure = closure_of(ctx, &view, imports.unwrap_or_else(ImportCache::load));
    let (facts, spec, rules) = view;
    Ok(closure.map(|closure| Cold {
        facts,
        spec,
        rules,
        closure,
        guessed: false,
    }))
}

/// Logs which Python the probe (or its cache) described; hands `facts` on.
fn logged_probe(ctx: &Context<'_>, facts: PythonFacts) -> PythonFacts {
    ctx.log.debug(format_args!(
        "probe: python {}.{}.{}",
        facts.version[0], facts.version[1], facts.version[2]
    ));
    facts
}

/// The closure of the launch's program under `view` (`None` for no program).
fn closure_of(
    ctx: &Context<'_>,
    (facts, spec, _): &(PythonFacts, LaunchSpec, PycRules),
    imports: ImportCache,
) -> Option<graph::Closure> {
    let entry = match &spec.target {
        Target::Script(p) => Entry::Script(p.clone()),
        Target::Module(m) => Entry::Module(m.clone()),
        Target::Command(c) => Entry::Code(c.to_string_lossy().into_owned()),
        // The REPL and stdin programs still import site and .pth modules.
        Target::Stdin | Target::Interactive => Entry::Code(String::new()),
        Target::NoRun => return None,
    };
    // -I drops sys.path[0] on every version; sys.flags.safe_path (3.11+) is
    // only one way to say so.
    let no_path0 = spec.safe_path || spec.isolated;
    let options = ClosureOptions {
        cwd: Some(ctx.cwd.to_path_buf()),
        safe_path: no_path0,
        skip_startup: false,
    };
    let (closure, saved) = graph::compute_with_cache(imports, facts, Some(&entry), &options, &[]);
    if let Err(e) = saved {
        ctx.log.debug(format_args!("import cache not saved: {e}"));
    }
    Some(closure)
}

/// The interpreter's facts under this launch's flags (the probe, cached),
/// argv parsed again with that version's rules, and its pyc rules.
pub(super) fn interpreter_view(
    ctx: &Context<'_>,
) -> Result<(PythonFacts, LaunchSpec, PycRules), PrepareError> {
    // Stage 2b: the interpreter's facts under this launch's flags (cached).
    let config = ProbeConfig::for_launch(ctx.first_spec);
    let facts = logged_probe(ctx, facts_for(&ctx.python.path, &config)?);
    view_of(ctx, facts)
}

/// [`interpreter_view`] for placing a learner's watches: from the probe
/// cache's guess when it holds only that (`true`), so that the launch, which
/// waits for the watches, never waits for a probe.
pub(super) fn watch_view(
    ctx: &Context<'_>,
) -> Result<((PythonFacts, LaunchSpec, PycRules), bool), PrepareError> {
    let config = ProbeConfig::for_launch(ctx.first_spec);
    match known_facts(&ctx.python.path, &config) {
        Known::Guess(guess) => Ok((view_of(ctx, guess)?, true)),
        Known::Facts(facts) => Ok((view_of(ctx, logged_probe(ctx, facts))?, false)),
        Known::Nothing => Ok((interpreter_view(ctx)?, false)),
    }
}

/// argv parsed again with the rules of `facts`' version, and its pyc rules.
fn view_of(
    ctx: &Context<'_>,
    facts: PythonFacts,
) -> Result<(PythonFacts, LaunchSpec, PycRules), PrepareError> {
    let env = |name: &str| std::env::var_os(name);
    // Stage 1 again, with the real version's rules.
    let spec = argv::parse(ctx.args, &env, facts.minor_version()).map_err(|source| {
        PrepareError::Argv {
            version: (facts.version[0], facts.version[1]),
            source,
        }
    })?;
    let rules = PycRules::from_facts(&facts).ok_or(PrepareError::NoCacheTag)?;
    Ok((facts, spec, rules))
}

/// [`stale_with_reasons`] with the targets copied out of their list.
pub(super) fn owned(stale: Vec<(&PycTarget, StaleReason)>) -> Vec<(PycTarget, StaleReason)> {
    stale.into_iter().map(|(t, r)| (t.clone(), r)).collect()
}

fn pyc_targets(
    sources: &[PathBuf],
    rules: &PycRules,
    spec: &LaunchSpec,
    prefix: Option<&Path>,
    cwd: &Path,
) -> Vec<PycTarget> {
    sources
        .iter()
        .filter_map(|s| {
            let cfile = pyc::cache_from_source(s, rules, spec.optimize, prefix, cwd)?;
            Some(PycTarget {
                source: s.clone(),
                cfile,
            })
        })
        .collect()
}

/// Those of `targets` whose pyc importlib would not accept (or could not
/// load) now, with the reason.
pub(super) fn stale_with_reasons<'a>(
    targets: &'a [PycTarget],
    rules: &PycRules,
    spec: &LaunchSpec,
) -> Vec<(&'a PycTarget, StaleReason)> {
    stale_with_known(targets, &HashMap::new(), rules, spec)
}

/// [`stale_with_reasons`] using the sources' metadata where `known` has it
/// (the closure walk stat'ed every source it read moments ago).
fn stale_with_known<'a>(
    targets: &'a [PycTarget],
    known: &HashMap<&Path, &Metadata>,
    rules: &PycRules,
    spec: &LaunchSpec,
) -> Vec<(&'a PycTarget, StaleReason)> {
    let metas: Vec<Option<&Metadata>> = targets
        .iter()
        .map(|t| known.get(t.source.as_path()).copied())
        .collect();
    let verdicts =
        crate::freshness::check_all_known(targets, &metas, rules, spec.check_hash_based_pycs);
    targets
        .iter()
        .zip(verdicts)
        .filter_map(|(t, v)| match v {
            Verdict::Fresh => None,
            Verdict::Stale(r) => Some((t, r)),
        })
        .collect()
}

/// Those of `targets` whose pyc importlib would not accept (or could not
/// load) now.
pub(super) fn stale_targets<'a>(
    targets: &'a [PycTarget],
    rules: &PycRules,
    spec: &LaunchSpec,
) -> Vec<&'a PycTarget> {
    stale_with_reasons(targets, rules, spec)
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

/// Whether any of `cfiles` cannot be written ([`writable`]), asking once
/// per directory (a venv's hundreds of stale pycs share a few dozen).
fn any_unwritable<'a>(cfiles: impl Iterator<Item = &'a Path>) -> bool {
    let mut asked: HashMap<&Path, bool> = HashMap::new();
    cfiles.into_iter().any(|c| {
        let dir = c.parent().unwrap_or(c);
        !*asked.entry(dir).or_insert_with(|| writable(c))
    })
}

/// Whether a pyc could be created at `cfile`: its directory, or the nearest
/// existing ancestor (the `__pycache__` may not exist yet), is a writable
/// directory. A `__pycache__` that is a plain file blocks the write for
/// everyone, root included, so it counts as unwritable.
fn writable(cfile: &Path) -> bool {
    let mut dir = cfile.parent();
    while let Some(d) = dir {
        match std::fs::metadata(d) {
            Ok(m) if m.is_dir() => {
                return nix::unistd::access(d, nix::unistd::AccessFlags::W_OK).is_ok()
            }
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => dir = d.parent(),
            // ENOTDIR (a file higher up), EACCES, ELOOP: nothing can be created there.
            Err(_) => return false,
        }
    }
    false
}

/// Compiles those of `targets` (the stale ones) that are still stale once
/// the cache lock is held, and those of `forced` (pycs importlib would
/// accept although their source changed) in any case. Returns the pyc
/// paths that could not be written. No `targets`: nothing is done (no lock
/// taken), and nothing failed.
pub(super) fn compile_stale(
    ctx: &Context<'_>,
    facts: &PythonFacts,
    rules: &PycRules,
    spec: &LaunchSpec,
    prefix: Option<&Path>,
    targets: &[PycTarget],
    forced: &HashSet<&Path>,
) -> Result<HashSet<PathBuf>, PrepareError> {
    if targets.is_empty() {
        return Ok(HashSet::new());
    }
    let lock = match lock_cache(&ctx.python.resolved, spec.optimize, prefix) {
        Locked::Held(lock) => Some(lock),
        Locked::Unavailable => None,
        Locked::Busy => return Err(PrepareError::LockBusy),
    };
    // Whoever held the lock before us may have compiled these already.
    let mut stale = match &lock {
        Some(held) if !held.waited => targets.iter().collect(),
        _ => stale_targets(targets, rules, spec),
    };
    let already: HashSet<&Path> = stale.iter().map(|t| t.cfile.as_path()).collect();
    let also: Vec<&PycTarget> = targets
        .iter()
        .filter(|t| forced.contains(t.cfile.as_path()) && !already.contains(t.cfile.as_path()))
        .collect();
    stale.extend(also);
    if stale.is_empty() {
        ctx.log.debug(format_args!(
            "compile: nothing left after waiting for the lock"
        ));
        return Ok(HashSet::new());
    }
    let jobs: Vec<CompileJob> = stale
        .iter()
        .map(|t| CompileJob {
            pyc: PycTarget::clone(t),
            optimize: spec.optimize,
            invalidation: pyc::rewrite_mode(&t.cfile, rules),
        })
        .collect();
    let mut config = PoolConfig::new(&ctx.python.path);
    config.workers = ctx.knobs.workers.unwrap_or(0);
    // Settings that change the code object must match the run's.
    if spec.no_debug_ranges && facts.minor_version() >= (3, 11) {
        config.extra_flags = vec!["-X".into(), "no_debug_ranges".into()];
    }
    // So must the warning filters: a module that warns is left to the
    // interpreter, which shows (or raises) what python would.
    config.extra_flags.extend(compile::warning_flags(spec));
    ctx.log
        .debug(format_args!("compile: {} stale pycs", jobs.len()));
    let outcomes = compile::compile_all(&jobs, &config, &|_, _| {})?;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.is_written()).collect();
    // An error compile() raises for the source (SyntaxError, NUL bytes,
    // nesting too deep) is the program's own: the interpreter reports it as
    // python would. Anything else is worth one line.
    if let Some(o) = failed.iter().find(|o| !o.is_source_error()) {
        ctx.log.warn(format_args!(
            "{} module(s) not precompiled, first: {}",
            failed.len(),
            o.describe()
        ));
    }
    ctx.log.debug(format_args!(
        "compile: {} written, {} not",
        outcomes.len() - failed.len(),
        failed.len()
    ));
    Ok(jobs
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| !o.is_written())
        .map(|(j, _)| j.cfile.clone())
        .collect())
}

/// Stamps of everything whose change would change this launch's closure or
/// pycs: the interpreter, the entry script, every module file, every
/// `__pycache__` holding a closure pyc, every directory the resolver listed,
/// and `sys.path` entries that did not exist.
fn build_manifest(
    ctx: &Context<'_>,
    facts: &PythonFacts,
    spec: &LaunchSpec,
    (closure, carried): (&graph::Closure, &[ModuleRecord]),
    targets: &[PycTarget],
    env: &[(OsString, OsString)],
) -> Manifest {
    let paths = stamped_paths(ctx, facts, spec, (closure, carried), targets);
    let (entries, listings) = observe_stamps(paths, targets);
    let modules = module_records(facts, (closure, carried), targets);
    let recorded = ctx.recorded;
    Manifest {
        key: ctx.key.as_bytes().to_vec(),
        env: env.to_vec(),
        entries,
        modules,
        listings,
        learning: recorded.is_some_and(|r| r.learning),
        write_bytecode: recorded.is_some_and(|r| r.write_bytecode),
        quiet_runs: recorded.map_or(0, |r| r.quiet_runs),
    }
}

/// Phase 1 of [`build_manifest`]: the paths to stamp, files first, then
/// directories.
fn stamped_paths(
    ctx: &Context<'_>,
    facts: &PythonFacts,
    spec: &LaunchSpec,
    (closure, carried): (&graph::Closure, &[ModuleRecord]),
    targets: &[PycTarget],
) -> Vec<PathBuf> {
    // Sets by hash, not by `Path`'s component-wise order: the entries are
    // sorted once, by bytes, when the manifest groups them by directory
    // (`manifest::group_by_dir`); ordered sets cost 1-2 ms here.
    let mut files: FxHashSet<PathBuf> = FxHashSet::default();
    let mut dirs: FxHashSet<PathBuf> = FxHashSet::default();
    // Both the path exec'd (a venv symlink, or a path whose target can be
    // swapped for another version) and the binary it resolved to.
    files.insert(ctx.python.path.clone());
    files.insert(ctx.python.resolved.clone());
    if let Some(bin) = ctx.python.path.parent() {
        // A venv's pyvenv.cfg (absent for a base interpreter: still stamped).
        if let Some(root) = bin.parent() {
            files.insert(root.join("pyvenv.cfg"));
        }
    }
    if let Target::Script(s) = &spec.target {
        files.insert(ctx.cwd.join(s));
    }
    // The standard library is stamped by directory: its files are only ever
    // replaced by installers, which rename them into place and so change the
    // directory. A hand edit of a stdlib file in place is not noticed here,
    // but importlib still validates that module's pyc against its source, so
    // it costs that module a compile in memory, never correctness. Everything
    // else, site-packages included, is stamped file by file.
    for m in &closure.modules {
        if let Some(origin) = &m.module.origin {
            if facts.in_stdlib(origin) {
                if let Some(d) = origin.parent().filter(|d| !dirs.contains(*d)) {
                    dirs.insert(d.to_path_buf());
                }
            } else {
                files.insert(origin.clone());
            }
        }
        // An extension's source twin: its imports are the closure's too,
        // so an edit that adds one must be noticed.
        if let Some(twin) = m.module.source_twin.as_ref() {
            if !facts.in_stdlib(twin) {
                files.insert(twin.clone());
            }
        }
    }
    files.extend(carried.iter().map(|r| r.source.clone()));
    for t in targets {
        if let Some(d) = t.cfile.parent() {
            if !dirs.contains(d) {
                dirs.insert(d.to_path_buf());
            }
        }
    }
    for d in closure.probed_dirs.iter().chain(closure.sys_path.iter()) {
        let d = if d.as_os_str().is_empty() {
            ctx.cwd.to_path_buf()
        } else {
            ctx.cwd.join(d)
        };
        dirs.insert(d);
    }
    // Files first, then directories, each by bytes (deterministic).
    let mut files: Vec<PathBuf> = files.into_iter().collect();
    let mut dirs: Vec<PathBuf> = dirs.into_iter().collect();
    files.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    dirs.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    files.into_iter().chain(dirs).collect()
}

/// Directory listing digests, as [`Manifest::listings`] holds them.
type Listings = Vec<(PathBuf, u64)>;

/// Phase 2 of [`build_manifest`]: each path's stamp (grouped by directory
/// for the warm check), and the listings of the stamped directories the
/// closure depends on.
fn observe_stamps(
    paths: Vec<PathBuf>,
    targets: &[PycTarget],
) -> (Vec<(PathBuf, Expect)>, Listings) {
    let observed: Vec<Expect> = crate::freshness::par_map(&paths, |p| manifest::observe(p));
    // Listings of the directories the closure depends on, read after their
    // stamps were taken (a change in between leaves a stamp that fails).
    let pycache_dirs: HashSet<&Path> = targets.iter().filter_map(|t| t.cfile.parent()).collect();
    let listed: Vec<&PathBuf> = paths
        .iter()
        .zip(&observed)
        .filter(|(p, e)| matches!(e, Expect::Dir(_)) && !pycache_dirs.contains(p.as_path()))
        .map(|(p, _)| p)
        .collect();
    let listings = crate::freshness::par_map(&listed, |d| listing::digest(d))
        .into_iter()
        .zip(&listed)
        .filter_map(|(digest, d)| Some(((*d).clone(), digest?)))
        .collect();
    let mut entries: Vec<(PathBuf, Expect)> = paths.into_iter().zip(observed).collect();
    manifest::group_by_dir(&mut entries);
    (entries, listings)
}

/// Phase 3 of [`build_manifest`]: what the repair path needs to tell an
/// edit from a closure change: each file-stamped module's pyc path and
/// import digest.
fn module_records(
    facts: &PythonFacts,
    (closure, carried): (&graph::Closure, &[ModuleRecord]),
    targets: &[PycTarget],
) -> Vec<ModuleRecord> {
    let cfiles: HashMap<&Path, &Path> = targets
        .iter()
        .map(|t| (t.source.as_path(), t.cfile.as_path()))
        .collect();
    let carried = carried.iter().map(|r| ModuleRecord {
        cfile: cfiles.get(r.source.as_path()).map(|c| c.to_path_buf()),
        ..r.clone()
    });
    // In parallel: each record hashes a module's import list.
    use rayon::prelude::*;
    let mut records: Vec<ModuleRecord> = closure
        .modules
        .par_iter()
        .filter_map(|m| {
            let source = m.module.origin.as_ref()?;
            let imports = m.imports.as_ref()?;
            if facts.in_stdlib(source) {
                return None;
            }
            Some(ModuleRecord {
                source: source.clone(),
                cfile: m
                    .pyc_used
                    .then(|| cfiles.get(source.as_path()).map(|c| c.to_path_buf()))
                    .flatten(),
                imports: graph::imports_digest(imports),
                lazy: m.lazy,
                learned: false,
            })
        })
        .collect();
    records.extend(carried);
    records
}
