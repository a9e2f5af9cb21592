//! The activity index as the table holds it: one entity per public run, in the partition
//! `run-{year}` of the run's local calendar year, keyed by the activity id zero-padded to 20
//! digits (so a run is found by the id an event names, and rows sort by id, which grows with
//! upload time). Only what the answers show is kept: never coordinates or polylines (the route
//! sketch, already privacy-trimmed and normalised, is kept when enabled).

use super::entities::{
    int64_annotation, optional, required, DateTime, Double, Flag, Int64, Property, Text,
    EDM_DATETIME, EDM_DOUBLE,
};
use super::StoreError;
use time::OffsetDateTime;

/// What errors name as the entity that could not be read.
const ROW: &str = "activity index";

/// One public run of the owner's, as the index knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexedRun {
    /// Strava's activity id.
    pub id: i64,
    /// The title.
    pub name: String,
    /// Strava's sport type (one of `WIDGET_SPORT_TYPES`).
    pub sport_type: String,
    /// The start instant, Unix seconds.
    pub start: i64,
    /// The athlete's wall-clock start time, verbatim from Strava (`2025-10-10T07:58:11Z`, whose
    /// `Z` does not mean UTC).
    pub start_date_local: Option<String>,
    /// Strava's time-zone label.
    pub timezone: Option<String>,
    /// Metres.
    pub distance: f64,
    /// Seconds.
    pub moving_time: i64,
    /// Seconds.
    pub elapsed_time: i64,
    /// Metres.
    pub total_elevation_gain: Option<f64>,
    /// m/s.
    pub average_speed: Option<f64>,
    /// Kudos so far.
    pub kudos_count: Option<i64>,
    /// How many photos Strava counts (`total_photo_count`): a change means the photo is looked
    /// up again.
    pub photo_count: i64,
    /// The photo to show, once looked up.
    pub photo_url: Option<String>,
    /// Whether the photo was looked up for `photo_count` (a run without photos needs no look).
    pub photo_checked: bool,
    /// The privacy-trimmed route sketch (`WIDGET_ROUTE_SHAPE=true` only).
    pub route_shape: Option<String>,
    /// Taken out of every answer by a push event (a delete, made private) until Strava's word
    /// brings it back or removes it; kept meanwhile so what was looked up (the photo) is not
    /// looked up again.
    pub hidden: bool,
    /// The index clock's reading when the Strava word this entry holds was taken (before the
    /// list call or the activity read that said it, or when a hide was applied): a writer never
    /// replaces a newer word with an older one.
    pub word: i64,
}

impl IndexedRun {
    /// The athlete's local calendar year of the run: from `start_date_local`, else UTC.
    pub fn local_year(&self) -> i32 {
        self.start_date_local
            .as_deref()
            .and_then(|local| local.get(..4))
            .and_then(|year| year.parse().ok())
            .unwrap_or_else(|| {
                OffsetDateTime::from_unix_timestamp(self.start)
                    .map(|t| t.year())
                    .unwrap_or(1970)
            })
    }

    /// The athlete's offset from UTC at the run's start (seconds), from the wall-clock start;
    /// `None` without one.
    pub fn utc_offset_seconds(&self) -> Option<i64> {
        let local = self.start_date_local.as_deref()?;
        // The local time is written with a `Z` that does not mean UTC: read it as if it did.
        let as_if_utc =
            OffsetDateTime::parse(local, &time::format_description::well_known::Rfc3339).ok()?;
        let offset = as_if_utc.unix_timestamp() - self.start;
        // Real offsets lie within ±18 h; anything else is a bad record.
        (offset.abs() <= 18 * 3600).then_some(offset)
    }

    /// The local day of the run, `YYYY-MM-DD`, from `start_date_local`.
    pub fn local_date(&self) -> Option<&str> {
        self.start_date_local.as_deref().and_then(|l| l.get(..10))
    }

    /// The partition that holds runs of `year`.
    pub fn partition_of(year: i32) -> String {
        format!("run-{year}")
    }

    /// The row key of activity `id`.
    pub fn row_of(id: i64) -> String {
        format!("{id:020}")
    }
}

/// An index entity as the table holds it.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct RunEntity {
    pub(super) partition_key: String,
    pub(super) row_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    activity_id: Option<Int64>,
    #[serde(
        rename = "ActivityId@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    activity_id_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sport_type: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_date: Option<DateTime>,
    #[serde(
        rename = "StartDate@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    start_date_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_date_local: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    distance: Option<Double>,
    #[serde(
        rename = "Distance@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    distance_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    moving_time: Option<Int64>,
    #[serde(
        rename = "MovingTime@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    moving_time_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    elapsed_time: Option<Int64>,
    #[serde(
        rename = "ElapsedTime@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    elapsed_time_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_elevation_gain: Option<Double>,
    #[serde(
        rename = "TotalElevationGain@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    total_elevation_gain_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    average_speed: Option<Double>,
    #[serde(
        rename = "AverageSpeed@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    average_speed_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kudos_count: Option<Int64>,
    #[serde(
        rename = "KudosCount@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    kudos_count_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    photo_count: Option<Int64>,
    #[serde(
        rename = "PhotoCount@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    photo_count_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    photo_url: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    photo_checked: Option<Flag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route_shape: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hidden: Option<Flag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    word_at: Option<Int64>,
    #[serde(
        rename = "WordAt@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    word_at_type: Option<&'static str>,
}

