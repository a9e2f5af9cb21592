//! The SVG card: the latest run as one self-contained image for places that show images only,
//! such as a GitHub profile README. No script, no external resource, no photo (it would have to
//! be fetched and inlined), no coordinates: only what the JSON answer says, every text escaped
//! for XML. [`Theme::Auto`] follows `prefers-color-scheme` inside the SVG, so one URL suits a
//! light and a dark page. Text is fitted to its box by estimated rendered width
//! ([`super::text_fit`]). [`render_error`] draws an answer without a run (no public run, Strava
//! or storage failing, …) as a card of the same size that says what is wrong, so an `<img>` is
//! never broken. A view beside the JSON one: it knows nothing of HTTP.

use super::text_fit::{cut_to_chars, fit, Style};
use super::LatestRunView;
use std::fmt::Write;

/// The most characters of an activity's name a card carries, in its text and in its `<title>`:
/// a longer name is cut, ending in "…".
pub const NAME_MAX_CHARS: usize = 100;

/// The card's width in CSS pixels (also its `width` attribute).
pub const WIDTH: u32 = 480;
/// The card's height in CSS pixels.
pub const HEIGHT: u32 = 200;

/// Left edge of the card's text, and right edge of its content (px).
pub(super) const LEFT: f64 = 24.0;
pub(super) const RIGHT: f64 = 456.0;
/// Where the route sketch starts (px from the left; its stroke reaches 1.5 px further left).
const SKETCH_LEFT: f64 = 388.0;
/// The gap kept between the name and the sketch.
const GAP: f64 = 10.0;
/// The left edge of "View on Strava" at its size, with a gap.
const LINK_LEFT: f64 = 330.0;
/// The name: 22 px, shrunk to 17 px before it is cut.
const NAME: Style = Style {
    size: 22.0,
    min_size: 17.0,
    spacing: 0.0,
};
/// The line above the name.
pub(super) const KICKER: Style = Style {
    size: 12.0,
    min_size: 9.0,
    spacing: 0.8,
};
/// A figure under its label.
pub(super) const FIGURE: Style = Style {
    size: 18.0,
    min_size: 12.0,
    spacing: 0.0,
};
/// A figure's label.
pub(super) const LABEL: Style = Style {
    size: 10.5,
    min_size: 8.0,
    spacing: 0.6,
};
/// The year line and the error card's second line.
pub(super) const SMALL: Style = Style {
    size: 13.0,
    min_size: 10.0,
    spacing: 0.0,
};
/// The error card's sentence.
const HEADLINE: Style = Style {
    size: 20.0,
    min_size: 15.0,
    spacing: 0.0,
};
/// The columns of the four figures: left edge and the width each may take.
pub(super) const COLUMNS: [(f64, f64); 4] =
    [(24.0, 104.0), (136.0, 104.0), (248.0, 104.0), (360.0, 96.0)];

/// Metres in a mile and in a foot.
const MILE: f64 = 1609.344;
const FOOT: f64 = 0.3048;

/// The card's colours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Theme {
    /// Light on the page's light scheme, dark on its dark one (`prefers-color-scheme`).
    #[default]
    Auto,
    /// Always light.
    Light,
    /// Always dark.
    Dark,
}

impl Theme {
    /// Every theme, in [`Theme::index`] order.
    pub const ALL: [Theme; 3] = [Theme::Auto, Theme::Light, Theme::Dark];

    /// `auto`, `light` or `dark` (any case).
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(value))
    }

    /// Its place in [`Theme::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Auto => "auto",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }
}

/// Kilometres and metres, or miles and feet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Units {
    /// km, m, min/km.
    #[default]
    Metric,
    /// mi, ft, min/mi.
    Imperial,
}

impl Units {
    /// Both, in [`Units::index`] order.
    pub const ALL: [Units; 2] = [Units::Metric, Units::Imperial];

    /// Its place in [`Units::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// `metric` or `imperial` (any case).
    pub fn parse(value: &str) -> Option<Self> {
        if value.eq_ignore_ascii_case("metric") {
            Some(Units::Metric)
        } else if value.eq_ignore_ascii_case("imperial") {
            Some(Units::Imperial)
        } else {
            None
        }
    }

