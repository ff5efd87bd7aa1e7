//! grid's modules depend on each other one way only: each may use the modules before it
//! in `ORDER`, never one after it, so there is no import cycle between the protocol engine,
//! the connection driver, the handler tables and the typed layer, and each layer can be
//! read and tested alone. Inside a folder, the files do not import each other in a cycle
//! either. And the codec and the engine are sans-I/O in fact, not only in their docs: no
//! runtime, no clock, no randomness (their callers pass the time and the random bytes in),
//! so their tests step them deterministically.

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
    "describe",
    "engine",
    "session",
    "send_stage",
    "stream_ends",
    "handler",
    "core",
    "connection",
    "metrics",
    "status",
    "typed",
    "builtin",
    "many",
    "manager",
    // Built only by cargo-fuzz: the engine driven for the fuzz targets.
    "fuzz",
    // Documentation only: a service generated against the public API.
    "example",
];

/// grid's sources.
fn grid_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../grid/src")
}

/// A scratch tree of files (path, text) for the checks' own tests, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, files: &[(&str, &str)]) -> Self {
        // Under a folder named `tests`, as grid's sources are seen from this crate: the
        // checks must skip only what is a test inside the sources.
        let dir = std::env::temp_dir()
            .join("tests")
            .join(format!("grid-{name}-{}", std::process::id()));
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("dirs");
            std::fs::write(path, text).expect("write");
        }
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fails with `what` and the places found, if any.
fn assert_none(found: &[String], what: &str) {
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
}

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

/// A file's code: its comment lines (doc comments may link anywhere) blanked.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file names as `crate::name` in its code.
fn uses(text: &str) -> BTreeSet<String> {
    let code = code_of(text);
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
    let src = grid_src();
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
    assert_none(&wrong, "imports against the layering");
}

/// A file's code without its unit tests (`#[cfg(test)] mod tests`, to the end of the
/// file, where grid keeps them): tests may start a virtual clock at `Instant::now()`.
fn production_code(text: &str) -> String {
    let code = code_of(text);
    match code.find("#[cfg(test)]\nmod tests") {
        Some(at) => code[..at].to_owned(),
        None => code,
    }
}

/// What the sans-I/O layers must not touch: the runtime, the clock, randomness.
const IMPURE: &[&str] = &[
    "tokio",
    "Instant::now",
    "SystemTime",
    "rand::",
    "getrandom",
    "Uuid::new_v4",
    "std::thread",
    "std::net",
    "std::fs",
];

/// The places in `codec/` and `engine/` (tests aside) that name one of [`IMPURE`].
fn impure_uses(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for layer in ["codec", "engine"] {
        let mut files = Vec::new();
        sources(&src.join(layer), &mut files);
        for file in files {
            let inside = file.strip_prefix(src).unwrap_or(&file);
            if inside
                .components()
                .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "tests.rs")
            {
                continue; // the engine's stepped tests, and a module's tests in a file
            }
            let code = production_code(&std::fs::read_to_string(&file).expect("read"));
            for (n, line) in code.lines().enumerate() {
                for word in IMPURE.iter().filter(|w| line.contains(**w)) {
                    found.push(format!("{}:{}: {word}", file.display(), n + 1));
                }
            }
        }
    }
    found
}

#[test]
fn the_codec_and_the_engine_use_no_runtime_clock_or_randomness() {
    assert_none(
        &impure_uses(&grid_src()),
        "the codec and the engine are sans-I/O: the time and random bytes are passed in",
    );
}

