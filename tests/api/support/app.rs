//! Starts the app for a test: in process on a free port (like zero-to-production's
//! `spawn_app`), or as the real `handler` binary with its output captured. Each app gets a table
//! of its own in the shared Azurite, so tests never see each other's data.

use super::azurite::{free_port, Azurite};
use bytes::Bytes;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strava_latest_run::clock::Clock;
use strava_latest_run::config::{RawSettings, Settings};
use strava_latest_run::store::Store;
use strava_latest_run::{Application, Mode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

/// A table name no other test uses.
pub fn unique_table_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// The settings a test app runs with, as the environment would hold them.
#[derive(Clone, Debug)]
pub struct TestSettings {
    /// Name → value pairs.
    pub values: Vec<(String, String)>,
    /// How long a Strava request may take in an app started in this process (no setting
    /// holds it; the `handler` binary always uses the default).
    pub strava_timeout: Option<Duration>,
}

impl TestSettings {
    /// Shared Azurite, a fresh table, and Strava pointed at `strava_base_url`.
    pub fn new(strava_base_url: &str) -> Self {
        TestSettings {
            values: vec![
                (
                    "AzureWebJobsStorage".into(),
                    Azurite::shared().connection_string(),
                ),
                ("STRAVA_TABLE_NAME".into(), unique_table_name()),
                ("STRAVA_BASE_URL".into(), strava_base_url.into()),
                ("RUST_LOG".into(), "info".into()),
            ],
            strava_timeout: None,
        }
    }

    /// Gives up on a Strava request after `timeout` (apps started in this process only).
    pub fn with_strava_timeout(mut self, timeout: Duration) -> Self {
        self.strava_timeout = Some(timeout);
        self
    }

    /// Sets (or replaces) one value.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.values.retain(|(n, _)| n != name);
        self.values.push((name.into(), value.into()));
        self
    }

    /// Removes one value.
    pub fn without(mut self, name: &str) -> Self {
        self.values.retain(|(n, _)| n != name);
        self
    }

    /// A value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Validated settings.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::from_raw(&RawSettings::from_pairs(self.values.clone()))
            .expect("valid test settings");
        if let Some(timeout) = self.strava_timeout {
            settings.strava_timeout = timeout;
        }
        settings
    }

    /// A store on the same table as the app, for arranging and checking data.
    pub fn store(&self) -> Store {
        Store::connect(&self.settings().storage).expect("store")
    }
}

/// The app running in this process.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// Its settings.
    pub settings: TestSettings,
    /// A store on its table.
    pub store: Store,
    /// A plain HTTP client.
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    /// Starts the app in host mode (every route) on a free port.
    pub async fn spawn(settings: TestSettings) -> TestApp {
        TestApp::spawn_in(settings, Mode::Host).await
    }

    /// Starts the app as `handler standalone` routes it (no invocation routes), on loopback.
    pub async fn spawn_standalone(settings: TestSettings) -> TestApp {
        TestApp::spawn_in(settings, Mode::Standalone).await
    }

    /// Starts the app in `mode` with a header-read timeout of `header_read_timeout` instead of the
    /// binary's: slow and idle connections are closed that much sooner.
    pub async fn spawn_with_header_read_timeout(
        settings: TestSettings,
        mode: Mode,
        header_read_timeout: Duration,
    ) -> TestApp {
        TestApp::start(settings, mode, Some(header_read_timeout), Clock::system()).await
    }

    /// Starts the app in host mode reading "now" from `clock`, which the test may jump.
    pub async fn spawn_with_clock(settings: TestSettings, clock: Clock) -> TestApp {
        TestApp::start(settings, Mode::Host, None, clock).await
    }

    /// Starts the app in host mode reading "now" from `clock`, connected to `strava` (its
    /// credentials stored) and subscribed there with `handler subscribe`, so that the fake
    /// delivers push events to it.
    pub async fn spawn_subscribed(
        strava: &super::fake_strava::FakeStrava,
        settings: TestSettings,
        clock: Clock,
    ) -> TestApp {
        let app = TestApp::spawn_with_clock(settings, clock).await;
        app.store
            .replace_credentials(&super::credentials::connected(strava))
            .await
            .expect("arrange credentials");
        let callback = format!("{}/api/StravaWebhook", app.address);
        let (status, output) = run_handler_command(
            &app.settings,
            &["subscribe", "--callback-url", &callback],
            "",
        )
        .await;
        assert!(status.success(), "{output}");
        app
    }

    async fn spawn_in(settings: TestSettings, mode: Mode) -> TestApp {
        TestApp::start(settings, mode, None, Clock::system()).await
    }

    async fn start(
        settings: TestSettings,
        mode: Mode,
        header_read_timeout: Option<Duration>,
        clock: Clock,
    ) -> TestApp {
        let mut application = Application::bind_with_clock(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            settings.settings(),
            mode,
            clock,
        )
        .await
        .expect("bind");
        if let Some(timeout) = header_read_timeout {
            application = application.with_header_read_timeout(timeout);
        }
        let address = format!("http://127.0.0.1:{}", application.port());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(application.run_until(async {
            let _ = rx.await;
        }));
        TestApp {
            address,
            store: settings.store(),
            settings,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
        }
    }

    /// A forwarded-form request (what the host sends with forwarding on).
    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path_and_query))
            .send()
            .await
            .expect("GET")
    }

    /// A forwarded-form GET read as JSON: the status and the body.
    pub async fn get_json(&self, path_and_query: &str) -> (u16, serde_json::Value) {
        get_json_at(&self.client, &self.address, path_and_query).await
    }

    /// Polls a GET as JSON until `done` holds or `deadline` has passed; the last answer.
    pub async fn poll_json(
        &self,
        path_and_query: &str,
        deadline: Duration,
        done: impl Fn(u16, &serde_json::Value) -> bool,
    ) -> (u16, serde_json::Value) {
        poll_json_at(&self.client, &self.address, path_and_query, deadline, done).await
    }

    /// An invocation-form request exactly as the host sends it: chunked, host headers.
    pub async fn invoke(&self, function: &str, body: impl Into<String>) -> reqwest::Response {
        invoke_at(&self.client, &self.address, function, body.into()).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A GET of `address` + `path_and_query` read as JSON: the status and the body.
pub async fn get_json_at(
    client: &reqwest::Client,
    address: &str,
    path_and_query: &str,
) -> (u16, serde_json::Value) {
    let response = client
        .get(format!("{address}{path_and_query}"))
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, super::json(&response.bytes().await.expect("body")))
}

