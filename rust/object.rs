// SPDX-License-Identifier: GPL-2.0

//! GEM-style objects backed by shmem, the simulated GTT, and the migrate
//! hook.
//!
//! # Locking
//!
//! Lock order, outermost first:
//!
//! 1. `FileState::handles` (per open file): a leaf, never held while
//!    taking anything below.
//! 2. `Device::struct_mutex` (a [`TryMutex`]): every object's mutable
//!    state, the GTT and the object list.
//! 3. folio locks (taken inside shmem while fetching pages), vmalloc's
//!    locks (`vmap()`), `Device::gpu`, `Device::notifier_lock` (a spin
//!    lock, leaf).
//!
//! Everything under `struct_mutex` runs in a NOFS allocation scope and
//! the shrinker refuses to work without `__GFP_FS`, so an allocation
//! under the lock never recurses into our shrinker; lockdep is primed
//! with fs_reclaim -> `struct_mutex` to hold us to that.  The userptr
//! invalidate callback can run inside reclaim too: it takes only
//! `notifier_lock` and never sleeps.
//!
//! Migration calls the hook with the source folio already locked, i.e.
//! against this order, so the hook only try-locks `struct_mutex`
//! ([`TryMutex::try_lock_for`]) and gives up with `-EBUSY`.  The vmap
//! purge notifier may run under our own `vmap()` call, so it try-locks
//! too.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use kernel::ffi::{c_int, c_ulong, c_void};
use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};
use kernel::sync::{Arc, CondVar, Mutex, SpinLock};
use kernel::types::Opaque;

use crate::counters::{self, Counter};
use crate::gtt;
use crate::params;
use crate::pm::RuntimePm;
use crate::policy::{self, Decision, ObjectState, ShrinkAction};
use crate::shmem::{PageAlloc, PageArray, PageRef, RawFolio, ShmemDevInfo, ShmemFile, Vmap};
use crate::sync::{LockKey, TryMutex};
use crate::uapi;
use crate::userptr::{RawUserptr, UserRange};

const PAGE_SIZE: usize = kernel::page::PAGE_SIZE;

/// Size of the simulated GTT: 4 GiB.
pub(crate) const GTT_SIZE: u64 = 4 << 30;

/// Device-wide state protected by `struct_mutex`.
pub(crate) struct Gem {
    /// Every object that still has a handle, by id.
    objects: RBTree<u64, Arc<Object>>,
    next_id: u64,
    /// Allocated GTT ranges: start -> size.
    gtt: RBTree<u64, u64>,
    gtt_used: u64,
    /// The object driven through debugfs `control`, if any.
    pub(crate) selftest: Option<Arc<Object>>,
    /// Where the kernel shrinker's batches resume: see `Device::shrink`.
    shrink_resume: ShrinkResume,
}

/// The kernel shrinker calls `scan` once per batch of 128 pages; walking
/// every object from the start each time costs O(objects) per batch and
/// O(objects^2) per reclaim.  Instead each pass resumes at the object
/// where its last batch stopped, and passes that the last `count` found
/// no candidate for are skipped, so that a reclaim costs one `count` walk
/// plus one walk over the candidates.
#[derive(Default)]
struct ShrinkResume {
    /// Per pass (purge, unbound, bound): the id to start at.
    next: [u64; 3],
    /// Per pass: candidates seen by the last `count`, less those handled
    /// since.  Only a hint: an object that became one later waits for the
    /// next `count`, which the kernel makes before every round of batches.
    candidates: [u64; 3],
}

/// How long the OOM notifier waits, at most, for requests in flight to
/// retire and make their objects purgeable: a hanging batch (1 s by
/// default) and the batches queued behind it.
const OOM_WAIT_NS: u64 = 2_000_000_000;

/// What waiters on the simulated GPU look at.
pub(crate) struct GpuState {
    /// Requests submitted and not yet retired.
    pub(crate) inflight: u32,
    /// Requests retired since load (a waiter's progress mark).
    pub(crate) retired: u64,
    /// Bumped by a reset; requests that started earlier end at once.
    pub(crate) resets: u64,
}

/// The simulated GPU.
#[pin_data]
pub(crate) struct Device {
    /// i915's big lock; see the module documentation for its order.
    #[pin]
    pub(crate) struct_mutex: TryMutex<Gem>,
    /// Request accounting, for waits and resets.
    #[pin]
    pub(crate) gpu: Mutex<GpuState>,
    /// Signalled whenever a request retires or the GPU is reset.
    #[pin]
    pub(crate) gpu_idle: CondVar,
    /// Runtime PM of the device.
    pub(crate) pm: RuntimePm,
    /// Orders userptr invalidations against request submission: the
    /// callback records the new sequence under it, submission checks the
    /// sequence and marks the objects busy under it.
    #[pin]
    pub(crate) notifier_lock: SpinLock<()>,
}

/// Most objects one shrink writes back.
const WRITEBACK_BATCH: usize = 16;

/// What one shrink did.
pub(crate) struct Shrunk {
    /// Pages whose references were dropped (what a shrinker reports).
    pub(crate) released: u64,
    /// Of those, pages that left memory or are on their way to swap:
    /// purged, or submitted for writeback.
    pub(crate) gone: u64,
}

/// What one shrink may do (the passes it runs, and how it may wait).
#[derive(Clone, Copy)]
pub(crate) struct ShrinkScope {
    /// Truncate idle DONTNEED objects.
    pub(crate) purge: bool,
    /// Release the pages of idle unbound objects.
    pub(crate) unbound: bool,
    /// Unbind idle bound objects and release their pages.
    pub(crate) bound: bool,
    /// Push released pages to swap.
    pub(crate) writeback: bool,
    /// The caller may sleep (and so wait for `struct_mutex` a bit).
    pub(crate) may_block: bool,
    /// Take `struct_mutex` without a time limit (debugfs only).
    pub(crate) lock: bool,
    /// Resume each pass where the last resuming shrink stopped and skip
    /// passes without candidates (`ShrinkResume`): the kernel shrinker's
    /// batches.  Otherwise every pass walks every object.
    pub(crate) resume: bool,
}

impl ShrinkScope {
    /// Every pass, from a context that may sleep: OOM and drop_caches.
    pub(crate) const ALL: Self = Self {
        purge: true,
        unbound: true,
        bound: true,
        writeback: true,
        may_block: true,
        lock: false,
        resume: false,
    };
}

