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
//! gem-shrink [--duration SECONDS] [--passes N] [--subtest-timeout SECONDS]
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
//! parameter 0 and turns it back on once the subtest is decided, so that
//! workers killed by the watchdog can exit; with `--expect-fail` the run
//! passes only if every subtest failed.
//!
//! `--passes N` caps the passes a worker makes per iteration (igt:
//! `num_processes`); `make check` uses it to bound the run time, see
//! Documentation/design.md.
//!
//! Output follows igt (`Starting subtest: ...`, `Subtest ...: SUCCESS
//! (1.234s)`) and ends with `N passed, N failed`.  Any child that
//! fails a call or is killed (by the OOM killer, say) fails its subtest.

mod funcs;
mod plan;

use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use movgem_tests::env::Counters;
use movgem_uapi::{Device, DROP_BOUND, DROP_CACHES_PATH, DROP_PURGE, DROP_UNBOUND, OP_NOP};
use plan::{Group, Kind, Sizing, Subtest, FUNCS};

struct Options {
    duration: f64,
    /// Where to write the closing `N passed, N failed` line once more.
    summary: Option<String>,
    max_passes: Option<u64>,
    /// Kill a subtest's children after this many seconds (igt_runner's
    /// per-test timeout); `None`: wait for ever.
    watchdog: Option<f64>,
    patterns: Vec<String>,
    list: bool,
    expect_fail: bool,
    without_shrinker: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: gem-shrink [--duration SECONDS] [--passes N] [--subtest-timeout SECONDS] \
         [--summary FILE] [--run-subtest PATTERN]... [--list-subtests] [--expect-fail] \
         [--without-shrinker]"
    );
    std::process::exit(2);
}

fn options() -> Options {
    let mut o = Options {
        duration: 20.0,
        summary: None,
        max_passes: None,
        watchdog: None,
        patterns: Vec::new(),
        list: false,
        expect_fail: false,
        without_shrinker: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--duration" => {
                o.duration = match args.next().and_then(|s| s.parse().ok()) {
                    Some(d) if d > 0.0 => d,
                    _ => usage(),
                }
            }
            "--passes" => {
                o.max_passes = match args.next().and_then(|s| s.parse().ok()) {
                    Some(n) if n > 0 => Some(n),
                    _ => usage(),
                }
            }
            "--subtest-timeout" => {
                o.watchdog = match args.next().and_then(|s| s.parse().ok()) {
                    Some(t) if t > 0.0 => Some(t),
                    _ => usage(),
                }
            }
            "--summary" => o.summary = Some(args.next().unwrap_or_else(|| usage())),
            "--run-subtest" => o.patterns.push(args.next().unwrap_or_else(|| usage())),
            "--list-subtests" => o.list = true,
            "--expect-fail" => o.expect_fail = true,
            "--without-shrinker" => o.without_shrinker = true,
            _ => usage(),
        }
    }
    o
}

/// Page-sized memory shared with the children: a stop flag and counters.
struct Shared {
    ptr: *mut u8,
}

impl Shared {
    fn new() -> Result<Self, String> {
        // SAFETY: a new anonymous shared page, zero-filled.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap(shared): {}", std::io::Error::last_os_error()));
        }
        Ok(Self { ptr: p.cast() })
    }

    fn stop(&self) -> &AtomicU32 {
        // SAFETY: the page is mapped for our lifetime, aligned, and only
        // ever accessed atomically, here and in the children.
        unsafe { &*self.ptr.cast::<AtomicU32>() }
    }

    /// Counter `i` (0..8): iterations, passes, drop_caches writes.
    fn counter(&self, i: usize) -> &AtomicU64 {
        assert!(i < 8);
        // SAFETY: as for `stop`, at offset 64 + 8 * i inside the page.
        unsafe { &*self.ptr.add(64 + 8 * i).cast::<AtomicU64>() }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: our mapping; the children using it have been reaped.
        unsafe { libc::munmap(self.ptr.cast(), 4096) };
    }
}

const ITERATIONS: usize = 0;
const PASSES: usize = 1;
const DROPS: usize = 2;

/// The OOM killer should take a worker, never the runner.
fn oom_score_adj(v: i32) {
    let _ = fs::write("/proc/self/oom_score_adj", v.to_string());
}

