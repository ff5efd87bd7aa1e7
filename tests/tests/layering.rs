//! grid's modules depend on each other one way only: each may use the modules before it
//! in `ORDER`, never one after it, so there is no import cycle between the protocol engine,
//! the connection driver, the handler tables and the typed layer, and each layer can be
//! read and tested alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// grid's top-level modules, lowest layer first.
const ORDER: &[&str] = &[
    "codec",
    "error",
    "arena",
    "typed_decoder",
    "tasks",
    "stats",
    "engine",
    "session",
    "send_stage",
    "stream_ends",
    "handler",
    "core",
    "connection",
    "metrics",
    "typed",
    "manager",
    // Built only by cargo-fuzz: the engine driven for the fuzz targets.
    "fuzz",
    // Documentation only: a service generated against the public API.
    "example",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read grid/src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

/// The top-level modules a file names as `crate::name` in its code (doc comments, which
/// may link anywhere, do not count).
fn uses(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    code.match_indices("crate::")
        .filter_map(|(i, m)| {
            let rest = &code[i + m.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[test]
fn modules_depend_on_lower_layers_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../grid/src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found grid's sources");
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut wrong = Vec::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        if module == "lib" {
            continue; // the crate root re-exports everything
        }
        let Some(own) = rank(&module) else {
            panic!(
                "{}: module {module:?} is not in ORDER; place it",
                file.display()
            );
        };
        let text = std::fs::read_to_string(&file).expect("read");
        for used in uses(&text) {
            if used == module {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                _ => wrong.push(format!("{} ({module}) uses crate::{used}", file.display())),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}
