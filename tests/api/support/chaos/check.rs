//! The safety check of a schedule's history: what each instance could have known of each
//! activity when it answered, and whether its answer fits. The rule is stated in the doc comment
//! of `tests/api/chaos.rs`; this module implements it.
//!
//! Time is Strava's timeline: every answer an instance gives is derived from its view of each
//! activity "as Strava held it at some instant κ" (or "hidden by a push event received at κ").
//! An answer fits an activity at the instants κ whose version of it would give that answer; the
//! check keeps, per instance and activity, the least κ the instance must have reached (its
//! floor), from what it was told (events it acknowledged, rounds it ran, with allowances for the
//! word to spread) and from what it answered before (an instance never goes back). An answer
//! with no fitting κ at or after the floor is a violation.

use super::record::{Delivery, Life, Log, Outcome, Route, Slowness};
use super::truth::{State, Truth};
use crate::support::fake_strava::{Read, ReadKind};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long after its acknowledgment the receiving instance has applied an event (within the
/// event budget, storage not stalled), not counting a slow detail read or the events queued
/// before it.
pub const APPLY: Duration = Duration::from_secs(4);
/// Added to [`APPLY`] for each event the same instance received in the [`QUEUE_WINDOW`] before
/// (an instance applies its events one at a time).
pub const APPLY_QUEUED: Duration = Duration::from_secs(1);
/// How far back [`APPLY_QUEUED`] counts.
pub const QUEUE_WINDOW: Duration = Duration::from_secs(10);
/// How long after an instance published an answer every other instance serving visitors holds
/// it: they look at the table every 5 s, in the background of a visit.
pub const LOOK: Duration = Duration::from_secs(7);
/// How long after its list was answered a round has reconciled the index and published.
pub const ROUND: Duration = Duration::from_secs(5);
/// How long after an event acknowledged by an instance killed before applying it another
/// instance applies it (recorded events are taken over after 8 s).
pub const ORPHAN: Duration = Duration::from_secs(10);
/// How many create and update deliveries of a schedule are sure to find a call in the shared
/// event budget (10 at once, one more every 36 s, an event taken over by another instance may
/// take a second one): later ones may wait for the budget, so only rounds make them known.
pub const BUDGET_SURE: usize = 5;
/// How long an event beyond the sure budget may wait for it.
pub const BUDGET_WAIT: Duration = Duration::from_secs(40);
/// Added for every storage stall of the instances involved (storage calls give up after 5 s).
pub const STALL_EXTRA: Duration = Duration::from_secs(5);
/// How long before its list arrived a round may have begun (noting which activities events
/// changed: those it leaves alone).
pub const ROUND_LEAD: Duration = Duration::from_secs(5);

const NEG_INF: i64 = i64::MIN / 4;
const POS_INF: i64 = i64::MAX / 4;

/// The instants of a schedule as microseconds from its start.
#[derive(Clone, Copy)]
pub struct Timeline {
    pub epoch: Instant,
}

impl Timeline {
    pub fn us(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.epoch) {
            Some(d) => d.as_micros() as i64,
            None => -(self.epoch.duration_since(at).as_micros() as i64),
        }
    }

    pub fn secs(&self, at: Instant) -> f64 {
        self.us(at) as f64 / 1e6
    }
}

fn us(d: Duration) -> i64 {
    d.as_micros() as i64
}

/// Seconds of a timeline point, for messages.
fn s(t: i64) -> String {
    match t {
        NEG_INF => "the start".into(),
        POS_INF => "the end".into(),
        t => format!("{:.3} s", t as f64 / 1e6),
    }
}

/// What an instance was told about an activity, and from when it must show it.
#[derive(Debug)]
struct Knowledge {
    /// The activity (`None`: every activity but `excluded`: a round).
    activity: Option<i64>,
    excluded: HashSet<i64>,
    /// The instant of Strava's timeline it tells of.
    value: i64,
    /// The process told first.
    source: String,
    /// From when the source shows it, and every other instance.
    self_at: Option<i64>,
    other_at: i64,
    why: String,
}

