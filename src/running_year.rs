//! The running-year service: the owner's public runs of one calendar year (totals, days, weeks,
//! the longest run, streaks), derived from the activity index with no Strava call. An answer is
//! built once per year from the index's entries in the table and kept in memory, ready to send,
//! until the latest-run answer changes (a round or a push event changed the index, on this
//! instance or, seen within seconds, another) or the athlete's day turns (the weeks run "up to
//! today" and the streaks count from today); a warm request does no I/O. The index keeper
//! keeps the index fresh; this one asks it to, as GetLatestRun does, on every request.
//!
//! Years served: the athlete's current local year, which the index holds in full, and the year
//! before once a full pass indexed it in full (the first full pass of a year does: a fresh
//! install, an upgrade, New Year); until then it is answered "not indexed", never partly.
//! Earlier years are not indexed.

use crate::clock::Clock;
use crate::keeper::{etag_of, Card, Cards, IndexKeeper, IndexState, LatestRunError};
use crate::store::Store;
use crate::view::svg::{Theme, Units};
use crate::view::year::{build_running_year, RunningYearView};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use time::{Date, OffsetDateTime};
use tokio::sync::Mutex;

/// Why no year view can be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunningYearError {
    /// The index keeper could not give an answer (not connected, storage or Strava down
    /// with nothing held).
    #[error("{0}")]
    Index(LatestRunError),
    /// The year asked for is not in the index.
    #[error("the year {0} is not indexed")]
    YearNotIndexed(i32),
    /// The index could not be read.
    #[error("storage cannot be reached")]
    StorageUnavailable,
}

/// A ready-to-send year view.
#[derive(Debug)]
pub struct YearAnswer {
    /// The JSON body.
    pub body: Bytes,
    /// Strong entity tag of the body, quoted.
    pub etag: Bytes,
    /// The view itself.
    pub view: RunningYearView,
    /// The index state and the athlete's day it was built for.
    built_for: (u64, Date),
    /// The SVG cards of this view, drawn on first request.
    cards: Cards,
}

impl YearAnswer {
    /// The view as a card in `theme` and `units`, drawn by `draw` (the caller's: the domain
    /// draws nothing) once per view and kept.
    pub fn card(
        &self,
        theme: Theme,
        units: Units,
        draw: impl FnOnce(&RunningYearView) -> String,
    ) -> Option<&Card> {
        self.cards.get(theme, units, || draw(&self.view))
    }
}

/// Year views, cached per year; cheap to clone.
#[derive(Clone)]
pub struct RunningYearService(Arc<Inner>);

struct Inner {
    keeper: IndexKeeper,
    store: Store,
    clock: Clock,
    cache: RwLock<HashMap<i32, Arc<YearAnswer>>>,
    /// One build at a time (concurrent cold requests share it).
    building: Mutex<()>,
}

impl RunningYearService {
    /// An empty cache over the index in `store`, kept fresh by `keeper`.
    pub fn new(keeper: IndexKeeper, store: Store, clock: Clock) -> Self {
        RunningYearService(Arc::new(Inner {
            keeper,
            store,
            clock,
            cache: RwLock::new(HashMap::new()),
            building: Mutex::new(()),
        }))
    }

    /// The view of `year` (default: the athlete's current local year).
    pub async fn answer(&self, year: Option<i32>) -> Result<Arc<YearAnswer>, RunningYearError> {
        // Keeps the index fresh (a round when due) exactly as a GetLatestRun visit does; no I/O
        // when warm. "No public run" is an index like any other (a year of zeros).
        let latest = self.0.keeper.answer().await;
        let state = match (self.0.keeper.index_state(), latest) {
            (Some(state), _) => state,
            (None, Err(err)) => return Err(RunningYearError::Index(err)),
            (None, Ok(_)) => return Err(RunningYearError::Index(LatestRunError::NotConfigured)),
        };
        let today = self.today(&state);
        let this_year = today.year();
        let year = year.unwrap_or(this_year);
        // Last year is served only once a full pass indexed it in full, never partly.
        let indexed =
            year == this_year || (year == this_year - 1 && state.last_year_indexed == Some(year));
        if !indexed {
            return Err(RunningYearError::YearNotIndexed(year));
        }
        let built_for = (state.version, today);
        if let Some(cached) = self.cached(year, built_for) {
            return Ok(cached);
        }
        // Boxed: a build reads the table, and its future, unboxed, would make every request's
        // future (the warm ones included) several times larger.
        Box::pin(self.build(year, today, &state)).await
    }

    /// Builds the view of `year` from the index, one build at a time (a build that waited for
    /// another takes its result).
    #[tracing::instrument(level = "debug", skip_all, fields(year = year))]
    async fn build(
        &self,
        year: i32,
        today: Date,
        state: &IndexState,
    ) -> Result<Arc<YearAnswer>, RunningYearError> {
        let built_for = (state.version, today);
        let _one_build_at_a_time = self.0.building.lock().await;
        if let Some(cached) = self.cached(year, built_for) {
            return Ok(cached);
        }
        let runs = self.0.store.load_runs(year).await.map_err(|err| {
            tracing::warn!(error = %err, "cannot read the activity index");
            RunningYearError::StorageUnavailable
        })?;
        let fetched_at = OffsetDateTime::from_unix_timestamp(state.fetched_at)
            .unwrap_or_else(|_| self.0.clock.now_datetime());
        let mut view = build_running_year(&runs, year, today, fetched_at);
        view.stale = state.stale;
        let body = Bytes::from(serde_json::to_vec(&view).unwrap_or_default());
        let answer = Arc::new(YearAnswer {
            etag: Bytes::from(etag_of(&body)),
            body,
            view,
            built_for,
            cards: Default::default(),
        });
        if let Ok(mut cache) = self.0.cache.write() {
            cache.insert(year, Arc::clone(&answer));
        }
        Ok(answer)
    }

    fn cached(&self, year: i32, built_for: (u64, Date)) -> Option<Arc<YearAnswer>> {
        let cache = self.0.cache.read().ok()?;
        cache
            .get(&year)
            .filter(|cached| cached.built_for == built_for)
            .cloned()
    }

    /// The athlete's local day now.
    fn today(&self, state: &IndexState) -> Date {
        let local = self.0.clock.now().saturating_add(state.utc_offset);
        OffsetDateTime::from_unix_timestamp(local)
            .map(|t| t.date())
            .unwrap_or_else(|_| self.0.clock.now_datetime().date())
    }
}
