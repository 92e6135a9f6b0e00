// SPDX-License-Identifier: GPL-2.0

//! Rust halves of the KUnit suite in `rust/shims/kunit.c`.
//!
//! Each function checks one piece of kernel glue and returns 0 or a
//! negative errno, logging what went wrong.

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::ffi::{c_int, c_ulong};
use kernel::prelude::*;
use kernel::sync::Arc;

use crate::counters::Counter;
use crate::device::Device;
use crate::engine::Engine;
use crate::object::Object;
use crate::policy::{self, Decision, LockWait, MigrateMode, ObjectState, Refusal};
use crate::shmem::{PageRef, RawPage};
use crate::shrinker::{oom_notify, Reclaim, ShrinkScope};
use crate::sync::{now_ns, LockKey, TryMutex};
use crate::uapi;

extern "C" {
    fn movgem_kunit_page_lock(page: *mut RawPage);
    fn movgem_kunit_page_unlock(page: *mut RawPage);
    fn movgem_kunit_migrate_folio(page: *mut RawPage) -> c_int;
    fn movgem_kunit_drain_lru_all();
}

macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            pr_err!("kunit check failed: {}\n", stringify!($cond));
            return Err(EINVAL);
        }
    };
}

/// The decision table, as compiled into the module.
fn policy_table() -> Result {
    let idle = ObjectState {
        has_pages: true,
        pages_pin_count: 1,
        bind_count: 1,
        ..ObjectState::default()
    };
    let release = Decision::Release {
        unbind: true,
        vunmap: false,
    };
    check!(policy::decide(&idle, true, false) == release);
    check!(policy::decide(&idle, false, true) == Decision::Refuse(Refusal::DeviceSuspended));
    let active = ObjectState {
        active: true,
        ..idle
    };
    check!(policy::decide(&active, true, true) == Decision::Refuse(Refusal::Active));
    check!(policy::decide(&ObjectState::default(), true, true) == Decision::PassThrough);
    check!(policy::lock_wait(false, 10) == LockWait::Once);
    check!(policy::hook_lock_wait(MigrateMode::SyncLight, 10) == LockWait::Once);
    check!(policy::hook_lock_wait(MigrateMode::Sync, 10) == LockWait::For(10_000_000));
    Ok(())
}

/// The decision table, as compiled into the module.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_kunit_policy() -> c_int {
    errno(policy_table())
}

fn errno(r: Result) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

fn object_roundtrip() -> Result {
    const PAGES: usize = 16;
    // A device of its own: nothing the module's device counts or lists.
    let device = Device::new_for_test()?;
    let obj = Object::new(&device, PAGES, None)?;
    check!(obj.file().is_some_and(|f| f.is_movable()));
    check!(obj.hook_registered());
    obj.fill(42)?;
    {
        let mut locked = device.struct_mutex.lock();
        let offset = obj.bind(&mut locked)?;
        check!(obj.bind(&mut locked)? == offset);
        let st = obj.state(&mut locked);
        check!(st.pages_held() == PAGES);
        let snap = obj.snapshot(st);
        check!(snap.bind_count == 1 && snap.pages_pin_count == 1);
        let release = Decision::Release {
            unbind: true,
            vunmap: false,
        };
        check!(policy::decide(&snap, true, true) == release);
        let (bad, moved) = obj.verify(&mut locked, 42)?;
        check!(bad == 0 && moved == 0);
        let (bad, _) = obj.verify(&mut locked, 43)?;
        check!(bad == PAGES);
        obj.vmap(&mut locked)?;
        let snap = obj.snapshot(obj.state(&mut locked));
        check!(snap.vmap_cached && snap.pages_pin_count == 2);
        check!(
            policy::decide(&snap, true, true) == Decision::Refuse(Refusal::PinnedBeyondBindings)
        );
        obj.vunmap(&mut locked)?;
        check!(obj.vunmap(&mut locked).is_err());
        obj.unbind(&mut locked)?;
        check!(obj.unbind(&mut locked).is_err());
    }
    check!(device.purge_vmaps(true) == 0);
    obj.destroy();
    check!(!obj.hook_registered());
    let mut locked = device.struct_mutex.lock();
    check!(obj.state(&mut locked).pages_held() == 0);
    check!(obj.bind(&mut locked).is_err());
    Ok(())
}

/// An object's life: movable, registered, pattern, bind, vmap, verify,
/// destroy.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_kunit_object() -> c_int {
    errno(object_roundtrip())
}

static TEST_KEY: LockKey = LockKey::new();

