//! SQL backends: [`SqliteSqlStore`] with the `sql-sqlite` feature, [`PostgresSqlStore`]
//! with `sql-postgres`.
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
//! - Each database records its storage format version ([`STORAGE_FORMAT_VERSION`]) in
//!   the row `_llama_stack_schema` of the table `_llama_stack_schema`; opening migrates an
//!   older format forward and refuses a newer one with a `Config` error, leaving the
//!   database untouched.

#[cfg(feature = "sql-postgres")]
pub mod postgres;
#[cfg(feature = "sql-sqlite")]
pub mod sqlite;

#[cfg(feature = "sql-postgres")]
pub use self::postgres::PostgresSqlStore;
#[cfg(feature = "sql-sqlite")]
pub use self::sqlite::SqliteSqlStore;

/// The storage format this build reads and writes: the layout of the bookkeeping table
/// and of the tables it describes. Bumped (with a migration) whenever that layout changes.
pub const STORAGE_FORMAT_VERSION: i64 = 1;

/// The `table_name` of the bookkeeping row that holds the storage format version.
#[cfg(any(feature = "sql-sqlite", feature = "sql-postgres"))]
pub(crate) const FORMAT_ROW: &str = "_llama_stack_schema";

/// The error for a database written by a newer build (storage format `found`).
#[cfg(any(feature = "sql-sqlite", feature = "sql-postgres"))]
pub(crate) fn newer_format_error(
    backend: &str,
    location: &str,
    found: i64,
) -> llama_stack_core::Error {
    llama_stack_core::Error::config(format!(
        "{backend}: the {location} has storage format version {found}, newer than the \
         version {STORAGE_FORMAT_VERSION} this build of llama-stack-rs knows; it was written \
         by a newer release. Upgrade llama-stack-rs, or point this backend at another \
         database; the database was not modified"
    ))
}

/// One column as recorded in `_llama_stack_schema.columns` (a JSON array).
#[cfg(any(feature = "sql-sqlite", feature = "sql-postgres"))]
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredColumn {
    name: String,
    #[serde(rename = "type")]
    ty: llama_stack_core::storage::ColumnType,
    #[serde(default)]
    primary_key: bool,
    #[serde(default = "default_nullable")]
    nullable: bool,
}

#[cfg(any(feature = "sql-sqlite", feature = "sql-postgres"))]
fn default_nullable() -> bool {
    true
}

#[cfg(any(feature = "sql-sqlite", feature = "sql-postgres"))]
impl From<&llama_stack_core::storage::ColumnDef> for StoredColumn {
    fn from(c: &llama_stack_core::storage::ColumnDef) -> Self {
        StoredColumn {
            name: c.name.clone(),
            ty: c.ty,
            primary_key: c.primary_key,
            nullable: c.nullable,
        }
    }
}

#[cfg(any(feature = "sql-sqlite", feature = "sql-postgres"))]
impl From<StoredColumn> for llama_stack_core::storage::ColumnDef {
    fn from(c: StoredColumn) -> Self {
        llama_stack_core::storage::ColumnDef {
            name: c.name,
            ty: c.ty,
            primary_key: c.primary_key,
            nullable: c.nullable,
        }
    }
}
