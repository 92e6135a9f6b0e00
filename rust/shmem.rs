// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the shmem shims in `rust/helpers/shmem.c`.

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

/// C `struct folio`, only ever behind a pointer.
#[repr(C)]
pub(crate) struct RawFolio {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Opaque storage for the C `struct shmem_dev_info`.
#[repr(C, align(8))]
pub(crate) struct ShmemDevInfo {
    _storage: [u8; SHMEM_DEV_INFO_SIZE],
}

extern "C" {
    fn movgem_shmem_create(name: *const c_char, size: usize) -> *mut RawFile;
    fn movgem_shmem_get_folio(filp: *mut RawFile, index: c_ulong) -> *mut RawFolio;
    fn movgem_folio_get(folio: *mut RawFolio);
    fn movgem_folio_put(folio: *mut RawFolio);
    fn movgem_vm_mmap(filp: *mut RawFile, offset: u64, size: u64) -> c_ulong;
    fn movgem_vmap_folios(folios: *const *mut RawFolio, n: c_uint) -> *mut c_void;
    fn movgem_vunmap(vaddr: *mut c_void);
    fn movgem_folio_pfn(folio: *mut RawFolio) -> c_ulong;
    fn movgem_folio_read(
        folio: *mut RawFolio,
        offset: usize,
        buf: *mut c_void,
        len: usize,
    ) -> c_int;
    fn movgem_folio_write(
        folio: *mut RawFolio,
        offset: usize,
        buf: *const c_void,
        len: usize,
    ) -> c_int;
    fn movgem_shmem_gfp_mask(filp: *mut RawFile) -> c_ulong;
    fn movgem_gfp_is_movable(gfp: c_ulong) -> bool;
    fn movgem_shmem_register(filp: *mut RawFile, dev_info: *mut ShmemDevInfo) -> c_int;
    fn movgem_shmem_registered(filp: *mut RawFile) -> *mut ShmemDevInfo;
    fn movgem_shmem_truncate(filp: *mut RawFile);
    fn movgem_fput(filp: *mut RawFile);
}

/// A kernel-internal shmem file with movable folios.
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
    pub(crate) fn new(name: &CStr, size: usize) -> Result<Self> {
        // SAFETY: `name` is NUL-terminated and outlives the call.
        let filp = from_err_ptr(unsafe { movgem_shmem_create(name.as_char_ptr(), size) })?;
        // INVARIANT: `from_err_ptr` succeeded, so `filp` is a valid file we own.
        NonNull::new(filp).map(|filp| Self { filp }).ok_or(ENOMEM)
    }

    /// A reference on the folio at `index`, allocated if needed.
    pub(crate) fn folio(&self, index: usize) -> Result<FolioRef> {
        // SAFETY: `self.filp` is valid by the type invariant.
        let folio =
            from_err_ptr(unsafe { movgem_shmem_get_folio(self.filp.as_ptr(), index as c_ulong) })?;
        // INVARIANT: shmem returned the folio with a reference for us.
        NonNull::new(folio)
            .map(|folio| FolioRef { folio })
            .ok_or(ENOMEM)
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

    /// Frees every page of the file.  Takes each folio lock, so no
    /// migrate callback on this file is running once this returns.
    pub(crate) fn truncate(&self) {
        // SAFETY: `self.filp` is valid by the type invariant.
        unsafe { movgem_shmem_truncate(self.filp.as_ptr()) }
    }
}

impl Drop for ShmemFile {
    fn drop(&mut self) {
        // SAFETY: we own one reference by the type invariant.
        unsafe { movgem_fput(self.filp.as_ptr()) }
    }
}

/// A kernel mapping (vmap) of a run of folios.
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
    /// Maps `folios` (order 0) contiguously.  The caller must keep the
    /// folio references for as long as the mapping exists.
    pub(crate) fn new(folios: &[FolioRef]) -> Result<Self> {
        let n = c_uint::try_from(folios.len()).map_err(|_| E2BIG)?;
        // `FolioRef` is `repr(transparent)` over a folio pointer, so the
        // slice is an array of `struct folio *`.
        let ptr = folios.as_ptr().cast::<*mut RawFolio>();
        // SAFETY: `ptr` points to `n` valid folio pointers.
        let vaddr = unsafe { movgem_vmap_folios(ptr, n) };
        // INVARIANT: a non-NULL `vaddr` maps the `n` pages.
        NonNull::new(vaddr)
            .map(|vaddr| Self {
                vaddr,
                npages: folios.len(),
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

/// One reference on a shmem folio (order 0: kernel shmem files never get
/// huge folios unless the administrator forces `shmem_enabled`).
///
/// # Invariants
///
/// `folio` is valid and we own one reference to it.
#[repr(transparent)]
pub(crate) struct FolioRef {
    folio: NonNull<RawFolio>,
}

// SAFETY: a folio reference may be dropped from any task.
unsafe impl Send for FolioRef {}

impl FolioRef {
    /// Physical frame number of the folio.
    pub(crate) fn pfn(&self) -> usize {
        // SAFETY: the folio is valid by the type invariant.
        unsafe { movgem_folio_pfn(self.folio.as_ptr()) as usize }
    }

    /// Copies `buf.len()` bytes at `offset` of the folio into `buf`.
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) -> Result {
        // SAFETY: the folio is valid and `buf` is writable for its length;
        // the shim checks the range against the folio.
        kernel::error::to_result(unsafe {
            movgem_folio_read(
                self.folio.as_ptr(),
                offset,
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        })
    }

    /// Copies `buf` to `offset` of the folio and marks it dirty.
    pub(crate) fn write(&self, offset: usize, buf: &[u8]) -> Result {
        // SAFETY: the folio is valid and `buf` is readable for its length;
        // the shim checks the range against the folio.
        kernel::error::to_result(unsafe {
            movgem_folio_write(self.folio.as_ptr(), offset, buf.as_ptr().cast(), buf.len())
        })
    }
}

impl Clone for FolioRef {
    fn clone(&self) -> Self {
        // SAFETY: the folio is valid and we hold a reference, so taking
        // another is allowed.
        unsafe { movgem_folio_get(self.folio.as_ptr()) };
        // INVARIANT: the reference just taken belongs to the new value.
        Self { folio: self.folio }
    }
}

impl Drop for FolioRef {
    fn drop(&mut self) {
        // SAFETY: we own one reference by the type invariant.
        unsafe { movgem_folio_put(self.folio.as_ptr()) }
    }
}
