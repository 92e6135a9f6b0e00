// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the shmem shims in `rust/helpers/shmem.c`.

use core::ptr::NonNull;
use kernel::ffi::{c_char, c_int, c_ulong, c_void};

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
    fn movgem_folio_put(folio: *mut RawFolio);
    fn movgem_folio_pfn(folio: *mut RawFolio) -> c_ulong;
    fn movgem_folio_read(folio: *mut RawFolio, buf: *mut c_void, len: usize) -> c_int;
    fn movgem_folio_write(folio: *mut RawFolio, buf: *const c_void, len: usize) -> c_int;
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

/// One reference on a shmem folio (order 0: kernel shmem files never get
/// huge folios unless the administrator forces `shmem_enabled`).
///
/// # Invariants
///
/// `folio` is valid and we own one reference to it.
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

    /// Copies the first `buf.len()` bytes of the folio into `buf`.
    pub(crate) fn read(&self, buf: &mut [u8]) -> Result {
        // SAFETY: the folio is valid and `buf` is writable for its length.
        kernel::error::to_result(unsafe {
            movgem_folio_read(self.folio.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        })
    }

    /// Copies `buf` to the start of the folio and marks it dirty.
    pub(crate) fn write(&self, buf: &[u8]) -> Result {
        // SAFETY: the folio is valid and `buf` is readable for its length.
        kernel::error::to_result(unsafe {
            movgem_folio_write(self.folio.as_ptr(), buf.as_ptr().cast(), buf.len())
        })
    }
}

impl Drop for FolioRef {
    fn drop(&mut self) {
        // SAFETY: we own one reference by the type invariant.
        unsafe { movgem_folio_put(self.folio.as_ptr()) }
    }
}
