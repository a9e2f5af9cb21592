//! Property tests (proptest) for the pieces with laws:
//! - the latest run the index answers with (an activity's index entry, the newest entry, the
//!   view built from it) is never a non-public activity or one of a sport type not configured,
//!   whatever the order, duplicates or missing fields, and is always the newest eligible one;
//! - the response built from an activity's index entry (JSON and SVG card, with and without the
//!   route sketch) never carries a coordinate, the polyline, a token or a secret that Strava's
//!   answer held, and has only the allow-listed keys;
//! - the route sketch never draws a point or a line within the privacy radius of the route's
//!   start or end (nor of home behind a bogus first fix of any length), whatever the offset of
//!   the zones' centres, in the sketch's own scale;
//! - ETag equality ⇔ body equality (`latest_run::etag_of`).
//!
//! Activities are generated as JSON objects and decoded as the client decodes them, so a missing
//! field is really missing. Case counts are modest (256) to keep the suite fast; proptest's
//! failure persistence is off, so the runs leave no files behind.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Map, Value};
use strava_latest_run::index::{newest, IndexSettings, IndexView, SketchZone};
use strava_latest_run::keeper::etag_of;
use strava_latest_run::store::IndexedRun;
use strava_latest_run::strava::Photo;
use strava_latest_run::strava::SummaryActivity;
use strava_latest_run::view::route_shape::{sketch, PrivacyOffset, PrivacyZone, Sketch};
use strava_latest_run::view::svg::{self, Theme, Units};
use strava_latest_run::view::{build_from_index, choose_photo_url, LatestRunView, RESPONSE_KEYS};
use time::OffsetDateTime;

const SPORT_TYPES: [&str; 3] = ["Run", "TrailRun", "VirtualRun"];

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

fn sport_types() -> Vec<String> {
    SPORT_TYPES.iter().map(|s| (*s).to_owned()).collect()
}

/// A field that may be missing (`None`), null, or one of `values`.
fn maybe(values: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(Value::Null)),
        6 => prop::sample::select(values).prop_map(Some),
    ]
}

/// One activity of the list, as Strava's JSON, with any field missing or odd.
fn activity_json() -> impl Strategy<Value = Value> {
    (
        0i64..6,
        maybe(
            [
                "Run",
                "TrailRun",
                "VirtualRun",
                "Ride",
                "Walk",
                "run",
                "",
                "Hike",
            ]
            .iter()
            .map(|s| json!(s))
            .collect(),
        ),
        maybe(
            ["Run", "Ride", "Walk", "VirtualRun"]
                .iter()
                .map(|s| json!(s))
                .collect(),
        ),
        maybe(vec![
            json!("everyone"),
            json!("followers_only"),
            json!("only_me"),
            json!("Everyone"),
            json!(true),
        ]),
        maybe(vec![json!(true), json!(false), json!("false"), json!(0)]),
        maybe(vec![
            json!("2025-10-10T05:58:11Z"),
            json!("2025-10-10T05:58:11Z"),
            json!("2025-10-11T07:00:00+02:00"),
            json!("2025-10-11T05:00:00Z"),
            json!("2024-01-01T00:00:00Z"),
            json!("yesterday"),
            json!(1_760_000_000),
        ]),
        (0u32..100_000).prop_map(|d| f64::from(d) / 10.0),
    )
        .prop_map(
            |(id, sport_type, activity_type, visibility, private, start_date, distance)| {
                let mut object = Map::new();
                object.insert("id".into(), json!(id));
                object.insert("name".into(), json!(format!("activity {id}")));
                object.insert("distance".into(), json!(distance));
                object.insert("moving_time".into(), json!(1800));
                for (key, value) in [
                    ("sport_type", sport_type),
                    ("type", activity_type),
                    ("visibility", visibility),
                    ("private", private),
                    ("start_date", start_date),
                ] {
                    if let Some(value) = value {
                        object.insert(key.into(), value);
                    }
                }
                Value::Object(object)
            },
        )
}

