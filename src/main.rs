//! The `handler` binary: parses the command line, loads settings, sets up tracing and runs the
//! chosen mode. Everything else lives in the library.

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use strava_latest_run::config::{LogFormat, RawSettings, Settings};
use strava_latest_run::{setup, subscribe, Application, Mode};

#[derive(Parser)]
#[command(
    name = "handler",
    version,
    about = "Latest Strava run for a blog widget: Azure Functions custom handler"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run without a Functions host: plain HTTP on --port, with its own refresh schedule.
    Standalone {
        /// Port to listen on (default: $PORT, else 7071).
        #[arg(long, env = "PORT", default_value_t = 7071)]
        port: u16,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match load_settings() {
        Ok(settings) => settings,
        Err(line) => {
            eprintln!("handler: {line}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&settings);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("handler: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None => serve(custom_handler_port()?, settings, Mode::Host).await,
            Some(Command::Standalone { port }) => serve(port, settings, Mode::Standalone).await,
            Some(Command::Setup {
                client_id,
                client_secret,
                code,
            }) => {
                let client_secret = setup::resolve_client_secret(
                    client_secret,
                    std::io::stdin().is_terminal(),
                    || rpassword::prompt_password("Client Secret (typing is not shown): "),
                )
                .map_err(|e| format!("setup failed: {e}"))?;
                let args = setup::SetupArgs {
                    client_id,
                    client_secret,
                    code,
                };
                let stdin = std::io::stdin();
                let mut input = stdin.lock();
                let mut output = std::io::stdout();
                let line = setup::run_setup(&settings, args, &mut input, &mut output)
                    .await
                    .map_err(|e| format!("setup failed: {e}"))?;
                println!("{line}");
                Ok(())
            }
            Some(Command::Subscribe { callback_url }) => {
                let line = subscribe::run_subscribe(&settings, &callback_url)
                    .await
                    .map_err(|e| format!("subscribe failed: {e}"))?;
                println!("{line}");
                Ok(())
            }
            Some(Command::Unsubscribe) => {
                let line = subscribe::run_unsubscribe(&settings)
                    .await
                    .map_err(|e| format!("unsubscribe failed: {e}"))?;
                println!("{line}");
                Ok(())
            }
            Some(Command::Status) => {
                let text = setup::run_status(&settings)
                    .await
                    .map_err(|e| format!("status failed: {e}"))?;
                println!("{text}");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("handler: {line}");
            ExitCode::FAILURE
        }
    }
}

fn load_settings() -> Result<Settings, String> {
    let dir = std::env::var_os("FUNCTIONS_APP_ROOT_PATH")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let raw = RawSettings::from_environment_and_file(&dir).map_err(|e| e.to_string())?;
    Settings::from_raw(&raw).map_err(|e| e.to_string())
}

fn custom_handler_port() -> Result<u16, String> {
    let text = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT").map_err(|err| match err {
        std::env::VarError::NotPresent => "setting FUNCTIONS_CUSTOMHANDLER_PORT: is missing (the Functions host sets it; without a host run `handler standalone`)".to_owned(),
        std::env::VarError::NotUnicode(_) => "setting FUNCTIONS_CUSTOMHANDLER_PORT: must be a port number".to_owned(),
    })?;
    text.trim()
        .parse::<u16>()
        .map_err(|_| "setting FUNCTIONS_CUSTOMHANDLER_PORT: must be a port number".to_owned())
}

async fn serve(port: u16, settings: Settings, mode: Mode) -> Result<(), String> {
    // The host always dials IPv4 loopback; standalone serves whoever can reach the machine, and
    // so has only the public routes (no invocation routes: see `Mode`).
    let ip = match mode {
        Mode::Host => Ipv4Addr::LOCALHOST,
        Mode::Standalone => Ipv4Addr::UNSPECIFIED,
    };
    let application = Application::bind(SocketAddr::from((ip, port)), settings, mode)
        .await
        .map_err(|e| e.to_string())?;
    let standalone = mode == Mode::Standalone;
    if standalone {
        application
            .spawn_refresh_schedule()
            .map_err(|e| e.to_string())?;
    }
    tracing::info!(port = application.port(), standalone, "handler listening");
    application.run_until(shutdown_signal()).await;
    tracing::info!("handler stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM (what the host and container runtimes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

fn init_tracing(settings: &Settings) {
    let mut filter = tracing_subscriber::EnvFilter::try_new(&settings.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // warp logs every client disconnect as an error under load; those are not errors here. The
    // HTTP and storage clients log whole requests (bodies with secrets, bearer headers) at
    // debug/trace, so they are capped whatever RUST_LOG says.
    for directive in [
        "warp::server=off",
        "azure_core=warn",
        "azure_data_tables=warn",
        "azure_storage=warn",
        "reqwest=warn",
        "hyper=warn",
        "hyper_util=warn",
        "h2=warn",
        "rustls=warn",
    ] {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    // Colours only for a person at a terminal: the host, systemd and `docker logs` store
    // stdout as it is, escape codes and all.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match settings.log_format {
        // One object a line: the event's fields at the top level, and the fields of the span
        // it happened in (`function`, `invocation_id`) under "span".
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
    }
}
