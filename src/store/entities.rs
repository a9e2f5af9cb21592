//! The table's entities (`credentials`, `latest-run`, `subscription`) as typed serde structs,
//! the shape azure_data_tables reads and writes, and their conversion to the app's values. Properties are read leniently (a hand-made
//! entity may hold a number where a string is expected) and a property that cannot be read is
//! named in the error, never its value.

use super::{Lease, StoreError, CREDENTIALS_ROW, LATEST_RUN_ROW, PARTITION, SUBSCRIPTION_ROW};
use crate::secret::Secret;
use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub(super) const EDM_INT64: &str = "Edm.Int64";
pub(super) const EDM_DATETIME: &str = "Edm.DateTime";
pub(super) const EDM_DOUBLE: &str = "Edm.Double";

/// A property as read: a value, or something of the wrong shape (kept so it can be named).
#[derive(Clone, Debug, PartialEq)]
pub enum Property<T> {
    /// A readable value.
    Value(T),
    /// Present, but not readable as its type.
    Unreadable,
}

/// A String property; a number is read as its text (hand-made entities).
pub type Text = Property<String>;
/// An Int64 property: sent as a string with an `Edm.Int64` annotation; read from a string or a number.
pub type Int64 = Property<i64>;
/// A DateTime property (RFC 3339).
pub type DateTime = Property<OffsetDateTime>;
/// A Double property: sent as a number with an `Edm.Double` annotation; read from a number or a
/// string.
pub type Double = Property<f64>;
/// A Boolean property; read from a boolean or the strings `true`/`false`.
pub type Flag = Property<bool>;

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let number = match Value::deserialize(d)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        Ok(number
            .filter(|n| n.is_finite())
            .map_or(Property::Unreadable, Property::Value))
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Bool(b) => Property::Value(b),
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Property::Value(true),
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Property::Value(false),
            _ => Property::Unreadable,
        })
    }
}

impl Serialize for Double {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Property::Value(v) if v.is_finite() => s.serialize_f64(*v),
            _ => s.serialize_none(),
        }
    }
}

impl Serialize for Flag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Property::Value(v) => s.serialize_bool(*v),
            Property::Unreadable => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) if !s.trim().is_empty() => Property::Value(s.trim().to_owned()),
            Value::Number(n) => Property::Value(n.to_string()),
            _ => Property::Unreadable,
        })
    }
}

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Number(n) => n.as_i64().map_or(Property::Unreadable, Property::Value),
            Value::String(s) => s
                .trim()
                .parse()
                .map_or(Property::Unreadable, Property::Value),
            _ => Property::Unreadable,
        })
    }
}

impl<'de> Deserialize<'de> for DateTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => {
                OffsetDateTime::parse(&s, &Rfc3339).map_or(Property::Unreadable, Property::Value)
            }
            _ => Property::Unreadable,
        })
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Property::Value(v) => s.serialize_str(v),
            Property::Unreadable => s.serialize_none(),
        }
    }
}

impl Serialize for Int64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Property::Value(v) => s.collect_str(v),
            Property::Unreadable => s.serialize_none(),
        }
    }
}

impl Serialize for DateTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Property::Value(v) => match v.format(&Rfc3339) {
                Ok(text) => s.serialize_str(&text),
                Err(_) => s.serialize_none(),
            },
            Property::Unreadable => s.serialize_none(),
        }
    }
}

/// Reads an optional property, naming it when it is unreadable.
pub(super) fn optional<T: Clone>(
    property: &Option<Property<T>>,
    name: &str,
    row: &'static str,
) -> Result<Option<T>, StoreError> {
    match property {
        None => Ok(None),
        Some(Property::Value(v)) => Ok(Some(v.clone())),
        Some(Property::Unreadable) => Err(StoreError::Corrupt {
            row,
            problem: format!("{name} cannot be read"),
        }),
    }
}

/// Reads a required property, naming it when it is missing or unreadable.
pub(super) fn required<T: Clone>(
    property: &Option<Property<T>>,
    name: &str,
    row: &'static str,
) -> Result<T, StoreError> {
    optional(property, name, row)?.ok_or_else(|| StoreError::Corrupt {
        row,
        problem: format!("{name} is missing"),
    })
}

pub(super) fn int64_annotation<T>(value: &Option<T>) -> Option<&'static str> {
    value.as_ref().map(|_| EDM_INT64)
}

