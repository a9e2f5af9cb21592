//! The StravaWebhook function and `handler subscribe`: the subscription's validation, events
//! that bring a new run (or take one off) with no visitor in between, answers within Strava's
//! two seconds, deauthorizations checked with Strava before anything is deleted, foreign and
//! forged events. Against real Azurite and the fake Strava, which validates callbacks and
//! delivers events over real sockets as Strava does.

use crate::support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::activities;
use support::app::{invoke_at, run_handler_command, HandlerProcess, TestApp, TestSettings};
use support::fake_strava::FakeStrava;
use support::json;
use support::raw_table;
use support::storage_proxy::{StorageProxy, WriteFate};

const VERIFY_TOKEN: &str = "widget-verify-3f9a";
const SAMPLE_RUN_ID: i64 = 16128930471;
const NEW_RUN_ID: i64 = 16200000001;

fn settings(strava: &FakeStrava, cache_seconds: u32) -> TestSettings {
    TestSettings::new(&strava.base_url())
        .with("STRAVA_WEBHOOK_VERIFY_TOKEN", VERIFY_TOKEN)
        .with("WIDGET_CACHE_SECONDS", cache_seconds.to_string())
}

/// A storage proxy in front of the shared Azurite, and [`settings`] with a 600 s window whose
/// storage is behind it.
async fn behind_a_storage_proxy(strava: &FakeStrava) -> (StorageProxy, TestSettings) {
    let proxy = StorageProxy::start(support::azurite::Azurite::shared().port()).await;
    let settings = settings(strava, 600).with(
        "AzureWebJobsStorage",
        support::azurite::connection_string_for_port(proxy.port()),
    );
    (proxy, settings)
}

/// A connected app, subscribed at the fake with `handler subscribe`.
async fn subscribed_app(strava: &FakeStrava, settings: TestSettings) -> TestApp {
    TestApp::spawn_subscribed(strava, settings, strava_latest_run::clock::Clock::system()).await
}

fn sample_activities() -> Vec<Value> {
    serde_json::from_str(include_str!("../data/strava/athlete-activities.json")).expect("sample")
}

/// The sample list with a new public run on top (started a day after the sample's newest).
fn with_a_new_run() -> Vec<Value> {
    let mut list = sample_activities();
    let mut run = list
        .iter()
        .find(|a| a["id"] == json!(SAMPLE_RUN_ID))
        .cloned()
        .expect("sample run");
    run["id"] = json!(NEW_RUN_ID);
    run["name"] = json!("Fresh from the webhook");
    run["start_date"] = json!("2025-10-13T06:00:00Z");
    run["start_date_local"] = json!("2025-10-13T08:00:00Z");
    list.insert(0, run);
    list
}

/// The activity id the table's answer shows (no request to the app).
async fn stored_activity(settings: &TestSettings) -> Option<i64> {
    raw_table::get(settings, "latest-run")
        .await
        .and_then(|e| e.get("ActivityId").cloned())
        .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_i64()))
}

/// Strava gets a new run and sends its create event to the registered callback: whether the
/// table's shared answer shows it within `seconds`.
async fn a_new_run_shows_within(
    strava: &FakeStrava,
    settings: &TestSettings,
    seconds: u64,
) -> bool {
    strava.set_activities(with_a_new_run());
    let delivery = strava
        .deliver_event(&strava.event("activity", NEW_RUN_ID, "create", json!({})))
        .await;
    assert!(delivery.acknowledged, "{delivery:?}");
    shows_within(settings, NEW_RUN_ID, seconds).await
}

/// Whether the table's shared answer shows activity `id` within `seconds`.
async fn shows_within(settings: &TestSettings, id: i64, seconds: u64) -> bool {
    eventually(seconds, || async {
        stored_activity(settings).await == Some(id)
    })
    .await
}

