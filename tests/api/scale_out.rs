//! The activity index under scale-out: two (or three) instances on one table, with a fake Strava
//! whose answers arrive seconds after they were read, so that a round's list taken before a
//! change at Strava is delivered after that change's event was applied on another instance.
//! Single-instance tests cannot see these races: each test here names the one it pins.

use crate::support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use strava_latest_run::clock::Clock;
use support::activities;
use support::app::{TestApp, TestSettings};
use support::fake_strava::{FakeStrava, ATHLETE_ID};
use support::storage_proxy::{StorageProxy, WriteFate};

const VERIFY_TOKEN: &str = "scale-out-verify-7c1e";
/// How long a list answer takes to arrive after the list was read.
const SLOW_LIST: Duration = Duration::from_secs(3);

fn settings(strava: &FakeStrava, cache_seconds: u32) -> TestSettings {
    TestSettings::new(&strava.base_url())
        .with("STRAVA_WEBHOOK_VERIFY_TOKEN", VERIFY_TOKEN)
        .with("WIDGET_CACHE_SECONDS", cache_seconds.to_string())
}

/// Two connected instances on one table, subscribed at the fake with `handler subscribe`.
async fn two_instances(strava: &FakeStrava, settings: TestSettings) -> (TestApp, TestApp) {
    let a = TestApp::spawn_subscribed(strava, settings, Clock::system()).await;
    let b = TestApp::spawn(a.settings.clone()).await;
    (a, b)
}

/// Delivers `event` to `app`'s webhook, as Strava would.
async fn deliver(strava: &FakeStrava, app: &TestApp, event: &Value) {
    let callback = strava.callback_at(&app.address);
    let delivery = strava.deliver_event_to(&callback, event).await;
    assert!(delivery.acknowledged, "{delivery:?}");
}

/// A fake Strava whose one activity is the public run `id` ("Shown run"), started at
/// `start`, `meters` long.
async fn shown_run_at_strava(id: i64, start: i64, meters: f64) -> FakeStrava {
    let strava = FakeStrava::start().await;
    strava.set_activities(vec![activities::run(id, "Shown run", start, meters)]);
    strava
}

/// `count` public runs uploaded at Strava in the last hour, ids from 81 on.
fn upload_runs(strava: &FakeStrava, count: i64, now: i64) {
    for n in 0..count {
        strava.add_activity(activities::run(
            81 + n,
            "Upload",
            now - 3_600 + n * 10,
            1_000.0,
        ));
    }
}

/// The create events of [`upload_runs`]' runs, sent all at once, each to the next of `apps`.
async fn deliver_uploads(strava: &FakeStrava, apps: &[&TestApp], count: i64) {
    let deliveries = (0..count).map(|n| {
        let event = strava.event("activity", 81 + n, "create", json!({}));
        let target = apps[n as usize % apps.len()];
        async move { deliver(strava, target, &event).await }
    });
    futures_util::future::join_all(deliveries).await;
}

/// Polls `app`'s running year until it counts `runs`, for `seconds` at most; fails otherwise.
async fn year_counts_within(app: &TestApp, runs: i64, seconds: u64) {
    let (status, year) = app
        .poll_json(
            "/api/GetRunningYear",
            Duration::from_secs(seconds),
            |_, y| y["totals"]["count"] == json!(runs),
        )
        .await;
    assert_eq!(status, 200, "{year}");
    assert_eq!(year["totals"]["count"], json!(runs), "{}", year["totals"]);
}