/// Forks a child that runs `f` and exits 0 on `Ok`, 1 after printing the error.
fn spawn(
    what: &str,
    f: impl FnOnce() -> Result<(), String>,
) -> Result<(libc::pid_t, String), String> {
    let _ = std::io::stdout().flush();
    // SAFETY: the runner is single-threaded, so the child may do anything.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        oom_score_adj(1000);
        // SAFETY: no preconditions; workers are ordinary processes.
        unsafe {
            libc::munlockall();
            libc::setpriority(libc::PRIO_PROCESS, 0, 0);
        }
        let code = match f() {
            Ok(()) => 0,
            Err(e) => {
                // SAFETY: getpid has no preconditions.
                let me = unsafe { libc::getpid() };
                // One write, so that children failing together do not
                // interleave their lines on the console.
                let line = format!("gem-shrink: {what} (pid {me}): {e}\n");
                let _ = std::io::stderr().write_all(line.as_bytes());
                1
            }
        };
        let _ = std::io::stdout().flush();
        // SAFETY: leaves without running the parent's exit handlers twice.
        unsafe { libc::_exit(code) };
    }
    Ok((pid, what.to_string()))
}

/// Describes how a child ended, or `None` if it exited 0.
fn verdict(pid: libc::pid_t, what: &str, status: i32) -> Option<String> {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: strsignal returns a valid string for any number.
        let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(sig)) };
        Some(format!(
            "{what} (pid {pid}) killed by signal {sig} ({})",
            name.to_string_lossy()
        ))
    } else if libc::WEXITSTATUS(status) != 0 {
        Some(format!(
            "{what} (pid {pid}) exited with {}",
            libc::WEXITSTATUS(status)
        ))
    } else {
        None
    }
}

/// The first few failures in full, then how many more there were.
fn summarize(bad: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = bad[..bad.len().min(SHOWN)].join("; ");
    if bad.len() > SHOWN {
        s += &format!("; and {} more children failed", bad.len() - SHOWN);
    }
    s
}

/// How long SIGKILLed workers get to die before the run is abandoned.
const KILL_GRACE_S: f64 = 30.0;

/// Set once workers survived SIGKILL: they are stuck in the kernel, and
/// nothing after this subtest would measure anything but that.
static ABANDONED: AtomicU32 = AtomicU32::new(0);

/// `--without-shrinker`: every subtest runs with the module's `shrinker`
/// parameter 0, and it is set back to 1 once the subtest is decided
/// (its workers finished or were killed by the watchdog).  Without a
/// shrinker, the memory pinned by killed workers' objects cannot be
/// reclaimed, so the workers cannot even exit; giving it back lets them,
/// and the next subtest starts from a clean state.
static WITHOUT_SHRINKER: AtomicU32 = AtomicU32::new(0);

fn set_shrinker(on: bool) {
    if let Err(e) = movgem_tests::env::set_param("shrinker", if on { "1" } else { "0" }) {
        println!("gem-shrink: {e}");
    }
}

