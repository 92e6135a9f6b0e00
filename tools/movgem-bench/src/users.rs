// SPDX-License-Identifier: GPL-2.0

//! Migration users that need a whole range of memory: `cma_alloc()`
//! (`cma`) and memory offlining (`memory_offline`), over idle bound
//! objects, next to the same range holding plain shmem pages.
//!
//! Five configurations each, every run from a fresh placement; a
//! configuration that finishes in time runs [`REPS`] times and its
//! median run (by seconds) is reported with every time:
//!
//! - `plain_shmem`: a memfd of the same size, written and kept mapped
//!   (no hook involved: what the range gives when its pages are plain
//!   shmem);
//! - `hook_off`: bound idle objects, `hook=off` (plain
//!   `migrate_folio()`, what an unpatched kernel does), GPU asleep;
//! - `release`: the same, `hook=release` (the 2016 design), GPU asleep:
//!   it refuses while the device sleeps;
//! - `release_awake`: the same with the GPU held awake: the objects are
//!   released (unbound, references dropped), then move as plain pages;
//! - `inplace`: `hook=inplace` (the default), GPU asleep.
//!
//! The shrinker is off meanwhile, so that it cannot release the objects
//! and free the range for that reason.
//!
//! `cma`: the `cma=64M` area of the bench boot.  The occupants are put
//! in it as the tests do (`objects_in_cma()` in
//! tools/movgem-tests/src/tests/users.rs): the whole area is taken, the
//! area's node filled with anonymous memory to 4 MiB above its low
//! watermark, the area given back, and the occupants created with the
//! task bound to the node, so that their pages come from the area (the
//! page allocator prefers CMA for movable allocations while it holds
//! more than half of a zone's free memory).  Then the area is allocated
//! through CMA's debugfs in chunks of 1 MiB (`alloc` is all-or-nothing
//! per write); MiB allocated of the MiB requested, and the seconds.  A
//! chunk that fails has cma_alloc() try every page offset of the area in
//! turn, migrating each candidate range again, so the whole allocation
//! runs in a child that is killed after [`TIMEOUT_S`].  Every chunk is
//! given back afterwards.
//!
//! `memory_offline`: a memory block of node 1 taken offline and onlined
//! again as ZONE_MOVABLE, empty, so that movable allocations bound to
//! node 1 land in it; the occupants are created there, then the block is
//! taken offline again from a child killed after [`TIMEOUT_S`]
//! (offlining retries migration until it succeeds or the writer gets a
//! fatal signal).  Success and the seconds; the block is onlined again
//! for the next configuration, and left as it was found at the end.

use std::fs;
use std::time::{Duration, Instant};

use serde::Serialize;

use movgem_guest::env::{self, BlockWrite, BoundTo, Counters, GpuAwake, Param};
use movgem_uapi::{self as uapi, Device};

use crate::stats::num;
use crate::sys::{self, io, Objects, MIB, PAGE};

const OBJ_SIZE: u64 = 4 * MIB;
/// Occupants of the CMA area: 48 of its 64 MiB.
const CMA_OCCUPANTS: u64 = 48 * MIB;
/// Occupants of the memory block: half of a 128 MiB block.
const BLOCK_OCCUPANTS: u64 = 64 * MIB;
/// One debugfs `alloc` write.
const CHUNK_PAGES: u64 = 256;
/// Node free memory left above the low watermark while the area is held.
const LEAVE_KIB: u64 = 4 << 10;
/// How long an allocation or an offline may take before it is killed.
pub const TIMEOUT_S: f64 = 20.0;

/// A configuration: its name, the hook, whether the GPU is held awake,
/// whether the occupants are objects (else a memfd).
struct Cfg {
    name: &'static str,
    hook: &'static str,
    awake: bool,
    objects: bool,
}

const CONFIGS: [Cfg; 5] = [
    Cfg {
        name: "plain_shmem",
        hook: "inplace",
        awake: false,
        objects: false,
    },
    Cfg {
        name: "hook_off",
        hook: "off",
        awake: false,
        objects: true,
    },
    Cfg {
        name: "release",
        hook: "release",
        awake: false,
        objects: true,
    },
    Cfg {
        name: "release_awake",
        hook: "release",
        awake: true,
        objects: true,
    },
    Cfg {
        name: "inplace",
        hook: "inplace",
        awake: false,
        objects: true,
    },
];