/// Polls `check` every 100 ms for up to `seconds`; whether it came true.
async fn eventually<F, Fut>(seconds: u64, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn validation_echoes_the_challenge_for_the_right_token_only_in_every_form() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn(settings(&strava, 600)).await;
    let query = |token: &str| {
        format!(
            "/api/StravaWebhook?hub.verify_token={token}&hub.challenge=b7c2f0a9&hub.mode=subscribe"
        )
    };
    let (status, body) = app.get_json(&query(VERIFY_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"hub.challenge": "b7c2f0a9"}));
    let (status, body) = app.get_json(&query("guess")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden");
    let (status, _) = app.get_json("/api/StravaWebhook?hub.verify_token=widget-verify-3f9a&hub.challenge=x&hub.mode=unsubscribe",
    )
    .await;
    assert_eq!(status, 400);

    // The invocation form, as the host sends it without forwarding.
    let invocation = |token: &str| {
        json!({"Data": {"req": {
            "Url": format!("http://localhost:7071{}", query(token)),
            "Method": "GET",
            "Query": {"hub.verify_token": token, "hub.challenge": "b7c2f0a9", "hub.mode": "subscribe"},
            "Headers": {}, "Params": {}
        }}, "Metadata": {}})
        .to_string()
    };
    for (token, expected) in [(VERIFY_TOKEN, 200), ("guess", 403)] {
        let response = invoke_at(
            &app.client,
            &app.address,
            "StravaWebhook",
            invocation(token),
        )
        .await;
        assert_eq!(response.status(), 200, "an invocation reply");
        let reply = json(&response.bytes().await.expect("body"));
        assert_eq!(
            reply["Outputs"]["res"]["statusCode"],
            json!(expected),
            "{reply}"
        );
    }

    // Standalone serves the same public route.
    let standalone = TestApp::spawn_standalone(settings(&strava, 600)).await;
    let (status, body) = standalone.get_json(&query(VERIFY_TOKEN)).await;
    assert_eq!(
        (status, body["hub.challenge"].clone()),
        (200, json!("b7c2f0a9"))
    );

    // Without a verify token the webhook is not set up.
    let unset = TestApp::spawn(TestSettings::new(&strava.base_url())).await;
    let (status, body) = unset.get_json(&query(VERIFY_TOKEN)).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "not_configured");
    let response = unset
        .client
        .post(format!("{}/api/StravaWebhook", unset.address))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn subscribe_validates_the_callback_and_every_known_failure_is_one_line() {
    let strava = FakeStrava::start().await;
    let app = subscribed_app(&strava, settings(&strava, 600)).await;
    let subscription = strava.subscription().expect("subscribed at Strava");
    // The callback carries a new random secret as its last path segment: at least 128 bits of
    // URL-safe base64, kept in the table.
    let secret = strava.callback_secret().expect("a secret path segment");
    assert!(secret.len() >= 22, "{} characters", secret.len());
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "URL-safe"
    );
    assert_eq!(
        subscription.callback_url,
        format!("{}/api/StravaWebhook/{secret}", app.address)
    );
    assert_eq!(strava.validations(), 1, "Strava validated the callback");
    let stored = raw_table::get(&app.settings, "subscription")
        .await
        .expect("stored");
    assert_eq!(stored["SubscriptionId"], json!(subscription.id.to_string()));
    assert_eq!(stored["CallbackSecret"], json!(secret));
    let (_, status_text) = run_handler_command(&app.settings, &["status"], "").await;
    assert!(
        status_text.contains(&format!("push subscription: {}", subscription.id)),
        "{status_text}"
    );
    assert!(status_text.contains("secret path"), "{status_text}");
    assert!(
        status_text.contains(&format!("{} characters", secret.len())),
        "{status_text}"
    );
    let mut printed = vec![status_text];

    // Again: one exists already.
    let callback = format!("{}/api/StravaWebhook", app.address);
    let (status, output) = run_handler_command(
        &app.settings,
        &["subscribe", "--callback-url", &callback],
        "",
    )
    .await;
    assert!(!status.success());
    assert!(output.contains("already exists"), "{output}");
    assert!(output.contains(&subscription.id.to_string()), "{output}");
    printed.push(output);

    // Unsubscribe, then a callback that does not know the token, then no token at all.
    let (status, output) = run_handler_command(&app.settings, &["unsubscribe"], "").await;
    assert!(status.success(), "{output}");
    printed.push(output);
    assert!(strava.subscription().is_none());
    assert!(raw_table::get(&app.settings, "subscription")
        .await
        .is_none());
    let other_token = app
        .settings
        .clone()
        .with("STRAVA_WEBHOOK_VERIFY_TOKEN", "not-the-apps");
    let (status, output) = run_handler_command(
        &other_token,
        &["subscribe", "--callback-url", &callback],
        "",
    )
    .await;
    assert!(!status.success());
    assert!(output.contains("could not validate"), "{output}");
    let no_token = app.settings.clone().without("STRAVA_WEBHOOK_VERIFY_TOKEN");
    let (status, output) =
        run_handler_command(&no_token, &["subscribe", "--callback-url", &callback], "").await;
    assert!(!status.success());
    assert!(
        output.contains("STRAVA_WEBHOOK_VERIFY_TOKEN is not set"),
        "{output}"
    );
    for line in [output] {
        assert_eq!(line.trim().lines().count(), 1, "one line: {line}");
        for secret in strava.all_secrets() {
            assert!(!line.contains(&secret), "a secret leaked");
        }
    }
    // No command printed the callback's secret.
    let mut secrets = support::secrets(&strava);
    secrets.push(secret);
    for output in printed {
        support::assert_no_secret_among("the command's output", &output, &secrets);
    }
}

#[tokio::test]
async fn subscribe_refuses_a_callback_longer_than_strava_takes_in_one_line() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn(settings(&strava, 600)).await;
    app.store
        .replace_credentials(&support::credentials::connected(&strava))
        .await
        .expect("arrange credentials");
    // With a 43-character secret and its slash, 211 characters is the most that fits in 255.
    let long = format!("{}/api/{}", app.address, "x".repeat(240));
    let (status, output) =
        run_handler_command(&app.settings, &["subscribe", "--callback-url", &long], "").await;
    assert!(!status.success(), "{output}");
    assert_eq!(output.trim().lines().count(), 1, "one line: {output}");
    assert!(output.contains("too long"), "{output}");
    assert!(output.contains("255"), "{output}");
    assert!(strava.subscription().is_none(), "nothing registered");
    assert_eq!(strava.validations(), 0, "nothing asked of Strava");
}

#[tokio::test]
async fn a_create_event_brings_the_new_run_with_no_visitor_in_between() {
    let strava = FakeStrava::start().await;
    let app = subscribed_app(&strava, settings(&strava, 600)).await;
    let (_, first) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(first["id"], json!(SAMPLE_RUN_ID));
    assert!(
        a_new_run_shows_within(&strava, &app.settings, 20).await,
        "the event alone brought the new run into the shared answer"
    );
    let (status, run) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
    assert_eq!(run["id"], json!(NEW_RUN_ID));
    assert_eq!(run["name"], "Fresh from the webhook");
}

