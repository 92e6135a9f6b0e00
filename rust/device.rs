// SPDX-License-Identifier: GPL-2.0

//! The device: its `struct_mutex` and the state it guards (the object
//! list, the GTT, the self-test object, the shrinker's cursor), runtime
//! PM, counters; creating, listing and closing objects.
//!
//! # Locking
//!
//! Lock order, outermost first (the only place it is written):
//!
//! 1. `FileState::handles` (per open file): a leaf, never held while
//!    taking anything below.
//! 2. `Device::struct_mutex` (a [`TryMutex`]): every object's mutable
//!    state ([`LockedBy`] it), the GTT and the object list.
//! 3. folio locks (taken inside shmem while fetching pages), vmalloc's
//!    locks (`vmap()`), `Engine::state`, `Device::notifier_lock` and
//!    `Object::hw` (spin locks, leaves), except that `notifier_lock` may
//!    be held while taking `Object::user_kept` (a spin lock, a leaf).
//!
//! Everything under `struct_mutex` runs in a NOFS allocation scope and
//! the shrinker refuses to work without `__GFP_FS`, so an allocation
//! under the lock never recurses into our shrinker; lockdep is primed
//! with fs_reclaim -> `struct_mutex` to hold us to that.  The userptr
//! invalidate callback can run inside reclaim too: it takes only
//! `notifier_lock` and `user_kept`, and never sleeps.
//!
//! Migration calls the hook with the source folio already locked, i.e.
//! against this order, so the hook only try-locks `struct_mutex`
//! ([`TryMutex::try_lock_for`]) and gives up with `-EBUSY`, at once if
//! the migrating task holds it itself.  The
//! shrinker, the OOM notifier and the vmap purge notifier run inside
//! allocations that may hold folio locks too: they only try-lock it.
//!
//! [`LockedBy`]: crate::sync::LockedBy

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};
use kernel::sync::{Arc, SpinLock};

use crate::counters::{Counter, Counters};
use crate::engine::WorkQueue;
use crate::object::Object;
use crate::params;
use crate::pm::RuntimePm;
use crate::shmem::Gemfs;
use crate::shrink_cursor::ShrinkCursor;
use crate::shrinker::ShrinkStats;
use crate::sync::{LockKey, TryMutex};
use crate::trace;
use crate::uapi;
use crate::vma::Gtt;

const PAGE_SIZE: usize = kernel::page::PAGE_SIZE;

/// Size of the simulated GTT: 4 GiB.
pub(crate) const GTT_SIZE: u64 = 4 << 30;

/// What `struct_mutex` guards (i915's `struct_mutex` guarded as much).
pub(crate) struct DeviceLocked {
    /// Every object that still has a handle, by id.
    objects: RBTree<u64, Arc<Object>>,
    next_id: u64,
    /// The GTT's address space.
    pub(crate) gtt: Gtt,
    /// The object driven through debugfs `control`, if any.
    pub(crate) selftest: Option<Arc<Object>>,
    /// Where the kernel shrinker's batches resume.
    pub(crate) shrink_cursor: ShrinkCursor,
}

impl DeviceLocked {
    /// The listed object with the lowest id at or after `from`, and its
    /// id.  Allocates nothing: the shrinker and the OOM notifier walk the
    /// list with it when memory is gone.
    pub(crate) fn object_from(&mut self, from: u64) -> Option<(u64, Arc<Object>)> {
        let cursor = self.objects.cursor_lower_bound(&from)?;
        let (&id, obj) = cursor.current();
        Some((id, obj.clone()))
    }

    /// Every listed object, in id order, then the self-test object: a
    /// walk that allocates nothing and lets the caller use `self` between
    /// steps.
    pub(crate) fn walk(&self, with_selftest: bool) -> Walk {
        Walk {
            next: Some(0),
            selftest: if with_selftest {
                self.selftest.clone()
            } else {
                None
            },
        }
    }
}

/// A walk over a device's objects: see [`DeviceLocked::walk`].
pub(crate) struct Walk {
    next: Option<u64>,
    selftest: Option<Arc<Object>>,
}

impl Walk {
    /// The next object of the walk.
    pub(crate) fn next(&mut self, locked: &mut DeviceLocked) -> Option<Arc<Object>> {
        if let Some((id, obj)) = self.next.and_then(|from| locked.object_from(from)) {
            self.next = id.checked_add(1);
            return Some(obj);
        }
        self.next = None;
        self.selftest.take()
    }
}

/// The simulated GPU device.
#[pin_data]
pub(crate) struct Device {
    /// i915's big lock; see the module documentation for its order.
    #[pin]
    pub(crate) struct_mutex: TryMutex<DeviceLocked>,
    /// Runtime PM of the device.
    pub(crate) pm: RuntimePm,
    /// Bumped by every runtime suspend: the hardware GTT entries written
    /// before it are lost (see `vma.rs`).
    hw_generation: AtomicU64,
    /// Orders userptr invalidations against request submission: the
    /// callback records the new sequence under it, submission checks the
    /// sequence and marks the objects busy under it.
    #[pin]
    pub(crate) notifier_lock: SpinLock<()>,
    /// Event counters, shown in debugfs.
    pub(crate) counters: Counters,
    /// The shrinker's state outside the lock.
    pub(crate) shrink: ShrinkStats,
    /// Truncates objects purged in reclaim or by the OOM notifier (see
    /// `shrinker.rs`), and frees objects whose last request retired (see
    /// [`Object::retire`]): unbound, its items run side by side.
    pub(crate) purge_wq: WorkQueue,
    /// Where `CREATE_HUGE` objects live; `None` if it could not be
    /// mounted (they are ordinary objects then, as i915 falls back to
    /// the kernel's shmem mount).
    pub(crate) gemfs: Option<Gemfs>,
}

