//! Fault injection against the real parts, proving that the widget degrades as docs/operations.md says
//! and no token is lost where one can be kept:
//! - a. the real Azurite killed under load and restarted on its port: no request hangs, the
//!   warm instance serves its answer and a cold one a `503 storage_unavailable` JSON; the timer
//!   run during the outage holds Strava's rotated tokens in memory and says so, and they reach
//!   the table once storage is back; then both reconnect, and tokens and answers are written
//!   again;
//! - b. the real `handler` killed with SIGKILL between Strava's token answer and the save: the
//!   next run recovers when Strava kept the refresh token, and says "run `handler setup`
//!   again" when Strava had rotated it (see the section's note for why);
//! - c. Strava too slow, truncated, empty, an HTML page, 429 with and without rate-limit
//!   headers, 401 on every call, at the API or the token endpoint: the last good answer marked
//!   stale, or the documented `502` JSON without one; nothing of Strava's answer echoed, the
//!   table unchanged, and Strava not hammered;
//! - d. two hours passing over the timer's occurrence, with no instance running or with the
//!   clock of a running instance jumping ahead: one refresh of the expired tokens, one data
//!   round however many visitors, the past-due run saved, and the widget serves throughout.
//!
//! Every scenario test also checks that no secret (the fake Strava's client secret and tokens,
//! the storage account key) shows: the in-process ones (c, d) in the bodies of the answers they
//! check, the timer's included; the ones running the `handler` binary (a, b) in those and in
//! the binary's whole log. `a_restartable_azurite_keeps_what_was_written_just_before_the_stop`
//! checks the test harness's Azurite, not the app, and scans nothing.

use crate::support;

use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strava_latest_run::clock::Clock;
use strava_latest_run::secret::Secret;
use strava_latest_run::store::{Credentials, LatestRunSnapshot, Shown, Store};
use support::app::{
    fixture, get_json_at, poll_json_at, run_timer, run_timer_with, try_invoke_at, HandlerProcess,
    TestApp, TestSettings,
};
use support::azurite::{connection_string_for_port, Azurite};
use support::credentials::connected;
use support::fake_strava::{CallCounts, FakeStrava, Fault, Scope};
use support::now;
use support::storage_proxy::{StorageProxy, WriteFate};

/// The widget's endpoint.
const RUN: &str = "/api/GetLatestRun";
/// Generous bound for anything the app does by itself in the background.
const PATIENCE: Duration = Duration::from_secs(20);
/// Generous bound for the background retry of tokens held in memory to save them once storage
/// is back: its retries come up to 60 s apart.
const HELD_RETRY_PATIENCE: Duration = Duration::from_secs(150);

/// Connects Strava in the table of `settings` and lets an earlier instance answer once, so
/// the table holds a good answer; that answer. The instance has a long window, so no refresh
/// follows its answer at once, whatever window `settings` give later instances.
async fn answer_of_an_earlier_instance(strava: &FakeStrava, settings: &TestSettings) -> Value {
    let earlier = TestApp::spawn(settings.clone().with("WIDGET_CACHE_SECONDS", "600")).await;
    earlier
        .store
        .replace_credentials(&connected(strava))
        .await
        .expect("arrange");
    let (status, first) = earlier.get_json(RUN).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["stale"], false);
    first
}

/// `answer` as it is served once it could not be refreshed.
fn marked_stale(answer: &Value) -> Value {
    let mut stale = answer.clone();
    stale["stale"] = Value::Bool(true);
    stale
}

/// A client-facing error: exactly `{"error": code, "message": sentence}`, the sentence plain.
fn assert_error_shape(body: &Value, code: &str, case: &str) {
    assert_eq!(body["error"], code, "{case}: {body}");
    let keys: Vec<&String> = body.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["error", "message"], "{case}: {body}");
    let message = body["message"].as_str().expect("a message");
    assert!(
        message.len() > 20 && !message.contains(['{', '<']),
        "{case}: {message}"
    );
}

/// The stored refresh token and the stored answer of an app's table.
async fn table_state(store: &Store) -> (Option<String>, Option<LatestRunSnapshot>) {
    let refresh_token = store
        .load_credentials()
        .await
        .expect("read credentials")
        .map(|c| c.value.refresh_token.expose().to_owned());
    let snapshot = store
        .peek_latest_run()
        .await
        .expect("read latest-run")
        .and_then(|l| l.snapshot);
    (refresh_token, snapshot)
}

/// The timer's occurrence that a host runs late (`IsPastDue`): it answers 200 and says so.
async fn run_past_due_timer(app: &TestApp) -> String {
    let (status, body) = run_timer_with(
        &app.client,
        &app.address,
        "timer-invocation-request-past-due.json",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("past due"), "{body}");
    body
}

