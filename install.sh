#!/usr/bin/env bash
# install.sh: build kolosal and install it into a prefix.
#
#   ./install.sh [--prefix DIR] [--no-shims]
#   ./install.sh [--prefix DIR] --uninstall
#
# Installs PREFIX/bin/kolosal and PREFIX/bin/kolosal-python, and (unless
# --no-shims) the shims PREFIX/lib/kolosal/shims/{python,python3}: relative
# symlinks to ../../../bin/kolosal-python (names from shims/names; see
# shims/README.md). Default PREFIX: ~/.local.
#
# Idempotent: a second run with the same binaries changes no file. It never
# overwrites a file it did not create: what it created is listed in
# PREFIX/lib/kolosal/installed, and anything else in its way is an error.
# With --no-shims, shims an earlier run created are removed. --uninstall
# removes exactly what the record lists: the files and links (when they
# are still what install.sh put there) and the directories it created
# (when empty), so the prefix is left as it was before the first run.
#
# KOLOSAL_INSTALL_FROM=DIR installs the kolosal and kolosal-python binaries
# found in DIR instead of building (for binaries built elsewhere, e.g. a
# Docker build stage or a test's target/debug); cargo is then not needed.
if [ -z "${BASH_VERSION:-}" ]; then
    echo "install.sh: run it with bash: bash install.sh" >&2
    exit 1
fi
set -euo pipefail

die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<'EOF'
usage: ./install.sh [--prefix DIR] [--no-shims]
       ./install.sh [--prefix DIR] --uninstall

Builds kolosal (cargo build --release --locked) and installs
  PREFIX/bin/kolosal, PREFIX/bin/kolosal-python
  PREFIX/lib/kolosal/shims/python, python3   (symlinks; not with --no-shims)
Default PREFIX: ~/.local. Running it again changes nothing; it never
overwrites a file it did not create. --uninstall removes exactly what
install.sh installed in PREFIX, and the directories it created.

Environment:
  KOLOSAL_INSTALL_FROM=DIR  install DIR/kolosal and DIR/kolosal-python
                            instead of building them
EOF
}

prefix=""
shims=1
uninstall=0
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix)
        [ $# -ge 2 ] || die "--prefix needs a directory: --prefix DIR"
        prefix=$2
        shift 2
        ;;
    --prefix=*)
        prefix=${1#--prefix=}
        shift
        ;;
    --no-shims)
        shims=0
        shift
        ;;
    --uninstall)
        uninstall=1
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown option '$1'; run ./install.sh --help" ;;
    esac
done

if [ -z "$prefix" ]; then
    [ -n "${HOME:-}" ] || die "HOME is not set; pass --prefix DIR"
    prefix="$HOME/.local"
