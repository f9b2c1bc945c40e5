//! Whether a standby's WAL has left the leader's history: a standby that replayed past the
//! point where the leader's timeline forked from its own cannot follow the leader (PostgreSQL
//! logs "new timeline N forked off current database system timeline T before current recovery
//! point" and retries for ever), and must be rewound like a former primary.
//!
//! That happens when a standby received WAL from the old primary that the new one never had:
//! the old primary writes commit records (their acknowledgement fenced) between the moment the
//! new leader stopped receiving and the moment it stops, and streams them to the other standbys.
//!
//! The evidence is PostgreSQL's own: the leader's timeline history file, which the standby's WAL
//! receiver fetches into `pg_wal` when it connects to a primary on a newer timeline, compared
//! with the standby's replay position, by the rule the startup process applies.

use std::path::Path;

/// The standby's replay position on `own_timeline` (`replayed`, the end of the last record
/// replayed) against the history of the leader's `leader_timeline`, read from `pg_wal`. `None`
/// when the history file is not there yet (the WAL receiver has not fetched it) or cannot be
/// read: no evidence, no rewind.
pub fn has_left_history(
    pg_wal: &Path,
    leader_timeline: u32,
    own_timeline: u32,
    replayed: u64,
) -> Option<bool> {
    if leader_timeline <= own_timeline {
        return Some(false);
    }
    let text =
        std::fs::read_to_string(pg_wal.join(format!("{leader_timeline:08X}.history"))).ok()?;
    Some(left_history(&text, own_timeline, replayed))
}

/// The rule on one history file's text: a timeline listed as an ancestor ends at its switch
/// point, and a standby that replayed beyond it has WAL the leader's history lacks; a timeline
/// not listed at all is not an ancestor, so the standby's WAL past the common ancestor is not
/// the leader's either (a standby is never created on a timeline newer than its primary's
/// history without having replayed something of it).
pub fn left_history(text: &str, own_timeline: u32, replayed: u64) -> bool {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(parent), Some(switch)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (Ok(parent), Some(switch)) = (parent.parse::<u32>(), parse_lsn(switch)) else {
            continue;
        };
        if parent == own_timeline {
            return replayed > switch;
        }
    }
    true
}

/// "XXXXXXXX/XXXXXXXX" as PostgreSQL prints an LSN.
fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u32::MAX as u64 && lo <= u32::MAX as u64).then_some((hi << 32) | lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HISTORY: &str = "1\t0/3000158\tno recovery target specified\n\n2\t0/5A00028\tno recovery target specified\n";

    #[test]
    fn a_standby_at_or_before_the_switch_point_follows() {
        assert!(!left_history(HISTORY, 2, 0x5A0_0028));
        assert!(!left_history(HISTORY, 1, 0x300_0000));
    }

    #[test]
    fn a_standby_past_the_switch_point_has_left_the_history() {
        assert!(left_history(HISTORY, 2, 0x5A0_0029));
        assert!(left_history(HISTORY, 1, 0x1_0000_0000));
    }

    #[test]
    fn a_timeline_that_is_no_ancestor_has_left_the_history() {
        assert!(left_history(HISTORY, 4, 0x100));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(!left_history(
            "# comment\nx y\n2\tnot-an-lsn\n2\t0/10\n",
            2,
            0x10
        ));
    }

    #[test]
    fn no_history_file_is_no_evidence_and_an_older_leader_is_followed() {
        let dir = std::env::temp_dir().join(format!("pg_leader_history_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(has_left_history(&dir, 3, 2, 5), None);
        assert_eq!(has_left_history(&dir, 2, 2, 5), Some(false));
        std::fs::write(dir.join("00000003.history"), HISTORY).unwrap();
        assert_eq!(has_left_history(&dir, 3, 2, 0x5A0_0029), Some(true));
        assert_eq!(has_left_history(&dir, 3, 2, 0x5A0_0028), Some(false));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
