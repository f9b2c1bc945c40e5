"""What the client's record says about a fault (`analyse`): run with
`cd bench && /usr/bin/python3 -m unittest downtime.test_client`."""

import unittest

from .client import analyse

KILL = 100.0


def ok(sent, done, seq, port=58001):
    return (True, sent, done, seq, port)


def fail(sent, done, error="connection refused"):
    return (False, sent, done, None, error)


class Analyse(unittest.TestCase):
    def test_downtime_runs_from_the_kill_to_the_first_ack_after_the_first_error(self):
        events = [ok(99.98, 99.99, 1), ok(100.00, 100.02, 2), fail(100.03, 100.03), fail(100.04, 100.05),
                  ok(100.30, 100.31, 3, 58003), ok(100.32, 100.33, 4, 58003)]
        down, port, fails, note = analyse(events, KILL)
        self.assertAlmostEqual(down, 0.31)
        self.assertEqual((port, fails, note), (58003, 2, ""))

    def test_an_ack_in_flight_at_the_kill_does_not_end_the_downtime(self):
        events = [ok(99.99, 100.01, 1), fail(100.02, 100.02), ok(101.50, 101.52, 2, 58002)]
        self.assertAlmostEqual(analyse(events, KILL)[0], 1.52)

    def test_no_ack_after_the_error_is_no_downtime_figure(self):
        events = [ok(99.99, 99.995, 1), fail(100.01, 100.01, "refused"), fail(100.5, 100.6, "still refused")]
        down, port, fails, note = analyse(events, KILL)
        self.assertEqual((down, port, fails), (None, None, 2))
        self.assertIn("still refused", note)

    def test_errors_after_the_restoring_ack_are_counted(self):
        events = [fail(100.01, 100.01), ok(100.2, 100.21, 1), fail(100.3, 100.3), ok(100.4, 100.41, 2)]
        down, _, fails, note = analyse(events, KILL)
        self.assertAlmostEqual(down, 0.21)
        self.assertEqual(fails, 2)
        self.assertEqual(note, "1 failures after the restoring commit")

    def test_writes_that_never_fail_report_the_largest_gap_between_acks(self):
        events = [ok(99.99, 100.01, 1), ok(100.02, 100.5, 2), ok(100.51, 100.52, 3)]
        down, port, fails, note = analyse(events, KILL)
        self.assertAlmostEqual(down, 0.49)
        self.assertEqual((port, fails), (58001, 0))
        self.assertIn("no error seen", note)


if __name__ == "__main__":
    unittest.main()
