// SPDX-License-Identifier: GPL-2.0

//! In-guest tests of movgem.ko.  Run as root inside the QEMU guest with
//! the module loaded; prints one `movgem-test: PASS|FAIL name` line per
//! test and the summary `N passed, N failed`.  Exit status is non-zero
//! if any test failed.
//!
//! Usage: movgem-tests [FILTER]   (runs the tests whose name contains FILTER)
//!        movgem-tests --list [FILTER]  (prints their names, one a line)

use movgem_guest::{ensure, env, report};

mod demo;
mod reclaim_tests;
mod uapi_tests;

use env::{compact, counter, fragment_for, Control, Counters, GpuAwake};
pub use movgem_guest::TestResult;

/// Pages of the object used by the migration tests: 8 MiB (a smaller
/// object is scattered faster, and any size shows the claims).
const OBJ_PAGES: usize = 2048;

fn debugfs_present() -> TestResult {
    let ctl = Control::open()?;
    let report = ctl.report()?;
    ensure!(
        report.contains("object none"),
        "unexpected report:\n{report}"
    );
    for name in ["hook_calls", "migrated", "refused_active", "released_pages"] {
        counter(name)?;
    }
    Ok(())
}

fn object_is_movable_and_registered() -> TestResult {
    let ctl = Control::open()?;
    ctl.cmd("create 64 7")?;
    let r = ctl.fields()?;
    let out = (|| {
        ensure!(
            r.get("movable") == Some(&1),
            "mapping gfp mask is not movable: {r:?}"
        );
        ensure!(
            r.get("hook_registered") == Some(&1),
            "shmem_dev_info not registered: {r:?}"
        );
        ensure!(
            r.get("pages_held") == Some(&0),
            "a new object holds no pages: {r:?}"
        );
        ctl.cmd("verify")?;
        Ok(())
    })();
    ctl.cmd("destroy")?;
    out
}

/// Creates a bound object scattered through fragmented memory.
fn scattered_bound_object(ctl: &Control, seed: u64) -> TestResult {
    let filler = fragment_for(OBJ_PAGES as u64 * 4096)?;
    ctl.cmd(&format!("create {OBJ_PAGES} {seed}"))?;
    ctl.cmd("bind")?;
    let r = ctl.fields()?;
    drop(filler);
    ensure!(
        r.get("pages_held") == Some(&(OBJ_PAGES as u64)),
        "bind did not pin pages: {r:?}"
    );
    Ok(())
}

/// Runs `body` with a fresh scattered, bound object; always destroys it.
fn with_object(seed: u64, body: impl FnOnce(&Control) -> TestResult) -> TestResult {
    let _awake = GpuAwake::new()?;
    let ctl = Control::open()?;
    let out = scattered_bound_object(&ctl, seed).and_then(|()| body(&ctl));
    let _ = ctl.cmd("destroy");
    out
}

fn compaction_moves_bound_idle_object() -> TestResult {
    with_object(11, |ctl| {
        let before = Counters::read()?;
        compact()?;
        let d = Counters::read()?.since(&before);
        ensure!(
            d.get("hook_calls") > 0,
            "compaction never reached the hook: {d}"
        );
        ensure!(
            d.get("migrated") > 0,
            "no folio of the object migrated: {d}"
        );
        ensure!(
            d.get("released_objects") == 1,
            "object not released exactly once: {d}"
        );
        ensure!(d.get("unbinds") == 1, "bound object not unbound: {d}");
        ctl.cmd("verify")
            .map_err(|e| format!("data corrupted after migration: {e}"))?;
        let r = ctl.fields()?;
        ensure!(
            r.get("verify_moved_pages").copied().unwrap_or(0) > 0,
            "no page changed frame: {r:?}"
        );
        ensure!(
            r.get("pages_held") == Some(&0),
            "released object still holds pages: {r:?}"
        );
        // Rebinding fetches the (moved) pages again.
        ctl.cmd("bind")?;
        let d = Counters::read()?.since(&before);
        ensure!(d.get("rebinds") == 1, "rebind not counted: {d}");
        ctl.cmd("verify")?;
        println!(
            "  migrated {} folios, {} pages changed frame",
            d.get("migrated"),
            r["verify_moved_pages"]
        );
        Ok(())
    })
}

