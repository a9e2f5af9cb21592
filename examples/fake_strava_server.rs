//! The test suite's fake Strava server as a stand-alone process, for `scripts/bench`.
//!
//! Usage: `fake_strava_server [LATENCY_MS]`
//!
//! At start it prints one line to stdout:
//!
//! ```text
//! FAKE_STRAVA base_url=http://127.0.0.1:PORT refresh_token=… access_token=… expires_at=… code=…
//! ```
//!
//! `code` is a single-use authorization code (scope `read,activity:read`) for `handler setup`.
//! Then it reads commands from stdin, one per line:
//!
//! * `calls` → prints `CALLS api_total=N activities=N token_refresh=N token_exchange=N`
//!
//! It exits when stdin closes, on ctrl-c or on SIGTERM.

#[path = "../tests/support/fake_strava.rs"]
mod fake_strava;

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use fake_strava::FakeStrava;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let latency_ms: u64 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .expect("fake_strava_server: LATENCY_MS must be a whole number of milliseconds"),
        None => 0,
    };

    let fake = FakeStrava::start().await;
    fake.set_latency(Duration::from_millis(latency_ms));
    let code = fake.issue_code("read,activity:read");
    println!(
        "FAKE_STRAVA base_url={} refresh_token={} access_token={} expires_at={} code={} client_id={} client_secret={} athlete_id={}",
        fake.base_url(),
        fake.refresh_token(),
        fake.access_token(),
        fake.access_token_expires_at(),
        code,
        fake_strava::CLIENT_ID,
        fake_strava::CLIENT_SECRET,
        fake_strava::ATHLETE_ID,
    );

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("fake_strava_server: cannot listen for SIGTERM");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => match line.trim() {
                    "calls" => {
                        let calls = fake.calls();
                        println!(
                            "CALLS api_total={} activities={} token_refresh={} token_exchange={}",
                            calls.api_total(),
                            calls.activities,
                            calls.token_refresh,
                            calls.token_exchange,
                        );
                    }
                    "" => {}
                    other => println!("ERROR unknown command {other:?}"),
                },
                // stdin closed (or unreadable): the bench is gone.
                Ok(None) | Err(_) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    drop(fake);
}
