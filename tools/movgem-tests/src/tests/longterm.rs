// SPDX-License-Identifier: GPL-2.0

//! Long-term pins keep out of movable memory, `FOLL_LONGTERM`'s rule:
//! PIN (a scanout pin) and VMAP (a pinned kernel mapping) first migrate
//! every page of the object that sits in ZONE_MOVABLE or in the CMA area
//! to other memory, so that memory offlining and `cma_alloc()` still
//! succeed while the pins are held.  The objects are bound and idle,
//! written by the GPU, and put where the test needs them (a memory block
//! re-onlined as ZONE_MOVABLE, the `cma=` area of the check boot).
//! The negative control pins with `debug_skip_longterm_migrate=1`, the
//! module as it was before: the pinned pages stay in movable memory, and
//! offlining or `cma_alloc()` must fail.

use std::fmt;
use std::fs;
use std::ops::Range;
use std::time::Instant;

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, Counters, GpuAwake, Param};
use movgem_guest::{ensure, TestResult};

use super::common::{move_to, ok, pmd_folios_only, where_are, PAGE};
use super::inplace::{gtt_check, nothing_released};
use super::users::{
    asleep_if, cma_refused, filled_objects, filled_objects_with, objects_in_cma,
    objects_in_cma_with, objects_intact, power_respected, set_block, Bound, Cma, Done,
    MovableBlock, CMA_OBJ, OFFLINE_REFUSED_SECS,
};
use super::Test;

/// Frames that must not hold a long-term pin: every ZONE_MOVABLE span in
/// /proc/zoneinfo, and the CMA area if the boot has one.
struct Unpinnable(Vec<(&'static str, Range<u64>)>);

impl Unpinnable {
    fn read() -> Result<Self, String> {
        let text = fs::read_to_string("/proc/zoneinfo").map_err(|e| format!("zoneinfo: {e}"))?;
        let (mut movable, mut spanned, mut out) = (false, 0u64, Vec::new());
        for l in text.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["Node", _, "zone", zone, ..] => movable = *zone == "Movable",
                ["spanned", v, ..] => spanned = v.parse().unwrap_or(0),
                ["start_pfn:", v, ..] if movable && spanned > 0 => {
                    let start: u64 = v.parse().map_err(|e| format!("zoneinfo start_pfn: {e}"))?;
                    out.push(("ZONE_MOVABLE", start..start + spanned));
                }
                _ => {}
            }
        }
        if let Ok(cma) = Cma::find() {
            out.push(("CMA", cma.base_pfn..cma.base_pfn + cma.count));
        }
        Ok(Self(out))
    }

    /// How many of `frames` are in one of the ranges.
    fn count(&self, frames: &[u64]) -> usize {
        frames
            .iter()
            .filter(|f| self.0.iter().any(|(_, r)| r.contains(f)))
            .count()
    }
}

impl fmt::Display for Unpinnable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (what, r) in &self.0 {
            write!(f, "{what} {:#x}..{:#x} ", r.start, r.end)?;
        }
        Ok(())
    }
}

/// The frames of every page of object `h` (`size` bytes), read through
/// a CPU mapping and pagemap.
fn object_frames(dev: &Device, h: u32, size: u64) -> Result<Vec<u64>, String> {
    let addr = ok(dev.mmap(h, 0, size), "mmap")?;
    let addrs: Vec<*mut libc::c_void> = (0..size / PAGE)
        .map(|i| (addr + i * PAGE) as *mut libc::c_void)
        .collect();
    for a in &addrs {
        // SAFETY: inside the mapping the kernel gave us.
        let _ = unsafe { std::ptr::read_volatile(*a as *const u8) };
    }
    let frames = env::frames(&addrs);
    // SAFETY: unmapping what the kernel mapped for us.
    unsafe { libc::munmap(addr as *mut libc::c_void, size as usize) };
    let frames = frames?;
    ensure!(
        frames.iter().all(|&f| f != 0),
        "pagemap shows no frames (not root?)"
    );
    Ok(frames)
}

/// How many pages of each object are in `bad`.
fn unpinnable_pages(dev: &Device, objs: &[u32], bad: &Unpinnable) -> Result<Vec<usize>, String> {
    objs.iter()
        .map(|&h| Ok(bad.count(&object_frames(dev, h, CMA_OBJ)?)))
        .collect()
}

/// The two long-term pins of the uAPI.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Pin,
    Vmap,
}