/// A value of each configuration, in [`CONFIGS`] order.
#[derive(Debug, Serialize)]
pub struct PerConfig<T> {
    plain_shmem: T,
    hook_off: T,
    release: T,
    release_awake: T,
    inplace: T,
}

impl<T> PerConfig<T> {
    fn from_vec(v: Vec<T>) -> Result<Self, String> {
        let [plain_shmem, hook_off, release, release_awake, inplace]: [T; 5] = v
            .try_into()
            .map_err(|_| "one result per configuration".to_string())?;
        Ok(Self {
            plain_shmem,
            hook_off,
            release,
            release_awake,
            inplace,
        })
    }
}

/// What the module counted during the allocation or the offline.
#[derive(Debug, Serialize)]
struct Counted {
    hook_calls: u64,
    migrated_in_place: u64,
    released_objects: u64,
    released_pages: u64,
    refused_suspended: u64,
    runtime_resumes: u64,
}

impl Counted {
    fn of(d: &Counters) -> Self {
        Self {
            hook_calls: d.get("hook_calls"),
            migrated_in_place: d.get("migrated_in_place"),
            released_objects: d.get("released_objects"),
            released_pages: d.get("released_pages"),
            refused_suspended: d.get("refused_suspended"),
            runtime_resumes: d.get("runtime_resumes"),
        }
    }
}

/// The occupants of a range: objects (bound by a GPU fill) or a memfd.
enum Occupants<'a> {
    /// Held until dropped (closed then).
    Objects {
        _objs: Objects<'a>,
    },
    Memfd(libc::c_int, u64, u64),
}

impl Occupants<'_> {
    /// `bytes` of the configuration's occupants, made by this task
    /// (whose memory policy says where they go).
    fn make<'a>(dev: &'a Device, cfg: &Cfg, bytes: u64) -> Result<Occupants<'a>, String> {
        if cfg.objects {
            let objs = Objects::create(dev, (bytes / OBJ_SIZE) as usize, OBJ_SIZE)?;
            objs.execbuf(uapi::OP_FILL, 0x05e5_0000)?;
            Ok(Occupants::Objects { _objs: objs })
        } else {
            let (fd, addr) = sys::memfd(bytes)?;
            Ok(Occupants::Memfd(fd, addr, bytes))
        }
    }
}

impl Drop for Occupants<'_> {
    fn drop(&mut self) {
        if let Occupants::Memfd(fd, addr, len) = *self {
            sys::unmap(addr, len);
            // SAFETY: our memfd, closed once.
            unsafe { libc::close(fd) };
        }
    }
}

/// Holds the GPU awake for an awake configuration; for one asleep,
/// waits (after the occupants are made) until it has suspended.
fn awake_if(cfg: &Cfg) -> Result<Option<GpuAwake>, String> {
    cfg.awake.then(GpuAwake::new).transpose()
}

fn asleep_if(cfg: &Cfg) -> Result<(), String> {
    if !cfg.awake {
        env::wait_runtime_status("suspended", 60_000)?;
    }
    Ok(())
}

/// Runs of a configuration that finished in time: the results are
/// those of the median one (by seconds), with every time.
pub const REPS: usize = 3;

/// What [`repeated`] needs of a run.
trait Timed {
    fn seconds(&self) -> f64;
    /// Whether it ran out of time (such a run is not repeated).
    fn timed_out(&self) -> bool;
    fn set_runs(&mut self, seconds: Vec<f64>);
}

/// Runs `round` once, and [`REPS`] times in all unless it timed out;
/// returns the run of median seconds, which lists every run's seconds.
fn repeated<R: Timed>(mut round: impl FnMut() -> Result<R, String>) -> Result<R, String> {
    let mut runs = vec![round()?];
    while runs.len() < REPS && !runs[0].timed_out() {
        runs.push(round()?);
    }
    runs.sort_by(|a, b| a.seconds().total_cmp(&b.seconds()));
    let all: Vec<f64> = runs.iter().map(Timed::seconds).collect();
    let mut r = runs.swap_remove((runs.len() - 1) / 2);
    r.set_runs(all);
    Ok(r)
}

