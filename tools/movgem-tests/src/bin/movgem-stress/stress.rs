// SPDX-License-Identifier: GPL-2.0

//! A bounded concurrent workload: workers create, write, bind, execute
//! (sometimes hanging), madvise, pin, vmap, mmap and close objects while
//! other threads compact memory, allocate hugepages, hog memory, drop
//! caches (our shrinker), purge vmaps, reset the GPU and flip runtime PM.  Every read is checked
//! against what was last written.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use movgem_guest::env::{self, compact, Control, Counters, GpuAwake};
use movgem_guest::{ensure, TestResult};
use movgem_uapi::{self as uapi, Device};

use crate::metric;
use crate::rng::Rng;

const PAGE: u64 = 4096;
const WORKERS: u64 = 4;
const MAX_OBJECTS: usize = 8;

#[derive(Default)]
struct Stats {
    ops: AtomicU64,
    reads_checked: AtomicU64,
    bytes_checked: AtomicU64,
    mismatches: AtomicU64,
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

/// Errors the workload may meet legitimately, whatever the object state.
fn tolerated(e: i32) -> bool {
    matches!(e, libc::ENOMEM | libc::ENOSPC | libc::EINTR)
}

struct Worker {
    dev: Device,
    rng: Rng,
    objs: Vec<Obj>,
    stats: Arc<Stats>,
}

impl Worker {
    fn check(&self, what: &str, r: uapi::Res<()>, ok_errnos: &[i32]) -> bool {
        match r {
            Ok(()) => true,
            Err(e) if tolerated(e) || ok_errnos.contains(&e) => false,
            Err(e) => {
                self.stats.unexpected(format!("{what}: errno {e}"));
                false
            }
        }
    }