/// Reaps every child; returns a description of each that failed.  While
/// waiting, prints `progress()` every 30 s so a slow guest shows life.
/// Past the watchdog, kills the children; if they are still there
/// `KILL_GRACE_S` later, gives up on them and marks the run abandoned.
fn reap(
    mut children: Vec<(libc::pid_t, String)>,
    watchdog: Option<f64>,
    progress: impl Fn() -> String,
    diagnose: impl Fn(),
) -> Vec<String> {
    let mut bad = Vec::new();
    let start = Instant::now();
    let mut last = Instant::now();
    let mut fired = false;
    // When the watchdog killed the children: the grace period counts from
    // there (a starved runner may fire late).
    let mut killed_at: Option<Instant> = None;
    let mut last_drop = Instant::now();
    while !children.is_empty() {
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer; we only reap our children.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            bad.push(format!("waitpid: {e}"));
            break;
        }
        if pid == 0 {
            let t = start.elapsed().as_secs_f64();
            if killed_at.is_some_and(|k| k.elapsed().as_secs_f64() >= KILL_GRACE_S) {
                let msg = format!(
                    "{} workers still alive {KILL_GRACE_S:.0}s after SIGKILL (stuck in the kernel); \
                     abandoning the run",
                    children.len()
                );
                println!("gem-shrink: {msg}");
                // Where they are stuck: the kernel stack of each.
                for &(pid, _) in children.iter().take(4) {
                    let stack = std::fs::read_to_string(format!("/proc/{pid}/stack"))
                        .unwrap_or_else(|e| format!("(no stack: {e})"));
                    let state =
                        std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
                    println!("gem-shrink: stuck worker {pid} wchan {state}:\n{stack}");
                }
                bad.push(msg);
                ABANDONED.store(1, Ordering::Relaxed);
                break;
            }
            if !fired && watchdog.is_some_and(|w| t >= w) {
                fired = true;
                let msg = format!(
                    "subtest timed out after {t:.0}s: {}; killing {} workers",
                    progress(),
                    children.len()
                );
                println!("gem-shrink: {msg}");
                diagnose();
                bad.push(msg);
                for &(pid, _) in &children {
                    // SAFETY: `pid` is our child, not yet reaped.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                killed_at = Some(Instant::now());
                if WITHOUT_SHRINKER.load(Ordering::Relaxed) != 0 {
                    println!(
                        "gem-shrink: subtest failed; shrinker back on and drop_caches, \
                         so that its workers can exit"
                    );
                    set_shrinker(true);
                }
            }
            // Recovery in --without-shrinker mode: the killed workers' objects
            // pin most of memory, and purging them is what lets them exit.
            if killed_at.is_some()
                && WITHOUT_SHRINKER.load(Ordering::Relaxed) != 0
                && last_drop.elapsed() >= Duration::from_secs(1)
            {
                let _ = fs::write(
                    DROP_CACHES_PATH,
                    (DROP_BOUND | DROP_UNBOUND | DROP_PURGE).to_string(),
                );
                last_drop = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() >= Duration::from_secs(30) {
                println!(
                    "gem-shrink: ... {}; {} workers still running",
                    progress(),
                    children.len()
                );
                last = Instant::now();
            }
            continue;
        }
        if let Some(i) = children.iter().position(|c| c.0 == pid) {
            let (pid, what) = children.swap_remove(i);
            bad.extend(verdict(pid, &what, status));
        }
    }
    bad
}

fn kind_name(k: Kind) -> String {
    match k {
        Kind::Leak => "leak".into(),
        Kind::Userptr => "userptr".into(),
        Kind::UserptrDirty => "userptr-dirty".into(),
        Kind::Func(f) => FUNCS[f].into(),
    }
}

/// One worker: until the timeout (checked before each iteration, at
/// least one), open the device, make `passes` passes, close it and let
/// go of the user memory.
fn worker(g: Group, alloc: u64, timeout: f64, shared: &Shared) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let dev = Device::open().map_err(|e| funcs::failed("open /dev/movgem", e))?;
        let mut held = funcs::Held::default();
        for _ in 0..g.passes {
            funcs::pass(g.kind, &dev, alloc, &mut held)?;
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

/// A function subtest: fork every group, wait for all of them.
fn run_func(
    f: usize,
    mode: plan::Mode,
    s: &Sizing,
    max_passes: Option<u64>,
    timeout: f64,
    watchdog: Option<f64>,
) -> Result<String, String> {
    let shared = Shared::new()?;
    let before = Counters::read().ok();
    let mut children = Vec::new();
    let mut err = None;
    'fork: for g in plan::groups(f, mode, s.num_processes, max_passes) {
        for i in 0..g.workers {
            let what = format!("{} worker {i}", kind_name(g.kind));
            match spawn(&what, || worker(g, s.alloc_bytes(), timeout, &shared)) {
                Ok(c) => children.push(c),
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
    let bad = reap(children, watchdog, summary, || diagnose(before.as_ref()));
    let summary = summary();
    if let Some(e) = err {
        return Err(e);
    }
    if bad.is_empty() {
        Ok(summary)
    } else {
        Err(format!("{summary}; {}", summarize(&bad)))
    }
}

/// reclaim: one process per CPU writes DROP_BOUND|DROP_UNBOUND to the
/// driver's drop_caches file without pause, while this one keeps a
/// 100 ms batch on the GPU at all times: the next is queued before the
/// previous is waited for.
fn run_reclaim(ncpus: u64, timeout: f64, watchdog: Option<f64>) -> Result<String, String> {
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
    let bad = reap(
        children,
        watchdog,
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
        problems.push(e);
    }
    problems.extend(bad);
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(format!("{summary}; {}", summarize(&problems)))
    }
}

/// The GPU half of reclaim; returns how many batches ran.
fn spin(timeout: f64) -> Result<u64, String> {
    const BATCH_NS: u64 = 100_000_000;
    let dev = Device::open().map_err(|e| funcs::failed("open /dev/movgem", e))?;
    let submit = || -> Result<u32, String> {
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
    let free = movgem_tests::env::meminfo_kib("MemAvailable")? / 1024
        + movgem_tests::env::meminfo_kib("SwapFree")? / 1024;
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
    let mem_mib = movgem_tests::env::meminfo_kib("MemTotal").unwrap_or(0) / 1024;
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
    let skip_reason = memory_check(&sizing).err();

    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
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
            (Subtest::Func(f, mode), None) => {
                run_func(f, mode, &sizing, o.max_passes, timeout, o.watchdog)
            }
        };
        let secs = start.elapsed().as_secs_f64();
        match r {
            Ok(summary) => {
                println!("gem-shrink: {name}: {summary}");
                println!("Subtest {name}: SUCCESS ({secs:.3}s)");
                passed += 1;
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
        let all_failed = failed == selected.len();
        println!(
            "gem-shrink: expected every selected subtest to fail: {}",
            if all_failed {
                "they did"
            } else {
                "some did not"
            }
        );
        all_failed
    } else {
        failed == 0
    };
    std::process::exit(i32::from(!ok));
}