fn take(dev: &Device, h: u32, kind: Kind) -> TestResult {
    match kind {
        Kind::Pin => ok(dev.pin(h), "pin").map(drop),
        Kind::Vmap => ok(dev.vmap(h), "vmap"),
    }
}

fn give_back(dev: &Device, h: u32, kind: Kind) -> TestResult {
    match kind {
        Kind::Pin => ok(dev.unpin(h), "unpin"),
        Kind::Vmap => ok(dev.vunmap(h), "vunmap"),
    }
}

/// Takes each pin of `want`; the pins taken so far are given back if
/// one fails.
fn take_all<'a>(dev: &'a Device, want: &[(u32, Kind)]) -> Result<Pins<'a>, String> {
    let mut pins = Pins(dev, Vec::new());
    for &(h, kind) in want {
        take(dev, h, kind)?;
        pins.1.push((h, kind));
    }
    Ok(pins)
}

/// `kind` for each of `handles`.
fn each(handles: &[u32], kind: Kind) -> Vec<(u32, Kind)> {
    handles.iter().map(|&h| (h, kind)).collect()
}

/// Long-term pins held until dropped.
struct Pins<'a>(&'a Device, Vec<(u32, Kind)>);

impl Pins<'_> {
    fn handles(&self) -> Vec<u32> {
        self.1.iter().map(|p| p.0).collect()
    }
}

impl Drop for Pins<'_> {
    fn drop(&mut self) {
        for &(h, kind) in &self.1 {
            let _ = give_back(self.0, h, kind);
        }
    }
}

/// Every object has pages in `bad` before the pins: else the test could
/// not fail.
fn all_placed(dev: &Device, handles: &[u32], bad: &Unpinnable) -> TestResult {
    let n = unpinnable_pages(dev, handles, bad)?;
    ensure!(
        n.iter().all(|&k| k > 0),
        "pages in movable memory per object before pinning: {n:?} ({bad}): \
         an object is not there, this test could not fail"
    );
    Ok(())
}

/// Pinning moved every page of `pins` out of `bad`, in place (the
/// objects stayed bound), one migration per pin, and woke nothing.
fn pins_moved_out(
    dev: &Device,
    pins: &Pins<'_>,
    bad: &Unpinnable,
    awake: bool,
    d: &Counters,
) -> TestResult {
    let n = unpinnable_pages(dev, &pins.handles(), bad)?;
    ensure!(
        n.iter().all(|&k| k == 0),
        "pinned objects still have pages in movable memory: {n:?} ({bad}); {d}"
    );
    ensure!(
        d.get("longterm_pins") == pins.1.len() as u64 && d.get("longterm_failed") == 0,
        "{} pins, not one memfd_pin_folios each: {d}",
        pins.1.len()
    );
    ensure!(
        d.get("migrated_in_place") > 0,
        "no folio moved in place: {d}"
    );
    nothing_released(d)?;
    power_respected(awake, d)
}

/// PIN and VMAP over objects in a ZONE_MOVABLE memory block: the pages
/// leave the block, which then goes offline with the pins held.
fn longterm_pins_leave_zone_movable() -> TestResult {
    let block = MovableBlock::new()?;
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let value = 0x1097_0000;
    let objs = {
        let _no_shrinker = Param::set("shrinker", "0")?;
        let _bound = Bound::to(1)?;
        filled_objects(&dev, 4, value)?
    };
    let handles: Vec<u32> = objs.iter().map(|o| o.0).collect();
    let out = (|| {
        let bad = Unpinnable::read()?;
        all_placed(&dev, &handles, &bad)?;
        // Objects 1 and 2 pinned, 3 vmapped, as the module does it.
        let before = Counters::read()?;
        let mut want = each(&handles[1..3], Kind::Pin);
        want.extend(each(&handles[3..], Kind::Vmap));
        let pins = take_all(&dev, &want)?;
        pins_moved_out(&dev, &pins, &bad, true, &Counters::read()?.since(&before))?;
        // Negative control: object 0 pinned where it is; the block
        // cannot go offline (offlining retries until killed).
        let (left, refused) = {
            let _skip = Param::set("debug_skip_longterm_migrate", "1")?;
            let _stuck = take_all(&dev, &each(&handles[..1], Kind::Pin))?;
            let left = unpinnable_pages(&dev, &handles[..1], &bad)?[0];
            ensure!(
                left > 0,
                "with debug_skip_longterm_migrate the pinned object had no page in movable \
                 memory: this test could not fail"
            );
            (left, block.offline_refused())
        };
        let (tries, d) = refused
            .map_err(|e| format!("with debug_skip_longterm_migrate, {left} pages pinned: {e}"))?;
        let refusals = d.get("refused_pinned_vma");
        ensure!(refusals > 0, "offlining met no pinned folio: {d}");
        // The module as it is: object 0 too, then the block goes offline
        // under all four pins.
        let before = Counters::read()?;
        let last = take_all(&dev, &each(&handles[..1], Kind::Pin))?;
        let d = Counters::read()?.since(&before);
        pins_moved_out(&dev, &last, &bad, true, &d)?;
        let done = set_block(block.0, "offline", 120)?;
        ensure!(
            done == Done::Done,
            "memory{} did not go offline under pins that left it: {done:?}",
            block.0
        );
        objects_intact(&dev, &objs, value)?;
        println!(
            "  memory{}: 3 PIN and 1 VMAP over objects in it moved their pages out; \
             with debug_skip_longterm_migrate offlining was still retrying when killed after \
             {OFFLINE_REFUSED_SECS} s ({tries} migrations failed, {refusals} refusals of the \
             pinned folios), without it done",
            block.0
        );
        drop((pins, last));
        Ok(())
    })();
    for h in handles {
        let _ = dev.close(h);
    }
    drop(block);
    out
}

