//! `demo`: up, kill the leader, time the failover through SQL, bring the old leader back and
//! show that it rejoins as a follower without raising the term, down.

use crate::cluster::{signal, Cluster};
use crate::observe::{print_status, wait_for_leader};
use crate::run::Result;
use std::time::{Duration, Instant};

pub fn run(c: &Cluster) -> Result<()> {
    println!(
        "== starting {} servers: node 1 primary, the others pg_basebackup standbys",
        c.nodes
    );
    c.create(&[])?;
    let all: Vec<u32> = c.ids().collect();
    let (leader, term, took) = wait_for_leader(c, &all, Duration::from_secs(30))?;
    println!("leader: node {leader} in term {term}, agreed by all {} nodes {} ms after the last server started\n", c.nodes, took.as_millis());
    print_status(c);

    let pid = c
        .postmaster_pid(leader)
        .ok_or("the leader's postmaster is not running")?;
    println!("\n== SIGKILL of node {leader}'s postmaster (pid {pid})");
    signal(pid, "KILL")?;
    let killed_at = Instant::now();
    let survivors: Vec<u32> = all.iter().copied().filter(|n| *n != leader).collect();
    let (new_leader, new_term, _) = wait_for_leader(c, &survivors, Duration::from_secs(30))?;
    let failover = killed_at.elapsed();
    println!(
        "new leader: node {new_leader} in term {new_term}, seen through SQL on every survivor {} ms after the kill\n",
        failover.as_millis()
    );
    print_status(c);

    println!("\n== starting node {leader} again");
    c.start(leader)?;
    let (rejoined_leader, rejoined_term, _) = wait_for_leader(c, &all, Duration::from_secs(30))?;
    let old = crate::sql::view(c, leader)?;
    println!(
        "node {leader} is back as {} of node {rejoined_leader}; term {} (was {new_term}: {})\n",
        old.role,
        rejoined_term,
        if rejoined_term == new_term {
            "PreVote kept it from disturbing the cluster"
        } else {
            "the term rose"
        }
    );
    print_status(c);

    let verdict = crate::history::check(c)?;
    println!(
        "\nrole histories: {} terms with a leader, {} lease intervals: no term with two leaders, no overlapping leases",
        verdict.terms_with_leader, verdict.leases
    );

    println!("\n== down");
    c.destroy()?;
    crate::network::heal()?;
    println!("\nfailover: {} ms from SIGKILL of the leader to a new leader agreed through SQL by every survivor", failover.as_millis());
    if rejoined_term != new_term || old.role != "follower" {
        return Err(format!(
            "node {leader} did not rejoin quietly (role {}, term {rejoined_term})",
            old.role
        ));
    }
    Ok(())
}
