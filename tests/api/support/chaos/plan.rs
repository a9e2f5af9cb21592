//! A schedule, drawn from a seed before it runs: the activities Strava starts with, then phases
//! of timed steps (changes at Strava with the push events that follow them, instances killed and
//! restarted, storage stalled, Strava slow), each phase followed by a quiet point. The same seed
//! always draws the same plan; only the interleaving with the app's own timing varies.

use super::rng::Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Instances on the one table.
pub const INSTANCES: usize = 3;
/// The first activity id a schedule uses.
pub const FIRST_ID: i64 = 40_000_000_001;
/// The most activities a schedule uploads in all (a window's round lists the newest 60, so the
/// list always holds every activity).
const MAX_ACTIVITIES: usize = 40;

/// An activity's sport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sport {
    Run,
    TrailRun,
    VirtualRun,
    Ride,
    Walk,
}

impl Sport {
    /// Strava's `sport_type`.
    pub fn sport_type(self) -> &'static str {
        match self {
            Sport::Run => "Run",
            Sport::TrailRun => "TrailRun",
            Sport::VirtualRun => "VirtualRun",
            Sport::Ride => "Ride",
            Sport::Walk => "Walk",
        }
    }

    /// Strava's older `type` field.
    pub fn activity_type(self) -> &'static str {
        match self {
            Sport::Run | Sport::TrailRun => "Run",
            Sport::VirtualRun => "VirtualRun",
            Sport::Ride => "Ride",
            Sport::Walk => "Walk",
        }
    }

    /// Whether it counts as a run (the default `WIDGET_SPORT_TYPES`).
    pub fn counts(self) -> bool {
        matches!(self, Sport::Run | Sport::TrailRun | Sport::VirtualRun)
    }
}

/// Who may see an activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    Everyone,
    Followers,
    OnlyMe,
}

impl Visibility {
    /// Strava's `visibility`.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Everyone => "everyone",
            Visibility::Followers => "followers_only",
            Visibility::OnlyMe => "only_me",
        }
    }
}

/// When an activity started, relative to the schedule (so a replay on another day draws the
/// same schedule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// This many seconds before the schedule began.
    Ago(i64),
    /// This many seconds before the athlete's local New Year of the year the schedule runs in:
    /// last year's run.
    LastYear(i64),
}

/// An activity as uploaded.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub name: String,
    pub sport: Sport,
    pub visibility: Visibility,
    pub when: When,
    /// Whole metres, so sums are exact.
    pub distance: u32,
}

/// A change at Strava.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Upload(Spec),
    Rename(String),
    Visibility(Visibility),
    Delete,
    Redate(When),
    Sport(Sport),
}

/// The push event a change is followed by, and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedEvent {
    /// `create`, `update` or `delete`.
    pub aspect: &'static str,
    /// The event's `updates`.
    pub updates: Value,
    /// What the schedule does with it (for the history).
    pub fate: &'static str,
    /// Each delivery: the instance slot and how long after the change.
    pub deliveries: Vec<(usize, Duration)>,
}

impl PlannedEvent {
    /// Whether the app takes it as "take the activity off at once, no call": a delete, or an
    /// update saying it is private now.
    pub fn hides(&self) -> bool {
        self.aspect == "delete" || self.updates.get("private") == Some(&json!("true"))
    }
}

/// One step of a phase.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Activity `id` changes at Strava, followed by `event` (none: Strava says nothing).
    Strava {
        id: i64,
        change: Change,
        event: PlannedEvent,
    },
    /// The instance in `slot` is killed (its runtime dropped, like SIGKILL: no task runs on)
    /// and a new one starts on the same table after `down_for`.
    Kill { slot: usize, down_for: Duration },
    /// Every storage request of the instance in `slot` waits `latency` for `lasting`.
    Stall {
        slot: usize,
        latency: Duration,
        lasting: Duration,
    },
    /// The activity list answers `latency` after it was read, for `lasting`.
    SlowList {
        latency: Duration,
        lasting: Duration,
    },
    /// Likewise the activity detail.
    SlowDetail {
        latency: Duration,
        lasting: Duration,
    },
}

/// A step and when it runs, from the phase's start.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub action: Action,
}

/// Steps, then a quiet point.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    pub steps: Vec<Step>,
}

/// A whole schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub seed: u64,
    /// What Strava holds before the instances start: id → activity.
    pub initial: Vec<(i64, Spec)>,
    pub phases: Vec<Phase>,
}

