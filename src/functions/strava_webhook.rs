//! `StravaWebhook`: Strava's push subscription callback. `GET` answers the
//! subscription's validation (`hub.mode=subscribe`, the verify token compared in constant time,
//! the challenge echoed), on the bare path or any `{secret}`, since Strava validates the address
//! before `handler subscribe` stores its secret; `POST` takes an event, answers `200` within
//! Strava's two seconds whatever happens next, always with the same body, and leaves the work to
//! the push-event service, but only when it came with the stored callback secret (route
//! `StravaWebhook/{secret?}`, see [`crate::callback_secret`]). An event without it gets the same
//! reply at the same time, [`REPLY_AFTER`] after it was looked at, as an accepted one. Anyone can
//! send either, so the lines about refused ones (an event not ours, a wrong verify token, a wrong
//! callback secret) are written at most once a minute per kind, with how many were held back.

use crate::app::WebhookRefusals;
use crate::callback_secret::{Admission, CallbackSecret};
use crate::http::{ApiError, FunctionRequest, FunctionResponse};
use crate::push_events::{EventOutcome, PushEvents, REPLY_AFTER};
use crate::secret::Secret;
use crate::strava::webhook::WebhookEvent;
use subtle::ConstantTimeEq;
use warp::http::header::ALLOW;
use warp::http::{Method, StatusCode};

/// Handles one webhook request.
pub async fn handle(
    events: &PushEvents,
    callback_secret: &CallbackSecret,
    verify_token: Option<&Secret>,
    refusals: &WebhookRefusals,
    request: &FunctionRequest,
) -> FunctionResponse {
    let Some(verify_token) = verify_token else {
        return ApiError::WebhookNotConfigured.to_response();
    };
    match request.method {
        Method::GET => validate(verify_token, refusals, request),
        Method::POST => receive(events, callback_secret, refusals, request).await,
        _ => ApiError::MethodNotAllowed
            .to_response()
            .with_header(ALLOW, "GET, POST"),
    }
}

/// The subscription's validation: echo the challenge if the verify token is ours.
fn validate(
    verify_token: &Secret,
    refusals: &WebhookRefusals,
    request: &FunctionRequest,
) -> FunctionResponse {
    let query = |name: &str| request.query_value(name);
    if query("hub.mode") != Some("subscribe") {
        return ApiError::BadRequest("Expected hub.mode=subscribe.".into()).to_response();
    }
    let offered = query("hub.verify_token").unwrap_or_default();
    if !bool::from(offered.as_bytes().ct_eq(verify_token.expose().as_bytes())) {
        if let Some(held_back) = refusals.verify_tokens.admit() {
            tracing::warn!(
                held_back,
                "a webhook validation with a wrong verify token was refused (one such line a minute at most)"
            );
        }
        return ApiError::Forbidden.to_response();
    }
    let Some(challenge) = query("hub.challenge").filter(|c| !c.is_empty()) else {
        return ApiError::BadRequest("hub.challenge is missing.".into()).to_response();
    };
    FunctionResponse::json(
        StatusCode::OK,
        &serde_json::json!({ "hub.challenge": challenge }),
    )
}

/// An event: 200 once it is recorded (or known to be not ours, or came without the callback
/// secret), 400 if it is not an event.
async fn receive(
    events: &PushEvents,
    callback_secret: &CallbackSecret,
    refusals: &WebhookRefusals,
    request: &FunctionRequest,
) -> FunctionResponse {
    let event = match WebhookEvent::parse(&request.body) {
        Ok(event) => event,
        Err(message) => return ApiError::BadRequest(message).to_response(),
    };
    let offered = request.param("secret");
    if callback_secret.admit(offered, &event).await == Admission::NotNow {
        // Answered when a taken event would be: the push-event service answers it REPLY_AFTER
        // after it gets it.
        tokio::time::sleep(REPLY_AFTER).await;
        return received();
    }
    if let EventOutcome::Ignored(reason) = events.receive(&event).await {
        if let Some(held_back) = refusals.events.admit() {
            tracing::info!(
                reason,
                held_back,
                "push event ignored (one such line a minute at most)"
            );
        }
    }
    received()
}

/// The one reply for every accepted event, so the reply never tells right ids or secrets from
/// wrong ones.
fn received() -> FunctionResponse {
    FunctionResponse::json(StatusCode::OK, &serde_json::json!({ "status": "received" }))
}
