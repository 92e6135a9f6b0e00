// SPDX-License-Identifier: GPL-2.0

//! movgem-bench: the benchmarks behind `make bench`, run inside the QEMU
//! guest with movgem.ko loaded.
//!
//! ```text
//! movgem-bench [--size LABEL] [--counts N,N,...] BENCH...
//!   BENCH: fragmentation | migration | latency | reclaim | scale
//!   LABEL: the guest's memory size as the host names it (1GiB, 2GiB)
//! ```
//!
//! Prints human-readable `movgem-bench: ...` lines and, for the host,
//! one `movgem-bench: {"key":K,"value":V}` JSON line per result; the host
//! nests V under the dotted key K in `bench/results/latest.json`.  The
//! first JSON line is the configuration (kernel, memory, CPUs, NUMA
//! nodes, module parameters).  Benchmarks measure; they assert nothing
//! about speed.  Exit status is non-zero only if a benchmark could not
//! run.

mod frag;
mod json;
mod latency;
mod migrate;
mod reclaim;
mod scale;
mod stats;
mod sys;

use std::fs;
use std::time::Instant;

use json::Json;

fn emit(key: &str, value: Json) {
    println!(
        "movgem-bench: {}",
        Json::obj().with("key", key).with("value", value)
    );
}

fn kernel_release() -> String {
    sys::read("/proc/sys/kernel/osrelease")
}

fn module_params() -> Json {
    let mut j = Json::obj();
    let dir = "/sys/module/movgem/parameters";
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for n in names {
        j.set(&n, sys::read(&format!("{dir}/{n}")));
    }
    j
}

fn config(size: &str) -> Json {
    let nodes = fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with("node") && n[4..].parse::<u32>().is_ok()
                })
                .count()
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    Json::obj()
        .with("guest", size)
        .with("kernel", kernel_release())
        .with("mem_total_mib", sys::meminfo("MemTotal") / 1024)
        .with("cpus", cpus as i64)
        .with("numa_nodes", nodes)
        .with("cmdline", sys::read("/proc/cmdline"))
        .with("module_params", module_params())
        .with(
            "thp_enabled",
            sys::read("/sys/kernel/mm/transparent_hugepage/enabled"),
        )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut size = String::from("unknown");
    let mut counts: Vec<usize> = scale::COUNTS.to_vec();
    let mut benches = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => size = args.next().unwrap_or_default(),
            "--counts" => {
                counts = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|s| s.parse().ok())
                    .collect()
            }
            _ => benches.push(a),
        }
    }
    if benches.is_empty() {
        eprintln!(
            "usage: movgem-bench [--size LABEL] [--counts N,..] \
             fragmentation|migration|latency|reclaim|scale..."
        );
        std::process::exit(2);
    }
    emit(&format!("config.{size}"), config(&size));
    let mut failed = false;
    for b in &benches {
        let t = Instant::now();
        println!("movgem-bench: running {b} ({size} guest)");
        let r = match b.as_str() {
            "fragmentation" => frag::run().map(|j| (format!("fragmentation.{size}"), j)),
            "migration" => migrate::run().map(|j| ("migration".to_string(), j)),
            "latency" => latency::run().map(|j| ("latency".to_string(), j)),
            "reclaim" => reclaim::run().map(|j| ("reclaim".to_string(), j)),
            "scale" => scale::run(&counts).map(|j| ("scale".to_string(), j)),
            _ => Err(format!("unknown benchmark '{b}'")),
        };
        let took = sys::secs(t);
        match r {
            Ok((key, mut j)) => {
                j.set("guest", size.as_str());
                j.set("bench_s", took);
                emit(&key, j);
            }
            Err(e) => {
                println!("movgem-bench: {b} failed: {e}");
                emit(&format!("errors.{b}_{size}"), Json::from(e));
                failed = true;
            }
        }
        println!("movgem-bench: {b} took {took:.1} s");
    }
    std::process::exit(i32::from(failed));
}
