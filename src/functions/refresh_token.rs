//! `RefreshToken` (timer, every two hours): asks Strava for fresh tokens on every run, as the
//! original did, so the refresh-token chain stays exercised and revoked access shows up early.

use crate::clock::Clock;
use crate::http::TimerInfo;
use crate::keeper::IndexKeeper;
use crate::tokens::{RefreshOutcome, TokenKeeper};

/// Runs one timer invocation: the log lines on success, the reason on failure.
pub async fn run(
    tokens: &TokenKeeper,
    latest_run: &IndexKeeper,
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
    let (refreshed, what) = match outcome {
        RefreshOutcome::Saved { rotated: true, .. } => (true, "refresh token rotated and saved"),
        RefreshOutcome::Saved { rotated: false, .. } => (true, "refresh token unchanged; saved"),
        RefreshOutcome::Adopted { .. } => (false, "another instance refreshed; adopted its tokens"),
        RefreshOutcome::HeldInMemory { .. } => (
            true,
            "STORAGE DOWN: new tokens held in memory and retried until storage takes them",
        ),
        RefreshOutcome::StillValid { .. } => (false, "token still valid"),
    };
    logs.push(format!(
        "RefreshToken: access token valid for {} more minutes; {what}",
        valid_for / 60
    ));
    // Warm the shared answer while we are at it, so the first visitor after a quiet spell gets a
    // recent run; a failure here is the widget's concern, not the token's.
    latest_run.catch_up().await;
    let warmed = latest_run.refresh().await;
    let (budget_15min, budget_day) = latest_run.strava_budget_left();
    let expires_at = time::OffsetDateTime::from_unix_timestamp(outcome.expires_at())
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    // One summary line per run, with everything an operator looks for as fields.
    tracing::info!(
        refreshed,
        outcome = what,
        token_expires_at = %expires_at,
        token_valid_minutes = valid_for / 60,
        cache = warmed.as_str(),
        strava_budget_15min_left = budget_15min,
        strava_budget_day_left = budget_day,
        past_due = timer.is_past_due,
        first_run = timer.is_first_run(),
        "RefreshToken run: {what}; cache {}",
        warmed.as_str()
    );
    Ok(logs)
}
