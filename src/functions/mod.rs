//! The app's functions and the one request/response model they all see, whichever form
//! (forwarded or invocation) the host used to deliver the request.

pub mod get_latest_run;
pub mod refresh_token;

use crate::error::ApiError;
use bytes::Bytes;
use serde::Serialize;
use warp::http::header::CONTENT_TYPE;
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// The functions of the app, named as their folders (the invocation path) are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionName {
    /// HTTP: the widget's request.
    GetLatestRun,
    /// Timer: keeps the Strava token alive.
    RefreshToken,
}

impl FunctionName {
    /// Looks a function up by name; the host keeps the folder's case, public routes ignore case.
    pub fn parse(name: &str) -> Option<Self> {
        [FunctionName::GetLatestRun, FunctionName::RefreshToken]
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(name))
    }

    /// The folder name.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionName::GetLatestRun => "GetLatestRun",
            FunctionName::RefreshToken => "RefreshToken",
        }
    }

    /// Whether the function is HTTP-triggered (else timer-triggered).
    pub fn is_http(self) -> bool {
        matches!(self, FunctionName::GetLatestRun)
    }
}

/// An HTTP request to a function, after the edge adapters have removed the host's wrapping.
#[derive(Clone, Debug)]
pub struct FunctionRequest {
    /// The client's method.
    pub method: Method,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// The client's headers.
    pub headers: HeaderMap,
    /// The body (empty when none).
    pub body: Bytes,
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
    /// A JSON response with the app's content type.
    pub fn json(status: StatusCode, value: &impl Serialize) -> Self {
        // Serializing plain data structs cannot fail; fall back to an empty object to be safe.
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
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

impl From<ApiError> for FunctionResponse {
    fn from(err: ApiError) -> Self {
        err.to_response()
    }
}

/// The content type of every JSON answer.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
