// SPDX-License-Identifier: GPL-2.0

//! In-place migration (`hook=inplace`, the default): one folio of a
//! bound, idle object moves, the object stays bound at the same GTT
//! offset, its GTT entries follow the folio, and the device is not woken.
//! Each claim has its negative control: with the GTT rewrite or the
//! restore after resume deliberately skipped (`debug_skip_*`), the GTT
//! check and the GPU must notice; a foreign reference must leave the
//! object, the page and the counters alone.

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, Control, Counters, GpuAwake, Param};
use movgem_guest::{ensure, TestResult};

use super::common::{check_fill_sized, filled_object, ok, where_are, Knob, NoSwap, PAGE};
use super::Test;

/// Object size: 1 MiB, 256 pages.
pub(super) const SIZE: u64 = 1 << 20;
/// The page that moves.
pub(super) const PICK: usize = 7;

/// A bound, idle object filled by the GPU with `value`, mapped into this
/// process with every page faulted in; unmapped and closed on drop.
pub(super) struct Mapped<'a> {
    pub(super) dev: &'a Device,
    pub(super) h: u32,
    pub(super) offset: u64,
    addr: u64,
    pub(super) addrs: Vec<*mut libc::c_void>,
}

impl<'a> Mapped<'a> {
    pub(super) fn new(dev: &'a Device, value: u32) -> Result<Self, String> {
        let h = ok(dev.create(SIZE), "create")?;
        let offsets = ok(
            dev.execbuf(&[(h, true)], uapi::OP_FILL, value, 0, 0),
            "execbuf fill",
        );
        let offsets = match offsets {
            Ok(o) => o,
            Err(e) => {
                let _ = dev.close(h);
                return Err(e);
            }
        };
        let addr = match ok(dev.wait(h, -1), "wait").and_then(|_| ok(dev.mmap(h, 0, SIZE), "mmap"))
        {
            Ok(a) => a,
            Err(e) => {
                let _ = dev.close(h);
                return Err(e);
            }
        };
        let addrs: Vec<*mut libc::c_void> = (0..SIZE / PAGE)
            .map(|i| (addr + i * PAGE) as *mut libc::c_void)
            .collect();
        for a in &addrs {
            // SAFETY: inside the mapping the kernel gave us.
            let _ = unsafe { std::ptr::read_volatile(*a as *const u8) };
        }
        Ok(Self {
            dev,
            h,
            offset: offsets[0],
            addr,
            addrs,
        })
    }

    /// Asks to move page `i` to the other node; returns whether it is
    /// there now.
    pub(super) fn move_page(&self, i: usize) -> Result<bool, String> {
        let one = [self.addrs[i]];
        let here = where_are(&one)?;
        let there = [1 - here[0]];
        let mut status = [i32::MIN];
        env::move_pages(&one, Some(&there), &mut status)?;
        Ok(where_are(&one)? == there)
    }

    /// A GPU batch over the object; returns its GTT offset.
    pub(super) fn gpu(&self, op: u32, value: u32) -> Result<u64, String> {
        let offsets = ok(
            self.dev
                .execbuf(&[(self.h, op == uapi::OP_FILL)], op, value, 0, 0),
            "execbuf",
        )?;
        ok(self.dev.wait(self.h, -1), "wait")?;
        Ok(offsets[0])
    }
}

impl Drop for Mapped<'_> {
    fn drop(&mut self) {
        // SAFETY: unmapping what the kernel mapped for us.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, SIZE as usize) };
        let _ = self.dev.close(self.h);
    }
}

/// Runs the GTT check; returns (entries checked, mismatches).
pub(super) fn gtt_check() -> Result<(u64, u64), String> {
    let before = Counters::read()?;
    Control::open()?.cmd("gtt_check")?;
    let d = Counters::read()?.since(&before);
    Ok((d.get("gtt_checked"), d.get("gtt_mismatches")))
}

/// Only page `i` changed frame between `before` and `after`.
pub(super) fn only_frame_changed(before: &[u64], after: &[u64], i: usize) -> TestResult {
    ensure!(
        before.iter().all(|&f| f != 0) && after.iter().all(|&f| f != 0),
        "pagemap shows no frames (not root?)"
    );
    let changed: Vec<usize> = (0..before.len())
        .filter(|&k| before[k] != after[k])
        .collect();
    ensure!(
        changed == [i],
        "frames changed at {changed:?}, wanted [{i}]"
    );
    Ok(())
}

