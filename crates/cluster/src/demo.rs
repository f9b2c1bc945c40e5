//! `demo`: up, kill the leader (the primary), time the failover through SQL, bring the old
//! primary back and show that leadership returns to it (it is still the writable primary, with
//! all the WAL), check every role history, down.

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
    // Leadership follows the writable primary: node `leader` was not rebuilt, so it is still the
    // primary of the newest timeline with all the WAL, and the standby that leads hands back.
    let back_at = Instant::now();
    let (rejoined_leader, rejoined_term) = loop {
        let (l, t, _) = wait_for_leader(c, &all, Duration::from_secs(30))?;
        if l == leader || back_at.elapsed() > Duration::from_secs(30) {
            break (l, t);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!(
        "node {leader} is back: node {rejoined_leader} leads in term {rejoined_term} (was {new_term}), {} ms after node {leader} started{}\n",
        back_at.elapsed().as_millis(),
        if rejoined_leader == leader {
            ": the writable primary, with all the WAL, took leadership back"
        } else {
            ""
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
    if rejoined_leader != leader {
        return Err(format!(
            "leadership did not return to node {leader}, the writable primary (node {rejoined_leader} leads in term {rejoined_term})"
        ));
    }
    Ok(())
}
