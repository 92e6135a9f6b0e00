// SPDX-License-Identifier: GPL-2.0

//! A bounded concurrent workload: workers create, write, bind, execute
//! (sometimes hanging), madvise, pin, vmap, mmap and close objects while
//! other threads compact memory, allocate hugepages, hog memory, drop
//! caches (our shrinker), purge vmaps, reset the GPU and flip runtime
//! PM.  Every read of an object whose content is known is checked
//! against what was last written.
//!
//! The verdict asks for the work the run is there to produce, with
//! floors (see [`Floors`]): folios of our objects migrated, objects the
//! shrinker gave back, reads of known content checked; no mismatch, and
//! no error any call of a worker or a background thread may not meet.
//! Every error is counted and reported, the expected ones too.

use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use movgem_guest::env::{self, Control, Counters};
use movgem_uapi::{self as uapi, Device};

use crate::metric;

const PAGE: u64 = 4096;
const WORKERS: u64 = 4;
const MAX_OBJECTS: usize = 8;

#[derive(Default)]
struct Stats {
    ops: AtomicU64,
    /// Reads whose expected content was known, compared word by word.
    reads_known: AtomicU64,
    bytes_known: AtomicU64,
    /// Reads of objects whose content is not known (a write or batch
    /// failed, or the object is DONTNEED and may be purged): not checked.
    reads_unknown: AtomicU64,
    mismatches: AtomicU64,
    /// Errors a call may meet in this workload, by "call errno".
    expected: Mutex<BTreeMap<String, u64>>,
    unexpected: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Stats {
    fn unexpected(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        let mut e = self.errors.lock().unwrap();
        if e.len() < 10 {
            e.push(what);
        }
    }

    fn expected(&self, what: &str, errno: i32) {
        *self
            .expected
            .lock()
            .unwrap()
            .entry(format!("{what} {}", errno_name(errno)))
            .or_default() += 1;
    }

    /// Counts the outcome of `what`: an errno in `ok` is expected.
    fn error(&self, what: &str, errno: i32, ok: &[i32]) {
        if ok.contains(&errno) {
            self.expected(what, errno);
        } else {
            self.unexpected(format!("{what}: errno {errno} {}", errno_name(errno)));
        }
    }
}

/// debugfs `gtt_check`: counts into `gtt_checked` and `gtt_mismatches`.
fn gtt_check(stats: &Stats) {
    if let Err(e) = Control::open().and_then(|c| c.cmd("gtt_check")) {
        stats.unexpected(format!("gtt_check: {e}"));
    }
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::ENOMEM => "ENOMEM",
        libc::EAGAIN => "EAGAIN",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::ENOENT => "ENOENT",
        libc::ENOSPC => "ENOSPC",
        libc::EINTR => "EINTR",
        libc::ETIME => "ETIME",
        libc::EIO => "EIO",
        _ => "",
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Content {
    Pattern(u32),
    Fill(u32),
    Unknown,
}

impl Content {
    fn word(self, i: usize) -> Option<u32> {
        match self {
            Content::Pattern(seed) => {
                Some((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed))
            }
            Content::Fill(v) => Some(v),
            Content::Unknown => None,
        }
    }
}

struct Obj {
    /// The last operations on the object, for the report of a mismatch.
    log: Vec<String>,
    h: u32,
    size: u64,
    content: Content,
    dontneed: bool,
    purged: bool,
    pins: u32,
    vmaps: u32,
}

fn pattern_bytes(seed: u32, size: u64) -> Vec<u8> {
    let c = Content::Pattern(seed);
    (0..(size / 4) as usize)
        .flat_map(|i| c.word(i).unwrap().to_le_bytes())
        .collect()
}

/// What a call that allocates may meet under the hog's pressure: pages
/// allocated with `__GFP_RETRY_MAYFAIL` give up with `ENOMEM` rather than
/// call the OOM killer.  (`ENOSPC` needs a full GTT or a shmem limit,
/// `EINTR` a fatal signal, `EIO` a swap read error: none of them is this
/// workload's.)
const ALLOC: &[i32] = &[libc::ENOMEM];
/// EXECBUF's: also `EAGAIN`, when the shrinker took an object's pages
/// between faulting them in and binding, 64 times over.
const EXEC: &[i32] = &[libc::ENOMEM, libc::EAGAIN];

struct Worker {
    dev: Device,
    rng: fastrand::Rng,
    objs: Vec<Obj>,
    stats: Arc<Stats>,
}

impl Worker {
    /// Whether `r` succeeded; counts its error, expected if in `ok`, or
    /// in `extra` (what the object's state allows).
    fn check(&self, what: &str, r: uapi::Res<()>, ok: &[i32], extra: &[i32]) -> bool {
        match r {
            Ok(()) => true,
            Err(e) if extra.contains(&e) => {
                self.stats.expected(what, e);
                false
            }
            Err(e) => {
                self.stats.error(what, e, ok);
                false
            }
        }
    }

    /// Checks a read of object `i` against its known content; a read of
    /// unknown content is only counted.
    fn verify(&mut self, i: usize, data: &[u8]) {
        let o = &self.objs[i];
        if o.dontneed || o.purged || o.content == Content::Unknown {
            self.stats.reads_unknown.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut first = None;
        let bad = data
            .chunks(4)
            .enumerate()
            .filter(|(w, c)| {
                let differs = o
                    .content
                    .word(*w)
                    .is_some_and(|want| *c != want.to_le_bytes());
                if differs && first.is_none() {
                    first = Some((
                        *w,
                        u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                        o.content.word(*w),
                    ));
                }
                differs
            })
            .count();
        self.stats.reads_known.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_known
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if bad > 0 {
            self.stats
                .mismatches
                .fetch_add(bad as u64, Ordering::Relaxed);
            self.stats.unexpected(format!(
                "object {} ({} bytes): {bad} dwords differ, first {first:x?} (dword, got, want); history {:?}",
                o.h, o.size, o.log
            ));
        }
    }

    fn log(&mut self, i: usize, what: String) {
        let log = &mut self.objs[i].log;
        if log.len() >= 12 {
            log.remove(0);
        }
        log.push(what);
    }

    fn wait(&self, h: u32) -> bool {
        self.check(
            "wait",
            self.dev.wait(h, 20_000_000_000).map(|_| ()),
            &[],
            &[],
        )
    }

    fn step(&mut self) {
        self.stats.ops.fetch_add(1, Ordering::Relaxed);
        let n = self.objs.len();
        let op = self.rng.u64(..100);
        if n == 0 || (op < 10 && n < MAX_OBJECTS) {
            let size = (1 + self.rng.u64(..256)) * PAGE;
            let h = match self.dev.create(size) {
                Ok(h) => h,
                Err(e) => {
                    self.stats.error("create", e, ALLOC);
                    return;
                }
            };
            let seed = self.rng.u32(..);
            let content = if self.check(
                "pwrite",
                self.dev.pwrite(h, 0, &pattern_bytes(seed, size)),
                ALLOC,
                &[],
            ) {
                Content::Pattern(seed)
            } else {
                Content::Unknown
            };
            self.objs.push(Obj {
                log: vec![format!("create {size} pattern {seed:#x}")],
                h,
                size,
                content,
                dontneed: false,
                purged: false,
                pins: 0,
                vmaps: 0,
            });
            return;
        }
        let i = self.rng.usize(..n);
        let h = self.objs[i].h;
        let unusable = self.objs[i].dontneed || self.objs[i].purged;
        let efault: &[i32] = if unusable { &[libc::EFAULT] } else { &[] };
        match op {
            0..=29 => {
                // A batch over this object and maybe a second one.
                let value = self.rng.u32(..);
                let mut list = vec![(h, true)];
                let j = self.rng.usize(..n);
                if j != i {
                    list.push((self.objs[j].h, false));
                }
                let unusable = list.iter().any(|&(h, _)| {
                    let o = self.objs.iter().find(|o| o.h == h).unwrap();
                    o.dontneed || o.purged
                });
                let flags = if self.rng.u64(..100) < 3 {
                    uapi::EXEC_HANG
                } else {
                    0
                };
                let dur = self.rng.u64(..20_000_000);
                let r = self
                    .dev
                    .execbuf(&list, uapi::OP_FILL, value, dur, flags)
                    .map(|_| ());
                let done = self.check(
                    "execbuf",
                    r,
                    EXEC,
                    if unusable { &[libc::EFAULT] } else { &[] },
                );
                if done {
                    self.objs[i].content = Content::Fill(value);
                }
                self.log(
                    i,
                    format!(
                        "execbuf fill {value:#x} flags {flags} ok={done} with {:?}",
                        list.get(1)
                    ),
                );
                if let Some(&(hj, _)) = list.get(1) {
                    if let Some(j) = self.objs.iter().position(|o| o.h == hj) {
                        self.log(j, format!("read by execbuf of {h} ok={done}"));
                    }
                }
            }
            30..=34 => {
                self.wait(h);
            }
            35..=39 => {
                // The GPU reads what it last wrote (a mismatch counts in
                // `gpu_check_errors`, which the verdict requires to be 0).
                let o = &self.objs[i];
                if let (Content::Fill(value), false) = (o.content, unusable) {
                    let r = self
                        .dev
                        .execbuf(&[(h, false)], uapi::OP_CHECK, value, 0, 0)
                        .map(|_| ());
                    let done = self.check("execbuf check", r, EXEC, &[]);
                    self.log(i, format!("execbuf check {value:#x} ok={done}"));
                } else {
                    self.wait(h);
                }
            }
            40..=54 => {
                if self.wait(h) {
                    let mut buf = vec![0u8; self.objs[i].size as usize];
                    if self.check("pread", self.dev.pread(h, 0, &mut buf), ALLOC, efault) {
                        self.verify(i, &buf);
                    }
                }
            }
            55..=62 => {
                let dontneed = !self.objs[i].dontneed;
                let madv = if dontneed {
                    uapi::MADV_DONTNEED
                } else {
                    uapi::MADV_WILLNEED
                };
                let o = &self.objs[i];
                let busy: &[i32] = if o.pins > 0 || o.vmaps > 0 {
                    &[libc::EBUSY]
                } else {
                    &[]
                };
                match self.dev.madvise(h, madv) {
                    Ok(retained) => {
                        let o = &mut self.objs[i];
                        o.dontneed = dontneed;
                        o.purged |= !retained;
                        self.log(
                            i,
                            format!("madvise dontneed={dontneed} retained={retained}"),
                        );
                    }
                    Err(e) => {
                        self.check("madvise", Err(e), &[], busy);
                    }
                }
            }
            63..=70 => {
                if self.objs[i].pins > 0 && self.rng.u64(..100) < 60 {
                    if self.check("unpin", self.dev.unpin(h), &[], &[]) {
                        self.objs[i].pins -= 1;
                        self.log(i, "unpin".into());
                    }
                } else if self.check("pin", self.dev.pin(h).map(|_| ()), ALLOC, efault) {
                    self.objs[i].pins += 1;
                    self.log(i, "pin".into());
                }
            }
            71..=78 => {
                if self.objs[i].vmaps > 0 && self.rng.u64(..100) < 60 {
                    if self.check("vunmap", self.dev.vunmap(h), &[], &[]) {
                        self.objs[i].vmaps -= 1;
                        self.log(i, "vunmap".into());
                    }
                } else if self.check("vmap", self.dev.vmap(h), ALLOC, efault) {
                    self.objs[i].vmaps += 1;
                    self.log(i, "vmap".into());
                }
            }
            79..=85 => {
                if self.wait(h) {
                    let seed = self.rng.u32(..);
                    let size = self.objs[i].size;
                    let r = self.dev.pwrite(h, 0, &pattern_bytes(seed, size));
                    self.objs[i].content = if self.check("pwrite", r, ALLOC, efault) {
                        Content::Pattern(seed)
                    } else {
                        Content::Unknown
                    };
                }
            }
            86..=91 => {
                if !self.wait(h) {
                    return;
                }
                let size = self.objs[i].size;
                let addr = match self.dev.mmap(h, 0, size) {
                    Ok(addr) => addr,
                    Err(e) => {
                        self.check("mmap", Err(e), ALLOC, efault);
                        return;
                    }
                };
                // SAFETY: the kernel mapped `size` bytes at `addr` for us.
                let mut data =
                    unsafe { std::slice::from_raw_parts(addr as *const u8, size as usize) }
                        .to_vec();
                if self.rng.u64(..100) < 50 {
                    // Move every page to the other node (in place, if the
                    // object is bound and idle), then read them again.
                    let addrs: Vec<*mut libc::c_void> = (0..size / PAGE)
                        .map(|k| (addr + k * PAGE) as *mut libc::c_void)
                        .collect();
                    let mut status = vec![0i32; addrs.len()];
                    let _ = env::move_pages(&addrs, None, &mut status);
                    let there: Vec<i32> = status.iter().map(|&s| i32::from(s == 0)).collect();
                    let _ = env::move_pages(&addrs, Some(&there), &mut status);
                    self.log(i, "move_pages".into());
                    // SAFETY: as above, still mapped.
                    data = unsafe { std::slice::from_raw_parts(addr as *const u8, size as usize) }
                        .to_vec();
                }
                // SAFETY: unmapping our own mapping.
                if unsafe { libc::munmap(addr as *mut libc::c_void, size as usize) } != 0 {
                    self.stats
                        .unexpected(format!("munmap: {}", std::io::Error::last_os_error()));
                }
                self.verify(i, &data);
            }
            92..=97 => {
                let o = self.objs.swap_remove(i);
                self.check("close", self.dev.close(o.h), &[], &[]);
            }
            _ => {
                self.check(
                    "set_domain",
                    self.dev.set_domain(h, uapi::DOMAIN_CPU, uapi::DOMAIN_CPU),
                    ALLOC,
                    efault,
                );
            }
        }
    }
}

/// A background thread's step failed: the call and its errno (0: no
/// errno, e.g. an unparsable file).
type BgResult = Result<(), (&'static str, i32)>;

/// Writes a `/proc` or `/sys` file; the errno on failure.
fn write_file(path: &str, value: &str) -> Result<(), i32> {
    fs::write(path, value).map_err(|e| e.raw_os_error().unwrap_or(0))
}

/// Runs `f` every `period_ms` until `stop`; counts each error, expected
/// if `ok` lists its call and errno.
fn background(
    stop: &Arc<AtomicBool>,
    stats: &Arc<Stats>,
    period_ms: u64,
    ok: &'static [(&'static str, i32)],
    mut f: impl FnMut() -> BgResult + Send + 'static,
) -> thread::JoinHandle<()> {
    let (stop, stats) = (stop.clone(), stats.clone());
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Err((what, errno)) = f() {
                if ok.contains(&(what, errno)) {
                    stats.expected(what, errno);
                } else {
                    stats.error(what, errno, &[]);
                }
            }
            thread::sleep(Duration::from_millis(period_ms));
        }
    })
}

