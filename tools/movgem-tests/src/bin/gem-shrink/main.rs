// SPDX-License-Identifier: GPL-2.0

//! gem-shrink: igt's `gem_shrink` (i915) on movgem's uAPI.
//!
//! Many processes each make objects through one uAPI path until, all
//! together, they have asked for many times the guest's RAM; every
//! object is marked DONTNEED and kept open, so the run survives only if
//! the shrinker purges them.  Background workers add user memory
//! (USERPTR objects, leaked anonymous memory) in the -userptr and -oom
//! modes.  `reclaim` keeps GPU work in flight while other processes
//! drive the driver's drop_caches file.
//!
//! ```text
//! gem-shrink [--duration SECONDS] [--passes N] [--background-passes N] [--subtest-timeout SECONDS]
//!            [--summary FILE] [--run-subtest PATTERN]... [--list-subtests] [--expect-fail]
//!            [--without-shrinker] [--leak-forever]
//! ```
//!
//! `--summary FILE` also writes the closing line to FILE, for the guest
//! runner, which lets the output go straight to the console: a pipe
//! would make every line an allocation, which a runner whose guest is
//! out of memory might wait on for ever.
//!
//! `--subtest-timeout` kills a subtest's children (SIGKILL) once it has
//! run that long and fails it, as igt_runner's per-test timeout does.
//!
//! `--without-shrinker` runs each subtest with movgem's `shrinker`
//! parameter 0.  The first worker that fails decides the subtest at
//! once: the OOM killer took it or an allocation was refused (ENOMEM),
//! the failure a driver without a shrinker must produce, or anything
//! else, which is not.  The runner then kills the other workers and
//! turns the shrinker back on so that they can exit.  A watchdog that
//! fires first (its workers hung, nothing decided) is not the expected
//! failure.  With `--expect-fail` the run passes only if every subtest
//! failed by an OOM kill or ENOMEM.
//!
//! A leak worker's OOM kill is judged apart (supervise::judge): it never
//! satisfies the negative control, which needs a function or userptr
//! worker OOM-killed or refused memory; it decides nothing there either
//! (the subtest waits on for such a worker).
//!
//! `--passes N` caps the passes a worker makes per iteration (igt:
//! `num_processes`); `--background-passes N` caps those of the leak and
//! userptr workers further.  `make check` uses both to bound the run
//! time, see Documentation/design.md.
//!
//! `--leak-forever`: leak workers never unmap what they leak, as igt's
//! do, so each one's memory only grows until the subtest's time is up or
//! the OOM killer takes it (without it, as in `make check`, they unmap it
//! at the end of every iteration).  The leak workers are then the OOM
//! killer's intended victims: they run at `oom_score_adj` 1000 and the
//! function and userptr workers at 500, so the OOM killer takes another
//! worker only once no leak worker is left.  With the shrinker on, an OOM
//! kill of a leak worker (the kernel's `oom_kill` having risen for it)
//! is that worker's expected end and does not fail the subtest; the
//! summary says how many there were.  An OOM kill of any other worker,
//! or any other abnormal end of any worker, still fails it.
//!
//! Before each subtest the runner idles the GPU as igt's
//! `gem_quiescent_gpu()` does: DROP_ACTIVE to the driver's drop_caches
//! waits until every request (the last subtest's hangs, say) retired; it
//! prints how long that took and `MemFree` before and after.  A failed
//! write fails the subtest about to start.
//!
//! With the module's `userptr_keep_pages` on (userptr objects keep their
//! pages after use until the shrinker, the OOM notifier or an
//! invalidation drops them, as i915's do), each `-userptr`,
//! `-userptr-dirty` and `-oom` subtest with the shrinker on must also
//! show the driver keeping userptr pages (`userptr_kept_pages`), or it
//! fails as passed without pressure (plan::userptr_unmet); and over those
//! subtests together the shrinker or the OOM notifier must have released
//! some (`userptr_released_pages`), or the run fails
//! (plan::userptr_released_unmet).  Per subtest that would be chance: the
//! shrinker purges DONTNEED objects first and may be done before it
//! reaches the userptr objects (seen: `get-pages-userptr-dirty`, 18
//! scans, 90,112 pages freed, no userptr page among them).
//!
//! Output follows igt (`Starting subtest: ...`, `Subtest ...: SUCCESS
//! (1.234s)`) and ends with `N passed, N failed`.  Any child that
//! fails a call or is killed (by the OOM killer, say) fails its subtest,
//! but for the leak workers' OOM kills above.

mod funcs;
mod plan;
mod supervise;

