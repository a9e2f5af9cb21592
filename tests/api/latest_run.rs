//! GetLatestRun against the fake Strava and real Azurite: the pick, the photo, the response and
//! its headers in both forms, privacy, failures, and the cache that keeps visitors off Strava.

use crate::support;

use serde_json::{json, Value};
use std::time::Duration;
use strava_latest_run::clock::Clock;
use support::activities;
use support::app::{fixture, TestApp, TestSettings};
use support::credentials::connected;
use support::fake_strava::{FakeStrava, Fault, Scope};
use support::json;

const SAMPLE_RUN_ID: i64 = 16128930471;
const SAMPLE_PRIMARY_600: &str =
    "https://dgtzuqphqg23d.cloudfront.net/FrDYjKf7QmUt5OOkVHKSUiml7aWGiFCw-TzHahf1rGP-768x576.jpg";

fn sample(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/strava")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("sample")).expect("json")
}

/// Credentials as `handler setup` leaves them, pointing at the fake's current tokens.
async fn connect(app: &TestApp, strava: &FakeStrava) {
    app.store
        .replace_credentials(&connected(strava))
        .await
        .expect("arrange credentials");
}

async fn connected_app(strava: &FakeStrava, settings: TestSettings) -> TestApp {
    let app = TestApp::spawn(settings).await;
    connect(&app, strava).await;
    app
}

/// A connected app whose answers are fresh for one second only.
async fn one_second_window_app(strava: &FakeStrava) -> TestApp {
    let settings = TestSettings::new(&strava.base_url()).with("WIDGET_CACHE_SECONDS", "1");
    connected_app(strava, settings).await
}

fn assert_private_data_absent(body: &str, strava: &FakeStrava) {
    for forbidden in [
        "latlng",
        "polyline",
        "\"map\"",
        "visibility",
        "\"private\"",
        "athlete",
        "firstname",
        "Kowalczyk",
        "username",
    ] {
        assert!(!body.contains(forbidden), "{forbidden} leaked: {body}");
    }
    for secret in strava.all_secrets() {
        assert!(!body.contains(&secret), "a secret leaked");
    }
}

#[tokio::test]
async fn the_latest_public_run_with_photo_and_year_total_in_both_forms() {
    let strava = FakeStrava::start().await;
    let app = connected_app(&strava, TestSettings::new(&strava.base_url())).await;

    let forwarded = app.get("/api/GetLatestRun").await;
    assert_eq!(forwarded.status(), 200);
    let headers = forwarded.headers().clone();
    let body = forwarded.bytes().await.expect("body");
    let run = json(&body);
    assert_eq!(
        run["id"], SAMPLE_RUN_ID,
        "not the followers-only ride nor the only-me run"
    );
    assert_eq!(run["photoUrl"], SAMPLE_PRIMARY_600);
    // The sample's runs are from an earlier year than the clock's: none counts for this one
    // (whatever Strava's stats endpoint says; it is not read).
    assert_eq!(run["year_to_date_run_total_distance"].as_f64(), Some(0.0));
    assert_eq!(run["sport_type"], "Run");
    assert_eq!(run["stale"], false);
    assert_eq!(
        run["strava_url"],
        format!("https://www.strava.com/activities/{SAMPLE_RUN_ID}")
    );
    for field in [
        "name",
        "distance",
        "moving_time",
        "start_date",
        "elapsed_time",
        "pace_seconds_per_km",
        "fetched_at",
    ] {
        assert!(!run[field].is_null(), "{field} missing: {run}");
    }
    assert_private_data_absent(&String::from_utf8_lossy(&body), &strava);
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers["cache-control"]
        .to_str()
        .expect("ascii")
        .contains("stale-while-revalidate"));
    let etag = headers["etag"].to_str().expect("ascii").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong ETag: {etag}"
    );

    let invoked = app
        .invoke("GetLatestRun", fixture("http-invocation-request.json"))
        .await;
    assert_eq!(invoked.status(), 200);
    let envelope = json(&invoked.bytes().await.expect("body"));
    let res = &envelope["Outputs"]["res"];
    assert_eq!(res["statusCode"], 200);
    assert_eq!(
        res["body"].as_str().expect("string").as_bytes(),
        &body[..],
        "byte-identical bodies"
    );
    assert_eq!(res["headers"]["ETag"], etag.as_str());

    // If-None-Match → 304 in both forms.
    let not_modified = app
        .client
        .get(format!("{}/api/GetLatestRun", app.address))
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("get");
    assert_eq!(not_modified.status(), 304);
    let with_etag = fixture("http-invocation-request.json").replace(
        "\"Accept\": [",
        &format!(
            "\"If-None-Match\": [{}], \"Accept\": [",
            serde_json::to_string(&etag).expect("json")
        ),
    );
    let invoked = app.invoke("GetLatestRun", with_etag).await;
    let envelope = json(&invoked.bytes().await.expect("body"));
    assert_eq!(envelope["Outputs"]["res"]["statusCode"], 304);
    assert_eq!(envelope["Outputs"]["res"]["body"], "");

    // Every answer after the first came from memory: the first round's list calls are all
    // (a page of activities, and the empty page that ends Strava's list).
    assert_eq!(strava.calls().activities, 2);
}

