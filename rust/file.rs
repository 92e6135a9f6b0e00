// SPDX-License-Identifier: GPL-2.0

//! `/dev/movgem`: the misc device, per-open-file handles, and one
//! method per ioctl (`include/uapi/movgem.h` documents each).
//!
//! Handles name objects only within the open file that created them:
//! another file, or another process, gets `ENOENT`.  Every argument is
//! validated before anything changes, and a failure after an object was
//! created closes it again.

use core::mem::size_of;
use core::ptr::NonNull;

use kernel::ffi::{c_long, c_uint, c_ulong, c_void};
use kernel::prelude::*;
use kernel::rbtree::RBTree;
use kernel::sync::{Arc, Mutex};
use kernel::uaccess::{UserPtr, UserSlice};

use crate::counters::Counter;
use crate::device::{Device, DeviceLocked};
use crate::engine::{self, Batch, Engine};
use crate::object::Object;
use crate::params;
use crate::policy;
use crate::shmem::PinnedFolios;
use crate::uapi;

const PAGE_SIZE: u64 = kernel::page::PAGE_SIZE as u64;

struct Handles {
    map: RBTree<u32, Arc<Object>>,
    next: u32,
}

/// State of one open file of `/dev/movgem`.
#[pin_data]
pub(crate) struct FileState {
    engine: Arc<Engine>,
    device: Arc<Device>,
    /// Leaf lock: never held while taking `struct_mutex` or sleeping on
    /// the GPU.
    #[pin]
    handles: Mutex<Handles>,
}

impl FileState {
    fn new(engine: Arc<Engine>) -> impl PinInit<Self> {
        pin_init!(Self {
            device: engine.device().clone(),
            engine,
            handles <- kernel::new_mutex!(Handles { map: RBTree::new(), next: 1 }, "movgem_handles"),
        })
    }

    fn lookup(&self, handle: u32) -> Result<Arc<Object>> {
        self.handles.lock().map.get(&handle).cloned().ok_or(ENOENT)
    }

    fn insert(&self, obj: Arc<Object>) -> Result<u32> {
        let mut h = self.handles.lock();
        // Handles are never reused while the file is open; 2^32 creates
        // exhaust them.
        let handle = h.next;
        if handle == 0 {
            return Err(ENOSPC);
        }
        h.map.try_create_and_insert(handle, obj, GFP_KERNEL)?;
        h.next = handle.wrapping_add(1);
        Ok(handle)
    }

    fn remove(&self, handle: u32) -> Result<Arc<Object>> {
        self.handles.lock().map.remove(&handle).ok_or(ENOENT)
    }

    /// One ioctl: a method each.
    fn ioctl(&self, cmd: u32, arg: UserPtr) -> Result<c_long> {
        match cmd {
            uapi::IOCTL_CREATE => self.create(arg),
            uapi::IOCTL_CLOSE => self.close(arg),
            uapi::IOCTL_PWRITE => self.rw(arg, true),
            uapi::IOCTL_PREAD => self.rw(arg, false),
            uapi::IOCTL_MMAP => self.mmap(arg),
            uapi::IOCTL_SET_DOMAIN => self.set_domain(arg),
            uapi::IOCTL_MADVISE => self.madvise(arg),
            uapi::IOCTL_EXECBUF => self.execbuf(arg),
            uapi::IOCTL_BUSY => self.busy(arg),
            uapi::IOCTL_WAIT => self.wait(arg),
            uapi::IOCTL_PIN => self.pin(arg),
            uapi::IOCTL_UNPIN => self.unpin(arg),
            uapi::IOCTL_VMAP => self.vmap(arg, true),
            uapi::IOCTL_VUNMAP => self.vmap(arg, false),
            uapi::IOCTL_USERPTR => self.userptr(arg),
            uapi::IOCTL_GET_INFO => self.get_info(arg),
            _ => Err(ENOTTY),
        }
    }