    /// Metres in its distance unit.
    pub(super) fn length(self) -> f64 {
        match self {
            Units::Metric => 1000.0,
            Units::Imperial => MILE,
        }
    }

    /// `km` or `mi`.
    pub(super) fn distance_label(self) -> &'static str {
        match self {
            Units::Metric => "km",
            Units::Imperial => "mi",
        }
    }
}

/// The light theme's classes (background, text, muted text, rule).
pub(super) const LIGHT: &str =
    ".bg{fill:#fff;stroke:#d7d8dd}.fg{fill:#1b1c20}.mu{fill:#55575e}.tr{fill:#e4e5e9}";
/// The dark theme's classes.
pub(super) const DARK: &str =
    ".bg{fill:#17191e;stroke:#33363d}.fg{fill:#f1f2f4}.mu{fill:#b4b8c0}.tr{fill:#3a3d45}";

/// The card for `run`.
pub fn render(run: &LatestRunView, theme: Theme, units: Units) -> String {
    // Path data as `route_shape` makes it: commands, digits, dots and spaces only.
    let shape = run
        .route_shape
        .as_ref()
        .and_then(Option::as_deref)
        .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit() || " .ML".contains(c)));
    // Text beside the sketch stops short of it; without one it may use the card's width.
    let beside = if shape.is_some() {
        SKETCH_LEFT - 1.5 - GAP - LEFT
    } else {
        RIGHT - LEFT
    };
    let name_text = card_name(&run.name);
    let name = fit(&name_text, beside, NAME);
    let distance = format!(
        "{} {}",
        decimal(run.distance / units.length(), 2),
        units.distance_label()
    );
    let time = clock(run.moving_time as f64);
    let pace = run
        .pace_seconds_per_km
        .filter(|p| p.is_finite() && *p > 0.0)
        .map(|p| {
            format!(
                "{} /{}",
                clock(p * units.length() / 1000.0),
                units.distance_label()
            )
        })
        .unwrap_or_else(|| "–".into());
    let elevation = run
        .total_elevation_gain
        .filter(|e| e.is_finite())
        .map(|e| match units {
            Units::Metric => format!("{} m", decimal(e, 0)),
            Units::Imperial => format!("{} ft", decimal(e / FOOT, 0)),
        })
        .unwrap_or_else(|| "–".into());
    let year = format!(
        "{} {} this year",
        decimal(run.year_to_date_run_total_distance / units.length(), 0),
        units.distance_label()
    );
    let date = run
        .start_date_local
        .as_deref()
        .and_then(day_of)
        .or_else(|| day_of(&run.start_date));
    let mut top = String::from("LATEST RUN");
    if let Some(date) = &date {
        top.push_str(" · ");
        top.push_str(&date.to_uppercase());
    }
    if run.stale {
        top.push_str(" · MAY BE OUT OF DATE");
    }
    let top = fit(&top, beside, KICKER);
    let style = style(theme);
    let title = format!(
        "Latest run: {name_text}, {distance} in {time}, {pace}{}",
        date.map(|d| format!(", {d}")).unwrap_or_default()
    );

    let mut svg = String::with_capacity(2600);
    // Writing to a String cannot fail.
    let _ = write!(
        svg,
        r##"{head}<text class="mu b" x="24" y="38" font-size="{top_size}" letter-spacing="0.8">{top}</text><text class="fg b" x="24" y="70" font-size="{name_size}">{name}</text>"##,
        head = head(&title, &style),
        top_size = top.size,
        top = escape(&top.text),
        name_size = name.size,
        name = escape(&name.text),
    );
    if let Some(d) = shape {
        // The sketch's 0–100 box drawn at 68 px in the top right corner.
        let _ = write!(
            svg,
            r##"<path transform="translate(388 22) scale(0.68)" d="{d}" fill="none" stroke="#fc5200" stroke-width="3" stroke-linecap="round" stroke-linejoin="round" vector-effect="non-scaling-stroke"/>"##,
            d = escape(d),
        );
    }
    figures(
        &mut svg,
        [
            ("DISTANCE", &distance),
            ("MOVING TIME", &time),
            ("PACE", &pace),
            ("ELEVATION", &elevation),
        ],
        (108, 132),
    );
    let year = fit(&year, LINK_LEFT - LEFT, SMALL);
    let _ = write!(
        svg,
        r##"<rect class="tr" x="24" y="152" width="432" height="1"/><text class="mu" x="24" y="178" font-size="{size}">{year}</text><text class="fg b" x="456" y="178" font-size="13" text-anchor="end">View on Strava</text><rect x="358" y="182" width="98" height="2" fill="#fc5200"/></svg>"##,
        size = year.size,
        year = escape(&year.text),
    );
    svg
}

