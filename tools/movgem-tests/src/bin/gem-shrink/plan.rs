// SPDX-License-Identifier: GPL-2.0

//! The pure part of gem-shrink: the subtest list, the sizing formula,
//! who runs how many workers, the `--run-subtest` wildcard, and what a
//! subtest must show to pass (object pressure, and with
//! `userptr_keep_pages` userptr pages kept and released).  No
//! system calls here, so `cargo test` checks all of it on the host.

/// The ten ways a worker makes an object own its memory.
pub const FUNCS: [&str; 10] = [
    "get-pages",
    "get-pages-dirty",
    "pwrite",
    "pread",
    "mmap-gtt",
    "mmap-cpu",
    "execbuf1",
    "execbufN",
    "execbufX",
    "hang",
];

/// The background load a subtest runs next to its function workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only function workers.
    Plain,
    /// One worker, one pass per iteration, one second.
    SanityCheck,
    /// Plus workers wrapping their own memory in USERPTR objects.
    Userptr,
    /// Plus workers of both userptr kinds (read-only and dirtied).
    UserptrDirty,
    /// Plus userptr workers and workers leaking populated anonymous memory.
    Oom,
}

/// The modes with their subtest name suffixes, in igt's order.
pub const MODES: [(&str, Mode); 5] = [
    ("-sanitycheck", Mode::SanityCheck),
    ("", Mode::Plain),
    ("-userptr", Mode::Userptr),
    ("-userptr-dirty", Mode::UserptrDirty),
    ("-oom", Mode::Oom),
];

/// What a passing subtest must show it made the system do, with the
/// shrinker on: a green subtest that never needed the driver to give
/// memory back proves nothing about the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressure {
    /// Nothing: the sanity checks (one worker, a second), and pread,
    /// whose workers read never-written objects: shmem reads a hole as
    /// zeroes without allocating, so they need no memory at all (i915's
    /// pread pins the object's pages first, and so does press memory).
    None,
    /// The driver's shrinks (reclaim, the OOM notifier, its own
    /// allocations) gave back, of the function workers' objects (the
    /// only shmem objects there are), at least [`pressure_floor_pages`]:
    /// a share of what those workers ask for beyond RAM.  Purged, or
    /// released: a released object's pages go to swap, or, once its
    /// worker marks it DONTNEED, are truncated at once.  (It asked for
    /// one page freed by any shrink before, userptr pages included.)
    DriverGaveBack,
    /// The driver purged, at MADVISE(DONTNEED), at least one object per
    /// pass of the function's workers.  PWRITE copies through the page
    /// cache without attaching pages to the object, and MADVISE(DONTNEED)
    /// of an object that holds no pages truncates it at once (as i915's
    /// does): that is how the driver gives this memory back, and it is
    /// the subtest's own.  (It asked for swap-out before: any worker's,
    /// and only when the passes happened to overlap enough to fill the
    /// guest, which an idle host's faster passes did not.)
    PurgedEachPass,
}

/// What function `f` in `mode` must show.
pub fn pressure(f: usize, mode: Mode) -> Pressure {
    match (FUNCS[f], mode) {
        (_, Mode::SanityCheck) | ("pread", _) => Pressure::None,
        ("pwrite", _) => Pressure::PurgedEachPass,
        _ => Pressure::DriverGaveBack,
    }
}

/// Object pages the function workers of `groups` (function `f`) ask the
/// driver for at once: each worker holds the DONTNEED objects of its
/// iteration, `passes` passes of `alloc_pages` pages, until the
/// iteration ends and it closes them, and every worker's first iteration
/// runs to its end whatever the duration.
pub fn func_demand_pages(groups: &[Group], f: usize, alloc_pages: u64) -> u64 {
    groups
        .iter()
        .filter(|g| g.kind == Kind::Func(f))
        .map(|g| g.workers * g.passes * alloc_pages)
        .sum()
}

/// [`Pressure::DriverGaveBack`]'s floor: a quarter of what the function
/// workers ask for at once ([`func_demand_pages`]) beyond RAM
/// (`ram_pages`).  Their iterations overlap rather than coincide: a
/// worker that ends its iteration first gives its objects back by
/// closing them, without the driver, and the shrinker releases (for
/// swap) as well as purges.  A quarter leaves room for that: in the
/// three gem-shrink boots that set it (issue 30) no subtest gave back
/// less than 2.8 times its floor (`get-pages` and `get-pages-dirty` the
/// least), while a driver that gives back nothing, or one object, or a
/// page here and there, stays far below it.  Never 0 where the demand
/// exceeds RAM by a page; 0, nothing asked, where it does not (no
/// subtest of the make check or soak sizing).
pub fn pressure_floor_pages(demand_pages: u64, ram_pages: u64) -> u64 {
    demand_pages.saturating_sub(ram_pages).div_ceil(4)
}