const PM_CONTROL: &str = "/sys/devices/platform/movgem/power/control";

/// What the run must produce, in proportion to its duration: a quarter
/// to a tenth of what a 20 s run on a loaded 2-core TCG guest measured
/// (1,346 folios migrated, 63 objects given back by the shrinker, 102
/// reads), so that a slow run reaches them by running on (see
/// [`run`]), and a run that cannot produce them at all (hook off, say)
/// fails.
struct Floors {
    /// Folios of our objects migrated (debugfs `migrated`).
    migrated: u64,
    /// Objects our shrinker gave back (`shrink_released_objects` +
    /// `shrink_purged_objects`), driven by `drop_caches` and the hog.
    shrunk: u64,
    /// Reads of known content checked.
    known_reads: u64,
    /// Folios moved in place (`hook=inplace`: at least one).
    in_place: u64,
}

impl Floors {
    fn for_seconds(s: u64) -> Self {
        let in_place_mode = env::param("hook").is_ok_and(|m| m == "inplace");
        Self {
            migrated: (8 * s).max(16),
            shrunk: (s / 2).max(2),
            known_reads: s.max(8),
            in_place: u64::from(in_place_mode),
        }
    }
}

/// What the run produced so far.
struct Measured {
    ops: u64,
    gpu_requests: u64,
    migrated: u64,
    shrunk: u64,
    known_reads: u64,
    in_place: u64,
}

