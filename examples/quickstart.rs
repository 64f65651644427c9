//! Builds the offline `starter` distribution in-process and shows what it serves:
//! version, providers, models and the number of routes.
//!
//! Run: `cargo run --example quickstart` (no network, no server; data under
//! `~/.llama/distributions/starter` unless `SQLITE_STORE_DIR` says otherwise).
#![allow(clippy::print_stdout)]

use llama_stack::prelude::*;

#[tokio::main]
async fn main() -> Result<()> {
    let stack = Stack::builder().distribution("starter").build().await?;
    println!(
        "llama-stack {} ({})",
        stack.inspect().version().await?.version,
        stack.config().name()
    );
    for p in stack.providers().list().await?.data {
        println!(
            "provider {} {} [{:?}]",
            p.provider_id, p.provider_type, p.health.status
        );
    }
    for m in stack.models().list().await?.data {
        println!("model {} ({})", m.identifier, m.model_type.as_str());
    }
    println!("{} routes", stack.inspect().routes(None).await?.data.len());
    Ok(())
}