fn trylock_timeout(timeout_ms: u32, elapsed: &mut u64) -> Result {
    let m = KBox::pin_init(
        TryMutex::new(0u32, kernel::c_str!("movgem_kunit"), &TEST_KEY),
        GFP_KERNEL,
    )?;
    let held = m.lock();
    check!(m.try_lock().is_none());
    let start = now_ns();
    check!(m
        .try_lock_for(policy::lock_wait(true, timeout_ms))
        .is_none());
    *elapsed = now_ns() - start;
    check!(m.try_lock_for(LockWait::Once).is_none());
    drop(held);
    check!(m
        .try_lock_for(policy::lock_wait(true, timeout_ms))
        .is_some());
    Ok(())
}

extern "C" {
    fn movgem_kunit_trylock_overrun_ns() -> u64;
}

/// The budget of [`trylock_budget`]'s attempts, in ms.
const BUDGET_MS: u32 = 20;

/// Attempts [`trylock_budget`] makes at most.
pub(crate) const BUDGET_ATTEMPTS: usize = 3;

/// KUnit `movgem_trylock_budget` (`rust/shims/kunit.c`, where the margin
/// is explained): the timed trylock gives up after its budget, not
/// before and not much after.  Up to [`BUDGET_ATTEMPTS`] attempts at a
/// held lock: every one must fail and last at least the budget, and one
/// must end within the margin past it.  `elapsed` gets each attempt's
/// time; returns the check's verdict and the attempts made.  debugfs
/// `control` runs the same check (`trylock_budget`), with
/// `debug_lock_wait_overrun_ms` as its negative control.
pub(crate) fn trylock_budget(elapsed: &mut [u64; BUDGET_ATTEMPTS]) -> (Result, usize) {
    let budget = u64::from(BUDGET_MS) * 1_000_000;
    // SAFETY: returns a constant; no preconditions.
    let margin = unsafe { movgem_kunit_trylock_overrun_ns() };
    for (i, e) in elapsed.iter_mut().enumerate() {
        if let Err(err) = trylock_timeout(BUDGET_MS, e) {
            return (Err(err), i + 1);
        }
        if *e < budget {
            pr_err!(
                "trylock budget: gave up after {} ns, before its {} ns\n",
                *e,
                budget
            );
            return (Err(EINVAL), i + 1);
        }
        if *e <= budget + margin {
            return (Ok(()), i + 1);
        }
    }
    pr_err!(
        "trylock budget: {} attempts each more than {} ns past the {} ns budget: {:?}\n",
        BUDGET_ATTEMPTS,
        margin,
        budget,
        elapsed
    );
    (Err(ERANGE), BUDGET_ATTEMPTS)
}

/// [`trylock_budget`] for KUnit: `elapsed_ns` (room for `room` values)
/// gets the attempts' times and `attempts` how many there were.
///
/// # Safety
///
/// `elapsed_ns` must be valid for writes of `room` values, `attempts`
/// for one.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_kunit_trylock_budget(
    elapsed_ns: *mut u64,
    room: c_int,
    attempts: *mut c_int,
) -> c_int {
    let mut elapsed = [0u64; BUDGET_ATTEMPTS];
    let (ret, n) = trylock_budget(&mut elapsed);
    let room = usize::try_from(room).unwrap_or(0).min(BUDGET_ATTEMPTS);
    // SAFETY: the caller passes pointers valid for these writes; at most
    // `room` values are written.
    unsafe {
        core::ptr::copy_nonoverlapping(elapsed.as_ptr(), elapsed_ns, room);
        *attempts = n as c_int;
    }
    errno(ret)
}

/// A folio lock the test holds, as `migrate_pages_batch()` holds its
/// source folios' locks while it allocates the next destination.
/// Unlocked on drop.
struct FolioLocked(PageRef);

impl FolioLocked {
    fn new(page: PageRef) -> Self {
        // SAFETY: `page` is a live page of a shmem folio (we hold a
        // reference); the test holds no other folio lock.
        unsafe { movgem_kunit_page_lock(page.as_ptr()) };
        Self(page)
    }
}

impl Drop for FolioLocked {
    fn drop(&mut self) {
        // SAFETY: locked by `new`, unlocked once, here.
        unsafe { movgem_kunit_page_unlock(self.0.as_ptr()) };
    }
}

/// `RUNNING` while the spawned OOM notification has not returned.
const RUNNING: u64 = u64::MAX;

