#!/usr/bin/python3
"""Turn the consoles of `make bench` boots into bench/results/.

  bench-report.py --out DIR --cpus N --kernel-dir KDIR --total-s S \
      LABEL:MEM:SECONDS:RC:LOG ...

Each LOG is a QEMU console; every `movgem-bench: {"key":K,"value":V}`
line in it is nested under the dotted key K; LOG.cmd, written by
scripts/run-qemu.sh, is the QEMU command line of that boot.  Writes
DIR/latest.json, DIR/latest.md and the plots, each as DIR/*.svg and
DIR/*.png (matplotlib, Debian's python3-matplotlib: run it with
/usr/bin/python3).  With --readme README.md and --doc
Documentation/benchmarks.md, also rewrites the generated sections of
those (between their markers).  Reports numbers; judges nothing.

  bench-report.py --out DIR --from-json latest.json
      redraws the plots and latest.md of earlier results;
  bench-report.py --out DIR --demo-buddyinfo LOG
      draws DIR/demo-buddyinfo.{svg,png} from a `make demo` console.
"""
import argparse
import datetime
import json
import math
import random
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


# ---------------------------------------------------------------- plots


# The configurations of the fragmentation rounds, in the order the plots
# show them, with their labels.
FRAG_SERIES = [("ceiling", "ceiling (unbound)"), ("inplace", "in place"), ("release", "release (2016)"),
               ("release_awake", "release, GPU awake"),
               ("hook_off", "hook off"), ("physical_limit", "physical limit")]
BUDDY_CONFIGS = [("ceiling", "ceiling"), ("hook_off", "hook off"), ("release", "release"), ("inplace", "in place")]


def pyplot():
    """matplotlib.pyplot, set up for files (no display), or None."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({
        # Reproducible SVG: the same results draw the same file.
        "svg.hashsalt": "movgem",
        "svg.fonttype": "none",
        "font.size": 10,
        "axes.titlesize": 12,
        "axes.titleweight": "bold",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "axes.axisbelow": True,
        "grid.alpha": 0.35,
        "legend.frameon": False,
        "savefig.dpi": 120,
    })
    return plt


def save(plt, fig, out, name, rect=(0, 0, 1, 1)):
    """Writes `name` (an .svg file name) and the .png next to it."""
    stem = os.path.join(out, os.path.splitext(name)[0])
    fig.tight_layout(rect=rect)
    fig.savefig(stem + ".svg", metadata={"Date": None})
    fig.savefig(stem + ".png", metadata={"Software": None})
    plt.close(fig)


def num(x):
    """x as a float, or NaN for a missing value."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def frag_figure(plt, res, out, name):
    """Hugepages after compaction: the median of the rounds, whiskers
    from the lowest to the highest round."""
    sizes = sizes_of(res)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    n = len(FRAG_SERIES)
    width = 0.8 / n
    for si, (key, label) in enumerate(FRAG_SERIES):
        xs, med, lo, hi = [], [], [], []
        for gi, s in enumerate(sizes):
            v = num(get(res, f"fragmentation.{s}.hugepages.{key}"))
            runs = [num(r) for r in get(res, f"fragmentation.{s}.hugepages_runs.{key}", []) or []]
            runs = [r for r in runs if not math.isnan(r)] or [v]
            xs.append(gi - 0.4 + width * (si + 0.5))
            med.append(v)
            lo.append(max(v - min(runs), 0) if not math.isnan(v) else 0)
            hi.append(max(max(runs) - v, 0) if not math.isnan(v) else 0)
        bars = ax.bar(xs, med, width * 0.92, label=label, color=f"C{si}",
                      yerr=[lo, hi], capsize=3, error_kw={"elinewidth": 1, "ecolor": "#333"})
        ax.bar_label(bars, labels=[fmt(int(v)) if not math.isnan(v) else "" for v in med],
                     fontsize=8, padding=4)
    ax.set_xticks(range(len(sizes)), [f"{s} guest" for s in sizes])
    ax.set_ylabel("2 MiB hugepages")
    ax.set_title("2 MiB hugepages after compaction, GPU asleep (but for release, GPU awake)")
    ax.grid(axis="x", visible=False)
    ax.legend(ncol=3, fontsize=8, loc="upper left")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
    ax.text(1.0, -0.13, "bars: median of the rounds; whiskers: lowest and highest round",
            transform=ax.transAxes, ha="right", fontsize=7, color="#555")
    save(plt, fig, out, name)


def migration_figure(plt, res, out, name):
    """move_pages throughput: every run as a dot, the median as a bar."""
    m = res.get("migration", {})
    series = [("plain_shmem", "plain shmem"), ("inplace", "in place"), ("release", "release (2016)")]
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    for ax, (o, title) in zip(axes, (("4m", "4 MiB objects"), ("4k", "4 KiB objects"))):
        for i, (key, label) in enumerate(series):
            d = get(m, f"{o}.{key}", {}) or {}
            runs = [num(x) for x in d.get("pages_per_s", [])]
            ax.bar(i, num(d.get("pages_per_s_median")), 0.6, color=f"C{i}", alpha=0.55)
            if runs:
                jitter = [(k - (len(runs) - 1) / 2) * 0.06 for k in range(len(runs))]
                ax.scatter([i + j for j in jitter], runs, s=14, color=f"C{i}", edgecolor="#222",
                           linewidth=0.5, zorder=3)
        ax.set_xticks(range(len(series)), [label for _, label in series])
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", visible=False)
    axes[0].set_ylabel("pages per second")
    fig.suptitle("move_pages throughput: every run (dots), median (bars)", fontweight="bold")
    save(plt, fig, out, name)