/// The table holds the tokens Strava answered last, access token and expiry included.
async fn assert_stored_tokens_are_stravas(store: &Store, strava: &FakeStrava) {
    let stored = stored_credentials(store).await;
    assert_eq!(stored.refresh_token.expose(), strava.refresh_token());
    assert_eq!(
        stored.access_token.as_ref().map(Secret::expose),
        Some(strava.access_token().as_str())
    );
    assert_eq!(stored.expires_at, Some(strava.access_token_expires_at()));
}

/// The stored credentials.
async fn stored_credentials(store: &Store) -> Credentials {
    store
        .load_credentials()
        .await
        .expect("read")
        .expect("stored")
        .value
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .expect("a time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formatted")
}

/// Runs a blocking Azurite operation off the async workers and gives the instance back.
async fn azurite_op(mut azurite: Azurite, op: fn(&mut Azurite)) -> Azurite {
    tokio::task::spawn_blocking(move || {
        op(&mut azurite);
        azurite
    })
    .await
    .expect("azurite operation")
}

// --- a. Azurite killed mid-load and restarted ---

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

/// What one visitor's request came to.
enum Visit {
    /// An HTTP answer: status and body.
    Answered(u16, String),
    /// No answer within the client's generous timeout.
    Hung,
    /// The connection failed (the handler was not there).
    Failed(String),
}

