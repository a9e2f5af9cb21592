//! Runs one schedule: a fake Strava (the truth), three instances on one table (each in a runtime
//! of its own, behind a storage proxy of its own), visitors on every instance all along, the
//! plan's steps at their times, and a quiet point after each phase; then the checks.

use super::check::{self, Timeline};
use super::plan::{slot_name, Action, Change, Plan, PlannedEvent, INSTANCES};
use super::record::{
    outcome_of, Answer, ChangeNote, Delivery, Life, Outcome, Quiet, Recorder, Route, Slowness,
};
use super::rng::Rng;
use super::truth::{State, Truth};
use crate::support::app::{run_handler_command, TestApp, TestSettings};
use crate::support::azurite::connection_string_for_port;
use crate::support::credentials::connected;
use crate::support::fake_strava::{FakeStrava, ReadKind};
use crate::support::storage_proxy::StorageProxy;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The answers' freshness window: short, so visits start rounds all the time.
pub const CACHE_SECONDS: u32 = 2;
/// How long a quiet point waits for every instance to agree with Strava.
pub const QUIET_DEADLINE: Duration = Duration::from_secs(75);
/// How long every instance must keep agreeing for a quiet point to count as converged.
pub const QUIET_STABLE: Duration = Duration::from_secs(3);
const VERIFY_TOKEN: &str = "chaos-verify-7c1e";

/// What one schedule came to.
pub struct Report {
    pub seed: u64,
    pub violations: Vec<String>,
    /// The plan and everything that happened, for a failure message.
    pub history: String,
    pub took: Duration,
    /// How long, in all, Azurite itself was slow to answer one instance or another.
    pub azurite_slow: Duration,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// An instance: the app in a runtime of its own on its own thread, so that killing it stops
/// every task it started where it stands, as SIGKILL would.
struct Instance {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Instance {
    async fn start(process: &str, settings: TestSettings) -> (Instance, String) {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("chaos-{process}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("an instance's runtime");
                let app = runtime.block_on(async move {
                    let app = TestApp::spawn(settings).await;
                    let _ = ready_tx.send(app.address.clone());
                    let _ = stop_rx.await;
                    app
                });
                // Every task of the instance stops where it is: nothing runs after this.
                drop(runtime);
                drop(app);
            })
            .expect("an instance's thread");
        let address = ready_rx.await.expect("the instance started");
        (
            Instance {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            address,
        )
    }