def latency_figure(plt, res, out, name):
    """One row per case: the range of the samples and their percentiles,
    on a logarithmic axis."""
    lat = res.get("latency", {})
    cases = [(k, label) for k, label in LAT_CASES if k in lat]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(cases) + 1.6))
    marks = [("min", "|", "min"), ("p50", "o", "p50"), ("p90", "s", "p90"), ("p99", "D", "p99"),
             ("max", "x", "max")]
    for row, (k, _) in enumerate(cases):
        d = lat[k]
        y = len(cases) - 1 - row
        ax.plot([num(d.get("min")), num(d.get("max"))], [y, y], color="#999", lw=1.2, zorder=1)
        ax.plot([num(d.get("p50")), num(d.get("p99"))], [y, y], color="C0", lw=4, alpha=0.35, zorder=1)
        for mi, (q, marker, label) in enumerate(marks):
            ax.scatter([num(d.get(q))], [y], marker=marker, color=f"C{mi}", s=30, zorder=3,
                       label=label if row == 0 else None)
    ax.set_yticks([len(cases) - 1 - r for r in range(len(cases))],
                  [f"{label} (n={fmt(lat[k].get('n'))})" for k, label in cases], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("µs per call (log scale)")
    ax.set_title("single-page move_pages latency")
    ax.grid(axis="y", visible=False)
    ax.legend(ncol=5, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.06))
    save(plt, fig, out, name)


def reclaim_figure(plt, res, out, name):
    """Memory hog wall time: the median run as a bar, every run a dot."""
    rc = res.get("reclaim", {})
    kinds = ["purgeable", "swappable"]
    series = [("hog_shrinker_off", "shrinker off"), ("hog_shrinker_on", "shrinker on")]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    width = 0.35
    for si, (run, label) in enumerate(series):
        xs = [gi - width / 2 + si * width for gi in range(len(kinds))]
        vals = [num(get(rc, f"{k}.{run}.seconds")) for k in kinds]
        bars = ax.bar(xs, vals, width * 0.92, color=f"C{si}", alpha=0.75, label=label)
        done = [get(rc, f"{k}.{run}.completed_runs") for k in kinds]
        total = [len(get(rc, f"{k}.{run}.seconds_runs", []) or []) for k in kinds]
        ax.bar_label(bars, labels=[fmt(v) + (f"\n{d} of {t} done" if d is not None and d < t else "")
                                   for v, d, t in zip(vals, done, total)], fontsize=8, label_type="edge",
                     padding=2)
        for x, k in zip(xs, kinds):
            runs = [num(v) for v in get(rc, f"{k}.{run}.seconds_runs", []) or []]
            ax.scatter([x] * len(runs), runs, s=14, color="#222", zorder=3,
                       label="every run" if si == 0 and k == kinds[0] else None)
    ax.set_xticks(range(len(kinds)), [f"{k} objects" for k in kinds])
    ax.set_ylabel("seconds")
    ax.set_title("memory hog wall time (median run, every run)")
    if rc.get("hog_locked"):
        ax.text(1.0, -0.12, "hog locked (mlock); a run not done was OOM-killed", transform=ax.transAxes,
                ha="right", fontsize=7, color="#555")
    ax.grid(axis="x", visible=False)
    ax.legend(fontsize=8)
    save(plt, fig, out, name)


