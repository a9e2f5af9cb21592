//! Keeps a valid Strava access token forever without ever losing a rotated refresh token.
//!
//! The rules (Strava may rotate the refresh token on any refresh, and the old one dies at once):
//! - one refresh at a time per process (a mutex; concurrent callers wait on the same refresh) and
//!   across instances (a short lease written with If-Match on the `credentials` entity);
//! - the newest refresh token is persisted before the new access token is handed out;
//! - a 412 on save means someone else wrote: reload, and never overwrite newer credentials;
//! - a 400 invalid refresh token reloads once (another instance may have rotated it);
//! - storage down after Strava rotated: the new tokens stay in memory and are persisted at the
//!   next chance, loudly logged until then.

use crate::secret::Secret;
use crate::store::{Credentials, RefreshLease, Store, StoreError, Versioned};
use crate::strava::{StravaClient, StravaError, TokenGrant};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// Refresh when the access token has less than this left (seconds).
pub const EARLY_REFRESH_SECONDS: i64 = 300;
/// How long a refresh lease lasts (longer than a Strava call may take).
const LEASE_SECONDS: i64 = 30;
/// How often to look again while another instance holds the lease.
const LEASE_POLL: Duration = Duration::from_millis(250);
/// Attempts at reading, leasing and saving before giving up.
const MAX_ATTEMPTS: usize = 120;

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// Unix seconds when the access token expires.
    pub expires_at: i64,
    /// Whether Strava returned a new refresh token.
    pub rotated: bool,
    /// Whether the new tokens are only in memory (storage was down).
    pub unsaved: bool,
    /// Whether another instance did the refresh and this one adopted its tokens.
    pub adopted: bool,
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No credentials are stored.
    #[error(
        "Strava is not connected yet: run `handler setup` once to store the Strava credentials"
    )]
    NotConfigured,
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
struct Unsaved {
    credentials: Credentials,
    /// The refresh token they replaced: they may be written only over that one.
    predecessor: Secret,
}

#[derive(Default)]
struct State {
    /// The credentials last read or written.
    known: Option<Credentials>,
    /// Tokens awaiting persistence.
    unsaved: Option<Unsaved>,
}

