#!/usr/bin/env bash
# `make check`: the whole test suite, from a fresh machine.
#   1. install what is missing (scripts/setup.sh)
#   2. host tests: cargo test, console scan controls, rustfmt
#   3. patched kernel (debug flavour: KASAN, lockdep, DEBUG_VM, ...),
#      cached; checkpatch --strict on patches/; movgem.ko through clippy
#   4. two QEMU boots side by side:
#      - debug kernel: KUnit at module load, in-guest tests, stress,
#        fuzz, fault injection, kmemleak, clean console
#      - plain kernel (built first if not cached): igt's gem_shrink port
#        (scripts/gem-shrink.sh)
# Ends with "N passed, N failed" counting every test above.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

start=$(date +%s)
setup_once
kernels=built
if [ -f "$(kernel_dir debug)/.movgem-built" ] && [ -f "$(kernel_dir plain)/.movgem-built" ]; then
	kernels=cached
fi
mkdir -p "$MOVGEM_CACHE/logs"

say "host: cargo test"
# The inventory first: every test the binaries declare.  A binary killed
# by a signal, or skipped after an earlier one failed, reports nothing,
# so the sum of its `test result:` lines would only shrink: each test of
# the inventory that never reported counts as failed, and so does a
# failing cargo whose log shows no failure.
set +e
listed=$(cd "$MOVGEM_TOP/tools" && cargo test --quiet -- --list 2>/dev/null | grep -c ': test$')
(cd "$MOVGEM_TOP/tools" && cargo test --quiet 2>&1) | tee "$MOVGEM_CACHE/logs/cargo-test.log"
cargo_rc=${PIPESTATUS[0]}
set -e
read -r p f i < <(awk '/^test result:/ { p += $4; f += $6; i += $8 } END { print p + 0, f + 0, i + 0 }' \
	"$MOVGEM_CACHE/logs/cargo-test.log")
if [ $((p + f + i)) -lt "${listed:-0}" ]; then
	say "cargo test: $((p + f + i)) of the $listed tests listed reported"
	f=$((f + listed - p - f - i))
fi
if [ "$cargo_rc" != 0 ] && [ "$f" = 0 ]; then
	say "cargo test: exit status $cargo_rc with no failure counted"
	f=1
fi
[ "${listed:-0}" -gt 0 ] || { say "cargo test: no test listed"; f=$((f + 1)); }
counts cargo_test "$p $f"

# The console scan's own negative controls: logs it must fail.
set +e
python3 "$MOVGEM_TOP/scripts/console_test.py" | tee "$MOVGEM_CACHE/logs/console-test.log"
set -e
counts console_test "$(summary_of "$MOVGEM_CACHE/logs/console-test.log")"

# rustfmt follows `mod` from the crate roots: no file list to keep.
rc=0
rustfmt_tree --check || rc=$?
result rustfmt $rc

# checkpatch.pl comes with the debug kernel's tree (built here if not
# cached; prepare_boot then finds it in the cache).
kdir=$("$MOVGEM_TOP/scripts/build-kernel.sh" debug)
checkpatch_strict "$kdir" "$MOVGEM_TOP"/patches/*.patch

# The debug kernel's module is built through clippy: any warning fails
# the test.
prepare_boot debug check CLIPPY=1 CLIPPY_DRIVER="$CLIPPY_DRIVER"
rc=0
if grep -qE '^(warning|error)' "$boot_module_log"; then rc=1; fi
result clippy_and_compiler_warnings $rc

# The two boots run side by side: the debug boot's guest runs one test at
# a time and leaves a host CPU mostly free, which gem_shrink's workers (or,
# on a fresh machine, the plain kernel's build) use meanwhile.
log="$MOVGEM_CACHE/logs/qemu-check.log"
say "debug boot: in the background, console -> $log"
"$MOVGEM_TOP/scripts/run-qemu.sh" "$boot_kdir" "$boot_initrd" "$log" check \
	>"$MOVGEM_CACHE/logs/qemu-check.verdict" 2>&1 &
debug_pid=$!

say "gem-shrink: igt's gem_shrink port, then its -oom subtests with shrinker=0"
set +e
"$MOVGEM_TOP/scripts/gem-shrink.sh" >"$MOVGEM_CACHE/logs/gem-shrink.out" 2>"$MOVGEM_CACHE/logs/gem-shrink.err"
set -e
say "gem-shrink: done; waiting for the debug boot"
set +e
wait $debug_pid
set -e

say "debug boot: console log: $log"
cat "$MOVGEM_CACHE/logs/qemu-check.verdict"
counts debug_boot "$(python3 "$MOVGEM_TOP/scripts/console.py" count "$log")"

say "gem-shrink boot:"
cat "$MOVGEM_CACHE/logs/gem-shrink.err" "$MOVGEM_CACHE/logs/gem-shrink.out"
counts gem_shrink_boot "$(summary_of "$MOVGEM_CACHE/logs/gem-shrink.out")"

took=$(($(date +%s) - start))
say "took $took s"
[ "${CHECK_PUBLISH:-0}" != 1 ] || publish_check "$took" "$kernels" "$log" \
	"${GEM_SHRINK_LOG:-$MOVGEM_CACHE/logs/qemu-gem-shrink.log}"
summary
