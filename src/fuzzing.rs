//! One entry point per fuzz target (`fuzz/fuzz_targets/`), shared with the corpus replay test
//! (`tests/fuzz_corpus.rs`), so each target's logic is written once. Each takes any bytes, runs
//! them through the code the app runs on untrusted input, and checks the invariants that are
//! cheap to check. None of them panics by itself: a broken invariant is an `Err` with a
//! sentence, which the fuzz target turns into a crash and the replay test into a failure. A
//! panic inside the app's code is a finding either way.
//!
//! Targets: [`invocation_request`] (the host's envelope), [`forwarded_request`] (the server's
//! routing of method, path, query, headers, `If-None-Match` and body, in-process),
//! [`strava_decoders`] (Strava's JSON answers and error bodies, and the index entries and the
//! answer built from them),
//! [`strava_rate_limit`] (rate-limit headers and a `429`'s body), [`webhook_event`],
//! [`local_settings`] (`local.settings.json` and the settings read from it) and
//! [`pasted_redirect`] (what `handler setup` reads from the owner).

use crate::app::App;
use crate::config::{self, RawSettings, Settings};
use crate::functions::public_http::AnswerHeaders;
use crate::host::{self, HttpReplies, InvocationRequest};
use crate::http::{ApiError, FunctionResponse};
use crate::index::{newest, IndexSettings, SketchZone};
use crate::server::{self, Mode, MAX_BODY_BYTES};
use crate::store::IndexedRun;
use crate::strava::webhook::{Aspect, ObjectType, WebhookEvent};
use crate::strava::{
    AthleteSummary, DetailedActivity, Photo, RateLimitSnapshot, RateLimitTracker, StravaError,
    SummaryActivity, TokenGrant,
};
use crate::view::route_shape::PrivacyZone;
use crate::view::svg::{self, Theme, Units};
use crate::view::{build_from_index, choose_photo_url, LatestRunView};
use bytes::Bytes;
use std::sync::Arc;
use time::OffsetDateTime;
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

/// What one input did to a target: `Err` names the invariant it broke.
pub type Outcome = Result<(), String>;

/// The webhook verify token of [`fuzz_app`]: no answer may carry it unless the request did.
pub const FUZZ_VERIFY_TOKEN: &str = "fuzz-verify-token-0b6f1c";

/// A client secret the Strava targets scrub from error texts.
const FUZZ_CLIENT_SECRET: &str = "fuzz-client-secret-7d2e";

/// A fixed "now" (2025-10-12T18:04:09Z), so a replay gives the same answers.
fn fixed_now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_760_292_249).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn fail(what: impl Into<String>) -> Outcome {
    Err(what.into())
}

/// Whether an error body is the app's shape: a JSON object with `error` and `message` strings.
fn is_error_body(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|json| {
        json.get("error").is_some_and(|v| v.is_string())
            && json.get("message").is_some_and(|v| v.is_string())
    })
}

/// An [`ApiError`]'s response must be a JSON error body with its status.
fn check_api_error(err: &ApiError) -> Outcome {
    let response = err.to_response();
    if response.status != err.status() || !is_error_body(&response.body) {
        return fail(format!("{err:?} does not answer a JSON error body"));
    }
    Ok(())
}

/// The invocation parser: `InvocationRequest::parse`, then `http_request()` and `timer()`, and
/// the one-pass [`host::http_request`], which must give the same request or the same error.
/// Every failure is a `400` with a JSON error body; a request that parses is echoed back as
/// `Outputs.res` (its headers as the reply's), which must serialize as JSON.
pub fn invocation_request(data: &[u8]) -> Outcome {
    let invocation = match InvocationRequest::parse(data) {
        Ok(invocation) => invocation,
        Err(err) => {
            if err.status() != StatusCode::BAD_REQUEST {
                return fail(format!("an unparsable invocation is not a 400: {err:?}"));
            }
            return check_api_error(&err);
        }
    };
    let one_pass = host::http_request(data);
    // With several bindings the two-pass decoder takes whichever its map yields first (each
    // parse may take another), so only an envelope of one binding has a single right answer.
    if invocation.data.len() == 1 {
        let two_pass = invocation.http_request();
        if one_pass != two_pass {
            return fail(format!(
                "the one-pass decoder says {one_pass:?}, the two-pass one {two_pass:?}"
            ));
        }
    }
    match one_pass {
        Ok(request) => {
            let mut response = FunctionResponse::json(StatusCode::OK, &serde_json::json!({}));
            response.headers = request.headers.clone();
            let logs = vec![String::from_utf8_lossy(&request.body).into_owned()];
            let json = host::http_reply(&response, &logs);
            let Ok(reply) = serde_json::from_slice::<serde_json::Value>(&json) else {
                return fail("the reply is not JSON");
            };
            // A reply that failed to serialize is rendered as `{}`.
            if reply["Outputs"]["res"].is_null() {
                return fail("the reply does not serialize");
            }
        }
        Err(err) => check_api_error(&err)?,
    }
    match invocation.timer() {
        Ok(timer) => {
            let _ = timer.is_first_run();
        }
        Err(err) => check_api_error(&err)?,
    }
    Ok(())
}

