//! Azure Table Storage behind a small type with exactly the operations the app needs: the
//! `credentials` entity (DESIGN §4) read with its ETag and written with If-Match, so that a
//! concurrent writer surfaces as [`StoreError::Conflict`] instead of silently losing a rotated
//! refresh token. Every call has short retries and a deadline, so an outage answers in seconds.

use crate::config::StorageSettings;
use crate::secret::Secret;
use azure_core::error::ErrorKind;
use azure_core::{Etag, StatusCode};
use azure_data_tables::clients::{TableClient, TableServiceClientBuilder};
use azure_data_tables::prelude::IfMatchCondition;
use azure_storage::{CloudLocation, ConnectionString, StorageCredentials};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The partition every entity of the app lives in.
pub const PARTITION: &str = "strava";
/// Row key of the credentials entity.
pub const CREDENTIALS_ROW: &str = "credentials";
/// Row key of the cached answer.
pub const LATEST_RUN_ROW: &str = "latest-run";

/// The `latest-run` entity: the shared answer and who is refreshing it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatestRunEntity {
    /// The last good answer, once there is one.
    pub snapshot: Option<LatestRunSnapshot>,
    /// The instance fetching a new answer right now, so the others wait for it.
    pub refresh_lease: Option<RefreshLease>,
    /// Strava's rate-limit headers last seen, as JSON (for `handler status`).
    pub rate_limits: Option<String>,
}

/// The last good GetLatestRun answer, shared by all instances.
#[derive(Clone, Debug, PartialEq)]
pub struct LatestRunSnapshot {
    /// The response JSON.
    pub body: String,
    /// When it was fetched from Strava (Unix seconds).
    pub fetched_at: i64,
    /// The activity it shows.
    pub activity_id: i64,
}

/// The well-known Azurite account name.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

/// What can go wrong with storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The connection string cannot be used.
    #[error("the storage connection string is not usable: {0}")]
    BadConnectionString(String),
    /// Storage did not answer, or answered with a server error.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// The entity changed since it was read (If-Match failed) or already exists.
    #[error("the entity was changed by someone else since it was read")]
    Conflict,
    /// The stored entity cannot be understood.
    #[error("the stored {row} entity is not usable: {problem}")]
    Corrupt {
        /// Which entity.
        row: &'static str,
        /// What is wrong with it (never a secret's value).
        problem: String,
    },
}

/// Strava credentials as stored in the `credentials` entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Strava API application id.
    pub client_id: String,
    /// Strava API application secret.
    pub client_secret: Secret,
    /// The newest refresh token.
    pub refresh_token: Secret,
    /// The access token, when one has been fetched.
    pub access_token: Option<Secret>,
    /// When the access token expires (Unix seconds).
    pub expires_at: Option<i64>,
    /// The connected athlete.
    pub athlete_id: Option<i64>,
    /// The scope granted at consent.
    pub scope: Option<String>,
    /// Which instance is refreshing right now, so that instances take turns at Strava.
    pub refresh_lease: Option<RefreshLease>,
}

/// A short claim on the right to refresh: only its owner calls Strava's token endpoint until
/// `until`, so two instances never race with the same refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshLease {
    /// The instance holding it.
    pub owner: String,
    /// Unix seconds when it lapses (a crashed owner cannot block refreshes for long).
    pub until: i64,
}

/// A value read from the table with the ETag that guards its next write.
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// The entity's ETag at read time.
    pub etag: Etag,
}

/// The app's table.
#[derive(Clone, Debug)]
pub struct Store {
    table: TableClient,
    deadline: Duration,
    table_ready: std::sync::Arc<OnceCell<()>>,
}

impl Store {
    /// Builds the client; does no I/O (the table is created on first use).
    pub fn connect(settings: &StorageSettings) -> Result<Self, StoreError> {
        let (location, credentials) = parse_connection_string(settings.connection_string.expose())?;
        let retry = azure_core::RetryOptions::exponential(
            azure_core::ExponentialRetryOptions::default()
                .initial_delay(Duration::from_millis(200))
                .max_retries(2u32)
                .max_delay(Duration::from_secs(1))
                .max_total_elapsed(Duration::from_secs(3)),
        );
        let service = TableServiceClientBuilder::with_location(location, credentials)
            .retry(retry)
            .build();
        Ok(Store {
            table: service.table_client(settings.table_name.clone()),
            deadline: Duration::from_secs(5),
            table_ready: Default::default(),
        })
    }

