// SPDX-License-Identifier: GPL-2.0

//! Random and boundary ioctls on /dev/movgem.
//!
//! Commands are the real ones, the real ones with a wrong size or
//! direction, or random numbers.  Structures are filled field by field
//! with boundary values, live handles, stale handles and handles of
//! another open file, and pointers that are NULL, kernel addresses,
//! unmapped, or into a scratch buffer the kernel may freely write.
//! Every call must succeed or fail with an errno from the documented
//! set; afterwards nothing may be left behind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use movgem_guest::ensure;
use movgem_guest::env::Control;
use movgem_uapi::{self as uapi, Device};

use crate::metric;

const CMDS: &[u32] = &[
    uapi::IOCTL_CREATE,
    uapi::IOCTL_CLOSE,
    uapi::IOCTL_PWRITE,
    uapi::IOCTL_PREAD,
    uapi::IOCTL_MMAP,
    uapi::IOCTL_SET_DOMAIN,
    uapi::IOCTL_MADVISE,
    uapi::IOCTL_EXECBUF,
    uapi::IOCTL_BUSY,
    uapi::IOCTL_WAIT,
    uapi::IOCTL_PIN,
    uapi::IOCTL_UNPIN,
    uapi::IOCTL_VMAP,
    uapi::IOCTL_VUNMAP,
    uapi::IOCTL_GET_INFO,
    uapi::IOCTL_USERPTR,
];

/// The errnos each ioctl may fail with: the table of
/// `include/uapi/movgem.h` (the `errors:` lines; a unit test below
/// compares the two), derived from the driver (`rust/file.rs` and what
/// it calls).  A command number not in this table gets `ENOTTY` and
/// nothing else.
const ERRNOS: &[(u32, &str, &[i32])] = {
    use libc::*;
    &[
        (
            uapi::IOCTL_CREATE,
            "CREATE",
            &[EFAULT, EINVAL, E2BIG, ENOMEM, ENOSPC, ENFILE],
        ),
        (uapi::IOCTL_CLOSE, "CLOSE", &[EFAULT, EINVAL, ENOENT]),
        (
            uapi::IOCTL_PWRITE,
            "PWRITE",
            &[EFAULT, EINVAL, ENOENT, ENOMEM, ENOSPC, EIO],
        ),
        (
            uapi::IOCTL_PREAD,
            "PREAD",
            &[EFAULT, EINVAL, ENOENT, ENOMEM, ENOSPC, EIO],
        ),
        (
            uapi::IOCTL_MMAP,
            "MMAP",
            &[EFAULT, EINVAL, ENOENT, ENOMEM, EAGAIN, EINTR],
        ),
        (
            uapi::IOCTL_SET_DOMAIN,
            "SET_DOMAIN",
            &[
                EFAULT, EINVAL, ENOENT, EINTR, ENOMEM, ENOSPC, EIO, EHWPOISON,
            ],
        ),
        (
            uapi::IOCTL_MADVISE,
            "MADVISE",
            &[EFAULT, EINVAL, ENOENT, EBUSY, EINTR],
        ),
        (
            uapi::IOCTL_EXECBUF,
            "EXECBUF",
            &[
                EFAULT, EINVAL, ENOENT, ENOMEM, ENOSPC, EIO, EAGAIN, EINTR, EHWPOISON,
            ],
        ),
        (uapi::IOCTL_BUSY, "BUSY", &[EFAULT, ENOENT]),
        (
            uapi::IOCTL_WAIT,
            "WAIT",
            &[EFAULT, EINVAL, ENOENT, ETIME, EINTR],
        ),
        (
            uapi::IOCTL_PIN,
            "PIN",
            &[EFAULT, EINVAL, ENOENT, ENOMEM, ENOSPC, EIO, EINTR],
        ),
        (uapi::IOCTL_UNPIN, "UNPIN", &[EFAULT, EINVAL, ENOENT]),
        (
            uapi::IOCTL_VMAP,
            "VMAP",
            &[EFAULT, EINVAL, ENOENT, ENOMEM, ENOSPC, EIO, EINTR],
        ),
        (uapi::IOCTL_VUNMAP, "VUNMAP", &[EFAULT, EINVAL, ENOENT]),
        (uapi::IOCTL_GET_INFO, "GET_INFO", &[EFAULT]),
        (
            uapi::IOCTL_USERPTR,
            "USERPTR",
            &[EFAULT, EINVAL, E2BIG, ENOMEM, ENOSPC],
        ),
    ]
};