/// Calls the OOM notifier of `engine` from a worker, as an allocating
/// task would; the returned cell gets what it reported.
fn spawn_oom_notify(engine: &Arc<Engine>) -> Result<Arc<AtomicU64>> {
    let done = Arc::new(AtomicU64::new(RUNNING), GFP_KERNEL)?;
    let (engine, cell) = (engine.clone(), done.clone());
    kernel::workqueue::system_unbound().try_spawn(GFP_KERNEL, move || {
        cell.store(oom_notify(&engine), Ordering::Release);
    })?;
    Ok(done)
}

/// Waits at most `ms` for `cond`, polling every 10 ms.
fn wait_for(ms: u32, mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..ms.div_ceil(10) {
        if cond() {
            return true;
        }
        // SAFETY: KUnit cases run in a kthread and may sleep.
        unsafe { kernel::bindings::msleep(10) };
    }
    cond()
}

/// Waits at most `ms` for the notification of [`spawn_oom_notify`].
fn notified(done: &AtomicU64, ms: u32) -> Option<u64> {
    wait_for(ms, || done.load(Ordering::Acquire) != RUNNING).then(|| done.load(Ordering::Acquire))
}

/// A listed object of `npages` pages, populated, then DONTNEED and idle:
/// the first thing any shrink purges.
fn purgeable_object(device: &Arc<Device>, npages: usize) -> Result<Arc<Object>> {
    let obj = device.create_object(npages, false)?;
    obj.populate()?;
    obj.madvise(&mut device.struct_mutex.lock(), uapi::MADV_DONTNEED)?;
    Ok(obj)
}

/// Whether the object's file lost its first page (truncated).
fn truncated(obj: &Object) -> bool {
    obj.file().is_some_and(|f| f.lookup_pfn(0).is_none())
}

const KUNIT_PAGES: usize = 16;

/// Review finding 1 (issue 26): the OOM notifier runs inside the
/// allocation that reached `out_of_memory()`, and a migration allocates
/// its next destination with earlier source folios locked (long-term
/// pins with `GFP_USER`, which may reach the OOM killer).  So the
/// notifier must not wait for a folio lock: it purges, defers the
/// truncation, and reports the purged pages.  Here the test holds a
/// folio of a purgeable object locked while the notifier runs; a
/// notifier that truncates inline waits for that lock (with `oom_lock`
/// held, in the kernel) and is still waiting after 3 s.
fn oom_notify_beside_a_locked_folio() -> Result {
    let device = Device::new_for_test()?;
    let engine = Engine::new(device.clone())?;
    let obj = purgeable_object(&device, KUNIT_PAGES)?;
    let locked = FolioLocked::new(obj.shmem()?.page(0)?);
    let done = spawn_oom_notify(&engine)?;
    let freed = notified(&done, 3000);
    drop(locked);
    if freed.is_none() {
        pr_err!("kunit: the OOM notifier waited 3 s for a folio lock\n");
        // It ends now that the folio is unlocked.
        notified(&done, 60_000);
    }
    device.flush_purges();
    let gone = truncated(&obj);
    device.close_object(&obj);
    let freed = freed.ok_or(EBUSY)?;
    check!(freed >= KUNIT_PAGES as u64);
    check!(gone);
    // What it reported is what it purged and deferred, nothing else.
    check!(oom_report_adds_up(&device, freed));
    check!(counter(&device, Counter::OomDeferredPages) == freed);
    Ok(())
}

/// A counter of a test device (whose counters start at zero).
fn counter(device: &Device, c: Counter) -> u64 {
    device
        .counters
        .value(c as usize)
        .map_or(0, |v| v.load(Ordering::Relaxed))
}

/// Whether the OOM notifier's report, `freed` (its one call on this
/// device), is the sum of its parts, each counted: purged pages whose
/// truncation it deferred, released pages swap has room for, and busy
/// purgeable pages inside the retire window.
fn oom_report_adds_up(device: &Device, freed: u64) -> bool {
    let parts = [
        Counter::OomDeferredPages,
        Counter::OomReclaimablePages,
        Counter::OomRetirePendingPages,
    ];
    let sum: u64 = parts.iter().map(|&c| counter(device, c)).sum();
    pr_info!(
        "kunit: OOM notifier reported {freed}: deferred {}, reclaimable {}, retire pending {}\n",
        counter(device, parts[0]),
        counter(device, parts[1]),
        counter(device, parts[2])
    );
    sum == freed && counter(device, Counter::OomFreedPages) == freed
}

/// The OOM notifier never waits for a folio lock.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_kunit_oom_folio_locked() -> c_int {
    errno(oom_notify_beside_a_locked_folio())
}

