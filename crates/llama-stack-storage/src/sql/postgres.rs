//! [`PostgresSqlStore`]: a [`SqlStore`] in a PostgreSQL database (backend `sql_postgres`).
//!
//! Columns map to `BIGINT` (integer, timestamp), `DOUBLE PRECISION`, `BOOLEAN` and
//! `TEXT COLLATE "C"` (text and JSON, which is stored as its serialised text), so text
//! compares and sorts by bytes as on every other backend. NULLs sort first ascending and
//! last descending (as SQLite does), so cursors behave the same everywhere. PostgreSQL
//! `text` cannot hold U+0000: U+0000/U+0001 in text values are escaped
//! order-preservingly and restored on read.
//!
//! Each table's schema and version are recorded in `_llama_stack_schema(table_name TEXT
//! PRIMARY KEY, version BIGINT, columns TEXT)`, like the SQLite backend; its row
//! `_llama_stack_schema` holds the storage format version, checked on open (a database
//! written by a newer build is refused with a `Config` error, never modified). Schema
//! changes run in a transaction holding an advisory lock, so several processes opening
//! the same database migrate it once, in turn. Every value is a bound parameter;
//! identifiers are validated and must name known columns before they are quoted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::storage::{
    validate_identifier, ColumnDef, ColumnType, FetchQuery, Filter, Order, Page, Row, SqlStore,
    TableSchema,
};
use llama_stack_core::{Error, Result};
use param::PgParam;
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;

use super::{newer_format_error, StoredColumn, FORMAT_ROW, STORAGE_FORMAT_VERSION};
use crate::config::SqlPostgresConfig;
use crate::postgres_connection::{
    escape_text, quote, unescape_text, PgPool, PgTarget, PoolOptions, SCHEMA_LOCK,
};

/// The table recording each table's schema and version.
const SCHEMA_TABLE: &str = "_llama_stack_schema";

/// Table name → schema, as last read or written by this store.
type Schemas = HashMap<String, Arc<TableSchema>>;

/// A [`SqlStore`] in a PostgreSQL database (backend `sql_postgres`).
#[derive(Debug)]
pub struct PostgresSqlStore {
    pool: PgPool,
    schemas: RwLock<Schemas>,
}

mod param {
    //! [`PgParam`]: one bound parameter of a dynamically built statement.

    use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

    /// A parameter value of one of the column types.
    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum PgParam {
        /// BIGINT
        Int(Option<i64>),
        /// DOUBLE PRECISION
        Float(Option<f64>),
        /// TEXT
        Text(Option<String>),
        /// BOOLEAN
        Bool(Option<bool>),
    }

    impl PgParam {
        pub(super) fn is_null(&self) -> bool {
            matches!(
                self,
                PgParam::Int(None)
                    | PgParam::Float(None)
                    | PgParam::Text(None)
                    | PgParam::Bool(None)
            )
        }
    }

    impl ToSql for PgParam {
        fn to_sql(
            &self,
            ty: &Type,
            out: &mut bytes::BytesMut,
        ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
            match self {
                PgParam::Int(v) => v.to_sql_checked(ty, out),
                PgParam::Float(v) => v.to_sql_checked(ty, out),
                PgParam::Text(v) => v.to_sql_checked(ty, out),
                PgParam::Bool(v) => v.to_sql_checked(ty, out),
            }
        }

        fn accepts(_ty: &Type) -> bool {
            true
        }

        to_sql_checked!();
    }
}

impl PostgresSqlStore {
    /// Connects with `cfg`, creates the bookkeeping table if absent and checks (and
    /// migrates forward) the storage format.
    pub async fn open(cfg: &SqlPostgresConfig) -> Result<Self> {
        let target = PgTarget {
            host: cfg.host.clone(),
            port: cfg.port.0,
            db: cfg.db.clone(),
            user: cfg.user.clone(),
            password: cfg.password.clone(),
            ssl_mode: cfg.ssl_mode,
            ca_cert_path: cfg.ca_cert_path.clone(),
        };
        let options = PoolOptions {
            max_size: usize::try_from(cfg.pool_size.saturating_add(cfg.max_overflow))
                .unwrap_or(usize::MAX),
            pre_ping: cfg.pool_pre_ping,
            recycle_after: u64::try_from(cfg.pool_recycle)
                .ok()
                .map(Duration::from_secs),
        };
        let store = PostgresSqlStore {
            pool: PgPool::new(&target, options)?,
            schemas: RwLock::new(Schemas::new()),
        };
        store.check_format().await?;
        Ok(store)
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        self.pool.addr()
    }

