//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) as ordinary tests: every file goes through
//! the same entry point of `strava_latest_run::fuzzing` its fuzz target calls, which must neither
//! panic nor report a broken invariant. Crashes found by `scripts/fuzz` are kept in the corpus,
//! so they stay fixed.

use std::path::{Path, PathBuf};
use strava_latest_run::fuzzing;

/// Every file of a target's corpus, sorted (a missing or empty corpus is a failure).
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no seed", dir.display());
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).expect("read corpus file");
            (path, data)
        })
        .collect()
}

fn replay(target: &str, run: impl Fn(&[u8]) -> fuzzing::Outcome) {
    for (path, data) in corpus(target) {
        if let Err(broken) = run(&data) {
            panic!("{}: {broken}", path.display());
        }
    }
}

#[test]
fn invocation_request_corpus() {
    replay("invocation_request", fuzzing::invocation_request);
}

#[test]
fn forwarded_request_corpus() {
    // As the fuzz target runs it: one app, a current-thread runtime with a paused clock.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let app = fuzzing::fuzz_app().expect("the fuzz app builds");
    replay("forwarded_request", |data| {
        runtime.block_on(fuzzing::forwarded_request(&app, data))
    });
}

#[test]
fn strava_decoders_corpus() {
    replay("strava_decoders", fuzzing::strava_decoders);
}

#[test]
fn strava_rate_limit_corpus() {
    replay("strava_rate_limit", fuzzing::strava_rate_limit);
}

#[test]
fn webhook_event_corpus() {
    replay("webhook_event", fuzzing::webhook_event);
}

#[test]
fn local_settings_corpus() {
    replay("local_settings", fuzzing::local_settings);
}

#[test]
fn pasted_redirect_corpus() {
    replay("pasted_redirect", fuzzing::pasted_redirect);
}
