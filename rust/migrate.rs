// SPDX-License-Identifier: GPL-2.0

//! The Rust side of the shmem migrate callback (`rust/shims/shmem.c`),
//! called with the source and destination folios locked.
//!
//! `hook=inplace` (the default) moves the one folio and keeps the object
//! bound: a glance at the reference count first (a foreign reference
//! means the folio cannot move: nothing is locked or touched), then
//! `struct_mutex` within the lock budget, `policy::decide_in_place`, and
//! the move itself (`movgem_folio_move`: copy, page cache, flags, the
//! object's reference), after which the object's page array and GTT
//! entries point at the new folio.  The device is never woken: its
//! hardware entries are rewritten only if it is awake, and restored from
//! the shadow entries otherwise (`vma.rs`).  `hook=release` is the 2016
//! design, kept for comparison: the whole object lets go of its pages,
//! then `migrate_folio()` moves the folio.  `hook=off` is plain
//! `migrate_folio()`.
//!
//! `MIGRATE_ASYNC` (`may_block` false) never sleeps: one try-lock, no
//! allocation, no `vunmap()`, no array freed; a cached vmap means a
//! refusal there.

use kernel::ffi::c_int;
use kernel::prelude::*;

use crate::counters::Counter;
use crate::object::Object;
use crate::params;
use crate::policy::{self, Decision, HookMode, InPlace, Precheck, Refusal};
use crate::shmem::{DevInfoSlot, PageRef, RawFolio, RawPage, ShmemDevInfo};
use crate::sync::now_ns;

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
    fn movgem_folio_large(folio: *mut RawFolio) -> bool;
    fn movgem_folio_index(folio: *mut RawFolio) -> kernel::ffi::c_ulong;
    fn movgem_folio_page(folio: *mut RawFolio) -> *mut RawPage;
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

    fn large(&self) -> bool {
        // SAFETY: `src` is valid by the type invariant.
        unsafe { movgem_folio_large(self.src) }
    }

    fn index(&self) -> usize {
        // SAFETY: `src` is valid and locked, so its index is stable.
        unsafe { movgem_folio_index(self.src) as usize }
    }

    fn src_page(&self) -> *mut RawPage {
        // SAFETY: `src` is valid by the type invariant.
        unsafe { movgem_folio_page(self.src) }
    }

    /// Moves `src` to `dst`, the object's one reference with it; returns
    /// the reference on `dst`.  `EAGAIN` if the references changed.
    fn move_one(&self) -> Result<PageRef> {
        // SAFETY: both folios are valid and locked (type invariant); the
        // caller holds one reference on `src` through the object, which
        // the shim moves to `dst`; order-0 only (no sleeping copy).
        kernel::error::to_result(unsafe { movgem_folio_move(self.dst, self.src, 1) })?;
        // SAFETY: `dst` is valid.
        let page = unsafe { movgem_folio_page(self.dst) };
        let page = core::ptr::NonNull::new(page).ok_or(EINVAL)?;
        // SAFETY: the shim took one reference on `dst` for us.
        Ok(unsafe { PageRef::from_raw(page) })
    }
}

impl Object {
    /// The hook: dispatches on `hook`.  Returns the callback's answer or
    /// one of `HOOK_BYPASS`, `HOOK_PASS`, `HOOK_RELEASED`.
    fn migrate_folio(&self, mv: &Move, may_block: bool) -> c_int {
        let counters = &self.device.counters;
        counters.inc(Counter::HookCalls);
        match params::hook_mode() {
            HookMode::Off => {
                counters.inc(Counter::HookBypassed);
                HOOK_BYPASS
            }
            HookMode::Release => self.migrate_release(may_block),
            HookMode::InPlace => self.migrate_in_place(mv, may_block),
        }
    }

