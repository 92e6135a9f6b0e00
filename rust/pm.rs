// SPDX-License-Identifier: GPL-2.0

//! Runtime PM of the simulated GPU (a platform device, see
//! `rust/shims/pm.c`).

use core::ptr::NonNull;

use kernel::error::from_err_ptr;
use kernel::ffi::{c_int, c_uint, c_void};
use kernel::prelude::*;

use crate::device::Device;

extern "C" {
    fn movgem_pm_driver_register() -> c_int;
    fn movgem_pm_driver_unregister();
    fn movgem_pm_init(autosuspend_ms: c_uint, numbered: bool) -> *mut c_void;
    fn movgem_pm_attach(dev: *mut c_void, owner: *mut c_void);
    fn movgem_pm_fini(dev: *mut c_void);
    fn movgem_pm_get(dev: *mut c_void) -> c_int;
    fn movgem_pm_get_if_active(dev: *mut c_void) -> c_int;
    fn movgem_pm_put(dev: *mut c_void);
    fn movgem_pm_put_idle(dev: *mut c_void);
    fn movgem_pm_suspended(dev: *mut c_void) -> bool;
    fn movgem_pm_set_enabled(dev: *mut c_void, enabled: bool);
}

/// The GPU's `struct device`, runtime PM enabled, autosuspend on.
///
/// # Invariants
///
/// `dev` came from `movgem_pm_init` and stays registered until drop.
pub(crate) struct RuntimePm {
    dev: NonNull<c_void>,
}

// SAFETY: the runtime PM core serialises every call on the device itself.
unsafe impl Send for RuntimePm {}
// SAFETY: as above.
unsafe impl Sync for RuntimePm {}

impl RuntimePm {
    /// Registers the platform device (`numbered`: "movgem.N.auto"
    /// instead of "movgem"); it starts suspended.  The driver must be
    /// registered ([`PmDriver`]).
    pub(crate) fn new(autosuspend_ms: u32, numbered: bool) -> Result<Self> {
        // SAFETY: no preconditions; errors come back as error pointers.
        let dev = from_err_ptr(unsafe { movgem_pm_init(autosuspend_ms, numbered) })?;
        // INVARIANT: `from_err_ptr` succeeded.
        NonNull::new(dev).map(|dev| Self { dev }).ok_or(ENODEV)
    }

    /// Runtime PM callbacks reach `device` from now on: the device this
    /// is the runtime PM of.  The callbacks use only fields of `device`
    /// declared after its `pm`, which are dropped after it.
    pub(crate) fn attach(&self, device: &Device) {
        let owner: *const Device = device;
        // SAFETY: `dev` is registered by the type invariant; `owner` stays
        // valid until drop, which disables runtime PM (waiting for
        // callbacks in flight) before the fields the callbacks use go.
        unsafe { movgem_pm_attach(self.dev.as_ptr(), owner.cast_mut().cast()) }
    }

    /// Wakes the device if needed and holds it awake.
    pub(crate) fn get(&self) -> Result<Wakeref<'_>> {
        // SAFETY: `dev` is registered by the type invariant.
        kernel::error::to_result(unsafe { movgem_pm_get(self.dev.as_ptr()) })?;
        Ok(Wakeref {
            pm: self,
            used: true,
        })
    }

    /// Holds the device awake only if it is runtime-active: never wakes
    /// it.  `None` also while runtime PM is disabled (a system sleep),
    /// when the device may well be active: `None` does not mean the
    /// hardware lost its state.  Releasing the reference is not a use of
    /// the device (the hook's and reclaim's look at it): autosuspend still
    /// counts from the last request.
    pub(crate) fn get_if_active(&self) -> Option<Wakeref<'_>> {
        // SAFETY: `dev` is registered by the type invariant.
        let got = unsafe { movgem_pm_get_if_active(self.dev.as_ptr()) } > 0;
        // Lazily: a `Wakeref` built for nothing would put on drop.
        got.then(|| Wakeref {
            pm: self,
            used: false,
        })
    }

    /// Whether the device is runtime-suspended now.
    pub(crate) fn suspended(&self) -> bool {
        // SAFETY: `dev` is registered by the type invariant.
        unsafe { movgem_pm_suspended(self.dev.as_ptr()) }
    }

    /// Test aid (debugfs `runtime_pm`): disables runtime PM with the
    /// device left as it is, as a system sleep does between its late
    /// suspend and early resume phases, or enables it again.  Calls must
    /// pair up (the PM core counts disables).
    pub(crate) fn set_enabled(&self, enabled: bool) {
        // SAFETY: `dev` is registered by the type invariant.
        unsafe { movgem_pm_set_enabled(self.dev.as_ptr(), enabled) }
    }

    /// Releases a reference whose [`Wakeref`] from [`RuntimePm::get`]
    /// was forgotten (handed to work that outlives the borrow): the end
    /// of a use, autosuspend counts from now.
    pub(crate) fn put_detached(&self) {
        // SAFETY: the caller owns the usage reference of a forgotten
        // `Wakeref`.
        unsafe { movgem_pm_put(self.dev.as_ptr()) }
    }
}

impl Drop for RuntimePm {
    fn drop(&mut self) {
        // SAFETY: `dev` is registered by the type invariant.
        unsafe { movgem_pm_fini(self.dev.as_ptr()) }
    }
}

/// A usage reference on the device.  Dropping one from
/// [`RuntimePm::get`] restarts autosuspend; one from
/// [`RuntimePm::get_if_active`] leaves the last use where it was.
pub(crate) struct Wakeref<'a> {
    pm: &'a RuntimePm,
    /// Taken for a use of the device (a request), not a look at it.
    used: bool,
}

impl Drop for Wakeref<'_> {
    fn drop(&mut self) {
        if self.used {
            self.pm.put_detached();
        } else {
            // SAFETY: this `Wakeref` owns a usage reference.
            unsafe { movgem_pm_put_idle(self.pm.dev.as_ptr()) }
        }
    }
}

/// C entry point, see `include/movgem_shim.h`.
/// The platform driver whose runtime PM callbacks every [`RuntimePm`]
/// device uses; unregistered on drop.
pub(crate) struct PmDriver(());

impl PmDriver {
    /// Registers the driver.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: no preconditions.
        kernel::error::to_result(unsafe { movgem_pm_driver_register() })?;
        Ok(Self(()))
    }
}

impl Drop for PmDriver {
    fn drop(&mut self) {
        // SAFETY: registered by `new`, unregistered once here.
        unsafe { movgem_pm_driver_unregister() }
    }
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `owner` must be the device given to [`RuntimePm::attach`].
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_runtime_suspend(owner: *mut c_void) {
    // SAFETY: by the caller's contract.
    let device = unsafe { &*owner.cast::<Device>() };
    device.runtime_suspended();
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// As for [`movgem_rs_runtime_suspend`].
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_runtime_resume(owner: *mut c_void) {
    // SAFETY: by the caller's contract.
    let device = unsafe { &*owner.cast::<Device>() };
    device.runtime_resumed();
}