    /// The schema version recorded for `table` (1 when created, +1 per migration), if any.
    pub async fn schema_version(&self, table: &str) -> Result<Option<i64>> {
        validate_identifier(table)?;
        let client = self.pool.get().await?;
        let client: &tokio_postgres::Client = &client;
        Ok(stored_schema(&self.pool, client, table)
            .await?
            .map(|(version, _)| version))
    }

    async fn check_format(&self) -> Result<()> {
        let what = format!("opening the storage format record {SCHEMA_TABLE}");
        let mut client = self.pool.get().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.pool.error(e, &what))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(|e| self.pool.error(e, &what))?;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (\
               table_name TEXT PRIMARY KEY, version BIGINT NOT NULL, columns TEXT NOT NULL)"
        ))
        .await
        .map_err(|e| self.pool.error(e, &what))?;
        let found = tx
            .query_opt(
                &format!("SELECT version FROM {SCHEMA_TABLE} WHERE table_name = $1"),
                &[&FORMAT_ROW],
            )
            .await
            .map_err(|e| self.pool.error(e, &what))?;
        let version: Option<i64> = match found {
            Some(row) => Some(row.try_get(0).map_err(|e| self.pool.error(e, &what))?),
            None => None,
        };
        match version {
            Some(v) if v > STORAGE_FORMAT_VERSION => {
                return Err(newer_format_error(
                    "sql_postgres",
                    &format!("database at {}", self.pool.addr()),
                    v,
                ));
            }
            Some(v) if v == STORAGE_FORMAT_VERSION => {}
            // Older or unrecorded: run the migrations from there (format 1 is the first,
            // so there is nothing to run yet) and record the current format.
            _ => {
                tx.execute(
                    &format!(
                        "INSERT INTO {SCHEMA_TABLE} (table_name, version, columns) \
                         VALUES ($1, $2, '[]') ON CONFLICT (table_name) DO UPDATE \
                         SET version = EXCLUDED.version"
                    ),
                    &[&FORMAT_ROW, &STORAGE_FORMAT_VERSION],
                )
                .await
                .map_err(|e| self.pool.error(e, &what))?;
            }
        }
        tx.commit().await.map_err(|e| self.pool.error(e, &what))
    }

    fn cached(&self, table: &str) -> Option<Arc<TableSchema>> {
        self.schemas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
            .cloned()
    }

    fn remember(&self, schema: TableSchema) -> Arc<TableSchema> {
        let schema = Arc::new(schema);
        self.schemas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(schema.name.clone(), Arc::clone(&schema));
        schema
    }

    fn forget(&self, table: &str) {
        self.schemas
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(table);
    }

    /// The schema of `table`, from the cache if it knows every column in `needed`, else
    /// re-read from the database (another process may have migrated it).
    async fn schema_for(
        &self,
        client: &tokio_postgres::Client,
        table: &str,
        needed: &[&str],
    ) -> Result<Arc<TableSchema>> {
        validate_identifier(table)?;
        if let Some(schema) = self.cached(table) {
            if needed.iter().all(|c| schema.column(c).is_some()) {
                return Ok(schema);
            }
        }
        let schema = load_schema(&self.pool, client, table)
            .await?
            .ok_or_else(|| missing_table(table))?;
        Ok(self.remember(schema))
    }

    /// Runs a write statement, mapping constraint errors for `schema`.
    async fn write(
        &self,
        client: &deadpool_postgres::Object,
        schema: &TableSchema,
        sql: &str,
        params: &[PgParam],
        row: Option<&Row>,
    ) -> Result<u64> {
        let what = format!("writing table '{}'", schema.name);
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.write_error(e, schema, row, &what))?;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p as _).collect();
        client
            .execute(&stmt, &refs)
            .await
            .map_err(|e| self.write_error(e, schema, row, &what))
    }

    /// Runs a query and reads every row with `schema`'s column types.
    async fn read(
        &self,
        client: &deadpool_postgres::Object,
        schema: &TableSchema,
        sql: &str,
        params: &[PgParam],
    ) -> Result<Vec<Row>> {
        let what = format!("reading table '{}'", schema.name);
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.read_error(e, schema, &what))?;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p as _).collect();
        let rows = client
            .query(&stmt, &refs)
            .await
            .map_err(|e| self.read_error(e, schema, &what))?;
        rows.iter()
            .map(|r| read_row(schema, r).map_err(|e| self.pool.error(e, &what)))
            .collect()
    }

    fn read_error(&self, e: tokio_postgres::Error, schema: &TableSchema, what: &str) -> Error {
        if let Some(code) = e.code() {
            if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN {
                // Dropped or changed behind our back: forget the cached schema.
                self.forget(&schema.name);
                return Error::invalid_request(format!(
                    "table '{}' changed outside this store: {}",
                    schema.name,
                    crate::postgres_connection::describe(&e)
                ))
                .with_source(e);
            }
        }
        self.pool.error(e, what)
    }

    /// Maps a failed write: duplicate key → `Conflict`, other constraint → `InvalidRequest`.
    fn write_error(
        &self,
        e: tokio_postgres::Error,
        schema: &TableSchema,
        row: Option<&Row>,
        what: &str,
    ) -> Error {
        let Some(code) = e.code().cloned() else {
            return self.pool.error(e, what);
        };
        let detail = crate::postgres_connection::describe(&e);
        if code == SqlState::UNIQUE_VIOLATION {
            let key = row
                .map(|row| {
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
                })
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| "key".to_string());
            return Error::conflict(format!(
                "a row with {key} already exists in table '{}'",
                schema.name
            ))
            .with_source(e);
        }
        if code == SqlState::INVALID_COLUMN_REFERENCE {
            return Error::invalid_request(format!(
                "upsert into table '{}': the conflict columns must be the primary key or a \
                 unique constraint",
                schema.name
            ))
            .with_source(e);
        }
        if code.code().starts_with("23") || code.code().starts_with("22") {
            return Error::invalid_request(format!(
                "cannot write to table '{}': {detail}",
                schema.name
            ))
            .with_source(e);
        }
        self.read_error(e, schema, what)
    }
}

