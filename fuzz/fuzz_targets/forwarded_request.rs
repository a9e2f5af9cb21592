//! Fuzz target: `strava_latest_run::fuzzing::forwarded_request` (see there for the input and the
//! invariants), on one app and one current-thread runtime whose clock is paused, so the app's
//! waits for (unreachable) storage cost no wall time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use strava_latest_run::app::App;

fn harness() -> &'static (tokio::runtime::Runtime, Arc<App>) {
    static HARNESS: OnceLock<(tokio::runtime::Runtime, Arc<App>)> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        let app = strava_latest_run::fuzzing::fuzz_app().expect("the fuzz app builds");
        (runtime, app)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, app) = harness();
    if let Err(broken) = runtime.block_on(strava_latest_run::fuzzing::forwarded_request(app, data))
    {
        panic!("invariant broken: {broken}");
    }
});
