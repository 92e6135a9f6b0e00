#!/usr/bin/env python3
"""Read a movgem QEMU console log and say what it shows.

  console.py verdict LOG   list every result; exit 1 on any failure
  console.py count LOG     print "PASSED FAILED" for the summary line
  console.py table LOG...  the metrics table of Documentation/testing.md, from the logs'
                           `movgem-metric:` lines (debug and gem-shrink boot)

Results: each KUnit case of the movgem suite, each `movgem-test:` line of
the guest runner, whether the guest finished with rc=0, and whether the
console is free of kernel bug, warning, lockdep and sanitizer reports.

A test that never reports is a failure, not a smaller total: the guest
runner declares every result it will print (`movgem-plan:` lines, ended
by `movgem-plan: end`) before running any, and every KUnit case that
rust/shims/kunit.c declares must report `ok`.  A KUnit `# SKIP` is not
a pass.
"""
import os
import re
import sys

# Reports that fail a run whatever the tests said.
BAD = re.compile(
    r"BUG: |WARNING: |Oops|general protection fault|Kernel panic|kernel BUG"
    r"|Call Trace:|possible circular locking|possible recursive locking"
    r"|inconsistent lock state|suspicious RCU usage|DEBUG_LOCKS_WARN_ON"
    r"|KASAN|UBSAN|kmemleak: .*new suspected|INFO: task .* blocked"
    r"|usage count underflow|refcount_t: |list_(add|del) corruption"
    r"|invoked oom-killer|Out of memory|page allocation failure"
    r"|rcu: INFO|self-detected stall|detected stalls on CPUs"
)
# A KUnit result line, with or without the kernel's timestamp prefix.
KUNIT = re.compile(r"^(?:\[[^\]]*\])?\s*(not ok|ok) \d+ (movgem_\w+)(.*)$")
KUNIT_SKIP = re.compile(r"#\s*SKIP", re.IGNORECASE)
PLAN = re.compile(r"movgem-plan: (\S+)$")
KUNIT_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "..", "rust", "shims", "kunit.c")


def kunit_cases():
    """The KUnit cases the suite declares (KUNIT_CASE(name) lines)."""
    try:
        src = open(KUNIT_SOURCE).read()
    except OSError:
        return None
    return re.findall(r"KUNIT_CASE\((movgem_\w+)\)", src)
METRIC = re.compile(r"movgem-metric: (\w+)=(\S+)")
# Inside a window, the one report the test causes on purpose is
# tolerated, and only from the test's own task: in the fault-injection
# window, an injected allocation failure of movgem-stress; in the
# no-memory window (the migration-vs-reclaim test moving pages into a
# full node), the failed __GFP_THISNODE allocation of movgem-tests; in the OOM
# window (gem-shrink's -oom subtests with the shrinker off), the OOM
# killer invoked by and killing gem-shrink workers.  Each such header
# admits the one stack dump that follows it; any other report, another
# task's included, fails the run.  A window opened with `invoker=any`
# (gem-shrink's --leak-forever run, where the leaks exhaust memory by
# design and whichever task allocates next invokes the OOM killer:
# kthreadd forking a worker, say) admits a report from any task, but
# only if the kill that follows it takes one of the test's tasks.
WINDOWS = {
    "movgem-faults": {
        "task": "movgem-stress",
        "header": re.compile(r"(?:^|\] |\s)([\w.:/-]+): page allocation failure"),
        "killed": None,
    },
    "movgem-nomem": {
        "task": "movgem-tests",
        "header": re.compile(r"(?:^|\] |\s)([\w.:/-]+): page allocation failure"),
        "killed": None,
    },
    "movgem-oom": {
        "task": "gem-shrink",
        "header": re.compile(r"(?:^|\] |\s)([\w.:/-]+) invoked oom-killer"),
        "killed": re.compile(r"Out of memory: Killed process \d+ \(([^)]*)\)"),
    },
}
WINDOW_MARK = re.compile(r"(movgem-faults|movgem-nomem|movgem-oom): window (begin|end)(?: task=(\S+))?"
                         r"(?: invoker=(any))?")
TRACE = re.compile(r"Call Trace:")
GUEST = re.compile(r"movgem-test: (PASS|FAIL) (\S+?):?(?: (.*))?$")
DONE = re.compile(r"movgem-guest: done rc=(\d+)")


