//! [`AuthorizedSqlStore`]: a [`SqlStore`] wrapper that records who wrote each row and
//! applies the access policy to every row read, updated or deleted (Llama Stack's
//! `AuthorizedSqlStore`, auth.md §4.4–4.5).
//!
//! - Every table created through it gains `owner_principal TEXT` and
//!   `access_attributes JSON` columns. Such a table needs a single-column primary key: a
//!   row's resource is `sql_record::<table>::<primary key value>`.
//! - `insert`/`upsert` write the caller's principal (`""` when anonymous) and attributes;
//!   `update` overwrites them with the current caller, as Llama Stack does. An `upsert`
//!   that would replace an existing row needs `update` permission on it.
//! - Reads check `read` per row and silently drop rows the caller may not read. With
//!   authentication off (`user: None`) only unowned rows (`owner_principal` `""` or NULL)
//!   are visible. `fetch_all` keeps fetching until it has `limit` visible rows or the
//!   table is exhausted, so pages are full and `has_more` is exact.
//! - `update`/`delete` act only on matching rows the caller may update/delete.
//! - The owner columns are never returned.
//!
//! Its methods mirror [`SqlStore`] with an extra first parameter `user` (it is not itself
//! a `SqlStore`, so it cannot be used without saying who is calling).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::access::{AccessPolicy, Action, ProtectedResource};
use crate::storage::{
    ColumnDef, ColumnType, Cursor, FetchQuery, Filter, Page, Row, SqlStore, TableSchema,
};
use crate::{Error, Result, User};
use serde_json::Value;

/// The column holding the principal of the row's writer (`""` = anonymous).
pub const OWNER_PRINCIPAL_COLUMN: &str = "owner_principal";
/// The column holding the writer's attributes as a JSON object (or NULL).
pub const ACCESS_ATTRIBUTES_COLUMN: &str = "access_attributes";

/// Rows fetched per round while scanning for rows to update or delete.
const SCAN_BATCH: usize = 256;

/// A [`SqlStore`] with per-row ownership and access checks.
pub struct AuthorizedSqlStore {
    inner: Arc<dyn SqlStore>,
    policy: AccessPolicy,
    /// Table name → its primary-key column, from `create_table`.
    keys: RwLock<HashMap<String, String>>,
}

