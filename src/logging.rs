//! The process's logs: one subscriber on stdout, filtered by `RUST_LOG` with the client crates
//! that log whole requests capped, as text for a person or as one JSON object a line, in which
//! a line inside a service's span still carries the invocation's `function` and `invocation_id`.

use crate::config::{LogFormat, Settings};
use std::io::IsTerminal;
use tracing::span;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::fmt::{FormattedFields, MakeWriter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the process's one subscriber: `RUST_LOG` (capped for the chatty client crates)
/// and `LOG_FORMAT`, on stdout.
pub fn init(settings: &Settings) {
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
