// SPDX-License-Identifier: GPL-2.0

//! Load, use from several processes, unload, in a loop; and unload right
//! after a process died with objects busy on the GPU, while compaction
//! and the shrinkers run.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use movgem_guest::env::compact;
use movgem_guest::{ensure, TestResult};
use movgem_uapi::{self as uapi, Device};

use crate::metric;

fn loaded() -> bool {
    std::path::Path::new("/sys/module/movgem").exists()
}

fn sh(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Unloads, retrying while files are still being closed.
fn unload() -> Result<Duration, String> {
    let start = Instant::now();
    while !sh("rmmod", &["movgem"]) {
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "rmmod kept failing for 60 s"
        );
        thread::sleep(Duration::from_millis(50));
    }
    Ok(start.elapsed())
}

pub fn run(loops: u64) -> TestResult {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let compactor = thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let _ = compact();
            let _ = movgem_guest::env::drop_caches();
            thread::sleep(Duration::from_millis(10));
        }
    });
    let mut worst = Duration::ZERO;
    let out = (|| {
        for _ in 0..loops {
            if !loaded() {
                ensure!(sh("insmod", &["/lib/modules/movgem.ko"]), "insmod failed");
            }
            // Two processes stress the device at once.  Their output is
            // kept, and shown if one fails (renamed, so that the console
            // scan does not read it as this boot's results).
            let children: Vec<_> = (0..2)
                .map(|_| {
                    Command::new(&me)
                        .args(["stress", "2"])
                        .stdout(Stdio::piped())
                        .spawn()
                })
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            for c in children {
                let out = c.wait_with_output().map_err(|e| e.to_string())?;
                if !out.status.success() {
                    for line in String::from_utf8_lossy(&out.stdout).lines() {
                        println!("  stress child: {}", line.replace("movgem-", "child-"));
                    }
                }
                ensure!(
                    out.status.success(),
                    "a stress child failed: {}",
                    out.status
                );
            }
            // A process dies with objects busy on the GPU and pinned.
            // SAFETY: the child only uses the device and exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                if let Ok(dev) = Device::open() {
                    for _ in 0..4 {
                        if let Ok(h) = dev.create(1 << 20) {
                            let _ = dev.execbuf(&[(h, true)], uapi::OP_FILL, 1, 0, uapi::EXEC_HANG);
                            let _ = dev.pin(h);
                            let _ = dev.vmap(h);
                        }
                    }
                    std::mem::forget(dev);
                }
                // SAFETY: sleep until killed.
                unsafe { libc::pause() };
            }
            thread::sleep(Duration::from_millis(100));
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            worst = worst.max(unload()?);
            ensure!(!loaded(), "module still loaded");
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    compactor
        .join()
        .map_err(|_| "compactor panicked".to_string())?;
    metric("lifecycle_loops", loops);
    metric("lifecycle_worst_unload_ms", worst.as_millis());
    out
}
