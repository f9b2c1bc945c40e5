//! `demo`: PostgreSQL fails over by itself. Up (with `pg_leader.auto_failover` and
//! `auto_rejoin` on), a write on the primary, SIGKILL of the primary's postmaster, the time until
//! a promoted standby accepts a write, the old primary started again and the time until it
//! streams from the new one as a standby (rebuilt with pg_rewind by itself), the first write
//! found on the new primary, every role history checked, down.

use crate::cluster::{signal, Cluster};
use crate::observe::{print_status, wait_for_leader};
use crate::run::Result;
use crate::sql::query;
use std::time::{Duration, Instant};

const SETTINGS: [&str; 2] = ["pg_leader.auto_failover = on", "pg_leader.auto_rejoin = on"];

pub fn run(c: &Cluster) -> Result<()> {
    println!(
        "== starting {} servers: node 1 primary, the others pg_basebackup standbys; PostgreSQL follows the election",
        c.nodes
    );
    let settings: Vec<String> = SETTINGS.iter().map(|s| s.to_string()).collect();
    c.create(&settings)?;
    let all: Vec<u32> = c.ids().collect();
    let (leader, term, took) = wait_for_leader(c, &all, Duration::from_secs(30))?;
    println!("leader: node {leader} in term {term}, agreed by all {} nodes {} ms after the last server started\n", c.nodes, took.as_millis());
    print_status(c);
    query(c, leader, "CREATE TABLE demo (n int, written_on int)")?;
    query(c, leader, &format!("INSERT INTO demo VALUES (1, {leader})"))?;
    println!("\nwrote row 1 on node {leader}, the primary");

    let pid = c
        .postmaster_pid(leader)
        .ok_or("the leader's postmaster is not running")?;
    println!("\n== SIGKILL of node {leader}'s postmaster (pid {pid})");
    signal(pid, "KILL")?;
    let killed_at = Instant::now();
    let survivors: Vec<u32> = all.iter().copied().filter(|n| *n != leader).collect();
    let (primary, downtime) = first_write(c, &survivors, killed_at)?;
    println!(
        "node {primary} accepted a write (row 2) {} ms after the kill: promoted by itself\n",
        downtime.as_millis()
    );
    print_status(c);

    println!("\n== starting node {leader} again");
    c.start(leader)?;
    let started_at = Instant::now();
    let streaming = format!(
        "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg_leader_{leader}' AND state = 'streaming'"
    );
    loop {
        let in_recovery = query(c, leader, "SELECT pg_is_in_recovery()").unwrap_or_default();
        if in_recovery == "t" && query(c, primary, &streaming).unwrap_or_default() == "1" {
            break;
        }
        if started_at.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "node {leader} did not come back as a streaming standby of node {primary} within 60 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rejoin = started_at.elapsed();
    println!(
        "node {leader} is a streaming standby of node {primary} {} ms after it started (pg_rewind, standby.signal, restart: by itself)\n",
        rejoin.as_millis()
    );
    print_status(c);
    let rows = query(
        c,
        primary,
        "SELECT string_agg(n || ' written on node ' || written_on, ', ' ORDER BY n) FROM demo",
    )?;
    println!("\nrows on node {primary}, the new primary: {rows}");

    let verdict = crate::history::check(c)?;
    println!(
        "\nrole histories: {} terms with a leader, {} lease intervals: no term with two leaders, no overlapping leases",
        verdict.terms_with_leader, verdict.leases
    );

    println!("\n== down");
    c.destroy()?;
    crate::network::heal()?;
    println!(
        "\nwrite downtime: {} ms from SIGKILL of the primary's postmaster to a write acknowledged by the promoted standby; the old primary streamed again {} ms after it started",
        downtime.as_millis(),
        rejoin.as_millis()
    );
    Ok(())
}

/// Tries a write on each of `nodes` in turn until one acknowledges it; that node, and the time
/// since `since`.
fn first_write(c: &Cluster, nodes: &[u32], since: Instant) -> Result<(u32, Duration)> {
    loop {
        for node in nodes {
            let sql = format!("INSERT INTO demo VALUES (2, {node})");
            if query(c, *node, &sql).is_ok() {
                return Ok((*node, since.elapsed()));
            }
        }
        if since.elapsed() > Duration::from_secs(30) {
            return Err("no server accepted a write within 30 s of the kill".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
