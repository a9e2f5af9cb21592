//! The running year as an SVG card, the same 480×200 as the latest-run card, for places that
//! show images only: the year, its distance, run count, current streak and longest run, and a
//! calendar heat map of its days (one square per day, weeks as columns from Monday, coloured by
//! the day's distance). Self-contained like [`super::svg`]: no script, no external resource, no
//! coordinates, every text escaped for XML, [`Theme::Auto`] following `prefers-color-scheme`
//! inside the SVG, text fitted by estimated width. A view of the JSON answer: it knows nothing
//! of HTTP.

use super::svg::{
    card_name, decimal, escape, figures, head, Theme, Units, DARK, KICKER, LEFT, LIGHT, RIGHT,
    SMALL,
};
use super::text_fit::{fit, Style};
use super::year::RunningYearView;
use std::collections::HashMap;
use std::fmt::Write;
use time::{Date, Duration, Month};

/// The heat map's top edge, and the distance from one square to the next (px).
const MAP_TOP: f64 = 92.0;
const PITCH: f64 = 8.0;
/// A square's side.
const SQUARE: u32 = 7;
/// The baseline of the month names under the map, and of the footer.
const MONTHS_Y: f64 = 162.0;
const FOOT_Y: f64 = 186.0;
/// Where the legend ("Less ■■■■■ More") begins; the footer's text stops short of it.
const LEGEND_LEFT: f64 = 346.0;
/// A month's name under the map.
const MONTH: Style = Style {
    size: 9.5,
    min_size: 9.5,
    spacing: 0.0,
};
const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The squares' colours per theme, from none (`l0`) to long (`l4`); `fu` dims days still to come.
const LIGHT_LEVELS: &str =
    ".l0{fill:#e4e5e9}.l1{fill:#fed7c0}.l2{fill:#fda676}.l3{fill:#fc7434}.l4{fill:#c73f00}";
const DARK_LEVELS: &str =
    ".l0{fill:#2b2e35}.l1{fill:#5c2c15}.l2{fill:#93401a}.l3{fill:#d9561b}.l4{fill:#ff8c4f}";
const FUTURE: &str = ".fu{opacity:.45}";

/// A day's colour level: 0 without a run, then under 5 km, under 10 km, under 20 km, 20 km and
/// more (the same steps whatever the units, so a day keeps its colour when they change).
pub fn level(metres: f64) -> u8 {
    match metres {
        m if m.is_nan() || m <= 0.0 => 0,
        m if m < 5_000.0 => 1,
        m if m < 10_000.0 => 2,
        m if m < 20_000.0 => 3,
        _ => 4,
    }
}

/// The card for `year`.
pub fn render_year(year: &RunningYearView, theme: Theme, units: Units) -> String {
    let length = |metres: f64, decimals: usize| {
        let metres = if metres.is_finite() { metres } else { 0.0 };
        format!(
            "{} {}",
            decimal(metres / units.length(), decimals),
            units.distance_label()
        )
    };
    let distance = length(year.totals.distance, 0);
    let runs = decimal(f64::from(year.totals.count), 0);
    let streak = days(year.streak.current_days);
    let longest = year
        .longest_run
        .as_ref()
        .map(|r| length(r.distance, 1))
        .unwrap_or_else(|| "–".into());
    let mut top = format!("RUNNING YEAR {}", year.year);
    if year.stale {
        top.push_str(" · MAY BE OUT OF DATE");
    }
    let top = fit(&top, RIGHT - LEFT, KICKER);
    let title = format!(
        "Running year {}: {distance} in {runs} {}, current streak {streak}{}",
        year.year,
        if year.totals.count == 1 {
            "run"
        } else {
            "runs"
        },
        year.longest_run
            .as_ref()
            .map(|r| format!(", longest run {longest} ({})", card_name(&r.name)))
            .unwrap_or_default(),
    );
    let style = match theme {
        Theme::Light => format!("{LIGHT}{LIGHT_LEVELS}{FUTURE}"),
        Theme::Dark => format!("{DARK}{DARK_LEVELS}{FUTURE}"),
        Theme::Auto => format!(
            "{LIGHT}{LIGHT_LEVELS}{FUTURE}@media (prefers-color-scheme:dark){{{DARK}{DARK_LEVELS}}}"
        ),
    };

    let mut svg = String::with_capacity(24_000);
    // Writing to a String cannot fail.
    let _ = write!(
        svg,
        r#"{head}<text class="mu b" x="24" y="34" font-size="{size}" letter-spacing="0.8">{top}</text>"#,
        head = head(&title, &style),
        size = top.size,
        top = escape(&top.text),
    );
    figures(
        &mut svg,
        [
            ("DISTANCE", &distance),
            ("RUNS", &runs),
            ("CURRENT STREAK", &streak),
            ("LONGEST RUN", &longest),
        ],
        (56, 78),
    );
    heat_map(&mut svg, year);
    let mut foot = format!(
        "{} in a row · longest {}",
        weeks(year.streak.current_weeks),
        days(year.streak.longest_days)
    );
    if year.totals.count == 0 {
        foot = "No runs yet this year".into();
    }
    let foot = fit(&foot, LEGEND_LEFT - 8.0 - LEFT, SMALL);
    let _ = write!(
        svg,
        r#"<text class="mu" x="24" y="{FOOT_Y}" font-size="{size}">{foot}</text><text class="mu" x="{less}" y="{FOOT_Y}" font-size="10" text-anchor="end">Less</text>"#,
        size = foot.size,
        foot = escape(&foot.text),
        less = LEGEND_LEFT + 24.0,
    );
    for step in 0..5 {
        let _ = write!(
            svg,
            r#"<rect class="l{step}" x="{x}" y="{y}" width="{SQUARE}" height="{SQUARE}" rx="1.5"/>"#,
            x = LEGEND_LEFT + 28.0 + f64::from(step) * 10.0,
            y = FOOT_Y - 8.0,
        );
    }
    let _ = write!(
        svg,
        r#"<text class="mu" x="{x}" y="{FOOT_Y}" font-size="10">More</text></svg>"#,
        x = LEGEND_LEFT + 80.0,
    );
    svg
}

