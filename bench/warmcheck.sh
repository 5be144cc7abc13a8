#!/usr/bin/env bash
# Two figures of issue 12 that need a synthetic program:
#   warmcheck: the launcher's own time before exec on a warm launch whose
#           manifest holds ~2,000 modules outside the standard library
#           (package `pkg`: 2,000 small modules imported by its __init__,
#           stamped file by file). Read from `KOLOSAL_LOG=info`'s
#           "warm: ... (X ms)" line, printed at the moment of exec, over
#           RUNS launches; and, as a cross-check, the wall time of the same
#           launch against `KOLOSAL_AUTO_COMPILE=0` (pure pass-through),
#           interleaved. Target: <= 2 ms.
#   learncost: what a learner costs the program it watches. `dyn.py`
#           imports 300 modules of `dpkg` by computed name (no closure walk
#           sees them), then spins ~0.3 s of pure Python (half before, half after). Each run starts
#           from the same cache snapshot, so every run with learning on
#           starts a learner; runs alternate learning on / KOLOSAL_LEARN=0.
#           A subreaper wrapper (prctl PR_SET_CHILD_SUBREAPER) reaps the
#           detached learner and reads its CPU time from wait4's rusage
#           (its compile workers included). Two cases:
#             steady: the learned pycs are fresh (a warm launch while the
#                     manifest still says learning is on: the learner
#                     watches, finds nothing new);
#             fresh:  dpkg/__pycache__ removed before each run (both sides
#                     load the 300 modules from source; the learner learns
#                     and compiles them after the program exits).
#           Target: program wall time with learning <= 1.02 x without.
# Usage: bench/warmcheck.sh [RUNS]   (logs land in bench/out/warmcheck/)
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
OUT="${KOLOSAL_BENCH_OUT:-$BENCH_DIR/out}/warmcheck"
PY="${KOLOSAL_BENCH_PYTHON:-/root/.pyenv/versions/3.13.0/bin/python3}"
RUNS="${1:-40}"
mkdir -p "$OUT"
(cd "$REPO" && cargo build --release -q -j1)
KPY="$REPO/target/release/kolosal-python"
E="env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$HOME LANG=C.UTF-8"

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC'), load$(uptime | sed 's/.*load average//'); python $($E "$PY" -c 'import sys;print(sys.version.split()[0])')"

