//! Fuzz target: `strava_latest_run::fuzzing::strava_rate_limit` (see there for the input and the invariants).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = strava_latest_run::fuzzing::strava_rate_limit(data) {
        panic!("invariant broken: {broken}");
    }
});