/// Strava credentials as stored in the `credentials` entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Strava API application id.
    pub client_id: String,
    /// Strava API application secret.
    pub client_secret: Secret,
    /// The newest refresh token.
    pub refresh_token: Secret,
    /// The access token, when one has been fetched.
    pub access_token: Option<Secret>,
    /// When the access token expires (Unix seconds).
    pub expires_at: Option<i64>,
    /// The connected athlete.
    pub athlete_id: Option<i64>,
    /// The scope granted at consent.
    pub scope: Option<String>,
    /// Which instance is refreshing right now, so that instances take turns at Strava.
    pub refresh_lease: Option<Lease>,
    /// When Strava refused `refresh_token` after a deauthorization event (Unix seconds): the app
    /// is not connected until `handler setup` runs again or an instance holding newer tokens of
    /// the same chain writes them (which clears this).
    pub refused_at: Option<i64>,
}

/// The `credentials` entity as the table holds it.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct CredentialsEntity {
    partition_key: String,
    row_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<Int64>,
    #[serde(
        rename = "ExpiresAt@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    expires_at_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    athlete_id: Option<Int64>,
    #[serde(
        rename = "AthleteId@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    athlete_id_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused_at: Option<Int64>,
    #[serde(
        rename = "RefusedAt@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    refused_at_type: Option<&'static str>,
    #[serde(flatten)]
    lease: LeaseProperties,
}

/// A lease as two properties, the same in every entity that has one.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(default)]
struct LeaseProperties {
    #[serde(rename = "RefreshLeaseOwner", skip_serializing_if = "Option::is_none")]
    owner: Option<Text>,
    #[serde(rename = "RefreshLeaseUntil", skip_serializing_if = "Option::is_none")]
    until: Option<Int64>,
    #[serde(
        rename = "RefreshLeaseUntil@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    until_type: Option<&'static str>,
}

impl LeaseProperties {
    fn from_lease(lease: Option<&Lease>) -> Self {
        match lease {
            Some(lease) => LeaseProperties {
                owner: Some(Property::Value(lease.owner.clone())),
                until: Some(Property::Value(lease.until)),
                until_type: Some(EDM_INT64),
            },
            None => LeaseProperties::default(),
        }
    }

    /// A lease that cannot be read is no lease: the worst case is one extra refresh.
    fn lease(&self) -> Option<Lease> {
        match (&self.owner, &self.until) {
            (Some(Property::Value(owner)), Some(Property::Value(until))) => Some(Lease {
                owner: owner.clone(),
                until: *until,
            }),
            _ => None,
        }
    }
}

impl CredentialsEntity {
    pub(super) fn from_credentials(c: &Credentials) -> Self {
        let text = |s: &str| Some(Property::Value(s.to_owned()));
        CredentialsEntity {
            partition_key: PARTITION.into(),
            row_key: CREDENTIALS_ROW.into(),
            client_id: text(&c.client_id),
            client_secret: text(c.client_secret.expose()),
            refresh_token: text(c.refresh_token.expose()),
            access_token: c.access_token.as_ref().and_then(|t| text(t.expose())),
            expires_at: c.expires_at.map(Property::Value),
            expires_at_type: int64_annotation(&c.expires_at),
            athlete_id: c.athlete_id.map(Property::Value),
            athlete_id_type: int64_annotation(&c.athlete_id),
            scope: c.scope.as_deref().and_then(text),
            refused_at: c.refused_at.map(Property::Value),
            refused_at_type: int64_annotation(&c.refused_at),
            lease: LeaseProperties::from_lease(c.refresh_lease.as_ref()),
        }
    }

    /// A hand-made entity needs only `ClientId`, `ClientSecret` and `RefreshToken`.
    pub(super) fn into_credentials(self) -> Result<Credentials, StoreError> {
        let row = CREDENTIALS_ROW;
        Ok(Credentials {
            client_id: required(&self.client_id, "ClientId", row)?,
            client_secret: Secret::new(required(&self.client_secret, "ClientSecret", row)?),
            refresh_token: Secret::new(required(&self.refresh_token, "RefreshToken", row)?),
            access_token: optional(&self.access_token, "AccessToken", row)?.map(Secret::new),
            expires_at: optional(&self.expires_at, "ExpiresAt", row)?,
            athlete_id: optional(&self.athlete_id, "AthleteId", row)?,
            scope: optional(&self.scope, "Scope", row)?,
            refresh_lease: self.lease.lease(),
            // An unreadable mark is no mark: the next refresh tells.
            refused_at: readable(self.refused_at),
        })
    }
}