/// One square per day of the year, in columns of Monday-to-Sunday weeks, with the months named
/// under the column of their first day. Days after this week (the answer's last week) are dimmed.
fn heat_map(svg: &mut String, year: &RunningYearView) {
    let (Ok(first), Ok(last)) = (
        Date::from_calendar_date(year.year, Month::January, 1),
        Date::from_calendar_date(year.year, Month::December, 31),
    ) else {
        return;
    };
    let by_day: HashMap<Date, f64> = year
        .days
        .iter()
        .filter_map(|d| Some((parse_day(&d.date)?, d.distance)))
        .collect();
    // The end of the last week the answer covers: the days after it are still to come.
    let known_until = year
        .weeks
        .last()
        .and_then(|w| parse_day(&w.start))
        .map(|monday| monday + Duration::days(6))
        .unwrap_or(first - Duration::days(1));
    let offset = i64::from(first.weekday().number_days_from_monday());
    let columns = (offset + i64::from(last.ordinal()) + 6) / 7;
    // Centred: 53 columns (54 when a leap year begins on a Sunday) of PITCH px, the last one SQUARE.
    let left = ((480.0 - (columns as f64 * PITCH - (PITCH - f64::from(SQUARE)))) / 2.0).floor();
    let mut month_left = f64::MIN;
    let mut day = first;
    loop {
        let index = offset + i64::from(day.ordinal()) - 1;
        let x = left + (index / 7) as f64 * PITCH;
        let y = MAP_TOP + (index % 7) as f64 * PITCH;
        let level = level(by_day.get(&day).copied().unwrap_or(0.0));
        let future = if day > known_until { " fu" } else { "" };
        let _ = write!(
            svg,
            r#"<rect class="l{level}{future}" x="{x}" y="{y}" width="{SQUARE}" height="{SQUARE}" rx="1.5"/>"#
        );
        if day.day() == 1 {
            let name = MONTH_NAMES[usize::from(u8::from(day.month())) - 1];
            // A name that would run into the one before is left out.
            if x >= month_left {
                let _ = write!(
                    svg,
                    r#"<text class="mu" x="{x}" y="{MONTHS_Y}" font-size="{}">{}</text>"#,
                    MONTH.size,
                    escape(name),
                );
                month_left = x + super::text_fit::measure(name).0 * MONTH.size + 4.0;
            }
        }
        if day >= last {
            break;
        }
        day += Duration::days(1);
    }
}

/// A `YYYY-MM-DD` day.
fn parse_day(text: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format).ok()
}

/// `1 day`, `12 days`.
fn days(n: u32) -> String {
    format!("{n} {}", if n == 1 { "day" } else { "days" })
}

