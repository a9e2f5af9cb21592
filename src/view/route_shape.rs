//! The route sketch, private by construction (`WIDGET_ROUTE_SHAPE=true`): Strava's
//! `summary_polyline` decoded (the maintained `polyline` crate), everything within a privacy
//! zone around the start and around the end removed, and what is left drawn as SVG path data in a
//! 0–100 box. Only the shape leaves the server: no latitude, longitude, scale or orientation
//! beyond north-up.
//!
//! The privacy zone ([`PrivacyZone`], `WIDGET_ROUTE_PRIVACY_METERS`, the setting `r`) is a circle
//! around the first and around the last point, not a distance along the path: a run that passes
//! home again in the middle (a figure-eight, two loops, an out-and-back past the door) or opens
//! with a lap of the block is cut wherever it comes near, and the path is broken there (separate
//! subpaths, clipped where they cross the circle, no line drawn across it). A first GPS fix off
//! the real start (by any distance), or a route that leaves the zone with one implausibly long
//! step, protects the far end of that step too.
//!
//! No circle is centred on the point it protects: every centre is moved by the athlete's
//! [`PrivacyOffset`] (a random direction, a quarter to half of `r` long, the same for every run),
//! and each circle's radius is `1.5 r` plus a keyed amount of up to [`JITTER_METERS`] (from an
//! HMAC-SHA256 of the activity id under a key the app keeps). So nothing is drawn within `r` of
//! the start or the end, and the loose ends of many runs from one home lie on circles around a
//! point that is not home: whoever fits their centre finds that point, a quarter to half of `r`
//! away from home, however many runs they see.
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The privacy radius when `WIDGET_ROUTE_PRIVACY_METERS` is not set.
pub const DEFAULT_RADIUS_METERS: f64 = 500.0;
/// The smallest privacy radius the app accepts.
pub const MIN_RADIUS_METERS: f64 = 200.0;
/// The largest privacy radius the app accepts.
pub const MAX_RADIUS_METERS: f64 = 10_000.0;
/// Each zone's radius is this many times the setting (before the keyed amount), so that a
/// centre moved by up to half the setting still keeps the setting's clearance around the point.
pub const RADIUS_FACTOR: f64 = 1.5;
/// The most each activity's radius exceeds [`RADIUS_FACTOR`] times the setting by (the keyed,
/// per-activity amount).
pub const JITTER_METERS: f64 = 300.0;
/// The shortest offset of the zones' centres, as a fraction of the setting.
pub const MIN_OFFSET_FRACTION: f64 = 0.25;
/// The longest offset of the zones' centres, as a fraction of the setting.
pub const MAX_OFFSET_FRACTION: f64 = 0.5;

/// Less than this many metres of route left outside the zones: no sketch.
const MIN_KEPT_METERS: f64 = 100.0;
/// Pieces shorter than this (a path grazing a zone's edge) are not drawn.
const MIN_PIECE_METERS: f64 = 1.0;
/// At most this many far ends of long steps are protected besides each end point and the point
/// after it.
const MAX_JUMPS: usize = 2;

/// Mean Earth radius (m).
const EARTH_RADIUS: f64 = 6_371_008.8;

/// Where the centre of every privacy zone of one athlete lies from the point it protects, in
/// metres east and north. Made once per athlete from a random source
/// ([`PrivacyOffset::from_random`]) and kept: the same offset for every run, so that the loose
/// ends of many runs point at a place that is not home. Its `Debug` never shows the values (with
/// a sketch matched to a map, they would give home away).
#[derive(Clone, Copy, PartialEq)]
pub struct PrivacyOffset {
    /// Metres east (west when negative).
    pub east_m: f64,
    /// Metres north (south when negative).
    pub north_m: f64,
}

impl std::fmt::Debug for PrivacyOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivacyOffset([redacted])")
    }
}

impl PrivacyOffset {
    /// An offset for the setting `radius_meters` (clamped as [`PrivacyZone::new`] clamps it)
    /// from 16 random bytes: a direction uniform over the compass, a length from
    /// [`MIN_OFFSET_FRACTION`] to [`MAX_OFFSET_FRACTION`] of the setting, uniform over the area
    /// of that ring. The same bytes give the same offset.
    pub fn from_random(radius_meters: f64, random: [u8; 16]) -> Self {
        let setting = clamp_setting(radius_meters);
        let direction = std::f64::consts::TAU * fraction(&random[..8]);
        let (inner, outer) = (MIN_OFFSET_FRACTION * setting, MAX_OFFSET_FRACTION * setting);
        let length =
            (inner * inner + (outer * outer - inner * inner) * fraction(&random[8..])).sqrt();
        PrivacyOffset {
            east_m: length * direction.sin(),
            north_m: length * direction.cos(),
        }
    }

    /// Its length in metres.
    pub fn length_m(&self) -> f64 {
        self.east_m.hypot(self.north_m)
    }

    /// This offset with its length brought within a quarter to half of `setting`, its direction
    /// kept (one made for another setting, or hand-edited); `None` without a direction (zero,
    /// or not finite).
    fn fitted(self, setting: f64) -> Option<Self> {
        let length = self.length_m();
        if !(length.is_finite() && length > 0.0) {
            return None;
        }
        let fitted = length.clamp(MIN_OFFSET_FRACTION * setting, MAX_OFFSET_FRACTION * setting);
        Some(PrivacyOffset {
            east_m: self.east_m * fitted / length,
            north_m: self.north_m * fitted / length,
        })
    }
}

