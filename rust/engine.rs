// SPDX-License-Identifier: GPL-2.0

//! The simulated GPU engine: its queue, requests, waits and resets.
//!
//! `EXECBUF` binds the objects, takes a runtime-PM wakeref and queues a
//! [`Request`] on the engine's ordered workqueue: like a GPU ring, the
//! engine runs one batch at a time, in submission order, so a later
//! batch's writes land after an earlier one's (and a hang stalls the
//! batches behind it until it times out or is reset).  The engine reaches
//! a shmem object's memory through the hardware GTT entries of its
//! binding (`vma.rs`), read when the batch runs, not through references
//! taken at submission: a fill writes the frames the entries point at, a
//! check reads them.  Had migration moved a folio and left its entry
//! behind, the write would land in the old frame, and a later read
//! through the page cache, or the GTT check, would show it.  Entries the
//! hardware lost in a suspend and nobody restored are unreachable: every
//! page behind them counts as a fault, and a check as wrong.  A userptr
//! object's pages come with the request, pinned (`UserPin`): unpinned,
//! and marked dirty if the batch may have written them, as it retires.
//!
//! A request keeps its objects active until its duration has passed; a
//! hanging one until `hang_timeout_ms` or a reset.

use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::{Arc, CondVar, Mutex, SpinLock};
use kernel::workqueue::{Queue, Work, WorkItem};

use crate::counters::Counter;
use crate::device::Device;
use crate::object::Object;
use crate::pages::{page_buffer, Fetch};
use crate::params;
use crate::policy;
use crate::shmem::PageArray;
use crate::sync::now_ns;
use crate::trace::{self, RetireHow};
use crate::uapi;
use crate::userptr::{Seq, UserPin};
use crate::vma::GttNode;

/// Longest batch a user may ask for: 60 s.
pub(crate) const MAX_DURATION_NS: u64 = 60_000_000_000;

/// Longest a batch's submitter waits for retirements to free memory for
/// its objects' pages, in all (as the OOM notifier's wait).
const POPULATE_WAIT_NS: u64 = 2_000_000_000;

/// What waiters on the engine look at.
struct EngineState {
    /// Requests submitted and not yet retired.
    inflight: u32,
    /// Requests retired since load (a waiter's progress mark).
    retired: u64,
    /// Bumped by a reset; requests that started earlier end at once.
    resets: u64,
}

/// The engine of a device.  Requests hold it; the device does not.
#[pin_data]
pub(crate) struct Engine {
    device: Arc<Device>,
    /// The ring: one batch at a time, in submission order.
    wq: WorkQueue,
    /// Request accounting, for waits and resets.
    #[pin]
    state: Mutex<EngineState>,
    /// Signalled whenever a request retires or the engine is reset.
    #[pin]
    idle: CondVar,
    /// The last request's number, for the trace.
    seqno: core::sync::atomic::AtomicU64,
}

/// One page of a userptr object the batch touches.
struct GpuPage {
    page: UserPin,
    write: bool,
}

/// What a request works on, allocated at submission: running and
/// retiring a request allocate nothing, since retiring is what makes its
/// objects' pages reclaimable again.
#[derive(Default)]
struct Payload {
    /// Userptr pages, pinned for the request.
    pages: PageArray<GpuPage>,
    /// Room for the frames of every shmem object, filled from the GTT
    /// when the batch runs.
    frames: PageArray<usize>,
    /// A page-sized buffer for ops that read or write (`FILL`, `CHECK`).
    buf: KVec<u8>,
}

extern "C" {
    fn movgem_frame_read(
        pfn: kernel::ffi::c_ulong,
        offset: usize,
        buf: *mut kernel::ffi::c_void,
        len: usize,
    ) -> kernel::ffi::c_int;
    fn movgem_frame_write(
        pfn: kernel::ffi::c_ulong,
        offset: usize,
        buf: *const kernel::ffi::c_void,
        len: usize,
    ) -> kernel::ffi::c_int;
}

