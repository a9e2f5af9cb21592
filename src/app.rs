//! The app's shared state (settings, store, clients) and the dispatch from a function name to
//! the function's code. Built once at start-up without any I/O.

use crate::cache::LatestRunCache;
use crate::config::Settings;
use crate::functions::{self, FunctionName, FunctionRequest, FunctionResponse};
use crate::host::TimerInfo;
use crate::store::Store;
use crate::strava::StravaClient;
use crate::tokens::TokenKeeper;
use std::sync::Arc;

/// Everything a request may need, shared by all requests.
pub struct App {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// The widget's table.
    pub store: Store,
    /// Strava's OAuth and API client.
    pub strava: StravaClient,
    /// The owner of the Strava tokens.
    pub tokens: Arc<TokenKeeper>,
    /// The cached GetLatestRun answer.
    pub latest_run: LatestRunCache,
}

/// Why the app could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The storage settings are unusable.
    #[error("{0}")]
    Storage(#[from] crate::store::StoreError),
    /// The Strava settings are unusable.
    #[error("{0}")]
    Strava(#[from] crate::strava::StravaError),
}

/// A name for this process in refresh leases (unique enough across instances and restarts).
fn instance_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{:x}", std::process::id(), nanos)
}

impl App {
    /// Builds the app's clients; does no network or storage I/O.
    pub fn new(settings: Settings) -> Result<Self, BuildError> {
        let store = Store::connect(&settings.storage)?;
        let strava = StravaClient::new(settings.strava_base_url.as_str(), settings.strava_timeout)?;
        let instance = instance_name();
        let tokens = Arc::new(TokenKeeper::new(
            store.clone(),
            strava.clone(),
            instance.clone(),
        ));
        let settings = Arc::new(settings);
        let latest_run = LatestRunCache::new(
            Arc::clone(&settings),
            store.clone(),
            strava.clone(),
            Arc::clone(&tokens),
            instance,
        );
        Ok(App {
            settings,
            store,
            strava,
            tokens,
            latest_run,
        })
    }

    /// Runs an HTTP function.
    pub async fn call_http(
        &self,
        function: FunctionName,
        request: FunctionRequest,
    ) -> FunctionResponse {
        match function {
            FunctionName::GetLatestRun => functions::get_latest_run::handle(self, &request).await,
            // Timer functions have no public route; the router never sends them here.
            FunctionName::RefreshToken => crate::error::ApiError::NotFound.to_response(),
        }
    }

    /// Runs a timer function: its log lines, or the reason it failed.
    pub async fn call_timer(
        &self,
        function: FunctionName,
        timer: &TimerInfo,
    ) -> Result<Vec<String>, String> {
        match function {
            FunctionName::RefreshToken => functions::refresh_token::run(self, timer).await,
            FunctionName::GetLatestRun => Err("GetLatestRun is not a timer function".into()),
        }
    }
}
