//! The witness's configuration file: the extension's settings, by the same names, one
//! `name = value` a line as in `postgresql.conf` (`#` starts a comment, values may be quoted, the
//! `pg_leader.` prefix is optional, timings take `ms` or `s`). Checked as the extension checks
//! them (`pg_leader_settings`), and a name the witness does not know is an error, not ignored.
//!
//! ```text
//! node_id = 3
//! peers = '1=10.0.0.1:7401, 2=10.0.0.2:7401, 3=10.0.0.3:7401'
//! cluster_name = 'main'
//! secret_file = '/etc/pg_leader/secret'
//! state_dir = '/var/lib/pg_leader-witness'
//! heartbeat_interval = 100ms
//! election_timeout = 1s
//! http_port = 8008            # optional: /status, /metrics, /health, /readiness
//! http_address = '127.0.0.1'  # optional: the host of this server's peers entry by default
//! ```

use pg_leader_settings::{check_timing, find_self, parse_peers, read_secret, Peer, SettingError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read configuration file \"{path}\": {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: syntax error: {why}")]
    Syntax {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("unrecognized configuration parameter \"{0}\"")]
    Unknown(String),
    #[error("parameter \"{0}\" is not set")]
    Missing(&'static str),
    #[error("{0}: {detail}", detail = .0.detail)]
    Setting(SettingError),
}

impl From<SettingError> for ConfigError {
    fn from(e: SettingError) -> ConfigError {
        ConfigError::Setting(e)
    }
}

#[derive(Clone, Debug)]
pub struct WitnessConfig {
    pub node_id: u32,
    pub peers: Vec<Peer>,
    pub cluster_name: String,
    pub secret: Vec<u8>,
    pub state_dir: PathBuf,
    pub heartbeat_ms: u32,
    pub election_timeout_ms: u32,
    /// Where the HTTP endpoints listen (`host:port`); None: no HTTP.
    pub http_listen: Option<String>,
}

const KNOWN: [&str; 9] = [
    "node_id",
    "peers",
    "cluster_name",
    "secret_file",
    "state_dir",
    "heartbeat_interval",
    "election_timeout",
    "http_port",
    "http_address",
];

impl WitnessConfig {
    pub fn load(path: &Path) -> Result<WitnessConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let values = parse_lines(path, &text)?;
        from_values(&values)
    }
}

/// `name = value` lines into a map (the last one of a name wins, as in `postgresql.conf`).
fn parse_lines(path: &Path, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut values = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let syntax = |why: &str| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: n + 1,
            why: why.to_string(),
        };
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| syntax("expected name = value"))?;
        let name = name.trim();
        let name = name.strip_prefix("pg_leader.").unwrap_or(name);
        if !KNOWN.contains(&name) {
            return Err(ConfigError::Unknown(name.to_string()));
        }
        values.insert(name.to_string(), unquote(value.trim()).map_err(syntax)?);
    }
    Ok(values)
}

/// The line up to a `#` outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(value: &str) -> Result<String, &'static str> {
    match value.strip_prefix('\'') {
        Some(rest) => rest
            .strip_suffix('\'')
            .map(|v| v.replace("''", "'"))
            .ok_or("unterminated quoted string"),
        None => Ok(value.to_string()),
    }
}

