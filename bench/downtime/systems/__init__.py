"""The systems compared: pg_leader, Patroni with etcd, pg_auto_failover."""
