//! [`SqliteSqlStore`]: a [`SqlStore`] in a SQLite file.
//!
//! Tables are created with typed columns (`INTEGER`, `REAL`, `TEXT`, `BOOLEAN`,
//! `TIMESTAMP`; JSON columns are `TEXT` holding serialised JSON) and composite primary
//! keys. Each table's schema and a version number (bumped whenever columns are added) are
//! recorded in `_llama_stack_schema(table_name TEXT PRIMARY KEY, version INTEGER, columns
//! TEXT)`, so values come back with their declared types (`Boolean` as bool, `Json`
//! parsed) even for a table this process did not create. `create_table` on an existing
//! table adds the missing columns (a `NOT NULL` column added this way is nullable in the
//! database, since SQLite cannot add one without a default; primary-key columns cannot be
//! added).
//!
//! Every value, in rows, filters and cursors, is a bound parameter; identifiers are
//! checked with [`validate_identifier`] and must name known columns before they are
//! quoted into SQL. Threading: one connection behind a mutex, every call run with
//! `tokio::task::spawn_blocking`; WAL mode with `synchronous=FULL`, so an acknowledged
//! write is durable.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::storage::{
    validate_identifier, ColumnDef, ColumnType, FetchQuery, Filter, Order, Page, Row, SqlStore,
    TableSchema,
};
use llama_stack_core::{Error, Result};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{ffi, params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use super::{newer_format_error, StoredColumn, FORMAT_ROW, STORAGE_FORMAT_VERSION};
use crate::sqlite_connection::{sqlite_error, SqliteConnection};

/// The table recording each table's schema and version.
const SCHEMA_TABLE: &str = "_llama_stack_schema";

/// Table name → schema, as last read or written by this store.
type Schemas = HashMap<String, Arc<TableSchema>>;

/// A [`SqlStore`] in a SQLite file (backend `sql_sqlite`).
#[derive(Debug)]
pub struct SqliteSqlStore {
    conn: SqliteConnection<Schemas>,
}

impl SqliteSqlStore {
    /// Opens (creating if needed, with parent directories) the SQLite file at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = SqliteConnection::open(path.as_ref(), Schemas::new()).await?;
        let location = format!("database file '{}'", path.as_ref().display());
        conn.call(move |c, _| check_format(c, &location)).await?;
        Ok(SqliteSqlStore { conn })
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        self.conn.path()
    }

    /// The schema version recorded for `table` (1 when created, +1 per migration), if any.
    pub async fn schema_version(&self, table: &str) -> Result<Option<i64>> {
        validate_identifier(table)?;
        let table = table.to_string();
        self.conn
            .call(move |c, _| Ok(stored_schema(c, &table)?.map(|(version, _)| version)))
            .await
    }
}

/// Creates the bookkeeping table if absent and checks the recorded storage format:
/// older or unrecorded → migrated forward and recorded; newer → `Config` error.
fn check_format(c: &mut Connection, location: &str) -> Result<()> {
    let what = format!("checking the storage format in {SCHEMA_TABLE}");
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sqlite_error(e, &what))?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (\
           table_name TEXT PRIMARY KEY, version INTEGER NOT NULL, columns TEXT NOT NULL)"
    ))
    .map_err(|e| sqlite_error(e, &format!("creating table {SCHEMA_TABLE}")))?;
    let found: Option<i64> = tx
        .query_row(
            &format!("SELECT version FROM {SCHEMA_TABLE} WHERE table_name = ?1"),
            params![FORMAT_ROW],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sqlite_error(e, &what))?;
    match found {
        Some(v) if v > STORAGE_FORMAT_VERSION => {
            return Err(newer_format_error("sql_sqlite", location, v));
        }
        Some(v) if v == STORAGE_FORMAT_VERSION => {}
        // Older or unrecorded (files from before the format was recorded are format 1):
        // run the migrations from there (none yet) and record the current format.
        _ => {
            tx.execute(
                &format!(
                    "INSERT INTO {SCHEMA_TABLE} (table_name, version, columns) VALUES (?1, ?2, '[]') \
                     ON CONFLICT (table_name) DO UPDATE SET version = excluded.version"
                ),
                params![FORMAT_ROW, STORAGE_FORMAT_VERSION],
            )
            .map_err(|e| sqlite_error(e, &what))?;
        }
    }
    tx.commit().map_err(|e| sqlite_error(e, &what))
}