/// The privacy zone around a route's start and end: the setting in metres, the key that varies
/// each activity's radius, and the offset of the centres. Its `Debug` never shows the key or the
/// offset.
#[derive(Clone)]
pub struct PrivacyZone {
    radius_meters: f64,
    key: [u8; 32],
    offset: PrivacyOffset,
}

impl std::fmt::Debug for PrivacyZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyZone")
            .field("radius_meters", &self.radius_meters)
            .finish_non_exhaustive()
    }
}

impl PrivacyZone {
    /// A zone for the setting `radius_meters` (never less than [`MIN_RADIUS_METERS`]), keyed by
    /// the SHA-256 of `key_material`: a secret every instance of the app shares, so that all of
    /// them draw the same radii. Its centres are moved by a stand-in offset derived from the
    /// key until [`PrivacyZone::with_offset`] gives it the athlete's: the app cuts sketches only
    /// with the offset the table keeps (see `crate::index::SketchZone`).
    pub fn new(radius_meters: f64, key_material: &[u8]) -> Self {
        let radius_meters = clamp_setting(radius_meters);
        let key: [u8; 32] = Sha256::digest(key_material).into();
        let mut random = [0_u8; 16];
        random.copy_from_slice(&keyed(&key, b"route-privacy-offset\0", &[])[..16]);
        PrivacyZone {
            radius_meters,
            key,
            offset: PrivacyOffset::from_random(radius_meters, random),
        }
    }

    /// This zone with its centres moved by `offset`, the athlete's kept one. An offset made for
    /// another setting has its length brought within a quarter to half of this one (its
    /// direction kept), so the setting's clearance always holds; one without a direction (zero,
    /// not finite) is not used.
    pub fn with_offset(mut self, offset: PrivacyOffset) -> Self {
        if let Some(fitted) = offset.fitted(self.radius_meters) {
            self.offset = fitted;
        }
        self
    }

    /// The configured radius: nothing is drawn within it of a route's start or end. (Each
    /// activity's circles are larger, see [`PrivacyZone::radii`].)
    pub fn radius_meters(&self) -> f64 {
        self.radius_meters
    }

    /// The offset the centres are moved by.
    pub fn offset(&self) -> PrivacyOffset {
        self.offset
    }

    /// The radii of the circles around the start and around the end of activity `activity_id`:
    /// [`RADIUS_FACTOR`] times the setting plus a keyed amount in `[0, JITTER_METERS)` each, the
    /// same on every call.
    pub fn radii(&self, activity_id: i64) -> (f64, f64) {
        let digest = keyed(
            &self.key,
            b"route-privacy-zone\0",
            &activity_id.to_be_bytes(),
        );
        let base = RADIUS_FACTOR * self.radius_meters;
        (
            base + JITTER_METERS * fraction(&digest[..8]),
            base + JITTER_METERS * fraction(&digest[8..16]),
        )
    }
}

/// The setting within [`MIN_RADIUS_METERS`]–[`MAX_RADIUS_METERS`] ([`DEFAULT_RADIUS_METERS`]
/// when it is not a number).
fn clamp_setting(radius_meters: f64) -> f64 {
    if radius_meters.is_finite() {
        radius_meters.clamp(MIN_RADIUS_METERS, MAX_RADIUS_METERS)
    } else {
        DEFAULT_RADIUS_METERS
    }
}

/// HMAC-SHA256 of `label` then `data` under `key`.
fn keyed(key: &[u8; 32], label: &[u8], data: &[u8]) -> [u8; 32] {
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(label);
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        // HMAC takes a key of any length; never reached.
        Err(_) => [0; 32],
    }
}

/// The first 8 bytes as a number in `[0, 1)` (53 bits: exactly representable, strictly below 1).
fn fraction(bytes: &[u8]) -> f64 {
    let mut word = [0_u8; 8];
    word.copy_from_slice(&bytes[..8]);
    (u64::from_be_bytes(word) >> 11) as f64 / (1_u64 << 53) as f64
}

/// A point in metres east (`x`) and north (`y`) of the route's own origin.
type Metres = (f64, f64);

/// The sketch for `summary_polyline` of activity `activity_id`: `M x y L x y … M x y L x y`
/// (one subpath per piece outside the privacy zone) with every number in 0–100, one decimal at
/// most. `None` for an empty or undecodable polyline, or a route with too little left outside
/// the zone.
pub fn route_shape(summary_polyline: &str, activity_id: i64, zone: &PrivacyZone) -> Option<String> {
    sketch(summary_polyline, activity_id, zone).map(|sketch| sketch.path)
}

