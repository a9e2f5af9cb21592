//! Writes and reads entities of an app's table directly, as a person in Storage Explorer would:
//! to arrange hand-edited or half-written entities and to look at exactly what is stored.

use super::app::TestSettings;
use azure_data_tables::clients::{TableClient, TableServiceClientBuilder};
use azure_storage::{CloudLocation, ConnectionString};
use serde_json::Value;

fn table(settings: &TestSettings) -> TableClient {
    let text = settings
        .get("STRAVA_TABLE_CONNECTION")
        .or(settings.get("AzureWebJobsStorage"))
        .expect("a connection string");
    let parsed = ConnectionString::new(text).expect("parsable");
    let location = CloudLocation::Custom {
        account: parsed.account_name.expect("account").to_owned(),
        uri: parsed.table_endpoint.expect("endpoint").to_owned(),
    };
    let credentials = parsed.storage_credentials().expect("credentials");
    TableServiceClientBuilder::with_location(location, credentials)
        .build()
        .table_client(settings.get("STRAVA_TABLE_NAME").expect("table name"))
}

/// Writes `entity` (PartitionKey/RowKey are added) whatever is there, creating the table.
pub async fn put(settings: &TestSettings, row: &str, mut entity: Value) {
    let table = table(settings);
    let _ = table.create().await;
    entity["PartitionKey"] = Value::from("strava");
    entity["RowKey"] = Value::from(row);
    table
        .partition_key_client("strava")
        .entity_client(row)
        .insert_or_replace(entity)
        .expect("request")
        .await
        .expect("stored");
}

/// Reads an entity as JSON; `None` when there is none.
pub async fn get(settings: &TestSettings, row: &str) -> Option<Value> {
    table(settings)
        .partition_key_client("strava")
        .entity_client(row)
        .get::<Value>()
        .await
        .ok()
        .map(|r| r.entity)
}

/// Deletes the app's table with everything in it (whatever is there).
pub async fn delete_table(settings: &TestSettings) {
    let _ = table(settings).delete().await;
}
