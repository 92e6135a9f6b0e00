// SPDX-License-Identifier: GPL-2.0

//! What the in-guest programs need from the guest: the debugfs
//! interface of the module, its parameters, compaction and fragmented
//! memory.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

const DEBUGFS: &str = "/sys/kernel/debug/movgem";

/// The module's debugfs `control` file.
pub struct Control {
    file: File,
}

impl Control {
    pub fn open() -> Result<Self, String> {
        let path = format!("{DEBUGFS}/control");
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map(|file| Self { file })
            .map_err(|e| format!("{path}: {e}"))
    }

    /// Sends a command; `Err` carries the errno text.
    pub fn cmd(&self, cmd: &str) -> Result<(), String> {
        (&self.file)
            .write_all(cmd.as_bytes())
            .map_err(|e| format!("'{cmd}': {e}"))
    }

    /// Sends a command expected to fail; returns its errno.
    pub fn cmd_errno(&self, cmd: &str) -> Option<i32> {
        (&self.file)
            .write_all(cmd.as_bytes())
            .err()
            .and_then(|e| e.raw_os_error())
    }

    pub fn report(&self) -> Result<String, String> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        let mut s = String::new();
        f.read_to_string(&mut s)
            .map_err(|e| format!("reading control: {e}"))?;
        Ok(s)
    }

    /// The report's numeric `key value` lines.
    pub fn fields(&self) -> Result<BTreeMap<String, u64>, String> {
        Ok(self
            .report()?
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect())
    }
}

/// One counter file.
pub fn counter(name: &str) -> Result<u64, String> {
    let path = format!("{DEBUGFS}/{name}");
    let s = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    s.trim().parse().map_err(|e| format!("{path}: {e}"))
}

/// A snapshot of every counter.
pub struct Counters(BTreeMap<String, u64>);

impl Counters {
    pub fn read() -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for entry in fs::read_dir(DEBUGFS).map_err(|e| format!("{DEBUGFS}: {e}"))? {
            let name = entry
                .map_err(|e| e.to_string())?
                .file_name()
                .to_string_lossy()
                .into_owned();
            // Every file but the two command files is a counter.
            if name != "control" && name != "drop_caches" {
                let v = counter(&name)?;
                map.insert(name, v);
            }
        }
        Ok(Self(map))
    }

    /// Increase of every counter since `earlier`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(*earlier.0.get(k).unwrap_or(&0))))
                .collect(),
        )
    }

    /// Every counter's name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Every counter of `/proc/vmstat` (swap, reclaim, OOM kills, ...).
    pub fn vmstat() -> Result<Self, String> {
        let s = fs::read_to_string("/proc/vmstat").map_err(|e| format!("/proc/vmstat: {e}"))?;
        Ok(Self(
            s.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect(),
        ))
    }

    /// `name=value` for each of `names`, in that order, zeros included.
    pub fn pick(&self, names: &[&str]) -> String {
        names
            .iter()
            .map(|n| format!("{n}={}", self.get(n)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in self.0.iter().filter(|(_, v)| **v != 0) {
            write!(f, "{k}={v} ")?;
        }
        Ok(())
    }
}

/// A module parameter's current value.
pub fn param(name: &str) -> Result<String, String> {
    let path = format!("/sys/module/movgem/parameters/{name}");
    fs::read_to_string(&path)
        .map(|v| v.trim().to_string())
        .map_err(|e| format!("{path}: {e}"))
}

pub fn set_param(name: &str, value: &str) -> Result<(), String> {
    let path = format!("/sys/module/movgem/parameters/{name}");
    fs::write(&path, value).map_err(|e| format!("{path}: {e}"))
}

/// A module parameter set for as long as the value lives; the old value
/// comes back on drop.
pub struct Param {
    name: &'static str,
    old: String,
}

impl Param {
    pub fn set(name: &'static str, value: &str) -> Result<Self, String> {
        let old = param(name)?;
        set_param(name, value)?;
        Ok(Self { name, old })
    }
}

impl Drop for Param {
    fn drop(&mut self) {
        let _ = set_param(self.name, &self.old);
    }
}

/// The frame (PFN) of each page of the current process at `addrs`, from
/// /proc/self/pagemap (root sees frames); 0 where nothing is mapped.
pub fn frames(addrs: &[*mut libc::c_void]) -> Result<Vec<u64>, String> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open("/proc/self/pagemap").map_err(|e| format!("pagemap: {e}"))?;
    let mut out = Vec::with_capacity(addrs.len());
    for &a in addrs {
        let mut entry = [0u8; 8];
        f.read_exact_at(&mut entry, (a as u64 / 4096) * 8)
            .map_err(|e| format!("pagemap: {e}"))?;
        let e = u64::from_le_bytes(entry);
        out.push(if e >> 63 == 1 { e & ((1 << 55) - 1) } else { 0 });
    }
    Ok(out)
}

