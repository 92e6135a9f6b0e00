// SPDX-License-Identifier: GPL-2.0

//! Migration users beyond compaction and `move_pages(2)`: soft offline of
//! a page that reports errors (`madvise(MADV_SOFT_OFFLINE)`), CMA
//! (`cma_alloc()`, through CMA's debugfs, on the `cma=` area of the check
//! boot), memory offlining (a ZONE_MOVABLE memory block through sysfs)
//! and NUMA balancing (hinting faults on a CPU mapping, which migrate in
//! `MIGRATE_ASYNC`), over bound idle objects, with the device awake and
//! asleep.
//! Each first runs with `hook=off`, where it must fail: the objects'
//! references make their folios unmovable for plain `migrate_folio()`.
//! That run is what shows the test can fail; then the same request with
//! the default hook must succeed, in place, with the data intact.  NUMA
//! balancing over an object with a cached kernel mapping must be refused
//! (`refused_would_sleep`: `MIGRATE_ASYNC` may not `vunmap()`) until the
//! mapping is purged.

use std::fs;

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, Control, Counters, GpuAwake, Param};
use movgem_guest::{ensure, TestResult};

use std::time::{Duration, Instant};

use super::common::{
    check_fill_sized, mbind, node_free_kib, node_of_pfn, node_watermark_kib, ok, set_mempolicy,
    where_are, Anon, Knob, MPOL_BIND, MPOL_DEFAULT, PAGE,
};
use super::inplace::{gtt_check, nothing_released, only_frame_changed, Mapped, PICK, SIZE};
use super::trace::{migrate_calls, Attempts, Recording, MIGRATION_EVENTS};
use super::Test;

/// Soft-offlines the page mapped at `addr`, as a corrected-error
/// threshold would: `soft_offline_page()` through
/// /sys/devices/system/memory/soft_offline_page (its physical address,
/// from pagemap).  `madvise(MADV_SOFT_OFFLINE)` reaches the same function,
/// but tinyconfig leaves out the madvise syscall (`ADVISE_SYSCALLS`).
/// The errno if the kernel refused.
fn soft_offline(addr: *mut libc::c_void) -> Result<Result<(), i32>, String> {
    let pfn = env::frames(&[addr])?[0];
    ensure!(pfn != 0, "no frame at {addr:?} (not root?)");
    let file = "/sys/devices/system/memory/soft_offline_page";
    Ok(match fs::write(file, format!("{:#x}", pfn * PAGE)) {
        Ok(()) => Ok(()),
        Err(e) => Err(e.raw_os_error().unwrap_or(0)),
    })
}

/// The device held awake for a run, from before its objects are made
/// (hardware entries exist only for bindings made or restored while the
/// device is awake); `None` for a run asleep.
pub(super) fn awake_if(awake: bool) -> Result<Option<GpuAwake>, String> {
    awake.then(GpuAwake::new).transpose()
}

/// For a run asleep, waits until the device has suspended.
pub(super) fn asleep_if(awake: bool) -> TestResult {
    if !awake {
        env::wait_runtime_status("suspended", 60_000)?;
    }
    Ok(())
}

/// What an in-place move must show for the device's state: the hardware
/// entry written if awake; asleep, not woken and nothing refused.
pub(super) fn power_respected(awake: bool, d: &Counters) -> TestResult {
    if awake {
        ensure!(
            d.get("hw_entries_rewritten") > 0,
            "the awake device's entries were not rewritten: {d}"
        );
    } else {
        ensure!(
            env::runtime_status()? == "suspended" && d.get("runtime_resumes") == 0,
            "the migration woke the device: {d}"
        );
        ensure!(
            d.get("hw_entries_rewritten") == 0 && d.get("refused_suspended") == 0,
            "hardware written or refused while suspended: {d}"
        );
    }
    Ok(())
}

/// What every in-place run must show after the migration user ran:
/// the device's state respected, nothing released, the GTT clean.
fn moved_in_place(awake: bool, d: &Counters) -> TestResult {
    power_respected(awake, d)?;
    nothing_released(d)?;
    let (_, wrong) = gtt_check()?;
    ensure!(wrong == 0, "GTT check: {wrong} entries wrong");
    Ok(())
}

/// `n` objects of `CMA_OBJ` bytes, object `i` filled by the GPU with
/// `value + i`; their handles and GTT offsets.
pub(super) fn filled_objects(dev: &Device, n: u32, value: u32) -> Result<Vec<(u32, u64)>, String> {
    filled_objects_with(dev, n, value, 0)
}

