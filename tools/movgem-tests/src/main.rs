// SPDX-License-Identifier: GPL-2.0

//! In-guest tests of movgem.ko.  Run as root inside the QEMU guest with
//! the module loaded; prints one `movgem-test: PASS|FAIL name` line per
//! test and the summary `N passed, N failed`.  Exit status is non-zero
//! if any test failed.  The tests live in `tests/`, one file per subject.
//!
//! Usage: movgem-tests [FILTER]   (runs the tests whose name contains FILTER)
//!        movgem-tests --list [FILTER]  (prints their names, one a line)
//!        movgem-tests --demo    (the story `make demo` shows)

use movgem_guest::report;

mod demo;
mod tests;

/// Whether test `name` runs under `filter`: a comma-separated list of
/// name parts, any of which selects; empty selects every test.
fn selected(name: &str, filter: &str) -> bool {
    filter.split(',').any(|part| name.contains(part))
}

/// What to do.
enum Mode {
    Run,
    List,
    Demo,
}

fn options(args: impl IntoIterator<Item = String>) -> Result<(Mode, String), lexopt::Error> {
    use lexopt::prelude::*;
    let mut mode = Mode::Run;
    let mut filter = None;
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next()? {
        match arg {
            Long("demo") => mode = Mode::Demo,
            Long("list") => mode = Mode::List,
            Value(v) if filter.is_none() => filter = Some(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok((mode, filter.unwrap_or_default()))
}

fn main() {
    let (mode, filter) = options(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("movgem-tests: {e}\nusage: movgem-tests [FILTER] | --list [FILTER] | --demo");
        std::process::exit(2);
    });
    match mode {
        Mode::Demo => {
            if !report("demo", &demo::demo()) {
                std::process::exit(1);
            }
            return;
        }
        Mode::List => {
            // The names this run would report, for the runner's inventory.
            for (name, _) in tests::all().filter(|(n, _)| selected(n, &filter)) {
                println!("{name}");
            }
            return;
        }
        Mode::Run => {}
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests::all().filter(|(n, _)| selected(n, &filter)) {
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
