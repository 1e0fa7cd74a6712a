//! `--order shortest-first`: the VMs whose migrations are expected to be shortest start
//! first, so that most VMs are off the host soonest and a long one does not hold a slot
//! that several short ones could have used.
//!
//! The expectation is `check`'s, read the same way (queries and one dirty-rate
//! measurement per VM, nothing changed), all VMs at once; a VM that cannot be read
//! keeps its place after the ones that could.

use plans::Plan;
use tokio::task::JoinSet;

/// The indices of `plans` in the order to start them: by expected time, then as given.
pub async fn shortest_first(plans: &[Plan]) -> Vec<usize> {
    let mut reads = JoinSet::new();
    for (index, plan) in plans.iter().enumerate() {
        let plan = plan.clone();
        reads.spawn(async move {
            let mut driver = backends::open(&plan);
            let reading = engine::check::read(&plan, driver.as_mut(), true).await;
            (index, engine::check::expected_ms(&plan, &reading))
        });
    }
    let mut expected = vec![None; plans.len()];
    while let Some(done) = reads.join_next().await {
        if let Ok((index, ms)) = done {
            expected[index] = ms;
        }
    }
    sorted(&expected)
}

/// Indices sorted by expected time; unknown ones last, in their given order.
fn sorted(expected: &[Option<u64>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..expected.len()).collect();
    order.sort_by_key(|&i| (expected[i].is_none(), expected[i].unwrap_or(0)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_first_and_the_unknown_last_in_their_order() {
        assert_eq!(
            sorted(&[Some(900), None, Some(100), None, Some(500)]),
            vec![2, 4, 0, 1, 3]
        );
    }
}
