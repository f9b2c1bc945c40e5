//! Majority arithmetic, in one place so that nobody counts 2 of 4 as a majority.

/// The smallest number of voters that forms a majority of `voters`: floor(n/2)+1.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The largest value that at least a majority of `values` have reached: sort descending and take
/// the majority-th. Used for the commit index (match indexes) and the lease (acknowledged
/// heartbeat send times). `values` holds one value per voter.
pub fn quorum_value<T: Ord + Copy>(values: &mut [T]) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(|a, b| b.cmp(a));
    Some(values[majority(values.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_is_floor_half_plus_one() {
        let table = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)];
        for (n, m) in table {
            assert_eq!(majority(n), m, "majority of {n}");
        }
    }

    #[test]
    fn quorum_value_takes_the_majority_th_largest() {
        assert_eq!(quorum_value(&mut [5u64, 1, 3]), Some(3));
        assert_eq!(quorum_value(&mut [5u64, 1, 3, 4]), Some(3));
        assert_eq!(quorum_value(&mut [9u64]), Some(9));
        assert_eq!(quorum_value::<u64>(&mut []), None);
        assert_eq!(quorum_value(&mut [7u64, 7, 0, 0, 7]), Some(7));
    }
}