fn hook_off_keeps_pinned_pages_in_place() -> TestResult {
    env::set_param("hook", "0")?;
    let out = with_object(12, |ctl| {
        let d = env::compact_counted()?;
        ensure!(d.get("hook_bypassed") > 0, "hook was not consulted: {d}");
        ensure!(
            d.get("migrated") == 0 && d.get("released_pages") == 0,
            "pages moved with the hook off: {d}"
        );
        ctl.cmd("verify")?;
        let r = ctl.fields()?;
        ensure!(
            r.get("verify_moved_pages") == Some(&0),
            "pinned pages changed frame: {r:?}"
        );
        ensure!(
            r.get("pages_held") == Some(&(OBJ_PAGES as u64)),
            "pages released: {r:?}"
        );
        Ok(())
    });
    env::set_param("hook", "1")?;
    out
}

/// With the object in a state the hook must refuse, compaction moves
/// none of its pages and the refusal is counted by reason.
fn refused_while(setup: &str, undo: &str, counter_name: &str, seed: u64) -> TestResult {
    with_object(seed, |ctl| {
        ctl.cmd(setup)?;
        let d = env::compact_counted()?;
        ctl.cmd(undo)?;
        ensure!(d.get(counter_name) > 0, "no {counter_name}: {d}");
        ensure!(
            d.get("migrated") == 0 && d.get("released_objects") == 0,
            "object released anyway: {d}"
        );
        ctl.cmd("verify")?;
        let r = ctl.fields()?;
        ensure!(
            r.get("verify_moved_pages") == Some(&0),
            "refused pages changed frame: {r:?}"
        );
        Ok(())
    })
}

fn active_object_is_refused() -> TestResult {
    refused_while("active 1", "active 0", "refused_active", 13)
}

fn extra_pin_is_refused() -> TestResult {
    refused_while("pin", "unpin", "refused_pinned", 14)
}

fn purgeable_object_is_refused() -> TestResult {
    refused_while("purgeable 1", "purgeable 0", "refused_purgeable", 15)
}

fn bad_commands_are_rejected() -> TestResult {
    let ctl = Control::open()?;
    let cases: [(&str, i32); 8] = [
        ("bogus", libc::EINVAL),
        ("create", libc::EINVAL),
        ("create 0 1", libc::EINVAL),
        ("create 1000000000 1", libc::EINVAL),
        ("create 18446744073709551616 1", libc::EINVAL),
        ("bind", libc::ENOENT),
        ("verify", libc::ENOENT),
        ("active 2", libc::EINVAL),
    ];
    for (cmd, want) in cases {
        let got = ctl.cmd_errno(cmd);
        ensure!(
            got == Some(want),
            "'{cmd}': expected errno {want}, got {got:?}"
        );
    }
    let long = "x".repeat(300);
    ensure!(
        ctl.cmd_errno(&long) == Some(libc::E2BIG),
        "overlong command not E2BIG"
    );
    ctl.cmd("create 4 1")?;
    let dup = ctl.cmd_errno("create 4 1");
    ctl.cmd("destroy")?;
    ensure!(
        dup == Some(libc::EEXIST),
        "second object: expected EEXIST, got {dup:?}"
    );
    ensure!(
        ctl.cmd_errno("unbind") == Some(libc::ENOENT),
        "unbind without object"
    );
    Ok(())
}

