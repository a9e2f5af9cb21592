//! A fake of www.strava.com for the tests: a real HTTP server (warp) on `127.0.0.1:<free port>`
//! that speaks the parts of the Strava API v3 the widget backend uses, following the contract in
//! the Strava reference notes (STRAVA.md, §1 OAuth lifecycle and §9 fake-server checklist).
//!
//! What it serves:
//!
//! * `POST /oauth/token` and `POST /api/v3/oauth/token` — parameters from the query string, a
//!   form body or a JSON body. `grant_type=authorization_code` exchanges a single-use code made by
//!   [`FakeStrava::issue_code`]; `grant_type=refresh_token` follows the lifecycle rules: the same
//!   access token comes back while it has more than 3600 s left, otherwise a new one valid for
//!   21600 s is minted (older ones keep working until their own expiry). Refresh-token rotation
//!   is a switch ([`FakeStrava::set_rotate_refresh_tokens`]); once rotated, the old refresh token
//!   is invalid at once. No rate-limit headers on token answers.
//! * `POST /oauth/deauthorize` — revokes every token (like [`FakeStrava::revoke_all`]).
//! * `GET /api/v3/athlete/activities`, `GET /api/v3/activities/{id}`,
//!   `GET /api/v3/activities/{id}/photos`, `GET /api/v3/athletes/{id}/stats`,
//!   `GET /api/v3/athlete` — `Authorization: Bearer <token>` or `?access_token=`; scope checks
//!   (`activity:read` needed for activity endpoints, `activity:read_all` to see Only Me
//!   activities); the four rate-limit headers on every `/api/v3` answer; 429 over the limit.
//!
//! Choices where Strava's behaviour is unconfirmed:
//!
//! * `/athletes/{id}/stats` for an id other than [`ATHLETE_ID`] → 403
//!   `{"message":"Forbidden","errors":[{"resource":"Athlete","field":"id","code":"forbidden"}]}`.
//! * Only Me activity requested with an `activity:read` token → 404 (detail and photos).
//! * Whenever `after` is given the list is oldest first (also with `before`); else newest first.
//!   Bounds are strict (`start_date > after`, `start_date < before`). `after` more than one day in
//!   the future (e.g. a millisecond timestamp) → 400 `after`/`future`. `per_page` above 200 is
//!   clamped to 200; `per_page=0` means the default 30; non-numeric parameters → 400.
//! * A code exchange always mints a new access token (with the scope of the code); the refresh
//!   token stays the same unless rotation is on or there is none (after revocation).
//! * Photos of an activity that is known nowhere (not in the list, no detail, no photos set) → 404.
//! * Counters count requests as they arrive, whatever the answer (faults, 401 and 429 included);
//!   `token_failed` counts every token-endpoint request answered with an error.
//! * Rate-limit usage is incremented for every `/api/v3` request (rejected ones too) before
//!   anything else; headers show the usage including the current request. With the default read
//!   limit of 100 per 15 min the 100th call passes and the 101st gets 429.
//! * Latency is added after the request is processed (state changes such as a rotation happen
//!   even if the client gives up waiting), so a slow answer tells what Strava held when the
//!   request arrived. The list and the detail endpoints can each be given a latency of their own
//!   on top ([`FakeStrava::set_list_latency`], [`FakeStrava::set_detail_latency`]).
//! * A path may start with `/caller/<name>` (a base URL from [`FakeStrava::base_url_for`]): the
//!   rest is served as usual, and the name is kept in the log of reads
//!   ([`FakeStrava::record_reads`]), so a test running several clients knows whose each read was.
//! * Faults: a `fail_next` fault wins over a persistent one; both come before every other check
//!   (auth, 429). `HtmlPage` answers look like a CDN error page and carry no rate-limit headers,
//!   nor do `BareStatus` answers; other API faults do.
//!
//! The server runs on its own thread with its own tokio runtime, so it keeps answering whatever
//! the test's runtime flavour is or whether the test blocks; dropping [`FakeStrava`] stops it
//! (pending requests are cut after a short grace period).

#![allow(dead_code)]

#[path = "fake_strava/push.rs"]
mod push;
pub use push::{Delivery, FakeSubscription};

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use warp::http::{HeaderMap, Method, Response, StatusCode};
use warp::Filter;

pub const CLIENT_ID: &str = "139205";
pub const CLIENT_SECRET: &str = "0d7c3e9a51b24f8e6a1d0c9b7e3f5a2d4c6b8e01";
pub const ATHLETE_ID: i64 = 51877240;

/// Lifetime of a freshly minted access token (s).
const ACCESS_TOKEN_LIFETIME: i64 = 21600;
/// A refresh returns the same access token while it has more than this left (s).
const SAME_TOKEN_THRESHOLD: i64 = 3600;
/// How long a `Fault::Hang` request sleeps before (eventually) answering 504.
const HANG_FOR: Duration = Duration::from_secs(120);
/// Scope of the tokens that exist right after `start()`.
const INITIAL_SCOPE: &str = "read,activity:read";
/// `after` further than this in the future is rejected as `future` (ms timestamps).
const AFTER_FUTURE_SLACK: i64 = 86400;

const JSON_CT: &str = "application/json; charset=utf-8";

const SAMPLE_ACTIVITIES: &str = include_str!("../../data/strava/athlete-activities.json");
const SAMPLE_DETAIL: &str = include_str!("../../data/strava/activity-detail-run.json");
const SAMPLE_PHOTOS: &str = include_str!("../../data/strava/activity-photos.json");
const SAMPLE_STATS: &str = include_str!("../../data/strava/athlete-stats.json");
const SAMPLE_EXCHANGE: &str = include_str!("../../data/strava/token-exchange-response.json");
const ERR_BAD_CODE: &str = include_str!("../../data/strava/error-400-bad-authorization-code.json");
const ERR_BAD_REFRESH: &str = include_str!("../../data/strava/error-400-bad-refresh-token.json");
const ERR_INVALID_TOKEN: &str = include_str!("../../data/strava/error-401-invalid-token.json");
const ERR_MISSING_SCOPE: &str = include_str!("../../data/strava/error-401-missing-scope.json");
const ERR_NOT_FOUND: &str = include_str!("../../data/strava/error-404-not-found.json");
const ERR_500: &str = include_str!("../../data/strava/error-500-generic.json");

