//! SQL backends: [`SqliteSqlStore`] with the `sql-sqlite` feature.
//!
//! Every backend implements [`SqlStore`](llama_stack_core::storage::SqlStore) with the
//! same semantics, checked by one conformance suite (`tests/conformance/sql.rs`):
//!
//! - `create_table` creates typed tables (composite primary keys allowed) and adds missing
//!   columns to an existing table (forward migration; columns are never dropped).
//! - Filters use two-valued logic: `Eq`/`Ne` are null-safe (`Ne(c, v)` matches rows where
//!   `c` is NULL), ordering comparisons never match NULL, `Not` is exact negation.
//! - `fetch_all` orders by `(order column, key column)`, both in the requested direction;
//!   a cursor continues strictly after the cursor row, so rows sharing an order value are
//!   never skipped or repeated across pages.

#[cfg(feature = "sql-sqlite")]
pub mod sqlite;

#[cfg(feature = "sql-sqlite")]
pub use self::sqlite::SqliteSqlStore;
