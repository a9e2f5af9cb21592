//! The command line of `handler`: how it serves (behind a Functions host, or standalone) and the
//! one-shot commands around the Strava connection (`setup`, `status`, `subscribe`,
//! `unsubscribe`), each of which prints one result or fails with one line.

pub mod setup;
pub mod subscribe;

use crate::config::Settings;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;

/// The parsed command line.
#[derive(Parser)]
#[command(
    name = "handler",
    version,
    about = "Latest Strava run for a blog widget: Azure Functions custom handler"
)]
pub struct Cli {
    /// Without a command: serve behind the Functions host on $FUNCTIONS_CUSTOMHANDLER_PORT.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to run.
#[derive(Subcommand)]
pub enum Command {
    /// Run without a Functions host: plain HTTP on --port, with its own refresh schedule.
    Standalone {
        /// Port to listen on (default: $PORT, else 7071).
        #[arg(long, env = "PORT", default_value_t = 7071)]
        port: u16,
    },
    /// A one-shot command.
    #[command(flatten)]
    OneShot(OneShot),
}

/// The commands that do one thing and exit.
#[derive(Subcommand)]
pub enum OneShot {
    /// One-time Strava consent: stores the credentials entity.
    Setup {
        /// Client ID of your Strava API application.
        #[arg(long)]
        client_id: String,
        /// Client Secret of your Strava API application (else $STRAVA_CLIENT_SECRET, else a
        /// hidden prompt when run in a terminal).
        #[arg(long, env = "STRAVA_CLIENT_SECRET", hide_env_values = true)]
        client_secret: Option<String>,
        /// The authorization code (or the whole redirect address), if you already have it.
        #[arg(long)]
        code: Option<String>,
    },
    /// Shows what is stored (secrets redacted) and the token's expiry.
    Status,
    /// Creates the Strava push subscription (Strava validates the callback at once, so the app
    /// must already be running there with the same STRAVA_WEBHOOK_VERIFY_TOKEN).
    Subscribe {
        /// The webhook's address, e.g. https://APP.azurewebsites.net/api/StravaWebhook.
        #[arg(long)]
        callback_url: String,
    },
    /// Deletes the Strava push subscription.
    Unsubscribe,
}

/// Runs a one-shot command with the terminal as its input and output: the text to print, or the
/// one line saying why it failed.
pub async fn run(command: OneShot, settings: &Settings) -> Result<String, String> {
    match command {
        OneShot::Setup {
            client_id,
            client_secret,
            code,
        } => {
            let client_secret =
                setup::resolve_client_secret(client_secret, std::io::stdin().is_terminal(), || {
                    rpassword::prompt_password("Client Secret (typing is not shown): ")
                })
                .map_err(|e| format!("setup failed: {e}"))?;
            let args = setup::SetupArgs {
                client_id,
                client_secret,
                code,
            };
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let mut output = std::io::stdout();
            setup::run_setup(settings, args, &mut input, &mut output)
                .await
                .map_err(|e| format!("setup failed: {e}"))
        }
        OneShot::Status => setup::run_status(settings)
            .await
            .map_err(|e| format!("status failed: {e}")),
        OneShot::Subscribe { callback_url } => subscribe::run_subscribe(settings, &callback_url)
            .await
            .map_err(|e| format!("subscribe failed: {e}")),
        OneShot::Unsubscribe => subscribe::run_unsubscribe(settings)
            .await
            .map_err(|e| format!("unsubscribe failed: {e}")),
    }
}
