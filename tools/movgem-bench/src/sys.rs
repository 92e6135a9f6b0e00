// SPDX-License-Identifier: GPL-2.0

//! Guest plumbing for the benchmarks: move_pages(2), mappings, memory
//! numbers, sysctls, the extfrag index, a memory hog, and batches of
//! objects on `/dev/movgem`.

use std::fs;
use std::time::Instant;

use serde::ser::{Serialize, SerializeMap, Serializer};

use movgem_guest::env;
use movgem_uapi::{self as uapi, Device};

use crate::stats::Num;

pub const PAGE: u64 = 4096;
pub const MIB: u64 = 1 << 20;

/// A user address, as move_pages(2) wants it.
pub type Addr = *mut libc::c_void;

/// Seconds since `t`.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Microseconds since `t`.
pub fn micros(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

/// Maps an ioctl errno to a message.
pub fn io<T>(r: uapi::Res<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {}", std::io::Error::from_raw_os_error(e)))
}

/// `move_pages(2)` of every page to `node`, or (`None`) only where each is.
pub fn move_pages(addrs: &[Addr], node: Option<i32>, status: &mut [i32]) -> Result<(), String> {
    let nodes: Vec<i32> = node.map(|n| vec![n; addrs.len()]).unwrap_or_default();
    movgem_guest::env::move_pages(addrs, node.map(|_| nodes.as_slice()), status).map(|_| ())
}

/// The node of every page (negative errno for pages not present).
pub fn nodes_of(addrs: &[Addr]) -> Result<Vec<i32>, String> {
    let mut status = vec![i32::MIN; addrs.len()];
    move_pages(addrs, None, &mut status)?;
    Ok(status)
}

/// Outcome of moving pages to the other node.
pub struct Moved {
    pub asked: usize,
    pub moved: usize,
    pub secs: f64,
}

/// Moves every page to the node it is not on (node-0 pages to 1, node-1
/// pages to 0: two move_pages calls, each with one target so the kernel
/// migrates them in large batches), timing only the moves.
pub fn move_all_across(addrs: &[Addr]) -> Result<Moved, String> {
    let here = nodes_of(addrs)?;
    let mut asked = 0;
    let mut moved = 0;
    let mut total = 0.0;
    for (from, to) in [(0, 1), (1, 0)] {
        let group: Vec<Addr> = addrs
            .iter()
            .zip(&here)
            .filter(|(_, n)| **n == from)
            .map(|(a, _)| *a)
            .collect();
        if group.is_empty() {
            continue;
        }
        let mut status = vec![i32::MIN; group.len()];
        let t = Instant::now();
        move_pages(&group, Some(to), &mut status)?;
        total += secs(t);
        asked += group.len();
        moved += nodes_of(&group)?.iter().filter(|&&n| n == to).count();
    }
    Ok(Moved {
        asked,
        moved,
        secs: total,
    })
}

/// Maps `len` bytes of the shared memory `fd` at offset 0.
pub fn map_shared(fd: libc::c_int, len: u64) -> Result<u64, String> {
    // SAFETY: a fresh shared mapping of an fd we own; no address hint.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    Ok(p as u64)
}

/// Unmaps what [`map_shared`] or the MMAP ioctl mapped.
pub fn unmap(addr: u64, len: u64) {
    // SAFETY: the caller owns this mapping and no longer uses it.
    unsafe { libc::munmap(addr as Addr, len as usize) };
}

/// Page addresses of `[addr, addr + len)`.
pub fn page_addrs(addr: u64, len: u64) -> Vec<Addr> {
    (0..len / PAGE).map(|i| (addr + i * PAGE) as Addr).collect()
}

/// Reads one byte of every page, faulting it in.
pub fn touch(addrs: &[Addr]) {
    for a in addrs {
        // SAFETY: every address lies inside a live mapping of ours.
        let _ = unsafe { std::ptr::read_volatile(*a as *const u8) };
    }
}

/// A memfd of `len` bytes (plain shmem, no movgem hook), written page by
/// page through a shared mapping.  Returns the fd and the mapping.
pub fn memfd(len: u64) -> Result<(libc::c_int, u64), String> {
    // SAFETY: a NUL-terminated name, no flags.
    let fd = unsafe { libc::memfd_create(c"movgem-bench".as_ptr(), 0) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: our fresh memfd.
    if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
        return Err(format!("ftruncate: {}", std::io::Error::last_os_error()));
    }
    let addr = map_shared(fd, len)?;
    for a in page_addrs(addr, len) {
        // SAFETY: inside the mapping just made.
        unsafe { std::ptr::write_volatile(a as *mut u8, 0x5a) };
    }
    Ok((fd, addr))
}

/// `count` memfds of `len` bytes each, each written and mapped on its
/// own (the layout of as many objects, without the hook); the fds are
/// closed, the mappings keep the files.
pub fn memfds(count: usize, len: u64) -> Result<Mappings, String> {
    let mut m = Mappings {
        bases: Vec::with_capacity(count),
        len,
    };
    for _ in 0..count {
        let (fd, addr) = memfd(len)?;
        m.bases.push(addr);
        // SAFETY: our memfd, closed once; its mapping stays.
        unsafe { libc::close(fd) };
    }
    Ok(m)
}

/// A `/proc/meminfo` value in KiB (0 when missing).
pub fn meminfo(key: &str) -> u64 {
    env::meminfo_kib(key).unwrap_or(0)
}

/// Writes a sysctl or sysfs file.
pub fn write(path: &str, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("{path}: {e}"))
}

