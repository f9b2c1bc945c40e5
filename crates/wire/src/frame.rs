//! Sealing and opening datagrams.

use hmac::{Hmac, Mac};
use pg_leader_raft::{Message, NodeId, PROTOCOL_VERSION};
use sha2::{Digest, Sha256};
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 4] = b"PGLR";
const HEADER: usize = 4 + 1 + 8 + 4 + 8 + 8 + 4;
const MAC: usize = 32;
/// No valid datagram is larger: a leader's AppendEntries carries at most a few small entries.
pub const MAX_DATAGRAM: usize = 60 * 1024;
/// Shorter secrets are refused when the configuration is read.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a datagram was dropped; each reason has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Shorter than a header and a MAC, or longer than `MAX_DATAGRAM`.
    Size,
    /// Not a pg_leader datagram at all.
    Magic,
    /// A format this build does not speak.
    Version,
    /// From another cluster (`pg_leader.cluster_name` differs).
    Cluster,
    /// The MAC does not match: wrong secret, or altered in flight.
    Authentication,
    /// The sender is not among the configured peers (or is this node).
    UnknownSender,
    /// Already seen, or older than the replay window.
    Replay,
    /// Authentic, but the payload does not decode or contradicts the header.
    Malformed,
}

impl Reject {
    pub const ALL: [Reject; 8] = [
        Reject::Size,
        Reject::Magic,
        Reject::Version,
        Reject::Cluster,
        Reject::Authentication,
        Reject::UnknownSender,
        Reject::Replay,
        Reject::Malformed,
    ];

    /// Its position in `ALL`, for counters kept in an array.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Size => "size",
            Reject::Magic => "not pg_leader",
            Reject::Version => "version",
            Reject::Cluster => "other cluster",
            Reject::Authentication => "authentication",
            Reject::UnknownSender => "unknown sender",
            Reject::Replay => "replay",
            Reject::Malformed => "malformed",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cluster's identity on the wire: the first 8 bytes of SHA-256 of its name.
pub fn cluster_id(cluster_name: &str) -> u64 {
    let digest = Sha256::digest(cluster_name.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// What a node needs to seal and open datagrams.
#[derive(Clone)]
pub struct Codec {
    cluster: u64,
    mac: HmacSha256,
}

/// An opened datagram's header, for the replay check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub sender: NodeId,
    pub epoch: u64,
    pub counter: u64,
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DATAGRAM>()
}

impl Codec {
    pub fn new(cluster_name: &str, secret: &[u8]) -> Codec {
        let mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        Codec {
            cluster: cluster_id(cluster_name),
            mac,
        }
    }

    /// Frames and authenticates `msg`, sent by `msg.from` in boot `epoch` as its `counter`-th
    /// datagram of that boot.
    pub fn seal(&self, msg: &Message, epoch: u64, counter: u64) -> Vec<u8> {
        let payload =
            bincode::serde::encode_to_vec(msg, bincode_config()).expect("messages always encode");
        let mut out = Vec::with_capacity(HEADER + payload.len() + MAC);
        out.extend_from_slice(MAGIC);
        out.push(PROTOCOL_VERSION);
        out.extend_from_slice(&self.cluster.to_be_bytes());
        out.extend_from_slice(&msg.from.0.to_be_bytes());
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        let mut mac = self.mac.clone();
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// Checks everything but the replay window and decodes. The caller checks the window with
    /// the returned header and only then hands the message to the core.
    pub fn open(&self, datagram: &[u8]) -> Result<(Header, Message), Reject> {
        if datagram.len() < HEADER + MAC || datagram.len() > MAX_DATAGRAM {
            return Err(Reject::Size);
        }
        if &datagram[..4] != MAGIC {
            return Err(Reject::Magic);
        }
        if datagram[4] != PROTOCOL_VERSION {
            return Err(Reject::Version);
        }
        let field =
            |at: usize| u64::from_be_bytes(datagram[at..at + 8].try_into().expect("8 bytes"));
        if field(5) != self.cluster {
            return Err(Reject::Cluster);
        }
        let (body, tag) = datagram.split_at(datagram.len() - MAC);
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| Reject::Authentication)?;
        let sender = NodeId(u32::from_be_bytes(
            datagram[13..17].try_into().expect("4 bytes"),
        ));
        let header = Header {
            sender,
            epoch: field(17),
            counter: field(25),
        };
        let len = u32::from_be_bytes(datagram[33..37].try_into().expect("4 bytes")) as usize;
        if HEADER + len != body.len() {
            return Err(Reject::Malformed);
        }
        let msg = decode_message(&body[HEADER..])?;
        if msg.from != sender {
            return Err(Reject::Malformed);
        }
        Ok((header, msg))
    }
}

/// A message from exactly `bytes` (the payload of a frame), within the size limit; trailing
/// bytes make it malformed.
pub fn decode_message(bytes: &[u8]) -> Result<Message, Reject> {
    let (msg, used): (Message, usize) = bincode::serde::decode_from_slice(bytes, bincode_config())
        .map_err(|_| Reject::Malformed)?;
    if used != bytes.len() {
        return Err(Reject::Malformed);
    }
    Ok(msg)
}

/// The sender a datagram claims in its header, readable before authentication (for counting
/// rejections against the node it pretends to be).
pub fn claimed_sender(datagram: &[u8]) -> Option<NodeId> {
    let bytes = datagram.get(13..17)?;
    Some(NodeId(u32::from_be_bytes(bytes.try_into().ok()?)))
}
