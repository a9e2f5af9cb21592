//! The one request/response model every function sees, whichever form (forwarded or
//! invocation) the host used to deliver the request, and the errors a client can see with their
//! one mapping to HTTP: a status code and a JSON body `{"error": "<code>", "message": "<sentence>"}`.
//! Messages are written for people and never carry a secret or a token. This module depends on
//! no other module of the app.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use warp::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, IF_NONE_MATCH, ORIGIN, X_CONTENT_TYPE_OPTIONS,
};
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// An HTTP request to a function, after the edge adapters have removed the host's wrapping.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionRequest {
    /// The client's method.
    pub method: Method,
    /// Decoded query pairs, in the order the client sent them, a repeated name's every value
    /// included (the forwarded form's from the request line, the invocation form's from the URL
    /// the host passes on).
    pub query: Vec<(String, String)>,
    /// Route parameters (`{file}` of `widget/{file}`): from the path in the forwarded form, from
    /// `Params` in the invocation form.
    pub params: Vec<(String, String)>,
    /// The client's headers.
    pub headers: HeaderMap,
    /// The body (empty when none).
    pub body: Bytes,
}

impl FunctionRequest {
    /// The request headers some function reads: `Origin` (CORS) and `If-None-Match` (`304`s).
    /// The invocation form carries only these; the forwarded form carries every header. A
    /// function that reads another header must have it added here.
    pub const HEADERS_READ: [HeaderName; 2] = [ORIGIN, IF_NONE_MATCH];

    /// A route parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's value: the first one of a name sent twice, in either request form
    /// (names compared exactly). Every function reads its parameters here.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response from a function; the edge adapters send it raw or wrap it in `Outputs.res`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers (kept as a `HeaderMap` so the forwarded form sends them without conversion).
    pub headers: HeaderMap,
    /// Body bytes (always text in this app).
    pub body: Bytes,
}

impl FunctionResponse {
    /// A JSON response with the app's content type and [`NOSNIFF`].
    pub fn json(status: StatusCode, value: &impl Serialize) -> Self {
        // Serializing plain data structs cannot fail; fall back to an empty object to be safe.
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static(NOSNIFF));
        FunctionResponse {
            status,
            headers,
            body: Bytes::from(body),
        }
    }

    /// Adds a header (a value that is not a valid header value is left out).
    pub fn with_header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(value) = HeaderValue::from_str(value.as_ref()) {
            self.headers.append(name, value);
        }
        self
    }

    /// Converts to the raw HTTP response of the forwarded form.
    pub fn into_http(self) -> warp::http::Response<Bytes> {
        let mut response = warp::http::Response::new(self.body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// The content type of every JSON answer.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// `X-Content-Type-Options` of every answer with a body (JSON, JSON errors, cards, widget
/// files): a browser takes the content type as sent and never sniffs another one.
pub const NOSNIFF: &str = "nosniff";

/// An error answered to an HTTP client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No `credentials` entity: the owner has not connected Strava yet.
    #[error(
        "Strava is not connected yet: run `handler setup` once to store the Strava credentials."
    )]
    NotConfigured,
    /// The stored credentials cannot be read (a hand edit, a half write); the text names the
    /// property, never a value.
    #[error("The stored Strava credentials cannot be used ({0}): run `handler setup` again.")]
    CredentialsUnusable(String),
    /// Table Storage cannot be reached and nothing is held in memory.
    #[error("The storage account cannot be reached right now; try again in a minute.")]
    StorageUnavailable,
    /// Strava failed and there is no earlier answer to fall back on.
    #[error("Strava cannot be reached right now and there is no earlier answer to show; try again later.")]
    StravaUnavailable,
    /// Strava refused the stored credentials for good (revoked app, deleted refresh token).
    #[error(
        "Strava no longer accepts the stored credentials: run `handler setup` again to reconnect."
    )]
    StravaAuthorization,
    /// The athlete has no public activity of the configured sport types.
    #[error("There is no public run to show yet.")]
    NoPublicRun,
    /// GetRunningYear was asked for a year the activity index does not hold.
    #[error("The year {0} is not indexed: this year and the year before are.")]
    YearNotIndexed(i32),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The request body is larger than the app accepts.
    #[error("The request body is larger than {0} bytes.")]
    PayloadTooLarge(usize),
    /// No such route.
    #[error("There is no function at this path.")]
    NotFound,
    /// The `Widget` function has no file of that name.
    #[error("There is no such widget file: the widget serves latest-run.js and demo.html.")]
    NoSuchFile,
    /// The route exists but not for this method.
    #[error("This method is not allowed here.")]
    MethodNotAllowed,
    /// `STRAVA_WEBHOOK_VERIFY_TOKEN` is not set, so the webhook cannot be used.
    #[error("The Strava webhook is not set up: set STRAVA_WEBHOOK_VERIFY_TOKEN, then run `handler subscribe`.")]
    WebhookNotConfigured,
    /// The webhook validation carried a wrong verify token.
    #[error("The verify token does not match.")]
    Forbidden,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotConfigured
            | ApiError::CredentialsUnusable(_)
            | ApiError::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::StravaUnavailable | ApiError::StravaAuthorization => StatusCode::BAD_GATEWAY,
            ApiError::NoPublicRun
            | ApiError::YearNotIndexed(_)
            | ApiError::NotFound
            | ApiError::NoSuchFile => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::WebhookNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotConfigured | ApiError::CredentialsUnusable(_) => "not_configured",
            ApiError::StorageUnavailable => "storage_unavailable",
            ApiError::StravaUnavailable => "strava_unavailable",
            ApiError::StravaAuthorization => "strava_authorization",
            ApiError::NoPublicRun => "no_public_run",
            ApiError::YearNotIndexed(_) => "year_not_indexed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::NotFound | ApiError::NoSuchFile => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::WebhookNotConfigured => "not_configured",
            ApiError::Forbidden => "forbidden",
        }
    }

    /// The JSON error response; errors are never cached by browsers or CDNs.
    pub fn to_response(&self) -> FunctionResponse {
        FunctionResponse::json(
            self.status(),
            &ErrorBody {
                error: self.code(),
                message: self.to_string(),
            },
        )
        .with_header(CACHE_CONTROL, "no-store")
    }
}

