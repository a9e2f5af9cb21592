//! `RefreshToken` (timer, every two hours): asks Strava for fresh tokens on every run, as the
//! original did, so the refresh-token chain stays exercised and revoked access shows up early.

use crate::clock::Clock;
use crate::http::TimerInfo;
use crate::latest_run::LatestRunService;
use crate::tokens::{RefreshOutcome, TokenKeeper};

/// Runs one timer invocation: the log lines on success, the reason on failure.
pub async fn run(
    tokens: &TokenKeeper,
    latest_run: &LatestRunService,
    clock: &Clock,
    timer: &TimerInfo,
) -> Result<Vec<String>, String> {
    let mut logs = Vec::new();
    if timer.is_past_due {
        logs.push(
            "RefreshToken is past due (the app was down over an occurrence); refreshing now"
                .to_owned(),
        );
    }
    if timer.is_first_run() {
        logs.push("RefreshToken first run on this schedule".to_owned());
    }
    let outcome = tokens
        .refresh_now()
        .await
        .map_err(|err| format!("RefreshToken failed: {err}"))?;
    let valid_for = outcome.expires_at().saturating_sub(clock.now());
    let what = match outcome {
        RefreshOutcome::Saved { rotated: true, .. } => "refresh token rotated and saved",
        RefreshOutcome::Saved { rotated: false, .. } => "refresh token unchanged; saved",
        RefreshOutcome::Adopted { .. } => "another instance refreshed; adopted its tokens",
        RefreshOutcome::HeldInMemory { .. } => {
            "STORAGE DOWN: new tokens held in memory and retried until storage takes them"
        }
        RefreshOutcome::StillValid { .. } => "token still valid",
    };
    logs.push(format!(
        "RefreshToken: access token valid for {} more minutes; {what}",
        valid_for / 60
    ));
    // Warm the shared answer while we are at it, so the first visitor after a quiet spell gets a
    // recent run; a failure here is the widget's concern, not the token's.
    latest_run.catch_up().await;
    latest_run.refresh().await;
    for line in &logs {
        tracing::info!("{line}");
    }
    Ok(logs)
}
