// SPDX-License-Identifier: GPL-2.0

//! GEM-style objects backed by shmem, and the migrate hook.
//!
//! # Locking
//!
//! Lock order, outermost first:
//!
//! 1. `Device::struct_mutex` (a [`TryMutex`]): all mutable object state.
//! 2. folio locks, taken inside shmem while fetching pages.
//!
//! Migration calls the hook with the source folio already locked, i.e.
//! against this order, so the hook only ever try-locks `struct_mutex`
//! ([`TryMutex::try_lock_for`]) and gives up with `-EBUSY`.

use core::cell::UnsafeCell;
use kernel::ffi::c_int;

use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::types::Opaque;

use crate::counters::{self, Counter};
use crate::params;
use crate::policy::{self, Decision, ObjectState};
use crate::shmem::{FolioRef, RawFolio, ShmemDevInfo, ShmemFile};
use crate::sync::{LockKey, TryMutex, TryMutexGuard};

/// Device-wide state protected by `struct_mutex`.
pub(crate) struct Gem {
    /// The object driven through debugfs `control`, if any.
    pub(crate) selftest: Option<Arc<Object>>,
}

/// The (simulated) GPU.
#[pin_data]
pub(crate) struct Device {
    /// i915's big lock; see the module documentation for its order.
    #[pin]
    pub(crate) struct_mutex: TryMutex<Gem>,
}

static STRUCT_MUTEX_KEY: LockKey = LockKey::new();

impl Device {
    /// Allocates the device.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                struct_mutex <- TryMutex::new(
                    Gem { selftest: None },
                    kernel::c_str!("movgem_struct_mutex"),
                    &STRUCT_MUTEX_KEY,
                ),
            }),
            GFP_KERNEL,
        )
    }
}

/// Guard of `Device::struct_mutex`.
pub(crate) type StructMutexGuard<'a> = TryMutexGuard<'a, Gem>;

/// Mutable state of an object; only reachable under `struct_mutex`.
#[derive(Default)]
pub(crate) struct ObjState {
    /// References on the object's folios, index order; empty when the
    /// object has no pages.
    pages: KVec<FolioRef>,
    /// Pins on the pages, bindings included.
    pub(crate) pages_pin_count: u32,
    /// GTT bindings.
    pub(crate) bind_count: u32,
    /// Bindings pinned for scanout.
    pub(crate) pinned_vmas: u32,
    /// Simulated GPU work outstanding.
    pub(crate) active: bool,
    /// DONTNEED.
    pub(crate) purgeable: bool,
    /// Page frame numbers recorded at the last bind.
    bind_pfns: KVec<usize>,
    /// The pages were released by the hook since the last bind.
    released: bool,
    /// The object is being destroyed; the hook must leave it alone.
    dead: bool,
}

impl ObjState {
    /// What the policy needs to know.
    pub(crate) fn snapshot(&self) -> ObjectState {
        ObjectState {
            has_pages: !self.pages.is_empty(),
            active: self.active,
            purgeable: self.purgeable,
            pages_pin_count: self.pages_pin_count,
            bind_count: self.bind_count,
            pinned_vmas: self.pinned_vmas,
        }
    }

    /// Number of folios the object holds references on.
    pub(crate) fn pages_held(&self) -> usize {
        self.pages.len()
    }

    /// Drops every page reference; returns how many there were.
    fn put_pages(&mut self) -> usize {
        let n = self.pages.len();
        self.pages = KVec::new();
        n
    }
}

/// A shmem-backed buffer object.
///
/// # Invariants
///
/// While `registered` is true, `dev_info` is registered with shmem on
/// `file`, and `self` is pinned inside an [`Arc`]; [`Object::destroy`]
/// unregisters it and truncates `file` before the `Arc` can go away.
#[pin_data(PinnedDrop)]
pub(crate) struct Object {
    /// Storage for `struct shmem_dev_info`; the hook maps it back to the
    /// object with `container_of!`.
    #[pin]
    dev_info: Opaque<ShmemDevInfo>,
    file: ShmemFile,
    npages: usize,
    device: Arc<Device>,
    state: UnsafeCell<ObjState>,
    registered: core::sync::atomic::AtomicBool,
}

// SAFETY: `state` is only accessed under `device.struct_mutex` (see
// `Object::state`); every other field is `Send`/`Sync` or immutable.
unsafe impl Send for Object {}
// SAFETY: as above.
unsafe impl Sync for Object {}

