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
//!            [--without-shrinker]
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
//! `--passes N` caps the passes a worker makes per iteration (igt:
//! `num_processes`); `--background-passes N` caps those of the leak and
//! userptr workers further.  `make check` uses both to bound the run
//! time, see Documentation/design.md.
//!
//! Output follows igt (`Starting subtest: ...`, `Subtest ...: SUCCESS
//! (1.234s)`) and ends with `N passed, N failed`.  Any child that
//! fails a call or is killed (by the OOM killer, say) fails its subtest.

mod funcs;
mod plan;
mod supervise;

use std::fs;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use funcs::Failure;
use movgem_guest::env::Counters;
use movgem_uapi::{Device, DROP_BOUND, DROP_CACHES_PATH, DROP_UNBOUND, OP_NOP};
use plan::{Group, Kind, Sizing, Subtest, FUNCS};
use supervise::{
    oom_score_adj, open_recovery, reap, set_shrinker, spawn, summarize, Shared, ABANDONED,
    WITHOUT_SHRINKER,
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
}

const USAGE: &str = "usage: gem-shrink [--duration SECONDS] [--passes N] [--background-passes N] \
                     [--subtest-timeout SECONDS] [--summary FILE] [--run-subtest PATTERN]... \
                     [--list-subtests] [--expect-fail] [--without-shrinker]";

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

/// One worker: until the timeout (checked before each iteration, at
/// least one), open the device, make `passes` passes, close it and let
/// go of the user memory.
fn worker(g: Group, alloc: u64, timeout: f64, shared: &Shared) -> Result<(), Failure> {
    let start = Instant::now();
    let slot = PASS_NS + 3 * kind_index(g.kind);
    loop {
        let dev = Device::open().map_err(|e| funcs::failed("open /dev/movgem", e))?;
        let mut held = funcs::Held::default();
        for _ in 0..g.passes {
            let t = Instant::now();
            funcs::pass(g.kind, &dev, alloc, &mut held)?;
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
const DRIVER: [&str; 10] = [
    "shrink_scans",
    "shrink_contended",
    "shrink_freed_pages",
    "shrink_purged_objects",
    "shrink_released_objects",
    "shrink_self",
    "writeback_pages",
    "oom_notifications",
    "oom_freed_pages",
    "gpu_requests",
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
fn run_func(
    f: usize,
    mode: plan::Mode,
    s: &Sizing,
    timeout: f64,
    o: &Options,
) -> Result<Outcome, String> {
    let shared = Shared::new()?;
    let before = Counters::read().ok();
    let vm_before = Counters::vmstat()?;
    let groups = plan::groups(f, mode, s.num_processes, o.max_passes, o.max_background);
    let mut children = Vec::new();
    let mut watch = Vec::new();
    let mut err = None;
    'fork: for g in &groups {
        for i in 0..g.workers {
            let what = format!("{} worker {i}", kind_name(g.kind));
            match spawn(&what, || worker(*g, s.alloc_bytes(), timeout, &shared)) {
                Ok(c) => {
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
    let r = reap(children, watch, o.watchdog, decide, summary, || {
        diagnose(before.as_ref())
    });
    let mut phases = Vec::new();
    for g in &groups {
        let name = kind_name(g.kind);
        let slot = PASS_NS + 3 * kind_index(g.kind);
        let n = shared.counter(slot + 2).load(Ordering::Relaxed);
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
    let summary = summary();
    if let Some(e) = err {
        return Err(e);
    }
    // With the shrinker on, a subtest passes only if it did what it is
    // there for: pressure the driver had to answer (plan::pressure).
    let freed = since.as_ref().map_or(0, |d| {
        d.get("shrink_freed_pages") + d.get("oom_freed_pages")
    });
    let unmet = match plan::pressure(f, mode) {
        _ if o.without_shrinker => None,
        plan::Pressure::None => None,
        plan::Pressure::DriverFreed if freed == 0 => {
            Some("the shrinker and the OOM notifier freed nothing".to_string())
        }
        plan::Pressure::Swapped if vm.get("pswpout") == 0 => {
            Some("nothing went to swap: no memory pressure".to_string())
        }
        _ => None,
    };
    Ok(match r.decided {
        Some((line, expected)) => Outcome::Failed {
            why: format!("{summary}; {line}; {}", summarize(&r.bad)),
            expected,
        },
        None if r.bad.is_empty() && unmet.is_some() => Outcome::Failed {
            why: format!(
                "{summary}; passed without pressure: {}",
                unmet.unwrap_or_default()
            ),
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
        Vec::new(),
        watchdog,
        false,
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
    let skip_reason = memory_check(&sizing).err();
    if o.without_shrinker {
        if let Err(e) = open_recovery() {
            println!("gem-shrink: {e}");
        }
    }

    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    // Failures that were the expected kind (OOM kill, ENOMEM) in a
    // --without-shrinker run.
    let mut expected = 0;
    let total = Instant::now();
    for (name, t) in selected.iter().map(|(n, t)| (n, *t)) {
        if ABANDONED.load(Ordering::Relaxed) != 0 {
            println!("Subtest {name}: FAIL (not run: the run was abandoned)");
            failed += 1;
            continue;
        }
        println!("Starting subtest: {name}");
        if o.without_shrinker {
            set_shrinker(false);
        }
        let start = Instant::now();
        let timeout = plan::timeout_s(t, o.duration);
        let r = match (t, &skip_reason) {
            (Subtest::Func(..), Some(why)) => {
                println!("Subtest {name}: SKIP ({why})");
                skipped += 1;
                continue;
            }
            (Subtest::Reclaim, _) => run_reclaim(ncpus, timeout, o.watchdog),
            (Subtest::Func(f, mode), None) => run_func(f, mode, &sizing, timeout, &o),
        };
        let secs = start.elapsed().as_secs_f64();
        match r {
            Ok(Outcome::Passed(summary)) => {
                println!("gem-shrink: {name}: {summary}");
                println!("Subtest {name}: SUCCESS ({secs:.3}s)");
                passed += 1;
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
        // Let objects closed by the last workers retire before the next
        // subtest measures its own.
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "gem-shrink: {} subtests in {:.1}s",
        selected.len(),
        total.elapsed().as_secs_f64()
    );
    if skipped > 0 {
        println!("{skipped} skipped");
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
    let ok = if abandoned {
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
            "stray",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