// ---------------------------------------------------------------------------------------
// Schemas

/// A column as SQLite reports it (`pragma_table_info`).
struct DbColumn {
    name: String,
    decl: String,
    not_null: bool,
    primary_key: bool,
}

impl DbColumn {
    /// The closest [`ColumnDef`] for a column created outside this store.
    fn to_def(&self) -> ColumnDef {
        let decl = self.decl.to_ascii_uppercase();
        let ty = if decl.contains("BOOL") {
            ColumnType::Boolean
        } else if decl.contains("JSON") {
            ColumnType::Json
        } else if decl.contains("TIMESTAMP") || decl.contains("DATETIME") {
            ColumnType::Timestamp
        } else if decl.contains("INT") {
            ColumnType::Integer
        } else if decl.contains("REAL") || decl.contains("FLOA") || decl.contains("DOUB") {
            ColumnType::Float
        } else {
            ColumnType::Text
        };
        ColumnDef {
            name: self.name.clone(),
            ty,
            primary_key: self.primary_key,
            nullable: !self.not_null,
        }
    }
}

fn declared_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer => "INTEGER",
        ColumnType::Float => "REAL",
        ColumnType::Text | ColumnType::Json => "TEXT",
        ColumnType::Boolean => "BOOLEAN",
        ColumnType::Timestamp => "TIMESTAMP",
    }
}

/// `"name"`; only ever called with validated identifiers.
fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

fn stored_schema(conn: &Connection, table: &str) -> Result<Option<(i64, Vec<ColumnDef>)>> {
    let found: Option<(i64, String)> = conn
        .query_row(
            &format!("SELECT version, columns FROM {SCHEMA_TABLE} WHERE table_name = ?1"),
            params![table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| sqlite_error(e, &format!("reading the schema of table '{table}'")))?;
    let Some((version, columns)) = found else {
        return Ok(None);
    };
    let columns: Vec<StoredColumn> = serde_json::from_str(&columns).map_err(|e| {
        Error::internal(format!(
            "corrupt schema record of table '{table}' in {SCHEMA_TABLE}: {e}"
        ))
    })?;
    Ok(Some((
        version,
        columns.into_iter().map(Into::into).collect(),
    )))
}

fn db_columns(conn: &Connection, table: &str) -> Result<Vec<DbColumn>> {
    let what = format!("reading the columns of table '{table}'");
    let mut stmt = conn
        .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")
        .map_err(|e| sqlite_error(e, &what))?;
    let rows = stmt
        .query_map(params![table], |r| {
            Ok(DbColumn {
                name: r.get(0)?,
                decl: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                not_null: r.get::<_, i64>(2)? != 0,
                primary_key: r.get::<_, i64>(3)? != 0,
            })
        })
        .map_err(|e| sqlite_error(e, &what))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| sqlite_error(e, &what))
}

/// The schema of `table`: the recorded one plus any column added outside this store, or
/// one derived from SQLite's column list; `None` if the table does not exist.
fn load_schema(conn: &Connection, table: &str) -> Result<Option<TableSchema>> {
    let existing = db_columns(conn, table)?;
    if existing.is_empty() {
        return Ok(None);
    }
    let mut columns = stored_schema(conn, table)?
        .map(|(_, columns)| columns)
        .unwrap_or_default();
    for db in &existing {
        if !columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&db.name))
        {
            columns.push(db.to_def());
        }
    }
    Ok(Some(TableSchema::new(table, columns)))
}

/// The schema of `table`, from the cache if it knows every column in `needed`, else
/// re-read from the database (another store may have migrated it).
fn schema_for(
    conn: &Connection,
    cache: &mut Schemas,
    table: &str,
    needed: &[&str],
) -> Result<Arc<TableSchema>> {
    validate_identifier(table)?;
    if let Some(schema) = cache.get(table) {
        if needed.iter().all(|c| schema.column(c).is_some()) {
            return Ok(Arc::clone(schema));
        }
    }
    let schema = load_schema(conn, table)?.ok_or_else(|| {
        Error::invalid_request(format!(
            "table '{table}' does not exist; create it with create_table first"
        ))
    })?;
    let schema = Arc::new(schema);
    cache.insert(table.to_string(), Arc::clone(&schema));
    Ok(schema)
}

