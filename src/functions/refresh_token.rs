//! `RefreshToken` (timer, every two hours): refreshes the Strava access token and saves the
//! newest refresh token with If-Match.

use crate::app::App;
use crate::error::ApiError;
use crate::host::TimerInfo;

/// Runs one timer invocation: the log lines on success, the reason on failure.
pub async fn run(app: &App, timer: &TimerInfo) -> Result<Vec<String>, String> {
    let mut logs = Vec::new();
    if timer.is_past_due {
        logs.push("RefreshToken is running late (past due); refreshing now".to_owned());
    }
    match app.store.load_credentials().await {
        Ok(None) => Err(format!("RefreshToken: {}", ApiError::NotConfigured)),
        Ok(Some(_)) => Err("RefreshToken: not implemented".into()),
        Err(err) => Err(format!("RefreshToken: cannot read the credentials: {err}")),
    }
}
