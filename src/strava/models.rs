//! Lenient decoded forms of Strava's JSON that keep only an allow-list of fields, so coordinates,
//! maps, polylines and personal details are dropped at the client boundary by construction. The
//! one exception, the list's `map.summary_polyline`, is kept in memory for the privacy-trimmed
//! route sketch and never encoded again.
//!
//! A field of the wrong shape (null, a string for a number, ...) is dropped to its default
//! (`Lenient`) instead of failing the whole list; only ids must be numbers (`WholeNumber`).

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_with::{serde_as, DeserializeAs, MapSkipError, Same};
use std::collections::HashMap;
use std::marker::PhantomData;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// One activity as listed by `GET /athlete/activities` (Strava's SummaryActivity).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryActivity {
    /// Strava's activity id.
    #[serde_as(deserialize_as = "WholeNumber")]
    pub id: i64,
    /// The activity's title, `""` when absent or null.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub name: String,
    /// Authoritative sport type (`Run`, `TrailRun`, `VirtualRun`, ...).
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub sport_type: Option<String>,
    /// Deprecated coarse type (JSON key `type`).
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(rename = "type", default)]
    pub activity_type: Option<String>,
    /// Distance in metres.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub distance: f64,
    /// Moving time in seconds.
    #[serde_as(deserialize_as = "Lenient<WholeNumber>")]
    #[serde(default)]
    pub moving_time: i64,
    /// Elapsed time in seconds.
    #[serde_as(deserialize_as = "Lenient<WholeNumber>")]
    #[serde(default)]
    pub elapsed_time: i64,
    /// Elevation gain in metres.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub total_elevation_gain: Option<f64>,
    /// Start instant (UTC); `None` when absent or not RFC 3339.
    #[serde_as(
        serialize_as = "Option<Rfc3339>",
        deserialize_as = "Lenient<Option<Rfc3339>>"
    )]
    #[serde(default)]
    pub start_date: Option<OffsetDateTime>,
    /// The athlete's wall-clock start time, verbatim (its `Z` suffix does not mean UTC).
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub start_date_local: Option<String>,
    /// Strava's time-zone label, e.g. `"(GMT+01:00) Europe/Berlin"`.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub timezone: Option<String>,
    /// Average speed in m/s.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub average_speed: Option<f64>,
    /// Number of kudos.
    #[serde_as(deserialize_as = "Lenient<Option<WholeNumber>>")]
    #[serde(default)]
    pub kudos_count: Option<i64>,
    /// True for Only Me activities.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub private: Option<bool>,
    /// `"everyone"`, `"followers_only"` or `"only_me"`.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub visibility: Option<String>,
    /// True for manually entered activities.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub manual: Option<bool>,
    /// All photos (Strava and Instagram); `photo_count` counts Instagram only, so it is not kept.
    #[serde_as(deserialize_as = "Lenient<Option<WholeNumber>>")]
    #[serde(default)]
    pub total_photo_count: Option<i64>,
    /// `map.summary_polyline`, for the route sketch only (`WIDGET_ROUTE_SHAPE`); never encoded.
    #[serde(
        rename = "map",
        default,
        deserialize_with = "de_summary_polyline",
        skip_serializing
    )]
    pub summary_polyline: Option<String>,
    /// `athlete.id`: whose activity this is (an event's activity must be the connected
    /// athlete's).
    #[serde(
        rename = "athlete",
        default,
        deserialize_with = "de_athlete_id",
        skip_serializing
    )]
    pub athlete_id: Option<i64>,
}

/// `map.summary_polyline` when it is a non-empty string (a hidden map or a treadmill has none).
fn de_summary_polyline<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let map = Value::deserialize(d)?;
    let line = map.get("summary_polyline").and_then(Value::as_str);
    Ok(line.filter(|line| !line.is_empty()).map(str::to_owned))
}

/// `athlete.id` when the athlete is an object with a numeric id.
fn de_athlete_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Value::deserialize(d)?.get("id").and_then(number_i64))
}

impl SummaryActivity {
    /// True when anyone may see the activity: visibility `everyone`, or, on records that predate
    /// `visibility`, `private: false`.
    pub fn is_public(&self) -> bool {
        match self.visibility.as_deref() {
            Some(visibility) => visibility == "everyone" && self.private != Some(true),
            None => self.private == Some(false),
        }
    }
}