#[tokio::test]
async fn events_are_acknowledged_at_once_while_stravas_api_takes_five_seconds() {
    let strava = FakeStrava::start().await;
    let app = subscribed_app(&strava, settings(&strava, 5)).await;
    let (status, _) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
    strava.set_latency(Duration::from_secs(5));
    for event in [
        strava.event("activity", NEW_RUN_ID, "create", json!({})),
        strava.event(
            "athlete",
            support::fake_strava::ATHLETE_ID,
            "update",
            json!({"authorized": "false"}),
        ),
    ] {
        let delivery = strava.deliver_event(&event).await;
        assert!(delivery.acknowledged, "{delivery:?}");
        assert_eq!(
            delivery.attempts, 1,
            "the first attempt was answered in time"
        );
    }
    // The invocation form answers in time too.
    let event = strava.event("activity", NEW_RUN_ID, "update", json!({"title": "x"}));
    let envelope = json!({"Data": {"req": {
        "Url": "http://localhost:7071/api/StravaWebhook/{secret}", "Method": "POST",
        "Query": {}, "Headers": {"Content-Type": ["application/json"]},
        "Params": {"secret": strava.callback_secret()},
        "Body": event.to_string()
    }}, "Metadata": {}});
    let started = Instant::now();
    let response = invoke_at(
        &app.client,
        &app.address,
        "StravaWebhook",
        envelope.to_string(),
    )
    .await;
    let reply = json(&response.bytes().await.expect("body"));
    assert_eq!(reply["Outputs"]["res"]["statusCode"], json!(200), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "within Strava's limit"
    );
    strava.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn deleting_or_hiding_the_shown_run_takes_it_off_the_widget() {
    let strava = FakeStrava::start().await;
    let app = subscribed_app(&strava, settings(&strava, 5)).await;
    strava.set_activities(with_a_new_run());
    let (_, shown) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(shown["id"], json!(NEW_RUN_ID));

    // Made "Only you": the next public run shows.
    let hidden: Vec<Value> = with_a_new_run()
        .into_iter()
        .map(|mut a| {
            if a["id"] == json!(NEW_RUN_ID) {
                a["visibility"] = json!("only_me");
                a["private"] = json!(true);
            }
            a
        })
        .collect();
    strava.set_activities(hidden);
    let update = strava.event("activity", NEW_RUN_ID, "update", json!({"private": "true"}));
    assert!(strava.deliver_event(&update).await.acknowledged);
    assert!(
        shows_within(&app.settings, SAMPLE_RUN_ID, 20).await,
        "the hidden run left the shared answer"
    );

    // Deleted, with the other public runs gone too (no events for those): the delete takes
    // the shown run off at once, and the window's round finds no public run at all.
    let no_public: Vec<Value> = sample_activities()
        .into_iter()
        .filter(|a| a["visibility"] != json!("everyone") || a["sport_type"] == json!("Walk"))
        .collect();
    strava.set_activities(no_public);
    let delete = strava.event("activity", SAMPLE_RUN_ID, "delete", json!({}));
    assert!(strava.deliver_event(&delete).await.acknowledged);
    assert!(
        eventually(5, || async {
            stored_activity(&app.settings).await != Some(SAMPLE_RUN_ID)
        })
        .await,
        "the deleted run left the shared answer at once"
    );
    let (status, body) = app
        .poll_json("/api/GetLatestRun", Duration::from_secs(30), |status, _| {
            status == 404
        })
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "no_public_run");
    assert!(
        raw_table::get(&app.settings, "latest-run")
            .await
            .is_some_and(|e| e.get("NoPublicRun") == Some(&json!(true))),
        "the table says there is no public run"
    );
}

/// A hide is applied in steps: its word taken, the run taken out of the index, the answer
/// published. When the publish fails, the event's retry finds the run already out of the index
/// and must publish anyway, or the deleted run stays on the widget until the next round.
#[tokio::test]
async fn a_hide_whose_publish_failed_is_published_by_its_retry() {
    let strava = FakeStrava::start().await;
    // A long window: no round comes to the rescue during the test.
    let (proxy, settings) = behind_a_storage_proxy(&strava).await;
    let app = subscribed_app(&strava, settings).await;
    let (_, shown) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(shown["id"], json!(SAMPLE_RUN_ID));

    // Every write of the shared entity that stores an answer without the shown run fails
    // (storage busy): the publish that takes it off. The event's record and its word pass.
    let run = SAMPLE_RUN_ID.to_string();
    proxy.writes_of(
        "latest-run",
        move |body| body.contains("\"ActivityId\"") && !body.contains(&run),
        WriteFate::Unavailable,
    );
    strava.set_activities(
        sample_activities()
            .into_iter()
            .filter(|a| a["id"] != json!(SAMPLE_RUN_ID))
            .collect(),
    );
    let delete = strava.event("activity", SAMPLE_RUN_ID, "delete", json!({}));
    assert!(strava.deliver_event(&delete).await.acknowledged);
    // The publish fails as a whole (the storage client tries a write three times); then the
    // event's retry, which either publishes (and fails again) or drops the event unpublished.
    assert!(
        eventually(20, || async { proxy.met_writes_of("latest-run") >= 3 }).await,
        "the hide's publish was answered 503"
    );
    let retried = eventually(20, || async {
        let pending = raw_table::get(&app.settings, "latest-run")
            .await
            .and_then(|e| e.get("PendingEvents").cloned())
            .is_some_and(|events| events.to_string().contains(&SAMPLE_RUN_ID.to_string()));
        proxy.met_writes_of("latest-run") >= 4 || !pending
    })
    .await;
    assert!(retried, "the hide was retried");
    assert_eq!(
        stored_activity(&app.settings).await,
        Some(SAMPLE_RUN_ID),
        "no failed publish changed the table"
    );

    // Storage recovers: the next retry publishes, though the index holds nothing to hide.
    proxy.pass_writes_of("latest-run");
    assert!(
        eventually(15, || async {
            stored_activity(&app.settings)
                .await
                .is_some_and(|id| id != SAMPLE_RUN_ID)
        })
        .await,
        "the deleted run left the shared answer once storage recovered"
    );
    let (status, after) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200, "{after}");
    assert_ne!(after["id"], json!(SAMPLE_RUN_ID), "{after}");
}

#[tokio::test]
async fn a_forged_deauthorization_changes_nothing_and_a_real_one_wipes_the_connection() {
    let strava = FakeStrava::start().await;
    let app = subscribed_app(&strava, settings(&strava, 600)).await;
    let (status, _) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
    let deauthorize = strava.event(
        "athlete",
        support::fake_strava::ATHLETE_ID,
        "update",
        json!({"authorized": "false"}),
    );

    // Forged: the tokens still work, Strava says so, nothing changes.
    let refreshes = strava.calls().token_refresh;
    assert!(strava.deliver_event(&deauthorize).await.acknowledged);
    assert!(
        eventually(10, || async { strava.calls().token_refresh > refreshes }).await,
        "the event was checked with Strava"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.store.load_credentials().await.expect("read").is_some());
    let (status, _) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200, "still connected");

    // Real: the athlete revoked the app, Strava refuses the tokens. (A new instance, since one
    // checks at most once a minute.)
    let other = TestApp::spawn(app.settings.clone()).await;
    strava.revoke_all();
    let callback = strava.callback_at(&other.address);
    assert!(
        strava
            .deliver_event_to(&callback, &deauthorize)
            .await
            .acknowledged
    );
    assert!(
        eventually(15, || async {
            matches!(other.store.load_credentials().await, Ok(Some(c)) if c.value.refused_at.is_some())
        })
        .await,
        "the credentials were marked refused (not deleted)"
    );
    // Nothing of the athlete's is kept: the activity index (the samples' year) is empty.
    assert!(
        eventually(15, || async {
            matches!(other.store.load_runs(2025).await, Ok(runs) if runs.is_empty())
        })
        .await,
        "the activity index was emptied"
    );
    // An event for the athlete's run after that brings nothing back (nor costs a call).
    let calls = strava.calls().api_total();
    let delete = strava.event("activity", SAMPLE_RUN_ID, "delete", json!({}));
    assert!(
        strava
            .deliver_event_to(&callback, &delete)
            .await
            .acknowledged
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let entity = raw_table::get(&other.settings, "latest-run").await;
    assert!(
        entity.as_ref().is_none_or(|e| e.get("Body").is_none()),
        "no answer was published: {entity:?}"
    );
    assert_eq!(strava.calls().api_total(), calls);
    for instance in [&other, &app] {
        let (status, body) = {
            let mut last = (0, Value::Null);
            for _ in 0..100 {
                last = instance.get_json("/api/GetLatestRun").await;
                if last.0 == 503 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last
        };
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "not_configured");
    }
}

