# shellcheck shell=bash
# Common settings and steps of the movgem scripts.  Source it; do not
# run it.

MOVGEM_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Kernel builds, the initramfs and QEMU logs live outside the repository.
MOVGEM_CACHE=${MOVGEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/movgem}
KERNEL_TARBALL=${KERNEL_TARBALL:-/usr/src/linux-source-6.12.tar.xz}
KERNEL_PKG=linux-source-6.12
RUSTC_KERNEL=${RUSTC_KERNEL:-/usr/bin/rustc}
BINDGEN=${BINDGEN:-$HOME/.cargo/bin/bindgen}
# clippy-driver must match RUSTC_KERNEL (Debian's rust-web-clippy).
CLIPPY_DRIVER=${CLIPPY_DRIVER:-/usr/bin/clippy-driver}
JOBS=${JOBS:-$(nproc)}

export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '[movgem] %s\n' "$*" >&2; }
die() { printf '[movgem] error: %s\n' "$*" >&2; exit 1; }

# make(1) arguments for anything that builds against the kernel tree.
kmake_args() {
	printf '%s\n' ARCH=x86_64 LLVM=1 "RUSTC=$RUSTC_KERNEL" "BINDGEN=$BINDGEN"
}

# The cache key of a kernel flavour: package version, patches, config
# fragments and the build script itself.
kernel_hash() {
	local flavour=$1
	{
		dpkg-query -W -f='${Version}\n' "$KERNEL_PKG" 2>/dev/null || echo unknown
		"$RUSTC_KERNEL" --version 2>/dev/null || true
		cat "$MOVGEM_TOP"/patches/*.patch
		cat "$MOVGEM_TOP"/scripts/kconfig/movgem.config
		[ "$flavour" = plain ] || cat "$MOVGEM_TOP/scripts/kconfig/$flavour.config"
		cat "$MOVGEM_TOP/scripts/build-kernel.sh"
	} | sha256sum | cut -c1-16
}

kernel_dir() {
	local flavour=$1
	echo "$MOVGEM_CACHE/kernel/$flavour-$(kernel_hash "$flavour")"
}

# setup_once: scripts/setup.sh, once per script.
setup_once() {
	[ -z "${movgem_setup_done:-}" ] || return 0
	"$MOVGEM_TOP/scripts/setup.sh"
	movgem_setup_done=1
}

# prepare_boot FLAVOUR NAME [MODULE_ARGS...]: what a QEMU boot needs,
# built or taken from the cache: what setup.sh installs, the FLAVOUR
# kernel (scripts/build-kernel.sh), movgem.ko built against it with
# MODULE_ARGS (make arguments, e.g. CLIPPY=1), the static guest tools,
# and the initramfs $MOVGEM_CACHE/initramfs-NAME.cpio.gz.  Sets
# boot_kdir, boot_ko and boot_initrd, and boot_module_log: the module
# build's output, shown on stderr as it comes and kept in
# $MOVGEM_CACHE/logs/module-build-NAME.log.  Dies if movgem.ko is not
# built.
prepare_boot() {
	local flavour=${1:?usage: prepare_boot FLAVOUR NAME [MODULE_ARGS...]}
	local name=${2:?usage: prepare_boot FLAVOUR NAME [MODULE_ARGS...]}
	shift 2
	setup_once
	mkdir -p "$MOVGEM_CACHE/logs"
	boot_kdir=$("$MOVGEM_TOP/scripts/build-kernel.sh" "$flavour")
	boot_module_log="$MOVGEM_CACHE/logs/module-build-$name.log"
	# build-module.sh prints the .ko's path on stdout (captured here) and
	# its build output on stderr (through tee to the log and to stderr).
	boot_ko=$(
		{
			"$MOVGEM_TOP/scripts/build-module.sh" "$boot_kdir" "$@" 2>&1 1>&3 |
				tee "$boot_module_log" >&2
			exit "${PIPESTATUS[0]}"
		} 3>&1
	) || die "movgem.ko was not built (build log: $boot_module_log)"
	"$MOVGEM_TOP/scripts/build-tools.sh"
	boot_initrd="$MOVGEM_CACHE/initramfs-$name.cpio.gz"
	"$MOVGEM_TOP/scripts/make-initramfs.sh" "$boot_initrd" "$boot_ko"
}

# rustfmt_tree [--check]: rustfmt on the module's crate root, which it
# follows through every `mod`, and cargo fmt on the tools' workspace,
# so that no file list needs keeping.
rustfmt_tree() {
	local rc=0
	rustfmt "$@" --edition 2021 "$MOVGEM_TOP/rust/movgem.rs" || rc=1
	(cd "$MOVGEM_TOP/tools" && cargo fmt --all -- "$@") || rc=1
	return $rc
}

# The counts of the scripts that end with "N passed, N failed"
# (check.sh, gem-shrink.sh).
# `tally` keeps "NAME PASSED FAILED" for each, in order (publish_check).
passed=0 failed=0
tally=()

# result NAME RC: one result, PASS if RC is 0; said on stderr and counted.
result() {
	if [ "$2" = 0 ]; then
		passed=$((passed + 1))
		tally+=("$1 1 0")
		say "PASS $1"
	else
		failed=$((failed + 1))
		tally+=("$1 0 1")
		say "FAIL $1"
	fi
}

# counts NAME "PASSED FAILED": adds a suite's counts.  A suite that gave
# none (it crashed, or its boot was cut short) is the one failure
# "NAME (no summary)", and the script goes on to its summary.
counts() {
	local p='' f=''
	read -r p f <<<"${2:-}" || true
	if [[ $p =~ ^[0-9]+$ && $f =~ ^[0-9]+$ ]]; then
		passed=$((passed + p))
		failed=$((failed + f))
		tally+=("$1 $p $f")
	else
		result "$1 (no summary)" 1
	fi
}

# summary_of FILE: "PASSED FAILED" from the last "N passed, N failed"
# line of FILE; nothing if it has none.
summary_of() {
	sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$1" 2>/dev/null | tail -1
}

# publish_check SECONDS KERNELS LOG...: CHECK_PUBLISH=1 make check, for
# the tree's maintainers: README.md's check-count section and
# Documentation/testing.md's metrics table, from this run's tally and
# the boots' consoles (LOG...), naming the commit (`--dirty` if the tree
# was), the time and whether the kernels were cached
# (scripts/publish-check.py).  Nothing is written after a failure.
publish_check() {
	if [ "$failed" != 0 ]; then
		say "CHECK_PUBLISH: $failed failed; nothing rewritten"
		return 0
	fi
	local secs=$1 kernels=$2
	shift 2
	printf '%s\n' "${tally[@]}" | python3 "$MOVGEM_TOP/scripts/publish-check.py" --top "$MOVGEM_TOP" \
		--seconds "$secs" --kernels "$kernels" --passed "$passed" --failed "$failed" "$@" &&
		say "CHECK_PUBLISH: README.md and Documentation/testing.md rewritten"
}

# summary: the closing line, "N passed, N failed"; false if any failed.
summary() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
}

# checkpatch_strict KDIR PATCH...: KDIR's checkpatch.pl --strict on each
# patch; any finding is the result "FAIL checkpatch_strict", and the
# script goes on.
checkpatch_strict() {
	local kdir=$1 p rc=0
	shift
	for p in "$@"; do
		"$kdir/scripts/checkpatch.pl" --strict --quiet --no-tree "$p" || rc=1
	done
	result checkpatch_strict $rc
}
