//! Strava tokens that never lapse and are never lost: the RefreshToken timer, on-demand
//! refresh, concurrent instances, storage outages, `handler setup`/`status`, and no secret in
//! any output. Against real Azurite and the fake Strava, over real sockets.

use crate::support;

use std::sync::Arc;
use std::time::Duration;
use strava_latest_run::secret::Secret;
use strava_latest_run::store::{Credentials, Store};
use strava_latest_run::strava::StravaClient;
use strava_latest_run::tokens::{RefreshOutcome, TokenError, TokenKeeper};
use support::app::{
    fixture, invoke_at, run_handler_command, run_timer, HandlerProcess, TestApp, TestSettings,
};
use support::azurite::Azurite;
use support::credentials::{hand_made, rotating_strava_with_stored_token};
use support::fake_strava::{FakeStrava, Scope, CLIENT_ID, CLIENT_SECRET};
use support::json;
use support::now;
use support::outage::Outage;

/// `handler setup --code CODE` with the fake's client id.
async fn setup_with_code(
    settings: &TestSettings,
    client_secret: &str,
    code: &str,
) -> (std::process::ExitStatus, String) {
    let args = [
        "setup",
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        client_secret,
        "--code",
        code,
    ];
    run_handler_command(settings, &args, "").await
}

async fn stored(store: &Store) -> Credentials {
    store
        .load_credentials()
        .await
        .expect("read")
        .expect("stored")
        .value
}