/// The card for an answer without a run: the same size and colours, saying in words what is
/// wrong, for an `<img>` that must never show a broken image. `code` is the JSON error's code
/// (`no_public_run`, `not_configured`, `strava_unavailable`, …); an unknown one gets a general
/// sentence.
pub fn render_error(code: &str, theme: Theme) -> String {
    let (headline, detail) = error_words(code);
    let headline = fit(headline, RIGHT - LEFT, HEADLINE);
    let detail = fit(detail, RIGHT - LEFT, SMALL);
    let title = format!("Latest run: {}", headline.text);
    let mut svg = String::with_capacity(1600);
    let _ = write!(
        svg,
        r##"{head}<text class="mu b" x="24" y="38" font-size="12" letter-spacing="0.8">LATEST RUN</text><text class="fg b" x="24" y="96" font-size="{h_size}">{headline}</text><text class="mu" x="24" y="124" font-size="{d_size}">{detail}</text><rect class="tr" x="24" y="152" width="432" height="1"/><text class="mu" x="24" y="178" font-size="12">{note}</text></svg>"##,
        head = head(&title, &style(theme)),
        h_size = headline.size,
        headline = escape(&headline.text),
        d_size = detail.size,
        detail = escape(&detail.text),
        note = escape(&fit(&format!("Strava widget · {code}"), RIGHT - LEFT, SMALL).text),
    );
    svg
}

/// Four figures under their labels, one per column, each fitted to its column; labels on the
/// baseline `ys.0`, figures on `ys.1`.
pub(super) fn figures(svg: &mut String, items: [(&str, &String); 4], ys: (u32, u32)) {
    for ((label, value), (x, width)) in items.into_iter().zip(COLUMNS) {
        let label = fit(label, width, LABEL);
        let value = fit(value, width, FIGURE);
        let _ = write!(
            svg,
            r#"<text class="mu b" x="{x}" y="{label_y}" font-size="{label_size}" letter-spacing="0.6">{label}</text><text class="fg b" x="{x}" y="{value_y}" font-size="{value_size}">{value}</text>"#,
            label_y = ys.0,
            value_y = ys.1,
            label_size = label.size,
            label = escape(&label.text),
            value_size = value.size,
            value = escape(&value.text),
        );
    }
}

/// What the error card says for `code`: a headline and a second line.
fn error_words(code: &str) -> (&'static str, &'static str) {
    match code {
        "no_public_run" => (
            "No public run to show yet.",
            "The latest run appears here once it is public on Strava.",
        ),
        "not_configured" => (
            "Strava is not connected yet.",
            "The site owner connects it once with handler setup.",
        ),
        "strava_unavailable" => (
            "Strava cannot be reached right now.",
            "The latest run shows again when Strava answers.",
        ),
        "strava_authorization" => (
            "The connection to Strava has ended.",
            "The site owner needs to reconnect it with handler setup.",
        ),
        "storage_unavailable" => (
            "The latest run cannot be loaded right now.",
            "The app's storage cannot be reached. Try again in a minute.",
        ),
        "year_not_indexed" => (
            "That year is not on record.",
            "This year and the year before can be shown.",
        ),
        _ => (
            "The latest run cannot be shown right now.",
            "Please try again later.",
        ),
    }
}

/// The theme's stylesheet.
fn style(theme: Theme) -> String {
    match theme {
        Theme::Light => LIGHT.to_owned(),
        Theme::Dark => DARK.to_owned(),
        Theme::Auto => format!("{LIGHT}@media (prefers-color-scheme:dark){{{DARK}}}"),
    }
}