#[tokio::test]
async fn foreign_events_cost_nothing_and_duplicates_show_the_run_without_a_round() {
    let strava = FakeStrava::start().await;
    let app = subscribed_app(&strava, settings(&strava, 600)).await;
    let (_, first) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(first["id"], json!(SAMPLE_RUN_ID));
    strava.set_activities(with_a_new_run());
    let before = strava.calls();

    let mut foreign_athlete = strava.event("activity", NEW_RUN_ID, "create", json!({}));
    foreign_athlete["owner_id"] = json!(1234);
    let mut foreign_subscription = strava.event("activity", NEW_RUN_ID, "create", json!({}));
    foreign_subscription["subscription_id"] = json!(99);
    let mut replies = Vec::new();
    for event in [&foreign_athlete, &foreign_subscription] {
        let reply = app
            .client
            .post(strava.callback_at(&app.address))
            .json(event)
            .send()
            .await
            .expect("post");
        replies.push((reply.status().as_u16(), reply.text().await.expect("body")));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        strava.calls().api_total(),
        before.api_total(),
        "no Strava call for foreign events"
    );
    let entity = raw_table::get(&app.settings, "latest-run")
        .await
        .expect("entity");
    assert!(
        entity.get("PendingEvents").is_none(),
        "nothing recorded: {entity}"
    );

    // The same event three times (Strava retries): the run shows, and no round was needed.
    let event = strava.event("activity", NEW_RUN_ID, "create", json!({}));
    for _ in 0..3 {
        let reply = app
            .client
            .post(strava.callback_at(&app.address))
            .json(&event)
            .send()
            .await
            .expect("post");
        replies.push((reply.status().as_u16(), reply.text().await.expect("body")));
    }
    assert!(shows_within(&app.settings, NEW_RUN_ID, 5).await);
    let calls = strava.calls();
    assert_eq!(
        calls.activities, before.activities,
        "no list call: {calls:?}"
    );
    assert!(
        calls.activity_detail - before.activity_detail <= 3,
        "{calls:?}"
    );
    assert!(
        replies.windows(2).all(|pair| pair[0] == pair[1]),
        "one reply for every event, right ids or not: {replies:?}"
    );
}

#[tokio::test]
async fn a_thousand_forged_events_in_a_minute_cost_at_most_forty_calls() {
    let strava = FakeStrava::start().await;
    // A short window, so "within a few windows" is seconds.
    let app = subscribed_app(&strava, settings(&strava, 5)).await;
    let (_, first) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(first["id"], json!(SAMPLE_RUN_ID));
    let before = strava.calls().api_total();
    let callback = strava.callback_at(&app.address);
    // Right ids, made-up activities and the shown one: creates, updates, deletes.
    let events: Vec<Value> = (0..1_050_i64)
        .map(|i| {
            let id = if i % 10 == 0 {
                SAMPLE_RUN_ID
            } else {
                90_000_000_000 + i
            };
            match i % 3 {
                0 => strava.event("activity", id, "delete", json!({})),
                1 => strava.event("activity", id, "update", json!({"title": "forged"})),
                _ => strava.event("activity", id, "create", json!({})),
            }
        })
        .collect();
    // 30 bursts of 35, each answered after the webhook's fixed reply time (about 1.2 s): about
    // 40 seconds in all.
    for chunk in events.chunks(35) {
        let posts: Vec<_> = chunk
            .iter()
            .map(|event| {
                let client = app.client.clone();
                let callback = callback.clone();
                let event = event.clone();
                tokio::spawn(async move {
                    client
                        .post(callback)
                        .json(&event)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                })
            })
            .collect();
        for post in posts {
            assert_eq!(post.await.expect("task").expect("answer"), 200);
        }
        let (status, body) = app.get_json("/api/GetLatestRun").await;
        assert_eq!(status, 200, "visitors always get an answer: {body}");
    }
    // The true latest run comes back within a few windows once the flood stops.
    let (_, last) = app
        .poll_json("/api/GetLatestRun", Duration::from_secs(30), |_, run| {
            run["id"] == json!(SAMPLE_RUN_ID)
        })
        .await;
    assert_eq!(last["id"], json!(SAMPLE_RUN_ID), "{last}");
    let spent = strava.calls().api_total() - before;
    eprintln!(
        "1,050 forged events: {spent} Strava calls ({:?})",
        strava.calls()
    );
    assert!(spent <= 40, "{spent} Strava calls: {:?}", strava.calls());
}

#[tokio::test]
async fn foreign_ids_on_a_slow_storage_make_no_strava_call_and_get_the_same_reply() {
    let strava = FakeStrava::start().await;
    let (proxy, settings) = behind_a_storage_proxy(&strava).await;
    // Subscribed and answering through a fast storage first; then a new instance whose every
    // storage call takes half a second (a cold instance), so it cannot read the ids in time.
    let warm = subscribed_app(&strava, settings.clone()).await;
    assert_eq!(warm.get_json("/api/GetLatestRun").await.0, 200);
    drop(warm);
    proxy.set_latency(Duration::from_millis(500));
    let cold = TestApp::spawn(settings).await;
    let before = strava.calls().api_total();
    let post = |event: Value| {
        let client = cold.client.clone();
        let callback = strava.callback_at(&cold.address);
        async move {
            let reply = client
                .post(callback)
                .json(&event)
                .send()
                .await
                .expect("post");
            (reply.status().as_u16(), reply.text().await.expect("body"))
        }
    };
    let mut foreign = strava.event("activity", NEW_RUN_ID, "create", json!({}));
    foreign["owner_id"] = json!(1234);
    let mut other_subscription =
        strava.event("activity", NEW_RUN_ID, "update", json!({"title": "x"}));
    other_subscription["subscription_id"] = json!(99);
    let foreign_reply = post(foreign).await;
    let other_reply = post(other_subscription).await;
    // Long enough for the ids to be read (slowly) and anything to be applied.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(strava.calls().api_total(), before, "{:?}", strava.calls());
    let matching_reply = post(strava.event("activity", NEW_RUN_ID, "create", json!({}))).await;
    assert_eq!(foreign_reply, matching_reply);
    assert_eq!(other_reply, matching_reply);
    assert_eq!(matching_reply.0, 200);
}

