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

use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use funcs::Failure;
use movgem_guest::env::Counters;
use movgem_uapi::{Device, DROP_BOUND, DROP_CACHES_PATH, DROP_PURGE, DROP_UNBOUND, OP_NOP};
use plan::{Group, Kind, Sizing, Subtest, FUNCS};

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

fn usage() -> ! {
    eprintln!(
        "usage: gem-shrink [--duration SECONDS] [--passes N] [--background-passes N] \
         [--subtest-timeout SECONDS] \
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
        max_background: None,
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
            "--background-passes" => {
                o.max_background = match args.next().and_then(|s| s.parse().ok()) {
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

    /// Counter `i` (0..64): iterations, passes, drop_caches writes, and
    /// from [`PASS_NS`] on, per worker kind, the time its passes took.
    fn counter(&self, i: usize) -> &AtomicU64 {
        assert!(i < 64);
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
/// From here, three counters per worker kind ([`kind_index`]): the sum
/// and the longest of its pass times (ns), and its passes.
const PASS_NS: usize = 8;

/// A worker that exits with this code failed an allocation (ENOMEM);
/// with `--without-shrinker` that is one of the two expected failures.
const EXIT_ENOMEM: i32 = libc::ENOMEM;

/// The OOM killer should take a worker, never the runner.
fn oom_score_adj(v: i32) {
    let _ = fs::write("/proc/self/oom_score_adj", v.to_string());
}

/// Forks a child that runs `f` and exits 0 on `Ok`, after printing the
/// error [`EXIT_ENOMEM`] for ENOMEM and 1 for anything else.
fn spawn(
    what: &str,
    f: impl FnOnce() -> Result<(), Failure>,
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
                if e.errno == libc::ENOMEM {
                    EXIT_ENOMEM
                } else {
                    1
                }
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
    if let Err(e) = movgem_guest::env::set_param("shrinker", if on { "1" } else { "0" }) {
        println!("gem-shrink: {e}");
    }
}

/// Files the `--without-shrinker` recovery writes, opened while memory
/// was plentiful: when the subtest is decided the guest is out of memory,
/// and opening a file allocates.
struct Recovery {
    shrinker: fs::File,
    drop_caches: fs::File,
    /// What to write to `drop_caches`: purge, unbound and bound.
    drop_bits: String,
}

static RECOVERY: std::sync::OnceLock<Recovery> = std::sync::OnceLock::new();

fn open_recovery() -> Result<(), String> {
    let open = |path: &str| {
        fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| format!("{path}: {e}"))
    };
    let r = Recovery {
        shrinker: open("/sys/module/movgem/parameters/shrinker")?,
        drop_caches: open(DROP_CACHES_PATH)?,
        drop_bits: (DROP_BOUND | DROP_UNBOUND | DROP_PURGE).to_string(),
    };
    let _ = RECOVERY.set(r);
    Ok(())
}

/// Writes `what` at offset 0 of `f`, without allocating.
fn pwrite(f: &fs::File, what: &[u8]) {
    use std::os::fd::AsRawFd;
    // SAFETY: `what` is valid for its length; `f` is open.
    unsafe { libc::pwrite(f.as_raw_fd(), what.as_ptr().cast(), what.len(), 0) };
}

/// Shrinker back on and its caches dropped, through the files opened
/// beforehand (falls back to opening them).
fn recover() {
    match RECOVERY.get() {
        Some(r) => {
            pwrite(&r.shrinker, b"1");
            pwrite(&r.drop_caches, r.drop_bits.as_bytes());
        }
        None => {
            set_shrinker(true);
            let _ = fs::write(
                DROP_CACHES_PATH,
                (DROP_BOUND | DROP_UNBOUND | DROP_PURGE).to_string(),
            );
        }
    }
}

/// What reaping a subtest's children found.
struct Reaped {
    /// Every child that failed, described.
    bad: Vec<String>,
    /// With `decide`: the failure that decided the subtest, and whether
    /// it was an expected one (an OOM kill or ENOMEM).
    decided: Option<(String, bool)>,
    /// The watchdog fired before anything else decided the subtest.
    timed_out: bool,
    /// Per worker kind, when its last worker ended (s since the start).
    finished: Vec<(String, f64)>,
}

/// How a child ended, for `--without-shrinker`'s early decision.
fn expected_failure(status: i32, oom_kills: u64) -> Option<&'static str> {
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL && oom_kills > 0 {
        Some("OOM-killed")
    } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == EXIT_ENOMEM {
        Some("refused memory (ENOMEM)")
    } else {
        None
    }
}

fn oom_kills() -> u64 {
    Counters::vmstat().map_or(0, |v| v.get("oom_kill"))
}

/// Whether the task whose `/proc/PID/status` is open as `f` has a
/// SIGKILL pending: killed, but not yet exited.  The OOM killer's victims
/// in a `--without-shrinker` run cannot exit until the shrinker is back
/// (their objects pin the memory exiting needs), so the decision cannot
/// wait for their exit status; and it must not allocate (the guest is out
/// of memory then), hence the file opened beforehand, read with `pread`
/// into `buf`.
fn sigkill_pending(f: &fs::File, buf: &mut [u8]) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is valid for writes of its length; `f` is open.
    let n = unsafe { libc::pread(f.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    n > 0 && status_has_sigkill(&buf[..n as usize])
}

/// Whether a `/proc/PID/status` text shows SIGKILL pending, for the
/// thread (`SigPnd`) or the process (`ShdPnd`).  Allocates nothing.
fn status_has_sigkill(status: &[u8]) -> bool {
    status.split(|&b| b == b'\n').any(|l| {
        let Some(mask) = l
            .strip_prefix(b"ShdPnd:")
            .or_else(|| l.strip_prefix(b"SigPnd:"))
        else {
            return false;
        };
        let mut m = 0u64;
        for &c in mask.iter().filter(|c| !c.is_ascii_whitespace()) {
            let Some(d) = (c as char).to_digit(16) else {
                return false;
            };
            m = (m << 4) | u64::from(d);
        }
        m & (1 << (libc::SIGKILL - 1)) != 0
    })
}

/// Reaps every child; describes each that failed.  While waiting, prints
/// `progress()` every 30 s so a slow guest shows life.  Past the
/// watchdog, kills the children; if they are still there `KILL_GRACE_S`
/// later, gives up on them and marks the run abandoned.
///
/// With `decide` (`--without-shrinker`), the first child that fails
/// decides the subtest at once: it is the expected failure if the OOM
/// killer took it or an allocation was refused (ENOMEM), anything else
/// is not; the others are killed then, and a watchdog that fires first
/// is not the expected failure either.
fn reap(
    mut children: Vec<(libc::pid_t, String)>,
    watch: Vec<(libc::pid_t, fs::File)>,
    watchdog: Option<f64>,
    decide: bool,
    progress: impl Fn() -> String,
    diagnose: impl Fn(),
) -> Reaped {
    let mut out = Reaped {
        bad: Vec::new(),
        decided: None,
        timed_out: false,
        finished: Vec::new(),
    };
    let oom_kills_before = oom_kills();
    let start = Instant::now();
    let mut last = Instant::now();
    // When we killed the children: the grace period counts from there (a
    // starved runner may fire late), and SIGKILLs after it are ours.
    let mut killed_at: Option<Instant> = None;
    let mut last_drop = Instant::now();
    let kill_all = |children: &[(libc::pid_t, String)]| {
        for &(pid, _) in children {
            // SAFETY: `pid` is our child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if WITHOUT_SHRINKER.load(Ordering::Relaxed) != 0 {
            recover();
            println!(
                "gem-shrink: subtest decided; shrinker back on and drop_caches, \
                 so that its workers can exit"
            );
        }
    };
    // The buffer `sigkill_pending` reads into, allocated (and, under
    // mlockall, made present) before the workers fill memory.
    let mut status_buf = vec![0u8; 8192];
    while !children.is_empty() {
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer; we only reap our children.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            out.bad.push(format!("waitpid: {e}"));
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
                out.bad.push(msg);
                ABANDONED.store(1, Ordering::Relaxed);
                break;
            }
            // An OOM kill decides a --without-shrinker subtest as soon as
            // the kernel counts it, whether or not its victim can exit.
            // Nothing here allocates until the decision is made and the
            // shrinker is back.  A SIGKILL the runner did not send is the
            // OOM killer's; the vmstat count confirms it afterwards.
            if decide && killed_at.is_none() {
                let victim = watch
                    .iter()
                    .find(|(pid, f)| {
                        children.iter().any(|c| c.0 == *pid) && sigkill_pending(f, &mut status_buf)
                    })
                    .map(|(pid, _)| *pid);
                if let Some(pid) = victim {
                    kill_all(&children);
                    killed_at = Some(Instant::now());
                    let oom = oom_kills().saturating_sub(oom_kills_before);
                    let what = children
                        .iter()
                        .find(|c| c.0 == pid)
                        .map_or("a worker", |c| c.1.as_str());
                    let line = format!("{what} (pid {pid}) OOM-killed after {t:.1}s");
                    let expected = oom > 0;
                    println!(
                        "gem-shrink: decided after {t:.1}s: {line} ({}, oom_kill +{oom}); \
                         killed {} workers",
                        if expected {
                            "the expected failure"
                        } else {
                            "NOT the expected failure: no OOM kill counted"
                        },
                        children.len()
                    );
                    out.bad.push(line.clone());
                    out.decided = Some((line, expected));
                    continue;
                }
            }
            if killed_at.is_none() && watchdog.is_some_and(|w| t >= w) {
                // Kill (and, without the shrinker, recover) before
                // anything that allocates: the guest may be out of memory.
                let alive = children.len();
                kill_all(&children);
                killed_at = Some(Instant::now());
                let msg = format!(
                    "subtest timed out after {t:.0}s: {}; killed {alive} workers",
                    progress()
                );
                println!("gem-shrink: {msg}");
                diagnose();
                out.bad.push(msg);
                out.timed_out = true;
            }
            // Recovery in --without-shrinker mode: the killed workers' objects
            // pin most of memory, and purging them is what lets them exit.
            if killed_at.is_some()
                && WITHOUT_SHRINKER.load(Ordering::Relaxed) != 0
                && last_drop.elapsed() >= Duration::from_secs(1)
            {
                recover();
                last_drop = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
            // No progress line while a --without-shrinker subtest is
            // undecided: printing allocates, and the runner must stay free
            // to notice the OOM kill.
            if last.elapsed() >= Duration::from_secs(30) && !(decide && killed_at.is_none()) {
                println!(
                    "gem-shrink: ... {}; {} workers still running",
                    progress(),
                    children.len()
                );
                last = Instant::now();
            }
            continue;
        }
        let Some(i) = children.iter().position(|c| c.0 == pid) else {
            continue;
        };
        let (pid, what) = children.swap_remove(i);
        let t = start.elapsed().as_secs_f64();
        let kind = what.split(" worker").next().unwrap_or(&what).to_string();
        match out.finished.iter_mut().find(|(k, _)| *k == kind) {
            Some(f) => f.1 = t,
            None => out.finished.push((kind, t)),
        }
        let Some(v) = verdict(pid, &what, status) else {
            continue;
        };
        if decide && killed_at.is_none() {
            kill_all(&children);
            killed_at = Some(Instant::now());
            let oom = oom_kills().saturating_sub(oom_kills_before);
            let why = expected_failure(status, oom);
            let line = match why {
                Some(how) => format!("{what} (pid {pid}) {how} after {t:.1}s"),
                None => v.clone(),
            };
            println!(
                "gem-shrink: decided after {t:.1}s: {line} ({}); killed {} workers",
                if why.is_some() {
                    "the expected failure"
                } else {
                    "NOT the expected failure"
                },
                children.len()
            );
            out.decided = Some((line, why.is_some()));
        }
        out.bad.push(v);
    }
    out
}

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
    let driver = before
        .as_ref()
        .and_then(|b| Counters::read().ok().map(|n| n.since(b).pick(&DRIVER)))
        .unwrap_or_default();
    println!(
        "gem-shrink: phases: {}; vmstat {}; movgem {driver}",
        phases.join("; "),
        vm.pick(&VMSTAT)
    );
    let summary = summary();
    if let Some(e) = err {
        return Err(e);
    }
    Ok(match r.decided {
        Some((line, expected)) => Outcome::Failed {
            why: format!("{summary}; {line}; {}", summarize(&r.bad)),
            expected,
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

    /// A wait status for a child that exited with `code`.
    fn exited(code: i32) -> i32 {
        (code & 0xff) << 8
    }

    /// A wait status for a child killed by `sig`.
    fn killed(sig: i32) -> i32 {
        sig & 0x7f
    }

    #[test]
    fn oom_kill_is_expected_only_if_the_kernel_counted_one() {
        assert_eq!(
            expected_failure(killed(libc::SIGKILL), 1),
            Some("OOM-killed")
        );
        // SIGKILL with no OOM kill counted: not the OOM killer's.
        assert_eq!(expected_failure(killed(libc::SIGKILL), 0), None);
        assert_eq!(expected_failure(killed(libc::SIGSEGV), 3), None);
    }

    #[test]
    fn pending_sigkill_is_read_from_either_mask() {
        let status = |sig: &str, shd: &str| {
            format!("Name:\tx\nSigPnd:\t{sig}\nShdPnd:\t{shd}\n").into_bytes()
        };
        assert!(status_has_sigkill(&status(
            "0000000000000000",
            "0000000000000100"
        )));
        assert!(status_has_sigkill(&status(
            "0000000000000100",
            "0000000000000000"
        )));
        // SIGTERM (bit 14) alone is not a kill.
        assert!(!status_has_sigkill(&status(
            "0000000000004000",
            "0000000000004000"
        )));
        assert!(!status_has_sigkill(b""));
    }

    #[test]
    fn enomem_is_expected_other_errors_are_not() {
        assert_eq!(
            expected_failure(exited(EXIT_ENOMEM), 0),
            Some("refused memory (ENOMEM)")
        );
        assert_eq!(expected_failure(exited(1), 0), None);
        assert_eq!(expected_failure(exited(0), 5), None);
    }
}
