//! Examples, integration tests and benches of llama-stack-rs live beside this crate.