#[tokio::test]
async fn an_event_acknowledged_by_a_killed_instance_takes_effect_on_another() {
    let strava = FakeStrava::start().await;
    // A long window: only the recorded event can bring the new run before it ends.
    let settings = settings(&strava, 600);
    let survivor = subscribed_app(&strava, settings.clone()).await;
    let (_, first) = survivor.get_json("/api/GetLatestRun").await;
    assert_eq!(first["id"], json!(SAMPLE_RUN_ID));

    // The instance that gets the event is killed before Strava's (slow) API can answer it.
    let doomed = HandlerProcess::spawn(&settings, &[]).await;
    doomed.wait_ready().await;
    strava.set_activities(with_a_new_run());
    strava.set_latency(Duration::from_secs(3));
    let delivery = strava
        .deliver_event_to(
            &strava.callback_at(&doomed.address),
            &strava.event("activity", NEW_RUN_ID, "create", json!({})),
        )
        .await;
    assert!(delivery.acknowledged, "{delivery:?}");
    drop(doomed); // SIGKILL
    strava.set_latency(Duration::ZERO);

    // The survivor, serving its visitors, finds the recorded event and applies it.
    // (Generous: the killed instance may hold the round's 30 s lease, which must lapse first.)
    let (_, last) = survivor
        .poll_json("/api/GetLatestRun", Duration::from_secs(60), |_, run| {
            run["id"] == json!(NEW_RUN_ID)
        })
        .await;
    assert_eq!(last["id"], json!(NEW_RUN_ID), "{last}");
}

#[tokio::test]
async fn malformed_events_get_a_json_400() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn(settings(&strava, 600)).await;
    for body in ["", "not json", "{\"object_type\":\"activity\"}", "[]"] {
        let response = app
            .client
            .post(format!("{}/api/StravaWebhook", app.address))
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 400, "{body:?}");
        let answer = json(&response.bytes().await.expect("body"));
        assert_eq!(answer["error"], "bad_request");
    }
    let response = app
        .client
        .put(format!("{}/api/StravaWebhook", app.address))
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn events_are_acknowledged_while_storage_is_down_and_recorded_when_it_returns() {
    let strava = FakeStrava::start().await;
    let outage =
        support::outage::Outage::relay_to(support::azurite::Azurite::shared().port()).await;
    let settings = settings(&strava, 600).with(
        "AzureWebJobsStorage",
        support::azurite::connection_string_for_port(outage.port()),
    );
    let app = subscribed_app(&strava, settings).await;
    let (status, _) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
    strava.set_activities(with_a_new_run());
    outage.cut();
    let delivery = strava
        .deliver_event(&strava.event("activity", NEW_RUN_ID, "create", json!({})))
        .await;
    assert!(delivery.acknowledged, "{delivery:?}");
    assert_eq!(delivery.attempts, 1, "answered within Strava's 2 s");
    outage.restore();
    assert!(
        shows_within(&app.settings, NEW_RUN_ID, 30).await,
        "the event was recorded once storage returned, and applied"
    );
}