/// Which endpoints a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The token endpoints (`/oauth/token`, `/api/v3/oauth/token`, `/oauth/deauthorize`).
    OAuth,
    /// Every other `/api/v3` endpoint.
    Api,
    /// Both.
    All,
}

impl Scope {
    fn matches(self, target: Scope) -> bool {
        self == Scope::All || self == target
    }
}

/// An injected failure.
#[derive(Clone, Debug)]
pub enum Fault {
    /// That status with the JSON body Strava sends for it: 400 bad refresh token (OAuth) or
    /// `{"message":"Bad Request","errors":[]}` (API), 401 invalid token, 403 app inactive,
    /// 404 not found, 429 read rate limit exceeded (API answers carry rate-limit headers
    /// showing the 15-minute read usage over the limit), anything else `{"message":"error"}`.
    Status(u16),
    /// That status with a CloudFront-like HTML error page (`Content-Type: text/html`).
    HtmlPage(u16),
    /// 200 with a body that is not JSON but a JSON content type.
    Garbage,
    /// 200 with a JSON content type and the endpoint's sample body cut off half-way (the
    /// activity list for API calls, a token answer for the token endpoint).
    Truncated,
    /// 200 with a JSON content type and an empty body.
    Empty,
    /// Like `Status`, but without rate-limit headers (a 429 from a proxy, or Strava leaving
    /// them out).
    BareStatus(u16),
    /// Never answers (sleeps 120 s, far longer than any client timeout, then 504).
    Hang,
}

/// Requests received, per endpoint (counted on arrival, whatever the answer).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallCounts {
    /// `grant_type=refresh_token` requests.
    pub token_refresh: u32,
    /// `grant_type=authorization_code` requests.
    pub token_exchange: u32,
    /// Token-endpoint requests answered with an error (any grant type, faults included).
    pub token_failed: u32,
    pub activities: u32,
    pub activity_detail: u32,
    pub photos: u32,
    pub stats: u32,
    pub athlete: u32,
}

impl CallCounts {
    /// All `/api/v3` data calls (activities, detail, photos, stats, athlete).
    pub fn api_total(&self) -> u32 {
        self.activities + self.activity_detail + self.photos + self.stats + self.athlete
    }
}

/// Which activity read a [`Read`] was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// `GET /athlete/activities`.
    List,
    /// `GET /activities/{id}`.
    Detail(i64),
}

/// One list or detail read, as the log of reads keeps it.
#[derive(Clone, Debug)]
pub struct Read {
    /// The `<name>` of a `/caller/<name>` path (empty without one).
    pub caller: String,
    pub kind: ReadKind,
    /// When it arrived: what it answers is Strava's state at this instant.
    pub arrived: std::time::Instant,
    /// When its answer was sent (after any latency); `None` while it waits.
    pub answered: Option<std::time::Instant>,
    /// The answer's status.
    pub status: u16,
    /// A list read without `before`: the first page of a listing (a later page, with
    /// `before`, tells only of activities older than it).
    pub first_page: bool,
}

#[derive(Clone, Debug)]
struct AccessToken {
    token: String,
    expires_at: i64,
    scope: String,
}

#[derive(Clone, Debug)]
struct Code {
    scope: String,
    used: bool,
}

struct State {
    seed: String,
    minted: u64,
    issued: HashSet<String>,
    secrets: Vec<String>,
    /// The only valid refresh token (None after revocation).
    refresh_token: Option<String>,
    /// Last refresh token handed out (what `refresh_token()` returns even after revocation).
    last_refresh_token: String,
    /// Scope of the current grant; refreshed tokens inherit it.
    grant_scope: String,
    /// The current access token.
    current: AccessToken,
    /// Every non-revoked access token (valid while `expires_at > now`).
    access_tokens: HashMap<String, AccessToken>,
    codes: HashMap<String, Code>,
    rotate: bool,
    activities: Vec<Value>,
    details: HashMap<i64, Value>,
    photos: HashMap<i64, Vec<Value>>,
    stats: Value,
    athlete: Value,
    latency: Duration,
    list_latency: Duration,
    detail_latency: Duration,
    /// At most this many activities per list page, whatever `per_page` asks (Strava may answer
    /// a short page before the end of the list).
    page_cap: Option<usize>,
    /// The log of list and detail reads, when a test asked for it.
    reads: Option<Vec<Read>>,
    fault_oauth: Option<Fault>,
    fault_api: Option<Fault>,
    fail_next: VecDeque<(Scope, Fault, u32)>,
    read_limit: (u32, u32),
    overall_limit: (u32, u32),
    read_usage: (u32, u32),
    overall_usage: (u32, u32),
    calls: CallCounts,
    last_activities_query: Option<String>,
    push: push::PushState,
}

