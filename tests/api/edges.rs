//! The server's edges over raw sockets: clients that send their request head slowly or never
//! (slowloris) and idle connections are disconnected while everyone else is served; request
//! heads over the caps get hyper's `431`; only the documented routes answer, for every method, in
//! both modes; CORS answers exactly the configured origins on every public route, errors
//! included; and no Strava secret appears in any answer or in the binary's log.
//!
//! tests/foundation.rs checks odd bytes in paths and queries with `GET`; the route table here
//! adds every method and both modes. tests/latest_run.rs checks the allow-list's basic case and
//! the preflight; the CORS test here adds lookalike origins, several listed origins and every
//! public route's error answers.

use crate::support;

use std::time::{Duration, Instant};
use strava_latest_run::server::ServerLimits;
use strava_latest_run::Mode;
use support::app::{HandlerProcess, TestApp, TestSettings};
use support::assert_no_secret_among;
use support::credentials::connected;
use support::fake_strava::FakeStrava;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header-read timeout the in-process apps here run with (the binary's is 10 s).
const SHORT_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a slow or idle client may stay connected before a test fails: far beyond any
/// timeout, so a loaded machine never fails a test that should pass.
const DISCONNECT_GUARD: Duration = Duration::from_secs(30);

/// The same guard for the binary, whose timeout is the default [`ServerLimits::HEADER_READ_TIMEOUT`].
const BINARY_DISCONNECT_GUARD: Duration = Duration::from_secs(60);

/// The webhook's verify token in these tests: a secret like the Strava ones.
const VERIFY_TOKEN: &str = "edge-verify-token-5c1e9a7b";

/// Every value that must never appear in an answer or a log line: [`support::secrets`] (the
/// fake Strava's client secret and tokens, the storage account key), the webhook's verify token
/// and the account key of `settings`' connection string.
fn secrets(strava: &FakeStrava, settings: &TestSettings) -> Vec<String> {
    let mut secrets = support::secrets(strava);
    secrets.push(VERIFY_TOKEN.to_owned());
    if let Some(key) = settings
        .get("AzureWebJobsStorage")
        .and_then(|c| c.split(';').find_map(|p| p.strip_prefix("AccountKey=")))
    {
        secrets.push(key.to_owned());
    }
    assert!(secrets.len() >= 4, "the secrets to look for: {secrets:?}");
    secrets
}

/// A connected app: the fake Strava's credentials stored (nothing cached yet: its first
/// `GetLatestRun` fetches the sample run).
async fn connected_app(strava: &FakeStrava, settings: TestSettings, mode: Mode) -> TestApp {
    let app = TestApp::spawn_with_header_read_timeout(settings, mode, SHORT_HEADER_TIMEOUT).await;
    app.store
        .replace_credentials(&connected(strava))
        .await
        .expect("arrange credentials");
    app
}

/// Whether process `pid` holds (has accepted) a loopback TCP connection whose other end is
/// `client_port`: the connection's socket, found in /proc/net/tcp by its remote port, is among
/// the process's open files. A connection waiting in a listener's queue is in no process's.
/// (Linux only, as the test suite is: elsewhere it never finds one.)
fn holds_connection_from(pid: u32, client_port: u16) -> bool {
    let remote = format!(":{client_port:04X}");
    let inodes: Vec<String> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st, queues, tr, retrnsmt, uid, timeout, inode
            (fields.len() > 9 && fields[2].ends_with(&remote)).then(|| fields[9].to_owned())
        })
        .filter(|inode| inode != "0")
        .collect();
    let Ok(files) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    files.flatten().any(|file| {
        std::fs::read_link(file.path()).is_ok_and(|target| {
            inodes
                .iter()
                .any(|inode| target.to_string_lossy() == format!("socket:[{inode}]"))
        })
    })
}

fn host_port(address: &str) -> &str {
    address.trim_start_matches("http://")
}

/// One answer read off a raw connection.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    /// Header lines, names lower-cased, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Everything received, for the secret scan.
    raw: String,
}

