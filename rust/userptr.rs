// SPDX-License-Identifier: GPL-2.0

//! The user range behind a userptr object, watched by an
//! `mmu_interval_notifier` (shims in `rust/shims/userptr.c`).
//!
//! A request pins the range (`pin_user_pages_fast(FOLL_LONGTERM)`, with
//! `FOLL_WRITE` when it writes) before it takes `struct_mutex`, keeps
//! those pins while the engine uses the pages, and unpins them when it
//! retires, marking written pages dirty then ([`UserPin`]): the engine
//! writes them after submission, as DMA would, so they must be pinned,
//! not merely referenced (see `movgem_userptr_pin_pages`).  Whether the
//! range changed in between is checked with the notifier's sequence
//! count under `Device::notifier_lock`, which the invalidate callback
//! also takes.  Idle, a userptr object holds no pages, unless
//! `userptr_keep_pages` makes it keep pins as i915 does
//! (`Object::keep_user_pages`): then until the shrinker, the OOM notifier
//! or the next invalidation of the range drops them.

use core::marker::{PhantomData, PhantomPinned};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::error::from_err_ptr;
use kernel::ffi::{c_int, c_long, c_uint, c_ulong, c_void};
use kernel::prelude::*;

use crate::shmem::{PageArray, PageRef, RawPage};

/// C `struct movgem_userptr`, only ever behind a pointer.
#[repr(C)]
pub(crate) struct RawUserptr {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

extern "C" {
    fn movgem_userptr_create(owner: *mut c_void, start: c_ulong, len: c_ulong) -> *mut RawUserptr;
    fn movgem_userptr_destroy(up: *mut RawUserptr);
    fn movgem_userptr_read_begin(up: *mut RawUserptr) -> c_ulong;
    fn movgem_userptr_read_retry(up: *mut RawUserptr, seq: c_ulong) -> bool;
    fn movgem_userptr_set_seq(up: *mut RawUserptr, seq: c_ulong);
    fn movgem_userptr_get_pages(
        up: *mut RawUserptr,
        start: c_ulong,
        npages: c_uint,
        write: bool,
        pages: *mut *mut RawPage,
    ) -> c_long;
    fn movgem_userptr_pin_pages(
        up: *mut RawUserptr,
        start: c_ulong,
        npages: c_uint,
        write: bool,
        pages: *mut *mut RawPage,
    ) -> c_long;
    fn movgem_userptr_unpin_page(page: *mut RawPage, dirty: bool);
    fn movgem_page_read(page: *mut RawPage, offset: usize, buf: *mut c_void, len: usize) -> c_int;
    fn movgem_page_write(
        page: *mut RawPage,
        offset: usize,
        buf: *const c_void,
        len: usize,
    ) -> c_int;
}

/// A pin on one page of a user range, from `movgem_userptr_pin_pages`:
/// what the engine reads and writes through, later, as DMA would.
/// Dropping it unpins the page without marking it dirty, which never
/// sleeps (the invalidate callback drops kept pins); a page the GPU may
/// have written is released with [`UserPin::unpin_dirty`] instead.
///
/// # Invariants
///
/// `page` is valid and we own one pin (`FOLL_PIN`) on it.
#[repr(transparent)]
pub(crate) struct UserPin {
    page: NonNull<RawPage>,
}

// SAFETY: a pin may be dropped from any task.
unsafe impl Send for UserPin {}

impl UserPin {
    /// Copies `buf.len()` bytes at `offset` of the page into `buf`.
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) -> Result {
        // SAFETY: the page is valid (pinned) and `buf` is writable for its
        // length; the shim checks the range against the page.
        kernel::error::to_result(unsafe {
            movgem_page_read(
                self.page.as_ptr(),
                offset,
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        })
    }

    /// Copies `buf` to `offset` of the page.  Only through a pin taken
    /// for writing; release it with [`UserPin::unpin_dirty`].
    pub(crate) fn write(&self, offset: usize, buf: &[u8]) -> Result {
        // SAFETY: the page is valid (pinned) and `buf` is readable for its
        // length; the shim checks the range against the page.
        kernel::error::to_result(unsafe {
            movgem_page_write(self.page.as_ptr(), offset, buf.as_ptr().cast(), buf.len())
        })
    }

    /// Marks the page dirty, under its folio lock, and unpins it
    /// (`unpin_user_pages_dirty_lock`): may sleep.
    pub(crate) fn unpin_dirty(self) {
        let pin = core::mem::ManuallyDrop::new(self);
        // SAFETY: we own the pin by the type invariant, and `pin` is never
        // dropped, so it is released exactly once, here.
        unsafe { movgem_userptr_unpin_page(pin.page.as_ptr(), true) }
    }
}

impl Drop for UserPin {
    fn drop(&mut self) {
        // SAFETY: we own the pin by the type invariant; without `dirty`
        // the shim never sleeps.
        unsafe { movgem_userptr_unpin_page(self.page.as_ptr(), false) }
    }
}

/// `movgem_userptr_get_pages` or `movgem_userptr_pin_pages`.
type TakeFn =
    unsafe extern "C" fn(*mut RawUserptr, c_ulong, c_uint, bool, *mut *mut RawPage) -> c_long;

/// What [`UserRange::each_page`] takes on each page: a plain reference
/// ([`PageRef`]) or a pin ([`UserPin`]), released on drop.
trait Hold: Sized {
    /// The shim that takes them.
    const TAKE: TakeFn;

