// SPDX-License-Identifier: GPL-2.0

//! Migration cost: pages per second moved by move_pages(2) between the
//! two fake NUMA nodes, for plain shmem pages (a memfd) and for bound
//! idle objects (the hook releases each object on its first page, then
//! its pages move as plain shmem pages), and what the release costs
//! later: rebinding the released objects (EXECBUF), in ms per MiB,
//! next to the first bind of the same amount of resident pages.

use std::time::Instant;

use movgem_guest::env::{self, Counters, GpuAwake};
use movgem_uapi::{self as uapi, Device};

use crate::json::Json;
use crate::stats;
use crate::sys::{self, io, Objects, MIB};

/// Memory moved per measurement.
const TOTAL: u64 = 64 * MIB;
/// Object size for the bound case.
const OBJ_SIZE: u64 = 4 * MIB;
const REPS: usize = 5;

fn rate(m: &sys::Moved) -> f64 {
    m.moved as f64 / m.secs
}

fn plain() -> Result<Json, String> {
    let (fd, addr) = sys::memfd(TOTAL)?;
    let addrs = sys::page_addrs(addr, TOTAL);
    let mut rates = Vec::new();
    let mut moved = Vec::new();
    for _ in 0..REPS {
        let m = sys::move_all_across(&addrs)?;
        rates.push(rate(&m));
        moved.push(m.moved);
    }
    sys::unmap(addr, TOTAL);
    // SAFETY: our memfd, closed once.
    unsafe { libc::close(fd) };
    Ok(Json::obj()
        .with("pages", addrs.len())
        .with("pages_moved", moved)
        .with("pages_per_s", rates.clone())
        .with("pages_per_s_median", stats::median(&rates)))
}

fn hooked(dev: &Device) -> Result<Json, String> {
    let count = (TOTAL / OBJ_SIZE) as usize;
    let objs = Objects::create(dev, count, OBJ_SIZE)?;
    // First bind of resident pages: written with PWRITE, then bound.
    objs.pwrite_all(&sys::sample_page(3))?;
    let t = Instant::now();
    objs.execbuf(uapi::OP_NOP, 0)?;
    let first_bind_ms = sys::secs(t) * 1e3;
    let maps = objs.map_first(OBJ_SIZE)?;
    let addrs = maps.addrs();
    let mut rates = Vec::new();
    let mut moved = Vec::new();
    let mut rebind_ms = Vec::new();
    let mut released = Vec::new();
    let mut rebinds = Vec::new();
    for _ in 0..REPS {
        let before = Counters::read()?;
        let m = sys::move_all_across(&addrs)?;
        let d = Counters::read()?.since(&before);
        rates.push(rate(&m));
        moved.push(m.moved);
        released.push(d.get("released_objects"));
        // Rebind: what the next GPU use of the released objects costs.
        let before = Counters::read()?;
        let t = Instant::now();
        objs.execbuf(uapi::OP_NOP, 0)?;
        rebind_ms.push(sys::secs(t) * 1e3);
        rebinds.push(Counters::read()?.since(&before).get("rebinds"));
    }
    // The same pages with the hook off: they are pinned and stay put;
    // this is the time migrate_pages() spends failing on them.
    env::set_param("hook", "0")?;
    let off = sys::move_all_across(&addrs);
    env::set_param("hook", "1")?;
    let off = off?;
    drop(maps);
    let mib = objs.bytes() as f64 / MIB as f64;
    let per_mib: Vec<f64> = rebind_ms.iter().map(|ms| ms / mib).collect();
    Ok(Json::obj()
        .with("objects", count)
        .with("object_mib", OBJ_SIZE / MIB)
        .with("pages", addrs.len())
        .with("pages_moved", moved)
        .with("released_objects", released)
        .with("pages_per_s", rates.clone())
        .with("pages_per_s_median", stats::median(&rates))
        .with("rebinds", rebinds)
        .with("rebind_ms", rebind_ms)
        .with("rebind_ms_per_mib", per_mib.clone())
        .with("rebind_ms_per_mib_median", stats::median(&per_mib))
        .with("first_bind_ms_per_mib", first_bind_ms / mib)
        .with("hook_off_pages_asked", off.asked)
        .with("hook_off_pages_moved", off.moved)
        .with("hook_off_s", off.secs))
}

pub fn run() -> Result<Json, String> {
    let _awake = GpuAwake::new()?;
    let dev = io(Device::open(), "open")?;
    let plain = plain()?;
    let hook = hooked(&dev)?;
    let med = |j: &Json| match j.get("pages_per_s_median") {
        Some(Json::Num(x)) => *x,
        _ => f64::NAN,
    };
    let ratio = med(&hook) / med(&plain);
    println!(
        "movgem-bench: migration: plain {:.0} pages/s, bound via hook {:.0} pages/s (ratio {ratio:.2})",
        med(&plain),
        med(&hook)
    );
    let rebind = hook
        .get("rebind_ms_per_mib_median")
        .cloned()
        .unwrap_or(Json::Null);
    Ok(Json::obj()
        .with("total_mib", TOTAL / MIB)
        .with("reps", REPS)
        .with("ratio_hook_vs_plain", ratio)
        .with("rebind_ms_per_mib", rebind)
        .with("plain_shmem", plain)
        .with("bound_idle_hook", hook))
}