/// Reads a whole page at frame `pfn` into `buf`.
///
/// # Safety
///
/// `pfn` must be a frame the caller keeps alive for the call: a current
/// GTT entry of an object that is active (nothing moves or frees its
/// pages while it is).
unsafe fn frame_read(pfn: usize, buf: &mut [u8]) -> Result {
    // SAFETY: the caller keeps the frame alive; `buf` is writable for its
    // length, and the shim checks the range.
    kernel::error::to_result(unsafe {
        movgem_frame_read(pfn as _, 0, buf.as_mut_ptr().cast(), buf.len())
    })
}

/// Writes `buf` to the page at frame `pfn`.
///
/// # Safety
///
/// As for [`frame_read`].
unsafe fn frame_write(pfn: usize, buf: &[u8]) -> Result {
    // SAFETY: the caller keeps the frame alive; `buf` is readable for its
    // length, and the shim checks the range.
    kernel::error::to_result(unsafe {
        movgem_frame_write(pfn as _, 0, buf.as_ptr().cast(), buf.len())
    })
}

/// A batch in flight.
#[pin_data]
pub(crate) struct Request {
    #[pin]
    work: Work<Request>,
    engine: Arc<Engine>,
    /// The objects, with their write flag.
    objects: KVec<(Arc<Object>, bool)>,
    /// Taken (and so dropped) before the objects become idle.
    #[pin]
    pages: SpinLock<Payload>,
    op: u32,
    value: u32,
    duration_ns: u64,
    hang: bool,
    /// `EngineState::resets` when submitted.
    resets: u64,
    /// Its number on the engine, for the trace.
    seqno: u64,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Request { self.work }
}

impl WorkItem for Request {
    type Pointer = Arc<Request>;

    fn run(this: Arc<Request>) {
        let how = this.execute();
        this.retire();
        trace::request_retire(this.seqno, how);
    }
}

/// What `EXECBUF` asks for, validated.
pub(crate) struct Batch {
    /// Objects with their write flag; no duplicates.
    pub(crate) objects: KVec<(Arc<Object>, bool)>,
    pub(crate) op: u32,
    pub(crate) value: u32,
    pub(crate) duration_ns: u64,
    pub(crate) hang: bool,
}

impl Request {
    fn reset_requested(&self) -> bool {
        self.engine.state.lock().resets != self.resets
    }

    /// Runs the batch over the pages, then keeps the objects busy;
    /// returns how it ended.
    fn execute(&self) -> RetireHow {
        let start = now_ns();
        {
            let mut payload = self.pages.lock();
            let Payload { pages, frames, buf } = &mut *payload;
            let counters = &self.engine.device.counters;
            let dwords = (buf.len() / 4) as u64;
            let mut bad = 0u64;
            if self.op == uapi::OP_FILL {
                for chunk in buf.chunks_exact_mut(4) {
                    chunk.copy_from_slice(&self.value.to_le_bytes());
                }
            }
            let wrong = |buf: &[u8]| {
                buf.chunks_exact(4)
                    .filter(|c| c != &self.value.to_le_bytes())
                    .count() as u64
            };
            for (obj, write) in self.objects.iter() {
                if obj.user_range().is_some() {
                    continue;
                }
                let Some(n) = obj.hw_frames(frames) else {
                    // Lost in a suspend and not restored: unreachable.
                    counters.add(Counter::GttFaults, obj.npages() as u64);
                    if self.op == uapi::OP_CHECK {
                        bad += obj.npages() as u64 * dwords;
                    }
                    continue;
                };
                for &pfn in frames.iter().take(n) {
                    match self.op {
                        uapi::OP_FILL if *write => {
                            // SAFETY: a current entry of an active object:
                            // nothing moves or frees its pages meanwhile.
                            let _ = unsafe { frame_write(pfn, buf) };
                        }
                        uapi::OP_CHECK => {
                            // SAFETY: as for the fill.
                            if unsafe { frame_read(pfn, buf) }.is_ok() {
                                bad += wrong(buf);
                            }
                        }
                        _ => {}
                    }
                }
            }
            for p in pages.iter() {
                match self.op {
                    uapi::OP_FILL if p.write => {
                        let _ = p.page.write(0, buf);
                    }
                    uapi::OP_CHECK => {
                        if p.page.read(0, buf).is_ok() {
                            bad += wrong(buf);
                        }
                    }
                    _ => {}
                }
            }
            if self.op == uapi::OP_CHECK {
                counters.add(Counter::GpuCheckErrors, bad);
            }
        }
        loop {
            let elapsed = now_ns().saturating_sub(start);
            let limit = if self.hang {
                u64::from(params::hang_timeout_ms()) * 1_000_000
            } else {
                self.duration_ns
            };
            if self.reset_requested() {
                self.engine.device.counters.inc(Counter::RequestsReset);
                return RetireHow::Reset;
            }
            if elapsed >= limit {
                if self.hang {
                    self.engine.device.counters.inc(Counter::HangsTimedOut);
                    return RetireHow::HangTimedOut;
                }
                return RetireHow::Completed;
            }
            let ms = ((limit - elapsed) / 1_000_000).clamp(1, 5) as u32;
            // SAFETY: a worker may sleep.
            unsafe { bindings::msleep(ms) };
        }
    }