def results(path):
    text = open(path, errors="replace").read().replace("\r", "")
    out = []
    kunit = {}
    done = None
    bad = []
    window = None       # the open window, if any
    task = None         # whose report it expects (`task=` overrides)
    trace_ok = False    # the next stack dump belongs to a tolerated report
    any_invoker = False  # the open window admits any invoker (invoker=any)
    foreign = None      # another task's report, admitted until its kill line
    planned = []
    plan_done = False
    for line in text.splitlines():
        m = PLAN.search(line)
        if m:
            if m.group(1) == "end":
                plan_done = True
            elif not plan_done:
                planned.append(m.group(1))
            continue
        m = WINDOW_MARK.search(line)
        if m:
            if foreign:
                bad.append(foreign + " (no kill of the test's task followed)")
                foreign = None
            if m.group(2) == "begin":
                if window is not None:
                    bad.append(f"{m.group(1)} window opened inside {window}'s")
                window = m.group(1)
                task = m.group(3) or WINDOWS[window]["task"]
                any_invoker = m.group(4) == "any"
            else:
                if window != m.group(1):
                    bad.append(f"{m.group(1)} window closed but not open")
                window = None
                any_invoker = False
            trace_ok = False
            continue
        m = KUNIT.search(line)
        if m:
            # The suite runs at every load: count each case once, failed
            # if any run of it failed.
            ok = m.group(1) == "ok" and not KUNIT_SKIP.search(m.group(3))
            kunit[m.group(2)] = kunit.get(m.group(2), True) and ok
            continue
        m = GUEST.search(line)
        if m:
            out.append(("guest." + m.group(2), m.group(1) == "PASS", m.group(3) or ""))
            continue
        m = DONE.search(line)
        if m:
            done = int(m.group(1))
        if BAD.search(line):
            w = WINDOWS.get(window)
            killed = w["killed"].search(line) if w and w["killed"] else None
            header = w["header"].search(line) if w else None
            if killed and foreign:
                # The kill that decides another task's report.
                if killed.group(1) != task:
                    bad.append(foreign)
                    bad.append(line.strip())
                foreign = None
                trace_ok = False
            elif window_tolerates(window, task, line, trace_ok):
                # Only the report's header admits a stack dump: not the
                # dump itself, nor the kill line after it.
                trace_ok = bool(header)
            elif header and any_invoker and not foreign:
                foreign = line.strip()
                trace_ok = True
            else:
                bad.append(line.strip())
    out = [("kunit." + k, ok, "") for k, ok in kunit.items()] + out
    # What should have reported and did not.
    cases = kunit_cases()
    if cases is None:
        out.append(("kunit_inventory", False, f"cannot read {KUNIT_SOURCE}"))
    elif "guest.module_load" in planned_names(planned):
        out += [("kunit." + c, False, "never reported") for c in cases if c not in kunit]
    reported = {name for name, _, _ in out}
    if not plan_done:
        out.append(("inventory", False, "the guest never declared its tests (no 'movgem-plan: end')"))
    out += [(n, False, "never reported") for n in planned_names(planned) if n not in reported]
    out.append(("guest_completed", done == 0,
                "guest never finished (timeout or crash)" if done is None else f"rc={done}"))
    if foreign:
        bad.append(foreign + " (no kill of the test's task followed)")
    if window is not None:
        bad.append(f"{window} window never closed")
    out.append(("console_clean", not bad, "; ".join(bad[:5])))
    return out


def window_tolerates(window, task, line, trace_ok):
    """Whether `line`, a bad line inside `window`, is the window's own
    expected report: its header from the test's `task`, the kill of one
    of the test's tasks, or the one stack dump after such a header."""
    if window is None:
        return False
    w = WINDOWS[window]
    if TRACE.search(line):
        return trace_ok
    m = w["header"].search(line)
    if m:
        return m.group(1) == task
    m = w["killed"].search(line) if w["killed"] else None
    return bool(m) and m.group(1) == task


def planned_names(planned):
    return ["guest." + n for n in planned]


def metrics(path):
    text = open(path, errors="replace").read()
    return dict(METRIC.findall(text))


# The metrics table of one run (Documentation/testing.md): label, then the metrics it shows.
TABLE = [
    ("stress operations / GPU batches", "stress_ops", "stress_gpu_requests"),
    ("stress reads checked (MiB)", "stress_reads_checked", "stress_mib_checked"),
    ("hook calls / folios migrated during stress", "stress_hook_calls", "stress_migrated"),
    ("shrinker scans / pages given back during stress",
     "stress_shrink_scans", "stress_shrink_freed_pages"),
    ("fuzz calls (of which succeeded)", "fuzz_calls", "fuzz_succeeded"),
    ("fault-injection rounds / injected allocation failures surfaced",
     "faults_rounds", "faults_injected_enomem"),
    ("lifecycle loops / worst unload (ms)", "lifecycle_loops", "lifecycle_worst_unload_ms"),
    ("data mismatches, unexpected errnos, kmemleak reports",
     "stress_mismatches", "stress_unexpected_errors", "kmemleak_reports"),
    ("gem-shrink subtests passed / failed (s)", "gem_shrink_passed", "gem_shrink_failed",
     "gem_shrink_seconds"),
    ("gem-shrink `-oom` subtests failed as expected without the shrinker (s)",
     "gem_shrink_oom_failed_without_shrinker", "gem_shrink_oom_seconds"),
]


def table(paths):
    got = {}
    for p in paths:
        got.update(metrics(p))
    print("| what | one `make check` run |")
    print("|---|---|")
    for label, *names in TABLE:
        vals = []
        for n in names:
            v = got.get(n, "missing")
            vals.append(f"{int(v):,}" if v.isdigit() else v)
        print(f"| {label} | {' / '.join(vals)} |")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "table":
        table(sys.argv[2:])
        return
    if len(sys.argv) != 3 or sys.argv[1] not in ("verdict", "count"):
        sys.exit(__doc__)
    res = results(sys.argv[2])
    passed = sum(1 for _, ok, _ in res if ok)
    failed = len(res) - passed
    if sys.argv[1] == "count":
        print(passed, failed)
        return
    for name, ok, detail in res:
        print(f"  {'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))
    for name, value in metrics(sys.argv[2]).items():
        print(f"  metric {name} = {value}")
    print(f"guest: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
