//! [`FirstUsers`]: the first user of each data block of a table, searched through a sampled
//! top level.
//!
//! A table holds about 13,000 blocks on the standard data, so the column is 100 KB, and a
//! cold "latest N" probes it in about ten tables: every probe of the column is a cache miss.
//! Interpolation over the whole column made several dependent probes, and read the range
//! ends each round. Here every [`STRIDE`]-th first user is kept in a second array (1.6 KB a
//! table, which stays in the CPU caches across queries); a binary search of it leaves a
//! window of fewer than `STRIDE` entries, which is counted in one pass: its eight cache
//! lines are loaded in parallel, not one after another. In the profile of `strata-bench
//! engine --query-only` the search fell from 5.6% of the samples to 2.4-3.3%.

use std::ops::Range;

/// One sampled entry per this many blocks: the window counted after the top-level search
/// spans at most `STRIDE - 1` entries, eight cache lines.
const STRIDE: usize = 64;

/// The first user of each block, ascending, and every [`STRIDE`]-th of them.
#[derive(Debug, Default)]
pub(crate) struct FirstUsers {
    users: Vec<u64>,
    /// `sampled[i] == users[STRIDE * i]`.
    sampled: Vec<u64>,
}

impl FirstUsers {
    /// `users` must be ascending (the index check guarantees it for a table that opened).
    pub(crate) fn new(users: Vec<u64>) -> FirstUsers {
        let sampled = users.iter().step_by(STRIDE).copied().collect();
        FirstUsers { users, sampled }
    }

    /// The first block whose first user is `user` or more: `partition_point(u < user)`.
    pub(crate) fn lower_bound(&self, user: u64) -> usize {
        // sampled[..k] < user <= sampled[k..]: the answer is past STRIDE * (k - 1) and at
        // most STRIDE * k.
        let k = self.sampled.partition_point(|&u| u < user);
        let start = (STRIDE * k).saturating_sub(STRIDE - 1);
        let end = (STRIDE * k).min(self.users.len());
        let window = self.users.get(start..end).unwrap_or_default();
        // A count rather than a search: the entries below `user` are a prefix, and a
        // branchless pass loads the window's cache lines in parallel.
        start + window.iter().map(|&u| usize::from(u < user)).sum::<usize>()
    }

    /// The blocks whose first user is `user`.
    pub(crate) fn starting_with(&self, user: u64) -> Range<usize> {
        let lo = self.lower_bound(user);
        lo..lo + self.users.get(lo..).map_or(0, |rest| crate::block::run_len(rest, user))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

    use super::*;

    #[test]
    fn lower_bound_matches_partition_point() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        for len in [0usize, 1, 2, 63, 64, 65, 127, 128, 129, 1000, 13_001] {
            for shape in 0..3 {
                let mut users: Vec<u64> = (0..len)
                    .map(|i| match shape {
                        0 => next(),         // spread over u64
                        1 => next() % 40,    // long runs of one first user, across samples
                        _ => (i as u64) * 3, // dense
                    })
                    .collect();
                users.sort_unstable();
                let column = FirstUsers::new(users.clone());
                let mut targets = users.clone();
                targets.extend([0, 1, u64::MAX, u64::MAX - 1, next(), next()]);
                targets.extend(users.iter().map(|u| u.wrapping_add(1)));
                for t in targets {
                    let want = users.partition_point(|&u| u < t);
                    assert_eq!(column.lower_bound(t), want, "len {len} shape {shape} target {t}");
                    let end = users.partition_point(|&u| u <= t);
                    assert_eq!(column.starting_with(t), want..end, "len {len} shape {shape} target {t}");
                }
            }
        }
    }
}
