//! What a schedule did and saw, as it happened: the deliveries of push events, the instances'
//! lives, storage stalls and slow Strava, and every answer an instance gave, each with its
//! instants. The checker reads it; a failure prints it.

use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What an answer said.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// `GET /api/GetLatestRun` answered a run.
    Run {
        id: i64,
        name: String,
        /// `start_date`, Unix seconds.
        start: i64,
        sport: String,
        distance: f64,
        ytd: f64,
        stale: bool,
    },
    /// `404 no_public_run`.
    NoPublicRun,
    /// `GET /api/GetRunningYear` answered its totals.
    Year {
        count: u64,
        distance: f64,
        moving_time: i64,
        stale: bool,
    },
    /// No answer to check (an error status, or no connection): what happened.
    Failed(String),
}

/// Which route an answer is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    LatestRun,
    RunningYear,
}

impl Route {
    pub fn path(self) -> &'static str {
        match self {
            Route::LatestRun => "/api/GetLatestRun",
            Route::RunningYear => "/api/GetRunningYear",
        }
    }
}

/// One answer of one instance.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The instance process (`i2-1`: slot 2, first process).
    pub process: String,
    pub route: Route,
    pub sent: Instant,
    pub received: Instant,
    pub outcome: Outcome,
}

/// One delivery of a push event (up to three attempts, as Strava makes them).
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The activity the event names.
    pub activity: i64,
    pub aspect: &'static str,
    pub updates: Value,
    /// A delete or "made private": the app takes the activity off with no Strava call.
    pub hides: bool,
    /// The process it went to (`None`: its slot had no instance running).
    pub process: Option<String>,
    pub started: Instant,
    pub ended: Instant,
    pub acknowledged: bool,
    pub attempts: u32,
}

/// One instance process's life.
#[derive(Clone, Debug)]
pub struct Life {
    pub process: String,
    pub slot: usize,
    /// When it answered its first request (ready).
    pub started: Instant,
    /// When it was killed (the signal sent: nothing of it runs after `gone`).
    pub killed: Option<Instant>,
    pub gone: Option<Instant>,
}

/// A stretch of slowness: a slot's storage stalled, or Strava's list or detail slow.
#[derive(Clone, Debug)]
pub struct Slowness {
    /// `storage i2`, `list`, `detail`.
    pub what: String,
    /// The slot whose storage it is (storage stalls only).
    pub slot: Option<usize>,
    pub latency: Duration,
    pub from: Instant,
    /// When it was lifted; requests that arrived just before still wait `latency` more.
    pub until: Instant,
}

impl Slowness {
    /// The last instant a request can be held up by it.
    pub fn ends(&self) -> Instant {
        self.until + self.latency
    }
}

/// A change made at Strava, for the history (the truth keeps the versions).
#[derive(Clone, Debug)]
pub struct ChangeNote {
    pub at: Instant,
    pub text: String,
}

/// A quiet point: when it began, and when every instance agreed with Strava (`None`: not within
/// the deadline).
#[derive(Clone, Debug)]
pub struct Quiet {
    pub phase: usize,
    pub began: Instant,
    pub converged: Option<Instant>,
    /// What disagreed last, when it did not converge.
    pub disagreement: Vec<String>,
}

/// Everything recorded.
#[derive(Default, Debug)]
pub struct Log {
    pub answers: Vec<Answer>,
    pub deliveries: Vec<Delivery>,
    pub lives: Vec<Life>,
    pub slowness: Vec<Slowness>,
    pub changes: Vec<ChangeNote>,
    pub quiet: Vec<Quiet>,
}

/// The log, shared by the schedule's tasks.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Log>>);

impl Recorder {
    pub fn log(&self) -> MutexGuard<'_, Log> {
        // A panicking task must not hide what was recorded.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads an answer of `route` from a status and body.
pub fn outcome_of(route: Route, status: u16, body: &[u8]) -> Outcome {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return Outcome::Failed(format!("{status}, not JSON"));
    };
    let number = |v: &Value| v.as_f64();
    match (route, status) {
        (Route::LatestRun, 200) => {
            let start = json["start_date"].as_str().and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            });
            match (json["id"].as_i64(), json["name"].as_str(), start) {
                (Some(id), Some(name), Some(start)) => Outcome::Run {
                    id,
                    name: name.to_owned(),
                    start: start.unix_timestamp(),
                    sport: json["sport_type"].as_str().unwrap_or_default().to_owned(),
                    distance: number(&json["distance"]).unwrap_or(f64::NAN),
                    ytd: number(&json["year_to_date_run_total_distance"]).unwrap_or(f64::NAN),
                    stale: json["stale"] == Value::Bool(true),
                },
                _ => Outcome::Failed(format!("200 without id, name or start: {json}")),
            }
        }
        (Route::LatestRun, 404) if json["error"] == "no_public_run" => Outcome::NoPublicRun,
        (Route::RunningYear, 200) => {
            let totals = &json["totals"];
            match (
                totals["count"].as_u64(),
                number(&totals["distance"]),
                totals["moving_time"].as_i64(),
            ) {
                (Some(count), Some(distance), Some(moving_time)) => Outcome::Year {
                    count,
                    distance,
                    moving_time,
                    stale: json["stale"] == Value::Bool(true),
                },
                _ => Outcome::Failed(format!("200 without totals: {json}")),
            }
        }
        (_, status) => Outcome::Failed(format!(
            "{status} {}",
            json["error"].as_str().unwrap_or("(no error code)")
        )),
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Run {
                id,
                name,
                start,
                sport,
                distance,
                ytd,
                stale,
            } => {
                let start = time::OffsetDateTime::from_unix_timestamp(*start)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                write!(
                    f,
                    "run {id} {name:?} ({sport}, {start}, {distance} m), year {ytd} m{}",
                    if *stale { ", stale" } else { "" }
                )
            }
            Outcome::NoPublicRun => write!(f, "404 no_public_run"),
            Outcome::Year {
                count,
                distance,
                moving_time,
                stale,
            } => write!(
                f,
                "year: {count} runs, {distance} m, {moving_time} s{}",
                if *stale { ", stale" } else { "" }
            ),
            Outcome::Failed(what) => write!(f, "({what})"),
        }
    }
}