/// The fake server. Dropping it stops the server.
pub struct FakeStrava {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn parse_sample(text: &str) -> Value {
    serde_json::from_str(text).expect("sample JSON of the fake Strava server must parse")
}

impl State {
    fn new(seed: String) -> State {
        let exchange = parse_sample(SAMPLE_EXCHANGE);
        let detail = parse_sample(SAMPLE_DETAIL);
        let detail_id = detail["id"].as_i64().unwrap_or(0);
        let photos = match parse_sample(SAMPLE_PHOTOS) {
            Value::Array(list) => list,
            _ => Vec::new(),
        };
        let activities = match parse_sample(SAMPLE_ACTIVITIES) {
            Value::Array(list) => list,
            _ => Vec::new(),
        };
        let mut state = State {
            seed,
            minted: 0,
            issued: HashSet::new(),
            secrets: vec![CLIENT_SECRET.to_string()],
            refresh_token: None,
            last_refresh_token: String::new(),
            grant_scope: INITIAL_SCOPE.to_string(),
            current: AccessToken {
                token: String::new(),
                expires_at: 0,
                scope: String::new(),
            },
            access_tokens: HashMap::new(),
            codes: HashMap::new(),
            rotate: false,
            activities,
            details: HashMap::from([(detail_id, detail)]),
            photos: HashMap::from([(detail_id, photos)]),
            stats: parse_sample(SAMPLE_STATS),
            athlete: exchange["athlete"].clone(),
            latency: Duration::ZERO,
            list_latency: Duration::ZERO,
            detail_latency: Duration::ZERO,
            page_cap: None,
            reads: None,
            fault_oauth: None,
            fault_api: None,
            fail_next: VecDeque::new(),
            read_limit: (100, 1000),
            overall_limit: (200, 2000),
            read_usage: (0, 0),
            overall_usage: (0, 0),
            calls: CallCounts::default(),
            last_activities_query: None,
            push: push::PushState::default(),
        };
        let refresh = state.mint();
        state.set_refresh_token(refresh);
        state.mint_access_token(INITIAL_SCOPE.to_string());
        state
    }

    /// A new unique 40-hex-char secret (token or code), remembered for leak checks.
    fn mint(&mut self) -> String {
        loop {
            self.minted += 1;
            let mut hasher = Sha256::new();
            hasher.update(self.seed.as_bytes());
            hasher.update(self.minted.to_le_bytes());
            let digest = hasher.finalize();
            let token: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            let token = token[..40].to_string();
            if self.issued.insert(token.clone()) {
                self.secrets.push(token.clone());
                return token;
            }
        }
    }

    fn set_refresh_token(&mut self, token: String) {
        self.last_refresh_token = token.clone();
        self.refresh_token = Some(token);
    }

    fn mint_access_token(&mut self, scope: String) {
        let token = AccessToken {
            token: self.mint(),
            expires_at: now() + ACCESS_TOKEN_LIFETIME,
            scope,
        };
        self.access_tokens
            .insert(token.token.clone(), token.clone());
        self.current = token;
    }

    fn set_current_expiry(&mut self, expires_at: i64) {
        self.current.expires_at = expires_at;
        if let Some(token) = self.access_tokens.get_mut(&self.current.token) {
            token.expires_at = expires_at;
        }
    }

    /// Takes the fault that applies to a request of `target` scope, if any.
    fn take_fault(&mut self, target: Scope) -> Option<Fault> {
        if let Some(pos) = self
            .fail_next
            .iter()
            .position(|(scope, _, _)| scope.matches(target))
        {
            let entry = &mut self.fail_next[pos];
            let fault = entry.1.clone();
            entry.2 -= 1;
            if entry.2 == 0 {
                self.fail_next.remove(pos);
            }
            return Some(fault);
        }
        match target {
            Scope::OAuth => self.fault_oauth.clone(),
            _ => self.fault_api.clone(),
        }
    }

    fn rate_limit_headers(&self, read_usage: (u32, u32)) -> Vec<(&'static str, String)> {
        let pair = |p: (u32, u32)| format!("{},{}", p.0, p.1);
        let overall_usage = (
            self.overall_usage.0.max(read_usage.0),
            self.overall_usage.1.max(read_usage.1),
        );
        vec![
            ("X-RateLimit-Limit", pair(self.overall_limit)),
            ("X-RateLimit-Usage", pair(overall_usage)),
            ("X-ReadRateLimit-Limit", pair(self.read_limit)),
            ("X-ReadRateLimit-Usage", pair(read_usage)),
        ]
    }

    fn activity_summary(&self, id: i64) -> Option<&Value> {
        self.activities
            .iter()
            .find(|a| a.get("id").and_then(Value::as_i64) == Some(id))
    }
}

/// What the handler decided, computed under the lock and sent after the latency.
enum Outcome {
    Reply(Reply),
    Hang,
}

struct Reply {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: JSON_CT,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    fn raw_json(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: JSON_CT,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Reply {
        self.headers.extend(headers);
        self
    }

    fn into_response(self) -> Response<String> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut builder = Response::builder()
            .status(status)
            .header("Content-Type", self.content_type);
        for (name, value) in &self.headers {
            builder = builder.header(*name, value.as_str());
        }
        builder.body(self.body).unwrap_or_else(|_| {
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        })
    }
}

fn bad_request(field: &str, code: &str) -> Value {
    json!({"message": "Bad Request", "errors": [{"resource": "Application", "field": field, "code": code}]})
}

fn route_not_found() -> Reply {
    Reply::json(
        404,
        &json!({"message": "Record Not Found", "errors": [{"resource": "resource", "field": "path", "code": "invalid"}]}),
    )
}

fn rate_limit_body(field: &str) -> Value {
    json!({"message": "Rate Limit Exceeded", "errors": [{"resource": "Application", "field": field, "code": "exceeded"}]})
}

fn html_page(status: u16) -> Reply {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = format!(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01 Transitional//EN\" \"http://www.w3.org/TR/html4/loose.dtd\">\n\
<HTML><HEAD><META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; charset=iso-8859-1\">\n\
<TITLE>ERROR: The request could not be satisfied</TITLE>\n\
</HEAD><BODY>\n\
<H1>{status} ERROR</H1>\n\
<H2>The request could not be satisfied.</H2>\n\
<HR noshade size=\"1px\">\n\
{reason}: CloudFront wasn't able to connect to the origin.\n\
<BR clear=\"all\">\n\
<HR noshade size=\"1px\">\n\
<PRE>\n\
Generated by cloudfront (CloudFront)\n\
Request ID: x1Fq3dJ0c9YtB7mKp2WvRs8LhA4nE6uZ_gT5oVQiXyC0bD1eN7fM==\n\
</PRE>\n\
<ADDRESS>\n\
</ADDRESS>\n\
</BODY></HTML>"
    );
    Reply {
        status,
        content_type: "text/html",
        headers: vec![
            ("Server", "CloudFront".to_string()),
            ("X-Cache", "Error from cloudfront".to_string()),
            (
                "Via",
                "1.1 5e8f2a61c0d94b7f3a1e6c2d8b9f0a47.cloudfront.net (CloudFront)".to_string(),
            ),
            ("X-Amz-Cf-Pop", "FRA56-P1".to_string()),
        ],
        body,
    }
}

/// The answer for an injected fault; `None` for `Hang`.
fn fault_reply(fault: &Fault, target: Scope) -> Option<Reply> {
    match fault {
        Fault::Hang => None,
        Fault::HtmlPage(status) => Some(html_page(*status)),
        Fault::Garbage => Some(Reply::raw_json(
            200,
            "<<garbage>> {\"resource_state\":2,\"name\":\"Tiergarten tem",
        )),
        Fault::Truncated => Some(Reply::raw_json(
            200,
            first_half(match target {
                Scope::OAuth => SAMPLE_EXCHANGE,
                _ => SAMPLE_ACTIVITIES,
            }),
        )),
        Fault::Empty => Some(Reply::raw_json(200, "")),
        Fault::Status(status) | Fault::BareStatus(status) => Some(match (*status, target) {
            (400, Scope::OAuth) => Reply::raw_json(400, ERR_BAD_REFRESH),
            (400, _) => Reply::json(400, &json!({"message": "Bad Request", "errors": []})),
            (401, _) => Reply::raw_json(401, ERR_INVALID_TOKEN),
            (403, _) => Reply::json(
                403,
                &json!({"message": "Forbidden", "errors": [{"resource": "Application", "field": "Status", "code": "Inactive"}]}),
            ),
            (404, _) => Reply::raw_json(404, ERR_NOT_FOUND),
            (429, _) => Reply::json(429, &rate_limit_body("read rate limit")),
            (status, _) => Reply::raw_json(status, ERR_500),
        }),
    }
}

/// The first half of `text`, cut at a character boundary.
fn first_half(text: &str) -> &str {
    let mut cut = text.len() / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

fn url_decode(text: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_urlencoded(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(pair), String::new()),
        })
        .collect()
}

