//! Settings (DESIGN §3): read once at start-up from the environment and from
//! `local.settings.json` `Values` when that file is present, the environment winning as Core
//! Tools does. A missing or malformed setting is one [`ConfigError`] line naming it.

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
    /// Human-readable lines without colours (the host copies stdout into its log).
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
    pub fn from_environment_and_file(dir: &Path) -> Result<Self, ConfigError> {
        let mut values = read_local_settings(&dir.join("local.settings.json"))?;
        values.extend(std::env::vars());
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
    let json: serde_json::Value = serde_json::from_str(&text)
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

impl Settings {
    /// Validates every setting; the first problem found is the error.
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        let connection_string = raw
            .get("STRAVA_TABLE_CONNECTION")
            .or_else(|| raw.get("AzureWebJobsStorage"))
            .ok_or_else(|| {
                ConfigError::new(
                    "AzureWebJobsStorage",
                    "is missing: set it to a storage connection string, or UseDevelopmentStorage=true for Azurite",
                )
            })?;
        if !connection_string.contains('=') {
            let name = if raw.get("STRAVA_TABLE_CONNECTION").is_some() {
                "STRAVA_TABLE_CONNECTION"
            } else {
                "AzureWebJobsStorage"
            };
            return Err(ConfigError::new(
                name,
                "is not a storage connection string (expected Key=Value pairs separated by ';')",
            ));
        }

        let table_name = raw.get("STRAVA_TABLE_NAME").unwrap_or("strava").to_owned();
        if !is_valid_table_name(&table_name) {
            return Err(ConfigError::new(
                "STRAVA_TABLE_NAME",
                "must be 3 to 63 letters or digits, starting with a letter",
            ));
        }

        let base = raw
            .get("STRAVA_BASE_URL")
            .unwrap_or("https://www.strava.com");
        let strava_base_url = url::Url::parse(base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| ConfigError::new("STRAVA_BASE_URL", "must be an http(s) URL"))?;

        let sport_types: Vec<String> = raw
            .get("WIDGET_SPORT_TYPES")
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

        let cache_seconds = match raw.get("WIDGET_CACHE_SECONDS") {
            None => 600,
            Some(text) => text.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ConfigError::new(
                    "WIDGET_CACHE_SECONDS",
                    "must be a whole number of seconds above 0",
                )
            })?,
        };

        let allowed_origins = parse_origins(raw.get("WIDGET_ALLOWED_ORIGINS").unwrap_or("*"))?;

        let log_format = match raw.get("LOG_FORMAT").unwrap_or("text") {
            f if f.eq_ignore_ascii_case("text") => LogFormat::Text,
            f if f.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => return Err(ConfigError::new("LOG_FORMAT", "must be text or json")),
        };
        let log_filter = raw.get("RUST_LOG").unwrap_or("info").to_owned();
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            return Err(ConfigError::new(
                "RUST_LOG",
                "is not a valid filter (e.g. info or handler=debug)",
            ));
        }

        Ok(Settings {
            storage: StorageSettings {
                connection_string: Secret::new(connection_string),
                table_name,
            },
            strava_base_url,
            strava_timeout: Duration::from_secs(10),
            sport_types,
            cache_seconds,
            allowed_origins,
            webhook_verify_token: raw.get("STRAVA_WEBHOOK_VERIFY_TOKEN").map(Secret::new),
            log_filter,
            log_format,
        })
    }
}

/// Table names: 3–63 alphanumerics, starting with a letter.
fn is_valid_table_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

fn parse_origins(text: &str) -> Result<AllowedOrigins, ConfigError> {
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
            ("WIDGET_SPORT_TYPES", "Run;Trail Run"),
            ("WIDGET_CACHE_SECONDS", "ten"),
            ("WIDGET_CACHE_SECONDS", "0"),
            ("WIDGET_ALLOWED_ORIGINS", "blog.example.org"),
            ("LOG_FORMAT", "xml"),
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