/// The ioctl `cmd` names and the errnos it may fail with.
fn errnos_of(cmd: u64) -> (&'static str, &'static [i32]) {
    // The kernel takes the command as an `unsigned int`.
    let cmd = cmd as u32;
    ERRNOS
        .iter()
        .find(|(c, _, _)| *c == cmd)
        .map_or(("unknown", &[libc::ENOTTY]), |&(_, name, set)| (name, set))
}

/// The symbolic name of the errnos this file deals with.
fn errno_name(e: i32) -> &'static str {
    use libc::*;
    match e {
        0 => "ok",
        EFAULT => "EFAULT",
        EINVAL => "EINVAL",
        ENOENT => "ENOENT",
        E2BIG => "E2BIG",
        ENOMEM => "ENOMEM",
        ENOSPC => "ENOSPC",
        ENFILE => "ENFILE",
        EIO => "EIO",
        EAGAIN => "EAGAIN",
        EINTR => "EINTR",
        EBUSY => "EBUSY",
        ETIME => "ETIME",
        EHWPOISON => "EHWPOISON",
        ENOTTY => "ENOTTY",
        _ => "?",
    }
}

/// Calls per (ioctl name, errno); errno 0 is a success.
type Tally = BTreeMap<(&'static str, i32), u64>;

const SCRATCH: usize = 64 << 10;
/// Inaccessible space after the scratch buffer: a copy that runs past
/// its end faults instead of overwriting this program's memory.
const GUARD: usize = 2 << 30;
/// Objects above this are closed right after they are created, so that
/// a random bind cannot pin a gigabyte of the guest's memory.
const KEEP_MAX: u64 = 8 << 20;

/// A read-write buffer followed by `GUARD` bytes of `PROT_NONE`.
struct Scratch {
    base: *mut u8,
}

impl Scratch {
    fn new() -> Result<Self, String> {
        // SAFETY: a fresh anonymous reservation; nothing else uses it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SCRATCH + GUARD,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err("mmap scratch failed".into());
        }
        // SAFETY: the first `SCRATCH` bytes of our own reservation.
        if unsafe { libc::mprotect(base, SCRATCH, libc::PROT_READ | libc::PROT_WRITE) } != 0 {
            return Err("mprotect scratch failed".into());
        }
        Ok(Self { base: base.cast() })
    }

    fn addr(&self) -> u64 {
        self.base as u64
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the first `SCRATCH` bytes are mapped read-write and
        // only the kernel (through ioctls we make) writes them otherwise.
        unsafe { std::slice::from_raw_parts_mut(self.base, SCRATCH) }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: unmapping our own reservation.
        unsafe { libc::munmap(self.base.cast(), SCRATCH + GUARD) };
    }
}

struct Fuzzer {
    rng: fastrand::Rng,
    dev: Device,
    other: Device,
    live: Vec<u32>,
    stale: Vec<u32>,
    foreign: u32,
    scratch: Scratch,
}

impl Fuzzer {
    fn pointer(&mut self) -> u64 {
        let base = self.scratch.addr();
        match self.rng.u64(..10) {
            0 => 0,
            1 => 0xffff_8880_0000_0000,
            2 => 0x1000,
            3 => base + SCRATCH as u64 - 1 - self.rng.u64(..64),
            4 => u64::MAX - self.rng.u64(..4096),
            _ => base + self.rng.u64(..SCRATCH as u64 / 2),
        }
    }

    fn handle(&mut self) -> u32 {
        match self.rng.u64(..10) {
            0..=5 if !self.live.is_empty() => self.live[self.rng.usize(..self.live.len())],
            6 if !self.stale.is_empty() => self.stale[self.rng.usize(..self.stale.len())],
            7 => self.foreign,
            8 => 0,
            _ => self.rng.u32(..),
        }
    }

    fn word(&mut self) -> u64 {
        let r = self.rng.u64(..);
        let words = [
            0,
            1,
            2,
            4095,
            4096,
            4097,
            8192,
            1 << 20,
            uapi::MAX_OBJECT_SIZE,
            uapi::MAX_OBJECT_SIZE + 4096,
            u64::from(u32::MAX),
            u64::MAX,
            u64::MAX - 4095,
            i64::MAX as u64,
            r,
            r & 0xffff_f000,
            r & 0xff,
        ];
        words[self.rng.usize(..words.len())]
    }

    /// A structure for `cmd`: 8-byte fields, each a handle, a pointer or
    /// a word, with the 32-bit halves mixed so that handle fields get
    /// handles often.
    fn fill(&mut self, buf: &mut [u64; 8]) {
        for slot in buf.iter_mut() {
            *slot = match self.rng.u64(..4) {
                0 => u64::from(self.handle()) | (self.rng.u64(..3) << 32),
                1 => self.pointer(),
                _ => self.word(),
            };
        }
    }

