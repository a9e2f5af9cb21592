//! The `handler` binary: parses the command line, loads settings, sets up tracing and runs the
//! chosen mode. Everything else lives in the library.

use clap::Parser;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use strava_latest_run::cli::{self, Cli, Command};
use strava_latest_run::config::{RawSettings, Settings};
use strava_latest_run::{logging, Application, Mode};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match load_settings() {
        Ok(settings) => settings,
        Err(line) => {
            eprintln!("handler: {line}");
            return ExitCode::from(2);
        }
    };
    logging::init(&settings);
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
            Some(Command::OneShot(command)) => {
                println!("{}", cli::run(command, &settings).await?);
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
