//! Dividing a bandwidth budget among the migrations that run at once.
//!
//! Each running migration gets an equal part; one whose plan caps it lower
//! (`limits.max_bandwidth`) keeps its own cap, and what it leaves goes to the others
//! (water-filling). The parts never add up to more than the budget, and never to less
//! than it while some migration could still use more. No part is 0, which QEMU would
//! read as "no limit".

/// The smallest part a migration is given, bytes/s: below it a migration cannot
/// converge anyway, and 0 means "unlimited" to QEMU.
pub const MIN_SHARE: u64 = 1024 * 1024;

/// The parts of `budget` (bytes/s) for migrations whose own caps are `caps` (`None`:
/// no cap of their own), in the same order. With more migrations than the budget has
/// [`MIN_SHARE`]s, each gets `MIN_SHARE` (callers refuse such budgets up front).
pub fn divide(budget: u64, caps: &[Option<u64>]) -> Vec<u64> {
    let mut parts = vec![0u64; caps.len()];
    if caps.is_empty() {
        return parts;
    }
    let mut open: Vec<usize> = (0..caps.len()).collect();
    let mut left = budget;
    // Fill the smallest caps first: each round either settles every capped migration
    // that fits under the equal part, or gives the rest equal parts.
    loop {
        let equal = left / open.len() as u64;
        let (capped, uncapped): (Vec<usize>, Vec<usize>) = open
            .iter()
            .partition(|&&i| caps[i].is_some_and(|cap| cap <= equal));
        if capped.is_empty() {
            let mut extra = left - equal * open.len() as u64;
            for &i in &open {
                // The remainder of the division goes one byte at a time, so nothing of
                // the budget is left unused.
                let bonus = u64::from(extra > 0);
                extra -= bonus;
                parts[i] = equal + bonus;
            }
            break;
        }
        for &i in &capped {
            let cap = caps[i].unwrap_or(0);
            parts[i] = cap;
            left -= cap;
        }
        open = uncapped;
        if open.is_empty() {
            break;
        }
    }
    for part in &mut parts {
        *part = (*part).max(MIN_SHARE);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn equal_parts_when_no_plan_caps_its_own() {
        assert_eq!(divide(300 * MIB, &[None, None, None]), vec![100 * MIB; 3]);
    }

    #[test]
    fn a_lower_cap_is_kept_and_what_it_leaves_goes_to_the_others() {
        let parts = divide(300 * MIB, &[Some(20 * MIB), None, Some(500 * MIB)]);
        assert_eq!(parts, vec![20 * MIB, 140 * MIB, 140 * MIB]);
    }

    #[test]
    fn caps_below_the_budget_leave_it_partly_unused_rather_than_exceed_them() {
        let parts = divide(300 * MIB, &[Some(10 * MIB), Some(20 * MIB)]);
        assert_eq!(parts, vec![10 * MIB, 20 * MIB]);
    }

    #[test]
    fn the_parts_never_add_up_to_more_than_the_budget() {
        for budget in [7 * MIB + 3, 100 * MIB, 1000 * MIB + 1] {
            for n in 1..6 {
                let caps: Vec<Option<u64>> = (0..n)
                    .map(|i| (i % 2 == 0).then_some(budget / 4 + i as u64))
                    .collect();
                let parts = divide(budget, &caps);
                assert!(
                    parts.iter().sum::<u64>() <= budget,
                    "{budget} among {n}: {parts:?}"
                );
                for (part, cap) in parts.iter().zip(&caps) {
                    assert!(cap.is_none_or(|c| *part <= c), "{part} over its cap {cap:?}");
                }
            }
        }
    }

    #[test]
    fn one_migration_alone_gets_the_whole_budget() {
        assert_eq!(divide(128 * MIB, &[None]), vec![128 * MIB]);
        assert_eq!(divide(128 * MIB + 1, &[None]), vec![128 * MIB + 1]);
    }

    #[test]
    fn no_part_is_zero_which_qemu_reads_as_unlimited() {
        assert_eq!(divide(MIB, &[None, None]), vec![MIN_SHARE, MIN_SHARE]);
        assert!(divide(0, &[]).is_empty());
    }
}
