//! The app's functions: the only code that joins HTTP (the [`crate::http`] model) and the
//! domain services. Each function gets the services it uses, not the whole app; this module
//! names the functions and dispatches a request or a timer run to the right one.

pub mod get_latest_run;
pub mod public_http;
pub mod refresh_token;
pub mod widget;

use crate::app::App;
pub use crate::http::{FunctionRequest, FunctionResponse, TimerInfo, JSON_CONTENT_TYPE};

/// The functions of the app, named as their folders (the invocation path) are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionName {
    /// HTTP: the widget's request.
    GetLatestRun,
    /// Timer: keeps the Strava token alive.
    RefreshToken,
    /// HTTP, route `widget/{file}`: the embeddable script and its demo page.
    Widget,
}

impl FunctionName {
    /// Looks a function up by name; the host keeps the folder's case, public routes ignore case.
    pub fn parse(name: &str) -> Option<Self> {
        [
            FunctionName::GetLatestRun,
            FunctionName::RefreshToken,
            FunctionName::Widget,
        ]
        .into_iter()
        .find(|f| f.as_str().eq_ignore_ascii_case(name))
    }

    /// The folder name.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionName::GetLatestRun => "GetLatestRun",
            FunctionName::RefreshToken => "RefreshToken",
            FunctionName::Widget => "Widget",
        }
    }

    /// Whether the function is HTTP-triggered (else timer-triggered).
    pub fn is_http(self) -> bool {
        matches!(self, FunctionName::GetLatestRun | FunctionName::Widget)
    }
}

/// Runs an HTTP function.
pub async fn call_http(
    app: &App,
    function: FunctionName,
    request: FunctionRequest,
) -> FunctionResponse {
    match function {
        FunctionName::GetLatestRun => {
            get_latest_run::handle(&app.latest_run, &app.allowed_origins, &request).await
        }
        FunctionName::Widget => widget::handle(&app.allowed_origins, &request),
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
            refresh_token::run(&app.tokens, &app.latest_run, &app.clock, timer).await
        }
        FunctionName::GetLatestRun | FunctionName::Widget => {
            Err(format!("{} is not a timer function", function.as_str()))
        }
    }
}
