//! The integration tests, one binary (the shared support is compiled once): each module is one
//! area, started against the real Azurite, the fake Strava and the app on free loopback ports
//! (`support`). The soak run (`tests/soak.rs`) and the fuzz corpus replay
//! (`tests/fuzz_corpus.rs`, with the `fuzzing` feature) are targets of their own.

mod support;

mod answers;
mod chaos;
mod coalescing;
mod edges;
mod faults;
mod foundation;
mod infra;
mod latest_run;
mod layers;
mod logging;
mod promises;
mod properties;
mod route_privacy;
mod scale_out;
mod tokens;
mod webhook;
mod widget;