def loglog_fit(points, slope=None):
    """(slope, intercept) of log10(y) over log10(x), by least squares over
    the positive points, as the guest computes it; None below two.  With
    `slope` (the guest's, from unrounded samples), only the intercept."""
    pts = [(math.log10(x), math.log10(y)) for x, y in points if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    if not isinstance(slope, (int, float)) or isinstance(slope, bool):
        slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx
    return slope, my - slope * mx


def loglog_figure(plt, out, name, title, series, xlabel, ylabel):
    """series: [(label, [(x, y), ...], slope or None)]; both axes
    logarithmic, each series with its least-squares line and slope."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    drawn = False
    for si, (label, pts, slope) in enumerate(series):
        pts = [(num(x), num(y)) for x, y in pts]
        good = [(x, y) for x, y in pts if x > 0 and y > 0]
        if not good:
            continue
        drawn = True
        fit = loglog_fit(good, slope)
        text = label if fit is None else f"{label}: slope {fit[0]:.2f}"
        ax.plot([p[0] for p in good], [p[1] for p in good], "o", color=f"C{si}", label=text)
        if fit is not None:
            xs = [min(p[0] for p in good), max(p[0] for p in good)]
            ax.plot(xs, [10 ** (fit[1] + fit[0] * math.log10(x)) for x in xs], "-", color=f"C{si}",
                    lw=1.2, alpha=0.8)
    if drawn:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8, title="least-squares fit, log-log (1 = linear)", title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    save(plt, fig, out, name)


def free_mib(counts, page_kib=4):
    """MiB free in blocks of each order, from per-order block counts."""
    return [c * (page_kib << order) / 1024 for order, c in enumerate(counts)]


def buddy_figure(plt, out, name, title, panels, page_kib=4):
    """Free memory by order, stacked: panels is [(panel title, [(group,
    bar label, per-order free block counts), ...])], one bar per
    snapshot, a gap between groups.  False if there is nothing to draw."""
    orders = max((len(c) for _, bars in panels for _, _, c in bars), default=0)
    if not orders:
        return False
    cmap = plt.get_cmap("viridis", orders)
    nbars = max(len(bars) for _, bars in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(0.55 * nbars * len(panels) + 3.2, 6.5), 4.6),
                             sharey=True, squeeze=False)
    for ax, (ptitle, bars) in zip(axes[0], panels):
        xs, x, last = [], 0.0, None
        for group, _, _ in bars:
            if xs and group != last:
                x += 0.5
            xs.append(x)
            x += 1
            last = group
        bottom = [0.0] * len(bars)
        for order in range(orders):
            vals = [free_mib(c, page_kib)[order] if order < len(c) else 0 for _, _, c in bars]
            kib = page_kib << order
            size = f"{kib // 1024} MiB" if kib >= 1024 else f"{kib} KiB"
            ax.bar(xs, vals, 0.8, bottom=bottom, color=cmap(order), label=f"order {order} ({size})")
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xticks(xs, [f"{label}\n{group}" if group else label for group, label, _ in bars], fontsize=7)
        ax.set_title(ptitle, fontsize=10)
        ax.grid(axis="x", visible=False)
    axes[0][0].set_ylabel("free MiB, by the order of its block")
    fig.suptitle(title, fontweight="bold")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], loc="center right", fontsize=7)
    save(plt, fig, out, name, rect=(0, 0, 1 - 1.45 / fig.get_figwidth(), 1))
    return True


def frag_buddy_panels(res):
    """The fragmentation rounds' /proc/buddyinfo panels, one per guest."""
    panels = []
    for s in sizes_of(res):
        fb = get(res, f"fragmentation.{s}.free_blocks_by_order")
        if not isinstance(fb, dict):
            continue
        bars = []
        for key, label in BUDDY_CONFIGS:
            d = fb.get(key)
            if isinstance(d, dict):
                bars.append((label, "before", d.get("before_compaction") or []))
                bars.append((label, "after", d.get("after_compaction") or []))
        if bars:
            panels.append((f"{s} guest", bars))
    return panels


# ---------------------------------------------------------------- report


def sizes_of(res):
    return sorted(get(res, "fragmentation", {}).keys(), key=lambda s: float(re.sub(r"[^0-9.]", "", s) or 0))


# A round is an outlier when its hugepages are this fraction of the
# configuration's median physical limit away from the median.
OUTLIER = 0.10
# Per-round counters compared with the configuration's median in the
# outlier notes: (key, label).
ROUND_COUNTERS = [
    ("physical_limit", "physical limit"), ("free_mib_before_alloc", "MiB free after compaction"),
    ("hook_calls", "hook calls"),
    ("available_mib_at_start", "MiB available at the start"), ("migrated", "migrated"),
    ("migrated_in_place", "moved in place"), ("released_pages", "pages released"),
    ("released_objects", "objects released"), ("refused_suspended", "refused while suspended"),
    ("runtime_resumes", "runtime resumes"), ("hook_bypassed", "hook bypassed"),
    ("bound_objects", "bound objects"), ("bound_objects_after", "bound objects after"),
    ("compact_s", "compaction s"), ("setup_s", "setup s"),
]


def spread_of(f, key):
    """'min / median / max' of the hugepages and of the physical limit of
    configuration `key`, from the rounds."""
    rounds = get(f, f"rounds.{key}", []) or []
    out = []
    for field in ("hugepages", "physical_limit"):
        v = sorted(r.get(field) for r in rounds if isinstance(r.get(field), (int, float)))
        out.append(" / ".join(fmt(x) for x in (v[0], v[(len(v) - 1) // 2], v[-1])) if v else "n/a")
    return out


def median(v):
    v = sorted(x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool))
    return v[(len(v) - 1) // 2] if v else None


def frag_outliers(res):
    """Markdown bullets for the outlier rounds of every configuration."""
    md = []
    for s in sizes_of(res):
        f = res["fragmentation"][s]
        for key, label in FRAG_SERIES[:-1]:
            rounds = get(f, f"rounds.{key}", []) or []
            hp = median([r.get("hugepages") for r in rounds])
            lim = median([r.get("physical_limit") for r in rounds])
            if hp is None or not lim:
                continue
            meds = {k: median([r.get(k) for r in rounds]) for k, _ in ROUND_COUNTERS}
            for i, r in enumerate(rounds):
                x = r.get("hugepages")
                if not isinstance(x, (int, float)) or abs(x - hp) <= OUTLIER * lim:
                    continue
                notes = []
                for k, name in ROUND_COUNTERS:
                    v, m = r.get(k), meds.get(k)
                    if not isinstance(v, (int, float)) or m is None:
                        continue
                    if abs(v - m) > max(0.1 * abs(m), 1 if isinstance(v, int) else 0.1):
                        notes.append(f"{name} {fmt(v)} (median {fmt(m)})")
                if key != "release_awake" and r.get("runtime_status_after") not in (None, "suspended"):
                    notes.append(f"GPU {r.get('runtime_status_after')} after the round")
                ua = get(r, "unusable_index_order9_after.mean")
                ums = median([get(q, "unusable_index_order9_after.mean") for q in rounds])
                if isinstance(ua, (int, float)) and ums is not None and abs(ua - ums) > 0.05:
                    notes.append(f"unusable index after {fmt(ua)} (median {fmt(ums)})")
                if not notes:
                    notes.append("every counter as in the median round: the layout the page allocator "
                                 "handed out, not the hook, made the difference")
                md.append(f"- {s} {label}, round {i + 1}: {fmt(x)} hugepages (median {fmt(hp)}, "
                          f"physical limit {fmt(r.get('physical_limit'))}); " + "; ".join(notes))
    return md


def sections(res, plots, h="##"):
    """The Markdown of every benchmark in `res`: heading level `h`,
    images from `plots` (figure: path)."""
    md = []
    if sizes_of(res):
        md.append(f"{h} Fragmentation recovery (2 MiB hugepages after compaction, GPU asleep; release also awake)\n")
        rows = []
        for s in sizes_of(res):
            f = res["fragmentation"][s]
            hp = f.get("hugepages", {})
            u = f.get("unusable_index_order9", {})
            rows.append([s, hp.get("ceiling"), hp.get("inplace"), hp.get("release"), hp.get("release_awake"),
                         hp.get("hook_off"),
                         hp.get("physical_limit"), f.get("inplace_vs_ceiling"), f.get("release_vs_ceiling"),
                         f.get("release_awake_vs_ceiling"),
                         f.get("hook_off_vs_ceiling"), get(f, "released_pages.inplace"),
                         get(f, "released_pages.release"), get(f, "released_pages.release_awake"),
                         get(f, "thp_pages.ceiling"), get(f, "thp_pages.inplace"), get(f, "thp_pages.hook_off"),
                         get(u, "inplace.after_compaction"), get(u, "hook_off.after_compaction")])
        md.append(table(["guest", "ceiling", "in place", "release", "release, GPU awake", "hook off",
                         "physical limit (every round)",
                         "in place/ceiling", "release/ceiling", "release awake/ceiling", "off/ceiling",
                         "pages released, in place",
                         "pages released, release", "pages released, release awake", "THP ceiling", "THP in place", "THP off",
                         "unusable idx in place", "unusable idx off"], rows))
        md.append("")
        rows = []
        for s in sizes_of(res):
            f = res["fragmentation"][s]
            runs = f.get("hugepages_runs", {})
            for key, label in FRAG_SERIES[:-1]:
                hs, ls = spread_of(f, key)
                rows.append([s, label, hs, ls, get(f, f"vs_physical_limit.{key}"),
                             ", ".join(fmt(int(x)) for x in runs.get(key, []))])
        md.append(table(["guest", "configuration", "hugepages min / median / max",
                         "physical limit min / median / max", "median hugepages / median limit",
                         "hugepages, every round"], rows))
        fr = res["fragmentation"]
        if all("objects" in fr[s] for s in sizes_of(res)):
            layout = ("a fixed count per guest, " + ", ".join(f"{fmt(fr[s]['objects'])} in the {s} guest"
                                                              for s in sizes_of(res))
                      + ": 3/8 of the memory available before the first round")
        else:
            layout = "3/8 of the memory available at the start of each round"
        md.append("\nHugepages: the first table gives medians of the rounds "
                  f"({'/'.join(sorted({str(res['fragmentation'][s].get('rounds_per_config')) for s in sizes_of(res)}))} "
                  "per configuration, interleaved, after one warm-up round), "
                  "the second min, median and max of each configuration, with its own physical limit "
                  "(MemFree / 2 MiB after compaction, measured in every round). "
                  f"hugetlb pages obtained after `compact_memory` with objects ({layout}, 4 MiB each) "
                  "scattered over memory, bound and "
                  "idle, the GPU runtime-suspended (release, GPU awake: held awake by a wakeref through "
                  "compaction and the allocation); ceiling: the same objects written but never bound; THP: "
                  "2 MiB pages an anonymous region of half the free memory got (THP enabled=always, "
                  "defrag=madvise); unusable index: order 9, mean over zones, after compaction (0 = all free "
                  "memory usable for 2 MiB).")
        out = frag_outliers(res)
        if out:
            md.append(f"\n{h}# Outlier rounds\n")
            md.append(f"Rounds more than {int(OUTLIER * 100)}% of their configuration's median physical limit "
                      "away from the configuration's median hugepages, with the per-round counters that differ "
                      "from the configuration's median round:\n")
            md += out
            md.append("")
        md.append(f"\n![fragmentation]({plots['fragmentation']})\n")
        if "buddyinfo" in plots:
            md.append("Free memory by the order of its block (/proc/buddyinfo, every zone summed), right before "
                      "and right after compaction, in the median round (by hugepages) of each configuration: "
                      "`free_blocks_by_order` in `latest.json`.")
            md.append(f"\n![free memory by order]({plots['buddyinfo']})\n")

    m = res.get("migration")
    if m:
        md.append(f"{h} Migration cost (move_pages between the two fake nodes, GPU awake)\n")
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
        md.append(f"{h} Busy-path latency (one single-page move_pages call, µs)\n")
        rows = []
        for k, label in LAT_CASES:
            d = lat.get(k)
            if d:
                rows.append([label, d.get("n"), d.get("p50"), d.get("p99"), d.get("max"), d.get("pages_moved")])
        md.append(table(["case", "samples", "p50", "p99", "max", "pages moved"], rows))
        md.append(f"\n![latency]({plots['latency']})\n")

    rc = res.get("reclaim")
    if rc:
        md.append(f"{h} Reclaim\n")
        rows = []
        for kind in ("purgeable", "swappable"):
            k = rc.get(kind, {})
            for run, label in (("hog_shrinker_off", "hog, shrinker off"), ("hog_shrinker_on", "hog, shrinker on"),
                               ("drop_caches", "drop_caches=3, shrinker on")):
                r = k.get(run, {})
                runs = ", ".join(fmt(x) for x in r.get("seconds_runs", []))
                done = r.get("completed_runs")
                done = f"{done} of {len(r.get('seconds_runs', []))}" if done is not None else r.get("completed")
                # Earlier results: freed_mib_per_s for both kinds.
                rate = r.get("references_dropped_mib_per_s") if kind == "swappable" else r.get("freed_mib_per_s")
                if rate is None:
                    rate = r.get("freed_mib_per_s")
                rows.append([kind, label, r.get("seconds"), runs or "-", done, r.get("shrink_freed_mib"), rate,
                             r.get("shmem_freed_mib"), r.get("memfree_gained_mib"), r.get("shmem_freed_mib_per_s"),
                             r.get("objects_swap_used_mib")])
        md.append(f"Objects: {fmt(rc.get('objects_mib'))} MiB; hog: {fmt(rc.get('hog_mib'))} MiB"
                  f"{', locked (mlock)' if rc.get('hog_locked') else ''}; swap: {rc.get('swap')}.\n")
        md.append(table(["objects", "driver", "seconds (median run)", "every run", "completed",
                         "shrinker reported MiB", "its MiB/s (purged; swappable: references dropped)",
                         "Shmem freed MiB", "MemFree gained MiB", "Shmem freed MiB/s", "object swap used MiB"],
                        rows))
        md.append("\nThe shrinker's own count (`shrink_freed_pages`) is pages purged for purgeable objects and "
                  "page references dropped for swappable ones; Shmem freed and MemFree gained are what "
                  "/proc/meminfo says came back, measured around the driver (the hog gone, Shmem settled). "
                  "The hog locks its memory, so without the shrinker nothing can give it the memory and the "
                  "OOM killer takes it (completed: how many runs finished).")
        md.append("")
        md.append(table(["objects", "hog wait, shrinker on / off (n/a unless every run completed)"],
                        [[k, get(rc, f"{k}.hog_wait_ratio_on_vs_off")] for k in ("purgeable", "swappable")]))
        md.append(f"\n![reclaim]({plots['reclaim']})\n")

    cm = res.get("cma")
    if cm:
        md.append(f"{h} CMA allocation over idle bound objects\n")
        md.append(f"`cma_alloc()` of the whole {fmt(cm.get('area_mib'))} MiB area (`cma=64M`, node "
                  f"{fmt(cm.get('node'))}) through CMA's debugfs, in chunks of {fmt(cm.get('chunk_pages'))} "
                  f"pages, with {fmt(get(cm, 'runs.inplace.occupant_mib'))} MiB of occupants placed in the "
                  f"area first; stopped after {fmt(cm.get('timeout_s'))} s.\n")
        rows = []
        for key, label in USER_CONFIGS:
            r = get(cm, f"runs.{key}")
            if isinstance(r, dict):
                rows.append([label, r.get("hook"), r.get("gpu"), r.get("area_used_mib_before"),
                             f"{fmt(r.get('allocated_mib'))} / {fmt(r.get('requested_mib'))}", r.get("seconds"),
                             ", ".join(fmt(x) for x in r.get("seconds_runs", [])) or "-",
                             "yes" if r.get("timed_out") else "no", r.get("migrated_in_place"),
                             r.get("released_objects"), r.get("refused_suspended")])
        md.append(table(["occupants", "hook", "GPU", "area MiB in use before", "MiB allocated / requested",
                         "seconds (median run)", "every run", "timed out", "folios moved in place", "objects released",
                         "refused while suspended"], rows))
        md.append("\nA chunk that fails has `cma_alloc()` retry at every page offset of the area, "
                  "migrating each candidate range again: a timed-out run was still retrying one chunk, and "
                  "its MiB allocated are what the time allowed. A configuration that finishes in time runs "
                  "three times, each from a fresh placement; the median run is shown, with every time.\n")

    mo = res.get("memory_offline")
    if mo:
        md.append(f"{h} Memory offline over idle bound objects\n")
        md.append(f"Offlining memory block {fmt(mo.get('block'))} ({fmt(mo.get('block_mib'))} MiB, node "
                  f"{fmt(mo.get('node'))}, onlined as ZONE_MOVABLE) holding "
                  f"{fmt(get(mo, 'runs.inplace.occupant_mib'))} MiB of occupants; the writer is killed "
                  f"after {fmt(mo.get('timeout_s'))} s.\n")
        rows = []
        for key, label in USER_CONFIGS:
            r = get(mo, f"runs.{key}")
            if isinstance(r, dict):
                rows.append([label, r.get("hook"), r.get("gpu"), r.get("block_used_mib_before"),
                             r.get("outcome"), r.get("seconds"),
                             ", ".join(fmt(x) for x in r.get("seconds_runs", [])) or "-", r.get("migrated_in_place"),
                             r.get("released_objects"), r.get("refused_suspended")])
        md.append(table(["occupants", "hook", "GPU", "block MiB in use before", "outcome", "seconds (median run)",
                         "every run",
                         "folios moved in place", "objects released", "refused while suspended"], rows))
        md.append("\nA configuration that finishes in time runs three times, each from a fresh placement; the "
                  "median run is shown, with every time.\n")

    sc = res.get("scale")
    if sc:
        md.append(f"{h} Scale\n")
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
    return md


def markdown(res, plots):
    md = []
    md.append("# movgem benchmarks: latest run\n")
    cfg = res["run"]
    md.append(f"Run {cfg['date']} on {cfg['host']} ({cfg['host_cpus']} host CPUs); "
              f"`make bench` took {cfg['total_s']} s. QEMU: accel {cfg['qemu']['accel']}, "
              f"-cpu {cfg['qemu']['cpu_model']}, {cfg['qemu']['cpus']} vCPUs, "
              f"kernel {cfg.get('kernel', 'n/a')} (plain flavour, .config sha256 "
              f"`{str(cfg.get('kernel_config_sha256', 'unknown'))[:16]}`), "
              f"command line `{cfg['qemu'].get('append', 'unknown')}`. "
              f"Commit `{cfg.get('commit', 'unknown')}`, movgem.ko sha256 `{cfg.get('module_sha256', 'unknown')}`.\n")
    rows = []
    for b in cfg["boots"]:
        c = get(res, f"config.{b['label']}", {})
        rows.append([b["label"], b["memory"], str(b["seconds"]), str(b["verdict_rc"]),
                     str(get(c, "mem_total_mib", "n/a")), str(get(c, "numa_nodes", "n/a")),
                     ", ".join(f"{k}={v}" for k, v in get(c, "module_params", {}).items())])
    md.append(table(["boot", "-m", "seconds", "verdict rc", "MemTotal MiB", "nodes", "module params"], rows))
    md.append("")

    md += sections(res, plots)

    errs = res.get("errors")
    if errs or res["run"].get("problems"):
        md.append("## Problems in this run\n")
        for k, v in (errs or {}).items():
            md.append(f"- `{k}`: {v}")
        for p in res["run"].get("problems", []):
            md.append(f"- {p}")
    return "\n".join(md) + "\n"


# The configurations of the cma and memory_offline benchmarks.
USER_CONFIGS = [("plain_shmem", "plain shmem (memfd)"), ("hook_off", "objects, hook off"),
                ("release", "objects, release (2016), GPU asleep"),
                ("release_awake", "objects, release (2016), GPU awake"),
                ("inplace", "objects, in place, GPU asleep")]


LAT_CASES = [
    ("same_node_call", "page already on the target node (a call that moves nothing)"),
    ("plain_migration", "plain shmem page, migrates"),
    ("active", "active object, hook on (-EBUSY)"),
    ("active_hook_off", "active object, hook off (-EAGAIN, retried)"),
    ("lock_contended_10ms", "contended struct_mutex, lock_timeout_ms=10"),
    ("lock_contended_2ms", "contended struct_mutex, lock_timeout_ms=2"),
]


PLOTS = {
    "fragmentation": "fragmentation.svg",
    "buddyinfo": "buddyinfo.svg",
    "migration": "migration.svg",
    "latency": "latency.svg",
    "reclaim": "reclaim.svg",
    "scale_count": "scale-count.svg",
    "scale_size": "scale-size.svg",
}


def plots(res, out):
    """Draws every figure as SVG and PNG; returns the SVG names by figure
    (for the Markdown) and the problems met."""
    names = dict(PLOTS)
    buddy = frag_buddy_panels(res)
    if not buddy:
        del names["buddyinfo"]
    plt = pyplot()
    if plt is None:
        return names, ["matplotlib is missing (apt-get install python3-matplotlib): no plots drawn"]
    frag_figure(plt, res, out, names["fragmentation"])
    if buddy:
        buddy_figure(plt, out, names["buddyinfo"], "free memory by block order, before and after compaction",
                     buddy)
    migration_figure(plt, res, out, names["migration"])
    latency_figure(plt, res, out, names["latency"])
    reclaim_figure(plt, res, out, names["reclaim"])
    sc = res.get("scale", {})
    sl = sc.get("loglog_slopes", {})
    bc = sc.get("by_count", [])
    loglog_figure(plt, out, names["scale_count"], "total cost vs object count (4 KiB objects)",
                  [("hook (move_pages all)", [(r.get("objects"), r.get("hook_s")) for r in bc],
                    sl.get("hook_total_vs_count")),
                   ("shrinker (drop_caches)", [(r.get("objects"), r.get("shrink_s")) for r in bc],
                    sl.get("shrinker_total_vs_count"))],
                  "objects", "seconds")
    bs = sc.get("by_size", [])
    loglog_figure(plt, out, names["scale_size"], "cost per object vs object size",
                  [("hook net µs/object", [(r.get("pages_per_object"), r.get("hook_net_us_per_object")) for r in bs],
                    sl.get("hook_per_object_vs_pages")),
                   ("shrinker µs/object", [(r.get("pages_per_object"), r.get("shrink_us_per_object")) for r in bs],
                    sl.get("shrinker_per_object_vs_pages"))],
                  "pages per object", "µs")
    return names, []


BUDDY_HEAD = re.compile(r"movgem demo: (?:hook=(\S+): )?/proc/buddyinfo (before|after) compaction:")
BUDDY_LINE = re.compile(r"^Node\s+\d+,\s+zone\s+\S+((?:\s+\d+)+)\s*$")


def demo_buddyinfo(log):
    """The /proc/buddyinfo snapshots `make demo` printed: [(hook, "before"
    or "after", per-order free blocks summed over zones)], in console
    order."""
    snaps, cur = [], None
    for line in open(log, errors="replace").read().replace("\r", "").splitlines():
        m = BUDDY_HEAD.search(line)
        if m:
            hook, when = m.group(1), m.group(2)
            cur = [f"hook={hook}" if hook else "", when, []]
            snaps.append(cur)
            continue
        z = BUDDY_LINE.match(line)
        if z and cur is not None:
            counts = [int(c) for c in z.group(1).split()]
            acc = cur[2]
            acc.extend([0] * (len(counts) - len(acc)))
            for order, c in enumerate(counts):
                acc[order] += c
        elif cur is not None and cur[2]:
            cur = None
    return [tuple(snap) for snap in snaps if snap[2]]


def demo_main(log, out):
    """`make demo`'s picture: free memory by order before compaction and
    after each hook's round."""
    snaps = demo_buddyinfo(log)
    if not snaps:
        print(f"problem: {log}: no /proc/buddyinfo in it", file=sys.stderr)
        return 1
    plt = pyplot()
    if plt is None:
        print("problem: matplotlib is missing (apt-get install python3-matplotlib)", file=sys.stderr)
        return 1
    os.makedirs(out, exist_ok=True)
    buddy_figure(plt, out, "demo-buddyinfo.svg", "make demo: free memory by block order",
                 [("every zone summed; the hook rounds run in turn", snaps)])
    print(os.path.join(out, "demo-buddyinfo.png"))
    return 0


DEMO_EXCERPT = ("<!-- demo-excerpt:begin -->", "<!-- demo-excerpt:end -->")
DEMO_FULL = ("<!-- demo-full:begin -->", "<!-- demo-full:end -->")
# The lines of `make demo`'s output the README's excerpt keeps.
DEMO_EXCERPT_LINES = re.compile(r"^movgem demo: (\d+ MiB available|\d+ objects bound|hook=\w+: \d+ hugepages"
                                r"|data check|hugepages with the GPU asleep)")


def demo_publish(log, top, ko, kernel_dir, readme, usage, image_dir):
    """Rewrites the README's demo excerpt, usage.md's full demo output
    and the published picture from one `make demo` console, naming the
    commit, module and kernel that produced them."""
    lines = [ln for ln in open(log, errors="replace").read().replace("\r", "").splitlines()
             if re.match(r"^(movgem demo|Node )", ln)]
    if not any(ln.startswith("movgem demo: hugepages with the GPU asleep") for ln in lines):
        print(f"problem: {log}: the demo did not finish; nothing published", file=sys.stderr)
        return 1
    # The commit before anything here is rewritten (else it reads -dirty).
    commit = describe(top)
    if demo_main(log, image_dir):
        return 1
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    prov = (f"Generated by `DEMO_PUBLISH=1 make demo` ({when}) from commit `{commit}`, movgem.ko "
            f"sha256 `{sha256(ko)[:16]}`, kernel build `{os.path.basename(kernel_dir.rstrip('/'))}`. A change "
            "to `rust/` or `patches/` after that commit makes it stale until it runs again.")
    # The lines kept, with one "..." where the rounds' details were.
    excerpt = []
    for ln in lines:
        if DEMO_EXCERPT_LINES.match(ln):
            excerpt.append(ln)
        elif len(excerpt) == 2:
            excerpt.append("...")
    rewrite_between(readme, *DEMO_EXCERPT, "\n".join([prov, "", "```"] + excerpt + ["```"]))
    rewrite_between(usage, *DEMO_FULL, "\n".join([prov, "", "```"] + lines + ["```"]))
    return 0


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


def ratio_interval(num_runs, den_runs, resamples=4000, level=0.95):
    """A percentile bootstrap interval for median(num) / median(den),
    each list resampled with replacement (a fixed seed: the same
    results give the same interval), or None with fewer than 3 runs
    on either side."""
    a = [x for x in num_runs or [] if isinstance(x, (int, float)) and x > 0]
    b = [x for x in den_runs or [] if isinstance(x, (int, float)) and x > 0]
    if len(a) < 3 or len(b) < 3:
        return None
    rng = random.Random(0)
    ratios = sorted(median(rng.choices(a, k=len(a))) / median(rng.choices(b, k=len(b)))
                    for _ in range(resamples))
    lo = ratios[int((1 - level) / 2 * resamples)]
    hi = ratios[int((1 + level) / 2 * resamples) - 1]
    return lo, hi


def ratio_cell(c, key):
    """'0.89 (95% CI 0.80-0.97)' for configuration `key` against plain
    shmem in migration result `c`, with 'no difference' when the
    interval holds 1."""
    ratio = c.get(f"ratio_{key}_vs_plain")
    ci = ratio_interval(get(c, f"{key}.pages_per_s"), get(c, "plain_shmem.pages_per_s"))
    if ci is None:
        return fmt(ratio)
    verdict = "; no difference" if ci[0] <= 1 <= ci[1] else ""
    return f"{fmt(ratio)} (95% CI {fmt(ci[0])}-{fmt(ci[1])}{verdict})"


def headline(res):
    """The README's headline table, from the results alone."""
    run = res["run"]
    rows = []
    for s in sizes_of(res):
        f = res["fragmentation"][s]
        h = f.get("hugepages", {})
        sp = f.get("hugepages_spread", {})

        def cell(key, bold=False):
            m = fmt(h.get(key))
            m = f"**{m}**" if bold else m
            lo, hi = get(sp, f"{key}.min"), get(sp, f"{key}.max")
            return f"{m} ({fmt(lo)}-{fmt(hi)})" if lo is not None else m
        awake = ""
        if h.get("release_awake") is not None:
            awake = (f"; release with the GPU awake {cell('release_awake')}, "
                     f"{fmt(f.get('release_awake_vs_ceiling'))} of the ceiling")
        rows.append([f"2 MiB hugepages after compaction, GPU asleep, {s} guest, median (min-max) of "
                     f"{fmt(f.get('rounds_per_config'))} rounds: "
                     "ceiling (unbound) / in place / release (2016) / hook off",
                     f"{cell('ceiling')} / {cell('inplace', True)} / {cell('release')} / {cell('hook_off')} "
                     f"(in place {fmt(f.get('inplace_vs_ceiling'))} of the ceiling, "
                     f"release {fmt(f.get('release_vs_ceiling'))}, off {fmt(f.get('hook_off_vs_ceiling'))})"
                     + awake])
    m = res.get("migration", {})
    for label, name in (("4m", "4 MiB"), ("4k", "4 KiB")):
        c = m.get(label)
        if not c:
            continue
        i, r = c.get("inplace", {}), c.get("release", {})
        rows.append([f"move_pages of bound idle {name} objects vs plain shmem (pages/s, ratio of medians of "
                     f"{len(get(c, 'inplace.pages_per_s', []) or [])} runs): in place / release",
                     f"**{ratio_cell(c, 'inplace')}** / {ratio_cell(c, 'release')}"])
        rows.append([f"pages released per page moved, {name} objects: in place / release",
                     f"**{fmt(i.get('released_pages_per_page_moved_median'))}** / "
                     f"{fmt(r.get('released_pages_per_page_moved_median'))}"])
        rows.append([f"first GPU batch after the move, {name} objects, ms/MiB: in place / release",
                     f"**{fmt(i.get('first_batch_ms_per_mib_median'))}** / "
                     f"{fmt(r.get('first_batch_ms_per_mib_median'))} "
                     f"(release / in place {fmt(c.get('first_batch_release_vs_inplace'))})"])
    cm = res.get("cma", {})
    if cm:
        cells = []
        for key in ("inplace", "release_awake", "release", "hook_off", "plain_shmem"):
            r = get(cm, f"runs.{key}", {}) or {}
            cells.append(f"{fmt(r.get('allocated_mib'))} MiB in {fmt(r.get('seconds'))} s"
                         + (" (timed out)" if r.get("timed_out") else ""))
        cells[0] = f"**{cells[0]}**"
        used = sorted(v for v in (get(cm, f"runs.{k}.area_used_mib_before") for k in
                                  ("inplace", "release_awake", "release", "hook_off", "plain_shmem"))
                      if isinstance(v, (int, float)))
        used = (f"{fmt(used[0])}-{fmt(used[-1])}" if used and used[0] != used[-1]
                else fmt(used[0]) if used else "n/a")
        rows.append([f"`cma_alloc` of the {fmt(cm.get('area_mib'))} MiB CMA area, {used} MiB of it holding "
                     f"bound idle objects (of {fmt(get(cm, 'runs.inplace.occupant_mib'))} MiB made): in place (GPU "
                     "asleep) / release, GPU awake / release, GPU asleep / hook off / plain shmem instead",
                     " / ".join(cells)])
    mo = res.get("memory_offline", {})
    if mo:
        cells = []
        for key in ("inplace", "release_awake", "release", "hook_off", "plain_shmem"):
            r = get(mo, f"runs.{key}", {}) or {}
            cells.append(f"{fmt(r.get('seconds'))} s" if r.get("offlined")
                         else "not offline after " + fmt(r.get("seconds")) + " s"
                         if r.get("outcome") == "timed_out" else str(r.get("outcome", "n/a")))
        cells[0] = f"**{cells[0]}**"
        rows.append([f"offline a {fmt(mo.get('block_mib'))} MiB memory block holding "
                     f"{fmt(get(mo, 'runs.inplace.occupant_mib'))} MiB of bound idle objects: in place (GPU "
                     "asleep) / release, GPU awake / release, GPU asleep / hook off / plain shmem instead",
                     " / ".join(cells)])
    out = [f"Generated by `make bench` ({run['date']}, {run['total_s']} s) from commit "
           f"`{run.get('commit', 'unknown')}`, movgem.ko sha256 `{run.get('module_sha256', 'unknown')[:16]}`, "
           f"kernel build `{run.get('kernel_build')}`; every table: "
           "[`bench/results/latest.md`](bench/results/latest.md). A change to `rust/` or `patches/` after "
           "that commit makes these numbers stale until `make bench` runs again.", "",
           table(["benchmark", "result"], rows)]
    return "\n".join(out)


DOC_BEGIN, DOC_END = "<!-- bench-tables:begin -->", "<!-- bench-tables:end -->"


def doc_tables(res, out, doc, plots):
    """The generated section of Documentation/benchmarks.md: the run,
    then every benchmark's tables, images linked relative to `doc`
    (PNG where it was drawn, else SVG)."""
    links = {}
    for key, svg in plots.items():
        png = os.path.splitext(svg)[0] + ".png"
        name = png if os.path.exists(os.path.join(out, png)) else svg
        links[key] = os.path.relpath(os.path.join(out, name), os.path.dirname(os.path.abspath(doc)))
    run = res["run"]
    q = run.get("qemu", {})
    boots = ", ".join(f"{b['label']} {b['seconds']} s" for b in run.get("boots", []))
    md = [f"Run {run['date']} on {run['host']} ({run['host_cpus']} host CPUs), `make bench` {run['total_s']} s "
          f"({boots}); commit `{run.get('commit', 'unknown')}`, movgem.ko sha256 "
          f"`{str(run.get('module_sha256', 'unknown'))[:16]}`, kernel {run.get('kernel', 'n/a')} build "
          f"`{run.get('kernel_build')}` (.config sha256 `{str(run.get('kernel_config_sha256', 'unknown'))[:16]}`); "
          f"QEMU `-accel {q.get('accel')} -cpu {q.get('cpu_model')}`, {q.get('cpus')} vCPUs, kernel command line "
          f"`{q.get('append')}`. Module parameters at their defaults unless a benchmark says otherwise.", ""]
    md += sections(res, links, h="###")
    return "\n".join(md).rstrip()


def rewrite_between(path, begin, end, text):
    """Replaces what lies between the markers `begin` and `end` of `path`."""
    try:
        src = open(path).read()
    except OSError as e:
        print(f"problem: {path}: {e}", file=sys.stderr)
        return
    b, e = src.find(begin), src.find(end)
    if b < 0 or e < b:
        print(f"problem: {path} has no {begin} ... {end} section", file=sys.stderr)
        return
    with open(path, "w") as f:
        f.write(src[:b + len(begin)] + "\n" + text + "\n" + src[e:])


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


def upgrade(res):
    """Renames the keys of earlier results to today's (--from-json)."""
    lat = res.get("latency")
    if isinstance(lat, dict) and "same_node_floor" in lat and "same_node_call" not in lat:
        lat["same_node_call"] = lat.pop("same_node_floor")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpus")
    ap.add_argument("--kernel-dir", default="")
    ap.add_argument("--total-s", type=int, default=0)
    ap.add_argument("--ko", default="", help="the movgem.ko the guests loaded")
    ap.add_argument("--top", default="", help="the source tree (for git describe)")
    ap.add_argument("--readme", default="", help="rewrite its bench-headline section")
    ap.add_argument("--doc", default="", help="rewrite its bench-tables section (Documentation/benchmarks.md)")
    ap.add_argument("--from-json", default="",
                    help="redraw from a latest.json (no consoles) into --out")
    ap.add_argument("--demo-buddyinfo", default="", metavar="LOG",
                    help="draw the /proc/buddyinfo snapshots of a `make demo` console into --out")
    ap.add_argument("--demo-publish", default="", metavar="LOG",
                    help="from a `make demo` console: rewrite --readme's demo excerpt, --doc's full output "
                         "(Documentation/usage.md) and the picture in --out")
    ap.add_argument("boots", nargs="*")
    a = ap.parse_args()
    if a.demo_publish:
        sys.exit(demo_publish(a.demo_publish, a.top, a.ko, a.kernel_dir, a.readme, a.doc, a.out))
    if a.demo_buddyinfo:
        sys.exit(demo_main(a.demo_buddyinfo, a.out))
    if not a.from_json and a.cpus is None:
        ap.error("--cpus is required unless --from-json is given")
    os.makedirs(a.out, exist_ok=True)
    if a.from_json:
        with open(a.from_json) as f:
            res = json.load(f)
        problems = list(res.get("run", {}).get("problems", []))
    else:
        res, problems = collect_boots(a)
        problems = list(problems)
    upgrade(res)
    names, plot_problems = plots(res, a.out)
    problems += plot_problems
    with open(os.path.join(a.out, "latest.json"), "w") as f:
        json.dump(res, f, indent=1, sort_keys=False)
        f.write("\n")
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(markdown(res, names))
    print(open(os.path.join(a.out, "latest.md")).read())
    if a.readme:
        rewrite_readme(a.readme, headline(res))
    if a.doc:
        rewrite_between(a.doc, DOC_BEGIN, DOC_END, doc_tables(res, a.out, a.doc, names))
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)


def qemu_argv(log):
    """The QEMU command line scripts/run-qemu.sh wrote next to the
    console (LOG.cmd, one argument a line), or None."""
    try:
        with open(log + ".cmd") as f:
            return f.read().rstrip("\n").split("\n")
    except OSError:
        return None


def arg_of(argv, flag):
    """The value after `flag` in argv, or None."""
    if argv and flag in argv[:-1]:
        return argv[argv.index(flag) + 1]
    return None


def qemu_summary(argvs, cpus, version):
    """Accelerator, CPU model, vCPUs and kernel command line as the first
    boot's QEMU command line gives them (every boot's is under `boots`);
    the kernel command line without what differs per boot."""
    argv = next((a for a in argvs if a), None)
    append = arg_of(argv, "-append")
    if append is not None:
        append = " ".join(w for w in append.split() if not w.startswith(("movgem_bench", "initrd")))
    smp = arg_of(argv, "-smp")
    return {"accel": arg_of(argv, "-accel") or "unknown", "cpu_model": arg_of(argv, "-cpu") or "unknown",
            "cpus": int(smp) if smp and smp.isdigit() else (int(cpus) if cpus else None),
            "version": version, "append": append or "unknown"}


def collect_boots(a):
    """(results, problems) of the boots on the command line, with the
    run's description under `run`."""
    res, problems, boots = {}, [], []
    for b in a.boots:
        label, mem, secs, rc, log = b.split(":", 4)
        r, p = collect(log)
        merge(res, r)
        problems += p
        if not r:
            problems.append(f"{label} guest printed no results (see {log})")
        argv = qemu_argv(log)
        if argv is None:
            problems.append(f"{label} guest: no {log}.cmd (the QEMU command line is unknown)")
        boots.append({"label": label, "memory": mem, "seconds": int(secs), "verdict_rc": int(rc),
                      "console": os.path.basename(log), "qemu_argv": argv})
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
        "kernel_config_sha256": sha256(os.path.join(a.kernel_dir, ".config")) if a.kernel_dir else "unknown",
        "qemu": qemu_summary([b["qemu_argv"] for b in boots], a.cpus, qemu),
        "boots": boots,
        "problems": problems,
    }
    return res, problems


if __name__ == "__main__":
    main()
