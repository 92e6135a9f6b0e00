// SPDX-License-Identifier: GPL-2.0

//! movgem: GEM-style buffer objects whose shmem pages stay migratable.
//!
//! Objects are shmem files allocated `GFP_HIGHUSER_MOVABLE`.  Each
//! registers a `struct shmem_dev_info` (see `patches/`) so that page
//! migration asks us before moving one of their folios; the Rust policy in
//! `policy.rs` decides whether the object's page references may be
//! dropped to let the folio move.

use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::ffi::{c_char, c_ulong, c_void};

use kernel::prelude::*;
use kernel::sync::Arc;

mod control;
mod counters;
mod file;
mod gpu;
pub mod gtt;
mod object;
mod params;
mod pm;
pub mod policy;
mod selftests;
mod shmem;
mod sync;
mod uapi;
mod userptr;

use control::Control;
use object::Device;

module! {
    type: Movgem,
    name: "movgem",
    author: "movgem developers",
    description: "GEM-style shmem objects that do not block page migration",
    license: "GPL",
}

// `struct dentry` is opaque here: bindgen's layout of it is not FFI-safe.
extern "C" {
    fn movgem_debugfs_init() -> *mut c_void;
    fn movgem_debugfs_add_counter(dir: *mut c_void, name: *const c_char, id: c_ulong);
    fn movgem_debugfs_add_control(dir: *mut c_void);
    fn movgem_debugfs_remove(dir: *mut c_void);
    fn movgem_misc_register() -> kernel::ffi::c_int;
    fn movgem_misc_deregister();
    fn movgem_vmap_notifier_register() -> kernel::ffi::c_int;
    fn movgem_vmap_notifier_unregister();
    fn movgem_shrinker_register() -> *mut c_void;
    fn movgem_shrinker_unregister(shrinker: *mut c_void);
    fn movgem_oom_notifier_register() -> kernel::ffi::c_int;
    fn movgem_oom_notifier_unregister();
}

/// The control state reached from the debugfs shim; set while the module
/// is live.
static CONTROL: AtomicPtr<Control> = AtomicPtr::new(null_mut());

/// The control state, while the module is live.
fn control() -> Option<&'static Control> {
    let ptr = CONTROL.load(Ordering::Acquire);
    // SAFETY: non-NULL only from `init` until `drop`, which first removes
    // the debugfs files (waiting for callers in flight), then frees it.
    unsafe { ptr.as_ref() }
}

/// The GPU's workqueue, while the module is live.
fn queue() -> Option<&'static kernel::workqueue::Queue> {
    control().map(Control::queue)
}

/// A registration undone on drop (misc device, vmap purge and OOM
/// notifiers).
struct Registration {
    undo: unsafe extern "C" fn(),
}

impl Registration {
    /// Runs `register`; on success `undo` runs on drop.
    ///
    /// # Safety
    ///
    /// `undo` must be safe to call once after `register` succeeded.
    unsafe fn new(
        register: unsafe extern "C" fn() -> kernel::ffi::c_int,
        undo: unsafe extern "C" fn(),
    ) -> Result<Self> {
        // SAFETY: the shims take no arguments and have no preconditions.
        kernel::error::to_result(unsafe { register() })?;
        Ok(Self { undo })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `new` succeeded, so undoing once is what the caller
        // promised is safe.
        unsafe { (self.undo)() }
    }
}

/// The registered shrinker; freed (waiting for scans in flight) on drop.
///
/// # Invariants
///
/// `shrinker` came from `movgem_shrinker_register`.
struct Shrinker {
    shrinker: NonNull<c_void>,
}

impl Shrinker {
    fn new() -> Result<Self> {
        // SAFETY: no preconditions; NULL means the allocation failed.
        let shrinker = unsafe { movgem_shrinker_register() };
        NonNull::new(shrinker)
            .map(|shrinker| Self { shrinker })
            .ok_or(ENOMEM)
    }
}

impl Drop for Shrinker {
    fn drop(&mut self) {
        // SAFETY: registered, by the type invariant, and freed once here.
        unsafe { movgem_shrinker_unregister(self.shrinker.as_ptr()) }
    }
}

/// /sys/kernel/debug/movgem/, removed on drop.
///
/// # Invariants
///
/// `dir` came from `debugfs_create_dir` (it may be an error pointer, which
/// debugfs accepts everywhere).
struct Debugfs {
    dir: NonNull<c_void>,
}

impl Debugfs {
    fn new() -> Result<Self> {
        // SAFETY: no preconditions; errors come back as error pointers,
        // which every debugfs call below accepts.
        let dir = unsafe { movgem_debugfs_init() };
        let dir = NonNull::new(dir).ok_or(ENOMEM)?;
        for (id, name) in counters::NAMES.iter().enumerate() {
            // SAFETY: `dir` is a debugfs directory and `name` is a static
            // NUL-terminated string.
            unsafe { movgem_debugfs_add_counter(dir.as_ptr(), name.as_char_ptr(), id as c_ulong) };
        }
        // SAFETY: as above.
        unsafe { movgem_debugfs_add_control(dir.as_ptr()) };
        Ok(Self { dir })
    }
}

