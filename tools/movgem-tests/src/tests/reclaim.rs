// SPDX-License-Identifier: GPL-2.0

//! Reclaim: the shrinker purging DONTNEED objects and releasing idle
//! ones, making room for a hog; the driver's drop_caches bits; swap
//! writeback and swap-in with the data checked byte for byte;
//! /proc/meminfo against debugfs; and the OOM notifier.

use std::fs;

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, Control, Counters, GpuAwake, Param};
use movgem_guest::{ensure, TestResult};

use super::common::{
    check_fill_sized, drop_objects, expect_err, filled_object, mbind, move_to, node_free_kib,
    node_watermark_kib, ok, pattern, where_are, write_drop_caches, Anon, NoSwap, PAGE,
};
use super::inplace::Mapped;
use super::users::Bound;
use super::Test;

/// A `/proc/vmstat` value.
fn vmstat(key: &str) -> Result<u64, String> {
    let s = fs::read_to_string("/proc/vmstat").map_err(|e| e.to_string())?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .ok_or(format!("no {key} in /proc/vmstat"))
}

/// Makes sure the guest has swap: the runner sets up zram; a standalone
/// run sets it up here.
fn ensure_swap() -> TestResult {
    if env::meminfo_kib("SwapTotal")? > 0 {
        return Ok(());
    }
    let size = env::meminfo_kib("MemTotal")? << 10;
    fs::write("/sys/block/zram0/disksize", size.to_string())
        .map_err(|e| format!("zram0 disksize: {e}"))?;
    for cmd in [["mkswap", "/dev/zram0"], ["swapon", "/dev/zram0"]] {
        let st = std::process::Command::new(cmd[0])
            .arg(cmd[1])
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("{}: {e}", cmd[0]))?;
        ensure!(st.success(), "{} failed: {st}", cmd[0]);
    }
    ensure!(env::meminfo_kib("SwapTotal")? > 0, "swapon gave no swap");
    Ok(())
}

/// Runs `body` in a child process and returns its wait status: if memory
/// cannot be found, the OOM killer takes the child, not the test.
fn in_child(body: impl FnOnce() -> bool) -> i32 {
    // SAFETY: the child only runs `body` and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // Be the OOM killer's first choice.
        let _ = fs::write("/proc/self/oom_score_adj", "1000");
        let code = i32::from(!body());
        // SAFETY: leave the child at once, without running our atexit.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

fn exited_ok(status: i32) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// Touches `len` bytes of fresh anonymous memory in a child and exits.
fn hog(len: u64, locked: bool) -> i32 {
    hog_on(len, locked, None)
}

/// [`hog`], its memory bound to `node` if given (the memory only: the
/// kernel's allocations for it, page tables among them, may come from
/// anywhere, as they would for a task without a policy).
fn hog_on(len: u64, locked: bool, node: Option<u32>) -> i32 {
    in_child(|| {
        // The name the console scan expects an OOM report of ours under
        // (`OomWindow`).
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of ours.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"movgem-hog".as_ptr()) };
        if let Some(node) = node {
            let Ok(mut m) = Anon::new(len as usize, 0) else {
                return false;
            };
            if !mbind(m.addr, m.len, node) {
                return false;
            }
            // SAFETY: our own mapping; mlock() faults it all in.
            if locked && unsafe { libc::mlock(m.addr, m.len) } != 0 {
                return false;
            }
            for w in m.words().iter_mut().step_by(PAGE as usize / 4) {
                *w = 1;
            }
            return true;
        }
        let flags = if locked {
            libc::MAP_LOCKED | libc::MAP_POPULATE
        } else {
            0
        };
        let Ok(mut m) = Anon::new(len as usize, flags) else {
            return false;
        };
        for w in m.words().iter_mut().step_by(PAGE as usize / 4) {
            *w = 1;
        }
        true
    })
}

