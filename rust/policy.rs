// SPDX-License-Identifier: GPL-2.0

//! Decisions of the migrate hook, free of kernel types.
//!
//! The module compiles this file as `mod policy`; the host crate in
//! `tools/policy` includes the same file so that `cargo test` covers every
//! branch.  Only `core` may be used here.

/// What the hook knows about an object, read under `struct_mutex`.
///
/// The fields mean what their namesakes mean in i915.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectState {
    /// The object holds references on its shmem folios.
    pub has_pages: bool,
    /// GPU work that uses the object has not completed.
    pub active: bool,
    /// Userspace marked the object DONTNEED.
    pub purgeable: bool,
    /// Pins on the object's pages, bindings included.
    pub pages_pin_count: u32,
    /// Bindings into the GTT; each holds one pin on the pages.
    pub bind_count: u32,
    /// Display-style pins on a binding: those never move.
    pub pinned_vmas: u32,
    /// A kernel mapping (vmap) of the pages is cached; releasing the
    /// pages means `vunmap()`, which may sleep.
    pub vmap_cached: bool,
}

/// Why the hook refused a folio.  Every refusal is `-EBUSY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The hook is switched off by the module parameter.
    HookDisabled,
    /// `struct_mutex` stayed contended for the whole time budget.
    LockContended,
    /// The GPU may still access the pages.
    Active,
    /// Releasing a DONTNEED object means truncating it, which takes the
    /// folio lock that migration already holds on the source folio.
    /// Purging is the shrinker's job.
    Purgeable,
    /// Someone other than the bindings pins the pages (a kernel mapping,
    /// an I/O in flight).
    PinnedBeyondBindings,
    /// A binding is pinned for scanout.
    PinnedVma,
    /// Unbinding needs the device awake and we may not wake it here.
    DeviceSuspended,
    /// Releasing would sleep (`vunmap()`), but `MIGRATE_ASYNC` must not.
    WouldSleep,
    /// A reference neither the page cache, migration nor the object
    /// accounts for (an I/O in flight, vmsplice, O_DIRECT): the folio
    /// cannot move now.  Answered with `-EAGAIN`, as `migrate_folio()`
    /// answers, before any lock is taken or the object is touched.
    ForeignReference,
    /// The migrating task holds `struct_mutex` itself (migration reached
    /// from an allocation made under it): waiting would wait for itself.
    LockOwned,
    /// A large folio (a huge object's, `CREATE_HUGE`) in
    /// `MIGRATE_ASYNC`: copying it may sleep.  Compaction never isolates
    /// folios of pageblock order; the sync users (`move_pages(2)`,
    /// offlining, CMA) move them.
    LargeFolio,
    /// The folio is pinned through GUP (`folio_maybe_dma_pinned()`):
    /// a long-term PIN or VMAP of ours (`memfd_pin_folios()`), or
    /// someone else's pin of a mapping of the object.  Answered with
    /// `-EBUSY` at once, before any lock: retrying cannot help while the
    /// pin lasts.
    DmaPinned,
}

impl Refusal {
    /// Every refusal, in counter order.
    pub const ALL: [Refusal; 12] = [
        Refusal::HookDisabled,
        Refusal::LockContended,
        Refusal::Active,
        Refusal::Purgeable,
        Refusal::PinnedBeyondBindings,
        Refusal::PinnedVma,
        Refusal::DeviceSuspended,
        Refusal::WouldSleep,
        Refusal::ForeignReference,
        Refusal::LockOwned,
        Refusal::LargeFolio,
        Refusal::DmaPinned,
    ];

    /// Name used for the debugfs counter.
    pub const fn name(self) -> &'static str {
        match self {
            Refusal::HookDisabled => "refused_hook_disabled",
            Refusal::LockContended => "refused_lock_contended",
            Refusal::Active => "refused_active",
            Refusal::Purgeable => "refused_purgeable",
            Refusal::PinnedBeyondBindings => "refused_pinned",
            Refusal::PinnedVma => "refused_pinned_vma",
            Refusal::DeviceSuspended => "refused_suspended",
            Refusal::WouldSleep => "refused_would_sleep",
            Refusal::ForeignReference => "refused_foreign_ref",
            Refusal::LockOwned => "refused_lock_owned",
            Refusal::LargeFolio => "refused_large_folio",
            Refusal::DmaPinned => "refused_dma_pinned",
        }
    }

    /// Position in [`Refusal::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What the hook does with a folio of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold no reference on the object's pages: let `migrate_folio()`
    /// decide on its own.
    PassThrough,
    /// Drop the object's page references, then let the folio migrate.
    Release {
        /// The object is bound and must be unbound first.
        unbind: bool,
        /// A cached kernel mapping must be torn down first.
        vunmap: bool,
    },
    /// Answer `-EBUSY`.
    Refuse(Refusal),
}