/// Full compaction of every zone.
pub fn compact() -> Result<(), String> {
    fs::write("/proc/sys/vm/compact_memory", "1").map_err(|e| format!("compact_memory: {e}"))
}

/// Full compaction, and how much every counter moved during it.
pub fn compact_counted() -> Result<Counters, String> {
    let before = Counters::read()?;
    let start = std::time::Instant::now();
    compact()?;
    println!("  compaction {:.1}s", start.elapsed().as_secs_f64());
    Ok(Counters::read()?.since(&before))
}

/// A `/proc/meminfo` value in KiB.
pub fn meminfo_kib(key: &str) -> Result<u64, String> {
    let s = fs::read_to_string("/proc/meminfo").map_err(|e| e.to_string())?;
    s.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .ok_or(format!("no {key} in /proc/meminfo"))
}

/// A tmpfs file with every other page punched out, so that the free
/// memory it leaves is scattered order-0 holes.  Deleted on drop.
pub struct Filler {
    path: PathBuf,
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Scatters the next `bytes` of allocations: a tmpfs filler of four
/// times `bytes` (at most half of the available memory) with every other
/// page punched out, so that objects created while the returned guard
/// lives get their pages from order-0 holes, twice as many as they need,
/// interleaved with the filler's pages.  (Half of the available memory,
/// as before, took 30-40 s to write and punch per test on a KASAN guest
/// under TCG, most of the debug boot; the tests need the scatter, not
/// the size.)
pub fn fragment_for(bytes: u64) -> Result<Filler, String> {
    let avail = meminfo_kib("MemAvailable")? * 1024;
    fragment_bytes((4 * bytes).min(avail / 2))
}

/// [`fragment_for`] with a filler of `num / den` of the available memory.
pub fn fragment_fraction(num: u64, den: u64) -> Result<Filler, String> {
    let avail = meminfo_kib("MemAvailable")? * 1024;
    fragment_bytes(avail * num / den)
}

/// [`fragment_for`] with a filler of `bytes` (rounded down to whole
/// MiB), whatever is available: the same layout in every round of a
/// benchmark.
pub fn fragment_exact(bytes: u64) -> Result<Filler, String> {
    fragment_bytes(bytes)
}

fn fragment_bytes(bytes: u64) -> Result<Filler, String> {
    const PAGE: u64 = 4096;
    let size = bytes / (1 << 20) * (1 << 20);
    let path = PathBuf::from("/tmp/movgem-filler");
    let filler = Filler { path: path.clone() };
    let mut f = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let chunk = vec![0xa5u8; 1 << 20];
    for _ in 0..size / (1 << 20) {
        f.write_all(&chunk).map_err(|e| format!("filling: {e}"))?;
    }
    // Punch in a shuffled order: the page allocator hands freed pages
    // out roughly last-freed-first, so a sequential order would put the
    // next object at one end of the zone.  Shuffled, it lands all over.
    let written = std::time::Instant::now();
    let fd = f.as_raw_fd();
    let mut holes: Vec<u64> = (0..size / (2 * PAGE)).collect();
    // A fixed seed: every run punches the same order.
    fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d).shuffle(&mut holes);
    for hole in holes {
        // SAFETY: `fd` is an open tmpfs file; the range lies inside it.
        let r = unsafe {
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                (hole * 2 * PAGE) as libc::off_t,
                PAGE as libc::off_t,
            )
        };
        if r != 0 {
            return Err(format!("punch hole: {}", std::io::Error::last_os_error()));
        }
    }
    println!(
        "  filler: {} MiB, punched in {:.1}s",
        size >> 20,
        written.elapsed().as_secs_f64()
    );
    Ok(filler)
}

const PM_CONTROL: &str = "/sys/devices/platform/movgem/power/control";
const PM_STATUS: &str = "/sys/devices/platform/movgem/power/runtime_status";

