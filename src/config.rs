//! Settings (the app settings docs/deploy.md lists): read once at start-up from the environment and from
//! `local.settings.json` `Values` when that file is present, the environment winning as Core
//! Tools does. The name → value pairs are decoded by serde into one struct of the settings by
//! their exact names, then each is validated by its own parser: a missing or malformed setting
//! is one [`ConfigError`] line naming it, never a panic (not even for a variable that is not
//! UTF-8).

use crate::secret::Secret;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// Every setting the app reads, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the widget's table lives.
    pub storage: StorageSettings,
    /// Strava's origin (`/oauth/…` and `/api/v3/…` below it).
    pub strava_base_url: url::Url,
    /// How long a Strava request may take before it counts as failed.
    pub strava_timeout: Duration,
    /// Which `sport_type`s count as a run.
    pub sport_types: Vec<String>,
    /// How long an answer is fresh.
    pub cache_seconds: u64,
    /// CORS allow-list.
    pub allowed_origins: AllowedOrigins,
    /// `WIDGET_ROUTE_SHAPE`: add the privacy-trimmed route sketch to answers.
    pub route_shape: bool,
    /// `WIDGET_ROUTE_PRIVACY_METERS`: the sketch draws nothing within this radius (plus a keyed
    /// amount per activity) of the route's start and end.
    pub route_privacy_meters: u32,
    /// The webhook's shared secret, when configured.
    pub webhook_verify_token: Option<Secret>,
    /// `RUST_LOG` filter.
    pub log_filter: String,
    /// Text or JSON log lines.
    pub log_format: LogFormat,
}

/// The connection string (it holds the account key, so it is a secret) and the table name.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    /// `AzureWebJobsStorage` or `STRAVA_TABLE_CONNECTION`.
    pub connection_string: Secret,
    /// Which of the two settings the connection string came from (for error lines).
    pub setting_name: &'static str,
    /// `STRAVA_TABLE_NAME`.
    pub table_name: String,
}

/// `WIDGET_ALLOWED_ORIGINS`: `*` or a list of exact origins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any origin may read the answer.
    Any,
    /// Only these origins (compared exactly, without a trailing slash).
    List(Vec<String>),
}

/// `LOG_FORMAT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stdout is a terminal (the host copies stdout
    /// into its log).
    Text,
    /// One JSON object a line.
    Json,
}

/// A setting that is missing or malformed; its Display is the one line printed at start-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("setting {name}: {problem}")]
pub struct ConfigError {
    /// The setting's name as the user writes it.
    pub name: &'static str,
    /// What is wrong, in a few words (never the value of a secret).
    pub problem: String,
}

impl ConfigError {
    fn new(name: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            name,
            problem: problem.into(),
        }
    }
}

/// The raw name → value pairs the settings are read from.
#[derive(Clone, Debug, Default)]
pub struct RawSettings(HashMap<String, String>);

impl RawSettings {
    /// The process environment over `local.settings.json` `Values` (in `dir`, when present).
    /// Variables that are not UTF-8 are skipped, unless they are settings the app reads.
    pub fn from_environment_and_file(dir: &Path) -> Result<Self, ConfigError> {
        let mut values = read_local_settings(&dir.join("local.settings.json"))?;
        merge_environment(&mut values, std::env::vars_os())?;
        Ok(RawSettings(values))
    }

    /// Settings from explicit pairs (tests and tools).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        RawSettings(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// A value, treating an empty string as absent (app settings cannot be unset in the portal).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The settings the app reads, as found (trimmed; empty ones absent), not yet validated.
    fn decode(&self) -> Result<SettingValues, ConfigError> {
        let present: serde_json::Map<String, serde_json::Value> = self
            .0
            .keys()
            .filter_map(|name| Some((name.clone(), self.get(name)?.into())))
            .collect();
        serde_json::from_value(serde_json::Value::Object(present))
            .map_err(|err| ConfigError::new("settings", format!("cannot be read: {err}")))
    }
}