/// Decide, with `struct_mutex` held, what to do with an object whose
/// folio migration wants to move.  `device_awake` tells whether a
/// runtime-PM reference could be taken without waking the device;
/// `may_block` is false for `MIGRATE_ASYNC`.
pub fn decide(state: &ObjectState, device_awake: bool, may_block: bool) -> Decision {
    if !state.has_pages {
        return Decision::PassThrough;
    }
    if state.active {
        return Decision::Refuse(Refusal::Active);
    }
    if state.purgeable {
        return Decision::Refuse(Refusal::Purgeable);
    }
    if state.pinned_vmas > 0 {
        return Decision::Refuse(Refusal::PinnedVma);
    }
    if state.pages_pin_count > state.bind_count {
        return Decision::Refuse(Refusal::PinnedBeyondBindings);
    }
    let unbind = state.bind_count > 0;
    if unbind && !device_awake {
        return Decision::Refuse(Refusal::DeviceSuspended);
    }
    let vunmap = state.vmap_cached;
    if vunmap && !may_block {
        return Decision::Refuse(Refusal::WouldSleep);
    }
    Decision::Release { unbind, vunmap }
}

/// How the hook lets a folio of an object move (module parameter `hook`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookMode {
    /// Plain `migrate_folio()`, as shmem without the hook.
    Off,
    /// The 2016 design: release the whole object, then `migrate_folio()`.
    Release,
    /// Move the one folio, keeping the object bound.
    InPlace,
}

impl HookMode {
    /// The mode from the parameter's value (`MOVGEM_HOOK_*`).
    pub const fn from_raw(raw: i32) -> HookMode {
        match raw {
            0 => HookMode::Off,
            1 => HookMode::Release,
            _ => HookMode::InPlace,
        }
    }
}

/// How many references on a folio the object may hold: what is left of
/// `refcount` after the page cache (`expected`, as
/// `folio_expected_ref_count()` counts it) and migration's own one.
/// `None` when nobody else can hold one (the count is below what the
/// kernel itself holds: a race migration will see itself).
pub fn extra_refs(refcount: i64, expected: i64) -> Option<u64> {
    u64::try_from(refcount - expected - 1).ok()
}

/// What the in-place hook does before taking any lock, from the folio's
/// extra references ([`extra_refs`]), its size in pages and whether it
/// may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precheck {
    /// No reference beyond the kernel's: the object holds none, so
    /// `migrate_folio()` decides alone.
    PassThrough,
    /// Exactly one extra per page: maybe the object's; look under the
    /// lock.
    Candidate,
    /// More than the object can hold: refuse at once, touching nothing.
    Refuse(Refusal),
}

/// See [`Precheck`].  An object holds at most one reference per page,
/// so `nr_pages` for a folio of `nr_pages` pages.
/// `dma_pinned`: `folio_maybe_dma_pinned()` of the folio.
pub fn precheck(extra: Option<u64>, nr_pages: u64, may_block: bool, dma_pinned: bool) -> Precheck {
    match extra {
        None | Some(0) => Precheck::PassThrough,
        Some(_) if dma_pinned => Precheck::Refuse(Refusal::DmaPinned),
        Some(e) if e != nr_pages => Precheck::Refuse(Refusal::ForeignReference),
        Some(_) if nr_pages > 1 && !may_block => Precheck::Refuse(Refusal::LargeFolio),
        Some(_) => Precheck::Candidate,
    }
}

/// What the in-place hook does with an object that holds the folio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InPlace {
    /// Copy the folio, move the object's reference and rewrite its GTT
    /// entry; the object stays bound.
    Move {
        /// The cached kernel mapping covers the folio and goes first.
        drop_vmap: bool,
    },
    /// Answer `-EBUSY`.
    Refuse(Refusal),
}

