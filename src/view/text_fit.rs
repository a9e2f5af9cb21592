//! Text fitted to a width for the SVG card, which cannot measure text (SVG text does not wrap,
//! and the image is drawn wherever it is shown, with the viewer's fonts). A width is estimated
//! per glyph for the card's font stack (`system-ui, -apple-system, "Segoe UI", Roboto,
//! Helvetica, Arial, sans-serif`), bold, on the wide side of those fonts: the widest of DejaVu
//! Sans Bold (Linux's usual `system-ui`, wider than Segoe UI, San Francisco or Roboto) and
//! Liberation Sans Bold (Arial's metrics) for ASCII; a full em for CJK, more for emoji; generous
//! classes for other scripts. Text that does not fit is first set smaller, then cut with "…"
//! at a character boundary that never splits an emoji sequence or a letter from its marks.

/// Advance widths of ASCII ' '..='~' in hundredths of an em (bold; the wider of DejaVu Sans and
/// Liberation Sans).
const ASCII: [u8; 95] = [
    35, 46, 52, 84, 70, 100, 87, 31, 46, 46, 52, 84, 38, 42, 38, 37, //
    70, 70, 70, 70, 70, 70, 70, 70, 70, 70, 40, 40, 84, 84, 84, 61, //
    100, 77, 76, 73, 83, 68, 68, 82, 84, 37, 56, 77, 64, 100, 84, 85, //
    73, 85, 77, 72, 68, 81, 77, 110, 77, 72, 73, 46, 37, 46, 84, 56, //
    50, 67, 72, 59, 72, 68, 44, 72, 71, 34, 34, 67, 34, 104, 71, 69, //
    72, 72, 49, 60, 48, 71, 65, 92, 65, 65, 58, 71, 37, 71, 84,
];

/// The ellipsis that marks cut text.
const ELLIPSIS: char = '…';
/// Right-to-left mark: after an ellipsis that ends right-to-left text, it keeps the ellipsis on
/// the text's reading end (its left) instead of the card's.
const RLM: char = '\u{200F}';
/// Zero-width joiner.
const ZWJ: char = '\u{200D}';

/// Text set to fit: what to draw, at which font size.
#[derive(Clone, Debug, PartialEq)]
pub struct Fitted {
    /// The text, whole or cut with "…".
    pub text: String,
    /// The font size in px.
    pub size: f64,
}

/// How text is set: its largest and smallest font size and its letter spacing (px).
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// The size it is drawn at when it fits.
    pub size: f64,
    /// The smallest it may shrink to before it is cut.
    pub min_size: f64,
    /// `letter-spacing`, px.
    pub spacing: f64,
}

/// `text` set in at most `max_width` px: at `style.size` when it fits, else at the largest
/// half-pixel size down to `style.min_size` that fits, else at `min_size` cut with "…".
pub fn fit(text: &str, max_width: f64, style: Style) -> Fitted {
    let (ems, glyphs) = measure(text);
    let width_at = |size: f64| ems * size + style.spacing * glyphs as f64;
    if width_at(style.size) <= max_width {
        return Fitted {
            text: text.to_owned(),
            size: style.size,
        };
    }
    if ems > 0.0 {
        let size = ((max_width - style.spacing * glyphs as f64) / ems * 2.0).floor() / 2.0;
        if size >= style.min_size {
            return Fitted {
                text: text.to_owned(),
                size: size.min(style.size),
            };
        }
    }
    let size = style.min_size;
    let (ellipsis_ems, _) = measure(&ELLIPSIS.to_string());
    let budget = max_width - (ellipsis_ems * size + style.spacing);
    let mut cut = String::new();
    let (mut used_ems, mut used_glyphs) = (0.0, 0_usize);
    for cluster in clusters(text) {
        let (e, g) = measure(cluster);
        if (used_ems + e) * size + style.spacing * (used_glyphs + g) as f64 > budget {
            break;
        }
        used_ems += e;
        used_glyphs += g;
        cut.push_str(cluster);
    }
    let kept = cut.trim_end().len();
    cut.truncate(kept);
    let rtl = first_strong_is_rtl(text);
    cut.push(ELLIPSIS);
    if rtl {
        cut.push(RLM);
    }
    Fitted { text: cut, size }
}

