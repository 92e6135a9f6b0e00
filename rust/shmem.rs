// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the shmem shims in `rust/shims/shmem.c`.

use core::ptr::NonNull;
use kernel::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

use core::marker::{PhantomData, PhantomPinned};
use kernel::error::from_err_ptr;
use kernel::prelude::*;
use kernel::str::CStr;

/// Size of `struct shmem_dev_info`; the C side asserts it at build time.
pub(crate) const SHMEM_DEV_INFO_SIZE: usize = 8;

/// C `struct file`, only ever behind a pointer.  (bindgen's own layout of
/// it trips `improper_ctypes`.)
#[repr(C)]
pub(crate) struct RawFile {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// C `struct vfsmount`, only ever behind a pointer.
#[repr(C)]
pub(crate) struct RawMount {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// C `struct folio`, only ever behind a pointer.
#[repr(C)]
pub(crate) struct RawFolio {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// C `struct page`, only ever behind a pointer.
#[repr(C)]
pub(crate) struct RawPage {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Opaque storage for the C `struct shmem_dev_info`.
#[repr(C, align(8))]
pub(crate) struct ShmemDevInfo {
    _storage: [u8; SHMEM_DEV_INFO_SIZE],
}

/// Where an object keeps its `struct shmem_dev_info`: shmem reads it (the
/// callback pointer) and hands its address back to the migrate callback,
/// which finds the object around it with `container_of!`.
#[repr(transparent)]
#[pin_data]
pub(crate) struct DevInfoSlot {
    #[pin]
    inner: kernel::types::Opaque<ShmemDevInfo>,
}

// SAFETY: Rust never reads or writes the storage after initialisation;
// only shmem does (`movgem_shmem_register` writes it before registering,
// `shmem_get_dev_info` readers only read it), from any task.
unsafe impl Send for DevInfoSlot {}
// SAFETY: as above.
unsafe impl Sync for DevInfoSlot {}

impl DevInfoSlot {
    /// Storage for `movgem_shmem_register` to fill.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            inner <- kernel::types::Opaque::ffi_init(|_slot: *mut ShmemDevInfo| {}),
        })
    }

    /// The address shmem is given and hands back.
    pub(crate) fn get(&self) -> *mut ShmemDevInfo {
        self.inner.get()
    }
}

extern "C" {
    fn movgem_gemfs_mount() -> *mut RawMount;
    fn movgem_gemfs_unmount(mnt: *mut RawMount);
    fn movgem_shmem_create(name: *const c_char, size: usize, mnt: *mut RawMount) -> *mut RawFile;
    fn movgem_shmem_get_page(filp: *mut RawFile, index: c_ulong, how: c_int) -> *mut RawPage;
    fn movgem_page_get(page: *mut RawPage);
    fn movgem_page_put(page: *mut RawPage);
    fn movgem_vm_mmap(filp: *mut RawFile, offset: u64, size: u64) -> c_ulong;
    fn movgem_vmap_pages(pages: *const *mut RawPage, n: c_uint) -> *mut c_void;
    fn movgem_vunmap(vaddr: *mut c_void);
    fn movgem_page_pfn(page: *mut RawPage) -> c_ulong;
    fn movgem_page_read(page: *mut RawPage, offset: usize, buf: *mut c_void, len: usize) -> c_int;
    fn movgem_page_write(
        page: *mut RawPage,
        offset: usize,
        buf: *const c_void,
        len: usize,
    ) -> c_int;
    fn movgem_shmem_gfp_mask(filp: *mut RawFile) -> c_ulong;
    fn movgem_gfp_is_movable(gfp: c_ulong) -> bool;
    fn movgem_shmem_register(filp: *mut RawFile, dev_info: *mut ShmemDevInfo) -> c_int;
    fn movgem_shmem_registered(filp: *mut RawFile) -> *mut ShmemDevInfo;
    fn movgem_shmem_set_unevictable(filp: *mut RawFile);
    fn movgem_shmem_clear_unevictable(filp: *mut RawFile, pages: *const *mut RawPage, n: c_ulong);
    fn movgem_shmem_truncate(filp: *mut RawFile);
    fn movgem_shmem_pin_folios(
        filp: *mut RawFile,
        folios: *mut *mut RawFolio,
        max: c_uint,
    ) -> kernel::ffi::c_long;
    fn movgem_unpin_folios(folios: *mut *mut RawFolio, n: c_ulong);
    fn movgem_folio_nr_pages(folio: *mut RawFolio) -> c_ulong;
    fn movgem_folio_page(folio: *mut RawFolio, n: c_ulong) -> *mut RawPage;
    fn movgem_fput(filp: *mut RawFile);
    fn movgem_shmem_writeback(filp: *mut RawFile, nr_to_write: c_ulong) -> c_ulong;
    fn movgem_shmem_lookup_pfn(filp: *mut RawFile, index: c_ulong) -> c_ulong;
}

/// A private tmpfs mount with `huge=within_size`, i915's "gemfs": files
/// on it get PMD-sized folios wherever a whole 2 MiB range lies within
/// them (`CREATE_HUGE` objects).
///
/// # Invariants
///
/// `mnt` is a mount from `movgem_gemfs_mount()`, unmounted on drop; the
/// files created on it hold their own references to it.
pub(crate) struct Gemfs {
    mnt: NonNull<RawMount>,
}

// SAFETY: a mount may be used and unmounted from any task.
unsafe impl Send for Gemfs {}
// SAFETY: creating files on a mount may run concurrently.
unsafe impl Sync for Gemfs {}

impl Gemfs {
    /// Mounts it.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: no preconditions.
        let mnt = from_err_ptr(unsafe { movgem_gemfs_mount() })?;
        // INVARIANT: a mount we now own.
        NonNull::new(mnt).map(|mnt| Self { mnt }).ok_or(ENOMEM)
    }
}