/// Review finding 4 (issue 26): deferred truncations run side by side,
/// so one waiting for a folio lock holds up no other, and the OOM
/// notifier counts purges whose truncation is still to come (else it
/// reports 0 while they are about to free memory, and the OOM killer
/// acts early).  Two purgeable objects, the first with a folio locked by
/// the test, purged as direct reclaim purges them: the second must be
/// truncated within 3 s, and the notifier must report the first's pages.
fn deferred_purges_side_by_side() -> Result {
    let device = Device::new_for_test()?;
    let engine = Engine::new(device.clone())?;
    let stuck = purgeable_object(&device, KUNIT_PAGES)?;
    let other = purgeable_object(&device, KUNIT_PAGES)?;
    let locked = FolioLocked::new(stuck.shmem()?.page(0)?);
    let scope = ShrinkScope {
        writeback: false,
        truncate: false,
        ..ShrinkScope::ALL
    };
    let purged = device.shrink(u64::MAX, scope).map_or(0, |s| s.purged);
    let other_gone = wait_for(3000, || truncated(&other));
    let done = spawn_oom_notify(&engine)?;
    let freed = notified(&done, 3000);
    drop(locked);
    notified(&done, 60_000);
    device.flush_purges();
    let stuck_gone = truncated(&stuck);
    device.close_object(&stuck);
    device.close_object(&other);
    pr_info!(
        "kunit: purged {purged}, other truncated beside the stuck one: {other_gone}, \
         OOM notifier reported {freed:?} pages\n"
    );
    check!(purged == 2);
    check!(other_gone);
    check!(freed.is_some_and(|f| f >= KUNIT_PAGES as u64));
    check!(stuck_gone);
    // The report adds up, and counts no purge twice: the stuck one's
    // pages, and the other's if its truncation had not run yet.
    check!(freed.is_some_and(|f| oom_report_adds_up(&device, f)));
    check!(counter(&device, Counter::OomDeferredPages) <= 2 * KUNIT_PAGES as u64);
    Ok(())
}

/// Deferred purges run side by side and count for the OOM notifier.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_kunit_deferred_purges() -> c_int {
    errno(deferred_purges_side_by_side())
}

extern "C" {
    fn movgem_kunit_nvcsw() -> c_ulong;
}

/// Voluntary context switches of the current task so far: a sleep adds
/// one, preemption does not.
fn nvcsw() -> c_ulong {
    // SAFETY: reads a field of the current task; no preconditions.
    unsafe { movgem_kunit_nvcsw() }
}

/// The vmap purge notifier inside our own `vmap()`, which holds
/// `struct_mutex`: it gives up at once, counted, without a sleep; with the
/// lock free, the same call purges the cached mapping and counts nothing.
fn purge_vmaps_self_locked() -> Result {
    const PAGES: usize = 16;
    let device = Device::new_for_test()?;
    // Listed, so that the purge walks it.
    let obj = device.create_object(PAGES, false)?;
    let contended = || {
        device
            .counters
            .value(Counter::VmapPurgeContended as usize)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    };
    let out = (|| {
        let mut locked = device.struct_mutex.lock();
        obj.vmap(&mut locked)?;
        obj.vunmap(&mut locked)?;
        let before = contended();
        let switches = nvcsw();
        let freed = device.purge_vmaps(false);
        let slept = nvcsw() != switches;
        if slept {
            pr_err!("purge_vmaps slept for a struct_mutex its own task holds\n");
        }
        check!(freed == 0);
        check!(!slept);
        check!(contended() == before + 1);
        check!(obj.snapshot(obj.state(&mut locked)).vmap_cached);
        drop(locked);
        let before = contended();
        check!(device.purge_vmaps(false) == PAGES);
        check!(contended() == before);
        Ok(())
    })();
    device.close_object(&obj);
    out
}

/// The vmap purge notifier under its own task's `struct_mutex`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_kunit_purge_self_locked() -> c_int {
    errno(purge_vmaps_self_locked())
}

/// What a shrinker's `scan_objects` returns to stop the scan.
const SHRINK_STOP: u64 = c_ulong::MAX as u64;

