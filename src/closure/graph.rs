//! The closure walk: every module an entry may import, found by scanning
//! sources and resolving each import with the importlib-exact [`Resolver`].
//!
//! The walk over-approximates: imports inside functions, `try`/`except`
//! blocks and version or platform branches all count; only imports under
//! `if TYPE_CHECKING:` are left out. What it cannot see: names computed at
//! run time (`importlib.import_module(x)`, `__import__(x)`), imports made
//! by extension modules or sourceless pycs, `from pkg import *` pulling
//! submodules through `__all__`, `__path__` edited at run time, and custom
//! finders on `sys.meta_path`.
//!
//! Roots are the entry plus, when `site` runs, the `import` lines of `.pth`
//! files, `sitecustomize`/`usercustomize` and the probe's start-up modules
//! (walked after the entry's own closure, so chains from the entry win).
//! Sources are scanned in parallel (rayon), each as soon as an import of it
//! is seen; the results are then merged breadth-first, in a fixed order, so
//! the closure never depends on thread timing. An [`ImportCache`] keeps
//! unchanged files from being rescanned.

use super::import_cache::{Import, ImportCache, Scanned};
use super::resolve::{
    launch_sys_path, package_of, resolve_relative, sys_path0, LaunchForm, ModuleKind,
    ResolvedModule, Resolver,
};
use super::scan::ImportFlags;
use crate::interpreter::PythonFacts;
use crate::sync::drop_elsewhere;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the interpreter is asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `python SCRIPT`: a file, or a directory holding `__main__.py`.
    Script(PathBuf),
    /// `python -m MODULE`.
    Module(String),
    /// `python -c CODE`.
    Code(String),
}

impl Entry {
    /// The launch form that decides `sys.path[0]`.
    pub fn launch_form(&self) -> LaunchForm {
        match self {
            Entry::Script(p) => LaunchForm::Script(p.clone()),
            Entry::Module(_) => LaunchForm::Module,
            Entry::Code(_) => LaunchForm::Command,
        }
    }
}

/// Settings of one closure computation.
#[derive(Debug, Clone, Default)]
pub struct ClosureOptions {
    /// The launch's working directory; `None` = this process's.
    pub cwd: Option<PathBuf>,
    /// `-P` / `PYTHONSAFEPATH` / `-I`: no `sys.path[0]`.
    pub safe_path: bool,
    /// Leave out the start-up roots (`.pth` imports, sitecustomize, the
    /// probe's start-up modules).
    pub skip_startup: bool,
}

/// How a module came to be in the closure: the one place that names it
/// (`kolosal closure --json`, `kolosal status --entry` and the manifest's
/// learned records all use this enum). Decided by `Walk::mark_origins`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Reached from the entry or a start-up root through imports that run
    /// when the importing module's top level runs.
    Static,
    /// Reached only through imports inside function bodies (the program may
    /// never import it, and not while it starts).
    Lazy,
    /// Not reachable statically from the entry: seen loaded, as a learned
    /// root or through its module-level imports.
    Learned(Learned),
}

/// How a learned module was seen loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Learned {
    /// While the program ran under `kolosal-python` (run-time learning).
    Run,
    /// By `kolosal compile --trace -- COMMAND` (build time).
    Trace,
}

impl Learned {
    /// `run` or `trace`.
    pub fn as_str(self) -> &'static str {
        match self {
            Learned::Run => "run",
            Learned::Trace => "trace",
        }
    }

    /// The inverse of [`Learned::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "run" => Some(Learned::Run),
            "trace" => Some(Learned::Trace),
            _ => None,
        }
    }
}

impl Origin {
    /// `static`, `lazy` or `learned`.
    pub fn kind(self) -> &'static str {
        match self {
            Origin::Static => "static",
            Origin::Lazy => "lazy",
            Origin::Learned(_) => "learned",
        }
    }

    /// For a learned module, how it was learned.
    pub fn how(self) -> Option<Learned> {
        match self {
            Origin::Learned(h) => Some(h),
            _ => None,
        }
    }

    /// One word for text output: `static`, `lazy`, `learned:run`,
    /// `learned:trace`.
    pub fn label(self) -> &'static str {
        match self {
            Origin::Static => "static",
            Origin::Lazy => "lazy",
            Origin::Learned(Learned::Run) => "learned:run",
            Origin::Learned(Learned::Trace) => "learned:trace",
        }
    }

    /// The inverse of [`Origin::label`].
    pub fn parse_label(s: &str) -> Option<Self> {
        match s {
            "static" => Some(Origin::Static),
            "lazy" => Some(Origin::Lazy),
            _ => Some(Origin::Learned(Learned::parse(
                s.strip_prefix("learned:")?,
            )?)),
        }
    }
}

/// A source module seen loaded, to be added to a closure as a root
/// ([`compute_learned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedRoot {
    /// The `.py` file the interpreter compiled (as it spelled the path).
    pub source: PathBuf,
    /// How it was seen.
    pub how: Learned,
}

