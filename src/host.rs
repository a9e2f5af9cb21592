//! The Functions host ⇄ custom handler wire protocol: typed models of the invocation request
//! (`{"Data":…,"Metadata":…}`) and reply (`{"Outputs":…,"Logs":…,"ReturnValue":…}`), and the
//! adapters between them and the app's one [`FunctionRequest`]/[`FunctionResponse`] model.

use crate::http::{ApiError, TimerInfo};
use crate::http::{FunctionRequest, FunctionResponse};
use bytes::Bytes;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method};

/// The body of `POST /{FunctionName}`. Bindings stay raw JSON until the one that is needed is
/// decoded, so the parts this app ignores (`Metadata`, `Identities`) cost no allocations.
#[derive(Debug, Deserialize)]
pub struct InvocationRequest<'a> {
    /// One entry per input binding, keyed by the binding's name; values borrowed from the body.
    #[serde(rename = "Data", borrow)]
    pub data: HashMap<String, &'a RawValue>,
    /// Trigger metadata; not used (everything needed is in `Data`).
    #[serde(rename = "Metadata", default)]
    pub metadata: Option<IgnoredAny>,
}

/// Which keys a binding's value has, to tell an HTTP trigger from a timer whatever its name.
#[derive(Deserialize)]
struct BindingKeys {
    #[serde(rename = "Url")]
    url: Option<IgnoredAny>,
    #[serde(rename = "Method")]
    method: Option<IgnoredAny>,
    #[serde(rename = "IsPastDue")]
    is_past_due: Option<IgnoredAny>,
    #[serde(rename = "ScheduleStatus")]
    schedule_status: Option<IgnoredAny>,
}

impl BindingKeys {
    fn of(raw: &RawValue) -> Option<Self> {
        serde_json::from_str(raw.get()).ok()
    }
}

/// `Data.req` of an HTTP trigger in the invocation form. Strings are borrowed from the body
/// where JSON allows (no escapes), and headers go straight into a `HeaderMap`.
#[derive(Debug, Deserialize)]
pub struct HttpTriggerRequest<'a> {
    /// The public URL, query included.
    #[serde(rename = "Url", borrow)]
    pub url: Text<'a>,
    /// Upper-case verb.
    #[serde(rename = "Method", borrow)]
    pub method: Text<'a>,
    /// Decoded query; repeated keys arrive comma-joined.
    #[serde(rename = "Query", default)]
    pub query: HashMap<String, String>,
    /// Headers, each with its values as an array.
    #[serde(rename = "Headers", default, deserialize_with = "headers_from_arrays")]
    pub headers: HeaderMap,
    /// Route parameters (a missing optional one is null).
    #[serde(rename = "Params", default)]
    pub params: HashMap<String, Option<String>>,
    /// Claims identities; opaque and unused here.
    #[serde(rename = "Identities", default)]
    pub identities: Option<IgnoredAny>,
    /// Present only when the client sent a body with Content-Length.
    #[serde(rename = "Body", default, borrow)]
    pub body: Option<Text<'a>>,
}

/// A JSON string, borrowed from the input unless it had escapes.
#[derive(Debug)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// `{"Accept": ["*/*"], …}` straight into a `HeaderMap`; names or values HTTP cannot carry are
/// dropped (the host passes on whatever the client sent).
fn headers_from_arrays<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<HeaderMap, D::Error> {
    struct Values<'a>(&'a mut HeaderMap, Option<HeaderName>);
    impl<'de> DeserializeSeed<'de> for Values<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Values<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of header values")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(value) = seq.next_element::<Text<'de>>()? {
                if let (Some(name), Ok(value)) = (&self.1, HeaderValue::from_str(&value.0)) {
                    self.0.append(name.clone(), value);
                }
            }
            Ok(())
        }
    }
    struct Headers;
    impl<'de> Visitor<'de> for Headers {
        type Value = HeaderMap;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of header arrays")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeaderMap, A::Error> {
            let mut headers = HeaderMap::with_capacity(map.size_hint().unwrap_or(8));
            while let Some(name) = map.next_key::<Text<'de>>()? {
                let name = HeaderName::from_bytes(name.0.as_bytes()).ok();
                map.next_value_seed(Values(&mut headers, name))?;
            }
            Ok(headers)
        }
    }
    deserializer.deserialize_map(Headers)
}