/// A round of PIN whose migration fails is tried again
/// (`longterm_retries`): PIN of an object in a ZONE_MOVABLE block while
/// a GPU batch (a hang, ended after 300 ms) uses it, whose folios the
/// hook refuses to move (`refused_active`), so `memfd_pin_folios()`
/// fails; the next round waits for the batch, moves the pages out and
/// pins them.  The control, in the same test: PIN of an idle object in
/// the same block pins in one round.
fn longterm_pin_of_busy_object_retries() -> TestResult {
    let block = MovableBlock::new()?;
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let value = 0x1097_7e70;
    let objs = {
        let _no_shrinker = Param::set("shrinker", "0")?;
        let _bound = Bound::to(1)?;
        filled_objects(&dev, 2, value)?
    };
    let handles: Vec<u32> = objs.iter().map(|o| o.0).collect();
    let out = (|| {
        let bad = Unpinnable::read()?;
        all_placed(&dev, &handles, &bad)?;
        // The control: an idle object, one round.
        let before = Counters::read()?;
        let idle = take_all(&dev, &each(&handles[..1], Kind::Pin))?;
        let d = Counters::read()?.since(&before);
        pins_moved_out(&dev, &idle, &bad, true, &d)?;
        ensure!(
            d.get("longterm_retries") == 0,
            "PIN of an idle object took more than one round: {d}"
        );
        // Busy: the first round cannot move the pages.
        let _hang = Param::set("hang_timeout_ms", "300")?;
        ok(
            dev.execbuf(&[(handles[1], false)], uapi::OP_NOP, 0, 0, uapi::EXEC_HANG),
            "execbuf hang",
        )?;
        let before = Counters::read()?;
        let start = Instant::now();
        let busy = take_all(&dev, &each(&handles[1..], Kind::Pin))?;
        let took = start.elapsed();
        let d = Counters::read()?.since(&before);
        ensure!(
            d.get("refused_active") > 0 && d.get("longterm_retries") >= 1,
            "PIN of a busy object in movable memory: no refused round tried again: {d}"
        );
        pins_moved_out(&dev, &busy, &bad, true, &d)?;
        ensure!(
            d.get("gpu_hangs_timed_out") == 1,
            "the batch did not end by its timeout during the PIN: {d}"
        );
        objects_intact(&dev, &objs, value)?;
        println!(
            "  memory{}: PIN of an idle object in one round; of a busy one {} rounds refused \
             ({} folios active), pinned after {} ms",
            block.0,
            d.get("longterm_retries"),
            d.get("refused_active"),
            took.as_millis()
        );
        drop((idle, busy));
        Ok(())
    })();
    for h in handles {
        let _ = dev.close(h);
    }
    drop(block);
    out
}

