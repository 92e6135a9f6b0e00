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

use serde::Serialize;

use movgem_guest::env::{self, Counters, GpuAwake};
use movgem_uapi::{self as uapi, Device};

use crate::stats::num;
use crate::sys::{self, io, Objects, MIB, PAGE};

const OBJ_SIZE: u64 = 4 * MIB;
/// Hog runs with the shrinker off and on, interleaved; the run with the
/// median time is reported, with every time.
const REPS: usize = 3;

/// One driver run next to fresh objects.
#[derive(Debug, Serialize)]
struct Run {
    objects: usize,
    objects_mib: u64,
    #[serde(serialize_with = "num")]
    seconds: f64,
    completed: bool,
    shrink_scans: u64,
    shrink_freed_mib: u64,
    shrink_purged_objects: u64,
    shrink_released_objects: u64,
    #[serde(serialize_with = "num")]
    freed_mib_per_s: f64,
    objects_swap_used_mib: u64,
    /// The seconds of every run, when this is the median one.
    #[serde(serialize_with = "num", skip_serializing_if = "Option::is_none")]
    seconds_runs: Option<Vec<f64>>,
}

/// One kind of objects.
#[derive(Debug, Serialize)]
struct Kind {
    hog_shrinker_off: Option<Run>,
    hog_shrinker_on: Option<Run>,
    drop_caches: Run,
    #[serde(serialize_with = "num")]
    hog_wait_ratio_on_vs_off: f64,
}

/// The reclaim benchmark's result.
#[derive(Debug, Serialize)]
pub struct Reclaim {
    available_mib: u64,
    objects_mib: u64,
    hog_mib: u64,
    swap: &'static str,
    purgeable: Kind,
    swappable: Kind,
}

/// The run of median `seconds`, with `seconds_runs` listing them all.
fn median_run(mut runs: Vec<Run>) -> Option<Run> {
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let all: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    let mut r = runs.into_iter().nth(all.len() / 2)?;
    r.seconds_runs = Some(all);
    Some(r)
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
) -> Result<Run, String> {
    let objs = populate(dev, kind, bytes)?;
    let swap0 = swap_used_kib();
    let before = Counters::read()?;
    let (took, completed) = driver();
    let d = Counters::read()?.since(&before);
    let freed = d.get("shrink_freed_pages");
    let swap_used = swap_used_kib().saturating_sub(swap0);
    let out = Run {
        objects: objs.handles.len(),
        objects_mib: objs.bytes() / MIB,
        seconds: took,
        completed,
        shrink_scans: d.get("shrink_scans"),
        shrink_freed_mib: freed * PAGE / MIB,
        shrink_purged_objects: d.get("shrink_purged_objects"),
        shrink_released_objects: d.get("shrink_released_objects"),
        freed_mib_per_s: (freed * PAGE) as f64 / MIB as f64 / took,
        objects_swap_used_mib: swap_used / 1024,
        seconds_runs: None,
    };
    drop(objs);
    Ok(out)
}

pub fn run() -> Result<Reclaim, String> {
    let _awake = GpuAwake::new()?;
    let _zram = Zram::on()?;
    let dev = io(Device::open(), "open")?;
    let avail = sys::meminfo("MemAvailable") * 1024;
    let bytes = avail * 2 / 5 / OBJ_SIZE * OBJ_SIZE;
    let hog_bytes = avail * 3 / 4 / MIB * MIB;
    let hog = move || sys::hog(hog_bytes);
    let drop3 = || {
        let t = Instant::now();
        let ok = sys::drop_caches(3).is_ok();
        (sys::secs(t), ok)
    };
    let mut kinds = Vec::new();
    for kind in ["purgeable", "swappable"] {
        let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
        let mut result = Ok(());
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
        let _ = env::set_param("shrinker", "1");
        result?;
        let [off_runs, on_runs] = runs;
        let (off_run, on_run) = (median_run(off_runs), median_run(on_runs));
        let drop_caches = measure(&dev, kind, bytes, &drop3)?;
        let secs = |r: &Option<Run>| r.as_ref().map_or(f64::NAN, |r| r.seconds);
        let (on, off) = (secs(&on_run), secs(&off_run));
        let hog_rate = on_run.as_ref().map_or(f64::NAN, |r| r.freed_mib_per_s);
        let drop_rate = drop_caches.freed_mib_per_s;
        println!(
            "movgem-bench: reclaim {kind}: hog {on:.2} s with the shrinker, {off:.2} s without; \
             shrinker freed {hog_rate:.0} MiB/s under the hog, {drop_rate:.0} MiB/s from drop_caches"
        );
        kinds.push(Kind {
            hog_shrinker_off: off_run,
            hog_shrinker_on: on_run,
            drop_caches,
            hog_wait_ratio_on_vs_off: on / off,
        });
    }
    let [purgeable, swappable]: [Kind; 2] = kinds
        .try_into()
        .map_err(|_| "two kinds of objects".to_string())?;
    Ok(Reclaim {
        available_mib: avail / MIB,
        objects_mib: bytes / MIB,
        hog_mib: hog_bytes / MIB,
        swap: "zram 1 GiB",
        purgeable,
        swappable,
    })
}
