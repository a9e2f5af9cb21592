//! The index keeper: the one owner of everything that changes the activity index
//! ([`crate::index`]) and of the shared `latest-run` entity (its lease, its index clock, the
//! answer stored there), on every instance of the app. It publishes its state on a
//! `tokio::sync::watch` channel ([`Published`]): the answer to "what is the owner's latest public
//! run, and how far has the owner run this year?" ready to send (body and ETag behind an `Arc`,
//! so a blog visit costs no I/O and no Strava call), what the table last said of the index, and
//! the push events waiting there. The answers are views of that state: GetLatestRun sends the
//! answer, the running year is built from the index when the state changes, the functions draw
//! the cards, the push-event service follows the waiting events.
//!
//! Two things change the index, on any instance, in any order, at the same time:
//! - **Rounds** ([`round`]): once per `WIDGET_CACHE_SECONDS` while visitors come, one list call
//!   reconciles the index with Strava's newest activities (this also catches a run made private
//!   when no event says so); once a day, when the year turns and when push events had to be
//!   dropped, a full pass. One instance at a time (a [`crate::store::Lease`], renewed between
//!   pages), within the read budget any instance last saw. After the window the old answer is
//!   served at once while one background round runs, and is marked stale when that round cannot
//!   run.
//! - **Push events** ([`events`]), one by one: an activity read with one call and written to or
//!   removed from the index, or (a delete, made private) hidden with no call at all.
//!
//! So that several instances agree, every change carries a reading of the index clock (a counter
//! in the shared entity, advanced with If-Match) taken before Strava was asked: the index never
//! takes an older word over a newer one, a hide leaves a tombstone, and answers are stored and
//! adopted in the clock's order (the rules: `docs/architecture.md`, "The index keeper").
//!
//! Errors are domain errors; the functions map them to HTTP.

mod answer;
mod events;
mod failure;
mod round;

pub use answer::{etag_of, Answer, Card, Cards};
pub use events::{Applied, EventError};

use crate::clock::Clock;
use crate::index::{year, ActivityIndex, IndexView};
use crate::store::{
    Change, IndexedRun, PendingEvent, Store, StoreError, StoredLatestRun, StoredOffset,
};
use crate::strava::{StravaClient, StravaError};
use crate::tokens::{AccessToken, TokenKeeper};
use crate::view::build_from_index;
use crate::view::route_shape::PrivacyOffset;
use answer::{Known, Stamp};
use failure::{FetchFailure, RETRY_AFTER_FAILURE};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Mutex};
use tracing::Instrument;

/// How often (seconds) a serving instance looks at the table for other instances' answers and
/// events.
const LOOK_EVERY_SECONDS: i64 = 5;
/// How long a visitor waits for a cold answer in all.
const COLD_REQUEST_DEADLINE: Duration = Duration::from_secs(25);
/// How often a publish is tried when other writers of the shared entity keep getting in first.
const PUBLISH_ATTEMPTS: u32 = 10;

/// Why no answer can be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LatestRunError {
    /// No `credentials` entity: the owner has not connected Strava yet.
    #[error("Strava is not connected yet")]
    NotConfigured,
    /// The stored credentials cannot be read; the text names the property.
    #[error("{0}")]
    CredentialsUnusable(String),
    /// Table Storage cannot be reached and nothing is held in memory.
    #[error("storage cannot be reached")]
    StorageUnavailable,
    /// Strava failed (or its read budget is spent) and there is no earlier answer.
    #[error("Strava cannot be reached and there is no earlier answer")]
    StravaUnavailable,
    /// Strava refused the stored credentials for good (revoked app, deleted refresh token).
    #[error("Strava no longer accepts the stored credentials")]
    StravaAuthorization,
    /// The athlete has no public activity of the configured sport types.
    #[error("there is no public run")]
    NoPublicRun,
}

