// SPDX-License-Identifier: GPL-2.0

//! Giving memory back: the shrinker (count/scan), the OOM notifier, the
//! vmap purge notifier, debugfs `drop_caches`, and their registration
//! (as i915's `i915_gem_shrinker.c`).  Each callback finds its state
//! through what it was registered with (`shrinker->private_data`, the
//! `notifier_block` inside [`Reclaim`]), never through a global.
//!
//! Reclaim and the OOM notifier run inside allocations that may hold
//! folio locks: migration's (`migrate_pages_batch()` keeps the folios it
//! unmapped locked while it allocates the next destination, and a
//! long-term pin's migration allocates with `GFP_USER`, which may reach
//! `out_of_memory()`).  So nothing there waits for a folio lock: a purge
//! only drops the object's references and marks it purged, and the purge
//! worker (`Device::purge_wq`, unbound, so that one truncation waiting
//! for a folio lock holds up no other) truncates it.  Not in direct
//! reclaim, where the lock may be this very task's; not in kswapd, where
//! it may be held by a task that `throttle_direct_reclaim()` keeps
//! waiting for kswapd (seen: kswapd in `shmem_undo_range`, the migrating
//! task in `try_to_free_pages`, for good); not in the OOM notifier, which
//! also holds `oom_lock`, on which every other allocating task then
//! spins.  Reclaim try-locks `struct_mutex` for at most the lock budget
//! and only where it may sleep; without `__GFP_FS` the shrinker does
//! nothing (allocations under the lock are NOFS).  The OOM notifier
//! tries `struct_mutex` once, writes nothing back and waits for nothing:
//! it reports the pages it purged and those whose deferred truncation is
//! still to come, once each, so that `out_of_memory()` backs off and the
//! allocation retries (see [`oom_notify`]).  drop_caches and our own
//! allocations, which hold no folio lock and keep nobody waiting,
//! truncate at once, after `struct_mutex` is dropped.  Swap writeback
//! runs after the lock is dropped, from kswapd, and only try-locks
//! folios.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kernel::bindings;
use kernel::ffi::{c_int, c_long, c_ulong, c_void};
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::types::Opaque;

use crate::counters::Counter;
use crate::device::Device;
use crate::engine::Engine;
use crate::object::Object;
use crate::params;
use crate::policy::{self, ShrinkAction};
use crate::shrink_cursor::{Lap, PASSES};
use crate::sync::now_ns;
use crate::trace;
use crate::uapi;

/// How long, at most, the OOM notifier keeps reporting the pages of busy
/// DONTNEED objects, which their requests' retirement makes purgeable: a
/// hanging batch (1 s by default) and the batches queued behind it.
const OOM_RETIRE_WINDOW_NS: u64 = 2_000_000_000;

/// Most objects one shrink writes back, or truncates at once.
const WRITEBACK_BATCH: usize = 16;

/// The shrinker's state outside `struct_mutex` (the cursor is inside).
pub(crate) struct ShrinkStats {
    /// Generation of the latest `count`, locked or not: see
    /// [`crate::shrink_cursor::ShrinkCursor::counted`].
    counts: AtomicU64,
    /// What the last locked `count` found, answered while the lock is busy.
    last_count: AtomicU64,
    /// Pages of purged objects queued for truncation that the OOM
    /// notifier has not reported yet (less those truncated meanwhile).
    purge_unreported: AtomicU64,
    /// Until when (ns) the OOM notifier reports busy DONTNEED objects as
    /// about to be freed; 0: no such window open.
    retire_until: AtomicU64,
}

impl ShrinkStats {
    pub(crate) const fn new() -> Self {
        Self {
            counts: AtomicU64::new(0),
            last_count: AtomicU64::new(0),
            purge_unreported: AtomicU64::new(0),
            retire_until: AtomicU64::new(0),
        }
    }
}

/// What one shrink did.
pub(crate) struct Shrunk {
    /// Pages whose references were dropped (what a shrinker reports).
    pub(crate) released: u64,
    /// Of those, pages that left memory or are on their way out: purged
    /// (truncated now or by the purge worker), or submitted for
    /// writeback.
    pub(crate) gone: u64,
    /// DONTNEED objects purged.
    pub(crate) purged: u64,
}

