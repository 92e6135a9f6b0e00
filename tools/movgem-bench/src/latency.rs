// SPDX-License-Identifier: GPL-2.0

//! Busy-path latency: how long one single-page move_pages(2) call takes
//! when the hook refuses, in microseconds.
//!
//! - `active`: the object is kept busy by a long EXECBUF (duration_ns);
//!   the hook answers -EBUSY at once (`refused_active`).
//! - `active_hook_off`: the same with `hook=0`: plain `migrate_folio()`
//!   sees the GPU's extra references and answers -EAGAIN, which
//!   `migrate_pages()` retries (up to ten passes) before giving up.
//!   The two are sampled in turn (on, off, on, ...) on the same object.
//! - `lock_contended_<N>ms`: the object is idle but `struct_mutex` is
//!   held (debugfs `control`: `hold_lock`); move_pages migrates
//!   synchronously, so the hook retries its trylock for
//!   `lock_timeout_ms` = N, then answers -EBUSY.
//! - `plain_migration`: for reference, one plain shmem page actually
//!   migrating;
//! - `same_node_call`: a page asked to move to the node it is already
//!   on: a move_pages call that migrates nothing (it still pays
//!   `lru_cache_disable()`, an LRU drain on every CPU, and the page
//!   walk; not a lower bound of the other cases, which take other paths).

use std::time::{Duration, Instant};

use serde::Serialize;

use movgem_guest::env::{self, Control, Counters, GpuAwake};
use movgem_uapi::{self as uapi, Device};

use crate::stats::{self, Distribution};
use crate::sys::{self, io, Addr, Objects, MIB};

const SAMPLES: usize = 400;
/// How long the GPU keeps the object busy, at most (EXECBUF limit 60 s).
const BUSY_NS: u64 = 40_000_000_000;
/// How long `hold_lock` holds struct_mutex.
const HOLD_MS: u64 = 3000;

/// The distribution of one case's latencies, pages that moved, and
/// what else the case counted.
#[derive(Debug, Serialize)]
pub struct Summary<E = ()> {
    #[serde(flatten)]
    dist: Distribution,
    pages_moved: usize,
    #[serde(flatten)]
    extra: E,
}

/// What the active-object cases count.
#[derive(Debug, Serialize)]
pub struct Active {
    hook: &'static str,
    still_busy_after: bool,
    hook_calls: u64,
    refused_active: u64,
    hook_bypassed: u64,
}

/// What the contended-lock cases count.
#[derive(Debug, Serialize)]
pub struct Contended {
    lock_timeout_ms: u32,
    hold_ms: u64,
    hook_calls: u64,
    refused_lock_contended: u64,
}

/// The latency benchmark's result (microseconds).
#[derive(Debug, Serialize)]
pub struct Latency {
    unit: &'static str,
    same_node_call: Summary,
    plain_migration: Summary,
    active: Summary<Active>,
    active_hook_off: Summary<Active>,
    lock_contended_10ms: Summary<Contended>,
    lock_contended_2ms: Summary<Contended>,
}

/// Times single-page move_pages calls on `addrs` (round robin, each to
/// the node it is not on) until `n` samples or `deadline`; returns the
/// latencies (µs) and how many pages actually moved.
fn sample(addrs: &[Addr], n: usize, deadline: Instant) -> Result<(Vec<f64>, usize), String> {
    let here = sys::nodes_of(addrs)?;
    let mut lat = Vec::with_capacity(n.min(1 << 16));
    let mut moved = 0;
    for i in 0..n {
        if Instant::now() >= deadline {
            break;
        }
        let k = i % addrs.len();
        let to = 1 - here[k].clamp(0, 1);
        let mut status = [i32::MIN];
        let t = Instant::now();
        sys::move_pages(&addrs[k..=k], Some(to), &mut status)?;
        lat.push(sys::micros(t));
        if status[0] == to {
            moved += 1;
        }
    }
    Ok((lat, moved))
}

fn summary<E>(lat: &[f64], moved: usize, extra: E) -> Summary<E> {
    Summary {
        dist: stats::distribution(lat),
        pages_moved: moved,
        extra,
    }
}

/// Single-page calls that ask to move a page to the node it is already
/// on: a call that migrates nothing.
fn same_node() -> Result<Summary, String> {
    let len = MIB;
    let (fd, addr) = sys::memfd(len)?;
    let addrs = sys::page_addrs(addr, len);
    let here = sys::nodes_of(&addrs)?;
    let mut lat = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let k = i % addrs.len();
        let mut status = [i32::MIN];
        let t = Instant::now();
        sys::move_pages(&addrs[k..=k], Some(here[k].clamp(0, 1)), &mut status)?;
        lat.push(sys::micros(t));
    }
    sys::unmap(addr, len);
    // SAFETY: our memfd, closed once.
    unsafe { libc::close(fd) };
    Ok(summary(&lat, 0, ()))
}