    /// Takes `struct_mutex` within the hook's budget, never waiting for
    /// a lock the task holds itself.
    fn hook_lock(
        &self,
        may_block: bool,
    ) -> core::result::Result<crate::sync::TryMutexGuard<'_, crate::device::DeviceLocked>, Refusal>
    {
        let counters = &self.device.counters;
        if self.device.struct_mutex.held_by_current() {
            return Err(Refusal::LockOwned);
        }
        let wait = policy::lock_wait(may_block, params::lock_timeout_ms());
        let start = now_ns();
        match self.device.struct_mutex.try_lock_for(wait) {
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
    fn migrate_in_place(&self, mv: &Move, may_block: bool) -> c_int {
        let counters = &self.device.counters;
        match policy::precheck(mv.extra_refs(), mv.large()) {
            Precheck::PassThrough => {
                counters.inc(Counter::PassThrough);
                return HOOK_PASS;
            }
            Precheck::Refuse(why) => {
                counters.refused(why);
                // A transient reference: let migration retry, as it
                // would for plain shmem.
                return if why == Refusal::ForeignReference {
                    EAGAIN.to_errno()
                } else {
                    EBUSY.to_errno()
                };
            }
            Precheck::Candidate => {}
        }
        let mut locked = match self.hook_lock(may_block) {
            Ok(locked) => locked,
            Err(why) => {
                counters.refused(why);
                return EBUSY.to_errno();
            }
        };
        let index = mv.index();
        let st = self.state(&mut locked);
        let holds = !st.dead
            && st
                .pages
                .get(index)
                .is_some_and(|p| core::ptr::eq(p.as_ptr(), mv.src_page()));
        if !holds {
            // The extra reference is not ours: `migrate_folio()` decides.
            counters.inc(Counter::PassThrough);
            return HOOK_PASS;
        }
        let drop_vmap = match policy::decide_in_place(&self.snapshot(st), may_block) {
            InPlace::Refuse(why) => {
                counters.refused(why);
                return EBUSY.to_errno();
            }
            InPlace::Move { drop_vmap } => drop_vmap,
        };
        if drop_vmap {
            // Sync modes only (the policy's word): `vunmap()` may sleep.
            st.vmap = None;
            counters.inc(Counter::HookVunmaps);
        }
        let new = match mv.move_one() {
            Ok(new) => new,
            Err(e) => {
                counters.inc(Counter::MigrateFailed);
                return e.to_errno();
            }
        };
        // Never wakes the device: asleep, only the shadow is written.
        let wakeref = self.device.pm.get_if_active();
        let pfn = new.pfn();
        let old = core::mem::replace(&mut st.pages[index], new);
        // Deliberately broken: the entries keep pointing at the old frame,
        // which the object keeps alive, so that the engine writes a stray
        // page, never freed memory (without room for it, no breakage).
        if params::debug_skip_gtt_rewrite() && st.orphans.reserve(1, GFP_NOWAIT).is_ok() {
            // Cannot fail: room was reserved.
            let _ = st.orphans.push(old, GFP_NOWAIT);
        } else {
            drop(old);
            if st.gtt_offset.is_some() {
                let hw = self.rewrite_entry(st, index, pfn, wakeref.is_some());
                counters.inc(Counter::GttEntriesRewritten);
                if hw {
                    counters.inc(Counter::HwEntriesRewritten);
                }
            }
        }
        counters.inc(Counter::MigratedInPlace);
        counters.inc(Counter::Migrated);
        0
    }

    /// `hook=release`, the 2016 design: decide, and release the pages if
    /// allowed.  Never sleeps unless `may_block`, and then only within
    /// the lock budget.
    fn migrate_release(&self, may_block: bool) -> c_int {
        let counters = &self.device.counters;
        let mut locked = match self.hook_lock(may_block) {
            Ok(locked) => locked,
            Err(why) => {
                counters.refused(why);
                return EBUSY.to_errno();
            }
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
            Decision::Refuse(why) => {
                counters.refused(why);
                EBUSY.to_errno()
            }
            Decision::Release { unbind, vunmap } => {
                if vunmap {
                    counters.inc(Counter::HookVunmaps);
                }
                let n = self.release_pages(&mut locked, unbind);
                counters.inc(Counter::Released);
                counters.add(Counter::ReleasedPages, n as u64);
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
    may_block: bool,
) -> c_int {
    // SAFETY: a registered pointer with a folio of the object locked: the
    // object is alive until the folio is unlocked (caller's contract).
    let obj = unsafe { object_of(dev_info) };
    // INVARIANT: the caller's contract.
    let mv = Move { dst, src };
    obj.migrate_folio(&mv, may_block)
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