impl std::fmt::Debug for AuthorizedSqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizedSqlStore")
            .field("backend", &self.inner.backend())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl AuthorizedSqlStore {
    /// Wraps `inner`, checking rows against `policy` (an empty policy is the default one).
    pub fn new(inner: Arc<dyn SqlStore>, policy: AccessPolicy) -> Self {
        AuthorizedSqlStore {
            inner,
            policy,
            keys: RwLock::new(HashMap::new()),
        }
    }

    /// The wrapped store (no access checks).
    pub fn inner(&self) -> &Arc<dyn SqlStore> {
        &self.inner
    }

    /// The access policy rows are checked against.
    pub fn policy(&self) -> &AccessPolicy {
        &self.policy
    }

    /// Creates (or migrates) the table with the owner columns added; the table needs a
    /// single-column primary key.
    pub async fn create_table(&self, schema: &TableSchema) -> Result<()> {
        let keys: Vec<&ColumnDef> = schema.columns.iter().filter(|c| c.primary_key).collect();
        let [key] = keys.as_slice() else {
            return Err(Error::invalid_request(format!(
                "table '{}' needs exactly one primary-key column to be access-controlled (found {})",
                schema.name,
                keys.len()
            )));
        };
        let key = key.name.clone();
        let mut schema = schema.clone();
        for (name, ty) in [
            (OWNER_PRINCIPAL_COLUMN, ColumnType::Text),
            (ACCESS_ATTRIBUTES_COLUMN, ColumnType::Json),
        ] {
            if schema.column(name).is_none() {
                schema.columns.push(ColumnDef::new(name, ty));
            }
        }
        self.inner.create_table(&schema).await?;
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(schema.name.clone(), key);
        Ok(())
    }

    /// Inserts a row owned by `user`; an existing primary key is a `Conflict`.
    pub async fn insert(&self, user: Option<&User>, table: &str, mut row: Row) -> Result<()> {
        self.key_column(table)?;
        set_owner(&mut row, user)?;
        self.inner.insert(table, row).await
    }

    /// Inserts rows, each owned by the user beside it: all or none where the backend has
    /// transactions.
    pub async fn insert_many(&self, table: &str, rows: Vec<(Option<User>, Row)>) -> Result<()> {
        self.key_column(table)?;
        let rows = rows
            .into_iter()
            .map(|(user, mut row)| set_owner(&mut row, user.as_ref()).map(|()| row))
            .collect::<Result<Vec<_>>>()?;
        self.inner.insert_many(table, rows).await
    }

    /// Inserts a row owned by `user`, or replaces the row with the same
    /// `conflict_columns` (default: the primary key) if `user` may update it.
    pub async fn upsert(
        &self,
        user: Option<&User>,
        table: &str,
        mut row: Row,
        conflict_columns: &[&str],
    ) -> Result<()> {
        let key = self.key_column(table)?;
        let targets: Vec<&str> = if conflict_columns.is_empty() {
            vec![key.as_str()]
        } else {
            conflict_columns.to_vec()
        };
        let conflict = Filter::And(
            targets
                .iter()
                .map(|c| Filter::eq(*c, row.get(*c).cloned().unwrap_or(Value::Null)))
                .collect(),
        );
        if let Some(existing) = self.inner.fetch_one(table, Some(&conflict)).await? {
            let owner = owner_of(&existing);
            let id = identifier(&existing, &key);
            let resource_type = resource_type(table);
            let resource = ProtectedResource::new(&resource_type, &id, owner.as_ref());
            if user.is_none() && owner.is_some() {
                // Auth off sees only unowned rows; an owned row looks like someone else's.
                return Err(Error::conflict(format!(
                    "a row with {key}={} already exists in table '{table}'",
                    display(&existing, &key)
                )));
            }
            self.policy.check(user, Action::Update, &resource)?;
        }
        set_owner(&mut row, user)?;
        self.inner.upsert(table, row, conflict_columns).await
    }

    /// Sets `values` on every row matching `filter` that `user` may update (taking over
    /// its ownership); returns how many rows changed.
    pub async fn update(
        &self,
        user: Option<&User>,
        table: &str,
        mut values: Row,
        filter: &Filter,
    ) -> Result<u64> {
        let key = self.key_column(table)?;
        let ids = self
            .permitted_keys(user, table, &key, filter, Action::Update)
            .await?;
        set_owner(&mut values, user)?;
        let mut changed = 0;
        for chunk in ids.chunks(SCAN_BATCH) {
            let by_key = Filter::And(vec![
                Filter::In(key.clone(), chunk.to_vec()),
                filter.clone(),
            ]);
            changed += self.inner.update(table, values.clone(), &by_key).await?;
        }
        Ok(changed)
    }

    /// The first row matching `filter` that `user` may read.
    pub async fn fetch_one(
        &self,
        user: Option<&User>,
        table: &str,
        filter: Option<&Filter>,
    ) -> Result<Option<Row>> {
        let query = FetchQuery {
            filter: filter.cloned(),
            limit: Some(1),
            ..FetchQuery::default()
        };
        Ok(self
            .fetch_all(user, table, &query)
            .await?
            .rows
            .into_iter()
            .next())
    }

    /// A page of rows `user` may read: filled up to `query.limit` visible rows, with an
    /// exact `has_more`.
    pub async fn fetch_all(
        &self,
        user: Option<&User>,
        table: &str,
        query: &FetchQuery,
    ) -> Result<Page> {
        let key = self.key_column(table)?;
        let resource_type = resource_type(table);
        let key_column = query
            .cursor
            .as_ref()
            .map_or_else(|| key.clone(), |c| c.key_column.clone());
        let mut inner_query = FetchQuery {
            filter: visible_filter(user, query.filter.clone()),
            order_by: query.order_by.clone(),
            limit: query.limit.map(|l| l.saturating_add(1).max(8)),
            cursor: query.cursor.clone(),
        };
        let mut rows = Vec::new();
        loop {
            let page = self.inner.fetch_all(table, &inner_query).await?;
            let last = page.rows.last().map(|r| r.get(&key_column).cloned());
            for row in page.rows {
                if self.may(user, Action::Read, &resource_type, &key, &row) {
                    rows.push(strip_owner(row));
                }
            }
            let full = query.limit.is_some_and(|limit| rows.len() > limit);
            match last {
                Some(Some(after)) if page.has_more && !full => {
                    inner_query.cursor = Some(Cursor {
                        key_column: key_column.clone(),
                        after,
                    });
                }
                Some(None) if page.has_more && !full => {
                    return Err(Error::internal(format!(
                        "cannot page through table '{table}': a row has no '{key_column}' value"
                    )));
                }
                _ => break,
            }
        }
        let has_more = query.limit.is_some_and(|limit| rows.len() > limit);
        if let Some(limit) = query.limit {
            rows.truncate(limit);
        }
        Ok(Page { rows, has_more })
    }

    /// Deletes every row matching `filter` that `user` may delete; returns how many.
    pub async fn delete(&self, user: Option<&User>, table: &str, filter: &Filter) -> Result<u64> {
        let key = self.key_column(table)?;
        let ids = self
            .permitted_keys(user, table, &key, filter, Action::Delete)
            .await?;
        let mut deleted = 0;
        for chunk in ids.chunks(SCAN_BATCH) {
            let by_key = Filter::And(vec![
                Filter::In(key.clone(), chunk.to_vec()),
                filter.clone(),
            ]);
            deleted += self.inner.delete(table, &by_key).await?;
        }
        Ok(deleted)
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn key_column(&self, table: &str) -> Result<String> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(table)
            .cloned()
            .ok_or_else(|| {
                Error::invalid_request(format!(
                    "table '{table}' was not created through AuthorizedSqlStore::create_table"
                ))
            })
    }

    fn may(
        &self,
        user: Option<&User>,
        action: Action,
        resource_type: &str,
        key: &str,
        row: &Row,
    ) -> bool {
        let owner = owner_of(row);
        let id = identifier(row, key);
        let resource = ProtectedResource::new(resource_type, &id, owner.as_ref());
        self.policy.is_allowed(user, action, &resource)
    }

    /// The keys of rows matching `filter` on which `user` may perform `action`.
    async fn permitted_keys(
        &self,
        user: Option<&User>,
        table: &str,
        key: &str,
        filter: &Filter,
        action: Action,
    ) -> Result<Vec<Value>> {
        let resource_type = resource_type(table);
        let mut query = FetchQuery {
            filter: visible_filter(user, Some(filter.clone())),
            order_by: None,
            limit: Some(SCAN_BATCH),
            cursor: None,
        };
        let mut ids = Vec::new();
        loop {
            let page = self.inner.fetch_all(table, &query).await?;
            let last = page.rows.last().and_then(|r| r.get(key).cloned());
            for row in &page.rows {
                if self.may(user, action, &resource_type, key, row) {
                    if let Some(id) = row.get(key) {
                        ids.push(id.clone());
                    }
                }
            }
            match last {
                Some(after) if page.has_more => {
                    query.cursor = Some(Cursor {
                        key_column: key.to_string(),
                        after,
                    });
                }
                _ => return Ok(ids),
            }
        }
    }
}

