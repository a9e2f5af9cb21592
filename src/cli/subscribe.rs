//! `handler subscribe --callback-url URL` and `handler unsubscribe`: manage the application's
//! one Strava push subscription with the client id and secret stored by `handler setup`, and
//! keep its id in the table so that events of other subscriptions are ignored. Strava signs no
//! event, so the callback carries a secret: `subscribe` makes a new random one each time, keeps
//! it in the `subscription` entity and registers `URL/{secret}`. No command prints the secret
//! (addresses are shown with `{secret}` in its place). Every failure Strava is known to give is
//! one clear line.

use crate::config::Settings;
use crate::secret::Secret;
use crate::store::{Store, StoreError, Subscription};
use crate::strava::{StravaClient, StravaError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The longest callback address Strava takes, in characters.
pub const MAX_CALLBACK_CHARS: usize = 255;

/// Random bytes in a callback secret: 256 bits, 43 characters of URL-safe base64.
const SECRET_BYTES: usize = 32;

/// The shortest path segment [`shown`] takes for a secret (128 bits of URL-safe base64).
const SECRET_MIN_CHARS: usize = 22;

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
    let secret = new_callback_secret()?;
    let callback = callback_with_secret(&url, &secret)?;
    let (store, strava, credentials) = connect(settings).await?;
    let created = strava
        .create_push_subscription(
            &credentials.client_id,
            &credentials.client_secret,
            callback.as_str(),
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
                    s.id,
                    shown(&s.callback_url)
                ),
                None => "a push subscription already exists; run `handler unsubscribe` first".into(),
            }));
        }
        Err(StravaError::BadRequest { message })
            if message.contains("not verifiable") || message.contains("callback") =>
        {
            return Err(SubscribeError::Input(format!(
                "Strava could not validate {}: the app must be running there with the same STRAVA_WEBHOOK_VERIFY_TOKEN and answer GET within 2 s ({message})",
                shown(callback.as_str())
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
            callback_secret: Some(secret.clone()),
        })
        .await?;
    Ok(format!(
        "Subscribed: Strava delivers push events to {} (subscription {id}); the secret ({} characters) is kept in the table, and a POST without it changes nothing.",
        shown(callback.as_str()),
        secret.expose().len()
    ))
}

/// A new callback secret: random bytes from the operating system's source, as URL-safe base64
/// without padding (letters, digits, `-` and `_`: one path segment as it is).
pub fn new_callback_secret() -> Result<Secret, SubscribeError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|err| {
        SubscribeError::Input(format!(
            "the operating system's random source failed ({err}); try again"
        ))
    })?;
    Ok(Secret::new(URL_SAFE_NO_PAD.encode(bytes)))
}

/// The address Strava is given: `base` with `secret` as one more path segment (a trailing `/`
/// of `base` is not doubled), at most [`MAX_CALLBACK_CHARS`] long.
pub fn callback_with_secret(base: &url::Url, secret: &Secret) -> Result<url::Url, SubscribeError> {
    let mut callback = base.clone();
    callback
        .path_segments_mut()
        .map_err(|()| {
            SubscribeError::Input(format!(
                "--callback-url must be an http or https address with a path (got {base})"
            ))
        })?
        .pop_if_empty()
        .push(secret.expose());
    let length = callback.as_str().chars().count();
    if length > MAX_CALLBACK_CHARS {
        let room = MAX_CALLBACK_CHARS.saturating_sub(length - base.as_str().chars().count());
        return Err(SubscribeError::Input(format!(
            "--callback-url is too long: with its secret the callback address has {length} characters and Strava takes at most {MAX_CALLBACK_CHARS}; give an address of at most {room} characters"
        )));
    }
    Ok(callback)
}

/// A callback address fit to print: a last path segment that may be a callback secret (at least
/// 22 letters, digits, `-` or `_`) is shown as `{secret}`.
pub fn shown(callback_url: &str) -> String {
    let Some((start, last)) = callback_url
        .split(['?', '#'])
        .next()
        .and_then(|path| path.trim_end_matches('/').rsplit_once('/'))
    else {
        return callback_url.to_owned();
    };
    let secret_like = last.len() >= SECRET_MIN_CHARS
        && last
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !secret_like || start.ends_with('/') {
        return callback_url.to_owned();
    }
    callback_url.replacen(
        &format!("{start}/{last}"),
        &format!("{start}/{{secret}}"),
        1,
    )
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
        subscription.id,
        shown(&subscription.callback_url)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_256_random_bits_in_43_url_safe_characters() {
        let one = new_callback_secret().expect("random");
        let two = new_callback_secret().expect("random");
        assert_eq!(one.expose().len(), 43);
        assert!(one
            .expose()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(one, two);
    }

    #[test]
    fn the_secret_is_one_more_path_segment_within_255_characters() {
        let secret = Secret::new("k3W9-fQ_2xYbN7mLpR4sTuVw");
        for base in [
            "https://app.example/api/StravaWebhook",
            "https://app.example/api/StravaWebhook/",
        ] {
            let url = url::Url::parse(base).expect("url");
            assert_eq!(
                callback_with_secret(&url, &secret).expect("fits").as_str(),
                "https://app.example/api/StravaWebhook/k3W9-fQ_2xYbN7mLpR4sTuVw"
            );
        }
        let room = MAX_CALLBACK_CHARS - 1 - secret.expose().len();
        let prefix = "https://app.example/";
        let fits = format!("{prefix}{}", "a".repeat(room - prefix.len()));
        let url = url::Url::parse(&fits).expect("url");
        assert_eq!(
            callback_with_secret(&url, &secret)
                .expect("fits")
                .as_str()
                .len(),
            MAX_CALLBACK_CHARS
        );
        let long = url::Url::parse(&format!("{fits}a")).expect("url");
        let err = callback_with_secret(&long, &secret).expect_err("too long");
        assert!(err.to_string().contains("too long"), "{err}");
        assert!(!err.to_string().contains(secret.expose()), "{err}");
    }

    #[test]
    fn printed_callbacks_show_no_secret() {
        assert_eq!(
            shown("https://app.example/api/StravaWebhook/k3W9-fQ_2xYbN7mLpR4sTuVw"),
            "https://app.example/api/StravaWebhook/{secret}"
        );
        assert_eq!(
            shown("https://app.example/api/StravaWebhook/k3W9-fQ_2xYbN7mLpR4sTuVw?x=1"),
            "https://app.example/api/StravaWebhook/{secret}?x=1"
        );
        for plain in [
            "https://app.example/api/StravaWebhook",
            "https://app.example/api/StravaWebhook/",
            "https://averyveryverylonghostnamewithnodots",
        ] {
            assert_eq!(shown(plain), plain);
        }
    }
}
