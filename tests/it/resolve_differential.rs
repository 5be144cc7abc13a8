//! Differential test of `closure::resolve` against the real importlib.
//!
//! For every CPython >= 3.7 on the machine, one Python process runs
//! `importlib.util.find_spec(name)` (and `importlib.util.resolve_name` for
//! relative imports) over a generated tree plus a few hundred real stdlib and
//! site-packages names, with the same `sys.path` our resolver gets. Kind,
//! origin and submodule search locations must agree for every name.

use crate::common;

use kolosal::closure::{resolve_relative, ModuleKind, Resolver};
use kolosal::interpreter::{run_probe, ProbeConfig, FACT_ENV_VARS};
use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Files of the generated tree, relative to the temp root (`a/`, `b/` are
/// absolute sys.path entries; `relentry/` and `dotrel/` relative ones; the
/// root itself is `''`).
const FILES: &[&str] = &[
    "cwdmod.py",
    "a/regpkg/__init__.py",
    "a/regpkg/sub.py",
    "a/regpkg/inner/__init__.py",
    "a/regpkg/inner/deep.py",
    "a/regpkg/inner/data",
    "a/nspkg/a_only.py",
    "a/nspkg/shared/a_leaf.py",
    "a/shadow/__init__.py",
    "a/shadow.py",
    "a/extmod.so",
    "a/extmod.py",
    "a/abimod.abi3.so",
    "a/abimod.py",
    "a/onlypyc.pyc",
    "a/pyandpyc.py",
    "a/pyandpyc.pyc",
    "a/extpkg/__init__.so",
    "a/extpkg/__init__.py",
    "a/pycpkg/__init__.pyc",
    "a/dual/x.py",
    "a/dual.py",
    "a/lw/x.py",
    "a/weird.py/inner.py",
    "a/CaseMod.py",
    "a/pkgfile",
    "a/pkgfile.py",
    "a/initdir/__init__.py/keep",
    "a/initdir/mod.py",
    "a/rel/__init__.py",
    "a/rel/sib.py",
    "a/rel/sub/__init__.py",
    "a/rel/sub/leaf.py",
    "b/nspkg/b_only.py",
    "b/nspkg/shared/b_leaf.py",
    "b/regpkg/extra.py",
    "b/lw.py",
    "b/shadow.py",
    "b/onlyb/__init__.py",
    "b/onlyb/mod.py",
    "relentry/relmod.py",
    "relentry/relpkg/__init__.py",
    "dotrel/dotmod.py",
    "junkfile",
];

/// Names looked up in the generated tree (stdlib names are added by the
/// Python side).
const NAMES: &[&str] = &[
    "cwdmod",
    "regpkg",
    "regpkg.sub",
    "regpkg.inner",
    "regpkg.inner.deep",
    "regpkg.inner.data",
    "regpkg.extra",
    "regpkg.missing",
    "nspkg",
    "nspkg.a_only",
    "nspkg.b_only",
    "nspkg.shared",
    "nspkg.shared.a_leaf",
    "nspkg.shared.b_leaf",
    "nspkg.nothing",
    "shadow",
    "extmod",
    "abimod",
    "onlypyc",
    "pyandpyc",
    "extpkg",
    "pycpkg",
    "dual",
    "lw",
    "weird",
    "weird.py",
    "casemod",
    "CaseMod",
    "pkgfile",
    "initdir",
    "initdir.mod",
    "link",
    "broken",
    "rel",
    "rel.sib",
    "rel.sub",
    "rel.sub.leaf",
    "onlyb",
    "onlyb.mod",
    "relmod",
    "relpkg",
    "dotmod",
    "junkfile",
    "nonexistent_kolosal_xyz",
    "nonexistent_kolosal_xyz.child",
    "json.nonexistent_child",
    "os.not_a_package_child",
    "cwdmod.child",
];

/// Relative imports: (dots + name, importer's __package__).
const RELATIVE: &[(&str, &str)] = &[
    (".sib", "rel"),
    ("..sib", "rel.sub"),
    (".leaf", "rel.sub"),
    ("..", "rel.sub"),
    (".", "rel"),
    ("...x", "rel.sub"),
    ("..x", "rel"),
];

/// The Python side: reads path entries and names on stdin, adds stdlib and
/// site-packages names, prints one tab-separated line per name. Must run on 3.7.
const SCRIPT: &str = r#"
import sys, importlib, importlib.util, pkgutil
lines = sys.stdin.read().split('\n')
n = int(lines[0])
sys.path[:] = lines[1:1 + n]
importlib.invalidate_caches()
names = [x for x in lines[1 + n:] if x]
std = {'BuiltinImporter': 'builtin', 'FrozenImporter': 'frozen',
       'ExtensionFileLoader': 'extension', 'SourcelessFileLoader': 'sourceless',
       'SourceFileLoader': 'source'}
extra = set(sys.builtin_module_names)
for entry in sys.path[7:]:
    for info in pkgutil.iter_modules([entry]):
        extra.add(info.name)
for pkg in ('json', 'email', 'email.mime', 'http', 'urllib', 'xml', 'xml.etree', 'xml.dom',
            'xml.sax', 'xml.parsers', 'concurrent', 'concurrent.futures', 'asyncio', 'importlib',
            'encodings', 'ctypes', 'unittest', 'logging', 'sqlite3', 'multiprocessing',
            'collections', 'html', 'wsgiref', 'dbm', 'xmlrpc', 'zoneinfo', 'tomllib', 'venv',
            'pydoc_data', 'pip', 'pip._internal', 'idlelib'):
    try:
        spec = importlib.util.find_spec(pkg)
    except Exception:
        continue
    if spec is None or spec.submodule_search_locations is None:
        continue
    for info in pkgutil.iter_modules(list(spec.submodule_search_locations)):
        extra.add(pkg + '.' + info.name)
extra.discard('__main__')
extra.discard('distutils')  # served by setuptools' _distutils_hack meta finder when present
names += sorted(extra - set(names))
out = []
for name in names:
    if name.startswith('rel:'):
        _, rel, pkg = name.split(':')
        try:
            r = importlib.util.resolve_name(rel, pkg)
        except Exception as e:
            r = '!'
        out.append('R\t%s\t%s\t%s' % (rel, pkg, r))
        continue
    try:
        s = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        s = None
    except Exception as e:
        out.append('E\t%s\t%s' % (name, type(e).__name__))
        continue
    if s is None:
        out.append('M\t%s\tnot-found\t\t-' % name)
        continue
    if s.name != name:
        out.append('A\t%s\t%s' % (name, s.name))
        continue
    l = s.loader
    ln = 'None' if l is None else (l if isinstance(l, type) else type(l)).__name__
    if l is None or ln in ('NamespaceLoader', '_NamespaceLoader'):
        kind = 'namespace'
    elif ln in std:
        kind = std[ln]
    else:
        out.append('C\t%s\t%s' % (name, ln))
        continue
    locs = s.submodule_search_locations
    if kind == 'source' and locs is not None:
        kind = 'package'
    origin = s.origin if kind in ('source', 'package', 'extension', 'sourceless') else ''
    locs = '-' if locs is None else '\x1f'.join(locs)
    out.append('M\t%s\t%s\t%s\t%s' % (name, kind, origin, locs))
sys.stdout.write('\n'.join(out) + '\n')
"#;

fn build_tree(root: &Path) {
    for f in FILES {
        let p = root.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"").unwrap();
    }
    symlink("regpkg/sub.py", root.join("a/link.py")).unwrap();
    symlink("nowhere.py", root.join("a/broken.py")).unwrap();
}