struct Checker<'a> {
    timeline: Timeline,
    truth: &'a Truth,
    log: &'a Log,
    slot_of: HashMap<String, usize>,
    lives: HashMap<String, &'a Life>,
    /// Per delivery: its number among create and update deliveries, in the order they began
    /// (hides cost no call).
    ordinals: Vec<Option<usize>>,
}

impl Checker<'_> {
    /// Storage stalls of `slot` that overlap `from..=until`: the time they add.
    fn stall_extra(&self, slot: Option<usize>, from: i64, until: i64) -> i64 {
        let Some(slot) = slot else { return 0 };
        self.log
            .slowness
            .iter()
            .filter(|w| w.slot == Some(slot))
            .filter(|w| self.timeline.us(w.from) <= until && self.timeline.us(w.ends()) >= from)
            .map(|w| us(w.until - w.from) + us(w.latency) + us(STALL_EXTRA))
            .sum()
    }

    /// The detail latency in force at any point of `from..=until` (the largest).
    fn detail_latency(&self, from: i64, until: i64) -> i64 {
        self.log
            .slowness
            .iter()
            .filter(|w: &&Slowness| w.what == "detail")
            .filter(|w| self.timeline.us(w.from) <= until && self.timeline.us(w.ends()) >= from)
            .map(|w| us(w.latency))
            .max()
            .unwrap_or(0)
    }

    fn killed(&self, process: &str) -> Option<i64> {
        self.lives
            .get(process)
            .and_then(|l| l.killed)
            .map(|k| self.timeline.us(k))
    }

    /// When the receiving instance has applied `delivery` (storage stalls aside): [`APPLY`]
    /// after the acknowledgment, more for the events queued before it and a slow detail read.
    fn applied_by(&self, delivery: &Delivery) -> i64 {
        let t = self.timeline;
        let started = t.us(delivery.started);
        let ended = t.us(delivery.ended);
        let queued = self
            .log
            .deliveries
            .iter()
            .filter(|d| d.process.is_some() && d.process == delivery.process)
            .filter(|d| d.started < delivery.started)
            .filter(|d| t.us(d.started) >= started - us(QUEUE_WINDOW))
            .count() as i64;
        let base = ended + us(APPLY) + queued * us(APPLY_QUEUED);
        base + 2 * self.detail_latency(started, base)
    }

    /// Until when the app may still apply `delivery` (it may have received it even when the
    /// acknowledgment did not come back).
    fn apply_until(&self, delivery: &Delivery, ordinal: Option<usize>) -> i64 {
        let started = self.timeline.us(delivery.started);
        let slot = delivery
            .process
            .as_ref()
            .and_then(|p| self.slot_of.get(p))
            .copied();
        let mut until = self.applied_by(delivery);
        if delivery
            .process
            .as_deref()
            .and_then(|p| self.killed(p))
            .is_some_and(|k| k <= until)
        {
            until += us(ORPHAN) + us(LOOK);
        }
        if ordinal.is_some_and(|o| o >= BUDGET_SURE) {
            until += us(BUDGET_WAIT);
        }
        until + self.stall_extra(slot, started, until)
    }

    fn knowledge(&self, reads: &[Read]) -> Vec<Knowledge> {
        let t = self.timeline;
        let ordinals = &self.ordinals;
        let mut known = Vec::new();
        // Events an instance acknowledged.
        for (delivery, ordinal) in self.log.deliveries.iter().zip(ordinals) {
            let Some(process) = &delivery.process else {
                continue;
            };
            if !delivery.acknowledged || ordinal.is_some_and(|o| o >= BUDGET_SURE) {
                continue;
            }
            let started = t.us(delivery.started);
            let ended = t.us(delivery.ended);
            let slot = self.slot_of.get(process).copied();
            let base = self.applied_by(delivery);
            let base = base + self.stall_extra(slot, started, base + us(LOOK));
            let (self_at, other_at) = match self.killed(process) {
                Some(k) if k <= base => (None, base + us(ORPHAN) + us(LOOK)),
                _ => (Some(base), base + us(LOOK)),
            };
            known.push(Knowledge {
                activity: Some(delivery.activity),
                excluded: HashSet::new(),
                value: started,
                source: process.clone(),
                self_at,
                other_at,
                why: format!(
                    "the {} event {} for it, delivered to {process} at {}–{} and acknowledged",
                    delivery.aspect,
                    delivery.updates,
                    s(started),
                    s(ended)
                ),
            });
        }
        // Rounds: every list an instance read (and lived to reconcile).
        let windows: Vec<(i64, i64, i64)> = self
            .log
            .deliveries
            .iter()
            .zip(ordinals)
            .filter(|(d, _)| d.process.is_some())
            .map(|(d, o)| (d.activity, t.us(d.started), self.apply_until(d, *o)))
            .collect();
        for read in reads {
            let (ReadKind::List, Some(answered), 200) = (read.kind, read.answered, read.status)
            else {
                continue;
            };
            // A round's knowledge dates from its first page: the later pages of a pass (with
            // `before`) say nothing of the activities newer than them.
            if !read.first_page {
                continue;
            }
            let Some(slot) = self.slot_of.get(&read.caller).copied() else {
                continue;
            };
            // A pass publishes once its last page is in: a short first page is not taken for
            // the end of the list, so the pages after it (each asked once the one before was
            // answered, until the caller's next first page) hold what the first one read back.
            let next_pass = reads
                .iter()
                .filter(|r| r.caller == read.caller && r.first_page && r.arrived > read.arrived)
                .map(|r| r.arrived)
                .min();
            let pages: Vec<Option<Instant>> = reads
                .iter()
                .filter(|r| {
                    r.caller == read.caller
                        && matches!(r.kind, ReadKind::List)
                        && !r.first_page
                        && r.arrived >= answered
                        && next_pass.is_none_or(|next| r.arrived < next)
                })
                .map(|r| r.answered)
                .collect();
            // A page still unanswered: the pass never ended.
            let Some(last_page) = pages
                .iter()
                .try_fold(answered, |last, page| page.map(|page| last.max(page)))
            else {
                continue;
            };
            let arrived = t.us(read.arrived);
            let answered = t.us(answered);
            let base = t.us(last_page) + us(ROUND);
            let base = base + self.stall_extra(Some(slot), arrived, base + us(LOOK));
            if self.killed(&read.caller).is_some_and(|k| k <= base) {
                continue;
            }
            let excluded = windows
                .iter()
                .filter(|(_, from, until)| *from <= base && *until >= arrived - us(ROUND_LEAD))
                .map(|(activity, _, _)| *activity)
                .collect();
            known.push(Knowledge {
                activity: None,
                excluded,
                value: arrived,
                source: read.caller.clone(),
                self_at: Some(base),
                other_at: base + us(LOOK),
                why: format!(
                    "{}'s round, whose list was read at {} and answered at {} (its last page at {})",
                    read.caller,
                    s(arrived),
                    s(answered),
                    s(t.us(last_page))
                ),
            });
        }
        known
    }

    /// From when `observer` must show what `k` tells.
    fn effective_for(&self, k: &Knowledge, observer: &str) -> Option<i64> {
        let at = if k.source == observer {
            k.self_at?
        } else {
            k.other_at
        };
        Some(at + self.stall_extra(self.slot_of.get(observer).copied(), k.value, at))
    }

    /// The stretches of Strava's timeline at which activity `id`'s version gives `outcome`
    /// (any, for a running-year answer), each with what the activity adds to the totals of the
    /// local `year` there.
    fn fits(&self, id: i64, outcome: &Outcome, year: i32) -> Vec<Stretch> {
        let t = self.timeline;
        let Some(versions) = self.truth.versions.get(&id) else {
            return Vec::new();
        };
        let mut stretches = Vec::new();
        for (k, version) in versions.iter().enumerate() {
            if !fits(id, version.state.as_ref(), outcome) {
                continue;
            }
            // Each version from the instant its change began to the instant the next one's
            // began (a read in between may have seen either: see `lowered`).
            let lo = version.from.map_or(NEG_INF, |f| t.us(f));
            let hi = versions
                .get(k + 1)
                .and_then(|next| next.from)
                .map_or(POS_INF, |f| t.us(f));
            let adds = match &version.state {
                Some(s) if s.counts() && s.local_year() == year => {
                    (1, u64::from(s.distance), s.moving_time())
                }
                _ => (0, 0, 0),
            };
            stretches.push(Stretch { lo, hi, adds });
        }
        // Not shown: also while a push event said to take it off (until the app could have
        // applied it; the app hides it whatever Strava holds, until Strava's word brings it
        // back).
        let shows = matches!(outcome, Outcome::Run { id: shown, .. } if *shown == id);
        if !shows {
            for (delivery, ordinal) in self.log.deliveries.iter().zip(&self.ordinals) {
                if delivery.activity == id && delivery.hides && delivery.process.is_some() {
                    stretches.push(Stretch {
                        lo: t.us(delivery.started),
                        hi: self.apply_until(delivery, *ordinal),
                        adds: (0, 0, 0),
                    });
                }
            }
        }
        stretches
    }

    /// A timeline point at which something was learnt of activity `id`, moved back to just
    /// before a change of it that was under way then (a read that arrived while the fake was
    /// changing may have seen the version before).
    fn lowered(&self, id: i64, at: i64) -> i64 {
        let t = self.timeline;
        self.truth
            .versions
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|v| Some((t.us(v.from?), t.us(v.applied?))))
            .filter(|(from, applied)| *from <= at && at <= *applied)
            .map(|(from, _)| from - 1)
            .min()
            .unwrap_or(at)
    }

    /// What Strava's `id` was at timeline point `at`.
    fn state_at(&self, id: i64, at: i64) -> String {
        let t = self.timeline;
        let versions = match self.truth.versions.get(&id) {
            Some(v) => v,
            None => return "never there".into(),
        };
        let mut text = String::from("not there yet");
        for version in versions {
            if version.from.is_none_or(|f| t.us(f) <= at) {
                text = match &version.state {
                    Some(state) => describe(state),
                    None if version.from.is_some() => "deleted or not uploaded".into(),
                    None => "not uploaded yet".into(),
                };
            }
        }
        text
    }
}

