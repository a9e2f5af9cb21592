//! The app's functions: the only code that joins HTTP (the [`crate::http`] model) and the
//! domain services. Each function gets the services it uses, not the whole app; this module
//! names the functions and dispatches a request or a timer run to the right one. Each run can
//! be wrapped in one tracing span ([`span`]) naming the function and the host's invocation id,
//! so every log line written while it runs, in whatever module, carries both.

pub mod cards;
pub mod get_latest_run;
pub mod get_running_year;
pub mod public_http;
pub mod refresh_token;
pub mod strava_webhook;
pub mod widget;

use crate::app::App;
pub use crate::http::{FunctionRequest, FunctionResponse, TimerInfo, JSON_CONTENT_TYPE};
use public_http::AnswerHeaders;
use warp::http::{HeaderMap, HeaderName};

/// The functions of the app, named as their folders (the invocation path) are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionName {
    /// HTTP: the widget's request.
    GetLatestRun,
    /// HTTP: the running-year widget's request.
    GetRunningYear,
    /// Timer: keeps the Strava token alive.
    RefreshToken,
    /// HTTP: Strava's push subscription callback.
    StravaWebhook,
    /// HTTP, route `widget/{file}`: the embeddable script and its demo page.
    Widget,
}

impl FunctionName {
    /// Looks a function up by name; the host keeps the folder's case, public routes ignore case.
    pub fn parse(name: &str) -> Option<Self> {
        [
            FunctionName::GetLatestRun,
            FunctionName::GetRunningYear,
            FunctionName::RefreshToken,
            FunctionName::StravaWebhook,
            FunctionName::Widget,
        ]
        .into_iter()
        .find(|f| f.as_str().eq_ignore_ascii_case(name))
    }

    /// The folder name.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionName::GetLatestRun => "GetLatestRun",
            FunctionName::GetRunningYear => "GetRunningYear",
            FunctionName::RefreshToken => "RefreshToken",
            FunctionName::StravaWebhook => "StravaWebhook",
            FunctionName::Widget => "Widget",
        }
    }

    /// Whether the function is HTTP-triggered (else timer-triggered).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            FunctionName::GetLatestRun
                | FunctionName::GetRunningYear
                | FunctionName::StravaWebhook
                | FunctionName::Widget
        )
    }
}

/// The request header the Functions host sets on every request it sends for an invocation (a
/// `HeaderName`, so that looking it up does not parse the name on every request).
pub static INVOCATION_ID_HEADER: HeaderName =
    HeaderName::from_static("x-azure-functions-invocationid");

/// The span one run of `function` is logged in: every event inside it (and inside the tasks
/// it starts) carries `function` and `invocation_id` (in JSON logs under `span`). The id is
/// the host's `X-Azure-Functions-InvocationId` in `headers`; without one (standalone, or a
/// timer the app runs itself) the span has no id field. With `info` off (as under load in
/// `scripts/bench`) the span is off too, and the headers are not even looked at.
pub fn span(function: FunctionName, headers: Option<&HeaderMap>) -> tracing::Span {
    if !tracing::enabled!(tracing::Level::INFO) {
        return tracing::Span::none();
    }
    span_with_id(function, headers.and_then(invocation_id))
}

/// The span of a forwarded request: [`span`] when the host sent an invocation id, none
/// otherwise (the widget's requests in standalone mode are not logged one by one).
pub fn forwarded_span(function: FunctionName, headers: &HeaderMap) -> Option<tracing::Span> {
    if !tracing::enabled!(tracing::Level::INFO) {
        return None;
    }
    invocation_id(headers).map(|id| span_with_id(function, Some(id)))
}

fn span_with_id(function: FunctionName, invocation_id: Option<&str>) -> tracing::Span {
    match invocation_id {
        Some(id) => tracing::info_span!(
            "invocation",
            function = function.as_str(),
            invocation_id = id
        ),
        None => tracing::info_span!("invocation", function = function.as_str()),
    }
}

/// The host's invocation id of a request, when it has one that looks like an id (the host
/// sends a GUID; anything longer than 64 characters or with other than letters, digits and `-`
/// is not logged).
pub fn invocation_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(&INVOCATION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Runs an HTTP function.
pub async fn call_http(
    app: &App,
    answer_headers: &AnswerHeaders,
    function: FunctionName,
    request: FunctionRequest,
) -> FunctionResponse {
    match function {
        FunctionName::GetLatestRun => {
            get_latest_run::handle(&app.keeper, &app.allowed_origins, answer_headers, &request)
                .await
        }
        FunctionName::GetRunningYear => {
            get_running_year::handle(
                &app.running_year,
                &app.allowed_origins,
                answer_headers,
                &request,
            )
            .await
        }
        // Boxed: the webhook's future is the largest (it writes to the table), and unboxed it
        // would make every request's future that large, the widget's included.
        FunctionName::StravaWebhook => {
            Box::pin(strava_webhook::handle(
                &app.push_events,
                &app.callback_secret,
                app.webhook_verify_token.as_ref(),
                &app.webhook_refusals,
                &request,
            ))
            .await
        }
        FunctionName::Widget => widget::handle(&app.allowed_origins, &request).await,
        // Timer functions have no public route; the router never sends them here.
        FunctionName::RefreshToken => crate::http::ApiError::NotFound.to_response(),
    }
}

/// Runs a timer function: its log lines, or the reason it failed.
pub async fn call_timer(
    app: &App,
    function: FunctionName,
    timer: &TimerInfo,
) -> Result<Vec<String>, String> {
    match function {
        FunctionName::RefreshToken => {
            refresh_token::run(&app.tokens, &app.keeper, &app.clock, timer).await
        }
        FunctionName::GetLatestRun
        | FunctionName::GetRunningYear
        | FunctionName::StravaWebhook
        | FunctionName::Widget => Err(format!("{} is not a timer function", function.as_str())),
    }
}