#[tokio::test]
async fn an_owners_morning_upload_rename_private_and_a_deleted_upload_each_show_within_seconds() {
    let strava = FakeStrava::start().await;
    let app = subscribed_app(&strava, settings(&strava, 600)).await;
    let (_, first) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(first["id"], json!(SAMPLE_RUN_ID));
    let now = support::now();
    let morning = activities::run(NEW_RUN_ID, "Morning Run", now - 3_600, 10_000.0);
    let callback = strava.callback_at(&app.address);
    // Each step: Strava changes, its event arrives, and the widget shows it within 5 s, for at
    // most 4 Strava calls.
    let step = |what: &'static str, event: Value, shows: Box<dyn Fn(&Value) -> bool>| {
        let strava = &strava;
        let app = &app;
        let callback = callback.clone();
        async move {
            let before = strava.calls().api_total();
            let delivery = strava.deliver_event_to(&callback, &event).await;
            assert!(delivery.acknowledged, "{what}: {delivery:?}");
            let (_, run) = app
                .poll_json("/api/GetLatestRun", Duration::from_secs(5), |_, run| {
                    shows(run)
                })
                .await;
            assert!(shows(&run), "{what}: not on the widget within 5 s: {run}");
            let calls = strava.calls().api_total() - before;
            assert!(
                calls <= 4,
                "{what}: {calls} Strava calls: {:?}",
                strava.calls()
            );
        }
    };

    strava.add_activity(morning.clone());
    step(
        "the upload",
        strava.event("activity", NEW_RUN_ID, "create", json!({})),
        Box::new(|run| run["id"] == json!(NEW_RUN_ID) && run["name"] == "Morning Run"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(strava.update_activity(NEW_RUN_ID, |a| a["name"] = json!("Hill repeats 🏔")));
    step(
        "the rename",
        strava.event(
            "activity",
            NEW_RUN_ID,
            "update",
            json!({"title": "Hill repeats 🏔"}),
        ),
        Box::new(|run| run["id"] == json!(NEW_RUN_ID) && run["name"] == "Hill repeats 🏔"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(strava.update_activity(NEW_RUN_ID, |a| {
        a["visibility"] = json!("only_me");
        a["private"] = json!(true);
    }));
    step(
        "made Only you",
        strava.event("activity", NEW_RUN_ID, "update", json!({"private": "true"})),
        Box::new(|run| run["id"] == json!(SAMPLE_RUN_ID)),
    )
    .await;
    // A second upload, deleted at once: its create and its delete arrive back to back.
    let second_id = NEW_RUN_ID + 1;
    strava.add_activity(activities::run(second_id, "Oops", now - 600, 3_000.0));
    let create = strava.event("activity", second_id, "create", json!({}));
    assert!(
        strava
            .deliver_event_to(&callback, &create)
            .await
            .acknowledged
    );
    strava.remove_activity(second_id);
    step(
        "the deleted upload",
        strava.event("activity", second_id, "delete", json!({})),
        Box::new(|run| run["id"] == json!(SAMPLE_RUN_ID)),
    )
    .await;
    // And it stays away (the create, read after the delete, finds nothing to show).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.get_json("/api/GetLatestRun").await.1["id"],
        json!(SAMPLE_RUN_ID)
    );
}

#[tokio::test]
async fn a_forged_deauthorization_while_another_instance_holds_rotated_tokens_keeps_the_newest() {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    let direct = settings(&strava, 600);
    // Instance B: subscribed, storage fine, on a clock the test moves. Instance A: its storage
    // can be cut.
    let b_clock = strava_latest_run::clock::Clock::system();
    let b = TestApp::spawn_subscribed(&strava, direct.clone(), b_clock.clone()).await;
    let outage =
        support::outage::Outage::relay_to(support::azurite::Azurite::shared().port()).await;
    let a = TestApp::spawn(direct.clone().with(
        "AzureWebJobsStorage",
        support::azurite::connection_string_for_port(outage.port()),
    ))
    .await;
    assert_eq!(a.get_json("/api/GetLatestRun").await.0, 200);

    // A's timer refreshes while its storage is down: Strava rotates, A holds the new tokens.
    outage.cut();
    let stored_before = b
        .store
        .load_credentials()
        .await
        .expect("read")
        .expect("stored");
    let (status, _) = support::app::run_timer(&a.client, &a.address).await;
    assert_eq!(status, 200);
    assert_ne!(
        stored_before.value.refresh_token.expose(),
        strava.refresh_token(),
        "rotated at Strava, not stored"
    );

    // A deauthorization event (forged: the athlete did not revoke anything) reaches B, whose
    // check with Strava fails because the stored token was rotated away: B marks the
    // credentials refused.
    let deauthorize = strava.event(
        "athlete",
        support::fake_strava::ATHLETE_ID,
        "update",
        json!({"authorized": "false"}),
    );
    assert!(
        strava
            .deliver_event_to(&strava.callback_at(&b.address), &deauthorize)
            .await
            .acknowledged
    );
    assert!(
        eventually(15, || async {
            matches!(b.store.load_credentials().await, Ok(Some(c)) if c.value.refused_at.is_some())
        })
        .await,
        "B marked the credentials"
    );

    // A's storage returns: its held tokens, a newer link of the same chain, restore them.
    outage.restore();
    assert!(
        eventually(60, || async {
            matches!(
                b.store.load_credentials().await,
                Ok(Some(c)) if c.value.refused_at.is_none()
                    && c.value.refresh_token.expose() == strava.refresh_token()
            )
        })
        .await,
        "the newest refresh token is stored and the mark is gone"
    );
    // B left Strava alone for a minute after its refused refresh: that minute passes.
    b_clock.jump(61);
    let (status, body) = b
        .poll_json("/api/GetLatestRun", Duration::from_secs(30), |status, _| {
            status == 200
        })
        .await;
    assert_eq!(status, 200, "connected again without a new setup: {body}");
}

#[tokio::test]
async fn an_event_adding_or_deleting_a_run_changes_the_running_year_within_seconds() {
    let strava = FakeStrava::start().await;
    let app = subscribed_app(&strava, settings(&strava, 600)).await;
    let (status, before) = app.get_json("/api/GetRunningYear").await;
    assert_eq!(status, 200, "{before}");
    let count = before["totals"]["count"].as_u64().expect("count");
    let today_run = activities::run(NEW_RUN_ID, "Lunch run", support::now() - 1_800, 6_000.0);
    strava.add_activity(today_run);
    let create = strava.event("activity", NEW_RUN_ID, "create", json!({}));
    assert!(strava.deliver_event(&create).await.acknowledged);
    let (_, after) = app
        .poll_json("/api/GetRunningYear", Duration::from_secs(5), |_, year| {
            year["totals"]["count"].as_u64() == Some(count + 1)
        })
        .await;
    assert_eq!(
        after["totals"]["count"].as_u64(),
        Some(count + 1),
        "{after}"
    );
    assert_eq!(
        after["streak"]["current_days"].as_u64().map(|d| d >= 1),
        Some(true)
    );
    strava.remove_activity(NEW_RUN_ID);
    let delete = strava.event("activity", NEW_RUN_ID, "delete", json!({}));
    assert!(strava.deliver_event(&delete).await.acknowledged);
    let (_, gone) = app
        .poll_json("/api/GetRunningYear", Duration::from_secs(5), |_, year| {
            year["totals"]["count"].as_u64() == Some(count)
        })
        .await;
    assert_eq!(gone["totals"]["count"].as_u64(), Some(count), "{gone}");
}

#[tokio::test]
async fn refused_events_and_wrong_verify_tokens_are_logged_at_most_once_a_minute_each() {
    let strava = FakeStrava::start().await;
    let settings = settings(&strava, 600);
    let mut handler = HandlerProcess::spawn_connected(&settings, &strava).await;
    let client = reqwest::Client::new();
    let callback = format!("{}/api/StravaWebhook", handler.address);
    let mut foreign = strava.event("activity", NEW_RUN_ID, "create", json!({}));
    foreign["owner_id"] = json!(1234);
    // Until the instance knows the stored ids, an event is taken (and dropped later): one event
    // at a time until one is refused.
    let until = Instant::now() + Duration::from_secs(15);
    while !handler.output().contains("push event ignored") && Instant::now() < until {
        let reply = client.post(&callback).json(&foreign).send().await;
        assert_eq!(reply.expect("an answer").status(), 200);
    }
    // Then a flood of both: another athlete's events and validations with a guessed token.
    let requests = (0..25).flat_map(|i| {
        let post = client.post(&callback).json(&foreign).send();
        let guess = client
            .get(format!(
                "{callback}?hub.mode=subscribe&hub.challenge=c{i}&hub.verify_token=guess{i}"
            ))
            .send();
        [
            Box::pin(async move { post.await.map(|r| r.status().as_u16()) })
                as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>,
            Box::pin(async move { guess.await.map(|r| r.status().as_u16()) }),
        ]
    });
    let statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|status| status.expect("an answer"))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        25,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        25,
        "{statuses:?}"
    );
    handler.terminate().await;
    let output = handler.output();
    for line in ["push event ignored", "wrong verify token"] {
        assert_eq!(
            output.matches(line).count(),
            1,
            "{line:?} once in a minute:\n{output}"
        );
    }
}

