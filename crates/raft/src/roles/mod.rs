//! One file per role: each holds that role's step function (messages) and tick function (time).
pub(crate) mod candidate;
pub(crate) mod follower;
pub(crate) mod leader;
