#!/usr/bin/env bash
# `make check`: the whole test suite, from a fresh machine.
#   1. install what is missing (scripts/setup.sh)
#   2. host tests: cargo test, rustfmt, checkpatch --strict on patches/
#   3. patched kernel (debug flavour: lockdep, DEBUG_VM, ...), cached
#   4. movgem.ko, static guest tools, initramfs
#   5. QEMU: KUnit suite at module load, in-guest tests, clean console
#   6. QEMU: igt's gem_shrink port (scripts/gem-shrink.sh), own boot
# Ends with "N passed, N failed" counting every test above.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

start=$(date +%s)
passed=0 failed=0
pass() { passed=$((passed + $1)); }
fail() { failed=$((failed + $1)); }
result() { # name ok?
	if [ "$2" = 0 ]; then pass 1; say "PASS $1"; else fail 1; say "FAIL $1"; fi
}

"$MOVGEM_TOP/scripts/setup.sh"
mkdir -p "$MOVGEM_CACHE/logs"

say "host: cargo test"
set +e
(cd "$MOVGEM_TOP/tools" && cargo test --quiet 2>&1) | tee "$MOVGEM_CACHE/logs/cargo-test.log"
set -e
read -r p f < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' \
	"$MOVGEM_CACHE/logs/cargo-test.log")
grep -q '^test result:' "$MOVGEM_CACHE/logs/cargo-test.log" || f=$((f + 1))
pass "$p"
fail "$f"

# The console scan's own negative controls: logs it must fail.
set +e
python3 "$MOVGEM_TOP/scripts/console_test.py" | tee "$MOVGEM_CACHE/logs/console-test.log"
set -e
read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' \
	"$MOVGEM_CACHE/logs/console-test.log")
if [ -n "${p:-}" ]; then
	pass "$p"
	fail "$f"
else
	result "console_test (no summary)" 1
fi

set +e
rustfmt --check --edition 2021 "$MOVGEM_TOP"/rust/*.rs "$MOVGEM_TOP"/tools/*/src/*.rs "$MOVGEM_TOP"/tools/*/tests/*.rs "$MOVGEM_TOP"/tools/*/src/bin/*/*.rs
result rustfmt $?
set -e

kdir=$("$MOVGEM_TOP/scripts/build-kernel.sh" debug)

set +e
cp_rc=0
for p in "$MOVGEM_TOP"/patches/*.patch; do
	"$kdir/scripts/checkpatch.pl" --strict --quiet --no-tree "$p" || cp_rc=1
done
result checkpatch_strict $cp_rc
set -e

# The module is built once, through clippy: any warning fails the test.
"$MOVGEM_TOP/scripts/build-module.sh" "$kdir" CLIPPY=1 CLIPPY_DRIVER="$CLIPPY_DRIVER" 2>&1 |
	tee "$MOVGEM_CACHE/logs/module-build.log"
[ -f "$MOVGEM_TOP/movgem.ko" ] || die "movgem.ko was not built"
! grep -qE '^(warning|error)' "$MOVGEM_CACHE/logs/module-build.log"
result clippy_and_compiler_warnings $?
"$MOVGEM_TOP/scripts/build-tools.sh"
initrd="$MOVGEM_CACHE/initramfs-check.cpio.gz"
"$MOVGEM_TOP/scripts/make-initramfs.sh" "$initrd"

log="$MOVGEM_CACHE/logs/qemu-check.log"
set +e
"$MOVGEM_TOP/scripts/run-qemu.sh" "$kdir" "$initrd" "$log" check
set -e
read -r p f < <(python3 "$MOVGEM_TOP/scripts/console.py" count "$log")
pass "$p"
fail "$f"

say "console log: $log"

# igt's gem_shrink port, in its own boot (plain kernel, small guest).
say "gem-shrink: igt's gem_shrink port, then its -oom subtests with shrinker=0"
set +e
"$MOVGEM_TOP/scripts/gem-shrink.sh" | tee "$MOVGEM_CACHE/logs/gem-shrink.out"
set -e
read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' \
	"$MOVGEM_CACHE/logs/gem-shrink.out" | tail -1)
if [ -n "${p:-}" ]; then
	pass "$p"
	fail "$f"
else
	result "gem_shrink_boot (no summary)" 1
fi

say "took $(($(date +%s) - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