/// The app [`forwarded_request`] routes to: every setting valid, the webhook configured with
/// [`FUZZ_VERIFY_TOKEN`], and a storage address that cannot even be parsed, so every storage
/// call fails at once without touching the network (and Strava is never called: there are no
/// credentials to call it with). The answers that need storage are its errors; the fault
/// injection tests cover real outages.
pub fn fuzz_app() -> Result<Arc<App>, String> {
    let raw = RawSettings::from_pairs([
        (
            "AzureWebJobsStorage",
            "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://[",
        ),
        ("STRAVA_BASE_URL", "http://127.0.0.1:9"),
        ("STRAVA_WEBHOOK_VERIFY_TOKEN", FUZZ_VERIFY_TOKEN),
        ("WIDGET_ROUTE_SHAPE", "true"),
    ]);
    let settings = Settings::from_raw(&raw).map_err(|err| err.to_string())?;
    App::new(settings)
        .map(Arc::new)
        .map_err(|err| err.to_string())
}

/// A forwarded request, written as text: the first line `METHOD TARGET` (a target alone means
/// `GET`), then `Name: value` header lines (repeats allowed), a blank line and the body. Inputs
/// that hyper would refuse before the app (a bad method, target, header name or value) are
/// skipped, as it does; a body over the cap is refused as the server refuses it. The request
/// goes through [`server::route`] in host mode, so the invocation routes are fuzzed too.
///
/// Invariants: a `304` has no body; every error status carries a JSON error body (the reply to
/// a failed timer invocation carries its `Logs` instead), in the raw answer and in an
/// invocation's `Outputs.res`; no answer carries the verify token unless the request did.
/// Runs in the caller's tokio runtime (the fuzz target and the replay test pause its clock, so
/// the app's waits for storage cost no wall time).
pub async fn forwarded_request(app: &App, data: &[u8]) -> Outcome {
    let Some(request) = ForwardedRequest::parse(data) else {
        return Ok(());
    };
    let body = if request.body.len() > MAX_BODY_BYTES {
        Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES))
    } else {
        Ok(request.body)
    };
    let raw = server::RawRequest {
        method: request.method,
        path: request.uri.path(),
        // Decoded as warp's query filter decodes it (form_urlencoded, invalid UTF-8 replaced).
        query: url::form_urlencoded::parse(request.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        headers: request.headers,
        body,
    };
    let answer_headers = AnswerHeaders::of(app);
    let response = server::route(
        app,
        &HttpReplies::default(),
        &answer_headers,
        Mode::Host,
        raw,
    )
    .await;
    let status = response.status();
    let content_type = response
        .headers()
        .get(warp::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.body();
    if status == StatusCode::NOT_MODIFIED && !body.is_empty() {
        return fail("a 304 has a body");
    }
    let request_has_token = contains(data, FUZZ_VERIFY_TOKEN.as_bytes());
    if !request_has_token {
        let in_headers = response
            .headers()
            .values()
            .any(|v| contains(v.as_bytes(), FUZZ_VERIFY_TOKEN.as_bytes()));
        if in_headers || contains(body, FUZZ_VERIFY_TOKEN.as_bytes()) {
            return fail("an answer carries the verify token");
        }
    }
    // The host's invocation replies are exactly `application/json`; the app's own answers say
    // their charset.
    let invocation_reply = content_type == "application/json";
    if invocation_reply {
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|err| format!("an invocation reply is not JSON: {err}"))?;
        if let Some(res) = json.pointer("/Outputs/res") {
            let inner_status = res.get("statusCode").and_then(|v| v.as_u64()).unwrap_or(0);
            let inner_body = res.get("body").and_then(|v| v.as_str()).unwrap_or("");
            if inner_status >= 400 && !is_error_body(inner_body.as_bytes()) {
                return fail(format!("Outputs.res {inner_status} has no JSON error body"));
            }
        } else if (status.is_client_error() || status.is_server_error())
            && !json.get("Logs").is_some_and(|v| v.is_array())
        {
            return fail(format!("an invocation reply {status} has no Logs"));
        }
    } else if (status.is_client_error() || status.is_server_error()) && !is_error_body(body) {
        return fail(format!("a {status} has no JSON error body"));
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A request taken from the text form of [`forwarded_request`].
struct ForwardedRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl ForwardedRequest {
    fn parse(data: &[u8]) -> Option<Self> {
        let (head, body) = match find(data, b"\n\n") {
            Some(at) => (&data[..at], &data[at + 2..]),
            None => (data, &[][..]),
        };
        let head = std::str::from_utf8(head).ok()?;
        let mut lines = head.lines();
        let first = lines.next()?.trim_end_matches('\r');
        let (method, target) = match first.split_once(' ') {
            Some((method, target)) => (Method::from_bytes(method.as_bytes()).ok()?, target),
            None => (Method::GET, first),
        };
        let uri: Uri = target.parse().ok()?;
        let mut headers = HeaderMap::new();
        for line in lines {
            let (name, value) = line.trim_end_matches('\r').split_once(':')?;
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            let value = HeaderValue::from_str(value.trim_matches([' ', '\t'])).ok()?;
            headers.append(name, value);
        }
        Some(ForwardedRequest {
            method,
            uri,
            headers,
            body: Bytes::copy_from_slice(body),
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Strava's JSON answers, each decoded as the client decodes it: the activity list (then each
/// activity's index entry, with its route sketch, the newest entry, the answer built from it as
/// the index keeper builds it, and the SVG cards), the detail (then its summary's entry
/// with the chosen photo, and the answer built from it), the photo list, the athlete, the token
/// answer, and the body as every error status's body.
///
/// Invariants: an entry is made only of a public activity of a configured sport type with a
/// start, and says that start and sport type; the answer re-reads as itself from its JSON, has no
/// map, coordinate or token key, and none of its texts (nor its card, which is an SVG) holds a
/// polyline Strava sent; a chosen photo is an http(s) URL; a token answer has both tokens; an
/// error text never carries a secret after scrubbing.
pub fn strava_decoders(data: &[u8]) -> Outcome {
    let settings = IndexSettings {
        sport_types: ["Run", "TrailRun", "VirtualRun"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        route_shape: Some(SketchZone::known(PrivacyZone::new(500.0, b"fuzzing"))),
    };
    if let Ok(activities) = serde_json::from_slice::<Vec<SummaryActivity>>(data) {
        let mut entries = Vec::new();
        for activity in &activities {
            if let Some(entry) = settings.entry_of(activity, None) {
                check_entry(activity, &entry, &settings.sport_types)?;
                entries.push(entry);
            }
        }
        let polylines = polylines_of(activities.iter());
        if let Some(latest) = newest(&entries) {
            let run = answer_of(latest, entries.iter().map(|r| r.distance).sum());
            check_view(&run, &polylines)?;
            for theme in [Theme::Auto, Theme::Light, Theme::Dark] {
                for units in [Units::Metric, Units::Imperial] {
                    let card = svg::render(&run, theme, units);
                    if !card.starts_with("<svg") {
                        return fail("the card is not an SVG");
                    }
                    if polylines.iter().any(|p| card.contains(p)) {
                        return fail("the card carries a polyline");
                    }
                }
            }
        }
    }
    if let Ok(detail) = serde_json::from_slice::<DetailedActivity>(data) {
        let photo = choose_photo_url(Some(&detail), &[]);
        check_photo(photo.clone())?;
        if let Some(mut entry) = settings.entry_of(&detail.summary, None) {
            check_entry(&detail.summary, &entry, &settings.sport_types)?;
            entry.photo_url = photo;
            entry.photo_checked = true;
            let polylines = polylines_of([&detail.summary].into_iter());
            check_view(&answer_of(&entry, entry.distance), &polylines)?;
        }
    }
    if let Ok(photos) = serde_json::from_slice::<Vec<Photo>>(data) {
        check_photo(choose_photo_url(None, &photos))?;
    }
    let _ = serde_json::from_slice::<AthleteSummary>(data);
    match TokenGrant::from_body(200, data) {
        Ok(grant) => {
            if grant.access_token.expose().is_empty() || grant.refresh_token.expose().is_empty() {
                return fail("a token answer with an empty token was accepted");
            }
        }
        Err(err) => check_strava_error(err)?,
    }
    for status in [400, 401, 403, 404, 409, 418, 422, 429, 302] {
        check_strava_error(StravaError::from_status(status, data, None, fixed_now()))?;
    }
    Ok(())
}

/// The answer for `latest` as the index keeper builds it with the route sketch enabled.
fn answer_of(latest: &IndexedRun, year_distance: f64) -> LatestRunView {
    LatestRunView {
        route_shape: Some(latest.route_shape.clone()),
        ..build_from_index(latest, year_distance, fixed_now())
    }
}

/// An entry is made only of a public activity of one of `sport_types` (by `sport_type`, else
/// `type`) with a start, and says that sport type and start.
fn check_entry(activity: &SummaryActivity, entry: &IndexedRun, sport_types: &[String]) -> Outcome {
    let sport = activity
        .sport_type
        .as_deref()
        .or(activity.activity_type.as_deref());
    if !activity.is_public() || !sport.is_some_and(|s| sport_types.iter().any(|t| t == s)) {
        return fail(format!(
            "indexed a non-public or non-run activity: {activity:?}"
        ));
    }
    if activity.start_date.map(|s| s.unix_timestamp()) != Some(entry.start) {
        return fail("indexed an activity without its start date");
    }
    if sport != Some(entry.sport_type.as_str()) {
        return fail(format!("indexed {sport:?} as {}", entry.sport_type));
    }
    Ok(())
}

/// The polylines of `activities` long enough not to occur in an answer by chance.
fn polylines_of<'a>(activities: impl Iterator<Item = &'a SummaryActivity>) -> Vec<&'a str> {
    activities
        .filter_map(|a| a.summary_polyline.as_deref())
        .filter(|p| p.len() >= 8)
        .collect()
}

/// The view re-reads as itself and carries none of Strava's map, coordinates or tokens, nor any
/// of `polylines`.
fn check_view(run: &LatestRunView, polylines: &[&str]) -> Outcome {
    let body = serde_json::to_vec(run).map_err(|err| format!("the view does not encode: {err}"))?;
    let again: LatestRunView =
        serde_json::from_slice(&body).map_err(|err| format!("the view does not re-read: {err}"))?;
    if &again != run {
        return fail("the view does not re-read as itself");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|err| format!("the view is not JSON: {err}"))?;
    let Some(object) = json.as_object() else {
        return fail("the view is not an object");
    };
    for key in object.keys() {
        if [
            "map",
            "summary_polyline",
            "polyline",
            "start_latlng",
            "end_latlng",
            "access_token",
            "refresh_token",
        ]
        .contains(&key.as_str())
        {
            return fail(format!("the view carries {key}"));
        }
    }
    let mut texts = object.values().filter_map(|v| v.as_str());
    if texts.any(|text| polylines.iter().any(|p| text.contains(p))) {
        return fail("the view carries a polyline");
    }
    Ok(())
}

fn check_photo(url: Option<String>) -> Outcome {
    match url {
        Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
            fail(format!("a photo URL that is not http(s): {url}"))
        }
        Some(url) if crate::strava::is_placeholder_url(&url) => {
            fail(format!("a placeholder photo was chosen: {url}"))
        }
        _ => Ok(()),
    }
}

/// An error's text, scrubbed as the client scrubs it, never carries the secret.
fn check_strava_error(err: StravaError) -> Outcome {
    let _ = err.is_transient();
    let text = err.scrub(&[FUZZ_CLIENT_SECRET]).to_string();
    if text.contains(FUZZ_CLIENT_SECRET) {
        return fail("a scrubbed error still carries the secret");
    }
    Ok(())
}

/// Rate-limit headers and a `429`: `Name: value` lines, a blank line, then the body. The
/// snapshot is read as the client reads it (directly and through the tracker, which must agree),
/// then asked when requests may resume at several moments, and the `429` is classified with it.
///
/// Invariants: a snapshot survives its JSON form (it is stored in the table); a blocked window
/// never reopens in the past or more than a day ahead; a `429` always says until when.
pub fn strava_rate_limit(data: &[u8]) -> Outcome {
    let (head, body) = match find(data, b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut headers = HeaderMap::new();
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.trim_end_matches('\r').split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    let now = fixed_now();
    let snapshot = RateLimitSnapshot::from_headers(&headers, now);
    let tracker = RateLimitTracker::new();
    if tracker.record(&headers, now) != snapshot {
        return fail("the tracker and the parser disagree");
    }
    if let Some(snapshot) = &snapshot {
        let json = serde_json::to_string(snapshot)
            .map_err(|err| format!("a snapshot does not encode: {err}"))?;
        let again: RateLimitSnapshot = serde_json::from_str(&json)
            .map_err(|err| format!("a snapshot does not re-read: {err}"))?;
        if &again != snapshot {
            return fail("a snapshot does not re-read as itself");
        }
        let _ = (snapshot.remaining_short(), snapshot.remaining_daily());
        for later in [0, 1, 899, 900, 3600, 86_399, 86_400, 172_800] {
            let at = now + time::Duration::seconds(later);
            if let Some(until) = snapshot.blocked_until(at) {
                if until < at || until > at + time::Duration::days(1) {
                    return fail(format!("blocked until {until} at {at}"));
                }
            }
        }
    }
    match StravaError::from_status(429, body, snapshot.as_ref(), now) {
        StravaError::RateLimited { until: Some(until) } if until >= now => Ok(()),
        other => fail(format!(
            "a 429 is not rate limited with a future end: {other:?}"
        )),
    }
}

/// A webhook body: `WebhookEvent::parse`. An event re-serialises to a body that parses as the
/// same event; a refusal is one of the two fixed sentences (it never echoes the body).
pub fn webhook_event(data: &[u8]) -> Outcome {
    match WebhookEvent::parse(data) {
        Ok(event) => {
            let body = serde_json::to_vec(&event_json(&event))
                .map_err(|err| format!("an event does not encode: {err}"))?;
            let again = WebhookEvent::parse(&body)
                .map_err(|err| format!("a re-serialised event is refused: {err}"))?;
            if again != event {
                return fail(format!("{event:?} re-reads as {again:?}"));
            }
            let _ = event.is_deauthorization();
            Ok(())
        }
        Err(message) if message.starts_with("The body is not a Strava push event (") => Ok(()),
        Err(message) => fail(format!("an unexpected refusal: {message}")),
    }
}

/// An event in Strava's wire form.
fn event_json(event: &WebhookEvent) -> serde_json::Value {
    let object_type = match &event.object_type {
        ObjectType::Activity => "activity",
        ObjectType::Athlete => "athlete",
        ObjectType::Other(other) => other,
    };
    let aspect = match &event.aspect {
        Aspect::Create => "create",
        Aspect::Update => "update",
        Aspect::Delete => "delete",
        Aspect::Other(other) => other,
    };
    let updates: serde_json::Map<String, serde_json::Value> = event
        .updates
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "object_type": object_type,
        "object_id": event.object_id,
        "aspect_type": aspect,
        "owner_id": event.owner_id,
        "subscription_id": event.subscription_id,
        "event_time": event.event_time,
        "updates": updates,
    })
}

/// A `local.settings.json`: its `Values` read as the app reads them, then validated as settings.
/// A problem names its setting; valid settings build the app without any I/O.
pub fn local_settings(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let values = match config::parse_local_settings(text) {
        Ok(values) => values,
        Err(err) => return check_config_error(&err),
    };
    match Settings::from_raw(&RawSettings::from_pairs(values)) {
        Ok(settings) => {
            if !(1..=config::MAX_CACHE_SECONDS).contains(&settings.cache_seconds) {
                return fail("cache seconds out of bounds");
            }
            // Valid settings must build the app (still without I/O).
            App::new(settings).map_err(|err| format!("valid settings do not build: {err}"))?;
            Ok(())
        }
        Err(err) => check_config_error(&err),
    }
}

fn check_config_error(err: &config::ConfigError) -> Outcome {
    let line = err.to_string();
    if !line.starts_with(&format!("setting {}: ", err.name)) {
        return fail(format!(
            "a settings error does not name its setting: {line:?}"
        ));
    }
    Ok(())
}

/// What the owner pastes to `handler setup`: the redirect address, its query or the bare code.
/// A code found is non-empty and carries no surrounding whitespace.
pub fn pasted_redirect(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    match crate::cli::setup::parse_pasted(text) {
        Ok(pasted) if pasted.code.is_empty() => fail("an empty code was accepted"),
        Ok(pasted) if pasted.code.trim() != pasted.code && !text.contains('=') => {
            fail(format!("a bare code with whitespace: {:?}", pasted.code))
        }
        Ok(_) => Ok(()),
        Err(err) => {
            let _ = err.to_string();
            Ok(())
        }
    }
}