fn shrinker_purges_then_releases() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let size = 8 << 20;
    let junk = filled_object(&dev, size, 1)?;
    ensure!(
        ok(dev.madvise(junk, uapi::MADV_DONTNEED), "madvise")?,
        "pages lost early"
    );
    let keep = filled_object(&dev, size, 0x5eed)?;
    let scanout = filled_object(&dev, 1 << 20, 0x5ca9)?;
    ok(dev.pin(scanout), "pin")?;
    let before = Counters::read()?;
    env::drop_caches()?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("shrink_purged_objects") == 1,
        "DONTNEED object not purged: {d}"
    );
    ensure!(
        d.get("shrink_released_objects") == 1,
        "idle WILLNEED object not released: {d}"
    );
    ensure!(
        d.get("shrink_freed_pages") == 2 * size / PAGE,
        "freed {}: {d}",
        d.get("shrink_freed_pages")
    );
    ensure!(
        !ok(dev.madvise(junk, uapi::MADV_WILLNEED), "madvise")?,
        "purged object came back"
    );
    let mut buf = [0u8; 16];
    expect_err(dev.pread(junk, 0, &mut buf), libc::EFAULT, "pread purged")?;
    // The released object's data is still in shmem, and the pinned one
    // was never touched.
    check_fill_sized(&dev, keep, 0x5eed, size)?;
    check_fill_sized(&dev, scanout, 0x5ca9, 1 << 20)?;
    ok(dev.unpin(scanout), "unpin")?;
    Ok(())
}

fn shrinker_makes_room_for_a_hog() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let avail = env::meminfo_kib("MemAvailable")? << 10;
    let obj = 16 << 20;
    let count = (avail / 2 / obj) as usize;
    let mut handles = Vec::new();
    for i in 0..count {
        let h = filled_object(&dev, obj, i as u32)?;
        ensure!(
            ok(dev.madvise(h, uapi::MADV_DONTNEED), "madvise")?,
            "pages lost early"
        );
        handles.push(h);
    }
    // Locked memory cannot go to swap, and DONTNEED objects are
    // unevictable: only the driver giving the objects back makes room.
    let hog_len = avail * 3 / 4;
    let _restore = ReclaimParams;
    env::set_param("oom_notifier", "0")?;
    hog_needs_the_driver(hog_len)?;
    env::set_param("shrinker", "1")?;
    let before = Counters::read()?;
    let st = hog(hog_len, true);
    let d = Counters::read()?.since(&before);
    ensure!(
        exited_ok(st),
        "the {} MiB locked hog did not complete (status {st}): {d}",
        hog_len >> 20
    );
    ensure!(
        d.get("shrink_purged_objects") > 0,
        "the shrinker purged nothing: {d}"
    );
    println!(
        "  {} MiB locked hog ran next to {} MiB of DONTNEED objects; shrinker purged {} of {count}",
        hog_len >> 20,
        (count as u64 * obj) >> 20,
        d.get("shrink_purged_objects")
    );
    Ok(())
}

/// The negative control of the hog tests: with the shrinker and the OOM
/// notifier off, a locked hog of `len` bytes next to the DONTNEED
/// objects must not survive (the OOM killer takes it), or the tests
/// that follow would show nothing about the driver.
fn hog_needs_the_driver(len: u64) -> TestResult {
    env::set_param("shrinker", "0")?;
    env::set_param("oom_notifier", "0")?;
    let before = Counters::read()?;
    let st = {
        let _window = OomWindow::open()?;
        hog(len, true)
    };
    let d = Counters::read()?.since(&before);
    println!(
        "  without the shrinker and the OOM notifier: {} MiB locked hog {}",
        len >> 20,
        if exited_ok(st) {
            "completed".to_string()
        } else {
            format!("ended with status {st}")
        }
    );
    ensure!(
        !exited_ok(st),
        "the hog completed without the driver giving memory back: the test cannot fail: {d}"
    );
    ensure!(
        d.get("shrink_freed_pages") == 0 && d.get("oom_freed_pages") == 0,
        "the driver gave memory back while switched off: {d}"
    );
    Ok(())
}

/// The console scan's OOM window for a hog of ours: inside it an OOM
/// report invoked by and killing `movgem-hog` is expected; closed on
/// every way out.
struct OomWindow;

impl OomWindow {
    fn open() -> Result<Self, String> {
        fs::write("/dev/kmsg", "movgem-oom: window begin task=movgem-hog")
            .map_err(|e| format!("/dev/kmsg: {e}"))?;
        Ok(Self)
    }
}

impl Drop for OomWindow {
    fn drop(&mut self) {
        let _ = fs::write("/dev/kmsg", "movgem-oom: window end");
    }
}

