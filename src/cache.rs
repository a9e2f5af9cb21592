//! The latest-run answer, cached so that a blog visit costs no Strava call: in memory as the
//! ready-to-send body and ETag behind an `Arc`, and in the `latest-run` table entity so a new or
//! restarted instance answers at once. Fresh for `WIDGET_CACHE_SECONDS`; after that the stale
//! answer is still served at once while one background refresh runs. Only a cold start with
//! nothing cached waits for Strava, and concurrent cold requests share that one fetch.

use crate::config::Settings;
use crate::error::ApiError;
use crate::store::{LatestRunSnapshot, RefreshLease, Store, StoreError};
use crate::strava::{StravaClient, StravaError};
use crate::tokens::{AccessToken, TokenError, TokenKeeper};
use crate::widget::{build_latest_run, choose_photo_url, pick_latest_run, LatestRun};
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use warp::http::HeaderValue;

/// How many activities to look through for a run among rides and walks.
const ACTIVITIES_PER_PAGE: u32 = 60;
/// After a failed refresh, wait this long before asking Strava again (seconds).
const RETRY_AFTER_FAILURE: i64 = 60;
/// How long an instance may hold the right to fetch the shared answer (seconds).
const LEASE_SECONDS: i64 = 30;
/// How often a waiting instance looks at the table again.
const LEASE_POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// How long a cold request waits for another instance's fetch before fetching itself.
const COLD_WAIT_SECONDS: i64 = 20;

/// Whether to wait for another instance's fetch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Cold start: there is nothing to serve meanwhile, so wait for the holder's answer.
    ForTheHolder,
    /// Background refresh: the old answer is being served; leave it to the holder.
    No,
}

/// Stop refreshing when fewer read requests than this are left in the 15-minute window; one
/// refresh round costs at most four.
const SHORT_WINDOW_RESERVE: u32 = 8;
/// Likewise for the daily window.
const DAILY_WINDOW_RESERVE: u32 = 40;

/// A ready-to-send answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The JSON body.
    pub body: Bytes,
    /// Strong ETag of the body, quoted, ready to send.
    pub etag: HeaderValue,
    /// When it was fetched from Strava (Unix seconds).
    pub fetched_at: i64,
    /// The run, to re-render it marked stale.
    run: Option<LatestRun>,
}

impl Answer {
    fn new(body: Bytes, fetched_at: i64, run: Option<LatestRun>) -> Self {
        Answer {
            etag: etag_of(&body),
            body,
            fetched_at,
            run,
        }
    }

    fn from_run(run: LatestRun, fetched_at: i64) -> Self {
        let body = Bytes::from(serde_json::to_vec(&run).unwrap_or_default());
        Answer::new(body, fetched_at, Some(run))
    }

    fn from_snapshot(snapshot: LatestRunSnapshot) -> Self {
        let run = serde_json::from_str::<LatestRun>(&snapshot.body).ok();
        Answer::new(Bytes::from(snapshot.body), snapshot.fetched_at, run)
    }

    fn stale(&self) -> Self {
        match &self.run {
            Some(run) if !run.stale => Answer::from_run(run.clone().into_stale(), self.fetched_at),
            _ => self.clone(),
        }
    }
}

/// A strong ETag from the body's SHA-256 (URL-safe base64 is always a valid header value).
pub fn etag_of(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let tag = format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    );
    HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"\""))
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The cached answer and the one place that asks Strava for it.
#[derive(Clone)]
pub struct LatestRunCache(Arc<Inner>);

struct Inner {
    settings: Arc<Settings>,
    store: Store,
    strava: StravaClient,
    tokens: Arc<TokenKeeper>,
    current: RwLock<Option<Arc<Answer>>>,
    /// Single flight: one fetch at a time, cold or background.
    fetching: Mutex<()>,
    refresh_running: AtomicBool,
    /// No Strava call before this (after a failure, or until a rate-limit window resets).
    quiet_until: AtomicI64,
    /// The last cold-fetch error, answered to cold requests until `quiet_until`.
    last_error: RwLock<Option<ApiError>>,
    /// This process's name in leases.
    instance: String,
    /// The answer's Cache-Control, prepared once.
    cache_control: HeaderValue,
}