/// The sketch with the projection that drew it ([`Sketch::to_box`]), so that a test can tell
/// where a place (home) lies in the sketch's own box and scale.
pub fn sketch(summary_polyline: &str, activity_id: i64, zone: &PrivacyZone) -> Option<Sketch> {
    if summary_polyline.is_empty() {
        return None;
    }
    let line = polyline::decode_polyline(summary_polyline, 5).ok()?;
    // (latitude, longitude) in degrees.
    let points: Vec<(f64, f64)> = line
        .0
        .iter()
        .map(|c| (c.y, c.x))
        .filter(|(lat, lon)| {
            lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 360.0
        })
        .collect();
    let first = *points.first()?;
    let mean_lat = points.iter().map(|p| p.0).sum::<f64>() / points.len() as f64;
    let plane = Plane {
        origin: first,
        squeeze: mean_lat.to_radians().cos(),
    };
    let flat: Vec<Metres> = points.iter().map(|p| plane.metres(*p)).collect();
    let (start_radius, end_radius) = zone.radii(activity_id);
    let offset = zone.offset();
    let moved = |(x, y): Metres| (x + offset.east_m, y + offset.north_m);
    let mut circles: Vec<(Metres, f64)> = Vec::new();
    circles.extend(centres(&flat, start_radius).map(|c| (moved(c), start_radius)));
    let reversed: Vec<Metres> = flat.iter().rev().copied().collect();
    circles.extend(centres(&reversed, end_radius).map(|c| (moved(c), end_radius)));
    let pieces = clip(&flat, &circles);
    let kept: f64 = pieces.iter().map(|piece| length(piece)).sum();
    if kept < MIN_KEPT_METERS {
        return None;
    }
    draw(&pieces, plane)
}

/// A drawn sketch and its projection.
#[derive(Clone, Debug)]
pub struct Sketch {
    /// The SVG path data.
    pub path: String,
    plane: Plane,
    frame: Frame,
}

impl Sketch {
    /// Where (`latitude`, `longitude`) lies in the sketch's box (unrounded, and outside 0–100 for
    /// a place outside the drawn part), by the projection that drew the sketch.
    pub fn to_box(&self, latitude: f64, longitude: f64) -> (f64, f64) {
        self.frame.to_box(self.plane.metres((latitude, longitude)))
    }

    /// Box units per metre on the ground.
    pub fn units_per_metre(&self) -> f64 {
        self.frame.scale
    }
}

/// The local flat projection: metres east and north of `origin`, east–west squeezed by the
/// cosine of the route's mean latitude (exact enough over a run's few kilometres).
#[derive(Clone, Copy, Debug)]
struct Plane {
    origin: (f64, f64),
    squeeze: f64,
}

impl Plane {
    fn metres(&self, (lat, lon): (f64, f64)) -> Metres {
        let per_degree = EARTH_RADIUS * std::f64::consts::PI / 180.0;
        // The short way round the antimeridian.
        let dlon = (lon - self.origin.1 + 540.0).rem_euclid(360.0) - 180.0;
        (
            dlon * self.squeeze * per_degree,
            (lat - self.origin.0) * per_degree,
        )
    }
}

/// The box's placement: north-up, the drawn part scaled to fit 0–100 and centred.
#[derive(Clone, Copy, Debug)]
struct Frame {
    min_x: f64,
    max_y: f64,
    scale: f64,
    pad_x: f64,
    pad_y: f64,
}

impl Frame {
    fn to_box(self, (x, y): Metres) -> (f64, f64) {
        // SVG's y grows downwards (south).
        (
            (x - self.min_x) * self.scale + self.pad_x,
            (self.max_y - y) * self.scale + self.pad_y,
        )
    }
}

fn distance(a: Metres, b: Metres) -> f64 {
    (a.0 - b.0).hypot(a.1 - b.1)
}

fn length(piece: &[Metres]) -> f64 {
    piece.windows(2).map(|w| distance(w[0], w[1])).sum()
}

/// The points the zone protects at the route's start (`points` from that end), before the
/// offset moves the circles: the first point; the second, whatever the first step's length (a
/// first fix off the real start by any distance: the second point may be the real start, and
/// lying just inside the first circle would not protect it); and, while the route is still near
/// the start, the far end of each later step longer than half the radius (a GPS jump, or a long
/// straight out of the door), at most [`MAX_JUMPS`] of them.
fn centres(points: &[Metres], radius: f64) -> impl Iterator<Item = Metres> {
    let mut centres: Vec<Metres> = points.iter().take(2).copied().collect();
    for step in points.windows(2).skip(1) {
        let (from, to) = (step[0], step[1]);
        if distance(from, to) > radius / 2.0 && centres.len() <= MAX_JUMPS + 1 {
            centres.push(to);
            continue;
        }
        if centres.iter().any(|c| distance(*c, to) < radius) {
            continue;
        }
        break;
    }
    centres.into_iter()
}

