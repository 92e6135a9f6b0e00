// SPDX-License-Identifier: GPL-2.0

//! Migration against our own reclaim.  `migrate_pages_batch()` keeps the
//! folios it unmapped locked while it allocates the next destination;
//! that allocation may enter direct reclaim and call our shrinker, which
//! used to purge a DONTNEED object by truncating it, waiting for a folio
//! lock the same task holds: the task hung in `folio_wait_bit_common`
//! for good, holding `struct_mutex` behind it.  The recipe (found on
//! a3423c7): a 48 MiB object on node 0, filled by the GPU and mapped;
//! node 1 filled with anonymous memory until about 25 MB are free; the
//! object marked DONTNEED; `move_pages(2)` of its mapping to node 1.
//! Which reclaim meets the DONTNEED object first is a race: the move
//! wakes kswapd at the low watermark and enters direct reclaim itself at
//! the minimum, and if kswapd purges the object the move never waits on
//! its own folio (the old code then passes).  So the watermarks are set
//! small and close for the test (`vm.min_free_kbytes`, which khugepaged
//! raises to about 5% of a 1 GiB guest, and `vm.watermark_scale_factor`),
//! the fill stops a fixed distance above the low watermark (below the
//! minimum it would get the filler OOM-killed, as a fixed 25 MB once did
//! in CI), and the recipe runs up to six times until the purge comes
//! from the move's own direct reclaim with folios of the object locked.
//!
//! What the test asserts, from the trace event `movgem_shrink_purge`
//! (one per object a shrink purges, with the task, whether it ran inside
//! reclaim, `PF_MEMALLOC`, and how many of the object's pages sat in
//! locked folios): the object was purged by direct reclaim in the task
//! that called `move_pages`, between the trace markers it writes around
//! the call, while some of its folios were locked (the locks a truncation
//! in place would have waited for); and `move_pages` returned, with a
//! per-page status the kernel's rules allow (every page moved to node 1,
//! or gone with the purge; or, if the node ran out, the count of pages
//! not moved and their status left as it was), and the pages where that
//! status says.
//!
//! The negative control runs the same recipe first with the old code's
//! wait put back (`debug_reclaim_waits_truncation_ms`: reclaim waits for
//! the truncation of each object it purged, which takes every folio
//! lock), but bounded: the reclaim that purged the object while the move
//! held folios of it locked must wait until the bound runs out
//! (`movgem_purge_wait` `timed_out=1`, `purge_waits_timed_out`), where the
//! old code waited for ever.  That reclaim is the move's own direct
//! reclaim (the hang of a3423c7) or kswapd, which the old code hung in
//! too, the other way round: kswapd waited for the migrating task's
//! folio, the task in direct reclaim waited for kswapd
//! (`throttle_direct_reclaim()`); the control takes either (with the
//! wait put back kswapd came first in three runs running once), the run
//! without it only the first, each trying up to six times.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, Counters, GpuAwake, Param};
use movgem_guest::{ensure, TestResult};

use super::common::{
    mbind, node_free_kib, node_watermark_kib, set_mempolicy, Anon, Knob, NoSwap, MPOL_BIND,
    MPOL_DEFAULT, PAGE,
};
use super::trace::tracefs_write;
use super::Test;

/// `MemFree` of a node with the per-CPU counter deltas folded in first
/// (`vm.stat_refresh`): exact enough to stop a fill a few MB above a
/// watermark.
fn node_free_exact_kib(node: u32) -> Result<u64, String> {
    fs::write("/proc/sys/vm/stat_refresh", "1").map_err(|e| format!("stat_refresh: {e}"))?;
    node_free_kib(node)
}

