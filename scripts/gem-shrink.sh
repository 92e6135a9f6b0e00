#!/usr/bin/env bash
# igt's gem_shrink ported to movgem (tools/movgem-tests/src/bin/gem-shrink)
# in its own QEMU boot: all 51 subtests with the shrinker on, then the
# eight -oom subtests whose objects hold their pages with `shrinker=0`,
# each of which must fail by an OOM kill or ENOMEM, which decides it at
# once; a hang that the watchdog ends is not that failure.  `make check`
# runs it beside the main boot;
# `make gem-shrink` runs it alone and `make soak` at igt's sizing
# (passes, durations, leaks).  Ends with "N passed, N failed".
#
# Knobs: GEM_SHRINK_KERNEL (plain, or debug), GEM_SHRINK_MEM (384M),
# GEM_SHRINK_TIMEOUT (boot limit, 1800 s), GEM_SHRINK_DURATION (seconds
# per subtest, 3; igt's is 20), GEM_SHRINK_PASSES (passes per worker
# iteration, 4; 0 is igt's), GEM_SHRINK_BACKGROUND_PASSES (passes per
# leak or userptr worker iteration, 1; 0: as GEM_SHRINK_PASSES),
# GEM_SHRINK_LEAK_FOREVER (1: leak workers never unmap what they leak,
# as igt's, and their OOM kills do not fail a subtest with the shrinker
# on; 0, the default: unmapped every iteration),
# GEM_SHRINK_WATCHDOG (120 s per subtest with the shrinker),
# GEM_SHRINK_OOM_WATCHDOG (300 s per subtest without it),
# GEM_SHRINK_ARGS (more gem-shrink options for the first run, e.g.
# "--run-subtest *-oom"), GEM_SHRINK_LOG (console log), QEMU_APPEND.
#
# Why the plain kernel and these sizes: Documentation/design.md,
# "gem_shrink port".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

flavour=${GEM_SHRINK_KERNEL:-plain}
prepare_boot "$flavour" gem-shrink

# hang_timeout_ms: the simulated ring runs one batch at a time, so every
# worker's hang (18 workers, a hang per pass) waits for the resets of the
# ones before it; 100 ms keeps a `hang` subtest inside its watchdog, as
# i915's per-engine reset keeps igt's inside its timeout.
# userptr_keep_pages=1: userptr objects keep their pages after use, as
# i915's, until the shrinker, the OOM notifier or an invalidation drops
# them; gem-shrink then requires its -userptr, -userptr-dirty and -oom
# subtests to show pages kept and released (both runs share this boot).
watchdog=${GEM_SHRINK_WATCHDOG:-120}
append="movgem_params=\"hang_timeout_ms=100 userptr_keep_pages=1\""
append+=" movgem_gem_shrink_duration=${GEM_SHRINK_DURATION:-3}"
append+=" movgem_gem_shrink_passes=${GEM_SHRINK_PASSES:-4}"
append+=" movgem_gem_shrink_background_passes=${GEM_SHRINK_BACKGROUND_PASSES:-1}"
append+=" movgem_gem_shrink_leak_forever=${GEM_SHRINK_LEAK_FOREVER:-0}"
append+=" movgem_gem_shrink_subtest_timeout=$watchdog"
# Without the shrinker an OOM kill or ENOMEM decides each subtest within
# seconds (its objects' pages are unevictable then: Documentation/
# design.md); the watchdog is only the give-up, and firing is a failure.
# 300 s, not 120: on a loaded 2-core host (make check beside a second
# QEMU boot) execbufN-oom, execbufX-oom and hang-oom took 112, over 120
# and 120 s to reach their OOM kill (7cbc095); alone they take 7-85 s.
append+=" movgem_gem_shrink_oom_timeout=${GEM_SHRINK_OOM_WATCHDOG:-300}"
[ -z "${GEM_SHRINK_ARGS:-}" ] || append+=" movgem_gem_shrink_args=\"$GEM_SHRINK_ARGS\""
gslog=${GEM_SHRINK_LOG:-$MOVGEM_CACHE/logs/qemu-gem-shrink.log}
start=$(date +%s)
set +e
QEMU_MEM=${GEM_SHRINK_MEM:-384M} QEMU_TIMEOUT=${GEM_SHRINK_TIMEOUT:-1800} \
	QEMU_APPEND="$append ${QEMU_APPEND:-}" \
	"$MOVGEM_TOP/scripts/run-qemu.sh" "$boot_kdir" "$boot_initrd" "$gslog" gem_shrink
set -e
counts gem_shrink_console "$(python3 "$MOVGEM_TOP/scripts/console.py" count "$gslog")"
# A boot cut short by its timeout prints neither gem-shrink result: count
# each missing one as a failure.
for t in gem_shrink gem_shrink_oom_fails_without_shrinker; do
	grep -aqE "movgem-test: (PASS|FAIL) $t\b" "$gslog" || result "$t (never reported)" 1
done

# Per-subtest outcomes, for the log reader.
grep -aE '^Subtest |^[0-9]+ passed, [0-9]+ failed' "$gslog" | sed 's/\r$//; s/^/  /' >&2 || true
say "gem-shrink: console log: $gslog (took $(($(date +%s) - start)) s, $flavour kernel)"
summary
