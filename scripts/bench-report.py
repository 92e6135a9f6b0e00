#!/usr/bin/env python3
"""Turn the consoles of `make bench` boots into bench/results/.

  bench-report.py --out DIR --cpus N --kernel-dir KDIR --total-s S \
      LABEL:MEM:SECONDS:RC:LOG ...

Each LOG is a QEMU console; every `movgem-bench: {"key":K,"value":V}`
line in it is nested under the dotted key K.  Writes DIR/latest.json,
DIR/latest.md and DIR/*.svg (plots drawn here, standard library only).
Reports numbers; judges nothing.
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys

LINE = re.compile(r"movgem-bench: (\{.*\})\s*$")


def nest(root, dotted, value):
    keys = dotted.split(".")
    node = root
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def collect(log):
    """(results, problems) from one console."""
    results, problems = {}, []
    try:
        text = open(log, errors="replace").read().replace("\r", "")
    except OSError as e:
        return results, [f"{log}: {e}"]
    for line in text.splitlines():
        m = LINE.search(line)
        if not m:
            continue
        try:
            rec = json.loads(m.group(1))
            nest(results, rec["key"], rec["value"])
        except (ValueError, KeyError) as e:
            problems.append(f"unparsable result line ({e}): {line[:120]}")
    return results, problems


def merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            merge(a[k], v)
        else:
            a[k] = v


def get(d, path, default=None):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def fmt(x, digits=2):
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if abs(x) >= 100:
            return f"{x:.0f}"
        if abs(x) >= 10:
            return f"{x:.1f}"
        return f"{x:.{digits}f}"
    return str(x)


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        out.append("| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in r) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------- SVG


COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Svg:
    def __init__(self, w=640, h=360):
        self.w, self.h = w, h
        self.items = []

    def add(self, s):
        self.items.append(s)

    def text(self, x, y, s, size=12, anchor="start", rotate=None, weight="normal"):
        rot = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                 f'font-weight="{weight}" font-family="sans-serif"{rot}>{esc(s)}</text>')

    def line(self, x1, y1, x2, y2, color="#000", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                 f'stroke="{color}" stroke-width="{width}"{d}/>')

    def rect(self, x, y, w, h, color):
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{color}"/>')

    def circle(self, x, y, r, color):
        self.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{color}"/>')

    def polyline(self, pts, color, width=2):
        p = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        self.add(f'<polyline points="{p}" fill="none" stroke="{color}" stroke-width="{width}"/>')

    def save(self, path):
        with open(path, "w") as f:
            f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                    f'viewBox="0 0 {self.w} {self.h}">\n')
            f.write(f'<rect width="{self.w}" height="{self.h}" fill="#fff"/>\n')
            f.write("\n".join(self.items))
            f.write("\n</svg>\n")


def nice_max(v):
    if v <= 0:
        return 1
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def bar_chart(path, title, groups, series, values, ylabel, log=False):
    """Grouped bars: values[g][s] (None skipped)."""
    svg = Svg(680, 380)
    left, right, top, bottom = 70, 20, 40, 80
    pw, ph = svg.w - left - right, svg.h - top - bottom
    svg.text(svg.w / 2, 22, title, 15, "middle", weight="bold")
    flat = [v for row in values for v in row if v is not None and v > 0]
    if log:
        lo = 10 ** math.floor(math.log10(min(flat))) if flat else 1
        hi = 10 ** math.ceil(math.log10(max(flat))) if flat else 10
        if hi <= lo:
            hi = lo * 10

        def y(v):
            v = max(v, lo)
            return top + ph - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph
        ticks = [10 ** e for e in range(int(math.log10(lo)), int(math.log10(hi)) + 1)]
    else:
        hi = nice_max(max(flat) if flat else 1)

        def y(v):
            return top + ph - v / hi * ph
        ticks = [hi * i / 5 for i in range(6)]
    for t in ticks:
        svg.line(left, y(t), left + pw, y(t), "#ddd")
        svg.text(left - 6, y(t) + 4, fmt(float(t)) if not log else f"{t:g}", 11, "end")
    svg.line(left, top, left, top + ph)
    svg.line(left, top + ph, left + pw, top + ph)
    svg.text(16, top + ph / 2, ylabel, 12, "middle", rotate=-90)
    gw = pw / max(len(groups), 1)
    bw = gw * 0.8 / max(len(series), 1)
    for gi, g in enumerate(groups):
        x0 = left + gi * gw + gw * 0.1
        for si in range(len(series)):
            v = values[gi][si]
            if v is None:
                continue
            x = x0 + si * bw
            svg.rect(x, y(v), bw - 2, top + ph - y(v), COLORS[si % len(COLORS)])
            svg.text(x + bw / 2 - 1, y(v) - 3, fmt(v), 10, "middle")
        svg.text(left + gi * gw + gw / 2, top + ph + 16, g, 12, "middle")
    lx = left
    for si, s in enumerate(series):
        svg.rect(lx, svg.h - 28, 12, 12, COLORS[si % len(COLORS)])
        svg.text(lx + 16, svg.h - 18, s, 11)
        lx += 16 + 7 * len(s) + 18
    svg.save(path)


def loglog_chart(path, title, series, xlabel, ylabel):
    """series: [(name, [(x, y), ...])], both axes logarithmic."""
    svg = Svg(680, 380)
    left, right, top, bottom = 80, 20, 40, 80
    pw, ph = svg.w - left - right, svg.h - top - bottom
    svg.text(svg.w / 2, 22, title, 15, "middle", weight="bold")
    pts = [p for _, s in series for p in s if p[0] and p[1] and p[0] > 0 and p[1] > 0]
    if not pts:
        svg.text(svg.w / 2, svg.h / 2, "no data", 14, "middle")
        svg.save(path)
        return
    xlo = math.floor(math.log10(min(p[0] for p in pts)))
    xhi = math.ceil(math.log10(max(p[0] for p in pts)))
    ylo = math.floor(math.log10(min(p[1] for p in pts)))
    yhi = math.ceil(math.log10(max(p[1] for p in pts)))
    xhi, yhi = max(xhi, xlo + 1), max(yhi, ylo + 1)

    def X(v):
        return left + (math.log10(v) - xlo) / (xhi - xlo) * pw

    def Y(v):
        return top + ph - (math.log10(v) - ylo) / (yhi - ylo) * ph
    for e in range(xlo, xhi + 1):
        svg.line(X(10 ** e), top, X(10 ** e), top + ph, "#ddd")
        svg.text(X(10 ** e), top + ph + 16, f"{10 ** e:g}", 11, "middle")
    for e in range(ylo, yhi + 1):
        svg.line(left, Y(10 ** e), left + pw, Y(10 ** e), "#ddd")
        svg.text(left - 6, Y(10 ** e) + 4, f"{10 ** e:g}", 11, "end")
    svg.line(left, top, left, top + ph)
    svg.line(left, top + ph, left + pw, top + ph)
    svg.text(left + pw / 2, top + ph + 36, xlabel, 12, "middle")
    svg.text(18, top + ph / 2, ylabel, 12, "middle", rotate=-90)
    lx = left
    for si, (name, s) in enumerate(series):
        c = COLORS[si % len(COLORS)]
        good = [(X(x), Y(y)) for x, y in s if x and y and x > 0 and y > 0]
        if len(good) > 1:
            svg.polyline(good, c)
        for x, y in good:
            svg.circle(x, y, 3.5, c)
        svg.rect(lx, svg.h - 22, 12, 12, c)
        svg.text(lx + 16, svg.h - 12, name, 11)
        lx += 16 + 7 * len(name) + 18
    svg.save(path)


# ---------------------------------------------------------------- report


def sizes_of(res):
    return sorted(get(res, "fragmentation", {}).keys(), key=lambda s: float(re.sub(r"[^0-9.]", "", s) or 0))


def markdown(res, plots):
    md = []
    md.append("# movgem benchmarks: latest run\n")
    cfg = res["run"]
    md.append(f"Run {cfg['date']} on {cfg['host']} ({cfg['host_cpus']} host CPUs); "
              f"`make bench` took {cfg['total_s']} s. QEMU: accel {cfg['qemu']['accel']}, "
              f"-cpu {cfg['qemu']['cpu_model']}, {cfg['qemu']['cpus']} vCPUs, "
              f"kernel {cfg.get('kernel', 'n/a')} (plain flavour), numa=fake=2. "
              f"Commit `{cfg.get('commit', 'unknown')}`, movgem.ko sha256 `{cfg.get('module_sha256', 'unknown')}`.\n")
    rows = []
    for b in cfg["boots"]:
        c = get(res, f"config.{b['label']}", {})
        rows.append([b["label"], b["memory"], str(b["seconds"]), str(b["verdict_rc"]),
                     str(get(c, "mem_total_mib", "n/a")), str(get(c, "numa_nodes", "n/a")),
                     ", ".join(f"{k}={v}" for k, v in get(c, "module_params", {}).items())])
    md.append(table(["boot", "-m", "seconds", "verdict rc", "MemTotal MiB", "nodes", "module params"], rows))
    md.append("")

    md.append("## Fragmentation recovery (2 MiB hugepages after compaction, GPU asleep)\n")
    rows = []
    for s in sizes_of(res):
        f = res["fragmentation"][s]
        h = f.get("hugepages", {})
        u = f.get("unusable_index_order9", {})
        rows.append([s, h.get("ceiling"), h.get("inplace"), h.get("release"), h.get("hook_off"),
                     h.get("physical_limit"), f.get("inplace_vs_ceiling"), f.get("release_vs_ceiling"),
                     f.get("hook_off_vs_ceiling"), get(f, "released_pages.inplace"),
                     get(f, "released_pages.release"),
                     get(f, "thp_pages.ceiling"), get(f, "thp_pages.inplace"), get(f, "thp_pages.hook_off"),
                     get(u, "inplace.after_compaction"), get(u, "hook_off.after_compaction")])
    md.append(table(["guest", "ceiling", "in place", "release", "hook off", "physical limit",
                     "in place/ceiling", "release/ceiling", "off/ceiling", "pages released, in place",
                     "pages released, release", "THP ceiling", "THP in place", "THP off",
                     "unusable idx in place", "unusable idx off"], rows))
    md.append("")
    rows = []
    for s in sizes_of(res):
        runs = get(res, f"fragmentation.{s}.hugepages_runs", {})
        rows.append([s] + [", ".join(fmt(int(x)) for x in runs.get(k, []))
                           for k in ("ceiling", "inplace", "release", "hook_off", "physical_limit")])
    md.append(table(["guest", "ceiling, every round", "in place, every round", "release, every round",
                     "hook off, every round", "physical limit, every in-place round"], rows))
    md.append("\nMedians of the rounds (the second table lists every round). "
              "hugetlb pages obtained after `compact_memory` with objects (3/8 of available memory, 4 MiB "
              "each) scattered over memory, bound and idle, the GPU runtime-suspended; ceiling: the same "
              "objects written but never bound; THP: 2 MiB pages an anonymous region of half the free memory "
              "got (THP enabled=always, defrag=madvise); unusable index: "
              "order 9, mean over zones, after compaction (0 = all free memory usable for 2 MiB).")
    md.append(f"\n![fragmentation]({plots['fragmentation']})\n")

    m = res.get("migration")
    if m:
        md.append("## Migration cost (move_pages between the two fake nodes, GPU awake)\n")
        rows = []
        for label, name in (("4m", "4 MiB"), ("4k", "4 KiB")):
            c = m.get(label)
            if not c:
                continue
            p, i, r = c.get("plain_shmem", {}), c.get("inplace", {}), c.get("release", {})
            rows.append([f"{name} objects ({c.get('total_mib')} MiB)", p.get("pages_per_s_median"),
                         i.get("pages_per_s_median"), r.get("pages_per_s_median"),
                         c.get("ratio_inplace_vs_plain"), c.get("ratio_release_vs_plain"),
                         i.get("released_pages_per_page_moved_median"),
                         r.get("released_pages_per_page_moved_median"),
                         i.get("first_batch_ms_per_mib_median"), r.get("first_batch_ms_per_mib_median"),
                         c.get("first_batch_release_vs_inplace"), i.get("first_bind_ms_per_mib")])
        md.append(table(["objects", "plain pages/s", "in place pages/s", "release pages/s",
                         "in place/plain", "release/plain", "pages released per page moved, in place",
                         "same, release", "first batch after, in place, ms/MiB", "same, release",
                         "release/in place", "first bind of resident pages, ms/MiB"], rows))
        off = m.get("hook_off_4m", {})
        md.append("")
        md.append(table(["hook off: pages moved / asked", "hook off: seconds spent"], [
            [f"{fmt(off.get('pages_moved'))} / {fmt(off.get('pages_asked'))}", off.get("seconds")]]))
        md.append("\nMedians of the runs. First batch: a NOP batch over every object right after "
                  "the move; after a release it fetches and binds every page again.")
        md.append(f"\n![migration]({plots['migration']})\n")

    lat = res.get("latency")
    if lat:
        md.append("## Busy-path latency (one single-page move_pages call, µs)\n")
        rows = []
        for k, label in LAT_CASES:
            d = lat.get(k)
            if d:
                rows.append([label, d.get("n"), d.get("p50"), d.get("p99"), d.get("max"), d.get("pages_moved")])
        md.append(table(["case", "samples", "p50", "p99", "max", "pages moved"], rows))
        md.append(f"\n![latency]({plots['latency']})\n")

    rc = res.get("reclaim")
    if rc:
        md.append("## Reclaim\n")
        rows = []
        for kind in ("purgeable", "swappable"):
            k = rc.get(kind, {})
            for run, label in (("hog_shrinker_off", "hog, shrinker off"), ("hog_shrinker_on", "hog, shrinker on"),
                               ("drop_caches", "drop_caches=3, shrinker on")):
                r = k.get(run, {})
                runs = ", ".join(fmt(x) for x in r.get("seconds_runs", []))
                rows.append([kind, label, r.get("seconds"), runs or "-", r.get("completed"), r.get("shrink_freed_mib"),
                             r.get("freed_mib_per_s"), r.get("objects_swap_used_mib")])
        md.append(f"Objects: {fmt(rc.get('objects_mib'))} MiB; hog: {fmt(rc.get('hog_mib'))} MiB; "
                  f"swap: {rc.get('swap')}.\n")
        md.append(table(["objects", "driver", "seconds (median run)", "every run", "completed",
                         "shrinker freed MiB", "freed MiB/s", "object swap used MiB"], rows))
        md.append("")
        md.append(table(["objects", "hog wait, shrinker on / off"],
                        [[k, get(rc, f"{k}.hog_wait_ratio_on_vs_off")] for k in ("purgeable", "swappable")]))
        md.append(f"\n![reclaim]({plots['reclaim']})\n")

    sc = res.get("scale")
    if sc:
        md.append("## Scale\n")
        rows = [[r.get("objects"), r.get("hook_us_per_object"), r.get("shrink_us_per_object"),
                 r.get("create_s"), r.get("populate_s"), r.get("close_s"), r.get("pages_moved"),
                 r.get("shrink_freed_pages")] for r in sc.get("by_count", [])]
        md.append(table(["objects (4 KiB)", "hook µs/object", "shrinker µs/object", "create s", "vmap s",
                         "close s", "pages moved", "shrinker freed pages"], rows))
        md.append("")
        rows = [[r.get("object_kib"), r.get("objects"), r.get("hook_us_per_object"),
                 r.get("plain_us_per_page_moved"), r.get("hook_net_us_per_object"), r.get("hook_net_us_per_page"),
                 r.get("shrink_us_per_object"), r.get("shrink_us_per_page"), r.get("bind_us_per_page")]
                for r in sc.get("by_size", [])]
        md.append(table(["object KiB", "objects", "hook µs/object", "plain µs/page moved", "hook net µs/object",
                         "hook net µs/page", "shrinker µs/object", "shrinker µs/page", "bind µs/page"], rows))
        md.append("")
        sl = sc.get("loglog_slopes", {})
        md.append(table(["log-log slope (1 = linear)", "value"], [[k, v] for k, v in sl.items()]))
        md.append(f"\n![scale by count]({plots['scale_count']}) ![scale by size]({plots['scale_size']})\n")

    errs = res.get("errors")
    if errs or res["run"].get("problems"):
        md.append("## Problems in this run\n")
        for k, v in (errs or {}).items():
            md.append(f"- `{k}`: {v}")
        for p in res["run"].get("problems", []):
            md.append(f"- {p}")
    return "\n".join(md) + "\n"


LAT_CASES = [
    ("same_node_floor", "page already on the target node (call floor)"),
    ("plain_migration", "plain shmem page, migrates"),
    ("active", "active object, hook on (-EBUSY)"),
    ("active_hook_off", "active object, hook off (-EAGAIN, retried)"),
    ("lock_contended_10ms", "contended struct_mutex, lock_timeout_ms=10"),
    ("lock_contended_2ms", "contended struct_mutex, lock_timeout_ms=2"),
]


def plots(res, out):
    names = {
        "fragmentation": "fragmentation.svg",
        "migration": "migration.svg",
        "latency": "latency.svg",
        "reclaim": "reclaim.svg",
        "scale_count": "scale-count.svg",
        "scale_size": "scale-size.svg",
    }
    sizes = sizes_of(res)
    series = ["ceiling", "inplace", "release", "hook_off", "physical_limit"]
    bar_chart(os.path.join(out, names["fragmentation"]), "2 MiB hugepages after compaction, GPU asleep",
              [f"{s} guest" for s in sizes],
              ["ceiling (unbound)", "in place", "release (2016)", "hook off", "physical limit"],
              [[get(res, f"fragmentation.{s}.hugepages.{k}") for k in series] for s in sizes], "hugepages")
    m = res.get("migration", {})
    bar_chart(os.path.join(out, names["migration"]), "move_pages throughput (median of runs)",
              ["4 MiB objects", "4 KiB objects"], ["plain shmem", "in place", "release (2016)"],
              [[get(m, f"{o}.plain_shmem.pages_per_s_median"), get(m, f"{o}.inplace.pages_per_s_median"),
                get(m, f"{o}.release.pages_per_s_median")] for o in ("4m", "4k")],
              "pages per second")
    lat = res.get("latency", {})
    cases = [(k, l) for k, l in LAT_CASES if k in lat]
    bar_chart(os.path.join(out, names["latency"]), "single-page move_pages latency (µs, log scale)",
              [k.replace("lock_contended_", "lock ").replace("_", " ") for k, _ in cases], ["p50", "p99", "max"],
              [[get(lat, f"{k}.{q}") for q in ("p50", "p99", "max")] for k, _ in cases], "µs", log=True)
    rc = res.get("reclaim", {})
    bar_chart(os.path.join(out, names["reclaim"]), "memory hog wall time (s)", ["purgeable", "swappable"],
              ["shrinker off", "shrinker on"],
              [[get(rc, f"{k}.hog_shrinker_off.seconds"), get(rc, f"{k}.hog_shrinker_on.seconds")]
               for k in ("purgeable", "swappable")], "seconds")
    sc = res.get("scale", {})
    bc = sc.get("by_count", [])
    loglog_chart(os.path.join(out, names["scale_count"]), "total cost vs object count (4 KiB objects)",
                 [("hook (move_pages all)", [(r.get("objects"), r.get("hook_s")) for r in bc]),
                  ("shrinker (drop_caches)", [(r.get("objects"), r.get("shrink_s")) for r in bc])],
                 "objects", "seconds")
    bs = sc.get("by_size", [])
    loglog_chart(os.path.join(out, names["scale_size"]), "cost per object vs object size",
                 [("hook net µs/object", [(r.get("pages_per_object"), r.get("hook_net_us_per_object")) for r in bs]),
                  ("shrinker µs/object", [(r.get("pages_per_object"), r.get("shrink_us_per_object")) for r in bs])],
                 "pages per object", "µs")
    return names


def describe(top):
    """`git describe --always --dirty` of the tree, or "unknown"."""
    if not top:
        return "unknown"
    try:
        out = subprocess.run(["git", "-C", top, "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def sha256(path):
    import hashlib
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return "unknown"


BEGIN, END = "<!-- bench-headline:begin -->", "<!-- bench-headline:end -->"


def headline(res):
    """The README's headline table, from the results alone."""
    run = res["run"]
    rows = []
    for s in sizes_of(res):
        f = res["fragmentation"][s]
        h = f.get("hugepages", {})
        rows.append([f"2 MiB hugepages after compaction, GPU asleep, {s} guest: "
                     "ceiling (unbound) / in place / release (2016) / hook off",
                     f"{fmt(h.get('ceiling'))} / **{fmt(h.get('inplace'))}** / {fmt(h.get('release'))} / "
                     f"{fmt(h.get('hook_off'))} (in place {fmt(f.get('inplace_vs_ceiling'))} of the ceiling, "
                     f"release {fmt(f.get('release_vs_ceiling'))}, off {fmt(f.get('hook_off_vs_ceiling'))})"])
    m = res.get("migration", {})
    for label, name in (("4m", "4 MiB"), ("4k", "4 KiB")):
        c = m.get(label)
        if not c:
            continue
        i, r = c.get("inplace", {}), c.get("release", {})
        rows.append([f"move_pages of bound idle {name} objects vs plain shmem (pages/s ratio): in place / release",
                     f"**{fmt(c.get('ratio_inplace_vs_plain'))}** / {fmt(c.get('ratio_release_vs_plain'))}"])
        rows.append([f"pages released per page moved, {name} objects: in place / release",
                     f"**{fmt(i.get('released_pages_per_page_moved_median'))}** / "
                     f"{fmt(r.get('released_pages_per_page_moved_median'))}"])
        rows.append([f"first GPU batch after the move, {name} objects, ms/MiB: in place / release",
                     f"**{fmt(i.get('first_batch_ms_per_mib_median'))}** / "
                     f"{fmt(r.get('first_batch_ms_per_mib_median'))} "
                     f"(release / in place {fmt(c.get('first_batch_release_vs_inplace'))})"])
    out = [f"Generated by `make bench` ({run['date']}, {run['total_s']} s) from commit "
           f"`{run.get('commit', 'unknown')}`, movgem.ko sha256 `{run.get('module_sha256', 'unknown')[:16]}`, "
           f"kernel build `{run.get('kernel_build')}`; every table: "
           "[`bench/results/latest.md`](bench/results/latest.md). A change to `rust/` or `patches/` after "
           "that commit makes these numbers stale until `make bench` runs again.", "",
           table(["benchmark", "result"], rows)]
    return "\n".join(out)