/// Waits until the fake has received more list calls than `seen`; when it did.
async fn list_call_after(strava: &FakeStrava, seen: u32) -> Instant {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if strava.calls().activities > seen {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no list call came (still {seen})");
}

/// Polls `app`'s latest run until `shows` holds (at most `seconds`).
async fn latest_until(app: &TestApp, seconds: u64, shows: impl Fn(u16, &Value) -> bool) -> Value {
    let (status, run) = app
        .poll_json("/api/GetLatestRun", Duration::from_secs(seconds), |s, r| {
            shows(s, r)
        })
        .await;
    assert!(
        shows(status, &run),
        "not within {seconds} s: {status} {run}"
    );
    run
}

/// Both instances show run `id`; then, once the window has passed, instance B starts a round
/// whose list is read at once and arrives [`SLOW_LIST`] later: when it was read.
async fn slow_round_on_b(
    strava: &FakeStrava,
    a: &TestApp,
    b: &TestApp,
    id: i64,
    cache_seconds: u32,
) -> Instant {
    for app in [a, b] {
        latest_until(app, 10, |s, r| s == 200 && r["id"] == json!(id)).await;
    }
    strava.set_list_latency(SLOW_LIST);
    tokio::time::sleep(Duration::from_secs(u64::from(cache_seconds) + 1)).await;
    let seen = strava.calls().activities;
    let _ = b.get_json("/api/GetLatestRun").await;
    list_call_after(strava, seen).await
}

/// Reads every instance's latest run every 100 ms for `how_long`; the first answer that
/// `forbidden` calls wrong fails the test.
async fn never_during(
    instances: &[&TestApp],
    how_long: Duration,
    what: &str,
    forbidden: impl Fn(u16, &Value) -> bool,
) {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        for (n, app) in instances.iter().enumerate() {
            let (status, body) = app.get_json("/api/GetLatestRun").await;
            assert!(
                !forbidden(status, &body),
                "instance {n} serves {what}: {status} {body}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether an answer (status, body) is the one looked for.
type Verdict = fn(u16, &Value) -> bool;

/// What is changed at Strava while instance B's round waits for its list.
#[derive(Clone, Copy, Debug)]
enum Change {
    Delete,
    Rename,
    Upload,
}

/// Instance B starts a round whose list is slow; meanwhile the change happens at Strava and its
/// event reaches instance A, which applies it. When B's list (read before the change) arrives,
/// B's round must not undo the change on any instance.
async fn a_slow_round_on_one_instance_keeps_an_event_applied_on_the_other(change: Change) {
    let strava = FakeStrava::start().await;
    let now = support::now();
    let older = activities::run(31, "Older run", now - 2 * 86_400, 8_000.0);
    let shown = activities::run(32, "Shown run", now - 3_600, 10_000.0);
    strava.set_activities(vec![shown.clone(), older]);
    let cache_seconds = 6;
    let (a, b) = two_instances(&strava, settings(&strava, cache_seconds)).await;
    // B's round: its list is read now and arrives SLOW_LIST later.
    let listed = slow_round_on_b(&strava, &a, &b, 32, cache_seconds).await;

    // The change at Strava, and its event to A, while B's list is on its way.
    let (event, applied, undone): (Value, Verdict, Verdict) = match change {
        Change::Delete => {
            strava.remove_activity(32);
            (
                strava.event("activity", 32, "delete", json!({})),
                |s, r| s == 200 && r["id"] == json!(31),
                |_, r| r["id"] == json!(32),
            )
        }
        Change::Rename => {
            assert!(strava.update_activity(32, |a| a["name"] = json!("Renamed run")));
            (
                strava.event("activity", 32, "update", json!({"title": "Renamed run"})),
                |s, r| s == 200 && r["name"] == "Renamed run",
                |_, r| r["name"] == "Shown run",
            )
        }
        Change::Upload => {
            strava.add_activity(activities::run(33, "New upload", now - 600, 5_000.0));
            (
                strava.event("activity", 33, "create", json!({})),
                |s, r| s == 200 && r["id"] == json!(33),
                |_, r| r["id"] != json!(33),
            )
        }
    };
    deliver(&strava, &a, &event).await;
    latest_until(&a, 5, applied).await;

    // B's list arrives (read before the change) and its round ends; until the next round is
    // due, every instance must still show the change.
    let round_over = listed + SLOW_LIST + Duration::from_millis(700);
    tokio::time::sleep(round_over.saturating_duration_since(Instant::now())).await;
    let next_round_due = listed + Duration::from_secs(u64::from(cache_seconds));
    never_during(
        &[&a, &b],
        next_round_due.saturating_duration_since(Instant::now()),
        &format!("what the {change:?} undid"),
        undone,
    )
    .await;
}

#[tokio::test]
async fn a_slow_round_does_not_bring_back_a_run_deleted_through_another_instance() {
    a_slow_round_on_one_instance_keeps_an_event_applied_on_the_other(Change::Delete).await;
}

#[tokio::test]
async fn a_slow_round_does_not_bring_back_the_old_name_of_a_run_renamed_through_another_instance() {
    a_slow_round_on_one_instance_keeps_an_event_applied_on_the_other(Change::Rename).await;
}

#[tokio::test]
async fn a_slow_round_does_not_remove_a_new_upload_applied_through_another_instance() {
    a_slow_round_on_one_instance_keeps_an_event_applied_on_the_other(Change::Upload).await;
}

#[tokio::test]
async fn a_create_read_slowly_on_one_instance_and_its_delete_on_another_leave_nothing_shown() {
    let now = support::now();
    let strava = shown_run_at_strava(41, now - 3_600, 10_000.0).await;
    strava.set_list_latency(Duration::from_secs(1));
    let (a, b) = two_instances(&strava, settings(&strava, 600)).await;
    latest_until(&a, 10, |s, r| s == 200 && r["id"] == json!(41)).await;
    latest_until(&b, 10, |s, r| s == 200 && r["id"] == json!(41)).await;

    // The upload's create reaches A, whose read of it is slow; its delete reaches B meanwhile.
    strava.set_detail_latency(SLOW_LIST);
    strava.add_activity(activities::run(
        42,
        "Uploaded by mistake",
        now - 60,
        3_000.0,
    ));
    let reads = strava.calls().activity_detail;
    deliver(
        &strava,
        &a,
        &strava.event("activity", 42, "create", json!({})),
    )
    .await;
    let until = Instant::now() + Duration::from_secs(10);
    while strava.calls().activity_detail == reads && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(strava.calls().activity_detail > reads, "A read the upload");
    let read_at = Instant::now();
    strava.remove_activity(42);
    deliver(
        &strava,
        &b,
        &strava.event("activity", 42, "delete", json!({})),
    )
    .await;

    // A's read (taken before the delete) arrives; the deleted upload must stay off.
    let read_over = read_at + SLOW_LIST + Duration::from_millis(500);
    tokio::time::sleep(read_over.saturating_duration_since(Instant::now())).await;
    never_during(
        &[&a, &b],
        Duration::from_secs(6),
        "the deleted upload",
        |_, r| r["id"] == json!(42),
    )
    .await;
}

#[tokio::test]
async fn a_run_older_than_the_newest_page_made_only_you_leaves_the_widget_at_the_next_round() {
    let strava = FakeStrava::start().await;
    let now = support::now();
    // The owner's latest run, then 60 rides: the round's one page of 60 never reaches the run.
    let mut list = vec![
        activities::run(51, "Latest run", now - 3 * 86_400, 10_000.0),
        activities::run(50, "Earlier run", now - 6 * 86_400, 7_000.0),
    ];
    for n in 0..60 {
        list.push(activities::with(
            activities::run(1_000 + n, "Ride", now - 2 * 86_400 + n * 600, 30_000.0),
            |a| {
                a["sport_type"] = json!("Ride");
                a["type"] = json!("Ride");
            },
        ));
    }
    strava.set_activities(list);
    strava.set_list_latency(Duration::from_secs(1));
    let cache_seconds = 4;
    let (a, b) = two_instances(&strava, settings(&strava, cache_seconds)).await;
    latest_until(&a, 15, |s, r| s == 200 && r["id"] == json!(51)).await;

    // Made "Only you": an `activity:read` token gets no event for it.
    assert!(strava.update_activity(51, |a| {
        a["visibility"] = json!("only_me");
        a["private"] = json!(true);
    }));
    tokio::time::sleep(Duration::from_secs(u64::from(cache_seconds) + 1)).await;
    for app in [&a, &b] {
        latest_until(app, 15, |s, r| s == 200 && r["id"] == json!(50)).await;
    }
}

#[tokio::test]
async fn last_year_is_served_in_full_or_not_at_all() {
    let strava = FakeStrava::start().await;
    let now = support::now();
    let (this_year, this_year_start) = activities::this_year(now);
    let (_, last_year_start) = activities::this_year(this_year_start - 86_400);
    let mut list = Vec::new();
    // 30 runs this year, the newest an hour ago, one a day.
    for n in 0..30 {
        let start = (now - 3_600 - n * 86_400).max(this_year_start + 3_600 + n);
        list.push(activities::run(10_000 + n, "This year", start, 5_000.0));
    }
    // 250 runs last year, spread over it.
    let last_year_runs = 250;
    let spacing = (this_year_start - last_year_start) / (last_year_runs + 1);
    for n in 0..last_year_runs {
        let start = last_year_start + 3_600 + n * spacing;
        list.push(activities::run(20_000 + n, "Last year", start, 4_000.0));
    }
    strava.set_activities(list);
    strava.set_list_latency(Duration::from_secs(1));
    let (a, b) = two_instances(&strava, settings(&strava, 600)).await;
    latest_until(&a, 20, |s, _| s == 200).await;
    let path = format!("/api/GetRunningYear?year={}", this_year - 1);
    for app in [&a, &b] {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, year) = app.get_json(&path).await;
            match status {
                200 => {
                    assert_eq!(
                        year["totals"]["count"],
                        json!(last_year_runs),
                        "last year served partly: {}",
                        year["totals"]
                    );
                    assert_eq!(year["totals"]["distance"], json!(4_000.0 * 250.0));
                    break;
                }
                404 => assert_eq!(year["error"], "year_not_indexed", "{year}"),
                other => panic!("{other}: {year}"),
            }
            assert!(Instant::now() < until, "last year never served in full");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn a_deauthorization_during_another_instances_round_leaves_no_answer_anywhere() {
    let now = support::now();
    let strava = shown_run_at_strava(61, now - 3_600, 10_000.0).await;
    let cache_seconds = 6;
    let (a, b) = two_instances(&strava, settings(&strava, cache_seconds)).await;
    // B's round: its list is read now and arrives SLOW_LIST later.
    let listed = slow_round_on_b(&strava, &a, &b, 61, cache_seconds).await;

    // The athlete revokes the app; the deauthorization reaches A, which confirms it.
    strava.revoke_all();
    let deauthorize = strava.event(
        "athlete",
        ATHLETE_ID,
        "update",
        json!({"authorized": "false"}),
    );
    deliver(&strava, &a, &deauthorize).await;
    latest_until(&a, 10, |s, r| s == 503 && r["error"] == "not_configured").await;

    // B's round ends after the wipe: no instance, nor one started later, serves the run.
    let round_over = listed + SLOW_LIST + Duration::from_millis(700);
    tokio::time::sleep(round_over.saturating_duration_since(Instant::now())).await;
    let c = TestApp::spawn(a.settings.clone()).await;
    never_during(
        &[&a, &b, &c],
        Duration::from_secs(3),
        "the revoked athlete's run",
        |s, _| s == 200,
    )
    .await;
}

#[tokio::test]
async fn a_short_page_is_not_the_end_of_stravas_list() {
    let strava = FakeStrava::start().await;
    let now = support::now();
    let (_, this_year_start) = activities::this_year(now);
    let runs: i64 = 45;
    let spacing = ((now - this_year_start) / (runs + 1)).min(86_400);
    let list = (0..runs)
        .map(|n| activities::run(70_000 + n, "Run", now - 3_600 - n * spacing, 5_000.0))
        .collect();
    strava.set_activities(list);
    let cache_seconds = 4;
    let (a, b) = two_instances(&strava, settings(&strava, cache_seconds)).await;
    let (status, year) = a.get_json("/api/GetRunningYear").await;
    assert_eq!(status, 200, "{year}");
    assert_eq!(year["totals"]["count"], json!(runs));

    // Strava answers a page of 30 where 60 were asked: that is not the end of the list.
    strava.set_page_cap(Some(30));
    let seen = strava.calls().activities;
    tokio::time::sleep(Duration::from_secs(u64::from(cache_seconds) + 1)).await;
    let _ = b.get_json("/api/GetLatestRun").await;
    list_call_after(&strava, seen).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for app in [&a, &b] {
        let (status, year) = app
            .poll_json("/api/GetRunningYear", Duration::from_secs(6), |_, y| {
                y["totals"]["count"] != json!(runs)
            })
            .await;
        assert_eq!(status, 200, "{year}");
        assert_eq!(
            year["totals"]["count"],
            json!(runs),
            "runs removed for a short page"
        );
    }
}

#[tokio::test]
async fn more_pending_events_than_the_table_keeps_bring_a_reconciliation_not_a_loss() {
    let now = support::now();
    let strava = shown_run_at_strava(80, now - 86_400, 5_000.0).await;
    let (a, b) = two_instances(&strava, settings(&strava, 600)).await;
    latest_until(&a, 10, |s, r| s == 200 && r["id"] == json!(80)).await;

    // 70 uploads at once: more events than the table keeps pending, and far more than the
    // event budget reads at once (10, then one every 36 s).
    let uploads: i64 = 70;
    upload_runs(&strava, uploads, now);
    deliver_uploads(&strava, &[&a, &b], uploads).await;

    // Whatever did not fit is covered by a reconciliation at once, not by tomorrow's full pass.
    for app in [&a, &b] {
        year_counts_within(app, uploads + 1, 20).await;
    }
}

/// Events that arrive while an instance cannot write to its storage wait in its memory, as
/// many as the table's list keeps. Those that do not fit are lost to every instance unless the
/// batch written when storage recovers asks for a full pass, as the table's own list does when
/// it overflows.
#[tokio::test]
async fn more_events_than_fit_while_storage_is_down_bring_a_reconciliation_not_a_loss() {
    let now = support::now();
    let strava = shown_run_at_strava(80, now - 86_400, 5_000.0).await;
    let proxy = StorageProxy::start(support::azurite::Azurite::shared().port()).await;
    let behind_proxy = settings(&strava, 600).with(
        "AzureWebJobsStorage",
        support::azurite::connection_string_for_port(proxy.port()),
    );
    let a = TestApp::spawn_subscribed(&strava, behind_proxy, Clock::system()).await;
    latest_until(&a, 10, |s, r| s == 200 && r["id"] == json!(80)).await;

    // 70 uploads, their events sent while every write hangs (reads pass, so the callback
    // secret is checked): more events than A keeps for the table.
    proxy.later_writes(WriteFate::Hold);
    let uploads: i64 = 70;
    upload_runs(&strava, uploads, now);
    // The first upload's event first: its record is the write that hangs. The 70 after it
    // wait in memory; the first's id is among the 64 kept, so the table's own list, which
    // gets 64 ids, does not overflow: only the memory's does.
    deliver(
        &strava,
        &a,
        &strava.event("activity", 81, "create", json!({})),
    )
    .await;
    deliver_uploads(&strava, &[&a], uploads).await;
    assert!(proxy.held() > 0, "a write was held");
    // Storage recovers: the held writes fail (and are tried again), later ones pass.
    proxy.later_writes(WriteFate::Pass);
    proxy.release_held();

    // Covered by a reconciliation at once, not by tomorrow's full pass (the event budget alone
    // reads 10 at once, then one every 36 s).
    year_counts_within(&a, uploads + 1, 30).await;
}

#[tokio::test]
async fn a_full_pass_longer_than_the_lease_runs_once() {
    let strava = FakeStrava::start().await;
    let now = support::now();
    let (_, this_year_start) = activities::this_year(now);
    // 1,500 runs this year: a full pass of 8 pages of 200 (and the empty one).
    let runs: i64 = 1_500;
    let spacing = (now - 3_600 - this_year_start) / runs;
    strava.set_activities(
        (0..runs)
            .map(|n| activities::run(100_000 + n, "Run", now - 3_600 - n * spacing, 3_000.0))
            .collect(),
    );
    // Each page arrives 4.5 s after it was read: the pass outlasts the 30 s lease.
    strava.set_list_latency(Duration::from_millis(4_500));
    let (a, b) = two_instances(&strava, settings(&strava, 600)).await;
    let first = tokio::spawn({
        let client = a.client.clone();
        let url = format!("{}/api/GetLatestRun", a.address);
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    list_call_after(&strava, 0).await;
    // Instance B keeps asking while A's pass runs, and after its first 30 s.
    let until = Instant::now() + Duration::from_secs(45);
    while Instant::now() < until {
        let _ = b.get_json("/api/GetLatestRun").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = first.await;
    latest_until(&b, 60, |s, _| s == 200).await;
    let (_, year) = b.get_json("/api/GetRunningYear").await;
    assert_eq!(year["totals"]["count"], json!(runs), "{}", year["totals"]);
    let calls = strava.calls().activities;
    assert!(
        calls <= 9,
        "{calls} list calls: a second full pass ran while the first held its lease"
    );
}

#[tokio::test]
async fn at_new_year_an_instance_with_nothing_in_memory_judges_the_year_by_the_stored_offset() {
    use time::macros::datetime;
    // 23:30 UTC on New Year's Eve: already 00:30 on 1 January where the athlete runs (UTC+1).
    let new_years_night = datetime!(2026-12-31 23:30 UTC).unix_timestamp();
    let clock = Clock::skewed(new_years_night - support::now());
    let strava = FakeStrava::start().await;
    strava.set_activities(vec![
        // The first run of the athlete's new year, ten minutes after their midnight.
        activities::run(91, "New Year's run", new_years_night - 20 * 60, 5_000.0),
        activities::run(
            90,
            "Last run of the old year",
            new_years_night - 2 * 86_400,
            8_000.0,
        ),
    ]);
    let a = TestApp::spawn_subscribed(&strava, settings(&strava, 600), clock.clone()).await;
    latest_until(&a, 20, |s, r| s == 200 && r["id"] == json!(91)).await;

    // A new instance, with nothing in memory, gets the delete of the New Year's run.
    let b = TestApp::spawn_with_clock(a.settings.clone(), clock).await;
    strava.remove_activity(91);
    deliver(
        &strava,
        &b,
        &strava.event("activity", 91, "delete", json!({})),
    )
    .await;
    for app in [&a, &b] {
        latest_until(app, 10, |s, r| s == 200 && r["id"] == json!(90)).await;
    }
}