/// Adds the environment's variables to `values`, replacing the file's. A name or value that is
/// not UTF-8 cannot be one of ours and is skipped, unless the name is a setting the app reads:
/// then that setting is reported.
fn merge_environment(
    values: &mut HashMap<String, String>,
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<(), ConfigError> {
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        match value.into_string() {
            Ok(value) => {
                values.insert(name.to_owned(), value);
            }
            Err(_) => {
                if let Some(setting) = setting_names().iter().find(|s| **s == name) {
                    return Err(ConfigError::new(setting, "is not valid UTF-8"));
                }
            }
        }
    }
    Ok(())
}

/// The settings by their exact names, as strings; [`Settings::from_raw`] validates
/// them one by one so that every problem names its setting.
#[derive(Debug, Default, serde::Deserialize)]
struct SettingValues {
    #[serde(rename = "AzureWebJobsStorage")]
    web_jobs_storage: Option<String>,
    #[serde(rename = "STRAVA_TABLE_CONNECTION")]
    table_connection: Option<String>,
    #[serde(rename = "STRAVA_TABLE_NAME")]
    table_name: Option<String>,
    #[serde(rename = "STRAVA_BASE_URL")]
    strava_base_url: Option<String>,
    #[serde(rename = "WIDGET_SPORT_TYPES")]
    sport_types: Option<String>,
    #[serde(rename = "WIDGET_CACHE_SECONDS")]
    cache_seconds: Option<String>,
    #[serde(rename = "WIDGET_ALLOWED_ORIGINS")]
    allowed_origins: Option<String>,
    #[serde(rename = "WIDGET_ROUTE_SHAPE")]
    route_shape: Option<String>,
    #[serde(rename = "WIDGET_ROUTE_PRIVACY_METERS")]
    route_privacy_meters: Option<String>,
    #[serde(rename = "STRAVA_WEBHOOK_VERIFY_TOKEN")]
    webhook_verify_token: Option<String>,
    #[serde(rename = "RUST_LOG")]
    log_filter: Option<String>,
    #[serde(rename = "LOG_FORMAT")]
    log_format: Option<String>,
}

/// The name of every setting the app reads, taken from [`SettingValues`]' derived
/// `Deserialize` (one list, not two). The infrastructure template's test holds the template to
/// exactly these.
pub fn setting_names() -> &'static [&'static str] {
    use serde::de::value::Error as ProbeError;
    use serde::de::{Deserialize, Deserializer, Error, Visitor};

    /// A deserializer that only records the field names a struct asks for.
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = ProbeError;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
            Err(ProbeError::custom("only the field names are wanted"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, ProbeError> {
            *self.0 = fields;
            Err(ProbeError::custom("only the field names are wanted"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut names: &'static [&'static str] = &[];
    let _ = SettingValues::deserialize(Probe(&mut names));
    names
}

/// Reads `Values` of a `local.settings.json`; a missing file is no error, a broken one is.
fn read_local_settings(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(err) => {
            return Err(ConfigError::new(
                "local.settings.json",
                format!("cannot be read: {err}"),
            ))
        }
    };
    parse_local_settings(&text)
}

/// The `Values` of a `local.settings.json`'s text (numbers and booleans as their text); a file
/// that is not JSON, or a value that is an object, array or null, is an error naming the file.
pub(crate) fn parse_local_settings(text: &str) -> Result<HashMap<String, String>, ConfigError> {
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|err| ConfigError::new("local.settings.json", format!("is not JSON: {err}")))?;
    let mut values = HashMap::new();
    if let Some(map) = json.get("Values").and_then(|v| v.as_object()) {
        for (key, value) in map {
            // Core Tools passes strings only; accept numbers and booleans as their text too.
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(ConfigError::new(
                        "local.settings.json",
                        format!("Values.{key} must be a string"),
                    ))
                }
            };
            values.insert(key.clone(), text);
        }
    }
    Ok(values)
}

/// `WIDGET_ROUTE_PRIVACY_METERS` when not set.
pub const DEFAULT_ROUTE_PRIVACY_METERS: u32 = 500;
/// The smallest `WIDGET_ROUTE_PRIVACY_METERS`: a smaller zone would hardly hide a front door.
pub const MIN_ROUTE_PRIVACY_METERS: u32 = 200;
/// The largest `WIDGET_ROUTE_PRIVACY_METERS`.
pub const MAX_ROUTE_PRIVACY_METERS: u32 = 10_000;

/// The longest `WIDGET_CACHE_SECONDS`: thirty days (and far from overflowing timestamps).
pub const MAX_CACHE_SECONDS: u64 = 30 * 24 * 60 * 60;

