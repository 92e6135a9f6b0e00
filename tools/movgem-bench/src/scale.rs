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

use serde::Serialize;

use movgem_guest::env::{Counters, GpuAwake};
use movgem_uapi::{self as uapi, Device};

use crate::stats::{self, num};
use crate::sys::{self, io, Objects, MIB, PAGE};

pub const COUNTS: [usize; 3] = [1_000, 10_000, 100_000];
pub const SIZES: [u64; 5] = [4 << 10, 64 << 10, MIB, 16 * MIB, 64 * MIB];

/// One object count.
#[derive(Debug, Serialize)]
struct ByCount {
    objects: usize,
    #[serde(serialize_with = "num")]
    create_s: f64,
    #[serde(serialize_with = "num")]
    populate_s: f64,
    #[serde(serialize_with = "num")]
    close_s: f64,
    #[serde(serialize_with = "num")]
    hook_s: f64,
    #[serde(serialize_with = "num")]
    hook_us_per_object: f64,
    pages_moved: usize,
    hook_released_objects: u64,
    #[serde(serialize_with = "num")]
    shrink_s: f64,
    #[serde(serialize_with = "num")]
    shrink_us_per_object: f64,
    shrink_freed_pages: u64,
    shrink_scans: u64,
}

/// One object size.
#[derive(Debug, Serialize)]
struct BySize {
    object_kib: u64,
    objects: usize,
    pages_per_object: u64,
    #[serde(serialize_with = "num")]
    bind_us_per_page: f64,
    #[serde(serialize_with = "num")]
    hook_us_per_object: f64,
    #[serde(serialize_with = "num")]
    plain_us_per_page_moved: f64,
    #[serde(serialize_with = "num")]
    hook_net_us_per_object: f64,
    #[serde(serialize_with = "num")]
    hook_net_us_per_page: f64,
    hook_pages_moved: usize,
    hook_released_pages: u64,
    #[serde(serialize_with = "num")]
    shrink_s: f64,
    #[serde(serialize_with = "num")]
    shrink_us_per_object: f64,
    #[serde(serialize_with = "num")]
    shrink_us_per_page: f64,
    shrink_freed_pages: u64,
}

/// Log-log slopes of cost over count or size (1: linear).
#[derive(Debug, Serialize)]
struct Slopes {
    #[serde(serialize_with = "num")]
    hook_total_vs_count: Option<f64>,
    #[serde(serialize_with = "num")]
    shrinker_total_vs_count: Option<f64>,
    #[serde(serialize_with = "num")]
    hook_per_object_vs_pages: Option<f64>,
    #[serde(serialize_with = "num")]
    shrinker_per_object_vs_pages: Option<f64>,
}

/// The scale benchmark's result.
#[derive(Debug, Serialize)]
pub struct Scale {
    loglog_slopes: Slopes,
    by_count: Vec<ByCount>,
    by_size: Vec<BySize>,
}

fn by_count_of(dev: &Device, n: usize) -> Result<ByCount, String> {
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
    Ok(ByCount {
        objects: n,
        create_s,
        populate_s,
        close_s,
        hook_s: m.secs,
        hook_us_per_object: m.secs * 1e6 / n as f64,
        pages_moved: m.moved,
        hook_released_objects: hook.get("released_objects"),
        shrink_s,
        shrink_us_per_object: shrink_s * 1e6 / n as f64,
        shrink_freed_pages: shrink.get("shrink_freed_pages"),
        shrink_scans: shrink.get("shrink_scans"),
    })
}

/// Objects of `size` in the size sweep: 256 MiB worth, at least 8 and
/// at most 256.
fn per_size(size: u64) -> usize {
    ((256 * MIB / size) as usize).clamp(8, 256)
}

fn by_size_of(dev: &Device, size: u64) -> Result<BySize, String> {
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
    Ok(BySize {
        object_kib: size >> 10,
        objects: n,
        pages_per_object: pages,
        bind_us_per_page: bind_s * 1e6 / (n as f64 * pages as f64),
        hook_us_per_object: hook_us,
        plain_us_per_page_moved: base.secs * 1e6 / n as f64,
        hook_net_us_per_object: net_us,
        hook_net_us_per_page: net_us / pages as f64,
        hook_pages_moved: m.moved,
        hook_released_pages: hook.get("released_pages"),
        shrink_s,
        shrink_us_per_object: shrink_us,
        shrink_us_per_page: shrink_us / pages as f64,
        shrink_freed_pages: shrink.get("shrink_freed_pages"),
    })
}

pub fn run(counts: &[usize]) -> Result<Scale, String> {
    let _awake = GpuAwake::new()?;
    // One user mapping per object, and 100k of them.
    sys::write("/proc/sys/vm/max_map_count", "1000000")?;
    let dev = io(Device::open(), "open")?;
    let mut by_count = Vec::new();
    for &n in counts {
        by_count.push(by_count_of(&dev, n)?);
    }
    let mut by_size = Vec::new();
    for size in SIZES {
        by_size.push(by_size_of(&dev, size)?);
    }
    fn slope<R>(rows: &[R], xy: impl Fn(&R) -> (f64, f64)) -> Option<f64> {
        let pts: Vec<(f64, f64)> = rows.iter().map(xy).collect();
        stats::loglog_slope(&pts)
    }
    let loglog_slopes = Slopes {
        hook_total_vs_count: slope(&by_count, |r| (r.objects as f64, r.hook_s)),
        shrinker_total_vs_count: slope(&by_count, |r| (r.objects as f64, r.shrink_s)),
        hook_per_object_vs_pages: slope(&by_size, |r| {
            (r.pages_per_object as f64, r.hook_net_us_per_object)
        }),
        shrinker_per_object_vs_pages: slope(&by_size, |r| {
            (r.pages_per_object as f64, r.shrink_us_per_object)
        }),
    };
    println!(
        "movgem-bench: scale log-log slopes (1 = linear): {}",
        serde_json::to_string(&loglog_slopes).map_err(|e| e.to_string())?
    );
    Ok(Scale {
        loglog_slopes,
        by_count,
        by_size,
    })
}
