//! The soak run (`scripts/soak`; not part of the test command): the real `handler` binary,
//! standalone, under steady load on GetLatestRun for ten minutes while webhook events bring new
//! runs, the fake Strava flaps between healthy, slow, 5xx and 429 every 30 s, and a restartable
//! Azurite is stopped and started twice. Prints what a user needs to trust it unattended: total
//! requests, non-2xx answers after the first success, p50/p99 latency, Strava calls against the
//! read budget, and the handler's RSS and open file descriptors at start and end. Exits non-zero
//! when a target is missed.
//!
//! Settings (environment): `SOAK_SECONDS` (600), `SOAK_RATE` (requests per second, 400),
//! `SOAK_CLIENTS` (concurrent clients, 16), `SOAK_FLAP_SECONDS` (30), `SOAK_CACHE_SECONDS` (the
//! app's `WIDGET_CACHE_SECONDS`, 60: short, so that refresh rounds and event rounds meet every
//! kind of Strava weather within the run).

#[path = "api/support/mod.rs"]
mod support;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::app::{run_handler_command, unique_table_name, HandlerProcess, TestSettings};
use support::azurite::Azurite;
use support::credentials::connected;
use support::fake_strava::{FakeStrava, Fault, Scope};

const VERIFY_TOKEN: &str = "soak-verify-token";
/// Strava's read limit per 15 minutes (STRAVA.md); the app must stay within it on its own.
const READ_BUDGET_PER_15_MIN: u32 = 100;
/// A request that takes longer than this counts as hung.
const CLIENT_DEADLINE: Duration = Duration::from_secs(10);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What Strava does during one flap period.
#[derive(Clone, Copy, Debug)]
enum StravaMood {
    Healthy,
    Slow,
    ServerError,
    RateLimited,
}

impl StravaMood {
    const CYCLE: [StravaMood; 4] = [
        StravaMood::Healthy,
        StravaMood::Slow,
        StravaMood::ServerError,
        StravaMood::RateLimited,
    ];

    fn apply(self, strava: &FakeStrava) {
        strava.set_latency(Duration::ZERO);
        strava.set_fault(Scope::All, None);
        match self {
            StravaMood::Healthy => {}
            // Slow but within the app's Strava timeout: answers arrive, late.
            StravaMood::Slow => strava.set_latency(Duration::from_secs(4)),
            StravaMood::ServerError => strava.set_fault(Scope::All, Some(Fault::Status(503))),
            // A 429 without rate-limit headers (a proxy's, or a burst): one that reports the
            // 15-minute read usage over the limit keeps the app from Strava until the quarter
            // hour turns, which would leave the other moods unmet (tests/faults.rs covers it).
            StravaMood::RateLimited => strava.set_fault(Scope::Api, Some(Fault::BareStatus(429))),
        }
    }
}

/// Everything the load clients saw (the load starts after the first success, the warm-up).
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    non_2xx_after_first_success: u64,
    transport_errors: u64,
    hung: u64,
    stale_answers: u64,
    secret_leaks: u64,
}

/// The handler's resident memory (KiB) and open file descriptors, from /proc.
fn process_figures(pid: u32) -> (u64, usize) {
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss_kib, fds)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The sample list with `count` new public runs on top, the newest first.
fn activities_with_new_runs(sample: &[Value], count: i64) -> (Vec<Value>, Option<i64>) {
    let mut list = sample.to_vec();
    let Some(template) = sample
        .iter()
        .find(|a| a["type"] == json!("Run") && a["visibility"] == json!("everyone"))
        .cloned()
    else {
        return (list, None);
    };
    let mut newest = None;
    for n in 1..=count {
        let mut run = template.clone();
        let id = 17_000_000_000 + n;
        run["id"] = json!(id);
        run["name"] = json!(format!("Soak run {n}"));
        let start = time::OffsetDateTime::now_utc() - time::Duration::hours(count - n + 1);
        let stamp = start
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        run["start_date"] = json!(stamp);
        run["start_date_local"] = json!(stamp);
        list.insert(0, run);
        newest = Some(id);
    }
    (list, newest)
}