/// `1 week`, `8 weeks`.
fn weeks(n: u32) -> String {
    format!("{n} {}", if n == 1 { "week" } else { "weeks" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests_support::run;
    use crate::store::IndexedRun;
    use crate::view::year::build_running_year;
    use quick_xml::events::Event;
    use time::macros::{date, datetime};

    fn on(id: i64, day: &str, distance: f64) -> IndexedRun {
        run(id, &format!("{day}T07:00:00Z"), distance)
    }

    /// 2026 up to Saturday 6 June: a three-day streak ending today, a gap, a long run.
    fn sample() -> RunningYearView {
        let mut runs = vec![
            on(1, "2026-01-01", 5_000.0),
            on(2, "2026-01-03", 12_500.0),
            on(3, "2026-03-15", 30_000.0),
            on(4, "2026-06-04", 8_000.0),
            on(5, "2026-06-05", 4_000.0),
            on(6, "2026-06-06", 21_100.0),
        ];
        runs[2].name = "Half <marathon> & \"more\"".into();
        build_running_year(
            &runs,
            2026,
            date!(2026 - 06 - 06),
            datetime!(2026-06-06 12:00 UTC),
        )
    }

    /// Parses `svg` as XML (panicking on malformed XML): its text nodes, and its `rect`s' classes.
    fn parse(svg: &str) -> (Vec<String>, Vec<String>) {
        let mut reader = quick_xml::Reader::from_str(svg);
        let (mut texts, mut rects) = (Vec::new(), Vec::new());
        let mut depth = 0_i32;
        loop {
            match reader.read_event() {
                Ok(Event::Start(_)) => depth += 1,
                Ok(Event::End(_)) => depth -= 1,
                Ok(Event::Empty(element)) => {
                    let mut class = String::new();
                    for attribute in element.attributes() {
                        let attribute = attribute.expect("well-formed attribute");
                        if attribute.key.as_ref() == b"class" {
                            class = attribute.unescape_value().expect("escapes").into_owned();
                        }
                    }
                    if element.name().as_ref() == b"rect" {
                        rects.push(class);
                    }
                }
                Ok(Event::Text(text)) => texts.push(text.unescape().expect("escapes").into_owned()),
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(err) => panic!("not XML at {}: {err}\n{svg}", reader.buffer_position()),
            }
        }
        assert_eq!(depth, 0, "every element closed");
        (texts, rects)
    }

    /// The day squares' classes (the legend's five squares come last).
    fn day_squares(svg: &str) -> Vec<String> {
        let (_, rects) = parse(svg);
        // The background and the legend are not days.
        rects[1..rects.len() - 5].to_vec()
    }

    #[test]
    fn one_square_per_day_of_the_year_coloured_by_distance() {
        let svg = render_year(&sample(), Theme::Light, Units::Metric);
        let squares = day_squares(&svg);
        assert_eq!(squares.len(), 365);
        // 1 January: 5 km (level 2); 2 January: none; 3 January: 12.5 km; 15 March: 30 km.
        assert_eq!(squares[0], "l2");
        assert_eq!(squares[1], "l0");
        assert_eq!(squares[2], "l3");
        assert_eq!(squares[73], "l4");
        assert_eq!(squares[155], "l1", "5 June, 4 km");
        // Up to Sunday 7 June the days are known; after it they are still to come.
        assert_eq!(squares[157], "l0");
        assert_eq!(squares[158], "l0 fu");
        assert_eq!(
            squares.iter().filter(|c| c.ends_with("fu")).count(),
            365 - 158
        );
        // A leap year has 366, and one beginning on a Sunday needs 54 columns, still inside.
        let mut leap = sample();
        leap.year = 2040;
        leap.days.clear();
        let leap_svg = render_year(&leap, Theme::Light, Units::Metric);
        assert_eq!(day_squares(&leap_svg).len(), 366);
        // The squares' left edges (the day squares and the legend's).
        let xs: Vec<f64> = leap_svg
            .split(r#"<rect class="l"#)
            .skip(1)
            .filter_map(|s| s.split(r#"x=""#).nth(1)?.split('"').next()?.parse().ok())
            .collect();
        assert_eq!(xs.len(), 366 + 5);
        assert!(
            xs.iter().all(|x| (20.0..=460.0 - 7.0).contains(x)),
            "{xs:?}"
        );
        assert_eq!(xs.iter().copied().fold(0.0, f64::max), 448.0, "54 columns");
    }

    #[test]
    fn shows_year_totals_streak_and_longest_run_in_both_units() {
        let svg = render_year(&sample(), Theme::Auto, Units::Metric);
        let (texts, _) = parse(&svg);
        for text in [
            "RUNNING YEAR 2026",
            "81 km",
            "6",
            "3 days",
            "30.0 km",
            "Jan",
            "Dec",
            "1 week in a row · longest 3 days",
        ] {
            assert!(texts.iter().any(|t| t == text), "{text} missing: {texts:?}");
        }
        let imperial = render_year(&sample(), Theme::Auto, Units::Imperial);
        let (texts, _) = parse(&imperial);
        assert!(texts.iter().any(|t| t == "50 mi"), "{texts:?}");
        assert!(texts.iter().any(|t| t == "18.6 mi"), "{texts:?}");
        assert!(!imperial.contains(" km"));
        assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="200" viewBox="0 0 480 200""#));
    }

    #[test]
    fn the_longest_runs_name_is_bounded_and_without_bidirectional_controls() {
        let mut long = sample();
        if let Some(longest) = long.longest_run.as_mut() {
            longest.name = format!("\u{202E}Long{}", "o".repeat(10_000));
        }
        let svg = render_year(&long, Theme::Auto, Units::Metric);
        let (texts, _) = parse(&svg);
        let title = texts
            .iter()
            .find(|t| t.starts_with("Running year"))
            .expect("the title");
        assert!(
            title.chars().count() < 300,
            "{} characters",
            title.chars().count()
        );
        assert!(
            title.contains("(Longooo") && title.contains("…)"),
            "{title}"
        );
        assert!(!svg.contains('\u{202E}'));
    }

    #[test]
    fn text_is_escaped_and_nothing_is_external() {
        let mut hostile = sample();
        if let Some(longest) = hostile.longest_run.as_mut() {
            longest.name = "<script>alert(1)</script>&\u{1}</svg>".into();
        }
        let svg = render_year(&hostile, Theme::Auto, Units::Metric);
        let (texts, _) = parse(&svg);
        assert!(
            texts
                .iter()
                .any(|t| t.contains("<script>alert(1)</script>&</svg>")),
            "the name is text: {texts:?}"
        );
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains('\u{1}'));
        assert_eq!(svg.matches("<svg").count(), 1);
        for forbidden in ["href", "<image", "url(", "@import", "<foreignObject"] {
            assert!(!svg.contains(forbidden), "{forbidden} in {svg}");
        }
        assert!(!svg
            .split_whitespace()
            .any(|w| w.starts_with("on") && w.contains('=')));
        // A view of the year alone: no coordinate, polyline or route of any run.
        assert!(!svg.contains("latlng") && !svg.contains("<path"));
    }

    #[test]
    fn themes_choose_the_colours() {
        let auto = render_year(&sample(), Theme::Auto, Units::Metric);
        assert!(auto.contains(".l4{fill:#c73f00}"));
        assert!(auto.contains("@media (prefers-color-scheme:dark){.bg{fill:#17191e"));
        assert!(auto.contains(".l4{fill:#ff8c4f}"));
        let light = render_year(&sample(), Theme::Light, Units::Metric);
        assert!(light.contains(".bg{fill:#fff") && !light.contains("#17191e"));
        assert!(light.contains(".l0{fill:#e4e5e9}") && !light.contains("#ff8c4f"));
        let dark = render_year(&sample(), Theme::Dark, Units::Metric);
        assert!(dark.contains(".bg{fill:#17191e") && !dark.contains("prefers-color-scheme"));
        assert!(dark.contains(".l4{fill:#ff8c4f}") && !dark.contains("#c73f00"));
        assert!(dark.contains(".fu{opacity:.45}"));
    }

    #[test]
    fn an_empty_or_stale_year_and_odd_values_still_make_a_card() {
        let empty = build_running_year(
            &[],
            2027,
            date!(2026 - 12 - 06),
            datetime!(2026-12-06 12:00 UTC),
        );
        let svg = render_year(&empty, Theme::Light, Units::Metric);
        let (texts, _) = parse(&svg);
        assert!(
            texts.iter().any(|t| t == "No runs yet this year"),
            "{texts:?}"
        );
        assert!(texts.iter().any(|t| t == "–"));
        let squares = day_squares(&svg);
        assert_eq!(squares.len(), 365);
        assert!(squares.iter().all(|c| c == "l0 fu"), "a year to come");
        let mut odd = sample();
        odd.stale = true;
        odd.totals.distance = f64::NAN;
        odd.days[0].date = "not a date".into();
        odd.days[1].distance = f64::INFINITY;
        let svg = render_year(&odd, Theme::Dark, Units::Metric);
        let (texts, _) = parse(&svg);
        assert!(texts.iter().any(|t| t.contains("MAY BE OUT OF DATE")));
        assert!(texts.iter().any(|t| t == "0 km"));
        // A year `time` cannot hold: a card without squares, not a panic.
        odd.year = i32::MAX;
        parse(&render_year(&odd, Theme::Light, Units::Metric));
    }

    #[test]
    fn levels_step_at_5_10_and_20_km() {
        for (metres, expected) in [
            (0.0, 0),
            (f64::NAN, 0),
            (-1.0, 0),
            (1.0, 1),
            (4_999.0, 1),
            (5_000.0, 2),
            (9_999.0, 2),
            (10_000.0, 3),
            (20_000.0, 4),
            (f64::INFINITY, 4),
        ] {
            assert_eq!(level(metres), expected, "{metres}");
        }
    }
}