    /// Creates the table if it does not exist yet (once per process).
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        self.table_ready
            .get_or_try_init(|| async {
                match self.bounded(self.table.create().into_future()).await {
                    Ok(_) => Ok(()),
                    Err(err) if http_status(&err) == Some(StatusCode::Conflict) => Ok(()),
                    Err(err) => Err(classify(err)),
                }
            })
            .await
            .map(|_| ())
    }

    /// Reads the credentials entity; `None` when the owner has not run setup.
    pub async fn load_credentials(&self) -> Result<Option<Versioned<Credentials>>, StoreError> {
        self.load(CREDENTIALS_ROW, credentials_from_entity).await
    }

    /// Replaces the credentials entity if it still has `etag`; [`StoreError::Conflict`] otherwise.
    pub async fn save_credentials(
        &self,
        credentials: &Credentials,
        etag: &Etag,
    ) -> Result<Etag, StoreError> {
        self.update_if_match(CREDENTIALS_ROW, credentials_to_entity(credentials), etag)
            .await
    }

    /// Writes the credentials entity whatever is there (the setup command).
    pub async fn replace_credentials(&self, credentials: &Credentials) -> Result<(), StoreError> {
        self.upsert(CREDENTIALS_ROW, credentials_to_entity(credentials))
            .await
    }

    /// Reads the `latest-run` entity with its ETag.
    pub async fn load_latest_run(&self) -> Result<Option<Versioned<LatestRunEntity>>, StoreError> {
        self.load(LATEST_RUN_ROW, latest_run_from_entity).await
    }

    /// Claims the right to refresh the shared answer: If-Match on what was read, or insert when
    /// there was nothing; [`StoreError::Conflict`] when another instance was faster.
    pub async fn claim_latest_run_refresh(
        &self,
        read: Option<&Versioned<LatestRunEntity>>,
        lease: RefreshLease,
    ) -> Result<(), StoreError> {
        let mut value = read.map(|v| v.value.clone()).unwrap_or_default();
        value.refresh_lease = Some(lease);
        let entity = latest_run_to_entity(&value);
        match read {
            Some(read) => self
                .update_if_match(LATEST_RUN_ROW, entity, &read.etag)
                .await
                .map(|_| ()),
            None => {
                self.ensure_table().await?;
                let insert = self
                    .table
                    .insert::<_, Value>(&entity)
                    .map_err(|err| StoreError::Unavailable(err.to_string()))?;
                self.bounded(insert.into_future()).await.map_err(classify)?;
                Ok(())
            }
        }
    }

    /// Stores a new shared answer and releases any refresh lease (every answer written is good,
    /// so the last writer may win).
    pub async fn save_latest_run(&self, value: &LatestRunEntity) -> Result<(), StoreError> {
        let mut value = value.clone();
        value.refresh_lease = None;
        self.upsert(LATEST_RUN_ROW, latest_run_to_entity(&value))
            .await
    }

    /// Reads and decodes one entity with its ETag.
    async fn load<T>(
        &self,
        row: &str,
        decode: fn(&Map<String, Value>) -> Result<T, StoreError>,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let Some((entity, etag)) = self.get(row).await? else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: decode(&entity)?,
            etag,
        }))
    }

    /// Replaces an entity only if it still has `etag`.
    async fn update_if_match(
        &self,
        row: &str,
        entity: Value,
        etag: &Etag,
    ) -> Result<Etag, StoreError> {
        self.ensure_table().await?;
        let update = self
            .entity_client(row)
            .update(&entity, IfMatchCondition::Etag(etag.clone()))
            .map_err(|err| StoreError::Unavailable(err.to_string()))?;
        let response = self.bounded(update.into_future()).await.map_err(classify)?;
        Ok(response.etag)
    }

    /// Writes an entity whatever is there.
    async fn upsert(&self, row: &str, entity: Value) -> Result<(), StoreError> {
        self.ensure_table().await?;
        let write = self
            .entity_client(row)
            .insert_or_replace(entity)
            .map_err(|err| StoreError::Unavailable(err.to_string()))?;
        self.bounded(write.into_future()).await.map_err(classify)?;
        Ok(())
    }

    /// Reads one entity as JSON with its ETag.
    async fn get(&self, row: &str) -> Result<Option<(Map<String, Value>, Etag)>, StoreError> {
        self.ensure_table().await?;
        let client = self.entity_client(row);
        match self.bounded(client.get::<Value>().into_future()).await {
            Ok(response) => match response.entity {
                Value::Object(map) => Ok(Some((map, response.etag))),
                _ => Err(StoreError::Corrupt {
                    row: static_row(row),
                    problem: "it is not an object".into(),
                }),
            },
            Err(err) if http_status(&err) == Some(StatusCode::NotFound) => Ok(None),
            Err(err) => Err(classify(err)),
        }
    }

    fn entity_client(&self, row: &str) -> azure_data_tables::clients::EntityClient {
        self.table
            .partition_key_client(PARTITION)
            .entity_client(row)
    }

    /// Runs a storage call with the deadline, so a black-holed endpoint cannot hang a request.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = azure_core::Result<T>>,
    ) -> azure_core::Result<T> {
        match tokio::time::timeout(self.deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(azure_core::Error::message(
                ErrorKind::Io,
                "storage did not answer in time",
            )),
        }
    }
}