/// Reclaim that may not enter the filesystem (`GFP_NOFS`, as every
/// allocation under `struct_mutex` is) gets nothing from the shrinker:
/// the scan is refused and counted (`shrink_nofs`), and an idle purgeable
/// object keeps its pages; the same scan with `GFP_KERNEL` (the control)
/// purges it and leaves `shrink_nofs` alone.  Both go through the
/// registered shrinker's `scan_objects`, with the `shrink_control` that
/// `shrink_slab()` passes.  An in-guest test cannot get there on demand:
/// direct reclaim scans a shrinker this small only at its lowest
/// priorities, once the LRU lists failed at every higher one, and a NOFS
/// allocation in that state is neither failed nor OOM-killed but retried
/// until kswapd frees memory.
fn shrinker_refuses_nofs() -> Result {
    let device = Device::new_for_test()?;
    let engine = Engine::new(device.clone())?;
    let reclaim = Reclaim::new(engine)?;
    let obj = purgeable_object(&device, KUNIT_PAGES)?;
    let count = |c: Counter| {
        device
            .counters
            .value(c as usize)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    };
    let held = || obj.state(&mut device.struct_mutex.lock()).pages_held();
    let out = (|| {
        check!(device.shrink_count() >= KUNIT_PAGES as u64);
        let (nofs, scans) = (count(Counter::ShrinkNoFs), count(Counter::ShrinkScans));
        let ret = reclaim.scan_as(false, 128);
        pr_info!("kunit: NOFS scan returned {ret:#x}\n");
        check!(ret == SHRINK_STOP);
        check!(count(Counter::ShrinkNoFs) == nofs + 1);
        check!(count(Counter::ShrinkScans) == scans);
        check!(!obj.purged() && held() == KUNIT_PAGES);
        check!(device.shrink_count() >= KUNIT_PAGES as u64);
        let ret = reclaim.scan_as(true, 128);
        pr_info!("kunit: GFP_KERNEL scan returned {ret}\n");
        check!(ret >= KUNIT_PAGES as u64 && ret != SHRINK_STOP);
        check!(count(Counter::ShrinkNoFs) == nofs + 1);
        check!(count(Counter::ShrinkScans) == scans + 1);
        check!(obj.purged() && held() == 0);
        Ok(())
    })();
    drop(reclaim);
    device.flush_purges();
    device.close_object(&obj);
    out
}

/// The shrinker refuses reclaim without `__GFP_FS`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_kunit_shrink_nofs() -> c_int {
    errno(shrinker_refuses_nofs())
}

/// The migrate hook in a task that holds `struct_mutex` refuses at once
/// (`refused_lock_owned`): waiting would be waiting for itself.  Here the
/// test's task holds the lock and calls shmem's `migrate_folio` for a
/// folio of a populated object, as migration would; the hook must
/// answer `-EBUSY` for that reason, and the folio stays.  The control:
/// the same call with the lock free gets past the lock (the object is
/// made active, so that the hook refuses it as such, touching nothing).
///
/// No user space action reaches this: every holder of `struct_mutex`
/// runs in a NOFS scope, and the migration users that run inside an
/// allocation (compaction, `alloc_contig_range()` for CMA) never isolate
/// a file folio in NOFS context (`isolate_migratepages_block()`), while
/// the others (NUMA hinting faults, `memfd_pin_folios()`, move_pages,
/// offlining) never run in a task holding the lock: the driver touches
/// no user memory and pins nothing under it.  The refusal is the guard
/// should that change.
fn hook_refuses_own_lock() -> Result {
    let device = Device::new_for_test()?;
    let obj = device.create_object(KUNIT_PAGES, false)?;
    let count = |r: Refusal| device.counters.refusals(r);
    let out = (|| {
        obj.populate()?;
        let page = obj.shmem()?.page(0)?;
        let pfn = page.pfn();
        // SAFETY: no lock held; may sleep, as KUnit cases may.
        unsafe { movgem_kunit_drain_lru_all() };
        let (owned, active) = (count(Refusal::LockOwned), count(Refusal::Active));
        let ret = {
            let _held = device.struct_mutex.lock();
            // SAFETY: a page of the object's file, on which `page` holds a
            // reference for the whole call; the call is refused.
            unsafe { movgem_kunit_migrate_folio(page.as_ptr()) }
        };
        pr_info!("kunit: migrate_folio under struct_mutex returned {ret}\n");
        check!(ret == EBUSY.to_errno());
        check!(count(Refusal::LockOwned) == owned + 1);
        check!(count(Refusal::Active) == active);
        // The control: the lock free, the object active.
        obj.activate();
        // SAFETY: as above.
        let ret = unsafe { movgem_kunit_migrate_folio(page.as_ptr()) };
        obj.retire();
        pr_info!("kunit: migrate_folio with the lock free returned {ret}\n");
        check!(ret == EBUSY.to_errno());
        check!(count(Refusal::LockOwned) == owned + 1);
        check!(count(Refusal::Active) == active + 1);
        check!(obj.file().and_then(|f| f.lookup_pfn(0)) == Some(pfn));
        Ok(())
    })();
    device.close_object(&obj);
    out
}

/// The hook refuses a folio at once when its task holds `struct_mutex`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_kunit_hook_own_lock() -> c_int {
    errno(hook_refuses_own_lock())
}
