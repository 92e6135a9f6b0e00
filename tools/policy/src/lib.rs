// SPDX-License-Identifier: GPL-2.0

//! The module's decision logic, built for the host so `cargo test` can
//! cover it.  The file itself lives with the module.

#![no_std]

#[cfg(test)]
extern crate std;

#[path = "../../../rust/policy.rs"]
pub mod policy;

#[path = "../../../rust/gtt.rs"]
pub mod gtt;

#[path = "../../../rust/shrink_cursor.rs"]
pub mod shrink_cursor;

pub use policy::*;
