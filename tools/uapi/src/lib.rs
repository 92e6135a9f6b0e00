// SPDX-License-Identifier: GPL-2.0

//! Userspace view of `include/uapi/movgem.h`: the structures, the ioctl
//! numbers, and thin wrappers that return the errno on failure.
//!
//! `tests/header.rs` compiles the C header and checks every size, offset
//! and ioctl number here against it.

use std::fs::{File, OpenOptions};
use std::mem::size_of;
use std::os::fd::{AsRawFd, RawFd};

pub const IOCTL_BASE: u32 = b'M' as u32;
pub const MAX_OBJECT_SIZE: u64 = 1 << 30;
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
/// The debugfs file the `DROP_*` bits are written to.
pub const DROP_CACHES_PATH: &str = "/sys/kernel/debug/movgem/drop_caches";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Create {
    pub size: u64,
    pub handle: u32,
    pub pad: u32,
}

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

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Userptr {
    pub user_ptr: u64,
    pub user_size: u64,
    pub flags: u32,
    pub handle: u32,
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

/// An open `/dev/movgem`.
pub struct Device {
    file: File,
}

/// Result of an ioctl: the errno on failure.
pub type Res<T> = Result<T, i32>;

impl Device {
    pub fn open() -> Res<Self> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/movgem")
            .map(|file| Self { file })
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Any ioctl with any argument: what the fuzzers and error tests use.
    ///
    /// # Safety
    ///
    /// `arg` must be what `cmd` expects, or the kernel must reject it.
    pub unsafe fn raw(&self, cmd: u64, arg: *mut libc::c_void) -> Res<i32> {
        // SAFETY: forwarded to the caller.
        let r = unsafe { libc::ioctl(self.fd(), cmd as _, arg) };
        if r < 0 {
            Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO))
        } else {
            Ok(r)
        }
    }

    /// An ioctl on a structure of the right type.
    pub fn call<T>(&self, cmd: u32, arg: &mut T) -> Res<()> {
        // SAFETY: `arg` is a valid structure of the type `cmd` encodes.
        unsafe { self.raw(u64::from(cmd), (arg as *mut T).cast()) }.map(|_| ())
    }

    pub fn create(&self, size: u64) -> Res<u32> {
        let mut a = Create {
            size,
            ..Default::default()
        };
        self.call(IOCTL_CREATE, &mut a).map(|()| a.handle)
    }

    pub fn close(&self, handle: u32) -> Res<()> {
        self.call(IOCTL_CLOSE, &mut Close { handle, pad: 0 })
    }

    pub fn pwrite(&self, handle: u32, offset: u64, data: &[u8]) -> Res<()> {
        let mut a = Rw {
            handle,
            pad: 0,
            offset,
            size: data.len() as u64,
            data_ptr: data.as_ptr() as u64,
        };
        self.call(IOCTL_PWRITE, &mut a)
    }

    pub fn pread(&self, handle: u32, offset: u64, data: &mut [u8]) -> Res<()> {
        let mut a = Rw {
            handle,
            pad: 0,
            offset,
            size: data.len() as u64,
            data_ptr: data.as_mut_ptr() as u64,
        };
        self.call(IOCTL_PREAD, &mut a)
    }

    /// Maps `size` bytes from `offset`; returns the address.
    pub fn mmap(&self, handle: u32, offset: u64, size: u64) -> Res<u64> {
        let mut a = Mmap {
            handle,
            pad: 0,
            offset,
            size,
            addr_ptr: 0,
        };
        self.call(IOCTL_MMAP, &mut a).map(|()| a.addr_ptr)
    }

    pub fn set_domain(&self, handle: u32, read_domains: u32, write_domain: u32) -> Res<()> {
        self.call(
            IOCTL_SET_DOMAIN,
            &mut SetDomain {
                handle,
                read_domains,
                write_domain,
                pad: 0,
            },
        )
    }

    /// Returns `retained`.
    pub fn madvise(&self, handle: u32, madv: u32) -> Res<bool> {
        let mut a = Madvise {
            handle,
            madv,
            ..Default::default()
        };
        self.call(IOCTL_MADVISE, &mut a).map(|()| a.retained != 0)
    }

    /// Submits a batch over `objects` (handle, write); returns the GTT offsets.
    pub fn execbuf(
        &self,
        objects: &[(u32, bool)],
        op: u32,
        value: u32,
        duration_ns: u64,
        flags: u32,
    ) -> Res<Vec<u64>> {
        let mut list: Vec<ExecObject> = objects
            .iter()
            .map(|&(handle, write)| ExecObject {
                handle,
                flags: if write { EXEC_OBJECT_WRITE } else { 0 },
                offset: 0,
            })
            .collect();
        let mut a = Execbuf {
            objects_ptr: list.as_mut_ptr() as u64,
            count: list.len() as u32,
            flags,
            duration_ns,
            op,
            value,
        };
        self.call(IOCTL_EXECBUF, &mut a)
            .map(|()| list.iter().map(|e| e.offset).collect())
    }

    pub fn busy(&self, handle: u32) -> Res<bool> {
        let mut a = Busy { handle, busy: 0 };
        self.call(IOCTL_BUSY, &mut a).map(|()| a.busy != 0)
    }

    /// Waits; returns the time left.
    pub fn wait(&self, handle: u32, timeout_ns: i64) -> Res<i64> {
        let mut a = Wait {
            handle,
            flags: 0,
            timeout_ns,
        };
        self.call(IOCTL_WAIT, &mut a).map(|()| a.timeout_ns)
    }

    pub fn pin(&self, handle: u32) -> Res<u64> {
        let mut a = Pin {
            handle,
            ..Default::default()
        };
        self.call(IOCTL_PIN, &mut a).map(|()| a.offset)
    }

    pub fn unpin(&self, handle: u32) -> Res<()> {
        self.call(
            IOCTL_UNPIN,
            &mut Pin {
                handle,
                ..Default::default()
            },
        )
    }

    pub fn vmap(&self, handle: u32) -> Res<()> {
        self.call(IOCTL_VMAP, &mut Vmap { handle, pad: 0 })
    }

    pub fn vunmap(&self, handle: u32) -> Res<()> {
        self.call(IOCTL_VUNMAP, &mut Vmap { handle, pad: 0 })
    }

    /// Wraps `size` bytes of this process's memory at `ptr`; returns the handle.
    pub fn userptr(&self, ptr: u64, size: u64) -> Res<u32> {
        let mut a = Userptr {
            user_ptr: ptr,
            user_size: size,
            ..Default::default()
        };
        self.call(IOCTL_USERPTR, &mut a).map(|()| a.handle)
    }

    pub fn info(&self) -> Res<Info> {
        let mut a = Info::default();
        self.call(IOCTL_GET_INFO, &mut a).map(|()| a)
    }
}