static STRUCT_MUTEX_KEY: LockKey = LockKey::new();

/// The last `shrink_count` could not lock `struct_mutex`, so the candidate
/// hints in `ShrinkResume` are older than the count the kernel acts on.
static HINTS_STALE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

impl Device {
    /// Allocates the device and registers its runtime PM.
    pub(crate) fn new() -> Result<Arc<Self>> {
        let pm = RuntimePm::new(params::autosuspend_ms())?;
        let dev = Arc::pin_init(
            pin_init!(Self {
                struct_mutex <- TryMutex::new(
                    Gem {
                        objects: RBTree::new(),
                        next_id: 1,
                        gtt: RBTree::new(),
                        gtt_used: 0,
                        selftest: None,
                        shrink_resume: ShrinkResume::default(),
                    },
                    kernel::c_str!("movgem_struct_mutex"),
                    &STRUCT_MUTEX_KEY,
                ),
                gpu <- kernel::new_mutex!(GpuState { inflight: 0, resets: 0, retired: 0 }, "movgem_gpu"),
                gpu_idle <- kernel::new_condvar!("movgem_gpu_idle"),
                pm,
                notifier_lock <- kernel::new_spinlock!((), "movgem_notifier_lock"),
            }),
            GFP_KERNEL,
        )?;
        dev.struct_mutex.prime_reclaim();
        Ok(dev)
    }

    /// Creates an object of `npages` pages and lists it on the device.
    pub(crate) fn create_object(self: &Arc<Self>, npages: usize) -> Result<Arc<Object>> {
        self.list_object(Object::new(self, npages)?)
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
        let mut gem = self.struct_mutex.lock();
        let id = gem.next_id;
        gem.next_id += 1;
        obj.id.store(id, Ordering::Relaxed);
        gem.objects.insert(node.into_node(id, obj.clone()));
        Ok(obj)
    }

    /// The last handle of `obj` is gone: unlist it and, once the GPU is
    /// done with it, release everything it holds.
    pub(crate) fn close_object(&self, obj: &Arc<Object>) {
        obj.closed.store(true, Ordering::SeqCst);
        self.struct_mutex
            .lock()
            .objects
            .remove(&obj.id.load(Ordering::Relaxed));
        obj.release_if_closed_and_idle();
    }

    /// Device-wide numbers for `GET_INFO`.
    pub(crate) fn info(&self) -> uapi::Info {
        let mut gem = self.struct_mutex.lock();
        let mut info = uapi::Info {
            gtt_size: GTT_SIZE,
            gtt_used: gem.gtt_used,
            runtime_suspended: u32::from(self.pm.suspended()),
            requests: self.gpu.lock().inflight,
            ..uapi::Info::default()
        };
        let mut next = Some(0);
        while let Some(obj) = next_object(&mut gem, &mut next) {
            let st = obj.state(&mut gem);
            info.objects += 1;
            info.object_bytes += (obj.npages * PAGE_SIZE) as u64;
            info.bound_objects += u64::from(st.gtt_offset.is_some());
            info.cached_vmaps += u64::from(st.vmap.is_some());
            info.active_objects += u64::from(obj.active() > 0);
        }
        info
    }

    /// Drops every cached kernel mapping nobody pins; returns the pages
    /// unmapped.  `may_wait` false: give up if `struct_mutex` is busy.
    pub(crate) fn purge_vmaps(&self, may_wait: bool) -> usize {
        let guard = if may_wait {
            Some(self.struct_mutex.lock())
        } else {
            self.struct_mutex
                .try_lock_for(policy::lock_wait(true, params::lock_timeout_ms()))
        };
        let Some(mut gem) = guard else {
            counters::inc(Counter::VmapPurgeContended);
            return 0;
        };
        let mut freed = 0;
        let mut next = Some(0);
        let mut selftest = gem.selftest.clone();
        while let Some(obj) = next_object(&mut gem, &mut next).or_else(|| selftest.take()) {
            let st = obj.state(&mut gem);
            if st.vmap_pins == 0 {
                if let Some(map) = st.vmap.take() {
                    freed += map.npages();
                }
            }
        }
        counters::add(Counter::VmapPurgedPages, freed as u64);
        freed
    }
}

impl Device {
    /// Pages the shrinker could give back now.  Never blocks: on a
    /// contended `struct_mutex` it answers with the last count.
    pub(crate) fn shrink_count(&self) -> u64 {
        static LAST: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
        if !params::shrinker_enabled() {
            return 0;
        }
        let Some(mut gem) = self.struct_mutex.try_lock() else {
            // The candidate hints were not refreshed: scans must not trust them.
            HINTS_STALE.store(true, Ordering::Relaxed);
            return LAST.load(Ordering::Relaxed);
        };
        let awake = !self.pm.suspended();
        let mut count = 0u64;
        let mut candidates = [0u64; 3];
        let mut next = Some(0);
        while let Some(obj) = next_object(&mut gem, &mut next) {
            let st = obj.state(&mut gem);
            let snap = obj.snapshot(st);
            let action = policy::shrink_action(&snap, awake, true, true);
            if let Some(pass) = action.pass() {
                count += st.pages.len() as u64;
                candidates[usize::from(pass)] += 1;
            }
        }
        gem.shrink_resume.candidates = candidates;
        HINTS_STALE.store(false, Ordering::Relaxed);
        LAST.store(count, Ordering::Relaxed);
        count
    }

    /// Gives back up to `nr` pages: purges idle DONTNEED objects, then
    /// drops the pages of idle unbound objects, then unbinds idle bound
    /// ones (only while the device is awake).  `None` if `struct_mutex`
    /// could not be had: reclaim only ever try-locks it.
    pub(crate) fn shrink_scan(&self, nr: u64, may_block: bool, may_fs: bool) -> Option<u64> {
        if !params::shrinker_enabled() {
            return Some(0);
        }
        // Allocations under `struct_mutex` are NOFS: refusing NOFS reclaim
        // is what keeps them from recursing into us.
        if !may_fs {
            counters::inc(Counter::ShrinkNoFs);
            return None;
        }
        counters::inc(Counter::ShrinkScans);
        // As i915 does, only kswapd writes back: direct reclaim should not
        // stall on swap I/O for us.
        let scope = ShrinkScope {
            writeback: may_block && current_is_kswapd(),
            may_block,
            lock: false,
            resume: true,
            ..ShrinkScope::ALL
        };
        self.shrink(nr, scope).map(|done| done.released)
    }

