//! The crate's layer map is true: `src/lib.rs` lists the modules top to bottom, and no module
//! uses (through a `crate::` path) a module listed above it. Also: no two top-level entries of
//! the repository differ only by case, so a clone on a case-insensitive file system keeps them
//! all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The layers as `src/lib.rs`'s "Layers" list gives them: module name → floor (0 = top).
fn layer_map() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("src/lib.rs");
    let mut floors = BTreeMap::new();
    let mut in_list = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            break;
        };
        let doc = doc.trim();
        if doc == "# Layers" {
            in_list = true;
            continue;
        }
        if !in_list {
            continue;
        }
        if let Some(item) = doc.strip_prefix("- [`") {
            let name = item.split('`').next().expect("a module name").to_owned();
            let floor = floors.len();
            assert!(
                floors.insert(name.clone(), floor).is_none(),
                "{name} is listed twice in src/lib.rs"
            );
        } else if doc.starts_with('#') {
            break;
        }
    }
    assert!(
        floors.len() > 10,
        "the layer list in src/lib.rs was not found: {floors:?}"
    );
    floors
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for the crate root and the binary).
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root().join("src")).expect("under src");
    let first = relative
        .components()
        .next()?
        .as_os_str()
        .to_str()?
        .to_owned();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        _ => Some(first.trim_end_matches(".rs").to_owned()),
    }
}

/// The top-level modules `text` names through `crate::` paths, with the line of each: plain
/// paths (`crate::store::Store`) and grouped imports (`use crate::{clock, store::Store}`).
/// Comments are skipped; a `#[cfg(test)]` module counts like any other code.
fn crate_uses(text: &str) -> Vec<(String, usize)> {
    let mut uses = Vec::new();
    let mut group: Option<usize> = None;
    for (index, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let number = index + 1;
        if let Some(start) = group {
            // Inside `use crate::{ … }` spanning lines: each line's leading names.
            for item in code.split(',') {
                let name: String = item
                    .trim()
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "self" {
                    uses.push((name, start));
                }
            }
            if code.contains("};") {
                group = None;
            }
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(inner) = rest.strip_prefix('{') {
                let end = inner.find('}');
                for item in inner[..end.unwrap_or(inner.len())].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != "self" {
                        uses.push((name, number));
                    }
                }
                if end.is_none() {
                    group = Some(number);
                }
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                uses.push((name, number));
            }
        }
    }
    uses
}

#[test]
fn no_module_uses_a_module_above_it_in_the_layer_map() {
    let floors = layer_map();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut unlisted = BTreeSet::new();
    let mut upward = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        // The fuzz targets' entry points sit outside the layers: they drive them from the top.
        if module == "fuzzing" {
            continue;
        }
        let Some(&floor) = floors.get(&module) else {
            unlisted.insert(module);
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a source file");
        for (used, line) in crate_uses(&text) {
            checked += 1;
            match floors.get(&used) {
                Some(&used_floor) if used_floor < floor => upward.push(format!(
                    "{}:{line}: {module} uses {used}, which is above it",
                    file.strip_prefix(root()).unwrap_or(file).display()
                )),
                Some(_) => {}
                // `crate::Mode` and the like: items of the crate root, above every layer.
                None if used.starts_with(char::is_uppercase) => upward.push(format!(
                    "{}:{line}: {module} uses the crate root's {used}",
                    file.strip_prefix(root()).unwrap_or(file).display()
                )),
                None if used == "fuzzing" => upward.push(format!(
                    "{}:{line}: {module} uses the fuzzing entry points",
                    file.strip_prefix(root()).unwrap_or(file).display()
                )),
                None => {
                    unlisted.insert(used);
                }
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "modules missing from the layer list in src/lib.rs: {unlisted:?}"
    );
    assert!(
        checked > 100,
        "only {checked} crate:: uses found: the scan is broken"
    );
    assert!(upward.is_empty(), "upward uses:\n{}", upward.join("\n"));
}

#[test]
fn the_scan_sees_plain_grouped_and_multi_line_uses() {
    let text = "use crate::store::Store;\n\
                use crate::{clock::Clock, config};\n\
                use crate::{\n    tokens::TokenKeeper,\n    view,\n};\n\
                // use crate::server;\n\
                let x = crate::http::ApiError::NotFound;\n";
    let names: Vec<String> = crate_uses(text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["store", "clock", "config", "tokens", "view", "http"],
        "{text}"
    );
}

#[test]
fn no_two_top_level_entries_differ_only_by_case() {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(root()).expect("the repository") {
        let name = entry
            .expect("an entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(other) = seen.insert(name.to_lowercase(), name.clone()) {
            panic!("{name} and {other} are one folder on a case-insensitive file system");
        }
    }
    assert!(seen.contains_key("cargo.toml"));
}