    /// `CLOSE`: drops the handle; the object goes once the GPU is done.
    fn close(&self, arg: UserPtr) -> Result<c_long> {
        let a: uapi::Close = read(arg)?;
        pad_zero(a.pad)?;
        let obj = self.remove(a.handle)?;
        self.device.close_object(&obj);
        Ok(0)
    }

    /// `PWRITE` (`write`) and `PREAD`: copies through the page cache.
    fn rw(&self, arg: UserPtr, write: bool) -> Result<c_long> {
        let a: uapi::Rw = read(arg)?;
        pad_zero(a.pad)?;
        let obj = self.lookup(a.handle)?;
        let user = UserPtr::try_from(a.data_ptr).map_err(|_| EFAULT)?;
        obj.rw(a.offset, a.size, user, write)?;
        Ok(0)
    }

    /// `MMAP`: maps a page-aligned range of a shmem object's file into
    /// the caller; returns the address.
    fn mmap(&self, arg: UserPtr) -> Result<c_long> {
        let mut a: uapi::Mmap = read(arg)?;
        pad_zero(a.pad)?;
        let obj = self.lookup(a.handle)?;
        let len = (obj.npages() as u64) * PAGE_SIZE;
        let end = a.offset.checked_add(a.size).ok_or(EINVAL)?;
        if a.size == 0 || a.offset % PAGE_SIZE != 0 || a.size % PAGE_SIZE != 0 || end > len {
            return Err(EINVAL);
        }
        if obj.purged() {
            return Err(EFAULT);
        }
        a.addr_ptr = obj.shmem()?.vm_mmap(a.offset, a.size)?;
        write(arg, &a)?;
        Ok(0)
    }

    /// `SET_DOMAIN`: waits for the GPU, then makes the pages present.
    fn set_domain(&self, arg: UserPtr) -> Result<c_long> {
        let a: uapi::SetDomain = read(arg)?;
        pad_zero(a.pad)?;
        let all = uapi::DOMAIN_CPU | uapi::DOMAIN_GTT;
        if a.read_domains & !all != 0
            || a.write_domain & !all != 0
            || a.write_domain.count_ones() > 1
            || a.write_domain & !a.read_domains != 0
        {
            return Err(EINVAL);
        }
        let obj = self.lookup(a.handle)?;
        self.engine.wait_idle(&obj, -1)?;
        obj.prepare_access(a.write_domain != 0)?;
        Ok(0)
    }

    /// `MADVISE`: WILLNEED or DONTNEED; reports whether pages remain.
    fn madvise(&self, arg: UserPtr) -> Result<c_long> {
        let mut a: uapi::Madvise = read(arg)?;
        pad_zero(a.pad)?;
        if a.madv != uapi::MADV_WILLNEED && a.madv != uapi::MADV_DONTNEED {
            return Err(EINVAL);
        }
        let obj = self.lookup(a.handle)?;
        let retained = obj.madvise(&mut *self.device.struct_mutex.lock_killable()?, a.madv)?;
        a.retained = u32::from(retained);
        write(arg, &a)?;
        Ok(0)
    }

    /// `BUSY`: whether the GPU still uses the object.
    fn busy(&self, arg: UserPtr) -> Result<c_long> {
        let mut a: uapi::Busy = read(arg)?;
        let obj = self.lookup(a.handle)?;
        a.busy = u32::from(obj.active() > 0);
        write(arg, &a)?;
        Ok(0)
    }

    /// `WAIT`: waits (or polls, or forever) for the object to be idle;
    /// reports the time left.
    fn wait(&self, arg: UserPtr) -> Result<c_long> {
        let mut a: uapi::Wait = read(arg)?;
        if a.flags != 0 {
            return Err(EINVAL);
        }
        let obj = self.lookup(a.handle)?;
        let res = self.engine.wait_idle(&obj, a.timeout_ns);
        if let Ok(left) = res {
            a.timeout_ns = left;
        } else if a.timeout_ns >= 0 {
            a.timeout_ns = 0;
        }
        write(arg, &a)?;
        res.map(|_| 0)
    }