impl Drop for Debugfs {
    fn drop(&mut self) {
        // SAFETY: `dir` is ours by the type invariant; removal waits for
        // operations in flight on the files below it.
        unsafe { movgem_debugfs_remove(self.dir.as_ptr()) };
    }
}

/// Module state.  Fields drop in declaration order after `Drop::drop`.
struct Movgem {
    misc: Option<Registration>,
    shrinker: Option<Shrinker>,
    vmap_notifier: Option<Registration>,
    oom_notifier: Option<Registration>,
    debugfs: Option<Debugfs>,
    control: Pin<KBox<Control>>,
    device: Arc<Device>,
}

// SAFETY: `Debugfs` and `Shrinker` only hold pointers that their
// subsystems let any task release; the other fields are `Send` and `Sync`.
unsafe impl Send for Movgem {}
// SAFETY: as above.
unsafe impl Sync for Movgem {}

impl kernel::Module for Movgem {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        if !counters::names_consistent() {
            pr_err!("counter names disagree with policy.rs\n");
            return Err(EINVAL);
        }
        let device = Device::new()?;
        let wq = gpu::WorkQueue::new()?;
        let control = KBox::pin_init(Control::new(device.clone(), wq), GFP_KERNEL)?;
        let mut this = Movgem {
            misc: None,
            shrinker: None,
            vmap_notifier: None,
            oom_notifier: None,
            debugfs: None,
            control,
            device,
        };
        CONTROL.store(
            core::ptr::from_ref::<Control>(&this.control).cast_mut(),
            Ordering::Release,
        );
        // On error `this` drops, which undoes whatever was registered.
        this.debugfs = Some(Debugfs::new()?);
        // SAFETY: unregistering once after registering is always allowed.
        this.vmap_notifier = Some(unsafe {
            Registration::new(
                movgem_vmap_notifier_register,
                movgem_vmap_notifier_unregister,
            )?
        });
        // SAFETY: as above.
        this.oom_notifier = Some(unsafe {
            Registration::new(movgem_oom_notifier_register, movgem_oom_notifier_unregister)?
        });
        this.shrinker = Some(Shrinker::new()?);
        // SAFETY: as above; the device goes last, once all else is ready.
        this.misc =
            Some(unsafe { Registration::new(movgem_misc_register, movgem_misc_deregister)? });
        pr_info!(
            "loaded (hook {})\n",
            if params::hook_enabled() { "on" } else { "off" }
        );
        Ok(this)
    }
}

impl Drop for Movgem {
    fn drop(&mut self) {
        // No new opens; open files pin the module, so none are left.
        self.misc.take();
        // Waits for scans in flight; none start afterwards.
        self.shrinker.take();
        self.vmap_notifier.take();
        self.oom_notifier.take();
        // Files next: after this no shim can call into `control`.
        self.debugfs.take();
        CONTROL.store(null_mut(), Ordering::Release);
        // Requests may outlive their files: end them and wait.
        gpu::reset(&self.device);
        gpu::wait_all_idle(&self.device);
        let selftest = self.device.struct_mutex.lock().selftest.take();
        if let Some(obj) = selftest {
            obj.destroy();
        }
        pr_info!("unloaded\n");
        // `control` drops next and destroys the workqueue, which waits
        // for the last request to return from its work function.
    }
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_vmap_purge(may_wait: bool) -> kernel::ffi::c_ulong {
    control().map_or(0, |c| {
        c.device().purge_vmaps(may_wait) as kernel::ffi::c_ulong
    })
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_shrink_count() -> kernel::ffi::c_ulong {
    control().map_or(0, |c| c.device().shrink_count() as kernel::ffi::c_ulong)
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_shrink_scan(
    nr_to_scan: kernel::ffi::c_ulong,
    may_block: bool,
    may_fs: bool,
) -> kernel::ffi::c_long {
    match control().map(|c| c.device().shrink_scan(nr_to_scan as u64, may_block, may_fs)) {
        Some(Some(freed)) => freed as kernel::ffi::c_long,
        Some(None) => -1,
        None => 0,
    }
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_oom_notify() -> kernel::ffi::c_ulong {
    control().map_or(0, |c| c.device().oom_notify() as kernel::ffi::c_ulong)
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_drop_caches(flags: u64) -> kernel::ffi::c_int {
    match control().map(|c| c.device().drop_caches(flags)) {
        Some(Ok(())) => 0,
        Some(Err(e)) => e.to_errno(),
        None => ENODEV.to_errno(),
    }
}
