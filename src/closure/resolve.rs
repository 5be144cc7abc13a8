//! The importlib-exact resolver: which file (if any) `import NAME` loads in
//! the target interpreter, without running it.
//!
//! It mirrors the default `sys.meta_path` of CPython 3.7-3.13:
//! `BuiltinImporter`, then `FrozenImporter`, then `PathFinder`, whose path
//! entries are served by `FileFinder` (directories). Zip files and other
//! non-directories on `sys.path` yield nothing here: their modules can hold
//! no pycs of their own. Custom finders that `.pth` files install (editable
//! installs, `_distutils_hack`) are not modelled.
//!
//! Every directory's listing is read once and cached, as `FileFinder` does;
//! every directory looked at is recorded ([`Resolver::probed_dirs`]) so a
//! later warm path can tell when a new file could change a resolution.

use crate::interpreter::PythonFacts;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What a resolved module is, i.e. which importlib loader would load it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModuleKind {
    /// A `.py` module (`SourceFileLoader`, not a package).
    Source,
    /// A regular package whose `__init__` is a `.py` source
    /// (`SourceFileLoader` with submodule search locations).
    Package,
    /// An extension module (`ExtensionFileLoader`); a package when its
    /// `__init__` is the extension (`ResolvedModule::search_locations` is set).
    Extension,
    /// A `.pyc` without source (`SourcelessFileLoader`); a package when its
    /// `__init__` is the `.pyc`.
    Sourceless,
    /// A namespace package (directories without `__init__`, merged across
    /// path entries).
    Namespace,
    /// Compiled into the interpreter (`sys.builtin_module_names`).
    Builtin,
    /// Served by `FrozenImporter` in this configuration.
    Frozen,
    /// No finder of the default meta path finds it.
    NotFound,
}

impl ModuleKind {
    /// Lower-case name used in CLI and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleKind::Source => "source",
            ModuleKind::Package => "package",
            ModuleKind::Extension => "extension",
            ModuleKind::Sourceless => "sourceless",
            ModuleKind::Namespace => "namespace",
            ModuleKind::Builtin => "builtin",
            ModuleKind::Frozen => "frozen",
            ModuleKind::NotFound => "not-found",
        }
    }

    /// True when the module is loaded from a `.py` file, i.e. it has a pyc
    /// to keep fresh.
    pub fn has_source(self) -> bool {
        matches!(self, ModuleKind::Source | ModuleKind::Package)
    }
}

/// The result of resolving one fully qualified module name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModule {
    /// Fully qualified name (`a.b.c`).
    pub name: String,
    /// Which loader would load it.
    pub kind: ModuleKind,
    /// `spec.origin` for file-based modules (for a package: its `__init__`
    /// file); `None` for namespace, builtin, frozen and missing modules.
    pub origin: Option<PathBuf>,
    /// `spec.submodule_search_locations`: `Some` exactly for packages
    /// (regular: `[package dir]`; namespace: every portion, in order).
    pub search_locations: Option<Vec<PathBuf>>,
    /// For an extension module: the source it was compiled from when that
    /// lies beside it under the same name (mypyc ships
    /// `black/__init__.py` next to `black/__init__.cpython-311-….so`).
    /// importlib never loads it (the extension shadows it), but the
    /// extension imports what the source imports, so the closure follows
    /// the source's imports. `None` for every other kind.
    pub source_twin: Option<PathBuf>,
}

impl ResolvedModule {
    /// True when the module is a package (has a `__path__`).
    pub fn is_package(&self) -> bool {
        self.search_locations.is_some()
    }

    fn not_found(name: &str) -> Self {
        ResolvedModule {
            name: name.to_string(),
            kind: ModuleKind::NotFound,
            origin: None,
            search_locations: None,
            source_twin: None,
        }
    }
}

/// The launch form of the entry, which decides `sys.path[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchForm {
    /// `python SCRIPT` (a file, or a directory / zip holding `__main__`).
    Script(PathBuf),
    /// `python -c CODE`.
    Command,
    /// `python -m MODULE`.
    Module,
    /// `python` / `python -` (stdin or interactive).
    Stdin,
}

