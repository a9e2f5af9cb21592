//! The activity index: the app's knowledge of the owner's public runs, one table entity per run
//! ([`IndexedRun`]), partitioned by the run's local year. It is kept by reconciliations with
//! Strava's list (a page of the newest activities once per window, a full pass over the year once
//! a day) and by push events applied one by one; the answers (the latest run, the year's total)
//! are derived from it, never from Strava's stats endpoint. This module decides what a list or an
//! activity means for the index and writes that; it makes no Strava call itself.

pub mod budget;
pub mod year;

use crate::clock::Clock;
use crate::store::{IndexedRun, Store, StoreError, Tombstone, Versioned};
use crate::strava::models::SummaryActivity;
use crate::view::route_shape;
use azure_core::Etag;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

/// How many years back the newest run is looked for when this year has none.
const LOOK_BACK_YEARS: i32 = 3;
/// How often a write is tried when other writers keep changing the same entity first.
const WRITE_ATTEMPTS: usize = 8;
/// How long a tombstone is kept (days).
const TOMBSTONE_DAYS: i64 = 2;

/// The settings the index follows.
#[derive(Clone, Debug)]
pub struct IndexSettings {
    /// Which `sport_type`s count as a run.
    pub sport_types: Vec<String>,
    /// With `WIDGET_ROUTE_SHAPE=true`, the privacy zone runs' sketches are cut by; `None`: no
    /// sketch.
    pub route_shape: Option<SketchZone>,
}

/// The privacy zone runs' sketches are cut by, moved by the athlete's privacy offset once that
/// is known (the one the table keeps): until then no sketch is cut, so none is ever cut with
/// another offset. Clones share what is known.
#[derive(Clone, Debug)]
pub struct SketchZone {
    zone: route_shape::PrivacyZone,
    with_offset: Arc<RwLock<Option<route_shape::PrivacyZone>>>,
}

impl SketchZone {
    /// `zone`, waiting for the athlete's offset.
    pub fn new(zone: route_shape::PrivacyZone) -> Self {
        SketchZone {
            zone,
            with_offset: Arc::new(RwLock::new(None)),
        }
    }

    /// `zone` as it is, its offset taken as the athlete's (tests and tools).
    pub fn known(zone: route_shape::PrivacyZone) -> Self {
        let known = SketchZone::new(zone.clone());
        known.keep_offset(zone.offset());
        known
    }

    /// The setting: the privacy radius in metres.
    pub fn radius_meters(&self) -> f64 {
        self.zone.radius_meters()
    }

    /// The athlete's offset, once known.
    pub fn offset(&self) -> Option<route_shape::PrivacyOffset> {
        self.read().as_ref().map(|zone| zone.offset())
    }

    /// Cuts sketches with `offset` (the one the table keeps) from now on.
    pub fn keep_offset(&self, offset: route_shape::PrivacyOffset) {
        let zone = self.zone.clone().with_offset(offset);
        if let Ok(mut with_offset) = self.with_offset.write() {
            *with_offset = Some(zone);
        }
    }

