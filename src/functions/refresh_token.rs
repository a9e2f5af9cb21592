//! `RefreshToken` (timer, every two hours): asks Strava for fresh tokens on every run, as the
//! original did, so the refresh-token chain stays exercised and revoked access shows up early.

use crate::app::App;
use crate::host::TimerInfo;
use time::OffsetDateTime;

/// Runs one timer invocation: the log lines on success, the reason on failure.
pub async fn run(app: &App, timer: &TimerInfo) -> Result<Vec<String>, String> {
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
    let outcome = app
        .tokens
        .refresh_now()
        .await
        .map_err(|err| format!("RefreshToken failed: {err}"))?;
    let valid_for = outcome.expires_at - OffsetDateTime::now_utc().unix_timestamp();
    logs.push(format!(
        "RefreshToken: access token valid for {} more minutes; refresh token {}{}{}",
        valid_for / 60,
        if outcome.rotated {
            "rotated"
        } else {
            "unchanged"
        },
        if outcome.adopted {
            " (another instance refreshed; adopted its tokens)"
        } else {
            ""
        },
        if outcome.unsaved {
            "; STORAGE DOWN: new tokens held in memory until it returns"
        } else {
            ""
        },
    ));
    // Warm the shared answer while we are at it, so the first visitor after a quiet spell gets a
    // recent run; a failure here is the widget's concern, not the token's.
    app.latest_run.refresh().await;
    for line in &logs {
        tracing::info!("{line}");
    }
    Ok(logs)
}