/// The entry CPython puts at `sys.path[0]` for `form`, or `None` when it adds
/// none (`-P`, `PYTHONSAFEPATH`, `-I`: pass `safe_path = true`). An empty path
/// stands for `''` (the current directory, looked up at import time).
///
/// Mirrors `_PyPathConfig_ComputeSysPath0` (3.7-3.10) and
/// `config_run_filename`/`pymain_run_python` (3.11+): a script file gives
/// `dirname(realpath(script))`; a directory or zip is inserted as given
/// (3.7-3.8) or joined to the cwd (3.9+, not normalised); `-m` gives
/// `getcwd()`; `-c`, stdin and the REPL give `''`.
pub(crate) fn sys_path0(
    form: &LaunchForm,
    safe_path: bool,
    version: (u32, u32),
    cwd: &Path,
) -> Option<PathBuf> {
    if safe_path {
        return None;
    }
    match form {
        LaunchForm::Script(script) => {
            let full = if script.is_absolute() {
                script.clone()
            } else {
                cwd.join(script)
            };
            if full.is_dir() || is_zip_file(&full) {
                if version >= (3, 9) && !script.is_absolute() {
                    Some(py_join(cwd.as_os_str(), script.as_os_str()))
                } else {
                    Some(script.clone())
                }
            } else {
                let real = std::fs::canonicalize(&full).unwrap_or(full);
                Some(real.parent().map(Path::to_path_buf).unwrap_or_default())
            }
        }
        LaunchForm::Command | LaunchForm::Stdin => Some(PathBuf::new()),
        LaunchForm::Module => Some(cwd.to_path_buf()),
    }
}

fn is_zip_file(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|_| &magic == b"PK\x03\x04" || &magic == b"PK\x05\x06")
        .unwrap_or(false)
}

/// The full `sys.path` of a launch: `path0` (from [`sys_path0`]) followed by
/// the probed `facts.sys_path`.
pub(crate) fn launch_sys_path(facts: &PythonFacts, path0: Option<PathBuf>) -> Vec<PathBuf> {
    path0
        .into_iter()
        .chain(facts.sys_path.iter().cloned())
        .collect()
}