/// Who asked a shrink for memory, as the trace shows it
/// (`movgem_show_reclaimer` in `movgem_trace.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum Reclaimer {
    /// debugfs `drop_caches`, or a self-test.
    Debugfs = 0,
    /// Direct reclaim: the shrinker's scan in an allocating task, inside
    /// reclaim (`PF_MEMALLOC`).
    Direct = 1,
    /// kswapd.
    Kswapd = 2,
    /// The OOM notifier.
    Oom = 3,
    /// Our own page allocation after its light attempt failed.
    Own = 4,
    /// The shrinker's scan outside reclaim (`vm.drop_caches`).
    Slab = 5,
}

/// What one shrink may do (the passes it runs, and how it may wait).
#[derive(Clone, Copy)]
pub(crate) struct ShrinkScope {
    /// Truncate idle DONTNEED objects.
    pub(crate) purge: bool,
    /// Release the pages of idle unbound objects.
    pub(crate) unbound: bool,
    /// Unbind idle bound objects and release their pages.
    pub(crate) bound: bool,
    /// Push released pages to swap.
    pub(crate) writeback: bool,
    /// Truncate purged objects before returning (after `struct_mutex`
    /// is dropped); otherwise the purge worker does.  Only where the
    /// task cannot hold a folio lock: see the module documentation.
    pub(crate) truncate: bool,
    /// The caller may sleep.
    pub(crate) may_block: bool,
    /// Wait for `struct_mutex` up to the lock budget, if `may_block`;
    /// otherwise one try.
    pub(crate) lock_budget: bool,
    /// Take `struct_mutex` without a time limit (debugfs only).
    pub(crate) lock: bool,
    /// Resume each pass where the last resuming shrink stopped and skip
    /// passes without candidates (`ShrinkCursor`): the kernel shrinker's
    /// batches.  Otherwise every pass walks every object.
    pub(crate) resume: bool,
    /// Who asked (the trace's view).
    pub(crate) who: Reclaimer,
    /// Test aid (`debug_reclaim_waits_truncation_ms`): with `may_block`,
    /// wait up to this many ms for the truncation of each object purged
    /// (deferred to the purge worker), as the old in-place purge waited
    /// for its folio locks; 0: do not wait.
    pub(crate) wait_truncation_ms: u32,
}

impl ShrinkScope {
    /// Every pass, from a context that may sleep and holds no folio
    /// lock: drop_caches and our own allocations.
    pub(crate) const ALL: Self = Self {
        purge: true,
        unbound: true,
        bound: true,
        writeback: true,
        truncate: true,
        may_block: true,
        lock_budget: true,
        lock: false,
        resume: false,
        who: Reclaimer::Debugfs,
        wait_truncation_ms: 0,
    };

    fn allows(&self, pass: usize) -> bool {
        match pass {
            0 => self.purge,
            1 => self.unbound,
            _ => self.bound,
        }
    }
}

extern "C" {
    fn movgem_current_is_kswapd() -> bool;
    fn movgem_current_in_reclaim() -> bool;
    fn movgem_swap_free_pages() -> c_long;
    fn movgem_shrinker_register(owner: *mut c_void) -> *mut c_void;
    fn movgem_shrinker_unregister(shrinker: *mut c_void);
    fn movgem_oom_notifier_register(nb: *mut bindings::notifier_block) -> c_int;
    fn movgem_oom_notifier_unregister(nb: *mut bindings::notifier_block);
    fn movgem_vmap_notifier_register(nb: *mut bindings::notifier_block) -> c_int;
    fn movgem_vmap_notifier_unregister(nb: *mut bindings::notifier_block);
    fn movgem_vmap_overflow() -> c_int;
    fn movgem_shrinker_scan_as(shrinker: *mut c_void, fs: bool, nr: c_ulong) -> c_ulong;
}

fn current_is_kswapd() -> bool {
    // SAFETY: reads a flag of the current task; no preconditions.
    unsafe { movgem_current_is_kswapd() }
}

