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

# Network environment for uv/pip children ONLY (never for timed python runs):
# the certificate and proxy variables of tests/common/mod.rs NETWORK_VARS.
NET_ENV=("${CLEAN_ENV[@]}")
for v in SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE CURL_CA_BUNDLE PIP_CERT \
  PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_DEFAULT_TIMEOUT \
  PIP_DISABLE_PIP_VERSION_CHECK UV_INDEX_URL UV_NATIVE_TLS HTTP_PROXY HTTPS_PROXY \
  NO_PROXY http_proxy https_proxy no_proxy; do
  if [ -n "${!v+x}" ]; then NET_ENV+=("$v=${!v}"); fi
done

need() { command -v "$1" >/dev/null || { echo "bench: $1 is missing; install it (apt-get install -y $2)" >&2; exit 1; }; }
if ! command -v hyperfine >/dev/null && [ "$(id -u)" = 0 ]; then apt-get install -y -q hyperfine >/dev/null || true; fi
need hyperfine hyperfine

if [ ! -x "$TOOLS/bin/uv" ]; then
  "$PY" -m venv "$TOOLS"
  "${NET_ENV[@]}" "$TOOLS/bin/pip" install -q uv
fi
UV="$TOOLS/bin/uv"

if [ ! -f "$VENV/.kolosal-bench-ready" ]; then
  rm -rf "$VENV"
  "$PY" -m venv --without-pip "$VENV"
  # uv installs without bytecode by default, as many Docker builds leave a venv.
  # Packages chosen to install fast and give >= 4000 .py files.
  "${NET_ENV[@]}" "$UV" pip install -q --python "$VENV/bin/python" \
    sympy requests jinja2 rich pygments numpy pandas setuptools
  touch "$VENV/.kolosal-bench-ready"
fi

(cd "$REPO" && cargo build --release -q)
KOLOSAL="${KOLOSAL_BIN:-$REPO/target/release/kolosal}"
KPY="${KPY:-$REPO/target/release/kolosal-python}"

# Removes every pyc under a tree.
strip_pycs() { find "$1" -name __pycache__ -type d -prune -exec rm -rf {} +; }

machine_line() {
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr), $(date -u '+%Y-%m-%d %H:%M UTC'), load$(uptime | sed 's/.*load average//'); python $(env -i "$PY" -c 'import sys;print(sys.version.split()[0])')"
}
