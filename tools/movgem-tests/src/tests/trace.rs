// SPDX-License-Identifier: GPL-2.0

//! The trace events (`rust/shims/movgem_trace.h`) against the counters:
//! with `events/movgem` enabled, in-place moves, a `hook=off` attempt, a
//! refusal (a pinned object), compaction over bound idle objects,
//! requests, a shrinker scan (drop_caches) with its purge, the kernel's
//! vmap purge notifier (a purge, and one that gives up on
//! `struct_mutex`), the kernel's OOM notifier (a hog that ran out of
//! memory on node 1) and a runtime suspend must leave exactly as many
//! events of each kind as the counters say happened, and the notifiers'
//! events as many pages as their counters.  The negative control runs the same work with the events
//! disabled: the counters move and the trace must stay empty, so a
//! comparison that always agreed would be caught.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;

use movgem_uapi::{self as uapi, Device};

use movgem_guest::env::{self, Control, Counters, GpuAwake, Param};
use movgem_guest::{ensure, TestResult};

use super::common::{filled_object, ok};
use super::inplace::{Mapped, PICK};
use super::reclaim::oom_notifier_feeds_a_node_hog;
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

/// One event of the trace buffer with the task that emitted it: the
/// task's pid, the event's name and its `key=value` fields.
pub(super) struct Traced {
    pub(super) pid: u32,
    pub(super) name: String,
    pub(super) fields: BTreeMap<String, String>,
}

impl Traced {
    /// Field `k` as a number (decimal, or hexadecimal after `0x`; a
    /// `from->to` pair gives `from`).
    pub(super) fn num(&self, k: &str) -> Option<i64> {
        let v = self.fields.get(k)?;
        let v = v.split_once("->").map_or(v.as_str(), |(from, _)| from);
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok().map(|v| v as i64),
            None => v.parse().ok(),
        }
    }

    /// Field `k` as text ("" if absent).
    pub(super) fn get(&self, k: &str) -> &str {
        self.fields.get(k).map_or("", String::as_str)
    }
}

/// The events of a trace buffer's text, in its order:
/// `  comm-pid  [cpu] flags  ts: name: k=v k=v`.
fn parse_trace(text: &str) -> Vec<Traced> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((task, rest)) = line.split_once(" [") else {
            continue;
        };
        let Some(pid) = task
            .trim()
            .rsplit_once('-')
            .and_then(|(_, p)| p.parse().ok())
        else {
            continue;
        };
        let Some((_, rest)) = rest.split_once("] ") else {
            continue;
        };
        // "flags  ts: name: args"
        let mut parts = rest.splitn(3, ": ");
        let (Some(_), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        let fields = parts
            .next()
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.push(Traced {
            pid,
            name: name.trim_end_matches(':').to_string(),
            fields,
        });
    }
    out
}

/// Kernel trace events (`system/event` under tracefs `events/`) recorded
/// from [`Recording::start`] to [`Recording::stop`], on the global
/// clock, so that one task's events are in the order it emitted them
/// whichever CPU it ran on; disabled again on drop.
pub(super) struct Recording {
    events: Vec<&'static str>,
    clock: String,
}

impl Recording {
    pub(super) fn start(events: &[&'static str]) -> Result<Self, String> {
        let p = format!("{TRACEFS}/trace_clock");
        let clocks = fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
        let clock = clocks
            .split_whitespace()
            .find_map(|c| c.strip_prefix('[')?.strip_suffix(']'))
            .unwrap_or("local")
            .to_string();
        let mut rec = Self {
            events: Vec::new(),
            clock,
        };
        tracefs_write("trace_clock", "global")?;
        tracefs_write("buffer_size_kb", "8192")?;
        tracefs_write("trace", "")?;
        for e in events {
            tracefs_write(&format!("events/{e}/enable"), "1")?;
            rec.events.push(e);
        }
        Ok(rec)
    }

    fn disable(&mut self) {
        for e in self.events.drain(..) {
            let _ = tracefs_write(&format!("events/{e}/enable"), "0");
        }
    }

    /// Stops recording; the events, and whether the buffer overran
    /// (lost its oldest events).
    pub(super) fn stop(mut self) -> Result<(Vec<Traced>, bool), String> {
        self.disable();
        let p = format!("{TRACEFS}/trace");
        let text = fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"))?;
        let overran = overruns()? > 0;
        Ok((parse_trace(&text), overran))
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.disable();
        let _ = tracefs_write("trace", "");
        let _ = tracefs_write("trace_clock", &self.clock);
    }
}

/// What [`MigrationTrace`] records: the hook's decision per folio and
/// each `migrate_pages()` call's result.
pub(super) const MIGRATION_EVENTS: &[&str] =
    &["movgem/movgem_migrate_folio", "migrate/mm_migrate_pages"];

/// One `migrate_pages()` call: its `mm_migrate_pages` event (reason,
/// mode, pages moved and failed) and the hook's `movgem_migrate_folio`
/// events the same task emitted during it (every event of that task
/// since its previous call: the hook runs inside `migrate_pages()`, in
/// the calling task).
pub(super) struct MigrateCall {
    pub(super) reason: String,
    pub(super) succeeded: u64,
    pub(super) failed: u64,
    pub(super) hooks: Vec<Traced>,
}

impl MigrateCall {
    /// The hook's events for folios whose first frame is in `pfns`.
    pub(super) fn hooks_in<'a>(
        &'a self,
        pfns: &'a dyn Fn(u64) -> bool,
    ) -> impl Iterator<Item = &'a Traced> + 'a {
        self.hooks
            .iter()
            .filter(move |h| h.num("pfn").is_some_and(|p| pfns(p as u64)))
    }
}

