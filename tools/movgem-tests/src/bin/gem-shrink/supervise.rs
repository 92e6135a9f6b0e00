// SPDX-License-Identifier: GPL-2.0

//! gem-shrink's process supervision: the page shared with the workers,
//! forking them ([`spawn`]), idling the GPU between subtests
//! ([`quiesce`]), reaping them and the per-subtest watchdog ([`reap`]),
//! how each worker's end counts ([`judge`]), and, with
//! `--without-shrinker`, deciding a subtest on the first OOM kill or
//! ENOMEM of a worker (with `--leak-forever`: of a function or userptr
//! worker) and giving the shrinker back so
//! that the killed workers can exit ([`recover`]).

use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use movgem_guest::env::{meminfo_kib, Counters};
use movgem_uapi::{DROP_ACTIVE, DROP_BOUND, DROP_CACHES_PATH, DROP_PURGE, DROP_UNBOUND};

use crate::funcs::Failure;

/// Page-sized memory shared with the children: a stop flag and counters.
pub(crate) struct Shared {
    ptr: *mut u8,
}

impl Shared {
    pub(crate) fn new() -> Result<Self, String> {
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

    pub(crate) fn stop(&self) -> &AtomicU32 {
        // SAFETY: the page is mapped for our lifetime, aligned, and only
        // ever accessed atomically, here and in the children.
        unsafe { &*self.ptr.cast::<AtomicU32>() }
    }

    /// Counter `i` (0..64): iterations, passes, drop_caches writes, and
    /// from [`crate::PASS_NS`] on, per worker kind, the time its passes took.
    pub(crate) fn counter(&self, i: usize) -> &AtomicU64 {
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

/// A worker that exits with this code failed an allocation (ENOMEM);
/// with `--without-shrinker` that is one of the two expected failures.
const EXIT_ENOMEM: i32 = libc::ENOMEM;

/// The OOM killer should take a worker, never the runner.
pub(crate) fn oom_score_adj(v: i32) {
    let _ = fs::write("/proc/self/oom_score_adj", v.to_string());
}

/// Forks a child that runs `f` and exits 0 on `Ok`, after printing the
/// error [`EXIT_ENOMEM`] for ENOMEM and 1 for anything else.
pub(crate) fn spawn(
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
pub(crate) fn summarize(bad: &[String]) -> String {
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
pub(crate) static ABANDONED: AtomicU32 = AtomicU32::new(0);

/// `--without-shrinker`: every subtest runs with the module's `shrinker`
/// parameter 0, and it is set back to 1 once the subtest is decided
/// (its workers finished or were killed by the watchdog).  Without a
/// shrinker, the memory pinned by killed workers' objects cannot be
/// reclaimed, so the workers cannot even exit; giving it back lets them,
/// and the next subtest starts from a clean state.
pub(crate) static WITHOUT_SHRINKER: AtomicU32 = AtomicU32::new(0);

pub(crate) fn set_shrinker(on: bool) {
    if let Err(e) = movgem_guest::env::set_param("shrinker", if on { "1" } else { "0" }) {
        println!("gem-shrink: {e}");
    }
}

fn open_for_write(path: &str) -> Result<fs::File, String> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))
}

/// The driver's debugfs `drop_caches`, opened once before the first
/// subtest, while memory is plentiful (opening a file allocates): the
/// quiesce before every subtest and the `--without-shrinker` recovery
/// write it.  The error if it could not be opened.
static DROP_CACHES: std::sync::OnceLock<Result<fs::File, String>> = std::sync::OnceLock::new();

pub(crate) fn open_drop_caches() -> Result<(), String> {
    DROP_CACHES
        .get_or_init(|| open_for_write(DROP_CACHES_PATH))
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

fn drop_caches_file() -> Option<&'static fs::File> {
    DROP_CACHES.get()?.as_ref().ok()
}

/// What [`quiesce`] measured.
pub(crate) struct Quiesced {
    /// How long the DROP_ACTIVE write took: until every request retired.
    pub(crate) secs: f64,
    /// `MemFree` before and after, in KiB.
    pub(crate) free_before_kib: u64,
    pub(crate) free_after_kib: u64,
}

/// igt's `gem_quiescent_gpu()`: writes DROP_ACTIVE to the driver's
/// drop_caches, which returns once every GPU request has retired, so that
/// a subtest does not start while the last one's batches (hangs waiting
/// for their reset, say) still hold objects.  Through the file opened by
/// [`open_drop_caches`]; allocates nothing but the two `/proc/meminfo`
/// reads.  An error (the file could not be opened, the write failed)
/// fails the subtest about to start.
pub(crate) fn quiesce() -> Result<Quiesced, String> {
    let f = match DROP_CACHES.get() {
        Some(Ok(f)) => f,
        Some(Err(e)) => return Err(format!("cannot idle the GPU (DROP_ACTIVE): {e}")),
        None => {
            return Err(format!(
                "cannot idle the GPU: {DROP_CACHES_PATH} was never opened"
            ))
        }
    };
    let free = || meminfo_kib("MemFree").unwrap_or(0);
    let free_before_kib = free();
    let start = Instant::now();
    pwrite(f, DROP_ACTIVE_BITS).map_err(|e| {
        format!("idling the GPU: writing DROP_ACTIVE to {DROP_CACHES_PATH} failed: {e}")
    })?;
    let secs = start.elapsed().as_secs_f64();
    Ok(Quiesced {
        secs,
        free_before_kib,
        free_after_kib: free(),
    })
}

/// `DROP_ACTIVE` as drop_caches reads it, decimal.
const DROP_ACTIVE_BITS: &[u8] = b"4";
const _: () = assert!(DROP_ACTIVE == 4);

/// Files the `--without-shrinker` recovery writes, opened while memory
/// was plentiful: when the subtest is decided the guest is out of memory,
/// and opening a file allocates.  (`drop_caches` is [`DROP_CACHES`].)
struct Recovery {
    shrinker: fs::File,
    /// What to write to `drop_caches`: purge, unbound and bound.
    drop_bits: String,
}

static RECOVERY: std::sync::OnceLock<Recovery> = std::sync::OnceLock::new();

pub(crate) fn open_recovery() -> Result<(), String> {
    open_drop_caches()?;
    let r = Recovery {
        shrinker: open_for_write("/sys/module/movgem/parameters/shrinker")?,
        drop_bits: (DROP_BOUND | DROP_UNBOUND | DROP_PURGE).to_string(),
    };
    let _ = RECOVERY.set(r);
    Ok(())
}

/// Writes all of `what` at offset 0 of `f`, without allocating.
fn pwrite(f: &fs::File, what: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: `what` is valid for its length; `f` is open.
        let n = unsafe { libc::pwrite(f.as_raw_fd(), what.as_ptr().cast(), what.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if n as usize != what.len() {
            return Err(std::io::Error::other(format!(
                "wrote {n} of {} bytes",
                what.len()
            )));
        }
        return Ok(());
    }
}

/// Shrinker back on and its caches dropped, through the files opened
/// beforehand (falls back to opening them).  Best effort: what it
/// could not do shows as workers that cannot exit.
fn recover() {
    match (RECOVERY.get(), drop_caches_file()) {
        (Some(r), Some(drop_caches)) => {
            let _ = pwrite(&r.shrinker, b"1");
            let _ = pwrite(drop_caches, r.drop_bits.as_bytes());
        }
        _ => {
            set_shrinker(true);
            let _ = fs::write(
                DROP_CACHES_PATH,
                (DROP_BOUND | DROP_UNBOUND | DROP_PURGE).to_string(),
            );
        }
    }
}

/// One of the driver's debugfs counters, opened while memory is
/// plentiful and read once without allocating: `--without-shrinker`'s
/// negative control of the pressure floor reads it when the subtest is
/// decided, before the recovery (shrinker back on, drop_caches) gives
/// memory back that no worker's pressure asked for.  Once: a debugfs
/// attribute file cannot be read at an offset (`pread` fails with
/// `ESPIPE`), and a second `read` finds its end.
pub(crate) struct DriverCounter {
    file: Option<fs::File>,
}

impl DriverCounter {
    pub(crate) fn open(name: &str) -> Self {
        Self {
            file: fs::File::open(format!("/sys/kernel/debug/movgem/{name}")).ok(),
        }
    }

    /// The value, read into a buffer on the stack; `None` if the file
    /// could not be opened or read, or was read before.
    pub(crate) fn read(&self) -> Option<u64> {
        use std::os::fd::AsRawFd;
        let fd = self.file.as_ref()?.as_raw_fd();
        let mut buf = [0u8; 32];
        let mut at = 0;
        while at < buf.len() {
            // SAFETY: `buf[at..]` is valid for writes of its length; `fd`
            // is open for as long as `self`.
            let n = unsafe { libc::read(fd, buf[at..].as_mut_ptr().cast(), buf.len() - at) };
            if n <= 0 {
                break;
            }
            at += n as usize;
        }
        counter_value(&buf[..at])
    }
}

/// A debugfs counter file's text (`"123\n"`) as a number.  Allocates
/// nothing.
fn counter_value(text: &[u8]) -> Option<u64> {
    let digits = text.strip_suffix(b"\n").unwrap_or(text);
    let mut v = 0u64;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    (!digits.is_empty()).then_some(v)
}

/// What reaping a subtest's children found.
pub(crate) struct Reaped {
    /// Every child that failed, described.
    pub(crate) bad: Vec<String>,
    /// With `decide`: the failure that decided the subtest, and whether
    /// it was an expected one (an OOM kill or ENOMEM).
    pub(crate) decided: Option<(String, bool)>,
    /// The watchdog fired before anything else decided the subtest.
    pub(crate) timed_out: bool,
    /// Per worker kind, when its last worker ended (s since the start).
    pub(crate) finished: Vec<(String, f64)>,
    /// Leak workers the OOM killer took, which did not fail the subtest
    /// ([`End::LeakerOomKilled`]).
    pub(crate) leakers_oom_killed: u64,
    /// The `counter` given to [`reap`] when it killed the children
    /// (before any recovery), if it did.
    pub(crate) counter_at_kill: Option<u64>,
}

/// The rules a subtest's children are judged by.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    /// `--without-shrinker`: the first failure decides the subtest, and
    /// it must be an OOM kill or ENOMEM (with `--leak-forever`: of a
    /// function or userptr worker).
    pub(crate) decide: bool,
    /// `--leak-forever`: leak workers never unmap what they leak, as igt's
    /// do, so with the shrinker on the OOM killer is their expected end.
    pub(crate) leak_forever: bool,
}

/// How one child's end counts for its subtest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Exited 0.
    Clean,
    /// With `--leak-forever`, a leak worker taken by the OOM killer
    /// (SIGKILL, with an OOM kill counted by the kernel that no earlier
    /// leaker's end accounts for).  Not a failure: the leak workers,
    /// whose memory only grows, are the OOM killer's intended victims,
    /// and that is how they end, as igt's do.  With `--without-shrinker`
    /// it is not the negative control's failure either (leaked memory
    /// the OOM killer would take with any driver), so the subtest waits
    /// on for a function or userptr worker's OOM kill or ENOMEM.  Counted.
    LeakerOomKilled,
    /// `--without-shrinker`: the failure a driver without a shrinker
    /// must produce, an OOM kill or ENOMEM.  Without `--leak-forever` of
    /// any worker: a leak worker unmaps every iteration, and with the
    /// shrinker on the same subtest has no OOM kill at all, so the kill
    /// is the driver's memory's doing (make check's rule, unchanged).
    Expected(&'static str),
    /// Fails the subtest (with `--without-shrinker`: decides it, and is
    /// NOT the expected failure).  Every other abnormal end: any worker
    /// killed by a signal other than the OOM killer's, any worker that
    /// failed a call, a function or userptr worker OOM-killed with the
    /// shrinker on, a leak worker OOM-killed with the shrinker on without
    /// `--leak-forever` (its memory is unmapped every iteration, so it
    /// should never be), a `--leak-forever` leak worker refused memory.
    Failed,
}

/// How a child whose wait status is `status` ended, for its subtest:
/// `leaker` if it is a leak worker, `uncounted_oom_kills` the OOM kills
/// the kernel counted (vmstat `oom_kill`) since the subtest started that
/// earlier [`End::LeakerOomKilled`] ends do not account for.
pub(crate) fn judge(status: i32, leaker: bool, uncounted_oom_kills: u64, rules: Rules) -> End {
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return End::Clean;
    }
    let how = expected_failure(status, uncounted_oom_kills);
    match (leaker, how) {
        (true, Some(OOM_KILLED)) if rules.leak_forever => End::LeakerOomKilled,
        (true, Some(_)) if rules.leak_forever => End::Failed,
        (_, Some(how)) if rules.decide => End::Expected(how),
        _ => End::Failed,
    }
}

const OOM_KILLED: &str = "OOM-killed";

/// How a child ended, for `--without-shrinker`'s early decision.
fn expected_failure(status: i32, oom_kills: u64) -> Option<&'static str> {
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL && oom_kills > 0 {
        Some(OOM_KILLED)
    } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == EXIT_ENOMEM {
        Some("refused memory (ENOMEM)")
    } else {
        None
    }
}