impl Settings {
    /// Validates every setting; the first problem found is the error.
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        let SettingValues {
            web_jobs_storage,
            table_connection,
            table_name,
            strava_base_url,
            sport_types,
            cache_seconds,
            allowed_origins,
            route_shape,
            route_privacy_meters,
            webhook_verify_token,
            log_filter,
            log_format,
        } = raw.decode()?;
        // Fields are evaluated in the order written, which decides the problem reported first.
        Ok(Settings {
            storage: parse_storage(table_connection, web_jobs_storage, table_name)?,
            strava_base_url: parse_strava_base_url(strava_base_url.as_deref())?,
            strava_timeout: Duration::from_secs(10),
            sport_types: parse_sport_types(sport_types.as_deref())?,
            cache_seconds: parse_cache_seconds(cache_seconds.as_deref())?,
            allowed_origins: parse_origins(allowed_origins.as_deref())?,
            route_shape: parse_route_shape(route_shape.as_deref())?,
            route_privacy_meters: parse_route_privacy_meters(route_privacy_meters.as_deref())?,
            webhook_verify_token: webhook_verify_token.map(Secret::new),
            log_format: parse_log_format(log_format.as_deref())?,
            log_filter: parse_log_filter(log_filter)?,
        })
    }
}

/// `STRAVA_TABLE_CONNECTION`, else `AzureWebJobsStorage`, and `STRAVA_TABLE_NAME` (`strava`).
fn parse_storage(
    table_connection: Option<String>,
    web_jobs_storage: Option<String>,
    table_name: Option<String>,
) -> Result<StorageSettings, ConfigError> {
    let (setting_name, connection_string) = match (table_connection, web_jobs_storage) {
        (Some(text), _) => ("STRAVA_TABLE_CONNECTION", text),
        (None, Some(text)) => ("AzureWebJobsStorage", text),
        (None, None) => {
            return Err(ConfigError::new(
                "AzureWebJobsStorage",
                "is missing: set it to a storage connection string, or UseDevelopmentStorage=true for Azurite",
            ))
        }
    };
    check_connection_string(&connection_string)
        .map_err(|problem| ConfigError::new(setting_name, problem))?;
    let table_name = table_name.unwrap_or_else(|| "strava".to_owned());
    if !is_valid_table_name(&table_name) {
        return Err(ConfigError::new(
            "STRAVA_TABLE_NAME",
            "must be 3 to 63 letters or digits, starting with a letter",
        ));
    }
    Ok(StorageSettings {
        connection_string: Secret::new(connection_string),
        setting_name,
        table_name,
    })
}

/// `STRAVA_BASE_URL` (`https://www.strava.com`), by the Strava client's own rules, so a URL
/// it would refuse is named here, not at start-up.
fn parse_strava_base_url(text: Option<&str>) -> Result<url::Url, ConfigError> {
    url::Url::parse(text.unwrap_or("https://www.strava.com"))
        .ok()
        .filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && !u.cannot_be_a_base()
                && u.host().is_some()
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && u.password().is_none()
        })
        .ok_or_else(|| {
            ConfigError::new(
                "STRAVA_BASE_URL",
                "must be an http(s) URL without a query, fragment or user name",
            )
        })
}

/// `WIDGET_SPORT_TYPES` (`Run,TrailRun,VirtualRun`): comma-separated names of letters and
/// digits.
fn parse_sport_types(text: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let sport_types: Vec<String> = text
        .unwrap_or("Run,TrailRun,VirtualRun")
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if sport_types.is_empty()
        || sport_types
            .iter()
            .any(|s| !s.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(ConfigError::new(
            "WIDGET_SPORT_TYPES",
            "must be a comma-separated list of Strava sport types, e.g. Run,TrailRun",
        ));
    }
    Ok(sport_types)
}

/// `WIDGET_CACHE_SECONDS` (600).
fn parse_cache_seconds(text: Option<&str>) -> Result<u64, ConfigError> {
    text.map_or(Ok(600), |text| {
        number_in(text, 1..=MAX_CACHE_SECONDS).ok_or_else(|| {
            ConfigError::new(
                "WIDGET_CACHE_SECONDS",
                format!("must be a whole number of seconds from 1 to {MAX_CACHE_SECONDS}"),
            )
        })
    })
}

