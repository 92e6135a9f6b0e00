#!/usr/bin/env bash
# `make demo`: set up whatever is missing, boot the patched kernel under
# QEMU, load movgem.ko and show what the migrate hook does: a bound, idle
# object scattered through memory is moved by compaction with its data
# intact; with the hook switched off the same pinned pages stay put.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

prepare_boot plain demo
log="$MOVGEM_CACHE/logs/qemu-demo.log"

set +e
"$MOVGEM_TOP/scripts/run-qemu.sh" "$boot_kdir" "$boot_initrd" "$log" demo >/dev/null
rc=$?
set -e
echo
echo "=== what the guest printed (full console: $log) ==="
grep -E '^(movgem|Node )' "$log" || true
echo
# The /proc/buddyinfo snapshots above as one picture (matplotlib, from
# Debian's python3-matplotlib: scripts/setup.sh); no picture, no failure.
pic="$MOVGEM_CACHE/demo"
if /usr/bin/python3 "$MOVGEM_TOP/scripts/bench-report.py" --out "$pic" --demo-buddyinfo "$log" >/dev/null; then
	echo "free memory by block order, before and after each round: $pic/demo-buddyinfo.png (.svg)"
fi
python3 "$MOVGEM_TOP/scripts/console.py" verdict "$log" | tail -1
# DEMO_PUBLISH=1 (for the tree's maintainers): a clean run rewrites the
# README's excerpt, Documentation/usage.md's full output and the
# published picture, naming this commit, module and kernel.
if [ "${DEMO_PUBLISH:-0}" = 1 ]; then
	if [ $rc = 0 ] && python3 "$MOVGEM_TOP/scripts/console.py" verdict "$log" >/dev/null; then
		/usr/bin/python3 "$MOVGEM_TOP/scripts/bench-report.py" --demo-publish "$log" \
			--top "$MOVGEM_TOP" --ko "$boot_ko" --kernel-dir "$boot_kdir" \
			--readme "$MOVGEM_TOP/README.md" --doc "$MOVGEM_TOP/Documentation/usage.md" \
			--out "$MOVGEM_TOP/Documentation/images" >/dev/null
		echo "published: README.md, Documentation/usage.md, Documentation/images/demo-buddyinfo.*"
	else
		echo "DEMO_PUBLISH: the run failed; nothing published" >&2
	fi
fi
exit $rc
