"""The Python API: runs the ``kolosal`` binary with ``--json`` and returns
typed results.

Every call starts one ``kolosal`` process; nothing here compiles, parses or
decides freshness itself (the binary does, exactly as ``kolosal-python``
would). Arguments are checked before the process starts, so bad input raises
without anything being written.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

# `import kolosal` stays cheap: typing is for checkers only (annotations are
# strings here), and json / subprocess / shutil / sysconfig are imported by
# the calls that use them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar, Union

    T = TypeVar("T")

    PathLike = Union[str, "os.PathLike[str]"]
    Paths = Union[PathLike, Iterable[PathLike]]

#: The ``"schema"`` number of the JSON documents this module understands.
SCHEMA = 1

_BINARIES = ("kolosal", "kolosal-python")
_INVALIDATION_MODES = ("timestamp", "checked-hash", "unchecked-hash")
_HASH_CHECK_MODES = ("default", "always", "never")


class KolosalError(Exception):
    """``kolosal`` failed, or was asked something it cannot do.

    ``str(err)`` is the tool's own message (``kolosal: error: ...`` without
    the prefix) or the reason the call was refused before running it.
    """

    def __init__(
        self,
        message: str,
        *,
        returncode: Optional[int] = None,
        command: Optional[List[str]] = None,
        stderr: str = "",
        result: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        #: Exit status of the tool (``None`` when it was not run).
        self.returncode = returncode
        #: The command line that was run (``None`` when it was not run).
        self.command = command
        #: Everything the tool wrote on stderr.
        self.stderr = stderr
        #: The parsed result when the tool still reported one (exit status 1:
        #: some files failed), else ``None``.
        self.result = result


class InvalidArgumentError(KolosalError, ValueError):
    """An argument was refused before ``kolosal`` ran: nothing was written."""


class PathNotFoundError(KolosalError, FileNotFoundError):
    """A path given does not exist: refused before ``kolosal`` ran."""


class BinaryNotFoundError(KolosalError, FileNotFoundError):
    """The ``kolosal`` binaries could not be found."""


# -- results -----------------------------------------------------------------


@dataclass(frozen=True)
class CompiledFile:
    """One pyc written by a compile."""

    source: str
    pyc: str
    optimize: int
    #: Why the old pyc was not good enough (``missing``, ``mtime``, ``size``,
    #: ``hash``, ``bad-magic``, ..., or ``forced``).
    reason: str


@dataclass(frozen=True)
class CompileResult:
    """What ``kolosal compile`` did."""

    python: str
    version: str
    cache_tag: Optional[str]
    levels: List[int]
    invalidation_mode: str
    compiled: List[CompiledFile]
    #: Pycs that were already fresh.
    fresh: int
    failed: int
    #: One line per failure (``path:line: message`` for syntax errors).
    failures: List[str]
    elapsed_s: float
    #: When the paths belonged to several interpreters (each compiled with
    #: its own), one result per interpreter; the fields above then add them
    #: up and name the first interpreter.
    parts: Tuple["CompileResult", ...] = ()

    @property
    def ok(self) -> bool:
        return self.failed == 0


@dataclass(frozen=True)
class LevelStatus:
    """Counts for one optimisation level."""

    optimize: int
    fresh: int
    fresh_bytes: int
    stale: int
    stale_bytes: int
    stale_reasons: Dict[str, int]
    missing: int
    orphaned: int
    orphaned_bytes: int


@dataclass(frozen=True)
class StatusResult:
    """What ``kolosal status`` reports."""

    python: str
    version: str
    cache_tag: Optional[str]
    roots: List[str]
    sources: int
    check_hash_based_pycs: str
    levels: List[LevelStatus]
    problems: List[str]
    #: When the paths belonged to several interpreters, one result per
    #: interpreter; the fields above then gather them (levels of every
    #: interpreter, first interpreter named).
    parts: Tuple["StatusResult", ...] = ()

    @property
    def needs_compilation(self) -> bool:
        """True when some pyc is stale or missing at some level."""
        return any(lv.stale or lv.missing for lv in self.levels)


@dataclass(frozen=True)
class CleanResult:
    """What ``kolosal clean`` removed (or, dry, would remove)."""

    dry_run: bool
    removed: List[str]
    removed_bytes: int
    removed_dirs: List[str]
    kept_orphans: int
    errors: List[str]


@dataclass(frozen=True)
class InterpreterInfo:
    """Which interpreter ``kolosal-python`` would run, and why."""

    path: str
    resolved: str
    #: ``explicit``, ``env``, ``virtualenv``, ``dotvenv``, ``pyenv``, ``path``.
    rule: str
    detail: str
    version: Optional[str]
    cache_tag: Optional[str]
    #: The whole ``kolosal info --json`` document.
    raw: Dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class CompilationStats:
    """A project's bytecode, summed over the optimisation levels asked for."""

    root: str
    python: str
    version: str
    sources: int
    fresh: int
    stale: int
    missing: int
    orphaned: int
    #: Size of the fresh pycs.
    fresh_bytes: int
    levels: List[LevelStatus]
    #: The last ``compile_project`` / ``compile_directory`` of this
    #: compiler, if any.
    last_compile: Optional[CompileResult] = None

    @property
    def needs_compilation(self) -> bool:
        return self.stale > 0 or self.missing > 0


