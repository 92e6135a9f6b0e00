// SPDX-License-Identifier: GPL-2.0

//! Fragmentation recovery: how many 2 MiB pages the kernel can assemble
//! after compaction when objects are spread over memory.
//!
//! Each round ([`REPS`] of each configuration, interleaved; min, median
//! and max are the results) starts from the same layout, sized once
//! before the first round from the memory available then: a tmpfs
//! filler of 3/4 of it with every other page punched out (shuffled),
//! then a fixed number of objects of 4 MiB, 3/8 of it (so they land in
//! the holes, all over the zone), then the filler goes, and the GPU,
//! idle, runtime-suspends (as an idle GPU does; the rounds run with it
//! asleep, but for `release_awake`).  Five configurations:
//!
//! - `ceiling`: the objects' pages are written with PWRITE but never
//!   bound: plain shmem pages that compaction may move (the practical
//!   ceiling);
//! - `hook_off`: bound and idle, `hook=off` (what an unpatched kernel
//!   does);
//! - `release`: bound and idle, `hook=release` (the 2016 design, which
//!   refuses while the device is asleep);
//! - `release_awake`: the same with the GPU held awake through the
//!   compaction (what the 2016 design does with a busy-looking device:
//!   it lets go of whole objects, unbinding them);
//! - `inplace`: bound and idle, `hook=inplace` (the default).
//!
//! Then: extfrag unusable index (order 9), compaction, the index again,
//! free memory (physical limit = free / 2 MiB, measured in every round
//! of every configuration), hugetlb pages obtained, and a THP attempt.
//! The shrinker is off throughout, so that only the hook differs; the
//! bench guest has no swap at this point.
//!
//! Free memory by order: every round records /proc/buddyinfo right
//! before and right after compaction, the free blocks of each order
//! (0 to 10) summed over every zone of every node (a bench guest, 1 or
//! 2 GiB as two fake nodes, has one DMA32 zone on each, no Normal);
//! `free_blocks_by_order` lists those of the median round (by
//! hugepages) of each configuration.

use std::time::Instant;

use serde::Serialize;

use movgem_guest::env::{self, Counters};
use movgem_uapi::{self as uapi, Device};

use crate::stats::{self, num, Num};
use crate::sys::{self, io, Objects, Unusable, MIB};

const OBJ_SIZE: u64 = 4 * MIB;

/// One round of one configuration.
#[derive(Debug, Serialize)]
struct Round {
    objects: usize,
    object_mib: u64,
    objects_total_mib: u64,
    bound_objects: u64,
    available_mib_at_start: u64,
    free_mib_before_alloc: u64,
    physical_limit: u64,
    hugepages: u64,
    thp_pages: u64,
    thp_region_mib: u64,
    thp_fault_alloc: u64,
    thp_fault_fallback: u64,
    thp_eligible: bool,
    thp_madvised: bool,
    unusable_index_order9_before: Unusable,
    unusable_index_order9_after: Unusable,
    #[serde(serialize_with = "num")]
    setup_s: f64,
    #[serde(serialize_with = "num")]
    compact_s: f64,
    #[serde(serialize_with = "num")]
    hugetlb_alloc_s: f64,
    #[serde(serialize_with = "num")]
    thp_touch_s: f64,
    hook_calls: u64,
    hook_bypassed: u64,
    migrated: u64,
    migrated_in_place: u64,
    released_objects: u64,
    released_pages: u64,
    unbinds: u64,
    refused_suspended: u64,
    runtime_resumes: u64,
    bound_objects_after: u64,
    runtime_status_after: String,
    /// Free blocks per order, all zones summed: see the module doc.
    free_blocks_by_order_before: Vec<u64>,
    free_blocks_by_order_after: Vec<u64>,
}

/// The layout of every round, sized once.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// MemAvailable when it was sized, bytes.
    available: u64,
    filler: u64,
    objects: usize,
}

