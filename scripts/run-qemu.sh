#!/usr/bin/env bash
# Boot a kernel with the movgem initramfs under QEMU (TCG) and save the
# console.  Usage: scripts/run-qemu.sh KDIR INITRAMFS LOG MODE
# Environment: QEMU_MEM (default 1G), QEMU_CPUS (2), QEMU_TIMEOUT (1800 s),
# QEMU_APPEND (more kernel command line, e.g. movgem_stress=600).
# Exit status: 0 if the guest reported rc=0 and the console is clean.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

kdir=${1:?} initrd=${2:?} log=${3:?} mode=${4:-check}
mem=${QEMU_MEM:-1G} cpus=${QEMU_CPUS:-2} limit=${QEMU_TIMEOUT:-1800}
# debug or plain, from the cache directory's name (scripts/lib.sh).
flavour=$(basename "$kdir")
flavour=${flavour%%-*}
# The check boot reserves a CMA area for the tests of cma_alloc() over
# objects (tools/movgem-tests/src/tests/users.rs), the bench boot for
# the cma benchmark (tools/movgem-bench/src/users.rs); movable
# allocations use it meanwhile, so the rest loses nothing but 64 MiB
# for unmovable kernel memory.
cma=
case $mode in check | bench) cma=cma=64M ;; esac

qemu=(qemu-system-x86_64
	-accel tcg -cpu max -smp "$cpus" -m "$mem"
	-kernel "$kdir/arch/x86/boot/bzImage" -initrd "$initrd"
	-append "console=ttyS0 panic=-1 oops=panic numa=fake=2 movgem_mode=$mode movgem_flavour=$flavour $cma ${QEMU_APPEND:-}"
	-display none -monitor none -serial stdio -no-reboot)
say "qemu: TCG, $cpus CPUs, $mem, mode=$mode, timeout ${limit}s, console -> $log"
# The exact command line, one argument a line, next to the console
# (scripts/bench-report.py records it).
printf '%s\n' "${qemu[@]}" >"$log.cmd"
set +e
timeout -k 10 "$limit" "${qemu[@]}" </dev/null >"$log" 2>&1
qemu_rc=$?
set -e
[ $qemu_rc = 124 ] && say "qemu: timed out after ${limit}s"
exec python3 "$MOVGEM_TOP/scripts/console.py" verdict "$log"