def rewrite_readme(path, text):
    try:
        src = open(path).read()
    except OSError as e:
        print(f"problem: {path}: {e}", file=sys.stderr)
        return
    b, e = src.find(BEGIN), src.find(END)
    if b < 0 or e < b:
        print(f"problem: {path} has no {BEGIN} ... {END} section", file=sys.stderr)
        return
    with open(path, "w") as f:
        f.write(src[:b + len(BEGIN)] + "\n" + text + "\n" + src[e:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpus", required=True)
    ap.add_argument("--kernel-dir", default="")
    ap.add_argument("--total-s", type=int, default=0)
    ap.add_argument("--ko", default="", help="the movgem.ko the guests loaded")
    ap.add_argument("--top", default="", help="the source tree (for git describe)")
    ap.add_argument("--readme", default="", help="rewrite its bench-headline section")
    ap.add_argument("boots", nargs="*")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    res, problems, boots = {}, [], []
    for b in a.boots:
        label, mem, secs, rc, log = b.split(":", 4)
        r, p = collect(log)
        merge(res, r)
        problems += p
        if not r:
            problems.append(f"{label} guest printed no results (see {log})")
        boots.append({"label": label, "memory": mem, "seconds": int(secs), "verdict_rc": int(rc),
                      "console": os.path.basename(log)})
    kernel = None
    for c in get(res, "config", {}).values():
        kernel = c.get("kernel") or kernel
    try:
        qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
        qemu = qemu.splitlines()[0] if qemu else "unknown"
    except OSError:
        qemu = "unknown"
    res["run"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "host_cpus": os.cpu_count(),
        "total_s": a.total_s,
        "kernel": kernel,
        "kernel_build": os.path.basename(a.kernel_dir.rstrip("/")),
        "commit": describe(a.top),
        "module_sha256": sha256(a.ko),
        "qemu": {"accel": "tcg", "cpu_model": "max", "cpus": int(a.cpus), "version": qemu,
                 "append": "console=ttyS0 numa=fake=2 movgem_mode=bench"},
        "boots": boots,
        "problems": problems,
    }
    names = plots(res, a.out)
    with open(os.path.join(a.out, "latest.json"), "w") as f:
        json.dump(res, f, indent=1, sort_keys=False)
        f.write("\n")
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(markdown(res, names))
    print(open(os.path.join(a.out, "latest.md")).read())
    if a.readme:
        rewrite_readme(a.readme, headline(res))
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)


if __name__ == "__main__":
    main()