/// Why a module is in the closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// It is the entry, or a package the entry's module lives in.
    Entry,
    /// Imported while the interpreter starts (what is said is where).
    Startup(String),
    /// Seen loaded ([`LearnedRoot`]).
    Learned(Learned),
    /// Imported by `importer` at `line` (of its source twin when the
    /// importer is an extension module with one).
    Import {
        /// The importing module's name.
        importer: String,
        /// 1-based line of the import statement.
        line: u32,
    },
}

/// One module of the closure.
#[derive(Debug, Clone)]
pub struct ClosureModule {
    /// The resolver's answer (name, kind, origin, search locations).
    pub module: Arc<ResolvedModule>,
    /// How the walk first reached it (breadth-first: a shortest chain).
    pub via: Via,
    /// The module runs as `__main__`.
    pub is_main: bool,
    /// Importlib reads this module's pyc: a `.py` module that is not a
    /// script run directly (a script's own pyc is never used).
    pub pyc_used: bool,
    /// The import statements found in its source (`None` when it has no
    /// source or it could not be read).
    pub imports: Option<Arc<Vec<Import>>>,
    /// Only reached through imports inside function bodies: nothing imports
    /// it while the entry and the modules it imports at module level run
    /// their top-level code (unless a function is called at import time).
    /// Always `origin == Origin::Lazy`.
    pub lazy: bool,
    /// How it came to be in the closure.
    pub origin: Origin,
    /// The source's metadata (`stat`, following symlinks) as the walk
    /// found it when it read or looked up the imports; `None` when it has
    /// no source file or could not be read. Freshness checks of the same
    /// run use it instead of a second `stat`. (Never the metadata of a
    /// source twin: it describes `module.origin`.)
    pub source_meta: Option<Metadata>,
}

impl ClosureModule {
    /// The module's name.
    pub fn name(&self) -> &str {
        &self.module.name
    }

    /// The file whose imports the walk followed: the module's source, or
    /// the source twin of an extension module; `None` when it has neither.
    pub fn scanned_source(&self) -> Option<&Path> {
        if self.module.kind.has_source() {
            self.module.origin.as_deref()
        } else {
            self.module.source_twin.as_deref()
        }
    }
}

/// The import closure of one entry.
#[derive(Debug, Clone, Default)]
pub struct Closure {
    /// Modules in the order the walk reached them (entry first).
    pub modules: Vec<ClosureModule>,
    /// The `sys.path` searched (`sys.path[0]` first, `''` = cwd).
    pub sys_path: Vec<PathBuf>,
    /// Every directory whose listing the resolver read.
    pub probed_dirs: Vec<PathBuf>,
    /// Sources scanned this run.
    pub scanned: usize,
    /// Sources whose imports came from the import cache.
    pub cached: usize,
    /// Sources that could not be read, with the error.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Learned roots no `sys.path` entry of this launch maps to a module
    /// that resolves back to the same file (loaded under another
    /// `sys.path`, by path, or by a custom loader): not in `modules`.
    pub unplaced: Vec<LearnedRoot>,
    index: HashMap<String, usize>,
}

impl Closure {
    /// The module called `name`, if the closure holds it.
    pub fn get(&self, name: &str) -> Option<&ClosureModule> {
        self.index.get(name).map(|&i| &self.modules[i])
    }

    /// The chain of modules from a root to `name` (root first), following
    /// each module's first importer; `None` when `name` is not in the closure.
    pub fn why(&self, name: &str) -> Option<Vec<&ClosureModule>> {
        let mut chain = vec![self.get(name)?];
        while let Via::Import { importer, .. } = &chain[chain.len() - 1].via {
            match self.get(importer) {
                Some(m) if !chain.iter().any(|c| c.name() == m.name()) => chain.push(m),
                _ => break,
            }
        }
        chain.reverse();
        Some(chain)
    }

    /// Modules whose pyc importlib will read (`.py` sources, not the script).
    pub fn pyc_modules(&self) -> impl Iterator<Item = &ClosureModule> {
        self.modules.iter().filter(|m| m.pyc_used)
    }
}

/// Computes the closure of `entry` for the interpreter described by `facts`.
/// `cache` supplies and records scan results (use
/// [`ImportCache::in_memory`] for none).
pub fn compute(
    facts: &PythonFacts,
    entry: &Entry,
    options: &ClosureOptions,
    cache: &ImportCache,
) -> Closure {
    compute_with(
        facts,
        Some(entry),
        options,
        &[],
        cache,
        &scan_imports,
        &mut || {},
    )
}

/// [`compute`] with the on-disk import cache: loads it, computes, and saves
/// what was scanned. The save's result is returned beside the closure; a
/// cache that cannot be written only costs a rescan next time.
pub fn compute_persisted(
    facts: &PythonFacts,
    entry: &Entry,
    options: &ClosureOptions,
) -> (Closure, std::io::Result<()>) {
    compute_learned(facts, Some(entry), options, &[])
}