    /// Runs the passes `scope` allows until `nr` pages are given back;
    /// returns how many were.  `None` if `struct_mutex` could not be had.
    pub(crate) fn shrink(&self, nr: u64, scope: ShrinkScope) -> Option<Shrunk> {
        let mut gem = if scope.lock {
            self.struct_mutex.lock()
        } else {
            let wait = policy::lock_wait(scope.may_block, params::lock_timeout_ms());
            let Some(gem) = self.struct_mutex.try_lock_for(wait) else {
                counters::inc(Counter::ShrinkContended);
                return None;
            };
            gem
        };
        let wakeref = self.pm.get_if_active();
        let mut freed = 0u64;
        let mut gone = 0u64;
        // Objects to write back once the lock is dropped (a fixed array:
        // nothing here may allocate).
        let mut to_write: [Option<Arc<Object>>; WRITEBACK_BATCH] = Default::default();
        let mut queued = 0;
        for pass in 0..3u8 {
            let allowed = match pass {
                0 => scope.purge,
                1 => scope.unbound,
                _ => scope.bound,
            };
            let p = usize::from(pass);
            let hinted_empty = scope.resume
                && !HINTS_STALE.load(Ordering::Relaxed)
                && gem.shrink_resume.candidates[p] == 0;
            if !allowed || hinted_empty {
                continue;
            }
            // One lap over the ids, from `start` round to just before it.
            let start = if scope.resume {
                gem.shrink_resume.next[p]
            } else {
                0
            };
            let mut next = Some(start);
            let mut wrapped = start == 0;
            loop {
                if freed >= nr {
                    if scope.resume {
                        gem.shrink_resume.next[p] = next.unwrap_or(0);
                    }
                    break;
                }
                let Some(obj) = next_object(&mut gem, &mut next) else {
                    if wrapped {
                        break;
                    }
                    wrapped = true;
                    next = Some(0);
                    continue;
                };
                if wrapped && start != 0 && obj.id.load(Ordering::Relaxed) >= start {
                    break;
                }
                let snap = obj.snapshot(obj.state(&mut gem));
                let action = policy::shrink_action(&snap, wakeref.is_some(), scope.may_block, true);
                if action.pass() != Some(pass) {
                    continue;
                }
                let hint = &mut gem.shrink_resume.candidates[p];
                *hint = hint.saturating_sub(1);
                let (st, mut gtt) = obj.state_and_gtt(&mut gem);
                match action {
                    ShrinkAction::Purge { unbind } => {
                        let n = Object::release_pages(st, &mut gtt, obj.file(), unbind) as u64;
                        freed += n;
                        gone += n;
                        if let Some(file) = obj.file() {
                            file.truncate();
                        }
                        obj.purged.store(true, Ordering::Release);
                        counters::inc(Counter::Purged);
                        counters::inc(Counter::ShrinkPurged);
                    }
                    ShrinkAction::Release { unbind } => {
                        freed += Object::release_pages(st, &mut gtt, obj.file(), unbind) as u64;
                        counters::inc(Counter::ShrinkReleased);
                        if scope.writeback && obj.file().is_some() && queued < WRITEBACK_BATCH {
                            to_write[queued] = Some(obj.clone());
                            queued += 1;
                        }
                    }
                    ShrinkAction::Skip => {}
                }
            }
        }
        counters::add(Counter::ShrinkFreedPages, freed);
        drop(gem);
        // Swap I/O allocates (zram, swap slots) and may wait for reclaim:
        // never under struct_mutex, which reclaim needs to purge.  A page
        // fetched again meanwhile is the same folio, now in the swap
        // cache, so nothing is lost.
        for obj in to_write.iter().flatten() {
            if let Some(file) = obj.file() {
                let n = file.writeback() as u64;
                gone += n;
                counters::add(Counter::WritebackPages, n);
            }
        }
        Some(Shrunk {
            released: freed,
            gone,
        })
    }

    /// Our own allocation of object pages failed: shrink as the shrinker
    /// would, unless `shrinker=0` (which turns off every way the driver
    /// gives memory back).
    pub(crate) fn shrink_self(&self, nr: u64, scope: ShrinkScope) {
        if params::shrinker_enabled() {
            let _ = self.shrink(nr, scope);
        }
    }

    /// The OOM killer is about to run: give back everything idle.
    pub(crate) fn oom_notify(&self) -> u64 {
        if !params::oom_notifier_enabled() {
            return 0;
        }
        counters::inc(Counter::OomNotifications);
        // Only what really left memory counts: releasing an object whose
        // pages stay in the page cache frees nothing, and claiming it would
        // keep the OOM killer from ever acting.
        let mut freed = self
            .shrink(u64::MAX, ShrinkScope::ALL)
            .map_or(0, |done| done.gone);
        // Objects of requests in flight become purgeable once those
        // retire: wait for the engine, one retirement at a time and for
        // at most `OOM_WAIT_NS` in all, before letting the OOM killer act
        // on memory the GPU is about to give back (i915's shrink-all once
        // waited for its GPU too).  gem_shrink's `hang` and `execbufX`
        // had workers OOM-killed while the engine worked through their
        // queued batches, this notifier freeing nothing; 100 ms (one
        // hang there) was not enough, a pass's batches take longer.
        let deadline = crate::sync::now_ns() + OOM_WAIT_NS;
        while freed == 0 {
            let left = deadline.saturating_sub(crate::sync::now_ns());
            if left == 0 || !crate::gpu::wait_for_retire(self, left) {
                break;
            }
            freed = self
                .shrink(u64::MAX, ShrinkScope::ALL)
                .map_or(0, |done| done.gone);
        }
        counters::add(Counter::OomFreedPages, freed);
        if freed > 0 {
            pr_info!("OOM notifier released {} pages of object memory\n", freed);
        }
        freed
    }

