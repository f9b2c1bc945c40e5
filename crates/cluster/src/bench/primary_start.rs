//! Leadership follows the writable primary at start: N fresh clusters (initdb for node 1, then
//! pg_basebackup standbys), each timed from the moment the last server accepts connections to
//! the primary (node 1) holding the lease, agreed through SQL by every server. A trial where
//! another server leads first still counts once node 1 leads, and says so.

use super::probe::SqlProbe;
use super::{Timing, Trials};
use crate::cluster::Cluster;
use crate::run::Result;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The primary of a fresh cluster created by `Cluster::create`.
const PRIMARY: u32 = 1;

pub fn primary_start(c: &Cluster, trials: u32, timing: Timing, csv: Option<PathBuf>) -> Result<()> {
    let all: Vec<u32> = c.ids().collect();
    let mut results = Trials::new("primary start", csv);
    let patience = Duration::from_secs(30);
    let mut primary_first = 0;
    for trial in 1..=trials {
        c.destroy()?;
        // `create` returns once the last standby's `pg_ctl start -w` saw it accept connections.
        c.create(&timing.settings())?;
        let accepting = Instant::now();
        let mut probe = SqlProbe::new(c);
        let mut first_leader = None;
        let (term, took) = loop {
            if let Some((leader, term)) = probe.agreed_leader(&all) {
                first_leader.get_or_insert(leader);
                if leader == PRIMARY {
                    break (term, accepting.elapsed());
                }
            }
            if accepting.elapsed() > patience {
                return Err(format!(
                    "trial {trial}: the primary did not lead within {} s (first leader: {first_leader:?}); see the logs in {}",
                    patience.as_secs(),
                    c.dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if first_leader == Some(PRIMARY) {
            primary_first += 1;
        }
        results.record(
            took.as_secs_f64() * 1000.0,
            term,
            &format!(
                "the primary leads term {term}; first leader agreed: node {}",
                first_leader.unwrap_or(PRIMARY)
            ),
        );
    }
    println!("primary start: the primary was the first leader agreed in {primary_first} of {trials} trials");
    results.finish()
}
