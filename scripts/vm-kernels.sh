#!/usr/bin/env bash
# The VM kernel suite (`make test-vm`): boot Debian's stock kernels, which have kprobes and
# fentry (this machine's kernel has neither), on this machine's own root file system with
# virtme-ng, and run the tests of tests/vm inside each (pytest -m vm). Idempotent: packages,
# kernel images (cached under $ENGINE_VM_CACHE) and module trees are made once.
#
#   scripts/vm-kernels.sh [VERSION...]      default: every kernel in KERNELS below
#
# Environment: ENGINE_VM_CACHE (default /opt/engine-vm; not under /var/cache, which the guest
# hides), ENGINE_VM_OUT (default build/vm: results, logs; shared read-write with the guest),
# ENGINE_VM_TIMEOUT (seconds per kernel, default 1800: ~8 min each on an idle 2-vCPU machine,
# far more when it is shared), ENGINE_VM_KVM (auto|0|1).
# Exit: 0 every kernel passed, 1 some kernel failed or timed out, 2 set-up failed.
# See /work/shared/VM-KERNELS.md for why each step is as it is.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
say() { printf 'test-vm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

# version -> Debian package holding /boot/vmlinuz-<version>
declare -A KERNELS=(
    [6.1.0-57-amd64]=linux-image-6.1.0-57-amd64
    [6.12.117+deb12-amd64]=linux-image-6.12.117+deb12-amd64-unsigned
)
ORDER=(6.1.0-57-amd64 6.12.117+deb12-amd64)

cache=${ENGINE_VM_CACHE:-/opt/engine-vm}
out=${ENGINE_VM_OUT:-$here/build/vm}
limit=${ENGINE_VM_TIMEOUT:-1800}
venv=$here/.venv
case "$cache" in /var/cache/*) die "ENGINE_VM_CACHE=$cache: the guest hides /var/cache; use /opt or /tmp" ;; esac

[ "$(id -u)" -eq 0 ] || die "needs root (BPF inside the guest runs as the invoking user)"
[ -x "$venv/bin/python" ] || die "no $venv: run scripts/setup.sh first (make test-vm does)"

# --- 1. host packages ------------------------------------------------------------------------
need=(qemu-system-x86 busybox-static kmod)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x "$venv/bin/vng" ]; then
    say "installing virtme-ng into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check virtme-ng
fi

# bcc inside the guest needs a header tree; the one setup.sh linked for this machine
# (Debian's generic 6.1 headers) serves both kernels: bcc 0.26 cannot parse 6.12's own, and
# the engine reads offsets from BTF anyway.
headers=$(readlink -f "/lib/modules/$(uname -r)/build" || true)
[ -d "$headers" ] || die "no header tree at /lib/modules/$(uname -r)/build: run scripts/setup.sh"
source_tree=$(readlink -f "/lib/modules/$(uname -r)/source" 2>/dev/null || echo "$headers")

# --- 2. kernels: download, extract, module tree -------------------------------------------
prepare() { # version -> prints the extracted root
    local ver=$1 pkg=${KERNELS[$1]} root=$cache/root-$1
    mkdir -p "$cache"
    local deb
    deb=$(ls "$cache/${pkg}"_*.deb 2>/dev/null | head -n 1 || true)
    if [ -z "$deb" ]; then
        say "downloading $pkg"
        (cd "$cache" && { apt-get download -q "$pkg" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && apt-get download -q "$pkg" >/dev/null; }; }) ||
            die "apt-get download $pkg failed"
        deb=$(ls "$cache/${pkg}"_*.deb | head -n 1)
    fi
    if [ ! -e "$root/.extracted" ]; then
        rm -rf "$root"
        dpkg -x "$deb" "$root"
        touch "$root/.extracted"
    fi
    [ -f "$root/boot/vmlinuz-$ver" ] || die "$deb has no boot/vmlinuz-$ver"
    local mods=$root/lib/modules/$ver
    ln -sfn "$headers" "$mods/build"
    ln -sfn "$source_tree" "$mods/source"
    [ -s "$mods/modules.dep" ] && [ "$mods/modules.dep" -nt "$mods/modules.order" ] ||
        depmod -b "$root" "$ver"
    echo "$root"
}

# --- 3. KVM or emulation ---------------------------------------------------------------------
# This machine's /dev/kvm is PVM (nested, software): stock kernels hang after the
# decompressor there. Use KVM only on a real one (VMX/SVM flags, not PVM), and only after a
# short trial boot; otherwise emulate (TCG).
kvm_flag=--disable-kvm
kvm_choice=${ENGINE_VM_KVM:-auto}
kvm_usable() {
    [ -w /dev/kvm ] || return 1
    [ -d /sys/module/kvm_pvm ] && return 1
    grep -qE '^flags.* (vmx|svm)( |$)' /proc/cpuinfo || return 1
    return 0
}

# --- 4. boot each kernel -----------------------------------------------------------------------
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=("${ORDER[@]}")
for v in "${versions[@]}"; do
    [ -n "${KERNELS[$v]:-}" ] || die "unknown kernel $v; known: ${ORDER[*]}"
done

mkdir -p "$out"
roots=()
for v in "${versions[@]}"; do roots+=("$(prepare "$v")"); done

if [ "$kvm_choice" = 1 ] || { [ "$kvm_choice" = auto ] && kvm_usable; }; then
    trial=$out/kvm-trial
    mkdir -p "$trial"
    printf '#!/bin/sh\necho ok > %s/ok\n' "$trial" >"$trial/inner.sh"
    chmod +x "$trial/inner.sh"
    rm -f "$trial/ok"
    PATH=$venv/bin:$PATH timeout -k 5 60 "$venv/bin/vng" --rwdir "$trial" --run "${roots[0]}/boot/vmlinuz-${versions[0]}" \
        --memory 1G --cpus 1 -- "$trial/inner.sh" >/dev/null 2>&1 || true
    if [ -s "$trial/ok" ]; then
        kvm_flag=
        say "KVM works: using it"
    else
        say "KVM trial boot failed within 60 s: emulating (TCG)"
    fi
else
    say "no usable KVM here ($( [ -d /sys/module/kvm_pvm ] && echo 'PVM' || echo 'no VMX/SVM or /dev/kvm')): emulating (TCG)"
fi

status=0
summary=()
for i in "${!versions[@]}"; do
    ver=${versions[$i]} root=${roots[$i]}
    dir=$out/$ver
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$dir/inner.sh" <<EOF
#!/bin/sh
# Runs inside the guest (kernel $ver): the vm-marked tests, results into $dir. The root file
# system is read-only there: no pytest cache, and no hypothesis plugin (its database would warn).
date +%s.%N > $dir/guest-start
cd $here
PYTHONUNBUFFERED=1 ENGINE_VM_OUT=$dir ENGINE_VM_KERNEL=$ver timeout $((limit - 60)) \\
    $venv/bin/python -m pytest -m vm tests/vm \\
    -p no:cacheprovider -p no:hypothesispytest -v -rA --durations=0 --junitxml=$dir/junit.xml > $dir/pytest.log 2>&1
echo \$? > $dir/rc
date +%s.%N > $dir/guest-end
EOF
    chmod +x "$dir/inner.sh"
    say "booting $ver ($([ -n "$kvm_flag" ] && echo emulated || echo KVM)), tests -> $dir/pytest.log"
    t0=$(date +%s.%N)
    set +e
    # shellcheck disable=SC2086
    PATH=$venv/bin:$PATH timeout -k 10 "$limit" "$venv/bin/vng" $kvm_flag --rwdir "$out" \
        --run "$root/boot/vmlinuz-$ver" --memory 3G --cpus 2 -- "$dir/inner.sh" \
        >"$dir/vng.log" 2>&1 </dev/null
    vng_rc=$?
    set -e
    t1=$(date +%s.%N)
    rc=$(cat "$dir/rc" 2>/dev/null || echo none)
    "$venv/bin/python" - "$dir" "$ver" "$t0" "$t1" "$vng_rc" "$rc" <<'EOF' || true
import json, pathlib, sys
d, ver, t0, t1, vng_rc, rc = sys.argv[1:]
d = pathlib.Path(d)
def read(name):
    try:
        return float((d / name).read_text())
    except (OSError, ValueError):
        return None
start, end = read("guest-start"), read("guest-end")
total = float(t1) - float(t0)
timing = {"kernel": ver, "total_s": round(total, 1), "vng_exit": int(vng_rc),
          "pytest_exit": None if rc == "none" else int(rc)}
if start is not None:
    timing["boot_s"] = round(start - float(t0), 1)
if start is not None and end is not None:
    timing["tests_s"] = round(end - start, 1)
try:  # what pytest counted inside the guest; a skip there is a failure (nothing else runs it)
    import xml.etree.ElementTree as ET
    suite = ET.parse(d / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    timing["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
except (OSError, ET.ParseError, IndexError):
    pass
loads = sorted(d.glob("load-*.json"))
if loads:
    secs = [json.loads(p.read_text())["ready_s"] for p in loads]
    timing["loads"] = len(secs)
    timing["compile_s"] = {"min": round(min(secs), 1), "max": round(max(secs), 1)}
(d / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
EOF
    tail -n 3 "$dir/pytest.log" 2>/dev/null | sed "s/^/test-vm: $ver: /" >&2 || true
    line="$ver: $(cat "$dir/timing.json" 2>/dev/null | tr -d '\n ' || echo '{}')"
    skipped=$("$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("tests", {}).get("skipped", 0))' "$dir/timing.json" 2>/dev/null || echo 0)
    [ "$rc" = 0 ] && [ "$skipped" != 0 ] && rc="0 but $skipped skipped"
    if [ "$rc" != 0 ]; then
        status=1
        if [ "$vng_rc" = 124 ]; then
            line="$line FAILED (timed out after ${limit} s)"
        else
            line="$line FAILED (pytest exit $rc; see $dir/pytest.log)"
        fi
    else
        line="$line passed"
    fi
    summary+=("$line")
done

say "summary (seconds; boot = host start to guest shell, compile = engine start to Tracing):"
for line in "${summary[@]}"; do say "  $line"; done
exit $status
