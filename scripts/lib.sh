# shellcheck shell=bash
# Common settings for the movgem scripts.  Source it; do not run it.

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