// ------------------------------------------------------------------ CMA

/// The bench boot's CMA area (shared with the tests).
use movgem_guest::env::CmaArea as Area;

/// One configuration's allocation of the area.
#[derive(Debug, Serialize)]
struct CmaRun {
    hook: &'static str,
    gpu: &'static str,
    occupant_mib: u64,
    /// CmaTotal - CmaFree right before the allocation: what the
    /// occupants (and anything else) held of the area.
    area_used_mib_before: u64,
    requested_mib: u64,
    allocated_mib: u64,
    chunks_ok: u64,
    chunks_failed: u64,
    /// Chunks not done when the time ran out (the first of them was in
    /// progress, retrying).
    chunks_unfinished: u64,
    timed_out: bool,
    #[serde(serialize_with = "num")]
    seconds: f64,
    /// The seconds of every run of this configuration (this one is the
    /// median).
    #[serde(serialize_with = "num")]
    seconds_runs: Vec<f64>,
    /// Seconds until the first chunk that failed ended.
    #[serde(serialize_with = "num")]
    first_failure_s: Option<f64>,
    #[serde(serialize_with = "num")]
    place_s: f64,
    #[serde(flatten)]
    counted: Counted,
}

impl Timed for CmaRun {
    fn seconds(&self) -> f64 {
        self.seconds
    }
    fn timed_out(&self) -> bool {
        self.timed_out
    }
    fn set_runs(&mut self, seconds: Vec<f64>) {
        self.seconds_runs = seconds;
    }
}

/// The CMA benchmark's result.
#[derive(Debug, Serialize)]
pub struct CmaResult {
    area: String,
    area_mib: u64,
    node: u32,
    chunk_pages: u64,
    #[serde(serialize_with = "num")]
    timeout_s: f64,
    runs: PerConfig<CmaRun>,
}

/// Outcome of allocating the area chunk by chunk.
struct Chunks {
    ok: u64,
    failed: u64,
    timed_out: bool,
    secs: f64,
    first_failure: Option<f64>,
}