/// vmstat's `oom_kill`, read without allocating once open: the runner
/// reads it while a `--without-shrinker` subtest has the guest out of
/// memory.  Falls back to [`Counters::vmstat`] if `/proc/vmstat` could
/// not be opened.
struct OomKills {
    file: Option<fs::File>,
    /// Made present (mlockall) before the workers fill memory.
    buf: Vec<u8>,
}

impl OomKills {
    fn open() -> Self {
        Self {
            file: fs::File::open("/proc/vmstat").ok(),
            buf: vec![0u8; 64 << 10],
        }
    }

    fn read(&mut self) -> u64 {
        let Some(f) = &self.file else {
            return Counters::vmstat().map_or(0, |v| v.get("oom_kill"));
        };
        let n = read_all_at(f, &mut self.buf);
        vmstat_field(&self.buf[..n], b"oom_kill").unwrap_or(0)
    }
}

/// Reads `f` from offset 0 into `buf` until its end or `buf` is full
/// (a seq_file hands out a page per read); returns the bytes read.
fn read_all_at(f: &fs::File, buf: &mut [u8]) -> usize {
    use std::os::fd::AsRawFd;
    let mut at = 0;
    while at < buf.len() {
        // SAFETY: `buf[at..]` is valid for writes of its length; `f` is open.
        let n = unsafe {
            libc::pread(
                f.as_raw_fd(),
                buf[at..].as_mut_ptr().cast(),
                buf.len() - at,
                at as libc::off_t,
            )
        };
        if n <= 0 {
            break;
        }
        at += n as usize;
    }
    at
}

