//! The validated cluster configuration that the `pg_leader.*` settings parse into. Pure: the
//! worker reads the settings, calls `ClusterConfig::from_settings`, and either runs with the
//! result or stays up in the `misconfigured` state showing the error.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One entry of `pg_leader.peers`: `id=host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: u32,
    pub host: String,
    pub port: u16,
}

impl Peer {
    /// `host:port`, with brackets around an IPv6 literal.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A setting that cannot be used, in PostgreSQL's words: message, detail, hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingError {
    pub setting: &'static str,
    pub value: String,
    pub detail: String,
    pub hint: Option<String>,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value for parameter \"{}\": \"{}\"",
            self.setting, self.value
        )
    }
}

fn error(setting: &'static str, value: &str, detail: String, hint: Option<&str>) -> SettingError {
    SettingError {
        setting,
        value: value.to_string(),
        detail,
        hint: hint.map(str::to_string),
    }
}

const PEERS: &str = "pg_leader.peers";
const PEERS_HINT: &str =
    "List every voter, this server included, as 'id=host:port, id=host:port, ...'.";

/// Parses `pg_leader.peers`: `'1=10.0.0.1:7401, 2=db2.example.com:7401, 3=[::1]:7401'`.
pub fn parse_peers(text: &str) -> Result<Vec<Peer>, SettingError> {
    let mut peers: Vec<Peer> = Vec::new();
    if text.trim().is_empty() {
        return Err(error(
            PEERS,
            text,
            "The list is empty.".into(),
            Some(PEERS_HINT),
        ));
    }
    for item in text.split(',') {
        let item = item.trim();
        let Some((id, address)) = item.split_once('=') else {
            return Err(error(
                PEERS,
                text,
                format!("Entry \"{item}\" has no \"=\"."),
                Some(PEERS_HINT),
            ));
        };
        let id: u32 = match id.trim().parse() {
            Ok(id) if id > 0 => id,
            _ => {
                let detail = format!("Node id \"{}\" is not a positive integer.", id.trim());
                return Err(error(PEERS, text, detail, Some(PEERS_HINT)));
            }
        };
        let (host, port) = split_host_port(address.trim()).ok_or_else(|| {
            error(
                PEERS,
                text,
                format!("Address \"{}\" is not host:port.", address.trim()),
                Some(PEERS_HINT),
            )
        })?;
        let peer = Peer { id, host, port };
        if peers.iter().any(|p| p.id == id) {
            return Err(error(
                PEERS,
                text,
                format!("Node id {id} is listed twice."),
                None,
            ));
        }
        if let Some(p) = peers.iter().find(|p| p.address() == peer.address()) {
            let detail = format!("Nodes {} and {id} share the address {}.", p.id, p.address());
            return Err(error(PEERS, text, detail, None));
        }
        peers.push(peer);
    }
    Ok(peers)
}

fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, rest) = rest.split_once(']')?;
        (host, rest.strip_prefix(':')?)
    } else {
        let (host, port) = address.rsplit_once(':')?;
        if host.contains(':') {
            return None; // an IPv6 literal needs brackets
        }
        (host, port)
    };
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    valid_host.then(|| (host.to_string(), port))
}

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// Reads `pg_leader.secret_file`: it must be private to its owner and hold at least 16 bytes
/// (surrounding white space is ignored). Errors never show the secret.
pub fn read_secret(path: &str) -> Result<Vec<u8>, SettingError> {
    const SETTING: &str = "pg_leader.secret_file";
    if path.is_empty() {
        let hint = "Create a file with a random secret, the same on every node, mode 0600.";
        return Err(error(
            SETTING,
            path,
            "No secret file is set.".into(),
            Some(hint),
        ));
    }
    let unreadable = |e: std::io::Error| {
        error(
            SETTING,
            path,
            format!("Could not read the file: {e}."),
            None,
        )
    };
    let meta = std::fs::metadata(Path::new(path)).map_err(unreadable)?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        let detail = format!(
            "The file can be read or written by others (mode {:04o}).",
            mode & 0o7777
        );
        return Err(error(SETTING, path, detail, Some("Run chmod 600 on it.")));
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    let secret = bytes.trim_ascii().to_vec();
    if secret.len() < MIN_SECRET_BYTES {
        let detail = format!(
            "The secret has {} bytes; at least {MIN_SECRET_BYTES} are needed.",
            secret.len()
        );
        let hint = "For example: openssl rand -hex 32 > FILE";
        return Err(error(SETTING, path, detail, Some(hint)));
    }
    Ok(secret)
}

