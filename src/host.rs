//! The Functions host ⇄ custom handler wire protocol: typed models of the invocation request
//! (`{"Data":…,"Metadata":…}`) and reply (`{"Outputs":…,"Logs":…,"ReturnValue":…}`), and the
//! adapters between them and the app's one [`FunctionRequest`]/[`FunctionResponse`] model.

use crate::error::ApiError;
use crate::functions::{FunctionRequest, FunctionResponse};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method};

/// The body of `POST /{FunctionName}`.
#[derive(Debug, Deserialize)]
pub struct InvocationRequest {
    /// One entry per input binding, keyed by the binding's name.
    #[serde(rename = "Data")]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Trigger metadata; ignored except for diagnostics.
    #[serde(rename = "Metadata", default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `Data.req` of an HTTP trigger in the invocation form.
#[derive(Debug, Deserialize)]
pub struct HttpTriggerRequest {
    /// The public URL, query included.
    #[serde(rename = "Url")]
    pub url: String,
    /// Upper-case verb.
    #[serde(rename = "Method")]
    pub method: String,
    /// Decoded query; repeated keys arrive comma-joined.
    #[serde(rename = "Query", default)]
    pub query: HashMap<String, String>,
    /// Headers, each with its values as an array.
    #[serde(rename = "Headers", default)]
    pub headers: HashMap<String, Vec<String>>,
    /// Route parameters (a missing optional one is null).
    #[serde(rename = "Params", default)]
    pub params: HashMap<String, Option<String>>,
    /// Claims identities; opaque here.
    #[serde(rename = "Identities", default)]
    pub identities: Vec<serde_json::Value>,
    /// Present only when the client sent a body with Content-Length.
    #[serde(rename = "Body", default)]
    pub body: Option<String>,
}

/// `Data.<timer>` of a timer trigger.
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

/// The reply to an invocation.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct InvocationResponse {
    /// One entry per output binding (`res` for HTTP functions).
    #[serde(rename = "Outputs")]
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// Lines for the function's log.
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    /// Always null: no function here has a `$return` binding.
    #[serde(rename = "ReturnValue")]
    pub return_value: serde_json::Value,
}

/// `Outputs.res`: the HTTP response the host gives the client.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct HttpOutput {
    /// Status code (a number).
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// The body as a string (a JSON object here would be re-rendered indented by the host).
    pub body: String,
    /// String-valued headers.
    pub headers: BTreeMap<String, String>,
}

/// The name of the HTTP output binding in every function.json of the app.
pub const HTTP_OUTPUT_BINDING: &str = "res";

impl InvocationRequest {
    /// Parses an invocation body; every shape problem is a 400 with a sentence saying what.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest(
                "The invocation body is empty; expected {\"Data\":…,\"Metadata\":…}.".into(),
            ));
        }
        serde_json::from_slice(body).map_err(|err| {
            ApiError::BadRequest(format!(
                "The invocation body is not a valid invocation request: {err}."
            ))
        })
    }

    /// The HTTP trigger's request: the `Data` entry that has `Url` and `Method`.
    pub fn http_request(&self) -> Result<FunctionRequest, ApiError> {
        let value = self
            .data
            .values()
            .find(|v| v.get("Url").is_some() && v.get("Method").is_some())
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "The invocation has no HTTP trigger data (Data.req with Url and Method)."
                        .into(),
                )
            })?;
        let trigger: HttpTriggerRequest = serde_json::from_value(value.clone()).map_err(|err| {
            ApiError::BadRequest(format!("The HTTP trigger data is malformed: {err}."))
        })?;
        trigger.into_function_request()
    }

    /// The timer trigger's data: the `Data` entry shaped like `TimerInfo`.
    pub fn timer(&self) -> Result<TimerInfo, ApiError> {
        let value = self
            .data
            .values()
            .find(|v| v.get("IsPastDue").is_some() || v.get("ScheduleStatus").is_some())
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "The invocation has no timer data (IsPastDue, ScheduleStatus).".into(),
                )
            })?;
        serde_json::from_value(value.clone())
            .map_err(|err| ApiError::BadRequest(format!("The timer data is malformed: {err}.")))
    }
}

impl HttpTriggerRequest {
    fn into_function_request(self) -> Result<FunctionRequest, ApiError> {
        let method = Method::from_bytes(self.method.as_bytes()).map_err(|_| {
            ApiError::BadRequest(format!("'{}' is not an HTTP method.", self.method))
        })?;
        let mut headers = HeaderMap::new();
        for (name, values) in &self.headers {
            // Header names the client sent are kept; ones http cannot represent are dropped.
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            for value in values {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.append(name.clone(), value);
                }
            }
        }
        // Query is already decoded; sort for a stable order (the host's object has none).
        let mut query: Vec<(String, String)> = self.query.into_iter().collect();
        query.sort();
        Ok(FunctionRequest {
            method,
            query,
            headers,
            body: self.body.map(Bytes::from).unwrap_or_default(),
        })
    }
}

