//! Every endpoint's answer, from facts made up for each case.

use super::*;
use crate::facts::{Counters, PeerFacts};

fn leader() -> Facts {
    Facts {
        node_id: 1,
        role: "leader",
        term: 7,
        leader_id: Some(1),
        lease_remaining_us: Some(800_000),
        election_timeout_ms: 1000,
        wal_position: 5000,
        accepts_connections: true,
        status_json: "{\"role\":\"leader\"}\n".into(),
        ..Facts::default()
    }
}

fn standby() -> Facts {
    Facts {
        node_id: 2,
        role: "follower",
        term: 7,
        leader_id: Some(1),
        lease_remaining_us: None,
        leader_contact_ms: Some(50),
        election_timeout_ms: 1000,
        in_recovery: true,
        wal_receiver_streaming: true,
        wal_position: 4000,
        leader_wal_position: Some(5000),
        accepts_connections: true,
        ..Facts::default()
    }
}

fn get(path: &str, f: Facts) -> Response {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    respond(request.as_bytes(), || f).expect("a complete request")
}

fn status(path: &str, f: Facts) -> u16 {
    get(path, f).status
}

#[test]
fn primary_is_the_leader_out_of_recovery_with_its_lease() {
    assert_eq!(status("/primary", leader()), 200);
    assert_eq!(status("/primary", standby()), 503);
    let in_recovery = Facts {
        in_recovery: true,
        ..leader()
    };
    assert_eq!(
        status("/primary", in_recovery),
        503,
        "a leader not promoted yet"
    );
    let lease_gone = Facts {
        lease_remaining_us: None,
        ..leader()
    };
    assert_eq!(status("/primary", lease_gone), 503);
}

#[test]
fn leader_keeps_its_meaning() {
    assert_eq!(status("/leader", leader()), 200);
    let in_recovery = Facts {
        in_recovery: true,
        ..leader()
    };
    assert_eq!(status("/leader", in_recovery), 200);
    assert_eq!(status("/leader", standby()), 503);
}

#[test]
fn replica_is_a_streaming_standby_following_a_live_leader() {
    assert_eq!(status("/replica", standby()), 200);
    assert_eq!(status("/replica", leader()), 503);
    let not_streaming = Facts {
        wal_receiver_streaming: false,
        ..standby()
    };
    assert_eq!(status("/replica", not_streaming), 503);
    let primary_follower = Facts {
        in_recovery: false,
        ..standby()
    };
    assert_eq!(status("/replica", primary_follower), 503);
    let leader_silent = Facts {
        leader_contact_ms: Some(1500),
        ..standby()
    };
    assert_eq!(status("/replica", leader_silent), 503);
    let no_leader = Facts {
        leader_id: None,
        ..standby()
    };
    assert_eq!(status("/replica", no_leader), 503);
}

#[test]
fn replica_with_lag_compares_with_the_leaders_position() {
    assert_eq!(
        status("/replica?lag=1000", standby()),
        200,
        "exactly at the limit"
    );
    assert_eq!(status("/replica?lag=999", standby()), 503);
    assert_eq!(status("/replica?lag=0", standby()), 503);
    assert!(get("/replica?lag=999", standby())
        .body
        .contains("1000 bytes behind"));
    let unknown = Facts {
        leader_wal_position: None,
        ..standby()
    };
    assert_eq!(status("/replica?lag=1000000", unknown.clone()), 503);
    assert_eq!(
        status("/replica", unknown),
        200,
        "without lag the position is not needed"
    );
    assert_eq!(
        status("/replica?lag=10&lag=1000", standby()),
        200,
        "the last value counts"
    );
}

#[test]
fn a_bad_lag_is_a_bad_request() {
    for bad in ["", "-1", "1MB", "1.5", "abc", "99999999999999999999999"] {
        let r = get(&format!("/replica?lag={bad}"), standby());
        assert_eq!(r.status, 400, "lag={bad}");
        assert!(r.body.starts_with("invalid lag"), "{}", r.body);
    }
}

#[test]
fn health_answers_whenever_the_worker_runs() {
    assert_eq!(status("/health", leader()), 200);
    let nothing = Facts {
        role: "candidate",
        accepts_connections: false,
        ..Facts::default()
    };
    assert_eq!(status("/health", nothing), 200);
}