impl Layout {
    fn now() -> Self {
        let available = sys::meminfo("MemAvailable") * 1024;
        Self {
            available,
            filler: available * 3 / 4,
            objects: (available * 3 / 8 / OBJ_SIZE) as usize,
        }
    }
}

fn round(cfg: &str, layout: Layout) -> Result<Round, String> {
    let dev = io(Device::open(), "open")?;
    let avail = sys::meminfo("MemAvailable") * 1024;
    println!(
        "movgem-bench: fragmentation {cfg}: start: MemFree {} MiB, MemAvailable {} MiB, Shmem {} MiB, \
         AnonPages {} MiB, HugePages_Total {}",
        sys::meminfo("MemFree") >> 10,
        avail >> 20,
        sys::meminfo("Shmem") >> 10,
        sys::meminfo("AnonPages") >> 10,
        sys::meminfo("HugePages_Total")
    );
    let count = layout.objects;
    let t0 = Instant::now();
    let filler = env::fragment_exact(layout.filler)?;
    let objs = Objects::create(&dev, count, OBJ_SIZE)?;
    if cfg == "ceiling" {
        objs.pwrite_all(&sys::sample_page(7))?;
    } else {
        objs.execbuf(uapi::OP_FILL, 0x600d_f00d)?;
    }
    drop(filler);
    let setup_s = sys::secs(t0);
    // Held until the end of the round: the device stays awake through
    // compaction and the hugepage allocation.
    let awake = if cfg == "release_awake" {
        Some(env::GpuAwake::new()?)
    } else {
        env::wait_runtime_status("suspended", 60_000)?;
        None
    };
    env::set_param("hook", hook_mode(cfg))?;
    let info = io(dev.info(), "info")?;

    let before = Counters::read()?;
    let unusable_before = Unusable(sys::unusable_index_order9());
    let buddy_before = sys::free_blocks_by_order();
    let t = Instant::now();
    env::compact()?;
    let compact_s = sys::secs(t);
    let unusable_after = Unusable(sys::unusable_index_order9());
    let buddy_after = sys::free_blocks_by_order();
    let free_kib = sys::meminfo("MemFree");
    let physical_limit = free_kib / 2048;
    let (hugepages, huge_s) = sys::hugetlb_pages()?;
    // THP: an anonymous region of half of what is free now (no swap,
    // the objects cannot be reclaimed: leave room).
    let thp_len = sys::meminfo("MemFree") * 1024 / 2 / (2 * MIB) * (2 * MIB);
    let thp = sys::thp_pages(thp_len)?;
    let d = Counters::read()?.since(&before);
    let bound_after = io(dev.info(), "info")?.bound_objects;
    let status_after = env::runtime_status()?;
    env::set_param("hook", "inplace")?;
    drop(awake);
    drop(objs);

    let out = Round {
        objects: count,
        object_mib: OBJ_SIZE / MIB,
        objects_total_mib: count as u64 * OBJ_SIZE / MIB,
        bound_objects: info.bound_objects,
        available_mib_at_start: avail / MIB,
        free_mib_before_alloc: free_kib / 1024,
        physical_limit,
        hugepages,
        thp_pages: thp.pages,
        thp_region_mib: thp_len / MIB,
        thp_fault_alloc: thp.fault_alloc,
        thp_fault_fallback: thp.fault_fallback,
        thp_eligible: thp.eligible,
        thp_madvised: thp.advised,
        unusable_index_order9_before: unusable_before,
        unusable_index_order9_after: unusable_after,
        setup_s,
        compact_s,
        hugetlb_alloc_s: huge_s,
        thp_touch_s: thp.secs,
        hook_calls: d.get("hook_calls"),
        hook_bypassed: d.get("hook_bypassed"),
        migrated: d.get("migrated"),
        migrated_in_place: d.get("migrated_in_place"),
        released_objects: d.get("released_objects"),
        released_pages: d.get("released_pages"),
        unbinds: d.get("unbinds"),
        refused_suspended: d.get("refused_suspended"),
        runtime_resumes: d.get("runtime_resumes"),
        bound_objects_after: bound_after,
        runtime_status_after: status_after,
        free_blocks_by_order_before: buddy_before,
        free_blocks_by_order_after: buddy_after,
    };
    println!(
        "movgem-bench: fragmentation {cfg}: {hugepages} hugepages (physical limit {physical_limit}), \
         THP {} (eligible {}, faults: {} huge, {} fell back), unusable index {:.3} -> {:.3}",
        thp.pages,
        thp.eligible,
        thp.fault_alloc,
        thp.fault_fallback,
        out.unusable_index_order9_before.mean().unwrap_or(0.0),
        out.unusable_index_order9_after.mean().unwrap_or(0.0)
    );
    Ok(out)
}