/// Whether the current task is inside reclaim (`PF_MEMALLOC`).
fn current_in_reclaim() -> bool {
    // SAFETY: reads a flag of the current task; no preconditions.
    unsafe { movgem_current_in_reclaim() }
}

/// Free swap slots, in pages.
fn swap_free_pages() -> u64 {
    // SAFETY: reads a counter; no preconditions.
    u64::try_from(unsafe { movgem_swap_free_pages() }).unwrap_or(0)
}

impl Device {
    /// Pages the shrinker could give back now.  Never blocks: on a
    /// contended `struct_mutex` it answers with the last count.
    pub(crate) fn shrink_count(&self) -> u64 {
        if !params::shrinker_enabled() {
            return 0;
        }
        let generation = self.shrink.counts.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(mut locked) = self.struct_mutex.try_lock() else {
            // The cursor's hints are now older than the count the kernel
            // acts on: `generation` tells the scans so.
            return self.shrink.last_count.load(Ordering::Relaxed);
        };
        let awake = !self.pm.suspended();
        let mut count = 0u64;
        let mut candidates = [0u64; PASSES];
        let mut walk = locked.walk(false);
        while let Some(obj) = walk.next(&mut locked) {
            let st = obj.state(&mut locked);
            let snap = obj.snapshot(st);
            let action = policy::shrink_action(&snap, awake, true, true);
            if let Some(pass) = action.pass() {
                count += obj.pages_held(st) as u64;
                candidates[usize::from(pass)] += 1;
            }
        }
        locked.shrink_cursor.counted(generation, candidates);
        self.shrink.last_count.store(count, Ordering::Relaxed);
        count
    }

    /// Gives back up to `nr` pages: purges idle DONTNEED objects, then
    /// drops the pages of idle unbound objects, then unbinds idle bound
    /// ones (only while the device is awake).  `None` if `struct_mutex`
    /// could not be had: reclaim only ever try-locks it.
    pub(crate) fn shrink_scan(&self, nr: u64, may_block: bool, may_fs: bool) -> Option<u64> {
        if !params::shrinker_enabled() {
            return Some(0);
        }
        // Allocations under `struct_mutex` are NOFS: refusing NOFS reclaim
        // is what keeps them from recursing into us.
        if !may_fs {
            self.counters.inc(Counter::ShrinkNoFs);
            return None;
        }
        self.counters.inc(Counter::ShrinkScans);
        // As i915 does, only kswapd writes back (with folio trylocks):
        // direct reclaim should not stall on swap I/O for us.  No reclaim
        // truncates (module documentation): the purge worker does.
        let kswapd = current_is_kswapd();
        let who = if kswapd {
            Reclaimer::Kswapd
        } else if current_in_reclaim() {
            Reclaimer::Direct
        } else {
            Reclaimer::Slab
        };
        let scope = ShrinkScope {
            writeback: may_block && kswapd,
            truncate: false,
            may_block,
            lock: false,
            resume: true,
            who,
            wait_truncation_ms: params::debug_reclaim_waits_truncation_ms(),
            ..ShrinkScope::ALL
        };
        let Some(done) = self.shrink(nr, scope) else {
            trace::shrink_scan(kswapd, nr, 0, true);
            return None;
        };
        if kswapd {
            self.counters.add(Counter::ShrinkPurgedKswapd, done.purged);
        }
        trace::shrink_scan(kswapd, nr, done.released, false);
        Some(done.released)
    }