    /// Drops the page references and pins, then makes the objects idle,
    /// releases the wakeref and wakes waiters.
    fn retire(&self) {
        // Out of the lock first: freeing a kvmalloc'ed array may sleep, and
        // so may marking a written userptr page dirty (its folio lock).
        let Payload { pages, .. } = core::mem::take(&mut *self.pages.lock());
        for p in pages {
            if p.write {
                p.page.unpin_dirty();
            }
        }
        for (obj, _) in self.objects.iter() {
            obj.retire();
        }
        self.engine.device.pm.put_detached();
        {
            let mut state = self.engine.state.lock();
            state.inflight -= 1;
            state.retired += 1;
        }
        self.engine.idle.notify_all();
    }
}

/// `ETIME`, which the 6.12 `kernel::error::code` lacks.
pub(crate) fn etime() -> Error {
    Error::from_errno(-(bindings::ETIME as i32))
}

impl Engine {
    /// The engine of `device`, with its ring.
    pub(crate) fn new(device: Arc<Device>) -> Result<Arc<Self>> {
        let wq = WorkQueue::new()?;
        Arc::pin_init(
            pin_init!(Self {
                device,
                wq,
                state <- kernel::new_mutex!(
                    EngineState { inflight: 0, resets: 0, retired: 0 },
                    "movgem_engine"
                ),
                idle <- kernel::new_condvar!("movgem_engine_idle"),
                seqno: core::sync::atomic::AtomicU64::new(0),
            }),
            GFP_KERNEL,
        )
    }

    /// The device the engine works for.
    pub(crate) fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// Requests submitted and not yet retired.
    pub(crate) fn inflight(&self) -> u32 {
        self.state.lock().inflight
    }

    /// Ends every request, waits until they have retired and their work
    /// functions have returned (module unload).  Afterwards no request
    /// holds the engine: the caller's reference can be the last, and
    /// dropping it destroys the ring outside of it.
    pub(crate) fn drain(&self) {
        self.reset();
        self.wait_all_idle();
        self.wq.flush();
    }