use std::fs;
use std::sync::atomic::Ordering;
use std::time::Instant;

use funcs::Failure;
use movgem_guest::env::Counters;
use movgem_uapi::{Device, DROP_BOUND, DROP_CACHES_PATH, DROP_UNBOUND, OP_NOP};
use plan::{Group, Kind, Sizing, Subtest, FUNCS};
use supervise::{
    oom_score_adj, open_drop_caches, open_recovery, quiesce, reap, set_shrinker, spawn, summarize,
    DriverCounter, Rules, Shared, ABANDONED, WITHOUT_SHRINKER,
};

struct Options {
    duration: f64,
    /// Where to write the closing `N passed, N failed` line once more.
    summary: Option<String>,
    max_passes: Option<u64>,
    /// Caps the background (leak, userptr) workers' passes further.
    max_background: Option<u64>,
    /// Kill a subtest's children after this many seconds (igt_runner's
    /// per-test timeout); `None`: wait for ever.
    watchdog: Option<f64>,
    patterns: Vec<String>,
    list: bool,
    expect_fail: bool,
    without_shrinker: bool,
    /// Leak workers keep what they leak for their whole life (igt's).
    leak_forever: bool,
}

const USAGE: &str = "usage: gem-shrink [--duration SECONDS] [--passes N] [--background-passes N] \
                     [--subtest-timeout SECONDS] [--summary FILE] [--run-subtest PATTERN]... \
                     [--list-subtests] [--expect-fail] [--without-shrinker] [--leak-forever]";

/// A positive number, the value of the option just read.
fn positive<T>(p: &mut lexopt::Parser) -> Result<T, lexopt::Error>
where
    T: std::str::FromStr + PartialOrd + Default,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    use lexopt::prelude::*;
    let value = p.value()?.string()?;
    match value.parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        Ok(_) => Err(lexopt::Error::ParsingFailed {
            value,
            error: "not a positive number".into(),
        }),
        Err(e) => Err(lexopt::Error::ParsingFailed {
            value,
            error: Box::new(e),
        }),
    }
}

fn parse_options(args: impl IntoIterator<Item = String>) -> Result<Options, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = Options {
        duration: 20.0,
        summary: None,
        max_passes: None,
        max_background: None,
        watchdog: None,
        patterns: Vec::new(),
        list: false,
        expect_fail: false,
        without_shrinker: false,
        leak_forever: false,
    };
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next()? {
        match arg {
            Long("duration") => o.duration = positive(&mut p)?,
            Long("passes") => o.max_passes = Some(positive(&mut p)?),
            Long("background-passes") => o.max_background = Some(positive(&mut p)?),
            Long("subtest-timeout") => o.watchdog = Some(positive(&mut p)?),
            Long("summary") => o.summary = Some(p.value()?.string()?),
            Long("run-subtest") => o.patterns.push(p.value()?.string()?),
            Long("list-subtests") => o.list = true,
            Long("expect-fail") => o.expect_fail = true,
            Long("without-shrinker") => o.without_shrinker = true,
            Long("leak-forever") => o.leak_forever = true,
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(o)
}

fn options() -> Options {
    parse_options(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("gem-shrink: {e}\n{USAGE}");
        std::process::exit(2);
    })
}

const ITERATIONS: usize = 0;

const PASSES: usize = 1;

/// The page size gem-shrink's sizing counts in.
const PAGE: u64 = 4096;

/// The driver's counter of the pressure floor: pages of its shmem
/// objects that its shrinks gave back (plan::Pressure::DriverGaveBack).
const GAVE_BACK: &str = "shrink_shmem_pages";

const DROPS: usize = 2;

/// From here, three counters per worker kind ([`kind_index`]): the sum
/// and the longest of its pass times (ns), and its passes.
const PASS_NS: usize = 8;

fn kind_name(k: Kind) -> String {
    match k {
        Kind::Leak => "leak".into(),
        Kind::Userptr => "userptr".into(),
        Kind::UserptrDirty => "userptr-dirty".into(),
        Kind::Func(f) => FUNCS[f].into(),
    }
}

/// The slot of a worker kind among the pass-time counters.
fn kind_index(k: Kind) -> usize {
    match k {
        Kind::Leak => 0,
        Kind::Userptr => 1,
        Kind::UserptrDirty => 2,
        Kind::Func(_) => 3,
    }
}

/// Kept userptr pages released over the run's userptr subtests (with
/// the shrinker on), and how many such subtests ran: the run-level
/// userptr verdict ([`plan::userptr_released_unmet`]).
#[derive(Default)]
struct UserptrTally {
    released: u64,
    subtests: usize,
}

