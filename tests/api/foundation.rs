//! The function app's skeleton against real Azurite over real sockets: both request forms, the
//! not-configured answer, ETag conflicts, malformed input, the binary's start and stop, and the
//! config files against the official schemas.

use crate::support;

use serde_json::Value;
use std::time::Duration;
use strava_latest_run::secret::Secret;
use strava_latest_run::store::{Credentials, StoreError};
use support::app::{fixture, invoke_at, HandlerProcess, TestApp, TestSettings};
use support::credentials::connected;
use support::fake_strava::FakeStrava;
use support::json;

/// A Strava origin nothing listens on: these tests never reach Strava.
const NO_STRAVA: &str = "http://127.0.0.1:9";

#[tokio::test]
async fn readiness_answers_without_storage() {
    // Storage points at a closed port: GET / must not depend on it.
    let settings = TestSettings::new(NO_STRAVA).with(
        "AzureWebJobsStorage",
        support::azurite::connection_string_for_port(support::azurite::free_port()),
    );
    let app = TestApp::spawn(settings).await;
    let response = app.get("/").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        json(&response.bytes().await.expect("body"))["status"],
        "ready"
    );
}

#[tokio::test]
async fn not_configured_is_the_same_503_in_both_forms() {
    let app = TestApp::spawn(TestSettings::new(NO_STRAVA)).await;

    let forwarded = app.get("/api/GetLatestRun").await;
    assert_eq!(forwarded.status(), 503);
    assert!(forwarded.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("application/json"));
    let forwarded_body = forwarded.bytes().await.expect("body");
    let error = json(&forwarded_body);
    assert_eq!(error["error"], "not_configured");
    assert!(error["message"]
        .as_str()
        .expect("message")
        .contains("handler setup"));

    let invoked = app
        .invoke("GetLatestRun", fixture("http-invocation-request.json"))
        .await;
    assert_eq!(invoked.status(), 200, "an answered invocation is HTTP 200");
    assert_eq!(invoked.headers()["content-type"], "application/json");
    let envelope = json(&invoked.bytes().await.expect("body"));
    let res = &envelope["Outputs"]["res"];
    assert_eq!(res["statusCode"], 503);
    assert_eq!(
        res["body"].as_str().expect("body is a string").as_bytes(),
        &forwarded_body[..],
        "both forms run the same code"
    );
    assert!(res["headers"]["Content-Type"]
        .as_str()
        .expect("string header")
        .starts_with("application/json"));
    assert!(envelope["Logs"].is_array());
    assert!(envelope["ReturnValue"].is_null());
}

#[tokio::test]
async fn function_names_are_case_insensitive_on_public_routes() {
    let app = TestApp::spawn(TestSettings::new(NO_STRAVA)).await;
    // The host's routing ignores case in the whole route, the `api` prefix included.
    for path in [
        "/api/getlatestrun",
        "/API/GetLatestRun",
        "/Api/getlatestrun",
        "/aPI/GETLATESTRUN?format=json",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 503, "{path}");
        assert_eq!(
            json(&response.bytes().await.expect("body"))["error"],
            "not_configured",
            "{path}"
        );
    }
    // Only the prefix and the name ignore case: anything else is still unknown.
    for path in [
        "/apix/GetLatestRun",
        "/ap/GetLatestRun",
        "/API/GetLatestRunX",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            json(&response.bytes().await.expect("body"))["error"],
            "not_found",
            "{path}"
        );
    }
}

/// Credentials as `handler setup` leaves them, pointing at the fake's current tokens.
async fn store_credentials_for(settings: &TestSettings, strava: &FakeStrava) {
    settings
        .store()
        .replace_credentials(&connected(strava))
        .await
        .expect("arrange credentials");
}

