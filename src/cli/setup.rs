//! The one-time commands around the credentials: `handler setup` (OAuth consent → the
//! `credentials` entity) and `handler status` (what is stored, secrets redacted).

use crate::clock::Clock;
use crate::config::Settings;
use crate::secret::Secret;
use crate::store::{Credentials, Shown, Store, StoreError};
use crate::strava::{RateLimitSnapshot, StravaClient, StravaError};
use std::io::{BufRead, Write};
use time::OffsetDateTime;

/// Where Strava sends the browser after consent; localhost is always allowed, and nothing needs
/// to listen there: the user copies the address from the browser's address bar.
pub const REDIRECT_URI: &str = "http://localhost/exchange_token";

/// Why setup or status stopped; Display is the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Wrong arguments or pasted text.
    #[error("{0}")]
    Input(String),
    /// The athlete did not grant read access to activities.
    #[error("the Strava authorization did not grant activity:read (granted: {0}); run setup again and keep \"View data about your activities\" ticked")]
    ScopeDenied(String),
    /// Strava refused.
    #[error("{0}")]
    Strava(#[from] StravaError),
    /// Storage refused.
    #[error("cannot store the credentials: {0}")]
    Store(#[from] StoreError),
}

/// The arguments of `handler setup`.
pub struct SetupArgs {
    /// Strava API application id.
    pub client_id: String,
    /// Strava API application secret.
    pub client_secret: Secret,
    /// The authorization code, when already at hand.
    pub code: Option<String>,
}

/// The one line printed when no source of the client secret is available.
pub const MISSING_CLIENT_SECRET: &str = "the client secret is missing: pass --client-secret, set STRAVA_CLIENT_SECRET, or run setup in a terminal";

/// The client secret from the command line or `STRAVA_CLIENT_SECRET` (`given`, empty counts as
/// absent), else from `prompt` (a hidden prompt) when stdin is a terminal, else an error.
pub fn resolve_client_secret(
    given: Option<String>,
    stdin_is_terminal: bool,
    prompt: impl FnOnce() -> std::io::Result<String>,
) -> Result<Secret, SetupError> {
    if let Some(secret) = given.filter(|s| !s.trim().is_empty()) {
        return Ok(Secret::new(secret.trim()));
    }
    if !stdin_is_terminal {
        return Err(SetupError::Input(MISSING_CLIENT_SECRET.into()));
    }
    let typed =
        prompt().map_err(|e| SetupError::Input(format!("cannot read the client secret: {e}")))?;
    if typed.trim().is_empty() {
        return Err(SetupError::Input(MISSING_CLIENT_SECRET.into()));
    }
    Ok(Secret::new(typed.trim()))
}

/// A pasted redirect URL (or bare code) taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct PastedCode {
    /// The single-use code.
    pub code: String,
    /// The scopes the athlete granted, when the URL says.
    pub scope: Option<String>,
}

/// Accepts the full redirect URL, its query string, or the bare code.
pub(crate) fn parse_pasted(text: &str) -> Result<PastedCode, SetupError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(SetupError::Input("nothing was pasted".into()));
    }
    let query = match text.split_once('?') {
        Some((_, query)) => Some(query),
        None if text.contains('=') => Some(text),
        None => None,
    };
    let Some(query) = query else {
        if text.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(PastedCode {
                code: text.to_owned(),
                scope: None,
            });
        }
        return Err(SetupError::Input(
            "that is neither the redirect address nor a code".into(),
        ));
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(error) = get("error") {
        return Err(SetupError::Input(format!(
            "Strava reports the authorization as '{error}': approve the app in the browser to connect it"
        )));
    }
    let code = get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| SetupError::Input("the pasted address has no code= parameter".into()))?;
    Ok(PastedCode {
        code,
        scope: get("scope"),
    })
}

fn grants_activity_read(scope: &str) -> bool {
    scope
        .split(',')
        .map(str::trim)
        .any(|s| s == "activity:read" || s == "activity:read_all")
}

