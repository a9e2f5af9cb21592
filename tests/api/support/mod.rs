//! Shared test support: the real Azurite, a fake Strava, and the app started on free ports.
#![allow(dead_code)]

pub mod activities;
pub mod app;
pub mod azurite;
pub mod chaos;
pub mod credentials;
pub mod fake_strava;
pub mod outage;
pub mod raw_table;
pub mod storage_proxy;
pub mod tcp_proxy;

/// Parses a response body as JSON, showing the body when it is not.
pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Now, as Unix seconds (the machine's clock).
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Every value that must never appear in an answer or a log line: the client secret and every
/// token the fake Strava ever issued, and the storage account key.
pub fn secrets(strava: &fake_strava::FakeStrava) -> Vec<String> {
    let mut secrets = strava.all_secrets();
    secrets.push(azurite::ACCOUNT_KEY.to_owned());
    secrets
}

/// Fails naming the line (with the secret masked) if `text` holds any secret the fake Strava
/// ever issued, its client secret, or the storage account key.
pub fn assert_no_secret(text: &str, strava: &fake_strava::FakeStrava) {
    assert_no_secret_among("the text", text, &secrets(strava));
}

/// Fails naming `what` and the line (every secret in it masked) if `text` holds any of
/// `secrets`: [`secrets`] and whatever else a test treats as secret (a webhook verify token,
/// another storage key).
pub fn assert_no_secret_among(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!secret.is_empty(), "an empty secret would match anything");
        if let Some(at) = text.find(secret.as_str()) {
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            let line = secrets.iter().fold(text[start..end].to_owned(), |line, s| {
                line.replace(s.as_str(), "<SECRET>")
            });
            // Around the (first) masked secret, so a long line still shows where.
            let masked_at = line[..line.find("<SECRET>").unwrap_or(0)].chars().count();
            let line: String = line
                .chars()
                .skip(masked_at.saturating_sub(150))
                .take(300)
                .collect();
            panic!("a secret leaked in {what}: {line}");
        }
    }
}