const OBJ: u64 = 48 << 20;
/// `vm.min_free_kbytes` and `vm.watermark_scale_factor` during the test:
/// about 4 MB minimum on node 1 and a low watermark a quarter above it.
const MIN_FREE_KBYTES: &str = "8192";
const WATERMARK_SCALE: &str = "1";
/// Free memory left on node 1 above its low watermark before the move:
/// less than the object, so the move runs the node into direct reclaim.
const LEAVE_KIB: u64 = 16 << 10;
/// Attempts at getting the purge into the move's direct reclaim: kswapd
/// came first in 4 of 9 runs of the recipe (issue 30's boots), so three
/// would all go to kswapd in about one test in eleven, six in about one
/// in 140.  An attempt takes 10-15 s on the debug kernel.
const ATTEMPTS: u32 = 6;
/// The negative control's bound on reclaim's wait for a truncation: far
/// longer than a truncation of the object takes when nothing holds its
/// folio locks (the purge worker's, well under a second on the debug
/// kernel), so a wait that runs out is one that could only have ended
/// with the move, which waits for it.
const CONTROL_WAIT_MS: &str = "3000";
/// The trace markers the child writes around `move_pages`.
const MOVE_BEGIN: &str = "movgem-deadlock: move begin";
const MOVE_END: &str = "movgem-deadlock: move end";
/// What a run must show: the object purged by the move's own direct
/// reclaim with folios locked, the path that used to hang (kswapd may
/// come first: then the run is tried again).
const ASKED: &str = "the object purged by the move's own direct reclaim with folios of it \
                     locked (the path that used to hang)";
/// What the negative control's run must show: the old wait, bounded,
/// running out in the reclaim that purged the object while the move held
/// folios of it locked.
const CONTROL_ASKED: &str = "a reclaim that purged the object with folios of it locked waiting \
                             for its truncation in vain (the old deadlock)";
/// A status `move_pages(2)` never writes: the slots it left alone.
const UNTOUCHED: i32 = i32::MIN;

/// Whether `s` is a status `move_pages` may give a page that was not
/// moved because it is no longer there: the purge truncated it.
fn gone(s: i32) -> bool {
    s == -libc::ENOENT || s == -libc::EFAULT
}

/// The move's per-page outcome by the kernel's rules (`do_pages_move()`):
/// `r` is what `move_pages` returned, `status` what it left in a status
/// array filled with [`UNTOUCHED`], `now` where each page is after it
/// (a status query).  Returns the summary, or what broke the rules.
fn judge_move(r: Result<i64, i32>, status: &[i32], now: &[i32]) -> Result<String, String> {
    let n = status.len();
    let count = |v: &[i32], f: &dyn Fn(i32) -> bool| v.iter().filter(|&&s| f(s)).count();
    let (moved, vanished, untouched) = (
        count(status, &|s| s == 1),
        count(status, &gone),
        count(status, &|s| s == UNTOUCHED),
    );
    let other = n - moved - vanished - untouched;
    let (on_0, on_1, now_gone) = (
        count(now, &|s| s == 0),
        count(now, &|s| s == 1),
        count(now, &gone),
    );
    let summary = format!(
        "move_pages {r:?}: status moved {moved}, gone {vanished}, left as they were {untouched} \
         of {n}; now on node 0 {on_0}, on node 1 {on_1}, gone {now_gone}"
    );
    ensure!(
        other == 0,
        "{summary}: {other} statuses neither node 1, -ENOENT/-EFAULT nor untouched"
    );
    ensure!(
        on_0 + on_1 + now_gone == n,
        "{summary}: the status query found pages elsewhere"
    );
    match r {
        // Every page moved or gone: each status written, none on node 0.
        Ok(0) => ensure!(
            untouched == 0 && on_0 == 0,
            "{summary}: all moved by its count, yet not by the statuses"
        ),
        // `k` pages not moved: the batch that failed keeps its statuses
        // as they were, at least `k` of them; at most `k` pages stay.
        Ok(k) => ensure!(
            k as usize <= n && untouched >= k as usize && on_0 <= k as usize,
            "{summary}: {k} not moved by its count, not by the statuses or the pages"
        ),
        // Node 1 ran out: an answer the call may give; the failed batch
        // keeps its statuses as they were.
        Err(e) if e == libc::ENOMEM => {
            ensure!(untouched > 0, "{summary}: ENOMEM, yet every status written")
        }
        Err(e) => return Err(format!("{summary}: failed with errno {e}")),
    }
    Ok(summary)
}