/// The `migrate_pages()` calls of `events`, each with its hook events.
pub(super) fn migrate_calls(events: Vec<Traced>) -> Vec<MigrateCall> {
    let mut pending: BTreeMap<u32, Vec<Traced>> = BTreeMap::new();
    let mut calls = Vec::new();
    for e in events {
        match e.name.as_str() {
            "movgem_migrate_folio" => pending.entry(e.pid).or_default().push(e),
            "mm_migrate_pages" => calls.push(MigrateCall {
                reason: e.get("reason").to_string(),
                succeeded: e.num("nr_succeeded").unwrap_or(0) as u64,
                failed: e.num("nr_failed").unwrap_or(0) as u64,
                hooks: pending.remove(&e.pid).unwrap_or_default(),
            }),
            _ => {}
        }
    }
    calls
}

/// What the `migrate_pages()` calls of `reason` did to the folios in
/// `pfns`: how many calls met them, the hook's outcomes for them
/// (`outcome` or `outcome:reason` for a refusal, with a count each), and
/// the pages those calls moved and failed.  Calls that met none of them
/// are summed apart (`other_succeeded`).
#[derive(Debug, Default)]
pub(super) struct Attempts {
    pub(super) calls: u64,
    pub(super) outcomes: BTreeMap<String, u64>,
    pub(super) succeeded: u64,
    pub(super) failed: u64,
    pub(super) other_calls: u64,
    pub(super) other_succeeded: u64,
}

impl Attempts {
    pub(super) fn of(calls: &[MigrateCall], reason: &str, pfns: &dyn Fn(u64) -> bool) -> Self {
        let mut a = Self::default();
        for c in calls.iter().filter(|c| c.reason == reason) {
            let mut met = false;
            for h in c.hooks_in(pfns) {
                met = true;
                let o = match h.get("reason") {
                    "" => h.get("outcome").to_string(),
                    r => format!("{}:{r}", h.get("outcome")),
                };
                *a.outcomes.entry(o).or_default() += 1;
            }
            if met {
                a.calls += 1;
                a.succeeded += c.succeeded;
                a.failed += c.failed;
            } else {
                a.other_calls += 1;
                a.other_succeeded += c.succeeded;
            }
        }
        a
    }

