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
	@echo "make soak    the same with long stress/fuzz/fault-injection runs"
	@echo "make bench   benchmarks in QEMU (1 GiB and 2 GiB guests); writes bench/results/"
	@echo "make gem-shrink  only igt's gem_shrink port (part of make check), in its own boot"
	@echo "make setup | kernel | module | tools | test-host | fmt | clean"

demo:
	@scripts/demo.sh

check:
	@scripts/check.sh

# The same suite with long stress, fuzz, fault-injection and lifecycle
# runs, and gem_shrink with igt's 20 s per subtest.
soak:
	@QEMU_TIMEOUT=3600 QEMU_APPEND="movgem_stress=600 movgem_fuzz=500000 movgem_seed=$$RANDOM movgem_faults=5000 movgem_lifecycle=20" \
		GEM_SHRINK_DURATION=20 GEM_SHRINK_BACKGROUND_PASSES=0 GEM_SHRINK_WATCHDOG=300 \
		GEM_SHRINK_TIMEOUT=7200 scripts/check.sh

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
