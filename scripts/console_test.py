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
    ("oom_in_its_window_from_the_test",
     log(*GOOD, "movgem-oom: window begin",
         "[  9.1] gem-shrink invoked oom-killer: gfp_mask=0x140dca, order=0",
         "[  9.1] Call Trace:",
         "[  9.2] Out of memory: Killed process 196 (gem-shrink) total-vm:25344kB",
         "movgem-oom: window end"), 0),
    ("oom_in_its_window_from_another_task",
     log(*GOOD, "movgem-oom: window begin",
         "[  9.1] kworker/0:1 invoked oom-killer: gfp_mask=0xcc0, order=0",
         "[  9.1] Call Trace:",
         "movgem-oom: window end"), 1),
    ("oom_window_for_a_named_task",
     log(*GOOD, "movgem-oom: window begin task=movgem-hog",
         "[  9.1] movgem-hog invoked oom-killer: gfp_mask=0x140dca, order=0",
         "[  9.1] Call Trace:",
         "[  9.2] Out of memory: Killed process 96 (movgem-hog) total-vm:25344kB",
         "movgem-oom: window end"), 0),
    ("oom_window_for_a_named_task_not_another",
     log(*GOOD, "movgem-oom: window begin task=movgem-hog",
         "[  9.1] gem-shrink invoked oom-killer: gfp_mask=0x140dca, order=0",
         "movgem-oom: window end"), 1),
    ("oom_any_invoker_killing_the_test",
     log(*GOOD, "movgem-oom: window begin invoker=any",
         "[  9.1] kthreadd invoked oom-killer: gfp_mask=0x400dc0, order=2",
         "[  9.1] Call Trace:",
         "[  9.2] Out of memory: Killed process 446 (gem-shrink) total-vm:137068kB",
         "movgem-oom: window end"), 0),
    ("oom_any_invoker_killing_another_task",
     log(*GOOD, "movgem-oom: window begin invoker=any",
         "[  9.1] kthreadd invoked oom-killer: gfp_mask=0x400dc0, order=2",
         "[  9.1] Call Trace:",
         "[  9.2] Out of memory: Killed process 77 (sshd) total-vm:1000kB",
         "movgem-oom: window end"), 1),
    ("oom_any_invoker_without_a_kill",
     log(*GOOD, "movgem-oom: window begin invoker=any",
         "[  9.1] kthreadd invoked oom-killer: gfp_mask=0x400dc0, order=2",
         "[  9.1] Call Trace:",
         "movgem-oom: window end"), 1),
    ("oom_any_invoker_second_trace",
     log(*GOOD, "movgem-oom: window begin invoker=any",
         "[  9.1] kthreadd invoked oom-killer: gfp_mask=0x400dc0, order=2",
         "[  9.1] Call Trace:", "[  9.1] Call Trace:",
         "[  9.2] Out of memory: Killed process 446 (gem-shrink) total-vm:137068kB",
         "movgem-oom: window end"), 1),
    ("oom_window_never_closed",
     log(*GOOD, "movgem-oom: window begin"), 1),
    ("second_trace_after_one_report",
     log(*GOOD, "movgem-oom: window begin",
         "[  9.1] gem-shrink invoked oom-killer: gfp_mask=0x140dca, order=0",
         "[  9.1] Call Trace:", "[  9.5] Call Trace:",
         "movgem-oom: window end"), 1),
    ("warning_inside_a_window",
     log(*GOOD, "movgem-faults: window begin",
         "[  5.0] WARNING: CPU: 0 PID: 1 at mm/foo.c:1 bar",
         "movgem-faults: window end"), 1),
    ("injected_failure_of_the_test",
     log(*GOOD, "movgem-faults: window begin",
         "[  5.0] movgem-stress: page allocation failure: order:0, mode:0x400dc0",
         "[  5.0] Call Trace:", "movgem-faults: window end"), 0),
    ("nomem_window_move_into_a_full_node",
     log(*GOOD, "movgem-nomem: window begin",
         "[  5.0] movgem-tests: page allocation failure: order:0, mode:0x340cca",
         "[  5.0] Call Trace:", "movgem-nomem: window end"), 0),
    ("nomem_window_not_another_task",
     log(*GOOD, "movgem-nomem: window begin",
         "[  5.0] kworker/0:1: page allocation failure: order:0, mode:0x340cca",
         "[  5.0] Call Trace:", "movgem-nomem: window end"), 1),
    ("trace_after_the_kill_line",
     log(*GOOD, "movgem-oom: window begin",
         "[  9.1] gem-shrink invoked oom-killer: gfp_mask=0x140dca, order=0",
         "[  9.1] Call Trace:",
         "[  9.2] Out of memory: Killed process 196 (gem-shrink) total-vm:25344kB",
         "[  9.3] Call Trace:",
         "movgem-oom: window end"), 1),
    ("rcu_self_detected_stall",
     log(*GOOD, "[ 30.0] rcu: INFO: rcu_sched self-detected stall on CPU"), 1),
    ("rcu_stall_on_other_cpus",
     log(*GOOD, "[ 30.0] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"), 1),
    ("page_allocation_failure_outside_a_window",
     log(*GOOD, "[  5.0] sh: page allocation failure: order:0, mode:0x400dc0"), 1),
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
