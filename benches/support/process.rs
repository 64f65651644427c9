//! What the local-inference benches share: the starter stack on the test models, and the
//! process's resident memory and CPU time from `/proc/self`.

use std::path::PathBuf;

use llama_stack::prelude::*;

/// The starter distribution, offline, on the models in `HF_HUB_CACHE` (default
/// `../shared/models/hub`), with its data under a temporary directory named after `name`
/// (returned for removal when the bench is done).
pub async fn starter_stack(name: &str) -> Result<(Stack, PathBuf)> {
    if std::env::var_os("HF_HUB_CACHE").is_none() {
        std::env::set_var(
            "HF_HUB_CACHE",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/models/hub"),
        );
    }
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let stack = Stack::builder()
        .distribution("starter")
        .data_dir(&dir)
        .build()
        .await?;
    Ok((stack, dir))
}

/// A `/proc/self/status` memory field (`VmRSS:`, `VmHWM:`, …) in MB (0 if unreadable).
pub fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// User + system CPU seconds of the whole process so far (all threads).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime (fields 14 and 15 of proc(5)), counted after the command name, in
    // clock ticks of 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}
