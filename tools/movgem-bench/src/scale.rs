// SPDX-License-Identifier: GPL-2.0

//! Scale: how the hook's and the shrinker's costs grow with the number
//! of objects and with their size.
//!
//! - By count (1k, 10k, 100k objects of 4 KiB): every object holds its
//!   page through a cached kernel mapping (VMAP + VUNMAP; unbound:
//!   binding 100k objects into the simulated GTT is quadratic, its
//!   first-fit search walks every range).  Hook: move_pages of every
//!   object's page to the other node (the hook releases each object).
//!   Shrinker: the pages are taken again (VMAP + VUNMAP), then
//!   `echo 2 > drop_caches` (slab shrinkers only).
//! - By size (4 KiB .. 64 MiB; 256 MiB of each size, 8 to 256
//!   objects): bound idle objects (EXECBUF).  Hook: move_pages of the
//!   first page of every object (the hook releases the whole object,
//!   then one page moves), per object; the same number of memfd pages
//!   moved the same way is the baseline (`hook_net_*` = the difference:
//!   what releasing costs).  Shrinker: rebind, then
//!   `echo 2 > drop_caches`.
//!
//! The slope of log(cost) over log(count or pages) is printed: 1 is
//! linear growth, more is worse.  Nothing is asserted.

use std::time::Instant;

use movgem_guest::env::{Counters, GpuAwake};
use movgem_uapi::{self as uapi, Device};

use crate::json::Json;
use crate::stats;
use crate::sys::{self, io, Objects, MIB, PAGE};

pub const COUNTS: [usize; 3] = [1_000, 10_000, 100_000];
pub const SIZES: [u64; 5] = [4 << 10, 64 << 10, MIB, 16 * MIB, 64 * MIB];

fn by_count(dev: &Device, n: usize) -> Result<Json, String> {
    let t = Instant::now();
    let objs = Objects::create(dev, n, PAGE)?;
    let create_s = sys::secs(t);
    let t = Instant::now();
    objs.vmap_cached()?;
    let populate_s = sys::secs(t);
    let maps = objs.map_first(PAGE)?;
    let addrs = maps.addrs();
    let before = Counters::read()?;
    let m = sys::move_all_across(&addrs)?;
    let hook = Counters::read()?.since(&before);
    objs.vmap_cached()?;
    let before = Counters::read()?;
    let t = Instant::now();
    sys::drop_caches(2)?;
    let shrink_s = sys::secs(t);
    let shrink = Counters::read()?.since(&before);
    drop(maps);
    let t = Instant::now();
    drop(objs);
    let close_s = sys::secs(t);
    println!(
        "movgem-bench: scale {n} objects: hook {:.1} us/object, shrinker {:.1} us/object",
        m.secs * 1e6 / n as f64,
        shrink_s * 1e6 / n as f64
    );
    Ok(Json::obj()
        .with("objects", n)
        .with("create_s", create_s)
        .with("populate_s", populate_s)
        .with("close_s", close_s)
        .with("hook_s", m.secs)
        .with("hook_us_per_object", m.secs * 1e6 / n as f64)
        .with("pages_moved", m.moved)
        .with("hook_released_objects", hook.get("released_objects"))
        .with("shrink_s", shrink_s)
        .with("shrink_us_per_object", shrink_s * 1e6 / n as f64)
        .with("shrink_freed_pages", shrink.get("shrink_freed_pages"))
        .with("shrink_scans", shrink.get("shrink_scans")))
}

/// Objects of `size` in the size sweep: 256 MiB worth, at least 8 and
/// at most 256.
fn per_size(size: u64) -> usize {
    ((256 * MIB / size) as usize).clamp(8, 256)
}

