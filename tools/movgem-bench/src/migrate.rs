// SPDX-License-Identifier: GPL-2.0

//! Migration cost: pages per second moved by move_pages(2) between the
//! two fake NUMA nodes, for plain shmem pages (a memfd) and for bound
//! idle objects of 4 KiB and of 4 MiB, through the hook in place
//! (`hook=inplace`: each folio moves, the object stays bound) and by
//! release (`hook=release`, the 2016 design: the object lets go of all
//! its pages on its first one, then they move as plain shmem pages);
//! pages released per page moved; and what the next GPU use costs: the
//! first batch over every object after the move (ms per MiB), which
//! after a release has to fetch and rebind, next to the first bind of
//! the same amount of resident pages.  The device is held awake (the
//! release design cannot move anything while it sleeps).

use std::time::Instant;

use serde::Serialize;

use movgem_guest::env::{self, Counters, GpuAwake};
use movgem_uapi::{self as uapi, Device};

use crate::stats::{self, num};
use crate::sys::{self, io, Objects, MIB};

/// Memory moved per measurement, by object size.
const TOTAL_4M: u64 = 64 * MIB;
const TOTAL_4K: u64 = 16 * MIB;
const REPS: usize = 5;

fn rate(m: &sys::Moved) -> f64 {
    m.moved as f64 / m.secs
}

/// Plain shmem pages moved.
#[derive(Debug, Serialize)]
struct Plain {
    pages: usize,
    mappings: usize,
    pages_moved: Vec<usize>,
    #[serde(serialize_with = "num")]
    pages_per_s: Vec<f64>,
    #[serde(serialize_with = "num")]
    pages_per_s_median: Option<f64>,
}

/// Bound idle objects moved through the hook.
#[derive(Debug, Serialize)]
struct Hooked {
    hook: String,
    objects: usize,
    object_kib: u64,
    pages: usize,
    pages_moved: Vec<usize>,
    migrated_in_place: Vec<u64>,
    released_pages: Vec<u64>,
    #[serde(serialize_with = "num")]
    released_pages_per_page_moved: Vec<f64>,
    #[serde(serialize_with = "num")]
    released_pages_per_page_moved_median: Option<f64>,
    #[serde(serialize_with = "num")]
    pages_per_s: Vec<f64>,
    #[serde(serialize_with = "num")]
    pages_per_s_median: Option<f64>,
    rebinds: Vec<u64>,
    #[serde(serialize_with = "num")]
    first_batch_ms: Vec<f64>,
    #[serde(serialize_with = "num")]
    first_batch_ms_per_mib: Vec<f64>,
    #[serde(serialize_with = "num")]
    first_batch_ms_per_mib_median: Option<f64>,
    #[serde(serialize_with = "num")]
    first_bind_ms_per_mib: f64,
}

/// Pinned pages with the hook off.
#[derive(Debug, Serialize)]
struct HookOff {
    pages_asked: usize,
    pages_moved: usize,
    #[serde(serialize_with = "num")]
    seconds: f64,
}

/// One object size.
#[derive(Debug, Serialize)]
struct BySize {
    total_mib: u64,
    #[serde(serialize_with = "num")]
    ratio_inplace_vs_plain: f64,
    #[serde(serialize_with = "num")]
    ratio_release_vs_plain: f64,
    #[serde(serialize_with = "num")]
    first_batch_release_vs_inplace: f64,
    plain_shmem: Plain,
    inplace: Hooked,
    release: Hooked,
}

/// The migration benchmark's result.
#[derive(Debug, Serialize)]
pub struct Migration {
    reps: usize,
    #[serde(rename = "4m")]
    m4: BySize,
    #[serde(rename = "4k")]
    k4: BySize,
    hook_off_4m: HookOff,
}

/// Plain shmem in the objects' layout: `total / obj_size` memfds of
/// `obj_size` bytes, each mapped on its own, so that the comparison
/// differs only by the hook (one mapping per 4 KiB page costs
/// `move_pages()` more than one large mapping, hook or not).
fn plain(obj_size: u64, total: u64) -> Result<Plain, String> {
    let maps = sys::memfds((total / obj_size) as usize, obj_size)?;
    let addrs = maps.addrs();
    let mut rates = Vec::new();
    let mut moved = Vec::new();
    for _ in 0..REPS {
        let m = sys::move_all_across(&addrs)?;
        rates.push(rate(&m));
        moved.push(m.moved);
    }
    drop(maps);
    Ok(Plain {
        pages: addrs.len(),
        mappings: (total / obj_size) as usize,
        pages_moved: moved,
        pages_per_s_median: stats::median(&rates),
        pages_per_s: rates,
    })
}

