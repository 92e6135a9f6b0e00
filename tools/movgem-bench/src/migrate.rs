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

use movgem_guest::env::{self, Counters, GpuAwake};
use movgem_uapi::{self as uapi, Device};

use crate::json::Json;
use crate::stats;
use crate::sys::{self, io, Objects, MIB};

/// Memory moved per measurement, by object size.
const TOTAL_4M: u64 = 64 * MIB;
const TOTAL_4K: u64 = 16 * MIB;
const REPS: usize = 5;

fn rate(m: &sys::Moved) -> f64 {
    m.moved as f64 / m.secs
}

/// Plain shmem in the objects' layout: `total / obj_size` memfds of
/// `obj_size` bytes, each mapped on its own, so that the comparison
/// differs only by the hook (one mapping per 4 KiB page costs
/// `move_pages()` more than one large mapping, hook or not).
fn plain(obj_size: u64, total: u64) -> Result<Json, String> {
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
    Ok(Json::obj()
        .with("pages", addrs.len())
        .with("mappings", (total / obj_size) as usize)
        .with("pages_moved", moved)
        .with("pages_per_s", rates.clone())
        .with("pages_per_s_median", stats::median(&rates)))
}

/// Bound idle objects of `obj_size` bytes, `total` bytes of them, moved
/// with `hook=mode`.
fn hooked(dev: &Device, mode: &str, obj_size: u64, total: u64) -> Result<Json, String> {
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
    Ok(Json::obj()
        .with("hook", mode)
        .with("objects", count)
        .with("object_kib", obj_size / 1024)
        .with("pages", addrs.len())
        .with("pages_moved", moved)
        .with("migrated_in_place", in_place)
        .with("released_pages", released)
        .with("released_pages_per_page_moved", released_per_moved.clone())
        .with(
            "released_pages_per_page_moved_median",
            stats::median(&released_per_moved),
        )
        .with("pages_per_s", rates.clone())
        .with("pages_per_s_median", stats::median(&rates))
        .with("rebinds", rebinds)
        .with("first_batch_ms", batch_ms)
        .with("first_batch_ms_per_mib", per_mib.clone())
        .with("first_batch_ms_per_mib_median", stats::median(&per_mib))
        .with("first_bind_ms_per_mib", first_bind_ms / mib))
}

/// The same pages with the hook off: they are pinned and stay put; this
/// is the time migrate_pages() spends failing on them.
fn hook_off(dev: &Device) -> Result<Json, String> {
    let objs = Objects::create(dev, (TOTAL_4M / (4 * MIB)) as usize, 4 * MIB)?;
    objs.pwrite_all(&sys::sample_page(5))?;
    objs.execbuf(uapi::OP_NOP, 0)?;
    let maps = objs.map_first(4 * MIB)?;
    let addrs = maps.addrs();
    env::set_param("hook", "off")?;
    let off = sys::move_all_across(&addrs);
    env::set_param("hook", "inplace")?;
    let off = off?;
    Ok(Json::obj()
        .with("pages_asked", off.asked)
        .with("pages_moved", off.moved)
        .with("seconds", off.secs))
}

fn med(j: &Json, key: &str) -> f64 {
    match j.get(key) {
        Some(Json::Num(x)) => *x,
        Some(Json::Int(i)) => *i as f64,
        _ => f64::NAN,
    }
}

pub fn run() -> Result<Json, String> {
    let _awake = GpuAwake::new()?;
    let dev = io(Device::open(), "open")?;
    let mut out = Json::obj().with("reps", REPS);
    for (label, obj_size, total) in [("4m", 4 * MIB, TOTAL_4M), ("4k", 4096, TOTAL_4K)] {
        let plain = plain(obj_size, total)?;
        let inplace = hooked(&dev, "inplace", obj_size, total)?;
        let release = hooked(&dev, "release", obj_size, total)?;
        let p = med(&plain, "pages_per_s_median");
        let ratio_in_place = med(&inplace, "pages_per_s_median") / p;
        let ratio_release = med(&release, "pages_per_s_median") / p;
        let batch_ratio = med(&release, "first_batch_ms_per_mib_median")
            / med(&inplace, "first_batch_ms_per_mib_median");
        println!(
            "movgem-bench: migration, {label} objects: plain {p:.0} pages/s; in place {:.2} of it, \
             release {:.2}; pages released per page moved: in place {}, release {}; \
             first batch after the move: release/in place {batch_ratio:.2}",
            ratio_in_place,
            ratio_release,
            med(&inplace, "released_pages_per_page_moved_median"),
            med(&release, "released_pages_per_page_moved_median"),
        );
        out.set(
            label,
            Json::obj()
                .with("total_mib", total / MIB)
                .with("ratio_inplace_vs_plain", ratio_in_place)
                .with("ratio_release_vs_plain", ratio_release)
                .with("first_batch_release_vs_inplace", batch_ratio)
                .with("plain_shmem", plain)
                .with("inplace", inplace)
                .with("release", release),
        );
    }
    out.set("hook_off_4m", hook_off(&dev)?);
    Ok(out)
}
