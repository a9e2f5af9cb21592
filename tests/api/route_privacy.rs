//! The route sketch's privacy offset (`WIDGET_ROUTE_SHAPE=true`): made once per athlete from
//! the operating system's randomness, kept in the table, and the one every instance cuts its
//! sketches with, whichever instance made it.

use crate::support;

use serde_json::{json, Value};
use std::time::Duration;
use strava_latest_run::clock::Clock;
use strava_latest_run::view::route_shape::{route_shape, PrivacyOffset, PrivacyZone};
use support::app::{TestApp, TestSettings};
use support::fake_strava::FakeStrava;
use support::raw_table;

const VERIFY_TOKEN: &str = "route-privacy-verify-2b7e";
const SAMPLE_RUN_ID: i64 = 16128930471;
/// The privacy radius (the default setting).
const RADIUS_M: f64 = 500.0;

fn sample(name: &str) -> Value {
    let path = format!("{}/tests/data/strava/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("sample")).expect("json")
}

/// The offset the table keeps, if any.
async fn stored_offset(settings: &TestSettings) -> Option<PrivacyOffset> {
    let entity = raw_table::get(settings, "latest-run").await?;
    Some(PrivacyOffset {
        east_m: entity.get("PrivacyOffsetEast")?.as_f64()?,
        north_m: entity.get("PrivacyOffsetNorth")?.as_f64()?,
    })
}

#[tokio::test]
async fn two_instances_cut_the_same_sketch_with_the_one_offset_the_table_keeps() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url())
        .with("STRAVA_WEBHOOK_VERIFY_TOKEN", VERIFY_TOKEN)
        .with("WIDGET_CACHE_SECONDS", "600")
        .with("WIDGET_ROUTE_SHAPE", "true");
    let a = TestApp::spawn_subscribed(&strava, settings, Clock::system()).await;
    let b = TestApp::spawn(a.settings.clone()).await;
    assert!(
        stored_offset(&a.settings).await.is_none(),
        "none before a sketch"
    );

    // At once: instance A's first round cuts the run's sketch from Strava's list, and instance
    // B reads the run for a rename's event and cuts it from the detail. Both need the offset.
    let mut detail = sample("activity-detail-run.json");
    detail["name"] = json!("Renamed on B");
    strava.set_activity_detail(SAMPLE_RUN_ID, detail);
    let event = strava.event(
        "activity",
        SAMPLE_RUN_ID,
        "update",
        json!({"title": "Renamed on B"}),
    );
    let callback = strava.callback_at(&b.address);
    let ((status, on_a), delivery) = tokio::join!(
        a.get_json("/api/GetLatestRun"),
        strava.deliver_event_to(&callback, &event)
    );
    assert_eq!(status, 200, "{on_a}");
    assert!(delivery.acknowledged, "{delivery:?}");
    let (_, on_b) = b
        .poll_json("/api/GetLatestRun", Duration::from_secs(10), |_, r| {
            r["name"] == "Renamed on B"
        })
        .await;
    assert_eq!(on_b["name"], "Renamed on B", "{on_b}");
    let sketch = on_a["route_shape"].as_str().expect("a sketch on A");
    assert_eq!(on_b["route_shape"], json!(sketch), "B cut another sketch");

    // The offset is kept in the table, a quarter to half of the radius long, and it is the
    // one the sketch was cut with (the zone is keyed by the storage connection string).
    let offset = stored_offset(&a.settings).await.expect("a stored offset");
    let length = offset.east_m.hypot(offset.north_m);
    assert!(
        (RADIUS_M / 4.0..=RADIUS_M / 2.0).contains(&length),
        "{length} m"
    );
    let polyline = sample("athlete-activities.json")
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["id"] == json!(SAMPLE_RUN_ID))
        .and_then(|a| a["map"]["summary_polyline"].as_str().map(str::to_owned))
        .expect("polyline");
    let key = a
        .settings
        .get("AzureWebJobsStorage")
        .expect("connection string");
    let zone = PrivacyZone::new(RADIUS_M, key.as_bytes()).with_offset(offset);
    assert_eq!(
        route_shape(&polyline, SAMPLE_RUN_ID, &zone).as_deref(),
        Some(sketch),
        "the sketch is not cut with the stored offset"
    );

    // Restarted with another setting, an instance keeps the athlete's offset: nothing is made
    // again.
    let wider = TestApp::spawn(
        a.settings
            .clone()
            .with("WIDGET_ROUTE_PRIVACY_METERS", "2000"),
    )
    .await;
    let (status, run) = wider.get_json("/api/GetLatestRun").await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(stored_offset(&a.settings).await, Some(offset));
}