impl InvocationResponse {
    /// Wraps an HTTP function's response as `Outputs.res`.
    pub fn http(response: FunctionResponse, logs: Vec<String>) -> Self {
        let mut headers = BTreeMap::new();
        for (name, value) in response.headers {
            headers
                .entry(name.to_owned())
                .and_modify(|v: &mut String| {
                    v.push_str(", ");
                    v.push_str(&value)
                })
                .or_insert(value);
        }
        let output = HttpOutput {
            status_code: response.status.as_u16(),
            body: String::from_utf8_lossy(&response.body).into_owned(),
            headers,
        };
        let mut outputs = serde_json::Map::new();
        outputs.insert(
            HTTP_OUTPUT_BINDING.to_owned(),
            serde_json::to_value(output).unwrap_or_default(),
        );
        InvocationResponse {
            outputs,
            logs,
            return_value: serde_json::Value::Null,
        }
    }

    /// A reply with no outputs (timer functions).
    pub fn logs_only(logs: Vec<String>) -> Self {
        InvocationResponse {
            outputs: serde_json::Map::new(),
            logs,
            return_value: serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::StatusCode;

    const HTTP_FIXTURE: &str =
        include_str!("../tests/data/functions-host/http-invocation-request.json");
    const TIMER_FIXTURE: &str =
        include_str!("../tests/data/functions-host/timer-invocation-request.json");
    const TIMER_NO_MONITOR: &str =
        include_str!("../tests/data/functions-host/timer-invocation-request-no-monitor.json");
    const TIMER_PAST_DUE: &str =
        include_str!("../tests/data/functions-host/timer-invocation-request-past-due.json");

    #[test]
    fn http_fixture_becomes_a_function_request() {
        let invocation = InvocationRequest::parse(HTTP_FIXTURE.as_bytes()).expect("parse");
        let request = invocation.http_request().expect("http");
        assert_eq!(request.method, Method::GET);
        assert_eq!(request.query_param("name"), Some("Functions"));
        assert_eq!(request.query_param("lang"), Some("en"));
        assert_eq!(request.header("accept"), Some("application/json"));
        assert!(request.body.is_empty());
        assert!(invocation.timer().is_err());
    }

    #[test]
    fn timer_fixtures_parse_whatever_the_binding_name() {
        let normal = InvocationRequest::parse(TIMER_FIXTURE.as_bytes()).expect("parse");
        let timer = normal.timer().expect("timer");
        assert!(!timer.is_past_due);
        assert!(!timer.is_first_run());
        let past_due = InvocationRequest::parse(TIMER_PAST_DUE.as_bytes())
            .and_then(|i| i.timer())
            .expect("timer");
        assert!(past_due.is_past_due);
        let no_monitor = InvocationRequest::parse(TIMER_NO_MONITOR.as_bytes())
            .and_then(|i| i.timer())
            .expect("timer");
        assert!(no_monitor.schedule_status.is_none());
        assert!(no_monitor.is_first_run());
        let renamed = TIMER_FIXTURE.replace("myTimer", "everyTwoHours");
        assert_eq!(
            InvocationRequest::parse(renamed.as_bytes())
                .and_then(|i| i.timer())
                .expect("timer"),
            timer
        );
        let first = TIMER_FIXTURE.replace(
            "2024-11-05T08:00:00.0031853+00:00",
            "0001-01-01T00:00:00+00:00",
        );
        assert!(InvocationRequest::parse(first.as_bytes())
            .and_then(|i| i.timer())
            .expect("timer")
            .is_first_run());
    }

    #[test]
    fn malformed_invocations_are_bad_requests() {
        let cases: &[&str] = &[
            "",
            "   ",
            "null",
            "[]",
            "{",
            "{\"Metadata\":{}}",
            "{\"Data\":[]}",
            "{\"Data\":{\"req\":{\"Url\":5,\"Method\":\"GET\"}}}",
            "{\"Data\":{\"req\":{\"Url\":\"http://x/api/a\",\"Method\":\"G T\"}}}",
            "{\"Data\":{\"req\":{\"Url\":\"http://x/api/a\",\"Method\":\"GET\",\"Headers\":{\"a\":\"not-an-array\"}}}}",
        ];
        for case in cases {
            let result = InvocationRequest::parse(case.as_bytes()).and_then(|i| i.http_request());
            let err = result.expect_err(case);
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{case}");
        }
    }

    #[test]
    fn http_reply_puts_the_body_as_a_string_and_headers_as_strings() {
        let response = FunctionResponse::json(StatusCode::OK, &serde_json::json!({"a": 1}))
            .with_header("ETag", "\"abc\"");
        let reply = InvocationResponse::http(response, vec!["ok".into()]);
        let json = serde_json::to_value(&reply).expect("json");
        assert_eq!(json["Outputs"]["res"]["statusCode"], 200);
        assert_eq!(json["Outputs"]["res"]["body"], "{\"a\":1}");
        assert_eq!(json["Outputs"]["res"]["headers"]["ETag"], "\"abc\"");
        assert_eq!(json["Logs"][0], "ok");
        assert!(json["ReturnValue"].is_null());
    }
}
