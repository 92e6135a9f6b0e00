#!/usr/bin/env bash
# Pack busybox, movgem.ko, the test and benchmark binaries and the guest
# runner into a gzip'd cpio.
# Usage: scripts/make-initramfs.sh OUTPUT MODULE (MODULE: the movgem.ko
# that scripts/build-module.sh printed)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

out=${1:?usage: make-initramfs.sh OUTPUT MODULE}
ko=${2:?usage: make-initramfs.sh OUTPUT MODULE}
bin="$MOVGEM_TOP/tools/target/x86_64-unknown-linux-gnu/release"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
cp /bin/busybox "$root/bin/busybox"
cp "$MOVGEM_TOP/scripts/guest/init" "$root/init"
chmod +x "$root/init"
cp "$ko" "$root/lib/modules/movgem.ko"
cp "$bin/movgem-tests" "$bin/movgem-stress" "$bin/movgem-bench" "$bin/gem-shrink" "$root/bin/"
(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out"
say "initramfs: $out ($(du -h "$out" | cut -f1))"
