//! The widget's view model: the `GetLatestRun` response (version 1), built for the activity
//! index's newest run from an allow-list of fields, so nothing else leaks, and the choice of a
//! run's photo among Strava's. Beside it, [`svg`] renders that response (or an error) as an SVG card, with its text fitted by
//! [`text_fit`], [`route_shape`] draws the route sketch behind a privacy zone, [`year`] builds the
//! running year's view and [`year_card`] draws it as a card, and [`assets`] holds the embedded
//! front end.

pub mod assets;
pub mod route_shape;
pub mod svg;
pub mod text_fit;
pub mod year;
pub mod year_card;

use crate::store::IndexedRun;
use crate::strava::models::{is_placeholder_url, DetailedActivity, Photo};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Every key a GetLatestRun answer may have, the allow-list the privacy tests hold
/// answers to; `route_shape` only with `WIDGET_ROUTE_SHAPE=true`.
pub const RESPONSE_KEYS: [&str; 19] = [
    "id",
    "name",
    "distance",
    "moving_time",
    "photoUrl",
    "year_to_date_run_total_distance",
    "sport_type",
    "start_date",
    "start_date_local",
    "timezone",
    "elapsed_time",
    "total_elevation_gain",
    "average_speed",
    "kudos_count",
    "pace_seconds_per_km",
    "strava_url",
    "fetched_at",
    "stale",
    "route_shape",
];

/// The GetLatestRun response body, version 1: an explicit allow-list, so nothing else
/// Strava sends can leak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestRunView {
    /// Strava's activity id.
    pub id: i64,
    /// The activity's title.
    pub name: String,
    /// Distance in metres.
    pub distance: f64,
    /// Moving time in seconds.
    pub moving_time: i64,
    /// The photo to show: never Strava's placeholder, only http(s).
    #[serde(rename = "photoUrl")]
    pub photo_url: Option<String>,
    /// Year-to-date running distance in metres (Everyone-visible runs only, as Strava counts).
    pub year_to_date_run_total_distance: f64,
    /// Strava's sport type (`Run`, `TrailRun`, `VirtualRun`, ...).
    pub sport_type: String,
    /// Start instant as RFC 3339 UTC, e.g. `2025-10-10T05:58:11Z`.
    pub start_date: String,
    /// The athlete's wall-clock start time, verbatim from Strava.
    pub start_date_local: Option<String>,
    /// Strava's time-zone label.
    pub timezone: Option<String>,
    /// Elapsed time in seconds.
    pub elapsed_time: i64,
    /// Elevation gain in metres.
    pub total_elevation_gain: Option<f64>,
    /// Average speed in m/s.
    pub average_speed: Option<f64>,
    /// Number of kudos.
    pub kudos_count: Option<i64>,
    /// Seconds per kilometre, rounded to 0.1 s; `None` without a positive distance and moving time.
    pub pace_seconds_per_km: Option<f64>,
    /// `https://www.strava.com/activities/{id}` (the "View on Strava" link).
    pub strava_url: String,
    /// When this answer was fetched from Strava, RFC 3339 UTC with seconds precision.
    pub fetched_at: String,
    /// True when Strava could not be reached and this is the last good answer.
    pub stale: bool,
    /// Only with `WIDGET_ROUTE_SHAPE=true` (else the key is left out): the route sketch as SVG
    /// path data in a 0–100 box ([`route_shape`]), or null when Strava has no polyline.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub route_shape: Option<Option<String>>,
}

/// A key that is there, null included, is `Some`; a missing one is `None` (by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl LatestRunView {
    /// Same run, marked stale (Strava unreachable; this is the last good answer).
    pub fn into_stale(self) -> LatestRunView {
        LatestRunView {
            stale: true,
            ..self
        }
    }
}

/// The photo URL: the detail's primary photo urls["600"], else its largest other size (keys are
/// sizes as strings; compare numerically); never a placeholder URL (is_placeholder_url) — if the
/// primary is a placeholder or absent, use the first real photo of `photos` (the /photos list,
/// same size rule, skipping placeholders and photos whose own placeholder flag is set); else None.
/// Only http(s) URLs, written in their normalised form.
pub fn choose_photo_url(detail: Option<&DetailedActivity>, photos: &[Photo]) -> Option<String> {
    let primary = detail
        .and_then(|detail| detail.photos.as_ref())
        .and_then(|summary| summary.primary.as_ref())
        // A primary with any placeholder URL is still processing (as `Photo::is_placeholder`).
        .filter(|primary| !primary.urls.values().any(|url| is_placeholder_url(url)))
        .and_then(|primary| best_url(&primary.urls));
    primary.or_else(|| {
        photos
            .iter()
            .filter(|photo| !photo.is_placeholder())
            .find_map(|photo| best_url(&photo.urls))
    })
}