#[tokio::test]
async fn if_none_match_takes_lists_weak_tags_star_and_several_header_lines() {
    let strava = FakeStrava::start().await;
    let app = connected_app(&strava, TestSettings::new(&strava.base_url())).await;
    let first = app.get("/api/GetLatestRun").await;
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().expect("ascii").to_owned();
    let body = first.bytes().await.expect("body");

    let conditional = |values: Vec<String>| {
        let mut request = app.client.get(format!("{}/api/GetLatestRun", app.address));
        // `header` appends: each value goes out as a header line of its own.
        for value in values {
            request = request.header("If-None-Match", value);
        }
        request.send()
    };
    let not_modified = [
        (
            "the tag on a second header line",
            vec!["\"other\"".into(), etag.clone()],
        ),
        ("a weak tag", vec![format!("W/{etag}")]),
        ("a list", vec![format!("\"a\", W/\"b\", {etag}")]),
        ("a list without spaces", vec![format!("\"a\",{etag}")]),
        ("a star", vec!["*".into()]),
    ];
    for (case, values) in not_modified {
        let response = conditional(values).await.expect("send");
        assert_eq!(response.status(), 304, "{case}");
        assert_eq!(response.headers()["etag"], etag.as_str(), "{case}");
        assert!(response.headers().contains_key("cache-control"), "{case}");
        assert!(response.bytes().await.expect("body").is_empty(), "{case}");
    }

    let modified = [
        ("a list of other tags", vec!["\"a\", W/\"b\"".to_owned()]),
        (
            "other tags on two lines",
            vec!["\"a\"".into(), "W/\"b\"".into()],
        ),
        ("the tag unquoted", vec![etag.trim_matches('"').to_owned()]),
        ("the tag lowercase-w weak", vec![format!("w/{etag}")]),
        ("an empty value", vec![String::new()]),
        ("a tag with a space inside", vec!["\"a b\"".into()]),
        ("a tag with a tab inside", vec!["\"a\tb\"".into()]),
        (
            "an unclosed quote across lines",
            vec!["\"a".into(), "b\"".into()],
        ),
        ("commas only", vec![",,, ,".into()]),
    ];
    for (case, values) in modified {
        let response = conditional(values)
            .await
            .expect("send: the server survives");
        assert_eq!(response.status(), 200, "{case}");
        assert_eq!(response.bytes().await.expect("body"), body, "{case}");
    }
}