impl RawAnswer {
    fn parse(bytes: &[u8]) -> Option<RawAnswer> {
        let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(RawAnswer {
            status,
            headers,
            body: bytes[split + 4..].to_vec(),
            raw: String::from_utf8_lossy(bytes).into_owned(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `error` code of a JSON error body (`{"error", "message"}`); fails on any other body.
    fn error_code(&self, what: &str) -> String {
        let body: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{what}: not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        });
        let object = body.as_object().unwrap_or_else(|| panic!("{what}: {body}"));
        assert_eq!(object.len(), 2, "{what}: exactly error and message: {body}");
        assert!(
            object
                .get("message")
                .and_then(|m| m.as_str())
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{what}: {:?}",
            self.headers
        );
        object
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or_else(|| panic!("{what}: {body}"))
            .to_owned()
    }
}

/// Sends `request` (a whole request, ideally with `Connection: close`) on a fresh connection and
/// reads until the server closes; what was received, whatever the server did with the rest.
async fn exchange(address: &str, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(host_port(address))
        .await
        .expect("connect");
    // The server may answer and close before it has read everything (a refused head).
    let _ = stream.write_all(request).await;
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = Instant::now() + DISCONNECT_GUARD;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server neither answered nor closed within {DISCONNECT_GUARD:?}"),
        }
    }
    received
}

/// `method path` with `extra` header lines, `Connection: close` and an empty body, answered.
async fn request(address: &str, method: &str, path: &str, extra: &[(&str, &str)]) -> RawAnswer {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in extra {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Connection: close\r\nContent-Length: 0\r\n\r\n");
    let received = exchange(address, text.as_bytes()).await;
    let shown = &path[..path.len().min(60)];
    RawAnswer::parse(&received).unwrap_or_else(|| {
        panic!(
            "{method} {shown}: no answer: {:?}",
            String::from_utf8_lossy(&received)
        )
    })
}

/// How a connection ended: what the server sent before closing it.
async fn wait_for_close(stream: &mut TcpStream, guard: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + guard;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!("a connection was still open after {guard:?}"),
        }
    }
}

/// A slowloris client: sends `prefix` (the start of a request head) at once, then one more byte
/// of a header value every second, never finishing the head, until the server closes the
/// connection or `guard` passes (a failure). What the server sent before closing.
async fn slowloris(address: String, prefix: String, guard: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(host_port(&address))
        .await
        .expect("connect");
    stream
        .write_all(prefix.as_bytes())
        .await
        .expect("send the head's start");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + guard;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        assert!(
            Instant::now() < deadline,
            "a slowloris client was still connected after {guard:?}"
        );
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick() => {
                if stream.write_all(b"a").await.is_err() {
                    return received;
                }
            }
        }
    }
}

/// The start of a request head a slowloris client sends before trickling: it carries a token
/// (the server must never echo or log it).
fn slow_head(token: &str) -> String {
    format!(
        "GET /api/GetLatestRun HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nX-Slow: "
    )
}

/// A client without keep-alive, so a pooled connection the server closed is never reused.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// The status of a `GET` on a new connection (a pooled one may be closed by the short timeout).
async fn status_of(address: &str, path: &str) -> u16 {
    fresh_client()
        .get(format!("{address}{path}"))
        .timeout(DISCONNECT_GUARD)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .status()
        .as_u16()
}

/// Ordinary requests from another client: readiness and the widget's GET, both answered.
async fn ordinary_requests_are_answered(address: &str, secrets: &[String]) {
    let client = fresh_client();
    for (path, status) in [("/", 200), ("/api/GetLatestRun", 200)] {
        let response = client
            .get(format!("{address}{path}"))
            .timeout(DISCONNECT_GUARD)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} while slow clients are held: {e}"));
        assert_eq!(response.status(), status, "GET {path}");
        assert_no_secret_among(
            &format!("{path} headers"),
            &format!("{:?}", response.headers()),
            secrets,
        );
        let body = response.text().await.expect("body");
        assert_no_secret_among(&format!("{path} body"), &body, secrets);
        if path == "/api/GetLatestRun" {
            assert!(support::json(body.as_bytes())["id"].is_i64(), "{body}");
        }
    }
}

/// The most idle connections the slowloris test opens.
const MAX_IDLE_CONNECTIONS: usize = 500;

