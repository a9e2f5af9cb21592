//! The multi-instance schedule test's machinery (`tests/api/chaos.rs`): seeded plans, the run of
//! one schedule against three instances on one table, the record of what happened, and the
//! checks.

pub mod check;
pub mod plan;
pub mod record;
pub mod rng;
pub mod run;
pub mod truth;
