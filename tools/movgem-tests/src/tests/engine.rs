// SPDX-License-Identifier: GPL-2.0

//! The simulated GPU engine: a fill batch, busy and wait, the GPU's
//! check of what it reads, and a hang ended by its timeout or a reset.

use std::time::Instant;

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, Control, Counters, Param};
use movgem_guest::{ensure, TestResult};

use super::common::{check_fill_sized, expect_err, ok, Knob, PAGE};
use super::Test;

fn gpu_fill_busy_wait() -> TestResult {
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

fn hang_ends() -> TestResult {
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

/// EXECBUF populates an object's pages before `struct_mutex`; pages the
/// shrinker (here `debug_release_before_bind`, as a drop_caches loop
/// would) takes back in between make it try again, and from the fifth
/// try it fetches them under the lock: the batch runs, once, on the
/// object's own data.  Without that fallback such an EXECBUF fails with
/// `EAGAIN` (gem_shrink's `reclaim` did once): the negative control,
/// with the fallback removed (`debug_no_locked_fetch`), must see that
/// `EAGAIN` and no fetch under the lock.
fn execbuf_refetches_pages_taken_back_before_the_lock() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let size = 16 * PAGE;
    let value = 0x5eed_f00d_u32;
    let data: Vec<u8> = value.to_le_bytes().repeat(size as usize / 4);
    // The negative control: pages taken back before the lock, the
    // fallback removed.
    {
        let _release = Param::set("debug_release_before_bind", "1")?;
        let _no_fallback = Param::set("debug_no_locked_fetch", "1")?;
        let h = ok(dev.create(size), "create")?;
        let before = Counters::read()?;
        let r = dev.execbuf(&[(h, false)], uapi::OP_CHECK, value, 0, 0);
        let d = Counters::read()?.since(&before);
        let _ = dev.wait(h, -1);
        ok(dev.close(h), "close")?;
        ensure!(
            r == Err(libc::EAGAIN) && d.get("submit_locked_fetches") == 0,
            "control (fallback removed): EXECBUF returned {r:?}, want EAGAIN, with {} fetches \
             under the lock: this test could not fail; {d}",
            d.get("submit_locked_fetches")
        );
        println!("  control, fallback removed (debug_no_locked_fetch): EXECBUF failed with EAGAIN");
    }
    // The control: nothing is taken back, nothing is fetched under the lock.
    let h = ok(dev.create(size), "create")?;
    ok(dev.pwrite(h, 0, &data), "pwrite")?;
    let before = Counters::read()?;
    check_fill_sized(&dev, h, value, size)?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("submit_locked_fetches") == 0,
        "pages fetched under the lock with nothing taking them back: {d}"
    );
    ok(dev.close(h), "close")?;
    let _release = Param::set("debug_release_before_bind", "1")?;
    // Written by the CPU, released before the lock: the GPU must read it.
    let h = ok(dev.create(size), "create")?;
    ok(dev.pwrite(h, 0, &data), "pwrite")?;
    let before = Counters::read()?;
    check_fill_sized(&dev, h, value, size)?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("submit_locked_fetches") == 1 && d.get("gpu_requests") == 1,
        "want one request, its pages fetched under the lock once: {d}"
    );
    // Filled by the GPU through pages fetched under the lock.
    let h2 = ok(dev.create(size), "create")?;
    ok(
        dev.execbuf(&[(h2, true)], uapi::OP_FILL, !value, 0, 0),
        "execbuf fill",
    )?;
    ok(dev.wait(h2, -1), "wait")?;
    let mut got = vec![0u8; size as usize];
    ok(dev.pread(h2, 0, &mut got), "pread")?;
    ensure!(
        got.chunks(4).all(|c| c == (!value).to_le_bytes()),
        "GPU fill through pages fetched under the lock not visible"
    );
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("submit_locked_fetches") == 2,
        "second EXECBUF did not fetch under the lock: {d}"
    );
    println!(
        "  {} EXECBUFs, {} fetched their pages under the lock",
        d.get("gpu_requests"),
        d.get("submit_locked_fetches")
    );
    ok(dev.close(h), "close")?;
    ok(dev.close(h2), "close")
}

