// SPDX-License-Identifier: GPL-2.0

//! Load, use from several processes, unload, in a loop; and unload right
//! after a process died with objects busy on the GPU, pinned and
//! vmapped (each state confirmed before the kill), while compaction and
//! the shrinkers run.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use movgem_guest::ensure;
use movgem_guest::env::{compact, set_param};
use movgem_uapi::{self as uapi, Device, Info};

use crate::metric;

/// Objects the killed process holds.
const HELD: u64 = 4;
/// How long its hanging batches last: longer than anything the loop
/// waits for, so that they are still hanging when the kill comes (the
/// unload's drain resets them).
const HANG_MS: &str = "600000";
const HANG_PARAM: &str = "/sys/module/movgem/parameters/hang_timeout_ms";

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

pub fn run(loops: u64) -> Result<String, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    // Neither write can fail: every error is kept and fails the test.
    let compactor = thread::spawn(move || {
        let mut errors = Vec::new();
        while !s.load(Ordering::Relaxed) {
            errors.extend(compact().err());
            errors.extend(movgem_guest::env::drop_caches().err());
            thread::sleep(Duration::from_millis(10));
        }
        errors
    });
    let mut worst = Duration::ZERO;
    let mut retries = 0;
    let mut seen = Vec::new();
    let mut done = 0;
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
            // A process dies with objects busy on the GPU, pinned and
            // vmapped: it says so once it has confirmed each state, and
            // this process confirms them again from its own file right
            // before the kill.
            let (held, info) = kill_holder(&me)?;
            retries += held;
            seen.push(info);
            worst = worst.max(unload()?);
            ensure!(!loaded(), "module still loaded");
            done += 1;
        }
        Ok(())
    })();
    // A failed loop may leave the module loaded: unload it, so that
    // what runs next starts from a fresh load, as it would after a pass.
    if out.is_err() && loaded() {
        if let Err(e) = unload() {
            println!("  after the failure: {e}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let errors = compactor
        .join()
        .map_err(|_| "compactor panicked".to_string())?;
    metric("lifecycle_loops", done);
    metric("lifecycle_worst_unload_ms", worst.as_millis());
    metric("lifecycle_hold_retries", retries);
    out?;
    loops_ran(loops, done)?;
    ensure!(
        errors.is_empty(),
        "compaction or drop_caches failed {} times: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let at_kill: Vec<_> = seen
        .iter()
        .map(|i| {
            format!(
                "{}/{}/{}",
                i.active_objects, i.bound_objects, i.cached_vmaps
            )
        })
        .collect();
    Ok(format!(
        "{loops} loops; killed a process holding {HELD} objects busy, pinned and vmapped each time \
         (active/bound/vmapped at the kill: {}); {retries} retries under memory pressure; \
         worst unload {} ms",
        at_kill.join(" "),
        worst.as_millis()
    ))
}

/// A lifecycle run passes only if it ran every loop it was asked for, and
/// at least one: with none it loaded, used and unloaded nothing, and
/// proves nothing (as fuzz with no call and faults with no injected
/// failure fail).
fn loops_ran(asked: u64, done: u64) -> Result<(), String> {
    ensure!(
        done > 0,
        "{done} of {asked} loops ran: nothing was loaded, used, killed or unloaded"
    );
    ensure!(done == asked, "{done} of {asked} loops ran");
    Ok(())
}

/// Runs `me hold` with long hangs, waits until it reports its objects
/// busy, pinned and vmapped, checks the device-wide numbers itself and
/// kills it.  Returns the child's retries and those numbers.
fn kill_holder(me: &std::path::Path) -> Result<(u64, Info), String> {
    let old = std::fs::read_to_string(HANG_PARAM).map_err(|e| format!("{HANG_PARAM}: {e}"))?;
    set_param("hang_timeout_ms", HANG_MS)?;
    let mut child = Command::new(me)
        .arg("hold")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    // Up to 120 s: four 1 MiB objects populated on a loaded machine.
    let line = rx.recv_timeout(Duration::from_secs(120));
    let info = Device::open()
        .and_then(|d| d.info())
        .map_err(|e| format!("GET_INFO before the kill: errno {e}"));
    let killed = child.kill();
    let status = child.wait();
    set_param("hang_timeout_ms", old.trim())?;
    let line = line.map_err(|_| "the holding process said nothing for 120 s".to_string())?;
    let line = line.trim();
    let Some(rest) = line.strip_prefix("ready ") else {
        return Err(format!("the holding process failed: {line}"));
    };
    killed.map_err(|e| format!("kill: {e}"))?;
    let status = status.map_err(|e| format!("wait: {e}"))?;
    let retries = rest
        .split_whitespace()
        .find_map(|w| w.strip_prefix("retries=")?.parse().ok())
        .ok_or(format!("no retries= in '{line}'"))?;
    let info = info?;
    ensure!(
        info.objects >= HELD
            && info.active_objects >= HELD
            && info.bound_objects >= HELD
            && info.cached_vmaps >= HELD
            && info.requests >= 1,
        "right before the kill the device showed {info:?}, not {HELD} objects busy, bound and vmapped"
    );
    ensure!(
        status.signal() == Some(libc::SIGKILL),
        "the holding process ended with {status}, not by the kill"
    );
    Ok((retries, info))
}

/// Retries `f` while it fails for want of memory (`ENOMEM`, or `EAGAIN`
/// when reclaim took an object's pages between faulting them in and
/// binding), for up to 60 s; counts the retries.
fn retried<T>(
    what: &str,
    retries: &mut u64,
    mut f: impl FnMut() -> uapi::Res<T>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(libc::ENOMEM | libc::EAGAIN) if start.elapsed() < Duration::from_secs(60) => {
                *retries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("{what}: errno {e}")),
        }
    }
}

/// `movgem-stress hold`: makes [`HELD`] objects of 1 MiB, each pinned
/// (confirmed: MADVISE refuses it while nothing else pins it), vmapped
/// and busy on a hanging batch (confirmed: BUSY, and GET_INFO counts
/// them active, bound and vmapped); prints `ready retries=N` and sleeps
/// until killed, or prints `fail WHY` and exits 1.
pub fn hold() -> bool {
    match hold_objects() {
        Ok((dev, retries)) => {
            println!("ready retries={retries}");
            // The line must reach the parent before it decides.
            let _ = std::io::Write::flush(&mut std::io::stdout());
            loop {
                // SAFETY: sleeps until a signal; the parent kills us.
                unsafe { libc::pause() };
                let _ = &dev;
            }
        }
        Err(e) => {
            println!("fail {e}");
            false
        }
    }
}

fn hold_objects() -> Result<(Device, u64), String> {
    let dev = Device::open().map_err(|e| format!("open: errno {e}"))?;
    let mut retries = 0;
    let mut handles = Vec::new();
    for i in 0..HELD {
        let h = retried("create", &mut retries, || dev.create(1 << 20))?;
        retried("pin", &mut retries, || dev.pin(h))?;
        // Only the display pin can refuse this now (no vmap yet).
        match dev.madvise(h, uapi::MADV_DONTNEED) {
            Err(libc::EBUSY) => {}
            r => {
                return Err(format!(
                    "object {i}: MADVISE(DONTNEED) gave {r:?}, not EBUSY: it is not pinned"
                ))
            }
        }
        retried("vmap", &mut retries, || dev.vmap(h))?;
        handles.push(h);
    }
    for &h in &handles {
        retried("execbuf", &mut retries, || {
            dev.execbuf(&[(h, true)], uapi::OP_FILL, 1, 0, uapi::EXEC_HANG)
                .map(|_| ())
        })?;
    }
    for (i, &h) in handles.iter().enumerate() {
        let busy = dev.busy(h).map_err(|e| format!("busy: errno {e}"))?;
        ensure!(busy, "object {i} is not busy after its hanging batch");
    }
    let info = dev.info().map_err(|e| format!("info: errno {e}"))?;
    ensure!(
        info.active_objects >= HELD && info.bound_objects >= HELD && info.cached_vmaps >= HELD,
        "GET_INFO shows {info:?}, not {HELD} objects busy, bound and vmapped"
    );
    Ok((dev, retries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_loops_fail_like_zero_fuzz_calls() {
        assert!(loops_ran(0, 0).is_err());
        assert!(loops_ran(3, 0).is_err());
        assert!(loops_ran(3, 2).is_err());
        assert_eq!(loops_ran(3, 3), Ok(()));
        assert_eq!(loops_ran(1, 1), Ok(()));
    }
}