/// The child: everything up to the move, then the move.  Writes `s`
/// once set up, waits for a byte on `go` (the parent reads the counters
/// meanwhile), and writes `d` once `move_pages` returned; exits 0.
fn child(report: libc::c_int, go: libc::c_int) -> Result<(), String> {
    let say = |b: u8| {
        // SAFETY: writing one byte from our stack to our pipe.
        unsafe { libc::write(report, (&b as *const u8).cast(), 1) };
    };
    let dev = Device::open().map_err(|e| format!("open: {e}"))?;
    // Node 1 nearly full of anonymous memory bound to it, first: filling
    // it later would let the shrinker release the idle object meanwhile,
    // and then there is nothing to move.
    let min = node_watermark_kib(1, "min")?;
    let low = node_watermark_kib(1, "low")?;
    let keep = low + LEAVE_KIB;
    let room = node_free_exact_kib(1)?.saturating_sub(keep) << 10;
    let mut anon = Anon::new(room as usize, 0)?;
    ensure!(mbind(anon.addr, anon.len, 1), "mbind node 1");
    const STEP: usize = 1 << 20;
    for chunk in anon.words().chunks_mut(STEP / 4) {
        let free = match node_free_kib(1)? {
            f if f < keep + (16 << 10) => node_free_exact_kib(1)?,
            f => f,
        };
        if free < keep {
            break;
        }
        for w in chunk.iter_mut().step_by(PAGE as usize / 4) {
            *w = 1;
        }
    }
    ensure!(set_mempolicy(MPOL_BIND, Some(0)), "set_mempolicy node 0");
    let h = dev.create(OBJ).map_err(|e| format!("create: {e}"))?;
    dev.execbuf(&[(h, true)], uapi::OP_FILL, 0x0dea_d10c, 0, 0)
        .map_err(|e| format!("execbuf: {e}"))?;
    dev.wait(h, -1).map_err(|e| format!("wait: {e}"))?;
    ensure!(set_mempolicy(MPOL_DEFAULT, None), "set_mempolicy default");
    let addr = dev.mmap(h, 0, OBJ).map_err(|e| format!("mmap: {e}"))?;
    let addrs: Vec<*mut libc::c_void> = (0..OBJ / PAGE)
        .map(|i| (addr + i * PAGE) as *mut libc::c_void)
        .collect();
    for a in &addrs {
        // SAFETY: inside the mapping the kernel gave us.
        let _ = unsafe { std::ptr::read_volatile(*a as *const u8) };
    }
    // The recipe holds only if every page is there, on node 0.
    let mut status = vec![0i32; addrs.len()];
    env::move_pages(&addrs, None, &mut status)?;
    let on_0 = status.iter().filter(|&&s| s == 0).count();
    ensure!(
        on_0 == addrs.len(),
        "set up: {on_0} of {} pages on node 0 (node 1 free {} KiB, low watermark {} KiB)",
        addrs.len(),
        node_free_kib(1)?,
        node_watermark_kib(1, "low")?
    );
    println!(
        "  node 1: {} KiB free, watermarks min {min} low {low} KiB",
        node_free_exact_kib(1)?
    );
    // Opened now: the writes around the move allocate nothing.
    let mut marker = fs::OpenOptions::new()
        .write(true)
        .open("/sys/kernel/tracing/trace_marker")
        .map_err(|e| format!("trace_marker: {e}"))?;
    dev.madvise(h, uapi::MADV_DONTNEED)
        .map_err(|e| format!("madvise: {e}"))?;
    say(b's');
    let mut b = 0u8;
    // SAFETY: reading one byte from our pipe into our stack.
    let n = unsafe { libc::read(go, (&mut b as *mut u8).cast(), 1) };
    ensure!(n == 1, "the parent never said go");
    let there = vec![1i32; addrs.len()];
    status.fill(UNTOUCHED);
    let _ = marker.write_all(MOVE_BEGIN.as_bytes());
    let r = env::move_pages_errno(&addrs, Some(&there), &mut status);
    let _ = marker.write_all(MOVE_END.as_bytes());
    say(b'd');
    let mut now = vec![UNTOUCHED; addrs.len()];
    env::move_pages_errno(&addrs, None, &mut now)
        .map_err(|e| format!("status query: errno {e}"))?;
    let summary = judge_move(r, &status, &now)?;
    println!("  {summary}");
    drop(anon);
    Ok(())
}

