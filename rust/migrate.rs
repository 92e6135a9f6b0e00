// SPDX-License-Identifier: GPL-2.0

//! The Rust side of the shmem migrate callback (`rust/shims/shmem.c`),
//! called with the source and destination folios locked.
//!
//! `hook=inplace` (the default) moves the one folio (of one page, or a
//! huge object's PMD-sized folio as one unit) and keeps the object
//! bound: a glance at the folio first, where nothing is locked or
//! touched (a GUP pin, `folio_maybe_dma_pinned()`, is
//! `refused_dma_pinned`: a long-term PIN or VMAP of ours, which pins
//! through `memfd_pin_folios()`, or someone else's pin of a mapping of
//! the object; a reference nobody accounts for is `refused_foreign_ref`),
//! then `struct_mutex` within the lock budget (never waited for by the
//! task that holds it: `refused_lock_owned`), `policy::decide_in_place`,
//! and the move itself (`movgem_folio_move`: copy, page cache, flags, the
//! object's reference), after which the object's page array and GTT
//! entries point at the new folio.  The device is never woken: its
//! hardware entries are rewritten only if a wakeref could be had without
//! waking it, and otherwise invalidated and restored from the shadow
//! entries before the next request (`vma.rs`), whatever the PM state.
//! The hook's wakeref is not a use of the device: releasing it does not
//! restart autosuspend (`pm.rs`).  `hook=release` is the 2016
//! design, kept for comparison: the whole object lets go of its pages,
//! then `migrate_folio()` moves the folio.  `hook=off` is plain
//! `migrate_folio()`.
//!
//! `MIGRATE_ASYNC` (`may_block` false) never sleeps: one try-lock, no
//! allocation, no `vunmap()`, no array freed, no large copy; a cached
//! vmap or a large folio means a refusal there (`refused_would_sleep`,
//! `refused_large_folio`).  Every call leaves one
//! `movgem_migrate_folio` trace event (`trace.rs`).

use kernel::ffi::c_int;
use kernel::prelude::*;

use crate::counters::Counter;
use crate::object::Object;
use crate::params;
use crate::policy::{self, Decision, HookMode, InPlace, MigrateMode, Precheck, Refusal};
use crate::shmem::{DevInfoSlot, PageRef, RawFolio, RawPage, ShmemDevInfo};
use crate::sync::now_ns;
use crate::trace::{self, MigrateEvent, Outcome};

/// `MOVGEM_HOOK_BYPASS` in `include/movgem_shim.h`: the callback calls
/// `migrate_folio()` and returns its answer unchanged, exactly as an
/// unpatched kernel would.
const HOOK_BYPASS: c_int = 1;
/// `MOVGEM_HOOK_RELEASED`: the object released its pages (`hook=release`);
/// the callback calls `migrate_folio()` and reports with `migrate_done`.
const HOOK_RELEASED: c_int = 2;
/// `MOVGEM_HOOK_PASS`: nothing of the object's is on the folio; the
/// callback calls `migrate_folio()`, returns its answer unchanged and
/// reports it with `migrate_done`.
const HOOK_PASS: c_int = 3;

extern "C" {
    fn movgem_folio_ref_count(folio: *mut RawFolio) -> c_int;
    fn movgem_folio_expected_refs(folio: *mut RawFolio) -> c_int;
    fn movgem_folio_nr_pages(folio: *mut RawFolio) -> kernel::ffi::c_ulong;
    fn movgem_folio_maybe_dma_pinned(folio: *mut RawFolio) -> bool;
    fn movgem_folio_index(folio: *mut RawFolio) -> kernel::ffi::c_ulong;
    fn movgem_folio_pfn(folio: *mut RawFolio) -> kernel::ffi::c_ulong;
    fn movgem_folio_page(folio: *mut RawFolio, n: kernel::ffi::c_ulong) -> *mut RawPage;
    fn movgem_folio_move(dst: *mut RawFolio, src: *mut RawFolio, extra: c_int) -> c_int;
}

/// The folios of one call of the callback.
///
/// # Invariants
///
/// Both are valid and locked for the duration of the call; `src` is in
/// the page cache of the object's file, isolated and unmapped.
struct Move {
    dst: *mut RawFolio,
    src: *mut RawFolio,
}