fn clean_probe_config() -> ProbeConfig {
    ProbeConfig {
        env: FACT_ENV_VARS
            .iter()
            .map(|v| {
                if *v == "HOME" {
                    std::env::var_os("HOME")
                } else {
                    None
                }
            })
            .collect(),
        ..Default::default()
    }
}

fn kind_str(k: ModuleKind) -> &'static str {
    match k {
        ModuleKind::NotFound => "not-found",
        other => other.as_str(),
    }
}

#[test]
fn resolver_matches_importlib_find_spec() {
    let pythons = common::pythons();
    common::report("resolve_differential", &pythons);
    let tmp = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(tmp.path()).unwrap();
    build_tree(&root);
    let mut failures: Vec<String> = Vec::new();
    for py in &pythons {
        let facts = run_probe(&py.path, &clean_probe_config()).expect("probe");
        let mut sys_path: Vec<PathBuf> = vec![
            PathBuf::new(),
            root.join("a"),
            root.join("b"),
            PathBuf::from("relentry"),
            PathBuf::from("./dotrel"),
            root.join("junkfile"),
            root.join("missing_dir"),
        ];
        sys_path.extend(facts.sys_path.iter().cloned());
        let resolver = Resolver::with_cwd(&facts, sys_path.clone(), root.clone());

        let mut input = format!("{}\n", sys_path.len());
        for p in &sys_path {
            input.push_str(&p.to_string_lossy());
            input.push('\n');
        }
        for n in NAMES {
            input.push_str(n);
            input.push('\n');
        }
        for (rel, pkg) in RELATIVE {
            input.push_str(&format!("rel:{rel}:{pkg}\n"));
        }
        let mut child = py
            .cmd()
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-c")
            .arg(SCRIPT)
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            py.label(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (mut compared, mut by_kind, mut skipped) =
            (0usize, std::collections::BTreeMap::new(), Vec::new());
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            match f[0] {
                "M" => {
                    let (name, kind, origin, locs) = (f[1], f[2], f[3], f[4]);
                    let ours = resolver.resolve(name);
                    let our_origin = ours
                        .origin
                        .as_ref()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let our_locs = match (&ours.search_locations, ours.kind) {
                        // Frozen packages' __path__ comes from the frozen
                        // table, which we do not model.
                        (_, ModuleKind::Frozen | ModuleKind::Builtin) => locs.to_string(),
                        (None, _) => "-".to_string(),
                        (Some(l), _) => l
                            .iter()
                            .map(|p| p.to_string_lossy().into_owned())
                            .collect::<Vec<_>>()
                            .join("\x1f"),
                    };
                    if kind_str(ours.kind) != kind || our_origin != origin || our_locs != locs {
                        failures.push(format!(
                            "{}: {name}: importlib says {kind} {origin:?} {locs:?}, we say {} {our_origin:?} {our_locs:?}",
                            py.label(),
                            kind_str(ours.kind)
                        ));
                    }
                    compared += 1;
                    *by_kind.entry(kind.to_string()).or_insert(0usize) += 1;
                }
                "R" => {
                    let (rel, pkg, theirs) = (f[1], f[2], f[3]);
                    let level = rel.bytes().take_while(|b| *b == b'.').count() as u32;
                    let ours = resolve_relative(&rel[level as usize..], pkg, level)
                        .unwrap_or_else(|_| "!".to_string());
                    if ours != theirs {
                        failures.push(format!(
                            "{}: relative {rel} in {pkg}: importlib {theirs}, we {ours}",
                            py.label()
                        ));
                    }
                    compared += 1;
                }
                _ => skipped.push(line.to_string()),
            }
        }
        common::note(&format!(
            "[resolve_differential] {}: compared {compared} names {by_kind:?}; skipped {} (runtime aliases/custom finders/import errors): {:?}",
            py.label(),
            skipped.len(),
            skipped
        ));
        assert!(
            compared > 300,
            "{}: only {compared} names compared",
            py.label()
        );
        assert!(
            resolver.probed_dirs().contains(&root.join("a")),
            "probed dirs must record the searched directories"
        );
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