    /// Submits `batch`: binds every object, marks it active and queues the
    /// request on `queue`.  Returns the GTT offsets, in order.
    /// `EAGAIN` if a userptr range was invalidated meanwhile, or, unless
    /// `fetch_locked`, if the shrinker took back a shmem object's pages
    /// between populating them and the lock: try again.  With
    /// `fetch_locked` such pages are fetched under `struct_mutex` from the
    /// page cache, without direct reclaim (`Fetch::Cached`), as i915's
    /// execbuf gets pages under its locks; if they are gone, `EAGAIN` too
    /// (populate again, where our shrinker can make room).
    pub(crate) fn submit(self: &Arc<Self>, batch: &Batch, fetch_locked: bool) -> Result<KVec<u64>> {
        let device = &self.device;
        // Wake the device before taking struct_mutex: resuming may sleep.
        let wakeref = device.pm.get()?;
        let mut offsets = KVec::with_capacity(batch.objects.len(), GFP_KERNEL)?;
        let mut objects = KVec::with_capacity(batch.objects.len(), GFP_KERNEL)?;
        let mut pages: PageArray<GpuPage> = PageArray::default();
        // Pages are made present before struct_mutex: userptr ranges are
        // faulted in (that sleeps, allocates and takes mmap_lock), shmem pages
        // allocated where our shrinker can make room for them.
        // A userptr range is pinned, as DMA needs (see `UserRange::pin`);
        // with `userptr_keep_pages` a second time, for the object to keep
        // (a module cannot add a pin to a pinned page: `folio_add_pin()` is
        // not exported).
        type Pinned = (Seq, PageArray<UserPin>, Option<PageArray<UserPin>>);
        let mut user: KVec<Option<Pinned>> = KVec::with_capacity(batch.objects.len(), GFP_KERNEL)?;
        for (obj, write) in batch.objects.iter() {
            let fetched = match obj.user_range() {
                Some(range) => {
                    let seq = range.read_begin()?;
                    let got = range.pin(*write)?;
                    device
                        .counters
                        .add(Counter::UserptrFaultedPages, got.len() as u64);
                    let keep = if params::userptr_keep_pages() {
                        Some(range.pin(*write)?)
                    } else {
                        None
                    };
                    Some((seq, got, keep))
                }
                None => {
                    // Bound objects hold their pages already; others get them
                    // here, without struct_mutex (see `Object::populate`).
                    self.populate_waiting(obj)?;
                    None
                }
            };
            user.push(fetched, GFP_KERNEL)?;
        }
        if params::debug_release_before_bind() {
            self.release_populated(batch)?;
        }
        // Everything the critical section needs is allocated before it (see
        // `GttNode`): page slots for every userptr object, frame slots for
        // the largest shmem object, a GTT node each, and the request
        // itself.
        let user_pages: usize = batch
            .objects
            .iter()
            .filter(|(obj, _)| obj.user_range().is_some())
            .map(|(obj, _)| obj.npages())
            .sum();
        pages.reserve(user_pages, GFP_KERNEL)?;
        let most = batch
            .objects
            .iter()
            .filter(|(obj, _)| obj.user_range().is_none())
            .map(|(obj, _)| obj.npages())
            .max()
            .unwrap_or(0);
        let frames = PageArray::from_elem(0usize, most)?;
        let buf = match batch.op {
            uapi::OP_FILL | uapi::OP_CHECK => page_buffer()?,
            _ => KVec::new(),
        };
        let mut nodes = KVec::with_capacity(batch.objects.len(), GFP_KERNEL)?;
        for _ in batch.objects.iter() {
            nodes.push(Some(GttNode::new(GFP_KERNEL)?), GFP_KERNEL)?;
        }
        for (obj, write) in batch.objects.iter() {
            objects.push((obj.clone(), *write), GFP_KERNEL)?;
        }
        let resets = self.state.lock().resets;
        let req = Arc::pin_init(
            pin_init!(Request {
                work <- kernel::new_work!("movgem_request"),
                engine: self.clone(),
                objects,
                pages <- kernel::new_spinlock!(Payload::default(), "movgem_request_pages"),
                op: batch.op,
                value: batch.value,
                duration_ns: batch.duration_ns,
                hang: batch.hang,
                resets,
                seqno: self.seqno.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1,
            }),
            GFP_KERNEL,
        )?;
        {
            let mut locked = device.struct_mutex.lock_killable()?;
            for (((obj, write), fetched), node) in batch
                .objects
                .iter()
                .zip(user.iter_mut())
                .zip(nodes.iter_mut())
            {
                let refetch =
                    fetch_locked && fetched.is_none() && obj.state(&mut locked).pages.is_empty();
                let offset = match obj.bind_with(
                    &mut locked,
                    node.take(),
                    fetch_locked.then_some(Fetch::Cached),
                ) {
                    // Gone from the page cache: the caller populates again
                    // without the lock, where our shrinker can make room.
                    Err(e) if refetch && e == ENOMEM => return Err(EAGAIN),
                    r => r?,
                };
                offsets.push(offset, GFP_KERNEL)?;
                if refetch {
                    device.counters.inc(Counter::SubmitLockedFetches);
                }
                if let Some((seq, got, keep)) = fetched {
                    // i915 keeps a userptr object's pages after the request.
                    if let Some(keep) = keep {
                        obj.keep_user_pages(*seq, keep);
                    }
                    for page in core::mem::take(got) {
                        pages.push(
                            GpuPage {
                                page,
                                write: *write,
                            },
                            GFP_KERNEL,
                        )?;
                    }
                } else {
                    // The hardware entries, before the request can run
                    // (the device is awake: we hold a wakeref).
                    obj.sync_hw(&mut locked);
                }
            }
            *req.pages.lock() = Payload { pages, frames, buf };
            // Mark the objects busy while the hook is still locked out, so it
            // never sees them bound, idle and about to be used; and under
            // notifier_lock, so that an invalidation either came before (and
            // we retry) or will find them busy.
            let stale = {
                let _guard = device.notifier_lock.lock();
                let stale =
                    batch
                        .objects
                        .iter()
                        .zip(user.iter())
                        .any(|((obj, _), fetched)| match (obj.user_range(), fetched) {
                            (Some(range), Some((seq, _, _))) => range.read_retry(*seq),
                            _ => false,
                        });
                if !stale {
                    for (obj, _) in req.objects.iter() {
                        obj.activate();
                    }
                }
                stale
            };
            if stale {
                return Err(EAGAIN);
            }
            self.state.lock().inflight += 1;
        }
        // The request owns the wakeref from here; it drops it on retiring.
        core::mem::forget(wakeref);
        device.counters.inc(Counter::Requests);
        trace::request_submit(req.seqno, req.op, req.objects.len(), req.hang);
        // A freshly allocated work item cannot be queued already.
        let _ = self.wq.queue().enqueue(req);
        Ok(offsets)
    }