impl Move {
    /// What the page cache and migration do not account for.
    fn extra_refs(&self) -> Option<u64> {
        // SAFETY: `src` is valid by the type invariant.
        let (count, expected) = unsafe {
            (
                movgem_folio_ref_count(self.src),
                movgem_folio_expected_refs(self.src),
            )
        };
        policy::extra_refs(i64::from(count), i64::from(expected))
    }

    /// Whether `src` is pinned through GUP (our long-term pins use
    /// `memfd_pin_folios()`).
    fn dma_pinned(&self) -> bool {
        // SAFETY: `src` is valid by the type invariant.
        unsafe { movgem_folio_maybe_dma_pinned(self.src) }
    }

    /// Pages in `src` (and `dst`): 1, or 512 for a huge object's
    /// PMD-sized folio.
    fn nr_pages(&self) -> usize {
        // SAFETY: `src` is valid by the type invariant.
        unsafe { movgem_folio_nr_pages(self.src) as usize }
    }

    /// The frames of `src` and `dst`, for the trace.
    fn pfns(&self) -> (usize, usize) {
        // SAFETY: both are valid by the type invariant.
        unsafe {
            (
                movgem_folio_pfn(self.src) as usize,
                movgem_folio_pfn(self.dst) as usize,
            )
        }
    }

    fn index(&self) -> usize {
        // SAFETY: `src` is valid and locked, so its index is stable.
        unsafe { movgem_folio_index(self.src) as usize }
    }

    /// Page `i` of `src`, for comparison only; null if `i` is not below
    /// [`Self::nr_pages`].
    fn src_page(&self, i: usize) -> *mut RawPage {
        if i >= self.nr_pages() {
            return core::ptr::null_mut();
        }
        // SAFETY: `src` is valid by the type invariant and `i` is one of
        // its pages (`folio_page()` looks the page up by frame number
        // without `SPARSEMEM_VMEMMAP`, so the range matters).
        unsafe { movgem_folio_page(self.src, i as kernel::ffi::c_ulong) }
    }

    /// Moves `src` to `dst`, the object's reference on each of its `nr`
    /// pages with it.  `EAGAIN` if the references changed.  Sleeps
    /// (copying) for a large folio: only when the migration may block.
    fn move_folio(&self, nr: usize) -> Result {
        let nr = c_int::try_from(nr).map_err(|_| EINVAL)?;
        // SAFETY: both folios are valid and locked (type invariant); the
        // caller holds one reference per page of `src` through the
        // object, which the shim moves to `dst`.
        kernel::error::to_result(unsafe { movgem_folio_move(self.dst, self.src, nr) })
    }

    /// The object's reference on page `i` of `dst`.
    ///
    /// # Safety
    ///
    /// [`Self::move_folio`] succeeded, and this is called at most once
    /// for each `i` below [`Self::nr_pages`]: each call takes over one of
    /// the references the move took on `dst`.
    unsafe fn dst_ref(&self, i: usize) -> PageRef {
        // SAFETY: `dst` is valid by the type invariant, `i` in range by
        // the caller's contract.
        let page = unsafe { movgem_folio_page(self.dst, i as kernel::ffi::c_ulong) };
        // SAFETY: `folio_page()` of a valid folio is never null, and the
        // move took the reference this takes over (caller's contract).
        unsafe { PageRef::from_raw(core::ptr::NonNull::new_unchecked(page)) }
    }
}

impl Object {
    /// The hook: dispatches on `hook`.  Returns the callback's answer or
    /// one of `HOOK_BYPASS`, `HOOK_PASS`, `HOOK_RELEASED`.
    fn migrate_folio(&self, mv: &Move, mode: MigrateMode) -> c_int {
        let counters = &self.device.counters;
        counters.inc(Counter::HookCalls);
        let mut ev = MigrateEvent {
            obj: self.id(),
            index: mv.index(),
            nr: mv.nr_pages(),
            pfn_from: mv.pfns().0,
            pfn_to: 0,
            mode,
            outcome: Outcome::PassThrough,
            reason: kernel::c_str!(""),
            wait_ns: 0,
            locked_ns: 0,
        };
        let ret = match params::hook_mode() {
            HookMode::Off => {
                counters.inc(Counter::HookBypassed);
                ev.outcome = Outcome::Bypassed;
                HOOK_BYPASS
            }
            HookMode::Release => self.migrate_release(mode, &mut ev),
            HookMode::InPlace => self.migrate_in_place(mv, mode, &mut ev),
        };
        trace::migrate_folio(&ev);
        ret
    }