/// What the drawing knows of an activity.
#[derive(Clone, Copy)]
struct Known {
    visibility: Visibility,
    sport: Sport,
    when: When,
}

impl Known {
    /// Orders activities by start, newest greatest.
    fn recency(&self) -> i64 {
        match self.when {
            When::Ago(seconds) => -seconds,
            When::LastYear(seconds) => -400 * 86_400 - seconds,
        }
    }

    /// Shown by the widget when it is the newest of these.
    fn counts(&self) -> bool {
        self.visibility == Visibility::Everyone && self.sport.counts()
    }
}

struct Drawing {
    rng: Rng,
    next_id: i64,
    names: u32,
    /// Activities at Strava now (deleted ones gone).
    live: BTreeMap<i64, Known>,
    uploaded: usize,
    /// The activity uploaded last.
    last_upload: Option<i64>,
}

const WORDS: &[&str] = &[
    "Morning Run",
    "Tempo",
    "Long run",
    "Hill repeats",
    "Easy miles",
    "Intervals",
    "Recovery",
    "Parkrun",
    "Lunch run",
    "Track 400s",
];

impl Drawing {
    fn name(&mut self) -> String {
        self.names += 1;
        format!("{} {}", self.rng.pick(WORDS), self.names)
    }

    fn when(&mut self) -> When {
        if self.rng.percent(8) {
            // Last December, well inside the years the index looks at.
            When::LastYear(self.rng.range(3_600, 20 * 86_400) as i64)
        } else {
            // From ten minutes to twenty days ago.
            When::Ago(self.rng.range(600, 20 * 86_400) as i64)
        }
    }

    /// An upload's start: mostly within the last hours (the run just done, which becomes the
    /// one shown), else any time in the last weeks.
    fn upload_when(&mut self) -> When {
        if self.rng.percent(55) {
            When::Ago(self.rng.range(60, 6 * 3_600) as i64)
        } else {
            self.when()
        }
    }

    fn spec(&mut self) -> Spec {
        let sport = [
            Sport::Run,
            Sport::TrailRun,
            Sport::VirtualRun,
            Sport::Ride,
            Sport::Walk,
        ][self.rng.weighted(&[60, 10, 5, 15, 10])];
        let visibility = [
            Visibility::Everyone,
            Visibility::Followers,
            Visibility::OnlyMe,
        ][self.rng.weighted(&[85, 5, 10])];
        Spec {
            name: self.name(),
            sport,
            visibility,
            when: self.upload_when(),
            distance: self.rng.range(3_000, 21_000) as u32,
        }
    }

    fn upload(&mut self) -> (i64, Spec) {
        let id = self.next_id;
        self.next_id += 1;
        self.uploaded += 1;
        let spec = self.spec();
        self.live.insert(
            id,
            Known {
                visibility: spec.visibility,
                sport: spec.sport,
                when: spec.when,
            },
        );
        self.last_upload = Some(id);
        (id, spec)
    }

    /// The activity a change is made to: often the one shown (the newest that counts), or the
    /// one uploaded last (changed or deleted at once), else any.
    fn some_live(&mut self) -> Option<i64> {
        if self.live.is_empty() {
            return None;
        }
        let shown = self
            .live
            .iter()
            .filter(|(_, k)| k.counts())
            .max_by_key(|(id, k)| (k.recency(), **id))
            .map(|(id, _)| *id);
        let last = self.last_upload.filter(|id| self.live.contains_key(id));
        match self.rng.weighted(&[45, 15, 40]) {
            0 if shown.is_some() => shown,
            1 if last.is_some() => last,
            _ => {
                let ids: Vec<i64> = self.live.keys().copied().collect();
                Some(*self.rng.pick(&ids))
            }
        }
    }