#[tokio::test]
async fn standalone_has_no_invocation_routes_but_serves_the_public_ones() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url());
    store_credentials_for(&settings, &strava).await;
    let mut handler = HandlerProcess::spawn_standalone(&settings).await;
    handler.wait_ready().await;
    let client = reqwest::Client::new();

    // Anyone who reaches a standalone server must not be able to run the timer (each run is a
    // call to Strava's token endpoint and two storage writes): `POST /{Function}` is unknown.
    for function in [
        "RefreshToken",
        "refreshtoken",
        "GetLatestRun",
        "NoSuchFunction",
    ] {
        let response = invoke_at(
            &client,
            &handler.address,
            function,
            fixture("timer-invocation-request.json"),
        )
        .await;
        assert_eq!(response.status(), 404, "POST /{function}");
        assert!(response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/json"));
        let error = json(&response.bytes().await.expect("body"));
        assert_eq!(error["error"], "not_found", "POST /{function}");
    }
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let response = client
            .request(method.clone(), format!("{}/RefreshToken", handler.address))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 404, "{method} /RefreshToken");
    }
    assert_eq!(
        strava.calls().token_refresh,
        0,
        "no token refresh was triggered from outside"
    );

    // The public route and readiness still work.
    let ready = client
        .get(format!("{}/", handler.address))
        .send()
        .await
        .expect("readiness");
    assert_eq!(ready.status(), 200);
    for path in ["/api/GetLatestRun", "/API/getlatestrun"] {
        let response = client
            .get(format!("{}{path}", handler.address))
            .send()
            .await
            .expect("public route");
        assert_eq!(response.status(), 200, "{path}");
        let run = json(&response.bytes().await.expect("body"));
        assert!(run["id"].is_i64(), "{path}: {run}");
    }
    assert_eq!(strava.calls().token_refresh, 0);

    let status = handler.terminate().await;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[tokio::test]
async fn timer_without_credentials_fails_cleanly_with_the_explanation() {
    let app = TestApp::spawn(TestSettings::new(NO_STRAVA)).await;
    for name in [
        "timer-invocation-request.json",
        "timer-invocation-request-past-due.json",
        "timer-invocation-request-no-monitor.json",
    ] {
        let response = app.invoke("RefreshToken", fixture(name)).await;
        assert_eq!(
            response.status(),
            500,
            "{name}: a failed invocation is a 500"
        );
        assert_eq!(response.headers()["content-type"], "application/json");
        let envelope = json(&response.bytes().await.expect("body"));
        let logs = envelope["Logs"].to_string();
        assert!(logs.contains("handler setup"), "{name}: {logs}");
    }
}

#[tokio::test]
async fn storage_down_is_a_clear_503() {
    let settings = TestSettings::new(NO_STRAVA).with(
        "AzureWebJobsStorage",
        support::azurite::connection_string_for_port(support::azurite::free_port()),
    );
    let app = TestApp::spawn(settings).await;
    let started = std::time::Instant::now();
    let response = app.get("/api/GetLatestRun").await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        json(&response.bytes().await.expect("body"))["error"],
        "storage_unavailable"
    );
    println!("storage-down answer took {:?}", started.elapsed());
}

fn sample_credentials(refresh: &str) -> Credentials {
    Credentials {
        client_id: "139205".into(),
        client_secret: Secret::new("client-secret-value"),
        refresh_token: Secret::new(refresh),
        access_token: None,
        expires_at: None,
        athlete_id: None,
        scope: None,
        refresh_lease: None,
        refused_at: None,
    }
}

#[tokio::test]
async fn a_stale_etag_is_a_typed_conflict_and_loses_nothing() {
    let settings = TestSettings::new(NO_STRAVA);
    let store = settings.store();
    assert!(store.load_credentials().await.expect("read").is_none());
    store
        .replace_credentials(&sample_credentials("refresh-1"))
        .await
        .expect("setup write");

    let first = store
        .load_credentials()
        .await
        .expect("read")
        .expect("stored");
    let second = store
        .load_credentials()
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(first.value.refresh_token.expose(), "refresh-1");

    let mut newer = first.value.clone();
    newer.refresh_token = Secret::new("refresh-2");
    newer.expires_at = Some(1_900_000_000);
    let new_etag = store
        .save_credentials(&newer, &first.etag)
        .await
        .expect("first writer wins");
    assert_ne!(new_etag, first.etag);

    let mut older = second.value.clone();
    older.refresh_token = Secret::new("refresh-from-a-slower-instance");
    let err = store
        .save_credentials(&older, &second.etag)
        .await
        .expect_err("second writer must not overwrite");
    assert!(matches!(err, StoreError::Conflict), "{err:?}");

    let stored = store
        .load_credentials()
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.value.refresh_token.expose(), "refresh-2");
    assert_eq!(stored.value.expires_at, Some(1_900_000_000));
    assert_eq!(stored.etag, new_etag);
}

