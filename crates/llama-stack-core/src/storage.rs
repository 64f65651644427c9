//! The two small storage traits every routing table and provider is written against:
//! [`KvStore`] and [`SqlStore`]. Backends live in `llama-stack-storage`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;

/// A key-value store with optional expiry and ordered scans.
///
/// Keys compare as bytes; scans return pairs in ascending key order. Every write that
/// returned `Ok` is durable for persistent backends.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// The value of `key`, or `None` if absent or expired.
    async fn get(&self, key: &str) -> Result<Option<String>>;
    /// Sets `key` to `value`, expiring after `ttl` if given.
    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<()>;
    /// Sets `key` only if it is absent (or expired); returns whether it was set. Atomic.
    async fn set_if_absent(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<bool>;
    /// Adds `delta` to the integer stored at `key` (absent = 0) and returns the new value.
    /// When the key is created by this call, it expires after `ttl` if given. Atomic.
    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64>;
    /// Deletes `key`; deleting an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// All live pairs whose key starts with `prefix`, in key order.
    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>>;
    /// All live pairs with `start <= key < end`, in key order.
    async fn scan_range(&self, start: &str, end: &str) -> Result<Vec<(String, String)>>;
    /// The backend's name (`kv_sqlite`, `kv_memory`, ...), for logs and errors.
    fn backend(&self) -> &'static str;
    /// A token for the store's current contents, if the backend can give one without
    /// reading the data: two equal tokens from the same store mean no write (by any
    /// connection or process) committed in between. `None` means it cannot tell, and a
    /// caller that needs current data reads it. Called on the async runtime, so it must
    /// not wait on I/O. Entries expiring by time do not change the token.
    fn change_token(&self) -> Option<ChangeToken> {
        None
    }
}

/// What [`KvStore::change_token`] returns: equal tokens mean unchanged contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChangeToken {
    external: u64,
    local: u64,
}

impl ChangeToken {
    /// A token made of a counter of writes seen from outside this handle (e.g. by other
    /// connections) and a counter of writes made through it.
    pub fn new(external: u64, local: u64) -> Self {
        ChangeToken { external, local }
    }
}

/// A view of a [`KvStore`] in which every key is prefixed with `<namespace>:`.
///
/// Unlike Llama Stack's SQLite KV backend (which ignores namespaces), every backend here
/// applies the namespace, so two stores on one database never see each other's keys.
#[derive(Clone)]
pub struct NamespacedKv {
    inner: Arc<dyn KvStore>,
    prefix: String,
}

impl NamespacedKv {
    /// A view of `inner` under `namespace` (an empty namespace means no prefix).
    pub fn new(inner: Arc<dyn KvStore>, namespace: &str) -> Self {
        let prefix = if namespace.is_empty() {
            String::new()
        } else {
            format!("{namespace}:")
        };
        NamespacedKv { inner, prefix }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn strip(&self, pairs: Vec<(String, String)>) -> Vec<(String, String)> {
        let n = self.prefix.len();
        pairs
            .into_iter()
            .map(|(k, v)| (k.get(n..).unwrap_or_default().to_string(), v))
            .collect()
    }
}

#[async_trait]
impl KvStore for NamespacedKv {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        self.inner.get(&self.key(key)).await
    }
    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<()> {
        self.inner.set(&self.key(key), value, ttl).await
    }
    async fn set_if_absent(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<bool> {
        self.inner.set_if_absent(&self.key(key), value, ttl).await
    }
    async fn increment(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        self.inner.increment(&self.key(key), delta, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(&self.key(key)).await
    }
    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let pairs = self.inner.scan_prefix(&self.key(prefix)).await?;
        Ok(self.strip(pairs))
    }
    async fn scan_range(&self, start: &str, end: &str) -> Result<Vec<(String, String)>> {
        let pairs = self
            .inner
            .scan_range(&self.key(start), &self.key(end))
            .await?;
        Ok(self.strip(pairs))
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn change_token(&self) -> Option<ChangeToken> {
        self.inner.change_token()
    }
}

/// The type of a column in a [`TableSchema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// 64-bit signed integer.
    Integer,
    /// 64-bit float.
    Float,
    /// UTF-8 text.
    Text,
    /// true / false.
    Boolean,
    /// Any JSON value, stored as text.
    Json,
    /// Unix seconds (integer).
    Timestamp,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name (`[A-Za-z_][A-Za-z0-9_]*`).
    pub name: String,
    /// Column type.
    pub ty: ColumnType,
    /// Part of the primary key.
    pub primary_key: bool,
    /// May hold NULL.
    pub nullable: bool,
}

impl ColumnDef {
    /// A nullable, non-key column.
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        ColumnDef {
            name: name.into(),
            ty,
            primary_key: false,
            nullable: true,
        }
    }

    /// Marks the column as (part of) the primary key; implies not null.
    pub fn primary_key(mut self) -> Self {
        self.primary_key = true;
        self.nullable = false;
        self
    }

