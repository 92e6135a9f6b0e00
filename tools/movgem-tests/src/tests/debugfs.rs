// SPDX-License-Identifier: GPL-2.0

//! The debugfs interface and its self-test object: the counters and the
//! control file, the object's registration, the hook's decisions on a
//! bound object driven from the control file (moved, bypassed, refused
//! while active, pinned or purgeable), and the commands it rejects.

use movgem_guest::env::{compact, counter, fragment_for, Control, Counters, GpuAwake, Param};
use movgem_guest::{ensure, TestResult};
use std::collections::BTreeMap;

use super::Test;

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
fn with_object<T>(
    seed: u64,
    body: impl FnOnce(&Control) -> Result<T, String>,
) -> Result<T, String> {
    let _awake = GpuAwake::new()?;
    let ctl = Control::open()?;
    let out = scattered_bound_object(&ctl, seed).and_then(|()| body(&ctl));
    let _ = ctl.cmd("destroy");
    out
}

/// Compacts memory with a fresh scattered, bound object (put in a state
/// by `setup`'s first command, and out of it by its second, around the
/// compaction) and runs `check` with the counters from before and the
/// change over the compaction, once compaction reached the object.
/// `compact_memory` runs its migration scanner up from a zone's start
/// and its free scanner down from the end until they meet: an object
/// that landed above the meeting point is never a migration source (seen
/// once, in the first test of a boot).  Then the object is made again,
/// elsewhere, up to three times.
fn after_compaction(
    seed: u64,
    setup: Option<(&str, &str)>,
    check: impl Fn(&Control, &Counters, &Counters) -> TestResult,
) -> TestResult {
    for attempt in 0..3 {
        let reached = with_object(seed + 100 * attempt, |ctl| {
            if let Some((on, _)) = setup {
                ctl.cmd(on)?;
            }
            let before = Counters::read()?;
            compact()?;
            let d = Counters::read()?.since(&before);
            if let Some((_, off)) = setup {
                ctl.cmd(off)?;
            }
            if d.get("hook_calls") == 0 {
                println!("  attempt {attempt}: compaction did not reach the object; again");
                return Ok(false);
            }
            check(ctl, &before, &d).map(|()| true)
        })?;
        if reached {
            return Ok(());
        }
    }
    Err("compaction never reached the hook, in three placements of the object".to_string())
}

fn compaction_moves_bound_idle_object_in_place() -> TestResult {
    after_compaction(11, None, |ctl, before, _| {
        ctl.cmd("gtt_check")?;
        let d = Counters::read()?.since(before);
        ensure!(
            d.get("migrated_in_place") > 0 && d.get("migrated") == d.get("migrated_in_place"),
            "no folio of the object moved in place: {d}"
        );
        ensure!(
            d.get("released_objects") == 0 && d.get("unbinds") == 0,
            "the object was released to move a folio: {d}"
        );
        ensure!(
            d.get("gtt_entries_rewritten") == d.get("migrated_in_place"),
            "not one GTT entry rewritten per folio moved: {d}"
        );
        ensure!(
            d.get("gtt_checked") > 0 && d.get("gtt_mismatches") == 0,
            "GTT entries disagree with the page cache: {d}"
        );
        let r = verify_moved(ctl)?;
        ensure!(
            r.get("pages_held") == Some(&(OBJ_PAGES as u64)) && r.get("bind_count") == Some(&1),
            "the object let go of its pages or binding: {r:?}"
        );
        println!(
            "  moved {} folios in place, {} pages changed frame, still bound",
            d.get("migrated_in_place"),
            r["verify_moved_pages"]
        );
        Ok(())
    })
}

/// Checks the object's data after a migration (the `verify` command) and
/// that at least one of its pages changed frame; returns the report.
fn verify_moved(ctl: &Control) -> Result<BTreeMap<String, u64>, String> {
    ctl.cmd("verify")
        .map_err(|e| format!("data corrupted after migration: {e}"))?;
    let r = ctl.fields()?;
    ensure!(
        r.get("verify_moved_pages").copied().unwrap_or(0) > 0,
        "no page changed frame: {r:?}"
    );
    Ok(r)
}

