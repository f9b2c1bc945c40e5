//! The datagram decoder on arbitrary bytes: never panics, and whatever it accepts seals back
//! to a datagram it accepts again with the same content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_leader_wire::{claimed_sender, Codec};

const SECRET: &[u8] = b"fuzzing secret, thirty-two bytes";

fuzz_target!(|data: &[u8]| {
    let codec = Codec::new("fuzz", SECRET);
    let _ = claimed_sender(data);
    let _ = pg_leader_wire::decode_message(data);
    if let Ok((header, msg)) = codec.open(data) {
        let again = codec.seal(&msg, header.epoch, header.counter);
        let (h2, m2) = codec.open(&again).expect("a sealed frame opens");
        assert_eq!((h2.epoch, h2.counter, &m2), (header.epoch, header.counter, &msg));
    }
    // Valid frames around arbitrary payload bytes reach the message decoder itself.
    if let Ok(msg) = pg_leader_wire::decode_message(data) {
        let sealed = codec.seal(&msg, 1, 1);
        let (_, reopened) = codec.open(&sealed).expect("a sealed message opens");
        assert_eq!(reopened, msg);
    }
});
