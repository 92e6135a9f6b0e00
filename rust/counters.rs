// SPDX-License-Identifier: GPL-2.0

//! Event counters, exported one file each under /sys/kernel/debug/movgem/.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::policy::Refusal;

/// One counter per event the tests and benchmarks look at.
#[derive(Clone, Copy)]
#[repr(usize)]
pub(crate) enum Counter {
    /// The migrate callback was entered.
    HookCalls,
    /// `hook=0`: the folio went to plain `migrate_folio()` untouched.
    HookBypassed,
    /// The object held no pages of its own; nothing to release.
    PassThrough,
    /// Objects whose page references the hook released.
    Released,
    /// Pages whose references the hook released.
    ReleasedPages,
    /// Bindings the hook removed.
    Unbinds,
    /// Folios that moved through the hook: in place, or by
    /// `migrate_folio()` after a release or passed through.
    Migrated,
    /// Folios `migrate_folio()` failed on after a release or a pass
    /// through (references not the object's), or an in-place move that
    /// found the references changed.
    MigrateFailed,
    /// Binds that had to fetch pages again after a release.
    Rebinds,
    /// Cached kernel mappings the hook tore down.
    HookVunmaps,
    /// Purges of the cached kernel mappings: calls of the vmap purge
    /// notifier and debugfs `purge_vmaps`, contended ones included.
    VmapPurges,
    /// Pages whose cached kernel mapping a purge dropped.
    VmapPurgedPages,
    /// Purges that gave up on a contended `struct_mutex`.
    VmapPurgeContended,
    /// DONTNEED objects truncated.
    Purged,
    /// Batches submitted.
    Requests,
    /// Batches ended by a reset.
    RequestsReset,
    /// Hanging batches ended by `hang_timeout_ms`.
    HangsTimedOut,
    /// Dwords a checking batch found different from what it expected.
    GpuCheckErrors,
    /// Runtime suspends of the device.
    RuntimeSuspends,
    /// Runtime resumes of the device.
    RuntimeResumes,
    /// Shrinker scans.
    ShrinkScans,
    /// Scans that gave up on a contended `struct_mutex`.
    ShrinkContended,
    /// Pages given back by the shrinker, the OOM notifier and drop_caches.
    ShrinkFreedPages,
    /// DONTNEED objects the shrinker purged.
    ShrinkPurged,
    /// Of those, the ones kswapd purged (the rest: direct reclaim).
    ShrinkPurgedKswapd,
    /// Pages of shmem objects (not userptr pages) that the shrinker, the
    /// OOM notifier, drop_caches or our own allocations gave back:
    /// purged, or released (for swap, or for truncation at DONTNEED).
    /// gem-shrink's pressure floor: the memory its function workers'
    /// objects gave back.
    ShrinkShmemPages,
    /// WILLNEED objects whose pages the shrinker released.
    ShrinkReleased,
    /// Scans refused because the caller may not enter the filesystem.
    ShrinkNoFs,
    /// Our own page allocations that failed a light attempt and shrank
    /// our objects before the last one.
    ShrinkSelf,
    /// Released pages submitted for swap writeback.
    WritebackPages,
    /// Calls of the OOM notifier.
    OomNotifications,
    /// Pages the OOM notifier reported freed.
    OomFreedPages,
    /// Of those, pages of purged objects whose truncation the purge
    /// worker had still to do (each page reported once).
    OomDeferredPages,
    /// Of those, pages it released that reclaim can now push to swap.
    OomReclaimablePages,
    /// Of those, pages of busy DONTNEED objects, reported while the
    /// notifier waited (without blocking) for their requests to retire.
    OomRetirePendingPages,
    /// Objects freed (their last handle closed, their last request
    /// retired).
    ObjectsFreed,
    /// Commands written to debugfs drop_caches.
    DropCaches,
    /// Userptr ranges invalidated (munmap, migration, reclaim, ...).
    UserptrInvalidations,
    /// Stale userptr bindings dropped at the next use.
    UserptrStaleUnbinds,
    /// Userptr pages faulted in for requests and domain changes.
    UserptrFaultedPages,
    /// Userptr pages kept after use (`userptr_keep_pages`).
    UserptrKeptPages,
    /// Kept userptr pages dropped by an invalidation of their range.
    UserptrKeptInvalidated,
    /// Kept userptr pages released by the shrinker, the OOM notifier or
    /// debugfs `drop_caches`.
    UserptrReleasedPages,
    /// debugfs `hold_lock` commands that took `struct_mutex` (a test
    /// waits for this before it measures contention).
    LockHolds,
    /// Longest the hook waited for `struct_mutex` before refusing, in
    /// microseconds (a maximum, not a sum).
    HookLockWaitMaxUs,
    /// Folios the hook moved in place, the object staying bound.
    MigratedInPlace,
    /// Of those, large folios (a huge object's, `CREATE_HUGE`).
    MigratedInPlaceLarge,
    /// Shadow (software) GTT entries rewritten by in-place migration.
    GttEntriesRewritten,
    /// Hardware GTT entries rewritten by in-place migration (the device
    /// was awake).
    HwEntriesRewritten,
    /// Bindings whose hardware entries were restored from the shadow
    /// table after a runtime suspend.
    GttRestores,
    /// Pages a request could not reach: its object's hardware entries
    /// were lost in a suspend and not restored.
    GttFaults,
    /// GTT entries compared with the page cache by debugfs `gtt_check`.
    GttChecked,
    /// Entries `gtt_check` found pointing at another frame than the page
    /// cache's.
    GttMismatches,
    /// Purged objects whose truncation went to the purge worker: every
    /// reclaim context defers it (direct reclaim may run under a folio
    /// lock of ours, and kswapd may wait on a task that does).
    PurgesDeferred,
    /// A batch's object could not get its pages, requests were in
    /// flight: the submitter waited for one to retire and tried again.
    PopulateWaits,
    /// A batch's pages were taken back between populating them and
    /// `struct_mutex` several times over: the submitter fetched them
    /// under the lock (`Engine::submit`'s `fetch_locked`).
    SubmitLockedFetches,
    /// PIN and VMAP calls that pinned the object's folios long term with
    /// `memfd_pin_folios()`, which first migrates those in ZONE_MOVABLE
    /// or CMA (`FOLL_LONGTERM`'s rule).
    LongtermPins,
    /// Rounds of PIN and VMAP tried again: `memfd_pin_folios()` failed
    /// (a migration was refused), or the object's pages under the lock
    /// were not the folios it pinned.
    LongtermRetries,
    /// PIN and VMAP calls that failed because the object's folios could
    /// not be pinned long term (`ENOMEM` after the last round).
    LongtermFailed,
    /// Test aid (`debug_reclaim_waits_truncation_ms`): reclaim waited
    /// for the truncation of an object it purged.
    PurgeWaits,
    /// Of those, waits that ran out before the truncation ran: the
    /// truncation waited for a folio lock that stayed held (by the
    /// reclaiming task itself, in the old deadlock).
    PurgeWaitsTimedOut,
}

