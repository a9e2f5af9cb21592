//! Strava's push events (webhooks): the event a subscription delivers, read leniently, and the
//! calls that create, list and delete the application's one push subscription
//! (`/api/v3/push_subscriptions`, authenticated by the client id and secret).

use super::{StravaClient, StravaError};
use crate::secret::Secret;
use reqwest::header::ACCEPT;
use serde::Deserialize;
use serde_json::Value;

/// What an event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectType {
    /// An activity (`object_id` is the activity id).
    Activity,
    /// The athlete (`object_id` is the athlete id): a deauthorization, or a profile update.
    Athlete,
    /// Something this app does not know.
    Other(String),
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Aspect {
    /// Created.
    Create,
    /// Changed (title, type, privacy; or the athlete's authorization).
    Update,
    /// Deleted.
    Delete,
    /// Something this app does not know.
    Other(String),
}

/// One push event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    /// What it is about.
    pub object_type: ObjectType,
    /// The activity's or athlete's id.
    pub object_id: i64,
    /// What happened.
    pub aspect: Aspect,
    /// The athlete the object belongs to.
    pub owner_id: i64,
    /// The subscription that delivered it.
    pub subscription_id: i64,
    /// When it happened (Unix seconds).
    pub event_time: i64,
    /// `updates`, values as text (Strava sends `"true"`/`"false"` as strings).
    pub updates: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct WireEvent {
    object_type: String,
    object_id: i64,
    aspect_type: String,
    owner_id: i64,
    subscription_id: i64,
    #[serde(default)]
    event_time: i64,
    #[serde(default)]
    updates: Option<serde_json::Map<String, Value>>,
}

impl WebhookEvent {
    /// Reads an event body; the error says what is wrong, in a sentence, without echoing it.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let wire: WireEvent = serde_json::from_slice(body).map_err(|err| {
            format!(
                "The body is not a Strava push event ({}).",
                match err.classify() {
                    serde_json::error::Category::Data => "a field is missing or of the wrong type",
                    _ => "it is not JSON",
                }
            )
        })?;
        let updates = wire
            .updates
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (key, text)
            })
            .collect();
        Ok(WebhookEvent {
            object_type: match wire.object_type.as_str() {
                "activity" => ObjectType::Activity,
                "athlete" => ObjectType::Athlete,
                _ => ObjectType::Other(wire.object_type),
            },
            object_id: wire.object_id,
            aspect: match wire.aspect_type.as_str() {
                "create" => Aspect::Create,
                "update" => Aspect::Update,
                "delete" => Aspect::Delete,
                _ => Aspect::Other(wire.aspect_type),
            },
            owner_id: wire.owner_id,
            subscription_id: wire.subscription_id,
            event_time: wire.event_time,
            updates,
        })
    }

    /// An update's value, by key.
    pub fn update(&self, key: &str) -> Option<&str> {
        self.updates
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the athlete says they revoked the app (unsigned: verify before acting).
    pub fn is_deauthorization(&self) -> bool {
        self.object_type == ObjectType::Athlete
            && self.aspect == Aspect::Update
            && self.update("authorized") == Some("false")
    }
}

/// The application's push subscription, as Strava lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PushSubscription {
    /// Its id (events carry it as `subscription_id`).
    pub id: i64,
    /// Where Strava delivers events.
    #[serde(default)]
    pub callback_url: String,
}

#[derive(Deserialize)]
struct Created {
    id: i64,
}

impl StravaClient {
    /// Creates the push subscription; Strava validates `callback_url` with a GET at once.
    pub async fn create_push_subscription(
        &self,
        client_id: &str,
        client_secret: &Secret,
        callback_url: &str,
        verify_token: &Secret,
    ) -> Result<i64, StravaError> {
        let form = [
            ("client_id", client_id),
            ("client_secret", client_secret.expose()),
            ("callback_url", callback_url),
            ("verify_token", verify_token.expose()),
        ];
        let request = self
            .http
            .post(self.endpoint(&["api", "v3", "push_subscriptions"]))
            .header(ACCEPT, "application/json")
            .form(&form);
        let scrub = [client_secret.expose(), verify_token.expose()];
        let answer = self
            .execute(request, false)
            .await
            .map_err(|e| e.scrub(&scrub))?;
        let created: Created = answer.decode().map_err(|e| e.scrub(&scrub))?;
        Ok(created.id)
    }

    /// The application's push subscriptions (at most one).
    pub async fn list_push_subscriptions(
        &self,
        client_id: &str,
        client_secret: &Secret,
    ) -> Result<Vec<PushSubscription>, StravaError> {
        let request = self
            .http
            .get(self.endpoint(&["api", "v3", "push_subscriptions"]))
            .header(ACCEPT, "application/json")
            .query(&[
                ("client_id", client_id),
                ("client_secret", client_secret.expose()),
            ]);
        let scrub = [client_secret.expose()];
        let answer = self
            .execute(request, false)
            .await
            .map_err(|e| e.scrub(&scrub))?;
        answer.decode().map_err(|e| e.scrub(&scrub))
    }

    /// Deletes the push subscription `id`.
    pub async fn delete_push_subscription(
        &self,
        id: i64,
        client_id: &str,
        client_secret: &Secret,
    ) -> Result<(), StravaError> {
        let request = self
            .http
            .delete(self.endpoint(&["api", "v3", "push_subscriptions", &id.to_string()]))
            .query(&[
                ("client_id", client_id),
                ("client_secret", client_secret.expose()),
            ]);
        self.execute(request, false)
            .await
            .map_err(|e| e.scrub(&[client_secret.expose()]))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/strava")
            .join(name);
        std::fs::read(path).expect("sample")
    }

    #[test]
    fn reads_the_four_sample_events() {
        let create = WebhookEvent::parse(&sample("webhook-event-create.json")).expect("create");
        assert_eq!(create.object_type, ObjectType::Activity);
        assert_eq!(create.aspect, Aspect::Create);
        assert_eq!(create.subscription_id, 287431);
        let update = WebhookEvent::parse(&sample("webhook-event-update.json")).expect("update");
        assert_eq!(update.update("private"), Some("true"));
        assert!(!update.is_deauthorization());
        let delete = WebhookEvent::parse(&sample("webhook-event-delete.json")).expect("delete");
        assert_eq!(delete.aspect, Aspect::Delete);
        let deauth =
            WebhookEvent::parse(&sample("webhook-event-deauthorize.json")).expect("deauth");
        assert!(deauth.is_deauthorization());
    }

    #[test]
    fn malformed_events_are_refused_with_a_sentence() {
        for body in [
            &b""[..],
            b"not json",
            b"[]",
            b"{\"object_type\":\"activity\"}",
            b"{\"object_type\":1,\"object_id\":1,\"aspect_type\":\"create\",\"owner_id\":1,\"subscription_id\":1}",
        ] {
            let err = WebhookEvent::parse(body).expect_err("malformed");
            assert!(err.starts_with("The body is not a Strava push event"), "{err}");
        }
        let odd = WebhookEvent::parse(
            b"{\"object_type\":\"club\",\"object_id\":1,\"aspect_type\":\"merge\",\"owner_id\":2,\"subscription_id\":3,\"updates\":{\"private\":true}}",
        )
        .expect("unknown kinds are still events");
        assert_eq!(odd.object_type, ObjectType::Other("club".into()));
        assert_eq!(odd.update("private"), Some("true"));
    }
}
