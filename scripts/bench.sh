#!/usr/bin/env bash
# `make bench`: build what is missing (plain kernel flavour), boot the
# patched kernel under QEMU once per guest size, run the in-guest
# benchmarks (tools/movgem-bench), and write bench/results/: latest.json,
# latest.md and the plots, SVG and PNG (scripts/bench-report.py).
#
# Boots (TCG, QEMU_CPUS vCPUs, default 2):
#   1 GiB: migration, latency, reclaim, cma, memory_offline, fragmentation
#   2 GiB: scale, fragmentation
# Knobs: BENCH_1G / BENCH_2G (the benchmark lists of each boot; empty
# skips the boot), BENCH_COUNTS (object counts of the scale benchmark,
# default 1000,10000,100000), BENCH_OUT (default bench/results),
# QEMU_CPUS, QEMU_TIMEOUT (per boot, default 1800 s: a boot takes 6 to 8
# minutes on an idle 2-core machine, more beside other jobs).
# Benchmarks print numbers; nothing here judges them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

start=$(date +%s)
out=${BENCH_OUT:-$MOVGEM_TOP/bench/results}
cpus=${QEMU_CPUS:-2}
timeout=${QEMU_TIMEOUT:-1800}
counts=${BENCH_COUNTS:-1000,10000,100000}
# size label, QEMU -m, benchmarks
boots=(
	"1GiB 1G ${BENCH_1G-migration,latency,reclaim,cma,memory_offline,fragmentation}"
	"2GiB 2G ${BENCH_2G-scale,fragmentation}"
)

prepare_boot plain bench
mkdir -p "$out"

report_args=()
rc=0
for boot in "${boots[@]}"; do
	read -r label mem list <<<"$boot"
	[ -n "${list:-}" ] || continue
	log="$MOVGEM_CACHE/logs/qemu-bench-$label.log"
	say "bench: $label guest: $list"
	t=$(date +%s)
	set +e
	QEMU_MEM=$mem QEMU_CPUS=$cpus QEMU_TIMEOUT=$timeout \
		QEMU_APPEND="movgem_bench=$list movgem_bench_size=$label movgem_bench_counts=$counts ${QEMU_APPEND:-}" \
		"$MOVGEM_TOP/scripts/run-qemu.sh" "$boot_kdir" "$boot_initrd" "$log" bench >/dev/null
	boot_rc=$?
	set -e
	took=$(($(date +%s) - t))
	say "bench: $label guest finished in ${took}s (verdict rc=$boot_rc)"
	grep -E '^movgem-bench: [^{]' "$log" | sed 's/\r$//' >&2 || true
	[ $boot_rc = 0 ] || rc=1
	report_args+=("$label:$mem:$took:$boot_rc:$log")
done

# The README's headline and the tables of Documentation/benchmarks.md
# are rewritten only by a run into the committed results directory.
readme=()
[ "$out" = "$MOVGEM_TOP/bench/results" ] &&
	readme=(--readme "$MOVGEM_TOP/README.md" --doc "$MOVGEM_TOP/Documentation/benchmarks.md")
# Debian's interpreter: python3-matplotlib (scripts/setup.sh) is
# installed for it, not for a python3 earlier on PATH.
/usr/bin/python3 "$MOVGEM_TOP/scripts/bench-report.py" --out "$out" --cpus "$cpus" \
	--kernel-dir "$boot_kdir" --ko "$boot_ko" --top "$MOVGEM_TOP" "${readme[@]}" \
	--total-s "$(($(date +%s) - start))" "${report_args[@]}"
say "bench: results in $out (took $(($(date +%s) - start)) s)"
exit $rc
