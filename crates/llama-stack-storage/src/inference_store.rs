//! [`SqlInferenceStore`]: stored chat completions in a SQL table (Llama Stack's inference
//! store, `storage.stores.inference`), owned per caller through [`AuthorizedSqlStore`].
//!
//! Writes are queued, as Llama Stack queues them: `store` returns once the completion is in
//! a bounded queue (`max_write_queue_size`; callers wait when it is full) and
//! `num_writers` background writers insert what is queued in batches, one transaction per
//! batch. Reads in the same process never miss a queued write: `get` and `list` first wait
//! for the writes queued before them. Dropping the store lets the writers finish the queue.
//!
//! Table (`table_name`, default `inference_store`): `id` (primary key), `created` (Unix
//! seconds), `model`, `chat_completion` (JSON), `input_messages` (JSON) and the owner
//! columns of [`AuthorizedSqlStore`]; a row's resource is
//! `sql_record::<table>::<completion id>`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use llama_stack_core::access::AccessPolicy;
use llama_stack_core::api::inference::{
    ChatCompletion, ChatCompletionList, ListChatCompletionsRequest, Message, StoredChatCompletion,
};
use llama_stack_core::inference_store::InferenceStore;
use llama_stack_core::storage::{
    ColumnDef, ColumnType, Cursor, FetchQuery, Filter, Order, Row, SqlStore, TableSchema,
};
use llama_stack_core::{Error, RequestContext, Result, User};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use crate::authorized::AuthorizedSqlStore;
use crate::config::InferenceStoreReference;

/// Most completions one writer inserts in one transaction.
const BATCH: usize = 64;

struct Queued {
    user: Option<User>,
    row: Row,
    id: String,
}

struct Shared {
    sql: AuthorizedSqlStore,
    table: String,
    /// Ids queued and not yet written (or failed).
    pending: Mutex<HashSet<String>>,
    /// Signalled after every batch.
    written: Notify,
}

/// Chat completions stored in a SQL table with per-caller ownership.
pub struct SqlInferenceStore {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Queued>,
}

impl std::fmt::Debug for SqlInferenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlInferenceStore")
            .field("table", &self.shared.table)
            .finish_non_exhaustive()
    }
}

fn schema(table: &str) -> TableSchema {
    TableSchema::new(
        table,
        vec![
            ColumnDef::new("id", ColumnType::Text).primary_key(),
            ColumnDef::new("created", ColumnType::Integer).not_null(),
            ColumnDef::new("model", ColumnType::Text).not_null(),
            ColumnDef::new("chat_completion", ColumnType::Json).not_null(),
            ColumnDef::new("input_messages", ColumnType::Json).not_null(),
        ],
    )
}

impl SqlInferenceStore {
    /// Opens (creating or migrating) `reference.table_name` on `sql` and starts
    /// `reference.num_writers` writers behind a queue of `reference.max_write_queue_size`.
    /// Must be called inside a Tokio runtime.
    pub async fn open(
        sql: Arc<dyn SqlStore>,
        policy: AccessPolicy,
        reference: &InferenceStoreReference,
    ) -> Result<Self> {
        if reference.max_write_queue_size == 0 {
            return Err(Error::config(
                "max_write_queue_size: must be at least 1 (got 0)",
            ));
        }
        if reference.num_writers == 0 {
            return Err(Error::config("num_writers: must be at least 1 (got 0)"));
        }
        let sql = AuthorizedSqlStore::new(sql, policy);
        sql.create_table(&schema(&reference.table_name)).await?;
        let shared = Arc::new(Shared {
            sql,
            table: reference.table_name.clone(),
            pending: Mutex::new(HashSet::new()),
            written: Notify::new(),
        });
        let (tx, rx) = mpsc::channel(reference.max_write_queue_size);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..reference.num_writers {
            tokio::spawn(write_loop(shared.clone(), rx.clone()));
        }
        Ok(SqlInferenceStore { shared, queue: tx })
    }