/// Visitors asking `address` for the answer one after another until `stop` is set.
fn visitors(
    address: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(Instant, Visit)>> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut visits = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let visit = match client.get(format!("{address}{RUN}")).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.text().await {
                        Ok(body) => Visit::Answered(status, body),
                        Err(err) if err.is_timeout() => Visit::Hung,
                        Err(err) => Visit::Failed(err.to_string()),
                    }
                }
                Err(err) if err.is_timeout() => Visit::Hung,
                Err(err) => Visit::Failed(err.to_string()),
            };
            visits.push((Instant::now(), visit));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        visits
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_killed_under_load_and_restarted_hangs_nothing_loses_no_token_and_writes_again() {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    let azurite = Azurite::start_restartable();
    let settings = TestSettings::new(&strava.base_url())
        .with("AzureWebJobsStorage", azurite.connection_string())
        .with("WIDGET_CACHE_SECONDS", "1");
    let store = settings.store();
    store
        .replace_credentials(&connected(&strava))
        .await
        .expect("arrange");
    // Two instances of the real binary on one table: one has answered (warm), one has not.
    let warm = HandlerProcess::spawn(&settings, &[]).await;
    let cold = HandlerProcess::spawn(&settings, &[]).await;
    warm.wait_ready().await;
    cold.wait_ready().await;
    let client = reqwest::Client::new();
    let (status, first) = get_json_at(&client, &warm.address, RUN).await;
    assert_eq!(status, 200, "{first}");

    let stop_warm = Arc::new(AtomicBool::new(false));
    let stop_cold = Arc::new(AtomicBool::new(false));
    let warm_load: Vec<_> = (0..3)
        .map(|_| visitors(warm.address.clone(), Arc::clone(&stop_warm)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let azurite = azurite_op(azurite, Azurite::stop).await;
    let outage_began = Instant::now();
    // The cold instance's first visitors come during the outage, which lasts until it has had
    // to say so (its storage calls retry for a while first).
    let cold_load: Vec<_> = (0..3)
        .map(|_| visitors(cold.address.clone(), Arc::clone(&stop_cold)))
        .collect();
    let (status, body) = poll_json_at(&client, &cold.address, RUN, PATIENCE, |s, _| s == 503).await;
    assert_eq!(status, 503, "{body}");

    // The timer runs on the warm instance during the outage. Strava rotates the refresh token,
    // so the one in the table is dead from its answer on; storage cannot take the new tokens,
    // so they are held in memory, and the timer's answer and log say so.
    let mut everything = String::new();
    let stored_before = strava.refresh_token();
    let calls = strava.calls();
    let (status, body) = run_timer(&client, &warm.address).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(
            "STORAGE DOWN: new tokens held in memory and retried until storage takes them"
        ),
        "{body}"
    );
    everything.push_str(&body);
    assert_eq!(
        strava.calls().token_refresh,
        calls.token_refresh + 1,
        "the timer refreshed once"
    );
    let held = strava.refresh_token();
    assert_ne!(held, stored_before, "Strava rotated the refresh token");
    let held_logged = |output: &str| {
        output.lines().any(|l| {
            l.contains("STORAGE DID NOT TAKE THE NEW STRAVA TOKENS") && l.contains("ERROR")
        })
    };
    let until = Instant::now() + PATIENCE;
    while !held_logged(&warm.output()) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        held_logged(&warm.output()),
        "logged at error level: {}",
        warm.output()
    );
    // The warm instance's visitors leave, so that what saves the held tokens once storage is
    // back is the background retry (or, at most, a round already under way).
    stop_warm.store(true, Ordering::Relaxed);
    let mut load = Vec::new();
    for task in warm_load {
        load.push(("warm", task.await.expect("visitors")));
    }

    let azurite = azurite_op(azurite, Azurite::restart).await;
    let outage_ended = Instant::now();
    // The cold instance reconnects: it answers from the table again (with the access token
    // stored before the outage, which Strava honours until it expires).
    let (status, body) = poll_json_at(&client, &cold.address, RUN, PATIENCE, |s, _| s == 200).await;
    assert_eq!(status, 200, "the cold instance reconnected: {body}");
    stop_cold.store(true, Ordering::Relaxed);
    for task in cold_load {
        load.push(("cold", task.await.expect("visitors")));
    }

    // The tokens came through the outage: the background retry (1 s, 2 s, 4 s, … up to 60 s
    // apart) saves the held ones over their predecessor once storage is back.
    let until = Instant::now() + HELD_RETRY_PATIENCE;
    let mut stored = stored_credentials(&store).await;
    while stored.refresh_token.expose() != held && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        stored = stored_credentials(&store).await;
    }
    assert_eq!(
        stored.refresh_token.expose(),
        held,
        "the rotated refresh token reached the table after the outage"
    );
    assert_stored_tokens_are_stravas(&store, &strava).await;
    assert_eq!(
        strava.calls().token_failed,
        0,
        "no dead refresh token was used, during the outage or after"
    );

    let mut during_outage = 0;
    let mut storage_unavailable = 0;
    for (instance, visits) in load {
        for (at, visit) in visits {
            let (status, body) = match visit {
                Visit::Answered(status, body) => (status, body),
                Visit::Hung => panic!("{instance}: a request hung for 30 s"),
                Visit::Failed(err) => panic!("{instance}: a request failed: {err}"),
            };
            if (outage_began..outage_ended).contains(&at) {
                during_outage += 1;
            }
            let json = support::json(body.as_bytes());
            match status {
                200 => assert_eq!(json["id"], first["id"], "{instance}: {body}"),
                503 if instance == "cold" => {
                    assert_error_shape(&json, "storage_unavailable", instance);
                    storage_unavailable += 1;
                }
                _ => panic!("{instance}: {status} {body}"),
            }
            everything.push_str(&body);
        }
    }
    assert!(during_outage > 0, "the load went on through the outage");
    assert!(
        storage_unavailable > 0,
        "the cold instance had nothing to serve during the outage"
    );

    // The write paths work again: the timer rotates and saves the tokens; a new run is
    // fetched, stored and served by every instance.
    let mut renamed =
        serde_json::from_str::<Vec<Value>>(include_str!("../data/strava/athlete-activities.json"))
            .expect("sample");
    for activity in &mut renamed {
        if activity["id"] == first["id"] {
            activity["name"] = Value::from("After the outage");
        }
    }
    strava.set_activities(renamed);
    let (status, body) = run_timer(&client, &warm.address).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("rotated and saved"), "{body}");
    everything.push_str(&body);
    let stored = stored_credentials(&store).await;
    assert_eq!(stored.refresh_token.expose(), strava.refresh_token());
    assert_eq!(
        stored.access_token.as_ref().map(Secret::expose),
        Some(strava.access_token().as_str())
    );
    assert_eq!(
        strava.calls().token_failed,
        0,
        "no dead token was ever used"
    );
    // A round stores its answer before it serves it: once served, it is in the table.
    for instance in [&warm, &cold] {
        let (status, run) = poll_json_at(&client, &instance.address, RUN, PATIENCE, |_, b| {
            b["name"] == "After the outage"
        })
        .await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["name"], "After the outage", "{run}");
        let latest = store.peek_latest_run().await.expect("read");
        match latest.and_then(|l| l.snapshot).map(|s| s.shown) {
            Some(Shown::Run { body, .. }) => assert!(body.contains("After the outage"), "{body}"),
            other => panic!("no new answer stored: {other:?}"),
        }
    }

    for instance in [&warm, &cold] {
        everything.push_str(&instance.output());
    }
    assert!(!everything.contains("panicked"), "{everything}");
    support::assert_no_secret(&everything, &strava);
    drop(azurite);
}

