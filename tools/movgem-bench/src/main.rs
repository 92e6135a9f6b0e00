// SPDX-License-Identifier: GPL-2.0

//! movgem-bench: the benchmarks behind `make bench`, run inside the QEMU
//! guest with movgem.ko loaded.
//!
//! ```text
//! movgem-bench [--size LABEL] [--counts N,N,...] BENCH...
//!   BENCH: fragmentation | migration | latency | reclaim | scale | cma
//!          | memory_offline
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
mod latency;
mod migrate;
mod reclaim;
mod scale;
mod stats;
mod sys;
mod users;

use std::collections::BTreeMap;
use std::fs;
use std::time::Instant;

use serde::Serialize;

use stats::num;

/// One result line: `{"key":K,"value":V}`.
#[derive(Serialize)]
struct Line<'a, T> {
    key: &'a str,
    value: T,
}

fn emit<T: Serialize>(key: &str, value: T) {
    match serde_json::to_string(&Line { key, value }) {
        Ok(line) => println!("movgem-bench: {line}"),
        Err(e) => println!("movgem-bench: {key}: cannot serialize: {e}"),
    }
}

/// A benchmark's result with the guest size and how long it ran.
#[derive(Serialize)]
struct Tagged<'a, T> {
    #[serde(flatten)]
    result: T,
    guest: &'a str,
    #[serde(serialize_with = "num")]
    bench_s: f64,
}

fn kernel_release() -> String {
    sys::read("/proc/sys/kernel/osrelease")
}

fn module_params() -> BTreeMap<String, String> {
    let dir = "/sys/module/movgem/parameters";
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .map(|n| {
                    let v = sys::read(&format!("{dir}/{n}"));
                    (n, v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The guest the benchmarks ran in.
#[derive(Serialize)]
struct Config {
    guest: String,
    kernel: String,
    mem_total_mib: u64,
    cpus: i64,
    numa_nodes: usize,
    cmdline: String,
    module_params: BTreeMap<String, String>,
    thp_enabled: String,
}

fn config(size: &str) -> Config {
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
    Config {
        guest: size.to_string(),
        kernel: kernel_release(),
        mem_total_mib: sys::meminfo("MemTotal") / 1024,
        cpus: cpus as i64,
        numa_nodes: nodes,
        cmdline: sys::read("/proc/cmdline"),
        module_params: module_params(),
        thp_enabled: sys::read("/sys/kernel/mm/transparent_hugepage/enabled"),
    }
}

struct Options {
    size: String,
    counts: Vec<usize>,
    benches: Vec<String>,
}

const USAGE: &str = "usage: movgem-bench [--size LABEL] [--counts N,..] \
                     fragmentation|migration|latency|reclaim|scale|cma|memory_offline...";

fn options(args: impl IntoIterator<Item = String>) -> Result<Options, lexopt::Error> {
    use lexopt::prelude::*;
    let mut o = Options {
        size: String::from("unknown"),
        counts: scale::COUNTS.to_vec(),
        benches: Vec::new(),
    };
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next()? {
        match arg {
            Long("size") => o.size = p.value()?.string()?,
            // Counts that do not parse are left out, as ever.
            Long("counts") => {
                o.counts = p
                    .value()?
                    .string()?
                    .split(',')
                    .filter_map(|s| s.parse().ok())
                    .collect()
            }
            Value(b) => o.benches.push(b.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(o)
}

/// Prints the result line of a benchmark started at `t`; returns how
/// long it took.
fn finish<T: Serialize>(key: &str, result: T, guest: &str, t: Instant) -> f64 {
    let bench_s = sys::secs(t);
    emit(
        key,
        Tagged {
            result,
            guest,
            bench_s,
        },
    );
    bench_s
}

/// Runs benchmark `b` and prints its result line; returns how long it
/// took.
fn run(b: &str, size: &str, counts: &[usize]) -> Result<f64, String> {
    let t = Instant::now();
    match b {
        "fragmentation" => {
            frag::run().map(|r| finish(&format!("fragmentation.{size}"), r, size, t))
        }
        "migration" => migrate::run().map(|r| finish("migration", r, size, t)),
        "latency" => latency::run().map(|r| finish("latency", r, size, t)),
        "reclaim" => reclaim::run().map(|r| finish("reclaim", r, size, t)),
        "scale" => scale::run(counts).map(|r| finish("scale", r, size, t)),
        "cma" => users::run_cma().map(|r| finish("cma", r, size, t)),
        "memory_offline" => users::run_offline().map(|r| finish("memory_offline", r, size, t)),
        _ => Err(format!("unknown benchmark '{b}'")),
    }
}

fn main() {
    let o = match options(std::env::args().skip(1)) {
        Ok(o) if !o.benches.is_empty() => o,
        Ok(_) => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("movgem-bench: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let size = o.size.as_str();
    emit(&format!("config.{size}"), config(size));
    let mut failed = false;
    for b in &o.benches {
        let t = Instant::now();
        println!("movgem-bench: running {b} ({size} guest)");
        let took = match run(b, size, &o.counts) {
            Ok(took) => took,
            Err(e) => {
                println!("movgem-bench: {b} failed: {e}");
                emit(&format!("errors.{b}_{size}"), e);
                failed = true;
                sys::secs(t)
            }
        };
        println!("movgem-bench: {b} took {took:.1} s");
    }
    std::process::exit(i32::from(failed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct R {
        a: u64,
        #[serde(serialize_with = "num")]
        b: Vec<f64>,
    }

    fn parse(line: &str) -> Result<Options, String> {
        options(line.split_whitespace().map(String::from)).map_err(|e| e.to_string())
    }

    /// What scripts/guest/init passes.
    #[test]
    fn command_lines() {
        let o = parse("--size 2GiB --counts 1000,10000,x scale fragmentation").unwrap();
        assert_eq!(o.size, "2GiB");
        assert_eq!(o.counts, [1000, 10000]);
        assert_eq!(o.benches, ["scale", "fragmentation"]);
        let o = parse("--size=1GiB migration").unwrap();
        assert_eq!(o.size, "1GiB");
        assert_eq!(o.counts, scale::COUNTS);
        let o = parse("--size 1GiB cma memory_offline").unwrap();
        assert_eq!(o.benches, ["cma", "memory_offline"]);
        assert!(parse("").unwrap().benches.is_empty());
        assert!(parse("--size").is_err());
        assert!(parse("--frobnicate scale").is_err());
    }

    /// The line the host parses: the result's own keys, then the guest
    /// and the seconds it took.
    #[test]
    fn result_lines() {
        let r = Tagged {
            result: R {
                a: 1,
                b: vec![2.0, 0.5],
            },
            guest: "1GiB",
            bench_s: 12.3456,
        };
        let line = serde_json::to_string(&Line {
            key: "scale",
            value: r,
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"key":"scale","value":{"a":1,"b":[2,0.5],"guest":"1GiB","bench_s":12.346}}"#
        );
        let err = serde_json::to_string(&Line {
            key: "errors.scale_1GiB",
            value: "open: \"x\"\n",
        })
        .unwrap();
        assert_eq!(
            err,
            r#"{"key":"errors.scale_1GiB","value":"open: \"x\"\n"}"#
        );
    }
}
