//! The latest-run service: the answer to "what is the owner's latest public run?", cached so
//! that a blog visit costs no Strava call. In memory as the ready-to-send body and ETag behind an
//! `Arc`, and in the `latest-run` table entity so a new or restarted instance answers at once.
//!
//! It follows Strava: fresh for `WIDGET_CACHE_SECONDS`; after that the old answer is served at
//! once while one background refresh runs, and is marked stale when that refresh cannot run
//! (Strava failing, or the read budget spent). When Strava no longer has a public run, the
//! answer is cleared here and in the table, so every instance answers "no public run". One
//! instance at a time fetches (a [`Lease`] on the entity); the read budget is the rate-limit
//! headers any instance last saw, kept in the table, so it binds every instance and cold
//! fetches. Fetch rounds run in tasks no request owns. Errors are domain errors; the functions
//! map them to HTTP.

use crate::clock::Clock;
use crate::store::{LatestRun as StoredLatestRun, LatestRunSnapshot, Lease, Shown, Store};
use crate::strava::{RateLimitSnapshot, StravaClient, StravaError};
use crate::tokens::{AccessToken, TokenError, TokenKeeper};
use crate::widget::svg::{self, Theme, Units};
use crate::widget::{build_latest_run, choose_photo_url, pick_latest_run, LatestRun};
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::Instrument;

/// How many activities to look through for a run among rides and walks.
const ACTIVITIES_PER_PAGE: u32 = 60;
/// After a failed refresh, wait this long before asking Strava again (seconds).
const RETRY_AFTER_FAILURE: i64 = 60;
/// After storage could not be reached (Strava was not asked), look again this soon (seconds):
/// only storage is spared, and the widget answers again as soon as storage is back.
const RETRY_AFTER_STORAGE_FAILURE: i64 = 5;
/// How long an instance may hold the right to fetch the shared answer (seconds).
const LEASE_SECONDS: i64 = 30;
/// First and longest wait between looks at the table while another instance fetches.
const POLL_FIRST: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(2);
/// How long a cold round waits for another instance's fetch before giving up.
const COLD_WAIT: Duration = Duration::from_secs(20);
/// How long past the spacing an instance keeps trying to apply an event it acknowledged.
const APPLY_PATIENCE: Duration = Duration::from_secs(180);
/// How often (seconds) a serving instance looks at the table for other instances' events.
const LOOK_EVERY_SECONDS: i64 = 5;
/// How long a visitor waits for a cold answer in all.
const COLD_REQUEST_DEADLINE: Duration = Duration::from_secs(25);
/// Stop refreshing when fewer read requests than this are left in the 15-minute window; one
/// refresh round costs at most four.
const SHORT_WINDOW_RESERVE: u32 = 8;
/// Likewise for the daily window.
const DAILY_WINDOW_RESERVE: u32 = 40;

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

/// A ready-to-send answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The JSON body.
    pub body: Bytes,
    /// Strong entity tag of the body, quoted (`"…"`); shared bytes, so sending it copies nothing.
    pub etag: Bytes,
    /// When it was fetched from Strava (Unix seconds).
    pub fetched_at: i64,
    /// The run, to re-render it marked stale.
    run: Option<LatestRun>,
    /// The SVG cards of this answer, rendered on first request, one per theme and units.
    cards: [OnceLock<Card>; Theme::ALL.len() * Units::ALL.len()],
}

/// The answer as an SVG card in one theme and units: its bytes and their strong ETag.
#[derive(Clone, Debug)]
pub struct Card {
    /// The SVG document.
    pub body: Bytes,
    /// Strong entity tag of the body, quoted.
    pub etag: Bytes,
}

impl Answer {
    fn new(body: Bytes, fetched_at: i64, run: Option<LatestRun>) -> Self {
        Answer {
            etag: Bytes::from(etag_of(&body)),
            body,
            fetched_at,
            run,
            cards: Default::default(),
        }
    }

    /// The run as the SVG card in `theme` and `units`, rendered once per answer (`None` for an
    /// answer without a run). An answer never changes, so neither does its card.
    pub fn card(&self, theme: Theme, units: Units) -> Option<&Card> {
        let run = self.run.as_ref()?;
        let slot = self
            .cards
            .get(theme.index() * Units::ALL.len() + units.index())?;
        Some(slot.get_or_init(|| {
            let body = svg::render(run, theme, units);
            Card {
                etag: Bytes::from(etag_of(body.as_bytes())),
                body: Bytes::from(body),
            }
        }))
    }

