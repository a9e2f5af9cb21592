//! Azure Table Storage behind a small type with exactly the operations the app needs: the
//! `credentials` and `latest-run` entities read with their ETag and the storage service's time,
//! written with If-Match so a concurrent writer surfaces as [`StoreError::Conflict`] instead of
//! silently losing a rotated refresh token ([`Store::modify_latest_run`] and
//! [`Store::modify_credentials`] are the one "read, change, save with If-Match, retry on
//! conflict" loop), the one [`Lease`] both entities use, and the activity index (one entity per
//! public run, [`IndexedRun`]). Every call has short retries and a deadline, so an outage answers
//! in seconds.

mod connection;
mod entities;
mod runs;

pub use connection::parse_connection_string;
pub use entities::{
    add_pending, ActivityRead, Credentials, EventBudget, LatestRunSnapshot, PendingEvent, Shown,
    StoredLatestRun, StoredOffset, Subscription,
};
pub use runs::{IndexedRun, Tombstone};

/// Values the unit tests of other modules build entries from.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::runs::tests::run;
}

use crate::backoff;
use crate::config::StorageSettings;
use azure_core::error::ErrorKind;
use azure_core::{Etag, StatusCode};
use azure_data_tables::clients::{TableClient, TableServiceClientBuilder};
use azure_data_tables::prelude::IfMatchCondition;
use backon::RetryableWithContext;
use entities::{CredentialsEntity, LatestRunEntity, SubscriptionEntity};
use futures_util::StreamExt;
use runs::{RunEntity, TombstoneEntity};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The partition every entity of the app lives in.
pub const PARTITION: &str = "strava";
/// Row key of the credentials entity.
pub const CREDENTIALS_ROW: &str = "credentials";
/// Row key of the cached answer.
pub const LATEST_RUN_ROW: &str = "latest-run";
/// Row key of the push subscription.
pub const SUBSCRIPTION_ROW: &str = "subscription";

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

/// A short claim on the right to refresh one entity's contents: only its owner calls Strava for
/// it until `until`. `until` is in the storage service's time (the `Date` of the read the lease
/// was taken on), and holders are judged by the `Date` of a later read, so instances whose
/// clocks disagree still agree on when a lease lapses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The instance holding it.
    pub owner: String,
    /// Unix seconds, storage-service time, when it lapses (a crashed owner cannot block long).
    pub until: i64,
}

impl Lease {
    /// A lease for `owner` taken on a read made at storage time `read_at`.
    pub fn taken(owner: &str, read_at: i64, seconds: i64) -> Lease {
        Lease {
            owner: owner.to_owned(),
            until: read_at.saturating_add(seconds),
        }
    }

    /// Whether the lease keeps `me` waiting at storage time `now`.
    pub fn blocks(&self, me: &str, now: i64) -> bool {
        self.owner != me && self.until > now
    }
}

/// How often a read-change-save is tried when other writers keep getting in first.
const MODIFY_ATTEMPTS: usize = 10;
/// The first pause after a conflict and the longest (doubled after each), plus a few
/// milliseconds per attempt so far.
const MODIFY_PAUSE: Duration = Duration::from_millis(15);
const MODIFY_PAUSE_MAX: Duration = Duration::from_millis(500);
const MODIFY_PAUSE_STEP: Duration = Duration::from_millis(7);

/// What a change made by [`Store::modify_latest_run`] or [`Store::modify_credentials`] asks
/// for.
pub enum Change<R> {
    /// Save the changed value (If-Match on the version read) and return this.
    Save(R),
    /// Nothing to save: return this.
    Keep(R),
}

/// A value read from the table with the ETag that guards its next write.
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// The entity's ETag at read time.
    pub etag: Etag,
    /// The storage service's time of the read (its `Date` header), Unix seconds.
    pub read_at: i64,
}

/// The app's table.
#[derive(Clone, Debug)]
pub struct Store {
    table: TableClient,
    deadline: Duration,
    table_ready: std::sync::Arc<OnceCell<()>>,
}