    /// Runs `pin` (PIN or VMAP) under `struct_mutex` with every folio
    /// of `obj` pinned long term, `FOLL_LONGTERM`'s rule: a pin held for
    /// as long as user space likes must not sit in ZONE_MOVABLE or CMA,
    /// where it would make memory offlining retry forever and
    /// `cma_alloc()` fail.  `memfd_pin_folios()`, without the lock (its
    /// moves go through our hook, in place), moves such folios out and
    /// pins them all with `FOLL_PIN`, which keeps them where they are;
    /// under the lock the object's pages must be exactly those folios,
    /// else `unpin` undoes the pin and the round starts again.  The
    /// folios stay pinned until the last PIN or VMAP is undone
    /// ([`release_longterm`]) or the object is destroyed.
    fn pin_longterm<T>(
        &self,
        obj: &Object,
        pin: impl Fn(&Object, &mut DeviceLocked) -> Result<T>,
        unpin: impl Fn(&Object, &mut DeviceLocked),
    ) -> Result<T> {
        /// Rounds before giving up, as GUP does when migration fails.
        const ROUNDS: usize = 3;
        /// How long a round waits for the object's requests (the hook
        /// refuses to move the pages of a busy object).
        const IDLE_WAIT_NS: i64 = 1_000_000_000;
        let skip = params::debug_skip_longterm_migrate();
        let counters = &self.device.counters;
        for round in 0..ROUNDS {
            if round > 0 {
                counters.inc(Counter::LongtermRetries);
                match self.engine.wait_idle(obj, IDLE_WAIT_NS) {
                    Err(e) if e == ERESTARTSYS => return Err(e),
                    // Still busy: the next round decides.
                    _ => (),
                }
            }
            obj.populate()?;
            let pinned = match obj.file() {
                Some(file) if !skip => match file.pin_longterm(obj.npages()) {
                    Ok(p) => Some(p),
                    // Migration failed (a busy object, a contended lock,
                    // no memory): try again.
                    Err(e) if e == ENOMEM || e == EBUSY || e == EAGAIN => continue,
                    Err(e) => {
                        counters.inc(Counter::LongtermFailed);
                        return Err(e);
                    }
                },
                _ => None,
            };
            // Declared after `pinned`: on every return below the lock goes
            // first, and the folios are unpinned without it.
            let mut locked = self.device.struct_mutex.lock_killable()?;
            let v = pin(obj, &mut locked)?;
            let st = obj.state(&mut locked);
            if pinned.as_ref().is_some_and(|p| !p.covers(&st.pages)) {
                unpin(obj, &mut locked);
                continue;
            }
            st.longterm_pins += 1;
            let spare = if st.longterm.is_none() {
                st.longterm = pinned;
                None
            } else {
                // Already pinned by another PIN or VMAP: the same folios.
                pinned
            };
            drop(locked);
            drop(spare);
            if !skip && obj.file().is_some() {
                counters.inc(Counter::LongtermPins);
            }
            return Ok(v);
        }
        counters.inc(Counter::LongtermFailed);
        Err(ENOMEM)
    }

    /// `PIN`: a display-style pin (binding first); reports the offset.
    /// The pages are pinned long term first ([`Self::pin_longterm`]).
    fn pin(&self, arg: UserPtr) -> Result<c_long> {
        let mut a: uapi::Pin = read(arg)?;
        pad_zero(a.pad)?;
        let obj = self.lookup(a.handle)?;
        a.offset = self.pin_longterm(&obj, Object::pin, |obj, locked| {
            // We took the pin just now, so there is one to drop.
            let _ = obj.unpin(locked);
        })?;
        if let Err(e) = write(arg, &a) {
            let released = {
                let mut locked = self.device.struct_mutex.lock();
                let _ = obj.unpin(&mut locked);
                release_longterm(&obj, &mut locked)
            };
            drop(released);
            return Err(e);
        }
        Ok(0)
    }

