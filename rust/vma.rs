// SPDX-License-Identifier: GPL-2.0

//! Bindings of objects into the simulated GTT: the GTT's address space
//! (placement itself is `gtt.rs`, free of kernel types), the entries of a
//! binding, bind/unbind and display-style pins.
//!
//! A binding has two tables of entries, one frame per page of the object.
//! The shadow table (`ObjState::gtt_shadow`, under `struct_mutex`) is
//! software and always current.  The hardware table ([`HwTable`], behind
//! the object's `hw` spin lock) is what the engine reads; it may only be
//! written while the device is awake, and its contents are lost when the
//! device suspends (the device's `hw_generation` moves on).  As i915
//! restores its GGTT on resume, a binding's hardware entries are written
//! from the shadow before the first request that uses them after a bind
//! or a suspend ([`Object::sync_hw`]: under `struct_mutex`, with the
//! request's wakeref; the runtime PM callbacks themselves take no lock).
//! In-place migration rewrites the shadow entry always, and the hardware
//! entry only if it holds a wakeref (the device is runtime-active) and
//! the entries are current; otherwise it invalidates the hardware entries
//! ([`INVALIDATED`]), so that `sync_hw` restores them whatever the PM
//! state was: with runtime PM disabled (a system sleep) the device may be
//! active, its table and generation kept, and no wakeref to be had.

use core::sync::atomic::Ordering;

use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};

use crate::counters::Counter;
use crate::device::DeviceLocked;
use crate::gtt;
use crate::object::{ObjState, Object, PAGE_SIZE};
use crate::pages::Fetch;
use crate::params;
use crate::shmem::PageArray;
use crate::uapi;

/// [`HwTable::generation`] of entries not written since the binding was
/// made (or of no binding at all).
const UNWRITTEN: u64 = u64::MAX;

/// [`HwTable::generation`] of entries a migration could not rewrite:
/// never current, restored like entries lost in a suspend.  No device
/// generation reaches it (one per runtime suspend, from 0).
const INVALIDATED: u64 = u64::MAX - 1;

/// The hardware GTT entries of one binding.
pub(crate) struct HwTable {
    /// The frame each page of the binding points at.
    frames: PageArray<usize>,
    /// The device's `hw_generation` when `frames` were written; any
    /// other value means the hardware lost them (or never had them).
    generation: u64,
}

impl HwTable {
    /// Entries for an object of `frames.len()` pages, not written yet.
    pub(crate) fn new(frames: PageArray<usize>) -> Self {
        Self {
            frames,
            generation: UNWRITTEN,
        }
    }
}

/// The GTT's address space: allocated ranges, start -> size.
pub(crate) struct Gtt {
    ranges: RBTree<u64, u64>,
    used: u64,
    size: u64,
}

/// A GTT range node allocated before `struct_mutex` is taken.  An
/// allocation under the lock that has to wait for reclaim would wait for
/// memory only our shrinker can free, and our shrinker needs the lock:
/// the hot paths (create, execbuf) allocate everything first.
pub(crate) type GttNode = RBTreeNodeReservation<u64, u64>;

impl Gtt {
    /// An empty address space of `size` bytes.
    pub(crate) fn new(size: u64) -> Self {
        Self {
            ranges: RBTree::new(),
            used: 0,
            size,
        }
    }

    /// Bytes allocated.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// Reserves `size` bytes, page aligned; returns the start.  Without a
    /// preallocated `node`, allocates one without waiting for reclaim.
    fn insert(&mut self, size: u64, node: Option<GttNode>) -> Result<u64> {
        let start = gtt::find_hole(
            self.ranges.iter().map(|(&s, &l)| (s, l)),
            size,
            PAGE_SIZE as u64,
            self.size,
        )
        .ok_or(ENOSPC)?;
        let node = match node {
            Some(node) => node,
            None => GttNode::new(GFP_NOWAIT)?,
        };
        self.ranges.insert(node.into_node(start, size));
        self.used += size;
        Ok(start)
    }

    /// Frees the range starting at `start`.
    pub(crate) fn remove(&mut self, start: u64) {
        if let Some(size) = self.ranges.remove(&start) {
            self.used -= size;
        }
    }
}

impl Object {
    /// Binds the object into the GTT (fetching and pinning its pages) if
    /// it is not bound; returns its GTT offset.
    pub(crate) fn bind(&self, locked: &mut DeviceLocked) -> Result<u64> {
        self.bind_with(locked, None, Some(Fetch::Locked))
    }

    /// [`Object::bind`] with a GTT node allocated before the lock, and
    /// pages fetched as `fetch` says; with `None`, an object whose pages
    /// were released since [`Object::populate`] gets `EAGAIN` instead of
    /// fetching them under the lock.
    pub(crate) fn bind_with(
        &self,
        locked: &mut DeviceLocked,
        node: Option<GttNode>,
        fetch: Option<Fetch>,
    ) -> Result<u64> {
        if self.user_stale.swap(false, Ordering::AcqRel) && self.clear_binding(locked) {
            // The user range changed under the binding: dropped before the
            // object is used again.
            self.device.counters.inc(Counter::UserptrStaleUnbinds);
        }
        let st = self.state(locked);
        if let Some(offset) = st.gtt_offset {
            return Ok(offset);
        }
        if st.madv != uapi::MADV_WILLNEED {
            return Err(EFAULT);
        }
        if st.dead {
            return Err(ENOENT);
        }
        // A userptr object's pages come with each request instead.
        if self.user_range().is_none() {
            match fetch {
                None if st.pages.is_empty() => return Err(EAGAIN),
                None => {}
                Some(how) => self.get_pages_with(st, how)?,
            }
        }
        let offset = locked
            .gtt
            .insert((self.npages() * PAGE_SIZE) as u64, node)?;
        let st = self.state(locked);
        st.gtt_offset = Some(offset);
        st.pages_pin_count += 1;
        // The shadow entries now; the hardware ones before the first
        // request (`sync_hw`), with the device awake.
        let ObjState {
            pages, gtt_shadow, ..
        } = st;
        for (entry, page) in gtt_shadow.iter_mut().zip(pages.iter()) {
            *entry = page.pfn();
        }
        self.hw.lock().generation = UNWRITTEN;
        Ok(offset)
    }

