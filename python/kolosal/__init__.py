"""kolosal: start Python programs fast.

The wheel carries two binaries, ``kolosal-python`` (a drop-in ``python``
that precompiles the program's import closure, then execs the real
interpreter) and ``kolosal`` (the management CLI). This package runs the
``kolosal`` binary and returns typed results::

    import kolosal

    kolosal.BytecodeCompiler("path/to/project").compile_project()
    kolosal.compile(["src"], optimize=[0, 2])
    kolosal.status(entry="app/main.py").needs_compilation

``python -m kolosal ARGS`` runs the CLI. See docs/python-api.md.
"""

# The API is loaded on first use (PEP 562), so `import kolosal` costs
# next to nothing; `from kolosal import X` works as usual.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._api import (
        SCHEMA,
        BinaryNotFoundError,
        BytecodeCompiler,
        CleanResult,
        CompilationStats,
        CompiledFile,
        CompileResult,
        InterpreterInfo,
        InvalidArgumentError,
        KolosalError,
        LevelStatus,
        PathNotFoundError,
        StatusResult,
        clean,
        compile,
        find_bin,
        info,
        status,
    )

__version__ = "0.1.0"

__all__ = [
    "SCHEMA",
    "BinaryNotFoundError",
    "BytecodeCompiler",
    "CleanResult",
    "CompilationStats",
    "CompiledFile",
    "CompileResult",
    "InterpreterInfo",
    "InvalidArgumentError",
    "KolosalError",
    "LevelStatus",
    "PathNotFoundError",
    "StatusResult",
    "clean",
    "compile",
    "find_bin",
    "info",
    "status",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import _api

        value = getattr(_api, name)
        globals()[name] = value
        return value
    raise AttributeError("module 'kolosal' has no attribute %r" % name)


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(__all__))
