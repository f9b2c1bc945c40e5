//! Replay protection. Raft terms do not stop a replay inside the current term: a recorded
//! heartbeat, sent again, would keep followers from electing after the leader died. Each sender
//! numbers its datagrams within a boot epoch that grows across its restarts; the receiver keeps,
//! per sender, the newest epoch and a sliding window of the counters seen in it.

/// How many counters behind the newest one are still accepted (once each), for reordering.
pub const WINDOW: u64 = 128;

#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    epoch: u64,
    /// The highest counter accepted in `epoch`; 0 before any.
    highest: u64,
    /// Bit i set: counter `highest - i` was accepted.
    seen: u128,
}

impl ReplayWindow {
    /// Accepts `(epoch, counter)` once; false for a replay or anything too old.
    pub fn accept(&mut self, epoch: u64, counter: u64) -> bool {
        if counter == 0 || epoch < self.epoch {
            return false;
        }
        if epoch > self.epoch {
            // The sender restarted: everything from its previous boot is now too old.
            *self = ReplayWindow {
                epoch,
                highest: counter,
                seen: 1,
            };
            return true;
        }
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = counter;
            return true;
        }
        let age = self.highest - counter;
        if age >= WINDOW {
            return false;
        }
        let bit = 1u128 << age;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_is_accepted_once_and_reordering_within_the_window_is_fine() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(1, 5));
        assert!(!w.accept(1, 5));
        assert!(w.accept(1, 3), "late but inside the window");
        assert!(!w.accept(1, 3));
        assert!(w.accept(1, 200));
        assert!(!w.accept(1, 5), "now older than the window");
        assert!(w.accept(1, 200 - WINDOW + 1));
        assert!(!w.accept(1, 200 - WINDOW));
        assert!(!w.accept(1, 0));
    }

    #[test]
    fn a_new_boot_epoch_retires_the_old_one() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(7, 1_000));
        assert!(w.accept(8, 1));
        assert!(
            !w.accept(7, 1_001),
            "a datagram of the previous boot is a replay"
        );
        assert!(w.accept(8, 2));
    }
}