#[tokio::test]
async fn malformed_input_gets_a_json_4xx_and_the_server_keeps_serving() {
    let app = TestApp::spawn(TestSettings::new(NO_STRAVA)).await;
    let bad_bodies = [
        "",
        "not json",
        "{",
        "null",
        "42",
        "[]",
        "{}",
        "{\"Data\":null}",
        "{\"Data\":{\"req\":\"text\"}}",
        "{\"Data\":{\"req\":{\"Url\":5,\"Method\":\"GET\"}}}",
        "{\"Data\":{\"req\":{\"Url\":\"http://x/api/GetLatestRun\",\"Method\":7}}}",
        "{\"Data\":{\"req\":{\"Url\":\"http://x\",\"Method\":\"GET\",\"Query\":[1]}}}",
        "{\"Data\":{\"myTimer\":{\"IsPastDue\":\"yes\"}}}",
        "{\"Data\":{\"myTimer\":{\"ScheduleStatus\":{\"Last\":1}}}}",
        "\u{feff}{\"Data\":{}}",
    ];
    for function in ["GetLatestRun", "RefreshToken"] {
        for body in bad_bodies {
            let response = app.invoke(function, body).await;
            let status = response.status();
            let bytes = response.bytes().await.expect("body");
            assert_eq!(
                status,
                400,
                "{function} {body:?}: {}",
                String::from_utf8_lossy(&bytes)
            );
            let error = json(&bytes);
            assert_eq!(error["error"], "bad_request", "{function} {body:?}");
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    // A huge chunked body is cut off at the cap, not buffered whole.
    let huge = format!(
        "{{\"Data\":{{\"req\":{{\"Url\":\"{}\"}}}}}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let response = app.invoke("GetLatestRun", huge).await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        json(&response.bytes().await.expect("body"))["error"],
        "payload_too_large"
    );

    // A huge body with a Content-Length is refused up front.
    let response = app
        .client
        .post(format!("{}/RefreshToken", app.address))
        .body(vec![b' '; 1024 * 1024])
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 413);

    // Wrong methods and unknown paths.
    let cases = [
        (reqwest::Method::GET, "/GetLatestRun", 405),
        (reqwest::Method::GET, "/RefreshToken", 405),
        (reqwest::Method::POST, "/api/GetLatestRun", 405),
        (reqwest::Method::GET, "/api/RefreshToken", 404),
        (reqwest::Method::GET, "/api/NoSuchFunction", 404),
        (reqwest::Method::POST, "/NoSuchFunction", 404),
        (reqwest::Method::GET, "/a/b/c", 404),
    ];
    for (method, path, status) in cases {
        let response = app
            .client
            .request(method.clone(), format!("{}{}", app.address, path))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), status, "{method} {path}");
        let error = json(&response.bytes().await.expect("body"));
        assert!(error["error"].is_string(), "{method} {path}");
    }

    // Standalone: the invocation paths are unknown whatever the method; the public route stays.
    let standalone = TestApp::spawn_standalone(TestSettings::new(NO_STRAVA)).await;
    let cases = [
        (reqwest::Method::GET, "/GetLatestRun", 404, "not_found"),
        (reqwest::Method::POST, "/GetLatestRun", 404, "not_found"),
        (reqwest::Method::POST, "/RefreshToken", 404, "not_found"),
        (reqwest::Method::DELETE, "/refreshtoken", 404, "not_found"),
        (reqwest::Method::GET, "/api/RefreshToken", 404, "not_found"),
        (
            reqwest::Method::GET,
            "/API/GetLatestRun",
            503,
            "not_configured",
        ),
    ];
    for (method, path, status, code) in cases {
        let response = standalone
            .client
            .request(method.clone(), format!("{}{}", standalone.address, path))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), status, "standalone {method} {path}");
        let error = json(&response.bytes().await.expect("body"));
        assert_eq!(error["error"], code, "standalone {method} {path}");
    }
    drop(standalone);

    // Odd bytes in the path, percent-encoded or raw, and huge queries: a JSON error or the
    // function's answer, never a dropped connection.
    let long_segment = format!("/api/{}", "G".repeat(16 * 1024));
    let many_segments = "/a".repeat(10_000);
    let odd_paths = [
        ("/api/GetLatestRun%00", 404),
        ("/api/%47etLatestRun", 404),
        ("/%FF%FE/GetLatestRun", 404),
        ("/api/%C3%A9t%C3%A9", 404),
        ("/api/Get%2FLatestRun", 404),
        ("/api/..%2F..%2Fetc%2Fpasswd", 404),
        ("/api/GetLatestRun/", 503),
        ("//api//GetLatestRun", 404),
        (long_segment.as_str(), 404),
        (many_segments.as_str(), 404),
    ];
    for (path, status) in odd_paths {
        let response = app.get(path).await;
        let shown = &path[..path.len().min(40)];
        assert_eq!(response.status(), status, "{shown}");
        let error = json(&response.bytes().await.expect("body"));
        assert!(error["error"].is_string(), "{shown}");
    }
    let huge_query = format!(
        "/api/GetLatestRun?format=json&{}&x=%FF%ZZ%&=&&==",
        "a=%E2%82&".repeat(6 * 1024)
    );
    let response = app.get(&huge_query).await;
    assert_eq!(
        response.status(),
        503,
        "a huge query still reaches the function"
    );
    assert_eq!(
        json(&response.bytes().await.expect("body"))["error"],
        "not_configured"
    );
    // Raw bytes no client library would send: an answer (the HTTP layer's 4xx is fine), then the
    // server still serves.
    for request_line in [
        &b"GET /api/\xffGetLatestRun HTTP/1.1"[..],
        b"GET /api/GetLatestRun?\x80\xfe=\xff HTTP/1.1",
        b"GET /\x7f HTTP/1.1",
        b"POST /Refresh\xc3Token HTTP/1.1",
    ] {
        let status_line = raw_request(&app.address, request_line).await;
        assert!(
            status_line.starts_with("HTTP/1.1 4") || status_line.starts_with("HTTP/1.1 5"),
            "{}: {status_line:?}",
            String::from_utf8_lossy(request_line)
        );
    }
    let too_long = format!("/api/GetLatestRun?q={}", "x".repeat(2 * 1024 * 1024));
    let _ = app
        .client
        .get(format!("{}{too_long}", app.address))
        .send()
        .await;
    assert_eq!(app.get("/").await.status(), 200, "still serving");

    // A body that stops arriving does not hold the server: other requests still go through.
    let stalled = {
        let address = app.address.clone();
        tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
            let _ = tx.send(Ok(bytes::Bytes::from_static(b"{\"Data\":"))).await;
            let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
            let client = reqwest::Client::new();
            let _ = client
                .post(format!("{address}/GetLatestRun"))
                .body(body)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            drop(tx);
        })
    };
    let response = app.get("/").await;
    assert_eq!(response.status(), 200, "the server still answers");
    let _ = stalled.await;
    let response = app.get("/api/GetLatestRun").await;
    assert_eq!(response.status(), 503, "and still runs functions");
}