    /// Ends every request in flight now.
    pub(crate) fn reset(&self) {
        self.state.lock().resets += 1;
        self.idle.notify_all();
    }

    /// Waits until `obj` is idle.  `timeout_ns` < 0 waits forever, 0 only
    /// polls.  Returns the time left, `ETIME` on timeout, `ERESTARTSYS` on a
    /// signal.
    pub(crate) fn wait_idle(&self, obj: &Object, timeout_ns: i64) -> Result<i64> {
        let start = now_ns();
        let mut guard = self.state.lock();
        loop {
            if obj.active() == 0 {
                let spent = now_ns().saturating_sub(start) as i64;
                return Ok(if timeout_ns < 0 {
                    timeout_ns
                } else {
                    (timeout_ns - spent).max(0)
                });
            }
            let jiffies = if timeout_ns < 0 {
                kernel::time::msecs_to_jiffies(u32::MAX)
            } else {
                let left = timeout_ns - now_ns().saturating_sub(start) as i64;
                if left <= 0 {
                    return Err(etime());
                }
                kernel::time::msecs_to_jiffies(
                    ((left as u64).div_ceil(1_000_000)).min(u64::from(u32::MAX)) as u32,
                )
            };
            match self.idle.wait_interruptible_timeout(&mut guard, jiffies) {
                kernel::sync::CondVarTimeoutResult::Signal { .. } => return Err(ERESTARTSYS),
                kernel::sync::CondVarTimeoutResult::Timeout
                    if timeout_ns >= 0 && obj.active() > 0 =>
                {
                    return Err(etime())
                }
                _ => {}
            }
        }
    }

    /// Waits at most `timeout_ns` for a request in flight now to retire;
    /// returns whether one did.  `false` at once if none is in flight or the
    /// task has a signal pending.  Takes only the engine's own lock, which
    /// nothing holds across an allocation, so the OOM notifier may call it.
    pub(crate) fn wait_for_retire(&self, timeout_ns: u64) -> bool {
        let start = now_ns();
        let mut guard = self.state.lock();
        let mark = guard.retired;
        if guard.inflight == 0 {
            return false;
        }
        loop {
            if guard.retired != mark {
                return true;
            }
            let left = timeout_ns.saturating_sub(now_ns().saturating_sub(start));
            if left == 0 {
                return false;
            }
            let jiffies = kernel::time::msecs_to_jiffies(
                left.div_ceil(1_000_000).min(u64::from(u32::MAX)) as u32,
            );
            if let kernel::sync::CondVarTimeoutResult::Signal { .. } =
                self.idle.wait_interruptible_timeout(&mut guard, jiffies)
            {
                return false;
            }
        }
    }

