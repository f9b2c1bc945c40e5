//! The edges of `Config::validate` and what its refusals tell the operator.

use pg_leader_raft::{Config, ConfigError, Duration, NodeId};

fn three_voters() -> Config {
    Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)])
}

#[test]
fn a_margin_of_half_the_promise_is_the_largest_accepted() {
    // Divisor 2: the leader counts on half of every promise, still a lease. Divisor 1 would
    // leave it none at all.
    let half = Config {
        lease_margin_divisor: 2,
        ..three_voters()
    };
    assert_eq!(half.validate(), Ok(()));
    assert_eq!(half.lease_duration(), Duration::from_millis(500));
    let whole = Config {
        lease_margin_divisor: 1,
        ..three_voters()
    };
    assert_eq!(whole.validate(), Err(ConfigError::MarginTooLarge));
}

#[test]
fn a_heartbeat_of_exactly_half_the_election_timeout_is_accepted() {
    let config =
        three_voters().with_timing(Duration::from_millis(500), Duration::from_millis(1000));
    assert_eq!(config.validate(), Ok(()));
    let slower =
        three_voters().with_timing(Duration::from_micros(500_001), Duration::from_millis(1000));
    assert!(matches!(
        slower.validate(),
        Err(ConfigError::HeartbeatTooSlow { .. })
    ));
}

#[test]
fn with_timing_sets_both_timings_and_keeps_the_rest() {
    let config = three_voters().with_timing(Duration::from_millis(25), Duration::from_millis(150));
    assert_eq!(config.heartbeat_interval, Duration::from_millis(25));
    assert_eq!(config.election_timeout, Duration::from_millis(150));
    assert_eq!(config.voters, three_voters().voters);
    assert_eq!(config.id, NodeId(1));
}

#[test]
fn every_refusal_says_what_is_wrong() {
    let messages = [
        (ConfigError::DuplicateVoter(NodeId(2)), "listed twice"),
        (
            ConfigError::SelfNotAVoter(NodeId(4)),
            "not among the voters",
        ),
        (ConfigError::ZeroHeartbeat, "must be positive"),
        (
            ConfigError::HeartbeatTooSlow {
                heartbeat: Duration::from_millis(600),
                election_timeout: Duration::from_millis(1000),
            },
            "half the election timeout",
        ),
        (ConfigError::MarginTooLarge, "drift margin"),
        (ConfigError::ZeroBatch, "at least one entry"),
    ];
    for (error, says) in messages {
        let text = error.to_string();
        assert!(text.contains(says), "{error:?} reads {text:?}");
    }
}
