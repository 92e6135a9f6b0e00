// SPDX-License-Identifier: GPL-2.0

//! `movgem-tests --demo`: what the hook buys, shown in one boot.
//!
//! Objects filling a large share of memory are bound by the (simulated)
//! GPU while memory is fragmented, so their pinned pages end up spread
//! over the whole zone.  Then the GPU goes idle and runtime-suspends, as
//! an idle GPU does, and in three rounds, `hook=off` (an unpatched
//! kernel), `hook=release` (the 2016 design) and `hook=inplace` (the
//! default), the guest compacts and asks for as many 2 MiB hugepages as
//! it can get, printing /proc/buddyinfo and the hugepages obtained.  The
//! shrinker is off for all rounds, so that only the hook differs.

use std::fs;

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, compact, Counters};
use movgem_guest::TestResult;

const OBJ_SIZE: u64 = 4 << 20;

fn meminfo(key: &str) -> u64 {
    env::meminfo_kib(key).unwrap_or(0)
}

fn buddyinfo() -> String {
    fs::read_to_string("/proc/buddyinfo").unwrap_or_default()
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// Turns the hook's trace event on (emptying the buffer) or off.
fn trace_hook(on: bool) -> TestResult {
    let w = |f: &str, v: &str| {
        fs::write(format!("{TRACEFS}/{f}"), v).map_err(|e| format!("{TRACEFS}/{f}: {e}"))
    };
    if on {
        w("buffer_size_kb", "8192")?;
        w("trace", "")?;
    }
    w(
        "events/movgem/movgem_migrate_folio/enable",
        if on { "1" } else { "0" },
    )
}

/// The hook's events of the round that the ring buffer kept (of the
/// `calls` the counters saw): how many of each outcome, and the first
/// few lines as the kernel's trace shows them.
fn trace_excerpt(hook: &str, calls: u64) {
    let text = fs::read_to_string(format!("{TRACEFS}/trace")).unwrap_or_default();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.find("movgem_migrate_folio: ").map(|at| &l[at..]))
        .collect();
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    for e in &events {
        if let Some(o) = e
            .split_whitespace()
            .find_map(|w| w.strip_prefix("outcome="))
        {
            *outcomes.entry(o).or_default() += 1;
        }
    }
    println!(
        "movgem demo: hook={hook}: trace: the buffer kept {} of {calls} movgem_migrate_folio events, \
         by outcome {outcomes:?}",
        events.len()
    );
    for e in events.iter().take(3) {
        println!("movgem demo: hook={hook}: trace:   {e}");
    }
}

/// Compacts, then asks for hugepages until the kernel gives no more;
/// returns how many it got, and gives them back, allocating nothing
/// meanwhile ([`env::hugetlb_pages`]: the pool takes free memory down to
/// the watermarks, and an allocation then wakes the OOM killer).
fn hugepages() -> Result<u64, String> {
    compact()?;
    Ok(env::hugetlb_pages()?.0)
}