/// Allocates the area in chunks of [`CHUNK_PAGES`] from a child, which
/// reports each chunk through a pipe and is killed after [`TIMEOUT_S`].
fn alloc_chunks(area: &Area) -> Result<Chunks, String> {
    let chunks = area.count / CHUNK_PAGES;
    let mut fds = [0; 2];
    // SAFETY: two ints for the pipe's ends.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    let t = Instant::now();
    // SAFETY: the child writes debugfs files and the pipe, then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        for _ in 0..chunks {
            let b = [u8::from(area.alloc(CHUNK_PAGES).is_ok())];
            // SAFETY: one byte to our pipe.
            unsafe { libc::write(fds[1], b.as_ptr().cast(), 1) };
        }
        // SAFETY: leave at once, without our atexit handlers.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: the parent's copy of the write end.
    unsafe { libc::close(fds[1]) };
    if pid < 0 {
        // SAFETY: our read end.
        unsafe { libc::close(fds[0]) };
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    let mut out = Chunks {
        ok: 0,
        failed: 0,
        timed_out: false,
        secs: 0.0,
        first_failure: None,
    };
    while out.ok + out.failed < chunks {
        let left = TIMEOUT_S - sys::secs(t);
        if left <= 0.0 {
            out.timed_out = true;
            break;
        }
        let mut pfd = libc::pollfd {
            fd: fds[0],
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd of ours.
        let r = unsafe { libc::poll(&mut pfd, 1, (left * 1000.0).ceil() as libc::c_int) };
        if r == 0 {
            continue;
        }
        let mut b = [0u8];
        // SAFETY: one byte into our buffer.
        let n = unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
        if n != 1 {
            break;
        }
        if b[0] == 1 {
            out.ok += 1;
        } else {
            out.failed += 1;
            out.first_failure.get_or_insert(sys::secs(t));
        }
    }
    out.secs = sys::secs(t);
    let mut status = 0;
    // SAFETY: our own child; killing it aborts a chunk in progress
    // (alloc_contig_range() stops at a fatal signal).
    unsafe {
        if out.timed_out {
            libc::kill(pid, libc::SIGKILL);
        }
        libc::waitpid(pid, &mut status, 0);
        libc::close(fds[0]);
    }
    Ok(out)
}

/// Anonymous memory bound to a node, filled until the node has `keep`
/// KiB free, held by a child process until dropped.  A child with
/// `oom_score_adj` 1000, so that if the fill overshoots, the OOM killer
/// takes the filler, not the benchmark (a full `make bench` once lost the
/// whole benchmark process at a CMA placement after a timed-out round).
struct NodeFill {
    pid: libc::pid_t,
}

impl NodeFill {
    fn start(node: u32, room: u64, keep: u64) -> Result<Self, String> {
        let mut fds = [0; 2];
        // SAFETY: two ints for the pipe's ends.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: the child fills, reports on the pipe and waits to be
        // killed; it never returns into our code.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let _ = fs::write("/proc/self/oom_score_adj", "1000");
            // SAFETY: a fresh private anonymous mapping.
            let anon = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    room as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if anon != libc::MAP_FAILED && env::mbind_node(anon as u64, room as usize, node).is_ok()
            {
                for (i, a) in sys::page_addrs(anon as u64, room).into_iter().enumerate() {
                    if i % 256 == 0 && env::node_free_kib(node).map_or(true, |f| f < keep) {
                        break;
                    }
                    // SAFETY: inside the mapping just made.
                    unsafe { std::ptr::write_volatile(a as *mut u8, 1) };
                }
            }
            // SAFETY: one byte to our pipe, then wait for SIGKILL.
            unsafe {
                libc::write(fds[1], [1u8].as_ptr().cast(), 1);
                loop {
                    libc::pause();
                }
            }
        }
        // SAFETY: the parent's copy of the write end.
        unsafe { libc::close(fds[1]) };
        if pid < 0 {
            // SAFETY: our read end.
            unsafe { libc::close(fds[0]) };
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        let mut b = [0u8];
        // SAFETY: one byte into our buffer; 0 bytes if the child died
        // (OOM-killed while filling: the fill is then what it got to).
        unsafe {
            libc::read(fds[0], b.as_mut_ptr().cast(), 1);
            libc::close(fds[0]);
        }
        Ok(Self { pid })
    }
}

impl Drop for NodeFill {
    fn drop(&mut self) {
        let mut status = 0;
        // SAFETY: our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, &mut status, 0);
        }
    }
}

/// Fills the area's node to just above its low watermark while holding
/// the area, gives the area back, and makes the occupants bound to the
/// node: their pages come from the area.
fn place_in_cma<'a>(
    dev: &'a Device,
    area: &Area,
    node: u32,
    cfg: &Cfg,
) -> Result<Occupants<'a>, String> {
    let held = area
        .take_all()
        .map_err(|e| format!("the CMA area is not free: {e}"))?;
    let keep = env::node_watermark_kib(node, "low")? + LEAVE_KIB;
    let room = (env::node_free_kib(node)?.saturating_sub(keep) << 10).max(PAGE);
    let fill = NodeFill::start(node, room, keep);
    drop(held);
    let fill = fill?;
    let made = {
        let _bound = BoundTo::node(node)?;
        Occupants::make(dev, cfg, CMA_OCCUPANTS)
    };
    drop(fill);
    made
}