/// What every in-place move must leave unchanged: no release.
pub(super) fn nothing_released(d: &Counters) -> TestResult {
    ensure!(
        d.get("unbinds") == 0 && d.get("released_objects") == 0 && d.get("released_pages") == 0,
        "the object was released: {d}"
    );
    ensure!(d.get("rebinds") == 0, "the object was rebound: {d}");
    Ok(())
}

/// After an in-place move, the GPU and the CPU agree on new data both
/// ways, at the same GTT offset.
fn data_follows(m: &Mapped, offset: u64) -> TestResult {
    // GPU FILL, then the GPU and PREAD read it.
    let got = m.gpu(uapi::OP_FILL, 0x5a5a_0001)?;
    ensure!(got == offset, "GTT offset changed: {offset:#x} -> {got:#x}");
    check_fill_sized(m.dev, m.h, 0x5a5a_0001, SIZE)?;
    // PWRITE, then a GPU CHECK.
    let same = 0x0c0f_fee0u32.to_le_bytes().repeat((SIZE / 4) as usize);
    ok(m.dev.pwrite(m.h, 0, &same), "pwrite")?;
    check_fill_sized(m.dev, m.h, 0x0c0f_fee0, SIZE)
}

fn move_pages_one_page_in_place() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let m = Mapped::new(&dev, 0x1111_2222)?;
    let before_frames = env::frames(&m.addrs)?;
    let before = Counters::read()?;
    ensure!(m.move_page(PICK)?, "page {PICK} did not move");
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("migrated_in_place") == 1 && d.get("gtt_entries_rewritten") == 1,
        "not one folio moved in place: {d}"
    );
    ensure!(
        d.get("hw_entries_rewritten") == 1,
        "the awake device's entry was not rewritten: {d}"
    );
    nothing_released(&d)?;
    only_frame_changed(&before_frames, &env::frames(&m.addrs)?, PICK)?;
    let info = ok(dev.info(), "info")?;
    ensure!(info.bound_objects >= 1, "object unbound: {info:?}");
    let (checked, wrong) = gtt_check()?;
    ensure!(
        checked >= 2 * SIZE / PAGE && wrong == 0,
        "GTT check: {wrong} of {checked} entries wrong"
    );
    // What the GPU wrote before is what the GPU and the CPU read now.
    let got = m.gpu(uapi::OP_CHECK, 0x1111_2222)?;
    ensure!(got == m.offset, "GTT offset changed");
    check_fill_sized(&dev, m.h, 0x1111_2222, SIZE)?;
    data_follows(&m, m.offset)?;
    println!("  one page moved in place: same GTT offset, one frame changed, GTT check clean");
    Ok(())
}

fn move_pages_in_place_device_asleep() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let m = Mapped::new(&dev, 0x3333_4444)?;
    env::wait_runtime_status("suspended", 60_000)?;
    let before = Counters::read()?;
    ensure!(m.move_page(PICK)?, "page {PICK} did not move");
    let d = Counters::read()?.since(&before);
    ensure!(
        env::runtime_status()? == "suspended",
        "the move woke the device"
    );
    ensure!(
        d.get("runtime_resumes") == 0,
        "the device resumed during the move: {d}"
    );
    ensure!(
        d.get("migrated_in_place") == 1 && d.get("gtt_entries_rewritten") == 1,
        "not moved in place while suspended: {d}"
    );
    ensure!(
        d.get("hw_entries_rewritten") == 0 && d.get("refused_suspended") == 0,
        "hardware written or refused while suspended: {d}"
    );
    nothing_released(&d)?;
    let (_, wrong) = gtt_check()?;
    ensure!(wrong == 0, "GTT check: {wrong} shadow entries wrong");
    // The first batch after resume reads the moved page through restored
    // entries.
    let before = Counters::read()?;
    check_fill_sized(&dev, m.h, 0x3333_4444, SIZE)?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("gtt_restores") >= 1 && d.get("gtt_faults") == 0,
        "entries not restored on resume: {d}"
    );
    data_follows(&m, m.offset)?;
    println!("  moved in place with the device asleep; restored on resume");
    Ok(())
}

