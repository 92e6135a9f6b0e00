// SPDX-License-Identifier: GPL-2.0

//! The debugfs `control` file: drives one self-test object so that the
//! in-guest tests can exercise the hook without the uAPI.
//!
//! Commands (one per write): `create <pages> <seed>`, `bind`, `unbind`,
//! `pin` and `unpin` (a page pin beyond the binding), `active <0|1>`,
//! `purgeable <0|1>`, `vmap`, `vunmap`, `verify`, `destroy`; and, for the
//! whole device, `purge_vmaps` (what the vmap purge notifier does, since
//! a test VM cannot run out of vmalloc space), `reset` (ends every GPU
//! request) and `hold_lock <ms>` (holds `struct_mutex`, to test the
//! hook's budget).  Reading the file reports `key value` lines.

use core::fmt::Write;
use kernel::ffi::c_char;

use kernel::prelude::*;
use kernel::sync::Arc;

use crate::gpu::{self, WorkQueue};
use crate::object::{Device, Gem, Object};

/// Largest self-test object: 1 GiB of 4 KiB pages.
const MAX_PAGES: u64 = 1 << 18;

/// Results of the last `verify`.
#[derive(Default, Clone, Copy)]
struct VerifyResult {
    runs: u64,
    bad_pages: u64,
    moved_pages: u64,
}

/// Module-wide state reached from the C shims: the device, the GPU's
/// workqueue, and the self-test bookkeeping (the self-test object itself
/// lives in the device's `Gem`).
#[pin_data]
pub(crate) struct Control {
    device: Arc<Device>,
    wq: WorkQueue,
    seed: core::sync::atomic::AtomicU64,
    #[pin]
    last: kernel::sync::SpinLock<VerifyResult>,
}

impl Control {
    /// Initialiser for the control state of `device`.
    pub(crate) fn new(device: Arc<Device>, wq: WorkQueue) -> impl PinInit<Self> {
        pin_init!(Self {
            device,
            wq,
            seed: core::sync::atomic::AtomicU64::new(0),
            last <- kernel::new_spinlock!(VerifyResult::default(), "movgem_verify"),
        })
    }

    /// The device.
    pub(crate) fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// The GPU's workqueue.
    pub(crate) fn queue(&self) -> &kernel::workqueue::Queue {
        self.wq.queue()
    }

    fn selftest(gem: &Gem) -> Result<Arc<Object>> {
        gem.selftest.clone().ok_or(ENOENT)
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
                let obj = Object::new(&self.device, pages as usize)?;
                if let Err(e) = obj.fill(seed) {
                    obj.destroy();
                    return Err(e);
                }
                let mut guard = self.device.struct_mutex.lock();
                if guard.selftest.is_some() {
                    drop(guard);
                    obj.destroy();
                    return Err(EEXIST);
                }
                guard.selftest = Some(obj);
                self.seed.store(seed, core::sync::atomic::Ordering::Relaxed);
                *self.last.lock() = VerifyResult::default();
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
            "purge_vmaps" => {
                self.device.purge_vmaps(true);
                Ok(())
            }
            "reset" => {
                gpu::reset(&self.device);
                Ok(())
            }
            "hold_lock" => {
                // Test aid: keep struct_mutex busy, as a long ioctl would.
                let ms = arg()?.min(10_000) as u32;
                let _gem = self.device.struct_mutex.lock();
                crate::counters::inc(crate::counters::Counter::LockHolds);
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
                let mut guard = self.device.struct_mutex.lock();
                let obj = Self::selftest(&guard)?;
                match verb {
                    "bind" => obj.bind(&mut guard).map(|_| ()),
                    "unbind" => obj.unbind(&mut guard),
                    "vmap" => obj.vmap(&mut guard),
                    "vunmap" => obj.vunmap(&mut guard),
                    "pin" => {
                        let st = obj.state(&mut guard);
                        if st.pages_held() == 0 {
                            return Err(EINVAL);
                        }
                        st.pages_pin_count += 1;
                        Ok(())
                    }
                    "unpin" => {
                        let bound = u32::from(obj.state(&mut guard).gtt_offset().is_some());
                        let st = obj.state(&mut guard);
                        if st.pages_pin_count <= bound + st.vmap_pins {
                            return Err(EINVAL);
                        }
                        st.pages_pin_count -= 1;
                        Ok(())
                    }
                    "active" => {
                        drop(guard);
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
                        obj.state(&mut guard).madv = if value {
                            crate::uapi::MADV_DONTNEED
                        } else {
                            crate::uapi::MADV_WILLNEED
                        };
                        Ok(())
                    }
                }
            }
            "verify" => {
                let mut guard = self.device.struct_mutex.lock();
                let obj = Self::selftest(&guard)?;
                let seed = self.seed.load(core::sync::atomic::Ordering::Relaxed);
                let (bad, moved) = obj.verify(&mut guard, seed)?;
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
        let mut guard = self.device.struct_mutex.lock();
        match Self::selftest(&guard) {
            Err(_) => writeln!(out, "object none")?,
            Ok(obj) => {
                let registered = obj.hook_registered();
                let movable = obj.file().is_some_and(|f| f.is_movable());
                let st = obj.state(&mut guard);
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
        writeln!(out, "verify_moved_pages {}", last.moved_pages)
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

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_control(cmd: *const c_char, len: usize) -> isize {
    // SAFETY: the debugfs shim passes `len` initialised bytes it owns.
    let bytes = unsafe { core::slice::from_raw_parts(cmd.cast::<u8>(), len) };
    let Ok(text) = core::str::from_utf8(bytes) else {
        return EINVAL.to_errno() as isize;
    };
    let Some(control) = crate::control() else {
        return ENODEV.to_errno() as isize;
    };
    match control.run(text.trim()) {
        Ok(()) => len as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_report(buf: *mut c_char, len: usize) -> isize {
    // SAFETY: the debugfs shim passes a buffer it owns of `len` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    let Some(control) = crate::control() else {
        return ENODEV.to_errno() as isize;
    };
    let mut w = BufWriter { buf, pos: 0 };
    match control.report(&mut w) {
        Ok(()) => w.pos as isize,
        Err(_) => E2BIG.to_errno() as isize,
    }
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_counter_read(id: kernel::ffi::c_ulong) -> u64 {
    crate::counters::read(id)
}
