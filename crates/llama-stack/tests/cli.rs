//! The `llama-stack` binary: `run` serves with as many runtime worker threads as
//! `--workers`, else the config's `server.workers`, else one per CPU core.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Drops ANSI escape sequences (`ESC [ … letter`) from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts `llama-stack run` on a config without providers, reads the `workers=` field of
/// its "listening on" log line, and stops it.
fn serving_workers(config_workers: Option<u32>, args: &[&str], env: &[(&str, &str)]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let mut yaml = String::from("version: 2\ndistro_name: workers-test\nproviders: {}\n");
    if let Some(n) = config_workers {
        yaml.push_str(&format!("server:\n  workers: {n}\n"));
    }
    std::fs::write(&config, yaml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llama-stack"));
    cmd.args([
        "run",
        config.to_str().unwrap(),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ])
    .args(args)
    .env("SQLITE_STORE_DIR", dir.path())
    .env("LLAMA_STACK_LOG", "info")
    .env_remove("LLAMA_STACK_WORKERS")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // The log goes to stdout; a reader thread hands its lines over, so a server that never
    // logs the line fails the test instead of hanging it.
    let log = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in log.lines().map_while(Result::ok) {
            if tx.send(strip_ansi(&line)).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut workers = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if line.contains("listening on") {
            workers = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("workers="))
                .and_then(|n| n.parse().ok());
            break;
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    workers.unwrap_or_else(|| {
        panic!(
            "no `listening on … workers=N` line in:\n{}",
            seen.join("\n")
        )
    })
}

#[test]
fn run_serves_with_the_configured_worker_threads() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        serving_workers(None, &[], &[]),
        cores,
        "absent: one per core"
    );
    assert_eq!(serving_workers(Some(3), &[], &[]), 3, "server.workers");
    assert_eq!(
        serving_workers(Some(3), &["--workers", "1"], &[]),
        1,
        "--workers wins"
    );
    assert_eq!(
        serving_workers(None, &[], &[("LLAMA_STACK_WORKERS", "5")]),
        5,
        "environment"
    );
}

#[test]
fn run_rejects_zero_workers() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "version: 2\ndistro_name: t\nproviders: {}\nserver:\n  workers: 0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_llama-stack"))
        .args(["run", config.to_str().unwrap(), "--port", "0"])
        .env("SQLITE_STORE_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.workers"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_llama-stack"))
        .args(["run", config.to_str().unwrap(), "--workers", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
