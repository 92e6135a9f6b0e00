// SPDX-License-Identifier: GPL-2.0

//! What the in-guest programs (movgem-tests, movgem-stress, gem-shrink,
//! movgem-bench) share: the guest environment (debugfs, module
//! parameters, compaction, fragmentation, runtime PM), the test result
//! type, [`ensure!`] and the result line the host counts.

pub mod env;

/// A test's outcome: `Err` carries what went wrong.
pub type TestResult = Result<(), String>;

/// Returns `Err(format!(...))` from the enclosing function unless `$cond`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(format!($($fmt)*));
        }
    };
}

/// Prints the line the host counts, and returns whether it passed.
pub fn report(name: &str, r: &TestResult) -> bool {
    match r {
        Ok(()) => println!("movgem-test: PASS {name}"),
        Err(e) => println!("movgem-test: FAIL {name}: {e}"),
    }
    r.is_ok()
}