fi
case "$prefix" in
/*) ;;
*) prefix="$PWD/$prefix" ;;
esac
# Drop trailing slashes (but keep "/").
while [ "${#prefix}" -gt 1 ] && [ "${prefix%/}" != "$prefix" ]; do
    prefix=${prefix%/}
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
link_target="../../../bin/kolosal-python"

# --- uninstall ---------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
    record="$prefix/lib/kolosal/installed"
    [ -f "$record" ] || die "nothing to uninstall: $record does not exist (was kolosal installed with --prefix $prefix?)"
    listed=$(cat "$record")
    dirs=()
    while IFS= read -r rel; do
        [ -n "$rel" ] || continue
        path="$prefix/$rel"
        case "$rel" in
        */) dirs+=("$rel") ;;
        lib/kolosal/shims/*)
            if [ -L "$path" ] && [ "$(readlink "$path")" = "$link_target" ]; then
                rm -f "$path" || die "cannot remove $path"
                echo "removed $path"
            elif [ -e "$path" ] || [ -L "$path" ]; then
                echo "install.sh: left $path: it is no longer the link install.sh made" >&2
            fi
            ;;
        *)
            if [ -f "$path" ] && [ ! -L "$path" ]; then
                rm -f "$path" || die "cannot remove $path"
                echo "removed $path"
            elif [ -e "$path" ] || [ -L "$path" ]; then
                echo "install.sh: left $path: it is no longer the file install.sh installed" >&2
            fi
            ;;
        esac
    done <<<"$listed"
    rm -f "$record" || die "cannot remove $record"
    # Directories install.sh created, deepest first, when nothing else is in them.
    for rel in $(printf '%s\n' "${dirs[@]}" | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-); do
        if [ "$rel" = "./" ]; then
            rmdir "$prefix" 2>/dev/null && echo "removed $prefix/" || true
        else
            rmdir "$prefix/$rel" 2>/dev/null && echo "removed $prefix/$rel" || true
        fi
    done
    echo "kolosal uninstalled from $prefix"
    exit 0
fi

# --- the binaries ------------------------------------------------------------
if [ -n "${KOLOSAL_INSTALL_FROM:-}" ]; then
    from=$KOLOSAL_INSTALL_FROM
else
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found; install Rust from https://rustup.rs (then open a new shell), or set KOLOSAL_INSTALL_FROM to a directory holding built kolosal binaries"
    [ -f "$repo/Cargo.toml" ] ||
        die "no Cargo.toml next to install.sh in $repo; run install.sh from a kolosal checkout"
    echo "install.sh: building kolosal (cargo build --release --locked) ..." >&2
    cargo build --release --locked --manifest-path "$repo/Cargo.toml" \
        --bin kolosal --bin kolosal-python >&2 ||
        die "cargo build failed (see above); fix the build, or run 'cargo update' if --locked refused a stale Cargo.lock"
    target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p') || true
    from="${target_dir:-$repo/target}/release"
fi
for bin in kolosal kolosal-python; do
    [ -f "$from/$bin" ] && [ -x "$from/$bin" ] ||
        die "$from/$bin is missing or not executable; build kolosal first (cargo build --release)"
done

# --- what an earlier run created ---------------------------------------------
libdir="$prefix/lib/kolosal"
shimdir="$libdir/shims"
record="$libdir/installed"
for d in "$prefix/bin" "$libdir"; do
    if [ -e "$d" ] && [ ! -d "$d" ]; then
        die "$d exists and is not a directory; move it away or pick another --prefix"
    fi
done
# The directories this run creates are recorded (with a trailing slash) so
# that --uninstall can take them back.
new_dirs=()
for rel in ./ bin/ lib/ lib/kolosal/; do
    [ -e "$prefix/$rel" ] || new_dirs+=("$rel")
done
mkdir -p "$prefix/bin" "$libdir" 2>/dev/null ||
    die "cannot create $prefix/bin; pick a --prefix you can write to"

previous=""
if [ -f "$record" ]; then
    previous=$(cat "$record")
fi
created=("${new_dirs[@]}")
# Directories an earlier run created stay ours.
while IFS= read -r rel; do
    case "$rel" in */) created+=("$rel") ;; esac
done <<<"$previous"
changed=0

# True when an earlier run of install.sh created PREFIX/$1.
owned() {
    [[ $'\n'"$previous"$'\n' == *$'\n'"$1"$'\n'* ]]
}

# Refuses to go on when PREFIX/$1 is in the way and is not ours: not listed
# by an earlier run, or no longer the kind of file install.sh puts there
# ($2: "file" or "link"), which means someone replaced it since.
claim() {
    local rel=$1 kind=$2 path="$prefix/$1"
    if [ -e "$path" ] || [ -L "$path" ]; then
        local ours=0
        if owned "$rel"; then
            case "$kind" in
            file) [ -f "$path" ] && [ ! -L "$path" ] && ours=1 ;;
            link) [ -L "$path" ] && ours=1 ;;
            esac
        fi
        [ "$ours" = 1 ] ||
            die "$path exists and was not installed by install.sh; move it away or pick another --prefix"
    fi
}

# Copies binary $1 to PREFIX/$2 unless an identical copy is already there;
# a replacement is renamed into place, so a running copy is never torn.
install_bin() {
    local src=$1 rel=$2 dest="$prefix/$2"
    created+=("$rel")
    if [ -f "$dest" ] && [ ! -L "$dest" ] && [ -x "$dest" ] && cmp -s "$src" "$dest"; then
        return 0
    fi
    claim "$rel" file
    local tmp="$dest.install-tmp.$$"
    { cp "$src" "$tmp" && chmod 755 "$tmp" && mv -f "$tmp" "$dest"; } 2>/dev/null || {
        rm -f "$tmp"
        die "cannot write $dest; pick a --prefix you can write to"
    }
    echo "installed $dest"
    changed=$((changed + 1))
}

