// SPDX-License-Identifier: GPL-2.0

//! failslab and fail_page_alloc aimed at the module: only allocations
//! with movgem.ko on the call stack (`require-start`/`require-end` set to
//! the module's address range), only from this task (`task-filter` and
//! `make-it-fail`).  Every ioctl must then succeed or fail cleanly, data
//! that was written successfully must read back, and once injection stops
//! and the files are closed nothing may be left (kmemleak checks the rest
//! after unload).

use std::collections::BTreeMap;
use std::fs;

use movgem_guest::{ensure, TestResult};
use movgem_uapi::{self as uapi, Device};

use crate::metric;

const PAGE: u64 = 4096;

fn write(path: &str, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("{path}: {e}"))
}

/// The module's address range, from /proc/modules.
fn module_range() -> Result<(u64, u64), String> {
    let s = fs::read_to_string("/proc/modules").map_err(|e| e.to_string())?;
    let line = s
        .lines()
        .find(|l| l.starts_with("movgem "))
        .ok_or("movgem not loaded")?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let size: u64 = f.get(1).and_then(|v| v.parse().ok()).ok_or("no size")?;
    let addr = f
        .get(5)
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .ok_or("no address")?;
    ensure!(addr != 0, "module address hidden (kptr_restrict)");
    Ok((addr, addr + size))
}

/// Arms (or disarms) both fault types for this task.
/// Injection armed for this task, inside the console's tolerance window.
/// Dropping it (an early return included) disarms injection and closes
/// the window, so no later report can hide in it.
struct Window {
    range: (u64, u64),
    open: bool,
}

impl Window {
    fn open(range: (u64, u64)) -> Result<Self, String> {
        write("/dev/kmsg", "movgem-faults: window begin")?;
        let w = Self { range, open: true };
        arm(true, range)?;
        Ok(w)
    }

    /// Disarms and closes, reporting a failure to disarm.
    fn close(mut self) -> Result<(), String> {
        self.open = false;
        let r = arm(false, self.range);
        write("/dev/kmsg", "movgem-faults: window end")?;
        r
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        if self.open {
            let _ = arm(false, self.range);
            let _ = write("/dev/kmsg", "movgem-faults: window end");
        }
    }
}

fn arm(on: bool, range: (u64, u64)) -> Result<(), String> {
    for dir in [
        "/sys/kernel/debug/failslab",
        "/sys/kernel/debug/fail_page_alloc",
    ] {
        if on {
            write(&format!("{dir}/require-start"), &range.0.to_string())?;
            write(&format!("{dir}/require-end"), &range.1.to_string())?;
            write(&format!("{dir}/stacktrace-depth"), "32")?;
            write(&format!("{dir}/task-filter"), "Y")?;
            write(&format!("{dir}/ignore-gfp-wait"), "N")?;
            write(&format!("{dir}/verbose"), "0")?;
            write(&format!("{dir}/interval"), "1")?;
            write(&format!("{dir}/times"), "-1")?;
        }
        write(&format!("{dir}/probability"), if on { "10" } else { "0" })?;
    }
    if on {
        write("/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem", "N")?;
        write("/sys/kernel/debug/fail_page_alloc/min-order", "0")?;
    }
    write("/proc/thread-self/make-it-fail", if on { "1" } else { "0" })
}

#[derive(Clone, Copy)]
struct Obj {
    h: u32,
    pages: u64,
    /// The value every dword holds, when known.
    fill: Option<u32>,
    pins: u32,
    vmaps: u32,
}