/// Decide, with `struct_mutex` held, whether a folio the object holds
/// can move in place.  The device's power state does not matter: a
/// suspended device gets its hardware entries back from the shadow table
/// before its next request.  A DONTNEED object moves too: in place
/// truncates nothing.  `may_block` is false for `MIGRATE_ASYNC`.
pub fn decide_in_place(state: &ObjectState, may_block: bool) -> InPlace {
    if state.active {
        return InPlace::Refuse(Refusal::Active);
    }
    if state.pinned_vmas > 0 {
        return InPlace::Refuse(Refusal::PinnedVma);
    }
    if state.pages_pin_count > state.bind_count {
        return InPlace::Refuse(Refusal::PinnedBeyondBindings);
    }
    if state.vmap_cached && !may_block {
        return InPlace::Refuse(Refusal::WouldSleep);
    }
    InPlace::Move {
        drop_vmap: state.vmap_cached,
    }
}

/// What the shrinker does with one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShrinkAction {
    /// Nothing can be given back now.
    Skip,
    /// DONTNEED: drop the pages and truncate the file (PURGED).
    Purge {
        /// The object is bound and must be unbound first.
        unbind: bool,
    },
    /// WILLNEED: drop our references; the pages stay in shmem, where
    /// reclaim can write them back.
    Release {
        /// The object is bound and must be unbound first.
        unbind: bool,
    },
}

impl ShrinkAction {
    /// The pass of a scan that takes this action: purges first, then
    /// unbound objects, then bound ones (as i915 orders its shrinker).
    pub fn pass(self) -> Option<u8> {
        match self {
            ShrinkAction::Skip => None,
            ShrinkAction::Purge { .. } => Some(0),
            ShrinkAction::Release { unbind: false } => Some(1),
            ShrinkAction::Release { unbind: true } => Some(2),
        }
    }
}

/// Decide, with `struct_mutex` held, what the shrinker may do with an
/// object.  `may_block` and `may_fs` come from the reclaim gfp mask:
/// dropping a cached vmap (`vunmap()`) sleeps, and truncating takes
/// folio locks, which only fs-capable reclaim may wait for.
pub fn shrink_action(
    state: &ObjectState,
    device_awake: bool,
    may_block: bool,
    may_fs: bool,
) -> ShrinkAction {
    if !state.has_pages
        || state.active
        || state.pinned_vmas > 0
        || state.pages_pin_count > state.bind_count
    {
        return ShrinkAction::Skip;
    }
    if state.vmap_cached && !may_block {
        return ShrinkAction::Skip;
    }
    let unbind = state.bind_count > 0;
    if unbind && !device_awake {
        return ShrinkAction::Skip;
    }
    if state.purgeable {
        if may_fs {
            ShrinkAction::Purge { unbind }
        } else {
            ShrinkAction::Skip
        }
    } else {
        ShrinkAction::Release { unbind }
    }
}

/// How long the hook may wait for `struct_mutex`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockWait {
    /// One attempt, no sleeping: `MIGRATE_ASYNC` must not block.
    Once,
    /// Retry, sleeping between attempts, until this many nanoseconds
    /// have passed.
    For(u64),
}

/// The migration mode of a hook call (`enum migrate_mode`; the values
/// are `MOVGEM_MIGRATE_*` in `include/movgem_shim.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum MigrateMode {
    /// `MIGRATE_ASYNC`: must not sleep.
    Async = 0,
    /// `MIGRATE_SYNC_LIGHT`: may sleep, but compaction and kcompactd use
    /// it one folio at a time with the source unmapped, and retry.
    SyncLight = 1,
    /// `MIGRATE_SYNC`: move_pages(2), CMA, memory offlining, long-term
    /// pins, the compact_memory sysctl.
    Sync = 2,
}

impl MigrateMode {
    /// The mode the shim passes; anything unknown is the strictest wait
    /// the hook allows (`Sync`'s budget, still bounded).
    pub fn from_raw(mode: i32) -> Self {
        match mode {
            0 => Self::Async,
            1 => Self::SyncLight,
            _ => Self::Sync,
        }
    }

    /// Whether the hook may sleep at all.
    pub fn may_block(self) -> bool {
        self != Self::Async
    }
}

/// The hook's budget for `struct_mutex` in `mode`: only `MIGRATE_SYNC`
/// waits (up to `timeout_ms`).  `MIGRATE_SYNC_LIGHT` tries once: its
/// callers move one folio at a time and retry, so a wait there would
/// keep each source unmapped for the whole budget.
pub fn hook_lock_wait(mode: MigrateMode, timeout_ms: u32) -> LockWait {
    lock_wait(mode == MigrateMode::Sync, timeout_ms)
}

/// The lock budget of a caller that may or may not sleep, and the
/// `lock_timeout_ms` parameter.
pub fn lock_wait(may_block: bool, timeout_ms: u32) -> LockWait {
    if !may_block || timeout_ms == 0 {
        LockWait::Once
    } else {
        LockWait::For(u64::from(timeout_ms) * 1_000_000)
    }
}