# A private copy of the interpreter, as in learn.sh: other users' runs
# writing pycs into the shared standard library would send a launch down
# the cold path mid-measurement.
BASE="$("$PY" -c 'import sys; print(sys.base_prefix)')"
VER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ ! -x "$OUT/interp/bin/python3" ]; then
  rm -rf "$OUT/interp"; mkdir -p "$OUT/interp"
  cp -a "$BASE/bin" "$BASE/lib" "$OUT/interp/"
  rm -rf "$OUT/interp/lib/python$VER/test" "$OUT/interp/lib/python$VER/site-packages"/*
fi
PY="$OUT/interp/bin/python3"

APP="$OUT/app"
if [ ! -f "$APP/.ready" ]; then
  rm -rf "$APP"; mkdir -p "$APP/pkg" "$APP/dpkg"
  "$PY" - "$APP" <<'PYEOF'
import os, sys
app = sys.argv[1]
with open(os.path.join(app, "pkg", "__init__.py"), "w") as init:
    for i in range(2000):
        init.write("from . import m%d\n" % i)
        with open(os.path.join(app, "pkg", "m%d.py" % i), "w") as f:
            f.write("X%d = %d\n\ndef f(x):\n    return x + %d\n" % (i, i, i))
open(os.path.join(app, "dpkg", "__init__.py"), "w").close()
for i in range(300):
    with open(os.path.join(app, "dpkg", "d%d.py" % i), "w") as f:
        f.write("import json\n\nclass C%d:\n    def g(self, x):\n        return [x * %d for _ in range(3)]\n" % (i, i))
with open(os.path.join(app, "main.py"), "w") as f:
    f.write("import pkg\n")
with open(os.path.join(app, "dyn.py"), "w") as f:
    f.write("import importlib, os, time\n"
            "def spin(s):\n"
            "    t = time.process_time()\n"
            "    while time.process_time() - t < s:\n"
            "        sum(range(1000))\n"
            "spin(0.15)\n"
            "if os.environ.get('DYN_SKIP') != '1':\n"
            "    names = ['dpkg.d%d' % i for i in range(300)]\n"
            "    mods = [importlib.import_module(n) for n in names]\n"
            "spin(0.15)\n")
PYEOF
  touch "$APP/.ready"
fi
KC="$OUT/kolosal-cache"
KE="$E KOLOSAL_CACHE_DIR=$KC KOLOSAL_PYTHON=$PY"
WAIT="for f in $KC/manifests/*.learn $KC/manifests/*.bg; do [ -e \$f ] && flock \$f true; done; true"

# --- warmcheck -------------------------------------------------------------
rm -rf "$KC" "$APP/pkg/__pycache__"
for i in $(seq 1 8); do
  (cd "$APP" && $KE KOLOSAL_LOG=debug "$KPY" main.py 2>"$OUT/k.log") || true
  sh -c "$WAIT"
  if grep -q "warm: every recorded stamp holds" "$OUT/k.log" && ! grep -q "learn: learner started" "$OUT/k.log"; then break; fi
done
echo "warm after $i launches; closure: $(cd "$APP" && $KE "$REPO/target/release/kolosal" closure --python "$PY" main.py 2>/dev/null | wc -l) lines of \`kolosal closure\`"
"$PY" - "$RUNS" "$APP" "$KC" "$KPY" "$PY" <<'PYEOF'
import os, re, statistics, subprocess, sys, time
runs, app, kc, kpy, py = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ["HOME"], "LANG": "C.UTF-8",
        "KOLOSAL_CACHE_DIR": kc, "KOLOSAL_PYTHON": py}
pat = re.compile(r"warm: every recorded stamp holds.*\(([0-9.]+) ms\)")
logged, wall = [], {"kolosal": [], "pass-through": []}
for _ in range(runs):
    r = subprocess.run([kpy, "main.py"], cwd=app, env=dict(base, KOLOSAL_LOG="info"),
                       stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, check=True)
    m = pat.search(r.stderr)
    if not m:
        sys.exit("warmcheck: not warm: %r" % r.stderr)
    logged.append(float(m.group(1)))
    for name, env in (("kolosal", base), ("pass-through", dict(base, KOLOSAL_AUTO_COMPILE="0"))):
        s = time.perf_counter()
        subprocess.run([kpy, "main.py"], cwd=app, env=env, check=True)
        wall[name].append((time.perf_counter() - s) * 1e3)
q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))]
print("  launcher before exec (KOLOSAL_LOG=info), x%d: min %.2f ms, median %.2f ms, p90 %.2f ms, max %.2f ms"
      % (runs, min(logged), statistics.median(logged), q(logged, 0.9), max(logged)))
k, p = wall["kolosal"], wall["pass-through"]
print("  wall, interleaved x%d: kolosal median %.1f ms (min %.1f), KOLOSAL_AUTO_COMPILE=0 median %.1f ms (min %.1f)"
      " -> difference of medians %+.2f ms, of minima %+.2f ms"
      % (runs, statistics.median(k), min(k), statistics.median(p), min(p),
         statistics.median(k) - statistics.median(p), min(k) - min(p)))
PYEOF

# --- the machine's floor under the warm check --------------------------------
# The same stats with nothing of kolosal's around them: the paths a warm
# launch stats (strace -y names each directory descriptor), fed to
# bench/statfloor.c, which opens each directory O_PATH and fstatat()s its
# entries, on one thread and split over two, as the launcher does.
if command -v strace >/dev/null && command -v cc >/dev/null; then
  cc -O2 -pthread -o "$OUT/statfloor" "$BENCH_DIR/statfloor.c"
  (cd "$APP" && $KE strace -f -y -e trace=newfstatat,execve -o "$OUT/warm.strace" "$KPY" main.py) >/dev/null
  # Only the launcher's: up to the execve of the interpreter (the second).
  awk '/execve\(/ { n++; if (n == 2) exit } { print }' "$OUT/warm.strace" \
    | grep -oE 'newfstatat\([0-9]+<[^>]*>, "[^"]+"' \
    | sed -E 's/newfstatat\([0-9]+<([^>]*)>, "([^"]*)"/\1\/\2/' > "$OUT/warm.paths"
  echo "  floor, one warm process (200 rounds): $("$OUT/statfloor" 200 < "$OUT/warm.paths")"
  # As cold as a launch: a new process per round, one round each.
  for mode in 1 2; do
    for _ in $(seq 1 "$RUNS"); do "$OUT/statfloor" 1 "$mode" < "$OUT/warm.paths"; done \
      | sed -nE "s/.*$mode threads? min ([0-9]+) us.*/\1/p" | sort -n \
      | awk -v m="$mode" '{v[NR]=$1} END {printf "  floor, a new process per round, %s thread(s), x%d: min %d us, median %d us\n", m, NR, v[1], v[int((NR+1)/2)]}'
  done
  echo "  launcher stats in that strace: $(wc -l < "$OUT/warm.paths") fstatat calls"
