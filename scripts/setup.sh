#!/usr/bin/env bash
# One-command, idempotent set-up for a Debian 12 machine (and close relatives):
#   1. distribution packages (bcc comes from python3-bpfcc, not PyPI),
#   2. a kernel header tree at /lib/modules/$(uname -r)/build (bcc compiles against it),
#   3. tracefs mounted (tracepoints attach through it),
#   4. a virtualenv in .venv made from /usr/bin/python3 with --system-site-packages,
#      so it sees Debian's bcc module, with the engine installed in editable mode.
# Each step checks first and does nothing when already done, so a second run is quick.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
say() { printf 'setup: %s\n' "$*" >&2; }

is_root() { [ "$(id -u)" -eq 0 ]; }
as_root() { if is_root; then "$@"; else sudo "$@"; fi; }

# --- 1. distribution packages -------------------------------------------------
packages=(python3-bpfcc python3-venv python3-pip bpftool iputils-ping iproute2 util-linux procps make)
# The oracles the real-kernel tests compare with: bcc's shipped tools and bpftrace.
packages+=(bpfcc-tools bpftrace)
# engine serve's test scrapes it with a real Prometheus server; the same package ships
# promtool, whose `check metrics` judges every exposition the tests scrape (tests/promcheck.py).
packages+=(prometheus)
# ELF symbol tables and USDT notes (engine.kernel.elf), and what the tests build USDT programs with.
packages+=(python3-pyelftools systemtap-sdt-dev gcc)
# A real browser loads `-o flamegraph`'s SVG in the tests (headless).
packages+=(chromium)
# Real containers for --container/--pod and the container decoders (tests/kernel/test_containers.py):
# podman with runc (crun refuses this machine's v1/v2 hybrid cgroups), an image made from busybox.
# containerd (the runtime of most Kubernetes nodes; its client ctr) for the containerd source.
packages+=(podman runc busybox-static containerd)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q >/dev/null
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v promtool >/dev/null; then
    # A prometheus from elsewhere (a tarball, a snap) may come without it.
    say "warning: no promtool on PATH; \`apt-cache policy prometheus\` says which package would bring it" \
        "(the exposition checks skip without it, and fail under CI=true)"
fi

# --- 2. kernel headers -------------------------------------------------------
kver=$(uname -r)
moddir=/lib/modules/$kver
if [ -e "$moddir/build" ] || [ -L "$moddir/build" ]; then
    : # never touch an existing build link or tree
elif apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
    say "installing the running kernel's headers (linux-headers-$kver)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "linux-headers-$kver" >/dev/null
else
    arch=$(dpkg --print-architecture)
    if ! dpkg-query -W -f='${Status}' "linux-headers-$arch" 2>/dev/null | grep -q 'install ok installed'; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "linux-headers-$arch" >/dev/null
    fi
    # The metapackage depends on exactly one versioned header package; resolve it now,
    # since the mirror's ABI number moves.
    dep=$(dpkg-query -W -f='${Depends}' "linux-headers-$arch" | tr ',' '\n' |
        sed -n 's/^ *\(linux-headers-[^ ]*\).*/\1/p' | head -n 1)
    build=/usr/src/${dep}
    source=/usr/src/${dep%-"$arch"}-common
    [ -d "$build" ] || { say "error: expected $build after installing linux-headers-$arch"; exit 1; }
    as_root mkdir -p "$moddir"
    as_root ln -sfn "$build" "$moddir/build"
    [ -d "$source" ] && { [ -e "$moddir/source" ] || as_root ln -sfn "$source" "$moddir/source"; }
    say "no headers packaged for kernel $kver: linked $moddir/build -> $build (generic; the engine reads struct offsets from BTF, not from these headers)"
fi

# --- 3. tracefs ----------------------------------------------------------------
if [ ! -e /sys/kernel/tracing/events ] && [ ! -e /sys/kernel/debug/tracing/events ]; then
    if is_root; then
        mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null &&
            say "mounted tracefs at /sys/kernel/tracing" ||
            say "warning: could not mount tracefs; tracepoints will not attach"
    fi
fi

# --- 4. Python environment -----------------------------------------------------
venv=.venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys; sys.exit(sys.base_prefix != "/usr")' 2>/dev/null; then
    rm -rf "$venv"
    say "creating $venv from /usr/bin/python3 (--system-site-packages, to see Debian's bcc)"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
stamp="$venv/.engine-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing the engine and its test tools into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" >"$stamp"
fi
