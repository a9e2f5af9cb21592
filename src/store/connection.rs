//! Storage connection strings: `UseDevelopmentStorage=true` (Azurite's well-known address and
//! account) and full connection strings with an account key (or SAS) and an optional
//! `TableEndpoint` or `EndpointSuffix`, turned into the table service's location and credentials.

use super::StoreError;
use azure_storage::{CloudLocation, ConnectionString, StorageCredentials};

/// The well-known Azurite account name.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

/// Understands `UseDevelopmentStorage=true` (Azurite's well-known address and account) and full
/// connection strings with an account key and optional `TableEndpoint`.
pub fn parse_connection_string(
    text: &str,
) -> Result<(CloudLocation, StorageCredentials), StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