    /// Runs the passes `scope` allows until `nr` pages are given back;
    /// returns how many were.  `None` if `struct_mutex` could not be had.
    pub(crate) fn shrink(&self, nr: u64, scope: ShrinkScope) -> Option<Shrunk> {
        let mut locked = if scope.lock {
            self.struct_mutex.lock()
        } else {
            let wait = policy::lock_wait(
                scope.may_block && scope.lock_budget,
                params::lock_timeout_ms(),
            );
            let Some(locked) = self.struct_mutex.try_lock_for(wait) else {
                self.counters.inc(Counter::ShrinkContended);
                return None;
            };
            locked
        };
        let wakeref = self.pm.get_if_active();
        let generation = self.shrink.counts.load(Ordering::Relaxed);
        let mut freed = 0u64;
        let mut gone = 0u64;
        let mut purged = 0u64;
        // Objects to write back, and to truncate, once the lock is
        // dropped (fixed arrays: nothing here may allocate).
        let mut to_write: [Option<Arc<Object>>; WRITEBACK_BATCH] = Default::default();
        let mut queued = 0;
        let mut to_truncate: [Option<Arc<Object>>; WRITEBACK_BATCH] = Default::default();
        let mut truncating = 0;
        // Deferred truncations to wait for (`wait_truncation_ms`).
        let wait_ms = if scope.may_block {
            scope.wait_truncation_ms
        } else {
            0
        };
        let mut to_wait: [Option<Arc<Object>>; WRITEBACK_BATCH] = Default::default();
        let mut waiting = 0;
        for pass in 0..PASSES {
            let hinted_empty = scope.resume && locked.shrink_cursor.skip(pass, generation);
            if !scope.allows(pass) || hinted_empty {
                continue;
            }
            let mut lap = if scope.resume {
                locked.shrink_cursor.lap(pass)
            } else {
                Lap::new(0)
            };
            loop {
                if freed >= nr {
                    if scope.resume {
                        locked.shrink_cursor.stop(pass, &lap);
                    }
                    break;
                }
                let Some(obj) = lap.next(|from| locked.object_from(from)) else {
                    break;
                };
                let snap = obj.snapshot(obj.state(&mut locked));
                let action = policy::shrink_action(&snap, wakeref.is_some(), scope.may_block, true);
                if action.pass().map(usize::from) != Some(pass) {
                    continue;
                }
                locked.shrink_cursor.took(pass);
                match action {
                    ShrinkAction::Purge { unbind } => {
                        if scope.truncate && truncating == WRITEBACK_BATCH {
                            continue;
                        }
                        trace::shrink_purge(obj.id(), &obj.state(&mut locked).pages, scope.who);
                        let n = obj.release_pages(&mut locked, unbind);
                        freed += n as u64;
                        gone += n as u64;
                        // Purged from now on: nothing fetches its pages
                        // again, whenever the truncation comes.
                        obj.set_purged();
                        purged += 1;
                        self.counters.inc(Counter::ShrinkPurged);
                        self.counters.add(Counter::ShrinkShmemPages, n as u64);
                        if scope.truncate {
                            to_truncate[truncating] = Some(obj.clone());
                            truncating += 1;
                        } else {
                            self.purge_later(&obj, n);
                            if wait_ms > 0 && waiting < WRITEBACK_BATCH {
                                to_wait[waiting] = Some(obj.clone());
                                waiting += 1;
                            }
                        }
                    }
                    ShrinkAction::Release { unbind } => {
                        let n = obj.release_pages(&mut locked, unbind) as u64;
                        freed += n;
                        // A userptr object gives back the user's pages.
                        if obj.file().is_some() {
                            self.counters.add(Counter::ShrinkShmemPages, n);
                        }
                        self.counters.inc(Counter::ShrinkReleased);
                        if scope.writeback && obj.file().is_some() && queued < WRITEBACK_BATCH {
                            to_write[queued] = Some(obj.clone());
                            queued += 1;
                        }
                    }
                    ShrinkAction::Skip => {}
                }
            }
        }
        self.counters.add(Counter::ShrinkFreedPages, freed);
        drop(locked);
        for obj in to_truncate.iter().flatten() {
            if let Some(file) = obj.file() {
                file.truncate();
            }
        }
        for obj in to_wait.iter().flatten() {
            self.wait_truncation(obj, scope.who, wait_ms);
        }
        // Swap I/O allocates (zram, swap slots) and may wait for reclaim:
        // never under struct_mutex, which reclaim needs to purge.  A page
        // fetched again meanwhile is the same folio, now in the swap
        // cache, so nothing is lost.  At most the pages asked for:
        // kswapd's LRU scan writes the rest.
        let mut budget = nr;
        for obj in to_write.iter().flatten() {
            if let (Some(file), true) = (obj.file(), budget > 0) {
                let n = file.writeback(usize::try_from(budget).unwrap_or(usize::MAX)) as u64;
                budget = budget.saturating_sub(n);
                gone += n;
                self.counters.add(Counter::WritebackPages, n);
            }
        }
        Some(Shrunk {
            released: freed,
            gone,
            purged,
        })
    }