/// The console scan's no-memory window: inside it, the failed
/// allocation of the move into the full node may be reported (by our
/// own task only); closed on every way out.
struct NomemWindow;

impl NomemWindow {
    fn open() -> Result<Self, String> {
        fs::write("/dev/kmsg", "movgem-nomem: window begin")
            .map_err(|e| format!("/dev/kmsg: {e}"))?;
        Ok(Self)
    }
}

impl Drop for NomemWindow {
    fn drop(&mut self) {
        let _ = fs::write("/dev/kmsg", "movgem-nomem: window end");
    }
}

fn state_of(pid: libc::pid_t) -> String {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    format!("state {state}, wchan {wchan}")
}

/// A trace event: its name, its fields, and whether it came between the
/// child's markers around `move_pages`.
type MarkedEvent = (String, BTreeMap<String, String>, bool);

/// What one run of the recipe showed.
struct Run {
    /// Counters over the move.
    during: Counters,
    /// The trace's movgem events of the run: (name, fields, written
    /// between the child's markers around `move_pages`).
    events: Vec<MarkedEvent>,
    /// The child, the task that called `move_pages`.
    pid: libc::pid_t,
}

/// A numeric field of an event (0 if missing).
fn field(f: &BTreeMap<String, String>, k: &str) -> u64 {
    f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

impl Run {
    /// The events `name` inside `move_pages` from reclaimer `by`:
    /// `direct` only from the move's own task, or `kswapd`.
    fn inside(&self, name: &str, by: &str) -> Vec<&BTreeMap<String, String>> {
        let pid = self.pid.to_string();
        self.events
            .iter()
            .filter(|(n, f, inside)| {
                *inside
                    && n == name
                    && f.get("by").map(String::as_str) == Some(by)
                    && (by != "direct" || f.get("pid") == Some(&pid))
            })
            .map(|(_, f, _)| f)
            .collect()
    }

    /// The purges of the object inside `move_pages` by `by` while some of
    /// its folios were locked; `direct`: by the move's own task, inside
    /// reclaim (`PF_MEMALLOC`), the path that used to hang.
    fn locked_purges(&self, by: &str) -> usize {
        self.inside("movgem_shrink_purge", by)
            .iter()
            .filter(|f| {
                field(f, "pages") == OBJ / PAGE
                    && field(f, "locked") > 0
                    && (by != "direct" || field(f, "memalloc") == 1)
            })
            .count()
    }

    /// The waits of `by` for a truncation that ran out inside
    /// `move_pages` (the negative control's deadlock).
    fn timed_out_waits(&self, by: &str) -> usize {
        self.inside("movgem_purge_wait", by)
            .iter()
            .filter(|f| field(f, "timed_out") == 1)
            .count()
    }

    /// Every purge event, for the log.
    fn purges(&self) -> String {
        self.events
            .iter()
            .filter(|(n, _, _)| n == "movgem_shrink_purge" || n == "movgem_purge_wait")
            .map(|(n, f, inside)| {
                let f: Vec<String> = f.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "{n} {}{}",
                    f.join(" "),
                    if *inside { " (inside move_pages)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The trace since it was last cleared: every movgem event, in order,
/// each with whether it came between the child's markers.
fn read_marked_events() -> Result<Vec<MarkedEvent>, String> {
    let p = "/sys/kernel/tracing/trace";
    let text = fs::read_to_string(p).map_err(|e| format!("{p}: {e}"))?;
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if line.ends_with(MOVE_BEGIN) {
            inside = true;
        } else if line.ends_with(MOVE_END) {
            inside = false;
        } else if let Some(at) = line.find(": movgem_") {
            let rest = &line[at + 2..];
            let (name, args) = rest.split_once(": ").unwrap_or((rest, ""));
            let fields = args
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            out.push((name.to_string(), fields, inside));
        }
    }
    Ok(out)
}

fn move_pages_of_dontneed_object_does_not_hang() -> TestResult {
    let _awake = GpuAwake::new()?;
    let _min = Knob::set("/proc/sys/vm/min_free_kbytes", MIN_FREE_KBYTES)?;
    let _gap = Knob::set("/proc/sys/vm/watermark_scale_factor", WATERMARK_SCALE)?;
    let _no_swap = NoSwap::new()?;
    tracefs_write("buffer_size_kb", "8192")?;
    let _purge = Knob::set(
        "/sys/kernel/tracing/events/movgem/movgem_shrink_purge/enable",
        "1",
    )?;
    let _wait = Knob::set(
        "/sys/kernel/tracing/events/movgem/movgem_purge_wait/enable",
        "1",
    )?;
    // The negative control: the old code's wait, bounded.
    let control = {
        let _old = Param::set("debug_reclaim_waits_truncation_ms", CONTROL_WAIT_MS)?;
        attempts("control ", CONTROL_ASKED, |run| {
            let timed_out = run.during.get("purge_waits_timed_out");
            let hung =
                |by| timed_out > 0 && run.locked_purges(by) > 0 && run.timed_out_waits(by) > 0;
            if hung("direct") {
                Some(format!(
                    "the move's own direct reclaim purged the object with folios locked and \
                     waited {CONTROL_WAIT_MS} ms for its truncation in vain: the hang of \
                     a3423c7, bounded"
                ))
            } else if hung("kswapd") {
                Some(format!(
                    "kswapd purged the object while the move held folios of it locked and \
                     waited {CONTROL_WAIT_MS} ms for its truncation in vain: the hang the other \
                     way round, bounded"
                ))
            } else {
                None
            }
        })
    };
    let seen = control.map_err(|e| format!("control: {e}: this test could not fail"))?;
    println!("  control, debug_reclaim_waits_truncation_ms={CONTROL_WAIT_MS}: {seen}");
    let seen = attempts("", ASKED, |run| {
        (run.locked_purges("direct") > 0 && run.during.get("purge_waits") == 0).then(|| {
            format!(
                "the move's own direct reclaim purged the object with folios locked and \
                 move_pages returned ({} such purges)",
                run.locked_purges("direct")
            )
        })
    })?;
    println!("  {seen}");
    Ok(())
}

/// Runs the recipe up to [`ATTEMPTS`] times until `wanted` finds in a
/// run what `asked` describes (and says what it found); fails if no run
/// showed it, or on any run that failed.
fn attempts(
    what: &str,
    asked: &str,
    wanted: impl Fn(&Run) -> Option<String>,
) -> Result<String, String> {
    for attempt in 1..=ATTEMPTS {
        let run = run_recipe()?;
        if let Some(seen) = wanted(&run) {
            return Ok(seen);
        }
        println!(
            "  {what}attempt {attempt}: not {asked}; again.  Events: {}; during the move: {}",
            run.purges(),
            run.during
        );
    }
    Err(format!("in {ATTEMPTS} attempts, never {asked}"))
}

/// One run of the recipe, its child's verdict on `move_pages` included.
fn run_recipe() -> Result<Run, String> {
    tracefs_write("trace", "")?;
    let mut fds = [0; 2];
    let mut go = [0; 2];
    // SAFETY: `fds` and `go` have room for two descriptors each.
    ensure!(
        unsafe { libc::pipe(fds.as_mut_ptr()) == 0 && libc::pipe(go.as_mut_ptr()) == 0 },
        "pipe"
    );
    let before = Counters::read()?;
    // SAFETY: the child runs `child` and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: our own descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(go[1]);
        }
        let code = match child(fds[1], go[0]) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("  deadlock child: {e}");
                2
            }
        };
        // SAFETY: leave at once, without our atexit handlers.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: our own descriptors.
    unsafe {
        libc::close(fds[1]);
        libc::close(go[0]);
    }
    // SAFETY: the read end is ours, and owned by `pipe` alone from here.
    let mut pipe = unsafe { fs::File::from_raw_fd(fds[0]) };
    // SAFETY: likewise the write end of `go`.
    let mut go = unsafe { fs::File::from_raw_fd(go[1]) };
    let mut set_up = Counters::read()?;
    let mut stage = 0u8;
    let mut moved_at = None;
    let mut window = None;
    let mut during = None;
    // Setting up takes long under TCG; the move itself gets two minutes.
    let start = Instant::now();
    loop {
        let mut b = [0u8; 1];
        let mut poll = libc::pollfd {
            fd: fds[0],
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd of ours.
        let ready = unsafe { libc::poll(&mut poll, 1, 1000) };
        if ready > 0 {
            match pipe.read(&mut b) {
                Ok(1) => {
                    stage = b[0];
                    if stage == b's' {
                        set_up = Counters::read()?;
                        moved_at = Some(Instant::now());
                        window = Some(NomemWindow::open()?);
                        go.write_all(b"g").map_err(|e| format!("go: {e}"))?;
                    }
                }
                _ => break,
            }
            if stage == b'd' {
                during = Some(Counters::read()?.since(&set_up));
                // The child checks the move's statuses, then exits.
                continue;
            }
        }
        let waited = moved_at.map_or(start.elapsed(), |t| t.elapsed());
        let limit = if moved_at.is_some() { 120 } else { 600 };
        if waited > Duration::from_secs(limit) {
            let what = state_of(pid);
            let d = Counters::read()?.since(&set_up);
            return Err(format!(
                "{} did not return after {limit} s ({what}): {d}",
                if during.is_some() {
                    "the child's check after move_pages"
                } else if moved_at.is_some() {
                    "move_pages of the DONTNEED object"
                } else {
                    "the setup"
                }
            ));
        }
    }
    drop(window);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 && stage == b'd',
        "the child failed (status {status:#x}, stage {:?})",
        stage as char
    );
    let d = during.ok_or("the child never reported the move done")?;
    let all = Counters::read()?.since(&before);
    let events = read_marked_events()?;
    println!(
        "  move_pages of a DONTNEED object into a full node returned; during it: {d}; \
         in all: {all}"
    );
    // The recipe must have reached the shrinker with the object's folios
    // locked, or the test proves nothing.
    ensure!(
        d.get("shrink_scans") > 0,
        "the move never reached our shrinker: {d}"
    );
    ensure!(
        all.get("purged_objects") >= 1,
        "the DONTNEED object was not purged: {all}"
    );
    // Each purge and each wait traced once, as counted.
    let traced = |name: &str| events.iter().filter(|(n, _, _)| n == name).count() as u64;
    ensure!(
        traced("movgem_shrink_purge") == all.get("shrink_purged_objects")
            && traced("movgem_purge_wait") == all.get("purge_waits"),
        "trace and counters disagree: {} purges and {} waits traced; {all}",
        traced("movgem_shrink_purge"),
        traced("movgem_purge_wait")
    );
    Ok(Run {
        during: d,
        events,
        pid,
    })
}

pub(super) const TESTS: &[Test] = &[(
    "move_pages_of_dontneed_object_does_not_hang",
    move_pages_of_dontneed_object_does_not_hang,
)];