static STRUCT_MUTEX_KEY: LockKey = LockKey::new();

impl Device {
    /// The module's device (`/sys/devices/platform/movgem`).
    pub(crate) fn new() -> Result<Arc<Self>> {
        Self::with_pm(false)
    }

    /// A device of its own for a KUnit case, with a numbered platform
    /// device beside the module's.
    pub(crate) fn new_for_test() -> Result<Arc<Self>> {
        Self::with_pm(true)
    }

    fn with_pm(numbered: bool) -> Result<Arc<Self>> {
        let pm = RuntimePm::new(params::autosuspend_ms(), numbered)?;
        let purge_wq = WorkQueue::new_unbound()?;
        let gemfs = Gemfs::new()
            .inspect_err(|e| {
                pr_warn!(
                    "movgem: no huge=within_size mount ({e:?}); huge objects use small pages\n"
                )
            })
            .ok();
        let dev = Arc::pin_init(
            pin_init!(Self {
                struct_mutex <- TryMutex::new(
                    DeviceLocked {
                        objects: RBTree::new(),
                        next_id: 1,
                        gtt: Gtt::new(GTT_SIZE),
                        selftest: None,
                        shrink_cursor: ShrinkCursor::default(),
                    },
                    kernel::c_str!("movgem_struct_mutex"),
                    &STRUCT_MUTEX_KEY,
                ),
                pm,
                hw_generation: AtomicU64::new(0),
                notifier_lock <- kernel::new_spinlock!((), "movgem_notifier_lock"),
                counters: Counters::new(),
                shrink: ShrinkStats::new(),
                purge_wq,
                gemfs,
            }),
            GFP_KERNEL,
        )?;
        dev.struct_mutex.prime_reclaim();
        // Runtime PM callbacks reach the device from now on.
        dev.pm.attach(&dev);
        Ok(dev)
    }

    /// The generation of the hardware's GTT contents: moves on with each
    /// runtime suspend.
    pub(crate) fn hw_generation(&self) -> u64 {
        self.hw_generation.load(Ordering::Acquire)
    }

    /// The runtime suspend callback: the hardware GTT loses its entries.
    pub(crate) fn runtime_suspended(&self) {
        self.hw_generation.fetch_add(1, Ordering::AcqRel);
        self.counters.inc(Counter::RuntimeSuspends);
        trace::runtime_pm(false);
    }

    /// The runtime resume callback.  Entries are restored before the
    /// first request that uses them, under `struct_mutex`, which this
    /// callback must not take (see `vma.rs`).
    pub(crate) fn runtime_resumed(&self) {
        self.counters.inc(Counter::RuntimeResumes);
        trace::runtime_pm(true);
    }

    /// Creates an object of `npages` pages and lists it on the device.
    pub(crate) fn create_object(
        self: &Arc<Self>,
        npages: usize,
        huge: bool,
    ) -> Result<Arc<Object>> {
        let on = if huge { self.gemfs.as_ref() } else { None };
        self.list_object(Object::new(self, npages, on)?)
    }

    /// Creates a userptr object over `npages` pages of the current
    /// process at `start` and lists it on the device.
    pub(crate) fn create_userptr(
        self: &Arc<Self>,
        start: u64,
        npages: usize,
    ) -> Result<Arc<Object>> {
        self.list_object(Object::new_userptr(self, start, npages)?)
    }

    fn list_object(&self, obj: Arc<Object>) -> Result<Arc<Object>> {
        // The list node is allocated before the lock: see `GttNode`.
        let node = match RBTreeNodeReservation::new(GFP_KERNEL) {
            Ok(node) => node,
            Err(e) => {
                obj.destroy();
                return Err(e);
            }
        };
        let mut locked = self.struct_mutex.lock();
        let id = locked.next_id;
        locked.next_id += 1;
        obj.set_id(id);
        locked.objects.insert(node.into_node(id, obj.clone()));
        Ok(obj)
    }

    /// The last handle of `obj` is gone: unlist it and, once the GPU is
    /// done with it, release everything it holds.
    pub(crate) fn close_object(&self, obj: &Arc<Object>) {
        obj.mark_closed();
        self.struct_mutex.lock().objects.remove(&obj.id());
        obj.release_if_closed_and_idle();
    }

    /// Device-wide numbers for `GET_INFO` (the engine adds its own).
    pub(crate) fn info(&self) -> uapi::Info {
        let mut locked = self.struct_mutex.lock();
        let mut info = uapi::Info {
            gtt_size: GTT_SIZE,
            gtt_used: locked.gtt.used(),
            runtime_suspended: u32::from(self.pm.suspended()),
            ..uapi::Info::default()
        };
        let mut walk = locked.walk(false);
        while let Some(obj) = walk.next(&mut locked) {
            let st = obj.state(&mut locked);
            info.objects += 1;
            info.object_bytes += (obj.npages() * PAGE_SIZE) as u64;
            info.bound_objects += u64::from(st.gtt_offset().is_some());
            info.cached_vmaps += u64::from(st.vmap_cached());
            info.active_objects += u64::from(obj.active() > 0);
        }
        info
    }
}
