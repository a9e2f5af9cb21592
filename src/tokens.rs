//! Keeps a valid Strava access token forever without ever losing a rotated refresh token.
//!
//! Strava may rotate the refresh token on any refresh, and the old one dies at once, so a
//! refresh is a protocol of named steps, run in a task that no request owns (a visitor who hangs
//! up cannot cancel it between Strava's answer and the save):
//! 1. **read and lease**: read the `credentials` entity; take a usable token someone else just
//!    stored, wait while another instance holds the [`Lease`], or take the lease (If-Match);
//! 2. **exchange** the refresh token at Strava;
//! 3. **persist** the new tokens with If-Match, only over the refresh token they replace. From
//!    the moment Strava answers, they are *held* in memory; if storage will not take them
//!    within seconds they stay held, are used for the next refresh (never the dead stored
//!    token), and are retried on a backoff schedule and at shutdown. Newer tokens stored by
//!    another instance are adopted, never overwritten.
//!
//! One refresh runs at a time per process (a mutex; concurrent callers get its result).

use crate::clock::Clock;
use crate::secret::Secret;
use crate::store::{Credentials, Lease, Store, StoreError, Versioned};
use crate::strava::{StravaClient, StravaError, TokenGrant};
use azure_core::Etag;
use backon::{ExponentialBuilder, Retryable};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;
use tracing::Instrument;

/// Refresh when the access token has less than this left (seconds).
pub const EARLY_REFRESH_SECONDS: i64 = 300;
/// How long a refresh lease lasts (longer than a Strava call may take).
const LEASE_SECONDS: i64 = 30;
/// How often to look again while another instance holds the lease: first, and at most.
const LEASE_POLL: Duration = Duration::from_millis(250);
const LEASE_POLL_MAX: Duration = Duration::from_secs(1);
/// How long one refresh may take in all, waiting for other instances included.
const REFRESH_DEADLINE: Duration = Duration::from_secs(60);
/// How long the persist step keeps trying before it leaves the tokens held in memory.
const PERSIST_DEADLINE: Duration = Duration::from_secs(8);
/// Backoff of the background retries of held tokens: the wait before the first, then the
/// waits after each failed one (doubling to a minute; whole seconds, which backon's builder
/// doubles exactly), for as long as it takes.
const HELD_RETRY_FIRST: Duration = Duration::from_secs(1);
const HELD_RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_secs(2))
    .with_max_delay(Duration::from_secs(60))
    .without_max_times();

/// An access token ready for an API call.
#[derive(Clone, Debug)]
pub struct AccessToken {
    /// The bearer token.
    pub token: Secret,
    /// Unix seconds when it expires.
    pub expires_at: i64,
    /// The connected athlete, when known.
    pub athlete_id: Option<i64>,
}

/// What a refresh did, for the timer's log (no secrets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Strava issued tokens and they are stored.
    Saved {
        /// Unix seconds when the access token expires.
        expires_at: i64,
        /// Whether Strava returned a new refresh token.
        rotated: bool,
    },
    /// Another instance refreshed; its stored tokens were taken.
    Adopted {
        /// Unix seconds when the access token expires.
        expires_at: i64,
    },
    /// Strava issued tokens but storage did not take them yet: they are held in memory and
    /// retried in the background.
    HeldInMemory {
        /// Unix seconds when the access token expires.
        expires_at: i64,
        /// Whether Strava returned a new refresh token.
        rotated: bool,
    },
    /// The current token still had time left; nothing was asked.
    StillValid {
        /// Unix seconds when the access token expires.
        expires_at: i64,
    },
}

impl RefreshOutcome {
    /// When the access token in use now expires.
    pub fn expires_at(&self) -> i64 {
        match *self {
            RefreshOutcome::Saved { expires_at, .. }
            | RefreshOutcome::Adopted { expires_at }
            | RefreshOutcome::HeldInMemory { expires_at, .. }
            | RefreshOutcome::StillValid { expires_at } => expires_at,
        }
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No credentials are stored.
    #[error(
        "Strava is not connected yet: run `handler setup` once to store the Strava credentials"
    )]
    NotConfigured,
    /// The stored credentials cannot be read (a hand edit, a half write).
    #[error("{0}; run `handler setup` again")]
    Unusable(StoreError),
    /// Storage is down and nothing usable is held in memory.
    #[error("cannot read the credentials: {0}")]
    Storage(StoreError),
    /// Strava refused the stored credentials; only a new consent helps.
    #[error("Strava refused the stored credentials ({0}); run `handler setup` again")]
    Rejected(StravaError),
    /// Strava could not be asked right now.
    #[error("Strava could not refresh the token: {0}")]
    Strava(StravaError),
    /// Another instance held the refresh lease the whole time.
    #[error("another instance kept refreshing the token; try again shortly")]
    Busy,
}