    /// Where the event of a change goes: the fate and the deliveries (slots not down then).
    fn deliveries(
        &mut self,
        down: &[(usize, Duration, Duration)],
        at: Duration,
    ) -> (&'static str, Vec<(usize, Duration)>) {
        let up_slot = |rng: &mut Rng, after: Duration, not: Option<usize>| {
            let when = at + after;
            let up: Vec<usize> = (0..INSTANCES)
                .filter(|slot| Some(*slot) != not)
                .filter(|slot| {
                    !down
                        .iter()
                        .any(|(s, from, until)| s == slot && *from <= when && when <= *until)
                })
                .collect();
            if up.is_empty() {
                rng.below(INSTANCES)
            } else {
                *rng.pick(&up)
            }
        };
        let ms = |rng: &mut Rng, lo: u64, hi: u64| Duration::from_millis(rng.range(lo, hi));
        let rng = &mut self.rng;
        match rng.weighted(&[58, 12, 10, 10, 10]) {
            0 => {
                let after = ms(rng, 0, 400);
                ("once", vec![(up_slot(rng, after, None), after)])
            }
            1 => {
                let after = ms(rng, 1_500, 6_000);
                ("late", vec![(up_slot(rng, after, None), after)])
            }
            2 => {
                let first = ms(rng, 0, 400);
                let second = first + ms(rng, 500, 4_000);
                let a = up_slot(rng, first, None);
                let b = up_slot(rng, second, None);
                ("twice", vec![(a, first), (b, second)])
            }
            3 => {
                let first = ms(rng, 0, 200);
                let second = ms(rng, 0, 200);
                let a = up_slot(rng, first, None);
                let b = up_slot(rng, second, Some(a));
                ("to two instances", vec![(a, first), (b, second)])
            }
            _ => ("dropped", Vec::new()),
        }
    }

    fn phase(&mut self) -> Phase {
        let mut steps = Vec::new();
        let mut at = Duration::from_millis(self.rng.range(200, 800));
        let count = self.rng.range(5, 10);
        let mut killed = false;
        // (slot, down from, up again) of this phase's kills.
        let mut down: Vec<(usize, Duration, Duration)> = Vec::new();
        for _ in 0..count {
            at += Duration::from_millis(self.rng.range(150, 1_400));
            let kind = self.rng.weighted(&[26, 13, 14, 11, 7, 3, 4, 5, 11, 6]);
            let action = match kind {
                6 if !killed => {
                    killed = true;
                    let slot = self.rng.below(INSTANCES);
                    let down_for = Duration::from_millis(self.rng.range(300, 4_000));
                    // A restart takes a moment more than the pause.
                    down.push((slot, at, at + down_for + Duration::from_millis(1_000)));
                    Action::Kill { slot, down_for }
                }
                7 => Action::Stall {
                    slot: self.rng.below(INSTANCES),
                    latency: Duration::from_millis(self.rng.range(500, 2_500)),
                    lasting: Duration::from_millis(self.rng.range(300, 2_000)),
                },
                8 => Action::SlowList {
                    latency: Duration::from_millis(
                        *self.rng.pick(&[1_500, 3_000, 5_000, 7_000, 9_000]),
                    ),
                    lasting: Duration::from_millis(self.rng.range(3_000, 10_000)),
                },
                9 => Action::SlowDetail {
                    latency: Duration::from_millis(self.rng.range(300, 1_500)),
                    lasting: Duration::from_millis(self.rng.range(1_000, 5_000)),
                },
                _ => match self.change(kind) {
                    Some((id, change, aspect, updates)) => {
                        let (fate, deliveries) = self.deliveries(&down, at);
                        Action::Strava {
                            id,
                            change,
                            event: PlannedEvent {
                                aspect,
                                updates,
                                fate,
                                deliveries,
                            },
                        }
                    }
                    None => continue,
                },
            };
            steps.push(Step { at, action });
        }
        Phase { steps }
    }

    /// A change of the kind drawn (an upload when there is nothing to change): the activity,
    /// the change, and its event's aspect and updates.
    fn change(&mut self, kind: usize) -> Option<(i64, Change, &'static str, Value)> {
        let kind = if self.live.is_empty() { 0 } else { kind };
        if kind == 0 || kind >= 6 {
            if self.uploaded >= MAX_ACTIVITIES {
                return None;
            }
            let (id, spec) = self.upload();
            return Some((id, Change::Upload(spec), "create", json!({})));
        }
        let id = self.some_live()?;
        let known = *self.live.get(&id)?;
        Some(match kind {
            1 => {
                let name = self.name();
                (
                    id,
                    Change::Rename(name.clone()),
                    "update",
                    json!({ "title": name }),
                )
            }
            2 => {
                let to = if known.visibility == Visibility::Everyone {
                    *self.rng.pick(&[
                        Visibility::OnlyMe,
                        Visibility::OnlyMe,
                        Visibility::Followers,
                    ])
                } else {
                    Visibility::Everyone
                };
                if let Some(k) = self.live.get_mut(&id) {
                    k.visibility = to;
                }
                // Made "only me" Strava says private; followers-only, sometimes nothing at all.
                let updates = match to {
                    Visibility::Everyone => json!({"private": "false"}),
                    Visibility::OnlyMe => json!({"private": "true"}),
                    Visibility::Followers if self.rng.percent(70) => json!({"private": "true"}),
                    Visibility::Followers => json!({}),
                };
                (id, Change::Visibility(to), "update", updates)
            }
            3 => {
                self.live.remove(&id);
                (id, Change::Delete, "delete", json!({}))
            }
            4 => {
                let when = self.when();
                if let Some(k) = self.live.get_mut(&id) {
                    k.when = when;
                }
                (id, Change::Redate(when), "update", json!({}))
            }
            _ => {
                let to = if known.sport.counts() {
                    Sport::Ride
                } else {
                    Sport::Run
                };
                if let Some(k) = self.live.get_mut(&id) {
                    k.sport = to;
                }
                (
                    id,
                    Change::Sport(to),
                    "update",
                    json!({ "type": to.activity_type() }),
                )
            }
        })
    }
}

