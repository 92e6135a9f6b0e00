// SPDX-License-Identifier: GPL-2.0

//! The in-guest tests, one file per subject; each file exports its
//! `TESTS`, a list of (name the host counts, test) in the order they
//! run.  [`SUITES`] puts the files in order; `main.rs` only runs them.

use movgem_guest::TestResult;

mod common;
mod deadlock;
mod debugfs;
mod engine;
mod huge;
mod inplace;
mod longterm;
mod migrate;
mod reclaim;
mod teardown;
mod trace;
mod uapi;
mod userptr;
mod users;

/// A test: the name in its `movgem-test: PASS|FAIL` line, and the test.
pub(crate) type Test = (&'static str, fn() -> TestResult);

/// Every file's tests, in the order they run.  The tests leave the
/// module as they found it (parameters restored, objects closed), so
/// the order is free but for `teardown`, which runs last: it tries
/// rmmod, and if that wrongly succeeded nothing after it could run.
pub(crate) const SUITES: &[&[Test]] = &[
    debugfs::TESTS,
    uapi::TESTS,
    engine::TESTS,
    inplace::TESTS,
    migrate::TESTS,
    users::TESTS,
    longterm::TESTS,
    huge::TESTS,
    reclaim::TESTS,
    userptr::TESTS,
    deadlock::TESTS,
    trace::TESTS,
    teardown::TESTS,
];

/// Every test, in the order they run.
pub(crate) fn all() -> impl Iterator<Item = &'static Test> {
    SUITES.iter().flat_map(|s| s.iter())
}

#[cfg(test)]
mod list {
    use super::*;

    #[test]
    fn names_are_unique_single_words() {
        let names: Vec<&str> = all().map(|t| t.0).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "a name twice in {names:?}");
        // The guest runner splits `--list` on white space, and the host
        // reads a name as the word after PASS/FAIL.
        for n in &names {
            assert!(
                !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{n:?}"
            );
        }
    }

    #[test]
    fn unload_is_tried_last() {
        assert_eq!(all().last().map(|t| t.0), Some("unload_refused_while_open"));
    }
}
