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

/// Fails naming the line (with the secret masked) if `text` holds any secret the fake Strava
/// ever issued, its client secret, or the storage account key.
pub fn assert_no_secret(text: &str, strava: &fake_strava::FakeStrava) {
    for secret in strava.all_secrets() {
        if let Some(at) = text.find(&secret) {
            let start = text[..at].rfind('\n').unwrap_or(0);
            let line: String = text[start..].chars().take(300).collect();
            panic!("a secret leaked in: {}", line.replace(&secret, "<SECRET>"));
        }
    }
    assert!(
        !text.contains(azurite::ACCOUNT_KEY),
        "the storage key leaked"
    );
}