/// A list of activities with duplicates (the same object repeated) in any order.
fn activity_list() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(activity_json(), 0..10)
        .prop_flat_map(|list| {
            let len = list.len();
            let repeats = prop::collection::vec(0..len.max(1), 0..4);
            (Just(list), repeats)
        })
        .prop_flat_map(|(mut list, repeats)| {
            if !list.is_empty() {
                for i in repeats {
                    list.push(list[i].clone());
                }
            }
            Just(list).prop_shuffle()
        })
}

/// Decodes a list as the client does; an element the decoder refuses refuses the whole list, so
/// only decodable elements are generated (every one has an integer id).
fn decode(list: &[Value]) -> Vec<SummaryActivity> {
    serde_json::from_value(Value::Array(list.to_vec())).expect("the generated list decodes")
}

fn sport_of(activity: &SummaryActivity) -> Option<&str> {
    activity
        .sport_type
        .as_deref()
        .or(activity.activity_type.as_deref())
}

/// The index's settings: `sport_types`, and the route sketch's privacy zone when the sketch is
/// enabled (`WIDGET_ROUTE_SHAPE=true`).
fn index_settings(sport_types: Vec<String>, route_shape: bool) -> IndexSettings {
    IndexSettings {
        sport_types,
        route_shape: route_shape.then(|| SketchZone::known(PrivacyZone::new(500.0, b"properties"))),
    }
}

/// The answer served while the index holds `entries` (this year's), built as the latest-run
/// service builds it: the newest entry through the view's allow-list, with its route sketch
/// (null when it has none) exactly when the sketch is enabled; `None` without a run.
fn answer_of(entries: Vec<IndexedRun>, route_shape: bool) -> Option<LatestRunView> {
    let view = IndexView {
        year: 2025,
        latest: newest(&entries).cloned(),
        runs: entries,
    };
    let latest = view.latest.as_ref()?;
    let fetched_at = OffsetDateTime::from_unix_timestamp(1_760_292_249).expect("time");
    let mut run = build_from_index(latest, view.year_distance(), fetched_at);
    if route_shape {
        run.route_shape = Some(latest.route_shape.clone());
    }
    Some(run)
}

/// Whether `activity` is a public run of the `configured` sport types with a start: what the
/// index holds.
fn eligible(activity: &SummaryActivity, configured: &[String]) -> bool {
    activity.is_public()
        && sport_of(activity).is_some_and(|s| configured.iter().any(|c| c == s))
        && activity.start_date.is_some()
}

/// `WIDGET_SPORT_TYPES`: one or more names, among them one the lists never hold.
fn configured_sport_types() -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(vec!["Run", "TrailRun", "VirtualRun", "Walk", "Swim"], 1..=5)
        .prop_map(|names| names.into_iter().map(String::from).collect())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_pick_is_always_a_public_run_and_the_newest_one(
        list in activity_list(),
        configured in configured_sport_types(),
        route_shape in any::<bool>(),
    ) {
        let activities = decode(&list);
        let settings = index_settings(configured.clone(), route_shape);
        let indexed: Vec<(&SummaryActivity, IndexedRun)> = activities
            .iter()
            .filter_map(|a| Some((a, settings.entry_of(a, None)?)))
            .collect();
        let entries: Vec<IndexedRun> = indexed.iter().map(|(_, entry)| entry.clone()).collect();
        let expected = activities
            .iter()
            .filter(|a| eligible(a, &configured))
            .filter_map(|a| Some((a.start_date?.unix_timestamp(), a.id)))
            .max();
        let picked = newest(&entries);
        match picked {
            Some(picked) => {
                let at = entries
                    .iter()
                    .position(|entry| std::ptr::eq(entry, picked))
                    .expect("the pick is one of the entries");
                let source = indexed[at].0;
                prop_assert!(source.is_public(), "not public: {source:?}");
                prop_assert!(eligible(source, &configured), "not a configured run: {source:?}");
                prop_assert_eq!(Some(picked.sport_type.as_str()), sport_of(source));
                prop_assert_eq!(Some((picked.start, picked.id)), expected);
            }
            None => prop_assert_eq!(expected, None, "an eligible run was not indexed"),
        }
        // The answer is the pick's.
        let answer = answer_of(entries.clone(), route_shape);
        prop_assert_eq!(answer.as_ref().map(|run| run.id), picked.map(|run| run.id));
        if let Some(run) = &answer {
            prop_assert!(configured.contains(&run.sport_type), "{run:?}");
        }
        // The order does not matter: the reversed list picks the same (start, id).
        let reversed: Vec<IndexedRun> = activities
            .iter()
            .rev()
            .filter_map(|a| settings.entry_of(a, None))
            .collect();
        let again = newest(&reversed).map(|r| (r.start, r.id));
        prop_assert_eq!(again, picked.map(|r| (r.start, r.id)));
    }
}