/// The settings the service uses.
#[derive(Clone, Debug)]
pub struct LatestRunSettings {
    /// How long an answer is fresh (seconds).
    pub cache_seconds: i64,
    /// Which `sport_type`s count as a run.
    pub sport_types: Vec<String>,
    /// Whether answers carry the route sketch (`WIDGET_ROUTE_SHAPE`).
    pub route_shape: bool,
    /// The privacy zone the sketch is cut by (`WIDGET_ROUTE_PRIVACY_METERS`, keyed per app).
    pub route_privacy: crate::view::route_shape::PrivacyZone,
}

/// What [`IndexKeeper::refresh`] did, for the timer's summary line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warmed {
    /// The answer in memory was still fresh: nothing to do.
    AlreadyFresh,
    /// A fresh answer is in memory now (fetched here, or taken from the table).
    Refreshed,
    /// Another instance is fetching; its answer will be read from the table.
    ByAnotherInstance,
    /// Strava must be left alone for now (a recent failure, or the read budget is nearly
    /// spent): the answer in memory, if any, is marked stale.
    Deferred,
    /// The round failed; the answer in memory, if any, is marked stale.
    Failed,
}

impl Warmed {
    /// A short word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Warmed::AlreadyFresh => "already_fresh",
            Warmed::Refreshed => "refreshed",
            Warmed::ByAnotherInstance => "by_another_instance",
            Warmed::Deferred => "deferred",
            Warmed::Failed => "failed",
        }
    }
}

/// The cached answer and the one place that asks Strava for it; cheap to clone.
#[derive(Clone)]
pub struct IndexKeeper(Arc<Inner>);

struct Inner {
    /// What rounds and events work with.
    parts: Parts,
    /// What is published: the answer held, what the table last said of the index.
    state: watch::Sender<Published>,
    /// When Strava may be asked, and the rounds under way here.
    pace: Pace,
    /// One change of the index and its answer at a time in this process (rounds and events).
    publishing: Mutex<()>,
    /// Bumped by `forget`: a round that began before it must not bring an answer back.
    generation: AtomicU64,
}

/// The settings and services the keeper works with.
struct Parts {
    settings: LatestRunSettings,
    store: Store,
    index: ActivityIndex,
    strava: StravaClient,
    tokens: TokenKeeper,
    clock: Clock,
    /// This process's name in leases.
    instance: String,
}

/// When Strava may be asked and the table looked at, and the rounds under way here.
struct Pace {
    /// Single flight: one round at a time, cold or background.
    fetching: Mutex<()>,
    /// A background round is running.
    refresh_running: AtomicBool,
    /// No Strava call before this (after a failure, or until a rate-limit window resets).
    quiet_until: AtomicI64,
    /// No look at the table before this: another instance is fetching (not a failure, so the
    /// answer is not marked stale for it).
    look_again_at: AtomicI64,
    /// When this instance last looked at the table for answers and events of other instances.
    last_look: AtomicI64,
    /// The last cold-fetch error, answered to cold requests until `quiet_until`.
    last_error: RwLock<Option<LatestRunError>>,
}

/// What the keeper publishes (a `watch` channel): the answer held, what the last read of the
/// shared entity said of the index, and the push events it held that no instance has applied
/// yet. Views read it without I/O; the push-event service follows it.
#[derive(Clone, Debug, Default)]
pub struct Published {
    answer: Option<Known>,
    /// Changes whenever the answer held changes.
    pub version: u64,
    seen: Seen,
    /// The push events the shared entity held when it was last read (every read that holds
    /// some sends them, so a pending event is looked at again until it is applied).
    pub pending: Arc<[PendingEvent]>,
    /// Counts the reads `pending` came from: followers act on a new read only, never twice on
    /// one (an event applied since is no longer in the table).
    pub pending_read: u64,
}
/// What the last read of the shared entity said of the index, kept for the answers' views.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    /// The athlete's offset from UTC by the stored answer (the year turns by it).
    utc_offset: Option<i64>,
    /// The year before the current one, when it is indexed in full.
    last_year_indexed: Option<i32>,
    /// A reconciliation is due at once (push events were dropped).
    reconcile_due: bool,
}

