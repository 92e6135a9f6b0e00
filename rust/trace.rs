// SPDX-License-Identifier: GPL-2.0

//! The module's trace events (`rust/shims/movgem_trace.h`, system
//! `movgem`), emitted through the thin functions of
//! `rust/shims/trace.c`.  A disabled event costs the call and a static
//! branch.  Each event has its counter in `counters.rs`; the in-guest
//! test `trace_events_match_counters` checks that they agree.

use kernel::ffi::{c_char, c_int, c_uint, c_ulong};

use crate::policy::MigrateMode;
use crate::shmem::{PageRef, RawPage};
use crate::shrinker::Reclaimer;

extern "C" {
    fn movgem_trace_migrate_folio(
        obj: u64,
        index: c_ulong,
        nr: c_uint,
        pfn_from: c_ulong,
        pfn_to: c_ulong,
        mode: c_int,
        outcome: c_int,
        reason: *const c_char,
        wait_ns: u64,
        locked_ns: u64,
    );
    fn movgem_trace_shrink_scan(kswapd: bool, nr_to_scan: u64, freed: u64, contended: bool);
    fn movgem_trace_shrink_purge(obj: u64, pages: *mut *mut RawPage, n: c_ulong, who: c_int);
    fn movgem_trace_purge_wait(obj: u64, who: c_int, waited_us: u64, timed_out: bool);
    fn movgem_trace_oom_notify(freed: u64);
    fn movgem_trace_vmap_purge(freed: u64, contended: bool);
    fn movgem_trace_request_submit(seqno: u64, op: c_uint, nobjs: c_uint, hang: bool);
    fn movgem_trace_request_retire(seqno: u64, how: c_int);
    fn movgem_trace_runtime_pm(resumed: bool);
}

/// What the hook did with a folio: `MOVGEM_OUTCOME_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum Outcome {
    /// `hook=off`: plain `migrate_folio()`.
    Bypassed = 0,
    /// Nothing of the object's on the folio: `migrate_folio()` decides.
    PassThrough = 1,
    /// Moved in place, the object bound.
    InPlace = 2,
    /// `hook=release`: the object let go of its pages.
    Released = 3,
    /// Refused for the reason given.
    Refused = 4,
    /// The move itself failed (the references changed).
    Failed = 5,
}

/// One call of the migrate hook.
pub(crate) struct MigrateEvent {
    /// The object's id (debugfs `objects`).
    pub(crate) obj: u64,
    pub(crate) index: usize,
    pub(crate) nr: usize,
    pub(crate) pfn_from: usize,
    /// 0 unless moved in place.
    pub(crate) pfn_to: usize,
    pub(crate) mode: MigrateMode,
    pub(crate) outcome: Outcome,
    /// The refusal's counter name, or empty.
    pub(crate) reason: &'static kernel::str::CStr,
    /// Waiting for `struct_mutex`, and holding it.
    pub(crate) wait_ns: u64,
    pub(crate) locked_ns: u64,
}

/// `movgem_migrate_folio`.
pub(crate) fn migrate_folio(e: &MigrateEvent) {
    // SAFETY: plain values and a NUL-terminated static string.
    unsafe {
        movgem_trace_migrate_folio(
            e.obj,
            e.index as c_ulong,
            e.nr as c_uint,
            e.pfn_from as c_ulong,
            e.pfn_to as c_ulong,
            e.mode as c_int,
            e.outcome as c_int,
            e.reason.as_char_ptr(),
            e.wait_ns,
            e.locked_ns,
        )
    }
}

/// `movgem_shrink_scan`: one call of the shrinker's scan callback.
pub(crate) fn shrink_scan(kswapd: bool, nr_to_scan: u64, freed: u64, contended: bool) {
    // SAFETY: plain values.
    unsafe { movgem_trace_shrink_scan(kswapd, nr_to_scan, freed, contended) }
}

/// `movgem_shrink_purge`: a shrink by `who` purged object `obj`, whose
/// pages were `pages` (the event counts those in locked folios).
pub(crate) fn shrink_purge(obj: u64, pages: &[PageRef], who: Reclaimer) {
    // `PageRef` is `repr(transparent)` over a page pointer, so the slice
    // is an array of `struct page *`.
    let ptr = pages.as_ptr().cast::<*mut RawPage>().cast_mut();
    // SAFETY: `ptr` points to `pages.len()` page pointers, on each of
    // which the caller holds a reference for the whole call; the C side
    // only reads them.
    unsafe { movgem_trace_shrink_purge(obj, ptr, pages.len() as c_ulong, who as c_int) }
}

/// `movgem_purge_wait`: reclaim waited `waited_us` for the truncation
/// of object `obj` (`debug_reclaim_waits_truncation_ms`).
pub(crate) fn purge_wait(obj: u64, who: Reclaimer, waited_us: u64, timed_out: bool) {
    // SAFETY: plain values.
    unsafe { movgem_trace_purge_wait(obj, who as c_int, waited_us, timed_out) }
}

/// `movgem_oom_notify`: one call of the OOM notifier.
pub(crate) fn oom_notify(freed: u64) {
    // SAFETY: a plain value.
    unsafe { movgem_trace_oom_notify(freed) }
}

/// `movgem_vmap_purge`: one purge of the cached kernel mappings, or
/// one that gave up on a contended `struct_mutex`.
pub(crate) fn vmap_purge(freed: u64, contended: bool) {
    // SAFETY: plain values.
    unsafe { movgem_trace_vmap_purge(freed, contended) }
}

/// `movgem_request_submit`.
pub(crate) fn request_submit(seqno: u64, op: u32, nobjs: usize, hang: bool) {
    // SAFETY: plain values.
    unsafe { movgem_trace_request_submit(seqno, op, nobjs as c_uint, hang) }
}

/// How a request ended: `MOVGEM_RETIRE_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum RetireHow {
    Completed = 0,
    Reset = 1,
    HangTimedOut = 2,
}

/// `movgem_request_retire`.
pub(crate) fn request_retire(seqno: u64, how: RetireHow) {
    // SAFETY: plain values.
    unsafe { movgem_trace_request_retire(seqno, how as c_int) }
}

/// `movgem_runtime_pm`: the device suspended or resumed.
pub(crate) fn runtime_pm(resumed: bool) {
    // SAFETY: a plain value.
    unsafe { movgem_trace_runtime_pm(resumed) }
}
