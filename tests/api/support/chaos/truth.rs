//! Strava's truth during a schedule: every version each activity had at the fake Strava, and
//! when. Every change goes through here, so the fake and the record never disagree: the instant
//! just before the fake changed and the instant just after bound when it happened (a read that
//! arrived in between may have seen either version).

use super::plan::{Spec, Sport, Visibility, When};
use crate::support::activities;
use crate::support::fake_strava::FakeStrava;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// An activity as Strava holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub name: String,
    pub sport: Sport,
    pub visibility: Visibility,
    /// Start, Unix seconds (UTC).
    pub start: i64,
    pub distance: u32,
}

impl State {
    /// Shown by the widget when it is the newest of these: public, and a run.
    pub fn counts(&self) -> bool {
        self.visibility == Visibility::Everyone && self.sport.counts()
    }

    /// Seconds moving, as the activity says ([`activities::run`]'s rule).
    pub fn moving_time(&self) -> i64 {
        (f64::from(self.distance) / 3.0).round() as i64
    }

    /// The athlete's local year of the start.
    pub fn local_year(&self) -> i32 {
        local_year(self.start)
    }

    /// The activity as Strava's list (and detail) gives it.
    pub fn json(&self, id: i64) -> Value {
        let mut activity = activities::run(id, &self.name, self.start, f64::from(self.distance));
        activity["sport_type"] = json!(self.sport.sport_type());
        activity["type"] = json!(self.sport.activity_type());
        activity["visibility"] = json!(self.visibility.as_str());
        activity["private"] = json!(self.visibility == Visibility::OnlyMe);
        activity
    }
}

/// The athlete's local year at `at` (Unix seconds).
pub fn local_year(at: i64) -> i32 {
    activities::this_year(at).0
}

/// One version of an activity: `None` when it does not exist (not uploaded yet, or deleted).
#[derive(Clone, Debug)]
pub struct Version {
    /// Just before the fake changed to it (`None`: before the schedule).
    pub from: Option<Instant>,
    /// Just after.
    pub applied: Option<Instant>,
    pub state: Option<State>,
}

/// Every activity's versions, oldest first (the first is "not there" for uploads).
pub struct Truth {
    /// The schedule's start, Unix seconds: what [`When`] counts from.
    pub began: i64,
    pub versions: BTreeMap<i64, Vec<Version>>,
}

impl Truth {
    /// A record for a schedule that began at `began` (Unix seconds).
    pub fn new(began: i64) -> Truth {
        Truth {
            began,
            versions: BTreeMap::new(),
        }
    }

    /// The instant `when` names.
    pub fn resolve(&self, when: When) -> i64 {
        match when {
            When::Ago(seconds) => self.began - seconds,
            When::LastYear(seconds) => activities::this_year(self.began).1 - seconds,
        }
    }

    /// The state of an uploaded `spec`.
    pub fn state_of(&self, spec: &Spec) -> State {
        State {
            name: spec.name.clone(),
            sport: spec.sport,
            visibility: spec.visibility,
            start: self.resolve(spec.when),
            distance: spec.distance,
        }
    }

    /// Activities Strava holds before the schedule (written to the fake by the caller).
    pub fn initial(&mut self, id: i64, state: State) {
        self.versions.insert(
            id,
            vec![Version {
                from: None,
                applied: None,
                state: Some(state),
            }],
        );
    }

    /// The state of `id` now.
    pub fn current(&self, id: i64) -> Option<&State> {
        self.versions
            .get(&id)
            .and_then(|v| v.last())
            .and_then(|v| v.state.as_ref())
    }

    /// Changes `id` at the fake to `state` (`None`: deleted), recording when.
    pub fn change(&mut self, strava: &FakeStrava, id: i64, state: Option<State>) {
        let from = Instant::now();
        let existed = self.current(id).is_some();
        match (&state, existed) {
            (Some(state), true) => {
                let json = state.json(id);
                strava.update_activity(id, |a| *a = json);
            }
            (Some(state), false) => strava.add_activity(state.json(id)),
            (None, _) => strava.remove_activity(id),
        }
        let applied = Instant::now();
        let versions = self.versions.entry(id).or_insert_with(|| {
            vec![Version {
                from: None,
                applied: None,
                state: None,
            }]
        });
        versions.push(Version {
            from: Some(from),
            applied: Some(applied),
            state,
        });
    }

    /// What Strava holds now: id → state.
    pub fn now(&self) -> BTreeMap<i64, &State> {
        self.versions
            .iter()
            .filter_map(|(id, v)| Some((*id, v.last()?.state.as_ref()?)))
            .collect()
    }

    /// The run the widget must show now: the newest counted one by start (the id breaks ties).
    pub fn latest(&self) -> Option<(i64, &State)> {
        self.now()
            .into_iter()
            .filter(|(_, s)| s.counts())
            .max_by_key(|(id, s)| (s.start, *id))
    }

    /// This local year's counted runs now: (count, metres, seconds moving), for the year of `at`.
    pub fn year_totals(&self, at: i64) -> (u64, f64, i64) {
        let year = local_year(at);
        self.now()
            .into_values()
            .filter(|s| s.counts() && s.local_year() == year)
            .fold((0, 0.0, 0), |(count, distance, moving), s| {
                (
                    count + 1,
                    distance + f64::from(s.distance),
                    moving + s.moving_time(),
                )
            })
    }
}
