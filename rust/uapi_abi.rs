// SPDX-License-Identifier: GPL-2.0

//! The layout of `include/uapi/movgem.h` in Rust, core only: the module
//! (`rust/uapi.rs`) and the tools (`tools/uapi`, which checks every size,
//! offset and ioctl number against the C header) include this one file.

#![allow(missing_docs)]

use core::mem::size_of;

/// Type byte of every movgem ioctl.
pub const IOCTL_BASE: u32 = b'M' as u32;
/// Largest object, in bytes.
pub const MAX_OBJECT_SIZE: u64 = 1 << 30;
/// Most objects one execbuf may reference.
pub const MAX_EXEC_OBJECTS: u32 = 256;

pub const DOMAIN_CPU: u32 = 1 << 0;
pub const DOMAIN_GTT: u32 = 1 << 1;
pub const MADV_WILLNEED: u32 = 0;
pub const MADV_DONTNEED: u32 = 1;
pub const EXEC_OBJECT_WRITE: u32 = 1 << 0;
pub const OP_NOP: u32 = 0;
pub const OP_FILL: u32 = 1;
pub const OP_CHECK: u32 = 2;
pub const EXEC_HANG: u32 = 1 << 0;
pub const DROP_UNBOUND: u32 = 1 << 0;
pub const DROP_BOUND: u32 = 1 << 1;
pub const DROP_ACTIVE: u32 = 1 << 2;
pub const DROP_PURGE: u32 = 1 << 3;
pub const DROP_WRITEBACK: u32 = 1 << 4;
pub const DROP_ALL: u32 = 0x1f;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Create {
    pub size: u64,
    pub handle: u32,
    pub flags: u32,
}

/// `CREATE_HUGE`: on a private `huge=within_size` tmpfs mount.
pub const CREATE_HUGE: u32 = 1 << 0;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Close {
    pub handle: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Rw {
    pub handle: u32,
    pub pad: u32,
    pub offset: u64,
    pub size: u64,
    pub data_ptr: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Mmap {
    pub handle: u32,
    pub pad: u32,
    pub offset: u64,
    pub size: u64,
    pub addr_ptr: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SetDomain {
    pub handle: u32,
    pub read_domains: u32,
    pub write_domain: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Madvise {
    pub handle: u32,
    pub madv: u32,
    pub retained: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecObject {
    pub handle: u32,
    pub flags: u32,
    pub offset: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Execbuf {
    pub objects_ptr: u64,
    pub count: u32,
    pub flags: u32,
    pub duration_ns: u64,
    pub op: u32,
    pub value: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Busy {
    pub handle: u32,
    pub busy: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Wait {
    pub handle: u32,
    pub flags: u32,
    pub timeout_ns: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Pin {
    pub handle: u32,
    pub pad: u32,
    pub offset: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Vmap {
    pub handle: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Userptr {
    pub user_ptr: u64,
    pub user_size: u64,
    pub flags: u32,
    pub handle: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Info {
    pub objects: u64,
    pub object_bytes: u64,
    pub bound_objects: u64,
    pub active_objects: u64,
    pub gtt_size: u64,
    pub gtt_used: u64,
    pub cached_vmaps: u64,
    pub runtime_suspended: u32,
    /// Batches submitted and not yet retired.
    pub requests: u32,
}

/// `_IOC()` of `include/uapi/asm-generic/ioctl.h`, for our type byte.
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (IOCTL_BASE << 8) | nr
}
const fn iow<T>(nr: u32) -> u32 {
    ioc(1, nr, size_of::<T>())
}
const fn ior<T>(nr: u32) -> u32 {
    ioc(2, nr, size_of::<T>())
}
const fn iowr<T>(nr: u32) -> u32 {
    ioc(3, nr, size_of::<T>())
}

pub const IOCTL_CREATE: u32 = iowr::<Create>(0x00);
pub const IOCTL_CLOSE: u32 = iow::<Close>(0x01);
pub const IOCTL_PWRITE: u32 = iow::<Rw>(0x02);
pub const IOCTL_PREAD: u32 = iow::<Rw>(0x03);
pub const IOCTL_MMAP: u32 = iowr::<Mmap>(0x04);
pub const IOCTL_SET_DOMAIN: u32 = iow::<SetDomain>(0x05);
pub const IOCTL_MADVISE: u32 = iowr::<Madvise>(0x06);
pub const IOCTL_EXECBUF: u32 = iowr::<Execbuf>(0x07);
pub const IOCTL_BUSY: u32 = iowr::<Busy>(0x08);
pub const IOCTL_WAIT: u32 = iowr::<Wait>(0x09);
pub const IOCTL_PIN: u32 = iowr::<Pin>(0x0a);
pub const IOCTL_UNPIN: u32 = iow::<Pin>(0x0b);
pub const IOCTL_VMAP: u32 = iow::<Vmap>(0x0c);
pub const IOCTL_VUNMAP: u32 = iow::<Vmap>(0x0d);
pub const IOCTL_GET_INFO: u32 = ior::<Info>(0x0e);
pub const IOCTL_USERPTR: u32 = iowr::<Userptr>(0x0f);

// No padding anywhere: the module copies these to and from user memory
// as bytes (`rust/uapi.rs`).
const _: () =
    assert!(size_of::<Create>() == 16 && size_of::<Rw>() == 32 && size_of::<Execbuf>() == 32);
const _: () =
    assert!(size_of::<Info>() == 64 && size_of::<Wait>() == 16 && size_of::<Mmap>() == 32);
const _: () = assert!(size_of::<Userptr>() == 24);
