//! Shared test support: the real Azurite, a fake Strava, and the app started on free ports.
#![allow(dead_code)]

pub mod app;
pub mod azurite;
pub mod credentials;
pub mod fake_strava;
pub mod outage;
pub mod raw_table;
pub mod storage_proxy;

/// Parses a response body as JSON, showing the body when it is not.
pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}
