//! The `handler` binary: parses the command line, loads settings, sets up tracing and runs the
//! chosen mode. Everything else lives in the library.

use clap::Parser;
use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use strava_latest_run::cli::{self, Cli, Command};
use strava_latest_run::config::{LogFormat, RawSettings, Settings};
use strava_latest_run::{Application, Mode};
use tracing::span;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::fmt::{FormattedFields, MakeWriter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

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

fn init_tracing(settings: &Settings) {
    let mut filter =
        EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
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
    match settings.log_format {
        LogFormat::Json => json_lines(filter, std::io::stdout).init(),
        // Colours only for a person at a terminal: the host, systemd and `docker logs` store
        // stdout as it is, escape codes and all.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stdout)
            .with_ansi(std::io::stdout().is_terminal())
            .init(),
    }
}

/// One JSON object a line: the event's fields at the top level, and under "span" the fields
/// of the span it happened in together with those of the spans around it (the invocation's
/// `function` and `invocation_id` inside a service's span).
fn json_lines<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .finish()
        .with(InheritSpanFields)
}

/// Gives a new span's JSON fields those of its parent (its own win): the JSON lines show only
/// the innermost span. Runs after the fmt layer has written the span's own fields.
struct InheritSpanFields;

impl<S> Layer<S> for InheritSpanFields
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(parent) = span.parent() else { return };
        let Some(mut fields) = parent
            .extensions()
            .get::<FormattedFields<JsonFields>>()
            .map(|fields| json_object(fields))
        else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let Some(own) = extensions.get_mut::<FormattedFields<JsonFields>>() else {
            return;
        };
        fields.extend(json_object(own));
        own.fields = serde_json::Value::Object(fields).to_string();
    }
}

/// Formatted JSON fields as a map (none when there are none).
fn json_object(fields: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(fields).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Lines written to memory.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_line_in_a_service_span_keeps_the_invocation_fields() {
        let written = Written::default();
        let writer = written.clone();
        let subscriber = json_lines(EnvFilter::new("debug"), move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let invocation = tracing::info_span!(
                "invocation",
                function = "GetRunningYear",
                invocation_id = "0f7c"
            );
            let _invocation = invocation.enter();
            tracing::info!("before");
            let build = tracing::debug_span!("build", year = 2025, function = "shadowed");
            let _build = build.enter();
            tracing::info!("inside");
        });
        let text =
            String::from_utf8(written.0.lock().expect("not poisoned").clone()).expect("UTF-8");
        let spans: Vec<serde_json::Value> = text
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).expect("JSON")["span"].clone()
            })
            .collect();
        assert_eq!(
            spans,
            [
                serde_json::json!({"name": "invocation", "function": "GetRunningYear", "invocation_id": "0f7c"}),
                serde_json::json!({"name": "build", "function": "shadowed", "invocation_id": "0f7c", "year": 2025}),
            ],
            "{text}"
        );
    }
}
