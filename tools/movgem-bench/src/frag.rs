// SPDX-License-Identifier: GPL-2.0

//! Fragmentation recovery: how many 2 MiB pages the kernel can assemble
//! after compaction when objects are spread over memory.
//!
//! Each round starts from the same layout: a tmpfs filler of 4/5 of the
//! available memory with every other page punched out (shuffled), then
//! objects of 4 MiB filling 2/5 of it (so they land in the holes, all
//! over the zone), then the filler goes.  Three rounds:
//!
//! - `ceiling`: the objects' pages are written with PWRITE but never
//!   bound: plain shmem pages that compaction may move (the practical
//!   ceiling);
//! - `hook_off`: bound and idle, `hook=0` (what an unpatched kernel does);
//! - `hook_on`: bound and idle, `hook=1`.
//!
//! Then: extfrag unusable index (order 9), compaction, the index again,
//! free memory (physical limit = free / 2 MiB), hugetlb pages obtained,
//! and a THP attempt.  The shrinker is off throughout, so that only the
//! hook differs; the bench guest has no swap at this point.

use std::time::Instant;

use movgem_tests::env::{self, Counters, GpuAwake};
use movgem_uapi::{self as uapi, Device};

use crate::json::Json;
use crate::sys::{self, io, Objects, MIB};

const OBJ_SIZE: u64 = 4 * MIB;

fn round(cfg: &str) -> Result<Json, String> {
    let dev = io(Device::open(), "open")?;
    let avail = sys::meminfo("MemAvailable") * 1024;
    let count = (avail * 2 / 5 / OBJ_SIZE) as usize;
    let t0 = Instant::now();
    let filler = env::fragment_fraction(4, 5)?;
    let objs = Objects::create(&dev, count, OBJ_SIZE)?;
    if cfg == "ceiling" {
        objs.pwrite_all(&sys::sample_page(7))?;
    } else {
        objs.execbuf(uapi::OP_FILL, 0x600d_f00d)?;
    }
    drop(filler);
    let setup_s = sys::secs(t0);
    env::set_param("hook", if cfg == "hook_off" { "0" } else { "1" })?;
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
    // THP: an anonymous region of 70% of what is free now (no swap, the
    // objects cannot be reclaimed: leave room).
    let thp_len = sys::meminfo("MemFree") * 1024 * 7 / 10 / (2 * MIB) * (2 * MIB);
    let (thp, thp_s) = sys::thp_pages(thp_len)?;
    let d = Counters::read()?.since(&before);
    env::set_param("hook", "1")?;
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
        .with("thp_pages", thp)
        .with("thp_region_mib", thp_len / MIB)
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
        .with("thp_touch_s", thp_s)
        .with("hook_calls", d.get("hook_calls"))
        .with("hook_bypassed", d.get("hook_bypassed"))
        .with("migrated", d.get("migrated"))
        .with("released_objects", d.get("released_objects"));
    println!(
        "movgem-bench: fragmentation {cfg}: {hugepages} hugepages (physical limit {physical_limit}), \
         THP {thp}, unusable index {:.3} -> {:.3}",
        mean(&unusable_before),
        mean(&unusable_after)
    );
    Ok(out)
}

fn mean(z: &[(String, f64)]) -> f64 {
    z.iter().map(|x| x.1).sum::<f64>() / z.len().max(1) as f64
}

pub fn run() -> Result<Json, String> {
    let _awake = GpuAwake::new()?;
    let _ = sys::write("/sys/kernel/mm/transparent_hugepage/enabled", "madvise");
    let _ = sys::write("/sys/kernel/mm/transparent_hugepage/defrag", "madvise");
    env::set_param("shrinker", "0")?;
    let mut rounds = Json::obj();
    let mut result = Ok(());
    for cfg in ["ceiling", "hook_off", "hook_on"] {
        match round(cfg) {
            Ok(r) => {
                rounds.set(cfg, r);
            }
            Err(e) => {
                result = Err(format!("{cfg}: {e}"));
                break;
            }
        }
    }
    env::set_param("shrinker", "1")?;
    env::set_param("hook", "1")?;
    result?;
    let pick = |cfg: &str, key: &str| rounds.get(cfg).and_then(|r| r.get(key)).cloned();
    let num = |j: Option<Json>| match j {
        Some(Json::Int(i)) => i as f64,
        Some(Json::Num(x)) => x,
        _ => f64::NAN,
    };
    let ceiling = num(pick("ceiling", "hugepages"));
    let on = num(pick("hook_on", "hugepages"));
    let off = num(pick("hook_off", "hugepages"));
    let mut huge = Json::obj();
    for cfg in ["ceiling", "hook_on", "hook_off"] {
        huge.set(cfg, pick(cfg, "hugepages").unwrap_or(Json::Null));
    }
    // The physical limit of the hook-on round: every round frees the
    // same amount, this is the one the headline compares against.
    huge.set(
        "physical_limit",
        pick("hook_on", "physical_limit").unwrap_or(Json::Null),
    );
    let mut thp = Json::obj();
    let mut unusable = Json::obj();
    for cfg in ["ceiling", "hook_on", "hook_off"] {
        thp.set(cfg, pick(cfg, "thp_pages").unwrap_or(Json::Null));
        let u = |k: &str| {
            pick(cfg, k)
                .and_then(|j| j.get("mean").cloned())
                .unwrap_or(Json::Null)
        };
        unusable.set(
            cfg,
            Json::obj()
                .with("before_compaction", u("unusable_index_order9_before"))
                .with("after_compaction", u("unusable_index_order9_after")),
        );
    }
    Ok(Json::obj()
        .with("hugepages", huge)
        .with("hook_on_vs_ceiling", on / ceiling)
        .with("hook_off_vs_ceiling", off / ceiling)
        .with("thp_pages", thp)
        .with("unusable_index_order9", unusable)
        .with("rounds", rounds))
}