/// Reads a sysctl or sysfs file, trimmed ("" when unreadable).
pub fn read(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `echo N > /proc/sys/vm/drop_caches`.
pub fn drop_caches(n: u32) -> Result<(), String> {
    write("/proc/sys/vm/drop_caches", &n.to_string())
}

/// The order-9 (2 MiB) unusable free space index of every zone, from
/// `/sys/kernel/debug/extfrag/unusable_index`: ("node N zone", value).
pub fn unusable_index_order9() -> Vec<(String, f64)> {
    parse_unusable(&read("/sys/kernel/debug/extfrag/unusable_index"), 9)
}

/// Parses `Node 0, zone   DMA32 0.000 0.001 ...` lines.
pub fn parse_unusable(text: &str, order: usize) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // "Node", "0,", "zone", "DMA32", values...
            if w.len() < 4 + order + 1 || w[0] != "Node" {
                return None;
            }
            let v = w[4 + order].parse().ok()?;
            Some((format!("node{}_{}", w[1].trim_end_matches(','), w[3]), v))
        })
        .collect()
}

/// The zone indices of [`unusable_index_order9`]; serialized as an
/// object of zone: index, then `mean`, the mean over zones.
#[derive(Clone, Debug, Default)]
pub struct Unusable(pub Vec<(String, f64)>);

impl Unusable {
    /// The mean over zones (`None` without zones).
    pub fn mean(&self) -> Option<f64> {
        let z = &self.0;
        (!z.is_empty()).then(|| z.iter().map(|z| z.1).sum::<f64>() / z.len() as f64)
    }
}

impl Serialize for Unusable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len() + 1))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, &Num(*v))?;
        }
        m.serialize_entry("mean", &self.mean().map(Num))?;
        m.end()
    }
}

/// Free blocks of each order (0 to 10: 4 KiB to 4 MiB), summed over
/// every zone of every node, from `/proc/buddyinfo`.
pub fn free_blocks_by_order() -> Vec<u64> {
    parse_buddyinfo(&read("/proc/buddyinfo"))
}

/// Sums the `Node 0, zone   DMA32  3 1 0 ...` lines of /proc/buddyinfo
/// per order.
pub fn parse_buddyinfo(text: &str) -> Vec<u64> {
    let mut sum: Vec<u64> = Vec::new();
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        // "Node", "0,", "zone", "DMA32", counts...
        if w.len() < 5 || w[0] != "Node" || w[2] != "zone" {
            continue;
        }
        for (order, c) in w[4..].iter().enumerate() {
            if sum.len() <= order {
                sum.resize(order + 1, 0);
            }
            sum[order] += c.parse::<u64>().unwrap_or(0);
        }
    }
    sum
}

pub use movgem_guest::env::hugetlb_pages;
#[cfg(test)]
use movgem_guest::env::parse_meminfo;

