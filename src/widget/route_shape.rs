//! The route sketch, private by construction (`WIDGET_ROUTE_SHAPE=true`): Strava's
//! `summary_polyline` decoded (the maintained `polyline` crate), 500 m cut from both ends (where
//! a run usually starts: at home), and what is left drawn as SVG path data in a 0–100 box. Only
//! the shape leaves the server: no latitude, longitude, scale or orientation beyond north-up.

/// Metres cut from each end of the route.
pub const TRIM_METRES: f64 = 500.0;

/// Mean Earth radius (m), for haversine distances.
const EARTH_RADIUS: f64 = 6_371_008.8;

/// The sketch for `summary_polyline`: `M x y L x y …` with every number in 0–100, one decimal
/// at most. `None` for an empty or undecodable polyline, or a route too short to keep anything
/// after the trim.
pub fn route_shape(summary_polyline: &str) -> Option<String> {
    if summary_polyline.is_empty() {
        return None;
    }
    let line = polyline::decode_polyline(summary_polyline, 5).ok()?;
    // (latitude, longitude) in degrees.
    let points: Vec<(f64, f64)> = line
        .0
        .iter()
        .map(|c| (c.y, c.x))
        .filter(|(lat, lon)| lat.is_finite() && lon.is_finite())
        .collect();
    let trimmed = trim(&points, TRIM_METRES)?;
    normalise(&trimmed)
}

/// Great-circle distance in metres.
fn haversine((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS * a.sqrt().min(1.0).asin()
}

/// The part of the route from `cut` metres after its start to `cut` metres before its end, with
/// interpolated end points; `None` when less than one metre would be left.
fn trim(points: &[(f64, f64)], cut: f64) -> Option<Vec<(f64, f64)>> {
    let mut along = Vec::with_capacity(points.len());
    let mut total = 0.0;
    for (i, point) in points.iter().enumerate() {
        if i > 0 {
            total += haversine(points[i - 1], *point);
        }
        along.push(total);
    }
    let (from, to) = (cut, total - cut);
    if to - from < 1.0 {
        return None;
    }
    let at = |distance: f64| -> (f64, f64) {
        let i = along
            .partition_point(|d| *d < distance)
            .clamp(1, points.len() - 1);
        let (a, b) = (points[i - 1], points[i]);
        let span = along[i] - along[i - 1];
        let t = if span > 0.0 {
            ((distance - along[i - 1]) / span).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
    };
    let mut kept = vec![at(from)];
    kept.extend(
        points
            .iter()
            .zip(&along)
            .filter(|(_, d)| **d > from && **d < to)
            .map(|(p, _)| *p),
    );
    kept.push(at(to));
    Some(kept)
}

/// North-up, scaled to fit a 0–100 box and centred; path data with one decimal, repeated points
/// dropped.
fn normalise(points: &[(f64, f64)]) -> Option<String> {
    let mean_lat = points.iter().map(|p| p.0).sum::<f64>() / points.len() as f64;
    let squeeze = mean_lat.to_radians().cos();
    // x grows east, y grows south (SVG's y points down).
    let projected: Vec<(f64, f64)> = points
        .iter()
        .map(|(lat, lon)| (lon * squeeze, -lat))
        .collect();
    let (min_x, max_x, min_y, max_y) = projected.iter().fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c, d), (x, y)| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)),
    );
    let size = (max_x - min_x).max(max_y - min_y);
    if !(size.is_finite() && size > 0.0) {
        return None;
    }
    let scale = 100.0 / size;
    let (pad_x, pad_y) = (
        (100.0 - (max_x - min_x) * scale) / 2.0,
        (100.0 - (max_y - min_y) * scale) / 2.0,
    );
    let mut path = String::new();
    let mut last = None;
    for (x, y) in projected {
        let x = round((x - min_x) * scale + pad_x);
        let y = round((y - min_y) * scale + pad_y);
        if last == Some((x, y)) {
            continue;
        }
        path.push_str(if last.is_none() { "M" } else { " L" });
        path.push_str(&format!("{x} {y}"));
        last = Some((x, y));
    }
    Some(path)
}

