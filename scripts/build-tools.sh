#!/usr/bin/env bash
# Build the static userspace binaries that run inside the guest.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

say "tools: building static guest binaries"
cd "$MOVGEM_TOP/tools"
RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --quiet --release --target x86_64-unknown-linux-gnu -p movgem-tests -p movgem-bench