    fn from_run(run: LatestRun, fetched_at: i64) -> Self {
        let body = Bytes::from(serde_json::to_vec(&run).unwrap_or_default());
        Answer::new(body, fetched_at, Some(run))
    }

    /// Whether the body says `stale: true`.
    pub fn is_stale(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.stale)
    }

    fn stale(&self) -> Self {
        match &self.run {
            Some(run) if !run.stale => Answer::from_run(run.clone().into_stale(), self.fetched_at),
            _ => self.clone(),
        }
    }
}

/// What is known of the latest run: an answer, or that there is no public run.
#[derive(Clone, Debug)]
enum Known {
    Run(Arc<Answer>),
    NoPublicRun { fetched_at: i64 },
}

impl Known {
    fn fetched_at(&self) -> i64 {
        match self {
            Known::Run(answer) => answer.fetched_at,
            Known::NoPublicRun { fetched_at } => *fetched_at,
        }
    }

    fn into_result(self) -> Result<Arc<Answer>, LatestRunError> {
        match self {
            Known::Run(answer) => Ok(answer),
            Known::NoPublicRun { .. } => Err(LatestRunError::NoPublicRun),
        }
    }

    /// Whether the answer was made under this instance's `WIDGET_ROUTE_SHAPE`: a stored answer
    /// made under the other value is treated as absent, so switching the sketch off takes it
    /// away at once instead of after the next window.
    fn fits(&self, route_shape: bool) -> bool {
        match self {
            Known::Run(answer) => answer
                .run
                .as_ref()
                .is_none_or(|run| run.route_shape.is_some() == route_shape),
            Known::NoPublicRun { .. } => true,
        }
    }

    /// `None` when the stored body is not an answer of this app (a hand edit): it is then
    /// treated as absent and overwritten, never served.
    fn from_snapshot(snapshot: &LatestRunSnapshot) -> Option<Self> {
        match &snapshot.shown {
            Shown::Run { body, .. } => {
                let Ok(run) = serde_json::from_str::<LatestRun>(body) else {
                    tracing::warn!("ignoring the stored answer: its Body is not a latest-run answer; it will be overwritten");
                    return None;
                };
                Some(Known::Run(Arc::new(Answer::new(
                    Bytes::from(body.clone()),
                    snapshot.fetched_at,
                    Some(run),
                ))))
            }
            Shown::NoPublicRun => Some(Known::NoPublicRun {
                fetched_at: snapshot.fetched_at,
            }),
        }
    }

    fn to_snapshot(&self) -> Option<LatestRunSnapshot> {
        let shown = match self {
            Known::Run(answer) => Shown::Run {
                body: String::from_utf8_lossy(&answer.body).into_owned(),
                activity_id: answer.run.as_ref()?.id,
            },
            Known::NoPublicRun { .. } => Shown::NoPublicRun,
        };
        Some(LatestRunSnapshot {
            fetched_at: self.fetched_at(),
            shown,
        })
    }
}

/// A strong entity tag from the body's SHA-256 (URL-safe base64: always a valid header value).
pub fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    )
}

/// Whether to wait for another instance's fetch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Cold start: there is nothing to serve meanwhile, so wait for the holder's answer.
    ForTheHolder,
    /// Background refresh: the old answer is being served; leave it to the holder.
    No,
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
    pub route_privacy: crate::widget::route_shape::PrivacyZone,
}

/// What [`LatestRunService::refresh`] did, for the timer's summary line.
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
pub struct LatestRunService(Arc<Inner>);

