// SPDX-License-Identifier: GPL-2.0

//! Where the shrinker's batches resume, free of kernel types.
//!
//! The kernel shrinker calls `scan` once per batch of 128 pages; walking
//! every object from the start each time costs O(objects) per batch and
//! O(objects^2) per reclaim.  Instead each pass resumes at the object
//! where its last batch stopped, and passes that the last `count` found
//! no candidate for are skipped, so that a reclaim costs one `count` walk
//! plus one walk over the candidates.  `tools/policy` builds this file
//! on the host and tests it.

/// Passes of a shrink, in order: purge, unbound, bound.
pub const PASSES: usize = 3;

/// The resume state of the shrinker's passes (under `struct_mutex`).
#[derive(Default)]
pub struct ShrinkCursor {
    /// Per pass: the id to start at.
    next: [u64; PASSES],
    /// Per pass: candidates seen by the last `count`, less those handled
    /// since.  Only a hint: an object that became one later waits for the
    /// next `count`, which the kernel makes before every round of batches.
    candidates: [u64; PASSES],
    /// The generation of the count that left the hints (see
    /// [`ShrinkCursor::counted`]).
    counted_at: Option<u64>,
}

impl ShrinkCursor {
    /// A `count` that walked every object found `candidates` per pass.
    /// `generation` numbers the counts: every count takes a new one,
    /// including those that could not lock and so left no hints.
    pub fn counted(&mut self, generation: u64, candidates: [u64; PASSES]) {
        self.candidates = candidates;
        self.counted_at = Some(generation);
    }

    /// Whether a resuming shrink may skip `pass` when the latest count has
    /// `generation`: only if that count left hints and they say no
    /// candidate is left.
    pub fn skip(&self, pass: usize, generation: u64) -> bool {
        self.counted_at == Some(generation) && self.candidates[pass] == 0
    }

    /// A lap over the ids for `pass`, from where its last batch stopped.
    pub fn lap(&self, pass: usize) -> Lap {
        Lap::new(self.next[pass])
    }

    /// A candidate of `pass` was handled.
    pub fn took(&mut self, pass: usize) {
        self.candidates[pass] = self.candidates[pass].saturating_sub(1);
    }

    /// The batch's work is done in the middle of `lap`: the next batch of
    /// `pass` starts where this one would have gone on.
    pub fn stop(&mut self, pass: usize, lap: &Lap) {
        self.next[pass] = lap.resume_at();
    }
}

/// One lap over ids in ascending order: from `start` to the end, then
/// from the lowest id round to just before `start`.
pub struct Lap {
    start: u64,
    next: Option<u64>,
    wrapped: bool,
    done: bool,
}

impl Lap {
    /// A lap that begins at `start` (0: a plain walk from the start).
    pub fn new(start: u64) -> Self {
        Self {
            start,
            next: Some(start),
            wrapped: start == 0,
            done: false,
        }
    }

    /// The next item of the lap.  `lookup(from)` returns the item with
    /// the lowest id at or after `from`, and that id.
    pub fn next<T>(&mut self, mut lookup: impl FnMut(u64) -> Option<(u64, T)>) -> Option<T> {
        while !self.done {
            match self.next.and_then(&mut lookup) {
                None if self.wrapped => self.done = true,
                None => {
                    self.wrapped = true;
                    self.next = Some(0);
                }
                Some((id, _)) if self.wrapped && self.start != 0 && id >= self.start => {
                    self.done = true
                }
                Some((id, item)) => {
                    self.next = id.checked_add(1);
                    return Some(item);
                }
            }
        }
        None
    }

    /// Where a lap stopped now would resume.
    pub fn resume_at(&self) -> u64 {
        self.next.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn walk(ids: &[u64], lap: &mut Lap, max: usize) -> Vec<u64> {
        let mut seen = Vec::new();
        while seen.len() < max {
            let Some(id) = lap.next(|from| ids.iter().find(|&&id| id >= from).map(|&id| (id, id)))
            else {
                break;
            };
            seen.push(id);
        }
        seen
    }

    #[test]
    fn a_lap_visits_every_id_once_from_its_start() {
        let ids = [1, 2, 5, 9];
        assert_eq!(walk(&ids, &mut Lap::new(0), 10), [1, 2, 5, 9]);
        assert_eq!(walk(&ids, &mut Lap::new(5), 10), [5, 9, 1, 2]);
        assert_eq!(walk(&ids, &mut Lap::new(6), 10), [9, 1, 2, 5]);
        assert_eq!(walk(&ids, &mut Lap::new(10), 10), [1, 2, 5, 9]);
        assert_eq!(walk(&[], &mut Lap::new(3), 10), [] as [u64; 0]);
        let mut lap = Lap::new(u64::MAX);
        assert_eq!(walk(&[u64::MAX], &mut lap, 10), [u64::MAX]);
    }

    #[test]
    fn a_stopped_lap_resumes_after_the_last_id_it_gave() {
        let ids = [1, 2, 5, 9];
        let mut cursor = ShrinkCursor::default();
        let mut lap = cursor.lap(1);
        assert_eq!(walk(&ids, &mut lap, 2), [1, 2]);
        cursor.stop(1, &lap);
        assert_eq!(walk(&ids, &mut cursor.lap(1), 10), [5, 9, 1, 2]);
        // The other passes keep their own place.
        assert_eq!(walk(&ids, &mut cursor.lap(0), 10), [1, 2, 5, 9]);
        // Stopped at the very end: the next lap starts over.
        let mut lap = Lap::new(0);
        assert_eq!(walk(&[u64::MAX], &mut lap, 1), [u64::MAX]);
        cursor.stop(2, &lap);
        assert_eq!(walk(&ids, &mut cursor.lap(2), 10), [1, 2, 5, 9]);
    }

    #[test]
    fn only_a_fresh_count_without_candidates_skips_a_pass() {
        let mut cursor = ShrinkCursor::default();
        // No count yet: nothing is skipped.
        assert!(!cursor.skip(0, 0));
        cursor.counted(4, [0, 2, 0]);
        assert!(cursor.skip(0, 4) && !cursor.skip(1, 4) && cursor.skip(2, 4));
        // A later count could not lock: the hints are stale.
        assert!(!cursor.skip(0, 5));
        cursor.took(1);
        assert!(!cursor.skip(1, 4));
        cursor.took(1);
        cursor.took(1);
        assert!(cursor.skip(1, 4));
    }
}