fn cma_round(dev: &Device, area: &Area, node: u32, cfg: &Cfg) -> Result<CmaRun, String> {
    let _awake = awake_if(cfg)?;
    let t = Instant::now();
    let occupants = place_in_cma(dev, area, node, cfg)?;
    let place_s = sys::secs(t);
    asleep_if(cfg)?;
    let used = (sys::meminfo("CmaTotal").saturating_sub(sys::meminfo("CmaFree"))) / 1024;
    let hook = Param::set("hook", cfg.hook)?;
    let before = Counters::read()?;
    let got = alloc_chunks(area);
    let d = Counters::read()?.since(&before);
    drop(hook);
    let allocated_pages = area.used_pages();
    area.free_all();
    drop(occupants);
    let got = got?;
    let chunks = area.count / CHUNK_PAGES;
    let run = CmaRun {
        hook: cfg.hook,
        gpu: if cfg.awake { "awake" } else { "asleep" },
        occupant_mib: CMA_OCCUPANTS / MIB,
        area_used_mib_before: used,
        requested_mib: chunks * CHUNK_PAGES * PAGE / MIB,
        allocated_mib: got.ok * CHUNK_PAGES * PAGE / MIB,
        chunks_ok: got.ok,
        chunks_failed: got.failed,
        chunks_unfinished: chunks - got.ok - got.failed,
        timed_out: got.timed_out,
        seconds: got.secs,
        seconds_runs: Vec::new(),
        first_failure_s: got.first_failure,
        place_s,
        counted: Counted::of(&d),
    };
    println!(
        "movgem-bench: cma {}: {} of {} MiB allocated in {:.2} s{} ({} MiB of the area held by the \
         occupants; {} pages used before freeing; {} folios moved in place, {} objects released)",
        cfg.name,
        run.allocated_mib,
        run.requested_mib,
        run.seconds,
        if run.timed_out { ", timed out" } else { "" },
        used,
        allocated_pages,
        run.counted.migrated_in_place,
        run.counted.released_objects
    );
    Ok(run)
}

pub fn run_cma() -> Result<CmaResult, String> {
    let area = Area::find()?;
    let node = env::node_of_pfn(area.base_pfn)?;
    let dev = io(Device::open(), "open")?;
    let shrinker = Param::set("shrinker", "0")?;
    let mut runs = Vec::new();
    for cfg in &CONFIGS {
        let r = repeated(|| cma_round(&dev, &area, node, cfg));
        runs.push(r.map_err(|e| format!("{}: {e}", cfg.name))?);
    }
    drop(shrinker);
    Ok(CmaResult {
        area: area.name.clone(),
        area_mib: area.count * PAGE / MIB,
        node,
        chunk_pages: CHUNK_PAGES,
        timeout_s: TIMEOUT_S,
        runs: PerConfig::from_vec(runs)?,
    })
}

// ------------------------------------------------------- memory offline

/// A memory block of node 1 taken offline and onlined as ZONE_MOVABLE,
/// empty (the highest that can: the one the guest's init made movable,
/// if it did); left as it was found on drop.
struct MovableBlock {
    block: u32,
    /// `valid_zones` before (online: the zone it is in, e.g. `DMA32`).
    zones_before: String,
}

impl MovableBlock {
    fn new() -> Result<Self, String> {
        let mut tried = Vec::new();
        for b in env::memory_blocks_of(1)?.into_iter().take(6) {
            let zones_before = env::memory_block_file(b, "valid_zones")?;
            // A block with unmovable pages (or the CMA area) refuses at
            // once; try the next one down.
            match env::set_memory_block(b, "offline", 60.0)? {
                BlockWrite::Done => {}
                other => {
                    tried.push(format!("memory{b}: {other:?}"));
                    continue;
                }
            }
            let zones = env::memory_block_file(b, "valid_zones")?;
            if !zones.split_whitespace().any(|z| z == "Movable") {
                let _ = env::set_memory_block(b, "online", 60.0);
                tried.push(format!("memory{b}: cannot be ZONE_MOVABLE: {zones}"));
                continue;
            }
            let block = Self {
                block: b,
                zones_before,
            };
            block.online_movable()?;
            return Ok(block);
        }
        Err(format!(
            "no memory block of node 1 could go offline: {tried:?}"
        ))
    }

    fn online_movable(&self) -> Result<(), String> {
        match env::set_memory_block(self.block, "online_movable", 60.0)? {
            BlockWrite::Done => Ok(()),
            other => Err(format!("memory{}: online_movable: {other:?}", self.block)),
        }
    }
}

