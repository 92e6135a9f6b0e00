// SPDX-License-Identifier: GPL-2.0

//! userptr objects: the GPU reading and writing user memory, the
//! arguments USERPTR rejects, and the mmu_interval_notifier following
//! migration and munmap.

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{Counters, Param};
use movgem_guest::{ensure, TestResult};

use super::common::{
    drop_objects, expect_err, map_file, move_to, ok, where_are, Anon, Ext2Disk, PAGE,
};
use super::Test;

fn userptr_gpu_uses_user_memory() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let size = 1usize << 20;
    let mut mem = Anon::new(size, 0)?;
    mem.words().fill(0x1234_5678);
    let h = ok(dev.userptr(mem.ptr(), size as u64), "userptr")?;
    let before = Counters::read()?;
    ok(
        dev.execbuf(&[(h, false)], uapi::OP_CHECK, 0x1234_5678, 0, 0),
        "execbuf check",
    )?;
    ok(dev.wait(h, -1), "wait")?;
    ok(
        dev.execbuf(&[(h, false)], uapi::OP_CHECK, 0x0bad_0bad, 0, 0),
        "execbuf check",
    )?;
    ok(dev.wait(h, -1), "wait")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("gpu_check_errors") == size as u64 / 4,
        "the GPU did not read the user's memory: {d}"
    );
    ok(
        dev.execbuf(&[(h, true)], uapi::OP_FILL, 0xfeed_beef, 0, 0),
        "execbuf fill",
    )?;
    ok(dev.wait(h, -1), "wait")?;
    let wrong = mem.words().iter().filter(|&&w| w != 0xfeed_beef).count();
    ensure!(
        wrong == 0,
        "{wrong} dwords of user memory not written by the GPU"
    );
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("userptr_faulted_pages") >= 3 * size as u64 / PAGE,
        "pages not faulted per request: {d}"
    );
    // Idle: no page references held, so nothing shows as active.
    let info = ok(dev.info(), "info")?;
    ensure!(info.active_objects == 0, "still active: {info:?}");
    ok(dev.close(h), "close")
}

fn userptr_bad_arguments() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let mem = Anon::new(1 << 20, 0)?;
    expect_err(dev.userptr(mem.ptr() + 8, PAGE), libc::EINVAL, "unaligned")?;
    expect_err(dev.userptr(mem.ptr(), 0), libc::EINVAL, "empty")?;
    expect_err(dev.userptr(mem.ptr(), 100), libc::EINVAL, "partial page")?;
    expect_err(
        dev.userptr(mem.ptr(), uapi::MAX_OBJECT_SIZE + PAGE),
        libc::E2BIG,
        "too big",
    )?;
    expect_err(
        dev.userptr(0xffff_8880_0000_0000, PAGE),
        libc::EFAULT,
        "kernel address",
    )?;
    let mut a = uapi::Userptr {
        user_ptr: mem.ptr(),
        user_size: PAGE,
        flags: 1,
        handle: 0,
    };
    expect_err(dev.call(uapi::IOCTL_USERPTR, &mut a), libc::EINVAL, "flags")?;
    let h = ok(dev.userptr(mem.ptr(), 1 << 20), "userptr")?;
    let mut buf = [0u8; 8];
    expect_err(dev.pread(h, 0, &mut buf), libc::EINVAL, "pread userptr")?;
    expect_err(dev.pwrite(h, 0, &buf), libc::EINVAL, "pwrite userptr")?;
    expect_err(dev.mmap(h, 0, PAGE), libc::EINVAL, "mmap userptr")?;
    expect_err(dev.pin(h), libc::EINVAL, "pin userptr")?;
    expect_err(dev.vmap(h), libc::EINVAL, "vmap userptr")?;
    ok(dev.close(h), "close")?;
    // A range that is not mapped: the object exists, using it faults.
    let mut gone = Anon::new(1 << 20, 0)?;
    let ptr = gone.ptr();
    gone.unmap();
    let h = ok(dev.userptr(ptr, 1 << 20), "userptr of a hole")?;
    expect_err(
        dev.set_domain(h, uapi::DOMAIN_GTT, 0),
        libc::EFAULT,
        "set_domain of a hole",
    )?;
    expect_err(
        dev.execbuf(&[(h, false)], uapi::OP_NOP, 0, 0, 0),
        libc::EFAULT,
        "execbuf of a hole",
    )?;
    ok(dev.close(h), "close")
}