/// With pressure `p`, what the subtest failed to show: `gave_back`
/// (debugfs `shrink_shmem_pages`) against `floor` for
/// [`Pressure::DriverGaveBack`]; `purged_objects` (debugfs
/// `purged_objects`) against `func_passes` for
/// [`Pressure::PurgedEachPass`].  `None`: nothing missing.
pub fn pressure_unmet(
    p: Pressure,
    floor: u64,
    gave_back: u64,
    func_passes: u64,
    purged_objects: u64,
) -> Option<String> {
    match p {
        Pressure::None => None,
        Pressure::DriverGaveBack if floor == 0 || gave_back < floor => Some(format!(
            "the driver gave back {gave_back} pages of the function's objects, below the floor \
             of {floor} (a quarter of what its workers ask for beyond RAM)"
        )),
        Pressure::PurgedEachPass if func_passes == 0 || purged_objects < func_passes => {
            Some(format!(
                "the driver purged {purged_objects} objects at DONTNEED for {func_passes} passes"
            ))
        }
        _ => None,
    }
}

/// Reads a bool module parameter as sysfs prints it (`Y`/`N`, or
/// `1`/`0` for an int-backed one); `None` for anything else.
pub fn param_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "Y" | "y" | "1" => Some(true),
        "N" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// Whether the subtests of `mode` run userptr workers whose pages a
/// driver with `userptr_keep_pages` must keep and, under the pressure
/// the subtest makes, give back: `-userptr`, `-userptr-dirty` and
/// `-oom` (not the sanity checks, whose one worker is a function one).
pub fn keeps_userptr_pages(mode: Mode) -> bool {
    matches!(mode, Mode::Userptr | Mode::UserptrDirty | Mode::Oom)
}

/// With the shrinker on: what a subtest of `mode` failed to show of the
/// userptr pages the driver keeps (`kept`: debugfs `userptr_kept_pages`
/// over the subtest), when the module keeps them (`keep_pages`, its
/// `userptr_keep_pages` parameter).  Without that parameter userptr
/// objects hold no pages, and nothing is asked.  Whether the shrinker
/// gives kept pages back is asked of the whole run
/// ([`userptr_released_unmet`]): a single subtest's shrinker may find
/// enough purgeable objects before it reaches them, as i915's purges
/// first.  Empty: nothing missing.
pub fn userptr_unmet(mode: Mode, keep_pages: bool, kept: u64) -> Vec<&'static str> {
    let mut unmet = Vec::new();
    if keep_pages && keeps_userptr_pages(mode) && kept == 0 {
        unmet.push("the driver kept no userptr pages");
    }
    unmet
}

/// The whole run's userptr verdict, with the shrinker on and the module
/// keeping userptr pages: the shrinker and the OOM notifier must have
/// released some (`released`, summed over the subtests that ran with
/// userptr workers, `userptr_subtests`) -- what igt's userptr workers are
/// there for.  `None`: nothing missing (or nothing asked).
pub fn userptr_released_unmet(
    keep_pages: bool,
    userptr_subtests: usize,
    released: u64,
) -> Option<String> {
    (keep_pages && userptr_subtests > 0 && released == 0).then(|| {
        format!(
            "the shrinker and the OOM notifier released no kept userptr pages \
             in any of the {userptr_subtests} userptr subtests"
        )
    })
}

/// What one subtest runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subtest {
    Reclaim,
    Func(usize, Mode),
}

/// Every subtest with its name: `reclaim`, then each function in each mode.
pub fn subtests() -> Vec<(String, Subtest)> {
    let mut all = vec![("reclaim".to_string(), Subtest::Reclaim)];
    for (f, name) in FUNCS.iter().enumerate() {
        for (suffix, mode) in MODES {
            all.push((format!("{name}{suffix}"), Subtest::Func(f, mode)));
        }
    }
    all
}

/// How much memory each worker pass takes and how many workers there are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizing {
    pub mem_mib: u64,
    pub ncpus: u64,
    /// The size of one pass's object (or mapping), in MiB.
    pub alloc_mib: u64,
    /// `num_processes`: workers of a plain subtest, and passes per iteration.
    pub num_processes: u64,
}