/// One activity from `GET /activities/{id}` (Strava's DetailedActivity), reduced to the summary
/// fields plus the photo summary.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetailedActivity {
    /// The fields shared with the list form.
    #[serde(flatten)]
    pub summary: SummaryActivity,
    /// Photo summary; `None` when absent or malformed.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub photos: Option<PhotosSummary>,
}

/// The `photos` object of a detailed activity.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PhotosSummary {
    /// The highlighted photo; null when the activity has none.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub primary: Option<PrimaryPhoto>,
    /// Number of photos.
    #[serde_as(deserialize_as = "Lenient<Option<WholeNumber>>")]
    #[serde(default)]
    pub count: Option<i64>,
}

/// The primary photo of a detailed activity.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PrimaryPhoto {
    /// Image URLs keyed by size (`"100"`, `"600"`); empty when null.
    #[serde_as(deserialize_as = "Lenient<MapSkipError<_, _>>")]
    #[serde(default)]
    pub urls: HashMap<String, String>,
    /// 1 = Strava, 2 = Instagram.
    #[serde_as(deserialize_as = "Lenient<Option<WholeNumber>>")]
    #[serde(default)]
    pub source: Option<i64>,
    /// Strava's photo id.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub unique_id: Option<String>,
}

/// One item of `GET /activities/{id}/photos` (its `location` is deliberately not decoded).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Photo {
    /// Strava's photo id.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub unique_id: Option<String>,
    /// Image URLs keyed by the requested size as a string; empty when null.
    #[serde_as(deserialize_as = "Lenient<MapSkipError<_, _>>")]
    #[serde(default)]
    pub urls: HashMap<String, String>,
    /// Pixel sizes `[width, height]` keyed like `urls` (other entries are dropped).
    #[serde_as(deserialize_as = "Lenient<MapSkipError<_, _>>")]
    #[serde(default)]
    pub sizes: HashMap<String, [u32; 2]>,
    /// True for the activity's highlighted photo.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub default_photo: Option<bool>,
    /// Processing status (3 seen on ready photos).
    #[serde_as(deserialize_as = "Lenient<Option<WholeNumber>>")]
    #[serde(default)]
    pub status: Option<i64>,
    /// 1 = Strava, 2 = Instagram.
    #[serde_as(deserialize_as = "Lenient<Option<WholeNumber>>")]
    #[serde(default)]
    pub source: Option<i64>,
    /// 1 = photo, 2 = video (JSON key `type`).
    #[serde_as(deserialize_as = "Lenient<Option<WholeNumber>>")]
    #[serde(rename = "type", default)]
    pub media_type: Option<i64>,
    /// Strava's placeholder while the photo is processed: the string itself, or the first string
    /// inside an object (its exact shape is undocumented); `None` when null or absent.
    #[serde(default, deserialize_with = "de_placeholder")]
    pub placeholder_image: Option<String>,
}

impl Photo {
    /// True while Strava still serves a placeholder instead of the real image.
    pub fn is_placeholder(&self) -> bool {
        self.placeholder_image.is_some() || self.urls.values().any(|url| is_placeholder_url(url))
    }
}

/// The athlete, reduced to id and name.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AthleteSummary {
    /// Strava's athlete id.
    #[serde_as(deserialize_as = "WholeNumber")]
    pub id: i64,
    /// First name.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub firstname: Option<String>,
    /// Last name.
    #[serde_as(deserialize_as = "Lenient")]
    #[serde(default)]
    pub lastname: Option<String>,
}

/// True for Strava's generic "photo still processing" image.
pub fn is_placeholder_url(url: &str) -> bool {
    url.contains("/assets/media/placeholder-photo")
}

/// `T` (read through `TAs`), or `T::default()` when the value has another shape: null, a string
/// for a number, an object for a string. The value is read as a `serde_json::Value` first, so a
/// broken document (bad syntax, a number no f64 holds) still fails the whole decode and a key
/// repeated inside an object counts last, as everywhere in `serde_json`; serde_with's
/// `DefaultOnError` would hide the first and drop the object on the second.
pub(super) struct Lenient<TAs = Same>(PhantomData<TAs>);

impl<'de, T: Default, TAs: DeserializeAs<'de, T>> DeserializeAs<'de, T> for Lenient<TAs> {
    fn deserialize_as<D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let value = Value::deserialize(d)?;
        Ok(TAs::deserialize_as(value).unwrap_or_default())
    }
}