/// The value of `name` in a `/proc/vmstat` text.  Allocates nothing.
fn vmstat_field(text: &[u8], name: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n').find_map(|l| {
        let v = l.strip_prefix(name)?.strip_prefix(b" ")?;
        let mut n = 0u64;
        for &c in v {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        }
        (!v.is_empty()).then_some(n)
    })
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
/// Each child's end is judged by [`judge`]: `leakers` are the leak
/// workers, whose OOM kill is counted, not failed, under the rules of
/// [`End::LeakerOomKilled`].
///
/// With `rules.decide` (`--without-shrinker`), the first worker that
/// fails (with `--leak-forever`: the first function or userptr worker
/// that fails, or leak worker that fails otherwise than by an OOM kill)
/// decides the subtest at once: it is the expected
/// failure if the OOM killer took it or an allocation was refused
/// (ENOMEM), anything else is not; the others are killed then, and a
/// watchdog that fires first is not the expected failure either.
#[allow(clippy::too_many_arguments)]
pub(crate) fn reap(
    mut children: Vec<(libc::pid_t, String)>,
    leakers: &[libc::pid_t],
    watch: Vec<(libc::pid_t, fs::File)>,
    watchdog: Option<f64>,
    rules: Rules,
    counter: Option<&DriverCounter>,
    progress: impl Fn() -> String,
    diagnose: impl Fn(),
) -> Reaped {
    let decide = rules.decide;
    let mut out = Reaped {
        bad: Vec::new(),
        decided: None,
        timed_out: false,
        finished: Vec::new(),
        leakers_oom_killed: 0,
        counter_at_kill: None,
    };
    let at_kill = std::cell::Cell::new(None);
    let mut oom_kills = OomKills::open();
    let oom_kills_before = oom_kills.read();
    let start = Instant::now();
    let mut last = Instant::now();
    // When we killed the children: the grace period counts from there (a
    // starved runner may fire late), and SIGKILLs after it are ours.
    let mut killed_at: Option<Instant> = None;
    let mut last_drop = Instant::now();
    let kill_all = |children: &[(libc::pid_t, String)]| {
        if at_kill.get().is_none() {
            at_kill.set(counter.and_then(DriverCounter::read));
        }
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
            // An OOM kill of a worker (with --leak-forever: of a function
            // or userptr worker) decides a
            // --without-shrinker subtest as soon as the kernel counts it,
            // whether or not its victim can exit.  Nothing here allocates
            // until the decision is made and the shrinker is back.  A
            // SIGKILL the runner did not send is the OOM killer's; the
            // vmstat count confirms it afterwards.  A leak worker's OOM
            // kill decides nothing with --leak-forever
            // (End::LeakerOomKilled): it can exit
            // (it holds no objects) and is judged when reaped.
            if decide && killed_at.is_none() {
                let victim = watch
                    .iter()
                    .find(|(pid, f)| {
                        !(rules.leak_forever && leakers.contains(pid))
                            && children.iter().any(|c| c.0 == *pid)
                            && sigkill_pending(f, &mut status_buf)
                    })
                    .map(|(pid, _)| *pid);
                if let Some(pid) = victim {
                    kill_all(&children);
                    killed_at = Some(Instant::now());
                    let oom = oom_kills
                        .read()
                        .saturating_sub(oom_kills_before + out.leakers_oom_killed);
                    let what = children
                        .iter()
                        .find(|c| c.0 == pid)
                        .map_or("a worker", |c| c.1.as_str());
                    let line = format!("{what} (pid {pid}) OOM-killed after {t:.1}s");
                    let expected = oom > 0;
                    println!(
                        "gem-shrink: decided after {t:.1}s: {line} ({}, oom_kill +{oom} \
                         besides {} leak workers'); killed {} workers",
                        if expected {
                            "the expected failure"
                        } else {
                            "NOT the expected failure: no OOM kill counted"
                        },
                        out.leakers_oom_killed,
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
        // Once the runner has killed the children, every end is a
        // failure already reported (the watchdog, the decision).
        if killed_at.is_none() {
            let leaker = leakers.contains(&pid);
            let uncounted = oom_kills
                .read()
                .saturating_sub(oom_kills_before + out.leakers_oom_killed);
            let end = judge(status, leaker, uncounted, rules);
            if end == End::LeakerOomKilled {
                // Counted; printed with the subtest's summary (nothing is
                // printed here while a --without-shrinker subtest is
                // undecided: printing allocates).
                out.leakers_oom_killed += 1;
                continue;
            }
            if decide {
                kill_all(&children);
                killed_at = Some(Instant::now());
                let line = match (end, expected_failure(status, uncounted)) {
                    (End::Expected(how), _) => format!("{what} (pid {pid}) {how} after {t:.1}s"),
                    (_, Some(how)) if leaker => format!(
                        "{what} (pid {pid}) {how} after {t:.1}s: a leak worker's, not the \
                         driver's failure"
                    ),
                    _ => v.clone(),
                };
                let expected = matches!(end, End::Expected(_));
                println!(
                    "gem-shrink: decided after {t:.1}s: {line} ({}); {} leak workers \
                     OOM-killed before; killed {} workers",
                    if expected {
                        "the expected failure"
                    } else {
                        "NOT the expected failure"
                    },
                    out.leakers_oom_killed,
                    children.len()
                );
                out.decided = Some((line, expected));
            }
        }
        out.bad.push(v);
    }
    out.counter_at_kill = at_kill.get();
    out
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

    const SHRINKER_ON: Rules = Rules {
        decide: false,
        leak_forever: false,
    };
    const SHRINKER_ON_LEAK_FOREVER: Rules = Rules {
        decide: false,
        leak_forever: true,
    };
    const WITHOUT_SHRINKER: Rules = Rules {
        decide: true,
        leak_forever: false,
    };
    const WITHOUT_SHRINKER_LEAK_FOREVER: Rules = Rules {
        decide: true,
        leak_forever: true,
    };
    const ALL: [Rules; 4] = [
        SHRINKER_ON,
        SHRINKER_ON_LEAK_FOREVER,
        WITHOUT_SHRINKER,
        WITHOUT_SHRINKER_LEAK_FOREVER,
    ];

    #[test]
    fn a_clean_exit_is_clean_for_everyone() {
        for rules in ALL {
            for leaker in [false, true] {
                assert_eq!(judge(exited(0), leaker, 0, rules), End::Clean);
                assert_eq!(judge(exited(0), leaker, 3, rules), End::Clean);
            }
        }
    }

    #[test]
    fn with_the_shrinker_on_only_leak_forever_leakers_may_be_oom_killed() {
        let oom = killed(libc::SIGKILL);
        assert_eq!(
            judge(oom, true, 1, SHRINKER_ON_LEAK_FOREVER),
            End::LeakerOomKilled
        );
        // Without --leak-forever a leaker unmaps every iteration: its OOM
        // kill fails the subtest, as before.
        assert_eq!(judge(oom, true, 1, SHRINKER_ON), End::Failed);
        // A function or userptr worker OOM-killed always fails it.
        for rules in [SHRINKER_ON, SHRINKER_ON_LEAK_FOREVER] {
            assert_eq!(judge(oom, false, 1, rules), End::Failed);
        }
    }

    #[test]
    fn a_leaker_counts_as_oom_killed_only_if_the_kernel_counted_a_kill() {
        for rules in ALL {
            // SIGKILL with no OOM kill left to account for it: not the
            // OOM killer's (someone else's SIGKILL), a failure.
            assert_eq!(judge(killed(libc::SIGKILL), true, 0, rules), End::Failed);
            // Other signals and errors are failures, whatever the count.
            assert_eq!(judge(killed(libc::SIGSEGV), true, 5, rules), End::Failed);
            assert_eq!(judge(exited(1), true, 5, rules), End::Failed);
        }
        // A --leak-forever leaker refused memory is no driver's failure,
        // and no pass either: it fails (decides, not as expected).
        for rules in [
            SHRINKER_ON,
            SHRINKER_ON_LEAK_FOREVER,
            WITHOUT_SHRINKER_LEAK_FOREVER,
        ] {
            assert_eq!(judge(exited(EXIT_ENOMEM), true, 5, rules), End::Failed);
        }
        // make check's negative control: any worker's ENOMEM decides it.
        assert_eq!(
            judge(exited(EXIT_ENOMEM), true, 5, WITHOUT_SHRINKER),
            End::Expected("refused memory (ENOMEM)")
        );
    }

    #[test]
    fn the_negative_control_needs_a_driver_caused_failure() {
        // With --leak-forever a leaker's OOM kill neither satisfies nor
        // fails it; without, a leaker unmaps every iteration and its OOM
        // kill is the expected failure (make check's rule).
        assert_eq!(
            judge(
                killed(libc::SIGKILL),
                true,
                1,
                WITHOUT_SHRINKER_LEAK_FOREVER
            ),
            End::LeakerOomKilled
        );
        assert_eq!(
            judge(killed(libc::SIGKILL), true, 1, WITHOUT_SHRINKER),
            End::Expected("OOM-killed")
        );
        for rules in [WITHOUT_SHRINKER, WITHOUT_SHRINKER_LEAK_FOREVER] {
            // A function or userptr worker OOM-killed or refused memory:
            // the expected failure.
            assert_eq!(
                judge(killed(libc::SIGKILL), false, 1, rules),
                End::Expected("OOM-killed")
            );
            assert_eq!(
                judge(exited(EXIT_ENOMEM), false, 0, rules),
                End::Expected("refused memory (ENOMEM)")
            );
            // Its SIGKILL with every counted OOM kill already a leaker's:
            // not the OOM killer's.
            assert_eq!(judge(killed(libc::SIGKILL), false, 0, rules), End::Failed);
            assert_eq!(judge(exited(1), false, 4, rules), End::Failed);
            assert_eq!(judge(killed(libc::SIGBUS), false, 4, rules), End::Failed);
        }
        // With the shrinker on nothing is the expected failure.
        for rules in [SHRINKER_ON, SHRINKER_ON_LEAK_FOREVER] {
            assert_eq!(judge(exited(EXIT_ENOMEM), false, 0, rules), End::Failed);
        }
    }

    #[test]
    fn vmstat_fields_are_read_without_allocating() {
        let text = b"nr_free_pages 1234\noom_kill_x 9\noom_kill 17\npgfault 5\n";
        assert_eq!(vmstat_field(text, b"oom_kill"), Some(17));
        assert_eq!(vmstat_field(text, b"nr_free_pages"), Some(1234));
        assert_eq!(vmstat_field(text, b"pgfault"), Some(5));
        assert_eq!(vmstat_field(text, b"missing"), None);
        assert_eq!(vmstat_field(b"oom_kill \n", b"oom_kill"), None);
        assert_eq!(vmstat_field(b"oom_kill 1x\n", b"oom_kill"), None);
        // The last line needs no newline.
        assert_eq!(vmstat_field(b"pgfault 5\noom_kill 3", b"oom_kill"), Some(3));
    }

    #[test]
    fn counter_files_are_read_without_allocating() {
        assert_eq!(counter_value(b"191488\n"), Some(191_488));
        assert_eq!(counter_value(b"0\n"), Some(0));
        assert_eq!(counter_value(b"7"), Some(7));
        assert_eq!(counter_value(b""), None);
        assert_eq!(counter_value(b"\n"), None);
        assert_eq!(counter_value(b"12 \n"), None);
        assert_eq!(counter_value(b"99999999999999999999999\n"), None);
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
