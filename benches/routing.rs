//! Routed in-process call overhead: router + routing table + access check around a
//! trivial provider, against calling the same provider directly.
//!
//! Run: `cargo bench --bench routing`. Needs nothing but the workspace.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::AtomicUsize;

use criterion::{criterion_group, criterion_main, Criterion};
use llama_stack::core::api::inference::{ChatCompletionRequest, Inference, Message};
use llama_stack::prelude::*;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stack = rt
        .block_on(
            Stack::builder()
                .config_yaml(common::echo_config(dir.path(), ""))
                .with_provider(common::echo_spec())
                .build(),
        )
        .unwrap();
    let direct = common::EchoProvider {
        config: common::EchoConfig::default(),
        calls: AtomicUsize::new(0),
    };
    let req = ChatCompletionRequest::new("echo/listed-1", [Message::user("hi")]);
    let ctx = RequestContext::anonymous();
    let router = stack.inference_api();

    let mut group = c.benchmark_group("chat_completion");
    group.bench_function("direct_provider", |b| {
        b.iter(|| {
            rt.block_on(direct.chat_completion(&ctx, req.clone()))
                .unwrap()
        })
    });
    group.bench_function("routed", |b| {
        b.iter(|| {
            rt.block_on(router.chat_completion(&ctx, req.clone()))
                .unwrap()
        })
    });
    let alice = RequestContext::for_user(User::new("alice").with_attribute("roles", ["ml"]));
    group.bench_function("routed_authenticated_user", |b| {
        b.iter(|| {
            rt.block_on(router.chat_completion(&alice, req.clone()))
                .unwrap()
        })
    });
    let handle = stack.inference();
    group.bench_function("stack_handle", |b| {
        b.iter(|| rt.block_on(handle.chat_completion(req.clone())).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
