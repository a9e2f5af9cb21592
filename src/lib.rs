//! The backend of a blog widget that shows the owner's latest public Strava run: an Azure
//! Functions custom handler (one warp server, `handler`) that also runs standalone.
//!
//! # Layers
//! The one map of the crate, top to bottom: a module uses only modules listed below it (a test,
//! `tests/api/layers.rs`, reads this list and every `crate::` path in `src/` and fails on an
//! upward use).
//! - [`server`]: the warp routes and the connections they are served on; routes both request
//!   forms, caps bodies, and limits how large a request's head may be (and, standalone, how long
//!   it may take).
//! - [`functions`]: one module per function (`GetLatestRun`, `GetRunningYear`, `RefreshToken`,
//!   `StravaWebhook`, `Widget`) and the dispatch; the only code that joins HTTP and the domain.
//! - [`app`]: the shared state: the domain services, built once without I/O.
//! - [`cli`]: the command line: the serving modes and the one-shot `setup`, `status`,
//!   `subscribe` and `unsubscribe` commands.
//! - [`callback_secret`]: the webhook callback's secret: an event is taken only with the secret
//!   `handler subscribe` stored (or on the bare path while none is).
//! - [`push_events`]: push-event bookkeeping: ids fail closed, record, apply one by one within
//!   the shared event budget, verify deauthorizations.
//! - [`running_year`]: the running-year view: one year of the activity index, built when the
//!   keeper's state changes and cached per year.
//! - [`keeper`]: the index keeper: the one owner of the activity index's changes and the shared
//!   `latest-run` entity (lease, index clock, stored answer); reconciliation rounds (one per
//!   window, a full pass daily) within the shared read budget; one push event applied; publishes
//!   the answer and its state for the views; domain errors.
//! - [`index`]: the activity index: what Strava's list or an activity means for it, the
//!   athlete's year, the event budget.
//! - [`tokens`]: the token keeper: a valid access token, no rotated refresh token ever lost.
//! - [`view`]: the view models (the latest run, built from an allow-list, and the running
//!   year), the SVG cards, and the embedded front end (`web/`).
//! - [`store`]: Azure Table Storage: typed entities, the one `Lease`, ETag rules.
//! - [`strava`]: Strava OAuth and API client, lenient models, rate-limit tracking.
//! - [`host`]: the Functions host wire protocol and its adapters to the one request model.
//! - [`http`]: the one request/response model and the client-facing errors with their one
//!   mapping to HTTP.
//! - [`logging`]: the process's one log subscriber, text or JSON lines.
//! - [`schedule`]: the standalone refresh schedule, read from `RefreshToken/function.json`.
//! - [`config`]: settings from the environment and `local.settings.json`, read once.
//! - [`clock`]: the one notion of "now".
//! - [`backoff`]: retry delays for `backon` that double exactly.
//! - [`secret`]: a string type that never prints its value.
//!
//! Outside the layers, compiled only with the `fuzzing` feature: `fuzzing`, one entry point
//! per fuzz target, shared with the corpus replay test (it drives the layers from the top).

pub mod app;
pub mod backoff;
pub mod callback_secret;
pub mod cli;
pub mod clock;
pub mod config;
pub mod functions;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod host;
pub mod http;
pub mod index;
pub mod keeper;
pub mod logging;
pub mod push_events;
pub mod running_year;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod store;
pub mod strava;
pub mod tokens;
pub mod view;

pub use server::Mode;

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::Instrument;

/// The app bound to its listener, ready to run (the zero-to-production `Application` shape).
pub struct Application {
    listener: TcpListener,
    app: Arc<app::App>,
    mode: Mode,
    limits: server::ServerLimits,
}

impl Application {
    /// Binds `addr` (port 0 picks a free port) and builds the app without any I/O. `mode` decides
    /// the routes: the host's invocation routes exist only in [`Mode::Host`].
    pub async fn bind(
        addr: SocketAddr,
        settings: config::Settings,
        mode: Mode,
    ) -> Result<Self, StartError> {
        Self::bind_with_clock(addr, settings, mode, clock::Clock::system()).await
    }

    /// Like [`Application::bind`], with the app's clock given: the tests jump it to play a
    /// machine whose clock moves while the app runs. The binary always uses the system clock.
    #[doc(hidden)]
    pub async fn bind_with_clock(
        addr: SocketAddr,
        settings: config::Settings,
        mode: Mode,
        clock: clock::Clock,
    ) -> Result<Self, StartError> {
        let app = app::App::with_clock(settings, clock).map_err(StartError::Build)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| StartError::Bind(addr, err))?;
        Ok(Application {
            listener,
            app: Arc::new(app),
            mode,
            limits: server::ServerLimits::for_mode(mode),
        })
    }

    /// Replaces the mode's header-read timeout ([`server::ServerLimits::for_mode`]): the tests use
    /// a short one, so that slow and idle clients are seen disconnected quickly. Not a setting:
    /// the binary never calls this.
    #[doc(hidden)]
    pub fn with_header_read_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.limits.header_read_timeout = Some(timeout);
        self
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Without a Functions host: refreshes the token on the RefreshToken timer's own schedule
    /// (`RefreshToken/function.json`, UTC), as the host would.
    pub fn spawn_refresh_schedule(&self) -> Result<(), schedule::ScheduleError> {
        let schedule = schedule::RefreshSchedule::embedded()?;
        tracing::info!(schedule = schedule.expression(), "refresh schedule");
        let app = Arc::clone(&self.app);
        tokio::spawn(async move {
            // A timer that wakes a hair early must not run the same occurrence twice.
            let mut last_run = time::OffsetDateTime::UNIX_EPOCH;
            loop {
                let now = app.clock.now_datetime();
                let Some(next) = schedule.next_after(now.max(last_run)) else {
                    tracing::error!(
                        schedule = schedule.expression(),
                        "the refresh schedule has no next run"
                    );
                    return;
                };
                let wait = std::time::Duration::try_from(next - now).unwrap_or_default();
                tokio::time::sleep(wait).await;
                last_run = next;
                let timer = http::TimerInfo {
                    schedule: None,
                    schedule_status: None,
                    is_past_due: false,
                };
                let function = functions::FunctionName::RefreshToken;
                if let Err(message) = functions::call_timer(&app, function, &timer)
                    .instrument(functions::span(function, None))
                    .await
                {
                    tracing::error!("{message}");
                }
            }
        });
        Ok(())
    }

    /// Serves until `shutdown` completes.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        server::run(
            self.listener,
            Arc::clone(&self.app),
            self.mode,
            self.limits,
            shutdown,
        )
        .await;
        // Tokens Strava issued that storage has not taken yet get one more try before exit.
        self.app.tokens.persist_held().await;
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settings are unusable.
    #[error("{0}")]
    Build(app::BuildError),
    /// The port is taken or not allowed.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}
