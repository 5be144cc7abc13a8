//! Differential test of `closure::scan` against CPython's own `ast`.
//!
//! For every `.py` file under an interpreter's stdlib directory, that
//! interpreter's `ast` (one Python process for all files) lists every
//! Import/ImportFrom node and every literal `importlib.import_module` /
//! `import_module` / `__import__` call, each with its line and the context
//! flags computed by an `ast` walk (`FLAGS_WALKER` below). The scanner must
//! agree exactly, per file, on the multiset of
//! (module, sorted names, level, line, flags), statements and dynamic calls
//! compared separately. Files the interpreter cannot parse must still scan
//! without panic.
//!
//! Default: the stdlib of the oldest and the newest CPython >= 3.8 found.
//! `KOLOSAL_TEST_HEAVY=1`: every CPython >= 3.8, plus the site-packages of a
//! temporary python3.12 venv with sympy, numpy, pandas and requests.

use crate::common;

use common::Python;
use kolosal::closure::{scan, ImportFlags};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The ast side. Reads a JSON list of paths (or of `[name, source]` pairs)
/// on stdin, prints one JSON object per entry.
const AST_SIDE: &str = r#"
import ast, json, sys, warnings
warnings.simplefilter("ignore")
TC, FUNC, TRY, COND, DYN, LAZY = 1, 2, 4, 8, 16, 32
CATCH = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}

def is_tc(test):
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            and isinstance(test.value, ast.Name))

def catches_import_error(handler):
    if handler.type is None:
        return True
    for n in ast.walk(handler.type):
        if isinstance(n, ast.Name) and n.id in CATCH:
            return True
        if isinstance(n, ast.Attribute) and n.attr in CATCH:
            return True
    return False

def dynamic(call):
    f = call.func
    if isinstance(f, ast.Name) and f.id in ("__import__", "import_module"):
        pass
    elif (isinstance(f, ast.Attribute) and f.attr == "import_module"
          and isinstance(f.value, ast.Name) and f.value.id == "importlib"):
        pass
    else:
        return None
    if not call.args:
        return None
    a = call.args[0]
    if not (isinstance(a, ast.Constant) and isinstance(a.value, str)):
        return None
    s = a.value
    dots = len(s) - len(s.lstrip("."))
    return [s[dots:], [], dots, f.lineno if not isinstance(f, ast.Attribute) else f.value.lineno]

TRY_TYPES = (ast.Try,) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())
MATCH = getattr(ast, "Match", None)


def walk(tree, full):
    # full=False (no dynamic-import candidate in the source): only statement
    # lists can hold Import nodes, so expressions need no visit.
    imports, dyn = [], []
    def visit(node, flags):
        if not full and not isinstance(node, (ast.stmt, ast.mod, ast.excepthandler, getattr(ast, "match_case", ast.mod))):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "is_lazy", 0):
            # PEP 810 (3.15): `lazy import` / `lazy from ... import`.
            flags |= LAZY
        if isinstance(node, ast.Import):
            for a in node.names:
                imports.append([a.name, [], 0, node.lineno, flags])
        elif isinstance(node, ast.ImportFrom):
            imports.append([node.module or "", sorted(a.name for a in node.names),
                            node.level or 0, node.lineno, flags])
        elif isinstance(node, ast.Call):
            d = dynamic(node)
            if d is not None:
                dyn.append(d + [flags | DYN])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for field, value in ast.iter_fields(node):
                visit_field(value, flags | FUNC if field == "body" else flags)
        elif isinstance(node, ast.If):
            visit(node.test, flags)
            visit_field(node.body, flags | COND | (TC if is_tc(node.test) else 0))
            visit_field(node.orelse, flags | COND)
        elif isinstance(node, ast.While):
            visit(node.test, flags)
            visit_field(node.body, flags | COND)
            visit_field(node.orelse, flags | COND)
        elif MATCH is not None and isinstance(node, MATCH):
            visit(node.subject, flags)
            visit_field(node.cases, flags | COND)
        elif isinstance(node, TRY_TYPES):
            guarded = any(catches_import_error(h) for h in node.handlers)
            visit_field(node.body, flags | (TRY if guarded else 0))
            for field in ("handlers", "orelse", "finalbody"):
                visit_field(getattr(node, field), flags)
        else:
            for _, value in ast.iter_fields(node):
                visit_field(value, flags)
    def visit_field(value, flags):
        if isinstance(value, list):
            for v in value:
                if isinstance(v, ast.AST):
                    visit(v, flags)
        elif isinstance(value, ast.AST):
            visit(value, flags)
    visit(tree, 0)
    return imports, dyn