    fn verify(&mut self, i: usize, data: &[u8]) {
        let o = &self.objs[i];
        if o.dontneed || o.purged {
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
        self.stats.reads_checked.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_checked
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
        self.check("wait", self.dev.wait(h, 20_000_000_000).map(|_| ()), &[])
    }

    fn step(&mut self) {
        self.stats.ops.fetch_add(1, Ordering::Relaxed);
        let n = self.objs.len();
        let op = self.rng.below(100);
        if n == 0 || (op < 10 && n < MAX_OBJECTS) {
            let size = (1 + self.rng.below(256)) * PAGE;
            let Ok(h) = self.dev.create(size) else { return };
            let seed = self.rng.next() as u32;
            let content = if self.check(
                "pwrite",
                self.dev.pwrite(h, 0, &pattern_bytes(seed, size)),
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
        let i = self.rng.below(n as u64) as usize;
        let h = self.objs[i].h;
        let unusable = self.objs[i].dontneed || self.objs[i].purged;
        let efault: &[i32] = if unusable { &[libc::EFAULT] } else { &[] };
        match op {
            0..=29 => {
                // A batch over this object and maybe a second one.
                let value = self.rng.next() as u32;
                let mut list = vec![(h, true)];
                let j = self.rng.below(n as u64) as usize;
                if j != i {
                    list.push((self.objs[j].h, false));
                }
                let unusable = list.iter().any(|&(h, _)| {
                    let o = self.objs.iter().find(|o| o.h == h).unwrap();
                    o.dontneed || o.purged
                });
                let flags = if self.rng.chance(3) {
                    uapi::EXEC_HANG
                } else {
                    0
                };
                let dur = self.rng.below(20_000_000);
                let r = self
                    .dev
                    .execbuf(&list, uapi::OP_FILL, value, dur, flags)
                    .map(|_| ());
                let done = self.check("execbuf", r, if unusable { &[libc::EFAULT] } else { &[] });
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
            30..=39 => {
                self.wait(h);
            }
            40..=54 => {
                if self.wait(h) {
                    let mut buf = vec![0u8; self.objs[i].size as usize];
                    if self.check("pread", self.dev.pread(h, 0, &mut buf), efault) {
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
                        self.check("madvise", Err(e), busy);
                    }
                }
            }
            63..=70 => {
                if self.objs[i].pins > 0 && self.rng.chance(60) {
                    if self.check("unpin", self.dev.unpin(h), &[]) {
                        self.objs[i].pins -= 1;
                        self.log(i, "unpin".into());
                    }
                } else if self.check("pin", self.dev.pin(h).map(|_| ()), efault) {
                    self.objs[i].pins += 1;
                    self.log(i, "pin".into());
                }
            }
            71..=78 => {
                if self.objs[i].vmaps > 0 && self.rng.chance(60) {
                    if self.check("vunmap", self.dev.vunmap(h), &[]) {
                        self.objs[i].vmaps -= 1;
                        self.log(i, "vunmap".into());
                    }
                } else if self.check("vmap", self.dev.vmap(h), efault) {
                    self.objs[i].vmaps += 1;
                    self.log(i, "vmap".into());
                }
            }
            79..=85 => {
                if self.wait(h) {
                    let seed = self.rng.next() as u32;
                    let size = self.objs[i].size;
                    let r = self.dev.pwrite(h, 0, &pattern_bytes(seed, size));
                    self.objs[i].content = if self.check("pwrite", r, efault) {
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
                let Ok(addr) = self
                    .dev
                    .mmap(h, 0, size)
                    .map_err(|e| self.check("mmap", Err(e), efault))
                else {
                    return;
                };
                // SAFETY: the kernel mapped `size` bytes at `addr` for us.
                let data = unsafe { std::slice::from_raw_parts(addr as *const u8, size as usize) }
                    .to_vec();
                // SAFETY: unmapping our own mapping.
                unsafe { libc::munmap(addr as *mut libc::c_void, size as usize) };
                self.verify(i, &data);
            }
            92..=97 => {
                let o = self.objs.swap_remove(i);
                self.check("close", self.dev.close(o.h), &[]);
            }
            _ => {
                self.check(
                    "set_domain",
                    self.dev.set_domain(h, uapi::DOMAIN_CPU, uapi::DOMAIN_CPU),
                    efault,
                );
            }
        }
    }
}

fn background(
    stop: &Arc<AtomicBool>,
    period_ms: u64,
    mut f: impl FnMut() + Send + 'static,
) -> thread::JoinHandle<()> {
    let stop = stop.clone();
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            f();
            thread::sleep(Duration::from_millis(period_ms));
        }
    })
}

pub fn run(seconds: u64) -> TestResult {
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
                rng: Rng::new(w + 1),
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
    threads.push(background(&stop, 20, move || {
        let _ = compact();
        if std::fs::write("/proc/sys/vm/nr_hugepages", "16").is_ok() {
            hp.fetch_add(
                env::meminfo_kib("HugePages_Total").unwrap_or(0),
                Ordering::Relaxed,
            );
        }
        let _ = std::fs::write("/proc/sys/vm/nr_hugepages", "0");
    }));
    threads.push(background(&stop, 50, move || {
        // A quarter of what is available now: pushes reclaim (and our
        // shrinker) without running the guest out of memory, even with
        // two stress processes at once (the lifecycle test runs two).
        let avail = env::meminfo_kib("MemAvailable").unwrap_or(0) * 1024;
        let mut hog = vec![0u8; (avail / 4) as usize];
        for b in hog.iter_mut().step_by(PAGE as usize) {
            *b = 1;
        }
        std::hint::black_box(&hog);
    }));
    // What igt's reclaim subtest does: hammer the shrinkers directly.
    threads.push(background(&stop, 200, || {
        let _ = env::drop_caches();
    }));
    let ctl = Arc::new(Control::open()?);
    let c = ctl.clone();
    threads.push(background(&stop, 30, move || {
        let _ = c.cmd("purge_vmaps");
    }));
    threads.push(background(&stop, 400, move || {
        let _ = ctl.cmd("reset");
    }));
    let mut awake = None;
    threads.push(background(&stop, 150, move || {
        awake = if awake.is_some() {
            None
        } else {
            GpuAwake::new().ok()
        };
    }));
    // Run for `seconds`, then on until the work the verdict asks for
    // has happened (operations, a GPU request, a hook call), however
    // slowly a loaded machine gets there: a short run (the lifecycle
    // test's are 2 s) on a busy host may not have compacted an object
    // yet.  EXTRA_S is only the give-up.
    const EXTRA_S: u64 = 120;
    thread::sleep(Duration::from_secs(seconds));
    let limit = Duration::from_secs(seconds + EXTRA_S);
    while start.elapsed() < limit {
        let d = Counters::read()?.since(&before);
        if stats.ops.load(Ordering::Relaxed) > 0
            && d.get("gpu_requests") > 0
            && d.get("hook_calls") > 0
        {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| "a stress thread panicked".to_string())?;
    }
    let d = Counters::read()?.since(&before);
    let errors = stats.errors.lock().unwrap().clone();
    metric("stress_seconds", start.elapsed().as_secs());
    metric("stress_ops", stats.ops.load(Ordering::Relaxed));
    metric(
        "stress_reads_checked",
        stats.reads_checked.load(Ordering::Relaxed),
    );
    metric(
        "stress_mib_checked",
        stats.bytes_checked.load(Ordering::Relaxed) >> 20,
    );
    metric(
        "stress_mismatches",
        stats.mismatches.load(Ordering::Relaxed),
    );
    metric(
        "stress_unexpected_errors",
        stats.unexpected.load(Ordering::Relaxed),
    );
    metric("stress_gpu_requests", d.get("gpu_requests"));
    metric("stress_hook_calls", d.get("hook_calls"));
    metric("stress_migrated", d.get("migrated"));
    metric("stress_released_objects", d.get("released_objects"));
    metric("stress_vmap_purged_pages", d.get("vmap_purged_pages"));
    metric("stress_shrink_scans", d.get("shrink_scans"));
    metric("stress_shrink_freed_pages", d.get("shrink_freed_pages"));
    metric(
        "stress_hugepages_obtained",
        hugepages.load(Ordering::Relaxed),
    );
    println!("  counters: {d}");
    ensure!(errors.is_empty(), "unexpected: {errors:?}");
    ensure!(
        stats.mismatches.load(Ordering::Relaxed) == 0,
        "data mismatches"
    );
    ensure!(
        stats.ops.load(Ordering::Relaxed) > 0 && d.get("gpu_requests") > 0,
        "no work done"
    );
    ensure!(
        d.get("hook_calls") > 0,
        "compaction never reached an object: {d}"
    );
    Ok(())
}