/// The card's opening: the root element, its title, style and background.
pub(super) fn head(title: &str, style: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="title"><title id="title">{title}</title><style>text{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}}.b{{font-weight:700}}{style}</style><rect class="bg" x="0.5" y="0.5" width="{w}" height="{h}" rx="14"/>"##,
        title = escape(title),
        w = WIDTH - 1,
        h = HEIGHT - 1,
    )
}

/// Text safe inside an XML element or attribute: markup characters escaped, characters XML 1.0
/// cannot carry (most control characters) dropped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// An activity's name as a card shows it, in its text and its `<title>`: one line (line breaks
/// and tabs become spaces, runs of spaces one), without the bidirectional controls that would
/// reorder the card's text around them (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C),
/// and cut to [`NAME_MAX_CHARS`].
pub(super) fn card_name(name: &str) -> String {
    let mut line = String::with_capacity(name.len().min(4 * NAME_MAX_CHARS));
    let mut chars = 0;
    // Word by word until the bound is passed: the rest of a long name is not even looked at.
    for word in name.split_whitespace() {
        if chars > NAME_MAX_CHARS {
            break;
        }
        let word: String = word.chars().filter(|c| !is_bidi_control(*c)).collect();
        if word.is_empty() {
            continue;
        }
        if !line.is_empty() {
            line.push(' ');
            chars += 1;
        }
        chars += word.chars().count();
        line.push_str(&word);
    }
    cut_to_chars(&line, NAME_MAX_CHARS)
}

/// The explicit bidirectional formatting characters: embeddings, overrides and isolates, and the
/// left-to-right, right-to-left and Arabic letter marks.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// `8.41`, `1,654`: fixed decimals, thousands grouped with commas.
pub(super) fn decimal(value: f64, decimals: usize) -> String {
    let value = if value.is_finite() { value } else { 0.0 };
    let text = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::with_capacity(text.len() + 4);
    if value < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        grouped.push('-');
    }
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if !fraction.is_empty() {
        grouped.push('.');
        grouped.push_str(fraction);
    }
    grouped
}