/// The parts of the route outside every circle, as separate pieces: a segment that enters a
/// circle is cut at its edge, and the route resumes as a new piece where it leaves.
fn clip(points: &[Metres], circles: &[(Metres, f64)]) -> Vec<Vec<Metres>> {
    let mut pieces = Vec::new();
    let mut current: Vec<Metres> = Vec::new();
    let mut finish = |current: &mut Vec<Metres>| {
        let piece = std::mem::take(current);
        if piece.len() >= 2 && length(&piece) >= MIN_PIECE_METERS {
            pieces.push(piece);
        }
    };
    for step in points.windows(2) {
        let (a, b) = (step[0], step[1]);
        let at = |t: f64| (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        for (from, to) in outside(a, b, circles) {
            if from > 0.0 || current.is_empty() {
                finish(&mut current);
                current.push(at(from));
            }
            current.push(at(to));
            if to < 1.0 {
                finish(&mut current);
            }
        }
    }
    finish(&mut current);
    pieces
}

/// The parameter intervals `[from, to]` of segment `a`–`b` (0 at `a`, 1 at `b`) outside every
/// circle, in order.
fn outside(a: Metres, b: Metres, circles: &[(Metres, f64)]) -> Vec<(f64, f64)> {
    let d = (b.0 - a.0, b.1 - a.1);
    let dd = d.0 * d.0 + d.1 * d.1;
    let mut inside: Vec<(f64, f64)> = Vec::new();
    for (centre, radius) in circles {
        let f = (a.0 - centre.0, a.1 - centre.1);
        let c = f.0 * f.0 + f.1 * f.1 - radius * radius;
        if dd <= 0.0 {
            if c < 0.0 {
                inside.push((0.0, 1.0));
            }
            continue;
        }
        // |a + t·d − centre|² = r²: dd·t² + 2·bh·t + c = 0.
        let bh = f.0 * d.0 + f.1 * d.1;
        let disc = bh * bh - dd * c;
        if disc <= 0.0 {
            continue;
        }
        let root = disc.sqrt();
        let (t1, t2) = ((-bh - root) / dd, (-bh + root) / dd);
        if t2 > 0.0 && t1 < 1.0 {
            inside.push((t1.max(0.0), t2.min(1.0)));
        }
    }
    inside.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut free = Vec::new();
    let mut from = 0.0_f64;
    for (enter, leave) in inside {
        if enter > from {
            free.push((from, enter));
        }
        from = from.max(leave);
    }
    if from < 1.0 {
        free.push((from, 1.0));
    }
    free
}

/// North-up, scaled to fit a 0–100 box and centred; one subpath per piece, numbers with one
/// decimal, repeated points dropped, pieces that shrink to a point left out.
fn draw(pieces: &[Vec<Metres>], plane: Plane) -> Option<Sketch> {
    let all = pieces.iter().flatten();
    let (min_x, max_x, min_y, max_y) = all.fold(
        (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
        |(a, b, c, d), (x, y)| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)),
    );
    let size = (max_x - min_x).max(max_y - min_y);
    if !(size.is_finite() && size > 0.0) {
        return None;
    }
    let scale = 100.0 / size;
    let frame = Frame {
        min_x,
        max_y,
        scale,
        pad_x: (100.0 - (max_x - min_x) * scale) / 2.0,
        pad_y: (100.0 - (max_y - min_y) * scale) / 2.0,
    };
    let mut path = String::new();
    for piece in pieces {
        let mut rounded: Vec<(f64, f64)> = Vec::with_capacity(piece.len());
        for point in piece {
            let (x, y) = frame.to_box(*point);
            let point = (round(x), round(y));
            if rounded.last() != Some(&point) {
                rounded.push(point);
            }
        }
        if rounded.len() < 2 {
            continue;
        }
        for (i, (x, y)) in rounded.iter().enumerate() {
            let command = match (i, path.is_empty()) {
                (0, true) => "M",
                (0, false) => " M",
                _ => " L",
            };
            path.push_str(command);
            path.push_str(&format!("{x} {y}"));
        }
    }
    (!path.is_empty()).then_some(Sketch { path, plane, frame })
}