/// [`compute_persisted`] plus `learned` roots: each source is mapped to the
/// module name the launch's `sys.path` gives it (the first entry under
/// which it resolves back to the same file) and walked like a start-up
/// root, after the entry's and the start-up closures. With no `entry`,
/// `sys.path[0]` is the working directory (as for `-c`). Learned roots
/// that map to no module are listed in [`Closure::unplaced`].
pub fn compute_learned(
    facts: &PythonFacts,
    entry: Option<&Entry>,
    options: &ClosureOptions,
    learned: &[LearnedRoot],
) -> (Closure, std::io::Result<()>) {
    compute_with_cache(ImportCache::load(), facts, entry, options, learned)
}

/// [`compute_learned`] with an import cache the caller loaded ahead (the
/// launcher loads it while the interpreter is probed); saved like there.
pub(crate) fn compute_with_cache(
    cache: ImportCache,
    facts: &PythonFacts,
    entry: Option<&Entry>,
    options: &ClosureOptions,
    learned: &[LearnedRoot],
) -> (Closure, std::io::Result<()>) {
    // The save (encoding ~1,000 entries) runs on its own thread beside the
    // walk's serial merge, as soon as nothing is left to scan.
    let (closure, saved) = std::thread::scope(|threads| {
        let mut saving = None;
        let closure = compute_with(
            facts,
            entry,
            options,
            learned,
            &cache,
            &scan_imports,
            &mut || {
                saving = Some(threads.spawn(|| cache.save()));
            },
        );
        let saved = match saving.map(|h| h.join()) {
            Some(Ok(saved)) => saved,
            // Never started (or the thread died): save here.
            _ => cache.save(),
        };
        (closure, saved)
    });
    drop_elsewhere(cache);
    (closure, saved)
}

/// Scans a file's bytes into imports.
type ScanFn = dyn Fn(&[u8]) -> Vec<Import> + Sync;

/// A node's imports, whether they came from the cache and its source's
/// metadata (none for `-c` code), or why they could not be read.
type ScanResult = Result<(Arc<Vec<Import>>, bool, Option<Metadata>), String>;

/// A node to scan: its index, and where its imports come from.
#[derive(Clone)]
enum Code {
    File(PathBuf),
    Text(Vec<u8>),
}

struct Walk<'a> {
    resolver: Resolver,
    closure: Closure,
    cache: &'a ImportCache,
    scan: &'a ScanFn,
    frontier: Vec<(usize, Code)>,
    /// `__package__` for a node, by index (the script main has none).
    package: HashMap<usize, String>,
    /// The module whose imports are being added, and whether the current
    /// statement sits in a function body; `None` while adding roots.
    from: Option<(usize, bool)>,
    /// Modules the interpreter imports without being asked by a module.
    roots: Vec<usize>,
    /// Learned roots (see [`compute_learned`]), and whether roots are being
    /// added from them right now.
    learned_roots: Vec<(usize, Learned)>,
    adding_learned: Option<Learned>,
    /// (importer, imported) for imports made when the importer's own
    /// top-level code runs.
    eager_edges: Vec<(usize, usize)>,
    /// What [`Walk::discover`] found, by module name, until merged.
    found: HashMap<String, Found>,
    /// Target lists already merged, freed with the walk's other tables
    /// (see [`crate::sync::drop_elsewhere`]).
    spent: Vec<Vec<Vec<String>>>,
}

/// The walk itself. `scanned` runs once every source has been read and
/// scanned, while the ordered merge still runs: the cache can be saved
/// from then on.
fn compute_with(
    facts: &PythonFacts,
    entry: Option<&Entry>,
    options: &ClosureOptions,
    learned: &[LearnedRoot],
    cache: &ImportCache,
    scan: &ScanFn,
    scanned: &mut dyn FnMut(),
) -> Closure {
    let cwd = options
        .cwd
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("/"));
    let form = entry.map_or(LaunchForm::Command, Entry::launch_form);
    let path0 = sys_path0(&form, options.safe_path, facts.minor_version(), &cwd);
    let sys_path = launch_sys_path(facts, path0);
    let mut walk = Walk {
        resolver: Resolver::with_cwd(facts, sys_path.clone(), cwd.clone()),
        closure: Closure {
            sys_path,
            ..Default::default()
        },
        cache,
        scan,
        frontier: Vec::new(),
        package: HashMap::default(),
        from: None,
        roots: Vec::new(),
        learned_roots: Vec::new(),
        adding_learned: None,
        eager_edges: Vec::new(),
        found: HashMap::default(),
        spent: Vec::new(),
    };
    if let Some(entry) = entry {
        walk.add_entry(entry, &cwd);
    }
    let startup = if !options.skip_startup && !facts.flags.no_site {
        walk.startup_roots(facts)
    } else {
        Vec::new()
    };
    // One discovery for all the entry and the start-up roots reach.
    let startup_names: Vec<String> = startup.iter().flat_map(|r| r.targets.clone()).collect();
    walk.discover_frontier(&startup_names);
    scanned();
    while !walk.frontier.is_empty() {
        walk.step();
    }
    // Start-up roots are merged after the entry's own closure so `--why`
    // prefers the entry's chains (the probe's start-up list also holds the
    // probe's own imports, such as json).
    walk.add_startup(&startup);
    while !walk.frontier.is_empty() {
        walk.step();
    }
    // Learned roots last: every chain the entry explains wins.
    if !learned.is_empty() {
        walk.add_learned(learned, &cwd);
        while !walk.frontier.is_empty() {
            walk.step();
        }
    }
    walk.closure.probed_dirs = walk.resolver.probed_dirs();
    walk.mark_origins();
    drop_elsewhere((walk.resolver, walk.package, walk.found, walk.spent));
    walk.closure
}

