// SPDX-License-Identifier: GPL-2.0

//! Huge objects (`CREATE_HUGE`): i915's "gemfs", a private tmpfs mount
//! with `huge=within_size`, gives each 2 MiB range of an object one
//! PMD-sized folio, and the hook moves such a folio in place as one unit
//! (its 512 references, its 512 GTT entries), the object staying bound.
//! Compaction never isolates folios of pageblock order, so the users
//! that move them are the sync ones: `move_pages(2)` and memory
//! offlining here (CMA and `alloc_contig_range()` take the same path).
//! Each test first counts how many objects really got one PMD-sized THP
//! (`/proc/kpageflags` of their frames: `KPF_THP`, order 9) and needs at
//! least one, then runs the user with `hook=off`, where the folios must
//! stay, and with the default hook, where they must move in place with
//! the data intact; with the device awake (the hardware entries
//! rewritten) and asleep (not woken, the entries restored from the
//! shadow table before the next batch).
//! NUMA balancing, which migrates in `MIGRATE_ASYNC`, must be refused
//! such a folio (`refused_large_folio`), where small ones move.

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, Counters, GpuAwake, Param};
use movgem_guest::{ensure, TestResult};

use super::common::{move_to, ok, pmd_folios_only, where_are, PAGE, PMD_PAGES};
use super::inplace::{gtt_check, nothing_released, Mapped, SIZE};
use super::users::{
    asleep_if, awake_if, home_and_away, numa_balanced, pages_on, power_respected, touch_until,
    Bound, MovableBlock, NumaBalancing, OFFLINE_REFUSED_SECS,
};
use super::Test;

/// One PMD-sized folio per object.
const HUGE_OBJ: u64 = (PMD_PAGES as u64) * PAGE;
const OBJS: u32 = 4;

/// Huge objects written by the GPU (object `i` with `value + i`), bound,
/// each mapped into this process with every page touched; unmapped and
/// closed on drop.
struct HugeObjects<'a> {
    dev: &'a Device,
    objs: Vec<(u32, u64, u64)>,
}

impl<'a> HugeObjects<'a> {
    fn new(dev: &'a Device, value: u32) -> Result<Self, String> {
        let mut this = Self {
            dev,
            objs: Vec::new(),
        };
        for i in 0..OBJS {
            let h = ok(dev.create_with(HUGE_OBJ, uapi::CREATE_HUGE), "create huge")?;
            let placed = ok(
                dev.execbuf(&[(h, true)], uapi::OP_FILL, value + i, 0, 0),
                "execbuf fill",
            )
            .and_then(|o| ok(dev.wait(h, -1), "wait").map(|_| o[0]))
            .and_then(|offset| Ok((offset, ok(dev.mmap(h, 0, HUGE_OBJ), "mmap")?)));
            match placed {
                Ok((offset, addr)) => this.objs.push((h, offset, addr)),
                Err(e) => {
                    let _ = dev.close(h);
                    return Err(e);
                }
            }
        }
        for a in this.addrs(0..OBJS as usize) {
            // SAFETY: inside a mapping the kernel gave us.
            let _ = unsafe { std::ptr::read_volatile(a as *const u8) };
        }
        Ok(this)
    }

    /// Every page address of the objects `which`.
    fn addrs(&self, which: std::ops::Range<usize>) -> Vec<*mut libc::c_void> {
        self.objs[which]
            .iter()
            .flat_map(|&(_, _, addr)| {
                (0..HUGE_OBJ / PAGE).map(move |i| (addr + i * PAGE) as *mut libc::c_void)
            })
            .collect()
    }