    /// One call; `tally` counts the outcomes per ioctl (0: success).
    fn one(&mut self, tally: &mut Tally) -> Result<(), String> {
        let cmd: u64 = match self.rng.u64(..10) {
            0 => self.rng.u32(..) as u64,
            // Right type and number, wrong size or direction.
            1 => u64::from(
                CMDS[self.rng.usize(..CMDS.len())] ^ ((1 + self.rng.u64(..0x3fff) as u32) << 16),
            ),
            _ => u64::from(CMDS[self.rng.usize(..CMDS.len())]),
        };
        let mut arg = [0u64; 8];
        self.fill(&mut arg);
        // Exec object arrays point into the scratch buffer: make a few
        // entries name real handles.
        for i in 0..4 {
            let h = self.handle();
            let off = i * 16;
            let f = self.rng.u64(..3) as u32;
            let bytes = self.scratch.bytes();
            bytes[off..off + 4].copy_from_slice(&h.to_le_bytes());
            bytes[off + 4..off + 8].copy_from_slice(&f.to_le_bytes());
        }
        let argp: *mut libc::c_void = match self.rng.u64(..20) {
            0 => std::ptr::null_mut(),
            1 => 0xffff_8880_0000_0000u64 as *mut libc::c_void,
            _ => arg.as_mut_ptr().cast(),
        };
        let on_other = self.rng.u64(..100) < 5;
        let dev = if on_other { &self.other } else { &self.dev };
        // Every pointer the kernel may write through is invalid (it must
        // fault cleanly), inside `arg`, or inside the scratch buffer, past
        // whose end lies only the PROT_NONE guard.
        // SAFETY: as just said, no write can reach this program's data.
        let r = unsafe { dev.raw(cmd, argp) };
        let (name, allowed) = errnos_of(cmd);
        *tally.entry((name, r.err().unwrap_or(0))).or_default() += 1;
        match r {
            Ok(_) => {
                if argp != arg.as_mut_ptr().cast() {
                    return Ok(());
                }
                let cmd = cmd as u32;
                if on_other {
                    // Handles overlap between files: keep the other file's
                    // objects small too.
                    if cmd == uapi::IOCTL_CREATE && arg[0] > KEEP_MAX {
                        let _ = self.other.close((arg[1] & 0xffff_ffff) as u32);
                    }
                    if cmd == uapi::IOCTL_MMAP {
                        // SAFETY: the kernel just mapped this range for us.
                        unsafe { libc::munmap(arg[3] as *mut libc::c_void, arg[2] as usize) };
                    }
                    return Ok(());
                }
                if cmd == uapi::IOCTL_CREATE {
                    let h = (arg[1] & 0xffff_ffff) as u32;
                    if arg[0] > KEEP_MAX {
                        let _ = self.dev.close(h);
                        self.stale.push(h);
                        return Ok(());
                    }
                    self.live.push(h);
                    if self.live.len() > 32 {
                        let h = self.live.remove(0);
                        let _ = self.dev.close(h);
                        self.stale.push(h);
                    }
                } else if cmd == uapi::IOCTL_USERPTR {
                    self.live.push((arg[2] >> 32) as u32);
                } else if cmd == uapi::IOCTL_CLOSE {
                    let h = (arg[0] & 0xffff_ffff) as u32;
                    self.live.retain(|&x| x != h);
                    self.stale.push(h);
                } else if cmd == uapi::IOCTL_MMAP {
                    // SAFETY: the kernel just mapped this range for us.
                    unsafe { libc::munmap(arg[3] as *mut libc::c_void, arg[2] as usize) };
                }
                Ok(())
            }
            Err(e) if allowed.contains(&e) => Ok(()),
            Err(e) => {
                let argp = if argp.is_null() {
                    "NULL".to_string()
                } else if argp == arg.as_mut_ptr().cast() {
                    format!("{arg:x?}")
                } else {
                    format!("{argp:p} (a kernel address)")
                };
                let set: Vec<_> = allowed.iter().map(|&e| errno_name(e)).collect();
                Err(format!(
                    "ioctl {name} ({cmd:#x}) on the {} file -> errno {e} {}, not in its set {set:?}; argument {argp}",
                    if on_other { "other" } else { "fuzzing" },
                    errno_name(e),
                ))
            }
        }
    }
}

