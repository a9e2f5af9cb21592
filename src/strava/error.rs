//! Turns every way a Strava call can fail into one error type whose messages never carry a
//! secret, a token or a raw response body.

use super::rate_limit::{next_quarter_hour, RateLimitSnapshot};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Everything a call to Strava's OAuth or API endpoints can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StravaError {
    /// 400 `RefreshToken` invalid: revoked, unknown or superseded by a rotated one.
    #[error("Strava rejected the refresh token; the athlete must authorize the app again.")]
    InvalidRefreshToken,
    /// 400 `AuthorizationCode`/`RequestToken` invalid.
    #[error("Strava rejected the authorization code; it is expired, already used or mistyped.")]
    InvalidCode,
    /// 400 `Application` `client_id`/`client_secret` invalid.
    #[error("Strava rejected the client id or client secret.")]
    InvalidClient,
    /// Any other 4xx that is not classified below.
    #[error("Strava rejected the request: {message}.")]
    BadRequest {
        /// Strava's fault message and error codes.
        message: String,
    },
    /// 401 with an invalid, expired or revoked access token.
    #[error("Strava rejected the access token as invalid, expired or revoked.")]
    Unauthorized,
    /// 401 `activity:read_permission` missing.
    #[error("The Strava authorization lacks the activity:read scope; authorize the app again and keep that box ticked.")]
    MissingScope,
    /// 403.
    #[error("Strava refused access to this resource.")]
    Forbidden,
    /// 404.
    #[error("Strava has no such resource, or it is not visible to this token.")]
    NotFound,
    /// 429; `until` is when the exhausted window reopens.
    #[error("Strava's rate limit is exhausted{}.", until_text(.until))]
    RateLimited {
        /// When requests may resume.
        until: Option<OffsetDateTime>,
    },
    /// 5xx, whatever the body.
    #[error("Strava failed with server error {status}.")]
    Server {
        /// The HTTP status.
        status: u16,
    },
    /// The answer's body (or status) was not what the endpoint promises.
    #[error("Strava answered with status {status} and an unreadable body: {detail}.")]
    UnexpectedBody {
        /// The HTTP status.
        status: u16,
        /// Why it could not be read; never the body itself.
        detail: String,
    },
    /// No complete answer within the client's timeout.
    #[error("Strava did not answer in time.")]
    Timeout,
    /// Connecting or talking to Strava failed.
    #[error("Could not talk to Strava: {detail}.")]
    Network {
        /// The transport error, without URL or header values.
        detail: String,
    },
    /// The configured base URL is not an absolute http(s) URL.
    #[error("The Strava base URL is not an absolute http or https URL.")]
    InvalidBaseUrl,
}