/// Token-endpoint parameters from the query string, then a JSON or form body (body wins).
fn request_params(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> HashMap<String, String> {
    let mut params: HashMap<String, String> = HashMap::new();
    if let Some(query) = query {
        params.extend(parse_urlencoded(query));
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let trimmed = String::from_utf8_lossy(body);
    let trimmed = trimmed.trim();
    if trimmed.is_empty() {
        return params;
    }
    if content_type.contains("json") || trimmed.starts_with('{') {
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(trimmed) {
            for (key, value) in map {
                let value = match value {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                params.insert(key, value);
            }
        }
    } else {
        params.extend(parse_urlencoded(trimmed));
    }
    params
}

fn bearer_token(query: &HashMap<String, String>, headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ") {
            return Some(value[7..].trim().to_string());
        }
    }
    query.get("access_token").cloned()
}

fn scope_has(scope: &str, wanted: &str) -> bool {
    scope.split(',').any(|s| s.trim() == wanted)
}

fn can_read_activities(scope: &str) -> bool {
    scope_has(scope, "activity:read") || scope_has(scope, "activity:read_all")
}

fn is_only_me(activity: &Value) -> bool {
    activity.get("visibility").and_then(Value::as_str) == Some("only_me")
        || activity.get("private").and_then(Value::as_bool) == Some(true)
}

fn start_epoch(activity: &Value) -> i64 {
    activity
        .get("start_date")
        .and_then(Value::as_str)
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| t.unix_timestamp())
        .unwrap_or(0)
}

/// `photos` summary of a detail built from the photo list.
fn photos_summary(photos: Option<&Vec<Value>>) -> Value {
    let photos = match photos {
        Some(list) if !list.is_empty() => list,
        _ => return json!({"primary": null, "count": 0}),
    };
    let primary = photos
        .iter()
        .find(|p| p.get("default_photo").and_then(Value::as_bool) == Some(true))
        .unwrap_or(&photos[0]);
    json!({
        "primary": {
            "unique_id": primary.get("unique_id").cloned().unwrap_or(Value::Null),
            "urls": primary.get("urls").cloned().unwrap_or(Value::Null),
            "source": primary.get("source").cloned().unwrap_or(json!(1)),
            "media_type": 1
        },
        "use_primary_photo": true,
        "count": photos.len()
    })
}

fn detail_from_summary(summary: &Value, photos: Option<&Vec<Value>>) -> Value {
    let mut detail = summary.clone();
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("resource_state".into(), json!(3));
        if let Some(map) = obj.get_mut("map").and_then(Value::as_object_mut) {
            if let Some(polyline) = map.get("summary_polyline").cloned() {
                map.entry("polyline").or_insert(polyline);
            }
            map.insert("resource_state".into(), json!(3));
        }
        obj.insert("photos".into(), photos_summary(photos));
    }
    detail
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ApiEndpoint {
    Activities,
    Detail(i64),
    Photos(i64),
    Stats(i64),
    Athlete,
    Unknown,
}

fn api_endpoint(method: &Method, segments: &[&str]) -> ApiEndpoint {
    if method != Method::GET {
        return ApiEndpoint::Unknown;
    }
    match segments {
        ["athlete", "activities"] => ApiEndpoint::Activities,
        ["athlete"] => ApiEndpoint::Athlete,
        ["activities", id] => id
            .parse()
            .map(ApiEndpoint::Detail)
            .unwrap_or(ApiEndpoint::Unknown),
        ["activities", id, "photos"] => id
            .parse()
            .map(ApiEndpoint::Photos)
            .unwrap_or(ApiEndpoint::Unknown),
        ["athletes", id, "stats"] => id
            .parse()
            .map(ApiEndpoint::Stats)
            .unwrap_or(ApiEndpoint::Unknown),
        _ => ApiEndpoint::Unknown,
    }
}