    /// Test aid (`debug_reclaim_waits_truncation_ms`): waits up to `ms`
    /// for the purge worker to truncate `obj`, as the old in-place purge
    /// waited for the folio locks a truncation takes.  Where one of those
    /// locks is held by the task waiting here (a migration's own direct
    /// reclaim), the old code hung for good; this gives up after `ms`,
    /// counted and traced, so that a test sees the deadlock and the guest
    /// goes on.
    fn wait_truncation(&self, obj: &Object, who: Reclaimer, ms: u32) {
        self.counters.inc(Counter::PurgeWaits);
        let start = now_ns();
        let limit = u64::from(ms) * 1_000_000;
        let mut done = !obj.purge_pending();
        while !done && now_ns().saturating_sub(start) < limit {
            // SAFETY: the caller may block (`ShrinkScope::may_block`).
            unsafe { bindings::msleep(1) };
            done = !obj.purge_pending();
        }
        if !done {
            self.counters.inc(Counter::PurgeWaitsTimedOut);
        }
        trace::purge_wait(obj.id(), who, now_ns().saturating_sub(start) / 1000, !done);
    }

    /// Queues the truncation of a purged object of `npages` pages on the
    /// purge worker; until it has run, the OOM notifier may report them
    /// (once).
    fn purge_later(&self, obj: &Arc<Object>, npages: usize) {
        self.shrink
            .purge_unreported
            .fetch_add(npages as u64, Ordering::AcqRel);
        // Already queued: that run truncates it.
        if obj.purge_later(npages) {
            self.counters.inc(Counter::PurgesDeferred);
        }
    }

    /// The purge worker truncated `npages` pages: those the OOM notifier
    /// has not reported yet are gone already, not on their way.
    pub(crate) fn purge_done(&self, npages: u64) {
        let _ =
            self.shrink
                .purge_unreported
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                    Some(v.saturating_sub(npages))
                });
    }

    /// Pages held by busy DONTNEED objects, which become purgeable when
    /// their requests retire; 0 if `struct_mutex` is busy (one try).
    fn busy_purgeable_pages(&self) -> u64 {
        let Some(mut locked) = self.struct_mutex.try_lock() else {
            return 0;
        };
        let mut pages = 0u64;
        let mut walk = locked.walk(false);
        while let Some(obj) = walk.next(&mut locked) {
            let st = obj.state(&mut locked);
            if obj.active() > 0 && st.madv == uapi::MADV_DONTNEED {
                pages += obj.pages_held(st) as u64;
            }
        }
        pages
    }

    /// Waits until every deferred truncation has run (module unload).
    pub(crate) fn flush_purges(&self) {
        self.purge_wq.flush();
    }

    /// Our own allocation of object pages failed: give back `nr` pages
    /// as the shrinker would, without writeback (the caller waits), unless
    /// `shrinker=0` (which turns off every way the driver gives memory
    /// back).
    pub(crate) fn shrink_self(&self, nr: u64) {
        self.counters.inc(Counter::ShrinkSelf);
        if params::shrinker_enabled() {
            let scope = ShrinkScope {
                writeback: false,
                who: Reclaimer::Own,
                ..ShrinkScope::ALL
            };
            let _ = self.shrink(nr, scope);
        }
    }

    /// Drops every cached kernel mapping nobody pins; returns the pages
    /// unmapped.  `may_wait` false: give up if `struct_mutex` is busy;
    /// at once if it is held by the current task.
    pub(crate) fn purge_vmaps(&self, may_wait: bool) -> usize {
        // Inside our own `vmap()`, the lock is this task's: give up at
        // once instead of waiting for it.
        let guard = if self.struct_mutex.held_by_current() {
            None
        } else if may_wait {
            Some(self.struct_mutex.lock())
        } else {
            self.struct_mutex
                .try_lock_for(policy::lock_wait(true, params::lock_timeout_ms()))
        };
        self.counters.inc(Counter::VmapPurges);
        let Some(mut locked) = guard else {
            self.counters.inc(Counter::VmapPurgeContended);
            trace::vmap_purge(0, true);
            return 0;
        };
        let mut freed = 0;
        let mut walk = locked.walk(true);
        while let Some(obj) = walk.next(&mut locked) {
            let st = obj.state(&mut locked);
            if st.vmap_pins == 0 {
                if let Some(map) = st.vmap.take() {
                    freed += map.npages();
                }
            }
        }
        self.counters.add(Counter::VmapPurgedPages, freed as u64);
        trace::vmap_purge(freed as u64, false);
        freed
    }
}

