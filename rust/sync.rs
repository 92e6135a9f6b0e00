// SPDX-License-Identifier: GPL-2.0

//! A mutex that can be try-locked with a time budget.
//!
//! The 6.12 `kernel::sync::Mutex` offers only a blocking `lock()`.  The
//! migrate hook runs with the source folio locked, while the ioctl paths
//! take `struct_mutex` first and then folio locks (through shmem), so the
//! hook may never block on `struct_mutex`: it try-locks, and in
//! sleepable migration modes retries for at most a bounded time.
//!
//! Everything that runs under the mutex runs in a NOFS allocation scope
//! (`memalloc_nofs_save()`): an allocation made while holding it can
//! reclaim, but never reaches a shrinker that only works with
//! `__GFP_FS`, which is what ours does.  [`TryMutex::prime_reclaim`]
//! teaches lockdep that the mutex may be taken inside fs reclaim, so a
//! `GFP_FS` allocation under it would be reported at once.
//!
//! Reclaim goes first.  A timed try-lock that polls loses to tasks that
//! queue on the mutex: each unlock wakes a queued waiter, and with a
//! dozen ioctl callers queued the poller rarely finds the mutex free, so
//! a shrinker would give up while the memory it could purge stays
//! pinned.  While a [`TryMutex::try_lock_for`] caller waits, blocking
//! lockers therefore hold back (for at most [`RECLAIM_YIELD_NS`]) before
//! they queue, and the next unlock leaves the mutex to the poller.  The
//! back-off happens before the mutex is taken, so it adds no lock order.

use core::cell::UnsafeCell;
use core::marker::PhantomPinned;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use kernel::bindings;
use kernel::prelude::*;
use kernel::str::CStr;
use kernel::types::Opaque;

use crate::params;
use crate::policy::LockWait;

extern "C" {
    fn movgem_nofs_save() -> kernel::ffi::c_uint;
    fn movgem_nofs_restore(flags: kernel::ffi::c_uint);
    fn movgem_lockdep_prime_reclaim(lock: *mut bindings::mutex);
    fn movgem_mutex_lock_killable(lock: *mut bindings::mutex) -> kernel::ffi::c_int;
}

/// Storage for a lockdep class, to be placed in a `static`.
#[repr(transparent)]
pub(crate) struct LockKey(Opaque<bindings::lock_class_key>);

// SAFETY: lockdep synchronises all access to a `lock_class_key` itself.
unsafe impl Sync for LockKey {}

impl LockKey {
    /// A key for a `static`; lockdep wants it uninitialised.
    pub(crate) const fn new() -> Self {
        Self(Opaque::uninit())
    }
}

/// A kernel `struct mutex` protecting a `T`, with `try_lock`.
///
/// # Invariants
///
/// `mutex` was initialised by `__mutex_init` and is never moved; `data` is
/// only accessed through a [`TryMutexGuard`], which exists only while the
/// mutex is held.
#[pin_data]
pub(crate) struct TryMutex<T> {
    #[pin]
    mutex: Opaque<bindings::mutex>,
    data: UnsafeCell<T>,
    /// Callers of [`TryMutex::try_lock_for`] waiting now (reclaim, the
    /// migrate hook); blocking lockers hold back while it is non-zero.
    pollers: AtomicU32,
    /// The task holding the mutex (set by the guard), so that the hook
    /// can tell "held by me" from "held by another task".
    owner: AtomicPtr<bindings::task_struct>,
    #[pin]
    _pin: PhantomPinned,
}

/// Longest a blocking locker holds back for a polling one: the default
/// budget of the migrate hook and the shrinker (`lock_timeout_ms`).
pub(crate) const RECLAIM_YIELD_NS: u64 = 10_000_000;

// SAFETY: the mutex serialises all access to `data`, so sharing a
// `TryMutex` between threads is sound whenever `T` may be sent between them.
unsafe impl<T: Send> Sync for TryMutex<T> {}
// SAFETY: the mutex itself has no thread affinity while unlocked.
unsafe impl<T: Send> Send for TryMutex<T> {}