/// PIN and VMAP over objects in the CMA area, the device asleep: the
/// pages leave the area, and `cma_alloc()` of the whole area succeeds
/// with the pins held.
fn longterm_pins_leave_cma() -> TestResult {
    let cma = Cma::find()?;
    let dev = ok(Device::open(), "open")?;
    let value = 0x1c3a_0000;
    let objs = objects_in_cma(&dev, &cma, value)?;
    let handles: Vec<u32> = objs.iter().map(|o| o.0).collect();
    let out = (|| {
        let bad = Unpinnable::read()?;
        let n = unpinnable_pages(&dev, &handles, &bad)?;
        let placed: Vec<u32> = handles
            .iter()
            .zip(&n)
            .filter(|(_, &k)| k > 0)
            .map(|(&h, _)| h)
            .collect();
        ensure!(
            placed.len() >= 2,
            "objects with pages in movable memory: {n:?} ({bad}): fewer than two, \
             this test could not fail"
        );
        asleep_if(false)?;
        // Negative control: pinned where they are, the area cannot be
        // allocated: cma_alloc() fails on the pinned folios, each refused
        // by the hook as pinned, none moved.
        let (left, refused) = {
            let _skip = Param::set("debug_skip_longterm_migrate", "1")?;
            let _stuck = take_all(&dev, &each(&placed, Kind::Pin))?;
            let left = unpinnable_pages(&dev, &placed, &bad)?;
            ensure!(
                left.iter().all(|&k| k > 0),
                "with debug_skip_longterm_migrate the pinned objects' pages in movable memory: \
                 {left:?}: this test could not fail"
            );
            (left, cma_refused(&cma, "refused:refused_pinned_vma"))
        };
        let (tried, d) = refused.map_err(|e| {
            format!("with debug_skip_longterm_migrate, pages pinned in the area {left:?}: {e}")
        })?;
        ensure!(
            d.get("refused_pinned_vma") > 0,
            "cma_alloc met no pinned folio: {d}"
        );
        let (half, rest) = placed.split_at(placed.len() / 2);
        let mut want = each(half, Kind::Pin);
        want.extend(each(rest, Kind::Vmap));
        let before = Counters::read()?;
        let pins = take_all(&dev, &want)?;
        pins_moved_out(&dev, &pins, &bad, false, &Counters::read()?.since(&before))?;
        let taken = cma.take_all()?;
        drop(taken);
        objects_intact(&dev, &objs, value)?;
        println!(
            "  CMA: {} objects with pages in the area ({} PIN, {} VMAP) moved out, asleep; \
             with debug_skip_longterm_migrate cma_alloc failed with EBUSY ({} refusals of the \
             pinned folios), without it done",
            placed.len(),
            half.len(),
            rest.len(),
            tried.hooks()
        );
        drop(pins);
        Ok(())
    })();
    for h in handles {
        let _ = dev.close(h);
    }
    out
}

/// The huge objects among `handles` (all their pages in PMD-sized THPs)
/// that have pages in `bad`; at least two, else the test could not fail.
fn huge_and_placed(dev: &Device, handles: &[u32], bad: &Unpinnable) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for &h in handles {
        let frames = object_frames(dev, h, CMA_OBJ)?;
        let huge = pmd_folios_only(&frames)?;
        let placed = bad.count(&frames);
        seen.push((huge, placed));
        if huge && placed > 0 {
            out.push(h);
        }
    }
    ensure!(
        out.len() >= 2,
        "(PMD-sized THPs only, pages in movable memory) per object: {seen:?} ({bad}): \
         fewer than two huge objects in place, this test could not fail"
    );
    Ok(out)
}

/// The pinned pages cannot move: `move_pages(2)` of every page of `h` to
/// the other node moves none, and the hook turns them away at its first
/// glance, the `FOLL_PIN` of the long-term pin being a foreign reference.
fn pinned_stay(dev: &Device, h: u32) -> TestResult {
    let addr = ok(dev.mmap(h, 0, CMA_OBJ), "mmap")?;
    let addrs: Vec<*mut libc::c_void> = (0..CMA_OBJ / PAGE)
        .map(|i| (addr + i * PAGE) as *mut libc::c_void)
        .collect();
    let out = (|| {
        for a in &addrs {
            // SAFETY: inside the mapping the kernel gave us.
            let _ = unsafe { std::ptr::read_volatile(*a as *const u8) };
        }
        let target: Vec<i32> = where_are(&addrs)?.iter().map(|&n| 1 - n).collect();
        let before = Counters::read()?;
        let moved = move_to(&addrs, &target)?;
        let d = Counters::read()?.since(&before);
        ensure!(
            moved == 0 && d.get("migrated_in_place") == 0,
            "move_pages moved {moved} pages of a pinned object: {d}"
        );
        ensure!(
            d.get("refused_dma_pinned") > 0 && d.get("refused_pinned_vma") == 0,
            "the pinned folios were not refused as pinned through GUP \
             (not FOLL_PIN'd?): {d}"
        );
        Ok(())
    })();
    // SAFETY: unmapping what the kernel mapped for us.
    unsafe { libc::munmap(addr as *mut libc::c_void, CMA_OBJ as usize) };
    out
}

