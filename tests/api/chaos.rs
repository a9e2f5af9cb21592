//! Randomized schedules against three instances on one table, checked against Strava's truth
//! (in the manner of Jepsen). Azure Functions runs several instances of the app on one table;
//! each schedule starts three (in-process, each in a runtime of its own so that a kill stops
//! every task it started, each behind a storage proxy of its own) and one fake Strava, which is
//! the truth, and drives them from a seed:
//!
//! - **At Strava**: uploads of runs (mostly just done, so they become the run shown; and of
//!   rides and walks, which never count; some followers-only or "only me"), renames, privacy
//!   changes both ways, deletes, start dates moved (now and then into last December), sport
//!   changes, often of the run shown or of the one just uploaded. Each change is followed by
//!   its push event (`create`, `update` with `title`, `private` or `type`, `delete`) to a
//!   random instance: once at once (most), late (out of order with later changes), twice, to
//!   two instances at once, or never (dropped).
//! - **Around it**: an instance killed and a new one started on the same table a moment later;
//!   one instance's storage stalled for a moment; Strava's list or detail answering seconds
//!   after it was read (so a list read before an event can arrive after it).
//! - **Visitors**: every instance is asked for `GetLatestRun` (and now and then
//!   `GetRunningYear`) every few hundred milliseconds, all along; with `WIDGET_CACHE_SECONDS=2`
//!   those visits start reconciliation rounds all the time. Every answer is recorded.
//! - **Quiet points**: after each phase of changes (its late events delivered, kills over,
//!   slowness lifted), every instance is asked until all agree with Strava and keep agreeing for
//!   3 s.
//!
//! # What is checked
//!
//! **Convergence, at each quiet point** (within 75 s, generous for a lease held by a killed
//! instance): every instance's `GetLatestRun` is the newest public activity of the counted sport
//! types by start (the id breaks ties) with its current name, start, sport and distance, or
//! `404 no_public_run` when there is none, with `year_to_date_run_total_distance` the sum of this
//! local year's counted public runs; `GetRunningYear`'s totals (count, distance, moving time) are
//! those runs'; neither is stale.
//!
//! **Safety, all along.** An answer is derived from the instance's view of each activity "as
//! Strava held it at some instant κ" (or "taken off by a push event received at κ", whatever
//! Strava held). A `GetLatestRun` answer *fits* an activity at κ when that activity's version
//! at κ gives it: the run shown must have been public, a counted sport, with that name, start,
//! sport and distance; any other activity must have been absent, not public, not counted, or
//! older (by start, then id) than the run shown; `no_public_run` needs every activity absent,
//! not public or not counted. An activity not shown also fits while a `delete` or
//! `private: "true"` event for it was being applied (from its delivery until the app could have
//! applied it, as below). Each version counts from the instant its change at the fake began to
//! the instant the next one's began, and no later than the answer came back. Per instance
//! process and activity there is a **floor**, the least κ the instance must have reached when
//! it is asked, and every answer must fit every activity at some κ at or after its floor; and
//! its totals (`year_to_date_run_total_distance`, `GetRunningYear`'s count, distance and moving
//! time) must be what some such choice of one fitting version per activity adds up to, counting
//! the counted public runs of the athlete's local year. The floor is the largest of:
//!
//! 1. **Events it was told.** An event delivered at `d` and acknowledged at `a` makes the
//!    activity known as of `d` (the app reads it, or takes it off, on receipt or later): for
//!    the instance that acknowledged it from `a + 4 s` on (plus 1 s for each event that instance
//!    received in the 10 s before, as it applies them one at a time, and twice the detail
//!    latency in force, as a create or update reads the activity), for every other instance 7 s
//!    after that (they look at the table every 5 s while visited); if the receiver was killed
//!    first, others take it over after 8 s, so 10 s more. Only the first five create and update
//!    deliveries of a schedule count here (the shared event budget holds 10 calls, and a
//!    taken-over event may spend a second): a later one may wait up to 36 s for its call, and
//!    only rounds make it known. Hides (deletes, made private) cost no call and always count.
//!    An event that was dropped, or not acknowledged, makes nothing known.
//! 2. **Rounds.** A list of activities read at `r` and answered at `l` makes every activity
//!    known as of `r` (as of just before a change of it under way at `r`): for the instance
//!    that read it from `l + 5 s` on, for the others 7 s after that; not if that instance was
//!    killed before; and not for an activity an event could have been applied to from 5 s
//!    before `r` to 5 s after `l` (a round leaves those alone: the event may be newer than its
//!    list).
//! 3. **What it answered before.** Once an answer it gave (and that came back before this one
//!    was asked) fitted an activity only from some κ on, the instance never goes back before κ.
//!
//! Every allowance grows by the length of any storage stall of the instances involved, plus 5 s
//! (storage calls give up after 5 s): the stalls the schedule makes, and any stretch in which
//! Azurite itself took half a second or more to answer one of their requests (a busy machine).
//! So an instance may serve a run Strava deleted or made non-public until the change's event
//! (or, for a dropped event, a round that listed after the change) could have reached it, and
//! never after; and no instance ever shows an older state of an activity than one it showed
//! (a deleted run coming back, a rename reverting, a new upload vanishing).
//!
//! # Running it
//!
//! `CHAOS_SCHEDULES=N` runs N schedules (default 30), `CHAOS_PARALLEL=N` that many at once
//! (default 8: the rest of the suite runs beside them on two cores); the seeds derive from `CHAOS_BASE_SEED` (default: the time). `CHAOS_SEED=S`
//! runs only the schedule of seed S again (the same plan; the app's timing varies; several
//! seeds, separated by spaces or commas, run each, and a seed given twice runs twice);
//! `CHAOS_VERBOSE=1` prints the history of passing schedules too. A failing
//! schedule prints its seed, its violations, the plan and what happened; the test ends with a
//! summary line, `chaos summary: N schedules, P passed, F failed ...`, which `scripts/chaos`
//! reads.