/// [`filled_objects`] created with `flags` (`CREATE_HUGE`).
pub(super) fn filled_objects_with(
    dev: &Device,
    n: u32,
    value: u32,
    flags: u32,
) -> Result<Vec<(u32, u64)>, String> {
    let mut objs = Vec::new();
    for i in 0..n {
        let h = ok(dev.create_with(CMA_OBJ, flags), "create")?;
        let filled = ok(
            dev.execbuf(&[(h, true)], uapi::OP_FILL, value + i, 0, 0),
            "execbuf fill",
        )
        .and_then(|o| ok(dev.wait(h, -1), "wait").map(|_| o[0]));
        match filled {
            Ok(offset) => objs.push((h, offset)),
            Err(e) => {
                let _ = dev.close(h);
                return Err(e);
            }
        }
    }
    Ok(objs)
}

/// Every object of [`filled_objects`] still at its GTT offset, and what
/// the GPU wrote is what the GPU and the CPU read.
pub(super) fn objects_intact(dev: &Device, objs: &[(u32, u64)], value: u32) -> TestResult {
    for (i, &(h, offset)) in objs.iter().enumerate() {
        let got = ok(
            dev.execbuf(&[(h, false)], uapi::OP_CHECK, value + i as u32, 0, 0),
            "execbuf check",
        )?;
        ensure!(got[0] == offset, "object {i}: GTT offset changed");
        check_fill_sized(dev, h, value + i as u32, CMA_OBJ)?;
    }
    Ok(())
}

fn soft_offline_in_place(awake: bool) -> TestResult {
    let _awake = awake_if(awake)?;
    let dev = ok(Device::open(), "open")?;
    let value = if awake { 0x50f7_0001 } else { 0x50f7_0002 };
    let m = Mapped::new(&dev, value)?;
    asleep_if(awake)?;
    let frames = env::frames(&m.addrs)?;
    let target = frames[PICK];
    let picked = |p: u64| p == target;
    // Negative control, on the same page: plain migrate_folio() cannot
    // move a folio the object holds, so soft offline's migration
    // (`memory_failure`) reaches the hook, which passes the folio on, the
    // migration fails, soft offline answers EBUSY and nothing changes.
    let rec = Recording::start(MIGRATION_EVENTS)?;
    let before = Counters::read()?;
    let refused = {
        let _off = Param::set("hook", "off")?;
        soft_offline(m.addrs[PICK])?
    };
    let d = Counters::read()?.since(&before);
    let (events, _) = rec.stop()?;
    let a = Attempts::of(&migrate_calls(events), "memory_failure", &picked);
    ensure!(
        refused == Err(libc::EBUSY),
        "soft offline with hook=off: {refused:?}, wanted EBUSY (migration failed): \
         this test could not fail"
    );
    ensure!(
        a.hooks() > 0 && a.others_than("bypassed") == 0 && a.succeeded == 0 && a.failed > 0,
        "soft offline with hook=off: not a failed migration of page {PICK} through the \
         bypassed hook: {a}"
    );
    ensure!(
        d.get("migrated_in_place") == 0 && env::frames(&m.addrs)? == frames,
        "hook=off moved something: {d}"
    );
    // With the hook, the same page: it moves in place, the object stays
    // bound.
    let rec = Recording::start(MIGRATION_EVENTS)?;
    let before = Counters::read()?;
    let done = soft_offline(m.addrs[PICK])?;
    let d = Counters::read()?.since(&before);
    let (events, _) = rec.stop()?;
    done.map_err(|e| {
        format!(
            "soft offline failed: {}",
            std::io::Error::from_raw_os_error(e)
        )
    })?;
    let moved = Attempts::of(&migrate_calls(events), "memory_failure", &picked);
    ensure!(
        d.get("migrated_in_place") == 1 && d.get("gtt_entries_rewritten") == 1,
        "not one folio moved in place: {d}"
    );
    ensure!(
        moved.outcomes.get("in_place") == Some(&1) && moved.succeeded == 1,
        "page {PICK} was not moved in place by soft offline's migration: {moved}"
    );
    moved_in_place(awake, &d)?;
    only_frame_changed(&frames, &env::frames(&m.addrs)?, PICK)?;
    let got = m.gpu(uapi::OP_CHECK, value)?;
    ensure!(got == m.offset, "GTT offset changed");
    check_fill_sized(&dev, m.h, value, SIZE)?;
    println!(
        "  soft offline of page {PICK} ({}): EBUSY with hook=off ({} bypassed hook calls, the \
         migration failed), moved in place with it",
        if awake { "awake" } else { "asleep" },
        a.hooks()
    );
    Ok(())
}