/// The column `name` of `schema`, or an error naming it.
fn column<'a>(schema: &'a TableSchema, name: &str) -> Result<&'a ColumnDef> {
    validate_identifier(name)?;
    schema.column(name).ok_or_else(|| {
        Error::invalid_request(format!(
            "unknown column '{name}' in table '{}'",
            schema.name
        ))
    })
}

fn create_table(conn: &mut Connection, cache: &mut Schemas, schema: &TableSchema) -> Result<()> {
    let table = schema.name.as_str();
    validate_identifier(table)?;
    let lower = table.to_ascii_lowercase();
    if lower.starts_with("sqlite_") || lower.starts_with("_llama_stack") {
        return Err(Error::invalid_request(format!(
            "table name '{table}' is reserved (names starting with 'sqlite_' or '_llama_stack')"
        )));
    }
    if schema.columns.is_empty() {
        return Err(Error::invalid_request(format!(
            "table '{table}' needs at least one column"
        )));
    }
    for (i, col) in schema.columns.iter().enumerate() {
        validate_identifier(&col.name)?;
        if schema.columns[..i]
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&col.name))
        {
            return Err(Error::invalid_request(format!(
                "column '{}' appears twice in table '{table}'",
                col.name
            )));
        }
    }

    let what = format!("creating table '{table}'");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sqlite_error(e, &what))?;
    let stored = stored_schema(&tx, table)?;
    let existing = db_columns(&tx, table)?;
    let merged = if existing.is_empty() {
        let mut defs: Vec<String> = schema
            .columns
            .iter()
            .map(|c| {
                let not_null = if c.nullable { "" } else { " NOT NULL" };
                format!("{} {}{not_null}", quote(&c.name), declared_type(c.ty))
            })
            .collect();
        let keys: Vec<String> = schema
            .columns
            .iter()
            .filter(|c| c.primary_key)
            .map(|c| quote(&c.name))
            .collect();
        if !keys.is_empty() {
            defs.push(format!("PRIMARY KEY ({})", keys.join(", ")));
        }
        tx.execute_batch(&format!(
            "CREATE TABLE {} ({})",
            quote(table),
            defs.join(", ")
        ))
        .map_err(|e| sqlite_error(e, &what))?;
        schema.columns.clone()
    } else {
        let mut merged = match &stored {
            Some((_, columns)) => columns.clone(),
            None => Vec::new(),
        };
        for db in &existing {
            if !merged.iter().any(|c| c.name.eq_ignore_ascii_case(&db.name)) {
                merged.push(db.to_def());
            }
        }
        for col in &schema.columns {
            let in_db = existing
                .iter()
                .any(|d| d.name.eq_ignore_ascii_case(&col.name));
            if !in_db {
                if col.primary_key {
                    return Err(Error::invalid_request(format!(
                        "cannot add primary-key column '{}' to existing table '{table}'",
                        col.name
                    )));
                }
                tx.execute_batch(&format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    quote(table),
                    quote(&col.name),
                    declared_type(col.ty)
                ))
                .map_err(|e| {
                    sqlite_error(e, &format!("adding column '{}' to '{table}'", col.name))
                })?;
                merged.push(ColumnDef {
                    nullable: true,
                    ..col.clone()
                });
            } else if let Some(known) = merged
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(&col.name))
            {
                if known.ty != col.ty {
                    tracing::warn!(
                        table,
                        column = %col.name,
                        stored = ?known.ty,
                        requested = ?col.ty,
                        "column type differs from the stored schema; keeping the stored type"
                    );
                }
            }
        }
        merged
    };
    let version = match &stored {
        Some((version, columns)) if *columns == merged => None,
        Some((version, _)) => Some(version + 1),
        None => Some(1),
    };
    if let Some(version) = version {
        let columns: Vec<StoredColumn> = merged.iter().map(StoredColumn::from).collect();
        let columns = serde_json::to_string(&columns)
            .map_err(|e| Error::internal(format!("cannot serialise schema of '{table}': {e}")))?;
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA_TABLE} (table_name, version, columns) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (table_name) DO UPDATE SET \
                   version = excluded.version, columns = excluded.columns"
            ),
            params![table, version, columns],
        )
        .map_err(|e| sqlite_error(e, &what))?;
    }
    tx.commit().map_err(|e| sqlite_error(e, &what))?;
    cache.insert(table.to_string(), Arc::new(TableSchema::new(table, merged)));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Values

