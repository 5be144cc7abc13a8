# Shared set-up for the bench scripts: sourced, not run.
# Builds (once) a venv with large real packages installed WITHOUT bytecode,
# uv from PyPI, and kolosal in release mode. Every timed command gets an
# explicit environment: this machine exports PYTHONDONTWRITEBYTECODE=1.
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
OUT="${KOLOSAL_BENCH_OUT:-$BENCH_DIR/out}"
PY="${KOLOSAL_BENCH_PYTHON:-/root/.pyenv/versions/3.12.1/bin/python3}"
VENV="$OUT/venv"
TOOLS="$OUT/tools"
mkdir -p "$OUT"

# Scrubbed environment for every timed child.
CLEAN_ENV=(env -i "PATH=/usr/local/bin:/usr/bin:/bin" "HOME=$HOME" "LANG=C.UTF-8")

need() { command -v "$1" >/dev/null || { echo "bench: $1 is missing; install it (apt-get install -y $2)" >&2; exit 1; }; }
need hyperfine hyperfine

if [ ! -x "$TOOLS/bin/uv" ]; then
  "$PY" -m venv "$TOOLS"
  "${CLEAN_ENV[@]}" "$TOOLS/bin/pip" install -q uv
fi
UV="$TOOLS/bin/uv"

if [ ! -f "$VENV/.kolosal-bench-ready" ]; then
  rm -rf "$VENV"
  "$PY" -m venv --without-pip "$VENV"
  # uv installs without bytecode by default, as many Docker builds leave a venv.
  "${CLEAN_ENV[@]}" "$UV" pip install -q --python "$VENV/bin/python" sympy requests jinja2 rich
  touch "$VENV/.kolosal-bench-ready"
fi

(cd "$REPO" && cargo build --release -q)
KOLOSAL="$REPO/target/release/kolosal"
KPY="$REPO/target/release/kolosal-python"

# Removes every pyc under a tree.
strip_pycs() { find "$1" -name __pycache__ -type d -prune -exec rm -rf {} +; }

machine_line() {
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(date -u +%Y-%m-%d); python $("$PY" -c 'import sys;print(sys.version.split()[0])')"
}