fn soft_offline_awake() -> TestResult {
    soft_offline_in_place(true)
}

fn soft_offline_asleep() -> TestResult {
    soft_offline_in_place(false)
}

/// The CMA area of the check boot (`cma=` on the command line), shared
/// with the benchmarks.
pub(super) use movgem_guest::env::CmaArea as Cma;

/// This task's memory policy bound to one node until dropped.
pub(super) struct Bound;

impl Bound {
    pub(super) fn to(node: u32) -> Result<Self, String> {
        ensure!(set_mempolicy(MPOL_BIND, Some(node)), "set_mempolicy");
        Ok(Self)
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        set_mempolicy(MPOL_DEFAULT, None);
    }
}

/// Objects put into CMA: 48 MiB in 4 MiB objects.
pub(super) const CMA_OBJ: u64 = 4 << 20;
const CMA_OBJS: u32 = 12;
/// Node free memory left above the low watermark while the area is held.
const CMA_LEAVE_KIB: u64 = 4 << 10;

/// Bound idle objects written by the GPU, placed in the CMA area: the
/// area is taken, the node filled with anonymous memory to just above
/// its low watermark, the area given back, and the objects created
/// there; movable allocations prefer CMA while it holds more than half of
/// a zone's free memory.  The shrinker is off meanwhile, so that it
/// cannot release the objects and make the test pass for that reason.
pub(super) fn objects_in_cma(
    dev: &Device,
    cma: &Cma,
    value: u32,
) -> Result<Vec<(u32, u64)>, String> {
    objects_in_cma_with(dev, cma, value, 0)
}

/// [`objects_in_cma`] created with `flags` (`CREATE_HUGE`).
pub(super) fn objects_in_cma_with(
    dev: &Device,
    cma: &Cma,
    value: u32,
    flags: u32,
) -> Result<Vec<(u32, u64)>, String> {
    let node = node_of_pfn(cma.base_pfn)?;
    let _no_shrinker = Param::set("shrinker", "0")?;
    let taken = cma
        .take_all()
        .map_err(|e| format!("the CMA area is not free: {e}"))?;
    let keep = node_watermark_kib(node, "low")? + CMA_LEAVE_KIB;
    let room = node_free_kib(node)?.saturating_sub(keep) << 10;
    let mut anon = Anon::new(room.max(PAGE) as usize, 0)?;
    ensure!(mbind(anon.addr, anon.len, node), "mbind");
    for chunk in anon.words().chunks_mut(1 << 18) {
        if node_free_kib(node)? < keep {
            break;
        }
        for w in chunk.iter_mut().step_by(PAGE as usize / 4) {
            *w = 1;
        }
    }
    drop(taken);
    let _bound = Bound::to(node)?;
    filled_objects_with(dev, CMA_OBJS, value, flags)
}

/// What a `cma_alloc()` refused by the objects' folios records.
const CMA_EVENTS: &[&str] = &[
    "movgem/movgem_migrate_folio",
    "migrate/mm_migrate_pages",
    "cma/cma_alloc_finish",
];

/// `cma_alloc()` of the whole area, which must fail the way it fails
/// when a folio in the area will not move, and for no other reason:
/// CMA's debugfs answers `ENOMEM` (as for any failure), `cma_alloc()`
/// ended with `-EBUSY` (the range busy; an area partly taken would give
/// `-ENOMEM`), and its migration (`contig_range`) met folios of ours in
/// the area, for each of which the hook's outcome was `want`
/// (`bypassed` with `hook=off`; `refused:REASON` for a refusal), and
/// failed, no folio moving in place.  Returns the migration's attempts
/// on the area and the counters' movement.
pub(super) fn cma_refused(cma: &Cma, want: &str) -> Result<(Attempts, Counters), String> {
    let rec = Recording::start(CMA_EVENTS)?;
    let before = Counters::read()?;
    let got = cma.try_take_all().map(drop);
    let d = Counters::read()?.since(&before);
    let (events, _) = rec.stop()?;
    ensure!(
        got == Err(libc::ENOMEM),
        "cma_alloc of the whole area: {got:?}, wanted Err(ENOMEM), CMA's debugfs for a failed \
         allocation: the objects were not in the area, this test could not fail; {d}"
    );
    let finished: Vec<i64> = events
        .iter()
        .filter(|e| e.name == "cma_alloc_finish" && e.num("count") == Some(cma.count as i64))
        .filter_map(|e| e.num("errorno"))
        .collect();
    ensure!(
        finished == [-i64::from(libc::EBUSY)],
        "cma_alloc of the whole area ended with {finished:?}, wanted [-EBUSY] (the range busy, \
         a folio that would not move); {d}"
    );
    let area = cma.base_pfn..cma.base_pfn + cma.count;
    let a = Attempts::of(&migrate_calls(events), "contig_range", &|p| {
        area.contains(&p)
    });
    ensure!(
        a.hooks() > 0 && a.failed > 0,
        "cma_alloc's migration met no folio of ours in the area, or none failed: {a}; {d}"
    );
    ensure!(
        a.others_than(want) == 0,
        "the hook did other than {want} with folios in the area: {a}; {d}"
    );
    ensure!(
        d.get("migrated_in_place") == 0,
        "a folio moved in place: {d}"
    );
    Ok((a, d))
}

