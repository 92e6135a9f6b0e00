// SPDX-License-Identifier: GPL-2.0

//! GEM-style objects backed by shmem (or a user range): their state,
//! creation and teardown, madvise, busy tracking, pread/pwrite.  Pages
//! are in `pages.rs`, bindings in `vma.rs`, the migrate hook in
//! `migrate.rs`; the lock order is at the top of `device.rs`.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use kernel::ffi::{c_ulong, c_void};
use kernel::prelude::*;
use kernel::sync::{Arc, SpinLock};
use kernel::workqueue::{Work, WorkItem};

use crate::counters::Counter;
use crate::device::{Device, DeviceLocked};
use crate::params;
use crate::policy::ObjectState;
use crate::shmem::{DevInfoSlot, Gemfs, PageArray, PageRef, PinnedFolios, ShmemFile, Vmap};
use crate::sync::LockedBy;
use crate::uapi;
use crate::userptr::{RawUserptr, Seq, UserPin, UserRange};
use crate::vma::HwTable;

pub(crate) const PAGE_SIZE: usize = kernel::page::PAGE_SIZE;

/// Mutable state of an object; only reachable under `struct_mutex`.
#[derive(Default)]
pub(crate) struct ObjState {
    /// References on the object's folios, index order; empty when the
    /// object has no pages.  kvmalloc'ed, as is every per-page array: a
    /// 64 MiB object needs 128 KiB of them, an order-5 allocation that
    /// fails under fragmentation, exactly when the shrinker is busy.
    pub(crate) pages: PageArray<PageRef>,
    /// Page frame numbers recorded when the pages were last fetched.
    pub(crate) pfns: PageArray<usize>,
    /// Pins on the pages: the binding, vmap pins, self-test pins.
    pub(crate) pages_pin_count: u32,
    /// Where the object is bound in the GTT, if it is.
    pub(crate) gtt_offset: Option<u64>,
    /// The shadow (software) GTT entries of the binding: the frame each
    /// page of the object's range points at, always current while bound.
    /// Allocated with the object (empty for userptr objects), so binding
    /// and migrating never allocate.
    pub(crate) gtt_shadow: PageArray<usize>,
    /// Old frames kept alive because `debug_skip_gtt_rewrite` left GTT
    /// entries pointing at them; dropped with the pages.
    pub(crate) orphans: PageArray<PageRef>,
    /// Display-style pins on the binding.
    pub(crate) pinned_vmas: u32,
    /// `MOVGEM_MADV_*`.
    pub(crate) madv: u32,
    /// Cached kernel mapping of all pages.
    pub(crate) vmap: Option<Vmap>,
    /// Users of `vmap` (each also holds a page pin).
    pub(crate) vmap_pins: u32,
    /// PIN and VMAP calls not undone yet (`FileState::pin_longterm`).
    pub(crate) longterm_pins: u32,
    /// The file's folios pinned long term (`memfd_pin_folios()`) for
    /// those calls; dropped (unpinned) with the last of them.
    pub(crate) longterm: Option<PinnedFolios>,
    /// The pages were released by the hook since they were last fetched.
    pub(crate) released: bool,
    /// The object is being destroyed; nothing may fetch pages again.
    pub(crate) dead: bool,
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