    /// `UNPIN`: drops a display-style pin.
    fn unpin(&self, arg: UserPtr) -> Result<c_long> {
        let a: uapi::Pin = read(arg)?;
        pad_zero(a.pad)?;
        let obj = self.lookup(a.handle)?;
        let released = {
            let mut locked = self.device.struct_mutex.lock();
            obj.unpin(&mut locked)?;
            release_longterm(&obj, &mut locked)
        };
        drop(released);
        Ok(0)
    }

    /// `VMAP` (`map`) and `VUNMAP`: a pinned kernel mapping of all
    /// pages, which are pinned long term first ([`Self::pin_longterm`]).
    fn vmap(&self, arg: UserPtr, map: bool) -> Result<c_long> {
        let a: uapi::Vmap = read(arg)?;
        pad_zero(a.pad)?;
        let obj = self.lookup(a.handle)?;
        if map {
            self.pin_longterm(&obj, Object::vmap, |obj, locked| {
                // We took the pin just now, so there is one to drop.
                let _ = obj.vunmap(locked);
            })?;
        } else {
            let released = {
                let mut locked = self.device.struct_mutex.lock();
                obj.vunmap(&mut locked)?;
                release_longterm(&obj, &mut locked)
            };
            drop(released);
        }
        Ok(0)
    }

    /// `GET_INFO`: device-wide numbers.
    fn get_info(&self, arg: UserPtr) -> Result<c_long> {
        let mut info = self.device.info();
        info.requests = self.engine.inflight();
        write(arg, &info)?;
        Ok(0)
    }

    /// `CREATE`: a shmem object of the size asked for, rounded up to
    /// pages, on the huge mount with `CREATE_HUGE`; reports its handle.
    fn create(&self, arg: UserPtr) -> Result<c_long> {
        let mut a: uapi::Create = read(arg)?;
        if a.flags & !uapi::CREATE_HUGE != 0 {
            return Err(EINVAL);
        }
        let pages = policy::pages_for_size(a.size, PAGE_SIZE, uapi::MAX_OBJECT_SIZE / PAGE_SIZE)
            .ok_or(if a.size > uapi::MAX_OBJECT_SIZE {
                E2BIG
            } else {
                EINVAL
            })?;
        let obj = self
            .device
            .create_object(pages as usize, a.flags & uapi::CREATE_HUGE != 0)?;
        let handle = self.insert_or_close(obj)?;
        a.handle = handle;
        if let Err(e) = write(arg, &a) {
            if let Ok(obj) = self.remove(handle) {
                self.device.close_object(&obj);
            }
            return Err(e);
        }
        Ok(0)
    }

    /// `USERPTR`: an object over the caller's memory; reports its handle.
    fn userptr(&self, arg: UserPtr) -> Result<c_long> {
        let mut a: uapi::Userptr = read(arg)?;
        if a.flags != 0 || a.handle != 0 || a.user_ptr % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        let pages =
            policy::pages_for_size(a.user_size, PAGE_SIZE, uapi::MAX_OBJECT_SIZE / PAGE_SIZE)
                .ok_or(if a.user_size > uapi::MAX_OBJECT_SIZE {
                    E2BIG
                } else {
                    EINVAL
                })?;
        let obj = self.device.create_userptr(a.user_ptr, pages as usize)?;
        a.handle = self.insert_or_close(obj)?;
        if let Err(e) = write(arg, &a) {
            if let Ok(obj) = self.remove(a.handle) {
                self.device.close_object(&obj);
            }
            return Err(e);
        }
        Ok(0)
    }

    /// Gives `obj` a handle, or closes it again.
    fn insert_or_close(&self, obj: Arc<Object>) -> Result<u32> {
        self.insert(obj.clone())
            .inspect_err(|_| self.device.close_object(&obj))
    }

