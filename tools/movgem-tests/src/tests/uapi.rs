// SPDX-License-Identifier: GPL-2.0

//! The uAPI of `/dev/movgem` itself: create, close and info, the
//! arguments every ioctl rejects, handles private to their file, and
//! pwrite, pread and mmap agreeing on an object's data.

use movgem_uapi::{self as uapi, Device};

use movgem_guest::{ensure, TestResult};

use super::common::{expect_err, ok, pattern, PAGE};
use super::Test;

fn create_close_and_info() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let before = ok(dev.info(), "info")?;
    let a = ok(dev.create(PAGE), "create 4 KiB")?;
    let b = ok(dev.create(1 << 20), "create 1 MiB")?;
    ensure!(a != b && a != 0 && b != 0, "handles {a} {b}");
    let mid = ok(dev.info(), "info")?;
    ensure!(
        mid.objects == before.objects + 2,
        "objects {} -> {}",
        before.objects,
        mid.objects
    );
    ensure!(
        mid.object_bytes == before.object_bytes + PAGE + (1 << 20),
        "object_bytes {mid:?}"
    );
    ok(dev.close(a), "close")?;
    expect_err(dev.close(a), libc::ENOENT, "double close")?;
    ok(dev.close(b), "close")?;
    let after = ok(dev.info(), "info")?;
    ensure!(after.objects == before.objects, "objects leaked: {after:?}");
    ensure!(after.gtt_size == 4 << 30, "gtt_size {}", after.gtt_size);
    Ok(())
}

fn bad_arguments() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let before = ok(dev.info(), "info")?;
    expect_err(dev.create(0), libc::EINVAL, "create 0")?;
    expect_err(dev.create(PAGE - 1), libc::EINVAL, "create unaligned")?;
    expect_err(
        dev.create(uapi::MAX_OBJECT_SIZE + PAGE),
        libc::E2BIG,
        "create too big",
    )?;
    expect_err(dev.create(!(PAGE - 1)), libc::E2BIG, "create 2^64 - 4096")?;
    let mut c = uapi::Create {
        size: PAGE,
        handle: 0,
        flags: !uapi::CREATE_HUGE,
    };
    expect_err(
        dev.call(uapi::IOCTL_CREATE, &mut c),
        libc::EINVAL,
        "create unknown flags",
    )?;
    // An unknown command must be rejected before the argument is looked at.
    expect_err(
        // SAFETY: see above; the NULL argument is never dereferenced.
        unsafe { dev.raw(0xdead_beef, std::ptr::null_mut()) },
        libc::ENOTTY,
        "unknown ioctl",
    )?;
    // SAFETY: a valid command with a NULL argument: the copy must fault.
    expect_err(
        unsafe { dev.raw(u64::from(uapi::IOCTL_CREATE), std::ptr::null_mut()) },
        libc::EFAULT,
        "NULL argument",
    )?;

    let h = ok(dev.create(2 * PAGE), "create")?;
    let mut buf = vec![0u8; PAGE as usize];
    expect_err(
        dev.pread(h, 2 * PAGE, &mut buf),
        libc::EINVAL,
        "pread past end",
    )?;
    expect_err(
        dev.pread(h, u64::MAX - 10, &mut buf),
        libc::EINVAL,
        "pread offset overflow",
    )?;
    let mut rw = uapi::Rw {
        handle: h,
        pad: 0,
        offset: 0,
        size: PAGE,
        data_ptr: 8,
    };
    expect_err(
        dev.call(uapi::IOCTL_PWRITE, &mut rw),
        libc::EFAULT,
        "pwrite bad pointer",
    )?;
    expect_err(
        dev.pread(h + 1000, 0, &mut buf),
        libc::ENOENT,
        "pread bad handle",
    )?;
    expect_err(dev.mmap(h, 1, PAGE), libc::EINVAL, "mmap unaligned offset")?;
    expect_err(dev.mmap(h, 0, 3 * PAGE), libc::EINVAL, "mmap past end")?;
    expect_err(dev.mmap(h, 0, 0), libc::EINVAL, "mmap empty")?;
    expect_err(dev.madvise(h, 7), libc::EINVAL, "madvise bad value")?;
    expect_err(
        dev.set_domain(h, 4, 0),
        libc::EINVAL,
        "set_domain unknown domain",
    )?;
    expect_err(
        dev.set_domain(h, uapi::DOMAIN_CPU, uapi::DOMAIN_GTT),
        libc::EINVAL,
        "write domain not read",
    )?;
    expect_err(dev.unpin(h), libc::EINVAL, "unpin unpinned")?;
    expect_err(dev.vunmap(h), libc::EINVAL, "vunmap unmapped")?;
    let mut w = uapi::Wait {
        handle: h,
        flags: 1,
        timeout_ns: 0,
    };
    expect_err(
        dev.call(uapi::IOCTL_WAIT, &mut w),
        libc::EINVAL,
        "wait flags",
    )?;
    expect_err(
        dev.execbuf(&[], uapi::OP_NOP, 0, 0, 0),
        libc::EINVAL,
        "execbuf no objects",
    )?;
    expect_err(
        dev.execbuf(&[(h, false)], 9, 0, 0, 0),
        libc::EINVAL,
        "execbuf bad op",
    )?;
    expect_err(
        dev.execbuf(&[(h, false)], uapi::OP_NOP, 0, 0, 2),
        libc::EINVAL,
        "execbuf bad flags",
    )?;
    expect_err(
        dev.execbuf(&[(h, false), (h, true)], uapi::OP_NOP, 0, 0, 0),
        libc::EINVAL,
        "execbuf duplicate",
    )?;
    expect_err(
        dev.execbuf(&[(h, false)], uapi::OP_NOP, 0, u64::MAX, 0),
        libc::EINVAL,
        "execbuf duration",
    )?;
    expect_err(
        dev.execbuf(&[(h + 1000, false)], uapi::OP_NOP, 0, 0, 0),
        libc::ENOENT,
        "execbuf bad handle",
    )?;
    let many: Vec<(u32, bool)> = (0..=uapi::MAX_EXEC_OBJECTS).map(|i| (i, false)).collect();
    expect_err(
        dev.execbuf(&many, uapi::OP_NOP, 0, 0, 0),
        libc::EINVAL,
        "execbuf too many",
    )?;
    let mut eb = uapi::Execbuf {
        objects_ptr: 8,
        count: 1,
        ..Default::default()
    };
    expect_err(
        dev.call(uapi::IOCTL_EXECBUF, &mut eb),
        libc::EFAULT,
        "execbuf bad objects_ptr",
    )?;
    ok(dev.close(h), "close")?;
    let after = ok(dev.info(), "info")?;
    ensure!(
        after.objects == before.objects,
        "objects leaked: {before:?} -> {after:?}"
    );
    ensure!(
        after.gtt_used == before.gtt_used,
        "GTT space leaked: {before:?} -> {after:?}"
    );
    Ok(())
}