fn plain() -> Result<Summary, String> {
    let len = 4 * MIB;
    let (fd, addr) = sys::memfd(len)?;
    let addrs = sys::page_addrs(addr, len);
    // Every sample moves a different page, each once.
    let (lat, moved) = sample(&addrs, SAMPLES.min(addrs.len()), far())?;
    sys::unmap(addr, len);
    // SAFETY: our memfd, closed once.
    unsafe { libc::close(fd) };
    Ok(summary(&lat, moved, ()))
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// The active-object cases, hook on and off, sample by sample in turn,
/// so that both see the same host noise.
type Pair = (Summary<Active>, Summary<Active>);

fn active(dev: &Device) -> Result<Pair, String> {
    let objs = Objects::create(dev, 1, 4 * MIB)?;
    objs.execbuf(uapi::OP_FILL, 1)?;
    let maps = objs.map_first(4 * MIB)?;
    let addrs = maps.addrs();
    io(
        dev.execbuf(&[(objs.handles[0], false)], uapi::OP_NOP, 0, BUSY_NS, 0),
        "execbuf busy",
    )?;
    let mut lat = [Vec::new(), Vec::new()];
    let mut moved = [0, 0];
    let mut counted = [(0, 0, 0), (0, 0, 0)];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Ok(());
    for i in 0..2 * SAMPLES {
        let on = i % 2 == 0;
        let slot = usize::from(!on);
        if let Err(e) = env::set_param("hook", if on { "1" } else { "0" }) {
            out = Err(e);
            break;
        }
        let before = Counters::read()?;
        let k = (i / 2) % addrs.len();
        match sample(&addrs[k..=k], 1, deadline) {
            Ok((l, m)) if !l.is_empty() => {
                lat[slot].extend(l);
                moved[slot] += m;
            }
            Ok(_) => break,
            Err(e) => {
                out = Err(e);
                break;
            }
        }
        let d = Counters::read()?.since(&before);
        counted[slot].0 += d.get("hook_calls");
        counted[slot].1 += d.get("refused_active");
        counted[slot].2 += d.get("hook_bypassed");
    }
    env::set_param("hook", "1")?;
    let busy_after = io(dev.busy(objs.handles[0]), "busy")?;
    // End the long request instead of waiting for it.
    Control::open()?.cmd("reset")?;
    objs.wait()?;
    out?;
    let row = |slot: usize| {
        summary(
            &lat[slot],
            moved[slot],
            Active {
                hook: if slot == 0 { "1" } else { "0" },
                still_busy_after: busy_after,
                hook_calls: counted[slot].0,
                refused_active: counted[slot].1,
                hook_bypassed: counted[slot].2,
            },
        )
    };
    Ok((row(0), row(1)))
}

fn contended(dev: &Device, timeout_ms: u32) -> Result<Summary<Contended>, String> {
    let objs = Objects::create(dev, 1, 4 * MIB)?;
    objs.execbuf(uapi::OP_FILL, 2)?;
    let maps = objs.map_first(4 * MIB)?;
    let addrs = maps.addrs();
    env::set_param("lock_timeout_ms", &timeout_ms.to_string())?;
    let holder =
        std::thread::spawn(|| Control::open().and_then(|c| c.cmd(&format!("hold_lock {HOLD_MS}"))));
    std::thread::sleep(Duration::from_millis(100));
    let before = Counters::read()?;
    // Stop well before the lock is dropped, so that no sample races it.
    let deadline = Instant::now() + Duration::from_millis(HOLD_MS - 600);
    let out = sample(&addrs, usize::MAX, deadline);
    let d = Counters::read()?.since(&before);
    let joined = holder.join();
    env::set_param("lock_timeout_ms", "10")?;
    joined.map_err(|_| "holder thread panicked".to_string())??;
    let (lat, moved) = out?;
    Ok(summary(
        &lat,
        moved,
        Contended {
            lock_timeout_ms: timeout_ms,
            hold_ms: HOLD_MS,
            hook_calls: d.get("hook_calls"),
            refused_lock_contended: d.get("refused_lock_contended"),
        },
    ))
}

pub fn run() -> Result<Latency, String> {
    let _awake = GpuAwake::new()?;
    let dev = io(Device::open(), "open")?;
    let same_node_call = same_node()?;
    let plain_migration = plain()?;
    let (active, active_hook_off) = active(&dev)?;
    let lock_contended_10ms = contended(&dev, 10)?;
    let lock_contended_2ms = contended(&dev, 2)?;
    let p = |x: Option<f64>| x.unwrap_or(f64::NAN);
    println!(
        "movgem-bench: latency: active refusal p50 {:.0} us p99 {:.0} us; hook off {:.0} us; \
         contended lock (10 ms budget) p50 {:.0} us max {:.0} us",
        p(active.dist.p50),
        p(active.dist.p99),
        p(active_hook_off.dist.p50),
        p(lock_contended_10ms.dist.p50),
        p(lock_contended_10ms.dist.max)
    );
    Ok(Latency {
        unit: "us",
        same_node_call,
        plain_migration,
        active,
        active_hook_off,
        lock_contended_10ms,
        lock_contended_2ms,
    })
}