/// `47:31`, `1:02:03`.
fn clock(seconds: f64) -> String {
    let total = if seconds.is_finite() && seconds > 0.0 {
        seconds.round() as u64
    } else {
        0
    };
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// `10 Oct 2025` from the date part of an RFC 3339 text (the athlete's own day when it is
/// `start_date_local`).
fn day_of(text: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let date = text.get(..10)?;
    let mut parts = date.split('-');
    let year: u16 = parts.next()?.parse().ok()?;
    let month: usize = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let month = MONTHS.get(month.checked_sub(1)?)?;
    (1..=31)
        .contains(&day)
        .then(|| format!("{day} {month} {year}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sample run (also the keeper's, for its cards).
    pub(crate) fn run() -> LatestRunView {
        LatestRunView {
            id: 16128930471,
            name: "Tiergarten tempo + coffee".into(),
            distance: 8412.6,
            moving_time: 2851,
            photo_url: Some("https://example.com/photo.jpg".into()),
            year_to_date_run_total_distance: 1654210.0,
            sport_type: "Run".into(),
            start_date: "2025-10-10T05:58:11Z".into(),
            start_date_local: Some("2025-10-10T07:58:11Z".into()),
            timezone: Some("(GMT+01:00) Europe/Berlin".into()),
            elapsed_time: 2917,
            total_elevation_gain: Some(31.0),
            average_speed: Some(2.951),
            kudos_count: Some(21),
            pace_seconds_per_km: Some(338.9),
            strava_url: "https://www.strava.com/activities/16128930471".into(),
            fetched_at: "2025-10-12T18:04:09Z".into(),
            stale: false,
            route_shape: None,
        }
    }

    #[test]
    fn every_theme_and_unit_is_at_its_index() {
        for (i, theme) in Theme::ALL.into_iter().enumerate() {
            assert_eq!(theme.index(), i);
        }
        for (i, units) in Units::ALL.into_iter().enumerate() {
            assert_eq!(units.index(), i);
        }
    }

    #[test]
    fn shows_the_run_in_metric_and_imperial() {
        let metric = render(&run(), Theme::Light, Units::Metric);
        for text in [
            "Tiergarten tempo + coffee",
            "8.41 km",
            "47:31",
            "5:39 /km",
            "31 m",
            "1,654 km this year",
            "10 OCT 2025",
            "View on Strava",
        ] {
            assert!(metric.contains(text), "{text} missing: {metric}");
        }
        let imperial = render(&run(), Theme::Light, Units::Imperial);
        for text in ["5.23 mi", "9:05 /mi", "102 ft", "1,028 mi this year"] {
            assert!(imperial.contains(text), "{text} missing: {imperial}");
        }
        assert!(!imperial.contains(" km"));
    }

    #[test]
    fn has_its_stated_size_and_nothing_external() {
        let svg = render(&run(), Theme::Auto, Units::Metric);
        assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="200" viewBox="0 0 480 200""#));
        for forbidden in [
            "<script",
            "href",
            "<image",
            "url(",
            "@import",
            "example.com",
            "on",
        ] {
            let found = match forbidden {
                // Attribute names only: `on…=` handlers.
                "on" => svg
                    .split_whitespace()
                    .any(|w| w.starts_with("on") && w.contains('=')),
                _ => svg.contains(forbidden),
            };
            assert!(!found, "{forbidden} in {svg}");
        }
    }

    #[test]
    fn themes_choose_the_colours() {
        let auto = render(&run(), Theme::Auto, Units::Metric);
        assert!(auto.contains("@media (prefers-color-scheme:dark){.bg{fill:#17191e"));
        let light = render(&run(), Theme::Light, Units::Metric);
        assert!(light.contains(".bg{fill:#fff") && !light.contains("#17191e"));
        let dark = render(&run(), Theme::Dark, Units::Metric);
        assert!(dark.contains(".bg{fill:#17191e") && !dark.contains("prefers-color-scheme"));
    }

    #[test]
    fn a_hostile_name_is_escaped_text() {
        let mut hostile = run();
        hostile.name = "<img src=x onerror=alert(1)>&\"'\u{1}</svg>".into();
        let svg = render(&hostile, Theme::Auto, Units::Metric);
        assert!(!svg.contains("<img"), "{svg}");
        assert!(!svg.contains("</svg><"), "{svg}");
        assert!(svg.contains("&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&apos;&lt;/svg&gt;"));
        assert!(!svg.contains('\u{1}'));
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    #[test]
    fn the_route_sketch_is_drawn_when_there_is_one() {
        let mut with = run();
        with.route_shape = Some(Some("M50 100 L50 0".into()));
        let svg = render(&with, Theme::Auto, Units::Metric);
        assert!(svg.contains(r#"d="M50 100 L50 0""#), "{svg}");
        for shape in [None, Some(None), Some(Some("M1 1\"/><script>".into()))] {
            let mut other = run();
            other.route_shape = shape;
            let svg = render(&other, Theme::Auto, Units::Metric);
            assert!(!svg.contains("<path") && !svg.contains("<script"), "{svg}");
        }
    }

    #[test]
    fn long_names_are_fitted_to_their_width_and_stale_is_said() {
        let mut long = run();
        long.name = "A very long name for a run ".repeat(4);
        long.stale = true;
        let svg = render(&long, Theme::Light, Units::Metric);
        assert!(
            svg.contains(r#"font-size="17">A very long name for a run A very"#),
            "{svg}"
        );
        assert!(svg.contains("…</text>"), "{svg}");
        assert!(svg.contains("MAY BE OUT OF DATE"));
        // By width, not by count: 26 capitals do not fit beside the sketch, 26 i's do.
        long.route_shape = Some(Some("M50 100 L50 0".into()));
        long.name = "W".repeat(26);
        let capitals = render(&long, Theme::Light, Units::Metric);
        assert!(capitals.contains("WWW…</text>"), "{capitals}");
        long.name = "i".repeat(26);
        let narrow = render(&long, Theme::Light, Units::Metric);
        assert!(narrow.contains(&format!(r#"font-size="22">{}</text>"#, "i".repeat(26))));
    }

    /// The text of the card's `<title>`.
    fn title_of(svg: &str) -> &str {
        let start = svg.find(r#"<title id="title">"#).expect("a title") + 18;
        let end = svg[start..].find("</title>").expect("closed") + start;
        &svg[start..end]
    }

    #[test]
    fn a_very_long_name_is_cut_to_a_bounded_length_in_the_text_and_the_title() {
        let mut long = run();
        long.name = "Marathon training "
            .repeat(600)
            .chars()
            .take(10_000)
            .collect();
        let svg = render(&long, Theme::Light, Units::Metric);
        let title = title_of(&svg);
        // The name's part of the title: at most NAME_MAX_CHARS characters, ending in "…".
        let name = title
            .strip_prefix("Latest run: ")
            .and_then(|t| t.split(", 8.41 km").next())
            .expect("the name in the title");
        assert!(name.chars().count() <= NAME_MAX_CHARS, "{name}");
        assert!(
            name.ends_with('…') && name.starts_with("Marathon training"),
            "{name}"
        );
        assert!(
            title.chars().count() < 250,
            "{} characters",
            title.chars().count()
        );
        assert!(svg.len() < 4_000, "{} bytes", svg.len());
        // A name that fits the bound is kept whole.
        let mut exact = run();
        exact.name = "x".repeat(NAME_MAX_CHARS);
        let svg = render(&exact, Theme::Light, Units::Metric);
        assert!(
            title_of(&svg).contains(&"x".repeat(NAME_MAX_CHARS)),
            "{svg}"
        );
    }

    #[test]
    fn bidirectional_controls_are_taken_out_of_the_name() {
        let controls = [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ];
        let mut spoofed = run();
        spoofed.name = format!(
            "Easy {} run{}",
            controls.iter().collect::<String>(),
            '\u{202E}'
        );
        for theme in Theme::ALL {
            let svg = render(&spoofed, theme, Units::Metric);
            assert!(!svg.contains(controls), "{svg:?}");
            assert!(title_of(&svg).starts_with("Latest run: Easy run,"), "{svg}");
            assert!(svg.contains(">Easy run</text>"), "{svg}");
        }
    }

    #[test]
    fn every_error_is_a_card_of_the_same_size_in_words() {
        for (code, words) in [
            ("no_public_run", "No public run"),
            ("not_configured", "not connected"),
            ("strava_unavailable", "Strava cannot be reached"),
            ("strava_authorization", "reconnect"),
            ("storage_unavailable", "cannot be loaded"),
            ("something_new", "cannot be shown"),
        ] {
            for theme in Theme::ALL {
                let svg = render_error(code, theme);
                assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="200" viewBox="0 0 480 200""#));
                assert!(svg.contains(words), "{code}: {svg}");
                assert!(svg.contains(code), "{code}: {svg}");
                assert!(!svg.contains("<script") && !svg.contains("href"));
            }
        }
        assert!(render_error("no_public_run", Theme::Auto).contains("prefers-color-scheme:dark"));
        assert!(render_error("no_public_run", Theme::Dark).contains(".bg{fill:#17191e"));
    }

    #[test]
    fn numbers_and_dates_are_formatted() {
        assert_eq!(decimal(1234567.891, 2), "1,234,567.89");
        assert_eq!(decimal(999.5, 0), "1,000");
        assert_eq!(decimal(0.0, 0), "0");
        assert_eq!(decimal(f64::NAN, 1), "0.0");
        assert_eq!(clock(2851.0), "47:31");
        assert_eq!(clock(3723.0), "1:02:03");
        assert_eq!(
            day_of("2025-01-05T07:58:11Z").as_deref(),
            Some("5 Jan 2025")
        );
        assert_eq!(day_of("2025-13-05T07:58:11Z"), None);
        assert_eq!(day_of("bad"), None);
        assert_eq!(Theme::parse("DARK"), Some(Theme::Dark));
        assert_eq!(Units::parse("imperial"), Some(Units::Imperial));
        assert_eq!(Units::parse("furlongs"), None);
    }
}
