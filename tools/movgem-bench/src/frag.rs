// SPDX-License-Identifier: GPL-2.0

//! Fragmentation recovery: how many 2 MiB pages the kernel can assemble
//! after compaction when objects are spread over memory.
//!
//! Each round (three of each configuration, interleaved; the medians
//! are the results) starts from the same layout: a tmpfs filler of 3/4 of the
//! available memory with every other page punched out (shuffled), then
//! objects of 4 MiB filling 3/8 of it (so they land in the holes, all
//! over the zone), then the filler goes, and the GPU, idle, runtime-
//! suspends (as an idle GPU does; the rounds run with it asleep).  Four
//! configurations:
//!
//! - `ceiling`: the objects' pages are written with PWRITE but never
//!   bound: plain shmem pages that compaction may move (the practical
//!   ceiling);
//! - `hook_off`: bound and idle, `hook=off` (what an unpatched kernel
//!   does);
//! - `release`: bound and idle, `hook=release` (the 2016 design, which
//!   refuses while the device is asleep);
//! - `inplace`: bound and idle, `hook=inplace` (the default).
//!
//! Then: extfrag unusable index (order 9), compaction, the index again,
//! free memory (physical limit = free / 2 MiB), hugetlb pages obtained,
//! and a THP attempt.  The shrinker is off throughout, so that only the
//! hook differs; the bench guest has no swap at this point.

use std::time::Instant;

use movgem_guest::env::{self, Counters};
use movgem_uapi::{self as uapi, Device};

use crate::json::Json;
use crate::stats;
use crate::sys::{self, io, Objects, MIB};

const OBJ_SIZE: u64 = 4 * MIB;

fn round(cfg: &str) -> Result<Json, String> {
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
    let count = (avail * 3 / 8 / OBJ_SIZE) as usize;
    let t0 = Instant::now();
    let filler = env::fragment_fraction(3, 4)?;
    let objs = Objects::create(&dev, count, OBJ_SIZE)?;
    if cfg == "ceiling" {
        objs.pwrite_all(&sys::sample_page(7))?;
    } else {
        objs.execbuf(uapi::OP_FILL, 0x600d_f00d)?;
    }
    drop(filler);
    let setup_s = sys::secs(t0);
    env::wait_runtime_status("suspended", 60_000)?;
    env::set_param("hook", hook_mode(cfg))?;
    let info = io(dev.info(), "info")?;

    let before = Counters::read()?;
    let unusable_before = sys::unusable_index_order9();
    let t = Instant::now();
    env::compact()?;
    let compact_s = sys::secs(t);
    let unusable_after = sys::unusable_index_order9();
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
    drop(objs);

    let out = Json::obj()
        .with("objects", count)
        .with("object_mib", OBJ_SIZE / MIB)
        .with("objects_total_mib", count as u64 * OBJ_SIZE / MIB)
        .with("bound_objects", info.bound_objects)
        .with("available_mib_at_start", avail / MIB)
        .with("free_mib_before_alloc", free_kib / 1024)
        .with("physical_limit", physical_limit)
        .with("hugepages", hugepages)
        .with("thp_pages", thp.pages)
        .with("thp_region_mib", thp_len / MIB)
        .with("thp_fault_alloc", thp.fault_alloc)
        .with("thp_fault_fallback", thp.fault_fallback)
        .with("thp_eligible", thp.eligible)
        .with("thp_madvised", thp.advised)
        .with(
            "unusable_index_order9_before",
            sys::unusable_json(&unusable_before),
        )
        .with(
            "unusable_index_order9_after",
            sys::unusable_json(&unusable_after),
        )
        .with("setup_s", setup_s)
        .with("compact_s", compact_s)
        .with("hugetlb_alloc_s", huge_s)
        .with("thp_touch_s", thp.secs)
        .with("hook_calls", d.get("hook_calls"))
        .with("hook_bypassed", d.get("hook_bypassed"))
        .with("migrated", d.get("migrated"))
        .with("migrated_in_place", d.get("migrated_in_place"))
        .with("released_objects", d.get("released_objects"))
        .with("released_pages", d.get("released_pages"))
        .with("unbinds", d.get("unbinds"))
        .with("refused_suspended", d.get("refused_suspended"))
        .with("runtime_resumes", d.get("runtime_resumes"))
        .with("bound_objects_after", bound_after)
        .with("runtime_status_after", status_after.as_str());
    println!(
        "movgem-bench: fragmentation {cfg}: {hugepages} hugepages (physical limit {physical_limit}), \
         THP {} (eligible {}, faults: {} huge, {} fell back), unusable index {:.3} -> {:.3}",
        thp.pages,
        thp.eligible,
        thp.fault_alloc,
        thp.fault_fallback,
        mean(&unusable_before),
        mean(&unusable_after)
    );
    Ok(out)
}