/// What the last refresh round found.
#[derive(Clone, Debug, PartialEq)]
pub enum Shown {
    /// This run: the response JSON and its activity id.
    Run {
        /// The response JSON.
        body: String,
        /// The activity it shows.
        activity_id: i64,
    },
    /// Strava had no public run (the last one made private or deleted).
    NoPublicRun,
}

/// The last answer of a refresh round, shared by all instances.
#[derive(Clone, Debug, PartialEq)]
pub struct LatestRunSnapshot {
    /// When it was derived from the index (Unix seconds).
    pub fetched_at: i64,
    /// When the index was last reconciled with Strava's list (Unix seconds); absent in
    /// entities written before it was kept (then `fetched_at`).
    pub reconciled_at: Option<i64>,
    /// What it found.
    pub shown: Shown,
    /// The athlete's local year its year-to-date total counts.
    pub year: Option<i32>,
    /// The athlete's offset from UTC (seconds) that year is judged by.
    pub utc_offset: Option<i64>,
    /// The index clock's reading it was published at: a later one replaces it on every
    /// instance.
    pub tick: i64,
}

/// A push event recorded for every instance until one applies it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingEvent {
    /// The activity it names.
    pub id: i64,
    /// Whether it takes the activity out of the answers (a delete, or made private): applied
    /// without a Strava call.
    pub hide: bool,
    /// When it was received (Unix seconds, the receiver's clock).
    pub at: i64,
    /// The athlete and the subscription the event said it was for: checked against the stored
    /// ones before anything is applied (the receiver may not have known them yet).
    #[serde(default)]
    pub owner_id: i64,
    /// See `owner_id`.
    #[serde(default)]
    pub subscription_id: i64,
    /// The index clock's reading when it was last written to the table (0 until then): a
    /// read whose word is later began after it arrived, and answers it.
    #[serde(default)]
    pub recorded: i64,
}

/// The last read of an activity that a push event caused, kept for every instance: events
/// about the activity recorded before it began are answered by it, and the next read waits
/// until [`ActivityRead::SPACING_MS`] after it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActivityRead {
    /// The activity read.
    pub id: i64,
    /// The index clock's reading taken for the read, before it began.
    pub word: i64,
    /// When it began, by the reader's clock (Unix milliseconds): spaces the reads.
    pub at_ms: i64,
    /// When it began, in the storage service's time (Unix seconds): judges a read that never
    /// finished (its reader died).
    pub storage_at: i64,
}

impl ActivityRead {
    /// Two reads of one activity begin at least this far apart (milliseconds).
    pub const SPACING_MS: i64 = 2_000;
    /// A read is remembered this long (storage seconds): long after any read ends.
    pub const KEPT_SECONDS: i64 = 120;
}

/// The shared bucket that event-driven Strava calls are taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventBudget {
    /// Credit left, in seconds of refill (a call costs the refill interval's seconds).
    pub credit: i64,
    /// When it was last counted (Unix seconds, storage-service time).
    pub at: i64,
}

/// The `latest-run` entity: the shared answer, who is refreshing it, Strava's read budget, the
/// push events not applied yet and how far the activity index is known.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredLatestRun {
    /// The last round's answer, once there is one (none when the stored one is unreadable).
    pub snapshot: Option<LatestRunSnapshot>,
    /// The instance fetching a new answer right now, so the others wait for it.
    pub refresh_lease: Option<Lease>,
    /// Strava's rate-limit headers last seen by any instance, as JSON: the shared read budget.
    pub rate_limits: Option<String>,
    /// Push events not applied yet, oldest first (stored as `PendingEvents`, with the oldest
    /// one's time as `PendingSince`).
    pub pending_events: Vec<PendingEvent>,
    /// The bucket event-driven Strava calls are taken from.
    pub event_budget: Option<EventBudget>,
    /// The last read each recently read activity had (stored as `EventReads`).
    pub event_reads: Vec<ActivityRead>,
    /// The local year whose runs the index holds in full (after a full pass over it).
    pub indexed_year: Option<i32>,
    /// When the last full pass over the year started (Unix seconds).
    pub full_pass_at: Option<i64>,
    /// The year before `indexed_year`, once a full pass indexed it in full too (the first full
    /// pass of a year does): until then it is not served.
    pub last_year_indexed: Option<i32>,
    /// The index clock: a counter every word about the index and every published answer takes
    /// a reading of (If-Match on this entity), so that words and answers are ordered the same on
    /// every instance whatever their clocks say.
    pub index_clock: i64,
    /// The clock's reading when a confirmed deauthorization took the answer away: no answer
    /// from an older Strava word may be stored after it.
    pub refused_word: Option<i64>,
    /// Push events were dropped (too many pending): a reconciliation whose word is newer than
    /// this is due at once.
    pub reconcile_after: Option<i64>,
    /// The athlete's privacy offset the route sketches are cut with (stored as
    /// `PrivacyOffsetEast` and `PrivacyOffsetNorth`): made once, never replaced.
    pub privacy_offset: Option<StoredOffset>,
}