/// `text` in at most `max_chars` characters: whole when it has no more, else cut with "…" (the
/// "…", and the right-to-left mark [`fit`] puts after it for Hebrew and Arabic, counted) at a
/// character boundary that never splits an emoji sequence or a letter from its marks.
pub fn cut_to_chars(text: &str, max_chars: usize) -> String {
    if text.chars().nth(max_chars).is_none() {
        return text.to_owned();
    }
    let rtl = first_strong_is_rtl(text);
    let budget = max_chars.saturating_sub(1 + usize::from(rtl));
    let mut cut = String::new();
    let mut used = 0;
    for cluster in clusters(text) {
        let count = cluster.chars().count();
        if used + count > budget {
            break;
        }
        used += count;
        cut.push_str(cluster);
    }
    let kept = cut.trim_end().len();
    cut.truncate(kept);
    cut.push(ELLIPSIS);
    if rtl {
        cut.push(RLM);
    }
    cut
}

/// The estimated width of `text` in ems at font size 1, and how many glyphs letter spacing
/// applies to.
pub fn measure(text: &str) -> (f64, usize) {
    let mut ems = 0.0;
    let mut glyphs = 0;
    let mut after_zwj = false;
    for c in text.chars() {
        let width = if after_zwj && em(c) > 0.0 {
            // Joined into the emoji before it where the font knows the sequence, drawn beside
            // it where it does not.
            1.0
        } else {
            em(c)
        };
        after_zwj = c == ZWJ;
        if width > 0.0 {
            glyphs += 1;
        }
        ems += width;
    }
    (ems, glyphs)
}

/// The estimated advance of `c` in ems.
fn em(c: char) -> f64 {
    let code = c as u32;
    if (0x20..0x7F).contains(&code) {
        return f64::from(ASCII[(code - 0x20) as usize]) / 100.0;
    }
    if is_zero_width(code) {
        return 0.0;
    }
    match code {
        // Emoji skin tones: drawn on their own by fonts without the sequence.
        0x1F3FB..=0x1F3FF => 0.6,
        // Regional indicators: two make a flag, or two boxed letters.
        0x1F1E6..=0x1F1FF => 0.8,
        // Emoji and pictographs, dingbats, miscellaneous symbols and arrows.
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x2300..=0x23FF => 1.3,
        // Wide East Asian text: Hangul, CJK, kana, full-width forms.
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x20000..=0x3FFFD => 1.0,
        // Hebrew.
        0x0590..=0x05FF | 0xFB1D..=0xFB4F => 0.8,
        // Arabic (joined letters are narrower than their isolated forms).
        0x0600..=0x06FF | 0x0750..=0x077F | 0x08A0..=0x08FF | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF => {
            0.85
        }
        // Greek and Cyrillic.
        0x0370..=0x052F => {
            if c.is_uppercase() {
                1.25
            } else {
                1.0
            }
        }
        // Latin with accents, and the Latin-1 signs.
        0x00A0..=0x024F | 0x1E00..=0x1EFF => {
            if c.is_uppercase() {
                1.0
            } else {
                0.8
            }
        }
        // Dashes, quotes, the ellipsis and other punctuation.
        0x2010..=0x2027 | 0x2030..=0x205E => 1.0,
        // Anything else (Thai, Devanagari, …): a full em and more.
        _ => 1.1,
    }
}

/// Marks and format characters that take no advance of their own.
fn is_zero_width(code: u32) -> bool {
    matches!(
        code,
        0x0000..=0x001F
            | 0x007F..=0x009F
            | 0x00AD
            | 0x0300..=0x036F
            | 0x0483..=0x0489
            | 0x0591..=0x05BD
            | 0x05BF
            | 0x05C1..=0x05C2
            | 0x05C4..=0x05C5
            | 0x05C7
            | 0x0610..=0x061A
            | 0x064B..=0x065F
            | 0x0670
            | 0x06D6..=0x06DC
            | 0x06DF..=0x06E4
            | 0x06E7..=0x06E8
            | 0x06EA..=0x06ED
            | 0x1AB0..=0x1AFF
            | 0x1DC0..=0x1DFF
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x20D0..=0x20FF
            | 0xFE00..=0xFE0F
            | 0xFE20..=0xFE2F
            | 0xFEFF
            | 0xE0000..=0xE007F
            | 0xE0100..=0xE01EF
    )
}

/// What continues the character before it: marks, joiners, selectors, skin tones, tags.
fn extends(c: char) -> bool {
    let code = c as u32;
    (is_zero_width(code) && !matches!(code, 0x200B | 0x200E | 0x200F | 0x202A..=0x202E))
        || (0x1F3FB..=0x1F3FF).contains(&code)
}