fn compaction_in_place_device_asleep() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let filler = env::fragment_for(8 << 20)?;
    let h = filled_object(&dev, 8 << 20, 0x5555_6666)?;
    drop(filler);
    env::wait_runtime_status("suspended", 60_000)?;
    let d = env::compact_counted()?;
    let out = (|| {
        ensure!(
            env::runtime_status()? == "suspended",
            "compaction woke the device"
        );
        ensure!(
            d.get("migrated_in_place") > 0 && d.get("refused_suspended") == 0,
            "nothing moved in place while suspended: {d}"
        );
        nothing_released(&d)?;
        let (_, wrong) = gtt_check()?;
        ensure!(wrong == 0, "GTT check: {wrong} entries wrong");
        check_fill_sized(&dev, h, 0x5555_6666, 8 << 20)?;
        println!(
            "  compaction with the device asleep: {} folios moved in place, none released",
            d.get("migrated_in_place")
        );
        Ok(())
    })();
    ok(dev.close(h), "close")?;
    out
}

/// Objects of the hugepage rounds: 4 MiB.
const ROUND_OBJ: u64 = 4 << 20;

/// One round of the hugepage comparison: memory fragmented by a filler
/// of 3/4 of what is available with every other page punched out,
/// objects filling 3/8 of it (so they land in the holes, all over the
/// zone), the filler freed; then, with `hook` set and the device
/// runtime-suspended, compaction and as many 2 MiB hugetlb pages as the
/// kernel can assemble.  `ceiling`: the objects are written with PWRITE
/// and never bound (plain shmem pages).  Returns the hugepages and the
/// counters of compaction and allocation.
fn hugepage_round(dev: &Device, ceiling: bool) -> Result<(u64, Counters), String> {
    let avail = env::meminfo_kib("MemAvailable")? * 1024;
    let count = (avail * 3 / 8 / ROUND_OBJ) as usize;
    let filler = env::fragment_fraction(3, 4)?;
    let mut handles = Vec::with_capacity(count);
    let made = (|| {
        for _ in 0..count {
            handles.push(ok(dev.create(ROUND_OBJ), "create")?);
        }
        if ceiling {
            let data = 0x0123_4567u32
                .to_le_bytes()
                .repeat((ROUND_OBJ / 4) as usize);
            for &h in &handles {
                ok(dev.pwrite(h, 0, &data), "pwrite")?;
            }
        } else {
            let list: Vec<(u32, bool)> = handles.iter().map(|&h| (h, true)).collect();
            ok(
                dev.execbuf(&list, uapi::OP_FILL, 0x0123_4567, 0, 0),
                "execbuf",
            )?;
            for &h in &handles {
                ok(dev.wait(h, -1), "wait")?;
            }
        }
        Ok::<(), String>(())
    })();
    drop(filler);
    let out = made.and_then(|()| {
        env::wait_runtime_status("suspended", 60_000)?;
        let before = Counters::read()?;
        // Twice: one pass can leave blocks whose folios were briefly
        // busy (a per-CPU LRU batch's reference); the second gets them.
        env::compact()?;
        env::compact()?;
        std::fs::write("/proc/sys/vm/nr_hugepages", "100000")
            .map_err(|e| format!("nr_hugepages: {e}"))?;
        let got = env::meminfo_kib("HugePages_Total")?;
        std::fs::write("/proc/sys/vm/nr_hugepages", "0")
            .map_err(|e| format!("nr_hugepages: {e}"))?;
        let d = Counters::read()?.since(&before);
        ensure!(
            env::runtime_status()? == "suspended",
            "the round woke the device"
        );
        Ok((got, d))
    });
    for h in handles {
        let _ = dev.close(h);
    }
    out
}