/// Runs `alloc_vmap_area()` out of vmalloc space, as an allocation in a
/// full area would: the kernel calls the vmap purge notifier chain (ours
/// among them, [`movgem_rs_vmap_purge`]) and fails the allocation.  A
/// test aid (debugfs `vmap_overflow`): see `rust/shims/shrinker.c`.
pub(crate) fn vmap_overflow() -> Result {
    // SAFETY: no preconditions; may sleep, as the caller may.
    kernel::error::to_result(unsafe { movgem_vmap_overflow() })
}

/// The OOM killer is about to run: give back everything idle.
///
/// Runs under `oom_lock`, inside an allocation that may hold folio locks
/// (module documentation), so it tries `struct_mutex` once, defers every
/// truncation to the purge worker, writes nothing back and waits for
/// nothing.  It reports as freed, so that `out_of_memory()` backs off and
/// the allocation retries:
/// - the pages of objects purged and not truncated yet, now or by
///   reclaim before, each page once (`purge_unreported`);
/// - pages it released that the allocation's next reclaim can push to
///   swap, if swap has room for them;
/// - if nothing else, for at most `OOM_RETIRE_WINDOW_NS` after it first
///   did so, the pages of busy DONTNEED objects, which their requests'
///   retirement makes purgeable (gem_shrink's `hang` and `execbufX` had
///   workers OOM-killed while the engine worked through their queued
///   batches, the notifier freeing nothing).  Once the window has passed
///   without other progress, the OOM killer acts.
pub(crate) fn oom_notify(engine: &Engine) -> u64 {
    let device = engine.device();
    if !params::oom_notifier_enabled() {
        return 0;
    }
    device.counters.inc(Counter::OomNotifications);
    let scope = ShrinkScope {
        writeback: false,
        truncate: false,
        lock_budget: false,
        who: Reclaimer::Oom,
        ..ShrinkScope::ALL
    };
    let done = device.shrink(u64::MAX, scope);
    let stats = &device.shrink;
    let deferred = stats.purge_unreported.swap(0, Ordering::AcqRel);
    device.counters.add(Counter::OomDeferredPages, deferred);
    let mut freed = deferred;
    if let Some(done) = done {
        // `gone` is what it purged, counted in `deferred` already.
        let released = done.released.saturating_sub(done.gone);
        let reclaimable = released.min(swap_free_pages());
        device
            .counters
            .add(Counter::OomReclaimablePages, reclaimable);
        freed += reclaimable;
    }
    if freed > 0 {
        stats.retire_until.store(0, Ordering::Release);
    } else if engine.inflight() > 0 {
        let busy = device.busy_purgeable_pages();
        let now = now_ns();
        let until = match stats.retire_until.load(Ordering::Acquire) {
            0 if busy > 0 => {
                stats
                    .retire_until
                    .store(now + OOM_RETIRE_WINDOW_NS, Ordering::Release);
                now + OOM_RETIRE_WINDOW_NS
            }
            until => until,
        };
        if now < until {
            device.counters.add(Counter::OomRetirePendingPages, busy);
            freed = busy;
        }
    } else {
        stats.retire_until.store(0, Ordering::Release);
    }
    device.counters.add(Counter::OomFreedPages, freed);
    trace::oom_notify(freed);
    if freed > 0 {
        pr_info!(
            "OOM notifier: {} pages of object memory on their way out\n",
            freed
        );
    }
    freed
}