// --- b. The handler killed between Strava's token answer and the save ---
//
// What is recoverable, and why (STRAVA.md §1.3, "Lifecycle rules"): Strava's answer to the
// refresh dies with the process; the table keeps the refresh token that was used, and the
// access token it had. Whether that refresh token still works depends on Strava alone:
// * rule 4: every answer carries a refresh token, and once it is a different one the previous
//   one is invalid *at once*: not when the new access token is first used. So if Strava
//   rotated, the only valid refresh token died with the process, and nothing the app can do
//   brings it back: only a new consent (`handler setup`) does. The app must say so clearly.
// * if Strava did not rotate (rule 5: the usual case), the stored refresh token is still the
//   valid one: the next refresh recovers fully, once the dead process's lease lapses (30 s).
// * rule 3: an access token Strava issued keeps working until its own expiry, so either way
//   the widget goes on serving with the stored access token meanwhile.
// The fake Strava follows these rules (rotation invalidates the old refresh token at once,
// older access tokens live until their expiry).

/// Runs the RefreshToken timer on the real `handler`, with the table behind a proxy that holds
/// every write after the refresh lease, and kills the process with SIGKILL as soon as the save
/// of Strava's answer is in flight. Returns the table's settings (direct to Azurite), the
/// refresh token the table held before, and the dead process's output.
async fn kill_between_stravas_answer_and_the_save(
    strava: &FakeStrava,
) -> (TestSettings, String, String) {
    let proxy = StorageProxy::start(Azurite::shared().port()).await;
    let direct = TestSettings::new(&strava.base_url()).with("WIDGET_CACHE_SECONDS", "1");
    let through_proxy = direct.clone().with(
        "AzureWebJobsStorage",
        connection_string_for_port(proxy.port()),
    );
    direct
        .store()
        .replace_credentials(&connected(strava))
        .await
        .expect("arrange");
    let used = strava.refresh_token();

    // The lease is written; every write after it (the save, its retries) hangs.
    proxy.next_writes(&[WriteFate::Pass]);
    proxy.later_writes(WriteFate::Hold);
    let mut handler = HandlerProcess::spawn(&through_proxy, &[]).await;
    handler.wait_ready().await;
    let timer = {
        let address = handler.address.clone();
        let body = fixture(support::app::TIMER);
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            match try_invoke_at(&client, &address, "RefreshToken", body).await {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            }
        })
    };
    let until = Instant::now() + PATIENCE;
    while proxy.held() == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(proxy.held() >= 1, "the save is in flight");
    handler.kill().await;
    assert_eq!(strava.calls().token_refresh, 1, "Strava had answered");
    let status = timer.await.expect("timer task");
    assert_eq!(status, 0, "the timer never answered");

    let stored = stored_credentials(&direct.store()).await;
    assert_eq!(stored.refresh_token.expose(), used, "the save never landed");
    assert!(stored.refresh_lease.is_some(), "the dead process's lease");
    (direct, used, handler.output())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_stravas_answer_and_the_save_recovers_when_strava_kept_the_refresh_token() {
    let strava = FakeStrava::start().await;
    let (settings, used, mut everything) = kill_between_stravas_answer_and_the_save(&strava).await;
    assert_eq!(strava.refresh_token(), used, "Strava did not rotate");

    let mut handler = HandlerProcess::spawn(&settings, &[]).await;
    handler.wait_ready().await;
    let client = reqwest::Client::new();
    // The widget works at once, with the stored access token.
    let (status, run) = get_json_at(&client, &handler.address, RUN).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["stale"], false);
    // The next run refreshes with the stored refresh token once the lease has lapsed.
    let (status, body) = run_timer(&client, &handler.address).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("refresh token unchanged; saved"), "{body}");
    let stored = stored_credentials(&settings.store()).await;
    assert_eq!(stored.refresh_token.expose(), strava.refresh_token());
    assert_eq!(
        stored.access_token.as_ref().map(Secret::expose),
        Some(strava.access_token().as_str())
    );
    assert!(stored.refresh_lease.is_none(), "the lease is released");
    assert_eq!(strava.calls().token_refresh, 2);
    assert_eq!(strava.calls().token_failed, 0);

    handler.terminate().await;
    everything.push_str(&format!("{run}{body}{}", handler.output()));
    support::assert_no_secret(&everything, &strava);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_stravas_answer_and_a_rotation_is_reported_as_needing_setup_again() {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    let (settings, used, mut everything) = kill_between_stravas_answer_and_the_save(&strava).await;
    assert_ne!(
        strava.refresh_token(),
        used,
        "Strava rotated: the new refresh token died with the process"
    );

    let mut handler = HandlerProcess::spawn(&settings, &[]).await;
    handler.wait_ready().await;
    let client = reqwest::Client::new();
    // The stored access token still works until its own expiry: the widget goes on.
    let (status, first) = get_json_at(&client, &handler.address, RUN).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["stale"], false);
    // The next run, once the lease has lapsed, finds the stored refresh token dead and says
    // what to do, as a failed run.
    let (status, body) = run_timer(&client, &handler.address).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("Strava refused the stored credentials")
            && body.contains("run `handler setup` again"),
        "{body}"
    );
    let calls = strava.calls();
    assert_eq!(
        calls.token_failed, 2,
        "tried once, and once more after reading again"
    );
    let stored = stored_credentials(&settings.store()).await;
    assert_eq!(stored.refresh_token.expose(), used, "nothing else to store");
    assert!(stored.refresh_lease.is_none(), "the lease is released");

    // When the access token runs out, visitors keep the last good answer, marked stale.
    strava.expire_access_token();
    let (status, stale) = poll_json_at(&client, &handler.address, RUN, PATIENCE, |_, b| {
        b["stale"] == true
    })
    .await;
    assert_eq!(status, 200, "{stale}");
    // The same run (a refresh may have landed in between, while the access token worked).
    let without_time = |answer: &Value| {
        let mut answer = marked_stale(answer);
        answer["fetched_at"] = Value::Null;
        answer
    };
    assert_eq!(without_time(&stale), without_time(&first));

    handler.terminate().await;
    let output = handler.output();
    assert!(
        output.contains("ERROR") && output.contains("run `handler setup` again"),
        "{output}"
    );
    everything.push_str(&format!("{first}{body}{stale}{output}"));
    support::assert_no_secret(&everything, &strava);
}