/// The route sketch's privacy offset as the table keeps it, in metres.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoredOffset {
    /// Metres east (west when negative).
    pub east_m: f64,
    /// Metres north (south when negative).
    pub north_m: f64,
}

impl StoredLatestRun {
    /// At most this many push events wait in the table; past it, a reconciliation is asked
    /// for instead (it covers every event).
    pub const MAX_PENDING: usize = 64;

    /// When the oldest pending event was received.
    pub fn pending_since(&self) -> Option<i64> {
        self.pending_events.iter().map(|e| e.at).min()
    }

    /// Records `event` for every instance, stamped with the index clock's reading now; with no
    /// room left, asks for a reconciliation.
    pub fn record_event(&mut self, event: PendingEvent) {
        let recorded = self.index_clock;
        let added = add_pending(&mut self.pending_events, event.clone());
        if let Some(known) = self.pending_events.iter_mut().find(|e| e.id == event.id) {
            // The newest record of the activity: a read answers it only if it began later.
            known.recorded = recorded;
        }
        if !added {
            self.ask_for_reconciliation();
        }
    }

    /// Asks for a full pass (events were dropped: only a full list of Strava covers them); an
    /// earlier request stands.
    pub fn ask_for_reconciliation(&mut self) {
        self.reconcile_after.get_or_insert(self.index_clock);
    }

    /// Clears the pending events applying `applied` also applied.
    pub fn clear_applied(&mut self, applied: &PendingEvent) {
        self.pending_events.retain(|e| !applied.covers(e));
    }

    /// Clears the pending events a read of activity `id` with word `word` answered: those
    /// recorded before the word was taken (not a hide: a delete is applied as such).
    pub fn clear_read(&mut self, id: i64, word: i64) {
        self.pending_events
            .retain(|e| e.id != id || e.hide || e.recorded >= word);
    }

    /// The last read of activity `id` a push event caused, if it is still remembered.
    pub fn last_read(&self, id: i64) -> Option<ActivityRead> {
        self.event_reads.iter().find(|r| r.id == id).copied()
    }

    /// Remembers `read` as its activity's last, forgetting reads older than
    /// [`ActivityRead::KEPT_SECONDS`] and keeping at most [`Self::MAX_PENDING`].
    pub fn remember_read(&mut self, read: ActivityRead) {
        self.event_reads.retain(|r| {
            r.id != read.id
                && read.storage_at.saturating_sub(r.storage_at) < ActivityRead::KEPT_SECONDS
        });
        self.event_reads.push(read);
        let excess = self.event_reads.len().saturating_sub(Self::MAX_PENDING);
        self.event_reads.drain(..excess);
    }

    /// Clears the pending events a round that started at `started` covered: received before
    /// it, about an activity it listed (or, with `everything`, any).
    pub fn clear_listed(
        &mut self,
        started: i64,
        listed: &std::collections::HashSet<i64>,
        everything: bool,
    ) {
        self.pending_events
            .retain(|event| event.at >= started || !(everything || listed.contains(&event.id)));
    }
}

/// Adds `event` to a pending list: it replaces an earlier event for the same activity; past
/// [`StoredLatestRun::MAX_PENDING`] it is not added (`false`).
pub fn add_pending(pending: &mut Vec<PendingEvent>, event: PendingEvent) -> bool {
    if let Some(known) = pending.iter_mut().find(|e| e.id == event.id) {
        if known.at <= event.at {
            *known = event;
        }
        true
    } else if pending.len() < StoredLatestRun::MAX_PENDING {
        pending.push(event);
        true
    } else {
        false
    }
}

