// SPDX-License-Identifier: GPL-2.0

//! What one worker pass does.  Every function leaves behind an object of
//! `alloc` bytes whose pages it made the driver allocate, marked
//! DONTNEED and still open: only the shrinker can give that memory back.
//! The background kinds (userptr, leak) hold user memory instead, which
//! [`Held`] keeps until the end of the worker's iteration (a leak
//! worker's with `--leak-forever`: for the worker's whole life, as igt's
//! leak never unmaps; the worker in main.rs picks the `Held`).

use movgem_uapi::{
    Device, DOMAIN_CPU, DOMAIN_GTT, EXEC_HANG, MADV_DONTNEED, MAX_EXEC_OBJECTS, OP_FILL, OP_NOP,
};

use crate::plan::Kind;

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;

/// Why a worker stopped: what failed, and the errno if it was a call.
#[derive(Debug)]
pub struct Failure {
    /// The call's errno; 0 for a failure that was no system call.
    pub errno: i32,
    pub text: String,
}

impl From<String> for Failure {
    fn from(text: String) -> Self {
        Self { errno: 0, text }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Names a failed call and its errno.
pub fn failed(call: &str, errno: i32) -> Failure {
    // SAFETY: strerror returns a valid string for any number; the
    // children are single-threaded, so its buffer is not shared.
    let text = unsafe { std::ffi::CStr::from_ptr(libc::strerror(errno)) };
    Failure {
        errno,
        text: format!("{call} failed: errno {errno} ({})", text.to_string_lossy()),
    }
}

/// Adds the call's name to an ioctl error.
trait Call<T> {
    fn call(self, what: &str) -> Result<T, Failure>;
}

impl<T> Call<T> for Result<T, i32> {
    fn call(self, what: &str) -> Result<T, Failure> {
        self.map_err(|e| failed(what, e))
    }
}

/// User mappings made during one iteration (with `--leak-forever`, a leak
/// worker's whole life); unmapped on drop.
#[derive(Default)]
pub struct Held {
    maps: Vec<(usize, usize)>,
}

impl Held {
    fn map(&mut self, size: u64, flags: i32) -> Result<*mut u8, Failure> {
        // SAFETY: a new anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(failed(
                &format!("mmap({size} bytes)"),
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        self.maps.push((p as usize, size as usize));
        Ok(p.cast())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for &(addr, len) in &self.maps {
            // SAFETY: a mapping this worker made and nothing else refers to.
            unsafe { libc::munmap(addr as *mut libc::c_void, len) };
        }
    }
}

/// Writes one dword into every page of `len` bytes at `base`.
///
/// # Safety
///
/// `base..base + len` must be a writable mapping.
unsafe fn touch(base: *mut u8, len: u64, value: u32) {
    let mut off = 0;
    while off < len {
        // SAFETY: inside the mapping the caller vouches for; page
        // offsets are dword aligned.
        unsafe { base.add(off as usize).cast::<u32>().write_volatile(value) };
        off += PAGE;
    }
}

/// One pass of `kind` on `dev` with passes of `alloc` bytes.
pub fn pass(kind: Kind, dev: &Device, alloc: u64, held: &mut Held) -> Result<(), Failure> {
    match kind {
        Kind::Leak => leak(alloc, held),
        Kind::Userptr => userptr(dev, alloc, held, 0),
        Kind::UserptrDirty => userptr(dev, alloc, held, DOMAIN_GTT),
        Kind::Func(0) => get_pages(dev, alloc, 0),
        Kind::Func(1) => get_pages(dev, alloc, DOMAIN_GTT),
        Kind::Func(2) => pwrite(dev, alloc),
        Kind::Func(3) => pread(dev, alloc),
        Kind::Func(4) => mmap(dev, alloc, DOMAIN_GTT),
        Kind::Func(5) => mmap(dev, alloc, DOMAIN_CPU),
        Kind::Func(6) => execbuf1(dev, alloc),
        Kind::Func(7) => execbuf_n(dev, alloc, Batch::Nop),
        Kind::Func(8) => execbuf_n(dev, alloc, Batch::FillNewest),
        Kind::Func(9) => execbuf_n(dev, alloc, Batch::NopThenHang),
        Kind::Func(f) => Err(format!("no function {f}").into()),
    }
}

fn dontneed(dev: &Device, handle: u32) -> Result<(), Failure> {
    // `retained` may already be false if the shrinker was quick; either
    // way the object stays open.
    dev.madvise(handle, MADV_DONTNEED)
        .call("MADVISE(DONTNEED)")
        .map(|_| ())
}

/// get-pages(-dirty): SET_DOMAIN makes the driver fetch every page.
fn get_pages(dev: &Device, alloc: u64, write: u32) -> Result<(), Failure> {
    let h = dev.create(alloc).call("CREATE")?;
    dev.set_domain(h, DOMAIN_GTT, write).call("SET_DOMAIN")?;
    dontneed(dev, h)
}

/// One 4-byte write into every page, at an offset that moves within the page.
fn pwrite(dev: &Device, alloc: u64) -> Result<(), Failure> {
    let h = dev.create(alloc).call("CREATE")?;
    for (i, page) in (0..alloc).step_by(PAGE as usize).enumerate() {
        let off = page + (i as u64 * 4) % PAGE;
        dev.pwrite(h, off, &(i as u32).to_le_bytes())
            .call("PWRITE")?;
    }
    dontneed(dev, h)
}

/// One 4-byte read from every page, at an offset that moves within the page.
fn pread(dev: &Device, alloc: u64) -> Result<(), Failure> {
    let h = dev.create(alloc).call("CREATE")?;
    let mut buf = [0u8; 4];
    for (i, page) in (0..alloc).step_by(PAGE as usize).enumerate() {
        let off = page + (i as u64 * 4) % PAGE;
        dev.pread(h, off, &mut buf).call("PREAD")?;
    }
    dontneed(dev, h)
}

/// mmap-gtt / mmap-cpu.  i915 maps the first through the aperture and
/// the second through the shmem pages; our MMAP has only one kind, a
/// shared CPU mapping of the object's shmem file, so the two differ only
/// in the domain set first.
fn mmap(dev: &Device, alloc: u64, domain: u32) -> Result<(), Failure> {
    let h = dev.create(alloc).call("CREATE")?;
    dev.set_domain(h, domain, domain).call("SET_DOMAIN")?;
    let addr = dev.mmap(h, 0, alloc).call("MMAP")?;
    // SAFETY: MMAP returned a writable shared mapping of `alloc` bytes.
    unsafe { touch(addr as *mut u8, alloc, 0x5a5a_5a5a) };
    // SAFETY: the mapping MMAP made; nothing else refers to it.
    if unsafe { libc::munmap(addr as *mut libc::c_void, alloc as usize) } != 0 {
        return Err(failed(
            "munmap",
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    dontneed(dev, h)
}

/// The object is its own batch: one dword written, then executed alone,
/// which binds it and so fetches every page.
fn execbuf1(dev: &Device, alloc: u64) -> Result<(), Failure> {
    let h = dev.create(alloc).call("CREATE")?;
    dev.pwrite(h, 0, &0u32.to_le_bytes()).call("PWRITE")?;
    dev.execbuf(&[(h, false)], OP_NOP, 0, 0, 0)
        .call("EXECBUF")?;
    dontneed(dev, h)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// execbufN: read-only NOPs.
    Nop,
    /// execbufX: the newest object is written by a FILL.
    FillNewest,
    /// hang: execbufN, then a batch that hangs until the module resets it.
    NopThenHang,
}

/// execbufN / execbufX / hang: `alloc` in 1 MiB objects, each execbuf
/// taking every object made so far plus a 4 KiB batch.
fn execbuf_n(dev: &Device, alloc: u64, kind: Batch) -> Result<(), Failure> {
    let count = (alloc / MIB).clamp(1, u64::from(MAX_EXEC_OBJECTS) - 1) as usize;
    let batch = dev.create(PAGE).call("CREATE(batch)")?;
    dev.pwrite(batch, 0, &0u32.to_le_bytes())
        .call("PWRITE(batch)")?;
    let mut objs: Vec<u32> = Vec::with_capacity(count);
    let mut list: Vec<(u32, bool)> = Vec::with_capacity(count + 1);
    let op = if kind == Batch::FillNewest {
        OP_FILL
    } else {
        OP_NOP
    };
    for i in 1..=count {
        objs.push(dev.create(MIB).call("CREATE")?);
        list.clear();
        for (k, &h) in objs.iter().enumerate().rev().take(i) {
            list.push((h, kind == Batch::FillNewest && k + 1 == objs.len()));
        }
        list.push((batch, false));
        dev.execbuf(&list, op, i as u32, 0, 0)
            .call(&format!("EXECBUF({} objects)", list.len()))?;
    }
    if kind == Batch::NopThenHang {
        let h = dev.create(PAGE).call("CREATE(hang)")?;
        dev.execbuf(&[(h, false)], OP_NOP, 0, 0, EXEC_HANG)
            .call("EXECBUF(HANG)")?;
        dev.close(h).call("CLOSE(hang)")?;
    }
    for h in objs.into_iter().chain([batch]) {
        dontneed(dev, h)?;
    }
    Ok(())
}

/// Background: `alloc` bytes of this process's shared anonymous memory
/// wrapped as a USERPTR object, whose pages SET_DOMAIN faults in.  The
/// object is not marked DONTNEED (it is user memory); the mapping lives
/// until the end of the iteration.
fn userptr(dev: &Device, alloc: u64, held: &mut Held, write: u32) -> Result<(), Failure> {
    let ptr = held.map(alloc, libc::MAP_SHARED)?;
    let h = dev.userptr(ptr as u64, alloc).call("USERPTR")?;
    dev.set_domain(h, DOMAIN_GTT, write)
        .call("SET_DOMAIN(userptr)")
}

/// Background for -oom: populated private anonymous memory that only
/// swap can take away, held as long as `held` lives: until the end of the
/// iteration, or with `--leak-forever` until the worker exits or is
/// OOM-killed.
fn leak(alloc: u64, held: &mut Held) -> Result<(), Failure> {
    let ptr = held.map(alloc, libc::MAP_PRIVATE | libc::MAP_POPULATE)?;
    // Zero, as igt writes: the pages stay same-filled, which zram keeps
    // without compressing them.
    // SAFETY: `held.map` returned a writable mapping of `alloc` bytes.
    unsafe { touch(ptr, alloc, 0) };
    Ok(())
}