/// What the answer held says of the index it was derived from, for other views of the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexState {
    /// Changes whenever the answer held changes.
    pub version: u64,
    /// When the answer was derived (Unix seconds).
    pub fetched_at: i64,
    /// Whether it is past its window and could not be refreshed.
    pub stale: bool,
    /// The athlete's offset from UTC (seconds), as the newest run says (0 before any run).
    pub utc_offset: i64,
    /// The year before the current one, when the index holds it in full.
    pub last_year_indexed: Option<i32>,
}

impl IndexKeeper {
    /// An empty cache over the index in `store`.
    pub fn new(
        settings: LatestRunSettings,
        store: Store,
        strava: StravaClient,
        tokens: TokenKeeper,
        instance: String,
        clock: Clock,
    ) -> Self {
        let index = ActivityIndex::new(
            store.clone(),
            crate::index::IndexSettings {
                sport_types: settings.sport_types.clone(),
                route_shape: settings
                    .route_shape
                    .then(|| crate::index::SketchZone::new(settings.route_privacy.clone())),
            },
            clock.clone(),
        );
        IndexKeeper(Arc::new(Inner {
            parts: Parts {
                settings,
                store,
                index,
                strava,
                tokens,
                clock,
                instance,
            },
            state: watch::channel(Published::default()).0,
            pace: Pace {
                fetching: Mutex::new(()),
                refresh_running: AtomicBool::new(false),
                quiet_until: AtomicI64::new(0),
                look_again_at: AtomicI64::new(0),
                last_look: AtomicI64::new(0),
                last_error: RwLock::new(None),
            },
            publishing: Mutex::new(()),
            generation: AtomicU64::new(0),
        }))
    }

    /// How long an answer is fresh (seconds).
    pub fn cache_seconds(&self) -> i64 {
        self.0.parts.settings.cache_seconds
    }