#[test]
fn the_purity_check_sees_a_clock_read_in_the_engine_but_not_in_its_tests() {
    let scratch = Scratch::new(
        "purity",
        &[
            (
                "engine/timers.rs",
                "// Instant::now in a comment is fine\nfn f() { let _ = std::time::Instant::now(); }\n\
                 #[cfg(test)]\nmod tests { fn t() { let _ = std::time::Instant::now(); } }\n",
            ),
            ("engine/tests/mod.rs", "use tokio;\n"),
            (
                "engine/tuning/tests.rs",
                "fn t() { let _ = std::time::Instant::now(); }\n",
            ),
            ("codec/wire.rs", "use tokio::io::AsyncRead;\n"),
        ],
    );
    let mut found = impure_uses(&scratch.0);
    found.sort();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].ends_with("codec/wire.rs:1: tokio"), "{found:?}");
    assert!(
        found[1].ends_with("engine/timers.rs:2: Instant::now"),
        "{found:?}"
    );
}

/// The sibling files a file in a folder imports (`super::name`, `super::{name::..}`,
/// `crate::folder::name`), by name. `mod.rs` is the folder itself, not a sibling.
fn sibling_imports(code: &str, folder: &str, siblings: &BTreeSet<String>) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut heads = Vec::new();
    let qualified = format!("crate::{folder}::");
    for prefix in ["super::", qualified.as_str()] {
        for (i, m) in code.match_indices(prefix) {
            let rest = &code[i + m.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // The first segment of every path in the group, at its top level.
                let mut depth = 0;
                let mut start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if c.is_whitespace() => {}
                        _ if start && depth == 0 => {
                            heads.push(ident(&group[j..]));
                            start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                heads.push(ident(rest));
            }
        }
    }
    heads.into_iter().filter(|h| siblings.contains(h)).collect()
}

/// The import cycles among the files of each folder of `src`, as `a -> b -> a`.
fn folder_cycles(src: &Path) -> Vec<String> {
    let mut cycles = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let mut files = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".rs"))
            {
                if stem != "mod" && stem != "lib" {
                    files.insert(stem.to_owned());
                }
            }
        }
        let folder = dir
            .strip_prefix(src)
            .map(|p| p.to_string_lossy().replace('/', "::"))
            .unwrap_or_default();
        let graph: Vec<(String, BTreeSet<String>)> = files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(dir.join(format!("{f}.rs"))).expect("read");
                let mut to = sibling_imports(&code_of(&text), &folder, &files);
                to.remove(f);
                (f.clone(), to)
            })
            .collect();
        let edges = |f: &str| {
            graph
                .iter()
                .find(|(g, _)| g == f)
                .map(|(_, to)| to.clone())
                .unwrap_or_default()
        };
        // Every cycle through its smallest file, found once.
        for (start, _) in &graph {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            while let Some((at, path)) = stack.pop() {
                for next in edges(&at) {
                    if next == *start {
                        let mut shown = path.clone();
                        shown.push(next.clone());
                        cycles.push(format!("{}: {}", dir.display(), shown.join(" -> ")));
                    } else if next > *start && !path.contains(&next) {
                        let mut longer = path.clone();
                        longer.push(next.clone());
                        stack.push((next, longer));
                    }
                }
            }
        }
    }
    cycles
}

#[test]
fn the_files_of_a_folder_import_each_other_without_cycles() {
    assert_none(
        &folder_cycles(&grid_src()),
        "import cycles between the files of a folder",
    );
}

#[test]
fn the_cycle_check_sees_grouped_and_qualified_imports() {
    let scratch = Scratch::new(
        "cycles",
        &[
            ("connection/mod.rs", "mod dial; mod runner; mod serve;\n"),
            (
                "connection/dial.rs",
                "use super::{lost::Lost, runner::{run, Runner}};\n",
            ),
            (
                "connection/runner.rs",
                "fn f() { crate::connection::dial::go(); }\n",
            ),
            (
                "connection/serve.rs",
                "use super::dial; // serve -> dial, no cycle\n",
            ),
            ("connection/lost.rs", "pub struct Lost;\n"),
        ],
    );
    let cycles = folder_cycles(&scratch.0);
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].ends_with("dial -> runner -> dial"), "{cycles:?}");
}
