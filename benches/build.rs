//! `Stack` build time for the starter distribution (no model loading), on a warm data
//! directory, and for a config with one provider and registered models.
//!
//! Run: `cargo bench --bench build`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use llama_stack::prelude::*;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("stack_build");
    group.bench_function("starter", |b| {
        b.iter(|| {
            rt.block_on(
                Stack::builder()
                    .distribution("starter")
                    .data_dir(dir.path())
                    .build(),
            )
            .unwrap()
        })
    });
    let dir2 = tempfile::tempdir().unwrap();
    let yaml = common::echo_config(
        dir2.path(),
        "registered_resources:\n  models:\n  - {model_id: a, provider_id: echo}\n  - {model_id: b, provider_id: echo}\n",
    );
    group.bench_function("echo_with_registered_models", |b| {
        b.iter(|| {
            rt.block_on(
                Stack::builder()
                    .config_yaml(yaml.clone())
                    .with_provider(common::echo_spec())
                    .build(),
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
