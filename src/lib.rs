//! The backend of a blog widget that shows the owner's latest public Strava run: an Azure
//! Functions custom handler (one warp server, `handler`) that also runs standalone.
//!
//! # Layout
//! - [`config`]: settings from the environment and `local.settings.json`.
//! - [`server`]: the warp server; routes both request forms and caps bodies.
//! - [`host`]: the Functions host wire protocol and its adapters to one request/response model.
//! - [`functions`]: one module per function (`GetLatestRun`, `RefreshToken`).
//! - [`app`]: shared state and dispatch from function name to code.
//! - [`store`]: Azure Table Storage (credentials with ETags).
//! - [`error`]: client-facing errors and their one mapping to HTTP.
//! - [`strava`]: Strava OAuth and API client, lenient models, rate-limit tracking.
//! - [`secret`]: a string type that never prints its value.

pub mod app;
pub mod config;
pub mod error;
pub mod functions;
pub mod host;
pub mod secret;
pub mod server;
pub mod store;
pub mod strava;

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The app bound to its listener, ready to run (the zero-to-production `Application` shape).
pub struct Application {
    listener: TcpListener,
    app: Arc<app::App>,
}

impl Application {
    /// Binds `addr` (port 0 picks a free port) and builds the app without any I/O.
    pub async fn bind(addr: SocketAddr, settings: config::Settings) -> Result<Self, StartError> {
        let app = app::App::new(settings).map_err(StartError::Storage)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| StartError::Bind(addr, err))?;
        Ok(Application {
            listener,
            app: Arc::new(app),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` completes.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        server::run(self.listener, self.app, shutdown).await;
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The storage settings are unusable.
    #[error("{0}")]
    Storage(store::StoreError),
    /// The port is taken or not allowed.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}