install_bin "$from/kolosal" bin/kolosal
install_bin "$from/kolosal-python" bin/kolosal-python

# --- shims -------------------------------------------------------------------
shim_names=()
if [ -f "$repo/shims/names" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%%#*}
        line=${line//[[:space:]]/}
        [ -n "$line" ] || continue
        [[ "$line" =~ ^python[0-9.]*t?$ ]] ||
            die "shims/names: '$line' is not a python command name (python, python3, python3.12)"
        shim_names+=("$line")
    done <"$repo/shims/names"
else
    shim_names=(python python3)
fi

if [ "$shims" = 1 ]; then
    if [ -e "$shimdir" ] && [ ! -d "$shimdir" ]; then
        die "$shimdir exists and is not a directory; move it away or pick another --prefix"
    fi
    [ -e "$shimdir" ] || created+=("lib/kolosal/shims/")
    mkdir -p "$shimdir" 2>/dev/null || die "cannot create $shimdir; pick a --prefix you can write to"
    for name in "${shim_names[@]}"; do
        rel="lib/kolosal/shims/$name"
        dest="$prefix/$rel"
        created+=("$rel")
        if [ -L "$dest" ] && [ "$(readlink "$dest")" = "$link_target" ]; then
            continue
        fi
        claim "$rel" link
        { rm -f "$dest" && ln -s "$link_target" "$dest"; } 2>/dev/null ||
            die "cannot create $dest; pick a --prefix you can write to"
        echo "installed $dest -> $link_target"
        changed=$((changed + 1))
    done
else
    # --no-shims: take back the shims an earlier run created.
    while IFS= read -r rel; do
        case "$rel" in
        lib/kolosal/shims/*)
            # Only a link still pointing at kolosal-python: a file put there
            # since is not ours any more.
            if [ -L "$prefix/$rel" ] && [ "$(readlink "$prefix/$rel")" = "$link_target" ]; then
                rm -f "$prefix/$rel" 2>/dev/null || die "cannot remove $prefix/$rel"
                echo "removed $prefix/$rel (--no-shims)"
                changed=$((changed + 1))
            fi
            ;;
        esac
    done <<<"$previous"
    rmdir "$shimdir" 2>/dev/null || true
    [ -d "$shimdir" ] || created=($(printf '%s\n' "${created[@]}" | grep -vx 'lib/kolosal/shims/' || true))
fi

# The record of what install.sh owns, rewritten only when it changes.
new_record=$(printf '%s\n' "${created[@]}" | LC_ALL=C sort -u)
if [ "$new_record" != "$previous" ]; then
    { printf '%s\n' "$new_record" >"$record.tmp.$$" && mv -f "$record.tmp.$$" "$record"; } 2>/dev/null ||
        die "cannot write $record"
fi

# --- check and tell ----------------------------------------------------------
"$prefix/bin/kolosal" --version >/dev/null 2>&1 ||
    die "$prefix/bin/kolosal was installed but does not run here (built for another system?); build it on this system with cargo"

version=$("$prefix/bin/kolosal" --version 2>/dev/null || true)
if [ "$changed" = 0 ]; then
    echo "$version is already installed in $prefix (nothing changed)"
else
    echo "$version installed in $prefix"
fi

# Quote the prefix for a double-quoted shell string.
quoted=$(printf '%s' "$prefix" | sed 's/[\\"$`]/\\&/g')
if [ "$shims" = 1 ]; then
    echo "To run python and python3 through kolosal, put the shims first on PATH (shell profile, or ENV in a Dockerfile):"
    echo "export PATH=\"$quoted/lib/kolosal/shims:$quoted/bin:\$PATH\""
else
    echo "Put kolosal on PATH (shell profile, or ENV in a Dockerfile):"
    echo "export PATH=\"$quoted/bin:\$PATH\""
fi
