"""The Python API against the installed wheel and real interpreters.

Run with the kolosal wheel installed in the current environment::

    python -m pytest python/tests

The interpreter compiled for is ``KOLOSAL_TEST_PYTHON`` (default: the one
running the tests). Every verdict is checked against that interpreter's own
importlib (``python -v`` says which pyc it loaded), never against a
hand-written expectation.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, List

import pytest

import kolosal

PY = os.environ.get("KOLOSAL_TEST_PYTHON") or sys.executable


def clean_env(**extra: str) -> Dict[str, str]:
    """Only PATH, HOME, LANG: this machine exports PYTHONDONTWRITEBYTECODE
    and friends, which must not leak into the children."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ}
    env["LANG"] = "C.UTF-8"
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    # The API passes the caller's environment to kolosal; keep this one clean.
    for k in list(os.environ):
        if (k.startswith(("PYTHON", "KOLOSAL_")) or k == "VIRTUAL_ENV") and k != "KOLOSAL_BIN_DIR":
            monkeypatch.delenv(k)
    monkeypatch.setenv("KOLOSAL_CACHE_DIR", str(tmp_path / "kolosal-cache"))


def make_project(root: Path) -> Path:
    files = {
        "main.py": "import pkg.a\nprint(pkg.a.VALUE)\n",
        "pkg/__init__.py": "from . import b\n",
        "pkg/a.py": "VALUE = 'a' * 3\nassert VALUE\n",
        "pkg/b.py": "def f():\n    '''doc'''\n    return 2\n",
        "tools/gen.py": "print('gen')\n",
    }
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def snapshot(root: Path) -> Dict[str, str]:
    """Every file under root (pycache included) -> sha256."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def importlib_cache_paths(sources: List[Path], optimize: int = 0) -> List[str]:
    """cache_from_source as the target interpreter computes it."""
    code = (
        "import importlib.util, json, sys\n"
        "print(json.dumps([importlib.util.cache_from_source(s, optimization=%r) for s in sys.argv[1:]]))\n"
        % ("" if optimize == 0 else optimize)
    )
    out = subprocess.run([PY, "-c", code] + [str(s) for s in sources], env=clean_env(),
                         stdout=subprocess.PIPE, check=True)
    return json.loads(out.stdout)


def loaded_from_pyc(root: Path, modules: List[str], flags: List[str] = []) -> Dict[str, bool]:
    """Imports each module in the target interpreter with -v and no pyc
    writing; True when importlib loaded it from its pyc."""
    code = "import " + ", ".join(modules)
    out = subprocess.run([PY] + flags + ["-v", "-c", code], cwd=str(root),
                         env=clean_env(PYTHONDONTWRITEBYTECODE="1"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    err = out.stderr.decode()
    res = {}
    for m in modules:
        rel = m.replace(".", "/")
        srcs = [root / (rel + ".py"), root / rel / "__init__.py"]
        src = next(s for s in srcs if s.exists())
        pyc_prefix = "# code object from '%s/%s." % (src.parent / "__pycache__", src.stem)
        res[m] = pyc_prefix in err and "# code object from '%s'" % src not in err
    return res


def test_compile_project_writes_the_pycs_importlib_uses(tmp_path):
    root = make_project(tmp_path / "proj")
    bc = kolosal.BytecodeCompiler(root, python=PY)
    assert bc.needs_compilation() is True
    r = bc.compile_project()
    assert isinstance(r, kolosal.CompileResult)
    assert r.ok and r.failed == 0 and r.failures == []
    sources = sorted(root.rglob("*.py"))
    assert sorted(c.source for c in r.compiled) == sorted(str(s) for s in sources)
    assert {c.reason for c in r.compiled} == {"missing"}
    # Each pyc is where importlib looks for it, and importlib takes it.
    by_source = {c.source: c.pyc for c in r.compiled}
    assert [by_source[str(s)] for s in sources] == importlib_cache_paths(sources)
    assert all(loaded_from_pyc(root, ["pkg", "pkg.a", "pkg.b"]).values())
    assert bc.needs_compilation() is False
    again = bc.compile_project()
    assert again.compiled == [] and again.fresh == len(sources)


def test_stats_edit_and_clean(tmp_path):
    root = make_project(tmp_path / "proj")
    bc = kolosal.BytecodeCompiler(str(root), python=PY)
    before = bc.get_compilation_stats()
    assert (before.sources, before.fresh, before.missing, before.stale) == (5, 0, 5, 0)
    assert before.last_compile is None and before.needs_compilation
    bc.compile_project()
    after = bc.get_compilation_stats()
    assert (after.fresh, after.missing, after.stale) == (5, 0, 0)
    assert after.fresh_bytes > 0 and after.last_compile is not None
    assert after.version.count(".") == 2 and after.python == PY
    # An edit that changes the size: importlib would reject the pyc.
    # Same mtime, so the verdict is importlib's size check (it compares the
    # mtime first).
    st_before = os.stat(root / "pkg/a.py")
    (root / "pkg/a.py").write_text("VALUE = 'edited'\n")
    os.utime(root / "pkg/a.py", ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    assert bc.needs_compilation(root / "pkg/a.py") is True
    assert bc.needs_compilation("pkg/b.py") is False
    st = kolosal.status([root], python=PY)
    assert st.levels[0].stale == 1 and st.levels[0].stale_reasons == {"size": 1}
    assert loaded_from_pyc(root, ["pkg.a"]) == {"pkg.a": False}
    bc.compile_directory("pkg")
    assert loaded_from_pyc(root, ["pkg.a"]) == {"pkg.a": True}
    cleaned = bc.clean_bytecode()
    assert isinstance(cleaned, kolosal.CleanResult)
    assert len(cleaned.removed) == 5 and cleaned.removed_bytes > 0 and cleaned.errors == []
    assert not list(root.rglob("*.pyc")) and not list(root.rglob("__pycache__"))
    assert bc.get_compilation_stats().missing == 5


def test_compile_directory_only_touches_that_tree(tmp_path):
    root = make_project(tmp_path / "proj")
    r = kolosal.BytecodeCompiler(root, python=PY).compile_directory("tools")
    assert [Path(c.source).name for c in r.compiled] == ["gen.py"]
    assert not (root / "pkg/__pycache__").exists()


def test_optimize_levels_match_python_O(tmp_path):
    root = make_project(tmp_path / "proj")
    r = kolosal.compile(root, python=PY, optimize=[2, 0])
    assert r.levels == [0, 2] and len(r.compiled) == 10
    assert {c.optimize for c in r.compiled} == {0, 2}
    two = [Path(c.source) for c in r.compiled if c.optimize == 2]
    assert sorted(c.pyc for c in r.compiled if c.optimize == 2) == sorted(importlib_cache_paths(two, 2))
    assert all(loaded_from_pyc(root, ["pkg.a", "pkg.b"], ["-OO"]).values())
    assert kolosal.status(root, python=PY, optimize=1).needs_compilation


def test_a_syntax_error_raises_with_the_message_and_the_rest_is_written(tmp_path):
    root = make_project(tmp_path / "proj")
    (root / "pkg/bad.py").write_text("def broken(:\n")
    with pytest.raises(kolosal.KolosalError) as info:
        kolosal.BytecodeCompiler(root, python=PY).compile_project()
    err = info.value
    assert "bad.py" in str(err) and err.returncode == 1
    assert isinstance(err.result, kolosal.CompileResult)
    assert err.result.failed == 1 and len(err.result.compiled) == 5
    assert loaded_from_pyc(root, ["pkg.a"]) == {"pkg.a": True}


# -- bad input: a clear exception, and nothing written ---------------------


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda r: kolosal.compile([r, r / "no-such-dir"], python=PY), kolosal.PathNotFoundError, "no-such-dir"),
        (lambda r: kolosal.BytecodeCompiler(r, python=PY).compile_directory("missing"),
         kolosal.PathNotFoundError, "missing"),
        (lambda r: kolosal.BytecodeCompiler(r / "nope"), kolosal.PathNotFoundError, "nope"),
        (lambda r: kolosal.compile(r, python="/no/such/python3.99"), kolosal.KolosalError, "/no/such/python3.99"),
        (lambda r: kolosal.BytecodeCompiler(r, python="no-such-python-xyz").compile_project(),
         kolosal.KolosalError, "no-such-python-xyz"),
        (lambda r: kolosal.compile(r, python=PY, optimize=3), kolosal.InvalidArgumentError, "optimize"),
        (lambda r: kolosal.BytecodeCompiler(r, python=PY, optimize=-1), kolosal.InvalidArgumentError, "optimize"),
        (lambda r: kolosal.compile(r, python=PY, optimize=[0, 7]), kolosal.InvalidArgumentError, "7"),
        (lambda r: kolosal.compile(r, python=PY, remove_source=True), kolosal.InvalidArgumentError, "legacy"),
        (lambda r: kolosal.compile(r, python=PY, invalidation_mode="sometimes"),
         kolosal.InvalidArgumentError, "invalidation_mode"),
        (lambda r: kolosal.BytecodeCompiler(r, python=PY, workers=-2), kolosal.InvalidArgumentError, "workers"),
        (lambda r: kolosal.status(r, python=PY, check_hash_based_pycs="maybe"),
         kolosal.InvalidArgumentError, "maybe"),
    ],
)
def test_bad_input_raises_clearly_and_writes_nothing(tmp_path, call, exc, words):
    root = make_project(tmp_path / "proj")
    cache = tmp_path / "kolosal-cache"
    before = snapshot(root)
    with pytest.raises(exc) as info:
        call(root)
    assert words in str(info.value)
    assert isinstance(info.value, kolosal.KolosalError)
    assert snapshot(root) == before
    assert not list(root.rglob("__pycache__"))
    assert not any(p.is_file() for p in cache.rglob("*")) if cache.exists() else True


def test_the_tool_message_is_carried(tmp_path):
    root = make_project(tmp_path / "proj")
    with pytest.raises(kolosal.KolosalError) as info:
        kolosal.compile(root, python=str(root / "main.py"))
    e = info.value
    # The binary's own one-line message, without the "kolosal: error:" prefix.
    assert e.returncode == 2 and "main.py" in e.message and "kolosal: error" in e.stderr
    assert not e.message.startswith("kolosal")


# -- discovery, entries, the binaries ----------------------------------------


def test_interpreter_is_chosen_as_kolosal_python_would(tmp_path):
    root = make_project(tmp_path / "proj")
    subprocess.run([PY, "-m", "venv", "--without-pip", str(root / ".venv")], check=True, env=clean_env())
    r = kolosal.BytecodeCompiler(root).compile_directory("pkg")
    assert r.python == str(root / ".venv/bin/python")
    i = kolosal.info(cwd=root)
    assert i.rule == "dotvenv" and i.path == str(root / ".venv/bin/python")
    assert i.version == r.version


def test_status_of_an_entry_is_its_closure(tmp_path):
    root = make_project(tmp_path / "proj")
    st = kolosal.status(entry=root / "main.py", python=PY, cwd=root)
    assert st.roots == [] and st.sources >= 3  # pkg, pkg.a, pkg.b, and start-up modules
    fresh_before = st.levels[0].fresh
    kolosal.compile([root / "pkg"], python=PY)
    assert kolosal.status(entry=root / "main.py", python=PY, cwd=root).levels[0].fresh == fresh_before + 3


def test_find_bin_and_python_m_kolosal():
    for name in ("kolosal", "kolosal-python"):
        p = kolosal.find_bin(name)
        assert os.access(p, os.X_OK) and os.path.basename(p) == name
    # The wheel put both next to this environment's scripts.
    assert os.path.dirname(kolosal.find_bin()) == sysconfig.get_path("scripts")
    with pytest.raises(kolosal.InvalidArgumentError):
        kolosal.find_bin("python")
    out = subprocess.run([sys.executable, "-m", "kolosal", "--version"], stdout=subprocess.PIPE,
                         env=clean_env(), check=True)
    assert out.stdout.decode().strip() == "kolosal " + kolosal.__version__
    typed = Path(kolosal.__file__).with_name("py.typed")
    assert typed.is_file()


def test_every_subcommand_speaks_schema_1(tmp_path):
    root = make_project(tmp_path / "proj")
    exe = kolosal.find_bin()
    py = "--python=" + PY
    for args in (["compile", py, str(root)], ["status", py, str(root)], ["clean", "--dry-run", str(root)],
                 ["info", py], ["closure", py, str(root / "main.py")]):
        out = subprocess.run([exe] + args + ["--json"], stdout=subprocess.PIPE, cwd=str(root),
                             env=clean_env(), check=True)
        assert json.loads(out.stdout)["schema"] == 1, args


def test_trees_of_two_venvs_give_one_result_per_interpreter(tmp_path):
    """Paths owned by two venvs are each compiled with their own
    interpreter; the result adds them up and keeps each part."""
    trees = []
    for name in ("one", "two"):
        venv = tmp_path / name
        subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True, env=clean_env())
        trees.append(make_project(venv / "src"))
    result = kolosal.compile(trees)
    assert len(result.parts) == 2
    assert sorted(p.python for p in result.parts) == sorted(
        str(tmp_path / n / "bin" / "python") for n in ("one", "two")
    )
    assert len(result.compiled) == sum(len(p.compiled) for p in result.parts) > 0
    assert result.ok
    status = kolosal.status(trees)
    assert len(status.parts) == 2
    assert not status.needs_compilation