impl Drop for Gemfs {
    fn drop(&mut self) {
        // SAFETY: we own the mount by the type invariant.
        unsafe { movgem_gemfs_unmount(self.mnt.as_ptr()) }
    }
}

/// A shmem file with movable folios: kernel-internal, or on [`Gemfs`].
///
/// # Invariants
///
/// `filp` is a valid file from `shmem_kernel_file_setup` and we own one
/// reference to it.
pub(crate) struct ShmemFile {
    filp: NonNull<RawFile>,
}

// SAFETY: a `struct file` reference may be used and dropped from any task.
unsafe impl Send for ShmemFile {}
// SAFETY: every operation below is safe to run concurrently on one file;
// shmem serialises through the folio locks and the mapping's xarray.
unsafe impl Sync for ShmemFile {}

impl ShmemFile {
    /// Creates a file of `size` bytes; no pages are allocated yet.
    pub(crate) fn new(name: &CStr, size: usize, on: Option<&Gemfs>) -> Result<Self> {
        let mnt = on.map_or(core::ptr::null_mut(), |g| g.mnt.as_ptr());
        // SAFETY: `name` is NUL-terminated and outlives the call; `mnt`
        // is null or a live mount (`Gemfs`'s invariant), which the file
        // keeps referenced from now on.
        let filp = from_err_ptr(unsafe { movgem_shmem_create(name.as_char_ptr(), size, mnt) })?;
        // INVARIANT: `from_err_ptr` succeeded, so `filp` is a valid file we own.
        NonNull::new(filp).map(|filp| Self { filp }).ok_or(ENOMEM)
    }

    /// A reference on the page at `index`, allocated if needed.
    pub(crate) fn page(&self, index: usize) -> Result<PageRef> {
        self.page_with(index, PageAlloc::Default)
    }

    /// [`ShmemFile::page`] with the allocation behaviour `how`.
    pub(crate) fn page_with(&self, index: usize, how: PageAlloc) -> Result<PageRef> {
        // SAFETY: `self.filp` is valid by the type invariant.
        let page = from_err_ptr(unsafe {
            movgem_shmem_get_page(self.filp.as_ptr(), index as c_ulong, how as c_int)
        })?;
        // INVARIANT: shmem returned the page with a reference for us.
        NonNull::new(page)
            .map(|page| PageRef { page })
            .ok_or(ENOMEM)
    }

    /// The frame of page `index` in the page cache, without allocating
    /// or reading it in; `None` if it is not there.
    pub(crate) fn lookup_pfn(&self, index: usize) -> Option<usize> {
        // SAFETY: `self.filp` is valid by the type invariant.
        let pfn = unsafe { movgem_shmem_lookup_pfn(self.filp.as_ptr(), index as c_ulong) };
        (pfn != 0).then_some(pfn as usize)
    }

    /// Whether the mapping allocates from MOVABLE pageblocks.
    pub(crate) fn is_movable(&self) -> bool {
        // SAFETY: `self.filp` is valid by the type invariant.
        unsafe { movgem_gfp_is_movable(movgem_shmem_gfp_mask(self.filp.as_ptr())) }
    }