    /// Counts a refusal and records it for the trace; the answer for
    /// migration.
    fn refuse(&self, ev: &mut MigrateEvent, why: Refusal) -> c_int {
        self.device.counters.refused(why);
        ev.outcome = Outcome::Refused;
        ev.reason = crate::counters::refusal_name(why);
        // A transient reference: let migration retry, as it would for
        // plain shmem.
        if why == Refusal::ForeignReference {
            EAGAIN.to_errno()
        } else {
            EBUSY.to_errno()
        }
    }

    /// Takes `struct_mutex` within the hook's budget for `mode` (only
    /// `MIGRATE_SYNC` waits), never waiting for a lock the task holds
    /// itself.  Records the wait in `ev`.
    fn hook_lock(
        &self,
        mode: MigrateMode,
        ev: &mut MigrateEvent,
    ) -> core::result::Result<crate::sync::TryMutexGuard<'_, crate::device::DeviceLocked>, Refusal>
    {
        let counters = &self.device.counters;
        if self.device.struct_mutex.held_by_current() {
            return Err(Refusal::LockOwned);
        }
        let wait = policy::hook_lock_wait(mode, params::lock_timeout_ms());
        let start = now_ns();
        let locked = self.device.struct_mutex.try_lock_for(wait);
        ev.wait_ns = now_ns().saturating_sub(start);
        match locked {
            Some(locked) => Ok(locked),
            None => {
                // What the folio lock was held for, waiting: the budget's
                // proof (the in-guest contention test bounds it).
                let waited_us = now_ns().saturating_sub(start) / 1000;
                counters.max(Counter::HookLockWaitMaxUs, waited_us);
                Err(Refusal::LockContended)
            }
        }
    }

    /// `hook=inplace`.
    fn migrate_in_place(&self, mv: &Move, mode: MigrateMode, ev: &mut MigrateEvent) -> c_int {
        let may_block = mode.may_block();
        let counters = &self.device.counters;
        let nr = mv.nr_pages();
        match policy::precheck(mv.extra_refs(), nr as u64, may_block, mv.dma_pinned()) {
            Precheck::PassThrough => {
                counters.inc(Counter::PassThrough);
                return HOOK_PASS;
            }
            Precheck::Refuse(why) => return self.refuse(ev, why),
            Precheck::Candidate => {}
        }
        let mut locked = match self.hook_lock(mode, ev) {
            Ok(locked) => locked,
            Err(why) => return self.refuse(ev, why),
        };
        let locked_at = now_ns();
        let index = mv.index();
        let st = self.state(&mut locked);
        let holds = !st.dead
            && index
                .checked_add(nr)
                .and_then(|end| st.pages.get(index..end))
                .is_some_and(|pages| {
                    pages
                        .iter()
                        .enumerate()
                        .all(|(i, p)| core::ptr::eq(p.as_ptr(), mv.src_page(i)))
                });
        if !holds {
            // The extra reference is not ours: `migrate_folio()` decides.
            counters.inc(Counter::PassThrough);
            return HOOK_PASS;
        }
        let drop_vmap = match policy::decide_in_place(&self.snapshot(st), may_block) {
            InPlace::Refuse(why) => return self.refuse(ev, why),
            InPlace::Move { drop_vmap } => drop_vmap,
        };
        if drop_vmap {
            // Sync modes only (the policy's word): `vunmap()` may sleep.
            st.vmap = None;
            counters.inc(Counter::HookVunmaps);
        }
        if let Err(e) = mv.move_folio(nr) {
            counters.inc(Counter::MigrateFailed);
            ev.outcome = Outcome::Failed;
            return e.to_errno();
        }
        // Deliberately broken: the entries keep pointing at the old
        // frames, which the object keeps alive, so that the engine writes
        // stray pages, never freed memory (without room, no breakage).
        let orphan = params::debug_skip_gtt_rewrite() && st.orphans.reserve(nr, GFP_NOWAIT).is_ok();
        // Never wakes the device: without a wakeref (asleep, or runtime
        // PM disabled) only the shadow is written and the hardware
        // entries are invalidated.
        let wakeref = self.device.pm.get_if_active();
        let (mut rewritten, mut hw_rewritten) = (0, 0);
        for i in 0..nr {
            // SAFETY: the move succeeded; each page once.
            let new = unsafe { mv.dst_ref(i) };
            let pfn = new.pfn();
            let old = core::mem::replace(&mut st.pages[index + i], new);
            if orphan {
                // Cannot fail: room was reserved.
                let _ = st.orphans.push(old, GFP_NOWAIT);
            } else {
                drop(old);
                if st.gtt_offset.is_some() {
                    rewritten += 1;
                    if self.rewrite_entry(st, index + i, pfn, wakeref.is_some()) {
                        hw_rewritten += 1;
                    }
                }
            }
        }
        counters.add(Counter::GttEntriesRewritten, rewritten);
        counters.add(Counter::HwEntriesRewritten, hw_rewritten);
        counters.inc(Counter::MigratedInPlace);
        if nr > 1 {
            counters.inc(Counter::MigratedInPlaceLarge);
        }
        counters.inc(Counter::Migrated);
        ev.outcome = Outcome::InPlace;
        ev.pfn_to = mv.pfns().1;
        ev.locked_ns = now_ns().saturating_sub(locked_at);
        0
    }