/// The owner of the Strava tokens in this process.
pub struct TokenKeeper {
    store: Store,
    strava: StravaClient,
    instance: String,
    state: Mutex<State>,
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn usable(credentials: &Credentials, at: i64) -> Option<AccessToken> {
    match (&credentials.access_token, credentials.expires_at) {
        (Some(token), Some(expires_at)) if expires_at - at > EARLY_REFRESH_SECONDS => {
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
    credentials
}

/// Why `refresh_locked` was called.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Any token with time left will do (someone else's fresh refresh counts).
    UsableToken,
    /// Ask Strava even if the token has time left (the timer, or after a 401).
    AskStrava,
}

impl TokenKeeper {
    /// A keeper for the credentials in `store`; `instance` names this process in leases.
    pub fn new(store: Store, strava: StravaClient, instance: impl Into<String>) -> Self {
        TokenKeeper {
            store,
            strava,
            instance: instance.into(),
            state: Mutex::new(State::default()),
        }
    }

    /// An access token with more than five minutes left, refreshing first if needed.
    pub async fn access_token(&self) -> Result<AccessToken, TokenError> {
        let mut state = self.state.lock().await;
        self.flush_unsaved(&mut state).await;
        if let Some(token) = state.known.as_ref().and_then(|c| usable(c, now())) {
            return Ok(token);
        }
        self.refresh_locked(&mut state, Need::UsableToken, None)
            .await
            .map(|(token, _)| token)
    }

    /// After Strava answered 401 to `rejected`: refresh once, unless another caller already did.
    pub async fn access_token_after_rejection(
        &self,
        rejected: &Secret,
    ) -> Result<AccessToken, TokenError> {
        let mut state = self.state.lock().await;
        self.flush_unsaved(&mut state).await;
        if let Some(token) = state.known.as_ref().and_then(|c| usable(c, now())) {
            if token.token != *rejected {
                return Ok(token);
            }
        }
        self.refresh_locked(&mut state, Need::AskStrava, Some(rejected))
            .await
            .map(|(token, _)| token)
    }

    /// Refreshes at Strava now (the timer), whatever the current token's expiry.
    pub async fn refresh_now(&self) -> Result<RefreshOutcome, TokenError> {
        let mut state = self.state.lock().await;
        self.flush_unsaved(&mut state).await;
        self.refresh_locked(&mut state, Need::AskStrava, None)
            .await
            .map(|(_, outcome)| outcome)
    }

    /// Persists rotated tokens kept in memory, if storage takes them now.
    async fn flush_unsaved(&self, state: &mut State) {
        let Some(unsaved) = state.unsaved.as_ref() else {
            return;
        };
        let stored = match self.store.load_credentials().await {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                // The entity was deleted meanwhile (a reset); writing it back would undo that.
                tracing::warn!(
                    "the credentials entity disappeared; dropping tokens held in memory"
                );
                state.unsaved = None;
                return;
            }
            Err(err) => {
                tracing::error!(error = %err, "storage still down: the rotated Strava refresh token is only in memory");
                return;
            }
        };
        if stored.value.refresh_token == unsaved.credentials.refresh_token {
            state.unsaved = None;
            state.known = Some(stored.value);
            return;
        }
        if stored.value.refresh_token != unsaved.predecessor {
            // Someone refreshed after us with a token we never saw: theirs is newer.
            tracing::warn!("another instance stored newer Strava tokens; adopting them");
            state.unsaved = None;
            state.known = Some(stored.value);
            return;
        }
        let credentials = unsaved.credentials.clone();
        match self
            .store
            .save_credentials(&credentials, &stored.etag)
            .await
        {
            Ok(_) => {
                tracing::info!(
                    "persisted the rotated Strava refresh token that was held in memory"
                );
                state.unsaved = None;
                state.known = Some(credentials);
            }
            Err(err) => {
                tracing::error!(error = %err, "could not persist the rotated Strava refresh token yet; keeping it in memory");
            }
        }
    }

    /// The refresh protocol; the caller holds the state lock (single flight per process).
    async fn refresh_locked(
        &self,
        state: &mut State,
        need: Need,
        rejected: Option<&Secret>,
    ) -> Result<(AccessToken, RefreshOutcome), TokenError> {
        let mut reloaded_after_invalid = false;
        let mut waited_for_other = false;
        let before = state.known.as_ref().and_then(|c| c.access_token.clone());
        for _ in 0..MAX_ATTEMPTS {
            // 1. Read the stored credentials with their ETag.
            let stored = match self.store.load_credentials().await {
                Ok(Some(stored)) => Some(stored),
                Ok(None) if state.unsaved.is_none() => {
                    state.known = None;
                    return Err(TokenError::NotConfigured);
                }
                Ok(None) => None,
                Err(err) => {
                    if state.known.is_none() {
                        return Err(TokenError::Storage(err));
                    }
                    tracing::error!(error = %err, "storage is down; refreshing with the credentials held in memory");
                    None
                }
            };

            let (credentials, etag) = match stored {
                Some(Versioned { value, etag }) => {
                    let at = now();
                    // Someone else's refresh may already have given us what we need.
                    if let Some(token) = usable(&value, at) {
                        let changed = before.as_ref() != value.access_token.as_ref();
                        let not_rejected = rejected.is_none_or(|r| *r != token.token);
                        if (need == Need::UsableToken || (waited_for_other && changed))
                            && not_rejected
                        {
                            state.known = Some(value);
                            return Ok((
                                token.clone(),
                                RefreshOutcome {
                                    expires_at: token.expires_at,
                                    rotated: false,
                                    unsaved: false,
                                    adopted: waited_for_other,
                                },
                            ));
                        }
                    }
                    if let Some(lease) = &value.refresh_lease {
                        if lease.owner != self.instance && lease.until > at {
                            waited_for_other = true;
                            state.known = Some(value);
                            tokio::time::sleep(LEASE_POLL).await;
                            continue;
                        }
                    }
                    // 2. Take the lease; a conflict means someone else wrote first: read again.
                    let mut leased = value.clone();
                    leased.refresh_lease = Some(RefreshLease {
                        owner: self.instance.clone(),
                        until: at + LEASE_SECONDS,
                    });
                    match self.store.save_credentials(&leased, &etag).await {
                        Ok(new_etag) => (leased, Some(new_etag)),
                        Err(StoreError::Conflict) => continue,
                        Err(err) => {
                            tracing::error!(error = %err, "storage failed while taking the refresh lease; refreshing without it");
                            (value, None)
                        }
                    }
                }
                None => match state.known.clone() {
                    Some(known) => (known, None),
                    None => return Err(TokenError::NotConfigured),
                },
            };

            // 3. Ask Strava.
            let used = credentials.refresh_token.clone();
            let grant = match self
                .strava
                .refresh(&credentials.client_id, &credentials.client_secret, &used)
                .await
            {
                Ok(grant) => grant,
                Err(StravaError::InvalidRefreshToken) if !reloaded_after_invalid => {
                    // Another instance may have rotated it: read once more and try its token.
                    reloaded_after_invalid = true;
                    self.release_lease(&credentials, etag.as_ref()).await;
                    continue;
                }
                Err(err) => {
                    self.release_lease(&credentials, etag.as_ref()).await;
                    return Err(match err {
                        StravaError::InvalidRefreshToken
                        | StravaError::InvalidClient
                        | StravaError::BadRequest { .. } => TokenError::Rejected(err),
                        other => TokenError::Strava(other),
                    });
                }
            };
            let rotated = grant.refresh_token != used;
            let refreshed = apply_grant(credentials, grant);
            let token = usable(&refreshed, now()).unwrap_or_else(|| AccessToken {
                token: refreshed
                    .access_token
                    .clone()
                    .unwrap_or_else(|| Secret::new("")),
                expires_at: refreshed.expires_at.unwrap_or_default(),
                athlete_id: refreshed.athlete_id,
            });

            // 4. Persist before anyone uses the new access token.
            let saved = match etag {
                Some(etag) => self.store.save_credentials(&refreshed, &etag).await,
                None => Err(StoreError::Unavailable(
                    "no ETag: storage was down when read".into(),
                )),
            };
            let outcome = |unsaved: bool, adopted: bool, expires_at: i64| RefreshOutcome {
                expires_at,
                rotated,
                unsaved,
                adopted,
            };
            match saved {
                Ok(_) => {
                    state.unsaved = None;
                    state.known = Some(refreshed);
                    return Ok((token.clone(), outcome(false, false, token.expires_at)));
                }
                Err(StoreError::Conflict) => {
                    // Someone wrote after our lease: newer credentials win unless they are ours.
                    match self.store.load_credentials().await {
                        Ok(Some(current)) if current.value.refresh_token == used => {
                            match self.store.save_credentials(&refreshed, &current.etag).await {
                                Ok(_) => {
                                    state.unsaved = None;
                                    state.known = Some(refreshed);
                                    return Ok((
                                        token.clone(),
                                        outcome(false, false, token.expires_at),
                                    ));
                                }
                                Err(_) => continue,
                            }
                        }
                        Ok(Some(current)) => {
                            tracing::warn!(
                                "another instance stored newer Strava tokens; adopting them"
                            );
                            let adopted = usable(&current.value, now());
                            state.known = Some(current.value);
                            match adopted {
                                Some(t) => {
                                    return Ok((t.clone(), outcome(false, true, t.expires_at)))
                                }
                                None => continue,
                            }
                        }
                        _ => {
                            self.keep_unsaved(state, refreshed, used);
                            return Ok((token.clone(), outcome(true, false, token.expires_at)));
                        }
                    }
                }
                Err(err) => {
                    tracing::error!(
                        error = %err,
                        "STORAGE DOWN AFTER STRAVA ISSUED NEW TOKENS: the refresh token is kept in memory and will be saved at the next chance"
                    );
                    self.keep_unsaved(state, refreshed, used);
                    return Ok((token.clone(), outcome(true, false, token.expires_at)));
                }
            }
        }
        Err(TokenError::Busy)
    }

    fn keep_unsaved(&self, state: &mut State, refreshed: Credentials, used: Secret) {
        // If tokens were already waiting, they were the predecessor of these: keep the oldest
        // predecessor, the one storage still holds.
        let predecessor = state.unsaved.take().map(|u| u.predecessor).unwrap_or(used);
        state.known = Some(refreshed.clone());
        state.unsaved = Some(Unsaved {
            credentials: refreshed,
            predecessor,
        });
    }

    /// Gives the lease back after a failed refresh so other instances need not wait it out.
    async fn release_lease(&self, credentials: &Credentials, etag: Option<&azure_core::Etag>) {
        if let Some(etag) = etag {
            let mut released = credentials.clone();
            released.refresh_lease = None;
            let _ = self.store.save_credentials(&released, etag).await;
        }
    }
}