/// At most 80 characters of `v`, for error messages.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// The SQL value for `v` in column `col`, or an error naming the column and the value.
fn to_sql(schema: &TableSchema, col: &ColumnDef, v: &Value) -> Result<SqlValue> {
    let bad = |expected: &str| {
        Error::invalid_request(format!(
            "column '{}.{}' holds {expected}; got {}",
            schema.name,
            col.name,
            short(v)
        ))
    };
    if v.is_null() {
        return Ok(SqlValue::Null);
    }
    Ok(match col.ty {
        ColumnType::Integer => SqlValue::Integer(v.as_i64().ok_or_else(|| bad("an integer"))?),
        ColumnType::Timestamp => SqlValue::Integer(
            v.as_i64()
                .ok_or_else(|| bad("a timestamp (integer Unix seconds)"))?,
        ),
        ColumnType::Float => SqlValue::Real(v.as_f64().ok_or_else(|| bad("a number"))?),
        ColumnType::Text => SqlValue::Text(v.as_str().ok_or_else(|| bad("text"))?.to_string()),
        ColumnType::Boolean => {
            SqlValue::Integer(i64::from(v.as_bool().ok_or_else(|| bad("a boolean"))?))
        }
        ColumnType::Json => SqlValue::Text(v.to_string()),
    })
}

