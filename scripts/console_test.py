#!/usr/bin/env python3
"""Negative controls for scripts/console.py: consoles that must not pass.

Each case is a made-up console log and the verdict console.py must give
it.  Prints one "PASS name" or "FAIL name" line a case and exits 1 if any
case got the wrong verdict, so that `make check` notices a console scan
that has stopped counting what never ran.
"""
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import console  # noqa: E402

KUNIT = re.findall(r"KUNIT_CASE\((movgem_\w+)\)", open(console.KUNIT_SOURCE).read())


def log(*lines, plan=("swap_on", "module_load"), kunit=KUNIT, done=True):
    out = ["movgem-guest: start mode=check"]
    if plan is not None:
        out += [f"movgem-plan: {p}" for p in plan]
        out.append("movgem-plan: end")
    out += [f"    ok {i + 1} {c}" for i, c in enumerate(kunit)]
    out += list(lines)
    if done:
        out.append("movgem-guest: done rc=0")
    return "\n".join(out) + "\n"


GOOD = ("movgem-test: PASS swap_on", "movgem-test: PASS module_load")

# (name, log text, failures console.py must count)
CASES = [
    ("all_reported_passes", log(*GOOD), 0),
    ("planned_test_never_reported", log(GOOD[0]), 1),
    ("no_plan_declared", log(*GOOD, plan=None), 1),
    ("kunit_case_missing", log(*GOOD, kunit=KUNIT[1:]), 1),
    ("kunit_skip_is_no_pass",
     log(*GOOD, kunit=[]) + "".join(
         f"    ok {i + 1} {c}{' # SKIP no reason' if i == 0 else ''}\n"
         for i, c in enumerate(KUNIT)), 1),
    ("kunit_timestamped_lines_count",
     log(*GOOD, kunit=[]) + "".join(
         f"[   12.345678]     ok {i + 1} {c}\n" for i, c in enumerate(KUNIT)), 0),
    ("failed_test", log(GOOD[0], "movgem-test: FAIL module_load: insmod"), 1),
    ("guest_never_finished", log(*GOOD, done=False), 1),
    ("oom_outside_its_window", log(*GOOD, "foo invoked oom-killer: gfp_mask=0x0"), 1),
]


def main():
    wrong = 0
    for name, text, want in CASES:
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as f:
            f.write(text)
            path = f.name
        try:
            res = console.results(path)
        finally:
            os.unlink(path)
        failed = sum(1 for _, ok, _ in res if not ok)
        ok = failed == want
        wrong += not ok
        print(f"{'PASS' if ok else 'FAIL'} console_{name}"
              + ("" if ok else f": {failed} failures counted, {want} expected"))
    print(f"{len(CASES) - wrong} passed, {wrong} failed")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    main()
