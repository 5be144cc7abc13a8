#!/usr/bin/env bash
# The code cache (issue 15): two venvs with the same packages, installed
# without bytecode. After the first venv is compiled, compiling the second
# must come from the cache:
#   kolosal compile V2 (cache warm)  vs  uv pip sync --compile-bytecode V2
#   vs  kolosal compile V2 with the cache off (KOLOSAL_CODE_CACHE_SIZE=0);
# and the first `kolosal-python -c "import sympy"` in a brand-new venv
# against a warm start. One hyperfine run per cold scenario (the scenario
# is destroyed by running it), several for the warm start.
# Usage: bench/codecache.sh   (figures land in bench/out/codecache-*.md)
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

VPY="$VENV/bin/python"
REQS="$OUT/requirements.txt"
"${CLEAN_ENV[@]}" "$UV" pip freeze --python "$VPY" > "$REQS"
KC="$OUT/codecache-kolosal-cache"
V1="$OUT/codecache-v1" V2="$OUT/codecache-v2" V3="$OUT/codecache-v3"
rm -rf "$KC" "$V1" "$V2" "$V3"

mkvenv() {  # a venv with the bench packages, no bytecode, from uv's cache
  rm -rf "$1"
  "${NET_ENV[@]}" "$UV" venv -q --python "$PY" "$1"
  "${NET_ENV[@]}" "$UV" pip install -q --offline --python "$1/bin/python" -r "$REQS"
}
mkvenv "$V1"; mkvenv "$V2"
sp() { "${CLEAN_ENV[@]}" "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
SP1="$(sp "$V1")" SP2="$(sp "$V2")"

machine_line
echo "tree: $SP2: $(find "$SP2" -name '*.py' | wc -l) .py files, $(du -sh --exclude=__pycache__ "$SP2" | cut -f1)"

K="env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$HOME LANG=C.UTF-8 KOLOSAL_CACHE_DIR=$KC"
E="env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$HOME LANG=C.UTF-8"

# Fill the cache from the first venv, and report its size.
/usr/bin/time -f "first venv, cache cold: %e s wall, %U s user, %S s sys" \
  $K "$KOLOSAL" compile -q --python "$V1/bin/python" "$SP1"
$K "$KOLOSAL" cache stats --json | "$VPY" -c '
import json, sys
s = json.load(sys.stdin)
print("cache: %d entries, %.1f MiB, %.1f MiB per 1,000 modules"
      % (s["entries"], s["bytes"] / 2**20, s["bytes"] / s["entries"] * 1000 / 2**20))'

STRIP2="find '$SP2' -name __pycache__ -type d -prune -exec rm -rf {} +"
hyperfine -i --runs 1 --prepare "$STRIP2" \
  --export-markdown "$OUT/codecache-compile.md" --export-json "$OUT/codecache-compile.json" \
  -n "kolosal compile V2 (cache warm)" "$K $KOLOSAL compile -q --python $V2/bin/python $SP2" \
  -n "uv pip sync --compile-bytecode V2" "$E $UV pip sync -q --offline --compile-bytecode --python $V2/bin/python $REQS" \
  -n "kolosal compile V2 (cache off)" "$K KOLOSAL_CODE_CACHE_SIZE=0 $KOLOSAL compile -q --python $V2/bin/python $SP2" || true

# The result is right: every pyc fresh for importlib.
eval "$STRIP2"; $K "$KOLOSAL" compile -q --python "$V2/bin/python" "$SP2"
$K "$KOLOSAL" status --json --python "$V2/bin/python" "$SP2" | "$VPY" -c '
import json, sys; l = json.load(sys.stdin)["levels"][0]
print("V2 after a cached compile: fresh %d, stale %d, missing %d" % (l["fresh"], l["stale"], l["missing"]))'

# First launch in a brand-new venv (new path, no manifest, no import scans
# for its files) with the cache holding the bodies, then warm starts.
IMPORT='-c "import sympy"'
MKV3="$OUT/codecache-mkv3.sh"
{ echo "set -e"; declare -p NET_ENV; echo "UV=$UV PY=$PY REQS=$REQS"; declare -f mkvenv; echo "mkvenv $V3"; } > "$MKV3"
hyperfine -i --runs 1 --prepare "bash $MKV3" \
  --export-markdown "$OUT/codecache-first-launch.md" \
  -n "first kolosal-python in a new venv (cache warm)" "$K KOLOSAL_PYTHON=$V3/bin/python $KPY $IMPORT" \
  -n "first kolosal-python in a new venv (cache off)" "$K KOLOSAL_CODE_CACHE_SIZE=0 KOLOSAL_PYTHON=$V3/bin/python $KPY $IMPORT" || true
hyperfine -i --warmup 3 --runs 10 \
  --export-markdown "$OUT/codecache-warm.md" \
  -n "warm kolosal-python" "$K KOLOSAL_PYTHON=$V3/bin/python $KPY $IMPORT" || true