impl PendingEvent {
    /// Whether applying this event also applies the recorded `event`: the same activity,
    /// recorded no later (an event recorded after it may say something newer), and not a hide
    /// cleared by reading the activity (a delete right after a create must still be applied).
    pub fn covers(&self, event: &PendingEvent) -> bool {
        event.id == self.id && event.at <= self.at && (self.hide || !event.hide)
    }
}

/// The `latest-run` entity as the table holds it.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct LatestRunEntity {
    partition_key: String,
    row_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fetched_at: Option<DateTime>,
    #[serde(
        rename = "FetchedAt@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    fetched_at_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    activity_id: Option<Int64>,
    #[serde(
        rename = "ActivityId@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    activity_id_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    no_public_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reconciled_at: Option<Int64>,
    #[serde(
        rename = "ReconciledAt@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    reconciled_at_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    year: Option<Int64>,
    #[serde(
        rename = "Year@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    year_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    utc_offset: Option<Int64>,
    #[serde(
        rename = "UtcOffset@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    utc_offset_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limits: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_since: Option<DateTime>,
    #[serde(
        rename = "PendingSince@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    pending_since_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_events: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_reads: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_budget: Option<Int64>,
    #[serde(
        rename = "EventBudget@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    event_budget_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_budget_at: Option<Int64>,
    #[serde(
        rename = "EventBudgetAt@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    event_budget_at_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    indexed_year: Option<Int64>,
    #[serde(
        rename = "IndexedYear@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    indexed_year_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_pass_at: Option<Int64>,
    #[serde(
        rename = "FullPassAt@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    full_pass_at_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_year_indexed: Option<Int64>,
    #[serde(
        rename = "LastYearIndexed@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    last_year_indexed_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index_clock: Option<Int64>,
    #[serde(
        rename = "IndexClock@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    index_clock_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused_word: Option<Int64>,
    #[serde(
        rename = "RefusedWord@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    refused_word_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reconcile_after: Option<Int64>,
    #[serde(
        rename = "ReconcileAfter@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    reconcile_after_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    privacy_offset_east: Option<f64>,
    #[serde(
        rename = "PrivacyOffsetEast@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    privacy_offset_east_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    privacy_offset_north: Option<f64>,
    #[serde(
        rename = "PrivacyOffsetNorth@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    privacy_offset_north_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer_tick: Option<Int64>,
    #[serde(
        rename = "AnswerTick@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    answer_tick_type: Option<&'static str>,
    #[serde(flatten)]
    lease: LeaseProperties,
}

fn readable<T>(property: Option<Property<T>>) -> Option<T> {
    match property {
        Some(Property::Value(value)) => Some(value),
        _ => None,
    }
}

