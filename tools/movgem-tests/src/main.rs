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
        for (name, _) in tests::all().filter(|(n, _)| selected(n, &only)) {
            println!("{name}");
        }
        return;
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