/// Fewer idle connections than this would no longer show the server coping with many.
const MIN_IDLE_CONNECTIONS: usize = 50;

/// The soft limit on open files of this process, from /proc/self/limits ("Max open files");
/// `None` where that cannot be read or the limit is unlimited.
fn open_files_soft_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many idle connections the slowloris test opens: [`MAX_IDLE_CONNECTIONS`], or fewer
/// under a low open-files limit. Client and server run in this one process, so each idle
/// connection costs two descriptors, and the file's other tests (run in parallel) and the
/// runtime need some too: 300 are left for those, and a third of the rest goes to the idle
/// connections (a soft limit of 1024, a common default, gives 241). Fails if that leaves too
/// few to mean anything.
fn idle_connections_that_fit() -> usize {
    let count = match open_files_soft_limit() {
        Some(soft) => MAX_IDLE_CONNECTIONS.min(soft.saturating_sub(300) / 3),
        None => MAX_IDLE_CONNECTIONS,
    };
    assert!(
        count >= MIN_IDLE_CONNECTIONS,
        "the open-files limit allows only {count} idle connections (raise `ulimit -n`)"
    );
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_while_others_are_served() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url());
    let secrets = secrets(&strava, &settings);
    let app = connected_app(&strava, settings, Mode::Host).await;
    ordinary_requests_are_answered(&app.address, &secrets).await;

    // Up to 500 connections that never send a byte.
    let idle_count = idle_connections_that_fit();
    let mut idle = Vec::new();
    for _ in 0..idle_count {
        idle.push(
            TcpStream::connect(host_port(&app.address))
                .await
                .expect("connect an idle client"),
        );
    }
    // 20 clients sending a head one byte a second.
    let slow: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(slowloris(
                app.address.clone(),
                slow_head(&strava.access_token()),
                DISCONNECT_GUARD,
            ))
        })
        .collect();
    // A kept-alive connection that goes idle after one answer.
    let mut kept_alive = TcpStream::connect(host_port(&app.address))
        .await
        .expect("connect");
    kept_alive
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    while !answer.ends_with(br#"{"status":"ready"}"#) {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(DISCONNECT_GUARD, kept_alive.read(&mut buf))
            .await
            .expect("the first answer on a kept-alive connection")
            .expect("read");
        assert!(n > 0, "closed before answering: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");

    // Everyone else is served meanwhile.
    ordinary_requests_are_answered(&app.address, &secrets).await;

    for client in slow {
        let received = client.await.expect("slowloris client");
        // hyper closes a head that timed out without answering; nothing was ever answered.
        assert!(
            received.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&received)
        );
    }
    let closes = idle
        .iter_mut()
        .map(|stream| wait_for_close(stream, DISCONNECT_GUARD));
    for received in futures_util::future::join_all(closes).await {
        assert!(received.is_empty(), "an idle connection got {received:?}");
    }
    let after = wait_for_close(&mut kept_alive, DISCONNECT_GUARD).await;
    assert!(after.is_empty(), "{after:?}");

    // And the server still serves once they are gone.
    ordinary_requests_are_answered(&app.address, &secrets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_binary_closes_slow_clients_and_logs_no_secret() {
    let strava = FakeStrava::start().await;
    // Debug level: the connection closes are logged too, and must not carry the head.
    let settings = TestSettings::new(&strava.base_url())
        .with("RUST_LOG", "debug")
        .with("STRAVA_WEBHOOK_VERIFY_TOKEN", VERIFY_TOKEN);
    let secrets = secrets(&strava, &settings);
    settings
        .store()
        .replace_credentials(&connected(&strava))
        .await
        .expect("arrange credentials");
    // Standalone, where anyone can connect (behind a host, the host is the only peer and the
    // timeout is longer than its connection pool keeps idle connections).
    let mut handler = HandlerProcess::spawn_standalone(&settings).await;
    handler.wait_ready().await;

    let slow: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(slowloris(
                handler.address.clone(),
                slow_head(&strava.access_token()),
                BINARY_DISCONNECT_GUARD,
            ))
        })
        .collect();
    let mut idle = TcpStream::connect(host_port(&handler.address))
        .await
        .expect("connect");
    ordinary_requests_are_answered(&handler.address, &secrets).await;
    for client in slow {
        let received = client.await.expect("slowloris client");
        assert!(received.is_empty(), "{received:?}");
    }
    assert!(wait_for_close(&mut idle, BINARY_DISCONNECT_GUARD)
        .await
        .is_empty());
    ordinary_requests_are_answered(&handler.address, &secrets).await;

    let status = handler.terminate().await;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let output = handler.output();
    assert!(!output.contains("panicked"), "{output}");
    assert_no_secret_among("the handler's log", &output, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_behind_the_host_leaves_a_client_stuck_mid_head_after_its_grace() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url());
    let mut handler = HandlerProcess::spawn(&settings, &[]).await;
    handler.wait_ready().await;

    // Behind a host there is no head timeout: without a bound on the shutdown, this
    // client would hold the process for good, and the held tokens would never be saved.
    let mut stuck = TcpStream::connect(host_port(&handler.address))
        .await
        .expect("connect");
    stuck
        .write_all(slow_head(&strava.access_token()).as_bytes())
        .await
        .expect("send the head's start");
    // The shutdown must begin after the server took the connection: one still in the
    // listener's queue is never served, nor waited for (a busy machine can be that slow).
    let pid = handler.pid().expect("running");
    let client_port = stuck.local_addr().expect("local address").port();
    let until = Instant::now() + Duration::from_secs(30);
    while !holds_connection_from(pid, client_port) {
        assert!(
            Instant::now() < until,
            "the handler never took the connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = handler
        .terminate_within(ServerLimits::SHUTDOWN_GRACE + BINARY_DISCONNECT_GUARD)
        .await;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let output = handler.output();
    assert!(
        output.contains("connections still open"),
        "the shutdown waited for the stuck client, then left it: {output}"
    );
    assert!(!output.contains("panicked"), "{output}");
    assert_no_secret_among("the handler's log", &output, &secrets(&strava, &settings));
    drop(stuck);
}

#[tokio::test]
async fn heads_over_the_caps_get_431_and_the_server_keeps_serving() {
    let strava = FakeStrava::start().await;
    let settings = TestSettings::new(&strava.base_url());
    let secrets = secrets(&strava, &settings);
    let app = connected_app(&strava, settings, Mode::Host).await;
    let head = |lines: &str| {
        format!(
            "GET /api/GetLatestRun HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{lines}\r\n"
        )
    };

    // Within the caps: served (the caps are where docs/operations.md says).
    let many: String = (0..ServerLimits::MAX_HEADERS - 3)
        .map(|i| format!("X-Edge-{i}: {i}\r\n"))
        .collect();
    let big = format!(
        "X-Big: {}\r\n",
        "b".repeat(ServerLimits::MAX_HEAD_BYTES - 1024)
    );
    for (what, lines) in [("many headers", &many), ("a big header", &big)] {
        let answer = RawAnswer::parse(&exchange(&app.address, head(lines).as_bytes()).await)
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(answer.status, 200, "{what} within the caps");
        assert_no_secret_among(what, &answer.raw, &secrets);
    }

    // Over the caps: hyper's 431, before the routes see anything.
    let too_many: String = (0..ServerLimits::MAX_HEADERS + 20)
        .map(|i| format!("X-Edge-{i}: {i}\r\n"))
        .collect();
    let too_big = format!(
        "X-Big: {}\r\n",
        "b".repeat(ServerLimits::MAX_HEAD_BYTES + 1024)
    );
    for (what, lines) in [
        ("too many headers", &too_many),
        ("a header too big", &too_big),
    ] {
        let received = exchange(&app.address, head(lines).as_bytes()).await;
        let status_line = String::from_utf8_lossy(&received)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            status_line, "HTTP/1.1 431 Request Header Fields Too Large",
            "{what}"
        );
        assert_no_secret_among(what, &String::from_utf8_lossy(&received), &secrets);
        assert_eq!(
            status_of(&app.address, "/").await,
            200,
            "still serving after {what}"
        );
    }

    // A head that never ends stops at the read buffer: the connection is closed (after a 431 if
    // the client could still read it), and the server keeps serving.
    let endless = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: {}",
        "e".repeat(4 * ServerLimits::MAX_BUFFER_BYTES)
    );
    let received = exchange(&app.address, endless.as_bytes()).await;
    assert!(
        received.is_empty() || received.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&received[..received.len().min(200)])
    );
    assert_eq!(status_of(&app.address, "/api/GetLatestRun").await, 200);
}