    /// The sketch of `polyline` (activity `activity_id`); `None` while the offset is not known.
    fn sketch(&self, polyline: &str, activity_id: i64) -> Option<String> {
        let zone = self.read();
        route_shape::route_shape(polyline, activity_id, zone.as_ref()?)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<route_shape::PrivacyZone>> {
        // Written whole under the lock: a poisoned lock still holds a whole value.
        self.with_offset
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl IndexSettings {
    /// `activity` as an index entry when it belongs there, carrying over what `previous` knew of
    /// its photo while the photo count is the same. It belongs there when it is public
    /// ([`SummaryActivity::is_public`]), has a start, and its `sport_type` (the deprecated `type`
    /// when `sport_type` is absent) is one of [`IndexSettings::sport_types`], exactly; manual and
    /// trainer runs count. The entry is an allow-list: no coordinate or polyline of Strava's is
    /// kept, only the route sketch cut by [`IndexSettings::route_shape`] when that is set.
    pub fn entry_of(
        &self,
        activity: &SummaryActivity,
        previous: Option<&IndexedRun>,
    ) -> Option<IndexedRun> {
        let sport = activity
            .sport_type
            .as_deref()
            .or(activity.activity_type.as_deref())?;
        if !activity.is_public() || !self.sport_types.iter().any(|s| s == sport) {
            return None;
        }
        let start = activity.start_date?.unix_timestamp();
        // Unknown (absent) counts as "may have photos": look once.
        let photo_count = activity.total_photo_count.unwrap_or(-1);
        let (photo_url, photo_checked) = match previous {
            Some(p) if p.photo_checked && p.photo_count == photo_count => {
                (p.photo_url.clone(), true)
            }
            _ => (None, photo_count == 0),
        };
        Some(IndexedRun {
            id: activity.id,
            name: activity.name.clone(),
            sport_type: sport.to_owned(),
            start,
            start_date_local: activity.start_date_local.clone(),
            timezone: activity.timezone.clone(),
            distance: if activity.distance.is_finite() {
                activity.distance
            } else {
                0.0
            },
            moving_time: activity.moving_time,
            elapsed_time: activity.elapsed_time,
            total_elevation_gain: activity.total_elevation_gain.filter(|n| n.is_finite()),
            average_speed: activity.average_speed.filter(|n| n.is_finite()),
            kudos_count: activity.kudos_count,
            photo_count,
            photo_url,
            photo_checked,
            route_shape: self.route_shape.as_ref().and_then(|zone| {
                let polyline = activity.summary_polyline.as_deref()?;
                zone.sketch(polyline, activity.id)
            }),
            hidden: false,
            word: 0,
        })
    }
}

/// What a list of activities covers: everything from `from` on (Unix seconds), or, when the
/// list ended before its page did, every activity there is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Covers {
    /// Activities starting at or after this instant.
    From(i64),
    /// All of them.
    Everything,
}

/// The index as the answers need it: this year's runs, and the newest run there is.
#[derive(Clone, Debug, Default)]
pub struct IndexView {
    /// The local year the totals count.
    pub year: i32,
    /// This year's public runs.
    pub runs: Vec<IndexedRun>,
    /// The newest public run (this year's, or an earlier year's when this one has none).
    pub latest: Option<IndexedRun>,
}

impl IndexView {
    /// The year's distance so far (metres).
    pub fn year_distance(&self) -> f64 {
        // A fold from +0.0: an empty float sum is -0.0, which would print as `-0.0`.
        self.runs.iter().fold(0.0, |sum, r| sum + r.distance)
    }
}

/// The index in the table; cheap to clone.
#[derive(Clone, Debug)]
pub struct ActivityIndex {
    store: Store,
    settings: IndexSettings,
    clock: Clock,
}

/// The newest of `runs` by start (the id breaks ties, so the pick never depends on order).
pub fn newest(runs: &[IndexedRun]) -> Option<&IndexedRun> {
    runs.iter().max_by_key(|r| (r.start, r.id))
}

impl ActivityIndex {
    /// The index kept in `store`.
    pub fn new(store: Store, settings: IndexSettings, clock: Clock) -> Self {
        ActivityIndex {
            store,
            settings,
            clock,
        }
    }

    /// `activity` as an index entry when it belongs there: [`IndexSettings::entry_of`] with
    /// this index's settings.
    pub fn entry_of(
        &self,
        activity: &SummaryActivity,
        previous: Option<&IndexedRun>,
    ) -> Option<IndexedRun> {
        self.settings.entry_of(activity, previous)
    }

    /// The zone sketches are cut by (`WIDGET_ROUTE_SHAPE=true`).
    pub fn sketch_zone(&self) -> Option<&SketchZone> {
        self.settings.route_shape.as_ref()
    }

    /// Brings the index in line with a list from Strava covering `covers`, a word taken at
    /// index-clock reading `word`: listed public runs are written (when changed), and indexed
    /// runs whose *stored* start lies in the covered range that the list no longer has (deleted,
    /// made private, changed sport) are removed. An entry holding a newer word (an event
    /// applied on any instance after the list was asked for) is left as it is. `this_year` bounds
    /// which years are looked at when the list covers everything.
    pub async fn reconcile(
        &self,
        listed: &[SummaryActivity],
        covers: Covers,
        word: i64,
        this_year: i32,
    ) -> Result<(), StoreError> {
        let oldest_year = match covers {
            Covers::From(from) => year::utc_year(from).min(this_year) - 1,
            Covers::Everything => this_year - LOOK_BACK_YEARS,
        };
        let years: BTreeSet<i32> =
            (oldest_year.max(this_year - LOOK_BACK_YEARS)..=this_year).collect();
        let mut existing: HashMap<i64, Versioned<IndexedRun>> = HashMap::new();
        for year in &years {
            for run in self.store.load_runs_versioned(*year).await? {
                existing.insert(run.value.id, run);
            }
        }
        // One version per activity (a list never repeats one, but if it did, the newest start
        // wins, whatever the order).
        let mut newest_listed: HashMap<i64, &SummaryActivity> = HashMap::new();
        for activity in listed {
            let start = |a: &SummaryActivity| a.start_date.map(|s| s.unix_timestamp());
            newest_listed
                .entry(activity.id)
                .and_modify(|kept| {
                    if start(activity) > start(kept) {
                        *kept = activity;
                    }
                })
                .or_insert(activity);
        }
        // Activities taken out by a newer word (a hide, a removal) are not written back: looked
        // at before the writes, and again after them for a hide that raced them.
        let taken_out: HashMap<i64, i64> = self
            .store
            .load_tombstones()
            .await?
            .iter()
            .map(|t| (t.value.id, t.value.word))
            .collect();
        let mut written = Vec::new();
        // New and changed entries that stay in their year, written in batches per year.
        let mut batched: BTreeMap<i32, Vec<(IndexedRun, Option<Etag>)>> = BTreeMap::new();
        for activity in newest_listed.values() {
            let previous = existing.get(&activity.id);
            if previous.is_some_and(|p| p.value.word > word)
                || taken_out.get(&activity.id).is_some_and(|t| *t > word)
            {
                continue;
            }
            let Some(mut entry) = self.entry_of(activity, previous.map(|p| &p.value)) else {
                // Listed, but not a public run (followers only, another sport).
                if previous.is_some() {
                    self.remove(activity.id, word, this_year).await?;
                }
                continue;
            };
            entry.word = word;
            let unchanged = previous.is_some_and(|p| {
                IndexedRun {
                    word,
                    ..p.value.clone()
                } == entry
            });
            if unchanged {
                continue;
            }
            match previous {
                Some(p) if p.value.local_year() != entry.local_year() => {
                    // Moved to another year (a start date edited across New Year).
                    if self.put(&entry, this_year).await? {
                        written.push(entry);
                    }
                }
                _ => batched
                    .entry(entry.local_year())
                    .or_default()
                    .push((entry, previous.map(|p| p.etag.clone()))),
            }
        }
        for (year, entries) in batched {
            for chunk in entries.chunks(Store::BATCH) {
                match self.store.write_runs(year, chunk).await {
                    Ok(()) => written.extend(chunk.iter().map(|(entry, _)| entry.clone())),
                    // Another writer got in first somewhere in the batch: one by one, the
                    // careful way (never over a newer word).
                    Err(StoreError::Conflict) => {
                        for (entry, _) in chunk {
                            if self.put(entry, this_year).await? {
                                written.push(entry.clone());
                            }
                        }
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        // A hide applied meanwhile (on any instance) raised its tombstone before it looked for
        // the entry: either it found what was just written, or the tombstone is seen here.
        let tombstones = self.store.load_tombstones().await?;
        let newer_hides: HashMap<i64, i64> = tombstones
            .iter()
            .filter(|t| t.value.word > word)
            .map(|t| (t.value.id, t.value.word))
            .collect();
        for entry in &written {
            if let Some(hide) = newer_hides.get(&entry.id) {
                self.hide_in(entry.local_year(), entry.id, *hide).await?;
            }
        }
        for run in existing.values() {
            let covered = match covers {
                Covers::From(from) => run.value.start >= from,
                Covers::Everything => true,
            };
            if covered && !newest_listed.contains_key(&run.value.id) && run.value.word <= word {
                tracing::info!(
                    activity = run.value.id,
                    "a run left Strava's list: removed from the index"
                );
                self.remove(run.value.id, word, this_year).await?;
            }
        }
        self.prune_tombstones(&tombstones).await;
        Ok(())
    }

    /// Writes one entry (an event's activity, a run whose photo was looked up, a round's
    /// listed run), unless the index holds a newer word about it, and removes its copies in
    /// other years (a start date changed across New Year), in that order, so it is never
    /// missing in between; a newer tombstone then takes it out again. Whether it stands.
    pub async fn put(&self, entry: &IndexedRun, this_year: i32) -> Result<bool, StoreError> {
        let year = entry.local_year();
        // Taken out by a newer word already: not written back, not even for a moment.
        if let Some(tombstone) = self.store.load_tombstone(entry.id).await? {
            if tombstone.value.word > entry.word {
                self.hide_in(year, entry.id, tombstone.value.word).await?;
                return Ok(false);
            }
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let existing = self.store.load_run(year, entry.id).await?;
            if existing.as_ref().is_some_and(|e| e.value.word > entry.word) {
                return Ok(false);
            }
            match self
                .store
                .write_run(entry, existing.as_ref().map(|e| &e.etag))
                .await
            {
                Ok(()) => break,
                Err(StoreError::Conflict) if attempts < WRITE_ATTEMPTS => continue,
                Err(err) => return Err(err),
            }
        }
        for other in (this_year - LOOK_BACK_YEARS)..=this_year {
            if other != year && self.delete_older(other, entry.id, entry.word).await? {
                // A newer word stands in another year: this entry is the older one.
                self.delete_older(year, entry.id, entry.word).await?;
                return Ok(false);
            }
        }
        if let Some(tombstone) = self.store.load_tombstone(entry.id).await? {
            if tombstone.value.word > entry.word {
                self.hide_in(year, entry.id, tombstone.value.word).await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Takes activity `id` out of the index for a word taken at `word` (Strava no longer lists
    /// it, or its read says it is not a public run): a tombstone first, then every entry
    /// holding an older word is deleted.
    pub async fn remove(&self, id: i64, word: i64, this_year: i32) -> Result<(), StoreError> {
        self.raise_tombstone(id, word).await?;
        for year in (this_year - LOOK_BACK_YEARS)..=this_year {
            self.delete_older(year, id, word).await?;
        }
        Ok(())
    }

    /// Takes activity `id` out of every answer without Strava's word (a push event's delete
    /// or made-private), at index-clock reading `word`: a tombstone first (so a create read
    /// earlier and written later cannot bring it back), then its entries are marked hidden, so
    /// the next reconciliation either brings it back (still listed) or removes it.
    pub async fn hide(&self, id: i64, word: i64, this_year: i32) -> Result<(), StoreError> {
        self.raise_tombstone(id, word).await?;
        for year in (this_year - LOOK_BACK_YEARS)..=this_year {
            self.hide_in(year, id, word).await?;
        }
        Ok(())
    }

    /// Marks the entry of `id` in `year` hidden at `word`, unless it holds a newer word.
    async fn hide_in(&self, year: i32, id: i64, word: i64) -> Result<(), StoreError> {
        for attempt in 1..=WRITE_ATTEMPTS {
            let Some(existing) = self.store.load_run(year, id).await? else {
                return Ok(());
            };
            if existing.value.word > word || (existing.value.hidden && existing.value.word == word)
            {
                return Ok(());
            }
            let hidden = IndexedRun {
                hidden: true,
                word,
                ..existing.value
            };
            match self.store.write_run(&hidden, Some(&existing.etag)).await {
                Err(StoreError::Conflict) if attempt < WRITE_ATTEMPTS => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict)
    }

    /// Deletes the entry of `id` in `year` unless it holds a word newer than `word`; whether a
    /// newer one is there.
    async fn delete_older(&self, year: i32, id: i64, word: i64) -> Result<bool, StoreError> {
        for attempt in 1..=WRITE_ATTEMPTS {
            let Some(existing) = self.store.load_run(year, id).await? else {
                return Ok(false);
            };
            if existing.value.word > word {
                return Ok(true);
            }
            match self
                .store
                .delete_run_if_match(year, id, &existing.etag)
                .await
            {
                Err(StoreError::Conflict) if attempt < WRITE_ATTEMPTS => continue,
                other => return other.map(|()| false),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Raises the tombstone of `id` to `word` (never lowers it).
    async fn raise_tombstone(&self, id: i64, word: i64) -> Result<(), StoreError> {
        for attempt in 1..=WRITE_ATTEMPTS {
            let existing = self.store.load_tombstone(id).await?;
            if existing.as_ref().is_some_and(|t| t.value.word >= word) {
                return Ok(());
            }
            let tombstone = Tombstone {
                id,
                word,
                at: self.clock.now(),
            };
            match self
                .store
                .write_tombstone(&tombstone, existing.as_ref().map(|t| &t.etag))
                .await
            {
                Err(StoreError::Conflict) if attempt < WRITE_ATTEMPTS => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict)
    }

    /// Deletes tombstones older than [`TOMBSTONE_DAYS`]: every word that was in flight when
    /// they were raised has long been written or given up. Best effort.
    async fn prune_tombstones(&self, tombstones: &[Versioned<Tombstone>]) {
        let before = self.clock.now() - TOMBSTONE_DAYS * 86_400;
        for old in tombstones.iter().filter(|t| t.value.at < before) {
            if let Err(err) = self.store.delete_tombstone(old.value.id, &old.etag).await {
                tracing::debug!(error = %err, "could not prune a tombstone");
            }
        }
    }

    /// Whether the index holds an entry (shown or hidden) of a run that starts before `before`
    /// (Unix seconds), among the years looked at.
    pub async fn holds_runs_before(&self, before: i64, this_year: i32) -> Result<bool, StoreError> {
        for year in
            ((this_year - LOOK_BACK_YEARS)..=this_year.min(year::utc_year(before) + 1)).rev()
        {
            if self
                .store
                .load_runs(year)
                .await?
                .iter()
                .any(|run| run.start < before)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes every entry of the years looked at (a confirmed deauthorization).
    pub async fn clear(&self, this_year: i32) -> Result<(), StoreError> {
        for year in (this_year - LOOK_BACK_YEARS)..=this_year {
            for run in self.store.load_runs(year).await? {
                self.store.delete_run(year, run.id).await?;
            }
        }
        Ok(())
    }

    /// This year's runs and the newest run there is (looking back a few years when this one
    /// has none yet: on 2 January, or for an owner whose last run was in autumn).
    pub async fn view(&self, this_year: i32) -> Result<IndexView, StoreError> {
        let shown = |runs: Vec<IndexedRun>| -> Vec<IndexedRun> {
            runs.into_iter().filter(|r| !r.hidden).collect()
        };
        let runs = shown(self.store.load_runs(this_year).await?);
        let mut latest = newest(&runs).cloned();
        let mut year = this_year;
        while latest.is_none() && year > this_year - LOOK_BACK_YEARS {
            year -= 1;
            latest = newest(&shown(self.store.load_runs(year).await?)).cloned();
        }
        Ok(IndexView {
            year: this_year,
            runs,
            latest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> ActivityIndex {
        let settings = crate::config::StorageSettings {
            connection_string: crate::secret::Secret::new("UseDevelopmentStorage=true"),
            setting_name: "AzureWebJobsStorage",
            table_name: "unused".into(),
        };
        ActivityIndex::new(
            Store::connect(&settings).expect("no I/O"),
            IndexSettings {
                sport_types: vec!["Run".into(), "TrailRun".into(), "VirtualRun".into()],
                route_shape: None,
            },
            Clock::system(),
        )
    }

    fn activities() -> Vec<SummaryActivity> {
        serde_json::from_str(include_str!(
            "../../tests/data/strava/athlete-activities.json"
        ))
        .expect("sample")
    }

    #[test]
    fn only_public_runs_become_entries() {
        let index = index();
        let ids: Vec<i64> = activities()
            .iter()
            .filter_map(|a| index.entry_of(a, None))
            .map(|r| r.id)
            .collect();
        // Not the followers-only ride, the only-me run or the walk.
        assert_eq!(ids, vec![16128930471, 16110453318, 16101877250]);
    }

    #[test]
    fn a_known_photo_is_kept_while_the_photo_count_is_the_same() {
        let index = index();
        let list = activities();
        let activity = list
            .iter()
            .find(|a| a.id == 16128930471)
            .expect("sample run");
        let mut previous = index.entry_of(activity, None).expect("entry");
        previous.photo_url = Some("https://example.test/p.jpg".into());
        previous.photo_checked = true;
        let again = index.entry_of(activity, Some(&previous)).expect("entry");
        assert_eq!(again.photo_url, previous.photo_url);
        assert!(again.photo_checked);
        let mut more_photos = activity.clone();
        more_photos.total_photo_count = Some(previous.photo_count + 1);
        let changed = index
            .entry_of(&more_photos, Some(&previous))
            .expect("entry");
        assert!(!changed.photo_checked, "a new photo is looked up again");
        assert_eq!(changed.photo_url, None);
    }

    /// The index's settings for `sport_types`, without the route sketch.
    fn settings(sport_types: &[&str]) -> IndexSettings {
        IndexSettings {
            sport_types: sport_types.iter().map(|s| (*s).to_owned()).collect(),
            route_shape: None,
        }
    }

    const RUNS: [&str; 3] = ["Run", "TrailRun", "VirtualRun"];

    /// The sample list with `change` made to its JSON, decoded as the client decodes it.
    fn changed(change: impl FnOnce(&mut serde_json::Value)) -> Vec<SummaryActivity> {
        let mut value: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/data/strava/athlete-activities.json"
        ))
        .expect("sample");
        change(&mut value);
        serde_json::from_value(value).expect("decodes")
    }

    /// The id of the newest entry `settings` makes of `list`.
    fn newest_id(settings: &IndexSettings, list: &[SummaryActivity]) -> Option<i64> {
        let entries: Vec<IndexedRun> = list
            .iter()
            .filter_map(|a| settings.entry_of(a, None))
            .collect();
        newest(&entries).map(|r| r.id)
    }

    #[test]
    fn the_newest_entry_of_the_sample_is_its_public_run_with_photos() {
        // Newer, but only me (a run) and followers only (a ride).
        assert_eq!(
            newest_id(&settings(&RUNS), &activities()),
            Some(16128930471)
        );
        let entry = settings(&RUNS)
            .entry_of(&activities()[2], None)
            .expect("entry");
        assert_eq!(entry.photo_count, 3);
        assert!(!entry.photo_checked, "its photo is looked up");
        // Followers only, and newest: the public run before it.
        let list = changed(|v| {
            v[2]["start_date"] = "2025-10-13T06:00:00Z".into();
            v[2]["visibility"] = "followers_only".into();
        });
        assert_eq!(newest_id(&settings(&RUNS), &list), Some(16110453318));
    }

    #[test]
    fn a_run_counts_only_by_a_configured_sport_type() {
        // The trail run (`type` Run) made newest.
        let list = changed(|v| v[3]["start_date"] = "2025-10-13T06:00:00Z".into());
        assert_eq!(newest_id(&settings(&RUNS), &list), Some(16110453318));
        assert_eq!(newest_id(&settings(&["Run"]), &list), Some(16128930471));
        // Without `sport_type`, the deprecated `type` counts (the virtual run's is VirtualRun).
        let list = changed(|v| {
            v[4]["start_date"] = "2025-10-13T06:00:00Z".into();
            v[4].as_object_mut().expect("object").remove("sport_type");
        });
        assert_eq!(newest_id(&settings(&RUNS), &list), Some(16101877250));
        let entry = settings(&RUNS).entry_of(&list[4], None).expect("entry");
        assert_eq!(entry.sport_type, "VirtualRun");
    }

    #[test]
    fn manual_and_trainer_runs_count_and_a_run_without_a_start_does_not() {
        let list = changed(|v| {
            let manual = v[2].as_object_mut().expect("object");
            for key in [
                "start_latlng",
                "end_latlng",
                "map",
                "average_speed",
                "kudos_count",
            ] {
                manual.remove(key);
            }
            manual.insert("manual".into(), true.into());
            manual.insert("start_date".into(), "2025-10-13T06:00:00Z".into());
        });
        let entry = settings(&RUNS).entry_of(&list[2], None).expect("entry");
        assert_eq!((entry.average_speed, entry.kudos_count), (None, None));
        assert_eq!(newest_id(&settings(&RUNS), &list), Some(16128930471));
        let list = changed(|v| v[2]["trainer"] = true.into());
        assert_eq!(newest_id(&settings(&RUNS), &list), Some(16128930471));
        let list = changed(|v| v[2]["start_date"] = serde_json::Value::Null);
        assert_eq!(settings(&RUNS).entry_of(&list[2], None), None);
        assert_eq!(newest_id(&settings(&RUNS), &list), Some(16110453318));
    }

    #[test]
    fn nothing_public_gives_no_run() {
        let list = changed(|v| {
            for item in v.as_array_mut().expect("array") {
                item["visibility"] = "only_me".into();
                item["private"] = true.into();
            }
        });
        assert_eq!(newest_id(&settings(&RUNS), &list), None);
        assert_eq!(newest_id(&settings(&RUNS), &[]), None);
        assert_eq!(newest_id(&settings(&[]), &activities()), None);
    }

    #[test]
    fn the_route_sketch_is_kept_only_when_enabled() {
        let run = activities()[2].clone();
        assert!(run.summary_polyline.is_some());
        assert_eq!(
            settings(&RUNS)
                .entry_of(&run, None)
                .expect("entry")
                .route_shape,
            None
        );
        let sketching = IndexSettings {
            route_shape: Some(SketchZone::known(route_shape::PrivacyZone::new(
                500.0,
                b"test key",
            ))),
            ..settings(&RUNS)
        };
        let entry = sketching.entry_of(&run, None).expect("entry");
        let path = entry.route_shape.expect("a sketch");
        assert!(path.starts_with('M'), "{path}");
        let polyline = run.summary_polyline.as_deref().expect("a polyline");
        assert!(!path.contains(polyline));
        let no_map = SummaryActivity {
            summary_polyline: None,
            ..run
        };
        let entry = sketching.entry_of(&no_map, None).expect("entry");
        assert_eq!(entry.route_shape, None);
    }

    #[test]
    fn the_newest_run_does_not_depend_on_order() {
        let a = crate::store::tests_support::run(1, "2026-05-01T08:00:00Z", 1000.0);
        let b = crate::store::tests_support::run(2, "2026-05-01T08:00:00Z", 2000.0);
        assert_eq!(newest(&[a.clone(), b.clone()]).map(|r| r.id), Some(2));
        assert_eq!(newest(&[b, a]).map(|r| r.id), Some(2));
    }
}