/// The leak workers' `oom_score_adj`: they are the OOM killer's
/// intended victims (every worker starts at 1000, see `spawn`; a leak
/// worker sets it itself all the same).
const LEAKER_OOM_SCORE_ADJ: i32 = 1000;

/// With `--leak-forever`, the function and userptr workers'.  The OOM
/// killer's score is a task's memory plus `oom_score_adj` thousandths of
/// RAM and swap: 500 below the leak workers is half of RAM and swap,
/// more than any worker holds, so no other worker is taken while a leak
/// worker is left.  (Without `--leak-forever` every worker stays at 1000,
/// as before: then any OOM kill with the shrinker on fails the subtest,
/// whoever it takes.)
const OTHER_OOM_SCORE_ADJ: i32 = 500;

/// One worker: until the timeout (checked before each iteration, at
/// least one), open the device, make `passes` passes, close it and let
/// go of the user memory; with `leak_forever`, a leak worker keeps what
/// it leaked until it exits (igt's leak), or the OOM killer ends it.
fn worker(
    g: Group,
    alloc: u64,
    timeout: f64,
    shared: &Shared,
    leak_forever: bool,
) -> Result<(), Failure> {
    if g.kind == Kind::Leak {
        oom_score_adj(LEAKER_OOM_SCORE_ADJ);
    } else if leak_forever {
        oom_score_adj(OTHER_OOM_SCORE_ADJ);
    }
    let start = Instant::now();
    let slot = PASS_NS + 3 * kind_index(g.kind);
    // A leak worker's mappings with `leak_forever`: never unmapped while
    // the worker lives.
    let mut forever = funcs::Held::default();
    let keep = leak_forever && g.kind == Kind::Leak;
    loop {
        let dev = Device::open().map_err(|e| funcs::failed("open /dev/movgem", e))?;
        let mut held = funcs::Held::default();
        for _ in 0..g.passes {
            let t = Instant::now();
            let h = if keep { &mut forever } else { &mut held };
            funcs::pass(g.kind, &dev, alloc, h)?;
            let ns = t.elapsed().as_nanos() as u64;
            shared.counter(slot).fetch_add(ns, Ordering::Relaxed);
            shared.counter(slot + 1).fetch_max(ns, Ordering::Relaxed);
            shared.counter(slot + 2).fetch_add(1, Ordering::Relaxed);
            shared.counter(PASSES).fetch_add(1, Ordering::Relaxed);
        }
        drop(dev);
        drop(held);
        shared.counter(ITERATIONS).fetch_add(1, Ordering::Relaxed);
        if start.elapsed().as_secs_f64() >= timeout {
            return Ok(());
        }
    }
}

/// The vmstat counters that say where a subtest's time went.
const VMSTAT: [&str; 9] = [
    "pswpout",
    "pswpin",
    "pgscan_direct",
    "pgscan_kswapd",
    "pgsteal_direct",
    "allocstall_movable",
    "allocstall_normal",
    "oom_kill",
    "compact_stall",
];

/// The movgem counters that say what the driver did for it.
const DRIVER: [&str; 15] = [
    "shrink_scans",
    "shrink_contended",
    "shrink_freed_pages",
    "shrink_purged_objects",
    "shrink_shmem_pages",
    "purged_objects",
    "shrink_released_objects",
    "shrink_self",
    "writeback_pages",
    "oom_notifications",
    "oom_freed_pages",
    "gpu_requests",
    "userptr_kept_pages",
    "userptr_kept_invalidated",
    "userptr_released_pages",
];

