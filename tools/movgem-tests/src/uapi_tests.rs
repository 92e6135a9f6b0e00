// SPDX-License-Identifier: GPL-2.0

//! Tests through `/dev/movgem`: the uAPI, the simulated GPU, runtime PM,
//! vmap caching and the hook's refusals.

use std::time::{Duration, Instant};

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, compact, fragment_for, Control, Counters, GpuAwake};
use movgem_guest::{ensure, TestResult};

const PAGE: u64 = 4096;
/// Object size of the migration tests: 8 MiB.
const BIG: u64 = 8 << 20;

pub(crate) fn errno_name(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

pub(crate) fn ok<T>(r: uapi::Res<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {}", errno_name(e)))
}

pub(crate) fn expect_err<T: std::fmt::Debug>(r: uapi::Res<T>, want: i32, what: &str) -> TestResult {
    match r {
        Err(e) if e == want => Ok(()),
        other => Err(format!(
            "{what}: expected {}, got {other:?}",
            errno_name(want)
        )),
    }
}

pub(crate) fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len / 4)
        .flat_map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed)
                .to_le_bytes()
        })
        .collect()
}

pub fn create_close_and_info() -> TestResult {
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

pub fn bad_arguments() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let before = ok(dev.info(), "info")?;
    expect_err(dev.create(0), libc::EINVAL, "create 0")?;
    expect_err(dev.create(PAGE - 1), libc::EINVAL, "create unaligned")?;
    expect_err(
        dev.create(uapi::MAX_OBJECT_SIZE + PAGE),
        libc::E2BIG,
        "create too big",
    )?;
    expect_err(
        dev.create(u64::MAX & !(PAGE - 1)),
        libc::E2BIG,
        "create 2^64 - 4096",
    )?;
    let mut c = uapi::Create {
        size: PAGE,
        handle: 0,
        pad: 1,
    };
    expect_err(
        dev.call(uapi::IOCTL_CREATE, &mut c),
        libc::EINVAL,
        "create pad",
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

pub fn handles_are_per_file() -> TestResult {
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

pub fn pwrite_pread_mmap() -> TestResult {
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

pub fn gpu_fill_busy_wait() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let size = 16 * PAGE;
    let h = ok(dev.create(size), "create")?;
    let offs = ok(
        dev.execbuf(&[(h, true)], uapi::OP_FILL, 0xdead_beef, 300_000_000, 0),
        "execbuf",
    )?;
    ensure!(offs[0] % PAGE == 0, "GTT offset {:#x}", offs[0]);
    ensure!(
        ok(dev.busy(h), "busy")?,
        "object not busy right after execbuf"
    );
    expect_err(dev.wait(h, 0), uapi_etime(), "wait(0) on a busy object")?;
    let left = ok(dev.wait(h, 5_000_000_000), "wait")?;
    ensure!(left > 0 && left < 5_000_000_000, "time left {left}");
    ensure!(!ok(dev.busy(h), "busy")?, "still busy after wait");
    let mut got = vec![0u8; size as usize];
    ok(dev.pread(h, 0, &mut got), "pread")?;
    ensure!(
        got.chunks(4).all(|c| c == 0xdead_beef_u32.to_le_bytes()),
        "GPU fill not visible"
    );
    let before = Counters::read()?;
    ok(
        dev.execbuf(&[(h, false)], uapi::OP_CHECK, 0xdead_beef, 0, 0),
        "execbuf check",
    )?;
    ok(dev.wait(h, -1), "wait")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("gpu_check_errors") == 0 && d.get("gpu_requests") == 1,
        "GPU read other data: {d}"
    );
    ok(
        dev.set_domain(h, uapi::DOMAIN_CPU, uapi::DOMAIN_CPU),
        "set_domain",
    )?;
    let info = ok(dev.info(), "info")?;
    ensure!(
        info.bound_objects >= 1 && info.gtt_used >= size,
        "binding not reported: {info:?}"
    );
    ok(dev.close(h), "close")
}

fn uapi_etime() -> i32 {
    libc::ETIME
}

/// An 8 MiB object, bound by a GPU fill while memory is fragmented, so
/// its pinned pages are spread over the zone; returns when it is idle.
fn scattered_gpu_object(dev: &Device, value: u32) -> Result<u32, String> {
    let start = Instant::now();
    let filler = fragment_for(BIG)?;
    let fragmented = start.elapsed();
    let h = filled_object(dev, BIG, value)?;
    let filled = start.elapsed();
    drop(filler);
    println!(
        "  scattered object: fragmenting {:.1}s, GPU fill {:.1}s, filler freed {:.1}s",
        fragmented.as_secs_f64(),
        (filled - fragmented).as_secs_f64(),
        (start.elapsed() - filled).as_secs_f64()
    );
    Ok(h)
}

fn check_fill(dev: &Device, h: u32, value: u32) -> TestResult {
    check_fill_sized(dev, h, value, BIG)
}

/// The GPU (a checking batch) and the CPU (pread) both read `value` in
/// every dword of the first `size` bytes of object `h`.
pub(crate) fn check_fill_sized(dev: &Device, h: u32, value: u32, size: u64) -> TestResult {
    let before = Counters::read()?;
    ok(
        dev.execbuf(&[(h, false)], uapi::OP_CHECK, value, 0, 0),
        "execbuf check",
    )?;
    ok(dev.wait(h, -1), "wait")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("gpu_check_errors") == 0,
        "the GPU read stale data: {d}"
    );
    let mut got = vec![0u8; size as usize];
    ok(dev.pread(h, 0, &mut got), "pread")?;
    ensure!(
        got.chunks(4).all(|c| c == value.to_le_bytes()),
        "CPU read other data than the GPU wrote"
    );
    Ok(())
}

pub fn bound_idle_object_migrates() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let h = scattered_gpu_object(&dev, 0x1234_5678)?;
    let d = env::compact_counted()?;
    let out = (|| {
        ensure!(d.get("migrated") > 0, "nothing migrated: {d}");
        ensure!(
            d.get("unbinds") == 1 && d.get("released_objects") == 1,
            "not unbound once: {d}"
        );
        let info = ok(dev.info(), "info")?;
        ensure!(info.bound_objects == 0, "object still bound: {info:?}");
        // Rebinding through the GPU fetches the moved pages; what the GPU
        // and the CPU read must be what the GPU wrote before.
        check_fill(&dev, h, 0x1234_5678)?;
        println!(
            "  GPU object: {} folios migrated, data intact for GPU and CPU",
            d.get("migrated")
        );
        Ok(())
    })();
    ok(dev.close(h), "close")?;
    out
}

