//! The widget's front end, embedded in the binary at build time (`web/` at the crate root):
//! the `<latest-run>` and `<running-year>` modules and their demo page, served by the `Widget`
//! function.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its name in the route `widget/{file}`.
    pub file: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// Every file the `Widget` function serves.
pub const ASSETS: [Asset; 3] = [
    Asset {
        file: "latest-run.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/latest-run.js"),
    },
    Asset {
        file: "running-year.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/running-year.js"),
    },
    Asset {
        file: "demo.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/demo.html"),
    },
];

/// The file of that name (ASCII case ignored, as the rest of the route's), if any.
pub fn find(file: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.file.eq_ignore_ascii_case(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_embedded_files_and_nothing_else() {
        let script = find("latest-run.js").expect("script");
        assert!(std::str::from_utf8(script.body).is_ok_and(|s| s.contains("customElements.define")));
        let year = find("running-year.js").expect("year script");
        assert!(std::str::from_utf8(year.body)
            .is_ok_and(|s| s.contains(r#"customElements.define("running-year""#)));
        assert_eq!(year.content_type, script.content_type);
        assert_eq!(find("Demo.HTML").map(|a| a.file), Some("demo.html"));
        for missing in [
            "",
            "..",
            "../Cargo.toml",
            "latest-run",
            "running-year",
            "index.html",
        ] {
            assert!(find(missing).is_none(), "{missing}");
        }
    }
}