/// mirrors `importlib._bootstrap_external._path_join` (POSIX):
/// `'/'.join(part.rstrip('/') for part in parts if part)`.
fn py_join(a: &OsStr, b: &OsStr) -> PathBuf {
    let mut out: Vec<u8> = Vec::with_capacity(a.len() + b.len() + 1);
    let mut first = true;
    for part in [a.as_bytes(), b.as_bytes()] {
        if part.is_empty() {
            continue;
        }
        if !first {
            out.push(b'/');
        }
        first = false;
        let mut end = part.len();
        while end > 0 && part[end - 1] == b'/' {
            end -= 1;
        }
        out.extend_from_slice(&part[..end]);
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Which loader a suffix belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoaderKind {
    Extension,
    Source,
    Sourceless,
}

/// One directory's cached listing.
#[derive(Debug, Default)]
struct Listing {
    /// Each name with whether `getdents` already said "regular file"
    /// (`d_type == DT_REG`): such a name needs no `stat` to pass
    /// `_path_isfile`. Symlinks and unknown types are stat'ed as importlib
    /// does.
    names: HashMap<OsString, bool>,
    /// Every `NAME` such that `NAME` + a loader suffix is listed: a module
    /// name outside both maps has nothing here to find.
    stems: HashSet<OsString>,
}

/// Resolves module names for one interpreter and one `sys.path`, exactly as
/// importlib's default finders would. Thread-safe; results and directory
/// listings are cached for the resolver's lifetime (one launch).
#[derive(Debug)]
pub struct Resolver {
    version: (u32, u32),
    sys_path: Vec<PathBuf>,
    cwd: PathBuf,
    builtin: HashSet<String>,
    frozen: HashSet<String>,
    /// `FileFinder._loaders`: (suffix, loader) in search order.
    loaders: Vec<(OsString, LoaderKind)>,
    /// Finder directory (as importlib spells it) per raw path entry; `None`
    /// when no FileFinder serves the entry.
    /// Keyed by raw path bytes (hashing a `Path` walks its components).
    finders: Mutex<HashMap<OsString, Option<PathBuf>>>,
    listings: Mutex<HashMap<OsString, Arc<Listing>>>,
    modules: Mutex<HashMap<String, Arc<ResolvedModule>>>,
    probed: Mutex<BTreeSet<PathBuf>>,
}

impl Resolver {
    /// A resolver for `facts`' interpreter searching `sys_path` (use
    /// `launch_sys_path`), relative entries taken against the process cwd.
    pub fn new(facts: &PythonFacts, sys_path: Vec<PathBuf>) -> Self {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Self::with_cwd(facts, sys_path, cwd)
    }

    /// Like [`Resolver::new`] with an explicit current directory (what `''`
    /// and relative entries mean).
    pub fn with_cwd(facts: &PythonFacts, sys_path: Vec<PathBuf>, cwd: PathBuf) -> Self {
        // mirrors importlib._bootstrap_external._get_supported_file_loaders:
        // extensions, then source, then bytecode (verified on 3.7-3.13).
        let mut loaders = Vec::new();
        for s in &facts.extension_suffixes {
            loaders.push((OsString::from(s), LoaderKind::Extension));
        }
        for s in &facts.source_suffixes {
            loaders.push((OsString::from(s), LoaderKind::Source));
        }
        for s in &facts.bytecode_suffixes {
            loaders.push((OsString::from(s), LoaderKind::Sourceless));
        }
        Resolver {
            version: facts.minor_version(),
            sys_path,
            cwd,
            builtin: facts.builtin_modules.iter().cloned().collect(),
            frozen: facts.frozen_modules.iter().cloned().collect(),
            loaders,
            finders: Mutex::new(HashMap::default()),
            listings: Mutex::new(HashMap::default()),
            modules: Mutex::new(HashMap::default()),
            probed: Mutex::new(BTreeSet::new()),
        }
    }

    /// The `sys.path` searched.
    pub fn sys_path(&self) -> &[PathBuf] {
        &self.sys_path
    }

    /// Every directory whose listing was read (absolute), sorted. A file
    /// created or removed in any of them may change a resolution.
    pub fn probed_dirs(&self) -> Vec<PathBuf> {
        lock(&self.probed).iter().cloned().collect()
    }

    /// Resolves a fully qualified name, parents first, as
    /// `importlib._bootstrap._find_and_load` would: `a.b.c` is searched on
    /// `a.b`'s `__path__`, and is not found when a parent is missing or not a
    /// package.
    pub fn resolve(&self, name: &str) -> Arc<ResolvedModule> {
        if let Some(hit) = lock(&self.modules).get(name) {
            return hit.clone();
        }
        let result = Arc::new(self.resolve_uncached(name));
        lock(&self.modules)
            .entry(name.to_string())
            .or_insert(result)
            .clone()
    }

    fn resolve_uncached(&self, name: &str) -> ResolvedModule {
        if !valid_module_name(name) {
            return ResolvedModule::not_found(name);
        }
        let (parent, _) = match name.rfind('.') {
            Some(i) => (Some(&name[..i]), &name[i + 1..]),
            None => (None, name),
        };
        // mirrors importlib._bootstrap._find_spec over the default meta path:
        // BuiltinImporter, FrozenImporter, PathFinder.
        if parent.is_none() && self.builtin.contains(name) {
            return ResolvedModule {
                kind: ModuleKind::Builtin,
                ..ResolvedModule::not_found(name)
            };
        }
        match parent {
            None => {
                if self.frozen.contains(name) {
                    return self.frozen(name);
                }
                self.path_finder(name, &self.sys_path)
            }
            Some(p) => {
                let parent = self.resolve(p);
                // The parent must import first; a failure stops the child.
                if parent.kind == ModuleKind::NotFound {
                    return ResolvedModule::not_found(name);
                }
                // mirrors _find_and_load_unlocked: a parent without
                // __path__ is "not a package", before any finder runs.
                let Some(locs) = &parent.search_locations else {
                    return ResolvedModule::not_found(name);
                };
                if self.frozen.contains(name) {
                    return self.frozen(name);
                }
                self.path_finder(name, locs)
            }
        }
    }

    /// A frozen module; a frozen package (its `NAME.__init__` is frozen too)
    /// gets an empty search path: its frozen children are found by name.
    fn frozen(&self, name: &str) -> ResolvedModule {
        let is_pkg = self.frozen.contains(&format!("{name}.__init__"));
        ResolvedModule {
            kind: ModuleKind::Frozen,
            search_locations: is_pkg.then(Vec::new),
            ..ResolvedModule::not_found(name)
        }
    }

    /// mirrors `importlib._bootstrap_external.PathFinder.find_spec` /
    /// `_get_spec`: the first entry with a loader wins; namespace portions
    /// are collected and count only when no entry has a loader.
    fn path_finder(&self, name: &str, path: &[PathBuf]) -> ResolvedModule {
        let tail = name.rsplit('.').next().unwrap_or(name);
        let mut portions = Vec::new();
        for entry in path {
            let Some(dir) = self.finder_for(entry) else {
                continue;
            };
            match self.file_finder(&dir, name, tail) {
                Hit::Module(m) => return m,
                Hit::Namespace(p) => portions.push(p),
                Hit::Nothing => {}
            }
        }
        if portions.is_empty() {
            return ResolvedModule::not_found(name);
        }
        ResolvedModule {
            name: name.to_string(),
            kind: ModuleKind::Namespace,
            origin: None,
            search_locations: Some(portions),
            source_twin: None,
        }
    }

    /// mirrors `PathFinder._path_importer_cache`, the `FileFinder` path hook
    /// and `FileFinder.__init__`: `''` means the cwd; only directories get a
    /// FileFinder (zipimporter entries hold no pycs); the finder's path is
    /// spelled as each version's `__init__` spells it.
    fn finder_for(&self, entry: &Path) -> Option<PathBuf> {
        if let Some(hit) = lock(&self.finders).get(entry.as_os_str()) {
            return hit.clone();
        }
        let raw = entry.as_os_str();
        let cwd = self.cwd.as_os_str();
        let hook_path: PathBuf = if raw.is_empty() {
            self.cwd.clone()
        } else {
            entry.to_path_buf()
        };
        let finder = if self.fs_path(&hook_path).is_dir() {
            let p = hook_path.as_os_str();
            let is_abs = p.as_bytes().first() == Some(&b'/');
            let dir = match self.version {
                (3, 7) => hook_path.clone(),
                (3, 8..=10) if !is_abs => py_join(cwd, p),
                (3, 8..=10) => hook_path.clone(),
                _ if p == "." => self.cwd.clone(),
                (3, 11) if !is_abs => py_join(cwd, p),
                // 3.12+: _path_abspath strips one leading "./".
                _ if !is_abs => {
                    let b = p.as_bytes();
                    let b = b.strip_prefix(b"./").unwrap_or(b);
                    py_join(cwd, OsStr::from_bytes(b))
                }
                _ => hook_path.clone(),
            };
            Some(dir)
        } else {
            None
        };
        lock(&self.finders).insert(entry.as_os_str().to_os_string(), finder.clone());
        finder
    }

    /// Where `p` (as importlib spells it) is on disk, for our own file
    /// system calls.
    fn fs_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.cwd.join(p)
        }
    }

    fn listing(&self, dir: &Path) -> Arc<Listing> {
        let fs_dir = self.fs_path(dir);
        if let Some(l) = lock(&self.listings).get(fs_dir.as_os_str()) {
            return l.clone();
        }
        // mirrors FileFinder._fill_cache: an unreadable directory lists empty.
        let names: HashMap<OsString, bool> = std::fs::read_dir(&fs_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| {
                        // DirEntry::file_type uses d_type: no syscall unless
                        // the file system reports DT_UNKNOWN.
                        let regular = e.file_type().is_ok_and(|t| t.is_file());
                        (e.file_name(), regular)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let stems = names
            .keys()
            .flat_map(|n| {
                self.loaders.iter().filter_map(|(suffix, _)| {
                    let stem = n.as_bytes().strip_suffix(suffix.as_bytes())?;
                    Some(OsStr::from_bytes(stem).to_os_string())
                })
            })
            .collect();
        let listing = Arc::new(Listing { names, stems });
        lock(&self.probed).insert(fs_dir.clone());
        lock(&self.listings)
            .entry(fs_dir.into_os_string())
            .or_insert(listing)
            .clone()
    }

    /// mirrors `importlib._bootstrap_external.FileFinder.find_spec` (POSIX,
    /// case-sensitive): a directory named `tail` holding `__init__` + any
    /// loader suffix is a package; else `tail` + suffix in loader order; else
    /// a bare directory is a namespace portion.
    fn file_finder(&self, dir: &Path, name: &str, tail: &str) -> Hit {
        let listing = self.listing(dir);
        let tail_os = OsStr::new(tail);
        if !listing.names.contains_key(tail_os) && !listing.stems.contains(tail_os) {
            return Hit::Nothing;
        }
        let mut is_namespace = None;
        if listing.names.contains_key(tail_os) {
            let base = py_join(dir.as_os_str(), tail_os);
            // The package directory's own listing answers `_path_isfile`
            // for each `__init__` candidate, as the parent's listing does
            // for modules: one read of a directory whose children are
            // looked up next anyway, instead of a stat per loader suffix.
            let inside = self.listing(&base);
            if let Some((full, loader)) = self.first_file(&inside, &base, "__init__") {
                let twin = self.source_twin(loader, &inside, &base, "__init__");
                return Hit::Module(self.spec(name, loader, full, Some(vec![base]), twin));
            }
            if self.fs_path(&base).is_dir() {
                is_namespace = Some(base);
            }
        }
        if let Some((full, loader)) = self.first_file(&listing, dir, tail) {
            let twin = self.source_twin(loader, &listing, dir, tail);
            return Hit::Module(self.spec(name, loader, full, None, twin));
        }
        match is_namespace {
            Some(base) => Hit::Namespace(base),
            None => Hit::Nothing,
        }
    }

    /// The first `stem` + loader suffix in `dir` (whose listing is
    /// `listing`) that is a file, in loader order, with its loader.
    // mirrors FileFinder.find_spec's `_path_isfile(full_path)`; a name the
    // listing reports as a regular file is one (same snapshot), anything
    // else it lists is stat'ed as importlib does.
    fn first_file(
        &self,
        listing: &Listing,
        dir: &Path,
        stem: &str,
    ) -> Option<(PathBuf, LoaderKind)> {
        self.loaders.iter().find_map(|(suffix, loader)| {
            let mut file = OsString::from(stem);
            file.push(suffix);
            let &regular = listing.names.get(&file)?;
            let full = py_join(dir.as_os_str(), &file);
            (regular || self.fs_path(&full).is_file()).then_some((full, *loader))
        })
    }

    /// The source twin of an extension found as `stem` in `dir`: the file
    /// the source loader would have taken had the extension not shadowed
    /// it (`FileFinder.find_spec` tries the source suffixes right after
    /// the extension suffixes). `None` unless `loader` is the extension
    /// loader.
    fn source_twin(
        &self,
        loader: LoaderKind,
        listing: &Listing,
        dir: &Path,
        stem: &str,
    ) -> Option<PathBuf> {
        if loader != LoaderKind::Extension {
            return None;
        }
        self.loaders
            .iter()
            .filter(|(_, l)| *l == LoaderKind::Source)
            .find_map(|(suffix, _)| {
                let mut file = OsString::from(stem);
                file.push(suffix);
                let &regular = listing.names.get(&file)?;
                let full = py_join(dir.as_os_str(), &file);
                (regular || self.fs_path(&full).is_file()).then_some(full)
            })
    }

    fn spec(
        &self,
        name: &str,
        loader: LoaderKind,
        origin: PathBuf,
        locations: Option<Vec<PathBuf>>,
        source_twin: Option<PathBuf>,
    ) -> ResolvedModule {
        let kind = match (loader, locations.is_some()) {
            (LoaderKind::Source, true) => ModuleKind::Package,
            (LoaderKind::Source, false) => ModuleKind::Source,
            (LoaderKind::Extension, _) => ModuleKind::Extension,
            (LoaderKind::Sourceless, _) => ModuleKind::Sourceless,
        };
        ResolvedModule {
            name: name.to_string(),
            kind,
            origin: Some(origin),
            search_locations: locations,
            source_twin,
        }
    }
}

enum Hit {
    Module(ResolvedModule),
    Namespace(PathBuf),
    Nothing,
}

use crate::sync::lock;

/// A name importlib could look up as files: non-empty dot-separated parts,
/// none holding a path separator or NUL.
fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .split('.')
            .all(|part| !part.is_empty() && !part.contains(['/', '\0']))
}

/// Why a relative import cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelativeImportError {
    /// The importing module has no package (`__main__` run as a script).
    NoParent,
    /// More leading dots than the package has levels.
    BeyondTopLevel,
}