pub fn active_object_is_refused() -> TestResult {
    // The hang must outlast compaction, however slow the kernel is.
    env::set_param("hang_timeout_ms", "600000")?;
    let out = active_object_is_refused_inner();
    env::set_param("hang_timeout_ms", "1000")?;
    out
}

fn active_object_is_refused_inner() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let filler = fragment_for(BIG)?;
    let h = ok(dev.create(BIG), "create")?;
    ok(
        dev.execbuf(&[(h, true)], uapi::OP_FILL, 7, 0, uapi::EXEC_HANG),
        "execbuf hang",
    )?;
    drop(filler);
    let d = env::compact_counted()?;
    let ctl = Control::open()?;
    ctl.cmd("reset")?;
    ok(dev.wait(h, 5_000_000_000), "wait after reset")?;
    ensure!(
        d.get("refused_active") > 0,
        "hook never refused the active object: {d}"
    );
    ensure!(
        d.get("released_objects") == 0 && d.get("migrated") == 0,
        "active object released: {d}"
    );
    check_fill(&dev, h, 7)?;
    ok(dev.close(h), "close")
}

pub fn hang_ends() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let h = ok(dev.create(PAGE), "create")?;
    env::set_param("hang_timeout_ms", "300")?;
    let before = Counters::read()?;
    let start = Instant::now();
    let r = dev.execbuf(&[(h, false)], uapi::OP_NOP, 0, 0, uapi::EXEC_HANG);
    let waited = r.and_then(|_| dev.wait(h, 10_000_000_000));
    env::set_param("hang_timeout_ms", "1000")?;
    ok(waited, "wait on a hang")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("gpu_hangs_timed_out") == 1,
        "hang not ended by its timeout: {d}"
    );
    println!(
        "  hang ended after {} ms (hang_timeout_ms=300)",
        start.elapsed().as_millis()
    );
    // A reset ends a hang at once.
    ok(
        dev.execbuf(&[(h, false)], uapi::OP_NOP, 0, 0, uapi::EXEC_HANG),
        "execbuf hang",
    )?;
    expect_err(dev.wait(h, 0), libc::ETIME, "hang finished by itself")?;
    Control::open()?.cmd("reset")?;
    ok(dev.wait(h, 5_000_000_000), "wait after reset")?;
    let d = Counters::read()?.since(&before);
    ensure!(d.get("gpu_requests_reset") == 1, "reset not counted: {d}");
    ok(dev.close(h), "close")
}