impl Sizing {
    /// As current igt: a pass is an eighth of one CPU's share of RAM, and
    /// there is one process per CPU plus as many as it takes for one
    /// pass each to fill RAM.  Every worker makes `num_processes` passes
    /// per iteration, so unpurged objects add up to many times RAM.
    pub fn new(mem_mib: u64, ncpus: u64) -> Self {
        let ncpus = ncpus.max(1);
        let alloc_mib = (mem_mib.div_ceil(ncpus) / 8).max(1);
        Self {
            mem_mib,
            ncpus,
            alloc_mib,
            num_processes: ncpus + mem_mib / alloc_mib,
        }
    }

    pub fn alloc_bytes(&self) -> u64 {
        self.alloc_mib << 20
    }
}

/// The kind of a background or function worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Populated private anonymous memory, held for the iteration (with
    /// `--leak-forever`, as igt, for the worker's whole life).
    Leak,
    /// USERPTR objects over shared anonymous memory, SET_DOMAIN read-only.
    Userptr,
    /// The same, SET_DOMAIN with the GTT as write domain.
    UserptrDirty,
    /// The subtest's function (index into [`FUNCS`]).
    Func(usize),
}

/// One group of identical workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    pub kind: Kind,
    pub workers: u64,
    /// Passes per iteration.
    pub passes: u64,
}

/// The worker groups of function `f` in `mode` with `n` = num_processes,
/// following igt's `run_test()`: each userptr kind takes half of what is
/// left (rounded up) as its worker count, and the groups forked after it
/// use that half as their count and pass count.  `max_passes`, if given,
/// caps every group's passes per iteration, and `max_background` those of
/// the background groups (leak, userptr) further (igt has neither cap).
pub fn groups(
    f: usize,
    mode: Mode,
    n: u64,
    max_passes: Option<u64>,
    max_background: Option<u64>,
) -> Vec<Group> {
    let mut out = igt_groups(f, mode, n);
    for g in &mut out {
        if let Some(cap) = max_passes {
            g.passes = g.passes.min(cap.max(1));
        }
        if let (Some(cap), false) = (max_background, matches!(g.kind, Kind::Func(_))) {
            g.passes = g.passes.min(cap.max(1));
        }
    }
    out
}

fn igt_groups(f: usize, mode: Mode, n: u64) -> Vec<Group> {
    let mut n = if mode == Mode::SanityCheck { 1 } else { n };
    let mut out = Vec::new();
    if mode == Mode::Oom {
        out.push(Group {
            kind: Kind::Leak,
            workers: n,
            passes: n,
        });
    }
    if matches!(mode, Mode::Userptr | Mode::UserptrDirty | Mode::Oom) {
        out.push(Group {
            kind: Kind::Userptr,
            workers: n.div_ceil(2),
            passes: n,
        });
        n = n.div_ceil(2);
    }
    if mode == Mode::UserptrDirty {
        out.push(Group {
            kind: Kind::UserptrDirty,
            workers: n.div_ceil(2),
            passes: n,
        });
        n = n.div_ceil(2);
    }
    out.push(Group {
        kind: Kind::Func(f),
        workers: n,
        passes: n,
    });
    out
}