#[tokio::test]
async fn timer_refreshes_and_saves_for_normal_past_due_and_first_run_payloads() {
    let (strava, settings, _) = rotating_strava_with_stored_token().await;
    let app = TestApp::spawn(settings).await;

    let first_run = fixture("timer-invocation-request.json").replace(
        "2024-11-05T08:00:00.0031853+00:00",
        "0001-01-01T00:00:00+00:00",
    );
    for body in [
        fixture("timer-invocation-request.json"),
        fixture("timer-invocation-request-past-due.json"),
        fixture("timer-invocation-request-no-monitor.json"),
        first_run,
    ] {
        let response = app.invoke("RefreshToken", body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let envelope = json(&response.bytes().await.expect("body"));
        assert!(envelope["Outputs"]
            .as_object()
            .is_some_and(|o| o.is_empty()));
        assert!(
            envelope["Logs"]
                .to_string()
                .contains("refresh token rotated"),
            "{envelope}"
        );

        let saved = stored(&app.store).await;
        assert_eq!(
            saved.refresh_token.expose(),
            strava.refresh_token(),
            "the newest refresh token is stored"
        );
        assert_eq!(
            saved.access_token.as_ref().map(Secret::expose),
            Some(strava.access_token().as_str())
        );
        assert_eq!(saved.expires_at, Some(strava.access_token_expires_at()));
        assert!(saved.refresh_lease.is_none(), "the lease is released");
        assert_eq!(saved.client_id, CLIENT_ID, "the rest is kept");
    }
    assert_eq!(
        strava.calls().token_refresh,
        4,
        "the timer asks Strava on every run"
    );
    assert_eq!(strava.calls().token_failed, 0);
}

#[tokio::test]
async fn several_processes_refreshing_at_once_keep_the_valid_refresh_token() {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    strava.set_latency(Duration::from_millis(100));
    let settings = TestSettings::new(&strava.base_url());
    settings
        .store()
        .replace_credentials(&hand_made(&strava.refresh_token()))
        .await
        .expect("arrange");

    let mut handlers = Vec::new();
    for _ in 0..3 {
        let handler = HandlerProcess::spawn(&settings, &[]).await;
        handler.wait_ready().await;
        handlers.push(handler);
    }
    let client = reqwest::Client::new();
    for round in 0..3 {
        let mut calls = Vec::new();
        for handler in &handlers {
            let client = client.clone();
            let address = handler.address.clone();
            calls.push(tokio::spawn(
                async move { run_timer(&client, &address).await },
            ));
        }
        for call in calls {
            let (status, body) = call.await.expect("task");
            assert_eq!(status, 200, "round {round}: {body}");
        }
        let saved = stored(&settings.store()).await;
        assert_eq!(
            saved.refresh_token.expose(),
            strava.refresh_token(),
            "round {round}: stored token is the valid one"
        );
    }
    assert_eq!(
        strava.calls().token_failed,
        0,
        "no instance ever used a dead refresh token"
    );
    // The token still works afterwards: one more refresh succeeds.
    let response = invoke_at(
        &client,
        &handlers[0].address,
        "RefreshToken",
        fixture("timer-invocation-request.json"),
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_invalid_refresh_token_is_reloaded_once_then_reported() {
    let strava = FakeStrava::start().await;
    let app = TestApp::spawn(TestSettings::new(&strava.base_url())).await;
    app.store
        .replace_credentials(&hand_made("0000000000000000000000000000000000000000"))
        .await
        .expect("arrange");

    let response = app
        .invoke("RefreshToken", fixture("timer-invocation-request.json"))
        .await;
    assert_eq!(response.status(), 500);
    let envelope = json(&response.bytes().await.expect("body"));
    let logs = envelope["Logs"].to_string();
    assert!(logs.contains("handler setup"), "{logs}");
    assert_eq!(
        strava.calls().token_failed,
        2,
        "tried, reloaded, tried once more"
    );
    let saved = stored(&app.store).await;
    assert!(
        saved.refresh_lease.is_none(),
        "a failed refresh gives the lease back"
    );
}

#[tokio::test]
async fn instances_taking_turns_never_use_a_dead_refresh_token() {
    let (strava, _, store) = rotating_strava_with_stored_token().await;
    let client = StravaClient::new(&strava.base_url(), Duration::from_secs(5)).expect("client");
    let slow = TokenKeeper::new(store.clone(), client.clone(), "slow");
    let fast = TokenKeeper::new(store.clone(), client, "fast");

    // `fast` rotates the token; `slow` refreshes next from a fresh read and must not fail.
    fast.refresh_now().await.expect("fast refresh");
    let outcome = slow.refresh_now().await.expect("slow refresh");
    assert!(
        matches!(outcome, RefreshOutcome::Saved { rotated: true, .. }),
        "{outcome:?}"
    );
    assert_eq!(
        stored(&store).await.refresh_token.expose(),
        strava.refresh_token()
    );
    assert_eq!(strava.calls().token_failed, 0);
}

#[tokio::test]
async fn an_expiring_access_token_is_refreshed_on_demand_once_for_all_waiters() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url());
    let store = settings.store();
    let mut credentials = hand_made(&strava.refresh_token());
    credentials.access_token = Some(Secret::new(strava.access_token()));
    credentials.expires_at = Some(now() + 120); // within the five-minute margin
    strava.expire_access_token();
    store
        .replace_credentials(&credentials)
        .await
        .expect("arrange");

    let client = StravaClient::new(&strava.base_url(), Duration::from_secs(5)).expect("client");
    let keeper = Arc::new(TokenKeeper::new(store.clone(), client, "test"));
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let keeper = Arc::clone(&keeper);
            tokio::spawn(async move { keeper.access_token().await })
        })
        .collect();
    let mut tokens = Vec::new();
    for waiter in waiters {
        tokens.push(waiter.await.expect("task").expect("token"));
    }
    assert_eq!(
        strava.calls().token_refresh,
        1,
        "single flight: one refresh for twenty callers"
    );
    assert!(tokens
        .iter()
        .all(|t| t.token.expose() == strava.access_token()));
    assert!(tokens[0].expires_at - now() > 3600);
    assert_eq!(
        stored(&store)
            .await
            .access_token
            .map(|t| t.expose().to_owned()),
        Some(strava.access_token())
    );

    // A 401 on the fresh token (revoked elsewhere) refreshes once more, also single-flight.
    let rejected = tokens[0].token.clone();
    strava.expire_access_token();
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let keeper = Arc::clone(&keeper);
            let rejected = rejected.clone();
            tokio::spawn(async move { keeper.access_token_after_rejection(&rejected).await })
        })
        .collect();
    for waiter in waiters {
        let token = waiter.await.expect("task").expect("token");
        assert_ne!(token.token, rejected);
    }
    assert_eq!(strava.calls().token_refresh, 2);
}

#[tokio::test]
async fn no_credentials_and_storage_down_are_typed() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url());
    let client = StravaClient::new(&strava.base_url(), Duration::from_secs(5)).expect("client");
    let keeper = TokenKeeper::new(settings.store(), client.clone(), "test");
    assert!(matches!(
        keeper.access_token().await,
        Err(TokenError::NotConfigured)
    ));

    let down = settings.clone().with(
        "AzureWebJobsStorage",
        support::azurite::connection_string_for_port(support::azurite::free_port()),
    );
    let keeper = TokenKeeper::new(down.store(), client, "test");
    assert!(matches!(
        keeper.access_token().await,
        Err(TokenError::Storage(_))
    ));
    assert_eq!(strava.calls().token_refresh, 0);
}