fn drop_caches_bits() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let e = write_drop_caches("0x40").err();
    ensure!(
        e.as_ref().and_then(|e| e.raw_os_error()) == Some(libc::EINVAL),
        "unknown bit accepted: {e:?}"
    );
    let e = write_drop_caches("lots").err();
    ensure!(
        e.as_ref().and_then(|e| e.raw_os_error()) == Some(libc::EINVAL),
        "garbage accepted: {e:?}"
    );
    let size = 4 << 20;
    let h = ok(dev.create(size), "create")?;
    ok(dev.pwrite(h, 0, &pattern(3, size as usize)), "pwrite")?;
    ok(dev.set_domain(h, uapi::DOMAIN_GTT, 0), "set_domain")?;
    ensure!(
        ok(dev.madvise(h, uapi::MADV_DONTNEED), "madvise")?,
        "pages gone before any shrink"
    );
    let before = Counters::read()?;
    drop_objects(uapi::DROP_UNBOUND | uapi::DROP_BOUND)?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("purged_objects") == 0 && d.get("drop_caches_calls") == 1,
        "purged without DROP_PURGE: {d}"
    );
    drop_objects(uapi::DROP_PURGE)?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("shrink_purged_objects") == 1 && d.get("shrink_freed_pages") == size / PAGE,
        "DROP_PURGE did not purge: {d}"
    );
    ensure!(
        !ok(dev.madvise(h, uapi::MADV_WILLNEED), "madvise")?,
        "purged object reports its pages"
    );
    let mut buf = [0u8; 8];
    expect_err(dev.pread(h, 0, &mut buf), libc::EFAULT, "pread purged")?;
    ok(dev.close(h), "close")
}

fn meminfo_agrees_on_purge() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let (count, size) = (8u64, 4u64 << 20);
    let mut handles = Vec::new();
    for i in 0..count {
        let h = ok(dev.create(size), "create")?;
        ok(
            dev.pwrite(h, 0, &pattern(i as u32, size as usize)),
            "pwrite",
        )?;
        ok(dev.set_domain(h, uapi::DOMAIN_GTT, 0), "set_domain")?;
        ok(dev.madvise(h, uapi::MADV_DONTNEED), "madvise")?;
        handles.push(h);
    }
    let shmem_before = env::meminfo_kib("Shmem")?;
    let before = Counters::read()?;
    drop_objects(uapi::DROP_PURGE)?;
    let d = Counters::read()?.since(&before);
    let shmem_after = env::meminfo_kib("Shmem")?;
    let freed_kib = d.get("shrink_freed_pages") * PAGE / 1024;
    let dropped_kib = shmem_before.saturating_sub(shmem_after);
    println!("  debugfs: {freed_kib} KiB freed; /proc/meminfo Shmem: {dropped_kib} KiB less");
    ensure!(
        freed_kib == count * size / 1024,
        "debugfs says {freed_kib} KiB: {d}"
    );
    ensure!(
        dropped_kib * 10 >= freed_kib * 9 && dropped_kib * 10 <= freed_kib * 11,
        "Shmem fell by {dropped_kib} KiB, debugfs says {freed_kib} KiB"
    );
    Ok(())
}