/// The JSON value of a stored SQL value in column `col`.
fn from_sql(col: &ColumnDef, v: ValueRef<'_>) -> Value {
    let text = |t: &[u8]| String::from_utf8_lossy(t).into_owned();
    let real = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    match (col.ty, v) {
        (_, ValueRef::Null) => Value::Null,
        (ColumnType::Boolean, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (ColumnType::Boolean, ValueRef::Real(f)) => Value::Bool(f != 0.0),
        (ColumnType::Boolean, ValueRef::Text(t)) => {
            let t = text(t);
            Value::Bool(matches!(
                t.to_ascii_lowercase().as_str(),
                "true" | "t" | "1" | "yes"
            ))
        }
        (ColumnType::Json, ValueRef::Text(t) | ValueRef::Blob(t)) => {
            let t = text(t);
            serde_json::from_str(&t).unwrap_or(Value::String(t))
        }
        (ColumnType::Text, ValueRef::Integer(i)) => Value::String(i.to_string()),
        (ColumnType::Text, ValueRef::Real(f)) => Value::String(f.to_string()),
        (ColumnType::Float, ValueRef::Integer(i)) => real(i as f64),
        (_, ValueRef::Integer(i)) => Value::from(i),
        (_, ValueRef::Real(f)) => real(f),
        (ColumnType::Integer | ColumnType::Timestamp, ValueRef::Text(t)) => {
            let t = text(t);
            t.trim()
                .parse::<i64>()
                .map_or(Value::String(t), Value::from)
        }
        (_, ValueRef::Text(t) | ValueRef::Blob(t)) => Value::String(text(t)),
    }
}

/// Reads every column of `schema` (selected in order) from `row`.
fn read_row(schema: &TableSchema, row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let mut out = Row::new();
    for (i, col) in schema.columns.iter().enumerate() {
        out.insert(col.name.clone(), from_sql(col, row.get_ref(i)?));
    }
    Ok(out)
}

fn select_list(schema: &TableSchema) -> String {
    schema
        .columns
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------
// Filters

/// Appends `f` as SQL (with `?` placeholders) and its values to `params`.
fn filter_sql(schema: &TableSchema, f: &Filter, params: &mut Vec<SqlValue>) -> Result<String> {
    let compare = |c: &str, v: &Value, op: &str, params: &mut Vec<SqlValue>| -> Result<String> {
        let col = column(schema, c)?;
        if v.is_null() {
            return Err(Error::invalid_request(format!(
                "filter on column '{c}' of table '{}': cannot compare with null (use IsNull)",
                schema.name
            )));
        }
        params.push(to_sql(schema, col, v)?);
        Ok(format!("{} {op} ?", quote(c)))
    };
    Ok(match f {
        Filter::Eq(c, v) if v.is_null() => format!("{} IS NULL", quote(&column(schema, c)?.name)),
        Filter::Ne(c, v) if v.is_null() => {
            format!("{} IS NOT NULL", quote(&column(schema, c)?.name))
        }
        Filter::Eq(c, v) => compare(c, v, "=", params)?,
        // Null-safe: a NULL column value differs from every non-null value.
        Filter::Ne(c, v) => compare(c, v, "IS NOT", params)?,
        Filter::Gt(c, v) => compare(c, v, ">", params)?,
        Filter::Gte(c, v) => compare(c, v, ">=", params)?,
        Filter::Lt(c, v) => compare(c, v, "<", params)?,
        Filter::Lte(c, v) => compare(c, v, "<=", params)?,
        Filter::In(c, values) => {
            let col = column(schema, c)?;
            let name = quote(c);
            let mut parts = Vec::new();
            let present: Vec<&Value> = values.iter().filter(|v| !v.is_null()).collect();
            if !present.is_empty() {
                for v in &present {
                    params.push(to_sql(schema, col, v)?);
                }
                let marks = vec!["?"; present.len()].join(", ");
                parts.push(format!("{name} IN ({marks})"));
            }
            if present.len() < values.len() {
                parts.push(format!("{name} IS NULL"));
            }
            if parts.is_empty() {
                "0".to_string()
            } else {
                format!("({})", parts.join(" OR "))
            }
        }
        Filter::IsNull(c) => format!("{} IS NULL", quote(&column(schema, c)?.name)),
        Filter::And(fs) | Filter::Or(fs) if fs.is_empty() => if matches!(f, Filter::And(_)) {
            "1"
        } else {
            "0"
        }
        .to_string(),
        Filter::And(fs) => join_filters(schema, fs, " AND ", params)?,
        Filter::Or(fs) => join_filters(schema, fs, " OR ", params)?,
        // Comparisons with NULL are unknown in SQL; treat unknown as false before negating.
        Filter::Not(inner) => format!("NOT COALESCE(({}), 0)", filter_sql(schema, inner, params)?),
    })
}

fn join_filters(
    schema: &TableSchema,
    fs: &[Filter],
    sep: &str,
    params: &mut Vec<SqlValue>,
) -> Result<String> {
    let parts = fs
        .iter()
        .map(|f| filter_sql(schema, f, params))
        .collect::<Result<Vec<_>>>()?;
    Ok(format!("({})", parts.join(sep)))
}

/// ` WHERE …` for an optional filter (empty string for none).
fn where_clause(
    schema: &TableSchema,
    f: Option<&Filter>,
    params: &mut Vec<SqlValue>,
) -> Result<String> {
    Ok(match f {
        Some(f) => format!(" WHERE {}", filter_sql(schema, f, params)?),
        None => String::new(),
    })
}

/// The primary-key columns, quoted, or `rowid` for a table without one.
fn key_order(schema: &TableSchema) -> Vec<String> {
    let keys: Vec<String> = schema
        .columns
        .iter()
        .filter(|c| c.primary_key)
        .map(|c| quote(&c.name))
        .collect();
    if keys.is_empty() {
        vec!["rowid".to_string()]
    } else {
        keys
    }
}

// ---------------------------------------------------------------------------------------
// Writes

/// Maps a failed write: duplicate key → `Conflict`, other constraint → `InvalidRequest`.
fn write_error(e: rusqlite::Error, schema: &TableSchema, row: Option<&Row>) -> Error {
    if let rusqlite::Error::SqliteFailure(failure, message) = &e {
        let message = message.clone().unwrap_or_default();
        match failure.extended_code {
            ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE => {
                let key = row.map(|row| {
                    schema
                        .columns
                        .iter()
                        .filter(|c| c.primary_key)
                        .map(|c| {
                            format!(
                                "{}={}",
                                c.name,
                                short(row.get(&c.name).unwrap_or(&Value::Null))
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                let key = key
                    .filter(|k| !k.is_empty())
                    .unwrap_or_else(|| "key".to_string());
                return Error::conflict(format!(
                    "a row with {key} already exists in table '{}'",
                    schema.name
                ))
                .with_source(e);
            }
            _ if failure.code == rusqlite::ErrorCode::ConstraintViolation => {
                return Error::invalid_request(format!(
                    "cannot write to table '{}': {message}",
                    schema.name
                ))
                .with_source(e);
            }
            _ if message.contains("ON CONFLICT clause does not match") => {
                return Error::invalid_request(format!(
                    "upsert into table '{}': the conflict columns must be the primary key or a \
                     unique constraint",
                    schema.name
                ))
                .with_source(e);
            }
            _ => {}
        }
    }
    sqlite_error(e, &format!("writing table '{}'", schema.name))
}

/// `INSERT INTO t (…) VALUES (…)` for `row`, with its parameters.
fn insert_sql(schema: &TableSchema, row: &Row) -> Result<(String, Vec<SqlValue>)> {
    if row.is_empty() {
        return Err(Error::invalid_request(format!(
            "cannot insert an empty row into table '{}'",
            schema.name
        )));
    }
    let mut names = Vec::with_capacity(row.len());
    let mut params = Vec::with_capacity(row.len());
    for (name, value) in row {
        let col = column(schema, name)?;
        params.push(to_sql(schema, col, value)?);
        names.push(quote(name));
    }
    let marks = vec!["?"; names.len()].join(", ");
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({marks})",
        quote(&schema.name),
        names.join(", ")
    );
    Ok((sql, params))
}

fn row_columns(row: &Row) -> Vec<&str> {
    row.keys().map(String::as_str).collect()
}

fn insert(conn: &Connection, cache: &mut Schemas, table: &str, row: &Row) -> Result<()> {
    let schema = schema_for(conn, cache, table, &row_columns(row))?;
    let (sql, params) = insert_sql(&schema, row)?;
    conn.execute(&sql, params_from_iter(params))
        .map_err(|e| write_error(e, &schema, Some(row)))?;
    Ok(())
}

/// Inserts `rows` in one transaction: all or none.
fn insert_many(
    conn: &mut Connection,
    cache: &mut Schemas,
    table: &str,
    rows: &[Row],
) -> Result<()> {
    let what = format!("writing table '{table}'");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sqlite_error(e, &what))?;
    for row in rows {
        insert(&tx, cache, table, row)?;
    }
    tx.commit().map_err(|e| sqlite_error(e, &what))
}

fn upsert(
    conn: &Connection,
    cache: &mut Schemas,
    table: &str,
    row: &Row,
    conflict_columns: &[&str],
) -> Result<()> {
    let mut needed = row_columns(row);
    needed.extend_from_slice(conflict_columns);
    let schema = schema_for(conn, cache, table, &needed)?;
    let (mut sql, params) = insert_sql(&schema, row)?;
    let targets: Vec<String> = if conflict_columns.is_empty() {
        schema
            .columns
            .iter()
            .filter(|c| c.primary_key)
            .map(|c| quote(&c.name))
            .collect()
    } else {
        conflict_columns
            .iter()
            .map(|c| column(&schema, c).map(|col| quote(&col.name)))
            .collect::<Result<_>>()?
    };
    if targets.is_empty() {
        return Err(Error::invalid_request(format!(
            "upsert into table '{table}' needs conflict columns: the table has no primary key"
        )));
    }
    let updates: Vec<String> = row
        .keys()
        .filter(|name| !conflict_columns.contains(&name.as_str()))
        .filter(|name| !targets.contains(&quote(name)))
        .map(|name| format!("{0} = excluded.{0}", quote(name)))
        .collect();
    sql.push_str(&format!(" ON CONFLICT ({}) DO ", targets.join(", ")));
    if updates.is_empty() {
        sql.push_str("NOTHING");
    } else {
        sql.push_str(&format!("UPDATE SET {}", updates.join(", ")));
    }
    conn.execute(&sql, params_from_iter(params))
        .map_err(|e| write_error(e, &schema, Some(row)))?;
    Ok(())
}

fn update(
    conn: &Connection,
    cache: &mut Schemas,
    table: &str,
    values: &Row,
    filter: &Filter,
) -> Result<u64> {
    let mut needed = row_columns(values);
    needed.extend(filter.columns());
    let schema = schema_for(conn, cache, table, &needed)?;
    if values.is_empty() {
        return Err(Error::invalid_request(format!(
            "update of table '{table}' sets no columns"
        )));
    }
    let mut params = Vec::new();
    let mut sets = Vec::new();
    for (name, value) in values {
        let col = column(&schema, name)?;
        params.push(to_sql(&schema, col, value)?);
        sets.push(format!("{} = ?", quote(name)));
    }
    let filter = filter_sql(&schema, filter, &mut params)?;
    let sql = format!(
        "UPDATE {} SET {} WHERE {filter}",
        quote(table),
        sets.join(", ")
    );
    let changed = conn
        .execute(&sql, params_from_iter(params))
        .map_err(|e| write_error(e, &schema, None))?;
    Ok(changed as u64)
}

fn delete(conn: &Connection, cache: &mut Schemas, table: &str, filter: &Filter) -> Result<u64> {
    let schema = schema_for(conn, cache, table, &filter.columns())?;
    let mut params = Vec::new();
    let filter = filter_sql(&schema, filter, &mut params)?;
    let sql = format!("DELETE FROM {} WHERE {filter}", quote(table));
    let changed = conn
        .execute(&sql, params_from_iter(params))
        .map_err(|e| write_error(e, &schema, None))?;
    Ok(changed as u64)
}

// ---------------------------------------------------------------------------------------
// Reads

fn query_rows(
    conn: &Connection,
    schema: &TableSchema,
    sql: &str,
    params: Vec<SqlValue>,
) -> Result<Vec<Row>> {
    let what = format!("reading table '{}'", schema.name);
    let mut stmt = conn.prepare(sql).map_err(|e| sqlite_error(e, &what))?;
    let rows = stmt
        .query_map(params_from_iter(params), |r| read_row(schema, r))
        .map_err(|e| sqlite_error(e, &what))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| sqlite_error(e, &what))
}

fn fetch_one(
    conn: &Connection,
    cache: &mut Schemas,
    table: &str,
    filter: Option<&Filter>,
) -> Result<Option<Row>> {
    let needed = filter.map(Filter::columns).unwrap_or_default();
    let schema = schema_for(conn, cache, table, &needed)?;
    let mut params = Vec::new();
    let filter = where_clause(&schema, filter, &mut params)?;
    let sql = format!(
        "SELECT {} FROM {}{filter} ORDER BY {} LIMIT 1",
        select_list(&schema),
        quote(table),
        key_order(&schema).join(", ")
    );
    Ok(query_rows(conn, &schema, &sql, params)?.into_iter().next())
}

fn fetch_all(
    conn: &Connection,
    cache: &mut Schemas,
    table: &str,
    query: &FetchQuery,
) -> Result<Page> {
    let mut needed = query
        .filter
        .as_ref()
        .map(Filter::columns)
        .unwrap_or_default();
    if let Some((c, _)) = &query.order_by {
        needed.push(c);
    }
    if let Some(cursor) = &query.cursor {
        needed.push(&cursor.key_column);
    }
    let schema = schema_for(conn, cache, table, &needed)?;
    let t = quote(table);

    let mut params = Vec::new();
    let mut conditions = Vec::new();
    if let Some(f) = &query.filter {
        conditions.push(filter_sql(&schema, f, &mut params)?);
    }
    let order = match &query.order_by {
        Some((c, dir)) => Some((quote(&column(&schema, c)?.name), *dir)),
        None => None,
    };
    let dir = order.as_ref().map_or(Order::Asc, |(_, d)| *d);
    let keys = match &query.cursor {
        Some(cursor) => vec![quote(&column(&schema, &cursor.key_column)?.name)],
        None => key_order(&schema),
    };

    if let Some(cursor) = &query.cursor {
        let k = quote(&cursor.key_column);
        let id = to_sql(&schema, column(&schema, &cursor.key_column)?, &cursor.after)?;
        // The cursor row's order value (its key when there is no order column).
        let probe = order.as_ref().map_or(&k, |(o, _)| o);
        let found: Option<SqlValue> = conn
            .query_row(
                &format!("SELECT {probe} FROM {t} WHERE {k} = ?1 LIMIT 1"),
                [&id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sqlite_error(e, &format!("reading table '{table}'")))?;
        let Some(at) = found else {
            let shown = match &cursor.after {
                Value::String(s) => s.clone(),
                other => short(other),
            };
            return Err(Error::invalid_request(format!(
                "invalid pagination cursor for table '{table}': cursor '{shown}' not found"
            ))
            .with_context("param", "after"));
        };
        let condition = match (&order, dir, at == SqlValue::Null) {
            (None, _, _) => {
                params.push(id);
                format!("{k} > ?")
            }
            // SQLite sorts NULL first ascending and last descending.
            (Some((o, _)), Order::Asc, true) => {
                params.push(id);
                format!("(({o} IS NULL AND {k} > ?) OR {o} IS NOT NULL)")
            }
            (Some((o, _)), Order::Asc, false) => {
                params.extend([at.clone(), at, id]);
                format!("({o} > ? OR ({o} = ? AND {k} > ?))")
            }
            (Some((o, _)), Order::Desc, true) => {
                params.push(id);
                format!("({o} IS NULL AND {k} < ?)")
            }
            (Some((o, _)), Order::Desc, false) => {
                params.extend([at.clone(), at, id]);
                format!("({o} < ? OR ({o} = ? AND {k} < ?) OR {o} IS NULL)")
            }
        };
        conditions.push(condition);
    }

    let direction = match dir {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    let mut order_terms: Vec<String> = Vec::new();
    if let Some((o, _)) = &order {
        order_terms.push(format!("{o} {direction}"));
    }
    order_terms.extend(keys.iter().map(|k| format!("{k} {direction}")));

    let mut sql = format!("SELECT {} FROM {t}", select_list(&schema));
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    sql.push_str(&format!(" ORDER BY {}", order_terms.join(", ")));
    if let Some(limit) = query.limit {
        params.push(SqlValue::Integer(
            i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX),
        ));
        sql.push_str(" LIMIT ?");
    }
    let mut rows = query_rows(conn, &schema, &sql, params)?;
    let has_more = query.limit.is_some_and(|limit| rows.len() > limit);
    if let Some(limit) = query.limit {
        rows.truncate(limit);
    }
    Ok(Page { rows, has_more })
}

#[async_trait]
impl SqlStore for SqliteSqlStore {
    async fn create_table(&self, schema: &TableSchema) -> Result<()> {
        let schema = schema.clone();
        self.conn
            .call(move |c, cache| create_table(c, cache, &schema))
            .await
    }

    async fn insert(&self, table: &str, row: Row) -> Result<()> {
        let table = table.to_string();
        self.conn
            .call(move |c, cache| insert(c, cache, &table, &row))
            .await
    }

    async fn insert_many(&self, table: &str, rows: Vec<Row>) -> Result<()> {
        let table = table.to_string();
        self.conn
            .call(move |c, cache| insert_many(c, cache, &table, &rows))
            .await
    }

    async fn upsert(&self, table: &str, row: Row, conflict_columns: &[&str]) -> Result<()> {
        let table = table.to_string();
        let conflict: Vec<String> = conflict_columns.iter().map(|c| c.to_string()).collect();
        self.conn
            .call(move |c, cache| {
                let conflict: Vec<&str> = conflict.iter().map(String::as_str).collect();
                upsert(c, cache, &table, &row, &conflict)
            })
            .await
    }

    async fn update(&self, table: &str, values: Row, filter: &Filter) -> Result<u64> {
        let table = table.to_string();
        let filter = filter.clone();
        self.conn
            .call(move |c, cache| update(c, cache, &table, &values, &filter))
            .await
    }

    async fn fetch_one(&self, table: &str, filter: Option<&Filter>) -> Result<Option<Row>> {
        let table = table.to_string();
        let filter = filter.cloned();
        self.conn
            .call(move |c, cache| fetch_one(c, cache, &table, filter.as_ref()))
            .await
    }

    async fn fetch_all(&self, table: &str, query: &FetchQuery) -> Result<Page> {
        let table = table.to_string();
        let query = query.clone();
        self.conn
            .call(move |c, cache| fetch_all(c, cache, &table, &query))
            .await
    }

    async fn delete(&self, table: &str, filter: &Filter) -> Result<u64> {
        let table = table.to_string();
        let filter = filter.clone();
        self.conn
            .call(move |c, cache| delete(c, cache, &table, &filter))
            .await
    }

    fn backend(&self) -> &'static str {
        "sql_sqlite"
    }
}