/// Sends `request_line` and a Host header over a fresh connection; the response's status line.
async fn raw_request(address: &str, request_line: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut request = request_line.to_vec();
    request.extend_from_slice(b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    // The server may close early on a request it refuses; what it answered is still read.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn concurrent_requests_are_served() {
    let app = TestApp::spawn(TestSettings::new(NO_STRAVA)).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = app.client.clone();
        let address = app.address.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let response = client
                    .get(format!("{address}/api/GetLatestRun"))
                    .send()
                    .await;
                response.expect("forwarded").status().as_u16()
            } else {
                let body = fixture("http-invocation-request.json");
                let response =
                    support::app::invoke_at(&client, &address, "GetLatestRun", body).await;
                assert_eq!(response.status(), 200, "an answered invocation");
                let envelope = json(&response.bytes().await.expect("body"));
                envelope["Outputs"]["res"]["statusCode"]
                    .as_u64()
                    .unwrap_or(0) as u16
            }
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.expect("task"),
            503,
            "every request reached the function"
        );
    }
}

#[tokio::test]
async fn the_binary_starts_answers_every_fixture_and_stops_on_sigterm() {
    let settings = TestSettings::new(NO_STRAVA);
    let mut handler = HandlerProcess::spawn(&settings, &[]).await;
    let ready_after = handler.wait_ready().await;
    println!("handler answered GET / {ready_after:?} after spawn");

    let client = reqwest::Client::new();
    let forwarded = client
        .get(format!(
            "{}/api/GetLatestRun?name=Functions&lang=en",
            handler.address
        ))
        .header(
            "X-Azure-Functions-InvocationId",
            "5f0c2a9e-8d3b-4f61-9e7a-1b2c3d4e5f60",
        )
        .send()
        .await
        .expect("forwarded");
    assert_eq!(forwarded.status(), 503);
    assert_eq!(
        json(&forwarded.bytes().await.expect("body"))["error"],
        "not_configured"
    );

    for (function, name) in [
        ("GetLatestRun", "http-invocation-request.json"),
        ("RefreshToken", "timer-invocation-request.json"),
        ("RefreshToken", "timer-invocation-request-past-due.json"),
        ("RefreshToken", "timer-invocation-request-no-monitor.json"),
    ] {
        let response =
            support::app::invoke_at(&client, &handler.address, function, fixture(name)).await;
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{name}"
        );
        let envelope = json(&response.bytes().await.expect("body"));
        assert!(envelope["Outputs"].is_object(), "{name}: {envelope}");
        assert!(envelope["Logs"].is_array(), "{name}: {envelope}");
        assert!(envelope.get("ReturnValue").is_some(), "{name}: {envelope}");
    }

    let status = handler.terminate().await;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let output = handler.output();
    assert!(
        output.contains("handler setup"),
        "the timer failure reached stdout: {output}"
    );
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let settings = TestSettings::new(NO_STRAVA).with("WIDGET_CACHE_SECONDS", "soon");
    let mut handler = HandlerProcess::spawn(&settings, &[]).await;
    let status = handler.wait_exit().await;
    assert!(!status.success());
    let output = handler.output();
    assert_eq!(output.trim().lines().count(), 1, "{output}");
    assert!(output.contains("WIDGET_CACHE_SECONDS"), "{output}");
    assert!(!output.contains("panicked"), "{output}");
}