/// One decimal, within 0–100, `-0` as `0`.
fn round(value: f64) -> f64 {
    ((value * 10.0).round() / 10.0).clamp(0.0, 100.0) + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyline::encode_coordinates;

    /// Home, somewhere in Berlin.
    const HOME: (f64, f64) = (52.5163, 13.3777);

    fn zone() -> PrivacyZone {
        PrivacyZone::new(DEFAULT_RADIUS_METERS, b"AccountName=test;AccountKey=a2V5")
    }

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

    /// The place `east` and `north` metres from home.
    fn near_home(east: f64, north: f64) -> (f64, f64) {
        let per_degree = EARTH_RADIUS * std::f64::consts::PI / 180.0;
        (
            HOME.0 + north / per_degree,
            HOME.1 + east / (per_degree * HOME.0.to_radians().cos()),
        )
    }

    /// A route through the given corners (metres east and north of home), a point every 50 m.
    fn route(corners: &[(f64, f64)]) -> Vec<(f64, f64)> {
        let mut points = vec![near_home(corners[0].0, corners[0].1)];
        for pair in corners.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            let steps = ((x1 - x0).hypot(y1 - y0) / 50.0).ceil().max(1.0) as usize;
            for i in 1..=steps {
                let t = i as f64 / steps as f64;
                points.push(near_home(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t));
            }
        }
        points
    }

    /// The subpaths of a path, as lists of points.
    fn subpaths(path: &str) -> Vec<Vec<(f64, f64)>> {
        path.split('M')
            .filter(|s| !s.trim().is_empty())
            .map(|sub| {
                sub.split('L')
                    .map(|pair| {
                        let mut numbers = pair.split_whitespace().map(|n| n.parse::<f64>());
                        match (numbers.next(), numbers.next(), numbers.next()) {
                            (Some(Ok(x)), Some(Ok(y)), None) => (x, y),
                            _ => panic!("not a point: {pair:?} in {path}"),
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The distance from `p` to the segment `a`–`b`.
    fn to_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
        let d = (b.0 - a.0, b.1 - a.1);
        let dd = d.0 * d.0 + d.1 * d.1;
        let t = if dd > 0.0 {
            (((p.0 - a.0) * d.0 + (p.1 - a.1) * d.1) / dd).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (p.0 - a.0 - t * d.0).hypot(p.1 - a.1 - t * d.1)
    }

    /// The nearest the drawn sketch comes to `place`, in metres (measured in the box, in the
    /// sketch's own scale).
    fn nearest(sketch: &Sketch, place: (f64, f64)) -> f64 {
        let at = sketch.to_box(place.0, place.1);
        let mut nearest = f64::MAX;
        for sub in subpaths(&sketch.path) {
            nearest = nearest.min(to_segment(at, sub[0], sub[0]));
            for pair in sub.windows(2) {
                nearest = nearest.min(to_segment(at, pair[0], pair[1]));
            }
        }
        nearest / sketch.units_per_metre()
    }

    /// Asserts the route's sketch keeps at least `metres` from home.
    fn keeps_away_from_home(points: &[(f64, f64)], id: i64, metres: f64) -> Sketch {
        let sketch = sketch(&encode(points), id, &zone()).expect("a sketch");
        let gap = nearest(&sketch, HOME);
        assert!(gap >= metres, "{gap:.0} m from home: {}", sketch.path);
        sketch
    }

    #[test]
    fn a_figure_eight_from_home_never_comes_near_home() {
        // Two 1.5 km squares sharing home: home is the start, the end and the junction.
        let corners = [
            (0.0, 0.0),
            (1500.0, 0.0),
            (1500.0, 1500.0),
            (0.0, 1500.0),
            (0.0, 0.0),
            (-1500.0, 0.0),
            (-1500.0, -1500.0),
            (0.0, -1500.0),
            (0.0, 0.0),
        ];
        let points = route(&corners);
        for id in [1, 16128930471, -7, i64::MAX] {
            let sketch = keeps_away_from_home(&points, id, 300.0);
            // The zone is a radius: the junction in the middle is cut as the ends are, so the
            // two loops are drawn apart.
            assert!(nearest(&sketch, HOME) >= DEFAULT_RADIUS_METERS - 1.0);
            assert!(subpaths(&sketch.path).len() >= 2, "{}", sketch.path);
        }
    }

    #[test]
    fn a_lap_of_the_block_at_the_start_does_not_draw_home() {
        // 400 m round the block, back past the door, then 3 km east and 1 km north.
        let points = route(&[
            (0.0, 0.0),
            (400.0, 0.0),
            (400.0, 400.0),
            (0.0, 400.0),
            (0.0, 0.0),
            (0.0, -100.0),
            (3000.0, -100.0),
            (3000.0, 1000.0),
        ]);
        keeps_away_from_home(&points, 42, 300.0);
    }

    #[test]
    fn a_gps_jump_at_the_start_or_the_end_does_not_move_the_zone_off_home() {
        // The watch's first fix is 3 km off; the run starts at home.
        let mut points = vec![near_home(-2000.0, 2500.0)];
        points.extend(route(&[(0.0, 0.0), (3000.0, 0.0), (3000.0, 2000.0)]));
        keeps_away_from_home(&points, 42, 300.0);
        // And ending at home with a last fix far away.
        let mut back = route(&[(3000.0, 2000.0), (3000.0, 0.0), (0.0, 0.0)]);
        back.push(near_home(-2500.0, -1800.0));
        keeps_away_from_home(&back, 43, 300.0);
        // A jump of two fixes near each other.
        let mut two = vec![near_home(-2000.0, 2500.0), near_home(-1990.0, 2480.0)];
        two.extend(route(&[(0.0, 0.0), (3000.0, 0.0), (3000.0, 2000.0)]));
        keeps_away_from_home(&two, 44, 300.0);
    }

    #[test]
    fn the_sketch_is_the_same_every_time_and_differs_between_activities() {
        let points = route(&[
            (0.0, 0.0),
            (4000.0, 0.0),
            (4000.0, 3000.0),
            (6000.0, 3000.0),
        ]);
        let polyline = encode(&points);
        let first = route_shape(&polyline, 16128930471, &zone()).expect("a sketch");
        for _ in 0..3 {
            assert_eq!(
                route_shape(&polyline, 16128930471, &zone()),
                Some(first.clone())
            );
        }
        let distinct: std::collections::BTreeSet<String> = (1..=8)
            .filter_map(|id| route_shape(&polyline, id, &zone()))
            .collect();
        assert!(distinct.len() >= 6, "{distinct:?}");
        // Another key (another app) cuts the same run elsewhere.
        let other = PrivacyZone::new(DEFAULT_RADIUS_METERS, b"another key");
        assert_ne!(route_shape(&polyline, 16128930471, &other), Some(first));
    }

    #[test]
    fn each_radius_is_one_and_a_half_times_the_setting_plus_up_to_300_m() {
        let zone = zone();
        let mut starts = Vec::new();
        for id in 0..200 {
            let (start, end) = zone.radii(id);
            assert_eq!(zone.radii(id), (start, end));
            for radius in [start, end] {
                assert!((750.0..1050.0).contains(&radius), "{radius}");
            }
            starts.push(start);
        }
        // Spread over the whole band, not bunched.
        let low = starts.iter().filter(|r| **r < 900.0).count();
        assert!((60..=140).contains(&low), "{low} of 200 below the middle");
        assert_eq!(
            PrivacyZone::new(50.0, b"k").radius_meters(),
            MIN_RADIUS_METERS
        );
        assert_eq!(PrivacyZone::new(f64::NAN, b"k").radius_meters(), 500.0);
        let shown = format!("{zone:?}");
        assert!(
            shown.contains("500") && !shown.contains("key:") && !shown.contains("offset"),
            "{shown}"
        );
    }

    #[test]
    fn offsets_point_anywhere_a_quarter_to_half_the_setting_away() {
        let mut random = Random(7);
        let mut quadrants = [0; 4];
        for _ in 0..400 {
            let mut bytes = [0_u8; 16];
            bytes[..8].copy_from_slice(&random.next().to_be_bytes());
            bytes[8..].copy_from_slice(&random.next().to_be_bytes());
            let offset = PrivacyOffset::from_random(800.0, bytes);
            assert_eq!(offset, PrivacyOffset::from_random(800.0, bytes));
            assert!(
                (200.0..=400.0).contains(&offset.length_m()),
                "{}",
                offset.length_m()
            );
            let quadrant = usize::from(offset.east_m < 0.0) * 2 + usize::from(offset.north_m < 0.0);
            quadrants[quadrant] += 1;
        }
        assert!(
            quadrants.iter().all(|n| (70..=130).contains(n)),
            "{quadrants:?}"
        );
        // Without a kept one, the key gives one; a kept one wins, fitted to the setting.
        let keyed = zone().offset();
        assert!((125.0..=250.0).contains(&keyed.length_m()));
        assert_eq!(zone().offset(), keyed, "the same key, the same offset");
        let kept = PrivacyOffset {
            east_m: 30.0,
            north_m: -40.0,
        };
        let zone = zone().with_offset(kept);
        assert!((zone.offset().length_m() - 125.0).abs() < 1e-9);
        assert!((zone.offset().east_m / zone.offset().north_m + 0.75).abs() < 1e-9);
        let far = PrivacyOffset {
            east_m: 0.0,
            north_m: 900.0,
        };
        assert!((zone.clone().with_offset(far).offset().north_m - 250.0).abs() < 1e-9);
        let none = PrivacyOffset {
            east_m: 0.0,
            north_m: f64::NAN,
        };
        assert_eq!(zone.clone().with_offset(none).offset(), zone.offset());
        assert_eq!(format!("{kept:?}"), "PrivacyOffset([redacted])");
    }

    #[test]
    fn a_straight_run_north_is_cut_by_radius_and_fills_the_box_height() {
        // About 3.3 km due north from the Brandenburg Gate.
        let points: Vec<(f64, f64)> = (0..=30)
            .map(|i| (HOME.0 + i as f64 * 0.001, HOME.1))
            .collect();
        // The centres 200 m east and 150 m south of the ends.
        let zone = zone().with_offset(PrivacyOffset {
            east_m: 200.0,
            north_m: -150.0,
        });
        let sketch = sketch(&encode(&points), 7, &zone).expect("a sketch");
        let path = &sketch.path;
        assert!(path.starts_with('M') && path.contains(" L"), "{path}");
        let subs = subpaths(path);
        assert_eq!(subs.len(), 1, "{path}");
        let n = &subs[0];
        assert!(n
            .iter()
            .all(|(x, y)| (0.0..=100.0).contains(x) && (0.0..=100.0).contains(y)));
        // North-up: the route starts at the bottom and ends at the top, centred horizontally.
        assert_eq!(n[0], (50.0, 100.0));
        assert_eq!(n[n.len() - 1], (50.0, 0.0));
        // Both ends are cut where the line crosses the circle (750–1050 m) round the moved
        // centre of the point after the first one and of the one before the last (the first
        // step protects its far end): 150 m short of the chord's half from the second point,
        // 150 m beyond it from the last but one.
        let (start, end) = zone.radii(7);
        let half_chord = |radius: f64| (radius * radius - 200.0 * 200.0).sqrt();
        for (place, expected) in [
            (points[1], half_chord(start) - 150.0),
            (points[29], half_chord(end) + 150.0),
        ] {
            let gap = nearest(&sketch, place);
            assert!((gap - expected).abs() < 5.0, "{gap} vs {expected}");
        }
        for place in [points[0], points[30]] {
            assert!(nearest(&sketch, place) >= DEFAULT_RADIUS_METERS);
        }
        for coordinate in ["52.5", "13.37", "5251", "1337"] {
            assert!(!path.contains(coordinate), "{coordinate} in {path}");
        }
    }

    #[test]
    fn short_routes_and_bad_polylines_have_no_sketch() {
        let short: Vec<(f64, f64)> = (0..=9).map(|i| (52.5 + i as f64 * 0.001, 13.4)).collect();
        assert_eq!(
            route_shape(&encode(&short), 1, &zone()),
            None,
            "1 km: nothing left"
        );
        // A loop that never leaves the zone.
        let block = route(&[
            (0.0, 0.0),
            (300.0, 0.0),
            (300.0, 300.0),
            (0.0, 300.0),
            (0.0, 0.0),
        ]);
        assert_eq!(route_shape(&encode(&block), 1, &zone()), None);
        assert_eq!(route_shape("", 1, &zone()), None);
        assert_eq!(route_shape("\u{1}\u{2}", 1, &zone()), None);
        assert_eq!(
            route_shape(&encode(&[(52.5, 13.4), (52.5, 13.4)]), 1, &zone()),
            None
        );
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
        let path = route_shape(polyline, 16128930471, &zone()).expect("a sketch");
        for sub in subpaths(&path) {
            for (x, y) in sub {
                assert!(
                    (0.0..=100.0).contains(&x) && (0.0..=100.0).contains(&y),
                    "{path}"
                );
            }
        }
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

    /// A first GPS fix 380 m north of home, then 2.5 km due south from home: home, the second
    /// point, is the real start.
    const BOGUS_FIRST_FIX: &str =
        "gwp_IsyspAjT?rD?rD?rD?rD?rD?rD?rD?pD?rD?rD?rD?rD?rD?rD?rD?rD?rD?rD?rD?rD?rD?rD?pD?rD?rD?";

    #[test]
    fn a_bogus_first_fix_of_any_length_still_protects_home() {
        // The first fix lies well within the zone's radius of home: a short jump.
        let sketch = sketch(BOGUS_FIRST_FIX, 42, &zone()).expect("a sketch");
        let slack = 0.08 / sketch.units_per_metre() + 3.0;
        let gap = nearest(&sketch, HOME);
        assert!(
            gap + slack >= DEFAULT_RADIUS_METERS,
            "{gap:.0} m from home: {}",
            sketch.path
        );
    }

    /// A small deterministic random source for the simulations (SplitMix64).
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1_u64 << 53) as f64
        }

        /// Uniform in [low, high).
        fn between(&mut self, low: f64, high: f64) -> f64 {
            low + (high - low) * self.unit()
        }

        /// Normally distributed, mean 0, standard deviation `sigma`.
        fn normal(&mut self, sigma: f64) -> f64 {
            let u = self.unit().max(f64::MIN_POSITIVE);
            sigma * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
        }
    }

    /// A round trip from home (metres east and north of it): a wobbly loop of 4.4–12.6 km
    /// leaving in a random direction, a fix every 50 m or so, each off by a few metres of GPS
    /// noise (the first and the last included).
    fn round_trip(random: &mut Random) -> Vec<(f64, f64)> {
        let heading = random.between(0.0, std::f64::consts::TAU);
        let radius = random.between(700.0, 2000.0);
        let (wobble, lobes) = (random.between(0.0, 0.25), random.between(1.0, 4.0).floor());
        let centre = (radius * heading.sin(), radius * heading.cos());
        // Home seen from the centre, then once round (either way).
        let home_angle = (-centre.1).atan2(-centre.0);
        let direction = if random.unit() < 0.5 { 1.0 } else { -1.0 };
        let steps = (std::f64::consts::TAU * radius / 50.0).ceil() as usize;
        (0..=steps)
            .map(|i| {
                let turned = std::f64::consts::TAU * i as f64 / steps as f64;
                let angle = home_angle + direction * turned;
                let r = radius * (1.0 + wobble * (lobes * turned / 2.0).sin().powi(2));
                (
                    centre.0 + r * angle.cos() + random.normal(3.0),
                    centre.1 + r * angle.sin() + random.normal(3.0),
                )
            })
            .collect()
    }

    /// Where a point of the sketch's box lies, in metres east and north of `home` (the inverse
    /// of the projection that drew it): what someone who matched the sketch to a map knows.
    fn on_the_ground(sketch: &Sketch, home: (f64, f64), (bx, by): (f64, f64)) -> (f64, f64) {
        let per_degree = EARTH_RADIUS * std::f64::consts::PI / 180.0;
        let frame = sketch.frame;
        let x = (bx - frame.pad_x) / frame.scale + frame.min_x;
        let y = frame.max_y - (by - frame.pad_y) / frame.scale;
        let latitude = sketch.plane.origin.0 + y / per_degree;
        let longitude = sketch.plane.origin.1 + x / (sketch.plane.squeeze * per_degree);
        (
            (longitude - home.1) * per_degree * home.0.to_radians().cos(),
            (latitude - home.0) * per_degree,
        )
    }

    /// Where a run's sketch leaves the start's zone and where it enters the end's.
    type LooseEnds = ((f64, f64), (f64, f64));

    /// The loose ends of a run's sketch, in metres east and north of `home`.
    fn loose_ends(sketch: &Sketch, home: (f64, f64)) -> LooseEnds {
        let pieces = subpaths(&sketch.path);
        let first = pieces[0][0];
        let last = *pieces[pieces.len() - 1].last().expect("a point");
        (
            on_the_ground(sketch, home, first),
            on_the_ground(sketch, home, last),
        )
    }

    /// The median of `values` (the upper one of an even count).
    fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }

    /// The attacker's guess at home from the loose ends of several runs: if both ends of a run
    /// lie on one circle round home, home is on the perpendicular bisector of the two; the guess
    /// is the point with the least median distance to those lines (tried at every crossing of
    /// two lines, then refined).
    fn guess_home(ends: &[LooseEnds]) -> (f64, f64) {
        // Each line as a unit normal `n` and an offset `c`: n·X = c.
        let lines: Vec<((f64, f64), f64)> = ends
            .iter()
            .filter_map(|(p, q)| {
                let d = (q.0 - p.0, q.1 - p.1);
                let length = d.0.hypot(d.1);
                (length > 1.0).then(|| {
                    let n = (d.0 / length, d.1 / length);
                    (n, n.0 * (p.0 + q.0) / 2.0 + n.1 * (p.1 + q.1) / 2.0)
                })
            })
            .collect();
        let cost = |x: (f64, f64)| {
            median(
                lines
                    .iter()
                    .map(|(n, c)| (n.0 * x.0 + n.1 * x.1 - c).abs())
                    .collect(),
            )
        };
        let mut candidates: Vec<(f64, f64)> = ends
            .iter()
            .map(|(p, q)| ((p.0 + q.0) / 2.0, (p.1 + q.1) / 2.0))
            .collect();
        for (i, (n1, c1)) in lines.iter().enumerate() {
            for (n2, c2) in &lines[i + 1..] {
                let det = n1.0 * n2.1 - n1.1 * n2.0;
                if det.abs() > 1e-6 {
                    candidates.push(((c1 * n2.1 - c2 * n1.1) / det, (n1.0 * c2 - n2.0 * c1) / det));
                }
            }
        }
        let mut best = candidates
            .into_iter()
            .map(|x| (cost(x), x))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, x)| x)
            .unwrap_or_default();
        let mut best_cost = cost(best);
        let mut step = 32.0;
        while step > 0.25 {
            let around = [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)].map(|(dx, dy)| {
                let x = (best.0 + dx * step, best.1 + dy * step);
                (cost(x), x)
            });
            match around.into_iter().min_by(|a, b| a.0.total_cmp(&b.0)) {
                Some((c, x)) if c < best_cost => (best_cost, best) = (c, x),
                _ => step /= 2.0,
            }
        }
        best
    }

    /// The zone of simulated athlete `athlete`, with the setting `setting`: each athlete is an
    /// app of its own, with its own key and its own offset, made once from `random`. `centred`:
    /// circles centred on the points they protect instead (no offset), as they once were.
    fn athletes_zone(
        athlete: u64,
        setting: f64,
        random: &mut Random,
        centred: bool,
    ) -> PrivacyZone {
        let mut bytes = [0_u8; 16];
        bytes[..8].copy_from_slice(&random.next().to_be_bytes());
        bytes[8..].copy_from_slice(&random.next().to_be_bytes());
        let zone = PrivacyZone::new(setting, format!("athlete {athlete}").as_bytes())
            .with_offset(PrivacyOffset::from_random(setting, bytes));
        if centred {
            PrivacyZone {
                offset: PrivacyOffset {
                    east_m: 0.0,
                    north_m: 0.0,
                },
                ..zone
            }
        } else {
            zone
        }
    }

    /// For each of `runs` counts, the median over `athletes` athletes (homes spread over the
    /// world, each with its own zone) of how far the guess from that many round trips lands from
    /// home.
    fn attack(athletes: u64, runs: &[usize], setting: f64, centred: bool) -> Vec<f64> {
        let most = runs.iter().copied().max().unwrap_or(0);
        let mut errors: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
        for athlete in 0..athletes {
            let mut random = Random(0x5EED_0000 + athlete);
            let home = (random.between(-60.0, 60.0), random.between(-179.0, 179.0));
            let zone = athletes_zone(athlete, setting, &mut random, centred);
            let mut ends = Vec::new();
            while ends.len() < most {
                let run = round_trip(&mut random);
                let per_degree = EARTH_RADIUS * std::f64::consts::PI / 180.0;
                let points: Vec<(f64, f64)> = run
                    .iter()
                    .map(|(east, north)| {
                        (
                            home.0 + north / per_degree,
                            home.1 + east / (per_degree * home.0.to_radians().cos()),
                        )
                    })
                    .collect();
                let id = (random.next() >> 12) as i64;
                if let Some(sketch) = sketch(&encode(&points), id, &zone) {
                    ends.push(loose_ends(&sketch, home));
                }
            }
            for (i, count) in runs.iter().enumerate() {
                let guess = guess_home(&ends[..*count]);
                errors[i].push(guess.0.hypot(guess.1));
            }
        }
        errors.into_iter().map(median).collect()
    }

    /// The attack on many sketches of round trips from one home (docs/route-sketch.md has the
    /// figures; `cargo test --lib many_sketches -- --nocapture` prints them): with circles
    /// centred on the ends, the bisectors of the loose ends meet at home; with the offset, at a
    /// point a quarter to half of the setting away, however many runs are seen.
    #[test]
    fn many_sketches_do_not_give_home_away() {
        let runs = [5, 10, 20, 50];
        let centred = attack(24, &runs, DEFAULT_RADIUS_METERS, true);
        let moved = attack(24, &runs, DEFAULT_RADIUS_METERS, false);
        println!("median error of the guessed home over 24 athletes (setting 500 m):");
        println!("runs | centred on the ends | centres moved by the offset");
        for ((count, before), after) in runs.iter().zip(&centred).zip(&moved) {
            println!("{count:>4} | {before:>17.0} m | {after:>25.0} m");
        }
        // The simulated attack works where nothing moves the centres…
        assert!(centred[2] < 50.0, "{centred:?}");
        // …and finds only the moved centre otherwise.
        assert!(moved[2] >= 150.0, "{moved:?}");
        assert!(moved.iter().all(|error| *error >= 125.0), "{moved:?}");
    }
}