/// The reply to a timer invocation (no outputs).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct InvocationResponse {
    /// One entry per output binding; none for timers.
    #[serde(rename = "Outputs")]
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// Lines for the function's log.
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    /// Always null: no function here has a `$return` binding.
    #[serde(rename = "ReturnValue")]
    pub return_value: serde_json::Value,
}

/// The reply to an HTTP invocation, serialized straight from borrowed parts.
#[derive(Debug, Serialize)]
pub struct HttpInvocationResponse<'a> {
    /// `{"res": …}`.
    #[serde(rename = "Outputs")]
    pub outputs: HttpOutputs<'a>,
    /// Lines for the function's log.
    #[serde(rename = "Logs")]
    pub logs: &'a [String],
    /// Always null.
    #[serde(rename = "ReturnValue")]
    pub return_value: (),
}

/// The output bindings of an HTTP function.
#[derive(Debug, Serialize)]
pub struct HttpOutputs<'a> {
    /// The `http` output binding, named `res` in every function.json of the app.
    pub res: HttpOutput<'a>,
}

/// `Outputs.res`: the HTTP response the host gives the client.
#[derive(Debug, Serialize)]
pub struct HttpOutput<'a> {
    /// Status code (a number).
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// The body as a string (a JSON object here would be re-rendered indented by the host).
    pub body: Cow<'a, str>,
    /// String-valued headers, with their usual spelling.
    pub headers: SpelledHeaders<'a>,
}

/// A `HeaderMap` serialized as the host wants it: name → string, names spelled as people write
/// them (`Content-Type`, `ETag`; the host compares them case-insensitively).
#[derive(Debug)]
pub struct SpelledHeaders<'a>(pub &'a HeaderMap);

impl Serialize for SpelledHeaders<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.keys_len()))?;
        for name in self.0.keys() {
            // A repeated header is joined with ", " as HTTP allows; this app sends each once.
            let mut values = self.0.get_all(name).iter().filter_map(|v| v.to_str().ok());
            let Some(first) = values.next() else { continue };
            let rest: Vec<&str> = values.collect();
            let spelled = header_spelling(name.as_str());
            if rest.is_empty() {
                map.serialize_entry(&spelled, first)?;
            } else {
                map.serialize_entry(
                    &spelled,
                    &[first]
                        .into_iter()
                        .chain(rest)
                        .collect::<Vec<_>>()
                        .join(", "),
                )?;
            }
        }
        map.end()
    }
}

impl<'a> InvocationRequest<'a> {
    /// Parses an invocation body; every shape problem is a 400 with a sentence saying what.
    pub fn parse(body: &'a [u8]) -> Result<Self, ApiError> {
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
        // The usual case, one binding that decodes at once, costs a single pass.
        for value in self.data.values() {
            if let Ok(trigger) = serde_json::from_str::<HttpTriggerRequest>(value.get()) {
                return trigger.into_function_request();
            }
        }
        let value = self
            .data
            .values()
            .find(|v| BindingKeys::of(v).is_some_and(|k| k.url.is_some() && k.method.is_some()))
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "The invocation has no HTTP trigger data (Data.req with Url and Method)."
                        .into(),
                )
            })?;
        let trigger: HttpTriggerRequest = serde_json::from_str(value.get()).map_err(|err| {
            ApiError::BadRequest(format!("The HTTP trigger data is malformed: {err}."))
        })?;
        trigger.into_function_request()
    }

    /// The timer trigger's data: the `Data` entry shaped like `TimerInfo`.
    pub fn timer(&self) -> Result<TimerInfo, ApiError> {
        let value = self
            .data
            .values()
            .find(|v| {
                BindingKeys::of(v)
                    .is_some_and(|k| k.is_past_due.is_some() || k.schedule_status.is_some())
            })
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "The invocation has no timer data (IsPastDue, ScheduleStatus).".into(),
                )
            })?;
        serde_json::from_str(value.get())
            .map_err(|err| ApiError::BadRequest(format!("The timer data is malformed: {err}.")))
    }
}

