//! `watch`: an observer on every server for a bounded time, each on its own connection and
//! thread, asking `pg_leader_is_leader()` every 2 ms between two readings of the server's clock
//! (one machine, one clock). Then the verdict: no two servers answered true at overlapping
//! moments, and how long the cluster went without any true answer at each change of leader.

use crate::cluster::Cluster;
use crate::run::Result;
use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

/// One answer, stamped with the server's clock (microseconds since the epoch) just before and
/// just after `pg_leader_is_leader()` ran.
#[derive(Clone, Copy, Debug)]
struct Answer {
    node: u32,
    before_us: i64,
    after_us: i64,
    is_leader: bool,
    term: i64,
}

const QUERY: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::int8, \
     pg_leader_is_leader(), pg_leader_term(), (extract(epoch FROM clock_timestamp()) * 1e6)::int8";

fn connect(c: &Cluster, node: u32) -> Option<Client> {
    postgres::Config::new()
        .host_path(&c.dir)
        .port(c.pg_port(node))
        .user("postgres")
        .dbname("postgres")
        .application_name("pg_leader-watch")
        .connect_timeout(Duration::from_secs(1))
        .connect(NoTls)
        .ok()
}

/// Asks one node until `until`, reconnecting (every 20 ms) while it is down.
fn observe(c: &Cluster, node: u32, until: Instant) -> Vec<Answer> {
    let mut answers = Vec::new();
    let mut client: Option<Client> = None;
    while Instant::now() < until {
        let Some(cl) = client.as_mut() else {
            client = connect(c, node);
            if client.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        };
        match cl.query_one(QUERY, &[]) {
            Ok(row) => answers.push(Answer {
                node,
                before_us: row.get(0),
                is_leader: row.get(1),
                term: row.get(2),
                after_us: row.get(3),
            }),
            Err(_) => client = None,
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    answers
}

/// Two true answers from different servers whose intervals overlap, if any. Sorted by start,
/// an answer overlaps an earlier one of another server exactly when that server's latest end
/// so far is not before its start.
fn first_overlap(trues: &[Answer]) -> Option<(Answer, Answer)> {
    let mut latest: Vec<Answer> = Vec::new();
    for a in trues {
        if let Some(b) = latest
            .iter()
            .find(|b| b.node != a.node && b.after_us >= a.before_us)
        {
            return Some((*b, *a));
        }
        match latest.iter_mut().find(|b| b.node == a.node) {
            Some(b) if b.after_us < a.after_us => *b = *a,
            Some(_) => {}
            None => latest.push(*a),
        }
    }
    None
}

/// The changes of leader seen: (old node, new node, the new one's term in its first true
/// answer, microseconds with no true answer between the old one's last and the new one's
/// first). The term is that of this change: a server that leads again later does so in a
/// later term than the one it led before.
fn changes(trues: &[Answer]) -> Vec<(u32, u32, i64, i64)> {
    trues
        .windows(2)
        .filter(|w| w[0].node != w[1].node)
        .map(|w| {
            (
                w[0].node,
                w[1].node,
                w[1].term,
                w[1].before_us - w[0].after_us,
            )
        })
        .collect()
}

pub fn run(c: &Cluster, seconds: f64) -> Result<()> {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut answers: Vec<Answer> = std::thread::scope(|s| {
        let observers: Vec<_> = c
            .ids()
            .map(|node| s.spawn(move || observe(c, node, until)))
            .collect();
        observers
            .into_iter()
            .flat_map(|o| o.join().unwrap_or_default())
            .collect()
    });
    answers.sort_by_key(|a| (a.before_us, a.node));
    let trues: Vec<Answer> = answers.iter().copied().filter(|a| a.is_leader).collect();
    let per_node: Vec<String> = c
        .ids()
        .map(|n| {
            let all = answers.iter().filter(|a| a.node == n).count();
            let t = trues.iter().filter(|a| a.node == n).count();
            format!("node {n}: {all} ({t} true)")
        })
        .collect();
    println!("watch: {} answers; {}", answers.len(), per_node.join(", "));
    for (old, new, term, gap_us) in changes(&trues) {
        println!(
            "watch: leader changed from node {old} to node {new} (term {term}): no true answer for {:.1} ms",
            gap_us as f64 / 1000.0
        );
    }
    if answers.is_empty() {
        return Err("watch: no server answered".into());
    }
    match first_overlap(&trues) {
        Some((a, b)) => Err(format!(
            "watch: nodes {} and {} both answered true at overlapping moments: [{}, {}] and [{}, {}] (us, server clock)",
            a.node, b.node, a.before_us, a.after_us, b.before_us, b.after_us
        )),
        None => {
            println!("watch: no two servers answered true at overlapping moments");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes(node: u32, before_us: i64, after_us: i64) -> Answer {
        Answer {
            node,
            before_us,
            after_us,
            is_leader: true,
            term: 1,
        }
    }

    #[test]
    fn answers_one_after_the_other_do_not_overlap() {
        let trues = [
            yes(1, 0, 10),
            yes(1, 20, 30),
            yes(2, 40, 50),
            yes(2, 60, 70),
        ];
        assert!(first_overlap(&trues).is_none());
        assert_eq!(changes(&trues), vec![(1, 2, 1, 10)]);
    }

    #[test]
    fn a_server_leading_again_is_reported_in_its_new_term() {
        let mut trues = [yes(1, 0, 10), yes(2, 20, 30), yes(1, 40, 50)];
        trues[0].term = 5;
        trues[1].term = 6;
        trues[2].term = 7;
        assert_eq!(changes(&trues), vec![(1, 2, 6, 10), (2, 1, 7, 10)]);
    }

    #[test]
    fn an_answer_inside_another_servers_is_caught() {
        // Node 1's long answer spans node 2's short one, which starts after node 1's next.
        let trues = [yes(1, 0, 100), yes(1, 20, 30), yes(2, 50, 60)];
        let (a, b) = first_overlap(&trues).expect("overlap");
        assert_eq!((a.node, b.node), (1, 2));
    }
}
