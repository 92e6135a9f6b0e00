// SPDX-License-Identifier: GPL-2.0

//! The trace events (`rust/shims/movgem_trace.h`) against the counters:
//! with `events/movgem` enabled, in-place moves, a `hook=off` attempt, a
//! refusal (a pinned object), compaction over bound idle objects,
//! requests, a shrinker scan (drop_caches) with its purge and a runtime
//! suspend must leave exactly as many events of each kind as the
//! counters say happened.  The negative control runs the same work with the events
//! disabled: the counters move and the trace must stay empty, so a
//! comparison that always agreed would be caught.

use std::collections::BTreeMap;
use std::fs;

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, Counters, GpuAwake, Param};
use movgem_guest::{ensure, TestResult};

use super::common::ok;
use super::inplace::{Mapped, PICK};
use super::Test;

const TRACEFS: &str = "/sys/kernel/tracing";

pub(super) fn tracefs_write(file: &str, what: &str) -> TestResult {
    let p = format!("{TRACEFS}/{file}");
    fs::write(&p, what).map_err(|e| format!("{p}: {e}"))
}

/// One event of the trace: its name and its `key=value` fields.
pub(super) type Event = (String, BTreeMap<String, String>);

/// The movgem events of the trace buffer.
pub(super) fn read_events() -> Result<Vec<Event>, String> {
    let p = format!("{TRACEFS}/trace");
    let text = fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        // "  task-pid  [cpu] flags  ts: movgem_xxx: k=v k=v"
        let Some(at) = line.find(": movgem_") else {
            continue;
        };
        let rest = &line[at + 2..];
        let (name, args) = rest.split_once(": ").unwrap_or((rest, ""));
        let fields = args
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.push((name.to_string(), fields));
    }
    Ok(out)
}

