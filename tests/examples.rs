//! The example configs in `etc/examples/`: every `*.toml` there passes `fulcrum check`, and the
//! examples' README lists every one of them, so a new example is covered as soon as it is added.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The examples directory of this checkout.
fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/examples")
}

/// Every `*.toml` under `dir`, at any depth, sorted.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `path` relative to the examples directory, with `/` between names, as the README writes it.
fn relative(path: &Path) -> String {
    let rel = path.strip_prefix(examples_dir()).unwrap();
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether the value at `keys` (section, name, ..., key) names something `fulcrum check` reads
/// on the node itself: a sync set's directory, a volume's backing store, a secret file.
fn is_node_path(keys: &[String]) -> bool {
    let first = keys.first().map(String::as_str);
    let last = keys.last().map(String::as_str).unwrap_or_default();
    (first == Some("sync") && last == "path")
        || (first == Some("volume") && last == "backing")
        || last.ends_with("_file")
}

/// Collects the absolute paths under node-local keys of `value`, found at `keys`.
fn node_paths(value: &toml::Value, keys: &mut Vec<String>, found: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                keys.push(key.clone());
                node_paths(value, keys, found);
                keys.pop();
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                node_paths(item, keys, found);
            }
        }
        toml::Value::String(text) if text.starts_with('/') && is_node_path(keys) => {
            found.push((keys.last().cloned().unwrap_or_default(), text.clone()));
        }
        _ => {}
    }
}

/// The text of the example at `file`, with each node-local path (see [`is_node_path`]) moved
/// under `root` and made there: a directory for a sync set, the directory of a volume's backing
/// store (which `check` then takes as a file to create at `size`), a placeholder secret file.
/// The examples use the nodes' own paths (`/data/upload`, `/dev/sdb`), which `check` reads, and
/// which this machine does not have. Lines and columns stay as in the file.
fn staged(file: &Path, root: &Path) -> String {
    let mut text = std::fs::read_to_string(file).unwrap();
    let value: toml::Value =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: not valid TOML: {e}", file.display()));
    let mut found = Vec::new();
    node_paths(&value, &mut Vec::new(), &mut found);
    for (key, path) in found {
        let moved = root.join(path.trim_start_matches('/'));
        if key == "path" {
            std::fs::create_dir_all(&moved).unwrap();
        } else if key == "backing" {
            std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        } else {
            std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
            std::fs::write(&moved, "example\n").unwrap();
        }
        let moved = moved.to_str().unwrap();
        for quote in ['"', '\''] {
            text = text.replace(
                &format!("{quote}{path}{quote}"),
                &format!("{quote}{moved}{quote}"),
            );
        }
    }
    text
}

#[test]
fn every_example_passes_fulcrum_check() {
    let files = toml_files(&examples_dir());
    assert!(
        !files.is_empty(),
        "no example under {}",
        examples_dir().display()
    );
    let root = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for file in &files {
        let name = relative(file);
        let dir = root.path().join(name.replace('/', "_"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("fulcrum.toml");
        std::fs::write(&config, staged(file, &dir.join("node"))).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
            .args(["check", "-c"])
            .arg(&config)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains("configuration is valid") {
            failures.push(format!(
                "etc/examples/{name}: fulcrum check failed ({}):\n{}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_readme_lists_every_example() {
    let readme = std::fs::read_to_string(examples_dir().join("README.md")).unwrap();
    let missing: Vec<String> = toml_files(&examples_dir())
        .iter()
        .map(|f| relative(f))
        .filter(|name| !readme.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "etc/examples/README.md does not list {missing:?}"
    );
}

#[test]
fn every_example_starts_with_a_comment_and_its_scripts_exist() {
    for file in toml_files(&examples_dir()) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# "),
            "{}: start with a comment block saying what the file replaces",
            file.display()
        );
        // Notify scripts are named by their installed path; the example ships each one.
        for word in text.split(|c: char| c.is_whitespace() || c == '"') {
            if let Some(script) = word.strip_prefix("/etc/fulcrum/scripts/") {
                let shipped = examples_dir().join("scripts").join(script);
                assert!(
                    shipped.is_file(),
                    "{} names {word}, but etc/examples/scripts/{script} does not exist",
                    file.display()
                );
            }
        }
    }
}