impl<T> TryMutex<T> {
    /// Initialiser for a mutex named `name` in lockdep class `key`.
    pub(crate) fn new(data: T, name: &'static CStr, key: &'static LockKey) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes while the closure runs; `name`
            // and `key` are static, as lockdep requires.
            mutex <- Opaque::ffi_init(|slot| unsafe {
                bindings::__mutex_init(slot, name.as_char_ptr(), key.0.get())
            }),
            data: UnsafeCell::new(data),
            pollers: AtomicU32::new(0),
            owner: AtomicPtr::new(core::ptr::null_mut()),
            _pin: PhantomPinned,
        })
    }

    /// Before queueing on the mutex: lets a waiting poller have it first,
    /// for at most [`RECLAIM_YIELD_NS`].
    fn yield_to_pollers(&self) {
        if self.pollers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let start = now_ns();
        while self.pollers.load(Ordering::Relaxed) != 0
            && now_ns().saturating_sub(start) < RECLAIM_YIELD_NS
        {
            // SAFETY: blocking lockers may sleep; a plain uninterruptible
            // sleep has no other precondition.
            unsafe { bindings::usleep_range_state(40, 60, bindings::TASK_UNINTERRUPTIBLE) };
        }
    }

    /// Sleeps until the mutex is ours.  Never call this from reclaim or
    /// from the migrate hook.
    pub(crate) fn lock(&self) -> TryMutexGuard<'_, T> {
        self.yield_to_pollers();
        // SAFETY: by the type invariant the mutex is initialised.
        unsafe { bindings::mutex_lock(self.mutex.get()) };
        // INVARIANT: the mutex was just acquired.
        TryMutexGuard::new(self)
    }

    /// Like [`TryMutex::lock`], but a fatal signal ends the wait
    /// (`EINTR`): for ioctl paths, so that a task killed by the OOM
    /// killer does not sit on the lock queue.
    pub(crate) fn lock_killable(&self) -> Result<TryMutexGuard<'_, T>> {
        self.yield_to_pollers();
        // SAFETY: by the type invariant the mutex is initialised.
        let ret = unsafe { movgem_mutex_lock_killable(self.mutex.get()) };
        if ret != 0 {
            return Err(EINTR);
        }
        // INVARIANT: `mutex_lock_killable` returned 0: the mutex is held.
        Ok(TryMutexGuard::new(self))
    }

    /// Records for lockdep that the mutex may be taken inside fs reclaim
    /// (i915's "taints mutex").  Call once, after initialisation.
    pub(crate) fn prime_reclaim(&self) {
        // SAFETY: by the type invariant the mutex is initialised; the shim
        // only hands it to lockdep, acquiring and releasing nothing real.
        unsafe { movgem_lockdep_prime_reclaim(self.mutex.get()) }
    }

    /// Whether the current task holds the mutex.  Another task's hold
    /// never reads as ours: only the holder stores itself, and clears the
    /// owner before it unlocks.
    pub(crate) fn held_by_current(&self) -> bool {
        // SAFETY: `get_current` has no preconditions in task context.
        let me = unsafe { bindings::get_current() };
        core::ptr::eq(self.owner.load(Ordering::Relaxed), me)
    }

    /// One attempt, never sleeps.
    pub(crate) fn try_lock(&self) -> Option<TryMutexGuard<'_, T>> {
        // SAFETY: by the type invariant the mutex is initialised.
        if unsafe { bindings::mutex_trylock(self.mutex.get()) } != 0 {
            // INVARIANT: `mutex_trylock` returned 1, so the mutex is held.
            Some(TryMutexGuard::new(self))
        } else {
            None
        }
    }

    /// Try-locks within `wait`; between attempts sleeps about 50 µs.
    /// Returns the guard, or `None` once the budget is spent.
    pub(crate) fn try_lock_for(&self, wait: LockWait) -> Option<TryMutexGuard<'_, T>> {
        let budget = match wait {
            LockWait::Once => return self.try_lock(),
            // `debug_lock_wait_overrun_ms`: a deliberate breakage, a wait
            // that overruns its budget (the negative control of the
            // budget's check, `kunit::trylock_budget`).
            LockWait::For(ns) => {
                ns.saturating_add(u64::from(params::debug_lock_wait_overrun_ms()) * 1_000_000)
            }
        };
        if let Some(guard) = self.try_lock() {
            return Some(guard);
        }
        let start = now_ns();
        self.pollers.fetch_add(1, Ordering::Relaxed);
        let got = loop {
            if let Some(guard) = self.try_lock() {
                break Some(guard);
            }
            if now_ns().saturating_sub(start) >= budget {
                break None;
            }
            // SAFETY: the caller allowed blocking (`LockWait::For`); a plain
            // uninterruptible sleep has no other precondition.
            unsafe { bindings::usleep_range_state(40, 60, bindings::TASK_UNINTERRUPTIBLE) };
        };
        self.pollers.fetch_sub(1, Ordering::Relaxed);
        got
    }
}