/// The `"600"` URL, else the one with the largest numeric size key (non-numeric keys last),
/// considering only usable URLs.
fn best_url(urls: &HashMap<String, String>) -> Option<String> {
    if let Some(url) = urls.get("600").and_then(|url| usable_url(url)) {
        return Some(url);
    }
    urls.iter()
        .filter_map(|(key, url)| Some((key, usable_url(url)?)))
        .max_by(|(a, _), (b, _)| {
            let size = |key: &str| key.trim().parse::<u64>().ok();
            // Equal sizes fall back to the key text so the choice never depends on map order.
            size(a).cmp(&size(b)).then_with(|| b.cmp(a))
        })
        .map(|(_, url)| url)
}

/// An absolute http(s) URL with a host that is not Strava's placeholder image, in the URL's
/// normalised form: what a browser would load, written out (`http:6/a.jpg`, which browsers read
/// as `http://0.0.0.6/a.jpg`, is sent as the latter, so it reads as http(s) to anyone).
fn usable_url(url: &str) -> Option<String> {
    if is_placeholder_url(url) {
        return None;
    }
    let parsed = url::Url::parse(url).ok()?;
    (matches!(parsed.scheme(), "http" | "https")
        && parsed.host_str().is_some_and(|host| !host.is_empty())
        && !is_placeholder_url(parsed.as_str()))
    .then(|| parsed.into())
}

/// `2025-10-12T18:04:09Z`: UTC, seconds precision. `None` only for instants the format cannot
/// express.
fn format_utc_seconds(instant: OffsetDateTime) -> Option<String> {
    let utc = instant.to_offset(UtcOffset::UTC);
    utc.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .ok()
}

/// Seconds per kilometre rounded to 0.1 s; `None` without a positive distance and moving time.
fn pace_seconds_per_km(distance: f64, moving_time: i64) -> Option<f64> {
    if !(distance.is_finite() && distance > 0.0) || moving_time <= 0 {
        return None;
    }
    let pace = moving_time as f64 / (distance / 1000.0);
    let rounded = (pace * 10.0).round() / 10.0;
    rounded.is_finite().then_some(rounded)
}

/// JSON has no NaN or infinity; a non-finite number would serialize as `null` and break the
/// "number" contract, so it becomes 0.
fn finite_or_zero(value: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        0.0
    }
}

