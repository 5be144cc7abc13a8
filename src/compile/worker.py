# kolosal compile worker. Runs inside the TARGET interpreter, started as
#   python -I -S [extra flags] -c <this script> [--write-warned] [--test-hooks]
# and compiles one source file per request until stdin reaches EOF.
# Must stay compatible with Python 3.6: no walrus, no f-strings, no newer APIs
# without a fallback.
#
# Protocol (all integers little-endian; see protocol.rs, which is the
# authority):
#   frame    = u32 payload length, payload
#   hello    = worker -> pool, once at start: b"KOLOSAL-WORKER 1 " + magic hex
#   request  = u32 id, u32 optimize, u8 mode, u8 attempt, u32 len(source),
#              source bytes, cfile bytes (the rest)
#   response = u32 id, u8 status, body
#     status 0 (written):      empty body
#     status 1 (syntax error): u32 line (0xFFFFFFFF = unknown), u32 len(path),
#                              path bytes, UTF-8 message (the rest)
#     status 2 (failed):       UTF-8 message
#     status 3 (left to the interpreter: compiling warned, no pyc written):
#                              UTF-8 warnings as printed
#     status 4 (written, compiling warned; only with --write-warned):
#                              UTF-8 warnings as printed
#     status 5 (compile() raised something other than SyntaxError):
#                              UTF-8 message
#     status 6 (written, no warnings; only with --return-body): 32-byte
#                              SHA-256 of the source bytes compiled, then
#                              the marshalled code body (the pyc minus its
#                              header), for kolosal's code cache
#   The hello goes on with b" " + major.minor + b" " + hex(sys.version):
#   the exact build, which the code cache keys on.
# Paths travel as raw bytes and are decoded with os.fsdecode, so names that
# are not valid in the filesystem encoding survive the round trip.
import os
import sys
import struct
import marshal
import importlib._bootstrap_external as _bx
_bootstrap = sys.modules["_frozen_importlib"]

try:
    import _imp
except ImportError:  # pragma: no cover - every CPython has _imp
    _imp = None

TIMESTAMP, CHECKED_HASH, UNCHECKED_HASH = 0, 1, 2

# mirrors importlib.util.source_hash's key: _RAW_MAGIC_NUMBER up to 3.13,
# _imp.pyc_magic_number_token from 3.14; both are the magic number's four
# bytes read as a little-endian integer.
RAW_MAGIC = getattr(_bx, "_RAW_MAGIC_NUMBER", None)
if RAW_MAGIC is None:
    RAW_MAGIC = int.from_bytes(_bx.MAGIC_NUMBER, "little")
NO_LINE = 0xFFFFFFFF

# The protocol owns private copies of fds 0 and 1; the public ones point at
# /dev/null and stderr, so nothing printed by compile() or a warning can
# corrupt the frames.
_proto_in = os.fdopen(os.dup(0), "rb")
_proto_out = os.fdopen(os.dup(1), "wb")
_devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(_devnull, 0)
os.close(_devnull)
os.dup2(2, 1)

# Compile-time warnings (SyntaxWarning, DeprecationWarning for invalid
# escapes, ...) pass through the warning filters the pool gave this worker
# on its command line: the launched program's own (-W, PYTHONWARNINGS, dev
# mode, -b). Each compile records the ones those filters let through. A
# module that warns gets no pyc (status 3) so that the program's interpreter
# compiles it and shows or raises exactly what python would; with
# --write-warned (kolosal compile, like compileall) the pyc is written and
# the warnings are reported (status 4).
import warnings

TEST_HOOKS = "--test-hooks" in sys.argv[1:]
WRITE_WARNED = "--write-warned" in sys.argv[1:]
RETURN_BODY = "--return-body" in sys.argv[1:]

if RETURN_BODY:
    # The builtin module, not hashlib: importing hashlib (OpenSSL) costs
    # milliseconds of start-up.
    try:
        from _sha256 import sha256 as _sha256
    except ImportError:
        try:
            from _sha2 import sha256 as _sha256
        except ImportError:
            from hashlib import sha256 as _sha256

# The worker makes no reference cycles worth collecting (code objects and
# their constants are freed by reference counting), so the cyclic GC only
# costs time during compile().
import gc
gc.disable()

from stat import S_ISLNK, S_ISREG

# Cache directories this worker created or found.
_made_dirs = set()


def read_exact(n):
    data = _proto_in.read(n)
    if data is None or len(data) != n:
        raise EOFError
    return data


def send(payload):
    _proto_out.write(struct.pack("<I", len(payload)) + payload)
    _proto_out.flush()


