//! What an operator reads: the real `handler` binary with `LOG_FORMAT=json` writes one JSON
//! object a line, every line written during an invocation carries the host's invocation id and
//! the function's name, each timer run writes one summary line, a client that hangs up is not
//! an error, and no setting or secret ever appears, whatever `RUST_LOG` lets through. Text logs
//! carry no colour codes when stdout is not a terminal.

use crate::support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use support::app::{fixture, HandlerProcess, TestSettings};
use support::credentials::connected;
use support::fake_strava::{FakeStrava, Fault, Scope, CLIENT_SECRET};
use support::{assert_no_secret_among, azurite};
use tokio::io::AsyncWriteExt;

/// Posts an invocation body as the host does, with the given invocation id.
async fn invoke(address: &str, function: &str, invocation_id: &str, body: String) -> u16 {
    reqwest::Client::new()
        .post(format!("{address}/{function}"))
        .header("Content-Type", "application/json")
        .header("X-Azure-Functions-InvocationId", invocation_id)
        .body(body)
        .send()
        .await
        .expect("POST invocation")
        .status()
        .as_u16()
}

/// A forwarded request as the host sends it with forwarding on: the invocation id in a header.
async fn forwarded_get(address: &str, path: &str, invocation_id: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{address}{path}"))
        .header("X-Azure-Functions-InvocationId", invocation_id)
        .send()
        .await
        .expect("GET")
        .status()
        .as_u16()
}

/// A client that sends half a request and hangs up (what warp used to log as an error).
async fn hang_up_mid_request(address: &str) {
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let _ = stream
        .write_all(
            b"POST /GetLatestRun HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"Data\":",
        )
        .await;
    drop(stream);
}

#[tokio::test]
async fn json_logs_carry_the_invocation_id_on_every_line_of_an_invocation() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url())
        .with("LOG_FORMAT", "json")
        // Debug for the app's own lines, so that a cold fetch writes some inside the request.
        .with("RUST_LOG", "info,strava_latest_run=debug");
    let mut handler = HandlerProcess::spawn_connected(&settings, &strava).await;
    let address = handler.address.clone();

    // A cold widget request (it fetches from Strava), a timer run, a failing timer run, an
    // invocation-form widget request and a client that hangs up.
    let get_id = "0f7c1d2e-1111-4a5b-8c9d-000000000001";
    let timer_id = "0f7c1d2e-2222-4a5b-8c9d-000000000002";
    let failing_timer_id = "0f7c1d2e-3333-4a5b-8c9d-000000000003";
    let invocation_get_id = "0f7c1d2e-4444-4a5b-8c9d-000000000004";
    assert_eq!(
        forwarded_get(&address, "/api/GetLatestRun", get_id).await,
        200
    );
    let timer = fixture("timer-invocation-request.json");
    assert_eq!(
        invoke(&address, "RefreshToken", timer_id, timer.clone()).await,
        200
    );
    strava.fail_next(Scope::OAuth, Fault::Status(400), 5);
    assert_eq!(
        invoke(&address, "RefreshToken", failing_timer_id, timer).await,
        500
    );
    assert_eq!(
        invoke(
            &address,
            "GetLatestRun",
            invocation_get_id,
            fixture("http-invocation-request.json")
        )
        .await,
        200
    );
    hang_up_mid_request(&address).await;
    // The server notices the hang-up when it reads; give it a moment before stopping it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = handler.terminate().await;
    assert!(status.success(), "clean exit: {status:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let output = handler.output();

    // Every line is one JSON object, without colour codes.
    assert!(!output.contains('\u{1b}'), "no ANSI escapes:\n{output}");
    let lines: Vec<Value> = output
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\nall:\n{output}"))
        })
        .collect();
    assert!(lines.iter().all(Value::is_object), "{output}");

    // Lines outside any invocation are only the process's own start and stop.
    let mut by_id: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for line in &lines {
        match line["span"]["invocation_id"].as_str() {
            Some(id) => by_id.entry(id.to_owned()).or_default().push(line),
            None => {
                let message = line["message"].as_str().unwrap_or_default();
                assert!(
                    ["handler listening", "handler stopped"].contains(&message),
                    "a line outside any invocation: {line}\nall:\n{output}"
                );
            }
        }
    }
    let functions: BTreeMap<&str, &str> = [
        (get_id, "GetLatestRun"),
        (timer_id, "RefreshToken"),
        (failing_timer_id, "RefreshToken"),
        (invocation_get_id, "GetLatestRun"),
    ]
    .into();
    for (id, lines) in &by_id {
        let function = functions
            .get(id.as_str())
            .unwrap_or_else(|| panic!("an id nobody sent: {id}\n{output}"));
        for line in lines {
            assert_eq!(line["span"]["function"], *function, "{line}");
        }
    }

    // The cold request logged its Strava calls inside its span.
    assert!(
        by_id.get(get_id).is_some_and(|l| !l.is_empty()),
        "the cold GET wrote lines in its span:\n{output}"
    );

    // The timer run wrote exactly one summary line, with the fields an operator looks for.
    let timer_lines = by_id.get(timer_id).cloned().unwrap_or_default();
    let summaries: Vec<&&Value> = timer_lines
        .iter()
        .filter(|l| l["level"] == "INFO" && l.get("refreshed").is_some())
        .collect();
    assert_eq!(summaries.len(), 1, "one summary line:\n{output}");
    let summary = summaries[0];
    assert_eq!(summary["refreshed"], true, "{summary}");
    assert!(
        summary["token_expires_at"]
            .as_str()
            .is_some_and(|t| time::OffsetDateTime::parse(
                t,
                &time::format_description::well_known::Rfc3339
            )
            .is_ok()),
        "{summary}"
    );
    assert!(summary["cache"].is_string(), "{summary}");
    assert!(
        summary["strava_budget_15min_left"].is_u64() && summary["strava_budget_day_left"].is_u64(),
        "the budget seen on the cold fetch: {summary}"
    );

    // The failed run said why, at error level, in its span.
    assert!(
        by_id
            .get(failing_timer_id)
            .is_some_and(|l| l.iter().any(|l| l["level"] == "ERROR")),
        "the failed timer run's error line:\n{output}"
    );
    // The hang-up is no error; the failed timer run is the only one.
    let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(
        errors
            .iter()
            .all(|l| l["span"]["invocation_id"] == failing_timer_id),
        "only the failed run is an error: {errors:?}"
    );

    // No secret and no setting value.
    let connection = settings.get("AzureWebJobsStorage").expect("set");
    let account_key = connection
        .split(';')
        .find_map(|part| part.strip_prefix("AccountKey="))
        .expect("a key in the connection string");
    let mut secrets = strava.all_secrets();
    secrets.push(CLIENT_SECRET.to_owned());
    secrets.push(account_key.to_owned());
    for secret in secrets {
        assert!(!output.contains(&secret), "a secret in the log:\n{output}");
    }
}