struct Inner {
    settings: LatestRunSettings,
    store: Store,
    strava: StravaClient,
    tokens: TokenKeeper,
    clock: Clock,
    current: RwLock<Option<Known>>,
    /// Single flight: one fetch at a time, cold or background.
    fetching: Mutex<()>,
    refresh_running: AtomicBool,
    /// No Strava call before this (after a failure, or until a rate-limit window resets).
    quiet_until: AtomicI64,
    /// No look at the table before this: another instance is fetching (not a failure, so the
    /// answer is not marked stale for it).
    look_again_at: AtomicI64,
    /// The last cold-fetch error, answered to cold requests until `quiet_until`.
    last_error: RwLock<Option<LatestRunError>>,
    /// This process's name in leases.
    instance: String,
    /// The newest push event not yet applied that this instance knows of (Unix seconds, 0:
    /// none), from its own webhook or from the table's `PendingSince`.
    pending_since: AtomicI64,
    /// When the last round that applied push events started, as far as this instance knows.
    event_round_at: AtomicI64,
    /// When this instance last looked at the table for events and answers of other instances.
    last_look: AtomicI64,
    /// Whether a task waiting to apply a pending event is scheduled.
    apply_scheduled: AtomicBool,
    /// Push events noted so far: a round clears the pending mark only if none came during it.
    events_noted: std::sync::atomic::AtomicU64,
    /// Bumped by `forget`: a round that began before it must not bring an answer back.
    generation: std::sync::atomic::AtomicU64,
}