pub fn pinned_vma_is_refused() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let h = scattered_gpu_object(&dev, 9)?;
    ok(dev.pin(h), "pin")?;
    let d = env::compact_counted()?;
    ok(dev.unpin(h), "unpin")?;
    ensure!(
        d.get("refused_pinned_vma") > 0,
        "pinned binding not refused: {d}"
    );
    ensure!(d.get("migrated") == 0, "pinned pages moved: {d}");
    check_fill(&dev, h, 9)?;
    ok(dev.close(h), "close")
}

pub fn suspended_device_refuses() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let before = Counters::read()?;
    let h = scattered_gpu_object(&dev, 11)?;
    // Idle: after the autosuspend delay the device suspends by itself.
    // An event, not a time: 100 ms of autosuspend delay, however slowly
    // a loaded machine gets there (60 s is only the give-up).
    env::wait_runtime_status("suspended", 60_000)?;
    let mid = Counters::read()?;
    ensure!(
        mid.since(&before).get("runtime_resumes") >= 1,
        "execbuf did not resume the device"
    );
    ensure!(
        mid.since(&before).get("runtime_suspends") >= 1,
        "device never suspended"
    );
    compact()?;
    let d = Counters::read()?.since(&mid);
    ensure!(
        d.get("refused_suspended") > 0,
        "hook did not refuse while suspended: {d}"
    );
    ensure!(
        d.get("migrated") == 0 && d.get("unbinds") == 0,
        "unbound while suspended: {d}"
    );
    ensure!(
        env::runtime_status()? == "suspended",
        "the hook woke the device"
    );
    // Awake again, the same object can be released.
    let awake = GpuAwake::new()?;
    compact()?;
    let d = Counters::read()?.since(&mid);
    ensure!(d.get("unbinds") == 1, "not unbound once awake: {d}");
    drop(awake);
    check_fill(&dev, h, 11)?;
    ok(dev.close(h), "close")
}

pub fn vmap_and_purge() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let h = scattered_gpu_object(&dev, 13)?;
    ok(dev.vmap(h), "vmap")?;
    let before = Counters::read()?;
    compact()?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("refused_pinned") > 0 && d.get("migrated") == 0,
        "vmap-pinned pages not refused: {d}"
    );
    let ctl = Control::open()?;
    ctl.cmd("purge_vmaps")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("vmap_purged_pages") == 0,
        "a pinned mapping was purged: {d}"
    );
    ok(dev.vunmap(h), "vunmap")?;
    let info = ok(dev.info(), "info")?;
    ensure!(
        info.cached_vmaps >= 1,
        "unpinned mapping not cached: {info:?}"
    );
    ctl.cmd("purge_vmaps")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("vmap_purged_pages") == BIG / PAGE,
        "purge freed {} pages: {d}",
        d.get("vmap_purged_pages")
    );
    let info = ok(dev.info(), "info")?;
    ensure!(info.cached_vmaps == 0, "mapping still cached: {info:?}");
    check_fill(&dev, h, 13)?;
    ok(dev.close(h), "close")
}

