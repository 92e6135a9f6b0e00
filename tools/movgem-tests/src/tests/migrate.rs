// SPDX-License-Identifier: GPL-2.0

//! The migrate hook on objects the GPU bound, in `hook=release` (the 2016
//! design) where the mode matters: a bound, idle object is released and
//! moved with its data intact (by compaction and by move_pages(2)); an
//! active object, a pinned binding, a suspended device, a vmap'd or
//! purgeable object and a contended lock are refused.  In-place
//! migration has its own file, `inplace.rs`.

use std::time::{Duration, Instant};

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, compact, fragment_for, Control, Counters, GpuAwake, Param};
use movgem_guest::{ensure, TestResult};

use super::common::{check_fill_sized, expect_err, filled_object, move_to, ok, where_are, PAGE};
use super::trace::{read_events, tracefs_write, Event};
use super::Test;

/// Object size of the migration tests: 8 MiB.
const BIG: u64 = 8 << 20;

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

fn bound_idle_object_migrates() -> TestResult {
    let _mode = Param::set("hook", "release")?;
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

fn move_pages_migrates_bound_object() -> TestResult {
    let _mode = Param::set("hook", "release")?;
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let size = 8 << 20;
    let value = 0x0bad_cafe;
    let h = filled_object(&dev, size, value)?;
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

        env::set_param("hook", "off")?;
        let before = Counters::read()?;
        let moved_off = move_to(&addrs, &there);
        env::set_param("hook", "release")?;
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
        env::set_param("hook", "off")?;
        let moved_back = move_to(&addrs, &here);
        env::set_param("hook", "release")?;
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

fn active_object_is_refused() -> TestResult {
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

fn pinned_vma_is_refused() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let h = scattered_gpu_object(&dev, 9)?;
    ok(dev.pin(h), "pin")?;
    let d = env::compact_counted()?;
    ok(dev.unpin(h), "unpin")?;
    // PIN pins the folios through GUP (`memfd_pin_folios()`): the hook
    // refuses them at once, before it looks at the object.
    ensure!(
        d.get("refused_dma_pinned") > 0,
        "pinned binding not refused: {d}"
    );
    ensure!(d.get("migrated") == 0, "pinned pages moved: {d}");
    check_fill(&dev, h, 9)?;
    ok(dev.close(h), "close")
}

fn suspended_device_refuses() -> TestResult {
    let _mode = Param::set("hook", "release")?;
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

fn vmap_and_purge() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let h = scattered_gpu_object(&dev, 13)?;
    ok(dev.vmap(h), "vmap")?;
    let before = Counters::read()?;
    compact()?;
    let d = Counters::read()?.since(&before);
    // VMAP pins the folios through GUP (`memfd_pin_folios()`).
    ensure!(
        d.get("refused_dma_pinned") > 0 && d.get("migrated") == 0,
        "vmap-pinned pages not refused: {d}"
    );
    // The kernel's vmap purge notifier, from alloc_vmap_area() out of
    // space (debugfs `vmap_overflow`).
    let ctl = Control::open()?;
    ctl.cmd("vmap_overflow 0")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("vmap_purges") > 0 && d.get("vmap_purged_pages") == 0,
        "the notifier did not run, or purged a pinned mapping: {d}"
    );
    ok(dev.vunmap(h), "vunmap")?;
    let info = ok(dev.info(), "info")?;
    ensure!(
        info.cached_vmaps >= 1,
        "unpinned mapping not cached: {info:?}"
    );
    ctl.cmd("vmap_overflow 0")?;
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

/// The kernel calls the vmap purge notifier inside whatever vmalloc
/// allocation found no room, which another task may make while holding
/// `struct_mutex`, or our own `vmap()` under it.  The purge then gives up
/// (`vmap_purge_contended`: after the lock budget, or at once when the
/// lock is the calling task's own) and the cached mapping stays.  The
/// control, in the same test: with the lock free, the same notifier call
/// purges the mapping, and nothing is counted as contended.
fn vmap_purge_gives_up_on_contended_lock() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let size = 1u64 << 20;
    let h = filled_object(&dev, size, 29)?;
    let out = (|| {
        ok(dev.vmap(h), "vmap")?;
        ok(dev.vunmap(h), "vunmap")?;
        let cached = || -> Result<u64, String> { Ok(ok(dev.info(), "info")?.cached_vmaps) };
        ensure!(cached()? >= 1, "no cached mapping after VMAP and VUNMAP");
        let ctl = Control::open()?;
        // Held by another task: one notifier call, refused after the budget.
        let (d, _, _) = under_held_lock(2000, || -> Result<Counters, String> {
            let before = Counters::read()?;
            ctl.cmd("vmap_overflow 0")?;
            Ok(Counters::read()?.since(&before))
        })?;
        let d = d?;
        ensure!(
            d.get("vmap_purges") == 1
                && d.get("vmap_purge_contended") == 1
                && d.get("vmap_purged_pages") == 0,
            "the notifier with struct_mutex held by another task: {d}"
        );
        // Held by the calling task, as inside our own vmap().
        let before = Counters::read()?;
        ctl.cmd("vmap_overflow 1")?;
        let d = Counters::read()?.since(&before);
        ensure!(
            d.get("vmap_purges") == 1
                && d.get("vmap_purge_contended") == 1
                && d.get("vmap_purged_pages") == 0,
            "the notifier with struct_mutex held by its own task: {d}"
        );
        ensure!(cached()? >= 1, "a contended purge dropped the mapping");
        // The control: the lock free.
        let before = Counters::read()?;
        ctl.cmd("vmap_overflow 0")?;
        let d = Counters::read()?.since(&before);
        ensure!(
            d.get("vmap_purge_contended") == 0 && d.get("vmap_purged_pages") == size / PAGE,
            "the notifier with struct_mutex free: {d}"
        );
        ensure!(cached()? == 0, "the purge left the mapping cached");
        println!(
            "  vmap purge notifier: gave up with struct_mutex held by another task and by its \
             own; with it free, purged {} pages in {} calls",
            d.get("vmap_purged_pages"),
            d.get("vmap_purges")
        );
        check_fill_sized(&dev, h, 29, size)
    })();
    let _ = dev.close(h);
    out
}

fn madvise() -> TestResult {
    let _mode = Param::set("hook", "release")?;
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

/// Runs `work` while debugfs `hold_lock` keeps `struct_mutex` for
/// `hold_ms`, starting once the holder has the lock (however long a
/// loaded machine takes to run it: the tests need the overlap), with the
/// hook's `movgem_migrate_folio` events traced.  Returns what `work`
/// returned, how long it took, and the events.
fn under_held_lock<T>(
    hold_ms: u64,
    work: impl FnOnce() -> T,
) -> Result<(T, Duration, Vec<Event>), String> {
    tracefs_write("buffer_size_kb", "8192")?;
    tracefs_write("events/movgem/movgem_migrate_folio/enable", "1")?;
    tracefs_write("trace", "")?;
    let holds = env::counter("lock_holds")?;
    let holder = std::thread::spawn(move || {
        Control::open().and_then(|c| c.cmd(&format!("hold_lock {hold_ms}")))
    });
    let held = Instant::now();
    while env::counter("lock_holds")? == holds {
        if held.elapsed() >= Duration::from_secs(60) {
            return Err("hold_lock never took struct_mutex".to_string());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    let out = work();
    let took = start.elapsed();
    holder
        .join()
        .map_err(|_| "holder thread panicked".to_string())??;
    tracefs_write("events/movgem/movgem_migrate_folio/enable", "0")?;
    let events = read_events()?;
    tracefs_write("trace", "")?;
    Ok((out, took, events))
}

/// The hook's refusals on the contended lock in `events`: each one's
/// migration mode and how long it waited for the lock.
fn contended_refusals(events: &[Event]) -> impl Iterator<Item = (&str, u64)> {
    events
        .iter()
        .filter(|(n, f)| {
            n == "movgem_migrate_folio"
                && f.get("reason").map(String::as_str) == Some("refused_lock_contended")
        })
        .map(|(_, f)| {
            let mode = f.get("mode").map_or("", String::as_str);
            let wait = f
                .get("wait_ns")
                .and_then(|w| w.parse().ok())
                .unwrap_or(u64::MAX);
            (mode, wait)
        })
}

fn lock_contention() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let h = scattered_gpu_object(&dev, 19)?;
    const HOLD_MS: u64 = 2000;
    let budget_ns = env::param("lock_timeout_ms")?
        .parse::<u64>()
        .map_err(|e| format!("lock_timeout_ms: {e}"))?
        * 1_000_000;
    // This test's refusals, from the trace (the counter
    // `hook_lock_wait_max_us` is a maximum over the module's life).
    let (compacted, took, events) = under_held_lock(HOLD_MS, || {
        let before = Counters::read()?;
        compact()?;
        Ok::<_, String>(Counters::read()?.since(&before))
    })?;
    let d = compacted?;
    let contended = d.get("refused_lock_contended");
    ensure!(contended > 0, "no refusal while struct_mutex was held: {d}");
    // Each refusal waits at most lock_timeout_ms (10 ms): while the lock
    // stays held (2 s, less the few ms before compaction starts), that is
    // about 200 refusals; allow 10x per refusal (100 ms).
    ensure!(
        contended >= (HOLD_MS - 200) / 100,
        "only {contended} refusals: the hook waited too long"
    );
    // The compact_memory sysctl migrates in MIGRATE_SYNC, the one mode
    // that waits: every refusal on the held lock waited its budget, and
    // the budget, not the holder, ended the wait.  The margin is the
    // host's: a TCG vCPU on a loaded 2-core machine is descheduled for
    // tens of milliseconds (68 ms measured with three guests beside this
    // one; 40 ms failed there), so 200 ms, a tenth of the hold; a hook
    // that waited for the holder waits up to the whole 2 s.
    let waits: Vec<u64> = contended_refusals(&events)
        .filter(|(mode, _)| *mode == "sync")
        .map(|(_, wait)| wait)
        .collect();
    let shortest = waits.iter().copied().min().unwrap_or(0);
    let longest = waits.iter().copied().max().unwrap_or(0);
    println!(
        "  {contended} folios refused on the contended lock; compaction took {} ms; \
         {} traced sync refusals waited {shortest}-{longest} ns (budget {budget_ns} ns)",
        took.as_millis(),
        waits.len()
    );
    ensure!(!waits.is_empty(), "no MIGRATE_SYNC refusal traced");
    ensure!(
        shortest >= budget_ns && longest <= budget_ns + 200_000_000,
        "refusals waited {shortest}-{longest} ns for a {budget_ns} ns budget"
    );
    check_fill(&dev, h, 19)?;
    ok(dev.close(h), "close")
}

/// Only `MIGRATE_SYNC` may wait for `struct_mutex`.  Direct compaction
/// (here a hugepage allocation) migrates in `MIGRATE_ASYNC`, then
/// `MIGRATE_SYNC_LIGHT`, where it falls back to one folio at a time: a
/// hook that waited its budget there (10 ms) for every folio would keep
/// each source unmapped that long, about 32 x 10 ms per pass.  With the
/// lock held, every synchronous refusal of that allocation must be
/// `mode=light`, and come after one try: the wait is bounded by what the
/// host lets a vCPU run, so a tenth of them may stall past the budget,
/// but a hook that waits the budget passes it every time.
fn sync_light_compaction_tries_the_lock_once() -> TestResult {
    let _awake = GpuAwake::new()?;
    let dev = ok(Device::open(), "open")?;
    let h = scattered_gpu_object(&dev, 23)?;
    const HOLD_MS: u64 = 6000;
    let budget_ns = env::param("lock_timeout_ms")?
        .parse::<u64>()
        .map_err(|e| format!("lock_timeout_ms: {e}"))?
        * 1_000_000;
    let (grown, took, events) = under_held_lock(HOLD_MS, || {
        std::fs::write("/proc/sys/vm/nr_hugepages", "100000")
            .map_err(|e| format!("nr_hugepages: {e}"))
    })?;
    let shrunk =
        std::fs::write("/proc/sys/vm/nr_hugepages", "0").map_err(|e| format!("nr_hugepages: {e}"));
    grown?;
    shrunk?;
    let refused: Vec<(&str, u64)> = contended_refusals(&events)
        .filter(|(mode, _)| *mode != "async")
        .collect();
    let light = refused.iter().filter(|(m, _)| *m == "light").count();
    let waited = refused.iter().filter(|(_, w)| *w >= budget_ns).count();
    let longest = refused.iter().map(|(_, w)| *w).max().unwrap_or(0);
    println!(
        "  hugepage allocation took {} ms under the held lock: {} synchronous refusals \
         ({light} light), {waited} waited the budget, longest {longest} ns",
        took.as_millis(),
        refused.len()
    );
    ensure!(
        !refused.is_empty(),
        "no synchronous refusal while struct_mutex was held: the allocation did not \
         compact around the object"
    );
    ensure!(
        light == refused.len(),
        "{} of {} synchronous refusals of direct compaction were not MIGRATE_SYNC_LIGHT",
        refused.len() - light,
        refused.len()
    );
    ensure!(
        waited * 10 <= refused.len(),
        "{waited} of {} MIGRATE_SYNC_LIGHT refusals waited the {budget_ns} ns budget",
        refused.len()
    );
    check_fill(&dev, h, 23)?;
    ok(dev.close(h), "close")
}

pub(super) const TESTS: &[Test] = &[
    (
        "gpu_bound_idle_object_migrates_data_intact",
        bound_idle_object_migrates,
    ),
    (
        "gpu_move_pages_migrates_bound_object",
        move_pages_migrates_bound_object,
    ),
    ("gpu_active_object_is_refused", active_object_is_refused),
    ("gpu_pinned_vma_is_refused", pinned_vma_is_refused),
    (
        "runtime_pm_suspends_and_hook_refuses",
        suspended_device_refuses,
    ),
    ("vmap_pins_then_purge_releases_unpinned", vmap_and_purge),
    (
        "vmap_purge_gives_up_on_contended_lock",
        vmap_purge_gives_up_on_contended_lock,
    ),
    ("madvise_dontneed_purges_and_refuses", madvise),
    ("lock_contention_refused_within_budget", lock_contention),
    (
        "lock_contention_sync_light_tries_once",
        sync_light_compaction_tries_the_lock_once,
    ),
];