/// Hugepages with the device asleep: in place recovers at least 0.8 of
/// the unbound ceiling of the same boot, and at least 1.5 times what a
/// round with `hook=off` gets, without unbinding anything.  Three rounds
/// of about 40 s each on the debug kernel.  The `hook=off` round is also
/// the negative control: judged by the same 0.8 rule it must fail (it
/// gets about half the ceiling with the device asleep, as `hook=release`
/// does; `make bench` measures all three: 0.43-0.53 in its last run), or
/// the rule could not tell the hook from its absence.
///
/// Why 0.8: one in-place round is one draw from a spread distribution.
/// Seven rounds per setup in `make bench` (plain kernel) gave in place
/// 0.89-1.0 of the ceiling's median (2 GiB guest: 537-608 against
/// 591-607, every folio moved in place, the low rounds compacting fewer
/// pages), and single rounds here on the debug kernel 0.87, 0.88, 0.89,
/// 0.95 and 0.96, idle and loaded alike.  0.9 failed one make check in
/// two; 0.8 stays well clear of both that spread and of what the hook off
/// or in release mode gets.
fn hugepages_device_asleep_near_ceiling() -> TestResult {
    let _shrinker = Param::set("shrinker", "0")?;
    // Compaction alone in both rounds: with swap, reclaim could also
    // push the unbound ceiling round's shmem pages out while the
    // hugepages are allocated, which the bound objects' pages never
    // allow, and the ceiling then measured reclaim too (two loaded runs
    // got 0.88 and 0.89 of it with every folio moved in place).
    let _no_swap = NoSwap::new()?;
    let dev = ok(Device::open(), "open")?;
    let (ceiling, _) = hugepage_round(&dev, true)?;
    let (got, d) = hugepage_round(&dev, false)?;
    let mode = env::param("hook")?;
    // The same boot with the hook off: the headline relation of
    // `make bench`, so that a regression fails here, not only there.
    let (off, _) = {
        let _off = Param::set("hook", "off")?;
        hugepage_round(&dev, false)?
    };
    println!(
        "  hugepages, device asleep: unbound ceiling {ceiling}, hook={mode} {got} \
         ({} folios moved in place, {} objects unbound), hook=off {off}",
        d.get("migrated_in_place"),
        d.get("unbinds")
    );
    ensure!(ceiling > 0, "no hugepage even unbound");
    // The negative control: the same rule fails the round without the
    // hook.
    match near_ceiling("off", off, ceiling) {
        Err(e) => println!("  control: {e}, as it must"),
        Ok(()) => {
            return Err(format!(
                "control: hook=off got {off}, at least 0.8 of the ceiling {ceiling}: this \
                 test could not fail"
            ))
        }
    }
    // The count first: a run with the hook off or in release mode must
    // fail here, on what the user sees, not only on the counters.
    near_ceiling(&mode, got, ceiling).map_err(|e| format!("{e}; {d}"))?;
    ensure!(
        got * 2 >= off * 3,
        "hook={mode} got {got}, less than 1.5 times the {off} of hook=off in the same boot"
    );
    ensure!(
        d.get("migrated_in_place") > 0 && d.get("unbinds") == 0 && d.get("released_objects") == 0,
        "not by moving in place: {d}"
    );
    Ok(())
}

/// The rule of [`hugepages_device_asleep_near_ceiling`]: a round with
/// `hook=mode` got at least 0.8 of the unbound `ceiling`.
fn near_ceiling(mode: &str, got: u64, ceiling: u64) -> TestResult {
    ensure!(
        got * 10 >= ceiling * 8,
        "hook={mode} got {got}, below 0.8 of the ceiling {ceiling}"
    );
    Ok(())
}

/// Negative control: entries left behind are found, by the GTT check and
/// by the GPU and the CPU disagreeing.
fn skipped_gtt_rewrite_is_caught() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let m = Mapped::new(&dev, 0x7777_8888)?;
    let broken = Param::set("debug_skip_gtt_rewrite", "1")?;
    let before = Counters::read()?;
    ensure!(m.move_page(PICK)?, "page {PICK} did not move");
    drop(broken);
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("migrated_in_place") == 1 && d.get("gtt_entries_rewritten") == 0,
        "the breakage was not in effect: {d}"
    );
    let (_, wrong) = gtt_check()?;
    ensure!(wrong >= 2, "the GTT check missed a stale entry: {wrong}");
    // PWRITE lands in the page cache, the GPU reads the old frame.
    let same = 0x0bad_f00du32.to_le_bytes().repeat((SIZE / 4) as usize);
    ok(m.dev.pwrite(m.h, 0, &same), "pwrite")?;
    let before = Counters::read()?;
    m.gpu(uapi::OP_CHECK, 0x0bad_f00d)?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("gpu_check_errors") == PAGE / 4,
        "the GPU did not read exactly one stale page: {d}"
    );
    println!(
        "  skipped rewrite caught: {wrong} GTT entries wrong, {} dwords wrong on the GPU",
        d.get("gpu_check_errors")
    );
    Ok(())
}