const FIRST_REFUSAL: usize = Counter::PurgeWaitsTimedOut as usize + 1;

/// Number of counters, refusals included.
pub(crate) const COUNT: usize = FIRST_REFUSAL + Refusal::ALL.len();

/// debugfs names, indexed like the counters.
pub(crate) const NAMES: [&kernel::str::CStr; COUNT] = [
    kernel::c_str!("hook_calls"),
    kernel::c_str!("hook_bypassed"),
    kernel::c_str!("passthrough"),
    kernel::c_str!("released_objects"),
    kernel::c_str!("released_pages"),
    kernel::c_str!("unbinds"),
    kernel::c_str!("migrated"),
    kernel::c_str!("migrate_failed"),
    kernel::c_str!("rebinds"),
    kernel::c_str!("hook_vunmaps"),
    kernel::c_str!("vmap_purges"),
    kernel::c_str!("vmap_purged_pages"),
    kernel::c_str!("vmap_purge_contended"),
    kernel::c_str!("purged_objects"),
    kernel::c_str!("gpu_requests"),
    kernel::c_str!("gpu_requests_reset"),
    kernel::c_str!("gpu_hangs_timed_out"),
    kernel::c_str!("gpu_check_errors"),
    kernel::c_str!("runtime_suspends"),
    kernel::c_str!("runtime_resumes"),
    kernel::c_str!("shrink_scans"),
    kernel::c_str!("shrink_contended"),
    kernel::c_str!("shrink_freed_pages"),
    kernel::c_str!("shrink_purged_objects"),
    kernel::c_str!("shrink_purged_by_kswapd"),
    kernel::c_str!("shrink_shmem_pages"),
    kernel::c_str!("shrink_released_objects"),
    kernel::c_str!("shrink_nofs"),
    kernel::c_str!("shrink_self"),
    kernel::c_str!("writeback_pages"),
    kernel::c_str!("oom_notifications"),
    kernel::c_str!("oom_freed_pages"),
    kernel::c_str!("oom_deferred_pages"),
    kernel::c_str!("oom_reclaimable_pages"),
    kernel::c_str!("oom_retire_pending_pages"),
    kernel::c_str!("objects_freed"),
    kernel::c_str!("drop_caches_calls"),
    kernel::c_str!("userptr_invalidations"),
    kernel::c_str!("userptr_stale_unbinds"),
    kernel::c_str!("userptr_faulted_pages"),
    kernel::c_str!("userptr_kept_pages"),
    kernel::c_str!("userptr_kept_invalidated"),
    kernel::c_str!("userptr_released_pages"),
    kernel::c_str!("lock_holds"),
    kernel::c_str!("hook_lock_wait_max_us"),
    kernel::c_str!("migrated_in_place"),
    kernel::c_str!("migrated_in_place_large"),
    kernel::c_str!("gtt_entries_rewritten"),
    kernel::c_str!("hw_entries_rewritten"),
    kernel::c_str!("gtt_restores"),
    kernel::c_str!("gtt_faults"),
    kernel::c_str!("gtt_checked"),
    kernel::c_str!("gtt_mismatches"),
    kernel::c_str!("purges_deferred"),
    kernel::c_str!("populate_waits"),
    kernel::c_str!("submit_locked_fetches"),
    kernel::c_str!("longterm_pins"),
    kernel::c_str!("longterm_retries"),
    kernel::c_str!("longterm_failed"),
    kernel::c_str!("purge_waits"),
    kernel::c_str!("purge_waits_timed_out"),
    kernel::c_str!("refused_hook_disabled"),
    kernel::c_str!("refused_lock_contended"),
    kernel::c_str!("refused_active"),
    kernel::c_str!("refused_purgeable"),
    kernel::c_str!("refused_pinned"),
    kernel::c_str!("refused_pinned_vma"),
    kernel::c_str!("refused_suspended"),
    kernel::c_str!("refused_would_sleep"),
    kernel::c_str!("refused_foreign_ref"),
    kernel::c_str!("refused_lock_owned"),
    kernel::c_str!("refused_large_folio"),
    kernel::c_str!("refused_dma_pinned"),
];

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);

