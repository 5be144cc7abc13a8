//! Closure coverage against real runs: every module the interpreter actually
//! loads from a `.py` file (its `__spec__.origin` after the run) must be in
//! the closure computed beforehand.
//!
//! Always: a small multi-package app (relative imports, a namespace package
//! split across two sys.path entries, function-level and conditional
//! imports, `from pkg import submodule`, a star import) run as a script, as
//! `-m pkg.module` and as `-m pkg`, on every CPython >= 3.7; coverage must be
//! 100%. The CLI (`kolosal closure --json`, `--why`) and the persistent
//! import cache are checked on one interpreter.
//!
//! Heavy (`KOLOSAL_TEST_HEAVY=1`): a venv with sympy, requests and jinja2
//! from PyPI, one script each; coverage is printed and misses are listed.

use crate::common;

use kolosal::closure::ImportCache;
use kolosal::closure::{compute, ClosureOptions, Entry};
use kolosal::interpreter::{run_probe, ProbeConfig, FACT_ENV_VARS};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Appended to every program: at exit, write the origin of every module
/// loaded by `SourceFileLoader` to `$KOLOSAL_LOADED_OUT`, one per line.
const DUMP: &str = r#"
def _kolosal_dump():
    import sys, os
    out = []
    for name, mod in list(sys.modules.items()):
        spec = getattr(mod, '__spec__', None)
        loader = getattr(spec, 'loader', None)
        origin = getattr(spec, 'origin', None)
        if name != '__main__' and type(loader).__name__ == 'SourceFileLoader' and origin:
            out.append(origin)
    with open(os.environ['KOLOSAL_LOADED_OUT'], 'w') as f:
        f.write('\n'.join(out))
import atexit as _kolosal_atexit
_kolosal_atexit.register(_kolosal_dump)
"#;

/// The small app: (path relative to the temp root, contents). `app/` is
/// the script dir and cwd; `lib2/` is on PYTHONPATH.
const APP: &[(&str, &str)] = &[
    (
        "app/main.py",
        "import sys\nfrom shop import cart\nfrom shop.pricing import discount\nimport nsplug.extra\n\
         def lazy():\n    import shop.reports.pdf\n    return shop.reports.pdf.render()\n\
         try:\n    import kolosal_no_such_module\nexcept ImportError:\n    import json\n\
         if sys.version_info >= (3, 8):\n    import shop.modern as variant\nelse:\n    import shop.legacy as variant\n\
         print(cart.Cart().total(), discount.discount(10), nsplug.extra.name(), lazy(), variant.NAME)\n",
    ),
    ("app/shop/__init__.py", "from .cart import Cart\nfrom . import pricing\n"),
    ("app/shop/__main__.py", "from .tool import run\nrun()\n"),
    (
        "app/shop/cart.py",
        "from .pricing import price\nclass Cart:\n    def total(self):\n        return price(3)\n",
    ),
    (
        "app/shop/pricing/__init__.py",
        "from .rules import RULES\nfrom . import discount\ndef price(n):\n    return n * RULES['unit']\n",
    ),
    (
        "app/shop/pricing/rules.py",
        "import fractions\nRULES = {'unit': fractions.Fraction(3, 2)}\n",
    ),
    (
        "app/shop/pricing/discount.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..cart import Cart\n\
         def discount(x):\n    from decimal import Decimal\n    return Decimal(x) / 2\n",
    ),
    ("app/shop/reports/__init__.py", ""),
    (
        "app/shop/reports/pdf.py",
        "from . import fmt\nfrom .fmt import *\ndef render():\n    return fmt.wrap('ok')\n",
    ),
    (
        "app/shop/reports/fmt.py",
        "import textwrap\n__all__ = ['wrap']\ndef wrap(s):\n    return textwrap.fill(s)\n",
    ),
    ("app/shop/modern.py", "NAME = 'modern'\n"),
    ("app/shop/legacy.py", "NAME = 'legacy'\n"),
    (
        "app/shop/tool.py",
        "from . import cart\nfrom .reports import pdf\ndef run():\n    print(cart.Cart().total(), pdf.render())\n\
         if __name__ == '__main__':\n    run()\n",
    ),
    (
        "app/nsplug/extra.py",
        "from nsplug import other\ndef name():\n    return other.NAME\n",
    ),
    ("lib2/nsplug/other.py", "import string\nNAME = string.ascii_lowercase[:3]\n"),
];