/// Holds the simulated GPU runtime-awake (`power/control` = `on`) until
/// dropped, so the hook may unbind objects.
pub struct GpuAwake;

impl GpuAwake {
    pub fn new() -> Result<Self, String> {
        fs::write(PM_CONTROL, "on").map_err(|e| format!("{PM_CONTROL}: {e}"))?;
        Ok(Self)
    }
}

impl Drop for GpuAwake {
    fn drop(&mut self) {
        let _ = fs::write(PM_CONTROL, "auto");
    }
}

/// `active`, `suspended`, ...
pub fn runtime_status() -> Result<String, String> {
    fs::read_to_string(PM_STATUS)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{PM_STATUS}: {e}"))
}

/// Polls until the device reports `want`, for at most `ms` milliseconds.
pub fn wait_runtime_status(want: &str, ms: u64) -> Result<(), String> {
    let start = std::time::Instant::now();
    loop {
        let now = runtime_status()?;
        if now == want {
            return Ok(());
        }
        if start.elapsed().as_millis() as u64 > ms {
            return Err(format!("runtime_status stayed '{now}', wanted '{want}'"));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `echo 2 > /proc/sys/vm/drop_caches`: every shrinker, until they give
/// back little more.
pub fn drop_caches() -> Result<(), String> {
    fs::write("/proc/sys/vm/drop_caches", "2").map_err(|e| format!("drop_caches: {e}"))
}

/// `MPOL_MF_MOVE_ALL` from <linux/mempolicy.h> (not in the libc crate).
const MPOL_MF_MOVE_ALL: libc::c_int = 1 << 2;

/// `move_pages(2)`: with `nodes`, asks to move every page and returns how
/// many the kernel could not move; without, asks where the pages are and
/// returns 0.  `status` gets the per-page answer.
pub fn move_pages(
    addrs: &[*mut libc::c_void],
    nodes: Option<&[i32]>,
    status: &mut [i32],
) -> Result<i64, String> {
    move_pages_errno(addrs, nodes, status)
        .map_err(|e| format!("move_pages: {}", std::io::Error::from_raw_os_error(e)))
}

/// [`move_pages`], with the errno on failure, for a test that judges it.
pub fn move_pages_errno(
    addrs: &[*mut libc::c_void],
    nodes: Option<&[i32]>,
    status: &mut [i32],
) -> Result<i64, i32> {
    let nodes_ptr = nodes.map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: every array has `addrs.len()` entries; `status` is writable.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            0,
            addrs.len() as libc::c_ulong,
            addrs.as_ptr(),
            nodes_ptr,
            status.as_mut_ptr(),
            MPOL_MF_MOVE_ALL,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok(r)
}

/// `MemFree` of a NUMA node, in KiB, from its sysfs `meminfo`.
pub fn node_free_kib(node: u32) -> Result<u64, String> {
    let path = format!("/sys/devices/system/node/node{node}/meminfo");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.nth(2)? == "MemFree:").then(|| w.next()?.parse().ok())?
        })
        .ok_or(format!("no MemFree in {path}"))
}

/// The sum of one watermark (`min`, `low` or `high`) over the zones of a
/// NUMA node, in KiB, from /proc/zoneinfo.
pub fn node_watermark_kib(node: u32, which: &str) -> Result<u64, String> {
    let text = fs::read_to_string("/proc/zoneinfo").map_err(|e| format!("zoneinfo: {e}"))?;
    let mut in_node = false;
    let mut pages = 0u64;
    for l in text.lines() {
        let mut w = l.split_whitespace();
        match (w.next(), w.next()) {
            (Some("Node"), Some(n)) => in_node = n.trim_end_matches(',') == node.to_string(),
            (Some(k), Some(v)) if in_node && k == which => {
                pages += v
                    .parse::<u64>()
                    .map_err(|e| format!("zoneinfo {k} {v}: {e}"))?;
            }
            _ => {}
        }
    }
    Ok(pages * 4)
}