/// A device's event counters; debugfs shows each through a pointer to
/// its value ([`Counters::value`]).
pub(crate) struct Counters {
    values: [AtomicU64; COUNT],
}

impl Counters {
    /// All zero.
    pub(crate) const fn new() -> Self {
        Self {
            values: [ZERO; COUNT],
        }
    }

    /// Adds `n` to `c`.
    pub(crate) fn add(&self, c: Counter, n: u64) {
        self.values[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one `c`.
    pub(crate) fn inc(&self, c: Counter) {
        self.add(c, 1);
    }

    /// Raises `c`, a maximum, to `v` if it is below.
    pub(crate) fn max(&self, c: Counter, v: u64) {
        self.values[c as usize].fetch_max(v, Ordering::Relaxed);
    }

    /// Counts one refusal of the migrate hook for reason `r`.
    pub(crate) fn refused(&self, r: Refusal) {
        self.values[FIRST_REFUSAL + r.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// How many refusals for reason `r` were counted.
    pub(crate) fn refusals(&self, r: Refusal) -> u64 {
        self.values[FIRST_REFUSAL + r.index()].load(Ordering::Relaxed)
    }

    /// The counter named `NAMES[id]`, for its debugfs file.
    pub(crate) fn value(&self, id: usize) -> Option<&AtomicU64> {
        self.values.get(id)
    }
}

/// The counter name of refusal `r`, as the trace shows it.
pub(crate) fn refusal_name(r: Refusal) -> &'static kernel::str::CStr {
    NAMES[FIRST_REFUSAL + r.index()]
}

/// Whether the refusal names agree with `policy.rs`.
pub(crate) fn names_consistent() -> bool {
    Refusal::ALL
        .iter()
        .all(|r| NAMES[FIRST_REFUSAL + r.index()].as_bytes() == r.name().as_bytes())
}