/// Rotated tokens that storage has not accepted yet.
#[derive(Clone)]
struct Held {
    credentials: Credentials,
    /// Every refresh token this process used since storage last confirmed a save, oldest
    /// first: the held tokens may be written only over one of these (a save that timed out may
    /// still have landed, so storage can hold any of them).
    predecessors: Vec<Secret>,
}

#[derive(Default)]
struct State {
    /// The credentials last read or written.
    known: Option<Credentials>,
    /// Tokens awaiting persistence.
    held: Option<Held>,
    /// The refresh token Strava last refused for good.
    refused: Option<Secret>,
}

/// Why a refresh was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// Any token with time left will do (someone else's fresh refresh counts).
    UsableToken,
    /// Ask Strava even if the token has time left (the timer, or after a 401).
    AskStrava,
}

/// The result of the read-and-lease step.
enum Start {
    /// A usable token is stored (someone else refreshed): take it.
    Use(AccessToken),
    /// Another instance holds the lease: look again shortly.
    Wait,
    /// Someone wrote between our read and our lease: read again.
    Retry,
    /// Ours to refresh: these credentials, and the ETag to save over (none: storage is down).
    Exchange(Credentials, Option<Etag>),
}

/// How the persist step ended.
enum Persisted {
    Saved,
    Adopted,
    Held,
    /// The entity was deleted meanwhile (a reset): the tokens are dropped.
    Dropped,
}

/// Storage did not take the held tokens yet.
struct StillHeld;

/// The owner of the Strava tokens in this process; cheap to clone.
#[derive(Clone)]
pub struct TokenKeeper(Arc<Inner>);

struct Inner {
    store: Store,
    strava: StravaClient,
    instance: String,
    clock: Clock,
    state: Mutex<State>,
    held_retry_running: AtomicBool,
    /// Set at shutdown: no new exchange may start once the last save attempt has run.
    closing: AtomicBool,
}

fn usable(credentials: &Credentials, at: i64) -> Option<AccessToken> {
    match (&credentials.access_token, credentials.expires_at) {
        (Some(token), Some(expires_at))
            if expires_at.saturating_sub(at) > EARLY_REFRESH_SECONDS =>
        {
            Some(AccessToken {
                token: token.clone(),
                expires_at,
                athlete_id: credentials.athlete_id,
            })
        }
        _ => None,
    }
}

fn apply_grant(mut credentials: Credentials, grant: TokenGrant) -> Credentials {
    credentials.access_token = Some(grant.access_token);
    credentials.refresh_token = grant.refresh_token;
    credentials.expires_at = Some(grant.expires_at);
    if let Some(athlete) = grant.athlete {
        credentials.athlete_id = Some(athlete.id);
    }
    credentials.refresh_lease = None;
    // Strava just accepted the chain: whatever refusal was recorded is over.
    credentials.refused_at = None;
    credentials
}

fn token_of(credentials: &Credentials) -> AccessToken {
    AccessToken {
        token: credentials
            .access_token
            .clone()
            .unwrap_or_else(|| Secret::new("")),
        expires_at: credentials.expires_at.unwrap_or_default(),
        athlete_id: credentials.athlete_id,
    }
}

impl TokenKeeper {
    /// A keeper for the credentials in `store`; `instance` names this process in leases.
    pub fn new(store: Store, strava: StravaClient, instance: impl Into<String>) -> Self {
        Self::with_clock(store, strava, instance, Clock::system())
    }

    /// A keeper that reads the time from `clock`.
    pub fn with_clock(
        store: Store,
        strava: StravaClient,
        instance: impl Into<String>,
        clock: Clock,
    ) -> Self {
        TokenKeeper(Arc::new(Inner {
            store,
            strava,
            instance: instance.into(),
            clock,
            state: Mutex::new(State::default()),
            held_retry_running: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        }))
    }