    /// The objects whose pages all sit in one PMD-sized THP (order 9,
    /// `KPF_THP`), by index.
    fn huge(&self) -> Result<Vec<usize>, String> {
        let mut out = Vec::new();
        for i in 0..self.objs.len() {
            let frames = env::frames(&self.addrs(i..i + 1))?;
            ensure!(
                frames.iter().all(|&f| f != 0),
                "pagemap shows no frames (not root?)"
            );
            if pmd_folios_only(&frames)? {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Each object at its GTT offset, and what the GPU wrote is what the
    /// GPU and the CPU (through the mapping) read.
    fn intact(&self, value: u32) -> TestResult {
        for (i, &(h, offset, addr)) in self.objs.iter().enumerate() {
            let want = value + i as u32;
            let before = Counters::read()?;
            let got = ok(
                self.dev.execbuf(&[(h, false)], uapi::OP_CHECK, want, 0, 0),
                "execbuf check",
            )?;
            ok(self.dev.wait(h, -1), "wait")?;
            let d = Counters::read()?.since(&before);
            ensure!(got[0] == offset, "object {i}: GTT offset changed");
            ensure!(
                d.get("gpu_check_errors") == 0,
                "object {i}: the GPU read stale data: {d}"
            );
            // SAFETY: the object's mapping, `HUGE_OBJ` bytes, alive until drop.
            let words =
                unsafe { std::slice::from_raw_parts(addr as *const u32, HUGE_OBJ as usize / 4) };
            ensure!(
                words.iter().all(|&w| w == want),
                "object {i}: the CPU read other data than the GPU wrote"
            );
        }
        Ok(())
    }
}

impl Drop for HugeObjects<'_> {
    fn drop(&mut self) {
        for &(h, _, addr) in &self.objs {
            // SAFETY: unmapping what the kernel mapped for us.
            unsafe { libc::munmap(addr as *mut libc::c_void, HUGE_OBJ as usize) };
            let _ = self.dev.close(h);
        }
    }
}

/// What a move of huge objects in place must show: a large folio
/// moved per huge object, the device's state respected (awake: the
/// hardware entries rewritten; asleep: not woken, only the shadow
/// written), nothing released, the GTT clean.
fn large_moved_in_place(d: &Counters, huge: usize, awake: bool) -> TestResult {
    ensure!(
        d.get("migrated_in_place_large") >= huge as u64,
        "{huge} huge objects, fewer large folios moved in place: {d}"
    );
    power_respected(awake, d)?;
    nothing_released(d)?;
    let (_, wrong) = gtt_check()?;
    ensure!(wrong == 0, "GTT check: {wrong} entries wrong");
    Ok(())
}

fn state(awake: bool) -> &'static str {
    if awake {
        "awake"
    } else {
        "asleep"
    }
}

/// `move_pages(2)` of huge objects to the other node.
fn huge_objects_move_pages_in_place(awake: bool) -> TestResult {
    let _awake = awake_if(awake)?;
    let dev = ok(Device::open(), "open")?;
    let value = if awake { 0x4a6e_0000 } else { 0x4a6e_1000 };
    let objs = HugeObjects::new(&dev, value)?;
    let huge = objs.huge()?;
    ensure!(
        !huge.is_empty(),
        "none of {OBJS} huge objects got a PMD-sized folio: nothing to test"
    );
    asleep_if(awake)?;
    let addrs: Vec<*mut libc::c_void> = huge.iter().flat_map(|&i| objs.addrs(i..i + 1)).collect();
    let target: Vec<i32> = where_are(&addrs)?.iter().map(|&n| 1 - n).collect();
    // Negative control: plain migrate_folio() finds the object's 512
    // references and the folios stay.
    let before = Counters::read()?;
    let moved_off = {
        let _off = Param::set("hook", "off")?;
        move_to(&addrs, &target)?
    };
    let d = Counters::read()?.since(&before);
    ensure!(
        moved_off == 0 && d.get("migrated_in_place") == 0,
        "hook=off moved {moved_off} of {} pages: this test could not fail; {d}",
        addrs.len()
    );
    let before = Counters::read()?;
    let moved = move_to(&addrs, &target)?;
    let d = Counters::read()?.since(&before);
    ensure!(
        moved == addrs.len(),
        "the hook moved {moved} of {} pages: {d}",
        addrs.len()
    );
    large_moved_in_place(&d, huge.len(), awake)?;
    ensure!(
        objs.huge()? == huge,
        "an object lost its huge folio in the move"
    );
    objs.intact(value)?;
    println!(
        "  {} of {OBJS} huge objects got PMD-sized folios ({}); move_pages: hook=off moved none, \
         the hook {} large folios in place ({} hardware entries rewritten)",
        huge.len(),
        state(awake),
        d.get("migrated_in_place_large"),
        d.get("hw_entries_rewritten")
    );
    Ok(())
}

/// Offlining a ZONE_MOVABLE block that holds huge objects.
fn huge_objects_offline_in_place(awake: bool) -> TestResult {
    let block = MovableBlock::new()?;
    let _awake = awake_if(awake)?;
    let dev = ok(Device::open(), "open")?;
    let value = if awake { 0x4a6f_0000 } else { 0x4a6f_1000 };
    let objs = {
        let _no_shrinker = Param::set("shrinker", "0")?;
        let _bound = Bound::to(1)?;
        HugeObjects::new(&dev, value)?
    };
    let huge = objs.huge()?;
    ensure!(
        !huge.is_empty(),
        "none of {OBJS} huge objects got a PMD-sized folio: nothing to test"
    );
    asleep_if(awake)?;
    let (tries, d) = block.offline_after_control()?;
    large_moved_in_place(&d, huge.len(), awake)?;
    objs.intact(value)?;
    println!(
        "  memory{}: {} of {OBJS} huge objects got PMD-sized folios ({}); hook=off still \
         retrying when killed after {OFFLINE_REFUSED_SECS} s ({tries} migrations failed), with \
         the hook offline, {} large folios moved in place ({} hardware entries rewritten)",
        block.0,
        huge.len(),
        state(awake),
        d.get("migrated_in_place_large"),
        d.get("hw_entries_rewritten")
    );
    drop(objs);
    drop(block);
    Ok(())
}

fn huge_move_pages_awake() -> TestResult {
    huge_objects_move_pages_in_place(true)
}

fn huge_move_pages_asleep() -> TestResult {
    huge_objects_move_pages_in_place(false)
}

fn huge_offline_awake() -> TestResult {
    huge_objects_offline_in_place(true)
}

fn huge_offline_asleep() -> TestResult {
    huge_objects_offline_in_place(false)
}

/// NUMA balancing migrates in `MIGRATE_ASYNC`, where copying a
/// PMD-sized folio could sleep: the hook refuses a huge object's folio
/// at once (`refused_large_folio`) and its pages stay away from the CPU.
/// The control, in the same test: an object of small folios, on the same
/// node and touched the same way, follows the CPU in place, and nothing
/// is refused for that reason.
fn numa_balancing_refuses_large_folios() -> TestResult {
    let (home, away) = home_and_away()?;
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let value = 0x4a70_0000;
    let objs = {
        let _bound = Bound::to(away)?;
        HugeObjects::new(&dev, value)?
    };
    let huge = objs.huge()?;
    ensure!(
        !huge.is_empty(),
        "none of {OBJS} huge objects got a PMD-sized folio: this test could not fail"
    );
    let addrs: Vec<*mut libc::c_void> = huge.iter().flat_map(|&i| objs.addrs(i..i + 1)).collect();
    ensure!(
        pages_on(&addrs, away)? == addrs.len(),
        "the huge objects' pages did not start on node {away}"
    );
    for &i in &huge {
        numa_balanced(objs.addrs(i..i + 1)[0], HUGE_OBJ)?;
    }
    let _numa = NumaBalancing::on()?;
    let vm = Counters::vmstat()?;
    let before = Counters::read()?;
    let refused = touch_until(&addrs, 60, || {
        Ok(Counters::read()?.since(&before).get("refused_large_folio") > 0)
    })?;
    let d = Counters::read()?.since(&before);
    let faults = Counters::vmstat()?.since(&vm);
    ensure!(
        refused,
        "no refused_large_folio in 60 s of hinting faults over huge objects: {d}; {}",
        faults.pick(&["numa_hint_faults", "numa_pages_migrated"])
    );
    ensure!(
        d.get("migrated_in_place") == 0 && pages_on(&addrs, home)? == 0,
        "a large folio moved in MIGRATE_ASYNC: {d}"
    );
    ensure!(objs.huge()? == huge, "an object lost its huge folio");
    let refusals = d.get("refused_large_folio");
    objs.intact(value)?;
    drop(objs);
    // The control: small folios, the same faults; they move.
    let m = {
        let _bound = Bound::to(away)?;
        Mapped::new(&dev, value + 0x100)?
    };
    numa_balanced(m.addrs[0], SIZE)?;
    let before = Counters::read()?;
    let all = touch_until(&m.addrs, 120, || {
        Ok(pages_on(&m.addrs, home)? == m.addrs.len())
    })?;
    let d = Counters::read()?.since(&before);
    let moved = pages_on(&m.addrs, home)?;
    ensure!(
        all,
        "{moved} of {} small pages followed the CPU in 120 s: {d}",
        m.addrs.len()
    );
    ensure!(
        d.get("refused_large_folio") == 0 && d.get("migrated_in_place") >= moved as u64,
        "small folios: {d}"
    );
    println!(
        "  NUMA balancing: {} huge objects' large folios refused {refusals} times, none moved; \
         an object of small folios followed the CPU, all {moved} pages in place",
        huge.len()
    );
    Ok(())
}

pub(super) const TESTS: &[Test] = &[
    (
        "huge_objects_move_pages_in_place_awake",
        huge_move_pages_awake,
    ),
    (
        "huge_objects_move_pages_in_place_asleep",
        huge_move_pages_asleep,
    ),
    (
        "numa_balancing_refuses_large_folios",
        numa_balancing_refuses_large_folios,
    ),
    ("huge_objects_offline_in_place_awake", huge_offline_awake),
    ("huge_objects_offline_in_place_asleep", huge_offline_asleep),
];
