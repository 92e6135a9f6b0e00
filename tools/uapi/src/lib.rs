// SPDX-License-Identifier: GPL-2.0

//! Userspace view of `include/uapi/movgem.h`: the structures and ioctl
//! numbers (the module's own `rust/uapi_abi.rs`, included as is), and thin
//! wrappers that return the errno on failure.
//!
//! `tests/header.rs` compiles the C header and checks every size, offset
//! and ioctl number of that file against it.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};

#[path = "../../../rust/uapi_abi.rs"]
mod abi;
pub use abi::*;

/// The debugfs file the `DROP_*` bits are written to.
pub const DROP_CACHES_PATH: &str = "/sys/kernel/debug/movgem/drop_caches";

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
        self.create_with(size, 0)
    }

    /// CREATE with `flags` (`CREATE_HUGE`).
    pub fn create_with(&self, size: u64, flags: u32) -> Res<u32> {
        let mut a = Create {
            size,
            flags,
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
