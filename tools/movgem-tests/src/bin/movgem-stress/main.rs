// SPDX-License-Identifier: GPL-2.0

//! movgem-stress: bounded stress, ioctl fuzzing, fault injection and
//! module lifecycle runs inside the guest.
//!
//! ```text
//! movgem-stress stress SECONDS      concurrent workload, data checked on every read
//! movgem-stress fuzz CALLS SEED     random and boundary ioctls; errnos from the documented set
//! movgem-stress faults ROUNDS       failslab + fail_page_alloc on the module's paths
//! movgem-stress lifecycle LOOPS     load, use from several processes, unload
//! movgem-stress hold                 (lifecycle's child: busy, pinned and
//!                                    vmapped objects, then wait to be killed)
//! ```
//!
//! Each prints `movgem-test: PASS|FAIL <name>: <what it measured>` and
//! `movgem-metric:` lines.

mod faults;
mod fuzz;
mod lifecycle;
mod stress;

use movgem_guest::report;

/// [`report`], with what the test measured on the result line, pass or
/// fail, so that a log reader sees the numbers the verdict rests on.
fn report_numbers(name: &str, r: &Result<String, String>) -> bool {
    match r {
        Ok(numbers) => println!("movgem-test: PASS {name}: {numbers}"),
        Err(e) => println!("movgem-test: FAIL {name}: {e}"),
    }
    r.is_ok()
}

const USAGE: &str =
    "usage: movgem-stress stress SECONDS | fuzz CALLS SEED | faults ROUNDS | lifecycle LOOPS";

/// What to run, with its numbers (each defaults when left out).
#[derive(Debug, PartialEq)]
enum Command {
    Stress { seconds: u64 },
    Fuzz { calls: u64, seed: u64 },
    Faults { rounds: u64 },
    Lifecycle { loops: u64 },
    Hold,
}

fn command(args: impl IntoIterator<Item = String>) -> Result<Command, lexopt::Error> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut words = Vec::new();
    while let Some(arg) = p.next()? {
        match arg {
            Value(v) => words.push(v),
            _ => return Err(arg.unexpected()),
        }
    }
    let mut words = words.into_iter();
    let name = words.next().ok_or("no command")?.string()?;
    let mut number = |default: u64| -> Result<u64, lexopt::Error> {
        words.next().map_or(Ok(default), |w| w.parse())
    };
    let cmd = match name.as_str() {
        "stress" => Command::Stress {
            seconds: number(20)?,
        },
        "fuzz" => Command::Fuzz {
            calls: number(20_000)?,
            seed: number(1)?,
        },
        "faults" => Command::Faults {
            rounds: number(200)?,
        },
        "lifecycle" => Command::Lifecycle { loops: number(5)? },
        "hold" => Command::Hold,
        _ => return Err(format!("unknown command '{name}'").into()),
    };
    match words.next() {
        Some(extra) => Err(lexopt::Error::UnexpectedArgument(extra)),
        None => Ok(cmd),
    }
}

fn main() {
    let ok = match command(std::env::args().skip(1)) {
        Ok(Command::Stress { seconds }) => report_numbers("stress", &stress::run(seconds)),
        Ok(Command::Fuzz { calls, seed }) => report_numbers("fuzz", &fuzz::run(calls, seed)),
        Ok(Command::Faults { rounds }) => report("fault_injection", &faults::run(rounds)),
        Ok(Command::Lifecycle { loops }) => report_numbers("lifecycle", &lifecycle::run(loops)),
        Ok(Command::Hold) => lifecycle::hold(),
        Err(e) => {
            eprintln!("movgem-stress: {e}\n{USAGE}");
            false
        }
    };
    std::process::exit(i32::from(!ok));
}

/// Prints a number for the host to collect.
pub fn metric(name: &str, value: impl std::fmt::Display) {
    println!("movgem-metric: {name}={value}");
}

/// Device numbers once objects closed by earlier runs have finished
/// retiring: no batch in flight (a closed object's GTT space goes when
/// its last batch retires), and two readings 50 ms apart agree.  Gives
/// up after 60 s (1,200 readings), a margin for a loaded machine.
pub fn settled_info(dev: &movgem_uapi::Device) -> Result<movgem_uapi::Info, String> {
    let read = || dev.info().map_err(|e| format!("info: errno {e}"));
    let mut last = read()?;
    for _ in 0..1200 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = read()?;
        if now.requests == 0
            && now.active_objects == 0
            && now.gtt_used == last.gtt_used
            && now.objects == last.objects
        {
            return Ok(now);
        }
        last = now;
    }
    Err(format!("device never settled: {last:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, String> {
        command(line.split_whitespace().map(String::from)).map_err(|e| e.to_string())
    }

    /// What scripts/guest/init and lifecycle's children pass.
    #[test]
    fn command_lines() {
        assert_eq!(parse("stress 20"), Ok(Command::Stress { seconds: 20 }));
        assert_eq!(parse("stress"), Ok(Command::Stress { seconds: 20 }));
        assert_eq!(
            parse("fuzz 20000 7"),
            Ok(Command::Fuzz {
                calls: 20_000,
                seed: 7
            })
        );
        assert_eq!(parse("fuzz 5"), Ok(Command::Fuzz { calls: 5, seed: 1 }));
        assert_eq!(parse("faults 300"), Ok(Command::Faults { rounds: 300 }));
        assert_eq!(parse("lifecycle"), Ok(Command::Lifecycle { loops: 5 }));
        assert_eq!(parse("hold"), Ok(Command::Hold));
        for bad in ["", "stress x", "stress 1 2", "nothing", "--stress"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