/// An integer from any JSON number, a float rounded (Strava sends `474287.0` for integer
/// fields); anything else is an error, which only an id (the one thing a record is useless
/// without) lets through.
pub(super) struct WholeNumber;

impl<'de> DeserializeAs<'de, i64> for WholeNumber {
    fn deserialize_as<D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        number_i64(&Value::deserialize(d)?).ok_or_else(|| D::Error::custom("not a whole number"))
    }
}

/// A number as i64; floats are rounded.
fn number_i64(value: &Value) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    let f = value.as_f64()?.round();
    // Outside this range the cast would saturate and invent a value.
    (f >= i64::MIN as f64 && f <= i64::MAX as f64).then_some(f as i64)
}

/// Any non-null value says "this is a placeholder"; its URL is the string, or an object's first
/// string.
fn de_placeholder<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(url) => Some(url),
        Value::Object(map) => Some(
            map.values()
                .find_map(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        _ => Some(String::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const ACTIVITIES: &str = include_str!("../../tests/data/strava/athlete-activities.json");
    const DETAIL: &str = include_str!("../../tests/data/strava/activity-detail-run.json");
    const PHOTOS: &str = include_str!("../../tests/data/strava/activity-photos.json");
    const EXCHANGE: &str = include_str!("../../tests/data/strava/token-exchange-response.json");

    fn sample(text: &str) -> Value {
        serde_json::from_str(text).expect("sample is JSON")
    }

    fn first_activity() -> Value {
        sample(ACTIVITIES)[0].clone()
    }

    #[test]
    fn decodes_the_activity_list_sample() {
        let list: Vec<SummaryActivity> = serde_json::from_str(ACTIVITIES).expect("decodes");
        assert_eq!(list.len(), 6);
        let ride = &list[0];
        assert_eq!(ride.id, 16145518802);
        assert_eq!(ride.name, "Gravel loop to Müggelsee");
        assert_eq!(ride.sport_type.as_deref(), Some("GravelRide"));
        assert_eq!(ride.activity_type.as_deref(), Some("Ride"));
        assert_eq!(ride.distance, 48210.5);
        assert_eq!(ride.moving_time, 7388);
        assert_eq!(ride.start_date, Some(datetime!(2025-10-12 08:03:57 UTC)));
        assert_eq!(
            ride.start_date_local.as_deref(),
            Some("2025-10-12T10:03:57Z")
        );
        assert_eq!(ride.kudos_count, Some(17));
        assert_eq!(ride.total_photo_count, Some(1));
        let sports: Vec<_> = list
            .iter()
            .filter_map(|a| a.sport_type.as_deref())
            .collect();
        assert_eq!(
            sports,
            ["GravelRide", "Run", "Run", "TrailRun", "VirtualRun", "Walk"]
        );
        let public: Vec<_> = list.iter().map(SummaryActivity::is_public).collect();
        assert_eq!(public, [false, false, true, true, true, true]);
    }

    #[test]
    fn decodes_the_detail_sample_with_its_primary_photo() {
        let detail: DetailedActivity = serde_json::from_str(DETAIL).expect("decodes");
        assert_eq!(detail.summary.id, 16128930471);
        assert_eq!(detail.summary.visibility.as_deref(), Some("everyone"));
        assert!(detail.summary.is_public());
        assert_eq!(detail.summary.moving_time, 2851);
        let photos = detail.photos.expect("photos");
        assert_eq!(photos.count, Some(3));
        let primary = photos.primary.expect("primary");
        assert_eq!(primary.source, Some(1));
        assert!(primary.urls["600"].ends_with("-768x576.jpg"));
        assert!(primary.urls["100"].ends_with("-128x96.jpg"));
        assert_eq!(
            primary.unique_id.as_deref(),
            Some("9C1D7E52-4B8A-4F0E-A1D3-6E2B57C9F804")
        );
    }

    #[test]
    fn detail_tolerates_null_primary_and_missing_photos() {
        let mut value = sample(DETAIL);
        value["photos"] = json!({"primary": null, "count": 0});
        let detail: DetailedActivity = serde_json::from_value(value.clone()).expect("decodes");
        let photos = detail.photos.expect("photos");
        assert_eq!(photos.primary, None);
        assert_eq!(photos.count, Some(0));

        value["photos"]["primary"] = json!({"urls": null, "source": 1.0, "unique_id": null});
        let detail: DetailedActivity = serde_json::from_value(value.clone()).expect("decodes");
        let primary = detail.photos.and_then(|p| p.primary).expect("primary");
        assert!(primary.urls.is_empty());
        assert_eq!(primary.source, Some(1));

        value.as_object_mut().expect("object").remove("photos");
        let detail: DetailedActivity = serde_json::from_value(value).expect("decodes");
        assert_eq!(detail.photos, None);
    }

    #[test]
    fn decodes_the_photos_sample() {
        let photos: Vec<Photo> = serde_json::from_str(PHOTOS).expect("decodes");
        assert_eq!(photos.len(), 3);
        assert_eq!(photos[0].default_photo, Some(true));
        assert_eq!(photos[0].status, Some(3));
        assert_eq!(photos[0].media_type, Some(1));
        assert_eq!(photos[0].sizes["600"], [768, 576]);
        assert_eq!(photos[1].sizes["600"], [576, 768]);
        assert!(photos.iter().all(|p| !p.is_placeholder()));
        assert!(photos[2].urls["600"].starts_with("https://"));
    }

    #[test]
    fn photos_flag_placeholders() {
        let mut value = sample(PHOTOS);
        value[0]["urls"]["600"] = json!(
            "https://d3nn82uaxijpm6.cloudfront.net/assets/media/placeholder-photo@4x-abc.png"
        );
        value[1]["placeholder_image"] = json!({"light_url": "https://x/light.png"});
        value[2]["urls"] = Value::Null;
        value[2]["sizes"] = json!({"600": null});
        let photos: Vec<Photo> = serde_json::from_value(value).expect("decodes");
        assert!(photos[0].is_placeholder());
        assert!(photos[1].is_placeholder());
        assert_eq!(
            photos[1].placeholder_image.as_deref(),
            Some("https://x/light.png")
        );
        assert!(photos[2].urls.is_empty());
        assert!(photos[2].sizes.is_empty());
        assert!(!photos[2].is_placeholder());
    }

    #[test]
    fn placeholder_url_detection() {
        assert!(is_placeholder_url(
            "https://d3nn82uaxijpm6.cloudfront.net/assets/media/placeholder-photo@4x-d0b3.png"
        ));
        assert!(!is_placeholder_url(
            "https://dgtzuqphqg23d.cloudfront.net/abc-768x576.jpg"
        ));
    }

    #[test]
    fn decodes_the_athlete_of_the_token_exchange_sample() {
        let value = sample(EXCHANGE);
        let athlete: AthleteSummary =
            serde_json::from_value(value["athlete"].clone()).expect("decodes");
        assert_eq!(
            athlete,
            AthleteSummary {
                id: 51877240,
                firstname: Some("Mira".into()),
                lastname: Some("Kowalczyk".into()),
            }
        );
        let athlete: AthleteSummary = serde_json::from_str(r#"{"id": 7}"#).expect("decodes");
        assert_eq!(athlete.firstname, None);
    }

    #[test]
    fn summary_tolerates_absent_keys_nulls_and_float_ints() {
        let mut value = first_activity();
        let object = value.as_object_mut().expect("object");
        for key in [
            "name",
            "sport_type",
            "timezone",
            "kudos_count",
            "visibility",
        ] {
            object.remove(key);
        }
        object.insert("moving_time".into(), json!(7388.4));
        object.insert("elapsed_time".into(), json!(8101.5));
        object.insert("distance".into(), json!(48210));
        object.insert("total_elevation_gain".into(), Value::Null);
        object.insert("average_speed".into(), json!("fast"));
        object.insert("start_latlng".into(), json!([]));
        object.insert("end_latlng".into(), Value::Null);
        object.insert("map".into(), Value::Null);
        object.insert("private".into(), Value::Null);
        object.insert("id".into(), json!(16145518802.0));
        let activity: SummaryActivity = serde_json::from_value(value).expect("decodes");
        assert_eq!(activity.id, 16145518802);
        assert_eq!(activity.name, "");
        assert_eq!(activity.sport_type, None);
        assert_eq!(activity.moving_time, 7388);
        assert_eq!(activity.elapsed_time, 8102);
        assert_eq!(activity.distance, 48210.0);
        assert_eq!(activity.total_elevation_gain, None);
        assert_eq!(activity.average_speed, None);
        assert_eq!(activity.private, None);
        assert!(!activity.is_public());
    }

    /// One activity decoded from `{"id": 1, <fields>}` as text, as the client decodes a body.
    fn summary_from_text(fields: &str) -> Result<SummaryActivity, serde_json::Error> {
        serde_json::from_str(&format!(r#"{{"id": 1, {fields}}}"#))
    }

    fn summary_with(key: &str, odd: Value) -> SummaryActivity {
        let mut value = first_activity();
        value[key] = odd;
        serde_json::from_value(value).expect("decodes")
    }

    #[test]
    fn nulls_wrong_types_and_strings_for_numbers_drop_only_their_field() {
        for odd in [Value::Null, json!(5), json!(["x"]), json!({"a": "b"})] {
            assert_eq!(summary_with("name", odd.clone()).name, "", "{odd}");
            assert_eq!(summary_with("sport_type", odd.clone()).sport_type, None);
            assert_eq!(summary_with("type", odd.clone()).activity_type, None);
            assert_eq!(summary_with("timezone", odd.clone()).timezone, None);
            assert_eq!(summary_with("visibility", odd.clone()).visibility, None);
            assert_eq!(
                summary_with("start_date_local", odd.clone()).start_date_local,
                None
            );
        }
        for odd in [
            Value::Null,
            json!("48210.5"),
            json!(true),
            json!([]),
            json!({}),
        ] {
            assert_eq!(summary_with("distance", odd.clone()).distance, 0.0, "{odd}");
            assert_eq!(summary_with("moving_time", odd.clone()).moving_time, 0);
            assert_eq!(summary_with("elapsed_time", odd.clone()).elapsed_time, 0);
            let activity = summary_with("total_elevation_gain", odd.clone());
            assert_eq!(activity.total_elevation_gain, None);
            assert_eq!(
                summary_with("average_speed", odd.clone()).average_speed,
                None
            );
            assert_eq!(summary_with("kudos_count", odd.clone()).kudos_count, None);
            let activity = summary_with("total_photo_count", odd.clone());
            assert_eq!(activity.total_photo_count, None);
        }
        for odd in [Value::Null, json!("true"), json!(1), json!([true])] {
            assert_eq!(summary_with("private", odd.clone()).private, None, "{odd}");
            assert_eq!(summary_with("manual", odd.clone()).manual, None);
        }
        // Numbers in the right form are kept, integers from any number.
        assert_eq!(summary_with("moving_time", json!(2.5)).moving_time, 3);
        assert_eq!(summary_with("moving_time", json!(-2.5)).moving_time, -3);
        assert_eq!(summary_with("distance", json!(7)).distance, 7.0);
        assert_eq!(
            summary_with("kudos_count", json!(17.0)).kudos_count,
            Some(17)
        );
    }

    #[test]
    fn numbers_out_of_range() {
        // Beyond an i64: no count, a zero time.
        let activity =
            summary_from_text(r#""kudos_count": 1e300, "moving_time": -1e300"#).expect("decodes");
        assert_eq!((activity.kudos_count, activity.moving_time), (None, 0));
        let activity =
            summary_from_text(r#""kudos_count": 18446744073709551615"#).expect("decodes");
        assert_eq!(activity.kudos_count, None);
        let activity = summary_from_text(r#""kudos_count": 9223372036854775807"#).expect("decodes");
        assert_eq!(activity.kudos_count, Some(i64::MAX));
        let activity = summary_from_text(r#""distance": 1e308"#).expect("decodes");
        assert_eq!(activity.distance, 1e308);
        // An id beyond an i64 is not an id (decoded alone: `summary_from_text` already has one).
        assert!(serde_json::from_str::<SummaryActivity>(r#"{"id": 1e300}"#).is_err());
        // A number no f64 holds breaks the document in any field that is read (an unknown key
        // is skipped unread).
        for field in [
            r#""distance": 1e999"#,
            r#""kudos_count": 1e999"#,
            r#""sport_type": 1e999"#,
            r#""name": -1e999"#,
            r#""start_date": 1e999"#,
            r#""map": {"summary_polyline": 1e999}"#,
        ] {
            assert!(summary_from_text(field).is_err(), "{field}");
        }
        assert!(summary_from_text(r#""start_latlng": 1e999"#).is_ok());
    }

    #[test]
    fn a_repeated_key_counts_last_inside_a_lenient_field_and_fails_at_the_top() {
        let detail: DetailedActivity = serde_json::from_str(
            r#"{"id": 1, "photos": {"count": 1, "count": 2, "primary": {"urls": {"600": "a", "600": "b"}}}}"#,
        )
        .expect("decodes");
        let photos = detail.photos.expect("photos");
        assert_eq!(photos.count, Some(2));
        assert_eq!(photos.primary.expect("primary").urls["600"], "b");
        assert!(summary_from_text(r#""name": "a", "name": "b""#).is_err());
    }

    #[test]
    fn objects_in_other_shapes() {
        // serde reads a struct from an array too, field by field.
        let mut value = sample(DETAIL);
        value["photos"] = json!([null, 2.6]);
        let detail: DetailedActivity = serde_json::from_value(value.clone()).expect("decodes");
        let photos = detail.photos.expect("photos");
        assert_eq!((photos.primary, photos.count), (None, Some(3)));
        value["photos"] = json!("lots");
        let detail: DetailedActivity = serde_json::from_value(value.clone()).expect("decodes");
        assert_eq!(detail.photos, None);
        value["photos"] = json!([]);
        let detail: DetailedActivity = serde_json::from_value(value.clone()).expect("decodes");
        assert_eq!(detail.photos, Some(PhotosSummary::default()));
        value["photos"] = json!({"primary": "x", "count": "3"});
        let detail: DetailedActivity = serde_json::from_value(value).expect("decodes");
        assert_eq!(detail.photos, Some(PhotosSummary::default()));

        let athlete = |odd: Value| {
            let mut value = first_activity();
            value["athlete"] = odd;
            serde_json::from_value::<SummaryActivity>(value)
                .expect("decodes")
                .athlete_id
        };
        assert_eq!(athlete(json!({"id": 5.4})), Some(5));
        assert_eq!(athlete(json!({"id": "5"})), None);
        assert_eq!(athlete(json!([5])), None);
        assert_eq!(athlete(Value::Null), None);
    }

    #[test]
    fn photo_maps_keep_only_well_formed_entries() {
        let photos: Vec<Photo> = serde_json::from_value(json!([
            {"urls": {"600": 5, "100": "u"}, "sizes": {
                "600": [1, 2, 3], "100": [1.0, 2], "200": [1, 2], "300": "x", "400": [-1, 2]
            }},
            {"urls": [], "sizes": [[1, 2]]},
        ]))
        .expect("decodes");
        assert_eq!(photos[0].urls, HashMap::from([("100".into(), "u".into())]));
        assert_eq!(photos[0].sizes, HashMap::from([("200".into(), [1, 2])]));
        assert!(photos[1].urls.is_empty() && photos[1].sizes.is_empty());
    }

    #[test]
    fn any_non_null_placeholder_is_a_placeholder() {
        let placeholder = |odd: Value| {
            serde_json::from_value::<Photo>(json!({ "placeholder_image": odd }))
                .expect("decodes")
                .placeholder_image
        };
        assert_eq!(placeholder(Value::Null), None);
        assert_eq!(placeholder(json!("")), Some(String::new()));
        assert_eq!(placeholder(json!(5)), Some(String::new()));
        assert_eq!(placeholder(json!({})), Some(String::new()));
        assert_eq!(placeholder(json!({"a": 1, "b": "x"})), Some("x".into()));
        let photo: Photo = serde_json::from_value(json!({})).expect("decodes");
        assert_eq!(photo.placeholder_image, None);
    }

    #[test]
    fn a_start_date_must_be_rfc_3339() {
        let date = |odd: Value| summary_with("start_date", odd).start_date;
        assert_eq!(
            date(json!("2025-10-12T10:03:57+02:00")),
            Some(datetime!(2025-10-12 08:03:57 UTC))
        );
        // The `time` crate's own serde form is no RFC 3339.
        assert_eq!(date(json!("2025-10-12 8:03:57.0 +00:00:00")), None);
        assert_eq!(date(json!(["2025-10-12T08:03:57Z"])), None);
    }

    #[test]
    fn a_bad_start_date_does_not_sink_the_list() {
        let mut value = sample(ACTIVITIES);
        value[0]["start_date"] = json!("yesterday morning");
        value[1]["start_date"] = json!(12345);
        value[2]["start_date"] = Value::Null;
        let list: Vec<SummaryActivity> = serde_json::from_value(value).expect("decodes");
        assert_eq!(list[0].start_date, None);
        assert_eq!(list[1].start_date, None);
        assert_eq!(list[2].start_date, None);
        assert!(list[3].start_date.is_some());
    }

    #[test]
    fn a_missing_or_bad_id_is_an_error() {
        let mut value = first_activity();
        value["id"] = json!("16145518802");
        assert!(serde_json::from_value::<SummaryActivity>(value.clone()).is_err());
        value.as_object_mut().expect("object").remove("id");
        assert!(serde_json::from_value::<SummaryActivity>(value).is_err());
    }

    #[test]
    fn is_public_follows_visibility_then_private() {
        let mut value = first_activity();
        let cases = [
            (json!("everyone"), json!(false), true),
            (json!("followers_only"), json!(false), false),
            (json!("only_me"), json!(true), false),
            // Contradictory data is treated as not public.
            (json!("everyone"), json!(true), false),
            (Value::Null, json!(false), true),
            (Value::Null, json!(true), false),
            (Value::Null, Value::Null, false),
        ];
        for (visibility, private, expected) in cases {
            value["visibility"] = visibility.clone();
            value["private"] = private.clone();
            let activity: SummaryActivity = serde_json::from_value(value.clone()).expect("decodes");
            assert_eq!(activity.is_public(), expected, "{visibility} {private}");
        }
        value.as_object_mut().expect("object").remove("visibility");
        value["private"] = json!(false);
        let activity: SummaryActivity = serde_json::from_value(value).expect("decodes");
        assert!(activity.is_public());
    }

    #[test]
    fn the_summary_polyline_is_kept_for_the_sketch_only() {
        let mut value = sample(ACTIVITIES);
        let list: Vec<SummaryActivity> = serde_json::from_value(value.clone()).expect("decodes");
        assert!(list[2]
            .summary_polyline
            .as_deref()
            .is_some_and(|p| p.starts_with("kkp_I")));
        for map in [
            json!(null),
            json!({"summary_polyline": ""}),
            json!({"id": "a1"}),
            json!(7),
        ] {
            value[2]["map"] = map;
            let list: Vec<SummaryActivity> =
                serde_json::from_value(value.clone()).expect("decodes");
            assert_eq!(list[2].summary_polyline, None);
        }
        value[2].as_object_mut().expect("object").remove("map");
        let list: Vec<SummaryActivity> = serde_json::from_value(value).expect("decodes");
        assert_eq!(list[2].summary_polyline, None);
    }

    #[test]
    fn re_encoding_carries_no_coordinates_map_or_personal_details() {
        // The decoded types have no such fields; this guards against someone adding them.
        let list: Vec<SummaryActivity> = serde_json::from_str(ACTIVITIES).expect("decodes");
        let detail: DetailedActivity = serde_json::from_str(DETAIL).expect("decodes");
        let photos: Vec<Photo> = serde_json::from_str(PHOTOS).expect("decodes");
        let athlete: AthleteSummary =
            serde_json::from_value(sample(EXCHANGE)["athlete"].clone()).expect("decodes");
        let encoded = serde_json::to_string(&(list, detail, photos, athlete)).expect("encodes");
        for forbidden in [
            "latlng",
            "polyline",
            "\"map\"",
            "location",
            "52.5",
            "13.3",
            "username",
            "city",
            "profile",
            "athlete_id",
            "caption",
        ] {
            assert!(!encoded.contains(forbidden), "{forbidden} leaked");
        }
    }

    #[test]
    fn start_date_round_trips_as_rfc3339() {
        let list: Vec<SummaryActivity> = serde_json::from_str(ACTIVITIES).expect("decodes");
        let encoded = serde_json::to_value(&list[0]).expect("encodes");
        assert_eq!(encoded["start_date"], json!("2025-10-12T08:03:57Z"));
        assert_eq!(encoded["type"], json!("Ride"));
        let back: SummaryActivity = serde_json::from_value(encoded).expect("decodes");
        // Everything but the polyline and the athlete, which are never encoded.
        assert!(list[0].summary_polyline.is_some());
        assert_eq!(list[0].athlete_id, Some(51877240));
        assert_eq!(
            back,
            SummaryActivity {
                summary_polyline: None,
                athlete_id: None,
                ..list[0].clone()
            }
        );
    }
}
