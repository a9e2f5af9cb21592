//! The `credentials` entities tests start from: a hand-made one and one as `handler setup`
//! leaves it, both pointing at the fake Strava's client and tokens.

use super::app::TestSettings;
use super::fake_strava::{FakeStrava, ATHLETE_ID, CLIENT_ID, CLIENT_SECRET};
use strava_latest_run::secret::Secret;
use strava_latest_run::store::Credentials;
use strava_latest_run::store::Store;

/// What a user migrating from a hand-made table has: three properties.
pub fn hand_made(refresh_token: &str) -> Credentials {
    Credentials {
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        refresh_token: Secret::new(refresh_token),
        access_token: None,
        expires_at: None,
        athlete_id: None,
        scope: None,
        refresh_lease: None,
        refused_at: None,
    }
}

/// Credentials as `handler setup` leaves them, with the fake's current tokens.
pub fn connected(strava: &FakeStrava) -> Credentials {
    Credentials {
        access_token: Some(Secret::new(strava.access_token())),
        expires_at: Some(strava.access_token_expires_at()),
        athlete_id: Some(ATHLETE_ID),
        scope: Some("read,activity:read".into()),
        ..hand_made(&strava.refresh_token())
    }
}

/// Where the token keeper's tests start: a fake Strava that rotates the refresh token on every
/// refresh, and a fresh table holding [`hand_made`] credentials with its current refresh token.
pub async fn rotating_strava_with_stored_token() -> (FakeStrava, TestSettings, Store) {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    let settings = TestSettings::new(&strava.base_url());
    let store = settings.store();
    store
        .replace_credentials(&hand_made(&strava.refresh_token()))
        .await
        .expect("arrange");
    (strava, settings, store)
}