fn userptr_follows_invalidation() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let size = 2usize << 20;
    let npages = size / PAGE as usize;
    let mut mem = Anon::new(size, 0)?;
    mem.words().fill(7);
    let h = ok(dev.userptr(mem.ptr(), size as u64), "userptr")?;
    ok(dev.execbuf(&[(h, true)], uapi::OP_FILL, 1, 0, 0), "execbuf")?;
    ok(dev.wait(h, -1), "wait")?;
    let addrs = mem.page_addrs();
    let here = where_are(&addrs)?;
    let there: Vec<i32> = here.iter().map(|&n| 1 - n).collect();

    // While a request uses the pages, it holds references: no migration.
    ok(
        dev.execbuf(&[(h, false)], uapi::OP_NOP, 0, 2_000_000_000, 0),
        "execbuf busy",
    )?;
    let moved_busy = move_to(&addrs, &there)?;
    ok(dev.wait(h, -1), "wait")?;
    ensure!(moved_busy == 0, "{moved_busy} pages moved under the GPU");

    // Idle, it holds none: migration moves them and invalidates the range.
    let before = Counters::read()?;
    let moved = move_to(&addrs, &there)?;
    let d = Counters::read()?.since(&before);
    ensure!(
        moved == npages,
        "only {moved} of {npages} idle pages moved: {d}"
    );
    ensure!(
        d.get("userptr_invalidations") > 0,
        "migration did not invalidate the range: {d}"
    );
    // The next request drops the stale binding and uses the new pages.
    ok(dev.execbuf(&[(h, true)], uapi::OP_FILL, 2, 0, 0), "execbuf")?;
    ok(dev.wait(h, -1), "wait")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("userptr_stale_unbinds") > 0,
        "stale binding kept: {d}"
    );
    let wrong = mem.words().iter().filter(|&&w| w != 2).count();
    ensure!(wrong == 0, "{wrong} dwords missed after migration");

    // Unmapped: the range is gone, so using it faults...
    let ptr = mem.ptr();
    let before = Counters::read()?;
    mem.unmap();
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("userptr_invalidations") > 0,
        "munmap did not invalidate: {d}"
    );
    expect_err(
        dev.execbuf(&[(h, false)], uapi::OP_NOP, 0, 0, 0),
        libc::EFAULT,
        "execbuf after munmap",
    )?;
    // ...until memory is mapped there again.
    // SAFETY: MAP_FIXED over the range we just unmapped ourselves.
    let again = unsafe {
        libc::mmap(
            ptr as *mut libc::c_void,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    ensure!(again as u64 == ptr, "remap failed");
    let mut mem = Anon {
        addr: again,
        len: size,
    };
    ok(dev.execbuf(&[(h, true)], uapi::OP_FILL, 3, 0, 0), "execbuf")?;
    ok(dev.wait(h, -1), "wait")?;
    let wrong = mem.words().iter().filter(|&&w| w != 3).count();
    ensure!(wrong == 0, "{wrong} dwords of the new mapping not written");
    ok(dev.close(h), "close")
}

/// `userptr_keep_pages`: i915's userptr behaviour.  SET_DOMAIN and a
/// request leave every page of the range referenced by the object; the
/// shrinker's passes (debugfs drop_caches) release them; an invalidation
/// (here migration of one page, then munmap) drops them at once, so the
/// kept references never stop the page from moving.  Off (the default),
/// nothing is kept and the shrinker has nothing to release: the control.
/// The negative controls run the same round with each half broken: the
/// shrinker leaving kept pages (`debug_userptr_shrink_keeps`) must fail
/// it at the release, an invalidation leaving them
/// (`debug_userptr_invalidate_keeps`) at the move.
fn userptr_keeps_pages_until_reclaim_or_invalidation() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    {
        let size = 2usize << 20;
        let mut mem = Anon::new(size, 0)?;
        mem.words().fill(5);
        let h = ok(dev.userptr(mem.ptr(), size as u64), "userptr")?;
        let _off = Param::set("userptr_keep_pages", "0")?;
        let before = Counters::read()?;
        ok(dev.set_domain(h, uapi::DOMAIN_GTT, 0), "set_domain")?;
        drop_objects(uapi::DROP_UNBOUND | uapi::DROP_BOUND)?;
        let d = Counters::read()?.since(&before);
        ensure!(
            kept(&d) == (0, 0, 0),
            "option off, yet pages were kept or released (kept, released, invalidated): {:?}",
            kept(&d)
        );
        ok(dev.close(h), "close")?;
    }
    let _on = Param::set("userptr_keep_pages", "1")?;
    for (knob, fails_at) in [
        ("debug_userptr_shrink_keeps", "drop_caches twice"),
        ("debug_userptr_invalidate_keeps", "kept page moved"),
    ] {
        let r = {
            let _broken = Param::set(knob, "1")?;
            keep_pages_round(&dev)
        };
        match r {
            Err(e) if e.starts_with(fails_at) => {
                println!("  control {knob}=1: failed as it must: {e}")
            }
            r => {
                return Err(format!(
                    "control {knob}=1: {r:?}, not a failure at \"{fails_at}\": this test \
                     could not fail"
                ))
            }
        }
    }
    keep_pages_round(&dev)
}

