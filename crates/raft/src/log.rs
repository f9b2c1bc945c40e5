//! The replicated log (§5.3): entries, the commit index and the applied index.
//!
//! The whole log is kept in memory: pg_leader's log holds one no-op per term and rare
//! configuration commands, so it stays small.

use crate::message::{Entry, EntryData};
use crate::types::{LogIndex, Term};

#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    /// `entries[i]` has index `i + 1`.
    entries: Vec<Entry>,
    committed: LogIndex,
    applied: LogIndex,
}

/// Why a follower refused an AppendEntries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The follower's last index, a hint for the leader's next try.
    pub last_index: LogIndex,
}

impl RaftLog {
    /// A log restored from storage. Nothing is known to be committed yet: the leader says so.
    pub fn restore(entries: Vec<Entry>) -> RaftLog {
        debug_assert!(entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index.0 == i as u64 + 1));
        RaftLog {
            entries,
            committed: LogIndex(0),
            applied: LogIndex(0),
        }
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(Term(0), |e| e.term)
    }

    pub fn committed(&self) -> LogIndex {
        self.committed
    }

    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The term of the entry at `index`: `Term(0)` for index 0, `None` past the end.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index.0 == 0 {
            return Some(Term(0));
        }
        self.entries.get(index.0 as usize - 1).map(|e| e.term)
    }

    /// §5.4.1: a candidate's log is at least as up-to-date as ours if its last term is later, or
    /// the same with an index at least as large.
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// The leader appends a new entry of its own term and returns it.
    pub fn append_new(&mut self, term: Term, data: EntryData) -> Entry {
        let entry = Entry {
            term,
            index: self.last_index().next(),
            data,
        };
        self.entries.push(entry.clone());
        entry
    }

    /// Up to `max` entries from `from` on.
    pub fn slice_from(&self, from: LogIndex, max: usize) -> Vec<Entry> {
        let start = (from.0.max(1) - 1) as usize;
        self.entries.iter().skip(start).take(max).cloned().collect()
    }

    /// Up to `max` entries from `from` on, stopping before their size passes `max_bytes`
    /// (`Entry::size_bound`); at least one entry when there is one.
    pub fn slice_bounded(&self, from: LogIndex, max: usize, max_bytes: usize) -> Vec<Entry> {
        let mut bytes = 0;
        let mut out = Vec::new();
        for e in self.slice_from(from, max) {
            bytes += e.size_bound();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(e);
        }
        out
    }

    /// The follower side of AppendEntries (§5.3): check that the log holds `prev` with
    /// `prev_term`, drop any conflicting suffix, append what is new. Returns the index of the last
    /// entry the message covered and the entries that changed (to persist), or the mismatch.
    pub fn try_append(
        &mut self,
        prev: LogIndex,
        prev_term: Term,
        entries: &[Entry],
    ) -> Result<(LogIndex, Vec<Entry>), Mismatch> {
        if self.term_at(prev) != Some(prev_term) {
            return Err(Mismatch {
                last_index: self.last_index(),
            });
        }
        let mut changed = Vec::new();
        for entry in entries {
            match self.term_at(entry.index) {
                Some(t) if t == entry.term => continue,
                Some(_) => {
                    // §5.3: a conflict means everything from here on was never committed.
                    assert!(
                        entry.index > self.committed,
                        "leader asked to overwrite committed entry {}",
                        entry.index
                    );
                    self.entries.truncate(entry.index.0 as usize - 1);
                }
                None => {}
            }
            if entry.index != self.last_index().next() {
                // A gap cannot happen after the consistency check; refuse rather than corrupt.
                return Err(Mismatch {
                    last_index: self.last_index(),
                });
            }
            self.entries.push(entry.clone());
            changed.push(entry.clone());
        }
        Ok((LogIndex(prev.0 + entries.len() as u64), changed))
    }

    /// Moves the commit index forward; never backward, never past the log.
    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        let index = index.min(self.last_index());
        if index > self.committed {
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Committed entries not yet handed out for applying, in order; marks them applied.
    pub fn take_committed(&mut self) -> Vec<Entry> {
        let out = self.slice_from(
            self.applied.next(),
            (self.committed.0 - self.applied.0) as usize,
        );
        self.applied = self.committed;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(terms: &[u64]) -> RaftLog {
        let mut log = RaftLog::default();
        for &t in terms {
            log.append_new(Term(t), EntryData::Noop);
        }
        log
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            data: EntryData::Noop,
        }
    }

    #[test]
    fn up_to_date_compares_last_term_then_index() {
        let log = log_of(&[1, 1, 2]);
        assert!(log.is_up_to_date(LogIndex(3), Term(2)));
        assert!(log.is_up_to_date(LogIndex(1), Term(3)));
        assert!(!log.is_up_to_date(LogIndex(2), Term(2)));
        assert!(!log.is_up_to_date(LogIndex(9), Term(1)));
    }

    #[test]
    fn append_checks_consistency_and_truncates_conflicts() {
        let mut log = log_of(&[1, 1, 1]);
        assert_eq!(
            log.try_append(LogIndex(3), Term(2), &[]),
            Err(Mismatch {
                last_index: LogIndex(3)
            })
        );
        assert_eq!(
            log.try_append(LogIndex(5), Term(1), &[]),
            Err(Mismatch {
                last_index: LogIndex(3)
            })
        );
        let (last, changed) = log
            .try_append(LogIndex(1), Term(1), &[entry(2, 1), entry(3, 2)])
            .unwrap();
        assert_eq!(last, LogIndex(3));
        assert_eq!(changed, vec![entry(3, 2)]);
        assert_eq!(log.last_term(), Term(2));
        // A duplicate (stale) message changes nothing and truncates nothing.
        let (last, changed) = log
            .try_append(LogIndex(1), Term(1), &[entry(2, 1)])
            .unwrap();
        assert_eq!((last, changed.len()), (LogIndex(2), 0));
        assert_eq!(log.last_index(), LogIndex(3));
    }

    #[test]
    fn commit_never_moves_back_and_applies_in_order() {
        let mut log = log_of(&[1, 1, 1]);
        assert!(log.commit_to(LogIndex(2)));
        assert!(!log.commit_to(LogIndex(1)));
        assert_eq!(
            log.take_committed()
                .iter()
                .map(|e| e.index.0)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(log.commit_to(LogIndex(9)));
        assert_eq!(log.committed(), LogIndex(3));
        assert_eq!(
            log.take_committed()
                .iter()
                .map(|e| e.index.0)
                .collect::<Vec<_>>(),
            vec![3]
        );
        assert!(log.take_committed().is_empty());
    }
}