/// The absolute name of `from <level dots><name> import ...` inside
/// `package` (the importer's `__package__`).
///
/// mirrors `importlib._bootstrap._resolve_name` and the checks of
/// `_sanity_check`: `package.rsplit('.', level - 1)` must have `level` parts.
pub fn resolve_relative(
    name: &str,
    package: &str,
    level: u32,
) -> Result<String, RelativeImportError> {
    if level == 0 {
        return Ok(name.to_string());
    }
    if package.is_empty() {
        return Err(RelativeImportError::NoParent);
    }
    let mut base = package;
    for _ in 1..level {
        match base.rfind('.') {
            Some(i) => base = &base[..i],
            None => return Err(RelativeImportError::BeyondTopLevel),
        }
    }
    Ok(if name.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{name}")
    })
}

/// `__package__` of a module: itself for a package, else its parent.
pub(crate) fn package_of(name: &str, is_package: bool) -> &str {
    if is_package {
        name
    } else {
        name.rfind('.').map(|i| &name[..i]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_mirrors_importlib() {
        assert_eq!(
            py_join("/a/b/".as_ref(), "m.py".as_ref()),
            PathBuf::from("/a/b/m.py")
        );
        assert_eq!(
            py_join("/".as_ref(), "m.py".as_ref()),
            PathBuf::from("/m.py")
        );
        assert_eq!(py_join("".as_ref(), "m.py".as_ref()), PathBuf::from("m.py"));
        assert_eq!(
            py_join("/c".as_ref(), "./d".as_ref()),
            PathBuf::from("/c/./d")
        );
    }

    #[test]
    fn relative_names() {
        assert_eq!(resolve_relative("x", "a.b", 1).unwrap(), "a.b.x");
        assert_eq!(resolve_relative("x", "a.b", 2).unwrap(), "a.x");
        assert_eq!(resolve_relative("", "a.b", 2).unwrap(), "a");
        assert_eq!(
            resolve_relative("x", "a.b", 3),
            Err(RelativeImportError::BeyondTopLevel)
        );
        assert_eq!(
            resolve_relative("x", "", 1),
            Err(RelativeImportError::NoParent)
        );
        assert_eq!(package_of("a.b", false), "a");
        assert_eq!(package_of("a.b", true), "a.b");
        assert_eq!(package_of("a", false), "");
    }

    #[test]
    fn bad_names_are_not_found() {
        for n in ["", ".", "a..b", "a/b", "a\0", "a."] {
            assert!(!valid_module_name(n), "{n:?}");
        }
        assert!(valid_module_name("a.b_c"));
    }
}