#[tokio::test]
async fn standalone_refreshes_on_the_schedule_of_refresh_token_function_json() {
    let settings = TestSettings::new(NO_STRAVA);
    let mut handler = HandlerProcess::spawn(&settings, &["standalone"]).await;
    handler.wait_ready().await;
    let function_json: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("RefreshToken/function.json"),
        )
        .expect("read function.json"),
    )
    .expect("function.json is JSON");
    let schedule = function_json["bindings"][0]["schedule"]
        .as_str()
        .expect("a schedule");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !handler.output().contains("refresh schedule") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = handler.output();
    let line = output
        .lines()
        .find(|l| l.contains("refresh schedule"))
        .unwrap_or_else(|| panic!("no schedule line in:\n{output}"));
    assert!(line.contains(schedule), "{line}");
    let status = handler.terminate().await;
    assert!(status.success(), "{}", handler.output());
}

/// `\xff` alone is never UTF-8.
fn not_utf8(prefix: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.push(0xff);
    std::ffi::OsStr::from_bytes(&bytes).to_os_string()
}

#[tokio::test]
async fn a_foreign_non_utf8_environment_variable_does_not_stop_start_up() {
    let settings = TestSettings::new(NO_STRAVA);
    let mut handler = HandlerProcess::spawn_with_env(
        &settings,
        &[],
        &[
            ("SOME_OTHER_TOOL".into(), not_utf8("latin1-caf")),
            (not_utf8("NAME_"), "value".into()),
        ],
    )
    .await;
    handler.wait_ready().await;
    let status = handler.terminate().await;
    assert!(status.success(), "{}", handler.output());
    assert!(
        !handler.output().contains("panicked"),
        "{}",
        handler.output()
    );
}

#[tokio::test]
async fn a_non_utf8_value_of_a_setting_is_one_line_naming_it() {
    let settings = TestSettings::new(NO_STRAVA);
    let mut handler = HandlerProcess::spawn_with_env(
        &settings,
        &[],
        &[("WIDGET_SPORT_TYPES".into(), not_utf8("Run,"))],
    )
    .await;
    let status = handler.wait_exit().await;
    assert!(!status.success());
    let output = handler.output();
    assert_eq!(output.trim().lines().count(), 1, "{output}");
    assert!(
        output.contains("setting WIDGET_SPORT_TYPES: is not valid UTF-8"),
        "{output}"
    );
    assert!(!output.contains("panicked"), "{output}");
}