fn cma_alloc_over_objects(awake: bool) -> TestResult {
    let cma = Cma::find()?;
    let _awake = awake_if(awake)?;
    let dev = ok(Device::open(), "open")?;
    let value = if awake { 0xc3a0_0000 } else { 0xc3b0_0000 };
    let placed = objects_in_cma(&dev, &cma, value);
    let out = placed.as_ref().map_err(|e| e.clone()).and_then(|objs| {
        let total = env::meminfo_kib("CmaTotal")?;
        let free = env::meminfo_kib("CmaFree")?;
        asleep_if(awake)?;
        // Negative control: with plain migrate_folio() the objects' folios
        // stay where they are, so the area cannot be allocated.
        let (a, _) = {
            let _off = Param::set("hook", "off")?;
            cma_refused(&cma, "bypassed")
        }
        .map_err(|e| format!("hook=off ({free} of {total} KiB of CMA free before): {e}"))?;
        // With the hook: the whole area is allocated, the objects' folios
        // move out in place.
        let before = Counters::read()?;
        let taken = cma.take_all()?;
        let d = Counters::read()?.since(&before);
        drop(taken);
        ensure!(
            d.get("migrated_in_place") > 0,
            "cma_alloc succeeded without moving an object's folio: {d}"
        );
        moved_in_place(awake, &d)?;
        objects_intact(&dev, objs, value)?;
        println!(
            "  cma_alloc of {} pages ({}): {free} of {total} KiB of CMA free with the objects in \
             it; with hook=off EBUSY ({} bypassed hook calls in the area, the migration failed), \
             done with the hook: {} folios moved in place",
            cma.count,
            if awake { "awake" } else { "asleep" },
            a.hooks(),
            d.get("migrated_in_place")
        );
        Ok(())
    });
    if let Ok(objs) = &placed {
        for &(h, _) in objs {
            let _ = dev.close(h);
        }
    }
    out
}

fn cma_alloc_awake() -> TestResult {
    cma_alloc_over_objects(true)
}

fn cma_alloc_asleep() -> TestResult {
    cma_alloc_over_objects(false)
}

/// Memory block writes and lookups, shared with the benchmarks.
pub(super) use movgem_guest::env::{
    memory_block_file as block_file, memory_blocks_of as blocks_of, BlockWrite as Done,
};

/// Writes `state` to memory block `block` from a child process, which is
/// killed after `secs` ([`env::set_memory_block`]).
pub(super) fn set_block(block: u32, state: &str, secs: u64) -> Result<Done, String> {
    env::set_memory_block(block, state, secs as f64)
}

/// A memory block of node 1 taken offline and brought back as
/// ZONE_MOVABLE (empty, so the next movable allocations bound to the
/// node land in it); onlined movable again on drop.  The guest's init
/// made one block of node 1 movable at boot, so that one can go offline.
pub(super) struct MovableBlock(pub(super) u32);

impl MovableBlock {
    pub(super) fn new() -> Result<Self, String> {
        let mut tried = Vec::new();
        for b in blocks_of(1)?.into_iter().take(4) {
            // A block with unmovable pages (or the CMA area) refuses at
            // once; try the next one down.
            match set_block(b, "offline", 120)? {
                Done::Done => {}
                other => {
                    tried.push(format!("memory{b}: {other:?}"));
                    continue;
                }
            }
            let zones = block_file(b, "valid_zones")?;
            if !zones.split_whitespace().any(|z| z == "Movable") {
                let _ = set_block(b, "online", 60);
                return Err(format!("memory{b} cannot be ZONE_MOVABLE: {zones}"));
            }
            ensure!(
                set_block(b, "online_movable", 60)? == Done::Done,
                "memory{b}: online_movable failed"
            );
            return Ok(Self(b));
        }
        Err(format!(
            "no memory block of node 1 could go offline: {tried:?}"
        ))
    }
}