/// Per activity, the least instant of Strava's timeline an instance must have reached, and why.
type Floors = HashMap<i64, (i64, String)>;

/// A stretch of Strava's timeline at which an activity fits an answer, and what it adds to the
/// year's totals (runs, metres, seconds moving) there.
#[derive(Clone, Copy, Debug)]
struct Stretch {
    lo: i64,
    hi: i64,
    adds: (u64, u64, i64),
}

/// Create and update deliveries numbered in the order they began (hides cost no call).
fn ordinals(log: &Log) -> Vec<Option<usize>> {
    let mut order: Vec<usize> = (0..log.deliveries.len())
        .filter(|i| {
            let d = &log.deliveries[*i];
            !d.hides && d.process.is_some()
        })
        .collect();
    order.sort_by_key(|i| log.deliveries[*i].started);
    let mut ordinals = vec![None; log.deliveries.len()];
    for (n, i) in order.into_iter().enumerate() {
        ordinals[i] = Some(n);
    }
    ordinals
}

/// Whether Strava holding `state` for activity `id` gives `outcome` (a latest-run answer).
fn fits(id: i64, state: Option<&State>, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Run {
            id: shown,
            name,
            start,
            sport,
            distance,
            ..
        } if *shown == id => state.is_some_and(|s| {
            s.counts()
                && s.name == *name
                && s.start == *start
                && s.sport.sport_type() == sport
                && (f64::from(s.distance) - distance).abs() < 0.01
        }),
        Outcome::Run {
            id: shown, start, ..
        } => state.is_none_or(|s| !s.counts() || (s.start, id) < (*start, *shown)),
        Outcome::NoPublicRun => state.is_none_or(|s| !s.counts()),
        _ => true,
    }
}