# -- finding and running the binary ----------------------------------------


def _candidate_dirs() -> List[str]:
    import sysconfig

    dirs: List[str] = []
    # Where pip / uv put this distribution's scripts for this interpreter
    # (a venv's bin, a tool environment's bin, or the user scheme's).
    schemes: List[Optional[str]] = [None]
    user_scheme = "%s_user" % ("posix" if os.name == "posix" else os.name)
    if user_scheme in sysconfig.get_scheme_names():
        schemes.append(user_scheme)
    for scheme in schemes:
        try:
            d = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        if d:
            dirs.append(d)
    dirs.append(os.path.dirname(os.path.abspath(sys.executable)))
    return dirs


def find_bin(name: str = "kolosal") -> str:
    """The path of the ``kolosal`` (or ``kolosal-python``) binary.

    Looked for first where this package's wheel installed it (the scripts
    directory of this interpreter's environment, then of its user scheme,
    then beside ``sys.executable``), then on ``PATH``. ``KOLOSAL_BIN_DIR``,
    when set, is the only place looked at.
    """
    if name not in _BINARIES:
        raise InvalidArgumentError("find_bin: name must be one of %s, not %r" % (", ".join(_BINARIES), name))
    forced = os.environ.get("KOLOSAL_BIN_DIR")
    if forced:
        p = os.path.join(forced, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
        raise BinaryNotFoundError("KOLOSAL_BIN_DIR=%s holds no executable %s" % (forced, name))
    for d in _candidate_dirs():
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    import shutil

    found = shutil.which(name)
    if found:
        return found
    raise BinaryNotFoundError(
        "cannot find the %s binary: install the kolosal wheel into this environment "
        "(pip install kolosal) or put %s on PATH" % (name, name)
    )


def _run(args: List[str], cwd: Optional[PathLike]) -> Dict[str, Any]:
    """Runs ``kolosal ARGS --json``; returns the parsed document. Exit status
    1 with a document raises :class:`KolosalError` carrying it as
    ``result`` (the caller converts it); anything else that is not a valid
    document raises with the tool's message."""
    import json
    import subprocess

    cmd = [find_bin("kolosal"), args[0], "--json"] + args[1:]
    try:
        proc = subprocess.run(
            cmd,
            cwd=None if cwd is None else os.fspath(cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as e:
        raise KolosalError("cannot run %s: %s" % (cmd[0], e), command=cmd) from e
    stderr = proc.stderr.decode("utf-8", "replace")
    doc: Optional[Dict[str, Any]] = None
    if proc.stdout.strip():
        try:
            doc = json.loads(proc.stdout.decode("utf-8", "replace"))
        except ValueError:
            doc = None
    if doc is None:
        raise KolosalError(
            _tool_message(stderr) or "kolosal exited with status %d and no output" % proc.returncode,
            returncode=proc.returncode,
            command=cmd,
            stderr=stderr,
        )
    if doc.get("schema") != SCHEMA:
        raise KolosalError(
            "%s speaks JSON schema %r; this kolosal package reads schema %d (mismatched install?)"
            % (cmd[0], doc.get("schema"), SCHEMA),
            returncode=proc.returncode,
            command=cmd,
            stderr=stderr,
        )
    if proc.returncode not in (0, 1):
        raise KolosalError(
            _tool_message(stderr) or "kolosal exited with status %d" % proc.returncode,
            returncode=proc.returncode,
            command=cmd,
            stderr=stderr,
        )
    doc["_returncode"] = proc.returncode
    doc["_command"] = cmd
    doc["_stderr"] = stderr
    return doc


def _tool_message(stderr: str) -> str:
    """The tool's error, without clap's usage lines and the ``kolosal:``
    prefixes."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    picked = [ln for ln in lines if ln.startswith(("kolosal:", "error:"))] or lines[:1]
    out = []
    for ln in picked:
        for prefix in ("kolosal: error: ", "kolosal: ", "error: "):
            if ln.startswith(prefix):
                ln = ln[len(prefix):]
                break
        out.append(ln)
    return "; ".join(out)


def _fail_if_errors(doc: Dict[str, Any], result: T, lines: List[str], what: str) -> T:
    if doc["_returncode"] == 0:
        return result
    shown = lines[:5] + (["... and %d more" % (len(lines) - 5)] if len(lines) > 5 else [])
    raise KolosalError(
        "%s: %s" % (what, "; ".join(shown) if shown else "failed"),
        returncode=doc["_returncode"],
        command=doc["_command"],
        stderr=doc["_stderr"],
        result=result,
    )


# -- argument checks (before anything runs) --------------------------------


def _as_paths(paths: Optional[Paths], what: str) -> List[str]:
    if paths is None:
        return []
    if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
        items = [paths]
    else:
        items = list(paths)
    out = []
    for p in items:
        try:
            s = os.fspath(p)  # type: ignore[arg-type]
        except TypeError:
            raise InvalidArgumentError("%s: %r is not a path" % (what, p)) from None
        if isinstance(s, bytes):
            s = os.fsdecode(s)
        out.append(s)
    return out


def _existing(paths: List[str], cwd: Optional[PathLike]) -> List[str]:
    """Absolute versions of ``paths``; raises when one does not exist."""
    base = os.fspath(cwd) if cwd is not None else os.getcwd()
    out = []
    for p in paths:
        full = os.path.join(base, p)
        if not os.path.lexists(full) or not os.path.exists(full):
            raise PathNotFoundError("%s: no such file or directory" % p)
        out.append(os.path.abspath(full))
    return out


def _levels(optimize: Union[int, Sequence[int]]) -> List[int]:
    items = [optimize] if isinstance(optimize, int) else list(optimize)
    if not items:
        raise InvalidArgumentError("optimize: give at least one level (0, 1 or 2)")
    for o in items:
        # mirrors compile()'s "invalid optimize value": a pyc level is 0, 1 or 2
        if isinstance(o, bool) or not isinstance(o, int) or not 0 <= o <= 2:
            raise InvalidArgumentError("optimize must be 0, 1 or 2 (or a list of them), not %r" % (o,))
    return sorted(set(items))


def _workers(workers: Optional[int]) -> List[str]:
    if workers is None:
        return []
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InvalidArgumentError("workers must be a non-negative int (0: automatic), not %r" % (workers,))
    return ["-j", str(workers)]


def _python(python: Optional[PathLike]) -> List[str]:
    if python is None:
        return []
    p = os.fspath(python)
    if not p:
        raise InvalidArgumentError("python: give an interpreter path or name, not an empty string")
    return ["--python=" + p]


def _common(exclude: Optional[Union[str, Iterable[str]]], max_depth: Optional[int]) -> List[str]:
    args: List[str] = []
    if exclude is not None:
        for rx in [exclude] if isinstance(exclude, str) else list(exclude):
            args.append("--exclude=" + rx)
    if max_depth is not None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0:
            raise InvalidArgumentError("max_depth must be a non-negative int, not %r" % (max_depth,))
        args += ["-r", str(max_depth)]
    return args


def _entry(entry: Optional[PathLike], module: Optional[str], paths: List[str], cwd: Optional[PathLike]) -> List[str]:
    if entry is not None and module is not None:
        raise InvalidArgumentError("give entry or module, not both")
    if (entry is not None or module is not None) and paths:
        raise InvalidArgumentError("entry/module select the sources themselves: give no paths with them")
    if entry is not None:
        return ["--entry"] + _existing([os.fspath(entry)], cwd)
    if module is not None:
        if not module or not all(part.isidentifier() for part in module.split(".")):
            raise InvalidArgumentError("module: %r is not a dotted module name" % (module,))
        return ["-m", module]
    return []


# -- parsing -----------------------------------------------------------------


def _compile_result(doc: Dict[str, Any]) -> CompileResult:
    if "interpreters" in doc:
        parts = tuple(_compile_result(d) for d in doc["interpreters"])
        first = parts[0]
        return CompileResult(
            python=first.python,
            version=first.version,
            cache_tag=first.cache_tag,
            levels=first.levels,
            invalidation_mode=first.invalidation_mode,
            compiled=[c for p in parts for c in p.compiled],
            fresh=sum(p.fresh for p in parts),
            failed=sum(p.failed for p in parts),
            failures=[f for p in parts for f in p.failures],
            elapsed_s=max(p.elapsed_s for p in parts),
            parts=parts,
        )
    return CompileResult(
        python=doc["python"],
        version=doc["version"],
        cache_tag=doc.get("cache_tag"),
        levels=list(doc["levels"]),
        invalidation_mode=doc["invalidation_mode"],
        compiled=[CompiledFile(c["source"], c["pyc"], c["optimize"], c["reason"]) for c in doc["compiled"]],
        fresh=doc["fresh"],
        failed=doc["failed"],
        failures=list(doc["failures"]),
        elapsed_s=doc["elapsed_s"],
    )


def _status_result(doc: Dict[str, Any]) -> StatusResult:
    if "interpreters" in doc:
        parts = tuple(_status_result(d) for d in doc["interpreters"])
        first = parts[0]
        return StatusResult(
            python=first.python,
            version=first.version,
            cache_tag=first.cache_tag,
            roots=[r for p in parts for r in p.roots],
            sources=sum(p.sources for p in parts),
            check_hash_based_pycs=first.check_hash_based_pycs,
            levels=[lv for p in parts for lv in p.levels],
            problems=[x for p in parts for x in p.problems],
            parts=parts,
        )
    return StatusResult(
        python=doc["python"],
        version=doc["version"],
        cache_tag=doc.get("cache_tag"),
        roots=list(doc["roots"]),
        sources=doc["sources"],
        check_hash_based_pycs=doc["check_hash_based_pycs"],
        levels=[
            LevelStatus(
                optimize=lv["optimize"],
                fresh=lv["fresh"],
                fresh_bytes=lv["fresh_bytes"],
                stale=lv["stale"],
                stale_bytes=lv["stale_bytes"],
                stale_reasons=dict(lv["stale_reasons"]),
                missing=lv["missing"],
                orphaned=lv["orphaned"],
                orphaned_bytes=lv["orphaned_bytes"],
            )
            for lv in doc["levels"]
        ],
        problems=list(doc["problems"]),
    )


def _clean_result(doc: Dict[str, Any]) -> CleanResult:
    return CleanResult(
        dry_run=doc["dry_run"],
        removed=list(doc["removed"]),
        removed_bytes=doc["removed_bytes"],
        removed_dirs=list(doc["removed_dirs"]),
        kept_orphans=doc["kept_orphans"],
        errors=list(doc["errors"]),
    )


# -- module-level functions ------------------------------------------------


def compile(  # noqa: A001 - the CLI's verb
    paths: Optional[Paths] = None,
    *,
    python: Optional[PathLike] = None,
    optimize: Union[int, Sequence[int]] = 0,
    workers: Optional[int] = None,
    force: bool = False,
    invalidation_mode: Optional[str] = None,
    legacy: bool = False,
    remove_source: bool = False,
    exclude: Optional[Union[str, Iterable[str]]] = None,
    max_depth: Optional[int] = None,
    entry: Optional[PathLike] = None,
    module: Optional[str] = None,
    cwd: Optional[PathLike] = None,
) -> CompileResult:
    """Compiles ``paths`` (trees or ``.py`` files; default: ``cwd``), or with
    ``entry=SCRIPT`` / ``module=NAME`` exactly the import closure
    ``kolosal-python`` would make fresh. ``python`` defaults to the
    interpreter ``kolosal-python`` would run from ``cwd``.

    Raises :class:`PathNotFoundError` for a missing path and
    :class:`InvalidArgumentError` for a bad option, both before anything
    runs; :class:`KolosalError` with the tool's message when it fails (with
    ``.result`` set when some files failed and the others were written).
    """
    given = _as_paths(paths, "paths")
    levels = _levels(optimize)
    if remove_source and not legacy:
        raise InvalidArgumentError(
            "remove_source needs legacy=True: without the legacy x.pyc beside x.py the module would be gone"
        )
    if legacy and len(levels) > 1:
        raise InvalidArgumentError("legacy writes one x.pyc per source: give one optimize level")
    if invalidation_mode is not None and invalidation_mode not in _INVALIDATION_MODES:
        raise InvalidArgumentError(
            "invalidation_mode must be one of %s, not %r" % (", ".join(_INVALIDATION_MODES), invalidation_mode)
        )
    if cwd is not None and not os.path.isdir(os.fspath(cwd)):
        raise PathNotFoundError("cwd %s: no such directory" % os.fspath(cwd))
    args = ["compile", "-q"] + _python(python) + _workers(workers) + _common(exclude, max_depth)
    for o in levels:
        args += ["-o", str(o)]
    if force:
        args.append("--force")
    if invalidation_mode is not None:
        args += ["--invalidation-mode", invalidation_mode]
    if legacy:
        args.append("--legacy")
    if remove_source:
        args.append("--remove-source")
    args += _entry(entry, module, given, cwd)
    if entry is None and module is None:
        args += ["--"] + _existing(given or ["."], cwd)
    doc = _run(args, cwd)
    result = _compile_result(doc)
    return _fail_if_errors(doc, result, result.failures, "kolosal compile")


def status(
    paths: Optional[Paths] = None,
    *,
    python: Optional[PathLike] = None,
    optimize: Union[int, Sequence[int]] = 0,
    check_hash_based_pycs: Optional[str] = None,
    exclude: Optional[Union[str, Iterable[str]]] = None,
    max_depth: Optional[int] = None,
    entry: Optional[PathLike] = None,
    module: Optional[str] = None,
    cwd: Optional[PathLike] = None,
) -> StatusResult:
    """How many pycs under ``paths`` (default: ``cwd``), or of an entry's
    closure, are fresh, stale (by reason), missing or orphaned, per level,
    as the target interpreter's importlib would judge them. Writes
    nothing."""
    given = _as_paths(paths, "paths")
    levels = _levels(optimize)
    if check_hash_based_pycs is not None and check_hash_based_pycs not in _HASH_CHECK_MODES:
        raise InvalidArgumentError(
            "check_hash_based_pycs must be one of %s, not %r" % (", ".join(_HASH_CHECK_MODES), check_hash_based_pycs)
        )
    if cwd is not None and not os.path.isdir(os.fspath(cwd)):
        raise PathNotFoundError("cwd %s: no such directory" % os.fspath(cwd))
    args = ["status"] + _python(python) + _common(exclude, max_depth)
    for o in levels:
        args += ["-o", str(o)]
    if check_hash_based_pycs is not None:
        args += ["--check-hash-based-pycs", check_hash_based_pycs]
    args += _entry(entry, module, given, cwd)
    if entry is None and module is None:
        args += ["--"] + _existing(given or ["."], cwd)
    doc = _run(args, cwd)
    result = _status_result(doc)
    return _fail_if_errors(doc, result, result.problems, "kolosal status")


def clean(
    paths: Optional[Paths] = None,
    *,
    legacy: bool = False,
    orphans: bool = False,
    dry_run: bool = False,
    cwd: Optional[PathLike] = None,
) -> CleanResult:
    """Removes the pycs (every interpreter's) under ``paths`` (default:
    ``cwd``) whose source exists; ``orphans`` also those whose source is
    gone, ``legacy`` also ``x.pyc`` beside ``x.py``. No interpreter runs."""
    given = _as_paths(paths, "paths")
    if cwd is not None and not os.path.isdir(os.fspath(cwd)):
        raise PathNotFoundError("cwd %s: no such directory" % os.fspath(cwd))
    args = ["clean"]
    if legacy:
        args.append("--legacy")
    if orphans:
        args.append("--orphans")
    if dry_run:
        args.append("--dry-run")
    args += ["--"] + _existing(given or ["."], cwd)
    doc = _run(args, cwd)
    result = _clean_result(doc)
    return _fail_if_errors(doc, result, result.errors, "kolosal clean")


def info(
    script: Optional[PathLike] = None,
    *,
    python: Optional[PathLike] = None,
    cwd: Optional[PathLike] = None,
) -> InterpreterInfo:
    """Which interpreter ``kolosal-python [script]`` would run from ``cwd``,
    which rule chose it, and its version."""
    args = ["info"] + _python(python)
    if script is not None:
        args += ["--"] + _existing([os.fspath(script)], cwd)
    doc = _run(args, cwd)
    i = doc["interpreter"]
    facts = doc.get("facts") or {}
    result = InterpreterInfo(
        path=i["path"],
        resolved=i["resolved"],
        rule=i["rule"],
        detail=i["detail"],
        version=facts.get("version"),
        cache_tag=facts.get("cache_tag"),
        raw={k: v for k, v in doc.items() if not k.startswith("_")},
    )
    if doc["_returncode"] != 0:
        raise KolosalError(
            "kolosal info: cannot probe %s: %s" % (i["path"], doc.get("probe_error")),
            returncode=doc["_returncode"],
            command=doc["_command"],
            stderr=doc["_stderr"],
            result=result,
        )
    return result


# -- the guide's class -----------------------------------------------------


class BytecodeCompiler:
    """Compiles a project's bytecode with kolosal.

    ``root``: the project directory (relative paths are taken from it, and
    the interpreter is chosen from it as ``kolosal-python`` would: a
    ``.venv`` above it, ``VIRTUAL_ENV``, ``PATH``). ``python``: an
    interpreter path or name instead. ``optimize``: 0, 1, 2 or a list of
    them. ``workers``: compile processes (``None``: one per core, capped by
    the work).
    """

    def __init__(
        self,
        root: PathLike = ".",
        python: Optional[PathLike] = None,
        optimize: Union[int, Sequence[int]] = 0,
        workers: Optional[int] = None,
    ) -> None:
        root_s = os.fspath(root)
        if not os.path.isdir(root_s):
            raise PathNotFoundError("root %s: no such directory" % root_s)
        self.root = os.path.abspath(root_s)
        self.python = None if python is None else os.fspath(python)
        _python(self.python)
        self.optimize = _levels(optimize)
        _workers(workers)
        self.workers = workers
        self._last: Optional[CompileResult] = None

    def __repr__(self) -> str:
        return "BytecodeCompiler(root=%r, python=%r, optimize=%r, workers=%r)" % (
            self.root,
            self.python,
            self.optimize,
            self.workers,
        )

    def compile_project(self, *, force: bool = False) -> CompileResult:
        """Compiles every ``.py`` under ``root`` that has no fresh pyc."""
        return self.compile_directory(self.root, force=force)

    def compile_directory(self, path: PathLike, *, force: bool = False) -> CompileResult:
        """Compiles every ``.py`` under ``path`` (relative to ``root``)."""
        r = compile(
            [path],
            python=self.python,
            optimize=self.optimize,
            workers=self.workers,
            force=force,
            cwd=self.root,
        )
        self._last = r
        return r

    def compile_entry(self, script: PathLike) -> CompileResult:
        """Compiles exactly the closure ``kolosal-python script`` would use:
        the modules it imports, the standard library and site-packages ones
        included."""
        r = compile(entry=script, python=self.python, optimize=self.optimize, workers=self.workers, cwd=self.root)
        self._last = r
        return r

    def clean_bytecode(self, *, orphans: bool = False, dry_run: bool = False) -> CleanResult:
        """Removes the pycs under ``root`` (all interpreters' and levels')."""
        return clean([self.root], orphans=orphans, dry_run=dry_run, cwd=self.root)

    def needs_compilation(self, path: Optional[PathLike] = None) -> bool:
        """True when some ``.py`` under ``path`` (a file or tree; default
        ``root``) has no pyc the interpreter would accept at one of the
        levels."""
        target = self.root if path is None else path
        return status(
            [target], python=self.python, optimize=self.optimize, cwd=self.root
        ).needs_compilation

    def get_compilation_stats(self) -> CompilationStats:
        """Fresh / stale / missing / orphaned pycs under ``root``, summed over
        the levels, plus the result of this compiler's last compile."""
        s = status([self.root], python=self.python, optimize=self.optimize, cwd=self.root)
        return CompilationStats(
            root=self.root,
            python=s.python,
            version=s.version,
            sources=s.sources,
            fresh=sum(lv.fresh for lv in s.levels),
            stale=sum(lv.stale for lv in s.levels),
            missing=sum(lv.missing for lv in s.levels),
            orphaned=sum(lv.orphaned for lv in s.levels),
            fresh_bytes=sum(lv.fresh_bytes for lv in s.levels),
            levels=s.levels,
            last_compile=self._last,
        )