/// `WIDGET_ROUTE_SHAPE` (`false`).
fn parse_route_shape(text: Option<&str>) -> Result<bool, ConfigError> {
    choice(text.unwrap_or("false"), &[("true", true), ("false", false)])
        .ok_or_else(|| ConfigError::new("WIDGET_ROUTE_SHAPE", "must be true or false"))
}

/// `WIDGET_ROUTE_PRIVACY_METERS` ([`DEFAULT_ROUTE_PRIVACY_METERS`]).
fn parse_route_privacy_meters(text: Option<&str>) -> Result<u32, ConfigError> {
    text.map_or(Ok(DEFAULT_ROUTE_PRIVACY_METERS), |text| {
        number_in(text, MIN_ROUTE_PRIVACY_METERS..=MAX_ROUTE_PRIVACY_METERS).ok_or_else(|| {
            ConfigError::new(
                "WIDGET_ROUTE_PRIVACY_METERS",
                format!(
                    "must be a whole number of metres from {MIN_ROUTE_PRIVACY_METERS} to {MAX_ROUTE_PRIVACY_METERS} (default {DEFAULT_ROUTE_PRIVACY_METERS})"
                ),
            )
        })
    })
}

/// `LOG_FORMAT` (`text`).
fn parse_log_format(text: Option<&str>) -> Result<LogFormat, ConfigError> {
    let formats = [("text", LogFormat::Text), ("json", LogFormat::Json)];
    choice(text.unwrap_or("text"), &formats)
        .ok_or_else(|| ConfigError::new("LOG_FORMAT", "must be text or json"))
}

/// `RUST_LOG` (`info`).
fn parse_log_filter(text: Option<String>) -> Result<String, ConfigError> {
    let filter = text.unwrap_or_else(|| "info".to_owned());
    match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(_) => Ok(filter),
        Err(_) => Err(ConfigError::new(
            "RUST_LOG",
            "is not a valid filter (e.g. info or handler=debug)",
        )),
    }
}

/// `text` as a whole number within `range`.
fn number_in<T: std::str::FromStr + PartialOrd>(
    text: &str,
    range: std::ops::RangeInclusive<T>,
) -> Option<T> {
    text.parse().ok().filter(|n| range.contains(n))
}

/// The value of the choice `text` names, ignoring ASCII case.
fn choice<T: Copy>(text: &str, choices: &[(&str, T)]) -> Option<T> {
    choices
        .iter()
        .find(|(name, _)| text.eq_ignore_ascii_case(name))
        .map(|&(_, value)| value)
}

/// Accepts what the store can connect with (the same rules as `store`'s parser):
/// `UseDevelopmentStorage=true`, or `AccountName` with `AccountKey` or a SAS, optionally with
/// `TableEndpoint` or `EndpointSuffix`. The problem never quotes the string (it holds a key).
fn check_connection_string(text: &str) -> Result<(), &'static str> {
    let parsed = azure_storage::ConnectionString::new(text).map_err(|_| {
        "is not a storage connection string (expected Key=Value pairs separated by ';')"
    })?;
    if parsed.use_development_storage == Some(true) {
        return Ok(());
    }
    if parsed.storage_credentials().is_err() {
        return Err("needs AccountName and AccountKey (or a SAS), or UseDevelopmentStorage=true for Azurite");
    }
    if parsed.account_name.is_none() {
        return Err("needs AccountName");
    }
    Ok(())
}