#[tokio::test]
async fn awkward_activity_lists_pick_the_right_run_and_photo() {
    let strava = FakeStrava::start().await;
    // A fresh table each time: the cached answer of one case must not answer the next.
    let app_settings = || TestSettings::new(&strava.base_url());
    let activities = sample("athlete-activities.json");
    let list: Vec<Value> = activities.as_array().expect("array").clone();
    let by_id = |id: i64| {
        list.iter()
            .find(|a| a["id"] == id)
            .cloned()
            .expect("in sample")
    };

    // A TrailRun as the newest public activity (its `type` is "Run"); no photos at all.
    let mut trail = by_id(16110453318_i64);
    trail["start_date"] = json!("2025-10-13T07:00:00Z");
    trail["total_photo_count"] = json!(0);
    // Ascending order (as with `after`): the pick must not trust list order.
    let mut ascending = list.clone();
    ascending.push(trail.clone());
    ascending.reverse();
    strava.set_activities(ascending);
    let app = connected_app(&strava, app_settings()).await;
    let (status, run) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["id"], 16110453318_i64);
    assert_eq!(run["sport_type"], "TrailRun");
    assert!(run["photoUrl"].is_null(), "no photos: {run}");
    assert_private_data_absent(&run.to_string(), &strava);
    drop(app);

    // Only "Run" counts: the TrailRun is skipped.
    let app = connected_app(&strava, app_settings().with("WIDGET_SPORT_TYPES", "Run")).await;
    assert_eq!(
        app.get_json("/api/GetLatestRun").await.1["id"],
        SAMPLE_RUN_ID
    );
    drop(app);

    // A manual run with absent keys, newest; its detail's primary photo is the placeholder.
    let manual = json!({
        "resource_state": 2, "name": "Treadmill intervals", "distance": 8000, "moving_time": 2400.0,
        "elapsed_time": 2500, "type": "Run", "sport_type": "Run", "id": 17000000001_i64,
        "start_date": "2025-10-14T06:00:00Z", "manual": true, "private": false, "visibility": "everyone",
        "total_photo_count": 2
    });
    let mut detail = manual.clone();
    detail["photos"] = json!({"primary": {"unique_id": "p0", "urls": {"600": "https://d3nn82uaxijpm6.cloudfront.net/assets/media/placeholder-photo@4x-abc.png"}}, "count": 2});
    strava.set_activities(vec![manual.clone(), by_id(SAMPLE_RUN_ID)]);
    strava.set_activity_detail(17000000001, detail);
    strava.set_photos(17000000001, vec![
        json!({"unique_id": "p0", "urls": {"600": "https://d3nn82uaxijpm6.cloudfront.net/assets/media/placeholder-photo@4x-abc.png"}, "placeholder_image": null}),
        json!({"unique_id": "p1", "urls": {"600": "https://dgtzuqphqg23d.cloudfront.net/real-photo-768x576.jpg"}}),
    ]);
    let app = connected_app(&strava, app_settings()).await;
    let (status, run) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["id"], 17000000001_i64);
    assert_eq!(
        run["photoUrl"], "https://dgtzuqphqg23d.cloudfront.net/real-photo-768x576.jpg",
        "never the placeholder"
    );
    assert!(run["average_speed"].is_null() && run["kudos_count"].is_null());
    assert_eq!(run["pace_seconds_per_km"].as_f64(), Some(300.0));
    assert_private_data_absent(&run.to_string(), &strava);
    drop(app);

    // The newest runs are only-me and followers-only; nothing public of the sport types → 404.
    let mut hidden = by_id(16137205566_i64);
    hidden["visibility"] = json!("followers_only");
    hidden["private"] = json!(false);
    strava.set_activities(vec![by_id(16137205566_i64), hidden, by_id(16145518802_i64)]);
    let app = connected_app(&strava, app_settings()).await;
    let (status, error) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 404);
    assert_eq!(error["error"], "no_public_run");
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries() {
    let strava = FakeStrava::start().await;
    let app = connected_app(&strava, TestSettings::new(&strava.base_url())).await;
    strava.expire_access_token();
    let (status, run) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["id"], SAMPLE_RUN_ID);
    assert_eq!(strava.calls().token_refresh, 1);
    let stored = app
        .store
        .load_credentials()
        .await
        .expect("read")
        .expect("stored")
        .value;
    assert_eq!(
        stored.access_token.map(|t| t.expose().to_owned()),
        Some(strava.access_token())
    );
}

#[tokio::test]
async fn strava_down_without_an_earlier_answer_is_a_502_and_rate_limits_are_respected() {
    let strava = FakeStrava::start().await;
    let app = connected_app(&strava, TestSettings::new(&strava.base_url())).await;
    strava.set_fault(Scope::Api, Some(Fault::HtmlPage(502)));
    let (status, error) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 502);
    assert_eq!(error["error"], "strava_unavailable");
    assert!(error["message"].as_str().is_some_and(|m| m.len() > 20));
    let calls = strava.calls().api_total();
    let (status, _) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 502);
    assert_eq!(
        strava.calls().api_total(),
        calls,
        "no hammering: the failure is remembered briefly"
    );

    let strava = FakeStrava::start().await;
    let app = connected_app(&strava, TestSettings::new(&strava.base_url())).await;
    strava.set_fault(Scope::Api, Some(Fault::Status(429)));
    let (status, _) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 502);
    strava.set_fault(Scope::Api, None);
    let calls = strava.calls().api_total();
    let (status, _) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 502, "no retry until the window resets");
    assert_eq!(strava.calls().api_total(), calls);
}

