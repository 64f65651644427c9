//! Compatibility with existing clients: the official `openai` Python SDK and
//! `llama-stack-client` drive a server started in-process on 127.0.0.1:0.
//!
//! The Python environment (tests/python/requirements.txt) is installed by `.ci/run` into
//! `$LLAMA_STACK_TEST_VENV` (default `~/.cache/llama-stack-rs/venv`). Without it the tests
//! print that they skipped; under `CI=true` they fail instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serving;

use std::path::PathBuf;

use llama_stack::server::ServerOptions;
use serving::{scripted_stack, start};

fn venv_python() -> Option<PathBuf> {
    let venv = std::env::var_os("LLAMA_STACK_TEST_VENV")
        .map(PathBuf::from)
        .or_else(|| dirs_home().map(|h| h.join(".cache/llama-stack-rs/venv")))?;
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

fn dirs_home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

async fn run_script(script: &str) {
    let Some(python) = venv_python() else {
        if in_ci() {
            panic!("the Python test venv is missing under CI=true (.ci/run installs it)");
        }
        eprintln!(
            "SKIPPED {script}: no Python test venv (run .ci/run or set LLAMA_STACK_TEST_VENV)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stack = scripted_stack(dir.path(), "").await;
    let srv = start(&stack, ServerOptions::default()).await;
    let script_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = tokio::process::Command::new(&python)
        .arg(&script_path)
        .arg(&srv.base)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");
    println!("{stdout}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_works_unchanged() {
    run_script("openai_compat.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_stack_client_works_unchanged() {
    run_script("llama_stack_client_compat.py").await;
}