impl LatestRunEntity {
    pub(super) fn from_latest_run(value: &StoredLatestRun) -> Self {
        let int = |v: Option<i64>| (v.map(Property::Value), int64_annotation(&v));
        let (event_budget, event_budget_type) = int(value.event_budget.map(|b| b.credit));
        let (event_budget_at, event_budget_at_type) = int(value.event_budget.map(|b| b.at));
        let (indexed_year, indexed_year_type) = int(value.indexed_year.map(i64::from));
        let (full_pass_at, full_pass_at_type) = int(value.full_pass_at);
        let (last_year_indexed, last_year_indexed_type) =
            int(value.last_year_indexed.map(i64::from));
        let (index_clock, index_clock_type) = int(Some(value.index_clock));
        let (refused_word, refused_word_type) = int(value.refused_word);
        let (reconcile_after, reconcile_after_type) = int(value.reconcile_after);
        let mut entity = LatestRunEntity {
            partition_key: PARTITION.into(),
            row_key: LATEST_RUN_ROW.into(),
            rate_limits: value.rate_limits.clone().map(Property::Value),
            lease: LeaseProperties::from_lease(value.refresh_lease.as_ref()),
            event_budget,
            event_budget_type,
            event_budget_at,
            event_budget_at_type,
            indexed_year,
            indexed_year_type,
            full_pass_at,
            full_pass_at_type,
            last_year_indexed,
            last_year_indexed_type,
            index_clock,
            index_clock_type,
            refused_word,
            refused_word_type,
            reconcile_after,
            reconcile_after_type,
            privacy_offset_east: value.privacy_offset.map(|o| o.east_m),
            privacy_offset_east_type: value.privacy_offset.map(|_| EDM_DOUBLE),
            privacy_offset_north: value.privacy_offset.map(|o| o.north_m),
            privacy_offset_north_type: value.privacy_offset.map(|_| EDM_DOUBLE),
            ..Default::default()
        };
        if let Some(at) = value
            .pending_since()
            .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok())
        {
            entity.pending_since = Some(Property::Value(at));
            entity.pending_since_type = Some(EDM_DATETIME);
            entity.pending_events = serde_json::to_string(&value.pending_events)
                .ok()
                .map(Property::Value);
        }
        if !value.event_reads.is_empty() {
            entity.event_reads = serde_json::to_string(&value.event_reads)
                .ok()
                .map(Property::Value);
        }
        if let Some(snapshot) = &value.snapshot {
            if let Ok(at) = OffsetDateTime::from_unix_timestamp(snapshot.fetched_at) {
                entity.fetched_at = Some(Property::Value(at));
                entity.fetched_at_type = Some(EDM_DATETIME);
            }
            (entity.year, entity.year_type) = int(snapshot.year.map(i64::from));
            (entity.reconciled_at, entity.reconciled_at_type) = int(snapshot.reconciled_at);
            (entity.utc_offset, entity.utc_offset_type) = int(snapshot.utc_offset);
            (entity.answer_tick, entity.answer_tick_type) = int(Some(snapshot.tick));
            match &snapshot.shown {
                Shown::Run { body, activity_id } => {
                    entity.body = Some(Property::Value(body.clone()));
                    entity.activity_id = Some(Property::Value(*activity_id));
                    entity.activity_id_type = Some(EDM_INT64);
                }
                Shown::NoPublicRun => entity.no_public_run = Some(true),
            }
        }
        entity
    }

    /// The entity's values; the snapshot is `Err` (naming the property) when it cannot be read,
    /// so the caller can treat it as absent and overwrite it.
    pub(super) fn into_latest_run(self) -> (StoredLatestRun, Result<(), StoreError>) {
        let row = LATEST_RUN_ROW;
        let snapshot = (|| -> Result<Option<LatestRunSnapshot>, StoreError> {
            if self.body.is_none() && self.fetched_at.is_none() && self.no_public_run.is_none() {
                return Ok(None);
            }
            let fetched_at = required(&self.fetched_at, "FetchedAt", row)?.unix_timestamp();
            let shown = if self.no_public_run == Some(true) {
                Shown::NoPublicRun
            } else {
                Shown::Run {
                    body: required(&self.body, "Body", row)?,
                    activity_id: required(&self.activity_id, "ActivityId", row)?,
                }
            };
            Ok(Some(LatestRunSnapshot {
                fetched_at,
                reconciled_at: optional(&self.reconciled_at, "ReconciledAt", row)?,
                shown,
                year: optional(&self.year, "Year", row)?.and_then(|y| i32::try_from(y).ok()),
                utc_offset: optional(&self.utc_offset, "UtcOffset", row)?,
                tick: optional(&self.answer_tick, "AnswerTick", row)?.unwrap_or(0),
            }))
        })();
        let (snapshot, problem) = match snapshot {
            Ok(snapshot) => (snapshot, Ok(())),
            Err(err) => (None, Err(err)),
        };
        let mut pending_events: Vec<PendingEvent> = readable(self.pending_events)
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        if pending_events.is_empty() && self.pending_since.is_some() {
            // A marker without a readable list (a hand edit, or a version that kept only the
            // time): the next round reconciles with Strava, which covers any event.
            pending_events.push(PendingEvent {
                id: 0,
                hide: false,
                owner_id: 0,
                subscription_id: 0,
                recorded: 0,
                at: match self.pending_since {
                    Some(Property::Value(at)) => at.unix_timestamp().max(1),
                    _ => 1,
                },
            });
        }
        let event_budget = match (readable(self.event_budget), readable(self.event_budget_at)) {
            (Some(credit), Some(at)) => Some(EventBudget { credit, at }),
            _ => None,
        };
        let value = StoredLatestRun {
            snapshot,
            refresh_lease: self.lease.lease(),
            rate_limits: readable(self.rate_limits),
            pending_events,
            event_budget,
            // Unreadable: forgotten (the next read of each activity is not held back).
            event_reads: readable(self.event_reads)
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default(),
            indexed_year: readable(self.indexed_year).and_then(|y| i32::try_from(y).ok()),
            full_pass_at: readable(self.full_pass_at),
            last_year_indexed: readable(self.last_year_indexed).and_then(|y| i32::try_from(y).ok()),
            index_clock: readable(self.index_clock).unwrap_or(0),
            refused_word: readable(self.refused_word),
            reconcile_after: readable(self.reconcile_after),
            privacy_offset: match (self.privacy_offset_east, self.privacy_offset_north) {
                (Some(east_m), Some(north_m)) => Some(StoredOffset { east_m, north_m }),
                _ => None,
            },
        };
        (value, problem)
    }
}