/// The `.pth` files of a site directory, in the order site reads them:
/// sorted by name (`site.addsitedir`); from 3.13 a name starting with `.`
/// is skipped.
fn site_pth_files(names: &[std::ffi::OsString], v: (u32, u32)) -> Vec<std::ffi::OsString> {
    site_files(names, ".pth", v >= (3, 13))
}

/// The `.start` files of a site directory (PEP 829, 3.15+:
/// `StartupState._addsitedir`): sorted, none starting with `.`. Empty
/// before 3.15, which does not read them.
fn site_start_files(names: &[std::ffi::OsString], v: (u32, u32)) -> Vec<std::ffi::OsString> {
    if v < (3, 15) {
        return Vec::new();
    }
    site_files(names, ".start", true)
}

fn site_files(
    names: &[std::ffi::OsString],
    suffix: &str,
    skip_dot: bool,
) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    let mut out: Vec<std::ffi::OsString> = names
        .iter()
        .filter(|n| n.as_bytes().ends_with(suffix.as_bytes()))
        .filter(|n| !(skip_dot && n.as_bytes().starts_with(b".")))
        .cloned()
        .collect();
    out.sort();
    out
}

/// The modules a `.start` file's entry points import
/// (`StartupState._read_start_file`, then `pkgutil.resolve_name(strict=True)`
/// at run time): each stripped line that is neither empty nor a `#`
/// comment is `pkg.mod:callable`, and `pkg.mod` is imported. A line whose
/// module part is not a dotted name of identifiers fails there before any
/// import, so it adds nothing here; a file that is not UTF-8 is skipped as
/// site skips it.
fn start_entry_modules(text: &[u8]) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text)) else {
        return Vec::new();
    };
    let dotted = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|part| {
                let mut chars = part.chars();
                chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                    && chars.all(|c| c == '_' || c.is_alphanumeric())
            })
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (module, callable) = l.split_once(':')?;
            (dotted(module) && dotted(callable)).then(|| module.to_string())
        })
        .collect()
}