impl Drop for MovableBlock {
    /// Leaves the block as it was: ZONE_MOVABLE if it was (the guest's
    /// init makes one block of node 1 movable at boot), else onlined
    /// into its kernel zone again.
    fn drop(&mut self) {
        let b = self.block;
        let was_movable = self.zones_before.split_whitespace().next() == Some("Movable");
        let online = env::memory_block_file(b, "state").as_deref() == Ok("online");
        if !was_movable && online {
            let _ = env::set_memory_block(b, "offline", 60.0);
        }
        if !online || !was_movable {
            let state = if was_movable {
                "online_movable"
            } else {
                "online"
            };
            let _ = env::set_memory_block(b, state, 60.0);
        }
        println!(
            "movgem-bench: memory_offline: memory{b} back {} (zone before: {}, now: {})",
            env::memory_block_file(b, "state").unwrap_or_default(),
            self.zones_before,
            env::memory_block_file(b, "valid_zones").unwrap_or_default()
        );
    }
}

/// Pages of ZONE_MOVABLE of `node` in use (managed - free), from
/// /proc/zoneinfo.
fn movable_used_pages(node: u32) -> u64 {
    parse_movable_used(&sys::read("/proc/zoneinfo"), node)
}

fn parse_movable_used(text: &str, node: u32) -> u64 {
    let head = format!("Node {node}, zone Movable");
    let mut inside = false;
    let (mut free, mut managed) = (0u64, 0u64);
    for l in text.lines() {
        if l.starts_with("Node ") {
            inside = l.split_whitespace().collect::<Vec<_>>().join(" ") == head;
            continue;
        }
        if !inside {
            continue;
        }
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["pages", "free", v] => free = v.parse().unwrap_or(0),
            ["managed", v] => managed = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    managed.saturating_sub(free)
}

/// One configuration's offline of the block.
#[derive(Debug, Serialize)]
struct OfflineRun {
    hook: &'static str,
    gpu: &'static str,
    occupant_mib: u64,
    /// ZONE_MOVABLE of node 1 (the block) in use right before.
    block_used_mib_before: u64,
    /// `done`, `timed_out` or `failed: <errno>`.
    outcome: String,
    offlined: bool,
    #[serde(serialize_with = "num")]
    seconds: f64,
    /// The seconds of every run of this configuration (this one is the
    /// median).
    #[serde(serialize_with = "num")]
    seconds_runs: Vec<f64>,
    #[serde(serialize_with = "num")]
    place_s: f64,
    #[serde(flatten)]
    counted: Counted,
}

impl Timed for OfflineRun {
    fn seconds(&self) -> f64 {
        self.seconds
    }
    fn timed_out(&self) -> bool {
        self.outcome == "timed_out"
    }
    fn set_runs(&mut self, seconds: Vec<f64>) {
        self.seconds_runs = seconds;
    }
}

/// The memory offline benchmark's result.
#[derive(Debug, Serialize)]
pub struct OfflineResult {
    block: u32,
    block_mib: u64,
    node: u32,
    #[serde(serialize_with = "num")]
    timeout_s: f64,
    runs: PerConfig<OfflineRun>,
}

fn offline_round(dev: &Device, block: &MovableBlock, cfg: &Cfg) -> Result<OfflineRun, String> {
    let _awake = awake_if(cfg)?;
    let t = Instant::now();
    let occupants = {
        let _bound = BoundTo::node(1)?;
        Occupants::make(dev, cfg, BLOCK_OCCUPANTS)?
    };
    let place_s = sys::secs(t);
    asleep_if(cfg)?;
    let used = movable_used_pages(1) * PAGE / MIB;
    let hook = Param::set("hook", cfg.hook)?;
    let before = Counters::read()?;
    let t = Instant::now();
    let outcome = env::set_memory_block(block.block, "offline", TIMEOUT_S);
    let secs = sys::secs(t);
    let d = Counters::read()?.since(&before);
    drop(hook);
    let outcome = outcome?;
    // Back online (empty) for the next configuration, then the
    // occupants go.
    if outcome == BlockWrite::Done {
        block.online_movable()?;
    }
    drop(occupants);
    // Whatever else landed in the block stays; give the allocator a
    // moment to free the occupants' pages.
    std::thread::sleep(Duration::from_millis(100));
    let run = OfflineRun {
        hook: cfg.hook,
        gpu: if cfg.awake { "awake" } else { "asleep" },
        occupant_mib: BLOCK_OCCUPANTS / MIB,
        block_used_mib_before: used,
        outcome: match outcome {
            BlockWrite::Done => "done".to_string(),
            BlockWrite::TimedOut => "timed_out".to_string(),
            BlockWrite::Failed(e) => {
                format!("failed: {}", std::io::Error::from_raw_os_error(e.max(0)))
            }
        },
        offlined: outcome == BlockWrite::Done,
        seconds: secs,
        seconds_runs: Vec::new(),
        place_s,
        counted: Counted::of(&d),
    };
    println!(
        "movgem-bench: memory_offline {}: memory{} {} in {:.2} s ({} MiB of the block in use; {} \
         folios moved in place, {} objects released)",
        cfg.name,
        block.block,
        run.outcome,
        run.seconds,
        used,
        run.counted.migrated_in_place,
        run.counted.released_objects
    );
    Ok(run)
}

pub fn run_offline() -> Result<OfflineResult, String> {
    let block_bytes = u64::from_str_radix(
        sys::read("/sys/devices/system/memory/block_size_bytes").trim_start_matches("0x"),
        16,
    )
    .map_err(|e| format!("block_size_bytes: {e}"))?;
    let dev = io(Device::open(), "open")?;
    let shrinker = Param::set("shrinker", "0")?;
    let block = MovableBlock::new()?;
    let mut runs = Vec::new();
    let mut result = Ok(());
    for cfg in &CONFIGS {
        match repeated(|| offline_round(&dev, &block, cfg)) {
            Ok(r) => runs.push(r),
            Err(e) => {
                result = Err(format!("{}: {e}", cfg.name));
                break;
            }
        }
    }
    let b = block.block;
    drop(block);
    drop(shrinker);
    result?;
    Ok(OfflineResult {
        block: b,
        block_mib: block_bytes / MIB,
        node: 1,
        timeout_s: TIMEOUT_S,
        runs: PerConfig::from_vec(runs)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn movable_zone_in_use() {
        let t = "Node 0, zone    DMA32\n  pages free     100\n        managed  900\n\
                 Node 1, zone    DMA32\n  pages free     5\n        managed  50\n\
                 Node 1, zone  Movable\n  pages free     7000\n        min      10\n\
                 \x20       managed  32768\n\
                 Node 1, zone   Device\n  pages free     0\n        managed  0\n";
        assert_eq!(parse_movable_used(t, 1), 32768 - 7000);
        assert_eq!(parse_movable_used(t, 0), 0);
        assert_eq!(parse_movable_used("", 1), 0);
    }

    #[test]
    fn one_result_per_configuration() {
        let p = PerConfig::from_vec(vec![1, 2, 3, 4, 5]).unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"plain_shmem":1,"hook_off":2,"release":3,"release_awake":4,"inplace":5}"#
        );
        assert!(PerConfig::from_vec(vec![1, 2]).is_err());
        let names: Vec<&str> = CONFIGS.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "plain_shmem",
                "hook_off",
                "release",
                "release_awake",
                "inplace"
            ]
        );
    }
}

#[cfg(test)]
mod repeat_tests {
    use super::*;

    struct T(f64, bool, Vec<f64>);

    impl Timed for T {
        fn seconds(&self) -> f64 {
            self.0
        }
        fn timed_out(&self) -> bool {
            self.1
        }
        fn set_runs(&mut self, seconds: Vec<f64>) {
            self.2 = seconds;
        }
    }

    #[test]
    fn median_of_three_unless_timed_out() {
        let mut times = vec![3.0, 1.0, 2.0].into_iter();
        let r = repeated(|| Ok(T(times.next().unwrap(), false, vec![]))).unwrap();
        assert_eq!((r.0, r.2), (2.0, vec![1.0, 2.0, 3.0]));
        let mut calls = 0;
        let r = repeated(|| {
            calls += 1;
            Ok(T(20.0, true, vec![]))
        })
        .unwrap();
        assert_eq!((calls, r.2), (1, vec![20.0]));
    }
}
