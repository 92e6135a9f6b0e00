// SPDX-License-Identifier: GPL-2.0

//! An object's pages: fetching, installing and releasing them, the
//! kernel mapping (vmap) of all of them, and the self-test pattern (as
//! i915's `i915_gem_pages.c` and `i915_gem_shmem.c`).

use kernel::prelude::*;

use crate::counters::Counter;
use crate::device::DeviceLocked;
use crate::object::{ObjState, Object, PAGE_SIZE};
use crate::params;
use crate::policy;
use crate::shmem::{PageAlloc, PageArray, PageRef, ShmemFile, Vmap};
use crate::uapi;

extern "C" {
    fn movgem_fatal_signal_pending() -> bool;
}

fn fatal_signal_pending() -> bool {
    // SAFETY: reads the current task's pending signals; no preconditions.
    unsafe { movgem_fatal_signal_pending() }
}

/// How [`Object::fetch_pages`] may get an object's pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// Without `struct_mutex`: shrink our own idle objects, then try hard.
    Unlocked,
    /// Under `struct_mutex`: try hard; our shrinker cannot help.
    Locked,
    /// Under `struct_mutex`, without direct reclaim, which would keep our
    /// shrinker locked out for everyone meanwhile: pages still in the
    /// page cache, else `ENOMEM` at once.
    Cached,
}

/// Pages fetched for an object, and their frame numbers.
pub(crate) type Fetched = (PageArray<PageRef>, PageArray<usize>);

impl Object {
    /// Fetches the object's pages if it does not hold them.  Under
    /// `struct_mutex` this allocates in its NOFS scope, where our own
    /// shrinker cannot help: callers that can, [`Object::populate`] first.
    pub(crate) fn get_pages(&self, st: &mut ObjState) -> Result {
        if self.holds_pages(st)? {
            return Ok(());
        }
        // Under `struct_mutex`: our own shrinker cannot run, so no purge
        // between the attempts.
        self.get_pages_with(st, Fetch::Locked)
    }

    /// [`Object::get_pages`] with `how` (`Locked` or `Cached`).
    pub(crate) fn get_pages_with(&self, st: &mut ObjState, how: Fetch) -> Result {
        if self.holds_pages(st)? {
            return Ok(());
        }
        let fetched = self.fetch_pages(how)?;
        self.install_pages(st, fetched)
    }

    /// Whether the object holds its pages; `ENOENT` once it is being
    /// destroyed, `EFAULT` once purged (it can never have them again).
    fn holds_pages(&self, st: &ObjState) -> Result<bool> {
        if st.dead {
            return Err(ENOENT);
        }
        if self.purged() {
            return Err(EFAULT);
        }
        Ok(!st.pages.is_empty())
    }

    /// References on every page, and their frame numbers.  As i915's
    /// `shmem_sg_alloc_table()`: a page is first allocated without
    /// retrying; if that fails and `may_shrink` (the caller does not hold
    /// `struct_mutex`), our own idle objects are shrunk by twice the
    /// object's size and the page is allocated with
    /// `__GFP_RETRY_MAYFAIL`: `ENOMEM`, never the OOM killer, on behalf
    /// of a GPU object.  `EINTR` once the task is being killed: a 64 MiB
    /// object is 16,384 allocations, each slow under pressure.
    fn fetch_pages(&self, how: Fetch) -> Result<Fetched> {
        let file = self.shmem()?;
        let mut pages = PageArray::with_capacity(self.npages())?;
        let mut pfns = PageArray::with_capacity(self.npages())?;
        // With the shrinker off nothing at all can free these pages until
        // the object lets them go: unevictable before the first page, as
        // i915's shmem_sg_alloc_table() marks every pinned mapping, so that
        // reclaim never scans them, the ones being fetched included
        // (Documentation/design.md, "Unevictable while nothing can free
        // them").  Only a hint to reclaim: a racing release that clears it
        // costs scans, not data.
        let mark = !params::shrinker_enabled();
        if mark {
            file.set_unevictable();
        }
        if let Err(e) = self.fetch_into(file, how, &mut pages, &mut pfns) {
            if mark {
                file.clear_unevictable(&pages);
            }
            return Err(e);
        }
        Ok((pages, pfns))
    }

    fn fetch_into(
        &self,
        file: &ShmemFile,
        how: Fetch,
        pages: &mut PageArray<PageRef>,
        pfns: &mut PageArray<usize>,
    ) -> Result {
        for page in 0..self.npages() {
            if fatal_signal_pending() {
                return Err(EINTR);
            }
            let first = match how {
                Fetch::Cached => PageAlloc::Cached,
                _ => PageAlloc::Light,
            };
            let folio = match file.page_with(page, first) {
                Ok(folio) => folio,
                Err(e) if e == ENOMEM && how != Fetch::Cached => {
                    if how == Fetch::Unlocked {
                        self.device.shrink_self(2 * self.npages() as u64);
                    }
                    file.page_with(page, PageAlloc::MayFail)?
                }
                Err(e) => return Err(e),
            };
            pfns.push(folio.pfn(), GFP_KERNEL)?;
            pages.push(folio, GFP_KERNEL)?;
        }
        Ok(())
    }

