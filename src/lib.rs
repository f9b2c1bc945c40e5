//! pg_leader: Raft leader election inside PostgreSQL.
use pgrx::prelude::*;

::pgrx::pg_module_magic!();