#[tokio::test]
async fn an_unusable_connection_string_stops_start_up_naming_its_setting() {
    let cases = [
        ("AzureWebJobsStorage", "AccountName=devstoreaccount1"),
        ("STRAVA_TABLE_CONNECTION", "Foo=bar"),
    ];
    for (name, value) in cases {
        let settings = TestSettings::new(NO_STRAVA).with(name, value);
        let mut handler = HandlerProcess::spawn(&settings, &[]).await;
        let status = handler.wait_exit().await;
        assert!(!status.success(), "{name}");
        let output = handler.output();
        assert_eq!(output.trim().lines().count(), 1, "{output}");
        assert!(
            output.starts_with(&format!("handler: setting {name}: ")),
            "{output}"
        );
        assert!(
            !output.contains(value),
            "the value is never printed: {output}"
        );
    }
}

fn validate(schema_file: &str, document_file: &str) -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/data/schemas").join(schema_file))
            .expect("schema"),
    )
    .expect("schema json");
    let document: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join(document_file)).expect("document"))
            .expect("document json");
    // Draft-07 whatever the $schema line says (function.schema.json is broken under draft-04).
    let validator = jsonschema::draft7::new(&schema).expect("compile schema");
    validator
        .iter_errors(&document)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn config_files_validate_against_the_official_schemas() {
    // Every function folder at the app root, each a function the handler serves.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut functions: Vec<String> = std::fs::read_dir(root)
        .expect("app root")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("function.json").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    functions.sort();
    assert_eq!(
        functions,
        [
            "GetLatestRun",
            "GetRunningYear",
            "RefreshToken",
            "StravaWebhook",
            "Widget"
        ],
        "the function folders"
    );
    for name in &functions {
        assert!(
            strava_latest_run::functions::FunctionName::parse(name).is_some(),
            "{name} is served by the handler"
        );
    }
    let function_files: Vec<String> = functions
        .iter()
        .map(|name| format!("{name}/function.json"))
        .collect();
    let mut documents = vec![
        ("host.schema.json", "host.json"),
        ("local.settings.schema.json", "local.settings.json.example"),
    ];
    documents.extend(
        function_files
            .iter()
            .map(|file| ("function.schema.json", file.as_str())),
    );
    for (schema, document) in documents {
        let errors = validate(schema, document);
        assert!(errors.is_empty(), "{document}: {errors:?}");
    }
    // The validator does reject a broken file (so the check above can fail).
    let dir = std::env::temp_dir().join(format!("schema-neg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let broken = dir.join("function.json");
    std::fs::write(
        &broken,
        r#"{"bindings":[{"type":"timerTrigger","direction":"in","name":"t","schedule":5}]}"#,
    )
    .expect("write");
    assert!(!validate("function.schema.json", broken.to_str().expect("utf8")).is_empty());
}

#[tokio::test]
async fn a_burst_of_table_calls_reuses_storage_connections() {
    // Azurite behind a proxy that counts the TCP connections the store opens.
    let azurite = support::azurite::Azurite::shared();
    let proxy = support::tcp_proxy::CountingTcpProxy::start(azurite.port()).await;
    let settings = TestSettings::new(NO_STRAVA).with(
        "AzureWebJobsStorage",
        support::azurite::connection_string_for_port(proxy.port()),
    );
    let store = settings.store();
    store
        .replace_credentials(&sample_credentials("refresh-pooled"))
        .await
        .expect("save");
    let mut operations = 1;
    // One after another, then bursts of ten at once: what a round of saves and a crowd of cold
    // visitors look like.
    for _ in 0..30 {
        let read = store.load_credentials().await.expect("load");
        assert!(read.is_some(), "the credentials were saved");
        operations += 1;
    }
    for _ in 0..5 {
        let burst = (0..10).map(|_| store.load_credentials());
        for read in futures_util::future::join_all(burst).await {
            assert!(read.expect("load").is_some());
            operations += 1;
        }
    }
    let connections = proxy.connections();
    assert!(
        connections * 4 <= operations,
        "{connections} storage connections for {operations} table calls: idle connections are not reused"
    );
}