// --- c. Strava failing, on the cold path and on a refresh with a cached answer ---

/// How long a Strava call may take in the apps of the slow-Strava case.
const SHORT_STRAVA_TIMEOUT: Duration = Duration::from_secs(3);

/// One way Strava fails.
struct StravaFailure {
    name: &'static str,
    /// Where it fails: the API, or the token endpoint (then the access token has run out, so a
    /// refresh is needed first).
    scope: Scope,
    /// The fault; `None` means Strava answers, but only after longer than the app waits.
    fault: Option<Fault>,
    /// The error the widget gets when there is no earlier answer.
    cold_error: &'static str,
    /// Text of the failing answer that must never reach a visitor, if it has any.
    marker: Option<&'static str>,
}

fn strava_failures() -> Vec<StravaFailure> {
    let failure = |name, scope, fault, marker| StravaFailure {
        name,
        scope,
        fault,
        cold_error: "strava_unavailable",
        marker,
    };
    vec![
        failure("API slower than the timeout", Scope::Api, None, None),
        failure(
            "API truncated JSON",
            Scope::Api,
            Some(Fault::Truncated),
            Some("resource_state"),
        ),
        failure(
            "API HTML error page",
            Scope::Api,
            Some(Fault::HtmlPage(503)),
            Some("could not be satisfied"),
        ),
        failure("API empty body", Scope::Api, Some(Fault::Empty), None),
        failure(
            "API 429 with rate-limit headers",
            Scope::Api,
            Some(Fault::Status(429)),
            Some("Rate Limit Exceeded"),
        ),
        failure(
            "API 429 without rate-limit headers",
            Scope::Api,
            Some(Fault::BareStatus(429)),
            Some("Rate Limit Exceeded"),
        ),
        StravaFailure {
            cold_error: "strava_authorization",
            ..failure(
                "API 401 on every call",
                Scope::Api,
                Some(Fault::Status(401)),
                Some("Authorization Error"),
            )
        },
        failure(
            "token endpoint slower than the timeout",
            Scope::OAuth,
            None,
            None,
        ),
        failure(
            "token endpoint truncated JSON",
            Scope::OAuth,
            Some(Fault::Truncated),
            Some("token_type"),
        ),
        failure(
            "token endpoint HTML error page",
            Scope::OAuth,
            Some(Fault::HtmlPage(502)),
            Some("could not be satisfied"),
        ),
        failure(
            "token endpoint empty body",
            Scope::OAuth,
            Some(Fault::Empty),
            None,
        ),
    ]
}

impl StravaFailure {
    fn settings(&self, strava: &FakeStrava) -> TestSettings {
        let settings = TestSettings::new(&strava.base_url()).with("WIDGET_CACHE_SECONDS", "1");
        match self.fault {
            None => settings.with_strava_timeout(SHORT_STRAVA_TIMEOUT),
            Some(_) => settings,
        }
    }

    /// Strava starts failing (for the token endpoint: and the access token runs out).
    fn inject(&self, strava: &FakeStrava) {
        if self.scope == Scope::OAuth {
            strava.expire_access_token();
        }
        match &self.fault {
            None => strava.set_latency(SHORT_STRAVA_TIMEOUT * 3),
            Some(fault) => strava.set_fault(self.scope, Some(fault.clone())),
        }
    }

    /// Whether the app stays quiet after this failure only until the next quarter-hour of the
    /// wall clock (a `429`: Strava's 15-minute window), rather than for its fixed retry window.
    fn quiet_until_the_quarter_hour(&self) -> bool {
        matches!(
            self.fault,
            Some(Fault::Status(429) | Fault::BareStatus(429))
        )
    }