impl LatestRunService {
    /// An empty cache.
    pub fn new(
        settings: LatestRunSettings,
        store: Store,
        strava: StravaClient,
        tokens: TokenKeeper,
        instance: String,
        clock: Clock,
    ) -> Self {
        LatestRunService(Arc::new(Inner {
            settings,
            store,
            strava,
            tokens,
            clock,
            current: RwLock::new(None),
            fetching: Mutex::new(()),
            refresh_running: AtomicBool::new(false),
            quiet_until: AtomicI64::new(0),
            look_again_at: AtomicI64::new(0),
            last_error: RwLock::new(None),
            instance,
            pending_since: AtomicI64::new(0),
            event_round_at: AtomicI64::new(0),
            last_look: AtomicI64::new(0),
            apply_scheduled: AtomicBool::new(false),
            generation: std::sync::atomic::AtomicU64::new(0),
            events_noted: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// How long an answer is fresh (seconds).
    pub fn cache_seconds(&self) -> i64 {
        self.0.settings.cache_seconds
    }

    fn now(&self) -> i64 {
        self.0.clock.now()
    }

    fn current(&self) -> Option<Known> {
        self.0.current.read().ok().and_then(|c| c.clone())
    }

    /// Sets the answer of a round that began in `generation`, unless `forget` ran since.
    fn set_current_from_round(&self, generation: u64, known: Known) -> bool {
        if let Ok(mut current) = self.0.current.write() {
            if self.0.generation.load(Ordering::Acquire) == generation {
                *current = Some(known);
                return true;
            }
        }
        false
    }

    fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    fn quiet(&self) -> bool {
        self.now() < self.0.quiet_until.load(Ordering::Relaxed)
    }

    /// The answer in memory is past its window and can no longer be refreshed for now: say
    /// so in it.
    fn mark_stale(&self) {
        let window = self.0.settings.cache_seconds;
        if let Ok(mut current) = self.0.current.write() {
            if let Some(Known::Run(answer)) = current.as_ref() {
                if !answer.is_stale() && self.now().saturating_sub(answer.fetched_at) >= window {
                    let stale = Arc::new(answer.stale());
                    *current = Some(Known::Run(stale));
                }
            }
        }
    }

    /// Whether an answer fetched at `fetched_at` needs a refresh now: its window has passed, or
    /// a push event is pending and the last round that applied events is at least
    /// [`Self::event_spacing`] old (so forged events cost at most one round per spacing).
    fn is_due(&self, fetched_at: i64) -> bool {
        self.now().saturating_sub(fetched_at) >= self.0.settings.cache_seconds
            || self.event_round_allowed()
    }

    /// A push event is pending and the spacing since the last event round has passed.
    fn event_round_allowed(&self) -> bool {
        let pending = self.0.pending_since.load(Ordering::Relaxed);
        let last_event_round = self.0.event_round_at.load(Ordering::Relaxed);
        pending != 0 && self.now().saturating_sub(last_event_round) >= self.event_spacing()
    }

    /// Learns what the table says of events: a pending one, or that none is pending any more
    /// (another instance's round applied it), and the last round that applied some.
    fn note_events(&self, stored: &StoredLatestRun) {
        match stored.pending_since {
            Some(pending) if pending != self.0.pending_since.load(Ordering::Relaxed) => {
                self.note_pending(pending)
            }
            Some(_) => {}
            // Applied by a round that wrote over the very version the event was recorded in.
            None if stored.snapshot.is_some() => self.0.pending_since.store(0, Ordering::Relaxed),
            None => {}
        }
        if let Some(at) = stored.event_round_at {
            self.0.event_round_at.fetch_max(at, Ordering::Relaxed);
        }
    }

    /// The least time between two rounds caused by push events: the window, so that forged
    /// events cost at most one round per window.
    pub fn event_spacing(&self) -> i64 {
        self.0.settings.cache_seconds.max(1)
    }

    /// Notes a push event not yet applied at `at` (Unix seconds, never 0).
    fn note_pending(&self, at: i64) {
        self.0.pending_since.fetch_max(at.max(1), Ordering::Relaxed);
        self.0.events_noted.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a push event (an activity created, changed or deleted) so that every instance
    /// refreshes: in memory at once, in the table's `latest-run` entity within `patience`
    /// (longer outages are retried in the background), and schedules applying it here.
    pub async fn record_event(&self, patience: Duration) {
        let at = self.now();
        self.note_pending(at);
        let service = self.clone();
        let write = tokio::spawn(async move { service.write_pending(at).await });
        if tokio::time::timeout(patience, write).await.is_err() {
            tracing::warn!("storage is slow: the push event is applied here and written for other instances in the background");
        }
        self.schedule_apply();
    }

    /// Writes (or advances) the table's `PendingSince`, retrying with backoff for a minute.
    async fn write_pending(&self, at: i64) {
        let until = Instant::now() + Duration::from_secs(60);
        let mut pause = POLL_FIRST;
        while Instant::now() < until {
            match self.0.store.load_latest_run().await {
                Ok(read) if read.value.pending_since.is_some_and(|p| p >= at) => return,
                Ok(read) => {
                    let mut marked = read.value.clone();
                    marked.pending_since = Some(at);
                    match self.0.store.save_latest_run(&marked, &read.etag).await {
                        Ok(_) => return,
                        Err(crate::store::StoreError::Conflict) => continue,
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot record the push event yet")
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot record the push event yet"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
        tracing::error!("gave up recording a push event in the table; this instance applies it");
    }

    /// Applies pending events as soon as the spacing (and any quiet period or another
    /// instance's round) allows, in one task per instance, for at most the spacing plus a few
    /// minutes; the table keeps the event for every other instance after that.
    fn schedule_apply(&self) {
        if self.0.apply_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let service = self.clone();
        tokio::spawn(async move {
            let give_up = Instant::now()
                + Duration::from_secs(service.event_spacing().clamp(0, 3600) as u64)
                + APPLY_PATIENCE;
            while service.0.pending_since.load(Ordering::Relaxed) != 0 && Instant::now() < give_up {
                let ready_at = [
                    service
                        .0
                        .event_round_at
                        .load(Ordering::Relaxed)
                        .saturating_add(service.event_spacing()),
                    service.0.quiet_until.load(Ordering::Relaxed),
                    service.0.look_again_at.load(Ordering::Relaxed),
                ]
                .into_iter()
                .max()
                .unwrap_or(0);
                let wait = ready_at.saturating_sub(service.now()).max(0) as u64;
                tokio::time::sleep(Duration::from_secs(wait).max(POLL_FIRST)).await;
                if service.current().is_none() {
                    // Cold: nothing shown yet, so a plain answer round applies it.
                    let _ = service.answer().await;
                } else {
                    service.refresh().await;
                }
            }
            service.0.apply_scheduled.store(false, Ordering::Release);
            // An event noted while this task was finishing must not be left unscheduled.
            if service.0.pending_since.load(Ordering::Relaxed) != 0 && Instant::now() < give_up {
                service.schedule_apply();
            }
        });
    }

    /// Reads the table's word on push events now (the timer does, before deciding whether a
    /// refresh is due, so an event acknowledged by a killed instance is applied).
    pub async fn catch_up(&self) {
        if let Ok(read) = self.0.store.load_latest_run().await {
            self.note_events(&read.value);
        }
    }

    /// Every few seconds while serving, in the background: looks at the table for push events
    /// recorded by any instance (one that was frozen or killed after acknowledging an event)
    /// and for the credentials having been removed.
    fn look_at_the_table_now_and_then(&self) {
        let now = self.now();
        let last = self.0.last_look.load(Ordering::Relaxed);
        if now.saturating_sub(last) < LOOK_EVERY_SECONDS
            || self
                .0
                .last_look
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let service = self.clone();
        tokio::spawn(async move {
            let Ok(read) = service.0.store.load_latest_run().await else {
                return;
            };
            service.note_events(&read.value);
            if read.value.snapshot.is_none() && service.current().is_some() {
                // The answer was wiped: by a confirmed deauthorization if the credentials are gone.
                if let Ok(None) = service.0.store.load_credentials().await {
                    service.forget();
                    return;
                }
            }
            if service
                .current()
                .is_some_and(|c| service.is_due(c.fetched_at()))
            {
                service.spawn_refresh();
            }
        });
    }

    /// Drops every answer: the credentials are gone (a confirmed deauthorization), so the
    /// widget says "not connected" until `handler setup` runs again.
    pub fn forget(&self) {
        if let Ok(mut current) = self.0.current.write() {
            *current = None;
        }
        if let Ok(mut last) = self.0.last_error.write() {
            *last = Some(LatestRunError::NotConfigured);
        }
        self.0
            .quiet_until
            .store(self.now() + RETRY_AFTER_FAILURE, Ordering::Relaxed);
        self.0.pending_since.store(0, Ordering::Relaxed);
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The answer to send: from memory (no I/O) when there is one; else from the table or,
    /// on a cold start, from Strava.
    pub async fn answer(&self) -> Result<Arc<Answer>, LatestRunError> {
        self.look_at_the_table_now_and_then();
        if let Some(known) = self.current() {
            if !self.is_due(known.fetched_at()) {
                return known.into_result();
            }
            self.spawn_refresh();
            // Read again: the answer may just have been marked stale.
            return self.current().unwrap_or(known).into_result();
        }
        let service = self.clone();
        // In a task of its own: a visitor who hangs up must not cancel a token refresh. The
        // visitor waits at most COLD_REQUEST_DEADLINE; the round goes on and serves the next.
        let round = tokio::spawn(async move { service.cold_answer().await }.in_current_span());
        match tokio::time::timeout(COLD_REQUEST_DEADLINE, round).await {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => {
                tracing::error!(error = %err, "the cold fetch task failed");
                Err(LatestRunError::StravaUnavailable)
            }
            Err(_) => Err(LatestRunError::StravaUnavailable),
        }
    }

    async fn cold_answer(&self) -> Result<Arc<Answer>, LatestRunError> {
        let _one_at_a_time = self.0.fetching.lock().await;
        if let Some(known) = self.current() {
            return known.into_result();
        }
        if self.quiet() {
            if let Some(err) = self.0.last_error.read().ok().and_then(|e| e.clone()) {
                return Err(err);
            }
        }
        let generation = self.generation();
        match self.coordinated_round(Wait::ForTheHolder).await {
            Ok(Some(known)) => {
                if !self.set_current_from_round(generation, known.clone()) {
                    return Err(LatestRunError::NotConfigured);
                }
                if self.is_due(known.fetched_at()) {
                    self.spawn_refresh();
                }
                known.into_result()
            }
            Ok(None) => Err(LatestRunError::StravaUnavailable),
            Err(failure) => {
                let err = failure.error();
                self.0
                    .quiet_until
                    .store(failure.quiet_until(self.now()), Ordering::Relaxed);
                if let Ok(mut last) = self.0.last_error.write() {
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
        if self.now() < self.0.look_again_at.load(Ordering::Relaxed) {
            return;
        }
        if self.0.refresh_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let service = self.clone();
        // Its lines carry the span of the request that found the answer due.
        tokio::spawn(
            async move {
                service.refresh().await;
                service.0.refresh_running.store(false, Ordering::Release);
            }
            .in_current_span(),
        );
    }

    /// Refreshes the answer if it is due (the background task, and the timer's warm-up).
    pub async fn refresh(&self) -> Warmed {
        let _one_at_a_time = self.0.fetching.lock().await;
        if self.current().is_some_and(|c| !self.is_due(c.fetched_at())) {
            return Warmed::AlreadyFresh;
        }
        if self.quiet() {
            self.mark_stale();
            return Warmed::Deferred;
        }
        let generation = self.generation();
        match self.coordinated_round(Wait::No).await {
            Ok(Some(known)) => {
                if self.set_current_from_round(generation, known) {
                    Warmed::Refreshed
                } else {
                    Warmed::Failed
                }
            }
            Ok(None) => {
                // Another instance is fetching; look at the table again shortly.
                self.0
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
        match self.0.strava.rate_limits() {
            Some(limits) => (limits.remaining_short(), limits.remaining_daily()),
            None => (None, None),
        }
    }

    /// One answer for all instances: take a fresh one from the table, or take the entity's
    /// lease (If-Match) and fetch it from Strava; an instance that loses the race reads the
    /// winner's answer. `None`: another instance holds the lease and `wait` said not to wait
    /// (or the wait ran out). The caller holds `fetching`.
    async fn coordinated_round(&self, wait: Wait) -> Result<Option<Known>, FetchFailure> {
        let deadline = Instant::now() + COLD_WAIT;
        let mut poll = POLL_FIRST;
        loop {
            let read = match self.0.store.load_latest_run().await {
                Ok(read) => read,
                Err(err) => {
                    // Storage down: keep refreshing with what memory holds (the tokens may be there).
                    tracing::warn!(error = %err, "cannot read the shared answer; fetching without coordination");
                    if let Some(until) = self.budget_spent_until(None) {
                        return Err(FetchFailure::BudgetSpent(until));
                    }
                    return self.fetch(self.now()).await.map(Some);
                }
            };
            self.note_events(&read.value);
            if let Some((snapshot, known)) = read
                .value
                .snapshot
                .as_ref()
                .and_then(|s| Some((s, Known::from_snapshot(s)?)))
                .filter(|(_, known)| known.fits(self.0.settings.route_shape))
            {
                let current = self.current();
                let newer = current
                    .as_ref()
                    .is_none_or(|c| snapshot.fetched_at > c.fetched_at());
                // Cold: any stored answer beats waiting. Warm: only one fresher than ours.
                if (wait == Wait::ForTheHolder && current.is_none())
                    || (newer && !self.is_due(snapshot.fetched_at))
                {
                    return Ok(Some(known));
                }
            }
            if let Some(until) = self.budget_spent_until(read.value.rate_limits.as_deref()) {
                return Err(FetchFailure::BudgetSpent(until));
            }
            let held_by_other = read
                .value
                .refresh_lease
                .as_ref()
                .is_some_and(|l| l.blocks(&self.0.instance, read.read_at));
            if held_by_other {
                if wait == Wait::No || Instant::now() > deadline {
                    return Ok(None);
                }
                tokio::time::sleep(poll).await;
                poll = (poll * 2).min(POLL_MAX);
                continue;
            }
            let mut leased = read.value.clone();
            leased.refresh_lease =
                Some(Lease::taken(&self.0.instance, read.read_at, LEASE_SECONDS));
            let etag = match self.0.store.save_latest_run(&leased, &read.etag).await {
                Ok(etag) => etag,
                Err(crate::store::StoreError::Conflict) => {
                    // Another instance wrote first: read again, after a pause, within the deadline.
                    if Instant::now() > deadline {
                        return Ok(None);
                    }
                    tokio::time::sleep(poll).await;
                    poll = (poll * 2).min(POLL_MAX);
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot take the refresh lease; fetching anyway");
                    read.etag.clone()
                }
            };
            // The round's time is when it started: a round that began later saw Strava later.
            let started = self.now();
            // The events noted so far are what this round applies; it counts as an event round.
            let events_seen = self.0.events_noted.load(Ordering::Acquire);
            if self.0.pending_since.load(Ordering::Relaxed) != 0 || leased.pending_since.is_some() {
                self.0.event_round_at.fetch_max(started, Ordering::Relaxed);
            }
            let result = self.fetch(started).await;
            if result.is_ok() && self.0.events_noted.load(Ordering::Acquire) == events_seen {
                // Every event noted before this round began is applied by it.
                self.0.pending_since.store(0, Ordering::Relaxed);
            }
            self.store_round(leased, etag, result.as_ref().ok(), started)
                .await;
            return result.map(Some);
        }
    }

    /// Writes a round's result for every instance and releases the lease, also after a
    /// failure, so others need not wait it out. Always with If-Match: after a conflict (this
    /// round's lease lapsed and another instance took over) it writes only if no round that
    /// started at the same time or later has been stored, so a slow round can never bring
    /// back a run that a later round found private or deleted. The pending event marker is
    /// cleared only when writing over the very version read before the fetch: an event
    /// recorded after that read changed the ETag, so it stays pending, with no clock involved.
    async fn store_round(
        &self,
        mut base: StoredLatestRun,
        mut etag: azure_core::Etag,
        known: Option<&Known>,
        started: i64,
    ) {
        for attempt in 0..3 {
            let mut entity = base.clone();
            entity.refresh_lease = None;
            if let Some(limits) = self
                .0
                .strava
                .rate_limits()
                .and_then(|r| serde_json::to_string(&r).ok())
            {
                entity.rate_limits = Some(limits);
            }
            if let Some(snapshot) = known.and_then(Known::to_snapshot) {
                entity.snapshot = Some(snapshot);
                if entity.pending_since.is_some() {
                    entity.event_round_at = Some(started);
                    if attempt == 0 {
                        entity.pending_since = None;
                    }
                }
            }
            match self.0.store.save_latest_run(&entity, &etag).await {
                Ok(_) => return,
                Err(crate::store::StoreError::Conflict) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "could not store the latest run for other instances");
                    return;
                }
            }
            let Ok(fresh) = self.0.store.load_latest_run().await else {
                return;
            };
            let newer_round_stored = fresh
                .value
                .snapshot
                .as_ref()
                .is_some_and(|s| s.fetched_at >= started);
            let other_round_running = fresh
                .value
                .refresh_lease
                .as_ref()
                .is_some_and(|l| l.blocks(&self.0.instance, fresh.read_at));
            if newer_round_stored || other_round_running {
                return;
            }
            base = fresh.value;
            etag = fresh.etag;
        }
    }

    /// When the read budget is nearly spent, by the newest rate-limit headers seen by this
    /// instance or (through the table) any other: until when.
    fn budget_spent_until(&self, shared: Option<&str>) -> Option<i64> {
        let shared = shared.and_then(|text| serde_json::from_str::<RateLimitSnapshot>(text).ok());
        let own = self.0.strava.rate_limits();
        let snapshot = match (own, shared) {
            (Some(own), Some(shared)) if shared.observed_at > own.observed_at => shared,
            (Some(own), _) => own,
            (None, shared) => shared?,
        };
        let at = self.0.clock.now_datetime();
        if let Some(until) = snapshot.blocked_until(at) {
            return Some(until.unix_timestamp());
        }
        // Nearly spent: stop until that window resets (if the headers are from the current one).
        let nearly_spent = [
            (
                snapshot.remaining_daily(),
                DAILY_WINDOW_RESERVE,
                crate::strava::rate_limit::next_utc_midnight(snapshot.observed_at),
            ),
            (
                snapshot.remaining_short(),
                SHORT_WINDOW_RESERVE,
                crate::strava::rate_limit::next_quarter_hour(snapshot.observed_at),
            ),
        ];
        nearly_spent
            .into_iter()
            .find(|(remaining, reserve, reset)| {
                remaining.is_some_and(|r| r < *reserve) && *reset > at
            })
            .map(|(_, _, reset)| reset.unix_timestamp())
    }

    /// One round of Strava calls: list, detail (+ photos when needed), stats.
    async fn fetch(&self, started: i64) -> Result<Known, FetchFailure> {
        let strava = &self.0.strava;
        let mut token = self.0.tokens.access_token().await?;
        let activities = self
            .with_token(&mut token, |t| async move {
                strava.list_activities(&t, ACTIVITIES_PER_PAGE).await
            })
            .await?;
        let Some(activity) = pick_latest_run(&activities, &self.0.settings.sport_types) else {
            return Ok(Known::NoPublicRun {
                fetched_at: started,
            });
        };
        let id = activity.id;
        let detail = self
            .with_token(
                &mut token,
                |t| async move { strava.get_activity(&t, id).await },
            )
            .await
            .ok();
        let mut photo_url = choose_photo_url(detail.as_ref(), &[]);
        let has_more_photos = detail
            .as_ref()
            .and_then(|d| d.photos.as_ref())
            .and_then(|p| p.count)
            .unwrap_or(0)
            > 0;
        if photo_url.is_none() && has_more_photos {
            let photos = self
                .with_token(&mut token, |t| async move {
                    strava.activity_photos(&t, id, 600).await
                })
                .await
                .unwrap_or_default();
            photo_url = choose_photo_url(detail.as_ref(), &photos);
        }
        let athlete_id = match token.athlete_id {
            Some(id) => id,
            None => {
                self.with_token(&mut token, |t| async move { strava.athlete(&t).await })
                    .await?
                    .id
            }
        };
        let stats = self
            .with_token(&mut token, |t| async move {
                strava.athlete_stats(&t, athlete_id).await
            })
            .await?;
        let fetched_at = time::OffsetDateTime::from_unix_timestamp(started)
            .unwrap_or_else(|_| self.0.clock.now_datetime());
        let mut run = build_latest_run(
            activity,
            photo_url,
            stats.ytd_run_totals.distance,
            fetched_at,
        );
        if self.0.settings.route_shape {
            run = run.with_route_shape(activity, &self.0.settings.route_privacy);
        }
        Ok(Known::Run(Arc::new(Answer::from_run(
            run,
            fetched_at.unix_timestamp(),
        ))))
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
                    .tokens
                    .access_token_after_rejection(&token.token)
                    .await?;
                call(token.token.clone()).await.map_err(FetchFailure::from)
            }
            other => other.map_err(FetchFailure::from),
        }
    }
}

/// Why a fetch round failed.
#[derive(Debug, thiserror::Error)]
enum FetchFailure {
    /// No token could be had.
    #[error("{0}")]
    Tokens(TokenError),
    /// Strava said no until then.
    #[error("Strava rate limit reached")]
    RateLimited(Option<i64>),
    /// The shared read budget is nearly spent until then.
    #[error("Strava read budget nearly spent")]
    BudgetSpent(i64),
    /// Strava refused the token for this call.
    #[error("Strava refused the access token: {0}")]
    Authorization(StravaError),
    /// Strava failed (5xx, garbage, timeout).
    #[error("{0}")]
    Strava(StravaError),
}

impl FetchFailure {
    fn error(&self) -> LatestRunError {
        match self {
            FetchFailure::Tokens(err) => match err {
                TokenError::NotConfigured => LatestRunError::NotConfigured,
                TokenError::Unusable(err) => LatestRunError::CredentialsUnusable(err.to_string()),
                TokenError::Storage(_) => LatestRunError::StorageUnavailable,
                TokenError::Rejected(_) => LatestRunError::StravaAuthorization,
                TokenError::Strava(_) | TokenError::Busy => LatestRunError::StravaUnavailable,
            },
            FetchFailure::Authorization(_) => LatestRunError::StravaAuthorization,
            FetchFailure::RateLimited(_)
            | FetchFailure::BudgetSpent(_)
            | FetchFailure::Strava(_) => LatestRunError::StravaUnavailable,
        }
    }

    fn quiet_until(&self, now: i64) -> i64 {
        match self {
            FetchFailure::RateLimited(Some(until)) | FetchFailure::BudgetSpent(until) => *until,
            FetchFailure::Tokens(TokenError::Storage(_)) => now + RETRY_AFTER_STORAGE_FAILURE,
            _ => now + RETRY_AFTER_FAILURE,
        }
    }
}

impl From<StravaError> for FetchFailure {
    fn from(err: StravaError) -> Self {
        match err {
            StravaError::RateLimited { until } => {
                FetchFailure::RateLimited(until.map(|u| u.unix_timestamp()))
            }
            StravaError::MissingScope | StravaError::Unauthorized | StravaError::Forbidden => {
                FetchFailure::Authorization(err)
            }
            other => FetchFailure::Strava(other),
        }
    }
}

impl From<TokenError> for FetchFailure {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::Strava(err) => FetchFailure::from(err),
            other => FetchFailure::Tokens(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_is_rendered_once_per_answer_theme_and_units() {
        let run = crate::widget::svg::tests::run();
        let answer = Answer::from_run(run.clone(), 0);
        let first = answer.card(Theme::Dark, Units::Imperial).expect("a card");
        let again = answer.card(Theme::Dark, Units::Imperial).expect("a card");
        assert_eq!(
            first.body.as_ptr(),
            again.body.as_ptr(),
            "the same bytes, kept"
        );
        assert_eq!(first.body, svg::render(&run, Theme::Dark, Units::Imperial));
        assert_eq!(first.etag, etag_of(&first.body));
        let other = answer.card(Theme::Light, Units::Metric).expect("a card");
        assert_eq!(other.body, svg::render(&run, Theme::Light, Units::Metric));
        assert_ne!(other.etag, first.etag);
        let none = Answer::new(Bytes::from_static(b"{}"), 0, None);
        assert!(none.card(Theme::Auto, Units::Metric).is_none());
    }
}