/// A command written to debugfs `drop_caches`: `MOVGEM_DROP_*` bits.
pub(crate) fn drop_caches(engine: &Engine, flags: u64) -> Result {
    let device = engine.device();
    if flags & !u64::from(uapi::DROP_ALL) != 0 {
        return Err(EINVAL);
    }
    device.counters.inc(Counter::DropCaches);
    let has = |bit: u32| flags & u64::from(bit) != 0;
    if has(uapi::DROP_ACTIVE) {
        engine.wait_all_idle();
    }
    let scope = ShrinkScope {
        purge: has(uapi::DROP_PURGE),
        unbound: has(uapi::DROP_UNBOUND),
        bound: has(uapi::DROP_BOUND),
        writeback: has(uapi::DROP_WRITEBACK),
        // A debugfs write: the task holds no folio lock.
        truncate: true,
        may_block: true,
        lock_budget: true,
        lock: true,
        resume: false,
        who: Reclaimer::Debugfs,
        wait_truncation_ms: 0,
    };
    device.shrink(u64::MAX, scope).ok_or(EBUSY)?;
    Ok(())
}

/// The shrinker, the OOM notifier and the vmap purge notifier of one
/// engine's device, registered together and unregistered (waiting for
/// callbacks in flight) on drop.
///
/// # Invariants
///
/// While `shrinker` is non-NULL it is registered with `private_data`
/// pointing at `self`; while `oom_registered`/`vmap_registered` are true
/// the notifier block beside it is registered.  `self` is pinned.
#[pin_data(PinnedDrop)]
pub(crate) struct Reclaim {
    engine: Arc<Engine>,
    shrinker: core::sync::atomic::AtomicPtr<c_void>,
    #[pin]
    oom_nb: Opaque<bindings::notifier_block>,
    oom_registered: AtomicBool,
    #[pin]
    vmap_nb: Opaque<bindings::notifier_block>,
    vmap_registered: AtomicBool,
}

// SAFETY: the notifier blocks are only touched by the notifier chains,
// which lock themselves; the rest is `Send`/`Sync`.
unsafe impl Send for Reclaim {}
// SAFETY: as above.
unsafe impl Sync for Reclaim {}

/// A zeroed `struct notifier_block` for the shims to fill.
fn notifier_block() -> impl PinInit<Opaque<bindings::notifier_block>> {
    // SAFETY: `slot` is valid for writes; all-zero is a valid value.
    Opaque::ffi_init(|slot: *mut bindings::notifier_block| unsafe {
        core::ptr::write_bytes(slot, 0, 1)
    })
}