#[tokio::test]
async fn strava_down_serves_the_last_good_answer_marked_stale() {
    let strava = FakeStrava::start().await;
    let app = one_second_window_app(&strava).await;
    let (status, first) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
    assert_eq!(first["stale"], false);

    strava.set_fault(Scope::Api, Some(Fault::HtmlPage(502)));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The first request after expiry is answered at once and starts the refresh.
    let (status, _) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
    let (_, stale) = app
        .poll_json("/api/GetLatestRun", Duration::from_secs(5), |_, run| {
            run["stale"] == true
        })
        .await;
    assert_eq!(stale["stale"], true, "{stale}");
    assert_eq!(stale["id"], first["id"]);
    assert_eq!(
        stale["fetched_at"], first["fetched_at"],
        "when it was really fetched"
    );
}

#[tokio::test]
async fn a_stale_answer_is_served_at_once_while_one_refresh_runs() {
    let strava = FakeStrava::start().await;
    // A window of a few seconds: on a loaded machine a cold round may outlast a one-second one,
    // and a refresh start before the test's own.
    let window = 3;
    let settings = TestSettings::new(&strava.base_url()).with("WIDGET_CACHE_SECONDS", "3");
    let app = connected_app(&strava, settings).await;
    let _ = app.get_json("/api/GetLatestRun").await;
    // Wait until no list call has come for a while (the cold round is over).
    let mut calls = strava.calls().activities;
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let now = strava.calls().activities;
        if now == calls {
            break;
        }
        calls = now;
    }
    let (_, first) = app.get_json("/api/GetLatestRun").await;
    let rounds_before = strava.calls().activities;

    tokio::time::sleep(Duration::from_millis(window * 1000 + 100)).await;
    strava.set_latency(Duration::from_millis(800));
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let (status, run) = app.get_json("/api/GetLatestRun").await;
        assert_eq!(status, 200);
        assert_eq!(
            run["fetched_at"], first["fetched_at"],
            "the old answer while the refresh runs"
        );
    }
    println!(
        "20 requests during a slow refresh took {:?}",
        started.elapsed()
    );
    // Counted before the refreshed answer is looked for: with a one-second window, that answer
    // may be due again as soon as it lands (its round took most of a second), and the look
    // that sees it would then start the next round.
    let during = strava.calls().activities;
    let (_, refreshed) = app
        .poll_json("/api/GetLatestRun", Duration::from_secs(6), |_, run| {
            run["fetched_at"] != first["fetched_at"]
        })
        .await;
    assert_ne!(
        refreshed["fetched_at"], first["fetched_at"],
        "the refresh landed"
    );
    assert_eq!(
        during,
        rounds_before + 1,
        "one refresh for all those requests: {:?}",
        strava.calls()
    );
}

#[tokio::test]
async fn a_thousand_concurrent_cold_requests_cause_one_strava_round() {
    let strava = FakeStrava::start().await;
    strava.set_latency(Duration::from_millis(150));
    let app = connected_app(&strava, TestSettings::new(&strava.base_url())).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let client = client.clone();
        let url = format!("{}/api/GetLatestRun", app.address);
        tasks.push(tokio::spawn(async move {
            let response = client.get(url).send().await.expect("get");
            (
                response.status().as_u16(),
                response.bytes().await.expect("body"),
            )
        }));
    }
    let mut bodies = std::collections::HashSet::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200);
        bodies.insert(body);
    }
    assert_eq!(bodies.len(), 1, "everyone got the same answer");
    // One round: a page of activities and the empty page that ends Strava's list.
    let calls = strava.calls();
    assert_eq!(calls.activities, 2, "{calls:?}");
    assert_eq!(
        calls.stats, 0,
        "the stats endpoint is never read: {calls:?}"
    );
}

#[tokio::test]
async fn a_restarted_instance_serves_from_the_table_without_calling_strava() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url());
    let first = connected_app(&strava, settings.clone()).await;
    let (_, run) = first.get_json("/api/GetLatestRun").await;
    drop(first);
    let calls = strava.calls();

    let second = TestApp::spawn(settings.clone()).await;
    let (status, again) = second.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
    assert_eq!(again, run);
    assert_eq!(
        strava.calls(),
        calls,
        "no Strava call on a restart within the window"
    );

    // Two instances within one window: the second takes the first's answer.
    let third = TestApp::spawn(settings).await;
    let (_, third_run) = third.get_json("/api/GetLatestRun").await;
    assert_eq!(third_run["fetched_at"], run["fetched_at"]);
    assert_eq!(strava.calls(), calls);
}

