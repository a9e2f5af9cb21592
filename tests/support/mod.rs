//! Shared test support: the real Azurite, a fake Strava, and the app started on free ports.
#![allow(dead_code)]

pub mod app;
pub mod azurite;
pub mod fake_strava;
pub mod outage;