fn static_row(row: &str) -> &'static str {
    match row {
        CREDENTIALS_ROW => CREDENTIALS_ROW,
        LATEST_RUN_ROW => LATEST_RUN_ROW,
        _ => "table",
    }
}

fn http_status(err: &azure_core::Error) -> Option<StatusCode> {
    err.as_http_error().map(|e| e.status())
}

fn classify(err: azure_core::Error) -> StoreError {
    match http_status(&err) {
        Some(StatusCode::PreconditionFailed) | Some(StatusCode::Conflict) => StoreError::Conflict,
        Some(status) => StoreError::Unavailable(format!("storage answered {}", u16::from(status))),
        None => StoreError::Unavailable(err.to_string()),
    }
}

/// Understands `UseDevelopmentStorage=true` (Azurite's well-known address and account) and full
/// connection strings with an account key and optional `TableEndpoint`.
fn parse_connection_string(text: &str) -> Result<(CloudLocation, StorageCredentials), StoreError> {
    let parsed = ConnectionString::new(text)
        .map_err(|_| StoreError::BadConnectionString("it cannot be parsed".into()))?;
    if parsed.use_development_storage == Some(true) {
        let location = match parsed.development_storage_proxy_uri {
            Some(uri) => CloudLocation::Custom {
                account: EMULATOR_ACCOUNT.into(),
                uri: format!("{}:10002/{EMULATOR_ACCOUNT}", uri.trim_end_matches('/')),
            },
            None => CloudLocation::Emulator {
                address: "127.0.0.1".into(),
                port: 10002,
            },
        };
        return Ok((location, StorageCredentials::emulator()));
    }
    let credentials = parsed.storage_credentials().map_err(|_| {
        StoreError::BadConnectionString("it needs AccountName and AccountKey (or a SAS)".into())
    })?;
    let account = parsed
        .account_name
        .ok_or_else(|| StoreError::BadConnectionString("AccountName is missing".into()))?
        .to_owned();
    let location = match parsed.table_endpoint {
        Some(endpoint) => CloudLocation::Custom {
            account,
            uri: endpoint.trim_end_matches('/').to_owned(),
        },
        None => match parsed.endpoint_suffix {
            Some(suffix) => CloudLocation::Custom {
                uri: format!("https://{account}.table.{suffix}"),
                account,
            },
            None => CloudLocation::Public { account },
        },
    };
    Ok((location, credentials))
}

