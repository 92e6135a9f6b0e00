// SPDX-License-Identifier: GPL-2.0

//! Bindings of objects into the simulated GTT: the GTT's address space
//! (placement itself is `gtt.rs`, free of kernel types), bind/unbind and
//! display-style pins.

use core::sync::atomic::Ordering;

use kernel::prelude::*;
use kernel::rbtree::{RBTree, RBTreeNodeReservation};

use crate::counters::Counter;
use crate::device::DeviceLocked;
use crate::gtt;
use crate::object::{Object, PAGE_SIZE};
use crate::uapi;

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
        self.bind_with(locked, None, true)
    }

    /// [`Object::bind`] with a GTT node allocated before the lock.  With
    /// `fetch` false, an object whose pages were released since
    /// [`Object::populate`] gets `EAGAIN` instead of fetching them under
    /// the lock.
    pub(crate) fn bind_with(
        &self,
        locked: &mut DeviceLocked,
        node: Option<GttNode>,
        fetch: bool,
    ) -> Result<u64> {
        if self.user_stale.swap(false, Ordering::AcqRel) {
            // The user range changed under the binding: drop it before the
            // object is used again.
            let stale = self.state(locked).gtt_offset.take();
            if let Some(offset) = stale {
                locked.gtt.remove(offset);
                self.state(locked).pages_pin_count -= 1;
                self.device.counters.inc(Counter::UserptrStaleUnbinds);
            }
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
            if !fetch && st.pages.is_empty() {
                return Err(EAGAIN);
            }
            self.get_pages(st)?;
        }
        let offset = locked
            .gtt
            .insert((self.npages() * PAGE_SIZE) as u64, node)?;
        let st = self.state(locked);
        st.gtt_offset = Some(offset);
        st.pages_pin_count += 1;
        Ok(offset)
    }

    /// Removes the binding; the pages stay cached, as in i915.
    pub(crate) fn unbind(&self, locked: &mut DeviceLocked) -> Result {
        let active = self.active() > 0;
        let st = self.state(locked);
        let offset = st.gtt_offset.ok_or(EINVAL)?;
        if st.pinned_vmas > 0 || active {
            return Err(EBUSY);
        }
        st.gtt_offset = None;
        st.pages_pin_count -= 1;
        locked.gtt.remove(offset);
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
