# kolosal interpreter probe (CPython 3.6+). The prologue in probe.rs runs
# this text with exec() after checking the version; sys.argv is
# ['-c', ANSWER_FD, LAUNCH_NO_SITE, <this text>].
#
# It runs under -S added to the launch's own flags, so site.main() has not
# run and no user code has either: no .pth import line, no sitecustomize, no
# usercustomize. It then reproduces what site.main() does to sys.path with
# site's own functions, with everything that would run user code disabled,
# and writes one JSON object to ANSWER_FD (never to stdout, which is not
# ours to use). Before it imports anything it keeps only the interpreter's
# own stdlib entries on sys.path, so nothing in the working directory or on
# PYTHONPATH can shadow json, sysconfig or importlib.
#
# Must stay compatible with Python 3.6: no walrus, no f-string "=", no
# newer stdlib API without getattr.
import sys


def _import_sysconfig():
    # sysconfig (3.12+) imports threading for one RLock, which the probe
    # never contends: a stand-in with _thread's RLock spares it threading,
    # functools and collections (~5 ms of the probe's ~16 on 3.12). Any
    # failure with the stand-in imports it the ordinary way.
    stub = None
    if "threading" not in sys.modules and "sysconfig" not in sys.modules:
        import _thread
        stub = type(sys)("threading")
        stub.RLock = _thread.RLock
        sys.modules["threading"] = stub
    try:
        import sysconfig
    except Exception:
        sys.modules.pop("sysconfig", None)
        if stub is not None and sys.modules.get("threading") is stub:
            del sys.modules["threading"]
        stub = None
        import sysconfig
    if stub is not None and sys.modules.get("threading") is stub:
        del sys.modules["threading"]
    return sysconfig


def _trusted_path(launch_path):
    # The entry the interpreter loaded its own `encodings` from (init did
    # that before any user code could run), plus lib-dynload under the
    # base exec prefix: the stdlib, nothing a user put there.
    enc = sys.modules.get("encodings")
    f = getattr(enc, "__file__", None) or ""
    stdlib = f.rsplit("/", 2)[0] if f.count("/") >= 2 else getattr(sys, "_stdlib_dir", None)
    bases = tuple(p.rstrip("/") + "/" for p in (sys.base_prefix, sys.base_exec_prefix))
    out = [stdlib] if stdlib else []
    for e in launch_path:
        if e.endswith("/lib-dynload") and (e.startswith(bases) or (stdlib and e.startswith(stdlib + "/"))):
            if e not in out:
                out.append(e)
    if not out:
        out = [e for e in launch_path if e.startswith(bases)]
    return out


def _site_main(site, machinery, launch_path, trusted):
    # mirrors site.main() (3.7-3.15) by running it, minus the user code it
    # would run: .pth `import` lines (site's exec() is shadowed by a module
    # global), 3.15's .start entry points, sitecustomize and usercustomize.
    # Any import it still makes is served from the trusted stdlib only.
    class _Guard(object):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if path is not None:
                return None  # a submodule: its parent's __path__ decides
            spec = machinery.PathFinder.find_spec(name, trusted)
            if spec is None:
                raise ImportError("kolosal probe: no stdlib module " + name, name=name)
            return spec

    def _skip(*args, **kwargs):
        return None

    missing = object()
    saved = {}
    for name in ("exec", "execsitecustomize", "execusercustomize"):
        saved[name] = site.__dict__.get(name, missing)
        site.__dict__[name] = _skip
    state = getattr(site, "StartupState", None)
    old_entry = getattr(state, "_execute_start_entrypoints", None)
    if old_entry is not None:
        state._execute_start_entrypoints = _skip
    try:
        where = sys.meta_path.index(machinery.PathFinder)
    except ValueError:
        where = len(sys.meta_path)
    sys.meta_path.insert(where, _Guard)
    before = set(sys.modules)
    sys.path[:] = launch_path
    try:
        site.main()
        result = list(sys.path)
    finally:
        sys.path[:] = trusted
        sys.meta_path.remove(_Guard)
        if old_entry is not None:
            state._execute_start_entrypoints = old_entry
        for name, value in saved.items():
            if value is missing:
                del site.__dict__[name]
            else:
                site.__dict__[name] = value
    return result, set(sys.modules) - before


def _frozen_in_use(machinery):
    # Names the FrozenImporter would actually serve in this process
    # (3.11+: honours -X frozen_modules).
    import _imp
    names = getattr(_imp, "_frozen_module_names", None)
    if names is not None:
        candidates = list(names())
    else:
        candidates = ["_frozen_importlib", "_frozen_importlib_external", "zipimport",
                      "__hello__", "__phello__", "__phello__.spam"]
    out = []
    for n in candidates:
        try:
            if machinery.FrozenImporter.find_spec(n) is not None:
                out.append(n)
        except Exception:
            pass
    return sorted(set(out))


