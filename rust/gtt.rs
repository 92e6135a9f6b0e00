// SPDX-License-Identifier: GPL-2.0

//! Placement in the simulated GTT, free of kernel types.
//!
//! The module keeps the allocated ranges in an rbtree ordered by start;
//! this finds the first hole that fits.  `tools/policy` builds the same
//! file on the host.

/// First-fit: the lowest `align`-aligned start of `size` bytes that does
/// not overlap any of `allocated` (`(start, size)` pairs in ascending
/// order of start, not overlapping) and ends within `total`.
/// `align` must be a power of two.  Returns `None` if nothing fits or
/// the arguments are out of range.
pub fn find_hole(
    allocated: impl IntoIterator<Item = (u64, u64)>,
    size: u64,
    align: u64,
    total: u64,
) -> Option<u64> {
    if size == 0 || align == 0 || !align.is_power_of_two() || size > total {
        return None;
    }
    let mut cursor = 0u64;
    for (start, len) in allocated {
        let candidate = cursor.checked_add(align - 1)? & !(align - 1);
        if candidate.checked_add(size)? <= start {
            return Some(candidate);
        }
        cursor = cursor.max(start.checked_add(len)?);
    }
    let candidate = cursor.checked_add(align - 1)? & !(align - 1);
    (candidate.checked_add(size)? <= total).then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    #[test]
    fn empty_space_starts_at_zero() {
        assert_eq!(find_hole([], P, P, 16 * P), Some(0));
    }

    #[test]
    fn first_hole_that_fits_wins() {
        let used = [(0, P), (3 * P, P)];
        assert_eq!(find_hole(used, 2 * P, P, 16 * P), Some(P));
        assert_eq!(find_hole(used, 3 * P, P, 16 * P), Some(4 * P));
    }

    #[test]
    fn alignment_is_respected() {
        let used = [(0, P)];
        assert_eq!(find_hole(used, P, 4 * P, 16 * P), Some(4 * P));
    }

    #[test]
    fn full_space_gives_none() {
        assert_eq!(find_hole([(0, 16 * P)], P, P, 16 * P), None);
        assert_eq!(find_hole([], 17 * P, P, 16 * P), None);
    }

    #[test]
    fn end_of_space_is_exact() {
        assert_eq!(find_hole([(0, 15 * P)], P, P, 16 * P), Some(15 * P));
        assert_eq!(find_hole([(0, 15 * P)], 2 * P, P, 16 * P), None);
    }

    #[test]
    fn bad_arguments_give_none() {
        assert_eq!(find_hole([], 0, P, 16 * P), None);
        assert_eq!(find_hole([], P, 3, 16 * P), None);
        assert_eq!(find_hole([], P, 0, 16 * P), None);
        assert_eq!(
            find_hole([(0, u64::MAX - P), (u64::MAX - P, P)], P, P, u64::MAX),
            None
        );
    }
}
