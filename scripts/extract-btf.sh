#!/usr/bin/env bash
# Extract a kernel's BTF from its Debian image package, for `engine validate --btf` and the
# test fixtures in tests/fixtures/btf/ (linux-<version>.btf.xz).
#
#   scripts/extract-btf.sh PACKAGE.deb|VMLINUZ [OUT.btf.xz]
#
# A vmlinuz is a bzImage: a decompressor followed by the compressed ELF vmlinux (xz on
# Debian 6.1, zstd on 6.12). Find the stream by its magic bytes, decompress from there (the
# trailing bytes after the stream are ignored), and keep the .BTF section, raw, xz -9.
set -euo pipefail
say() { printf 'extract-btf: %s\n' "$*" >&2; }
[ $# -ge 1 ] || { say "usage: $0 PACKAGE.deb|VMLINUZ [OUT.btf.xz]"; exit 2; }
for tool in objcopy xz zstd python3; do
    command -v "$tool" >/dev/null || { say "needs $tool (apt-get install binutils xz-utils zstd)"; exit 2; }
done
input=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
case "$input" in
*.deb)
    dpkg-deb --fsys-tarfile "$input" | tar -x -C "$work" --wildcards './boot/vmlinuz-*'
    vmlinuz=$(ls "$work"/boot/vmlinuz-* | head -n 1)
    ;;
*) vmlinuz=$input ;;
esac
version=${vmlinuz##*/vmlinuz-}
out=${2:-linux-$version.btf.xz}

# Try each xz and zstd stream start in the image until one decompresses to an ELF.
python3 - "$vmlinuz" "$work/vmlinux" <<'PY'
import lzma, subprocess, sys
data = open(sys.argv[1], "rb").read()
magics = {b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
for magic, kind in magics.items():
    at = data.find(magic)
    while at >= 0:
        blob = b""
        if kind == "xz":
            try:
                blob = lzma.LZMADecompressor().decompress(data[at:])
            except lzma.LZMAError:
                pass
        else:
            run = subprocess.run(["zstd", "-dc"], input=data[at:], capture_output=True)
            blob = run.stdout
        if blob[:4] == b"\x7fELF":
            open(sys.argv[2], "wb").write(blob)
            print(f"found a {kind} stream at offset {at}: vmlinux {len(blob)} bytes", file=sys.stderr)
            sys.exit(0)
        at = data.find(magic, at + 1)
sys.exit(f"no xz or zstd stream holding an ELF in {sys.argv[1]}")
PY
objcopy -O binary --only-section=.BTF "$work/vmlinux" "$work/btf"
[ -s "$work/btf" ] || { say "$vmlinuz has no .BTF section (CONFIG_DEBUG_INFO_BTF off?)"; exit 1; }
xz -9 -c "$work/btf" >"$out"
say "$out: BTF of $version, $(stat -c %s "$work/btf") bytes raw, $(stat -c %s "$out") xz"