#[tokio::test]
async fn the_refresh_stops_when_the_read_budget_is_nearly_spent() {
    let strava = FakeStrava::start().await;
    let app = one_second_window_app(&strava).await;
    strava.set_rate_limit_usage((95, 400));
    let (status, first) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
    let calls = strava.calls().api_total();

    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..10 {
        let (status, run) = app.get_json("/api/GetLatestRun").await;
        assert_eq!(status, 200);
        assert_eq!(run["fetched_at"], first["fetched_at"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        strava.calls().api_total(),
        calls,
        "the headers said the read limit is near: no refresh"
    );
}

#[tokio::test]
async fn cors_allow_list_and_preflight() {
    let strava = FakeStrava::start().await;
    let app = connected_app(
        &strava,
        TestSettings::new(&strava.base_url())
            .with("WIDGET_ALLOWED_ORIGINS", "https://blog.example.org"),
    )
    .await;
    let allowed = app
        .client
        .get(format!("{}/api/GetLatestRun", app.address))
        .header("Origin", "https://blog.example.org")
        .send()
        .await
        .expect("get");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://blog.example.org"
    );
    assert_eq!(allowed.headers()["vary"], "Origin");
    let other = app
        .client
        .get(format!("{}/api/GetLatestRun", app.address))
        .header("Origin", "https://elsewhere.example")
        .send()
        .await
        .expect("get");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    assert_eq!(other.headers()["vary"], "Origin");
    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/GetLatestRun", app.address),
        )
        .header("Origin", "https://blog.example.org")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "if-none-match")
        .send()
        .await
        .expect("options");
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://blog.example.org"
    );
    assert!(preflight.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .contains("If-None-Match"));
}

#[tokio::test]
async fn two_instances_under_load_make_one_strava_round_per_window() {
    let strava = FakeStrava::start().await;
    strava.set_latency(Duration::from_millis(150));
    let settings = TestSettings::new(&strava.base_url()).with("WIDGET_CACHE_SECONDS", "2");
    let first = connected_app(&strava, settings.clone()).await;
    let second = TestApp::spawn(settings).await;
    let addresses = [first.address.clone(), second.address.clone()];

    let started = std::time::Instant::now();
    let run_for = Duration::from_secs(7);
    let mut workers = Vec::new();
    for worker in 0..8 {
        let address = addresses[worker % 2].clone();
        let client = first.client.clone();
        workers.push(tokio::spawn(async move {
            let mut served = 0u32;
            while started.elapsed() < run_for {
                let response = client
                    .get(format!("{address}/api/GetLatestRun"))
                    .send()
                    .await
                    .expect("get");
                assert_eq!(response.status(), 200);
                served += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            served
        }));
    }
    let mut served = 0;
    for worker in workers {
        served += worker.await.expect("worker");
    }
    // The first round is a full pass, whose list ends with an empty page: one call more, not
    // one round more.
    let rounds = strava.calls().activities.saturating_sub(1);
    // Answers are stamped in whole seconds, so the first window may end up to a second early,
    // and the last requests may start one more round as the load stops: the windows the load
    // touches, plus that one. Two instances each running their own rounds would make twice as
    // many.
    let windows = run_for.as_secs() / 2 + 2;
    println!("{served} requests on two instances, {rounds} Strava rounds in {windows} windows");
    assert!(served > 100, "load was applied: {served}");
    assert!(rounds >= 2, "the answer was refreshed: {rounds}");
    assert!(
        rounds as u64 <= windows,
        "at most one round per window across instances: {rounds}"
    );
}

#[tokio::test]
async fn status_reports_the_cached_answer_and_rate_limits() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url());
    let app = connected_app(&strava, settings.clone()).await;
    assert_eq!(app.get_json("/api/GetLatestRun").await.0, 200);
    let (status, output) = support::app::run_handler_command(&settings, &["status"], "").await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains(&format!(
            "cached answer: activity {SAMPLE_RUN_ID}, fetched 0 min ago"
        )),
        "{output}"
    );
    assert!(output.contains("/100 this quarter hour"), "{output}");
    for secret in strava.all_secrets() {
        assert!(!output.contains(&secret), "a secret leaked: {output}");
    }
}