    /// A command written to debugfs `drop_caches`: `MOVGEM_DROP_*` bits.
    pub(crate) fn drop_caches(&self, flags: u64) -> Result {
        if flags & !u64::from(uapi::DROP_ALL) != 0 {
            return Err(EINVAL);
        }
        counters::inc(Counter::DropCaches);
        let has = |bit: u32| flags & u64::from(bit) != 0;
        if has(uapi::DROP_ACTIVE) {
            crate::gpu::wait_all_idle(self);
        }
        let scope = ShrinkScope {
            purge: has(uapi::DROP_PURGE),
            unbound: has(uapi::DROP_UNBOUND),
            bound: has(uapi::DROP_BOUND),
            writeback: has(uapi::DROP_WRITEBACK),
            may_block: true,
            lock: true,
            resume: false,
        };
        self.shrink(u64::MAX, scope).ok_or(EBUSY)?;
        Ok(())
    }
}

/// The listed object with the lowest id at or after `*next`, advancing
/// `*next` past it.  Allocates nothing: the shrinker and the OOM
/// notifier walk the list with it when memory is gone.
fn next_object(gem: &mut Gem, next: &mut Option<u64>) -> Option<Arc<Object>> {
    let from = (*next)?;
    let cursor = gem.objects.cursor_lower_bound(&from)?;
    let (&id, obj) = cursor.current();
    *next = id.checked_add(1);
    Some(obj.clone())
}

/// Mutable state of an object; only reachable under `struct_mutex`.
#[derive(Default)]
pub(crate) struct ObjState {
    /// References on the object's folios, index order; empty when the
    /// object has no pages.  kvmalloc'ed, as is every per-page array: a
    /// 64 MiB object needs 128 KiB of them, an order-5 allocation that
    /// fails under fragmentation, exactly when the shrinker is busy.
    pages: PageArray<PageRef>,
    /// Page frame numbers recorded when the pages were last fetched.
    pfns: PageArray<usize>,
    /// Pins on the pages: the binding, vmap pins, self-test pins.
    pub(crate) pages_pin_count: u32,
    /// Where the object is bound in the GTT, if it is.
    gtt_offset: Option<u64>,
    /// Display-style pins on the binding.
    pub(crate) pinned_vmas: u32,
    /// `MOVGEM_MADV_*`.
    pub(crate) madv: u32,
    /// Cached kernel mapping of all pages.
    vmap: Option<Vmap>,
    /// Users of `vmap` (each also holds a page pin).
    pub(crate) vmap_pins: u32,
    /// The pages were released by the hook since they were last fetched.
    released: bool,
    /// The object is being destroyed; nothing may fetch pages again.
    dead: bool,
}

impl ObjState {
    /// Number of folios the object holds references on.
    pub(crate) fn pages_held(&self) -> usize {
        self.pages.len()
    }

    /// The GTT offset, if bound.
    pub(crate) fn gtt_offset(&self) -> Option<u64> {
        self.gtt_offset
    }

    /// The object's folios while it holds them.
    pub(crate) fn pages(&self) -> &[PageRef] {
        &self.pages
    }

    /// Drops the kernel mapping and every page reference; returns how
    /// many pages there were.  `file` (none for userptr objects) gets its
    /// pages back on the evictable LRU lists first (DONTNEED marked them).
    fn put_pages(&mut self, file: Option<&ShmemFile>) -> usize {
        self.vmap = None;
        let n = self.pages.len();
        if let (Some(file), true) = (file, n > 0) {
            file.clear_unevictable(&self.pages);
        }
        self.pages = PageArray::default();
        n
    }
}

/// A shmem-backed buffer object.
///
/// # Invariants
///
/// While `registered` is true, `dev_info` is registered with shmem on
/// `file`, and `self` is pinned inside an [`Arc`]; [`Object::teardown`]
/// (from `destroy` or drop) unregisters it and truncates `file` first.
#[pin_data(PinnedDrop)]
pub(crate) struct Object {
    /// Storage for `struct shmem_dev_info`; the hook maps it back to the
    /// object with `container_of!`.
    #[pin]
    dev_info: Opaque<ShmemDevInfo>,
    id: core::sync::atomic::AtomicU64,
    /// The shmem backing; `None` for a userptr object.
    file: Option<ShmemFile>,
    /// The user range of a userptr object.
    user: Option<UserRange>,
    /// The user range was invalidated since the object was last bound.
    user_stale: AtomicBool,
    npages: usize,
    device: Arc<Device>,
    state: UnsafeCell<ObjState>,
    /// Outstanding GPU requests using the object (plus self-test holds).
    active: AtomicU32,
    /// Set when the last handle is gone.
    closed: AtomicBool,
    /// Pages were truncated after DONTNEED.
    purged: AtomicBool,
    registered: AtomicBool,
}

// SAFETY: `state` is only accessed under `device.struct_mutex` (see
// `Object::state`); every other field is `Send`/`Sync` or immutable.
unsafe impl Send for Object {}
// SAFETY: as above.
unsafe impl Sync for Object {}

impl Object {
    /// Creates an object of `npages` pages, not yet populated, with the
    /// migrate hook registered.  Not listed on the device: see
    /// [`Device::create_object`].
    pub(crate) fn new(device: &Arc<Device>, npages: usize) -> Result<Arc<Self>> {
        if npages == 0 {
            return Err(EINVAL);
        }
        let size = npages.checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
        let file = ShmemFile::new(kernel::c_str!("movgem"), size)?;
        let obj = Self::alloc(device, npages, Some(file), None)?;
        let Some(file) = obj.file() else {
            return Err(EINVAL);
        };
        // `teardown` (from `destroy` or drop) unregisters and truncates
        // before the storage goes away.
        // SAFETY: `obj` is pinned in an `Arc`; see `teardown` above.
        unsafe { file.register(obj.dev_info.get())? };
        obj.registered.store(true, Ordering::Release);
        Ok(obj)
    }

    /// Creates a userptr object over `npages` pages of the current
    /// process at `start` (page aligned), watching the range.
    pub(crate) fn new_userptr(
        device: &Arc<Device>,
        start: u64,
        npages: usize,
    ) -> Result<Arc<Self>> {
        if npages == 0 || start % PAGE_SIZE as u64 != 0 {
            return Err(EINVAL);
        }
        let obj = Self::alloc(device, npages, None, Some(UserRange::new(start, npages)))?;
        let Some(user) = obj.user.as_ref() else {
            return Err(EINVAL);
        };
        let owner: *const Self = &*obj;
        // SAFETY: `obj` is pinned in an `Arc`, and its drop removes the
        // notifier before any field goes away.
        unsafe { user.watch(owner.cast::<c_void>())? };
        Ok(obj)
    }