fi

# --- learncost ---------------------------------------------------------------
learncost() { # CASE
  local case="$1" snap="$OUT/snap-$1"
  rm -rf "$KC" "$snap" "$APP/dpkg/__pycache__"
  # One launch with learning: the manifest records the static closure and
  # (steady) the 300 learned modules, and still says learning is on.
  # fresh: that launch skips the imports, so nothing of dpkg is learned.
  local skip=0; [ "$case" = fresh ] && skip=1
  (cd "$APP" && $KE DYN_SKIP=$skip "$KPY" dyn.py) || true
  sh -c "$WAIT"
  [ "$case" = steady ] && echo "  steady: $(find "$APP/dpkg/__pycache__" -name '*.pyc' 2>/dev/null | wc -l) dpkg pycs written by the first learner"
  cp -a "$KC" "$snap"
  "$PY" - "$RUNS" "$case" "$APP" "$KC" "$snap" "$KPY" "$PY" <<'PYEOF'
import ctypes, os, shutil, statistics, subprocess, sys, time
runs, case, app, kc, snap, kpy, py = int(sys.argv[1]), sys.argv[2], *sys.argv[3:]
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("learncost: no subreaper")
base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ["HOME"], "LANG": "C.UTF-8",
        "KOLOSAL_CACHE_DIR": kc, "KOLOSAL_PYTHON": py}
def run(env):
    shutil.rmtree(kc)
    shutil.copytree(snap, kc, symlinks=True)
    if case == "fresh":
        shutil.rmtree(os.path.join(app, "dpkg", "__pycache__"), ignore_errors=True)
    s = time.perf_counter()
    pid = subprocess.Popen([kpy, "dyn.py"], cwd=app, env=env).pid
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - s
    if status != 0:
        sys.exit("learncost: dyn.py failed")
    other, n = 0.0, 0
    while True:  # the detached learner (and its intermediate fork), reparented here
        try:
            _, _, r = os.wait4(-1, 0)
        except ChildProcessError:
            break
        other += r.ru_utime + r.ru_stime
        n += 1
    return wall * 1e3, (ru.ru_utime + ru.ru_stime) * 1e3, other * 1e3, n
t = {"learn": [], "off": []}
for _ in range(runs):
    for name, env in (("learn", base), ("off", dict(base, KOLOSAL_LEARN="0"))):
        t[name].append(run(env))
med = lambda name, i: statistics.median(x[i] for x in t[name])
lo = lambda name, i: min(x[i] for x in t[name])
print("  %s, interleaved x%d: program wall with learning median %.1f ms (min %.1f), KOLOSAL_LEARN=0 median %.1f ms (min %.1f)"
      " -> ratio of medians %.3f, of minima %.3f"
      % (case, runs, med("learn", 0), lo("learn", 0), med("off", 0), lo("off", 0),
         med("learn", 0) / med("off", 0), lo("learn", 0) / lo("off", 0)))
print("    program CPU: %.1f ms with learning, %.1f ms without (medians); learner CPU (with its workers): median %.1f ms,"
      " max %.1f ms; processes reaped per run: %d / %d"
      % (med("learn", 1), med("off", 1), med("learn", 2), max(x[2] for x in t["learn"]),
         max(x[3] for x in t["learn"]), max(x[3] for x in t["off"])))
PYEOF
}
learncost steady
learncost fresh