/// How long an offlining that must not succeed runs before it is
/// killed.
pub(super) const OFFLINE_REFUSED_SECS: u64 = 20;

impl MovableBlock {
    /// Offlines the block over folios that will not move, which must
    /// leave it the way offlining fails then and no other way:
    /// `offline_pages()` retries migration (`memory_hotplug`) until the
    /// writer gets a signal, so it must be still retrying when killed
    /// after [`OFFLINE_REFUSED_SECS`], having tried more than once, every
    /// try failing some folio, and no folio moved in place.  An `EBUSY`
    /// (a page that isolation calls unmovable) or `EINVAL` is another
    /// failure, not this one.  Returns how many migrations were tried and
    /// the counters' movement, for the caller to name whose refusal it
    /// was.
    pub(super) fn offline_refused(&self) -> Result<(usize, Counters), String> {
        let rec = Recording::start(&["migrate/mm_migrate_pages"])?;
        let before = Counters::read()?;
        let got = set_block(self.0, "offline", OFFLINE_REFUSED_SECS)?;
        let d = Counters::read()?.since(&before);
        let (events, _) = rec.stop()?;
        let tries: Vec<(u64, u64)> = migrate_calls(events)
            .iter()
            .filter(|c| c.reason == "memory_hotplug")
            .map(|c| (c.succeeded, c.failed))
            .collect();
        ensure!(
            got == Done::TimedOut,
            "offlining memory{}: {got:?}, wanted still retrying when killed after \
             {OFFLINE_REFUSED_SECS} s ({} migrations tried): this test could not fail; {d}",
            self.0,
            tries.len()
        );
        ensure!(
            tries.len() >= 2 && tries.iter().all(|&(_, failed)| failed > 0),
            "offlining memory{} was not retrying a failed migration: (moved, failed) pages per \
             try {tries:?}; {d}",
            self.0
        );
        ensure!(
            d.get("migrated_in_place") == 0,
            "a folio moved in place: {d}"
        );
        Ok((tries.len(), d))
    }

    /// Takes the block offline twice over the objects in it: first with
    /// `hook=off`, where it must fail ([`Self::offline_refused`]: plain
    /// `migrate_folio()` finds the objects' references, through the
    /// bypassed hook), then with the hook, where it must succeed.
    /// Returns how many migrations the first tried and the counters of
    /// the second.
    pub(super) fn offline_after_control(&self) -> Result<(usize, Counters), String> {
        let (tries, d) = {
            let _off = Param::set("hook", "off")?;
            self.offline_refused()?
        };
        ensure!(
            d.get("hook_bypassed") > 0,
            "offlining memory{} with hook=off never reached an object's folio: {d}",
            self.0
        );
        let before = Counters::read()?;
        let done = set_block(self.0, "offline", 120)?;
        let d = Counters::read()?.since(&before);
        ensure!(
            done == Done::Done,
            "memory{} did not go offline with the hook: {done:?}; {d}",
            self.0
        );
        Ok((tries, d))
    }
}

impl Drop for MovableBlock {
    fn drop(&mut self) {
        // Movable again, as the guest's init made it: a block of a kernel
        // zone collects unmovable pages and may never go offline again.
        if block_file(self.0, "state").as_deref() == Ok("offline")
            && set_block(self.0, "online_movable", 60).ok() != Some(Done::Done)
        {
            let _ = set_block(self.0, "online", 60);
        }
    }
}

fn memory_offline_over_objects(awake: bool) -> TestResult {
    let block = MovableBlock::new()?;
    let _awake = awake_if(awake)?;
    let dev = ok(Device::open(), "open")?;
    let value = if awake { 0x0ff1_0000 } else { 0x0ff2_0000 };
    let objs = {
        let _no_shrinker = Param::set("shrinker", "0")?;
        let _bound = Bound::to(1)?;
        filled_objects(&dev, 4, value)?
    };
    asleep_if(awake)?;
    let (tries, d) = block.offline_after_control()?;
    ensure!(
        d.get("migrated_in_place") > 0,
        "offline without moving an object's folio: {d}"
    );
    moved_in_place(awake, &d)?;
    objects_intact(&dev, &objs, value)?;
    println!(
        "  memory{} offline ({}): hook=off still retrying when killed after \
         {OFFLINE_REFUSED_SECS} s ({tries} migrations failed); with the hook done, {} folios \
         moved in place",
        block.0,
        if awake { "awake" } else { "asleep" },
        d.get("migrated_in_place")
    );
    drop(block);
    Ok(())
}

fn memory_offline_awake() -> TestResult {
    memory_offline_over_objects(true)
}

