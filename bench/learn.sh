#!/usr/bin/env bash
# Run-time learning (src/launch/learn.rs): warm starts of programs that
# import modules under computed names, kolosal-python against plain python,
# each after writing its own pycs.
#   django: `manage.py check` of a `django-admin startproject` project
#           (django.contrib.*, middleware, template backends are named in
#           settings strings). python: its own venv, after one run that
#           wrote its pycs (no PYTHONDONTWRITEBYTECODE). kolosal: another
#           venv installed with --no-compile, after launches until learning
#           settled (the manifest says learning is over).
#   pytest: `-m pytest --collect-only -q` on a generated suite of 60 test
#           modules with an entry-point plugin (pytest-timeout), same
#           set-up (python and kolosal each with their own venv and suite).
#   black:  `-m black --version`, black from PyPI (mypyc-compiled: its
#           modules load from extension modules; the closure follows their
#           source twins), installed with --no-compile into the same venvs.
# Target: ratio kolosal / python <= 1.02.
# Usage: bench/learn.sh [RUNS [SCENARIO...]]   (SCENARIO: django, pytest,
#        black; default all three; figures land in bench/out/learn/*.md)
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
OUT="${KOLOSAL_BENCH_OUT:-$BENCH_DIR/out}/learn"
PY="${KOLOSAL_BENCH_PYTHON:-/root/.pyenv/versions/3.13.0/bin/python3}"
RUNS="${1:-30}"
SCENARIOS="${*:2}"; SCENARIOS="${SCENARIOS:-django pytest black}"
mkdir -p "$OUT"
command -v hyperfine >/dev/null || { echo "bench: hyperfine is missing (apt-get install -y hyperfine)" >&2; exit 1; }
(cd "$REPO" && cargo build --release -q -j1)
KPY="$REPO/target/release/kolosal-python"
E="env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$HOME LANG=C.UTF-8"
NET=(env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$HOME" LANG=C.UTF-8)
# The certificate and proxy variables of tests/common/mod.rs NETWORK_VARS.
for v in SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE CURL_CA_BUNDLE PIP_CERT \
  PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_DEFAULT_TIMEOUT \
  PIP_DISABLE_PIP_VERSION_CHECK UV_INDEX_URL UV_NATIVE_TLS HTTP_PROXY HTTPS_PROXY \
  NO_PROXY http_proxy https_proxy no_proxy; do
  if [ -n "${!v+x}" ]; then NET+=("$v=${!v}"); fi
done

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC'), load$(uptime | sed 's/.*load average//'); python $($E "$PY" -c 'import sys;print(sys.version.split()[0])')"

# A private copy of the interpreter (without its test suite): on a shared
# machine other users' runs write pycs into the shared standard library's
# __pycache__, which changes a stamped directory and sends kolosal's next
# launch down the cold path in the middle of a measurement.
BASE="$("$PY" -c 'import sys; print(sys.base_prefix)')"
VER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ ! -x "$OUT/interp/bin/python3" ]; then
  rm -rf "$OUT/interp"; mkdir -p "$OUT/interp"
  cp -a "$BASE/bin" "$BASE/lib" "$BASE/include" "$OUT/interp/" 2>/dev/null || cp -a "$BASE/bin" "$BASE/lib" "$OUT/interp/"
  rm -rf "$OUT/interp/lib/python$VER/test" "$OUT/interp/lib/python$VER/site-packages"/*
fi
PY="$OUT/interp/bin/python3"

# One project per side: ./python and ./kolosal, each with its own venv.
setup() { # SIDE
  local d="$OUT/$1"
  if [ -f "$d/.ready" ] && [ "$(readlink -f "$d/venv/bin/python")" = "$(readlink -f "$PY")" ]; then return; fi
  rm -rf "$d"; mkdir -p "$d/tests"
  "$PY" -m venv "$d/venv"
  "${NET[@]}" "$d/venv/bin/python" -m pip install -q --no-compile --disable-pip-version-check django pytest pytest-timeout
  $E PYTHONDONTWRITEBYTECODE=1 "$d/venv/bin/python" -m django startproject mysite "$d"
  echo "import pytest" > "$d/tests/conftest.py"
  for i in $(seq 1 60); do
    printf 'import pytest\n\ndef twice(x):\n    return 2 * x\n\n@pytest.mark.timeout(30)\ndef test_%s():\n    assert twice(%s) == 2 * %s\n' "$i" "$i" "$i" > "$d/tests/test_m$i.py"
  done
  touch "$d/.ready"
}
add_black() { # SIDE: black joined the scenarios after the venvs of the first two
  local d="$OUT/$1"
  if [ ! -e "$d/.black" ]; then
    "${NET[@]}" "$d/venv/bin/python" -m pip install -q --no-compile --disable-pip-version-check black
    touch "$d/.black"
  fi
}
setup python
setup kolosal
case " $SCENARIOS " in *" black "*) add_black python; add_black kolosal ;; esac
P="$OUT/python"; K="$OUT/kolosal"; KC="$OUT/kolosal-cache"
KE="$E KOLOSAL_CACHE_DIR=$KC KOLOSAL_PYTHON=$K/venv/bin/python"
WAIT="for f in $KC/manifests/*.learn $KC/manifests/*.bg; do [ -e \$f ] && flock \$f true; done; true"

ratios() { # JSON file: each command's mean and its ratio to the first's
  "$PY" - "$1" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = r[0]
for x in r[1:]:
    print("  %s: %.1f ms vs %s: %.1f ms -> ratio %.3f, difference %+.2f ms" % (
        x["command"], x["mean"] * 1e3, base["command"], base["mean"] * 1e3,
        x["mean"] / base["mean"], (x["mean"] - base["mean"]) * 1e3))
PYEOF
}

scenario() { # NAME, ARGS...
  local name="$1"; shift
  # python writes its own pycs (and pytest its own cache) on a first run.
  (cd "$P" && $E "$P/venv/bin/python" "$@" >/dev/null)
  # kolosal: launches until the learner says learning is over (at most 8).
  for i in $(seq 1 8); do
    (cd "$K" && $KE KOLOSAL_LOG=debug "$KPY" "$@" 2>"$OUT/k.log" >/dev/null) || true
    sh -c "$WAIT"
    if ! grep -q "learn: learner started" "$OUT/k.log"; then break; fi
  done
  echo "kolosal settled after $i launches; python -v source compiles left:" \
    "$(cd "$K" && $E PYTHONDONTWRITEBYTECODE=1 "$K/venv/bin/python" -v "$@" 2>&1 >/dev/null | grep -c '^# code object from [^'"'"']*\.py$' || true)"
  hyperfine -N --runs "$RUNS" --warmup 3 \
    --export-markdown "$OUT/$name.md" --export-json "$OUT/$name.json" \
    -n "python (own pycs)" "sh -c 'cd $P && exec $E $P/venv/bin/python $*'" \
    -n "kolosal-python (learned)" "sh -c 'cd $K && exec $KE $KPY $*'" >/dev/null
  echo "### $name"; cat "$OUT/$name.md"; ratios "$OUT/$name.json"
  # The same pair interleaved (python, kolosal, python, ...): load that
  # drifts during the run hits both sides alike.
  "$PY" - "$RUNS" "$P" "$K" "$KC" "$KPY" "$@" <<'PYEOF'
import os, statistics, subprocess, sys, time
runs, p, k, kc, kpy, args = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ["HOME"], "LANG": "C.UTF-8"}
sides = {
    "python": ([p + "/venv/bin/python"] + args, p, base),
    "kolosal": ([kpy] + args, k, dict(base, KOLOSAL_CACHE_DIR=kc, KOLOSAL_PYTHON=k + "/venv/bin/python")),
}
t = {name: [] for name in sides}
for _ in range(runs):
    for name, (cmd, cwd, env) in sides.items():
        s = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        t[name].append(time.perf_counter() - s)
m = {n: statistics.median(v) * 1e3 for n, v in t.items()}
lo = {n: min(v) * 1e3 for n, v in t.items()}
print("  interleaved x%d: python median %.1f ms (min %.1f), kolosal median %.1f ms (min %.1f) -> ratio of medians %.3f, of minima %.3f" % (
    runs, m["python"], lo["python"], m["kolosal"], lo["kolosal"], m["kolosal"] / m["python"], lo["kolosal"] / lo["python"]))
PYEOF
  echo
}

for s in $SCENARIOS; do
  case "$s" in
    django) scenario django manage.py check ;;
    pytest) scenario pytest -m pytest --collect-only -q -p no:cacheprovider tests ;;
    black) scenario black -m black --version ;;
    *) echo "bench: unknown scenario $s" >&2; exit 2 ;;
  esac
done
