// SPDX-License-Identifier: GPL-2.0

//! The Rust side of the shmem migrate callback (`rust/shims/shmem.c`):
//! with the source folio locked, decide with `policy.rs` and, if allowed,
//! release the object's pages so that the folio can move.

use kernel::ffi::c_int;
use kernel::prelude::*;

use crate::counters::Counter;
use crate::object::Object;
use crate::params;
use crate::policy::{self, Decision};
use crate::shmem::{DevInfoSlot, RawFolio, ShmemDevInfo};
use crate::sync::now_ns;

/// Returned to C when the hook is switched off: call `migrate_folio()`
/// and return its result unchanged, exactly as an unpatched kernel would.
/// `MOVGEM_HOOK_BYPASS` in `include/movgem_shim.h`.
const HOOK_BYPASS: c_int = 1;

impl Object {
    /// The hook proper: decide, and release the pages if allowed.  Never
    /// sleeps unless `may_block`, and then only within the lock budget.
    fn migrate_prepare(&self, may_block: bool) -> c_int {
        let counters = &self.device.counters;
        counters.inc(Counter::HookCalls);
        if !params::hook_enabled() {
            counters.inc(Counter::HookBypassed);
            return HOOK_BYPASS;
        }
        let wait = policy::lock_wait(may_block, params::lock_timeout_ms());
        let start = now_ns();
        let Some(mut locked) = self.device.struct_mutex.try_lock_for(wait) else {
            // What the folio lock was held for, waiting: the budget's
            // proof (the in-guest contention test bounds it).
            let waited_us = now_ns().saturating_sub(start) / 1000;
            counters.max(Counter::HookLockWaitMaxUs, waited_us);
            counters.refused(policy::Refusal::LockContended);
            return EBUSY.to_errno();
        };
        let st = self.state(&mut locked);
        if st.dead {
            counters.inc(Counter::PassThrough);
            return 0;
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
                0
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
                0
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
/// `dev_info` must be registered on the mapping of `src`, which must be
/// locked for the duration of the call.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_migrate_prepare(
    dev_info: *mut ShmemDevInfo,
    _src: *mut RawFolio,
    may_block: bool,
) -> c_int {
    // SAFETY: a registered pointer with a folio of the object locked: the
    // object is alive until the folio is unlocked (caller's contract).
    let obj = unsafe { object_of(dev_info) };
    obj.migrate_prepare(may_block)
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// As for [`movgem_rs_migrate_prepare`]: called with the same folio still
/// locked.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_migrate_done(dev_info: *mut ShmemDevInfo, ret: c_int) {
    // SAFETY: as in `movgem_rs_migrate_prepare`.
    let obj = unsafe { object_of(dev_info) };
    if ret == 0 {
        obj.device.counters.inc(Counter::Migrated);
    } else {
        obj.device.counters.inc(Counter::MigrateFailed);
    }
}
