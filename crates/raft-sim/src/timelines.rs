//! PostgreSQL's timelines as the failover model needs them: every promotion starts a new
//! history that shares its parent's WAL up to the point it forked at. A history is what the
//! WAL really is; its timeline id is only the number PostgreSQL gave it, and two promotions that
//! pick the same number make two different histories that look alike to PostgreSQL (and to
//! `pg_rewind`, which then sees nothing to rewind): `Histories::create` reports that.

/// The index of one history in `Histories`.
pub type HistoryId = usize;

#[derive(Clone, Debug)]
struct History {
    /// PostgreSQL's timeline id.
    timeline: u32,
    /// The history it forked from, and the last position they share.
    parent: Option<(HistoryId, u64)>,
    /// The server whose promotion created it (`None` for the first one).
    creator: Option<usize>,
}

/// Every history the run produced; the first is timeline 1 of the fresh cluster.
#[derive(Clone, Debug)]
pub struct Histories {
    all: Vec<History>,
}

impl Default for Histories {
    fn default() -> Histories {
        Histories {
            all: vec![History {
                timeline: 1,
                parent: None,
                creator: None,
            }],
        }
    }
}

impl Histories {
    pub const FIRST: HistoryId = 0;

    pub fn timeline(&self, h: HistoryId) -> u32 {
        self.all[h].timeline
    }

    /// A promotion of `creator` on history `parent` at position `fork`, as timeline `timeline`.
    /// Fails when another history already has that timeline id.
    pub fn create(
        &mut self,
        parent: HistoryId,
        fork: u64,
        timeline: u32,
        creator: usize,
    ) -> Result<HistoryId, String> {
        if let Some(other) = self.all.iter().find(|h| h.timeline == timeline) {
            let by = match other.creator {
                Some(node) => format!("node {}'s promotion", node + 1),
                None => "the first primary".to_string(),
            };
            return Err(format!(
                "timeline {timeline} created twice: by node {}'s promotion and earlier by {by}",
                creator + 1
            ));
        }
        self.all.push(History {
            timeline,
            parent: Some((parent, fork)),
            creator: Some(creator),
        });
        Ok(self.all.len() - 1)
    }

    /// The histories `h` is made of, newest first, each with the last position of it that `h`
    /// contains (`end` for `h` itself).
    fn lineage(&self, h: HistoryId, end: u64) -> Vec<(HistoryId, u64)> {
        let mut out = vec![(h, end)];
        let mut at = h;
        while let Some((parent, fork)) = self.all[at].parent {
            let limit = out.last().map_or(fork, |(_, e)| fork.min(*e));
            out.push((parent, limit));
            at = parent;
        }
        out
    }

    /// The newest timeline id in the history of `h` (the history files a server on it holds).
    pub fn newest_known(&self, h: HistoryId) -> u32 {
        self.lineage(h, 0)
            .iter()
            .map(|(x, _)| self.all[*x].timeline)
            .max()
            .unwrap_or(1)
    }

    /// The last position WAL at `a` up to `a_end` shares with WAL at `b` up to `b_end`.
    pub fn common_point(&self, a: HistoryId, a_end: u64, b: HistoryId, b_end: u64) -> u64 {
        let theirs = self.lineage(b, b_end);
        self.lineage(a, a_end)
            .iter()
            .filter_map(|(h, mine)| {
                let (_, other) = theirs.iter().find(|(x, _)| x == h)?;
                Some((*mine).min(*other))
            })
            .max()
            .unwrap_or(0)
    }

    /// Can a standby with WAL at `a` up to `a_end` stream from a server on history `b`? Only
    /// when `a` is `b` or one of its ancestors and the standby has nothing past the point where
    /// `b` forked off it: PostgreSQL never takes a standby back to an older timeline.
    pub fn can_follow(&self, a: HistoryId, a_end: u64, b: HistoryId) -> bool {
        self.lineage(b, u64::MAX)
            .iter()
            .any(|(h, limit)| *h == a && a_end <= *limit)
    }

    /// How much of the WAL range `[from, to)` written on `h` lies past the point where a
    /// promotion already forked a newer history off `h`: written on a superseded timeline.
    pub fn past_a_fork(&self, h: HistoryId, from: u64, to: u64) -> u64 {
        let fork = self
            .all
            .iter()
            .filter_map(|x| x.parent.filter(|(p, _)| *p == h).map(|(_, f)| f))
            .min();
        fork.map_or(0, |f| to.saturating_sub(f.max(from)))
    }

    /// How much of the WAL range `[from, to)` written on `h` a server on `last` up to
    /// `last_end` no longer has.
    pub fn lost(&self, h: HistoryId, from: u64, to: u64, last: HistoryId, last_end: u64) -> u64 {
        let kept = self
            .lineage(last, last_end)
            .iter()
            .find(|(x, _)| *x == h)
            .map_or(0, |(_, e)| *e);
        to.saturating_sub(kept.max(from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fork_shares_its_parent_up_to_the_fork_point_only() {
        let mut hs = Histories::default();
        let two = hs.create(Histories::FIRST, 1_000, 2, 1).unwrap();
        let three = hs.create(two, 5_000, 3, 2).unwrap();
        assert_eq!(hs.timeline(three), 3);
        assert_eq!(hs.newest_known(three), 3);
        // A former primary of timeline 1 that wrote up to 1_500 diverged at 1_000.
        assert_eq!(
            hs.common_point(Histories::FIRST, 1_500, three, 9_000),
            1_000
        );
        assert!(!hs.can_follow(Histories::FIRST, 1_500, three));
        assert!(hs.can_follow(Histories::FIRST, 900, three));
        assert!(hs.can_follow(two, 4_000, three));
        assert!(!hs.can_follow(three, 6_000, two));
        assert!(
            !hs.can_follow(two, 900, Histories::FIRST),
            "never back to an older timeline"
        );
        // Written on timeline 1 from 800 to 1_500: 500 of it is not on timeline 3.
        assert_eq!(hs.lost(Histories::FIRST, 800, 1_500, three, 9_000), 500);
        assert_eq!(hs.lost(three, 5_000, 9_500, three, 9_000), 500);
        assert_eq!(hs.lost(two, 6_000, 7_000, three, 9_000), 1_000);
        assert_eq!(hs.past_a_fork(Histories::FIRST, 800, 1_500), 500);
        assert_eq!(hs.past_a_fork(two, 4_000, 4_500), 0);
        assert_eq!(hs.past_a_fork(three, 0, 10_000), 0);
    }

    #[test]
    fn a_timeline_id_taken_twice_is_reported() {
        let mut hs = Histories::default();
        hs.create(Histories::FIRST, 1_000, 2, 1).unwrap();
        let err = hs.create(Histories::FIRST, 2_000, 2, 2).unwrap_err();
        assert!(err.contains("timeline 2 created twice"), "{err}");
    }
}