fn handle_token(state: &mut State, params: &HashMap<String, String>) -> Outcome {
    let grant_type = params.get("grant_type").map(String::as_str).unwrap_or("");
    match grant_type {
        "refresh_token" => state.calls.token_refresh += 1,
        "authorization_code" => state.calls.token_exchange += 1,
        _ => {}
    }
    let reply = token_reply(state, params, grant_type);
    match reply {
        Some(reply) => {
            if reply.status >= 400 {
                state.calls.token_failed += 1;
            }
            Outcome::Reply(reply)
        }
        None => {
            state.calls.token_failed += 1;
            Outcome::Hang
        }
    }
}

/// `None` means hang.
fn token_reply(
    state: &mut State,
    params: &HashMap<String, String>,
    grant_type: &str,
) -> Option<Reply> {
    if let Some(fault) = state.take_fault(Scope::OAuth) {
        return fault_reply(&fault, Scope::OAuth);
    }
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or("");
    if param("client_id") != CLIENT_ID {
        return Some(Reply::json(400, &bad_request("client_id", "invalid")));
    }
    if param("client_secret") != CLIENT_SECRET {
        return Some(Reply::json(400, &bad_request("client_secret", "invalid")));
    }
    let now = now();
    let with_athlete = match grant_type {
        "authorization_code" => {
            let code = param("code");
            let scope = match state.codes.get_mut(code) {
                Some(entry) if !entry.used => {
                    entry.used = true;
                    entry.scope.clone()
                }
                _ => return Some(Reply::raw_json(400, ERR_BAD_CODE)),
            };
            state.grant_scope = scope.clone();
            state.mint_access_token(scope);
            if state.rotate || state.refresh_token.is_none() {
                let refresh = state.mint();
                state.set_refresh_token(refresh);
            }
            true
        }
        "refresh_token" => {
            let presented = param("refresh_token");
            if presented.is_empty() || state.refresh_token.as_deref() != Some(presented) {
                return Some(Reply::raw_json(400, ERR_BAD_REFRESH));
            }
            let current_valid = state.access_tokens.contains_key(&state.current.token);
            if !current_valid || state.current.expires_at - now <= SAME_TOKEN_THRESHOLD {
                let scope = state.grant_scope.clone();
                state.mint_access_token(scope);
            }
            if state.rotate {
                let refresh = state.mint();
                state.set_refresh_token(refresh);
            }
            false
        }
        _ => return Some(Reply::json(400, &bad_request("grant_type", "invalid"))),
    };
    let mut body = json!({
        "token_type": "Bearer",
        "access_token": state.current.token,
        "expires_at": state.current.expires_at,
        "expires_in": (state.current.expires_at - now).max(0),
        "refresh_token": state.last_refresh_token,
    });
    if with_athlete {
        body["athlete"] = state.athlete.clone();
    }
    Some(Reply::json(200, &body).with_headers(vec![(
        "Cache-Control",
        "max-age=0, private, must-revalidate".to_string(),
    )]))
}