    /// Registers `dev_info` with shmem so migration calls our hook.
    ///
    /// # Safety
    ///
    /// `dev_info` must stay valid and pinned until [`ShmemFile::unregister`]
    /// and [`ShmemFile::truncate`] have both returned.
    pub(crate) unsafe fn register(&self, dev_info: *mut ShmemDevInfo) -> Result {
        // SAFETY: `self.filp` is valid; the caller keeps `dev_info` alive.
        kernel::error::to_result(unsafe { movgem_shmem_register(self.filp.as_ptr(), dev_info) })
    }

    /// Removes our hook.  Callbacks already running finish under their
    /// folio lock; [`ShmemFile::truncate`] waits for them.
    pub(crate) fn unregister(&self) {
        // SAFETY: `self.filp` is valid; NULL unregisters and cannot fail on
        // a shmem mapping.
        let _ = unsafe { movgem_shmem_register(self.filp.as_ptr(), core::ptr::null_mut()) };
    }

    /// The `shmem_dev_info` registered on the mapping, if any.
    pub(crate) fn registered(&self) -> *mut ShmemDevInfo {
        // SAFETY: `self.filp` is valid by the type invariant.
        unsafe { movgem_shmem_registered(self.filp.as_ptr()) }
    }

    /// Maps `size` bytes from `offset` into the current process, shared
    /// and writable; returns the user address.
    pub(crate) fn vm_mmap(&self, offset: u64, size: u64) -> Result<u64> {
        // SAFETY: `self.filp` is valid; `vm_mmap` checks the range itself.
        let addr = unsafe { movgem_vm_mmap(self.filp.as_ptr(), offset, size) };
        if addr >= (-4095isize) as c_ulong {
            return Err(Error::from_errno(addr as c_int));
        }
        Ok(addr as u64)
    }

    /// Starts swap writeback of the file's dirty, unmapped pages, the way
    /// reclaim would (nothing without swap), stopping after `nr` pages;
    /// returns the pages submitted.
    pub(crate) fn writeback(&self, nr: usize) -> usize {
        // SAFETY: `self.filp` is valid by the type invariant.
        unsafe { movgem_shmem_writeback(self.filp.as_ptr(), nr as c_ulong) as usize }
    }

    /// The object now holds every page of the file: keep reclaim, which
    /// cannot free them, from scanning them (as i915 does).
    pub(crate) fn set_unevictable(&self) {
        // SAFETY: `self.filp` is valid by the type invariant.
        unsafe { movgem_shmem_set_unevictable(self.filp.as_ptr()) }
    }

    /// The object is about to drop its references on `pages`: make them
    /// evictable again.  Takes only LRU spinlocks, never sleeps.
    pub(crate) fn clear_unevictable(&self, pages: &[PageRef]) {
        // `PageRef` is `repr(transparent)` over a page pointer, so the
        // slice is an array of `struct page *`.
        let ptr = pages.as_ptr().cast::<*mut RawPage>();
        // SAFETY: `self.filp` is valid; `ptr` points to `pages.len()` page
        // pointers on which we hold references for the whole call.
        unsafe { movgem_shmem_clear_unevictable(self.filp.as_ptr(), ptr, pages.len() as c_ulong) }
    }

    /// Frees every page of the file.  Takes each folio lock, so no
    /// migrate callback on this file is running once this returns.
    pub(crate) fn truncate(&self) {
        // SAFETY: `self.filp` is valid by the type invariant.
        unsafe { movgem_shmem_truncate(self.filp.as_ptr()) }
    }

    /// Pins every folio of the file long term (`FOLL_PIN`), the whole
    /// file being `npages` pages: `memfd_pin_folios()`, which first
    /// migrates the folios that sit in ZONE_MOVABLE or in a CMA area
    /// elsewhere, as GUP does for `FOLL_LONGTERM` (its whole loop under
    /// `memalloc_pin_save()`, so no target is movable), and allocates
    /// missing ones the same way.  The moves go through our migrate
    /// hook, so the caller must not hold `struct_mutex`.  Allocates the
    /// folio array here, before the caller takes the lock.
    pub(crate) fn pin_longterm(&self, npages: usize) -> Result<PinnedFolios> {
        let max = c_uint::try_from(npages).map_err(|_| E2BIG)?;
        let mut folios = PageArray::<*mut RawFolio>::with_capacity(npages)?;
        // SAFETY: `self.filp` is valid by the type invariant; `folios`
        // has room for `max` entries, which `memfd_pin_folios()` fills.
        let n = unsafe { movgem_shmem_pin_folios(self.filp.as_ptr(), folios.as_mut_ptr(), max) };
        let n = usize::try_from(n).map_err(|_| Error::from_errno(n as c_int))?;
        if n > npages {
            // Never: `memfd_pin_folios()` stops at `max`.
            return Err(EINVAL);
        }
        // SAFETY: `memfd_pin_folios()` initialised the first `n` entries
        // (within the capacity, checked above).
        unsafe { folios.set_len(n) };
        // INVARIANT: those `n` folios are pinned, and now owned by us.
        Ok(PinnedFolios { folios })
    }
}