impl LatestRunCache {
    /// An empty cache.
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        strava: StravaClient,
        tokens: Arc<TokenKeeper>,
        instance: String,
    ) -> Self {
        let cache_control = HeaderValue::from_str(&format!(
            "public, max-age={}, stale-while-revalidate={}",
            settings.cache_seconds.min(300),
            settings.cache_seconds.max(60)
        ))
        .unwrap_or(HeaderValue::from_static("public, max-age=60"));
        LatestRunCache(Arc::new(Inner {
            settings,
            store,
            strava,
            tokens,
            current: RwLock::new(None),
            fetching: Mutex::new(()),
            refresh_running: AtomicBool::new(false),
            quiet_until: AtomicI64::new(0),
            last_error: RwLock::new(None),
            instance,
            cache_control,
        }))
    }

    /// `Cache-Control` for answers: browsers and CDNs may reuse one briefly and keep showing it
    /// while they revalidate.
    pub fn cache_control(&self) -> &HeaderValue {
        &self.0.cache_control
    }

    fn current(&self) -> Option<Arc<Answer>> {
        self.0.current.read().ok().and_then(|c| c.clone())
    }

    fn set_current(&self, answer: Answer) -> Arc<Answer> {
        let answer = Arc::new(answer);
        if let Ok(mut current) = self.0.current.write() {
            *current = Some(Arc::clone(&answer));
        }
        answer
    }

    /// Whether an answer fetched at `fetched_at` needs a refresh at `at`.
    fn is_due(&self, fetched_at: i64, at: i64) -> bool {
        at - fetched_at >= self.0.settings.cache_seconds as i64
    }

    /// The answer to send: from memory (no I/O) when there is one; else from the table or,
    /// on a cold start, from Strava.
    pub async fn answer(&self) -> Result<Arc<Answer>, ApiError> {
        if let Some(answer) = self.current() {
            if self.is_due(answer.fetched_at, now()) {
                self.spawn_refresh();
            }
            return Ok(answer);
        }
        self.cold_answer().await
    }

    async fn cold_answer(&self) -> Result<Arc<Answer>, ApiError> {
        let _one_at_a_time = self.0.fetching.lock().await;
        if let Some(answer) = self.current() {
            return Ok(answer);
        }
        if now() < self.0.quiet_until.load(Ordering::Relaxed) {
            if let Some(err) = self.0.last_error.read().ok().and_then(|e| e.clone()) {
                return Err(err);
            }
        }
        match self.coordinated_round(Wait::ForTheHolder).await {
            Ok(Some(answer)) => {
                let answer = self.set_current(answer);
                if self.is_due(answer.fetched_at, now()) {
                    self.spawn_refresh();
                }
                Ok(answer)
            }
            Ok(None) => Err(ApiError::StravaUnavailable),
            Err(failure) => {
                let err = failure.api_error();
                self.0
                    .quiet_until
                    .store(failure.quiet_until(), Ordering::Relaxed);
                if let Ok(mut last) = self.0.last_error.write() {
                    *last = Some(err.clone());
                }
                Err(err)
            }
        }
    }

    /// Starts one background refresh unless one is running or Strava must be left alone.
    fn spawn_refresh(&self) {
        if now() < self.0.quiet_until.load(Ordering::Relaxed) {
            return;
        }
        if self.0.refresh_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            cache.refresh().await;
            cache.0.refresh_running.store(false, Ordering::Release);
        });
    }

    /// Refreshes the answer if it is due (the background task, and the timer's warm-up).
    pub async fn refresh(&self) {
        let _one_at_a_time = self.0.fetching.lock().await;
        if self
            .current()
            .is_some_and(|c| !self.is_due(c.fetched_at, now()))
        {
            return;
        }
        if let Some(until) = self.budget_exhausted_until() {
            tracing::warn!(until, "Strava read budget nearly spent; serving the cached answer until the window resets");
            self.0.quiet_until.store(until, Ordering::Relaxed);
            return;
        }
        match self.coordinated_round(Wait::No).await {
            Ok(Some(answer)) => {
                self.set_current(answer);
            }
            Ok(None) => {
                // Another instance is fetching; look at the table again shortly.
                self.0.quiet_until.store(now() + 1, Ordering::Relaxed);
            }
            Err(failure) => {
                tracing::warn!(error = %failure, "refreshing the latest run failed; serving the last good answer marked stale");
                self.0
                    .quiet_until
                    .store(failure.quiet_until(), Ordering::Relaxed);
                if let Some(current) = self.current() {
                    if !matches!(failure, FetchFailure::Api(ApiError::NoPublicRun)) {
                        self.set_current(current.stale());
                    }
                }
            }
        }
    }

    /// One answer for all instances: take a fresh one from the table, or claim the entity's
    /// lease (If-Match) and fetch it from Strava; an instance that loses the race reads the
    /// winner's answer. `None`: another instance holds the lease and `wait` said not to wait.
    /// The caller holds `fetching`.
    async fn coordinated_round(&self, wait: Wait) -> Result<Option<Answer>, FetchFailure> {
        let deadline = now() + COLD_WAIT_SECONDS;
        loop {
            let read = match self.0.store.load_latest_run().await {
                Ok(read) => read,
                Err(StoreError::Corrupt { .. }) => None,
                Err(err) => {
                    // Storage down: keep refreshing with what memory holds (the tokens may be there).
                    tracing::warn!(error = %err, "cannot read the shared answer; fetching without coordination");
                    return self.fetch().await.map(Some);
                }
            };
            let at = now();
            if let Some(snapshot) = read.as_ref().and_then(|r| r.value.snapshot.as_ref()) {
                let newer = self
                    .current()
                    .is_none_or(|c| snapshot.fetched_at > c.fetched_at);
                // Cold: any stored answer beats waiting. Warm: only one fresher than ours.
                if (wait == Wait::ForTheHolder && self.current().is_none())
                    || (newer && !self.is_due(snapshot.fetched_at, at))
                {
                    return Ok(Some(Answer::from_snapshot(snapshot.clone())));
                }
            }
            let held_by_other = read
                .as_ref()
                .and_then(|r| r.value.refresh_lease.as_ref())
                .is_some_and(|l| l.owner != self.0.instance && l.until > at);
            if held_by_other {
                if wait == Wait::No || at > deadline {
                    return Ok(None);
                }
                tokio::time::sleep(LEASE_POLL).await;
                continue;
            }
            let lease = RefreshLease {
                owner: self.0.instance.clone(),
                until: at + LEASE_SECONDS,
            };
            match self
                .0
                .store
                .claim_latest_run_refresh(read.as_ref(), lease)
                .await
            {
                Ok(()) => {}
                Err(StoreError::Conflict) => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot claim the refresh; fetching anyway")
                }
            }
            let result = self.fetch().await;
            let mut entity = read.map(|r| r.value).unwrap_or_default();
            entity.rate_limits = self
                .0
                .strava
                .rate_limits()
                .and_then(|r| serde_json::to_string(&r).ok());
            if let Ok(answer) = &result {
                if let Some(run) = &answer.run {
                    entity.snapshot = Some(LatestRunSnapshot {
                        body: String::from_utf8_lossy(&answer.body).into_owned(),
                        fetched_at: answer.fetched_at,
                        activity_id: run.id,
                    });
                }
            }
            // Saving also releases the lease, also after a failure, so others need not wait it out.
            if let Err(err) = self.0.store.save_latest_run(&entity).await {
                tracing::warn!(error = %err, "could not store the latest run for other instances");
            }
            return result.map(Some);
        }
    }

    /// When the last rate-limit headers say the read budget is nearly gone: until when.
    fn budget_exhausted_until(&self) -> Option<i64> {
        let snapshot = self.0.strava.rate_limits()?;
        let at = OffsetDateTime::now_utc();
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
        for (remaining, reserve, reset) in nearly_spent {
            if remaining.is_some_and(|r| r < reserve) && reset > at {
                return Some(reset.unix_timestamp());
            }
        }
        None
    }

    /// One round of Strava calls: list, detail (+ photos when needed), stats.
    async fn fetch(&self) -> Result<Answer, FetchFailure> {
        let strava = &self.0.strava;
        let mut token = self.0.tokens.access_token().await?;
        let activities = self
            .with_token(&mut token, |t| async move {
                strava.list_activities(&t, ACTIVITIES_PER_PAGE).await
            })
            .await?;
        let Some(activity) = pick_latest_run(&activities, &self.0.settings.sport_types) else {
            return Err(FetchFailure::Api(ApiError::NoPublicRun));
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
        let fetched_at = OffsetDateTime::now_utc();
        let run = build_latest_run(
            activity,
            photo_url,
            stats.ytd_run_totals.distance,
            fetched_at,
        );
        Ok(Answer::from_run(run, fetched_at.unix_timestamp()))
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
    /// An answer for the client (not configured, storage down, no public run, …).
    #[error("{0}")]
    Api(ApiError),
    /// Strava said no until then.
    #[error("Strava rate limit reached")]
    RateLimited(Option<i64>),
    /// Strava failed (5xx, garbage, timeout).
    #[error("{0}")]
    Strava(StravaError),
}

impl FetchFailure {
    fn api_error(&self) -> ApiError {
        match self {
            FetchFailure::Api(err) => err.clone(),
            FetchFailure::RateLimited(_) | FetchFailure::Strava(_) => ApiError::StravaUnavailable,
        }
    }

    fn quiet_until(&self) -> i64 {
        match self {
            FetchFailure::RateLimited(Some(until)) => *until,
            _ => now() + RETRY_AFTER_FAILURE,
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
                FetchFailure::Api(ApiError::StravaAuthorization)
            }
            other => FetchFailure::Strava(other),
        }
    }
}

impl From<TokenError> for FetchFailure {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::NotConfigured => FetchFailure::Api(ApiError::NotConfigured),
            TokenError::Storage(_) => FetchFailure::Api(ApiError::StorageUnavailable),
            TokenError::Rejected(_) => FetchFailure::Api(ApiError::StravaAuthorization),
            TokenError::Strava(err) => FetchFailure::from(err),
            TokenError::Busy => FetchFailure::Api(ApiError::StravaUnavailable),
        }
    }
}
