//! Core of llama-stack-rs: API types and traits, resources, routing tables, routers, the
//! provider spec and resolver, the access policy and the storage traits.
//!
//! Two boundaries are public: the user API (re-exported by the `llama-stack` facade) and
//! the provider-author API in [`provider`]. This crate depends on no HTTP, ML or database
//! crate.
#![deny(missing_docs)]

pub mod access;
pub mod api;
pub mod authorized;
pub mod context;
pub mod error;
pub mod inference_store;
pub mod provider;
pub mod resolver;
pub mod resource;
pub mod router;
pub mod routing_table;
pub mod storage;

pub use context::{RequestContext, User};
pub use error::{Error, ErrorKind, Result};