/// A timer run, as the host's `Data.<timer>` describes it (the standalone schedule makes one too).
#[derive(Debug, Deserialize, PartialEq)]
pub struct TimerInfo {
    /// The schedule (`{"AdjustForDST": true}`); not used.
    #[serde(rename = "Schedule", default)]
    pub schedule: Option<serde_json::Value>,
    /// Null when schedule monitoring is off.
    #[serde(rename = "ScheduleStatus", default)]
    pub schedule_status: Option<ScheduleStatus>,
    /// True for the catch-up run after the app was down over an occurrence.
    #[serde(rename = "IsPastDue", default)]
    pub is_past_due: bool,
}

/// When the timer last fired and fires next (local time with an offset, as the host writes it).
#[derive(Debug, Deserialize, PartialEq)]
pub struct ScheduleStatus {
    /// Previous occurrence; year 0001 on a first run.
    #[serde(rename = "Last")]
    pub last: String,
    /// This occurrence.
    #[serde(rename = "Next")]
    pub next: String,
    /// When the status was last written.
    #[serde(rename = "LastUpdated")]
    pub last_updated: String,
}

impl TimerInfo {
    /// Whether this is the first run the schedule monitor knows of (no status, or `Last` in year 1).
    pub fn is_first_run(&self) -> bool {
        self.schedule_status
            .as_ref()
            .is_none_or(|s| s.last.starts_with("0001-"))
    }
}

/// `Cache-Control` for answers with a window of `cache_seconds`: browsers and CDNs may reuse one
/// briefly and keep showing it while they revalidate. Built once, when the app is (the `headers`
/// crate's CacheControl has no `stale-while-revalidate`).
pub fn answer_cache_control(cache_seconds: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "public, max-age={}, stale-while-revalidate={}",
        cache_seconds.clamp(0, 300),
        cache_seconds.max(60)
    ))
    .unwrap_or(HeaderValue::from_static("public, max-age=60"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_json_with_code_and_sentence() {
        let response = ApiError::NotConfigured.to_response();
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers[X_CONTENT_TYPE_OPTIONS], NOSNIFF);
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
        assert_eq!(body["error"], "not_configured");
        assert!(body["message"]
            .as_str()
            .is_some_and(|m| m.contains("handler setup")));
        assert_eq!(
            ApiError::BadRequest("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