async fn load_client(
    url: String,
    interval: Duration,
    stop: Arc<AtomicBool>,
    secrets: Arc<Vec<String>>,
) -> Tally {
    let client = reqwest::Client::builder()
        .timeout(CLIENT_DEADLINE)
        .build()
        .expect("an HTTP client");
    let mut tally = Tally::default();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let started = Instant::now();
        let answer = match client.get(&url).send().await {
            Ok(response) => {
                let status = response.status();
                response.text().await.map(|body| (status, body))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok((status, body)) => {
                tally
                    .latencies_us
                    .push(started.elapsed().as_micros() as u64);
                if secrets.iter().any(|s| body.contains(s.as_str())) {
                    tally.secret_leaks += 1;
                }
                if !status.is_success() {
                    tally.non_2xx_after_first_success += 1;
                    eprintln!(
                        "soak: {status} {}",
                        body.chars().take(200).collect::<String>()
                    );
                } else if body.contains("\"stale\":true") {
                    tally.stale_answers += 1;
                }
            }
            Err(e) if e.is_timeout() => tally.hung += 1,
            Err(_) => tally.transport_errors += 1,
        }
    }
    tally
}

/// The wall-clock quarter hour (Strava's 15-minute rate-limit window) `at` falls in.
fn quarter_hour(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 900)
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let seconds = env_number("SOAK_SECONDS", 600);
    let rate = env_number("SOAK_RATE", 400).max(1);
    let clients = env_number("SOAK_CLIENTS", 16).max(1);
    let flap_seconds = env_number("SOAK_FLAP_SECONDS", 30).max(1);
    let cache_seconds = env_number("SOAK_CACHE_SECONDS", 60).max(1);
    let run_for = Duration::from_secs(seconds);

    let mut azurite = Azurite::start_restartable();
    let strava = FakeStrava::start().await;
    let settings = TestSettings {
        values: vec![
            ("AzureWebJobsStorage".into(), azurite.connection_string()),
            ("STRAVA_TABLE_NAME".into(), unique_table_name()),
            ("STRAVA_BASE_URL".into(), strava.base_url()),
            ("STRAVA_WEBHOOK_VERIFY_TOKEN".into(), VERIFY_TOKEN.into()),
            ("WIDGET_CACHE_SECONDS".into(), cache_seconds.to_string()),
            ("RUST_LOG".into(), "info".into()),
        ],
        strava_timeout: None,
    };
    settings
        .store()
        .replace_credentials(&connected(&strava))
        .await
        .expect("credentials stored in Azurite");
    let sample: Vec<Value> =
        serde_json::from_str(include_str!("data/strava/athlete-activities.json"))
            .expect("the sample activity list");

    let handler = HandlerProcess::spawn_standalone(&settings).await;
    handler.wait_ready().await;
    let pid = handler.pid().expect("the handler's pid");
    let callback = format!("{}/api/StravaWebhook", handler.address);
    let (status, output) =
        run_handler_command(&settings, &["subscribe", "--callback-url", &callback], "").await;
    assert!(status.success(), "handler subscribe failed: {output}");

    println!(
        "soak: {seconds} s, {rate} requests/s from {clients} clients, Strava flapping every \
         {flap_seconds} s, Azurite restarted twice, WIDGET_CACHE_SECONDS={cache_seconds}"
    );
    let url = format!("{}/api/GetLatestRun", handler.address);
    // Warm up: the first answer (a cold Strava round), then the starting figures.
    let warm = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut warmed = false;
    while !warmed && Instant::now() < deadline {
        if let Ok(r) = warm.get(&url).timeout(CLIENT_DEADLINE).send().await {
            warmed = r.status().is_success();
        }
        if !warmed {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if !warmed {
        println!(
            "soak: GetLatestRun never answered 2xx within 60 s; output:\n{}",
            handler.output()
        );
        std::process::exit(1);
    }
    let (rss_start, fds_start) = process_figures(pid);
    strava.reset_calls();

    let stop = Arc::new(AtomicBool::new(false));
    let secrets = Arc::new(strava.all_secrets());
    let interval = Duration::from_micros(1_000_000 * clients / rate);
    let started = Instant::now();
    let load: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(load_client(
                url.clone(),
                interval,
                Arc::clone(&stop),
                Arc::clone(&secrets),
            ))
        })
        .collect();

    // Webhook events: a new run every 20 s, delivered as Strava does.
    let events_sent = Arc::new(AtomicU64::new(0));
    let events_unacknowledged = Arc::new(AtomicU64::new(0));
    // (when the event was delivered, the run it announced), and (when the widget first showed a
    // run, which), for the delay from an event to the widget.
    let created = Arc::new(Mutex::new(Vec::<(Instant, i64)>::new()));
    let shown = Arc::new(Mutex::new(Vec::<(Instant, i64)>::new()));
    let strava = Arc::new(strava);
    let events = {
        let (strava, stop, sample) = (Arc::clone(&strava), Arc::clone(&stop), sample.clone());
        let (sent, unacknowledged) = (Arc::clone(&events_sent), Arc::clone(&events_unacknowledged));
        let created = Arc::clone(&created);
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(20)).await;
                n += 1;
                let (list, newest) = activities_with_new_runs(&sample, n);
                strava.set_activities(list);
                let Some(id) = newest else { break };
                if let Ok(mut created) = created.lock() {
                    created.push((Instant::now(), id));
                }
                let event = strava.event("activity", id, "create", json!({}));
                let delivery = strava.deliver_event(&event).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if !delivery.acknowledged {
                    unacknowledged.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let watcher = {
        let (shown, url) = (Arc::clone(&shown), url.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut last = None;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Ok(response) = client.get(&url).timeout(CLIENT_DEADLINE).send().await else {
                    continue;
                };
                let body = response.text().await.unwrap_or_default();
                let id = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["id"].as_i64());
                if id.is_some() && id != last {
                    last = id;
                    if let (Ok(mut shown), Some(id)) = (shown.lock(), id) {
                        shown.push((Instant::now(), id));
                    }
                }
            }
        })
    };

    // Strava flaps; Azurite goes away at one third and two thirds of the run, 15 s each time.
    let mut peak_rss = rss_start;
    let mut restarts = 0;
    let mut outage_ends: Option<Instant> = None;
    let mut next_flap = Instant::now();
    let mut mood = 0usize;
    // Strava's API calls per wall-clock quarter hour: (quarter, calls at its start).
    let mut quarters = vec![(quarter_hour(SystemTime::now()), 0u32)];
    while started.elapsed() < run_for {
        let quarter = quarter_hour(SystemTime::now());
        if quarters.last().is_some_and(|(q, _)| *q != quarter) {
            quarters.push((quarter, strava.calls().api_total()));
        }
        if Instant::now() >= next_flap {
            let current = StravaMood::CYCLE[mood % StravaMood::CYCLE.len()];
            current.apply(&strava);
            mood += 1;
            next_flap += Duration::from_secs(flap_seconds);
        }
        let restart_due = started.elapsed() >= run_for * (restarts + 1) / 3;
        if restarts < 2 && outage_ends.is_none() && restart_due {
            println!(
                "soak: {:>4} s  Azurite stopped",
                started.elapsed().as_secs()
            );
            tokio::task::block_in_place(|| azurite.stop());
            outage_ends = Some(Instant::now() + Duration::from_secs(15));
        }
        if outage_ends.is_some_and(|t| Instant::now() >= t) {
            tokio::task::block_in_place(|| azurite.restart());
            println!(
                "soak: {:>4} s  Azurite restarted",
                started.elapsed().as_secs()
            );
            outage_ends = None;
            restarts += 1;
        }
        peak_rss = peak_rss.max(process_figures(pid).0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    StravaMood::Healthy.apply(&strava);
    let elapsed = started.elapsed();
    let mut tally = Tally::default();
    for client in load {
        let part = client.await.expect("a load client");
        tally.latencies_us.extend(part.latencies_us);
        tally.non_2xx_after_first_success += part.non_2xx_after_first_success;
        tally.transport_errors += part.transport_errors;
        tally.hung += part.hung;
        tally.stale_answers += part.stale_answers;
        tally.secret_leaks += part.secret_leaks;
    }
    events.abort();
    let strava_calls = strava.calls();
    // Idle a moment so connections of the load close, then the closing figures.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_end, fds_end) = process_figures(pid);
    // Strava is healthy again: give the app a window (plus slack) to show the newest run. A 429
    // near the end may keep it from Strava until the rate-limit window turns, so this is a figure,
    // not a target.
    let newest = created
        .lock()
        .ok()
        .and_then(|c| c.last().map(|(_, id)| *id));
    let caught_up_by = Instant::now() + Duration::from_secs(cache_seconds + 30);
    while Instant::now() < caught_up_by
        && shown.lock().ok().and_then(|s| s.last().map(|(_, id)| *id)) != newest
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    watcher.abort();
    let shown_id = shown.lock().ok().and_then(|s| s.last().map(|(_, id)| *id));
    // Each event's delay: until the widget first showed that run or a newer one.
    let (events_shown, delays) = {
        let created = created.lock().map(|c| c.clone()).unwrap_or_default();
        let shown = shown.lock().map(|s| s.clone()).unwrap_or_default();
        let mut delays: Vec<u64> = created
            .iter()
            .filter_map(|(at, id)| {
                shown
                    .iter()
                    .find(|(seen, shown_id)| shown_id >= id && seen >= at)
                    .map(|(seen, _)| seen.duration_since(*at).as_secs())
            })
            .collect();
        delays.sort_unstable();
        (delays.len(), delays)
    };
    // Every secret Strava issued during the run, the rotated tokens too.
    let logs = handler.output();
    let leaks_in_logs = strava
        .all_secrets()
        .iter()
        .filter(|s| logs.contains(s.as_str()))
        .count();

    tally.latencies_us.sort_unstable();
    let total = tally.latencies_us.len() as u64 + tally.hung + tally.transport_errors;
    let api_calls = strava_calls.api_total();
    // Strava counts reads per wall-clock quarter hour: the busiest one must stay in the budget.
    let mut starts: Vec<u32> = quarters.iter().map(|(_, calls)| *calls).collect();
    starts.push(api_calls);
    let busiest_quarter = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let ms = |us: u64| us as f64 / 1000.0;

    println!();
    println!("soak figures ({:.0} s)", elapsed.as_secs_f64());
    println!("  requests                     {total}");
    println!(
        "  requests per second          {:.0}",
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  non-2xx after first success  {} (target 0)",
        tally.non_2xx_after_first_success
    );
    println!(
        "  hung (> {} s)                {} (target 0)",
        CLIENT_DEADLINE.as_secs(),
        tally.hung
    );
    println!(
        "  connection errors            {} (target 0)",
        tally.transport_errors
    );
    println!("  stale answers                {}", tally.stale_answers);
    println!(
        "  latency p50 / p99 / max      {:.2} / {:.2} / {:.2} ms",
        ms(percentile(&tally.latencies_us, 50.0)),
        ms(percentile(&tally.latencies_us, 99.0)),
        ms(tally.latencies_us.last().copied().unwrap_or(0))
    );
    println!(
        "  Strava API calls             {api_calls}; busiest quarter hour {busiest_quarter} \
         (read budget: {READ_BUDGET_PER_15_MIN})"
    );
    println!(
        "  Strava token refreshes       {}",
        strava_calls.token_refresh
    );
    println!(
        "  webhook events               {} sent, {} not acknowledged within 2 s",
        events_sent.load(Ordering::Relaxed),
        events_unacknowledged.load(Ordering::Relaxed)
    );
    println!(
        "  runs shown after their event {events_shown} of {}, delay p50 / max {} / {} s",
        events_sent.load(Ordering::Relaxed),
        percentile(&delays, 50.0),
        delays.last().copied().unwrap_or(0)
    );
    println!(
        "  run shown at the end         {} (newest created: {})",
        shown_id.map_or("none".into(), |id| id.to_string()),
        newest.map_or("none".into(), |id| id.to_string())
    );
    println!(
        "  handler RSS start / peak / end  {:.1} / {:.1} / {:.1} MiB",
        rss_start as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        rss_end as f64 / 1024.0
    );
    println!("  handler open fds start / end    {fds_start} / {fds_end}");
    println!(
        "  secrets in responses / logs  {} / {} (target 0)",
        tally.secret_leaks, leaks_in_logs
    );

    let mut missed = Vec::new();
    if tally.non_2xx_after_first_success > 0 {
        missed.push("non-2xx answers after the first success");
    }
    if tally.hung > 0 || tally.transport_errors > 0 {
        missed.push("requests hung or failed to connect");
    }
    if busiest_quarter > READ_BUDGET_PER_15_MIN {
        missed.push("Strava calls beyond the read budget");
    }
    if tally.secret_leaks > 0 || leaks_in_logs > 0 {
        missed.push("a secret in a response or a log line");
    }
    if fds_end > fds_start + 8 {
        missed.push("open file descriptors grew");
    }
    if missed.is_empty() {
        println!("soak: every target met");
    } else {
        println!("soak: missed: {}", missed.join("; "));
        std::process::exit(1);
    }
}