fn latest_run_to_entity(value: &LatestRunEntity) -> Value {
    let mut map = Map::new();
    map.insert("PartitionKey".into(), json!(PARTITION));
    map.insert("RowKey".into(), json!(LATEST_RUN_ROW));
    if let Some(snapshot) = &value.snapshot {
        let fetched_at = time::OffsetDateTime::from_unix_timestamp(snapshot.fetched_at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        map.insert("Body".into(), json!(snapshot.body));
        map.insert("FetchedAt".into(), json!(fetched_at));
        map.insert("FetchedAt@odata.type".into(), json!("Edm.DateTime"));
        map.insert("ActivityId".into(), json!(snapshot.activity_id.to_string()));
        map.insert("ActivityId@odata.type".into(), json!("Edm.Int64"));
    }
    if let Some(lease) = &value.refresh_lease {
        map.insert("RefreshLeaseOwner".into(), json!(lease.owner));
        map.insert("RefreshLeaseUntil".into(), json!(lease.until.to_string()));
        map.insert("RefreshLeaseUntil@odata.type".into(), json!("Edm.Int64"));
    }
    if let Some(rate_limits) = &value.rate_limits {
        map.insert("RateLimits".into(), json!(rate_limits));
    }
    Value::Object(map)
}

fn latest_run_from_entity(entity: &Map<String, Value>) -> Result<LatestRunEntity, StoreError> {
    let int = |name: &str| {
        entity.get(name).and_then(|v| {
            v.as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .or_else(|| v.as_i64())
        })
    };
    let text = |name: &str| entity.get(name).and_then(Value::as_str).map(str::to_owned);
    let snapshot = match text("Body") {
        None => None,
        Some(body) => {
            let fetched_at = text("FetchedAt")
                .and_then(|t| {
                    time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| t.unix_timestamp());
            match (fetched_at, int("ActivityId")) {
                (Some(fetched_at), Some(activity_id)) => Some(LatestRunSnapshot {
                    body,
                    fetched_at,
                    activity_id,
                }),
                _ => {
                    return Err(StoreError::Corrupt {
                        row: LATEST_RUN_ROW,
                        problem: "FetchedAt or ActivityId is missing".into(),
                    })
                }
            }
        }
    };
    Ok(LatestRunEntity {
        snapshot,
        refresh_lease: match (text("RefreshLeaseOwner"), int("RefreshLeaseUntil")) {
            (Some(owner), Some(until)) => Some(RefreshLease { owner, until }),
            _ => None,
        },
        rate_limits: text("RateLimits"),
    })
}

fn credentials_to_entity(c: &Credentials) -> Value {
    let mut entity = json!({
        "PartitionKey": PARTITION,
        "RowKey": CREDENTIALS_ROW,
        "ClientId": c.client_id,
        "ClientSecret": c.client_secret.expose(),
        "RefreshToken": c.refresh_token.expose(),
    });
    if let Some(map) = entity.as_object_mut() {
        if let Some(token) = &c.access_token {
            map.insert("AccessToken".into(), json!(token.expose()));
        }
        // Int64 travels as a string with an odata type annotation.
        if let Some(expires_at) = c.expires_at {
            map.insert("ExpiresAt".into(), json!(expires_at.to_string()));
            map.insert("ExpiresAt@odata.type".into(), json!("Edm.Int64"));
        }
        if let Some(athlete_id) = c.athlete_id {
            map.insert("AthleteId".into(), json!(athlete_id.to_string()));
            map.insert("AthleteId@odata.type".into(), json!("Edm.Int64"));
        }
        if let Some(scope) = &c.scope {
            map.insert("Scope".into(), json!(scope));
        }
        if let Some(lease) = &c.refresh_lease {
            map.insert("RefreshLeaseOwner".into(), json!(lease.owner));
            map.insert("RefreshLeaseUntil".into(), json!(lease.until.to_string()));
            map.insert("RefreshLeaseUntil@odata.type".into(), json!("Edm.Int64"));
        }
    }
    entity
}

/// Reads the entity leniently: a hand-made one may hold the client id as a number, or only
/// `ClientId`, `ClientSecret` and `RefreshToken`.
fn credentials_from_entity(entity: &Map<String, Value>) -> Result<Credentials, StoreError> {
    let corrupt = |problem: String| StoreError::Corrupt {
        row: CREDENTIALS_ROW,
        problem,
    };
    let text = |name: &str| -> Option<String> {
        match entity.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    };
    let int = |name: &str| -> Result<Option<i64>, StoreError> {
        match entity.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| corrupt(format!("{name} is not a whole number"))),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| corrupt(format!("{name} is not a whole number"))),
            Some(_) => Err(corrupt(format!("{name} is not a whole number"))),
        }
    };
    let client_id = text("ClientId").ok_or_else(|| corrupt("ClientId is missing".into()))?;
    let client_secret =
        text("ClientSecret").ok_or_else(|| corrupt("ClientSecret is missing".into()))?;
    let refresh_token =
        text("RefreshToken").ok_or_else(|| corrupt("RefreshToken is missing".into()))?;
    Ok(Credentials {
        client_id,
        client_secret: Secret::new(client_secret),
        refresh_token: Secret::new(refresh_token),
        access_token: text("AccessToken").map(Secret::new),
        expires_at: int("ExpiresAt")?,
        athlete_id: int("AthleteId")?,
        scope: text("Scope"),
        refresh_lease: match (text("RefreshLeaseOwner"), int("RefreshLeaseUntil")?) {
            (Some(owner), Some(until)) => Some(RefreshLease { owner, until }),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_made_entity_with_three_fields_is_enough() {
        let entity = json!({"ClientId": 139205, "ClientSecret": "s3cret", "RefreshToken": "r1"});
        let creds = credentials_from_entity(entity.as_object().expect("object")).expect("valid");
        assert_eq!(creds.client_id, "139205");
        assert_eq!(creds.refresh_token.expose(), "r1");
        assert!(creds.access_token.is_none());
        assert!(creds.expires_at.is_none());
    }

    #[test]
    fn entity_round_trips_with_int64_as_strings() {
        let creds = Credentials {
            client_id: "1".into(),
            client_secret: Secret::new("s"),
            refresh_token: Secret::new("r"),
            access_token: Some(Secret::new("a")),
            expires_at: Some(1_760_322_667),
            athlete_id: Some(51_877_240),
            scope: Some("read,activity:read".into()),
            refresh_lease: Some(RefreshLease {
                owner: "instance-a".into(),
                until: 1_760_000_030,
            }),
        };
        let entity = credentials_to_entity(&creds);
        assert_eq!(entity["ExpiresAt"], "1760322667");
        assert_eq!(entity["ExpiresAt@odata.type"], "Edm.Int64");
        let back = credentials_from_entity(entity.as_object().expect("object")).expect("valid");
        assert_eq!(back, creds);
    }

    #[test]
    fn missing_or_broken_fields_are_named_without_values() {
        let entity = json!({"ClientId": "1", "ClientSecret": "topsecret"});
        let err =
            credentials_from_entity(entity.as_object().expect("object")).expect_err("no token");
        assert!(err.to_string().contains("RefreshToken is missing"));
        let entity = json!({"ClientId": "1", "ClientSecret": "topsecret", "RefreshToken": "r", "ExpiresAt": "soon"});
        let err =
            credentials_from_entity(entity.as_object().expect("object")).expect_err("bad int");
        assert!(err.to_string().contains("ExpiresAt"));
        assert!(!err.to_string().contains("topsecret"));
    }

    /// The well-known Azurite key (public, documented by Microsoft).
    const EMULATOR_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn table_url(location: &CloudLocation) -> String {
        location
            .url(azure_storage::clients::ServiceType::Table)
            .expect("url")
            .to_string()
    }

    #[test]
    fn connection_strings_map_to_locations() {
        let (location, _) = parse_connection_string("UseDevelopmentStorage=true").expect("dev");
        assert_eq!(
            table_url(&location),
            "http://127.0.0.1:10002/devstoreaccount1"
        );
        let full = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={EMULATOR_KEY};TableEndpoint=http://127.0.0.1:4567/devstoreaccount1;"
        );
        let (location, _) = parse_connection_string(&full).expect("full");
        assert_eq!(
            table_url(&location),
            "http://127.0.0.1:4567/devstoreaccount1"
        );
        let azure = format!("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={EMULATOR_KEY};EndpointSuffix=core.windows.net");
        let (location, _) = parse_connection_string(&azure).expect("azure");
        assert_eq!(location.account(), "acct");
        assert!(parse_connection_string("AccountName=x").is_err());
    }
}
