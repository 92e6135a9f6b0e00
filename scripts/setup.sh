#!/usr/bin/env bash
# Install everything movgem needs, from Debian packages and crates.io.
# Idempotent: installs only what is missing, and says what it does.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

packages=(linux-source-6.12 rustc-web rust-web-src rust-web-clippy clang lld llvm libclang-dev
	bc flex bison libelf-dev libssl-dev cpio busybox-static kmod qemu-system-x86
	python3 python3-matplotlib gzip)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
	say "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
else
	say "Debian packages: all present"
fi

command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (rustup) first"
if [ ! -x "$BINDGEN" ]; then
	say "installing bindgen-cli from crates.io (about 2 minutes)"
	cargo install --locked --quiet bindgen-cli
else
	say "bindgen: $("$BINDGEN" --version)"
fi
say "kernel Rust compiler: $("$RUSTC_KERNEL" --version)"