pub fn madvise() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    // No pages: DONTNEED purges at once, and stays purged.
    let idle = ok(dev.create(4 * PAGE), "create")?;
    ensure!(
        !ok(dev.madvise(idle, uapi::MADV_DONTNEED), "madvise")?,
        "object without pages retained"
    );
    let mut buf = [0u8; 16];
    expect_err(dev.pread(idle, 0, &mut buf), libc::EFAULT, "pread purged")?;
    expect_err(
        dev.execbuf(&[(idle, false)], uapi::OP_NOP, 0, 0, 0),
        libc::EFAULT,
        "execbuf purged",
    )?;
    ensure!(
        !ok(dev.madvise(idle, uapi::MADV_WILLNEED), "madvise")?,
        "purged object came back"
    );
    ok(dev.close(idle), "close")?;
    // Bound: DONTNEED keeps the pages, and the hook leaves it to the shrinker.
    let h = scattered_gpu_object(&dev, 17)?;
    ensure!(
        ok(dev.madvise(h, uapi::MADV_DONTNEED), "madvise")?,
        "bound object lost its pages"
    );
    let d = env::compact_counted()?;
    ensure!(
        d.get("refused_purgeable") > 0 && d.get("migrated") == 0,
        "purgeable not refused: {d}"
    );
    ensure!(
        ok(dev.madvise(h, uapi::MADV_WILLNEED), "madvise")?,
        "pages lost"
    );
    check_fill(&dev, h, 17)?;
    ok(dev.close(h), "close")
}

pub fn lock_contention() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let h = scattered_gpu_object(&dev, 19)?;
    const HOLD_MS: u64 = 2000;
    let holds = env::counter("lock_holds")?;
    let holder =
        std::thread::spawn(|| Control::open().and_then(|c| c.cmd(&format!("hold_lock {HOLD_MS}"))));
    // Compaction starts once the holder has the lock, however long a
    // loaded machine takes to run it; the count below needs the overlap.
    let held = Instant::now();
    while env::counter("lock_holds")? == holds {
        ensure!(
            held.elapsed() < Duration::from_secs(60),
            "hold_lock never took struct_mutex"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = Counters::read()?;
    let start = Instant::now();
    compact()?;
    let took = start.elapsed();
    let d = Counters::read()?.since(&before);
    holder
        .join()
        .map_err(|_| "holder thread panicked".to_string())??;
    let contended = d.get("refused_lock_contended");
    ensure!(contended > 0, "no refusal while struct_mutex was held: {d}");
    // Each refusal waits at most lock_timeout_ms (10 ms): while the lock
    // stays held (2 s, less the few ms before compaction starts), that is
    // about 200 refusals; allow 10x per refusal (100 ms).
    ensure!(
        contended >= (HOLD_MS - 200) / 100,
        "only {contended} refusals: the hook waited too long"
    );
    println!(
        "  {contended} folios refused on the contended lock; compaction took {} ms",
        took.as_millis()
    );
    check_fill(&dev, h, 19)?;
    ok(dev.close(h), "close")
}

pub fn unload_refused_while_open() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let h = ok(dev.create(PAGE), "create")?;
    let st = std::process::Command::new("rmmod")
        .arg("movgem")
        .status()
        .map_err(|e| e.to_string())?;
    ensure!(!st.success(), "rmmod succeeded with /dev/movgem open");
    ensure!(
        std::path::Path::new("/sys/module/movgem").exists(),
        "module gone"
    );
    ok(dev.close(h), "close")
}