impl Object {
    /// Creates an object of `npages` pages, not yet populated, with the
    /// migrate hook registered.
    pub(crate) fn new(device: &Arc<Device>, npages: usize) -> Result<Arc<Self>> {
        let size = npages.checked_mul(kernel::page::PAGE_SIZE).ok_or(EINVAL)?;
        let file = ShmemFile::new(kernel::c_str!("movgem"), size)?;
        let obj = Arc::pin_init(
            pin_init!(Self {
                dev_info <- Opaque::ffi_init(|_slot: *mut ShmemDevInfo| {}),
                file,
                npages,
                device: device.clone(),
                state: UnsafeCell::new(ObjState::default()),
                registered: core::sync::atomic::AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: `obj` is pinned in an `Arc`, and `destroy` (or drop)
        // unregisters and truncates before the storage goes away.
        unsafe { obj.file.register(obj.dev_info.get())? };
        obj.registered
            .store(true, core::sync::atomic::Ordering::Release);
        Ok(obj)
    }

    /// Size in pages.
    pub(crate) fn npages(&self) -> usize {
        self.npages
    }

    /// The backing file.
    pub(crate) fn file(&self) -> &ShmemFile {
        &self.file
    }

    /// Whether shmem has our `dev_info` registered on this object.
    pub(crate) fn hook_registered(&self) -> bool {
        core::ptr::eq(self.file.registered(), self.dev_info.get())
    }

    /// The object's mutable state.  Holding `guard` proves exclusion.
    pub(crate) fn state<'a>(&'a self, guard: &'a mut StructMutexGuard<'_>) -> &'a mut ObjState {
        assert!(guard.holds(&self.device.struct_mutex));
        // SAFETY: the caller holds `struct_mutex`, which protects `state`,
        // and the `&mut` borrow of the guard keeps this reference unique.
        unsafe { &mut *self.state.get() }
    }

    /// Writes the self-test pattern for `seed` into every page.
    pub(crate) fn fill(&self, seed: u64) -> Result {
        let mut buf = KVec::with_capacity(kernel::page::PAGE_SIZE, GFP_KERNEL)?;
        for _ in 0..kernel::page::PAGE_SIZE {
            buf.push(0u8, GFP_KERNEL)?;
        }
        for page in 0..self.npages {
            fill_page(&mut buf, seed, page);
            self.file.folio(page)?.write(&buf)?;
        }
        Ok(())
    }

    /// Checks every page against the pattern for `seed`.  Returns the
    /// number of mismatching pages and of pages whose frame differs
    /// from the one recorded at the last bind.
    pub(crate) fn verify(
        &self,
        guard: &mut StructMutexGuard<'_>,
        seed: u64,
    ) -> Result<(usize, usize)> {
        let mut buf = KVec::with_capacity(kernel::page::PAGE_SIZE, GFP_KERNEL)?;
        let mut want = KVec::with_capacity(kernel::page::PAGE_SIZE, GFP_KERNEL)?;
        for _ in 0..kernel::page::PAGE_SIZE {
            buf.push(0u8, GFP_KERNEL)?;
            want.push(0u8, GFP_KERNEL)?;
        }
        let (mut bad, mut moved) = (0, 0);
        for page in 0..self.npages {
            let folio = self.file.folio(page)?;
            folio.read(&mut buf)?;
            fill_page(&mut want, seed, page);
            if buf[..] != want[..] {
                bad += 1;
            }
            let st = self.state(guard);
            if st
                .bind_pfns
                .get(page)
                .is_some_and(|&pfn| pfn != folio.pfn())
            {
                moved += 1;
            }
        }
        Ok((bad, moved))
    }

    /// Binds the object into the GTT: fetches its pages if needed and
    /// pins them.
    pub(crate) fn bind(&self, guard: &mut StructMutexGuard<'_>) -> Result {
        let st = self.state(guard);
        if st.dead {
            return Err(ENOENT);
        }
        if st.pages.is_empty() {
            let mut pages = KVec::with_capacity(self.npages, GFP_KERNEL)?;
            let mut pfns = KVec::with_capacity(self.npages, GFP_KERNEL)?;
            for page in 0..self.npages {
                let folio = self.file.folio(page)?;
                pfns.push(folio.pfn(), GFP_KERNEL)?;
                pages.push(folio, GFP_KERNEL)?;
            }
            if st.released {
                counters::inc(Counter::Rebinds);
                st.released = false;
            }
            st.pages = pages;
            st.bind_pfns = pfns;
        }
        st.bind_count += 1;
        st.pages_pin_count += 1;
        Ok(())
    }

    /// Removes one binding; the pages stay cached, as in i915.
    pub(crate) fn unbind(&self, guard: &mut StructMutexGuard<'_>) -> Result {
        let st = self.state(guard);
        if st.bind_count == 0 {
            return Err(EINVAL);
        }
        st.bind_count -= 1;
        st.pages_pin_count -= 1;
        Ok(())
    }

    /// Tears the object down: unregisters the hook, truncates the file
    /// (after which no callback can reach `self`) and drops the pages.
    pub(crate) fn destroy(&self) {
        {
            let mut guard = self.device.struct_mutex.lock();
            self.state(&mut guard).dead = true;
        }
        self.teardown();
        let mut guard = self.device.struct_mutex.lock();
        let st = self.state(&mut guard);
        st.bind_count = 0;
        st.pages_pin_count = 0;
        st.put_pages();
    }

    /// Unregisters and truncates.  Callbacks run with a folio of `file`
    /// locked and truncation takes every such lock, so once this returns
    /// no callback is running or can start on this object.
    fn teardown(&self) {
        if self
            .registered
            .swap(false, core::sync::atomic::Ordering::AcqRel)
        {
            self.file.unregister();
            self.file.truncate();
        }
    }

    /// The migrate hook proper: decide, and release the pages if allowed.
    fn migrate_prepare(&self, may_block: bool) -> c_int {
        counters::inc(Counter::HookCalls);
        if !params::hook_enabled() {
            counters::inc(Counter::HookBypassed);
            return HOOK_BYPASS;
        }
        let wait = policy::lock_wait(may_block, params::lock_timeout_ms());
        let Some(mut guard) = self.device.struct_mutex.try_lock_for(wait) else {
            counters::refused(policy::Refusal::LockContended);
            return EBUSY.to_errno();
        };
        let st = self.state(&mut guard);
        if st.dead {
            counters::inc(Counter::PassThrough);
            return 0;
        }
        // Runtime PM arrives with the simulated GPU; until then the
        // device is always awake.
        match policy::decide(&st.snapshot(), true) {
            Decision::PassThrough => {
                counters::inc(Counter::PassThrough);
                0
            }
            Decision::Refuse(why) => {
                counters::refused(why);
                EBUSY.to_errno()
            }
            Decision::Release { unbind } => {
                if unbind {
                    counters::add(Counter::Unbinds, u64::from(st.bind_count));
                    st.bind_count = 0;
                    st.pages_pin_count = 0;
                }
                let n = st.put_pages();
                st.released = true;
                counters::inc(Counter::Released);
                counters::add(Counter::ReleasedPages, n as u64);
                0
            }
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Object {
    fn drop(self: Pin<&mut Self>) {
        // Without `destroy()` first, the pages are dropped with `state`
        // after this; `teardown()` guarantees the hook is gone by then.
        self.teardown();
    }
}

/// Returned to C when the hook is switched off: call `migrate_folio()`
/// and return its result unchanged, exactly as an unpatched kernel would.
const HOOK_BYPASS: c_int = 1;

fn fill_page(buf: &mut [u8], seed: u64, page: usize) {
    for (word, chunk) in buf.chunks_exact_mut(8).enumerate() {
        let v = policy::pattern_word(seed, page as u64, word as u64);
        chunk.copy_from_slice(&v.to_le_bytes());
    }
}

/// Maps the `dev_info` pointer shmem hands the callback back to its object.
///
/// # Safety
///
/// `dev_info` must be the `dev_info` field of a live [`Object`]; shmem
/// guarantees that for a registered pointer while the source folio is
/// locked (see the invariant of [`Object`]).
unsafe fn object_of<'a>(dev_info: *mut ShmemDevInfo) -> &'a Object {
    // `Opaque<T>` is `repr(transparent)`, so the field's address is the
    // address of the `ShmemDevInfo` inside it.
    // SAFETY: by the caller's guarantee `dev_info` points into an `Object`.
    unsafe { &*kernel::container_of!(dev_info.cast::<Opaque<ShmemDevInfo>>(), Object, dev_info) }
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_migrate_prepare(
    dev_info: *mut ShmemDevInfo,
    _src: *mut RawFolio,
    may_block: bool,
) -> c_int {
    // SAFETY: the C callback passes the registered pointer with the
    // source folio locked, which keeps the object alive.
    let obj = unsafe { object_of(dev_info) };
    obj.migrate_prepare(may_block)
}

/// C entry point, see `include/movgem_shim.h`.
#[no_mangle]
pub(crate) extern "C" fn movgem_rs_migrate_done(_dev_info: *mut ShmemDevInfo, ret: c_int) {
    if ret == 0 {
        counters::inc(Counter::Migrated);
    } else {
        counters::inc(Counter::MigrateFailed);
    }
}
