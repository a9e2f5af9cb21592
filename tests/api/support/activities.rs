//! Activities for the fake Strava, dated where a test needs them (this year, last year, today),
//! in the shape of the sample run, each a public run of the connected athlete unless changed.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The athlete's offset from UTC in these activities (Berlin in winter).
pub const UTC_OFFSET: i64 = 3600;

fn sample_run() -> Value {
    let list: Vec<Value> =
        serde_json::from_str(include_str!("../../data/strava/athlete-activities.json"))
            .expect("sample");
    list.into_iter()
        .find(|a| a["id"] == json!(16128930471_i64))
        .expect("the sample run")
}

/// A public run, `id`, named `name`, started at `start` (Unix seconds), `distance` metres long,
/// with no photos (so showing it needs no photo lookup).
pub fn run(id: i64, name: &str, start: i64, distance: f64) -> Value {
    let at = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .expect("instant")
            .format(&Rfc3339)
            .expect("format")
    };
    let mut run = sample_run();
    run["id"] = json!(id);
    run["name"] = json!(name);
    run["start_date"] = json!(at(start));
    run["start_date_local"] = json!(at(start + UTC_OFFSET));
    run["timezone"] = json!("(GMT+01:00) Europe/Berlin");
    run["utc_offset"] = json!(UTC_OFFSET as f64);
    run["distance"] = json!(distance);
    run["moving_time"] = json!((distance / 3.0).round() as i64);
    run["elapsed_time"] = json!((distance / 2.9).round() as i64);
    run["map"]["id"] = json!(format!("a{id}"));
    run["total_photo_count"] = json!(0);
    run["photo_count"] = json!(0);
    run
}

/// `activity` changed by `change` (a builder for one-off variants).
pub fn with(mut activity: Value, change: impl FnOnce(&mut Value)) -> Value {
    change(&mut activity);
    activity
}

/// Made "Only you".
pub fn only_me(activity: Value) -> Value {
    with(activity, |a| {
        a["visibility"] = json!("only_me");
        a["private"] = json!(true);
    })
}

/// The athlete's local year now (by [`UTC_OFFSET`]), and the instant it began.
pub fn this_year(now: i64) -> (i32, i64) {
    let local = OffsetDateTime::from_unix_timestamp(now + UTC_OFFSET).expect("instant");
    let year = local.year();
    let start = time::Date::from_calendar_date(year, time::Month::January, 1)
        .expect("date")
        .midnight()
        .assume_utc()
        .unix_timestamp()
        - UTC_OFFSET;
    (year, start)
}