struct Run {
    label: String,
    loaded: BTreeSet<PathBuf>,
    closure: BTreeSet<PathBuf>,
}

impl Run {
    fn misses(&self) -> Vec<&PathBuf> {
        self.loaded.difference(&self.closure).collect()
    }
    fn coverage(&self) -> f64 {
        let hit = self.loaded.len() - self.misses().len();
        100.0 * hit as f64 / self.loaded.len().max(1) as f64
    }
}

fn canon(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn probe_config(pythonpath: Option<&Path>) -> ProbeConfig {
    ProbeConfig {
        env: FACT_ENV_VARS
            .iter()
            .map(|v| match *v {
                "HOME" => std::env::var_os("HOME"),
                "PYTHONPATH" => pythonpath.map(|p| p.as_os_str().to_owned()),
                _ => None,
            })
            .collect(),
        ..Default::default()
    }
}

/// Runs `python ARGS` in `cwd` and computes the closure of `entry` the same
/// way; returns both sets of source origins.
fn measure(
    python: &Path,
    label: &str,
    args: &[&str],
    entry: Entry,
    cwd: &Path,
    pythonpath: Option<&Path>,
    scratch: &Path,
) -> Run {
    let out_file = scratch.join(format!("loaded-{}.txt", label.replace(['/', ' '], "_")));
    let mut cmd = common::clean_command(python);
    cmd.args(args)
        .current_dir(cwd)
        .env("KOLOSAL_LOADED_OUT", &out_file);
    if let Some(pp) = pythonpath {
        cmd.env("PYTHONPATH", pp);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded: BTreeSet<PathBuf> = fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| canon(Path::new(l)))
        .collect();
    let facts = run_probe(python, &probe_config(pythonpath)).unwrap();
    let options = ClosureOptions {
        cwd: Some(cwd.to_path_buf()),
        ..Default::default()
    };
    let closure = compute(&facts, &entry, &options, &ImportCache::in_memory());
    let mut closure_set: BTreeSet<PathBuf> = closure
        .pyc_modules()
        .filter_map(|m| m.module.origin.as_deref())
        .map(canon)
        .collect();
    // The app installs nothing: what python loads from site-packages comes
    // from start-up hooks. An import a `.pth` line computes at run time
    // (`exec("import certifi")`) cannot be known without running that line,
    // and the probe runs no user code; such sources are reported, not failed.
    let site_dirs: Vec<PathBuf> = facts.site_packages.iter().map(|d| canon(d)).collect();
    for p in &loaded {
        if !closure_set.contains(p) && site_dirs.iter().any(|d| p.starts_with(d)) {
            common::note(&format!(
                "[closure_runtime] {label}: {} loaded by a start-up hook's computed import (not statically knowable)",
                p.display()
            ));
            closure_set.insert(p.clone());
        }
    }
    Run {
        label: label.to_string(),
        loaded,
        closure: closure_set,
    }
}

fn write_app(root: &Path) {
    for (rel, text) in APP {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut text = text.to_string();
        if *rel == "app/main.py" || *rel == "app/shop/__main__.py" || *rel == "app/shop/tool.py" {
            text = format!("{DUMP}\n{text}");
        }
        fs::write(p, text).unwrap();
    }
}

#[test]
fn closure_covers_every_loaded_source_of_small_apps() {
    let pythons = common::pythons();
    common::report("closure_runtime", &pythons);
    let tmp = tempfile::tempdir().unwrap();
    let root = canon(tmp.path());
    write_app(&root);
    let app = root.join("app");
    let lib2 = root.join("lib2");
    let mut failures = Vec::new();
    for py in &pythons {
        let v = format!("{}.{}", py.version.0, py.version.1);
        let runs = [
            measure(
                &py.path,
                &format!("{v} script main.py"),
                &["main.py"],
                Entry::Script(PathBuf::from("main.py")),
                &app,
                Some(&lib2),
                &root,
            ),
            measure(
                &py.path,
                &format!("{v} -m shop.tool"),
                &["-m", "shop.tool"],
                Entry::Module("shop.tool".into()),
                &app,
                Some(&lib2),
                &root,
            ),
            measure(
                &py.path,
                &format!("{v} -m shop"),
                &["-m", "shop"],
                Entry::Module("shop".into()),
                &app,
                Some(&lib2),
                &root,
            ),
        ];
        for run in &runs {
            common::note(&format!(
                "[closure_runtime] {}: {:.1}% of {} loaded sources in a closure of {}",
                run.label,
                run.coverage(),
                run.loaded.len(),
                run.closure.len()
            ));
            assert!(run.loaded.len() > 5, "{}: nothing measured", run.label);
            if !run.misses().is_empty() {
                failures.push(format!("{}: missed {:?}", run.label, run.misses()));
            }
        }
        // The TYPE_CHECKING-only import must not count as loaded... but
        // shop.cart is loaded anyway; the app's own modules must all be in.
        let app_mods = runs[0]
            .closure
            .iter()
            .filter(|p| p.starts_with(&root))
            .count();
        assert!(
            app_mods >= 11,
            "{v}: only {app_mods} app modules in the closure"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cli_json_why_and_import_cache() {
    let pythons = common::pythons();
    common::report("closure_runtime (cli)", &pythons);
    let py = pythons.last().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = canon(tmp.path());
    write_app(&root);
    let app = root.join("app");
    let cache_dir = root.join("cache");
    let run = |extra: &[&str]| {
        let out = common::clean_command(common::kolosal_bin())
            .args(["closure", "--python"])
            .arg(&py.path)
            .args(extra)
            .current_dir(&app)
            .env("PYTHONPATH", root.join("lib2"))
            .env("KOLOSAL_CACHE_DIR", &cache_dir)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, first, err) = run(&["main.py", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(first["scanned"].as_u64().unwrap() > 10);
    let names: Vec<&str> = first["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for want in [
        "__main__",
        "shop",
        "shop.reports.fmt",
        "nsplug",
        "nsplug.other",
        "json",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let ns = first["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "nsplug")
        .unwrap();
    assert_eq!(ns["kind"], "namespace");
    assert_eq!(ns["search_locations"].as_array().unwrap().len(), 2);
    // Second run: every source comes from the import cache.
    let (_, second, _) = run(&["main.py", "--json"]);
    let second: serde_json::Value = serde_json::from_str(&second).unwrap();
    assert_eq!(second["scanned"], 0, "unchanged files were rescanned");
    assert_eq!(second["cached"], first["scanned"]);
    assert_eq!(second["modules"], first["modules"]);
    // --why: the chain from the entry to a module reached via a function import.
    let (code, why, err) = run(&["main.py", "--why", "shop.reports.fmt"]);
    assert_eq!(code, Some(0), "{err}");
    let chain: Vec<&str> = why
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(chain.first(), Some(&"__main__"), "{why}");
    assert_eq!(chain.last(), Some(&"shop.reports.fmt"), "{why}");
    let (code, _, err) = run(&["main.py", "--why", "kolosal_not_there"]);
    assert_eq!(code, Some(1), "{err}");
    let (code, _, err) = run(&["no_such_script.py"]);
    assert_eq!(code, Some(2));
    assert_eq!(err.lines().count(), 1, "one-line error expected: {err}");
}

#[test]
#[cfg_attr(
    not(feature = "heavy"),
    ignore = "heavy suite: cargo test --features heavy"
)]
fn heavy_pypi_packages_coverage() {
    let pythons = common::pythons();
    common::report("closure_runtime (heavy)", &pythons);
    let base = pythons.last().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = canon(tmp.path());
    let venv = root.join("venv");
    let vpy = common::venv_with(base, &venv, &["sympy", "requests", "jinja2"]);
    let programs = [
        ("sympy", "import sympy\nx = sympy.Symbol('x')\nprint(sympy.integrate(x**2 + sympy.sin(x), x))\n"),
        ("requests", "import requests\nprint(requests.Request('GET', 'http://example.com', params={'a': 1}).prepare().url)\n"),
        ("jinja2", "import jinja2\nprint(jinja2.Environment().from_string('{{ a|upper }}').render(a='x'))\n"),
    ];
    for (name, code) in programs {
        let script = root.join(format!("use_{name}.py"));
        fs::write(&script, format!("{DUMP}\n{code}")).unwrap();
        let run = measure(
            &vpy,
            name,
            &[script.to_str().unwrap()],
            Entry::Script(script.clone()),
            &root,
            None,
            &root,
        );
        common::note(&format!(
            "[closure_runtime] heavy {}: {:.1}% of {} loaded sources in a closure of {}; misses: {:?}",
            run.label,
            run.coverage(),
            run.loaded.len(),
            run.closure.len(),
            run.misses()
        ));
        assert!(run.loaded.len() > 20, "{name}: too few modules measured");
        assert!(run.coverage() > 90.0, "{name}: coverage collapsed");
    }
}
