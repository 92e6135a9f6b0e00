#!/usr/bin/env bash
# `make gem-shrink`: igt's gem_shrink ported to movgem
# (tools/movgem-tests/src/bin/gem-shrink), in its own QEMU boot on the
# debug kernel.  Not part of `make check` yet: it does not pass reliably
# (README, "Status"; Documentation/design.md, "gem_shrink port").
# Ends with "N passed, N failed" for that boot.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

"$MOVGEM_TOP/scripts/setup.sh"
mkdir -p "$MOVGEM_CACHE/logs"
kdir=$("$MOVGEM_TOP/scripts/build-kernel.sh" debug)
"$MOVGEM_TOP/scripts/build-module.sh" "$kdir"
"$MOVGEM_TOP/scripts/build-tools.sh"
initrd="$MOVGEM_CACHE/initramfs-gem-shrink.cpio.gz"
"$MOVGEM_TOP/scripts/make-initramfs.sh" "$initrd"
passed=0 failed=0
result() { # name ok?
	if [ "$2" = 0 ]; then passed=$((passed + 1)); say "PASS $1"; else failed=$((failed + 1)); say "FAIL $1"; fi
}

# gem-shrink sizes itself from the guest's RAM (igt's formula) and must
# push many times RAM through the driver before the shrinker has been
# shown to work; on the KASAN kernel under TCG that costs time in
# proportion to RAM, so it gets its own boot with little of it
# (Documentation/design.md, "gem_shrink port").  The boot counts its own
# module load, KUnit run, swap, both gem-shrink runs and clean console.
gslog="$MOVGEM_CACHE/logs/qemu-gem-shrink.log"
set +e
QEMU_MEM=${GEM_SHRINK_MEM:-192M} QEMU_TIMEOUT=${GEM_SHRINK_TIMEOUT:-900} \
	"$MOVGEM_TOP/scripts/run-qemu.sh" "$kdir" "$initrd" "$gslog" gem_shrink
set -e
read -r p f < <(python3 "$MOVGEM_TOP/scripts/console.py" count "$gslog")
passed=$((passed + p))
failed=$((failed + f))
# A boot cut short by its timeout prints neither gem-shrink result: count
# each missing one as a failure.
for t in gem_shrink gem_shrink_oom_fails_without_shrinker; do
	grep -aqE "movgem-test: (PASS|FAIL) $t\b" "$gslog" || result "$t (never reported)" 1
done

python3 "$MOVGEM_TOP/scripts/console.py" verdict "$gslog" || true
say "console log: $gslog"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