/// One decimal, within 0–100, `-0` as `0`.
fn round(value: f64) -> f64 {
    ((value * 10.0).round() / 10.0).clamp(0.0, 100.0) + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyline::encode_coordinates;

    /// A polyline through (lat, lon) points.
    fn encode(points: &[(f64, f64)]) -> String {
        encode_coordinates(
            points
                .iter()
                .map(|(lat, lon)| geo_types::coord! { x: *lon, y: *lat }),
            5,
        )
        .expect("encodes")
    }

    /// The numbers of a path.
    fn numbers(path: &str) -> Vec<f64> {
        path.split([' ', 'M', 'L'])
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("number"))
            .collect()
    }

    #[test]
    fn a_straight_run_north_is_trimmed_and_fills_the_box_height() {
        // About 3.3 km due north from the Brandenburg Gate.
        let route: Vec<(f64, f64)> = (0..=30)
            .map(|i| (52.5163 + i as f64 * 0.001, 13.3777))
            .collect();
        let path = route_shape(&encode(&route)).expect("a sketch");
        assert!(path.starts_with('M') && path.contains(" L"), "{path}");
        let n = numbers(&path);
        assert!(n.iter().all(|v| (0.0..=100.0).contains(v)), "{path}");
        // North-up: the route starts at the bottom and ends at the top, centred horizontally.
        assert_eq!((n[0], n[1]), (50.0, 100.0));
        assert_eq!((n[n.len() - 2], n[n.len() - 1]), (50.0, 0.0));
        for coordinate in ["52.5", "13.37", "5251", "1337"] {
            assert!(!path.contains(coordinate), "{coordinate} in {path}");
        }
    }

    #[test]
    fn the_first_and_last_500_m_are_cut() {
        // 2 km due east along the equator in 100 m steps: 1 km remains.
        let step = 100.0 / (EARTH_RADIUS * std::f64::consts::PI / 180.0);
        let route: Vec<(f64, f64)> = (0..=20).map(|i| (0.0, i as f64 * step)).collect();
        let points: Vec<(f64, f64)> = route.clone();
        let kept = trim(&points, TRIM_METRES).expect("kept");
        let first = haversine(route[0], kept[0]);
        let last = haversine(kept[kept.len() - 1], route[20]);
        assert!((first - 500.0).abs() < 1.0, "{first}");
        assert!((last - 500.0).abs() < 1.0, "{last}");
        let length: f64 = kept.windows(2).map(|w| haversine(w[0], w[1])).sum();
        assert!((length - 1000.0).abs() < 2.0, "{length}");
    }

    #[test]
    fn short_routes_and_bad_polylines_have_no_sketch() {
        let short: Vec<(f64, f64)> = (0..=9).map(|i| (52.5 + i as f64 * 0.001, 13.4)).collect();
        assert_eq!(route_shape(&encode(&short)), None, "1 km: nothing left");
        assert_eq!(route_shape(""), None);
        assert_eq!(route_shape("\u{1}\u{2}"), None);
        assert_eq!(route_shape(&encode(&[(52.5, 13.4), (52.5, 13.4)])), None);
    }

    #[test]
    fn the_sample_run_gives_a_sketch_without_its_coordinates() {
        let sample: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/data/strava/activity-detail-run.json"
        ))
        .expect("sample");
        let polyline = sample["map"]["summary_polyline"]
            .as_str()
            .expect("polyline");
        let path = route_shape(polyline).expect("a sketch");
        assert!(numbers(&path).iter().all(|v| (0.0..=100.0).contains(v)));
        for key in ["start_latlng", "end_latlng"] {
            for coordinate in sample[key].as_array().expect("latlng") {
                let text = format!("{:.2}", coordinate.as_f64().expect("number"));
                assert!(!path.contains(&text), "{text} in {path}");
            }
        }
        assert!(path
            .chars()
            .all(|c| c.is_ascii_digit() || " .ML".contains(c)));
    }
}