    /// Follows what is published (the push-event service watches the pending events).
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.0.state.subscribe()
    }

    fn now(&self) -> i64 {
        self.0.parts.clock.now()
    }

    fn current(&self) -> Option<Known> {
        self.0.state.borrow().answer.clone()
    }

    fn seen(&self) -> Seen {
        self.0.state.borrow().seen
    }

    /// The state of the index behind the answer held, without I/O; `None` before any answer.
    pub fn index_state(&self) -> Option<IndexState> {
        let state = self.0.state.borrow();
        let known = state.answer.as_ref()?;
        Some(IndexState {
            version: state.version,
            fetched_at: known.fetched_at(),
            stale: matches!(known, Known::Run(answer) if answer.is_stale()),
            utc_offset: known.year().map_or(0, |(_, offset)| offset),
            last_year_indexed: state.seen.last_year_indexed,
        })
    }

    /// The athlete's local year now, by the offset of the answer held, else of the answer the
    /// table holds (read first when this instance has seen none: a new instance must not judge
    /// the athlete's New Year in UTC); UTC before any answer.
    async fn this_year_now(&self) -> (i32, i64) {
        if self.current().is_none() && self.seen().utc_offset.is_none() {
            if let Ok(read) = self.0.parts.store.load_latest_run().await {
                self.saw_the_table(&read.value);
            }
        }
        self.this_year()
    }

    /// The athlete's local year now, by the offset of the answer held, else of the answer the
    /// table last held (UTC before any).
    fn this_year(&self) -> (i32, i64) {
        let offset = self
            .current()
            .and_then(|c| c.year())
            .map(|(_, offset)| offset)
            .or(self.seen().utc_offset)
            .unwrap_or(0);
        (year::local_year(self.now(), offset), offset)
    }

    /// Sets an answer derived in `generation`, unless `forget` ran since or a later answer is
    /// held already (an event applied while a round ran).
    fn set_current(&self, generation: u64, known: Known) -> bool {
        self.0.state.send_if_modified(|state| {
            let newer_held = state
                .answer
                .as_ref()
                .is_some_and(|c| c.stamp().tick > known.stamp().tick);
            if self.0.generation.load(Ordering::Acquire) != generation || newer_held {
                return false;
            }
            state.answer = Some(known);
            state.version += 1;
            true
        })
    }

    fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    fn quiet(&self) -> bool {
        self.quiet_until().is_some()
    }

    /// Until when Strava is left alone (after a failure, or until a rate-limit window resets).
    fn quiet_until(&self) -> Option<i64> {
        let until = self.0.pace.quiet_until.load(Ordering::Relaxed);
        (self.now() < until).then_some(until)
    }

    /// The answer in memory is past its window and can no longer be refreshed for now: say
    /// so in it.
    fn mark_stale(&self) {
        let window = self.0.parts.settings.cache_seconds;
        let now = self.now();
        self.0.state.send_if_modified(|state| match &state.answer {
            Some(Known::Run(answer))
                if !answer.is_stale()
                    && now.saturating_sub(answer.stamp.reconciled_at) >= window =>
            {
                state.answer = Some(Known::Run(Arc::new(answer.stale())));
                state.version += 1;
                true
            }
            _ => false,
        });
    }

    /// Whether an answer needs a round now: its window (counted from the last reconciliation,
    /// not from the last event) has passed, or the athlete's year turned since its total was
    /// counted.
    fn is_due(&self, known: &Known) -> bool {
        self.is_due_given(known, self.seen().reconcile_due)
    }

    /// [`is_due`](Self::is_due), told whether the table asked for a full pass.
    fn is_due_given(&self, known: &Known, reconcile_due: bool) -> bool {
        let window_passed =
            self.now().saturating_sub(known.reconciled_at()) >= self.0.parts.settings.cache_seconds;
        let year_turned = known.year_ends_at().is_some_and(|ends| self.now() >= ends);
        window_passed || year_turned || reconcile_due
    }

    /// Reads the table's word on push events and answers now (the timer does, so an event
    /// acknowledged by a killed instance is applied).
    #[tracing::instrument(skip_all)]
    pub async fn catch_up(&self) {
        self.look_at_the_table().await;
    }

    /// Every few seconds while serving, in the background: looks at the table for answers and
    /// push events of other instances, and for the credentials having been removed.
    fn look_at_the_table_now_and_then(&self) {
        let now = self.now();
        let last = self.0.pace.last_look.load(Ordering::Relaxed);
        if now.saturating_sub(last) < LOOK_EVERY_SECONDS
            || self
                .0
                .pace
                .last_look
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let service = self.clone();
        tokio::spawn(async move { service.look_at_the_table().await });
    }

    /// What any read of the shared entity also tells: an answer another instance published
    /// since the one held here (a higher reading of the index clock) is adopted, its push
    /// events that no instance has applied yet are published for the push-event service, and
    /// the regular look at the table is not due for a while (every read counts as the look: the
    /// cold round's, and a round's that finds another instance holding the lease).
    fn saw_the_table(&self, stored: &StoredLatestRun) {
        self.0.pace.last_look.store(self.now(), Ordering::Relaxed);
        self.note(stored);
        if let (Some(current), Some(newer)) = (
            self.current(),
            stored
                .snapshot
                .as_ref()
                .and_then(Known::from_snapshot)
                .filter(|k| k.fits(self.0.parts.settings.route_shape)),
        ) {
            if newer.stamp().tick > current.stamp().tick {
                self.set_current(self.generation(), newer);
            }
        }
        let pending: Arc<[PendingEvent]> = stored.pending_events.clone().into();
        self.0.state.send_if_modified(|state| {
            // Sent on every read that holds events, so that waiting ones are looked at again.
            let notify = !pending.is_empty() || !state.pending.is_empty();
            state.pending = pending;
            state.pending_read += 1;
            notify
        });
    }

    /// Keeps what the shared entity says of the index (read, or just written here).
    fn note(&self, stored: &StoredLatestRun) {
        if let (Some(zone), Some(offset)) =
            (self.0.parts.index.sketch_zone(), stored.privacy_offset)
        {
            zone.keep_offset(offset_of(offset));
        }
        self.0.state.send_if_modified(|state| {
            let seen = Seen {
                utc_offset: stored
                    .snapshot
                    .as_ref()
                    .and_then(|s| s.utc_offset)
                    .or(state.seen.utc_offset),
                last_year_indexed: stored.last_year_indexed,
                reconcile_due: stored.reconcile_after.is_some(),
            };
            let changed = seen != state.seen;
            state.seen = seen;
            changed
        });
    }

    /// With sketches on, makes sure the athlete's privacy offset is known before a sketch is
    /// cut: the one the table keeps, else one made now from the operating system's randomness. Written only where the table has none (If-Match), so
    /// instances that race all keep the one written first; never replaced.
    pub(super) async fn know_privacy_offset(&self) -> Result<(), StoreError> {
        let Some(zone) = self.0.parts.index.sketch_zone() else {
            return Ok(());
        };
        if zone.offset().is_some() {
            return Ok(());
        }
        let mut random = [0_u8; 16];
        getrandom::fill(&mut random).map_err(|err| {
            StoreError::Unavailable(format!("no randomness for the privacy offset: {err}"))
        })?;
        let made = PrivacyOffset::from_random(zone.radius_meters(), random);
        let made = StoredOffset {
            east_m: made.east_m,
            north_m: made.north_m,
        };
        let kept = self
            .0
            .parts
            .store
            .modify_latest_run(|entity, _| match entity.privacy_offset {
                Some(kept) => Change::Keep(kept),
                None => {
                    entity.privacy_offset = Some(made);
                    Change::Save(made)
                }
            })
            .await?;
        zone.keep_offset(offset_of(kept));
        Ok(())
    }

    async fn look_at_the_table(&self) {
        let Ok(read) = self.0.parts.store.load_latest_run().await else {
            return;
        };
        self.saw_the_table(&read.value);
        match read.value.snapshot.as_ref() {
            // A newer answer another instance published was adopted on the read.
            Some(_) => {}
            None if self.current().is_some() => {
                // The answer was wiped: by a confirmed deauthorization if it says so, or if the
                // credentials are gone or marked refused.
                let disconnected = read.value.refused_word.is_some()
                    || match self.0.parts.store.load_credentials().await {
                        Ok(None) => true,
                        Ok(Some(stored)) => stored.value.refused_at.is_some(),
                        Err(_) => false,
                    };
                if disconnected {
                    self.forget();
                    return;
                }
            }
            None => {}
        }
        if self.current().is_some_and(|c| self.is_due(&c)) {
            self.spawn_refresh();
        }
    }

    /// Drops every answer: the credentials are gone (a confirmed deauthorization), so the
    /// widget says "not connected" until `handler setup` runs again.
    pub fn forget(&self) {
        self.0.state.send_modify(|state| {
            state.answer = None;
            state.version += 1;
        });
        if let Ok(mut last) = self.0.pace.last_error.write() {
            *last = Some(LatestRunError::NotConfigured);
        }
        self.0
            .pace
            .quiet_until
            .store(self.now() + RETRY_AFTER_FAILURE, Ordering::Relaxed);
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The answer to send: from memory (no I/O) when there is one; else from the table or,
    /// on a cold start, from Strava.
    pub async fn answer(&self) -> Result<Arc<Answer>, LatestRunError> {
        // One look at the published state, a lock every request takes on every core.
        let held = {
            let state = self.0.state.borrow();
            state
                .answer
                .clone()
                .map(|known| (known, state.seen.reconcile_due))
        };
        if let Some((known, reconcile_due)) = held {
            self.look_at_the_table_now_and_then();
            if !self.is_due_given(&known, reconcile_due) {
                return known.into_result();
            }
            self.spawn_refresh();
            // Read again: the answer may just have been marked stale.
            return self.current().unwrap_or(known).into_result();
        }
        let service = self.clone();
        // In a task of its own: a visitor who hangs up must not cancel a token refresh. The
        // visitor waits at most COLD_REQUEST_DEADLINE; the round goes on and serves the next.
        // The cold round reads the table itself, and that read counts as the regular look (the
        // look after it is not due then): two reads side by side would race on the way to the
        // first answer (the one that loses opens another storage connection, a round trip more
        // on a real network).
        let round = tokio::spawn(
            async move {
                let answer = service.cold_answer().await;
                service.look_at_the_table_now_and_then();
                answer
            }
            .in_current_span(),
        );
        match tokio::time::timeout(COLD_REQUEST_DEADLINE, round).await {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => {
                tracing::error!(error = %err, "the cold fetch task failed");
                Err(LatestRunError::StravaUnavailable)
            }
            Err(_) => Err(LatestRunError::StravaUnavailable),
        }
    }

    /// The answer on a cold start: from the table, or from the round this instance runs (or
    /// waits for).
    #[tracing::instrument(level = "debug", skip_all)]
    async fn cold_answer(&self) -> Result<Arc<Answer>, LatestRunError> {
        let _one_at_a_time = self.0.pace.fetching.lock().await;
        if let Some(known) = self.current() {
            return known.into_result();
        }
        if self.quiet() {
            if let Some(err) = self.0.pace.last_error.read().ok().and_then(|e| e.clone()) {
                return Err(err);
            }
        }
        let generation = self.generation();
        match self.coordinated_round(round::Wait::ForTheHolder).await {
            Ok(Some(known)) => {
                if !self.set_current(generation, known.clone()) {
                    return self
                        .current()
                        .map_or(Err(LatestRunError::NotConfigured), Known::into_result);
                }
                if self.is_due(&known) {
                    self.spawn_refresh();
                }
                known.into_result()
            }
            Ok(None) => Err(LatestRunError::StravaUnavailable),
            Err(failure) => {
                let err = failure.error();
                self.0
                    .pace
                    .quiet_until
                    .store(failure.quiet_until(self.now()), Ordering::Relaxed);
                if let Ok(mut last) = self.0.pace.last_error.write() {
                    *last = Some(err.clone());
                }
                Err(err)
            }
        }
    }

    /// Starts one background refresh unless one is running; when Strava must be left alone,
    /// the answer is marked stale instead.
    fn spawn_refresh(&self) {
        if self.quiet() {
            self.mark_stale();
            return;
        }
        if self.now() < self.0.pace.look_again_at.load(Ordering::Relaxed) {
            return;
        }
        if self.0.pace.refresh_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let service = self.clone();
        // Its lines carry the span of the request that found the answer due.
        tokio::spawn(
            async move {
                // Cleared however the refresh ends (a panic included), so a later one can start.
                struct Running<'a>(&'a AtomicBool);
                impl Drop for Running<'_> {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::Release);
                    }
                }
                let _running = Running(&service.0.pace.refresh_running);
                service.refresh().await;
            }
            .in_current_span(),
        );
    }

    /// Refreshes the answer if it is due (the background task, and the timer's warm-up).
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self) -> Warmed {
        let _one_at_a_time = self.0.pace.fetching.lock().await;
        if self.current().is_some_and(|c| !self.is_due(&c)) {
            return Warmed::AlreadyFresh;
        }
        if self.quiet() {
            self.mark_stale();
            return Warmed::Deferred;
        }
        let generation = self.generation();
        match self.coordinated_round(round::Wait::No).await {
            Ok(Some(known)) => {
                if self.set_current(generation, known) {
                    Warmed::Refreshed
                } else {
                    Warmed::Failed
                }
            }
            Ok(None) => {
                // Another instance is fetching; look at the table again shortly.
                self.0
                    .pace
                    .look_again_at
                    .store(self.now() + 1, Ordering::Relaxed);
                Warmed::ByAnotherInstance
            }
            Err(failure) if failure.error() == LatestRunError::NotConfigured => {
                tracing::warn!("the Strava credentials are gone; dropping the cached answer");
                self.forget();
                Warmed::Failed
            }
            Err(failure) => {
                tracing::warn!(error = %failure, "refreshing the latest run failed; serving the last good answer marked stale");
                self.0
                    .pace
                    .quiet_until
                    .store(failure.quiet_until(self.now()), Ordering::Relaxed);
                self.mark_stale();
                Warmed::Failed
            }
        }
    }

    /// Strava requests left as this instance last saw them: (this 15-minute window, today),
    /// the smaller of the read and overall buckets; `None` before any API answer.
    pub fn strava_budget_left(&self) -> (Option<u32>, Option<u32>) {
        match self.0.parts.strava.rate_limits() {
            Some(limits) => (limits.remaining_short(), limits.remaining_daily()),
            None => (None, None),
        }
    }

    /// The answer `view` leads to, for an index last reconciled at `reconciled_at`, published at
    /// index-clock reading `tick`.
    fn answer_of(&self, view: &IndexView, utc_offset: i64, reconciled_at: i64, tick: i64) -> Known {
        let stamp = Stamp {
            fetched_at: self.now(),
            reconciled_at,
            tick,
        };
        let Some(latest) = view.latest.as_ref() else {
            return Known::NoPublicRun(stamp);
        };
        // The offset of the newest run is the athlete's, as far as the app can know.
        let offset = latest.utc_offset_seconds().unwrap_or(utc_offset);
        let at = time::OffsetDateTime::from_unix_timestamp(stamp.fetched_at)
            .unwrap_or_else(|_| self.0.parts.clock.now_datetime());
        let mut run = build_from_index(latest, view.year_distance(), at);
        if self.0.parts.settings.route_shape {
            run.route_shape = Some(latest.route_shape.clone());
        }
        Known::Run(Arc::new(Answer::from_run(
            run,
            stamp,
            Some((view.year, offset)),
        )))
    }

    /// Derives the answer from the index as it is now and stores it for every instance with
    /// the next reading of the index clock (If-Match: a publish that loses the race to another
    /// writer reads the index again, so the last answer stored always comes from a read of the
    /// index made after every change whose publish finished), then holds it here. `also` makes
    /// the write's other changes to the shared entity (it runs on every attempt).
    /// `strava_word`: the Strava word that changed the index (`None`: a hide, which is no word
    /// of Strava's); no answer is stored from a word older than a confirmed deauthorization.
    /// `reconciled_at`: when the index was last reconciled (`None`: as before; an event
    /// changes the answer, not its freshness). `Ok(None)`: nothing may be stored.
    async fn publish(
        &self,
        strava_word: Option<i64>,
        reconciled_at: Option<i64>,
        mut also: impl FnMut(&mut StoredLatestRun) + Send,
    ) -> Result<Option<Known>, StoreError> {
        let generation = self.generation();
        for attempt in 1..=PUBLISH_ATTEMPTS {
            let read = self.0.parts.store.load_latest_run().await?;
            self.saw_the_table(&read.value);
            let mut entity = read.value.clone();
            also(&mut entity);
            let refused = entity
                .refused_word
                .is_some_and(|refused| strava_word.is_none_or(|word| word < refused));
            let forgotten = self.generation() != generation;
            // An event before the first full pass filled the index would publish an answer
            // from a part of it (no public run, or an older run as the latest): the pass
            // publishes.
            let unfilled = reconciled_at.is_none() && entity.indexed_year.is_none();
            let known = if refused || forgotten || unfilled {
                None
            } else {
                if strava_word.is_some() {
                    // Strava answered a word newer than the refusal: connected again.
                    entity.refused_word = None;
                }
                let offset = entity
                    .snapshot
                    .as_ref()
                    .and_then(|s| s.utc_offset)
                    .or(self.seen().utc_offset)
                    .unwrap_or(0);
                let view = self
                    .0
                    .parts
                    .index
                    .view(year::local_year(self.now(), offset))
                    .await?;
                entity.index_clock += 1;
                let reconciled_at = reconciled_at
                    .or_else(|| self.current().map(|c| c.reconciled_at()))
                    .or_else(|| {
                        entity
                            .snapshot
                            .as_ref()
                            .map(|s| s.reconciled_at.unwrap_or(s.fetched_at))
                    })
                    .unwrap_or(0);
                let known = self.answer_of(&view, offset, reconciled_at, entity.index_clock);
                entity.snapshot = known.to_snapshot();
                Some(known)
            };
            match self
                .0
                .parts
                .store
                .save_latest_run(&entity, &read.etag)
                .await
            {
                Ok(_) => {
                    self.note(&entity);
                    let Some(known) = known else {
                        if unfilled {
                            // The first full pass publishes (this event's change included).
                            self.spawn_refresh();
                        }
                        if refused {
                            self.forget();
                            if strava_word.is_some() {
                                // A change listed or read before the deauthorization may have
                                // written to the index after it was emptied: empty it again.
                                let (this_year, _) = self.this_year();
                                if let Err(err) = self.0.parts.index.clear(this_year).await {
                                    tracing::warn!(error = %err, "could not empty the activity index after a refused publish");
                                }
                            }
                        }
                        return Ok(None);
                    };
                    self.set_current(generation, known.clone());
                    if let Ok(mut last) = self.0.pace.last_error.write() {
                        if *last == Some(LatestRunError::NoPublicRun) {
                            *last = None;
                        }
                    }
                    return Ok(Some(known));
                }
                Err(StoreError::Conflict) if attempt < PUBLISH_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                }
                Err(err) => return Err(err),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Takes the next reading of the index clock: the word of a change about to be made
    /// without Strava (a hide).
    async fn take_word(&self) -> Result<i64, StoreError> {
        self.0
            .parts
            .store
            .modify_latest_run(|entity, _| {
                entity.index_clock += 1;
                crate::store::Change::Save(entity.index_clock)
            })
            .await
    }

    /// A confirmed deauthorization: the answer is taken out of the table first (with a reading
    /// of the index clock no older Strava word may publish over), then out of memory.
    pub async fn take_answer_away(&self) -> Result<(), StoreError> {
        let taken = self
            .0
            .parts
            .store
            .modify_latest_run(|entity, _| {
                entity.index_clock += 1;
                entity.refused_word = Some(entity.index_clock);
                entity.snapshot = None;
                // Nothing of the athlete's index is known any more: a new setup starts with a
                // full pass, and no event publishes before it.
                entity.indexed_year = None;
                entity.last_year_indexed = None;
                entity.full_pass_at = None;
                entity.reconcile_after = None;
                entity.pending_events.clear();
                crate::store::Change::Save(())
            })
            .await;
        self.forget();
        taken
    }

    /// Empties the activity index (a confirmed deauthorization: nothing of the athlete's is kept
    /// once they revoked the app).
    pub async fn clear_index(&self) -> Result<(), crate::store::StoreError> {
        let _one_change_at_a_time = self.0.publishing.lock().await;
        let (this_year, _) = self.this_year();
        self.0.parts.index.clear(this_year).await
    }

    /// `run` with its photo looked up (its detail read).
    async fn look_up_photo(
        &self,
        token: &mut AccessToken,
        run: &IndexedRun,
    ) -> Result<IndexedRun, FetchFailure> {
        let strava = &self.0.parts.strava;
        let id = run.id;
        let detail = self
            .with_token(token, |t| async move { strava.get_activity(&t, id).await })
            .await?;
        Ok(self
            .look_up_photo_in(Some(token), run.clone(), &detail)
            .await)
    }

    /// Runs one API call; on a 401 refreshes the token once and retries.
    async fn with_token<T, F, Fut>(
        &self,
        token: &mut AccessToken,
        call: F,
    ) -> Result<T, FetchFailure>
    where
        F: Fn(crate::secret::Secret) -> Fut,
        Fut: Future<Output = Result<T, StravaError>>,
    {
        match call(token.token.clone()).await {
            Err(StravaError::Unauthorized) => {
                *token = self
                    .0
                    .parts
                    .tokens
                    .access_token_after_rejection(&token.token)
                    .await?;
                call(token.token.clone()).await.map_err(FetchFailure::from)
            }
            other => other.map_err(FetchFailure::from),
        }
    }
}

/// The privacy offset the table keeps, as the route sketch takes it.
fn offset_of(stored: StoredOffset) -> PrivacyOffset {
    PrivacyOffset {
        east_m: stored.east_m,
        north_m: stored.north_m,
    }
}