/// Freeing an object does not run on the engine's ring: freeing takes
/// `struct_mutex` and truncates, and the ring is what the OOM notifier's
/// callers and EXECBUF's populate wait on to make progress.  An object
/// closed while its 1 s batch runs is freed when that batch retires; a
/// batch on another object is queued behind it; `struct_mutex` is held
/// for 5 s from before the first batch retires.  The second batch must
/// retire while the lock is still held (within 3.5 s of the holder
/// taking it, 2.5 s after the first batch's end at the latest).  A
/// ring that frees the object itself waits for the holder, and the
/// second batch retires only after the 5 s.
fn retirement_does_not_wait_to_free_objects() -> TestResult {
    const HOLD_MS: u64 = 5000;
    const WAIT_NS: i64 = 3_500_000_000;
    let dev = ok(Device::open(), "open")?;
    let a = ok(dev.create(64 * PAGE), "create")?;
    let b = ok(dev.create(PAGE), "create")?;
    let holds = env::counter("lock_holds")?;
    let before = Counters::read()?;
    ok(
        dev.execbuf(&[(a, true)], uapi::OP_FILL, 1, 1_000_000_000, 0),
        "execbuf a",
    )?;
    ok(
        dev.execbuf(&[(b, true)], uapi::OP_FILL, 2, 0, 0),
        "execbuf b",
    )?;
    // The last handle goes while the batch runs: freed when it retires.
    ok(dev.close(a), "close a")?;
    let holder =
        std::thread::spawn(|| Control::open().and_then(|c| c.cmd(&format!("hold_lock {HOLD_MS}"))));
    let held = Instant::now();
    while env::counter("lock_holds")? == holds {
        ensure!(
            held.elapsed().as_secs() < 60,
            "hold_lock never took struct_mutex"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let t = Instant::now();
    // The second batch still queued when the lock was taken, or the
    // first one's freeing never met the held lock.  (GET_INFO would wait
    // for the lock; BUSY does not.)
    let queued = ok(dev.busy(b), "busy")?;
    let waited = dev.wait(b, WAIT_NS);
    let took = t.elapsed();
    holder
        .join()
        .map_err(|_| "holder thread panicked".to_string())??;
    ok(dev.wait(b, -1), "wait b")?;
    let d = Counters::read()?.since(&before);
    println!(
        "  lock held with the second batch queued: {queued}; it retired after {} ms \
         of the {HOLD_MS} ms hold",
        took.as_millis()
    );
    ensure!(
        queued,
        "both batches retired before struct_mutex was held: the test did not overlap them"
    );
    ok(
        waited,
        "the second batch, waited for while struct_mutex was held",
    )?;
    ensure!(
        d.get("objects_freed") >= 1,
        "the closed object was never freed: {d}"
    );
    ok(dev.close(b), "close b")
}

/// The address range of kernel function `name`, from /proc/kallsyms: its
/// address to the next symbol's.
fn kernel_function(name: &str) -> Result<(u64, u64), String> {
    let text =
        std::fs::read_to_string("/proc/kallsyms").map_err(|e| format!("/proc/kallsyms: {e}"))?;
    let mut addrs = Vec::new();
    let mut start = None;
    for l in text.lines() {
        let mut w = l.split_whitespace();
        let (Some(a), Some(_), Some(n)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let Ok(a) = u64::from_str_radix(a, 16) else {
            continue;
        };
        if n == name && w.next().is_none() {
            start = Some(a);
        }
        addrs.push(a);
    }
    let start = start.ok_or(format!("{name} not in /proc/kallsyms"))?;
    ensure!(start != 0, "kernel addresses hidden (kptr_restrict)");
    let end = addrs
        .into_iter()
        .filter(|&a| a > start)
        .min()
        .ok_or(format!("no symbol after {name}"))?;
    Ok((start, end))
}

/// fail_page_alloc armed for this thread (`task-filter`, `make-it-fail`)
/// and for the folios shmem allocates (`shmem_alloc_folio()` on the
/// stack), `times` failures; disarmed on drop.  A failed allocation is
/// what memory pressure gives, without the pressure.
struct FolioAllocFailures(Vec<Knob>);

const FAIL_PAGE_ALLOC: &str = "/sys/kernel/debug/fail_page_alloc";

impl FolioAllocFailures {
    fn arm(times: u32) -> Result<Self, String> {
        let (start, end) = kernel_function("shmem_alloc_folio")?;
        let mut this = Self(Vec::new());
        for (f, v) in [
            ("require-start", start.to_string()),
            ("require-end", end.to_string()),
            ("stacktrace-depth", "32".to_string()),
            ("task-filter", "Y".to_string()),
            ("ignore-gfp-wait", "N".to_string()),
            ("ignore-gfp-highmem", "N".to_string()),
            ("min-order", "0".to_string()),
            ("verbose", "0".to_string()),
            ("interval", "1".to_string()),
            ("space", "0".to_string()),
            ("times", times.to_string()),
            ("probability", "100".to_string()),
        ] {
            this.0
                .push(Knob::set(&format!("{FAIL_PAGE_ALLOC}/{f}"), &v)?);
        }
        this.0
            .push(Knob::set("/proc/thread-self/make-it-fail", "1")?);
        Ok(this)
    }

    /// Failures not injected yet.
    fn left(&self) -> Result<i64, String> {
        let p = format!("{FAIL_PAGE_ALLOC}/times");
        std::fs::read_to_string(&p)
            .map_err(|e| format!("{p}: {e}"))?
            .trim()
            .parse()
            .map_err(|e| format!("{p}: {e}"))
    }
}

impl Drop for FolioAllocFailures {
    fn drop(&mut self) {
        // This thread first, the probability next, the filters last.
        while let Some(k) = self.0.pop() {
            drop(k);
        }
    }
}

/// EXECBUF gets an object's pages before `struct_mutex`; when that fails
/// for memory while a batch is in flight, it waits for a batch to retire
/// (whose objects the next attempt may then purge or release) and tries
/// again (`populate_waits`), rather than fail a batch whose memory is one
/// retirement away (gem_shrink's `hang`).  Here both allocations of the
/// first attempt fail (fail_page_alloc, the light one and the one after
/// our own shrink) while a 1 s batch runs: the EXECBUF waits for it and
/// then runs, once, on its object.  The control, in the same test: the
/// same failures with nothing in flight, nothing to wait for: `ENOMEM` at
/// once, no wait counted.
fn populate_waits_for_a_retirement() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let size = 16 * PAGE;
    let value = 0x9a17_0001_u32;
    let h = ok(dev.create(size), "create")?;
    let busy = ok(dev.create(PAGE), "create")?;
    let before = Counters::read()?;
    let (r, left) = {
        let armed = FolioAllocFailures::arm(2)?;
        let r = dev.execbuf(&[(h, true)], uapi::OP_FILL, value, 0, 0);
        (r, armed.left()?)
    };
    let d = Counters::read()?.since(&before);
    ensure!(
        left == 0,
        "{left} of 2 allocation failures not injected: the populate did not allocate"
    );
    expect_err(
        r,
        libc::ENOMEM,
        "EXECBUF with failed allocations, nothing in flight",
    )?;
    ensure!(
        d.get("populate_waits") == 0,
        "a wait counted with nothing in flight: {d}"
    );
    // A batch in flight: the failed populate waits for it.
    ok(
        dev.execbuf(&[(busy, true)], uapi::OP_FILL, 1, 1_000_000_000, 0),
        "execbuf busy",
    )?;
    let before = Counters::read()?;
    let start = Instant::now();
    let (r, left) = {
        let armed = FolioAllocFailures::arm(2)?;
        let r = dev.execbuf(&[(h, true)], uapi::OP_FILL, value, 0, 0);
        (r, armed.left()?)
    };
    let took = start.elapsed();
    ensure!(left == 0, "{left} of 2 allocation failures not injected");
    ok(r, "EXECBUF with failed allocations, a batch in flight")?;
    ok(dev.wait(h, -1), "wait")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("populate_waits") == 1 && d.get("gpu_requests") == 1,
        "not one wait, then the batch: {d}"
    );
    check_fill_sized(&dev, h, value, size)?;
    println!(
        "  populate failed twice: with nothing in flight ENOMEM, with a 1 s batch in flight \
         one wait, then the batch ran ({} ms)",
        took.as_millis()
    );
    ok(dev.close(h), "close")?;
    ok(dev.close(busy), "close")
}

pub(super) const TESTS: &[Test] = &[
    ("gpu_fill_busy_wait", gpu_fill_busy_wait),
    ("gpu_hang_ends_by_timeout_and_reset", hang_ends),
    (
        "execbuf_refetches_pages_taken_back_before_the_lock",
        execbuf_refetches_pages_taken_back_before_the_lock,
    ),
    (
        "retirement_does_not_wait_to_free_objects",
        retirement_does_not_wait_to_free_objects,
    ),
    (
        "populate_waits_for_a_retirement",
        populate_waits_for_a_retirement,
    ),
];
