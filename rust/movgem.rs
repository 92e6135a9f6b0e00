// SPDX-License-Identifier: GPL-2.0

//! movgem: GEM-style buffer objects whose shmem pages stay migratable.
//!
//! Objects are shmem files allocated `GFP_HIGHUSER_MOVABLE`.  Each
//! registers a `struct shmem_dev_info` (see `patches/`) so that page
//! migration asks us before moving one of their folios; the Rust policy in
//! `policy.rs` decides whether the object's page references may be
//! dropped to let the folio move.  `Documentation/design.md` opens with a
//! map of the files; the lock order is at the top of `device.rs`.

// `pin_init!` of `Object` (every field one macro step) needs more than
// the default 128.
#![recursion_limit = "256"]

use kernel::prelude::*;
use kernel::sync::Arc;

mod counters;
mod debugfs;
mod device;
mod engine;
mod file;
pub mod gtt;
mod kunit;
mod migrate;
mod object;
mod pages;
mod params;
mod pm;
pub mod policy;
mod shmem;
pub mod shrink_cursor;
mod shrinker;
mod sync;
mod trace;
mod uapi;
pub mod uapi_abi;
mod userptr;
mod vma;

use debugfs::Debugfs;
use device::Device;
use engine::Engine;
use file::MiscDevice;
use pm::PmDriver;
use shrinker::Reclaim;

module! {
    type: Movgem,
    name: "movgem",
    author: "movgem developers",
    description: "GEM-style shmem objects that do not block page migration",
    license: "GPL",
}

/// Module state.  Every registration holds what its callbacks need and
/// hands it to them; nothing is global.  `Drop::drop` takes them down in
/// order; the remaining fields then drop in declaration order.
struct Movgem {
    /// `/dev/movgem`: no new opens once it is gone.
    misc: Option<Pin<KBox<MiscDevice>>>,
    /// Shrinker, OOM and vmap purge notifiers.
    reclaim: Option<Pin<KBox<Reclaim>>>,
    debugfs: Option<Pin<KBox<Debugfs>>>,
    engine: Arc<Engine>,
    device: Arc<Device>,
    /// Goes last: the device's platform device is gone by then.
    _pm_driver: PmDriver,
}

impl kernel::Module for Movgem {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        if !counters::names_consistent() {
            pr_err!("counter names disagree with policy.rs\n");
            return Err(EINVAL);
        }
        let pm_driver = PmDriver::new()?;
        let device = Device::new()?;
        let engine = Engine::new(device.clone())?;
        let mut this = Movgem {
            misc: None,
            reclaim: None,
            debugfs: None,
            engine,
            device,
            _pm_driver: pm_driver,
        };
        // On error `this` drops, which undoes whatever was registered.
        this.debugfs = Some(Debugfs::new(this.engine.clone())?);
        this.reclaim = Some(Reclaim::new(this.engine.clone())?);
        // The device file goes last, once all else is ready.
        this.misc = Some(MiscDevice::new(this.engine.clone())?);
        pr_info!("loaded (hook {:?})\n", params::hook_mode());
        Ok(this)
    }
}

impl Drop for Movgem {
    fn drop(&mut self) {
        // No new opens; open files pin the module, so none are left.
        self.misc.take();
        // Waits for scans and notifier calls in flight; none start
        // afterwards.
        self.reclaim.take();
        // Truncations the shrinker deferred hold their objects, which
        // hold the device: let them finish while the device is ours.
        self.device.flush_purges();
        // Waits for operations in flight on the files.
        self.debugfs.take();
        // Requests may outlive their files: end them, wait for them and
        // for their work functions, so that this module holds the last
        // reference to the engine and destroys its ring.
        self.engine.drain();
        // Objects whose last request retired just now are freed there.
        self.device.flush_purges();
        let selftest = self.device.struct_mutex.lock().selftest.take();
        if let Some(obj) = selftest {
            obj.destroy();
        }
        pr_info!("unloaded\n");
    }
}