#[tokio::test]
async fn text_logs_have_no_colour_codes_when_stdout_is_not_a_terminal() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url()).with("LOG_FORMAT", "text");
    settings
        .store()
        .replace_credentials(&connected(&strava))
        .await
        .expect("arrange credentials");
    let mut handler = HandlerProcess::spawn(&settings, &[]).await;
    handler.wait_ready().await;
    let id = "7d3e0a1b-5555-4a5b-8c9d-000000000005";
    assert_eq!(
        invoke(
            &handler.address,
            "RefreshToken",
            id,
            fixture("timer-invocation-request.json")
        )
        .await,
        200
    );
    handler.terminate().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let output = handler.output();
    assert!(!output.contains('\u{1b}'), "no ANSI escapes:\n{output}");
    let summary = output
        .lines()
        .find(|l| l.contains("RefreshToken run:"))
        .unwrap_or_else(|| panic!("a summary line:\n{output}"));
    assert!(summary.contains(id), "the id in the text line: {summary}");
    assert!(summary.contains("RefreshToken"), "{summary}");
}

/// Filters an operator might set to see more: a more specific directive for a client crate, a
/// span filter, everything at trace, and the client crates named at trace.
const GENEROUS_FILTERS: [&str; 5] = [
    "azure_core::policies::transport=debug,info",
    "info,[invocation]=debug",
    "trace",
    "reqwest=trace,hyper=trace,info",
    "azure_data_tables=trace,azure_storage=trace,info",
];

/// Runs the `handler` binary with `RUST_LOG=filter` through a cold answer (Strava's API with the
/// access token, a table write), a token refresh (the client secret and the refresh token to
/// Strava, the new tokens to the table) and a second refresh: everything it wrote, and every
/// secret it was given or saw.
async fn log_of_a_run_with(filter: &str) -> (String, Vec<String>) {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    let settings = TestSettings::new(&strava.base_url()).with("RUST_LOG", filter);
    let mut handler = HandlerProcess::spawn_connected(&settings, &strava).await;
    let address = handler.address.clone();
    assert_eq!(
        forwarded_get(
            &address,
            "/api/GetLatestRun",
            "0f7c1d2e-6666-4a5b-8c9d-000000000006"
        )
        .await,
        200,
        "the cold answer with RUST_LOG={filter}"
    );
    for id in [
        "0f7c1d2e-7777-4a5b-8c9d-000000000007",
        "0f7c1d2e-8888-4a5b-8c9d-000000000008",
    ] {
        assert_eq!(
            invoke(
                &address,
                "RefreshToken",
                id,
                fixture("timer-invocation-request.json")
            )
            .await,
            200,
            "a token refresh with RUST_LOG={filter}"
        );
    }
    handler.terminate().await;
    let mut secrets = strava.all_secrets();
    secrets.push(CLIENT_SECRET.to_owned());
    secrets.push(azurite::ACCOUNT_KEY.to_owned());
    // The storage requests' signature header (`Authorization: SharedKey account:signature`).
    secrets.push("SharedKey".to_owned());
    (handler.output(), secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_filter_lets_the_http_or_storage_clients_write_a_secret() {
    let runs = futures_util::future::join_all(
        GENEROUS_FILTERS
            .iter()
            .map(|filter| async move { (filter, log_of_a_run_with(filter).await) }),
    )
    .await;
    for (filter, (output, secrets)) in &runs {
        assert!(
            secrets.len() >= 6,
            "tokens were issued with RUST_LOG={filter}: {}",
            secrets.len()
        );
        // The filter did let the app's own lines through.
        assert!(
            output.contains("RefreshToken run:"),
            "RUST_LOG={filter} logged the run:\n{output}"
        );
    }
    // Every filter that leaked is named; the first one's line is shown (secrets masked).
    let leaked: Vec<&str> = runs
        .iter()
        .filter(|(_, (output, secrets))| secrets.iter().any(|s| output.contains(s.as_str())))
        .map(|(filter, _)| **filter)
        .collect();
    for (filter, (output, secrets)) in &runs {
        assert_no_secret_among(
            &format!("the log with RUST_LOG={filter} (leaked with: {leaked:?})"),
            output,
            secrets,
        );
    }
}
