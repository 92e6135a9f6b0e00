// SPDX-License-Identifier: GPL-2.0

//! movgem-stress: bounded stress, ioctl fuzzing, fault injection and
//! module lifecycle runs inside the guest.
//!
//! ```text
//! movgem-stress stress SECONDS      concurrent workload, data checked on every read
//! movgem-stress fuzz CALLS SEED     random and boundary ioctls; errnos from the documented set
//! movgem-stress faults ROUNDS       failslab + fail_page_alloc on the module's paths
//! movgem-stress lifecycle LOOPS     load, use from several processes, unload
//! movgem-stress hold                 (lifecycle's child: busy, pinned and
//!                                    vmapped objects, then wait to be killed)
//! ```
//!
//! Each prints `movgem-test: PASS|FAIL <name>: <what it measured>` and
//! `movgem-metric:` lines.

mod faults;
mod fuzz;
mod lifecycle;
mod rng;
mod stress;

use movgem_guest::report;

/// [`report`], with what the test measured on the result line, pass or
/// fail, so that a log reader sees the numbers the verdict rests on.
fn report_numbers(name: &str, r: &Result<String, String>) -> bool {
    match r {
        Ok(numbers) => println!("movgem-test: PASS {name}: {numbers}"),
        Err(e) => println!("movgem-test: FAIL {name}: {e}"),
    }
    r.is_ok()
}

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ok = match args.get(1).map(String::as_str) {
        Some("stress") => report_numbers("stress", &stress::run(arg(&args, 2, 20))),
        Some("fuzz") => report_numbers("fuzz", &fuzz::run(arg(&args, 2, 20_000), arg(&args, 3, 1))),
        Some("faults") => report("fault_injection", &faults::run(arg(&args, 2, 200))),
        Some("lifecycle") => report_numbers("lifecycle", &lifecycle::run(arg(&args, 2, 5))),
        Some("hold") => lifecycle::hold(),
        _ => {
            eprintln!("usage: movgem-stress stress SECONDS | fuzz CALLS SEED | faults ROUNDS | lifecycle LOOPS");
            false
        }
    };
    std::process::exit(i32::from(!ok));
}

/// Prints a number for the host to collect.
pub fn metric(name: &str, value: impl std::fmt::Display) {
    println!("movgem-metric: {name}={value}");
}

/// Device numbers once objects closed by earlier runs have finished
/// retiring: no batch in flight (a closed object's GTT space goes when
/// its last batch retires), and two readings 50 ms apart agree.  Gives
/// up after 60 s (1,200 readings), a margin for a loaded machine.
pub fn settled_info(dev: &movgem_uapi::Device) -> Result<movgem_uapi::Info, String> {
    let read = || dev.info().map_err(|e| format!("info: errno {e}"));
    let mut last = read()?;
    for _ in 0..1200 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = read()?;
        if now.requests == 0
            && now.active_objects == 0
            && now.gtt_used == last.gtt_used
            && now.objects == last.objects
        {
            return Ok(now);
        }
        last = now;
    }
    Err(format!("device never settled: {last:?}"))
}