sys.setrecursionlimit(20000)
for entry in json.load(sys.stdin):
    if isinstance(entry, list):
        name, data = entry[0], entry[1].encode("utf-8", "surrogatepass")
    else:
        name = entry
        try:
            with open(entry, "rb") as f:
                data = f.read()
        except OSError:
            data = None
    try:
        tree = ast.parse(data, name)
        imports, dyn = walk(tree, b"__import__" in data or b"import_module" in data)
        print(json.dumps({"ok": True, "imports": imports, "dynamic": dyn}))
    except BaseException as e:
        print(json.dumps({"ok": False, "error": type(e).__name__}))
"#;

/// (module, sorted names, level, line, flags)
pub(crate) type Row = (String, Vec<String>, u32, u32, u8);

/// What ast says about one file (None: it could not parse it).
pub(crate) struct AstFile {
    pub(crate) imports: Vec<Row>,
    pub(crate) dynamic: Vec<Row>,
}

fn rows(v: &Value) -> Vec<Row> {
    let mut out: Vec<Row> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            let names = r[1]
                .as_array()
                .expect("names")
                .iter()
                .map(|n| n.as_str().expect("str").to_string())
                .collect();
            (
                r[0].as_str().expect("module").to_string(),
                names,
                r[2].as_u64().expect("level") as u32,
                r[3].as_u64().expect("line") as u32,
                r[4].as_u64().expect("flags") as u8,
            )
        })
        .collect();
    out.sort();
    out
}

/// Runs AST_SIDE under `py` over `input` (a JSON list), one result per entry.
pub(crate) fn ast_side(py: &Python, input: &Value) -> Vec<Option<AstFile>> {
    let mut child = py
        .cmd()
        .args(["-c", AST_SIDE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn python");
    let mut stdin = child.stdin.take().expect("stdin");
    let payload = serde_json::to_vec(input).expect("json");
    let writer = std::thread::spawn(move || {
        stdin.write_all(&payload).expect("write file list");
    });
    let out = child.wait_with_output().expect("python output");
    writer.join().expect("writer thread");
    assert!(out.status.success(), "{}: ast side failed", py.label());
    let text = String::from_utf8(out.stdout).expect("utf-8 json");
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            v["ok"].as_bool().expect("ok").then(|| AstFile {
                imports: rows(&v["imports"]),
                dynamic: rows(&v["dynamic"]),
            })
        })
        .collect()
}

/// The scanner's rows for `src`, split like the ast side's.
pub(crate) fn scanner_rows(src: &[u8]) -> (Vec<Row>, Vec<Row>) {
    let (mut imports, mut dynamic) = (Vec::new(), Vec::new());
    for i in scan(src) {
        let mut names = i.names;
        names.sort();
        let row = (i.module, names, i.level, i.line, i.flags.bits());
        if i.flags.contains(ImportFlags::DYNAMIC) {
            dynamic.push(row);
        } else {
            imports.push(row);
        }
    }
    imports.sort();
    dynamic.sort();
    (imports, dynamic)
}

fn py_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "py"))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    files
}

/// Counts from one comparison run.
#[derive(Default, Debug)]
struct Tally {
    files: usize,
    parsed: usize,
    unparsable: usize,
    imports: usize,
    dynamic: usize,
    bytes: usize,
    /// Compared imports carrying each flag bit (TC, FUNC, TRY, COND, DYN, LAZY).
    flagged: [usize; 6],
}

/// Compares the scanner with `py`'s ast over `files`; returns the tally and
/// a description of every disagreement.
fn compare_files(py: &Python, files: &[PathBuf]) -> (Tally, Vec<String>) {
    let list = Value::Array(
        files
            .iter()
            .map(|p| Value::String(p.to_str().expect("utf-8 path").to_string()))
            .collect(),
    );
    let t0 = std::time::Instant::now();
    let ast = ast_side(py, &list);
    common::note(&format!(
        "[scan_vs_ast] ast side on {}: {:.1}s",
        py.label(),
        t0.elapsed().as_secs_f64()
    ));
    assert_eq!(
        ast.len(),
        files.len(),
        "{}: ast side answered for every file",
        py.label()
    );
    let mut tally = Tally {
        files: files.len(),
        ..Tally::default()
    };
    let mut problems = Vec::new();
    for (path, expected) in files.iter().zip(ast) {
        let Ok(src) = std::fs::read(path) else {
            continue;
        };
        tally.bytes += src.len();
        let (imports, dynamic) = scanner_rows(&src);
        let Some(expected) = expected else {
            tally.unparsable += 1;
            continue;
        };
        tally.parsed += 1;
        tally.imports += expected.imports.len();
        tally.dynamic += expected.dynamic.len();
        for row in &expected.imports {
            for (bit, n) in tally.flagged.iter_mut().enumerate() {
                *n += usize::from(row.4 & (1 << bit) != 0);
            }
        }
        for (what, got, want) in [
            ("imports", &imports, &expected.imports),
            ("dynamic", &dynamic, &expected.dynamic),
        ] {
            if got != want {
                let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).collect();
                let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).collect();
                problems.push(format!(
                    "{} {what}: ast-only {missing:?} scanner-only {extra:?}",
                    path.display()
                ));
            }
        }
    }
    (tally, problems)
}

