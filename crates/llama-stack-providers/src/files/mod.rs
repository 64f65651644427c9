//! Files providers.

#[cfg(feature = "inline-localfs")]
pub mod localfs;