pub fn run(calls: u64, seed: u64) -> Result<String, String> {
    let probe = Device::open().map_err(|e| format!("open: errno {e}"))?;
    let before = crate::settled_info(&probe)?;
    // Long waits on hangs or long batches end at the next reset.
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let ctl = Control::open()?;
    let resetter = thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let _ = ctl.cmd("reset");
            thread::sleep(Duration::from_millis(20));
        }
    });
    let other = Device::open().map_err(|e| format!("open: errno {e}"))?;
    let foreign = other
        .create(4096)
        .map_err(|e| format!("create: errno {e}"))?;
    let mut f = Fuzzer {
        rng: fastrand::Rng::with_seed(seed),
        dev: Device::open().map_err(|e| format!("open: errno {e}"))?,
        other,
        live: Vec::new(),
        stale: Vec::new(),
        foreign,
        scratch: Scratch::new()?,
    };
    let mut tally = Tally::new();
    let mut failure = None;
    for _ in 0..calls {
        if let Err(e) = f.one(&mut tally) {
            failure = Some(e);
            break;
        }
    }
    drop(f);
    stop.store(true, Ordering::Relaxed);
    resetter
        .join()
        .map_err(|_| "resetter panicked".to_string())?;
    // Everything either fuzzing file made is gone once they are closed.
    let mut after = probe.info().map_err(|e| format!("info: errno {e}"))?;
    // Up to 60 s (3,000 x 20 ms): closed objects go as their batches
    // retire, which a loaded machine may take a while to get to.
    for _ in 0..3000 {
        if after.objects == before.objects && after.gtt_used == before.gtt_used {
            break;
        }
        thread::sleep(Duration::from_millis(20));
        after = probe.info().map_err(|e| format!("info: errno {e}"))?;
    }
    let calls_made: u64 = tally.values().sum();
    let succeeded: u64 = tally
        .iter()
        .filter(|((_, e), _)| *e == 0)
        .map(|(_, n)| n)
        .sum();
    metric("fuzz_calls", calls_made);
    metric("fuzz_seed", seed);
    metric("fuzz_succeeded", succeeded);
    let mut per_ioctl: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (&(name, e), n) in &tally {
        per_ioctl
            .entry(name)
            .or_default()
            .push(format!("{}={n}", errno_name(e)));
    }
    for (name, outcomes) in &per_ioctl {
        println!("  {name}: {}", outcomes.join(" "));
    }
    if let Some(e) = failure {
        return Err(e);
    }
    ensure!(
        after.objects == before.objects
            && after.gtt_used == before.gtt_used
            && after.cached_vmaps == before.cached_vmaps,
        "left behind: {before:?} -> {after:?}"
    );
    ensure!(
        succeeded > 0,
        "no call ever succeeded: the fuzzer is not reaching the driver"
    );
    let reached = per_ioctl.keys().filter(|&&n| n != "unknown").count();
    Ok(format!(
        "{calls_made} calls, {succeeded} succeeded, every errno in its ioctl's set \
         ({reached} of {} ioctls and {} unknown commands called)",
        ERRNOS.len(),
        tally
            .iter()
            .filter(|((n, _), _)| *n == "unknown")
            .map(|(_, c)| c)
            .sum::<u64>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `errors:` lines of the uAPI header: ioctl name -> errno names.
    fn header_table() -> BTreeMap<String, Vec<String>> {
        include_str!("../../../../../include/uapi/movgem.h")
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("* errors: "))
            .map(|l| {
                let mut words = l.split_whitespace().map(String::from);
                let name = words.next().unwrap_or_default();
                (name, words.collect())
            })
            .collect()
    }

    #[test]
    fn table_is_the_headers() {
        let header = header_table();
        let ours: BTreeMap<String, Vec<String>> = ERRNOS
            .iter()
            .map(|&(_, name, set)| {
                let names = set.iter().map(|&e| errno_name(e).to_string()).collect();
                (name.to_string(), names)
            })
            .collect();
        assert_eq!(
            ours, header,
            "fuzz.rs ERRNOS and include/uapi/movgem.h disagree"
        );
    }

    #[test]
    fn every_ioctl_has_a_set() {
        let defined = include_str!("../../../../../include/uapi/movgem.h")
            .lines()
            .filter(|l| l.starts_with("#define MOVGEM_IOCTL_") && l.contains("(MOVGEM_IOCTL_BASE,"))
            .count();
        assert_eq!(defined, ERRNOS.len());
        for &(cmd, name, set) in ERRNOS {
            assert_eq!(errnos_of(u64::from(cmd)).0, name);
            assert!(set.contains(&libc::EFAULT), "{name}: copies fault");
            assert!(
                !set.contains(&libc::ENOTTY),
                "{name}: ENOTTY is for unknown commands"
            );
            assert!(set.iter().all(|&e| errno_name(e) != "?"), "{name}");
        }
        assert_eq!(errnos_of(0x1234).1, &[libc::ENOTTY]);
        // A real command with another size is another command.
        assert_eq!(
            errnos_of(u64::from(uapi::IOCTL_CREATE ^ (1 << 16))).0,
            "unknown"
        );
    }
}