/// A `/proc/vmstat` counter (0 when missing).
pub fn vmstat(key: &str) -> u64 {
    read("/proc/vmstat")
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// What a THP attempt got.
pub struct Thp {
    pub pages: u64,
    pub secs: f64,
    pub fault_alloc: u64,
    pub fault_fallback: u64,
    /// `THPeligible` of the region in /proc/self/smaps.
    pub eligible: bool,
    /// Whether madvise(MADV_HUGEPAGE) worked.
    pub advised: bool,
}

/// A field of the /proc/self/smaps entry of the mapping at `start`.
pub fn smaps_field(start: u64, field: &str) -> String {
    let text = read("/proc/self/smaps");
    let head = format!("{start:x}-");
    let mut inside = false;
    for l in text.lines() {
        if l.contains('-') && l.split_whitespace().count() >= 5 {
            inside = l.starts_with(&head);
        } else if inside {
            if let Some(v) = l.strip_prefix(field) {
                return v.trim().to_string();
            }
        }
    }
    String::new()
}

/// Transparent hugepages: maps `len` bytes of anonymous memory, asks
/// for MADV_HUGEPAGE (if the kernel has madvise), touches every page, and counts the 2 MiB pages the
/// region got (AnonHugePages grows).
pub fn thp_pages(len: u64) -> Result<Thp, String> {
    let before = meminfo("AnonHugePages");
    let (alloc0, fallback0) = (vmstat("thp_fault_alloc"), vmstat("thp_fault_fallback"));
    // SAFETY: a fresh private anonymous mapping.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    // The tiny kernel has no madvise(2) (CONFIG_ADVISE_SYSCALLS is off):
    // then THP `enabled` must be `always` for the region to qualify.
    // SAFETY: advice on our own mapping.
    let advised = unsafe { libc::madvise(p, len as usize, libc::MADV_HUGEPAGE) } == 0;
    let t = Instant::now();
    for a in page_addrs(p as u64, len) {
        // SAFETY: inside the mapping just made.
        unsafe { std::ptr::write_volatile(a as *mut u8, 1) };
    }
    let secs = secs(t);
    let pages = meminfo("AnonHugePages").saturating_sub(before) / 2048;
    let eligible = smaps_field(p as u64, "THPeligible:") == "1";
    let thp = Thp {
        pages,
        secs,
        fault_alloc: vmstat("thp_fault_alloc").saturating_sub(alloc0),
        fault_fallback: vmstat("thp_fault_fallback").saturating_sub(fallback0),
        eligible,
        advised,
    };
    unmap(p as u64, len);
    Ok(thp)
}

/// Runs a memory hog in a child: `bytes` of anonymous memory, locked
/// (`mlock`: it cannot be swapped out, so the memory must come from
/// somewhere else), touched page by page.  Returns (seconds until the
/// child exited, whether it completed).  A child, so that the OOM killer
/// takes it, not us (its `oom_score_adj` is 1000).
pub fn hog(bytes: u64) -> (f64, bool) {
    let t = Instant::now();
    // SAFETY: the child only maps, locks, touches and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let _ = fs::write("/proc/self/oom_score_adj", "1000");
        // SAFETY: a fresh private anonymous mapping, locked and touched
        // inside.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                bytes as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                libc::_exit(2);
            }
            // mlock faults every page in (and fails if it cannot).
            if libc::mlock(p, bytes as usize) != 0 {
                libc::_exit(3);
            }
            let mut off = 0;
            while off < bytes {
                std::ptr::write_volatile((p as *mut u8).add(off as usize), 1);
                off += PAGE;
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    (
        secs(t),
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    )
}

/// Objects on one open device, closed on drop.
pub struct Objects<'a> {
    pub dev: &'a Device,
    pub handles: Vec<u32>,
    pub size: u64,
}

impl<'a> Objects<'a> {
    /// Creates `count` objects of `size` bytes (no pages yet).
    pub fn create(dev: &'a Device, count: usize, size: u64) -> Result<Self, String> {
        let mut objs = Self {
            dev,
            handles: Vec::with_capacity(count),
            size,
        };
        for _ in 0..count {
            objs.handles.push(io(dev.create(size), "create")?);
        }
        Ok(objs)
    }

    /// One EXECBUF per 256 objects with `op`, then waits for all:
    /// binds every object (fetching and pinning its pages).
    pub fn execbuf(&self, op: u32, value: u32) -> Result<(), String> {
        let write = op == uapi::OP_FILL;
        let list: Vec<(u32, bool)> = self.handles.iter().map(|&h| (h, write)).collect();
        for chunk in list.chunks(uapi::MAX_EXEC_OBJECTS as usize) {
            io(self.dev.execbuf(chunk, op, value, 0, 0), "execbuf")?;
        }
        self.wait()
    }

    /// Waits until every object is idle.
    pub fn wait(&self) -> Result<(), String> {
        for &h in &self.handles {
            io(self.dev.wait(h, -1), "wait")?;
        }
        Ok(())
    }

    /// Writes `data` (one page, repeated) into every page with PWRITE:
    /// the pages exist in shmem, the objects hold no reference on them.
    pub fn pwrite_all(&self, page: &[u8]) -> Result<(), String> {
        let chunk: Vec<u8> = page
            .iter()
            .copied()
            .cycle()
            .take(self.size.min(MIB) as usize)
            .collect();
        for &h in &self.handles {
            let mut off = 0;
            while off < self.size {
                let n = (self.size - off).min(chunk.len() as u64) as usize;
                io(self.dev.pwrite(h, off, &chunk[..n]), "pwrite")?;
                off += n as u64;
            }
        }
        Ok(())
    }