    /// Adopts what `TAKE` took on `page`.
    ///
    /// # Safety
    ///
    /// `page` must come from `TAKE`, with what it took, which passes to
    /// the new value.
    unsafe fn adopt(page: NonNull<RawPage>) -> Self;
}

impl Hold for PageRef {
    const TAKE: TakeFn = movgem_userptr_get_pages;

    unsafe fn adopt(page: NonNull<RawPage>) -> Self {
        // SAFETY: `get_user_pages_fast` returned the page with a reference
        // for us (guaranteed by the caller).
        unsafe { PageRef::from_raw(page) }
    }
}

impl Hold for UserPin {
    const TAKE: TakeFn = movgem_userptr_pin_pages;

    unsafe fn adopt(page: NonNull<RawPage>) -> Self {
        // INVARIANT: `pin_user_pages_fast` returned the page with a pin for
        // us (guaranteed by the caller).
        UserPin { page }
    }
}

/// A notifier sequence number from [`UserRange::read_begin`].
#[derive(Clone, Copy)]
pub(crate) struct Seq(c_ulong);

/// Pages taken per `pin_user_pages_fast` (`get_user_pages_fast`) call.
const BATCH: usize = 64;

/// A range of a process's memory.
///
/// # Invariants
///
/// `notifier` is null, or a notifier from `movgem_userptr_create` that
/// this owns and that is still inserted.
pub(crate) struct UserRange {
    start: u64,
    npages: usize,
    notifier: AtomicPtr<RawUserptr>,
}

impl UserRange {
    /// A range of `npages` pages at `start`, not watched yet.
    pub(crate) fn new(start: u64, npages: usize) -> Self {
        Self {
            start,
            npages,
            notifier: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Starts watching the range in the current process; invalidations
    /// call `movgem_rs_userptr_invalidate(owner, ...)`.
    ///
    /// # Safety
    ///
    /// `owner` must stay valid until [`UserRange::remove`] has returned.
    pub(crate) unsafe fn watch(&self, owner: *const c_void) -> Result {
        let len = self
            .npages
            .checked_mul(kernel::page::PAGE_SIZE)
            .ok_or(EINVAL)?;
        // SAFETY: the shim checks the range with `access_ok()`; the caller
        // keeps `owner` valid while the notifier exists.
        let up = from_err_ptr(unsafe {
            movgem_userptr_create(owner.cast_mut(), self.start as c_ulong, len as c_ulong)
        })?;
        // INVARIANT: a fresh notifier, owned from here on.
        if self
            .notifier
            .compare_exchange(
                core::ptr::null_mut(),
                up,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // SAFETY: `up` was never published, so it is ours alone.
            unsafe { movgem_userptr_destroy(up) };
            return Err(EBUSY);
        }
        Ok(())
    }

    /// Stops watching; waits for an invalidation in flight.  Must not be
    /// called from the invalidate callback.
    pub(crate) fn remove(&self) {
        let up = self.notifier.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !up.is_null() {
            // SAFETY: by the type invariant we own `up`, and the swap made
            // this the only path that frees it.
            unsafe { movgem_userptr_destroy(up) };
        }
    }

    fn raw(&self) -> Result<*mut RawUserptr> {
        let up = self.notifier.load(Ordering::Acquire);
        if up.is_null() {
            Err(ENOENT)
        } else {
            Ok(up)
        }
    }

    /// Begins a read side: pages fetched after this are valid unless
    /// [`UserRange::read_retry`] says otherwise.  May sleep until an
    /// invalidation in flight ends.
    pub(crate) fn read_begin(&self) -> Result<Seq> {
        let up = self.raw()?;
        // SAFETY: `up` is a live notifier by the type invariant; its
        // owner only removes it once the object is gone.
        Ok(Seq(unsafe { movgem_userptr_read_begin(up) }))
    }

    /// Whether the range was invalidated since `seq`.  Call under
    /// `Device::notifier_lock`.
    pub(crate) fn read_retry(&self, seq: Seq) -> bool {
        match self.raw() {
            // SAFETY: as in `read_begin`.
            Ok(up) => unsafe { movgem_userptr_read_retry(up, seq.0) },
            Err(_) => true,
        }
    }

    /// Pins every page of the range for the engine, faulting it in:
    /// `FOLL_LONGTERM`, and `FOLL_WRITE` if the engine may write them.
    /// Only the process that created the object may do this (`EFAULT`);
    /// `EFAULT` too for writing to a shared mapping of a file that tracks
    /// dirty pages (ext2, ext4...; not tmpfs), which writeback could clean
    /// under the GPU's later write.
    pub(crate) fn pin(&self, write: bool) -> Result<PageArray<UserPin>> {
        let mut pages = PageArray::with_capacity(self.npages)?;
        // Capacity was reserved for every page of the range.
        self.each_page(write, |page| Ok(pages.push(page, GFP_KERNEL)?))?;
        Ok(pages)
    }

    /// Faults the range in, holding at most one batch of plain page
    /// references at a time; returns the pages faulted.  For SET_DOMAIN,
    /// which only makes the range present.  Not pins: nothing reads or
    /// writes the pages through these references, each batch is dropped
    /// before the next is taken, so neither fork's copy-on-write nor
    /// writeback can lose a write made through them; a pin would only
    /// move movable and CMA pages for nothing (`FOLL_LONGTERM`).  Holding
    /// every reference until the last page is in would pin the whole
    /// range while it is faulted in, and under memory pressure reclaim
    /// then spends its time unmapping pages it cannot free (gem_shrink's
    /// `-oom` subtests: 84,000 invalidations and 60 million pages scanned
    /// in two minutes).
    pub(crate) fn touch(&self, write: bool) -> Result<usize> {
        let mut done = 0;
        self.each_page(write, |page: PageRef| {
            drop(page);
            done += 1;
            Ok(())
        })?;
        Ok(done)
    }

    /// Takes the range `BATCH` pages at a time and hands `each` what was
    /// taken on every page, in order.
    fn each_page<P: Hold>(&self, write: bool, mut each: impl FnMut(P) -> Result) -> Result {
        let up = self.raw()?;
        let mut batch = [core::ptr::null_mut::<RawPage>(); BATCH];
        let mut done = 0;
        while done < self.npages {
            let want = (self.npages - done).min(BATCH);
            let addr = self.start + (done * kernel::page::PAGE_SIZE) as u64;
            // SAFETY: `up` is live as in `read_begin`; `batch` has room for
            // `want` pointers.
            let got = unsafe {
                (P::TAKE)(
                    up,
                    addr as c_ulong,
                    want as c_uint,
                    write,
                    batch.as_mut_ptr(),
                )
            };
            if got <= 0 {
                return Err(if got < 0 {
                    Error::from_errno(got as i32)
                } else {
                    EFAULT
                });
            }
            let got = got as usize;
            // Every returned page is adopted, even after `each` failed, so
            // that no reference or pin leaks.
            let mut failed = None;
            for &page in &batch[..got] {
                let Some(page) = NonNull::new(page) else {
                    failed.get_or_insert(EFAULT);
                    continue;
                };
                // SAFETY: `P::TAKE` returned the page, with what it took.
                let page = unsafe { P::adopt(page) };
                if failed.is_none() {
                    failed = each(page).err();
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            done += got;
        }
        Ok(())
    }

    /// Records an invalidation; the caller holds `Device::notifier_lock`.
    ///
    /// # Safety
    ///
    /// `up` must be the notifier the callback was called for.
    pub(crate) unsafe fn set_seq(up: *mut RawUserptr, seq: c_ulong) {
        // SAFETY: the callback runs on a live notifier (guaranteed by the
        // caller), and `mmu_interval_set_seq` only stores the value.
        unsafe { movgem_userptr_set_seq(up, seq) }
    }
}

impl Drop for UserRange {
    fn drop(&mut self) {
        self.remove();
    }
}
