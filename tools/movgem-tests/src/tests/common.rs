// SPDX-License-Identifier: GPL-2.0

//! What several test files use: uAPI results as test errors, data
//! patterns, GPU-filled objects and their check, where pages are and
//! moving them (move_pages(2)), and anonymous user memory.

use std::fs;

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, Counters};

/// Shared with the benchmarks (`movgem_guest::env`).
pub(crate) use movgem_guest::env::{node_free_kib, node_of_pfn, node_watermark_kib};
use movgem_guest::{ensure, TestResult};

pub(crate) const PAGE: u64 = 4096;

pub(crate) fn errno_name(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

pub(crate) fn ok<T>(r: uapi::Res<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {}", errno_name(e)))
}

pub(crate) fn expect_err<T: std::fmt::Debug>(r: uapi::Res<T>, want: i32, what: &str) -> TestResult {
    match r {
        Err(e) if e == want => Ok(()),
        other => Err(format!(
            "{what}: expected {}, got {other:?}",
            errno_name(want)
        )),
    }
}

pub(crate) fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len / 4)
        .flat_map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed)
                .to_le_bytes()
        })
        .collect()
}

/// A bound, idle object of `size` bytes filled with `value` by the GPU.
pub(crate) fn filled_object(dev: &Device, size: u64, value: u32) -> Result<u32, String> {
    let h = ok(dev.create(size), "create")?;
    ok(
        dev.execbuf(&[(h, true)], uapi::OP_FILL, value, 0, 0),
        "execbuf",
    )?;
    ok(dev.wait(h, -1), "wait")?;
    Ok(h)
}

/// The GPU (a checking batch) and the CPU (pread) both read `value` in
/// every dword of the first `size` bytes of object `h`.
pub(crate) fn check_fill_sized(dev: &Device, h: u32, value: u32, size: u64) -> TestResult {
    let before = Counters::read()?;
    ok(
        dev.execbuf(&[(h, false)], uapi::OP_CHECK, value, 0, 0),
        "execbuf check",
    )?;
    ok(dev.wait(h, -1), "wait")?;
    let d = Counters::read()?.since(&before);
    ensure!(
        d.get("gpu_check_errors") == 0,
        "the GPU read stale data: {d}"
    );
    let mut got = vec![0u8; size as usize];
    ok(dev.pread(h, 0, &mut got), "pread")?;
    ensure!(
        got.chunks(4).all(|c| c == value.to_le_bytes()),
        "CPU read other data than the GPU wrote"
    );
    Ok(())
}

/// Pages of a PMD-sized folio (order 9).
pub(crate) const PMD_PAGES: usize = 512;
/// /proc/kpageflags bits.
const KPF_COMPOUND_HEAD: u64 = 1 << 15;
const KPF_COMPOUND_TAIL: u64 = 1 << 16;
const KPF_THP: u64 = 1 << 22;

/// Whether `frames` (an object's, in index order) are PMD-sized
/// transparent huge folios only: each 512-page run starts with a
/// `KPF_THP` head at a 512-aligned frame, followed by its 511 `KPF_THP`
/// tails at the next frames, so each run is one folio of order 9.  Any
/// large folio sets `KPF_COMPOUND_*`; a smaller one (an mTHP) has its
/// next head within the run, and fails.
pub(crate) fn pmd_folios_only(frames: &[u64]) -> Result<bool, String> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open("/proc/kpageflags").map_err(|e| format!("kpageflags: {e}"))?;
    pmd_runs(frames, |pfn| {
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, pfn * 8)
            .map_err(|e| format!("kpageflags: {e}"))?;
        Ok(u64::from_le_bytes(b))
    })
}

