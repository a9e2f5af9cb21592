//! The test suite's fake Strava server as a stand-alone process, for `scripts/bench` and
//! `scripts/demo`.
//!
//! Usage: `fake_strava_server [LATENCY_MS] [--year-of-runs]`
//!
//! With `--year-of-runs` (the demo) the athlete has a year of runs dated relative to today, for
//! the running-year widget: streaks, a gap in the spring, a long run every week or two, and the
//! sample run (with its photos) this morning. Without it, the samples of `tests/data/strava`.
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

#[path = "../tests/api/support/activities.rs"]
#[allow(dead_code)]
mod activities;
#[path = "../tests/api/support/fake_strava.rs"]
mod fake_strava;

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use fake_strava::FakeStrava;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let year_of_runs = args.iter().any(|a| a == "--year-of-runs");
    let latency_ms: u64 = match args.iter().find(|a| !a.starts_with("--")) {
        Some(arg) => arg
            .parse()
            .expect("fake_strava_server: LATENCY_MS must be a whole number of milliseconds"),
        None => 0,
    };

    let fake = FakeStrava::start().await;
    fake.set_latency(Duration::from_millis(latency_ms));
    if year_of_runs {
        fake.set_activities(a_year_of_runs());
    }
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

/// Runs from the athlete's 1 January to this morning: four or five a week, a two-week gap in
/// the spring, a long run every week or two, an unbroken streak over the last nine days, and the
/// sample run (the one with photos) as this morning's.
fn a_year_of_runs() -> Vec<serde_json::Value> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (_, year_start) = activities::this_year(now);
    let today = (now - year_start) / 86_400;
    let mut runs = Vec::new();
    for day in 0..today {
        let weekday = day % 7;
        let recent = today - day <= 9;
        let gap = (75..89).contains(&day);
        if gap || (!recent && matches!(weekday, 1 | 4)) {
            continue;
        }
        let long = weekday == 6 && day % 14 != 6;
        let distance = if long {
            18_000.0 + (day % 5) as f64 * 1_000.0
        } else {
            5_000.0 + ((day * 37) % 70) as f64 * 100.0
        };
        let start = year_start + day * 86_400 + 6 * 3_600 + (day % 4) * 900;
        let name = if long { "Long run" } else { "Easy run" };
        runs.push(activities::run(17_000_000_000 + day, name, start, distance));
    }
    // This morning: the sample run, whose detail and photos the fake knows.
    let mut sample: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../tests/data/strava/athlete-activities.json"))
            .unwrap_or_default();
    if let Some(mut latest) = sample
        .drain(..)
        .find(|a| a["id"] == serde_json::json!(16128930471_i64))
    {
        let morning = year_start + today * 86_400 + 6 * 3_600;
        let start = morning.min(now - 600);
        let dated = activities::run(16128930471, "", start, 0.0);
        latest["start_date"] = dated["start_date"].clone();
        latest["start_date_local"] = dated["start_date_local"].clone();
        runs.push(latest);
    }
    runs
}
