// SPDX-License-Identifier: GPL-2.0

//! Rust halves of the KUnit suite in `rust/shims/kunit.c`.
//!
//! Each function checks one piece of kernel glue and returns 0 or a
//! negative errno, logging what went wrong.

use kernel::ffi::c_int;

use kernel::prelude::*;

use crate::device::Device;
use crate::object::Object;
use crate::policy::{self, Decision, LockWait, ObjectState, Refusal};
use crate::sync::{now_ns, LockKey, TryMutex};

macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            pr_err!("kunit check failed: {}\n", stringify!($cond));
            return Err(EINVAL);
        }
    };
}

/// The decision table, as compiled into the module.
fn policy_table() -> Result {
    let idle = ObjectState {
        has_pages: true,
        pages_pin_count: 1,
        bind_count: 1,
        ..ObjectState::default()
    };
    let release = Decision::Release {
        unbind: true,
        vunmap: false,
    };
    check!(policy::decide(&idle, true, false) == release);
    check!(policy::decide(&idle, false, true) == Decision::Refuse(Refusal::DeviceSuspended));
    let active = ObjectState {
        active: true,
        ..idle
    };
    check!(policy::decide(&active, true, true) == Decision::Refuse(Refusal::Active));
    check!(policy::decide(&ObjectState::default(), true, true) == Decision::PassThrough);
    check!(policy::lock_wait(false, 10) == LockWait::Once);
    Ok(())
}

/// The decision table, as compiled into the module.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_kunit_policy() -> c_int {
    errno(policy_table())
}

fn errno(r: Result) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

fn object_roundtrip() -> Result {
    const PAGES: usize = 16;
    // A device of its own: nothing the module's device counts or lists.
    let device = Device::new_for_test()?;
    let obj = Object::new(&device, PAGES, None)?;
    check!(obj.file().is_some_and(|f| f.is_movable()));
    check!(obj.hook_registered());
    obj.fill(42)?;
    {
        let mut locked = device.struct_mutex.lock();
        let offset = obj.bind(&mut locked)?;
        check!(obj.bind(&mut locked)? == offset);
        let st = obj.state(&mut locked);
        check!(st.pages_held() == PAGES);
        let snap = obj.snapshot(st);
        check!(snap.bind_count == 1 && snap.pages_pin_count == 1);
        let release = Decision::Release {
            unbind: true,
            vunmap: false,
        };
        check!(policy::decide(&snap, true, true) == release);
        let (bad, moved) = obj.verify(&mut locked, 42)?;
        check!(bad == 0 && moved == 0);
        let (bad, _) = obj.verify(&mut locked, 43)?;
        check!(bad == PAGES);
        obj.vmap(&mut locked)?;
        let snap = obj.snapshot(obj.state(&mut locked));
        check!(snap.vmap_cached && snap.pages_pin_count == 2);
        check!(
            policy::decide(&snap, true, true) == Decision::Refuse(Refusal::PinnedBeyondBindings)
        );
        obj.vunmap(&mut locked)?;
        check!(obj.vunmap(&mut locked).is_err());
        obj.unbind(&mut locked)?;
        check!(obj.unbind(&mut locked).is_err());
    }
    check!(device.purge_vmaps(true) == 0);
    obj.destroy();
    check!(!obj.hook_registered());
    let mut locked = device.struct_mutex.lock();
    check!(obj.state(&mut locked).pages_held() == 0);
    check!(obj.bind(&mut locked).is_err());
    Ok(())
}

/// An object's life: movable, registered, pattern, bind, vmap, verify,
/// destroy.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_kunit_object() -> c_int {
    errno(object_roundtrip())
}

static TEST_KEY: LockKey = LockKey::new();

fn trylock_timeout(timeout_ms: u32, elapsed: &mut u64) -> Result {
    let m = KBox::pin_init(
        TryMutex::new(0u32, kernel::c_str!("movgem_kunit"), &TEST_KEY),
        GFP_KERNEL,
    )?;
    let held = m.lock();
    check!(m.try_lock().is_none());
    let start = now_ns();
    check!(m
        .try_lock_for(policy::lock_wait(true, timeout_ms))
        .is_none());
    *elapsed = now_ns() - start;
    check!(m.try_lock_for(LockWait::Once).is_none());
    drop(held);
    check!(m
        .try_lock_for(policy::lock_wait(true, timeout_ms))
        .is_some());
    Ok(())
}

/// The hook's timed trylock gives up after its budget, not before.
///
/// # Safety
///
/// `elapsed_ns` must be valid for writes.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_kunit_trylock(
    timeout_ms: u32,
    elapsed_ns: *mut u64,
) -> c_int {
    let mut elapsed = 0;
    let ret = errno(trylock_timeout(timeout_ms, &mut elapsed));
    // SAFETY: the caller passes a valid pointer.
    unsafe { *elapsed_ns = elapsed };
    ret
}