fn double(value: Option<f64>) -> (Option<Double>, Option<&'static str>) {
    match value.filter(|v| v.is_finite()) {
        Some(v) => (Some(Property::Value(v)), Some(EDM_DOUBLE)),
        None => (None, None),
    }
}

impl From<&IndexedRun> for RunEntity {
    fn from(run: &IndexedRun) -> Self {
        let text = |s: &str| Some(Property::Value(s.to_owned()));
        let (distance, distance_type) = double(Some(run.distance));
        let (total_elevation_gain, total_elevation_gain_type) = double(run.total_elevation_gain);
        let (average_speed, average_speed_type) = double(run.average_speed);
        let start = OffsetDateTime::from_unix_timestamp(run.start).ok();
        RunEntity {
            partition_key: IndexedRun::partition_of(run.local_year()),
            row_key: IndexedRun::row_of(run.id),
            activity_id: Some(Property::Value(run.id)),
            activity_id_type: int64_annotation(&Some(run.id)),
            name: Some(Property::Value(run.name.clone())),
            sport_type: text(&run.sport_type),
            start_date: start.map(Property::Value),
            start_date_type: start.map(|_| EDM_DATETIME),
            start_date_local: run.start_date_local.as_deref().and_then(text),
            timezone: run.timezone.as_deref().and_then(text),
            distance,
            distance_type,
            moving_time: Some(Property::Value(run.moving_time)),
            moving_time_type: int64_annotation(&Some(run.moving_time)),
            elapsed_time: Some(Property::Value(run.elapsed_time)),
            elapsed_time_type: int64_annotation(&Some(run.elapsed_time)),
            total_elevation_gain,
            total_elevation_gain_type,
            average_speed,
            average_speed_type,
            kudos_count: run.kudos_count.map(Property::Value),
            kudos_count_type: int64_annotation(&run.kudos_count),
            photo_count: Some(Property::Value(run.photo_count)),
            photo_count_type: int64_annotation(&Some(run.photo_count)),
            photo_url: run.photo_url.as_deref().and_then(text),
            photo_checked: Some(Property::Value(run.photo_checked)),
            route_shape: run.route_shape.as_deref().and_then(text),
            hidden: run.hidden.then_some(Property::Value(true)),
            word_at: Some(Property::Value(run.word)),
            word_at_type: int64_annotation(&Some(run.word)),
        }
    }
}

impl TryFrom<RunEntity> for IndexedRun {
    type Error = StoreError;

    fn try_from(entity: RunEntity) -> Result<Self, StoreError> {
        Ok(IndexedRun {
            id: required(&entity.activity_id, "ActivityId", ROW)?,
            // A run may have an empty title; a missing one reads as empty.
            name: match entity.name {
                Some(Property::Value(name)) => name,
                _ => String::new(),
            },
            sport_type: required(&entity.sport_type, "SportType", ROW)?,
            start: required(&entity.start_date, "StartDate", ROW)?.unix_timestamp(),
            start_date_local: optional(&entity.start_date_local, "StartDateLocal", ROW)?,
            timezone: optional(&entity.timezone, "Timezone", ROW)?,
            distance: required(&entity.distance, "Distance", ROW)?,
            moving_time: optional(&entity.moving_time, "MovingTime", ROW)?.unwrap_or(0),
            elapsed_time: optional(&entity.elapsed_time, "ElapsedTime", ROW)?.unwrap_or(0),
            total_elevation_gain: optional(
                &entity.total_elevation_gain,
                "TotalElevationGain",
                ROW,
            )?,
            average_speed: optional(&entity.average_speed, "AverageSpeed", ROW)?,
            kudos_count: optional(&entity.kudos_count, "KudosCount", ROW)?,
            photo_count: optional(&entity.photo_count, "PhotoCount", ROW)?.unwrap_or(0),
            photo_url: optional(&entity.photo_url, "PhotoUrl", ROW)?,
            photo_checked: optional(&entity.photo_checked, "PhotoChecked", ROW)?.unwrap_or(false),
            route_shape: optional(&entity.route_shape, "RouteShape", ROW)?,
            hidden: optional(&entity.hidden, "Hidden", ROW)?.unwrap_or(false),
            // Entries written before words were kept hold the oldest word there is.
            word: optional(&entity.word_at, "WordAt", ROW)?.unwrap_or(0),
        })
    }
}