/// The `subscription` entity: the Strava push subscription made by `handler subscribe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// Strava's id for it (events carry it as `subscription_id`).
    pub id: i64,
    /// The callback address as given to `handler subscribe`, without the secret.
    pub callback_url: String,
    /// The callback's secret path segment: Strava delivers to `{callback_url}/{secret}`, and a
    /// `POST` without it changes nothing. `None` for a subscription made before callbacks
    /// carried one (its events come to the bare path).
    pub callback_secret: Option<Secret>,
}

/// The `subscription` entity as the table holds it.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct SubscriptionEntity {
    partition_key: String,
    row_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_id: Option<Int64>,
    #[serde(
        rename = "SubscriptionId@odata.type",
        skip_serializing_if = "Option::is_none",
        skip_deserializing
    )]
    subscription_id_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_url: Option<Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_secret: Option<Text>,
}

impl SubscriptionEntity {
    pub(super) fn from_subscription(value: &Subscription) -> Self {
        SubscriptionEntity {
            partition_key: PARTITION.into(),
            row_key: SUBSCRIPTION_ROW.into(),
            subscription_id: Some(Property::Value(value.id)),
            subscription_id_type: Some(EDM_INT64),
            callback_url: Some(Property::Value(value.callback_url.clone())),
            callback_secret: value
                .callback_secret
                .as_ref()
                .map(|secret| Property::Value(secret.expose().to_owned())),
        }
    }