#[tokio::test]
async fn storage_killed_between_stravas_answer_and_the_save_loses_nothing() {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    let outage = Outage::relay_to(Azurite::shared().port()).await;
    let settings = TestSettings::new(&strava.base_url()).with(
        "AzureWebJobsStorage",
        support::azurite::connection_string_for_port(outage.port()),
    );
    let store = settings.store();
    store
        .replace_credentials(&hand_made(&strava.refresh_token()))
        .await
        .expect("arrange");
    let first_token = strava.refresh_token();
    let app = TestApp::spawn(settings.clone()).await;

    // Strava rotates at once but answers after 1.5 s; storage goes away in between.
    strava.set_latency(Duration::from_millis(1500));
    let invocation = {
        let client = app.client.clone();
        let address = app.address.clone();
        tokio::spawn(async move { run_timer(&client, &address).await })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    outage.cut();
    let (status, body) = invocation.await.expect("task");
    assert_eq!(status, 200, "the refresh itself worked: {body}");
    assert!(body.contains("STORAGE DOWN"), "loud in the log: {body}");
    assert_ne!(
        strava.refresh_token(),
        first_token,
        "Strava rotated the token"
    );

    // Storage returns still holding the old, now dead, refresh token; the next invocation
    // persists the new one first and refreshes with it.
    strava.set_latency(Duration::ZERO);
    outage.restore();
    assert_eq!(
        stored(&store).await.refresh_token.expose(),
        first_token,
        "the outage kept the old token"
    );
    let rotated = strava.refresh_token();
    let response = app
        .invoke("RefreshToken", fixture("timer-invocation-request.json"))
        .await;
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
    let saved = stored(&store).await;
    assert_eq!(saved.refresh_token.expose(), strava.refresh_token());
    assert_ne!(
        saved.refresh_token.expose(),
        rotated,
        "and refreshed with it: the chain continued"
    );
    assert_eq!(
        strava.calls().token_failed,
        0,
        "nothing ever used the dead refresh token"
    );
}

#[tokio::test]
async fn setup_connects_the_athlete_and_status_shows_it_redacted() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url());

    // Interactive: the pasted redirect address on stdin.
    let code = strava.issue_code("read,activity:read");
    let pasted =
        format!("http://localhost/exchange_token?state=&code={code}&scope=read,activity:read\n");
    let (status, output) = run_handler_command(
        &settings,
        &[
            "setup",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
        ],
        &pasted,
    )
    .await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("/oauth/authorize?"),
        "prints the authorize URL: {output}"
    );
    assert!(output.contains("scope=activity%3Aread"), "{output}");
    assert!(output.contains("approval_prompt=force"), "{output}");
    assert!(
        output.contains("Mira Kowalczyk (athlete 51877240)"),
        "{output}"
    );
    let saved = stored(&settings.store()).await;
    assert_eq!(saved.refresh_token.expose(), strava.refresh_token());
    assert_eq!(saved.athlete_id, Some(51877240));
    assert_eq!(saved.scope.as_deref(), Some("read,activity:read"));

    let (status, status_output) = run_handler_command(&settings, &["status"], "").await;
    assert!(status.success(), "{status_output}");
    assert!(
        status_output.contains("client secret: [redacted]"),
        "{status_output}"
    );
    assert!(
        status_output.contains("athlete: 51877240"),
        "{status_output}"
    );
    assert!(status_output.contains("expires in"), "{status_output}");

    // --code with a bare code works without stdin.
    let code = strava.issue_code("read,activity:read");
    let (status, output) = setup_with_code(&settings, CLIENT_SECRET, &code).await;
    assert!(status.success(), "{output}");

    for text in [&output, &status_output] {
        for secret in strava.all_secrets() {
            assert!(!text.contains(&secret), "a secret leaked into: {text}");
        }
    }
}

#[tokio::test]
async fn setup_takes_the_client_secret_from_strava_client_secret() {
    let strava = FakeStrava::start().await;
    let settings =
        TestSettings::new(&strava.base_url()).with("STRAVA_CLIENT_SECRET", CLIENT_SECRET);
    let code = strava.issue_code("read,activity:read");
    let (status, output) = run_handler_command(
        &settings,
        &["setup", "--client-id", CLIENT_ID, "--code", &code],
        "",
    )
    .await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("Mira Kowalczyk (athlete 51877240)"),
        "{output}"
    );
    let saved = stored(&settings.store()).await;
    assert_eq!(saved.client_secret.expose(), CLIENT_SECRET);
    assert_eq!(saved.refresh_token.expose(), strava.refresh_token());
    for secret in strava.all_secrets() {
        assert!(!output.contains(&secret), "a secret leaked into: {output}");
    }
}