impl StravaError {
    /// True for failures worth retrying later unchanged (server trouble, timeouts, transport
    /// errors, garbled bodies).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StravaError::Server { .. }
                | StravaError::Timeout
                | StravaError::Network { .. }
                | StravaError::UnexpectedBody { .. }
        )
    }

    /// Classifies a transport error from reqwest.
    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() || has_timed_out_source(&err) {
            return StravaError::Timeout;
        }
        // The URL could carry query parameters; header values never appear in reqwest's texts.
        let err = err.without_url();
        let mut detail = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        StravaError::Network { detail }
    }

    /// Classifies a non-2xx answer by its status, using the Fault body only to tell 400s and
    /// 401s apart. `rate` is the snapshot from this answer's headers.
    pub fn from_status(
        status: u16,
        body: &[u8],
        rate: Option<&RateLimitSnapshot>,
        now: OffsetDateTime,
    ) -> Self {
        match status {
            400 => {
                let fault = Fault::parse(body);
                if fault.has(|e| e.resource_is("RefreshToken")) {
                    StravaError::InvalidRefreshToken
                } else if fault.has(|e| {
                    e.resource_is("AuthorizationCode")
                        || e.resource_is("RequestToken")
                        || (e.field_is("code") && e.code_is("invalid"))
                }) {
                    StravaError::InvalidCode
                } else if fault.has(|e| {
                    e.resource_is("Application")
                        && (e.field_is("client_id") || e.field_is("client_secret"))
                }) {
                    StravaError::InvalidClient
                } else {
                    StravaError::BadRequest {
                        message: fault.summary(status),
                    }
                }
            }
            401 => {
                let fault = Fault::parse(body);
                if fault.has(|e| e.field_is("activity:read_permission") || e.code_is("missing")) {
                    StravaError::MissingScope
                } else {
                    StravaError::Unauthorized
                }
            }
            403 => StravaError::Forbidden,
            404 => StravaError::NotFound,
            429 => StravaError::RateLimited {
                until: Some(
                    rate.and_then(|r| r.blocked_until(now))
                        .unwrap_or_else(|| next_quarter_hour(now)),
                ),
            },
            500..=599 => StravaError::Server { status },
            402 | 405..=428 | 430..=499 => StravaError::BadRequest {
                message: Fault::parse(body).summary(status),
            },
            // Redirects are not followed (a bearer token must not travel elsewhere), so they and
            // any other odd status land here.
            _ => StravaError::UnexpectedBody {
                status,
                detail: "the status is not one Strava's API uses".to_owned(),
            },
        }
    }

    /// A body that did not decode as the expected JSON.
    pub(crate) fn from_json(status: u16, err: &serde_json::Error) -> Self {
        StravaError::UnexpectedBody {
            status,
            detail: json_detail(err),
        }
    }

    /// Replaces any occurrence of the given secrets in the error's text fields, as a last guard
    /// against a server that echoes what it was sent, then bounds their length (after replacing,
    /// so no cut-off piece of a secret survives).
    pub fn scrub(mut self, secrets: &[&str]) -> Self {
        let text = match &mut self {
            StravaError::BadRequest { message } => message,
            StravaError::UnexpectedBody { detail, .. } | StravaError::Network { detail } => detail,
            _ => return self,
        };
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            if text.contains(secret) {
                *text = text.replace(secret, "[redacted]");
            }
        }
        if let Some((cut, _)) = text.char_indices().nth(MAX_TEXT) {
            text.truncate(cut);
            text.push('…');
        }
        self
    }
}

fn until_text(until: &Option<OffsetDateTime>) -> String {
    match until.and_then(|t| t.format(&Rfc3339).ok()) {
        Some(t) => format!(" until {t}"),
        None => String::new(),
    }
}