fn from_values(values: &BTreeMap<String, String>) -> Result<WitnessConfig, ConfigError> {
    let get = |name: &'static str| values.get(name).ok_or(ConfigError::Missing(name));
    let node_id = number("pg_leader.node_id", get("node_id")?, 1, i32::MAX as u64)? as u32;
    let peers = parse_peers(get("peers")?)?;
    let own = find_self(&peers, node_id as i32)?.clone();
    let cluster_name = get("cluster_name")?.clone();
    if cluster_name.is_empty() {
        return Err(ConfigError::Missing("cluster_name"));
    }
    let secret = read_secret(get("secret_file")?)?;
    let state_dir = PathBuf::from(get("state_dir")?);
    let heartbeat_ms = match values.get("heartbeat_interval") {
        Some(v) => millis("pg_leader.heartbeat_interval", v)?,
        None => 100,
    };
    let election_timeout_ms = match values.get("election_timeout") {
        Some(v) => millis("pg_leader.election_timeout", v)?,
        None => 1000,
    };
    check_timing(heartbeat_ms, election_timeout_ms)?;
    let http_listen = match values.get("http_port") {
        None => None,
        Some(port) => {
            let port = number("pg_leader.http_port", port, 0, u16::MAX as u64)?;
            let host = values
                .get("http_address")
                .cloned()
                .unwrap_or(own.host.clone());
            (port != 0).then(|| {
                Peer {
                    id: 0,
                    host,
                    port: port as u16,
                }
                .address()
            })
        }
    };
    Ok(WitnessConfig {
        node_id,
        peers,
        cluster_name,
        secret,
        state_dir,
        heartbeat_ms,
        election_timeout_ms,
        http_listen,
    })
}

fn invalid(setting: &'static str, value: &str, detail: String) -> ConfigError {
    ConfigError::Setting(SettingError {
        setting,
        value: value.to_string(),
        detail,
        hint: None,
    })
}

fn number(setting: &'static str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            setting,
            value,
            format!("Expected an integer from {min} to {max}."),
        )),
    }
}

/// A timing in PostgreSQL's units: `100`, `100ms`, `1s`, `1min`.
fn millis(setting: &'static str, value: &str) -> Result<u32, ConfigError> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = value[digits.len()..].trim();
    let scale = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        _ => {
            return Err(invalid(
                setting,
                value,
                "Valid units are ms, s and min.".into(),
            ))
        }
    };
    let n = number(setting, digits.trim(), 1, i32::MAX as u64)? * scale;
    u32::try_from(n).map_err(|_| invalid(setting, value, "The value is too large.".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let secret = dir.join("secret");
        std::fs::write(&secret, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.join("witness.conf");
        let text = text.replace("SECRET", secret.to_str().unwrap());
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = "# a witness\n\
        pg_leader.node_id = 3\n\
        peers = '1=127.0.0.1:7401, 2=127.0.0.1:7402, 3=127.0.0.1:7403'  # all voters\n\
        cluster_name = 'main'\n\
        secret_file = 'SECRET'\n\
        state_dir = /tmp/w3\n\
        election_timeout = 2s\n\
        http_port = 8103\n";

    #[test]
    fn reads_the_extension_names_with_or_without_prefix_units_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let c = WitnessConfig::load(&write(dir.path(), GOOD)).unwrap();
        assert_eq!((c.node_id, c.peers.len()), (3, 3));
        assert_eq!((c.heartbeat_ms, c.election_timeout_ms), (100, 2000));
        assert_eq!(c.http_listen.as_deref(), Some("127.0.0.1:8103"));
        assert_eq!(c.cluster_name, "main");
    }

    #[test]
    fn a_misspelt_name_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{GOOD}electon_timeout = 1s\n");
        let e = WitnessConfig::load(&write(dir.path(), &text)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unrecognized configuration parameter \"electon_timeout\""
        );
    }

    #[test]
    fn a_bad_value_names_the_setting_and_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{GOOD}heartbeat_interval = 100 parsecs\n");
        let e = WitnessConfig::load(&write(dir.path(), &text)).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "invalid value for parameter \"pg_leader.heartbeat_interval\": \"100 parsecs\""
            ),
            "{e}"
        );
        let text = GOOD.replace("node_id = 3", "node_id = 4");
        let e = WitnessConfig::load(&write(dir.path(), &text)).unwrap_err();
        assert!(e.to_string().contains("pg_leader.node_id"), "{e}");
    }

    #[test]
    fn a_missing_setting_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = GOOD.replace("cluster_name = 'main'\n", "");
        let e = WitnessConfig::load(&write(dir.path(), &text)).unwrap_err();
        assert_eq!(e.to_string(), "parameter \"cluster_name\" is not set");
    }
}