_isascii = getattr(str, "isascii", None)  # 3.7+
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\f": "\\f", "\n": "\\n",
            "\r": "\\r", "\t": "\\t"}


def _json_str(s):
    # mirrors json.encoder.py_encode_basestring_ascii (json.dumps's
    # default ensure_ascii=True): the same escapes, lowercase hex, astral
    # characters as surrogate pairs.
    if _isascii is not None and _isascii(s) and s.isprintable() and '"' not in s and "\\" not in s:
        return '"' + s + '"'
    out = []
    for c in s:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif " " <= c <= "~":
            out.append(c)
        else:
            n = ord(c)
            if n < 0x10000:
                out.append("\\u%04x" % n)
            else:
                n -= 0x10000
                out.append("\\u%04x\\u%04x" % (0xD800 | (n >> 10), 0xDC00 | (n & 0x3FF)))
    return '"' + "".join(out) + '"'


def _json_text(value):
    # mirrors json.dumps(value) with its defaults (", " and ": "
    # separators) for what the probe emits: dicts with str keys, lists,
    # str, int, bool and None. Anything else is a bug here, not data.
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join([_json_text(v) for v in value]) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join([_json_str(k) + ": " + _json_text(v) for k, v in value.items()]) + "}"
    raise TypeError("kolosal probe: cannot encode %r" % (value,))


def _probe(fd, launch_no_site):
    import posix
    init_modules = set(sys.modules)
    flags = sys.flags
    safe_path = bool(getattr(flags, "safe_path", False))
    launch_path = list(sys.path)
    # sys.path[0] ('' for -c) is inserted after site ran, and belongs to the
    # launch form: the launcher computes it itself. -P and -I (also on
    # 3.7-3.10, which have no sys.flags.safe_path) insert none.
    if not (safe_path or flags.isolated) and launch_path:
        launch_path = launch_path[1:]
    trusted = _trusted_path(launch_path)
    sys.path[:] = trusted
    import site  # under -S importing site does not run site.main()
    site_modules = set(sys.modules)
    # Neither json (it imports re and enum: a third of the probe's imports)
    # nor importlib.util (for MAGIC_NUMBER, which it takes from here).
    import _imp, importlib.machinery as machinery
    from importlib._bootstrap_external import MAGIC_NUMBER
    if launch_no_site:
        sys_path = launch_path
        startup = init_modules
    else:
        sys_path, added = _site_main(site, machinery, launch_path, trusted)
        startup = init_modules | site_modules | added
    sys.path[:] = trusted
    sysconfig = _import_sysconfig()  # after site.venv(): it reads sys.prefix on import
    stdlib = []
    for key in ("stdlib", "platstdlib"):
        p = sysconfig.get_path(key)
        if p and p not in stdlib:
            stdlib.append(p)
    try:
        user_site = site.getusersitepackages()
    except Exception:
        user_site = None
    out = {
        "version": list(sys.version_info[:3]),
        "releaselevel": sys.version_info[3],
        "implementation": sys.implementation.name,
        "cache_tag": sys.implementation.cache_tag,
        "magic": MAGIC_NUMBER.hex(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        "platform": sys.platform,
        "sys_path": sys_path,
        "stdlib_dirs": stdlib,
        "site_packages": list(site.getsitepackages()),
        "user_site": user_site,
        "user_site_enabled": bool(site.ENABLE_USER_SITE),
        "builtin_modules": sorted(sys.builtin_module_names),
        "frozen_modules": _frozen_in_use(machinery),
        "source_suffixes": list(machinery.SOURCE_SUFFIXES),
        "bytecode_suffixes": list(machinery.BYTECODE_SUFFIXES),
        "extension_suffixes": list(machinery.EXTENSION_SUFFIXES),
        "startup_modules": sorted(startup),
        "meta_path": [type(f).__module__ + "." + getattr(f, "__name__", type(f).__name__) for f in sys.meta_path],
        "path_hooks": [getattr(h, "__module__", "?") + "." + getattr(h, "__qualname__", getattr(h, "__name__", repr(h))) for h in sys.path_hooks],
        "flags": {
            "optimize": flags.optimize,
            "dont_write_bytecode": bool(flags.dont_write_bytecode),
            "isolated": bool(flags.isolated),
            "ignore_environment": bool(flags.ignore_environment),
            "no_site": launch_no_site,
            "no_user_site": bool(flags.no_user_site),
            "safe_path": safe_path,
        },
        "pycache_prefix": getattr(sys, "pycache_prefix", None),
        "check_hash_based_pycs": getattr(_imp, "check_hash_based_pycs", "default"),
    }
    data = _json_text(out).encode("ascii")
    while data:
        data = data[posix.write(fd, data):]
    posix.close(fd)


_probe(int(sys.argv[1]), sys.argv[2] == "1")