    /// Drops the binding, if there is one: its range, its pin on the
    /// pages and its hardware entries.  Returns whether there was one.
    pub(crate) fn clear_binding(&self, locked: &mut DeviceLocked) -> bool {
        let st = self.state(locked);
        let Some(offset) = st.gtt_offset.take() else {
            return false;
        };
        st.pages_pin_count = st.pages_pin_count.saturating_sub(1);
        self.hw.lock().generation = UNWRITTEN;
        locked.gtt.remove(offset);
        true
    }

    /// Makes the hardware entries of the binding current, from the shadow
    /// table, if they are not: after the bind, or after the device lost
    /// them in a suspend (a restore).  The caller holds a wakeref, so the
    /// device is awake and stays so.
    pub(crate) fn sync_hw(&self, locked: &mut DeviceLocked) {
        if self.file().is_none() {
            return;
        }
        let generation = self.device.hw_generation();
        let st = self.state(locked);
        if st.gtt_offset.is_none() {
            return;
        }
        let mut hw = self.hw.lock();
        if hw.generation == generation {
            return;
        }
        if hw.generation != UNWRITTEN {
            if params::debug_skip_restore() {
                return;
            }
            self.device.counters.inc(Counter::GttRestores);
        }
        for (entry, &shadow) in hw.frames.iter_mut().zip(st.gtt_shadow.iter()) {
            *entry = shadow;
        }
        hw.generation = generation;
    }

    /// Copies the hardware entries of the binding to the start of `out`
    /// if they are current and fit; returns how many, `None` if the
    /// hardware lost them.  For the engine, which runs without
    /// `struct_mutex`: the object is active, so nothing rewrites them
    /// meanwhile.
    pub(crate) fn hw_frames(&self, out: &mut [usize]) -> Option<usize> {
        let generation = self.device.hw_generation();
        let hw = self.hw.lock();
        let n = hw.frames.len();
        if hw.generation != generation || n > out.len() {
            return None;
        }
        for (slot, &entry) in out.iter_mut().zip(hw.frames.iter()) {
            *slot = entry;
        }
        Some(n)
    }

    /// Points entry `index` of the binding at frame `pfn`: the shadow
    /// always, the hardware entry if `awake` (the caller holds a wakeref
    /// it did not have to wake the device for) and current.  A hardware
    /// entry not rewritten is invalidated instead (with the whole table),
    /// so that [`Object::sync_hw`] restores it before the next request:
    /// correctness never rests on what the PM state was.  Returns whether
    /// the hardware entry was written.
    pub(crate) fn rewrite_entry(
        &self,
        st: &mut ObjState,
        index: usize,
        pfn: usize,
        awake: bool,
    ) -> bool {
        if st.gtt_offset.is_none() {
            return false;
        }
        if let Some(entry) = st.gtt_shadow.get_mut(index) {
            *entry = pfn;
        }
        let generation = self.device.hw_generation();
        let mut hw = self.hw.lock();
        if awake && hw.generation == generation {
            if let Some(entry) = hw.frames.get_mut(index) {
                *entry = pfn;
                return true;
            }
        }
        if hw.generation != UNWRITTEN {
            hw.generation = INVALIDATED;
        }
        false
    }

    /// Compares every entry of the binding with the page cache: returns
    /// the entries compared and those pointing elsewhere.  Hardware
    /// entries count only while current.
    pub(crate) fn gtt_check(&self, locked: &mut DeviceLocked) -> (u64, u64) {
        let Some(file) = self.file() else {
            return (0, 0);
        };
        let generation = self.device.hw_generation();
        let st = self.state(locked);
        if st.gtt_offset.is_none() {
            return (0, 0);
        }
        let (mut checked, mut wrong) = (0u64, 0u64);
        for (index, &shadow) in st.gtt_shadow.iter().enumerate() {
            let want = file.lookup_pfn(index);
            checked += 1;
            wrong += u64::from(want != Some(shadow));
            let hw = self.hw.lock();
            if hw.generation == generation {
                checked += 1;
                wrong += u64::from(hw.frames.get(index).copied() != want);
            }
        }
        (checked, wrong)
    }

    /// Removes the binding; the pages stay cached, as in i915.
    pub(crate) fn unbind(&self, locked: &mut DeviceLocked) -> Result {
        let active = self.active() > 0;
        let st = self.state(locked);
        if st.gtt_offset.is_none() {
            return Err(EINVAL);
        }
        if st.pinned_vmas > 0 || active {
            return Err(EBUSY);
        }
        self.clear_binding(locked);
        Ok(())
    }

    /// Takes a display-style pin, binding first if needed.
    pub(crate) fn pin(&self, locked: &mut DeviceLocked) -> Result<u64> {
        self.shmem()?;
        let offset = self.bind(locked)?;
        self.state(locked).pinned_vmas += 1;
        Ok(offset)
    }

    /// Drops a display-style pin.
    pub(crate) fn unpin(&self, locked: &mut DeviceLocked) -> Result {
        let st = self.state(locked);
        if st.pinned_vmas == 0 {
            return Err(EINVAL);
        }
        st.pinned_vmas -= 1;
        Ok(())
    }
}