fn memory_offline_asleep() -> TestResult {
    memory_offline_over_objects(false)
}

/// `MPOL_F_NUMA_BALANCING`: with `MPOL_BIND`, lets NUMA balancing move
/// the pages between the bound nodes.  A shmem mapping needs a policy of
/// its own with this flag: `task_numa_work()` skips a VMA whose
/// `get_policy()` has no `MPOL_F_MOF`.
const MPOL_F_NUMA_BALANCING: libc::c_int = 1 << 13;

/// The node of the CPU this task runs on (`getcpu(2)`): where NUMA
/// balancing wants the pages.  With `numa=fake` every CPU belongs to
/// node 0 for `cpu_to_node()`, though each fake node lists them all.
fn cpu_node() -> Result<u32, String> {
    let (mut cpu, mut node) = (0u32, 0u32);
    // SAFETY: two u32s of ours; the cache argument is unused since 2.6.24.
    let r = unsafe {
        libc::syscall(
            libc::SYS_getcpu,
            &mut cpu as *mut u32,
            &mut node as *mut u32,
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    ensure!(r == 0, "getcpu: {}", std::io::Error::last_os_error());
    ensure!(
        node < 2,
        "CPU {cpu} on node {node}: the test wants node 0 or 1"
    );
    Ok(node)
}

/// Reads every page of `addrs` (each in a mapping of ours) until `until`
/// says stop or `secs` pass; returns whether `until` said stop.
pub(super) fn touch_until(
    addrs: &[*mut libc::c_void],
    secs: u64,
    mut until: impl FnMut() -> Result<bool, String>,
) -> Result<bool, String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        for _ in 0..20 {
            for a in addrs {
                // SAFETY: inside a mapping of the caller's.
                let _ = unsafe { std::ptr::read_volatile(*a as *const u32) };
            }
        }
        if until()? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Lets NUMA balancing move the pages of the shared mapping at `addr`
/// (`len` bytes) between both nodes: a policy of its own, `MPOL_BIND |
/// MPOL_F_NUMA_BALANCING` over nodes 0 and 1.
pub(super) fn numa_balanced(addr: *mut libc::c_void, len: u64) -> TestResult {
    let both: libc::c_ulong = 0b11;
    // SAFETY: a mapping of the caller's and one word of node mask.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr,
            len as usize,
            MPOL_BIND | MPOL_F_NUMA_BALANCING,
            &both as *const libc::c_ulong,
            64usize,
            0u32,
        )
    };
    ensure!(
        r == 0,
        "mbind MPOL_F_NUMA_BALANCING: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// NUMA balancing on, scanning as often as it may, until dropped.
pub(super) struct NumaBalancing(Vec<Knob>);

impl NumaBalancing {
    pub(super) fn on() -> Result<Self, String> {
        let mut knobs = vec![Knob::set("/proc/sys/kernel/numa_balancing", "1")?];
        // Faster scanning where the scheduler's debugfs has the tunables.
        let tune = "/sys/kernel/debug/sched/numa_balancing";
        knobs.extend(
            [
                ("scan_delay_ms", "0"),
                ("scan_period_min_ms", "10"),
                ("scan_period_max_ms", "100"),
            ]
            .iter()
            .filter_map(|(k, v)| Knob::set(&format!("{tune}/{k}"), v).ok()),
        );
        Ok(Self(knobs))
    }
}

impl Drop for NumaBalancing {
    fn drop(&mut self) {
        // The tunables first, NUMA balancing itself last.
        while let Some(k) = self.0.pop() {
            drop(k);
        }
    }
}

/// The node the CPU runs on and the other one: where NUMA balancing
/// moves pages to, and where a test puts them first.
pub(super) fn home_and_away() -> Result<(u32, u32), String> {
    let home = cpu_node()?;
    Ok((home, 1 - home))
}

/// How many of `addrs` are on `node`.
pub(super) fn pages_on(addrs: &[*mut libc::c_void], node: u32) -> Result<usize, String> {
    Ok(where_are(addrs)?
        .iter()
        .filter(|&&n| n == node as i32)
        .count())
}

fn numa_balancing_in_place(awake: bool) -> TestResult {
    let (home, away) = home_and_away()?;
    let _awake = awake_if(awake)?;
    let dev = ok(Device::open(), "open")?;
    let value = if awake { 0x4e0b_0001 } else { 0x4e0b_0002 };
    let m = {
        let _bound = Bound::to(away)?;
        Mapped::new(&dev, value)?
    };
    ensure!(
        where_are(&m.addrs)?.iter().all(|&n| n == away as i32),
        "the object's pages did not start on node {away}"
    );
    numa_balanced(m.addrs[0], SIZE)?;
    asleep_if(awake)?;
    let _numa = NumaBalancing::on()?;
    let home_pages = || pages_on(&m.addrs, home);
    // Negative control: hinting faults come, NUMA balancing tries to
    // migrate the object's folios to the CPU's node (`numa_misplaced`,
    // one folio a call), the hook passes each on, plain migrate_folio()
    // cannot move it, every such migration fails and the pages stay
    // away; whatever `numa_pages_migrated` counts meanwhile is other
    // memory's (the calls that met none of the object's folios).
    let frames = env::frames(&m.addrs)?;
    let ours = |p: u64| frames.contains(&p);
    let rec = Recording::start(MIGRATION_EVENTS)?;
    let vm = Counters::vmstat()?;
    let before = Counters::read()?;
    {
        let _off = Param::set("hook", "off")?;
        touch_until(&m.addrs, 60, || {
            Ok(Counters::vmstat()?.since(&vm).get("numa_hint_faults") >= 2 * SIZE / PAGE)
        })?;
    }
    let faults = Counters::vmstat()?.since(&vm);
    let d = Counters::read()?.since(&before);
    let (events, overran) = rec.stop()?;
    let off = Attempts::of(&migrate_calls(events), "numa_misplaced", &ours);
    let off_faults = faults.get("numa_hint_faults");
    let vm_names = ["numa_hint_faults", "numa_pages_migrated", "pgmigrate_fail"];
    ensure!(
        off_faults > 0,
        "no NUMA hinting fault in 60 s: NUMA balancing never scanned the mapping, \
         this test could not fail"
    );
    ensure!(
        !overran,
        "the trace buffer overran: cannot tell whose migrations failed"
    );
    ensure!(
        off.calls > 0 && off.hooks() > 0,
        "NUMA balancing never tried to migrate a folio of the object in {off_faults} hinting \
         faults ({off}): this test could not fail; {}",
        faults.pick(&vm_names)
    );
    ensure!(
        off.others_than("bypassed") == 0 && off.succeeded == 0 && off.failed >= off.calls,
        "with hook=off NUMA balancing's migrations of the object's folios did not all fail \
         through the bypassed hook: {off}; {d}"
    );
    ensure!(
        faults.get("numa_pages_migrated") <= off.other_succeeded,
        "numa_pages_migrated rose by more than the migrations that met none of the object's \
         folios moved: {off}; {}",
        faults.pick(&vm_names)
    );
    ensure!(
        home_pages()? == 0 && d.get("migrated_in_place") == 0 && env::frames(&m.addrs)? == frames,
        "pages moved with hook=off: {d}; {}",
        faults.pick(&vm_names)
    );
    // With the hook: the pages follow the CPU, in place, each by a
    // migration of NUMA balancing that succeeded.
    let rec = Recording::start(MIGRATION_EVENTS)?;
    let vm = Counters::vmstat()?;
    let before = Counters::read()?;
    let all = touch_until(&m.addrs, 120, || Ok(home_pages()? == m.addrs.len()))?;
    let d = Counters::read()?.since(&before);
    let faults = Counters::vmstat()?.since(&vm);
    let (events, overran) = rec.stop()?;
    let on = Attempts::of(&migrate_calls(events), "numa_misplaced", &ours);
    let moved = home_pages()?;
    ensure!(
        all,
        "{moved} of {} pages followed the CPU in 120 s: {d}; {}; {on}",
        m.addrs.len(),
        faults.pick(&vm_names)
    );
    ensure!(
        d.get("migrated_in_place") >= moved as u64,
        "pages moved, not by the hook in place: {d}"
    );
    ensure!(
        !overran,
        "the trace buffer overran: cannot tell whose migrations succeeded"
    );
    ensure!(
        on.succeeded >= moved as u64
            && on.outcomes.get("in_place").copied().unwrap_or(0) >= moved as u64
            && faults.get("numa_pages_migrated") >= on.succeeded,
        "{moved} pages followed the CPU, not each by a NUMA balancing migration that moved it \
         in place: {on}; {}",
        faults.pick(&vm_names)
    );
    moved_in_place(awake, &d)?;
    let got = m.gpu(uapi::OP_CHECK, value)?;
    ensure!(got == m.offset, "GTT offset changed");
    check_fill_sized(&dev, m.h, value, SIZE)?;
    println!(
        "  NUMA balancing ({}): hook=off {off_faults} hinting faults, {} migrations of the \
         object's folios tried and failed ({} bypassed hook calls), nothing moved; with the hook \
         all {moved} pages followed the CPU, {} migrations moved {} pages in place ({})",
        if awake { "awake" } else { "asleep" },
        off.calls,
        off.hooks(),
        on.calls,
        on.succeeded,
        faults.pick(&["numa_hint_faults", "numa_pages_migrated"])
    );
    Ok(())
}

/// NUMA balancing migrates in `MIGRATE_ASYNC`, which must not sleep.  A
/// folio of an object with a cached kernel mapping (VMAP, then VUNMAP:
/// cached, no longer pinned) could move only after a `vunmap()`, which
/// sleeps: the hook refuses it (`refused_would_sleep`) and the pages stay
/// away.  The control, in the same test: the mapping purged (through the
/// kernel's vmap purge notifier), the same hinting faults move the pages
/// to the CPU's node in place, and nothing is refused for that reason.
fn numa_balancing_refuses_cached_vmap() -> TestResult {
    let (home, away) = home_and_away()?;
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let value = 0x4e0b_5eed;
    let m = {
        let _bound = Bound::to(away)?;
        Mapped::new(&dev, value)?
    };
    ok(dev.vmap(m.h), "vmap")?;
    ok(dev.vunmap(m.h), "vunmap")?;
    let info = ok(dev.info(), "info")?;
    ensure!(
        info.cached_vmaps >= 1,
        "no cached mapping after VMAP and VUNMAP: {info:?}"
    );
    ensure!(
        pages_on(&m.addrs, away)? == m.addrs.len(),
        "the object's pages did not start on node {away}"
    );
    numa_balanced(m.addrs[0], SIZE)?;
    let _numa = NumaBalancing::on()?;
    let vm = Counters::vmstat()?;
    let before = Counters::read()?;
    let refused = touch_until(&m.addrs, 60, || {
        Ok(Counters::read()?.since(&before).get("refused_would_sleep") > 0)
    })?;
    let d = Counters::read()?.since(&before);
    let faults = Counters::vmstat()?.since(&vm);
    ensure!(
        refused,
        "no refused_would_sleep in 60 s of hinting faults over a cached mapping: {d}; {}",
        faults.pick(&["numa_hint_faults", "numa_pages_migrated"])
    );
    ensure!(
        d.get("migrated_in_place") == 0 && pages_on(&m.addrs, home)? == 0,
        "a page of the object with a cached mapping moved in MIGRATE_ASYNC: {d}"
    );
    let refusals = d.get("refused_would_sleep");
    // The control: no cached mapping, the same faults move the pages.
    Control::open()?.cmd("vmap_overflow 0")?;
    let info = ok(dev.info(), "info")?;
    ensure!(
        info.cached_vmaps == 0,
        "the vmap purge notifier left the mapping: {info:?}"
    );
    let before = Counters::read()?;
    let all = touch_until(&m.addrs, 120, || {
        Ok(pages_on(&m.addrs, home)? == m.addrs.len())
    })?;
    let d = Counters::read()?.since(&before);
    let moved = pages_on(&m.addrs, home)?;
    ensure!(
        all,
        "{moved} of {} pages followed the CPU in 120 s once the mapping was purged: {d}",
        m.addrs.len()
    );
    ensure!(
        d.get("refused_would_sleep") == 0 && d.get("migrated_in_place") >= moved as u64,
        "without a cached mapping: {d}"
    );
    check_fill_sized(&dev, m.h, value, SIZE)?;
    println!(
        "  NUMA balancing over a cached mapping: {refusals} folios refused (would sleep), none \
         moved; purged, all {moved} pages followed the CPU in place"
    );
    Ok(())
}

fn numa_balancing_awake() -> TestResult {
    numa_balancing_in_place(true)
}

fn numa_balancing_asleep() -> TestResult {
    numa_balancing_in_place(false)
}

pub(super) const TESTS: &[Test] = &[
    ("soft_offline_in_place_awake", soft_offline_awake),
    ("soft_offline_in_place_asleep", soft_offline_asleep),
    ("cma_alloc_over_bound_objects_awake", cma_alloc_awake),
    ("cma_alloc_over_bound_objects_asleep", cma_alloc_asleep),
    (
        "memory_offline_over_bound_objects_awake",
        memory_offline_awake,
    ),
    (
        "memory_offline_over_bound_objects_asleep",
        memory_offline_asleep,
    ),
    ("numa_balancing_in_place_awake", numa_balancing_awake),
    ("numa_balancing_in_place_asleep", numa_balancing_asleep),
    (
        "numa_balancing_refuses_cached_vmap",
        numa_balancing_refuses_cached_vmap,
    ),
];