    async fn kill(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// A running schedule.
struct Schedule {
    strava: FakeStrava,
    table: String,
    proxies: Vec<StorageProxy>,
    /// Per slot: the process running there and its address.
    directory: Mutex<Vec<Option<(String, String)>>>,
    instances: tokio::sync::Mutex<Vec<Option<Instance>>>,
    generations: Mutex<Vec<u32>>,
    recorder: Recorder,
    truth: Mutex<Truth>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Schedule {
    fn settings(&self, caller: &str, storage_port: u16) -> TestSettings {
        TestSettings {
            values: vec![
                (
                    "AzureWebJobsStorage".into(),
                    connection_string_for_port(storage_port),
                ),
                ("STRAVA_TABLE_NAME".into(), self.table.clone()),
                ("STRAVA_BASE_URL".into(), self.strava.base_url_for(caller)),
                ("STRAVA_WEBHOOK_VERIFY_TOKEN".into(), VERIFY_TOKEN.into()),
                ("WIDGET_CACHE_SECONDS".into(), CACHE_SECONDS.to_string()),
                ("RUST_LOG".into(), "warn".into()),
            ],
            strava_timeout: None,
        }
    }

    /// Starts the next process in `slot`.
    async fn start_instance(&self, slot: usize) {
        let generation = {
            let mut generations = lock(&self.generations);
            generations[slot] += 1;
            generations[slot]
        };
        let process = format!("{}-{generation}", slot_name(slot));
        let settings = self.settings(&process, self.proxies[slot].port());
        let (instance, address) = Instance::start(&process, settings).await;
        let started = Instant::now();
        self.instances.lock().await[slot] = Some(instance);
        lock(&self.directory)[slot] = Some((process.clone(), address));
        self.recorder.log().lives.push(Life {
            process,
            slot,
            started,
            killed: None,
            gone: None,
        });
    }

    async fn kill(&self, slot: usize) {
        let process = lock(&self.directory)[slot].take().map(|(p, _)| p);
        let instance = self.instances.lock().await[slot].take();
        let killed = Instant::now();
        if let Some(instance) = instance {
            instance.kill().await;
        }
        let gone = Instant::now();
        if let Some(life) = self
            .recorder
            .log()
            .lives
            .iter_mut()
            .find(|l| Some(&l.process) == process.as_ref())
        {
            life.killed = Some(killed);
            life.gone = Some(gone);
        }
    }

    /// Applies a change at Strava (and to the truth).
    fn change(&self, id: i64, change: &Change) {
        let mut truth = lock(&self.truth);
        let current = truth.current(id).cloned();
        let next: Option<State> = match (change, current) {
            (Change::Upload(spec), _) => Some(truth.state_of(spec)),
            (Change::Delete, _) => None,
            (_, None) => return,
            (Change::Rename(name), Some(state)) => Some(State {
                name: name.clone(),
                ..state
            }),
            (Change::Visibility(to), Some(state)) => Some(State {
                visibility: *to,
                ..state
            }),
            (Change::Redate(when), Some(state)) => Some(State {
                start: truth.resolve(*when),
                ..state
            }),
            (Change::Sport(to), Some(state)) => Some(State {
                sport: *to,
                ..state
            }),
        };
        let at = Instant::now();
        truth.change(&self.strava, id, next.clone());
        let text = match next {
            Some(state) => format!(
                "strava: {id} {change} → {} {:?} {} start {} {} m",
                state.sport,
                state.name,
                state.visibility.as_str(),
                time::OffsetDateTime::from_unix_timestamp(state.start)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                state.distance
            ),
            None => format!("strava: {id} deleted"),
        };
        self.recorder.log().changes.push(ChangeNote { at, text });
    }

    async fn deliver(&self, id: i64, event: &PlannedEvent, slot: usize) {
        let target = lock(&self.directory)[slot].clone();
        let started = Instant::now();
        let (process, acknowledged, attempts) = match target {
            Some((process, address)) => {
                let body = self
                    .strava
                    .event("activity", id, event.aspect, event.updates.clone());
                // To the callback Strava registered (with its secret), on this instance.
                let callback = self.strava.callback_at(&address);
                let delivery = self.strava.deliver_event_to(&callback, &body).await;
                (Some(process), delivery.acknowledged, delivery.attempts)
            }
            None => (None, false, 0),
        };
        self.recorder.log().deliveries.push(Delivery {
            activity: id,
            aspect: event.aspect,
            updates: event.updates.clone(),
            hides: event.hides(),
            process,
            started,
            ended: Instant::now(),
            acknowledged,
            attempts,
        });
    }

    /// A visitor's GET, recorded.
    async fn ask(&self, client: &reqwest::Client, slot: usize, route: Route) -> Option<Answer> {
        let (process, address) = lock(&self.directory)[slot].clone()?;
        let sent = Instant::now();
        let outcome = match client
            .get(format!("{address}{}", route.path()))
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(body) => outcome_of(route, status, &body),
                    Err(err) => Outcome::Failed(format!("{status}, body cut: {err}")),
                }
            }
            Err(err) => Outcome::Failed(format!("no answer: {err}")),
        };
        let answer = Answer {
            process,
            route,
            sent,
            received: Instant::now(),
            outcome,
        };
        self.recorder.log().answers.push(answer.clone());
        Some(answer)
    }

