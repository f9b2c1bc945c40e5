//! The datagram format pg_leader nodes exchange over UDP.
//!
//! ```text
//! magic "PGLR" | version u8 | cluster u64 | sender u32 | boot epoch u64 | counter u64 |
//! payload length u32 | payload (bincode Message) | HMAC-SHA256 over everything before it
//! ```
//! Every field before the MAC is authenticated. The receiver checks, in order: size, magic,
//! version, cluster, MAC (constant time), sender, replay window, payload decoding (size-limited),
//! and that the message names the same sender. Whatever fails is dropped and counted by reason.

pub mod frame;
pub mod replay;

pub use frame::{claimed_sender, cluster_id, decode_message, Codec, Reject, MAX_DATAGRAM};
pub use replay::ReplayWindow;