fn check(label: &str, py: &Python, files: &[PathBuf]) {
    let t0 = std::time::Instant::now();
    let (tally, problems) = compare_files(py, files);
    common::note(&format!(
        "[scan_vs_ast] {label} on {}: {} files ({:.1} MB), {} parsed by ast and compared ({} imports, {} dynamic; \
         flagged TYPE_CHECKING/IN_FUNCTION/TRY_IMPORT_ERROR/CONDITIONAL/DYNAMIC/LAZY {:?}), \
         {} unparsable scanned without panic, {} disagreements, {:.1}s",
        py.label(),
        tally.files,
        tally.bytes as f64 / 1e6,
        tally.parsed,
        tally.imports,
        tally.dynamic,
        tally.flagged,
        tally.unparsable,
        problems.len(),
        t0.elapsed().as_secs_f64()
    ));
    assert!(
        tally.parsed > 0 && tally.imports > 0,
        "{label}: nothing was compared"
    );
    let shown: Vec<&String> = problems.iter().take(30).collect();
    assert!(
        problems.is_empty(),
        "{label}: {} files disagree with ast:\n{shown:#?}",
        problems.len()
    );
}

#[test]
fn stdlib_matches_ast() {
    let all = common::pythons_at_least((3, 8));
    let pythons: Vec<Python> = if common::heavy() || all.len() <= 2 {
        all
    } else {
        vec![all[0].clone(), all[all.len() - 1].clone()]
    };
    common::report("scan_vs_ast stdlib", &pythons);
    std::thread::scope(|s| {
        for py in &pythons {
            s.spawn(move || check("stdlib", py, &py_files(&py.stdlib_dir())));
        }
    });
}

#[test]
#[cfg_attr(
    not(feature = "heavy"),
    ignore = "heavy suite: cargo test --features heavy"
)]
fn site_packages_match_ast() {
    let py = common::pythons_at_least((3, 12))
        .into_iter()
        .find(|p| p.version.1 == 12)
        .expect("a CPython 3.12 for the venv");
    common::report("scan_vs_ast site-packages", std::slice::from_ref(&py));
    let dir = tempfile::tempdir().expect("tempdir");
    let venv = dir.path().join("venv");
    let st = py
        .cmd()
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python -m venv");
    assert!(st.success(), "venv creation failed");
    let vpy = venv.join("bin/python");
    let st = common::network_command(&vpy)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "sympy",
            "numpy",
            "pandas",
            "requests",
        ])
        .status()
        .expect("pip install");
    assert!(
        st.success(),
        "pip install sympy numpy pandas requests failed"
    );
    let site = common::purelib(&vpy);
    let files = py_files(&site);
    for pkg in ["sympy", "numpy", "pandas", "requests"] {
        assert!(
            files.iter().any(|f| f.starts_with(site.join(pkg))),
            "{pkg} not installed"
        );
    }
    check(
        "site-packages (sympy numpy pandas requests pip)",
        &py,
        &files,
    );
}