def test_hook(source, attempt):
    # Honoured only when the pool enabled test hooks (PoolConfig::test_hooks).
    name = os.path.basename(source)
    if "kolosal_hook_crash_first" in name and attempt == 0:
        os.kill(os.getpid(), 9)
    if "kolosal_hook_crash_always" in name:
        os.kill(os.getpid(), 9)
    if "kolosal_hook_exit_always" in name:
        _proto_out.flush()
        os._exit(3)
    if "kolosal_hook_hang" in name:
        import time
        while True:
            time.sleep(60)


class Rejected(Exception):
    """compile() itself refused the source with something other than a
    SyntaxError; args[0] is the original exception."""


class Warned(Exception):
    """Compiling showed warnings (args[0]: their text), or raised one turned
    into an error (args[0]: empty); no pyc was written."""


# Appended to the message of a Rejected failure, for the user's eyes.
REJECTED_SUFFIX = " (raised by compile())"


def format_warnings(log):
    # mirrors warnings._showwarnmsg_impl: the text showwarning would print.
    return "".join(warnings.formatwarning(m.message, m.category, m.filename,
                                          m.lineno, m.line) for m in log)


def compile_recording(source_bytes, source, optimize):
    """compile() under this worker's filters; returns (code, warnings text).

    The once-registry is emptied first: the interpreter compiling this
    module alone would show a "once" warning even if another module showed
    the same text in this worker before. (Entering catch_warnings also
    bumps the filters' version, which makes CPython 3.7-3.15 forget the
    registry; the explicit clear does not depend on that.)
    """
    once = getattr(warnings, "onceregistry", None)
    if once is not None:
        once.clear()
    with warnings.catch_warnings(record=True) as log:
        # mirrors SourceLoader.source_to_code: compile() is called through
        # importlib._bootstrap._call_with_frames_removed, so a warning the
        # compiler raises without a file name (3.12's "Bitwise inversion
        # '~' on bool") is attributed to importlib._bootstrap, as in the
        # program, not to this worker's __main__ (which the default filters
        # would show).
        code = _bootstrap._call_with_frames_removed(
            compile, source_bytes, source, "exec", dont_inherit=True,
            optimize=optimize)
    return code, format_warnings(log)