/// (kept, released, invalidated) userptr pages in `d`.
fn kept(d: &Counters) -> (u64, u64, u64) {
    (
        d.get("userptr_kept_pages"),
        d.get("userptr_released_pages"),
        d.get("userptr_kept_invalidated"),
    )
}

/// One round of [`userptr_keeps_pages_until_reclaim_or_invalidation`]
/// with `userptr_keep_pages` on, over a new 2 MiB range.
fn keep_pages_round(dev: &Device) -> TestResult {
    let size = 2usize << 20;
    let npages = (size as u64) / PAGE;
    let mut mem = Anon::new(size, 0)?;
    mem.words().fill(5);
    let h = ok(dev.userptr(mem.ptr(), size as u64), "userptr")?;
    let out = keep_pages_steps(dev, h, &mut mem, npages);
    let _ = dev.close(h);
    out
}

fn keep_pages_steps(dev: &Device, h: u32, mem: &mut Anon, npages: u64) -> TestResult {
    let shrink = uapi::DROP_UNBOUND | uapi::DROP_BOUND;
    // SET_DOMAIN keeps the range until the shrinker releases it.
    let before = Counters::read()?;
    ok(dev.set_domain(h, uapi::DOMAIN_GTT, 0), "set_domain")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        kept(&d) == (npages, 0, 0),
        "SET_DOMAIN: (kept, released, invalidated) {:?}, want ({npages}, 0, 0)",
        kept(&d)
    );
    drop_objects(shrink)?;
    drop_objects(shrink)?;
    let d = Counters::read()?.since(&before);
    ensure!(
        kept(&d) == (npages, npages, 0),
        "drop_caches twice: (kept, released, invalidated) {:?}, want ({npages}, {npages}, 0)",
        kept(&d)
    );

    // A request keeps them too; moving one page invalidates the range,
    // which drops every kept reference, so the page does move.
    let before = Counters::read()?;
    ok(
        dev.execbuf(&[(h, false)], uapi::OP_CHECK, 5, 0, 0),
        "execbuf check",
    )?;
    ok(dev.wait(h, -1), "wait")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("gpu_check_errors") == 0 && kept(&d).0 == npages,
        "request: {d}"
    );
    let addrs = mem.page_addrs();
    let here = where_are(&addrs[..1])?;
    let moved = move_to(&addrs[..1], &[1 - here[0]])?;
    let d = Counters::read()?.since(&before);
    ensure!(
        moved == 1 && kept(&d).2 == npages,
        "kept page moved: {moved} of 1, (kept, released, invalidated) {:?}",
        kept(&d)
    );
    drop_objects(shrink)?;
    let d = Counters::read()?.since(&before);
    ensure!(
        kept(&d).1 == 0,
        "released {} pages an invalidation had dropped already",
        kept(&d).1
    );

    // munmap drops them as well.
    ok(dev.set_domain(h, uapi::DOMAIN_GTT, 0), "set_domain")?;
    let before = Counters::read()?;
    mem.unmap();
    let d = Counters::read()?.since(&before);
    ensure!(
        kept(&d).2 == npages,
        "munmap: (kept, released, invalidated) {:?}",
        kept(&d)
    );
    Ok(())
}