    pub(super) fn into_subscription(self) -> Result<Subscription, StoreError> {
        let row = SUBSCRIPTION_ROW;
        Ok(Subscription {
            id: required(&self.subscription_id, "SubscriptionId", row)?,
            callback_url: optional(&self.callback_url, "CallbackUrl", row)?.unwrap_or_default(),
            // An empty one (a hand edit) counts as none.
            callback_secret: optional(&self.callback_secret, "CallbackSecret", row)?
                .filter(|secret| !secret.is_empty())
                .map(Secret::new),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn credentials_from(value: Value) -> Result<Credentials, StoreError> {
        serde_json::from_value::<CredentialsEntity>(value)
            .expect("any object decodes")
            .into_credentials()
    }

    #[test]
    fn hand_made_entity_with_three_fields_is_enough() {
        let creds = credentials_from(
            json!({"ClientId": 139205, "ClientSecret": "s3cret", "RefreshToken": "r1"}),
        )
        .expect("valid");
        assert_eq!(creds.client_id, "139205");
        assert_eq!(creds.refresh_token.expose(), "r1");
        assert!(creds.access_token.is_none());
        assert!(creds.expires_at.is_none());
    }

    #[test]
    fn credentials_round_trip_with_int64_as_annotated_strings() {
        let creds = Credentials {
            client_id: "1".into(),
            client_secret: Secret::new("s"),
            refresh_token: Secret::new("r"),
            access_token: Some(Secret::new("a")),
            expires_at: Some(1_760_322_667),
            athlete_id: Some(51_877_240),
            scope: Some("read,activity:read".into()),
            refresh_lease: Some(Lease {
                owner: "instance-a".into(),
                until: 1_760_000_030,
            }),
            refused_at: Some(1_760_000_500),
        };
        let entity =
            serde_json::to_value(CredentialsEntity::from_credentials(&creds)).expect("json");
        assert_eq!(entity["ExpiresAt"], "1760322667");
        assert_eq!(entity["ExpiresAt@odata.type"], "Edm.Int64");
        assert_eq!(entity["RefreshLeaseUntil@odata.type"], "Edm.Int64");
        assert_eq!(entity["PartitionKey"], PARTITION);
        assert_eq!(credentials_from(entity).expect("valid"), creds);
    }

    #[test]
    fn missing_or_broken_properties_are_named_without_values() {
        let err = credentials_from(json!({"ClientId": "1", "ClientSecret": "topsecret"}))
            .expect_err("no token");
        assert!(err.to_string().contains("RefreshToken is missing"), "{err}");
        let err = credentials_from(json!({"ClientId": "1", "RefreshToken": "topsecret"}))
            .expect_err("no secret");
        assert!(err.to_string().contains("ClientSecret is missing"), "{err}");
        let err = credentials_from(
            json!({"ClientId": "1", "ClientSecret": "topsecret", "RefreshToken": "r", "ExpiresAt": "soon"}),
        )
        .expect_err("bad int");
        assert!(err.to_string().contains("ExpiresAt"));
        assert!(!err.to_string().contains("topsecret"));
    }

    #[test]
    fn latest_run_round_trips_both_kinds_of_snapshot() {
        for shown in [
            Shown::Run {
                body: "{\"id\":7}".into(),
                activity_id: 7,
            },
            Shown::NoPublicRun,
        ] {
            let value = StoredLatestRun {
                snapshot: Some(LatestRunSnapshot {
                    fetched_at: 1_760_000_000,
                    reconciled_at: Some(1_759_999_990),
                    shown,
                    year: Some(2025),
                    utc_offset: Some(7200),
                    tick: 41,
                }),
                refresh_lease: None,
                rate_limits: Some("{}".into()),
                pending_events: vec![PendingEvent {
                    id: 7,
                    hide: true,
                    at: 1_760_000_100,
                    owner_id: 51_877_240,
                    subscription_id: 1,
                    recorded: 40,
                }],
                event_budget: Some(EventBudget {
                    credit: 4_500,
                    at: 1_760_000_050,
                }),
                event_reads: vec![ActivityRead {
                    id: 7,
                    word: 41,
                    at_ms: 1_760_000_100_250,
                    storage_at: 1_760_000_100,
                }],
                indexed_year: Some(2025),
                full_pass_at: Some(1_759_990_000),
                last_year_indexed: Some(2024),
                index_clock: 42,
                refused_word: Some(40),
                reconcile_after: Some(39),
                privacy_offset: Some(StoredOffset {
                    east_m: -150.25,
                    north_m: 100.0,
                }),
            };
            let entity =
                serde_json::to_value(LatestRunEntity::from_latest_run(&value)).expect("json");
            let (back, problem) = serde_json::from_value::<LatestRunEntity>(entity)
                .expect("decodes")
                .into_latest_run();
            assert!(problem.is_ok());
            assert_eq!(back, value);
        }
    }

    #[test]
    fn a_subscription_keeps_its_callback_secret_and_an_old_one_has_none() {
        let value = Subscription {
            id: 287_431,
            callback_url: "https://app.example/api/StravaWebhook".into(),
            callback_secret: Some(Secret::new("k3W9-fQ_2xYbN7mLpR4sTuVw")),
        };
        let entity =
            serde_json::to_value(SubscriptionEntity::from_subscription(&value)).expect("json");
        assert_eq!(entity["CallbackSecret"], "k3W9-fQ_2xYbN7mLpR4sTuVw");
        let back = serde_json::from_value::<SubscriptionEntity>(entity)
            .expect("decodes")
            .into_subscription()
            .expect("valid");
        assert_eq!(back, value);
        let old = serde_json::from_value::<SubscriptionEntity>(
            json!({"SubscriptionId": "287431", "CallbackUrl": "https://app.example/api/StravaWebhook"}),
        )
        .expect("decodes")
        .into_subscription()
        .expect("valid");
        assert_eq!(old.callback_secret, None);
        assert!(
            !format!("{back:?}").contains("k3W9"),
            "Debug hides the secret"
        );
    }

    #[test]
    fn a_half_written_latest_run_is_named_and_read_as_no_snapshot() {
        let (value, problem) =
            serde_json::from_value::<LatestRunEntity>(json!({"Body": "{}", "RateLimits": "x"}))
                .expect("decodes")
                .into_latest_run();
        assert!(value.snapshot.is_none());
        assert_eq!(value.rate_limits.as_deref(), Some("x"));
        assert!(problem
            .expect_err("corrupt")
            .to_string()
            .contains("FetchedAt is missing"));
    }
}