pub fn run(rounds: u64) -> TestResult {
    let probe = Device::open().map_err(|e| format!("open: errno {e}"))?;
    let before = crate::settled_info(&probe)?;
    let range = module_range()?;
    let dev = Device::open().map_err(|e| format!("open: errno {e}"))?;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut objs: Vec<Obj> = Vec::new();
    let mut results: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut note = |what: &'static str, r: Result<(), i32>, unexpected: &mut Vec<String>| -> bool {
        let e = results.entry(what).or_default();
        match r {
            Ok(()) => {
                e.0 += 1;
                true
            }
            // shmem reports a failed inode allocation as ENOSPC.
            Err(libc::ENOMEM) | Err(libc::ENOSPC) => {
                e.1 += 1;
                false
            }
            Err(err) => {
                unexpected.push(format!("{what}: errno {err}"));
                false
            }
        }
    };
    // Kernel messages from here on may be injected allocation failures
    // of this task, which the host tolerates inside this window; the
    // guard disarms injection and closes the window on every way out.
    let window = Window::open(range)?;
    for _ in 0..rounds {
        match rng.u64(..8) {
            0 | 1 if objs.len() < 6 => {
                let pages = 1 + rng.u64(..64);
                let mut h = 0;
                let r = dev.create(pages * PAGE).map(|x| h = x);
                if note("create", r, &mut unexpected) {
                    objs.push(Obj {
                        h,
                        pages,
                        fill: None,
                        pins: 0,
                        vmaps: 0,
                    });
                }
            }
            2 if !objs.is_empty() => {
                let i = rng.usize(..objs.len());
                let v = rng.u32(..);
                let r = dev
                    .execbuf(&[(objs[i].h, true)], uapi::OP_FILL, v, 0, 0)
                    .map(|_| ());
                if note("execbuf", r, &mut unexpected) {
                    let w = dev.wait(objs[i].h, -1).map(|_| ());
                    objs[i].fill = if note("wait", w, &mut unexpected) {
                        Some(v)
                    } else {
                        None
                    };
                }
            }
            3 if !objs.is_empty() => {
                let i = rng.usize(..objs.len());
                let o = objs[i];
                // Touched before the call: its page faults must not be
                // what the injected failures hit.
                let mut buf = vec![1u8; (o.pages * PAGE) as usize];
                if note("pread", dev.pread(o.h, 0, &mut buf), &mut unexpected) {
                    if let Some(v) = o.fill {
                        if !buf.chunks(4).all(|c| c == v.to_le_bytes()) {
                            unexpected.push(format!("object {} lost its data", o.h));
                        }
                    }
                }
            }
            4 if !objs.is_empty() => {
                let i = rng.usize(..objs.len());
                if objs[i].vmaps > 0 {
                    if note("vunmap", dev.vunmap(objs[i].h), &mut unexpected) {
                        objs[i].vmaps -= 1;
                    }
                } else if note("vmap", dev.vmap(objs[i].h), &mut unexpected) {
                    objs[i].vmaps += 1;
                }
            }
            5 if !objs.is_empty() => {
                let i = rng.usize(..objs.len());
                if objs[i].pins > 0 {
                    if note("unpin", dev.unpin(objs[i].h), &mut unexpected) {
                        objs[i].pins -= 1;
                    }
                } else if note("pin", dev.pin(objs[i].h).map(|_| ()), &mut unexpected) {
                    objs[i].pins += 1;
                }
            }
            6 if !objs.is_empty() => {
                let o = objs[rng.usize(..objs.len())];
                let r = dev.mmap(o.h, 0, o.pages * PAGE).map(|addr| {
                    // SAFETY: unmapping what the kernel just mapped for us.
                    unsafe { libc::munmap(addr as *mut libc::c_void, (o.pages * PAGE) as usize) };
                });
                note("mmap", r, &mut unexpected);
            }
            _ if !objs.is_empty() => {
                let o = objs.swap_remove(rng.usize(..objs.len()));
                note("close", dev.close(o.h), &mut unexpected);
            }
            _ => {}
        }
    }
    window.close()?;
    // Without injection every surviving object reads back what it holds.
    for o in &objs {
        let mut buf = vec![0u8; (o.pages * PAGE) as usize];
        dev.pread(o.h, 0, &mut buf)
            .map_err(|e| format!("pread after: errno {e}"))?;
        if let Some(v) = o.fill {
            ensure!(
                buf.chunks(4).all(|c| c == v.to_le_bytes()),
                "object {} lost its data",
                o.h
            );
        }
    }
    drop(dev);
    let after = probe.info().map_err(|e| format!("info: errno {e}"))?;
    let injected: u64 = results.values().map(|r| r.1).sum();
    let ok: u64 = results.values().map(|r| r.0).sum();
    metric("faults_rounds", rounds);
    metric("faults_calls_ok", ok);
    metric("faults_injected_enomem", injected);
    println!("  per ioctl (ok, ENOMEM or ENOSPC): {results:?}");
    ensure!(
        unexpected.is_empty(),
        "unexpected: {:?}",
        &unexpected[..unexpected.len().min(8)]
    );
    ensure!(
        injected > 0,
        "no fault was injected: injection is not reaching the module"
    );
    ensure!(ok > 0, "nothing succeeded under injection");
    ensure!(
        after.objects == before.objects
            && after.gtt_used == before.gtt_used
            && after.cached_vmaps == before.cached_vmaps,
        "left behind: {before:?} -> {after:?}"
    );
    Ok(())
}
