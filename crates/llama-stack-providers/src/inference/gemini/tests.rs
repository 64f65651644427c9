//! Translation tests.