fn compaction_releases_bound_idle_object() -> TestResult {
    let _mode = Param::set("hook", "release")?;
    after_compaction(11, None, |ctl, before, _| {
        let d = Counters::read()?.since(before);
        ensure!(
            d.get("migrated") > 0 && d.get("migrated_in_place") == 0,
            "no folio of the object migrated by release: {d}"
        );
        ensure!(
            d.get("released_objects") == 1,
            "object not released exactly once: {d}"
        );
        ensure!(d.get("unbinds") == 1, "bound object not unbound: {d}");
        let r = verify_moved(ctl)?;
        ensure!(
            r.get("pages_held") == Some(&0),
            "released object still holds pages: {r:?}"
        );
        // Rebinding fetches the (moved) pages again.
        ctl.cmd("bind")?;
        let d = Counters::read()?.since(before);
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
    let _mode = Param::set("hook", "off")?;
    after_compaction(12, None, |ctl, _, d| {
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
    })
}

/// With the object in a state the hook must refuse, compaction moves
/// none of its pages and the refusal is counted by reason.
fn refused_while(setup: &str, undo: &str, counter_name: &str, seed: u64) -> TestResult {
    after_compaction(seed, Some((setup, undo)), |ctl, _, d| {
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

fn purgeable_object_is_refused_by_release() -> TestResult {
    let _mode = Param::set("hook", "release")?;
    refused_while("purgeable 1", "purgeable 0", "refused_purgeable", 15)
}

/// In place truncates nothing, so a DONTNEED object moves like any other.
fn purgeable_object_moves_in_place() -> TestResult {
    after_compaction(16, Some(("purgeable 1", "purgeable 0")), |ctl, _, d| {
        ensure!(
            d.get("migrated_in_place") > 0 && d.get("refused_purgeable") == 0,
            "DONTNEED object not moved in place: {d}"
        );
        ensure!(
            d.get("purged_objects") == 0 && d.get("released_objects") == 0,
            "object purged or released: {d}"
        );
        ctl.cmd("verify")
            .map_err(|e| format!("data corrupted after migration: {e}"))
    })
}

fn bad_commands_are_rejected() -> TestResult {
    let ctl = Control::open()?;
    let cases: [(&str, i32); 13] = [
        ("bogus", libc::EINVAL),
        ("vmap_overflow 2", libc::EINVAL),
        ("vmap_overflow", libc::EINVAL),
        ("create", libc::EINVAL),
        ("create 0 1", libc::EINVAL),
        ("create 1000000000 1", libc::EINVAL),
        ("create 18446744073709551616 1", libc::EINVAL),
        ("bind", libc::ENOENT),
        ("verify", libc::ENOENT),
        ("active 2", libc::EINVAL),
        ("runtime_pm 2", libc::EINVAL),
        ("writeback", libc::EINVAL),
        ("writeback 1", libc::ENOENT),
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

/// KUnit `movgem_trylock_budget`'s check (the timed trylock gives up
/// after its budget, not much after), run again through debugfs `control`
/// (`trylock_budget`, the same Rust function): its negative control, a
/// wait that overruns its budget by four budgets
/// (`debug_lock_wait_overrun_ms`), must fail it; then, the wait as it
/// is, it must pass, as KUnit's run at load did.
fn lock_budget_check_fails_on_overrun() -> TestResult {
    let ctl = Control::open()?;
    // The check's budget, 20 ms (rust/kunit.rs), four times over: past
    // its margin of ten ticks (40 ms at HZ=250) on every attempt.
    let r = {
        let _overrun = Param::set("debug_lock_wait_overrun_ms", "80")?;
        ctl.cmd_errno("trylock_budget")
    };
    let f = ctl.fields()?;
    let (attempts, longest) = (
        f.get("trylock_budget_attempts").copied().unwrap_or(0),
        f.get("trylock_budget_longest_ns").copied().unwrap_or(0),
    );
    ensure!(
        r == Some(libc::EIO) && longest >= 100_000_000,
        "control (wait overrun by 80 ms): trylock_budget gave {r:?} after {attempts} attempts, \
         longest {longest} ns: this test could not fail"
    );
    println!(
        "  control, wait overrun by 80 ms: the check failed after {attempts} attempts \
         (longest {} ms)",
        longest / 1_000_000
    );
    ctl.cmd("trylock_budget")?;
    let f = ctl.fields()?;
    println!(
        "  the wait as it is: passed after {} attempts (longest {:.1} ms)",
        f.get("trylock_budget_attempts").copied().unwrap_or(0),
        f.get("trylock_budget_longest_ns").copied().unwrap_or(0) as f64 / 1e6
    );
    Ok(())
}

pub(super) const TESTS: &[Test] = &[
    ("debugfs_present", debugfs_present),
    (
        "object_is_movable_and_registered",
        object_is_movable_and_registered,
    ),
    (
        "compaction_moves_bound_idle_object_in_place",
        compaction_moves_bound_idle_object_in_place,
    ),
    (
        "compaction_releases_bound_idle_object",
        compaction_releases_bound_idle_object,
    ),
    (
        "hook_off_keeps_pinned_pages_in_place",
        hook_off_keeps_pinned_pages_in_place,
    ),
    ("active_object_is_refused", active_object_is_refused),
    ("extra_pin_is_refused", extra_pin_is_refused),
    (
        "purgeable_object_is_refused_by_release",
        purgeable_object_is_refused_by_release,
    ),
    (
        "purgeable_object_moves_in_place",
        purgeable_object_moves_in_place,
    ),
    ("bad_commands_are_rejected", bad_commands_are_rejected),
    (
        "lock_budget_check_fails_on_overrun",
        lock_budget_check_fails_on_overrun,
    ),
];