    /// `hook=release`, the 2016 design: decide, and release the pages if
    /// allowed.  Never sleeps unless `may_block`, and then only within
    /// the lock budget.
    fn migrate_release(&self, mode: MigrateMode, ev: &mut MigrateEvent) -> c_int {
        let may_block = mode.may_block();
        let counters = &self.device.counters;
        let mut locked = match self.hook_lock(mode, ev) {
            Ok(locked) => locked,
            Err(why) => return self.refuse(ev, why),
        };
        let st = self.state(&mut locked);
        if st.dead {
            counters.inc(Counter::PassThrough);
            return HOOK_PASS;
        }
        let snapshot = self.snapshot(st);
        // Never wake the device from here: only an awake one may unbind.
        let wakeref = if snapshot.bind_count > 0 {
            self.device.pm.get_if_active()
        } else {
            None
        };
        match policy::decide(&snapshot, wakeref.is_some(), may_block) {
            Decision::PassThrough => {
                counters.inc(Counter::PassThrough);
                HOOK_PASS
            }
            Decision::Refuse(why) => self.refuse(ev, why),
            Decision::Release { unbind, vunmap } => {
                if vunmap {
                    counters.inc(Counter::HookVunmaps);
                }
                let n = self.release_pages(&mut locked, unbind);
                counters.inc(Counter::Released);
                counters.add(Counter::ReleasedPages, n as u64);
                ev.outcome = Outcome::Released;
                HOOK_RELEASED
            }
        }
    }
}

/// Maps the `dev_info` pointer shmem hands the callback back to its object.
///
/// # Safety
///
/// `dev_info` must be the `dev_info` field of a live [`Object`]; shmem
/// guarantees that for a registered pointer while the source folio is
/// locked (see the invariant of [`Object`]).
unsafe fn object_of<'a>(dev_info: *mut ShmemDevInfo) -> &'a Object {
    // `DevInfoSlot` is `repr(transparent)` over `Opaque<ShmemDevInfo>`,
    // itself transparent, so the field's address is the storage's.
    // SAFETY: by the caller's guarantee `dev_info` points into an `Object`.
    unsafe { &*kernel::container_of!(dev_info.cast::<DevInfoSlot>(), Object, dev_info) }
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `dev_info` must be registered on the mapping of `src`; `src` and
/// `dst` must be valid and locked for the duration of the call, `src`
/// isolated and unmapped, as `address_space_operations.migrate_folio`
/// guarantees.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_migrate_folio(
    dev_info: *mut ShmemDevInfo,
    dst: *mut RawFolio,
    src: *mut RawFolio,
    mode: c_int,
) -> c_int {
    // SAFETY: a registered pointer with a folio of the object locked: the
    // object is alive until the folio is unlocked (caller's contract).
    let obj = unsafe { object_of(dev_info) };
    // INVARIANT: the caller's contract.
    let mv = Move { dst, src };
    obj.migrate_folio(&mv, MigrateMode::from_raw(mode))
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// As for [`movgem_rs_migrate_folio`]: called with the same folio still
/// locked.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_migrate_done(dev_info: *mut ShmemDevInfo, ret: c_int) {
    // SAFETY: as in `movgem_rs_migrate_folio`.
    let obj = unsafe { object_of(dev_info) };
    if ret == 0 {
        obj.device.counters.inc(Counter::Migrated);
    } else {
        obj.device.counters.inc(Counter::MigrateFailed);
    }
}
