# kolosal interpreter probe. Runs inside the target interpreter (3.6+) and
# prints one JSON object on stdout. Must stay compatible with Python 3.6:
# no walrus, no f-string "=" specifiers, no newer stdlib APIs without getattr.
import sys
# What start-up imported (site, .pth lines, sitecustomize), before this
# script's own imports add json, sysconfig and friends.
_STARTUP_MODULES = sorted(sys.modules)
import json, importlib.util, importlib.machinery as machinery, sysconfig

def _frozen_in_use():
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

def _site_dirs():
    try:
        import site
    except Exception:
        return [], None, False
    sp = list(getattr(site, "getsitepackages", lambda: [])())
    user = None
    enabled = bool(getattr(site, "ENABLE_USER_SITE", False))
    try:
        user = site.getusersitepackages()
    except Exception:
        user = None
    return sp, user, enabled

def main():
    import _imp
    flags = sys.flags
    safe_path = bool(getattr(flags, "safe_path", False))
    path = list(sys.path)
    # sys.path[0] belongs to the launch form (script dir, cwd, ''); the
    # launcher computes it itself, so drop the one `-c` inserted here.
    if not safe_path and path:
        path = path[1:]
    site_packages, user_site, user_site_enabled = _site_dirs()
    stdlib = []
    for key in ("stdlib", "platstdlib"):
        p = sysconfig.get_path(key)
        if p and p not in stdlib:
            stdlib.append(p)
    out = {
        "version": list(sys.version_info[:3]),
        "releaselevel": sys.version_info[3],
        "implementation": sys.implementation.name,
        "cache_tag": sys.implementation.cache_tag,
        "magic": importlib.util.MAGIC_NUMBER.hex(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        "platform": sys.platform,
        "sys_path": path,
        "stdlib_dirs": stdlib,
        "site_packages": site_packages,
        "user_site": user_site,
        "user_site_enabled": user_site_enabled,
        "builtin_modules": sorted(sys.builtin_module_names),
        "frozen_modules": _frozen_in_use(),
        "source_suffixes": list(machinery.SOURCE_SUFFIXES),
        "bytecode_suffixes": list(machinery.BYTECODE_SUFFIXES),
        "extension_suffixes": list(machinery.EXTENSION_SUFFIXES),
        "startup_modules": _STARTUP_MODULES,
        "meta_path": [type(f).__module__ + "." + getattr(f, "__name__", type(f).__name__) for f in sys.meta_path],
        "path_hooks": [getattr(h, "__module__", "?") + "." + getattr(h, "__qualname__", getattr(h, "__name__", repr(h))) for h in sys.path_hooks],
        "flags": {
            "optimize": flags.optimize,
            "dont_write_bytecode": bool(flags.dont_write_bytecode),
            "isolated": bool(flags.isolated),
            "ignore_environment": bool(flags.ignore_environment),
            "no_site": bool(flags.no_site),
            "no_user_site": bool(flags.no_user_site),
            "safe_path": safe_path,
        },
        "pycache_prefix": getattr(sys, "pycache_prefix", None),
        "check_hash_based_pycs": getattr(_imp, "check_hash_based_pycs", "default"),
    }
    sys.stdout.write(json.dumps(out))

main()
