// SPDX-License-Identifier: GPL-2.0

//! Reclaim: what the shrinker gives back, how fast, and what it saves a
//! process that needs memory.
//!
//! Two kinds of objects, 4 MiB each, 2/5 of the available memory:
//!
//! - `purgeable`: bound by a GPU fill, idle, then MADV_DONTNEED: the
//!   shrinker purges them (drops the pages and truncates the file);
//! - `swappable`: written with PWRITE (a compressible pattern), then
//!   VMAP + VUNMAP, so each holds its pages through a cached kernel
//!   mapping while unbound: idle, WILLNEED.  The shrinker drops the
//!   mapping and the page references; the pages themselves stay in
//!   shmem until the kernel's own reclaim writes them to swap (a zram
//!   device here).
//!
//! Drivers: a memory hog (a child touching 3/4 of the memory that was
//! available before the objects, page by page) with the shrinker on and
//! off (what the hog waits; three runs of each, interleaved, the median
//! reported), and `echo 3 > drop_caches`.  MiB/s are the
//! pages the shrinker reports freed (`shrink_freed_pages`) over the
//! driver's wall time; `swap_used_mib` says how much really went to swap.

use std::process::Command;
use std::time::Instant;

use movgem_guest::env::{self, Counters, GpuAwake};
use movgem_uapi::{self as uapi, Device};

use crate::json::Json;
use crate::sys::{self, io, Objects, MIB, PAGE};

const OBJ_SIZE: u64 = 4 * MIB;
/// Hog runs with the shrinker off and on, interleaved; the run with the
/// median time is reported, with every time.
const REPS: usize = 3;

fn seconds(j: &Json) -> f64 {
    match j.get("seconds") {
        Some(Json::Num(x)) => *x,
        _ => f64::NAN,
    }
}

/// The run of median `seconds`, with `seconds_runs` listing them all.
fn median_run(mut runs: Vec<Json>) -> Json {
    runs.sort_by(|a, b| seconds(a).total_cmp(&seconds(b)));
    let all: Vec<f64> = runs.iter().map(seconds).collect();
    match runs.into_iter().nth(all.len() / 2) {
        Some(r) => r.with("seconds_runs", all),
        None => Json::Null,
    }
}

fn sh(cmd: &str, args: &[&str]) -> Result<(), String> {
    let st = Command::new(cmd)
        .args(args)
        .status()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {args:?}: {st}"))
    }
}

/// A 1 GiB zram swap device, on for the life of the guard.
struct Zram;

impl Zram {
    fn on() -> Result<Self, String> {
        if sys::read("/sys/block/zram0/disksize") == "0" {
            sys::write("/sys/block/zram0/disksize", "1G")?;
        }
        sh("mkswap", &["/dev/zram0"])?;
        sh("swapon", &["/dev/zram0"])?;
        Ok(Self)
    }
}

impl Drop for Zram {
    fn drop(&mut self) {
        let _ = sh("swapoff", &["/dev/zram0"]);
    }
}

fn populate<'a>(dev: &'a Device, kind: &str, bytes: u64) -> Result<Objects<'a>, String> {
    let objs = Objects::create(dev, (bytes / OBJ_SIZE) as usize, OBJ_SIZE)?;
    if kind == "purgeable" {
        objs.execbuf(uapi::OP_FILL, 0xd0_0d)?;
        objs.dontneed()?;
    } else {
        objs.pwrite_all(&sys::sample_page(11))?;
        objs.vmap_cached()?;
    }
    Ok(objs)
}

fn swap_used_kib() -> u64 {
    sys::meminfo("SwapTotal").saturating_sub(sys::meminfo("SwapFree"))
}

/// Runs `driver` next to fresh objects of `kind`; returns what moved.
fn measure(
    dev: &Device,
    kind: &str,
    bytes: u64,
    driver: &dyn Fn() -> (f64, bool),
) -> Result<Json, String> {
    let objs = populate(dev, kind, bytes)?;
    let swap0 = swap_used_kib();
    let before = Counters::read()?;
    let (took, completed) = driver();
    let d = Counters::read()?.since(&before);
    let freed = d.get("shrink_freed_pages");
    let swap_used = swap_used_kib().saturating_sub(swap0);
    let out = Json::obj()
        .with("objects", objs.handles.len())
        .with("objects_mib", objs.bytes() / MIB)
        .with("seconds", took)
        .with("completed", completed)
        .with("shrink_scans", d.get("shrink_scans"))
        .with("shrink_freed_mib", freed * PAGE / MIB)
        .with("shrink_purged_objects", d.get("shrink_purged_objects"))
        .with("shrink_released_objects", d.get("shrink_released_objects"))
        .with("freed_mib_per_s", (freed * PAGE) as f64 / MIB as f64 / took)
        .with("objects_swap_used_mib", swap_used / 1024);
    drop(objs);
    Ok(out)
}

pub fn run() -> Result<Json, String> {
    let _awake = GpuAwake::new()?;
    let _zram = Zram::on()?;
    let dev = io(Device::open(), "open")?;
    let avail = sys::meminfo("MemAvailable") * 1024;
    let bytes = avail * 2 / 5 / OBJ_SIZE * OBJ_SIZE;
    let hog_bytes = avail * 3 / 4 / MIB * MIB;
    let mut out = Json::obj()
        .with("available_mib", avail / MIB)
        .with("objects_mib", bytes / MIB)
        .with("hog_mib", hog_bytes / MIB)
        .with("swap", "zram 1 GiB");
    let hog = move || sys::hog(hog_bytes);
    let drop3 = || {
        let t = Instant::now();
        let ok = sys::drop_caches(3).is_ok();
        (sys::secs(t), ok)
    };
    let mut result = Ok(());
    for kind in ["purgeable", "swappable"] {
        let mut k = Json::obj();
        let mut runs: [Vec<Json>; 2] = [Vec::new(), Vec::new()];
        'reps: for _ in 0..REPS {
            for (i, shrinker) in ["0", "1"].into_iter().enumerate() {
                let r = env::set_param("shrinker", shrinker)
                    .and_then(|()| measure(&dev, kind, bytes, &hog));
                match r {
                    Ok(j) => runs[i].push(j),
                    Err(e) => {
                        result = Err(format!("{kind} shrinker={shrinker}: {e}"));
                        break 'reps;
                    }
                }
            }
        }
        let [off_runs, on_runs] = runs;
        k.set("hog_shrinker_off", median_run(off_runs));
        k.set("hog_shrinker_on", median_run(on_runs));
        let _ = env::set_param("shrinker", "1");
        result.clone()?;
        k.set("drop_caches", measure(&dev, kind, bytes, &drop3)?);
        let s = |run: &str, key: &str| match k.get(run).and_then(|j| j.get(key)) {
            Some(Json::Num(x)) => *x,
            _ => f64::NAN,
        };
        let (on, off) = (
            s("hog_shrinker_on", "seconds"),
            s("hog_shrinker_off", "seconds"),
        );
        let (hog_rate, drop_rate) = (
            s("hog_shrinker_on", "freed_mib_per_s"),
            s("drop_caches", "freed_mib_per_s"),
        );
        k.set("hog_wait_ratio_on_vs_off", on / off);
        println!(
            "movgem-bench: reclaim {kind}: hog {on:.2} s with the shrinker, {off:.2} s without; \
             shrinker freed {hog_rate:.0} MiB/s under the hog, {drop_rate:.0} MiB/s from drop_caches"
        );
        out.set(kind, k);
    }
    result?;
    Ok(out)
}
