//! Why a round or an event could not ask Strava, and what that means for the widget: the
//! domain error it answers and how long Strava is left alone afterwards.

use super::LatestRunError;
use crate::store::StoreError;
use crate::strava::StravaError;
use crate::tokens::TokenError;

/// After a failed refresh, wait this long before asking Strava again (seconds).
pub(super) const RETRY_AFTER_FAILURE: i64 = 60;
/// After storage could not be reached (Strava was not asked), look again this soon (seconds):
/// only storage is spared, and the widget answers again as soon as storage is back.
const RETRY_AFTER_STORAGE_FAILURE: i64 = 5;

/// Why a fetch round failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchFailure {
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
    /// The activity index could not be read or written.
    #[error("{0}")]
    Storage(StoreError),
    /// Another instance took the round's lease over (this round outlasted it).
    #[error("another instance took the round over")]
    LeaseLost,
}

impl FetchFailure {
    pub(super) fn error(&self) -> LatestRunError {
        match self {
            FetchFailure::Tokens(err) => match err {
                TokenError::NotConfigured => LatestRunError::NotConfigured,
                TokenError::Unusable(err) => LatestRunError::CredentialsUnusable(err.to_string()),
                TokenError::Storage(_) => LatestRunError::StorageUnavailable,
                TokenError::Rejected(_) => LatestRunError::StravaAuthorization,
                TokenError::Strava(_) | TokenError::Busy => LatestRunError::StravaUnavailable,
            },
            FetchFailure::Storage(_) => LatestRunError::StorageUnavailable,
            FetchFailure::Authorization(_) => LatestRunError::StravaAuthorization,
            FetchFailure::RateLimited(_)
            | FetchFailure::BudgetSpent(_)
            | FetchFailure::Strava(_)
            | FetchFailure::LeaseLost => LatestRunError::StravaUnavailable,
        }
    }

    pub(super) fn quiet_until(&self, now: i64) -> i64 {
        match self {
            FetchFailure::RateLimited(Some(until)) | FetchFailure::BudgetSpent(until) => *until,
            FetchFailure::Tokens(TokenError::Storage(_))
            | FetchFailure::Storage(_)
            | FetchFailure::LeaseLost => now + RETRY_AFTER_STORAGE_FAILURE,
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

impl From<StoreError> for FetchFailure {
    fn from(err: StoreError) -> Self {
        FetchFailure::Storage(err)
    }
}