/// Negative control: hardware entries not restored after a suspend are
/// unusable, and the GPU reports it.
fn skipped_restore_is_caught() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let m = Mapped::new(&dev, 0x9999_aaaa)?;
    env::wait_runtime_status("suspended", 60_000)?;
    ensure!(m.move_page(PICK)?, "page {PICK} did not move");
    let broken = Param::set("debug_skip_restore", "1")?;
    let before = Counters::read()?;
    let checked = m.gpu(uapi::OP_CHECK, 0x9999_aaaa);
    drop(broken);
    checked?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("gtt_restores") == 0 && d.get("gtt_faults") == SIZE / PAGE,
        "the breakage was not in effect: {d}"
    );
    ensure!(
        d.get("gpu_check_errors") > 0,
        "the GPU did not notice unrestored entries: {d}"
    );
    // Repaired: the next batch restores and reads everything right.
    let before = Counters::read()?;
    check_fill_sized(&dev, m.h, 0x9999_aaaa, SIZE)?;
    let d = Counters::read()?.since(&before);
    ensure!(d.get("gtt_restores") >= 1, "not restored afterwards: {d}");
    println!("  skipped restore caught: the GPU faulted on every page");
    Ok(())
}

/// Runtime PM disabled with the device awake, as the PM core does from
/// the late suspend to the early resume of a system sleep:
/// `pm_runtime_get_if_active()` fails (`-EINVAL`) while the hardware
/// keeps its entries.  The hook cannot write the hardware entry then, so
/// it must invalidate it: the GTT check finds no entry pointing at the
/// old frame, and the next batch restores the entries and reads the
/// moved page.
fn move_pages_in_place_runtime_pm_disabled() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let m = Mapped::new(&dev, 0x2222_3333)?;
    let ctl = Control::open()?;
    ctl.cmd("runtime_pm 0")?;
    let out = (|| {
        let before = Counters::read()?;
        ensure!(m.move_page(PICK)?, "page {PICK} did not move");
        let d = Counters::read()?.since(&before);
        ensure!(
            d.get("migrated_in_place") == 1 && d.get("gtt_entries_rewritten") == 1,
            "not one folio moved in place: {d}"
        );
        ensure!(
            d.get("hw_entries_rewritten") == 0 && d.get("runtime_suspends") == 0,
            "the breakage was not in effect (hardware entry written, or a suspend): {d}"
        );
        let (checked, wrong) = gtt_check()?;
        ensure!(
            wrong == 0,
            "GTT check: {wrong} of {checked} entries wrong: the hardware entry \
             still points at the old frame"
        );
        ensure!(
            checked == SIZE / PAGE,
            "hardware entries still current after a move that could not write them: \
             {checked} entries checked"
        );
        // New data lands in the new frame only; the GPU must read it there.
        let same = 0x0d15_ea5eu32.to_le_bytes().repeat((SIZE / 4) as usize);
        ok(m.dev.pwrite(m.h, 0, &same), "pwrite")?;
        let before = Counters::read()?;
        m.gpu(uapi::OP_CHECK, 0x0d15_ea5e)?;
        let d = Counters::read()?.since(&before);
        ensure!(
            d.get("gpu_check_errors") == 0 && d.get("gtt_faults") == 0,
            "the GPU read stale data: {d}"
        );
        ensure!(
            d.get("gtt_restores") >= 1,
            "the entries were not restored from the shadow: {d}"
        );
        let (_, wrong) = gtt_check()?;
        ensure!(
            wrong == 0,
            "GTT check after the batch: {wrong} entries wrong"
        );
        println!(
            "  runtime PM disabled, device awake: entry invalidated, restored by the next batch"
        );
        Ok(())
    })();
    let enabled = ctl.cmd("runtime_pm 1");
    out.and(enabled)
}

/// `power/autosuspend_delay_ms` of the simulated GPU.
const AUTOSUSPEND_DELAY: &str = "/sys/devices/platform/movgem/power/autosuspend_delay_ms";

