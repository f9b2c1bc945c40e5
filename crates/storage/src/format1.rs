//! The state file's format 1, read so that an upgraded server keeps its term, vote and log. It
//! lacked `HardState::longest_promise`, which is taken as unknown (zero): the core then waits its
//! own election timeout after a start, which is all a format 1 server ever promised to wait.

use crate::Stored as Current;
use pg_leader_raft::{Entry, HardState, NodeId, PersistedState, Term};
use serde::{Deserialize, Serialize};

pub(crate) const FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
pub(crate) struct Stored {
    cluster_name: String,
    node_id: NodeId,
    boot_epoch: u64,
    state: State,
}

#[derive(Serialize, Deserialize)]
struct State {
    hard_state: Hard,
    entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Hard {
    term: Term,
    voted_for: Option<NodeId>,
}

impl From<Stored> for Current {
    fn from(old: Stored) -> Current {
        Current {
            cluster_name: old.cluster_name,
            node_id: old.node_id,
            boot_epoch: old.boot_epoch,
            state: PersistedState {
                hard_state: HardState {
                    term: old.state.hard_state.term,
                    voted_for: old.state.hard_state.voted_for,
                    longest_promise: Default::default(),
                },
                entries: old.state.entries,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bincode_config, frame, Storage, STATE_FILE};
    use pg_leader_raft::{Duration, EntryData, LogIndex};

    #[test]
    fn a_format_1_file_is_read_with_the_promise_unknown_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let entry = Entry {
            term: Term(3),
            index: LogIndex(1),
            data: EntryData::Noop,
        };
        let old = Stored {
            cluster_name: "prod".into(),
            node_id: NodeId(2),
            boot_epoch: 5,
            state: State {
                hard_state: Hard {
                    term: Term(4),
                    voted_for: Some(NodeId(3)),
                },
                entries: vec![entry.clone()],
            },
        };
        let payload = bincode::serde::encode_to_vec(&old, bincode_config()).unwrap();
        std::fs::write(
            dir.path().join(STATE_FILE),
            frame(crate::MAGIC, FORMAT, &payload),
        )
        .unwrap();
        let storage = Storage::open(dir.path(), "prod", NodeId(2)).unwrap();
        let expected = HardState {
            term: Term(4),
            voted_for: Some(NodeId(3)),
            longest_promise: Duration::ZERO,
        };
        assert_eq!(storage.persisted().hard_state, expected);
        assert_eq!(storage.persisted().entries, vec![entry]);
        assert_eq!(storage.boot_epoch(), 6);
        let written = std::fs::read(dir.path().join(STATE_FILE)).unwrap();
        assert_eq!(written[4], crate::FORMAT, "rewritten in the current format");
        let reopened = Storage::open(dir.path(), "prod", NodeId(2)).unwrap();
        assert_eq!(reopened.persisted().hard_state, expected);
    }
}