/// The NUMA node whose zones span page frame `pfn`, from /proc/zoneinfo.
pub fn node_of_pfn(pfn: u64) -> Result<u32, String> {
    let text = fs::read_to_string("/proc/zoneinfo").map_err(|e| format!("zoneinfo: {e}"))?;
    let (mut node, mut spanned) = (None, 0u64);
    for l in text.lines() {
        let mut w = l.split_whitespace();
        match (w.next(), w.next()) {
            (Some("Node"), Some(n)) => node = n.trim_end_matches(',').parse::<u32>().ok(),
            (Some("spanned"), Some(v)) => spanned = v.parse().unwrap_or(0),
            (Some("start_pfn:"), Some(v)) => {
                let start: u64 = v.parse().unwrap_or(u64::MAX);
                if (start..start.saturating_add(spanned)).contains(&pfn) {
                    return node.ok_or(format!("zoneinfo: no node before start_pfn {start}"));
                }
            }
            _ => {}
        }
    }
    Err(format!("no zone spans pfn {pfn:#x}"))
}

/// `MPOL_BIND` from <linux/mempolicy.h>.
pub const MPOL_BIND: libc::c_int = 2;

/// `mbind(2)` of `[addr, addr + len)` to `node` (`MPOL_BIND`); the
/// kernel checks the range, nothing here dereferences it.
pub fn mbind_node(addr: u64, len: usize, node: u32) -> Result<(), String> {
    let mask: libc::c_ulong = 1 << node;
    // SAFETY: one word of node mask; the kernel validates the range.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr as *mut libc::c_void,
            len,
            MPOL_BIND,
            &mask as *const libc::c_ulong,
            64usize,
            0u32,
        )
    };
    if r != 0 {
        return Err(format!("mbind: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// This task's memory policy bound to one node (`MPOL_BIND`) until
/// dropped; then `MPOL_DEFAULT` again.
pub struct BoundTo;

impl BoundTo {
    pub fn node(node: u32) -> Result<Self, String> {
        let mask: libc::c_ulong = 1 << node;
        // SAFETY: one word of node mask.
        let r = unsafe {
            libc::syscall(
                libc::SYS_set_mempolicy,
                MPOL_BIND,
                &mask as *const libc::c_ulong,
                64usize,
            )
        };
        if r != 0 {
            return Err(format!(
                "set_mempolicy: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self)
    }
}

impl Drop for BoundTo {
    fn drop(&mut self) {
        // SAFETY: MPOL_DEFAULT takes no node mask.
        unsafe {
            libc::syscall(
                libc::SYS_set_mempolicy,
                0,
                std::ptr::null::<libc::c_ulong>(),
                0usize,
            )
        };
    }
}

/// How a write to a memory block's `state` ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BlockWrite {
    Done,
    /// The errno the write failed with (-1: the writer died otherwise).
    Failed(i32),
    /// Still retrying when the time was up, and killed (offlining
    /// retries migration until it succeeds or the writer gets a fatal
    /// signal).
    TimedOut,
}

/// Writes `state` (`offline`, `online`, `online_movable`) to memory
/// block `block` from a child process, killed after `secs`.
pub fn set_memory_block(block: u32, state: &str, secs: f64) -> Result<BlockWrite, String> {
    let path = format!("/sys/devices/system/memory/memory{block}/state");
    // SAFETY: the child only writes one file and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match fs::write(&path, state) {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(255).min(255),
        };
        // SAFETY: leave at once, without our atexit handlers.
        unsafe { libc::_exit(code) };
    }
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    let start = std::time::Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if start.elapsed().as_secs_f64() > secs {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Ok(BlockWrite::TimedOut);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => BlockWrite::Done,
        (true, e) => BlockWrite::Failed(e),
        _ => BlockWrite::Failed(-1),
    })
}

/// A file of memory block `block` (`state`, `valid_zones`, ...), trimmed.
pub fn memory_block_file(block: u32, f: &str) -> Result<String, String> {
    let p = format!("/sys/devices/system/memory/memory{block}/{f}");
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{p}: {e}"))
}

/// The memory blocks of a NUMA node, highest first.
pub fn memory_blocks_of(node: u32) -> Result<Vec<u32>, String> {
    let dir = format!("/sys/devices/system/node/node{node}");
    let mut blocks: Vec<u32> = fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("memory")?
                .parse()
                .ok()
        })
        .collect();
    blocks.sort_unstable_by(|a, b| b.cmp(a));
    Ok(blocks)
}