/// [`pmd_folios_only`] with the flags of a frame from `flags`.
fn pmd_runs(
    frames: &[u64],
    mut flags: impl FnMut(u64) -> Result<u64, String>,
) -> Result<bool, String> {
    if frames.is_empty() || !frames.len().is_multiple_of(PMD_PAGES) {
        return Ok(false);
    }
    for run in frames.chunks(PMD_PAGES) {
        let head = run[0];
        if head % PMD_PAGES as u64 != 0 {
            return Ok(false);
        }
        for (j, &pfn) in run.iter().enumerate() {
            let want = if j == 0 {
                KPF_COMPOUND_HEAD
            } else {
                KPF_COMPOUND_TAIL
            };
            let fl = flags(pfn)?;
            if pfn != head + j as u64 || fl & want == 0 || fl & KPF_THP == 0 {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The node every page is on now.
pub(crate) fn where_are(addrs: &[*mut libc::c_void]) -> Result<Vec<i32>, String> {
    let mut status = vec![i32::MIN; addrs.len()];
    env::move_pages(addrs, None, &mut status)?;
    ensure!(
        status.iter().all(|&s| s == 0 || s == 1),
        "pages not on node 0 or 1: {:?}",
        &status[..8.min(status.len())]
    );
    Ok(status)
}

/// Asks to move every page to `target`; returns how many are there now.
pub(crate) fn move_to(addrs: &[*mut libc::c_void], target: &[i32]) -> Result<usize, String> {
    let mut status = vec![i32::MIN; addrs.len()];
    env::move_pages(addrs, Some(target), &mut status)?;
    Ok(where_are(addrs)?
        .iter()
        .zip(target)
        .filter(|(a, b)| a == b)
        .count())
}

pub(crate) const MPOL_DEFAULT: libc::c_int = 0;
pub(crate) const MPOL_BIND: libc::c_int = 2;

pub(crate) fn set_mempolicy(mode: libc::c_int, node: Option<u32>) -> bool {
    let mask: libc::c_ulong = node.map_or(0, |n| 1 << n);
    let (maskp, maxnode) = match node {
        Some(_) => (&mask as *const libc::c_ulong, 64usize),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: `maskp` is null or points to one word of node mask.
    unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, maskp, maxnode) == 0 }
}

pub(crate) fn mbind(addr: *mut libc::c_void, len: usize, node: u32) -> bool {
    let mask: libc::c_ulong = 1 << node;
    // SAFETY: a range of our own mapping and one word of node mask.
    unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr,
            len,
            MPOL_BIND,
            &mask as *const libc::c_ulong,
            64usize,
            0u32,
        ) == 0
    }
}

/// Writes `text` to debugfs drop_caches (opened without O_TRUNC).
pub(crate) fn write_drop_caches(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    fs::OpenOptions::new()
        .write(true)
        .open(uapi::DROP_CACHES_PATH)?
        .write_all(text.as_bytes())
}

/// Writes `MOVGEM_DROP_*` bits to debugfs drop_caches.
pub(crate) fn drop_objects(flags: u32) -> Result<(), String> {
    write_drop_caches(&flags.to_string()).map_err(|e| {
        let meta = fs::metadata(uapi::DROP_CACHES_PATH);
        format!("drop_caches {flags:#x}: {e} ({meta:?})")
    })
}

/// A file (sysctl, debugfs tunable) set for as long as the value lives.
pub(crate) struct Knob {
    path: String,
    old: String,
}

impl Knob {
    pub(crate) fn set(path: &str, value: &str) -> Result<Self, String> {
        let old = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        fs::write(path, value).map_err(|e| format!("{path}: {e}"))?;
        Ok(Self {
            path: path.to_string(),
            old: old.trim().to_string(),
        })
    }
}

impl Drop for Knob {
    fn drop(&mut self) {
        let _ = fs::write(&self.path, &self.old);
    }
}

/// Anonymous private memory (or, from [`map_file`], a file mapping),
/// unmapped on drop (unless already unmapped).
pub(crate) struct Anon {
    pub(crate) addr: *mut libc::c_void,
    pub(crate) len: usize,
}

impl Anon {
    pub(crate) fn new(len: usize, extra_flags: libc::c_int) -> Result<Self, String> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
                -1,
                0,
            )
        };
        ensure!(
            addr != libc::MAP_FAILED,
            "mmap {len}: {}",
            std::io::Error::last_os_error()
        );
        Ok(Self { addr, len })
    }

    pub(crate) fn ptr(&self) -> u64 {
        self.addr as u64
    }

    pub(crate) fn words(&mut self) -> &mut [u32] {
        // SAFETY: the mapping is ours, readable, writable and
        // `len` bytes long, and `&mut self` makes this view unique.
        unsafe { std::slice::from_raw_parts_mut(self.addr.cast::<u32>(), self.len / 4) }
    }

    pub(crate) fn page_addrs(&self) -> Vec<*mut libc::c_void> {
        (0..self.len as u64 / PAGE)
            .map(|i| (self.ptr() + i * PAGE) as *mut libc::c_void)
            .collect()
    }

    pub(crate) fn unmap(&mut self) {
        if self.len != 0 {
            // SAFETY: unmapping our own mapping once.
            unsafe { libc::munmap(self.addr, self.len) };
            self.len = 0;
        }
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        self.unmap();
    }
}

/// Swap off until dropped (and on again if it was on): memory that only
/// reclaim to swap could free stays where it is.
pub(crate) struct NoSwap(bool);

impl NoSwap {
    pub(crate) fn new() -> Result<Self, String> {
        let had = env::meminfo_kib("SwapTotal")? > 0;
        if had {
            let st = std::process::Command::new("swapoff")
                .arg("/dev/zram0")
                .status()
                .map_err(|e| format!("swapoff: {e}"))?;
            ensure!(st.success(), "swapoff failed: {st}");
        }
        Ok(Self(had))
    }
}