/// GETs `path_and_query` as JSON every 100 ms until `done` holds for the answer or `deadline`
/// has passed; the last answer.
pub async fn poll_json_at(
    client: &reqwest::Client,
    address: &str,
    path_and_query: &str,
    deadline: Duration,
    done: impl Fn(u16, &serde_json::Value) -> bool,
) -> (u16, serde_json::Value) {
    let until = Instant::now() + deadline;
    loop {
        let (status, body) = get_json_at(client, address, path_and_query).await;
        if done(status, &body) || Instant::now() > until {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// POSTs an invocation body the way the host does (no Content-Length: chunked).
pub async fn invoke_at(
    client: &reqwest::Client,
    address: &str,
    function: &str,
    body: String,
) -> reqwest::Response {
    try_invoke_at(client, address, function, body)
        .await
        .expect("POST invocation")
}

/// Like [`invoke_at`], for a handler that may not answer (killed meanwhile).
pub async fn try_invoke_at(
    client: &reqwest::Client,
    address: &str,
    function: &str,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .into_bytes()
        .chunks(512)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    client
        .post(format!("{address}/{function}"))
        .header("Content-Type", "application/json; charset=utf-8")
        .header(
            "X-Azure-Functions-InvocationId",
            "5f0c2a9e-8d3b-4f61-9e7a-1b2c3d4e5f60",
        )
        .header("X-Azure-Functions-HostVersion", "4.1037.0.23568")
        .header("User-Agent", "Azure-Functions-Host/4.1037.0.23568")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
}

/// The fixture of the RefreshToken timer's ordinary occurrence, as the host sends it.
pub const TIMER: &str = "timer-invocation-request.json";

/// One ordinary RefreshToken timer invocation, as the host sends it: status and body.
pub async fn run_timer(client: &reqwest::Client, address: &str) -> (u16, String) {
    run_timer_with(client, address, TIMER).await
}

/// The RefreshToken timer as the host sends it, with the fixture `name` (a past-due occurrence,
/// say): status and body.
pub async fn run_timer_with(client: &reqwest::Client, address: &str, name: &str) -> (u16, String) {
    let response = invoke_at(client, address, "RefreshToken", fixture(name)).await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// A fixture payload from tests/data/functions-host.
pub fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/functions-host")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The real `handler` binary, started as the Functions host starts it.
pub struct HandlerProcess {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// When the process was spawned.
    pub started_at: Instant,
    child: tokio::process::Child,
    output: Arc<Mutex<String>>,
}

impl HandlerProcess {
    /// Spawns `handler` with `FUNCTIONS_CUSTOMHANDLER_PORT` and the given settings, from an empty
    /// working directory (so no local.settings.json is read).
    pub async fn spawn(settings: &TestSettings, args: &[&str]) -> HandlerProcess {
        Self::spawn_with_env(settings, args, &[]).await
    }

    /// Stores credentials of `strava` and spawns `handler` (host mode), ready.
    pub async fn spawn_connected(
        settings: &TestSettings,
        strava: &super::fake_strava::FakeStrava,
    ) -> HandlerProcess {
        settings
            .store()
            .replace_credentials(&super::credentials::connected(strava))
            .await
            .expect("arrange credentials");
        let handler = HandlerProcess::spawn(settings, &[]).await;
        handler.wait_ready().await;
        handler
    }

    /// Like [`HandlerProcess::spawn`], with extra environment variables that need not be UTF-8.
    pub async fn spawn_with_env(
        settings: &TestSettings,
        args: &[&str],
        extra_env: &[(std::ffi::OsString, std::ffi::OsString)],
    ) -> HandlerProcess {
        let port = free_port();
        let mut command = handler_command(settings, args);
        command.envs(extra_env.iter().map(|(k, v)| (k, v)));
        command
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("PORT", port.to_string());
        Self::start(command, port)
    }

    /// Spawns `handler standalone --port N` on a free port, as a user without a Functions host
    /// runs it (no `FUNCTIONS_CUSTOMHANDLER_PORT`, no `PORT`: the port comes from the flag).
    pub async fn spawn_standalone(settings: &TestSettings) -> HandlerProcess {
        let port = free_port();
        let port_text = port.to_string();
        let command = handler_command(settings, &["standalone", "--port", &port_text]);
        Self::start(command, port)
    }

    fn start(mut command: tokio::process::Command, port: u16) -> HandlerProcess {
        command.stdin(Stdio::null());
        let started_at = Instant::now();
        let mut child = command.spawn().expect("spawn handler");
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            collect_lines(stdout, Arc::clone(&output));
        }
        if let Some(stderr) = child.stderr.take() {
            collect_lines(stderr, Arc::clone(&output));
        }
        HandlerProcess {
            address: format!("http://127.0.0.1:{port}"),
            started_at,
            child,
            output,
        }
    }

    /// Polls `GET /` like the host does (every few ms) until any answer; the time it took.
    pub async fn wait_ready(&self) -> Duration {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if client
                .get(format!("{}/", self.address))
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok()
            {
                return self.started_at.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "handler did not answer GET / within 20 s; output:\n{}",
            self.output()
        );
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        self.terminate_within(Duration::from_secs(10)).await
    }

    /// Sends SIGTERM and waits up to `guard` for the exit status (a test failure beyond it).
    pub async fn terminate_within(&mut self, guard: Duration) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let status = tokio::time::timeout(guard, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("handler still running {guard:?} after SIGTERM"))
            .expect("exit status");
        // Let the output readers drain.
        tokio::time::sleep(Duration::from_millis(100)).await;
        status
    }

    /// Kills the process with SIGKILL (a crash, or the platform pulling the plug: nothing runs
    /// after it) and waits until it is gone.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("SIGKILL the handler");
    }

    /// Waits for the process to exit by itself (start-up failures).
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("handler exits")
            .expect("exit status");
        // Let the output readers drain.
        tokio::time::sleep(Duration::from_millis(100)).await;
        status
    }
}

fn collect_lines<R>(reader: R, sink: Arc<Mutex<String>>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut s) = sink.lock() {
                s.push_str(&line);
                s.push('\n');
            }
        }
    });
}

/// Runs `handler` with arguments to completion (the CLI commands), feeding `stdin`; returns the
/// exit status and everything it printed.
pub async fn run_handler_command(
    settings: &TestSettings,
    args: &[&str],
    stdin: &str,
) -> (std::process::ExitStatus, String) {
    use tokio::io::AsyncWriteExt;
    let mut command = handler_command(settings, args);
    command.stdin(Stdio::piped());
    let mut child = command.spawn().expect("spawn handler");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes()).await;
    }
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("command finishes")
        .expect("output");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status, text)
}

/// The `handler` binary with only the test's settings in its environment, run from an empty
/// directory (so no local.settings.json is read), its output piped.
fn handler_command(settings: &TestSettings, args: &[&str]) -> tokio::process::Command {
    let workdir = std::env::temp_dir().join(format!("handler-cwd-{}", unique_table_name()));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"));
    command
        .args(args)
        .current_dir(&workdir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in &settings.values {
        command.env(name, value);
    }
    command
}
