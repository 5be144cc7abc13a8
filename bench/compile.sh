#!/usr/bin/env bash
# Byte-compiling a venv's site-packages (several thousand .py files):
#   kolosal compile          vs  python -m compileall -q -j0  vs  uv pip sync --compile-bytecode
# in one hyperfine run per scenario, on the same tree:
#   cold:  every __pycache__ removed before each run (--prepare);
#   no-op: every pyc already fresh.
# uv runs --offline: everything is installed, so only its compile step is timed.
# Usage: bench/compile.sh [RUNS]   (figures land in bench/out/compile-*.md)
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
RUNS="${1:-5}"

VPY="$VENV/bin/python"
SP="$("${CLEAN_ENV[@]}" "$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
REQS="$OUT/requirements.txt"
"${CLEAN_ENV[@]}" "$UV" pip freeze --python "$VPY" > "$REQS"
KCACHE="$OUT/kolosal-cache"

machine_line
echo "tree: $SP: $(find "$SP" -name '*.py' | wc -l) .py files, $(du -sh --exclude=__pycache__ "$SP" | cut -f1)"

STRIP="find '$SP' -name __pycache__ -type d -prune -exec rm -rf {} +"
K="env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$HOME LANG=C.UTF-8 KOLOSAL_CACHE_DIR=$KCACHE"
E="env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$HOME LANG=C.UTF-8"
KOL="$K $KOLOSAL compile -q --python $VPY $SP"
CALL="$E $VPY -m compileall -q -j0 $SP"
UVS="$E $UV pip sync -q --offline --compile-bytecode --python $VPY $REQS"

# Sanity: each tool leaves a tree kolosal finds fully fresh, and the uv
# command really compiles when nothing needs installing.
for cmd in "$KOL" "$CALL" "$UVS"; do
  eval "$STRIP"
  eval "$cmd" >/dev/null 2>&1 || true
  n=$(find "$SP" -name '*.pyc' | wc -l)
  fresh=$($K "$KOLOSAL" status --json --python "$VPY" "$SP" | "$VPY" -c 'import json,sys; l=json.load(sys.stdin)["levels"][0]; print(l["fresh"], l["stale"], l["missing"])')
  echo "after: ${cmd%% $SP*} ... -> $n pycs; kolosal status fresh/stale/missing: $fresh"
done

hyperfine -i --runs "$RUNS" --warmup 1 --prepare "$STRIP" \
  --export-markdown "$OUT/compile-cold.md" --export-json "$OUT/compile-cold.json" \
  -n "kolosal compile" "$KOL" \
  -n "compileall -j0" "$CALL" \
  -n "uv pip sync --compile-bytecode" "$UVS" || true

eval "$KOL" || true
hyperfine -i --runs "$((RUNS * 2))" --warmup 2 \
  --export-markdown "$OUT/compile-noop.md" --export-json "$OUT/compile-noop.json" \
  -n "kolosal compile (no-op)" "$KOL" \
  -n "compileall -j0 (no-op)" "$CALL" \
  -n "uv pip sync --compile-bytecode (no-op)" "$UVS" || true

# hyperfine runs each command's runs back to back, so a change in the
# machine's load (other jobs on a shared box) lands on one tool. Cold runs
# are therefore also timed interleaved: kolosal, uv, compileall in turn,
# PAIRS times; the ratio of the sums is the figure to trust on a busy box.
PAIRS="${KOLOSAL_BENCH_PAIRS:-3}"
"$VPY" - "$PAIRS" "$STRIP" "$KOL" "$UVS" "$CALL" <<'EOF' | tee "$OUT/compile-interleaved.txt"
import subprocess, sys, time
pairs, strip, cmds = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
names = ["kolosal compile", "uv pip sync --compile-bytecode", "compileall -j0"]
tot = [0.0] * len(cmds)
for _ in range(pairs):
    for i, c in enumerate(cmds):
        subprocess.run(strip, shell=True, check=True)
        t = time.perf_counter()
        subprocess.run(c, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        tot[i] += time.perf_counter() - t
print("cold, interleaved x%d: " % pairs + ", ".join(
    "%s %.2fs (kolosal/this %.2f)" % (n, t / pairs, tot[0] / t) for n, t in zip(names, tot)))
EOF

# Ratios against kolosal, from the JSON exports.
for s in cold noop; do
  "$VPY" - "$OUT/compile-$s.json" "$s" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
k = r[0]["mean"]
print(sys.argv[2] + ": " + ", ".join("%s %.3fs (x%.1f)" % (x["command"], x["mean"], x["mean"] / k) for x in r))
EOF
done

# The floor both tools stand on: CPU time of CPython's own compile() +
# marshal.dumps for every file of the tree, in one process, nothing
# written; against the CPU (user+sys, children included) each tool spends
# on a cold run. Neither tool can go below the floor; what is above it is
# the tool's own overhead (process start-up, reading, writing, protocol).
echo
echo "CPU seconds, cold (floor = compile()+marshal in one process):"
eval "$STRIP"
"${CLEAN_ENV[@]}" "$VPY" -I -S -W ignore - "$SP" <<'EOF2'
import os, sys, time, marshal
files = []
for d, dirs, fs in os.walk(sys.argv[1]):
    dirs[:] = [x for x in dirs if x != "__pycache__"]
    files += [os.path.join(d, f) for f in fs if f.endswith(".py")]
t = time.process_time()
for f in files:
    with open(f, "rb") as fh:
        src = fh.read()
    try:
        marshal.dumps(compile(src, f, "exec", dont_inherit=True))
    except (SyntaxError, ValueError):
        pass
print("  floor (%d files): %.2f s" % (len(files), time.process_time() - t))
EOF2
# (compileall is left out: its pool's workers are not all counted by time(1).)
for cmd in "$KOL" "$UVS"; do
  eval "$STRIP"
  /usr/bin/time -f "  %U user + %S sys = CPU for: ${cmd%% $SP*} ..." sh -c "$cmd >/dev/null 2>&1" 2>&1 | tail -1
done
