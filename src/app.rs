//! The app's shared state: the domain services and the settings the functions read, built once
//! at start-up without any I/O.

use crate::callback_secret::CallbackSecret;
use crate::clock::Clock;
use crate::config::{AllowedOrigins, Settings};
use crate::keeper::{IndexKeeper, LatestRunSettings};
use crate::logging::LogLimit;
use crate::push_events::PushEvents;
use crate::running_year::RunningYearService;
use crate::secret::Secret;
use crate::store::Store;
use crate::strava::StravaClient;
use crate::tokens::TokenKeeper;
use crate::view::route_shape::PrivacyZone;

/// Everything a function may need, shared by all requests.
pub struct App {
    /// The owner of the Strava tokens.
    pub tokens: TokenKeeper,
    /// The latest-run answer and its cache.
    pub keeper: IndexKeeper,
    /// The running-year views of the index.
    pub running_year: RunningYearService,
    /// Strava's push events.
    pub push_events: PushEvents,
    /// The webhook callback's secret, which a push event must come with.
    pub callback_secret: CallbackSecret,
    /// The webhook's shared secret, when configured.
    pub webhook_verify_token: Option<Secret>,
    /// The webhook's log lines about requests it refuses, each kind at most once a minute.
    pub webhook_refusals: WebhookRefusals,
    /// `Cache-Control` of GetLatestRun's answers, built once.
    pub answer_cache_control: warp::http::HeaderValue,
    /// CORS allow-list of the public functions.
    pub allowed_origins: AllowedOrigins,
    /// The app's clock.
    pub clock: Clock,
}

/// The log lines of the webhook that anyone can make it write, by kind (each at most once a
/// minute, so a flood of forged requests does not flood the log).
#[derive(Debug, Default)]
pub struct WebhookRefusals {
    /// An event that is not ours to take (another athlete's or subscription's, not an activity).
    pub events: LogLimit,
    /// A subscription validation with a wrong verify token.
    pub verify_tokens: LogLimit,
}

/// Why the app could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The storage settings are unusable.
    #[error("{0}")]
    Storage(#[from] crate::store::StoreError),
    /// The Strava settings are unusable.
    #[error("{0}")]
    Strava(#[from] crate::strava::StravaError),
}

/// A name for this process in leases (unique enough across instances and restarts).
fn instance_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{:x}", std::process::id(), nanos)
}

impl App {
    /// Builds the app's services; does no network or storage I/O.
    pub fn new(settings: Settings) -> Result<Self, BuildError> {
        App::with_clock(settings, Clock::system())
    }

    /// Like [`App::new`], with the clock every service reads "now" from (tests jump it).
    pub fn with_clock(settings: Settings, clock: Clock) -> Result<Self, BuildError> {
        let store = Store::connect(&settings.storage)?;
        let strava = StravaClient::new(settings.strava_base_url.as_str(), settings.strava_timeout)?
            .with_clock(clock.clone());
        let instance = instance_name();
        let tokens = TokenKeeper::with_clock(
            store.clone(),
            strava.clone(),
            instance.clone(),
            clock.clone(),
        );
        let keeper = IndexKeeper::new(
            LatestRunSettings {
                cache_seconds: i64::try_from(settings.cache_seconds).unwrap_or(i64::MAX),
                sport_types: settings.sport_types.clone(),
                route_shape: settings.route_shape,
                // Keyed by the storage connection string: a secret every instance shares (it
                // holds the account key), so all draw the same sketch and no one else can
                // predict the cut.
                route_privacy: PrivacyZone::new(
                    f64::from(settings.route_privacy_meters),
                    settings.storage.connection_string.expose().as_bytes(),
                ),
            },
            store.clone(),
            strava,
            tokens.clone(),
            instance,
            clock.clone(),
        );
        let running_year = RunningYearService::new(keeper.clone(), store.clone(), clock.clone());
        let push_events =
            PushEvents::new(store.clone(), tokens.clone(), keeper.clone(), clock.clone());
        let callback_secret = CallbackSecret::new(store, push_events.clone());
        Ok(App {
            tokens,
            keeper,
            running_year,
            push_events,
            callback_secret,
            webhook_verify_token: settings.webhook_verify_token.clone(),
            webhook_refusals: WebhookRefusals::default(),
            answer_cache_control: crate::http::answer_cache_control(
                i64::try_from(settings.cache_seconds).unwrap_or(i64::MAX),
            ),
            allowed_origins: settings.allowed_origins,
            clock,
        })
    }
}