    /// An access token with more than five minutes left, refreshing first if needed.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn access_token(&self) -> Result<AccessToken, TokenError> {
        self.detached(Need::UsableToken, None)
            .await
            .map(|(token, _)| token)
    }

    /// After Strava answered 401 to `rejected`: refresh once, unless another caller already did.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn access_token_after_rejection(
        &self,
        rejected: &Secret,
    ) -> Result<AccessToken, TokenError> {
        self.detached(Need::AskStrava, Some(rejected.clone()))
            .await
            .map(|(token, _)| token)
    }

    /// Refreshes at Strava now (the timer), whatever the current token's expiry.
    #[tracing::instrument(skip_all)]
    pub async fn refresh_now(&self) -> Result<RefreshOutcome, TokenError> {
        self.detached(Need::AskStrava, None)
            .await
            .map(|(_, outcome)| outcome)
    }

    /// Tries once more to persist tokens held in memory (graceful shutdown); whether none are
    /// left unsaved.
    #[tracing::instrument(skip_all)]
    pub async fn persist_held(&self) -> bool {
        let mut state = self.0.state.lock().await;
        self.0.closing.store(true, Ordering::Release);
        if state.held.is_none() {
            return true;
        }
        let persisted = self
            .persist_held_locked(&mut state, None, PERSIST_DEADLINE)
            .await;
        if matches!(persisted, Persisted::Held) {
            tracing::error!("shutting down with a rotated Strava refresh token that storage never took; run `handler setup` again if the widget stops");
            return false;
        }
        true
    }

    /// Saves the connected athlete's id into credentials that lack it (made by hand): the first
    /// round that learns it from Strava's list calls this, so later rounds and the push events'
    /// owner check have it. Never over another id; a failure is only logged (the next round
    /// tries again).
    pub async fn learn_athlete_id(&self, athlete_id: i64) {
        let saved = self
            .0
            .store
            .modify_credentials(|credentials| match credentials.athlete_id {
                Some(_) => crate::store::Change::Keep(()),
                None => {
                    credentials.athlete_id = Some(athlete_id);
                    crate::store::Change::Save(())
                }
            })
            .await;
        match saved {
            Ok(_) => {
                let mut state = self.0.state.lock().await;
                let State { known, held, .. } = &mut *state;
                for credentials in known
                    .iter_mut()
                    .chain(held.iter_mut().map(|h| &mut h.credentials))
                {
                    credentials.athlete_id.get_or_insert(athlete_id);
                }
                tracing::info!("the connected athlete's id is now stored with the credentials");
            }
            Err(err) => tracing::warn!(error = %err, "could not store the athlete's id yet"),
        }
    }

    /// Marks the stored credentials refused (If-Match), if they still hold the refresh token
    /// Strava last refused here: whether they were marked. Credentials changed since (a newer
    /// refresh, a new setup) are left alone.
    pub async fn mark_refused(&self) -> Result<bool, StoreError> {
        let Some(refused) = self.0.state.lock().await.refused.clone() else {
            return Ok(false);
        };
        let now = self.0.clock.now();
        let marked = self
            .0
            .store
            .modify_credentials(|credentials| {
                if credentials.refresh_token != refused || credentials.refused_at.is_some() {
                    return crate::store::Change::Keep(false);
                }
                credentials.refused_at = Some(now);
                crate::store::Change::Save(true)
            })
            .await?
            .unwrap_or(false);
        if marked {
            // Tokens held here (a newer link of the chain) stay: they restore the credentials.
            self.0.state.lock().await.known = None;
        }
        Ok(marked)
    }

    /// Runs the refresh in a task of its own, so that a caller that goes away (a visitor who
    /// hangs up) cannot cancel it between Strava's answer and the save.
    async fn detached(
        &self,
        need: Need,
        rejected: Option<Secret>,
    ) -> Result<(AccessToken, RefreshOutcome), TokenError> {
        let keeper = self.clone();
        let task = tokio::spawn(
            async move { keeper.refresh(need, rejected.as_ref()).await }.in_current_span(),
        );
        match task.await {
            Ok(result) => result,
            Err(err) => {
                tracing::error!(error = %err, "the token refresh task failed");
                Err(TokenError::Busy)
            }
        }
    }

    /// The refresh protocol (read and lease → exchange → persist), one at a time per process.
    #[tracing::instrument(level = "debug", skip_all, fields(need = ?need))]
    async fn refresh(
        &self,
        need: Need,
        rejected: Option<&Secret>,
    ) -> Result<(AccessToken, RefreshOutcome), TokenError> {
        let mut state = self.0.state.lock().await;
        let not_rejected = |token: &AccessToken| rejected.is_none_or(|r| *r != token.token);
        if state.held.is_some() {
            self.persist_held_locked(&mut state, None, Duration::ZERO)
                .await;
        }
        if let Some(held) = state.held.clone() {
            // Storage still has not taken the newest tokens: they, not the stored (dead) ones,
            // are what to use and refresh from.
            if let Some(token) = usable(&held.credentials, self.0.clock.now()) {
                if need == Need::UsableToken && not_rejected(&token) {
                    let expires_at = token.expires_at;
                    return Ok((token, RefreshOutcome::StillValid { expires_at }));
                }
            }
            let grant = self.exchange(&held.credentials).await.inspect_err(|err| {
                if matches!(err, TokenError::Rejected(StravaError::InvalidRefreshToken)) {
                    state.refused = Some(held.credentials.refresh_token.clone());
                }
            })?;
            return Ok(self
                .persist(&mut state, held.credentials, grant, None)
                .await);
        }
        // A caller whose token was rejected is served by a token someone refreshed since.
        if need == Need::UsableToken || rejected.is_some() {
            if let Some(token) = state
                .known
                .as_ref()
                .and_then(|c| usable(c, self.0.clock.now()))
                .filter(|t| not_rejected(t))
            {
                let expires_at = token.expires_at;
                return Ok((token, RefreshOutcome::StillValid { expires_at }));
            }
        }

        let deadline = Instant::now() + REFRESH_DEADLINE;
        let before = state.known.as_ref().and_then(|c| c.access_token.clone());
        let mut waited_for_other = false;
        let mut reloaded_after_invalid = false;
        let mut poll = LEASE_POLL;
        while Instant::now() < deadline {
            let start = self
                .read_and_lease(&mut state, need, rejected, waited_for_other, &before)
                .await?;
            let (credentials, etag) = match start {
                Start::Use(token) => {
                    let expires_at = token.expires_at;
                    let outcome = if waited_for_other {
                        RefreshOutcome::Adopted { expires_at }
                    } else {
                        RefreshOutcome::StillValid { expires_at }
                    };
                    return Ok((token, outcome));
                }
                Start::Wait => {
                    waited_for_other = true;
                    tokio::time::sleep(poll).await;
                    poll = (poll * 2).min(LEASE_POLL_MAX);
                    continue;
                }
                Start::Retry => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Start::Exchange(credentials, etag) => (credentials, etag),
            };
            match self.exchange(&credentials).await {
                Ok(grant) => return Ok(self.persist(&mut state, credentials, grant, etag).await),
                Err(TokenError::Rejected(StravaError::InvalidRefreshToken))
                    if !reloaded_after_invalid =>
                {
                    // Another instance may have rotated it: read once more and try its token.
                    reloaded_after_invalid = true;
                    self.release_lease(&credentials, etag.as_ref()).await;
                }
                Err(err) => {
                    if matches!(err, TokenError::Rejected(StravaError::InvalidRefreshToken)) {
                        state.refused = Some(credentials.refresh_token.clone());
                    }
                    self.release_lease(&credentials, etag.as_ref()).await;
                    return Err(err);
                }
            }
        }
        Err(TokenError::Busy)
    }

    /// Step 1: read the stored credentials, and take a fresh token, wait, or take the lease.
    async fn read_and_lease(
        &self,
        state: &mut State,
        need: Need,
        rejected: Option<&Secret>,
        waited_for_other: bool,
        before: &Option<Secret>,
    ) -> Result<Start, TokenError> {
        let Versioned {
            value,
            etag,
            read_at,
        } = match self.0.store.load_credentials().await {
            // Refused by Strava after a deauthorization: not connected until a new setup (or
            // held tokens of the same chain, which never get here, restore it).
            Ok(Some(stored)) if stored.value.refused_at.is_some() => {
                state.known = None;
                return Err(TokenError::NotConfigured);
            }
            Ok(Some(stored)) => stored,
            Ok(None) => {
                state.known = None;
                return Err(TokenError::NotConfigured);
            }
            Err(err @ StoreError::Corrupt { .. }) => return Err(TokenError::Unusable(err)),
            Err(err) => {
                return match &state.known {
                    Some(known) => {
                        tracing::error!(error = %err, "storage is down; refreshing with the credentials held in memory");
                        Ok(Start::Exchange(known.clone(), None))
                    }
                    None => Err(TokenError::Storage(err)),
                }
            }
        };
        // Someone else's refresh may already have given us what we need.
        if let Some(token) = usable(&value, self.0.clock.now()) {
            let changed = before.as_ref() != value.access_token.as_ref();
            let not_rejected = rejected.is_none_or(|r| *r != token.token);
            if (need == Need::UsableToken || (waited_for_other && changed)) && not_rejected {
                state.known = Some(value);
                return Ok(Start::Use(token));
            }
        }
        if value
            .refresh_lease
            .as_ref()
            .is_some_and(|lease| lease.blocks(&self.0.instance, read_at))
        {
            state.known = Some(value);
            return Ok(Start::Wait);
        }
        let mut leased = value.clone();
        leased.refresh_lease = Some(Lease::taken(&self.0.instance, read_at, LEASE_SECONDS));
        match self.0.store.save_credentials(&leased, &etag).await {
            Ok(etag) => Ok(Start::Exchange(leased, Some(etag))),
            Err(StoreError::Conflict) => Ok(Start::Retry),
            Err(err) => {
                tracing::error!(error = %err, "storage failed while taking the refresh lease; refreshing without it");
                Ok(Start::Exchange(value, None))
            }
        }
    }

    /// Step 2: ask Strava for new tokens (never while shutting down: there would be no later
    /// chance to save what Strava issues).
    async fn exchange(&self, credentials: &Credentials) -> Result<TokenGrant, TokenError> {
        if self.0.closing.load(Ordering::Acquire) {
            return Err(TokenError::Busy);
        }
        self.0
            .strava
            .refresh(
                &credentials.client_id,
                &credentials.client_secret,
                &credentials.refresh_token,
            )
            .await
            .map_err(|err| match err {
                StravaError::InvalidRefreshToken
                | StravaError::InvalidClient
                | StravaError::BadRequest { .. } => TokenError::Rejected(err),
                other => TokenError::Strava(other),
            })
    }

    /// Step 3: hold the new tokens, then save them over the refresh token they replace.
    async fn persist(
        &self,
        state: &mut MutexGuard<'_, State>,
        used: Credentials,
        grant: TokenGrant,
        etag: Option<Etag>,
    ) -> (AccessToken, RefreshOutcome) {
        let rotated = grant.refresh_token != used.refresh_token;
        // If tokens were already held, storage may still hold any of their predecessors.
        let mut predecessors = state
            .held
            .take()
            .map(|held| held.predecessors)
            .unwrap_or_default();
        if !predecessors.contains(&used.refresh_token) {
            predecessors.push(used.refresh_token.clone());
        }
        let refreshed = apply_grant(used, grant);
        let token = token_of(&refreshed);
        let expires_at = token.expires_at;
        state.known = Some(refreshed.clone());
        state.held = Some(Held {
            credentials: refreshed,
            predecessors,
        });
        let outcome = match self
            .persist_held_locked(state, etag, PERSIST_DEADLINE)
            .await
        {
            Persisted::Saved | Persisted::Dropped => RefreshOutcome::Saved {
                expires_at,
                rotated,
            },
            Persisted::Adopted => RefreshOutcome::Adopted { expires_at },
            Persisted::Held => {
                tracing::error!("STORAGE DID NOT TAKE THE NEW STRAVA TOKENS: the refresh token is held in memory and retried in the background");
                self.spawn_held_retry();
                RefreshOutcome::HeldInMemory {
                    expires_at,
                    rotated,
                }
            }
        };
        (token, outcome)
    }

    /// Saves the held tokens if the stored refresh token is one of their predecessors; adopts
    /// newer stored ones; keeps trying until `patience` has passed (at least one attempt).
    async fn persist_held_locked(
        &self,
        state: &mut State,
        mut etag: Option<Etag>,
        patience: Duration,
    ) -> Persisted {
        let until = Instant::now() + patience;
        let mut backoff = Duration::from_millis(200);
        let mut conflicts = 0;
        loop {
            let Some(held) = state.held.clone() else {
                return Persisted::Saved;
            };
            let over = match etag.take() {
                Some(etag) => etag,
                None => match self.0.store.load_credentials().await {
                    // Ours landed already (a save that timed out may have gone through).
                    Ok(Some(stored))
                        if stored.value.refresh_token == held.credentials.refresh_token
                            && stored.value.access_token == held.credentials.access_token =>
                    {
                        state.held = None;
                        state.known = Some(stored.value);
                        return Persisted::Saved;
                    }
                    // Storage holds a token ours replace (or the same one, not rotated).
                    Ok(Some(stored))
                        if stored.value.refresh_token == held.credentials.refresh_token
                            || held.predecessors.contains(&stored.value.refresh_token) =>
                    {
                        stored.etag
                    }
                    Ok(Some(stored)) => {
                        // A token this process never had: another instance refreshed after
                        // ours were issued, so theirs is the newest.
                        tracing::warn!(
                            "another instance stored newer Strava tokens; adopting them"
                        );
                        state.held = None;
                        state.known = Some(stored.value);
                        return Persisted::Adopted;
                    }
                    Ok(None) => {
                        // Deleted meanwhile (a reset): writing it back would undo that.
                        tracing::warn!("the credentials entity disappeared; dropping the tokens held in memory");
                        state.held = None;
                        state.known = None;
                        return Persisted::Dropped;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot read the credentials to save the held tokens");
                        if Instant::now() >= until {
                            return Persisted::Held;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                },
            };
            match self
                .0
                .store
                .save_credentials(&held.credentials, &over)
                .await
            {
                Ok(_) => {
                    state.held = None;
                    return Persisted::Saved;
                }
                // Someone wrote since the read: read again and decide again.
                Err(StoreError::Conflict) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "storage did not take the new tokens yet");
                    if Instant::now() >= until {
                        return Persisted::Held;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
            // Conflicts again and again: someone keeps writing; leave it to a later try.
            conflicts += 1;
            if conflicts > 5 && Instant::now() >= until {
                return Persisted::Held;
            }
        }
    }

    /// Retries held tokens in the background on a growing interval until storage takes them.
    fn spawn_held_retry(&self) {
        if self.0.held_retry_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let keeper = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(HELD_RETRY_FIRST).await;
            // Endless: it ends once storage took the tokens (or nothing is held any more).
            let _ = (|| keeper.persist_held_again()).retry(HELD_RETRY).await;
            keeper.0.held_retry_running.store(false, Ordering::Release);
        });
    }

    /// One background try to persist the held tokens; `Err` while storage still refuses them.
    async fn persist_held_again(&self) -> Result<(), StillHeld> {
        let mut state = self.0.state.lock().await;
        if state.held.is_none() {
            return Ok(());
        }
        match self
            .persist_held_locked(&mut state, None, Duration::ZERO)
            .await
        {
            Persisted::Held => Err(StillHeld),
            _ => {
                tracing::info!("persisted the Strava tokens that were held in memory");
                Ok(())
            }
        }
    }

    /// Gives the lease back after a failed refresh so other instances need not wait it out.
    async fn release_lease(&self, credentials: &Credentials, etag: Option<&Etag>) {
        if let Some(etag) = etag {
            let mut released = credentials.clone();
            released.refresh_lease = None;
            let _ = self.0.store.save_credentials(&released, etag).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    #[test]
    fn held_tokens_are_retried_after_1_2_4_8_16_32_then_every_60_seconds() {
        let waits: Vec<Duration> = std::iter::once(HELD_RETRY_FIRST)
            .chain(HELD_RETRY.build())
            .take(9)
            .collect();
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16, 32, 60, 60, 60].map(Duration::from_secs)
        );
    }
}