/// The `hook` parameter of a configuration.
fn hook_mode(cfg: &str) -> &'static str {
    match cfg {
        "hook_off" => "off",
        "release" => "release",
        _ => "inplace",
    }
}

fn mean(z: &[(String, f64)]) -> f64 {
    z.iter().map(|x| x.1).sum::<f64>() / z.len().max(1) as f64
}

/// Rounds of each configuration, interleaved (ceiling, off, release,
/// in place, ceiling, ...): the page allocator varies from round to
/// round; the medians are the results.
pub const REPS: usize = 3;
const CONFIGS: [&str; 4] = ["ceiling", "hook_off", "release", "inplace"];

fn num(j: Option<&Json>) -> f64 {
    match j {
        Some(Json::Int(i)) => *i as f64,
        Some(Json::Num(x)) => *x,
        _ => f64::NAN,
    }
}

pub fn run() -> Result<Json, String> {
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
    let warmup = round("ceiling");
    let mut rounds: Vec<(&str, Json)> = Vec::new();
    let mut result = warmup.map(|_| ());
    'reps: for rep in 0..REPS {
        if result.is_err() {
            break;
        }
        for cfg in CONFIGS {
            match round(cfg) {
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
    // Every value of `key` over the rounds of `cfg`, and their median.
    let values = |cfg: &str, key: &str| -> Vec<f64> {
        rounds
            .iter()
            .filter(|(c, _)| *c == cfg)
            .map(|(_, r)| match key.split_once('.') {
                Some((a, b)) => num(r.get(a).and_then(|j| j.get(b))),
                None => num(r.get(key)),
            })
            .collect()
    };
    let med = |cfg: &str, key: &str| stats::median(&values(cfg, key));
    let mut huge = Json::obj();
    let mut huge_runs = Json::obj();
    let mut thp = Json::obj();
    let mut unusable = Json::obj();
    let mut per_cfg = Json::obj();
    for cfg in CONFIGS {
        huge.set(cfg, med(cfg, "hugepages").map(|x| x as u64));
        huge_runs.set(cfg, values(cfg, "hugepages"));
        thp.set(cfg, med(cfg, "thp_pages").map(|x| x as u64));
        unusable.set(
            cfg,
            Json::obj()
                .with(
                    "before_compaction",
                    med(cfg, "unusable_index_order9_before.mean"),
                )
                .with(
                    "after_compaction",
                    med(cfg, "unusable_index_order9_after.mean"),
                ),
        );
        per_cfg.set(
            cfg,
            Json::Arr(
                rounds
                    .iter()
                    .filter(|(c, _)| *c == cfg)
                    .map(|(_, r)| r.clone())
                    .collect(),
            ),
        );
    }
    // Every round frees about the same; the headline compares against
    // the median physical limit of the in-place rounds.
    huge.set(
        "physical_limit",
        med("inplace", "physical_limit").map(|x| x as u64),
    );
    huge_runs.set("physical_limit", values("inplace", "physical_limit"));
    let ratio = |cfg: &str| {
        let c = med("ceiling", "hugepages").unwrap_or(f64::NAN);
        med(cfg, "hugepages").unwrap_or(f64::NAN) / c
    };
    println!(
        "movgem-bench: fragmentation medians of {REPS}, device asleep: ceiling {}, in place {}, release {}, \
         hook off {}, physical limit {}",
        huge.get("ceiling").cloned().unwrap_or(Json::Null),
        huge.get("inplace").cloned().unwrap_or(Json::Null),
        huge.get("release").cloned().unwrap_or(Json::Null),
        huge.get("hook_off").cloned().unwrap_or(Json::Null),
        huge.get("physical_limit").cloned().unwrap_or(Json::Null)
    );
    let mut pages_released = Json::obj();
    for cfg in ["release", "inplace"] {
        pages_released.set(cfg, med(cfg, "released_pages"));
    }
    Ok(Json::obj()
        .with("hugepages", huge)
        .with("hugepages_runs", huge_runs)
        .with("inplace_vs_ceiling", ratio("inplace"))
        .with("release_vs_ceiling", ratio("release"))
        .with("hook_off_vs_ceiling", ratio("hook_off"))
        .with("released_pages", pages_released)
        .with("thp_pages", thp)
        .with("unusable_index_order9", unusable)
        .with("rounds_per_config", REPS)
        .with("rounds", per_cfg))
}