/// The CMA area of the boot (`cma=` on the command line), through CMA's
/// debugfs (`CMA_DEBUGFS`).
pub struct CmaArea {
    /// Its directory name under /sys/kernel/debug/cma.
    pub name: String,
    dir: PathBuf,
    pub base_pfn: u64,
    /// Its size in pages.
    pub count: u64,
}

impl CmaArea {
    /// The first area.
    pub fn find() -> Result<Self, String> {
        let root = "/sys/kernel/debug/cma";
        let dir = fs::read_dir(root)
            .map_err(|e| format!("{root}: {e} (no CMA area: boot with cma=)"))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .next()
            .ok_or(format!("{root} is empty: boot with cma="))?;
        let read = |f: &str| -> Result<u64, String> {
            let p = dir.join(f);
            fs::read_to_string(&p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .trim()
                .parse()
                .map_err(|e| format!("{}: {e}", p.display()))
        };
        Ok(Self {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            base_pfn: read("base_pfn")?,
            count: read("count")?,
            dir,
        })
    }

    /// `cma_alloc()` of `pages` pages; the error if it failed.
    pub fn alloc(&self, pages: u64) -> Result<(), String> {
        fs::write(self.dir.join("alloc"), pages.to_string())
            .map_err(|e| format!("cma_alloc of {pages} pages: {e}"))
    }

    /// `cma_alloc()` of the whole area, given back on drop.
    pub fn take_all(&self) -> Result<CmaTaken<'_>, String> {
        self.alloc(self.count)?;
        Ok(CmaTaken(self))
    }

    /// [`Self::take_all`], failing with the errno of the debugfs write:
    /// CMA's debugfs answers `ENOMEM` for every failed `cma_alloc()`,
    /// whatever the reason (the trace event `cma_alloc_finish` has it).
    pub fn try_take_all(&self) -> Result<CmaTaken<'_>, i32> {
        fs::write(self.dir.join("alloc"), self.count.to_string())
            .map_err(|e| e.raw_os_error().unwrap_or(0))?;
        Ok(CmaTaken(self))
    }

    /// Gives back everything allocated through debugfs.
    pub fn free_all(&self) {
        let _ = fs::write(self.dir.join("free"), self.count.to_string());
    }

    /// Pages of the area in use.
    pub fn used_pages(&self) -> u64 {
        fs::read_to_string(self.dir.join("used"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The whole CMA area, allocated through debugfs until dropped.
pub struct CmaTaken<'a>(&'a CmaArea);

impl Drop for CmaTaken<'_> {
    fn drop(&mut self) {
        self.0.free_all();
    }
}

/// Asks for as many 2 MiB hugepages as the kernel gives; returns the
/// number and the seconds it took, and gives them back.
///
/// While the pool holds them, free memory is down to the watermarks and
/// any allocation may wake the OOM killer, which takes the biggest
/// process: this one.  So nothing in that window allocates: the files
/// are open, the buffer is on the stack and touched, and /proc/meminfo
/// was read once before (its seq_file buffer exists).
pub fn hugetlb_pages() -> Result<(u64, f64), String> {
    use std::io::{Seek, SeekFrom, Write};
    let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let mut info = fs::File::open("/proc/meminfo").map_err(|e| err("/proc/meminfo", e))?;
    let mut nr = fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/nr_hugepages")
        .map_err(|e| err("nr_hugepages", e))?;
    let mut buf = [0u8; 16384];
    read_into(&mut info, &mut buf).map_err(|e| err("/proc/meminfo", e))?;
    let t = std::time::Instant::now();
    let asked = nr.write_all(b"100000");
    let took = t.elapsed().as_secs_f64();
    let n = info
        .seek(SeekFrom::Start(0))
        .and_then(|_| read_into(&mut info, &mut buf));
    // Give them back before anything else, whatever happened.
    let back = nr.seek(SeekFrom::Start(0)).and_then(|_| nr.write_all(b"0"));
    asked.map_err(|e| err("nr_hugepages = 100000", e))?;
    back.map_err(|e| err("nr_hugepages = 0", e))?;
    let n = n.map_err(|e| err("/proc/meminfo", e))?;
    let got = parse_meminfo(&String::from_utf8_lossy(&buf[..n]), "HugePages_Total");
    Ok((got, took))
}

/// Reads `f` into `buf` until the end or `buf` is full; the bytes read.
fn read_into(f: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A `/proc/meminfo` value (0 when missing) from its text.
pub fn parse_meminfo(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