fn by_size(dev: &Device, size: u64) -> Result<Json, String> {
    let n = per_size(size);
    let pages = size / PAGE;
    let objs = Objects::create(dev, n, size)?;
    let t = Instant::now();
    objs.execbuf(uapi::OP_NOP, 0)?;
    let bind_s = sys::secs(t);
    let maps = objs.map_first(PAGE)?;
    let before = Counters::read()?;
    let m = sys::move_all_across(&maps.addrs())?;
    let hook = Counters::read()?.since(&before);
    // The same number of plain shmem pages moved the same way: what the
    // calls and the page copies cost without the hook.
    let (fd, addr) = sys::memfd(n as u64 * PAGE)?;
    let base = sys::move_all_across(&sys::page_addrs(addr, n as u64 * PAGE));
    sys::unmap(addr, n as u64 * PAGE);
    // SAFETY: our memfd, closed once.
    unsafe { libc::close(fd) };
    let base = base?;
    let hook_us = m.secs * 1e6 / n as f64;
    let net_us = (m.secs - base.secs) * 1e6 / n as f64;
    objs.execbuf(uapi::OP_NOP, 0)?;
    let before = Counters::read()?;
    let t = Instant::now();
    sys::drop_caches(2)?;
    let shrink_s = sys::secs(t);
    let shrink = Counters::read()?.since(&before);
    drop(maps);
    drop(objs);
    let shrink_us = shrink_s * 1e6 / n as f64;
    println!(
        "movgem-bench: scale {} KiB objects: hook {hook_us:.1} us/object ({net_us:.1} over plain), \
         shrinker {shrink_us:.1} us/object",
        size >> 10
    );
    Ok(Json::obj()
        .with("object_kib", size >> 10)
        .with("objects", n)
        .with("pages_per_object", pages)
        .with("bind_us_per_page", bind_s * 1e6 / (n as f64 * pages as f64))
        .with("hook_us_per_object", hook_us)
        .with("plain_us_per_page_moved", base.secs * 1e6 / n as f64)
        .with("hook_net_us_per_object", net_us)
        .with("hook_net_us_per_page", net_us / pages as f64)
        .with("hook_pages_moved", m.moved)
        .with("hook_released_pages", hook.get("released_pages"))
        .with("shrink_s", shrink_s)
        .with("shrink_us_per_object", shrink_us)
        .with("shrink_us_per_page", shrink_us / pages as f64)
        .with("shrink_freed_pages", shrink.get("shrink_freed_pages")))
}

fn num(j: &Json, k: &str) -> f64 {
    match j.get(k) {
        Some(Json::Num(x)) => *x,
        Some(Json::Int(i)) => *i as f64,
        _ => f64::NAN,
    }
}

pub fn run(counts: &[usize]) -> Result<Json, String> {
    let _awake = GpuAwake::new()?;
    // One user mapping per object, and 100k of them.
    sys::write("/proc/sys/vm/max_map_count", "1000000")?;
    let dev = io(Device::open(), "open")?;
    let mut count_rows = Vec::new();
    for &n in counts {
        count_rows.push(by_count(&dev, n)?);
    }
    let mut size_rows = Vec::new();
    for size in SIZES {
        size_rows.push(by_size(&dev, size)?);
    }
    let slope = |rows: &[Json], x: &str, y: &str| {
        let pts: Vec<(f64, f64)> = rows.iter().map(|r| (num(r, x), num(r, y))).collect();
        stats::loglog_slope(&pts)
    };
    let slopes = Json::obj()
        .with(
            "hook_total_vs_count",
            slope(&count_rows, "objects", "hook_s"),
        )
        .with(
            "shrinker_total_vs_count",
            slope(&count_rows, "objects", "shrink_s"),
        )
        .with(
            "hook_per_object_vs_pages",
            slope(&size_rows, "pages_per_object", "hook_net_us_per_object"),
        )
        .with(
            "shrinker_per_object_vs_pages",
            slope(&size_rows, "pages_per_object", "shrink_us_per_object"),
        );
    println!("movgem-bench: scale log-log slopes (1 = linear): {slopes}");
    Ok(Json::obj()
        .with("loglog_slopes", slopes)
        .with("by_count", Json::Arr(count_rows))
        .with("by_size", Json::Arr(size_rows)))
}