fn writeback_swapin_and_migration_keep_data() -> TestResult {
    ensure_swap()?;
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let size = 16u64 << 20;
    let npages = size / PAGE;
    let data = pattern(0x5eed_f00d, size as usize);
    let h = ok(dev.create(size), "create")?;
    ok(dev.pwrite(h, 0, &data), "pwrite")?;
    // Bound and idle: the shrinker's last pass has to unbind it.
    ok(dev.execbuf(&[(h, false)], uapi::OP_NOP, 0, 0, 0), "execbuf")?;
    ok(dev.wait(h, -1), "wait")?;

    let shmem_before = env::meminfo_kib("Shmem")?;
    let swap_before = env::meminfo_kib("SwapFree")?;
    let before = Counters::read()?;
    drop_objects(uapi::DROP_BOUND | uapi::DROP_UNBOUND | uapi::DROP_WRITEBACK)?;
    let d = Counters::read()?.since(&before);
    let shmem_after = env::meminfo_kib("Shmem")?;
    let swap_after = env::meminfo_kib("SwapFree")?;
    println!(
        "  writeback: debugfs {} pages; Shmem -{} KiB; SwapFree -{} KiB",
        d.get("writeback_pages"),
        shmem_before.saturating_sub(shmem_after),
        swap_before.saturating_sub(swap_after)
    );
    ensure!(
        d.get("unbinds") == 1 && d.get("writeback_pages") == npages,
        "object not unbound and written back: {d}"
    );
    let kib = npages * PAGE / 1024;
    ensure!(
        shmem_before.saturating_sub(shmem_after) * 10 >= kib * 9,
        "pages stayed in shmem's page cache: Shmem {shmem_before} -> {shmem_after} KiB"
    );
    ensure!(
        swap_before.saturating_sub(swap_after) * 10 >= kib * 9,
        "swap not used: SwapFree {swap_before} -> {swap_after} KiB"
    );

    // Push the swap cache out, so that reading means swapping in: the
    // written-back pages are clean and at the tail of the LRU, so a hog
    // a little larger than what is available takes them first.
    let avail = env::meminfo_kib("MemAvailable")? << 10;
    let st = hog(avail + (64 << 20), false);
    ensure!(exited_ok(st), "hog failed: status {st}");
    // The object's own pages, through a mapping that is never touched:
    // mincore(2) on a shmem mapping sees the page cache, and a page that
    // is only in swap is not in it.
    let view = ok(dev.mmap(h, 0, size), "mmap")?;
    let out_before = npages - resident_pages(view, npages)?;
    let pswpin = vmstat("pswpin")?;
    let mut got = vec![0u8; size as usize];
    ok(dev.pread(h, 0, &mut got), "pread")?;
    let swapped_in = vmstat("pswpin")? - pswpin;
    let out_after = npages - resident_pages(view, npages)?;
    // SAFETY: our own mapping of `size` bytes, never handed out.
    unsafe { libc::munmap(view as *mut libc::c_void, size as usize) };
    println!(
        "  read back after a hog: {out_before} of the object's {npages} pages \
         were out of memory, {out_after} after the read; {swapped_in} pages swapped in"
    );
    ensure!(
        out_before * 10 >= npages * 9,
        "the hog left {} of the object's {npages} pages in memory: the read \
         would not come from swap",
        npages - out_before
    );
    ensure!(out_after == 0, "{out_after} pages still out after the read");
    ensure!(
        swapped_in >= out_before,
        "{out_before} of the object's pages were out, {swapped_in} pages swapped in"
    );
    let bad = got
        .chunks(4)
        .zip(data.chunks(4))
        .filter(|(a, b)| a != b)
        .count();
    ensure!(bad == 0, "{bad} dwords differ after swap-in");

    // Bind again, then have migration release and move the pages.
    ok(dev.execbuf(&[(h, false)], uapi::OP_NOP, 0, 0, 0), "execbuf")?;
    ok(dev.wait(h, -1), "wait")?;
    let addr = ok(dev.mmap(h, 0, size), "mmap")?;
    let addrs: Vec<*mut libc::c_void> = (0..npages)
        .map(|i| (addr + i * PAGE) as *mut libc::c_void)
        .collect();
    let out = (|| {
        for a in &addrs {
            // SAFETY: inside the mapping the kernel gave us.
            let _ = unsafe { std::ptr::read_volatile(*a as *const u8) };
        }
        let there: Vec<i32> = where_are(&addrs)?.iter().map(|&n| 1 - n).collect();
        let moved = move_to(&addrs, &there)?;
        ensure!(
            moved as u64 == npages,
            "only {moved} of {npages} pages migrated"
        );
        Ok(())
    })();
    // SAFETY: unmapping what the kernel mapped for us.
    unsafe { libc::munmap(addr as *mut libc::c_void, size as usize) };
    out?;
    ok(dev.pread(h, 0, &mut got), "pread")?;
    let bad = got
        .chunks(4)
        .zip(data.chunks(4))
        .filter(|(a, b)| a != b)
        .count();
    ensure!(bad == 0, "{bad} dwords differ after migration");
    ok(dev.close(h), "close")
}

/// Restores the reclaim parameters on drop.
struct ReclaimParams;

impl Drop for ReclaimParams {
    fn drop(&mut self) {
        let _ = env::set_param("shrinker", "1");
        let _ = env::set_param("oom_notifier", "-1");
    }
}

