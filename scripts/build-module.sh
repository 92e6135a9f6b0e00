#!/usr/bin/env bash
# Build movgem.ko against a kernel build directory, in a build directory
# of its own per kernel ($MOVGEM_CACHE/module/<kernel>), so that builds
# against the debug and the plain kernel can run side by side and the
# source tree stays free of build products.
# Usage: scripts/build-module.sh KDIR [extra make args, e.g. CLIPPY=1]
# Prints the path of movgem.ko on stdout, and nothing else: all build
# output goes to stderr.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
exec 3>&1 1>&2

kdir=${1:?usage: build-module.sh KDIR}
shift
out="$MOVGEM_CACHE/module/$(basename "$kdir")"
mkdir -p "$out"
# Copy the sources that changed, with a new mtime, so that Kbuild
# rebuilds exactly what it would in place; drop copies whose source is
# gone.
(
	cd "$MOVGEM_TOP"
	find Kbuild include rust -type f \( -name Kbuild -o -name '*.rs' -o -name '*.c' -o -name '*.h' \) |
		while read -r f; do
			cmp -s "$f" "$out/$f" && continue
			mkdir -p "$out/$(dirname "$f")"
			cp "$f" "$out/$f"
		done
	(cd "$out" && find include rust -type f \( -name '*.rs' -o -name '*.c' -o -name '*.h' \)) |
		while read -r f; do
			[ -e "$f" ] || rm -f "$out/$f"
		done
)
# A clippy build lints every file: without its objects, nothing is
# skipped as up to date whose warnings would then go unseen.
case " $* " in
*" CLIPPY=1 "*) find "$out" \( -name '*.o' -o -name '*.ko' \) -delete ;;
esac
mapfile -t args < <(kmake_args)
say "module: building movgem.ko against $kdir in $out"
make -C "$kdir" -s "${args[@]}" M="$out" "$@" modules
[ -f "$out/movgem.ko" ] || die "movgem.ko was not built in $out"
echo "$out/movgem.ko" >&3
