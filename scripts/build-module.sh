#!/usr/bin/env bash
# Build movgem.ko against a kernel build directory.
# Usage: scripts/build-module.sh KDIR [extra make args, e.g. CLIPPY=1]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

kdir=${1:?usage: build-module.sh KDIR}
shift
mapfile -t args < <(kmake_args)
say "module: building movgem.ko against $kdir"
make -C "$kdir" -s "${args[@]}" M="$MOVGEM_TOP" "$@" modules