    /// [`Object::populate`] for a batch; if it fails for memory while
    /// requests are in flight, waits for one to retire and tries again
    /// (its objects may then be purged or released by the next attempt's
    /// `shrink_self`), for at most `POPULATE_WAIT_NS` in all: `ENOMEM`
    /// once the GPU holds nothing more that it is about to give back.
    /// i915's `shmem_get_pages()` gives up at once; here every batch
    /// queued behind a hang stays active until the reset, and gem_shrink's
    /// `hang` got `ENOMEM` while the memory it needed was one reset away.
    /// Without the shrinker nothing of ours would be given back: no wait.
    fn populate_waiting(&self, obj: &Object) -> Result {
        let deadline = now_ns() + POPULATE_WAIT_NS;
        loop {
            match obj.populate() {
                Err(e) if e == ENOMEM && params::shrinker_enabled() => {
                    let left = deadline.saturating_sub(now_ns());
                    if left == 0 || !self.wait_for_retire(left) {
                        return Err(e);
                    }
                    self.device.counters.inc(Counter::PopulateWaits);
                }
                done => return done,
            }
        }
    }

    /// Test aid (`debug_release_before_bind`): gives back the pages of
    /// every unbound, idle shmem object of `batch`, as a `drop_caches`
    /// racing with the submitter after [`Object::populate`] would.
    fn release_populated(&self, batch: &Batch) -> Result {
        let mut locked = self.device.struct_mutex.lock_killable()?;
        for (obj, _) in batch.objects.iter() {
            if obj.user_range().is_some() {
                continue;
            }
            let snap = obj.snapshot(obj.state(&mut locked));
            if policy::shrink_action(&snap, true, true, true)
                == (policy::ShrinkAction::Release { unbind: false })
            {
                obj.release_pages(&mut locked, false);
            }
        }
        Ok(())
    }

    /// Waits until no request is in flight (module unload).
    pub(crate) fn wait_all_idle(&self) {
        let mut guard = self.state.lock();
        while guard.inflight > 0 {
            self.idle.wait(&mut guard);
        }
    }
}

/// A workqueue of ours (the engine's ring, the device's purge worker);
/// destroying it waits for what is queued.
///
/// # Invariants
///
/// `wq` came from `alloc_workqueue` and is destroyed only on drop.
pub(crate) struct WorkQueue {
    wq: core::ptr::NonNull<kernel::ffi::c_void>,
}

extern "C" {
    fn movgem_wq_alloc() -> *mut kernel::ffi::c_void;
    fn movgem_wq_alloc_unbound() -> *mut kernel::ffi::c_void;
    fn movgem_wq_flush(wq: *mut kernel::ffi::c_void);
    fn movgem_wq_destroy(wq: *mut kernel::ffi::c_void);
}

// SAFETY: a workqueue may be used and destroyed from any task.
unsafe impl Send for WorkQueue {}
// SAFETY: queueing work is thread safe.
unsafe impl Sync for WorkQueue {}

impl WorkQueue {
    /// An ordered `WQ_MEM_RECLAIM` queue (it makes progress when no
    /// kworker can be created): the engine's ring.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: no preconditions.
        Self::from_raw(unsafe { movgem_wq_alloc() })
    }

    /// An unbound `WQ_MEM_RECLAIM` queue whose work items run side by
    /// side: the device's purge worker, where a truncation waiting for a
    /// folio lock must not hold up the others.
    pub(crate) fn new_unbound() -> Result<Self> {
        // SAFETY: no preconditions.
        Self::from_raw(unsafe { movgem_wq_alloc_unbound() })
    }

    fn from_raw(wq: *mut kernel::ffi::c_void) -> Result<Self> {
        // INVARIANT: a queue from `alloc_workqueue`, or an error.
        core::ptr::NonNull::new(wq)
            .map(|wq| Self { wq })
            .ok_or(ENOMEM)
    }

    /// Waits until every work item queued so far has finished.
    pub(crate) fn flush(&self) {
        // SAFETY: `wq` is a live workqueue by the type invariant.
        unsafe { movgem_wq_flush(self.wq.as_ptr()) }
    }

    pub(crate) fn queue(&self) -> &Queue {
        // SAFETY: `wq` is a live workqueue until drop, and the returned
        // reference borrows `self`.
        unsafe { Queue::from_raw(self.wq.as_ptr().cast::<bindings::workqueue_struct>()) }
    }
}

impl Drop for WorkQueue {
    fn drop(&mut self) {
        // SAFETY: we own the workqueue by the type invariant.
        unsafe { movgem_wq_destroy(self.wq.as_ptr()) }
    }
}