impl Walk<'_> {
    /// Adds `module` (already resolved) unless present; queues its source.
    fn push(&mut self, module: Arc<ResolvedModule>, via: Via, is_main: bool) -> usize {
        if let Some(&i) = self.closure.index.get(&module.name) {
            return i;
        }
        let i = self.closure.modules.len();
        if let Some((code, package)) = source_to_scan(&module) {
            self.frontier.push((i, code));
            self.package.insert(i, package);
        }
        self.closure.index.insert(module.name.clone(), i);
        self.closure.modules.push(ClosureModule {
            pyc_used: module.kind.has_source(),
            module,
            via,
            is_main,
            imports: None,
            lazy: false,
            origin: Origin::Static,
            source_meta: None,
        });
        i
    }

    /// Adds `name` and its parent packages (each imports first); `via`
    /// makes the reason for each one added (most names are already in).
    fn push_name(&mut self, name: &str, via: &dyn Fn() -> Via) {
        for prefix in with_parents(name) {
            let j = match self.closure.index.get(prefix) {
                Some(&j) => j,
                None => {
                    let m = self.resolver.resolve(prefix);
                    self.push(m, via(), false)
                }
            };
            match self.from {
                None => match self.adding_learned {
                    None => self.roots.push(j),
                    Some(how) => self.learned_roots.push((j, how)),
                },
                Some((i, false)) => self.eager_edges.push((i, j)),
                Some((_, true)) => {}
            }
        }
    }

    /// Sets [`ClosureModule::origin`] (and `lazy`): `Static` for what the
    /// entry's and the start-up roots reach through module-level imports,
    /// else `Learned` for what learned roots reach that way (each takes the
    /// `how` of the first learned root that reaches it), else `Lazy`.
    fn mark_origins(&mut self) {
        let n = self.closure.modules.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(i, j) in &self.eager_edges {
            next[i].push(j);
        }
        let mut origin: Vec<Option<Origin>> = vec![None; n];
        let mut reach = |roots: &mut dyn Iterator<Item = (usize, Origin)>| {
            for (root, o) in roots {
                let mut stack = vec![root];
                while let Some(i) = stack.pop() {
                    if origin[i].is_none() {
                        origin[i] = Some(o);
                        stack.extend(next[i].iter().copied().filter(|&j| origin[j].is_none()));
                    }
                }
            }
        };
        reach(&mut self.roots.iter().map(|&i| (i, Origin::Static)));
        reach(
            &mut self
                .learned_roots
                .iter()
                .map(|&(i, how)| (i, Origin::Learned(how))),
        );
        for (m, o) in self.closure.modules.iter_mut().zip(origin) {
            m.origin = o.unwrap_or(Origin::Lazy);
            m.lazy = m.origin == Origin::Lazy;
        }
    }

    /// Adds each learned root under the name the launch's `sys.path` gives
    /// its file; those it gives none go to [`Closure::unplaced`].
    fn add_learned(&mut self, learned: &[LearnedRoot], cwd: &Path) {
        let placed: Vec<Option<String>> = learned
            .iter()
            .map(|l| self.learned_name(&l.source, cwd))
            .collect();
        let names: Vec<String> = placed.iter().flatten().cloned().collect();
        self.discover_frontier(&names);
        for (root, name) in learned.iter().zip(placed) {
            match name {
                Some(name) => {
                    self.adding_learned = Some(root.how);
                    self.push_name(&name, &|| Via::Learned(root.how));
                    self.adding_learned = None;
                }
                None => self.closure.unplaced.push(root.clone()),
            }
        }
    }

    /// The module name under which `source` is imported: for the first
    /// `sys.path` entry holding it, the path below the entry with `/` read
    /// as `.`, the source suffix and a final `__init__` dropped, provided
    /// the resolver finds that name at this very file (same device and
    /// inode), as a source module or as the source twin of an extension.
    // mirrors the inverse of FileFinder.find_spec over PathFinder's entries
    fn learned_name(&self, source: &Path, cwd: &Path) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let want = id(source)?;
        let source = cwd.join(source);
        for entry in &self.closure.sys_path {
            let dir = cwd.join(entry);
            let Ok(rel) = source.strip_prefix(&dir) else {
                continue;
            };
            let Some(name) = module_name_of(rel) else {
                continue;
            };
            let m = self.resolver.resolve(&name);
            let file = match m.kind {
                ModuleKind::Source | ModuleKind::Package => m.origin.as_deref(),
                ModuleKind::Extension => m.source_twin.as_deref(),
                _ => None,
            };
            if file.is_some_and(|f| id(&cwd.join(f)) == Some(want)) {
                return Some(name);
            }
        }
        None
    }

    fn add_entry(&mut self, entry: &Entry, cwd: &Path) {
        match entry {
            Entry::Script(script) => {
                let full = cwd.join(script);
                if full.is_dir() {
                    // runpy runs `__main__` found on sys.path[0] = the dir;
                    // its pyc is used.
                    let m = self.resolver.resolve("__main__");
                    let i = self.push(m, Via::Entry, true);
                    self.roots.push(i);
                    self.package.insert(i, String::new());
                    return;
                }
                let is_source = script
                    .extension()
                    .map(|e| e != "pyc" && e != "pyo")
                    .unwrap_or(true);
                let module = Arc::new(ResolvedModule {
                    name: "__main__".into(),
                    kind: if is_source {
                        ModuleKind::Source
                    } else {
                        ModuleKind::Sourceless
                    },
                    origin: Some(full.clone()),
                    search_locations: None,
                    source_twin: None,
                });
                let i = self.push(module, Via::Entry, true);
                self.roots.push(i);
                self.closure.modules[i].pyc_used = false;
                self.package.insert(i, String::new());
            }
            Entry::Module(name) => {
                self.push_name(name, &|| Via::Entry);
                let Some(&i) = self.closure.index.get(name.as_str()) else {
                    return;
                };
                // mirrors runpy._get_module_details: a package runs its
                // `__main__` submodule.
                if self.closure.modules[i].module.is_package() {
                    let main = format!("{name}.__main__");
                    self.push_name(&main, &|| Via::Entry);
                    if let Some(&j) = self.closure.index.get(main.as_str()) {
                        self.closure.modules[j].is_main = true;
                    }
                } else {
                    self.closure.modules[i].is_main = true;
                }
            }
            Entry::Code(code) => {
                let module = Arc::new(ResolvedModule {
                    name: "__main__".into(),
                    kind: ModuleKind::Source,
                    origin: None,
                    search_locations: None,
                    source_twin: None,
                });
                let i = self.push(module, Via::Entry, true);
                self.roots.push(i);
                self.closure.modules[i].pyc_used = false;
                self.package.insert(i, String::new());
                self.frontier
                    .push((i, Code::Text(code.clone().into_bytes())));
            }
        }
    }

    /// The start-up roots, in the order `site` imports them.
    ///
    /// mirrors `site.addpackage` (`import` lines of `.pth` files, sorted,
    /// in each site dir) and `site.execsitecustomize`/`execusercustomize`.
    fn startup_roots(&self, facts: &PythonFacts) -> Vec<StartupRoot> {
        let mut roots = Vec::new();
        let mut site_dirs: Vec<PathBuf> = facts.site_packages.clone();
        if facts.user_site_enabled {
            site_dirs.extend(facts.user_site.iter().cloned());
        }
        let v = (facts.version[0], facts.version[1]);
        for dir in site_dirs {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            let names: Vec<std::ffi::OsString> =
                rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
            let start_files = site_start_files(&names, v);
            for pth in site_pth_files(&names, v) {
                // PEP 829 (3.15+): a `.start` file of the same name turns
                // off the `.pth` file's import lines.
                use std::os::unix::ffi::OsStrExt;
                let stem = &pth.as_bytes()[..pth.len() - ".pth".len()];
                if start_files
                    .iter()
                    .any(|s| &s.as_bytes()[..s.len() - ".start".len()] == stem)
                {
                    continue;
                }
                let path = dir.join(&pth);
                let Ok(text) = std::fs::read(&path) else {
                    continue;
                };
                for line in text.split(|b| *b == b'\n') {
                    // `site.addpackage` runs `line.rstrip()` through exec()
                    // when it starts with "import" and a space or tab; from
                    // 3.15 (`StartupState._read_pth_file`) the line is
                    // stripped on both sides first.
                    let line = if v >= (3, 15) {
                        line.trim_ascii()
                    } else {
                        line
                    };
                    if line.starts_with(b"import ") || line.starts_with(b"import\t") {
                        for imp in (self.scan)(line) {
                            roots.push(StartupRoot {
                                targets: self.import_targets(&imp, ""),
                                via: Via::Startup(format!("{}", path.display())),
                            });
                        }
                    }
                }
            }
            for start in start_files {
                let path = dir.join(&start);
                let Ok(text) = std::fs::read(&path) else {
                    continue;
                };
                for module in start_entry_modules(&text) {
                    roots.push(StartupRoot {
                        targets: vec![module],
                        via: Via::Startup(format!("{}", path.display())),
                    });
                }
                // `pkgutil.resolve_name` runs each entry point.
                roots.push(StartupRoot {
                    targets: vec!["pkgutil".to_string()],
                    via: Via::Startup(format!("{}", path.display())),
                });
            }
        }
        let mut hooks = vec![("sitecustomize", "site")];
        if facts.user_site_enabled {
            hooks.push(("usercustomize", "site"));
        }
        hooks.extend(
            facts
                .startup_modules
                .iter()
                .map(|m| (m.as_str(), "interpreter start-up")),
        );
        for (name, what) in hooks {
            if self.resolver.resolve(name).kind != ModuleKind::NotFound {
                roots.push(StartupRoot {
                    targets: vec![name.to_string()],
                    via: Via::Startup(what.into()),
                });
            }
        }
        roots
    }

    /// Adds the start-up roots (see [`Walk::startup_roots`]).
    fn add_startup(&mut self, roots: &[StartupRoot]) {
        for root in roots {
            for t in &root.targets {
                self.push_name(t, &|| root.via.clone());
            }
        }
    }

    /// The absolute names one import statement loads, as
    /// `importlib._bootstrap._handle_fromlist` would: the module (and its
    /// parents), plus `module.name` for each imported name that is a
    /// submodule of a package.
    fn targets(&self, imp: &Import, package: &str) -> Vec<String> {
        let Ok(base) = resolve_relative(&imp.module, package, imp.level) else {
            return Vec::new();
        };
        if base.is_empty() {
            return Vec::new();
        }
        let mut out = vec![base.clone()];
        if !imp.names.is_empty() && self.resolver.resolve(&base).is_package() {
            for n in &imp.names {
                if n == "*" {
                    continue;
                }
                let sub = format!("{base}.{n}");
                if self.resolver.resolve(&sub).kind != ModuleKind::NotFound {
                    out.push(sub);
                }
            }
        }
        out
    }

    /// The names an import adds to the closure: none for one under
    /// `if TYPE_CHECKING:` (never runs).
    fn import_targets(&self, imp: &Import, package: &str) -> Vec<String> {
        if imp.flags.contains(ImportFlags::TYPE_CHECKING) {
            return Vec::new();
        }
        self.targets(imp, package)
    }

    /// Reads and scans `code` (the cache first) and works out each
    /// import's target names, resolving them on the way; `each` sees every
    /// import's targets as soon as they are known.
    fn examine(&self, code: &Code, package: &str, mut each: impl FnMut(&[String])) -> Found {
        let got = match code {
            Code::File(p) => match self.cache.get_or_scan(p, |b| (self.scan)(b)) {
                Ok(Scanned {
                    imports,
                    cached,
                    meta,
                }) => Ok((imports, cached, Some(meta))),
                Err(e) => Err(e.to_string()),
            },
            Code::Text(t) => Ok((Arc::new((self.scan)(t)), false, None)),
        };
        let targets = match &got {
            Ok((imports, _, _)) => imports
                .iter()
                .map(|imp| {
                    let targets = self.import_targets(imp, package);
                    each(&targets);
                    targets
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        Found { got, targets }
    }

    /// Finds everything reachable from `seeds` at once, on rayon's pool:
    /// each source is scanned as soon as an import of it is seen, with no
    /// wait for the rest of its level (a breadth-first walk would stall
    /// on the slowest file of every level). Names are claimed the way
    /// [`Walk::push_name`] claims them, so the sources examined are the
    /// ones the ordered merge in [`Walk::step`] will ask for.
    fn discover(
        &self,
        seeds: Vec<(String, Code, String)>,
        extra: &[String],
    ) -> HashMap<String, Found> {
        let claimed: Mutex<HashSet<String>> =
            Mutex::new(self.closure.index.keys().cloned().collect());
        let found = Mutex::new(HashMap::default());
        let ctx = Discovery {
            walk: self,
            claimed: &claimed,
            found: &found,
        };
        rayon::scope(|s| {
            for (name, code, package) in seeds {
                let ctx = &ctx;
                s.spawn(move |s| ctx.visit(s, name, code, package));
            }
            ctx.claim(s, extra);
        });
        found.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// Discovers from the frontier's sources not yet examined, and from the
    /// `extra` names (see [`Walk::discover`]).
    fn discover_frontier(&mut self, extra: &[String]) {
        let seeds: Vec<(String, Code, String)> = self
            .frontier
            .iter()
            .filter(|(i, _)| !self.found.contains_key(self.closure.modules[*i].name()))
            .map(|(i, code)| {
                let package = self.package.get(i).cloned().unwrap_or_default();
                (
                    self.closure.modules[*i].name().to_string(),
                    code.clone(),
                    package,
                )
            })
            .collect();
        if !seeds.is_empty() || !extra.is_empty() {
            let more = self.discover(seeds, extra);
            self.found.extend(more);
        }
    }

    /// Takes the frontier's results (discovering them first when the
    /// frontier holds sources not yet examined) and merges them in frontier
    /// order, so the closure does not depend on thread timing.
    fn step(&mut self) {
        self.discover_frontier(&[]);
        let frontier = std::mem::take(&mut self.frontier);
        for (i, code) in frontier {
            let name = self.closure.modules[i].name().to_string();
            let Found { got, targets } = match self.found.remove(&name) {
                Some(f) => f,
                // Not expected (discovery claims what the merge pushes);
                // examined here so the closure stays complete regardless.
                None => {
                    let package = self.package.get(&i).cloned().unwrap_or_default();
                    self.examine(&code, &package, |_| {})
                }
            };
            match got {
                Ok((imports, was_cached, meta)) => {
                    if was_cached {
                        self.closure.cached += 1;
                    } else {
                        self.closure.scanned += 1;
                    }
                    for (imp, targets) in imports.iter().zip(&targets) {
                        let via = || Via::Import {
                            importer: name.clone(),
                            line: imp.line,
                        };
                        // A `lazy import` (PEP 810) runs on first use,
                        // like an import in a function body.
                        let deferred = imp.flags.contains(ImportFlags::IN_FUNCTION)
                            || imp.flags.contains(ImportFlags::LAZY);
                        self.from = Some((i, deferred));
                        for t in targets {
                            self.push_name(t, &via);
                        }
                    }
                    self.spent.push(targets);
                    self.from = None;
                    let m = &mut self.closure.modules[i];
                    m.imports = Some(imports);
                    // A twin's metadata is not the module's (its origin
                    // is the extension).
                    if m.module.kind.has_source() || m.module.origin.is_none() {
                        m.source_meta = meta;
                    }
                }
                Err(e) => {
                    let path = self.closure.modules[i]
                        .scanned_source()
                        .map(Path::to_path_buf)
                        .unwrap_or_default();
                    self.closure.unreadable.push((path, e));
                }
            }
        }
    }
}

/// `name` preceded by its parent packages: `a`, `a.b`, `a.b.c` for
/// `a.b.c` (each imports before its children).
fn with_parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('.')
        .map(move |(i, _)| &name[..i])
        .chain(std::iter::once(name))
}

/// The source the walk scans for `module`, as code to examine and the
/// `__package__` its relative imports resolve against: its own source, or
/// the source twin of an extension module (the extension was compiled
/// from it and imports what it imports); `None` when it has neither
/// (builtin, namespace, not found, an extension alone ...).
fn source_to_scan(module: &ResolvedModule) -> Option<(Code, String)> {
    let file = if module.kind.has_source() {
        module.origin.as_ref()?
    } else {
        module.source_twin.as_ref()?
    };
    let package = package_of(&module.name, module.is_package()).to_string();
    Some((Code::File(file.clone()), package))
}

/// The dotted module name of a file at `rel` below a `sys.path` entry:
/// `a/b/c.py` is `a.b.c`, `a/b/__init__.py` is `a.b`; `None` when a part
/// is empty or holds a dot, or the file has no `.py` suffix.
fn module_name_of(rel: &Path) -> Option<String> {
    let text = rel.to_str()?;
    let stem = text.strip_suffix(".py")?;
    let stem = stem.strip_suffix("/__init__").unwrap_or(stem);
    let parts: Vec<&str> = stem.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || p.contains('.')) || stem == "__init__" {
        return None;
    }
    Some(parts.join("."))
}

/// A module `site` or the interpreter imports at start-up: the names its
/// import loads, and why.
struct StartupRoot {
    targets: Vec<String>,
    via: Via,
}

/// What one source gave: its imports (or why it could not be read) and,
/// per import, the names it loads.
struct Found {
    got: ScanResult,
    targets: Vec<Vec<String>>,
}

/// The shared state of one [`Walk::discover`].
struct Discovery<'w, 'a> {
    walk: &'w Walk<'a>,
    /// Names already taken by the walk or by a worker.
    claimed: &'w Mutex<HashSet<String>>,
    found: &'w Mutex<HashMap<String, Found>>,
}

use crate::sync::lock;

impl Discovery<'_, '_> {
    /// Examines `name`'s source, claiming each name its imports load
    /// (parents first, as [`Walk::push_name`] does) and spawning a visit for
    /// every newly claimed module that has a source.
    fn visit<'s>(&'s self, s: &rayon::Scope<'s>, name: String, code: Code, package: String) {
        // Children are spawned import by import, so the other threads get
        // work while a large `__init__` is still being resolved.
        let found = self
            .walk
            .examine(&code, &package, |targets| self.claim(s, targets));
        drop(code);
        lock(self.found).insert(name, found);
    }

    /// Claims each of `targets` and its parents not yet claimed, and spawns
    /// a visit for each one that has a source.
    fn claim<'s>(&'s self, s: &rayon::Scope<'s>, targets: &[String]) {
        for prefix in targets.iter().flat_map(|t| with_parents(t)) {
            {
                let mut claimed = lock(self.claimed);
                if claimed.contains(prefix) {
                    continue;
                }
                claimed.insert(prefix.to_string());
            }
            let m = self.walk.resolver.resolve(prefix);
            if let Some((code, package)) = source_to_scan(&m) {
                let name = m.name.clone();
                s.spawn(move |s| self.visit(s, name, code, package));
            }
        }
    }
}

