//! The two promises users cannot check for themselves, tried where they used to break: a rotated
//! refresh token is never lost (lease takeovers by a skewed clock, failing saves, clients that
//! hang up mid-refresh), and a run that is no longer public never stays on the blog. Also the
//! states around them: corrupt entities, incomplete credentials and the shared read budget.
//! Against real Azurite (directly or behind a fault-injecting proxy) and the fake Strava.

use crate::support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use strava_latest_run::clock::Clock;
use strava_latest_run::store::Store;
use strava_latest_run::strava::StravaClient;
use strava_latest_run::tokens::TokenKeeper;
use support::app::{TestApp, TestSettings};
use support::azurite::{connection_string_for_port, Azurite};
use support::credentials::{connected, hand_made, rotating_strava_with_stored_token};
use support::fake_strava::{FakeStrava, CLIENT_ID};
use support::json;
use support::raw_table;
use support::storage_proxy::{StorageProxy, WriteFate};

const SAMPLE_RUN_ID: i64 = 16128930471;

async fn stored_refresh_token(store: &Store) -> Option<String> {
    match store.load_credentials().await {
        Ok(Some(stored)) => Some(stored.value.refresh_token.expose().to_owned()),
        _ => None,
    }
}

/// Polls until the table holds Strava's newest refresh token; false after `deadline`.
async fn newest_token_stored(store: &Store, strava: &FakeStrava, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if stored_refresh_token(store).await.as_deref() == Some(strava.refresh_token().as_str()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn sample_activities() -> Vec<Value> {
    serde_json::from_str(include_str!("../data/strava/athlete-activities.json")).expect("sample")
}

/// The sample's activities with the one public run of `id` given another visibility.
fn with_visibility(id: i64, visibility: &str) -> Vec<Value> {
    sample_activities()
        .into_iter()
        .map(|mut a| {
            if a["id"] == json!(id) {
                a["visibility"] = json!(visibility);
            }
            a
        })
        .collect()
}

/// Only the sample run, public: it is the athlete's one public run.
fn only_the_sample_run(visibility: &str) -> Vec<Value> {
    with_visibility(SAMPLE_RUN_ID, visibility)
        .into_iter()
        .filter(|a| a["id"] == json!(SAMPLE_RUN_ID))
        .collect()
}

#[tokio::test]
async fn a_lease_taken_over_by_a_skewed_clock_and_a_failing_second_save_keep_the_newest_token() {
    let (strava, settings, direct) = rotating_strava_with_stored_token().await;
    // Instance A reaches storage through a proxy that fails its writes at chosen steps.
    let proxy = StorageProxy::start(Azurite::shared().port()).await;
    let through_proxy = settings
        .clone()
        .with(
            "AzureWebJobsStorage",
            connection_string_for_port(proxy.port()),
        )
        .store();
    let client = StravaClient::new(&strava.base_url(), Duration::from_secs(8)).expect("client");
    let a = TokenKeeper::with_clock(through_proxy, client.clone(), "a", Clock::system());
    // Instance B's clock runs 45 s ahead: a lease written with A's clock looks lapsed to it.
    let b = TokenKeeper::with_clock(direct.clone(), client.clone(), "b", Clock::skewed(45));

    // A takes the lease (passes), its first save meets a 412, the second fails outright: the
    // storage client's own two retries fail too, and so does the keeper's first retry.
    proxy.next_writes(&[
        WriteFate::Pass,
        WriteFate::PreconditionFailed,
        WriteFate::Unavailable,
        WriteFate::Unavailable,
        WriteFate::Unavailable,
        WriteFate::Unavailable,
    ]);
    strava.set_latency(Duration::from_millis(2000));
    let a_task = tokio::spawn(async move { a.refresh_now().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b_task = tokio::spawn(async move { b.refresh_now().await.map(|_| ()) });
    let a_result = tokio::time::timeout(Duration::from_secs(60), a_task)
        .await
        .expect("A finishes")
        .expect("task");
    // B may end either way (it waited, or Strava refused the superseded token); it must end.
    let _ = tokio::time::timeout(Duration::from_secs(60), b_task)
        .await
        .expect("B finishes")
        .expect("B's task did not panic");
    strava.set_latency(Duration::ZERO);
    assert!(a_result.is_ok(), "A's refresh worked: {a_result:?}");
    assert!(
        proxy.writes() >= 7,
        "every injected fault was met ({} writes)",
        proxy.writes()
    );
    assert!(
        newest_token_stored(&direct, &strava, Duration::from_secs(20)).await,
        "the table must end with Strava's newest refresh token (stored {:?})",
        stored_refresh_token(&direct)
            .await
            .map(|t| t == strava.refresh_token())
    );
    // And the chain goes on from it.
    let next = TokenKeeper::new(direct.clone(), client, "c");
    next.refresh_now()
        .await
        .expect("the stored token still refreshes");
}

#[tokio::test]
async fn a_lease_that_lapses_while_its_holder_works_is_taken_over_harmlessly() {
    let (strava, _, store) = rotating_strava_with_stored_token().await;
    let client = StravaClient::new(&strava.base_url(), Duration::from_secs(8)).expect("client");
    let holder = TokenKeeper::new(store.clone(), client.clone(), "holder");
    let other = TokenKeeper::new(store.clone(), client.clone(), "other");
    strava.set_latency(Duration::from_millis(2000));
    let holder_task = tokio::spawn(async move { holder.refresh_now().await.map(|_| ()) });
    // Once the holder's call is at Strava, its lease "lapses" (a paused process would see the
    // same): the lease is gone from the entity, and another instance refreshes too.
    wait_for(|| strava.calls().token_refresh >= 1).await;
    let mut lapsed = store
        .load_credentials()
        .await
        .expect("read")
        .expect("stored")
        .value;
    assert!(lapsed.refresh_lease.is_some(), "the holder took the lease");
    lapsed.refresh_lease = None;
    store.replace_credentials(&lapsed).await.expect("lapse");
    let other_task = tokio::spawn(async move { other.refresh_now().await.map(|_| ()) });
    let holder_result = holder_task.await.expect("task");
    let _ = other_task.await.expect("task");
    strava.set_latency(Duration::ZERO);
    assert!(holder_result.is_ok(), "{holder_result:?}");
    assert!(
        newest_token_stored(&store, &strava, Duration::from_secs(20)).await,
        "the takeover cost nothing: the newest refresh token is stored"
    );
    TokenKeeper::new(store, client, "next")
        .refresh_now()
        .await
        .expect("the chain goes on");
}

/// Polls a condition for up to 20 s.
async fn wait_for(condition: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !condition() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(condition(), "the condition did not come true within 20 s");
}

#[tokio::test]
async fn a_client_hanging_up_during_a_cold_fetch_loses_no_token() {
    let (strava, settings, _) = rotating_strava_with_stored_token().await;
    let app = TestApp::spawn(settings).await;
    let first = strava.refresh_token();
    // Strava rotates on arrival and answers after 1.5 s; the visitor gives up after 0.3 s.
    strava.set_latency(Duration::from_millis(1500));
    let hung_up = app
        .client
        .get(format!("{}/api/GetLatestRun", app.address))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung_up.is_err(), "the client gave up before the answer");
    wait_for(|| strava.refresh_token() != first).await;
    assert!(
        newest_token_stored(&app.store, &strava, Duration::from_secs(15)).await,
        "the rotated refresh token was saved although nobody waited for it"
    );
    strava.set_latency(Duration::ZERO);
    let (status, _) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn tokens_held_in_memory_are_saved_when_storage_returns_without_any_request() {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    let outage = support::outage::Outage::relay_to(Azurite::shared().port()).await;
    let settings = TestSettings::new(&strava.base_url());
    let direct = settings.store();
    direct
        .replace_credentials(&hand_made(&strava.refresh_token()))
        .await
        .expect("arrange");
    let through_relay = settings
        .clone()
        .with(
            "AzureWebJobsStorage",
            connection_string_for_port(outage.port()),
        )
        .store();
    let client = StravaClient::new(&strava.base_url(), Duration::from_secs(5)).expect("client");
    let keeper = TokenKeeper::new(through_relay, client, "held");
    strava.set_latency(Duration::from_millis(1000));
    let refresh = tokio::spawn(async move {
        let outcome = keeper.refresh_now().await.map(|_| ());
        (keeper, outcome)
    });
    // Storage goes away once the call is at Strava (which answers a second later).
    wait_for(|| strava.calls().token_refresh >= 1).await;
    outage.cut();
    let (keeper, outcome) = refresh.await.expect("task");
    assert!(outcome.is_ok(), "{outcome:?}");
    strava.set_latency(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_ne!(
        stored_refresh_token(&direct).await.as_deref(),
        Some(strava.refresh_token().as_str()),
        "storage was down at the save"
    );
    outage.restore();
    assert!(
        newest_token_stored(&direct, &strava, Duration::from_secs(30)).await,
        "the held tokens were persisted by the keeper's own retries"
    );
    drop(keeper);
}

#[tokio::test]
async fn the_only_public_run_made_private_leaves_the_widget_on_every_instance() {
    let strava = FakeStrava::start().await;
    strava.set_activities(only_the_sample_run("everyone"));
    let settings = TestSettings::new(&strava.base_url()).with("WIDGET_CACHE_SECONDS", "1");
    let app = TestApp::spawn(settings.clone()).await;
    app.store
        .replace_credentials(&connected(&strava))
        .await
        .expect("arrange");
    let (status, run) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
    assert_eq!(run["id"], json!(SAMPLE_RUN_ID));

    strava.set_activities(only_the_sample_run("followers_only"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = app
        .poll_json("/api/GetLatestRun", Duration::from_secs(10), |s, _| {
            s == 404
        })
        .await;
    assert_eq!(status, 404, "no longer public: {body}");
    assert_eq!(body["error"], "no_public_run");

    // A restarted instance does not bring it back from the table (a longer window, so that it
    // does not refresh on its own while we count calls). The first instance may still have a
    // refresh in flight from the last poll: let it settle before counting.
    let mut calls = strava.calls().api_total();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = strava.calls().api_total();
        if now == calls {
            break;
        }
        calls = now;
    }
    let restarted = TestApp::spawn(settings.with("WIDGET_CACHE_SECONDS", "600")).await;
    let (status, body) = restarted.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        strava.calls().api_total(),
        calls,
        "the table's word, within the window"
    );
    let stored = raw_table::get(&restarted.settings, "latest-run")
        .await
        .expect("entity");
    assert!(
        !stored.to_string().contains(&SAMPLE_RUN_ID.to_string()),
        "the table no longer holds the run: {stored}"
    );
}

#[tokio::test]
async fn a_deleted_run_gives_way_to_the_next_public_one() {
    let strava = FakeStrava::start().await;
    let app =
        TestApp::spawn(TestSettings::new(&strava.base_url()).with("WIDGET_CACHE_SECONDS", "1"))
            .await;
    app.store
        .replace_credentials(&connected(&strava))
        .await
        .expect("arrange");
    let (_, run) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(run["id"], json!(SAMPLE_RUN_ID));
    strava.set_activities(
        sample_activities()
            .into_iter()
            .filter(|a| a["id"] != json!(SAMPLE_RUN_ID))
            .collect(),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = app
        .poll_json("/api/GetLatestRun", Duration::from_secs(10), |_, b| {
            b["id"] != json!(SAMPLE_RUN_ID)
        })
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], json!(16110453318_i64), "the next public run");
}

#[tokio::test]
async fn a_corrupt_latest_run_entity_is_overwritten_within_seconds() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn(TestSettings::new(&strava.base_url())).await;
    app.store
        .replace_credentials(&connected(&strava))
        .await
        .expect("arrange");
    // Hand-edited: a body, but no FetchedAt or ActivityId.
    raw_table::put(
        &app.settings,
        "latest-run",
        json!({"Body": "{\"id\": 1, \"name\": \"edited\"}"}),
    )
    .await;
    let response = app
        .client
        .get(format!("{}/api/GetLatestRun", app.address))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an answer within 10 s");
    assert_eq!(response.status(), 200);
    let run = json(&response.bytes().await.expect("body"));
    assert_eq!(run["id"], json!(SAMPLE_RUN_ID));
    let stored = raw_table::get(&app.settings, "latest-run")
        .await
        .expect("entity");
    assert!(stored.get("FetchedAt").is_some(), "overwritten: {stored}");
    // One Strava round, no loop: a page of activities and the empty page that ends the list.
    assert_eq!(strava.calls().activities, 2, "one Strava round, no loop");
}

#[tokio::test]
async fn incomplete_credentials_are_named_not_reported_as_storage_down() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn(TestSettings::new(&strava.base_url())).await;
    raw_table::put(
        &app.settings,
        "credentials",
        json!({"ClientId": CLIENT_ID, "RefreshToken": strava.refresh_token()}),
    )
    .await;
    let (status, body) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "not_configured", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("ClientSecret"), "{message}");
    assert!(!message.contains(&strava.refresh_token()));
    assert_eq!(strava.calls().token_refresh, 0);
}

#[tokio::test]
async fn the_read_budget_in_the_table_binds_every_instance_and_marks_the_answer_stale() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url()).with("WIDGET_CACHE_SECONDS", "1");
    let first = TestApp::spawn(settings.clone()).await;
    first
        .store
        .replace_credentials(&connected(&strava))
        .await
        .expect("arrange");
    // 95 of 100 reads in this 15-minute window and 990 of 1000 today are used: the first
    // round sees that (the daily window keeps it true across a quarter-hour reset).
    strava.set_rate_limit_usage((95, 990));
    let (status, answer) = first.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
    assert_eq!(answer["stale"], false);
    let calls = strava.calls().api_total();

    // Another instance, started after the window passed, has seen no rate-limit header itself.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = TestApp::spawn(settings).await;
    for app in [&first, &second] {
        let (status, body) = app
            .poll_json("/api/GetLatestRun", Duration::from_secs(5), |_, b| {
                b["stale"] == true
            })
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["stale"], true,
            "kept only because of the budget: {body}"
        );
        assert_eq!(body["id"], answer["id"]);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        strava.calls().api_total(),
        calls,
        "no instance spends the last reads"
    );
}

#[tokio::test]
async fn a_stored_body_that_is_not_an_answer_is_never_served() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn(TestSettings::new(&strava.base_url())).await;
    app.store
        .replace_credentials(&connected(&strava))
        .await
        .expect("arrange");
    // Hand-edited: every property present and fresh, but the Body is not an answer.
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    raw_table::put(
        &app.settings,
        "latest-run",
        json!({
            "Body": "{\"edited\": \"by hand\"}",
            "FetchedAt": now, "FetchedAt@odata.type": "Edm.DateTime",
            "ActivityId": "1", "ActivityId@odata.type": "Edm.Int64"
        }),
    )
    .await;
    let (status, run) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        run["id"],
        json!(SAMPLE_RUN_ID),
        "Strava's answer, not the edit"
    );
}
