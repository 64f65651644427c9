//! Architecture invariants that can be checked mechanically: the dependency direction
//! between our crates, no heavy dependency in core, and a `//!` doc on every module.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--all-features"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Package name → names of its normal (non-dev) dependencies, transitively.
fn normal_closure(meta: &serde_json::Value, root: &str) -> BTreeSet<String> {
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let name_of: BTreeMap<&str, &str> = packages
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let deps_of: BTreeMap<&str, Vec<&str>> = nodes
        .iter()
        .map(|n| {
            let id = n["id"].as_str().unwrap();
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| d["pkg"].as_str().unwrap())
                .collect();
            (id, deps)
        })
        .collect();
    let root_id = name_of
        .iter()
        .find(|(_, n)| **n == root)
        .map(|(id, _)| *id)
        .unwrap();
    let mut seen = BTreeSet::new();
    let mut stack = vec![root_id];
    while let Some(id) = stack.pop() {
        for dep in deps_of.get(id).into_iter().flatten() {
            if seen.insert(name_of[dep].to_string()) {
                stack.push(dep);
            }
        }
    }
    seen
}

#[test]
fn core_depends_on_no_http_ml_database_crate_nor_our_crates() {
    let meta = metadata();
    let deps = normal_closure(&meta, "llama-stack-core");
    let forbidden = [
        "reqwest",
        "hyper",
        "axum",
        "tower",
        "candle-core",
        "tokenizers",
        "rusqlite",
        "sled",
        "tokio-postgres",
        "redis",
        "sqlx",
        "llama-stack",
        "llama-stack-storage",
        "llama-stack-providers",
    ];
    for name in forbidden {
        assert!(
            !deps.contains(name),
            "llama-stack-core must not depend on {name}"
        );
    }
}

#[test]
fn storage_and_providers_keep_their_direction() {
    let meta = metadata();
    let storage = normal_closure(&meta, "llama-stack-storage");
    assert!(!storage.contains("llama-stack-providers"));
    assert!(!storage.contains("llama-stack"));
    let providers = normal_closure(&meta, "llama-stack-providers");
    for name in ["llama-stack-storage", "llama-stack", "axum"] {
        assert!(
            !providers.contains(name),
            "llama-stack-providers must not depend on {name}"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_opens_with_a_doc_comment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["crates", "examples", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let is_test_file = f.components().any(|c| c.as_os_str() == "tests");
            !is_test_file && !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "modules without a //! doc: {missing:?}");
}