/// The index's word that an activity is not shown (deleted, made private, or gone from
/// Strava's list), kept by activity id in the partition [`Tombstone::PARTITION`] whatever the
/// activity's year: a word about the activity older than it (a create read before the delete and
/// written after it) cannot bring the activity back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The activity.
    pub id: i64,
    /// The index clock's reading of the word that took it out.
    pub word: i64,
    /// When it was raised (Unix seconds, storage time): old tombstones are pruned.
    pub at: i64,
}

impl Tombstone {
    /// The partition tombstones live in.
    pub const PARTITION: &'static str = "tombstones";
}

/// A tombstone as the table holds it.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct TombstoneEntity {
    pub(super) partition_key: String,
    pub(super) row_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    activity_id: Option<Int64>,
    #[serde(
        rename = "ActivityId@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    activity_id_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    word_at: Option<Int64>,
    #[serde(
        rename = "WordAt@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    word_at_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raised_at: Option<Int64>,
    #[serde(
        rename = "RaisedAt@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    raised_at_type: Option<&'static str>,
}

impl From<&Tombstone> for TombstoneEntity {
    fn from(t: &Tombstone) -> Self {
        TombstoneEntity {
            partition_key: Tombstone::PARTITION.into(),
            row_key: IndexedRun::row_of(t.id),
            activity_id: Some(Property::Value(t.id)),
            activity_id_type: int64_annotation(&Some(t.id)),
            word_at: Some(Property::Value(t.word)),
            word_at_type: int64_annotation(&Some(t.word)),
            raised_at: Some(Property::Value(t.at)),
            raised_at_type: int64_annotation(&Some(t.at)),
        }
    }
}

impl TryFrom<TombstoneEntity> for Tombstone {
    type Error = StoreError;

    fn try_from(entity: TombstoneEntity) -> Result<Self, StoreError> {
        const ROW: &str = "tombstone";
        Ok(Tombstone {
            id: required(&entity.activity_id, "ActivityId", ROW)?,
            word: required(&entity.word_at, "WordAt", ROW)?,
            at: optional(&entity.raised_at, "RaisedAt", ROW)?.unwrap_or(0),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn run(id: i64, start_date_local: &str, distance: f64) -> IndexedRun {
        let start = OffsetDateTime::parse(
            start_date_local,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| t.unix_timestamp() - 3600)
        .unwrap_or(0);
        IndexedRun {
            id,
            name: format!("Run {id}"),
            sport_type: "Run".into(),
            start,
            start_date_local: Some(start_date_local.into()),
            timezone: Some("(GMT+01:00) Europe/Berlin".into()),
            distance,
            moving_time: 1800,
            elapsed_time: 1900,
            total_elevation_gain: Some(12.0),
            average_speed: Some(3.1),
            kudos_count: Some(4),
            photo_count: 0,
            photo_url: None,
            photo_checked: false,
            route_shape: None,
            hidden: false,
            word: 0,
        }
    }

    #[test]
    fn a_run_round_trips_with_typed_properties_and_no_coordinates() {
        let mut original = run(16128930471, "2026-03-10T07:58:11Z", 8412.0);
        original.photo_url = Some("https://example.test/p.jpg".into());
        original.photo_checked = true;
        let entity = serde_json::to_value(RunEntity::from(&original)).expect("json");
        assert_eq!(entity["PartitionKey"], "run-2026");
        assert_eq!(entity["RowKey"], "00000000016128930471");
        assert_eq!(entity["Distance@odata.type"], "Edm.Double");
        assert_eq!(entity["MovingTime@odata.type"], "Edm.Int64");
        let text = entity.to_string();
        for forbidden in ["latlng", "polyline", "Map"] {
            assert!(!text.contains(forbidden), "{text}");
        }
        let back =
            IndexedRun::try_from(serde_json::from_value::<RunEntity>(entity).expect("decodes"))
                .expect("readable");
        assert_eq!(back, original);
    }

    #[test]
    fn a_hand_edited_run_names_the_property() {
        let entity: RunEntity = serde_json::from_value::<RunEntity>(json!({
            "ActivityId": "7", "SportType": "Run", "StartDate": "2026-01-01T00:00:00Z",
            "Distance": "far"
        }))
        .expect("any object decodes");
        let err = IndexedRun::try_from(entity).expect_err("unreadable");
        assert!(err.to_string().contains("Distance"), "{err}");
    }

    #[test]
    fn the_year_and_offset_come_from_the_local_start() {
        // 00:30 on 1 January in Berlin is still 31 December in UTC: the run counts for the
        // new year.
        let run = run(1, "2027-01-01T00:30:00Z", 5000.0);
        assert_eq!(run.local_year(), 2027);
        assert_eq!(run.utc_offset_seconds(), Some(3600));
        assert_eq!(run.local_date(), Some("2027-01-01"));
        let utc = OffsetDateTime::from_unix_timestamp(run.start).expect("instant");
        assert_eq!(utc.year(), 2026);
    }
}
