// SPDX-License-Identifier: GPL-2.0

//! /sys/kernel/debug/movgem/: one read-only file per counter,
//! `drop_caches`, and the `control` file, which drives one self-test
//! object so that the in-guest tests can exercise the hook without the
//! uAPI.  Every file's data is what it shows or acts on (a counter, the
//! [`Debugfs`] owner): no callback reaches a global.
//!
//! Commands (one per write): `create <pages> <seed>`, `bind`, `unbind`,
//! `pin` and `unpin` (a page pin beyond the binding), `active <0|1>`,
//! `purgeable <0|1>`, `vmap`, `vunmap`, `verify`, `destroy`; and, for the
//! whole device, `purge_vmaps` (what the vmap purge notifier does, called
//! directly), `vmap_overflow <0|1>` (runs `alloc_vmap_area()` out of
//! vmalloc space, so that the kernel calls the vmap purge notifier; with
//! 1 while this task holds `struct_mutex`, as inside our own `vmap()`),
//! `reset` (ends every GPU request), `hold_lock <ms>` (holds
//! `struct_mutex`, to test the hook's budget), `runtime_pm <0|1>`
//! (disables runtime PM with the device left as it is, as a system sleep
//! does, and enables it again) and `writeback <pages>` (swap writeback of
//! at most that many pages of the self-test object's file); and
//! `trylock_budget`, the check of KUnit `movgem_trylock_budget` run again
//! (`EIO` if it fails; its attempts and their longest time in the
//! report), for its negative control with `debug_lock_wait_overrun_ms`.
//! Reading the file reports `key value` lines.

use core::fmt::Write;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kernel::ffi::{c_char, c_int, c_void};
use kernel::prelude::*;
use kernel::sync::Arc;

use crate::counters::{self, Counter};
use crate::device::{Device, DeviceLocked};
use crate::engine::Engine;
use crate::object::Object;
use crate::shrinker;

// `struct dentry` is opaque here: bindgen's layout of it is not FFI-safe.
extern "C" {
    fn movgem_debugfs_init() -> *mut c_void;
    fn movgem_debugfs_add_counter(dir: *mut c_void, name: *const c_char, value: *const u64);
    fn movgem_debugfs_add_control(dir: *mut c_void, owner: *mut c_void);
    fn movgem_debugfs_remove(dir: *mut c_void);
}

/// Largest self-test object: 1 GiB of 4 KiB pages.
const MAX_PAGES: u64 = 1 << 18;

/// Results of the last `verify`, and of the last `trylock_budget`.
#[derive(Default, Clone, Copy)]
struct VerifyResult {
    runs: u64,
    bad_pages: u64,
    moved_pages: u64,
    budget_runs: u64,
    budget_attempts: u64,
    budget_longest_ns: u64,
}

/// The debugfs directory of an engine's device, and the self-test
/// bookkeeping behind `control` (the self-test object itself lives in
/// the device's locked state).  The files point at it; it removes them
/// (waiting for callers in flight) on drop.
///
/// # Invariants
///
/// While `dir` is non-NULL the files below it are live, with `self` (or
/// one of `device.counters`) as their data; `self` is pinned.
#[pin_data(PinnedDrop)]
pub(crate) struct Debugfs {
    engine: Arc<Engine>,
    device: Arc<Device>,
    dir: core::sync::atomic::AtomicPtr<c_void>,
    seed: AtomicU64,
    /// Runtime PM disabled by `runtime_pm 0` (enabled again on drop).
    pm_disabled: AtomicBool,
    #[pin]
    last: kernel::sync::SpinLock<VerifyResult>,
}

// SAFETY: `dir` is only handed to debugfs, which any task may call; the
// other fields are `Send` and `Sync`.
unsafe impl Send for Debugfs {}
// SAFETY: as above.
unsafe impl Sync for Debugfs {}