/// Why a subtest may have stalled: what the driver did since `before`
/// (its debugfs counters) and where memory is.
fn diagnose(before: Option<&Counters>) {
    if let (Some(before), Ok(now)) = (before, Counters::read()) {
        println!(
            "gem-shrink: movgem counters since start: {}",
            now.since(before)
        );
    }
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem: Vec<&str> = meminfo
        .lines()
        .filter(|l| {
            [
                "MemFree:",
                "Shmem:",
                "SwapFree:",
                "SwapCached:",
                "Unevictable:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect();
    println!(
        "gem-shrink: {}",
        mem.join(", ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// How a subtest ended.
enum Outcome {
    Passed(String),
    /// Failed; `expected` with `--without-shrinker` if the failure was
    /// an OOM kill or ENOMEM that decided it before the watchdog.
    Failed {
        why: String,
        expected: bool,
    },
}

/// A function subtest: fork every group, wait for all of them.  Prints
/// one `phases` line: when each kind of worker was done, its pass
/// times, and what swap, reclaim and the driver did meanwhile.
/// `keep_userptr`: the module's `userptr_keep_pages` is on; a userptr
/// subtest that ran to its verdict adds what it released to `tally`.
fn run_func(
    f: usize,
    mode: plan::Mode,
    s: &Sizing,
    timeout: f64,
    o: &Options,
    keep_userptr: bool,
    tally: &mut UserptrTally,
) -> Result<Outcome, String> {
    let shared = Shared::new()?;
    let before = Counters::read().ok();
    let vm_before = Counters::vmstat()?;
    // The pressure floor's counter, also read when a --without-shrinker
    // subtest is decided, before its recovery gives memory back.
    let gave_back_before = DriverCounter::open(GAVE_BACK).read();
    let gave_back = DriverCounter::open(GAVE_BACK);
    let groups = plan::groups(f, mode, s.num_processes, o.max_passes, o.max_background);
    let mut children = Vec::new();
    let mut leakers = Vec::new();
    let mut watch = Vec::new();
    let mut err = None;
    'fork: for g in &groups {
        for i in 0..g.workers {
            let what = format!("{} worker {i}", kind_name(g.kind));
            let r = spawn(&what, || {
                worker(*g, s.alloc_bytes(), timeout, &shared, o.leak_forever)
            });
            match r {
                Ok(c) => {
                    if g.kind == Kind::Leak {
                        leakers.push(c.0);
                    }
                    if o.without_shrinker {
                        // Opened now, while memory is plentiful; read
                        // without allocating once it is not.
                        if let Ok(f) = fs::File::open(format!("/proc/{}/status", c.0)) {
                            watch.push((c.0, f));
                        }
                    }
                    children.push(c)
                }
                Err(e) => {
                    err = Some(e);
                    break 'fork;
                }
            }
        }
    }
    let summary = || {
        format!(
            "{} iterations, {} passes of {} MiB",
            shared.counter(ITERATIONS).load(Ordering::Relaxed),
            shared.counter(PASSES).load(Ordering::Relaxed),
            s.alloc_mib
        )
    };
    let decide = o.without_shrinker;
    let rules = Rules {
        decide,
        leak_forever: o.leak_forever,
    };
    let r = reap(
        children,
        &leakers,
        watch,
        o.watchdog,
        rules,
        Some(&gave_back),
        summary,
        || diagnose(before.as_ref()),
    );
    let mut phases = Vec::new();
    let mut func_passes = 0;
    for g in &groups {
        let name = kind_name(g.kind);
        let slot = PASS_NS + 3 * kind_index(g.kind);
        let n = shared.counter(slot + 2).load(Ordering::Relaxed);
        if g.kind == plan::Kind::Func(f) {
            func_passes = n;
        }
        let sum = shared.counter(slot).load(Ordering::Relaxed) as f64 / 1e9;
        let max = shared.counter(slot + 1).load(Ordering::Relaxed) as f64 / 1e9;
        let done = r
            .finished
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(-1.0, |f| f.1);
        phases.push(format!(
            "{name}: {} workers done at {done:.1}s, {n} passes, mean {:.2}s max {max:.2}s",
            g.workers,
            if n > 0 { sum / n as f64 } else { 0.0 }
        ));
    }
    let vm = Counters::vmstat()?.since(&vm_before);
    let since = before
        .as_ref()
        .and_then(|b| Counters::read().ok().map(|n| n.since(b)));
    let driver = since.as_ref().map(|d| d.pick(&DRIVER)).unwrap_or_default();
    println!(
        "gem-shrink: phases: {}; vmstat {}; movgem {driver}",
        phases.join("; "),
        vm.pick(&VMSTAT)
    );
    let mut summary = summary();
    // How many leak workers the OOM killer took (supervise::End::
    // LeakerOomKilled): none of them failed the subtest.
    let leak_workers: u64 = groups
        .iter()
        .filter(|g| g.kind == Kind::Leak)
        .map(|g| g.workers)
        .sum();
    if leak_workers > 0 && (o.leak_forever || r.leakers_oom_killed > 0) {
        summary += &format!(
            ", {} of {leak_workers} leak workers OOM-killed ({})",
            r.leakers_oom_killed,
            if o.without_shrinker {
                "no part of the verdict: it needs a function or userptr worker's OOM kill or ENOMEM"
            } else {
                "--leak-forever: their expected end"
            }
        );
        if !o.without_shrinker && r.leakers_oom_killed > 0 {
            summary += &format!("; {IGT_RULE_FAIL}");
        }
    }
    if let Some(e) = err {
        return Err(e);
    }
    // With the shrinker on, a subtest passes only if it did what it is
    // there for: pressure the driver had to answer (plan::pressure: for
    // most, at least the purge floor, a share of what the function
    // workers ask for beyond RAM), and, with userptr_keep_pages, userptr
    // pages kept and given back under it (plan::userptr_unmet).
    let got = |name: &str| since.as_ref().map_or(0, |d| d.get(name));
    let pressure = plan::pressure(f, mode);
    let floor = plan::pressure_floor_pages(
        plan::func_demand_pages(&groups, f, s.alloc_bytes() / PAGE),
        (s.mem_mib << 20) / PAGE,
    );
    // Without the shrinker, only what came before the subtest was
    // decided: the recovery after it (shrinker on, drop_caches) gives
    // back what no worker's pressure asked for.
    let given = match (o.without_shrinker, gave_back_before, r.counter_at_kill) {
        (true, Some(start), Some(kill)) => kill.saturating_sub(start),
        _ => got(GAVE_BACK),
    };
    let pressure_unmet =
        plan::pressure_unmet(pressure, floor, given, func_passes, got("purged_objects"));
    if pressure == plan::Pressure::DriverGaveBack {
        summary += &if o.without_shrinker {
            format!(
                ", {given} pages of its objects given back by the driver before the subtest was \
                 decided (floor {floor})"
            )
        } else {
            format!(
                ", {given} pages of its objects given back by the driver (floor {floor}; {} \
                 objects purged by its shrinks)",
                got("shrink_purged_objects")
            )
        };
    }
    let mut unmet: Vec<String> = Vec::new();
    // Without the shrinker, the floor's negative control: the driver
    // purges nothing, and the floor must say so, or it could not fail.
    let mut floor_met_without_shrinker = false;
    if o.without_shrinker {
        if pressure != plan::Pressure::None {
            match &pressure_unmet {
                Some(why) => summary += &format!("; pressure unmet, as it must be: {why}"),
                None => {
                    floor_met_without_shrinker = true;
                    summary += "; the pressure rule was met without the shrinker: it could not \
                                fail (NOT the expected failure)";
                }
            }
        }
    } else {
        unmet.extend(pressure_unmet);
        let kept = got("userptr_kept_pages");
        if plan::keeps_userptr_pages(mode) {
            tally.released += got("userptr_released_pages");
            tally.subtests += 1;
        }
        unmet.extend(
            plan::userptr_unmet(mode, keep_userptr, kept)
                .into_iter()
                .map(String::from),
        );
    }
    Ok(match r.decided {
        Some((line, expected)) => Outcome::Failed {
            why: format!("{summary}; {line}; {}", summarize(&r.bad)),
            expected: expected && !floor_met_without_shrinker,
        },
        None if r.bad.is_empty() && !unmet.is_empty() => Outcome::Failed {
            why: format!("{summary}; passed without pressure: {}", unmet.join("; ")),
            expected: false,
        },
        None if r.bad.is_empty() => Outcome::Passed(summary),
        // Without a shrinker, a hang that the watchdog ends is a failure
        // but not the one the negative control asks for: nothing showed
        // that the workers lacked memory the shrinker would have given.
        None if r.timed_out && decide => Outcome::Failed {
            why: format!(
                "{summary}; the watchdog ended it, no OOM kill or ENOMEM came first \
                 (NOT the expected failure): {}",
                summarize(&r.bad)
            ),
            expected: false,
        },
        None => Outcome::Failed {
            why: format!("{summary}; {}", summarize(&r.bad)),
            expected: false,
        },
    })
}

/// reclaim: one process per CPU writes DROP_BOUND|DROP_UNBOUND to the
/// driver's drop_caches file without pause, while this one keeps a
/// 100 ms batch on the GPU at all times: the next is queued before the
/// previous is waited for.
fn run_reclaim(ncpus: u64, timeout: f64, watchdog: Option<f64>) -> Result<Outcome, String> {
    let shared = Shared::new()?;
    let mut children = Vec::new();
    let mut err = None;
    for i in 0..ncpus {
        let sh = &shared;
        let r = spawn(&format!("drop_caches writer {i}"), || {
            let bits = (DROP_BOUND | DROP_UNBOUND).to_string();
            loop {
                fs::write(DROP_CACHES_PATH, &bits)
                    .map_err(|e| format!("write {DROP_CACHES_PATH}: {e}"))?;
                sh.counter(DROPS).fetch_add(1, Ordering::Relaxed);
                if sh.stop().load(Ordering::Relaxed) != 0 {
                    return Ok(());
                }
            }
        });
        match r {
            Ok(c) => children.push(c),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let gpu = if err.is_none() { spin(timeout) } else { Ok(0) };
    shared.stop().store(1, Ordering::Relaxed);
    let r = reap(
        children,
        &[],
        Vec::new(),
        watchdog,
        Rules {
            decide: false,
            leak_forever: false,
        },
        None,
        || "drop_caches writers".to_string(),
        || diagnose(None),
    );
    let batches = gpu.as_ref().copied().unwrap_or(0);
    let summary = format!(
        "{batches} batches of 100 ms, {} drop_caches writes",
        shared.counter(DROPS).load(Ordering::Relaxed)
    );
    let mut problems: Vec<String> = err.into_iter().collect();
    if let Err(e) = gpu {
        problems.push(e.to_string());
    }
    problems.extend(r.bad);
    Ok(if problems.is_empty() {
        Outcome::Passed(summary)
    } else {
        Outcome::Failed {
            why: format!("{summary}; {}", summarize(&problems)),
            expected: false,
        }
    })
}

/// The GPU half of reclaim; returns how many batches ran.
fn spin(timeout: f64) -> Result<u64, Failure> {
    const BATCH_NS: u64 = 100_000_000;
    let dev = Device::open().map_err(|e| funcs::failed("open /dev/movgem", e))?;
    let submit = || -> Result<u32, Failure> {
        let h = dev.create(4096).map_err(|e| funcs::failed("CREATE", e))?;
        dev.execbuf(&[(h, false)], OP_NOP, 0, BATCH_NS, 0)
            .map_err(|e| funcs::failed("EXECBUF", e))?;
        Ok(h)
    };
    let start = Instant::now();
    let mut running = submit()?;
    let mut batches = 1;
    loop {
        let next = submit()?;
        batches += 1;
        dev.wait(running, -1)
            .map_err(|e| funcs::failed("WAIT", e))?;
        dev.close(running).map_err(|e| funcs::failed("CLOSE", e))?;
        running = next;
        if start.elapsed().as_secs_f64() >= timeout {
            break;
        }
    }
    dev.wait(running, -1)
        .map_err(|e| funcs::failed("WAIT", e))?;
    Ok(batches)
}

/// igt's memory requirement: all processes' first pass must fit in
/// what RAM and swap have free, or the subtests are skipped.
fn memory_check(s: &Sizing) -> Result<(), String> {
    let free = movgem_guest::env::meminfo_kib("MemAvailable")? / 1024
        + movgem_guest::env::meminfo_kib("SwapFree")? / 1024;
    let need = s.num_processes * s.alloc_mib;
    if need > free {
        return Err(format!(
            "{need} MiB needed, {free} MiB of RAM and swap available"
        ));
    }
    Ok(())
}

/// Whether the module keeps userptr pages after use (its
/// `userptr_keep_pages` parameter); says once which rule the run follows.
fn userptr_keep_pages(without_shrinker: bool) -> bool {
    const PARAM: &str = "userptr_keep_pages";
    let on = match movgem_guest::env::param(PARAM) {
        Ok(v) => match plan::param_bool(&v) {
            Some(on) => {
                println!("gem-shrink: {PARAM}={v}");
                on
            }
            // Unknown: the stricter rule.
            None => {
                println!("gem-shrink: {PARAM} reads '{v}', neither Y nor N: taken as on");
                true
            }
        },
        Err(e) => {
            println!("gem-shrink: no {PARAM} parameter ({e})");
            false
        }
    };
    if !on {
        println!("gem-shrink: userptr objects hold no pages in this run");
    } else if !without_shrinker {
        println!(
            "gem-shrink: userptr objects keep their pages: every -userptr, -userptr-dirty and \
             -oom subtest must also show the driver keeping them and the shrinker or the OOM \
             notifier releasing them"
        );
    }
    on
}

/// Marks the summary of a subtest passed here that igt would fail: with
/// `--leak-forever` a leak worker's OOM kill is its expected end here,
/// while igt's `igt_waitchildren()` fails a subtest on any child killed
/// by a signal (Documentation/testing.md, "--leak-forever").
const IGT_RULE_FAIL: &str = "igt would fail it: a child was killed by a signal";

fn main() {
    let o = options();
    if o.without_shrinker {
        WITHOUT_SHRINKER.store(1, Ordering::Relaxed);
    }
    let all = plan::subtests();
    if o.list {
        for (name, _) in &all {
            println!("{name}");
        }
        return;
    }
    let selected: Vec<&(String, Subtest)> = all
        .iter()
        .filter(|(n, _)| o.patterns.is_empty() || o.patterns.iter().any(|p| plan::wildcard(p, n)))
        .collect();
    if selected.is_empty() {
        eprintln!("gem-shrink: no subtest matches");
        std::process::exit(2);
    }

    // The runner must keep running while its workers drive the guest
    // out of memory, or its watchdog cannot fire: never the OOM killer's
    // choice, its pages locked in, first in line for a CPU.
    oom_score_adj(-1000);
    // SAFETY: no preconditions; failure (no privilege) only costs margin.
    unsafe {
        libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE);
        libc::setpriority(libc::PRIO_PROCESS, 0, -20);
    }
    let mem_mib = movgem_guest::env::meminfo_kib("MemTotal").unwrap_or(0) / 1024;
    // SAFETY: sysconf has no preconditions.
    let ncpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u64;
    let sizing = Sizing::new(mem_mib, ncpus);
    println!(
        "Using {} processes and {} MiB per process",
        sizing.num_processes, sizing.alloc_mib
    );
    if let Some(n) = o.max_passes {
        println!("gem-shrink: at most {n} passes per worker iteration");
    }
    if let Some(n) = o.max_background {
        println!("gem-shrink: at most {n} passes per leak or userptr worker iteration");
    }
    if o.leak_forever {
        println!(
            "gem-shrink: --leak-forever: leak workers keep what they leak; an OOM kill of one \
             is its expected end"
        );
    }
    let keep_userptr = userptr_keep_pages(o.without_shrinker);
    let skip_reason = memory_check(&sizing).err();
    // Opened once, while memory is plentiful: the quiesce before every
    // subtest writes it.  If it cannot be, every subtest fails (quiesce).
    if let Err(e) = open_drop_caches() {
        println!("gem-shrink: {e}: no subtest can start on an idle GPU");
    }
    if o.without_shrinker {
        if let Err(e) = open_recovery() {
            println!("gem-shrink: {e}");
        }
    }

    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    // Subtests passed here that igt would fail (IGT_RULE_FAIL).
    let mut igt_flipped = 0;
    // Failures that were the expected kind (OOM kill, ENOMEM) in a
    // --without-shrinker run.
    let mut expected = 0;
    let mut tally = UserptrTally::default();
    let total = Instant::now();
    for (name, t) in selected.iter().map(|(n, t)| (n, *t)) {
        if ABANDONED.load(Ordering::Relaxed) != 0 {
            println!("Subtest {name}: FAIL (not run: the run was abandoned)");
            failed += 1;
            continue;
        }
        println!("Starting subtest: {name}");
        if let (Subtest::Func(..), Some(why)) = (t, &skip_reason) {
            println!("Subtest {name}: SKIP ({why})");
            skipped += 1;
            continue;
        }
        // igt's gem_quiescent_gpu(): nothing of the last subtest's (its
        // hangs waiting for their reset, the objects they hold) may still
        // be on the GPU when this one starts.  With --without-shrinker
        // the shrinker is back on by now.
        match quiesce() {
            Ok(q) => println!(
                "gem-shrink: GPU idle (DROP_ACTIVE) after {:.3}s; MemFree {} -> {} KiB",
                q.secs, q.free_before_kib, q.free_after_kib
            ),
            Err(e) => {
                println!("gem-shrink: {name}: {e}");
                println!("Subtest {name}: FAIL (not run: the GPU could not be idled before it)");
                failed += 1;
                continue;
            }
        }
        if o.without_shrinker {
            set_shrinker(false);
        }
        let start = Instant::now();
        let timeout = plan::timeout_s(t, o.duration);
        let r = match t {
            Subtest::Reclaim => run_reclaim(ncpus, timeout, o.watchdog),
            Subtest::Func(f, mode) => {
                run_func(f, mode, &sizing, timeout, &o, keep_userptr, &mut tally)
            }
        };
        let secs = start.elapsed().as_secs_f64();
        match r {
            Ok(Outcome::Passed(summary)) => {
                println!("gem-shrink: {name}: {summary}");
                println!("Subtest {name}: SUCCESS ({secs:.3}s)");
                passed += 1;
                if summary.contains(IGT_RULE_FAIL) {
                    igt_flipped += 1;
                }
            }
            Ok(Outcome::Failed { why, expected: e }) => {
                println!("gem-shrink: {name}: {why}");
                if e {
                    println!("Subtest {name}: FAIL ({secs:.3}s) as expected");
                    expected += 1;
                } else {
                    println!("Subtest {name}: FAIL ({secs:.3}s)");
                }
                failed += 1;
            }
            Err(e) => {
                println!("gem-shrink: {name}: {e}");
                println!("Subtest {name}: FAIL ({secs:.3}s)");
                failed += 1;
            }
        }
        if o.without_shrinker {
            set_shrinker(true);
        }
    }
    println!(
        "gem-shrink: {} subtests in {:.1}s",
        selected.len(),
        total.elapsed().as_secs_f64()
    );
    if skipped > 0 {
        println!("{skipped} skipped");
    }
    if igt_flipped > 0 {
        println!(
            "gem-shrink: by igt's rule (any child killed by a signal fails its subtest): {} passed, {} failed",
            passed - igt_flipped,
            failed + igt_flipped
        );
    }
    let closing = format!("{passed} passed, {failed} failed");
    println!("{closing}");
    if let Some(path) = &o.summary {
        if let Err(e) = fs::write(path, format!("{closing}\n")) {
            eprintln!("gem-shrink: {path}: {e}");
        }
    }
    let abandoned = ABANDONED.load(Ordering::Relaxed) != 0;
    if abandoned {
        println!("gem-shrink: abandoned: workers could not be killed, the verdict is FAIL");
    }
    // With the shrinker on and userptr pages kept, the run as a whole
    // must have made the driver give some back.
    let userptr_unmet = if o.without_shrinker {
        None
    } else {
        let UserptrTally { released, subtests } = tally;
        if keep_userptr && subtests > 0 {
            println!(
                "gem-shrink: kept userptr pages released by the shrinker and the OOM \
                 notifier over {subtests} userptr subtests: {released}"
            );
        }
        plan::userptr_released_unmet(keep_userptr, subtests, released)
    };
    if let Some(why) = &userptr_unmet {
        println!("gem-shrink: FAIL: {why}");
    }
    let ok = if abandoned || userptr_unmet.is_some() {
        false
    } else if o.expect_fail {
        // A skipped subtest is no failure, expected or not.
        let all_failed = expected == selected.len();
        println!(
            "gem-shrink: expected every selected subtest to fail by an OOM kill or ENOMEM: {}",
            if all_failed {
                "they did".to_string()
            } else {
                format!("{expected} of {} did", selected.len())
            }
        );
        all_failed
    } else {
        // Every selected subtest must pass: a skip is not a pass.
        passed == selected.len()
    };
    std::process::exit(i32::from(!ok));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Options, String> {
        parse_options(line.split_whitespace().map(String::from)).map_err(|e| e.to_string())
    }

    /// What scripts/guest/init passes.
    #[test]
    fn guest_command_lines() {
        let o = parse(
            "--duration 1 --subtest-timeout 120 --passes 4 --background-passes 1 \
             --summary /tmp/gs.sum",
        )
        .unwrap();
        assert!(!o.leak_forever);
        assert_eq!(o.duration, 1.0);
        assert_eq!(o.watchdog, Some(120.0));
        assert_eq!(o.max_passes, Some(4));
        assert_eq!(o.max_background, Some(1));
        assert_eq!(o.summary.as_deref(), Some("/tmp/gs.sum"));
        assert!(!o.list && !o.expect_fail && !o.without_shrinker);
        let o = parse(
            "--expect-fail --without-shrinker --run-subtest get-pages*-oom \
             --run-subtest mmap-*-oom --duration 0.5 --summary /tmp/gs.sum",
        )
        .unwrap();
        assert!(o.expect_fail && o.without_shrinker);
        assert_eq!(o.patterns, ["get-pages*-oom", "mmap-*-oom"]);
        assert_eq!(o.duration, 0.5);
        assert!(parse("--list-subtests").unwrap().list);
        // make soak: igt's passes (no caps) and leaks, in both runs.
        let o = parse("--duration 20 --subtest-timeout 900 --leak-forever --summary /tmp/gs.sum")
            .unwrap();
        assert!(o.leak_forever && !o.without_shrinker);
        assert_eq!((o.max_passes, o.max_background), (None, None));
        let o = parse(
            "--expect-fail --without-shrinker --run-subtest hang-oom --duration 20 \
             --subtest-timeout 900 --leak-forever --subtest-timeout 600",
        )
        .unwrap();
        assert!(o.leak_forever && o.without_shrinker && o.expect_fail);
        assert_eq!(o.watchdog, Some(600.0));
    }

    #[test]
    fn bad_options() {
        for bad in [
            "--duration 0",
            "--duration",
            "--passes -1",
            "--passes x",
            "--subtest-timeout 0",
            "--bogus",
            "--leak-forever=1",
            "stray",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
