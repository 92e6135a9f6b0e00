// SPDX-License-Identifier: GPL-2.0

//! Module parameters, declared in `rust/shims/params.c`.

use crate::policy::HookMode;

extern "C" {
    fn movgem_param_hook_mode() -> kernel::ffi::c_int;
    fn movgem_param_lock_timeout_ms() -> kernel::ffi::c_uint;
    fn movgem_param_debug_skip_gtt_rewrite() -> bool;
    fn movgem_param_debug_skip_restore() -> bool;
    fn movgem_param_debug_skip_longterm_migrate() -> bool;
    fn movgem_param_debug_release_before_bind() -> bool;
}

/// `hook`: how migration of an object's folio goes.
pub(crate) fn hook_mode() -> HookMode {
    // SAFETY: reads a module parameter; no preconditions.
    HookMode::from_raw(unsafe { movgem_param_hook_mode() })
}

/// `debug_skip_gtt_rewrite`: a deliberate breakage for the tests.
pub(crate) fn debug_skip_gtt_rewrite() -> bool {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_debug_skip_gtt_rewrite() }
}

/// `debug_skip_restore`: a deliberate breakage for the tests.
pub(crate) fn debug_skip_restore() -> bool {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_debug_skip_restore() }
}

/// `debug_skip_longterm_migrate`: a deliberate breakage for the tests.
pub(crate) fn debug_skip_longterm_migrate() -> bool {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_debug_skip_longterm_migrate() }
}

/// `debug_release_before_bind`: a test aid (EXECBUF's locked fallback).
pub(crate) fn debug_release_before_bind() -> bool {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_debug_release_before_bind() }
}

extern "C" {
    fn movgem_param_debug_reclaim_waits_truncation_ms() -> kernel::ffi::c_uint;
    fn movgem_param_debug_userptr_invalidate_keeps() -> bool;
    fn movgem_param_debug_userptr_shrink_keeps() -> bool;
    fn movgem_param_debug_no_locked_fetch() -> bool;
    fn movgem_param_debug_lock_wait_overrun_ms() -> kernel::ffi::c_uint;
}

/// `debug_reclaim_waits_truncation_ms`: a deliberate breakage for the
/// tests (reclaim waits for its purges' truncations, as the old in-place
/// purge did); 0 is off.
pub(crate) fn debug_reclaim_waits_truncation_ms() -> u32 {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_debug_reclaim_waits_truncation_ms() }
}

/// `debug_userptr_invalidate_keeps`: a deliberate breakage for the tests.
pub(crate) fn debug_userptr_invalidate_keeps() -> bool {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_debug_userptr_invalidate_keeps() }
}

/// `debug_userptr_shrink_keeps`: a deliberate breakage for the tests.
pub(crate) fn debug_userptr_shrink_keeps() -> bool {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_debug_userptr_shrink_keeps() }
}

/// `debug_no_locked_fetch`: a deliberate breakage for the tests.
pub(crate) fn debug_no_locked_fetch() -> bool {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_debug_no_locked_fetch() }
}

/// `debug_lock_wait_overrun_ms`: a deliberate breakage for the tests.
pub(crate) fn debug_lock_wait_overrun_ms() -> u32 {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_debug_lock_wait_overrun_ms() }
}

/// `lock_timeout_ms`: the hook's budget for `struct_mutex`.
pub(crate) fn lock_timeout_ms() -> u32 {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_lock_timeout_ms() }
}

extern "C" {
    fn movgem_param_autosuspend_ms() -> kernel::ffi::c_uint;
    fn movgem_param_hang_timeout_ms() -> kernel::ffi::c_uint;
}

/// `autosuspend_ms`: runtime PM autosuspend delay of the device.
pub(crate) fn autosuspend_ms() -> u32 {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_autosuspend_ms() }
}

/// `hang_timeout_ms`: when a hanging batch is reset.
pub(crate) fn hang_timeout_ms() -> u32 {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_hang_timeout_ms() }
}

extern "C" {
    fn movgem_param_shrinker_enabled() -> bool;
    fn movgem_param_oom_notifier_enabled() -> bool;
}

/// `oom_notifier`: whether the OOM notifier gives memory back (by
/// default, whenever `shrinker` is on).
pub(crate) fn oom_notifier_enabled() -> bool {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_oom_notifier_enabled() }
}

/// `shrinker`: whether the shrinker gives memory back.
pub(crate) fn shrinker_enabled() -> bool {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_shrinker_enabled() }
}

extern "C" {
    fn movgem_param_userptr_keep_pages() -> bool;
}

/// `userptr_keep_pages`: userptr objects keep their pages after use, as
/// i915's do, until reclaim or an invalidation drops them.
pub(crate) fn userptr_keep_pages() -> bool {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_userptr_keep_pages() }
}
