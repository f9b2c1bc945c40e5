//! The reference: the same failover measurement against a 3-member etcd cluster on loopback
//! with the same heartbeat and election timeout. A member's view is read from etcd's HTTP
//! gateway (`POST /v3/maintenance/status`): its own id, the leader it follows and its term.
//! etcd runs as shipped by the distribution, with its default options otherwise.

use super::{Jitter, Timing, Trials};
use crate::run::Result;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";

struct Member {
    name: String,
    client_port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Member {
    fn start(&mut self, log_dir: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{}.log", self.name)))
            .map_err(|e| format!("could not open the etcd log: {e}"))?;
        let child = Command::new(ETCD)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("could not start {ETCD}: {e} (is etcd-server installed?)"))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

/// What one member says: (its own id, the leader's id or 0, its term).
fn status(port: u16) -> Result<(u64, u64, u64)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let request = "POST /v3/maintenance/status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let field = |name: &str| -> Option<u64> {
        let key = format!("\"{name}\":\"");
        let at = answer.find(&key)? + key.len();
        answer[at..].split('"').next()?.parse().ok()
    };
    match (field("member_id"), field("raftTerm")) {
        (Some(me), Some(term)) => Ok((me, field("leader").unwrap_or(0), term)),
        _ => Err(format!(
            "unexpected answer from etcd on port {port}: {answer:?}"
        )),
    }
}

/// The leader's id and term when every member in `ports` names the same leader, other than
/// `gone`, in one term.
fn agreed_leader(ports: &[u16], gone: u64) -> Option<(u64, u64)> {
    let mut seen = None;
    for &p in ports {
        let (_, leader, term) = status(p).ok()?;
        if leader == 0 || leader == gone || seen.is_some_and(|s| s != (leader, term)) {
            return None;
        }
        seen = Some((leader, term));
    }
    seen
}

fn wait_for_leader(ports: &[u16], gone: u64, since: Instant) -> Result<(u64, u64, Duration)> {
    loop {
        if let Some((leader, term)) = agreed_leader(ports, gone) {
            return Ok((leader, term, since.elapsed()));
        }
        if since.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "etcd: no leader agreed on ports {ports:?} within 30 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn etcd_failover(
    dir: &Path,
    base_port: u16,
    trials: u32,
    timing: Timing,
    csv: Option<PathBuf>,
) -> Result<()> {
    if !Path::new(ETCD).exists() {
        return Err(format!(
            "{ETCD} is not installed (apt-get install etcd-server)"
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("could not create {dir:?}: {e}"))?;
    let peer = |i: u16| format!("http://127.0.0.1:{}", base_port + 100 + i);
    let initial: Vec<String> = (1..=3).map(|i| format!("e{i}={}", peer(i))).collect();
    let mut members: Vec<Member> = (1..=3u16)
        .map(|i| {
            let client = format!("http://127.0.0.1:{}", base_port + i);
            let args = [
                "--name",
                &format!("e{i}"),
                "--data-dir",
                &dir.join(format!("e{i}")).to_string_lossy(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer(i),
                "--initial-advertise-peer-urls",
                &peer(i),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "pg_leader-bench",
                "--heartbeat-interval",
                &timing.heartbeat_ms.to_string(),
                "--election-timeout",
                &timing.election_timeout_ms.to_string(),
            ]
            .map(String::from)
            .to_vec();
            Member {
                name: format!("e{i}"),
                client_port: base_port + i,
                args,
                child: None,
            }
        })
        .collect();
    let result = measure(dir, &mut members, trials, timing, csv);
    for m in &mut members {
        m.kill();
    }
    let _ = std::fs::remove_dir_all(dir);
    result
}

fn measure(
    dir: &Path,
    members: &mut [Member],
    trials: u32,
    timing: Timing,
    csv: Option<PathBuf>,
) -> Result<()> {
    for m in members.iter_mut() {
        m.start(dir)?;
    }
    let ports: Vec<u16> = members.iter().map(|m| m.client_port).collect();
    let mut results = Trials::new("etcd failover", csv);
    let mut jitter = Jitter::new();
    for _ in 0..trials {
        let (leader, term, _) = wait_for_leader(&ports, 0, Instant::now())?;
        let settle = 3 * timing.heartbeat_ms as u64 + 300;
        std::thread::sleep(Duration::from_millis(
            settle + jitter.below(3 * timing.heartbeat_ms as u64),
        ));
        let index = ports
            .iter()
            .position(|&p| status(p).map(|s| s.0) == Ok(leader))
            .ok_or("etcd: the leader is not among the members")?;
        members[index].kill();
        let killed = Instant::now();
        let survivors: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|&p| p != ports[index])
            .collect();
        let (_, new_term, took) = wait_for_leader(&survivors, leader, killed)?;
        results.record(
            took.as_secs_f64() * 1000.0,
            new_term.saturating_sub(term),
            &format!(
                "member {} killed in term {term}, new leader in term {new_term}",
                members[index].name
            ),
        );
        members[index].start(dir)?;
    }
    results.finish()
}