    /// Every body a visitor got: no secret, nothing of Strava's failing answer.
    fn assert_nothing_echoed(&self, bodies: &str, strava: &FakeStrava) {
        support::assert_no_secret(bodies, strava);
        if let Some(marker) = self.marker {
            assert!(
                !bodies.contains(marker),
                "{}: Strava's answer was echoed: {bodies}",
                self.name
            );
        }
    }
}

/// How long a case takes at most from its failure to its last "no further Strava call" check,
/// on a slow, busy machine: every step has a deadline far below it.
const CASE_SPAN: Duration = Duration::from_secs(90);

/// After a `429` the app stays quiet until the next quarter-hour of the wall clock (UTC :00,
/// :15, :30, :45), when Strava's 15-minute window resets; if one passed during a case, its
/// visitors would rightly call Strava again. So when the next one is less than [`CASE_SPAN`]
/// away, this waits until just past it (a few percent of runs), and a case started now ends
/// well before the one after.
async fn clear_of_the_next_quarter_hour() {
    const QUARTER_HOUR: u64 = 15 * 60;
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    let into_quarter = Duration::from_nanos(
        u64::try_from(since_epoch.as_nanos() % u128::from(QUARTER_HOUR * 1_000_000_000))
            .expect("under 15 minutes"),
    );
    let to_next = Duration::from_secs(QUARTER_HOUR) - into_quarter;
    if to_next < CASE_SPAN {
        tokio::time::sleep(to_next + Duration::from_secs(2)).await;
    }
}

/// One case on both paths, against one fake Strava: an app whose answer (stored by an earlier
/// instance) is past its window, and a cold app with nothing cached anywhere.
async fn strava_failure_case(case: StravaFailure) {
    let strava = FakeStrava::start().await;
    let settings = case.settings(&strava);
    let first = answer_of_an_earlier_instance(&strava, &settings).await;
    let warm = TestApp::spawn(settings).await;
    let warm_table = table_state(&warm.store).await;
    assert!(warm_table.1.is_some(), "the answer is stored");

    if case.quiet_until_the_quarter_hour() {
        clear_of_the_next_quarter_hour().await;
    }
    case.inject(&strava);
    let cold = TestApp::spawn(case.settings(&strava)).await;
    cold.store
        .replace_credentials(&connected(&strava))
        .await
        .expect("arrange");
    let cold_table = table_state(&cold.store).await;
    // The stored answer's one-second window passes.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let mut bodies = String::new();
    // Cold: the documented error, at once (within the app's own bounds).
    let (status, error) = cold.get_json(RUN).await;
    bodies.push_str(&error.to_string());
    assert_eq!(status, 502, "{}: {error}", case.name);
    assert_error_shape(&error, case.cold_error, case.name);
    // Warm: the last good answer, soon marked stale, else unchanged.
    let (status, stale) = warm
        .poll_json(RUN, PATIENCE, |_, b| b["stale"] == true)
        .await;
    bodies.push_str(&stale.to_string());
    assert_eq!(status, 200, "{}: {stale}", case.name);
    assert_eq!(
        stale,
        marked_stale(&first),
        "{}: the previous run, marked stale",
        case.name
    );

    // The failure is remembered: more visitors cost Strava nothing.
    let calls = strava.calls();
    for app in [&warm, &cold] {
        for _ in 0..5 {
            let (status, body) = app.get_json(RUN).await;
            assert!(status == 200 || status == 502, "{}: {body}", case.name);
            bodies.push_str(&body.to_string());
        }
    }
    assert_eq!(strava.calls(), calls, "{}: no hammering", case.name);
    case.assert_nothing_echoed(&bodies, &strava);

    // The tables keep the last good answer and a refresh token Strava accepts.
    assert_eq!(table_state(&warm.store).await, warm_table, "{}", case.name);
    assert_eq!(table_state(&cold.store).await, cold_table, "{}", case.name);
    assert_eq!(
        warm_table.0.as_deref(),
        Some(strava.refresh_token().as_str()),
        "{}",
        case.name
    );
}

/// How many failure cases run at once: few enough that a slow machine takes each from its
/// failure to its last check well within the app's quiet windows (60 s after a failure).
const CASES_AT_ONCE: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strava_failing_in_every_known_way_gives_the_stale_answer_or_the_documented_error() {
    use futures_util::StreamExt;
    let cases = strava_failures().into_iter().map(strava_failure_case);
    let done: Vec<()> = futures_util::stream::iter(cases)
        .buffer_unordered(CASES_AT_ONCE)
        .collect()
        .await;
    assert_eq!(done.len(), strava_failures().len());
}

