//! The house's layering (ARCHITECTURE.md, "Layers"): a module may use only
//! modules below it. Read from the source, so a `use` that reaches up fails
//! here with the file and line that does it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Top-level modules from the bottom up; one line is one layer, and a
/// module may name only modules of lower lines.
const LAYERS: &[&[&str]] = &[
    &["hex"],
    &[
        "allocator",
        "paths",
        "sanitize",
        "splay",
        "statefile",
        "suggest",
        "time",
        "units",
    ],
    &["logging", "term", "messages"],
    &["config"],
    &["cache"],
    &["backfill"],
    &["control"],
    &["sink"],
    &["actions"],
    &["daemon"],
    &["status"],
    &["cli"],
];

/// `crate::event!` is the logging module's macro, exported at the root.
const ROOT_MACROS: &[(&str, &str)] = &[("event", "logging")];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<name>` in `text`, with its line number.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
                .collect();
            if !name.is_empty() {
                found.push((index + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn no_module_imports_upward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let macros: BTreeMap<&str, &str> = ROOT_MACROS.iter().copied().collect();
    let mut upward = Vec::new();
    let mut unplaced = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            unplaced.push(module);
            continue;
        };
        let text = fs::read_to_string(file).expect("read a source file");
        for (line, name) in crate_paths(&text) {
            let target = macros.get(name.as_str()).copied().unwrap_or(name.as_str());
            if target == module {
                continue;
            }
            match layer_of(target) {
                Some(layer) if layer < own => {}
                _ => upward.push(format!(
                    "{}:{line}: {module} uses crate::{name}",
                    relative.display()
                )),
            }
        }
    }
    unplaced.sort();
    unplaced.dedup();
    assert!(
        unplaced.is_empty(),
        "modules with no layer (add them to LAYERS and ARCHITECTURE.md): {unplaced:?}"
    );
    assert!(
        upward.is_empty(),
        "imports that reach up or sideways:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_path() {
    let found =
        crate_paths("use crate::daemon::run;\n    let x = crate::cli::output::warning(\"a\");");
    assert_eq!(found, [(1, "daemon".to_string()), (2, "cli".to_string())]);
    assert!(layer_of("daemon") > layer_of("control"));
}
