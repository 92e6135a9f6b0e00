#!/usr/bin/env bash
# Build the patched Linux 6.12 kernel of one flavour, or reuse the cached
# build.  Usage: scripts/build-kernel.sh [debug|plain]
# Prints the build directory on stdout, and nothing else: all build
# output goes to stderr.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
exec 3>&1 1>&2

flavour=${1:-debug}
case $flavour in
debug | plain) ;;
*) die "unknown kernel flavour '$flavour' (debug or plain)" ;;
esac
[ -r "$KERNEL_TARBALL" ] || die "$KERNEL_TARBALL missing: run scripts/setup.sh"

dir=$(kernel_dir "$flavour")
if [ -f "$dir/.movgem-built" ]; then
	say "kernel ($flavour): cached build $dir"
	echo "$dir" >&3
	exit 0
fi

say "kernel ($flavour): building in $dir (about 8 minutes for debug, 7 for plain, on 2 cores)"
mkdir -p "$(dirname "$dir")"
tmp="$dir.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

tar -xf "$KERNEL_TARBALL" -C "$tmp" --strip-components=1
for p in "$MOVGEM_TOP"/patches/*.patch; do
	say "applying $(basename "$p")"
	patch -d "$tmp" -p1 --quiet --forward <"$p"
done

mapfile -t args < <(kmake_args)
make -C "$tmp" -s "${args[@]}" tinyconfig
fragments=("$MOVGEM_TOP/scripts/kconfig/movgem.config")
[ "$flavour" = plain ] || fragments+=("$MOVGEM_TOP/scripts/kconfig/$flavour.config")
(cd "$tmp" && scripts/kconfig/merge_config.sh -m .config "${fragments[@]}" >/dev/null)
make -C "$tmp" -s "${args[@]}" olddefconfig

# merge_config.sh only warns when Kconfig drops a symbol; a dropped
# symbol here means a test would silently run without what it needs.
missing=0
for f in "${fragments[@]}"; do
	while IFS= read -r line; do
		case $line in CONFIG_*=*) ;; *) continue ;; esac
		sym=${line%%=*}
		if [ "${line#*=}" = n ]; then
			grep -q "^$sym=" "$tmp/.config" || continue
		elif grep -qxF "$line" "$tmp/.config"; then
			continue
		fi
		{
			say "config: wanted '$line', got '$(grep "^$sym=" "$tmp/.config" || echo 'not set')'"
			missing=1
		}
	done <"$f"
done
[ $missing = 0 ] || die "kernel config is missing symbols the fragments ask for"

make -C "$tmp" -s "${args[@]}" rustavailable
make -C "$tmp" -s "${args[@]}" -j"$JOBS" all
touch "$tmp/.movgem-built"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
say "kernel ($flavour): built $dir"
echo "$dir" >&3