/// The `hook` parameter of a configuration.
fn hook_mode(cfg: &str) -> &'static str {
    match cfg {
        "hook_off" => "off",
        "release" | "release_awake" => "release",
        _ => "inplace",
    }
}

/// Rounds of each configuration, interleaved (ceiling, off, release,
/// release awake, in place, ceiling, ...): the page allocator varies from round to
/// round; min, median and max are the results.
pub const REPS: usize = 7;
const CONFIGS: [&str; 5] = ["ceiling", "hook_off", "release", "release_awake", "inplace"];

/// A value of each configuration, in [`CONFIGS`] order.
#[derive(Debug, Serialize)]
struct PerConfig<T> {
    ceiling: T,
    hook_off: T,
    release: T,
    release_awake: T,
    inplace: T,
}

impl<T> PerConfig<T> {
    fn new(mut f: impl FnMut(&str) -> T) -> Self {
        Self {
            ceiling: f(CONFIGS[0]),
            hook_off: f(CONFIGS[1]),
            release: f(CONFIGS[2]),
            release_awake: f(CONFIGS[3]),
            inplace: f(CONFIGS[4]),
        }
    }
}

/// Hugepages of each configuration, and the physical limit (of every
/// round of every configuration).
#[derive(Debug, Serialize)]
struct Hugepages<T> {
    ceiling: T,
    hook_off: T,
    release: T,
    release_awake: T,
    inplace: T,
    physical_limit: T,
}

/// Lowest, median and highest of the rounds of one configuration.
#[derive(Debug, Serialize)]
struct Spread {
    min: Option<u64>,
    median: Option<u64>,
    max: Option<u64>,
}

impl Spread {
    fn of(v: &[u64]) -> Self {
        let f: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        Self {
            min: v.iter().copied().min(),
            median: stats::median(&f).map(|x| x as u64),
            max: v.iter().copied().max(),
        }
    }
}