/// The folios of a shmem file pinned long term by
/// [`ShmemFile::pin_longterm`], in index order; unpinned on drop.
///
/// # Invariants
///
/// Each entry of `folios` is a folio on which we own one `FOLL_PIN`.
pub(crate) struct PinnedFolios {
    folios: PageArray<*mut RawFolio>,
}

// SAFETY: a pin may be dropped from any task.
unsafe impl Send for PinnedFolios {}

impl PinnedFolios {
    /// Whether `pages` (an object's, in index order) are exactly the
    /// pages of the pinned folios: nothing moved them or fetched other
    /// pages in between.
    pub(crate) fn covers(&self, pages: &[PageRef]) -> bool {
        let mut i = 0;
        for &folio in self.folios.iter() {
            // SAFETY: `folio` is valid (pinned, type invariant).
            let nr = unsafe { movgem_folio_nr_pages(folio) } as usize;
            for k in 0..nr {
                let Some(page) = pages.get(i) else {
                    return false;
                };
                // SAFETY: `folio` is valid and `k` below its page count.
                if unsafe { movgem_folio_page(folio, k as c_ulong) } != page.as_ptr() {
                    return false;
                }
                i += 1;
            }
        }
        i == pages.len()
    }
}

impl Drop for PinnedFolios {
    fn drop(&mut self) {
        // SAFETY: we own one pin on each entry by the type invariant.
        unsafe { movgem_unpin_folios(self.folios.as_mut_ptr(), self.folios.len() as c_ulong) }
    }
}

impl Drop for ShmemFile {
    fn drop(&mut self) {
        // SAFETY: we own one reference by the type invariant.
        unsafe { movgem_fput(self.filp.as_ptr()) }
    }
}

/// A kernel mapping (vmap) of a run of pages.
///
/// # Invariants
///
/// `vaddr` came from `vmap()` of `npages` pages, which this owns.
pub(crate) struct Vmap {
    vaddr: NonNull<c_void>,
    npages: usize,
}

// SAFETY: a vmap area may be unmapped from any task.
unsafe impl Send for Vmap {}

impl Vmap {
    /// Maps `pages` contiguously.  The caller must keep the page
    /// references for as long as the mapping exists.
    pub(crate) fn new(pages: &[PageRef]) -> Result<Self> {
        let n = c_uint::try_from(pages.len()).map_err(|_| E2BIG)?;
        // `PageRef` is `repr(transparent)` over a page pointer, so the
        // slice is an array of `struct page *`.
        let ptr = pages.as_ptr().cast::<*mut RawPage>();
        // SAFETY: `ptr` points to `n` valid page pointers, which `vmap()`
        // only reads.
        let vaddr = unsafe { movgem_vmap_pages(ptr, n) };
        // INVARIANT: a non-NULL `vaddr` maps the `n` pages.
        NonNull::new(vaddr)
            .map(|vaddr| Self {
                vaddr,
                npages: pages.len(),
            })
            .ok_or(ENOMEM)
    }

    /// Pages mapped.
    pub(crate) fn npages(&self) -> usize {
        self.npages
    }
}

impl Drop for Vmap {
    fn drop(&mut self) {
        // SAFETY: we own the mapping by the type invariant.
        unsafe { movgem_vunmap(self.vaddr.as_ptr()) }
    }
}

/// One reference on a page: a shmem page of an object, or a page of a
/// userptr range faulted in for one request.
///
/// # Invariants
///
/// `page` is valid and we own one reference to it.
#[repr(transparent)]
pub(crate) struct PageRef {
    page: NonNull<RawPage>,
}

// SAFETY: a page reference may be dropped from any task.
unsafe impl Send for PageRef {}

impl PageRef {
    /// Adopts a reference the caller owns on `page`.
    ///
    /// # Safety
    ///
    /// `page` must be valid and the caller must own one reference to it,
    /// which passes to the new value.
    pub(crate) unsafe fn from_raw(page: NonNull<RawPage>) -> Self {
        // INVARIANT: guaranteed by the caller.
        Self { page }
    }