#[test]
fn readiness_needs_an_agreed_leader_and_a_serving_postgres() {
    assert_eq!(status("/readiness", leader()), 200);
    assert_eq!(status("/readiness", standby()), 200);
    let candidate = Facts {
        role: "candidate",
        leader_id: None,
        ..standby()
    };
    assert_eq!(status("/readiness", candidate), 503);
    let leader_silent = Facts {
        leader_contact_ms: Some(2000),
        ..standby()
    };
    assert_eq!(status("/readiness", leader_silent), 503);
    let no_lease = Facts {
        lease_remaining_us: None,
        ..leader()
    };
    assert_eq!(status("/readiness", no_lease), 503);
    let down = Facts {
        accepts_connections: false,
        ..standby()
    };
    assert_eq!(status("/readiness", down), 503);
}

#[test]
fn status_is_the_json_and_metrics_the_text_format() {
    let r = get("/status", leader());
    assert_eq!((r.status, r.content_type), (200, "application/json"));
    assert_eq!(r.body, "{\"role\":\"leader\"}\n");
    let r = get("/metrics", leader());
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/plain; version=0.0.4"));
    assert!(r.body.contains("pg_leader_term 7\n"), "{}", r.body);
    let scrape =
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n";
    let r = respond(scrape, leader).unwrap();
    assert!(r.content_type.starts_with("application/openmetrics-text"));
    assert!(r.body.ends_with("# EOF\n"));
}

#[test]
fn unknown_paths_are_404_and_other_methods_405() {
    assert_eq!(status("/nothing", leader()), 404);
    assert_eq!(status("/primary/", leader()), 404);
    let post = respond(b"POST /primary HTTP/1.1\r\n\r\n", leader).unwrap();
    assert_eq!(post.status, 405);
}

#[test]
fn garbage_is_400_and_an_incomplete_request_waits() {
    let asked = std::cell::Cell::new(false);
    let facts = || {
        asked.set(true);
        leader()
    };
    assert_eq!(respond(b"GET /primary HTTP/1.1\r\n", facts), None);
    let r = respond(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        leader,
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("bad request"));
    assert!(
        !asked.get(),
        "facts are not gathered for requests not answered from them"
    );
    assert_eq!(status("/health", Facts::default()), 200);
}

#[test]
fn head_is_get_without_the_body() {
    let get_bytes = get("/primary", leader()).to_bytes();
    let head = respond(b"HEAD /primary HTTP/1.1\r\n\r\n", leader).unwrap();
    let head_bytes = head.to_bytes();
    let text = String::from_utf8(head_bytes.clone()).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(
        text.contains("Content-Length: 8\r\n"),
        "the GET body's length: {text}"
    );
    assert!(text.ends_with("\r\n\r\n"));
    assert_eq!(&get_bytes[..head_bytes.len()], &head_bytes[..]);
    assert_eq!(&get_bytes[head_bytes.len()..], b"primary\n");
    let head_503 = respond(b"HEAD /primary HTTP/1.1\r\n\r\n", standby).unwrap();
    assert_eq!(head_503.status, 503);
}

#[test]
fn metrics_carry_the_counters_and_the_peers() {
    let mut counters = Counters::default();
    counters.elections_started = 3;
    counters.elections_won = 2;
    let f = Facts {
        counters,
        peers: vec![PeerFacts {
            id: 2,
            last_contact_seconds: Some(0.25),
            datagrams_in: 10,
            datagrams_out: 11,
        }],
        rejected_by_reason: vec![("replay", 4), ("unknown sender", 1)],
        fence_refused: 5,
        ..leader()
    };
    let body = get("/metrics", f).body;
    for line in [
        "pg_leader_role{role=\"leader\"} 1",
        "pg_leader_role{role=\"follower\"} 0",
        "pg_leader_leader_id 1",
        "pg_leader_lease_remaining_seconds 0.8",
        "pg_leader_elections_started_total 3",
        "pg_leader_elections_won_total 2",
        "pg_leader_peer_last_contact_seconds{peer=\"2\"} 0.25",
        "pg_leader_datagrams_received_total{peer=\"2\"} 10",
        "pg_leader_datagrams_sent_total{peer=\"2\"} 11",
        "pg_leader_datagrams_rejected_total{reason=\"unknown_sender\"} 1",
        "pg_leader_fence_refused_commits_total 5",
        "pg_leader_in_recovery 0",
        "pg_leader_wal_position_bytes 5000",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
}
