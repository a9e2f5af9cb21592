//! Fuzz target: `strava_latest_run::fuzzing::local_settings` (see there for the input and the invariants).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = strava_latest_run::fuzzing::local_settings(data) {
        panic!("invariant broken: {broken}");
    }
});
