//! The app's shared state (settings, store, clients) and the dispatch from a function name to
//! the function's code. Built once at start-up without any I/O.

use crate::config::Settings;
use crate::functions::{self, FunctionName, FunctionRequest, FunctionResponse};
use crate::host::TimerInfo;
use crate::store::{Store, StoreError};
use std::sync::Arc;

/// Everything a request may need, shared by all requests.
pub struct App {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// The widget's table.
    pub store: Store,
}

impl App {
    /// Builds the app's clients; does no network or storage I/O.
    pub fn new(settings: Settings) -> Result<Self, StoreError> {
        let store = Store::connect(&settings.storage)?;
        Ok(App {
            settings: Arc::new(settings),
            store,
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