    fn alloc(
        device: &Arc<Device>,
        npages: usize,
        file: Option<ShmemFile>,
        user: Option<UserRange>,
    ) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                dev_info <- Opaque::ffi_init(|_slot: *mut ShmemDevInfo| {}),
                id: core::sync::atomic::AtomicU64::new(0),
                file,
                user,
                user_stale: AtomicBool::new(false),
                npages,
                device: device.clone(),
                state: UnsafeCell::new(ObjState::default()),
                active: AtomicU32::new(0),
                closed: AtomicBool::new(false),
                purged: AtomicBool::new(false),
                registered: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )
    }

    /// Size in pages.
    pub(crate) fn npages(&self) -> usize {
        self.npages
    }

    /// The shmem backing, if the object has one (not userptr).
    pub(crate) fn file(&self) -> Option<&ShmemFile> {
        self.file.as_ref()
    }

    /// The shmem backing; `EINVAL` for a userptr object.
    pub(crate) fn shmem(&self) -> Result<&ShmemFile> {
        self.file.as_ref().ok_or(EINVAL)
    }

    /// The user range of a userptr object.
    pub(crate) fn user_range(&self) -> Option<&UserRange> {
        self.user.as_ref()
    }

    /// Outstanding GPU work.
    pub(crate) fn active(&self) -> u32 {
        self.active.load(Ordering::SeqCst)
    }

    /// Whether DONTNEED pages were truncated.
    pub(crate) fn purged(&self) -> bool {
        self.purged.load(Ordering::Acquire)
    }

    /// Whether shmem has our `dev_info` registered on this object.
    pub(crate) fn hook_registered(&self) -> bool {
        self.file
            .as_ref()
            .is_some_and(|f| core::ptr::eq(f.registered(), self.dev_info.get()))
    }

    /// The object's mutable state.  `gem` can only be reached through a
    /// guard of `struct_mutex`, so holding it proves exclusion.
    pub(crate) fn state<'a>(&'a self, gem: &'a mut Gem) -> &'a mut ObjState {
        self.state_and_gtt(gem).0
    }

    /// The object's state and the device's GTT, borrowed together.
    fn state_and_gtt<'a>(&'a self, gem: &'a mut Gem) -> (&'a mut ObjState, Gtt<'a>) {
        assert!(self.device.struct_mutex.guards(gem));
        // Holding `&mut Gem` means holding `struct_mutex`, which protects
        // `state`; the `&mut` borrow of `gem` keeps this reference unique.
        // SAFETY: exclusive access to `state`, as just argued.
        let st = unsafe { &mut *self.state.get() };
        let gtt = Gtt {
            ranges: &mut gem.gtt,
            used: &mut gem.gtt_used,
        };
        (st, gtt)
    }

    /// What the policy needs to know.
    pub(crate) fn snapshot(&self, st: &ObjState) -> ObjectState {
        ObjectState {
            has_pages: !st.pages.is_empty(),
            active: self.active() > 0,
            purgeable: st.madv == uapi::MADV_DONTNEED,
            pages_pin_count: st.pages_pin_count,
            bind_count: u32::from(st.gtt_offset.is_some()),
            pinned_vmas: st.pinned_vmas,
            vmap_cached: st.vmap.is_some(),
        }
    }

    /// Fetches the object's pages if it does not hold them.  Under
    /// `struct_mutex` this allocates in its NOFS scope, where our own
    /// shrinker cannot help: callers that can, [`Object::populate`] first.
    pub(crate) fn get_pages(&self, st: &mut ObjState) -> Result {
        if self.holds_pages(st)? {
            return Ok(());
        }
        // Under `struct_mutex`: our own shrinker cannot run, so no purge
        // between the attempts.
        let fetched = self.fetch_pages(false)?;
        self.install_pages(st, fetched)
    }

    /// Whether the object holds its pages; `ENOENT` once it is being
    /// destroyed, `EFAULT` once purged (it can never have them again).
    fn holds_pages(&self, st: &ObjState) -> Result<bool> {
        if st.dead {
            return Err(ENOENT);
        }
        if self.purged() {
            return Err(EFAULT);
        }
        Ok(!st.pages.is_empty())
    }

    /// References on every page, and their frame numbers.  As i915's
    /// `shmem_sg_alloc_table()`: a page is first allocated without
    /// retrying; if that fails and `may_shrink` (the caller does not hold
    /// `struct_mutex`), our own idle objects are shrunk by twice the
    /// object's size and the page is allocated with
    /// `__GFP_RETRY_MAYFAIL`: `ENOMEM`, never the OOM killer, on behalf
    /// of a GPU object.  `EINTR` once the task is being killed: a 64 MiB
    /// object is 16,384 allocations, each slow under pressure.
    fn fetch_pages(&self, may_shrink: bool) -> Result<(PageArray<PageRef>, PageArray<usize>)> {
        let file = self.shmem()?;
        let mut pages = PageArray::with_capacity(self.npages)?;
        let mut pfns = PageArray::with_capacity(self.npages)?;
        // With the shrinker off nothing at all can free these pages until
        // the object lets them go: unevictable before the first page, as
        // i915's shmem_sg_alloc_table() marks every pinned mapping, so that
        // reclaim never scans them, the ones being fetched included
        // (Documentation/design.md, "Unevictable while nothing can free
        // them").  Only a hint to reclaim: a racing release that clears it
        // costs scans, not data.
        let mark = !params::shrinker_enabled();
        if mark {
            file.set_unevictable();
        }
        if let Err(e) = self.fetch_into(file, may_shrink, &mut pages, &mut pfns) {
            if mark {
                file.clear_unevictable(&pages);
            }
            return Err(e);
        }
        Ok((pages, pfns))
    }

    fn fetch_into(
        &self,
        file: &ShmemFile,
        may_shrink: bool,
        pages: &mut PageArray<PageRef>,
        pfns: &mut PageArray<usize>,
    ) -> Result {
        for page in 0..self.npages {
            if fatal_signal_pending() {
                return Err(EINTR);
            }
            let folio = match file.page_with(page, PageAlloc::Light) {
                Ok(folio) => folio,
                Err(e) if e == ENOMEM => {
                    if may_shrink {
                        counters::inc(Counter::ShrinkSelf);
                        let scope = ShrinkScope {
                            writeback: false,
                            ..ShrinkScope::ALL
                        };
                        self.device.shrink_self(2 * self.npages as u64, scope);
                    }
                    file.page_with(page, PageAlloc::MayFail)?
                }
                Err(e) => return Err(e),
            };
            pfns.push(folio.pfn(), GFP_KERNEL)?;
            pages.push(folio, GFP_KERNEL)?;
        }
        Ok(())
    }

    /// Makes `fetched` the object's pages, unless it got pages meanwhile
    /// or can no longer have any (purged: the fetched pages were
    /// truncated away; dead).
    fn install_pages(
        &self,
        st: &mut ObjState,
        fetched: (PageArray<PageRef>, PageArray<usize>),
    ) -> Result {
        if self.holds_pages(st)? {
            return Ok(());
        }
        if st.released {
            counters::inc(Counter::Rebinds);
            st.released = false;
        }
        (st.pages, st.pfns) = fetched;
        // Again, in case a release cleared it while they were fetched.
        if let (Some(file), false) = (self.file.as_ref(), params::shrinker_enabled()) {
            file.set_unevictable();
        }
        Ok(())
    }

    /// Makes the pages of a WILLNEED shmem object present, allocating
    /// them without `struct_mutex` held: under memory pressure that
    /// allocation may need our shrinker to purge other objects, which it
    /// cannot do while we hold the lock.  Call before taking the lock for
    /// a bind, pin, vmap or domain change.
    pub(crate) fn populate(&self) -> Result {
        if self.user.is_some() {
            return Ok(());
        }
        {
            let mut gem = self.device.struct_mutex.lock_killable()?;
            let st = self.state(&mut gem);
            let held = self.holds_pages(st)?;
            if st.madv != uapi::MADV_WILLNEED {
                return Err(EFAULT);
            }
            if held {
                return Ok(());
            }
        }
        let fetched = self.fetch_pages(true)?;
        let mut gem = self.device.struct_mutex.lock_killable()?;
        self.install_pages(self.state(&mut gem), fetched)
    }

    /// Binds the object into the GTT (fetching and pinning its pages) if
    /// it is not bound; returns its GTT offset.
    pub(crate) fn bind(&self, gem: &mut Gem) -> Result<u64> {
        self.bind_with(gem, None, true)
    }

    /// [`Object::bind`] with a GTT node allocated before the lock.  With
    /// `fetch` false, an object whose pages were released since
    /// [`Object::populate`] gets `EAGAIN` instead of fetching them under
    /// the lock.
    pub(crate) fn bind_with(
        &self,
        gem: &mut Gem,
        node: Option<GttNode>,
        fetch: bool,
    ) -> Result<u64> {
        let (st, mut gtt) = self.state_and_gtt(gem);
        if self.user_stale.swap(false, Ordering::AcqRel) {
            // The user range changed under the binding: drop it before the
            // object is used again.
            if let Some(offset) = st.gtt_offset.take() {
                gtt.remove(offset);
                st.pages_pin_count -= 1;
                counters::inc(Counter::UserptrStaleUnbinds);
            }
        }
        if let Some(offset) = st.gtt_offset {
            return Ok(offset);
        }
        if st.madv != uapi::MADV_WILLNEED {
            return Err(EFAULT);
        }
        if st.dead {
            return Err(ENOENT);
        }
        // A userptr object's pages come with each request instead.
        if self.user.is_none() {
            if !fetch && st.pages.is_empty() {
                return Err(EAGAIN);
            }
            self.get_pages(st)?;
        }
        let offset = gtt.insert((self.npages * PAGE_SIZE) as u64, node)?;
        st.gtt_offset = Some(offset);
        st.pages_pin_count += 1;
        Ok(offset)
    }

    /// Removes the binding; the pages stay cached, as in i915.
    pub(crate) fn unbind(&self, gem: &mut Gem) -> Result {
        let active = self.active() > 0;
        let (st, mut gtt) = self.state_and_gtt(gem);
        let offset = st.gtt_offset.ok_or(EINVAL)?;
        if st.pinned_vmas > 0 || active {
            return Err(EBUSY);
        }
        gtt.remove(offset);
        st.gtt_offset = None;
        st.pages_pin_count -= 1;
        Ok(())
    }

    /// Takes a display-style pin, binding first if needed.
    pub(crate) fn pin(&self, gem: &mut Gem) -> Result<u64> {
        self.shmem()?;
        let offset = self.bind(gem)?;
        self.state(gem).pinned_vmas += 1;
        Ok(offset)
    }

    /// Drops a display-style pin.
    pub(crate) fn unpin(&self, gem: &mut Gem) -> Result {
        let st = self.state(gem);
        if st.pinned_vmas == 0 {
            return Err(EINVAL);
        }
        st.pinned_vmas -= 1;
        Ok(())
    }

    /// Maps every page into kernel space (cached) and pins the mapping.
    pub(crate) fn vmap(&self, gem: &mut Gem) -> Result {
        let st = self.state(gem);
        if st.madv != uapi::MADV_WILLNEED {
            return Err(EFAULT);
        }
        self.get_pages(st)?;
        if st.vmap.is_none() {
            st.vmap = Some(Vmap::new(&st.pages)?);
        }
        st.vmap_pins += 1;
        st.pages_pin_count += 1;
        Ok(())
    }

    /// Unpins the kernel mapping; it stays cached until purged.
    pub(crate) fn vunmap(&self, gem: &mut Gem) -> Result {
        let st = self.state(gem);
        if st.vmap_pins == 0 {
            return Err(EINVAL);
        }
        st.vmap_pins -= 1;
        st.pages_pin_count -= 1;
        Ok(())
    }

    /// `MADVISE`: returns whether the pages still exist.  A DONTNEED
    /// object that holds no pages is purged at once, as i915 does.
    pub(crate) fn madvise(&self, gem: &mut Gem, madv: u32) -> Result<bool> {
        let st = self.state(gem);
        if st.pinned_vmas > 0 || st.vmap_pins > 0 {
            return Err(EBUSY);
        }
        if !self.purged() {
            st.madv = madv;
        }
        // A userptr object's memory is the user's: never purged.
        let Some(file) = self.file.as_ref() else {
            return Ok(true);
        };
        if st.madv == uapi::MADV_DONTNEED && st.pages.is_empty() && !self.purged() {
            file.truncate();
            self.purged.store(true, Ordering::Release);
            counters::inc(Counter::Purged);
        }
        // Pages held by a DONTNEED object can only be purged, never
        // reclaimed: keep reclaim from scanning them (i915 marks every
        // pinned mapping so; here only these, and every object's while the
        // shrinker is off: see Documentation/design.md).
        if !st.pages.is_empty() {
            if st.madv == uapi::MADV_DONTNEED || !params::shrinker_enabled() {
                file.set_unevictable();
            } else {
                file.clear_unevictable(&st.pages);
            }
        }
        Ok(!self.purged())
    }

    /// A GPU request finished with the object (or a self-test hold ended).
    pub(crate) fn retire(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.release_if_closed_and_idle();
    }

    /// Marks the object busy for GPU work; see [`Object::retire`].
    pub(crate) fn activate(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
    }

    /// Releases everything once the object is both closed and idle.
    /// Runs at most once for real; later calls find nothing to do.
    fn release_if_closed_and_idle(&self) {
        if self.closed.load(Ordering::SeqCst) && self.active() == 0 {
            self.destroy();
        }
    }

    /// Writes the self-test pattern for `seed` into every page.
    pub(crate) fn fill(&self, seed: u64) -> Result {
        let file = self.shmem()?;
        let mut buf = page_buffer()?;
        for page in 0..self.npages {
            fill_page(&mut buf, seed, page);
            file.page(page)?.write(0, &buf)?;
        }
        Ok(())
    }

    /// Checks every page against the pattern for `seed`.  Returns the
    /// number of mismatching pages and of pages whose frame differs from
    /// the one recorded when the pages were last fetched.
    pub(crate) fn verify(&self, gem: &mut Gem, seed: u64) -> Result<(usize, usize)> {
        let file = self.shmem()?;
        let mut buf = page_buffer()?;
        let mut want = page_buffer()?;
        let (mut bad, mut moved) = (0, 0);
        for page in 0..self.npages {
            let folio = file.page(page)?;
            folio.read(0, &mut buf)?;
            fill_page(&mut want, seed, page);
            if buf[..] != want[..] {
                bad += 1;
            }
            let st = self.state(gem);
            if st.pfns.get(page).is_some_and(|&pfn| pfn != folio.pfn()) {
                moved += 1;
            }
        }
        Ok((bad, moved))
    }

    /// Copies between user memory and the object through the page cache
    /// (no lock needed: shmem serialises on the folios).
    pub(crate) fn rw(
        &self,
        offset: u64,
        len: u64,
        user: kernel::uaccess::UserPtr,
        write: bool,
    ) -> Result {
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if end > (self.npages * PAGE_SIZE) as u64 {
            return Err(EINVAL);
        }
        let file = self.shmem()?;
        if self.purged() {
            return Err(EFAULT);
        }
        let mut buf = [0u8; RW_CHUNK];
        let slice = kernel::uaccess::UserSlice::new(user, len as usize);
        let (mut reader, mut writer) = slice.reader_writer();
        let mut pos = offset;
        while pos < end {
            let mut in_page = (pos as usize) % PAGE_SIZE;
            let page_end = (PAGE_SIZE - in_page).min((end - pos) as usize) + in_page;
            let folio = file.page(pos as usize / PAGE_SIZE)?;
            while in_page < page_end {
                let n = (page_end - in_page).min(RW_CHUNK);
                if write {
                    reader.read_slice(&mut buf[..n])?;
                    folio.write(in_page, &buf[..n])?;
                } else {
                    folio.read(in_page, &mut buf[..n])?;
                    writer.write_slice(&buf[..n])?;
                }
                in_page += n;
                pos += n as u64;
            }
        }
        Ok(())
    }

    /// Tears the object down: unbinds, drops mappings and pages,
    /// unregisters the hook and truncates the file, after which no
    /// callback can reach `self`.
    pub(crate) fn destroy(&self) {
        {
            let mut gem = self.device.struct_mutex.lock();
            let (st, mut gtt) = self.state_and_gtt(&mut gem);
            st.dead = true;
            if let Some(offset) = st.gtt_offset.take() {
                gtt.remove(offset);
            }
            st.pinned_vmas = 0;
            st.vmap_pins = 0;
            st.pages_pin_count = 0;
            st.put_pages(self.file());
        }
        self.teardown();
    }

    /// Drops the binding (if `unbind`), the cached vmap and every page
    /// reference; returns the pages released.  The caller decided, with
    /// `policy`, that nothing else pins them.
    fn release_pages(
        st: &mut ObjState,
        gtt: &mut Gtt<'_>,
        file: Option<&ShmemFile>,
        unbind: bool,
    ) -> usize {
        if unbind {
            if let Some(offset) = st.gtt_offset.take() {
                gtt.remove(offset);
                st.pages_pin_count -= 1;
                counters::inc(Counter::Unbinds);
            }
        }
        let n = st.put_pages(file);
        st.released = true;
        n
    }

    /// Unregisters and truncates.  Callbacks run with a folio of `file`
    /// locked and truncation takes every such lock, so once this returns
    /// no callback is running or can start on this object.
    fn teardown(&self) {
        if self.registered.swap(false, Ordering::AcqRel) {
            if let Some(file) = self.file.as_ref() {
                file.unregister();
                file.truncate();
            }
        }
    }

    /// `SET_DOMAIN`, once the GPU is idle: the object's pages are made
    /// present, as i915 does.  A userptr range is faulted in and checked,
    /// a batch of page references at a time ([`UserRange::touch`]).
    pub(crate) fn prepare_access(&self, write: bool) -> Result {
        if let Some(user) = self.user.as_ref() {
            let pages = user.touch(write)?;
            counters::add(Counter::UserptrFaultedPages, pages as u64);
            return Ok(());
        }
        self.populate()
    }

    /// The invalidate callback: note the new sequence, so that requests
    /// fault the range in again, and drop the binding at the next use.
    /// Requests in flight keep their own page references until they
    /// retire, so nothing has to wait here.
    fn userptr_invalidate(&self, up: *mut RawUserptr, cur_seq: c_ulong) {
        {
            let _guard = self.device.notifier_lock.lock();
            // SAFETY: `up` is the notifier this callback runs for.
            unsafe { UserRange::set_seq(up, cur_seq) };
        }
        self.user_stale.store(true, Ordering::Release);
        counters::inc(Counter::UserptrInvalidations);
    }

    /// The migrate hook proper: decide, and release the pages if allowed.
    fn migrate_prepare(&self, may_block: bool) -> c_int {
        counters::inc(Counter::HookCalls);
        if !params::hook_enabled() {
            counters::inc(Counter::HookBypassed);
            return HOOK_BYPASS;
        }
        let wait = policy::lock_wait(may_block, params::lock_timeout_ms());
        let Some(mut gem) = self.device.struct_mutex.try_lock_for(wait) else {
            counters::refused(policy::Refusal::LockContended);
            return EBUSY.to_errno();
        };
        let snapshot = {
            let st = self.state(&mut gem);
            if st.dead {
                counters::inc(Counter::PassThrough);
                return 0;
            }
            self.snapshot(st)
        };
        // Never wake the device from here: only an awake one may unbind.
        let wakeref = if snapshot.bind_count > 0 {
            self.device.pm.get_if_active()
        } else {
            None
        };
        match policy::decide(&snapshot, wakeref.is_some(), may_block) {
            Decision::PassThrough => {
                counters::inc(Counter::PassThrough);
                0
            }
            Decision::Refuse(why) => {
                counters::refused(why);
                EBUSY.to_errno()
            }
            Decision::Release { unbind, vunmap } => {
                let (st, mut gtt) = self.state_and_gtt(&mut gem);
                if vunmap {
                    counters::inc(Counter::HookVunmaps);
                }
                let n = Self::release_pages(st, &mut gtt, self.file(), unbind);
                counters::inc(Counter::Released);
                counters::add(Counter::ReleasedPages, n as u64);
                0
            }
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Object {
    fn drop(self: Pin<&mut Self>) {
        // Without `destroy()` first, the pages are dropped with `state`
        // after this; `teardown()` guarantees the hook is gone by then.
        self.teardown();
        // The notifier callback dereferences the object: remove it while
        // every field is still alive.
        if let Some(user) = self.user.as_ref() {
            user.remove();
        }
    }
}

/// The GTT ranges in `Gem`, borrowed apart from the object states.
pub(crate) struct Gtt<'a> {
    ranges: &'a mut RBTree<u64, u64>,
    used: &'a mut u64,
}

/// A GTT range node allocated before `struct_mutex` is taken.  An
/// allocation under the lock that has to wait for reclaim would wait for
/// memory only our shrinker can free, and our shrinker needs the lock:
/// the hot paths (create, execbuf) allocate everything first.
pub(crate) type GttNode = RBTreeNodeReservation<u64, u64>;

impl Gtt<'_> {
    /// Reserves `size` bytes, page aligned; returns the start.  Without a
    /// preallocated `node`, allocates one without waiting for reclaim.
    fn insert(&mut self, size: u64, node: Option<GttNode>) -> Result<u64> {
        let start = gtt::find_hole(
            self.ranges.iter().map(|(&s, &l)| (s, l)),
            size,
            PAGE_SIZE as u64,
            GTT_SIZE,
        )
        .ok_or(ENOSPC)?;
        let node = match node {
            Some(node) => node,
            None => GttNode::new(GFP_NOWAIT)?,
        };
        self.ranges.insert(node.into_node(start, size));
        *self.used += size;
        Ok(start)
    }

    /// Frees the range starting at `start`.
    fn remove(&mut self, start: u64) {
        if let Some(size) = self.ranges.remove(&start) {
            *self.used -= size;
        }
    }
}