impl Plan {
    /// The schedule of `seed`.
    pub fn draw(seed: u64) -> Plan {
        let mut drawing = Drawing {
            rng: Rng::new(seed),
            next_id: FIRST_ID,
            names: 0,
            live: BTreeMap::new(),
            uploaded: 0,
            last_upload: None,
        };
        let initial_count = drawing.rng.range(2, 7);
        let initial = (0..initial_count).map(|_| drawing.upload()).collect();
        let phase_count = drawing.rng.range(1, 2);
        let phases = (0..phase_count).map(|_| drawing.phase()).collect();
        Plan {
            seed,
            initial,
            phases,
        }
    }
}

impl fmt::Display for Sport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sport_type())
    }
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::Ago(seconds) => write!(f, "{:.1} days ago", *seconds as f64 / 86_400.0),
            When::LastYear(seconds) => write!(
                f,
                "last year, {:.1} days before New Year",
                *seconds as f64 / 86_400.0
            ),
        }
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} ({}, {}, {} m)",
            self.sport,
            self.name,
            self.visibility.as_str(),
            self.when,
            self.distance
        )
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Upload(spec) => write!(f, "upload {spec}"),
            Change::Rename(name) => write!(f, "rename to {name:?}"),
            Change::Visibility(to) => write!(f, "visibility {}", to.as_str()),
            Change::Delete => write!(f, "delete"),
            Change::Redate(when) => write!(f, "start moved to {when}"),
            Change::Sport(sport) => write!(f, "sport {sport}"),
        }
    }
}

/// An instance's name in a plan (slot 0 is `i1`).
pub fn slot_name(slot: usize) -> String {
    format!("i{}", slot + 1)
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Duration| d.as_millis();
        match self {
            Action::Strava { id, change, event } => {
                write!(
                    f,
                    "strava: {id} {change}; event {} {}",
                    event.aspect, event.updates
                )?;
                let to: Vec<String> = event
                    .deliveries
                    .iter()
                    .map(|(slot, after)| format!("{} +{} ms", slot_name(*slot), ms(after)))
                    .collect();
                write!(f, " {} [{}]", event.fate, to.join(", "))
            }
            Action::Kill { slot, down_for } => write!(
                f,
                "kill {}, start a new one {} ms later",
                slot_name(*slot),
                ms(down_for)
            ),
            Action::Stall {
                slot,
                latency,
                lasting,
            } => write!(
                f,
                "stall {}'s storage: +{} ms per request for {} ms",
                slot_name(*slot),
                ms(latency),
                ms(lasting)
            ),
            Action::SlowList { latency, lasting } => write!(
                f,
                "slow list: answers {} ms after it is read, for {} ms",
                ms(latency),
                ms(lasting)
            ),
            Action::SlowDetail { latency, lasting } => write!(
                f,
                "slow detail: answers {} ms after it is read, for {} ms",
                ms(latency),
                ms(lasting)
            ),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan of seed {}:", self.seed)?;
        for (id, spec) in &self.initial {
            writeln!(f, "  at start: {id} {spec}")?;
        }
        for (number, phase) in self.phases.iter().enumerate() {
            writeln!(f, "  phase {}:", number + 1)?;
            for step in &phase.steps {
                writeln!(f, "    +{:>5} ms  {}", step.at.as_millis(), step.action)?;
            }
            writeln!(f, "    then a quiet point")?;
        }
        Ok(())
    }
}