/// A `fork()` while a GPU write to a userptr range is queued.  The
/// request takes the pages at submission and the engine writes them
/// when the batch runs, as DMA would.  With plain references
/// (`get_user_pages_fast`) fork shares the parent's private pages with
/// the child copy-on-write, the parent's next write to each page copies
/// it, and the GPU's write then lands in the child's page: the parent
/// misses it, the child sees memory change after fork.  Pinned
/// (`FOLL_PIN`: `folio_maybe_dma_pinned()`), fork gives the child copies
/// at once and the parent keeps the pages the GPU writes.
fn userptr_fork_with_queued_gpu_write() -> TestResult {
    const OLD: u32 = 0x0bad_f00d;
    const GPU: u32 = 0x6b6b_0001;
    const PARENT: u32 = 0x7a7a_0002;
    let dev = ok(Device::open(), "open")?;
    let words_per_page = PAGE as usize / 4;
    let npages = 64;
    let size = npages * PAGE as usize;
    let mut mem = Anon::new(size, 0)?;
    mem.words().fill(OLD);
    let h = ok(dev.userptr(mem.ptr(), size as u64), "userptr")?;
    let blocker = ok(dev.create(PAGE), "create")?;
    // The ring runs one batch at a time: the FILL waits behind this one,
    // with the pages it took at submission.
    ok(
        dev.execbuf(&[(blocker, false)], uapi::OP_NOP, 0, 3_000_000_000, 0),
        "execbuf blocker",
    )?;
    ok(
        dev.execbuf(&[(h, true)], uapi::OP_FILL, GPU, 0, 0),
        "execbuf fill",
    )?;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    ensure!(
        unsafe { libc::pipe(fds.as_mut_ptr()) } == 0,
        "pipe: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the test process is single threaded; the child only reads
    // memory, the pipe and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // The child: wait until the parent's FILL is done (the pipe
        // closes), then count the pages that changed since fork.
        let mut byte = 0u8;
        // SAFETY: our copies of the pipe's ends; one byte of room.
        unsafe {
            libc::close(fds[1]);
            libc::read(fds[0], (&mut byte as *mut u8).cast(), 1);
        }
        // SAFETY: the child's copy of the mapping, `size` bytes.
        let words = unsafe { std::slice::from_raw_parts(mem.addr.cast::<u32>(), size / 4) };
        let changed = words
            .chunks(words_per_page)
            .filter(|page| page.iter().any(|&w| w != OLD))
            .count();
        // SAFETY: leaves at once, without running the parent's
        // destructors (unmap, close) twice.
        unsafe { libc::_exit(changed.min(250) as libc::c_int) };
    }
    // SAFETY: our copy of the pipe's read end.
    unsafe { libc::close(fds[0]) };
    // The parent writes to every page, as a program does after fork:
    // each write copies a page that fork left shared.
    let words = mem.words();
    for page in words.chunks_mut(words_per_page) {
        page[0] = PARENT;
    }
    let queued = dev.busy(h);
    let waited = dev.wait(h, 30_000_000_000);
    let missed = mem.words().iter().filter(|&&w| w != GPU).count();
    // Closing the write end lets the child look.
    // SAFETY: our copy of the pipe's write end.
    unsafe { libc::close(fds[1]) };
    let mut status = 0;
    // SAFETY: waits for our own child.
    let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure!(pid > 0 && reaped == pid, "fork/waitpid failed");
    ok(dev.close(blocker), "close")?;
    ok(dev.close(h), "close")?;
    ensure!(
        ok(queued, "busy")?,
        "the FILL ran before the parent's writes: the test proves nothing"
    );
    ok(waited, "wait")?;
    ensure!(
        libc::WIFEXITED(status),
        "the child did not exit (wait status {status:#x})"
    );
    let changed = libc::WEXITSTATUS(status);
    ensure!(
        missed == 0 && changed == 0,
        "after fork, {missed} dwords of the parent's memory miss the GPU's write, \
         and the child's memory changed in {changed} of {npages} pages"
    );
    Ok(())
}