/// The hook's wakeref is not a use of the device: migrations of an idle
/// object, one every few milliseconds, must not hold off autosuspend.
fn migrations_do_not_hold_off_autosuspend() -> TestResult {
    const DELAY_MS: u64 = 300;
    const FOR_MS: u64 = 10 * DELAY_MS;
    let _delay = Knob::set(AUTOSUSPEND_DELAY, &DELAY_MS.to_string())?;
    let dev = ok(Device::open(), "open")?;
    let m = Mapped::new(&dev, 0x4444_5555)?;
    let before = Counters::read()?;
    // The last use: autosuspend counts from this batch's retirement.
    m.gpu(uapi::OP_CHECK, 0x4444_5555)?;
    let start = std::time::Instant::now();
    let mut moves = 0;
    let mut suspended = None;
    while start.elapsed().as_millis() < u128::from(FOR_MS) {
        ensure!(m.move_page(PICK)?, "page {PICK} did not move");
        moves += 1;
        if env::runtime_status()? == "suspended" {
            suspended = Some(start.elapsed().as_millis());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("hw_entries_rewritten") >= 1,
        "no move found the device awake, nothing shown: {d}"
    );
    let Some(after) = suspended else {
        return Err(format!(
            "{moves} migrations in {FOR_MS} ms kept the device awake \
             (autosuspend delay {DELAY_MS} ms): {d}"
        ));
    };
    println!(
        "  autosuspend {DELAY_MS} ms: suspended {after} ms into {moves} migrations \
         ({} with the device awake)",
        d.get("hw_entries_rewritten")
    );
    Ok(())
}

/// A page spliced into a pipe holds a reference the object does not own:
/// refused before any lock, nothing changed; once the pipe is drained
/// the page moves.
fn foreign_reference_is_refused() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let m = Mapped::new(&dev, 0xbbbb_cccc)?;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    ensure!(unsafe { libc::pipe(fds.as_mut_ptr()) } == 0, "pipe failed");
    let out = (|| {
        let iov = libc::iovec {
            iov_base: m.addrs[PICK],
            iov_len: PAGE as usize,
        };
        // SAFETY: `iov` describes one page of our mapping; the pipe is ours.
        let n = unsafe { libc::vmsplice(fds[1], &iov, 1, 0) };
        ensure!(n == PAGE as isize, "vmsplice: {n}");
        let frames = env::frames(&m.addrs)?;
        let before = Counters::read()?;
        let moved = m.move_page(PICK)?;
        let d = Counters::read()?.since(&before);
        ensure!(!moved, "a page with a foreign reference moved");
        ensure!(
            d.get("refused_foreign_ref") > 0 && d.get("migrated_in_place") == 0,
            "not refused for its reference: {d}"
        );
        nothing_released(&d)?;
        ensure!(
            env::frames(&m.addrs)? == frames,
            "frames changed on a refusal"
        );
        let (_, wrong) = gtt_check()?;
        ensure!(wrong == 0, "GTT check: {wrong} entries wrong");
        // Drain the pipe: the reference goes, the page can move.
        let mut buf = vec![0u8; PAGE as usize];
        // SAFETY: `buf` is writable for its length.
        let r = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        ensure!(r == PAGE as isize, "pipe read: {r}");
        let before = Counters::read()?;
        ensure!(
            m.move_page(PICK)?,
            "page did not move once the pipe was drained"
        );
        let d = Counters::read()?.since(&before);
        ensure!(d.get("migrated_in_place") == 1, "not moved in place: {d}");
        check_fill_sized(&dev, m.h, 0xbbbb_cccc, SIZE)
    })();
    // SAFETY: closing our own descriptors.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    out
}

pub(super) const TESTS: &[Test] = &[
    ("inplace_move_pages_one_page", move_pages_one_page_in_place),
    (
        "inplace_move_pages_device_asleep",
        move_pages_in_place_device_asleep,
    ),
    (
        "inplace_compaction_device_asleep",
        compaction_in_place_device_asleep,
    ),
    (
        "inplace_hugepages_device_asleep_near_ceiling",
        hugepages_device_asleep_near_ceiling,
    ),
    (
        "inplace_skipped_gtt_rewrite_is_caught",
        skipped_gtt_rewrite_is_caught,
    ),
    (
        "inplace_skipped_restore_is_caught",
        skipped_restore_is_caught,
    ),
    (
        "inplace_foreign_reference_is_refused",
        foreign_reference_is_refused,
    ),
    (
        "inplace_move_pages_runtime_pm_disabled",
        move_pages_in_place_runtime_pm_disabled,
    ),
    (
        "inplace_migrations_let_device_autosuspend",
        migrations_do_not_hold_off_autosuspend,
    ),
];