def read_source(source):
    """(os.stat_result, bytes) of the source: stat'ed before it is read,
    opened non-blocking so a FIFO swapped in never hangs the worker."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | \
        getattr(os, "O_CLOEXEC", 0)
    fd = os.open(source, flags)
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode):
            raise OSError("not a regular file")
        f = os.fdopen(fd, "rb")
        fd = -1
        with f:
            return st, f.read()
    finally:
        if fd >= 0:
            os.close(fd)


def compile_one(source, cfile, optimize, mode):
    """Writes one pyc. Returns (text of the warnings compiling showed, ""
    for none (only with --write-warned); the code-cache payload, b"" unless
    --return-body and no warnings), or raises.

    Mirrors py_compile.compile(source, cfile=cfile, doraise=True,
    optimize=optimize, invalidation_mode=mode) with one change taken from
    importlib._bootstrap_external.SourceLoader.get_code: the source is
    stat'ed BEFORE it is read, so a file edited meanwhile leaves a pyc
    whose header is already stale instead of one that looks fresh.
    """
    # mirrors py_compile.compile: refuse symlinks and non-regular targets
    # (islink, then exists-and-not-isfile: one lstat answers both, since
    # for a non-link stat and lstat agree).
    try:
        cst = os.lstat(cfile)
    except OSError:
        cst = None
    if cst is not None and S_ISLNK(cst.st_mode):
        raise FileExistsError(
            "{} is a symlink and will be changed into a regular file if "
            "import writes a byte-compiled file to it".format(cfile))
    elif cst is not None and not S_ISREG(cst.st_mode):
        raise FileExistsError(
            "{} is a non-regular file and will be changed into a regular "
            "one if import writes a byte-compiled file to it".format(cfile))
    # mirrors SourceFileLoader.path_stats (os.stat) and get_data (raw bytes).
    st, source_bytes = read_source(source)
    # mirrors SourceLoader.source_to_code: compile() on the raw bytes, so the
    # coding cookie is honoured and co_filename is the path as given.
    try:
        code, warned = compile_recording(source_bytes, source, optimize)
    except SyntaxError:
        raise
    except Warning:
        # A warning turned into an error that compile() did not turn into
        # a SyntaxError: the interpreter raises it again on import.
        raise Warned("")
    except Exception as err:
        # NUL bytes (ValueError before 3.12), too deep nesting (MemoryError,
        # RecursionError): the source's own problem, which the interpreter
        # reports again when the program imports it.
        raise Rejected(err)
    if warned and not WRITE_WARNED:
        raise Warned(warned)
    # mirrors py_compile.compile: create the cache directory (once per
    # directory per worker; a pyc already there proves it exists).
    dirname = os.path.dirname(cfile)
    if dirname and cst is None and dirname not in _made_dirs:
        try:
            os.makedirs(dirname)
        except FileExistsError:
            pass
        _made_dirs.add(dirname)
    if mode == TIMESTAMP:
        if hasattr(_bx, "_code_to_timestamp_pyc"):
            data = _bx._code_to_timestamp_pyc(code, st.st_mtime, st.st_size)
        else:  # 3.6
            data = _bx._code_to_bytecode(code, st.st_mtime, st.st_size)
    else:
        if not hasattr(_bx, "_code_to_hash_pyc"):
            raise NotImplementedError(
                "hash-based pycs need Python 3.7 or newer")
        # mirrors importlib.util.source_hash (without importing
        # importlib.util, which costs several ms of start-up).
        source_hash = _imp.source_hash(RAW_MAGIC, source_bytes)
        data = _bx._code_to_hash_pyc(code, source_hash,
                                     mode == CHECKED_HASH)
    # mirrors importlib._bootstrap_external._calc_mode: source mode | 0o200.
    file_mode = st.st_mode | 0o200
    # mirrors py_compile.compile: temp file + os.replace.
    try:
        _bx._write_atomic(cfile, data, file_mode)
    except FileNotFoundError:
        if not dirname:
            raise
        # The directory went away since this worker saw it: as py_compile.
        _made_dirs.discard(dirname)
        os.makedirs(dirname, exist_ok=True)
        _bx._write_atomic(cfile, data, file_mode)
    cached = b""
    if RETURN_BODY and not warned and len(data) < (8 << 20):
        # The body a cache hit will reuse: only from a compile that showed
        # nothing under these filters, keyed by the bytes compiled here.
        header_len = 16 if hasattr(_bx, "_code_to_timestamp_pyc") else 12
        cached = _sha256(source_bytes).digest() + data[header_len:]
    return warned, cached


def one_line(text):
    return " ".join(str(text).split())


def handle(payload):
    job_id, optimize, mode, attempt, slen = struct.unpack_from("<IIBBI",
                                                                payload, 0)
    start = struct.calcsize("<IIBBI")
    source = os.fsdecode(payload[start:start + slen])
    cfile = os.fsdecode(payload[start + slen:])
    head = struct.pack("<IB", job_id, 0)
    if TEST_HOOKS:
        test_hook(source, attempt)
    try:
        warned, cached = compile_one(source, cfile, optimize, mode)
    except SyntaxError as err:
        # Includes IndentationError and TabError; bad coding cookies and
        # undecodable sources raise SyntaxError too.
        path = err.filename if isinstance(err.filename, str) else source
        line = err.lineno if isinstance(err.lineno, int) and \
            0 <= err.lineno < NO_LINE else NO_LINE
        msg = "{}: {}".format(type(err).__name__,
                              one_line(err.msg if err.msg else err))
        bpath = os.fsencode(path)
        body = struct.pack("<II", line, len(bpath)) + bpath + \
            msg.encode("utf-8", "replace")
        return struct.pack("<IB", job_id, 1) + body
    except Rejected as rej:
        err = rej.args[0]
        msg = "{}: {}{}".format(type(err).__name__, one_line(err),
                                REJECTED_SUFFIX)
        return struct.pack("<IB", job_id, 5) + msg.encode("utf-8", "replace")
    except Warned as w:
        return struct.pack("<IB", job_id, 3) + \
            w.args[0].encode("utf-8", "replace")
    except Exception as err:
        msg = "{}: {}".format(type(err).__name__, one_line(err))
        return struct.pack("<IB", job_id, 2) + msg.encode("utf-8", "replace")
    if warned:
        return struct.pack("<IB", job_id, 4) + warned.encode("utf-8", "replace")
    if cached:
        return struct.pack("<IB", job_id, 6) + cached
    return head


def main():
    magic = getattr(_bx, "MAGIC_NUMBER", b"")
    send(b"KOLOSAL-WORKER 1 " + magic.hex().encode("ascii") + b" " +
         "{}.{}".format(*sys.version_info[:2]).encode("ascii") + b" " +
         sys.version.encode("utf-8", "replace").hex().encode("ascii"))
    while True:
        try:
            (length,) = struct.unpack("<I", read_exact(4))
            payload = read_exact(length)
        except EOFError:
            return
        send(handle(payload))


main()
