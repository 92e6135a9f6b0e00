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
//! in CI), and the recipe runs up to three times until a purge comes
//! from the move's own direct reclaim (`shrink_purged_objects` beyond
//! `shrink_purged_by_kswapd`): the test passes only if that path ran and
//! returned, and every attempt returned.  When kswapd came first, it
//! used to hang too, the other way round: kswapd waited for the
//! migrating task's folio, the task in direct reclaim waited for kswapd
//! (`throttle_direct_reclaim()`).

use std::fs;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, Counters, GpuAwake};
use movgem_guest::{ensure, TestResult};

use super::common::{
    mbind, node_free_kib, node_watermark_kib, set_mempolicy, Anon, Knob, NoSwap, MPOL_BIND,
    MPOL_DEFAULT, PAGE,
};
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
/// Attempts at getting the purge into the move's direct reclaim.
const ATTEMPTS: u32 = 3;

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
    dev.madvise(h, uapi::MADV_DONTNEED)
        .map_err(|e| format!("madvise: {e}"))?;
    say(b's');
    let mut b = 0u8;
    // SAFETY: reading one byte from our pipe into our stack.
    let n = unsafe { libc::read(go, (&mut b as *mut u8).cast(), 1) };
    ensure!(n == 1, "the parent never said go");
    let there = vec![1i32; addrs.len()];
    let r = env::move_pages(&addrs, Some(&there), &mut status);
    say(b'd');
    let mut seen = std::collections::BTreeMap::new();
    for s in &status {
        *seen.entry(*s).or_insert(0u32) += 1;
    }
    // Informational: how far the move got (status: node or -errno).
    println!("  move_pages: {r:?}, page status counts {seen:?}");
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

fn move_pages_of_dontneed_object_does_not_hang() -> TestResult {
    let _awake = GpuAwake::new()?;
    let _min = Knob::set("/proc/sys/vm/min_free_kbytes", MIN_FREE_KBYTES)?;
    let _gap = Knob::set("/proc/sys/vm/watermark_scale_factor", WATERMARK_SCALE)?;
    let _no_swap = NoSwap::new()?;
    let mut out = Err("no attempt".to_string());
    for attempt in 1..=ATTEMPTS {
        out = match run_recipe() {
            Ok(true) => Ok(()),
            Ok(false) => {
                println!("  attempt {attempt}: kswapd purged the object first; again");
                Err(format!(
                    "in {ATTEMPTS} attempts the object was never purged by the move's own \
                     direct reclaim: the path that used to hang did not run"
                ))
            }
            Err(e) => Err(e),
        };
        if !matches!(&out, Err(e) if e.starts_with("in ")) {
            break;
        }
    }
    out
}

/// One run of the recipe; whether the object was purged by the move's
/// own direct reclaim (else kswapd was first).
fn run_recipe() -> Result<bool, String> {
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
                break;
            }
        }
        let waited = moved_at.map_or(start.elapsed(), |t| t.elapsed());
        let limit = if moved_at.is_some() { 120 } else { 600 };
        if waited > Duration::from_secs(limit) {
            let what = state_of(pid);
            let d = Counters::read()?.since(&set_up);
            return Err(format!(
                "{} did not return after {limit} s ({what}): {d}",
                if moved_at.is_some() {
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
    let d = Counters::read()?.since(&set_up);
    let all = Counters::read()?.since(&before);
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
    // From the move's own direct reclaim, not from kswapd: the path that
    // first hung (kswapd's, which hung once kswapd truncated at once,
    // returned too when it came first).
    Ok(d.get("shrink_purged_objects") > d.get("shrink_purged_by_kswapd"))
}

pub(super) const TESTS: &[Test] = &[(
    "move_pages_of_dontneed_object_does_not_hang",
    move_pages_of_dontneed_object_does_not_hang,
)];