    /// Makes `fetched` the object's pages, unless it got pages meanwhile
    /// or can no longer have any (purged: the fetched pages were
    /// truncated away; dead).
    fn install_pages(&self, st: &mut ObjState, fetched: Fetched) -> Result {
        if self.holds_pages(st)? {
            return Ok(());
        }
        if st.released {
            self.device.counters.inc(Counter::Rebinds);
            st.released = false;
        }
        (st.pages, st.pfns) = fetched;
        // Again, in case a release cleared it while they were fetched.
        if let (Some(file), false) = (self.file(), params::shrinker_enabled()) {
            file.set_unevictable();
        }
        Ok(())
    }

    /// Makes the pages of a WILLNEED shmem object present, allocating
    /// them without `struct_mutex` held: under memory pressure that
    /// allocation may need our shrinker to purge other objects, which it
    /// cannot do while we hold the lock.  Call before taking the lock for
    /// a bind, pin, vmap or domain change.
    pub(crate) fn populate(&self) -> Result {
        if self.user_range().is_some() {
            return Ok(());
        }
        {
            let mut locked = self.device.struct_mutex.lock_killable()?;
            let st = self.state(&mut locked);
            let held = self.holds_pages(st)?;
            if st.madv != uapi::MADV_WILLNEED {
                return Err(EFAULT);
            }
            if held {
                return Ok(());
            }
        }
        let fetched = self.fetch_pages(Fetch::Unlocked)?;
        let mut locked = self.device.struct_mutex.lock_killable()?;
        self.install_pages(self.state(&mut locked), fetched)
    }

    /// Drops the kernel mapping and every page reference; returns how
    /// many pages there were.  A shmem object's pages go back on the
    /// evictable LRU lists first (DONTNEED marked them).
    pub(crate) fn put_pages(&self, st: &mut ObjState) -> usize {
        st.vmap = None;
        st.orphans = PageArray::default();
        let n = st.pages.len();
        if let (Some(file), true) = (self.file(), n > 0) {
            file.clear_unevictable(&st.pages);
        }
        st.pages = PageArray::default();
        n
    }

    /// Drops the binding (if `unbind`), the cached vmap and every page
    /// reference; returns the pages released.  The caller decided, with
    /// `policy`, that nothing else pins them.
    pub(crate) fn release_pages(&self, locked: &mut DeviceLocked, unbind: bool) -> usize {
        if unbind && self.clear_binding(locked) {
            self.device.counters.inc(Counter::Unbinds);
        }
        let st = self.state(locked);
        let n = self.put_pages(st);
        st.released = true;
        // `debug_userptr_shrink_keeps`: a deliberate breakage, reclaim
        // leaves the kept user pages alone.
        let kept = if params::debug_userptr_shrink_keeps() {
            0
        } else {
            self.drop_user_pages()
        };
        self.device
            .counters
            .add(Counter::UserptrReleasedPages, kept as u64);
        n + kept
    }

    /// Maps every page into kernel space (cached) and pins the mapping.
    pub(crate) fn vmap(&self, locked: &mut DeviceLocked) -> Result {
        let st = self.state(locked);
        if st.madv != uapi::MADV_WILLNEED {
            return Err(EFAULT);
        }
        self.get_pages(st)?;
        if st.vmap.is_none() {
            st.vmap = Some(Vmap::new(&st.pages)?);
        }
        st.vmap_pins += 1;
        st.pages_pin_count += 1;
        Ok(())
    }

    /// Unpins the kernel mapping; it stays cached until purged.
    pub(crate) fn vunmap(&self, locked: &mut DeviceLocked) -> Result {
        let st = self.state(locked);
        if st.vmap_pins == 0 {
            return Err(EINVAL);
        }
        st.vmap_pins -= 1;
        st.pages_pin_count -= 1;
        Ok(())
    }

    /// Writes the self-test pattern for `seed` into every page.
    pub(crate) fn fill(&self, seed: u64) -> Result {
        let file = self.shmem()?;
        let mut buf = page_buffer()?;
        for page in 0..self.npages() {
            fill_page(&mut buf, seed, page);
            file.page(page)?.write(0, &buf)?;
        }
        Ok(())
    }

    /// Checks every page against the pattern for `seed`.  Returns the
    /// number of mismatching pages and of pages whose frame differs from
    /// the one recorded when the pages were last fetched.
    pub(crate) fn verify(&self, locked: &mut DeviceLocked, seed: u64) -> Result<(usize, usize)> {
        let file = self.shmem()?;
        let mut buf = page_buffer()?;
        let mut want = page_buffer()?;
        let (mut bad, mut moved) = (0, 0);
        for page in 0..self.npages() {
            let folio = file.page(page)?;
            folio.read(0, &mut buf)?;
            fill_page(&mut want, seed, page);
            if buf[..] != want[..] {
                bad += 1;
            }
            let st = self.state(locked);
            if st.pfns.get(page).is_some_and(|&pfn| pfn != folio.pfn()) {
                moved += 1;
            }
        }
        Ok((bad, moved))
    }
}

/// A zeroed page-sized buffer.
pub(crate) fn page_buffer() -> Result<KVec<u8>> {
    Ok(KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?)
}

fn fill_page(buf: &mut [u8], seed: u64, page: usize) {
    for (word, chunk) in buf.chunks_exact_mut(8).enumerate() {
        let v = policy::pattern_word(seed, page as u64, word as u64);
        chunk.copy_from_slice(&v.to_le_bytes());
    }
}