    /// The hook's calls for the folios, any outcome.
    pub(super) fn hooks(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// The hook's calls for the folios with an outcome other than `want`.
    pub(super) fn others_than(&self, want: &str) -> u64 {
        self.outcomes
            .iter()
            .filter(|(o, _)| o.as_str() != want)
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calls met the folios (hook: {:?}; pages moved {}, failed {}), {} others moved {}",
            self.calls,
            self.outcomes,
            self.succeeded,
            self.failed,
            self.other_calls,
            self.other_succeeded
        )
    }
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
        // The vmap purge notifier, called by the kernel (debugfs
        // `vmap_overflow`): a cached mapping purged, then a call that gives
        // up on `struct_mutex`, held by the calling task itself.
        let v = filled_object(dev, 1 << 20, value)?;
        let ctl = Control::open()?;
        let notified = ok(dev.vmap(v), "vmap")
            .and_then(|_| ok(dev.vunmap(v), "vunmap"))
            .and_then(|_| ctl.cmd("vmap_overflow 0"))
            .and_then(|_| ctl.cmd("vmap_overflow 1"));
        let _ = dev.close(v);
        notified?;
        // The OOM notifier, called by the kernel for a hog that ran out of
        // memory on node 1.
        oom_notifier_feeds_a_node_hog(dev, value)?;
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

/// The sum of `field` over the `event`s.
fn sum(events: &[Event], event: &str, field: &str) -> u64 {
    events
        .iter()
        .filter(|(n, _)| n == event)
        .filter_map(|(_, f)| f.get(field)?.parse::<u64>().ok())
        .sum()
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
        d.get("hook_calls") > 0
            && d.get("gpu_requests") > 0
            && d.get("shrink_scans") > 0
            && d.get("oom_notifications") > 0
            && d.get("vmap_purges") > 0,
        "the work did not reach the hook, the engine, the shrinker and both notifiers: {d}"
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
        (
            "oom_notifications",
            count(&events, "movgem_oom_notify", "", ""),
        ),
        (
            "oom_freed_pages",
            sum(&events, "movgem_oom_notify", "freed"),
        ),
        ("vmap_purges", count(&events, "movgem_vmap_purge", "", "")),
        (
            "vmap_purged_pages",
            sum(&events, "movgem_vmap_purge", "freed"),
        ),
        (
            "vmap_purge_contended",
            count(&events, "movgem_vmap_purge", "contended", "1"),
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
    ensure!(
        d.get("oom_freed_pages") > 0
            && d.get("vmap_purged_pages") > 0
            && d.get("vmap_purge_contended") > 0,
        "the notifiers freed nothing, or no purge was contended: {d}"
    );
    println!(
        "  {} movgem events, as counted: {} hook calls ({} in place, {} bypassed, {} refused), \
         {} requests, {} shrinker scans, {} suspends, {} OOM notifications ({} pages), \
         {} vmap purges ({} pages, {} contended); none with the events off",
        events.len(),
        d.get("hook_calls"),
        d.get("migrated_in_place"),
        d.get("hook_bypassed"),
        refused,
        d.get("gpu_requests"),
        d.get("shrink_scans"),
        d.get("runtime_suspends"),
        d.get("oom_notifications"),
        d.get("oom_freed_pages"),
        d.get("vmap_purges"),
        d.get("vmap_purged_pages"),
        d.get("vmap_purge_contended")
    );
    Ok(())
}

pub(super) const TESTS: &[Test] = &[("trace_events_match_counters", trace_events_match_counters)];

#[cfg(test)]
mod parse {
    use super::*;

    const TRACE: &str = "\
# tracer: nop
#
      movgem-tests-91      [001] .....    12.000001: movgem_migrate_folio: obj=3 index=7 nr=1 pfn=0x1234->0x0 mode=async outcome=bypassed reason= wait_ns=0 locked_ns=0
         kworker/0:1-12    [000] .....    12.000002: movgem_migrate_folio: obj=4 index=0 nr=1 pfn=0x9000->0x0 mode=sync outcome=refused reason=refused_pinned_vma wait_ns=5 locked_ns=1
      movgem-tests-91      [000] .....    12.000003: movgem_migrate_folio: obj=3 index=7 nr=1 pfn=0x1234->0x0 mode=async outcome=bypassed reason= wait_ns=0 locked_ns=0
      movgem-tests-91      [000] .....    12.000004: mm_migrate_pages: nr_succeeded=0 nr_failed=1 nr_thp_succeeded=0 nr_thp_failed=0 nr_thp_split=0 nr_split=0 mode=MIGRATE_ASYNC reason=numa_misplaced
      movgem-tests-91      [000] .....    12.000005: mm_migrate_pages: nr_succeeded=1 nr_failed=0 nr_thp_succeeded=0 nr_thp_failed=0 nr_thp_split=0 nr_split=0 mode=MIGRATE_ASYNC reason=numa_misplaced
         kworker/0:1-12    [000] .....    12.000006: mm_migrate_pages: nr_succeeded=30 nr_failed=1 nr_thp_succeeded=0 nr_thp_failed=0 nr_thp_split=0 nr_split=0 mode=MIGRATE_SYNC reason=contig_range
           <...>-77        [001] .....    12.000007: cma_alloc_finish: name=reserved pfn=0xffffffffffffffff page=0000000000000000 count=16384 align=0 errorno=-16
";

    #[test]
    fn events_fields_and_tasks() {
        let ev = parse_trace(TRACE);
        assert_eq!(ev.len(), 7);
        assert_eq!(
            (ev[0].pid, ev[0].name.as_str()),
            (91, "movgem_migrate_folio")
        );
        assert_eq!(ev[0].num("pfn"), Some(0x1234));
        assert_eq!(ev[0].get("reason"), "");
        assert_eq!(ev[1].pid, 12);
        assert_eq!(ev[6].pid, 77);
        assert_eq!(ev[6].num("errorno"), Some(-16));
        assert_eq!(ev[6].num("count"), Some(16384));
    }

    #[test]
    fn hook_events_belong_to_their_tasks_call() {
        let calls = migrate_calls(parse_trace(TRACE));
        assert_eq!(calls.len(), 3);
        // The test task's first call had both of its hook events, the
        // second none; the kworker's call had its own.
        assert_eq!(calls[0].hooks.len(), 2);
        assert!(calls[1].hooks.is_empty());
        assert_eq!(calls[2].hooks.len(), 1);
        let ours = |p: u64| p == 0x1234;
        let a = Attempts::of(&calls, "numa_misplaced", &ours);
        assert_eq!((a.calls, a.hooks(), a.succeeded, a.failed), (1, 2, 0, 1));
        assert_eq!((a.other_calls, a.other_succeeded), (1, 1));
        assert_eq!(a.others_than("bypassed"), 0);
        let pinned = |p: u64| p == 0x9000;
        let c = Attempts::of(&calls, "contig_range", &pinned);
        assert_eq!(c.others_than("refused:refused_pinned_vma"), 0);
        assert_eq!(c.others_than("bypassed"), 1);
        assert_eq!(Attempts::of(&calls, "contig_range", &ours).hooks(), 0);
    }
}
