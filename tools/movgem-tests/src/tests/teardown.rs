// SPDX-License-Identifier: GPL-2.0

//! Teardown: closing a file while the GPU still uses its object, and
//! rmmod refused while `/dev/movgem` is open.  These run last.

use std::time::{Duration, Instant};

use movgem_uapi::{self as uapi, Device};

use movgem_guest::{ensure, TestResult};

use super::common::{ok, PAGE};
use super::Test;

fn close_while_active_cleans_up() -> TestResult {
    let before = {
        let dev = ok(Device::open(), "open")?;
        ok(dev.info(), "info")?
    };
    {
        let dev = ok(Device::open(), "open")?;
        let h = ok(dev.create(1 << 20), "create")?;
        ok(
            dev.execbuf(&[(h, true)], uapi::OP_FILL, 1, 300_000_000, 0),
            "execbuf",
        )?;
        ensure!(ok(dev.busy(h), "busy")?, "not busy");
        // Closing the file closes the object while the GPU still uses it.
    }
    let dev = ok(Device::open(), "open")?;
    let mid = ok(dev.info(), "info")?;
    ensure!(
        mid.objects == before.objects,
        "closed object still listed: {mid:?}"
    );
    // Once the request retires, its binding goes too.
    let start = Instant::now();
    loop {
        let now = ok(dev.info(), "info")?;
        if now.gtt_used == before.gtt_used && now.active_objects == before.active_objects {
            return Ok(());
        }
        ensure!(
            start.elapsed() < Duration::from_secs(60),
            "GTT space not released: {before:?} -> {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn unload_refused_while_open() -> TestResult {
    let dev = ok(Device::open(), "open")?;
    let h = ok(dev.create(PAGE), "create")?;
    let st = std::process::Command::new("rmmod")
        .arg("movgem")
        .status()
        .map_err(|e| e.to_string())?;
    ensure!(!st.success(), "rmmod succeeded with /dev/movgem open");
    ensure!(
        std::path::Path::new("/sys/module/movgem").exists(),
        "module gone"
    );
    ok(dev.close(h), "close")
}

pub(super) const TESTS: &[Test] = &[
    ("close_while_active_cleans_up", close_while_active_cleans_up),
    ("unload_refused_while_open", unload_refused_while_open),
];