/// The node every page is on now.
pub(crate) fn where_are(addrs: &[*mut libc::c_void]) -> Result<Vec<i32>, String> {
    let mut status = vec![i32::MIN; addrs.len()];
    env::move_pages(addrs, None, &mut status)?;
    ensure!(
        status.iter().all(|&s| s == 0 || s == 1),
        "pages not on node 0 or 1: {:?}",
        &status[..8.min(status.len())]
    );
    Ok(status)
}

/// Asks to move every page to `target`; returns how many are there now.
pub(crate) fn move_to(addrs: &[*mut libc::c_void], target: &[i32]) -> Result<usize, String> {
    let mut status = vec![i32::MIN; addrs.len()];
    env::move_pages(addrs, Some(target), &mut status)?;
    Ok(where_are(addrs)?
        .iter()
        .zip(target)
        .filter(|(a, b)| a == b)
        .count())
}

pub fn move_pages_migrates_bound_object() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let size = 8 << 20;
    let value = 0x0bad_cafe;
    let h = ok(dev.create(size), "create")?;
    ok(
        dev.execbuf(&[(h, true)], uapi::OP_FILL, value, 0, 0),
        "execbuf",
    )?;
    ok(dev.wait(h, -1), "wait")?;
    let addr = ok(dev.mmap(h, 0, size), "mmap")?;
    let n = (size / PAGE) as usize;
    let addrs: Vec<*mut libc::c_void> = (0..n)
        .map(|i| (addr + i as u64 * PAGE) as *mut libc::c_void)
        .collect();
    // Fault every page in, then ask where each one lives.
    for a in &addrs {
        // SAFETY: inside the mapping the kernel gave us.
        let _ = unsafe { std::ptr::read_volatile(*a as *const u8) };
    }
    let out = (|| {
        let here = where_are(&addrs)?;
        let there: Vec<i32> = here.iter().map(|&s| 1 - s).collect();

        env::set_param("hook", "0")?;
        let before = Counters::read()?;
        let moved_off = move_to(&addrs, &there);
        env::set_param("hook", "1")?;
        let moved_off = moved_off?;
        let d = Counters::read()?.since(&before);
        ensure!(
            moved_off == 0,
            "{moved_off} pinned pages moved with the hook off: {d}"
        );
        ensure!(d.get("hook_bypassed") > 0, "hook not consulted: {d}");

        let before = Counters::read()?;
        let moved_on = move_to(&addrs, &there)?;
        let d = Counters::read()?.since(&before);
        ensure!(
            moved_on == n,
            "only {moved_on} of {n} pages reached the other node: {d}"
        );
        ensure!(
            d.get("unbinds") == 1 && d.get("migrated") as usize >= n,
            "hook did not release: {d}"
        );

        // The object now holds no pages: with the hook off, shmem must
        // behave exactly as without it, and move every page back.
        env::set_param("hook", "0")?;
        let moved_back = move_to(&addrs, &here);
        env::set_param("hook", "1")?;
        let moved_back = moved_back?;
        ensure!(
            moved_back == n,
            "hook off refused {} unpinned pages",
            n - moved_back
        );
        println!(
            "  move_pages: hook off moved 0 of {n} pinned pages; hook on moved {moved_on}; \
             hook off moved {moved_back} unpinned pages back"
        );
        Ok(())
    })();
    // SAFETY: unmapping what the kernel mapped for us.
    unsafe { libc::munmap(addr as *mut libc::c_void, size as usize) };
    out?;
    // The GPU and the CPU still see what the GPU wrote.
    check_fill_sized(&dev, h, value, size)?;
    ok(dev.close(h), "close")
}

