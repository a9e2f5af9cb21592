//! The process's logs: one subscriber on stdout, filtered by `RUST_LOG`, as text for a person or
//! as one JSON object a line, in which a line inside a service's span still carries the
//! invocation's `function` and `invocation_id`. The client crates that log whole requests are
//! capped by a filter of their own ([`client_caps`]) that every line must pass as well as
//! `RUST_LOG`'s, so no directive, however specific, no span filter and no `trace` lifts the cap.
//! A line that anyone on the internet can make the app write ([`LogLimit`]) is written at most
//! once a minute.

use crate::config::{LogFormat, Settings};
use std::io::IsTerminal;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tracing::span;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::fmt::{FormattedFields, MakeWriter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The crates capped whatever `RUST_LOG` says, and the most each may log. The HTTP and storage
/// clients log whole requests at debug and trace (bodies with the client secret and tokens,
/// bearer and `SharedKey` authorization headers); warp logs every client disconnect as an error
/// under load, and those are not errors here.
const CAPS: [(&str, LevelFilter); 9] = [
    ("warp::server", LevelFilter::OFF),
    ("azure_core", LevelFilter::WARN),
    ("azure_data_tables", LevelFilter::WARN),
    ("azure_storage", LevelFilter::WARN),
    ("reqwest", LevelFilter::WARN),
    ("hyper", LevelFilter::WARN),
    ("hyper_util", LevelFilter::WARN),
    ("h2", LevelFilter::WARN),
    ("rustls", LevelFilter::WARN),
];

/// Installs the process's one subscriber: `RUST_LOG` under [`client_caps`], and `LOG_FORMAT`,
/// on stdout.
pub fn init(settings: &Settings) {
    let filter =
        EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    match settings.log_format {
        LogFormat::Json => json_lines(filter, std::io::stdout).init(),
        // Colours only for a person at a terminal: the host, systemd and `docker logs` store
        // stdout as it is, escape codes and all.
        LogFormat::Text => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stdout)
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_filter(filter.and(client_caps())),
            )
            .init(),
    }
}

/// The caps of [`CAPS`] as a filter of their own, everything else let through: combined with
/// `RUST_LOG`'s filter by "and", a line is written only if both let it through. (Added to the
/// `EnvFilter` as directives instead, a more specific directive such as
/// `azure_core::policies::transport=debug`, or a span filter such as `[invocation]=debug`, won
/// over the cap.)
pub fn client_caps() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CAPS)
}

/// One JSON object a line: the event's fields at the top level, and under "span" the fields
/// of the span it happened in together with those of the spans around it (the invocation's
/// `function` and `invocation_id` inside a service's span). `filter` under [`client_caps`].
fn json_lines<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .and_then(InheritSpanFields);
    tracing_subscriber::registry().with(lines.with_filter(filter.and(client_caps())))
}

/// One kind of log line written at most once per [`LogLimit::INTERVAL`], however often what it
/// reports happens (a flood of forged requests must not flood the log), with the count of those
/// held back since the last one written.
#[derive(Debug, Default)]
pub struct LogLimit {
    /// When a line was last written, and how many were held back since.
    last: Mutex<Option<(Instant, u64)>>,
}

impl LogLimit {
    /// At most one line of a kind this often.
    pub const INTERVAL: Duration = Duration::from_secs(60);

    /// Whether a line may be written now: `Some(held back)`, how many were not written since the
    /// last one, when a line was not written in the last [`LogLimit::INTERVAL`]; `None` (and
    /// this one counted as held back) otherwise.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match last.as_mut() {
            Some((at, held_back)) if now.saturating_duration_since(*at) < Self::INTERVAL => {
                *held_back += 1;
                None
            }
            _ => {
                let held_back = last.map_or(0, |(_, held_back)| held_back);
                *last = Some((now, 0));
                Some(held_back)
            }
        }
    }
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

    /// What `filter` lets through of a debug and a trace line from a client crate's module,
    /// outside any span and inside the invocation span, and of the app's own info line.
    fn written_with(filter: &str) -> String {
        let written = Written::default();
        let writer = written.clone();
        let subscriber = json_lines(EnvFilter::new(filter), move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let lines = || {
                tracing::debug!(target: "azure_core::policies::transport", "SharedKey request");
                tracing::trace!(target: "reqwest::connect", "Bearer token");
                tracing::debug!(target: "hyper_util::client", "Bearer token");
                tracing::info!("own line");
            };
            lines();
            let invocation = tracing::info_span!("invocation", function = "RefreshToken");
            invocation.in_scope(lines);
        });
        let bytes = written.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn no_filter_lifts_the_cap_on_the_client_crates() {
        for filter in [
            "azure_core::policies::transport=debug,info",
            "info,[invocation]=debug",
            "trace",
            "reqwest=trace,hyper_util=trace,info",
            "[invocation]=trace",
        ] {
            let text = written_with(filter);
            assert!(text.contains("own line"), "{filter}: {text}");
            for secret in ["SharedKey", "Bearer"] {
                assert!(!text.contains(secret), "{filter}: {text}");
            }
        }
        // Warnings from them still show.
        let written = Written::default();
        let writer = written.clone();
        let subscriber = json_lines(EnvFilter::new("info"), move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "azure_core::policies::retry", "retrying");
        });
        let bytes = written.0.lock().expect("not poisoned").clone();
        assert!(String::from_utf8(bytes).is_ok_and(|t| t.contains("retrying")));
    }

    #[test]
    fn a_limited_line_is_written_once_a_minute_with_the_count_held_back() {
        let limit = LogLimit::default();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        assert_eq!(limit.admit_at(at(0)), Some(0));
        assert_eq!(limit.admit_at(at(1)), None);
        assert_eq!(limit.admit_at(at(59)), None);
        assert_eq!(limit.admit_at(at(60)), Some(2));
        assert_eq!(limit.admit_at(at(61)), None);
        assert_eq!(limit.admit_at(at(500)), Some(1));
        assert_eq!(limit.admit_at(at(600)), Some(0));
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
