//! Push events about one activity, coalesced: a burst of edits to one run (each with its own
//! event time, so nothing treats them as copies) costs one Strava read per two seconds of the
//! burst, plus one, and the widget shows the last edit within five seconds of its event, on one
//! instance and when the events are split over two instances on one table.

use crate::support;

use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use strava_latest_run::clock::Clock;
use support::activities;
use support::app::{TestApp, TestSettings};
use support::fake_strava::FakeStrava;

const VERIFY_TOKEN: &str = "coalescing-verify-51d0";
/// This morning's run, the latest: the one renamed.
const RUN_ID: i64 = 16200000001;
/// The edits in the burst, and the time between two of them (about 2.5 s in all).
const EDITS: u32 = 50;
const EDIT_SPACING: Duration = Duration::from_millis(50);

/// The fake Strava's settings for an app, with this morning's run added at Strava.
fn settings(strava: &FakeStrava) -> TestSettings {
    let now = support::now();
    strava.add_activity(activities::run(
        RUN_ID,
        "Morning run",
        now - 3_600,
        10_000.0,
    ));
    TestSettings::new(&strava.base_url())
        .with("STRAVA_WEBHOOK_VERIFY_TOKEN", VERIFY_TOKEN)
        .with("WIDGET_CACHE_SECONDS", "600")
}

/// The edit number `n`'s name.
fn edit(n: u32) -> String {
    format!("Edit {n} of the morning run")
}

/// Renames this morning's run [`EDITS`] times at Strava, [`EDIT_SPACING`] apart, each rename's
/// event delivered at once to the next of `instances` in turn (the deliveries overlap: each is
/// answered after a second). Checks the Strava reads it cost and that every instance shows the
/// last name within 5 s of its event.
async fn a_burst_of_edits(strava: &FakeStrava, instances: &[&TestApp]) {
    for app in instances {
        let (_, run) = app
            .poll_json("/api/GetLatestRun", Duration::from_secs(10), |s, r| {
                s == 200 && r["id"] == json!(RUN_ID)
            })
            .await;
        assert_eq!(run["id"], json!(RUN_ID), "{run}");
    }
    // Strava's answers take a realistic tenth of a second.
    strava.set_detail_latency(Duration::from_millis(100));
    let before = strava.calls().activity_detail;
    let first_event_time = support::now();
    let started = Instant::now();
    let sent_at: Vec<Instant> = join_all((0..EDITS).map(|n| async move {
        tokio::time::sleep_until((started + EDIT_SPACING * n).into()).await;
        let name = edit(n);
        assert!(strava.update_activity(RUN_ID, |a| a["name"] = json!(name)));
        let mut event: Value = strava.event("activity", RUN_ID, "update", json!({ "title": name }));
        event["event_time"] = json!(first_event_time + i64::from(n));
        let app = instances[n as usize % instances.len()];
        let callback = strava.callback_at(&app.address);
        let sent = Instant::now();
        let delivery = strava.deliver_event_to(&callback, &event).await;
        assert!(delivery.acknowledged, "edit {n}: {delivery:?}");
        sent
    }))
    .await;
    let last_sent = sent_at.iter().max().copied().expect("events");
    let duration = last_sent - started;

    let last = edit(EDITS - 1);
    let mut late = Vec::new();
    for (i, app) in instances.iter().enumerate() {
        let left = Duration::from_secs(5).saturating_sub(last_sent.elapsed());
        let (_, run) = app
            .poll_json("/api/GetLatestRun", left, |_, r| r["name"] == json!(last))
            .await;
        if run["name"] != json!(last) {
            late.push(format!("instance {i} shows {}", run["name"]));
        }
    }
    // Any read still to come is counted too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reads = strava.calls().activity_detail - before;
    let allowed = (duration.as_secs_f64() / 2.0).ceil() as u32 + 1;
    assert!(
        reads <= allowed && late.is_empty(),
        "{EDITS} events over {duration:?} cost {reads} reads (at most {allowed}); \
         the last edit not shown within 5 s of its event: {late:?}"
    );
}

#[tokio::test]
async fn fifty_edits_of_one_run_to_one_instance_cost_a_read_per_two_seconds() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn_subscribed(&strava, settings(&strava), Clock::system()).await;
    a_burst_of_edits(&strava, &[&app]).await;
}

#[tokio::test]
async fn fifty_edits_of_one_run_split_over_two_instances_cost_a_read_per_two_seconds() {
    let strava = FakeStrava::start().await;
    let a = TestApp::spawn_subscribed(&strava, settings(&strava), Clock::system()).await;
    let b = TestApp::spawn(a.settings.clone()).await;
    a_burst_of_edits(&strava, &[&a, &b]).await;
}
