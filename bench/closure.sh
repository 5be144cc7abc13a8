#!/usr/bin/env bash
# Import closure of `-c "import sympy"` (about a thousand modules):
#   cold: the import cache is removed before each run (every source is
#         scanned); the probe cache stays, as after any earlier kolosal run;
#   warm: the import cache is present (sources are only stat'ed).
# Compared in the same hyperfine run with python itself importing sympy
# (with fresh pycs), which is the work the closure stands in for.
# Then the scanner's throughput on one core (release build), over every
# stdlib on the machine held in memory.
# Usage: bench/closure.sh [RUNS]   (figures land in bench/out/closure-*.md)
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
RUNS="${1:-20}"

VPY="$VENV/bin/python"
KCACHE="$OUT/kolosal-cache-closure"
rm -rf "$KCACHE"
K="env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$HOME LANG=C.UTF-8 KOLOSAL_CACHE_DIR=$KCACHE"
E="env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$HOME LANG=C.UTF-8"
CLOSURE="$K $KOLOSAL closure --python $VPY -c 'import sympy'"

machine_line
# Fresh pycs for python's own run; the probe cache gets filled here.
$K "$KOLOSAL" compile -q --python "$VPY" "$($E "$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
n=$(eval "$CLOSURE" | wc -l)
echo "closure of -c 'import sympy': $n modules"

# Each scenario in its own hyperfine run (as bench/launch.sh does), so one
# command's runs never sit between another's.
hyperfine -N --runs "$RUNS" --warmup 5 \
  --export-markdown "$OUT/closure-cold.md" --export-json "$OUT/closure-cold.json" \
  --prepare "rm -rf $KCACHE/imports" -n "kolosal closure (cold: no import cache)" "$CLOSURE" >/dev/null
hyperfine -N --runs "$RUNS" --warmup 5 \
  --export-markdown "$OUT/closure-warm.md" --export-json "$OUT/closure-warm.json" \
  -n "kolosal closure (warm: import cache)" "$CLOSURE" >/dev/null
hyperfine -N --runs "$RUNS" --warmup 3 \
  --export-markdown "$OUT/closure-python.md" --export-json "$OUT/closure-python.json" \
  -n "python -c 'import sympy' (fresh pycs)" "$E $VPY -c 'import sympy'" >/dev/null
"$VPY" - "$OUT"/closure-{cold,warm,python}.json > "$OUT/closure.json" <<'PY'
import json, sys
print(json.dumps({"results": [json.load(open(f))["results"][0] for f in sys.argv[1:]]}))
PY
{ head -2 "$OUT/closure-cold.md"; for s in cold warm python; do tail -n +3 "$OUT/closure-$s.md"; done; } > "$OUT/closure.md"
cat "$OUT/closure.md"
"$VPY" - "$OUT/closure.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
py = r[2]["mean"]
for x in r[:2]:
    print("%s: %.1f ms (x%.2f of python importing sympy)" % (x["command"], x["mean"] * 1e3, x["mean"] / py))
PY

echo
echo "scanner throughput (one core, release):"
(cd "$REPO" && cargo test -q --release --test it -- --ignored --exact scan_vs_ast::throughput --nocapture 2>&1 | grep -E "scan throughput\] [0-9]")