pub fn demo() -> TestResult {
    let dev = Device::open().map_err(|e| format!("open: errno {e}"))?;
    let avail = meminfo("MemAvailable") * 1024;
    let total = (avail * 2 / 5) / OBJ_SIZE * OBJ_SIZE;
    let count = (total / OBJ_SIZE) as usize;
    println!(
        "movgem demo: {} MiB available; fragmenting it, then binding {count} objects of {} MiB ({} MiB) into the GTT",
        avail >> 20,
        OBJ_SIZE >> 20,
        total >> 20
    );
    let filler = env::fragment_fraction(4, 5)?;
    let mut handles = Vec::with_capacity(count);
    for _ in 0..count {
        handles.push(
            dev.create(OBJ_SIZE)
                .map_err(|e| format!("create: errno {e}"))?,
        );
    }
    let list: Vec<(u32, bool)> = handles.iter().map(|&h| (h, true)).collect();
    for chunk in list.chunks(uapi::MAX_EXEC_OBJECTS as usize) {
        dev.execbuf(chunk, uapi::OP_FILL, 0x600d_f00d, 0, 0)
            .map_err(|e| format!("execbuf: errno {e}"))?;
    }
    for &h in &handles {
        dev.wait(h, -1).map_err(|e| format!("wait: errno {e}"))?;
    }
    drop(filler);
    let info = dev.info().map_err(|e| format!("info: errno {e}"))?;
    println!(
        "movgem demo: {} objects bound and idle, {} MiB of pinned pages spread over memory; free now {} MiB",
        info.bound_objects,
        info.object_bytes >> 20,
        meminfo("MemFree") >> 10
    );
    print!(
        "movgem demo: /proc/buddyinfo before compaction:\n{}",
        buddyinfo()
    );
    // The comparison is about the migrate hook: keep the shrinker, which
    // would unbind idle objects when the hugepage allocations reclaim,
    // out of both rounds.
    env::set_param("shrinker", "0")?;
    // An idle GPU suspends: the rounds run with it asleep.
    env::wait_runtime_status("suspended", 60_000)?;
    let mut results = Vec::new();
    for hook in ["off", "release", "inplace"] {
        env::set_param("hook", hook)?;
        let before = Counters::read()?;
        trace_hook(true)?;
        let got = hugepages();
        trace_hook(false)?;
        let got = got?;
        let d = Counters::read()?.since(&before);
        let info = dev.info().map_err(|e| format!("info: errno {e}"))?;
        print!(
            "movgem demo: hook={hook}: /proc/buddyinfo after compaction:\n{}",
            buddyinfo()
        );
        println!(
            "movgem demo: hook={hook}: {got} hugepages of 2 MiB obtained; hook calls {}, folios migrated {} \
             ({} in place), refused while suspended {}, objects unbound {}, pages released {}; \
             {} objects still bound, device {}",
            d.get("hook_calls"),
            d.get("migrated"),
            d.get("migrated_in_place"),
            d.get("refused_suspended"),
            d.get("unbinds"),
            d.get("released_pages"),
            info.bound_objects,
            env::runtime_status()?
        );
        trace_excerpt(hook, d.get("hook_calls"));
        results.push(got);
    }
    env::set_param("hook", "inplace")?;
    env::set_param("shrinker", "1")?;
    // Every object must still hold what the GPU wrote, for the GPU and the CPU.
    let before = Counters::read()?;
    for chunk in list.chunks(uapi::MAX_EXEC_OBJECTS as usize) {
        let read: Vec<(u32, bool)> = chunk.iter().map(|&(h, _)| (h, false)).collect();
        dev.execbuf(&read, uapi::OP_CHECK, 0x600d_f00d, 0, 0)
            .map_err(|e| format!("execbuf: errno {e}"))?;
    }
    for &h in &handles {
        dev.wait(h, -1).map_err(|e| format!("wait: errno {e}"))?;
    }
    let errors = Counters::read()?.since(&before).get("gpu_check_errors");
    let mut buf = vec![0u8; OBJ_SIZE as usize];
    let mut cpu_bad = 0;
    for &h in &handles {
        dev.pread(h, 0, &mut buf)
            .map_err(|e| format!("pread: errno {e}"))?;
        cpu_bad += buf
            .chunks(4)
            .filter(|c| *c != 0x600d_f00d_u32.to_le_bytes())
            .count();
    }
    println!(
        "movgem demo: data check after the rounds: GPU found {errors} wrong dwords, CPU found {cpu_bad} (of {} MiB)",
        total >> 20
    );
    println!(
        "movgem demo: hugepages with the GPU asleep: hook off {}, release (2016 design) {}, in place {}",
        results[0], results[1], results[2]
    );
    for h in handles {
        let _ = dev.close(h);
    }
    if errors != 0 || cpu_bad != 0 {
        return Err("data corrupted".into());
    }
    Ok(())
}