/// `text` in pieces that are never cut apart: a character with its marks, an emoji with its
/// selectors, skin tone and the characters joined to it, a flag's two letters.
fn clusters(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut previous: Option<char> = None;
    let mut regional_run = 0;
    for (i, c) in text.char_indices() {
        let regional = (0x1F1E6..=0x1F1FF).contains(&(c as u32));
        let joined = previous == Some(ZWJ) || extends(c) || (regional && regional_run % 2 == 1);
        if i > 0 && !joined {
            pieces.push(&text[start..i]);
            start = i;
        }
        regional_run = if regional { regional_run + 1 } else { 0 };
        previous = Some(c);
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Whether the first letter with a direction is Hebrew or Arabic.
fn first_strong_is_rtl(text: &str) -> bool {
    text.chars()
        .find(|c| c.is_alphabetic())
        .is_some_and(|c| matches!(c as u32, 0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: Style = Style {
        size: 22.0,
        min_size: 17.0,
        spacing: 0.0,
    };

    #[test]
    fn wide_letters_are_wider_than_narrow_ones() {
        assert!(measure("WWWW").0 > 2.0 * measure("iiii").0);
        assert!(measure("東京").0 >= 2.0);
        assert!(measure("🏃").0 > measure("A").0);
        assert_eq!(measure("e\u{301}").1, 1, "a combining accent adds no glyph");
        assert_eq!(measure("👍🏽").0, 1.3 + 0.6);
    }

    #[test]
    fn text_that_fits_is_kept_then_shrunk_then_cut() {
        let short = fit("Tiergarten tempo + coffee", 352.0, NAME);
        assert_eq!(
            short,
            Fitted {
                text: "Tiergarten tempo + coffee".into(),
                size: 22.0
            }
        );
        let longer = fit("Tiergarten tempo + coffee + more", 352.0, NAME);
        assert_eq!(longer.text, "Tiergarten tempo + coffee + more");
        assert!((17.0..22.0).contains(&longer.size), "{longer:?}");
        let capitals = fit(&"W".repeat(32), 352.0, NAME);
        assert!(capitals.text.ends_with('…'), "{capitals:?}");
        assert_eq!(capitals.size, 17.0);
        let (ems, _) = measure(&capitals.text);
        assert!(ems * 17.0 <= 352.0);
    }

    #[test]
    fn cuts_never_split_an_emoji_sequence_or_a_letter_from_its_mark() {
        let family = "👨\u{200D}👩\u{200D}👧";
        let runs = format!("{family}🏃\u{200D}♀\u{FE0F}👍🏽🇩🇪é").repeat(10);
        let boundaries: Vec<usize> = std::iter::once(&"")
            .chain(clusters(&runs).iter())
            .scan(0, |at, piece| {
                *at += piece.len();
                Some(*at)
            })
            .collect();
        for width in [60.0, 100.0, 140.0, 200.0, 260.0] {
            let fitted = fit(&runs, width, NAME);
            let kept = fitted.text.trim_end_matches('…');
            assert!(
                runs.starts_with(kept) && boundaries.contains(&kept.len()),
                "{kept:?}"
            );
        }
        assert_eq!(clusters("🇩🇪🇫🇷"), vec!["🇩🇪", "🇫🇷"]);
        assert_eq!(clusters(family), vec![family]);
        assert_eq!(clusters("e\u{301}a"), vec!["e\u{301}", "a"]);
    }

    #[test]
    fn a_cut_to_a_count_of_characters_keeps_clusters_whole() {
        assert_eq!(cut_to_chars("Easy run", 8), "Easy run");
        assert_eq!(cut_to_chars("Easy run", 7), "Easy r…");
        assert_eq!(
            cut_to_chars("Easy run", 6),
            "Easy…",
            "no space before the …"
        );
        let family = "👨\u{200D}👩\u{200D}👧";
        let cut = cut_to_chars(&format!("ab{family}cd"), 6);
        assert_eq!(
            cut, "ab…",
            "the family is five characters: kept whole or not at all"
        );
        let hebrew = cut_to_chars(&"ריצת בוקר ".repeat(20), 20);
        assert!(
            hebrew.ends_with("…\u{200F}") && hebrew.chars().count() <= 20,
            "{hebrew}"
        );
    }

    #[test]
    fn cut_right_to_left_text_keeps_the_ellipsis_on_its_reading_end() {
        let hebrew = fit(&"ריצת בוקר ארוכה ".repeat(5), 200.0, NAME);
        assert!(hebrew.text.ends_with("…\u{200F}"), "{hebrew:?}");
        let latin = fit(&"Morning run ".repeat(8), 200.0, NAME);
        assert!(latin.text.ends_with("run…") || latin.text.ends_with('…'));
        assert!(!latin.text.contains('\u{200F}'));
    }
}