/// Table names: 3–63 alphanumerics, starting with a letter.
fn is_valid_table_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// `WIDGET_ALLOWED_ORIGINS` (`*`).
fn parse_origins(text: Option<&str>) -> Result<AllowedOrigins, ConfigError> {
    let text = text.unwrap_or("*");
    if text.trim() == "*" {
        return Ok(AllowedOrigins::Any);
    }
    let mut origins = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parsed = url::Url::parse(item).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/"
        });
        match parsed {
            Some(url) => origins.push(url.origin().ascii_serialization()),
            None => {
                return Err(ConfigError::new(
                    "WIDGET_ALLOWED_ORIGINS",
                    format!("'{item}' is not an origin like https://blog.example.org (or use *)"),
                ))
            }
        }
    }
    if origins.is_empty() {
        return Err(ConfigError::new(
            "WIDGET_ALLOWED_ORIGINS",
            "is empty: use * or a comma-separated list of origins",
        ));
    }
    Ok(AllowedOrigins::List(origins))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawSettings {
        RawSettings::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn defaults_apply_with_only_storage_set() {
        let settings = Settings::from_raw(&raw(&[(
            "AzureWebJobsStorage",
            "UseDevelopmentStorage=true",
        )]))
        .expect("valid");
        assert_eq!(settings.storage.table_name, "strava");
        assert_eq!(settings.strava_base_url.as_str(), "https://www.strava.com/");
        assert_eq!(settings.sport_types, vec!["Run", "TrailRun", "VirtualRun"]);
        assert_eq!(settings.cache_seconds, 600);
        assert_eq!(settings.allowed_origins, AllowedOrigins::Any);
        assert_eq!(settings.log_format, LogFormat::Text);
        assert!(settings.webhook_verify_token.is_none());
        assert_eq!(settings.route_privacy_meters, 500);
    }

    #[test]
    fn the_route_privacy_radius_is_at_least_200_m() {
        let base = ("AzureWebJobsStorage", "UseDevelopmentStorage=true");
        for (value, metres) in [("200", 200), ("800", 800), (" 10000 ", 10_000), ("", 500)] {
            let settings =
                Settings::from_raw(&raw(&[base, ("WIDGET_ROUTE_PRIVACY_METERS", value)]))
                    .expect(value);
            assert_eq!(settings.route_privacy_meters, metres, "{value}");
        }
        let err = Settings::from_raw(&raw(&[base, ("WIDGET_ROUTE_PRIVACY_METERS", "150")]))
            .expect_err("too small");
        assert_eq!(
            err.to_string(),
            "setting WIDGET_ROUTE_PRIVACY_METERS: must be a whole number of metres from 200 to 10000 (default 500)"
        );
    }

    #[test]
    fn table_connection_overrides_webjobs_storage() {
        let settings = Settings::from_raw(&raw(&[
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            ("STRAVA_TABLE_CONNECTION", "AccountName=x;AccountKey=y"),
        ]))
        .expect("valid");
        assert_eq!(
            settings.storage.connection_string.expose(),
            "AccountName=x;AccountKey=y"
        );
    }

    #[test]
    fn each_bad_setting_is_named() {
        let base = [("AzureWebJobsStorage", "UseDevelopmentStorage=true")];
        let cases: &[(&str, &str)] = &[
            ("STRAVA_TABLE_NAME", "1bad"),
            ("STRAVA_BASE_URL", "not a url"),
            // Found by fuzzing: the Strava client refuses these, so the settings must too.
            ("STRAVA_BASE_URL", "https://a?ilRun,VirtualRun"),
            ("STRAVA_BASE_URL", "https://www.strava.com/#x"),
            ("STRAVA_BASE_URL", "https://user:pass@www.strava.com"),
            ("WIDGET_SPORT_TYPES", "Run;Trail Run"),
            ("WIDGET_CACHE_SECONDS", "ten"),
            ("WIDGET_CACHE_SECONDS", "0"),
            ("WIDGET_ALLOWED_ORIGINS", "blog.example.org"),
            ("LOG_FORMAT", "xml"),
            ("WIDGET_ROUTE_SHAPE", "yes"),
            ("WIDGET_ROUTE_PRIVACY_METERS", "199"),
            ("WIDGET_ROUTE_PRIVACY_METERS", "0"),
            ("WIDGET_ROUTE_PRIVACY_METERS", "-500"),
            ("WIDGET_ROUTE_PRIVACY_METERS", "500m"),
            ("WIDGET_ROUTE_PRIVACY_METERS", "500.5"),
            ("WIDGET_ROUTE_PRIVACY_METERS", "10001"),
            ("RUST_LOG", "=[[["),
        ];
        for (name, value) in cases {
            let mut pairs = base.to_vec();
            pairs.push((name, value));
            let err = Settings::from_raw(&raw(&pairs)).expect_err(name);
            assert_eq!(&err.name, name, "{value}");
        }
        let err = Settings::from_raw(&raw(&[])).expect_err("missing storage");
        assert_eq!(err.name, "AzureWebJobsStorage");
        assert!(err
            .to_string()
            .starts_with("setting AzureWebJobsStorage: is missing"));
        let err =
            Settings::from_raw(&raw(&[("AzureWebJobsStorage", "nonsense")])).expect_err("bad");
        assert_eq!(err.name, "AzureWebJobsStorage");
    }

    #[test]
    fn each_problem_reads_the_same_and_the_first_in_order_wins() {
        let base = ("AzureWebJobsStorage", "UseDevelopmentStorage=true");
        let storage_missing = "setting AzureWebJobsStorage: is missing: set it to a storage \
                               connection string, or UseDevelopmentStorage=true for Azurite";
        let not_a_connection_string = "is not a storage connection string (expected Key=Value \
                                       pairs separated by ';')";
        let table_name =
            "setting STRAVA_TABLE_NAME: must be 3 to 63 letters or digits, starting with a letter";
        let base_url = "setting STRAVA_BASE_URL: must be an http(s) URL without a query, \
                        fragment or user name";
        let sport_types = "setting WIDGET_SPORT_TYPES: must be a comma-separated list of Strava \
                           sport types, e.g. Run,TrailRun";
        let cache_seconds =
            "setting WIDGET_CACHE_SECONDS: must be a whole number of seconds from 1 to 2592000";
        let route_shape = "setting WIDGET_ROUTE_SHAPE: must be true or false";
        let privacy_meters = "setting WIDGET_ROUTE_PRIVACY_METERS: must be a whole number of \
                              metres from 200 to 10000 (default 500)";
        let log_format = "setting LOG_FORMAT: must be text or json";
        let log_filter = "setting RUST_LOG: is not a valid filter (e.g. info or handler=debug)";
        let cases: &[(&[(&str, &str)], String)] = &[
            (&[], storage_missing.into()),
            (
                &[("AzureWebJobsStorage", "nonsense")],
                format!("setting AzureWebJobsStorage: {not_a_connection_string}"),
            ),
            (
                &[("STRAVA_TABLE_CONNECTION", "AccountName=;AccountKey=eQ==")],
                format!("setting STRAVA_TABLE_CONNECTION: {not_a_connection_string}"),
            ),
            (
                &[("AzureWebJobsStorage", "AccountKey=eQ==")],
                "setting AzureWebJobsStorage: needs AccountName and AccountKey (or a SAS), or \
                 UseDevelopmentStorage=true for Azurite"
                    .into(),
            ),
            (&[base, ("STRAVA_TABLE_NAME", "1bad")], table_name.into()),
            (&[base, ("STRAVA_BASE_URL", "ftp://x")], base_url.into()),
            (&[base, ("WIDGET_SPORT_TYPES", " , ")], sport_types.into()),
            (&[base, ("WIDGET_CACHE_SECONDS", "0")], cache_seconds.into()),
            (
                &[base, ("WIDGET_ALLOWED_ORIGINS", "https://a.example/x")],
                "setting WIDGET_ALLOWED_ORIGINS: 'https://a.example/x' is not an origin like \
                 https://blog.example.org (or use *)"
                    .into(),
            ),
            (
                &[base, ("WIDGET_ALLOWED_ORIGINS", " , ")],
                "setting WIDGET_ALLOWED_ORIGINS: is empty: use * or a comma-separated list of \
                 origins"
                    .into(),
            ),
            (&[base, ("WIDGET_ROUTE_SHAPE", "yes")], route_shape.into()),
            (
                &[base, ("WIDGET_ROUTE_PRIVACY_METERS", "199")],
                privacy_meters.into(),
            ),
            (&[base, ("LOG_FORMAT", "xml")], log_format.into()),
            (&[base, ("RUST_LOG", "=[[[")], log_filter.into()),
            // Several problems: the first in the order of the settings above is reported.
            (
                &[("STRAVA_TABLE_NAME", "1bad"), ("RUST_LOG", "=[[[")],
                storage_missing.into(),
            ),
            (
                &[
                    base,
                    ("STRAVA_TABLE_NAME", "1bad"),
                    ("STRAVA_BASE_URL", "x"),
                ],
                table_name.into(),
            ),
            (
                &[base, ("STRAVA_BASE_URL", "x"), ("WIDGET_SPORT_TYPES", ";")],
                base_url.into(),
            ),
            (
                &[
                    base,
                    ("WIDGET_SPORT_TYPES", ";"),
                    ("WIDGET_CACHE_SECONDS", "x"),
                ],
                sport_types.into(),
            ),
            (
                &[
                    base,
                    ("WIDGET_CACHE_SECONDS", "x"),
                    ("WIDGET_ALLOWED_ORIGINS", "x"),
                ],
                cache_seconds.into(),
            ),
            (
                &[
                    base,
                    ("WIDGET_ALLOWED_ORIGINS", "x"),
                    ("WIDGET_ROUTE_SHAPE", "x"),
                ],
                "setting WIDGET_ALLOWED_ORIGINS: 'x' is not an origin like \
                 https://blog.example.org (or use *)"
                    .into(),
            ),
            (
                &[
                    base,
                    ("WIDGET_ROUTE_SHAPE", "x"),
                    ("WIDGET_ROUTE_PRIVACY_METERS", "x"),
                ],
                route_shape.into(),
            ),
            (
                &[
                    base,
                    ("WIDGET_ROUTE_PRIVACY_METERS", "x"),
                    ("LOG_FORMAT", "x"),
                ],
                privacy_meters.into(),
            ),
            (
                &[base, ("LOG_FORMAT", "x"), ("RUST_LOG", "=[[[")],
                log_format.into(),
            ),
        ];
        for (pairs, expected) in cases {
            let err = Settings::from_raw(&raw(pairs)).expect_err(expected);
            assert_eq!(&err.to_string(), expected, "{pairs:?}");
        }
    }

    #[test]
    fn choices_ignore_case() {
        let base = ("AzureWebJobsStorage", "UseDevelopmentStorage=true");
        for (value, shape) in [("TRUE", true), ("False", false), ("true", true)] {
            let settings =
                Settings::from_raw(&raw(&[base, ("WIDGET_ROUTE_SHAPE", value)])).expect(value);
            assert_eq!(settings.route_shape, shape, "{value}");
        }
        for (value, format) in [("JSON", LogFormat::Json), ("Text", LogFormat::Text)] {
            let settings = Settings::from_raw(&raw(&[base, ("LOG_FORMAT", value)])).expect(value);
            assert_eq!(settings.log_format, format, "{value}");
        }
        let settings = Settings::from_raw(&raw(&[base])).expect("defaults");
        assert!(!settings.route_shape);
        assert_eq!(settings.log_filter, "info");
    }

    #[test]
    fn cache_seconds_are_bounded_to_thirty_days() {
        let base = ("AzureWebJobsStorage", "UseDevelopmentStorage=true");
        let settings = Settings::from_raw(&raw(&[base, ("WIDGET_CACHE_SECONDS", "2592000")]))
            .expect("thirty days is allowed");
        assert_eq!(settings.cache_seconds, 2_592_000);
        for value in [
            "2592001",
            "9223372036854775807",
            "18446744073709551615",
            "-1",
        ] {
            let err = Settings::from_raw(&raw(&[base, ("WIDGET_CACHE_SECONDS", value)]))
                .expect_err(value);
            assert_eq!(
                err.to_string(),
                "setting WIDGET_CACHE_SECONDS: must be a whole number of seconds from 1 to 2592000",
                "{value}"
            );
        }
    }

    #[test]
    fn unusable_connection_strings_name_their_setting() {
        let cases: &[(&str, &str)] = &[
            ("AzureWebJobsStorage", "AccountName=x"),
            ("AzureWebJobsStorage", "AccountKey=eQ=="),
            ("AzureWebJobsStorage", "Foo=bar"),
            ("AzureWebJobsStorage", "AccountName="),
            ("STRAVA_TABLE_CONNECTION", "UseDevelopmentStorage=false"),
            (
                "STRAVA_TABLE_CONNECTION",
                "UseDevelopmentStorage=false;AccountName=x",
            ),
        ];
        for (name, value) in cases {
            let mut pairs = vec![(*name, *value)];
            if *name == "STRAVA_TABLE_CONNECTION" {
                pairs.push(("AzureWebJobsStorage", "UseDevelopmentStorage=true"));
            }
            let err = Settings::from_raw(&raw(&pairs)).expect_err(value);
            assert_eq!(&err.name, name, "{value}");
            assert!(!err.to_string().contains(value), "{err}");
        }
    }

    #[test]
    fn usable_connection_strings_are_accepted() {
        let key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
        for value in [
            "UseDevelopmentStorage=true".to_owned(),
            "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://127.0.0.1".to_owned(),
            format!("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};EndpointSuffix=core.windows.net"),
            format!("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"),
            "AccountName=acct;SharedAccessSignature=sv=2022-11-02&ss=t&srt=sco&sp=rwdlacu&se=2030-01-01T00:00:00Z&st=2024-01-01T00:00:00Z&spr=https&sig=abc%3D".to_owned(),
        ] {
            let settings = Settings::from_raw(&raw(&[("AzureWebJobsStorage", &value)]))
                .unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(settings.storage.connection_string.expose(), value);
        }
    }

    #[test]
    fn the_storage_settings_say_which_setting_the_string_came_from() {
        let only_webjobs = Settings::from_raw(&raw(&[(
            "AzureWebJobsStorage",
            "UseDevelopmentStorage=true",
        )]))
        .expect("valid");
        assert_eq!(only_webjobs.storage.setting_name, "AzureWebJobsStorage");
        let both = Settings::from_raw(&raw(&[
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            ("STRAVA_TABLE_CONNECTION", "UseDevelopmentStorage=true"),
        ]))
        .expect("valid");
        assert_eq!(both.storage.setting_name, "STRAVA_TABLE_CONNECTION");
    }

    #[test]
    fn the_setting_names_come_from_the_struct() {
        let names = setting_names();
        assert_eq!(names.len(), 12, "{names:?}");
        for name in ["AzureWebJobsStorage", "WIDGET_CACHE_SECONDS", "RUST_LOG"] {
            assert!(names.contains(&name), "{name}");
        }
    }

    #[test]
    fn non_utf8_variables_are_skipped_unless_they_are_settings() {
        use std::ffi::{OsStr, OsString};
        use std::os::unix::ffi::OsStrExt;
        let bad = OsStr::from_bytes(b"caf\xe9").to_os_string();
        let mut values = HashMap::new();
        merge_environment(
            &mut values,
            [
                (OsString::from("OTHER"), bad.clone()),
                (bad.clone(), OsString::from("x")),
                (OsString::from("STRAVA_TABLE_NAME"), OsString::from("ok")),
            ],
        )
        .expect("foreign variables are no problem");
        assert_eq!(values.len(), 1);
        assert_eq!(
            values.get("STRAVA_TABLE_NAME").map(String::as_str),
            Some("ok")
        );

        let err = merge_environment(&mut values, [(OsString::from("LOG_FORMAT"), bad)])
            .expect_err("one of ours");
        assert_eq!(err.to_string(), "setting LOG_FORMAT: is not valid UTF-8");
    }

    #[test]
    fn origins_are_normalised() {
        let settings = Settings::from_raw(&raw(&[
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            (
                "WIDGET_ALLOWED_ORIGINS",
                "https://blog.example.org/, http://localhost:8080",
            ),
        ]))
        .expect("valid");
        assert_eq!(
            settings.allowed_origins,
            AllowedOrigins::List(vec![
                "https://blog.example.org".into(),
                "http://localhost:8080".into()
            ])
        );
    }

    #[test]
    fn environment_wins_over_local_settings_file() {
        let dir = std::env::temp_dir().join(format!("cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("local.settings.json"),
            r#"{"IsEncrypted":false,"Values":{"STRAVA_TABLE_NAME":"fromfile","PATH":"from-file","WIDGET_CACHE_SECONDS":30}}"#,
        )
        .expect("write");
        let raw = RawSettings::from_environment_and_file(&dir).expect("read");
        assert_eq!(raw.get("STRAVA_TABLE_NAME"), Some("fromfile"));
        assert_eq!(raw.get("WIDGET_CACHE_SECONDS"), Some("30"));
        assert_ne!(raw.get("PATH"), Some("from-file"), "the environment wins");
        std::fs::write(dir.join("local.settings.json"), "{not json").expect("write");
        let err = RawSettings::from_environment_and_file(&dir).expect_err("broken file");
        assert_eq!(err.name, "local.settings.json");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
