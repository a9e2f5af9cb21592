//! What every answer does alike, whichever way the request came (forwarded by the host, the
//! host's invocation form, or standalone): JSON answers and JSON errors carry
//! `X-Content-Type-Options: nosniff`, and a query parameter named twice means the same in both
//! request forms (its first value).

use crate::support;

use serde_json::{json, Map, Value};
use support::app::{fixture, TestApp, TestSettings};
use support::credentials::connected;
use support::fake_strava::FakeStrava;
use support::json;

/// An answer as the client gets it: status, the headers it checks, and the body.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u64,
    content_type: String,
    nosniff: Option<String>,
    body: String,
}

/// A forwarded request (or a standalone one) as the client sees its answer.
async fn forwarded(app: &TestApp, method: reqwest::Method, path_and_query: &str) -> Seen {
    let response = app
        .client
        .request(method, format!("{}{path_and_query}", app.address))
        .send()
        .await
        .expect("request");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, content_type, nosniff) = (
        u64::from(response.status().as_u16()),
        header("content-type").unwrap_or_default(),
        header("x-content-type-options"),
    );
    Seen {
        status,
        content_type,
        nosniff,
        body: response.text().await.expect("body"),
    }
}

/// An invocation as the client behind the host sees its answer: `Outputs.res`.
async fn invoked(app: &TestApp, function: &str, envelope: String) -> Seen {
    let response = app.invoke(function, envelope).await;
    assert_eq!(response.status(), 200, "an answered invocation");
    let envelope = json(&response.bytes().await.expect("body"));
    let res = &envelope["Outputs"]["res"];
    let header = |name: &str| res["headers"][name].as_str().map(str::to_owned);
    Seen {
        status: res["statusCode"].as_u64().expect("a status"),
        content_type: header("Content-Type").unwrap_or_default(),
        nosniff: header("X-Content-Type-Options"),
        body: res["body"].as_str().expect("a body").to_owned(),
    }
}

/// The host's envelope for `GET /api/{function}?{query}`: the URL as the client sent it, and
/// `Query` as the host builds it (each name once, ignoring case, its values joined with commas).
fn host_envelope(function: &str, query: &str) -> String {
    let mut names: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match names
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some((_, values)) => values.push(value.into_owned()),
            None => names.push((name.into_owned(), vec![value.into_owned()])),
        }
    }
    let host_query: Map<String, Value> = names
        .into_iter()
        .map(|(name, values)| (name, Value::String(values.join(","))))
        .collect();
    let url = match query {
        "" => format!("http://localhost:7071/api/{function}"),
        query => format!("http://localhost:7071/api/{function}?{query}"),
    };
    json!({
        "Data": {"req": {
            "Url": url,
            "Method": "GET",
            "Query": host_query,
            "Headers": {"Accept": ["*/*"], "Host": ["localhost:7071"]},
            "Params": {},
        }},
        "Metadata": {},
    })
    .to_string()
}

/// An app with Strava connected, in host mode or standalone.
async fn connected_app(strava: &FakeStrava, standalone: bool) -> TestApp {
    let settings = TestSettings::new(&strava.base_url());
    settings
        .store()
        .replace_credentials(&connected(strava))
        .await
        .expect("arrange credentials");
    if standalone {
        TestApp::spawn_standalone(settings).await
    } else {
        TestApp::spawn(settings).await
    }
}

/// Fails naming the answer unless it is JSON with `nosniff`.
fn assert_json_nosniff(what: &str, seen: &Seen) {
    assert!(
        seen.content_type.starts_with("application/json"),
        "{what} is JSON: {seen:?}"
    );
    assert_eq!(seen.nosniff.as_deref(), Some("nosniff"), "{what}: {seen:?}");
}

