//! The backend of a blog widget that shows the owner's latest public Strava run: an Azure
//! Functions custom handler (one warp server, `handler`) that also runs standalone.
//!
//! # Layout
//! - [`config`]: settings from the environment and `local.settings.json`.
//! - [`server`]: the warp server; routes both request forms and caps bodies.
//! - [`host`]: the Functions host wire protocol and its adapters to one request/response model.
//! - [`functions`]: one module per function (`GetLatestRun`, `RefreshToken`).
//! - [`cache`]: the latest-run answer cached in memory and in the table; one Strava round per window.
//! - [`app`]: shared state and dispatch from function name to code.
//! - [`setup`]: the `setup` and `status` commands.
//! - [`store`]: Azure Table Storage (credentials with ETags).
//! - [`error`]: client-facing errors and their one mapping to HTTP.
//! - [`strava`]: Strava OAuth and API client, lenient models, rate-limit tracking.
//! - [`widget`]: the widget's view model: picks the latest public run and builds the response.
//! - [`tokens`]: keeps the Strava access token valid; refresh rules across instances.
//! - [`secret`]: a string type that never prints its value.

pub mod app;
pub mod cache;
pub mod config;
pub mod error;
pub mod functions;
pub mod host;
pub mod secret;
pub mod server;
pub mod setup;
pub mod store;
pub mod strava;
pub mod tokens;
pub mod widget;

pub use server::Mode;

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The app bound to its listener, ready to run (the zero-to-production `Application` shape).
pub struct Application {
    listener: TcpListener,
    app: Arc<app::App>,
    mode: Mode,
}

impl Application {
    /// Binds `addr` (port 0 picks a free port) and builds the app without any I/O. `mode` decides
    /// the routes: the host's invocation routes exist only in [`Mode::Host`].
    pub async fn bind(
        addr: SocketAddr,
        settings: config::Settings,
        mode: Mode,
    ) -> Result<Self, StartError> {
        let app = app::App::new(settings).map_err(StartError::Build)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| StartError::Bind(addr, err))?;
        Ok(Application {
            listener,
            app: Arc::new(app),
            mode,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Without a Functions host: refreshes the token every two hours on the hour (UTC), as the
    /// RefreshToken timer's `0 0 */2 * * *` does.
    pub fn spawn_refresh_schedule(&self) {
        let app = Arc::clone(&self.app);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(until_next_even_hour(time::OffsetDateTime::now_utc())).await;
                let timer = host::TimerInfo {
                    schedule: None,
                    schedule_status: None,
                    is_past_due: false,
                };
                if let Err(message) = app
                    .call_timer(functions::FunctionName::RefreshToken, &timer)
                    .await
                {
                    tracing::error!("{message}");
                }
            }
        });
    }

    /// Serves until `shutdown` completes.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        server::run(self.listener, self.app, self.mode, shutdown).await;
    }
}

/// Time from `now` to the next hour divisible by two (UTC).
fn until_next_even_hour(now: time::OffsetDateTime) -> std::time::Duration {
    let seconds_into_cycle = now.unix_timestamp().rem_euclid(7200);
    std::time::Duration::from_secs((7200 - seconds_into_cycle) as u64)
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