/// Shell-style match where `*` stands for any run of characters (also
/// none); every other character matches itself.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    // Greedy with backtracking to the last star: linear enough for names.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == s[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// The per-subtest timeout in seconds: sanitycheck always 1 s, reclaim
/// at most 2 s (igt's), everything else `duration`.
pub fn timeout_s(t: Subtest, duration: f64) -> f64 {
    match t {
        Subtest::Reclaim => duration.min(2.0),
        Subtest::Func(_, Mode::SanityCheck) => 1.0,
        Subtest::Func(..) => duration,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_one_unique_subtests() {
        let all = subtests();
        assert_eq!(all.len(), 51);
        let mut names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 51);
        assert_eq!(all[0].0, "reclaim");
        assert_eq!(all[1].0, "get-pages-sanitycheck");
        assert_eq!(all[2].0, "get-pages");
        for want in [
            "get-pages",
            "hang-oom",
            "mmap-gtt-userptr-dirty",
            "execbufN-sanitycheck",
        ] {
            assert!(names.contains(&want), "{want} missing");
        }
    }

    #[test]
    fn sizing_follows_igt() {
        // 1 GiB guest, 2 CPUs: ceil(977 / 2) = 489, / 8 = 61 MiB.
        let s = Sizing::new(977, 2);
        assert_eq!(s.alloc_mib, 61);
        assert_eq!(s.num_processes, 2 + 977 / 61);
        // 16 GiB, 8 CPUs.
        let s = Sizing::new(16_384, 8);
        assert_eq!(s.alloc_mib, 256);
        assert_eq!(s.num_processes, 8 + 64);
        assert_eq!(s.alloc_bytes(), 256 << 20);
        // Never a zero-sized pass.
        assert_eq!(Sizing::new(5, 4).alloc_mib, 1);
        assert_eq!(Sizing::new(100, 0).ncpus, 1);
    }

    #[test]
    fn worker_groups() {
        let g = groups(3, Mode::Plain, 18, None, None);
        assert_eq!(
            g,
            [Group {
                kind: Kind::Func(3),
                workers: 18,
                passes: 18
            }]
        );
        let g = groups(0, Mode::SanityCheck, 18, Some(2), None);
        assert_eq!(
            g,
            [Group {
                kind: Kind::Func(0),
                workers: 1,
                passes: 1
            }]
        );
        let g = groups(1, Mode::Userptr, 17, None, None);
        assert_eq!(
            g[0],
            Group {
                kind: Kind::Userptr,
                workers: 9,
                passes: 17
            }
        );
        assert_eq!(
            g[1],
            Group {
                kind: Kind::Func(1),
                workers: 9,
                passes: 9
            }
        );
        let g = groups(2, Mode::UserptrDirty, 18, None, None);
        assert_eq!(
            g[0],
            Group {
                kind: Kind::Userptr,
                workers: 9,
                passes: 18
            }
        );
        assert_eq!(
            g[1],
            Group {
                kind: Kind::UserptrDirty,
                workers: 5,
                passes: 9
            }
        );
        assert_eq!(
            g[2],
            Group {
                kind: Kind::Func(2),
                workers: 5,
                passes: 5
            }
        );
        let g = groups(9, Mode::Oom, 18, None, None);
        assert_eq!(
            g[0],
            Group {
                kind: Kind::Leak,
                workers: 18,
                passes: 18
            }
        );
        assert_eq!(
            g[1],
            Group {
                kind: Kind::Userptr,
                workers: 9,
                passes: 18
            }
        );
        assert_eq!(
            g[2],
            Group {
                kind: Kind::Func(9),
                workers: 9,
                passes: 9
            }
        );
    }

    #[test]
    fn background_cap_spares_the_function_workers() {
        let g = groups(0, Mode::Oom, 17, Some(4), Some(1));
        let passes: Vec<(Kind, u64)> = g.iter().map(|g| (g.kind, g.passes)).collect();
        assert_eq!(
            passes,
            vec![(Kind::Leak, 1), (Kind::Userptr, 1), (Kind::Func(0), 4)]
        );
        // Without it, every group gets the common cap.
        let g = groups(0, Mode::Oom, 17, Some(4), None);
        assert!(g.iter().all(|g| g.passes == 4));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*-oom", "hang-oom"));
        assert!(wildcard("*-oom", "-oom"));
        assert!(!wildcard("*-oom", "hang-oom-x"));
        assert!(wildcard("*", ""));
        assert!(wildcard("reclaim", "reclaim"));
        assert!(!wildcard("reclaim", "reclaimx"));
        assert!(wildcard("get-*-dirty", "get-pages-dirty"));
        assert!(wildcard("*pages*", "get-pages-userptr"));
        assert!(wildcard("a*b*c", "aXbYbZc"));
        assert!(!wildcard("a*b*c", "aXbYbZ"));
        assert!(wildcard("**x", "x"));
        let oom: Vec<String> = subtests()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| wildcard("*-oom", n))
            .collect();
        assert_eq!(oom.len(), 10);
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout_s(Subtest::Reclaim, 20.0), 2.0);
        assert_eq!(timeout_s(Subtest::Reclaim, 0.5), 0.5);
        assert_eq!(timeout_s(Subtest::Func(0, Mode::SanityCheck), 20.0), 1.0);
        assert_eq!(timeout_s(Subtest::Func(0, Mode::Oom), 3.0), 3.0);
    }

    #[test]
    fn module_bool_parameters() {
        for on in ["Y", "y", "1", "Y\n", " 1 "] {
            assert_eq!(param_bool(on), Some(true), "{on:?}");
        }
        for off in ["N", "n", "0", "N\n"] {
            assert_eq!(param_bool(off), Some(false), "{off:?}");
        }
        for bad in ["", "yes", "2", "-1", "YN"] {
            assert_eq!(param_bool(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn kept_userptr_pages_are_asked_of_the_userptr_and_oom_modes_only() {
        let asked: Vec<Mode> = MODES
            .iter()
            .map(|&(_, m)| m)
            .filter(|&m| keeps_userptr_pages(m))
            .collect();
        assert_eq!(asked, [Mode::Userptr, Mode::UserptrDirty, Mode::Oom]);
        for (_, mode) in MODES {
            // Parameter off (or missing): today's rule, nothing more.
            assert!(userptr_unmet(mode, false, 0).is_empty(), "{mode:?}");
            // Pages kept: nothing missing.
            assert!(userptr_unmet(mode, true, 5).is_empty(), "{mode:?}");
        }
        for mode in [Mode::Plain, Mode::SanityCheck] {
            assert!(userptr_unmet(mode, true, 0).is_empty(), "{mode:?}");
        }
        for mode in asked {
            assert_eq!(
                userptr_unmet(mode, true, 0),
                ["the driver kept no userptr pages"]
            );
        }
    }

    #[test]
    fn the_run_must_release_kept_userptr_pages() {
        assert_eq!(userptr_released_unmet(true, 30, 5632), None);
        assert!(userptr_released_unmet(true, 30, 0).is_some());
        // Nothing asked without the parameter or without userptr subtests.
        assert_eq!(userptr_released_unmet(false, 30, 0), None);
        assert_eq!(userptr_released_unmet(true, 0, 0), None);
    }

    /// make check's sizing: a 384 MiB guest (MemTotal about 360 MiB),
    /// 2 CPUs, 4 passes, 1 background pass.
    fn make_check_floors() -> Vec<(String, u64)> {
        let s = Sizing::new(360, 2);
        let pages = s.alloc_bytes() / 4096;
        subtests()
            .into_iter()
            .filter_map(|(name, t)| {
                let Subtest::Func(f, mode) = t else {
                    return None;
                };
                (pressure(f, mode) == Pressure::DriverGaveBack).then(|| {
                    let g = groups(f, mode, s.num_processes, Some(4), Some(1));
                    let demand = func_demand_pages(&g, f, pages);
                    (name, pressure_floor_pages(demand, (s.mem_mib << 20) / 4096))
                })
            })
            .collect()
    }

    #[test]
    fn the_floor_is_a_quarter_of_the_demand_beyond_ram() {
        let g = groups(0, Mode::Plain, 17, Some(4), Some(1));
        // 17 workers x 4 passes x 100 pages.
        assert_eq!(func_demand_pages(&g, 0, 100), 6800);
        // Background groups ask nothing of the function's objects.
        let g = groups(0, Mode::Oom, 17, Some(4), Some(1));
        assert_eq!(func_demand_pages(&g, 0, 100), 9 * 4 * 100);
        assert_eq!(pressure_floor_pages(6800, 1800), 1250);
        assert_eq!(pressure_floor_pages(1801, 1800), 1);
        assert_eq!(pressure_floor_pages(1800, 1800), 0);
        // Every subtest of make check's sizing asks for a floor, and the
        // fewest function workers (userptr-dirty's five) still make one
        // of 20 MiB and more.
        let floors = make_check_floors();
        assert_eq!(floors.len(), 32);
        for (name, floor) in &floors {
            assert!(*floor >= (20 << 20) / 4096, "{name}: {floor}");
        }
    }

    #[test]
    fn pressure_rules_fail_what_a_driver_without_shrinker_gives() {
        // Nothing purged (shrinker=0), or one page (the old rule's
        // pass), fails the floor; the floor itself passes.
        let p = Pressure::DriverGaveBack;
        assert!(pressure_unmet(p, 25_000, 0, 68, 0).is_some());
        assert!(pressure_unmet(p, 25_000, 1, 68, 1).is_some());
        assert!(pressure_unmet(p, 25_000, 24_999, 68, 9).is_some());
        assert_eq!(pressure_unmet(p, 25_000, 25_000, 68, 9), None);
        // No floor: nothing could show pressure, which fails.
        assert!(pressure_unmet(p, 0, 100, 68, 9).is_some());
        let p = Pressure::PurgedEachPass;
        assert!(pressure_unmet(p, 0, 0, 68, 67).is_some());
        assert!(pressure_unmet(p, 0, 0, 0, 0).is_some());
        assert_eq!(pressure_unmet(p, 0, 0, 68, 68), None);
        assert_eq!(pressure_unmet(Pressure::None, 0, 0, 0, 0), None);
    }

    #[test]
    fn every_subtest_but_the_sanity_checks_asks_for_pressure() {
        let mut by = [0usize; 3];
        for (name, t) in subtests() {
            let Subtest::Func(f, mode) = t else { continue };
            let p = pressure(f, mode);
            by[p as usize] += 1;
            assert_eq!(
                p == Pressure::None,
                name.ends_with("-sanitycheck") || name.starts_with("pread"),
                "{name}"
            );
        }
        // 10 sanity checks and pread's other 4; pwrite's 4; the rest.
        assert_eq!(by, [14, 32, 4]);
    }
}