    /// `EXECBUF`: binds the objects and queues a batch on the engine;
    /// reports each object's GTT offset.
    fn execbuf(&self, arg: UserPtr) -> Result<c_long> {
        let a: uapi::Execbuf = read(arg)?;
        if a.count == 0 || a.count > uapi::MAX_EXEC_OBJECTS {
            return Err(EINVAL);
        }
        let known_op = matches!(a.op, uapi::OP_NOP | uapi::OP_FILL | uapi::OP_CHECK);
        if a.flags & !uapi::EXEC_HANG != 0 || !known_op || a.duration_ns > engine::MAX_DURATION_NS {
            return Err(EINVAL);
        }
        let entry = size_of::<uapi::ExecObject>();
        let ptr = UserPtr::try_from(a.objects_ptr).map_err(|_| EFAULT)?;
        let mut reader = UserSlice::new(ptr, a.count as usize * entry).reader();
        let mut objects = KVec::with_capacity(a.count as usize, GFP_KERNEL)?;
        for _ in 0..a.count {
            let e: uapi::ExecObject = reader.read()?;
            if e.flags & !uapi::EXEC_OBJECT_WRITE != 0 {
                return Err(EINVAL);
            }
            let obj = self.lookup(e.handle)?;
            if objects
                .iter()
                .any(|(o, _): &(Arc<Object>, bool)| Arc::ptr_eq(o, &obj))
            {
                return Err(EINVAL);
            }
            objects.push((obj, e.flags & uapi::EXEC_OBJECT_WRITE != 0), GFP_KERNEL)?;
        }
        let batch = Batch {
            objects,
            op: a.op,
            value: a.value,
            duration_ns: a.duration_ns,
            hang: a.flags & uapi::EXEC_HANG != 0,
        };
        // A userptr range invalidated while it was being faulted in, or
        // pages the shrinker took back before the lock, ask for another
        // try.  From the LOCKED_FETCH_AFTER'th try on, such pages are
        // fetched under the lock, so that a drop_caches loop cannot starve
        // the submitter (gem_shrink's `reclaim` once got EAGAIN); a userptr
        // range that keeps changing gets EAGAIN.
        const LOCKED_FETCH_AFTER: u32 = 4;
        let mut tries = 0;
        let offsets = loop {
            // `debug_no_locked_fetch`: a deliberate breakage, the
            // fallback removed (its test's negative control).
            let locked = tries >= LOCKED_FETCH_AFTER && !params::debug_no_locked_fetch();
            match self.engine.submit(&batch, locked) {
                Err(e) if e == EAGAIN && tries < 64 => tries += 1,
                res => break res?,
            }
        };
        let mut writer = UserSlice::new(ptr, a.count as usize * entry).writer();
        let mut reader = UserSlice::new(ptr, a.count as usize * entry).reader();
        for offset in offsets.iter() {
            let mut e: uapi::ExecObject = reader.read()?;
            e.offset = *offset;
            writer.write(&e)?;
        }
        Ok(0)
    }

    /// Closes every handle left (the file is being released).
    fn close_all(&self) {
        loop {
            let next = {
                let mut h = self.handles.lock();
                let key = h.map.iter().next().map(|(k, _)| *k);
                key.and_then(|k| h.map.remove(&k))
            };
            match next {
                Some(obj) => self.device.close_object(&obj),
                None => break,
            }
        }
    }
}

/// A PIN or VMAP was undone: with the last of them, the object's
/// long-term pin on its folios, for the caller to drop (unpin) once it
/// has let go of `struct_mutex`.
fn release_longterm(obj: &Object, locked: &mut DeviceLocked) -> Option<PinnedFolios> {
    let st = obj.state(locked);
    st.longterm_pins = st.longterm_pins.saturating_sub(1);
    if st.longterm_pins == 0 {
        st.longterm.take()
    } else {
        None
    }
}

fn pad_zero(pad: u32) -> Result {
    if pad == 0 {
        Ok(())
    } else {
        Err(EINVAL)
    }
}