/// A digest of a source's import statements: everything the closure
/// depends on (module, names, level, context flags), not the line numbers.
/// Two sources with the same digest, in the same place with the same
/// directory listings around them, give the same closure.
pub(crate) fn imports_digest(imports: &[Import]) -> u64 {
    use std::hash::Hasher;
    fn text(h: &mut impl Hasher, b: &[u8]) {
        h.write_u64(b.len() as u64);
        h.write(b);
    }
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x0069_6d70_6f72_7473, 0x6469_6765_7374);
    for imp in imports {
        text(&mut h, imp.module.as_bytes());
        for n in &imp.names {
            text(&mut h, n.as_bytes());
        }
        h.write_u64(imp.names.len() as u64);
        h.write_u32(imp.level);
        h.write_u32(u32::from(imp.flags.bits()));
    }
    h.write_u64(imports.len() as u64);
    h.finish()
}

/// Runs the scanner (`closure::scan`) over a file's bytes and keeps what the
/// walk needs ([`Import::flags`] holds the scanner's flag bits).
pub(crate) fn scan_imports(bytes: &[u8]) -> Vec<Import> {
    super::scan::scan(bytes)
        .into_iter()
        .map(|s| Import {
            flags: s.flags,
            module: s.module,
            names: s.names,
            level: s.level,
            line: s.line,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::with_parents;

    #[test]
    fn parents_come_first() {
        let all = |n| with_parents(n).collect::<Vec<_>>();
        assert_eq!(all("a.b.c"), ["a", "a.b", "a.b.c"]);
        assert_eq!(all("a"), ["a"]);
        // Malformed names keep every prefix (the resolver rejects them).
        assert_eq!(all("a..b"), ["a", "a.", "a..b"]);
        assert_eq!(all("a."), ["a", "a."]);
    }
}