/// Bound idle objects of `obj_size` bytes, `total` bytes of them, moved
/// with `hook=mode`.
fn hooked(dev: &Device, mode: &str, obj_size: u64, total: u64) -> Result<Hooked, String> {
    let count = (total / obj_size) as usize;
    let objs = Objects::create(dev, count, obj_size)?;
    // First bind of resident pages: written with PWRITE, then bound.
    objs.pwrite_all(&sys::sample_page(3))?;
    let t = Instant::now();
    objs.execbuf(uapi::OP_NOP, 0)?;
    let first_bind_ms = sys::secs(t) * 1e3;
    let maps = objs.map_first(obj_size)?;
    let addrs = maps.addrs();
    env::set_param("hook", mode)?;
    let mut rates = Vec::new();
    let mut moved = Vec::new();
    let mut batch_ms = Vec::new();
    let mut released = Vec::new();
    let mut released_per_moved = Vec::new();
    let mut in_place = Vec::new();
    let mut rebinds = Vec::new();
    let mut result = Ok(());
    for _ in 0..REPS {
        let before = Counters::read()?;
        let m = match sys::move_all_across(&addrs) {
            Ok(m) => m,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let d = Counters::read()?.since(&before);
        rates.push(rate(&m));
        moved.push(m.moved);
        released.push(d.get("released_pages"));
        released_per_moved.push(d.get("released_pages") as f64 / m.moved.max(1) as f64);
        in_place.push(d.get("migrated_in_place"));
        // The next GPU use of every object.
        let before = Counters::read()?;
        let t = Instant::now();
        if let Err(e) = objs.execbuf(uapi::OP_NOP, 0) {
            result = Err(e);
            break;
        }
        batch_ms.push(sys::secs(t) * 1e3);
        rebinds.push(Counters::read()?.since(&before).get("rebinds"));
    }
    env::set_param("hook", "inplace")?;
    result?;
    drop(maps);
    let mib = objs.bytes() as f64 / MIB as f64;
    let per_mib: Vec<f64> = batch_ms.iter().map(|ms| ms / mib).collect();
    Ok(Hooked {
        hook: mode.to_string(),
        objects: count,
        object_kib: obj_size / 1024,
        pages: addrs.len(),
        pages_moved: moved,
        migrated_in_place: in_place,
        released_pages: released,
        released_pages_per_page_moved_median: stats::median(&released_per_moved),
        released_pages_per_page_moved: released_per_moved,
        pages_per_s_median: stats::median(&rates),
        pages_per_s: rates,
        rebinds,
        first_batch_ms: batch_ms,
        first_batch_ms_per_mib_median: stats::median(&per_mib),
        first_batch_ms_per_mib: per_mib,
        first_bind_ms_per_mib: first_bind_ms / mib,
    })
}

/// The same pages with the hook off: they are pinned and stay put; this
/// is the time migrate_pages() spends failing on them.
fn hook_off(dev: &Device) -> Result<HookOff, String> {
    let objs = Objects::create(dev, (TOTAL_4M / (4 * MIB)) as usize, 4 * MIB)?;
    objs.pwrite_all(&sys::sample_page(5))?;
    objs.execbuf(uapi::OP_NOP, 0)?;
    let maps = objs.map_first(4 * MIB)?;
    let addrs = maps.addrs();
    env::set_param("hook", "off")?;
    let off = sys::move_all_across(&addrs);
    env::set_param("hook", "inplace")?;
    let off = off?;
    Ok(HookOff {
        pages_asked: off.asked,
        pages_moved: off.moved,
        seconds: off.secs,
    })
}

fn nan(x: Option<f64>) -> f64 {
    x.unwrap_or(f64::NAN)
}

pub fn run() -> Result<Migration, String> {
    let _awake = GpuAwake::new()?;
    let dev = io(Device::open(), "open")?;
    let mut sizes = Vec::new();
    for (label, obj_size, total) in [("4m", 4 * MIB, TOTAL_4M), ("4k", 4096, TOTAL_4K)] {
        let plain = plain(obj_size, total)?;
        let inplace = hooked(&dev, "inplace", obj_size, total)?;
        let release = hooked(&dev, "release", obj_size, total)?;
        let p = nan(plain.pages_per_s_median);
        let ratio_in_place = nan(inplace.pages_per_s_median) / p;
        let ratio_release = nan(release.pages_per_s_median) / p;
        let batch_ratio =
            nan(release.first_batch_ms_per_mib_median) / nan(inplace.first_batch_ms_per_mib_median);
        println!(
            "movgem-bench: migration, {label} objects: plain {p:.0} pages/s; in place {:.2} of it, \
             release {:.2}; pages released per page moved: in place {}, release {}; \
             first batch after the move: release/in place {batch_ratio:.2}",
            ratio_in_place,
            ratio_release,
            nan(inplace.released_pages_per_page_moved_median),
            nan(release.released_pages_per_page_moved_median),
        );
        sizes.push(BySize {
            total_mib: total / MIB,
            ratio_inplace_vs_plain: ratio_in_place,
            ratio_release_vs_plain: ratio_release,
            first_batch_release_vs_inplace: batch_ratio,
            plain_shmem: plain,
            inplace,
            release,
        });
    }
    let hook_off_4m = hook_off(&dev)?;
    let [m4, k4]: [BySize; 2] = sizes
        .try_into()
        .map_err(|_| "two object sizes".to_string())?;
    Ok(Migration {
        reps: REPS,
        m4,
        k4,
        hook_off_4m,
    })
}
