// SPDX-License-Identifier: GPL-2.0

//! The user range behind a userptr object, watched by an
//! `mmu_interval_notifier` (shims in `rust/shims/userptr.c`).
//!
//! A request faults the range in (`get_user_pages_fast`) before it takes
//! `struct_mutex`, keeps those references while the engine uses them, and
//! drops them when it retires.  Whether the range changed in between is
//! checked with the notifier's sequence count under
//! `Device::notifier_lock`, which the invalidate callback also takes.
//! Idle, a userptr object holds no page references, unless
//! `userptr_keep_pages` makes it keep them as i915 does
//! (`Object::keep_user_pages`): then until the shrinker, the OOM notifier
//! or the next invalidation of the range drops them.

use core::marker::{PhantomData, PhantomPinned};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::error::from_err_ptr;
use kernel::ffi::{c_long, c_uint, c_ulong, c_void};
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
}

/// A notifier sequence number from [`UserRange::read_begin`].
#[derive(Clone, Copy)]
pub(crate) struct Seq(c_ulong);

/// Pages fetched per `get_user_pages_fast` call.
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

    /// Takes a reference on every page of the range, faulting it in.
    /// Only the process that created the object may do this (`EFAULT`).
    pub(crate) fn fault_in(&self, write: bool) -> Result<PageArray<PageRef>> {
        let mut pages = PageArray::with_capacity(self.npages)?;
        // Capacity was reserved for every page of the range.
        self.each_page(write, |page| Ok(pages.push(page, GFP_KERNEL)?))?;
        Ok(pages)
    }

    /// Faults the range in, as [`UserRange::fault_in`], but holds at most
    /// one batch of page references at a time; returns the pages faulted.
    /// For SET_DOMAIN, which only makes the range present: holding every
    /// reference until the last page is in would pin the whole range
    /// while it is faulted in, and under memory pressure reclaim then
    /// spends its time unmapping pages it cannot free (gem_shrink's
    /// `-oom` subtests: 84,000 invalidations and 60 million pages scanned
    /// in two minutes).
    pub(crate) fn touch(&self, write: bool) -> Result<usize> {
        let mut done = 0;
        self.each_page(write, |page| {
            drop(page);
            done += 1;
            Ok(())
        })?;
        Ok(done)
    }

    /// Faults the range in `BATCH` pages at a time and hands `each` a
    /// reference on every page, in order.
    fn each_page(&self, write: bool, mut each: impl FnMut(PageRef) -> Result) -> Result {
        let up = self.raw()?;
        let mut batch = [core::ptr::null_mut::<RawPage>(); BATCH];
        let mut done = 0;
        while done < self.npages {
            let want = (self.npages - done).min(BATCH);
            let addr = self.start + (done * kernel::page::PAGE_SIZE) as u64;
            // SAFETY: `up` is live as in `read_begin`; `batch` has room for
            // `want` pointers.
            let got = unsafe {
                movgem_userptr_get_pages(
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
            // Every returned page becomes a `PageRef`, even after `each`
            // failed, so that no reference leaks.
            let mut failed = None;
            for &page in &batch[..got] {
                let Some(page) = NonNull::new(page) else {
                    failed.get_or_insert(EFAULT);
                    continue;
                };
                // SAFETY: `get_user_pages_fast` returned the page with a
                // reference for us.
                let page = unsafe { PageRef::from_raw(page) };
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