impl Reclaim {
    /// Registers the OOM notifier, the vmap purge notifier and the
    /// shrinker for `engine`'s device.
    pub(crate) fn new(engine: Arc<Engine>) -> Result<Pin<KBox<Self>>> {
        let this = KBox::pin_init(
            pin_init!(Self {
                engine,
                shrinker: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
                oom_nb <- notifier_block(),
                oom_registered: AtomicBool::new(false),
                vmap_nb <- notifier_block(),
                vmap_registered: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )?;
        // On error `this` drops, unregistering what was registered.
        // SAFETY: the block is pinned in `this`, which unregisters it on
        // drop before it goes away.
        kernel::error::to_result(unsafe { movgem_oom_notifier_register(this.oom_nb.get()) })?;
        this.oom_registered.store(true, Ordering::Release);
        // SAFETY: as above.
        kernel::error::to_result(unsafe { movgem_vmap_notifier_register(this.vmap_nb.get()) })?;
        this.vmap_registered.store(true, Ordering::Release);
        let owner: *const Self = &*this;
        // SAFETY: `owner` is pinned and outlives the shrinker, which drop
        // frees (waiting for scans in flight) first.
        let shrinker = unsafe { movgem_shrinker_register(owner.cast_mut().cast()) };
        let shrinker = NonNull::new(shrinker).ok_or(ENOMEM)?;
        this.shrinker.store(shrinker.as_ptr(), Ordering::Release);
        Ok(this)
    }

    fn device(&self) -> &Device {
        self.engine.device()
    }

    /// One scan through the registered shrinker's `scan_objects`, with
    /// the `shrink_control` that `shrink_slab()` passes from reclaim that
    /// may (`fs`: `GFP_KERNEL`) or may not (`GFP_NOFS`) enter the
    /// filesystem; what the callback returned (KUnit).
    pub(crate) fn scan_as(&self, fs: bool, nr: u64) -> u64 {
        let shrinker = self.shrinker.load(Ordering::Acquire);
        if shrinker.is_null() {
            return 0;
        }
        // SAFETY: `new` registered it and only drop frees it, which cannot
        // run while `self` is borrowed; its `private_data` is `self`.
        unsafe { movgem_shrinker_scan_as(shrinker, fs, nr as c_ulong) as u64 }
    }

    /// Maps a notifier block back to its `Reclaim`.
    ///
    /// # Safety
    ///
    /// `nb` must be the `oom_nb` (if `oom`) or `vmap_nb` of a registered
    /// `Reclaim`.
    unsafe fn of_notifier<'a>(nb: *mut bindings::notifier_block, oom: bool) -> &'a Self {
        let nb = nb.cast::<Opaque<bindings::notifier_block>>();
        // SAFETY: by the caller's guarantee `nb` is that field of a live
        // `Reclaim`, which stays alive while it is registered.
        unsafe {
            if oom {
                &*kernel::container_of!(nb, Self, oom_nb)
            } else {
                &*kernel::container_of!(nb, Self, vmap_nb)
            }
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Reclaim {
    fn drop(self: Pin<&mut Self>) {
        let shrinker = self.shrinker.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !shrinker.is_null() {
            // SAFETY: registered by `new` and freed once, here; waits for
            // scans in flight and none start afterwards.
            unsafe { movgem_shrinker_unregister(shrinker) };
        }
        if self.vmap_registered.swap(false, Ordering::AcqRel) {
            // SAFETY: registered by `new`; unregistering waits for the
            // chain's callbacks in flight.
            unsafe { movgem_vmap_notifier_unregister(self.vmap_nb.get()) };
        }
        if self.oom_registered.swap(false, Ordering::AcqRel) {
            // SAFETY: as above.
            unsafe { movgem_oom_notifier_unregister(self.oom_nb.get()) };
        }
    }
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `owner` must be the `private_data` of a registered movgem shrinker.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_shrink_count(owner: *mut c_void) -> c_ulong {
    // SAFETY: the shrinker's owner outlives its registration.
    let reclaim = unsafe { &*owner.cast::<Reclaim>() };
    reclaim.device().shrink_count() as c_ulong
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// As for [`movgem_rs_shrink_count`].
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_shrink_scan(
    owner: *mut c_void,
    nr_to_scan: c_ulong,
    may_block: bool,
    may_fs: bool,
) -> c_long {
    // SAFETY: the shrinker's owner outlives its registration.
    let reclaim = unsafe { &*owner.cast::<Reclaim>() };
    match reclaim
        .device()
        .shrink_scan(nr_to_scan as u64, may_block, may_fs)
    {
        Some(freed) => freed as c_long,
        None => -1,
    }
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `nb` must be the OOM notifier block of a registered [`Reclaim`].
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_oom_notify(nb: *mut bindings::notifier_block) -> c_ulong {
    // SAFETY: by the caller's contract.
    let reclaim = unsafe { Reclaim::of_notifier(nb, true) };
    oom_notify(&reclaim.engine) as c_ulong
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `nb` must be the vmap purge notifier block of a registered [`Reclaim`].
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_vmap_purge(nb: *mut bindings::notifier_block) -> c_ulong {
    // SAFETY: by the caller's contract.
    let reclaim = unsafe { Reclaim::of_notifier(nb, false) };
    reclaim.device().purge_vmaps(false) as c_ulong
}