fn describe(state: &State) -> String {
    format!(
        "{} {:?} ({}, start {})",
        state.sport,
        state.name,
        state.visibility.as_str(),
        state.start
    )
}

/// The totals an answer states, if it states any: (runs, metres, seconds moving), each `None`
/// where it does not say.
fn totals_of(outcome: &Outcome) -> Option<(Option<u64>, u64, Option<i64>)> {
    match outcome {
        Outcome::Run { ytd, .. } => Some((None, ytd.round() as u64, None)),
        Outcome::Year {
            count,
            distance,
            moving_time,
            ..
        } => Some((Some(*count), distance.round() as u64, Some(*moving_time))),
        _ => None,
    }
}

/// Whether some choice of one addition per activity sums to `totals`; `None` when there are
/// too many combinations to tell.
fn reachable(
    options: &[Vec<(u64, u64, i64)>],
    totals: (Option<u64>, u64, Option<i64>),
) -> Option<bool> {
    let mut sums: HashSet<(u64, u64, i64)> = HashSet::from([(0, 0, 0)]);
    for choices in options {
        let mut next = HashSet::new();
        for sum in &sums {
            for add in choices {
                next.insert((sum.0 + add.0, sum.1 + add.1, sum.2 + add.2));
            }
        }
        if next.len() > 100_000 {
            return None;
        }
        sums = next;
    }
    let (count, distance, moving) = totals;
    Some(sums.iter().any(|(c, d, m)| {
        count.is_none_or(|count| count == *c)
            && distance == *d
            && moving.is_none_or(|moving| moving == *m)
    }))
}