/// Checks the timings: at least two heartbeats must fit in the shortest election timeout.
pub fn check_timing(heartbeat_ms: u32, election_timeout_ms: u32) -> Result<(), SettingError> {
    if heartbeat_ms.saturating_mul(2) > election_timeout_ms {
        return Err(SettingError {
            setting: "pg_leader.heartbeat_interval",
            value: format!("{heartbeat_ms}ms"),
            detail: format!(
                "The heartbeat interval must be at most half of pg_leader.election_timeout ({election_timeout_ms}ms)."
            ),
            hint: Some("Lower pg_leader.heartbeat_interval or raise pg_leader.election_timeout.".into()),
        });
    }
    Ok(())
}

/// Finds this node in the peer list.
pub fn find_self(peers: &[Peer], node_id: i32) -> Result<&Peer, SettingError> {
    peers
        .iter()
        .find(|p| p.id as i64 == node_id as i64)
        .ok_or_else(|| SettingError {
            setting: "pg_leader.node_id",
            value: node_id.to_string(),
            detail: format!("Node id {node_id} is not in pg_leader.peers."),
            hint: Some(
                "Every server, this one included, must be listed in pg_leader.peers.".into(),
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_with_host_names_and_ipv6() {
        let peers = parse_peers(" 1=10.0.0.1:7401, 2=db2.example.com:7402,3=[::1]:7403 ").unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(
            peers[1],
            Peer {
                id: 2,
                host: "db2.example.com".into(),
                port: 7402
            }
        );
        assert_eq!(peers[2].address(), "[::1]:7403");
        assert_eq!(find_self(&peers, 2).unwrap().port, 7402);
    }

    #[test]
    fn bad_peer_lists_name_the_setting_the_value_and_the_problem() {
        let cases = [
            ("", "The list is empty."),
            ("1=a:1, 1=b:2", "Node id 1 is listed twice."),
            ("1=a:1, 2=a:1", "Nodes 1 and 2 share the address a:1."),
            ("1=a", "Address \"a\" is not host:port."),
            ("1=a:0", "Address \"a:0\" is not host:port."),
            ("1=a:99999", "Address \"a:99999\" is not host:port."),
            ("x=a:1", "Node id \"x\" is not a positive integer."),
            ("0=a:1", "Node id \"0\" is not a positive integer."),
            ("1=::1:5", "Address \"::1:5\" is not host:port."),
            ("1 a:1", "Entry \"1 a:1\" has no \"=\"."),
            ("1=a b:1", "Address \"a b:1\" is not host:port."),
        ];
        for (text, detail) in cases {
            let e = parse_peers(text).unwrap_err();
            assert_eq!(e.setting, "pg_leader.peers");
            assert_eq!(e.value, text);
            assert_eq!(e.detail, detail, "for {text:?}");
            assert_eq!(
                e.to_string(),
                format!("invalid value for parameter \"pg_leader.peers\": \"{text}\"")
            );
        }
    }

    #[test]
    fn node_id_must_be_listed() {
        let peers = parse_peers("1=a:1, 2=b:1").unwrap();
        let e = find_self(&peers, 3).unwrap_err();
        assert_eq!(
            (e.setting, e.detail.as_str()),
            ("pg_leader.node_id", "Node id 3 is not in pg_leader.peers.")
        );
    }

    #[test]
    fn timing_needs_two_heartbeats_per_election_timeout() {
        assert!(check_timing(100, 1000).is_ok());
        assert!(check_timing(500, 1000).is_ok());
        let e = check_timing(600, 1000).unwrap_err();
        assert_eq!(e.value, "600ms");
    }

    #[test]
    fn secret_files_must_be_private_and_long_enough() {
        let dir =
            std::env::temp_dir().join(format!("pg_leader_secret_test_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        let p = path.to_str().unwrap();
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secret(p).unwrap_err().detail.contains("mode 0644"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret(p).unwrap(), b"0123456789abcdef0123");
        std::fs::write(&path, "short").unwrap();
        let e = read_secret(p).unwrap_err();
        assert!(
            e.detail.contains("5 bytes") && !e.detail.contains("short"),
            "{e:?}"
        );
        assert!(read_secret(dir.join("missing").to_str().unwrap()).is_err());
        assert!(read_secret("").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