/// A userptr range over a writable shared mapping of a file on a file
/// system with writeback (ext2).  Pages the GPU writes later, as DMA
/// would, could be written back and cleaned in between, the write
/// then lost, with no `page_mkwrite` for it: `FOLL_LONGTERM` pins refuse
/// such a mapping for writing (`writable_file_mapping_allowed()`), and
/// so does EXECBUF, with `EFAULT`.  Reading it is fine (the file is not
/// changed through the pins), and so is SET_DOMAIN, which only faults
/// the range in and keeps nothing; with `userptr_keep_pages` it keeps
/// pins, and then refuses the write domain too.
fn userptr_writable_file_mapping_refused_for_writing() -> TestResult {
    const DATA: u32 = 0xf11e_da7a;
    let dev = ok(Device::open(), "open")?;
    let disk = Ext2Disk::new(16 << 20)?;
    let size = 16 * PAGE as usize;
    let path = disk.path("data");
    let data = DATA.to_le_bytes().repeat(size / 4);
    std::fs::write(&path, &data).map_err(|e| format!("{path}: {e}"))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{path}: {e}"))?;
    // Written back: clean pages, as writeback leaves them.
    file.sync_all().map_err(|e| format!("fsync: {e}"))?;
    let map = map_file(&file, size, libc::PROT_READ | libc::PROT_WRITE)?;
    let h = ok(dev.userptr(map.ptr(), size as u64), "userptr")?;
    expect_err(
        dev.execbuf(&[(h, true)], uapi::OP_FILL, 0x6b6b_0003, 0, 0),
        libc::EFAULT,
        "GPU write to a writable shared file mapping",
    )?;
    let before = Counters::read()?;
    ok(
        dev.execbuf(&[(h, false)], uapi::OP_CHECK, DATA, 0, 0),
        "GPU read of a writable shared file mapping",
    )?;
    ok(dev.wait(h, -1), "wait")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("gpu_check_errors") == 0 && d.get("userptr_faulted_pages") >= size as u64 / PAGE,
        "the GPU did not read the file's data: {d}"
    );
    ok(
        dev.set_domain(h, uapi::DOMAIN_GTT, uapi::DOMAIN_GTT),
        "set_domain(GTT, GTT), which keeps nothing",
    )?;
    {
        let _keep = Param::set("userptr_keep_pages", "1")?;
        expect_err(
            dev.set_domain(h, uapi::DOMAIN_GTT, uapi::DOMAIN_GTT),
            libc::EFAULT,
            "set_domain(GTT, GTT) keeping pins",
        )?;
        ok(
            dev.set_domain(h, uapi::DOMAIN_GTT, 0),
            "set_domain(GTT, 0) keeping pins",
        )?;
    }
    ok(dev.close(h), "close")?;
    drop(map);
    drop(file);
    let now = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    ensure!(now == data, "the file changed");
    Ok(())
}

pub(super) const TESTS: &[Test] = &[
    ("userptr_gpu_uses_user_memory", userptr_gpu_uses_user_memory),
    ("userptr_bad_arguments", userptr_bad_arguments),
    ("userptr_follows_invalidation", userptr_follows_invalidation),
    (
        "userptr_keeps_pages_until_reclaim_or_invalidation",
        userptr_keeps_pages_until_reclaim_or_invalidation,
    ),
    (
        "userptr_fork_with_queued_gpu_write",
        userptr_fork_with_queued_gpu_write,
    ),
    (
        "userptr_writable_file_mapping_refused_for_writing",
        userptr_writable_file_mapping_refused_for_writing,
    ),
];