impl Drop for NoSwap {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::process::Command::new("swapon")
                .arg("/dev/zram0")
                .status();
        }
    }
}

/// Runs `cmd` (a busybox applet in the guest); an error unless it
/// exits 0.
pub(crate) fn run(cmd: &[&str]) -> TestResult {
    let out = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    ensure!(
        out.status.success(),
        "{}: {} {}",
        cmd.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A file system with writeback (ext2, which dirty-tracks its shared
/// mappings through `page_mkwrite`), on a zram device of its own,
/// mounted at `dir`; unmounted and the device removed on drop.
pub(crate) struct Ext2Disk {
    id: u32,
    pub(crate) dir: String,
    mounted: bool,
}

impl Ext2Disk {
    pub(crate) fn new(bytes: u64) -> Result<Self, String> {
        let id: u32 = fs::read_to_string("/sys/class/zram-control/hot_add")
            .map_err(|e| format!("zram hot_add: {e}"))?
            .trim()
            .parse()
            .map_err(|e| format!("zram hot_add: {e}"))?;
        let mut disk = Self {
            id,
            dir: format!("/tmp/movgem-ext2-{id}"),
            mounted: false,
        };
        let dev = format!("/dev/zram{id}");
        fs::write(format!("/sys/block/zram{id}/disksize"), bytes.to_string())
            .map_err(|e| format!("zram{id} disksize: {e}"))?;
        // zram's logical blocks are pages: ext2's default 1 KiB blocks
        // would not mount.
        run(&["mke2fs", "-q", "-b", "4096", &dev])?;
        fs::create_dir_all(&disk.dir).map_err(|e| format!("{}: {e}", disk.dir))?;
        run(&["mount", "-t", "ext2", &dev, &disk.dir])?;
        disk.mounted = true;
        Ok(disk)
    }

    pub(crate) fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }
}

impl Drop for Ext2Disk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = run(&["umount", &self.dir]);
        }
        let _ = fs::remove_dir(&self.dir);
        let _ = fs::write(format!("/sys/block/zram{}/reset", self.id), "1");
        let _ = fs::write("/sys/class/zram-control/hot_remove", self.id.to_string());
    }
}

/// A shared mapping of `len` bytes of `file` with protection `prot`;
/// unmapped on drop.
pub(crate) fn map_file(file: &fs::File, len: usize, prot: libc::c_int) -> Result<Anon, String> {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh mapping of a file we hold open; no existing memory
    // is touched.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    ensure!(
        addr != libc::MAP_FAILED,
        "mmap of a file, {len} bytes: {}",
        std::io::Error::last_os_error()
    );
    Ok(Anon { addr, len })
}

#[cfg(test)]
mod pmd {
    use super::*;

    /// Flags of frames made of folios of `order` from frame 0 on, with
    /// `thp` set or not.
    fn folios(order: u32, thp: bool) -> impl FnMut(u64) -> Result<u64, String> {
        move |pfn| {
            let thp = if thp { KPF_THP } else { 0 };
            Ok(thp
                | if pfn % (1 << order) == 0 {
                    KPF_COMPOUND_HEAD
                } else {
                    KPF_COMPOUND_TAIL
                })
        }
    }

    #[test]
    fn order_9_thps_pass() {
        let frames: Vec<u64> = (1024..1024 + 2 * PMD_PAGES as u64).collect();
        assert_eq!(pmd_runs(&frames, folios(9, true)), Ok(true));
    }

    #[test]
    fn smaller_large_folios_fail() {
        // mTHPs of order 2 to 8 set KPF_COMPOUND_* and KPF_THP too.
        let frames: Vec<u64> = (1024..1024 + PMD_PAGES as u64).collect();
        for order in 2..9 {
            assert_eq!(pmd_runs(&frames, folios(order, true)), Ok(false), "{order}");
        }
    }

    #[test]
    fn compound_without_thp_fails() {
        let frames: Vec<u64> = (0..PMD_PAGES as u64).collect();
        assert_eq!(pmd_runs(&frames, folios(9, false)), Ok(false));
    }

    #[test]
    fn misplaced_frames_fail() {
        // Not 512-aligned, not contiguous, not whole runs, none.
        let shifted: Vec<u64> = (8..8 + PMD_PAGES as u64).collect();
        assert_eq!(pmd_runs(&shifted, folios(9, true)), Ok(false));
        let mut gap: Vec<u64> = (0..PMD_PAGES as u64).collect();
        gap[100] = 5000;
        assert_eq!(pmd_runs(&gap, folios(9, true)), Ok(false));
        let short: Vec<u64> = (0..256).collect();
        assert_eq!(pmd_runs(&short, folios(9, true)), Ok(false));
        assert_eq!(pmd_runs(&[], folios(9, true)), Ok(false));
    }
}