/// The 64-bit word that the self-test pattern stores at `word` of page
/// `page`, seeded by `seed`.  A splitmix64 step: cheap, and two pages or
/// two seeds never produce the same page.
pub fn pattern_word(seed: u64, page: u64, word: u64) -> u64 {
    let mut z = seed
        .wrapping_add(page.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(word.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Number of pages needed for `size` bytes, or `None` if `size` is zero,
/// not page aligned, or above `max_pages` pages.
pub fn pages_for_size(size: u64, page_size: u64, max_pages: u64) -> Option<u64> {
    if size == 0 || page_size == 0 || size % page_size != 0 {
        return None;
    }
    let pages = size / page_size;
    if pages > max_pages {
        return None;
    }
    Some(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound_idle() -> ObjectState {
        ObjectState {
            has_pages: true,
            pages_pin_count: 1,
            bind_count: 1,
            ..ObjectState::default()
        }
    }

    #[test]
    fn no_pages_passes_through() {
        assert_eq!(
            decide(&ObjectState::default(), true, true),
            Decision::PassThrough
        );
        assert_eq!(
            decide(&ObjectState::default(), false, false),
            Decision::PassThrough
        );
    }

    #[test]
    fn bound_idle_object_is_unbound_and_released() {
        assert_eq!(
            decide(&bound_idle(), true, false),
            Decision::Release {
                unbind: true,
                vunmap: false
            }
        );
    }

    #[test]
    fn unbound_object_with_pages_is_released_even_if_suspended() {
        let s = ObjectState {
            has_pages: true,
            ..ObjectState::default()
        };
        assert_eq!(
            decide(&s, false, true),
            Decision::Release {
                unbind: false,
                vunmap: false
            }
        );
    }

    #[test]
    fn active_object_is_refused() {
        let s = ObjectState {
            active: true,
            ..bound_idle()
        };
        assert_eq!(decide(&s, true, true), Decision::Refuse(Refusal::Active));
    }

    #[test]
    fn purgeable_object_is_refused() {
        let s = ObjectState {
            purgeable: true,
            ..bound_idle()
        };
        assert_eq!(decide(&s, true, true), Decision::Refuse(Refusal::Purgeable));
    }

    #[test]
    fn pinned_vma_is_refused() {
        let s = ObjectState {
            pinned_vmas: 1,
            pages_pin_count: 2,
            bind_count: 2,
            ..bound_idle()
        };
        assert_eq!(decide(&s, true, true), Decision::Refuse(Refusal::PinnedVma));
    }

    #[test]
    fn extra_page_pin_is_refused() {
        let s = ObjectState {
            pages_pin_count: 2,
            ..bound_idle()
        };
        assert_eq!(
            decide(&s, true, true),
            Decision::Refuse(Refusal::PinnedBeyondBindings)
        );
    }

    #[test]
    fn suspended_device_refuses_unbind() {
        assert_eq!(
            decide(&bound_idle(), false, true),
            Decision::Refuse(Refusal::DeviceSuspended)
        );
    }

    #[test]
    fn active_wins_over_every_other_reason() {
        let s = ObjectState {
            has_pages: true,
            active: true,
            purgeable: true,
            pages_pin_count: 5,
            bind_count: 1,
            pinned_vmas: 1,
            vmap_cached: true,
        };
        assert_eq!(decide(&s, false, false), Decision::Refuse(Refusal::Active));
    }

    #[test]
    fn cached_vmap_is_torn_down_only_when_sleeping_is_allowed() {
        let s = ObjectState {
            vmap_cached: true,
            ..bound_idle()
        };
        assert_eq!(
            decide(&s, true, false),
            Decision::Refuse(Refusal::WouldSleep)
        );
        assert_eq!(
            decide(&s, true, true),
            Decision::Release {
                unbind: true,
                vunmap: true
            }
        );
    }

    #[test]
    fn suspended_device_wins_over_would_sleep() {
        let s = ObjectState {
            vmap_cached: true,
            ..bound_idle()
        };
        assert_eq!(
            decide(&s, false, false),
            Decision::Refuse(Refusal::DeviceSuspended)
        );
    }

    #[test]
    fn shrinker_purges_idle_dontneed_objects() {
        let s = ObjectState {
            purgeable: true,
            ..bound_idle()
        };
        assert_eq!(
            shrink_action(&s, true, true, true),
            ShrinkAction::Purge { unbind: true }
        );
        assert_eq!(shrink_action(&s, true, true, false), ShrinkAction::Skip);
        assert_eq!(shrink_action(&s, false, true, true), ShrinkAction::Skip);
    }

    #[test]
    fn shrinker_releases_idle_willneed_objects_in_order() {
        let unbound = ObjectState {
            has_pages: true,
            ..ObjectState::default()
        };
        let a = shrink_action(&unbound, false, true, true);
        let b = shrink_action(&bound_idle(), true, true, true);
        assert_eq!(a, ShrinkAction::Release { unbind: false });
        assert_eq!(b, ShrinkAction::Release { unbind: true });
        let purge = ShrinkAction::Purge { unbind: true };
        assert!(purge.pass() < a.pass() && a.pass() < b.pass());
        assert_eq!(ShrinkAction::Skip.pass(), None);
    }

    #[test]
    fn shrinker_skips_busy_pinned_and_pageless_objects() {
        let active = ObjectState {
            active: true,
            ..bound_idle()
        };
        let pinned = ObjectState {
            pages_pin_count: 2,
            ..bound_idle()
        };
        let scanout = ObjectState {
            pinned_vmas: 1,
            ..bound_idle()
        };
        let vmapped = ObjectState {
            vmap_cached: true,
            ..bound_idle()
        };
        for s in [active, pinned, scanout, ObjectState::default()] {
            assert_eq!(shrink_action(&s, true, true, true), ShrinkAction::Skip);
        }
        assert_eq!(
            shrink_action(&vmapped, true, false, true),
            ShrinkAction::Skip
        );
        assert_eq!(
            shrink_action(&vmapped, true, true, true),
            ShrinkAction::Release { unbind: true }
        );
    }

    #[test]
    fn only_sync_migration_waits_for_the_lock() {
        assert_eq!(hook_lock_wait(MigrateMode::Async, 10), LockWait::Once);
        assert_eq!(hook_lock_wait(MigrateMode::SyncLight, 10), LockWait::Once);
        assert_eq!(
            hook_lock_wait(MigrateMode::Sync, 10),
            LockWait::For(10_000_000)
        );
        assert_eq!(hook_lock_wait(MigrateMode::Sync, 0), LockWait::Once);
        assert_eq!(MigrateMode::from_raw(0), MigrateMode::Async);
        assert_eq!(MigrateMode::from_raw(1), MigrateMode::SyncLight);
        assert_eq!(MigrateMode::from_raw(2), MigrateMode::Sync);
        assert!(!MigrateMode::Async.may_block());
        assert!(MigrateMode::SyncLight.may_block() && MigrateMode::Sync.may_block());
    }

    #[test]
    fn lock_wait_never_sleeps_for_async_migration() {
        assert_eq!(lock_wait(false, 10), LockWait::Once);
        assert_eq!(lock_wait(true, 0), LockWait::Once);
        assert_eq!(lock_wait(true, 10), LockWait::For(10_000_000));
        assert_eq!(
            lock_wait(true, u32::MAX),
            LockWait::For(u64::from(u32::MAX) * 1_000_000)
        );
    }

    #[test]
    fn refusal_names_are_unique_and_indexed() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            for other in &Refusal::ALL[i + 1..] {
                assert_ne!(r.name(), other.name());
            }
        }
    }

    #[test]
    fn hook_modes_from_the_parameter() {
        assert_eq!(HookMode::from_raw(0), HookMode::Off);
        assert_eq!(HookMode::from_raw(1), HookMode::Release);
        assert_eq!(HookMode::from_raw(2), HookMode::InPlace);
    }

    #[test]
    fn extra_refs_is_what_the_kernel_does_not_hold() {
        // An unmapped order-0 shmem folio: page cache 1, migration 1.
        assert_eq!(extra_refs(2, 1), Some(0));
        assert_eq!(extra_refs(3, 1), Some(1));
        assert_eq!(extra_refs(5, 1), Some(3));
        assert_eq!(extra_refs(1, 1), None);
    }

    #[test]
    fn precheck_passes_refuses_or_looks_closer() {
        for may_block in [false, true] {
            assert_eq!(precheck(None, 1, may_block, false), Precheck::PassThrough);
            assert_eq!(
                precheck(Some(0), 1, may_block, false),
                Precheck::PassThrough
            );
            assert_eq!(
                precheck(Some(0), 512, may_block, false),
                Precheck::PassThrough
            );
            assert_eq!(precheck(Some(1), 1, may_block, false), Precheck::Candidate);
            assert_eq!(
                precheck(Some(2), 1, may_block, false),
                Precheck::Refuse(Refusal::ForeignReference)
            );
            // A huge object's folio: one reference per page, no more, no
            // fewer.
            assert_eq!(
                precheck(Some(1), 512, may_block, false),
                Precheck::Refuse(Refusal::ForeignReference)
            );
            assert_eq!(
                precheck(Some(513), 512, may_block, false),
                Precheck::Refuse(Refusal::ForeignReference)
            );
        }
        assert_eq!(precheck(Some(512), 512, true, false), Precheck::Candidate);
        // Pinned through GUP (our long-term pins): refused at once, and
        // for good while the pin lasts (EBUSY, not a retry).
        for (extra, nr) in [(1025, 1), (1, 1), (512 + 1024, 512)] {
            assert_eq!(
                precheck(Some(extra), nr, true, true),
                Precheck::Refuse(Refusal::DmaPinned)
            );
        }
        // Nothing of the object's on it: plain migrate_folio() decides.
        assert_eq!(precheck(None, 1, true, true), Precheck::PassThrough);
        // Copying 2 MiB may sleep: never in MIGRATE_ASYNC.
        assert_eq!(
            precheck(Some(512), 512, false, false),
            Precheck::Refuse(Refusal::LargeFolio)
        );
    }

    #[test]
    fn in_place_moves_bound_idle_objects_whatever_the_power_state() {
        let s = bound_idle();
        assert_eq!(
            decide_in_place(&s, false),
            InPlace::Move { drop_vmap: false }
        );
        assert_eq!(
            decide_in_place(&s, true),
            InPlace::Move { drop_vmap: false }
        );
        let unbound = ObjectState {
            has_pages: true,
            ..ObjectState::default()
        };
        assert_eq!(
            decide_in_place(&unbound, false),
            InPlace::Move { drop_vmap: false }
        );
    }

    #[test]
    fn in_place_moves_purgeable_objects() {
        let s = ObjectState {
            purgeable: true,
            ..bound_idle()
        };
        assert_eq!(
            decide_in_place(&s, false),
            InPlace::Move { drop_vmap: false }
        );
    }

    #[test]
    fn in_place_refuses_active_scanout_and_extra_pins() {
        let active = ObjectState {
            active: true,
            ..bound_idle()
        };
        assert_eq!(
            decide_in_place(&active, true),
            InPlace::Refuse(Refusal::Active)
        );
        let scanout = ObjectState {
            pinned_vmas: 1,
            ..bound_idle()
        };
        assert_eq!(
            decide_in_place(&scanout, true),
            InPlace::Refuse(Refusal::PinnedVma)
        );
        let vmapped = ObjectState {
            pages_pin_count: 2,
            vmap_cached: true,
            ..bound_idle()
        };
        assert_eq!(
            decide_in_place(&vmapped, true),
            InPlace::Refuse(Refusal::PinnedBeyondBindings)
        );
    }

    #[test]
    fn in_place_drops_a_cached_vmap_only_when_it_may_sleep() {
        let s = ObjectState {
            vmap_cached: true,
            ..bound_idle()
        };
        assert_eq!(
            decide_in_place(&s, false),
            InPlace::Refuse(Refusal::WouldSleep)
        );
        assert_eq!(decide_in_place(&s, true), InPlace::Move { drop_vmap: true });
    }

    #[test]
    fn pattern_differs_across_pages_words_and_seeds() {
        assert_ne!(pattern_word(1, 0, 0), pattern_word(1, 1, 0));
        assert_ne!(pattern_word(1, 0, 0), pattern_word(1, 0, 1));
        assert_ne!(pattern_word(1, 0, 0), pattern_word(2, 0, 0));
        assert_eq!(pattern_word(7, 3, 9), pattern_word(7, 3, 9));
    }

    #[test]
    fn sizes_are_validated() {
        assert_eq!(pages_for_size(0, 4096, 16), None);
        assert_eq!(pages_for_size(4095, 4096, 16), None);
        assert_eq!(pages_for_size(4096, 4096, 16), Some(1));
        assert_eq!(pages_for_size(16 * 4096, 4096, 16), Some(16));
        assert_eq!(pages_for_size(17 * 4096, 4096, 16), None);
        assert_eq!(
            pages_for_size(u64::MAX - 4095, 4096, u64::MAX),
            Some(u64::MAX / 4096)
        );
        assert_eq!(pages_for_size(4096, 0, 16), None);
    }
}
