//! `handler subscribe --callback-url URL` and `handler unsubscribe`: manage the application's
//! one Strava push subscription with the client id and secret stored by `handler setup`, and
//! keep its id in the table so that events of other subscriptions are ignored. Every failure
//! Strava is known to give is one clear line.

use crate::config::Settings;
use crate::store::{Store, StoreError, Subscription};
use crate::strava::{StravaClient, StravaError};

/// Why a subscription command stopped; Display is the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// Something to fix before trying again.
    #[error("{0}")]
    Input(String),
    /// Strava refused, for a reason not known in advance.
    #[error("{0}")]
    Strava(#[from] StravaError),
    /// Storage refused.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// Creates the push subscription for `callback_url`; the line to print.
pub async fn run_subscribe(
    settings: &Settings,
    callback_url: &str,
) -> Result<String, SubscribeError> {
    let verify_token = settings.webhook_verify_token.clone().ok_or_else(|| {
        SubscribeError::Input(
            "STRAVA_WEBHOOK_VERIFY_TOKEN is not set: set it to the same value here and in the app's settings, where the app must already run".into(),
        )
    })?;
    let url = url::Url::parse(callback_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            SubscribeError::Input(format!(
                "--callback-url must be the app's webhook address, like https://APP.azurewebsites.net/api/StravaWebhook (got {callback_url:?})"
            ))
        })?;
    let (store, strava, credentials) = connect(settings).await?;
    let created = strava
        .create_push_subscription(
            &credentials.client_id,
            &credentials.client_secret,
            url.as_str(),
            &verify_token,
        )
        .await;
    let id = match created {
        Ok(id) => id,
        Err(StravaError::BadRequest { message }) if message.contains("already exists") => {
            let existing = strava
                .list_push_subscriptions(&credentials.client_id, &credentials.client_secret)
                .await
                .unwrap_or_default();
            return Err(SubscribeError::Input(match existing.first() {
                Some(s) => format!(
                    "a push subscription already exists (id {}, callback {}); run `handler unsubscribe` first",
                    s.id, s.callback_url
                ),
                None => "a push subscription already exists; run `handler unsubscribe` first".into(),
            }));
        }
        Err(StravaError::BadRequest { message })
            if message.contains("not verifiable") || message.contains("callback") =>
        {
            return Err(SubscribeError::Input(format!(
                "Strava could not validate {url}: the app must be running there with the same STRAVA_WEBHOOK_VERIFY_TOKEN and answer GET within 2 s ({message})"
            )));
        }
        Err(StravaError::InvalidClient) => {
            return Err(SubscribeError::Input(
                "Strava rejected the client id or secret stored by `handler setup`; run setup again with the right ones".into(),
            ))
        }
        Err(err) => return Err(err.into()),
    };
    store
        .save_subscription(&Subscription {
            id,
            callback_url: url.to_string(),
        })
        .await?;
    Ok(format!(
        "Subscribed: Strava delivers push events to {url} (subscription {id})."
    ))
}

/// Deletes the push subscription (the stored one, else whatever Strava lists); the line to print.
pub async fn run_unsubscribe(settings: &Settings) -> Result<String, SubscribeError> {
    let (store, strava, credentials) = connect(settings).await?;
    let listed = strava
        .list_push_subscriptions(&credentials.client_id, &credentials.client_secret)
        .await
        .map_err(|err| match err {
            StravaError::InvalidClient => SubscribeError::Input(
                "Strava rejected the client id or secret stored by `handler setup`".into(),
            ),
            other => other.into(),
        })?;
    let Some(subscription) = listed.first() else {
        store.delete_subscription().await?;
        return Ok("No push subscription exists; nothing to do.".into());
    };
    strava
        .delete_push_subscription(
            subscription.id,
            &credentials.client_id,
            &credentials.client_secret,
        )
        .await?;
    store.delete_subscription().await?;
    Ok(format!(
        "Unsubscribed: deleted push subscription {} (callback {}).",
        subscription.id, subscription.callback_url
    ))
}

async fn connect(
    settings: &Settings,
) -> Result<(Store, StravaClient, crate::store::Credentials), SubscribeError> {
    let store = Store::connect(&settings.storage)?;
    let strava = StravaClient::new(settings.strava_base_url.as_str(), settings.strava_timeout)?;
    let credentials = store
        .load_credentials()
        .await?
        .ok_or_else(|| {
            SubscribeError::Input(
                "no Strava credentials are stored: run `handler setup` first".into(),
            )
        })?
        .value;
    Ok((store, strava, credentials))
}