#[tokio::test]
async fn setup_without_a_secret_and_without_a_terminal_says_where_to_put_it() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url());
    let code = strava.issue_code("read,activity:read");
    let (status, output) = run_handler_command(
        &settings,
        &["setup", "--client-id", CLIENT_ID, "--code", &code],
        "",
    )
    .await;
    assert!(!status.success(), "{output}");
    assert_eq!(
        output.trim(),
        "handler: setup failed: the client secret is missing: pass --client-secret, set STRAVA_CLIENT_SECRET, or run setup in a terminal"
    );
    assert!(
        settings
            .store()
            .load_credentials()
            .await
            .expect("read")
            .is_none(),
        "nothing is stored"
    );
}

#[tokio::test]
async fn setup_failures_end_with_one_line_and_a_non_zero_exit() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url());
    let used = strava.issue_code("read,activity:read");
    let (status, _) = setup_with_code(&settings, CLIENT_SECRET, &used).await;
    assert!(status.success());
    let read_only = strava.issue_code("read");

    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec!["--code".into(), used.clone()],
            "",
            "authorization code",
        ),
        (
            vec!["--code".into(), "nonsense".into()],
            "",
            "authorization code",
        ),
        (
            vec![
                "--code".into(),
                format!("http://localhost/exchange_token?code={read_only}&scope=read"),
            ],
            "",
            "activity:read",
        ),
        (
            vec!["--code".into(), read_only.clone()],
            "",
            "activity:read",
        ),
        (
            vec![],
            "http://localhost/exchange_token?state=&error=access_denied\n",
            "access_denied",
        ),
        (vec![], "\n", "nothing was pasted"),
    ];
    for (extra, stdin, expected) in cases {
        let mut args: Vec<String> = vec![
            "setup".into(),
            "--client-id".into(),
            CLIENT_ID.into(),
            "--client-secret".into(),
            CLIENT_SECRET.into(),
        ];
        args.extend(extra.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, output) = run_handler_command(&settings, &args, stdin).await;
        assert!(!status.success(), "{extra:?}: {output}");
        let last = output.trim().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("handler: setup failed:"),
            "{extra:?}: {output}"
        );
        assert!(last.contains(expected), "{extra:?}: {last}");
        assert!(!output.contains(CLIENT_SECRET), "{output}");
    }

    let code = strava.issue_code("read,activity:read");
    let (status, output) = setup_with_code(&settings, "wrong-secret", &code).await;
    assert!(!status.success());
    assert!(output.contains("client id or client secret"), "{output}");
    assert!(!output.contains("wrong-secret"), "{output}");
}

#[tokio::test]
async fn no_secret_appears_in_any_log_line_or_response_of_a_full_run() {
    let strava = FakeStrava::start().await;
    strava.set_rotate_refresh_tokens(true);
    let settings = TestSettings::new(&strava.base_url()).with("RUST_LOG", "trace");
    let code = strava.issue_code("read,activity:read");
    let (status, mut everything) = setup_with_code(&settings, CLIENT_SECRET, &code).await;
    assert!(status.success(), "{everything}");

    let mut handler = HandlerProcess::spawn(&settings, &[]).await;
    handler.wait_ready().await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        everything.push_str(&run_timer(&client, &handler.address).await.1);
    }
    // A failing refresh (Strava down) logs its error too.
    strava.fail_next(Scope::OAuth, support::fake_strava::Fault::HtmlPage(502), 1);
    let (status, body) = run_timer(&client, &handler.address).await;
    assert_eq!(status, 500);
    everything.push_str(&body);
    for path in ["/api/GetLatestRun", "/"] {
        let response = client
            .get(format!("{}{path}", handler.address))
            .send()
            .await
            .expect("get");
        everything.push_str(&format!("{:?}", response.headers()));
        everything.push_str(&response.text().await.unwrap_or_default());
    }
    let response = invoke_at(
        &client,
        &handler.address,
        "GetLatestRun",
        fixture("http-invocation-request.json"),
    )
    .await;
    everything.push_str(&response.text().await.unwrap_or_default());
    let (_, status_output) = run_handler_command(&settings, &["status"], "").await;
    everything.push_str(&status_output);
    handler.terminate().await;
    everything.push_str(&handler.output());

    assert!(
        everything.contains("RefreshToken"),
        "the logs were captured"
    );
    let secrets = strava.all_secrets();
    assert!(secrets.len() >= 5, "tokens were issued: {}", secrets.len());
    support::assert_no_secret(&everything, &strava);
}