impl Measured {
    fn now(stats: &Stats, d: &Counters) -> Self {
        Self {
            ops: stats.ops.load(Ordering::Relaxed),
            gpu_requests: d.get("gpu_requests"),
            migrated: d.get("migrated"),
            shrunk: d.get("shrink_released_objects") + d.get("shrink_purged_objects"),
            known_reads: stats.reads_known.load(Ordering::Relaxed),
            in_place: d.get("migrated_in_place"),
        }
    }

    /// What is still short of `floors`; empty once everything is met.
    fn short_of(&self, f: &Floors) -> Vec<String> {
        let mut short = Vec::new();
        if self.ops == 0 || self.gpu_requests == 0 {
            short.push(format!(
                "no work done: {} operations, {} GPU requests",
                self.ops, self.gpu_requests
            ));
        }
        for (what, got, floor) in [
            ("folios migrated", self.migrated, f.migrated),
            ("objects given back by the shrinker", self.shrunk, f.shrunk),
            (
                "reads of known content checked",
                self.known_reads,
                f.known_reads,
            ),
            ("folios moved in place", self.in_place, f.in_place),
        ] {
            if got < floor {
                short.push(format!("{what}: {got}, below the floor of {floor}"));
            }
        }
        short
    }
}

pub fn run(seconds: u64) -> Result<String, String> {
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let before = Counters::read()?;
    let start = Instant::now();
    let mut threads = Vec::new();
    for w in 0..WORKERS {
        let (stats, stop) = (stats.clone(), stop.clone());
        let dev = Device::open().map_err(|e| format!("open: errno {e}"))?;
        threads.push(thread::spawn(move || {
            let mut worker = Worker {
                dev,
                rng: fastrand::Rng::with_seed(w + 1),
                objs: Vec::new(),
                stats,
            };
            while !stop.load(Ordering::Relaxed) {
                worker.step();
            }
            // Dropping the file closes whatever is left, pinned or busy.
        }));
    }
    let hugepages = Arc::new(AtomicU64::new(0));
    let hp = hugepages.clone();
    // Writing nr_hugepages may fail for want of memory (the node mask it
    // allocates); nothing else here may fail.
    const HUGEPAGES_OK: &[(&str, i32)] = &[
        ("nr_hugepages=16", libc::ENOMEM),
        ("nr_hugepages=0", libc::ENOMEM),
    ];
    threads.push(background(&stop, &stats, 20, HUGEPAGES_OK, move || {
        write_file("/proc/sys/vm/compact_memory", "1").map_err(|e| ("compact_memory", e))?;
        write_file("/proc/sys/vm/nr_hugepages", "16").map_err(|e| ("nr_hugepages=16", e))?;
        let total = env::meminfo_kib("HugePages_Total").map_err(|_| ("HugePages_Total", 0))?;
        hp.fetch_add(total, Ordering::Relaxed);
        write_file("/proc/sys/vm/nr_hugepages", "0").map_err(|e| ("nr_hugepages=0", e))
    }));
    threads.push(background(&stop, &stats, 50, &[], move || {
        // A quarter of what is available now: pushes reclaim (and our
        // shrinker) without running the guest out of memory, even with
        // two stress processes at once (the lifecycle test runs two).
        let avail = env::meminfo_kib("MemAvailable").map_err(|_| ("MemAvailable", 0))? * 1024;
        let mut hog = vec![0u8; (avail / 4) as usize];
        for b in hog.iter_mut().step_by(PAGE as usize) {
            *b = 1;
        }
        std::hint::black_box(&hog);
        Ok(())
    }));
    // What igt's reclaim subtest does: hammer the shrinkers directly.
    threads.push(background(&stop, &stats, 200, &[], || {
        write_file("/proc/sys/vm/drop_caches", "2").map_err(|e| ("drop_caches", e))
    }));
    let ctl = Arc::new(Control::open()?);
    let c = ctl.clone();
    threads.push(background(&stop, &stats, 30, &[], move || {
        c.cmd_errno("purge_vmaps")
            .map_or(Ok(()), |e| Err(("purge_vmaps", e)))
    }));
    threads.push(background(&stop, &stats, 400, &[], move || {
        ctl.cmd_errno("reset").map_or(Ok(()), |e| Err(("reset", e)))
    }));
    let mut awake = false;
    threads.push(background(&stop, &stats, 150, &[], move || {
        awake = !awake;
        let mode = if awake { "on" } else { "auto" };
        write_file(PM_CONTROL, mode).map_err(|e| ("power/control", e))
    }));
    // Run for `seconds`, then on until the work the verdict asks for
    // has happened, however slowly a loaded machine gets there: a short
    // run (the lifecycle test's are 2 s) on a busy host may not have
    // compacted an object yet.  EXTRA_S is only the give-up.
    const EXTRA_S: u64 = 120;
    let floors = Floors::for_seconds(seconds);
    thread::sleep(Duration::from_secs(seconds));
    let limit = Duration::from_secs(seconds + EXTRA_S);
    while start.elapsed() < limit {
        let d = Counters::read()?.since(&before);
        if Measured::now(&stats, &d).short_of(&floors).is_empty() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    // The same while the workers still hold their objects.
    gtt_check(&stats);
    stop.store(true, Ordering::Relaxed);
    let mut panicked = 0;
    for t in threads {
        panicked += u32::from(t.join().is_err());
    }
    // The PM thread may have stopped with the device held awake.
    if let Err(e) = write_file(PM_CONTROL, "auto") {
        stats.error("power/control", e, &[]);
    }
    // Every GTT entry of every binding left must point where the page
    // cache does, whatever moved meanwhile.
    gtt_check(&stats);
    let d = Counters::read()?.since(&before);
    let m = Measured::now(&stats, &d);
    let errors = stats.errors.lock().unwrap().clone();
    let expected = stats.expected.lock().unwrap().clone();
    let unexpected = stats.unexpected.load(Ordering::Relaxed);
    let mismatches = stats.mismatches.load(Ordering::Relaxed);
    let reads_unknown = stats.reads_unknown.load(Ordering::Relaxed);
    let mib_known = stats.bytes_known.load(Ordering::Relaxed) >> 20;
    let elapsed = start.elapsed().as_secs();
    metric("stress_seconds", elapsed);
    metric("stress_ops", m.ops);
    metric("stress_reads_checked", m.known_reads);
    metric("stress_reads_unknown", reads_unknown);
    metric("stress_mib_checked", mib_known);
    metric("stress_mismatches", mismatches);
    metric("stress_unexpected_errors", unexpected);
    metric("stress_expected_errors", expected.values().sum::<u64>());
    metric("stress_gpu_requests", m.gpu_requests);
    metric("stress_hook_calls", d.get("hook_calls"));
    metric("stress_migrated", m.migrated);
    metric("stress_migrated_in_place", d.get("migrated_in_place"));
    metric("stress_gtt_checked", d.get("gtt_checked"));
    metric("stress_gtt_mismatches", d.get("gtt_mismatches"));
    metric("stress_released_objects", d.get("released_objects"));
    metric("stress_vmap_purged_pages", d.get("vmap_purged_pages"));
    metric("stress_shrink_scans", d.get("shrink_scans"));
    metric("stress_shrink_objects", m.shrunk);
    metric("stress_shrink_freed_pages", d.get("shrink_freed_pages"));
    metric(
        "stress_hugepages_obtained",
        hugepages.load(Ordering::Relaxed),
    );
    println!("  counters: {d}");
    println!("  expected errors: {expected:?}");
    let numbers = format!(
        "{elapsed} s, {} ops, {} GPU requests; migrated {} (floor {}), shrinker gave back {} objects \
         (floor {}; {} scans, {} pages), {} reads of known content checked (floor {}; {mib_known} MiB), \
         {reads_unknown} of unknown content not checked, {mismatches} mismatches; errors: {} expected {expected:?}, \
         {unexpected} unexpected",
        m.ops,
        m.gpu_requests,
        m.migrated,
        floors.migrated,
        m.shrunk,
        floors.shrunk,
        d.get("shrink_scans"),
        d.get("shrink_freed_pages"),
        m.known_reads,
        floors.known_reads,
        expected.values().sum::<u64>(),
    );
    let mut wrong = Vec::new();
    if panicked > 0 {
        wrong.push(format!("{panicked} threads panicked"));
    }
    if unexpected > 0 {
        wrong.push(format!("unexpected errors: {errors:?}"));
    }
    if mismatches > 0 {
        wrong.push(format!("{mismatches} dwords read back wrong"));
    }
    for bad in ["gtt_mismatches", "gtt_faults", "gpu_check_errors"] {
        if d.get(bad) > 0 {
            wrong.push(format!("{bad}: {}", d.get(bad)));
        }
    }
    if d.get("gtt_checked") == 0 {
        wrong.push("the GTT check compared no entry".to_string());
    }
    wrong.extend(m.short_of(&floors));
    if wrong.is_empty() {
        Ok(numbers)
    } else {
        Err(format!("{} [{numbers}]", wrong.join("; ")))
    }
}