/// Whether the ring buffer dropped events on any CPU.
fn overruns() -> Result<u64, String> {
    let mut total = 0;
    for cpu in 0.. {
        let p = format!("{TRACEFS}/per_cpu/cpu{cpu}/stats");
        let Ok(text) = fs::read_to_string(&p) else {
            break;
        };
        total += text
            .lines()
            .filter_map(|l| l.strip_prefix("overrun: "))
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(total)
}

/// The work whose events are counted: returns the counters' movement.
fn workload(dev: &Device, value: u32) -> Result<Counters, String> {
    let before = Counters::read()?;
    {
        let _awake = GpuAwake::new()?;
        let a = Mapped::new(dev, value)?;
        let b = Mapped::new(dev, value + 1)?;
        // In place, then with hook=off (bypassed), then pinned (refused).
        ensure!(a.move_page(PICK)?, "page {PICK} did not move in place");
        {
            let _off = Param::set("hook", "off")?;
            let _ = b.move_page(PICK)?;
        }
        ok(dev.pin(b.h), "pin")?;
        let _ = b.move_page(PICK + 1)?;
        ok(dev.unpin(b.h), "unpin")?;
        env::compact()?;
        a.gpu(uapi::OP_CHECK, value)?;
        // A DONTNEED object for the shrinker, which drop_caches scans.
        let c = ok(dev.create(1 << 20), "create")?;
        let purged = ok(
            dev.execbuf(&[(c, true)], uapi::OP_FILL, value, 0, 0),
            "execbuf",
        )
        .and_then(|_| ok(dev.wait(c, -1), "wait"))
        .and_then(|_| ok(dev.madvise(c, uapi::MADV_DONTNEED), "madvise"))
        .and_then(|_| env::drop_caches());
        let _ = dev.close(c);
        purged?;
    }
    // Released by `GpuAwake`: the device suspends.
    env::wait_runtime_status("suspended", 60_000)?;
    Ok(Counters::read()?.since(&before))
}

/// How many `event`s have `field` = `value` (any, if `field` is empty).
fn count(events: &[Event], event: &str, field: &str, value: &str) -> u64 {
    events
        .iter()
        .filter(|(n, f)| {
            n == event && (field.is_empty() || f.get(field).map(String::as_str) == Some(value))
        })
        .count() as u64
}

fn trace_events_match_counters() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    tracefs_write("buffer_size_kb", "8192")?;
    tracefs_write("trace", "")?;
    // Negative control: the events off, the counters move, no event.
    tracefs_write("events/movgem/enable", "0")?;
    let d = workload(&dev, 0x7ace_0000)?;
    let events = read_events()?;
    ensure!(
        d.get("hook_calls") > 0 && d.get("gpu_requests") > 0 && d.get("shrink_scans") > 0,
        "the work did not reach the hook, the engine and the shrinker: {d}"
    );
    ensure!(
        events.is_empty(),
        "{} movgem events with the events disabled",
        events.len()
    );
    // The events on: one per counted event.
    tracefs_write("events/movgem/enable", "1")?;
    let d = workload(&dev, 0x7ace_1000);
    tracefs_write("events/movgem/enable", "0")?;
    let d = d?;
    let events = read_events()?;
    ensure!(overruns()? == 0, "the trace buffer overran");
    let refused: u64 = d
        .names()
        .filter(|n| n.starts_with("refused_"))
        .map(|n| d.get(n))
        .sum();
    let pairs = [
        ("hook_calls", count(&events, "movgem_migrate_folio", "", "")),
        (
            "migrated_in_place",
            count(&events, "movgem_migrate_folio", "outcome", "in_place"),
        ),
        (
            "hook_bypassed",
            count(&events, "movgem_migrate_folio", "outcome", "bypassed"),
        ),
        (
            "refused_*",
            count(&events, "movgem_migrate_folio", "outcome", "refused"),
        ),
        (
            "refused_dma_pinned",
            count(
                &events,
                "movgem_migrate_folio",
                "reason",
                "refused_dma_pinned",
            ),
        ),
        (
            "gpu_requests",
            count(&events, "movgem_request_submit", "", ""),
        ),
        (
            "gpu_requests (retired)",
            count(&events, "movgem_request_retire", "", ""),
        ),
        ("shrink_scans", count(&events, "movgem_shrink_scan", "", "")),
        (
            "shrink_purged_objects",
            count(&events, "movgem_shrink_purge", "", ""),
        ),
        (
            "runtime_suspends",
            count(&events, "movgem_runtime_pm", "state", "suspended"),
        ),
        (
            "runtime_resumes",
            count(&events, "movgem_runtime_pm", "state", "resumed"),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, traced) in pairs {
        let counted = match name {
            "refused_*" => refused,
            "gpu_requests (retired)" => d.get("gpu_requests"),
            n => d.get(n),
        };
        if counted != traced {
            wrong.push(format!("{name}: counted {counted}, traced {traced}"));
        }
    }
    ensure!(
        wrong.is_empty(),
        "trace and counters disagree: {wrong:?}; {d}"
    );
    // Every in-place move names a new frame: `pfn=0xFROM->0xTO`.
    for (_, f) in events.iter().filter(|(n, f)| {
        n == "movgem_migrate_folio" && f.get("outcome").map(String::as_str) == Some("in_place")
    }) {
        let pfns = f.get("pfn").and_then(|p| p.split_once("->"));
        ensure!(
            pfns.is_some_and(|(from, to)| from != to && to != "0x0"),
            "an in-place move without a new frame: {f:?}"
        );
    }
    ensure!(
        d.get("migrated_in_place") > 0
            && d.get("hook_bypassed") > 0
            && refused > 0
            && d.get("shrink_purged_objects") > 0,
        "the work did not move in place, bypass, refuse and purge: {d}"
    );
    println!(
        "  {} movgem events, as counted: {} hook calls ({} in place, {} bypassed, {} refused), \
         {} requests, {} shrinker scans, {} suspends; none with the events off",
        events.len(),
        d.get("hook_calls"),
        d.get("migrated_in_place"),
        d.get("hook_bypassed"),
        refused,
        d.get("gpu_requests"),
        d.get("shrink_scans"),
        d.get("runtime_suspends")
    );
    Ok(())
}

pub(super) const TESTS: &[Test] = &[("trace_events_match_counters", trace_events_match_counters)];