    /// VMAP then VUNMAP every object: it holds its pages through a
    /// cached kernel mapping, unbound and unpinned.
    pub fn vmap_cached(&self) -> Result<(), String> {
        for &h in &self.handles {
            io(self.dev.vmap(h), "vmap")?;
            io(self.dev.vunmap(h), "vunmap")?;
        }
        Ok(())
    }

    /// Marks every object DONTNEED.
    pub fn dontneed(&self) -> Result<(), String> {
        for &h in &self.handles {
            io(self.dev.madvise(h, uapi::MADV_DONTNEED), "madvise")?;
        }
        Ok(())
    }

    /// Maps the first `len` bytes of every object (MMAP ioctl) and
    /// faults them in; returns the mappings' page addresses, object by
    /// object, and the mapping bases.
    pub fn map_first(&self, len: u64) -> Result<Mappings, String> {
        let mut m = Mappings {
            bases: Vec::with_capacity(self.handles.len()),
            len,
        };
        for &h in &self.handles {
            m.bases.push(io(self.dev.mmap(h, 0, len), "mmap")?);
        }
        touch(&m.addrs());
        Ok(m)
    }

    /// Total size in bytes.
    pub fn bytes(&self) -> u64 {
        self.size * self.handles.len() as u64
    }
}

impl Drop for Objects<'_> {
    fn drop(&mut self) {
        for &h in &self.handles {
            let _ = self.dev.close(h);
        }
    }
}

/// User mappings of objects, unmapped on drop.
pub struct Mappings {
    pub bases: Vec<u64>,
    pub len: u64,
}

impl Mappings {
    /// Every page address, object by object.
    pub fn addrs(&self) -> Vec<Addr> {
        self.bases
            .iter()
            .flat_map(|&b| page_addrs(b, self.len))
            .collect()
    }
}

impl Drop for Mappings {
    fn drop(&mut self) {
        for &b in &self.bases {
            unmap(b, self.len);
        }
    }
}

/// A page of moderately compressible data: a 64-byte varying header,
/// then zeros (zram stores it in about a hundred bytes; it is not one
/// repeated word, which zram would store for free).
pub fn sample_page(seed: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE as usize];
    fastrand::Rng::with_seed(seed).fill(&mut p[..64]);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_index_lines() {
        let t = "Node 0, zone    DMA32 0.000 0.001 0.002 0.003 0.004 0.005 0.006 0.007 0.008 0.900 1.000\n\
                 Node 1, zone   Normal 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.250 0.500\n\
                 garbage\n";
        let z = parse_unusable(t, 9);
        assert_eq!(
            z,
            vec![
                ("node0_DMA32".to_string(), 0.9),
                ("node1_Normal".to_string(), 0.25)
            ]
        );
    }

    #[test]
    fn unusable_serializes_zones_then_mean() {
        let z = Unusable(vec![
            ("node0_DMA32".into(), 0.9),
            ("node1_Normal".into(), 0.25),
        ]);
        assert_eq!(
            serde_json::to_string(&z).unwrap(),
            r#"{"node0_DMA32":0.9,"node1_Normal":0.25,"mean":0.575}"#
        );
        assert_eq!(
            serde_json::to_string(&Unusable::default()).unwrap(),
            r#"{"mean":null}"#
        );
    }

    #[test]
    fn buddyinfo_sums_over_zones() {
        let t = "Node 0, zone      DMA      1      0      1      0      2      1      1      0      1      1      3\n\
                 Node 0, zone    DMA32    100     50     20     10      5      2      1      0      0      0      0\n\
                 Node 1, zone    DMA32     10      5      2      1      0      0      0      0      0      0    100\n\
                 not buddyinfo\n";
        assert_eq!(
            parse_buddyinfo(t),
            vec![111, 55, 23, 11, 7, 3, 2, 0, 1, 1, 103]
        );
        assert_eq!(parse_buddyinfo(""), Vec::<u64>::new());
    }

    #[test]
    fn meminfo_values() {
        let t = "MemTotal:        1019488 kB\nHugePages_Total:     296\nHugePages_Free:      296\n";
        assert_eq!(parse_meminfo(t, "HugePages_Total"), 296);
        assert_eq!(parse_meminfo(t, "MemTotal"), 1019488);
        assert_eq!(parse_meminfo(t, "HugePages"), 0);
        assert_eq!(parse_meminfo(t, "Shmem"), 0);
    }

    #[test]
    fn sample_pages_differ() {
        assert_ne!(sample_page(1), sample_page(2));
        assert!(sample_page(1)[64..].iter().all(|&b| b == 0));
    }
}