/// Hand-picked snippets whose context flags are tricky; expected flags come
/// from the same ast walk, run by every interpreter that can parse them.
#[test]
fn tricky_snippets_match_ast() {
    let snippets: Vec<(&str, &str, (u32, u32))> = vec![
        ("tc", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n    from b import c\nelse:\n    import d\n", (3, 8)),
        ("tc_attr", "import typing\nif typing.TYPE_CHECKING: import a\nelif TYPE_CHECKING:\n  import b\nelif (TYPE_CHECKING):\n  import c\nelse: import d\n", (3, 8)),
        ("tc_not", "if not TYPE_CHECKING:\n    import a\nif TYPE_CHECKING or x:\n    import b\nif a.b.TYPE_CHECKING:\n    import c\n", (3, 8)),
        ("try_ie", "try:\n    import a\n    if x:\n        import b\nexcept ImportError:\n    import c\nelse:\n    import d\nfinally:\n    import e\n", (3, 8)),
        ("try_tuple", "try:\n    import a\nexcept (OSError, ModuleNotFoundError) as ImportError:\n    pass\ntry: import b\nexcept ValueError as ImportError: pass\ntry:\n    import c\nexcept: pass\n", (3, 8)),
        ("try_nested", "try:\n    try:\n        import a\n    except KeyError:\n        import b\n    import c\nexcept Exception:\n    pass\ntry:\n  import d\nexcept KeyError:\n  pass\nexcept BaseException:\n  pass\n", (3, 8)),
        ("try_onel", "try: import a\nexcept ImportError: import b\ntry: import c; import d\nfinally: import e\n", (3, 8)),
        ("func", "def f(x=__import__('a')) -> g(__import__('b')):\n    import c\n    class K:\n        import d\n    def h(): import e\nasync def g():\n    import f\n@dec(__import__('g'))\ndef k(): pass\n", (3, 8)),
        ("lambda", "x = lambda: __import__('a')\ny = (lambda q=__import__('b'): __import__('c'), __import__('d'))\nz = [lambda: importlib.import_module('e') for _ in r]\nw = lambda: __import__('f') if c else __import__('g')\nv = (lambda: 1) if __import__('h') else 2\n", (3, 8)),
        ("lambda_dict", "d = {'k': lambda: __import__('a'), 'j': __import__('b')}\ne = {lambda: __import__('c'): __import__('d')}\n", (3, 8)),
        ("lambda_header", "if lambda: __import__('a'):\n    import b\nwhile (lambda: 1)() and __import__('c'):\n    import d\nelse:\n    import e\n", (3, 8)),
        ("cond", "if a:\n    import a\nelif __import__('b'):\n    import c\nelse:\n    import d\nwhile x:\n    import e\nfor y in z:\n    import f\nelse:\n    import g\nwith m as n:\n    import h\n", (3, 8)),
        ("onel_else", "if a: import a\nelse: import b\nfor x in y: import c\nelse: import d\nclass C: import e\n", (3, 8)),
        ("match", "match x:\n    case [1, 2]:\n        import a\n    case {'k': v} if __import__('b'):\n        import c\n    case _: import d\nmatch = 1\nmatch(x)\nimport e\n", (3, 10)),
        ("match_names", "def match(case, _):\n    import a\ncase = 3\ntype = 4\n_ = match(case, _)\nimport b\n", (3, 8)),
        ("dyn", "importlib.import_module('a.b')\nimport_module('.c', package=__name__)\n__import__('d', globals(), locals(), ['x'], 0)\nimportlib.import_module(name)\nfoo.importlib.import_module('e')\nx.__import__('f')\nimport_module('g' 'h')\nimport_module(u'i')\nimport_module(r'j')\nimport_module(b'k')\n", (3, 8)),
        ("dyn_fstring", "x = f'{__import__(\"a\")}'\ny = f\"{importlib.import_module('b')!r:>{w}}\"\n", (3, 8)),
        ("pep701", "x = f\"{d[\"k\"]}\"; import a\ny = f\"{\n  __import__('b')  # comment }\n}\"\nz = f'{f'{f'{1}'}'}'\nimport c\n", (3, 12)),
        ("strings", r#"s = '''
import no
'''
t = "import no2" # import no3
u = rb'\\' + r'\'' + 'import no4'
import yes
v = """\"""" "import no5" """\\"""
w = b"\x00" + 'import no6' + R"\"" U'import no7' + Br'''import no8'''.decode()
x = 'a\
import no9'
import yes2
"#, (3, 8)),
        ("continuations", "import a, \\\n    b\nfrom c import (d,\n  # comment\n  e as f,\n)\nif x: \\\n    import g\nfrom . \\\n  import h\n", (3, 8)),
        ("semicolons", "import a; from b import c; x = 1; import d as e, f\nif x: import g; import h\n", (3, 8)),
        ("deep", "class A:\n    def f(self):\n        if x:\n            try:\n                import a\n            except ImportError:\n                pass\n        while y:\n            import b\n    import c\nimport d\n", (3, 8)),
        ("tabs", "if x:\n\tif y:\n\t    import a\n\timport b\n\tdef f(): import c\nimport d\n", (3, 8)),
        ("formfeed", "def f():\n\x0c    import a\n\x0cimport b\n", (3, 8)),
        ("comments_indent", "def f():\n    pass\n# comment at col 0\n    import a\n\n  \n    import b\nimport c\n", (3, 8)),
        ("yield_raise", "def g():\n    yield from x\n    raise A from B\n    from a import b\n", (3, 8)),
        ("yield_eol", "def g():\n    yield\nfrom a import b\ndef h():\n    x = yield\n    from c import d\n", (3, 8)),
        ("except_star", "try:\n    import a\nexcept* ImportError:\n    pass\n", (3, 11)),
        ("walrus", "if (y := 1):\n    import a\nif x[1:2]:\n    import b\n", (3, 8)),
        ("number_kw", "x = 1if y else 2\nif 0x1:\n    import a\n", (3, 8)),
        ("future", "from __future__ import annotations, division\nimport a\n", (3, 8)),
        ("unicode", "import \u{FB01}le\nfrom \u{00E9}t\u{00E9} import \u{FB01}x\n", (3, 8)),
        ("crlf", "if x:\r\n    import a\r\nimport b\rimport c\r\n", (3, 8)),
        // The scan stops at the first top-level statement after the last
        // `import`: handlers and `else` clauses of that statement still count.
        ("tail_try", "x = 1\ntry:\n    import a\nexcept ImportError:\n    a = None\ny = 2\ndef f():\n    pass\n", (3, 8)),
        ("tail_try_late", "try:\n    from a import b\n\n# comment\nexcept ValueError:\n    pass\nexcept (KeyError, ImportError):\n    pass\nelse:\n    pass\nfinally:\n    pass\nz = 3\n", (3, 8)),
        ("tail_nested", "def f():\n    try:\n        import a\n    except Exception:\n        pass\n    return 1\nclass C:\n    pass\n", (3, 8)),
        ("tail_if", "if x:\n    import a\nelif y:\n    pass\nelse:\n    pass\nw = 'import' \nv = 1\n", (3, 8)),
        ("tail_words", "import a\nx = 'not an import'  # import\ny = lambda: from_\nraise E from None\n", (3, 8)),
        // PEP 750 t-strings (3.14): every prefix spelling, nested fields,
        // quotes reused inside fields, import text that is only string data.
        ("tstring", r#"x = t'{__import__("a")}'; import b
y = tr'\{x}' + Rt"import no" + TR'{importlib.import_module("c")}'
z = t"{t"{t'{1:{w}}'}"!r:>{__import__('d')}}"
import e
w = t'''
import no2
{x}'''; from f import g
"#, (3, 14)),
        ("tstring_multiline", r#"v = t"""{
  __import__('a')  # comment }
}"""
u = [rt'{x}\\', T"", tR"{'import no'}"]
import b
"#, (3, 14)),
        // PEP 810 lazy imports (3.15): the soft keyword before `import` /
        // `from`, after `;` and a header colon; `lazy` as a plain name.
        ("lazy", "lazy import a, b.c as d\nlazy from e import f, g as h\nlazy from . import i\nlazy from ..j import (k,\n    l)\nimport m\n", (3, 15)),
        ("lazy_where", "x = 1; lazy import a\nif c: lazy import b\nif d:\n    lazy import e\nelse:\n    lazy from f import g\ndef fn():\n    lazy import h\nlazy \\\n  import i\n", (3, 15)),
        ("lazy_name", "lazy = 1\nlazy(import_)\nlazy.x = lazy\nlazy\nimport a\nprint(lazy); from b import c\ndef lazy(): import d\n", (3, 15)),
    ];
    let pythons = common::pythons_at_least((3, 8));
    common::report("scan_vs_ast snippets", &pythons);
    let mut problems = Vec::new();
    let mut compared = 0;
    for py in &pythons {
        let chosen: Vec<_> = snippets
            .iter()
            .filter(|s| (py.version.0, py.version.1) >= s.2)
            .collect();
        let input = Value::Array(
            chosen
                .iter()
                .map(|(n, src, _)| Value::Array(vec![Value::from(*n), Value::from(*src)]))
                .collect(),
        );
        let results = ast_side(py, &input);
        assert_eq!(results.len(), chosen.len());
        for ((name, src, _), ast) in chosen.iter().zip(results) {
            let ast =
                ast.unwrap_or_else(|| panic!("{}: snippet {name} does not parse", py.label()));
            let (imports, dynamic) = scanner_rows(src.as_bytes());
            compared += 1;
            if imports != ast.imports || dynamic != ast.dynamic {
                problems.push(format!(
                    "{} {name}:\n  ast     {:?} {:?}\n  scanner {:?} {:?}",
                    py.label(),
                    ast.imports,
                    ast.dynamic,
                    imports,
                    dynamic
                ));
            }
        }
    }
    common::note(&format!(
        "[scan_vs_ast] {compared} snippet runs compared, {} disagreements",
        problems.len()
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Single-core scanner throughput over every stdlib found (files held in
/// memory). Run in release: `cargo test --release --test it -- --ignored --exact scan_vs_ast::throughput --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let pythons = common::pythons_at_least((3, 8));
    common::report("scan throughput", &pythons);
    let sources: Vec<Vec<u8>> = pythons
        .iter()
        .flat_map(|py| py_files(&py.stdlib_dir()))
        .filter_map(|p| std::fs::read(p).ok())
        .collect();
    let bytes: usize = sources.iter().map(Vec::len).sum();
    let mut best = f64::MAX;
    let mut found = 0;
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        found = sources.iter().map(|s| scan(s).len()).sum::<usize>();
        best = best.min(t0.elapsed().as_secs_f64());
    }
    common::note(&format!(
        "[scan throughput] {} files, {:.1} MB, {found} imports: best of 3 {:.3}s = {:.0} MB/s on one core",
        sources.len(),
        bytes as f64 / 1e6,
        best,
        bytes as f64 / 1e6 / best
    ));
}

/// Source encodings: files written by CPython itself in double-byte codecs
/// whose trail bytes include `\` and braces, latin-1 with non-UTF-8 bytes,
/// a UTF-8 BOM, CRLF and lone-CR line endings; each interpreter's ast is the
/// reference.
#[test]
fn encodings_match_ast() {
    const WRITER: &str = r##"
import os, sys
out = sys.argv[1]
def tricky(enc, want):
    # A CJK character whose encoding ends in `want` (a backslash or a brace).
    for cp in range(0x4E00, 0x9FFF):
        try:
            b = chr(cp).encode(enc)
        except UnicodeEncodeError:
            continue
        if len(b) == 2 and b.endswith(want):
            return chr(cp)
    return None
body = '''s = "{b}"; import a
t = """{b}"""
import b
u = f"{b}{{x}}{o}{c}{b}" if 1 else f'{o}{b}'
v = f"{x:{o}}" + '{b}'
{ident} = 1
from c import d
'''
n = 0
for enc in ("cp932", "shift_jis", "big5", "gbk", "gb18030", "johab"):
    b, o, c = tricky(enc, b"\\"), tricky(enc, b"{"), tricky(enc, b"}")
    if not b:
        continue
    o, c = o or "o", c or "c"
    ident = "x" + b if ("x" + b).isidentifier() else "y"
    text = "# -*- coding: %s -*-\n" % enc + body.replace("{b}", b).replace("{o}", o).replace("{c}", c).replace("{ident}", ident)
    with open(os.path.join(out, "enc_%s.py" % enc), "wb") as f:
        f.write(text.encode(enc))
    n += 1
with open(os.path.join(out, "latin1.py"), "wb") as f:
    f.write("# coding: latin-1\nx = 'caf\xe9'\nimport e\n\xe9 = 1\nfrom f import g\n".encode("latin-1"))
with open(os.path.join(out, "bom_crlf.py"), "wb") as f:
    f.write(b"\xef\xbb\xbfimport h\r\nif x:\r\n    import i\r\nimport j\rimport k\r\n")
print(n)
"##;
    let pythons = common::pythons_at_least((3, 8));
    common::report("scan_vs_ast encodings", &pythons);
    for py in &pythons {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = py
            .cmd()
            .args(["-c", WRITER])
            .arg(dir.path())
            .output()
            .expect("writer");
        assert!(
            out.status.success(),
            "{}: writer failed: {}",
            py.label(),
            String::from_utf8_lossy(&out.stderr)
        );
        let dbcs: usize = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("count");
        assert!(
            dbcs >= 4,
            "{}: too few double-byte codecs exercised: {dbcs}",
            py.label()
        );
        let files = py_files(dir.path());
        let (tally, problems) = compare_files(py, &files);
        assert_eq!(
            tally.parsed,
            files.len(),
            "{}: every encoded file parses",
            py.label()
        );
        assert!(problems.is_empty(), "{}: {problems:#?}", py.label());
    }
}