impl HttpTriggerRequest<'_> {
    fn into_function_request(self) -> Result<FunctionRequest, ApiError> {
        let method = Method::from_bytes(self.method.0.as_bytes()).map_err(|_| {
            ApiError::BadRequest(format!("'{}' is not an HTTP method.", self.method.0))
        })?;
        // Query is already decoded; sort for a stable order (the host's object has none).
        let mut query: Vec<(String, String)> = self.query.into_iter().collect();
        query.sort();
        let mut params: Vec<(String, String)> = self
            .params
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name, value)))
            .collect();
        params.sort();
        Ok(FunctionRequest {
            method,
            query,
            params,
            headers: self.headers,
            body: self
                .body
                .map(|b| Bytes::copy_from_slice(b.0.as_bytes()))
                .unwrap_or_default(),
        })
    }
}

impl<'a> HttpInvocationResponse<'a> {
    /// Wraps an HTTP function's response as `Outputs.res`.
    pub fn new(response: &'a FunctionResponse, logs: &'a [String]) -> Self {
        HttpInvocationResponse {
            outputs: HttpOutputs {
                res: HttpOutput {
                    status_code: response.status.as_u16(),
                    // Bodies here are JSON or text; the lossy path only guards against a bug.
                    body: match std::str::from_utf8(&response.body) {
                        Ok(text) => Cow::Borrowed(text),
                        Err(_) => String::from_utf8_lossy(&response.body),
                    },
                    headers: SpelledHeaders(&response.headers),
                },
            },
            logs,
            return_value: (),
        }
    }
}

/// `content-type` → `Content-Type`, `etag` → `ETag`.
fn header_spelling(lowercase: &str) -> Cow<'static, str> {
    let known = match lowercase {
        "content-type" => "Content-Type",
        "etag" => "ETag",
        "cache-control" => "Cache-Control",
        "vary" => "Vary",
        "allow" => "Allow",
        "access-control-allow-origin" => "Access-Control-Allow-Origin",
        "access-control-expose-headers" => "Access-Control-Expose-Headers",
        "access-control-allow-methods" => "Access-Control-Allow-Methods",
        "access-control-allow-headers" => "Access-Control-Allow-Headers",
        "access-control-max-age" => "Access-Control-Max-Age",
        other => {
            return Cow::Owned(
                other
                    .split('-')
                    .map(|part| {
                        let mut chars = part.chars();
                        match chars.next() {
                            Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                            None => String::new(),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("-"),
            )
        }
    };
    Cow::Borrowed(known)
}

impl InvocationResponse {
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
        assert_eq!(
            request.query,
            vec![
                ("lang".to_owned(), "en".to_owned()),
                ("name".to_owned(), "Functions".to_owned())
            ]
        );
        assert_eq!(request.headers["accept"], "application/json");
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
            .with_header(warp::http::header::ETAG, "\"abc\"")
            .with_header(warp::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
        let logs = vec!["ok".to_owned()];
        let reply = HttpInvocationResponse::new(&response, &logs);
        let json = serde_json::to_value(&reply).expect("json");
        assert_eq!(json["Outputs"]["res"]["statusCode"], 200);
        assert_eq!(json["Outputs"]["res"]["body"], "{\"a\":1}");
        assert_eq!(json["Outputs"]["res"]["headers"]["ETag"], "\"abc\"");
        assert_eq!(
            json["Outputs"]["res"]["headers"]["Access-Control-Allow-Origin"],
            "*"
        );
        assert_eq!(
            json["Outputs"]["res"]["headers"]["Content-Type"],
            "application/json; charset=utf-8"
        );
        assert_eq!(json["Logs"][0], "ok");
        assert!(json["ReturnValue"].is_null());
    }
}