/// The HTTP client every table call goes through. azure_core's default client keeps no idle
/// connections (`pool_max_idle_per_host(0)`, a workaround for a hyper hang fixed long ago), so
/// each call would open a new connection and, on Azure, do a new TLS handshake. This one keeps
/// a few idle connections per host for less than the 4 minutes after which Azure's load
/// balancers drop idle ones, and bounds connecting and whole requests (the per-call deadline in
/// [`Store`] still applies on top).
fn pooled_http_client() -> Result<std::sync::Arc<dyn azure_core::HttpClient>, StoreError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .pool_idle_timeout(Duration::from_secs(50))
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .build()
        .map_err(|err| StoreError::Unavailable(format!("cannot build the HTTP client: {err}")))?;
    Ok(std::sync::Arc::new(client))
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
            .transport(azure_core::TransportOptions::new(pooled_http_client()?))
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
        let Some(read) = self.read::<CredentialsEntity>(CREDENTIALS_ROW).await? else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            value: read.value.into_credentials()?,
            etag: read.etag,
            read_at: read.read_at,
        }))
    }

    /// Replaces the credentials entity if it still has `etag`; [`StoreError::Conflict`] otherwise.
    pub async fn save_credentials(
        &self,
        credentials: &Credentials,
        etag: &Etag,
    ) -> Result<Etag, StoreError> {
        let entity = CredentialsEntity::from_credentials(credentials);
        self.update_if_match(CREDENTIALS_ROW, &entity, etag).await
    }

    /// Writes the credentials entity whatever is there (the setup command).
    pub async fn replace_credentials(&self, credentials: &Credentials) -> Result<(), StoreError> {
        let entity = CredentialsEntity::from_credentials(credentials);
        self.upsert(CREDENTIALS_ROW, &entity).await
    }

    /// Reads the `latest-run` entity, creating an empty one first if there is none, so that
    /// every caller has an ETag to write with If-Match and a storage time to judge leases by.
    /// A snapshot that cannot be read is logged, naming the property, and read as none: the
    /// next write overwrites it.
    pub async fn load_latest_run(&self) -> Result<Versioned<StoredLatestRun>, StoreError> {
        for _ in 0..3 {
            if let Some(read) = self.read::<LatestRunEntity>(LATEST_RUN_ROW).await? {
                let (value, problem) = read.value.into_latest_run();
                if let Err(problem) = problem {
                    tracing::warn!(%problem, "ignoring the stored answer; it will be overwritten");
                }
                return Ok(Versioned {
                    value,
                    etag: read.etag,
                    read_at: read.read_at,
                });
            }
            let empty = LatestRunEntity::from_latest_run(&StoredLatestRun::default());
            match self.insert(&empty).await {
                Ok(()) | Err(StoreError::Conflict) => continue,
                Err(err) => return Err(err),
            }
        }
        Err(StoreError::Unavailable(
            "the latest-run entity kept disappearing".into(),
        ))
    }

    /// Reads the `latest-run` entity without creating it (the status command).
    pub async fn peek_latest_run(&self) -> Result<Option<StoredLatestRun>, StoreError> {
        Ok(self
            .read::<LatestRunEntity>(LATEST_RUN_ROW)
            .await?
            .map(|read| read.value.into_latest_run().0))
    }

    /// Replaces the `latest-run` entity if it still has `etag`.
    pub async fn save_latest_run(
        &self,
        value: &StoredLatestRun,
        etag: &Etag,
    ) -> Result<Etag, StoreError> {
        let entity = LatestRunEntity::from_latest_run(value);
        self.update_if_match(LATEST_RUN_ROW, &entity, etag).await
    }

    /// Writes the `latest-run` entity whatever is there (the tests' way to plant an entity; the
    /// app writes it with If-Match).
    pub async fn replace_latest_run(&self, value: &StoredLatestRun) -> Result<(), StoreError> {
        let entity = LatestRunEntity::from_latest_run(value);
        self.upsert(LATEST_RUN_ROW, &entity).await
    }

    /// Reads the `latest-run` entity, lets `change` change it (given the storage time of the
    /// read), and saves it with If-Match; after a conflict, reads again and calls `change`
    /// again. Returns what the last call of `change` returned.
    pub async fn modify_latest_run<R>(
        &self,
        change: impl FnMut(&mut StoredLatestRun, i64) -> Change<R>,
    ) -> Result<R, StoreError> {
        self.modify(change)
            .await?
            .ok_or_else(|| StoreError::Unavailable("the latest-run entity disappeared".into()))
    }

    /// Like [`Store::modify_latest_run`] for the credentials; `None` when there are none.
    pub async fn modify_credentials<R>(
        &self,
        mut change: impl FnMut(&mut Credentials) -> Change<R>,
    ) -> Result<Option<R>, StoreError> {
        self.modify(|value: &mut Credentials, _| change(value))
            .await
    }

    /// The one read-change-save loop: tried again, after a pause, only when the save lost the
    /// race to another writer.
    async fn modify<T: Row, R>(
        &self,
        change: impl FnMut(&mut T, i64) -> Change<R>,
    ) -> Result<Option<R>, StoreError> {
        let pauses = backoff::doubling(MODIFY_PAUSE, MODIFY_PAUSE_MAX)
            .zip(0u32..)
            .map(|(pause, attempt)| pause + MODIFY_PAUSE_STEP * attempt)
            .take(MODIFY_ATTEMPTS - 1);
        // `change` goes through every attempt as backon's context (each attempt borrows it).
        let (_, modified) = (|mut change| async move {
            let modified = self.modify_once(&mut change).await;
            (change, modified)
        })
        .retry(pauses)
        .context(change)
        .when(|unfinished| matches!(unfinished, Unfinished::Raced))
        .await;
        modified.map_err(|unfinished| match unfinished {
            Unfinished::Raced => StoreError::Conflict,
            Unfinished::Failed(err) => err,
        })
    }

    /// One read, change and save with If-Match.
    async fn modify_once<T: Row, R>(
        &self,
        change: &mut impl FnMut(&mut T, i64) -> Change<R>,
    ) -> Result<Option<R>, Unfinished> {
        let Some(read) = T::load(self).await.map_err(Unfinished::Failed)? else {
            return Ok(None);
        };
        let mut value = read.value.clone();
        match change(&mut value, read.read_at) {
            Change::Keep(result) => Ok(Some(result)),
            Change::Save(result) => match value.save(self, &read.etag).await {
                Ok(_) => Ok(Some(result)),
                Err(StoreError::Conflict) => Err(Unfinished::Raced),
                Err(err) => Err(Unfinished::Failed(err)),
            },
        }
    }

    /// The activity index's runs of one local `year`, in no particular order. A run that cannot
    /// be read is logged, naming the property, and left out.
    pub async fn load_runs(&self, year: i32) -> Result<Vec<IndexedRun>, StoreError> {
        Ok(self
            .load_runs_versioned(year)
            .await?
            .into_iter()
            .map(|read| read.value)
            .collect())
    }

    /// Like [`Store::load_runs`], each run with the ETag its next write is made with.
    pub async fn load_runs_versioned(
        &self,
        year: i32,
    ) -> Result<Vec<Versioned<IndexedRun>>, StoreError> {
        self.load_partition::<RunEntity, _>(&IndexedRun::partition_of(year), "activity index")
            .await
    }

    /// Every tombstone of the index (unreadable ones are logged and left out).
    pub async fn load_tombstones(&self) -> Result<Vec<Versioned<Tombstone>>, StoreError> {
        self.load_partition::<TombstoneEntity, _>(Tombstone::PARTITION, "tombstone")
            .await
    }

    /// Every entity of one partition as the app's values with their ETags; one that cannot be
    /// read (`what`, by its row key) is logged, naming the property, and left out.
    async fn load_partition<E, T>(
        &self,
        partition: &str,
        what: &'static str,
    ) -> Result<Vec<Versioned<T>>, StoreError>
    where
        E: DeserializeOwned,
        T: TryFrom<E, Error = StoreError>,
    {
        let rows = self.query_partition(partition).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(row, etag, entity)| {
                match serde_json::from_value::<E>(entity)
                    .map_err(|_| not_ours(what))
                    .and_then(T::try_from)
                {
                    Ok(value) => Some(Versioned {
                        value,
                        etag,
                        read_at: 0,
                    }),
                    Err(err) => {
                        tracing::warn!(%row, error = %err, "skipping an entity of {what}");
                        None
                    }
                }
            })
            .collect())
    }

    /// Every entity of one partition: its row key, its ETag and its properties.
    async fn query_partition(
        &self,
        partition: &str,
    ) -> Result<Vec<(String, Etag, serde_json::Value)>, StoreError> {
        self.ensure_table().await?;
        let filter = format!("PartitionKey eq '{partition}'");
        let mut pages = self
            .table
            .query()
            .filter(filter)
            .into_stream::<serde_json::Value>();
        let mut rows = Vec::new();
        loop {
            let page = match tokio::time::timeout(self.deadline, pages.next()).await {
                Ok(Some(page)) => page.map_err(classify)?,
                Ok(None) => break,
                Err(_) => {
                    return Err(StoreError::Unavailable(
                        "storage did not answer in time".into(),
                    ))
                }
            };
            for entity in page.entities {
                let row = entity
                    .get("RowKey")
                    .and_then(|r| r.as_str())
                    .unwrap_or_default()
                    .to_owned();
                let etag = entity
                    .get("odata.etag")
                    .and_then(|e| e.as_str())
                    .unwrap_or_default()
                    .to_owned();
                rows.push((row, Etag::from(etag), entity));
            }
        }
        Ok(rows)
    }

    /// One run of the index of `year` with its ETag; `None` when it is not there (or cannot be
    /// read, which is logged naming the property).
    pub async fn load_run(
        &self,
        year: i32,
        id: i64,
    ) -> Result<Option<Versioned<IndexedRun>>, StoreError> {
        let read = self
            .read_in::<RunEntity>(
                &IndexedRun::partition_of(year),
                &IndexedRun::row_of(id),
                "activity index",
            )
            .await;
        match read {
            Ok(Some(read)) => match IndexedRun::try_from(read.value) {
                Ok(value) => Ok(Some(Versioned {
                    value,
                    etag: read.etag,
                    read_at: read.read_at,
                })),
                Err(err) => {
                    tracing::warn!(activity = id, error = %err, "skipping an index entry");
                    Ok(None)
                }
            },
            Ok(None) | Err(StoreError::Corrupt { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Writes one run into the index (its year's partition): inserted when `etag` is `None`
    /// ([`StoreError::Conflict`] if it exists meanwhile), else replaced if it still has `etag`.
    pub async fn write_run(&self, run: &IndexedRun, etag: Option<&Etag>) -> Result<(), StoreError> {
        let entity = RunEntity::from(run);
        self.write_in(&entity.partition_key, &entity.row_key, &entity, etag)
            .await
    }

    /// Writes up to [`Store::BATCH`] runs of one local `year` in one entity-group transaction
    /// (one request): each inserted when its ETag is `None`, else replaced if it still has it.
    /// A transaction is all or nothing: when any of its writes raced another writer, none of
    /// them is made and the answer is [`StoreError::Conflict`].
    pub async fn write_runs(
        &self,
        year: i32,
        runs: &[(IndexedRun, Option<Etag>)],
    ) -> Result<(), StoreError> {
        if runs.len() > Self::BATCH {
            return Err(StoreError::Unavailable(format!(
                "a batch holds at most {} writes",
                Self::BATCH
            )));
        }
        self.ensure_table().await?;
        let mut transaction = self
            .table
            .partition_key_client(IndexedRun::partition_of(year))
            .transaction();
        for (run, etag) in runs {
            let entity = RunEntity::from(run);
            let added = match etag {
                None => transaction.insert(&entity),
                Some(etag) => transaction.update(
                    entity.row_key.clone(),
                    &entity,
                    Some(IfMatchCondition::Etag(etag.clone())),
                ),
            };
            transaction = added.map_err(|err| StoreError::Unavailable(err.to_string()))?;
        }
        let response = self
            .bounded(transaction.into_future())
            .await
            .map_err(classify)?;
        // The batch answers 202 whatever became of its writes: each one's status says (a
        // failed batch names only the write that failed).
        for operation in &response.operation_responses {
            match u16::from(operation.status_code) {
                200..=299 => {}
                // Changed (412), inserted (409) or deleted (404) by another writer meanwhile.
                404 | 409 | 412 => return Err(StoreError::Conflict),
                other => {
                    return Err(StoreError::Unavailable(format!(
                        "storage answered {other} in a batch"
                    )))
                }
            }
        }
        if response.operation_responses.len() != runs.len() {
            return Err(StoreError::Unavailable(format!(
                "a batch of {} writes was answered for {}",
                runs.len(),
                response.operation_responses.len()
            )));
        }
        Ok(())
    }

    /// The most writes one entity-group transaction may hold.
    pub const BATCH: usize = 100;

    /// Removes activity `id` from the index of `year` if it still has `etag`; absent is fine.
    pub async fn delete_run_if_match(
        &self,
        year: i32,
        id: i64,
        etag: &Etag,
    ) -> Result<(), StoreError> {
        self.delete_in(
            &IndexedRun::partition_of(year),
            &IndexedRun::row_of(id),
            Some(etag),
        )
        .await
    }

    /// Removes activity `id` from the index of `year` whatever it holds; absent is fine.
    pub async fn delete_run(&self, year: i32, id: i64) -> Result<(), StoreError> {
        self.delete_in(
            &IndexedRun::partition_of(year),
            &IndexedRun::row_of(id),
            None,
        )
        .await
    }

    /// The tombstone of activity `id`, with its ETag.
    pub async fn load_tombstone(
        &self,
        id: i64,
    ) -> Result<Option<Versioned<Tombstone>>, StoreError> {
        let read = self
            .read_in::<TombstoneEntity>(Tombstone::PARTITION, &IndexedRun::row_of(id), "tombstone")
            .await;
        match read {
            Ok(Some(read)) => match Tombstone::try_from(read.value) {
                Ok(value) => Ok(Some(Versioned {
                    value,
                    etag: read.etag,
                    read_at: read.read_at,
                })),
                Err(_) => Ok(None),
            },
            Ok(None) | Err(StoreError::Corrupt { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Writes a tombstone: inserted when `etag` is `None`, else replaced if it still has `etag`.
    pub async fn write_tombstone(
        &self,
        tombstone: &Tombstone,
        etag: Option<&Etag>,
    ) -> Result<(), StoreError> {
        let entity = TombstoneEntity::from(tombstone);
        self.write_in(&entity.partition_key, &entity.row_key, &entity, etag)
            .await
    }

    /// Removes a tombstone if it still has `etag`; absent is fine.
    pub async fn delete_tombstone(&self, id: i64, etag: &Etag) -> Result<(), StoreError> {
        self.delete_in(Tombstone::PARTITION, &IndexedRun::row_of(id), Some(etag))
            .await
    }

    /// Reads one entity of any partition with its ETag and the service's time.
    async fn read_in<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        partition: &str,
        row: &str,
        what: &'static str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        self.ensure_table().await?;
        let get = self
            .table
            .partition_key_client(partition)
            .entity_client(row)
            .get::<T>()
            .into_future();
        match self.bounded(get).await {
            Ok(response) => Ok(Some(Versioned {
                value: response.entity,
                etag: response.etag,
                read_at: response
                    .common_storage_response_headers
                    .date
                    .unix_timestamp(),
            })),
            Err(err) if http_status(&err) == Some(StatusCode::NotFound) => Ok(None),
            Err(err) if matches!(err.kind(), ErrorKind::DataConversion) => Err(not_ours(what)),
            Err(err) => Err(classify(err)),
        }
    }

    /// Inserts (`etag` `None`) or replaces if-match one entity of any partition.
    async fn write_in<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
        &self,
        partition: &str,
        row: &str,
        entity: &T,
        etag: Option<&Etag>,
    ) -> Result<(), StoreError> {
        self.ensure_table().await?;
        match etag {
            None => {
                let insert = self
                    .table
                    .insert::<_, serde_json::Value>(entity)
                    .map_err(|err| StoreError::Unavailable(err.to_string()))?;
                self.bounded(insert.into_future()).await.map_err(classify)?;
            }
            Some(etag) => {
                let update = self
                    .table
                    .partition_key_client(partition)
                    .entity_client(row)
                    .update(entity, IfMatchCondition::Etag(etag.clone()))
                    .map_err(|err| StoreError::Unavailable(err.to_string()))?;
                self.bounded(update.into_future())
                    .await
                    .map_err(classify_conditional)?;
            }
        }
        Ok(())
    }

    /// Deletes one entity of any partition, if it still has `etag` (any, without one); absent
    /// is fine.
    async fn delete_in(
        &self,
        partition: &str,
        row: &str,
        etag: Option<&Etag>,
    ) -> Result<(), StoreError> {
        self.ensure_table().await?;
        let mut delete = self
            .table
            .partition_key_client(partition)
            .entity_client(row)
            .delete();
        if let Some(etag) = etag {
            delete = delete.if_match(IfMatchCondition::Etag(etag.clone()));
        }
        match self.bounded(delete.into_future()).await {
            Ok(_) => Ok(()),
            Err(err) if http_status(&err) == Some(StatusCode::NotFound) => Ok(()),
            Err(err) => Err(classify(err)),
        }
    }

    /// Deletes the `latest-run` entity (with the credentials gone, nothing of it holds).
    pub async fn delete_latest_run(&self) -> Result<(), StoreError> {
        self.delete(LATEST_RUN_ROW).await
    }

    /// Reads the push subscription; `None` when there is none.
    pub async fn load_subscription(&self) -> Result<Option<Subscription>, StoreError> {
        match self.read::<SubscriptionEntity>(SUBSCRIPTION_ROW).await? {
            Some(read) => Ok(Some(read.value.into_subscription()?)),
            None => Ok(None),
        }
    }

    /// Stores the push subscription.
    pub async fn save_subscription(&self, value: &Subscription) -> Result<(), StoreError> {
        let entity = SubscriptionEntity::from_subscription(value);
        self.upsert(SUBSCRIPTION_ROW, &entity).await
    }

    /// Deletes the push subscription; absent is fine.
    pub async fn delete_subscription(&self) -> Result<(), StoreError> {
        self.delete(SUBSCRIPTION_ROW).await
    }

    /// Deletes an entity whatever its ETag; absent is fine.
    async fn delete(&self, row: &str) -> Result<(), StoreError> {
        self.ensure_table().await?;
        let delete = self.entity_client(row).delete().into_future();
        match self.bounded(delete).await {
            Ok(_) => Ok(()),
            Err(err) if http_status(&err) == Some(StatusCode::NotFound) => Ok(()),
            Err(err) => Err(classify(err)),
        }
    }

    /// Reads and decodes one entity of the app's partition with its ETag and the service's
    /// time.
    async fn read<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        row: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        self.read_in(PARTITION, row, static_row(row)).await
    }

    /// Replaces an entity only if it still has `etag`.
    async fn update_if_match<T: Serialize>(
        &self,
        row: &str,
        entity: &T,
        etag: &Etag,
    ) -> Result<Etag, StoreError> {
        self.ensure_table().await?;
        let update = self
            .entity_client(row)
            .update(entity, IfMatchCondition::Etag(etag.clone()))
            .map_err(|err| StoreError::Unavailable(err.to_string()))?;
        let response = self.bounded(update.into_future()).await.map_err(classify)?;
        Ok(response.etag)
    }

    /// Writes an entity whatever is there.
    async fn upsert<T: Serialize>(&self, row: &str, entity: &T) -> Result<(), StoreError> {
        self.ensure_table().await?;
        let write = self
            .entity_client(row)
            .insert_or_replace(entity)
            .map_err(|err| StoreError::Unavailable(err.to_string()))?;
        self.bounded(write.into_future()).await.map_err(classify)?;
        Ok(())
    }

    /// Inserts an entity; [`StoreError::Conflict`] when it exists.
    async fn insert<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
        &self,
        entity: &T,
    ) -> Result<(), StoreError> {
        self.ensure_table().await?;
        let insert = self
            .table
            .insert::<_, serde_json::Value>(entity)
            .map_err(|err| StoreError::Unavailable(err.to_string()))?;
        self.bounded(insert.into_future()).await.map_err(classify)?;
        Ok(())
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

/// Why one read-change-save did not finish.
enum Unfinished {
    /// Another writer saved since the read (If-Match failed): worth another read.
    Raced,
    /// Anything else, a failed read included: given up at once.
    Failed(StoreError),
}

/// An entity [`Store::modify`] can read and save with If-Match.
trait Row: Clone + Send + Sync + Sized {
    fn load(
        store: &Store,
    ) -> impl Future<Output = Result<Option<Versioned<Self>>, StoreError>> + Send;
    fn save(
        &self,
        store: &Store,
        etag: &Etag,
    ) -> impl Future<Output = Result<Etag, StoreError>> + Send;
}

impl Row for StoredLatestRun {
    async fn load(store: &Store) -> Result<Option<Versioned<Self>>, StoreError> {
        store.load_latest_run().await.map(Some)
    }
    async fn save(&self, store: &Store, etag: &Etag) -> Result<Etag, StoreError> {
        store.save_latest_run(self, etag).await
    }
}

impl Row for Credentials {
    async fn load(store: &Store) -> Result<Option<Versioned<Self>>, StoreError> {
        store.load_credentials().await
    }
    async fn save(&self, store: &Store, etag: &Etag) -> Result<Etag, StoreError> {
        store.save_credentials(self, etag).await
    }
}

/// An entity that is not one this app wrote.
fn not_ours(row: &'static str) -> StoreError {
    StoreError::Corrupt {
        row,
        problem: "it is not an entity of this app".into(),
    }
}

fn static_row(row: &str) -> &'static str {
    match row {
        CREDENTIALS_ROW => CREDENTIALS_ROW,
        LATEST_RUN_ROW => LATEST_RUN_ROW,
        SUBSCRIPTION_ROW => SUBSCRIPTION_ROW,
        _ => "table",
    }
}

fn http_status(err: &azure_core::Error) -> Option<StatusCode> {
    err.as_http_error().map(|e| e.status())
}

/// Like [`classify`], for a write made with If-Match: an entity deleted since it was read (404)
/// is a race lost like any other, worth a new read.
fn classify_conditional(err: azure_core::Error) -> StoreError {
    match http_status(&err) {
        Some(StatusCode::NotFound) => StoreError::Conflict,
        _ => classify(err),
    }
}

fn classify(err: azure_core::Error) -> StoreError {
    match http_status(&err) {
        Some(StatusCode::PreconditionFailed) | Some(StatusCode::Conflict) => StoreError::Conflict,
        Some(status) => StoreError::Unavailable(format!("storage answered {}", u16::from(status))),
        None => StoreError::Unavailable(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_judged_by_storage_time_and_never_blocks_its_owner() {
        let lease = Lease::taken("a", 1_000, 30);
        assert!(lease.blocks("b", 1_029));
        assert!(!lease.blocks("b", 1_030));
        assert!(!lease.blocks("a", 1_001));
        assert_eq!(Lease::taken("a", i64::MAX, 30).until, i64::MAX);
    }
}