/// The response for `run`, the activity index's newest run, from the allow-list
/// [`LatestRunView`]: `year_distance` (metres) is the year-to-date total, `fetched_at` when the
/// answer was derived. The `route_shape` key is left out; with the sketch enabled the caller sets
/// it to the run's sketch (null when the run has none).
pub fn build_from_index(
    run: &IndexedRun,
    year_distance: f64,
    fetched_at: OffsetDateTime,
) -> LatestRunView {
    let distance = finite_or_zero(run.distance);
    LatestRunView {
        id: run.id,
        name: run.name.clone(),
        distance,
        moving_time: run.moving_time,
        photo_url: run.photo_url.as_deref().and_then(usable_url),
        year_to_date_run_total_distance: finite_or_zero(year_distance),
        sport_type: run.sport_type.clone(),
        start_date: OffsetDateTime::from_unix_timestamp(run.start)
            .ok()
            .and_then(format_utc_seconds)
            .unwrap_or_default(),
        start_date_local: run.start_date_local.clone(),
        timezone: run.timezone.clone(),
        elapsed_time: run.elapsed_time,
        total_elevation_gain: run.total_elevation_gain.filter(|n| n.is_finite()),
        average_speed: run.average_speed.filter(|n| n.is_finite()),
        kudos_count: run.kudos_count,
        pace_seconds_per_km: pace_seconds_per_km(distance, run.moving_time),
        strava_url: format!("https://www.strava.com/activities/{}", run.id),
        fetched_at: format_utc_seconds(fetched_at).unwrap_or_default(),
        stale: false,
        route_shape: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strava::models::SummaryActivity;
    use serde_json::{json, Value};
    use std::collections::BTreeSet;
    use time::macros::datetime;

    const ACTIVITIES: &str = include_str!("../../tests/data/strava/athlete-activities.json");
    const DETAIL: &str = include_str!("../../tests/data/strava/activity-detail-run.json");
    const PHOTOS: &str = include_str!("../../tests/data/strava/activity-photos.json");

    const PLACEHOLDER: &str =
        "https://d3nn82uaxijpm6.cloudfront.net/assets/media/placeholder-photo@4x-d0b3.png";

    fn sample(text: &str) -> Value {
        serde_json::from_str(text).expect("sample is JSON")
    }

    fn decode<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).expect("decodes")
    }

    fn activities() -> Vec<SummaryActivity> {
        serde_json::from_str(ACTIVITIES).expect("decodes")
    }

    fn detail() -> DetailedActivity {
        serde_json::from_str(DETAIL).expect("decodes")
    }

    fn photos() -> Vec<Photo> {
        serde_json::from_str(PHOTOS).expect("decodes")
    }

    /// The sample's public run with photos (its newest public run, the detail's) as the activity
    /// index holds it, its photo looked up.
    fn indexed_sample() -> IndexedRun {
        let activity = activities()
            .into_iter()
            .find(|a| a.id == detail().summary.id)
            .expect("the sample run");
        IndexedRun {
            id: activity.id,
            name: activity.name,
            sport_type: "Run".into(),
            start: activity.start_date.expect("a start").unix_timestamp(),
            start_date_local: activity.start_date_local,
            timezone: activity.timezone,
            distance: activity.distance,
            moving_time: activity.moving_time,
            elapsed_time: activity.elapsed_time,
            total_elevation_gain: activity.total_elevation_gain,
            average_speed: activity.average_speed,
            kudos_count: activity.kudos_count,
            photo_count: activity.total_photo_count.expect("a photo count"),
            photo_url: choose_photo_url(Some(&detail()), &photos()),
            photo_checked: true,
            route_shape: None,
            hidden: false,
            word: 0,
        }
    }

    fn built_sample() -> LatestRunView {
        build_from_index(
            &indexed_sample(),
            1654210.0,
            datetime!(2025-10-12 18:04:09.123456 UTC),
        )
    }

    #[test]
    fn photo_is_the_primary_600_url() {
        let detail = detail();
        let expected = detail
            .photos
            .as_ref()
            .and_then(|p| p.primary.as_ref())
            .map(|p| p.urls["600"].clone());
        assert!(expected
            .as_deref()
            .is_some_and(|u| u.ends_with("-768x576.jpg")));
        assert_eq!(choose_photo_url(Some(&detail), &photos()), expected);
        assert_eq!(choose_photo_url(Some(&detail), &[]), expected);
    }

    #[test]
    fn photo_urls_are_sent_normalised() {
        // Found by fuzzing: `http:6/x/a.jpg` parses (browsers load http://0.0.0.6/x/a.jpg) but
        // did not read as an http(s) URL in the answer.
        let list: Vec<Photo> = decode(json!([
            {"urls": {"600": "http:6/x/a.jpg"}},
            {"urls": {"600": "https://example.org/b.jpg"}}
        ]));
        assert_eq!(
            choose_photo_url(None, &list),
            Some("http://0.0.0.6/x/a.jpg".to_owned())
        );
        let odd: Vec<Photo> = decode(json!([{"urls": {"600": "HTTPS://Example.ORG/a b.jpg"}}]));
        assert_eq!(
            choose_photo_url(None, &odd),
            Some("https://example.org/a%20b.jpg".to_owned())
        );
    }

    #[test]
    fn null_primary_falls_back_to_the_first_real_photo() {
        let mut value = sample(DETAIL);
        value["photos"] = json!({"primary": null, "count": 3});
        let detail: DetailedActivity = decode(value);
        let list = photos();
        assert_eq!(
            choose_photo_url(Some(&detail), &list),
            Some(list[0].urls["600"].clone())
        );
        assert_eq!(
            choose_photo_url(None, &list),
            Some(list[0].urls["600"].clone())
        );
        assert_eq!(choose_photo_url(Some(&detail), &[]), None);
    }

    #[test]
    fn placeholder_primary_falls_back_to_the_next_real_photo() {
        let mut value = sample(DETAIL);
        value["photos"]["primary"]["urls"]["600"] = json!(PLACEHOLDER);
        let detail: DetailedActivity = decode(value);
        let mut photos_value = sample(PHOTOS);
        // The list's first photo is the same still-processing one.
        photos_value[0]["urls"]["600"] = json!(PLACEHOLDER);
        let list: Vec<Photo> = decode(photos_value.clone());
        assert_eq!(
            choose_photo_url(Some(&detail), &list),
            Some(list[1].urls["600"].clone())
        );
        // A photo flagged by `placeholder_image` is skipped even with a real-looking URL.
        photos_value[1]["placeholder_image"] = json!({"light_url": "https://x/light.png"});
        let list: Vec<Photo> = decode(photos_value);
        assert_eq!(
            choose_photo_url(Some(&detail), &list),
            Some(list[2].urls["600"].clone())
        );
    }

    #[test]
    fn all_placeholders_give_none() {
        let mut value = sample(DETAIL);
        value["photos"]["primary"]["urls"] = json!({"600": PLACEHOLDER, "100": PLACEHOLDER});
        let detail: DetailedActivity = decode(value);
        let mut photos_value = sample(PHOTOS);
        for photo in photos_value.as_array_mut().expect("array") {
            photo["urls"]["600"] = json!(PLACEHOLDER);
        }
        let list: Vec<Photo> = decode(photos_value);
        assert_eq!(choose_photo_url(Some(&detail), &list), None);
    }

    #[test]
    fn without_600_the_largest_size_wins() {
        let mut value = sample(DETAIL);
        value["photos"]["primary"]["urls"] = json!({
            "100": "https://example.com/100.jpg",
            "1800": "https://example.com/1800.jpg",
            "2000": "https://example.com/2000.jpg",
            "300": "https://example.com/300.jpg",
        });
        let detail: DetailedActivity = decode(value);
        assert_eq!(
            choose_photo_url(Some(&detail), &[]),
            Some("https://example.com/2000.jpg".into())
        );
        let mut photos_value = sample(PHOTOS);
        photos_value[0]["urls"] = json!({
            "0": "https://example.com/0.jpg",
            "1000": "https://example.com/1000.jpg",
            "90": "https://example.com/90.jpg",
        });
        let list: Vec<Photo> = decode(photos_value);
        assert_eq!(
            choose_photo_url(None, &list),
            Some("https://example.com/1000.jpg".into())
        );
    }

    #[test]
    fn only_http_urls_are_used() {
        let mut value = sample(DETAIL);
        value["photos"]["primary"]["urls"] = json!({
            "600": "javascript:alert(1)",
            "100": "https://example.com/100.jpg",
            "1000": "data:image/png;base64,AAAA",
        });
        let detail: DetailedActivity = decode(value);
        assert_eq!(
            choose_photo_url(Some(&detail), &[]),
            Some("https://example.com/100.jpg".into())
        );
        let mut value = sample(DETAIL);
        value["photos"]["primary"]["urls"] = json!({"600": "/relative.jpg"});
        let detail: DetailedActivity = decode(value);
        let list = photos();
        assert_eq!(
            choose_photo_url(Some(&detail), &list),
            Some(list[0].urls["600"].clone())
        );
    }

    #[test]
    fn builds_the_original_widget_fields() {
        let built = built_sample();
        let encoded = serde_json::to_value(&built).expect("encodes");
        let picked = activities()[2].clone();
        assert_eq!(encoded["id"], json!(16128930471_i64));
        assert_eq!(encoded["name"], json!(picked.name));
        assert_eq!(encoded["distance"], json!(picked.distance));
        assert_eq!(encoded["moving_time"], json!(picked.moving_time));
        assert_eq!(
            encoded["photoUrl"],
            json!(detail()
                .photos
                .and_then(|p| p.primary)
                .map(|p| p.urls["600"].clone()))
        );
        assert!(encoded["photoUrl"].is_string());
        assert_eq!(encoded["year_to_date_run_total_distance"], json!(1654210.0));
        assert_eq!(encoded["sport_type"], json!("Run"));
        assert_eq!(encoded["start_date"], json!("2025-10-10T05:58:11Z"));
        assert_eq!(encoded["start_date_local"], json!("2025-10-10T07:58:11Z"));
        assert_eq!(encoded["timezone"], json!("(GMT+01:00) Europe/Berlin"));
        assert_eq!(encoded["kudos_count"], json!(21));
        assert_eq!(encoded["stale"], json!(false));
    }

    #[test]
    fn the_json_has_exactly_the_documented_keys() {
        let encoded = serde_json::to_value(built_sample()).expect("encodes");
        let keys: BTreeSet<&str> = encoded
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        // Without a route sketch (off by default) the key is left out.
        let expected: BTreeSet<&str> = RESPONSE_KEYS
            .into_iter()
            .filter(|k| *k != "route_shape")
            .collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn the_json_carries_nothing_private() {
        let text = serde_json::to_string(&built_sample()).expect("encodes");
        for forbidden in [
            "start_latlng",
            "end_latlng",
            "map",
            "polyline",
            "summary_polyline",
            "athlete",
            "private",
            "visibility",
        ] {
            assert!(!text.contains(forbidden), "{forbidden} leaked: {text}");
        }
    }

    #[test]
    fn pace_is_seconds_per_km() {
        let mut run = indexed_sample();
        run.distance = 10_000.0;
        run.moving_time = 3000;
        let at = datetime!(2025-10-12 18:04:09 UTC);
        let built = build_from_index(&run, 0.0, at);
        assert_eq!(built.pace_seconds_per_km, Some(300.0));

        // 2851 s over 8412.3 m = 338.908... s/km.
        run.distance = 8412.3;
        run.moving_time = 2851;
        let built = build_from_index(&run, 0.0, at);
        assert_eq!(built.pace_seconds_per_km, Some(338.9));

        run.distance = 0.0;
        let built = build_from_index(&run, 0.0, at);
        assert_eq!(built.pace_seconds_per_km, None);
        let encoded = serde_json::to_value(&built).expect("encodes");
        assert_eq!(encoded["pace_seconds_per_km"], Value::Null);
    }

    #[test]
    fn absent_numbers_and_photo_are_null() {
        // A manual run: no speed, and no kudos or photo yet.
        let run = IndexedRun {
            average_speed: None,
            kudos_count: None,
            photo_url: None,
            ..indexed_sample()
        };
        let built = build_from_index(&run, 1000.0, datetime!(2025-10-13 07:00 UTC));
        assert_eq!(built.start_date, "2025-10-10T05:58:11Z");
        let encoded = serde_json::to_value(&built).expect("encodes");
        assert_eq!(encoded["average_speed"], Value::Null);
        assert_eq!(encoded["kudos_count"], Value::Null);
        assert_eq!(encoded["photoUrl"], Value::Null);
    }

    #[test]
    fn strava_url_and_fetched_at_formats() {
        let built = built_sample();
        assert_eq!(
            built.strava_url,
            "https://www.strava.com/activities/16128930471"
        );
        assert_eq!(built.fetched_at, "2025-10-12T18:04:09Z");
        assert!(built.fetched_at.ends_with('Z'));
        // Another offset is converted to UTC.
        let built = build_from_index(
            &indexed_sample(),
            0.0,
            datetime!(2025-10-12 20:04:09 +02:00),
        );
        assert_eq!(built.fetched_at, "2025-10-12T18:04:09Z");
    }

    #[test]
    fn non_finite_numbers_do_not_become_null() {
        let run = IndexedRun {
            distance: f64::NAN,
            total_elevation_gain: Some(f64::INFINITY),
            average_speed: Some(f64::NAN),
            photo_url: Some("ftp://example.com/x.jpg".into()),
            ..indexed_sample()
        };
        let built = build_from_index(&run, f64::NAN, datetime!(2025-10-12 18:04:09 UTC));
        assert_eq!(built.year_to_date_run_total_distance, 0.0);
        assert_eq!(built.distance, 0.0);
        assert_eq!(built.total_elevation_gain, None);
        assert_eq!(built.average_speed, None);
        assert_eq!(built.pace_seconds_per_km, None);
        assert_eq!(built.photo_url, None);
    }

    #[test]
    fn into_stale_marks_only_stale() {
        let fresh = built_sample();
        assert!(!fresh.stale);
        let stale = fresh.clone().into_stale();
        assert!(stale.stale);
        assert_eq!(
            LatestRunView {
                stale: false,
                ..stale
            },
            fresh
        );
    }

    #[test]
    fn the_route_shape_key_is_there_only_when_asked_for() {
        let plain = serde_json::to_value(built_sample()).expect("encodes");
        assert!(plain.get("route_shape").is_none());
        // With the sketch enabled the key holds the run's sketch, or null when it has none.
        let with = LatestRunView {
            route_shape: Some(Some("M10 90 L50 50 L90 10".into())),
            ..built_sample()
        };
        let encoded = serde_json::to_value(&with).expect("encodes");
        assert_eq!(encoded["route_shape"], json!("M10 90 L50 50 L90 10"));
        let without = LatestRunView {
            route_shape: Some(None),
            ..built_sample()
        };
        let encoded = serde_json::to_value(&without).expect("encodes");
        assert_eq!(encoded.get("route_shape"), Some(&Value::Null));
        for run in [with, without, built_sample()] {
            let text = serde_json::to_string(&run).expect("encodes");
            let back: LatestRunView = serde_json::from_str(&text).expect("decodes");
            assert_eq!(back, run);
        }
    }

    #[test]
    fn round_trips_through_json() {
        let built = built_sample();
        let text = serde_json::to_string(&built).expect("encodes");
        let back: LatestRunView = serde_json::from_str(&text).expect("decodes");
        assert_eq!(back, built);
    }
}