/// PIN and VMAP over huge objects (`CREATE_HUGE`, PMD-sized THPs) in a
/// ZONE_MOVABLE memory block: the pages leave the block, which then goes
/// offline with the pins held; the pinned folios cannot move.
fn longterm_huge_pins_leave_zone_movable() -> TestResult {
    let block = MovableBlock::new()?;
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let value = 0x1e97_0000;
    let objs = {
        let _no_shrinker = Param::set("shrinker", "0")?;
        let _bound = Bound::to(1)?;
        filled_objects_with(&dev, 4, value, uapi::CREATE_HUGE)?
    };
    let handles: Vec<u32> = objs.iter().map(|o| o.0).collect();
    let out = (|| {
        let bad = Unpinnable::read()?;
        let placed = huge_and_placed(&dev, &handles, &bad)?;
        let (half, rest) = placed.split_at(placed.len() / 2);
        let mut want = each(half, Kind::Pin);
        want.extend(each(rest, Kind::Vmap));
        let before = Counters::read()?;
        let pins = take_all(&dev, &want)?;
        let d = Counters::read()?.since(&before);
        pins_moved_out(&dev, &pins, &bad, true, &d)?;
        let (_, wrong) = gtt_check()?;
        ensure!(wrong == 0, "GTT check: {wrong} entries wrong");
        pinned_stay(&dev, placed[0])?;
        let done = set_block(block.0, "offline", 120)?;
        ensure!(
            done == Done::Done,
            "memory{} did not go offline under pins that left it: {done:?}",
            block.0
        );
        objects_intact(&dev, &objs, value)?;
        println!(
            "  memory{}: {} PIN and {} VMAP over huge objects in it moved their pages out \
             ({} large folios in place), the block went offline under the pins",
            block.0,
            half.len(),
            rest.len(),
            d.get("migrated_in_place_large")
        );
        drop(pins);
        Ok(())
    })();
    for h in handles {
        let _ = dev.close(h);
    }
    drop(block);
    out
}

/// PIN and VMAP over huge objects in the CMA area, the device asleep:
/// the pages leave the area, and `cma_alloc()` of the whole area
/// succeeds with the pins held.
fn longterm_huge_pins_leave_cma() -> TestResult {
    let cma = Cma::find()?;
    let dev = ok(Device::open(), "open")?;
    let value = 0x1eca_0000;
    let objs = objects_in_cma_with(&dev, &cma, value, uapi::CREATE_HUGE)?;
    let handles: Vec<u32> = objs.iter().map(|o| o.0).collect();
    let out = (|| {
        let bad = Unpinnable::read()?;
        let placed = huge_and_placed(&dev, &handles, &bad)?;
        asleep_if(false)?;
        let (half, rest) = placed.split_at(placed.len() / 2);
        let mut want = each(half, Kind::Pin);
        want.extend(each(rest, Kind::Vmap));
        let before = Counters::read()?;
        let pins = take_all(&dev, &want)?;
        let d = Counters::read()?.since(&before);
        pins_moved_out(&dev, &pins, &bad, false, &d)?;
        let taken = cma.take_all()?;
        drop(taken);
        objects_intact(&dev, &objs, value)?;
        println!(
            "  CMA: {} huge objects with pages in the area ({} PIN, {} VMAP) moved out \
             ({} large folios in place), asleep; cma_alloc of the area done under the pins",
            placed.len(),
            half.len(),
            rest.len(),
            d.get("migrated_in_place_large")
        );
        drop(pins);
        Ok(())
    })();
    for h in handles {
        let _ = dev.close(h);
    }
    out
}

pub(super) const TESTS: &[Test] = &[
    (
        "longterm_pins_leave_zone_movable",
        longterm_pins_leave_zone_movable,
    ),
    ("longterm_pins_leave_cma", longterm_pins_leave_cma),
    (
        "longterm_huge_pins_leave_zone_movable",
        longterm_huge_pins_leave_zone_movable,
    ),
    ("longterm_huge_pins_leave_cma", longterm_huge_pins_leave_cma),
    (
        "longterm_pin_of_busy_object_retries",
        longterm_pin_of_busy_object_retries,
    ),
];