fn missing_table(table: &str) -> Error {
    Error::invalid_request(format!(
        "table '{table}' does not exist; create it with create_table first"
    ))
}

// ---------------------------------------------------------------------------------------
// Schemas

/// A column as PostgreSQL reports it.
struct DbColumn {
    name: String,
    data_type: String,
    not_null: bool,
    primary_key: bool,
}

impl DbColumn {
    /// The closest [`ColumnDef`] for a column created outside this store.
    fn to_def(&self) -> ColumnDef {
        let ty = match self.data_type.as_str() {
            "bigint" | "integer" | "smallint" => ColumnType::Integer,
            "double precision" | "real" => ColumnType::Float,
            "boolean" => ColumnType::Boolean,
            "json" | "jsonb" => ColumnType::Json,
            _ => ColumnType::Text,
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
        ColumnType::Integer | ColumnType::Timestamp => "BIGINT",
        ColumnType::Float => "DOUBLE PRECISION",
        ColumnType::Text | ColumnType::Json => "TEXT COLLATE \"C\"",
        ColumnType::Boolean => "BOOLEAN",
    }
}

async fn stored_schema<C: GenericClient + Sync>(
    pool: &PgPool,
    client: &C,
    table: &str,
) -> Result<Option<(i64, Vec<ColumnDef>)>> {
    let what = format!("reading the schema of table '{table}'");
    let found = client
        .query_opt(
            &format!("SELECT version, columns FROM {SCHEMA_TABLE} WHERE table_name = $1"),
            &[&table],
        )
        .await
        .map_err(|e| pool.error(e, &what))?;
    let Some(row) = found else {
        return Ok(None);
    };
    let version: i64 = row.try_get(0).map_err(|e| pool.error(e, &what))?;
    let columns: String = row.try_get(1).map_err(|e| pool.error(e, &what))?;
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

async fn db_columns<C: GenericClient + Sync>(
    pool: &PgPool,
    client: &C,
    table: &str,
) -> Result<Vec<DbColumn>> {
    let what = format!("reading the columns of table '{table}'");
    let rows = client
        .query(
            "SELECT c.column_name::text, c.data_type::text, c.is_nullable = 'NO', \
               EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
                         ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                       WHERE i.indrelid = to_regclass(quote_ident($1)) AND i.indisprimary \
                         AND a.attname = c.column_name) \
             FROM information_schema.columns c \
             WHERE c.table_schema = current_schema() AND c.table_name = $1 \
             ORDER BY c.ordinal_position",
            &[&table],
        )
        .await
        .map_err(|e| pool.error(e, &what))?;
    rows.iter()
        .map(|r| {
            Ok(DbColumn {
                name: r.try_get(0).map_err(|e| pool.error(e, &what))?,
                data_type: r.try_get(1).map_err(|e| pool.error(e, &what))?,
                not_null: r.try_get(2).map_err(|e| pool.error(e, &what))?,
                primary_key: r.try_get(3).map_err(|e| pool.error(e, &what))?,
            })
        })
        .collect()
}

/// The schema of `table`: the recorded one plus any column added outside this store, or
/// one derived from PostgreSQL's column list; `None` if the table does not exist.
async fn load_schema<C: GenericClient + Sync>(
    pool: &PgPool,
    client: &C,
    table: &str,
) -> Result<Option<TableSchema>> {
    let existing = db_columns(pool, client, table).await?;
    if existing.is_empty() {
        return Ok(None);
    }
    let mut columns = stored_schema(pool, client, table)
        .await?
        .map(|(_, columns)| columns)
        .unwrap_or_default();
    columns.retain(|c| existing.iter().any(|d| d.name == c.name));
    for db in &existing {
        if !columns.iter().any(|c| c.name == db.name) {
            columns.push(db.to_def());
        }
    }
    Ok(Some(TableSchema::new(table, columns)))
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

fn check_new_schema(schema: &TableSchema) -> Result<()> {
    let table = schema.name.as_str();
    validate_identifier(table)?;
    let lower = table.to_ascii_lowercase();
    if lower.starts_with("pg_") || lower.starts_with("_llama_stack") {
        return Err(Error::invalid_request(format!(
            "table name '{table}' is reserved (names starting with 'pg_' or '_llama_stack')"
        )));
    }
    if schema.columns.is_empty() {
        return Err(Error::invalid_request(format!(
            "table '{table}' needs at least one column"
        )));
    }
    for (i, col) in schema.columns.iter().enumerate() {
        validate_identifier(&col.name)?;
        if schema.columns[..i].iter().any(|c| c.name == col.name) {
            return Err(Error::invalid_request(format!(
                "column '{}' appears twice in table '{table}'",
                col.name
            )));
        }
    }
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

/// The parameter for `v` in column `col`, or an error naming the column and the value.
fn to_param(schema: &TableSchema, col: &ColumnDef, v: &Value) -> Result<PgParam> {
    let bad = |expected: &str| {
        Error::invalid_request(format!(
            "column '{}.{}' holds {expected}; got {}",
            schema.name,
            col.name,
            short(v)
        ))
    };
    let null = v.is_null();
    Ok(match col.ty {
        ColumnType::Integer => PgParam::Int(if null {
            None
        } else {
            Some(v.as_i64().ok_or_else(|| bad("an integer"))?)
        }),
        ColumnType::Timestamp => PgParam::Int(if null {
            None
        } else {
            Some(
                v.as_i64()
                    .ok_or_else(|| bad("a timestamp (integer Unix seconds)"))?,
            )
        }),
        ColumnType::Float => PgParam::Float(if null {
            None
        } else {
            Some(v.as_f64().ok_or_else(|| bad("a number"))?)
        }),
        ColumnType::Text => PgParam::Text(if null {
            None
        } else {
            Some(escape_text(v.as_str().ok_or_else(|| bad("text"))?).into_owned())
        }),
        ColumnType::Boolean => PgParam::Bool(if null {
            None
        } else {
            Some(v.as_bool().ok_or_else(|| bad("a boolean"))?)
        }),
        ColumnType::Json => PgParam::Text(if null {
            None
        } else {
            Some(escape_text(&v.to_string()).into_owned())
        }),
    })
}

/// `"c"` cast to the type this store reads for its column type.
fn select_expr(col: &ColumnDef) -> String {
    let cast = match col.ty {
        ColumnType::Integer | ColumnType::Timestamp => "bigint",
        ColumnType::Float => "float8",
        ColumnType::Boolean => "boolean",
        ColumnType::Text | ColumnType::Json => "text",
    };
    format!("{}::{cast}", quote(&col.name))
}

fn select_list(schema: &TableSchema) -> String {
    schema
        .columns
        .iter()
        .map(select_expr)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The JSON value of column `i` (selected with [`select_expr`]) of `row`.
fn from_pg(
    col: &ColumnDef,
    row: &tokio_postgres::Row,
    i: usize,
) -> std::result::Result<Value, tokio_postgres::Error> {
    Ok(match col.ty {
        ColumnType::Integer | ColumnType::Timestamp => row
            .try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::from),
        ColumnType::Float => row
            .try_get::<_, Option<f64>>(i)?
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        ColumnType::Boolean => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, Value::Bool),
        ColumnType::Text => row
            .try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, |s| Value::String(unescape_text(s))),
        ColumnType::Json => match row.try_get::<_, Option<String>>(i)? {
            Some(s) => {
                let s = unescape_text(s);
                serde_json::from_str(&s).unwrap_or(Value::String(s))
            }
            None => Value::Null,
        },
    })
}

/// The parameter for column `i` of `row` (the cursor row's order value).
fn param_from_row(
    col: &ColumnDef,
    row: &tokio_postgres::Row,
    i: usize,
) -> std::result::Result<PgParam, tokio_postgres::Error> {
    Ok(match col.ty {
        ColumnType::Integer | ColumnType::Timestamp => PgParam::Int(row.try_get(i)?),
        ColumnType::Float => PgParam::Float(row.try_get(i)?),
        ColumnType::Boolean => PgParam::Bool(row.try_get(i)?),
        ColumnType::Text | ColumnType::Json => PgParam::Text(row.try_get(i)?),
    })
}

fn read_row(
    schema: &TableSchema,
    row: &tokio_postgres::Row,
) -> std::result::Result<Row, tokio_postgres::Error> {
    let mut out = Row::new();
    for (i, col) in schema.columns.iter().enumerate() {
        out.insert(col.name.clone(), from_pg(col, row, i)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Filters

/// Adds `p` to `params` and returns its placeholder.
fn mark(params: &mut Vec<PgParam>, p: PgParam) -> String {
    params.push(p);
    format!("${}", params.len())
}

/// Appends `f` as SQL (with `$n` placeholders) and its values to `params`.
fn filter_sql(schema: &TableSchema, f: &Filter, params: &mut Vec<PgParam>) -> Result<String> {
    let compare = |c: &str, v: &Value, op: &str, params: &mut Vec<PgParam>| -> Result<String> {
        let col = column(schema, c)?;
        if v.is_null() {
            return Err(Error::invalid_request(format!(
                "filter on column '{c}' of table '{}': cannot compare with null (use IsNull)",
                schema.name
            )));
        }
        let p = to_param(schema, col, v)?;
        Ok(format!("{} {op} {}", quote(c), mark(params, p)))
    };
    Ok(match f {
        Filter::Eq(c, v) if v.is_null() => format!("{} IS NULL", quote(&column(schema, c)?.name)),
        Filter::Ne(c, v) if v.is_null() => {
            format!("{} IS NOT NULL", quote(&column(schema, c)?.name))
        }
        Filter::Eq(c, v) => compare(c, v, "=", params)?,
        // Null-safe: a NULL column value differs from every non-null value.
        Filter::Ne(c, v) => compare(c, v, "IS DISTINCT FROM", params)?,
        Filter::Gt(c, v) => compare(c, v, ">", params)?,
        Filter::Gte(c, v) => compare(c, v, ">=", params)?,
        Filter::Lt(c, v) => compare(c, v, "<", params)?,
        Filter::Lte(c, v) => compare(c, v, "<=", params)?,
        Filter::In(c, values) => {
            let col = column(schema, c)?;
            let name = quote(c);
            let mut parts = Vec::new();
            let mut marks = Vec::new();
            for v in values.iter().filter(|v| !v.is_null()) {
                let p = to_param(schema, col, v)?;
                marks.push(mark(params, p));
            }
            if !marks.is_empty() {
                parts.push(format!("{name} IN ({})", marks.join(", ")));
            }
            if values.iter().any(Value::is_null) {
                parts.push(format!("{name} IS NULL"));
            }
            if parts.is_empty() {
                "FALSE".to_string()
            } else {
                format!("({})", parts.join(" OR "))
            }
        }
        Filter::IsNull(c) => format!("{} IS NULL", quote(&column(schema, c)?.name)),
        Filter::And(fs) if fs.is_empty() => "TRUE".to_string(),
        Filter::Or(fs) if fs.is_empty() => "FALSE".to_string(),
        Filter::And(fs) => join_filters(schema, fs, " AND ", params)?,
        Filter::Or(fs) => join_filters(schema, fs, " OR ", params)?,
        // Comparisons with NULL are unknown in SQL; treat unknown as false before negating.
        Filter::Not(inner) => format!(
            "NOT COALESCE(({}), FALSE)",
            filter_sql(schema, inner, params)?
        ),
    })
}

fn join_filters(
    schema: &TableSchema,
    fs: &[Filter],
    sep: &str,
    params: &mut Vec<PgParam>,
) -> Result<String> {
    let parts = fs
        .iter()
        .map(|f| filter_sql(schema, f, params))
        .collect::<Result<Vec<_>>>()?;
    Ok(format!("({})", parts.join(sep)))
}

/// The primary-key columns, quoted, or every column for a table without one.
fn key_order(schema: &TableSchema) -> Vec<String> {
    let keys: Vec<String> = schema
        .columns
        .iter()
        .filter(|c| c.primary_key)
        .map(|c| quote(&c.name))
        .collect();
    if keys.is_empty() {
        schema.columns.iter().map(|c| quote(&c.name)).collect()
    } else {
        keys
    }
}

fn row_columns(row: &Row) -> Vec<&str> {
    row.keys().map(String::as_str).collect()
}

/// `INSERT INTO t (…) VALUES (…)` for `row`, with its parameters.
fn insert_sql(schema: &TableSchema, row: &Row) -> Result<(String, Vec<PgParam>)> {
    if row.is_empty() {
        return Err(Error::invalid_request(format!(
            "cannot insert an empty row into table '{}'",
            schema.name
        )));
    }
    let mut names = Vec::with_capacity(row.len());
    let mut params = Vec::with_capacity(row.len());
    let mut marks = Vec::with_capacity(row.len());
    for (name, value) in row {
        let col = column(schema, name)?;
        let p = to_param(schema, col, value)?;
        marks.push(mark(&mut params, p));
        names.push(quote(name));
    }
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote(&schema.name),
        names.join(", "),
        marks.join(", ")
    );
    Ok((sql, params))
}

#[async_trait]
impl SqlStore for PostgresSqlStore {
    async fn create_table(&self, schema: &TableSchema) -> Result<()> {
        check_new_schema(schema)?;
        let table = schema.name.as_str();
        let what = format!("creating table '{table}'");
        let mut client = self.pool.get().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.pool.error(e, &what))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(|e| self.pool.error(e, &what))?;
        let inner: &tokio_postgres::Transaction<'_> = &tx;
        let stored = stored_schema(&self.pool, inner, table).await?;
        let existing = db_columns(&self.pool, inner, table).await?;
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
            tx.batch_execute(&format!(
                "CREATE TABLE {} ({})",
                quote(table),
                defs.join(", ")
            ))
            .await
            .map_err(|e| self.pool.error(e, &what))?;
            schema.columns.clone()
        } else {
            let mut merged = match &stored {
                Some((_, columns)) => columns
                    .iter()
                    .filter(|c| existing.iter().any(|d| d.name == c.name))
                    .cloned()
                    .collect(),
                None => Vec::new(),
            };
            for db in &existing {
                if !merged.iter().any(|c: &ColumnDef| c.name == db.name) {
                    merged.push(db.to_def());
                }
            }
            for col in &schema.columns {
                if existing.iter().any(|d| d.name == col.name) {
                    if let Some(known) = merged.iter().find(|m| m.name == col.name) {
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
                    continue;
                }
                if col.primary_key {
                    return Err(Error::invalid_request(format!(
                        "cannot add primary-key column '{}' to existing table '{table}'",
                        col.name
                    )));
                }
                tx.batch_execute(&format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    quote(table),
                    quote(&col.name),
                    declared_type(col.ty)
                ))
                .await
                .map_err(|e| {
                    self.pool
                        .error(e, &format!("adding column '{}' to '{table}'", col.name))
                })?;
                merged.push(ColumnDef {
                    nullable: true,
                    ..col.clone()
                });
            }
            merged
        };
        let version = match &stored {
            Some((_, columns)) if *columns == merged => None,
            Some((version, _)) => Some(version + 1),
            None => Some(1),
        };
        if let Some(version) = version {
            let columns: Vec<StoredColumn> = merged.iter().map(StoredColumn::from).collect();
            let columns = serde_json::to_string(&columns).map_err(|e| {
                Error::internal(format!("cannot serialise schema of '{table}': {e}"))
            })?;
            tx.execute(
                &format!(
                    "INSERT INTO {SCHEMA_TABLE} (table_name, version, columns) VALUES ($1, $2, $3) \
                     ON CONFLICT (table_name) DO UPDATE SET \
                       version = EXCLUDED.version, columns = EXCLUDED.columns"
                ),
                &[&table, &version, &columns],
            )
            .await
            .map_err(|e| self.pool.error(e, &what))?;
        }
        tx.commit().await.map_err(|e| self.pool.error(e, &what))?;
        self.remember(TableSchema::new(table, merged));
        Ok(())
    }

    async fn insert(&self, table: &str, row: Row) -> Result<()> {
        let client = self.pool.get().await?;
        let schema = self.schema_for(&client, table, &row_columns(&row)).await?;
        let (sql, params) = insert_sql(&schema, &row)?;
        self.write(&client, &schema, &sql, &params, Some(&row))
            .await?;
        Ok(())
    }

    async fn insert_many(&self, table: &str, rows: Vec<Row>) -> Result<()> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let mut client = self.pool.get().await?;
        let mut needed = row_columns(first);
        for row in &rows[1..] {
            for c in row_columns(row) {
                if !needed.contains(&c) {
                    needed.push(c);
                }
            }
        }
        let schema = self.schema_for(&client, table, &needed).await?;
        let what = format!("writing table '{}'", schema.name);
        let mut statements = Vec::with_capacity(rows.len());
        for row in &rows {
            let (sql, params) = insert_sql(&schema, row)?;
            let stmt = client
                .prepare_cached(&sql)
                .await
                .map_err(|e| self.write_error(e, &schema, Some(row), &what))?;
            statements.push((stmt, params));
        }
        // Dropping the transaction before `commit` (an error, a cancelled caller) rolls it
        // back, so the pooled connection is never left inside it.
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.pool.error(e, &what))?;
        for ((stmt, params), row) in statements.iter().zip(&rows) {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p as _).collect();
            tx.execute(stmt, &refs)
                .await
                .map_err(|e| self.write_error(e, &schema, Some(row), &what))?;
        }
        tx.commit().await.map_err(|e| self.pool.error(e, &what))
    }

    async fn upsert(&self, table: &str, row: Row, conflict_columns: &[&str]) -> Result<()> {
        let client = self.pool.get().await?;
        let mut needed = row_columns(&row);
        needed.extend_from_slice(conflict_columns);
        let schema = self.schema_for(&client, table, &needed).await?;
        let (mut sql, params) = insert_sql(&schema, &row)?;
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
            .filter(|name| !targets.contains(&quote(name)))
            .map(|name| format!("{0} = EXCLUDED.{0}", quote(name)))
            .collect();
        sql.push_str(&format!(" ON CONFLICT ({}) DO ", targets.join(", ")));
        if updates.is_empty() {
            sql.push_str("NOTHING");
        } else {
            sql.push_str(&format!("UPDATE SET {}", updates.join(", ")));
        }
        self.write(&client, &schema, &sql, &params, Some(&row))
            .await?;
        Ok(())
    }

    async fn update(&self, table: &str, values: Row, filter: &Filter) -> Result<u64> {
        let client = self.pool.get().await?;
        let mut needed = row_columns(&values);
        needed.extend(filter.columns());
        let schema = self.schema_for(&client, table, &needed).await?;
        if values.is_empty() {
            return Err(Error::invalid_request(format!(
                "update of table '{table}' sets no columns"
            )));
        }
        let mut params = Vec::new();
        let mut sets = Vec::new();
        for (name, value) in &values {
            let col = column(&schema, name)?;
            let p = to_param(&schema, col, value)?;
            sets.push(format!("{} = {}", quote(name), mark(&mut params, p)));
        }
        let filter = filter_sql(&schema, filter, &mut params)?;
        let sql = format!(
            "UPDATE {} SET {} WHERE {filter}",
            quote(table),
            sets.join(", ")
        );
        self.write(&client, &schema, &sql, &params, None).await
    }

    async fn fetch_one(&self, table: &str, filter: Option<&Filter>) -> Result<Option<Row>> {
        let client = self.pool.get().await?;
        let needed = filter.map(Filter::columns).unwrap_or_default();
        let schema = self.schema_for(&client, table, &needed).await?;
        let mut params = Vec::new();
        let filter = match filter {
            Some(f) => format!(" WHERE {}", filter_sql(&schema, f, &mut params)?),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {} FROM {}{filter} ORDER BY {} LIMIT 1",
            select_list(&schema),
            quote(table),
            key_order(&schema).join(", ")
        );
        Ok(self
            .read(&client, &schema, &sql, &params)
            .await?
            .into_iter()
            .next())
    }

    async fn fetch_all(&self, table: &str, query: &FetchQuery) -> Result<Page> {
        let client = self.pool.get().await?;
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
        let schema = self.schema_for(&client, table, &needed).await?;
        let t = quote(table);

        let mut params = Vec::new();
        let mut conditions = Vec::new();
        if let Some(f) = &query.filter {
            conditions.push(filter_sql(&schema, f, &mut params)?);
        }
        let order = match &query.order_by {
            Some((c, dir)) => Some((column(&schema, c)?, *dir)),
            None => None,
        };
        let dir = order.as_ref().map_or(Order::Asc, |(_, d)| *d);
        let keys = match &query.cursor {
            Some(cursor) => vec![quote(&column(&schema, &cursor.key_column)?.name)],
            None => key_order(&schema),
        };

        if let Some(cursor) = &query.cursor {
            let key_col = column(&schema, &cursor.key_column)?;
            let k = quote(&key_col.name);
            let id = to_param(&schema, key_col, &cursor.after)?;
            // The cursor row's order value (its key when there is no order column).
            let probe_col = order.as_ref().map_or(key_col, |(o, _)| *o);
            let probe_sql = format!(
                "SELECT {} FROM {t} WHERE {k} = $1 LIMIT 1",
                select_expr(probe_col)
            );
            let what = format!("reading table '{table}'");
            let stmt = client
                .prepare_cached(&probe_sql)
                .await
                .map_err(|e| self.read_error(e, &schema, &what))?;
            let found = client
                .query_opt(&stmt, &[&id])
                .await
                .map_err(|e| self.read_error(e, &schema, &what))?;
            let Some(found) = found else {
                let shown = match &cursor.after {
                    Value::String(s) => s.clone(),
                    other => short(other),
                };
                return Err(Error::invalid_request(format!(
                    "invalid pagination cursor for table '{table}': cursor '{shown}' not found"
                ))
                .with_context("param", "after"));
            };
            let at = param_from_row(probe_col, &found, 0).map_err(|e| self.pool.error(e, &what))?;
            let condition = match (&order, dir, at.is_null()) {
                (None, _, _) => format!("{k} > {}", mark(&mut params, id)),
                (Some((o, _)), Order::Asc, true) => {
                    let o = quote(&o.name);
                    format!(
                        "(({o} IS NULL AND {k} > {}) OR {o} IS NOT NULL)",
                        mark(&mut params, id)
                    )
                }
                (Some((o, _)), Order::Asc, false) => {
                    let o = quote(&o.name);
                    let a = mark(&mut params, at.clone());
                    let b = mark(&mut params, at);
                    let c = mark(&mut params, id);
                    format!("({o} > {a} OR ({o} = {b} AND {k} > {c}))")
                }
                (Some((o, _)), Order::Desc, true) => {
                    let o = quote(&o.name);
                    format!("({o} IS NULL AND {k} < {})", mark(&mut params, id))
                }
                (Some((o, _)), Order::Desc, false) => {
                    let o = quote(&o.name);
                    let a = mark(&mut params, at.clone());
                    let b = mark(&mut params, at);
                    let c = mark(&mut params, id);
                    format!("({o} < {a} OR ({o} = {b} AND {k} < {c}) OR {o} IS NULL)")
                }
            };
            conditions.push(condition);
        }

        // NULLs first ascending, last descending, as on SQLite.
        let (direction, nulls) = match dir {
            Order::Asc => ("ASC", "NULLS FIRST"),
            Order::Desc => ("DESC", "NULLS LAST"),
        };
        let mut order_terms: Vec<String> = Vec::new();
        if let Some((o, _)) = &order {
            order_terms.push(format!("{} {direction} {nulls}", quote(&o.name)));
        }
        order_terms.extend(keys.iter().map(|k| format!("{k} {direction} {nulls}")));

        let mut sql = format!("SELECT {} FROM {t}", select_list(&schema));
        if !conditions.is_empty() {
            sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        }
        sql.push_str(&format!(" ORDER BY {}", order_terms.join(", ")));
        if let Some(limit) = query.limit {
            let n = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
            sql.push_str(&format!(
                " LIMIT {}",
                mark(&mut params, PgParam::Int(Some(n)))
            ));
        }
        let mut rows = self.read(&client, &schema, &sql, &params).await?;
        let has_more = query.limit.is_some_and(|limit| rows.len() > limit);
        if let Some(limit) = query.limit {
            rows.truncate(limit);
        }
        Ok(Page { rows, has_more })
    }

    async fn delete(&self, table: &str, filter: &Filter) -> Result<u64> {
        let client = self.pool.get().await?;
        let schema = self.schema_for(&client, table, &filter.columns()).await?;
        let mut params = Vec::new();
        let filter = filter_sql(&schema, filter, &mut params)?;
        let sql = format!("DELETE FROM {} WHERE {filter}", quote(table));
        self.write(&client, &schema, &sql, &params, None).await
    }

    fn backend(&self) -> &'static str {
        "sql_postgres"
    }
}