fn handle_deauthorize(
    state: &mut State,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Outcome {
    if let Some(fault) = state.take_fault(Scope::OAuth) {
        return match fault_reply(&fault, Scope::OAuth) {
            Some(reply) => Outcome::Reply(reply),
            None => Outcome::Hang,
        };
    }
    let token = bearer_token(params, headers).unwrap_or_default();
    let now = now();
    match state.access_tokens.get(&token) {
        Some(t) if t.expires_at > now => {
            state.access_tokens.clear();
            state.refresh_token = None;
            Outcome::Reply(Reply::json(200, &json!({ "access_token": token })))
        }
        _ => Outcome::Reply(Reply::raw_json(401, ERR_INVALID_TOKEN)),
    }
}

fn handle_api(
    state: &mut State,
    endpoint: ApiEndpoint,
    raw_query: Option<&str>,
    headers: &HeaderMap,
) -> Outcome {
    match endpoint {
        ApiEndpoint::Activities => {
            state.calls.activities += 1;
            state.last_activities_query = Some(raw_query.unwrap_or("").to_string());
        }
        ApiEndpoint::Detail(_) => state.calls.activity_detail += 1,
        ApiEndpoint::Photos(_) => state.calls.photos += 1,
        ApiEndpoint::Stats(_) => state.calls.stats += 1,
        ApiEndpoint::Athlete => state.calls.athlete += 1,
        ApiEndpoint::Unknown => {}
    }
    state.read_usage.0 = state.read_usage.0.saturating_add(1);
    state.read_usage.1 = state.read_usage.1.saturating_add(1);
    state.overall_usage.0 = state.overall_usage.0.saturating_add(1);
    state.overall_usage.1 = state.overall_usage.1.saturating_add(1);

    if let Some(fault) = state.take_fault(Scope::Api) {
        return match fault_reply(&fault, Scope::Api) {
            None => Outcome::Hang,
            Some(reply) if matches!(fault, Fault::HtmlPage(_) | Fault::BareStatus(_)) => {
                Outcome::Reply(reply)
            }
            Some(reply) => {
                let mut usage = state.read_usage;
                if matches!(fault, Fault::Status(429)) {
                    usage.0 = usage.0.max(state.read_limit.0.saturating_add(1));
                }
                let headers = state.rate_limit_headers(usage);
                Outcome::Reply(reply.with_headers(headers))
            }
        };
    }
    let rl_headers = state.rate_limit_headers(state.read_usage);
    let reply = api_reply(state, endpoint, raw_query, headers);
    Outcome::Reply(reply.with_headers(rl_headers))
}

fn api_reply(
    state: &mut State,
    endpoint: ApiEndpoint,
    raw_query: Option<&str>,
    headers: &HeaderMap,
) -> Reply {
    if state.read_usage.0 > state.read_limit.0 || state.read_usage.1 > state.read_limit.1 {
        return Reply::json(429, &rate_limit_body("read rate limit"));
    }
    if state.overall_usage.0 > state.overall_limit.0
        || state.overall_usage.1 > state.overall_limit.1
    {
        return Reply::json(429, &rate_limit_body("overall rate limit"));
    }
    let query: HashMap<String, String> = raw_query
        .map(parse_urlencoded)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let now = now();
    let token =
        match bearer_token(&query, headers).and_then(|t| state.access_tokens.get(&t).cloned()) {
            Some(token) if token.expires_at > now => token,
            _ => return Reply::raw_json(401, ERR_INVALID_TOKEN),
        };
    let read_all = scope_has(&token.scope, "activity:read_all");
    let needs_activity_scope = matches!(
        endpoint,
        ApiEndpoint::Activities | ApiEndpoint::Detail(_) | ApiEndpoint::Photos(_)
    );
    if needs_activity_scope && !can_read_activities(&token.scope) {
        return Reply::raw_json(401, ERR_MISSING_SCOPE);
    }
    match endpoint {
        ApiEndpoint::Unknown => route_not_found(),
        ApiEndpoint::Athlete => Reply::json(200, &state.athlete),
        ApiEndpoint::Stats(id) => {
            if id == ATHLETE_ID {
                Reply::json(200, &state.stats)
            } else {
                Reply::json(
                    403,
                    &json!({"message": "Forbidden", "errors": [{"resource": "Athlete", "field": "id", "code": "forbidden"}]}),
                )
            }
        }
        ApiEndpoint::Activities => list_activities(state, &query, read_all, now),
        ApiEndpoint::Detail(id) => {
            let detail = match state.details.get(&id) {
                Some(detail) => Some(detail.clone()),
                None => state
                    .activity_summary(id)
                    .map(|s| detail_from_summary(s, state.photos.get(&id))),
            };
            match detail {
                Some(detail) if read_all || !is_only_me(&detail) => Reply::json(200, &detail),
                _ => Reply::raw_json(404, ERR_NOT_FOUND),
            }
        }
        ApiEndpoint::Photos(id) => {
            let visibility_source = state
                .details
                .get(&id)
                .or_else(|| state.activity_summary(id));
            let known = visibility_source.is_some() || state.photos.contains_key(&id);
            let hidden = visibility_source.map(is_only_me).unwrap_or(false) && !read_all;
            if !known || hidden {
                return Reply::raw_json(404, ERR_NOT_FOUND);
            }
            let photos = state.photos.get(&id).cloned().unwrap_or_default();
            Reply::json(200, &Value::Array(photos))
        }
    }
}

fn list_activities(
    state: &State,
    query: &HashMap<String, String>,
    read_all: bool,
    now: i64,
) -> Reply {
    fn int_param(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, Reply> {
        match query.get(name).map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| Reply::json(400, &bad_request(name, "invalid"))),
        }
    }
    let parsed = (|| {
        Ok::<_, Reply>((
            int_param(query, "per_page")?,
            int_param(query, "page")?,
            int_param(query, "before")?,
            int_param(query, "after")?,
        ))
    })();
    let (per_page, page, before, after) = match parsed {
        Ok(values) => values,
        Err(reply) => return reply,
    };
    if let Some(after) = after {
        if after > now + AFTER_FUTURE_SLACK {
            return Reply::json(400, &bad_request("after", "future"));
        }
    }
    let per_page = match per_page {
        None => 30,
        Some(n) if n <= 0 => 30,
        Some(n) => n.min(200),
    } as usize;
    let per_page = state.page_cap.map_or(per_page, |cap| per_page.min(cap));
    let page = page.unwrap_or(1).max(1) as usize;
    let mut list: Vec<(i64, &Value)> = state
        .activities
        .iter()
        .filter(|a| read_all || !is_only_me(a))
        .map(|a| (start_epoch(a), a))
        .filter(|(t, _)| before.is_none_or(|b| *t < b))
        .filter(|(t, _)| after.is_none_or(|a| *t > a))
        .collect();
    if after.is_some() {
        list.sort_by_key(|(t, _)| *t);
    } else {
        list.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
    }
    let items: Vec<Value> = list
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|(_, a)| a.clone())
        .collect();
    Reply::json(200, &Value::Array(items))
}

