// SPDX-License-Identifier: GPL-2.0

//! Module parameters, declared in `rust/helpers/params.c`.

extern "C" {
    fn movgem_param_hook_enabled() -> bool;
    fn movgem_param_lock_timeout_ms() -> kernel::ffi::c_uint;
}

/// `hook`: whether the migrate hook may release pages.
pub(crate) fn hook_enabled() -> bool {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_hook_enabled() }
}

/// `lock_timeout_ms`: the hook's budget for `struct_mutex`.
pub(crate) fn lock_timeout_ms() -> u32 {
    // SAFETY: reads a module parameter; no preconditions.
    unsafe { movgem_param_lock_timeout_ms() }
}
