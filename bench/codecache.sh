#!/usr/bin/env bash
# The code cache (issue 15): two venvs with the same packages, installed
# without bytecode. After the first venv is compiled, compiling the second
# must come from the cache:
#   kolosal compile V2 (cache warm)  vs  uv pip sync --compile-bytecode V2
#   vs  kolosal compile V2 with the cache off (KOLOSAL_CODE_CACHE_SIZE=0);
# and the first `kolosal-python -c "import sympy"` in a brand-new venv
# against a warm start. One hyperfine run per cold scenario (the scenario
# is destroyed by running it), several for the warm start.
# Then (issue 15, session 5) ROUNDS alternated rounds of "brand-new venv,
# first launch, warm launches": the first launch against the warm one
# measured in the same round, the previous venv either moved aside
# (`mv`: no mass deletion just before, as in a fresh image) or deleted
# just before (`rm`: the file system must then skip the inodes it freed,
# see docs/benchmarks.md session 5).
# WAYS (default "mv rm") may add variants of the first launch, as
# way:VAR=value, e.g. WAYS="mv mv:KOLOSAL_LEARN=0 mv:KOLOSAL_BACKGROUND=0",
# or another launcher build as way:kpy=PATH (KPY and KOLOSAL_BIN override
# the builds the whole bench uses).
# Usage: bench/codecache.sh [--first-launch ROUNDS]
#   (figures land in bench/out/codecache-*.md; --first-launch runs only the
#   rounds, filling the cache from a first venv if it is empty)
ROUNDS=8 ONLY_FIRST=0
if [ "${1:-}" = --first-launch ]; then ONLY_FIRST=1 ROUNDS="${2:-8}"; fi
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

VPY="$VENV/bin/python"
REQS="$OUT/requirements.txt"
"${CLEAN_ENV[@]}" "$UV" pip freeze --python "$VPY" > "$REQS"
KC="$OUT/codecache-kolosal-cache"
V1="$OUT/codecache-v1" V2="$OUT/codecache-v2" V3="$OUT/codecache-v3"
[ "$ONLY_FIRST" = 1 ] || rm -rf "$KC" "$V1" "$V2" "$V3"

mkvenv() {  # a venv with the bench packages, no bytecode, from uv's cache
  rm -rf "$1"
  "${NET_ENV[@]}" "$UV" venv -q --python "$PY" "$1"
  "${NET_ENV[@]}" "$UV" pip install -q --offline --python "$1/bin/python" -r "$REQS"
}
sp() { "${CLEAN_ENV[@]}" "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
K="env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$HOME LANG=C.UTF-8 KOLOSAL_CACHE_DIR=$KC"
E="env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$HOME LANG=C.UTF-8"
IMPORT='-c "import sympy"'

# Waits for the background runs and learners of every launch so far.
wait_bg() { local lk; for lk in "$KC"/manifests/*.bg "$KC"/manifests/*.learn; do [ -e "$lk" ] && flock -s "$lk" true; done; true; }
ms() { local t0 t1; t0=$(date +%s%N); eval "$1" >/dev/null 2>&1 || true; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# The floor of one round (see first_launch_rounds): ms for `tar x` of the
# pycs python loads from V3 into a brand-new venv VB, plus plain python.
floor_round() {
  local way=$1 round=$2 VB="$OUT/codecache-floor" tarball="$OUT/codecache-floor.tar" t0 t1
  "${CLEAN_ENV[@]}" "$V3/bin/python" -v -c "import sympy" 2>&1 >/dev/null \
    | sed -n "s|^# code object from '$V3/\(.*\.pyc\)'\$|\1|p" > "$OUT/codecache-floor.list"
  tar cf "$tarball" -C "$V3" -T "$OUT/codecache-floor.list"
  if [ -d "$VB" ]; then
    if [ "$way" = mv ]; then mv "$VB" "$OUT/codecache-trash/floor-$round-$(date +%s%N)"; else rm -rf "$VB"; fi
  fi
  mkvenv "$VB" >/dev/null
  sleep 1
  t0=$(date +%s%N)
  tar xf "$tarball" -C "$VB"
  "${CLEAN_ENV[@]}" PYTHONDONTWRITEBYTECODE=1 "$VB/bin/python" -c "import sympy" >/dev/null 2>&1 || true
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}

# ROUNDS rounds per way of clearing the previous venv, the two ways
# alternated round by round: new venv; first launch (timed); 3 untimed
# launches once its background work is done; 3 timed warm launches.
first_launch_rounds() {
  local trash="$OUT/codecache-trash" round token way extra warm f w ratio
  mkdir -p "$trash"
  : > "$OUT/codecache-rounds.txt"
  for round in $(seq 1 "$ROUNDS"); do
    for token in ${WAYS:-mv rm}; do
      way=${token%%:*} extra="" kpy=$KPY
      [ "$token" = "$way" ] || extra=${token#*:}
      # `way:kpy=PATH` runs that launcher build in this token's launches
      # (two builds alternated round by round in one run).
      case "$extra" in kpy=*) kpy=${extra#kpy=} extra="" ;; esac
      wait_bg
      if [ -d "$V3" ]; then
        if [ "$way" = mv ]; then mv "$V3" "$trash/v3-$round-$(date +%s%N)"; else rm -rf "$V3"; fi
      fi
      mkvenv "$V3"
      sleep 1
      local load; load=$(cut -d' ' -f1 /proc/loadavg)
      f=$(ms "$K $extra KOLOSAL_PYTHON=$V3/bin/python $kpy $IMPORT")
      wait_bg
      for _ in 1 2 3; do ms "$K KOLOSAL_PYTHON=$V3/bin/python $kpy $IMPORT" >/dev/null; wait_bg; done
      warm=""
      for _ in 1 2 3; do warm="$warm $(ms "$K KOLOSAL_PYTHON=$V3/bin/python $kpy $IMPORT")"; done
      w=$(echo $warm | tr ' ' '\n' | median)
      # The machine's floor for this first launch, in the same round: the
      # pycs python loads from this venv, put into another brand-new venv
      # by one `tar x` (no reading of sources, no hashing, no checks),
      # then plain python at once; the same as the first launch's way.
      fl=$(floor_round "$way" "$round")
      echo "$token $f $w $load $fl" | tee -a "$OUT/codecache-rounds.txt"
    done
  done
  rm -rf "$trash"
  for token in ${WAYS:-mv rm}; do
    f=$(awk -v w="$token" '$1==w {print $2}' "$OUT/codecache-rounds.txt" | median)
    w=$(awk -v w="$token" '$1==w {print $3}' "$OUT/codecache-rounds.txt" | median)
    fl=$(awk -v w="$token" '$1==w {print $5}' "$OUT/codecache-rounds.txt" | median)
    ratio=$(awk -v f="$f" -v w="$w" 'BEGIN {printf "%.2f", f / w}')
    fratio=$(awk -v f="$fl" -v w="$w" 'BEGIN {printf "%.2f", f / w}')
    echo "previous venv by $token: first launch median $f ms, warm median $w ms, ratio ${ratio}x; floor (tar x of the loaded pycs + python) median $fl ms, ${fratio}x ($ROUNDS rounds)"
  done
}

if [ "$ONLY_FIRST" = 1 ]; then
  machine_line
  if [ ! -d "$KC/code" ]; then
    mkvenv "$V1"
    $K "$KOLOSAL" compile -q --python "$V1/bin/python" "$(sp "$V1")"
  fi
  first_launch_rounds
  machine_line
  exit 0
fi

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
first_launch_rounds
machine_line