#[derive(Debug, Serialize)]
struct UnusableMedians {
    #[serde(serialize_with = "num")]
    before_compaction: Option<f64>,
    #[serde(serialize_with = "num")]
    after_compaction: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Released {
    #[serde(serialize_with = "num")]
    release: Option<f64>,
    #[serde(serialize_with = "num")]
    release_awake: Option<f64>,
    #[serde(serialize_with = "num")]
    inplace: Option<f64>,
}

/// /proc/buddyinfo around the compaction of one round.
#[derive(Debug, Serialize)]
struct Buddy {
    /// Which of the configuration's rounds (0-based, in `rounds`).
    round: usize,
    hugepages: u64,
    before_compaction: Vec<u64>,
    after_compaction: Vec<u64>,
}

/// Free blocks by order before and after compaction, from the median
/// round (by hugepages) of each configuration.
#[derive(Debug, Serialize)]
struct FreeByOrder {
    /// What the counts cover.
    zones: &'static str,
    /// The size of an order-0 block.
    page_kib: u64,
    #[serde(flatten)]
    configs: PerConfig<Option<Buddy>>,
}

/// The fragmentation benchmark's result.
#[derive(Debug, Serialize)]
pub struct Fragmentation {
    /// Medians; `physical_limit`: over every round.
    hugepages: Hugepages<Option<u64>>,
    /// Every round; `physical_limit`: of every round, in the order run.
    hugepages_runs: Hugepages<Vec<u64>>,
    /// Min, median and max of the hugepages of each configuration.
    hugepages_spread: PerConfig<Spread>,
    /// Min, median and max of the physical limit of each configuration.
    physical_limit: PerConfig<Spread>,
    physical_limit_runs: PerConfig<Vec<u64>>,
    /// Median hugepages over the median physical limit, by configuration.
    vs_physical_limit: PerConfig<Num>,
    /// The layout of every round.
    objects: usize,
    filler_mib: u64,
    available_mib_when_sized: u64,
    #[serde(serialize_with = "num")]
    inplace_vs_ceiling: f64,
    #[serde(serialize_with = "num")]
    release_vs_ceiling: f64,
    #[serde(serialize_with = "num")]
    release_awake_vs_ceiling: f64,
    #[serde(serialize_with = "num")]
    hook_off_vs_ceiling: f64,
    released_pages: Released,
    thp_pages: PerConfig<Option<u64>>,
    unusable_index_order9: PerConfig<UnusableMedians>,
    rounds_per_config: usize,
    rounds: PerConfig<Vec<Round>>,
    free_blocks_by_order: FreeByOrder,
}

fn nan(x: Option<f64>) -> f64 {
    x.unwrap_or(f64::NAN)
}

/// Buddyinfo of the round of median hugepages among `rounds` (by
/// nearest rank, as [`stats::median`]: its hugepages are the median
/// reported).
fn median_round(rounds: &[&Round]) -> Option<Buddy> {
    let mut order: Vec<usize> = (0..rounds.len()).collect();
    order.sort_by_key(|&i| rounds[i].hugepages);
    let i = *order.get(order.len().checked_sub(1)? / 2)?;
    let r = rounds[i];
    Some(Buddy {
        round: i,
        hugepages: r.hugepages,
        before_compaction: r.free_blocks_by_order_before.clone(),
        after_compaction: r.free_blocks_by_order_after.clone(),
    })
}

pub fn run() -> Result<Fragmentation, String> {
    // `always`: the tiny kernel has no madvise(2), so MADV_HUGEPAGE
    // alone cannot make the THP region eligible.  `defrag` stays
    // `madvise` (the default): THP faults take the 2 MiB blocks the
    // explicit compaction made, without compacting again themselves
    // (with `always`, every failing fault compacts against the pinned
    // pages: minutes per round with the hook off under TCG).
    sys::write("/sys/kernel/mm/transparent_hugepage/enabled", "always")?;
    sys::write("/sys/kernel/mm/transparent_hugepage/defrag", "madvise")?;
    env::set_param("shrinker", "0")?;
    // A warm-up round, not reported: the first compaction of a boot
    // also sorts out what booting left behind, and its round came out
    // lowest in trial runs.
    println!("movgem-bench: fragmentation: warm-up round (not reported)");
    let layout = Layout::now();
    println!(
        "movgem-bench: fragmentation: every round: {} objects of {} MiB, filler {} MiB \
         (MemAvailable {} MiB before the first round)",
        layout.objects,
        OBJ_SIZE / MIB,
        layout.filler / MIB,
        layout.available / MIB
    );
    let warmup = round("ceiling", layout);
    let mut rounds: Vec<(&str, Round)> = Vec::new();
    let mut result = warmup.map(|_| ());
    'reps: for rep in 0..REPS {
        if result.is_err() {
            break;
        }
        for cfg in CONFIGS {
            match round(cfg, layout) {
                Ok(r) => rounds.push((cfg, r)),
                Err(e) => {
                    result = Err(format!("{cfg} (round {}): {e}", rep + 1));
                    break 'reps;
                }
            }
        }
    }
    env::set_param("shrinker", "1")?;
    env::set_param("hook", "inplace")?;
    result?;
    let of = |cfg: &str| -> Vec<&Round> {
        rounds
            .iter()
            .filter(|(c, _)| *c == cfg)
            .map(|(_, r)| r)
            .collect()
    };
    // Every value of `key` over the rounds of `cfg`, and their median.
    let values =
        |cfg: &str, key: fn(&Round) -> f64| -> Vec<f64> { of(cfg).into_iter().map(key).collect() };
    let med = |cfg: &str, key: fn(&Round) -> f64| stats::median(&values(cfg, key));
    let hugepages = |r: &Round| r.hugepages as f64;
    let limit = |r: &Round| r.physical_limit as f64;
    let runs =
        |cfg: &str, key: fn(&Round) -> u64| -> Vec<u64> { of(cfg).into_iter().map(key).collect() };
    // The physical limit of every round of every configuration.
    let all_limits: Vec<f64> = rounds
        .iter()
        .map(|(_, r)| r.physical_limit as f64)
        .collect();
    let huge = Hugepages {
        ceiling: med("ceiling", hugepages).map(|x| x as u64),
        hook_off: med("hook_off", hugepages).map(|x| x as u64),
        release: med("release", hugepages).map(|x| x as u64),
        release_awake: med("release_awake", hugepages).map(|x| x as u64),
        inplace: med("inplace", hugepages).map(|x| x as u64),
        physical_limit: stats::median(&all_limits).map(|x| x as u64),
    };
    let huge_runs = Hugepages {
        ceiling: runs("ceiling", |r| r.hugepages),
        hook_off: runs("hook_off", |r| r.hugepages),
        release: runs("release", |r| r.hugepages),
        release_awake: runs("release_awake", |r| r.hugepages),
        inplace: runs("inplace", |r| r.hugepages),
        physical_limit: rounds.iter().map(|(_, r)| r.physical_limit).collect(),
    };
    let hugepages_spread = PerConfig::new(|cfg| Spread::of(&runs(cfg, |r| r.hugepages)));
    let physical_limit = PerConfig::new(|cfg| Spread::of(&runs(cfg, |r| r.physical_limit)));
    let physical_limit_runs = PerConfig::new(|cfg| runs(cfg, |r| r.physical_limit));
    let vs_physical_limit = PerConfig::new(|cfg| {
        Num(med(cfg, hugepages).unwrap_or(f64::NAN) / med(cfg, limit).unwrap_or(f64::NAN))
    });
    let thp = PerConfig::new(|cfg| med(cfg, |r| r.thp_pages as f64).map(|x| x as u64));
    let unusable = PerConfig::new(|cfg| UnusableMedians {
        before_compaction: med(cfg, |r| nan(r.unusable_index_order9_before.mean())),
        after_compaction: med(cfg, |r| nan(r.unusable_index_order9_after.mean())),
    });
    let free_by_order = FreeByOrder {
        zones: "every zone of every node, summed",
        page_kib: sys::PAGE / 1024,
        configs: PerConfig::new(|cfg| median_round(&of(cfg))),
    };
    let ratio = |cfg: &str| {
        let c = med("ceiling", hugepages).unwrap_or(f64::NAN);
        med(cfg, hugepages).unwrap_or(f64::NAN) / c
    };
    let show = |x: Option<u64>| x.map_or("null".to_string(), |x| x.to_string());
    println!(
        "movgem-bench: fragmentation medians of {REPS} rounds, device asleep: ceiling {}, in place {}, release {}, \
         hook off {}, physical limit {}; release with the device awake {}",
        show(huge.ceiling),
        show(huge.inplace),
        show(huge.release),
        show(huge.hook_off),
        show(huge.physical_limit),
        show(huge.release_awake)
    );
    let released = |r: &Round| r.released_pages as f64;
    let pages_released = Released {
        release: med("release", released),
        release_awake: med("release_awake", released),
        inplace: med("inplace", released),
    };
    let (inplace_vs_ceiling, release_vs_ceiling, hook_off_vs_ceiling) =
        (ratio("inplace"), ratio("release"), ratio("hook_off"));
    let release_awake_vs_ceiling = ratio("release_awake");
    let mut per_cfg: [Vec<Round>; 5] = Default::default();
    for (cfg, r) in rounds {
        let i = CONFIGS.iter().position(|c| *c == cfg).unwrap_or(0);
        per_cfg[i].push(r);
    }
    let [ceiling, hook_off, release, release_awake, inplace] = per_cfg;
    Ok(Fragmentation {
        hugepages: huge,
        hugepages_runs: huge_runs,
        hugepages_spread,
        physical_limit,
        physical_limit_runs,
        vs_physical_limit,
        objects: layout.objects,
        filler_mib: layout.filler / MIB,
        available_mib_when_sized: layout.available / MIB,
        inplace_vs_ceiling,
        release_vs_ceiling,
        release_awake_vs_ceiling,
        hook_off_vs_ceiling,
        released_pages: pages_released,
        thp_pages: thp,
        unusable_index_order9: unusable,
        rounds_per_config: REPS,
        rounds: PerConfig {
            ceiling,
            hook_off,
            release,
            release_awake,
            inplace,
        },
        free_blocks_by_order: free_by_order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(hugepages: u64) -> Round {
        Round {
            objects: 0,
            object_mib: 4,
            objects_total_mib: 0,
            bound_objects: 0,
            available_mib_at_start: 0,
            free_mib_before_alloc: 0,
            physical_limit: 0,
            hugepages,
            thp_pages: 0,
            thp_region_mib: 0,
            thp_fault_alloc: 0,
            thp_fault_fallback: 0,
            thp_eligible: false,
            thp_madvised: false,
            unusable_index_order9_before: Unusable::default(),
            unusable_index_order9_after: Unusable::default(),
            setup_s: 0.0,
            compact_s: 0.0,
            hugetlb_alloc_s: 0.0,
            thp_touch_s: 0.0,
            hook_calls: 0,
            hook_bypassed: 0,
            migrated: 0,
            migrated_in_place: 0,
            released_objects: 0,
            released_pages: 0,
            unbinds: 0,
            refused_suspended: 0,
            runtime_resumes: 0,
            bound_objects_after: 0,
            runtime_status_after: String::new(),
            free_blocks_by_order_before: vec![hugepages; 11],
            free_blocks_by_order_after: vec![hugepages + 1; 11],
        }
    }

    #[test]
    fn spreads() {
        let s = Spread::of(&[30, 10, 20, 50, 40, 60, 70]);
        assert_eq!((s.min, s.median, s.max), (Some(10), Some(40), Some(70)));
        let s = Spread::of(&[]);
        assert_eq!((s.min, s.median, s.max), (None, None, None));
    }

    /// The buddyinfo reported is that of the round whose hugepages are
    /// the median reported.
    #[test]
    fn buddyinfo_of_the_median_round() {
        let rounds = [round(30), round(10), round(20)];
        let refs: Vec<&Round> = rounds.iter().collect();
        let b = median_round(&refs).unwrap();
        let hp: Vec<f64> = rounds.iter().map(|r| r.hugepages as f64).collect();
        assert_eq!(Some(b.hugepages as f64), stats::median(&hp));
        assert_eq!((b.round, b.hugepages), (2, 20));
        assert_eq!(b.before_compaction, vec![20; 11]);
        let two = [round(10), round(20)];
        let refs: Vec<&Round> = two.iter().collect();
        assert_eq!(median_round(&refs).unwrap().hugepages, 10);
        assert!(median_round(&[]).is_none());
        assert_eq!(
            serde_json::to_string(&median_round(&refs[..1]).unwrap()).unwrap(),
            r#"{"round":0,"hugepages":10,"before_compaction":[10,10,10,10,10,10,10,10,10,10,10],"after_compaction":[11,11,11,11,11,11,11,11,11,11,11]}"#
        );
    }
}