/// Runs the consent: prints the authorize URL (without `--code`), reads the pasted answer,
/// exchanges the code, checks the scope and stores the credentials. Returns the line to print.
pub async fn run_setup(
    settings: &Settings,
    args: SetupArgs,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<String, SetupError> {
    if args.client_id.is_empty() || !args.client_id.chars().all(|c| c.is_ascii_digit()) {
        return Err(SetupError::Input(
            "--client-id must be the numeric Client ID from https://www.strava.com/settings/api"
                .into(),
        ));
    }
    if args.client_secret.expose().trim().is_empty() {
        return Err(SetupError::Input(MISSING_CLIENT_SECRET.into()));
    }
    let strava = StravaClient::new(settings.strava_base_url.as_str(), settings.strava_timeout)?;
    let store = Store::connect(&settings.storage)?;

    let pasted = match args.code {
        Some(code) => parse_pasted(&code)?,
        None => {
            let url = strava.authorize_url(&args.client_id, REDIRECT_URI);
            let _ = writeln!(
                output,
                "1. Open this address in a browser, signed in to Strava as the blog's owner, and click Authorize:\n\n   {url}\n\n2. The browser then goes to {REDIRECT_URI}?...code=... (the page itself will not load; that is fine).\n   Paste that whole address (or just the code) here and press Enter:"
            );
            let _ = output.flush();
            let mut line = String::new();
            input
                .read_line(&mut line)
                .map_err(|e| SetupError::Input(format!("cannot read the pasted address: {e}")))?;
            parse_pasted(&line)?
        }
    };
    if let Some(scope) = &pasted.scope {
        if !grants_activity_read(scope) {
            return Err(SetupError::ScopeDenied(scope.clone()));
        }
    }

    let grant = strava
        .exchange_code(&args.client_id, &args.client_secret, &pasted.code)
        .await?;
    // Without a scope in hand (a bare code), ask Strava once whether activities are readable.
    let scope = match pasted.scope {
        Some(scope) => scope,
        None => match strava.list_activities(&grant.access_token, 1, None).await {
            Ok(_) => "activity:read".to_owned(),
            Err(StravaError::MissingScope) => return Err(SetupError::ScopeDenied("read".into())),
            Err(err) => return Err(err.into()),
        },
    };
    let athlete = grant.athlete.clone();
    let credentials = Credentials {
        client_id: args.client_id,
        client_secret: args.client_secret,
        refresh_token: grant.refresh_token,
        access_token: Some(grant.access_token),
        expires_at: Some(grant.expires_at),
        athlete_id: athlete.as_ref().map(|a| a.id),
        scope: Some(scope),
        refresh_lease: None,
        refused_at: None,
    };
    store.replace_credentials(&credentials).await?;
    let who = athlete
        .map(|a| {
            let name = [a.firstname, a.lastname]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            format!(
                "{} (athlete {})",
                if name.is_empty() {
                    "an athlete".into()
                } else {
                    name
                },
                a.id
            )
        })
        .unwrap_or_else(|| "the athlete".into());
    Ok(format!(
        "Connected Strava: {who}. Credentials stored in table '{}'.",
        settings.storage.table_name
    ))
}

/// `handler status`: what is stored, with every secret redacted.
pub async fn run_status(settings: &Settings) -> Result<String, SetupError> {
    let store = Store::connect(&settings.storage)?;
    let mut lines = vec![format!("table: {}", settings.storage.table_name)];
    match store.load_credentials().await? {
        None => lines.push("credentials: none stored; run `handler setup`".into()),
        Some(stored) => {
            let c = stored.value;
            let now = Clock::system().now();
            lines.push(format!("client id: {}", c.client_id));
            lines.push(format!("client secret: {}", c.client_secret));
            lines.push(format!("refresh token: {}", c.refresh_token));
            lines.push(match (&c.access_token, c.expires_at) {
                (Some(token), Some(at)) if at > now => format!(
                    "access token: {token}, expires in {} min ({})",
                    (at - now) / 60,
                    format_unix(at)
                ),
                (Some(token), Some(at)) => {
                    format!("access token: {token}, expired at {}", format_unix(at))
                }
                _ => "access token: none yet (the first refresh fetches one)".into(),
            });
            lines.push(format!(
                "athlete: {}",
                c.athlete_id.map_or("unknown".into(), |id| id.to_string())
            ));
            lines.push(format!(
                "scope: {}",
                c.scope.as_deref().unwrap_or("unknown")
            ));
        }
    }
    lines.push(match store.load_subscription().await {
        Ok(Some(s)) => match &s.callback_secret {
            Some(secret) => format!(
                "push subscription: {} → {}/{{secret}} (secret path: a callback secret of {} characters is set, and a POST without it changes nothing; events of other subscriptions are ignored)",
                s.id,
                s.callback_url.trim_end_matches('/'),
                secret.expose().len()
            ),
            None => format!(
                "push subscription: {} → {} (bare path: made before callbacks carried a secret, so anyone can post events there; run `handler unsubscribe`, then `handler subscribe`, to add one)",
                s.id, s.callback_url
            ),
        },
        Ok(None) => {
            "push subscription: none (`handler subscribe --callback-url URL` makes one)".into()
        }
        Err(err) => format!("push subscription: unreadable ({err})"),
    });
    let latest = store.peek_latest_run().await?.unwrap_or_default();
    lines.push(match &latest.snapshot {
        Some(snapshot) => format!(
            "cached answer: {}, fetched {} min ago ({})",
            match &snapshot.shown {
                Shown::Run { activity_id, .. } => format!("activity {activity_id}"),
                Shown::NoPublicRun => "no public run".to_owned(),
            },
            (Clock::system().now() - snapshot.fetched_at) / 60,
            format_unix(snapshot.fetched_at)
        ),
        None => "cached answer: none yet (the first GetLatestRun request fetches it)".into(),
    });
    if let Some(at) = latest.pending_since() {
        lines.push(format!(
            "push events pending: {}, the oldest since {} (applied as the event budget allows)",
            latest.pending_events.len(),
            format_unix(at)
        ));
    }
    match latest.indexed_year {
        Some(year) => lines.push(format!(
            "activity index: {year} in full, last full pass {}",
            latest.full_pass_at.map_or("never".into(), format_unix)
        )),
        None => lines.push("activity index: not filled yet (the first round fills it)".into()),
    }
    let limits = latest
        .rate_limits
        .and_then(|text| serde_json::from_str::<RateLimitSnapshot>(&text).ok());
    lines.push(match limits {
        Some(limits) => format!(
            "Strava rate limits last seen {}: read {}; overall {}",
            format_unix(limits.observed_at.unix_timestamp()),
            budget_text(limits.read),
            budget_text(limits.overall)
        ),
        None => "Strava rate limits: not seen yet".into(),
    });
    Ok(lines.join("\n"))
}

fn budget_text(budget: Option<crate::strava::Budget>) -> String {
    budget.map_or("unknown".to_owned(), |b| {
        format!(
            "{}/{} this quarter hour, {}/{} today",
            b.short_usage, b.short_limit, b.daily_usage, b.daily_limit
        )
    })
}

fn format_unix(at: i64) -> String {
    OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| at.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_secret_comes_from_the_argument_else_a_prompt_in_a_terminal() {
        let no_prompt = || -> std::io::Result<String> { panic!("must not prompt") };
        let given = resolve_client_secret(Some(" s3cret ".into()), true, no_prompt).expect("given");
        assert_eq!(given.expose(), "s3cret");
        let typed = resolve_client_secret(None, true, || Ok("typed\n".into())).expect("typed");
        assert_eq!(typed.expose(), "typed");
        let typed = resolve_client_secret(Some("  ".into()), true, || Ok("typed".into()))
            .expect("an empty value counts as absent");
        assert_eq!(typed.expose(), "typed");
        for result in [
            resolve_client_secret(None, false, no_prompt),
            resolve_client_secret(None, true, || Ok(String::new())),
        ] {
            let err = result.expect_err("missing");
            assert_eq!(err.to_string(), MISSING_CLIENT_SECRET);
        }
        let err = resolve_client_secret(None, true, || Err(std::io::ErrorKind::NotFound.into()))
            .expect_err("no terminal after all");
        assert!(
            err.to_string().starts_with("cannot read the client secret"),
            "{err}"
        );
    }

    #[test]
    fn pasted_redirects_and_codes_are_understood() {
        let full = parse_pasted(
            "http://localhost/exchange_token?state=&code=5c0a2f1be4d8&scope=read,activity:read\n",
        )
        .expect("url");
        assert_eq!(full.code, "5c0a2f1be4d8");
        assert_eq!(full.scope.as_deref(), Some("read,activity:read"));
        let bare = parse_pasted("  5c0a2f1be4d8 ").expect("bare");
        assert_eq!(
            bare,
            PastedCode {
                code: "5c0a2f1be4d8".into(),
                scope: None
            }
        );
        assert!(
            parse_pasted("http://localhost/exchange_token?state=&error=access_denied").is_err()
        );
        assert!(parse_pasted("").is_err());
        assert!(parse_pasted("not a code!").is_err());
        assert!(grants_activity_read("read,activity:read_all"));
        assert!(!grants_activity_read("read"));
    }
}