/// Returned to C when the hook is switched off: call `migrate_folio()`
/// and return its result unchanged, exactly as an unpatched kernel would.
/// `MOVGEM_HOOK_BYPASS` in `include/movgem_shim.h`.
const HOOK_BYPASS: c_int = 1;

/// A zeroed page-sized buffer.
pub(crate) fn page_buffer() -> Result<KVec<u8>> {
    Ok(KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?)
}

/// Bytes `Object::rw` copies per step, through the stack: no allocation
/// for PREAD/PWRITE, which gem_shrink calls for 4 bytes of every page.
const RW_CHUNK: usize = 256;

fn fill_page(buf: &mut [u8], seed: u64, page: usize) {
    for (word, chunk) in buf.chunks_exact_mut(8).enumerate() {
        let v = policy::pattern_word(seed, page as u64, word as u64);
        chunk.copy_from_slice(&v.to_le_bytes());
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
    // `Opaque<T>` is `repr(transparent)`, so the field's address is the
    // address of the `ShmemDevInfo` inside it.
    // SAFETY: by the caller's guarantee `dev_info` points into an `Object`.
    unsafe { &*kernel::container_of!(dev_info.cast::<Opaque<ShmemDevInfo>>(), Object, dev_info) }
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_migrate_prepare(
    dev_info: *mut ShmemDevInfo,
    _src: *mut RawFolio,
    may_block: bool,
) -> c_int {
    // SAFETY: the C callback passes the registered pointer with the
    // source folio locked, which keeps the object alive.
    let obj = unsafe { object_of(dev_info) };
    obj.migrate_prepare(may_block)
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_migrate_done(_dev_info: *mut ShmemDevInfo, ret: c_int) {
    if ret == 0 {
        counters::inc(Counter::Migrated);
    } else {
        counters::inc(Counter::MigrateFailed);
    }
}

extern "C" {
    fn movgem_current_is_kswapd() -> bool;
    fn movgem_fatal_signal_pending() -> bool;
}

fn current_is_kswapd() -> bool {
    // SAFETY: reads a flag of the current task; no preconditions.
    unsafe { movgem_current_is_kswapd() }
}

fn fatal_signal_pending() -> bool {
    // SAFETY: reads the current task's pending signals; no preconditions.
    unsafe { movgem_fatal_signal_pending() }
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_userptr_invalidate(
    owner: *mut c_void,
    up: *mut RawUserptr,
    cur_seq: c_ulong,
    _blockable: bool,
) -> bool {
    // SAFETY: `owner` inserted the notifier and removes it, waiting for
    // this callback, before it goes away.
    let obj = unsafe { &*owner.cast::<Object>() };
    obj.userptr_invalidate(up, cur_seq);
    true
}
