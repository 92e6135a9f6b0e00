// SPDX-License-Identifier: GPL-2.0

//! Rust mirror of `include/uapi/movgem.h`.
//!
//! The host test `tools/uapi-check` compiles the C header and compares
//! every size, offset and ioctl number with the values this file gives
//! (`tools/movgem-tests` includes it too).

#![allow(missing_docs)]

use core::mem::size_of;

use kernel::ioctl::{_IOR, _IOW, _IOWR};
use kernel::types::{AsBytes, FromBytes};

/// Type byte of every movgem ioctl.
pub(crate) const IOCTL_BASE: u32 = b'M' as u32;
/// Largest object, in bytes.
pub(crate) const MAX_OBJECT_SIZE: u64 = 1 << 30;
/// Most objects one execbuf may reference.
pub(crate) const MAX_EXEC_OBJECTS: u32 = 256;

pub(crate) const DOMAIN_CPU: u32 = 1 << 0;
pub(crate) const DOMAIN_GTT: u32 = 1 << 1;
pub(crate) const MADV_WILLNEED: u32 = 0;
pub(crate) const MADV_DONTNEED: u32 = 1;
pub(crate) const EXEC_OBJECT_WRITE: u32 = 1 << 0;
pub(crate) const OP_NOP: u32 = 0;
pub(crate) const OP_FILL: u32 = 1;
pub(crate) const OP_CHECK: u32 = 2;
pub(crate) const EXEC_HANG: u32 = 1 << 0;
pub(crate) const DROP_UNBOUND: u32 = 1 << 0;
pub(crate) const DROP_BOUND: u32 = 1 << 1;
pub(crate) const DROP_ACTIVE: u32 = 1 << 2;
pub(crate) const DROP_PURGE: u32 = 1 << 3;
pub(crate) const DROP_WRITEBACK: u32 = 1 << 4;
pub(crate) const DROP_ALL: u32 = 0x1f;

macro_rules! uapi_struct {
    ($(#[$m:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        pub(crate) struct $name {
            $(pub(crate) $field: $ty,)*
        }

        // SAFETY: `repr(C)` with only integer fields laid out without
        // padding (checked against the C header by `tools/uapi-check`):
        // every bit pattern is valid.
        unsafe impl FromBytes for $name {}
        // SAFETY: as above, there are no padding bytes to leak.
        unsafe impl AsBytes for $name {}
    };
}

uapi_struct!(Create {
    size: u64,
    handle: u32,
    pad: u32
});
uapi_struct!(Close {
    handle: u32,
    pad: u32
});
uapi_struct!(Rw {
    handle: u32,
    pad: u32,
    offset: u64,
    size: u64,
    data_ptr: u64
});
uapi_struct!(Mmap {
    handle: u32,
    pad: u32,
    offset: u64,
    size: u64,
    addr_ptr: u64
});
uapi_struct!(SetDomain {
    handle: u32,
    read_domains: u32,
    write_domain: u32,
    pad: u32
});
uapi_struct!(Madvise {
    handle: u32,
    madv: u32,
    retained: u32,
    pad: u32
});
uapi_struct!(ExecObject {
    handle: u32,
    flags: u32,
    offset: u64
});
uapi_struct!(Execbuf {
    objects_ptr: u64,
    count: u32,
    flags: u32,
    duration_ns: u64,
    op: u32,
    value: u32
});
uapi_struct!(Busy {
    handle: u32,
    busy: u32
});
uapi_struct!(Wait {
    handle: u32,
    flags: u32,
    timeout_ns: i64
});
uapi_struct!(Pin {
    handle: u32,
    pad: u32,
    offset: u64
});
uapi_struct!(Vmap {
    handle: u32,
    pad: u32
});
uapi_struct!(Userptr {
    user_ptr: u64,
    user_size: u64,
    flags: u32,
    handle: u32,
});
uapi_struct!(Info {
    objects: u64,
    object_bytes: u64,
    bound_objects: u64,
    active_objects: u64,
    gtt_size: u64,
    gtt_used: u64,
    cached_vmaps: u64,
    runtime_suspended: u32,
    requests: u32,
});

pub(crate) const IOCTL_CREATE: u32 = _IOWR::<Create>(IOCTL_BASE, 0x00);
pub(crate) const IOCTL_CLOSE: u32 = _IOW::<Close>(IOCTL_BASE, 0x01);
pub(crate) const IOCTL_PWRITE: u32 = _IOW::<Rw>(IOCTL_BASE, 0x02);
pub(crate) const IOCTL_PREAD: u32 = _IOW::<Rw>(IOCTL_BASE, 0x03);
pub(crate) const IOCTL_MMAP: u32 = _IOWR::<Mmap>(IOCTL_BASE, 0x04);
pub(crate) const IOCTL_SET_DOMAIN: u32 = _IOW::<SetDomain>(IOCTL_BASE, 0x05);
pub(crate) const IOCTL_MADVISE: u32 = _IOWR::<Madvise>(IOCTL_BASE, 0x06);
pub(crate) const IOCTL_EXECBUF: u32 = _IOWR::<Execbuf>(IOCTL_BASE, 0x07);
pub(crate) const IOCTL_BUSY: u32 = _IOWR::<Busy>(IOCTL_BASE, 0x08);
pub(crate) const IOCTL_WAIT: u32 = _IOWR::<Wait>(IOCTL_BASE, 0x09);
pub(crate) const IOCTL_PIN: u32 = _IOWR::<Pin>(IOCTL_BASE, 0x0a);
pub(crate) const IOCTL_UNPIN: u32 = _IOW::<Pin>(IOCTL_BASE, 0x0b);
pub(crate) const IOCTL_VMAP: u32 = _IOW::<Vmap>(IOCTL_BASE, 0x0c);
pub(crate) const IOCTL_VUNMAP: u32 = _IOW::<Vmap>(IOCTL_BASE, 0x0d);
pub(crate) const IOCTL_GET_INFO: u32 = _IOR::<Info>(IOCTL_BASE, 0x0e);
pub(crate) const IOCTL_USERPTR: u32 = _IOWR::<Userptr>(IOCTL_BASE, 0x0f);

const _: () =
    assert!(size_of::<Create>() == 16 && size_of::<Rw>() == 32 && size_of::<Execbuf>() == 32);
const _: () =
    assert!(size_of::<Info>() == 64 && size_of::<Wait>() == 16 && size_of::<Mmap>() == 32);
const _: () = assert!(size_of::<Userptr>() == 24);