fn read<T: kernel::types::FromBytes>(arg: UserPtr) -> Result<T> {
    UserSlice::new(arg, size_of::<T>()).reader().read()
}

fn write<T: kernel::types::AsBytes>(arg: UserPtr, v: &T) -> Result {
    UserSlice::new(arg, size_of::<T>()).writer().write(v)
}

/// `/dev/movgem`, registered for an engine; deregistered on drop.
///
/// # Invariants
///
/// `misc` came from `movgem_misc_register` with `self` as its owner, and
/// `self` is pinned.
#[pin_data(PinnedDrop)]
pub(crate) struct MiscDevice {
    engine: Arc<Engine>,
    misc: core::sync::atomic::AtomicPtr<c_void>,
}

extern "C" {
    fn movgem_misc_register(owner: *mut c_void) -> *mut c_void;
    fn movgem_misc_deregister(misc: *mut c_void);
}

impl MiscDevice {
    /// Registers `/dev/movgem`; opening it gives a file of `engine`.
    pub(crate) fn new(engine: Arc<Engine>) -> Result<Pin<KBox<Self>>> {
        let this = KBox::pin_init(
            pin_init!(Self {
                engine,
                misc: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
            }),
            GFP_KERNEL,
        )?;
        let owner: *const Self = &*this;
        // SAFETY: `owner` is pinned and deregisters the device (after which
        // no open can start) before it goes away.
        let misc = unsafe { movgem_misc_register(owner.cast_mut().cast()) };
        let misc = kernel::error::from_err_ptr(misc)?;
        let misc = NonNull::new(misc).ok_or(ENOMEM)?;
        this.misc
            .store(misc.as_ptr(), core::sync::atomic::Ordering::Release);
        Ok(this)
    }
}

#[pinned_drop]
impl PinnedDrop for MiscDevice {
    fn drop(self: Pin<&mut Self>) {
        let misc = self
            .misc
            .swap(core::ptr::null_mut(), core::sync::atomic::Ordering::AcqRel);
        if !misc.is_null() {
            // SAFETY: registered by `new`, deregistered once here.
            unsafe { movgem_misc_deregister(misc) };
        }
    }
}

// SAFETY: the registration pointer is only handed back to the misc core,
// which any task may call; the engine is `Send` and `Sync`.
unsafe impl Send for MiscDevice {}
// SAFETY: as above.
unsafe impl Sync for MiscDevice {}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `owner` must be the owner of a registered `/dev/movgem` (an open holds
/// the module, which deregisters the device before freeing it).
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_open(owner: *mut c_void) -> *mut c_void {
    // SAFETY: by the caller's contract `owner` is a live `MiscDevice`.
    let misc = unsafe { &*owner.cast::<MiscDevice>() };
    match KBox::pin_init(FileState::new(misc.engine.clone()), GFP_KERNEL) {
        // SAFETY: the box is only ever turned back into a box by
        // `movgem_rs_release`, and never moved out of meanwhile.
        Ok(b) => unsafe { KBox::into_raw(Pin::into_inner_unchecked(b)) }.cast(),
        Err(e) => e.to_ptr(),
    }
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `priv_` must come from `movgem_rs_open` and not be used afterwards.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_release(priv_: *mut c_void) {
    // SAFETY: by the caller's contract this is the box `movgem_rs_open`
    // leaked, released exactly once.
    let file = unsafe { KBox::from_raw(priv_.cast::<FileState>()) };
    file.close_all();
}

/// C entry point, see `include/movgem_shim.h`.
///
/// # Safety
///
/// `priv_` must come from `movgem_rs_open` and the file must be open.
#[no_mangle]
pub(crate) unsafe extern "C" fn movgem_rs_ioctl(
    priv_: *mut c_void,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    // SAFETY: the file is open, so `release` has not freed the state.
    let file = unsafe { &*priv_.cast::<FileState>() };
    match file.ioctl(cmd, arg as UserPtr) {
        Ok(v) => v,
        Err(e) => e.to_errno() as c_long,
    }
}
