#!/usr/bin/env bash
# kolosal-python vs python starting a program, on a venv installed WITHOUT
# bytecode (sympy, requests, jinja2, ...). Each scenario is one hyperfine
# run holding both commands. The python command always gets a scrubbed
# environment WITHOUT PYTHONDONTWRITEBYTECODE unless the scenario says so.
#   warm:      fresh pycs, kolosal's manifest in place; `-c "import sympy"`
#              and `-c pass`;
#   first:     every site-packages pyc and kolosal's cache removed before
#              each run (python writes pycs as it imports; kolosal compiles
#              the module-level closure in parallel first and leaves modules
#              only imported inside functions to its background run; also
#              timed with KOLOSAL_BACKGROUND=0, everything before exec);
#   container: PYTHONDONTWRITEBYTECODE=1 on every start and no pycs for
#              python (it compiles every module on every start); kolosal's
#              later starts reuse what its first start compiled;
#   edited:    a comment appended to one sympy module before each run.
# Usage: bench/launch.sh [RUNS]   (figures land in bench/out/launch-*.md)
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
RUNS="${1:-20}"

VPY="$VENV/bin/python"
SP="$(env -i "$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
KC="$OUT/kolosal-cache-launch"
E="env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$HOME LANG=C.UTF-8"
K="$E KOLOSAL_CACHE_DIR=$KC KOLOSAL_PYTHON=$VPY"
STRIP="find '$SP' -name __pycache__ -type d -prune -exec rm -rf {} +"
# Waits for kolosal's background compile, if one is running (it holds the
# .bg lock next to its manifest): runs must not overlap it.
WAITBG="for f in $KC/manifests/*.bg; do [ -e \$f ] && flock \$f true; done; true"
EDITED="$SP/sympy/core/singleton.py"

machine_line
eval "$STRIP"; rm -rf "$KC"

ratios() { # JSON file: prints each command's mean and its ratio to the first's
  "$VPY" - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
base = r[0]
for x in r[1:]:
    print("  %s: %.1f ms vs %s: %.1f ms -> ratio %.3f, difference %+.2f ms" % (
        x["command"], x["mean"] * 1e3, base["command"], base["mean"] * 1e3,
        x["mean"] / base["mean"], (x["mean"] - base["mean"]) * 1e3))
PY
}
bench() { # NAME, hyperfine args...
  local name="$1"; shift
  hyperfine -N --export-markdown "$OUT/launch-$name.md" --export-json "$OUT/launch-$name.json" "$@" >/dev/null
  echo "### $name"; cat "$OUT/launch-$name.md"; ratios "$OUT/launch-$name.json"; echo
}

# first: nothing compiled anywhere before each run.
bench first --runs "$((RUNS / 2 > 5 ? RUNS / 2 : 5))" --warmup 1 \
  --prepare "sh -c \"$WAITBG; $STRIP; rm -rf $KC\"" \
  -n "python -c 'import sympy' (writes pycs)" "$E $VPY -c 'import sympy'" \
  -n "kolosal-python -c 'import sympy' (compiles first)" "$K $KPY -c 'import sympy'" \
  -n "kolosal-python -c 'import sympy' (KOLOSAL_BACKGROUND=0)" "$K KOLOSAL_BACKGROUND=0 $KPY -c 'import sympy'"
# How long the background run goes on after a first run's program is done.
sh -c "$WAITBG; $STRIP; rm -rf $KC"
"$VPY" - "$K $KPY -c 'import sympy'" "$WAITBG" <<'PY'
import subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(sys.argv[1], shell=True, check=False)
t1 = time.perf_counter()
subprocess.run(["sh", "-c", sys.argv[2]], check=False)
t2 = time.perf_counter()
print("  first run: program done after %.0f ms; background compile done %.0f ms later" % ((t1 - t0) * 1e3, (t2 - t1) * 1e3))
PY
echo

# container: python never finds or writes pycs; kolosal's first start (the
# warmup) compiles, the timed ones are its later starts.
bench container --runs "$((RUNS / 2 > 5 ? RUNS / 2 : 5))" --warmup 1 \
  --prepare "sh -c \"$WAITBG; $STRIP; rm -rf $KC\"" \
  -n "python -c 'import sympy' (PYTHONDONTWRITEBYTECODE=1, no pycs)" "$E PYTHONDONTWRITEBYTECODE=1 $VPY -c 'import sympy'" \
  --prepare "sh -c \"$WAITBG\"" \
  -n "kolosal-python -c 'import sympy' (PYTHONDONTWRITEBYTECODE=1, later starts)" "$K PYTHONDONTWRITEBYTECODE=1 $KPY -c 'import sympy'"

# warm: every pyc fresh, manifest recorded.
$K "$KPY" -c 'import sympy'
sh -c "$WAITBG"
bench warm-sympy --runs "$RUNS" --warmup 3 \
  -n "python -c 'import sympy'" "$E $VPY -c 'import sympy'" \
  -n "kolosal-python -c 'import sympy'" "$K $KPY -c 'import sympy'"
bench warm-pass --runs "$((RUNS * 5))" --warmup 10 \
  -n "python -c pass" "$E $VPY -c pass" \
  -n "kolosal-python -c pass" "$K $KPY -c pass"

# edited: one module of the ~1000-module closure changes before each run.
cp "$EDITED" "$OUT/edited.orig"
bench edited --runs "$RUNS" --warmup 2 \
  --prepare "sh -c \"$WAITBG\"" -n "kolosal-python -c 'import sympy' (warm)" "$K $KPY -c 'import sympy'" \
  --prepare "sh -c \"$WAITBG; echo '# edit' >> $EDITED\"" -n "kolosal-python -c 'import sympy' (one module edited)" "$K $KPY -c 'import sympy'" \
  --prepare "sh -c \"echo '# edit' >> $EDITED\"" -n "python -c 'import sympy' (one module edited, writes its pyc)" "$E $VPY -c 'import sympy'"
sh -c "$WAITBG"
# The launcher's own timeline for the edited case (exec offset vs warm).
for i in 1 2 3 4 5; do
  echo '# edit' >> "$EDITED"
  $K KOLOSAL_LOG=debug "$KPY" -c 'import sympy' 2>&1 | grep -E '\] exec ' | sed 's/^/  edited: /'
  sh -c "$WAITBG"
  $K KOLOSAL_LOG=debug "$KPY" -c 'import sympy' 2>&1 | grep -E '\] exec ' | sed 's/^/  warm:   /'
done
cp "$OUT/edited.orig" "$EDITED"
$K "$KPY" -c pass
sh -c "$WAITBG"