async fn handle(
    state: Arc<Mutex<State>>,
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
) -> Response<String> {
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let caller = match segments.as_slice() {
        ["caller", name, ..] => {
            let name = (*name).to_owned();
            segments.drain(..2);
            name
        }
        _ => String::new(),
    };
    if let ["api", "v3", "push_subscriptions", rest @ ..] = segments.as_slice() {
        let params = request_params(query.as_deref(), &headers, &body);
        return push::handle(&state, &method, rest, &params)
            .await
            .into_response();
    }
    let (outcome, latency, logged) = {
        let mut st = lock(&state);
        let mut read = None;
        let outcome = match segments.as_slice() {
            ["oauth", "token"] | ["api", "v3", "oauth", "token"] if method == Method::POST => {
                let params = request_params(query.as_deref(), &headers, &body);
                handle_token(&mut st, &params)
            }
            ["oauth", "deauthorize"] if method == Method::POST => {
                let params = request_params(query.as_deref(), &headers, &body);
                handle_deauthorize(&mut st, &params, &headers)
            }
            ["api", "v3", rest @ ..] => {
                let endpoint = api_endpoint(&method, rest);
                read = match endpoint {
                    ApiEndpoint::Activities => Some(ReadKind::List),
                    ApiEndpoint::Detail(id) => Some(ReadKind::Detail(id)),
                    _ => None,
                };
                handle_api(&mut st, endpoint, query.as_deref(), &headers)
            }
            _ => Outcome::Reply(route_not_found()),
        };
        let latency = st.latency
            + match read {
                Some(ReadKind::List) => st.list_latency,
                Some(ReadKind::Detail(_)) => st.detail_latency,
                None => Duration::ZERO,
            };
        let status = match &outcome {
            Outcome::Reply(reply) => reply.status,
            Outcome::Hang => 504,
        };
        let logged = match (read, st.reads.as_mut()) {
            (Some(kind), Some(reads)) => {
                reads.push(Read {
                    caller,
                    kind,
                    arrived: std::time::Instant::now(),
                    answered: None,
                    status,
                    first_page: !query
                        .as_deref()
                        .is_some_and(|q| q.split('&').any(|p| p.starts_with("before="))),
                });
                Some(reads.len() - 1)
            }
            _ => None,
        };
        (outcome, latency, logged)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(at) = logged {
        if let Some(read) = lock(&state).reads.as_mut().and_then(|r| r.get_mut(at)) {
            read.answered = Some(std::time::Instant::now());
        }
    }
    match outcome {
        Outcome::Reply(reply) => reply.into_response(),
        Outcome::Hang => {
            tokio::time::sleep(HANG_FOR).await;
            html_page(504).into_response()
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking test thread must not poison the fake for the others.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

static INSTANCES: AtomicU64 = AtomicU64::new(0);

impl FakeStrava {
    /// Starts the server on `127.0.0.1:0` with the sample data, one valid refresh token and a
    /// valid access token (scope `read,activity:read`, 6 h left).
    pub async fn start() -> FakeStrava {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .expect("fake Strava: cannot bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("fake Strava: cannot make the listener non-blocking");
        let addr = listener
            .local_addr()
            .expect("fake Strava: no local address");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = format!(
            "fake-strava/{}/{}/{}/{}",
            addr.port(),
            std::process::id(),
            nanos,
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        );
        let state = Arc::new(Mutex::new(State::new(seed)));
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);

        let filter_state = state.clone();
        let routes = warp::method()
            .and(warp::path::full())
            .and(
                warp::query::raw()
                    .map(Some)
                    .or(warp::any().map(|| None))
                    .unify(),
            )
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .and_then(
                move |method: Method,
                      path: warp::path::FullPath,
                      query: Option<String>,
                      headers: HeaderMap,
                      body: warp::hyper::body::Bytes| {
                    let state = filter_state.clone();
                    async move {
                        let path = path.as_str().to_string();
                        Ok::<_, Infallible>(
                            handle(state, method, path, query, headers, body.to_vec()).await,
                        )
                    }
                },
            );

        std::thread::Builder::new()
            .name(format!("fake-strava-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake Strava: cannot build its runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("fake Strava: cannot register the listener");
                    let mut graceful_rx = shutdown_rx.clone();
                    let mut grace_rx = shutdown_rx;
                    let server = warp::serve(routes)
                        .incoming(listener)
                        .graceful(async move {
                            let _ = graceful_rx.wait_for(|stop| *stop).await;
                        })
                        .run();
                    tokio::select! {
                        _ = server => {}
                        _ = async move {
                            let _ = grace_rx.wait_for(|stop| *stop).await;
                            // Give in-flight answers a moment, then cut hanging requests.
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        } => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("fake Strava: cannot spawn its thread");

        FakeStrava {
            addr,
            state,
            shutdown: Some(shutdown_tx),
        }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    // --- push subscriptions ---

    /// The application's push subscription, if `handler subscribe` made one.
    pub fn subscription(&self) -> Option<FakeSubscription> {
        self.st().push.subscription.clone()
    }

    /// Callback validations performed so far.
    pub fn validations(&self) -> u32 {
        self.st().push.validations
    }

    /// A push event of the connected athlete for the current subscription (id 0 if none).
    pub fn event(&self, object_type: &str, object_id: i64, aspect: &str, updates: Value) -> Value {
        let subscription_id = self.subscription().map(|s| s.id).unwrap_or(0);
        json!({
            "aspect_type": aspect,
            "event_time": now(),
            "object_id": object_id,
            "object_type": object_type,
            "owner_id": ATHLETE_ID,
            "subscription_id": subscription_id,
            "updates": updates,
        })
    }

    /// Delivers `event` to the subscription's callback, as Strava does.
    pub async fn deliver_event(&self, event: &Value) -> Delivery {
        let callback = self
            .subscription()
            .map(|s| s.callback_url)
            .expect("a push subscription to deliver to");
        push::deliver(&callback, event).await
    }

    /// The subscription's callback path (its secret segment included) on the instance at
    /// `address` (`http://127.0.0.1:PORT`): where Strava would deliver if that instance served
    /// the registered address.
    pub fn callback_at(&self, address: &str) -> String {
        let registered = self
            .subscription()
            .map(|s| s.callback_url)
            .expect("a push subscription");
        let url = url::Url::parse(&registered).expect("a callback address");
        format!("{address}{}", url.path())
    }

    /// The secret path segment of the subscription's callback (what follows `StravaWebhook/`),
    /// if it has one.
    pub fn callback_secret(&self) -> Option<String> {
        let registered = self.subscription()?.callback_url;
        let url = url::Url::parse(&registered).ok()?;
        let mut segments: Vec<&str> = url.path_segments()?.collect();
        let last = segments.pop()?;
        (segments.last().copied() == Some("StravaWebhook")).then(|| last.to_owned())
    }

    /// Delivers `event` to `callback_url` (a forged sender, or an instance of a test's choice).
    pub async fn deliver_event_to(&self, callback_url: &str, event: &Value) -> Delivery {
        push::deliver(callback_url, event).await
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A base URL whose reads the log of reads names `caller` (letters, digits, `-`, `_`).
    pub fn base_url_for(&self, caller: &str) -> String {
        format!("http://{}/caller/{caller}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    // --- tokens ---

    /// The only currently valid refresh token (after `revoke_all`: the last one issued, now
    /// invalid).
    pub fn refresh_token(&self) -> String {
        self.st().last_refresh_token.clone()
    }

    /// The current access token (the newest one issued).
    pub fn access_token(&self) -> String {
        self.st().current.token.clone()
    }

    pub fn access_token_expires_at(&self) -> i64 {
        self.st().current.expires_at
    }

    /// When on, every successful `/oauth/token` call returns a new refresh token and the old
    /// one is invalid at once.
    pub fn set_rotate_refresh_tokens(&self, on: bool) {
        self.st().rotate = on;
    }

    /// The current access token expires now: API calls with it get 401 and the next refresh
    /// mints a new one.
    pub fn expire_access_token(&self) {
        self.st().set_current_expiry(now());
    }

    /// Sets the expiry (epoch s) of the current access token.
    pub fn set_access_token_expiry(&self, expires_at: i64) {
        self.st().set_current_expiry(expires_at);
    }

    /// A single-use authorization code granting `scope` (e.g. `"read,activity:read"`).
    pub fn issue_code(&self, scope: &str) -> String {
        let mut st = self.st();
        let code = st.mint();
        st.codes.insert(
            code.clone(),
            Code {
                scope: scope.to_string(),
                used: false,
            },
        );
        code
    }

    /// Like `/oauth/deauthorize`: every access and refresh token becomes invalid (unused codes
    /// still work, as a new authorization would).
    pub fn revoke_all(&self) {
        let mut st = self.st();
        st.access_tokens.clear();
        st.refresh_token = None;
    }

    /// `CLIENT_SECRET` and every access token, refresh token and code ever issued.
    pub fn all_secrets(&self) -> Vec<String> {
        self.st().secrets.clone()
    }

    // --- data ---

    /// The athlete's activities (any order; only-me ones are hidden from `activity:read`).
    pub fn set_activities(&self, list: Vec<Value>) {
        self.st().activities = list;
    }

    /// Adds an activity to the list (an upload).
    pub fn add_activity(&self, activity: Value) {
        self.st().activities.push(activity);
    }

    /// Changes the listed activity `id` (a rename, a change of privacy or sport); whether it
    /// was there. Its detail follows, unless one was set with `set_activity_detail`.
    pub fn update_activity(&self, id: i64, change: impl FnOnce(&mut Value)) -> bool {
        let mut st = self.st();
        match st
            .activities
            .iter_mut()
            .find(|a| a.get("id").and_then(Value::as_i64) == Some(id))
        {
            Some(activity) => {
                change(activity);
                true
            }
            None => false,
        }
    }

    /// Removes activity `id` from the list and its detail (a delete).
    pub fn remove_activity(&self, id: i64) {
        let mut st = self.st();
        st.activities
            .retain(|a| a.get("id").and_then(Value::as_i64) != Some(id));
        st.details.remove(&id);
    }

    /// The answer of `GET /activities/{id}` (served even if `id` is not in the list).
    pub fn set_activity_detail(&self, id: i64, detail: Value) {
        self.st().details.insert(id, detail);
    }

    /// The answer of `GET /activities/{id}/photos`.
    pub fn set_photos(&self, id: i64, photos: Vec<Value>) {
        self.st().photos.insert(id, photos);
    }

    pub fn set_stats(&self, stats: Value) {
        self.st().stats = stats;
    }

    // --- faults and limits ---

    /// Added to every answer (after the request has been processed).
    pub fn set_latency(&self, latency: Duration) {
        self.st().latency = latency;
    }

    /// Added to every answer of the activity list, on top of [`FakeStrava::set_latency`]: the
    /// list tells what Strava held when it was asked, and arrives that much later.
    pub fn set_list_latency(&self, latency: Duration) {
        self.st().list_latency = latency;
    }

    /// Likewise for the answers of `GET /activities/{id}`.
    pub fn set_detail_latency(&self, latency: Duration) {
        self.st().detail_latency = latency;
    }

    /// Answers at most `cap` activities per list page (`None`: as many as asked).
    pub fn set_page_cap(&self, cap: Option<usize>) {
        self.st().page_cap = cap;
    }

    /// Starts (or stops, and forgets) the log of list and detail reads.
    pub fn record_reads(&self, on: bool) {
        self.st().reads = on.then(Vec::new);
    }

    /// The log of list and detail reads so far, in order of arrival.
    pub fn reads(&self) -> Vec<Read> {
        self.st().reads.clone().unwrap_or_default()
    }

    /// The activities as the list holds them now.
    pub fn activities(&self) -> Vec<Value> {
        self.st().activities.clone()
    }

    /// Persistent until cleared with `None`. `Scope::All` sets (or clears) both scopes.
    pub fn set_fault(&self, scope: Scope, fault: Option<Fault>) {
        let mut st = self.st();
        if scope.matches(Scope::OAuth) {
            st.fault_oauth = fault.clone();
        }
        if scope.matches(Scope::Api) {
            st.fault_api = fault;
        }
    }

    /// Only the next `times` requests of that scope fail (queued after earlier `fail_next`s;
    /// wins over a persistent fault).
    pub fn fail_next(&self, scope: Scope, fault: Fault, times: u32) {
        if times > 0 {
            self.st().fail_next.push_back((scope, fault, times));
        }
    }

    /// Limits as `(15 min, daily)`; defaults `(100, 1000)` read and `(200, 2000)` overall.
    pub fn set_rate_limit(&self, read_limit: (u32, u32), overall_limit: (u32, u32)) {
        let mut st = self.st();
        st.read_limit = read_limit;
        st.overall_limit = overall_limit;
    }

    /// Sets the current read usage `(15 min, daily)`; the overall usage follows it.
    pub fn set_rate_limit_usage(&self, read_usage: (u32, u32)) {
        let mut st = self.st();
        st.read_usage = read_usage;
        st.overall_usage = read_usage;
    }

    // --- counters ---

    pub fn calls(&self) -> CallCounts {
        self.st().calls
    }

    /// Zeroes the counters and forgets the last activities query.
    pub fn reset_calls(&self) {
        let mut st = self.st();
        st.calls = CallCounts::default();
        st.last_activities_query = None;
    }

    /// Raw query string of the last `GET /athlete/activities` (`Some("")` when it had none).
    pub fn last_activities_query(&self) -> Option<String> {
        self.st().last_activities_query.clone()
    }
}

impl Drop for FakeStrava {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
    }
}