/// The athlete's year, with Strava's stats endpoint answering zeros (as it has for many
/// athletes since late 2024): this year's public runs, and only those.
fn a_year_of_runs(now: i64) -> (Vec<Value>, f64, i64) {
    let (_, year_start) = activities::this_year(now);
    // Spread over the year so far (never in the future, whatever the date).
    let at = |fraction: f64| year_start + ((now - year_start) as f64 * fraction) as i64;
    let public = [
        activities::run(20_000_000_001, "January run", at(0.1), 5_000.5),
        activities::run(20_000_000_002, "Spring trail", at(0.5), 12_000.25),
        activities::run(20_000_000_003, "Latest run", at(0.9), 8_000.0),
    ];
    let total: f64 = 5_000.5 + 12_000.25 + 8_000.0;
    let excluded = [
        activities::only_me(activities::run(
            20_000_000_004,
            "Only me",
            at(0.95),
            30_000.0,
        )),
        activities::with(
            activities::run(20_000_000_005, "A ride", at(0.92), 40_000.0),
            |a| {
                a["type"] = json!("Ride");
                a["sport_type"] = json!("GravelRide");
            },
        ),
        activities::with(
            activities::run(20_000_000_006, "Followers", at(0.7), 7_000.0),
            |a| a["visibility"] = json!("followers_only"),
        ),
        activities::run(
            20_000_000_007,
            "Last year",
            year_start - 10 * 86_400,
            21_097.5,
        ),
    ];
    let list = public.into_iter().chain(excluded).collect();
    (list, total, 20_000_000_003)
}

#[tokio::test]
async fn the_year_total_is_this_years_public_runs_whatever_stravas_stats_say() {
    let strava = FakeStrava::start().await;
    strava.set_stats(json!({"ytd_run_totals": {"count": 0, "distance": 0, "moving_time": 0, "elapsed_time": 0, "elevation_gain": 0}}));
    let (list, total, latest) = a_year_of_runs(support::now());
    strava.set_activities(list);
    let app = connected_app(&strava, TestSettings::new(&strava.base_url())).await;
    let (status, run) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        run["id"],
        json!(latest),
        "the only-me run and the ride are newer: {run}"
    );
    assert_eq!(
        run["year_to_date_run_total_distance"].as_f64(),
        Some(total),
        "{run}"
    );
    let calls = strava.calls();
    assert_eq!(calls.stats, 0, "{calls:?}");
    assert_eq!(
        calls.activities, 2,
        "one page fills the year, an empty one ends the list: {calls:?}"
    );
    // The index holds the three public runs of this year, and nothing private.
    let index = app
        .store
        .load_runs(activities::this_year(support::now()).0)
        .await
        .expect("index");
    let mut ids: Vec<i64> = index.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![20_000_000_001, 20_000_000_002, 20_000_000_003]);
}

#[tokio::test]
async fn a_clock_jump_to_the_first_of_january_starts_a_new_year_total() {
    let strava = FakeStrava::start().await;
    let (list, total, latest) = a_year_of_runs(support::now());
    strava.set_activities(list);
    let clock = Clock::system();
    let settings = TestSettings::new(&strava.base_url()).with("WIDGET_CACHE_SECONDS", "600");
    let app = TestApp::spawn_with_clock(settings, clock.clone()).await;
    connect(&app, &strava).await;
    let (_, run) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(run["year_to_date_run_total_distance"].as_f64(), Some(total));

    // Ten minutes into the athlete's 1 January: a new year, and nothing run in it yet.
    let (year, year_start) = activities::this_year(clock.now());
    let (next_year, next_year_start) = activities::this_year(year_start + 400 * 86_400);
    assert_eq!(next_year, year + 1);
    clock.jump(next_year_start + 600 - clock.now());
    let (_, run) = app
        .poll_json("/api/GetLatestRun", Duration::from_secs(30), |_, run| {
            run["year_to_date_run_total_distance"].as_f64() == Some(0.0)
        })
        .await;
    assert_eq!(
        run["year_to_date_run_total_distance"].as_f64(),
        Some(0.0),
        "{run}"
    );
    assert_eq!(
        run["id"],
        json!(latest),
        "last year's run is still the latest: {run}"
    );
}