    /// Whether a kernel mapping is cached.
    pub(crate) fn vmap_cached(&self) -> bool {
        self.vmap.is_some()
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
    pub(crate) dev_info: DevInfoSlot,
    id: AtomicU64,
    /// The shmem backing; `None` for a userptr object.
    file: Option<ShmemFile>,
    /// The user range of a userptr object.
    user: Option<UserRange>,
    /// The user range was invalidated since the object was last bound.
    pub(crate) user_stale: AtomicBool,
    /// Pins on the pages of the user range kept after use
    /// (`userptr_keep_pages`), in range order.  Filled by a swap with an
    /// array pinned outside the lock (`Object::keep_user_pages`) and
    /// cleared in place, so nothing is allocated or freed under it (the
    /// invalidate callback clears it).
    #[pin]
    user_kept: SpinLock<PageArray<UserPin>>,
    /// `user_kept`'s length, read without its lock.
    user_kept_len: AtomicUsize,
    npages: usize,
    pub(crate) device: Arc<Device>,
    state: LockedBy<ObjState, DeviceLocked>,
    /// The hardware GTT entries of the binding: what the engine reads.
    /// Written only while the device is awake (see `vma.rs`).
    #[pin]
    pub(crate) hw: SpinLock<HwTable>,
    /// Outstanding GPU requests using the object (plus self-test holds).
    active: AtomicU32,
    /// Set when the last handle is gone.
    closed: AtomicBool,
    /// Pages were truncated after DONTNEED.
    purged: AtomicBool,
    registered: AtomicBool,
    /// Truncation of a purged object, on the device's purge worker.
    #[pin]
    purge_work: Work<Object, PURGE_WORK>,
    /// Pages the purge worker's truncation will free, counted for the
    /// OOM notifier when it was queued (see `shrinker.rs`).
    purge_pages: AtomicUsize,
    /// Freeing a closed object once its last request retired, on the
    /// same worker: never on the engine's ring (see [`Object::retire`]).
    #[pin]
    free_work: Work<Object, FREE_WORK>,
}

/// The work item ids of [`Object`]'s two work items.
pub(crate) const PURGE_WORK: u64 = 0;
pub(crate) const FREE_WORK: u64 = 1;

kernel::impl_has_work! {
    impl HasWork<Self, PURGE_WORK> for Object { self.purge_work }
    impl HasWork<Self, FREE_WORK> for Object { self.free_work }
}

impl WorkItem<PURGE_WORK> for Object {
    type Pointer = Arc<Object>;

    /// The deferred half of a purge from reclaim or the OOM notifier:
    /// truncating waits for folio locks, which a worker may.
    fn run(this: Arc<Object>) {
        if let Some(file) = this.file() {
            file.truncate();
        }
        this.device
            .purge_done(this.purge_pages.swap(0, Ordering::AcqRel) as u64);
    }
}

impl WorkItem<FREE_WORK> for Object {
    type Pointer = Arc<Object>;

    /// Frees a closed object whose last request retired.
    fn run(this: Arc<Object>) {
        this.destroy();
    }
}

impl Object {
    /// Creates an object of `npages` pages, not yet populated, with the
    /// migrate hook registered.  Not listed on the device: see
    /// [`Device::create_object`].
    pub(crate) fn new(
        device: &Arc<Device>,
        npages: usize,
        on: Option<&Gemfs>,
    ) -> Result<Arc<Self>> {
        if npages == 0 {
            return Err(EINVAL);
        }
        let size = npages.checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
        let file = ShmemFile::new(kernel::c_str!("movgem"), size, on)?;
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
        // Shadow and hardware entries for every page of a shmem object.
        let entries = if file.is_some() { npages } else { 0 };
        let shadow = PageArray::from_elem(0usize, entries)?;
        let hw = HwTable::new(PageArray::from_elem(0usize, entries)?);
        let kept = PageArray::default();
        Arc::pin_init(
            pin_init!(Self {
                dev_info <- DevInfoSlot::new(),
                id: AtomicU64::new(0),
                file,
                user,
                user_stale: AtomicBool::new(false),
                user_kept <- kernel::new_spinlock!(kept, "movgem_object_user_kept"),
                user_kept_len: AtomicUsize::new(0),
                npages,
                device: device.clone(),
                state: LockedBy::new(
                    &device.struct_mutex,
                    ObjState {
                        gtt_shadow: shadow,
                        ..ObjState::default()
                    }
                ),
                hw <- kernel::new_spinlock!(hw, "movgem_object_hw"),
                active: AtomicU32::new(0),
                closed: AtomicBool::new(false),
                purged: AtomicBool::new(false),
                registered: AtomicBool::new(false),
                purge_work <- kernel::new_work!("movgem_purge"),
                purge_pages: AtomicUsize::new(0),
                free_work <- kernel::new_work!("movgem_free"),
            }),
            GFP_KERNEL,
        )
    }