fn handles_are_per_file() -> TestResult {
    let a = ok(Device::open(), "open a")?;
    let b = ok(Device::open(), "open b")?;
    let h = ok(a.create(PAGE), "create")?;
    ok(a.pwrite(h, 0, &[1, 2, 3, 4]), "pwrite")?;
    let mut buf = [0u8; 4];
    expect_err(b.pread(h, 0, &mut buf), libc::ENOENT, "other file's handle")?;
    expect_err(b.close(h), libc::ENOENT, "other file closing")?;
    // Another process, with its own open file.
    // SAFETY: the child only calls async-signal-safe code paths
    // (open, ioctl, _exit) before exiting.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match Device::open() {
            Ok(c) => {
                let mut buf = [0u8; 4];
                if c.pread(h, 0, &mut buf) == Err(libc::ENOENT) {
                    0
                } else {
                    1
                }
            }
            Err(_) => 2,
        };
        // SAFETY: leave the child at once.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child reached the handle: {status}"
    );
    ok(a.pread(h, 0, &mut buf), "owner pread")?;
    ensure!(buf == [1, 2, 3, 4], "data {buf:?}");
    drop(a);
    // The owner's release closed the object.
    drop(b);
    Ok(())
}

fn pwrite_pread_mmap() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let size = 64 * PAGE;
    let h = ok(dev.create(size), "create")?;
    let data = pattern(5, size as usize);
    // Unaligned, page-crossing write and read.
    ok(dev.pwrite(h, 0, &data), "pwrite")?;
    ok(
        dev.pwrite(h, 100, &data[..3 * PAGE as usize]),
        "pwrite unaligned",
    )?;
    let mut want = data.clone();
    want.copy_within(0..3 * PAGE as usize, 100);
    let mut got = vec![0u8; size as usize];
    ok(dev.pread(h, 0, &mut got), "pread")?;
    ensure!(got == want, "pread differs from what was written");
    let addr = ok(dev.mmap(h, 0, size), "mmap")?;
    // SAFETY: the kernel mapped `size` readable and writable bytes at `addr`.
    let map = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, size as usize) };
    ensure!(map[..] == want[..], "mmap shows other data than pread");
    map[..PAGE as usize].fill(0x5a);
    let mut first = vec![0u8; PAGE as usize];
    ok(dev.pread(h, 0, &mut first), "pread after mmap write")?;
    ensure!(
        first.iter().all(|&b| b == 0x5a),
        "write through mmap not seen by pread"
    );
    // SAFETY: unmapping what the kernel mapped for us.
    unsafe { libc::munmap(addr as *mut libc::c_void, size as usize) };
    ok(dev.close(h), "close")
}

pub(super) const TESTS: &[Test] = &[
    ("uapi_create_close_and_info", create_close_and_info),
    ("uapi_bad_arguments", bad_arguments),
    ("uapi_handles_are_per_file", handles_are_per_file),
    ("uapi_pwrite_pread_mmap", pwrite_pread_mmap),
];