/// The safety violations of a schedule: one line each (the first per instance and activity, and
/// per instance for totals).
pub fn safety(timeline: Timeline, truth: &Truth, log: &Log, reads: &[Read]) -> Vec<String> {
    let checker = Checker {
        timeline,
        truth,
        log,
        slot_of: log
            .lives
            .iter()
            .map(|l| (l.process.clone(), l.slot))
            .collect(),
        lives: log.lives.iter().map(|l| (l.process.clone(), l)).collect(),
        ordinals: ordinals(log),
    };
    let knowledge = checker.knowledge(reads);
    let mut by_process: BTreeMap<&str, Vec<&super::record::Answer>> = BTreeMap::new();
    for answer in &log.answers {
        if matches!(
            answer.outcome,
            Outcome::Run { .. } | Outcome::NoPublicRun | Outcome::Year { .. }
        ) {
            by_process.entry(&answer.process).or_default().push(answer);
        }
    }
    let ids: Vec<i64> = truth.versions.keys().copied().collect();
    let mut violations = Vec::new();
    // The first violation per instance, activity and run shown (0: none), and per instance and
    // route for totals.
    let mut reported: HashSet<(String, i64, i64)> = HashSet::new();
    let mut reported_totals: HashSet<(String, Route)> = HashSet::new();
    for (process, mut answers) in by_process {
        answers.sort_by_key(|a| a.sent);
        // Per earlier answer: when it came back, and the floor it left per activity.
        let mut left: Vec<(i64, Floors)> = Vec::new();
        for answer in answers {
            let sent = timeline.us(answer.sent);
            let received = timeline.us(answer.received);
            let year = local_year(answer.sent, timeline, truth);
            if let Outcome::Run { id, .. } = &answer.outcome {
                if !truth.versions.contains_key(id) {
                    violations.push(format!(
                        "{process} answered {} at {}: an activity Strava never had",
                        answer.outcome,
                        s(sent)
                    ));
                }
            }
            let mut floors = HashMap::new();
            let mut options: Vec<Vec<(u64, u64, i64)>> = Vec::new();
            let mut could: Vec<String> = Vec::new();
            // Some activity fits the answer at no instant it could have known (reported above:
            // its totals are no news then).
            let mut unfit = false;
            for &id in &ids {
                let mut floor = (NEG_INF, String::new());
                for k in &knowledge {
                    let about = match k.activity {
                        Some(a) => a == id,
                        None => !k.excluded.contains(&id),
                    };
                    if about
                        && checker
                            .effective_for(k, process)
                            .is_some_and(|at| at <= sent)
                    {
                        let value = checker.lowered(id, k.value);
                        if value > floor.0 {
                            floor = (value, k.why.clone());
                        }
                    }
                }
                for (came_back, earlier) in &left {
                    if *came_back < sent {
                        if let Some((value, why)) = earlier.get(&id) {
                            if *value > floor.0 {
                                floor = (*value, why.clone());
                            }
                        }
                    }
                }
                // Fitting from the floor on, and known by the time the answer came back.
                let fitting: Vec<Stretch> = checker
                    .fits(id, &answer.outcome, year)
                    .into_iter()
                    .filter(|f| f.hi > floor.0 && f.lo <= received)
                    .collect();
                let mut adds: Vec<(u64, u64, i64)> = fitting.iter().map(|f| f.adds).collect();
                adds.sort_unstable();
                adds.dedup();
                if adds.len() > 1 || adds.first().is_some_and(|a| a.0 > 0) {
                    could.push(format!(
                        "{id} adds {}",
                        adds.iter()
                            .map(|a| format!("{} m", a.1))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ));
                }
                options.push(if adds.is_empty() {
                    vec![(0, 0, 0)]
                } else {
                    adds
                });
                let earliest = fitting.iter().map(|f| f.lo.max(floor.0)).min();
                if answer.route == Route::RunningYear {
                    // Totals only: the floor stays.
                    floors.insert(id, floor);
                    continue;
                }
                match earliest {
                    Some(at) => {
                        let why = if at > floor.0 {
                            format!(
                                "its own answer {} at {}, which fits {id} only as Strava held it from {} on",
                                answer.outcome,
                                s(received),
                                s(at)
                            )
                        } else {
                            floor.1.clone()
                        };
                        floors.insert(id, (at, why));
                    }
                    None => {
                        unfit = true;
                        let shown = match &answer.outcome {
                            Outcome::Run { id, .. } => *id,
                            _ => 0,
                        };
                        if reported.insert((process.to_owned(), id, shown)) {
                            violations.push(if floor.0 == NEG_INF {
                                format!(
                                    "{process} answered {} (asked at {}, answered at {}); that \
                                     answer fits no version activity {id} ever had until then \
                                     (it was {})",
                                    answer.outcome,
                                    s(sent),
                                    s(received),
                                    checker.state_at(id, received),
                                )
                            } else {
                                format!(
                                    "{process} answered {} (asked at {}, answered at {}); but by \
                                     then {process} knew activity {id} as Strava held it at {} or \
                                     later (from {}), and Strava's {id} was then {}: that answer \
                                     fits no version of {id} from then until it answered",
                                    answer.outcome,
                                    s(sent),
                                    s(received),
                                    s(floor.0),
                                    floor.1,
                                    checker.state_at(id, floor.0),
                                )
                            });
                        }
                        floors.insert(id, floor);
                    }
                }
            }
            if let Some(totals) = totals_of(&answer.outcome).filter(|_| !unfit) {
                if reachable(&options, totals) == Some(false)
                    && reported_totals.insert((process.to_owned(), answer.route))
                {
                    violations.push(format!(
                        "{process} answered {} (asked at {}, answered at {}): no version of \
                         each activity that it could have known then adds up to that \
                         ({year}: {})",
                        answer.outcome,
                        s(sent),
                        s(received),
                        if could.is_empty() {
                            "no run can count".to_owned()
                        } else {
                            could.join(", ")
                        }
                    ));
                }
            }
            left.push((received, floors));
        }
    }
    violations
}

/// The athlete's local year when an answer was asked for (the schedule began at `truth.began`,
/// close to the timeline's start).
fn local_year(sent: Instant, timeline: Timeline, truth: &Truth) -> i32 {
    super::truth::local_year(truth.began + timeline.us(sent) / 1_000_000)
}