/// What the app answered to one webhook `POST`: status, body and how long it took.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
    took: Duration,
}

/// POSTs `event` to `url` (the forwarded form).
async fn post_event(client: &reqwest::Client, url: &str, event: &Value) -> Reply {
    let started = Instant::now();
    let response = client.post(url).json(event).send().await.expect("post");
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    Reply {
        status,
        body,
        took: started.elapsed(),
    }
}

/// Invokes StravaWebhook with `event` as the host does without forwarding, the route's
/// `{secret}` given as `secret` (null: the bare path); the function's reply.
async fn invoke_event(app: &TestApp, secret: Value, event: &Value) -> Reply {
    let path = secret
        .as_str()
        .map_or("/api/StravaWebhook".to_owned(), |s| {
            format!("/api/StravaWebhook/{s}")
        });
    let envelope = json!({"Data": {"req": {
        "Url": format!("http://localhost:7071{path}"), "Method": "POST",
        "Query": {}, "Headers": {"Content-Type": ["application/json"]},
        "Params": {"secret": secret},
        "Body": event.to_string()
    }}, "Metadata": {}});
    let started = Instant::now();
    let response = invoke_at(
        &app.client,
        &app.address,
        "StravaWebhook",
        envelope.to_string(),
    )
    .await;
    assert_eq!(response.status(), 200, "an invocation reply");
    let reply = json(&response.bytes().await.expect("body"));
    Reply {
        status: reply["Outputs"]["res"]["statusCode"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0),
        body: reply["Outputs"]["res"]["body"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        took: started.elapsed(),
    }
}

/// A secret of the same shape as `secret`, one character changed.
fn almost(secret: &str) -> String {
    let mut wrong = secret.to_owned();
    let last = wrong.pop().expect("not empty");
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    wrong
}

#[tokio::test]
async fn forged_events_without_the_callback_secret_change_nothing_and_get_the_same_reply() {
    let strava = FakeStrava::start().await;
    let app = subscribed_app(&strava, settings(&strava, 600)).await;
    let (_, first) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(first["id"], json!(SAMPLE_RUN_ID));
    strava.set_activities(with_a_new_run());
    let secret = strava.callback_secret().expect("a secret");
    let before = strava.calls().api_total();

    // The right ids (the owner's, the subscription's), the shown run, a new one: all guessable.
    let delete = strava.event("activity", SAMPLE_RUN_ID, "delete", json!({}));
    let create = strava.event("activity", NEW_RUN_ID, "create", json!({}));
    let bare = format!("{}/api/StravaWebhook", app.address);
    let mut forged = Vec::new();
    for event in [&delete, &create] {
        for url in [
            bare.clone(),
            format!("{bare}/"),
            format!("{bare}/{}", almost(&secret)),
            format!("{bare}/guess"),
            format!("{bare}?secret={secret}"),
        ] {
            forged.push((url.clone(), post_event(&app.client, &url, event).await));
        }
        for param in [Value::Null, json!(almost(&secret)), json!("")] {
            forged.push((
                format!("invocation {param}"),
                invoke_event(&app, param, event).await,
            ));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        strava.calls().api_total(),
        before,
        "no Strava call for forged events: {:?}",
        strava.calls()
    );
    let (_, shown) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(shown["id"], json!(SAMPLE_RUN_ID), "the run is still shown");
    assert_eq!(stored_activity(&app.settings).await, Some(SAMPLE_RUN_ID));
    let entity = raw_table::get(&app.settings, "latest-run")
        .await
        .expect("entity");
    assert!(
        entity.get("PendingEvents").is_none(),
        "nothing recorded: {entity}"
    );

    // The genuine event, through the registered callback.
    let genuine = post_event(&app.client, &strava.callback_at(&app.address), &create).await;
    assert_eq!(genuine.status, 200, "{genuine:?}");
    for (sent_to, reply) in &forged {
        assert_eq!(
            (reply.status, &reply.body),
            (genuine.status, &genuine.body),
            "the same reply as a genuine event ({sent_to})"
        );
        // Every reply waits for the same moment after arrival, so none is told by its speed.
        // (Only the floor is exact: a busy machine may answer any of them later.)
        let floor = strava_latest_run::push_events::REPLY_AFTER;
        assert!(
            reply.took >= floor && genuine.took >= floor,
            "answered no sooner than a genuine event ({sent_to}): {:?} and {:?}",
            reply.took,
            genuine.took
        );
        assert!(
            reply.took.abs_diff(genuine.took) < Duration::from_secs(1),
            "answered about when a genuine event is ({sent_to}): {:?} and {:?}",
            reply.took,
            genuine.took
        );
    }
    assert!(
        shows_within(&app.settings, NEW_RUN_ID, 5).await,
        "the genuine event shows within 5 s"
    );
}

#[tokio::test]
async fn genuine_events_through_the_registered_callback_show_within_five_seconds_in_every_form() {
    let strava = FakeStrava::start().await;
    let settings = settings(&strava, 600);
    let app = subscribed_app(&strava, settings.clone()).await;
    let (_, first) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(first["id"], json!(SAMPLE_RUN_ID));
    let secret = strava.callback_secret().expect("a secret");

    // Forwarded, as Strava delivers to the registered address.
    strava.set_activities(with_a_new_run());
    let delivery = strava
        .deliver_event(&strava.event("activity", NEW_RUN_ID, "create", json!({})))
        .await;
    assert!(delivery.acknowledged, "{delivery:?}");
    let (_, shown) = app
        .poll_json("/api/GetLatestRun", Duration::from_secs(5), |_, run| {
            run["id"] == json!(NEW_RUN_ID)
        })
        .await;
    assert_eq!(shown["id"], json!(NEW_RUN_ID), "forwarded: {shown}");

    // The invocation form: the route's secret arrives in Params.
    strava.set_activities(sample_activities());
    let reply = invoke_event(
        &app,
        json!(secret),
        &strava.event("activity", NEW_RUN_ID, "delete", json!({})),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let (_, shown) = app
        .poll_json("/api/GetLatestRun", Duration::from_secs(5), |_, run| {
            run["id"] == json!(SAMPLE_RUN_ID)
        })
        .await;
    assert_eq!(shown["id"], json!(SAMPLE_RUN_ID), "invocation: {shown}");

    // Standalone, on the same table.
    let standalone = TestApp::spawn_standalone(settings).await;
    let latest = activities::run(
        NEW_RUN_ID + 1,
        "Standalone run",
        support::now() - 600,
        5_000.0,
    );
    strava.add_activity(latest);
    let delivery = strava
        .deliver_event_to(
            &strava.callback_at(&standalone.address),
            &strava.event("activity", NEW_RUN_ID + 1, "create", json!({})),
        )
        .await;
    assert!(delivery.acknowledged, "{delivery:?}");
    assert!(
        shows_within(&app.settings, NEW_RUN_ID + 1, 5).await,
        "standalone: the event shows within 5 s"
    );
}

#[tokio::test]
async fn a_subscription_made_before_the_secret_keeps_the_bare_path_until_subscribe_runs_again() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn(settings(&strava, 600)).await;
    app.store
        .replace_credentials(&support::credentials::connected(&strava))
        .await
        .expect("arrange credentials");
    let bare = format!("{}/api/StravaWebhook", app.address);
    // What an earlier `handler subscribe` left: Strava delivers to the bare path, and the
    // stored subscription has no secret.
    let made = reqwest::Client::new()
        .post(format!("{}/api/v3/push_subscriptions", strava.base_url()))
        .query(&[
            ("client_id", support::fake_strava::CLIENT_ID),
            ("client_secret", support::fake_strava::CLIENT_SECRET),
            ("callback_url", bare.as_str()),
            ("verify_token", VERIFY_TOKEN),
        ])
        .send()
        .await
        .expect("subscribe at the fake");
    assert_eq!(made.status(), 201);
    let id = strava.subscription().expect("subscribed").id;
    app.store
        .save_subscription(&strava_latest_run::store::Subscription {
            id,
            callback_url: bare.clone(),
            callback_secret: None,
        })
        .await
        .expect("arrange the old subscription");
    let (_, status_text) = run_handler_command(&app.settings, &["status"], "").await;
    assert!(status_text.contains("bare path"), "{status_text}");
    let (_, first) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(first["id"], json!(SAMPLE_RUN_ID));

    // It keeps working.
    assert!(
        a_new_run_shows_within(&strava, &app.settings, 5).await,
        "an event on the bare path shows while no secret is stored"
    );

    // Subscribed again: the new callback has a secret, and the bare path is refused.
    let (status, output) = run_handler_command(&app.settings, &["unsubscribe"], "").await;
    assert!(status.success(), "{output}");
    let (status, output) =
        run_handler_command(&app.settings, &["subscribe", "--callback-url", &bare], "").await;
    assert!(status.success(), "{output}");
    let (_, status_text) = run_handler_command(&app.settings, &["status"], "").await;
    assert!(status_text.contains("secret path"), "{status_text}");
    let secret = strava.callback_secret().expect("a secret now");
    assert!(!status_text.contains(&secret), "{status_text}");
    // (An instance reads the stored secret again when its copy is two seconds old.)
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let calls = strava.calls().api_total();
    let delete = strava.event("activity", NEW_RUN_ID, "delete", json!({}));
    let forged = post_event(&app.client, &bare, &delete).await;
    assert_eq!(forged.status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stored_activity(&app.settings).await, Some(NEW_RUN_ID));
    assert_eq!(strava.calls().api_total(), calls);
    // The genuine one, through the new callback. (To another instance: this one read the old
    // subscription's id less than 30 s ago, and reads the ids again no sooner.)
    let other = TestApp::spawn(app.settings.clone()).await;
    let delivery = strava
        .deliver_event_to(&strava.callback_at(&other.address), &delete)
        .await;
    assert!(delivery.acknowledged, "{delivery:?}");
    assert!(
        shows_within(&app.settings, SAMPLE_RUN_ID, 5).await,
        "the event through the new callback shows"
    );
}

#[tokio::test]
async fn the_callback_secret_never_appears_in_a_log_and_refusals_are_logged_once_a_minute() {
    let strava = FakeStrava::start().await;
    let settings = settings(&strava, 600).with("RUST_LOG", "debug");
    let mut handler = HandlerProcess::spawn_connected(&settings, &strava).await;
    let bare = format!("{}/api/StravaWebhook", handler.address);
    let (status, subscribe_output) =
        run_handler_command(&settings, &["subscribe", "--callback-url", &bare], "").await;
    assert!(status.success(), "{subscribe_output}");
    let secret = strava.callback_secret().expect("a secret");
    let (_, status_output) = run_handler_command(&settings, &["status"], "").await;
    let client = reqwest::Client::new();
    strava.set_activities(with_a_new_run());
    let create = strava.event("activity", NEW_RUN_ID, "create", json!({}));
    for url in [bare.clone(), format!("{bare}/{}", almost(&secret))] {
        for _ in 0..3 {
            assert_eq!(post_event(&client, &url, &create).await.status, 200);
        }
    }
    assert!(strava.deliver_event(&create).await.acknowledged);
    assert!(shows_within(&settings, NEW_RUN_ID, 5).await);
    // The invocation form too: the secret in the URL and in Params.
    let envelope = json!({"Data": {"req": {
        "Url": format!("http://localhost:7071/api/StravaWebhook/{secret}"), "Method": "POST",
        "Query": {}, "Headers": {"Content-Type": ["application/json"]},
        "Params": {"secret": secret},
        "Body": create.to_string()
    }}, "Metadata": {"secret": secret}});
    let response = invoke_at(
        &client,
        &handler.address,
        "StravaWebhook",
        envelope.to_string(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let (_, unsubscribe_output) = run_handler_command(&settings, &["unsubscribe"], "").await;
    handler.terminate().await;
    let output = handler.output();
    assert_eq!(
        output.matches("without the callback secret").count(),
        1,
        "refused events once a minute:\n{output}"
    );
    let mut secrets = support::secrets(&strava);
    secrets.push(secret);
    support::assert_no_secret_among("the handler's log", &output, &secrets);
    for (what, text) in [
        ("subscribe", subscribe_output),
        ("status", status_output),
        ("unsubscribe", unsubscribe_output),
    ] {
        support::assert_no_secret_among(what, &text, &secrets);
    }
}