const TESTS: &[(&str, fn() -> TestResult)] = &[
    ("debugfs_present", debugfs_present),
    (
        "object_is_movable_and_registered",
        object_is_movable_and_registered,
    ),
    (
        "compaction_moves_bound_idle_object",
        compaction_moves_bound_idle_object,
    ),
    (
        "hook_off_keeps_pinned_pages_in_place",
        hook_off_keeps_pinned_pages_in_place,
    ),
    ("active_object_is_refused", active_object_is_refused),
    ("extra_pin_is_refused", extra_pin_is_refused),
    ("purgeable_object_is_refused", purgeable_object_is_refused),
    ("bad_commands_are_rejected", bad_commands_are_rejected),
    (
        "uapi_create_close_and_info",
        uapi_tests::create_close_and_info,
    ),
    ("uapi_bad_arguments", uapi_tests::bad_arguments),
    (
        "uapi_handles_are_per_file",
        uapi_tests::handles_are_per_file,
    ),
    ("uapi_pwrite_pread_mmap", uapi_tests::pwrite_pread_mmap),
    ("gpu_fill_busy_wait", uapi_tests::gpu_fill_busy_wait),
    (
        "gpu_bound_idle_object_migrates_data_intact",
        uapi_tests::bound_idle_object_migrates,
    ),
    (
        "gpu_move_pages_migrates_bound_object",
        uapi_tests::move_pages_migrates_bound_object,
    ),
    (
        "gpu_active_object_is_refused",
        uapi_tests::active_object_is_refused,
    ),
    ("gpu_hang_ends_by_timeout_and_reset", uapi_tests::hang_ends),
    (
        "gpu_pinned_vma_is_refused",
        uapi_tests::pinned_vma_is_refused,
    ),
    (
        "runtime_pm_suspends_and_hook_refuses",
        uapi_tests::suspended_device_refuses,
    ),
    (
        "vmap_pins_then_purge_releases_unpinned",
        uapi_tests::vmap_and_purge,
    ),
    ("madvise_dontneed_purges_and_refuses", uapi_tests::madvise),
    (
        "lock_contention_refused_within_budget",
        uapi_tests::lock_contention,
    ),
    (
        "shrinker_purges_then_releases",
        uapi_tests::shrinker_purges_then_releases,
    ),
    (
        "shrinker_makes_room_for_a_hog",
        uapi_tests::shrinker_makes_room_for_a_hog,
    ),
    ("drop_caches_bits", reclaim_tests::drop_caches_bits),
    (
        "meminfo_agrees_with_debugfs_on_purge",
        reclaim_tests::meminfo_agrees_on_purge,
    ),
    (
        "writeback_swapin_and_migration_keep_data",
        reclaim_tests::writeback_swapin_and_migration_keep_data,
    ),
    (
        "oom_notifier_saves_a_hog",
        reclaim_tests::oom_notifier_saves_a_hog,
    ),
    (
        "userptr_gpu_uses_user_memory",
        reclaim_tests::userptr_gpu_uses_user_memory,
    ),
    (
        "userptr_bad_arguments",
        reclaim_tests::userptr_bad_arguments,
    ),
    (
        "userptr_follows_invalidation",
        reclaim_tests::userptr_follows_invalidation,
    ),
    (
        "close_while_active_cleans_up",
        uapi_tests::close_while_active_cleans_up,
    ),
    (
        "unload_refused_while_open",
        uapi_tests::unload_refused_while_open,
    ),
];

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    if filter == "--demo" {
        if !report("demo", &demo::demo()) {
            std::process::exit(1);
        }
        return;
    }
    if filter == "--list" {
        // The names this run would report, for the runner's inventory.
        let only = std::env::args().nth(2).unwrap_or_default();
        for (name, _) in TESTS.iter().filter(|(n, _)| n.contains(only.as_str())) {
            println!("{name}");
        }
        return;
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in TESTS.iter().filter(|(n, _)| n.contains(filter.as_str())) {
        let start = std::time::Instant::now();
        let r = test();
        // Where the boot's time goes, for the host's log reader.
        println!("movgem-time: {name} {:.1}", start.elapsed().as_secs_f64());
        if report(name, &r) {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("movgem-tests: {passed} passed, {failed} failed");
    std::process::exit(i32::from(failed != 0));
}