    /// Marks the column NOT NULL.
    pub fn not_null(mut self) -> Self {
        self.nullable = false;
        self
    }
}

/// A typed table definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Table name (`[A-Za-z_][A-Za-z0-9_]*`).
    pub name: String,
    /// Columns in order.
    pub columns: Vec<ColumnDef>,
}

impl TableSchema {
    /// A table with the given columns.
    pub fn new(name: impl Into<String>, columns: Vec<ColumnDef>) -> Self {
        TableSchema {
            name: name.into(),
            columns,
        }
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A row: column name → JSON value (`null` for SQL NULL).
pub type Row = serde_json::Map<String, Value>;

/// A filter over rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// column = value
    Eq(String, Value),
    /// column <> value
    Ne(String, Value),
    /// column > value
    Gt(String, Value),
    /// column >= value
    Gte(String, Value),
    /// column < value
    Lt(String, Value),
    /// column <= value
    Lte(String, Value),
    /// column IN (values)
    In(String, Vec<Value>),
    /// column IS NULL
    IsNull(String),
    /// all hold
    And(Vec<Filter>),
    /// any holds
    Or(Vec<Filter>),
    /// does not hold
    Not(Box<Filter>),
}

impl Filter {
    /// `column = value`.
    pub fn eq(column: impl Into<String>, value: impl Into<Value>) -> Self {
        Filter::Eq(column.into(), value.into())
    }

    /// The names of every column this filter reads.
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Filter::Eq(c, _)
            | Filter::Ne(c, _)
            | Filter::Gt(c, _)
            | Filter::Gte(c, _)
            | Filter::Lt(c, _)
            | Filter::Lte(c, _)
            | Filter::In(c, _)
            | Filter::IsNull(c) => vec![c.as_str()],
            Filter::And(fs) | Filter::Or(fs) => fs.iter().flat_map(Filter::columns).collect(),
            Filter::Not(f) => f.columns(),
        }
    }
}

/// Sort direction.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Ascending.
    Asc,
    /// Descending.
    #[default]
    Desc,
}

/// A fetch: filter, ordering, limit and cursor.
///
/// Rows are ordered by `order_by`, then by the cursor's key column as a tie-breaker, so
/// cursor pagination never skips or repeats rows that share an order value.
#[derive(Debug, Clone, Default)]
pub struct FetchQuery {
    /// Rows must match this filter.
    pub filter: Option<Filter>,
    /// Order by this column in this direction.
    pub order_by: Option<(String, Order)>,
    /// At most this many rows.
    pub limit: Option<usize>,
    /// Continue strictly after the row whose `key column` equals `value` (in the query order).
    pub cursor: Option<Cursor>,
}

/// A pagination cursor: the key column and the key of the last row already seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// A unique column (usually the primary key).
    pub key_column: String,
    /// The key value of the last row seen.
    pub after: Value,
}

/// A page of rows and whether more follow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The rows of this page.
    pub rows: Vec<Row>,
    /// Whether more rows match after this page.
    pub has_more: bool,
}

/// A small typed SQL store: tables from a schema, insert/upsert/update/fetch/delete with
/// filters, ordering and cursor pagination.
#[async_trait]
pub trait SqlStore: Send + Sync + 'static {
    /// Creates the table if absent and adds any missing columns (forward migration).
    async fn create_table(&self, schema: &TableSchema) -> Result<()>;
    /// Inserts a row; an existing primary key is a `Conflict`.
    async fn insert(&self, table: &str, row: Row) -> Result<()>;
    /// Inserts several rows: all of them or (on an error) none, where the backend has
    /// transactions (SQLite, PostgreSQL); the default inserts one by one.
    async fn insert_many(&self, table: &str, rows: Vec<Row>) -> Result<()> {
        for row in rows {
            self.insert(table, row).await?;
        }
        Ok(())
    }
    /// Inserts a row, or updates the existing row with the same `conflict_columns`.
    async fn upsert(&self, table: &str, row: Row, conflict_columns: &[&str]) -> Result<()>;
    /// Sets `values` on every row matching `filter`; returns how many rows changed.
    async fn update(&self, table: &str, values: Row, filter: &Filter) -> Result<u64>;
    /// The first row matching `filter` (any row if `None`).
    async fn fetch_one(&self, table: &str, filter: Option<&Filter>) -> Result<Option<Row>>;
    /// A page of rows.
    async fn fetch_all(&self, table: &str, query: &FetchQuery) -> Result<Page>;
    /// Deletes every row matching `filter`; returns how many.
    async fn delete(&self, table: &str, filter: &Filter) -> Result<u64>;
    /// The backend's name (`sql_sqlite`, ...).
    fn backend(&self) -> &'static str;
}

/// Checks a table or column name: `[A-Za-z_][A-Za-z0-9_]*`, at most 63 characters.
pub fn validate_identifier(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid_request(format!(
            "invalid SQL identifier '{name}': use letters, digits and '_' (not starting with a digit), at most 63 characters"
        )))
    }
}
