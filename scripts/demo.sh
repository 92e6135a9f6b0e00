#!/usr/bin/env bash
# `make demo`: set up whatever is missing, boot the patched kernel under
# QEMU, load movgem.ko and show what the migrate hook does: a bound, idle
# object scattered through memory is moved by compaction with its data
# intact; with the hook switched off the same pinned pages stay put.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

"$MOVGEM_TOP/scripts/setup.sh"
kdir=$("$MOVGEM_TOP/scripts/build-kernel.sh" plain)
ko=$("$MOVGEM_TOP/scripts/build-module.sh" "$kdir")
"$MOVGEM_TOP/scripts/build-tools.sh"
initrd="$MOVGEM_CACHE/initramfs-demo.cpio.gz"
"$MOVGEM_TOP/scripts/make-initramfs.sh" "$initrd" "$ko"
mkdir -p "$MOVGEM_CACHE/logs"
log="$MOVGEM_CACHE/logs/qemu-demo.log"

set +e
"$MOVGEM_TOP/scripts/run-qemu.sh" "$kdir" "$initrd" "$log" demo >/dev/null
rc=$?
set -e
echo
echo "=== what the guest printed (full console: $log) ==="
grep -E '^(movgem|Node )' "$log" || true
echo
python3 "$MOVGEM_TOP/scripts/console.py" verdict "$log" | tail -1
exit $rc