use crate::support::azurite::Azurite;
use crate::support::chaos::plan::Plan;
use crate::support::chaos::rng::derive_seed;
use crate::support::chaos::run::{self, Report};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

fn number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {text:?}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_schedules_on_three_instances_never_show_what_strava_took_back_and_converge() {
    let seeds: Vec<u64> = match std::env::var("CHAOS_SEED") {
        Ok(list) => list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("CHAOS_SEED holds seeds (whole numbers), not {s:?}"))
            })
            .collect(),
        Err(_) => {
            let base = number("CHAOS_BASE_SEED").unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or_default()
            });
            let count = number("CHAOS_SCHEDULES").unwrap_or(30);
            (0..count).map(|i| derive_seed(base, i)).collect()
        }
    };
    let verbose = number("CHAOS_VERBOSE").is_some_and(|v| v > 0);
    let parallel = number("CHAOS_PARALLEL").unwrap_or(8).max(1) as usize;
    // An Azurite of its own: the other tests of the binary do not slow these schedules' storage.
    let azurite = tokio::task::spawn_blocking(Azurite::start)
        .await
        .expect("Azurite started");
    let port = azurite.port();
    let started = Instant::now();
    let total = seeds.len();
    let mut reports: Vec<Report> = Vec::new();
    let mut runs = futures_util::stream::iter(seeds)
        .map(|seed| async move {
            let outcome =
                tokio::spawn(async move { run::run(&Plan::draw(seed), port).await }).await;
            match outcome {
                Ok(report) => report,
                Err(err) => Report {
                    seed,
                    violations: vec![format!("the schedule's run panicked: {err}")],
                    history: format!("{}", Plan::draw(seed)),
                    took: Duration::ZERO,
                    azurite_slow: Duration::ZERO,
                },
            }
        })
        .buffer_unordered(parallel);
    while let Some(report) = runs.next().await {
        if report.passed() {
            eprintln!(
                "chaos: seed {} passed ({:.1} s{})",
                report.seed,
                report.took.as_secs_f64(),
                slow_note(&report)
            );
            if verbose {
                eprintln!("{}", report.history);
            }
            // Thousands of schedules in one run: keep no history that passed.
            reports.push(Report {
                history: String::new(),
                ..report
            });
        } else {
            eprintln!("{}", failure(&report));
            reports.push(report);
        }
    }
    drop(runs);
    drop(azurite);
    let failed: Vec<&Report> = reports.iter().filter(|r| !r.passed()).collect();
    let seeds: Vec<String> = failed.iter().map(|r| r.seed.to_string()).collect();
    eprintln!(
        "chaos summary: {total} schedules, {} passed, {} failed in {:.1} s; failing seeds: {}",
        total - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64(),
        if seeds.is_empty() {
            "none".to_owned()
        } else {
            seeds.join(" ")
        }
    );
    if let Some(first) = failed.first() {
        panic!(
            "{} of {total} schedules failed (seeds {}); the first:\n{}",
            failed.len(),
            seeds.join(" "),
            failure(first)
        );
    }
}

/// How long Azurite was slow during a schedule, if it was (the checks allow for it).
fn slow_note(report: &Report) -> String {
    if report.azurite_slow.is_zero() {
        String::new()
    } else {
        format!(
            "; Azurite slow for {:.1} s",
            report.azurite_slow.as_secs_f64()
        )
    }
}

/// A failed schedule: its seed, how to replay it, its violations, and its history.
fn failure(report: &Report) -> String {
    let mut text = format!(
        "chaos: seed {} FAILED ({:.1} s{}); replay with CHAOS_SEED={} cargo test --test api chaos -- --nocapture\nviolations:\n",
        report.seed,
        report.took.as_secs_f64(),
        slow_note(report),
        report.seed
    );
    const SHOWN: usize = 20;
    for violation in report.violations.iter().take(SHOWN) {
        text.push_str(&format!("  - {violation}\n"));
    }
    if report.violations.len() > SHOWN {
        text.push_str(&format!(
            "  ... and {} more\n",
            report.violations.len() - SHOWN
        ));
    }
    text.push_str(&report.history);
    text
}

#[test]
fn a_seed_draws_the_same_plan_every_time() {
    for seed in [0, 1, 42, 987_654_321] {
        assert_eq!(Plan::draw(seed), Plan::draw(seed));
    }
    assert_ne!(Plan::draw(1), Plan::draw(2));
}