/// The OOM notifier, called by the kernel for an allocation that found
/// no memory: a locked hog bound to node 1 asks for the node's free
/// memory and more, as much again as 5/8 of the `DONTNEED` objects there
/// hold, with swap and the shrinker off, so that only the notifier can
/// give it the objects' pages (a small OOM: the node's, constrained by
/// the hog's memory policy).  The hog must complete, and the notifier
/// must have run and reported pages.
pub(super) fn oom_notifier_feeds_a_node_hog(dev: &Device, value: u32) -> TestResult {
    const OBJ: u64 = 16 << 20;
    const OBJS: u64 = 4;
    let _no_swap = NoSwap::new()?;
    let mut handles = Vec::new();
    let made = (|| {
        let _bound = Bound::to(1)?;
        for i in 0..OBJS {
            let h = filled_object(dev, OBJ, value + i as u32)?;
            handles.push(h);
            ensure!(
                ok(dev.madvise(h, uapi::MADV_DONTNEED), "madvise")?,
                "pages lost early"
            );
        }
        Ok(())
    })();
    let out = made.and_then(|()| {
        let _restore = ReclaimParams;
        env::set_param("shrinker", "0")?;
        env::set_param("oom_notifier", "1")?;
        let room = node_free_kib(1)?.saturating_sub(node_watermark_kib(1, "low")?) << 10;
        let len = room + OBJS * OBJ * 5 / 8;
        let before = Counters::read()?;
        let st = {
            let _window = OomWindow::open()?;
            hog_on(len, true, Some(1))
        };
        let d = Counters::read()?.since(&before);
        ensure!(
            exited_ok(st),
            "the {} MiB locked hog on node 1 did not complete (status {st}): {d}",
            len >> 20
        );
        ensure!(
            d.get("oom_notifications") > 0 && d.get("oom_freed_pages") > 0,
            "the {} MiB hog on node 1 completed without the OOM notifier: {d}",
            len >> 20
        );
        Ok(())
    });
    for h in handles {
        let _ = dev.close(h);
    }
    out
}

fn oom_notifier_saves_a_hog() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let avail = env::meminfo_kib("MemAvailable")? << 10;
    let obj = 16u64 << 20;
    let count = avail / 2 / obj;
    let mut handles = Vec::new();
    for i in 0..count {
        let h = filled_object(&dev, obj, i as u32)?;
        ok(dev.madvise(h, uapi::MADV_DONTNEED), "madvise")?;
        handles.push(h);
    }
    let _restore = ReclaimParams;
    // Locked memory cannot go to swap: this hog needs the objects' pages.
    let hog_len = avail * 3 / 4;
    hog_needs_the_driver(hog_len)?;
    // Only the OOM notifier may give the objects back.
    env::set_param("shrinker", "0")?;
    env::set_param("oom_notifier", "1")?;
    let before = Counters::read()?;
    let st = hog(hog_len, true);
    let d = Counters::read()?.since(&before);
    println!(
        "  {} MiB locked hog next to {} MiB of DONTNEED objects: OOM notifier ran {} times, freed {} pages",
        hog_len >> 20,
        (count * obj) >> 20,
        d.get("oom_notifications"),
        d.get("oom_freed_pages")
    );
    ensure!(exited_ok(st), "the hog did not survive (status {st}): {d}");
    ensure!(
        d.get("oom_notifications") > 0 && d.get("oom_freed_pages") > 0,
        "the OOM notifier freed nothing: {d}"
    );
    // Its reports are the sum of their parts: purged pages whose
    // truncation it deferred (here: the DONTNEED objects), released
    // pages swap has room for, busy pages inside the retire window.
    let parts = d.get("oom_deferred_pages")
        + d.get("oom_reclaimable_pages")
        + d.get("oom_retire_pending_pages");
    ensure!(
        parts == d.get("oom_freed_pages") && d.get("oom_deferred_pages") > 0,
        "the OOM notifier's reports do not add up, or purged nothing: {d}"
    );
    ensure!(
        d.get("shrink_scans") == 0,
        "the shrinker ran while disabled: {d}"
    );
    Ok(())
}

