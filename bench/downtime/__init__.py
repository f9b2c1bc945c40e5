"""Write downtime of pg_leader, Patroni and pg_auto_failover, measured by one harness
(bench/write_downtime.py runs it, bench/write_downtime.sh installs what it needs)."""