/// A storm of 401s against one app (its own fake Strava, which rotates refresh tokens), warm
/// or cold: the visitor's answer, Strava's calls during the storm, the bodies served.
async fn storm_of_401s(warm: bool) -> (u16, Value, CallCounts, String, FakeStrava, TestApp) {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    let settings = TestSettings::new(&strava.base_url()).with("WIDGET_CACHE_SECONDS", "1");
    let first = if warm {
        Some(answer_of_an_earlier_instance(&strava, &settings).await)
    } else {
        None
    };
    let app = TestApp::spawn(settings).await;
    if !warm {
        app.store
            .replace_credentials(&connected(&strava))
            .await
            .expect("arrange");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = strava.calls();
    strava.set_fault(Scope::Api, Some(Fault::Status(401)));

    // Waves of visitors while every API call is refused.
    let mut bodies = String::new();
    for _ in 0..3 {
        let wave = (0..10).map(|_| app.get_json(RUN));
        for (status, body) in futures_util::future::join_all(wave).await {
            assert!(status == 200 || status == 502, "{status} {body}");
            bodies.push_str(&body.to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = app
        .poll_json(RUN, PATIENCE, |s, b| s == 502 || b["stale"] == true)
        .await;
    bodies.push_str(&body.to_string());
    if let Some(first) = first {
        assert_eq!((status, &body), (200, &marked_stale(&first)));
    }
    let calls = strava.calls();
    let during = CallCounts {
        token_refresh: calls.token_refresh - before.token_refresh,
        token_failed: calls.token_failed - before.token_failed,
        activities: calls.activities - before.activities,
        ..CallCounts::default()
    };
    assert_eq!(
        calls.api_total() - before.api_total(),
        during.activities,
        "only the list was asked"
    );
    (status, body, during, bodies, strava, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_401s_costs_one_token_refresh_and_never_loses_the_refresh_token() {
    let (warm, cold) = tokio::join!(storm_of_401s(true), storm_of_401s(false));
    let (status, error) = (cold.0, &cold.1);
    assert_eq!(status, 502, "{error}");
    assert_error_shape(error, "strava_authorization", "cold");
    for (path, (_, _, during, bodies, strava, app)) in [("warm", warm), ("cold", cold)] {
        // One round, one refresh after the first 401, one retry: then the failure is
        // remembered and visitors cost Strava nothing.
        assert_eq!(during.token_refresh, 1, "{path}: {during:?}");
        assert_eq!(during.activities, 2, "{path}: {during:?}");
        assert_eq!(during.token_failed, 0, "{path}: {during:?}");
        support::assert_no_secret(&bodies, &strava);
        assert!(!bodies.contains("Authorization Error"), "{path}: {bodies}");

        // Strava rotated the refresh token in that refresh; the table holds the new one.
        let stored = stored_credentials(&app.store).await;
        assert_eq!(
            stored.refresh_token.expose(),
            strava.refresh_token(),
            "{path}"
        );

        // The storm passes; the timer's refresh works from the stored token, and the timer
        // leaves the answer alone while the failure is remembered.
        strava.set_fault(Scope::Api, None);
        let calls = strava.calls();
        let (status, body) = run_timer(&app.client, &app.address).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("rotated and saved"), "{path}: {body}");
        support::assert_no_secret(&body, &strava);
        assert_eq!(strava.calls().token_refresh, calls.token_refresh + 1);
        assert_eq!(strava.calls().api_total(), calls.api_total(), "{path}");
        assert_eq!(
            stored_credentials(&app.store).await.refresh_token.expose(),
            strava.refresh_token(),
            "{path}"
        );
        assert_eq!(
            strava.calls().token_failed,
            0,
            "{path}: no dead token was ever used"
        );
    }
}

// --- d. The clock jumping past the timer's occurrence ---

#[tokio::test]
async fn a_past_due_timer_after_two_hours_away_refreshes_once_and_serves_fresh_data() {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    let settings = TestSettings::new(&strava.base_url());
    let before = answer_of_an_earlier_instance(&strava, &settings).await;
    let store = settings.store();

    // Two hours pass with no instance running (the machine slept, the app was scaled to
    // zero): every stored time moves two hours into the past, and the access token, which had
    // 90 minutes left, expired half an hour ago, at Strava too.
    let jump = 2 * 3600;
    strava.set_access_token_expiry(now() - 1800);
    store
        .replace_credentials(&connected(&strava))
        .await
        .expect("token expired");
    let mut latest = store.load_latest_run().await.expect("read").value;
    let snapshot = latest.snapshot.as_mut().expect("an answer");
    snapshot.fetched_at -= jump;
    snapshot.reconciled_at = snapshot.reconciled_at.map(|at| at - jump);
    if let Shown::Run { body, .. } = &mut snapshot.shown {
        let mut run: Value = serde_json::from_str(body).expect("answer");
        run["fetched_at"] = Value::from(rfc3339(snapshot.fetched_at));
        *body = run.to_string();
    }
    store
        .replace_latest_run(&latest)
        .await
        .expect("answer two hours old");
    strava.reset_calls();

    // The host starts an instance and runs the occurrence it missed, marked past due.
    let app = TestApp::spawn(settings).await;
    let woke_at = now();
    let body = run_past_due_timer(&app).await;
    assert!(body.contains("rotated and saved"), "{body}");
    let calls = strava.calls();
    assert_eq!(calls.token_refresh, 1, "{calls:?}");
    assert_eq!(calls.token_failed, 0, "{calls:?}");
    assert_eq!(
        calls.activities, 1,
        "the timer warmed the answer: {calls:?}"
    );

    assert_stored_tokens_are_stravas(&app.store, &strava).await;
    assert!(strava.access_token_expires_at() > woke_at + 5 * 3600);
    assert!(stored_credentials(&app.store).await.refresh_lease.is_none());
    let fetched_at = app
        .store
        .peek_latest_run()
        .await
        .expect("read")
        .and_then(|l| l.snapshot)
        .expect("an answer")
        .fetched_at;
    assert!(fetched_at >= woke_at, "a new answer is stored");

    // Visitors get the fresh answer, with no further refresh and no further Strava call.
    let (status, run) = app.get_json(RUN).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["stale"], false);
    assert_eq!(run["id"], before["id"]);
    assert_eq!(
        run["fetched_at"].as_str(),
        Some(rfc3339(fetched_at).as_str())
    );
    assert_eq!(strava.calls(), calls, "no double refresh");
    support::assert_no_secret(&format!("{body}{run}"), &strava);
}

#[tokio::test]
async fn a_running_instance_whose_clock_jumps_two_hours_refreshes_once_and_keeps_serving() {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    // The access token has an hour left: after the jump the app sees it expired.
    strava.set_access_token_expiry(now() + 3600);
    let settings = TestSettings::new(&strava.base_url()).with("WIDGET_CACHE_SECONDS", "600");
    settings
        .store()
        .replace_credentials(&connected(&strava))
        .await
        .expect("arrange");
    let clock = Clock::system();
    let app = TestApp::spawn_with_clock(settings, clock.clone()).await;
    let (status, before) = app.get_json(RUN).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["stale"], false);
    strava.reset_calls();

    // The machine's clock moves two hours ahead (corrected, or the machine woke from sleep)
    // while the instance runs: its answer is past its window, its access token past expiry.
    clock.jump(2 * 3600);
    let jumped_at = clock.now();
    let visitors: Vec<_> = (0..20)
        .map(|_| {
            let (client, address) = (app.client.clone(), app.address.clone());
            tokio::spawn(async move { get_json_at(&client, &address, RUN).await })
        })
        .collect();
    for visitor in visitors {
        let (status, run) = visitor.await.expect("a visitor");
        assert_eq!(status, 200, "the old answer is served at once: {run}");
        assert_eq!(run["id"], before["id"]);
    }
    let (status, fresh) = app
        .poll_json(RUN, PATIENCE, |_, run| {
            run["fetched_at"]
                .as_str()
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .is_some_and(|t| t.unix_timestamp() >= jumped_at)
        })
        .await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(fresh["stale"], false, "refreshed after the jump: {fresh}");
    assert_eq!(fresh["id"], before["id"]);
    let calls = strava.calls();
    assert_eq!(
        calls.activities, 1,
        "one refresh round for 20 visitors: {calls:?}"
    );
    assert_eq!(
        calls.token_refresh, 1,
        "the expired token refreshed once: {calls:?}"
    );
    assert_eq!(calls.token_failed, 0, "{calls:?}");
    assert_stored_tokens_are_stravas(&app.store, &strava).await;

    // The host, seeing the occurrence it slept through, runs the timer marked past due: one
    // more refresh, saved; the answer, fresh in the jumped clock, costs no data call.
    let body = run_past_due_timer(&app).await;
    let after_timer = strava.calls();
    assert_eq!(after_timer.token_refresh, 2, "{after_timer:?}");
    assert_eq!(after_timer.token_failed, 0, "{after_timer:?}");
    assert_eq!(
        after_timer.activities, 1,
        "no double data round: {after_timer:?}"
    );
    assert_stored_tokens_are_stravas(&app.store, &strava).await;
    let (status, last) = app.get_json(RUN).await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(last["stale"], false);
    assert_eq!(strava.calls(), after_timer, "visitors cost Strava nothing");
    support::assert_no_secret(&format!("{before}{fresh}{body}{last}"), &strava);
}