/// Waits at most `secs` for `/proc/meminfo` `Shmem` to fall to `kib`;
/// returns whether it did.
fn shmem_falls_to(kib: u64, secs: u64) -> Result<bool, String> {
    let start = std::time::Instant::now();
    loop {
        if env::meminfo_kib("Shmem")? <= kib {
            return Ok(true);
        }
        if start.elapsed().as_secs() >= secs {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A purge from reclaim, which may run under a folio lock of ours, only
/// drops the object's references and leaves the truncation to the purge
/// worker (`purges_deferred`); the pages still go, once it ran.  Reclaim
/// here is the kernel's drop_caches (`/proc/sys/vm/drop_caches` 2), which
/// calls every shrinker.  The control, in the same test: debugfs
/// drop_caches holds no folio lock and truncates before it returns,
/// deferring nothing.
fn reclaim_defers_truncation() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let size = 16u64 << 20;
    let kib = size / 1024;
    let dontneed = |value: u32| -> Result<u32, String> {
        let h = filled_object(&dev, size, value)?;
        ensure!(
            ok(dev.madvise(h, uapi::MADV_DONTNEED), "madvise")?,
            "pages lost early"
        );
        Ok(h)
    };
    // The control: debugfs drop_caches, truncated at once.
    let h = dontneed(0xdef0_0001)?;
    let shmem = env::meminfo_kib("Shmem")?;
    let before = Counters::read()?;
    drop_objects(uapi::DROP_PURGE)?;
    let d = Counters::read()?.since(&before);
    let at_once = shmem.saturating_sub(env::meminfo_kib("Shmem")?);
    ok(dev.close(h), "close")?;
    ensure!(
        d.get("shrink_purged_objects") == 1 && d.get("purges_deferred") == 0,
        "debugfs drop_caches: {d}"
    );
    ensure!(
        at_once * 10 >= kib * 9,
        "debugfs drop_caches returned with Shmem {at_once} KiB lower, the object is {kib} KiB"
    );
    // Reclaim: the truncation goes to the worker.
    let h = dontneed(0xdef0_0002)?;
    let shmem = env::meminfo_kib("Shmem")?;
    let before = Counters::read()?;
    env::drop_caches()?;
    let d = Counters::read()?.since(&before);
    let gone = shmem_falls_to(shmem.saturating_sub(kib * 9 / 10), 10)?;
    ok(dev.close(h), "close")?;
    ensure!(
        d.get("shrink_purged_objects") == 1 && d.get("purges_deferred") == 1,
        "the purge from reclaim was not deferred to the worker: {d}"
    );
    ensure!(
        gone,
        "the deferred truncation did not free the object's {kib} KiB in 10 s: {d}"
    );
    println!(
        "  debugfs drop_caches truncated at once ({at_once} KiB); reclaim's purge deferred, \
         its {kib} KiB freed by the worker"
    );
    Ok(())
}

/// The frames of `m`'s pages that are on an unevictable LRU list
/// (`KPF_UNEVICTABLE` in /proc/kpageflags), once every CPU's LRU cache
/// is drained (`move_pages(2)` of a page to the node it is on drains
/// them: pages wait there before they reach a list).
fn unevictable_pages(m: &Mapped) -> Result<usize, String> {
    use std::os::unix::fs::FileExt;
    const KPF_UNEVICTABLE: u64 = 1 << 18;
    let here = where_are(&m.addrs[..1])?;
    move_to(&m.addrs[..1], &here)?;
    let frames = env::frames(&m.addrs)?;
    ensure!(
        frames.iter().all(|&f| f != 0),
        "pagemap shows no frames (not root?)"
    );
    let f = fs::File::open("/proc/kpageflags").map_err(|e| format!("kpageflags: {e}"))?;
    let mut n = 0;
    for pfn in frames {
        let mut flags = [0u8; 8];
        f.read_exact_at(&mut flags, pfn * 8)
            .map_err(|e| format!("kpageflags: {e}"))?;
        if u64::from_le_bytes(flags) & KPF_UNEVICTABLE != 0 {
            n += 1;
        }
    }
    Ok(n)
}

/// With the shrinker off nothing can free an object's pages until the
/// object lets them go, so it marks its mapping unevictable before it
/// fetches them (as i915 marks every pinned mapping), and reclaim never
/// scans them: every page on the unevictable list.  Releasing them
/// (debugfs drop_caches) makes them evictable again.  The control, in
/// the same test: the same object made with the shrinker on, whose
/// pages stay evictable.
fn pages_unevictable_while_shrinker_off() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let on = Mapped::new(&dev, 0x0e0e_0001)?;
    let with = unevictable_pages(&on)?;
    ensure!(
        with == 0,
        "{with} of {} pages unevictable with the shrinker on",
        on.addrs.len()
    );
    let (without, unevictable_kib, released) = {
        let _off = Param::set("shrinker", "0")?;
        let kib = env::meminfo_kib("Unevictable")?;
        let off = Mapped::new(&dev, 0x0e0e_0002)?;
        let without = unevictable_pages(&off)?;
        let kib = env::meminfo_kib("Unevictable")?.saturating_sub(kib);
        drop_objects(uapi::DROP_UNBOUND | uapi::DROP_BOUND)?;
        (without, kib, unevictable_pages(&off)?)
    };
    let n = on.addrs.len();
    ensure!(
        without == n,
        "{without} of {n} pages unevictable, fetched with the shrinker off"
    );
    ensure!(
        released == 0,
        "{released} of {n} pages still unevictable once the object released them"
    );
    println!(
        "  shrinker on: 0 of {n} pages unevictable; off: {without} (meminfo Unevictable \
         +{unevictable_kib} KiB), 0 once released"
    );
    Ok(())
}

pub(super) const TESTS: &[Test] = &[
    (
        "shrinker_purges_then_releases",
        shrinker_purges_then_releases,
    ),
    (
        "shrinker_makes_room_for_a_hog",
        shrinker_makes_room_for_a_hog,
    ),
    ("drop_caches_bits", drop_caches_bits),
    (
        "meminfo_agrees_with_debugfs_on_purge",
        meminfo_agrees_on_purge,
    ),
    (
        "writeback_swapin_and_migration_keep_data",
        writeback_swapin_and_migration_keep_data,
    ),
    ("oom_notifier_saves_a_hog", oom_notifier_saves_a_hog),
    (
        "writeback_stops_at_its_budget",
        writeback_stops_at_its_budget,
    ),
    ("reclaim_defers_truncation", reclaim_defers_truncation),
    (
        "pages_unevictable_while_shrinker_off",
        pages_unevictable_while_shrinker_off,
    ),
];

/// Swap writeback of a released object's file (`movgem_shmem_writeback`,
/// through debugfs `writeback <pages>`) submits at most the pages it is
/// asked for, and a second call the rest, none twice; the data survives.
fn writeback_stops_at_its_budget() -> TestResult {
    const PAGES: u64 = 1024;
    const BUDGET: u64 = 100;
    ensure_swap()?;
    let ctl = Control::open()?;
    // Written through the page cache, dirty, mapped by no one, and not
    // held by the object: what a release leaves.
    ctl.cmd(&format!("create {PAGES} 11"))?;
    let out = (|| {
        let before = Counters::read()?;
        ctl.cmd(&format!("writeback {BUDGET}"))?;
        let first = Counters::read()?.since(&before).get("writeback_pages");
        let before = Counters::read()?;
        ctl.cmd(&format!("writeback {}", PAGES * 4))?;
        let rest = Counters::read()?.since(&before).get("writeback_pages");
        println!("  writeback with a budget of {BUDGET} pages: {first}, then {rest}");
        ensure!(
            first == BUDGET,
            "asked for {BUDGET} pages, {first} were written back"
        );
        ensure!(
            rest == PAGES - BUDGET,
            "the second call wrote back {rest} pages, wanted the other {}",
            PAGES - BUDGET
        );
        ctl.cmd("verify")
    })();
    let _ = ctl.cmd("destroy");
    out
}

/// How many of the `npages` pages mapped at `addr` are in memory.
fn resident_pages(addr: u64, npages: u64) -> Result<u64, String> {
    let mut vec = vec![0u8; npages as usize];
    // SAFETY: `addr` is a page-aligned mapping of `npages` pages, and
    // `vec` has a byte for each.
    let r = unsafe {
        libc::mincore(
            addr as *mut libc::c_void,
            (npages * PAGE) as usize,
            vec.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(format!("mincore: {}", std::io::Error::last_os_error()));
    }
    Ok(vec.iter().filter(|&&b| b & 1 != 0).count() as u64)
}