impl Debugfs {
    /// Creates /sys/kernel/debug/movgem/ for `engine`'s device.
    pub(crate) fn new(engine: Arc<Engine>) -> Result<Pin<KBox<Self>>> {
        let device = engine.device().clone();
        let this = KBox::pin_init(
            pin_init!(Self {
                engine,
                device,
                dir: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
                seed: AtomicU64::new(0),
                pm_disabled: AtomicBool::new(false),
                last <- kernel::new_spinlock!(VerifyResult::default(), "movgem_verify"),
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: no preconditions; errors come back as error pointers,
        // which every debugfs call below accepts.
        let dir = NonNull::new(unsafe { movgem_debugfs_init() }).ok_or(ENOMEM)?;
        this.dir.store(dir.as_ptr(), Ordering::Release);
        for (id, name) in counters::NAMES.iter().enumerate() {
            let Some(value) = this.device.counters.value(id) else {
                continue;
            };
            // SAFETY: `dir` is a debugfs directory, `name` a static
            // NUL-terminated string, and `value` lives in the device,
            // which outlives the file (drop removes it first).
            unsafe { movgem_debugfs_add_counter(dir.as_ptr(), name.as_char_ptr(), value.as_ptr()) };
        }
        let owner: *const Self = &*this;
        // SAFETY: as above; `owner` is pinned and removes the files before
        // it goes away.
        unsafe { movgem_debugfs_add_control(dir.as_ptr(), owner.cast_mut().cast()) };
        Ok(this)
    }

    fn selftest(locked: &DeviceLocked) -> Result<Arc<Object>> {
        locked.selftest.clone().ok_or(ENOENT)
    }

    /// Runs one command.
    pub(crate) fn run(&self, cmd: &str) -> Result {
        let mut words = cmd.split_ascii_whitespace();
        let verb = words.next().ok_or(EINVAL)?;
        let mut arg = || -> Result<u64> {
            let w = words.next().ok_or(EINVAL)?;
            w.parse::<u64>().map_err(|_| EINVAL)
        };
        match verb {
            "create" => {
                let pages = arg()?;
                let seed = arg()?;
                if pages == 0 || pages > MAX_PAGES {
                    return Err(EINVAL);
                }
                if self.device.struct_mutex.lock().selftest.is_some() {
                    return Err(EEXIST);
                }
                let obj = Object::new(&self.device, pages as usize, None)?;
                if let Err(e) = obj.fill(seed) {
                    obj.destroy();
                    return Err(e);
                }
                let mut locked = self.device.struct_mutex.lock();
                if locked.selftest.is_some() {
                    drop(locked);
                    obj.destroy();
                    return Err(EEXIST);
                }
                locked.selftest = Some(obj);
                self.seed.store(seed, Ordering::Relaxed);
                let mut last = self.last.lock();
                *last = VerifyResult {
                    budget_runs: last.budget_runs,
                    budget_attempts: last.budget_attempts,
                    budget_longest_ns: last.budget_longest_ns,
                    ..VerifyResult::default()
                };
                Ok(())
            }
            "destroy" => {
                let obj = self
                    .device
                    .struct_mutex
                    .lock()
                    .selftest
                    .take()
                    .ok_or(ENOENT)?;
                obj.destroy();
                Ok(())
            }
            "gtt_check" => {
                // Every entry of every binding against the page cache.
                let mut locked = self.device.struct_mutex.lock();
                let mut walk = locked.walk(true);
                let (mut checked, mut wrong) = (0, 0);
                while let Some(obj) = walk.next(&mut locked) {
                    let (c, w) = obj.gtt_check(&mut locked);
                    checked += c;
                    wrong += w;
                }
                self.device.counters.add(Counter::GttChecked, checked);
                self.device.counters.add(Counter::GttMismatches, wrong);
                Ok(())
            }
            "purge_vmaps" => {
                self.device.purge_vmaps(true);
                Ok(())
            }
            "vmap_overflow" => {
                let own = match arg()? {
                    0 => false,
                    1 => true,
                    _ => return Err(EINVAL),
                };
                let _held = own.then(|| self.device.struct_mutex.lock());
                shrinker::vmap_overflow()
            }
            "reset" => {
                self.engine.reset();
                Ok(())
            }
            "runtime_pm" => {
                // Test aid: one disable at most, undone by `runtime_pm 1`.
                let disable = match arg()? {
                    0 => true,
                    1 => false,
                    _ => return Err(EINVAL),
                };
                if self.pm_disabled.swap(disable, Ordering::AcqRel) != disable {
                    self.device.pm.set_enabled(!disable);
                }
                Ok(())
            }
            "writeback" => {
                // Test aid: what the shrinker does after a release, with
                // the page budget given.
                let budget = usize::try_from(arg()?).map_err(|_| EINVAL)?;
                let obj = Self::selftest(&self.device.struct_mutex.lock())?;
                let n = obj.shmem()?.writeback(budget);
                self.device.counters.add(Counter::WritebackPages, n as u64);
                Ok(())
            }
            "trylock_budget" => {
                let mut elapsed = [0u64; crate::kunit::BUDGET_ATTEMPTS];
                let (verdict, n) = crate::kunit::trylock_budget(&mut elapsed);
                let mut last = self.last.lock();
                last.budget_runs += 1;
                last.budget_attempts = n as u64;
                last.budget_longest_ns = elapsed.iter().copied().max().unwrap_or(0);
                // EIO, whatever the check's own error: the writer tells a
                // failed check from a command it could not run.
                verdict.map_err(|_| EIO)
            }
            "hold_lock" => {
                // Test aid: keep struct_mutex busy, as a long ioctl would.
                let ms = arg()?.min(10_000) as u32;
                let _gem = self.device.struct_mutex.lock();
                self.device.counters.inc(Counter::LockHolds);
                // SAFETY: process context, no spinlock held: may sleep.
                unsafe { kernel::bindings::msleep(ms) };
                Ok(())
            }
            "bind" | "unbind" | "pin" | "unpin" | "active" | "purgeable" | "vmap" | "vunmap" => {
                let value = if matches!(verb, "active" | "purgeable") {
                    match arg()? {
                        0 => false,
                        1 => true,
                        _ => return Err(EINVAL),
                    }
                } else {
                    false
                };
                let mut locked = self.device.struct_mutex.lock();
                let obj = Self::selftest(&locked)?;
                match verb {
                    "bind" => obj.bind(&mut locked).map(|_| ()),
                    "unbind" => obj.unbind(&mut locked),
                    "vmap" => obj.vmap(&mut locked),
                    "vunmap" => obj.vunmap(&mut locked),
                    "pin" => {
                        let st = obj.state(&mut locked);
                        if st.pages_held() == 0 {
                            return Err(EINVAL);
                        }
                        st.pages_pin_count += 1;
                        Ok(())
                    }
                    "unpin" => {
                        let bound = u32::from(obj.state(&mut locked).gtt_offset().is_some());
                        let st = obj.state(&mut locked);
                        if st.pages_pin_count <= bound + st.vmap_pins {
                            return Err(EINVAL);
                        }
                        st.pages_pin_count -= 1;
                        Ok(())
                    }
                    "active" => {
                        drop(locked);
                        if value {
                            obj.activate();
                        } else if obj.active() > 0 {
                            obj.retire();
                        } else {
                            return Err(EINVAL);
                        }
                        Ok(())
                    }
                    _ => {
                        obj.state(&mut locked).madv = if value {
                            crate::uapi::MADV_DONTNEED
                        } else {
                            crate::uapi::MADV_WILLNEED
                        };
                        Ok(())
                    }
                }
            }
            "verify" => {
                let mut locked = self.device.struct_mutex.lock();
                let obj = Self::selftest(&locked)?;
                let seed = self.seed.load(Ordering::Relaxed);
                let (bad, moved) = obj.verify(&mut locked, seed)?;
                let mut last = self.last.lock();
                last.runs += 1;
                last.bad_pages = bad as u64;
                last.moved_pages = moved as u64;
                if bad != 0 {
                    pr_err!("verify: {} of {} pages corrupted\n", bad, obj.npages());
                    return Err(EIO);
                }
                Ok(())
            }
            _ => Err(EINVAL),
        }
    }

    /// Writes the report.
    pub(crate) fn report(&self, out: &mut impl Write) -> core::fmt::Result {
        let last = *self.last.lock();
        let mut locked = self.device.struct_mutex.lock();
        match Self::selftest(&locked) {
            Err(_) => writeln!(out, "object none")?,
            Ok(obj) => {
                let registered = obj.hook_registered();
                let movable = obj.file().is_some_and(|f| f.is_movable());
                let st = obj.state(&mut locked);
                let s = obj.snapshot(st);
                writeln!(out, "object present")?;
                writeln!(out, "pages {}", obj.npages())?;
                writeln!(out, "pages_held {}", st.pages_held())?;
                writeln!(out, "bind_count {}", s.bind_count)?;
                writeln!(out, "pages_pin_count {}", s.pages_pin_count)?;
                writeln!(out, "active {}", u8::from(s.active))?;
                writeln!(out, "purgeable {}", u8::from(s.purgeable))?;
                writeln!(out, "hook_registered {}", u8::from(registered))?;
                writeln!(out, "movable {}", u8::from(movable))?;
                writeln!(out, "vmap_cached {}", u8::from(s.vmap_cached))?;
            }
        }
        writeln!(
            out,
            "runtime_suspended {}",
            u8::from(self.device.pm.suspended())
        )?;
        writeln!(out, "verify_runs {}", last.runs)?;
        writeln!(out, "verify_bad_pages {}", last.bad_pages)?;
        writeln!(out, "verify_moved_pages {}", last.moved_pages)?;
        writeln!(out, "trylock_budget_runs {}", last.budget_runs)?;
        writeln!(out, "trylock_budget_attempts {}", last.budget_attempts)?;
        writeln!(out, "trylock_budget_longest_ns {}", last.budget_longest_ns)
    }
}

/// A `core::fmt::Write` sink over a byte buffer that fails when full.
struct BufWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Write for BufWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.pos.checked_add(s.len()).ok_or(core::fmt::Error)?;
        let dst = self.buf.get_mut(self.pos..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.pos = end;
        Ok(())
    }
}

#[pinned_drop]
impl PinnedDrop for Debugfs {
    fn drop(self: Pin<&mut Self>) {
        let dir = self.dir.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !dir.is_null() {
            // SAFETY: `dir` is ours by the type invariant; removal waits
            // for operations in flight on the files below it.
            unsafe { movgem_debugfs_remove(dir) };
        }
        if self.pm_disabled.swap(false, Ordering::AcqRel) {
            self.device.pm.set_enabled(true);
        }
    }
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `owner` must be the data of a live `control` file, and `cmd` point to
/// `len` initialised bytes.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_control(
    owner: *mut c_void,
    cmd: *const c_char,
    len: usize,
) -> isize {
    // SAFETY: the debugfs shim passes `len` initialised bytes it owns.
    let bytes = unsafe { core::slice::from_raw_parts(cmd.cast::<u8>(), len) };
    let Ok(text) = core::str::from_utf8(bytes) else {
        return EINVAL.to_errno() as isize;
    };
    // SAFETY: the file's owner outlives it (type invariant of `Debugfs`).
    let this = unsafe { &*owner.cast::<Debugfs>() };
    match this.run(text.trim()) {
        Ok(()) => len as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `owner` must be the data of a live `control` file, and `buf` valid for
/// writes of `len` bytes.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_report(
    owner: *mut c_void,
    buf: *mut c_char,
    len: usize,
) -> isize {
    // SAFETY: the debugfs shim passes a buffer it owns of `len` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    // SAFETY: the file's owner outlives it (type invariant of `Debugfs`).
    let this = unsafe { &*owner.cast::<Debugfs>() };
    let mut w = BufWriter { buf, pos: 0 };
    match this.report(&mut w) {
        Ok(()) => w.pos as isize,
        Err(_) => E2BIG.to_errno() as isize,
    }
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `owner` must be the data of a live `drop_caches` file.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_drop_caches(owner: *mut c_void, flags: u64) -> c_int {
    // SAFETY: the file's owner outlives it (type invariant of `Debugfs`).
    let this = unsafe { &*owner.cast::<Debugfs>() };
    match shrinker::drop_caches(&this.engine, flags) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `value` must be the data of a live counter file: a counter of a
/// device's [`counters::Counters`].
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_counter_read(value: *const u64) -> u64 {
    // SAFETY: the counter outlives its file; `AtomicU64` has the layout
    // of `u64`, and `Counters::value` handed out this very atomic.
    unsafe { AtomicU64::from_ptr(value.cast_mut()) }.load(Ordering::Relaxed)
}
