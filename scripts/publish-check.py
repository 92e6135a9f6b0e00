#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""CHECK_PUBLISH=1 make check: writes what one run measured into the
documents, naming the commit (scripts/lib.sh, publish_check).

stdin: the run's tally, "NAME PASSED FAILED" a line.
Rewrites README.md's check-count section (the closing line, the time,
the counts by suite) and Documentation/testing.md's check-metrics
section (scripts/console.py's table of the boots' metrics)."""

import argparse
import datetime
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import console  # noqa: E402


def rewrite_between(path, begin, end, text):
    src = open(path).read()
    i, j = src.find(begin), src.find(end)
    if i < 0 or j < i:
        sys.exit(f"{path} has no {begin} ... {end} section")
    with open(path, "w") as f:
        f.write(src[:i + len(begin)] + "\n" + text + "\n" + src[j:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", required=True)
    ap.add_argument("--seconds", required=True)
    ap.add_argument("--kernels", required=True)
    ap.add_argument("--passed", required=True)
    ap.add_argument("--failed", required=True)
    ap.add_argument("logs", nargs="*", help="the boots' consoles, for the metrics table")
    a = ap.parse_args()
    parts = []
    for line in sys.stdin.read().splitlines():
        f = line.split()
        if len(f) == 3:
            parts.append(f[0] if (f[1], f[2]) == ("1", "0") else f"{f[0]} {f[1]}"
                         + (f" ({f[2]} failed)" if f[2] != "0" else ""))
    commit = subprocess.run(["git", "-C", a.top, "describe", "--always", "--dirty", "--abbrev=12"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    prov = f"`CHECK_PUBLISH=1 make check` at `{commit}`, {when}"
    rewrite_between(os.path.join(a.top, "README.md"), "<!-- check-count:begin -->", "<!-- check-count:end -->",
                    f"`{a.passed} passed, {a.failed} failed`\n\n(written by {prov}: {a.seconds} s, kernels "
                    f"{a.kernels}; by suite: " + ", ".join(parts) + ".)")
    logs = [p for p in a.logs if os.path.exists(p)]
    if logs:
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            console.table(logs)
        rewrite_between(os.path.join(a.top, "Documentation", "testing.md"), "<!-- check-metrics:begin -->",
                        "<!-- check-metrics:end -->", f"Written by {prov} ({a.seconds} s, kernels {a.kernels}):\n\n"
                        + buf.getvalue().rstrip())


if __name__ == "__main__":
    main()
