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
//! Drivers: a memory hog (a child locking 3/4 of the memory that was
//! available before the objects with `mlock`, so that it cannot swap
//! itself out and the memory must come from the objects, and touching
//! it page by page) with the shrinker on and off (what the hog waits, and
//! whether it completed or the OOM killer took it; three runs of each,
//! interleaved, the median reported), and `echo 3 > drop_caches`.
//!
//! What the shrinker reports (`shrink_freed_pages`, as `shrink_freed_mib`)
//! is pages purged for purgeable objects but page references dropped
//! for swappable ones, whose pages stay in shmem until reclaim writes
//! them to swap: its rate is `freed_mib_per_s` for purgeable objects and
//! `references_dropped_mib_per_s` for swappable ones.  What memory
//! actually came back is measured apart, from /proc/meminfo around the
//! driver: `shmem_freed_mib` (Shmem before minus after, once it stopped
//! falling: object pages purged or swapped out) and `memfree_gained_mib` (MemFree after minus
//! before, the hog gone); `objects_swap_used_mib` says how much went to
//! swap.

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
    /// `shrink_freed_pages`: purged pages, or references dropped.
    shrink_freed_mib: u64,
    shrink_purged_objects: u64,
    shrink_released_objects: u64,
    /// Purgeable objects: `shrink_freed_mib` per second.
    #[serde(serialize_with = "num", skip_serializing_if = "Option::is_none")]
    freed_mib_per_s: Option<f64>,
    /// Swappable objects: `shrink_freed_mib` (references dropped) per
    /// second.
    #[serde(serialize_with = "num", skip_serializing_if = "Option::is_none")]
    references_dropped_mib_per_s: Option<f64>,
    /// Shmem before the driver minus after (once it settled).
    shmem_freed_mib: i64,
    /// That over the driver's time plus `settle_s`.
    #[serde(serialize_with = "num")]
    shmem_freed_mib_per_s: f64,
    /// How long Shmem kept falling after the driver returned (pages the
    /// shrinker let go of are freed a little later).
    #[serde(serialize_with = "num")]
    settle_s: f64,
    /// MemFree after the driver minus before.
    memfree_gained_mib: i64,
    objects_swap_used_mib: u64,
    /// The seconds of every run, when this is the median one.
    #[serde(serialize_with = "num", skip_serializing_if = "Option::is_none")]
    seconds_runs: Option<Vec<f64>>,
    /// How many of those runs completed (the others: OOM-killed).
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_runs: Option<usize>,
}

/// One kind of objects.
#[derive(Debug, Serialize)]
struct Kind {
    hog_shrinker_off: Option<Run>,
    hog_shrinker_on: Option<Run>,
    drop_caches: Run,
    /// Null unless every hog run completed.
    #[serde(serialize_with = "num")]
    hog_wait_ratio_on_vs_off: f64,
}

/// The reclaim benchmark's result.
#[derive(Debug, Serialize)]
pub struct Reclaim {
    available_mib: u64,
    objects_mib: u64,
    hog_mib: u64,
    /// The hog's memory is locked (mlock).
    hog_locked: bool,
    swap: &'static str,
    purgeable: Kind,
    swappable: Kind,
}

/// The run of median `seconds`, with `seconds_runs` listing them all.
fn median_run(mut runs: Vec<Run>) -> Option<Run> {
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let all: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    let completed = runs.iter().filter(|r| r.completed).count();
    let mut r = runs.into_iter().nth(all.len() / 2)?;
    r.seconds_runs = Some(all);
    r.completed_runs = Some(completed);
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

/// Waits until Shmem stops changing (50 ms apart, at most 2 s); returns
/// the seconds waited.
fn settle() -> f64 {
    let t = Instant::now();
    let mut last = sys::meminfo("Shmem");
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = sys::meminfo("Shmem");
        if now == last {
            break;
        }
        last = now;
    }
    sys::secs(t)
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
    let (shmem0, free0) = (sys::meminfo("Shmem"), sys::meminfo("MemFree"));
    let before = Counters::read()?;
    let (took, completed) = driver();
    let d = Counters::read()?.since(&before);
    let settle_s = settle();
    let (shmem1, free1) = (sys::meminfo("Shmem"), sys::meminfo("MemFree"));
    let freed = d.get("shrink_freed_pages");
    let swap_used = swap_used_kib().saturating_sub(swap0);
    let mib = |kib_a: u64, kib_b: u64| (kib_a as i64 - kib_b as i64) / 1024;
    let shmem_freed = mib(shmem0, shmem1);
    let rate = (freed * PAGE) as f64 / MIB as f64 / took;
    let out = Run {
        objects: objs.handles.len(),
        objects_mib: objs.bytes() / MIB,
        seconds: took,
        completed,
        shrink_scans: d.get("shrink_scans"),
        shrink_freed_mib: freed * PAGE / MIB,
        shrink_purged_objects: d.get("shrink_purged_objects"),
        shrink_released_objects: d.get("shrink_released_objects"),
        freed_mib_per_s: (kind == "purgeable").then_some(rate),
        references_dropped_mib_per_s: (kind != "purgeable").then_some(rate),
        shmem_freed_mib: shmem_freed,
        shmem_freed_mib_per_s: shmem_freed as f64 / (took + settle_s),
        settle_s,
        memfree_gained_mib: mib(free1, free0),
        objects_swap_used_mib: swap_used / 1024,
        seconds_runs: None,
        completed_runs: None,
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
        let hog_rate = on_run
            .as_ref()
            .map_or(f64::NAN, |r| r.shmem_freed_mib_per_s);
        let drop_rate = drop_caches.shmem_freed_mib_per_s;
        let done = |r: &Option<Run>| r.as_ref().and_then(|r| r.completed_runs).unwrap_or(0);
        println!(
            "movgem-bench: reclaim {kind}: hog {on:.2} s with the shrinker ({} of {REPS} completed), \
             {off:.2} s without ({} of {REPS} completed); Shmem freed {hog_rate:.0} MiB/s under the hog, \
             {drop_rate:.0} MiB/s from drop_caches",
            done(&on_run),
            done(&off_run)
        );
        // Only when every hog run completed: the time of one the OOM
        // killer took is no wait.
        let ratio = if done(&on_run) == REPS && done(&off_run) == REPS {
            on / off
        } else {
            f64::NAN
        };
        kinds.push(Kind {
            hog_shrinker_off: off_run,
            hog_shrinker_on: on_run,
            drop_caches,
            hog_wait_ratio_on_vs_off: ratio,
        });
    }
    let [purgeable, swappable]: [Kind; 2] = kinds
        .try_into()
        .map_err(|_| "two kinds of objects".to_string())?;
    Ok(Reclaim {
        available_mib: avail / MIB,
        objects_mib: bytes / MIB,
        hog_mib: hog_bytes / MIB,
        hog_locked: true,
        swap: "zram 1 GiB",
        purgeable,
        swappable,
    })
}