/// `sql_record::<table>`.
fn resource_type(table: &str) -> String {
    format!("sql_record::{table}")
}

/// With authentication off, only unowned rows are visible: add that to the filter.
fn visible_filter(user: Option<&User>, filter: Option<Filter>) -> Option<Filter> {
    if user.is_some() {
        return filter;
    }
    let unowned = Filter::Or(vec![
        Filter::eq(OWNER_PRINCIPAL_COLUMN, ""),
        Filter::IsNull(OWNER_PRINCIPAL_COLUMN.to_string()),
    ]);
    Some(match filter {
        Some(f) => Filter::And(vec![f, unowned]),
        None => unowned,
    })
}

/// Writes `user` into the owner columns of `row`.
fn set_owner(row: &mut Row, user: Option<&User>) -> Result<()> {
    let (principal, attributes) = match user {
        Some(user) => (
            user.principal.clone(),
            serde_json::to_value(&user.attributes)
                .map_err(|e| Error::internal(format!("cannot serialise user attributes: {e}")))?,
        ),
        None => (String::new(), Value::Null),
    };
    row.insert(OWNER_PRINCIPAL_COLUMN.to_string(), Value::String(principal));
    row.insert(ACCESS_ATTRIBUTES_COLUMN.to_string(), attributes);
    Ok(())
}

/// The owner recorded in `row` (`None` for anonymous/unowned rows).
fn owner_of(row: &Row) -> Option<User> {
    let principal = row.get(OWNER_PRINCIPAL_COLUMN)?.as_str()?;
    if principal.is_empty() {
        return None;
    }
    let attributes = row
        .get(ACCESS_ATTRIBUTES_COLUMN)
        .and_then(|v| serde_json::from_value::<BTreeMap<String, Vec<String>>>(v.clone()).ok())
        .unwrap_or_default();
    Some(User {
        principal: principal.to_string(),
        attributes,
    })
}

/// The row's primary-key value as the policy's identifier.
fn identifier(row: &Row, key: &str) -> String {
    match row.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn display(row: &Row, key: &str) -> String {
    row.get(key)
        .map_or_else(|| "null".to_string(), Value::to_string)
}

/// `row` without the owner columns.
fn strip_owner(mut row: Row) -> Row {
    row.remove(OWNER_PRINCIPAL_COLUMN);
    row.remove(ACCESS_ATTRIBUTES_COLUMN);
    row
}