#[tokio::test]
async fn a_run_made_private_without_an_event_leaves_within_one_window() {
    let strava = FakeStrava::start().await;
    let app = one_second_window_app(&strava).await;
    let (_, run) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(run["id"], SAMPLE_RUN_ID);
    // An `activity:read` token is sent no privacy event: only the list tells.
    assert!(strava.update_activity(SAMPLE_RUN_ID, |a| {
        a["visibility"] = json!("only_me");
        a["private"] = json!(true);
    }));
    let (_, run) = app
        .poll_json("/api/GetLatestRun", Duration::from_secs(15), |_, run| {
            run["id"] != SAMPLE_RUN_ID
        })
        .await;
    assert_eq!(run["id"], 16110453318_i64, "the next public run: {run}");
}

#[tokio::test]
async fn hand_made_credentials_gain_the_athlete_id_from_the_first_round() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn(TestSettings::new(&strava.base_url())).await;
    app.store
        .replace_credentials(&support::credentials::hand_made(&strava.refresh_token()))
        .await
        .expect("arrange");
    let (status, _) = app.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200);
    let stored = app
        .store
        .load_credentials()
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        stored.value.athlete_id,
        Some(support::fake_strava::ATHLETE_ID)
    );
    assert_eq!(
        strava.calls().athlete,
        0,
        "learnt from the list: {:?}",
        strava.calls()
    );
}

#[tokio::test]
async fn the_running_year_adds_up_this_years_public_runs_with_no_strava_call_per_visit() {
    let strava = FakeStrava::start().await;
    let (list, total, _) = a_year_of_runs(support::now());
    strava.set_activities(list);
    let app = connected_app(&strava, TestSettings::new(&strava.base_url())).await;
    let response = app.get("/api/GetRunningYear").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body");
    let year = json(&body);
    let (this_year, _) = activities::this_year(support::now());
    assert_eq!(year["version"], 1);
    assert_eq!(year["year"], this_year);
    assert_eq!(year["totals"]["count"], 3, "{year}");
    assert_eq!(year["totals"]["distance"].as_f64(), Some(total));
    let sum = |list: &Value, key: &str| -> f64 {
        list.as_array()
            .expect("array")
            .iter()
            .map(|e| e[key].as_f64().expect("number"))
            .sum()
    };
    assert_eq!(sum(&year["days"], "distance"), total, "days add up");
    assert_eq!(sum(&year["weeks"], "distance"), total, "weeks add up");
    assert_eq!(sum(&year["weeks"], "count"), 3.0);
    assert_eq!(year["longest_run"]["id"], 20_000_000_002_i64);
    assert_eq!(year["stale"], false);
    assert_private_data_absent(&String::from_utf8_lossy(&body), &strava);
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(headers["access-control-allow-origin"], "*");
    let etag = headers["etag"].to_str().expect("ascii").to_owned();

    // Visitors cost no Strava call, and the answer comes from memory (same ETag, 304).
    let calls = strava.calls().api_total();
    for _ in 0..50 {
        assert_eq!(app.get("/api/GetRunningYear").await.status(), 200);
    }
    let not_modified = app
        .client
        .get(format!("{}/api/GetRunningYear", app.address))
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("get");
    assert_eq!(not_modified.status(), 304);
    assert_eq!(strava.calls().api_total(), calls, "{:?}", strava.calls());

    // The invocation form answers the same bytes.
    let invoked = app
        .invoke(
            "GetRunningYear",
            fixture("http-invocation-request.json").replace("GetLatestRun", "GetRunningYear"),
        )
        .await;
    let envelope = json(&invoked.bytes().await.expect("body"));
    assert_eq!(envelope["Outputs"]["res"]["statusCode"], 200);
    assert_eq!(
        envelope["Outputs"]["res"]["body"]
            .as_str()
            .map(str::as_bytes),
        Some(&body[..])
    );

    // Last year: its one public run. Earlier years are not indexed; a bad year is a 400.
    let (status, last) = app
        .get_json(&format!("/api/GetRunningYear?year={}", this_year - 1))
        .await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(last["totals"]["count"], 1, "{last}");
    let (status, error) = app
        .get_json(&format!("/api/GetRunningYear?year={}", this_year - 5))
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (404, Some("year_not_indexed"))
    );
    let (status, error) = app.get_json("/api/GetRunningYear?year=soon").await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("bad_request"))
    );
}

#[tokio::test]
async fn the_running_year_of_an_unconnected_app_is_the_same_error_as_the_latest_run() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn(TestSettings::new(&strava.base_url())).await;
    let (status, error) = app.get_json("/api/GetRunningYear").await;
    assert_eq!(
        (status, error["error"].as_str()),
        (503, Some("not_configured"))
    );
}
