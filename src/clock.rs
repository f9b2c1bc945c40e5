//! The one clock every process of a machine shares (`pg_leader_storage::clock`): the worker
//! stamps lease deadlines with it and sessions compare against it.

pub use pg_leader_storage::clock::{boot_id, boottime_now};