/// Proof that a [`TryMutex`] is held; unlocks on drop.
///
/// # Invariants
///
/// `lock.mutex` is held by the current task for the guard's lifetime,
/// and the task is in the NOFS scope that `nofs` restores.
pub(crate) struct TryMutexGuard<'a, T> {
    lock: &'a TryMutex<T>,
    nofs: kernel::ffi::c_uint,
    /// A mutex is released by the task that took it: not `Send`.
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl<'a, T> TryMutexGuard<'a, T> {
    /// Wraps a mutex the current task just acquired, entering the NOFS
    /// scope.
    fn new(lock: &'a TryMutex<T>) -> Self {
        // SAFETY: no preconditions; `drop` restores it on the same task,
        // since the guard is not `Send`.
        let nofs = unsafe { movgem_nofs_save() };
        // SAFETY: `get_current` has no preconditions in task context.
        lock.owner
            .store(unsafe { bindings::get_current() }, Ordering::Relaxed);
        Self {
            lock,
            nofs,
            _not_send: core::marker::PhantomData,
        }
    }
}

/// Data guarded by a [`TryMutex`] that lives elsewhere, as the kernel
/// crate's `LockedBy` does for its own locks: an object's state guarded
/// by its device's `struct_mutex`.  Access takes a `&mut` to the mutex's
/// data, which only a guard hands out, so holding it proves the lock is
/// held; the borrow keeps the returned reference unique.
///
/// # Invariants
///
/// `owner` is the address of the data of the [`TryMutex`] passed to
/// [`LockedBy::new`]; `data` is only accessed through
/// [`LockedBy::access_mut`] with a `&mut` to that very value.
pub(crate) struct LockedBy<T, U> {
    owner: *const U,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is only reached with the owner's lock held (the type
// invariant), so moving the `LockedBy` to another task is moving a `T`.
unsafe impl<T: Send, U> Send for LockedBy<T, U> {}
// SAFETY: shared references give no access to `data` without a `&mut` to
// the owner's locked data, which one task at a time can have: sharing is
// sound whenever `T` may be sent between tasks.
unsafe impl<T: Send, U> Sync for LockedBy<T, U> {}

impl<T, U> LockedBy<T, U> {
    /// `data`, guarded by `owner`.
    pub(crate) fn new(owner: &TryMutex<U>, data: T) -> Self {
        // INVARIANT: `owner.data` is the value guards of `owner` lend out.
        Self {
            owner: owner.data.get().cast_const(),
            data: UnsafeCell::new(data),
        }
    }

    /// The data, for as long as `owner` (the locked value, reachable only
    /// through a guard) is borrowed.
    ///
    /// # Panics
    ///
    /// If `owner` is not the value of the mutex given to `new`.
    pub(crate) fn access_mut<'a>(&'a self, owner: &'a mut U) -> &'a mut T {
        assert!(core::ptr::eq(owner, self.owner), "LockedBy: wrong lock");
        // SAFETY: `owner` is the locked value of our mutex, so the mutex is
        // held, and the `&mut` borrow of it for `'a` keeps any other access
        // through this `LockedBy` out while the result lives.
        unsafe { &mut *self.data.get() }
    }
}

impl<T> Deref for TryMutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: by the type invariant the mutex is held, so no one else
        // accesses `data`.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for TryMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: by the type invariant the mutex is held, and `&mut self`
        // makes this the only reference derived from the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for TryMutexGuard<'_, T> {
    fn drop(&mut self) {
        self.lock
            .owner
            .store(core::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: `nofs` came from `movgem_nofs_save` on this task; scopes
        // nest, and a guard is dropped before any guard taken after it.
        unsafe { movgem_nofs_restore(self.nofs) };
        // SAFETY: by the type invariant the current task holds the mutex.
        unsafe { bindings::mutex_unlock(self.lock.mutex.get()) };
    }
}

/// Monotonic time in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: `ktime_get` has no preconditions once timekeeping is up.
    let t = unsafe { bindings::ktime_get() };
    u64::try_from(t).unwrap_or(0)
}
