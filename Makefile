# SPDX-License-Identifier: GPL-2.0
# movgem: the two commands a newcomer needs are `make demo` and
# `make check`; see README.md.  (Kbuild, not this file, describes the
# module to the kernel build.)

SHELL := /bin/bash
KFLAVOUR ?= debug

.PHONY: all demo check soak bench gem-shrink setup kernel module tools test-host fmt clean help

all: help

help:
	@echo "make demo    set up what is missing, boot the patched kernel in QEMU, show the hook at work"
	@echo "make check   the whole test suite; ends with 'N passed, N failed'"
	@echo "make soak    the same with long stress/fuzz/fault-injection runs and gem-shrink at igt's sizing"
	@echo "make bench   benchmarks in QEMU (1 GiB and 2 GiB guests); writes bench/results/"
	@echo "make gem-shrink  only igt's gem_shrink port (part of make check), in its own boot"
	@echo "make setup | kernel | module | tools | test-host | fmt | clean"

demo:
	@scripts/demo.sh

check:
	@scripts/check.sh

# The same suite with long stress, fuzz, fault-injection and lifecycle
# runs, and gem_shrink at igt's sizing: igt's num_processes passes per
# worker iteration for every worker (GEM_SHRINK_PASSES=0,
# GEM_SHRINK_BACKGROUND_PASSES=0), igt's 20 s per subtest, and leak
# workers that never unmap (GEM_SHRINK_LEAK_FOREVER=1: the OOM killer
# ends them, which does not fail a subtest; Documentation/testing.md, "51 passed").
#
# Time limits, an estimate for the 384 MiB, 2-CPU guest (igt's formula:
# ceil(384 / 2) / 8 = 24 MiB a pass, 2 + 384 / 24 = 18 processes; a
# worker's first iteration always runs to its end, whatever the 20 s):
# - a plain subtest asks the driver for 18 workers x 18 passes x 24 MiB
#   = 7.6 GiB, 5x make check's 17 x 4 x 23 MiB = 1.5 GiB;
# - an -oom subtest: 18 leak workers x 18 x 24 MiB = 7.6 GiB leaked
#   (cut short by OOM kills once RAM and the 1.5 GiB of zram are full),
#   9 userptr workers x 18 x 24 MiB = 3.8 GiB, 9 function workers x 9 x
#   24 MiB = 1.9 GiB: up to 13 GiB, 9.5x make check's 1.4 GiB, whose
#   slowest -oom subtest takes 26 s: about 250 s;
# - plain `hang`: 18 x 18 = 324 hangs, each reset after 100 ms, one at
#   a time on the simulated ring: 32 s of resets on top of its 7.6 GiB.
# GEM_SHRINK_WATCHDOG=900: 3.5x the slowest estimate (250 s), for a
# loaded host.  GEM_SHRINK_OOM_WATCHDOG=600 for the eight shrinker=0
# subtests, which must wait for every leak worker's OOM kill before a
# function or userptr worker's decides them (18 kills in quick
# succession, leak workers growing 24 MiB a pass: about a minute a
# subtest estimated).  GEM_SHRINK_TIMEOUT=14400 (4 h) for the boot: 40
# subtests at up to 150 s on average (the 10 sanity checks, reclaim and
# the pread ones take seconds) = 6,000 s, plus the shrinker=0 run at
# about 8 x 60 s = 480 s, about 6,500 s in all: 2.2x margin, or room for
# eight watchdogs firing.
soak:
	@QEMU_TIMEOUT=3600 QEMU_APPEND="movgem_stress=600 movgem_fuzz=500000 movgem_seed=$$RANDOM movgem_faults=5000 movgem_lifecycle=20" \
		GEM_SHRINK_PASSES=0 GEM_SHRINK_BACKGROUND_PASSES=0 GEM_SHRINK_DURATION=20 \
		GEM_SHRINK_LEAK_FOREVER=1 GEM_SHRINK_WATCHDOG=900 GEM_SHRINK_OOM_WATCHDOG=600 \
		GEM_SHRINK_TIMEOUT=14400 scripts/check.sh

# igt's gem_shrink, ported, alone (make check runs it too); knobs in
# scripts/gem-shrink.sh, e.g. GEM_SHRINK_DURATION=20 for igt's durations.
gem-shrink:
	@scripts/gem-shrink.sh

# Benchmarks on the plain kernel: bench/results/latest.{json,md} and
# SVG plots (see Documentation/benchmarks.md).
bench:
	@scripts/bench.sh

setup:
	@scripts/setup.sh

kernel: setup
	@scripts/build-kernel.sh $(KFLAVOUR)

module: kernel
	@scripts/build-module.sh "$$(scripts/build-kernel.sh $(KFLAVOUR))"

tools:
	@scripts/build-tools.sh

test-host:
	cd tools && cargo test

# rustfmt from the crate roots, following `mod` (scripts/lib.sh).
fmt:
	@source scripts/lib.sh && rustfmt_tree

# Module build products only; the kernel cache lives in ~/.cache/movgem.
clean:
	rm -f *.o *.ko *.mod *.mod.c .*.cmd Module.symvers modules.order
	find rust -name '*.o' -o -name '.*.cmd' | xargs rm -f
	cd tools && cargo clean