/// What a path is, for the route table.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// `GET /` and `HEAD /`: readiness.
    Readiness,
    /// A public read-only function (GetLatestRun, Widget): `GET`/`HEAD` answer `get` (with the
    /// error code for an error), `OPTIONS` is the preflight, other methods `405`.
    ReadOnly(u16, Option<&'static str>),
    /// `StravaWebhook` with a verify token: `GET` is the validation and `POST` an event (both
    /// `400 bad_request` for an empty request), other methods `405`.
    Webhook,
    /// `/{Function}`: the host's invocation route (an empty body is `400 bad_request`) in host
    /// mode, unknown standalone.
    Invocation,
    /// Not a route: `404 not_found` whatever the method.
    Unknown,
}

/// The documented routes (docs/api.md), their equivalents, and near misses.
fn route_table() -> Vec<(String, Route)> {
    use Route::*;
    let get_latest_run = ReadOnly(200, None);
    let widget_file = ReadOnly(200, None);
    let no_such_file = ReadOnly(404, Some("not_found"));
    let mut table: Vec<(String, Route)> = [
        ("/", Readiness),
        ("/api/GetLatestRun", get_latest_run),
        ("/api/GetLatestRun?format=svg", get_latest_run),
        ("/API/getlatestrun", get_latest_run),
        ("/api/GetLatestRun/", get_latest_run),
        (
            "/api/GetLatestRun?format=xml",
            ReadOnly(400, Some("bad_request")),
        ),
        ("/api/GetRunningYear", get_latest_run),
        ("/api/getrunningyear?format=svg", get_latest_run),
        (
            "/api/GetRunningYear?year=26",
            ReadOnly(400, Some("bad_request")),
        ),
        (
            "/api/GetRunningYear?year=1999",
            ReadOnly(404, Some("year_not_indexed")),
        ),
        ("/api/widget/latest-run.js", widget_file),
        ("/api/widget/demo.html", widget_file),
        ("/api/Widget/Latest-Run.JS", widget_file),
        ("/api/widget/nonexistent.js", no_such_file),
        ("/api/widget/latest-run.js.map", no_such_file),
        ("/api/widget/latest%2Drun.js", no_such_file),
        ("/api/widget/..", no_such_file),
        ("/api/widget/%2e%2e", no_such_file),
        ("/api/widget", no_such_file),
        ("/api/widget/", no_such_file),
        ("/api/StravaWebhook", Webhook),
        ("/api/stravawebhook", Webhook),
        ("/api/StravaWebhook/", Webhook),
        ("/api/StravaWebhook/k3W9-fQ_2xYbN7mLpR4sTuVw", Webhook),
        ("/api/StravaWebhook/guess", Webhook),
        ("/api/StravaWebhook/k3W9-fQ_2xYbN7mLpR4sTuVw/x", Unknown),
        ("/api/StravaWebhook//k3W9-fQ_2xYbN7mLpR4sTuVw", Unknown),
        ("/GetLatestRun", Invocation),
        ("/GetRunningYear", Invocation),
        ("/RefreshToken", Invocation),
        ("/refreshtoken", Invocation),
        ("/StravaWebhook", Invocation),
        ("/Widget", Invocation),
        ("/api", Unknown),
        ("/api/", Unknown),
        ("/api/RefreshToken", Unknown),
        ("/api/NoSuchFunction", Unknown),
        ("/api/GetLatestRunX", Unknown),
        ("/api/GetRunningYear/2026", Unknown),
        ("/api/GetLatestRun/extra", Unknown),
        ("/api/widget/../..", Unknown),
        ("/api/widget/../GetLatestRun", Unknown),
        ("/api/widget/latest-run.js/x", Unknown),
        ("/api/%47etLatestRun", Unknown),
        ("/%61pi/GetLatestRun", Unknown),
        ("/api/GetLatestRun%2F", Unknown),
        ("//api/GetLatestRun", Unknown),
        ("/api//GetLatestRun", Unknown),
        ("/api/GetLatestRun//", Unknown),
        ("//", Unknown),
        ("///", Unknown),
        ("/api/widget//latest-run.js", Unknown),
        ("//RefreshToken", Unknown),
        ("/NoSuchFunction", Unknown),
        ("/index.html", Unknown),
        ("/favicon.ico", Unknown),
        ("/.env", Unknown),
    ]
    .into_iter()
    .map(|(p, r)| (p.to_owned(), r))
    .collect();
    table.push((format!("/api/{}", "G".repeat(8 * 1024)), Unknown));
    table.push(("/api/widget/x".repeat(1000), Unknown));
    table
}

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// The status, error code and `Allow` header the route table says `method path` gets.
fn expected(
    mode: Mode,
    method: &str,
    route: Route,
) -> (u16, Option<&'static str>, Option<&'static str>) {
    let not_allowed = |allow| (405, Some("method_not_allowed"), Some(allow));
    match route {
        Route::Readiness if method == "GET" || method == "HEAD" => (200, None, None),
        Route::ReadOnly(status, code) if method == "GET" || method == "HEAD" => {
            (status, code, None)
        }
        Route::ReadOnly(..) if method == "OPTIONS" => (204, None, None),
        Route::ReadOnly(..) => not_allowed("GET, HEAD, OPTIONS"),
        Route::Webhook if method == "GET" || method == "POST" => (400, Some("bad_request"), None),
        Route::Webhook => not_allowed("GET, POST"),
        Route::Invocation if mode == Mode::Host && method == "POST" => {
            (400, Some("bad_request"), None)
        }
        Route::Invocation if mode == Mode::Host => not_allowed("POST"),
        Route::Readiness | Route::Invocation | Route::Unknown => (404, Some("not_found"), None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_documented_routes_answer_for_every_method_in_both_modes() {
    let strava = FakeStrava::start().await;
    let settings =
        TestSettings::new(&strava.base_url()).with("STRAVA_WEBHOOK_VERIFY_TOKEN", VERIFY_TOKEN);
    let secrets = secrets(&strava, &settings);
    let table = route_table();
    let mut failures = Vec::new();
    for mode in [Mode::Host, Mode::Standalone] {
        let app = connected_app(&strava, settings.clone(), mode).await;
        for (path, route) in &table {
            for method in METHODS {
                let shown = format!("{mode:?} {method} {}", &path[..path.len().min(60)]);
                let answer = request(&app.address, method, path, &[]).await;
                assert_no_secret_among(&shown, &answer.raw, &secrets);
                let (status, code, allow) = expected(mode, method, *route);
                if answer.status != status {
                    failures.push(format!("{shown}: {} (expected {status})", answer.status));
                    continue;
                }
                if method == "HEAD" {
                    assert!(answer.body.is_empty(), "{shown}: a body for HEAD");
                } else if let Some(code) = code {
                    assert_eq!(answer.error_code(&shown), code, "{shown}");
                } else if status == 200 {
                    assert!(!answer.body.is_empty(), "{shown}: an empty 200");
                }
                if let Some(allow) = allow {
                    assert_eq!(answer.header("allow"), Some(allow), "{shown}");
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The allow-list for the CORS test: two origins, one with a port.
const BLOG: &str = "https://blog.example.com";
const SHOP: &str = "https://www.example.org:8443";

/// Origins that are not on the list, each a near miss of a listed one, or no origin at all.
const NOT_LISTED: [&str; 13] = [
    "null",
    "*",
    "https://evil.test",
    "https://blog.example.com.evil.test",
    "https://evil.test.blog.example.com",
    "https://xblog.example.com",
    "https://blog.example.co",
    "http://blog.example.com",
    "https://blog.example.com:8443",
    "https://www.example.org",
    "https://www.example.org:8444",
    "https://blog.example.com, https://www.example.org:8443",
    "https://blog.example.com https://evil.test",
];

/// Every public route's answers an app gives: the answer, a file, and their errors.
/// `0` stands for the app's GetLatestRun status.
fn public_requests() -> Vec<(&'static str, &'static str, u16)> {
    vec![
        ("GET", "/api/GetLatestRun", 0),
        ("HEAD", "/api/GetLatestRun", 0),
        // The card is an image whatever the answer: errors are drawn, with a 200.
        ("GET", "/api/GetLatestRun?format=svg", 200),
        ("GET", "/api/GetLatestRun?format=xml", 400),
        ("POST", "/api/GetLatestRun", 405),
        ("OPTIONS", "/api/GetLatestRun", 204),
        ("GET", "/api/widget/latest-run.js", 200),
        ("GET", "/api/widget/nonexistent.js", 404),
        ("DELETE", "/api/widget/demo.html", 405),
        ("OPTIONS", "/api/widget/latest-run.js", 204),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_exactly_the_configured_origins_on_every_public_route() {
    // Three apps whose GetLatestRun answers differ: a run (200), no public run (404) and not
    // connected (503); each with the allow-list, then the same without it.
    let strava = FakeStrava::start().await;
    let empty_strava = FakeStrava::start().await;
    empty_strava.set_activities(Vec::new());
    let mut all_secrets = Vec::new();
    for allow_list in [Some(format!("{BLOG}, {SHOP}/")), None] {
        let with_list = |settings: TestSettings| match &allow_list {
            Some(list) => settings.with("WIDGET_ALLOWED_ORIGINS", list.as_str()),
            None => settings,
        };
        let run = with_list(TestSettings::new(&strava.base_url()));
        let no_run = with_list(TestSettings::new(&empty_strava.base_url()));
        all_secrets.extend(secrets(&strava, &run));
        all_secrets.extend(secrets(&empty_strava, &no_run));
        let apps = [
            (200, connected_app(&strava, run, Mode::Standalone).await),
            (
                404,
                connected_app(&empty_strava, no_run.clone(), Mode::Host).await,
            ),
            (
                503,
                TestApp::spawn(with_list(TestSettings::new(&strava.base_url()))).await,
            ),
        ];
        for (answer_status, app) in &apps {
            for (method, path, status) in public_requests() {
                let status = if status == 0 { *answer_status } else { status };
                let origins = [Some(BLOG), Some(SHOP)]
                    .into_iter()
                    .chain(NOT_LISTED.map(Some))
                    .chain([None]);
                for origin in origins {
                    let shown = format!("{method} {path} from {origin:?} ({answer_status} app)");
                    let headers: Vec<(&str, &str)> =
                        origin.map(|o| ("Origin", o)).into_iter().collect();
                    let answer = request(&app.address, method, path, &headers).await;
                    assert_eq!(answer.status, status, "{shown}");
                    if status >= 400 && method != "HEAD" {
                        answer.error_code(&shown);
                    }
                    let allowed = answer.all("access-control-allow-origin");
                    assert!(allowed.len() <= 1, "{shown}: {allowed:?}");
                    match (&allow_list, origin) {
                        (None, _) => {
                            assert_eq!(allowed, ["*"], "{shown}: the default allows any origin");
                        }
                        (Some(_), Some(origin)) if origin == BLOG || origin == SHOP => {
                            assert_eq!(allowed, [origin], "{shown}");
                            assert_eq!(
                                answer.header("access-control-expose-headers"),
                                Some("ETag"),
                                "{shown}"
                            );
                        }
                        (Some(_), _) => {
                            assert!(allowed.is_empty(), "{shown}: {allowed:?}");
                            assert!(
                                answer.header("access-control-expose-headers").is_none(),
                                "{shown}"
                            );
                        }
                    }
                    if allow_list.is_some() {
                        // The answer depends on Origin, whatever it was: caches must key on it.
                        assert!(
                            answer
                                .all("vary")
                                .iter()
                                .flat_map(|v| v.split(','))
                                .any(|v| v.trim().eq_ignore_ascii_case("origin")),
                            "{shown}: {:?}",
                            answer.headers
                        );
                    }
                    assert_no_secret_among(&shown, &answer.raw, &all_secrets);
                }
            }
        }
    }
}
