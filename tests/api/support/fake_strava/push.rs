//! The fake's push subscriptions (STRAVA.md §8): `POST /api/v3/push_subscriptions` validates the
//! callback with a real `GET` (2 s timeout, the challenge must come back) before it answers
//! `{"id": n}`; `GET` lists it; `DELETE /api/v3/push_subscriptions/{id}` removes it. Events are
//! delivered by [`super::FakeStrava::deliver_event`] with Strava's rule: `POST` with a 2 s
//! timeout, three attempts in all.

use super::{lock, Reply, State, CLIENT_ID, CLIENT_SECRET};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warp::http::Method;

/// Strava's answer time limit for the callback, both for validation and for events.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(2);

/// The application's one subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeSubscription {
    /// Its id.
    pub id: i64,
    /// Where events go.
    pub callback_url: String,
}

/// Push-subscription state inside the fake.
#[derive(Default)]
pub(super) struct PushState {
    pub(super) subscription: Option<FakeSubscription>,
    next_id: i64,
    /// Validations performed (GETs to a callback).
    pub(super) validations: u32,
}

/// What one event delivery did.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Attempts made (1 to 3).
    pub attempts: u32,
    /// Whether an attempt got a 200 within 2 s.
    pub acknowledged: bool,
    /// Status of the last attempt that answered.
    pub last_status: Option<u16>,
    /// How long the acknowledged attempt took.
    pub acknowledged_in: Option<Duration>,
}

fn push_error(field: &str, code: &str) -> Value {
    json!({"message": "Bad Request", "errors": [{"resource": "PushSubscription", "field": field, "code": code}]})
}

fn app_error(field: &str) -> Value {
    json!({"message": "Bad Request", "errors": [{"resource": "Application", "field": field, "code": "invalid"}]})
}

/// Handles `/api/v3/push_subscriptions[/{id}]` (`rest` is what follows `push_subscriptions`).
pub(super) async fn handle(
    state: &Arc<Mutex<State>>,
    method: &Method,
    rest: &[&str],
    params: &HashMap<String, String>,
) -> Reply {
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or("");
    if param("client_id") != CLIENT_ID {
        return Reply::json(400, &app_error("client_id"));
    }
    if param("client_secret") != CLIENT_SECRET {
        return Reply::json(400, &app_error("client_secret"));
    }
    match (method.as_str(), rest) {
        ("POST", []) => create(state, param("callback_url"), param("verify_token")).await,
        ("GET", []) => {
            let st = lock(state);
            let list: Vec<Value> = st
                .push
                .subscription
                .iter()
                .map(|s| {
                    json!({
                        "id": s.id, "resource_state": 2, "application_id": CLIENT_ID.parse::<i64>().unwrap_or(0),
                        "callback_url": s.callback_url,
                        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
                    })
                })
                .collect();
            Reply::json(200, &Value::Array(list))
        }
        ("DELETE", [id]) => {
            let mut st = lock(state);
            match &st.push.subscription {
                Some(s) if s.id.to_string() == *id => {
                    st.push.subscription = None;
                    Reply::raw_json(204, "")
                }
                _ => Reply::json(
                    404,
                    &json!({"message": "Resource Not Found", "errors": [{"resource": "PushSubscription", "field": "id", "code": "not found"}]}),
                ),
            }
        }
        _ => Reply::json(404, &json!({"message": "Record Not Found", "errors": []})),
    }
}

async fn create(state: &Arc<Mutex<State>>, callback_url: &str, verify_token: &str) -> Reply {
    if callback_url.is_empty() {
        return Reply::json(400, &push_error("callback url", "invalid"));
    }
    if lock(state).push.subscription.is_some() {
        return Reply::json(400, &push_error("", "already exists"));
    }
    let challenge = format!("challenge-{}", rand_suffix());
    lock(state).push.validations += 1;
    let validated = async {
        let response = reqwest::Client::new()
            .get(callback_url)
            .query(&[
                ("hub.verify_token", verify_token),
                ("hub.challenge", challenge.as_str()),
                ("hub.mode", "subscribe"),
            ])
            .timeout(CALLBACK_TIMEOUT)
            .send()
            .await
            .ok()?;
        if response.status().as_u16() != 200 {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        (body.get("hub.challenge").and_then(Value::as_str) == Some(challenge.as_str()))
            .then_some(())
    }
    .await;
    if validated.is_none() {
        return Reply::json(400, &push_error("callback url", "not verifiable"));
    }
    let mut st = lock(state);
    st.push.next_id += 1;
    let id = 287_430 + st.push.next_id;
    st.push.subscription = Some(FakeSubscription {
        id,
        callback_url: callback_url.to_owned(),
    });
    Reply::json(201, &json!({ "id": id }))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// POSTs `event` to `callback_url` as Strava does: 2 s per attempt, three attempts in all.
pub(super) async fn deliver(callback_url: &str, event: &Value) -> Delivery {
    let client = reqwest::Client::new();
    let mut delivery = Delivery {
        attempts: 0,
        acknowledged: false,
        last_status: None,
        acknowledged_in: None,
    };
    for _ in 0..3 {
        delivery.attempts += 1;
        let started = Instant::now();
        let answer = client
            .post(callback_url)
            .json(event)
            .timeout(CALLBACK_TIMEOUT)
            .send()
            .await;
        if let Ok(response) = answer {
            let status = response.status().as_u16();
            delivery.last_status = Some(status);
            if status == 200 {
                delivery.acknowledged = true;
                delivery.acknowledged_in = Some(started.elapsed());
                return delivery;
            }
        }
        // Strava retries minutes later; the fake does not make tests wait that long.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    delivery
}