    /// The page, for comparison only.
    pub(crate) fn as_ptr(&self) -> *mut RawPage {
        self.page.as_ptr()
    }

    /// Physical frame number of the page.
    pub(crate) fn pfn(&self) -> usize {
        // SAFETY: the page is valid by the type invariant.
        unsafe { movgem_page_pfn(self.page.as_ptr()) as usize }
    }

    /// Copies `buf.len()` bytes at `offset` of the page into `buf`.
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) -> Result {
        // SAFETY: the page is valid and `buf` is writable for its length;
        // the shim checks the range against the page.
        kernel::error::to_result(unsafe {
            movgem_page_read(
                self.page.as_ptr(),
                offset,
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        })
    }

    /// Copies `buf` to `offset` of the page and marks it dirty.
    pub(crate) fn write(&self, offset: usize, buf: &[u8]) -> Result {
        // SAFETY: the page is valid and `buf` is readable for its length;
        // the shim checks the range against the page.
        kernel::error::to_result(unsafe {
            movgem_page_write(self.page.as_ptr(), offset, buf.as_ptr().cast(), buf.len())
        })
    }
}

impl Clone for PageRef {
    fn clone(&self) -> Self {
        // SAFETY: the page is valid and we hold a reference, so taking
        // another is allowed.
        unsafe { movgem_page_get(self.page.as_ptr()) };
        // INVARIANT: the reference just taken belongs to the new value.
        Self { page: self.page }
    }
}

impl Drop for PageRef {
    fn drop(&mut self) {
        // SAFETY: we own one reference by the type invariant.
        unsafe { movgem_page_put(self.page.as_ptr()) }
    }
}

/// A per-page array: kvmalloc'ed, since it grows with the object (see
/// `ObjState::pages`).  Dropping it may sleep (`kvfree` of a vmalloc'ed
/// array): never drop one under a spinlock.
pub(crate) struct PageArray<T>(KVVec<T>);

impl<T> Default for PageArray<T> {
    fn default() -> Self {
        Self(KVVec::new())
    }
}

impl<T> PageArray<T> {
    /// An empty array with room for `n` entries.
    pub(crate) fn with_capacity(n: usize) -> Result<Self> {
        Ok(Self(KVVec::with_capacity(n, GFP_KERNEL)?))
    }
}

impl<T> PageArray<T> {
    /// Drops every entry but keeps the allocation, so, unlike dropping
    /// the array, it never frees memory that may need `vfree()`: callable
    /// under a spinlock when dropping each `T` is.
    pub(crate) fn clear(&mut self) {
        let len = self.0.len();
        let entries = core::ptr::slice_from_raw_parts_mut(self.0.as_mut_ptr(), len);
        // SAFETY: 0 is never more than the capacity.  The length is set
        // first, so the entries dropped below are no longer reachable
        // through `self` and each is dropped exactly once.
        unsafe { self.0.set_len(0) };
        // SAFETY: `entries` are the `len` initialised entries the vector
        // held, which nothing else owns now (see above).
        unsafe { core::ptr::drop_in_place(entries) };
    }
}

impl<T: Clone> PageArray<T> {
    /// `n` copies of `value`.
    pub(crate) fn from_elem(value: T, n: usize) -> Result<Self> {
        Ok(Self(KVVec::from_elem(value, n, GFP_KERNEL)?))
    }
}

impl<T> core::ops::Deref for PageArray<T> {
    type Target = KVVec<T>;

    fn deref(&self) -> &KVVec<T> {
        &self.0
    }
}

impl<T> core::ops::DerefMut for PageArray<T> {
    fn deref_mut(&mut self) -> &mut KVVec<T> {
        &mut self.0
    }
}

impl<T> IntoIterator for PageArray<T> {
    type Item = T;
    type IntoIter = <KVVec<T> as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// How [`ShmemFile::page_with`] may allocate a missing page; the values
/// are the shim's `MOVGEM_PAGE_*`.
#[derive(Clone, Copy)]
#[repr(i32)]
pub(crate) enum PageAlloc {
    /// The mapping's flags: reclaim, and in the end the OOM killer.
    Default = 0,
    /// Give up early (`__GFP_NORETRY`): the caller purges its own
    /// objects and tries again.
    Light = 1,
    /// Reclaim hard, but fail (`ENOMEM`) instead of invoking the OOM
    /// killer (`__GFP_RETRY_MAYFAIL`).
    MayFail = 2,
    /// No direct reclaim (under `struct_mutex`): a page still in the page
    /// cache, or free memory, else `ENOMEM` at once.
    Cached = 3,
}