pub fn close_while_active_cleans_up() -> TestResult {
    let before = {
        let dev = ok(Device::open(), "open")?;
        ok(dev.info(), "info")?
    };
    {
        let dev = ok(Device::open(), "open")?;
        let h = ok(dev.create(1 << 20), "create")?;
        ok(
            dev.execbuf(&[(h, true)], uapi::OP_FILL, 1, 300_000_000, 0),
            "execbuf",
        )?;
        ensure!(ok(dev.busy(h), "busy")?, "not busy");
        // Closing the file closes the object while the GPU still uses it.
    }
    let dev = ok(Device::open(), "open")?;
    let mid = ok(dev.info(), "info")?;
    ensure!(
        mid.objects == before.objects,
        "closed object still listed: {mid:?}"
    );
    // Once the request retires, its binding goes too.
    let start = Instant::now();
    loop {
        let now = ok(dev.info(), "info")?;
        if now.gtt_used == before.gtt_used && now.active_objects == before.active_objects {
            return Ok(());
        }
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "GTT space not released: {before:?} -> {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A bound, idle object of `size` bytes filled with `value` by the GPU.
pub(crate) fn filled_object(dev: &Device, size: u64, value: u32) -> Result<u32, String> {
    let h = ok(dev.create(size), "create")?;
    ok(
        dev.execbuf(&[(h, true)], uapi::OP_FILL, value, 0, 0),
        "execbuf",
    )?;
    ok(dev.wait(h, -1), "wait")?;
    Ok(h)
}

pub fn shrinker_purges_then_releases() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let size = 8 << 20;
    let junk = filled_object(&dev, size, 1)?;
    ensure!(
        ok(dev.madvise(junk, uapi::MADV_DONTNEED), "madvise")?,
        "pages lost early"
    );
    let keep = filled_object(&dev, size, 0x5eed)?;
    let scanout = filled_object(&dev, 1 << 20, 0x5ca9)?;
    ok(dev.pin(scanout), "pin")?;
    let before = Counters::read()?;
    env::drop_caches()?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("shrink_purged_objects") == 1,
        "DONTNEED object not purged: {d}"
    );
    ensure!(
        d.get("shrink_released_objects") == 1,
        "idle WILLNEED object not released: {d}"
    );
    ensure!(
        d.get("shrink_freed_pages") == 2 * size / PAGE,
        "freed {}: {d}",
        d.get("shrink_freed_pages")
    );
    ensure!(
        !ok(dev.madvise(junk, uapi::MADV_WILLNEED), "madvise")?,
        "purged object came back"
    );
    let mut buf = [0u8; 16];
    expect_err(dev.pread(junk, 0, &mut buf), libc::EFAULT, "pread purged")?;
    // The released object's data is still in shmem, and the pinned one
    // was never touched.
    check_fill_sized(&dev, keep, 0x5eed, size)?;
    check_fill_sized(&dev, scanout, 0x5ca9, 1 << 20)?;
    ok(dev.unpin(scanout), "unpin")?;
    Ok(())
}

pub fn shrinker_makes_room_for_a_hog() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let avail = env::meminfo_kib("MemAvailable")? << 10;
    let obj = 16 << 20;
    let count = (avail / 2 / obj) as usize;
    let mut handles = Vec::new();
    for i in 0..count {
        let h = filled_object(&dev, obj, i as u32)?;
        ensure!(
            ok(dev.madvise(h, uapi::MADV_DONTNEED), "madvise")?,
            "pages lost early"
        );
        handles.push(h);
    }
    let before = Counters::read()?;
    // The hog runs in a child: if memory could not be found, the OOM
    // killer would take the child, not the test.
    let hog = avail * 3 / 4;
    // SAFETY: the child only allocates, touches and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut v = vec![0u8; hog as usize];
        for b in v.iter_mut().step_by(PAGE as usize) {
            *b = 1;
        }
        std::hint::black_box(&v);
        // SAFETY: leave the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let d = Counters::read()?.since(&before);
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the {} MiB hog did not complete (status {status}): {d}",
        hog >> 20
    );
    ensure!(
        d.get("shrink_purged_objects") > 0,
        "the shrinker purged nothing: {d}"
    );
    println!(
        "  {} MiB hog ran next to {} MiB of DONTNEED objects; shrinker purged {} of {count}",
        hog >> 20,
        (count as u64 * obj) >> 20,
        d.get("shrink_purged_objects")
    );
    Ok(())
}