fn has_timed_out_source(err: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// serde_json's text for type errors quotes the offending value, which could be a token, so
/// only its position is kept then.
fn json_detail(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let quotes_input = err.is_data() && !text.starts_with("missing field");
    if quotes_input {
        format!(
            "JSON of an unexpected shape at line {} column {}",
            err.line(),
            err.column()
        )
    } else {
        text
    }
}

/// Strava's error body `{"message":..,"errors":[{"resource","field","code"}]}`, read leniently.
#[derive(Debug, Default)]
struct Fault {
    message: Option<String>,
    errors: Vec<FaultError>,
}

#[derive(Debug, Default)]
struct FaultError {
    resource: String,
    field: String,
    code: String,
}

impl FaultError {
    fn resource_is(&self, expected: &str) -> bool {
        self.resource.eq_ignore_ascii_case(expected)
    }

    fn field_is(&self, expected: &str) -> bool {
        self.field.eq_ignore_ascii_case(expected)
    }

    fn code_is(&self, expected: &str) -> bool {
        self.code.eq_ignore_ascii_case(expected)
    }
}

/// Longest error text kept, so a misbehaving server cannot flood the logs.
const MAX_TEXT: usize = 300;

fn text_of(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_default()
}

impl Fault {
    /// Anything that is not a Fault (HTML, empty) reads as an empty Fault.
    fn parse(body: &[u8]) -> Self {
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            return Fault::default();
        };
        let message = Some(text_of(object.get("message"))).filter(|m| !m.is_empty());
        let errors = object
            .get("errors")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_object)
                    .map(|e| FaultError {
                        resource: text_of(e.get("resource")),
                        field: text_of(e.get("field")),
                        code: text_of(e.get("code")),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Fault { message, errors }
    }

    fn has(&self, test: impl Fn(&FaultError) -> bool) -> bool {
        self.errors.iter().any(test)
    }

    /// E.g. `HTTP 400 Bad Request (Application after future)`.
    fn summary(&self, status: u16) -> String {
        let mut text = format!("HTTP {status}");
        if let Some(message) = &self.message {
            text.push(' ');
            text.push_str(message);
        }
        let details: Vec<String> = self
            .errors
            .iter()
            .take(5)
            .map(|e| {
                [e.resource.as_str(), e.field.as_str(), e.code.as_str()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|s| !s.is_empty())
            .collect();
        if !details.is_empty() {
            text.push_str(" (");
            text.push_str(&details.join("; "));
            text.push(')');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strava::rate_limit::Budget;
    use time::macros::datetime;

    const BAD_CODE: &str =
        include_str!("../../tests/data/strava/error-400-bad-authorization-code.json");
    const BAD_REFRESH: &str =
        include_str!("../../tests/data/strava/error-400-bad-refresh-token.json");
    const BAD_TOKEN: &str = include_str!("../../tests/data/strava/error-401-invalid-token.json");
    const NO_SCOPE: &str = include_str!("../../tests/data/strava/error-401-missing-scope.json");
    const NOT_FOUND: &str = include_str!("../../tests/data/strava/error-404-not-found.json");
    const LIMITED: &str = include_str!("../../tests/data/strava/error-429.json");
    const GENERIC_500: &str = include_str!("../../tests/data/strava/error-500-generic.json");

    const NOW: OffsetDateTime = datetime!(2025-10-12 18:11:52 UTC);

    fn classify(status: u16, body: &str) -> StravaError {
        StravaError::from_status(status, body.as_bytes(), None, NOW)
    }

    #[test]
    fn classifies_every_error_sample() {
        assert!(matches!(classify(400, BAD_CODE), StravaError::InvalidCode));
        assert!(matches!(
            classify(400, BAD_REFRESH),
            StravaError::InvalidRefreshToken
        ));
        assert!(matches!(
            classify(401, BAD_TOKEN),
            StravaError::Unauthorized
        ));
        assert!(matches!(classify(401, NO_SCOPE), StravaError::MissingScope));
        assert!(matches!(classify(404, NOT_FOUND), StravaError::NotFound));
        assert!(matches!(
            classify(429, LIMITED),
            StravaError::RateLimited { until: Some(t) } if t == datetime!(2025-10-12 18:15 UTC)
        ));
        assert!(matches!(
            classify(500, GENERIC_500),
            StravaError::Server { status: 500 }
        ));
    }

    #[test]
    fn classifies_documented_variants() {
        let legacy_code = BAD_CODE.replace("AuthorizationCode", "RequestToken");
        assert!(matches!(
            classify(400, &legacy_code),
            StravaError::InvalidCode
        ));
        for field in ["client_id", "client_secret"] {
            let body = format!(
                r#"{{"message":"Bad Request","errors":[{{"resource":"Application","field":"{field}","code":"invalid"}}]}}"#
            );
            assert!(matches!(classify(400, &body), StravaError::InvalidClient));
        }
        let app_401 = r#"{"message":"Authorization Error","errors":[{"resource":"Application","field":"","code":"invalid"}]}"#;
        assert!(matches!(classify(401, app_401), StravaError::Unauthorized));
        let future = r#"{"message":"Bad Request","errors":[{"resource":"Application","field":"after","code":"future"}]}"#;
        match classify(400, future) {
            StravaError::BadRequest { message } => {
                assert_eq!(message, "HTTP 400 Bad Request (Application after future)")
            }
            other => panic!("unexpected {other:?}"),
        }
        let inactive = r#"{"message":"Forbidden","errors":[{"resource":"Application","field":"Status","code":"Inactive"}]}"#;
        assert!(matches!(classify(403, inactive), StravaError::Forbidden));
        assert!(matches!(classify(409, ""), StravaError::BadRequest { .. }));
        assert!(matches!(
            classify(302, ""),
            StravaError::UnexpectedBody { status: 302, .. }
        ));
    }

    #[test]
    fn bodies_that_are_not_faults_are_classified_by_status() {
        let html = "<html><body><h1>502 Bad Gateway</h1></body></html>";
        for status in [502, 503, 504] {
            assert!(matches!(
                classify(status, html),
                StravaError::Server { status: s } if s == status
            ));
        }
        assert!(matches!(classify(401, html), StravaError::Unauthorized));
        assert!(matches!(classify(404, ""), StravaError::NotFound));
        assert!(matches!(
            classify(400, r#"{"errors": "nope"}"#),
            StravaError::BadRequest { .. }
        ));
        match classify(400, "[1,2]") {
            StravaError::BadRequest { message } => assert_eq!(message, "HTTP 400"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            classify(429, "<html>slow down</html>"),
            StravaError::RateLimited { until: Some(_) }
        ));
    }

    #[test]
    fn rate_limited_until_uses_the_answers_headers() {
        let daily_out = RateLimitSnapshot {
            overall: None,
            read: Some(Budget {
                short_limit: 100,
                short_usage: 40,
                daily_limit: 1000,
                daily_usage: 1003,
            }),
            observed_at: NOW,
        };
        let err = StravaError::from_status(429, LIMITED.as_bytes(), Some(&daily_out), NOW);
        assert!(matches!(
            err,
            StravaError::RateLimited { until: Some(t) } if t == datetime!(2025-10-13 00:00 UTC)
        ));
        // Headers that do not show exhaustion fall back to the next quarter hour.
        let fine = RateLimitSnapshot {
            read: None,
            ..daily_out
        };
        let err = StravaError::from_status(429, LIMITED.as_bytes(), Some(&fine), NOW);
        assert!(matches!(
            err,
            StravaError::RateLimited { until: Some(t) } if t == datetime!(2025-10-12 18:15 UTC)
        ));
        assert_eq!(
            err.to_string(),
            "Strava's rate limit is exhausted until 2025-10-12T18:15:00Z."
        );
    }

    #[test]
    fn transient_errors() {
        assert!(StravaError::Server { status: 502 }.is_transient());
        assert!(StravaError::Timeout.is_transient());
        assert!(StravaError::Network { detail: "x".into() }.is_transient());
        assert!(StravaError::UnexpectedBody {
            status: 200,
            detail: "x".into()
        }
        .is_transient());
        assert!(!StravaError::InvalidRefreshToken.is_transient());
        assert!(!StravaError::RateLimited { until: None }.is_transient());
        assert!(!StravaError::Unauthorized.is_transient());
    }

    #[test]
    fn json_detail_never_quotes_values() {
        let err =
            serde_json::from_str::<Vec<i64>>(r#"["secret-token-value"]"#).expect_err("wrong type");
        let detail = StravaError::from_json(200, &err).to_string();
        assert!(!detail.contains("secret-token-value"), "{detail}");
        assert!(detail.contains("line 1"), "{detail}");

        #[derive(Debug, serde::Deserialize)]
        struct Needs {
            #[allow(dead_code)]
            access_token: String,
        }
        let err = serde_json::from_str::<Needs>("{}").expect_err("missing");
        let detail = StravaError::from_json(200, &err).to_string();
        assert!(detail.contains("missing field `access_token`"), "{detail}");

        let err = serde_json::from_str::<Needs>("<html>").expect_err("syntax");
        let detail = StravaError::from_json(502, &err).to_string();
        assert!(
            detail.starts_with("Strava answered with status 502"),
            "{detail}"
        );
        assert!(!detail.contains("<html>"), "{detail}");
    }

    #[test]
    fn scrub_replaces_secrets() {
        let err = StravaError::BadRequest {
            message: "HTTP 400 bad value hunter2".into(),
        }
        .scrub(&["hunter2", ""]);
        assert_eq!(
            err.to_string(),
            "Strava rejected the request: HTTP 400 bad value [redacted]."
        );

        let long = format!("{}hunter2", "x".repeat(400));
        let err = StravaError::Network { detail: long }.scrub(&["hunter2"]);
        let StravaError::Network { detail } = err else {
            panic!("variant changed");
        };
        assert_eq!(detail.chars().count(), MAX_TEXT + 1);
        assert!(!detail.contains("hunt"));
    }

    #[test]
    fn every_display_is_one_sentence() {
        let all = [
            StravaError::InvalidRefreshToken,
            StravaError::InvalidCode,
            StravaError::InvalidClient,
            StravaError::BadRequest {
                message: "HTTP 400".into(),
            },
            StravaError::Unauthorized,
            StravaError::MissingScope,
            StravaError::Forbidden,
            StravaError::NotFound,
            StravaError::RateLimited { until: None },
            StravaError::Server { status: 502 },
            StravaError::UnexpectedBody {
                status: 200,
                detail: "expected value at line 1 column 1".into(),
            },
            StravaError::Timeout,
            StravaError::Network {
                detail: "error sending request".into(),
            },
            StravaError::InvalidBaseUrl,
        ];
        for err in all {
            let text = err.to_string();
            assert!(text.ends_with('.'), "{text}");
            assert!(
                text.chars().next().is_some_and(char::is_uppercase),
                "{text}"
            );
            assert!(!text.contains('\n'), "{text}");
        }
    }
}