/// A (lat, lon) pair with six decimals, far from any other number in the response.
fn coordinate() -> impl Strategy<Value = (f64, f64)> {
    (-80_000_000i64..80_000_000, -170_000_000i64..170_000_000).prop_map(|(lat, lon)| {
        (
            lat as f64 / 1_000_000.0 + 0.000_001_7,
            lon as f64 / 1_000_000.0 + 0.000_001_3,
        )
    })
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{24,40}"
}

/// A public run as Strava lists it, with everything the response must not carry: the map with
/// its polyline, start and end coordinates, tokens and a client secret beside the fields.
#[derive(Debug, Clone)]
struct Leaky {
    activity: Value,
    polyline: String,
    /// The route's points as Strava sent them, and as its polyline holds them (five decimals).
    coordinates: Vec<(f64, f64)>,
    secrets: Vec<String>,
}

/// How `number` reads to four decimals (about 10 m), truncated and rounded: a coordinate written
/// at any finer precision contains one of them.
fn four_decimals(number: f64) -> [String; 2] {
    let long = format!("{number:.8}");
    let cut = long.find('.').map_or(long.len(), |dot| dot + 5);
    [long[..cut].to_owned(), format!("{number:.4}")]
}

fn leaky_activity() -> impl Strategy<Value = Leaky> {
    (
        prop::collection::vec(coordinate(), 2..20),
        coordinate(),
        (token(), token(), token()),
        "[a-z ]{0,30}",
        prop::option::of(Just("https://dgtzuqphqg23d.cloudfront.net/abc-768x576.jpg")),
    )
        .prop_map(|(route, end, (access, refresh, secret), name, photo)| {
            let polyline = polyline::encode_coordinates(
                route
                    .iter()
                    .map(|(lat, lon)| geo_types::coord! { x: *lon, y: *lat }),
                5,
            )
            .expect("a route of valid coordinates encodes");
            let start = route[0];
            let activity = json!({
                "id": 42,
                "name": name,
                "sport_type": "Run",
                "visibility": "everyone",
                "private": false,
                "start_date": "2025-10-10T05:58:11Z",
                "distance": 10000.5,
                "moving_time": 3000,
                "elapsed_time": 3100,
                "total_elevation_gain": 12.5,
                "average_speed": 3.333,
                "start_latlng": [start.0, start.1],
                "end_latlng": [end.0, end.1],
                "map": {"id": "a42", "summary_polyline": polyline, "polyline": polyline},
                "athlete": {"id": 7, "access_token": access},
                "access_token": access,
                "refresh_token": refresh,
                "client_secret": secret,
                "photo": photo,
            });
            let mut coordinates = route;
            coordinates.push(end);
            let decoded = polyline::decode_polyline(&polyline, 5).expect("the polyline decodes");
            coordinates.extend(decoded.0.iter().map(|point| (point.y, point.x)));
            Leaky {
                activity,
                polyline,
                coordinates,
                secrets: vec![access, refresh, secret],
            }
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_response_never_carries_a_coordinate_polyline_token_or_secret(
        leaky in leaky_activity(),
        route_shape in any::<bool>(),
    ) {
        let activities = decode(std::slice::from_ref(&leaky.activity));
        let settings = index_settings(sport_types(), route_shape);
        let mut entry = settings.entry_of(&activities[0], None).expect("a public run is indexed");
        // Its photo, looked up as a round or an event looks it up.
        let photos: Vec<Photo> = match leaky.activity.get("photo").and_then(Value::as_str) {
            Some(url) => serde_json::from_value(json!([{"urls": {"600": url}}])).expect("photos"),
            None => Vec::new(),
        };
        entry.photo_url = choose_photo_url(None, &photos);
        entry.photo_checked = true;
        let run = answer_of(vec![entry], route_shape).expect("an answer");
        let body = serde_json::to_string(&run).expect("json");
        let card = svg::render(&run, Theme::Auto, Units::Metric);
        let json: Value = serde_json::from_str(&body).expect("json");
        for key in json.as_object().expect("an object").keys() {
            prop_assert!(RESPONSE_KEYS.contains(&key.as_str()), "unexpected key {key}");
        }
        for text in [&body, &card] {
            if leaky.polyline.len() >= 6 {
                prop_assert!(!text.contains(&leaky.polyline), "the polyline leaked: {text}");
            }
            for (lat, lon) in &leaky.coordinates {
                for number in [lat, lon] {
                    for shown in four_decimals(*number) {
                        prop_assert!(!text.contains(&shown), "coordinate {shown} leaked: {text}");
                    }
                }
            }
            for secret in &leaky.secrets {
                prop_assert!(!text.contains(secret.as_str()), "a token leaked: {text}");
            }
            for word in ["latlng", "polyline", "access_token", "refresh_token", "client_secret"] {
                prop_assert!(!text.contains(word), "{word} in {text}");
            }
        }
        let again: LatestRunView = serde_json::from_str(&body).expect("re-reads");
        prop_assert_eq!(again, run);
    }

    #[test]
    fn etags_are_equal_exactly_when_bodies_are(
        a in prop::collection::vec(any::<u8>(), 0..64),
        b in prop::collection::vec(any::<u8>(), 0..64),
        flip in any::<prop::sample::Index>(),
        same in any::<bool>(),
    ) {
        // Half the pairs share a body, some differ in one bit, the rest are unrelated.
        let b = if same {
            a.clone()
        } else if !a.is_empty() && b.len() % 2 == 0 {
            let mut near = a.clone();
            let i = flip.index(near.len());
            near[i] ^= 1;
            near
        } else {
            b
        };
        prop_assert_eq!(etag_of(&a) == etag_of(&b), a == b);
        let tag = etag_of(&a);
        prop_assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() > 2);
        prop_assert!(warp::http::HeaderValue::from_str(&tag).is_ok());
    }

    #[test]
    fn answers_have_equal_etags_exactly_when_their_bodies_are_equal(
        first in activity_list(),
        second in activity_list(),
        stale in any::<bool>(),
    ) {
        let settings = index_settings(sport_types(), false);
        let body = |list: &[Value]| {
            let activities = decode(list);
            let entries = activities.iter().filter_map(|a| settings.entry_of(a, None)).collect();
            answer_of(entries, false).map(|run| {
                let run = if stale { run.into_stale() } else { run };
                serde_json::to_vec(&run).expect("json")
            })
        };
        if let (Some(a), Some(b)) = (body(&first), body(&second)) {
            prop_assert_eq!(etag_of(&a) == etag_of(&b), a == b);
        }
    }
}

/// Metres per degree of latitude.
const PER_DEGREE: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;

/// A run as metres east and north of its first point: a random walk of steps of 20–600 m.
fn walk() -> impl Strategy<Value = Vec<(f64, f64)>> {
    prop::collection::vec((0.0..std::f64::consts::TAU, 20.0..600.0_f64), 3..90).prop_map(|steps| {
        let mut at = (0.0, 0.0);
        let mut points = vec![at];
        for (bearing, length) in steps {
            at = (at.0 + length * bearing.sin(), at.1 + length * bearing.cos());
            points.push(at);
        }
        points
    })
}

/// `points` (metres from `home`) as a polyline.
fn encode_around(home: (f64, f64), points: &[(f64, f64)]) -> String {
    let squeeze = home.0.to_radians().cos();
    polyline::encode_coordinates(
        points.iter().map(|(east, north)| {
            geo_types::coord! {
                x: home.1 + east / (PER_DEGREE * squeeze),
                y: home.0 + north / PER_DEGREE,
            }
        }),
        5,
    )
    .expect("encodes")
}

/// The nearest the drawn sketch comes to `place` (metres from `home`), in metres at the sketch's
/// own scale.
fn nearest_drawn(sketch: &Sketch, home: (f64, f64), place: (f64, f64)) -> f64 {
    let squeeze = home.0.to_radians().cos();
    let at = sketch.to_box(
        home.0 + place.1 / PER_DEGREE,
        home.1 + place.0 / (PER_DEGREE * squeeze),
    );
    let mut nearest = f64::MAX;
    for sub in sketch.path.split('M').filter(|s| !s.trim().is_empty()) {
        let points: Vec<(f64, f64)> = sub
            .split('L')
            .map(|pair| {
                let n: Vec<f64> = pair
                    .split_whitespace()
                    .map(|v| v.parse().expect("a number"))
                    .collect();
                assert_eq!(n.len(), 2, "{}", sketch.path);
                (n[0], n[1])
            })
            .collect();
        for i in 0..points.len() {
            let (a, b) = (points[i], points[(i + 1).min(points.len() - 1)]);
            let d = (b.0 - a.0, b.1 - a.1);
            let dd = d.0 * d.0 + d.1 * d.1;
            let t = if dd > 0.0 {
                (((at.0 - a.0) * d.0 + (at.1 - a.1) * d.1) / dd).clamp(0.0, 1.0)
            } else {
                0.0
            };
            nearest = nearest.min((at.0 - a.0 - t * d.0).hypot(at.1 - a.1 - t * d.1));
        }
    }
    nearest / sketch.units_per_metre()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_route_sketch_never_comes_within_the_privacy_radius_of_the_start_or_the_end(
        home in (-70.0..70.0_f64, -179.0..179.0_f64),
        run in walk(),
        jump in prop::option::of((0.0..std::f64::consts::TAU, 5.0..5000.0_f64)),
        radius in prop::sample::select(vec![200.0, 500.0, 800.0]),
        id in any::<i64>(),
        offset in (0.0..std::f64::consts::TAU, 0.25..=0.5_f64),
    ) {
        let mut points = run;
        // A bogus first fix near or far from home: home, the second point, is protected all the
        // same.
        if let Some((bearing, length)) = jump {
            points.insert(0, (length * bearing.sin(), length * bearing.cos()));
        }
        let (direction, fraction) = offset;
        let zone = PrivacyZone::new(radius, b"AccountName=x;AccountKey=secret").with_offset(
            PrivacyOffset {
                east_m: fraction * radius * direction.sin(),
                north_m: fraction * radius * direction.cos(),
            },
        );
        let Some(sketch) = sketch(&encode_around(home, &points), id, &zone) else {
            return Ok(());
        };
        // Rounding to a tenth of a box unit and to the polyline's 1e-5 degrees.
        let slack = 0.08 / sketch.units_per_metre() + 3.0;
        let mut protected = vec![points[0], points[points.len() - 1]];
        if jump.is_some() {
            protected.push(points[1]);
        }
        for place in protected {
            let gap = nearest_drawn(&sketch, home, place);
            prop_assert!(gap + slack >= radius, "{gap:.1} m from {place:?} (radius {radius}): {}", sketch.path);
        }
    }
}

/// Found by the property above: a bogus first fix about one radius from home (the keyed radius
/// of this activity just over the jump's length), so home lay just inside the first fix's circle
/// and a line was drawn 26 m from it.
#[test]
fn a_first_fix_just_within_the_radius_of_home_still_protects_home() {
    let home = (0.0, 0.0);
    let (bearing, length) = (4.339474785424906_f64, 1058.651576914348_f64);
    let points = vec![
        (length * bearing.sin(), length * bearing.cos()),
        (0.0, 0.0),
        (421.11958710010936, 82.87835173079846),
        (581.660576086846, 328.4348110654211),
        (961.455212111456, 641.2700146703526),
    ];
    let radius = 800.0;
    let zone = PrivacyZone::new(radius, b"AccountName=x;AccountKey=secret");
    let Some(sketch) = sketch(&encode_around(home, &points), -116170405543766634, &zone) else {
        return;
    };
    let slack = 0.08 / sketch.units_per_metre() + 3.0;
    for place in [points[0], points[1], points[4]] {
        let gap = nearest_drawn(&sketch, home, place);
        assert!(
            gap + slack >= radius,
            "{gap:.1} m from {place:?}: {}",
            sketch.path
        );
    }
}