    /// The id the device lists the object under.
    pub(crate) fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    /// Set once, when the device lists the object.
    pub(crate) fn set_id(&self, id: u64) {
        self.id.store(id, Ordering::Relaxed);
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

    /// Records that the pages were truncated for good.
    pub(crate) fn set_purged(&self) {
        self.purged.store(true, Ordering::Release);
        self.device.counters.inc(Counter::Purged);
    }

    /// Whether shmem has our `dev_info` registered on this object.
    pub(crate) fn hook_registered(&self) -> bool {
        self.file
            .as_ref()
            .is_some_and(|f| core::ptr::eq(f.registered(), self.dev_info.get()))
    }

    /// The object's mutable state, for as long as `locked` (reachable
    /// only through a guard of `struct_mutex`) is borrowed.
    pub(crate) fn state<'a>(&'a self, locked: &'a mut DeviceLocked) -> &'a mut ObjState {
        self.state.access_mut(locked)
    }

    /// Pages the object holds references on: its shmem folios, or the
    /// user pages a userptr object kept.
    pub(crate) fn pages_held(&self, st: &ObjState) -> usize {
        st.pages_held() + self.user_pages_kept()
    }

    /// What the policy needs to know.
    pub(crate) fn snapshot(&self, st: &ObjState) -> ObjectState {
        ObjectState {
            has_pages: self.pages_held(st) > 0,
            active: self.active() > 0,
            purgeable: st.madv == uapi::MADV_DONTNEED,
            pages_pin_count: st.pages_pin_count,
            bind_count: u32::from(st.gtt_offset.is_some()),
            pinned_vmas: st.pinned_vmas,
            vmap_cached: st.vmap.is_some(),
        }
    }

    /// `MADVISE`: returns whether the pages still exist.  A DONTNEED
    /// object that holds no pages is purged at once, as i915 does.
    pub(crate) fn madvise(&self, locked: &mut DeviceLocked, madv: u32) -> Result<bool> {
        let st = self.state(locked);
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
            self.set_purged();
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
    /// If that was the last use of a closed object, it is freed on the
    /// device's purge worker, as i915 frees objects from a worker of its
    /// own: freeing takes `struct_mutex` and truncates, and the engine's
    /// ring, which retires requests, must not wait for either (the OOM
    /// notifier's callers and EXECBUF's populate wait for retirements).
    pub(crate) fn retire(self: &Arc<Self>) {
        self.active.fetch_sub(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) && self.active() == 0 {
            // Queued already: that run frees it.
            let _ = self
                .device
                .purge_wq
                .queue()
                .enqueue::<Arc<Self>, FREE_WORK>(self.clone());
        }
    }

    /// Queues the truncation of a purged object (`npages` pages) on the
    /// purge worker; returns whether this queued it (else a run already
    /// queued truncates it, and counts its pages).
    pub(crate) fn purge_later(self: &Arc<Self>, npages: usize) -> bool {
        self.purge_pages.fetch_add(npages, Ordering::AcqRel);
        self.device
            .purge_wq
            .queue()
            .enqueue::<Arc<Self>, PURGE_WORK>(self.clone())
            .is_ok()
    }

    /// Whether a truncation queued by [`Object::purge_later`] has still
    /// to run.
    pub(crate) fn purge_pending(&self) -> bool {
        self.purge_pages.load(Ordering::Acquire) != 0
    }

    /// Marks the object busy for GPU work; see [`Object::retire`].
    pub(crate) fn activate(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
    }

    /// The last handle is gone.
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Releases everything once the object is both closed and idle.
    /// Runs at most once for real; later calls find nothing to do.
    pub(crate) fn release_if_closed_and_idle(&self) {
        if self.closed.load(Ordering::SeqCst) && self.active() == 0 {
            self.destroy();
        }
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
        let (first, longterm) = {
            let mut locked = self.device.struct_mutex.lock();
            self.clear_binding(&mut locked);
            let st = self.state(&mut locked);
            let first = !st.dead;
            st.dead = true;
            st.pinned_vmas = 0;
            st.vmap_pins = 0;
            st.pages_pin_count = 0;
            st.longterm_pins = 0;
            self.put_pages(st);
            (first, st.longterm.take())
        };
        // Unpinned without the lock.
        drop(longterm);
        self.drop_user_pages();
        self.teardown();
        if first {
            self.device.counters.inc(Counter::ObjectsFreed);
        }
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
    /// a batch of page references at a time ([`UserRange::touch`]), and,
    /// with `userptr_keep_pages`, then pinned and kept, as i915 keeps
    /// them (so a writable file mapping is refused then: `EFAULT`).
    pub(crate) fn prepare_access(&self, write: bool) -> Result {
        if let Some(user) = self.user.as_ref() {
            let pages = user.touch(write)?;
            self.device
                .counters
                .add(Counter::UserptrFaultedPages, pages as u64);
            if params::userptr_keep_pages() {
                // The range is present now: taking every reference is
                // quick, so an invalidation (reclaim unmapping a page of
                // the range, under pressure) rarely comes in between; if
                // one does, the references may be stale and are not kept.
                for _ in 0..USERPTR_KEEP_TRIES {
                    let seq = user.read_begin()?;
                    let mut pages = user.pin(write)?;
                    if self.keep_user_pages(seq, &mut pages) > 0 {
                        break;
                    }
                }
            }
            return Ok(());
        }
        self.populate()
    }

    /// Keeps `pages`, pins on the whole user range taken since `seq`
    /// ([`UserRange::pin`]), in place of the pins kept before, which are
    /// left in `pages` for the caller to drop outside the locks (freeing
    /// the array may sleep); nothing is kept, and `pages` left as it was,
    /// if the range was invalidated since `seq` (the pages may be stale).
    /// Returns the pages kept.  Takes `Device::notifier_lock`, then
    /// `user_kept`: an invalidation either came first, or finds the new
    /// pins and drops them.
    pub(crate) fn keep_user_pages(&self, seq: Seq, pages: &mut PageArray<UserPin>) -> usize {
        let Some(user) = self.user.as_ref() else {
            return 0;
        };
        let _guard = self.device.notifier_lock.lock();
        if user.read_retry(seq) {
            return 0;
        }
        let mut kept = self.user_kept.lock();
        // A swap: nothing is allocated or freed under the locks.
        core::mem::swap(&mut *kept, pages);
        let n = kept.len();
        self.user_kept_len.store(n, Ordering::Relaxed);
        drop(kept);
        self.device
            .counters
            .add(Counter::UserptrKeptPages, n as u64);
        n
    }

    /// Drops the user pages kept; returns how many there were.  Never
    /// sleeps or frees the array (see `user_kept`): the invalidate
    /// callback calls it under `notifier_lock`.  The pins are dropped
    /// without marking the pages dirty (which would take each folio's
    /// lock, and sleep): nothing ever writes through a kept pin, since a
    /// request writes through pins of its own and marks its pages dirty
    /// as it retires.
    pub(crate) fn drop_user_pages(&self) -> usize {
        if self.user_kept_len.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut kept = self.user_kept.lock();
        let n = kept.len();
        kept.clear();
        self.user_kept_len.store(0, Ordering::Relaxed);
        n
    }

    /// User pages kept (`userptr_keep_pages`).
    pub(crate) fn user_pages_kept(&self) -> usize {
        self.user_kept_len.load(Ordering::Relaxed)
    }

    /// The invalidate callback: note the new sequence, so that requests
    /// fault the range in again, drop the pages kept, and drop the binding
    /// at the next use.  Requests in flight keep their own pins until
    /// they retire, so nothing has to wait here.
    ///
    /// # Safety
    ///
    /// `up` must be the notifier of this object's range whose callback is
    /// running.
    unsafe fn userptr_invalidate(&self, up: *mut RawUserptr, cur_seq: c_ulong) {
        {
            let _guard = self.device.notifier_lock.lock();
            // SAFETY: `up` is the notifier this callback runs for.
            unsafe { UserRange::set_seq(up, cur_seq) };
            // `debug_userptr_invalidate_keeps`: a deliberate breakage,
            // the kept pins outlive the range's invalidation.
            if !params::debug_userptr_invalidate_keeps() {
                let dropped = self.drop_user_pages();
                self.device
                    .counters
                    .add(Counter::UserptrKeptInvalidated, dropped as u64);
            }
        }
        self.user_stale.store(true, Ordering::Release);
        self.device.counters.inc(Counter::UserptrInvalidations);
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

/// Attempts SET_DOMAIN makes to keep a userptr range that invalidations
/// keep making stale (`userptr_keep_pages`); then it keeps nothing.
const USERPTR_KEEP_TRIES: usize = 3;

/// Bytes `Object::rw` copies per step, through the stack: no allocation
/// for PREAD/PWRITE, which gem_shrink calls for 4 bytes of every page.
const RW_CHUNK: usize = 256;

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `owner` must be the object that inserted the notifier `up` (it removes
/// it, waiting for this callback, before it goes away), and `up` the
/// notifier whose invalidation is running.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_userptr_invalidate(
    owner: *mut c_void,
    up: *mut RawUserptr,
    cur_seq: c_ulong,
    _blockable: bool,
) -> bool {
    // SAFETY: by the caller's contract `owner` is a live `Object`.
    let obj = unsafe { &*owner.cast::<Object>() };
    // SAFETY: by the caller's contract `up` is that object's running
    // notifier.
    unsafe { obj.userptr_invalidate(up, cur_seq) };
    true
}