    /// Waits until none of the writes queued before this call is still pending.
    async fn settle(&self) {
        let waiting: HashSet<String> = self.shared.pending().clone();
        if waiting.is_empty() {
            return;
        }
        loop {
            let notified = self.shared.written.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.pending().is_disjoint(&waiting) {
                return;
            }
            notified.await;
        }
    }
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn write(&self, batch: Vec<Queued>) {
        let rows: Vec<(Option<User>, Row)> = batch
            .iter()
            .map(|q| (q.user.clone(), q.row.clone()))
            .collect();
        if let Err(e) = self.sql.insert_many(&self.table, rows).await {
            // Find the rows that fail on their own; write the rest.
            if batch.len() == 1 {
                tracing::warn!(completion_id = %batch[0].id, error = %e, "storing a chat completion failed");
            } else {
                for q in &batch {
                    if let Err(e) = self
                        .sql
                        .insert(q.user.as_ref(), &self.table, q.row.clone())
                        .await
                    {
                        tracing::warn!(completion_id = %q.id, error = %e, "storing a chat completion failed");
                    }
                }
            }
        }
        {
            let mut pending = self.pending();
            for q in &batch {
                pending.remove(&q.id);
            }
        }
        self.written.notify_waiters();
    }
}

async fn write_loop(shared: Arc<Shared>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(q) => batch.push(q),
                None => return,
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
        }
        shared.write(batch).await;
    }
}

fn from_row(row: Row) -> Result<StoredChatCompletion> {
    let field = |name: &str| -> Result<Value> {
        row.get(name)
            .cloned()
            .ok_or_else(|| Error::internal(format!("stored chat completion lacks '{name}'")))
    };
    let completion: ChatCompletion = serde_json::from_value(field("chat_completion")?)
        .map_err(|e| Error::internal(format!("stored chat completion is unreadable: {e}")))?;
    let input_messages: Vec<Message> = serde_json::from_value(field("input_messages")?)
        .map_err(|e| Error::internal(format!("stored input messages are unreadable: {e}")))?;
    Ok(StoredChatCompletion {
        completion,
        input_messages,
    })
}

fn not_found(id: &str) -> Error {
    Error::not_found("Chat completion", id)
}

#[async_trait]
impl InferenceStore for SqlInferenceStore {
    async fn store(
        &self,
        ctx: &RequestContext,
        completion: ChatCompletion,
        input_messages: Vec<Message>,
    ) -> Result<()> {
        if completion.id.is_empty() {
            return Err(Error::invalid_request(
                "a chat completion without an id cannot be stored",
            ));
        }
        let mut row = Row::new();
        let id = completion.id.clone();
        row.insert("id".into(), Value::String(id.clone()));
        row.insert("created".into(), Value::from(completion.created));
        row.insert("model".into(), Value::String(completion.model.clone()));
        row.insert(
            "chat_completion".into(),
            serde_json::to_value(&completion)
                .map_err(|e| Error::internal(format!("cannot serialise the completion: {e}")))?,
        );
        row.insert(
            "input_messages".into(),
            serde_json::to_value(&input_messages)
                .map_err(|e| Error::internal(format!("cannot serialise the messages: {e}")))?,
        );
        self.shared.pending().insert(id.clone());
        let queued = Queued {
            user: ctx.user().cloned(),
            row,
            id,
        };
        if let Err(mpsc::error::SendError(q)) = self.queue.send(queued).await {
            // Writers are gone (runtime shutting down): write inline.
            self.shared.write(vec![q]).await;
        }
        Ok(())
    }

    async fn list(
        &self,
        ctx: &RequestContext,
        req: &ListChatCompletionsRequest,
    ) -> Result<ChatCompletionList> {
        let limit = req.checked_limit()?;
        self.settle().await;
        let query = FetchQuery {
            filter: req
                .model
                .as_ref()
                .map(|m| Filter::Eq("model".into(), Value::String(m.clone()))),
            order_by: Some(("created".into(), req.order.unwrap_or(Order::Desc))),
            limit: Some(limit as usize),
            cursor: req.after.as_ref().map(|after| Cursor {
                key_column: "id".into(),
                after: Value::String(after.clone()),
            }),
        };
        let page = self
            .shared
            .sql
            .fetch_all(ctx.user(), &self.shared.table, &query)
            .await?;
        let data = page
            .rows
            .into_iter()
            .map(from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(ChatCompletionList::new(data, page.has_more))
    }

    async fn get(&self, ctx: &RequestContext, completion_id: &str) -> Result<StoredChatCompletion> {
        self.settle().await;
        let filter = Filter::Eq("id".into(), Value::String(completion_id.to_string()));
        let row = self
            .shared
            .sql
            .fetch_one(ctx.user(), &self.shared.table, Some(&filter))
            .await?
            .ok_or_else(|| not_found(completion_id))?;
        from_row(row)
    }
}