    /// A visitor on `slot` all along: the latest run mostly, the running year now and then.
    async fn visit(self: Arc<Self>, slot: usize, seed: u64, mut stop: watch::Receiver<bool>) {
        let client = visitor();
        let mut rng = Rng::new(seed);
        while !*stop.borrow() {
            let route = if rng.percent(25) {
                Route::RunningYear
            } else {
                Route::LatestRun
            };
            let pause = Duration::from_millis(rng.range(120, 320));
            // While the slot has no instance running, this asks nothing: just wait.
            let _ = self.ask(&client, slot, route).await;
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// What every instance must answer now, per the truth.
    fn expected(&self) -> Expected {
        let truth = lock(&self.truth);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Expected {
            latest: truth.latest().map(|(id, s)| (id, s.clone())),
            year: truth.year_totals(now),
        }
    }

    /// Where `answer` differs from the truth, if it does.
    fn disagreement(&self, answer: &Answer) -> Option<String> {
        let Expected { latest, year } = self.expected();
        let (count, distance, moving_time) = year;
        let ytd = distance;
        let fine = match (&answer.outcome, &latest) {
            (
                Outcome::Run {
                    id,
                    name,
                    start,
                    sport,
                    distance: d,
                    ytd: y,
                    stale,
                },
                Some((tid, t)),
            ) => {
                id == tid
                    && *name == t.name
                    && *start == t.start
                    && sport == t.sport.sport_type()
                    && (d - f64::from(t.distance)).abs() < 0.01
                    && (y - ytd).abs() < 0.01
                    && !stale
            }
            (Outcome::NoPublicRun, None) => answer.route == Route::LatestRun,
            (
                Outcome::Year {
                    count: c,
                    distance: d,
                    moving_time: m,
                    stale,
                },
                _,
            ) => *c == count && (d - distance).abs() < 0.01 && *m == moving_time && !stale,
            _ => false,
        };
        if fine {
            return None;
        }
        let want = match answer.route {
            Route::LatestRun => match &latest {
                Some((id, s)) => format!(
                    "run {id} {:?} ({}, start {}), year {ytd} m",
                    s.name, s.sport, s.start
                ),
                None => "404 no_public_run".into(),
            },
            Route::RunningYear => format!("year: {count} runs, {distance} m, {moving_time} s"),
        };
        Some(format!(
            "{} {} answers {}; Strava says {want}",
            answer.process,
            answer.route.path(),
            answer.outcome
        ))
    }

    /// Waits until every instance agrees with Strava and keeps agreeing for a while.
    async fn quiet_point(&self, phase: usize) {
        self.strava.set_list_latency(Duration::ZERO);
        self.strava.set_detail_latency(Duration::ZERO);
        let began = Instant::now();
        let client = visitor();
        let mut agreeing_since: Option<Instant> = None;
        let mut disagreement = Vec::new();
        let converged = loop {
            disagreement.clear();
            for slot in 0..INSTANCES {
                for route in [Route::LatestRun, Route::RunningYear] {
                    match self.ask(&client, slot, route).await {
                        Some(answer) => disagreement.extend(self.disagreement(&answer)),
                        None => disagreement.push(format!("{} is down", slot_name(slot))),
                    }
                }
            }
            let now = Instant::now();
            if disagreement.is_empty() {
                let since = *agreeing_since.get_or_insert(now);
                if now.duration_since(since) >= QUIET_STABLE {
                    break Some(since);
                }
            } else {
                agreeing_since = None;
            }
            if now.duration_since(began) > QUIET_DEADLINE {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        self.recorder.log().quiet.push(Quiet {
            phase,
            began,
            converged,
            disagreement,
        });
    }
}

/// What every instance must answer at a quiet point.
struct Expected {
    /// The latest run (none: `404 no_public_run`).
    latest: Option<(i64, State)>,
    /// This local year's runs, metres and seconds moving.
    year: (u64, f64, i64),
}

fn visitor() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .expect("a client")
}

/// Runs the schedule `plan` against Azurite on `azurite_port`.
pub async fn run(plan: &Plan, azurite_port: u16) -> Report {
    let epoch = Instant::now();
    let strava = FakeStrava::start().await;
    // Strava's read limits are not the subject here: high enough never to be reached.
    strava.set_rate_limit((1_000_000, 10_000_000), (1_000_000, 10_000_000));
    strava.record_reads(true);
    let began = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut truth = Truth::new(began);
    let initial: Vec<serde_json::Value> = plan
        .initial
        .iter()
        .map(|(id, spec)| {
            let state = truth.state_of(spec);
            let json = state.json(*id);
            truth.initial(*id, state);
            json
        })
        .collect();
    strava.set_activities(initial);
    let mut proxies = Vec::new();
    for _ in 0..INSTANCES {
        proxies.push(StorageProxy::start(azurite_port).await);
    }
    let schedule = Arc::new(Schedule {
        strava,
        table: format!("chaos{}", crate::support::app::unique_table_name()),
        proxies,
        directory: Mutex::new(vec![None; INSTANCES]),
        instances: tokio::sync::Mutex::new((0..INSTANCES).map(|_| None).collect()),
        generations: Mutex::new(vec![0; INSTANCES]),
        recorder: Recorder::default(),
        truth: Mutex::new(truth),
    });

    // Connected and subscribed, as `handler setup` and `handler subscribe` leave a table.
    // Arranging is not what is tested: on a loaded machine a slow storage gets a few tries.
    let direct = schedule.settings("cli", azurite_port);
    let mut tries = 0;
    while let Err(err) = direct
        .store()
        .replace_credentials(&connected(&schedule.strava))
        .await
    {
        tries += 1;
        assert!(tries < 5, "credentials stored: {err}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for slot in 0..INSTANCES {
        schedule.start_instance(slot).await;
    }
    let first = lock(&schedule.directory)[0]
        .clone()
        .map(|(_, address)| address)
        .expect("i1 runs");
    let callback = format!("{first}/api/StravaWebhook");
    let mut tries = 0;
    loop {
        let (status, output) =
            run_handler_command(&direct, &["subscribe", "--callback-url", &callback], "").await;
        if status.success() {
            break;
        }
        tries += 1;
        assert!(
            tries < 5 && output.contains("storage"),
            "handler subscribe: {output}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let visitors: Vec<_> = (0..INSTANCES)
        .map(|slot| {
            tokio::spawn(Arc::clone(&schedule).visit(
                slot,
                plan.seed ^ (slot as u64 + 1),
                stop_rx.clone(),
            ))
        })
        .collect();

    for (number, phase) in plan.phases.iter().enumerate() {
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for step in &phase.steps {
            tokio::time::sleep_until(start + step.at).await;
            let s = Arc::clone(&schedule);
            match step.action.clone() {
                Action::Strava { id, change, event } => {
                    schedule.change(id, &change);
                    for (slot, after) in event.deliveries.clone() {
                        let s = Arc::clone(&schedule);
                        let event = event.clone();
                        tasks.push(tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            s.deliver(id, &event, slot).await;
                        }));
                    }
                }
                Action::Kill { slot, down_for } => tasks.push(tokio::spawn(async move {
                    s.kill(slot).await;
                    tokio::time::sleep(down_for).await;
                    s.start_instance(slot).await;
                })),
                Action::Stall {
                    slot,
                    latency,
                    lasting,
                } => tasks.push(tokio::spawn(async move {
                    let from = Instant::now();
                    s.proxies[slot].set_latency(latency);
                    tokio::time::sleep(lasting).await;
                    s.proxies[slot].set_latency(Duration::ZERO);
                    s.recorder.log().slowness.push(Slowness {
                        what: format!("storage {}", slot_name(slot)),
                        slot: Some(slot),
                        latency,
                        from,
                        until: Instant::now(),
                    });
                })),
                Action::SlowList { latency, lasting } => tasks.push(tokio::spawn(async move {
                    let from = Instant::now();
                    s.strava.set_list_latency(latency);
                    tokio::time::sleep(lasting).await;
                    s.strava.set_list_latency(Duration::ZERO);
                    s.recorder.log().slowness.push(Slowness {
                        what: "list".into(),
                        slot: None,
                        latency,
                        from,
                        until: Instant::now(),
                    });
                })),
                Action::SlowDetail { latency, lasting } => tasks.push(tokio::spawn(async move {
                    let from = Instant::now();
                    s.strava.set_detail_latency(latency);
                    tokio::time::sleep(lasting).await;
                    s.strava.set_detail_latency(Duration::ZERO);
                    s.recorder.log().slowness.push(Slowness {
                        what: "detail".into(),
                        slot: None,
                        latency,
                        from,
                        until: Instant::now(),
                    });
                })),
            }
        }
        for task in tasks {
            task.await.expect("a step's task");
        }
        schedule.quiet_point(number + 1).await;
    }

    let _ = stop_tx.send(true);
    for visitor in visitors {
        let _ = visitor.await;
    }
    for slot in 0..INSTANCES {
        schedule.kill(slot).await;
    }
    crate::support::raw_table::delete_table(&direct).await;
    // Azurite answering slowly (the machine busy) stalls storage as much as a stall the plan
    // made: the checks count both.
    let mut azurite_slow = Duration::ZERO;
    for (slot, proxy) in schedule.proxies.iter().enumerate() {
        for (from, until) in merged(proxy.slow_requests()) {
            azurite_slow += until - from;
            schedule.recorder.log().slowness.push(Slowness {
                what: format!("storage {} (Azurite itself)", slot_name(slot)),
                slot: Some(slot),
                latency: Duration::ZERO,
                from,
                until,
            });
        }
    }

    let timeline = Timeline { epoch };
    let reads = schedule.strava.reads();
    let truth = lock(&schedule.truth);
    let log = schedule.recorder.log();
    let mut violations = Vec::new();
    for quiet in &log.quiet {
        if quiet.converged.is_none() {
            violations.push(format!(
                "quiet point {} (from {:.3} s): the instances did not all agree with Strava \
                 for {} s within {} s: {}",
                quiet.phase,
                timeline.secs(quiet.began),
                QUIET_STABLE.as_secs(),
                QUIET_DEADLINE.as_secs(),
                quiet.disagreement.join("; ")
            ));
        }
    }
    violations.extend(check::safety(timeline, &truth, &log, &reads));
    let history = history(plan, timeline, &log, &reads, &truth);
    Report {
        seed: plan.seed,
        violations,
        history,
        took: epoch.elapsed(),
        azurite_slow,
    }
}

/// Stretches of time that overlap (or nearly touch) joined into one.
fn merged(mut stretches: Vec<(Instant, Instant)>) -> Vec<(Instant, Instant)> {
    stretches.sort();
    let mut joined: Vec<(Instant, Instant)> = Vec::new();
    for (from, until) in stretches {
        match joined.last_mut() {
            Some(last) if from <= last.1 + Duration::from_millis(500) => {
                last.1 = last.1.max(until);
            }
            _ => joined.push((from, until)),
        }
    }
    joined
}

/// The plan, then everything that happened in order, answers folded where an instance said the
/// same thing several times running.
fn history(
    plan: &Plan,
    timeline: Timeline,
    log: &super::record::Log,
    reads: &[crate::support::fake_strava::Read],
    truth: &Truth,
) -> String {
    let mut lines: Vec<(f64, String)> = Vec::new();
    for change in &log.changes {
        lines.push((timeline.secs(change.at), change.text.clone()));
    }
    for d in &log.deliveries {
        let to = d
            .process
            .clone()
            .unwrap_or_else(|| "nobody (slot down)".into());
        lines.push((
            timeline.secs(d.started),
            format!(
                "event {} {} {} → {to}: {} ({} attempts, until {:.3} s)",
                d.aspect,
                d.activity,
                d.updates,
                if d.acknowledged {
                    "acknowledged"
                } else {
                    "NOT acknowledged"
                },
                d.attempts,
                timeline.secs(d.ended)
            ),
        ));
    }
    for life in &log.lives {
        lines.push((
            timeline.secs(life.started),
            format!("{} started (slot {})", life.process, slot_name(life.slot)),
        ));
        if let Some(killed) = life.killed {
            lines.push((timeline.secs(killed), format!("{} killed", life.process)));
        }
    }
    for w in &log.slowness {
        lines.push((
            timeline.secs(w.from),
            format!(
                "{} slow: +{} ms until {:.3} s",
                w.what,
                w.latency.as_millis(),
                timeline.secs(w.until)
            ),
        ));
    }
    for read in reads {
        let what = match read.kind {
            ReadKind::List => "list".to_owned(),
            ReadKind::Detail(id) => format!("detail of {id}"),
        };
        let answered = read
            .answered
            .map_or("never".to_owned(), |a| format!("{:.3} s", timeline.secs(a)));
        lines.push((
            timeline.secs(read.arrived),
            format!(
                "{} read the {what} (status {}, answered at {answered})",
                read.caller, read.status
            ),
        ));
    }
    for quiet in &log.quiet {
        lines.push((
            timeline.secs(quiet.began),
            format!("quiet point {} begins", quiet.phase),
        ));
        if let Some(at) = quiet.converged {
            lines.push((
                timeline.secs(at),
                format!(
                    "quiet point {}: every instance agrees with Strava",
                    quiet.phase
                ),
            ));
        }
    }
    // Answers, per process and route, folded into runs of the same outcome.
    let mut answers: Vec<&Answer> = log.answers.iter().collect();
    answers.sort_by_key(|a| (a.process.clone(), a.route.path(), a.sent));
    let mut i = 0;
    while i < answers.len() {
        let first = answers[i];
        let mut j = i;
        while j + 1 < answers.len()
            && answers[j + 1].process == first.process
            && answers[j + 1].route == first.route
            && answers[j + 1].outcome == first.outcome
        {
            j += 1;
        }
        let last = answers[j];
        lines.push((
            timeline.secs(first.sent),
            format!(
                "{} {} → {}{}",
                first.process,
                match first.route {
                    Route::LatestRun => "latest",
                    Route::RunningYear => "year",
                },
                first.outcome,
                if j > i {
                    format!(
                        " ({} answers until {:.3} s)",
                        j - i + 1,
                        timeline.secs(last.received)
                    )
                } else {
                    format!(" (answered at {:.3} s)", timeline.secs(first.received))
                }
            ),
        ));
        i = j + 1;
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut text = format!("{plan}");
    let _ = writeln!(
        text,
        "Strava at the end: {}",
        truth
            .now()
            .iter()
            .map(|(id, s)| format!(
                "{id} {} {:?} {} start {}",
                s.sport,
                s.name,
                s.visibility.as_str(),
                s.start
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(text, "what happened (seconds from the schedule's start):");
    for (at, line) in lines {
        let _ = writeln!(text, "  {at:>8.3}  {line}");
    }
    text
}