#[tokio::test]
async fn json_answers_and_errors_say_nosniff_in_every_form() {
    let strava = FakeStrava::start().await;
    for standalone in [false, true] {
        let app = connected_app(&strava, standalone).await;
        let mode = if standalone { "standalone" } else { "host" };
        for (method, path) in [
            (reqwest::Method::GET, "/"),
            (reqwest::Method::GET, "/api/GetLatestRun"),
            (reqwest::Method::GET, "/api/GetLatestRun?format=xml"),
            (reqwest::Method::GET, "/api/GetRunningYear"),
            (reqwest::Method::GET, "/api/GetRunningYear?year=1999"),
            (reqwest::Method::GET, "/api/StravaWebhook"),
            (reqwest::Method::POST, "/api/GetLatestRun"),
            (reqwest::Method::GET, "/api/NoSuchFunction"),
            (reqwest::Method::POST, "/GetLatestRun"),
        ] {
            let seen = forwarded(&app, method.clone(), path).await;
            assert_json_nosniff(&format!("{mode}: {method} {path}"), &seen);
        }
    }

    let app = connected_app(&strava, false).await;
    for (function, query) in [
        ("GetLatestRun", ""),
        ("GetLatestRun", "format=xml"),
        ("GetRunningYear", ""),
        ("GetRunningYear", "year=1999"),
        ("StravaWebhook", ""),
    ] {
        let seen = invoked(&app, function, host_envelope(function, query)).await;
        assert_json_nosniff(&format!("invocation: {function}?{query}"), &seen);
    }
    let seen = invoked(
        &app,
        "GetLatestRun",
        fixture("http-invocation-request.json"),
    )
    .await;
    assert_json_nosniff("invocation: the host's fixture", &seen);
    // The invocation route's own errors: a malformed envelope, a wrong method, no such function.
    for (method, path, body) in [
        (reqwest::Method::POST, "/GetLatestRun", "{not json"),
        (reqwest::Method::GET, "/GetLatestRun", ""),
        (reqwest::Method::POST, "/NoSuchFunction", "{}"),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .body(body)
            .send()
            .await
            .expect("request");
        assert!(response.status().is_client_error(), "{method} {path}");
        assert_eq!(
            response.headers().get("x-content-type-options"),
            Some(&reqwest::header::HeaderValue::from_static("nosniff")),
            "{method} {path}: {:?}",
            response.headers()
        );
    }
}

#[tokio::test]
async fn a_query_parameter_named_twice_takes_its_first_value_in_both_forms() {
    let strava = FakeStrava::start().await;
    let app = connected_app(&strava, false).await;
    for query in [
        "format=svg&format=json",
        "format=json&format=svg",
        "format=svg&theme=dark&theme=light",
        "format=svg&units=imperial&units=metric",
        "format=svg&theme=dark&theme=purple",
        "format=svg&theme=purple&theme=dark",
        "format=svg&units=metric&Units=imperial",
    ] {
        let by_host = forwarded(
            &app,
            reqwest::Method::GET,
            &format!("/api/GetLatestRun?{query}"),
        )
        .await;
        let by_invocation =
            invoked(&app, "GetLatestRun", host_envelope("GetLatestRun", query)).await;
        assert_eq!(by_host, by_invocation, "{query}");
    }
    // The first value is the one taken.
    let svg = forwarded(
        &app,
        reqwest::Method::GET,
        "/api/GetLatestRun?format=svg&format=json&theme=dark&theme=light&units=imperial&units=metric",
    )
    .await;
    assert_eq!(svg.status, 200);
    assert_eq!(svg.content_type, "image/svg+xml");
    assert!(svg.body.contains(".bg{fill:#17191e") && !svg.body.contains("#fff"));
    assert!(svg.body.contains(" mi"), "{}", svg.body);
    let bad = forwarded(
        &app,
        reqwest::Method::GET,
        "/api/GetLatestRun?format=svg&theme=purple&theme=dark",
    )
    .await;
    assert_eq!(bad.status, 400, "{bad:?}");
}
